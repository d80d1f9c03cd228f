//! Outbound STARTTLS against a real next hop: a private Postfix smtpd with
//! a certificate from a test CA (openssl), relaying to an smtp-sink, so
//! Postfix's own `Received:` header (smtpd_tls_received_header) says what
//! our connection to it negotiated. One gateway, one route per `tls` mode:
//!
//! - `may` (the default) encrypts, and the delivery log line names the
//!   version and cipher;
//! - `verify` with the CA and the certificate's name encrypts and says
//!   "verified"; with another name it defers with 4.7.5;
//! - `encrypt` to a hop without STARTTLS (the sink itself) defers with 4.7.4;
//! - `may` to a Postfix whose TLS no client of ours can speak (TLSv1.1 and
//!   older only) falls back to plain text, and is counted;
//! - `none` never tries.
//!
//! `mailward_outbound_tls_total` counts each outcome.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use mailward_e2e::postfix::{Postfix, PostfixSetup};
use mailward_e2e::stats::StatsSetup;
use mailward_e2e::tools::{ca_and_leaf, is_root};
use mailward_e2e::*;

const NAME: &str = "mx.verify.test";

fn send(port: u16, rcpt: &str) -> Result<String> {
    let mut c = SmtpClient::connect_ok(port)?;
    c.ehlo("client.test")?;
    let msg =
        format!("From: a@sender.test\r\nTo: {rcpt}\r\nSubject: tls to {rcpt}\r\n\r\nHello.\r\n");
    let id = c.send_mail_ok("a@sender.test", &[rcpt], msg.as_bytes())?;
    c.quit();
    Ok(id)
}

#[test]
fn starttls_modes_against_a_real_postfix() -> Result<()> {
    ensure!(
        is_root(),
        "the private Postfix needs root: run as root (tests/run does)"
    );
    let dir = TestDir::new("outbound-tls")?;
    let sink = Sink::start(dir.path(), "sink")?;
    let (ca, cert, key) = ca_and_leaf(dir.path(), NAME)?;
    let good = Postfix::start(
        dir.path(),
        "tls",
        &PostfixSetup {
            relay_port: sink.port,
            tls: Some((cert.clone(), key.clone())),
            extra: Vec::new(),
            ..Default::default()
        },
    )?;
    // Offers STARTTLS, but only protocols rustls will not speak.
    let old = Postfix::start(
        dir.path(),
        "old-tls",
        &PostfixSetup {
            relay_port: sink.port,
            tls: Some((cert, key)),
            extra: vec!["smtpd_tls_protocols = !TLSv1.2, !TLSv1.3".into()],
            ..Default::default()
        },
    )?;
    let stats = StatsSetup::new(dir.path());
    let hop = |port: u16| format!("[127.0.0.1:{port}]");
    let config = stats
        .apply(Config::new(dir.path()))
        .set_list("log", "options", &["all.info", "delivery.activity"])
        .route("*@may.test", &hop(good.port))
        .route_with(
            "*@verify.test",
            &hop(good.port),
            &[("tls", "verify"), ("tls_ca", &ca), ("tls_name", NAME)],
        )
        .route_with(
            "*@wrongname.test",
            &hop(good.port),
            &[
                ("tls", "verify"),
                ("tls_ca", &ca),
                ("tls_name", "other.test"),
            ],
        )
        .route_with("*@encrypt.test", &hop(sink.port), &[("tls", "encrypt")])
        .route("*@old.test", &hop(old.port))
        .route_with("*@none.test", &hop(good.port), &[("tls", "none")]);
    let daemon = Daemon::start(&config)?;

    let mut ids = std::collections::BTreeMap::new();
    for rcpt in [
        "u@may.test",
        "u@verify.test",
        "u@wrongname.test",
        "u@encrypt.test",
        "u@old.test",
        "u@none.test",
    ] {
        ids.insert(rcpt, send(daemon.port, rcpt)?);
    }
    let arrived = sink.wait_for_count(4, DELIVERY_TIMEOUT)?;
    let received_by_postfix = |rcpt: &str| -> Result<String> {
        let m = arrived
            .iter()
            .find(|m| m.recipients().iter().any(|r| r == rcpt))
            .with_context(|| format!("{rcpt} did not arrive"))?;
        Ok(m.headers()
            .into_iter()
            .find(|(n, v)| n.eq_ignore_ascii_case("received") && v.contains("postfix-"))
            .map(|(_, v)| v)
            .unwrap_or_default())
    };
    for rcpt in ["u@may.test", "u@verify.test"] {
        let r = received_by_postfix(rcpt)?;
        ensure!(
            r.contains("(using TLSv1.3 with cipher") || r.contains("(using TLSv1.2 with cipher"),
            "{rcpt}: Postfix saw no TLS: {r}"
        );
    }
    for rcpt in ["u@none.test", "u@old.test"] {
        let r = received_by_postfix(rcpt)?;
        ensure!(!r.contains("(using TLS"), "{rcpt} went plain: {r}");
    }

    // The whole log: the deferred messages' retries would push the early
    // lines out of the last 80 on a slow machine.
    let log = wait_until("the deferrals", Duration::from_secs(30), || {
        let log = daemon.full_log();
        let deferred = ["u@wrongname.test", "u@encrypt.test"].iter().all(|r| {
            log.lines()
                .any(|l| l.contains("Deferred; will retry.") && l.contains(ids[r].as_str()))
        });
        Ok(deferred.then_some(log))
    })?;
    let line_of = |rcpt: &str, what: &str| {
        log.lines()
            .find(|l| l.contains(what) && l.contains(ids[rcpt].as_str()))
            .unwrap_or("")
            .to_string()
    };
    let may = line_of("u@may.test", "Delivered.");
    ensure!(
        may.contains("tls=\"TLSv1.3 TLS13_"),
        "the log names version and cipher: {may}"
    );
    let verified = line_of("u@verify.test", "Delivered.");
    ensure!(verified.contains(" verified"), "{verified}");
    ensure!(line_of("u@none.test", "Delivered.").contains("tls=none"));
    let wrong = line_of("u@wrongname.test", "Deferred; will retry.");
    ensure!(
        // In the quoted reason `"` is written `\"`.
        wrong.contains(r#"4.7.5 TLS is required (tls = \"verify\")"#),
        "{wrong}"
    );
    let encrypt = line_of("u@encrypt.test", "Deferred; will retry.");
    ensure!(
        encrypt.contains(
            r#"4.7.4 TLS is required (tls = \"encrypt\") but the next hop does not offer STARTTLS"#
        ),
        "{encrypt}"
    );
    // With the message's queue ID, so that grepping it shows why it went
    // in clear text or waits (they were logged without it).
    ensure!(
        !line_of("u@old.test", "STARTTLS failed; delivering in plain text").is_empty(),
        "the fallback is logged with the queue ID of the message it is for:\n{log}"
    );
    for rcpt in ["u@wrongname.test", "u@encrypt.test"] {
        ensure!(
            !line_of(rcpt, "TLS required but not had").is_empty(),
            "the TLS failure is logged with the queue ID of {rcpt}'s message:\n{log}"
        );
    }
    // The warning names the hop as the delivery lines do (name[ip]:port).
    let warned = log
        .lines()
        .find(|l| l.contains("TLS required but not had"))
        .unwrap_or("");
    ensure!(
        warned.contains(&format!("peer=127.0.0.1[127.0.0.1]:{}", sink.port)),
        "the TLS failure names its peer as name[ip]:port: {warned}"
    );

    let m = stats.scrape()?;
    let count = |result: &str| {
        m.get("mailward_outbound_tls_total", &[("result", result)])
            .unwrap_or(0.0)
    };
    ensure!(count("tls") >= 2.0, "tls: {}", count("tls"));
    ensure!(count("fallback") >= 1.0, "fallback: {}", count("fallback"));
    ensure!(count("failed") >= 2.0, "failed: {}", count("failed"));
    ensure!(count("plain") >= 1.0, "plain: {}", count("plain"));
    Ok(())
}

/// walkAA 6: a route's `tls_ca` holding the next hop's own certificate
/// (the recipe's `mx.pem`, CA:FALSE, signed by the test CA) passed
/// `check-config`, and every delivery on the route then deferred with
/// 4.7.5 UnknownIssuer. It is refused, saying what to give instead; the
/// CA itself passes.
#[test]
fn check_config_refuses_a_server_certificate_as_tls_ca() -> Result<()> {
    let dir = TestDir::new("tls-ca-leaf")?;
    let (ca, leaf, _key) = ca_and_leaf(dir.path(), NAME)?;
    let check = |tls_ca: &str| -> Result<std::process::Output> {
        let config = Config::new(dir.path()).route_with(
            "*@verify.test",
            "[127.0.0.1:25]",
            &[("tls", "verify"), ("tls_ca", tls_ca), ("tls_name", NAME)],
        );
        std::fs::write(config.path(), config.render())?;
        Ok(
            std::process::Command::new(mailward_e2e::daemon::mailward_bin()?)
                .args(["check-config", "--config"])
                .arg(config.path())
                .output()?,
        )
    };
    let out = check(&leaf)?;
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    ensure!(out.status.code() == Some(1), "{:?}: {text}", out.status);
    ensure!(
        text.contains(&format!(
            "].tls_ca: {leaf} holds no CA certificate, only a server's own"
        )) && text.contains("the CA that signed the next hop's certificate"),
        "{text}"
    );
    let out = check(&ca)?;
    ensure!(
        out.status.success(),
        "{:?}: {}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    Ok(())
}
