#!/usr/bin/env bash
# Runs every cargo-fuzz target of Mailward for N seconds each (default 60):
# the daemon's (daemon/fuzz: smtp_command, data_reader, scan_message,
# spool_record, config_load, spam_examine, spam_model), the AgentX
# decoder's (agentx/fuzz: decode) and
# the milter codec's (milter/fuzz: decode, named milter_decode here so that
# the two decode targets keep distinct names).
# Prints one line per target: its name, the seconds it ran, the inputs it
# executed, the new corpus entries it kept and the crashes it found (with the
# distinct panic sites under it); then a summary. Exits 1 when any target
# crashed (or failed to run).
#
# libFuzzer runs in fork mode with -ignore_crashes=1: a known crash does not
# end a target's run early, every crash found is kept as an artifact, and
# each target gets its whole time.
#
# New corpus entries stay in <crate>/fuzz/corpus/<target>/ (libFuzzer writes
# them there); crashes land in <crate>/fuzz/artifacts/<target>/. See
# daemon/fuzz/README.md for replaying a crash and for minimizing the corpus.
#
# Works on stable Rust: RUSTC_BOOTSTRAP=1 lets stable rustc take the
# unstable flags cargo-fuzz passes (-Zsanitizer=address among them: the
# targets run under AddressSanitizer, which watches the unsafe code of the
# dependencies: yara-x, wasmtime, zip, zlib-rs, mail-parser). The first
# build of daemon/fuzz takes about 16 minutes on 2 cores. Builds take the machine's cargo lock ($MAILWARD_CARGO_LOCK, default
# /tmp/mailward-cargo.lock) when flock exists; the fuzzing itself does not.
#
# Example:
#   tests/chaos/fuzz.sh                 # every target, 60 s each
#   tests/chaos/fuzz.sh 300 scan_message spool_record
set -euo pipefail

usage() {
    echo "usage: $0 [SECONDS] [TARGET...]   (targets: ${ALL[*]})" >&2
    exit 64
}

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DAEMON_TARGETS=(smtp_command data_reader scan_message spool_record config_load spam_examine spam_model)
AGENTX_TARGETS=(decode)
# milter/fuzz's target is called decode too: the script names it
# milter_decode, and bin_of gives back the name cargo-fuzz knows.
MILTER_TARGETS=(milter_decode)
ALL=("${DAEMON_TARGETS[@]}" "${AGENTX_TARGETS[@]}" "${MILTER_TARGETS[@]}")

SECONDS_EACH=60
if [[ $# -gt 0 ]]; then
    [[ $1 =~ ^[0-9]+$ && $1 -gt 0 ]] || usage
    SECONDS_EACH=$1
    shift
fi
WANTED=("$@")
if [[ ${#WANTED[@]} -eq 0 ]]; then
    WANTED=("${ALL[@]}")
fi
for t in "${WANTED[@]}"; do
    [[ " ${ALL[*]} " == *" $t "* ]] || usage
done

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: cargo-fuzz is not installed. Install it with:" >&2
    echo "    cargo install cargo-fuzz --locked" >&2
    exit 2
fi

export RUSTC_BOOTSTRAP=1
LOCK=${MAILWARD_CARGO_LOCK:-/tmp/mailward-cargo.lock}
HOST=$(rustc -vV | sed -n 's/^host: //p')
# What a run may take per input before libFuzzer calls it a hang (the scan
# gives yara-x 2 s), and in all.
FUZZ_FLAGS=(-fork=1 -ignore_crashes=1 -timeout=30 -rss_limit_mb=2048 -print_final_stats=1
    "-max_total_time=$SECONDS_EACH")

cargo_locked() {
    if command -v flock >/dev/null; then
        flock "$LOCK" cargo "$@"
    else
        cargo "$@"
    fi
}

fuzz_dir_of() {
    if [[ " ${AGENTX_TARGETS[*]} " == *" $1 "* ]]; then
        echo "$ROOT/agentx/fuzz"
    elif [[ " ${MILTER_TARGETS[*]} " == *" $1 "* ]]; then
        echo "$ROOT/milter/fuzz"
    else
        echo "$ROOT/daemon/fuzz"
    fi
}

# The cargo-fuzz target (bin, corpus and artifacts directory) of a script name.
bin_of() {
    if [[ " ${MILTER_TARGETS[*]} " == *" $1 "* ]]; then
        echo "${1#milter_}"
    else
        echo "$1"
    fi
}

count_files() {
    find "$1" -maxdepth 1 -type f "${@:2}" 2>/dev/null | wc -l
}

# Build each fuzz crate once for the targets wanted.
for dir in "$ROOT/daemon/fuzz" "$ROOT/agentx/fuzz" "$ROOT/milter/fuzz"; do
    targets=()
    for t in "${WANTED[@]}"; do
        if [[ $(fuzz_dir_of "$t") == "$dir" ]]; then
            targets+=("$t")
        fi
    done
    [[ ${#targets[@]} -gt 0 ]] || continue
    # Fuzz the dependency versions the product ships with: start from the
    # workspace's lock file (cargo adds libfuzzer-sys and friends).
    if [[ ! -f $dir/Cargo.lock ]]; then
        cp "$ROOT/Cargo.lock" "$dir/Cargo.lock"
    fi
    echo "building ${targets[*]} in ${dir#"$ROOT"/} ..." >&2
    for t in "${targets[@]}"; do
        (cd "$dir" && cargo_locked fuzz build "$(bin_of "$t")") >&2
    done
done

printf '%-14s %8s %12s %12s %8s\n' target seconds executions new_corpus crashes
total_execs=0 total_new=0 total_crashes=0 failed=()
for t in "${WANTED[@]}"; do
    dir=$(fuzz_dir_of "$t")
    corpus="$dir/corpus/$(bin_of "$t")"
    artifacts="$dir/artifacts/$(bin_of "$t")"
    mkdir -p "$corpus" "$artifacts"
    log=$(mktemp "${TMPDIR:-/tmp}/fuzz-$t.XXXXXX")
    corpus_before=$(count_files "$corpus")
    find "$artifacts" -maxdepth 1 -type f | sort >"$log.before"
    start=$(date +%s)
    status=0
    bin="$dir/target/$HOST/release/$(bin_of "$t")"
    "$bin" "${FUZZ_FLAGS[@]}" "-artifact_prefix=$artifacts/" "$corpus" >"$log" 2>&1 ||
        status=$?
    took=$(($(date +%s) - start))
    # Executions: libFuzzer's final statistics, or in fork mode (which
    # prints none) the last progress line, "#N: cov: ...".
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    if [[ -z $execs ]]; then
        execs=$(grep -a -o '^#[0-9]*:' "$log" | tail -n 1 | tr -d '#:')
    fi
    new=$(($(count_files "$corpus") - corpus_before))
    find "$artifacts" -maxdepth 1 -type f | sort >"$log.after"
    mapfile -t found < <(comm -13 "$log.before" "$log.after" |
        grep -E '/(crash|leak|timeout|oom)-[^/]*$' || true)
    crashes=${#found[@]}
    if [[ $status -ne 0 && $crashes -eq 0 ]]; then
        crashes=1 # it stopped without leaving an artifact: count it, show why
    fi
    printf '%-14s %8s %12s %12s %8s\n' "$t" "$took" "${execs:-?}" "$new" "$crashes"
    if [[ $crashes -gt 0 ]]; then
        failed+=("$t")
        echo "  $t: exit $status; log $log; artifacts in ${artifacts#"$ROOT"/}/" >&2
        # Replay each new artifact to name where it fails, once per site.
        for a in "${found[@]}"; do
            "$bin" -timeout=30 "$a" 2>&1 |
                grep -a -m 1 -E 'panicked at|ERROR: (libFuzzer|AddressSanitizer)' |
                sed -E 's/^thread .* panicked at/panicked at/; s/^==[0-9]+== //' || true
        done | sort | uniq -c | sed 's/^/  /' >&2
        if [[ ${#found[@]} -eq 0 ]]; then
            grep -a -E -m 5 'panicked at|ERROR: |SUMMARY' "$log" | sed 's/^/  /' >&2 || true
        fi
    else
        rm -f "$log"
    fi
    rm -f "$log.before" "$log.after"
    total_execs=$((total_execs + ${execs:-0}))
    total_new=$((total_new + new))
    total_crashes=$((total_crashes + crashes))
done

echo "summary: ${#WANTED[@]} targets, ${SECONDS_EACH}s each, $total_execs executions," \
    "$total_new new corpus entries, $total_crashes crashes${failed:+ (${failed[*]})}"
[[ $total_crashes -eq 0 ]]
