//! Internationalised domains at the door (walkAR F10, F2): a domain that
//! IDNA would change (a zero-width space, a soft hyphen) is refused at
//! MAIL and RCPT instead of reaching the rules under one spelling and the
//! next hop under another, and a domain written with U-labels or A-labels
//! is one domain for routes and access rules, whichever way the
//! configuration writes it. smtp-sink is the next hop.

use anyhow::{ensure, Result};
use mailward_e2e::*;

const MESSAGE: &[u8] = b"From: alice@sender.test\r\nTo: x@example.com\r\nSubject: idna\r\n\
    Message-ID: <idna.1@sender.test>\r\n\r\nhello\r\n";

#[test]
fn a_domain_idna_would_change_is_refused_and_never_delivered() -> Result<()> {
    let gw = Gateway::start("idna-door", |c| {
        c.set_list(
            "access",
            "rcpt_rules",
            &[
                "deny address *@nou.example",
                "deny address *@b\u{fc}cher.example",
            ],
        )
        .set_list("spam", "blacklist", &["*@spammer.example"])
    })?;
    let mut c = gw.ehlo_client()?;
    // The blacklisted sender behind a soft hyphen.
    c.command("MAIL FROM:<bl@spam\u{ad}mer.example> SMTPUTF8")?
        .expect(553, "5.1.8")?;
    c.mail_ok("<alice@sender.test> SMTPUTF8")?;
    c.command("RCPT TO:<a@nou.example>")?.expect(550, "5.7.1")?;
    // walkAR F10: each of these was 250 and delivered to nou.example.
    for hidden in [
        "a@n\u{200b}ou.example",
        "a@nou\u{ad}.example",
        "a@\u{ff4e}ou.example",
    ] {
        let reply = c.command(&format!("RCPT TO:<{hidden}>"))?;
        reply.expect(553, "5.1.2")?;
        ensure!(reply.text().contains("IDNA"), "{hidden:?}: {reply}");
    }
    // The rule written with the U-label denies the A-label and the
    // U-label alike.
    c.command("RCPT TO:<a@xn--bcher-kva.example>")?
        .expect(550, "5.7.1")?;
    c.command("RCPT TO:<a@B\u{dc}CHER.example>")?
        .expect(550, "5.7.1")?;
    c.command("RCPT TO:<zz@xn--zz.example>")?
        .expect(553, "5.1.2")?;
    c.rcpt_ok("<ok@example.com>")?;
    c.data(MESSAGE)?.expect(250, "2.0.0")?;
    c.quit();
    let got = gw.sink.wait_for_count(1, DELIVERY_TIMEOUT)?;
    ensure!(
        got.len() == 1 && got[0].rcpt_args == ["<ok@example.com>"],
        "only the one allowed recipient may arrive: {got:?}"
    );
    Ok(())
}

#[test]
fn a_route_written_with_u_labels_takes_the_a_label_and_the_other_way_round() -> Result<()> {
    let dir = TestDir::new("idna-routes")?;
    let idn = Sink::start(dir.path(), "idn")?;
    let other = Sink::start(dir.path(), "other")?;
    let config = Config::new(dir.path())
        .route_to_port("*@\u{4f8b}\u{5b50}.\u{6d4b}\u{8bd5}", idn.port)
        .route_to_port("*@xn--mnchen-3ya.test", idn.port)
        .route_to_port("*", other.port);
    let daemon = Daemon::start(&config)?;
    let mut c = SmtpClient::connect_ok(daemon.port)?;
    c.ehlo("client.test")?;
    c.mail_ok("<alice@sender.test> SMTPUTF8")?;
    c.rcpt_ok("<x@xn--fsqu00a.xn--0zwm56d>")?;
    c.rcpt_ok("<m@M\u{dc}nchen.test>")?;
    c.data(MESSAGE)?.expect(250, "2.0.0")?;
    c.quit();
    let mut rcpts = wait_until("two recipients at the IDN hop", DELIVERY_TIMEOUT, || {
        let got = idn.wait_for_count(1, DELIVERY_TIMEOUT)?;
        let rcpts: Vec<String> = got.iter().flat_map(|m| m.rcpt_args.clone()).collect();
        Ok((rcpts.len() >= 2).then_some(rcpts))
    })?;
    rcpts.sort();
    ensure!(
        rcpts == ["<m@xn--mnchen-3ya.test>", "<x@xn--fsqu00a.xn--0zwm56d>"],
        "both at the IDN hop, as A-labels: {rcpts:?}"
    );
    ensure!(other.count() == 0, "mail went to the catch-all route");
    Ok(())
}

/// walkAR F3: one UTF-8 recipient at a hop without SMTPUTF8 (smtp-sink)
/// failed every recipient of that hop; the ASCII one now arrives, sent
/// without SMTPUTF8, and only the UTF-8 one is bounced (5.6.7).
#[test]
fn at_a_hop_without_smtputf8_only_the_utf8_recipient_fails() -> Result<()> {
    let gw = Gateway::start("idna-mixed", |c| c)?;
    let mut c = gw.ehlo_client()?;
    c.mail_ok("<alice@sender.test> SMTPUTF8")?;
    c.rcpt_ok("<bob@example.com>")?;
    c.rcpt_ok("<\u{3b4}\u{3bf}\u{3ba}@example.com>")?;
    c.data(MESSAGE)?.expect(250, "2.0.0")?;
    c.quit();
    // The message to bob, and the report to alice about the other.
    let got = gw.sink.wait_for_count(2, DELIVERY_TIMEOUT)?;
    let mail = got
        .iter()
        .find(|m| m.mail_args.starts_with("<alice@sender.test>"))
        .ok_or_else(|| anyhow::anyhow!("bob's copy did not arrive: {got:?}"))?;
    ensure!(
        mail.rcpt_args == ["<bob@example.com>"]
            && !mail.mail_args.to_ascii_uppercase().contains("SMTPUTF8"),
        "{mail:?}"
    );
    let report = got
        .iter()
        .find(|m| m.mail_args.starts_with("<>"))
        .ok_or_else(|| anyhow::anyhow!("no report: {got:?}"))?;
    ensure!(
        report.message.contains("5.6.7") && !report.message.contains("bob@example.com"),
        "the report names only the UTF-8 recipient:\n{}",
        report.message
    );
    Ok(())
}
