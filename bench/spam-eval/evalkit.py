#!/usr/bin/env python3
"""Helpers for bench/spam-eval.sh (stdlib only).

  evalkit.py folds LIST ROOT K [--quick]
      Reads the dev list (paths relative to ROOT = .../package/data), labels
      each message and prints one line per message:
          id  fold  label  hard  relpath  abspath        (tab-separated)
      Folds are stratified by folder: within each folder the paths are
      sorted and message i goes to fold i mod K. --quick keeps every 5th
      message of each folder first. Only the listed files are touched
      (each is checked with stat); nothing under ROOT is listed.

  evalkit.py sa-collect MANIFEST OUTDIR FILTER
      MANIFEST: lines "id<TAB>relpath" of the held-out messages; OUTDIR/id
      holds spamc's output for each (headers rewritten by spamd). Prints
      result lines: filter relpath verdict score tests(comma-separated).

  evalkit.py mw-collect MANIFEST JSONL FILTER
      The same from `mailward spam check --json` output (MANIFEST has
      "id<TAB>relpath<TAB>abspath").

  evalkit.py report LABELS RESULTS... [--k K] [--speed SPEEDFILE] [--quick]
      LABELS: the folds file; RESULTS: result files. Prints the markdown.
"""
import json
import os
import re
import sys

HAM_FOLDERS = {"easy-ham-1", "easy-ham-2", "hard-ham-1"}
SPAM_FOLDERS = {"spam-1", "spam-2"}


def die(msg):
    sys.stderr.write("spam-eval: %s\n" % msg)
    sys.exit(1)


def folds(args):
    quick = "--quick" in args
    args = [a for a in args if a != "--quick"]
    if len(args) != 3:
        die("usage: evalkit.py folds LIST ROOT K [--quick]")
    lst, root, k = args[0], args[1], int(args[2])
    if k < 2:
        die("--folds must be at least 2")
    by_folder = {}
    seen = set()
    with open(lst, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            rel = line.strip()
            if not rel or rel.startswith("#"):
                continue
            parts = rel.split("/")
            if len(parts) != 2 or ".." in parts or parts[1] == "":
                die("%s:%d: not FOLDER/FILE: %r" % (lst, n, rel))
            folder = parts[0]
            if folder not in HAM_FOLDERS and folder not in SPAM_FOLDERS:
                die("%s:%d: unknown folder %r" % (lst, n, folder))
            if rel in seen:
                die("%s:%d: listed twice: %s" % (lst, n, rel))
            seen.add(rel)
            by_folder.setdefault(folder, []).append(rel)
    out = []
    for folder in sorted(by_folder):
        paths = sorted(by_folder[folder])
        if quick:
            paths = paths[::5]
        label = "spam" if folder in SPAM_FOLDERS else "ham"
        hard = 1 if folder == "hard-ham-1" else 0
        for i, rel in enumerate(paths):
            out.append((i % k, label, hard, rel))
    missing = [r for (_, _, _, r) in out if not os.path.isfile(os.path.join(root, r))]
    if missing:
        die("%d listed messages missing under %s (first: %s)" % (len(missing), root, missing[0]))
    for ident, (fold, label, hard, rel) in enumerate(out):
        print("%05d\t%d\t%s\t%d\t%s\t%s" % (ident, fold, label, hard, rel, os.path.join(root, rel)))


def header_block(data):
    """The header section of a message (bytes), unfolded, as text lines."""
    data = data.replace(b"\r\n", b"\n")
    end = data.find(b"\n\n")
    head = data if end < 0 else data[:end]
    text = head.decode("latin-1")
    lines = []
    for line in text.split("\n"):
        if line[:1] in (" ", "\t") and lines:
            lines[-1] += " " + line.strip()
        else:
            lines.append(line)
    return lines


SA_HDR = "x-spam-mweval:"
SA_RE = re.compile(r"^(Yes|No)\s+score=(-?[0-9.]+)\s+required=(-?[0-9.]+)\s+tests=(.*)$")


def sa_collect(args):
    if len(args) != 3:
        die("usage: evalkit.py sa-collect MANIFEST OUTDIR FILTER")
    manifest, outdir, name = args
    bad = 0
    with open(manifest, encoding="utf-8") as f:
        for line in f:
            ident, rel = line.rstrip("\n").split("\t")[:2]
            p = os.path.join(outdir, ident)
            try:
                with open(p, "rb") as g:
                    data = g.read()
            except OSError:
                data = b""
            hit = None
            for h in header_block(data):
                if h.lower().startswith(SA_HDR):
                    hit = SA_RE.match(h[len(SA_HDR):].strip())
                    break
            if not hit:
                bad += 1
                sys.stderr.write("spam-eval: no SpamAssassin verdict for %s (%s)\n" % (rel, p))
                continue
            yes, score, _req, tests = hit.groups()
            tests = re.sub(r"\s+", "", tests)  # SpamAssassin folds the list after commas
            tests = ",".join(t for t in tests.split(",") if t and t != "none")
            print("%s\t%s\t%s\t%s\t%s" % (name, rel, "spam" if yes == "Yes" else "clean", score, tests))
    if bad:
        die("%d messages without a SpamAssassin verdict" % bad)


MW_STATUSES = {"as/spam", "as/probable", "as/formal", "as/blacklisted", "as/clean"}


def mw_collect(args):
    if len(args) != 3:
        die("usage: evalkit.py mw-collect MANIFEST JSONL FILTER")
    manifest, jsonl, name = args
    want = {}
    with open(manifest, encoding="utf-8") as f:
        for line in f:
            ident, rel, absp = line.rstrip("\n").split("\t")[:3]
            for key in (absp, os.path.realpath(absp), rel):
                want[key] = rel
    got = {}
    with open(jsonl, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                o = json.loads(line)
            except ValueError:
                die("%s:%d: not JSON: %.120s" % (jsonl, n, line))
            fp = str(o.get("file", ""))
            rel = want.get(fp) or want.get(os.path.realpath(fp))
            if rel is None:
                tail = "/".join(fp.split("/")[-2:])
                rel = want.get(tail)
            if rel is None:
                die("%s:%d: unexpected file %r" % (jsonl, n, fp))
            status = o.get("status")
            if status not in MW_STATUSES:
                die("%s:%d: unknown status %r" % (jsonl, n, status))
            tests = o.get("tests") or []
            got[rel] = (status, float(o.get("score", 0.0)), ",".join(str(t) for t in tests))
    expected = set(want.values())
    missing = expected - set(got)
    if missing:
        die("mailward gave no verdict for %d of %d messages (first: %s)"
            % (len(missing), len(expected), sorted(missing)[0]))
    for rel in sorted(got):
        status, score, tests = got[rel]
        print("%s\t%s\t%s\t%s\t%s" % (name, rel, status, score, tests))


def pct(a, b):
    return "%.2f %%" % (100.0 * a / b) if b else "n/a"


def report(args):
    k = None
    speed = None
    quick = False
    rest = []
    it = iter(args)
    for a in it:
        if a == "--k":
            k = next(it)
        elif a == "--speed":
            speed = next(it)
        elif a == "--quick":
            quick = True
        else:
            rest.append(a)
    labels_path, results = rest[0], rest[1:]
    labels = {}
    with open(labels_path, encoding="utf-8") as f:
        for line in f:
            ident, fold, label, hard, rel, _ = line.rstrip("\n").split("\t")
            labels[rel] = (label, hard == "1")
    n_spam = sum(1 for v in labels.values() if v[0] == "spam")
    n_ham = sum(1 for v in labels.values() if v[0] == "ham")
    n_hard = sum(1 for v in labels.values() if v[1])

    order = []
    rows = {}
    for path in results:
        with open(path, encoding="utf-8") as f:
            for line in f:
                name, rel, verdict, score, tests = line.rstrip("\n").split("\t")
                if name not in rows:
                    rows[name] = {}
                    order.append(name)
                rows[name][rel] = (verdict, float(score), tests)

    speeds = {}
    if speed and os.path.exists(speed):
        with open(speed, encoding="utf-8") as f:
            for line in f:
                name, v = line.rstrip("\n").rsplit(" ", 1)
                speeds[name] = float(v)

    print("| filter | spam recall | false positives (ham) | hard-ham marked spam "
          "| probable (ham / spam) | msg/s |")
    print("| --- | --- | --- | --- | --- | --- |")
    notes = []
    for name in order:
        r = rows[name]
        if set(r) != set(labels):
            die("%s: %d verdicts for %d messages" % (name, len(r), len(labels)))
        is_mw = name.startswith("Mailward")
        spam_set = {"as/spam", "as/blacklisted", "spam"}
        sp_hit = sum(1 for rel, v in r.items() if labels[rel][0] == "spam" and v[0] in spam_set)
        ham_fp = sum(1 for rel, v in r.items() if labels[rel][0] == "ham" and v[0] in spam_set)
        hard_fp = sum(1 for rel, v in r.items() if labels[rel][1] and v[0] in spam_set)
        if is_mw:
            hp = sum(1 for rel, v in r.items() if labels[rel][0] == "ham" and v[0] == "as/probable")
            spp = sum(1 for rel, v in r.items() if labels[rel][0] == "spam" and v[0] == "as/probable")
            prob = "%s / %s" % (pct(hp, n_ham), pct(spp, n_spam))
        else:
            prob = "-"
        bayes = sum(1 for v in r.values() if re.search(r"(^|,)BAYES_", v[2]))
        if not is_mw and "no Bayes" not in name:
            notes.append("%s: a BAYES_ rule fired on %d of %d messages" % (name, bayes, len(r)))
        sp = speeds.get(name)
        print("| %s | %s (%d/%d) | %s (%d/%d) | %d (%s of %d) | %s | %s |" % (
            name, pct(sp_hit, n_spam), sp_hit, n_spam, pct(ham_fp, n_ham), ham_fp, n_ham,
            hard_fp, pct(hard_fp, n_hard), n_hard, prob, "%.1f" % sp if sp else "-"))
    print()
    print("Messages: %d spam, %d ham (of which %d hard ham)%s; %s folds, every message judged once, "
          "by the model trained on the other folds." % (
              n_spam, n_ham, n_hard, ", --quick subset (every 5th)" if quick else "", k or "?"))
    for n in notes:
        print(n + ".")
    mw = [n for n in order if n.startswith("Mailward") and n in speeds]
    sa = [n for n in order if n.startswith("SpamAssassin") and "no Bayes" not in n and n in speeds]
    if mw and sa:
        print("Throughput ratio Mailward / SpamAssassin: %.2f" % (speeds[mw[0]] / speeds[sa[0]]))


def main():
    if len(sys.argv) < 2:
        die(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    {"folds": folds, "sa-collect": sa_collect, "mw-collect": mw_collect, "report": report}.get(
        cmd, lambda _a: die("unknown command %r" % cmd))(args)


if __name__ == "__main__":
    main()
