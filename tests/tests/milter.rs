//! Mailward as a milter (docs/postfix.md): a private Postfix with
//! `smtpd_milters` pointing at Mailward's `[milter] listen`, relaying to an
//! smtp-sink, and Debian's `miltertest` (opendkim's scripted MTA) against
//! `mailward milter`:
//!
//! - a refusal reaches Postfix's client (550 5.7.1), nothing is queued;
//! - the verdict header and the subject mark appear at the sink, and the
//!   infected attachment is gone (header changes and a new body);
//! - quarantine keeps a copy in our store and, as in SMTP mode, does not
//!   stop delivery (Postfix's hold queue is not used); quarantine with
//!   block discards;
//! - garbage on the milter port closes that connection only: mail goes on;
//! - a verdict slower than Postfix's `milter_content_timeout` is waited
//!   for (SMFIR_PROGRESS) instead of ending in `milter_default_action`;
//! - a client that authenticated with Postfix (`{auth_authen}`) is one of
//!   ours: no SPF refusal or score for its mail, and the scoring DNSBL
//!   zones are not asked about it (they are at MAIL, once the macros say
//!   who is sending);
//! - the statistics count the messages with `mode="milter"`, and the
//!   garbage as malformed milter connections.

use std::io::Write as _;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use mailward_e2e::postfix::{Postfix, PostfixSetup};
use mailward_e2e::samples::{eicar, infected_message};
use mailward_e2e::stats::StatsSetup;
use mailward_e2e::tools::{self, is_root, output_text, swaks_message};
use mailward_e2e::*;

fn infected(subject: &str) -> Result<Vec<u8>> {
    infected_message(subject, "b-milter")
}

/// swaks to Postfix; (exit ok, transcript).
fn swaks_to(
    dir: &TestDir,
    port: u16,
    name: &str,
    rcpt: &str,
    message: &[u8],
) -> Result<(bool, String)> {
    swaks_message(
        dir.path(),
        port,
        name,
        rcpt,
        message,
        &["--ehlo", "client.test"],
    )
}

/// The set-up of the tests with a real Postfix: an smtp-sink; Mailward
/// with `[milter] listen` on a free port, a route to the sink and the
/// statistics (metrics and raw records) on; a private Postfix relaying to
/// the sink with Mailward as its milter (`milter_default_action =
/// tempfail`, so that a milter failure shows as 451, not as a message
/// let through).
struct WithPostfix {
    // Dropped in this order: Postfix (it calls the milter), Mailward, the
    // sink, the directory.
    postfix: Postfix,
    daemon: Daemon,
    sink: Sink,
    stats: StatsSetup,
    milter_port: u16,
    dir: TestDir,
}

impl WithPostfix {
    /// Starts it all in a directory `milter-NAME-*`, Postfix as
    /// `postfix-NAME.test`; `configure` adds to Mailward's configuration,
    /// `main_cf` to Postfix's main.cf.
    fn start(
        name: &str,
        main_cf: &[&str],
        configure: impl FnOnce(Config) -> Config,
    ) -> Result<WithPostfix> {
        ensure!(
            is_root(),
            "the private Postfix needs root: run as root (tests/run does)"
        );
        let dir = TestDir::new(&format!("milter-{name}"))?;
        let sink = Sink::start(dir.path(), "sink")?;
        let milter_port = free_port();
        let stats = StatsSetup::new(dir.path());
        let config = configure(
            stats
                .apply(Config::new(dir.path()))
                .route_to_port("*", sink.port)
                .set_str("milter", "listen", &format!("inet:{milter_port}@127.0.0.1")),
        );
        let daemon = Daemon::start(&config)?;
        let mut lines = vec![
            format!("smtpd_milters = inet:127.0.0.1:{milter_port}"),
            "milter_default_action = tempfail".into(),
            "milter_protocol = 6".into(),
        ];
        lines.extend(main_cf.iter().map(|l| l.to_string()));
        let postfix = Postfix::start(
            dir.path(),
            name,
            &PostfixSetup {
                relay_port: sink.port,
                extra: lines,
                ..Default::default()
            },
        )?;
        Ok(WithPostfix {
            postfix,
            daemon,
            sink,
            stats,
            milter_port,
            dir,
        })
    }

    /// Both logs' ends, for a failure's message.
    fn logs(&self) -> String {
        format!(
            "--- postfix\n{}\n--- mailward\n{}",
            self.postfix.log(),
            self.daemon.log()
        )
    }
}

/// Writes bytes that are not the milter protocol to the port, in a few
/// shapes (a huge length, a zero length, an unknown command, a truncated
/// packet), each on its own connection.
fn garbage(port: u16) -> Result<()> {
    let shapes: [&[u8]; 5] = [
        b"\xff\xff\xff\xffhello",
        b"\x00\x00\x00\x00",
        b"\x00\x00\x00\x02Z!",
        b"\x00\x00\x00\x10O\x00\x00",
        b"GET / HTTP/1.0\r\n\r\n",
    ];
    for bytes in shapes {
        let mut s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let _ = s.write_all(bytes);
        // The connection is closed by Mailward (or dropped here).
        let mut buf = [0u8; 64];
        let _ = std::io::Read::read(&mut s, &mut buf);
    }
    Ok(())
}

#[test]
fn postfix_with_mailward_as_milter() -> Result<()> {
    let set_up = WithPostfix::start("milter", &[], |c| {
        c.set_list("policy", "mark_subject", &["av/infected"])
            .set(
                "policy",
                "subject_prefix",
                r#"{ "av/infected" = "[VIRUS]" }"#,
            )
            .set_list("group.strict", "recipients", &["*@strict.example.com"])
            .set_list("group.strict", "reject", &["av/infected"])
            .set_list("group.hold", "recipients", &["*@hold.example.com"])
            .set_list("group.hold", "quarantine", &["av/infected"])
            .set_list("group.vault", "recipients", &["*@vault.example.com"])
            .set_list("group.vault", "quarantine", &["av/infected"])
            .set_list("group.vault", "block", &["av/infected"])
    })?;
    let WithPostfix {
        postfix,
        daemon,
        sink,
        stats,
        milter_port,
        dir,
    } = &set_up;

    // A refusal reaches the client; nothing is queued.
    let (ok, t) = swaks_to(
        dir,
        postfix.port,
        "strict",
        "boss@strict.example.com",
        &infected("for the boss")?,
    )?;
    ensure!(
        !ok && t.contains("<** 550 5.7.1"),
        "the client must see 550 5.7.1:\n{t}\n{}",
        postfix.log()
    );
    postfix.wait_queue_empty(Duration::from_secs(5))?;

    // Delivered cleaned: verdict header, subject mark, attachment gone;
    // and the verdict headers it came with (a forged "clean") deleted
    // before ours go on top.
    let forged = [
        b"X-Mailward-AV: clean\r\nX-Mailward-Spam: as/clean; score=-20.0\r\nX-Mailward-Spam-Rating: 0\r\n".as_slice(),
        &infected("invoice")?,
    ]
    .concat();
    let (ok, t) = swaks_to(dir, postfix.port, "user", "user@example.com", &forged)?;
    ensure!(ok, "refused: {t}\n{}", postfix.log());
    let got = sink
        .wait_for_count(1, DELIVERY_TIMEOUT)
        .with_context(|| format!("{}\n{}", postfix.log(), daemon.log()))?;
    let m = &got[0];
    ensure!(
        m.header("X-Mailward-AV")
            .is_some_and(|h| h.starts_with("infected")),
        "verdict header at the sink:\n{}",
        m.message
    );
    let verdicts: Vec<(String, String)> = mailward_e2e::mail::headers(&m.message)
        .into_iter()
        .filter(|(n, _)| n.to_ascii_lowercase().starts_with("x-mailward-"))
        .collect();
    let named = |name: &str| {
        verdicts
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    };
    ensure!(
        named("X-Mailward-AV") == 1
            && named("X-Mailward-Spam") <= 1
            && named("X-Mailward-Spam-Rating") == named("X-Mailward-Spam")
            && !verdicts
                .iter()
                .any(|(_, v)| v == "clean" || v.contains("score=-20.0")),
        "only our verdict headers, once each: {verdicts:?}"
    );
    let counted = stats
        .scrape()?
        .get("mailward_foreign_verdict_headers_total", &[]);
    ensure!(
        counted == Some(1.0),
        "the message with foreign verdict headers counted: {counted:?}"
    );
    ensure!(
        m.header("Subject").as_deref() == Some("[VIRUS] invoice"),
        "subject mark: {:?}",
        m.header("Subject")
    );
    ensure!(
        !m.message.contains("invoice.zip\"") && m.message.contains("Please see the attachment."),
        "the infected attachment is removed, the text kept:\n{}",
        m.message
    );
    ensure!(
        m.header("Received")
            .is_some_and(|r| r.contains("postfix-milter.test")),
        "Postfix delivered it itself: {:?}",
        m.header("Received")
    );

    // Quarantine: our store's copy, and the message delivered as the plan
    // says (a copy alone does not stop delivery, as in SMTP mode; walkH:
    // it went to Postfix's hold queue, a second copy to release).
    let (ok, t) = swaks_to(
        dir,
        postfix.port,
        "hold",
        "ann@hold.example.com",
        &infected("copy me")?,
    )?;
    ensure!(ok, "refused: {t}");
    let got = sink
        .wait_for_count(2, DELIVERY_TIMEOUT)
        .with_context(|| format!("{}\n{}", postfix.log(), daemon.log()))?;
    ensure!(
        got.iter()
            .any(|m| m.recipients() == ["ann@hold.example.com"]),
        "the quarantined message is delivered too"
    );
    ensure!(
        !postfix.queue()?.iter().any(|m| m["queue_name"] == "hold"),
        "nothing on Postfix's hold queue"
    );
    let listed = daemon.cli_ok(&["quarantine", "list", "--json"])?;
    ensure!(
        listed.lines().count() == 1 && listed.contains("ann@hold.example.com"),
        "our quarantine has the copy: {listed}"
    );
    // The log tells the story in order, as in SMTP mode (walkAP F3: the
    // copy came first on the milter path): the acceptance and the verdict,
    // then the copy they made, each with the message's queue_id.
    let entry: serde_json::Value = serde_json::from_str(listed.lines().next().unwrap_or("{}"))?;
    let queue_id = entry["id"]
        .as_str()
        .and_then(|id| id.split('.').next())
        .unwrap_or_default()
        .to_string();
    ensure!(queue_id.len() == 16, "the entry's queue ID: {listed}");
    let field = format!("queue_id={queue_id}");
    let at = |log: &str, what: &str| {
        log.lines()
            .position(|l| l.contains(what) && l.contains(&field))
    };
    let log = wait_until(
        "the quarantine copy in the log",
        Duration::from_secs(10),
        || {
            let log = daemon.full_log();
            Ok(at(&log, "Message copied to quarantine.").map(|_| log))
        },
    )?;
    let order = [
        at(&log, "Message accepted."),
        at(&log, "Message checked."),
        at(&log, "Message copied to quarantine."),
    ];
    ensure!(
        order.iter().all(Option::is_some) && order.windows(2).all(|w| w[0] < w[1]),
        "accepted, checked, then copied to quarantine ({field}): lines {order:?}\n{log}"
    );
    // Quarantine with block: our copy, and Postfix discards the message.
    let (ok, t) = swaks_to(
        dir,
        postfix.port,
        "vault",
        "eve@vault.example.com",
        &infected("keep me")?,
    )?;
    ensure!(ok, "refused: {t}");
    wait_until(
        "the second quarantine copy",
        Duration::from_secs(20),
        || {
            let listed = daemon.cli_ok(&["quarantine", "list", "--json"])?;
            Ok(
                (listed.lines().count() == 2 && listed.contains("eve@vault.example.com"))
                    .then_some(()),
            )
        },
    )?;
    postfix.wait_queue_empty(Duration::from_secs(10))?;
    ensure!(
        postfix.log().contains("milter-discard"),
        "Postfix discards what every group blocks:\n{}",
        postfix.log()
    );

    // One recipient's group refuses, the other's delivers: the refusal
    // becomes a block, and the MTA deletes that recipient (SMFIR_DELRCPT).
    let (ok, t) = swaks_to(
        dir,
        postfix.port,
        "mixed",
        "user@example.com,boss@strict.example.com",
        &infected("for both")?,
    )?;
    ensure!(ok, "refused although one group delivers: {t}");
    let got = sink.wait_for_count(3, DELIVERY_TIMEOUT)?;
    let m = got
        .iter()
        .find(|m| m.header("Subject").is_some_and(|s| s.ends_with("for both")))
        .context("the message for both did not arrive")?;
    ensure!(
        m.recipients() == ["user@example.com"],
        "only the delivering group's recipient gets it: {:?}",
        m.recipients()
    );

    // Garbage on the milter port does not disturb mail.
    garbage(*milter_port)?;
    let clean = b"From: alice@sender.test\r\nTo: user@example.com\r\nSubject: after garbage\r\n\r\nStill here.\r\n";
    let (ok, t) = swaks_to(dir, postfix.port, "clean", "user@example.com", clean)?;
    ensure!(ok, "refused after garbage: {t}\n{}", daemon.log());
    let got = sink.wait_for_count(4, DELIVERY_TIMEOUT)?;
    let m = got
        .iter()
        .find(|m| m.message.contains("Subject: after garbage"))
        .context("the message after the garbage did not arrive")?;
    ensure!(
        m.header("X-Mailward-AV")
            .is_some_and(|h| h.starts_with("clean")),
        "checked by the milter: {:?}",
        m.header("X-Mailward-AV")
    );
    let log = daemon.full_log();
    ensure!(
        log.contains("Milter connection closed on an error"),
        "the garbage is logged"
    );

    let metrics = stats.scrape()?;
    let checked = metrics.get("mailward_messages_checked_total", &[("mode", "milter")]);
    ensure!(checked == Some(6.0), "checked by milter: {checked:?}");
    // The five kinds of garbage are five malformed connections, and
    // Postfix's own connections closed without an error.
    let errors = |reason| {
        metrics.get(
            "mailward_milter_connection_errors_total",
            &[("reason", reason)],
        )
    };
    ensure!(
        errors("malformed") == Some(5.0)
            && errors("idle") == Some(0.0)
            && errors("io") == Some(0.0),
        "milter connection errors: malformed {:?} idle {:?} io {:?}",
        errors("malformed"),
        errors("idle"),
        errors("io")
    );
    let opened = metrics
        .get("mailward_milter_connections_opened_total", &[])
        .unwrap_or(0.0);
    let open = metrics
        .get("mailward_milter_connections", &[])
        .unwrap_or(-1.0);
    ensure!(
        opened >= 7.0 && (0.0..=opened - 5.0).contains(&open),
        "milter connections: {opened} opened, {open} open now"
    );
    let raw = stats.raw_lines()?;
    ensure!(
        // One per message and recipient: the mixed message has two.
        raw.len() == 7 && raw.iter().all(|r| r.mode == "milter"),
        "raw records with mode milter: {:?}",
        raw.iter().map(|r| &r.line).collect::<Vec<_>>()
    );
    ensure!(
        daemon.queue_ids()?.is_empty(),
        "nothing of the MTA's mail is queued in Mailward"
    );
    Ok(())
}

#[test]
fn a_verdict_slower_than_postfix_timeout_is_waited_for() -> Result<()> {
    // A DNS server that takes the queries and never answers: the URI list
    // look-up at end of message takes timeouts.dns (4 s), twice Postfix's
    // milter_content_timeout below.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let resolver = silent.local_addr()?.to_string();
    let set_up = WithPostfix::start("progress", &["milter_content_timeout = 2s"], |c| {
        c.set_str("access", "dns_resolver", &resolver)
            .set_str("timeouts", "dns", "4s")
            .set_list("spam", "surbl", &["uri.test:3.5"])
    })?;
    let WithPostfix {
        postfix,
        daemon,
        sink,
        dir,
        ..
    } = &set_up;
    let message = b"From: alice@sender.test\r\nTo: user@example.com\r\nSubject: slow verdict\r\n\r\nSee http://www.deals.shop.test/offer for details.\r\n";
    let (ok, t) = swaks_to(dir, postfix.port, "slow", "user@example.com", message)?;
    ensure!(
        ok,
        "Postfix gave up on the milter instead of waiting for the verdict:\n{t}\n{}\n{}",
        postfix.log(),
        daemon.log()
    );
    let got = sink
        .wait_for_count(1, DELIVERY_TIMEOUT)
        .with_context(|| format!("{}\n{}", postfix.log(), daemon.log()))?;
    ensure!(
        got[0]
            .header("X-Mailward-AV")
            .is_some_and(|h| h.starts_with("clean")),
        "delivered with the milter's verdict:\n{}",
        got[0].message
    );
    // The verdict did take longer than Postfix's timeout: from the end of
    // the message ("Message from the MTA.") to the verdict ("Message
    // accepted."), both logged by Mailward.
    let log = daemon.full_log();
    let at = |what: &str| {
        log.lines()
            .find(|l| l.contains(what))
            .and_then(seconds_of_day)
            .with_context(|| format!("no time on the line {what:?}:\n{log}"))
    };
    let took = at("Message accepted.")? - at("Message from the MTA.")?;
    let took = if took < 0.0 { took + 86_400.0 } else { took };
    ensure!(
        took > 2.0,
        "the verdict took {took:.1} s, not longer than milter_content_timeout (2 s)"
    );
    ensure!(
        !postfix.log().contains("timeout"),
        "Postfix logged a milter timeout:\n{}",
        postfix.log()
    );
    drop(silent);
    Ok(())
}

/// walkAF 5: SPF and the scoring DNSBL zones are asked at MAIL, and a DNS
/// server that does not answer made that step wait `timeouts.dns`; Postfix
/// gave up after its `milter_command_timeout` (30 s) and answered the
/// client `451 4.7.1`. Postfix waits on SMFIR_PROGRESS at any step, so
/// Mailward sends it there too.
#[test]
fn a_slow_dns_at_mail_is_waited_for() -> Result<()> {
    // Takes the queries and never answers: SPF and the zone at MAIL wait
    // timeouts.dns (4 s), twice Postfix's milter_command_timeout below.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let resolver = silent.local_addr()?.to_string();
    let set_up = WithPostfix::start("mailprogress", &["milter_command_timeout = 2s"], |c| {
        c.set_str("access", "dns_resolver", &resolver)
            .set_str("timeouts", "dns", "4s")
            // The client, 127.0.0.2, is from outside: SPF and the zone apply.
            .set("network", "relay_networks", r#"["127.0.0.1/32"]"#)
            .set_list("spam", "dnsbl", &["dead.test:2"])
    })?;
    let WithPostfix {
        postfix,
        daemon,
        sink,
        dir,
        ..
    } = &set_up;
    let message =
        b"From: alice@sender.test\r\nTo: user@example.com\r\nSubject: slow dns\r\n\r\nHello.\r\n";
    let (ok, t) = swaks_message(
        dir.path(),
        postfix.port,
        "slowmail",
        "user@example.com",
        message,
        &["--ehlo", "client.test", "--local-interface", "127.0.0.2"],
    )?;
    ensure!(
        ok,
        "Postfix gave up on the milter at MAIL instead of waiting:\n{t}\n{}\n{}",
        postfix.log(),
        daemon.log()
    );
    sink.wait_for_count(1, DELIVERY_TIMEOUT)
        .with_context(|| format!("{}\n{}", postfix.log(), daemon.log()))?;
    ensure!(
        daemon.log().contains("DNSBL look-ups failed"),
        "the zone was asked and timed out at MAIL:\n{}",
        daemon.log()
    );
    ensure!(
        !postfix.log().contains("timed out") && !postfix.log().contains("timeout"),
        "Postfix logged a milter timeout:\n{}",
        postfix.log()
    );
    drop(silent);
    Ok(())
}

/// walkX finding 2: Postfix sends its milter nothing while its client
/// uploads the message (SMFIC_DATA at DATA, the content after the final
/// dot) or idles with NOOP; a connection closed after `timeouts.command`
/// without a packet made Postfix tempfail every slow upload. Now the
/// milter waits as long as an SMTP DATA phase of the largest message may
/// take (`timeouts.data` plus `max_message_size` at `min_data_rate`: here
/// 2 s + 4 KiB at 2 KiB/s = 4 s), and still closes a connection quiet for
/// longer. Finding 5 on the way: a message refused as too big is logged
/// with Postfix's queue ID and the sender, as an accepted one is.
#[test]
fn a_quiet_client_gets_its_verdict_and_a_dead_connection_is_still_closed() -> Result<()> {
    let set_up = WithPostfix::start("quiet", &[], |c| {
        c.set_str("timeouts", "command", "1s")
            .set_str("timeouts", "data", "2s")
            .set_str("limits", "max_message_size", "4KiB")
            .set("limits", "min_data_rate", "2048")
    })?;
    let WithPostfix {
        postfix,
        daemon,
        sink,
        ..
    } = &set_up;
    let logs = || set_up.logs();

    let mut c = SmtpClient::connect_ok(postfix.port)?;
    c.ehlo("client.test")?;
    // Idle with NOOP for longer than timeouts.command before MAIL.
    c.command("NOOP")?.expect_code(250)?;
    std::thread::sleep(Duration::from_millis(2500));
    let mail = c.command("MAIL FROM:<alice@sender.test>")?;
    ensure!(
        mail.code == 250,
        "MAIL after 2.5 s of NOOP idling: {mail}\n{}",
        logs()
    );
    c.command("RCPT TO:<user@example.com>")?.expect_code(250)?;
    c.command("DATA")?.expect_code(354)?;
    // A slow upload: 2.5 s from DATA to the final dot, a line now and then.
    c.send(b"From: alice@sender.test\r\nTo: user@example.com\r\nSubject: slow upload\r\n\r\n")?;
    for i in 0..5 {
        std::thread::sleep(Duration::from_millis(500));
        c.send(format!("line {i} of a slow upload\r\n").as_bytes())?;
    }
    c.send(b".\r\n")?;
    let end = c.read_reply()?;
    ensure!(
        end.code == 250,
        "a 2.5 s upload through the milter (timeouts.command 1 s): {end}\n{}",
        logs()
    );
    let got = sink
        .wait_for_count(1, DELIVERY_TIMEOUT)
        .with_context(logs)?;
    ensure!(
        got[0]
            .header("X-Mailward-AV")
            .is_some_and(|h| h.starts_with("clean")),
        "delivered with the milter's verdict:\n{}",
        got[0].message
    );

    // Over limits.max_message_size: refused, and Mailward's log names
    // Postfix's queue ID and the sender for it, as for an accepted one.
    let big = format!(
        "From: alice@sender.test\r\nTo: user@example.com\r\nSubject: too big\r\n\r\n{}",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n".repeat(100)
    );
    let refused = c.send_mail("alice@sender.test", &["user@example.com"], big.as_bytes())?;
    ensure!(
        refused.is(552, "5.3.4"),
        "a 6.6 KB message over max_message_size 4 KiB: {refused}\n{}",
        logs()
    );
    let upstream = wait_until(
        "Postfix's milter-reject line",
        Duration::from_secs(10),
        || {
            Ok(postfix
                .log()
                .lines()
                .find(|l| l.contains("milter-reject: END-OF-MESSAGE") && l.contains("5.3.4"))
                .and_then(|l| l.split(": ").nth(1).map(str::to_string)))
        },
    )
    .with_context(logs)?;
    let log = wait_until(
        "the size refusal's log line",
        Duration::from_secs(10),
        || {
            let log = daemon.full_log();
            Ok(log.contains("reason=size ").then_some(log))
        },
    )
    .with_context(logs)?;
    let id = format!("upstream_id={upstream} ");
    ensure!(
        log.lines().any(|l| l.contains("Message from the MTA.")
            && l.contains(&id)
            && l.contains("from=alice@sender.test")),
        "the too-big message's arrival names Postfix's queue ID {upstream}:\n{log}"
    );
    ensure!(
        log.lines().any(|l| l.contains("Refused in the session.")
            && l.contains("reason=size ")
            && l.contains(&id)
            && l.contains("from=alice@sender.test")
            && l.contains("rcpts=1")),
        "the size refusal names Postfix's queue ID {upstream} and the sender:\n{log}"
    );

    // A connection quiet for twice the 4 s is closed all the same: the
    // MTA applies its milter_default_action (tempfail) to the next MAIL.
    std::thread::sleep(Duration::from_secs(9));
    let late = c.command("MAIL FROM:<alice@sender.test>")?;
    ensure!(
        late.is(451, "4.7.1"),
        "MAIL after 9 s without a milter packet: {late}\n{}",
        logs()
    );
    ensure!(
        daemon
            .full_log()
            .contains("reason=idle error=\"no command from the MTA within 4s\""),
        "the idle connection's close is logged with its bound:\n{}",
        daemon.full_log()
    );
    Ok(())
}

/// `limits.max_hops` was not applied to milter traffic: a looping
/// message got through Mailward's milter whatever the limit. Now it is
/// refused at end of message with SMTP mode's reply and log line. Postfix
/// sends its milters the header without its own `Received:` line, so the
/// count is the hops before Postfix, as an SMTP session of Mailward's
/// counts those before its own line: the same message gets the same
/// answer from both.
#[test]
fn a_message_with_max_hops_received_lines_is_refused_as_in_smtp() -> Result<()> {
    let set_up = WithPostfix::start("hops", &[], |c| c.set("limits", "max_hops", "5"))?;
    let WithPostfix {
        postfix,
        daemon,
        sink,
        stats,
        ..
    } = &set_up;
    let message = |hops: usize, subject: &str| {
        let trace: String = (0..hops)
            .map(|i| {
                format!(
                    "Received: from hop{i}.example.net (hop{i}.example.net [192.0.2.{i}])\r\n\tby relay{i}.example.net with ESMTP; Sat, 5 Dec 2026 19:47:47 +0000\r\n"
                )
            })
            .collect();
        format!(
            "{trace}From: alice@sender.test\r\nTo: user@example.com\r\nSubject: {subject}\r\n\r\nHello.\r\n"
        )
    };
    let mut c = SmtpClient::connect_ok(postfix.port)?;
    c.ehlo("client.test")?;
    let four = c.send_mail(
        "alice@sender.test",
        &["user@example.com"],
        message(4, "four hops").as_bytes(),
    )?;
    ensure!(
        four.code == 250,
        "4 Received: lines, max_hops 5: {four}\n{}",
        set_up.logs()
    );
    let five = c.send_mail(
        "alice@sender.test",
        &["user@example.com"],
        message(5, "five hops").as_bytes(),
    )?;
    ensure!(
        five.is(554, "5.4.6") && five.to_string().contains("Too many hops (mail loop?)"),
        "5 Received: lines, max_hops 5: {five}\n{}",
        set_up.logs()
    );
    let got = sink
        .wait_for_count(1, DELIVERY_TIMEOUT)
        .with_context(|| set_up.logs())?;
    ensure!(
        got[0].header("Subject").as_deref() == Some("four hops"),
        "the four-hop message is delivered: {:?}",
        got[0].header("Subject")
    );
    let upstream = wait_until(
        "Postfix's milter-reject line",
        Duration::from_secs(10),
        || {
            Ok(postfix
                .log()
                .lines()
                .find(|l| l.contains("milter-reject: END-OF-MESSAGE") && l.contains("5.4.6"))
                .and_then(|l| l.split(": ").nth(1).map(str::to_string)))
        },
    )
    .with_context(|| set_up.logs())?;
    let refusal = |log: &str| {
        log.lines()
            .find(|l| l.contains("Refused in the session.") && l.contains("Too many hops"))
            .map(str::to_string)
    };
    let line = wait_until(
        "the hops refusal's log line",
        Duration::from_secs(10),
        || Ok(refusal(&daemon.full_log())),
    )
    .with_context(|| set_up.logs())?;
    ensure!(
        line.contains("reason=limit refused=transaction ")
            && line.contains(&format!("upstream_id={upstream} "))
            && line.contains("from=alice@sender.test rcpts=1 ")
            && line.contains("reply=\"554 5.4.6 Too many hops (mail loop?)\""),
        "the refusal names Postfix's queue ID {upstream}, the sender and the reply: {line}"
    );
    let rejected = stats
        .scrape()?
        .get("mailward_messages_rejected_total", &[("reason", "limit")]);
    ensure!(rejected == Some(1.0), "counted as refused: {rejected:?}");
    ensure!(
        sink.wait_for_count(2, Duration::from_secs(2)).is_err(),
        "the five-hop message was delivered too"
    );

    // The same five-hop message straight to Mailward's SMTP port: the same
    // reply, and a log line of the same fields.
    let mut direct = SmtpClient::connect_ok(daemon.port)?;
    direct.ehlo("client.test")?;
    let smtp = direct.send_mail(
        "alice@sender.test",
        &["user@example.com"],
        message(5, "five hops").as_bytes(),
    )?;
    ensure!(
        smtp.code == five.code
            && smtp
                .to_string()
                .contains("5.4.6 Too many hops (mail loop?)"),
        "SMTP mode: {smtp}, milter mode: {five}"
    );
    let lines = wait_until(
        "the SMTP refusal's log line",
        Duration::from_secs(10),
        || {
            let log = daemon.full_log();
            let lines: Vec<String> = log
                .lines()
                .filter(|l| l.contains("Refused in the session.") && l.contains("Too many hops"))
                .map(str::to_string)
                .collect();
            Ok((lines.len() == 2).then_some(lines))
        },
    )
    .with_context(|| daemon.log())?;
    ensure!(
        lines[1].contains("reason=limit refused=transaction ")
            && lines[1].contains("from=alice@sender.test rcpts=1 ")
            && lines[1].contains("reply=\"554 5.4.6 Too many hops (mail loop?)\""),
        "SMTP mode's line, for comparison: {}",
        lines[1]
    );
    Ok(())
}

/// walkX findings 3 and 8: with every `max_connections` slot taken, the
/// MTA's next connection waits unaccepted and Postfix gives up on it with
/// its milter_default_action, and nothing said so. Now a WARN line names
/// the limit (once a minute at most), and `mailward status` shows the
/// connections open of the limit, with a problem when all are taken.
#[test]
fn every_milter_slot_taken_is_logged_and_shown_by_status() -> Result<()> {
    let dir = TestDir::new("milter-slots")?;
    let port = free_port();
    let config = Config::new(dir.path())
        .set_str("milter", "listen", &format!("inet:{port}@127.0.0.1"))
        .set("milter", "max_connections", "2");
    let daemon = Daemon::start(&config)?;
    let status = daemon.cli_ok(&["status"])?;
    ensure!(
        status.contains("milter:   0 of 2 connection(s) open\n"),
        "status before any connection:\n{status}"
    );
    // Two MTA connections that say nothing (as Postfix's do while its
    // SMTP clients idle), then a third that is not served.
    let held: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(("127.0.0.1", port)))
        .collect::<std::io::Result<_>>()?;
    let log = wait_until("the WARN line", Duration::from_secs(10), || {
        let log = daemon.full_log();
        Ok(log
            .contains("Every milter connection slot is taken")
            .then_some(log))
    })
    .with_context(|| daemon.full_log())?;
    ensure!(
        log.lines().any(|l| l.contains(" WARN ")
            && l.contains("Every milter connection slot is taken")
            && l.contains("milter_default_action")
            && l.contains("max_connections=2")),
        "the WARN names the limit and what the MTA does:\n{log}"
    );
    let status = wait_until("status to count 2", Duration::from_secs(10), || {
        let s = daemon.cli_ok(&["status"])?;
        Ok(s.contains("milter:   2 of 2 connection(s) open")
            .then_some(s))
    })
    .with_context(|| daemon.cli_ok(&["status"]).unwrap_or_default())?;
    ensure!(
        status.contains("milter:   2 of 2 connection(s) open (all taken: see the problems)")
            && status
                .contains("Every milter connection slot is taken (2 of milter.max_connections 2)"),
        "status with every slot taken:\n{status}"
    );
    let json: serde_json::Value = serde_json::from_str(&daemon.cli_ok(&["status", "--json"])?)?;
    ensure!(
        json["milter_connections"] == 2 && json["milter_max_connections"] == 2,
        "status --json: {json}"
    );
    // The WARN is not repeated for every connection within the minute.
    drop(held);
    let again: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(("127.0.0.1", port)))
        .collect::<std::io::Result<_>>()?;
    std::thread::sleep(Duration::from_secs(1));
    let log = daemon.full_log();
    ensure!(
        log.matches("Every milter connection slot is taken").count() == 1,
        "once a minute at most:\n{log}"
    );
    // But each time is counted, for an alert (mailward_milter_slots_full_total).
    let stats: serde_json::Value =
        serde_json::from_str(&daemon.cli_ok(&["stats", "show", "--json"])?)?;
    ensure!(
        stats["resources"]["mailward_milter_slots_full_total"]
            .as_u64()
            .is_some_and(|n| n >= 2),
        "both times every slot was taken are counted: {}",
        stats["resources"]
    );
    drop(again);
    Ok(())
}

#[test]
fn a_client_that_authenticated_with_the_mta_is_not_held_to_spf_or_dnsbls() -> Result<()> {
    let miltertest = require("miltertest", "miltertest")?;
    let dir = TestDir::new("milter-sasl")?;
    // strict.test sends from nowhere: SPF fails for every client; and the
    // client's address is listed in the scoring zone score.test.
    let dns = Dns::start(
        dir.path(),
        &[
            "--txt-record=strict.test,v=spf1 -all",
            "--host-record=7.2.0.192.score.test,127.0.0.2",
        ],
    )?;
    let port = free_port();
    let config = Config::new(dir.path())
        .set_str("milter", "listen", &format!("inet:{port}@127.0.0.1"))
        .set_str("access", "dns_resolver", &dns.resolver())
        .set_list("spam", "dnsbl", &["score.test:3.0"])
        .set_str("spam", "spf", "reject");
    let daemon = Daemon::start(&config)?;
    // The same client and sender twice. First after SMTP AUTH with
    // Postfix, which sends the user as {auth_authen} with the MAIL macros
    // (submission from home): accepted, and the zone that lists the
    // client's address is not even asked, since whether the client
    // authenticated is known at MAIL, not at connect.
    let prelude = lua_prelude(port);
    let script = format!(
        r#"{prelude}
step("connect", mt.conninfo(conn, "home.example.net", "192.0.2.7"), SMFIR_CONTINUE)
step("helo", mt.helo(conn, "home.example.net"), SMFIR_CONTINUE)
mt.macro(conn, SMFIC_MAIL, "{{auth_authen}}", "alice")
step("mail", mt.mailfrom(conn, "<alice@strict.test>"), SMFIR_CONTINUE)
{}
print("AUTHENTICATED: accepted")
mt.disconnect(conn)
"#,
        lua_message("alice@strict.test", "from home", "Sent from home.")
    );
    let (ok, text) = run_miltertest(&miltertest, &dir, "sasl.lua", &script)?;
    ensure!(
        ok && text.contains("AUTHENTICATED: accepted"),
        "miltertest:\n{text}\n--- mailward log\n{}",
        daemon.log()
    );
    // The log is written by a thread of its own: the line may land a
    // moment after miltertest has its answer.
    let (log, tests) = wait_until("the spam test line", Duration::from_secs(10), || {
        let log = daemon.full_log();
        let line = log
            .lines()
            .find(|l| l.contains("Spam tests."))
            .map(str::to_string);
        Ok(line.map(|l| (log, l)))
    })
    .with_context(|| format!("no spam test line:\n{}", daemon.full_log()))?;
    ensure!(
        !tests.contains("SPF_") && !tests.contains("DMARC_") && !tests.contains("DNSBL_"),
        "no sender authentication or DNSBL score for an authenticated client: {tests}"
    );
    ensure!(log.contains("auth=alice"), "the user is logged:\n{log}");
    ensure!(
        !dns.log().contains("7.2.0.192.score.test"),
        "the DNSBL was asked about an authenticated client:\n{}",
        dns.log()
    );
    // Then as a stranger: refused at MAIL for SPF; and in the same
    // session, from a sender without SPF, accepted with the zone's score.
    let script = format!(
        r#"{prelude}
step("connect", mt.conninfo(conn, "home.example.net", "192.0.2.7"), SMFIR_CONTINUE)
step("helo", mt.helo(conn, "home.example.net"), SMFIR_CONTINUE)
step("mail", mt.mailfrom(conn, "<alice@strict.test>"), SMFIR_REPLYCODE)
print("STRANGER: refused for SPF")
step("mail", mt.mailfrom(conn, "<carol@nospf.test>"), SMFIR_CONTINUE)
{}
print("STRANGER: judged")
mt.disconnect(conn)
"#,
        lua_message("carol@nospf.test", "from a stranger", "Sent from outside.")
    );
    let (ok, text) = run_miltertest(&miltertest, &dir, "stranger.lua", &script)?;
    ensure!(
        ok && text.contains("STRANGER: refused for SPF") && text.contains("STRANGER: judged"),
        "miltertest:\n{text}\n--- mailward log\n{}",
        daemon.log()
    );
    let log = wait_until("the second spam test line", Duration::from_secs(10), || {
        let log = daemon.full_log();
        Ok((log.matches("Spam tests.").count() >= 2).then_some(log))
    })
    .with_context(|| daemon.full_log())?;
    ensure!(
        log.contains("reply=\"550 5.7.23"),
        "the stranger's refusal is SPF's:\n{log}"
    );
    let tests: Vec<&str> = log.lines().filter(|l| l.contains("Spam tests.")).collect();
    ensure!(
        tests.len() == 2 && tests[1].contains("DNSBL_SCORE_TEST"),
        "the stranger's message has the DNSBL score: {tests:?}"
    );
    Ok(())
}

/// walkAF 7 and walkAI 7: a recipient past the milter's bound (10,000 per
/// message, for a runaway MTA) was logged with neither its address nor
/// Postfix's queue ID, and every one of them wrote its own line. Now the
/// first is logged with `to=` and `upstream_id=` (the `i` macro Postfix
/// sends at RCPT once it has a queue ID), the rest once, counted, when
/// the transaction ends; each still counts in the statistics.
#[test]
fn recipients_past_the_milter_bound_are_logged_once_with_address_and_queue_id() -> Result<()> {
    let miltertest = require("miltertest", "miltertest")?;
    let dir = TestDir::new("milter-bound")?;
    let port = free_port();
    let stats = StatsSetup::new(dir.path());
    let config = stats.apply(Config::new(dir.path())).set_str(
        "milter",
        "listen",
        &format!("inet:{port}@127.0.0.1"),
    );
    let daemon = Daemon::start(&config)?;
    // As Postfix: no `i` at MAIL (the last message's must not stand in),
    // `i` with the RCPT macros once the first recipient opened its queue
    // file; 10,003 recipients, the last three past the bound.
    let prelude = lua_prelude(port);
    let script = format!(
        r#"{prelude}
step("connect", mt.conninfo(conn, "client.example.net", "192.0.2.7"), SMFIR_CONTINUE)
step("helo", mt.helo(conn, "client.example.net"), SMFIR_CONTINUE)
mt.macro(conn, SMFIC_MAIL, "{{mail_addr}}", "alice@sender.test")
step("mail", mt.mailfrom(conn, "<alice@sender.test>"), SMFIR_CONTINUE)
step("rcpt", mt.rcptto(conn, "<r1@example.com>"), SMFIR_CONTINUE)
mt.macro(conn, SMFIC_RCPT, "i", "4XyzQ7")
for n = 2, 10000 do
  step("rcpt", mt.rcptto(conn, "<r" .. n .. "@example.com>"), SMFIR_CONTINUE)
end
for n = 10001, 10003 do
  step("rcpt", mt.rcptto(conn, "<r" .. n .. "@example.com>"), SMFIR_REPLYCODE)
end
print("BOUND: three recipients past 10000 refused")
step("header", mt.header(conn, "From", "alice@sender.test"), SMFIR_CONTINUE)
step("header", mt.header(conn, "Subject", "to many"), SMFIR_CONTINUE)
step("eoh", mt.eoh(conn), SMFIR_CONTINUE)
step("body", mt.bodystring(conn, "Hello.\r\n"), SMFIR_CONTINUE)
step("eom", mt.eom(conn), SMFIR_ACCEPT)
print("BOUND: the message judged")
mt.disconnect(conn)
"#
    );
    let (ok, text) = run_miltertest(&miltertest, &dir, "bound.lua", &script)?;
    ensure!(
        ok && text.contains("BOUND: three recipients past 10000 refused")
            && text.contains("BOUND: the message judged"),
        "miltertest:\n{}\n--- mailward log\n{}",
        last_lines(&text, 30),
        daemon.log()
    );
    let log = wait_until("the verdict", Duration::from_secs(10), || {
        let log = daemon.full_log();
        Ok(log.contains("Message accepted.").then_some(log))
    })
    .with_context(|| daemon.log())?;
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Too many recipients"))
        .collect();
    ensure!(
        refused.len() == 2,
        "one line for the first recipient past the bound, one for the rest: {refused:#?}"
    );
    ensure!(
        refused[0].contains("Refused in the session.")
            && refused[0].contains("refused=recipient")
            && refused[0].contains("upstream_id=4XyzQ7 ")
            && refused[0].contains("from=alice@sender.test ")
            && refused[0].contains("to=r10001@example.com "),
        "the first names Postfix's queue ID, the sender and the recipient: {}",
        refused[0]
    );
    ensure!(
        refused[1]
            .contains("Recipients over the milter's 10000 per message refused in this transaction")
            && refused[1].contains("upstream_id=4XyzQ7 ")
            && refused[1].contains("from=alice@sender.test ")
            && refused[1].contains("count=3 "),
        "the rest are counted on one line: {}",
        refused[1]
    );
    ensure!(
        log.lines().any(|l| l.contains("Message from the MTA.")
            && l.contains("upstream_id=4XyzQ7 ")
            && l.contains("rcpts=10000 ")),
        "the message goes on with 10,000 recipients:\n{}",
        daemon.log()
    );
    let counted = stats
        .scrape()?
        .get("mailward_recipients_rejected_total", &[("reason", "limit")]);
    ensure!(
        counted == Some(3.0),
        "every refused recipient is counted: {counted:?}"
    );
    Ok(())
}

/// The steps of a miltertest script from RCPT to end of message: one
/// recipient, a From and a Subject header and a one-line body, accepted.
fn lua_message(from: &str, subject: &str, body: &str) -> String {
    format!(
        r#"step("rcpt", mt.rcptto(conn, "<bob@elsewhere.test>"), SMFIR_CONTINUE)
step("header", mt.header(conn, "From", "{from}"), SMFIR_CONTINUE)
step("header", mt.header(conn, "Subject", "{subject}"), SMFIR_CONTINUE)
step("eoh", mt.eoh(conn), SMFIR_CONTINUE)
step("body", mt.bodystring(conn, "{body}\r\n"), SMFIR_CONTINUE)
step("eom", mt.eom(conn), SMFIR_ACCEPT)"#
    )
}

/// The start of a miltertest script: connect to the milter on `port` and
/// a `step(what, rc, want)` that fails unless the reply is `want`.
fn lua_prelude(port: u16) -> String {
    format!(
        r#"
local conn = mt.connect("inet:{port}@127.0.0.1")
if conn == nil then error("connect failed") end
mt.set_timeout(30)
local function step(what, rc, want)
  if rc ~= nil then error(what .. " failed") end
  local r = mt.getreply(conn)
  if r ~= want then error(what .. ": reply " .. tostring(r)) end
end"#
    )
}

/// Runs a miltertest script written to `name` in `dir`: (exit ok, output).
fn run_miltertest(
    miltertest: &std::path::Path,
    dir: &TestDir,
    name: &str,
    script: &str,
) -> Result<(bool, String)> {
    let path = dir.join(name);
    std::fs::write(&path, script)?;
    let out = Command::new(miltertest)
        .arg("-v")
        .arg("-s")
        .arg(&path)
        .output()
        .context("running miltertest")?;
    Ok((out.status.success(), output_text(&out)))
}

/// The last `n` lines of `text`.
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The time of day of a log line, in seconds (`2026-12-01T18:27:11.771500Z ...`).
fn seconds_of_day(line: &str) -> Option<f64> {
    let time = line.split_whitespace().next()?.split_once('T')?.1;
    let mut hms = time.trim_end_matches('Z').split(':');
    let h: f64 = hms.next()?.parse().ok()?;
    let m: f64 = hms.next()?.parse().ok()?;
    let s: f64 = hms.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// `mailward milter` started by hand; killed on drop.
struct MilterProcess(std::process::Child);

impl Drop for MilterProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn miltertest_scripted_session_against_mailward_milter() -> Result<()> {
    let miltertest = require("miltertest", "miltertest")?;
    let dir = TestDir::new("miltertest")?;
    let port = free_port();
    // A refusing DNSBL zone that the milter does not apply (Postfix
    // decides who may connect): it says so, and lets the client in.
    let config = Config::new(dir.path())
        .set_list("policy", "reject", &["av/infected"])
        .set_list("policy", "mark_subject", &["av/infected"])
        .set_list("access", "dnsbl", &["bl.test"])
        // Not applied in milter mode (the MTA bounds the recipients).
        .set("limits", "max_rcpts_per_message", "2");
    let daemon = Daemon::new(&config)?;
    let bin = mailward_e2e::daemon::mailward_bin()?;
    let log = std::fs::File::create(dir.join("milter.log"))?;
    let listen = format!("inet:{port}@127.0.0.1");
    let child = Command::new(bin)
        .args(["milter", "--config"])
        .arg(daemon.config_path())
        .args(["--listen", &listen])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    let pid = child.id().to_string();
    let _process = MilterProcess(child);
    wait_until("mailward milter to listen", Duration::from_secs(20), || {
        Ok(TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ()))
    })
    .with_context(|| tools::tail(&dir.join("milter.log"), 30))?;
    ensure!(
        TcpStream::connect(("127.0.0.1", config.port)).is_err(),
        "mailward milter opens no SMTP port"
    );
    // A reload keeps what the command line said (no SMTP listener, the
    // --listen socket) without calling it a change that needs a restart.
    let hup = Command::new("kill").args(["-HUP", &pid]).output()?;
    ensure!(hup.status.success(), "kill -HUP: {}", output_text(&hup));
    let log = wait_until("the reload", Duration::from_secs(20), || {
        let log = std::fs::read_to_string(dir.join("milter.log"))?;
        Ok(log
            .contains("The new configuration is in force")
            .then_some(log))
    })?;
    ensure!(
        !log.contains("restart"),
        "a reload of `mailward milter` warns of nothing that needs a restart:\n{log}"
    );
    ensure!(
        log.matches("access.dnsbl is not applied by `mailward milter`")
            .count()
            == 2,
        "the unused access.dnsbl is named at start and at the reload:\n{log}"
    );

    let eicar = String::from_utf8(eicar())?;
    let prelude = lua_prelude(port);
    let script = format!(
        r#"{prelude}
mt.macro(conn, SMFIC_CONNECT, "j", "mta.test", "{{client_addr}}", "192.0.2.7")
step("connect", mt.conninfo(conn, "client.example.net", "192.0.2.7"), SMFIR_CONTINUE)
step("helo", mt.helo(conn, "client.example.net"), SMFIR_CONTINUE)
mt.macro(conn, SMFIC_MAIL, "i", "4XyzQ1")
step("mail", mt.mailfrom(conn, "<alice@sender.test>"), SMFIR_CONTINUE)
step("rcpt", mt.rcptto(conn, "<user@example.com>"), SMFIR_CONTINUE)
step("rcpt", mt.rcptto(conn, "<two@example.com>"), SMFIR_CONTINUE)
step("rcpt", mt.rcptto(conn, "<three@example.com>"), SMFIR_CONTINUE)
print("RCPTS: the third past max_rcpts_per_message = 2 taken")
step("header", mt.header(conn, "From", "alice@sender.test"), SMFIR_CONTINUE)
step("header", mt.header(conn, "Subject", "clean"), SMFIR_CONTINUE)
step("eoh", mt.eoh(conn), SMFIR_CONTINUE)
step("body", mt.bodystring(conn, "Hello.\r\n"), SMFIR_CONTINUE)
step("eom", mt.eom(conn), SMFIR_ACCEPT)
if not mt.eom_check(conn, MT_HDRINSERT, "X-Mailward-AV") then error("no verdict header") end
print("CLEAN: accepted with X-Mailward-AV")
step("mail", mt.mailfrom(conn, "<alice@sender.test>"), SMFIR_CONTINUE)
step("rcpt", mt.rcptto(conn, "<user@example.com>"), SMFIR_CONTINUE)
step("header", mt.header(conn, "Subject", "infected"), SMFIR_CONTINUE)
step("eoh", mt.eoh(conn), SMFIR_CONTINUE)
step("body", mt.bodystring(conn, [[{eicar}]] .. "\r\n"), SMFIR_CONTINUE)
step("eom", mt.eom(conn), SMFIR_REPLYCODE)
print("INFECTED: refused")
mt.disconnect(conn)
"#
    );
    let (ok, text) = run_miltertest(&miltertest, &dir, "session.lua", &script)?;
    if !ok {
        bail!(
            "miltertest failed:\n{text}\n--- mailward milter log\n{}",
            tools::tail(&dir.join("milter.log"), 40)
        );
    }
    ensure!(
        text.contains("CLEAN: accepted with X-Mailward-AV")
            && text.contains("INFECTED: refused")
            && text.contains("RCPTS: the third past"),
        "{text}"
    );
    let log = tools::read_settled(&dir.join("milter.log"))?;
    ensure!(
        log.lines().any(|l| l.contains("Message from the MTA.")
            && l.contains("upstream_id=4XyzQ1 ")
            && l.contains("client=192.0.2.7")),
        "the macros feed the envelope:\n{log}"
    );
    ensure!(
        log.contains("reply=\"550 5.7.1"),
        "the refusal is logged:\n{log}"
    );
    // walkAF 1: Postfix counts a recipient the milter refuses as an
    // error and hangs up after smtpd_hard_error_limit (20), so a client
    // with 121 recipients in one transaction never got its message
    // through; the MTA's own smtpd_recipient_limit bounds them instead.
    ensure!(
        !log.contains("Too many recipients")
            && log.lines().any(|l| l.contains("Message from the MTA.")
                && l.contains("upstream_id=4XyzQ1 ")
                && l.contains("rcpts=3")),
        "limits.max_rcpts_per_message does not refuse recipients in milter mode:\n{log}"
    );
    Ok(())
}
