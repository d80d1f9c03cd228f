#!/usr/bin/env bash
# Mailward's AgentX subagent against snmpd's own objects, through the same
# snmpd, in one run.
#
#   snmpbulkwalk --SNMP--> snmpd --AgentX (unix socket)--> Mailward   (our subtree)
#   snmpbulkwalk --SNMP--> snmpd                                      (snmpd's own subtree)
#
# The rig is DESIGN 7's (snmpd as AgentX master on a UNIX socket, snmptrapd
# as its trap sink, both reading nothing from /etc or /var). Mailward gets
# MESSAGES messages through an smtp-sink first, so that its recent raw
# records table is full (50 rows) and its subtree has some 500 objects.
# Then the varbinds of Mailward's whole subtree are counted, and among
# snmpd's own subtrees (system, interfaces, IP, TCP, UDP, host resources,
# UCD-SNMP, NET-SNMP, SNMP modules, ...) the one whose count is closest is
# taken for comparison. Each walk is then run ROUNDS times, alternating
# between the two, timed with `date +%s.%N` around the whole command (so a
# walk includes starting snmpbulkwalk: the same fixed cost for both, shown
# on its own line as the time of one snmpget). The table gives the median
# of each, the time per varbind, and the ratio Mailward / snmpd, raw and
# with the fixed cost taken off. The goal is a ratio within 1.5.
#
# For reference, the same AgentX hop with net-snmp's own subagent: a second
# snmpd master without its hrSWRun module (-I -smux,hrSWRunTable) and
# `snmpd -X -I hrSWRunTable,swrun` as its AgentX subagent serving hrSWRun
# (about 7 varbinds per process on the machine), walked in the same rounds.
# Finally the CPU time (utime + stime from /proc/PID/stat) that master and
# subagent spend per varbind is measured over a few more walks of each:
# where the time of an AgentX walk goes.
#
# Usage: bench/snmp-bench.sh       (build first: cargo build --release -p mailward)
# Environment:
#   MAILWARD_BIN   the binary (default target/release/mailward)
#   ROUNDS         timed walks of each (default 21)
#   MESSAGES       messages sent before measuring (default 60)
#   KEEP=1         keep the temporary directory (configs, logs)
# Needs: snmpd, snmptrapd, snmp (snmpbulkwalk, snmpwalk, snmpget) and postfix
# (smtp-source, smtp-sink); see tests/install-deps.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

PATH="$PATH:/usr/sbin:/sbin"
MAILWARD_BIN=${MAILWARD_BIN:-$PWD/target/release/mailward}
ROUNDS=${ROUNDS:-21}
MESSAGES=${MESSAGES:-60}
ROOT=.1.3.6.1.4.1.32473.25

say() { printf '%s\n' "$*"; }
die() {
    printf 'snmp-bench: %s\n' "$*" >&2
    exit 1
}

[ -x "$MAILWARD_BIN" ] || die "$MAILWARD_BIN not found: build it first: cargo build --release -p mailward"
for tool in snmpd:snmpd snmptrapd:snmptrapd snmpbulkwalk:snmp snmpwalk:snmp snmpget:snmp \
    smtp-source:postfix smtp-sink:postfix; do
    command -v "${tool%%:*}" >/dev/null ||
        die "\`${tool%%:*}\` not found: install the Debian package ${tool##*:} (tests/install-deps.sh)"
done

work=$(mktemp -d /tmp/mailward-snmp-bench.XXXXXX)
chmod 755 "$work"
mkdir -p "$work/persist/cert_indexes"
pids=()

cleanup() {
    set +e
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    if [ -n "${KEEP:-}" ]; then
        say "Kept $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# net-snmp reads nothing from /etc or /var, and loads no MIB: OIDs are
# numeric (-On) for both walks.
export SNMP_PERSISTENT_DIR=$work/persist SNMPCONFPATH=$work MIBS= MIBDIRS=

now() { date +%s.%N; }

# free_port (TCP; UDP ports are taken from the same range and checked by
# the daemons binding).
# shellcheck source=bench/lib/peers.sh
. bench/lib/peers.sh

# Waits until COMMAND... succeeds, for at most 30 s.
wait_for() {
    local what=$1 deadline=$((SECONDS + 30))
    shift
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || die "$what: not ready within 30 s (KEEP=1 keeps $work)"
        sleep 0.1
    done
}

snmp_port=$(free_port)
trap_port=$(free_port)
sink_port=$(free_port)
mw_port=$(free_port)
snmp=(-v2c -c public -On "127.0.0.1:$snmp_port")

say "== Mailward's AgentX subtree vs snmpd's own objects: snmpbulkwalk through one snmpd"
say "   machine: $(nproc) cores; $("$MAILWARD_BIN" --version 2>/dev/null || echo mailward); $(snmpd -v 2>/dev/null | grep -o 'version: *[0-9.]*' | head -n 1 | sed 's/version: */net-snmp /')"
say "   working directory: $work"

# The rig of DESIGN 7.
cat >"$work/snmpd.conf" <<EOF
agentAddress   udp:127.0.0.1:$snmp_port
rocommunity    public 127.0.0.1
master         agentx
agentXSocket   unix:$work/agentx.sock
agentXPerms    0600 0700
trap2sink      127.0.0.1:$trap_port public
EOF
printf 'authCommunity log public\nformat2 TRAP %%b %%v\\n\n' >"$work/snmptrapd.conf"
snmptrapd -f -C -c "$work/snmptrapd.conf" -X -n -On -Lf "$work/traps.log" -p "$work/snmptrapd.pid" \
    "udp:127.0.0.1:$trap_port" >"$work/snmptrapd.out" 2>&1 &
pids+=($!)
snmpd -f -Lo -C -c "$work/snmpd.conf" -I -smux -p "$work/snmpd.pid" >"$work/snmpd.out" 2>&1 &
snmpd_pid=$!
pids+=($!)
wait_for snmpd snmpget -t 0.5 -r 0 "${snmp[@]}" .1.3.6.1.2.1.1.3.0
say "-- snmpd on udp:127.0.0.1:$snmp_port, AgentX master on $work/agentx.sock"

# The next hop: counts, keeps nothing.
sink_user=()
[ "$(id -u)" -ne 0 ] || sink_user=(-u postfix)
smtp-sink "${sink_user[@]}" -c "127.0.0.1:$sink_port" 100 >"$work/sink.counter" 2>"$work/sink.err" &
pids+=($!)

mkdir -p "$work/mailward"
cat >"$work/mailward/mailward.toml" <<EOF
[server]
hostname = "mailward-bench.test"
# Whoever runs the bench (root must say so: [server] user).
user = "$(id -un)"
postmaster = "postmaster@mailward-bench.test"
data_dir = "$work/mailward/data"

[network]
listen_on = ["127.0.0.1:$mw_port"]
protected_domains = ["example.com"]
relay_networks = ["127.0.0.0/8"]

[[route]]
match = "*"
to = "[127.0.0.1:$sink_port]"

[metrics]
listen = ""

[agentx]
socket = "unix:$work/agentx.sock"
ping_interval = "1s"
timeout = "1s"
EOF
(cd "$work/mailward" && exec "$MAILWARD_BIN" run --config "$work/mailward/mailward.toml" >"$work/mailward/mailward.log" 2>&1) &
mw_pid=$!
pids+=($!)
wait_for "Mailward's subtree" sh -c "snmpget -t 0.5 -r 0 ${snmp[*]} $ROOT.1.4.1.0 | grep -q STRING"
say "-- Mailward on 127.0.0.1:$mw_port, subtree $ROOT registered"

smtp-source -s 5 -m "$MESSAGES" -l 1024 -f bench@example.com -t sink@example.com "127.0.0.1:$mw_port" \
    >"$work/smtp-source.log" 2>&1 || die "smtp-source failed; see $work/smtp-source.log (KEEP=1 keeps it)"
sink_count() { tr '\r' '\n' <"$work/sink.counter" | grep -o 'mesg=[0-9]*' | tail -n 1 | cut -d= -f2; }
wait_for "the $MESSAGES messages at the sink" sh -c "[ \"\$(tr '\\r' '\\n' <'$work/sink.counter' | grep -o 'mesg=[0-9]*' | tail -n 1 | cut -d= -f2)\" -ge $MESSAGES ]"
say "-- $(sink_count) messages relayed to the sink, so the tables have rows"

# Varbinds of a bulk walk of SUBTREE (snmpbulkwalk stops at its end).
count() { snmpbulkwalk "${snmp[@]}" "$1" 2>/dev/null | grep -c ' = ' || true; }

# The reference rig: net-snmp's own AgentX subagent behind a second master.
ref_port=$(free_port)
ref_dir=$work/ref
mkdir -p "$ref_dir/persist/cert_indexes"
cat >"$ref_dir/snmpd.conf" <<EOF
agentAddress   udp:127.0.0.1:$ref_port
rocommunity    public 127.0.0.1
master         agentx
agentXSocket   unix:$ref_dir/agentx.sock
agentXPerms    0600 0700
EOF
printf 'agentXSocket   unix:%s/agentx.sock\n' "$ref_dir" >"$ref_dir/subagent.conf"
ref=(-v2c -c public -On "127.0.0.1:$ref_port")
REF_OID=.1.3.6.1.2.1.25.4
SNMP_PERSISTENT_DIR=$ref_dir/persist SNMPCONFPATH=$ref_dir \
    snmpd -f -Lo -C -c "$ref_dir/snmpd.conf" -I -smux,hrSWRunTable -p "$ref_dir/snmpd.pid" >"$ref_dir/snmpd.out" 2>&1 &
ref_master_pid=$!
pids+=($!)
wait_for "the reference snmpd" snmpget -t 0.5 -r 0 "${ref[@]}" .1.3.6.1.2.1.1.3.0
SNMP_PERSISTENT_DIR=$ref_dir/persist SNMPCONFPATH=$ref_dir \
    snmpd -f -Lo -C -c "$ref_dir/subagent.conf" -X -I hrSWRunTable,swrun -p "$ref_dir/subagent.pid" >"$ref_dir/subagent.out" 2>&1 &
ref_sub_pid=$!
pids+=($!)
wait_for "net-snmp's subagent (hrSWRun)" sh -c "snmpgetnext -t 0.5 -r 0 ${ref[*]} $REF_OID | grep -q '^$REF_OID'"
ref_count() { snmpbulkwalk "${ref[@]}" "$REF_OID" 2>/dev/null | grep -c ' = ' || true; }

# The subagent serves a view of the statistics rebuilt at most once a
# second: count once that has passed, until two counts agree.
sleep 1.2
mw_count=$(count "$ROOT")
for _ in 1 2 3 4 5; do
    sleep 1.2
    again=$(count "$ROOT")
    [ "$again" != "$mw_count" ] || break
    mw_count=$again
done
[ "$mw_count" -gt 0 ] || die "snmpbulkwalk of $ROOT returned nothing; see $work/mailward/mailward.log"

# snmpd's own subtrees; the one with the count closest to ours is used.
candidates=(
    ".1.3.6.1.2.1.1:system"
    ".1.3.6.1.2.1.2:interfaces"
    ".1.3.6.1.2.1.4:ip"
    ".1.3.6.1.2.1.4.20:ipAddrTable"
    ".1.3.6.1.2.1.4.24:ipForward"
    ".1.3.6.1.2.1.4.34:ipAddressTable"
    ".1.3.6.1.2.1.4.35:ipNetToPhysicalTable"
    ".1.3.6.1.2.1.5:icmp"
    ".1.3.6.1.2.1.6:tcp"
    ".1.3.6.1.2.1.7:udp"
    ".1.3.6.1.2.1.11:snmp"
    ".1.3.6.1.2.1.25.1:hrSystem"
    ".1.3.6.1.2.1.25.2:hrStorage"
    ".1.3.6.1.2.1.25.3:hrDevice"
    ".1.3.6.1.2.1.25.4:hrSWRun"
    ".1.3.6.1.2.1.25.5:hrSWRunPerf"
    ".1.3.6.1.2.1.31:ifMIB"
    ".1.3.6.1.2.1.92:notificationLogMIB"
    ".1.3.6.1.4.1.2021:ucdavis"
    ".1.3.6.1.4.1.8072:netSnmp"
    ".1.3.6.1.6.3:snmpModules"
    ".1.3.6.1.2.1:mib-2"
)
best=
best_count=0
best_gap=
say ""
say "Candidate snmpd subtrees (varbinds), Mailward's subtree has $mw_count:"
for c in "${candidates[@]}"; do
    oid=${c%%:*}
    n=$(count "$oid")
    printf '   %-24s %-22s %6s\n' "${c##*:}" "$oid" "$n"
    [ "$n" -gt 0 ] || continue
    gap=$((n > mw_count ? n - mw_count : mw_count - n))
    if [ -z "$best_gap" ] || [ "$gap" -lt "$best_gap" ]; then
        best=$c
        best_count=$n
        best_gap=$gap
    fi
done
[ -n "$best" ] || die "snmpd serves none of the candidate subtrees"
own_oid=${best%%:*}
own_name=${best##*:}

# Times one run of COMMAND... (seconds, stdout discarded).
time_it() {
    local a b
    a=$(now)
    "$@" >/dev/null 2>&1
    b=$(now)
    awk -v a="$a" -v b="$b" 'BEGIN { printf "%.6f\n", b - a }'
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.6f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

: >"$work/t.mw.bulk"
: >"$work/t.own.bulk"
: >"$work/t.mw.walk"
: >"$work/t.own.walk"
: >"$work/t.get"
: >"$work/t.ref.bulk"
say ""
say "-- warming up, then $ROUNDS timed rounds (alternating)"
for _ in 1 2; do
    snmpbulkwalk "${snmp[@]}" "$ROOT" >/dev/null
    snmpbulkwalk "${snmp[@]}" "$own_oid" >/dev/null
    snmpbulkwalk "${ref[@]}" "$REF_OID" >/dev/null
done
for _ in $(seq 1 "$ROUNDS"); do
    time_it snmpbulkwalk "${snmp[@]}" "$ROOT" >>"$work/t.mw.bulk"
    time_it snmpbulkwalk "${snmp[@]}" "$own_oid" >>"$work/t.own.bulk"
    time_it snmpwalk "${snmp[@]}" "$ROOT" >>"$work/t.mw.walk"
    time_it snmpwalk "${snmp[@]}" "$own_oid" >>"$work/t.own.walk"
    time_it snmpget "${snmp[@]}" .1.3.6.1.2.1.1.3.0 >>"$work/t.get"
    time_it snmpbulkwalk "${ref[@]}" "$REF_OID" >>"$work/t.ref.bulk"
done

# Checked after the timing: both walks still return what was counted.
mw_after=$(count "$ROOT")
own_after=$(count "$own_oid")
ref_n=$(ref_count)

fixed=$(median <"$work/t.get")
row() {
    local label=$1 mw own
    mw=$(median <"$work/t.mw.$2")
    own=$(median <"$work/t.own.$2")
    awk -v l="$label" -v mw="$mw" -v own="$own" -v nm="$mw_count" -v no="$best_count" -v f="$fixed" 'BEGIN {
        ratio = (own > 0) ? mw / own : 0
        net = (own - f > 0) ? (mw - f) / (own - f) : 0
        per = (nm > 0 && no > 0) ? ((mw - f) / nm) / ((own - f) / no) : 0
        printf "%-13s %10.1f %10.1f %8.2f %10.1f %10.1f %8.2f %8.2f\n", l, mw * 1000, own * 1000, ratio,
            (mw - f) / nm * 1e6, (own - f) / no * 1e6, net, per
    }'
}

say ""
[ "$mw_after" = "$mw_count" ] || say "WARNING: Mailward's subtree changed during the rounds ($mw_count -> $mw_after varbinds)."
say "Mailward: $ROOT, $mw_count varbinds ($mw_after after the rounds)."
say "snmpd:    $own_name ($own_oid), $best_count varbinds ($own_after after the rounds)."
say "Medians of $ROUNDS runs; 'fixed' = one snmpget of sysUpTime.0 (process start + one round trip): $(awk -v f="$fixed" 'BEGIN { printf "%.1f ms", f * 1000 }')."
say "net = minus the fixed cost; per-varbind times are net."
printf '%-13s %10s %10s %8s %10s %10s %8s %8s\n' walk "Mailward" "snmpd" "ratio" "MW us/vb" "snmpd us/vb" "net" "net/vb"
printf '%-13s %10s %10s %8s %10s %10s %8s %8s\n' "" "ms" "ms" "" "" "" "ratio" "ratio"
row snmpbulkwalk bulk
row snmpwalk walk
say ""
ref_t=$(median <"$work/t.ref.bulk")
mw_t=$(median <"$work/t.mw.bulk")
own_t=$(median <"$work/t.own.bulk")
awk -v r="$ref_t" -v n="$ref_n" -v f="$fixed" -v mw="$mw_t" -v nm="$mw_count" -v own="$own_t" -v no="$best_count" 'BEGIN {
    printf "Reference: net-snmp'"'"'s own AgentX subagent (snmpd -X) serving hrSWRun, %d varbinds:\n", n
    printf "   snmpbulkwalk %.1f ms, %.1f us/vb net; per varbind that is %.2f x snmpd'"'"'s own subtree, and Mailward is %.2f x it\n",
        r * 1000, (r - f) / n * 1e6, ((r - f) / n) / ((own - f) / no), ((mw - f) / nm) / ((r - f) / n)
}'

# CPU per varbind: utime + stime (clock ticks) of each process over CPU_WALKS walks.
CPU_WALKS=20
hz=$(getconf CLK_TCK)
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
cpu_per_vb() { # PIDS... -- WALK ARGS...: prints microseconds per varbind for each pid
    local -a ps=() before=()
    while [ "$1" != -- ]; do ps+=("$1"); shift; done
    shift
    local n p i
    n=$(snmpbulkwalk "$@" 2>/dev/null | grep -c ' = ' || true)
    for p in "${ps[@]}"; do before+=("$(ticks "$p")"); done
    for _ in $(seq 1 "$CPU_WALKS"); do snmpbulkwalk "$@" >/dev/null 2>&1; done
    i=0
    for p in "${ps[@]}"; do
        awk -v a="${before[$i]}" -v b="$(ticks "$p")" -v hz="$hz" -v n="$n" -v w="$CPU_WALKS" \
            'BEGIN { printf " %8.1f", (b - a) / hz / (n * w) * 1e6 }'
        i=$((i + 1))
    done
}
say "CPU per varbind over $CPU_WALKS more walks of each (us, utime + stime; clock ticks of 1/$hz s):"
printf '   %-44s %8s %8s\n' "" master subagent
printf '   %-44s' "Mailward's subtree (snmpd + Mailward)"; cpu_per_vb "$snmpd_pid" "$mw_pid" -- "${snmp[@]}" "$ROOT"; say ""
printf '   %-44s' "snmpd's $own_name (no subagent)"; cpu_per_vb "$snmpd_pid" -- "${snmp[@]}" "$own_oid"; printf ' %8s\n' -
printf '   %-44s' "hrSWRun via net-snmp's subagent"; cpu_per_vb "$ref_master_pid" "$ref_sub_pid" -- "${ref[@]}" "$REF_OID"; say ""
say ""
say "Goal: snmpbulkwalk ratio within 1.5 (Mailward / snmpd)."
