//! The policy engine end to end (issue "policy engine"): per-recipient
//! plans for recipients in different groups, quarantine through the CLI,
//! notifications from templates, subject marks, the archive, a kill -9
//! while quarantining, and a `[::]` listener's relay check for IPv4
//! clients. Every check is what a user sees: the sink, the CLI, /metrics.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use mailward_e2e::failures::Failures;
use mailward_e2e::samples::infected_message;
use mailward_e2e::stats::StatsSetup;
use mailward_e2e::*;

/// A message with the EICAR test file zipped, and a harmless note.
fn infected(subject: &str) -> Result<Vec<u8>> {
    infected_message(subject, "b-policy")
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn send(port: u16, from: &str, rcpts: &[&str], message: &[u8]) -> Result<String> {
    let mut c = SmtpClient::connect_ok(port)?;
    c.ehlo("client.test")?;
    c.send_mail_ok(from, rcpts, message)
}

/// `mailward quarantine list --json`: one object per line.
fn quarantine_list(d: &Daemon, extra: &[&str]) -> Result<Vec<serde_json::Value>> {
    let mut args = vec!["quarantine", "list", "--json"];
    args.extend_from_slice(extra);
    let out = d.cli_ok(&args)?;
    out.lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("not JSON: {l}")))
        .collect()
}

#[test]
fn recipients_in_two_groups_get_their_own_plans() -> Result<()> {
    let stats_dir = TestDir::new("stats")?;
    let stats = StatsSetup::new(stats_dir.path());
    let gw = Gateway::start("policy-groups", |c| {
        stats
            .apply(c)
            .set_list("group.strict", "recipients", &["*@strict.example.com"])
            .set_list("group.strict", "block", &["av/infected"])
            .set_list("group.lenient", "recipients", &["*@lenient.example.com"])
            .set_str("group.lenient", "action_infected", "placeholder")
    })?;
    let mut f = Failures::default();
    let id = send(
        gw.port(),
        "alice@sender.test",
        &[
            "user@example.com",
            "boss@strict.example.com",
            "ann@lenient.example.com",
        ],
        &infected("three groups")?,
    )?;
    gw.sink.wait_for_count(2, DELIVERY_TIMEOUT)?;
    thread::sleep(Duration::from_millis(500));
    let delivered: Vec<SinkMessage> = gw.sink.messages()?;
    f.check(delivered.len() == 2, || {
        format!(
            "{} messages at the sink, want 2 (one group blocks)",
            delivered.len()
        )
    });
    let by_rcpt: BTreeMap<String, &SinkMessage> = delivered
        .iter()
        .flat_map(|m| m.recipients().into_iter().map(move |r| (r, m)))
        .collect();
    f.check(!by_rcpt.contains_key("boss@strict.example.com"), || {
        "the strict group blocks: boss gets nothing".into()
    });
    match (
        by_rcpt.get("user@example.com"),
        by_rcpt.get("ann@lenient.example.com"),
    ) {
        (Some(user), Some(ann)) => {
            f.check(user.recipients().len() == 1, || {
                format!(
                    "the default group's copy is for user only: {:?}",
                    user.recipients()
                )
            });
            f.check(!contains(user.message.as_bytes(), b"invoice.zip\""), || {
                "default group: the infected part is removed".into()
            });
            f.check(
                ann.message.contains("Mailward replaced \"invoice.zip\""),
                || "lenient group: the part is replaced by a notice".into(),
            );
            // One message, two copies: both carry its queue ID (the copy
            // is queued as ID.N, which the log names).
            f.check(
                user.queue_ids().contains(&id) && ann.queue_ids().contains(&id),
                || {
                    format!(
                        "copies of {id}: {:?} {:?}",
                        user.queue_ids(),
                        ann.queue_ids()
                    )
                },
            );
            f.check(
                gw.daemon.full_log().contains(&format!("copy={id}.")),
                || "the log names the group's own copy".into(),
            );
            for m in [user, ann] {
                f.check(
                    m.header("X-Mailward-AV")
                        .is_some_and(|h| h.starts_with("infected")),
                    || "both copies carry the verdict".into(),
                );
            }
        }
        _ => f.push("user and ann must both get a copy"),
    }
    // Counted once per message, once per group; one raw record per recipient.
    let m = stats.scrape()?;
    f.check(
        m.value("mailward_av_results_total", &[("status", "infected")])? == 1.0,
        || "the verdict is counted once for the message".into(),
    );
    f.check(
        m.value("mailward_messages_blocked_total", &[])? == 1.0,
        || "one group blocked".into(),
    );
    let json = stats.write_file(&gw.daemon)?;
    // Each group counts the message once, with what its own plan did: all
    // three found the virus, only strict blocked it. /metrics and the stats
    // file say the same.
    for (g, blocked) in [("default", 0), ("strict", 1), ("lenient", 0)] {
        for (family, want) in [
            ("mailward_group_messages_total", 1),
            ("mailward_group_infected_total", 1),
            ("mailward_group_spam_total", 0),
            ("mailward_group_refused_total", 0),
            ("mailward_group_blocked_total", blocked),
            ("mailward_group_quarantined_total", 0),
        ] {
            f.check(json["messages"][family][g].as_u64() == Some(want), || {
                format!(
                    "stats file: {family} of group {g} should be {want}: {}",
                    json["messages"][family]
                )
            });
            let scraped = m.value(family, &[("group", g)]).ok();
            f.check(scraped == Some(want as f64), || {
                format!("/metrics: {family}{{group=\"{g}\"}} = {scraped:?}, want {want}")
            });
        }
    }
    let raw = stats.raw_lines()?;
    let groups: Vec<(String, String)> = raw
        .iter()
        .map(|r| (r.recipient.clone(), r.group.clone()))
        .collect();
    f.check(raw.len() == 3, || format!("raw records {groups:?}"));
    f.check(
        groups.contains(&("boss@strict.example.com".into(), "strict".into())),
        || format!("raw records {groups:?}"),
    );
    f.finish(|| gw.daemon.log())
}

#[test]
fn a_message_blocked_for_two_groups_counts_once_and_in_each_group() -> Result<()> {
    let stats_dir = TestDir::new("stats")?;
    let stats = StatsSetup::new(stats_dir.path());
    let gw = Gateway::start("policy-two-blocks", |c| {
        stats
            .apply(c)
            .set_list("policy", "block", &["av/infected"])
            .set_list("group.strict", "recipients", &["*@strict.example.com"])
            .set_list("group.strict", "block", &["av/infected"])
    })?;
    let mut f = Failures::default();
    send(
        gw.port(),
        "alice@sender.test",
        &["user@example.com", "boss@strict.example.com"],
        &infected("blocked twice")?,
    )?;
    let blocked = |m: &mailward_e2e::stats::Metrics, g: &str| {
        m.get("mailward_group_blocked_total", &[("group", g)])
    };
    let m = wait_until("both groups to block", Duration::from_secs(10), || {
        let m = stats.scrape()?;
        Ok(
            (blocked(&m, "default") == Some(1.0) && blocked(&m, "strict") == Some(1.0))
                .then_some(m),
        )
    })?;
    // One message: counted once gateway-wide, once in each group.
    let total = m.value("mailward_messages_blocked_total", &[])?;
    f.check(total == 1.0, || {
        format!("mailward_messages_blocked_total = {total}, want 1 for one message blocked in two groups")
    });
    f.check(gw.sink.count() == 0, || "nothing is delivered".into());
    f.finish(|| gw.daemon.log())
}

/// walkH: a message answered 451 because its quarantine copy could not be
/// written was counted as received (and its virus detected) although the
/// client had to send it again; the retry counted it a second time.
#[test]
fn a_message_answered_451_is_counted_when_it_comes_again_once() -> Result<()> {
    let stats_dir = TestDir::new("stats")?;
    let stats = StatsSetup::new(stats_dir.path());
    let gw = Gateway::start("policy-451-counted", |c| {
        stats
            .apply(c)
            .set_list("policy", "quarantine", &["av/infected"])
            .set_list("policy", "block", &["av/infected"])
            .set_str("timeouts", "scan_in_session", "30s")
    })?;
    let store = gw.config.data_dir().join("quarantine");
    let aside = gw.config.data_dir().join("quarantine.aside");
    std::fs::rename(&store, &aside)?;
    std::fs::write(&store, b"not a directory")?;
    let message = infected("451 then 250")?;
    let mut c = SmtpClient::connect_ok(gw.port())?;
    c.ehlo("client.test")?;
    let r = c.send_mail("alice@sender.test", &["user@example.com"], &message)?;
    c.quit();
    let mut f = Failures::default();
    f.check(r.code == 451, || {
        format!("the quarantine cannot be written: want 451, got {r}")
    });
    let counted = |m: &mailward_e2e::stats::Metrics| -> Result<(f64, f64, f64)> {
        Ok((
            m.value("mailward_messages_received_total", &[])?,
            m.value("mailward_viruses_detected_total", &[])?,
            m.value(
                "mailward_messages_rejected_total",
                &[("reason", "tempfail")],
            )?,
        ))
    };
    let m = wait_until("the 451 to be counted", Duration::from_secs(10), || {
        let m = stats.scrape()?;
        Ok((m.get(
            "mailward_messages_rejected_total",
            &[("reason", "tempfail")],
        ) == Some(1.0))
        .then_some(m))
    })?;
    let after_451 = counted(&m)?;
    f.check(after_451 == (0.0, 0.0, 1.0), || {
        format!("after the 451 (received, viruses, tempfail) = {after_451:?}, want (0, 0, 1)")
    });
    // walkAD: the log said "Message accepted." for the message the client
    // was answered 451 for. It was not accepted, and the log says so.
    let log = gw.daemon.log();
    let id = log
        .lines()
        .find(|l| l.contains("the message is refused with 451 4.3.0 and not kept"))
        .and_then(|l| l.split("queue_id=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .with_context(|| format!("no line says the message is refused with 451:\n{log}"))?;
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(&format!("queue_id={id}")))
        .collect();
    f.check(
        !lines.iter().any(|l| l.contains("Message accepted.")),
        || format!("a message answered 451 is not logged as accepted: {lines:#?}"),
    );
    f.check(
        lines
            .iter()
            .any(|l| l.contains("Message checked.") && l.contains("accepted=false")),
        || format!("its verdict is logged with accepted=false: {lines:#?}"),
    );
    std::fs::remove_file(&store)?;
    std::fs::rename(&aside, &store)?;
    send(
        gw.port(),
        "alice@sender.test",
        &["user@example.com"],
        &message,
    )?;
    let m = wait_until("the retry to be counted", Duration::from_secs(10), || {
        let m = stats.scrape()?;
        Ok((m.get("mailward_messages_quarantined_total", &[]) == Some(1.0)).then_some(m))
    })?;
    let after_retry = counted(&m)?;
    f.check(after_retry == (1.0, 1.0, 1.0), || {
        format!("after the retry (received, viruses, tempfail) = {after_retry:?}, want (1, 1, 1)")
    });
    f.finish(|| gw.daemon.log())
}

#[test]
fn quarantine_list_show_release_remove_and_purge() -> Result<()> {
    let stats_dir = TestDir::new("stats")?;
    let stats = StatsSetup::new(stats_dir.path());
    let gw = Gateway::start("policy-quarantine", |c| {
        stats
            .apply(c)
            .set_list("policy", "quarantine", &["av/infected"])
            .set_list("policy", "block", &["av/infected"])
    })?;
    let mut f = Failures::default();
    let sent = infected("for the quarantine")?;
    let id = send(gw.port(), "alice@sender.test", &["bob@example.com"], &sent)?;
    let list = quarantine_list(&gw.daemon, &[])?;
    ensure!(list.len() == 1, "one entry: {list:?}");
    let e = &list[0];
    for key in [
        "id",
        "queue_id",
        "received",
        "sender",
        "recipients",
        "statuses",
        "reason",
    ] {
        f.check(!e[key].is_null(), || format!("`{key}` in {e}"));
    }
    f.check(
        e["queue_id"] == id.as_str() && e["id"] == id.as_str(),
        || format!("{e}"),
    );
    f.check(e["reason"] == "av/infected", || format!("{e}"));
    f.check(
        quarantine_list(&gw.daemon, &["--status", "as/spam"])?.is_empty(),
        || "--status filters".into(),
    );
    f.check(
        quarantine_list(&gw.daemon, &["--status", "av/all", "--since", "1h"])?.len() == 1,
        || "--status av/all --since 1h".into(),
    );
    // A filter that leaves nothing does not call the quarantine empty.
    let out = gw
        .daemon
        .cli_ok(&["quarantine", "list", "--status", "as/spam"])?;
    f.check(
        out == "No entry matches the filter; the quarantine holds 1 entry in all.\n",
        || format!("list --status as/spam: {out}"),
    );
    // A bad --status is a usage error like a bad --since, with the list.
    for (flag, value) in [("--status", "as/nonsense"), ("--since", "soon")] {
        let out = gw.daemon.cli(&["quarantine", "list", flag, value])?;
        let err = String::from_utf8_lossy(&out.stderr);
        f.check(out.status.code() == Some(2) && err.contains(value), || {
            format!("list {flag} {value}: {:?} {err}", out.status.code())
        });
        if flag == "--status" {
            f.check(
                err.contains("av/infected") && err.contains("as/all"),
                || format!("the valid statuses are listed: {err}"),
            );
        }
    }
    let shown = gw.daemon.cli_ok(&["quarantine", "show", &id])?;
    f.check(
        shown.contains(&format!("Queue ID:   {id}")) && shown.contains("Reason:     av/infected"),
        || format!("show: {shown}"),
    );
    let raw = gw.daemon.cli_ok(&["quarantine", "show", &id, "--raw"])?;
    f.check(raw.ends_with(&*String::from_utf8_lossy(&sent)), || {
        "show --raw: the message as received".into()
    });
    f.check(gw.sink.count() == 0, || "blocked: nothing delivered".into());
    // A --to that is not one mailbox is refused before anything is sent:
    // accepted, it would bounce the released virus to the sender.
    for bad in [
        "@reject.test",
        "a@",
        "a@b@c",
        "a@example.com,b@example.com",
        "<>",
    ] {
        let out = gw
            .daemon
            .cli(&["quarantine", "release", &id, "--to", bad])?;
        let err = String::from_utf8_lossy(&out.stderr);
        f.check(
            out.status.code() == Some(2) && err.contains(&format!("`{bad}`")),
            || format!("release --to {bad}: {:?} {err}", out.status.code()),
        );
    }
    let listed = quarantine_list(&gw.daemon, &[])?;
    f.check(listed.len() == 1 && listed[0]["released"].is_null(), || {
        format!("refused releases leave the entry as it was: {listed:?}")
    });
    // Release: to its recipient, then to another address. Four
    // administrators at once on one ticket release it once (walkBQ F1:
    // the check and the note were apart, and all four delivered it).
    let outs = thread::scope(|scope| {
        let runs: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| gw.daemon.cli(&["quarantine", "release", &id])))
            .collect();
        runs.into_iter()
            .map(|r| {
                r.join()
                    .map_err(|_| anyhow::anyhow!("a release thread panicked"))?
            })
            .collect::<Result<Vec<_>>>()
    })?;
    let released: Vec<String> = outs
        .iter()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .collect();
    f.check(
        released.len() == 1 && released[0].starts_with(&format!("Released {id} as queue ID ")),
        || format!("one of four concurrent releases: {released:?}"),
    );
    for o in outs.iter().filter(|o| !o.status.success()) {
        let err = String::from_utf8_lossy(&o.stderr);
        f.check(
            o.status.code() == Some(1) && err.contains("was already released"),
            || format!("the others are refused: {:?} {err}", o.status.code()),
        );
    }
    let out = gw.daemon.cli_ok(&[
        "quarantine",
        "release",
        &id,
        "--to",
        "analyst@example.com",
        "--learn-ham",
    ])?;
    // What became of it, how to follow it, where a failure goes (walkAP
    // F2, F8), and what it holds (walkAX 2). A virus is not learnt as ham
    // (walkBQ 7).
    f.check(
        out.contains(" to analyst@example.com.\nIt is queued for delivery: follow it with `mailward queue show ")
            && out.contains(
                "; a failure is reported to postmaster@mw.test (headers only; the entry holds av/infected, so not to the original sender).\n",
            )
            && out.contains(
                "\nWarning: it holds av/infected: infected EICAR_Test_File in invoice.zip/eicar.com; it is delivered as it came, without a verdict header and not scanned again.\n",
            )
            && out.ends_with(&format!(
                "\nNot learnt as ham: it holds an anti-virus finding (see the warning), which is no spam false positive; `mailward spam learn --ham FILE --config {}` teaches a file if you mean it.\n",
                gw.daemon.config_path.display()
            )),
        || out.clone(),
    );
    let delivered = gw.sink.wait_for_count(2, DELIVERY_TIMEOUT)?;
    for m in &delivered {
        // Byte for byte what was quarantined, apart from the trace header
        // the release added on top (the sink's dump has LF line ends).
        let body = mail::strip_added_headers(m.message.as_bytes());
        f.check(body == raw.replace("\r\n", "\n").as_bytes(), || {
            format!(
                "released copy differs from the entry:\n--- released (stripped)\n{}\n--- entry\n{raw}",
                String::from_utf8_lossy(&body)
            )
        });
        // Failures of a released virus are reported to the postmaster
        // (walkAP F8): the trace header keeps the original sender.
        f.check(
            m.message.starts_with(&format!(
                "Received: from quarantine (entry {id}; original sender <alice@sender.test>)"
            )) && m.sender() == "postmaster@mw.test",
            || {
                format!(
                    "trace header and return path: {} {}",
                    m.mail_args,
                    &m.message[..160.min(m.message.len())]
                )
            },
        );
    }
    let rcpts: HashSet<String> = delivered.iter().flat_map(|m| m.recipients()).collect();
    f.check(
        rcpts == HashSet::from(["bob@example.com".into(), "analyst@example.com".into()]),
        || format!("{rcpts:?}"),
    );
    f.check(
        stats
            .scrape()?
            .value("mailward_quarantine_releases_total", &[])?
            == 2.0,
        || "two releases counted".into(),
    );
    let listed = quarantine_list(&gw.daemon, &[])?;
    f.check(
        listed[0]["released"]
            .as_array()
            .is_some_and(|r| r.len() == 2),
        || format!("the entry notes its releases: {}", listed[0]),
    );
    // Remove, purge.
    gw.daemon.cli_ok(&["quarantine", "remove", &id])?;
    f.check(quarantine_list(&gw.daemon, &[])?.is_empty(), || {
        "removed".into()
    });
    send(gw.port(), "alice@sender.test", &["bob@example.com"], &sent)?;
    thread::sleep(Duration::from_millis(2100));
    let out = gw
        .daemon
        .cli_ok(&["quarantine", "purge", "--older-than", "1s"])?;
    f.check(out.starts_with("1 entr"), || out.clone());
    f.check(quarantine_list(&gw.daemon, &[])?.is_empty(), || {
        "purged".into()
    });
    let bad = gw.daemon.cli(&["quarantine", "show", "../../etc/passwd"])?;
    f.check(!bad.status.success(), || "a path is not an entry ID".into());
    f.finish(|| gw.daemon.log())
}

/// logrotate's `log reopen`, monitoring's `status` and the quarantine
/// commands still reach a daemon whose file on disk it refused on SIGHUP
/// (it runs on the configuration it loaded before), and say in one line
/// what is wrong with the file.
#[test]
fn admin_commands_reach_the_daemon_when_its_file_no_longer_loads() -> Result<()> {
    let mut gw = Gateway::start("policy-broken-file", |c| {
        c.set_list("policy", "quarantine", &["av/infected"])
            .set_list("policy", "block", &["av/infected"])
    })?;
    let mut f = Failures::default();
    let id = send(
        gw.port(),
        "alice@sender.test",
        &["bob@example.com"],
        &infected("before the edit")?,
    )?;
    let broken = gw.config.render() + "\n[no_such_section]\nno_such_key = 1\n";
    gw.daemon.refuse_reload_of(&broken, "no_such_section")?;
    let file = gw.daemon.config_path().display().to_string();
    for args in [
        &["status", "--json"][..],
        &["log", "reopen"],
        &["quarantine", "list", "--json"],
    ] {
        let out = gw.daemon.cli(args)?;
        let err = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        f.check(out.status.success(), || {
            format!("`{}` exits 0 with a broken file: {err}", args.join(" "))
        });
        f.check(
            err.lines().count() == 1
                && err.starts_with(&format!("mailward: warning: {file}:"))
                && err.contains("no_such_section")
                && err.contains("keeps the configuration it loaded before"),
            || {
                format!(
                    "`{}`: one warning line naming the problem: {err}",
                    args.join(" ")
                )
            },
        );
        if args[0] == "quarantine" {
            f.check(stdout.contains(&id), || {
                format!("the entry is listed: {stdout}")
            });
        }
    }
    let check = gw.daemon.cli(&["check-config"])?;
    f.check(check.status.code() == Some(1), || {
        "check-config still refuses the file".into()
    });
    f.finish(|| gw.daemon.log())
}

#[test]
fn notifications_reach_the_admin_and_the_recipients() -> Result<()> {
    let stats_dir = TestDir::new("stats")?;
    let stats = StatsSetup::new(stats_dir.path());
    let dir = TestDir::new("policy-notify-templates")?;
    // A group with its own admin template.
    std::fs::write(
        dir.join("admin.txt"),
        "Subject: Custom {{ status }} for {{ queue_id }}\n\nGroup {{ group }} saw {{ findings | length }} finding(s).\n",
    )?;
    let templates = dir.path().display().to_string();
    let gw = Gateway::start("policy-notify", |c| {
        stats
            .apply(c)
            .set_list("policy", "notify_admin", &["av/infected"])
            .set_list("policy", "notify_recipients", &["av/infected"])
            .set_list("policy", "notify_sender", &["av/infected"])
            .set_list("policy", "quarantine", &["av/infected"])
            .set_str("policy", "admin_address", "admin@example.com")
            .set_list("group.custom", "recipients", &["*@custom.example.com"])
            .set_str("group.custom", "notify_templates", &templates)
    })?;
    let mut f = Failures::default();
    let id = send(
        gw.port(),
        "alice@sender.test",
        &["bob@example.com"],
        &infected("hello")?,
    )?;
    // The message, and notices to the admin, the recipient and the sender.
    let all = gw.sink.wait_for_count(4, DELIVERY_TIMEOUT)?;
    let to = |who: &str, subject: &str| {
        all.iter().find(|m| {
            m.recipients().contains(&who.to_string())
                && m.header("Subject").is_some_and(|s| s.contains(subject))
        })
    };
    match to("admin@example.com", "[Mailward] av/infected") {
        Some(m) => {
            f.check(m.sender().is_empty(), || "notices come from <>".into());
            f.check(m.body().contains(&format!("Queue ID:   {id}")), || {
                m.body().to_string()
            });
            f.check(m.body().contains("EICAR"), || m.body().to_string());
            // The hint works on a host where the command would not find
            // the daemon's file by itself (walkO 14).
            let hint = format!(
                "(mailward quarantine show {id} --config {})",
                gw.daemon.config_path().display()
            );
            f.check(m.body().contains(&hint), || {
                format!("{hint} in the admin notice:\n{}", m.body())
            });
            f.check(
                m.header("Auto-Submitted").as_deref() == Some("auto-generated"),
                || "Auto-Submitted".into(),
            );
        }
        None => f.push("no admin notice"),
    }
    f.check(
        to("bob@example.com", "A message for you was checked").is_some(),
        || "no recipient notice".into(),
    );
    f.check(
        to("alice@sender.test", "not delivered as sent").is_some(),
        || "no sender notice (asked for av/infected)".into(),
    );
    // The group's own template.
    let id2 = send(
        gw.port(),
        "alice@sender.test",
        &["carol@custom.example.com"],
        &infected("custom")?,
    )?;
    let all = gw.sink.wait_for_count(8, DELIVERY_TIMEOUT)?;
    let custom = all
        .iter()
        .find(|m| m.header("Subject").as_deref() == Some(&format!("Custom av/infected for {id2}")));
    match custom {
        Some(m) => f.check(m.body().contains("Group custom saw 1 finding(s)."), || {
            m.body().to_string()
        }),
        None => f.push("the custom template was not used"),
    }
    let m = stats.scrape()?;
    for (to, n) in [("admin", 2.0), ("recipients", 2.0), ("sender", 2.0)] {
        let got = m.value("mailward_notifications_sent_total", &[("to", to)])?;
        f.check(got == n, || format!("notifications to {to}: {got}"));
    }
    f.finish(|| gw.daemon.log())
}

/// A template is read when the configuration is loaded: editing it
/// afterwards changes nothing until a reload accepts it. A broken edit
/// that SIGHUP refuses ("the running configuration stays") must not be
/// used by the next notice, nor drop it (walkO 1).
#[test]
fn a_template_edit_that_a_reload_refused_is_not_used() -> Result<()> {
    let dir = TestDir::new("policy-template-reload")?;
    let good = "Subject: Checked for you: {{ status }} {{ quarantine_id }}\n\nHello {{ recipients | join(\", \") }}.\n";
    std::fs::write(dir.join("recipients.txt"), good)?;
    let templates = dir.path().display().to_string();
    let mut gw = Gateway::start("policy-template-reload", |c| {
        c.set_list("policy", "notify_recipients", &["av/infected"])
            .set_list("policy", "quarantine", &["av/infected"])
            .set_str("policy", "notify_templates", &templates)
    })?;
    // A typo in a variable: the reload is refused...
    std::fs::write(
        dir.join("recipients.txt"),
        good.replace("quarantine_id", "quarantine_nr"),
    )?;
    gw.daemon.sighup()?;
    wait_until("the reload to be refused", Duration::from_secs(30), || {
        Ok(gw
            .daemon
            .full_log()
            .contains("Reload refused")
            .then_some(()))
    })?;
    ensure!(gw.daemon.is_running(), "the daemon stopped");
    // ... and the running configuration's template is the one used.
    let id = send(
        gw.port(),
        "alice@sender.test",
        &["bob@example.com"],
        &infected("after a refused reload")?,
    )?;
    let all = gw.sink.wait_for_count(2, DELIVERY_TIMEOUT)?;
    let notice = all.iter().find(|m| {
        m.header("Subject")
            .is_some_and(|s| s.starts_with("Checked for you"))
    });
    match notice {
        Some(m) => ensure!(
            m.header("Subject").as_deref() == Some(&format!("Checked for you: av/infected {id}"))
                && m.body().contains("Hello bob@example.com."),
            "the notice: {:?}\n{}",
            m.header("Subject"),
            m.body()
        ),
        None => anyhow::bail!(
            "no recipient notice from the running template; log:\n{}",
            gw.daemon.log()
        ),
    }
    ensure!(
        !gw.daemon.full_log().contains("Cannot make a notification"),
        "{}",
        gw.daemon.log()
    );
    Ok(())
}

#[test]
fn a_broken_template_is_refused_by_check_config_with_file_and_line() -> Result<()> {
    let dir = TestDir::new("policy-bad-template")?;
    std::fs::write(
        dir.join("admin.txt"),
        "Subject: x\n\nline three {{ nobody }}\n",
    )?;
    std::fs::write(dir.join("sender.txt"), "Subject: y\n\n{% if status %}\n")?;
    // Compiles, but no notice could be made from it (walkO 2).
    std::fs::write(
        dir.join("recipients.txt"),
        "Subject: {{ status | upcase }}\n\nHello\n",
    )?;
    let config = Config::new(dir.path())
        .route_to_port("*", free_port())
        .set_str(
            "policy",
            "notify_templates",
            &dir.path().display().to_string(),
        );
    let daemon = Daemon::new(&config)?;
    let out = daemon.cli(&["check-config"])?;
    let text = tools::output_text(&out);
    ensure!(
        out.status.code() == Some(1),
        "check-config must refuse: {text}"
    );
    let admin = dir.join("admin.txt").display().to_string();
    let sender = dir.join("sender.txt").display().to_string();
    ensure!(
        text.contains(&format!("{admin}:3: unknown variable `nobody`")),
        "{text}"
    );
    ensure!(
        text.contains(&format!("{sender}:")) && text.contains("template syntax"),
        "{text}"
    );
    let recipients = dir.join("recipients.txt").display().to_string();
    ensure!(
        text.contains(&format!(
            "{recipients}:1: cannot be rendered with sample values"
        )) && text.contains("upcase"),
        "{text}"
    );
    Ok(())
}

#[test]
fn a_subject_mark_survives_an_encoded_subject() -> Result<()> {
    let gw = Gateway::start("policy-subject", |c| {
        c.set_list("policy", "mark_subject", &["av/infected"]).set(
            "policy",
            "subject_prefix",
            r#"{ "av/infected" = "[VIRUS]" }"#,
        )
    })?;
    let message = String::from_utf8(infected("=?UTF-8?B?w5xiZXJ3ZWlzdW5n?=")?)?;
    send(
        gw.port(),
        "alice@sender.test",
        &["bob@example.com"],
        message.as_bytes(),
    )?;
    let m = gw.sink.wait_for_count(1, DELIVERY_TIMEOUT)?.remove(0);
    let parsed = mail_parser::MessageParser::default()
        .parse(m.message.as_bytes())
        .context("parse")?;
    ensure!(
        parsed.subject() == Some("[VIRUS] Überweisung"),
        "subject: {:?}",
        parsed.subject()
    );
    // Nothing else of the header changed.
    for h in ["From", "To", "Date", "Message-ID"] {
        ensure!(
            m.header(h) == mail::header(&message, h),
            "{h} changed: {:?}",
            m.header(h)
        );
    }
    Ok(())
}

#[test]
fn the_archive_keeps_what_came_in_and_what_went_out() -> Result<()> {
    let gw = Gateway::start("policy-archive", |c| {
        c.set("archive", "incoming", "true")
            .set("archive", "outgoing", "true")
    })?;
    let msg = b"From: a@sender.test\r\nSubject: keep me\r\n\r\nArchive this.\r\n";
    let id = send(gw.port(), "a@sender.test", &["bob@example.com"], msg)?;
    gw.sink.wait_for_count(1, DELIVERY_TIMEOUT)?;
    let list = wait_until(
        "both copies in the archive",
        Duration::from_secs(10),
        || {
            let out = gw.daemon.cli_ok(&["archive", "list", "--json"])?;
            let l: Vec<serde_json::Value> = out
                .lines()
                .map(serde_json::from_str)
                .collect::<Result<_, _>>()?;
            Ok((l.len() == 2).then_some(l))
        },
    )?;
    let dirs: HashSet<&str> = list
        .iter()
        .filter_map(|e| e["direction"].as_str())
        .collect();
    ensure!(dirs == HashSet::from(["incoming", "outgoing"]), "{list:?}");
    ensure!(
        list.iter().all(|e| e["queue_id"] == id.as_str()),
        "{list:?}"
    );
    // walkI 13: the outgoing copy carries the statuses too, so `--status`
    // finds it (it found incoming copies only).
    for direction in ["--incoming", "--outgoing"] {
        let out = gw.daemon.cli_ok(&[
            "archive", "list", "--json", direction, "--status", "av/clean",
        ])?;
        ensure!(
            out.lines().count() == 1 && out.contains(&id),
            "archive list {direction} --status av/clean: {out}"
        );
    }
    let incoming = gw
        .daemon
        .cli_ok(&["archive", "show", &id, "--raw", "--incoming"])?;
    ensure!(incoming.ends_with("Archive this.\r\n"), "{incoming}");
    let outgoing = gw
        .daemon
        .cli_ok(&["archive", "show", &id, "--raw", "--outgoing"])?;
    ensure!(
        outgoing.starts_with("X-Mailward-AV: clean"),
        "the outgoing copy is as sent, verdict included: {outgoing}"
    );
    // The ID is in both archives: without --incoming or --outgoing, no
    // command guesses which copy is meant.
    for args in [
        &["archive", "send", &id, "--to", "legal@example.com"][..],
        &["archive", "show", &id],
        &["archive", "remove", &id],
    ] {
        let out = gw.daemon.cli(args)?;
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(
            !out.status.success()
                && err.contains(&format!("{id} is in both archives"))
                && err.contains("--incoming or --outgoing"),
            "`{}` is refused: {:?} {err}",
            args.join(" "),
            out.status.code()
        );
    }
    let out = gw.daemon.cli_ok(&["archive", "list", "--json"])?;
    ensure!(out.lines().count() == 2, "nothing removed: {out}");
    ensure!(gw.sink.count() == 1, "nothing sent again");
    gw.daemon.cli_ok(&[
        "archive",
        "send",
        &id,
        "--outgoing",
        "--to",
        "legal@example.com",
    ])?;
    let all = gw.sink.wait_for_count(2, DELIVERY_TIMEOUT)?;
    let sent = all
        .iter()
        .find(|m| m.recipients() == ["legal@example.com"])
        .context("archive send --outgoing")?;
    ensure!(
        sent.message
            .starts_with(&format!("Received: from archive outgoing (entry {id})")),
        "the outgoing copy was sent: {}",
        sent.message
    );
    // Its verdict fields are this gateway's, not a sender's: kept (the
    // delivery stripped them as forged, and the copy went out without
    // X-Mailward-AV).
    ensure!(
        sent.message.contains("\nX-Mailward-AV: clean"),
        "the outgoing copy keeps its verdict: {}",
        sent.message
    );
    // walkV 10: a second send to the same address is a second delivery:
    // refused unless --again says so, as for a quarantine release.
    let send = [
        "archive",
        "send",
        id.as_str(),
        "--outgoing",
        "--to",
        "legal@example.com",
    ];
    let out = gw.daemon.cli(&send)?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success()
            && err.contains(&format!("{id} was already sent"))
            && err.contains("give --again"),
        "a second send is refused: {:?} {err}",
        out.status.code()
    );
    let again = gw.daemon.cli_ok(&[&send[..], &["--again"]].concat())?;
    ensure!(
        again.contains("again as queue ID") && again.contains("to legal@example.com."),
        "archive send --again: {again}"
    );
    gw.sink.wait_for_count(3, DELIVERY_TIMEOUT)?;
    gw.daemon
        .cli_ok(&["archive", "purge", "--older-than", "1d"])?;
    Ok(())
}

#[test]
fn kill_9_while_quarantining_loses_nothing_and_duplicates_no_entry() -> Result<()> {
    let mut gw = Gateway::start("policy-kill9", |c| {
        c.set_list("policy", "quarantine", &["av/infected"])
    })?;
    let accepted: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let message = infected("kill")?;
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (port, accepted, stop, message) =
                (gw.port(), accepted.clone(), stop.clone(), message.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    if let Ok(id) = send(port, "alice@sender.test", &["bob@example.com"], &message)
                    {
                        if let Ok(mut a) = accepted.lock() {
                            a.push(id);
                        }
                    } else {
                        thread::sleep(Duration::from_millis(20));
                    }
                }
            })
        })
        .collect();
    let count = || accepted.lock().map(|a| a.len()).unwrap_or(0);
    for target in [30, 60] {
        wait_until("accepted messages", Duration::from_secs(120), || {
            Ok((count() >= target).then_some(()))
        })?;
        gw.daemon.kill9()?;
        gw.daemon.restart()?;
    }
    wait_until("more accepted", Duration::from_secs(120), || {
        Ok((count() >= 80).then_some(()))
    })?;
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        let _ = c.join();
    }
    let accepted: Vec<String> = accepted.lock().map(|a| a.clone()).unwrap_or_default();
    let delivered = wait_until(
        "every accepted message at the sink",
        Duration::from_secs(120),
        || {
            let ids: HashSet<String> = gw
                .sink
                .messages()?
                .iter()
                .flat_map(|m| m.queue_ids())
                .collect();
            Ok(accepted.iter().all(|id| ids.contains(id)).then_some(ids))
        },
    )?;
    ensure!(
        accepted.iter().all(|id| delivered.contains(id)),
        "lost messages"
    );
    let entries = quarantine_list(&gw.daemon, &[])?;
    let ids: Vec<&str> = entries.iter().filter_map(|e| e["id"].as_str()).collect();
    let unique: HashSet<&str> = ids.iter().copied().collect();
    ensure!(
        ids.len() == unique.len(),
        "duplicate quarantine entries: {ids:?}"
    );
    for id in &accepted {
        ensure!(
            unique.contains(id.as_str()),
            "{id} got a 250 but has no quarantine entry"
        );
    }
    Ok(())
}

#[test]
fn an_any_address_listener_relays_for_ipv4_loopback_clients_only() -> Result<()> {
    for (relay, want) in [("127.0.0.0/8", 250), ("10.0.0.0/8", 554)] {
        let dir = TestDir::new("policy-v6-listener")?;
        let sink = Sink::start(dir.path(), "sink")?;
        let config = Config::new(dir.path()).route_to_port("*", sink.port);
        let any = format!("[\"[::]:{}\"]", config.port);
        let config = config.set("network", "listen_on", &any).set_list(
            "network",
            "relay_networks",
            &[relay],
        );
        let daemon = Daemon::start(&config)?;
        let mut c = SmtpClient::connect_ok(daemon.port)?;
        c.ehlo("client.test")?;
        c.command("MAIL FROM:<a@sender.test>")?.expect_code(250)?;
        let r = c.command("RCPT TO:<someone@elsewhere.test>")?;
        ensure!(
            r.code == want,
            "relay_networks = {relay}: RCPT to another domain got {r}, want {want}"
        );
    }
    Ok(())
}

/// walkI 7: a clean message to two groups that differ only in what they
/// refuse is the same bytes for both: one queue entry, one delivery with
/// both recipients, as policy.md says ("groups that deliver the same bytes
/// share"), and still counted in each group.
#[test]
fn groups_that_deliver_the_same_bytes_share_one_delivery() -> Result<()> {
    let stats_dir = TestDir::new("stats")?;
    let stats = StatsSetup::new(stats_dir.path());
    let gw = Gateway::start("policy-shared-copy", |c| {
        stats
            .apply(c)
            .set_list("group.strict", "recipients", &["*@strict.example.com"])
            .set_list("group.strict", "reject", &["av/infected"])
    })?;
    let mut f = Failures::default();
    let message = b"From: ann@sender.test\r\nTo: user@example.com\r\nSubject: lunch\r\n\
                    Message-ID: <shared@sender.test>\r\nDate: Sat, 05 Dec 2026 07:00:00 +0000\r\n\r\n\
                    Lunch on Thursday?\r\n";
    let id = send(
        gw.port(),
        "ann@sender.test",
        &["user@example.com", "ceo@strict.example.com"],
        message,
    )?;
    gw.sink.wait_for_count(1, DELIVERY_TIMEOUT)?;
    thread::sleep(Duration::from_millis(1500));
    let delivered = gw.sink.messages()?;
    f.check(delivered.len() == 1, || {
        format!("{} deliveries at the sink, want 1", delivered.len())
    });
    if let Some(m) = delivered.first() {
        let mut rcpts = m.recipients();
        rcpts.sort();
        f.check(
            rcpts == ["ceo@strict.example.com", "user@example.com"],
            || format!("one transaction for both recipients: {rcpts:?}"),
        );
        f.check(m.queue_ids().contains(&id), || {
            format!(
                "the shared copy keeps the queue ID {id}: {:?}",
                m.queue_ids()
            )
        });
    }
    let log = gw.daemon.full_log();
    f.check(!log.contains("get their own copy"), || {
        "no group gets its own copy".into()
    });
    f.check(log.contains("share a copy with another group"), || {
        "the log says the copy is shared".into()
    });
    let m = stats.scrape()?;
    for g in ["default", "strict"] {
        let got = m
            .value("mailward_group_messages_total", &[("group", g)])
            .ok();
        f.check(got == Some(1.0), || {
            format!("group {g} still counts the message: {got:?}")
        });
    }
    f.finish(|| gw.daemon.log())
}

/// walkI 5 and 11: the recipients' notice goes to each recipient alone
/// (a Bcc recipient is not shown to the others), the log names each
/// address, and a block for a blacklisted sender names as/blacklisted,
/// not the virus the message also holds.
#[test]
fn each_recipient_is_notified_alone_and_a_block_names_its_cause() -> Result<()> {
    let gw = Gateway::start("policy-notify-alone", |c| {
        c.set_list(
            "policy",
            "notify_recipients",
            &["av/infected", "as/blacklisted"],
        )
        .set_list("policy", "block", &["as/blacklisted"])
        .set_list("spam", "blacklist", &["*@spammer.test"])
    })?;
    let mut f = Failures::default();
    let id = send(
        gw.port(),
        "x@spammer.test",
        &["user@example.com", "secret-bcc@example.com"],
        &infected("bcc test")?,
    )?;
    gw.sink.wait_for_count(2, DELIVERY_TIMEOUT)?;
    thread::sleep(Duration::from_millis(1000));
    let all = gw.sink.messages()?;
    f.check(all.len() == 2, || {
        format!("two notices (the message is blocked), got {}", all.len())
    });
    for (who, other) in [
        ("user@example.com", "secret-bcc@example.com"),
        ("secret-bcc@example.com", "user@example.com"),
    ] {
        match all
            .iter()
            .find(|m| m.recipients().contains(&who.to_string()))
        {
            Some(m) => {
                f.check(m.recipients() == [who], || {
                    format!("{who}'s notice is for {who} alone: {:?}", m.recipients())
                });
                f.check(m.header("To").as_deref() == Some(who), || {
                    format!("To: of {who}'s notice: {:?}", m.header("To"))
                });
                f.check(!m.message.contains(other), || {
                    format!("{who}'s notice names {other}:\n{}", m.message)
                });
                f.check(
                    m.header("Subject").as_deref()
                        == Some("A message for you was checked: as/blacklisted"),
                    || format!("the notice names the cause: {:?}", m.header("Subject")),
                );
            }
            None => f.push(format!("no notice for {who}")),
        }
    }
    let log = gw.daemon.full_log();
    for who in ["user@example.com", "secret-bcc@example.com"] {
        f.check(
            log.lines().any(|l| {
                l.contains("Notification queued.") && l.contains(&format!("address={who}"))
            }),
            || format!("a Notification queued. line for {who}"),
        );
    }
    f.check(
        log.lines().any(|l| {
            l.contains("Message blocked for these recipients")
                && l.contains(&format!("queue_id={id}"))
                && l.contains("status=as/blacklisted")
        }),
        || "the block names as/blacklisted".into(),
    );
    f.finish(|| gw.daemon.log())
}

/// walkL 9: a message refused in the session for a virus logged the
/// refusal and the detection, but not where the virus was: the `Finding.`
/// lines are written as for an accepted message.
#[test]
fn a_message_refused_for_a_virus_logs_where_the_virus_was() -> Result<()> {
    let gw = Gateway::start("policy-refused-findings", |c| {
        c.set_list("policy", "reject", &["av/infected"])
    })?;
    let mut c = SmtpClient::connect_ok(gw.port())?;
    c.ehlo("client.test")?;
    c.command("MAIL FROM:<alice@sender.test>")?
        .expect_code(250)?;
    c.command("RCPT TO:<bob@example.com>")?.expect_code(250)?;
    let reply = c.data(&infected("refused")?)?;
    ensure!(reply.code == 550, "refused in the session: {reply:?}");
    c.quit();
    let finding = wait_until("the finding line", Duration::from_secs(5), || {
        Ok(gw
            .daemon
            .log()
            .lines()
            .find(|l| l.contains("Finding.") && l.contains("EICAR"))
            .map(str::to_string))
    })?;
    ensure!(
        finding.contains("object=") && finding.contains(".zip/"),
        "the finding names the part: {finding}"
    );
    Ok(())
}

/// walkM 1: `mailward stats reset` emptied the alert windows, so zeroing
/// the statistics cleared a raised infected alert at the NMS (a trap with
/// value 0) while the infected mail was still within its minute. The
/// windows count the mail, not the counters.
#[test]
fn a_stats_reset_does_not_clear_a_raised_infected_alert() -> Result<()> {
    let gw = Gateway::start("policy-alert-reset", |c| {
        c.set("snmp", "alert_thresholds", "{ infected_per_minute = 0 }")
    })?;
    send(
        gw.port(),
        "alice@sender.test",
        &["bob@example.com"],
        &infected("outbreak")?,
    )?;
    // A line with the alert, its value and threshold, and its state (other
    // fields may come between them).
    let has = |log: &str, value: u32, state: &str| {
        log.lines().any(|l| {
            l.contains(&format!(
                "alert=infected_per_minute value={value} threshold=0"
            )) && l.contains(&format!("state={state}"))
        })
    };
    wait_until("the raised alert", Duration::from_secs(25), || {
        Ok(has(&gw.daemon.log(), 1, "raised").then_some(()))
    })?;
    gw.daemon.cli_ok(&["stats", "reset"])?;
    // Two alert periods (10 s each) after the reset, well within the minute.
    thread::sleep(Duration::from_secs(21));
    let log = gw.daemon.log();
    ensure!(
        !has(&log, 0, "cleared"),
        "the reset cleared the alert:\n{log}"
    );
    Ok(())
}

/// A plain message, nothing in it to find.
fn note(subject: &str) -> Vec<u8> {
    format!(
        "From: Zed <z@bulk.example.net>\r\nTo: ann@example.com\r\nSubject: {subject}\r\n\
         Date: Mon, 30 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{subject}.n@bulk.example.net>\r\n\r\n\
         The offer we talked about stands until Friday.\r\n"
    )
    .into_bytes()
}

/// walkR 3: with `reject = ["as/blacklisted"]`, mail to a spam trap and a
/// mailbox was refused after DATA while the same mail to the mailbox alone
/// was taken: a list cleaner learnt which address is the trap. Now mail
/// whose blacklisting rests on a trap alone is taken (250) and blocked for
/// every recipient: quarantined where the group quarantines as/blacklisted,
/// dropped where it does not, and the log says why. A sender on the
/// blacklist is still refused.
#[test]
fn a_spam_trap_is_not_told_apart_from_a_mailbox_by_the_reply() -> Result<()> {
    let gw = Gateway::start("policy-trap", |c| {
        c.set_list("spam", "traps", &["trap@example.com"])
            .set_list("spam", "blacklist", &["*@spammer.example"])
            .set_list("policy", "reject", &["as/blacklisted"])
            .set_list("policy", "quarantine", &["as/blacklisted"])
            .set_list("group.managers", "recipients", &["*@managers.example.com"])
            .set_list("group.managers", "reject", &["as/blacklisted"])
            .set_list("group.managers", "quarantine", &[])
    })?;
    let mut f = Failures::default();
    let mut c = SmtpClient::connect_ok(gw.port())?;
    c.ehlo("client.test")?;
    let reply = c.send_mail(
        "z@bulk.example.net",
        &[
            "trap@example.com",
            "ann@example.com",
            "boss@managers.example.com",
        ],
        &note("trapped"),
    )?;
    f.check(reply.code == 250, || {
        format!("taken as mail to the mailboxes alone would be: {reply:?}")
    });
    // A message after it, to the mailbox alone: the only one delivered.
    let control = send(
        gw.port(),
        "z@bulk.example.net",
        &["ann@example.com"],
        &note("control"),
    )?;
    gw.sink.wait_for_count(1, DELIVERY_TIMEOUT)?;
    thread::sleep(Duration::from_millis(500));
    let got = gw.sink.messages()?;
    f.check(
        got.len() == 1 && got[0].queue_ids().contains(&control),
        || {
            format!(
                "only the control message is delivered: {:?}",
                got.iter().map(SinkMessage::queue_ids).collect::<Vec<_>>()
            )
        },
    );
    // The default group quarantines it; managers drop it.
    let list = quarantine_list(&gw.daemon, &[])?;
    f.check(list.len() == 1, || {
        format!("one quarantine entry: {list:?}")
    });
    if let Some(e) = list.first() {
        f.check(
            e["reason"] == "as/blacklisted"
                && e["recipients"].to_string().contains("ann@example.com")
                && !e["recipients"].to_string().contains("boss@"),
            || format!("the default group's copy: {e}"),
        );
    }
    let log = gw.daemon.full_log();
    f.check(
        log.matches("the verdict rests on a spam trap alone")
            .count()
            == 2,
        || "the log says why, for each group that refuses as/blacklisted".into(),
    );
    f.check(!log.contains("Message refused by content policy"), || {
        "nothing refused".into()
    });

    // A listed sender gets its 550, whether a trap is among the recipients
    // or not: the refusal tells nothing about the trap.
    for rcpt in ["ann@example.com", "trap@example.com"] {
        let mut c = SmtpClient::connect_ok(gw.port())?;
        c.ehlo("client.test")?;
        c.command("MAIL FROM:<bulk@spammer.example>")?
            .expect_code(250)?;
        let r = c.command(&format!("RCPT TO:<{rcpt}>"))?;
        f.check(r.code == 550, || {
            format!("a blacklisted sender is refused for {rcpt}: {r:?}")
        });
    }
    f.finish(|| gw.daemon.log())
}

/// A message whose first attachment's name (RFC 2231) holds line breaks
/// and a paragraph of the sender's choosing, and whose second is named in
/// Cyrillic (RFC 2047).
fn names_message() -> Vec<u8> {
    "From: me@example.com\r\nTo: user@example.com\r\nSubject: Invoice\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b-names\"\r\n\r\n\
--b-names\r\nContent-Type: text/plain\r\n\r\nPlease see attached.\r\n\
--b-names\r\nContent-Type: application/octet-stream\r\n\
Content-Disposition: attachment; filename*=UTF-8''invoice%0A%0AIMPORTANT:%20this%20message\
%20is%20held.%20Log%20in%20at%20http:%2F%2Fevil.example%2F%0A%0A.exe\r\n\
Content-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAA=\r\n\
--b-names\r\nContent-Type: application/octet-stream\r\n\
Content-Disposition: attachment; filename=\"=?UTF-8?B?0L/RgNC40LLQtdGCLnNjcg==?=\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nAAAA\r\n--b-names--\r\n"
        .as_bytes()
        .to_vec()
}

/// walkV 1, 3 and 5: an attachment's name is the sender's text. Its line
/// breaks must start no line in the notices "from the postmaster", in
/// the placeholder or in `quarantine show`; the log quotes it, so that it
/// adds no fields; and a placeholder names a Cyrillic file as it is
/// called, not `??????.scr`.
#[test]
fn a_file_name_writes_no_line_of_its_own_into_what_mailward_says() -> Result<()> {
    let gw = Gateway::start("policy-names", |c| {
        c.set_list("policy", "include_by_name", &["*.exe", "*.scr"])
            .set_str("policy", "action_filtered", "placeholder")
            .set_list("policy", "quarantine", &["av/filtered"])
            .set_list("policy", "notify_admin", &["av/filtered"])
            .set_list("policy", "notify_recipients", &["av/filtered"])
            .set_list("policy", "notify_sender", &["av/filtered"])
            .set_str("policy", "admin_address", "admin@example.com")
    })?;
    let mut f = Failures::default();
    let id = send(
        gw.port(),
        "me@example.com",
        &["user@example.com"],
        &names_message(),
    )?;
    // The message, and notices to the admin, the recipient and the sender.
    let all = gw.sink.wait_for_count(4, DELIVERY_TIMEOUT)?;
    let injected = |text: &str| {
        text.lines()
            .any(|l| l.starts_with("IMPORTANT") || l.starts_with(".exe"))
    };
    let flat = "filtered name:*.exe in invoice IMPORTANT: this message is held. \
                Log in at http://evil.example/ .exe";
    for m in &all {
        let who = m.recipients().join(",");
        f.check(!injected(&m.message), || {
            format!(
                "a line of the sender's in the mail to {who}:\n{}",
                m.message
            )
        });
        if m.sender().is_empty() {
            // On one line, and at most 60 characters of it (walkAP F5).
            let quoted = "filtered name:*.exe in invoice IMPORTANT: this message is held. \
                          Log in at http://ev...\n";
            f.check(m.body().contains(quoted), || {
                format!(
                    "the notice to {who} names the file on one line, cut:\n{}",
                    m.message
                )
            });
        }
    }
    match all.iter().find(|m| !m.sender().is_empty()) {
        Some(m) => {
            let parsed = mail_parser::MessageParser::default().parse(m.message.as_bytes());
            let notices: Vec<String> = parsed
                .iter()
                .flat_map(|p| p.parts.iter())
                .filter_map(|p| p.text_contents())
                .filter(|t| t.starts_with("Mailward replaced"))
                // A long notice is wrapped at spaces: one line to compare.
                .map(|t| t.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect();
            f.check(
                notices
                    .iter()
                    .any(|t| t.contains("\"привет.scr\"") && !t.contains('?')),
                || format!("a placeholder names привет.scr: {notices:?}\n{}", m.message),
            );
            let named = flat.trim_start_matches("filtered ");
            f.check(notices.iter().any(|t| t.contains(named)), || {
                format!("a placeholder names the .exe on one line: {notices:?}")
            });
        }
        None => f.push("the message was not delivered"),
    }
    let show = gw.daemon.cli_ok(&["quarantine", "show", &id])?;
    f.check(!injected(&show), || format!("quarantine show:\n{show}"));
    f.check(show.contains(&format!("Finding:    {flat}")), || {
        format!("quarantine show:\n{show}")
    });
    let log = gw.daemon.full_log();
    f.check(!injected(&log), || {
        "a line of the sender's in the log".into()
    });
    let finding = log
        .lines()
        .find(|l| l.contains("Finding.") && l.contains("name:*.exe"))
        .unwrap_or_default();
    f.check(
        finding.contains("object=\"invoice\\n\\nIMPORTANT: this message is held."),
        || format!("the name is quoted, so it adds no fields: {finding}"),
    );
    let cyrillic = log
        .lines()
        .find(|l| l.contains("Finding.") && l.contains("name:*.scr"))
        .unwrap_or_default();
    f.check(cyrillic.ends_with(" object=привет.scr"), || {
        format!("the name is whole: {cyrillic}")
    });
    f.finish(|| gw.daemon.log())
}

/// walkAD 11: a notice quotes the message's Subject, and a hostile one
/// (a signature, 8-bit octets, control characters, thousands of
/// characters, encoded words hiding a line break) must not make the notice
/// one the next hop refuses or blocks. Every notice smtp-sink receives is
/// valid RFC 5322 (an ASCII header folded under 78 characters, lines under
/// 998 octets, no control characters), and quotes at most 60 characters of
/// the Subject, so the EICAR string in it is not whole.
#[test]
fn a_notice_about_a_hostile_subject_is_one_the_next_hop_takes() -> Result<()> {
    let gw = Gateway::start("policy-hostile-subject", |c| {
        c.set_list("policy", "block", &["av/infected"])
            .set_list("policy", "notify_admin", &["av/infected"])
            .set_list("policy", "notify_recipients", &["av/infected"])
            .set_str("policy", "admin_address", "admin@example.com")
    })?;
    let mut f = Failures::default();
    // Thousands of characters, folded as a client folds them (a line over
    // 998 octets is refused at DATA).
    let long = vec!["word word word word word word word word word word"; 150].join("\r\n ");
    let encoded = vec!["=?UTF-8?B?w7zDpMO2w7zDpMO2w7zDpMO2w7zDpMO2w7zDpMO2?="; 60].join("\r\n ");
    let subjects: Vec<Vec<u8>> = vec![
        b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*".to_vec(),
        long.into_bytes(),
        b"Gr\xfc\xdfe \x1b[31mred\x1b[0m \x7f bell\x07 raw \xe4\xf6\xfc".to_vec(),
        encoded.into_bytes(),
        b"=?UTF-8?Q?a=0D=0ABcc:_v@evil.example=0D=0A?= =?UTF-8?Q?=3D=3Futf-8=3Fq=3Fx=3F=3D?="
            .to_vec(),
    ];
    let marker = "HOSTILE-SUBJECT-HERE";
    let base = infected(marker)?;
    let at = base
        .windows(marker.len())
        .position(|w| w == marker.as_bytes())
        .context("the subject in the sample")?;
    for subject in &subjects {
        let mut message = base[..at].to_vec();
        message.extend_from_slice(subject);
        message.extend_from_slice(&base[at + marker.len()..]);
        send(
            gw.port(),
            "alice@sender.test",
            &["user@example.com"],
            &message,
        )?;
    }
    // Blocked: two notices per message (the administrator's and the
    // recipient's), nothing else.
    let want = 2 * subjects.len();
    gw.sink.wait_for_count(want, DELIVERY_TIMEOUT)?;
    let all = gw.sink.settle(Duration::from_secs(2))?;
    f.check(all.len() == want, || {
        format!("{want} notices, got {}", all.len())
    });
    for m in &all {
        let who = m.recipients().join(",");
        let text = &m.message;
        let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
        f.check(head.is_ascii(), || {
            format!("a header in ASCII to {who}:\n{head}")
        });
        f.check(head.lines().all(|l| l.len() <= 78), || {
            format!("header lines folded under 78 to {who}:\n{head}")
        });
        f.check(body.lines().all(|l| l.len() <= 998), || {
            format!("body lines under 998 octets to {who}")
        });
        f.check(!text.chars().any(|c| c.is_control() && c != '\n'), || {
            format!("no control characters in the notice to {who}:\n{text:?}")
        });
        f.check(
            !text.contains("EICAR-STANDARD-ANTIVIRUS-TEST-FILE!"),
            || format!("the EICAR string is not quoted whole to {who}:\n{text}"),
        );
        f.check(!text.lines().any(|l| l.starts_with("Bcc:")), || {
            format!("no Bcc: line of the sender's to {who}:\n{text}")
        });
        match body
            .lines()
            .find_map(|l| l.trim_start().strip_prefix("Subject:    "))
        {
            Some(quoted) => f.check(quoted.chars().count() <= 63, || {
                format!("the Subject is quoted at most 60 characters and ... to {who}: {quoted:?}")
            }),
            None => f.push(format!("no quoted Subject in the notice to {who}:\n{text}")),
        }
        let parsed = mail_parser::MessageParser::default().parse(text.as_bytes());
        f.check(
            parsed.as_ref().and_then(|p| p.subject()).is_some() && parsed.is_some(),
            || format!("the notice to {who} parses with a Subject:\n{text}"),
        );
    }
    f.finish(|| gw.daemon.log())
}

/// walkV 2: a virus released from quarantine was archived (outgoing)
/// without statuses, so `archive list --outgoing --status av/infected`,
/// what an auditor asks, did not find it.
#[test]
fn a_released_virus_is_found_in_the_outgoing_archive_by_its_status() -> Result<()> {
    let gw = Gateway::start("policy-release-archive", |c| {
        c.set_list("policy", "quarantine", &["av/infected"])
            .set_list("policy", "block", &["av/infected"])
            .set("archive", "outgoing", "true")
    })?;
    let id = send(
        gw.port(),
        "alice@sender.test",
        &["bob@example.com"],
        &infected("release me")?,
    )?;
    let out = gw.daemon.cli_ok(&["quarantine", "release", &id])?;
    let released = out
        .split_whitespace()
        .skip_while(|w| *w != "ID")
        .nth(1)
        .context("a queue ID in the release's answer")?
        .to_string();
    gw.sink.wait_for_count(1, DELIVERY_TIMEOUT)?;
    let listed = wait_until("the released copy in the archive", DELIVERY_TIMEOUT, || {
        let out = gw.daemon.cli_ok(&[
            "archive",
            "list",
            "--json",
            "--outgoing",
            "--status",
            "av/infected",
        ])?;
        Ok(out.contains(&released).then_some(out))
    });
    let listed = listed.with_context(|| {
        format!(
            "released as {released}; archive list --outgoing --json: {}",
            gw.daemon
                .cli_ok(&["archive", "list", "--json", "--outgoing"])
                .unwrap_or_default()
        )
    })?;
    let entry: serde_json::Value = serde_json::from_str(
        listed
            .lines()
            .find(|l| l.contains(&released))
            .unwrap_or_default(),
    )?;
    ensure!(
        entry["statuses"]
            .as_array()
            .is_some_and(|s| s.iter().any(|v| v == "av/infected")),
        "{entry}"
    );
    Ok(())
}

/// walkAD 6 and 8: `quarantine show --raw` gave the message through a
/// lossy text (8-bit bytes became U+FFFD, so a saved sample was not the
/// message received), and the terminal view printed the sender's escape
/// sequences (a window title, a cleared screen, a fake metadata block).
#[test]
fn quarantine_show_raw_is_byte_exact_and_the_terminal_view_is_defanged() -> Result<()> {
    let gw = Gateway::start("policy-show-raw", |c| {
        c.set_list("policy", "quarantine", &["av/infected"])
    })?;
    let mut f = Failures::default();
    let mut message = infected_message("show raw", "mw-e2e-raw-5e1c")?;
    // An 8-bit (Latin-1) header and the sender's escape sequences.
    let extra = b"X-Latin1: Gr\xfc\xdfe\r\nX-Esc: \x1b]0;PWNED\x07\x1b[2J\x1b[31mred\r\n";
    message.splice(0..0, extra.iter().copied());
    let id = send(gw.port(), "me@example.com", &["user@example.com"], &message)?;
    gw.sink.wait_for_count(1, DELIVERY_TIMEOUT)?;
    let stored = std::fs::read(
        gw.config
            .data_dir()
            .join("quarantine")
            .join(format!("{id}.eml")),
    )
    .context("the quarantine entry's message")?;
    f.check(stored.windows(extra.len()).any(|w| w == extra), || {
        "the entry holds the bytes received".into()
    });
    let raw = gw.daemon.cli(&["quarantine", "show", &id, "--raw"])?;
    f.check(raw.status.success(), || {
        format!("show --raw: {}", raw.status)
    });
    f.check(raw.stdout == stored, || {
        format!(
            "show --raw differs from the stored message ({} vs {} octets)",
            raw.stdout.len(),
            stored.len()
        )
    });
    let shown = gw.daemon.cli_ok(&["quarantine", "show", &id])?;
    f.check(
        !shown.contains('\u{1b}') && !shown.contains('\u{7}'),
        || format!("the terminal view holds control characters: {shown:?}"),
    );
    f.check(shown.contains("X-Esc: ^[]0;PWNED^G^[[2J^[[31mred"), || {
        format!("the escape sequences are shown visibly: {shown}")
    });
    // walkAD 5: the audit line says who released it (the socket's peer),
    // and (walkAI 5) comes before the delivery lines of the copy released.
    let released = gw.daemon.cli_ok(&["quarantine", "release", &id])?;
    let new_id = released
        .split("as queue ID ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .unwrap_or_default()
        .to_string();
    gw.sink.wait_for_count(2, DELIVERY_TIMEOUT)?;
    let log = gw.daemon.full_log();
    let at = |needle: &str| log.find(needle);
    let (audit, delivered) = (
        at("Quarantined message released."),
        at(&format!("Delivered. queue_id={new_id}")),
    );
    f.check(
        !new_id.is_empty() && audit.is_some() && delivered.is_some() && audit < delivered,
        || {
            format!(
                "the release is logged before its delivery ({released}): {audit:?} {delivered:?}"
            )
        },
    );
    let line = log
        .lines()
        .find(|l| l.contains("Quarantined message released."))
        .unwrap_or_default();
    let uid = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m))?;
    f.check(
        line.contains(&format!("({uid})")) && line.contains(" by="),
        || format!("the release line names the user of uid {uid}: {line:?}"),
    );
    f.finish(|| gw.daemon.log())
}

/// A message with a `.exe` attachment (filtered by name, nothing else).
fn exe_message(subject: &str) -> Vec<u8> {
    format!(
        "From: ceo@example.com\r\nTo: boss@vip.example.com\r\nSubject: {subject}\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b-exe\"\r\n\r\n\
--b-exe\r\nContent-Type: text/plain\r\n\r\nThe tool you asked for.\r\n\
--b-exe\r\nContent-Type: application/octet-stream\r\n\
Content-Disposition: attachment; filename=\"tool.exe\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAA=\r\n--b-exe--\r\n"
    )
    .into_bytes()
}

/// walkAD 2, 4 and 11: "where did my mail go?" A blocked recipient is
/// named in the log lines of the block and of the quarantine copy, so that
/// `grep ADDRESS` finds them; the incoming archive lists the filter's
/// findings as the quarantine does (it listed the anti-virus ones only, so
/// a filtered `.exe` left no trace of its name); the null sender is logged
/// `from=<>`, as the docs write it.
#[test]
fn a_blocked_recipient_is_in_the_log_and_the_archive_names_the_filtered_part() -> Result<()> {
    let gw = Gateway::start("policy-follow", |c| {
        c.set_list("policy", "include_by_name", &["*.exe"])
            .set_list("group.vip", "recipients", &["boss@vip.example.com"])
            .set_list("group.vip", "block", &["av/all"])
            .set_list("group.vip", "quarantine", &["av/all"])
            .set("archive", "incoming", "true")
    })?;
    let mut f = Failures::default();
    let id = send(
        gw.port(),
        "ceo@example.com",
        &["boss@vip.example.com"],
        &exe_message("Where did it go"),
    )?;
    for message in [
        "Message blocked for these recipients",
        "Message copied to quarantine.",
    ] {
        let line = line_of_id(&gw.daemon, message, &id)?;
        f.check(line.contains("to=boss@vip.example.com"), || {
            format!("the blocked recipient in `{message}`: {line}")
        });
    }
    let incoming = wait_until("the incoming copy", Duration::from_secs(10), || {
        let out = gw
            .daemon
            .cli_ok(&["archive", "list", "--json", "--incoming"])?;
        Ok(out
            .lines()
            .find(|l| l.contains(&id))
            .map(serde_json::from_str::<serde_json::Value>)
            .transpose()?)
    })?;
    f.check(
        incoming["findings"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == "filtered name:*.exe in tool.exe")),
        || format!("the incoming copy names the filtered part: {incoming}"),
    );
    f.check(incoming["group"] == "vip", || {
        format!("the incoming copy names the message's group: {incoming}")
    });
    let quarantined = quarantine_list(&gw.daemon, &[])?;
    f.check(
        quarantined
            .iter()
            .any(|e| e["findings"] == incoming["findings"]),
        || format!("the same findings as the quarantine's: {quarantined:?} {incoming}"),
    );

    let bounce = send(
        gw.port(),
        "",
        &["user@example.com"],
        b"From: MAILER-DAEMON@sender.test\r\nSubject: Undelivered\r\n\r\nGone.\r\n",
    )?;
    let accepted = line_of_id(&gw.daemon, "Message accepted.", &bounce)?;
    f.check(accepted.contains(" from=<> "), || {
        format!("the null sender as <>: {accepted}")
    });
    f.finish(|| gw.daemon.log())
}

/// The first log line of `message` about `id`, waited for.
fn line_of_id(d: &Daemon, message: &str, id: &str) -> Result<String> {
    wait_until(message, Duration::from_secs(10), || {
        Ok(d.full_log()
            .lines()
            .find(|l| l.contains(message) && l.contains(id))
            .map(str::to_string))
    })
}

/// A message whose text part a repair of the scanner's reading touches
/// (a `--b-exe` inside a text line, which mail-parser would take for a
/// delimiter, and a second `Content-Type` field), with a `.exe` that the
/// default policy removes.
fn stray_boundary_message() -> (Vec<u8>, &'static str) {
    let text_part = "--b-exe\r\nContent-Type: text/plain\r\nContent-Type: text/html\r\n\r\n\
Rebuild it with the --b-exe switch, then run it.\r\n";
    let message = format!(
        "From: ceo@example.com\r\nTo: user@example.com\r\nSubject: Rebuild\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b-exe\"\r\n\r\n\
{text_part}--b-exe\r\nContent-Type: application/octet-stream\r\n\
Content-Disposition: attachment; filename=\"tool.exe\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAA=\r\n--b-exe--\r\n"
    );
    (message.into_bytes(), text_part)
}

/// The recipient of a message with a part removed gets the sender's bytes
/// everywhere else: the scanner reads a repaired copy (a `--boundary`
/// inside a line neutralised to `-_boundary`, a second `Content-Type`
/// dropped), and the delivered message was built from that copy.
#[test]
fn a_removed_part_leaves_the_senders_bytes_elsewhere() -> Result<()> {
    let gw = Gateway::start("policy-stray", |c| {
        c.set_list("policy", "include_by_name", &["*.exe"])
    })?;
    let mut f = Failures::default();
    let (message, text_part) = stray_boundary_message();
    send(
        gw.port(),
        "ceo@example.com",
        &["user@example.com"],
        &message,
    )?;
    let m = gw.sink.wait_for_count(1, DELIVERY_TIMEOUT)?.remove(0);
    f.check(!m.message.contains("tool.exe"), || {
        format!("the .exe is removed:\n{}", m.message)
    });
    // The message as sent, less the .exe part with its delimiter line
    // (and the header lines Mailward adds on top; smtp-sink writes LF).
    let sent = String::from_utf8_lossy(&message).replace("\r\n", "\n");
    let exe_at = sent.find("\n--b-exe\nContent-Type: application/octet-stream");
    let close_at = sent.rfind("\n--b-exe--");
    let want = match (exe_at, close_at) {
        (Some(a), Some(b)) => format!("{}{}", &sent[..a], &sent[b..]),
        _ => anyhow::bail!("the test message has no .exe part"),
    };
    let got = mail::strip_added_headers(m.message.as_bytes());
    f.check(got == want.as_bytes(), || {
        format!(
            "the rest byte for byte as sent ({text_part:?} kept whole):\n{}",
            String::from_utf8_lossy(&got)
        )
    });
    f.finish(|| gw.daemon.log())
}

/// The EICAR test string (68 characters), which a scanner finds in any
/// text that holds it whole.
const EICAR_TEXT: &str = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// A message whose attachment, the EICAR file, is named with the EICAR
/// string itself (a quoted-string, so `\\` is one backslash).
fn eicar_named_message() -> Vec<u8> {
    let name = EICAR_TEXT.replace('\\', "\\\\");
    format!(
        "From: alice@sender.test\r\nTo: user@example.com\r\nSubject: name test\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"BB\"\r\n\r\n\
--BB\r\nContent-Type: text/plain\r\n\r\nhi\r\n\
--BB\r\nContent-Type: application/octet-stream; name=\"{name}\"\r\n\
Content-Disposition: attachment; filename=\"{name}\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\n\
WDVPIVAlQEFQWzRcUFpYNTQoUF4pN0NDKTd9JEVJQ0FSLVNUQU5EQVJELUFOVElWSVJVUy1URVNULUZJTEUhJEgrSCo=\r\n\
--BB--\r\n"
    )
    .into_bytes()
}

/// walkAP F5: an attachment named with the EICAR string made the sender's,
/// the recipient's and the administrator's notices carry it whole, so
/// that Mailward's own scanner (and any next hop) found the notices
/// "infected" and the addressees never learnt of the virus. Each notice
/// quotes the name cut at 60 characters, `mailward scan` finds it clean,
/// and none lists as/formal or as/clean as found.
#[test]
fn a_part_named_with_the_eicar_string_makes_notices_the_next_hop_takes() -> Result<()> {
    let gw = Gateway::start("policy-eicar-name", |c| {
        c.set_list("policy", "notify_sender", &["av/all"])
            .set_list("policy", "notify_recipients", &["av/all", "as/all"])
            .set_list("policy", "notify_admin", &["av/all", "as/all"])
            .set_str("policy", "admin_address", "admin@example.com")
    })?;
    let mut f = Failures::default();
    send(
        gw.port(),
        "alice@sender.test",
        &["user@example.com"],
        &eicar_named_message(),
    )?;
    gw.sink.wait_for_count(3, DELIVERY_TIMEOUT)?;
    let all = gw.sink.settle(Duration::from_secs(2))?;
    let notices: Vec<&SinkMessage> = all.iter().filter(|m| m.sender().is_empty()).collect();
    let to: HashSet<String> = notices.iter().flat_map(|m| m.recipients()).collect();
    f.check(
        to == HashSet::from([
            "alice@sender.test".to_string(),
            "user@example.com".to_string(),
            "admin@example.com".to_string(),
        ]),
        || format!("notices to the sender, the recipient and the admin: {to:?}"),
    );
    let cut = format!("infected EICAR_Test_File in {}...", &EICAR_TEXT[..60]);
    for m in &notices {
        let who = m.recipients().join(",");
        f.check(!m.message.contains(EICAR_TEXT), || {
            format!(
                "the EICAR string whole in the notice to {who}:\n{}",
                m.message
            )
        });
        f.check(m.body().contains(&cut), || {
            format!("the name cut at 60 characters to {who}:\n{}", m.message)
        });
        f.check(
            !m.message.contains("as/formal score=")
                && !m.message.contains("as/formal (")
                && !m.message.contains("as/clean score="),
            || format!("no spam verdict listed as found to {who}:\n{}", m.message),
        );
        let path = m.path.display().to_string();
        let out = gw.daemon.cli(&["scan", &path])?;
        f.check(out.status.code() == Some(0), || {
            format!(
                "mailward scan of the notice to {who}: {:?} {}{}",
                out.status.code(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
    }
    // The quarantine of a message keeps the whole name; the log names it.
    f.check(
        gw.daemon
            .full_log()
            .contains("EICAR-STANDARD-ANTIVIRUS-TEST-FILE"),
        || "the log names the part whole".into(),
    );
    f.finish(|| gw.daemon.log())
}

/// walkAP F1, F7, F8: a message quarantined for one group of two is
/// released by its queue ID (its one entry); after a release to one of
/// its recipients, a release without --to names the other and the
/// command; and the released virus that the next hop refuses is reported
/// to the postmaster with its headers only, never bounced whole to the
/// original (forged) sender.
#[test]
fn a_released_virus_the_next_hop_refuses_is_reported_to_the_postmaster_headers_only() -> Result<()>
{
    let dir = TestDir::new("policy-release-refused")?;
    let sink = Sink::start(dir.path(), "sink")?;
    let refusing = Sink::start_with(dir.path(), "refusing", free_port(), &["-f", "RCPT"])?;
    let config = Config::new(dir.path())
        .route_to_port("gone@example.com", refusing.port)
        .route_to_port("*", sink.port)
        .set_list(
            "group.strict",
            "recipients",
            &["*@strict.example.com", "gone@example.com"],
        )
        .set_list("group.strict", "quarantine", &["av/infected"])
        .set_list("group.strict", "block", &["av/infected"]);
    let daemon = Daemon::start(&config)?;
    let mut f = Failures::default();
    let id = send(
        daemon.port,
        "victim@innocent.test",
        &[
            "user@example.com",
            "boss@strict.example.com",
            "gone@example.com",
        ],
        &infected("forged virus")?,
    )?;
    // The default group's copy (the virus removed) is delivered.
    sink.wait_for_count(1, DELIVERY_TIMEOUT)?;
    let entries = quarantine_list(&daemon, &[])?;
    ensure!(entries.len() == 1, "one quarantine entry: {entries:?}");
    let entry = entries[0]["id"].as_str().unwrap_or_default().to_string();
    f.check(entry.starts_with(&format!("{id}.")), || {
        format!("the group's entry is ID.N: {entry}")
    });
    // F3: the story in order: accepted, checked, then the copy it made.
    let log = daemon.log();
    let at = |what: &str| log.find(what).unwrap_or(usize::MAX);
    let accepted = at(&format!("Message accepted. queue_id={id}"));
    let checked = at(&format!("Message checked. queue_id={id} group=strict"));
    let copied = at(&format!(
        "Message copied to quarantine. queue_id={id} quarantine_id={entry}"
    ));
    f.check(
        accepted < checked && checked < copied && copied != usize::MAX,
        || format!("accepted, checked, then copied to quarantine:\n{log}"),
    );
    // F1: the queue ID a notice or the log gives releases the one entry.
    let out = daemon.cli_ok(&[
        "quarantine",
        "release",
        &id,
        "--to",
        "boss@strict.example.com",
    ])?;
    f.check(
        out.starts_with(&format!(
            "Released {entry} (the one entry of queue ID {id}) "
        )),
        || format!("release by queue ID: {out}"),
    );
    sink.wait_for_count(2, DELIVERY_TIMEOUT)?;
    // F7: the recipient not yet released to, and the command.
    let out = daemon.cli(&["quarantine", "release", &id])?;
    let err = String::from_utf8_lossy(&out.stderr);
    f.check(
        out.status.code() == Some(1)
            && err.contains("It has not gone to gone@example.com yet")
            // With the --config given (walkBQ F3).
            && err.contains(&format!(
                "`mailward quarantine release {entry} --to gone@example.com --config {}`",
                daemon.config_path.display()
            )),
        || format!("release after a partial one: {:?} {err}", out.status.code()),
    );
    // F8: released to an address the next hop refuses.
    daemon.cli_ok(&["quarantine", "release", &entry, "--to", "gone@example.com"])?;
    let report = wait_until("the failure report", DELIVERY_TIMEOUT, || {
        Ok(sink
            .messages()?
            .into_iter()
            .find(|m| m.recipients() == ["postmaster@mw.test"]))
    })?;
    f.check(report.sender().is_empty(), || {
        format!("a report from <>: {}", report.mail_args)
    });
    f.check(
        report.message.contains("text/rfc822-headers")
            && !report.message.contains("message/rfc822")
            && !report.message.contains("invoice.zip"),
        || format!("headers only, no virus:\n{}", report.message),
    );
    let all = sink.settle(Duration::from_secs(2))?;
    f.check(
        !all.iter()
            .any(|m| m.recipients().iter().any(|r| r == "victim@innocent.test")),
        || "nothing to the original sender".into(),
    );
    let log = daemon.log();
    f.check(
        log.contains(
            "a failure is reported to postmaster@mw.test (headers only; the entry holds av/infected, so not to the original sender)",
        ),
        || "the log says where a failure goes".into(),
    );
    drop(refusing);
    f.finish(|| daemon.log())
}
