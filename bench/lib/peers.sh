# Shared by the benchmark scripts (sourced, not run): free loopback ports,
# waiting for a greeting, and the private Postfix instance the benchmarks
# measure against. The sourcing script defines `die` and `say`.

# A port nothing listens on (bash's /dev/tcp cannot connect to it).
#
# Picked below the kernel's ephemeral range (where the source ports of
# outgoing connections come from), so that no connection the benchmark
# makes can take the port before its peer binds it.
free_port() {
    local port low=32768 span
    read -r low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || low=32768
    span=$((low - 10000))
    while :; do
        if [ "$span" -ge 1000 ]; then
            port=$((10000 + (RANDOM * 32768 + RANDOM) % span))
        else
            port=$((20000 + RANDOM % 40000))
        fi
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
}

# Waits until 127.0.0.1:PORT greets with 220, for up to SECS seconds (30;
# and as long as PID, when given, runs).
wait_for_220() {
    local port=$1 what=$2 secs=${3:-30} pid=${4:-} deadline line
    deadline=$((SECONDS + secs))
    while [ "$SECONDS" -lt "$deadline" ]; do
        [ -z "$pid" ] || kill -0 "$pid" 2>/dev/null ||
            die "$what exited before it greeted (see its log under $work; KEEP=1 keeps it)"
        if { exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null; then
            line=
            read -r -t 5 line <&3 || true
            printf 'QUIT\r\n' >&3 2>/dev/null || true
            exec 3<&- 3>&-
            case $line in 220*) return 0 ;; esac
        fi
        sleep 0.1
    done
    die "$what did not greet on port $port within $secs s"
}

# Writes main.cf and master.cf for a new private Postfix under DIR that
# listens on 127.0.0.1:PORT and relays everything to 127.0.0.1:SINK_PORT,
# and starts it (`postfix -c DIR/etc start`, as root: its daemons become
# the `postfix` user). The files are the end-to-end tests' own
# (tests/resources/postfix/), with no limit on connections per client;
# EXTRA_MAIN and EXTRA_MASTER are appended. Logs go to DIR/maillog. When
# Postfix does not start, the end of its log is printed before dying: the
# work directory is usually gone by the time anyone looks.
private_postfix_start() {
    local dir=$1 port=$2 sink_port=$3 extra_main=${4:-} extra_master=${5:-}
    local templates=tests/resources/postfix
    mkdir -p "$dir/etc" "$dir/spool" "$dir/data"
    chown postfix "$dir/data"
    # Filled in by bash, not sed: a path holding sed's delimiter or `&`
    # would break a sed script (the quoted replacements are literal).
    local main
    main=$(<"$templates/main.cf")
    main=${main//@DIR@/"$dir"}
    main=${main//@NAME@/bench}
    main=${main//@RELAY@/"$sink_port"}
    {
        printf '%s\n' "$main"
        printf 'smtpd_client_connection_count_limit = 0\n%s\n' "$extra_main"
    } >"$dir/etc/main.cf"
    {
        printf '127.0.0.1:%s inet n - n - - smtpd\n' "$port"
        cat "$templates/master.cf"
        printf '%s\n' "$extra_master"
    } >"$dir/etc/master.cf"
    postfix -c "$dir/etc" check >/dev/null 2>&1 || true # creates the queue directories
    if ! postfix -c "$dir/etc" start >"$dir/start.log" 2>&1; then
        sed 's/^/  postfix start: /' "$dir/start.log" >&2 # usually empty: it logs
        [ -f "$dir/maillog" ] && tail -n 20 "$dir/maillog" | sed 's/^/  maillog: /' >&2
        die "postfix -c $dir/etc start failed (above: the end of its log)"
    fi
}

# Stops the private Postfix under DIR and waits (up to 10 s) until its
# master process is gone, so that the next one can take the ports.
private_postfix_stop() {
    local dir=$1 pid i
    pid=$(tr -d ' ' <"$dir/spool/pid/master.pid" 2>/dev/null || true)
    postfix -c "$dir/etc" stop >/dev/null 2>&1 || true
    for ((i = 0; i < 100; i++)); do
        [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
}
