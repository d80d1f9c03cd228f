//! A small raw SMTP client for exact replies: it sends exactly the bytes a
//! test gives it (pipelined, malformed, bare LF) and parses replies into
//! code, enhanced status code and text, without hiding anything.

use std::fmt;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// How long a reply may take before the client gives up.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// One SMTP reply, possibly of several lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// The text of each line, after "NNN-" or "NNN ".
    pub lines: Vec<String>,
}

impl Reply {
    /// The enhanced status code (RFC 3463) at the start of the first line.
    pub fn enhanced(&self) -> Option<&str> {
        self.lines.first().and_then(|l| enhanced_code_of(l))
    }

    /// All lines' text, joined by newlines.
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    /// Whether the reply has this code and enhanced code.
    pub fn is(&self, code: u16, enhanced: &str) -> bool {
        self.code == code && self.enhanced() == Some(enhanced)
    }

    /// Fails unless the reply has this code and enhanced code.
    pub fn expect(&self, code: u16, enhanced: &str) -> Result<&Reply> {
        if !self.is(code, enhanced) {
            bail!("expected {code} {enhanced}, got: {self}");
        }
        Ok(self)
    }

    /// Fails unless the reply has this code (any text).
    pub fn expect_code(&self, code: u16) -> Result<&Reply> {
        if self.code != code {
            bail!("expected {code}, got: {self}");
        }
        Ok(self)
    }

    /// The class digit: 2, 3, 4 or 5.
    pub fn class(&self) -> u16 {
        self.code / 100
    }

    /// The queue ID of a `250 2.0.0 Ok: queued as ID` reply.
    pub fn queue_id(&self) -> Option<String> {
        let text = self.lines.first()?;
        let at = text.find("queued as ")?;
        let id: String = text[at + "queued as ".len()..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        (!id.is_empty()).then_some(id)
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            if i > 0 {
                f.write_str(" | ")?;
            }
            let sep = if i == last { ' ' } else { '-' };
            write!(f, "{}{}{}", self.code, sep, line)?;
        }
        Ok(())
    }
}

/// The enhanced status code at the start of `text`, if it has one:
/// `class.subject.detail` with class 2, 4 or 5.
pub fn enhanced_code_of(text: &str) -> Option<&str> {
    let word = text.split_whitespace().next()?;
    let parts: Vec<&str> = word.split('.').collect();
    let ok = parts.len() == 3
        && matches!(parts[0], "2" | "4" | "5")
        && parts[1..]
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()));
    ok.then_some(word)
}

/// Whether `s` looks like a Mailward queue ID: 16 upper-case hex digits.
pub fn is_queue_id(s: &str) -> bool {
    s.len() == 16
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
}

/// Dot-stuffs a message for DATA (a line starting with "." gets another
/// one) and appends the end-of-data line. Line endings are left exactly as
/// they are (so bare LF stays bare LF); a message not ending in a line
/// ending gets CRLF.
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 16);
    let mut at_line_start = true;
    for &b in message {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !at_line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// A raw SMTP client connection.
pub struct SmtpClient {
    /// Reads replies.
    reader: BufReader<TcpStream>,
    /// Writes commands (a clone of the same socket).
    writer: TcpStream,
    /// The greeting the server sent on connect (220, or a 421/554 refusal).
    pub banner: Reply,
}

impl SmtpClient {
    /// Connects to 127.0.0.1:`port` and reads the greeting, whatever its code.
    pub fn connect(port: u16) -> Result<SmtpClient> {
        Self::connect_addr(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    /// Connects to 127.0.0.1:`port` and reads the greeting, waiting at
    /// most `timeout` for it.
    pub fn connect_with_timeout(port: u16, timeout: Duration) -> Result<SmtpClient> {
        let mut client =
            Self::connect_addr_timeout(SocketAddr::from(([127, 0, 0, 1], port)), timeout)?;
        client.set_timeout(REPLY_TIMEOUT)?;
        Ok(client)
    }

    /// Connects to `addr` and reads the greeting, whatever its code.
    pub fn connect_addr(addr: SocketAddr) -> Result<SmtpClient> {
        Self::connect_addr_timeout(addr, REPLY_TIMEOUT)
    }

    fn connect_addr_timeout(addr: SocketAddr, timeout: Duration) -> Result<SmtpClient> {
        let stream = TcpStream::connect_timeout(&addr, timeout)
            .with_context(|| format!("connecting to {addr}"))?;
        Self::greeted(stream, timeout)
    }

    /// Connects from the loopback address `source` (any of 127.0.0.0/8 on
    /// Linux) to 127.0.0.1:`port` and reads the greeting, waiting at most
    /// `timeout` for it: a second client address for per-IP limits.
    pub fn connect_from(source: Ipv4Addr, port: u16, timeout: Duration) -> Result<SmtpClient> {
        use nix::sys::socket::{
            bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn,
        };
        let fd = socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .context("socket")?;
        bind(
            fd.as_raw_fd(),
            &SockaddrIn::from(SocketAddrV4::new(source, 0)),
        )
        .with_context(|| format!("binding to {source}"))?;
        connect(
            fd.as_raw_fd(),
            &SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)),
        )
        .with_context(|| format!("connecting from {source} to port {port}"))?;
        let mut client = Self::greeted(TcpStream::from(fd), timeout)?;
        client.set_timeout(REPLY_TIMEOUT)?;
        Ok(client)
    }

    /// Wraps a connected stream and reads the greeting.
    fn greeted(stream: TcpStream, timeout: Duration) -> Result<SmtpClient> {
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(REPLY_TIMEOUT))?;
        stream.set_nodelay(true)?;
        let writer = stream.try_clone()?;
        let mut reader = BufReader::new(stream);
        let banner = read_reply(&mut reader).context("reading the greeting")?;
        Ok(SmtpClient {
            reader,
            writer,
            banner,
        })
    }

    /// Connects and fails unless the greeting is a 220.
    pub fn connect_ok(port: u16) -> Result<SmtpClient> {
        let client = Self::connect(port)?;
        if client.banner.code != 220 {
            bail!("expected a 220 greeting, got: {}", client.banner);
        }
        Ok(client)
    }

    /// Changes how long a reply may take.
    pub fn set_timeout(&mut self, timeout: Duration) -> Result<()> {
        self.writer.set_read_timeout(Some(timeout))?;
        Ok(())
    }

    /// Sends raw bytes in one write, adding nothing.
    pub fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.writer.write_all(bytes).context("sending")?;
        self.writer.flush()?;
        Ok(())
    }

    /// Reads the next reply.
    pub fn read_reply(&mut self) -> Result<Reply> {
        read_reply(&mut self.reader)
    }

    /// Sends one command line (CRLF added) and reads its reply.
    pub fn command(&mut self, line: &str) -> Result<Reply> {
        self.send(format!("{line}\r\n").as_bytes())?;
        self.read_reply()
            .with_context(|| format!("reading the reply to {line:?}"))
    }

    /// EHLO, failing unless it gets a 250.
    pub fn ehlo(&mut self, name: &str) -> Result<Reply> {
        let reply = self.command(&format!("EHLO {name}"))?;
        reply.expect_code(250)?;
        Ok(reply)
    }

    /// `MAIL FROM:` with `arg` (path and parameters, `<a@b.test> SIZE=10`),
    /// failing unless it gets `250 2.1.0`.
    pub fn mail_ok(&mut self, arg: &str) -> Result<()> {
        self.command(&format!("MAIL FROM:{arg}"))?
            .expect(250, "2.1.0")?;
        Ok(())
    }

    /// `RCPT TO:` with `arg` (path and parameters), failing unless it gets
    /// `250 2.1.5`.
    pub fn rcpt_ok(&mut self, arg: &str) -> Result<()> {
        self.command(&format!("RCPT TO:{arg}"))?
            .expect(250, "2.1.5")?;
        Ok(())
    }

    /// DATA, then the dot-stuffed message; returns the final reply. Fails
    /// when DATA does not get 354.
    pub fn data(&mut self, message: &[u8]) -> Result<Reply> {
        self.command("DATA")?.expect_code(354)?;
        self.send(&dot_stuff(message))?;
        self.read_reply()
            .context("reading the reply to the end of data")
    }

    /// One whole transaction: MAIL, each RCPT (each must get 250), DATA and
    /// the message. Returns the final reply (250 with the queue ID, or the
    /// refusal).
    pub fn send_mail(&mut self, from: &str, rcpts: &[&str], message: &[u8]) -> Result<Reply> {
        self.command(&format!("MAIL FROM:<{from}>"))?
            .expect_code(250)?;
        for rcpt in rcpts {
            self.command(&format!("RCPT TO:<{rcpt}>"))?
                .expect_code(250)?;
        }
        self.data(message)
    }

    /// Like [`send_mail`](Self::send_mail) but fails unless the message is
    /// queued; returns its queue ID.
    pub fn send_mail_ok(&mut self, from: &str, rcpts: &[&str], message: &[u8]) -> Result<String> {
        let reply = self.send_mail(from, rcpts, message)?;
        reply.expect(250, "2.0.0")?;
        reply
            .queue_id()
            .with_context(|| format!("no queue ID in: {reply}"))
    }

    /// QUIT and close, ignoring errors (the server may be gone already).
    pub fn quit(mut self) {
        let _ = self.command("QUIT");
    }

    /// Reads whatever the server still sends (a TLS alert, say) and waits
    /// up to `timeout` for it to close the connection; true when it did.
    pub fn ends_within(&mut self, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || self.writer.set_read_timeout(Some(left)).is_err() {
                return false;
            }
            match self.reader.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) => return !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            }
        }
    }

    /// Waits up to `timeout` for the server to close the connection; true
    /// when it did (EOF or reset), false when it is still open or sent more.
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        if !self.reader.buffer().is_empty() {
            return false;
        }
        if self.writer.set_read_timeout(Some(timeout)).is_err() {
            return true;
        }
        let mut byte = [0u8; 1];
        match self.reader.get_mut().read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        }
    }
}

/// Reads one (possibly multi-line) reply.
fn read_reply(reader: &mut impl BufRead) -> Result<Reply> {
    let mut code = None;
    let mut lines = Vec::new();
    loop {
        let mut raw = Vec::new();
        let n = reader
            .read_until(b'\n', &mut raw)
            .context("reading a reply")?;
        if n == 0 {
            if lines.is_empty() {
                bail!("connection closed by the server (no reply)");
            }
            bail!("connection closed in the middle of a reply: {lines:?}");
        }
        let line = String::from_utf8_lossy(&raw);
        let line = line.trim_end_matches(['\r', '\n']);
        if line.len() < 3 || !line.as_bytes()[..3].iter().all(u8::is_ascii_digit) {
            bail!("malformed reply line {line:?}");
        }
        let this_code: u16 = line[..3].parse()?;
        if *code.get_or_insert(this_code) != this_code {
            bail!("reply code changed within a reply: {line:?} after {lines:?}");
        }
        let sep = line.as_bytes().get(3).copied();
        lines.push(line.get(4..).unwrap_or("").to_string());
        match sep {
            None | Some(b' ') => break,
            Some(b'-') => continue,
            Some(_) => bail!("malformed reply line {line:?}"),
        }
    }
    Ok(Reply {
        code: code.unwrap_or(0),
        lines,
    })
}

/// A client that never reads: connects to `port` with a 4 KiB receive
/// window, reads the greeting, then pipelines EHLO, MAIL and the same RCPT
/// until the gateway stops reading (its replies fill both socket buffers
/// and it is stuck writing) or has closed the connection. Returns the
/// connection, still open, for the caller to hold while the gateway's
/// write deadline passes.
pub fn never_reading_client(port: u16) -> Result<TcpStream> {
    use nix::sys::socket::{
        connect, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn,
    };
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    setsockopt(&fd, sockopt::RcvBuf, &4096)?;
    connect(
        fd.as_raw_fd(),
        &SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)),
    )?;
    let mut s = TcpStream::from(fd);
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut banner = [0u8; 256];
    let n = s.read(&mut banner)?;
    if !banner[..n].starts_with(b"220 ") {
        bail!("greeting: {:?}", String::from_utf8_lossy(&banner[..n]));
    }
    s.write_all(b"EHLO client.test\r\nMAIL FROM:<alice@sender.test>\r\n")?;
    // Our write stops when it blocks, or when the gateway, past its own
    // deadline, has closed the connection.
    s.set_write_timeout(Some(Duration::from_millis(500)))?;
    let chunk = b"RCPT TO:<bob@example.com>\r\n".repeat(4_000);
    let mut sent = 0usize;
    loop {
        match s.write(&chunk) {
            Ok(n) => sent += n,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock
                        | ErrorKind::TimedOut
                        | ErrorKind::ConnectionReset
                        | ErrorKind::BrokenPipe
                ) =>
            {
                break
            }
            Err(e) => return Err(e).context("sending recipients"),
        }
        if sent >= 256 << 20 {
            bail!("256 MiB of commands sent and still read");
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_multi_line_replies() {
        let mut input: &[u8] = b"250-mw.test\r\n250-PIPELINING\r\n250 DSN\r\n";
        let reply = read_reply(&mut input).unwrap();
        assert_eq!(reply.code, 250);
        assert_eq!(reply.lines, ["mw.test", "PIPELINING", "DSN"]);
        assert_eq!(reply.to_string(), "250-mw.test | 250-PIPELINING | 250 DSN");
    }

    #[test]
    fn finds_enhanced_codes_and_queue_ids() {
        let reply = Reply {
            code: 250,
            lines: vec!["2.0.0 Ok: queued as 0123456789ABCDEF".into()],
        };
        assert_eq!(reply.enhanced(), Some("2.0.0"));
        assert_eq!(reply.queue_id().as_deref(), Some("0123456789ABCDEF"));
        assert!(is_queue_id("0123456789ABCDEF"));
        assert!(!is_queue_id("0123456789abcdef"));
        assert_eq!(enhanced_code_of("mw.test ESMTP"), None);
        assert_eq!(enhanced_code_of("3.0.0 x"), None);
    }

    #[test]
    fn dot_stuffs_without_touching_line_endings() {
        assert_eq!(dot_stuff(b".a\r\nb\n..c\r\n"), b"..a\r\nb\n...c\r\n.\r\n");
        assert_eq!(dot_stuff(b"x"), b"x\r\n.\r\n");
    }
}
