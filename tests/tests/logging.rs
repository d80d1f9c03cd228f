//! Logs as an operator reads them: in a real rsyslog (Debian's rsyslogd on
//! a private socket and ports) with the facility, severity, ident and PID
//! they were sent with, in both framings; mail flowing while rsyslog is
//! dead, with the lost lines counted and reported once it is back; a log
//! file rotated under load without a lost or split line; Debian's
//! logrotate with `create` and `postrotate mailward log reopen`; and JSON
//! lines that stay valid JSON, with the same fields as text, whatever a
//! hostile client sends.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use mailward_e2e::rsyslog::Rsyslog;
use mailward_e2e::stats::StatsSetup;
use mailward_e2e::tools::{output_text, read_settled, require, run, smtp_source, tail};
use mailward_e2e::*;

fn message(subject: &str) -> Vec<u8> {
    format!("From: a@sender.test\r\nTo: b@example.com\r\nSubject: {subject}\r\n\r\nHello.\r\n")
        .into_bytes()
}

fn send_one(gw: &Gateway, subject: &str) -> Result<String> {
    let mut c = gw.ehlo_client()?;
    let id = c.send_mail_ok("a@sender.test", &["b@example.com"], &message(subject))?;
    c.quit();
    Ok(id)
}

/// Breaks the configuration file and sends SIGHUP: the refused reload is
/// logged at error severity, category config.
fn refused_reload(gw: &Gateway) -> Result<()> {
    gw.daemon.write_config("[server\nthis is not toml")?;
    gw.daemon.sighup()?;
    Ok(())
}

/// The unix socket case is the docs' rsyslog recipe: rsyslog's imuxsock
/// input with its default parsing, as on a host's /dev/log, must find the
/// program name `mailward` (`$programname == 'mailward'`), which it did
/// not while RFC 3164 lines to a local socket carried the host name.
#[test]
fn syslog_reaches_rsyslog_with_facility_severity_and_ident_in_both_formats() -> Result<()> {
    let dir = TestDir::new("log-rsyslog")?;
    let rsyslog = Rsyslog::start(dir.path())?;
    let cases = [
        (
            format!("syslog:unix:{}@local3", rsyslog.socket.display()),
            "rfc3164",
            "local3",
        ),
        (
            format!("syslog:udp:127.0.0.1:{}", rsyslog.udp_port),
            "rfc5424",
            "mail",
        ),
        (
            format!("syslog:tcp:127.0.0.1:{}@daemon", rsyslog.tcp_port),
            "rfc5424",
            "daemon",
        ),
    ];
    for (destination, format, facility) in &cases {
        let gw = Gateway::start(&format!("log-{format}-{facility}"), |c| {
            c.set_str("log", "destination", destination)
                .set_str("log", "syslog_format", format)
                .set_list("log", "options", &["all.info"])
        })?;
        let pid = gw.daemon.pid().context("pid")?;
        let ident = format!("mailward[{pid}]");
        let id = send_one(&gw, "syslog")?;
        gw.sink.wait_for_count(1, DELIVERY_TIMEOUT)?;
        let accepted = rsyslog.wait_line(&[&ident, "Message accepted.", &id])?;
        ensure!(
            accepted.starts_with(&format!("{facility}.info {ident} ")),
            "{destination} ({format}): expected facility {facility}, severity info, ident {ident}: {accepted}"
        );
        ensure!(
            accepted.contains(&format!("smtp: Message accepted. queue_id={id} ")),
            "{accepted}"
        );
        if *format == "rfc5424" {
            // The category is the MSGID; the fields are structured data.
            ensure!(
                accepted.contains(&format!(
                    " smtp [mailward@32473 category=\"smtp\" queue_id=\"{id}\""
                )),
                "{format}: no structured data: {accepted}"
            );
        } else {
            ensure!(
                accepted.contains(" - - "),
                "{format}: RFC 3164 has no MSGID or structured data: {accepted}"
            );
        }
        rsyslog.wait_line(&[&ident, "Delivered.", &id, "delivery: "])?;
        refused_reload(&gw)?;
        let refused = rsyslog.wait_line(&[&ident, "config: "])?;
        ensure!(
            refused.starts_with(&format!("{facility}.err {ident} ")),
            "{destination}: a refused reload is an error: {refused}"
        );
    }
    Ok(())
}

#[test]
fn mail_flows_while_rsyslog_is_dead_and_the_lost_lines_are_counted() -> Result<()> {
    let dir = TestDir::new("log-rsyslog-down")?;
    let mut rsyslog = Rsyslog::start(dir.path())?;
    let stats = StatsSetup::new(dir.path());
    let destination = format!("syslog:unix:{}", rsyslog.socket.display());
    let gw = Gateway::start("log-down", |c| {
        stats
            .apply(c)
            .set_str("log", "destination", &destination)
            .set_list("log", "options", &["all.info"])
    })?;
    let pid = gw.daemon.pid().context("pid")?;
    let ident = format!("mailward[{pid}]");
    let first = send_one(&gw, "before")?;
    rsyslog.wait_line(&[&ident, "Delivered.", &first])?;
    ensure!(
        stats.scrape()?.get("mailward_log_lines_dropped_total", &[]) == Some(0.0),
        "nothing dropped while rsyslog runs"
    );

    rsyslog.stop();
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(send_one(&gw, &format!("while down {i}"))?);
    }
    gw.sink.wait_for_count(11, DELIVERY_TIMEOUT)?;
    let dropped = stats
        .scrape()?
        .get("mailward_log_lines_dropped_total", &[])
        .unwrap_or(0.0);
    // Each message logs at least its acceptance and its delivery.
    ensure!(
        dropped >= 20.0,
        "lost lines are counted: mailward_log_lines_dropped_total = {dropped}"
    );

    rsyslog.resume()?;
    // The writer tries again at most once a second, when lines come.
    wait_until(
        "a line to get through again",
        Duration::from_secs(20),
        || {
            let id = send_one(&gw, "after")?;
            let text = rsyslog.text();
            Ok(text.contains(&format!("queue_id={id}")).then_some(()))
        },
    )?;
    let notice = rsyslog.wait_line(&[&ident, "were dropped while syslog at unix:"])?;
    ensure!(notice.starts_with("mail.warning "), "{notice}");
    for id in &ids {
        ensure!(
            !rsyslog.text().contains(id.as_str()),
            "{id} was logged while rsyslog was dead?"
        );
    }
    Ok(())
}

/// `messages` messages over `sessions` parallel sessions with smtp-source,
/// all delivered to the sink.
fn load(gw: &Gateway, sessions: usize, messages: usize) -> Result<()> {
    load_to(gw.port(), &gw.sink, sessions, messages)
}

/// [`load`] for a daemon on `port` that delivers to `sink`.
fn load_to(port: u16, sink: &Sink, sessions: usize, messages: usize) -> Result<()> {
    let out = smtp_source(&[
        "-s",
        &sessions.to_string(),
        "-m",
        &messages.to_string(),
        "-f",
        "a@sender.test",
        "-t",
        "b@example.com",
        &format!("127.0.0.1:{port}"),
    ])?;
    ensure!(out.status.success(), "smtp-source: {}", output_text(&out));
    sink.wait_for_count(messages, DELIVERY_TIMEOUT)?;
    Ok(())
}

#[test]
fn mail_flows_while_nobody_reads_the_daemons_standard_error() -> Result<()> {
    // Standard error (the default destination) is a pipe to journald or a
    // container's log driver; when that stalls the pipe fills and a write
    // to it blocks. Here nobody ever reads it: 300 messages at all.info
    // log about 300 KiB, several times the pipe, and every one goes
    // through; the lines wait in the daemon's queue (or are dropped and
    // counted), and no thread that handles mail waits for them.
    let dir = TestDir::new("log-stderr-stalled")?;
    let sink = Sink::start(dir.path(), "sink")?;
    let stats = StatsSetup::new(dir.path());
    let config = stats
        .apply(Config::new(dir.path()).route_to_port("*", sink.port))
        .set_str("log", "destination", "stderr")
        .set_list("log", "options", &["all.info"]);
    let mut daemon = Daemon::new(&config)?;
    daemon.leave_stderr_unread();
    daemon.spawn()?;
    daemon.wait_ready()?;
    load_to(daemon.port, &sink, 5, 300)?;
    // The statistics still answer, and say how the log is doing.
    let m = stats.scrape()?;
    ensure!(
        m.get("mailward_log_lines_dropped_total", &[]).is_some(),
        "/metrics answers while standard error is stuck"
    );
    Ok(())
}

/// How many timestamps (`2026-12-05T`) a log line holds: one, unless a
/// line was glued onto a torn one.
fn timestamps(line: &str) -> usize {
    let b = line.as_bytes();
    (0..b.len().saturating_sub(10))
        .filter(|&i| {
            b[i..i + 4].iter().all(u8::is_ascii_digit)
                && b[i + 4] == b'-'
                && b[i + 7] == b'-'
                && b[i + 10] == b'T'
        })
        .count()
}

#[test]
fn a_full_log_disk_costs_lines_but_never_glues_two_together() -> Result<()> {
    // walkT 2: the write that hit ENOSPC left half a line, and the first
    // line written once there was room again was appended to it: two
    // events on one line in the log, a raw record of 12 fields.
    let mut disk = None;
    let gw = Gateway::start("log-disk-full", |c| {
        let full = c.dir.join("full");
        disk = Some(mailward_e2e::tmpfs::Tmpfs::mount(&full, "256k"));
        c.set_str(
            "log",
            "destination",
            &format!("file:{}", full.join("mailward.log").display()),
        )
        .set_list("log", "options", &["all.info"])
        .set_str(
            "statistics",
            "raw_destination",
            &full.join("raw.log").display().to_string(),
        )
        .set_list("statistics", "options", &["messages", "raw"])
    })?;
    let disk = disk.context("the tmpfs was not mounted")??;
    let log = disk.path.join("mailward.log");
    let raw = disk.path.join("raw.log");
    send_one(&gw, "before")?;
    gw.sink.wait_for_count(1, DELIVERY_TIMEOUT)?;
    // Fill the disk to the last byte.
    let filler = disk.path.join("filler");
    {
        let mut f = std::fs::File::create(&filler)?;
        let chunk = vec![b'x'; 4096];
        while f.write_all(&chunk).is_ok() {}
        while f.write(b"x").is_ok_and(|n| n == 1) {}
    }
    let full = 20;
    for i in 0..full {
        send_one(&gw, &format!("while full {i}"))?;
    }
    gw.sink.wait_for_count(1 + full, DELIVERY_TIMEOUT)?;
    std::fs::remove_file(&filler)?;
    send_one(&gw, "after")?;
    gw.sink.wait_for_count(2 + full, DELIVERY_TIMEOUT)?;
    let notice = "log line(s) were dropped while the log file could not be written.";
    let text = wait_until(
        "the log to say lines were dropped",
        Duration::from_secs(20),
        || {
            let text = std::fs::read_to_string(&log)?;
            Ok(text.contains(notice).then_some(text))
        },
    )
    .with_context(|| format!("{}:\n{}", log.display(), tail(&log, 20)))?;
    for line in text.lines() {
        ensure!(
            well_formed(line) && timestamps(line) == 1,
            "a torn or glued line in {}: {line:?}",
            log.display()
        );
    }
    ensure!(text.ends_with('\n'), "{} ends mid-line", log.display());
    let records = read_settled(&raw)?;
    for line in records.lines() {
        ensure!(
            line.split('\t').count() == 10,
            "a torn or glued raw record in {}: {line:?}",
            raw.display()
        );
    }
    ensure!(records.ends_with('\n'), "{} ends mid-line", raw.display());
    Ok(())
}

#[test]
fn mail_flows_while_the_log_file_cannot_be_written() -> Result<()> {
    // A log file on a disk or an NFS server that stopped answering holds
    // write(2) for as long as it likes. A FIFO whose reader never reads
    // does the same once its 64 KiB are full: 1,500 messages at all.debug
    // (about 12,000 lines) log far more than that and than the daemon's
    // queue holds (8,192 lines), and every
    // one goes through; the lines wait in the queue or are dropped and
    // counted. `log reopen`
    // (logrotate's postrotate) answers at once too, rather than waiting
    // behind the stuck write.
    use std::os::unix::fs::OpenOptionsExt;
    let dir = TestDir::new("log-file-stalled")?;
    let fifo = dir.path().join("stuck.log");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .context("mkfifo")?;
    // Held open and never read; opened first so that the daemon's open for
    // writing does not wait for a reader.
    let _reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(&fifo)
        .context("opening the FIFO for reading")?;
    let sink = Sink::start(dir.path(), "sink")?;
    let stats = StatsSetup::new(dir.path());
    let config = stats
        .apply(Config::new(dir.path()).route_to_port("*", sink.port))
        .set_str("log", "destination", &format!("file:{}", fifo.display()))
        .set_str("log", "rotate_size", "0")
        .set_list("log", "options", &["all.debug"]);
    let mut daemon = Daemon::new(&config)?;
    daemon.spawn()?;
    daemon.wait_ready()?;
    load_to(daemon.port, &sink, 5, 1500)?;
    let m = stats.scrape()?;
    let dropped = m
        .get("mailward_log_lines_dropped_total", &[])
        .context("mailward_log_lines_dropped_total")?;
    ensure!(
        dropped > 0.0,
        "the lines that did not fit are counted: {dropped}"
    );
    let out = Command::new("timeout")
        .arg("10")
        .arg(mailward_e2e::daemon::mailward_bin()?)
        .args(["log", "reopen", "--config"])
        .arg(daemon.config_path())
        .output()
        .context("running timeout(1) and mailward log reopen")?;
    ensure!(
        out.status.success(),
        "`mailward log reopen` while the log is stuck: {}",
        output_text(&out)
    );
    // And mail still flows after it.
    let out = smtp_source(&[
        "-s",
        "2",
        "-m",
        "20",
        "-f",
        "a@sender.test",
        "-t",
        "b@example.com",
        &format!("127.0.0.1:{}", daemon.port),
    ])?;
    ensure!(out.status.success(), "smtp-source: {}", output_text(&out));
    sink.wait_for_count(1520, DELIVERY_TIMEOUT)?;
    Ok(())
}

/// Every line of a text log: a timestamp, a level, a target.
fn well_formed(line: &str) -> bool {
    line.len() > 30
        && line.as_bytes()[..4].iter().all(u8::is_ascii_digit)
        && [" INFO ", " WARN ", " ERROR ", " DEBUG ", " TRACE "]
            .iter()
            .any(|l| line.contains(l))
}

fn log_files(dir: &Path, stem: &str) -> Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name == stem || name.starts_with(&format!("{stem}.")) {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// The log files and their texts, read as one snapshot: the listing and
/// every file's length are taken again after the reading, and the whole
/// read is done again if a rotation came in between (it renames every
/// file one round up, so the texts would no longer match their names: a
/// line read twice, or one missed).
fn read_log_files(dir: &Path, stem: &str) -> Result<Vec<(std::path::PathBuf, String)>> {
    // Names and lengths; an error is a file renamed away in between.
    let shape = || -> Result<Vec<(std::path::PathBuf, u64)>> {
        let mut out = Vec::new();
        for p in log_files(dir, stem)? {
            let len = p.metadata()?.len();
            out.push((p, len));
        }
        Ok(out)
    };
    for _ in 0..50 {
        let Ok(before) = shape() else { continue };
        let texts = before
            .iter()
            .map(|(p, _)| Ok((p.clone(), std::fs::read_to_string(p)?)))
            .collect::<Result<Vec<_>>>();
        let (Ok(texts), Ok(after)) = (texts, shape()) else {
            continue;
        };
        if after == before {
            return Ok(texts);
        }
    }
    anyhow::bail!(
        "the log files of {} kept rotating while read",
        dir.display()
    )
}

#[test]
fn a_log_file_rotates_under_load_without_losing_or_splitting_a_line() -> Result<()> {
    let messages = 300;
    let gw = Gateway::start("log-rotate", |c| {
        let logs = c.dir.join("logs");
        c.set_str(
            "log",
            "destination",
            &format!("file:{}", logs.join("mailward.log").display()),
        )
        .set_list("log", "options", &["all.info"])
        .set_str("log", "rotate_size", "16KiB")
        .set("log", "rotate_rounds", "100")
    })?;
    load(&gw, 10, messages)?;
    let logs = gw.dir.join("logs");
    let files = wait_until("the delivery lines", Duration::from_secs(20), || {
        let files = read_log_files(&logs, "mailward.log")?;
        let delivered: usize = files
            .iter()
            .map(|(_, text)| text.lines().filter(|l| l.contains("Delivered.")).count())
            .sum();
        Ok((delivered >= messages).then_some(files))
    })?;
    let names: Vec<_> = files.iter().map(|(p, _)| p).collect();
    ensure!(files.len() > 3, "rotated: {names:?}");
    let mut accepted = BTreeSet::new();
    let mut delivered = BTreeSet::new();
    for (f, text) in &files {
        ensure!(
            text.len() <= 16 * 1024,
            "{} is {} bytes",
            f.display(),
            text.len()
        );
        ensure!(text.ends_with('\n'), "{} ends mid-line", f.display());
        for line in text.lines() {
            ensure!(
                well_formed(line),
                "{}: a split or broken line: {line:?}",
                f.display()
            );
            let id = line
                .split("queue_id=")
                .nth(1)
                .and_then(|r| r.split_whitespace().next());
            if let Some(id) = id {
                if line.contains("Message accepted.") {
                    ensure!(accepted.insert(id.to_string()), "{id} accepted twice");
                }
                if line.contains("Delivered.") {
                    delivered.insert(id.to_string());
                }
            }
        }
    }
    ensure!(
        accepted.len() == messages && delivered == accepted,
        "every message's lines are kept: {} accepted, {} delivered of {messages}",
        accepted.len(),
        delivered.len()
    );

    // Few rounds: at most that many old files beside the current one.
    let gw = Gateway::start("log-rotate-rounds", |c| {
        let logs = c.dir.join("logs");
        c.set_str(
            "log",
            "destination",
            &format!("file:{}", logs.join("m.log").display()),
        )
        .set_list("log", "options", &["all.info"])
        .set_str("log", "rotate_size", "4KiB")
        .set("log", "rotate_rounds", "2")
    })?;
    load(&gw, 5, 100)?;
    let files = log_files(&gw.dir.join("logs"), "m.log")?;
    let names: Vec<_> = files
        .iter()
        .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
        .collect();
    ensure!(names == ["m.log", "m.log.1", "m.log.2"], "{names:?}");
    Ok(())
}

#[test]
fn logrotate_create_then_log_reopen_moves_lines_to_the_new_file() -> Result<()> {
    let logrotate = require("logrotate", "logrotate")?;
    let gw = Gateway::start("log-logrotate", |c| {
        let path = c.dir.join("logs").join("mailward.log");
        c.set_str("log", "destination", &format!("file:{}", path.display()))
            .set_list("log", "options", &["all.info"])
            // logrotate rotates; ours would rename the same names.
            .set_str("log", "rotate_size", "0")
    })?;
    let logs = gw.dir.join("logs");
    let log = logs.join("mailward.log");
    let first = send_one(&gw, "before logrotate")?;
    gw.sink.wait_for_count(1, DELIVERY_TIMEOUT)?;
    let bin = mailward_e2e::daemon::mailward_bin()?;
    let conf = gw.dir.join("logrotate.conf");
    std::fs::write(
        &conf,
        format!(
            "{log} {{\n    rotate 4\n    create 0640 root root\n    missingok\n    postrotate\n        {bin} log reopen --config {config} >/dev/null\n    endscript\n}}\n",
            log = log.display(),
            bin = bin.display(),
            config = gw.daemon.config_path().display(),
        ),
    )?;
    let out = run(
        &logrotate,
        &[
            "-f".as_ref(),
            "-s".as_ref(),
            gw.dir.join("logrotate.state").as_os_str(),
            conf.as_os_str(),
        ],
    )?;
    ensure!(out.status.success(), "logrotate: {}", output_text(&out));
    let second = send_one(&gw, "after logrotate")?;
    gw.sink.wait_for_count(2, DELIVERY_TIMEOUT)?;
    let rotated = logs.join("mailward.log.1");
    wait_until(
        "the second message in the new file",
        Duration::from_secs(20),
        || {
            Ok(std::fs::read_to_string(&log)?
                .contains(&format!("queue_id={second}"))
                .then_some(()))
        },
    )?;
    let old = read_settled(&rotated)?;
    let new = read_settled(&log)?;
    ensure!(old.contains(&format!("queue_id={first}")), "{old}");
    ensure!(
        !old.contains(&format!("queue_id={second}")),
        "after the reopen nothing goes to the rotated file: {old}"
    );
    ensure!(new.contains("Log files reopened."), "{new}");
    Ok(())
}

/// The field names of the first text line holding `what`.
fn text_fields(text: &str, what: &str) -> Option<BTreeSet<String>> {
    let line = text.lines().find(|l| l.contains(what))?;
    let after = line.split_once(what)?.1;
    Some(
        after
            .split_whitespace()
            .filter_map(|w| w.split_once('=').map(|(k, _)| k.to_string()))
            .collect(),
    )
}

#[test]
fn json_lines_stay_json_and_carry_the_text_fields_for_hostile_clients() -> Result<()> {
    // What a client can put in a logged field: RFC 5321 lets a quoted
    // local part hold quotes, backslashes, braces and spaces (control and
    // 8-bit bytes are refused before anything logs them).
    let hostile_from = r#""ev\"il\\ {\"x\": 1} \\n]""#;
    let mut texts = Vec::new();
    for format in ["json", "text"] {
        let gw = Gateway::start(&format!("log-{format}"), |c| {
            let path = c.dir.join("mailward.out");
            c.set_str("log", "destination", &format!("file:{}", path.display()))
                .set_str("log", "format", format)
                .set_list("log", "options", &["all.activity"])
        })?;
        let mut s = std::net::TcpStream::connect(("127.0.0.1", gw.port()))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut script = Vec::new();
        script.extend_from_slice(
            format!("EHLO client.test\r\nMAIL FROM:<{hostile_from}@sender.test>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
                .as_bytes(),
        );
        script.extend_from_slice(&message("hostile \u{1}\u{7f} é"));
        script.extend_from_slice(b".\r\nQUIT\r\n");
        s.write_all(&script)?;
        let mut replies = Vec::new();
        let _ = s.read_to_end(&mut replies);
        let replies = String::from_utf8_lossy(&replies).into_owned();
        ensure!(
            replies.contains("\r\n250 2.0.0") && replies.contains("\r\n221"),
            "the hostile sender is valid SMTP and accepted: {replies}"
        );
        let path = gw.dir.join("mailward.out");
        let text = wait_until("the accepted line", Duration::from_secs(10), || {
            let t = std::fs::read_to_string(&path)?;
            Ok(t.contains("Message accepted.").then_some(t))
        })?;
        if format == "json" {
            let mut accepted = None;
            for line in text.lines() {
                let v: serde_json::Value =
                    serde_json::from_str(line).with_context(|| format!("not JSON: {line:?}"))?;
                if v["fields"]["message"] == "Message accepted." {
                    accepted = Some(v);
                }
            }
            let v = accepted.context("no accepted line")?;
            ensure!(v["target"] == "smtp" && v["level"] == "INFO", "{v}");
            ensure!(
                v["fields"]["from"] == format!("{hostile_from}@sender.test"),
                "the sender survives JSON intact: {v}"
            );
            texts.push(
                v["fields"]
                    .as_object()
                    .context("fields")?
                    .keys()
                    .filter(|k| *k != "message")
                    .cloned()
                    .collect::<BTreeSet<_>>(),
            );
        } else {
            ensure!(
                text.lines().all(well_formed),
                "text lines stay whole: {text}"
            );
            texts.push(text_fields(&text, "Message accepted.").context("no accepted line")?);
        }
    }
    ensure!(
        texts[0] == texts[1],
        "JSON and text carry the same fields: {:?} vs {:?}",
        texts[0],
        texts[1]
    );
    Ok(())
}
