//! The `mailward` binary: parses the command line and hands over to the
//! library. Exit statuses follow sysexits: 64 bad configuration, 69 daemon
//! unreachable, 71 cannot start, 75 another instance holds the data
//! directory, 77 this user may not use the admin socket.
#![forbid(unsafe_code)]
// Nothing that can fail at run time may panic: errors are returned, typed
// and with context (the tests may unwrap).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use clap::Parser;
use mailward::config;
use mailward::ops::admin::{self, QueueItem, Request};
use mailward::ops::cli::{
    ArchiveCommand, BasesCommand, Cli, Command, ConfigCommand, ListFilter, LogCommand,
    QuarantineCommand, QueueCommand, SpamCommand, StatsCommand, WhichArchive,
};
use mailward::ops::stores::{Filter, Listed};
use mailward::store::Direction;
use std::path::Path;
use std::process::ExitCode;

/// Prints a line to stdout; a closed pipe (`mailward stats show | head`)
/// ends the output quietly instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

const EX_CONFIG: u8 = 64;
/// sysexits EX_TEMPFAIL: another Mailward runs on the same data_dir.
const EX_TEMPFAIL: u8 = 75;
const EX_OSERR: u8 = 71;
/// sysexits EX_CANTCREAT: an output file cannot be written.
const EX_CANTCREAT: u8 = 73;

/// The configuration `check-config` checked, as its warnings find their
/// lines in it: read once (each warning read the file again to find its
/// line, five reads for one check).
struct Source {
    /// The file's text; empty for the embedded default (line 0: no line).
    text: String,
    /// A file was given (not the embedded default).
    is_file: bool,
}

impl Source {
    fn of(path: Option<&std::path::Path>) -> Source {
        Source {
            text: path
                .and_then(|p| std::fs::read_to_string(p).ok())
                .unwrap_or_default(),
            is_file: path.is_some(),
        }
    }
}

/// `check-config`: says which of the configuration's accounts this machine
/// lacks (a warning: the file itself is valid, and may be meant for
/// another machine).
fn account_warnings(c: &config::Config, source: &Source) -> Vec<String> {
    let text = source.text.as_str();
    let mut out = Vec::new();
    // A file (not the embedded default) without `user`, checked by root:
    // `run` by the same root refuses it (walkAC: check-config said valid,
    // then run exited 64).
    if source.is_file && c.server.user.is_none() && nix::unistd::geteuid().is_root() {
        let line = config::line_of_key(text, "server", "user");
        out.push(format!(
            "{}: warning: {}; mailward run refuses to start as root here",
            at(&c.origin, line),
            mailward::ops::privileges::PrivilegeError::RootWithoutUser
        ));
    }
    // The TLS files as `run` reads them: after the switch to server.user
    // (walkBJ F1: root read the key, the user could not).
    let tls_files = [
        ("tls_certificate", &c.network.tls_certificate),
        ("tls_key", &c.network.tls_key),
    ];
    for (key, file) in tls_files {
        let Some(file) = file else { continue };
        if let Some(why) = mailward::ops::privileges::unreadable_after_switch(
            file,
            c.server.user.as_deref(),
            c.server.group.as_deref(),
        ) {
            let line = config::line_of_key(text, "network", key);
            out.push(format!(
                "{}: warning: network.{key}: {why}; mailward run cannot start with it here",
                at(&c.origin, line)
            ));
        }
    }
    let missing = mailward::ops::privileges::missing_accounts(
        c.server.user.as_deref(),
        c.server.group.as_deref(),
    );
    for (key, problem) in missing {
        let line = config::line_of_key(text, "server", key);
        // NoSuchUser/NoSuchGroup begin with their key already.
        out.push(format!(
            "{}: warning: {problem}; mailward run refuses to start as root here",
            at(&c.origin, line)
        ));
    }
    out
}

/// Where in a configuration file: `FILE:LINE`, or `FILE` alone when the key
/// is not written in it (line 0: an empty file warned at `FILE:0`, walkAW
/// F8).
fn at(origin: &str, line: usize) -> String {
    match line {
        0 => origin.to_string(),
        line => format!("{origin}:{line}"),
    }
}

/// `check-config`: the TLS files as `run` and delivery will use them, so
/// that a certificate renewal that swapped one file of two, or a CA file
/// with no certificate, is found before the restart (walkK: check-config
/// said valid, then `run` exited, or every delivery deferred 4.7.5).
fn tls_problems(c: &config::Config, source: &Source) -> Vec<String> {
    let text = source.text.as_str();
    let mut out = Vec::new();
    if let (Some(cert), Some(key)) = (&c.network.tls_certificate, &c.network.tls_key) {
        if let Err(e) = mailward::smtp::tls::acceptor(cert, key) {
            // At the key naming the file at fault (walkAZ F6: a key
            // problem was said at tls_certificate).
            let (name, _) = listener_tls_key(&e, Some(key));
            let line = config::line_of_key(text, "network", name);
            out.push(format!("{}: network.{name}: {e}", at(&c.origin, line)));
        }
    }
    for (n, route) in c.route.iter().enumerate() {
        if route.tls.mode == config::TlsMode::None {
            continue;
        }
        if let Err(e) = mailward::delivery::tls::client_config(&route.tls) {
            use mailward::delivery::tls::TlsSetupError;
            // The key to change, and its line (walkAI 9: the CA problems
            // named `route[0].tls`, without a line).
            let key = match &e {
                TlsSetupError::Ca { .. } | TlsSetupError::NoCa(_) | TlsSetupError::NotCa(_) => {
                    "tls_ca"
                }
                TlsSetupError::Name(_) => "tls_name",
                TlsSetupError::Rustls(_) => "tls",
            };
            let line = config::line_of_nth_key(text, "route", n, key);
            // The key leads the line already: `route[0].tls_ca: FILE ...`.
            let e = e.to_string();
            let e = e.strip_prefix("tls_ca ").unwrap_or(&e);
            out.push(format!("{}: route[{n}].{key}: {e}", at(&c.origin, line)));
        }
    }
    out
}

/// `check-config` on a file: the names a site must make its own but that
/// still hold the default's examples (RFC 2606 domains). A gateway set up
/// by the package's steps greeted, wrote Received: and signed its DSNs as
/// gw.example.com, and sent postmaster's mail to example.com (walkN).
fn example_name_warnings(c: &config::Config, source: &Source) {
    if !source.is_file {
        return;
    }
    let text = source.text.as_str();
    for (key, problem) in example_names(c) {
        let line = config::line_of_key(text, "server", key);
        eprintln!("{}: warning: server.{key}: {problem}", at(&c.origin, line));
    }
}

/// `check-config` without a file on a host with the package's: it checked
/// the embedded default, and "valid" read as the verdict on the file the
/// service runs (walkBB F1: an admin edited /etc/mailward/mailward.toml,
/// ran `mailward check-config` and was told "<default>: configuration is
/// valid").
fn packaged_note(path: Option<&std::path::Path>) {
    let packaged = std::path::Path::new(mailward::ops::admin::PACKAGED_CONFIG);
    if path.is_none() && packaged.exists() {
        eprintln!(
            "mailward: note: that is the embedded default, not the packaged gateway's {0}: give --config {0} (or set MAILWARD_CONFIG={0}) to check that one",
            packaged.display()
        );
    }
}

/// (key, problem) for each `[server]` name that is an example.
fn example_names(c: &config::Config) -> Vec<(&'static str, String)> {
    let example = |name: &str| {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let domain = name.rsplit_once('@').map_or(name.as_str(), |(_, d)| d);
        ["example.com", "example.net", "example.org"]
            .iter()
            .any(|e| domain == *e || domain.ends_with(&format!(".{e}")))
    };
    let mut out = Vec::new();
    if example(&c.server.hostname) {
        out.push((
            "hostname",
            format!(
                "{} is an example name: set this host's name in DNS (the greeting, EHLO to next hops, Received: and the DSNs' MAILER-DAEMON@ use it)",
                c.server.hostname
            ),
        ));
    }
    // walkAW F22: `localhost` or a name of one label greets the world and
    // signs Received: as no host on the Internet can be found by it.
    let host = c.server.hostname.trim_end_matches('.');
    if !example(host) && (host.eq_ignore_ascii_case("localhost") || !host.contains('.')) {
        out.push((
            "hostname",
            format!(
                "{} is not a fully qualified name: set this host's name in DNS (the greeting, EHLO to next hops, Received: and the DSNs' MAILER-DAEMON@ use it; many next hops refuse an EHLO without a dot)",
                c.server.hostname
            ),
        ));
    }
    if example(&c.server.postmaster) {
        out.push((
            "postmaster",
            format!(
                "{} is an example address: set the site's postmaster (mail to postmaster@ and MAILER-DAEMON@ this host goes there, DSNs name it as the contact, and notifications come from it)",
                c.server.postmaster
            ),
        ));
    }
    out
}

/// `check-config`: `[log]` settings that are valid but do nothing (a
/// warning, exit status 0: the daemon runs the same with them).
fn log_warnings(c: &config::Config, source: &Source) {
    let warnings = mailward::ops::logging::config_warnings(&c.log);
    let text = source.text.as_str();
    for (key, problem) in warnings {
        let line = config::line_of_key(text, "log", key);
        eprintln!("{}: warning: {problem}", at(&c.origin, line));
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(arg) => run(arg.config.as_deref(), None),
        Command::Milter(arg) => run(arg.config.config.as_deref(), Some(arg.listen)),
        Command::CheckConfig(arg) => match config::load(arg.path()) {
            Ok(c) => {
                let source = Source::of(arg.path());
                let tls = tls_problems(&c, &source);
                if !tls.is_empty() {
                    for p in tls {
                        eprintln!("{p}");
                    }
                    return ExitCode::from(1);
                }
                let refusing = account_warnings(&c, &source);
                if refusing.is_empty() {
                    out!("{}: configuration is valid", c.origin);
                } else {
                    // Valid, and the exit status says so (a package build
                    // checks its file where the user does not exist yet),
                    // but not "valid" alone: run by this root, it refuses
                    // (walkAW F8).
                    out!(
                        "{}: configuration is valid, but mailward run refuses to start with it as root here (see the warnings)",
                        c.origin
                    );
                }
                for w in &c.warnings {
                    eprintln!("{}", w.warning());
                }
                for w in &refusing {
                    eprintln!("{w}");
                }
                log_warnings(&c, &source);
                example_name_warnings(&c, &source);
                // An expired certificate loads: said before clients fail
                // (walkBJ F2).
                if let Some(problem) = c
                    .network
                    .tls_certificate
                    .as_deref()
                    .and_then(mailward::smtp::tls::validity)
                    .and_then(|v| v.problem(chrono::Utc::now().timestamp()))
                {
                    let line = config::line_of_key(&source.text, "network", "tls_certificate");
                    eprintln!(
                        "{}: warning: network.tls_certificate: {problem}",
                        at(&c.origin, line)
                    );
                }
                // What `run` logs at start of [access] beside a milter
                // (walkBC F5: only the log said it).
                for (key, w) in mailward::run::Overrides::default().ignored_keys(&c) {
                    let line = config::line_of_key(&source.text, "access", key);
                    eprintln!("{}: warning: {w}", at(&c.origin, line));
                }
                packaged_note(arg.path());
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                ExitCode::from(1)
            }
        },
        Command::Config(ConfigCommand::Default) => {
            use std::io::Write as _;
            let _ = write!(std::io::stdout(), "{}", config::DEFAULT_TOML);
            ExitCode::SUCCESS
        }
        Command::Queue(QueueCommand::Salvage {
            file,
            segment,
            dry_run,
            config,
        }) => {
            // The segment it writes goes into the spool: the daemon's modes.
            mailward::files::restrict_umask();
            salvage(config.config.as_deref(), &file, segment, dry_run)
        }
        Command::Queue(q) => queue(q),
        Command::Stats(c) => stats(c),
        Command::Status { config, json } => status(config.config.as_deref(), json),
        Command::Log(c) => log_command(c),
        Command::Reload(arg) => reload(arg.config.as_deref()),
        Command::Completions { shell } => {
            // A closed pipe (`| head`) is not an error worth a message.
            let _ = mailward::ops::manual::completions(shell, &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::ManPages { out } => match mailward::ops::manual::write_man_pages(&out) {
            Ok(pages) => {
                out!("Wrote {} man pages to {}.", pages.len(), out.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("mailward: {e}");
                ExitCode::from(EX_CANTCREAT)
            }
        },
        Command::Bases(c) => bases(c),
        Command::Scan {
            config,
            json,
            from,
            to,
            attachment,
            paths,
        } => scan(
            config.config.as_deref(),
            &paths,
            &mailward::ops::scan_cli::Options {
                json,
                from,
                to,
                attachment,
            },
        ),
        Command::Spam(c) => {
            // What it makes in spam.dir (the directory, the journal, the
            // lock) gets the daemon's modes, not the shell's umask: root's
            // 022 left them readable by every user (walkBB F6).
            mailward::files::restrict_umask();
            spam(c)
        }
        Command::Quarantine(c) => quarantine(c),
        Command::Archive(c) => archive(c),
    }
}

fn filter(f: &ListFilter) -> Filter {
    Filter {
        status: f.status.clone(),
        since: f.since,
    }
}

fn which(w: &WhichArchive) -> Option<Direction> {
    if w.incoming {
        Some(Direction::Incoming)
    } else if w.outgoing {
        Some(Direction::Outgoing)
    } else {
        None
    }
}

/// What the daemon's answer says the classifier learnt (`learnt`: new,
/// moved, already, or the GTUBE test message, not learnt), as `class`
/// (the other class being `other`).
fn print_learnt(data: &serde_json::Value, class: &str, other: &str, config: Option<&Path>) {
    match data["learnt"].as_str() {
        Some("new") => out!("Learnt as {class}."),
        Some("moved") => out!("Learnt as {class} (it had been learnt as {other})."),
        Some(mailward::ops::stores::GTUBE_NOT_LEARNT) => {
            out!("Not learnt: it is the GTUBE test message (its words are a test's).")
        }
        Some(mailward::ops::stores::UNSAFE_NOT_LEARNT) => out!(
            "Not learnt as {class}: it holds an anti-virus finding (see the warning), which is no spam false positive; `mailward spam learn --{class} FILE{}` teaches a file if you mean it.",
            mailward::ops::stores::config_arg(config)
        ),
        Some(_) => out!("Already learnt as {class}."),
        None => {}
    }
    if data["held_as"].as_str() == Some("as/formal") {
        out!(
            "It was held as as/formal (automatic mail): learning teaches the classifier, not the formal test, so the next such message is formal again. To let this sender's automatic mail through, see \"Formal mail\" in docs/spam.md."
        );
    }
}

fn quarantine(cmd: QuarantineCommand) -> ExitCode {
    let (path, req) = match &cmd {
        QuarantineCommand::List { filter: f, config } => (
            &config.config,
            Request::QuarantineList { filter: filter(f) },
        ),
        QuarantineCommand::Show { id, config, .. } => {
            (&config.config, Request::QuarantineShow { id: id.clone() })
        }
        QuarantineCommand::Release {
            id,
            to,
            learn_ham,
            again,
            config,
        } => (
            &config.config,
            Request::QuarantineRelease {
                id: id.clone(),
                to: to.clone(),
                learn_ham: *learn_ham,
                again: *again,
            },
        ),
        QuarantineCommand::Remove {
            id,
            learn_spam,
            config,
        } => (
            &config.config,
            Request::QuarantineRemove {
                id: id.clone(),
                learn_spam: *learn_spam,
            },
        ),
        QuarantineCommand::Purge { older_than, config } => (
            &config.config,
            Request::QuarantinePurge {
                older_than: *older_than,
            },
        ),
    };
    // List and show read the entry files when the daemon is stopped.
    let answer = match &req {
        Request::QuarantineList { filter } => {
            call_or_read(path.as_deref(), &req, OfflineStore::Quarantine, |dir| {
                mailward::ops::stores::list_offline(dir, filter, None)
                    .and_then(|l| serde_json::to_value(l).map_err(|e| e.to_string()))
            })
        }
        Request::QuarantineShow { id } => {
            call_or_read(path.as_deref(), &req, OfflineStore::Quarantine, |dir| {
                mailward::ops::stores::show_offline(dir, id)
            })
        }
        _ => call(path.as_deref(), &req),
    };
    let data = match answer {
        Ok(d) => d,
        Err(code) => return code,
    };
    match cmd {
        QuarantineCommand::List { filter: f, config } => print_entries(
            &data,
            f.json,
            "quarantine",
            is_filtered(&f),
            config.config.as_deref(),
            || {
                count(
                    config.config.as_deref(),
                    &Request::QuarantineList {
                        filter: Filter::default(),
                    },
                )
            },
        ),
        QuarantineCommand::Show { raw, .. } => print_entry(&data, raw, "Released:  "),
        QuarantineCommand::Release { .. } => {
            out!(
                "{}",
                mailward::ops::stores::sent_reply(&data, "Released", path.as_deref())
            );
            print_learnt(&data, "ham", "spam", path.as_deref());
            // The release stands: a failed lesson is a warning, and the
            // exit status stays 0 so that a script does not release twice.
            if let Some(e) = data["learn_error"].as_str() {
                eprintln!("mailward: warning: released, but not learnt as ham: {e}");
            }
        }
        QuarantineCommand::Remove { id, config, .. } => {
            print_learnt(&data, "spam", "ham", config.config.as_deref());
            out!("{id} removed.")
        }
        QuarantineCommand::Purge { .. } => {
            out!(
                "{} removed.",
                entries_count(data["removed"].as_u64().unwrap_or(0))
            )
        }
    }
    ExitCode::SUCCESS
}

fn archive(cmd: ArchiveCommand) -> ExitCode {
    let (path, req) = match &cmd {
        ArchiveCommand::List {
            filter: f,
            which: w,
            config,
        } => (
            &config.config,
            Request::ArchiveList {
                filter: filter(f),
                direction: which(w),
            },
        ),
        ArchiveCommand::Show {
            id,
            which: w,
            config,
            ..
        } => (
            &config.config,
            Request::ArchiveShow {
                id: id.clone(),
                direction: which(w),
            },
        ),
        ArchiveCommand::Send {
            id,
            to,
            again,
            which: w,
            config,
        } => (
            &config.config,
            Request::ArchiveSend {
                id: id.clone(),
                direction: which(w),
                to: to.clone(),
                again: *again,
            },
        ),
        ArchiveCommand::Remove {
            id,
            which: w,
            config,
        } => (
            &config.config,
            Request::ArchiveRemove {
                id: id.clone(),
                direction: which(w),
            },
        ),
        ArchiveCommand::Purge {
            older_than,
            which: w,
            config,
        } => (
            &config.config,
            Request::ArchivePurge {
                older_than: *older_than,
                direction: which(w),
            },
        ),
    };
    // List and show read the entry files when the daemon is stopped.
    let answer = match &req {
        Request::ArchiveList { filter, direction } => {
            call_or_read(path.as_deref(), &req, OfflineStore::Archive, |data_dir| {
                mailward::ops::stores::archive_list_offline(data_dir, filter, *direction)
                    .and_then(|l| serde_json::to_value(l).map_err(|e| e.to_string()))
            })
        }
        Request::ArchiveShow { id, direction } => {
            call_or_read(path.as_deref(), &req, OfflineStore::Archive, |data_dir| {
                mailward::ops::stores::archive_show_offline(data_dir, id, *direction)
            })
        }
        _ => call(path.as_deref(), &req),
    };
    let data = match answer {
        Ok(d) => d,
        Err(code) => return code,
    };
    match cmd {
        ArchiveCommand::List {
            filter: f,
            which: w,
            config,
        } => {
            print_entries(
                &data,
                f.json,
                "archive",
                is_filtered(&f),
                config.config.as_deref(),
                || {
                    count(
                        config.config.as_deref(),
                        &Request::ArchiveList {
                            filter: Filter::default(),
                            direction: which(&w),
                        },
                    )
                },
            );
        }
        ArchiveCommand::Show { raw, .. } => print_entry(&data, raw, "Sent again:"),
        ArchiveCommand::Send { .. } => {
            // walkV 10: an incoming copy of an infected message went out
            // unchecked without a word.
            if let Some(w) = mailward::ops::stores::archive_send_warning(&data) {
                eprintln!("{w}");
            }
            out!(
                "{}",
                mailward::ops::stores::sent_reply(&data, "Sent", path.as_deref())
            )
        }
        ArchiveCommand::Remove { id, .. } => out!("{id} removed."),
        ArchiveCommand::Purge { .. } => {
            out!(
                "{} removed.",
                entries_count(data["removed"].as_u64().unwrap_or(0))
            )
        }
    }
    ExitCode::SUCCESS
}

/// "1 entry", "2 entries": a count of store entries in words.
fn entries_count(n: u64) -> String {
    if n == 1 {
        "1 entry".to_string()
    } else {
        format!("{n} entries")
    }
}

/// A store entry's statuses in one order, anti-virus first, whatever the
/// store wrote (the incoming archive wrote them sorted, as/ first, and the
/// quarantine av/ first: walkI 22).
fn statuses_in_order(statuses: &[String]) -> Vec<&str> {
    let mut out: Vec<&str> = statuses.iter().map(String::as_str).collect();
    out.sort_by_key(|s| !s.starts_with("av/"));
    out
}

/// A time of a store entry as the store writes `received` and `stored`
/// (`2026-12-05T06:26:14Z`), so that one record shows one style.
fn entry_time(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// Whether `--status` or `--since` narrows a listing.
fn is_filtered(f: &ListFilter) -> bool {
    f.status.is_some() || f.since.is_some()
}

/// How many entries a listing without filter has; None when the daemon
/// cannot be asked again (the listing it answered stands).
fn count(path: Option<&Path>, req: &Request) -> Option<usize> {
    let (socket, _) = locate_socket(path).ok()?;
    let rt = runtime().ok()?;
    let data = rt.block_on(admin::call(&socket, req)).ok()?;
    data.as_array().map(Vec::len)
}

/// A store listing: JSON lines, or a table. `total` counts the entries
/// without the filter, asked only when a filter left none: "empty" would
/// tell the administrator there is nothing to look at.
fn print_entries(
    data: &serde_json::Value,
    json: bool,
    store: &str,
    filtered: bool,
    config: Option<&Path>,
    total: impl FnOnce() -> Option<usize>,
) {
    let entries: Vec<Listed> = serde_json::from_value(data.clone()).unwrap_or_default();
    if json {
        for e in &entries {
            out!("{}", serde_json::to_string(e).unwrap_or_default());
        }
        return;
    }
    if entries.is_empty() {
        match filtered.then(total) {
            None | Some(Some(0)) => out!("The {store} is empty."),
            Some(Some(n)) => {
                out!(
                    "No entry matches the filter; the {store} holds {} in all.",
                    entries_count(n as u64)
                )
            }
            Some(None) => out!("No entry matches the filter."),
        }
        return;
    }
    // An unreadable entry's row suggests its `remove` (walkBR N4).
    for line in store_table(&entries, chrono::Utc::now().timestamp()) {
        out!("{}", mailward::ops::stores::with_config_arg(&line, config));
    }
    out!("{} message(s)", entries.len());
}

/// The width of an AGE or NEXT TRY column: the longest age
/// [`mailward::text::age`] writes in a listing ("59m 59s", "23h 59m",
/// "999d 23h"), so that every row lines up whatever its age.
const AGE_WIDTH: usize = 8;

/// The rows of a quarantine or archive listing, header first, at time
/// `now` (Unix seconds).
fn store_table(entries: &[Listed], now: i64) -> Vec<String> {
    let age = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .map(|d| mailward::text::age(now - d.timestamp()))
            .unwrap_or_default()
    };
    // Recipients go under SENDER: the width of the columns before it.
    let indent = 19 + 1 + AGE_WIDTH + 1 + 9 + 2 + 18 + 1;
    let mut rows = vec![format!(
        "{:<19} {:>AGE_WIDTH$} {:>9}  {:<18} SENDER / RECIPIENTS",
        "ID", "AGE", "SIZE", "WHY"
    )];
    for e in entries {
        let why = match &e.direction {
            Some(d) => d.clone(),
            None => e.reason.clone(),
        };
        // An archive entry is sent again, a quarantined one released
        // (walkAY A2: the archive said "released").
        let released = match (e.released.len(), e.direction.is_some()) {
            (0, _) => String::new(),
            (n, true) => format!(" (sent again {n}x)"),
            (n, false) => format!(" (released {n}x)"),
        };
        let sender = match (&e.unreadable, e.sender.is_empty()) {
            // Not the null sender: not known.
            (Some(_), _) => "?",
            (None, true) => "<>",
            (None, false) => &e.sender,
        };
        rows.push(format!(
            "{:<19} {:>AGE_WIDTH$} {:>9}  {:<18} {sender}{released}",
            e.id,
            age(&e.stored),
            e.size,
            why
        ));
        for r in &e.recipients {
            rows.push(format!("{:indent$}-> {r}", ""));
        }
        if let Some(why) = &e.unreadable {
            let remove = match &e.direction {
                Some(d) => format!("mailward archive remove {} --{d}", e.id),
                None => format!("mailward quarantine remove {}", e.id),
            };
            rows.push(format!(
                "{:indent$}(its description cannot be read: {why}; `{remove}` removes it)",
                ""
            ));
        }
    }
    rows
}

/// One store entry: what is known about it, then the message (or only the
/// message, as received, with --raw).
fn print_entry(data: &serde_json::Value, raw: bool, label: &str) {
    use base64::Engine as _;
    use std::io::Write as _;
    let bytes = data["message_b64"]
        .as_str()
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .unwrap_or_default();
    if raw {
        let _ = std::io::stdout().write_all(&bytes);
        return;
    }
    let message = mailward::ops::stores::terminal_text(&bytes);
    if let Ok(e) = serde_json::from_value::<Listed>(data["entry"].clone()) {
        out!("ID:         {}", e.id);
        out!("Queue ID:   {}", e.queue_id);
        out!("Received:   {}", e.received);
        out!("Stored:     {}", e.stored);
        out!("Client:     {}", e.client_ip);
        out!(
            "Sender:     {}",
            if e.sender.is_empty() { "<>" } else { &e.sender }
        );
        out!("Recipients: {}", e.recipients.join(", "));
        out!(
            "Group:      {}",
            mailward_metrics::snapshot::group_name(&e.group)
        );
        // walkAY A5: an empty line read as a field left out.
        out!(
            "Statuses:   {}",
            match statuses_in_order(&e.statuses).join(", ") {
                s if s.is_empty() => "none".to_string(),
                s => s,
            }
        );
        out!("Reason:     {}", e.reason);
        for f in &e.findings {
            out!("Finding:    {f}");
        }
        // An archive entry is sent again, a quarantined one released.
        for r in &e.released {
            out!(
                "{label} {} as {} to {}",
                entry_time(r.at),
                r.queue_id,
                r.to.join(", ")
            );
        }
    }
    out!("");
    let _ = write!(std::io::stdout(), "{message}");
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("mailward: cannot start the runtime: {e}");
            ExitCode::from(EX_OSERR)
        })
}

/// glibc's malloc tunable the daemon runs with: allocations of 128 KiB and
/// more are mapped and unmapped on their own. By default glibc raises that
/// threshold after large buffers are freed, so that later ones are carved
/// from per-thread arenas, which keep their peak: with four scan workers
/// unpacking eight zip bombs at once (the chaos suite's zip-bombs case,
/// around the same live memory: limits.scan_memory) the peak resident
/// size grew by 172 to 225 MiB from run to run, against 105 to 107 MiB
/// with it (docs/reliability.md). A threshold set in `GLIBC_TUNABLES` by
/// the operator is kept.
const MALLOC_TUNABLE: &str = "glibc.malloc.mmap_threshold=131072";

/// Starts the daemon again with [`MALLOC_TUNABLE`] when it is not set:
/// glibc reads tunables only at start, and `mallopt` would need unsafe
/// code. The same process (exec keeps the PID); on any failure the daemon
/// goes on as it is.
fn with_malloc_tunable() {
    use std::os::unix::process::CommandExt;
    let current = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    if current.contains("glibc.malloc.mmap_threshold") {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let tunables = if current.is_empty() {
        MALLOC_TUNABLE.to_string()
    } else {
        format!("{current}:{MALLOC_TUNABLE}")
    };
    let e = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("GLIBC_TUNABLES", tunables)
        .exec();
    eprintln!("mailward: cannot restart with {MALLOC_TUNABLE} ({e}); going on without it.");
}

/// `mailward milter --listen AT`. Unlike `[milter] listen`, "" is no
/// choice here (a milter-only gateway without a milter socket serves
/// nothing), so the problem must not offer it.
fn milter_listen_arg(at: &str) -> Result<config::MilterListen, String> {
    if at.trim().is_empty() {
        return Err(format!(
            "expected {}, got {at:?} (`mailward milter` always serves a milter socket)",
            config::MilterListen::EXAMPLE
        ));
    }
    config::MilterListen::parse(at)
}

/// `milter`: Some for `mailward milter` (with its --listen): no SMTP
/// listener, the milter socket required.
fn run(path: Option<&Path>, milter: Option<Option<String>>) -> ExitCode {
    // The file by its absolute path (symbolic links kept, so that a
    // reload follows a link repointed since): mwConfigFile, the traps,
    // `status` and the log name it so (walkT 13), and the CLI finds this
    // daemon by it after a reload moved its socket ([`running_socket`]).
    let absolute = path.map(|p| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()));
    let path = absolute.as_deref();
    with_malloc_tunable();
    // Before any thread or file: nothing the daemon creates is for others.
    mailward::files::restrict_umask();
    let mut config = match config::load(path) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            // A file that cannot be read has said so, and what to do;
            // "invalid" and check-config would send the reader the wrong
            // way (walkAC).
            let unread = errors.0.iter().all(|p| p.line == 0 && p.key.is_empty());
            if !unread {
                eprintln!("mailward: refusing to start with an invalid configuration (see `mailward check-config`).");
            }
            return ExitCode::from(EX_CONFIG);
        }
    };
    let mut overrides = mailward::run::Overrides::default();
    if let Some(listen) = milter {
        overrides.milter_only = true;
        if let Some(at) = listen {
            match milter_listen_arg(&at) {
                Ok(l) => overrides.milter_listen = Some(l),
                Err(e) => {
                    eprintln!("mailward milter: --listen: {e}");
                    return ExitCode::from(EX_CONFIG);
                }
            }
        }
        overrides.apply(&mut config);
        if config.milter.listen.is_none() {
            eprintln!("mailward milter: no milter socket: give --listen inet:10031@127.0.0.1 or set [milter] listen.");
            return ExitCode::from(EX_CONFIG);
        }
    }
    use mailward::ops::privileges;
    let switch = match privileges::plan(
        config.server.user.as_deref(),
        config.server.group.as_deref(),
        path.is_none(),
    ) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mailward: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    // A gateway running on this data_dir first, before the log is opened
    // and handed over: a refused second start must not give the running
    // gateway's log file to its own user, nor write its refusal there
    // (walkAA: the running gateway then could not reopen its log).
    if let Err(e) = mailward::files::DataDirLock::ensure_free(&config.server.data_dir) {
        eprintln!("mailward: {e}");
        return ExitCode::from(EX_TEMPFAIL);
    }
    if let (Some(s), mailward::config::LogDestination::File(file)) =
        (&switch, &config.log.destination)
    {
        if let Err(e) = s.prepare_dir_of(file) {
            eprintln!("mailward: {e}");
            return ExitCode::from(EX_OSERR);
        }
    }
    let _guard = match mailward::ops::logging::init(&config.log) {
        Ok(g) => g,
        // A file or a writer the system refuses is not a configuration
        // that check-config would refuse: 71, as for a port in use.
        Err(e @ mailward::ops::logging::LogError::OpenFile { .. })
        | Err(e @ mailward::ops::logging::LogError::Syslog(_)) => {
            eprintln!("mailward: {e}; check log.destination and that its directory exists and is writable");
            return ExitCode::from(EX_OSERR);
        }
        Err(e) => {
            eprintln!("mailward: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    if let (Some(s), Some(log)) = (&switch, mailward::ops::logging::file_path()) {
        // Opened as root; the user must be able to reopen it after a
        // rotation.
        if let Err(e) = s.hand_over(&log) {
            eprintln!("mailward: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    }
    if let Some(why) = privileges::mismatch(config.server.user.as_deref()) {
        tracing::warn!(target: "app", "{why}.");
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    // Logging to stderr, the log line would be the same error a second
    // time on the terminal (walkAC); the plain line below is the one an
    // operator reads there.
    let logs_elsewhere = !matches!(
        config.log.destination,
        mailward::config::LogDestination::Stderr
    );
    let origin = config.origin.clone();
    let tls_key = config.network.tls_key.clone();
    match rt.block_on(mailward::run::run(
        config,
        path.map(Path::to_path_buf),
        overrides,
        switch,
    )) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if logs_elsewhere {
                tracing::error!(target: "app", error = %e, "Mailward cannot run.");
            }
            if let Some((problem, code)) = tls_file_problem(&e, &origin, path, tls_key.as_deref()) {
                eprintln!("{problem}");
                return ExitCode::from(code);
            }
            eprintln!("mailward: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// A listener certificate or key the start could not use, said at the key
/// that names it (`FILE:LINE: network.tls_key: ...`, as check-config says
/// it), with status 64 when the file's content is wrong (not PEM, no key,
/// a key of another certificate: the configuration names the wrong file)
/// and 71 when the system refused to read it (walkAW F23: the start said
/// only `TLS: ...` and exited 71 whatever the cause).
fn tls_file_problem(
    e: &mailward::run::RunError,
    origin: &str,
    path: Option<&Path>,
    tls_key: Option<&Path>,
) -> Option<(String, u8)> {
    let mailward::run::RunError::Build(mailward::gateway::BuildError::Tls(tls)) = e else {
        return None;
    };
    let (key, code) = listener_tls_key(tls, tls_key);
    let text = path
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    let line = config::line_of_key(&text, "network", key);
    Some((format!("{}: network.{key}: {tls}", at(origin, line)), code))
}

/// The `[network]` key naming the file a listener TLS error is about
/// (`tls_key` is the file at `tls_key`), and the status `run` ends with:
/// 71 when the system refused to read it, 64 when its content is wrong.
fn listener_tls_key(
    tls: &mailward::smtp::tls::TlsError,
    tls_key: Option<&Path>,
) -> (&'static str, u8) {
    use mailward::smtp::tls::TlsError;
    match tls {
        TlsError::Read { path: file, .. } if tls_key == Some(file.as_path()) => {
            ("tls_key", EX_OSERR)
        }
        TlsError::Read { .. } => ("tls_certificate", EX_OSERR),
        TlsError::NoCertificate(_) => ("tls_certificate", EX_CONFIG),
        TlsError::NoKey(_) | TlsError::KeyMismatch { .. } => ("tls_key", EX_CONFIG),
        TlsError::Config(_) | TlsError::BadCertificate { .. } => ("tls_certificate", EX_CONFIG),
    }
}

/// The admin socket of the configuration at `path`. When the file does not
/// load, the socket is read from it leniently, with a warning: the daemon
/// refused the file on SIGHUP and runs on the one it loaded before, and
/// the admin commands (logrotate's `log reopen`, monitoring's `status`)
/// must still reach it. Only when even that fails is it an error.
fn admin_socket(path: Option<&Path>) -> Result<std::path::PathBuf, ExitCode> {
    let socket = admin_socket_of_file(path)?;
    if std::fs::symlink_metadata(&socket).is_ok() {
        return Ok(socket);
    }
    let Some(found) = path.and_then(|p| running_socket(p, &socket)) else {
        return Ok(socket);
    };
    let file = path
        .map(|p| {
            std::path::absolute(p)
                .unwrap_or_else(|_| p.to_path_buf())
                .display()
                .to_string()
        })
        .unwrap_or_default();
    eprintln!(
        "mailward: note: {}",
        moved_socket_note(&socket, &file, &found)
    );
    Ok(found)
}

/// Why the socket the file names is not where the daemon listens, as the
/// operator can act on it. A relative socket path that the daemon's path
/// ends with is the command run from another directory than the daemon
/// (walkAI 6): nothing was reloaded, and blaming a reload misleads.
fn moved_socket_note(socket: &Path, file: &str, found: &Path) -> String {
    if socket.is_relative() && found.ends_with(socket) {
        let here = std::env::current_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_else(|_| "this directory".to_string());
        return format!(
            "{} is relative: from {here} it does not exist, and the daemon running {file} started elsewhere and listens at {}. Asking it there (an absolute server.data_dir, or running the command from the daemon's directory, avoids this note).",
            socket.display(),
            found.display()
        );
    }
    format!(
        "{} does not exist, but the daemon running {file} listens at {}: it keeps the server.data_dir and server.admin_socket it started with until it restarts. Asking it there.",
        socket.display(),
        found.display()
    )
}

/// The admin socket a daemon running on the configuration file `config`
/// listens at, when the socket the file names (`missing`) does not exist:
/// a reload that changed `server.data_dir` or `server.admin_socket` leaves
/// the daemon at the place it started with (walkT 3), and `log reopen`
/// from logrotate or a monitoring `status` must still reach it. The
/// candidates are the listening UNIX sockets of this host
/// (`/proc/net/unix`) with the same file name as `missing`, or
/// `admin.sock`; each is asked for its status, and the one whose daemon
/// runs this file (by absolute path, as `mailward run` records it) is it.
/// Sockets this user may not use are passed over.
fn running_socket(config: &Path, missing: &Path) -> Option<std::path::PathBuf> {
    use std::path::PathBuf;
    let want = std::path::absolute(config).ok()?;
    let missing = std::path::absolute(missing).ok()?;
    let names = [
        missing.file_name()?.to_os_string(),
        std::ffi::OsString::from("admin.sock"),
    ];
    let table = std::fs::read_to_string("/proc/net/unix").ok()?;
    let mut candidates: Vec<PathBuf> = Vec::new();
    for line in table.lines().skip(1) {
        // Num RefCount Protocol Flags Type St Inode Path; Flags 00010000
        // is a listening socket.
        let mut rest = line;
        let mut fields = Vec::with_capacity(7);
        for _ in 0..7 {
            rest = rest.trim_start();
            let end = rest.find(' ').unwrap_or(rest.len());
            fields.push(&rest[..end]);
            rest = &rest[end..];
        }
        let path = PathBuf::from(rest.trim());
        let listening = fields.get(3) == Some(&"00010000");
        if listening
            && path.is_absolute()
            && path != missing
            && path
                .file_name()
                .is_some_and(|n| names.iter().any(|w| w == n))
            && !candidates.contains(&path)
        {
            candidates.push(path);
        }
    }
    if candidates.is_empty() {
        return None;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    candidates.into_iter().find(|socket| {
        let asked = rt.block_on(admin::call_within(
            socket,
            &Request::Status,
            std::time::Duration::from_secs(2),
        ));
        asked.is_ok_and(|status| status["config"].as_str().map(Path::new) == Some(want.as_path()))
    })
}

/// The admin socket the configuration at `path` names (see
/// [`admin_socket`]).
fn admin_socket_of_file(path: Option<&Path>) -> Result<std::path::PathBuf, ExitCode> {
    match locate_socket(path) {
        Ok((socket, None)) => Ok(socket),
        Ok((socket, Some(errors))) => {
            let more = match errors.0.len().saturating_sub(1) {
                0 => String::new(),
                n => format!(" (and {n} more problem(s))"),
            };
            let first = errors
                .0
                .first()
                .map(ToString::to_string)
                .unwrap_or_default();
            eprintln!(
                "mailward: warning: {first}{more}; a running daemon keeps the configuration it loaded before (see `mailward check-config`); asking it at {}.",
                socket.display()
            );
            Ok(socket)
        }
        Err(errors) => {
            eprintln!("{errors}");
            Err(ExitCode::from(EX_CONFIG))
        }
    }
}

/// The admin socket of the configuration at `path`, and the problems of a
/// file that does not load but names its socket (see [`admin_socket`]).
fn locate_socket(
    path: Option<&Path>,
) -> Result<(std::path::PathBuf, Option<config::ConfigErrors>), config::ConfigErrors> {
    let errors = match config::load(path) {
        Ok(cfg) => return Ok((cfg.server.admin_socket, None)),
        Err(errors) => errors,
    };
    match path
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|text| admin::socket_of_text(&text))
    {
        Some(socket) if !errors.0.is_empty() => Ok((socket, Some(errors))),
        _ => Err(errors),
    }
}

/// Sends one request to the daemon found through the configuration's admin
/// socket; prints the error and gives the exit code when it fails.
fn call(path: Option<&Path>, req: &Request) -> Result<serde_json::Value, ExitCode> {
    mailward::ops::logging::init_cli();
    let socket = admin_socket(path)?;
    let rt = runtime()?;
    rt.block_on(admin::call(&socket, req)).map_err(|e| {
        eprintln!("mailward: {}", refusal_said(&e, path));
        ExitCode::from(e.exit_code())
    })
}

/// An admin error as printed: a daemon's refusal with the `--config`
/// given in the commands it suggests (walkBQ F3); the CLI's own errors
/// (no daemon, no permission) as they are.
fn refusal_said(e: &admin::AdminError, path: Option<&Path>) -> String {
    match e {
        admin::AdminError::Refused(text) => mailward::ops::stores::with_config_arg(text, path),
        e => e.to_string(),
    }
}

/// The store an offline answer reads ([`call_or_read`]).
enum OfflineStore {
    Quarantine,
    Archive,
}

/// As [`call`], but when no daemon answers (it is stopped: maintenance, an
/// upgrade, a crash at night), `offline` reads the store's files instead,
/// read-only, with a note on stderr saying so (walkAP F9: `quarantine
/// list` only said the daemon was not reachable, though the entries are
/// plain files). `offline` is given the quarantine's directory, or for the
/// archive the configuration's data directory (the archive has two).
fn call_or_read(
    path: Option<&Path>,
    req: &Request,
    store: OfflineStore,
    offline: impl FnOnce(&Path) -> Result<serde_json::Value, String>,
) -> Result<serde_json::Value, ExitCode> {
    mailward::ops::logging::init_cli();
    let socket = admin_socket(path)?;
    let rt = runtime()?;
    match rt.block_on(admin::call(&socket, req)) {
        Ok(v) => Ok(v),
        Err(admin::AdminError::Unreachable { .. }) => {
            let cfg = config::load(path).map_err(|errors| {
                eprintln!("{errors}");
                ExitCode::from(EX_CONFIG)
            })?;
            let data_dir = &cfg.server.data_dir;
            // Where the entries are, what `offline` is given, and what
            // of the store's commands needs the daemon.
            let (note, dir, needs) = match store {
                OfflineStore::Quarantine => {
                    let q = mailward::ops::stores::store_dir(data_dir, None);
                    (q.clone(), q, "release, remove and purge")
                }
                OfflineStore::Archive => (
                    data_dir.join("archive"),
                    data_dir.clone(),
                    "send, remove and purge",
                ),
            };
            eprintln!(
                "mailward: note: {}",
                mailward::ops::stores::offline_note(&note, needs)
            );
            offline(&dir).map_err(|e| {
                let said = mailward::ops::stores::with_config_arg(&e, path);
                eprintln!("mailward: {said}");
                ExitCode::FAILURE
            })
        }
        Err(e) => {
            eprintln!("mailward: {}", refusal_said(&e, path));
            Err(ExitCode::from(e.exit_code()))
        }
    }
}

/// `queue salvage`: offline, on the spool of the configuration's data
/// directory (never through the admin socket: the gateway must be stopped).
fn salvage(path: Option<&Path>, file: &Path, segment: Option<u64>, dry_run: bool) -> ExitCode {
    let cfg = match config::load(path) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    match mailward::spool::salvage::salvage(&cfg.server.data_dir, file, segment, dry_run) {
        Ok(report) => {
            out!(
                "{}",
                mailward::ops::salvage_report::render(&report).trim_end()
            );
            ExitCode::SUCCESS
        }
        // A data directory without a spool is the configuration's problem
        // (64): said at its key, as every such problem is (walkAZ F2).
        Err(e @ mailward::spool::salvage::SalvageError::NoSpool { .. }) => {
            let text = path
                .and_then(|p| std::fs::read_to_string(p).ok())
                .unwrap_or_default();
            let line = config::line_of_key(&text, "server", "data_dir");
            eprintln!("{}: server.data_dir: {e}", at(&cfg.origin, line));
            ExitCode::from(e.exit_code())
        }
        Err(e) => {
            eprintln!("mailward: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn queue(cmd: QueueCommand) -> ExitCode {
    let (path, req) = match &cmd {
        QueueCommand::Salvage {
            file,
            segment,
            dry_run,
            config,
        } => return salvage(config.config.as_deref(), file, *segment, *dry_run),
        QueueCommand::List {
            config,
            to,
            from,
            deferred,
            held,
            limit,
            ..
        } => (
            &config.config,
            Request::QueueList {
                filter: mailward::ops::admin::QueueFilter {
                    to: to.clone(),
                    from: from.clone(),
                    deferred: *deferred,
                    held: *held,
                    limit: limit.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
                },
            },
        ),
        QueueCommand::Summary { config, .. } => (
            &config.config,
            Request::QueueList {
                filter: Default::default(),
            },
        ),
        QueueCommand::Show { id, config } => {
            (&config.config, Request::QueueShow { id: id.clone() })
        }
        QueueCommand::Flush { config } => (&config.config, Request::QueueFlush),
        QueueCommand::Remove { ids, config } => {
            return queue_each(
                config.config.as_deref(),
                ids,
                |id| Request::QueueRemove { id },
                |id, _| out!("{id} removed."),
            )
        }
        QueueCommand::Hold { ids, config } => {
            // walkAW F3: the command suggested carries the --config given.
            let with = mailward::ops::stores::config_arg(config.config.as_deref());
            return queue_each(
                config.config.as_deref(),
                ids,
                |id| Request::QueueHold { id },
                |id, _| out!("{id} held: no delivery until `mailward queue release {id}{with}`."),
            );
        }
        QueueCommand::Release { ids, config } => {
            return queue_each(
                config.config.as_deref(),
                ids,
                |id| Request::QueueRelease { id },
                |id, data| {
                    if data.get("past_lifetime").and_then(|v| v.as_bool()) == Some(true) {
                        out!("{id} released: it is tried now, once: it is older than timeouts.max_queue_lifetime, so a failure bounces it.")
                    } else {
                        out!("{id} released: it is tried now.")
                    }
                },
            )
        }
    };
    let data = match call(path.as_deref(), &req) {
        Ok(d) => d,
        Err(code) => return code,
    };
    match cmd {
        QueueCommand::List { json, .. } => {
            // A filtered listing comes with its counts; without a filter
            // it is the bare array.
            let (items, matched, queued) = if data.is_array() {
                (data, None, None)
            } else {
                let count = |k: &str| data.get(k).and_then(|v| v.as_u64());
                let (m, q) = (count("matched"), count("queued"));
                (data.get("items").cloned().unwrap_or_default(), m, q)
            };
            let items: Vec<QueueItem> = match serde_json::from_value(items) {
                Ok(items) => items,
                Err(e) => {
                    eprintln!("mailward: the daemon's queue listing is unreadable ({e}): is it another version?");
                    return ExitCode::from(1);
                }
            };
            if json {
                // Still the array scripts read; what the limit left out
                // goes to standard error.
                match serde_json::to_string(&items) {
                    Ok(text) => out!("{text}"),
                    Err(e) => {
                        eprintln!("mailward: {e}");
                        return ExitCode::from(1);
                    }
                }
                if let Some(more) = matched
                    .map(|m| m.saturating_sub(items.len() as u64))
                    .filter(|&m| m > 0)
                {
                    eprintln!(
                        "mailward: {} more not shown; use --limit or a filter",
                        thousands(more)
                    );
                }
            } else {
                print_table(&items, matched, queued);
            }
        }
        QueueCommand::Summary { json, .. } => {
            use mailward::ops::queue_summary;
            let items: Vec<QueueItem> = match serde_json::from_value(data) {
                Ok(items) => items,
                Err(e) => {
                    eprintln!("mailward: the daemon's queue listing is unreadable ({e}): is it another version?");
                    return ExitCode::from(1);
                }
            };
            let summary = queue_summary::summarize(&items, chrono::Utc::now().timestamp());
            if json {
                match serde_json::to_string(&summary) {
                    Ok(text) => out!("{text}"),
                    Err(e) => {
                        eprintln!("mailward: {e}");
                        return ExitCode::from(1);
                    }
                }
            } else {
                out!("{}", queue_summary::render(&summary).trim_end());
            }
        }
        QueueCommand::Show { .. } => {
            if let Some(env) = data.get("envelope") {
                if let Ok(item) = serde_json::from_value::<QueueItem>(env.clone()) {
                    for line in
                        queue_table(std::slice::from_ref(&item), chrono::Utc::now().timestamp())
                    {
                        out!("{line}");
                    }
                }
            }
            if let Some(detail) = data.get("detail") {
                for line in show_detail_lines(detail) {
                    out!("{line}");
                }
            }
            out!("");
            // The message is the sender's text: its escape sequences and
            // bidi controls are shown, not obeyed, as `quarantine show`
            // shows them (walkAR F7: a U+202E subject printed reversed).
            use std::io::Write as _;
            let _ = write!(
                std::io::stdout(),
                "{}",
                mailward::ops::stores::terminal_text(
                    data.get("message")
                        .and_then(|m| m.as_str())
                        .unwrap_or("")
                        .as_bytes()
                )
            );
        }
        QueueCommand::Flush { .. } => {
            let n = data.get("scheduled").and_then(|n| n.as_u64()).unwrap_or(0);
            // The strings of an array field (an older daemon's answer has
            // no "resumed").
            let strings = |key: &str| -> Vec<&str> {
                data.get(key)
                    .and_then(|h| h.as_array())
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str())
                    .collect()
            };
            let (held, resumed) = (strings("held"), strings("resumed"));
            if !resumed.is_empty() {
                out!(
                    "Suspension lifted ({}): the mail for it connects again.",
                    resumed.join(", ")
                );
            }
            match held.as_slice() {
                [] => out!("{n} message(s) scheduled for delivery now."),
                ids => out!(
                    "{n} message(s) scheduled for delivery now; {} held message(s) not scheduled ({}): `mailward queue release ID` sends one.",
                    ids.len(),
                    ids.join(", ")
                ),
            }
        }
        // Answered in the first match (salvage without the daemon).
        QueueCommand::Salvage { .. }
        | QueueCommand::Remove { .. }
        | QueueCommand::Hold { .. }
        | QueueCommand::Release { .. } => {}
    }
    ExitCode::SUCCESS
}

/// `queue hold|release|remove ID...`: each ID in turn (`-`: the IDs on
/// standard input, as `postsuper -h -` takes them), over one connection
/// set-up; an ID the daemon refuses is reported and the others go on
/// (walkK: one ID at a time made "keep a destination's mail back" a
/// script). The exit status is the last refusal's, or 0.
fn queue_each(
    path: Option<&Path>,
    ids: &[String],
    request: impl Fn(String) -> Request,
    done: impl Fn(&str, &serde_json::Value),
) -> ExitCode {
    let mut all = Vec::new();
    for id in ids {
        if id == "-" {
            let mut text = String::new();
            if let Err(e) = std::io::Read::read_to_string(&mut std::io::stdin(), &mut text) {
                eprintln!("mailward: cannot read queue IDs from standard input: {e}");
                return ExitCode::from(74); // EX_IOERR
            }
            all.extend(text.split_whitespace().map(str::to_string));
        } else {
            all.push(id.clone());
        }
    }
    if all.is_empty() {
        eprintln!("mailward: no queue ID given (standard input was empty)");
        // As clap answers a missing argument.
        return ExitCode::from(2);
    }
    mailward::ops::logging::init_cli();
    let socket = match admin_socket(path) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let mut status = ExitCode::SUCCESS;
    for id in all {
        match rt.block_on(admin::call(&socket, &request(id.clone()))) {
            Ok(data) => done(&id, &data),
            Err(e) => {
                eprintln!("mailward: {e}");
                status = ExitCode::from(e.exit_code());
                // Without a daemon, the next IDs would say the same.
                if matches!(e.exit_code(), 69 | 77) {
                    return status;
                }
            }
        }
    }
    status
}

/// `mailward scan`: the exit status says what was found (see its --help).
fn scan(
    path: Option<&std::path::Path>,
    paths: &[std::path::PathBuf],
    opts: &mailward::ops::scan_cli::Options,
) -> ExitCode {
    use mailward::ops::scan_cli::{self, Outcome, ScanCliError};
    let cfg = match config::load(path) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    match scan_cli::scan(
        &cfg,
        paths,
        opts,
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    ) {
        Ok(Outcome::Clean) => ExitCode::SUCCESS,
        Ok(Outcome::Found) => ExitCode::from(1),
        Ok(Outcome::Unchecked) => ExitCode::from(3),
        Err(e @ ScanCliError::Usage(_)) => {
            eprintln!("mailward: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("mailward: {e}");
            ExitCode::from(3)
        }
    }
}

fn spam(cmd: SpamCommand) -> ExitCode {
    use mailward::ops::spam_cli;
    let path = match &cmd {
        SpamCommand::Learn { config, .. }
        | SpamCommand::Forget { config, .. }
        | SpamCommand::Status { config, .. }
        | SpamCommand::Check { config, .. }
        | SpamCommand::Export { config, .. }
        | SpamCommand::Import { config, .. }
        | SpamCommand::Rollback { config }
        | SpamCommand::Fold { config }
        | SpamCommand::Spf { config, .. } => config.config.clone(),
    };
    let cfg = match config::load(path.as_deref()) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    let result = match cmd {
        // learn refuses an empty class itself (a usage error, exit 2).
        SpamCommand::Learn { spam, ham, .. } => {
            spam_cli::learn(&cfg, &spam, &ham, &mut std::io::stderr())
                .map(|t| out!("{}", t.learnt_summary()))
        }
        SpamCommand::Forget { paths, .. } => spam_cli::forget(&cfg, &paths, &mut std::io::stderr())
            .map(|t| out!("{}", t.forgot_summary())),
        SpamCommand::Status { json, .. } => {
            let v = spam_cli::status(&cfg);
            if json {
                out!("{v}");
            } else {
                out!("{}", spam_cli::status_text(&v).trim_end());
            }
            spam_cli::status_outcome(&v)
        }
        SpamCommand::Check {
            paths,
            json,
            clues,
            level,
            group,
            ..
        } => spam_cli::judging_level(&cfg, level.as_deref(), group.as_deref()).and_then(|level| {
            spam_cli::check(
                &cfg,
                &paths,
                json,
                clues,
                level,
                &mut std::io::stdout(),
                &mut std::io::stderr(),
            )
        }),
        SpamCommand::Export { file, force, .. } => spam_cli::export(&cfg, &file, force).map(|m| {
            out!(
                "Exported {} spam and {} ham message(s) to {}.",
                m.spam_messages,
                m.ham_messages,
                file.display()
            );
        }),
        SpamCommand::Import { file, base, .. } => {
            spam_cli::import(&cfg, &file, base, &mut std::io::stderr())
                .map(|imported| out!("{}", imported.summary(&file)))
        }
        SpamCommand::Fold { .. } => spam_cli::fold(&cfg, &mut std::io::stderr()).map(|j| {
            if j.records == 0 && j.unread > 0 {
                // Every record damaged (dropped, said on stderr).
                out!("No intact change to fold: the snapshot is left as it is.");
            } else if j.records == 0 {
                out!("Nothing to fold: the journal holds no changes.");
            } else {
                out!(
                    "Folded {} change(s) ({} bytes of journal) into a new snapshot.",
                    j.records,
                    j.bytes
                );
            }
        }),
        SpamCommand::Rollback { .. } => spam_cli::rollback(&cfg).map(|kept| {
            out!(
                "The previous base is in use again; the base it replaced is kept as {} (`spam import --base` it to go back to it).",
                kept.display()
            );
        }),
        SpamCommand::Spf {
            ip,
            helo,
            sender,
            dns,
            json,
            ..
        } => spam_cli::spf(&cfg, ip, &helo, &sender, dns).map(|(s, why)| {
            if json {
                let mut v = serde_json::json!({"result": s.result.as_str(), "domain": s.domain});
                if let Some(why) = &why {
                    v["why"] = serde_json::Value::from(why.as_str());
                }
                if let Some(text) = &s.explanation {
                    v["explanation"] = serde_json::Value::from(text.as_str());
                }
                out!("{v}");
            } else {
                let mut line = format!("spf={} domain={}", s.result, s.domain);
                if let Some(why) = why {
                    line.push_str(&format!(" why={why}"));
                }
                if let Some(text) = &s.explanation {
                    line.push_str(&format!(" explanation={text:?}"));
                }
                out!("{line}");
            }
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mailward: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn bases(cmd: BasesCommand) -> ExitCode {
    let (path, req) = match &cmd {
        BasesCommand::Status { config } => (&config.config, Request::BasesStatus),
        BasesCommand::Update {
            from,
            allow_older,
            config,
        } => (
            &config.config,
            Request::BasesUpdate {
                from: from.as_deref().map(mailward::check::bases::absolute_source),
                allow_older: *allow_older,
            },
        ),
        BasesCommand::Rollback { config } => (&config.config, Request::BasesRollback),
    };
    // The daemon checks and compiles the whole set before it answers: say
    // what is going on rather than sit silent, to a person at a terminal
    // (scripts and logs get the one line of the outcome).
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stderr());
    match &cmd {
        _ if !interactive => {}
        BasesCommand::Update { from, .. } => eprintln!(
            "Installing the bases from {}: the daemon checks and compiles them first (mail keeps flowing); this can take a while for a large set...",
            from.as_deref().unwrap_or("bases.update_from")
        ),
        BasesCommand::Rollback { .. } => {
            eprintln!("Rolling back: the daemon compiles the previous bases first...")
        }
        BasesCommand::Status { .. } => {}
    }
    let data = match call(path.as_deref(), &req) {
        Ok(d) => d,
        Err(code) => return code,
    };
    match cmd {
        BasesCommand::Status { .. } => {
            let when = |v: &serde_json::Value| {
                v.as_i64()
                    .filter(|t| *t > 0)
                    .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
                    .map_or("never".to_string(), |t| t.to_rfc3339())
            };
            let set = |v: &serde_json::Value| match v {
                serde_json::Value::Null => "none".to_string(),
                v => {
                    let loaded = match v["loaded_at"].as_i64() {
                        Some(t) if t > 0 => format!(", loaded {}", when(&v["loaded_at"])),
                        _ => String::new(),
                    };
                    format!(
                        "version {}, released {}, {}{loaded}",
                        v["version"].as_str().unwrap_or("?"),
                        when(&v["released"]),
                        mailward::text::counted(v["records"].as_u64().unwrap_or(0), "record")
                    )
                }
            };
            out!("directory:   {}", data["directory"].as_str().unwrap_or("?"));
            out!("in use:      {}", set(&data["current"]));
            match data["previous_error"].as_str() {
                Some(e) => out!("previous:    unreadable: {e}"),
                None => out!("previous:    {}", set(&data["previous"])),
            }
            let none_in_use = data["current"].is_null();
            if none_in_use {
                out!("obsolete:    n/a (no set in use)");
            } else {
                out!("obsolete:    {}", data["obsolete"]);
            }
            out!(
                "last update: {} ({})",
                when(&data["last_check"]),
                data["last_result"].as_str().unwrap_or("unknown")
            );
            if let (Some("error"), Some(m)) =
                (data["last_result"].as_str(), data["last_message"].as_str())
            {
                out!("last error:  {m}");
            }
            if let Some(e) = data["on_disk_error"].as_str() {
                if none_in_use {
                    // walkZ 8: the daemon already runs without rules.
                    out!("on disk:     does not load: {e}; no AV rules are in use: every message is av/error until it is fixed or rolled back");
                } else {
                    out!("on disk:     does not load: {e}; a restart would run without AV rules until it is fixed or rolled back");
                }
            }
        }
        _ => out!("{}", data["message"].as_str().unwrap_or("done")),
    }
    ExitCode::SUCCESS
}

fn log_command(cmd: LogCommand) -> ExitCode {
    let LogCommand::Reopen { config } = cmd;
    let data = match call(config.config.as_deref(), &Request::LogReopen) {
        Ok(d) => d,
        Err(code) => return code,
    };
    let mut reopened: Vec<&str> = Vec::new();
    for key in ["log", "raw"] {
        if let Some(p) = data.get(key).and_then(|p| p.as_str()) {
            reopened.push(p);
        }
    }
    if reopened.is_empty() {
        out!("Nothing to reopen: the log does not go to a file and raw records are off.");
    } else {
        out!("Reopened {}.", reopened.join(" and "));
    }
    ExitCode::SUCCESS
}

/// `reload`: the daemon re-reads its configuration as for SIGHUP and
/// says what came of it; a refusal fails the command (walkAP F11).
fn reload(path: Option<&Path>) -> ExitCode {
    let data = match call(path, &Request::Reload) {
        Ok(d) => d,
        Err(code) => return code,
    };
    let (lines, problems, taken) = admin::reload_answer(data, path);
    for line in problems {
        eprintln!("{line}");
    }
    for line in lines {
        out!("{line}");
    }
    if taken {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn status(path: Option<&Path>, json: bool) -> ExitCode {
    let data = if json {
        // A JSON consumer gets an object on stdout even when the daemon
        // does not answer, with the same exit status as the text form, so
        // that `jq -e '.problems == []'` fails on "down" by itself.
        mailward::ops::logging::init_cli();
        let socket = match admin_socket(path) {
            Ok(s) => s,
            Err(code) => {
                // The configuration names the socket; without it the
                // daemon cannot be asked, and whether it runs is unknown.
                if let Err(errors) = locate_socket(path) {
                    let problems: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
                    out!(
                        "{}",
                        serde_json::json!({ "running": null, "problems": problems })
                    );
                }
                return code;
            }
        };
        let rt = match runtime() {
            Ok(rt) => rt,
            Err(code) => return code,
        };
        match rt.block_on(admin::call(&socket, &Request::Status)) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("mailward: {e}");
                out!("{}", mailward::ops::status::unanswered(&e));
                return ExitCode::from(e.exit_code());
            }
        }
    } else {
        match call(path, &Request::Status) {
            Ok(d) => d,
            Err(code) => return code,
        }
    };
    if json {
        // As the objects of a daemon that gives no status have it, so that
        // `jq -e .running` is true for a running daemon (walkT 6).
        let mut data = data;
        if let Some(object) = data.as_object_mut() {
            object.insert("running".into(), serde_json::Value::Bool(true));
        }
        out!("{data}");
        return ExitCode::SUCCESS;
    }
    match serde_json::from_value::<mailward::ops::status::Status>(data) {
        Ok(s) => {
            let text = mailward::ops::status::render(&s, chrono::Utc::now().timestamp());
            out!("{}", text.trim_end());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mailward: the daemon's status is unreadable ({e}): is it another version? Try --json.");
            ExitCode::from(1)
        }
    }
}

fn stats(cmd: StatsCommand) -> ExitCode {
    let (path, req) = match &cmd {
        StatsCommand::Show { config, .. } => (&config.config, Request::StatsShow),
        StatsCommand::Write { config } => (&config.config, Request::StatsWrite),
        StatsCommand::Reset { config } => (&config.config, Request::StatsReset),
    };
    let data = match call(path.as_deref(), &req) {
        Ok(d) => d,
        Err(code) => return code,
    };
    match cmd {
        StatsCommand::Show { json: true, .. } => {
            out!(
                "{}",
                serde_json::to_string_pretty(&data).unwrap_or_default()
            )
        }
        StatsCommand::Show { .. } => print_stats(&data),
        StatsCommand::Write { .. } => {
            let p = data.get("path").and_then(|p| p.as_str()).unwrap_or("?");
            out!("Statistics written to {p}.");
        }
        StatsCommand::Reset { .. } => {
            out!("Statistics reset.");
            match (
                data.get("path").and_then(|p| p.as_str()),
                data.get("write_error").and_then(|p| p.as_str()),
            ) {
                (Some(p), _) => out!(
                    "The figures up to the reset are in {p} until its next write (statistics.write_interval): copy it aside now if you account from it."
                ),
                (None, Some(e)) => {
                    eprintln!("mailward: the figures up to the reset could not be written: {e}")
                }
                (None, None) => {}
            }
        }
    }
    ExitCode::SUCCESS
}

/// The stats JSON as an indented table: one line per series.
fn print_stats(data: &serde_json::Value) {
    let when = |key: &str| {
        data.get(key)
            .and_then(|v| v.as_i64())
            .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
            .map(|t| t.to_rfc3339())
            .unwrap_or_default()
    };
    out!(
        "Mailward {}  started {}  counters since {}",
        data.get("version").and_then(|v| v.as_str()).unwrap_or("?"),
        when("start_time"),
        when("reset_time")
    );
    for cat in mailward_metrics::Category::ALL {
        let Some(section) = data.get(cat.as_str()).and_then(|v| v.as_object()) else {
            continue;
        };
        out!("\n[{}]", cat.as_str());
        for (name, value) in section {
            match value {
                serde_json::Value::Object(map) if map.contains_key("buckets") => {
                    match map.get("sum_seconds") {
                        Some(sum) => out!("  {name:<56} count {} sum {sum}s", map["count"]),
                        None => out!("  {name:<56} count {} sum {}", map["count"], map["sum"]),
                    }
                }
                serde_json::Value::Object(map) => {
                    // As the exposition writes it (walkU 8), so that a line
                    // pastes into a PromQL query.
                    let key = label_name(name);
                    for (label, v) in map {
                        out!("  {:<56} {v}", format!("{name}{{{key}=\"{label}\"}}"));
                    }
                }
                serde_json::Value::Array(rows) if rows.is_empty() => out!("  {name:<56} (empty)"),
                serde_json::Value::Array(rows) => {
                    out!("  {name}:");
                    for row in rows {
                        if let (Some(rank), Some(item), Some(count)) =
                            (row.get("rank"), row.get("item"), row.get("count"))
                        {
                            out!(
                                "    {rank:>3}. {count:>10}  {}",
                                item.as_str().unwrap_or("")
                            );
                        } else {
                            out!("    {row}");
                        }
                    }
                }
                v => out!("  {name:<56} {v}"),
            }
        }
    }
}

/// The label name of the family `prom` in the exposition: the catalogue's,
/// or `group` for the per-group families.
fn label_name(prom: &str) -> &'static str {
    mailward_metrics::CATALOGUE
        .iter()
        .find(|s| s.prom == prom)
        .and_then(|s| s.label.map(|(name, _)| name))
        .or_else(|| {
            mailward_metrics::group::GROUP_COLUMNS
                .iter()
                .any(|c| c.prom == prom)
                .then_some("group")
        })
        .unwrap_or("label")
}

fn print_table(items: &[QueueItem], matched: Option<u64>, queued: Option<u64>) {
    for line in queue_table_footed(items, matched, queued, chrono::Utc::now().timestamp()) {
        out!("{line}");
    }
}

/// The listing with its last line: how many were shown, and with a filter
/// how many of the queue matched and how many the limit left out.
fn queue_table_footed(
    items: &[QueueItem],
    matched: Option<u64>,
    queued: Option<u64>,
    now: i64,
) -> Vec<String> {
    let Some(matched) = matched else {
        if items.is_empty() {
            return vec!["The queue is empty.".into()];
        }
        let mut rows = queue_table(items, now);
        rows.push(format!("{} message(s)", thousands(items.len() as u64)));
        return rows;
    };
    let of_queued = queued.map_or_else(String::new, |q| format!(" of {} queued", thousands(q)));
    if matched == 0 {
        return vec![match queued {
            Some(q) => format!("None of the {} queued message(s) match.", thousands(q)),
            None => "No message matches.".to_string(),
        }];
    }
    let mut rows = queue_table(items, now);
    rows.push(format!(
        "{}{of_queued} message(s) match",
        thousands(matched)
    ));
    let more = matched.saturating_sub(items.len() as u64);
    if more > 0 {
        rows.push(format!(
            "... and {} more; use --limit or a filter",
            thousands(more)
        ));
    }
    rows
}

/// 19900 as 19,900: counts an operator reads at a glance.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `queue show`'s lines under the listing row, from the daemon's `detail`.
fn show_detail_lines(d: &serde_json::Value) -> Vec<String> {
    let text = |key: &str| d.get(key).and_then(|v| v.as_str()).map(str::to_string);
    let mut out = Vec::new();
    let when = d
        .get("received_at")
        .and_then(|v| v.as_i64())
        .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .map_or_else(|| "?".to_string(), |t| t.to_rfc3339());
    let mut from = format!(
        "Arrived:    {when} from {} (HELO {})",
        text("client").unwrap_or_default(),
        text("helo").unwrap_or_default()
    );
    if d.get("tls").and_then(|v| v.as_bool()) == Some(true) {
        from += ", over TLS";
    }
    if let Some(by) = text("forwarded_by") {
        from += &format!(", forwarded by {by}");
    }
    if let Some(up) = text("upstream_id") {
        from += &format!(" (its ID {up})");
    }
    out.push(from);
    let attempts = d.get("attempts").and_then(|v| v.as_u64()).unwrap_or(0);
    let delay = if d.get("delay_notified").and_then(|v| v.as_bool()) == Some(true) {
        "; a delay notice was sent"
    } else {
        ""
    };
    out.push(format!("Attempts:   {attempts}{delay}"));
    let mut dsn = Vec::new();
    if let Some(ret) = text("ret") {
        dsn.push(format!("RET={ret}"));
    }
    if let Some(envid) = text("envid") {
        dsn.push(format!("ENVID={envid}"));
    }
    out.push(format!(
        "DSN:        {}",
        if dsn.is_empty() {
            "no RET or ENVID given".to_string()
        } else {
            dsn.join(" ")
        }
    ));
    for r in d
        .get("recipients")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
    {
        let address = r.get("address").and_then(|v| v.as_str()).unwrap_or("");
        let notify = r.get("notify").and_then(|v| v.as_str()).map_or_else(
            || "NOTIFY not given (failures)".to_string(),
            |n| format!("NOTIFY={n}"),
        );
        let orcpt = r
            .get("orcpt")
            .and_then(|v| v.as_str())
            // Decoded, as ENVID is: the xtext (`o+2Bx@...`) is the wire's.
            .map(|o| {
                format!(
                    " ORCPT={}",
                    mailward::text::xtext_decode(o).unwrap_or_else(|| o.to_string())
                )
            })
            .unwrap_or_default();
        out.push(format!("Recipient:  {address} {notify}{orcpt}"));
    }
    // The values are the client's (its HELO, a decoded ENVID or ORCPT,
    // which xtext lets hold any octet): control, bidi and invisible
    // characters are written escaped, as a log line writes them, so that
    // a U+202E does not turn the rest of the line around on the
    // administrator's terminal (walkAR F7).
    out.iter().map(|l| mailward::text::escaped(l)).collect()
}

/// The rows of a queue listing, header first, at time `now` (Unix seconds).
fn queue_table(items: &[QueueItem], now: i64) -> Vec<String> {
    let mut rows = vec![format!(
        "{:<16}  {:>9}  {:>AGE_WIDTH$}  {:>AGE_WIDTH$}  SENDER / RECIPIENTS",
        "QUEUE ID", "SIZE", "AGE", "NEXT TRY"
    )];
    // Recipients go a little right of SENDER: the columns before it, and 3.
    let indent = 16 + 2 + 9 + 2 + AGE_WIDTH + 2 + AGE_WIDTH + 2 + 3;
    for it in items {
        let sender = if it.sender.is_empty() {
            "<>"
        } else {
            &it.sender
        };
        let next = if it.held {
            "held".to_string()
        } else if it.active {
            "active".to_string()
        } else if it.next_attempt <= now {
            "now".to_string()
        } else {
            mailward::text::age(it.next_attempt - now)
        };
        rows.push(format!(
            "{:<16}  {:>9}  {:>AGE_WIDTH$}  {:>AGE_WIDTH$}  {}",
            it.id,
            it.size,
            mailward::text::age(now - it.received_at),
            next,
            sender
        ));
        for r in &it.recipients {
            let detail = r
                .detail
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default();
            rows.push(format!(
                "{:indent$}-> {} [{}]{}",
                "", r.address, r.state, detail
            ));
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_show_details_escape_what_the_client_wrote() {
        let detail = serde_json::json!({
            "received_at": 0,
            "client": "192.0.2.1",
            "helo": "mx.example",
            "envid": "inv\u{202E}fdp.exe",
            "recipients": [{
                "address": "bob@example.com",
                "orcpt": "rfc822;a+1B[2Jb@example.com",
            }],
        });
        let lines = show_detail_lines(&detail);
        assert!(
            lines.contains(&"DSN:        ENVID=inv\\u{202E}fdp.exe".to_string()),
            "{lines:?}"
        );
        assert!(
            lines.contains(
                &"Recipient:  bob@example.com NOTIFY not given (failures) ORCPT=rfc822;a\\u{001B}[2Jb@example.com"
                    .to_string()
            ),
            "{lines:?}"
        );
        assert!(lines
            .iter()
            .all(|l| !l.chars().any(|c| c.is_control() || c == '\u{202E}')));
    }

    #[test]
    fn moved_socket_note_tells_relative_paths_from_a_reload() {
        let found = Path::new("/srv/mw/mailward-data/admin.sock");
        let relative = moved_socket_note(
            Path::new("mailward-data/admin.sock"),
            "/srv/mw/mailward.toml",
            found,
        );
        assert!(relative.contains("is relative"), "{relative}");
        assert!(!relative.contains("until it restarts"), "{relative}");
        let reloaded = moved_socket_note(
            Path::new("/srv/mw/other/admin.sock"),
            "/srv/mw/mailward.toml",
            found,
        );
        assert!(reloaded.contains("until it restarts"), "{reloaded}");
    }

    #[test]
    fn milter_listen_never_offers_no_milter() {
        // walkA finding 5: `--listen ""` was told `or "" for no milter`,
        // then refused for being "".
        let empty = milter_listen_arg("").unwrap_err();
        assert_eq!(
            empty,
            "expected \"inet:10031@127.0.0.1\", \"inet6:10031@[::1]\" or \
             \"unix:/run/mailward/milter.sock\", got \"\" (`mailward milter` always serves a \
             milter socket)"
        );
        for bad in [
            "inet:127.0.0.1:10031",
            "unix:milter.sock",
            "inet:10031@localhost",
            "x",
        ] {
            let e = milter_listen_arg(bad).unwrap_err();
            assert!(
                e.starts_with("expected \"inet:10031@127.0.0.1\""),
                "{bad}: {e}"
            );
            assert!(e.contains(&format!("got {bad:?}")), "{bad}: {e}");
            assert!(!e.contains("\"\""), "{bad}: {e}");
        }
        assert_eq!(
            milter_listen_arg("inet:10031@127.0.0.1")
                .unwrap()
                .to_string(),
            "inet:10031@127.0.0.1"
        );
        // The config key keeps its "" choice.
        assert!(config::MilterListen::parse_key("x")
            .unwrap_err()
            .contains(", or \"\" for no milter, got \"x\""));
    }

    /// The byte offset where `needle` starts in `row`.
    fn column(row: &str, needle: &str) -> usize {
        row.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} in {row:?}"))
    }

    #[test]
    fn store_listings_stay_aligned_whatever_the_age() {
        // walkB finding 8: an AGE of "1m 11s" was wider than its column and
        // pushed the rest of its row one place right.
        let now = 1_800_000_000;
        let ages = [33, 71, 3599, 86_399, 999 * 86_400 + 23 * 3600];
        let entries: Vec<Listed> = ages
            .iter()
            .enumerate()
            .map(|(i, age)| {
                let stored = chrono::DateTime::from_timestamp(now - age, 0)
                    .unwrap()
                    .to_rfc3339();
                serde_json::from_value(serde_json::json!({
                    "id": format!("1A243889A70D23E{i}"), "queue_id": "q", "received": stored,
                    "stored": stored, "sender": format!("s{i}@example.com"),
                    "recipients": ["user@example.com"], "statuses": [], "reason": "as/spam",
                    "group": "default", "size": 898, "client_ip": "127.0.0.1", "findings": [],
                }))
                .unwrap()
            })
            .collect();
        let rows = store_table(&entries, now);
        let ages: Vec<&str> = rows
            .iter()
            .skip(1)
            .step_by(2)
            .map(|r| r[19..19 + 1 + AGE_WIDTH].trim())
            .collect();
        assert_eq!(ages, ["33s", "1m 11s", "59m 59s", "23h 59m", "999d 23h"]);
        let size_end = column(&rows[0], "SIZE") + 4;
        let sender = column(&rows[0], "SENDER");
        for (i, row) in rows.iter().skip(1).step_by(2).enumerate() {
            assert_eq!(column(row, " 898 ") + 4, size_end, "{rows:#?}");
            assert_eq!(column(row, "as/spam"), column(&rows[0], "WHY"), "{rows:#?}");
            assert_eq!(column(row, &format!("s{i}@")), sender, "{rows:#?}");
        }
        for row in rows.iter().skip(2).step_by(2) {
            assert_eq!(column(row, "->"), sender, "{rows:#?}");
        }
    }

    #[test]
    fn queue_listings_stay_aligned_whatever_the_age() {
        let now = 1_800_000_000;
        let waits = [33, 71, 3599, 86_399, 999 * 86_400 + 23 * 3600];
        let items: Vec<QueueItem> = waits
            .iter()
            .enumerate()
            .map(|(i, wait)| {
                serde_json::from_value(serde_json::json!({
                    "id": format!("1A2327DB66E9180{i}"), "size": 421, "received_at": now - wait,
                    "sender": format!("s{i}@example.net"), "attempts": 1,
                    "next_attempt": now + wait,
                    "recipients": [{"address": "ann@example.com", "state": "pending", "detail": null}],
                }))
                .unwrap()
            })
            .collect();
        let rows = queue_table(&items, now);
        let age_end = column(&rows[0], "AGE") + 3;
        let next_end = column(&rows[0], "NEXT TRY") + 8;
        let sender = column(&rows[0], "SENDER");
        for (i, row) in rows.iter().skip(1).step_by(2).enumerate() {
            let age = mailward::text::age(waits[i]);
            assert_eq!(
                column(row, &format!(" {age} ")) + 1 + age.len(),
                age_end,
                "{rows:#?}"
            );
            assert_eq!(
                row.rfind(&format!("{age} ")).unwrap() + age.len(),
                next_end,
                "{rows:#?}"
            );
            assert_eq!(column(row, &format!("s{i}@")), sender, "{rows:#?}");
        }
    }

    /// walkI 22: "7 entr(ies)", two timestamp styles in one record, and
    /// statuses in another order in the archive than in the quarantine.
    #[test]
    fn store_entries_are_counted_and_shown_in_one_style() {
        assert_eq!(entries_count(0), "0 entries");
        assert_eq!(entries_count(1), "1 entry");
        assert_eq!(entries_count(7), "7 entries");
        assert_eq!(entry_time(1_796_452_018), "2026-12-05T06:26:58Z");
        let archived = vec!["as/clean".to_string(), "av/clean".to_string()];
        assert_eq!(statuses_in_order(&archived), ["av/clean", "as/clean"]);
        let quarantined = vec!["av/infected".to_string(), "as/spam".to_string()];
        assert_eq!(statuses_in_order(&quarantined), ["av/infected", "as/spam"]);
    }

    /// walkAS F6: a limited listing says how many more matched and how
    /// to see them; counts read with thousands separators.
    #[test]
    fn a_limited_queue_listing_says_what_it_left_out() {
        let now = 1_800_000_000;
        let item: QueueItem = serde_json::from_value(serde_json::json!({
            "id": "1A2327DB66E91800", "size": 421, "received_at": now - 60,
            "sender": "s@example.net", "attempts": 1, "next_attempt": now + 60,
            "recipients": [{"address": "r@example.org", "state": "pending", "detail": null}],
        }))
        .unwrap();
        let rows = queue_table_footed(&[item], Some(19_901), Some(20_001), now);
        assert_eq!(
            rows[rows.len() - 2..],
            [
                "19,901 of 20,001 queued message(s) match".to_string(),
                "... and 19,900 more; use --limit or a filter".to_string()
            ]
        );
        assert_eq!(
            queue_table_footed(&[], Some(0), Some(20_001), now),
            ["None of the 20,001 queued message(s) match."]
        );
        assert_eq!(
            queue_table_footed(&[], None, None, now),
            ["The queue is empty."]
        );
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(40_004), "40,004");
    }
}
