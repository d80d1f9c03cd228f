#!/usr/bin/env python3
"""Writes, on stdout, the list of the Rust crates statically linked into
/usr/sbin/mailward, with each crate's licence, authors and source, and the
texts of the licence and notice files it ships (each distinct text once).
The Debian package ships it as /usr/share/doc/mailward/bundled-crates.txt.gz,
named by /usr/share/doc/mailward/copyright: MIT, BSD and ISC ask that their
notices go with a binary.

The crates are those `cargo tree -e normal` finds under the mailward package
for the host's platform (no build-time or test-only crate), as Cargo.lock pins
them; their files are read from Cargo's registry, so run it after the release
build (nothing is downloaded: --frozen).

    packaging/bundled-crates.py | gzip -9n > bundled-crates.txt.gz
"""
import hashlib
import json
import os
import re
import subprocess
import sys

# Licence and notice files, by the names crates give them.
NAMES = re.compile(r"^(licen[sc]e|copying|unlicense|notice|copyright|authors)", re.I)


def cargo(*args):
    done = subprocess.run(["cargo", *args, "--frozen"], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"bundled-crates: cargo {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def host():
    for line in subprocess.run(["rustc", "-vV"], capture_output=True, text=True, check=True).stdout.splitlines():
        if line.startswith("host: "):
            return line[len("host: "):]
    sys.exit("bundled-crates: rustc -vV names no host")


def main():
    platform = host()
    meta = json.loads(cargo("metadata", "--format-version", "1", "--filter-platform", platform))
    linked = set()
    for line in cargo("tree", "-p", "mailward", "-e", "normal", "--prefix", "none",
                      "--format", "{p}", "--target", platform).splitlines():
        parts = line.split()
        if len(parts) >= 2:
            linked.add((parts[0], parts[1].lstrip("v")))
    packages = {(p["name"], p["version"]): p for p in meta["packages"]}
    # Workspace members (no source) are Mailward's own code.
    crates = [packages[k] for k in sorted(linked) if k in packages and packages[k]["source"]]
    if not crates:
        sys.exit("bundled-crates: cargo tree found no crate under mailward")

    texts = {}

    def text_of(path):
        with open(path, "rb") as fh:
            body = fh.read().decode("utf-8", "replace")
        key = hashlib.sha256(body.encode()).hexdigest()
        texts.setdefault(key, (len(texts) + 1, body))
        return texts[key][0]

    shipped = {}
    for p in crates:
        where = os.path.dirname(p["manifest_path"])
        files = sorted(f for f in os.listdir(where)
                       if NAMES.match(f) and os.path.isfile(os.path.join(where, f)))
        shipped[(p["name"], p["version"])] = [f"{f} (text {text_of(os.path.join(where, f))})" for f in files]

    # A crate that ships no licence file still has its notice here (walkBC
    # F6: yara-x, BSD-3-Clause, had none): the files of a crate of the same
    # project, else the project's licence kept in packaging/licenses/, else,
    # when its licence lets Apache-2.0 be chosen, Debian's copy of it.
    # None of these: the build stops, rather than ship a notice short.
    kept = os.path.join(os.path.dirname(os.path.abspath(__file__)), "licenses")

    def project(q):
        # github.com/OWNER/NAME/tree/main/sub is github.com/OWNER/NAME.
        url = (q.get("repository") or "").rstrip("/").removesuffix(".git")
        m = re.match(r"(https?://(?:github\.com|gitlab\.com)/[^/]+/[^/]+)", url)
        return m.group(1) if m else url

    entries = []
    for p in crates:
        files = shipped[(p["name"], p["version"])]
        repo = project(p)
        if not files:
            sibling = next((q for q in crates if q is not p and shipped[(q["name"], q["version"])]
                            and repo and project(q) == repo), None)
            own = os.path.join(kept, repo.split("://", 1)[-1].replace("/", "_")) if repo else ""
            if sibling:
                files = [f"none in the crate; its project's, as {sibling['name']} ships them: "
                         + ", ".join(shipped[(sibling["name"], sibling["version"])])]
            elif own and os.path.isfile(own):
                files = [f"none in the crate; its project's licence (text {text_of(own)})"]
            elif re.search(r"\bApache-2\.0\b", p.get("license") or ""):
                files = ["none in the crate; under Apache-2.0, in /usr/share/common-licenses/Apache-2.0"]
                # The LLVM exception only adds permissions; its text is
                # here with a crate that ships it (walkBD F5).
                llvm = next((n for n, body in texts.values()
                             if "LLVM Exceptions to the Apache 2.0 License" in body), None)
                if "LLVM-exception" in (p.get("license") or "") and llvm:
                    files[0] += f", with the LLVM exception (text {llvm})"
            else:
                sys.exit(f"bundled-crates: {p['name']} {p['version']} ({p.get('license')}) ships no "
                         f"licence file and none is kept for {repo or 'it'} in {kept}: add its "
                         "project's licence there")
        entries.append((p, files))

    out = sys.stdout
    out.write("Rust crates in /usr/sbin/mailward\n=================================\n\n")
    out.write(
        "/usr/sbin/mailward is one statically linked program. Besides Mailward's\n"
        "own code (Apache-2.0, see copyright beside this file) it holds the\n"
        f"{len(crates)} crates below, as Cargo.lock pinned them for this build: each\n"
        "with its licence as its manifest gives it, its authors, its source, and\n"
        "the licence and notice files it ships, whose texts follow the list (each\n"
        "distinct text once). On Debian systems the Apache License 2.0 is also in\n"
        "/usr/share/common-licenses/Apache-2.0.\n\n"
    )
    for p, files in entries:
        out.write(f"{p['name']} {p['version']}\n")
        out.write(f"  License: {p.get('license') or 'not given in its manifest: see its files'}\n")
        if p.get("authors"):
            out.write(f"  Authors: {', '.join(p['authors'])}\n")
        if p.get("repository"):
            out.write(f"  Source: {p['repository']}\n")
        out.write(f"  Files: {', '.join(files)}\n\n")
    for number, body in sorted(texts.values()):
        title = f"Text {number}"
        out.write(f"\n{title}\n{'-' * len(title)}\n\n{body.rstrip()}\n")


if __name__ == "__main__":
    main()
