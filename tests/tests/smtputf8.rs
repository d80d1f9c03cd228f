//! SMTPUTF8 (RFC 6531) end to end: UTF-8 addresses in, UTF-8 addresses out
//! to a next hop that offers SMTPUTF8, the same mail to one that does not
//! (Postfix's smtp-sink, whose EHLO has no SMTPUTF8) sent without the
//! parameter when it is ASCII after all and bounced with 5.6.7 when it is
//! not, and the flag surviving a restart in the spool.
//!
//! smtp-sink cannot offer SMTPUTF8, and the harness's scripted server does
//! not either, so the hop that offers it is the small recording server
//! below ([`Utf8Hop`]).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use mailward_e2e::*;

const SENDER: &str = "alice@sender.test";
/// A UTF-8 sender whose domain is a U-label (`xn--bcher-kva.example`).
const UTF8_SENDER: &str = "j\u{fc}rgen@b\u{fc}cher.example";
/// A UTF-8 recipient: Greek local part and domain.
const UTF8_RCPT: &str = "\u{3b4}\u{3bf}\u{3ba}\u{3b9}\u{3bc}\u{3ae}@\u{3c0}\u{3b1}\u{3c1}\u{3ac}\u{3b4}\u{3b5}\u{3b9}\u{3b3}\u{3bc}\u{3b1}.example";

/// The same addresses with their domains as A-labels: an equivalent form
/// (RFC 6531 3.2) that the gateway may pass on instead of the U-labels
/// (docs/smtp.md); the UTF-8 local parts stay either way.
const UTF8_SENDER_A: &str = "j\u{fc}rgen@xn--bcher-kva.example";
const UTF8_RCPT_A: &str = "\u{3b4}\u{3bf}\u{3ba}\u{3b9}\u{3bc}\u{3ae}@xn--hxajbheg2az3al.example";

/// Whether `line` is `template` with `{}` replaced by one of the forms.
fn either(line: &str, template: &str, forms: [&str; 2]) -> bool {
    forms.iter().any(|f| line == template.replace("{}", f))
}

/// A message whose header is UTF-8 (RFC 6532), with an 8-bit body.
fn utf8_message(to: &str) -> Vec<u8> {
    format!(
        "From: {UTF8_SENDER}\r\nTo: {to}\r\nSubject: Gr\u{fc}\u{df}e aus M\u{fc}nchen\r\n\
         Message-ID: <utf8.1@b\u{fc}cher.example>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
         Sch\u{f6}ne Gr\u{fc}\u{df}e.\r\n"
    )
    .into_bytes()
}

/// An all-ASCII header, with an 8-bit body.
fn ascii_header_message() -> Vec<u8> {
    b"From: alice@sender.test\r\nTo: bob@example.com\r\nSubject: plain header\r\n\
      Message-ID: <ascii.1@sender.test>\r\nMIME-Version: 1.0\r\n\
      Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
      Sch\xc3\xb6ne Gr\xc3\xbc\xc3\x9fe.\r\n"
        .to_vec()
}

/// One transaction a [`Utf8Hop`] took to the end of DATA.
#[derive(Debug, Clone, Default)]
struct Taken {
    /// The MAIL command line as sent, parameters included.
    mail: String,
    /// The RCPT command lines as sent.
    rcpts: Vec<String>,
    /// The message (dot-stuffing removed, CRLF kept).
    message: String,
}

/// A next hop that offers 8BITMIME and SMTPUTF8 and records each command
/// line as it came (smtp-sink offers no SMTPUTF8 and writes UTF-8 in its
/// dump's envelope lines as `?`).
struct Utf8Hop {
    port: u16,
    taken: Arc<Mutex<Vec<Taken>>>,
    stop: Arc<AtomicBool>,
}

impl Utf8Hop {
    fn start() -> Result<Utf8Hop> {
        Utf8Hop::start_on(0)
    }

    fn start_on(port: u16) -> Result<Utf8Hop> {
        let listener =
            TcpListener::bind(("127.0.0.1", port)).context("binding the SMTPUTF8 hop")?;
        let port = listener.local_addr()?.port();
        let taken = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (taken, stop) = (taken.clone(), stop.clone());
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let taken = taken.clone();
                    thread::spawn(move || {
                        let _ = serve(stream, &taken);
                    });
                }
            });
        }
        Ok(Utf8Hop { port, taken, stop })
    }

    fn wait_for(&self, n: usize) -> Result<Vec<Taken>> {
        wait_until(
            &format!("{n} message(s) at the SMTPUTF8 hop"),
            DELIVERY_TIMEOUT,
            || {
                let t = self.taken.lock().map(|t| t.clone()).unwrap_or_default();
                Ok((t.len() >= n).then_some(t))
            },
        )
    }
}

impl Drop for Utf8Hop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(stream: TcpStream, taken: &Mutex<Vec<Taken>>) -> Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut out = stream.try_clone()?;
    let mut input = BufReader::new(stream);
    out.write_all(b"220 utf8hop.test ESMTP\r\n")?;
    let mut current: Option<Taken> = None;
    loop {
        let mut raw = Vec::new();
        if input.read_until(b'\n', &mut raw)? == 0 {
            return Ok(());
        }
        let line = String::from_utf8(raw)
            .context("a command line that is not UTF-8")?
            .trim_end_matches(['\r', '\n'])
            .to_string();
        let upper = line.to_ascii_uppercase();
        let reply = if upper.starts_with("EHLO") {
            "250-utf8hop.test\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250 SMTPUTF8"
        } else if upper.starts_with("MAIL FROM:") {
            current = Some(Taken {
                mail: line.clone(),
                ..Taken::default()
            });
            "250 2.1.0 Ok"
        } else if upper.starts_with("RCPT TO:") {
            match current.as_mut() {
                Some(t) => {
                    t.rcpts.push(line.clone());
                    "250 2.1.5 Ok"
                }
                None => "503 5.5.1 Need MAIL",
            }
        } else if upper == "DATA" {
            match current.take() {
                Some(mut t) if !t.rcpts.is_empty() => {
                    out.write_all(b"354 go ahead\r\n")?;
                    let mut data = Vec::new();
                    loop {
                        let mut l = Vec::new();
                        if input.read_until(b'\n', &mut l)? == 0 {
                            return Ok(());
                        }
                        if l == b".\r\n" {
                            break;
                        }
                        let l = l.strip_prefix(b".").unwrap_or(&l);
                        data.extend_from_slice(l);
                    }
                    t.message = String::from_utf8_lossy(&data).into_owned();
                    taken
                        .lock()
                        .map_err(|_| anyhow::anyhow!("poisoned"))?
                        .push(t);
                    "250 2.0.0 Ok: queued"
                }
                _ => "554 5.5.1 No valid recipients",
            }
        } else if upper == "RSET" || upper == "NOOP" {
            current = None;
            "250 2.0.0 Ok"
        } else if upper == "QUIT" {
            out.write_all(b"221 2.0.0 Bye\r\n")?;
            return Ok(());
        } else {
            "502 5.5.2 Command not recognized"
        };
        out.write_all(reply.as_bytes())?;
        out.write_all(b"\r\n")?;
    }
}

/// One SMTPUTF8 transaction from `from` to `rcpts`; the queue ID.
fn send_utf8(port: u16, from: &str, rcpts: &[&str], message: &[u8]) -> Result<String> {
    let mut c = SmtpClient::connect_ok(port)?;
    let ehlo = c.ehlo("client.test")?;
    ensure!(
        ehlo.lines.iter().any(|l| l == "SMTPUTF8"),
        "EHLO lacks SMTPUTF8: {ehlo}"
    );
    c.mail_ok(&format!("<{from}> BODY=8BITMIME SMTPUTF8"))?;
    for rcpt in rcpts {
        c.rcpt_ok(&format!("<{rcpt}>"))?;
    }
    let reply = c.data(message)?;
    reply.expect(250, "2.0.0")?;
    c.quit();
    reply
        .queue_id()
        .with_context(|| format!("no queue ID in {reply}"))
}

#[test]
fn utf8_addresses_reach_a_hop_that_offers_smtputf8_with_the_parameter() -> Result<()> {
    let dir = TestDir::new("utf8-hop")?;
    let hop = Utf8Hop::start()?;
    let idn_hop = Utf8Hop::start()?;
    let sink = Sink::start(dir.path(), "sink")?;
    // The U-label domain is routed by its A-label.
    let config = Config::new(dir.path())
        .route_to_port("*@xn--mller-kva.example", idn_hop.port)
        .route_to_port("*.example", hop.port)
        .route_to_port("*", sink.port);
    let daemon = Daemon::start(&config)?;
    send_utf8(
        daemon.port,
        UTF8_SENDER,
        &[UTF8_RCPT],
        &utf8_message(UTF8_RCPT),
    )?;
    let taken = hop.wait_for(1)?;
    let t = &taken[0];
    ensure!(
        either(
            &t.mail,
            "MAIL FROM:<{}> BODY=8BITMIME SMTPUTF8",
            [UTF8_SENDER, UTF8_SENDER_A]
        ),
        "MAIL as sent: {:?}",
        t.mail
    );
    ensure!(
        t.rcpts.len() == 1 && either(&t.rcpts[0], "RCPT TO:<{}>", [UTF8_RCPT, UTF8_RCPT_A]),
        "RCPT as sent: {:?}",
        t.rcpts
    );
    ensure!(
        t.message
            .contains("Subject: Gr\u{fc}\u{df}e aus M\u{fc}nchen\r\n"),
        "the UTF-8 header arrived changed:\n{}",
        t.message
    );
    // RFC 6531 4.3: the Received line says UTF8SMTP.
    ensure!(
        t.message.contains("(Mailward) with UTF8SMTP id "),
        "no UTF8SMTP in our Received line:\n{}",
        t.message
    );

    send_utf8(
        daemon.port,
        SENDER,
        &["user@m\u{fc}ller.example"],
        &ascii_header_message(),
    )?;
    let taken = idn_hop.wait_for(1)?;
    ensure!(
        taken[0].rcpts.len() == 1
            && either(
                &taken[0].rcpts[0],
                "RCPT TO:<{}>",
                ["user@m\u{fc}ller.example", "user@xn--mller-kva.example"]
            ),
        "a U-label domain is routed by its A-label: {:?}",
        taken[0].rcpts
    );
    ensure!(sink.count() == 0, "mail went to the sink instead");
    Ok(())
}

#[test]
fn a_utf8_address_without_the_smtputf8_parameter_or_malformed_is_refused() -> Result<()> {
    let gw = Gateway::start("utf8-refused", |c| c)?;
    let mut c = gw.ehlo_client()?;
    let reply = c.command(&format!("MAIL FROM:<{UTF8_SENDER}>"))?;
    reply.expect(553, "5.6.7")?;
    ensure!(reply.text().contains("SMTPUTF8"), "{reply}");
    c.mail_ok(&format!("<{SENDER}>"))?;
    let reply = c.command(&format!("RCPT TO:<{UTF8_RCPT}>"))?;
    reply.expect(553, "5.6.7")?;
    ensure!(reply.text().contains("SMTPUTF8"), "{reply}");
    // Only the domain UTF-8: still a UTF-8 address (RFC 6531 3.4).
    c.command("RCPT TO:<bob@b\u{fc}cher.example>")?
        .expect(553, "5.6.7")?;
    // An ORCPT with UTF-8 as it is needs SMTPUTF8 too (RFC 6533).
    c.command("RCPT TO:<bob@example.com> ORCPT=utf-8;j\u{fc}rgen@example.com")?
        .expect(555, "5.5.4")?;
    c.command("RSET")?.expect_code(250)?;
    c.mail_ok(&format!("<{SENDER}> SMTPUTF8"))?;
    c.rcpt_ok("<bob@example.com> ORCPT=utf-8;j\u{fc}rgen@example.com")?;
    c.command("RSET")?.expect_code(250)?;
    // Latin-1 octets and control characters stay refused with SMTPUTF8.
    c.send(b"MAIL FROM:<j\xfcrgen@sender.test> SMTPUTF8\r\n")?;
    let reply = c.read_reply()?;
    reply.expect(553, "5.6.7")?;
    ensure!(reply.text().contains("Malformed UTF-8"), "{reply}");
    c.mail_ok(&format!("<{SENDER}> SMTPUTF8"))?;
    c.send(b"RCPT TO:<bob\xe9@example.com>\r\n")?;
    c.read_reply()?.expect(553, "5.6.7")?;
    c.send("RCPT TO:<bob\u{202e}moc@example.com>\r\n".as_bytes())?;
    c.read_reply()?.expect(553, "5.6.7")?;
    c.quit();
    Ok(())
}

#[test]
fn a_hop_without_smtputf8_gets_ascii_mail_without_the_parameter() -> Result<()> {
    let gw = Gateway::start("utf8-ascii", |c| c)?;
    // SMTPUTF8 asked, but envelope and header are ASCII once the U-label
    // domain is written as its A-label: sent as Postfix sends it.
    send_utf8(
        gw.port(),
        SENDER,
        &["bob@b\u{fc}cher.example"],
        &ascii_header_message(),
    )?;
    let got = gw.sink.wait_for_count(1, DELIVERY_TIMEOUT)?;
    let m = &got[0];
    ensure!(
        !m.mail_args.to_ascii_uppercase().contains("SMTPUTF8"),
        "SMTPUTF8 sent to a hop that does not offer it: {:?}",
        m.mail_args
    );
    ensure!(m.sender() == SENDER, "{:?}", m.mail_args);
    ensure!(
        m.recipients() == ["bob@xn--bcher-kva.example"],
        "{:?}",
        m.rcpt_args
    );
    ensure!(
        m.message.contains("for <bob@xn--bcher-kva.example>;"),
        "{}",
        m.message
    );
    Ok(())
}

/// A UTF-8 recipient at a hop without SMTPUTF8 fails for good with
/// 5.6.7, and the sender gets an RFC 6533 report: to an ASCII sender at a
/// hop without SMTPUTF8 (its own header is ASCII), and to a UTF-8 sender
/// with SMTPUTF8 at a hop that offers it.
#[test]
fn a_utf8_recipient_at_a_hop_without_smtputf8_bounces_with_5_6_7() -> Result<()> {
    let dir = TestDir::new("utf8-bounce")?;
    let dsn_sink = Sink::start(dir.path(), "dsn-sink")?;
    let utf8_dsn_hop = Utf8Hop::start()?;
    let sink = Sink::start(dir.path(), "sink")?;
    let config = Config::new(dir.path())
        .route_to_port("*@sender.test", dsn_sink.port)
        .route_to_port("*@xn--bcher-kva.example", utf8_dsn_hop.port)
        .route_to_port("*", sink.port);
    let daemon = Daemon::start(&config)?;

    send_utf8(daemon.port, SENDER, &[UTF8_RCPT], &ascii_header_message())?;
    let dsns = dsn_sink.wait_for_count(1, DELIVERY_TIMEOUT)?;
    let dsn = &dsns[0];
    let text = &dsn.message;
    ensure!(dsn.sender().is_empty(), "{:?}", dsn.mail_args);
    ensure!(dsn.recipients() == [SENDER], "{:?}", dsn.rcpt_args);
    ensure!(
        !dsn.mail_args.to_ascii_uppercase().contains("SMTPUTF8"),
        "{:?}",
        dsn.mail_args
    );
    ensure!(
        dsn.header("Content-Type")
            .unwrap_or_default()
            .contains("report-type=global-delivery-status"),
        "{text}"
    );
    ensure!(
        text.contains("Content-Type: message/global-delivery-status"),
        "{text}"
    );
    ensure!(
        text.lines().any(|l| either(
            l.trim_end(),
            "Final-Recipient: utf-8; {}",
            [UTF8_RCPT, UTF8_RCPT_A]
        )),
        "{text}"
    );
    ensure!(text.contains("Action: failed"), "{text}");
    ensure!(text.contains("Status: 5.6.7"), "{text}");
    ensure!(
        text.contains("SMTPUTF8 is required, but was not offered by host"),
        "{text}"
    );
    ensure!(sink.count() == 0, "the UTF-8 recipient reached the sink");

    // A UTF-8 sender: the report goes with SMTPUTF8.
    send_utf8(
        daemon.port,
        UTF8_SENDER,
        &[UTF8_RCPT],
        &utf8_message(UTF8_RCPT),
    )?;
    let taken = utf8_dsn_hop.wait_for(1)?;
    let t = &taken[0];
    ensure!(t.mail.starts_with("MAIL FROM:<>"), "{:?}", t.mail);
    ensure!(t.mail.contains(" SMTPUTF8"), "{:?}", t.mail);
    ensure!(
        t.rcpts.len() == 1 && either(&t.rcpts[0], "RCPT TO:<{}>", [UTF8_SENDER, UTF8_SENDER_A]),
        "{:?}",
        t.rcpts
    );
    ensure!(
        t.message.contains(&format!("To: <{UTF8_SENDER}>"))
            || t.message.contains(&format!("To: <{UTF8_SENDER_A}>")),
        "{}",
        t.message
    );
    ensure!(
        t.message.contains("Content-Type: message/global\r\n"),
        "{}",
        t.message
    );
    ensure!(
        t.message
            .contains("Subject: Gr\u{fc}\u{df}e aus M\u{fc}nchen"),
        "the returned message lost its UTF-8 header:\n{}",
        t.message
    );
    wait_until("an empty queue", DELIVERY_TIMEOUT, || {
        Ok(daemon.queue_list()?.is_empty().then_some(()))
    })?;
    Ok(())
}

/// The flag is part of the spooled envelope: a message queued before a
/// restart still goes with SMTPUTF8 after it.
#[test]
fn smtputf8_survives_a_restart_in_the_spool() -> Result<()> {
    let dir = TestDir::new("utf8-restart")?;
    let hop_port = free_port(); // nothing listens there yet
    let config = Config::new(dir.path()).route_to_port("*", hop_port);
    let mut daemon = Daemon::start(&config)?;
    let id = send_utf8(
        daemon.port,
        UTF8_SENDER,
        &[UTF8_RCPT],
        &utf8_message(UTF8_RCPT),
    )?;
    wait_until("a first failed attempt", DELIVERY_TIMEOUT, || {
        let list = daemon.queue_list()?;
        Ok(list
            .iter()
            .any(|m| m["id"] == id.as_str() && m["attempts"].as_u64().unwrap_or(0) >= 1)
            .then_some(()))
    })?;
    daemon.sigterm()?;
    daemon.restart()?;
    let hop = Utf8Hop::start_on(hop_port)?;
    daemon.queue_flush()?;
    let taken = hop.wait_for(1)?;
    ensure!(
        either(
            &taken[0].mail,
            "MAIL FROM:<{}> BODY=8BITMIME SMTPUTF8",
            [UTF8_SENDER, UTF8_SENDER_A]
        ),
        "after the restart: {:?}",
        taken[0].mail
    );
    ensure!(
        taken[0].message.contains(&format!("id {id}")),
        "not the message queued before the restart:\n{}",
        taken[0].message
    );
    Ok(())
}

/// `quarantine release --to` takes a UTF-8 local part (its domain as the
/// A-label, as before) and queues the copy with SMTPUTF8; control
/// characters in it are still refused before anything is sent.
#[test]
fn a_quarantined_message_is_released_to_a_utf8_address_with_smtputf8() -> Result<()> {
    let dir = TestDir::new("utf8-release")?;
    let hop = Utf8Hop::start()?;
    let config = Config::new(dir.path())
        .set_list("policy", "quarantine", &["av/infected"])
        .set_list("policy", "block", &["av/infected"])
        .route_to_port("*", hop.port);
    let daemon = Daemon::start(&config)?;
    let sent = mailward_e2e::samples::infected_message("for the quarantine", "b-utf8")?;
    let mut c = SmtpClient::connect_ok(daemon.port)?;
    c.ehlo("client.test")?;
    let id = c.send_mail_ok(SENDER, &["bob@example.com"], &sent)?;
    c.quit();
    let listed = daemon.cli_ok(&["quarantine", "list", "--json"])?;
    ensure!(listed.contains(&id), "not quarantined: {listed}");

    let out = daemon.cli(&[
        "quarantine",
        "release",
        &id,
        "--to",
        "j\u{85}rgen@example.com",
    ])?;
    ensure!(
        out.status.code() == Some(2),
        "a control character in --to: {:?} {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = daemon.cli_ok(&["quarantine", "release", &id, "--to", UTF8_SENDER])?;
    ensure!(
        out.contains(" to j\u{fc}rgen@xn--bcher-kva.example."),
        "{out}"
    );
    let taken = hop.wait_for(1)?;
    // (The return path of a released message is the release's business,
    // policy.md: only the parameter is checked here.)
    ensure!(
        taken[0].mail.starts_with("MAIL FROM:<") && taken[0].mail.ends_with(" SMTPUTF8"),
        "{:?}",
        taken[0].mail
    );
    ensure!(
        taken[0].rcpts == ["RCPT TO:<j\u{fc}rgen@xn--bcher-kva.example>"],
        "{:?}",
        taken[0].rcpts
    );
    Ok(())
}

/// docs/postfix.md, after-queue content filter: with Postfix's default
/// `smtputf8_enable = yes`, UTF-8 mail goes client -> Postfix -> Mailward
/// -> Postfix's re-injection smtpd -> the next hop with SMTPUTF8 all the
/// way, instead of Postfix bouncing it for want of SMTPUTF8 at Mailward.
#[test]
fn utf8_mail_passes_through_postfix_and_mailward_after_the_queue() -> Result<()> {
    use mailward_e2e::postfix::{Postfix, PostfixSetup};
    ensure!(
        mailward_e2e::tools::is_root(),
        "the private Postfix needs root: run as root (tests/run does)"
    );
    let dir = TestDir::new("utf8-postfix")?;
    let hop = Utf8Hop::start()?;
    let reinject = free_port();
    let config = Config::new(dir.path()).route_to_port("*", reinject);
    let daemon = Daemon::start(&config)?;
    // The transport and re-injection smtpd of docs/postfix.md (as
    // tests/tests/postfix.rs sets them up), Postfix's SMTPUTF8 left at
    // its default.
    let master = vec![
        "mailward unix - - n - 4 smtp".to_string(),
        "  -o smtp_send_xforward_command=yes".into(),
        "  -o disable_mime_output_conversion=yes".into(),
        format!("127.0.0.1:{reinject} inet n - n - - smtpd"),
        "  -o content_filter=".into(),
        "  -o receive_override_options=no_unknown_recipient_checks,no_header_body_checks,no_milters"
            .into(),
        "  -o smtpd_relay_restrictions=permit_mynetworks,reject".into(),
        "  -o mynetworks=127.0.0.0/8".into(),
        "  -o smtpd_authorized_xforward_hosts=127.0.0.0/8".into(),
    ];
    let postfix = Postfix::start(
        dir.path(),
        "utf8",
        &PostfixSetup {
            relay_port: hop.port,
            extra: vec![format!(
                "content_filter = mailward:[127.0.0.1]:{}",
                config.port
            )],
            master,
            ..Default::default()
        },
    )?;
    send_utf8(
        postfix.port,
        UTF8_SENDER,
        &[UTF8_RCPT],
        &utf8_message(UTF8_RCPT),
    )?;
    let taken = hop
        .wait_for(1)
        .with_context(|| format!("{}\n{}", postfix.log(), daemon.log()))?;
    let t = &taken[0];
    ensure!(
        (t.mail.starts_with(&format!("MAIL FROM:<{UTF8_SENDER}>"))
            || t.mail.starts_with(&format!("MAIL FROM:<{UTF8_SENDER_A}>")))
            && t.mail.contains(" SMTPUTF8"),
        "{:?}",
        t.mail
    );
    ensure!(
        t.rcpts
            .iter()
            .any(|r| r.starts_with(&format!("RCPT TO:<{UTF8_RCPT}>"))
                || r.starts_with(&format!("RCPT TO:<{UTF8_RCPT_A}>"))),
        "{:?}",
        t.rcpts
    );
    // Mailward checked it on the way: its verdict and its UTF8SMTP line.
    ensure!(
        t.message.contains("X-Mailward-AV: clean")
            && t.message.contains("(Mailward) with UTF8SMTP"),
        "{}",
        t.message
    );
    ensure!(
        !postfix.log().contains("status=bounced"),
        "{}",
        postfix.log()
    );
    Ok(())
}
