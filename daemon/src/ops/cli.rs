//! The command line (clap): `mailward run | check-config | config | status |
//! reload | queue | bases | scan | spam | stats | log | quarantine | archive`.
//! Every command has `--help` with an example.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "mailward",
    version,
    about = "Mailward: an SMTP filtering gateway that relays, scans and reports.",
    after_help = "Examples:\n  mailward run                          # on the embedded default configuration\n  mailward run --config /etc/mailward/mailward.toml\n  mailward check-config --config mailward.toml\n  mailward queue list --config mailward.toml"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct ConfigArg {
    /// The configuration file (TOML). Without it (and without
    /// MAILWARD_CONFIG), the embedded default configuration is used (see
    /// `mailward config default`).
    #[arg(long, short = 'c', value_name = "FILE", env = "MAILWARD_CONFIG")]
    pub config: Option<PathBuf>,
}

/// `check-config`: the file by --config, or named alone (the first thing a
/// newcomer types, which was a usage error: walkAW F15).
#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The configuration file, as --config gives it (this one wins when
    /// both are given).
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
}

impl CheckConfigArgs {
    /// The file to check: FILE, else --config (or MAILWARD_CONFIG).
    pub fn path(&self) -> Option<&std::path::Path> {
        self.file.as_deref().or(self.config.config.as_deref())
    }
}

#[derive(Debug, Args)]
pub struct MilterArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Where the MTA connects: "inet:PORT@ADDRESS", "inet6:PORT@[ADDRESS]",
    /// "unix:/PATH" or "local:/PATH" (overrides [milter] listen).
    #[arg(long, value_name = "SOCKET")]
    pub listen: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the gateway in the foreground until SIGTERM or SIGINT.
    #[command(
        after_help = "Signals: SIGHUP reloads the configuration (a bad one is refused and the running one kept); SIGTERM/SIGINT stop gracefully.\nExit status: 0 after a clean stop, 64 for a bad configuration, 71 when the gateway cannot start (port in use, spool unreadable), 75 when another Mailward runs on the same data_dir.\n\nExample:\n  mailward run --config mailward.toml"
    )]
    Run(ConfigArg),
    /// Validates a configuration file and prints every problem as FILE:LINE: key: problem.
    #[command(
        after_help = "Exit status: 0 when valid, 1 when not.\n\nExamples:\n  mailward check-config --config mailward.toml\n  mailward check-config mailward.toml"
    )]
    CheckConfig(CheckConfigArgs),
    /// Prints configuration documents.
    #[command(
        subcommand,
        after_help = "Example:\n  mailward config default > mailward.toml"
    )]
    Config(ConfigCommand),
    /// Lists, summarises, shows, retries, holds, releases or removes messages in the working queue of the running daemon.
    #[command(
        subcommand,
        after_help = "Examples:\n  mailward queue list --config mailward.toml\n  mailward queue show 1A22E10E77891C7A --config mailward.toml\n  mailward queue flush --config mailward.toml"
    )]
    Queue(QueueCommand),
    /// Shows, updates or rolls back the signature bases of the running daemon.
    #[command(
        subcommand,
        after_help = "Examples:\n  mailward bases status --config mailward.toml\n  mailward bases update --from /srv/mailward-bases/2026-11-24 --config mailward.toml\n  mailward bases rollback --config mailward.toml"
    )]
    Bases(BasesCommand),
    /// Checks files offline with the configuration's signature bases and content filter, as the gateway checks mail (no daemon needed, nothing is sent).
    #[command(
        after_help = "A file that reads as mail (a saved .eml, an mbox) is checked as the message; any other file (an attachment saved from a mail client, a download) as the one attachment of a message, under its own name, so that the name and MIME filters apply as they do in mail. A directory is walked recursively. The groups are those of --from and --to (without --to: the default group). The spam check is not run: see `mailward spam check`.\nExit status: 0 when everything is av/clean, 1 when something was found (infected, suspicious, protected or filtered), 2 for a usage error, 3 when something could not be checked (av/error, a PATH that cannot be read) and nothing was found, 64 for a bad configuration.\n\nExamples:\n  mailward scan invoice.zip --config /etc/mailward/mailward.toml\n  mailward scan --json --to boss@example.com ~/Downloads/ --config mailward.toml"
    )]
    Scan {
        #[command(flatten)]
        config: ConfigArg,
        /// Prints one JSON object per message and group (file, group, status, findings, objects, bases) instead of text.
        #[arg(long)]
        json: bool,
        /// Checks as mail from this sender (for groups chosen by `senders`); default: the null sender.
        #[arg(long, value_name = "ADDRESS", default_value = "", value_parser = super::spam_cli::sender_arg)]
        from: String,
        /// Checks as mail to this recipient (repeat for several; each group gets its own verdict line).
        #[arg(long, value_name = "ADDRESS", value_parser = address)]
        to: Vec<String>,
        /// Checks every file as an attachment, even one that reads as a message.
        #[arg(long)]
        attachment: bool,
        /// Files, directories or mboxes to check.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// Teaches, checks and shows the spam classifier on files, without the daemon (`spam spf` asks DNS).
    #[command(
        subcommand,
        after_help = "Examples:\n  mailward spam learn --spam ~/Junk/ --ham ~/Mail/inbox.mbox --config mailward.toml\n  mailward spam check --json message.eml --config mailward.toml\n  mailward spam status --config mailward.toml"
    )]
    Spam(SpamCommand),
    /// Says whether the daemon runs and what needs attention: config, listeners, queue, sessions, bases, spam classifier, SNMP, DNS, log.
    #[command(
        after_help = "Exit status: 0 when the daemon answers (its problems, if any, are listed), 1 when it answers that it cannot serve the request now (16 admin connections already: try again), 64 when the configuration file cannot be read, 69 when the daemon does not answer (not running, or another configuration's admin socket), 77 when this user may not use the admin socket (run it as root or the daemon's user, or join the socket's group).
--json prints one object (problems: a list of sentences, empty when all is well), e.g. for a monitoring check:
  mailward status --json --config mailward.toml | jq -e '.problems == []'

Example:
  mailward status --config /etc/mailward/mailward.toml"
    )]
    Status {
        #[command(flatten)]
        config: ConfigArg,
        /// Prints the status as one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Asks the running daemon to re-read its configuration file, as SIGHUP does, and prints what came of it.
    #[command(
        after_help = "The daemon re-reads the file it was started with (--config only finds its admin socket) and checks all of it: a file with a problem is refused whole, and the daemon keeps running on the previous configuration. As for SIGHUP, the log files are reopened and the signature bases reloaded. Keys that take effect only at a restart keep their running value, and are named.\nExit status: 0 reloaded, 1 refused (each problem on stderr as FILE:LINE: key: problem), 64 when the configuration file cannot be read to find the socket, 69 when no daemon answers, 77 when this user may not use the admin socket.\n\nExample:\n  mailward reload --config /etc/mailward/mailward.toml"
    )]
    Reload(ConfigArg),
    /// Shows, writes or resets the statistics of the running daemon.
    #[command(
        subcommand,
        after_help = "Examples:\n  mailward stats show --config mailward.toml\n  mailward stats reset --config mailward.toml"
    )]
    Stats(StatsCommand),
    /// Reopens the log and raw record files of the running daemon (after logrotate).
    #[command(
        subcommand,
        after_help = "Example (logrotate postrotate):\n  mailward log reopen --config /etc/mailward/mailward.toml"
    )]
    Log(LogCommand),
    /// Runs the gateway as a milter only: no SMTP listener; Postfix or Sendmail hands each message over the milter protocol and gets the verdict.
    #[command(
        after_help = "The checks and policy are those of the configuration, as for `mailward run`; the MTA keeps the message (see docs/postfix.md). The socket is --listen, else [milter] listen.\n\nExample:\n  mailward milter --config mailward.toml --listen inet:10031@127.0.0.1\n\nPostfix main.cf:\n  smtpd_milters = inet:127.0.0.1:10031\n  milter_default_action = tempfail"
    )]
    Milter(MilterArgs),
    /// Lists, shows, releases, removes or purges quarantined messages.
    #[command(
        subcommand,
        after_help = "Examples:\n  mailward quarantine list --since 1d --config mailward.toml\n  mailward quarantine show 1A22E10E77891C7A --config mailward.toml\n  mailward quarantine release 1A22E10E77891C7A --config mailward.toml"
    )]
    Quarantine(QuarantineCommand),
    /// Lists, shows, sends again, removes or purges archived messages.
    #[command(
        subcommand,
        after_help = "Examples:\n  mailward archive list --since 1d --config mailward.toml\n  mailward archive send 1A22E10E77891C7A --outgoing --to legal@example.com \\\n    --config mailward.toml"
    )]
    Archive(ArchiveCommand),
    /// Prints a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(
        after_help = "The Debian package installs them; by hand:\n  mailward completions bash > /etc/bash_completion.d/mailward\n  mailward completions zsh > /usr/local/share/zsh/site-functions/_mailward\n  mailward completions fish > ~/.config/fish/completions/mailward.fish\n\nExample:\n  source <(mailward completions bash)"
    )]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Writes the man pages (one per command, section 8) into a directory.
    #[command(
        hide = true,
        after_help = "Example:\n  mailward man-pages --out target/man && man -l target/man/mailward-queue-list.8"
    )]
    ManPages {
        /// Where to write mailward.8, mailward-run.8, mailward-queue-list.8, ...
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// `--status` and `--since` of the list commands.
#[derive(Debug, Args)]
pub struct ListFilter {
    /// Prints one JSON object per line (for scripts) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Only entries with this status, e.g. av/infected (av/all, as/all for any finding of that kind).
    #[arg(long, value_name = "STATUS", value_parser = status)]
    pub status: Option<String>,
    /// Only entries stored within this long, e.g. 2h, 7d.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub since: Option<u64>,
}

/// A status of `--status`: refused here, as a bad `--since` is, with the
/// list of statuses, rather than by the daemon after the connection.
fn status(s: &str) -> Result<String, String> {
    crate::config::Status::parse(s).map(|st| st.as_str().to_string())
}

/// A duration like "30m" or "7d", in seconds.
fn duration(s: &str) -> Result<u64, String> {
    s.parse::<crate::config::Dur>()
        .map(|d| d.get().as_secs())
        .map_err(|e| e.to_string())
}

/// A `--to` address: refused here, before anything is asked of the
/// daemon, with the usage errors' exit status (2).
fn address(s: &str) -> Result<String, String> {
    super::stores::forward_path(s)
}

/// A quarantine or archive entry ID: in the case IDs are written in
/// ([`QueueId::canonical`](crate::envelope::QueueId::canonical)) and
/// checked here, with the usage errors' exit status (2).
fn entry_id(s: &str) -> Result<String, String> {
    let id = crate::envelope::QueueId::canonical(s);
    if crate::envelope::QueueId::is_valid(&id) {
        Ok(id)
    } else {
        Err(format!(
            "`{s}` is not an entry ID: a queue ID of 16 hexadecimal digits, maybe with a .N suffix (see `mailward quarantine list` or `archive list`)"
        ))
    }
}

#[derive(Debug, Subcommand)]
pub enum QuarantineCommand {
    /// Lists quarantined messages: ID, age, size, why, sender and recipients.
    #[command(
        after_help = "Examples:\n  mailward quarantine list --since 1d --status av/infected --config mailward.toml\n  mailward quarantine list --json --config mailward.toml | jq -r .id"
    )]
    List {
        #[command(flatten)]
        filter: ListFilter,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Shows one quarantined message: what Mailward knows about it, then the message.
    #[command(
        after_help = "Examples:\n  mailward quarantine show 1A22E10E77891C7A --config mailward.toml\n  mailward quarantine show 1A22E10E77891C7A --raw --config mailward.toml > message.eml"
    )]
    Show {
        /// The entry ID (from `quarantine list`: the queue ID, maybe with a .N suffix).
        #[arg(value_parser = entry_id)]
        id: String,
        /// Prints only the message, byte for byte as it was received.
        #[arg(long)]
        raw: bool,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Queues a quarantined message for its recipients (or --to), without checking it again.
    #[command(
        after_help = "The entry stays (with the release noted) until it expires or is removed.\nA release to recipients it was released to before is refused unless --again says to send it once more (a copy --to someone else is not).\nExit status: 0 released, 1 refused by the daemon (no such entry, already released), 2 bad arguments (not an entry ID, a --to that is not one address), 69 daemon not reachable, 77 this user may not use the admin socket.\n\nExamples:\n  mailward quarantine release 1A22E10E77891C7A --config mailward.toml\n  mailward quarantine release 1A22E10E77891C7A --to analyst@example.com --config mailward.toml\n  # a spam false positive: release it and learn it as ham\n  mailward quarantine release 1A22E10E77891C7A --learn-ham --config mailward.toml"
    )]
    Release {
        /// The entry ID (from `list`: the queue ID, maybe with a .N suffix).
        #[arg(value_parser = entry_id)]
        id: String,
        /// Sends it to this one address instead of its recipients
        /// (user@example.com; no lists, no null address).
        #[arg(long, value_name = "ADDRESS", value_parser = address)]
        to: Option<String>,
        /// Also teaches the spam classifier that the message is ham (a
        /// false positive); the running gateway uses it within 2 s.
        #[arg(long)]
        learn_ham: bool,
        /// Sends it even though it was released to these recipients before
        /// (each release is a delivery: without this, a second one is refused).
        #[arg(long)]
        again: bool,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Removes one quarantined message for good.
    #[command(
        visible_alias = "delete",
        alias = "rm",
        after_help = "Examples:\n  mailward quarantine remove 1A22E10E77891C7A --config mailward.toml\n  # spam indeed: remove it and learn it as spam\n  mailward quarantine remove 1A22E10E77891C7A --learn-spam --config mailward.toml"
    )]
    Remove {
        /// The entry ID (from `list`: the queue ID, maybe with a .N suffix).
        #[arg(value_parser = entry_id)]
        id: String,
        /// First teaches the spam classifier that the message is spam (it
        /// is removed only once learnt); the running gateway uses it within 2 s.
        #[arg(long)]
        learn_spam: bool,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Removes every quarantined message stored longer ago than a duration.
    #[command(
        after_help = "Example:\n  mailward quarantine purge --older-than 14d --config mailward.toml"
    )]
    Purge {
        /// e.g. 14d, 12h.
        #[arg(long, value_name = "DURATION", value_parser = duration)]
        older_than: u64,
        #[command(flatten)]
        config: ConfigArg,
    },
}

/// `--incoming` / `--outgoing`.
#[derive(Debug, Args)]
pub struct WhichArchive {
    /// Only the archive of incoming mail (as received).
    #[arg(long, conflicts_with = "outgoing")]
    pub incoming: bool,
    /// Only the archive of outgoing mail (as delivered).
    #[arg(long)]
    pub outgoing: bool,
}

#[derive(Debug, Subcommand)]
pub enum ArchiveCommand {
    /// Lists archived messages, incoming and outgoing.
    #[command(
        after_help = "Examples:\n  mailward archive list --since 1d --config mailward.toml\n  mailward archive list --outgoing --json --config mailward.toml"
    )]
    List {
        #[command(flatten)]
        filter: ListFilter,
        #[command(flatten)]
        which: WhichArchive,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Shows one archived message.
    #[command(
        after_help = "An ID in both archives needs --incoming or --outgoing.\n\nExample:\n  mailward archive show 1A22E10E77891C7A --raw --incoming --config mailward.toml"
    )]
    Show {
        /// The entry ID (from `list`: the queue ID, maybe with a .N suffix).
        #[arg(value_parser = entry_id)]
        id: String,
        /// Prints only the message.
        #[arg(long)]
        raw: bool,
        #[command(flatten)]
        which: WhichArchive,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Queues an archived message again, for its recipients or --to.
    #[command(
        after_help = "Both copies of a message have its ID: say which with --incoming (as received: without the policy's changes, unfiltered, for all its original recipients, even those the policy blocked it for) or --outgoing (as delivered); without either, an ID in both archives is refused.\nThe message is sent without a check: a copy whose statuses say a virus or a filtered part is sent with a warning. A send to recipients it was sent to before is refused unless --again says to send it once more (a copy --to someone else is not).\n\nExample:\n  mailward archive send 1A22E10E77891C7A --outgoing --to legal@example.com \\\n    --config mailward.toml"
    )]
    Send {
        /// The entry ID (from `list`: the queue ID, maybe with a .N suffix).
        #[arg(value_parser = entry_id)]
        id: String,
        /// Sends it to this one address instead of its recipients
        /// (user@example.com; no lists, no null address).
        #[arg(long, value_name = "ADDRESS", value_parser = address)]
        to: Option<String>,
        /// Sends it even to recipients it was sent to before.
        #[arg(long)]
        again: bool,
        #[command(flatten)]
        which: WhichArchive,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Removes one archived message.
    #[command(
        visible_alias = "delete",
        alias = "rm",
        after_help = "An ID in both archives needs --incoming or --outgoing (one copy is removed).\n\nExample:\n  mailward archive remove 1A22E10E77891C7A --outgoing --config mailward.toml"
    )]
    Remove {
        /// The entry ID (from `list`: the queue ID, maybe with a .N suffix).
        #[arg(value_parser = entry_id)]
        id: String,
        #[command(flatten)]
        which: WhichArchive,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Removes every archived message stored longer ago than a duration.
    #[command(
        after_help = "Example:\n  mailward archive purge --older-than 365d --config mailward.toml"
    )]
    Purge {
        /// e.g. 365d.
        #[arg(long, value_name = "DURATION", value_parser = duration)]
        older_than: u64,
        #[command(flatten)]
        which: WhichArchive,
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum BasesCommand {
    /// Shows the bases in use, the previous set kept for rollback, and the last update.
    #[command(after_help = "Example:\n  mailward bases status --config mailward.toml")]
    Status {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Installs a new set (checked first; the current one is kept for rollback).
    #[command(
        after_help = "The source is a directory of .yar files with a manifest.toml (version, released, records).\nWithout --from, bases.update_from is used.\n\nExample:\n  mailward bases update --from /srv/mailward-bases/2026-11-24 --config mailward.toml"
    )]
    Update {
        /// A directory (or file:// URL) holding the new set.
        #[arg(long, value_name = "DIR")]
        from: Option<String>,
        /// Installs the set even if it was released before the one in use
        /// (refused otherwise: an update source that lags behind must not
        /// take the rules back).
        #[arg(long)]
        allow_older: bool,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Goes back to the previous set (and keeps the current one as the previous).
    #[command(after_help = "Example:\n  mailward bases rollback --config mailward.toml")]
    Rollback {
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum SpamCommand {
    /// Learns messages as spam or as ham (a running daemon uses it within seconds).
    #[command(
        after_help = "A PATH is a message file (it may start with an mbox \"From \" line), an mbox, a directory of message files or a Maildir folder (cur/ and new/; one that holds no message is an error, and nothing is learnt). An empty or unreadable file in a directory is named on standard error and skipped. A PATH of - is standard input.\nA message learnt twice counts once; learnt as the other class, it moves.\n\nExample:\n  mailward spam learn --spam ~/Junk/ --ham ~/Mail/inbox.mbox --config mailward.toml"
    )]
    Learn {
        /// Messages that are spam.
        #[arg(long, value_name = "PATH", num_args = 1..)]
        spam: Vec<PathBuf>,
        /// Messages that are not spam.
        #[arg(long, value_name = "PATH", num_args = 1..)]
        ham: Vec<PathBuf>,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Forgets messages learnt before.
    #[command(
        after_help = "Example:\n  mailward spam forget ~/Junk/not-really-spam.eml --config mailward.toml"
    )]
    Forget {
        /// Messages to forget: message files, mboxes or directories of message files, as for `spam learn`.
        #[arg(value_name = "PATH", required = true)]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Shows what the classifier has learnt and whether it scores yet.
    #[command(after_help = "Example:\n  mailward spam status --config mailward.toml")]
    Status {
        /// Prints JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Judges message files as the gateway would (rules, heuristics, classifier; no network tests).
    #[command(
        after_help = "Prints one line per message: FILE: STATUS score=N.N rating=R TEST=+W ... (N.N rounded down, as the status reads it; R: 0 to 100, docs/spam.md); with --json one object per line with file, status, score, rating, tests, weights (each test's weight as it counted), probability, formal and classifier (active, abstaining: the rules weigh double, or unavailable).\nA PATH that cannot be read, or a file of a directory that cannot be read or is empty, is reported and the others are still judged; the exit status is then 1. A PATH of - is standard input (one message, or an mbox). A file with NUL bytes is judged, with a warning that it is not a mail message.\nWith --clues N, the N tokens the classifier's verdict rests on most, under each message (in --json: \"clues\"): probability, learnt spam and ham messages with the token, the token (TAG:TEXT).\nThe level is `[policy] spam_level`, or --level, or the level of --group NAME.\n\nExamples:\n  mailward spam check --json suspicious.eml --config mailward.toml\n  mailward spam check --clues 15 newsletter.eml --config mailward.toml\n  mailward spam check --group managers complaint.eml --config mailward.toml\n  mailward spam check - --config mailward.toml < message.eml"
    )]
    Check {
        /// Messages to judge: message files, mboxes (each message judged on its own, named FILE#N, N from 1), directories of message files or Maildir folders.
        #[arg(value_name = "PATH", required = true)]
        paths: Vec<PathBuf>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Also show the N most telling tokens of each message (why BAYES_* fired).
        #[arg(long, value_name = "N", default_value_t = 0)]
        clues: usize,
        /// Judge at this spam level (minimum, standard, high, maximum) instead of `[policy] spam_level`.
        #[arg(long, value_name = "LEVEL", conflicts_with = "group")]
        level: Option<String>,
        /// Judge at the spam level of `[group.NAME]` (a complaint from that group's users).
        #[arg(long, value_name = "NAME")]
        group: Option<String>,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Writes the site's learning to a file (for another gateway's `spam import`).
    #[command(
        after_help = "An existing FILE is replaced only with --force; its directory is not created.\n\nExample:\n  mailward spam export /tmp/site.model --config mailward.toml"
    )]
    Export {
        /// The model file to write, in a directory that exists.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Replaces FILE if it exists.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Adds a model file to the site's learning, or installs it as the base (--base).
    #[command(
        after_help = "The file is checked whole (format, tokenizer version, checksum) before anything changes.\nWith --base the base in use is kept for `spam rollback`; the site's own learning stays either way.\n\nExample:\n  mailward spam import --base /srv/mailward/spam-base.model --config mailward.toml"
    )]
    Import {
        /// A model file, as `spam export` writes it.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Installs the file as the base instead of adding it to the site's learning.
        #[arg(long)]
        base: bool,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Folds the site's journal of changes into a new snapshot now.
    #[command(
        after_help = "A change appends to the journal (site.journal, or the Redis list mailward:spam:journal) and folds it in by itself once it passes a quarter of the snapshot; `spam status` shows how far it is.\nFold by hand before a gateway older than the journal reads the store, or to repair a journal that `spam status` or the log calls damaged: the records before the damage are kept, the rest (never counted by any gateway) is dropped.\nEvery gateway reads the new snapshot whole within seconds.\nA gateway that has learnt nothing has nothing to fold: it says so and exits 0.\n\nExample:\n  mailward spam fold --config mailward.toml"
    )]
    Fold {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Goes back to the previous base (once).
    #[command(
        after_help = "The previous base (base.model.bak) becomes the base; the base it replaces is kept as base.model.rolled-back. There is no previous base after that: a second rollback is refused (`spam import --base FILE` installs another).\n\nExample:\n  mailward spam rollback --config mailward.toml"
    )]
    Rollback {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Checks SPF for a client and sender as the gateway does at MAIL FROM.
    #[command(
        after_help = "Uses access.dns_resolver (or the system's) and timeouts.dns of the configuration, or --dns.\nAn empty --sender (\"\") checks the HELO name, as for the null sender.\nPrints: spf=RESULT domain=DOMAIN, for permerror and temperror why=REASON (which term of whose record, which look-up), and for a fail the domain's own explanation=\"TEXT\" when it publishes one (exp=); with --json {\"result\":...,\"domain\":...,\"why\":...,\"explanation\":...}.\nExit status 0 whatever the result; 1 when it cannot run.\n\nExample:\n  mailward spam spf --ip 192.0.2.10 --helo mail.example.org --sender ceo@example.org \\\n    --config mailward.toml"
    )]
    Spf {
        /// The client's address.
        #[arg(long)]
        ip: std::net::IpAddr,
        /// The client's HELO/EHLO name.
        #[arg(long, default_value = "")]
        helo: String,
        /// The MAIL FROM address, with or without angle brackets ("" for the null sender).
        #[arg(long, value_parser = crate::ops::spam_cli::sender_arg)]
        sender: String,
        /// A DNS server (ADDRESS:PORT) instead of the configuration's.
        #[arg(long, value_name = "ADDRESS:PORT")]
        dns: Option<std::net::SocketAddr>,
        /// Prints JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Closes and reopens the log file and the raw records file, so that lines go to new files after logrotate moved the old ones (SIGHUP does the same).
    #[command(
        after_help = "In /etc/logrotate.d/mailward, with `create` (no copytruncate needed; while the gateway is stopped there is no socket and nothing to reopen, and the rotation still succeeds):\n  postrotate\n    if [ -S /run/mailward/admin.sock ]; then\n      mailward log reopen --config /etc/mailward/mailward.toml >/dev/null || true\n    fi\n  endscript\n\nExample:\n  mailward log reopen --config mailward.toml"
    )]
    Reopen {
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum StatsCommand {
    /// Prints the statistics as a table (or the stats file's JSON with --json).
    #[command(after_help = "Example:\n  mailward stats show --config mailward.toml")]
    Show {
        #[command(flatten)]
        config: ConfigArg,
        /// Prints the JSON of the statistics file instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Writes the statistics file (`statistics.destination`) now.
    #[command(after_help = "Example:\n  mailward stats write --config mailward.toml")]
    Write {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Zeroes the counters and top-N tables; SNMP and Prometheus see the new discontinuity time.
    #[command(after_help = "Example:\n  mailward stats reset --config mailward.toml")]
    Reset {
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Prints the embedded default configuration, with a comment on every key.
    #[command(after_help = "Example:\n  mailward config default > mailward.toml")]
    Default,
}

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Lists queued messages: ID, size, age, sender, recipients and their state.
    #[command(
        after_help = "Filters combine (all must match); the daemon applies them, so a large queue is not sent whole. With --limit the last line says how many more matched. For counts per domain and age, see `mailward queue summary`.

Examples:
  mailward queue list --config mailward.toml
  mailward queue list --to example.org --deferred --limit 20 --config mailward.toml
  mailward queue list --from @example.net --held --config mailward.toml
  mailward queue list --to example.org --json --config mailward.toml | jq -r '.[].id' \\
    | mailward queue hold - --config mailward.toml"
    )]
    List {
        #[command(flatten)]
        config: ConfigArg,
        /// Prints a JSON array instead of a table (for scripts).
        #[arg(long)]
        json: bool,
        /// Only messages with a recipient still waiting at DOMAIN (not its subdomains).
        #[arg(long, value_name = "DOMAIN")]
        to: Option<String>,
        /// Only messages from ADDRESS (case-insensitive); `@DOMAIN` for any sender there, `<>` for bounces.
        #[arg(long, value_name = "ADDRESS")]
        from: Option<String>,
        /// Only deferred messages: tried at least once, still waiting, not held.
        #[arg(long, conflicts_with = "held")]
        deferred: bool,
        /// Only messages held by `mailward queue hold`.
        #[arg(long)]
        held: bool,
        /// At most N messages, oldest first.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        limit: Option<u64>,
    },
    /// Counts the waiting recipients per domain and age (as Postfix's qshape), with each domain's last error.
    #[command(
        after_help = "Age columns double: under 5 minutes, 10, 20, ... 320, then older; ages count from reception. The domain with the most waiting recipients comes first.

Example:
  mailward queue summary --config mailward.toml
  mailward queue summary --json --config mailward.toml | jq '.domains[0]'"
    )]
    Summary {
        #[command(flatten)]
        config: ConfigArg,
        /// Prints one JSON object (total, domains) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Shows one message: envelope, recipients' state and the message itself.
    #[command(
        after_help = "Example:\n  mailward queue show 1A243A8795754F90 --config mailward.toml"
    )]
    Show {
        /// The queue ID (from the 250 reply, the logs or `queue list`).
        id: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Retries every queued message that is not held now, instead of waiting for its back-off, and lifts every destination suspension (held ones are named and stay held).
    #[command(after_help = "Example:\n  mailward queue flush --config mailward.toml")]
    Flush {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Holds messages: no delivery attempt until `queue release` (it survives a restart).
    #[command(
        after_help = "A held message keeps its place in the spool and its age: released after max_queue_lifetime, its next attempt bounces it. `queue flush` does not release it.\n\nExamples:\n  mailward queue hold 1A243A8795754F90 --config mailward.toml\n  mailward queue list --json --config mailward.toml \\\n    | jq -r '.[] | select(any(.recipients[]; .address | endswith(\"@example.org\"))) | .id' \\\n    | mailward queue hold - --config mailward.toml"
    )]
    Hold {
        /// Queue IDs; `-` reads them from standard input (white space between them).
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Releases held messages: they are tried at once.
    #[command(
        after_help = "Example:\n  mailward queue release 1A243A8795754F90 1A243A8795754F91 --config mailward.toml"
    )]
    Release {
        /// Queue IDs; `-` reads them from standard input (white space between them).
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Puts back in the queue the intact messages of a spool segment moved aside because it was damaged (offline: stop the gateway first).
    #[command(
        after_help = "When the gateway refuses to start on a damaged record of an older spool segment, move that file aside (keep it), start the gateway, and when you can, stop it and salvage the file: its intact records go back into the spool as a repaired copy at the same place, so the last record of each message still wins (a message delivered since is not sent again). Past a damaged record the reading resumes at the next intact one. It prints what comes back, what leaves, and the messages lost in the damage (tell their senders). Exit status 75 while a gateway runs on the spool.

Example:
  systemctl stop mailward
  mailward queue salvage /root/0000000000000003.seg --dry-run \\\n    --config /etc/mailward/mailward.toml
  mailward queue salvage /root/0000000000000003.seg --config /etc/mailward/mailward.toml
  systemctl start mailward"
    )]
    Salvage {
        /// The segment file moved aside (its name still starting with its number).
        file: PathBuf,
        /// The segment's number, when the file's name no longer starts with it.
        #[arg(long, value_name = "N")]
        segment: Option<u64>,
        /// Says what would come back, and writes nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Removes messages from the queue without delivering them and without a bounce.
    #[command(
        visible_alias = "delete",
        alias = "rm",
        after_help = "Example:\n  mailward queue remove 1A243A8795754F90 --config mailward.toml"
    )]
    Remove {
        /// Queue IDs; `-` reads them from standard input (white space between them).
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// walkAS F6: the filters parse, and --deferred with --held (which
    /// match nothing together) is refused rather than listing nothing.
    #[test]
    fn queue_list_takes_filters_and_a_limit() {
        let cli = Cli::try_parse_from([
            "mailward",
            "queue",
            "list",
            "--to",
            "example.org",
            "--from",
            "<>",
            "--deferred",
            "--limit",
            "20",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            cli.command,
            Command::Queue(QueueCommand::List { ref to, ref from, deferred: true, held: false, limit: Some(20), .. })
                if to.as_deref() == Some("example.org") && from.as_deref() == Some("<>")
        ));
        for bad in [
            &["mailward", "queue", "list", "--deferred", "--held"][..],
            &["mailward", "queue", "list", "--limit", "0"][..],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }

    /// walkW 4: `mailward queue delete ID` (the postsuper -d habit) got
    /// "unrecognized subcommand", with the tip `release`, which sends the
    /// message at once: the opposite. `delete` and `rm` are `remove`, as
    /// for quarantine and archive.
    #[test]
    fn queue_delete_and_rm_are_remove() {
        for alias in ["delete", "rm", "remove"] {
            let cli = Cli::try_parse_from(["mailward", "queue", alias, "1A243A8795754F90"])
                .unwrap_or_else(|e| panic!("queue {alias}: {e}"));
            assert!(
                matches!(cli.command, Command::Queue(QueueCommand::Remove { ref ids, .. }) if ids == &["1A243A8795754F90"]),
                "queue {alias}"
            );
        }
    }

    /// The positional arguments without a help text, as
    /// "mailward spam forget <PATH>".
    fn undescribed(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
        let path = format!("{path} {}", cmd.get_name()).trim().to_string();
        for arg in cmd.get_positionals() {
            if arg.get_help().is_none() {
                out.push(format!("{path} <{}>", arg.get_id()));
            }
        }
        for sub in cmd.get_subcommands() {
            undescribed(sub, &path, out);
        }
    }

    #[test]
    fn store_commands_take_ids_as_admins_type_them() {
        use clap::Parser;
        // walkO 4: `quarantine delete` was answered "a similar subcommand
        // exists: 'release'", the one command that delivers the virus.
        for words in [
            "mailward quarantine delete 1A2464A8EDAD94EB.2",
            "mailward quarantine rm 1A2464A8EDAD94EB.2",
            "mailward archive delete 1A2464A8EDAD94EB --incoming",
        ] {
            let cli =
                Cli::try_parse_from(words.split(' ')).unwrap_or_else(|e| panic!("{words}: {e}"));
            assert!(format!("{cli:?}").contains("Remove"), "{words}: {cli:?}");
        }
        // walkO 8: an ID from a ticket in lower case is the same entry.
        let cli = Cli::try_parse_from([
            "mailward",
            "quarantine",
            "release",
            "1a2464a8edad94eb.2",
            "--again",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let shown = format!("{cli:?}");
        assert!(
            shown.contains("\"1A2464A8EDAD94EB.2\"") && shown.contains("again: true"),
            "{shown}"
        );
        // walkAW F25: either case, and a notification copy's `.n1`
        // suffix (upper-cased whole, it was refused).
        for (given, id) in [
            ("1a2464a8edad94eb", "1A2464A8EDAD94EB"),
            ("1A2464A8EDAD94EB.n1", "1A2464A8EDAD94EB.n1"),
            ("1a2464a8edad94eb.N1 ", "1A2464A8EDAD94EB.n1"),
        ] {
            let cli = Cli::try_parse_from(["mailward", "archive", "show", given])
                .unwrap_or_else(|e| panic!("{given}: {e}"));
            let shown = format!("{cli:?}");
            assert!(shown.contains(&format!("id: \"{id}\"")), "{given}: {shown}");
        }
        let err = Cli::try_parse_from(["mailward", "quarantine", "show", "invoice.pdf"])
            .map(|_| ())
            .unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(
            err.to_string().contains("`invoice.pdf` is not an entry ID"),
            "{err}"
        );
    }

    #[test]
    fn the_queue_ids_in_help_examples_are_queue_ids() {
        // A reviewer pasted `mailward queue show 0193F1A2B3C4D0001` from
        // the help and was told it is not a queue ID (17 digits).
        let cli = Cli::command();
        let queue = cli.find_subcommand("queue").expect("the queue command");
        let mut seen = 0;
        for sub in queue.get_subcommands() {
            let help = sub
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            let prefix = format!("mailward queue {} ", sub.get_name());
            for line in help.lines() {
                let Some(rest) = line.trim().strip_prefix(&prefix) else {
                    continue;
                };
                let arg = rest.split_whitespace().next().unwrap_or("");
                if arg.starts_with('-') || arg.contains('/') {
                    continue;
                }
                assert!(
                    crate::envelope::QueueId::is_valid(arg),
                    "{}: {arg} is not a queue ID",
                    sub.get_name()
                );
                seen += 1;
            }
        }
        assert!(
            seen >= 4,
            "show, hold, release and remove have examples: {seen}"
        );
    }

    #[test]
    fn every_positional_argument_is_described_in_help() {
        // walkB finding 8: `spam forget --help` and others showed a bare
        // `<PATH>...` with nothing saying what it is.
        let mut missing = Vec::new();
        undescribed(&Cli::command(), "", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:#?}");
    }
}
