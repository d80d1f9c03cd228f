//! Mailward beside a real Postfix (docs/postfix.md), each way a site can
//! put it there, with a private Postfix (own config and queue directories,
//! loopback ports) relaying to an smtp-sink:
//!
//! - **after-queue content filter** (`content_filter`): Postfix hands each
//!   queued message to Mailward, which checks it and re-injects it into
//!   Postfix's second smtpd. EICAR arrives cleaned with the verdict, a
//!   clean message byte for byte (trace headers apart), Postfix's queue
//!   ends empty, Mailward down means Postfix defers and delivers once it
//!   is back, and XFORWARD puts the original client in the raw record;
//! - **before-queue proxy** (`smtpd_proxy_filter`): the verdict is given in
//!   the client's own session: `reject = ["av/infected"]` makes swaks see
//!   550 5.7.1 from Postfix, and nothing is queued anywhere.
//!
//! The client talks from 127.0.0.2 so that the original client differs
//! from the Postfix that forwards it (127.0.0.1). Mailward's
//! `relay_networks` (127.0.0.0/8, tests/src/config.rs) is what the private
//! Postfix's `mynetworks` lists (tests/resources/postfix/main.cf), as the
//! recipes in docs/postfix.md ask: the forwarded client is one of ours.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use mailward_e2e::postfix::{Postfix, PostfixSetup};
use mailward_e2e::samples::infected_message;
use mailward_e2e::stats::StatsSetup;
use mailward_e2e::tools::{is_root, swaks_message};
use mailward_e2e::*;

/// Where the original client connects from.
const CLIENT_IP: &str = "127.0.0.2";
const CLIENT_HELO: &str = "origin.client.test";

fn infected(subject: &str) -> Result<Vec<u8>> {
    infected_message(subject, "b-postfix")
}

/// A clean message with every header Postfix would otherwise add.
fn clean(n: u32) -> Vec<u8> {
    format!(
        "From: Alice <alice@sender.test>\r\nTo: user@example.com\r\nSubject: clean {n}\r\n\
         Date: Tue, 01 Dec 2026 10:00:00 +0000\r\nMessage-ID: <clean-{n}@sender.test>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         Line one of message {n}.\r\n..a line that starts with a dot\r\n\r\nThe end.\r\n"
    )
    .into_bytes()
}

/// swaks to Postfix from the original client's address; the transcript.
fn swaks_via(dir: &TestDir, port: u16, name: &str, message: &[u8]) -> Result<(bool, String)> {
    let extra = ["--local-interface", CLIENT_IP, "--ehlo", CLIENT_HELO];
    swaks_message(dir.path(), port, name, "user@example.com", message, &extra)
}

/// The message without trace fields (`Received:`, ours `X-Mailward-*`),
/// with LF line ends and without trailing empty lines: what must be
/// unchanged end to end.
fn without_trace(message: &[u8]) -> String {
    let text = String::from_utf8_lossy(message).replace("\r\n", "\n");
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let mut kept = String::new();
    let mut dropping = false;
    for line in head.lines() {
        if !line.starts_with([' ', '\t']) {
            let lower = line.to_ascii_lowercase();
            dropping = lower.starts_with("received:") || lower.starts_with("x-mailward-");
        }
        if !dropping {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    // swaks puts one more CRLF before the final dot than the file has:
    // trailing empty lines are its, not ours.
    format!("{kept}\n{}", body.trim_end_matches('\n'))
}

/// master.cf lines of the smtpd Mailward re-injects into (Postfix's
/// FILTER_README): no second filter, no repeated checks, XFORWARD taken
/// from Mailward so Postfix's log names the original client too.
fn reinjection(port: u16) -> Vec<String> {
    [
        &format!("127.0.0.1:{port} inet n - n - - smtpd"),
        "  -o content_filter=",
        "  -o receive_override_options=no_unknown_recipient_checks,no_header_body_checks,no_milters",
        "  -o smtpd_helo_restrictions=",
        "  -o smtpd_client_restrictions=",
        "  -o smtpd_sender_restrictions=",
        "  -o smtpd_recipient_restrictions=",
        "  -o smtpd_relay_restrictions=permit_mynetworks,reject",
        "  -o mynetworks=127.0.0.0/8",
        "  -o smtpd_authorized_xforward_hosts=127.0.0.0/8",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A private Postfix that hands every queued message to Mailward on
/// `filter_port` (`content_filter`, the doc's `mailward` transport) and
/// takes it back on `reinject`, relaying to `relay_port`.
fn after_queue_postfix(
    dir: &TestDir,
    name: &str,
    filter_port: u16,
    reinject: u16,
    relay_port: u16,
) -> Result<Postfix> {
    let mut master = vec![
        "mailward unix - - n - 4 smtp".to_string(),
        "  -o smtp_send_xforward_command=yes".into(),
        "  -o disable_mime_output_conversion=yes".into(),
        "  -o smtp_generic_maps=".into(),
        "  -o smtp_connection_reuse_count_limit=90".into(),
    ];
    master.extend(reinjection(reinject));
    Postfix::start(
        dir.path(),
        name,
        &PostfixSetup {
            relay_port,
            extra: vec![format!(
                "content_filter = mailward:[127.0.0.1]:{filter_port}"
            )],
            master,
            ..Default::default()
        },
    )
}

#[test]
fn after_queue_content_filter() -> Result<()> {
    ensure!(
        is_root(),
        "the private Postfix needs root: run as root (tests/run does)"
    );
    let dir = TestDir::new("postfix-after-queue")?;
    let sink = Sink::start(dir.path(), "sink")?;
    let reinject = free_port();
    let stats = StatsSetup::new(dir.path());
    let config = stats
        .apply(Config::new(dir.path()))
        .route_to_port("*", reinject);
    let mut daemon = Daemon::start(&config)?;
    let postfix = after_queue_postfix(&dir, "after", config.port, reinject, sink.port)?;

    // EICAR: cleaned by Mailward, delivered by Postfix with the verdict.
    let (ok, transcript) = swaks_via(&dir, postfix.port, "eicar", &infected("invoice")?)?;
    ensure!(ok, "Postfix refused the message: {transcript}");
    let got = sink
        .wait_for_count(1, DELIVERY_TIMEOUT)
        .with_context(|| format!("{}\n{}", postfix.log(), daemon.log()))?;
    let m = &got[0];
    ensure!(
        m.header("X-Mailward-AV")
            .is_some_and(|h| h.starts_with("infected")),
        "no infected verdict at the sink:\n{}",
        m.message
    );
    ensure!(
        !m.message.contains("invoice.zip\"") && m.message.contains("Please see the attachment."),
        "the infected part is removed, the text kept:\n{}",
        m.message
    );
    let received: Vec<String> = m
        .headers()
        .into_iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("received"))
        .map(|(_, v)| v)
        .collect();
    let ours = received
        .iter()
        .find(|v| v.contains("(Mailward)"))
        .context("no Received of ours")?;
    ensure!(
        ours.contains(CLIENT_HELO) && ours.contains(&format!("[{CLIENT_IP}]")),
        "our Received names the original client (XFORWARD): {ours}"
    );

    // A clean message: byte for byte, apart from trace fields.
    let sent = clean(1);
    let (ok, transcript) = swaks_via(&dir, postfix.port, "clean", &sent)?;
    ensure!(ok, "Postfix refused the message: {transcript}");
    let got = sink.wait_for_count(2, DELIVERY_TIMEOUT)?;
    let m = got
        .iter()
        .find(|m| m.message.contains("Subject: clean 1"))
        .context("the clean message did not arrive")?;
    ensure!(
        m.header("X-Mailward-AV")
            .is_some_and(|h| h.starts_with("clean")),
        "clean verdict: {:?}",
        m.header("X-Mailward-AV")
    );
    // Mailward passes the client on to the re-injection smtpd (XFORWARD):
    // Postfix's log of the re-injected message names it and our queue ID.
    let ours = m.queue_ids();
    let id = ours.first().context("no queue ID of ours at the sink")?;
    let line = format!("orig_queue_id={id}, orig_client=unknown[{CLIENT_IP}]");
    ensure!(
        postfix.log().contains(&line),
        "Postfix's re-injection log names the original client ({line}):\n{}",
        postfix.log()
    );
    let (want, have) = (without_trace(&sent), without_trace(m.message.as_bytes()));
    ensure!(
        want == have,
        "the clean message changed on the way:\n--- sent\n{want}\n--- arrived\n{have}"
    );
    postfix.wait_queue_empty(Duration::from_secs(30))?;

    // The raw records and statistics see the original client.
    let raw = stats.raw_lines()?;
    ensure!(raw.len() == 2, "{} raw records, want 2", raw.len());
    for r in &raw {
        ensure!(
            r.client_ip == CLIENT_IP && r.mode == "filter",
            "raw record with client {} and mode {}, want {CLIENT_IP} and filter: {}",
            r.client_ip,
            r.mode,
            r.line
        );
    }
    let log = daemon.log();
    ensure!(
        log.lines().any(|l| l.contains("Message accepted.")
            && l.contains("forwarded_by=127.0.0.1")
            && l.contains("mode=filter ")),
        "the log names the forwarding MTA:\n{log}"
    );
    let metrics = stats.scrape()?;
    ensure!(
        metrics.get("mailward_messages_checked_total", &[("mode", "filter")]) == Some(2.0),
        "mailward_messages_checked_total{{mode=\"filter\"}}: {:?}",
        metrics.get("mailward_messages_checked_total", &[("mode", "filter")])
    );

    // Mailward down: Postfix defers (never bounces), and delivers once it
    // is back.
    daemon.sigterm()?;
    let (ok, transcript) = swaks_via(&dir, postfix.port, "while-down", &clean(2))?;
    ensure!(
        ok,
        "Postfix must take the message while Mailward is down: {transcript}"
    );
    let deferred = wait_until(
        "Postfix to defer the message",
        Duration::from_secs(30),
        || {
            let q = postfix.queue()?;
            let reason = q
                .iter()
                .flat_map(|m| m["recipients"].as_array().cloned().unwrap_or_default())
                .filter_map(|r| r["delay_reason"].as_str().map(str::to_string))
                .next();
            Ok(reason)
        },
    )?;
    ensure!(
        deferred.contains("Connection refused"),
        "deferred because Mailward is not there: {deferred}"
    );
    ensure!(
        !postfix.log().contains("status=bounced"),
        "Postfix bounced:\n{}",
        postfix.log()
    );
    daemon.restart()?;
    postfix.flush()?;
    let got = sink.wait_for_count(3, DELIVERY_TIMEOUT)?;
    ensure!(
        got.iter().any(|m| m.message.contains("Subject: clean 2")),
        "the deferred message arrived once Mailward was back"
    );
    postfix.wait_queue_empty(Duration::from_secs(30))?;
    Ok(())
}

/// After the queue, a refusal would make Postfix bounce the message to
/// its sender (who may be forged): with `network.after_queue`, a status in
/// `reject` is a block instead, at the end of DATA (a virus) and at RCPT
/// (a blacklisted client, named by XFORWARD), and Postfix bounces nothing.
#[test]
fn after_queue_refusals_become_blocks_not_bounces() -> Result<()> {
    ensure!(
        is_root(),
        "the private Postfix needs root: run as root (tests/run does)"
    );
    let dir = TestDir::new("postfix-after-queue-reject")?;
    let sink = Sink::start(dir.path(), "sink")?;
    let reinject = free_port();
    let stats = StatsSetup::new(dir.path());
    let config = stats
        .apply(Config::new(dir.path()))
        .set("network", "after_queue", "true")
        .set_list("policy", "reject", &["av/infected", "as/blacklisted"])
        .set_list("spam", "blacklist", &[&format!("ip {CLIENT_IP}")])
        .route_to_port("*", reinject);
    let daemon = Daemon::start(&config)?;
    let postfix = after_queue_postfix(&dir, "after-reject", config.port, reinject, sink.port)?;
    // From a client that is not blacklisted: a virus, then a clean message.
    let other = ["--local-interface", "127.0.0.3", "--ehlo", CLIENT_HELO];
    let eicar = infected("invoice")?;
    let (ok, t) = swaks_message(
        dir.path(),
        postfix.port,
        "eicar",
        "user@example.com",
        &eicar,
        &other,
    )?;
    ensure!(ok, "Postfix refused the message: {t}");
    // From the blacklisted client (Mailward learns it from XFORWARD).
    let (ok, t) = swaks_via(&dir, postfix.port, "blacklisted", &clean(4))?;
    ensure!(ok, "Postfix refused the message: {t}");
    let (ok, t) = swaks_message(
        dir.path(),
        postfix.port,
        "clean",
        "user@example.com",
        &clean(5),
        &other,
    )?;
    ensure!(ok, "Postfix refused the message: {t}");

    let got = sink.wait_for_count(1, DELIVERY_TIMEOUT)?;
    postfix.wait_queue_empty(Duration::from_secs(30))?;
    let got = sink.settle(Duration::from_secs(3)).unwrap_or(got);
    let subjects: Vec<String> = got
        .iter()
        .map(|m| m.header("Subject").unwrap_or_default())
        .collect();
    ensure!(
        subjects == ["clean 5"],
        "only the clean message arrives, and no bounce: {subjects:?}\n{}",
        postfix.log()
    );
    ensure!(
        !postfix.log().contains("status=bounced"),
        "Postfix bounced:\n{}",
        postfix.log()
    );
    let m = stats.scrape()?;
    ensure!(
        m.get("mailward_messages_blocked_total", &[]) == Some(2.0)
            && m.get("mailward_messages_rejected_total", &[("reason", "policy")])
                .unwrap_or(0.0)
                == 0.0,
        "two blocks, no refusal: blocked {:?}, refused {:?}\n{}",
        m.get("mailward_messages_blocked_total", &[]),
        m.get("mailward_messages_rejected_total", &[("reason", "policy")]),
        daemon.log()
    );
    let raw = stats.raw_lines()?;
    for status in ["av/infected", "as/blacklisted"] {
        ensure!(
            raw.iter().any(|r| r.status == status),
            "a raw record of the {status} message: {:?}",
            raw.iter().map(|r| &r.line).collect::<Vec<_>>()
        );
    }
    // The log tells these blocks from configured ones (walkBQ F5), after
    // the verdict they come from (walkBO F3).
    let log = daemon.full_log();
    let lines: Vec<&str> = log.lines().collect();
    for status in ["av/infected", "as/blacklisted"] {
        let said = lines.iter().position(|l| {
            l.contains("The refusal of this group becomes a block")
                && l.contains(&format!("status={status}"))
        });
        let checked = said.and_then(|i| {
            let id = lines[i]
                .split_whitespace()
                .find(|w| w.starts_with("queue_id="))?;
            lines[..i]
                .iter()
                .position(|l| l.contains("Message checked.") && l.contains(id))
        });
        ensure!(
            checked.is_some(),
            "the {status} block is said to be a refusal, after its verdict:\n{log}"
        );
    }
    Ok(())
}

#[test]
fn before_queue_proxy_refuses_in_the_clients_session() -> Result<()> {
    ensure!(
        is_root(),
        "the private Postfix needs root: run as root (tests/run does)"
    );
    let dir = TestDir::new("postfix-before-queue")?;
    let sink = Sink::start(dir.path(), "sink")?;
    let reinject = free_port();
    let stats = StatsSetup::new(dir.path());
    let config = stats
        .apply(Config::new(dir.path()))
        .set_list("policy", "reject", &["av/infected"])
        .route_to_port("*", reinject);
    let daemon = Daemon::start(&config)?;
    let postfix = Postfix::start(
        dir.path(),
        "before",
        &PostfixSetup {
            relay_port: sink.port,
            smtpd_options: vec![
                format!("smtpd_proxy_filter=127.0.0.1:{}", config.port),
                "smtpd_proxy_options=speed_adjust".into(),
            ],
            master: reinjection(reinject),
            ..Default::default()
        },
    )?;

    let (ok, transcript) = swaks_via(&dir, postfix.port, "eicar", &infected("invoice")?)?;
    ensure!(
        !ok && transcript.contains("<** 550 5.7.1"),
        "the client must see 550 5.7.1 from Postfix:\n{transcript}"
    );
    postfix.wait_queue_empty(Duration::from_secs(5))?;
    ensure!(
        daemon.queue_ids()?.is_empty(),
        "nothing is queued in Mailward either"
    );

    // A clean message goes through (Mailward -> re-injection -> sink).
    let (ok, transcript) = swaks_via(&dir, postfix.port, "clean", &clean(3))?;
    ensure!(ok, "the clean message was refused:\n{transcript}");
    let got = sink.wait_for_count(1, DELIVERY_TIMEOUT)?;
    ensure!(got.len() == 1 && got[0].message.contains("Subject: clean 3"));
    // Three trace lines, as docs/postfix.md shows them: the re-injection
    // smtpd's (its client is Mailward), Mailward's (its client is the
    // original one, from XFORWARD) and the public smtpd's (no queue ID:
    // it proxied the message before queueing it). Mailward's is kept on
    // purpose: an SMTP server that relays adds its trace line (RFC 5321
    // 4.4), as any MTA in Postfix's smtpd_proxy_filter slot does.
    let received: Vec<String> = got[0]
        .headers()
        .into_iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("received"))
        .map(|(_, v)| v)
        .collect();
    let client = format!("from {CLIENT_HELO} (unknown [{CLIENT_IP}])");
    ensure!(
        received.len() == 3
            && received[0].contains("[127.0.0.1])")
            && received[0].contains("by postfix-before.test (Postfix)")
            && received[1].starts_with(&client)
            && received[1].contains("(Mailward) with ESMTP id ")
            && received[2].starts_with(&client)
            && received[2].contains("by postfix-before.test (Postfix) with ESMTP")
            && !received[2].contains(" id "),
        "the trace lines of a proxied message: {received:#?}"
    );
    postfix.wait_queue_empty(Duration::from_secs(30))?;
    std::thread::sleep(Duration::from_millis(300));
    ensure!(sink.count() == 1, "the refused message never arrives");

    let raw = stats.raw_lines()?;
    ensure!(
        raw.iter()
            .any(|r| r.status == "av/infected" && r.client_ip == CLIENT_IP),
        "the refusal is recorded for the original client: {:?}",
        raw.iter().map(|r| &r.line).collect::<Vec<_>>()
    );
    let log = daemon.log();
    ensure!(
        log.lines().any(|l| l.contains("Refused in the session.")
            && l.contains(&format!("client={CLIENT_IP} "))),
        "the refusal's log line names the original client, not Postfix:\n{log}"
    );
    let m = stats.scrape()?;
    ensure!(
        m.get("mailward_messages_rejected_total", &[("reason", "policy")]) == Some(1.0),
        "one refusal by policy: {:?}",
        m.get("mailward_messages_rejected_total", &[("reason", "policy")])
    );
    Ok(())
}

/// walkAF 9, as docs/postfix.md "Your own users" says it: for mail
/// submitted locally (`sendmail`) Postfix's after-queue transport sends
/// only `XFORWARD SOURCE=LOCAL`, so Mailward counts it as `mode=filter`
/// (forwarded by Postfix) with the Postfix host as its client and no
/// `upstream_id` (no IDENT); a transport without XFORWARD (the
/// `mailward-out` submission recipe) is plain `mode=smtp`. The commands
/// are Postfix's, sent by hand (the private Postfix has no `sendmail`
/// path of its own).
#[test]
fn local_submissions_and_the_submission_transport_are_logged_as_documented() -> Result<()> {
    let dir = TestDir::new("postfix-local-source")?;
    let sink = Sink::start(dir.path(), "sink")?;
    let config = Config::new(dir.path()).route_to_port("*", sink.port);
    let daemon = Daemon::start(&config)?;
    let mut c = SmtpClient::connect_ok(config.port)?;
    c.ehlo("postfix.test")?;
    c.command("XFORWARD SOURCE=LOCAL")?.expect_code(250)?;
    c.send_mail_ok("alice@sender.test", &["user@example.com"], &clean(7))?;
    c.send_mail_ok("alice@sender.test", &["user@example.com"], &clean(8))?;
    let lines = wait_until("two Message accepted. lines", DELIVERY_TIMEOUT, || {
        let lines: Vec<String> = daemon
            .full_log()
            .lines()
            .filter(|l| l.contains("Message accepted."))
            .map(str::to_string)
            .collect();
        Ok((lines.len() == 2).then_some(lines))
    })
    .with_context(|| daemon.log())?;
    ensure!(
        lines[0].contains("client=127.0.0.1 ")
            && lines[0].contains("mode=filter forwarded_by=127.0.0.1")
            && !lines[0].contains("upstream_id="),
        "local submission (XFORWARD SOURCE=LOCAL only): {}",
        lines[0]
    );
    ensure!(
        lines[1].contains("client=127.0.0.1 ")
            && lines[1].contains("mode=smtp")
            && !lines[1].contains("forwarded_by=")
            && !lines[1].contains("upstream_id="),
        "without XFORWARD (the submission transport): {}",
        lines[1]
    );
    Ok(())
}
