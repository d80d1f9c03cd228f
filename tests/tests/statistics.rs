//! Statistics as an operator checks them: real clients (smtp-source,
//! swaks, the raw client) send a known mix of traffic, and every counter
//! and gauge must equal what was sent, in `/metrics` and in the stats file
//! (`mailward stats write`), which must agree with each other; the raw
//! records hold one line per message and recipient with the queue IDs of
//! the 250 replies. `stats reset` zeroes counters and moves the
//! discontinuity time but keeps levels; 50 concurrent sessions lose and
//! double nothing; hostile addresses and HELO names break neither the raw
//! records, nor the JSON file, nor the exposition (`promtool check
//! metrics`).
//!
//! Expectations are collected and reported together, each with the value
//! expected and the values found in both renderings.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};
use mailward_e2e::stats::{differences, flatten_json, promtool_check, Metrics, StatsSetup};
use mailward_e2e::tools::{output_text, smtp_source};
use mailward_e2e::*;
use serde_json::Value;

/// Values that change between two readings however still the traffic is:
/// they are compared for presence only.
const MOVING: &[&str] = &[
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_open_fds",
    "mailward_spool_free_bytes",
    // Idle outbound connections are closed on their own schedule.
    "mailward_sessions{out}",
    // An age: a second more each second while the message waits.
    "mailward_queue_oldest_deferred_seconds",
];

/// How long the whole rig may take to settle after the traffic.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(40);

/// Every counter family of the catalogue whose value a `stats reset`
/// does not own (the process's CPU time is the kernel's).
const NOT_RESET: &[&str] = &["process_cpu_seconds_total"];

/// A daemon with metrics and stats files on, a sink as the next hop for
/// everything but `*@deferred.test`, which goes to a port nobody listens
/// on. Dropped in field order: daemon, sink, directory.
struct Rig {
    daemon: Daemon,
    sink: Sink,
    stats: StatsSetup,
    dir: TestDir,
}

impl Rig {
    fn start(name: &str, tweak: impl FnOnce(Config) -> Config) -> Result<Rig> {
        let dir = TestDir::new(name)?;
        let sink = Sink::start(dir.path(), "sink")?;
        let stats = StatsSetup::new(dir.path());
        let config = Config::new(dir.path())
            .set_list("network", "protected_domains", &["example.com"])
            // One attempt for a deferred message within the test.
            .set_str("timeouts", "min_backoff", "1h")
            .set_str("timeouts", "max_backoff", "1h")
            .route_to_port("*@deferred.test", free_port())
            .route_to_port("*", sink.port);
        let config = stats.apply(tweak(config));
        let daemon = Daemon::start(&config)?;
        Ok(Rig {
            daemon,
            sink,
            stats,
            dir,
        })
    }

    /// Waits until the sink has `delivered` messages, the queue holds
    /// `queued`, no inbound session is open, and `more` holds for the
    /// scrape; returns that scrape.
    fn settle(
        &self,
        delivered: usize,
        queued: usize,
        more: impl Fn(&Metrics) -> bool,
    ) -> Result<Metrics> {
        self.stats.settle(
            &self.daemon,
            &self.sink,
            (delivered, queued),
            SETTLE_TIMEOUT,
            more,
        )
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A client's transcript, as smtp-source -v or swaks print it.
#[derive(Debug, Default)]
struct Transcript {
    /// Queue IDs of the `250 2.0.0 Ok: queued as ID` replies, in order.
    queued: Vec<String>,
    /// Greetings (`220 mw.test ESMTP`) seen: one per session.
    greetings: usize,
    /// The recipients given in RCPT TO, distinct, in order.
    rcpts: Vec<String>,
    text: String,
}

impl Transcript {
    fn parse(text: String) -> Transcript {
        let mut t = Transcript::default();
        for line in text.lines() {
            if let Some((_, id)) = line.split_once("250 2.0.0 Ok: queued as ") {
                t.queued.push(id.trim().to_string());
            }
            if line.contains("220 mw.test ESMTP") {
                t.greetings += 1;
            }
            if let Some((_, rest)) = line.split_once("RCPT TO:<") {
                let addr = rest.rsplit_once('>').map_or(rest, |(a, _)| a).to_string();
                if !t.rcpts.contains(&addr) {
                    t.rcpts.push(addr);
                }
            }
        }
        t.text = text;
        t
    }
}

/// Runs `smtp-source -v ARGS 127.0.0.1:PORT`; fails unless it exits 0.
fn source(port: u16, args: &[&str]) -> Result<Transcript> {
    let target = format!("127.0.0.1:{port}");
    let mut all = vec!["-v"];
    all.extend_from_slice(args);
    all.push(&target);
    let out = smtp_source(&all)?;
    let text = output_text(&out);
    ensure!(out.status.success(), "smtp-source {args:?} failed:\n{text}");
    Ok(Transcript::parse(text))
}

/// Runs swaks against 127.0.0.1:PORT with `args`, whatever its exit status.
fn swaks_to(port: u16, args: &[&str]) -> Result<Transcript> {
    let server = format!("127.0.0.1:{port}");
    let mut all = vec!["--server", server.as_str(), "--ehlo", "client.test"];
    all.extend_from_slice(args);
    Ok(Transcript::parse(output_text(&swaks(&all)?)))
}

/// An expected value checked in both renderings; mismatches collected.
struct Expect<'a> {
    metrics: &'a BTreeMap<String, f64>,
    file: &'a BTreeMap<String, f64>,
    wrong: Vec<String>,
}

impl<'a> Expect<'a> {
    fn new(metrics: &'a BTreeMap<String, f64>, file: &'a BTreeMap<String, f64>) -> Expect<'a> {
        Expect {
            metrics,
            file,
            wrong: Vec::new(),
        }
    }

    fn eq(&mut self, key: &str, expected: f64) {
        let m = self.metrics.get(key).copied();
        let f = self.file.get(key).copied();
        if m != Some(expected) || f != Some(expected) {
            self.wrong.push(format!(
                "{key}: expected {expected}, /metrics {}, stats file {}",
                show(m),
                show(f)
            ));
        }
    }

    /// Every label value of `name` is 0 except those in `nonzero`.
    fn labels(&mut self, name: &str, values: &[&str], nonzero: &[(&str, f64)]) {
        for v in values {
            let expected = nonzero
                .iter()
                .find(|(l, _)| l == v)
                .map_or(0.0, |(_, n)| *n);
            self.eq(&format!("{name}{{{v}}}"), expected);
        }
    }

    fn finish(self, what: &str) -> Result<()> {
        ensure!(
            self.wrong.is_empty(),
            "{what}: {} value(s) differ from what was sent:\n{}",
            self.wrong.len(),
            self.wrong.join("\n")
        );
        Ok(())
    }
}

fn show(v: Option<f64>) -> String {
    v.map_or_else(|| "absent".to_string(), |v| v.to_string())
}

const REASONS: &[&str] = &[
    "relay", "access", "dnsbl", "size", "limit", "syntax", "policy", "tempfail",
];
const AV: &[&str] = &[
    "clean",
    "infected",
    "suspicious",
    "protected",
    "error",
    "filtered",
];
const SPAM: &[&str] = &["spam", "probable", "formal", "blacklisted", "clean"];
const RESULTS: &[&str] = &["delivered", "deferred", "bounced"];
const TO: &[&str] = &["sender", "recipients", "admin", "dsn"];

/// The top-N tables of viruses and filters: no row in /metrics, an empty
/// array in the file; the deferred domains' table has one row per domain
/// of `deferred` (each deferred once), in both.
fn assert_top_tables_empty(metrics: &Metrics, file: &Value, deferred: &[&str]) -> Result<()> {
    const DEFERRED: &str = "mailward_top_deferred_domain_recipients";
    let rows: Vec<&str> = metrics
        .samples
        .iter()
        // The spam tests fire on ordinary mail too (a missing Date, say):
        // their table is not empty after clean traffic.
        .filter(|s| {
            s.name.starts_with("mailward_top_")
                && s.name != "mailward_top_spam_test_hits"
                && s.name != DEFERRED
        })
        .map(|s| s.name.as_str())
        .collect();
    ensure!(rows.is_empty(), "top-N rows in /metrics: {rows:?}");
    let mut got: Vec<(String, f64)> = metrics
        .all(DEFERRED)
        .map(|s| (s.label("domain").unwrap_or("?").to_string(), s.value))
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    let want: Vec<(String, f64)> = deferred.iter().map(|d| (d.to_string(), 1.0)).collect();
    ensure!(
        got == want,
        "{DEFERRED} in /metrics: {got:?}, expected {want:?}"
    );
    let in_file: Vec<&str> = file["messages"][DEFERRED]
        .as_array()
        .map(|rows| rows.iter().filter_map(|r| r["item"].as_str()).collect())
        .unwrap_or_default();
    ensure!(
        in_file.len() == deferred.len() && deferred.iter().all(|d| in_file.contains(d)),
        "messages.{DEFERRED} in the stats file: {}",
        file["messages"][DEFERRED]
    );
    let mut seen = 0;
    for (section, tables) in [
        (
            "viruses",
            &[
                "mailward_top_virus_detections",
                "mailward_top_infected_sender_messages",
                "mailward_top_infected_client_messages",
            ][..],
        ),
        ("filters", &["mailward_top_filter_rule_hits"][..]),
    ] {
        for t in tables {
            let v = &file[section][*t];
            ensure!(
                v.as_array().is_some_and(Vec::is_empty),
                "{section}.{t} in the stats file: {v}"
            );
            seen += 1;
        }
    }
    ensure!(seen == 4);
    Ok(())
}

/// The message without the `X-Mailward-*` fields and our
/// `Authentication-Results` at its top.
fn without_verdict(message: &str) -> String {
    let mut lines = message.split_inclusive('\n').peekable();
    while let Some(line) = lines.peek() {
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("x-mailward-") || lower.starts_with("authentication-results: mw.test;")
        {
            lines.next();
            while lines.peek().is_some_and(|l| l.starts_with([' ', '\t'])) {
                lines.next();
            }
        } else {
            break;
        }
    }
    lines.collect()
}

/// The size a sink dump stands for, with CRLF line ends again.
fn crlf_len(message: &str) -> u64 {
    (message.len() + message.matches('\n').count()) as u64
}

#[test]
fn a_known_mix_is_counted_exactly_in_metrics_the_stats_file_and_raw_records() -> Result<()> {
    let started = now();
    let rig = Rig::start("stats-mix", |c| {
        // 127.0.0.1 may not relay; example.com and deferred.test are ours.
        c.set_list("network", "relay_networks", &["10.0.0.0/8"])
            .set_list(
                "network",
                "protected_domains",
                &["example.com", "deferred.test"],
            )
            .set_str("limits", "max_message_size", "10KiB")
    })?;
    let port = rig.daemon.port;

    // 8 messages to one recipient, 4 to two, one session each.
    let single = source(
        port,
        &[
            "-s",
            "1",
            "-m",
            "8",
            "-l",
            "1024",
            "-f",
            "one@source.test",
            "-t",
            "single@example.com",
        ],
    )?;
    let double = source(
        port,
        &[
            "-s",
            "1",
            "-m",
            "4",
            "-r",
            "2",
            "-l",
            "2000",
            "-f",
            "two@source.test",
            "-t",
            "double@example.com",
        ],
    )?;
    ensure!(
        single.queued.len() == 8 && single.rcpts.len() == 1,
        "smtp-source, one recipient: {} queued to {:?}:\n{}",
        single.queued.len(),
        single.rcpts,
        single.text
    );
    ensure!(
        double.queued.len() == 4 && double.rcpts.len() == 2,
        "smtp-source, two recipients: {} queued to {:?}:\n{}",
        double.queued.len(),
        double.rcpts,
        double.text
    );

    // 3 relay attempts, refused at RCPT.
    let mut relay = Vec::new();
    for k in 0..3 {
        let t = swaks_to(
            port,
            &[
                "--from",
                "alice@sender.test",
                "--to",
                &format!("victim{k}@elsewhere.test"),
            ],
        )?;
        ensure!(
            t.text.contains("554 5.7.1") && t.queued.is_empty(),
            "relay attempt {k}:\n{}",
            t.text
        );
        relay.push(t);
    }

    // One message over max_message_size (10 KiB), refused after DATA.
    let big_body = rig.dir.join("big-body.txt");
    std::fs::write(
        &big_body,
        "0123456789012345678901234567890123456789012345678901234567890123456789\n".repeat(300),
    )?;
    let oversize = swaks_to(
        port,
        &[
            "--from",
            "alice@sender.test",
            "--to",
            "bob@example.com",
            "--body",
            &big_body.display().to_string(),
        ],
    )?;
    ensure!(
        oversize.text.contains("552 5.3.4") && oversize.queued.is_empty(),
        "oversize message:\n{}",
        oversize.text
    );

    // One message to a recipient at the sink and one whose next hop is down.
    let mixed = swaks_to(
        port,
        &[
            "--from",
            "carol@sender.test",
            "--to",
            "bob@example.com,dave@deferred.test",
            "--header",
            "Subject: half deferred",
        ],
    )?;
    ensure!(mixed.queued.len() == 1, "mixed message:\n{}", mixed.text);
    let held_id = mixed.queued[0].clone();

    let accepted = 8 + 4 + 1;
    let m = rig.settle(accepted, 1, |m| {
        m.get("mailward_deliveries_total", &[("result", "deferred")]) >= Some(1.0)
    })?;
    // The file from `stats write` right after that scrape.
    let file = rig.stats.write_file(&rig.daemon)?;
    let after = now();

    // --- raw records: one line per message and recipient accepted --------
    let raw = rig.stats.raw_lines()?;
    let mut expected_rcpts: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for id in &single.queued {
        expected_rcpts.insert(id.clone(), ("one@source.test".into(), single.rcpts.clone()));
    }
    for id in &double.queued {
        expected_rcpts.insert(id.clone(), ("two@source.test".into(), double.rcpts.clone()));
    }
    expected_rcpts.insert(
        held_id.clone(),
        (
            "carol@sender.test".into(),
            vec!["bob@example.com".into(), "dave@deferred.test".into()],
        ),
    );
    ensure!(
        expected_rcpts.len() == accepted,
        "queue IDs in the 250 replies are not distinct: {expected_rcpts:?}"
    );
    let rcpt_count: usize = expected_rcpts.values().map(|(_, r)| r.len()).sum();
    let mut problems = Vec::new();
    if raw.len() != rcpt_count {
        problems.push(format!(
            "{} raw records, expected {rcpt_count} (one per message and recipient)",
            raw.len()
        ));
    }
    let mut sizes: BTreeMap<String, u64> = BTreeMap::new();
    let mut got_rcpts: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &raw {
        match expected_rcpts.get(&r.queue_id) {
            None => problems.push(format!(
                "queue ID {} is in no 250 reply: {:?}",
                r.queue_id, r.line
            )),
            Some((sender, _)) if *sender != r.sender => {
                problems.push(format!("sender {:?}, expected {sender:?}", r.line))
            }
            Some(_) => {}
        }
        if r.mode != "smtp" {
            problems.push(format!("MODE {:?}, expected smtp: {:?}", r.mode, r.line));
        }
        if r.status != "as/clean" || !r.detail.is_empty() || r.client_ip != "127.0.0.1" {
            problems.push(format!(
                "status/detail/client: expected as/clean, -, 127.0.0.1: {:?}",
                r.line
            ));
        }
        if (r.time as f64) < started.floor() || (r.time as f64) > after {
            problems.push(format!("time outside the test: {:?}", r.line));
        }
        if let Some(old) = sizes.insert(r.queue_id.clone(), r.size) {
            if old != r.size {
                problems.push(format!(
                    "two sizes for {}: {old} and {}",
                    r.queue_id, r.size
                ));
            }
        }
        got_rcpts
            .entry(r.queue_id.clone())
            .or_default()
            .push(r.recipient.clone());
    }
    for (id, (_, rcpts)) in &expected_rcpts {
        let mut want = rcpts.clone();
        want.sort();
        let mut got = got_rcpts.get(id).cloned().unwrap_or_default();
        got.sort();
        if got != want {
            problems.push(format!("{id}: raw records for {got:?}, expected {want:?}"));
        }
    }
    // Each SIZE is the message as accepted: what the sink got for it, less
    // the verdict headers and Authentication-Results Mailward puts on top
    // when it sends it.
    for msg in rig.sink.messages()? {
        let ids = msg.queue_ids();
        let Some(id) = ids.first() else {
            problems.push(format!("no queue ID at the sink: {}", msg.path.display()));
            continue;
        };
        let accepted = without_verdict(&msg.message);
        if sizes.get(id) != Some(&crlf_len(&accepted)) {
            problems.push(format!(
                "{id}: SIZE {:?} in the raw records, {} octets at the sink without the fields Mailward puts on top",
                sizes.get(id),
                crlf_len(&accepted)
            ));
        }
    }
    ensure!(
        problems.is_empty(),
        "raw records ({}):\n{}\n--- raw file ---\n{}",
        rig.stats.raw.display(),
        problems.join("\n"),
        raw.iter()
            .map(|r| r.line.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The file's recent records are the same lines.
    let recent = file["raw"]["recent"]
        .as_array()
        .context("raw.recent in the stats file")?;
    let recent_ids: Vec<&str> = recent
        .iter()
        .filter_map(|r| r["queue_id"].as_str())
        .collect();
    let raw_ids: Vec<&str> = raw.iter().map(|r| r.queue_id.as_str()).collect();
    assert_eq!(recent_ids, raw_ids, "raw.recent vs the raw file");

    // --- counters and gauges: what was sent, in both renderings ----------
    let total_bytes: u64 = sizes.values().sum();
    let held_size = *sizes.get(&held_id).context("held message size")?;
    let greetings = single.greetings
        + double.greetings
        + relay.iter().map(|t| t.greetings).sum::<usize>()
        + oversize.greetings
        + mixed.greetings;
    let mf = m.flat();
    let ff = flatten_json(&file)?;
    let mut e = Expect::new(&mf, &ff);
    e.eq("mailward_messages_received_total", accepted as f64);
    e.eq("mailward_received_bytes_total", total_bytes as f64);
    // Each relay attempt is one transaction (its one recipient refused,
    // then QUIT): one each, and one refused recipient each.
    e.labels(
        "mailward_messages_rejected_total",
        REASONS,
        &[("relay", 3.0), ("size", 1.0)],
    );
    e.labels(
        "mailward_recipients_rejected_total",
        REASONS,
        &[("relay", 3.0)],
    );
    e.labels(
        "mailward_av_results_total",
        AV,
        &[("clean", accepted as f64)],
    );
    e.labels(
        "mailward_spam_results_total",
        SPAM,
        &[("clean", accepted as f64)],
    );
    e.eq("mailward_messages_blocked_total", 0.0);
    e.eq("mailward_messages_quarantined_total", 0.0);
    e.labels(
        "mailward_messages_archived_total",
        &["incoming", "outgoing"],
        &[],
    );
    e.labels(
        "mailward_deliveries_total",
        RESULTS,
        &[("delivered", (rcpt_count - 1) as f64), ("deferred", 1.0)],
    );
    // Every accepted message went to the sink in one transaction, with the
    // verdict header on top: the octets sent are what the sink got.
    let sent_bytes: u64 = rig
        .sink
        .messages()?
        .iter()
        .map(|m| crlf_len(&m.message))
        .sum();
    e.eq("mailward_delivered_bytes_total", sent_bytes as f64);
    e.labels("mailward_notifications_sent_total", TO, &[]);
    // The daemon's readiness check greeted once, then the clients.
    e.eq("mailward_sessions_opened_total{in}", (1 + greetings) as f64);
    e.eq("mailward_sessions{in}", 0.0);
    e.eq("mailward_queue_messages", 1.0);
    e.eq("mailward_queue_bytes", held_size as f64);
    e.eq("mailward_scan_duration_seconds_count", accepted as f64);
    e.eq("mailward_scan_duration_seconds_bucket{60}", accepted as f64);
    e.eq("mailward_viruses_detected_total", 0.0);
    e.eq("mailward_filter_hits_total", 0.0);
    e.eq("mailward_raw_records_total", rcpt_count as f64);
    e.labels(
        "mailward_messages_checked_total",
        &["smtp", "filter", "milter"],
        &[("smtp", accepted as f64)],
    );
    let start_time = m.value("mailward_start_time_seconds", &[])?;
    e.eq("mailward_stats_reset_timestamp_seconds", start_time);
    e.finish("after the known mix")?;
    ensure!(
        m.get("mailward_scan_duration_seconds_bucket", &[("le", "+Inf")]) == Some(accepted as f64),
        "+Inf bucket of the scan histogram"
    );
    ensure!(
        start_time >= started.floor() - 1.0 && start_time <= after,
        "mailward_start_time_seconds {start_time} is not the start of this test's daemon ({started})"
    );
    ensure!(
        file["start_time"].as_f64() == Some(start_time)
            && file["reset_time"].as_f64() == Some(start_time),
        "start_time/reset_time in the file: {} / {}, /metrics {start_time}",
        file["start_time"],
        file["reset_time"]
    );
    let version = m
        .all("mailward_build_info")
        .next()
        .and_then(|s| s.label("version"))
        .context("mailward_build_info{version}")?
        .to_string();
    ensure!(
        file["version"].as_str() == Some(version.as_str()),
        "version {} in the file, {version} in /metrics",
        file["version"]
    );
    // The one deferral (dave@deferred.test) ranks its domain.
    assert_top_tables_empty(&m, &file, &["deferred.test"])?;
    // ... and its age is the oldest deferred message's, growing as it
    // waits (walkAM 10: status said "mail is not leaving", nothing else
    // could); the bases on disk load.
    let oldest = |m: &Metrics| {
        m.get("mailward_queue_oldest_deferred_seconds", &[])
            .context("mailward_queue_oldest_deferred_seconds")
    };
    let first = oldest(&m)?;
    std::thread::sleep(Duration::from_secs(2));
    let later = oldest(&rig.stats.scrape()?)?;
    ensure!(
        first <= after - started + 1.0 && later >= first + 1.0,
        "mailward_queue_oldest_deferred_seconds {first}, then {later} 2 s later (the test ran {} s)",
        after - started
    );
    ensure!(
        m.get("mailward_bases_on_disk_broken", &[]) == Some(0.0),
        "mailward_bases_on_disk_broken: {:?}",
        m.get("mailward_bases_on_disk_broken", &[])
    );

    // The queue agrees about the held message.
    let queue = rig.daemon.queue_list()?;
    ensure!(
        queue.len() == 1
            && queue[0]["id"] == held_id.as_str()
            && queue[0]["size"].as_u64() == Some(held_size),
        "queue list: {queue:?}, expected {held_id} of {held_size} octets"
    );

    // --- the two renderings agree on everything that no longer moves -----
    let diff = differences("/metrics", &mf, "stats file", &ff, MOVING);
    ensure!(
        diff.is_empty(),
        "/metrics and the stats file written right after differ:\n{}",
        diff.join("\n")
    );
    // `stats show --json` is the same document, `stats show` the same values.
    let shown: Value = serde_json::from_str(&rig.daemon.cli_ok(&["stats", "show", "--json"])?)
        .context("`stats show --json` is not JSON")?;
    let diff = differences(
        "stats file",
        &ff,
        "stats show --json",
        &flatten_json(&shown)?,
        MOVING,
    );
    ensure!(
        diff.is_empty(),
        "`stats show --json` differs from the file:\n{}",
        diff.join("\n")
    );
    let table = rig.daemon.cli_ok(&["stats", "show"])?;
    ensure!(
        table.lines().any(|l| {
            l.split_whitespace().collect::<Vec<_>>()
                == ["mailward_messages_received_total", &accepted.to_string()]
        }),
        "`stats show` has no line 'mailward_messages_received_total {accepted}':\n{table}"
    );
    Ok(())
}

/// `mailward_messages_rejected_total` counts a transaction once, however
/// many of its recipients were refused, and not at all when its message is
/// accepted; `mailward_recipients_rejected_total` counts every refused RCPT,
/// syntax too. Before, each refused RCPT counted as a rejected transaction
/// (also beside a message received), and a MAIL or RCPT refused for its
/// syntax was not counted at all.
#[test]
fn refusals_count_once_per_transaction_and_every_refused_recipient() -> Result<()> {
    let rig = Rig::start("stats-refusals", |c| {
        c.set_list(
            "access",
            "rcpt_rules",
            &["deny address *@refused.example.com"],
        )
        .set("limits", "max_rcpts_per_message", "3")
        .set_str("limits", "max_message_size", "10KiB")
    })?;
    let port = rig.daemon.port;
    let message = read_resource("mail/plain.eml")?;

    // Three recipients refused in one transaction (swaks, then QUIT):
    // one transaction refused, three recipients.
    let three = swaks_to(
        port,
        &[
            "--from",
            "alice@sender.test",
            "--to",
            "x@refused.example.com,y@refused.example.com,z@refused.example.com",
        ],
    )?;
    ensure!(
        three.text.matches("550 5.7.1").count() == 3 && three.queued.is_empty(),
        "three refused recipients:\n{}",
        three.text
    );

    // Accepted for ok@, refused for no@: a message received, no
    // transaction refused, one recipient refused.
    let mut c = SmtpClient::connect_ok(port)?;
    c.ehlo("client.test")?;
    c.command("MAIL FROM:<alice@sender.test>")?
        .expect(250, "2.1.0")?;
    c.command("RCPT TO:<ok@example.com>")?
        .expect(250, "2.1.5")?;
    c.command("RCPT TO:<no@refused.example.com>")?
        .expect(550, "5.7.1")?;
    c.data(&message)?.expect(250, "2.0.0")?;

    // A RCPT with bad syntax in a transaction whose message is accepted:
    // one recipient refused for syntax, no transaction.
    c.command("MAIL FROM:<alice@sender.test>")?
        .expect(250, "2.1.0")?;
    c.command("RCPT TO:<bad address@example.com>")?
        .expect(501, "5.1.3")?;
    c.command("RCPT TO:<ok@example.com>")?
        .expect(250, "2.1.5")?;
    c.data(&message)?.expect(250, "2.0.0")?;

    // Past max_rcpts_per_message (3): the fourth recipient is refused
    // (452, limit), the message accepted for the other three.
    c.command("MAIL FROM:<alice@sender.test>")?
        .expect(250, "2.1.0")?;
    for n in 0..3 {
        c.command(&format!("RCPT TO:<many{n}@example.com>"))?
            .expect(250, "2.1.5")?;
    }
    c.command("RCPT TO:<many3@example.com>")?
        .expect(452, "4.5.3")?;
    c.data(&message)?.expect(250, "2.0.0")?;

    // A MAIL with bad syntax: one transaction refused for syntax.
    c.command("MAIL FROM:<bad sender@sender.test>")?
        .expect(501, "5.1.7")?;

    // Every recipient refused, DATA answered 554, then RSET: counted once
    // (at the 554), not again at the RSET.
    c.command("MAIL FROM:<alice@sender.test>")?
        .expect(250, "2.1.0")?;
    c.command("RCPT TO:<w@refused.example.com>")?
        .expect(550, "5.7.1")?;
    c.command("DATA")?.expect(554, "5.5.1")?;
    c.command("RSET")?.expect(250, "2.0.0")?;

    // A recipient refused, then the message refused at DATA for its size:
    // once, for the size (the DATA-time reason), not for access too.
    c.command("MAIL FROM:<alice@sender.test>")?
        .expect(250, "2.1.0")?;
    c.command("RCPT TO:<v@refused.example.com>")?
        .expect(550, "5.7.1")?;
    c.command("RCPT TO:<ok@example.com>")?
        .expect(250, "2.1.5")?;
    let mut big = b"Subject: too big\r\n\r\n".to_vec();
    while big.len() < 20 * 1024 {
        big.extend_from_slice(
            b"0123456789012345678901234567890123456789012345678901234567890123456789\r\n",
        );
    }
    c.data(&big)?.expect(552, "5.3.4")?;
    c.quit();

    let received = 3;
    let m = rig.settle(received, 0, |_| true)?;
    let file = rig.stats.write_file(&rig.daemon)?;
    let mf = m.flat();
    let ff = flatten_json(&file)?;
    let mut e = Expect::new(&mf, &ff);
    e.eq("mailward_messages_received_total", received as f64);
    e.labels(
        "mailward_messages_rejected_total",
        REASONS,
        &[("access", 2.0), ("syntax", 1.0), ("size", 1.0)],
    );
    e.labels(
        "mailward_recipients_rejected_total",
        REASONS,
        &[("access", 6.0), ("syntax", 1.0), ("limit", 1.0)],
    );
    e.finish("after the refusals")
}

/// One message from a new session; its queue ID.
fn send_one(port: u16, rcpt: &str) -> Result<String> {
    let mut c = SmtpClient::connect_ok(port)?;
    c.ehlo("client.test")?;
    let id = c.send_mail_ok(
        "alice@sender.test",
        &[rcpt],
        &read_resource("mail/plain.eml")?,
    )?;
    c.quit();
    Ok(id)
}

#[test]
fn stats_reset_zeroes_counters_moves_the_reset_time_and_keeps_levels() -> Result<()> {
    let rig = Rig::start("stats-reset", |c| {
        c.set_str("limits", "max_message_size", "10KiB")
    })?;
    let port = rig.daemon.port;
    for n in 0..3 {
        send_one(port, &format!("user{n}@example.com"))?;
    }
    send_one(port, "held@deferred.test")?;
    let mut c = SmtpClient::connect_ok(port)?;
    c.ehlo("client.test")?;
    c.command("MAIL FROM:<alice@sender.test> SIZE=20000")?
        .expect(552, "5.3.4")?;
    c.quit();
    let before = rig.settle(3, 1, |m| {
        m.get("mailward_deliveries_total", &[("result", "deferred")]) == Some(1.0)
    })?;
    // The reset has something to zero.
    for (name, labels, want) in [
        ("mailward_messages_received_total", &[][..], 4.0),
        (
            "mailward_messages_rejected_total",
            &[("reason", "size")][..],
            1.0,
        ),
        (
            "mailward_deliveries_total",
            &[("result", "delivered")][..],
            3.0,
        ),
        ("mailward_raw_records_total", &[][..], 4.0),
        ("mailward_queue_messages", &[][..], 1.0),
    ] {
        let got = before.value(name, labels)?;
        ensure!(
            got == want,
            "before the reset: {name}{labels:?} = {got}, expected {want}"
        );
    }
    let reset_before = before.value("mailward_stats_reset_timestamp_seconds", &[])?;
    let start_time = before.value("mailward_start_time_seconds", &[])?;
    let queue_bytes = before.value("mailward_queue_bytes", &[])?;
    ensure!(queue_bytes > 0.0, "queue bytes before the reset");

    // `stats show` writes a series as the exposition does (walkU 8).
    let shown = rig.daemon.cli_ok(&["stats", "show"])?;
    ensure!(
        shown
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["mailward_messages_rejected_total{reason=\"size\"}", "1"]),
        "stats show:\n{shown}"
    );

    thread::sleep(Duration::from_millis(1100));
    let asked = now();
    let said = rig.daemon.cli_ok(&["stats", "reset"])?;
    // The figures up to the reset are in the stats file (walkU 2: they
    // were lost to it since its last periodic write).
    let up_to_reset = rig.stats.read_file()?;
    ensure!(
        said.contains(&format!(
            "The figures up to the reset are in {}",
            rig.stats.file.display()
        )),
        "stats reset said: {said}"
    );
    let flat = flatten_json(&up_to_reset)?;
    ensure!(
        flat.get("mailward_messages_received_total") == Some(&4.0)
            && up_to_reset["reset_time"].as_f64() == Some(reset_before),
        "the stats file after `stats reset` does not hold the figures up to it: {up_to_reset}"
    );
    let after = rig.stats.scrape()?;
    let file = rig.stats.write_file(&rig.daemon)?;
    let done = now();

    let mut wrong = Vec::new();
    let counters = after.counters();
    ensure!(
        counters.len() >= 15,
        "only {} counter families in /metrics: {counters:?}",
        counters.len()
    );
    for name in counters.iter().filter(|n| !NOT_RESET.contains(&n.as_str())) {
        for s in after.all(name).filter(|s| s.value != 0.0) {
            wrong.push(format!(
                "/metrics {name}{:?} = {} after reset",
                s.labels, s.value
            ));
        }
    }
    for s in after
        .samples
        .iter()
        .filter(|s| s.name.starts_with("mailward_scan_duration_seconds") && s.value != 0.0)
    {
        wrong.push(format!(
            "/metrics {}{:?} = {} after reset",
            s.name, s.labels, s.value
        ));
    }
    let ff = flatten_json(&file)?;
    for (k, v) in &ff {
        let name = k.split('{').next().unwrap_or(k);
        let counter = counters.iter().any(|c| c == name)
            || name.starts_with("mailward_scan_duration_seconds");
        if counter && !NOT_RESET.contains(&name) && *v != 0.0 {
            wrong.push(format!("stats file {k} = {v} after reset"));
        }
    }
    let reset_time = after.value("mailward_stats_reset_timestamp_seconds", &[])?;
    if !(reset_time > reset_before && reset_time >= asked.floor() && reset_time <= done) {
        wrong.push(format!(
            "mailward_stats_reset_timestamp_seconds {reset_time}: expected after {reset_before} and in [{asked:.0}, {done:.0}]"
        ));
    }
    if file["reset_time"].as_f64() != Some(reset_time)
        || ff.get("mailward_stats_reset_timestamp_seconds") != Some(&reset_time)
    {
        wrong.push(format!(
            "stats file reset_time {} / {:?}, /metrics {reset_time}",
            file["reset_time"],
            ff.get("mailward_stats_reset_timestamp_seconds")
        ));
    }
    for (key, want) in [
        ("mailward_start_time_seconds", start_time),
        ("mailward_queue_messages", 1.0),
        ("mailward_queue_bytes", queue_bytes),
        ("mailward_sessions{in}", 0.0),
    ] {
        let (m, f) = (after.flat().get(key).copied(), ff.get(key).copied());
        if m != Some(want) || f != Some(want) {
            wrong.push(format!(
                "level {key} after reset: expected {want}, /metrics {}, stats file {}",
                show(m),
                show(f)
            ));
        }
    }
    ensure!(
        wrong.is_empty(),
        "after `stats reset`:\n{}",
        wrong.join("\n")
    );

    // New traffic counts from zero.
    send_one(port, "again1@example.com")?;
    send_one(port, "again2@example.com")?;
    let m = rig.settle(5, 1, |m| {
        m.get("mailward_deliveries_total", &[("result", "delivered")]) == Some(2.0)
    })?;
    // SIGUSR1 writes the file too.
    let taken_before = rig.stats.read_file()?["taken_at"].as_f64().unwrap_or(0.0);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(rig.daemon.pid().context("daemon pid")? as i32),
        nix::sys::signal::Signal::SIGUSR1,
    )?;
    let file = wait_until(
        "SIGUSR1 to rewrite the stats file",
        Duration::from_secs(10),
        || {
            let f = rig.stats.read_file()?;
            Ok((f["taken_at"].as_f64().unwrap_or(0.0) > taken_before).then_some(f))
        },
    )?;
    let (mf, ff) = (m.flat(), flatten_json(&file)?);
    let mut e = Expect::new(&mf, &ff);
    e.eq("mailward_messages_received_total", 2.0);
    e.labels("mailward_av_results_total", AV, &[("clean", 2.0)]);
    e.labels("mailward_spam_results_total", SPAM, &[("clean", 2.0)]);
    e.labels("mailward_deliveries_total", RESULTS, &[("delivered", 2.0)]);
    e.labels("mailward_messages_rejected_total", REASONS, &[]);
    e.eq("mailward_raw_records_total", 2.0);
    e.eq("mailward_sessions_opened_total{in}", 2.0);
    e.eq("mailward_scan_duration_seconds_count", 2.0);
    e.eq("mailward_queue_messages", 1.0);
    e.eq("mailward_stats_reset_timestamp_seconds", reset_time);
    e.finish("new traffic after the reset")
}

#[test]
fn fifty_concurrent_sessions_lose_and_double_nothing() -> Result<()> {
    const SESSIONS: &str = "50";
    const MESSAGES: usize = 500;
    let rig = Rig::start("stats-concurrency", |c| {
        c.set("limits", "incoming_sessions_per_ip", "100")
    })?;
    let port = rig.daemon.port;

    // While the load runs, every snapshot must be whole: the verdicts of a
    // message are one event, its raw records follow its verdict, and its
    // deliveries follow its raw records.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let stop = stop.clone();
        let stats = rig.stats.clone();
        thread::spawn(move || -> Result<(usize, f64, Vec<String>)> {
            let mut scrapes = 0;
            let mut peak_sessions: f64 = 0.0;
            let mut torn = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let m = stats.scrape()?;
                scrapes += 1;
                peak_sessions =
                    peak_sessions.max(m.value("mailward_sessions", &[("direction", "in")])?);
                let received = m.value("mailward_messages_received_total", &[])?;
                let av = m.sum("mailward_av_results_total");
                let spam = m.sum("mailward_spam_results_total");
                let scans = m.value("mailward_scan_duration_seconds_count", &[])?;
                let raw = m.value("mailward_raw_records_total", &[])?;
                let delivered = m.value("mailward_deliveries_total", &[("result", "delivered")])?;
                if !(spam == av
                    && scans == av
                    && av <= received
                    && raw <= 2.0 * av
                    && delivered <= raw)
                {
                    torn.push(format!(
                        "received {received}, av {av}, spam {spam}, scans {scans}, raw {raw}, delivered {delivered}"
                    ));
                }
                thread::sleep(Duration::from_millis(5));
            }
            Ok((scrapes, peak_sessions, torn))
        })
    };
    let load = source(
        port,
        &[
            "-s",
            SESSIONS,
            "-m",
            &MESSAGES.to_string(),
            "-r",
            "2",
            "-l",
            "512",
            "-f",
            "load@source.test",
            "-t",
            "rcpt@example.com",
        ],
    );
    stop.store(true, Ordering::Relaxed);
    let (scrapes, peak_sessions, torn) = watcher
        .join()
        .map_err(|_| anyhow::anyhow!("the scraping thread panicked"))??;
    let load = load?;
    let queued = load.queued.len();
    eprintln!(
        "{queued} messages queued; {scrapes} scrapes during the load, at most {peak_sessions} inbound sessions open in one; {} torn",
        torn.len()
    );
    ensure!(
        load.rcpts.len() == 2,
        "smtp-source recipients {:?}",
        load.rcpts
    );
    ensure!(
        queued > 0,
        "smtp-source got no 250:\n{}",
        &load.text[..load.text.len().min(4000)]
    );
    let m = rig.settle(queued, 0, |m| {
        m.value("mailward_deliveries_total", &[("result", "delivered")])
            .is_ok_and(|d| d >= 2.0 * queued as f64)
    })?;
    let file = rig.stats.write_file(&rig.daemon)?;
    let raw = rig.stats.raw_lines()?;

    let mut per_id: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &raw {
        *per_id.entry(r.queue_id.as_str()).or_default() += 1;
    }
    let replied: BTreeSet<&str> = load.queued.iter().map(String::as_str).collect();
    let recorded: BTreeSet<&str> = per_id.keys().copied().collect();
    let mut wrong = Vec::new();
    if queued != MESSAGES {
        wrong.push(format!(
            "{queued} of {MESSAGES} messages got 250 (smtp-source)"
        ));
    }
    if replied.len() != queued {
        wrong.push(format!(
            "{} distinct queue IDs in {queued} 250 replies",
            replied.len()
        ));
    }
    if recorded != replied {
        wrong.push(format!(
            "queue IDs: {} in raw records but in no 250 reply, {} replied but not recorded",
            recorded.difference(&replied).count(),
            replied.difference(&recorded).count()
        ));
    }
    let doubled: Vec<_> = per_id.iter().filter(|(_, n)| **n != 2).collect();
    if !doubled.is_empty() {
        wrong.push(format!(
            "{} message(s) without exactly 2 raw records, e.g. {:?}",
            doubled.len(),
            &doubled[..doubled.len().min(5)]
        ));
    }
    if raw.len() != 2 * queued {
        wrong.push(format!("{} raw lines, expected {}", raw.len(), 2 * queued));
    }
    if !torn.is_empty() {
        wrong.push(format!(
            "{} of {scrapes} scrapes during the load showed half an event, e.g.:\n  {}",
            torn.len(),
            torn[..torn.len().min(5)].join("\n  ")
        ));
    }
    let (mf, ff) = (m.flat(), flatten_json(&file)?);
    let mut e = Expect::new(&mf, &ff);
    let q = queued as f64;
    e.eq("mailward_messages_received_total", q);
    e.labels("mailward_av_results_total", AV, &[("clean", q)]);
    e.labels("mailward_spam_results_total", SPAM, &[("clean", q)]);
    e.labels(
        "mailward_deliveries_total",
        RESULTS,
        &[("delivered", 2.0 * q)],
    );
    e.labels("mailward_messages_rejected_total", REASONS, &[]);
    e.eq("mailward_raw_records_total", 2.0 * q);
    e.eq("mailward_scan_duration_seconds_count", q);
    e.eq(
        "mailward_sessions_opened_total{in}",
        (1 + load.greetings) as f64,
    );
    e.eq("mailward_sessions{in}", 0.0);
    e.eq("mailward_queue_messages", 0.0);
    e.eq("mailward_queue_bytes", 0.0);
    let sizes: BTreeMap<&str, u64> = raw.iter().map(|r| (r.queue_id.as_str(), r.size)).collect();
    e.eq(
        "mailward_received_bytes_total",
        sizes.values().sum::<u64>() as f64,
    );
    wrong.extend(e.wrong);
    // Sums over the statuses, as an operator would compute them.
    let av_sum = m.sum("mailward_av_results_total");
    let spam_sum = m.sum("mailward_spam_results_total");
    let received = m.value("mailward_messages_received_total", &[])?;
    if av_sum != received || spam_sum != received {
        wrong.push(format!(
            "sum of av results {av_sum}, of spam results {spam_sum}, received {received}"
        ));
    }
    ensure!(
        wrong.is_empty(),
        "after {queued} messages over {SESSIONS} sessions ({scrapes} scrapes meanwhile, at most {peak_sessions} sessions open in one):\n{}",
        wrong.join("\n")
    );
    Ok(())
}

#[test]
fn hostile_addresses_and_helo_names_break_no_rendering() -> Result<()> {
    let rig = Rig::start("stats-hostile", |c| c)?;
    let port = rig.daemon.port;

    // Refused: too long, quotes and backslashes, UTF-8, invalid UTF-8.
    let mut c = SmtpClient::connect_ok(port)?;
    let long_helo = format!("EHLO {}\r\n", "h".repeat(2048));
    c.send(long_helo.as_bytes())?;
    let r = c.read_reply()?;
    ensure!(r.class() == 5, "2 KB EHLO: {r}");
    for helo in [
        &b"EHLO h\"q\\x.test\r\n"[..],
        "EHLO hé-ünï.test\r\n".as_bytes(),
        &b"EHLO h\xff\xfe.test\r\n"[..],
    ] {
        c.send(helo)?;
        let r = c.read_reply()?;
        ensure!(r.class() == 5, "{:?}: {r}", String::from_utf8_lossy(helo));
    }
    // A tab in a HELO name: refused or cut at the tab, either way the
    // session goes on.
    let r = c.command("HELO a\tb")?;
    ensure!(matches!(r.class(), 2 | 5), "HELO with a tab: {r}");
    c.ehlo("client.test")?;

    // Accepted: quoted local parts with quotes, spaces, backslashes, a
    // literal "\t", parentheses, brackets and commas; a 256-octet path
    // (RFC 5321 4.5.3.1.3 counts the angle brackets: a 254-octet address).
    let sender = r#""a\"b"@example.com"#;
    let long_rcpt = format!(
        "{}@{}.{}.{}.test",
        "l".repeat(64),
        "d".repeat(63),
        "e".repeat(63),
        "f".repeat(56)
    );
    ensure!(long_rcpt.len() == 254, "{}", long_rcpt.len());
    let rcpts = [
        r#""a b"@example.com"#.to_string(),
        r#""back\\slash"@example.com"#.to_string(),
        // A literal backslash before a "t" (quoted, it stays quoted: a
        // quoted-pair of a plain letter, `"lit\tab"`, is the atom
        // `littab` and is unquoted as the mailbox it names).
        r#""lit\\tab"@example.com"#.to_string(),
        r#""x'y;z,(c)[d]"@example.com"#.to_string(),
        long_rcpt,
    ];
    c.command(&format!("MAIL FROM:<{sender}>"))?
        .expect(250, "2.1.0")?;
    for rcpt in &rcpts {
        c.command(&format!("RCPT TO:<{rcpt}>"))?
            .expect(250, "2.1.5")?;
    }
    // Refused inside the transaction: a path over 256 octets.
    let r = c.command(&format!("RCPT TO:<{}@example.com>", "x".repeat(300)))?;
    ensure!(r.class() == 5, "300-octet path: {r}");
    let body = "Subject: =?UTF-8?Q?h=C3=B6stile?=\r\nFrom: \"Ünïcödé\" <u@example.com>\r\n\r\nTabs\there, quotes \" and \\ backslashes, ünïcödé.\r\n";
    let first = c.data(body.as_bytes())?;
    first.expect(250, "2.0.0")?;
    let first = first.queue_id().context("queue ID")?;

    // Refused at MAIL: UTF-8, a tab, a bare CR.
    for mail in [
        "MAIL FROM:<jöhn@example.com>\r\n".as_bytes(),
        &b"MAIL FROM:<\"a\tb\"@example.com>\r\n"[..],
        &b"MAIL FROM:<a\rb@example.com>\r\n"[..],
    ] {
        c.send(mail)?;
        let r = c.read_reply()?;
        ensure!(r.class() == 5, "{:?}: {r}", String::from_utf8_lossy(mail));
    }
    // The null sender, to a "-" recipient.
    let second = c.send_mail_ok("", &["-@example.com"], body.as_bytes())?;
    c.quit();

    // A session that only sends 2 KB lines is closed with 421 at the 21st.
    let mut c = SmtpClient::connect_ok(port)?;
    let mut last = None;
    for _ in 0..25 {
        if c.send(long_helo.as_bytes()).is_err() {
            break;
        }
        match c.read_reply() {
            Ok(r) if r.code == 421 => {
                last = Some(r);
                break;
            }
            Ok(r) => ensure!(r.class() == 5, "2 KB EHLO: {r}"),
            Err(_) => break,
        }
    }
    let last = last.context("no 421 after 25 lines of 2 KB")?;
    last.expect(421, "4.7.0")?;

    let m = rig.settle(2, 0, |_| true)?;
    let file = rig.stats.write_file(&rig.daemon)?;
    let shown: Value = serde_json::from_str(&rig.daemon.cli_ok(&["stats", "show", "--json"])?)
        .context("`stats show --json` is not JSON")?;
    rig.daemon.cli_ok(&["stats", "show"])?;

    // The raw records: 9 fields each, the addresses exactly as sent.
    let raw = rig.stats.raw_lines()?;
    let mut want: Vec<(String, String, String)> = rcpts
        .iter()
        .map(|r| (first.clone(), sender.to_string(), r.clone()))
        .collect();
    want.push((second.clone(), String::new(), "-@example.com".into()));
    want.sort();
    let mut got: Vec<(String, String, String)> = raw
        .iter()
        .map(|r| (r.queue_id.clone(), r.sender.clone(), r.recipient.clone()))
        .collect();
    got.sort();
    let lines: Vec<&str> = raw.iter().map(|r| r.line.as_str()).collect();
    assert_eq!(got, want, "raw records (unescaped):\n{}", lines.join("\n"));
    // An empty sender is "-"; a literal backslash-t is not a tab.
    ensure!(
        raw.iter()
            .any(|r| r.line.split('\t').nth(3) == Some(r#""lit\\\\tab"@example.com"#)),
        "the literal \\t is not escaped as \\\\t:\n{}",
        lines.join("\n")
    );
    ensure!(
        raw.iter()
            .any(|r| r.queue_id == second && r.line.split('\t').nth(2) == Some("-")),
        "the null sender is not '-':\n{}",
        lines.join("\n")
    );

    // The JSON documents hold the same strings.
    for (what, doc) in [("stats file", &file), ("stats show --json", &shown)] {
        let recent = doc["raw"]["recent"]
            .as_array()
            .with_context(|| format!("raw.recent in the {what}"))?;
        let mut from_json: Vec<(String, String, String)> = recent
            .iter()
            .map(|r| {
                (
                    r["queue_id"].as_str().unwrap_or("?").to_string(),
                    r["sender"].as_str().unwrap_or("?").to_string(),
                    r["recipient"].as_str().unwrap_or("?").to_string(),
                )
            })
            .collect();
        from_json.sort();
        assert_eq!(from_json, want, "raw.recent in the {what}");
    }

    // Counted as they happened: two messages; the bad greetings are no
    // refused transaction, but each of the three malformed MAILs is one,
    // and so is the session closed for errors; the 300-octet recipient
    // is a refused recipient of a transaction whose message was accepted.
    let (mf, ff) = (m.flat(), flatten_json(&file)?);
    let mut e = Expect::new(&mf, &ff);
    e.eq("mailward_messages_received_total", 2.0);
    e.labels(
        "mailward_messages_rejected_total",
        REASONS,
        &[("syntax", 4.0)],
    );
    e.labels(
        "mailward_recipients_rejected_total",
        REASONS,
        &[("syntax", 1.0)],
    );
    e.labels("mailward_deliveries_total", RESULTS, &[("delivered", 6.0)]);
    e.eq("mailward_raw_records_total", 6.0);
    e.eq("mailward_sessions_opened_total{in}", 3.0);
    e.finish("after hostile input")?;
    assert_top_tables_empty(&m, &file, &[])?;

    // The exposition passes promtool's lint.
    let (ok, out) = promtool_check(&m.text)?;
    ensure!(
        ok && out.is_empty(),
        "promtool check metrics (exit ok: {ok}):\n{out}"
    );
    Ok(())
}

#[test]
fn idle_metrics_and_admin_connections_past_their_limits_are_refused_and_mail_flows() -> Result<()> {
    use std::io::Read;
    use std::os::unix::net::UnixStream;
    // Someone opens connections to the metrics port and the admin socket
    // and leaves them idle (a broken scraper, a script gone wild, an
    // attacker). The gateway serves at most 32 and 16 of them, instead of
    // spending the descriptors that SMTP sessions need. At the metrics
    // limit a new connection closes the oldest idle one, so a scrape is
    // still served (walkAU F10: 503s for every scrape); past the admin
    // limit a command is refused with a reason; idle ones are closed
    // after 10 s.
    let rig = Rig::start("stats-conn-limits", |c| c)?;
    let metrics = format!("127.0.0.1:{}", rig.stats.metrics_port);
    let mut idle_http = Vec::new();
    for _ in 0..32 {
        let mut idle = std::net::TcpStream::connect(&metrics)?;
        // Half a request head, as a slow client leaves it.
        std::io::Write::write_all(&mut idle, b"GET /metr")?;
        idle_http.push(idle);
    }
    let socket = rig.dir.path().join("data").join("admin.sock");
    let mut idle_admin = Vec::new();
    for _ in 0..16 {
        idle_admin.push(UnixStream::connect(&socket)?);
    }
    // The accept loop takes the 32 in order, asynchronously: given a
    // moment to have them all, so that the scrape finds the limit reached
    // and the oldest of them is closed for it.
    std::thread::sleep(Duration::from_millis(500));
    let served = wait_until(
        "a scrape served beside 32 idle metrics connections",
        // Well within the 10 s after which they would close on their own.
        Duration::from_secs(3),
        || Ok(Some(rig.stats.scrape()?)),
    )?;
    ensure!(
        served.text.contains("mailward_messages_received_total"),
        "the scrape is not the exposition: {}",
        served.text
    );
    let mut rest = Vec::new();
    idle_http[0].set_read_timeout(Some(Duration::from_secs(5)))?;
    let closed = idle_http[0].read_to_end(&mut rest);
    ensure!(
        closed.is_ok(),
        "the oldest idle metrics connection was not closed for the scrape: {closed:?}"
    );
    let log = rig.daemon.log();
    ensure!(
        log.contains("the oldest idle one was closed to serve a new one"),
        "no warning about the connection closed to make room:\n{log}"
    );
    let out = rig.daemon.cli(&["queue", "list"])?;
    let text = output_text(&out);
    ensure!(
        !out.status.success() && text.contains("16 admin connections"),
        "a 17th admin connection was not refused with a reason: {text}"
    );
    // Mail does not notice.
    send_one(rig.daemon.port, "someone@example.com")?;
    rig.sink.wait_for_count(1, DELIVERY_TIMEOUT)?;
    // An idle connection is closed once its 10 s for a request are over:
    // the admin one is told so, the metrics one simply closed.
    let mut answer = String::new();
    idle_admin[0].set_read_timeout(Some(Duration::from_secs(20)))?;
    idle_admin[0].read_to_string(&mut answer)?;
    ensure!(
        answer.contains("no request within 10 s"),
        "idle admin connection: {answer}"
    );
    let mut rest = Vec::new();
    idle_http[1].set_read_timeout(Some(Duration::from_secs(20)))?;
    let closed = idle_http[1].read_to_end(&mut rest).is_ok();
    ensure!(closed, "an idle metrics connection stayed open past 20 s");
    // With the idle ones gone, scrapes and commands are served again.
    drop(idle_http);
    drop(idle_admin);
    wait_until(
        "a scrape after the idle connections closed",
        Duration::from_secs(5),
        || Ok(Some(rig.stats.scrape()?)),
    )?;
    wait_until(
        "a command after the idle connections closed",
        Duration::from_secs(5),
        || Ok(Some(rig.daemon.cli_ok(&["queue", "list"])?)),
    )?;
    Ok(())
}

/// The `last update:` line of `mailward bases status`.
fn last_update_line(rig: &Rig) -> Result<String> {
    let out = rig.daemon.cli_ok(&["bases", "status"])?;
    out.lines()
        .find(|l| l.starts_with("last update:"))
        .map(str::to_string)
        .with_context(|| format!("no `last update:` line in bases status:\n{out}"))
}

/// `mailward status`'s problem about the last update of the bases.
fn update_problem(rig: &Rig) -> Result<String> {
    let out = rig.daemon.cli_ok(&["status"])?;
    out.lines()
        .find(|l| l.contains("The last update of the bases ended with error"))
        .map(str::to_string)
        .with_context(|| format!("no problem about the last update in status:\n{out}"))
}

/// The last update as /metrics says it: (time, result at 1).
fn last_update_metrics(m: &Metrics) -> (Option<f64>, Vec<String>) {
    let results = m
        .all("mailward_update_last_result")
        .filter(|s| s.value == 1.0)
        .filter_map(|s| s.label("result").map(str::to_string))
        .collect();
    (
        m.get("mailward_update_last_check_timestamp_seconds", &[]),
        results,
    )
}

/// walkAG 2: a restart forgot the last update of the bases: /metrics,
/// SNMP and `bases status` said "never (unknown)", and a failed update's
/// alert (MailwardUpdateFailing, `result="error"` for 1h) cleared. The
/// statistics file is written after each update attempt and read back at
/// start, so the last update survives a stop and a crash (SIGKILL right
/// after the update) alike.
#[test]
fn the_last_update_of_the_bases_is_kept_across_a_restart_and_a_crash() -> Result<()> {
    let mut rig = Rig::start("update-restart", |c| c)?;
    let fresh = last_update_metrics(&rig.stats.scrape()?);
    ensure!(
        fresh == (Some(0.0), vec!["unknown".to_string()]),
        "a fresh gateway: expected never (0) and unknown, got {fresh:?}"
    );
    // A cron job's update from a directory that is not there.
    let missing = rig.dir.path().join("no-such-set");
    let out = rig
        .daemon
        .cli(&["bases", "update", "--from", &missing.display().to_string()])?;
    ensure!(
        !out.status.success(),
        "bases update --from a missing directory succeeded: {}",
        output_text(&out)
    );
    let failed = last_update_metrics(&rig.stats.scrape()?);
    let at = failed.0.unwrap_or(0.0);
    ensure!(
        at > 0.0 && failed.1 == ["error"],
        "after the failed update: expected a time and error, got {failed:?}"
    );
    let status = last_update_line(&rig)?;
    ensure!(
        status.ends_with("(error)") && !status.contains("never"),
        "bases status after the failed update: {status}"
    );
    // What it failed on, in `mailward status`'s problem.
    let problem = update_problem(&rig)?;
    ensure!(
        problem.contains("no-such-set"),
        "the failed update's problem does not say what it failed on: {problem}"
    );
    for how in [
        "a crash (SIGKILL) right after the update",
        "a stop (SIGTERM)",
    ] {
        if how.contains("SIGKILL") {
            rig.daemon.kill9()?;
        } else {
            rig.daemon.sigterm()?;
        }
        rig.daemon.restart()?;
        // Read back by a task of the start: at once, but not before the
        // greeting.
        let after = wait_until(
            &format!("the last update on /metrics after {how}"),
            Duration::from_secs(10),
            || {
                let m = last_update_metrics(&rig.stats.scrape()?);
                Ok((m == failed).then_some(m))
            },
        )
        .with_context(|| {
            format!(
                "expected {failed:?}, got {:?}; log:\n{}",
                rig.stats.scrape().map(|m| last_update_metrics(&m)),
                rig.daemon.log()
            )
        })?;
        ensure!(after == failed);
        let again = last_update_line(&rig)?;
        ensure!(
            again == status,
            "bases status after {how}: {again:?}, before it: {status:?}"
        );
        // walkAG 2 (rest): the reason was lost at a restart.
        let again = update_problem(&rig)?;
        ensure!(
            again == problem,
            "status's problem after {how}: {again:?}, before it: {problem:?}"
        );
        ensure!(
            rig.daemon
                .full_log()
                .contains("The last update of the bases, read back from the statistics file."),
            "no line says where the last update came from:\n{}",
            rig.daemon.log()
        );
    }
    Ok(())
}

/// A client that sends commands and never reads our replies is cut off
/// when a write of them passes `timeouts.command` (walkAH 1); that cut-off
/// was logged but counted nowhere (the timeouts' phase had no value for a
/// write). It is counted once, in phase `write`, in /metrics and in the
/// stats file alike, and not again as a command time-out.
#[test]
fn a_client_that_never_reads_its_replies_is_counted_as_a_write_timeout() -> Result<()> {
    let rig = Rig::start("stats-write-timeout", |c| {
        c.set_str("timeouts", "command", "2s")
    })?;
    let before = rig.stats.scrape()?;
    ensure!(
        before.get("mailward_session_timeouts_total", &[("phase", "write")]) == Some(0.0),
        "a fresh gateway has no phase=\"write\" series at 0:\n{:?}",
        before
            .all("mailward_session_timeouts_total")
            .collect::<Vec<_>>()
    );
    let s = mailward_e2e::smtp::never_reading_client(rig.daemon.port)?;
    // The session is closed once the write's deadline has passed; the
    // client keeps its end open all along.
    let m = wait_until(
        "phase=\"write\" at 1 on /metrics",
        Duration::from_secs(30),
        || {
            let m = rig.stats.scrape()?;
            Ok(
                (m.get("mailward_session_timeouts_total", &[("phase", "write")]) == Some(1.0))
                    .then_some(m),
            )
        },
    )
    .with_context(|| format!("log:\n{}", rig.daemon.log()))?;
    for phase in ["command", "data", "tls"] {
        ensure!(
            m.get("mailward_session_timeouts_total", &[("phase", phase)]) == Some(0.0),
            "the write time-out was counted in phase {phase} too: {:?}",
            m.all("mailward_session_timeouts_total").collect::<Vec<_>>()
        );
    }
    ensure!(
        rig.daemon
            .log()
            .lines()
            .any(|l| l.contains("Session timed out; closing it.") && l.contains("phase=write")),
        "no log line for the write time-out:\n{}",
        rig.daemon.log()
    );
    let file = flatten_json(&rig.stats.write_file(&rig.daemon)?)?;
    ensure!(
        file.get("mailward_session_timeouts_total{write}") == Some(&1.0),
        "the stats file: {:?}",
        file.iter()
            .filter(|(k, _)| k.starts_with("mailward_session_timeouts_total"))
            .collect::<Vec<_>>()
    );
    drop(s);
    Ok(())
}

/// A quarantine copy that cannot be written (here a read-only file
/// system over the quarantine's directory: as root, a mode would not stop
/// the write) refuses its message with 451, and was only a log line. It is
/// counted in `mailward_store_write_errors_total{store="quarantine"}`, and
/// `mailward status` says which store, since when, why and what to do,
/// until a copy is written again.
#[test]
fn a_quarantine_that_cannot_write_is_counted_and_a_status_problem() -> Result<()> {
    use mailward_e2e::samples::infected_message;
    use mailward_e2e::tmpfs::Tmpfs;
    let rig = Rig::start("stats-store-errors", |c| {
        c.set_list("policy", "quarantine", &["av/infected"])
            .set_list("policy", "block", &["av/infected"])
            .set_str("timeouts", "scan_in_session", "30s")
    })?;
    let errors = |m: &Metrics| {
        (
            m.get(
                "mailward_store_write_errors_total",
                &[("store", "quarantine")],
            ),
            m.get("mailward_store_write_errors_total", &[("store", "archive")]),
        )
    };
    let fresh = errors(&rig.stats.scrape()?);
    ensure!(
        fresh == (Some(0.0), Some(0.0)),
        "a fresh gateway: {fresh:?}"
    );
    let store = rig.dir.path().join("data").join("quarantine");
    let disk = Tmpfs::mount(&store, "1m")?;
    let out = std::process::Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(&disk.path)
        .output()?;
    ensure!(
        out.status.success(),
        "remount read-only: {}",
        output_text(&out)
    );
    let message = infected_message("for a read-only quarantine", "b-ro")?;
    let mut c = SmtpClient::connect_ok(rig.daemon.port)?;
    c.ehlo("client.test")?;
    let r = c.send_mail("alice@sender.test", &["user@example.com"], &message)?;
    c.quit();
    ensure!(
        r.code == 451,
        "the quarantine cannot be written: want 451, got {r}"
    );
    let m = wait_until("the failed copy counted", Duration::from_secs(10), || {
        let m = rig.stats.scrape()?;
        Ok((errors(&m).0 == Some(1.0)).then_some(m))
    })
    .with_context(|| format!("log:\n{}", rig.daemon.log()))?;
    ensure!(errors(&m).1 == Some(0.0), "archive: {:?}", errors(&m));
    let status = rig.daemon.cli_ok(&["status"])?;
    let problem = status
        .lines()
        .find(|l| l.contains("The quarantine cannot write its copies at "))
        .with_context(|| format!("no problem for the quarantine in status:\n{status}"))?;
    for want in [
        "Read-only file system",
        "refused with 451 4.3.0",
        &format!("Free space on the file system of {}", store.display()),
        "this clears at the next copy written",
    ] {
        ensure!(problem.contains(want), "`{want}` missing from: {problem}");
    }
    // The NMS hears of it (the watcher looks every 10 s) ...
    notified(
        &rig.daemon,
        "mwProductError",
        "the quarantine cannot write its copies",
    )?;
    // Writable again: the next copy is written, the problem is gone, the
    // count stays.
    drop(disk);
    send_infected_ok(rig.daemon.port, &message)?;
    let status = rig.daemon.cli_ok(&["status"])?;
    ensure!(
        !status.contains("cannot write its copies"),
        "the problem stays after a copy was written:\n{status}"
    );
    ensure!(
        errors(&rig.stats.scrape()?) == (Some(1.0), Some(0.0)),
        "after a copy was written"
    );
    // ... and the log says so once, as it said the failure (walkAM 5).
    let log = rig.daemon.full_log();
    let again: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("writes its copies again"))
        .collect();
    ensure!(
        again.len() == 1
            && again[0].contains("INFO policy: The quarantine writes its copies again.")
            && again[0].contains("failed_copies=1"),
        "want one INFO line for the quarantine written again, got {again:?}"
    );
    // ... and of its end, so that it can close the alarm.
    notified(
        &rig.daemon,
        "mwProductErrorCleared",
        "the quarantine writes its copies again\"",
    )?;
    Ok(())
}

/// Waits (30 s: the watcher that raises store faults looks every 10 s)
/// for the log line of the SNMP notification `name` whose detail starts
/// with `detail`.
fn notified(daemon: &Daemon, name: &str, detail: &str) -> Result<()> {
    let line = format!("SNMP notification raised. notification={name} detail=\"{detail}");
    wait_until(
        &format!("{name}: {detail}"),
        Duration::from_secs(30),
        || Ok(daemon.full_log().contains(&line).then_some(())),
    )
    .with_context(|| format!("log:\n{}", daemon.log()))
}

/// Sends `message` and wants its 250.
fn send_infected_ok(port: u16, message: &[u8]) -> Result<String> {
    let mut c = SmtpClient::connect_ok(port)?;
    c.ehlo("client.test")?;
    let id = c.send_mail_ok("alice@sender.test", &["user@example.com"], message)?;
    c.quit();
    Ok(id)
}
