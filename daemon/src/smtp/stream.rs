//! The client connection of an inbound session: plain TCP or TLS after
//! STARTTLS, read through a buffer with bounded line reads, written through
//! an output buffer that is flushed only when the client waits for us (so
//! pipelined commands get their replies in one write). Every write has a
//! deadline ([`WriteLimit`]): a client that sends commands but never reads
//! the replies cannot hold its session for ever (walkAH 1).

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::events::{SessionTimedOut, TimeoutPhase};
use mailward_metrics::Stats;

/// The session's connection: plain, or TLS after STARTTLS.
pub type Stream = crate::maybe_tls::MaybeTls<tokio_rustls::server::TlsStream<TcpStream>>;

/// How a bounded line read ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A whole line, terminator included, is in the buffer.
    Complete,
    /// The line was longer than allowed; it was read and thrown away.
    /// `crlf` says whether it ended in CRLF (not a bare LF): after such a
    /// line, "." CRLF still ends DATA.
    TooLong { crlf: bool },
    /// The line is longer than allowed and [`Bound::Cut`] was asked: the
    /// buffer holds its next `max` octets, and the line goes on.
    Part,
    /// The client closed the connection.
    Eof,
}

/// How a bounded line read treats a line longer than its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// Reads the line to its end and throws it away ([`Line::TooLong`]).
    Discard(usize),
    /// Hands the line over in parts of this many octets ([`Line::Part`]),
    /// the rest in the reads that follow.
    Cut(usize),
}

/// How long one flush of the queued replies may take: `timeouts.command`,
/// or `timeouts.stress_command` when the gateway is under stress as the
/// flush starts (Postfix's smtpd_timeout bounds every write the same way).
#[derive(Clone)]
pub struct WriteLimit {
    /// The client, for the log line when the deadline passes.
    pub client: IpAddr,
    /// Where a passed deadline is counted (phase `write` of
    /// `mailward_session_timeouts_total`).
    pub stats: Arc<Stats>,
    pub normal: Duration,
    pub stressed: Duration,
    /// Whether the gateway is under stress.
    pub stress: tokio::sync::watch::Receiver<bool>,
}

impl WriteLimit {
    /// The deadline for a write starting now, and whether it is the
    /// stress one.
    fn now(&self) -> (Duration, bool) {
        if *self.stress.borrow() && self.stressed < self.normal {
            (self.stressed, true)
        } else {
            (self.normal, false)
        }
    }
}

pub struct Conn {
    reader: BufReader<Stream>,
    out: Vec<u8>,
    limit: WriteLimit,
    /// A write failed or timed out: the connection is not written again
    /// (the last flush before closing would wait out the deadline twice).
    broken: bool,
    /// The session's time-out was counted already (a 421 for a command or
    /// DATA deadline): the flush of that 421 timing out is the same
    /// time-out, not a second one.
    timeout_counted: bool,
}

impl Conn {
    pub fn new(stream: Stream, limit: WriteLimit) -> Conn {
        Conn {
            reader: BufReader::with_capacity(64 * 1024, stream),
            out: Vec::with_capacity(4096),
            limit,
            broken: false,
            timeout_counted: false,
        }
    }

    /// Says that the session's time-out has been counted: a write that
    /// then times out (the 421 not read) is not counted again.
    pub fn timeout_counted(&mut self) {
        self.timeout_counted = true;
    }

    /// Reads one line ending in LF into `line` (cleared first), keeping at
    /// most `max` octets; a longer line is consumed and reported, or
    /// handed over in parts of `max` octets ([`Bound`]), so that a client
    /// can never make us hold more than `max` for one line.
    pub async fn read_line(&mut self, line: &mut Vec<u8>, bound: Bound) -> io::Result<Line> {
        line.clear();
        let (max, cut) = match bound {
            Bound::Discard(max) => (max, false),
            Bound::Cut(max) => (max, true),
        };
        let mut too_long = false;
        // The octet before the one being looked at, across buffer refills,
        // to tell CRLF from a bare LF at the end of an over-long line.
        let mut before = 0u8;
        loop {
            let buf = self.reader.fill_buf().await?;
            if buf.is_empty() {
                return Ok(Line::Eof);
            }
            let (take, done) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (buf.len(), false),
            };
            if cut && line.len() + take > max {
                let room = max - line.len();
                line.extend_from_slice(&buf[..room]);
                self.reader.consume(room);
                return Ok(Line::Part);
            }
            let crlf = done
                && if take >= 2 {
                    buf[take - 2] == b'\r'
                } else {
                    before == b'\r'
                };
            if take >= 1 {
                before = buf[take - 1];
            }
            if !too_long {
                if line.len() + take <= max {
                    line.extend_from_slice(&buf[..take]);
                } else {
                    too_long = true;
                    line.clear();
                }
            }
            self.reader.consume(take);
            if done {
                return Ok(if too_long {
                    Line::TooLong { crlf }
                } else {
                    Line::Complete
                });
            }
        }
    }

    /// True when a whole command line the client sent is waiting to be
    /// read (pipelining). Part of a line does not count: its end may be
    /// long in coming, and the client may be waiting for our replies
    /// first (walkY 4: `NOOP` CRLF `NOO` held the 250 back, and a `BDAT`
    /// with its chunk got its 500 only with the 421 at the timeout).
    pub fn has_buffered_command(&self) -> bool {
        self.reader.buffer().contains(&b'\n')
    }

    /// True when the client sent anything we have read but not yet
    /// consumed: after DATA, that is input it sent without waiting for
    /// the 354 (RFC 2920 3.1 makes DATA the last command of a group).
    pub fn has_buffered_input(&self) -> bool {
        !self.reader.buffer().is_empty()
    }

    /// Queues a reply line (CRLF added).
    pub fn reply(&mut self, text: &str) {
        self.out.extend_from_slice(text.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    /// Writes out the queued replies within the write deadline. A client
    /// that does not read them (its window stays shut) is given up when
    /// the deadline passes: logged and counted as a timeout in phase
    /// `write`, and the error ends the session. After a failed write every
    /// flush fails at once.
    pub async fn flush(&mut self) -> io::Result<()> {
        if self.broken {
            self.out.clear();
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "an earlier write failed",
            ));
        }
        if self.out.is_empty() {
            return Ok(());
        }
        let (limit, stress) = self.limit.now();
        let stream = self.reader.get_mut();
        let out = &self.out;
        let written = tokio::time::timeout(limit, async {
            stream.write_all(out).await?;
            stream.flush().await
        })
        .await;
        self.out.clear();
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                self.broken = true;
                Err(e)
            }
            Err(_) => {
                self.broken = true;
                if !self.timeout_counted {
                    self.timeout_counted = true;
                    SessionTimedOut {
                        client: self.limit.client,
                        phase: TimeoutPhase::Write,
                        stress,
                        transaction: None,
                    }
                    .emit(&self.limit.stats);
                }
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client did not read our replies in time",
                ))
            }
        }
    }

    /// Flushes unless more pipelined commands are already waiting (RFC 2920:
    /// the replies to a group of commands may go out together; before we
    /// would wait for the socket, they go out, section 3.2).
    pub async fn flush_if_idle(&mut self) -> io::Result<()> {
        if self.has_buffered_command() {
            Ok(())
        } else {
            self.flush().await
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.reader.get_ref(), Stream::Tls(_))
    }

    /// "TLSv1.3 with cipher TLS13_AES_256_GCM_SHA384" on a TLS session (for
    /// the Received header, as Postfix writes it).
    pub fn tls_summary(&self) -> Option<String> {
        let Stream::Tls(s) = self.reader.get_ref() else {
            return None;
        };
        let conn = s.get_ref().1;
        Some(format!(
            "{} with cipher {}",
            crate::maybe_tls::version_name(conn.protocol_version()),
            crate::maybe_tls::cipher_name(conn.negotiated_cipher_suite())
        ))
    }

    /// Takes the TCP stream for the TLS handshake, throwing away anything
    /// the client sent after STARTTLS before the handshake: such bytes would
    /// be plaintext injected into the protected session (CVE-2011-0411).
    /// Returns the stream and whether input was thrown away.
    pub fn into_plain(self) -> Option<(TcpStream, bool)> {
        if self.broken {
            return None;
        }
        let discarded = !self.reader.buffer().is_empty();
        match self.reader.into_inner() {
            Stream::Plain(s) => Some((s, discarded)),
            Stream::Tls(_) => None,
        }
    }

    /// The last flush, then the TLS close and FIN (both bounded by the
    /// write deadline: a client that reads nothing gets no more time).
    pub async fn shutdown(&mut self) {
        if self.flush().await.is_err() {
            return;
        }
        let (limit, _) = self.limit.now();
        let _ = tokio::time::timeout(limit, self.reader.get_mut().shutdown()).await;
    }

    /// The write deadline, for a connection that replaces this one (TLS).
    pub fn write_limit(&self) -> WriteLimit {
        self.limit.clone()
    }
}
