//! STARTTLS with a self-signed certificate made by openssl in the test,
//! driven by `swaks --tls` as a user would.

use anyhow::{ensure, Context, Result};
use mailward_e2e::tools::{output_text, self_signed};
use mailward_e2e::*;

#[test]
fn starttls_is_offered_and_swaks_sends_through_it() -> Result<()> {
    tools::require_swaks_tls()?;
    let dir = TestDir::new("tls")?;
    let (cert, key) = self_signed(dir.path(), "mw.test")?;
    let sink = Sink::start(dir.path(), "sink")?;
    let config = Config::new(dir.path())
        .route_to_port("*", sink.port)
        .set_str("network", "tls_certificate", &cert)
        .set_str("network", "tls_key", &key);
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
