//! The harness against the real peers alone, without Mailward: when one of
//! these fails, the others' failures say nothing about the daemon.

use std::time::Duration;

use anyhow::{ensure, Result};
use mailward_e2e::dns::{QTYPE_A, QTYPE_MX};
use mailward_e2e::tools::{output_text, smtp_source};
use mailward_e2e::*;

#[test]
fn require_names_the_debian_package() {
    let err = require("no-such-tool-mailward", "some-package").unwrap_err();
    assert_eq!(
        err.to_string(),
        "`no-such-tool-mailward` not found: install the Debian package some-package (tests/install-deps.sh)"
    );
}

#[test]
fn swaks_delivers_into_the_sink_dump() -> Result<()> {
    let dir = TestDir::new("harness-swaks")?;
    let sink = Sink::start(dir.path(), "sink")?;
    let port = sink.port.to_string();
    let out = swaks(&[
        "--server",
        &format!("127.0.0.1:{port}"),
        "--from",
        "alice@sender.test",
        "--to",
        "bob@example.com,carol@example.com",
        "--ehlo",
        "client.test",
        "--data",
        &resource("mail/dot-lines.eml").display().to_string(),
    ])?;
    ensure!(out.status.success(), "swaks failed:\n{}", output_text(&out));
    let messages = sink.wait_for_count(1, Duration::from_secs(30))?;
    let m = &messages[0];
    assert_eq!(m.sender(), "alice@sender.test");
    assert_eq!(m.recipients(), ["bob@example.com", "carol@example.com"]);
    assert_eq!(m.helo.as_deref(), Some("client.test"));
    let expected = String::from_utf8(read_resource("mail/dot-lines.eml")?)?.replace("\r\n", "\n");
    // swaks sends one more CRLF before the final dot than the file has.
    assert_eq!(
        m.message.trim_end(),
        expected.trim_end(),
        "swaks and smtp-sink round-trip dots"
    );
    Ok(())
}

#[test]
fn raw_client_gets_exact_replies_from_the_sink() -> Result<()> {
    let dir = TestDir::new("harness-raw")?;
    let sink = Sink::start(dir.path(), "sink")?;
    let mut c = SmtpClient::connect_ok(sink.port)?;
    let ehlo = c.ehlo("client.test")?;
    assert!(ehlo.lines.iter().any(|l| l == "PIPELINING"), "{ehlo}");
    c.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")?;
    assert_eq!(c.read_reply()?.code, 250);
    assert_eq!(c.read_reply()?.code, 250);
    assert_eq!(c.read_reply()?.code, 354);
    let plain = read_resource("mail/plain.eml")?;
    c.send(&smtp::dot_stuff(&plain))?;
    c.read_reply()?.expect(250, "2.0.0")?;
    c.quit();
    let m = &sink.wait_for_count(1, Duration::from_secs(30))?[0];
    assert_eq!(m.header("subject").as_deref(), Some("A plain message"));
    assert_eq!(m.message, String::from_utf8(plain)?.replace("\r\n", "\n"));
    Ok(())
}

#[test]
fn smtp_source_load_is_counted_by_the_sink() -> Result<()> {
    let dir = TestDir::new("harness-source")?;
    let sink = Sink::start(dir.path(), "sink")?;
    let out = smtp_source(&[
        "-s",
        "4",
        "-m",
        "40",
        "-l",
        "1024",
        "-f",
        "sender@example.com",
        "-t",
        "rcpt@example.com",
        &format!("127.0.0.1:{}", sink.port),
    ])?;
    ensure!(
        out.status.success(),
        "smtp-source failed:\n{}",
        output_text(&out)
    );
    let messages = sink.wait_for_count(40, Duration::from_secs(30))?;
    assert_eq!(sink.settle(Duration::from_millis(300))?.len(), 40);
    assert!(messages
        .iter()
        .all(|m| m.recipients() == ["rcpt@example.com"]));
    Ok(())
}

#[test]
fn dnsmasq_serves_the_test_zones() -> Result<()> {
    let dir = TestDir::new("harness-dns")?;
    let dns = Dns::start(
        dir.path(),
        &[
            "--mx-host=mx.test,mail.mx.test,10",
            "--host-record=mail.mx.test,127.0.0.1",
            "--host-record=1.0.0.127.bl.test,127.0.0.2",
        ],
    )?;
    assert_eq!(dns.query("mx.test", QTYPE_MX)?.answers, 1);
    assert_eq!(dns.query("mail.mx.test", QTYPE_A)?.answers, 1);
    assert_eq!(dns.query("1.0.0.127.bl.test", QTYPE_A)?.answers, 1);
    // A DNSBL miss is NXDOMAIN, not REFUSED.
    assert_eq!(dns.query("2.0.0.127.bl.test", QTYPE_A)?.rcode, 3);
    Ok(())
}

#[test]
fn scripted_server_refuses_one_recipient_and_keeps_wire_bytes() -> Result<()> {
    let server = ScriptedServer::start(&[(
        "bad@example.com",
        "550 5.1.1 <bad@example.com>: User unknown",
    )])?;
    let mut c = SmtpClient::connect_ok(server.port)?;
    c.ehlo("client.test")?;
    c.command("MAIL FROM:<a@example.com>")?
        .expect(250, "2.1.0")?;
    c.command("RCPT TO:<good@example.com>")?
        .expect(250, "2.1.5")?;
    c.command("RCPT TO:<bad@example.com>")?
        .expect(550, "5.1.1")?;
    let message = read_resource("mail/dot-lines.eml")?;
    c.data(&message)?.expect(250, "2.0.0")?;
    c.quit();
    let t = &server.wait_for_transactions(1, Duration::from_secs(10))?[0];
    assert_eq!(t.accepted, ["good@example.com"]);
    assert_eq!(t.refused, ["bad@example.com"]);
    assert_eq!(t.message(), message);
    assert!(
        t.data.windows(5).any(|w| w == b"\r\n..\r"),
        "the lone dot is stuffed on the wire"
    );
    assert_eq!(server.rcpt_attempts("bad@example.com"), 1);
    Ok(())
}

/// The ports handed to peers come from below the kernel's ephemeral range,
/// where no outgoing connection can take one before the peer binds it;
/// they are distinct and free for both TCP and UDP when handed out.
#[test]
fn free_ports_are_below_the_ephemeral_range_and_distinct() -> Result<()> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")?;
    let low: u16 = range
        .split_whitespace()
        .next()
        .and_then(|l| l.parse().ok())
        .unwrap_or(32_768);
    let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
    let distinct: std::collections::HashSet<u16> = ports.iter().copied().collect();
    ensure!(
        distinct.len() == ports.len(),
        "a port was handed out twice: {ports:?}"
    );
    for &port in &ports {
        if low > 11_000 {
            ensure!(
                (10_000..low).contains(&port),
                "port {port} is not in 10000..{low} (below the ephemeral range)"
            );
        }
        std::net::TcpListener::bind(("127.0.0.1", port))?;
        std::net::UdpSocket::bind(("127.0.0.1", port))?;
    }
    Ok(())
}
