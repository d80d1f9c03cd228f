#!/usr/bin/env bash
# Builds the Debian package target/debian/mailward_VERSION_ARCH.deb:
#
#   packaging/build-deb.sh            # builds the release binary first
#   packaging/build-deb.sh --no-build # packages the binary already built
#
# Needs cargo-deb (`cargo install cargo-deb --locked`). The man pages,
# completions and the Debian /etc/mailward/mailward.toml are generated from
# the binary into target/release/deb-assets/ (so they match it), then cargo-deb
# packs what daemon/Cargo.toml's [package.metadata.deb] lists.
set -euo pipefail
cd "$(dirname "$0")/.."

build=1
[ "${1:-}" = "--no-build" ] && build=0
target="${CARGO_TARGET_DIR:-$PWD/target}"
bin="$target/release/mailward"

command -v cargo-deb >/dev/null 2>&1 || {
    echo "build-deb: cargo-deb is missing: cargo install cargo-deb --locked" >&2
    exit 1
}
if [ "$build" = 1 ]; then
    echo "build-deb: building the release binary"
    cargo build --release -p mailward
fi
[ -x "$bin" ] || { echo "build-deb: $bin is missing: build it first" >&2; exit 1; }

assets="$target/release/deb-assets"
rm -rf "$assets"
mkdir -p "$assets/man" "$assets/completions"
echo "build-deb: man pages, completions and configuration into $assets"
"$bin" man-pages --out "$assets/man" >/dev/null
gzip -9n "$assets"/man/*.8
"$bin" completions bash >"$assets/completions/mailward"
"$bin" completions zsh >"$assets/completions/_mailward"
"$bin" completions fish >"$assets/completions/mailward.fish"
"$bin" config default | packaging/debian-config.py >"$assets/mailward.toml"
# The crates linked into the binary, with their licence and notice texts
# (named by packaging/copyright).
echo "build-deb: the bundled crates' licences into $assets/bundled-crates.txt.gz"
packaging/bundled-crates.py >"$assets/bundled-crates.txt"
gzip -9n "$assets/bundled-crates.txt"
# The package makes the user and group mailward at install: on a build host
# without them, check-config's warning about them is expected, not a fault
# of the package (walkN); so are those about the example hostname and
# postmaster, which the site sets after installing. Any other warning or
# error is shown.
if ! "$bin" check-config --config "$assets/mailward.toml" >/dev/null 2>"$assets/check.err"; then
    cat "$assets/check.err" >&2
    exit 1
fi
grep -Ev 'warning: server\.(user|group): there is no (user|group) "mailward"|warning: server\.(hostname|postmaster): .* is an example' "$assets/check.err" >&2 || true
rm -f "$assets/check.err"

echo "build-deb: packing"
cargo deb -p mailward --no-build --strip
