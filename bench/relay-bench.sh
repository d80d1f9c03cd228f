#!/usr/bin/env bash
# Mailward against Postfix as an SMTP relay, on this machine, in one run.
#
#   smtp-source --SMTP--> Mailward          --SMTP--> smtp-sink
#   smtp-source --SMTP--> Postfix (private) --SMTP--> smtp-sink
#
# For 1 KiB and 100 KiB messages at 1, 10 and 50 parallel client sessions,
# the same load goes through each relay in turn, and the rate is measured
# from the first connection of smtp-source until the sink has received the
# last message (not merely until smtp-source is done: a relay queues). The
# table shows msgs/s for both and the ratio Mailward/Postfix.
#
# Mailward scans every message as it does by default: anti-virus (the
# built-in bases), the content filter and the spam check, here with its
# network tests on and answered by a local DNS server (dnsmasq on a free
# loopback port): a DNSBL zone asked at connect, SPF at MAIL FROM (an
# ip4:127.0.0.1 record for example.com), DKIM and DMARC after DATA, a URI
# list, and sender black and white lists. For that the client is not in
# relay_networks (the recipients are in a protected domain), since Mailward
# asks SPF and DKIM only of clients from outside. Answers carry a 300 s TTL,
# as real zones do, so a resolver may cache them. NETWORK_TESTS=0 runs the
# spam check without them (no DNS at all).
# Both relays run with their defaults, except what the load needs:
# Mailward incoming_sessions_per_ip = 100 (50 sessions come from one
# address), Postfix smtpd_client_connection_count_limit = 0. Each keeps its
# queue on the same file system (a temporary directory) and fsyncs as it
# normally does. The Postfix instance is private: its own config_directory
# and queue_directory under the temporary directory, inet_interfaces =
# 127.0.0.1, relayhost = the sink, no local delivery, smtpd on a free port
# via master.cf, started with `postfix -c DIR start` (as root; its daemons
# run as the `postfix` user the package creates) and stopped at the end.
# No system Postfix is touched.
#
# Usage: bench/relay-bench.sh           (build first: cargo build --release -p mailward)
# Environment:
#   MAILWARD_BIN   the binary (default target/release/mailward)
#   SMALL_COUNT    messages per 1 KiB run (default 2000)
#   LARGE_COUNT    messages per 100 KiB run (default 300)
#   SESSIONS       client sessions to try (default "1 10 50")
#   CASE_TIMEOUT   seconds one run may take (default 600)
#   KEEP=1         keep the temporary directory (logs, configs)
#   NETWORK_TESTS  1 (default): DNSBL, SPF, DKIM/DMARC, URI list and lists
#                  on, DNS from a local dnsmasq; 0: off
#   SPAM_MODEL     a spam model file (`mailward spam export`) installed as
#                  the classifier's base before the run, so that the
#                  classifier scores every message (without it the spam
#                  check runs its rules and heuristics only)
# Needs: postfix (smtp-source, smtp-sink, postfix), see tests/install-deps.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

PATH="$PATH:/usr/sbin:/sbin"
MAILWARD_BIN=${MAILWARD_BIN:-$PWD/target/release/mailward}
SMALL_COUNT=${SMALL_COUNT:-2000}
LARGE_COUNT=${LARGE_COUNT:-300}
SESSIONS=${SESSIONS:-"1 10 50"}
CASE_TIMEOUT=${CASE_TIMEOUT:-600}

say() { printf '%s\n' "$*"; }
die() {
    printf 'relay-bench: %s\n' "$*" >&2
    exit 1
}

[ -x "$MAILWARD_BIN" ] || die "$MAILWARD_BIN not found: build it first: cargo build --release -p mailward"
for tool in smtp-source smtp-sink postfix; do
    command -v "$tool" >/dev/null || die "\`$tool\` not found: install the Debian package postfix (tests/install-deps.sh)"
done
with_postfix=1
if [ "$(id -u)" -ne 0 ]; then
    say "Not root: the private Postfix cannot be started, so only Mailward is measured."
    with_postfix=0
fi

work=$(mktemp -d /tmp/mailward-bench.XXXXXX)
chmod 755 "$work"
mailward_pid=
sink_pid=
dns_pid=
postfix_dir=
NETWORK_TESTS=${NETWORK_TESTS:-1}

cleanup() {
    set +e
    if [ -n "$mailward_pid" ]; then
        kill -TERM "$mailward_pid" 2>/dev/null
        wait "$mailward_pid" 2>/dev/null
    fi
    if [ -n "$postfix_dir" ]; then
        private_postfix_stop "$postfix_dir"
    fi
    if [ -n "$sink_pid" ]; then
        kill "$sink_pid" 2>/dev/null
        wait "$sink_pid" 2>/dev/null
    fi
    if [ -n "$dns_pid" ]; then
        kill "$dns_pid" 2>/dev/null
        wait "$dns_pid" 2>/dev/null
    fi
    if [ -n "${KEEP:-}" ]; then
        say "Kept $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }

# free_port, wait_for_220, private_postfix_start/_stop.
# shellcheck source=bench/lib/peers.sh
. bench/lib/peers.sh

# Messages the sink has received so far (its -c counter line is "sess=N
# quit=N mesg=N", rewritten in place with \r).
sink_count() {
    local n
    n=$(tr '\r' '\n' <"$work/sink.counter" | grep -o 'mesg=[0-9]*' | tail -n 1 | cut -d= -f2)
    echo "${n:-0}"
}

# Runs COUNT messages of SIZE bytes over SESSIONS sessions into PORT and
# prints msgs/s until all are at the sink.
measure() {
    local port=$1 size=$2 count=$3 sessions=$4 name=$5
    local base target start end deadline
    base=$(sink_count)
    target=$((base + count))
    start=$(now)
    if ! smtp-source -s "$sessions" -m "$count" -l "$size" -f bench@example.com -t sink@example.com \
        "127.0.0.1:$port" >>"$work/smtp-source.log" 2>&1; then
        die "smtp-source into $name failed; see $work/smtp-source.log (KEEP=1 keeps it)"
    fi
    deadline=$((SECONDS + CASE_TIMEOUT))
    while [ "$(sink_count)" -lt "$target" ]; do
        [ "$SECONDS" -lt "$deadline" ] ||
            die "$name: only $(($(sink_count) - base)) of $count messages reached the sink in ${CASE_TIMEOUT}s"
        sleep 0.02
    done
    end=$(now)
    awk -v n="$count" -v a="$start" -v b="$end" 'BEGIN { printf "%.0f", n / (b - a) }'
}

say "== Mailward vs Postfix as SMTP relays: smtp-source -> relay -> smtp-sink"
say "   machine: $(nproc) cores; $("$MAILWARD_BIN" --version 2>/dev/null || echo mailward); Postfix $(postconf -d -h mail_version 2>/dev/null || echo '?')"
say "   working directory: $work"

# The sink: counts, keeps nothing.
sink_port=$(free_port)
sink_user=()
[ "$(id -u)" -ne 0 ] || sink_user=(-u postfix)
smtp-sink "${sink_user[@]}" -c "127.0.0.1:$sink_port" 1000 >"$work/sink.counter" 2>"$work/sink.err" &
sink_pid=$!
wait_for_220 "$sink_port" smtp-sink
say "-- smtp-sink (counting only) on 127.0.0.1:$sink_port"

# The DNS of the network tests.
relay_networks='["127.0.0.0/8"]'
network_tests=""
if [ "$NETWORK_TESTS" = 1 ]; then
    command -v dnsmasq >/dev/null || die "\`dnsmasq\` not found: install the Debian package dnsmasq-base (tests/install-deps.sh)"
    dns_port=$(free_port)
    dnsmasq --no-daemon --port="$dns_port" --listen-address=127.0.0.1 --bind-interfaces \
        --no-resolv --no-hosts --no-poll --conf-file=/dev/null --pid-file= \
        --local=/test/ --local=/example.com/ --log-queries --local-ttl=300 --neg-ttl=300 \
        "--txt-record=example.com,v=spf1 ip4:127.0.0.1 -all" \
        --host-record=ready.bench.test,127.0.0.1 \
        >"$work/dnsmasq.log" 2>&1 &
    dns_pid=$!
    sleep 0.5
    kill -0 "$dns_pid" 2>/dev/null || die "dnsmasq did not start; see $work/dnsmasq.log (KEEP=1 keeps it)"
    relay_networks='[]'
    network_tests="
[access]
dns_resolver = \"127.0.0.1:$dns_port\"

[spam]
dnsbl = [\"bl.bench.test:2.5\"]
surbl = [\"uri.bench.test:3.5\"]
blacklist = [\"*@spammer.bench.test\"]
whitelist = [\"*@partner.bench.test\"]
spf = \"score\"
dkim = true
"
    say "-- dnsmasq on 127.0.0.1:$dns_port: DNSBL, SPF, DMARC and URI-list look-ups answered locally"
fi

# Mailward.
mw_port=$(free_port)
# The data directory too: `spam import` below writes into it before the
# daemon's first start, and refuses to create a data directory itself.
mkdir -p "$work/mailward/data"
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
relay_networks = $relay_networks

[limits]
incoming_sessions_per_ip = 100

[[route]]
match = "*"
to = "[127.0.0.1:$sink_port]"

[metrics]
listen = ""

[agentx]
socket = "tcp:127.0.0.1:1"
$network_tests
EOF
if [ -n "${SPAM_MODEL:-}" ]; then
    "$MAILWARD_BIN" spam import --base "$SPAM_MODEL" --config "$work/mailward/mailward.toml" >/dev/null \
        || die "cannot install the spam model $SPAM_MODEL"
    say "-- Spam classifier base: $SPAM_MODEL"
fi
(cd "$work/mailward" && exec "$MAILWARD_BIN" run --config "$work/mailward/mailward.toml" >"$work/mailward/mailward.log" 2>&1) &
mailward_pid=$!
wait_for_220 "$mw_port" Mailward
say "-- Mailward on 127.0.0.1:$mw_port (config $work/mailward/mailward.toml, log mailward/mailward.log)"

# Postfix, private instance.
pf_port=
if [ "$with_postfix" = 1 ]; then
    pf_port=$(free_port)
    postfix_dir=$work/postfix
    private_postfix_start "$postfix_dir" "$pf_port" "$sink_port"
    wait_for_220 "$pf_port" Postfix
    say "-- Postfix on 127.0.0.1:$pf_port (postfix -c $postfix_dir/etc; log postfix/maillog)"
fi

say "-- warming up (50 messages each, not counted)"
measure "$mw_port" 1024 50 5 Mailward >/dev/null
[ -z "$pf_port" ] || measure "$pf_port" 1024 50 5 Postfix >/dev/null

say ""
say "Rates are messages per second until the sink has them all."
printf '%-9s %8s %9s %15s %15s %17s\n' size sessions messages "Mailward msg/s" "Postfix msg/s" "Mailward/Postfix"
for spec in "1 KiB:1024:$SMALL_COUNT" "100 KiB:102400:$LARGE_COUNT"; do
    IFS=: read -r label bytes count <<<"$spec"
    for sessions in $SESSIONS; do
        mw_rate=$(measure "$mw_port" "$bytes" "$count" "$sessions" Mailward)
        if [ -n "$pf_port" ]; then
            pf_rate=$(measure "$pf_port" "$bytes" "$count" "$sessions" Postfix)
            ratio=$(awk -v a="$mw_rate" -v b="$pf_rate" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
        else
            pf_rate=-
            ratio=-
        fi
        printf '%-9s %8s %9s %15s %15s %17s\n' "$label" "$sessions" "$count" "$mw_rate" "$pf_rate" "$ratio"
    done
done
say ""
if [ "$NETWORK_TESTS" = 1 ]; then
    # Proof that the network tests ran, from Mailward's own log lines.
    spf=$(grep -c 'tests=.*SPF_PASS' "$work/mailward/mailward.log" || true)
    dnsq=$(grep -c 'query\[' "$work/dnsmasq.log" || true)
    say "Network tests: SPF_PASS on $spf messages; dnsmasq was asked $dnsq times."
fi
say "Done; stopping Mailward, Postfix and the sink."
