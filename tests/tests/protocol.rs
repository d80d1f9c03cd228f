//! The SMTP dialogue as a client sees it: greeting, EHLO extensions,
//! pipelining, dot-stuffing, line endings, size limits, relay control,
//! sequence and syntax errors, limits, timeouts, access rules and the
//! small commands. Every reply is checked with its enhanced status code.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use mailward_e2e::mail::strip_added_headers;
use mailward_e2e::smtp::{dot_stuff, enhanced_code_of};
use mailward_e2e::tools::output_text;
use mailward_e2e::*;

/// How long we watch for something that must not arrive.
const QUIET: Duration = Duration::from_secs(3);

fn lf(bytes: &[u8]) -> Result<String> {
    Ok(String::from_utf8(bytes.to_vec())?.replace("\r\n", "\n"))
}

/// Waits until the sink has received mail for exactly `expected`
/// (sorted), in one message or several.
fn wait_for_recipients(sink: &Sink, expected: &[&str]) -> Result<()> {
    let mut last = Vec::new();
    wait_until("the recipients at the sink", DELIVERY_TIMEOUT, || {
        let mut got: Vec<String> = sink
            .messages()?
            .iter()
            .flat_map(|m| m.recipients())
            .collect();
        got.sort();
        last = got.clone();
        Ok((got == expected).then_some(()))
    })
    .with_context(|| format!("expected {expected:?}, the sink has {last:?}"))
}

#[test]
fn greeting_names_the_host() -> Result<()> {
    let gw = Gateway::start("greeting", |c| c)?;
    let c = gw.client()?;
    assert_eq!(c.banner.to_string(), "220 mw.test ESMTP Mailward");
    Ok(())
}

#[test]
fn ehlo_advertises_every_extension() -> Result<()> {
    let gw = Gateway::start("ehlo", |c| c.set_str("limits", "max_message_size", "1MiB"))?;
    let mut c = gw.client()?;
    let ehlo = c.ehlo("client.test")?;
    assert!(ehlo.lines[0].starts_with("mw.test"), "{ehlo}");
    let keywords: Vec<&str> = ehlo.lines[1..].iter().map(String::as_str).collect();
    for wanted in [
        "PIPELINING",
        "8BITMIME",
        "SIZE 1048576",
        "ENHANCEDSTATUSCODES",
        "DSN",
    ] {
        assert!(keywords.contains(&wanted), "EHLO lacks {wanted}: {ehlo}");
    }
    assert!(
        !keywords.iter().any(|k| k.starts_with("STARTTLS")),
        "STARTTLS offered without a certificate: {ehlo}"
    );
    // HELO still works, with a one-line 250.
    let helo = c.command("HELO client.test")?;
    assert_eq!(helo.code, 250, "{helo}");
    assert_eq!(helo.lines.len(), 1, "{helo}");
    Ok(())
}

#[test]
fn swaks_sends_a_message_that_arrives() -> Result<()> {
    let gw = Gateway::start("swaks", |c| c)?;
    let out = swaks(&[
        "--server",
        &format!("127.0.0.1:{}", gw.port()),
        "--ehlo",
        "client.test",
        "--from",
        "alice@sender.test",
        "--to",
        "bob@example.com",
        "--header",
        "Subject: sent with swaks",
    ])?;
    let transcript = output_text(&out);
    ensure!(out.status.success(), "swaks failed:\n{transcript}");
    let queued = transcript
        .lines()
        .find_map(|l| l.strip_prefix("<-  250 2.0.0 Ok: queued as "))
        .with_context(|| format!("no 'queued as' in:\n{transcript}"))?
        .trim()
        .to_string();
    assert!(smtp::is_queue_id(&queued), "queue ID {queued:?}");
    let m = &gw.sink.wait_for_count(1, DELIVERY_TIMEOUT)?[0];
    assert_eq!(m.sender(), "alice@sender.test");
    assert_eq!(m.recipients(), ["bob@example.com"]);
    assert_eq!(m.header("Subject").as_deref(), Some("sent with swaks"));
    assert_eq!(m.queue_ids(), [queued]);
    Ok(())
}

#[test]
fn pipelined_commands_get_replies_in_order() -> Result<()> {
    let gw = Gateway::start("pipelining", |c| c)?;
    let mut c = gw.ehlo_client()?;
    c.send(
        b"MAIL FROM:<alice@sender.test>\r\nRCPT TO:<bob@example.com>\r\nRCPT TO:<carol@example.com>\r\nDATA\r\n",
    )?;
    c.read_reply()?.expect(250, "2.1.0")?;
    c.read_reply()?.expect(250, "2.1.5")?;
    c.read_reply()?.expect(250, "2.1.5")?;
    c.read_reply()?.expect_code(354)?;
    // The message and the next transaction in one write, too.
    let mut batch = dot_stuff(&read_resource("mail/plain.eml")?);
    batch.extend_from_slice(
        b"MAIL FROM:<alice@sender.test>\r\nRCPT TO:<dave@example.com>\r\nNOOP\r\n",
    );
    c.send(&batch)?;
    let first = c.read_reply()?;
    first.expect(250, "2.0.0")?;
    c.read_reply()?.expect(250, "2.1.0")?;
    c.read_reply()?.expect(250, "2.1.5")?;
    c.read_reply()?.expect(250, "2.0.0")?;
    let second = c.data(&read_resource("mail/plain.eml")?)?;
    second.expect(250, "2.0.0")?;
    c.quit();

    wait_for_recipients(
        &gw.sink,
        &["bob@example.com", "carol@example.com", "dave@example.com"],
    )?;
    Ok(())
}

#[test]
fn dot_lines_round_trip() -> Result<()> {
    let gw = Gateway::start("dots", |c| c)?;
    let message = read_resource("mail/dot-lines.eml")?;
    let mut c = gw.ehlo_client()?;
    let id = c.send_mail_ok("alice@sender.test", &["bob@example.com"], &message)?;
    c.quit();
    let m = &gw.sink.wait_for_count(1, DELIVERY_TIMEOUT)?[0];
    assert_eq!(m.queue_ids(), [id]);
    // smtp-sink shows the message unstuffed, with LF line endings.
    let got = String::from_utf8(strip_added_headers(m.message.as_bytes()))?;
    assert_eq!(got, lf(&message)?);
    Ok(())
}

#[test]
fn dot_lines_are_stuffed_on_the_wire() -> Result<()> {
    let dir = TestDir::new("dots-wire")?;
    let next_hop = ScriptedServer::start(&[])?;
    let daemon = Daemon::start(&Config::new(dir.path()).route_to_port("*", next_hop.port))?;
    let message = read_resource("mail/dot-lines.eml")?;
    let mut c = SmtpClient::connect_ok(daemon.port)?;
    c.ehlo("client.test")?;
    c.send_mail_ok("alice@sender.test", &["bob@example.com"], &message)?;
    c.quit();
    let t = &next_hop.wait_for_transactions(1, DELIVERY_TIMEOUT)?[0];
    let wire = strip_added_headers(&t.data);
    let stuffed = dot_stuff(&message);
    let expected = &stuffed[..stuffed.len() - b".\r\n".len()];
    assert_eq!(
        String::from_utf8_lossy(&wire),
        String::from_utf8_lossy(expected),
        "the data on the wire is the message, dot-stuffed"
    );
    Ok(())
}

#[test]
fn message_is_delivered_byte_identical() -> Result<()> {
    let dir = TestDir::new("byte-identical")?;
    let next_hop = ScriptedServer::start(&[])?;
    let daemon = Daemon::start(&Config::new(dir.path()).route_to_port("*", next_hop.port))?;
    let message = read_resource("mail/plain.eml")?;
    let mut c = SmtpClient::connect_ok(daemon.port)?;
    c.ehlo("client.test")?;
    let id = c.send_mail_ok("alice@sender.test", &["bob@example.com"], &message)?;
    c.quit();
    let t = &next_hop.wait_for_transactions(1, DELIVERY_TIMEOUT)?[0];
    let delivered = t.message();
    // On top the scan verdicts (AV on two lines, then spam and its
    // rating), then our Received: field.
    let text = String::from_utf8_lossy(&delivered);
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert!(
        lines[0] == "X-Mailward-AV: clean;"
            && lines[1].starts_with("\tbases=")
            && lines[2].starts_with("X-Mailward-Spam: as/clean; score=")
            && lines[3].starts_with("X-Mailward-Spam-Rating: ")
            && lines[4].starts_with("Received: "),
        "the X-Mailward-AV and X-Mailward-Spam verdicts, then a Received: header on top: {text}"
    );
    assert_eq!(
        mail::mailward_queue_ids(&String::from_utf8_lossy(&delivered)),
        [id]
    );
    assert_eq!(
        String::from_utf8_lossy(&strip_added_headers(&delivered)),
        String::from_utf8_lossy(&message)
    );
    assert_eq!(t.mail_from, "alice@sender.test");
    assert_eq!(t.accepted, ["bob@example.com"]);
    Ok(())
}

#[test]
fn bare_lf_lines_arrive_as_crlf_lines() -> Result<()> {
    let dir = TestDir::new("bare-lf")?;
    let next_hop = ScriptedServer::start(&[])?;
    let daemon = Daemon::start(&Config::new(dir.path()).route_to_port("*", next_hop.port))?;
    let message = read_resource("mail/bare-lf-lines.eml")?;
    let mut c = SmtpClient::connect_ok(daemon.port)?;
    c.ehlo("client.test")?;
    c.send_mail_ok("alice@sender.test", &["bob@example.com"], &message)?;
    c.quit();
    let t = &next_hop.wait_for_transactions(1, DELIVERY_TIMEOUT)?[0];
    let delivered = strip_added_headers(&t.message());
    let expected = lf(&message)?.replace('\n', "\r\n");
    assert_eq!(String::from_utf8_lossy(&delivered), expected);
    Ok(())
}

/// Sends `message` (each as is, dot-stuffed) through a gateway whose next
/// hop records the wire; returns the queue IDs and the transactions.
fn through_the_gateway(
    name: &str,
    messages: &[&[u8]],
) -> Result<(
    Vec<String>,
    Vec<mailward_e2e::scripted::Transaction>,
    String,
)> {
    let dir = TestDir::new(name)?;
    let next_hop = ScriptedServer::start(&[])?;
    let daemon = Daemon::start(&Config::new(dir.path()).route_to_port("*", next_hop.port))?;
    let mut c = SmtpClient::connect_ok(daemon.port)?;
    c.ehlo("client.test")?;
    let mut ids = Vec::new();
    for m in messages {
        ids.push(c.send_mail_ok("alice@sender.test", &["bob@example.com"], m)?);
    }
    c.quit();
    let got = next_hop.wait_for_transactions(messages.len(), DELIVERY_TIMEOUT)?;
    Ok((ids, got, daemon.log()))
}

/// The header block of `message`, one string per line (CRLF split).
fn header_lines(message: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(message);
    text.split("\r\n")
        .take_while(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// walkY 1: a bare CR was one line to the scanner and a line break to the
/// next hop, so a MIME boundary hidden behind bare CRs carried the EICAR
/// file through, stamped clean. It now ends a line at receipt: the part is
/// found and removed as in the same message written with CRLF.
#[test]
fn a_mime_part_behind_bare_crs_is_scanned_like_the_crlf_one() -> Result<()> {
    // One base64 line, as in the report.
    let b64 = mailward_e2e::mime::base64(&mailward_e2e::samples::eicar()).replace("\r\n", "");
    let b64 = b64.as_str();
    let crlf = format!(
        "From: alice@sender.test\r\nTo: bob@example.com\r\nSubject: hidden part\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"BB\"\r\n\r\n\
--BB\r\nContent-Type: text/plain\r\n\r\nhello\r\n--BB\r\n\
Content-Type: application/octet-stream; name=\"e.com\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--BB--\r\n"
    );
    // The report's message: the text part's end, the second boundary and
    // the whole second part separated by bare CRs.
    let (head, tail) = crlf.split_at(crlf.find("hello").context("hello")?);
    let bare = format!("{head}{}", tail.replace("\r\n", "\r"))
        .trim_end_matches('\r')
        .to_string()
        + "\r\n";
    let (ids, got, log) =
        through_the_gateway("bare-cr-eicar", &[crlf.as_bytes(), bare.as_bytes()])?;
    for (what, id) in ["CRLF", "bare CR"].iter().zip(&ids) {
        let t = got
            .iter()
            .find(|t| mail::mailward_queue_ids(&String::from_utf8_lossy(&t.data)) == [id.clone()])
            .with_context(|| format!("{what}: {id} not delivered"))?;
        let m = t.message();
        let text = String::from_utf8_lossy(&m);
        ensure!(
            text.starts_with("X-Mailward-AV: infected; detection=\"EICAR_Test_File\";"),
            "{what}: the part is found:\n{text}\n{log}"
        );
        ensure!(
            !text.contains(b64),
            "{what}: the EICAR part is removed:\n{text}"
        );
        ensure!(
            !m.windows(2).any(|w| w[0] == b'\r' && w[1] != b'\n'),
            "{what}: no bare CR goes on:\n{text}"
        );
    }
    Ok(())
}

/// walkY 1: header fields after a bare CR were not seen by the checks
/// (here: a forged verdict header, which the checks remove) but were
/// header fields at the next hop. It gets exactly the lines checked.
#[test]
fn header_fields_behind_a_bare_cr_are_the_ones_checked() -> Result<()> {
    let message = b"From: attacker@evil.test\r\nTo: bob@example.com\r\nSubject: hello\r\
From: ceo@example.com\rX-Mailward-AV: clean;\rReply-To: x@evil.test\r\n\r\nbody\r\n";
    let (ids, got, log) = through_the_gateway("bare-cr-header", &[message])?;
    let delivered = got[0].message();
    let expected = "From: attacker@evil.test\r\nTo: bob@example.com\r\nSubject: hello\r\n\
From: ceo@example.com\r\nReply-To: x@evil.test\r\n\r\nbody\r\n";
    // The second From scores DUPLICATE_HEADER, which may tag the Subject:
    // that is the spam check's answer to the forgery, not this test's.
    assert_eq!(
        String::from_utf8_lossy(&strip_added_headers(&delivered))
            .replace("Subject: [?PROBABLE SPAM] ", "Subject: ")
            .replace("Subject: [SPAM] ", "Subject: "),
        expected,
        "each bare CR is a line end, as the next hop reads it"
    );
    let verdicts = header_lines(&delivered)
        .into_iter()
        .filter(|l| l.starts_with("X-Mailward-AV:"))
        .count();
    ensure!(
        verdicts == 1,
        "the forged X-Mailward-AV was a header field to the checks, which removed it:\n{}",
        String::from_utf8_lossy(&delivered)
    );
    ensure!(
        log.lines().any(|l| l.contains("came with verdict headers")
            && l.contains(&format!("queue_id={}", ids[0]))),
        "the checks saw the forged field:\n{log}"
    );
    Ok(())
}

/// walkY 1: CR CR LF (a broken mailer's line end) was one line end to the
/// scanner but CRLF CRLF, an empty line, to the next hop, whose header
/// section ended there. It is one line end.
#[test]
fn cr_cr_lf_in_the_header_does_not_end_it_at_the_next_hop() -> Result<()> {
    let message = b"From: alice@sender.test\r\nSubject: crcrlf\r\r\nX-Flag: NO\r\n\
To: bob@example.com\r\n\r\nbody\r\r\n";
    let (_, got, _) = through_the_gateway("cr-cr-lf", &[message])?;
    let delivered = strip_added_headers(&got[0].message());
    assert_eq!(
        header_lines(&delivered),
        [
            "From: alice@sender.test",
            "Subject: crcrlf",
            "X-Flag: NO",
            "To: bob@example.com"
        ]
    );
    assert_eq!(
        String::from_utf8_lossy(&delivered),
        String::from_utf8_lossy(message).replace("\r\r\n", "\r\n")
    );
    Ok(())
}

#[test]
fn size_parameter_over_the_limit_is_refused() -> Result<()> {
    let gw = Gateway::start("size-param", |c| {
        c.set_str("limits", "max_message_size", "10KiB")
    })?;
    let mut c = gw.ehlo_client()?;
    c.command("MAIL FROM:<alice@sender.test> SIZE=20000")?
        .expect(552, "5.3.4")?;
    c.mail_ok("<alice@sender.test> SIZE=1000")?;
    Ok(())
}

#[test]
fn data_over_the_limit_is_refused_and_not_delivered() -> Result<()> {
    let gw = Gateway::start("size-data", |c| {
        c.set_str("limits", "max_message_size", "10KiB")
    })?;
    let mut c = gw.ehlo_client()?;
    let mut big = b"Subject: too big\r\n\r\n".to_vec();
    while big.len() < 20 * 1024 {
        big.extend_from_slice(
            b"0123456789012345678901234567890123456789012345678901234567890123456789\r\n",
        );
    }
    let reply = c.send_mail("alice@sender.test", &["bob@example.com"], &big)?;
    reply.expect(552, "5.3.4")?;
    // The session goes on, and a small message still passes.
    c.command("RSET")?.expect(250, "2.0.0")?;
    c.send_mail_ok(
        "alice@sender.test",
        &["bob@example.com"],
        &read_resource("mail/plain.eml")?,
    )?;
    c.quit();
    let messages = gw.sink.wait_for_count(1, DELIVERY_TIMEOUT)?;
    assert_eq!(messages.len(), 1);
    assert_eq!(
        gw.sink.settle(QUIET)?.len(),
        1,
        "the oversized message was not delivered"
    );
    Ok(())
}

/// A message with a 1,200-octet header line (folding white space in it),
/// a 1,500-octet body line without any, and a long body line that starts
/// with a dot (dot-stuffed on the wire).
fn message_with_long_lines() -> (String, String) {
    let references: Vec<String> = (0..40)
        .map(|i| format!("<part{i:02}.20261206@lists.example.org>"))
        .collect();
    let references = format!("References: {}", references.join(" "));
    assert!(references.len() > 1200, "{}", references.len());
    let b64 = "QUJD".repeat(375);
    let message = format!(
        "From: list@lists.example.org\r\nTo: bob@example.com\r\n{references}\r\n\
Subject: long lines\r\n\r\n{b64}\r\n.{b64}\r\nend\r\n"
    );
    (message, references)
}

/// walkAL 5: a line over 998 octets gets the message refused (the
/// default, `limits.long_lines = "refuse"`), as before.
#[test]
fn a_line_over_998_octets_is_refused_by_default() -> Result<()> {
    let gw = Gateway::start("long-lines-refuse", |c| c)?;
    let (message, _) = message_with_long_lines();
    let mut c = gw.ehlo_client()?;
    c.send_mail(
        "alice@sender.test",
        &["bob@example.com"],
        message.as_bytes(),
    )?
    .expect(554, "5.6.0")?;
    c.command("RSET")?.expect(250, "2.0.0")?;
    c.quit();
    assert_eq!(gw.sink.settle(QUIET)?.len(), 0, "nothing delivered");
    Ok(())
}

/// walkAL 5: with `limits.long_lines = "split"` the message is accepted
/// and the next hop gets lines of 998 octets at most: the header line
/// folded at its white space (unfolded, the same value), the body lines
/// broken by CRLF SPACE as Postfix does; the split is logged once.
#[test]
fn lines_over_998_octets_are_split_when_asked() -> Result<()> {
    let dir = TestDir::new("long-lines-split")?;
    let next_hop = ScriptedServer::start(&[])?;
    let daemon = Daemon::start(
        &Config::new(dir.path())
            .route_to_port("*", next_hop.port)
            .set_str("limits", "long_lines", "split"),
    )?;
    let (message, references) = message_with_long_lines();
    let mut c = SmtpClient::connect_ok(daemon.port)?;
    c.ehlo("client.test")?;
    let id = c.send_mail_ok(
        "alice@sender.test",
        &["bob@example.com"],
        message.as_bytes(),
    )?;
    c.quit();
    let t = &next_hop.wait_for_transactions(1, DELIVERY_TIMEOUT)?[0];
    let delivered = t.message();
    let text = String::from_utf8(delivered.clone())?;
    let longest = text.split("\r\n").map(str::len).max().unwrap_or(0);
    ensure!(
        longest <= 998,
        "a line of {longest} octets went on:\n{text}"
    );
    let header = header_lines(&delivered).join("\r\n");
    let unfolded = header.replace("\r\n ", " ").replace("\r\n\t", "\t");
    ensure!(
        unfolded.lines().any(|l| l == references),
        "the References: field unfolds to what was sent:\n{header}"
    );
    ensure!(
        !header.lines().any(|l| l == references),
        "and was folded:\n{header}"
    );
    let b64 = "QUJD".repeat(375);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    assert_eq!(
        body,
        format!(
            "{}\r\n {}\r\n.{}\r\n {}\r\nend\r\n",
            &b64[..998],
            &b64[998..],
            &b64[..997],
            &b64[997..]
        ),
        "each body line broken at octet 998 by CRLF SPACE, the stuffed dot removed"
    );
    let logged = wait_until("the split logged", DELIVERY_TIMEOUT, || {
        Ok(daemon
            .log()
            .lines()
            .find(|l| {
                l.contains("Split lines longer than 998 octets.")
                    && l.contains(&format!("queue_id={id}"))
            })
            .map(str::to_string))
    })
    .with_context(|| daemon.log())?;
    ensure!(logged.contains("lines=3"), "{logged}");
    // A last line of 100,000 octets comes in parts: "." CRLF after it
    // still ends DATA, and every octet goes on, in lines of 998 at most.
    let ys = "y".repeat(100_000);
    let mut c = SmtpClient::connect_ok(daemon.port)?;
    c.ehlo("client.test")?;
    c.send_mail_ok(
        "alice@sender.test",
        &["bob@example.com"],
        format!("Subject: big\r\n\r\n{ys}\r\n").as_bytes(),
    )?;
    c.quit();
    let t = &next_hop.wait_for_transactions(2, DELIVERY_TIMEOUT)?[1];
    let text = String::from_utf8(t.message())?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    ensure!(
        body.split("\r\n").all(|l| l.len() <= 998),
        "a line over 998 octets went on"
    );
    assert_eq!(body.replace("\r\n ", ""), format!("{ys}\r\n"));
    Ok(())
}

#[test]
fn relay_is_denied_outside_relay_networks() -> Result<()> {
    // 127.0.0.1 is outside 10.0.0.0/8: only example.com is open to us.
    let gw = Gateway::start("relay", |c| {
        c.set_list("network", "relay_networks", &["10.0.0.0/8"])
    })?;
    let mut c = gw.ehlo_client()?;
    c.mail_ok("<alice@sender.test>")?;
    c.command("RCPT TO:<victim@elsewhere.test>")?
        .expect(554, "5.7.1")?;
    c.rcpt_ok("<bob@example.com>")?;
    // The postmaster is reachable from anyone (RFC 5321 4.5.1), bare or
    // at our name, and so is the MAILER-DAEMON our DSNs come from: all
    // are server.postmaster (postmaster@mw.test), outside the protected
    // domains.
    for rcpt in ["Postmaster", "POSTMASTER@MW.test", "mailer-daemon@mw.test"] {
        c.command(&format!("RCPT TO:<{rcpt}>"))?
            .expect(250, "2.1.5")?;
    }
    c.command("RCPT TO:<postmaster@elsewhere.test>")?
        .expect(554, "5.7.1")?;
    let id = c.data(&read_resource("mail/plain.eml")?)?;
    id.expect(250, "2.0.0")?;
    // A transaction with only the refused recipient queues nothing.
    c.mail_ok("<alice@sender.test>")?;
    c.command("RCPT TO:<victim@elsewhere.test>")?
        .expect(554, "5.7.1")?;
    let data = c.command("DATA")?;
    assert_eq!(data.class(), 5, "DATA without recipients: {data}");
    c.quit();

    gw.sink.wait_for_count(1, DELIVERY_TIMEOUT)?;
    let messages = gw.sink.settle(QUIET)?;
    assert_eq!(messages.len(), 1);
    assert_eq!(
        messages[0].recipients(),
        ["bob@example.com", "postmaster@mw.test"]
    );
    assert_eq!(messages[0].queue_ids(), [id.queue_id().unwrap_or_default()]);
    assert!(gw.daemon.queue_ids()?.is_empty(), "nothing left queued");
    Ok(())
}

#[test]
fn commands_out_of_sequence_get_503() -> Result<()> {
    let gw = Gateway::start("sequence", |c| c)?;
    let mut c = gw.ehlo_client()?;
    c.command("DATA")?.expect(503, "5.5.1")?;
    c.command("RCPT TO:<bob@example.com>")?
        .expect(503, "5.5.1")?;
    // Out of sequence first, whatever else is wrong (walkBK F4).
    c.command("RCPT TO:<not an address>")?
        .expect(503, "5.5.1")?;
    c.mail_ok("<alice@sender.test>")?;
    c.command("MAIL FROM:<alice@sender.test>")?
        .expect(503, "5.5.1")?;
    c.command("MAIL FROM:<bad address> SIZE=x")?
        .expect(503, "5.5.1")?;
    // DATA with no recipient yet: 503 (bad sequence) or 554 (no valid
    // recipients) are both usual.
    let data = c.command("DATA")?;
    assert!(
        matches!(data.code, 503 | 554) && data.enhanced() == Some("5.5.1"),
        "DATA before RCPT: {data}"
    );
    Ok(())
}

#[test]
fn syntax_errors_get_501_and_unknown_commands_500() -> Result<()> {
    let gw = Gateway::start("syntax", |c| c)?;
    let mut c = gw.ehlo_client()?;
    // (command, expected code, expected enhanced code prefix)
    let cases: &[(&str, u16, &str)] = &[
        // The replies Postfix gives for the same mistakes.
        ("MAIL FROM:alice-without-domain", 501, "5.1.7"),
        ("MAIL FROM:<alice@sender.test", 501, "5.1.7"),
        ("MAIL TO:<alice@sender.test>", 501, "5.5.4"),
        ("XYZZY", 500, "5.5.1"),
        ("MAIL FROM:<alice@sender.test>", 250, "2.1.0"),
        ("RCPT TO:bob@example.com>", 501, "5.1.3"),
        ("RCPT FROM:<bob@example.com>", 501, "5.5.4"),
    ];
    let mut wrong = Vec::new();
    for (command, code, enhanced) in cases {
        let reply = c.command(command)?;
        if !reply.is(*code, enhanced) {
            wrong.push(format!(
                "{command:?}: expected {code} {enhanced}, got {reply}"
            ));
        }
    }
    // RFC 5321 asks for 555 5.5.4 for an unknown MAIL parameter; any 5xx
    // with a 5.5.x code will do.
    c.command("RSET")?.expect(250, "2.0.0")?;
    let unknown_param = c.command("MAIL FROM:<alice@sender.test> NOSUCHPARAM=1")?;
    if !(unknown_param.class() == 5
        && unknown_param
            .enhanced()
            .is_some_and(|e| e.starts_with("5.5.")))
    {
        wrong.push(format!(
            "unknown MAIL parameter: expected 5xx 5.5.x, got {unknown_param}"
        ));
    }
    assert!(wrong.is_empty(), "wrong replies:\n{}", wrong.join("\n"));
    Ok(())
}

#[test]
fn unknown_command_flood_ends_with_421() -> Result<()> {
    let gw = Gateway::start("flood", |c| c)?;
    let mut c = gw.ehlo_client()?;
    let mut last = None;
    for _ in 0..100 {
        let reply = match c.command("XYZZY") {
            Ok(r) => r,
            Err(e) => {
                anyhow::bail!("connection dropped without a 421 (last reply {last:?}): {e:#}")
            }
        };
        if reply.code == 421 {
            reply.expect(421, "4.7.0")?;
            assert!(c.closed_within(Duration::from_secs(10)), "closed after 421");
            return Ok(());
        }
        reply.expect(500, "5.5.1")?;
        last = Some(reply);
    }
    anyhow::bail!("100 unknown commands and still no 421")
}

/// walkBK F1: a web page can make a browser POST to this port, with SMTP
/// commands in the body (cross-protocol scripting). Answered line by line
/// with 500s, the body's MAIL, RCPT and DATA relayed a message from a
/// relay network. As Postfix does (`smtpd_forbidden_commands`), the first
/// line of a web request ends the session: nothing is delivered.
#[test]
fn a_web_request_ends_the_session() -> Result<()> {
    let gw = Gateway::start("web-request", |c| c)?;
    let mut c = SmtpClient::connect(gw.port())?;
    c.banner.expect_code(220)?;
    c.send(
        b"POST /form HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n\r\n\
          EHLO web\r\nMAIL FROM:<page@sender.test>\r\nRCPT TO:<victim@example.com>\r\n\
          DATA\r\nSubject: from a web page\r\n\r\nrelayed\r\n.\r\nQUIT\r\n",
    )?;
    c.read_reply()?.expect(221, "2.7.0")?;
    ensure!(
        c.closed_within(Duration::from_secs(10)),
        "closed after the request line"
    );
    let line = wait_until("the refusal's log line", Duration::from_secs(10), || {
        Ok(gw
            .daemon
            .log()
            .lines()
            .find(|l| l.contains("Refused in the session.") && l.contains("cause=web_request"))
            .map(str::to_string))
    })?;
    ensure!(
        line.contains("reason=syntax") && line.contains("refused=session"),
        "{line}"
    );
    // GET and CONNECT too, in any case, even after EHLO.
    let mut c = gw.ehlo_client()?;
    c.command("connect 127.0.0.1:25 HTTP/1.1")?
        .expect(221, "2.7.0")?;
    ensure!(c.closed_within(Duration::from_secs(10)), "closed");
    std::thread::sleep(Duration::from_secs(2));
    ensure!(gw.sink.count() == 0, "nothing relayed");
    Ok(())
}

/// walkBK F6: a client gone in the middle of DATA left no line at the
/// default level; the message it never finished is logged with its
/// sender, recipients and the octets that came.
#[test]
fn a_connection_lost_in_data_is_logged() -> Result<()> {
    let gw = Gateway::start("lost-in-data", |c| c)?;
    let mut c = gw.ehlo_client()?;
    c.mail_ok("<alice@sender.test>")?;
    c.command("RCPT TO:<bob@example.com>")?
        .expect(250, "2.1.5")?;
    c.command("DATA")?.expect_code(354)?;
    c.send(b"Subject: half\r\n\r\nten bytes\r\n")?;
    drop(c);
    let line = wait_until(
        "the lost connection's line",
        Duration::from_secs(10),
        || {
            Ok(gw
                .daemon
                .log()
                .lines()
                .find(|l| l.contains("Connection lost in DATA; the message was not accepted."))
                .map(str::to_string))
        },
    )?;
    ensure!(
        line.contains("INFO smtp:")
            && line.contains("from=alice@sender.test")
            && line.contains("rcpts=1")
            && line.contains("received=28"),
        "{line}"
    );
    ensure!(gw.sink.count() == 0, "nothing delivered");
    Ok(())
}

/// Sends `command` until the session gets 421; returns how many refusals
/// (`code` `enhanced`) came before it.
fn refused_until_421(c: &mut SmtpClient, command: &str, code: u16, enhanced: &str) -> Result<u32> {
    for n in 0..100 {
        let reply = c.command(command)?;
        if reply.code == 421 {
            reply.expect(421, "4.7.0")?;
            ensure!(c.closed_within(Duration::from_secs(10)), "closed after 421");
            return Ok(n);
        }
        reply.expect(code, enhanced)?;
    }
    anyhow::bail!("100 x {command:?} refused and still no 421")
}

/// walkY 2: refused MAIL and RCPT commands did not count toward "too
/// many errors", so an outside client could probe relay permission and
/// the access rules without end. They count as Postfix's
/// smtpd_hard_error_limit counts them; "too many recipients" does not (an
/// MTA sends the rest in its next transaction).
#[test]
fn refused_mail_and_rcpt_count_toward_the_error_limit() -> Result<()> {
    let gw = Gateway::start("error-limit", |c| {
        c.set_list("network", "relay_networks", &["10.0.0.0/8"])
            .set("limits", "max_rcpts_per_message", "1")
            .set_list(
                "access",
                "mail_from_rules",
                &["deny address *@spammer.test"],
            )
            .set_list(
                "access",
                "rcpt_rules",
                &["deny address blocked@example.com"],
            )
    })?;
    let mut c = gw.ehlo_client()?;
    c.mail_ok("<alice@sender.test>")?;
    let n = refused_until_421(&mut c, "RCPT TO:<victim@elsewhere.test>", 554, "5.7.1")?;
    ensure!(n == 20, "{n} relay refusals before the 421");

    let mut c = gw.ehlo_client()?;
    c.mail_ok("<alice@sender.test>")?;
    let n = refused_until_421(&mut c, "RCPT TO:<blocked@example.com>", 550, "5.7.1")?;
    ensure!(n == 20, "{n} rcpt_rules refusals before the 421");

    let mut c = gw.ehlo_client()?;
    let n = refused_until_421(&mut c, "MAIL FROM:<x@spammer.test>", 550, "5.7.1")?;
    ensure!(n == 20, "{n} mail_from_rules refusals before the 421");

    // Over max_rcpts_per_message: refused, not counted; the message goes.
    let mut c = gw.ehlo_client()?;
    c.mail_ok("<alice@sender.test>")?;
    c.rcpt_ok("<bob@example.com>")?;
    for n in 0..30 {
        c.command(&format!("RCPT TO:<user{n}@example.com>"))?
            .expect(452, "4.5.3")?;
    }
    c.data(&read_resource("mail/plain.eml")?)?
        .expect(250, "2.0.0")?;
    c.quit();
    gw.sink.wait_for_count(1, DELIVERY_TIMEOUT)?;
    Ok(())
}

/// walkAH 4: recipients past `max_rcpts_per_message` were refused without
/// end, one INFO line each (200,000 pipelined RCPTs: 30 MB of log in
/// 0.7 s, and the session still open). Past 1,000 over the limit each one
/// counts toward the error limit (Postfix's smtpd_recipient_overshoot_limit),
/// and the refusals are logged once per transaction.
#[test]
fn recipients_far_over_the_limit_count_as_errors_and_are_logged_once() -> Result<()> {
    let gw = Gateway::start("rcpt-overshoot", |c| {
        c.set("limits", "max_rcpts_per_message", "1")
    })?;
    let mut c = gw.ehlo_client()?;
    let mut batch = String::from("MAIL FROM:<many@sender.test>\r\nRCPT TO:<bob@example.com>\r\n");
    for n in 0..1100 {
        batch.push_str(&format!("RCPT TO:<u{n}@example.com>\r\n"));
    }
    c.send(batch.as_bytes())?;
    c.read_reply()?.expect(250, "2.1.0")?;
    c.read_reply()?.expect(250, "2.1.5")?;
    let mut refused = 0;
    loop {
        let reply = c.read_reply()?;
        if reply.code == 421 {
            reply.expect(421, "4.7.0")?;
            break;
        }
        reply.expect(452, "4.5.3")?;
        refused += 1;
    }
    ensure!(
        refused == 1020,
        "{refused} x 452 before the 421 (1,000 over, then 20 errors)"
    );
    assert!(c.closed_within(Duration::from_secs(10)), "closed after 421");
    let summary = wait_until("the transaction's line", Duration::from_secs(10), || {
        Ok(gw
            .daemon
            .log()
            .lines()
            .find(|l| l.contains("Recipients over limits.max_rcpts_per_message refused"))
            .map(str::to_string))
    })?;
    ensure!(
        summary.contains("count=1020") && summary.contains("from=many@sender.test"),
        "{summary}"
    );
    let log = gw.daemon.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("refused=recipient") && l.contains("452 4.5.3"))
        .collect();
    ensure!(
        lines.len() == 2,
        "log lines for the 452s, expected the first and the transaction's:\n{}",
        lines.join("\n")
    );
    // (As docs/smtp.md shows them: `--nocapture` prints them.)
    println!("{}", lines.join("\n"));
    Ok(())
}

/// walkAH 6: NOOP, RSET, VRFY, HELP and EHLO kept a session open for ever
/// without a message. Past 100 of them each counts toward the error limit
/// (Postfix's smtpd_junk_command_limit): the 121st gets 421.
#[test]
fn junk_commands_beyond_100_count_toward_the_error_limit() -> Result<()> {
    let gw = Gateway::start("junk-limit", |c| c)?;
    // Its EHLO is the first.
    let mut c = gw.ehlo_client()?;
    let cycle = ["NOOP", "RSET", "VRFY root", "HELP", "EHLO client.test"];
    let mut batch = String::new();
    for n in 0..130 {
        batch.push_str(cycle[n % cycle.len()]);
        batch.push_str("\r\n");
    }
    c.send(batch.as_bytes())?;
    let mut answered = 0;
    loop {
        let reply = c.read_reply()?;
        if reply.code == 421 {
            reply.expect(421, "4.7.0")?;
            break;
        }
        ensure!(matches!(reply.code, 250 | 252 | 214), "{reply}");
        answered += 1;
    }
    ensure!(
        answered == 119,
        "{answered} answered after the EHLO before the 421"
    );
    assert!(c.closed_within(Duration::from_secs(10)), "closed after 421");
    // A session that sends mail starts the count again.
    let mut c = gw.ehlo_client()?;
    for _ in 0..90 {
        c.command("NOOP")?.expect(250, "2.0.0")?;
    }
    c.send_mail_ok(
        "alice@sender.test",
        &["bob@example.com"],
        &read_resource("mail/plain.eml")?,
    )?;
    for _ in 0..90 {
        c.command("NOOP")?.expect(250, "2.0.0")?;
    }
    c.quit();
    Ok(())
}

/// walkAH 7: XFORWARD HELO and NAME went into the Received line as sent,
/// so a client of the Postfix in front could write a made-up relay
/// there. HELO is neutered and a NAME that is no host name is unknown, as
/// Postfix's xforward_cmd does.
#[test]
fn xforward_helo_and_name_cannot_spoof_the_received_line() -> Result<()> {
    let gw = Gateway::start("xforward-neuter", |c| c)?;
    let mut c = gw.client()?;
    c.ehlo("mta.example.com")?;
    c.command(
        "XFORWARD ADDR=192.0.2.7 HELO=fake.test+20(trusted.example.com+20[10.0.0.1]) \
         NAME=trusted.example.com+20[10.0.0.1])",
    )?
    .expect(250, "2.0.0")?;
    c.send_mail_ok(
        "alice@sender.test",
        &["bob@example.com"],
        &read_resource("mail/plain.eml")?,
    )?;
    c.quit();
    let m = &gw.sink.wait_for_count(1, DELIVERY_TIMEOUT)?[0];
    ensure!(
        m.message.contains(
            "Received: from fake.test??trusted.example.com?[10.0.0.1]? (unknown [192.0.2.7])"
        ),
        "the forwarded HELO neutered, the bad NAME unknown:\n{}",
        m.message
    );
    Ok(())
}

/// walkY 3: a transaction whose recipients were all refused, ended by
/// `554 5.5.1 No valid recipients`, RSET, QUIT, a new EHLO or a hang-up,
/// was logged at debug only, so `grep from=SENDER` found nothing. Each is
/// one INFO line naming its sender, once.
#[test]
fn a_transaction_ended_after_refused_recipients_is_logged_with_its_sender() -> Result<()> {
    let gw = Gateway::start("refused-tx-log", |c| {
        c.set_list("network", "relay_networks", &["10.0.0.0/8"])
    })?;
    let ends = ["DATA", "RSET", "QUIT", "hang-up", "EHLO client.test"];
    for (n, end) in ends.iter().enumerate() {
        let mut c = gw.ehlo_client()?;
        c.command(&format!("MAIL FROM:<q{n}@sender.test>"))?
            .expect(250, "2.1.0")?;
        c.command("RCPT TO:<x@elsewhere.test>")?
            .expect(554, "5.7.1")?;
        match *end {
            "hang-up" => drop(c),
            "DATA" => {
                c.command("DATA")?.expect(554, "5.5.1")?;
                c.command("RSET")?.expect(250, "2.0.0")?;
                c.quit();
            }
            "QUIT" => c.quit(),
            other => {
                c.command(other)?.expect_code(250)?;
                c.quit();
            }
        }
    }
    let lines = |log: &str, n: usize| -> Vec<String> {
        log.lines()
            .filter(|l| {
                l.contains("Refused in the session.")
                    && l.contains("transaction")
                    && l.contains(&format!(" from=q{n}@sender.test "))
            })
            .map(str::to_string)
            .collect()
    };
    wait_until(
        "a line for each transaction",
        Duration::from_secs(10),
        || {
            let log = gw.daemon.log();
            Ok((0..ends.len())
                .all(|n| !lines(&log, n).is_empty())
                .then_some(()))
        },
    )
    .with_context(|| gw.daemon.log())?;
    // Give a second line, if one were coming, the time to be written.
    std::thread::sleep(Duration::from_millis(300));
    let log = gw.daemon.log();
    for (n, end) in ends.iter().enumerate() {
        let got = lines(&log, n);
        ensure!(
            got.len() == 1 && got[0].contains(" INFO ") && got[0].contains("rcpts=0 "),
            "{end}: one INFO line with from= and rcpts=0:\n{log}"
        );
        // What ended the transaction (walkAU F6): a hang-up is no reply
        // the client got, and says so.
        let reply = match *end {
            "DATA" => "554 5.5.1 No valid recipients",
            "hang-up" => "none: the client closed the connection",
            _ => "554 5.7.1 <x@elsewhere.test>: Relay access denied",
        };
        ensure!(
            got[0].contains(reply),
            "{end}: the reply {reply}: {}",
            got[0]
        );
        ensure!(
            got[0].contains("cause=disconnected") == (*end == "hang-up"),
            "{end}: cause=disconnected only for the hang-up: {}",
            got[0]
        );
        // The refused recipient's own line names the sender too.
        ensure!(
            log.lines().any(|l| l.contains("refused=recipient")
                && l.contains(&format!(" from=q{n}@sender.test "))),
            "{end}: the refused recipient's line carries from=q{n}@sender.test:\n{log}"
        );
    }
    Ok(())
}

/// walkY 4: a reply was held back while part of the next line was
/// buffered, so `NOOP` CRLF `NOO` got nothing until the line was whole,
/// and a client trying BDAT (not offered) with its chunk got its 500 only
/// with the 421 at the command timeout. Whole commands are answered at
/// once. (BDAT is known but not offered: `502 5.5.1`, walkAJ 10.)
#[test]
fn a_complete_command_is_answered_while_the_next_is_partial() -> Result<()> {
    let gw = Gateway::start("partial-line", |c| c)?;
    let mut c = gw.ehlo_client()?;
    c.set_timeout(Duration::from_secs(3))?;
    c.send(b"NOOP\r\nNOO")?;
    c.read_reply()
        .context("no reply to NOOP while the next line is partial")?
        .expect(250, "2.0.0")?;
    c.send(b"P\r\n")?;
    c.read_reply()?.expect(250, "2.0.0")?;
    c.send(b"BDAT 10 LAST\r\n0123456789")?;
    c.read_reply()
        .context("no reply to BDAT while its chunk waits")?
        .expect(502, "5.5.1")?;
    Ok(())
}

/// walkY 5: an octet that is not UTF-8 (a Latin-1 envelope) in an address
/// got `501 5.5.4` "syntax", not the `553 5.6.7` that says why.
#[test]
fn a_latin1_address_gets_553_like_a_utf8_one() -> Result<()> {
    let gw = Gateway::start("latin1", |c| c)?;
    let mut c = gw.ehlo_client()?;
    c.send(b"MAIL FROM:<a\xe9@sender.test>\r\n")?;
    c.read_reply()?.expect(553, "5.6.7")?;
    c.mail_ok("<alice@sender.test>")?;
    c.send(b"RCPT TO:<bob\xe9@example.com>\r\n")?;
    c.read_reply()?.expect(553, "5.6.7")?;
    Ok(())
}

/// walkY 6: XFORWARD attributes the MTA did not send fell back to the
/// MTA's own HELO: the Received line named the MTA's greeting for the
/// forwarded client.
#[test]
fn xforward_attributes_not_sent_are_unknown_not_the_mtas() -> Result<()> {
    let gw = Gateway::start("xforward-unavailable", |c| c)?;
    let mut c = gw.client()?;
    c.ehlo("mta.example.com")?;
    c.command("XFORWARD ADDR=IPV6:2001:db8::1 HELO=[UNAVAILABLE] NAME=[UNAVAILABLE]")?
        .expect(250, "2.0.0")?;
    c.send_mail_ok(
        "alice@sender.test",
        &["bob@example.com"],
        &read_resource("mail/plain.eml")?,
    )?;
    c.quit();
    let m = &gw.sink.wait_for_count(1, DELIVERY_TIMEOUT)?[0];
    ensure!(
        m.message
            .contains("Received: from unknown (unknown [IPv6:2001:db8::1])"),
        "the forwarded client without its HELO:\n{}",
        m.message
    );
    ensure!(
        !m.message.contains("mta.example.com"),
        "the MTA's greeting is not the client's:\n{}",
        m.message
    );
    Ok(())
}

#[test]
fn idle_client_gets_421_after_the_command_timeout() -> Result<()> {
    let gw = Gateway::start("timeout", |c| c.set_str("timeouts", "command", "2s"))?;
    let mut c = gw.ehlo_client()?;
    c.set_timeout(Duration::from_secs(20))?;
    let reply = c.read_reply()?;
    reply.expect(421, "4.4.2")?;
    assert!(c.closed_within(Duration::from_secs(10)), "closed after 421");
    Ok(())
}

/// walkAH 1: a client that sent commands but never read the replies
/// blocked its session in a write with no deadline, holding its slot for
/// as long as it kept the connection open. The write has
/// `timeouts.command`; past it the session is logged and closed, and its
/// slot is free again.
#[test]
fn a_client_that_never_reads_its_replies_is_cut_off() -> Result<()> {
    let gw = Gateway::start("no-read", |c| {
        c.set_str("timeouts", "command", "2s")
            .set("limits", "incoming_sessions_per_ip", "1")
    })?;
    let s = mailward_e2e::smtp::never_reading_client(gw.port())?;
    let line = wait_until(
        "the write timeout's log line",
        Duration::from_secs(30),
        || {
            Ok(gw
                .daemon
                .log()
                .lines()
                .find(|l| l.contains("Session timed out; closing it.") && l.contains("phase=write"))
                .map(str::to_string))
        },
    )?;
    ensure!(line.contains("client=127.0.0.1"), "{line}");
    // Its slot is free: the same address gets a session again.
    let again = SmtpClient::connect_with_timeout(gw.port(), Duration::from_secs(10))?;
    again.banner.expect_code(220)?;
    drop(s);
    Ok(())
}

/// walkAH 5: the DATA deadline grows with the octets received (at
/// `limits.min_data_rate`), and that credit was spent idling: 20,000
/// octets at once, then silence, held the session for `timeouts.data` +
/// 40 s. Each line must now come within `timeouts.command` of the one
/// before.
#[test]
fn data_credit_is_not_for_idling() -> Result<()> {
    let gw = Gateway::start("data-idle", |c| {
        c.set_str("timeouts", "command", "2s")
            .set_str("timeouts", "data", "10s")
    })?;
    let mut c = gw.ehlo_client()?;
    c.mail_ok("<alice@sender.test>")?;
    c.rcpt_ok("<bob@example.com>")?;
    c.command("DATA")?.expect_code(354)?;
    let line = format!("{}\r\n", "x".repeat(98));
    c.send(b"Subject: burst\r\n\r\n")?;
    c.send(line.repeat(200).as_bytes())?;
    let sent = std::time::Instant::now();
    c.set_timeout(Duration::from_secs(60))?;
    let reply = c.read_reply()?;
    let waited = sent.elapsed();
    reply.expect(421, "4.4.2")?;
    ensure!(
        waited < Duration::from_secs(8),
        "cut off after {waited:?}: the idle bound is timeouts.command (2 s), \
         not timeouts.data (10 s) + 20,000 octets at 500/s"
    );
    assert!(c.closed_within(Duration::from_secs(10)), "closed after 421");
    // walkAI 13: the line names the transaction lost to the timeout.
    let line = wait_until(
        "the DATA timeout's log line",
        Duration::from_secs(10),
        || {
            Ok(gw
                .daemon
                .log()
                .lines()
                .find(|l| l.contains("Session timed out; closing it.") && l.contains("phase=data"))
                .map(str::to_string))
        },
    )?;
    ensure!(
        line.contains("from=alice@sender.test rcpts=1"),
        "the timeout line names the sender and recipients: {line}"
    );
    Ok(())
}

/// Opens sessions until one is refused; returns the open ones and the
/// refusal.
fn fill_sessions(port: u16, max: usize) -> Result<(Vec<SmtpClient>, SmtpClient)> {
    let mut open = Vec::new();
    for n in 1..=max + 5 {
        let c =
            SmtpClient::connect_with_timeout(port, Duration::from_secs(10)).with_context(|| {
                format!("session #{n} got no greeting (a limit must answer 421 4.7.0)")
            })?;
        if c.banner.code != 220 {
            return Ok((open, c));
        }
        open.push(c);
    }
    anyhow::bail!("{} sessions open and none refused", open.len())
}

#[test]
fn sessions_per_ip_are_limited() -> Result<()> {
    let gw = Gateway::start("per-ip", |c| {
        c.set("limits", "incoming_sessions_per_ip", "2")
            .set("limits", "incoming_sessions", "10")
    })?;
    let (mut open, mut refused) = fill_sessions(gw.port(), 2)?;
    assert_eq!(open.len(), 2);
    refused.banner.expect(421, "4.7.0")?;
    assert!(refused.closed_within(Duration::from_secs(10)));
    // Another client address is not affected.
    let other = SmtpClient::connect_from(
        Ipv4Addr::new(127, 0, 0, 2),
        gw.port(),
        Duration::from_secs(10),
    )
    .context("a session from 127.0.0.2 got no greeting")?;
    other.banner.expect_code(220)?;
    // When one leaves, a new one is welcome again, at once: the slot is
    // given back before the 221 that ends the session leaves, so a client
    // that reconnects as soon as it has read it is never refused for the
    // session it just ended (a sending MTA's next batch). Fifty rounds, each
    // reconnecting the moment QUIT is answered.
    for round in 1..=50 {
        open.pop().expect("two open").quit();
        let again = SmtpClient::connect_with_timeout(gw.port(), Duration::from_secs(10))?;
        ensure!(
            again.banner.code == 220,
            "round {round}: a client that reconnected right after its 221 was refused: {:?}",
            again.banner
        );
        open.push(again);
    }
    Ok(())
}

#[test]
fn sessions_in_total_are_limited() -> Result<()> {
    let gw = Gateway::start("total-sessions", |c| {
        c.set("limits", "incoming_sessions", "3")
            .set("limits", "incoming_sessions_per_ip", "10")
    })?;
    let (open, mut refused) = fill_sessions(gw.port(), 3)?;
    assert_eq!(open.len(), 3);
    refused.banner.expect(421, "4.7.0")?;
    assert!(refused.closed_within(Duration::from_secs(10)));
    Ok(())
}

#[test]
fn recipients_per_message_are_limited() -> Result<()> {
    let gw = Gateway::start("rcpt-limit", |c| {
        c.set("limits", "max_rcpts_per_message", "3")
    })?;
    let mut c = gw.ehlo_client()?;
    c.mail_ok("<alice@sender.test>")?;
    for n in 1..=3 {
        c.command(&format!("RCPT TO:<user{n}@example.com>"))?
            .expect(250, "2.1.5")?;
    }
    c.command("RCPT TO:<user4@example.com>")?
        .expect(452, "4.5.3")?;
    c.data(&read_resource("mail/plain.eml")?)?
        .expect(250, "2.0.0")?;
    c.quit();
    gw.sink.wait_for_count(1, DELIVERY_TIMEOUT)?;
    let mut rcpts: Vec<String> = gw
        .sink
        .settle(QUIET)?
        .iter()
        .flat_map(|m| m.recipients())
        .collect();
    rcpts.sort();
    assert_eq!(
        rcpts,
        [
            "user1@example.com",
            "user2@example.com",
            "user3@example.com"
        ]
    );
    Ok(())
}

#[test]
fn messages_per_session_are_limited() -> Result<()> {
    let gw = Gateway::start("msg-limit", |c| {
        c.set("limits", "max_messages_per_session", "2")
            .set("limits", "max_hops", "5")
    })?;
    let mut c = gw.ehlo_client()?;
    let message = read_resource("mail/plain.eml")?;
    c.send_mail_ok("alice@sender.test", &["bob@example.com"], &message)?;
    c.send_mail_ok("alice@sender.test", &["bob@example.com"], &message)?;
    let third = c.command("MAIL FROM:<alice@sender.test>")?;
    assert_eq!(third.class(), 4, "the third MAIL is deferred: {third}");
    assert!(
        third.enhanced().is_some_and(|e| e.starts_with("4.")),
        "with an enhanced code: {third}"
    );
    // A new session may go on.
    let mut c2 = gw.ehlo_client()?;
    c2.send_mail_ok("alice@sender.test", &["bob@example.com"], &message)?;
    gw.sink.wait_for_count(3, DELIVERY_TIMEOUT)?;
    // Refused messages count too (walkBK F9: a session sending refused
    // messages was bounded by nothing).
    let mut c3 = gw.ehlo_client()?;
    let looping = read_resource("mail/six-received-headers.eml")?;
    for _ in 0..2 {
        c3.send_mail("alice@sender.test", &["bob@example.com"], &looping)?
            .expect(554, "5.4.6")?;
    }
    c3.command("MAIL FROM:<alice@sender.test>")?
        .expect(421, "4.7.0")?;
    Ok(())
}

#[test]
fn too_many_hops_is_refused_as_a_loop() -> Result<()> {
    let gw = Gateway::start("hops", |c| c.set("limits", "max_hops", "5"))?;
    let mut c = gw.ehlo_client()?;
    c.send_mail(
        "alice@sender.test",
        &["bob@example.com"],
        &read_resource("mail/six-received-headers.eml")?,
    )?
    .expect(554, "5.4.6")?;
    c.send_mail_ok(
        "alice@sender.test",
        &["bob@example.com"],
        &read_resource("mail/plain.eml")?,
    )?;
    c.quit();
    gw.sink.wait_for_count(1, DELIVERY_TIMEOUT)?;
    let messages = gw.sink.settle(QUIET)?;
    assert_eq!(messages.len(), 1);
    assert_eq!(
        messages[0].header("Subject").as_deref(),
        Some("A plain message")
    );
    Ok(())
}

#[test]
fn connect_rules_deny_and_allow() -> Result<()> {
    let denied = Gateway::start("connect-deny", |c| {
        c.set_list("access", "connect_rules", &["deny ip 127.0.0.0/8"])
    })?;
    let mut c = SmtpClient::connect(denied.port())?;
    c.banner.expect(554, "5.7.1")?;
    assert!(c.closed_within(Duration::from_secs(10)));

    // First match wins: an allow before a deny lets us in.
    let allowed = Gateway::start("connect-allow", |c| {
        c.set_list(
            "access",
            "connect_rules",
            &["allow ip 127.0.0.1", "deny any"],
        )
    })?;
    allowed.ehlo_client()?;
    Ok(())
}

#[test]
fn helo_mail_from_and_rcpt_rules_deny() -> Result<()> {
    let gw = Gateway::start("access", |c| {
        c.set_list("access", "helo_rules", &["deny host *.bad.test"])
            .set_list(
                "access",
                "mail_from_rules",
                &["deny address *@spammer.test"],
            )
            .set_list(
                "access",
                "rcpt_rules",
                &["deny address blocked@example.com"],
            )
    })?;
    let mut c = gw.client()?;
    c.command("EHLO host.bad.test")?.expect(550, "5.7.1")?;
    c.ehlo("good.test")?;
    c.command("MAIL FROM:<boss@spammer.test>")?
        .expect(550, "5.7.1")?;
    c.mail_ok("<alice@sender.test>")?;
    c.command("RCPT TO:<blocked@example.com>")?
        .expect(550, "5.7.1")?;
    c.rcpt_ok("<bob@example.com>")?;
    c.data(&read_resource("mail/plain.eml")?)?
        .expect(250, "2.0.0")?;
    c.quit();
    gw.sink.wait_for_count(1, DELIVERY_TIMEOUT)?;
    let messages = gw.sink.settle(QUIET)?;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].recipients(), ["bob@example.com"]);
    Ok(())
}

/// walkAH 3: `"blocked"@example.com` and `"blo\cked"@example.com` are
/// blocked@example.com (RFC 5321 4.1.2), but escaped the rule that denies
/// it, and `"bob"@` beside `bob@` was delivered twice. The quotes go
/// before any rule, the duplicate check and the next hop see the address.
#[test]
fn a_quoted_local_part_is_the_same_mailbox_to_rules_and_delivery() -> Result<()> {
    let gw = Gateway::start("quoted-local", |c| {
        c.set_list(
            "access",
            "mail_from_rules",
            &["deny address boss@spammer.test"],
        )
        .set_list(
            "access",
            "rcpt_rules",
            &["deny address blocked@example.com"],
        )
    })?;
    let mut c = gw.ehlo_client()?;
    c.command("MAIL FROM:<\"boss\"@spammer.test>")?
        .expect(550, "5.7.1")?;
    c.mail_ok("<\"alice\"@sender.test>")?;
    for quoted in [
        "\"blocked\"@example.com",
        "\"blo\\cked\"@example.com",
        "\"BLOCKED\"@EXAMPLE.COM",
    ] {
        let reply = c.command(&format!("RCPT TO:<{quoted}>"))?;
        ensure!(reply.is(550, "5.7.1"), "RCPT TO:<{quoted}> got {reply}");
    }
    c.rcpt_ok("<bob@example.com>")?;
    c.rcpt_ok("<\"bob\"@example.com>")?;
    c.rcpt_ok("<\"b\\ob\"@example.com>")?;
    c.data(&read_resource("mail/plain.eml")?)?
        .expect(250, "2.0.0")?;
    c.quit();
    gw.sink.wait_for_count(1, DELIVERY_TIMEOUT)?;
    let messages = gw.sink.settle(QUIET)?;
    assert_eq!(messages.len(), 1);
    assert_eq!(
        messages[0].recipients(),
        ["bob@example.com"],
        "one copy, unquoted"
    );
    assert_eq!(messages[0].sender(), "alice@sender.test");
    Ok(())
}

#[test]
fn dsn_parameters_are_accepted() -> Result<()> {
    let gw = Gateway::start("dsn-params", |c| c)?;
    let mut c = gw.ehlo_client()?;
    c.mail_ok("<alice@sender.test> RET=HDRS ENVID=x")?;
    c.rcpt_ok("<bob@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@example.com")?;
    c.rcpt_ok("<carol@example.com> NOTIFY=NEVER")?;
    c.data(&read_resource("mail/plain.eml")?)?
        .expect(250, "2.0.0")?;
    c.quit();
    wait_for_recipients(&gw.sink, &["bob@example.com", "carol@example.com"])?;
    Ok(())
}

/// Postfix's before-queue proxy passes on the SMTPUTF8 that its client
/// gave: with an ASCII envelope the message is accepted and delivered (the
/// hop gets it without the parameter, smtp-sink does not offer it); a
/// non-ASCII address needs the parameter (tests/tests/smtputf8.rs has the
/// UTF-8 envelopes).
#[test]
fn smtputf8_with_an_ascii_envelope_is_accepted() -> Result<()> {
    let gw = Gateway::start("smtputf8", |c| c)?;
    let mut c = gw.ehlo_client()?;
    c.command("MAIL FROM:<j\u{fc}rgen@sender.test>")?
        .expect(553, "5.6.7")?;
    c.mail_ok("<alice@sender.test> SMTPUTF8")?;
    c.rcpt_ok("<bob@example.com>")?;
    c.data(&read_resource("mail/plain.eml")?)?
        .expect(250, "2.0.0")?;
    c.quit();
    wait_for_recipients(&gw.sink, &["bob@example.com"])?;
    Ok(())
}

/// A gateway that refuses all new mail for lack of spool space says so
/// at WARN, once, and at INFO when mail is taken again; each refusal's
/// line names the cause (walkP finding 9: only INFO lines with
/// `reason="tempfail"` before).
#[test]
fn lack_of_spool_space_is_warned_once_and_its_end_logged() -> Result<()> {
    // More free space than any disk has: every MAIL finds too little.
    let gw = Gateway::start("spool-space", |c| {
        c.set_str("limits", "min_queue_free_space", "1000TiB")
    })?;
    for _ in 0..3 {
        let mut c = gw.ehlo_client()?;
        c.command("MAIL FROM:<alice@sender.test>")?
            .expect(452, "4.3.1")?;
        c.quit();
    }
    let warning = "Spool free space is under limits.min_queue_free_space";
    wait_until("three refusals logged", Duration::from_secs(10), || {
        let log = gw.daemon.full_log();
        Ok((log.matches("cause=spool_space ").count() == 3).then_some(()))
    })
    .with_context(|| gw.daemon.full_log())?;
    let log = gw.daemon.full_log();
    // walkBK F7: `grep from=SENDER` finds the mail that never came.
    ensure!(
        log.lines()
            .filter(|l| l.contains("cause=spool_space "))
            .all(|l| l.contains("from=alice@sender.test")),
        "every refusal names its sender: {log}"
    );
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains(warning)).collect();
    ensure!(
        warnings.len() == 1
            && warnings[0].contains(" WARN ")
            && warnings[0].contains("min_queue_free_space=1000TiB"),
        "one WARN for the episode, naming the limit:\n{log}"
    );
    // Space is back (here: the limit is lowered): the next MAIL is taken
    // and the end is logged once.
    gw.daemon.write_config(
        &gw.config
            .clone()
            .set_str("limits", "min_queue_free_space", "1MiB")
            .render(),
    )?;
    gw.daemon.sighup()?;
    wait_until("the reload", Duration::from_secs(10), || {
        Ok(gw
            .daemon
            .full_log()
            .contains("The new configuration is in force")
            .then_some(()))
    })?;
    let mut c = gw.ehlo_client()?;
    c.mail_ok("<alice@sender.test>")?;
    c.quit();
    wait_until(
        "the end of the episode logged",
        Duration::from_secs(10),
        || {
            Ok(gw
                .daemon
                .full_log()
                .contains("Spool free space is back over limits.min_queue_free_space")
                .then_some(()))
        },
    )
    .with_context(|| gw.daemon.full_log())?;
    Ok(())
}

/// Addresses without angle brackets, as old scanners and scripts send
/// them, are taken as Postfix takes them by default
/// (`strict_rfc821_envelopes = no`), and the message arrives.
#[test]
fn plain_addresses_without_brackets_are_accepted() -> Result<()> {
    let gw = Gateway::start("bare-addresses", |c| c)?;
    let mut c = gw.ehlo_client()?;
    c.mail_ok("alice@sender.test SIZE=300")?;
    c.rcpt_ok("bob@example.com")?;
    c.data(&read_resource("mail/plain.eml")?)?
        .expect(250, "2.0.0")?;
    c.quit();
    wait_for_recipients(&gw.sink, &["bob@example.com"])?;
    let m = &gw.sink.messages()?[0];
    ensure!(m.sender() == "alice@sender.test", "sender: {}", m.sender());
    Ok(())
}

#[test]
fn vrfy_help_rset_noop_and_quit() -> Result<()> {
    let gw = Gateway::start("small-commands", |c| c)?;
    let mut c = gw.ehlo_client()?;
    c.command("VRFY bob@example.com")?.expect(252, "2.5.2")?;
    let help = c.command("HELP")?;
    help.expect_code(214)?;
    assert!(
        help.lines
            .iter()
            .all(|l| enhanced_code_of(l) == Some("2.0.0")),
        "{help}"
    );
    // HELP lists what this session may use: no TLS is configured, so no
    // STARTTLS (which would get 502); the client is in relay_networks, so
    // XFORWARD.
    let listed = help.lines.join(" ");
    assert!(
        listed.contains("MAIL RCPT DATA") && listed.contains("XFORWARD"),
        "{help}"
    );
    assert!(
        !listed.contains("STARTTLS"),
        "STARTTLS is not offered: {help}"
    );
    c.command("STARTTLS")?.expect(502, "5.5.1")?;
    c.command("NOOP")?.expect(250, "2.0.0")?;
    c.mail_ok("<alice@sender.test>")?;
    c.rcpt_ok("<bob@example.com>")?;
    c.command("RSET")?.expect(250, "2.0.0")?;
    // The transaction is gone.
    c.command("DATA")?.expect(503, "5.5.1")?;
    c.command("QUIT")?.expect(221, "2.0.0")?;
    assert!(
        c.closed_within(Duration::from_secs(10)),
        "closed after QUIT"
    );
    assert_eq!(
        gw.sink.settle(QUIET)?.len(),
        0,
        "the reset message went nowhere"
    );
    Ok(())
}

#[test]
fn every_reply_carries_an_enhanced_status_code() -> Result<()> {
    let gw = Gateway::start("enhanced", |c| {
        c.set_list("network", "relay_networks", &["10.0.0.0/8"])
            .set("limits", "max_rcpts_per_message", "2")
            .set_str("limits", "max_message_size", "10KiB")
    })?;
    let mut c = gw.client()?;
    c.ehlo("client.test")?;
    let commands = [
        "NOOP",
        "VRFY bob",
        "HELP",
        "RCPT TO:<bob@example.com>",
        "DATA",
        "MAIL FROM:<alice@sender.test> SIZE=99999999",
        "MAIL FROM:broken",
        "MAIL FROM:<alice@sender.test>",
        "MAIL FROM:<alice@sender.test>",
        "RCPT TO:<victim@elsewhere.test>",
        "RCPT TO:<bob@example.com>",
        "RCPT TO:<carol@example.com>",
        "RCPT TO:<dave@example.com>",
        "RCPT TO:broken",
        "XYZZY",
        "RSET",
        "STARTTLS",
        "QUIT",
    ];
    let mut missing = Vec::new();
    for command in commands {
        let reply = c.command(command)?;
        if reply.code == 421 {
            // Too many errors in one session: go on in a new one.
            c = gw.ehlo_client()?;
        }
        for line in &reply.lines {
            let ok = enhanced_code_of(line)
                .is_some_and(|e| e.as_bytes()[0] == b'0' + (reply.code / 100) as u8);
            if !ok {
                missing.push(format!("{command} -> {reply}"));
                break;
            }
        }
    }
    // The reply to the end of data, too.
    let mut c = gw.ehlo_client()?;
    let reply = c.send_mail(
        "alice@sender.test",
        &["bob@example.com"],
        &read_resource("mail/plain.eml")?,
    )?;
    if enhanced_code_of(&reply.lines[0]).is_none() {
        missing.push(format!("end of data -> {reply}"));
    }
    assert!(
        missing.is_empty(),
        "replies without an enhanced status code:\n{}",
        missing.join("\n")
    );
    Ok(())
}

/// walkK: `RCPT TO:<postmaster>` is always accepted (RFC 5321 4.5.1), but
/// `access.rcpt_rules` refused it when `server.postmaster` was outside the
/// domains the rules allow.
#[test]
fn postmaster_is_accepted_whatever_the_recipient_rules_say() -> Result<()> {
    let gw = Gateway::start("postmaster-rules", |c| {
        c.set_str("server", "postmaster", "hostmaster@corp.example.org")
            .set_list(
                "access",
                "rcpt_rules",
                &["allow address *@example.com", "deny any"],
            )
    })?;
    let mut c = gw.ehlo_client()?;
    c.mail_ok("<alice@sender.test>")?;
    c.rcpt_ok("<postmaster>")?;
    c.rcpt_ok("<postmaster@mw.test>")?;
    c.command("RCPT TO:<someone@elsewhere.test>")?
        .expect(550, "5.7.1")?;
    Ok(())
}

/// A bare HELO is told the syntax of HELO, not of EHLO (walkK).
#[test]
fn helo_without_a_name_is_told_helo_syntax() -> Result<()> {
    let gw = Gateway::start("helo-syntax", |c| c)?;
    let mut c = SmtpClient::connect_ok(gw.port())?;
    let r = c.command("HELO")?;
    r.expect(501, "5.5.4")?;
    ensure!(r.to_string().contains("Syntax: HELO hostname"), "{r}");
    Ok(())
}

/// walkH: behind an MTA that forwards its client (XFORWARD), a size
/// refusal was logged and counted for the MTA, not the client it named.
#[test]
fn refusals_after_xforward_name_the_forwarded_client() -> Result<()> {
    let gw = Gateway::start("xforward-refusals", |c| {
        c.set_str("limits", "max_message_size", "10KiB")
    })?;
    let mut c = gw.ehlo_client()?;
    c.command("XFORWARD NAME=spam.host.test ADDR=192.0.2.9")?
        .expect(250, "2.0.0")?;
    c.command("MAIL FROM:<a@sender.test> SIZE=999999")?
        .expect(552, "5.3.4")?;
    c.command("XFORWARD ADDR=192.0.2.10")?
        .expect(250, "2.0.0")?;
    let mut big = b"Subject: too big\r\n\r\n".to_vec();
    while big.len() < 20 * 1024 {
        big.extend_from_slice(&[b'x'; 70]);
        big.extend_from_slice(b"\r\n");
    }
    c.send_mail("a@sender.test", &["bob@example.com"], &big)?
        .expect(552, "5.3.4")?;
    c.quit();
    let log = wait_until("both refusals in the log", Duration::from_secs(10), || {
        let log = gw.daemon.log();
        Ok((log.matches("Refused in the session.").count() >= 2).then_some(log))
    })?;
    let refusals: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Refused in the session."))
        .collect();
    ensure!(
        refusals.len() == 2
            && refusals[0].contains("client=192.0.2.9 ")
            && refusals[1].contains("client=192.0.2.10 "),
        "each refusal names the forwarded client: {refusals:#?}"
    );
    Ok(())
}

/// walkK: a refused greeting counted a refused session each time the
/// client tried again, so one client looping on HELO inflated the count.
#[test]
fn a_refused_greeting_counts_its_session_once() -> Result<()> {
    let gw = Gateway::start("helo-refused-once", |c| {
        c.set_list("access", "helo_rules", &["deny host bad.helo.test"])
    })?;
    let mut c = SmtpClient::connect_ok(gw.port())?;
    for _ in 0..3 {
        c.command("EHLO bad.helo.test")?.expect(550, "5.7.1")?;
    }
    c.command("EHLO good.helo.test")?.expect_code(250)?;
    c.quit();
    wait_until("the refusal in the log", Duration::from_secs(10), || {
        Ok(gw
            .daemon
            .log()
            .contains("Refused in the session.")
            .then_some(()))
    })?;
    // Give a second line, if one were coming, the time to be written.
    std::thread::sleep(Duration::from_millis(300));
    let log = gw.daemon.log();
    let n = log.matches("Refused in the session.").count();
    ensure!(n == 1, "{n} refusals logged for one session:\n{log}");
    // Each refused name has its line (walkBT F1), the first counted.
    let named: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("HELO/EHLO name refused by access.helo_rules"))
        .collect();
    ensure!(
        named.len() == 3
            && named.iter().all(|l| l.contains("helo=bad.helo.test"))
            && named[0].contains("counted=true")
            && named[1..].iter().all(|l| l.contains("counted=false")),
        "one line per refused greeting, naming it:\n{log}"
    );
    Ok(())
}

/// walkAR F5: a refused MAIL or RCPT names the address refused, so that a
/// postmaster asked "why was my mail to X refused" finds it with a grep,
/// as in Postfix's reject lines. An address the parser refused is named
/// as written, its invisible and control characters escaped, never raw.
#[test]
fn refused_senders_and_recipients_are_named_on_their_log_lines() -> Result<()> {
    let gw = Gateway::start("refused-named", |c| {
        c.set_list("network", "relay_networks", &["10.0.0.0/8"])
    })?;
    let mut c = gw.ehlo_client()?;
    // Not UTF-8 (Latin-1): refused by the parser.
    c.send(b"MAIL FROM:<j\xfcrgen@latin1.test> SMTPUTF8\r\n")?;
    c.read_reply()?.expect(553, "5.6.7")?;
    c.command("MAIL FROM:<alice@sender.test>")?
        .expect(250, "2.1.0")?;
    c.command("RCPT TO:<bob@elsewhere.test>")?
        .expect(554, "5.7.1")?;
    // A zero-width space and a C1 control: refused by the parser.
    c.command("RCPT TO:<zw\u{200B}sp@example.com>")?
        .expect_code(553)?;
    c.command("RCPT TO:<kaputt@\u{85}x.example>")?
        .expect_code(553)?;
    c.quit();
    let want = [
        "from=j\u{FFFD}rgen@latin1.test ",
        "to=bob@elsewhere.test ",
        "to=\"zw\\u{200B}sp@example.com\"",
        "to=\"kaputt@\\x85x.example\"",
    ];
    let log = wait_until("the refusals in the log", Duration::from_secs(10), || {
        let log = gw.daemon.log();
        Ok((log.matches("Refused in the session.").count() >= 4).then_some(log))
    })?;
    let refusals: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Refused in the session."))
        .collect();
    for w in want {
        ensure!(
            refusals.iter().any(|l| l.contains(w)),
            "no refusal line names {w}: {refusals:#?}"
        );
    }
    ensure!(
        !log.contains('\u{200B}') && !log.contains('\u{85}'),
        "an invisible or control character reached the log raw:\n{log}"
    );
    Ok(())
}

/// walkAR F8: RFC 6531 3.4 defines SMTPUTF8 for a session begun with EHLO,
/// where it was offered; after HELO it is a parameter not recognised
/// (RFC 5321 4.1.1.11: 555), as Postfix answers one it did not offer. The
/// same MAIL after EHLO is taken.
#[test]
fn smtputf8_after_helo_is_refused_as_a_parameter_not_offered() -> Result<()> {
    let gw = Gateway::start("smtputf8-helo", |c| c)?;
    let mut c = gw.client()?;
    c.command("HELO client.test")?.expect_code(250)?;
    c.command("MAIL FROM:<alice@sender.test> SMTPUTF8")?
        .expect(555, "5.5.4")?;
    c.command("MAIL FROM:<j\u{fc}rgen@sender.test> SMTPUTF8")?
        .expect(555, "5.5.4")?;
    // The session goes on: a plain MAIL is taken.
    c.command("MAIL FROM:<alice@sender.test>")?
        .expect(250, "2.1.0")?;
    c.command("RSET")?.expect_code(250)?;
    c.command("EHLO client.test")?.expect_code(250)?;
    c.command("MAIL FROM:<j\u{fc}rgen@sender.test> SMTPUTF8")?
        .expect(250, "2.1.0")?;
    c.quit();
    let log = wait_until("the refusal in the log", Duration::from_secs(10), || {
        let log = gw.daemon.log();
        Ok((log.matches("Refused in the session.").count() >= 2).then_some(log))
    })?;
    ensure!(
        log.lines().any(|l| l.contains("Refused in the session.")
            && l.contains("from=j\u{fc}rgen@sender.test ")
            && l.contains("555 5.5.4")),
        "the refusal names the sender and the reply:\n{log}"
    );
    Ok(())
}

/// walkAP F6: the lines an inbound session writes itself carry its ID,
/// `session=N`, one per connection, so that two sessions of one client
/// (the usual case behind an MTA) can be told apart in the log. So does
/// the "Message accepted." of the messages it brought, though the policy
/// code that logs it knows only the message, and a refused recipient's
/// line.
#[test]
fn two_sessions_of_one_client_log_different_session_ids() -> Result<()> {
    let gw = Gateway::start("session-ids", |c| {
        c.set("limits", "max_rcpts_per_message", "1")
    })?;
    let mut queue_ids = Vec::new();
    for n in 0..2 {
        let mut c = gw.ehlo_client()?;
        c.mail_ok(&format!("<s{n}@sender.test>"))?;
        c.rcpt_ok("<bob@example.com>")?;
        for r in 0..3 {
            c.command(&format!("RCPT TO:<u{r}@example.com>"))?
                .expect(452, "4.5.3")?;
        }
        let r = c.data(format!("Subject: s{n}\r\n\r\nhi\r\n").as_bytes())?;
        queue_ids.push(r.queue_id().with_context(|| format!("a queue ID in {r}"))?);
        c.quit();
    }
    let session_of = |line: &str| -> Option<String> {
        Some(
            line.split(" session=")
                .nth(1)?
                .split(' ')
                .next()?
                .to_string(),
        )
    };
    let ids = wait_until("both sessions' lines", Duration::from_secs(10), || {
        let log = gw.daemon.log();
        let ids: Vec<(String, String, String)> = (0..2)
            .filter_map(|n| {
                let refused = log.lines().find(|l| {
                    l.contains("Recipients over limits.max_rcpts_per_message refused")
                        && l.contains(&format!(" from=s{n}@sender.test "))
                })?;
                let accepted = log.lines().find(|l| {
                    l.contains(&format!("Message accepted. queue_id={} ", queue_ids[n]))
                })?;
                // The first recipient over the limit, logged on its own.
                let first = log.lines().find(|l| {
                    l.contains("Refused in the session.")
                        && l.contains(" refused=recipient ")
                        && l.contains(&format!(" from=s{n}@sender.test "))
                })?;
                Some((
                    session_of(refused)?,
                    session_of(accepted)?,
                    session_of(first)?,
                ))
            })
            .collect();
        Ok((ids.len() == 2).then_some(ids))
    })
    .with_context(|| gw.daemon.log())?;
    ensure!(
        ids[0].0 != ids[1].0 && ids.iter().all(|(i, ..)| i.parse::<u64>().is_ok()),
        "each session its own numeric ID: {ids:?}"
    );
    ensure!(
        ids.iter()
            .all(|(refused, accepted, first)| refused == accepted && refused == first),
        "each Message accepted. and recipient refusal carries its session's ID: {ids:?}"
    );
    Ok(())
}

/// walkAU F3: an Internet client that sends its message behind DATA
/// without waiting for the 354 (RFC 2920 3.1: DATA ends a pipelined
/// group) had its body run as commands when DATA was refused: the body's
/// MAIL, RCPT and DATA became a second transaction to bob@example.com.
/// It is now cut off with 554 5.5.0 at DATA, as Postfix 3.9 does, and
/// nothing reaches the next hop; a client in relay_networks that does the
/// same still gets its message through.
#[test]
fn commands_pipelined_behind_data_end_the_session() -> Result<()> {
    let gw = Gateway::start("pipelining-after-data", |c| {
        c.set_list("network", "relay_networks", &["10.0.0.0/8"])
    })?;
    let attack =
        b"EHLO p.test\r\nMAIL FROM:<a@sender.test>\r\nRCPT TO:<x@not-ours.test>\r\nDATA\r\n\
MAIL FROM:<ceo@example.com>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n\
Subject: injected via rejected DATA\r\n\r\nhi\r\n.\r\nQUIT\r\n";
    // The same with a recipient DATA would take: the body must still not
    // be sent before the 354.
    let eager =
        b"EHLO p.test\r\nMAIL FROM:<a@sender.test>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n\
Subject: sent before the 354\r\n\r\nhi\r\n.\r\nQUIT\r\n";
    for (what, batch, rcpt_reply) in [
        ("refused DATA", &attack[..], (554, "5.7.1")),
        ("accepted DATA", &eager[..], (250, "2.1.5")),
    ] {
        let mut c = SmtpClient::connect_ok(gw.port())?;
        c.set_timeout(Duration::from_secs(5))?;
        c.send(batch)?;
        c.read_reply()?.expect_code(250)?;
        c.read_reply()?.expect(250, "2.1.0")?;
        c.read_reply()?.expect(rcpt_reply.0, rcpt_reply.1)?;
        let data = c.read_reply()?;
        data.expect(554, "5.5.0")?;
        ensure!(
            data.text()
                .contains("improper command pipelining after DATA"),
            "{what}: {data}"
        );
        ensure!(
            c.closed_within(Duration::from_secs(5)),
            "{what}: the session ends after the 554"
        );
    }
    wait_until("the refusals logged", Duration::from_secs(10), || {
        let log = gw.daemon.log();
        let n = log
            .lines()
            .filter(|l| {
                l.contains("Refused in the session.")
                    && l.contains("cause=pipelining")
                    && l.contains("reason=syntax")
                    && l.contains("client=127.0.0.1")
            })
            .count();
        Ok((n == 2).then_some(()))
    })
    .with_context(|| gw.daemon.log())?;
    // Our own client pipelining the same way is served.
    let inside = Gateway::start("pipelining-after-data-inside", |c| c)?;
    let mut c = SmtpClient::connect_ok(inside.port())?;
    c.send(eager)?;
    c.read_reply()?.expect_code(250)?;
    c.read_reply()?.expect(250, "2.1.0")?;
    c.read_reply()?.expect(250, "2.1.5")?;
    c.read_reply()?.expect_code(354)?;
    c.read_reply()?.expect(250, "2.0.0")?;
    inside.sink.wait_for_count(1, DELIVERY_TIMEOUT)?;
    // Nothing of either attempt reached the next hop.
    let delivered = gw.sink.settle(QUIET)?;
    ensure!(
        delivered.is_empty(),
        "no message went downstream: {:?}",
        delivered.iter().map(|m| m.recipients()).collect::<Vec<_>>()
    );
    Ok(())
}

/// walkAU F9: a message made of a great many tiny header fields cost ~25
/// times its size to check. A header section over 10,000 fields (or
/// 1 MiB) is refused with 552 5.3.4 at the end of DATA, the rest of DATA
/// read so that the session goes on in step, and nothing is delivered.
#[test]
fn a_header_of_too_many_fields_is_refused_and_the_session_goes_on() -> Result<()> {
    let gw = Gateway::start("header-too-large", |c| c)?;
    let mut message = Vec::new();
    for n in 0..12_000 {
        message.extend_from_slice(format!("X-H{n}: v\r\n").as_bytes());
    }
    message.extend_from_slice(b"Subject: many fields\r\n\r\nbody\r\n");
    let mut c = gw.ehlo_client()?;
    let reply = c.send_mail("alice@sender.test", &["bob@example.com"], &message)?;
    reply.expect(552, "5.3.4")?;
    ensure!(reply.text().contains("Message header too large"), "{reply}");
    // In step: the next transaction in the same session is served.
    let ok = c.send_mail(
        "alice@sender.test",
        &["carol@example.com"],
        b"Subject: after\r\n\r\nfine\r\n",
    )?;
    ok.expect(250, "2.0.0")?;
    c.quit();
    let delivered = gw.sink.wait_for_count(1, DELIVERY_TIMEOUT)?;
    let delivered = if delivered.len() == 1 {
        gw.sink.settle(QUIET)?
    } else {
        delivered
    };
    ensure!(
        delivered.len() == 1 && delivered[0].recipients() == ["carol@example.com"],
        "only the second message went on: {:?}",
        delivered.iter().map(|m| m.recipients()).collect::<Vec<_>>()
    );
    let log = gw.daemon.log();
    ensure!(
        log.lines().any(|l| l.contains("Refused in the session.")
            && l.contains("reason=size")
            && l.contains("from=alice@sender.test")
            && l.contains("552 5.3.4 Message header too large")),
        "the refusal is logged with its sender:\n{log}"
    );
    Ok(())
}

/// walkAU F7: XFORWARD was allowed to every relay_networks client, so any
/// LAN machine could set the client SPF and the Received line are computed
/// from. Only `network.xforward_hosts` may use it: a client that may relay
/// but is not listed is neither offered it nor allowed it.
#[test]
fn xforward_is_only_for_xforward_hosts_not_every_relay_client() -> Result<()> {
    let gw = Gateway::start("xforward-hosts", |c| {
        c.set_list("network", "xforward_hosts", &["192.0.2.25"])
    })?;
    let mut c = gw.client()?;
    let ehlo = c.ehlo("lan-pc.test")?;
    ensure!(!ehlo.text().contains("XFORWARD"), "not offered: {ehlo}");
    c.command("XFORWARD NAME=mx.bank.test ADDR=198.51.100.7 HELO=mx.bank.test")?
        .expect(550, "5.7.0")?;
    // It still relays (relay_networks), as itself.
    c.send_mail_ok(
        "ceo@bank.test",
        &["someone@elsewhere.test"],
        &read_resource("mail/plain.eml")?,
    )?;
    c.quit();
    let m = &gw.sink.wait_for_count(1, DELIVERY_TIMEOUT)?[0];
    ensure!(
        !m.message.contains("198.51.100.7") && m.message.contains("[127.0.0.1]"),
        "the Received line names the connecting client:\n{}",
        m.message
    );
    Ok(())
}
