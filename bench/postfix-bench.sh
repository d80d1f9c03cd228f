#!/usr/bin/env bash
# What a content filter costs a Postfix relay: Postfix alone, then Postfix
# with Mailward (after-queue, then as a milter), and, where installed, with
# clamav-milter and with amavisd-new, one setup after the other, the same
# load for each, in one run.
#
#   postfix        smtp-source -> Postfix (private) ----------------------> smtp-sink
#   after-queue    smtp-source -> Postfix -> Mailward -> Postfix (re-inject) -> smtp-sink
#                  (content_filter = mailward:[127.0.0.1]:PORT, XFORWARD on)
#   milter         smtp-source -> Postfix (smtpd_milters = Mailward) -------> smtp-sink
#                  (`mailward milter`: no SMTP listener)
#   clamav-milter  smtp-source -> Postfix (smtpd_milters = clamav-milter,
#                  which asks a private clamd) --------------------------> smtp-sink
#   amavis         smtp-source -> Postfix -> amavisd-new (clamd, SpamAssassin)
#                  -> Postfix (re-inject) --------------------------------> smtp-sink
#
# For 1 KiB and 100 KiB messages at 1 and 10 parallel client sessions, the
# rate is measured from the start of smtp-source until the sink has
# received the last message (a relay queues: smtp-source finishing is not
# the end). The table shows msgs/s for every setup and its ratio to
# Postfix alone at the same size and sessions.
#
# The after-queue transports (to Mailward and to amavisd-new) are
#   NAME unix - - n - 10 smtp -o smtp_send_xforward_command=yes
#     -o disable_mime_output_conversion=yes -o smtp_connection_reuse_count_limit=90
# with a re-injection smtpd on another port (no filter, no checks,
# XFORWARD allowed from 127.0.0.0/8); the milters are smtpd_milters with
# milter_default_action = tempfail.
#
# Each setup gets a new private Postfix (its own config_directory and
# queue_directory under the temporary directory, inet_interfaces =
# 127.0.0.1, relayhost = the sink, no local delivery, chroot off, started
# with `postfix -c DIR start`, as root) and its own filter processes; they
# are stopped before the next setup starts. Postfix's queue is empty before
# every timed case. Every port is a free one on 127.0.0.1. No system
# Postfix, clamd or amavisd is touched, and no system service is started.
#
# Scanning, kept comparable:
#   Mailward    its defaults: anti-virus with its built-in bases (5 YARA
#               rules: EICAR, the ClamAV test file, 3 file-name rules), the
#               content filter and the spam check (rules and heuristics; the
#               classifier is untrained and abstains), with the spam
#               check's network tests off (no DNS here): [spam] dnsbl = [],
#               surbl = [], spf = "off", dkim = false.
#   ClamAV      clamd with ClamAV's defaults, but only a database written
#               here (bench.ndb, 3 body signatures: the EICAR test file and
#               the two ClamAV-test-file rules of Mailward's bases; no
#               freshclam, no official database). ClamAV cannot load
#               Mailward's YARA file as it is (external variables such as
#               `filename`), so its 3 file-name rules have no ClamAV
#               counterpart. clamav-milter: OnInfected Reject, AddHeader
#               Replace.
#   amavisd-new the same clamd, and SpamAssassin with Debian's shipped
#               rules, local tests only (no DNS, Razor, Pyzor, DCC), Bayes
#               off (Mailward's classifier is untrained too), spam headers
#               added to every message (as Mailward does), DKIM off.
# Before anything is timed, each filter gets one message carrying the EICAR
# test file and must name it in its log (the check that it really scans
# with those signatures); the rate runs use clean messages (smtp-source's).
#
# Usage: bench/postfix-bench.sh [-h|--help]
#        (build first: cargo build --release -p mailward)
# Example:
#   SMALL_COUNT=300 LARGE_COUNT=100 SETUPS="postfix milter" KEEP=1 bench/postfix-bench.sh
# Environment:
#   MAILWARD_BIN   the binary (default target/release/mailward)
#   SMALL_COUNT    messages per 1 KiB case (default 1000)
#   LARGE_COUNT    messages per 100 KiB case (default 200)
#   SESSIONS       client sessions to try (default "1 10")
#   SETUPS         setups to run, in order (default "postfix after-queue
#                  milter clamav-milter amavis"; the ratio needs postfix);
#                  one whose programs are not installed is left out, with
#                  a line that says so
#   MILTER_SOCKET  inet (default): the milters listen on a TCP port on
#                  127.0.0.1; unix: on a Unix socket under the temporary
#                  directory. Compare the two: over TCP a milter that
#                  leaves a macro packet unanswered (no DATA event) can
#                  make each message wait (Nagle on Postfix's side,
#                  delayed ACK on the milter's, about 40 ms a stall):
#                  Mailward had one such stall per message and made about
#                  20 msgs/s in one session; clamav-milter's row in
#                  docs/postfix.md (11 msgs/s) is about 90 ms per message
#   WARMUP         messages sent through each setup first, not counted
#                  (default 50)
#   CASE_TIMEOUT   seconds one case may take (default 300)
#   KEEP=1         keep the temporary directory (configs and logs)
# Needs: root (the private Postfix's daemons become `postfix`), postfix
# (postfix, smtp-source, smtp-sink; see tests/install-deps.sh). Optional:
# clamav-daemon and clamav-milter (the clamav-milter row), amavisd-new and
# spamassassin with clamav-daemon (the amavis row); install them with
# `apt-get install --no-install-recommends` and leave their system
# services disabled: this script runs private instances.
set -euo pipefail
cd "$(dirname "$0")/.."

case ${1:-} in
-h | --help)
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
    exit 0
    ;;
"") ;;
*)
    printf 'postfix-bench: unknown argument %s (see --help)\n' "$1" >&2
    exit 64
    ;;
esac

# Defined before the first check that may use them.
say() { printf '%s\n' "$*"; }
die() {
    printf 'postfix-bench: %s\n' "$*" >&2
    exit 1
}

PATH="$PATH:/usr/sbin:/sbin"
MAILWARD_BIN=${MAILWARD_BIN:-$PWD/target/release/mailward}
SMALL_COUNT=${SMALL_COUNT:-1000}
LARGE_COUNT=${LARGE_COUNT:-200}
SESSIONS=${SESSIONS:-"1 10"}
SETUPS=${SETUPS:-"postfix after-queue milter clamav-milter amavis"}
WARMUP=${WARMUP:-50}
MILTER_SOCKET=${MILTER_SOCKET:-inet}
case $MILTER_SOCKET in inet | unix) ;; *) die "MILTER_SOCKET must be inet or unix, not '$MILTER_SOCKET'" ;; esac
CASE_TIMEOUT=${CASE_TIMEOUT:-300}

[ "$(id -u)" -eq 0 ] || die "must run as root: the private Postfix's daemons switch to the postfix user"
for tool in smtp-source smtp-sink postfix postconf; do
    command -v "$tool" >/dev/null || die "\`$tool\` not found: install the Debian package postfix (tests/install-deps.sh)"
done
case " $SETUPS " in
*" after-queue "* | *" milter "*)
    [ -x "$MAILWARD_BIN" ] || die "$MAILWARD_BIN not found: build it first: cargo build --release -p mailward"
    ;;
esac

work=$(mktemp -d /tmp/mailward-postfix-bench.XXXXXX)
chmod 755 "$work"
sink_pid=
pf_dir=
# Filter processes of the running setup: "pid name" per line.
filters=()

# Stops the running setup: Postfix first (no new mail), then its filters.
teardown() {
    local pid entry i
    if [ -n "$pf_dir" ]; then
        private_postfix_stop "$pf_dir"
        pf_dir=
    fi
    for entry in "${filters[@]}"; do
        pid=${entry%% *}
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    filters=()
}

cleanup() {
    set +e
    teardown
    if [ -n "$sink_pid" ]; then
        kill "$sink_pid" 2>/dev/null
        wait "$sink_pid" 2>/dev/null
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

# Waits until 127.0.0.1:PORT accepts a TCP connection (a milter says
# nothing first). PID: the process that should be listening.
wait_for_tcp() {
    local port=$1 what=$2 pid=$3 secs=${4:-30} deadline
    deadline=$((SECONDS + secs))
    while [ "$SECONDS" -lt "$deadline" ]; do
        kill -0 "$pid" 2>/dev/null || die "$what exited before it listened (see its log under $work; KEEP=1 keeps it)"
        if { exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null; then
            exec 3<&- 3>&-
            return 0
        fi
        sleep 0.1
    done
    die "$what did not listen on port $port within $secs s"
}

# Waits until the Unix socket PATH exists, and lets anyone connect (the
# Postfix smtpd runs as postfix). PID: the process that makes it.
wait_for_socket() {
    local path=$1 what=$2 pid=$3 deadline=$((SECONDS + 30))
    until [ -S "$path" ]; do
        kill -0 "$pid" 2>/dev/null || die "$what exited before it listened (see its log under $work; KEEP=1 keeps it)"
        [ "$SECONDS" -lt "$deadline" ] || die "$what made no socket $path within 30 s"
        sleep 0.1
    done
    chmod 666 "$path"
}

# Sets milter_listen (the milter's syntax), milter_postfix (smtpd_milters)
# for a milter under DIR, by MILTER_SOCKET.
milter_address() {
    local dir=$1 port
    if [ "$MILTER_SOCKET" = unix ]; then
        milter_listen=unix:$dir/milter.sock
        milter_postfix=unix:$dir/milter.sock
    else
        port=$(free_port)
        milter_listen=inet:$port@127.0.0.1
        milter_postfix=inet:127.0.0.1:$port
    fi
}

# Waits until the milter at milter_listen accepts connections.
wait_for_milter() {
    local what=$1 pid=$2
    case $milter_listen in
    unix:*) wait_for_socket "${milter_listen#unix:}" "$what" "$pid" ;;
    inet:*)
        local port=${milter_listen#inet:}
        wait_for_tcp "${port%@*}" "$what" "$pid"
        ;;
    esac
}

# Messages the sink has received so far (its -c counter line is "sess=N
# quit=N mesg=N", rewritten in place with \r).
sink_count() {
    local n
    n=$(tr '\r' '\n' <"$work/sink.counter" | grep -o 'mesg=[0-9]*' | tail -n 1 | cut -d= -f2)
    echo "${n:-0}"
}

# Files in the running Postfix's queue (maildrop to deferred, and hold).
queue_files() {
    find "$pf_dir/spool/maildrop" "$pf_dir/spool/incoming" "$pf_dir/spool/active" \
        "$pf_dir/spool/deferred" "$pf_dir/spool/hold" -type f 2>/dev/null | wc -l
}

# Waits until the running Postfix's queue is empty.
wait_queue_empty() {
    local name=$1 deadline=$((SECONDS + 120))
    while [ "$(queue_files)" -gt 0 ]; do
        [ "$SECONDS" -lt "$deadline" ] ||
            die "$name: Postfix's queue still holds $(queue_files) files after 120 s; see $pf_dir/maillog (KEEP=1 keeps it)"
        sleep 0.05
    done
}

# Waits until the sink has TARGET messages.
wait_sink() {
    local target=$1 name=$2 secs=$3 deadline
    deadline=$((SECONDS + secs))
    while [ "$(sink_count)" -lt "$target" ]; do
        [ "$SECONDS" -lt "$deadline" ] ||
            die "$name: the sink has $(sink_count) of $target messages after ${secs}s; see $work (KEEP=1 keeps it)"
        sleep 0.02
    done
}

# Runs COUNT messages of SIZE bytes over SESSIONS sessions into PORT and
# prints msgs/s until all are at the sink.
measure() {
    local port=$1 size=$2 count=$3 sessions=$4 name=$5
    local base start end
    wait_queue_empty "$name"
    base=$(sink_count)
    start=$(now)
    if ! smtp-source -s "$sessions" -m "$count" -l "$size" -f bench@example.com -t sink@example.com \
        "127.0.0.1:$port" >>"$work/smtp-source.log" 2>&1; then
        die "smtp-source into $name failed; see $work/smtp-source.log (KEEP=1 keeps it)"
    fi
    wait_sink $((base + count)) "$name" "$CASE_TIMEOUT"
    end=$(now)
    awk -v n="$count" -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", n / (b - a) }'
}

# The EICAR test file, in two halves (as in bases/default/mailward-default.yar)
# so that this script does not itself look like it to a scanner.
eicar() {
    printf '%s%s' "$(printf 'WDVPIVAlQEFQWzRcUFpYNTQoUF4pN0NDKTd9JA==' | base64 -d)" \
        "$(printf 'RUlDQVItU1RBTkRBUkQtQU5USVZJUlVTLVRFU1QtRklMRSEkSCtIKg==' | base64 -d)"
}

# Sends one message with the EICAR test file as an attachment to
# 127.0.0.1:PORT; prints the reply to the final dot.
send_eicar() {
    local port=$1 line reply=
    exec 3<>"/dev/tcp/127.0.0.1/$port" || return 0
    smtp_step() {
        [ -z "${1:-}" ] || printf '%s\r\n' "$1" >&3 2>/dev/null || true
        while read -r -t 30 line <&3; do
            line=${line%$'\r'}
            reply=$line
            case $line in [0-9][0-9][0-9]-*) ;; *) break ;; esac
        done
    }
    smtp_step
    smtp_step "EHLO eicar.bench.test"
    smtp_step "MAIL FROM:<bench@example.com>"
    smtp_step "RCPT TO:<sink@example.com>"
    smtp_step "DATA"
    {
        printf 'From: bench@example.com\r\nTo: sink@example.com\r\nSubject: EICAR check\r\n'
        printf 'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b1"\r\n\r\n'
        printf -- '--b1\r\nContent-Type: text/plain\r\n\r\nThe attachment is the EICAR test file.\r\n'
        printf -- '--b1\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename="eicar.com"\r\n\r\n'
        eicar
        printf '\r\n--b1--\r\n'
    } >&3 2>/dev/null || true
    smtp_step "."
    printf '%s' "$reply"
    smtp_step "QUIT"
    exec 3<&- 3>&-
}

# Checks that the running setup's filter finds the EICAR test file: sends
# it, then waits until LOG names SIGNATURE. DELIVERED=1: the message still
# reaches the sink (the infected part removed), so wait for it too.
eicar_check() {
    local name=$1 port=$2 log=$3 signature=$4 delivered=$5 base reply deadline
    base=$(sink_count)
    reply=$(send_eicar "$port") || true
    case $reply in
    250* | 550*) ;;
    *) die "$name: the EICAR message got '$reply' (expected 250 or 550); see $pf_dir/maillog (KEEP=1 keeps it)" ;;
    esac
    deadline=$((SECONDS + 60))
    until grep -q -- "$signature" "$log" 2>/dev/null; do
        [ "$SECONDS" -lt "$deadline" ] ||
            die "$name: no '$signature' in $log within 60 s after the EICAR message (reply: $reply); KEEP=1 keeps it"
        sleep 0.1
    done
    [ "$delivered" = 1 ] && wait_sink $((base + 1)) "$name (EICAR message)" 60
    wait_queue_empty "$name"
    say "   EICAR check: reply '$reply'; $(basename "$log") names $signature"
}

# Writes main.cf and master.cf for a new private Postfix under
# $work/NAME/postfix and starts it; sets pf_dir and pf_port. EXTRA_MAIN and
# EXTRA_MASTER are appended to main.cf and master.cf.
start_postfix() {
    local name=$1 extra_main=$2 extra_master=$3
    pf_port=$(free_port)
    pf_dir=$work/$name/postfix
    private_postfix_start "$pf_dir" "$pf_port" "$sink_port" "$extra_main" "$extra_master"
    wait_for_220 "$pf_port" "Postfix ($name)"
    say "   Postfix on 127.0.0.1:$pf_port (postfix -c $pf_dir/etc; log $name/postfix/maillog)"
}

# The after-queue filter's Postfix side: the transport NAME to the filter,
# and the re-injection smtpd on REINJECT_PORT. Postfix reuses a cached
# connection without limit by default; Mailward answers the 101st message
# of a session (limits.max_messages_per_session = 100) with 421, which
# Postfix turns into a deferral of minutes, so the transport closes its
# connections after 90 reuses (amavisd-new gets the same transport).
after_queue_master() {
    local transport=$1 reinject_port=$2
    cat <<EOF
$transport unix - - n - 10 smtp
  -o smtp_send_xforward_command=yes
  -o disable_mime_output_conversion=yes
  -o smtp_connection_reuse_count_limit=90
127.0.0.1:$reinject_port inet n - n - - smtpd
  -o content_filter=
  -o receive_override_options=no_unknown_recipient_checks,no_header_body_checks,no_milters
  -o smtpd_helo_restrictions=
  -o smtpd_client_restrictions=
  -o smtpd_sender_restrictions=
  -o smtpd_recipient_restrictions=
  -o smtpd_relay_restrictions=permit_mynetworks,reject
  -o mynetworks=127.0.0.0/8
  -o smtpd_authorized_xforward_hosts=127.0.0.0/8
EOF
}

# A Mailward config under DIR: the SMTP listener on LISTEN_PORT (unused by
# `mailward milter`), everything delivered to [127.0.0.1]:ROUTE_PORT.
mailward_config() {
    local dir=$1 listen_port=$2 route_port=$3
    mkdir -p "$dir"
    cat >"$dir/mailward.toml" <<EOF
[server]
hostname = "mailward-bench.test"
# Run as root, a configuration file must say so.
user = "$(id -un)"
postmaster = "postmaster@mailward-bench.test"
data_dir = "$dir/data"

[network]
listen_on = ["127.0.0.1:$listen_port"]
protected_domains = ["example.com"]
relay_networks = ["127.0.0.0/8"]

[limits]
incoming_sessions_per_ip = 100

[[route]]
match = "*"
to = "[127.0.0.1]:$route_port"

[spam]
# No DNS here: the spam check's network tests off.
dnsbl = []
surbl = []
spf = "off"
dkim = false

[metrics]
listen = ""

[agentx]
socket = "tcp:127.0.0.1:1"
EOF
}

# A private clamd under DIR with only bench.ndb; sets clamd_sock.
start_clamd() {
    local dir=$1 hex_eicar hex_code
    mkdir -p "$dir/db" "$dir/tmp"
    hex_eicar=$(eicar | od -An -v -tx1 | tr -d ' \n')
    hex_code=$(printf '%s' 'BB 71 10 40 00 33 C0 50 50 8B F3 53 53 50 B0 29 40 30 04 66 AC 79 F9 BA 31 00 78 0D
        AD 50 FF 66 70 0E 1F BE 31 00 E9 E5 FF B4 09 CD 21 B4 4C CD 21' | tr -d ' \n' | tr A-F a-f)
    # name:target:offset:hex (target 0 any file, 1 PE). The ClamAV test
    # file rule of Mailward's bases: its decoder loop anywhere, or its
    # CLAMessageBoxA import in a PE file.
    cat >"$dir/db/bench.ndb" <<EOF
Bench.EICAR_Test_File:0:*:$hex_eicar
Bench.ClamAV_Test_File.Code:0:*:$hex_code
Bench.ClamAV_Test_File.Import:1:*:$(printf 'CLAMessageBoxA' | od -An -v -tx1 | tr -d ' \n')
EOF
    clamd_sock=$dir/clamd.sock
    cat >"$dir/clamd.conf" <<EOF
Foreground yes
LocalSocket $clamd_sock
LocalSocketMode 666
DatabaseDirectory $dir/db
TemporaryDirectory $dir/tmp
LogFile $dir/clamd.log
LogTime yes
PidFile $dir/clamd.pid
Bytecode no
EOF
    clamd -c "$dir/clamd.conf" >"$dir/clamd.out" 2>&1 &
    filters+=("$! clamd")
    local pid=$! deadline=$((SECONDS + 60))
    until [ -S "$clamd_sock" ]; do
        kill -0 "$pid" 2>/dev/null || die "clamd exited; see $dir/clamd.out (KEEP=1 keeps it)"
        [ "$SECONDS" -lt "$deadline" ] || die "clamd made no socket within 60 s; see $dir/clamd.log"
        sleep 0.1
    done
    say "   clamd (3 signatures: $dir/db/bench.ndb) on $clamd_sock"
}

# Sets up SETUP: its filters and its Postfix; sets port (where the load
# goes), check_log, check_sig and check_delivered for the EICAR check.
start_setup() {
    local setup=$1 dir=$work/$1 mw_port reinject_port
    mkdir -p "$dir"
    check_log=
    case $setup in
    postfix)
        start_postfix "$setup" "" ""
        ;;
    after-queue)
        mw_port=$(free_port)
        reinject_port=$(free_port)
        mailward_config "$dir/mailward" "$mw_port" "$reinject_port"
        (cd "$dir/mailward" && exec "$MAILWARD_BIN" run --config "$dir/mailward/mailward.toml" >"$dir/mailward/mailward.log" 2>&1) &
        filters+=("$! mailward")
        wait_for_220 "$mw_port" Mailward 30 "$!"
        say "   Mailward on 127.0.0.1:$mw_port (config $setup/mailward/mailward.toml, log $setup/mailward/mailward.log)"
        start_postfix "$setup" "content_filter = mailward:[127.0.0.1]:$mw_port" \
            "$(after_queue_master mailward "$reinject_port")"
        say "   content_filter = mailward:[127.0.0.1]:$mw_port, re-injection smtpd on 127.0.0.1:$reinject_port"
        check_log=$dir/mailward/mailward.log check_sig=EICAR_Test_File check_delivered=1
        ;;
    milter)
        milter_address "$dir"
        mailward_config "$dir/mailward" "$(free_port)" "$(free_port)"
        (cd "$dir/mailward" && exec "$MAILWARD_BIN" milter --config "$dir/mailward/mailward.toml" \
            --listen "$milter_listen" >"$dir/mailward/mailward.log" 2>&1) &
        filters+=("$! mailward")
        wait_for_milter "mailward milter" "$!"
        say "   mailward milter on $milter_listen (log $setup/mailward/mailward.log)"
        start_postfix "$setup" "smtpd_milters = $milter_postfix
milter_default_action = tempfail" ""
        check_log=$dir/mailward/mailward.log check_sig=EICAR_Test_File check_delivered=1
        ;;
    clamav-milter)
        start_clamd "$dir/clamd"
        milter_address "$dir/clamav-milter"
        mkdir -p "$dir/clamav-milter/tmp"
        cat >"$dir/clamav-milter/clamav-milter.conf" <<EOF
MilterSocket $milter_listen
MilterSocketMode 666
ClamdSocket unix:$clamd_sock
Foreground yes
PidFile $dir/clamav-milter/clamav-milter.pid
TemporaryDirectory $dir/clamav-milter/tmp
LogFile $dir/clamav-milter/clamav-milter.log
LogTime yes
LogInfected Basic
OnInfected Reject
OnFail Defer
AddHeader Replace
EOF
        clamav-milter -c "$dir/clamav-milter/clamav-milter.conf" >"$dir/clamav-milter/out" 2>&1 &
        filters+=("$! clamav-milter")
        wait_for_milter clamav-milter "$!"
        say "   clamav-milter on $milter_listen (log $setup/clamav-milter/clamav-milter.log)"
        start_postfix "$setup" "smtpd_milters = $milter_postfix
milter_default_action = tempfail" ""
        check_log=$dir/clamd/clamd.log check_sig=Bench.EICAR_Test_File check_delivered=0
        ;;
    amavis)
        start_clamd "$dir/clamd"
        local amavis_port
        amavis_port=$(free_port)
        reinject_port=$(free_port)
        # amavisd wants its config file owned by root, its home by its user.
        mkdir -p "$dir/amavis/tmp" "$dir/amavis/db" "$dir/amavis/var" "$dir/amavis-etc"
        cat >"$dir/amavis-etc/amavisd.conf" <<EOF
use strict;
\$MYHOME = '$dir/amavis';
\$TEMPBASE = '$dir/amavis/tmp';
\$db_home = '$dir/amavis/db';
\$helpers_home = '$dir/amavis/var';
\$pid_file = '$dir/amavis/amavisd.pid';
\$lock_file = '$dir/amavis/amavisd.lock';
\$daemon_user = 'amavis';
\$daemon_group = 'amavis';
\$path = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/sbin:/usr/bin:/bin';
\$mydomain = 'bench.test';
\$myhostname = 'amavis-bench.test';
\$max_servers = 10;
\$inet_socket_bind = '127.0.0.1';
\$inet_socket_port = $amavis_port;
@inet_acl = qw(127.0.0.1);
\$unix_socketname = undef;
\$forward_method = 'smtp:[127.0.0.1]:$reinject_port';
\$notify_method = \$forward_method;
\$DO_SYSLOG = 0;
\$LOGFILE = '$dir/amavis/amavis.log';
\$log_level = 0;
\$enable_db = 0;
\$enable_zmq = 0;
\$enable_dkim_verification = 0;
\$enable_dkim_signing = 0;
@local_domains_maps = (['.example.com']);
@mynetworks = qw(127.0.0.0/8);
# SpamAssassin: local tests only, no Bayes, headers on every message.
\$sa_local_tests_only = 1;
\$sa_tag_level_deflt = -9999;
\$sa_tag2_level_deflt = 6.31;
\$sa_kill_level_deflt = 6.31;
@spam_scanners = ( ['SpamAssassin', 'Amavis::SpamControl::SpamAssassin'] );
\$sa_mail_body_size_limit = 200*1024;
\$sa_siteconfigpath = '$dir/amavis/sa';
\$final_virus_destiny = D_DISCARD;
\$final_banned_destiny = D_PASS;
\$final_spam_destiny = D_PASS;
\$final_bad_header_destiny = D_PASS;
\$virus_admin = undef;
\$spam_admin = undef;
\$QUARANTINEDIR = undef;
\$virus_quarantine_method = undef;
\$spam_quarantine_method = undef;
@av_scanners = (
  ['ClamAV-clamd', \&ask_daemon, ["CONTSCAN {}\n", '$clamd_sock'],
   qr/\bOK\$/m, qr/\bFOUND\$/m, qr/^.*?: (?!Infected Archive)(.*) FOUND\$/m ],
);
@av_scanners_backup = ();
1;
EOF
        # SpamAssassin's site configuration: Debian's (plugins, rules), with
        # our local.cf.
        mkdir -p "$dir/amavis/sa"
        cp /etc/spamassassin/*.pre /etc/spamassassin/65_debian.cf "$dir/amavis/sa/" 2>/dev/null || true
        cat >"$dir/amavis/sa/local.cf" <<EOF
use_bayes 0
bayes_auto_learn 0
skip_rbl_checks 1
EOF
        chown -R amavis:amavis "$dir/amavis"
        amavisd -c "$dir/amavis-etc/amavisd.conf" foreground >"$dir/amavis-etc/out" 2>&1 &
        filters+=("$! amavisd")
        wait_for_220 "$amavis_port" amavisd-new 180 "$!"
        say "   amavisd-new on 127.0.0.1:$amavis_port (log $setup/amavis/amavis.log)"
        start_postfix "$setup" "content_filter = amavis:[127.0.0.1]:$amavis_port" \
            "$(after_queue_master amavis "$reinject_port")"
        say "   content_filter = amavis:[127.0.0.1]:$amavis_port, re-injection smtpd on 127.0.0.1:$reinject_port"
        check_log=$dir/clamd/clamd.log check_sig=Bench.EICAR_Test_File check_delivered=0
        ;;
    *) die "unknown setup $setup (see --help)" ;;
    esac
}

# Why SETUP cannot run here, or nothing.
missing_for() {
    local tool
    case $1 in
    clamav-milter)
        for tool in clamd clamav-milter; do
            command -v "$tool" >/dev/null || {
                echo "\`$tool\` not found (Debian packages clamav-daemon, clamav-milter)"
                return
            }
        done
        ;;
    amavis)
        for tool in amavisd clamd; do
            command -v "$tool" >/dev/null || {
                echo "\`$tool\` not found (Debian packages amavisd-new, spamassassin, clamav-daemon)"
                return
            }
        done
        ;;
    esac
}

say "== Postfix with and without content filters: smtp-source -> Postfix [-> filter] -> smtp-sink"
say "   machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $("$MAILWARD_BIN" --version 2>/dev/null || echo mailward); Postfix $(postconf -d -h mail_version 2>/dev/null || echo '?')"
say "   working directory: $work"

# The sink: counts, keeps nothing; one for the whole run.
sink_port=$(free_port)
smtp-sink -u postfix -c "127.0.0.1:$sink_port" 1000 >"$work/sink.counter" 2>"$work/sink.err" &
sink_pid=$!
wait_for_220 "$sink_port" smtp-sink
say "-- smtp-sink (counting only) on 127.0.0.1:$sink_port"

declare -A rate
ran=()
skipped=()
for setup in $SETUPS; do
    why=$(missing_for "$setup")
    if [ -n "$why" ]; then
        say "-- $setup: left out: $why"
        skipped+=("$setup: $why")
        continue
    fi
    say "-- $setup: starting"
    start_setup "$setup"
    [ -z "$check_log" ] || eicar_check "$setup" "$pf_port" "$check_log" "$check_sig" "$check_delivered"
    measure "$pf_port" 1024 "$WARMUP" 5 "$setup" >/dev/null
    for spec in "1 KiB:1024:$SMALL_COUNT" "100 KiB:102400:$LARGE_COUNT"; do
        IFS=: read -r label bytes count <<<"$spec"
        for sessions in $SESSIONS; do
            r=$(measure "$pf_port" "$bytes" "$count" "$sessions" "$setup")
            rate[$setup:$label:$sessions]=$r
            say "   $setup, $label x $count, $sessions session(s): $r msgs/s"
        done
    done
    wait_queue_empty "$setup"
    teardown
    ran+=("$setup")
    say "-- $setup: stopped"
done

say ""
say "Rates are messages per second from smtp-source's start until the sink has them all."
printf '%-14s %-8s %8s %9s %9s %11s\n' setup size sessions messages "msgs/s" "vs postfix"
for setup in "${ran[@]}"; do
    for spec in "1 KiB:$SMALL_COUNT" "100 KiB:$LARGE_COUNT"; do
        IFS=: read -r label count <<<"$spec"
        for sessions in $SESSIONS; do
            r=${rate[$setup:$label:$sessions]}
            base=${rate[postfix:$label:$sessions]:-}
            ratio=$(awk -v a="$r" -v b="$base" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
            printf '%-14s %-8s %8s %9s %9s %11s\n' "$setup" "$label" "$sessions" "$count" "$r" "$ratio"
        done
    done
done
for line in "${skipped[@]}"; do
    say "Left out: $line"
done
say "Done."
