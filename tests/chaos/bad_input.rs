//! The bad-input corpus: each hostile or broken input must get the reply a
//! careful MTA gives (or a clean close), and the daemon must stay up and
//! keep taking mail after all of them.

use std::time::Duration;

use anyhow::{Context, Result};
use mailward_e2e::tools::self_signed;
use mailward_e2e::{Gateway, Reply, SmtpClient};

use crate::report::Report;
use crate::Length;

const CASE: &str = "bad-input";
const MESSAGE: &[u8] = b"Subject: hi\r\n\r\nHello.\r\n";

/// Runs one input; a failure to even run it counts as "wrong reply".
fn case(r: &mut Report, name: &str, f: impl FnOnce() -> Result<bool>) {
    match f() {
        Ok(ok) => r.check(CASE, name, ok),
        Err(e) => {
            println!("{CASE:<12}   {name}: {e:#}");
            r.check(CASE, name, false);
        }
    }
}

fn transaction(c: &mut SmtpClient) -> Result<()> {
    c.command("MAIL FROM:<a@example.com>")?.expect_code(250)?;
    c.command("RCPT TO:<b@example.com>")?.expect_code(250)?;
    Ok(())
}

/// A message nested `depth` multiparts deep.
fn deep_multipart(depth: usize) -> Vec<u8> {
    let mut m = String::from("Subject: deep\r\nMIME-Version: 1.0\r\n");
    for i in 0..depth {
        m.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n"
        ));
    }
    m.push_str("Content-Type: text/plain\r\n\r\nthe bottom\r\n");
    for i in (0..depth).rev() {
        m.push_str(&format!("--b{i}--\r\n"));
    }
    m.into_bytes()
}

/// A message of `parts` small text parts side by side.
fn wide_multipart(parts: usize) -> Vec<u8> {
    let mut m = String::from(
        "Subject: wide\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"w\"\r\n\r\n",
    );
    for i in 0..parts {
        m.push_str(&format!(
            "--w\r\nContent-Type: text/plain\r\n\r\npart {i}\r\n"
        ));
    }
    m.push_str("--w--\r\n");
    m.into_bytes()
}

/// A header section of about 2 MB (many short fields, no line over 998).
/// A header section of `fields` fields of about 100 octets each.
fn big_header(fields: usize) -> Vec<u8> {
    let mut m = String::with_capacity(fields * 105 + 64);
    for i in 0..fields {
        m.push_str(&format!("X-Filler-{i}: {}\r\n", "y".repeat(90)));
    }
    m.push_str("Subject: big header\r\n\r\nbody\r\n");
    m.into_bytes()
}

fn is(reply: &Result<Reply>, code: u16, enhanced: &str) -> bool {
    reply.as_ref().is_ok_and(|r| r.is(code, enhanced))
}

pub fn run(r: &mut Report, _len: Length) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (cert, key) = self_signed(dir.path(), "mw.test")?;
    let mut gw = Gateway::start("chaos-bad-input", |c| {
        c.set_str("network", "tls_certificate", &cert)
            .set_str("network", "tls_key", &key)
    })?;
    let port = gw.port();
    let ehlo = || -> Result<SmtpClient> {
        let mut c = SmtpClient::connect_ok(port)?;
        c.ehlo("client.test")?;
        Ok(c)
    };

    case(r, "10 KB command line: 500 5.5.2", || {
        let mut c = ehlo()?;
        Ok(is(
            &c.command(&format!("EHLO {}", "x".repeat(10_000))),
            500,
            "5.5.2",
        ))
    });
    case(r, "NUL in an address: 5xx", || {
        let mut c = ehlo()?;
        Ok(c.command("MAIL FROM:<a\0b@example.com>")?.class() == 5)
    });
    case(r, "bare CR in a command: answered, session on", || {
        let mut c = ehlo()?;
        c.send(b"NOOP\rRSET\r\n")?;
        let first = c.read_reply()?;
        Ok(first.code < 600 && c.command("NOOP")?.code == 250)
    });
    case(r, "bare LF line ends: answered", || {
        let mut c = SmtpClient::connect_ok(port)?;
        c.send(b"EHLO client.test\nNOOP\n")?;
        let first = c.read_reply()?;
        Ok(first.code == 250 && c.read_reply()?.code == 250)
    });
    case(r, "smuggling (LF . CRLF): one message, no second", || {
        let mut c = ehlo()?;
        transaction(&mut c)?;
        c.command("DATA")?.expect_code(354)?;
        c.send(
            b"Subject: smuggle-test\r\n\r\nbody\n.\r\nMAIL FROM:<evil@example.com>\r\n\
              RCPT TO:<victim@example.com>\r\nDATA\r\n\r\nsmuggled\r\n.\r\n",
        )?;
        let end = c.read_reply()?;
        let next = c.command("NOOP")?;
        let sink = gw.sink.wait_for_count(1, Duration::from_secs(30))?;
        let smuggles: Vec<_> = sink
            .iter()
            .filter(|m| m.header("Subject").as_deref() == Some("smuggle-test"))
            .collect();
        Ok(end.code == 250
            && next.code == 250
            && smuggles.len() == 1
            && smuggles[0].body().contains("smuggled")
            && sink.iter().all(|m| m.sender() != "evil@example.com"))
    });
    case(r, "broken parameters: 555 5.5.4", || {
        let mut c = ehlo()?;
        let a = c.command("MAIL FROM:<a@example.com> SIZE=abc");
        let b = c.command("MAIL FROM:<a@example.com> BODY=9BIT");
        c.command("MAIL FROM:<a@example.com>")?.expect_code(250)?;
        let d = c.command("RCPT TO:<b@example.com> NOTIFY=SOMETIMES");
        Ok(is(&a, 555, "5.5.4") && is(&b, 555, "5.5.4") && is(&d, 555, "5.5.4"))
    });
    case(r, "1,000 RCPTs: 100 taken, the rest 452 4.5.3", || {
        let mut c = ehlo()?;
        c.command("MAIL FROM:<a@example.com>")?.expect_code(250)?;
        let mut lines = Vec::new();
        for n in 0..1000 {
            lines.extend_from_slice(format!("RCPT TO:<r{n}@example.com>\r\n").as_bytes());
        }
        c.send(&lines)?;
        let (mut ok, mut full) = (0, 0);
        for _ in 0..1000 {
            let reply = c.read_reply()?;
            if reply.code == 250 {
                ok += 1;
            } else if reply.is(452, "4.5.3") {
                full += 1;
            }
        }
        Ok(ok == 100 && full == 900 && c.data(MESSAGE)?.code == 250)
    });
    case(r, "5,000-deep multipart: accepted", || {
        let mut c = ehlo()?;
        transaction(&mut c)?;
        Ok(c.data(&deep_multipart(5000))?.code == 250)
    });
    case(r, "10,000 parts: accepted", || {
        let mut c = ehlo()?;
        transaction(&mut c)?;
        Ok(c.data(&wide_multipart(10_000))?.code == 250)
    });
    case(r, "900 KB header: accepted", || {
        let mut c = ehlo()?;
        transaction(&mut c)?;
        Ok(c.data(&big_header(8_500))?.code == 250)
    });
    // Past 1 MiB or 10,000 fields the header section is refused (walkAU
    // F9: 1.3 million tiny fields cost ~450 MB per message), and the
    // session goes on.
    case(r, "2 MB header: 552 5.3.4, session on", || {
        let mut c = ehlo()?;
        transaction(&mut c)?;
        let refused = is(&c.data(&big_header(20_000)), 552, "5.3.4");
        transaction(&mut c)?;
        Ok(refused && c.data(MESSAGE)?.code == 250)
    });
    case(r, "garbage after STARTTLS: session closed", || {
        let mut c = ehlo()?;
        c.command("STARTTLS")?.expect_code(220)?;
        c.send(&[0x16, 0x03, 0x01, 0xff, 0xff, 0x00, 0x00, 0x13, 0x37])?;
        c.send(&[0xAB; 4096]).ok();
        Ok(c.ends_within(Duration::from_secs(10)))
    });
    case(r, "TLS ClientHello on the plain port: no crash", || {
        let mut c = SmtpClient::connect_ok(port)?;
        let hello = [
            0x16u8, 0x03, 0x01, 0x00, 0x2f, 0x01, 0x00, 0x00, 0x2b, 0x03, 0x03,
        ];
        c.send(&hello)?;
        c.send(&[0u8; 40])?;
        c.send(b"\r\n")?;
        Ok(c.read_reply().map(|r| r.class() == 5).unwrap_or(true))
    });
    case(r, "64 KiB of random bytes: no crash", || {
        let mut c = SmtpClient::connect_ok(port)?;
        let mut x: u32 = 0x1234_5678;
        let noise: Vec<u8> = (0..65_536)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        c.send(&noise).ok();
        Ok(true)
    });
    r.check(CASE, "the daemon is still running", gw.daemon.is_running());
    case(r, "and still takes mail", || {
        let mut c = ehlo()?;
        c.send_mail_ok("a@example.com", &["b@example.com"], MESSAGE)
            .map(|_| true)
            .context("a normal message after the corpus")
    });
    Ok(())
}
