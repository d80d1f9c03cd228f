#!/usr/bin/env bash
# Mailward's scan step against bare yara-x and against clamscan, on the
# same rules and the same messages, in one run.
#
#   scan_bench (daemon/examples/scan_bench.rs; one thread, mail in memory):
#     ours     mailward::scan::scan_message, the whole scan step: MIME parse,
#              transfer decoding, archive check, filters, the rules on every
#              part, verdict, X-Mailward-AV header
#     yara-x   a bare yara-x Scanner::scan of each message's bytes as they
#              are, with the same compiled rules and the same scanner (it
#              does less: it cannot see into the base64 attachment, and
#              misses the attachment canary)
#     parts    mail-parser, then a bare Scanner::scan of each decoded part
#              (what any MIME-aware scanner has to do at least)
#   clamscan -d rules/bench.yar DIR   (ClamAV reads the same YARA file)
#
# The rules: RULES generated ones (text strings, a quarter `nocase`, a few
# `wide` or `fullword`; hex strings, some with a wildcard or a jump; a few
# regular expressions; conditions `any of them`, `2 of them`, `all of
# them`, `$s0 and ($s1 or ...)`), each with random characters that no
# message has, so no message matches. Two canary rules among them match
# the two control messages (a string in a text body, bytes in a base64
# attachment): Mailward and clamscan must find both before anything is
# timed, and ClamAV must load every rule.
# The messages: SMALL_COUNT plain-text messages of 1 KiB, and LARGE_COUNT
# of about 100 KiB (multipart/mixed: a text part and a base64 PDF-like
# attachment), all generated from a fixed seed, as .eml files with CRLF.
#
# scan_bench runs its modes in turns over each directory, ROUNDS rounds of
# about ROUND_SECS seconds per mode, and prints medians and the ratio of
# the costs per message, ours / bare yara-x (goal: at most 1.2), then where
# our time goes (mail-parser alone, the scan step without rules). clamscan is a new process that loads its
# database before it scans: it is timed over each whole directory and over
# an empty one (its start-up), CLAM_ROUNDS times each, and its cost per
# message is (directory - empty) / messages. It reads the files from disk
# (the page cache); scan_bench has them in memory. Both use one thread.
# ClamAV runs with its defaults (mail, archive and PDF parsing on).
#
# Usage: bench/scan-bench.sh           (builds the example with cargo first)
# Environment:
#   SCAN_BENCH_BIN  the bench program, to skip the build
#                   (target/release/examples/scan_bench)
#   RULES           rules generated (default 1000)
#   SMALL_COUNT     1 KiB messages (default 1000)
#   LARGE_COUNT     100 KiB messages (default 200)
#   ROUNDS          scan_bench rounds (default 7)
#   ROUND_SECS      seconds per mode per round, about (default 0.4)
#   CLAM_ROUNDS     clamscan runs of each directory (default 5)
#   KEEP=1          keep the temporary directory (rules, mail)
# Needs: clamscan (Debian package clamav); no ClamAV database is read but
# the generated one.
set -euo pipefail
cd "$(dirname "$0")/.."

RULES=${RULES:-1000}
SMALL_COUNT=${SMALL_COUNT:-1000}
LARGE_COUNT=${LARGE_COUNT:-200}
ROUNDS=${ROUNDS:-7}
ROUND_SECS=${ROUND_SECS:-0.4}
CLAM_ROUNDS=${CLAM_ROUNDS:-5}

say() { printf '%s\n' "$*"; }
die() {
    printf 'scan-bench: %s\n' "$*" >&2
    exit 1
}

command -v clamscan >/dev/null ||
    die "\`clamscan\` not found: install the Debian package clamav (apt-get install -y clamav)"
if [ -z "${SCAN_BENCH_BIN:-}" ]; then
    say "-- building: cargo build --release -p mailward --example scan_bench"
    cargo build --release -q -p mailward --example scan_bench || die "the build failed"
    SCAN_BENCH_BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/examples/scan_bench
fi
[ -x "$SCAN_BENCH_BIN" ] || die "$SCAN_BENCH_BIN not found"

work=$(mktemp -d /tmp/mailward-scan-bench.XXXXXX)
cleanup() {
    if [ -n "${KEEP:-}" ]; then
        say "Kept $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.6f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

yara_version=$(awk '$0 == "name = \"yara-x\"" { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock)
say "== Mailward's scan step vs bare yara-x vs clamscan: $RULES rules, the same messages"
say "   machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at the start;" \
    "yara-x ${yara_version:-?}; $(clamscan --version | cut -d/ -f1)"
say "   working directory: $work"

"$SCAN_BENCH_BIN" generate --rules "$RULES" --small "$SMALL_COUNT" --large "$LARGE_COUNT" "$work"
db=$work/rules/bench.yar
small=$work/mail/1k
large=$work/mail/100k
mkdir "$work/empty"

# ClamAV must load every rule (it skips, with a warning, what its YARA
# reader does not support) and find both canaries.
loaded=$(clamscan -d "$db" "$work/empty" 2>"$work/clamscan.load" | awk -F': ' '/^Known viruses/ { print $2 }')
if [ "$loaded" != "$RULES" ] || grep -q . "$work/clamscan.load"; then
    sed 's/^/   /' "$work/clamscan.load" >&2
    die "ClamAV loaded ${loaded:-no} rules of $RULES from $db"
fi
rc=0
clamscan --no-summary -d "$db" "$work/mail/control" >"$work/clamscan.control" 2>&1 || rc=$?
if [ "$rc" -ne 1 ] || [ "$(grep -c 'Bench_Canary_.* FOUND$' "$work/clamscan.control")" -ne 2 ]; then
    cat "$work/clamscan.control" >&2
    die "clamscan did not find both canaries in $work/mail/control (exit $rc)"
fi
say "-- ClamAV loads all $loaded rules and finds both canaries:"
sed "s|^$work/mail/control/|   |" "$work/clamscan.control"

say ""
"$SCAN_BENCH_BIN" run --control "$work/mail/control" --rounds "$ROUNDS" --round-secs "$ROUND_SECS" \
    --summary "$work/ours.txt" "$work/rules" "$small" "$large"

# Times one clamscan over DIR (seconds); any detection or error is fatal.
clam_time() {
    local a b rc=0
    a=$(now)
    clamscan --no-summary -d "$db" "$1" >"$work/clamscan.out" 2>&1 || rc=$?
    b=$(now)
    [ "$rc" -eq 0 ] || {
        head -n 5 "$work/clamscan.out" >&2
        die "clamscan $1 exited with $rc (1 = something found)"
    }
    awk -v a="$a" -v b="$b" 'BEGIN { printf "%.6f\n", b - a }'
}

say ""
say "-- clamscan: $CLAM_ROUNDS runs over each directory (after one run of each, not counted)"
: >"$work/t.empty"
: >"$work/t.small"
: >"$work/t.large"
for dir in "$work/empty" "$small" "$large"; do clam_time "$dir" >/dev/null; done
for _ in $(seq 1 "$CLAM_ROUNDS"); do
    clam_time "$work/empty" >>"$work/t.empty"
    clam_time "$small" >>"$work/t.small"
    clam_time "$large" >>"$work/t.large"
done
t_empty=$(median <"$work/t.empty")
t_small=$(median <"$work/t.small")
t_large=$(median <"$work/t.large")

say ""
say "Per message, one thread, medians; ratios are costs per message (below 1: ours is cheaper). MB = 10^6 bytes."
say "clamscan per message = (run over the directory - run over an empty one) / messages; whole/s includes its start-up."
printf '%-8s %7s | %9s %7s | %9s %7s | %9s %7s %9s | %11s %13s\n' \
    size bytes "ours/s" "MB/s" "yara-x/s" "MB/s" "clamscan/s" "MB/s" "whole/s" "ours/yara-x" "ours/clamscan"
while read -r label count bytes ours bare parts ratio; do
    case $label in
        1k) name="1 KiB" t_dir=$t_small ;;
        100k) name="100 KiB" t_dir=$t_large ;;
        *) continue ;;
    esac
    awk -v name="$name" -v n="$count" -v bytes="$bytes" -v ours="$ours" -v bare="$bare" -v ratio="$ratio" \
        -v dir="$t_dir" -v empty="$t_empty" 'BEGIN {
        clam = (dir - empty) / n * 1e6
        printf "%-8s %7d | %9.0f %7.1f | %9.0f %7.1f | %9.0f %7.1f %9.0f | %11.2f %13.3f\n", name, bytes,
            1e6 / ours, bytes / ours, 1e6 / bare, bytes / bare, 1e6 / clam, bytes / clam, n / dir, ratio, ours / clam
    }'
done <"$work/ours.txt"
awk -v e="$t_empty" -v s="$t_small" -v l="$t_large" -v ns="$SMALL_COUNT" -v nl="$LARGE_COUNT" 'BEGIN {
    printf "clamscan runs: empty directory %.3f s (start-up, %d rules), %d x 1 KiB %.3f s, %d x 100 KiB %.3f s.\n",
        e, '"$RULES"', ns, s, nl, l
}'
say "Goal: ours/yara-x at most 1.2 (cost per message)."
