//! STARTTLS with a self-signed certificate made by openssl in the test,
//! driven by `swaks --tls` as a user would.

use anyhow::{ensure, Context, Result};
use mailward_e2e::tools::{output_text, self_signed};
use mailward_e2e::*;
use std::time::Duration;

#[test]
fn starttls_is_offered_and_swaks_sends_through_it() -> Result<()> {
    tools::require_swaks_tls()?;
    let dir = TestDir::new("tls")?;
    let (cert, key) = self_signed(dir.path(), "mw.test")?;
    let sink = Sink::start(dir.path(), "sink")?;
    let metrics_port = tools::free_port();
    let config = Config::new(dir.path())
        .route_to_port("*", sink.port)
        .set_str("network", "tls_certificate", &cert)
        .set_str("network", "tls_key", &key)
        .set_str("metrics", "listen", &format!("127.0.0.1:{metrics_port}"));
    let daemon = Daemon::start(&config)?;

    let mut c = SmtpClient::connect_ok(daemon.port)?;
    let ehlo = c.ehlo("client.test")?;
    assert!(ehlo.lines.iter().any(|l| l == "STARTTLS"), "{ehlo}");
    c.command("STARTTLS")?.expect(220, "2.0.0")?;
    drop(c);

    let out = swaks(&[
        "--server",
        &format!("127.0.0.1:{}", daemon.port),
        "--tls",
        "--ehlo",
        "client.test",
        "--from",
        "alice@sender.test",
        "--to",
        "bob@example.com",
        "--header",
        "Subject: over TLS",
    ])?;
    let transcript = output_text(&out);
    ensure!(out.status.success(), "swaks --tls failed:\n{transcript}");
    // After the handshake swaks marks lines with ~> and <~.
    let queued = transcript
        .lines()
        .find_map(|l| l.strip_prefix("<~  250 2.0.0 Ok: queued as "))
        .with_context(|| format!("no 'queued as' under TLS in:\n{transcript}"))?
        .trim()
        .to_string();
    let m = &sink.wait_for_count(1, DELIVERY_TIMEOUT)?[0];
    assert_eq!(m.queue_ids(), [queued]);
    assert_eq!(m.header("Subject").as_deref(), Some("over TLS"));
    // The Received header says what the session negotiated, as Postfix's
    // smtpd_tls_received_header does.
    let received = m.header("Received").unwrap_or_default();
    ensure!(
        received.contains("(using TLSv1.3 with cipher TLS13_")
            && received.contains("with ESMTPS id"),
        "{received}"
    );
    // walkAG 6: each session's STARTTLS outcome is counted: the first
    // client left after 220 (a failed handshake), swaks made one, and a
    // plain session ends without.
    let mut c = SmtpClient::connect_ok(daemon.port)?;
    c.ehlo("client.test")?;
    c.quit();
    let want = [("tls", 1.0), ("failed", 1.0), ("plain", 1.0)];
    let mut seen = String::new();
    let got = wait_until(
        "the STARTTLS outcomes counted",
        Duration::from_secs(10),
        || {
            let text = prometheus::scrape(metrics_port)?;
            seen = text
                .lines()
                .filter(|l| l.starts_with("mailward_inbound_tls"))
                .collect::<Vec<_>>()
                .join("\n");
            let value = |result: &str| {
                let series = format!("mailward_inbound_tls_total{{result=\"{result}\"}} ");
                text.lines()
                    .find_map(|l| l.strip_prefix(&series))
                    .and_then(|v| v.trim().parse::<f64>().ok())
            };
            let got: Vec<(&str, Option<f64>)> = want.iter().map(|(r, _)| (*r, value(r))).collect();
            Ok(want
                .iter()
                .zip(&got)
                // The harness's readiness probe is a plain session too.
                .all(|((_, w), (_, g))| g.is_some_and(|g| g >= *w))
                .then_some(got))
        },
    )
    .with_context(|| format!("/metrics has:\n{seen}"))?;
    ensure!(
        got[0].1 == Some(1.0) && got[1].1 == Some(1.0),
        "one TLS session and one failed handshake: {got:?}"
    );
    Ok(())
}

#[test]
fn starttls_before_ehlo_is_refused() -> Result<()> {
    let dir = TestDir::new("tls-sequence")?;
    let (cert, key) = self_signed(dir.path(), "mw.test")?;
    let sink = Sink::start(dir.path(), "sink")?;
    let daemon = Daemon::start(
        &Config::new(dir.path())
            .route_to_port("*", sink.port)
            .set_str("network", "tls_certificate", &cert)
            .set_str("network", "tls_key", &key),
    )?;
    let mut c = SmtpClient::connect_ok(daemon.port)?;
    let early = c.command("STARTTLS")?;
    assert_eq!(early.class(), 5, "STARTTLS before EHLO: {early}");
    assert!(early.enhanced().is_some(), "{early}");
    Ok(())
}

/// walkK: check-config said "configuration is valid" for a certificate and
/// a key that do not belong together (a renewal that swapped one file of
/// two), and for a route's `tls_ca` that holds no certificate; `run` then
/// exited, and every delivery on that route deferred 4.7.5.
#[test]
fn check_config_builds_the_tls_configurations() -> Result<()> {
    let dir = TestDir::new("tls-check")?;
    let (a, b) = (dir.join("a"), dir.join("b"));
    std::fs::create_dir_all(&a)?;
    std::fs::create_dir_all(&b)?;
    let (cert, _) = self_signed(&a, "mw.test")?;
    let (_, other_key) = self_signed(&b, "other.test")?;
    let not_a_ca = dir.join("empty-ca.pem");
    std::fs::write(&not_a_ca, "no certificate here\n")?;
    let config = Config::new(dir.path())
        .route_with(
            "*@partner.test",
            "[127.0.0.1:2626]",
            &[
                ("tls", "verify"),
                ("tls_ca", &not_a_ca.display().to_string()),
            ],
        )
        .set_str("network", "tls_certificate", &cert)
        .set_str("network", "tls_key", &other_key);
    let file = dir.join("mailward.toml");
    std::fs::write(&file, config.render())?;
    let out = std::process::Command::new(mailward_e2e::daemon::mailward_bin()?)
        .args(["check-config", "--config", &file.display().to_string()])
        .output()?;
    let text = output_text(&out);
    ensure!(out.status.code() == Some(1), "exit status: {text}");
    ensure!(
        // A key of another certificate is said at tls_key, naming both
        // files (walkAZ F6, F7).
        text.contains(&format!(
            ": network.tls_key: {other_key}: this key does not belong to the certificate in {cert}"
        )) && text.contains(": route[0].tls_ca: "),
        "both problems named with their keys:\n{text}"
    );
    // walkAI 9: the CA problem has the line of `tls_ca` (not line-less,
    // not the `tls` key) and says what to give instead.
    let ca_line = text
        .lines()
        .find(|l| l.contains(": route[0].tls_ca: "))
        .unwrap_or_default();
    let lineno = ca_line
        .split(':')
        .nth(1)
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0);
    ensure!(
        lineno > 0,
        "the tls_ca problem has a line number: {ca_line}"
    );
    ensure!(
        ca_line.contains("give the certificate of the CA"),
        "the tls_ca problem says what to do: {ca_line}"
    );
    ensure!(!text.contains("configuration is valid"), "{text}");
    Ok(())
}

/// walkBJ F2: a certificate that has expired (or soon will) loaded
/// without a word; clients that check it were the first to notice.
/// check-config, the start's log and `mailward status` say it now, with
/// the file, the subject and the date.
#[test]
fn a_certificate_about_to_expire_is_said_everywhere() -> Result<()> {
    let dir = TestDir::new("tls-expiry")?;
    let (cert, key) = mailward_e2e::tools::self_signed_for(dir.path(), "soon.test", 3)?;
    let config = Config::new(dir.path())
        .set_str("network", "tls_certificate", &cert)
        .set_str("network", "tls_key", &key);
    let file = dir.join("expiry.toml");
    std::fs::write(&file, config.render())?;
    let out = std::process::Command::new(mailward_e2e::daemon::mailward_bin()?)
        .args(["check-config", "--config", &file.display().to_string()])
        .output()?;
    let text = output_text(&out);
    let said = format!("the STARTTLS certificate in {cert} (CN=soon.test) expires on ");
    ensure!(
        out.status.success()
            && text.contains(&format!("network.tls_certificate: {said}"))
            && (text.contains(", in 2 day(s): renew it, then `mailward reload`")
                || text.contains(", in 3 day(s): renew it, then `mailward reload`")),
        "check-config warns: {text}"
    );
    let daemon = Daemon::start(&config)?;
    let log = daemon.log();
    ensure!(
        log.lines()
            .any(|l| l.contains("WARN config: The STARTTLS certificate in")
                && l.contains("(CN=soon.test) expires on ")),
        "the start says it: {log}"
    );
    let status = daemon.cli(&["status"])?;
    let text = output_text(&status);
    ensure!(
        text.contains(&format!(
            "The STARTTLS certificate in {cert} (CN=soon.test) expires on "
        )),
        "`mailward status` lists it: {text}"
    );
    Ok(())
}
