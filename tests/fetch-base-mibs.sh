#!/usr/bin/env bash
# Fetches the IETF base MIB modules that MAILWARD-MIB imports (SNMPv2-SMI,
# SNMPv2-TC, SNMPv2-CONF; SNMPv2-MIB for sysUpTime and snmpTrapOID) into
# TARGET/mibs-base/, once. Debian's free packages do not ship them
# (snmp-mibs-downloader is in non-free); the npm registry's `net-snmp`
# package does, under package/lib/mibs/ (DESIGN 7), so they are taken from
# there with `npm pack`.
#
# TARGET is $CARGO_TARGET_DIR, else the workspace's target/ (ignored by
# git). The SNMP tests (tests/tests/snmp.rs) and bench/snmp-bench.sh read
# them from there with `-M`/MIBDIRS/SMIPATH; they fail with a hint to run
# tests/install-deps.sh (which runs this script) when they are missing.
#
#   MAILWARD_NET_SNMP_NPM   the npm package spec (default: a version that
#                           was checked to lint MAILWARD-MIB cleanly)
set -euo pipefail
cd "$(dirname "$0")/.."

spec=${MAILWARD_NET_SNMP_NPM:-net-snmp@3.29.2}
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
dest="$target_dir/mibs-base"
wanted=(SNMPv2-SMI SNMPv2-TC SNMPv2-CONF SNMPv2-MIB)

have_all=1
for module in "${wanted[@]}"; do
    [ -s "$dest/$module.txt" ] || have_all=0
done
if [ "$have_all" -eq 1 ]; then
    echo "fetch-base-mibs: base MIBs present in $dest"
    exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
    echo "fetch-base-mibs: npm not found: install the Debian package npm (tests/install-deps.sh)" >&2
    exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "fetch-base-mibs: npm pack $spec"
(cd "$work" && npm pack --silent "$spec" >/dev/null)
tarball=$(ls "$work"/*.tgz)
tar -xzf "$tarball" -C "$work" package/lib/mibs

mkdir -p "$dest.tmp"
for module in "${wanted[@]}"; do
    src="$work/package/lib/mibs/$module.mib"
    if [ ! -s "$src" ]; then
        echo "fetch-base-mibs: $spec has no lib/mibs/$module.mib" >&2
        exit 1
    fi
    # Named MODULE.txt, as libsmi and net-snmp both find modules by file
    # name; line ends made Unix.
    tr -d '\r' < "$src" > "$dest.tmp/$module.txt"
done
printf 'IETF base MIB modules from the npm package %s (package/lib/mibs/),\nfetched by tests/fetch-base-mibs.sh.\n' \
    "$(basename "$tarball" .tgz)" > "$dest.tmp/README"
rm -rf "$dest"
mv "$dest.tmp" "$dest"
echo "fetch-base-mibs: ${wanted[*]} in $dest"
echo "fetch-base-mibs: with only these, load our MIB with -m MAILWARD-MIB (not -m +MAILWARD-MIB, which also asks for net-snmp's default modules)"
