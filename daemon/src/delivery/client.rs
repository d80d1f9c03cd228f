//! The outbound SMTP client: one connection to one next hop (RFC 5321 with
//! the ESMTP extensions PIPELINING (RFC 2920), 8BITMIME (RFC 6152), SIZE
//! (RFC 1870), DSN (RFC 3461), ENHANCEDSTATUSCODES (RFC 2034) and SMTPUTF8
//! (RFC 6531)). It
//! connects, greets, sends transactions and reports the final reply for each
//! recipient, keeping the server's text so that DSNs can quote it. It does not
//! choose hops, retry, decide about bounces or touch the spool: that is the
//! delivery worker's job. STARTTLS (RFC 3207) follows the route's `tls`
//! mode ([`super::tls`]): under `may` a refused or failed STARTTLS goes on
//! (or starts again) in plain text, under `encrypt`/`verify` it is an error
//! that defers with 4.7.x.
//!
//! Everything read from the server is bounded: a reply line is at most
//! [`MAX_REPLY_LINE`] octets and a reply at most [`MAX_REPLY_LINES`] lines, and
//! every read and write runs under a timeout.

use super::tls::{Stream, TlsInfo};
use crate::config::{OutboundTls, TlsMode};
use crate::envelope::{Notify, QueueId, Ret};
use crate::text::{is_xtext, xtext_encode};
use std::fmt::{self, Write as _};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter, ReadHalf, WriteHalf,
};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// The longest reply line we accept, CRLF included (RFC 5321 allows 512).
pub const MAX_REPLY_LINE: usize = 4096;
/// The most lines one reply may have (an EHLO reply has about a dozen).
pub const MAX_REPLY_LINES: usize = 100;
/// The longest a reply is quoted, on one line ([`Reply::to_line`]): in a
/// recipient's last error, kept in the queue and the spool until the
/// message leaves, in DSNs and in logs. A next hop may answer with 100
/// lines of 4 KiB; what a reader needs is in the first few hundred octets.
pub const MAX_QUOTED_REPLY: usize = 1000;
/// Size of the write buffer and of the chunks the body is encoded in.
const CHUNK: usize = 64 * 1024;
/// How long QUIT may take at most, whatever the command timeout.
const QUIT_TIMEOUT: Duration = Duration::from_secs(10);

/// How the client behaves; taken from the configuration by the caller.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// The name we give in EHLO/HELO (`server.hostname`).
    pub helo_name: String,
    /// How long establishing the TCP connection may take (`timeouts.connect`).
    pub connect_timeout: Duration,
    /// How long each command reply (and the banner) may take (`timeouts.command`).
    pub command_timeout: Duration,
    /// How long each body write and the reply to the final "." may take
    /// (`timeouts.data`).
    pub data_timeout: Duration,
}

/// The ESMTP extensions the next hop advertised in its EHLO reply (all off
/// after a HELO fallback).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extensions {
    /// RFC 2920: commands may be sent in batches.
    pub pipelining: bool,
    /// RFC 6152: 8-bit bodies are accepted with BODY=8BITMIME.
    pub eight_bit_mime: bool,
    /// RFC 1870: the hop takes SIZE=; its limit in octets, 0 when it declared none.
    pub size: Option<u64>,
    /// RFC 3461: the hop takes NOTIFY, ORCPT, RET and ENVID.
    pub dsn: bool,
    /// RFC 3207: the hop offers STARTTLS (not used yet).
    pub starttls: bool,
    /// RFC 2034: the hop puts enhanced status codes in its replies.
    pub enhanced_status_codes: bool,
    /// Postfix's XFORWARD: the attribute names the hop takes (upper case);
    /// empty when it does not offer it (to us).
    pub xforward: Vec<String>,
    /// RFC 6531: the hop takes UTF-8 addresses and headers.
    pub smtputf8: bool,
}

impl Extensions {
    /// The extensions listed in an EHLO reply (every line but the first is a
    /// keyword with optional parameters).
    pub fn from_ehlo(reply: &Reply) -> Extensions {
        let mut ext = Extensions::default();
        for line in reply.text.split('\n').skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            match keyword.to_ascii_uppercase().as_str() {
                "PIPELINING" => ext.pipelining = true,
                "8BITMIME" => ext.eight_bit_mime = true,
                "SIZE" => ext.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                "DSN" => ext.dsn = true,
                "STARTTLS" => ext.starttls = true,
                "ENHANCEDSTATUSCODES" => ext.enhanced_status_codes = true,
                "SMTPUTF8" => ext.smtputf8 = true,
                "XFORWARD" => ext.xforward = words.map(|w| w.to_ascii_uppercase()).collect(),
                _ => {}
            }
        }
        ext
    }
}

/// One SMTP reply. `text` holds the text of every line (without the code and
/// the separator), joined with "\n"; [`Reply::to_line`] gives it on one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

impl Reply {
    /// 2yz: positive completion. (354 is handled by the client itself and is
    /// never a recipient's final word.)
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 4yz: try again later.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5yz: do not try again.
    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }

    /// The RFC 3463 enhanced status code the text starts with ("5.1.1"), when
    /// there is one and its class agrees with the reply code.
    pub fn enhanced(&self) -> Option<String> {
        let first = self.text.split_ascii_whitespace().next()?;
        let class = char::from_digit(u32::from(self.code / 100), 10)?;
        (is_status_code(first) && first.starts_with(class)).then(|| first.to_string())
    }

    /// The reply on one line, as DSNs and logs quote it:
    /// "550 5.1.1 User unknown". The enhanced code repeated at the start of
    /// continuation lines is dropped; control characters become spaces;
    /// past [`MAX_QUOTED_REPLY`] octets it is cut, and ends in "...".
    pub fn to_line(&self) -> String {
        let enhanced = self.enhanced();
        let mut out = self.code.to_string();
        for (i, line) in self.text.split('\n').enumerate() {
            let mut line = line.trim();
            if i > 0 {
                if let Some(rest) = enhanced.as_deref().and_then(|e| line.strip_prefix(e)) {
                    if rest.is_empty() || rest.starts_with([' ', '\t']) {
                        line = rest.trim_start();
                    }
                }
            }
            if line.is_empty() {
                continue;
            }
            out.push(' ');
            out.extend(line.chars().map(|c| if c.is_control() { ' ' } else { c }));
            if out.len() > MAX_QUOTED_REPLY {
                let keep = crate::text::cut(&out, MAX_QUOTED_REPLY - 3).len();
                out.truncate(keep);
                out.push_str("...");
                break;
            }
        }
        out
    }

    /// A reply made up here for a recipient we did not send (bad syntax).
    fn local(code: u16, text: &str) -> Reply {
        Reply {
            code,
            text: text.to_string(),
        }
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_line())
    }
}

/// True for "class.subject.detail" as RFC 3463 spells it.
pub(crate) fn is_status_code(s: &str) -> bool {
    let mut parts = s.split('.');
    let (Some(class), Some(subject), Some(detail), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let digits = |p: &str| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit());
    matches!(class, "2" | "4" | "5") && digits(subject) && digits(detail)
}

/// Errors that end a connection or a transaction as a whole. Replies that
/// concern single recipients are in [`TxOutcome`] instead.
/// The stage after the final dot: waiting for the reply to the message.
const END_OF_DATA: &str = "end of data";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: SocketAddr, source: io::Error },
    #[error("timed out at {stage}")]
    Timeout { stage: &'static str },
    #[error("connection failed at {stage}: {source}")]
    Io {
        stage: &'static str,
        source: io::Error,
    },
    #[error("unparseable reply at {stage}: {line}")]
    Protocol { stage: &'static str, line: String },
    #[error("refused at {stage}: {reply}")]
    Rejected { stage: &'static str, reply: Reply },
    #[error("the message has 8-bit content and the next hop does not offer 8BITMIME")]
    EightBitNotSupported,
    /// The message came with SMTPUTF8 and has a UTF-8 address or header
    /// field, and the hop does not offer SMTPUTF8 (Postfix's words).
    #[error("SMTPUTF8 is required, but was not offered by host {peer}")]
    SmtpUtf8NotSupported { peer: String },
    #[error("the message is larger than the next hop's limit of {limit} octets")]
    TooBig { limit: u64 },
    /// `encrypt`/`verify`: STARTTLS not offered or refused (`status`
    /// 4.7.4), or the handshake or certificate check failed (4.7.5).
    #[error("TLS is required (tls = \"{mode}\") but {why}")]
    TlsRequired {
        mode: &'static str,
        why: String,
        status: &'static str,
    },
    /// `may`: the handshake failed; the caller starts again in plain text.
    #[error("the TLS handshake failed: {0}")]
    TlsHandshake(String),
}

impl ClientError {
    /// True when trying again (here or on another hop of the same kind) will
    /// not help: the message should bounce.
    pub fn is_permanent(&self) -> bool {
        match self {
            // A 5xx greeting is that server's trouble (maintenance, a
            // block of our address), not the message's: the next address
            // is tried, and the message waits rather than bounce (Postfix:
            // smtp_skip_5xx_greeting).
            ClientError::Rejected {
                stage: "banner", ..
            } => false,
            ClientError::Rejected { reply, .. } => reply.is_permanent(),
            ClientError::EightBitNotSupported
            | ClientError::SmtpUtf8NotSupported { .. }
            | ClientError::TooBig { .. } => true,
            _ => false,
        }
    }

    /// The RFC 3463 status code to put in a DSN for this error. For
    /// `Rejected` this is only the class ("5.0.0"/"4.0.0"); the server's own
    /// enhanced code, when it gave one, is in `reply().and_then(Reply::enhanced)`.
    pub fn status(&self) -> &'static str {
        match self {
            ClientError::Connect { .. } | ClientError::Timeout { .. } => "4.4.1",
            ClientError::Io { .. } => "4.4.2",
            ClientError::Protocol { .. } => "4.5.0",
            ClientError::Rejected {
                stage: "banner", ..
            } => "4.0.0",
            ClientError::Rejected { reply, .. } if reply.is_permanent() => "5.0.0",
            ClientError::Rejected { .. } => "4.0.0",
            ClientError::EightBitNotSupported => "5.6.3",
            // RFC 6531 3.4 / RFC 3463: "non-ASCII addresses not permitted".
            ClientError::SmtpUtf8NotSupported { .. } => "5.6.7",
            ClientError::TooBig { .. } => "5.3.4",
            // RFC 3463: 4.7.4 security features not supported, 4.7.5
            // cryptographic failure.
            ClientError::TlsRequired { status, .. } => status,
            ClientError::TlsHandshake(_) => "4.7.5",
        }
    }

    /// The step at which the session failed, when it has one.
    fn stage(&self) -> Option<&'static str> {
        match self {
            ClientError::Timeout { stage }
            | ClientError::Io { stage, .. }
            | ClientError::Protocol { stage, .. }
            | ClientError::Rejected { stage, .. } => Some(stage),
            _ => None,
        }
    }

    /// True when the whole message, its final dot included, was written and
    /// no usable reply to it came (the connection closed, the wait timed out,
    /// the reply was garbled). The next hop may have taken the message (RFC
    /// 1047, RFC 5321 4.1.1.4), so sending it again now may deliver it twice:
    /// the message is deferred, never retried within the same attempt.
    pub fn after_end_of_data(&self) -> bool {
        self.stage() == Some(END_OF_DATA)
    }

    /// The server's reply, for `Rejected`.
    pub fn reply(&self) -> Option<&Reply> {
        match self {
            ClientError::Rejected { reply, .. } => Some(reply),
            _ => None,
        }
    }
}

/// One message to send on an open connection.
#[derive(Debug, Clone)]
pub struct Transaction<'a> {
    /// The reverse path without brackets; "" for the null sender.
    pub mail_from: &'a str,
    /// The body holds octets above 127.
    pub eight_bit: bool,
    /// The message came with SMTPUTF8: passed on to a hop that offers it;
    /// a hop that does not gets the message only when its addresses (with
    /// their domains as A-labels) and its header are ASCII.
    pub smtputf8: bool,
    /// The message size in octets (for SIZE=).
    pub size: u64,
    /// RFC 3461 RET, passed on when the hop offers DSN.
    pub ret: Option<Ret>,
    /// RFC 3461 ENVID, decoded; xtext-encoded here when passed on.
    pub envid: Option<&'a str>,
    pub rcpts: Vec<TxRcpt<'a>>,
    /// The message with CRLF line ends, not dot-stuffed (this client stuffs
    /// it and turns bare CR or LF into CRLF).
    pub body: &'a [u8],
    /// Who the message came from, told to a hop that offers XFORWARD.
    pub origin: Option<Origin<'a>>,
}

/// The client a message came from, as XFORWARD tells the next hop: an MTA
/// offers XFORWARD only to clients it lets use it (Postfix:
/// `smtpd_authorized_xforward_hosts`), so that offer is the hop's consent,
/// and its logs then name the original client instead of us (Postfix's
/// FILTER_README asks a content filter to do so).
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub addr: std::net::IpAddr,
    /// Its HELO name ("" when unknown).
    pub helo: &'a str,
    /// Our queue ID (XFORWARD IDENT: the ID on the up-stream hop).
    pub ident: &'a str,
}

/// One recipient of a [`Transaction`].
#[derive(Debug, Clone)]
pub struct TxRcpt<'a> {
    /// The forward path without brackets.
    pub address: &'a str,
    /// RFC 3461 NOTIFY, passed on when the hop offers DSN.
    pub notify: Option<Notify>,
    /// RFC 3461 ORCPT ("rfc822;user@example.com"), passed on when the hop
    /// offers DSN: kept as it is when it is valid xtext, encoded otherwise.
    pub orcpt: Option<&'a str>,
}

/// What became of each recipient of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxOutcome {
    /// One per [`TxRcpt`], same order: the reply to the end of data for
    /// accepted recipients, the reply to RCPT (or to MAIL, or to DATA) for the
    /// others. A recipient whose address could not be sent at all (control
    /// characters, angle brackets) gets a 501 made up here.
    pub rcpts: Vec<Reply>,
}

/// An open SMTP connection to one next hop, greeted and ready for MAIL.
#[derive(Debug)]
pub struct SmtpClient {
    /// Replies come in through here, read line by line with a cap.
    reader: BufReader<ReadHalf<Stream>>,
    /// Commands and the body go out through here, flushed once per batch.
    writer: BufWriter<WriteHalf<Stream>>,
    /// What STARTTLS negotiated; None in plain text.
    tls: Option<TlsInfo>,
    /// `may`: TLS was tried and failed, and this connection is plain text.
    tls_fell_back: bool,
    /// "mx.example.com[127.0.0.1]:2526", for logs and Remote-MTA.
    peer: String,
    /// What the hop offered in its EHLO reply.
    extensions: Extensions,
    /// The timeouts.
    settings: ClientSettings,
    /// The server closed (421) or a read or write failed mid-way: the stream
    /// is in an unknown state and must not carry another command.
    broken: bool,
}

impl SmtpClient {
    /// Connects to `addr` (within `connect_timeout`), reads the 220 banner,
    /// says EHLO (HELO when EHLO is refused with 5yz) and, as `tls` says,
    /// STARTTLS and EHLO again. `peer_name` is the host name the address
    /// was found for ("" if none). Under `may`, a failed handshake leaves
    /// the connection in an unknown state: it is closed and a new one is
    /// made without STARTTLS ([`SmtpClient::tls_fell_back`]). `queue_id`
    /// is the message the connection is made for: the lines logged here
    /// name it, as every other delivery line does, so that `grep QUEUE_ID`
    /// shows why that message went in clear text.
    pub async fn connect(
        addr: SocketAddr,
        peer_name: &str,
        settings: &ClientSettings,
        tls: &OutboundTls,
        queue_id: &QueueId,
    ) -> Result<SmtpClient, ClientError> {
        match Self::open(addr, peer_name, settings, tls, true).await {
            Err(ClientError::TlsHandshake(why)) if tls.mode == TlsMode::May => {
                tracing::info!(target: "delivery", queue_id = %queue_id, relay = %peer_label(peer_name, addr), error = %why,
                    "STARTTLS failed; delivering in plain text (tls = \"may\").");
                let mut client = Self::open(addr, peer_name, settings, tls, false).await?;
                client.tls_fell_back = true;
                Ok(client)
            }
            // RFC 3207: a refused STARTTLS under "may" goes on in clear on
            // the same connection; said here so that the message's lines
            // show why it went in clear.
            Ok(client) if client.tls_fell_back => {
                tracing::info!(target: "delivery", queue_id = %queue_id, relay = %client.peer,
                    "STARTTLS refused by the next hop; delivering in plain text (tls = \"may\").");
                Ok(client)
            }
            other => other,
        }
    }

    async fn open(
        addr: SocketAddr,
        peer_name: &str,
        settings: &ClientSettings,
        tls: &OutboundTls,
        try_tls: bool,
    ) -> Result<SmtpClient, ClientError> {
        let stream = match timeout(settings.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(source)) => return Err(ClientError::Connect { addr, source }),
            Err(_) => return Err(ClientError::Timeout { stage: "connect" }),
        };
        // Commands are flushed in whole batches; Nagle would only delay them.
        let _ = stream.set_nodelay(true);
        let (read, write) = tokio::io::split(Stream::Plain(stream));
        let mut client = SmtpClient {
            reader: BufReader::with_capacity(8 * 1024, read),
            writer: BufWriter::with_capacity(CHUNK, write),
            tls: None,
            tls_fell_back: false,
            peer: peer_label(peer_name, addr),
            extensions: Extensions::default(),
            settings: settings.clone(),
            broken: false,
        };
        let command_timeout = settings.command_timeout;

        let banner = client.read("banner", command_timeout).await?;
        if !banner.is_positive() {
            client.quit().await;
            return Err(ClientError::Rejected {
                stage: "banner",
                reply: banner,
            });
        }

        let ehlo = match client.greet().await {
            Ok(ehlo) => ehlo,
            Err(e) => {
                client.quit().await;
                return Err(e);
            }
        };
        let required = tls.mode >= TlsMode::Encrypt;
        if tls.mode == TlsMode::None || !try_tls {
            return Ok(client);
        }
        if !ehlo || !client.extensions.starttls {
            if required {
                client.quit().await;
                return Err(ClientError::TlsRequired {
                    mode: tls.mode.as_str(),
                    why: "the next hop does not offer STARTTLS".into(),
                    status: "4.7.4",
                });
            }
            return Ok(client);
        }
        client.command(b"STARTTLS\r\n", "starttls").await?;
        let reply = client.read("starttls", command_timeout).await?;
        if reply.code != 220 {
            if required {
                client.quit().await;
                return Err(ClientError::TlsRequired {
                    mode: tls.mode.as_str(),
                    why: format!("the next hop refused STARTTLS: {}", reply.to_line()),
                    status: "4.7.4",
                });
            }
            // RFC 3207: the session goes on in plain text.
            client.tls_fell_back = true;
            return Ok(client);
        }
        client.start_tls(addr, peer_name, tls).await
    }

    /// EHLO, or HELO when EHLO is refused for good; true after EHLO.
    async fn greet(&mut self) -> Result<bool, ClientError> {
        let command_timeout = self.settings.command_timeout;
        let helo_name = clean_helo(&self.settings.helo_name);
        self.command(format!("EHLO {helo_name}\r\n").as_bytes(), "ehlo")
            .await?;
        let ehlo = self.read("ehlo", command_timeout).await?;
        if ehlo.is_positive() {
            self.extensions = Extensions::from_ehlo(&ehlo);
            return Ok(true);
        }
        if !ehlo.is_permanent() {
            return Err(ClientError::Rejected {
                stage: "ehlo",
                reply: ehlo,
            });
        }
        self.command(format!("HELO {helo_name}\r\n").as_bytes(), "helo")
            .await?;
        let helo = self.read("helo", command_timeout).await?;
        if helo.is_positive() {
            self.extensions = Extensions::default();
            return Ok(false);
        }
        Err(ClientError::Rejected {
            stage: "helo",
            reply: helo,
        })
    }

    /// The handshake after "220 Ready to start TLS", then EHLO again (RFC
    /// 3207 4.2: everything learnt before is forgotten).
    async fn start_tls(
        self,
        addr: SocketAddr,
        peer_name: &str,
        tls: &OutboundTls,
    ) -> Result<SmtpClient, ClientError> {
        let failed = |why: String| {
            if tls.mode == TlsMode::May {
                ClientError::TlsHandshake(why)
            } else {
                ClientError::TlsRequired {
                    mode: tls.mode.as_str(),
                    why: format!("the handshake failed: {why}"),
                    status: "4.7.5",
                }
            }
        };
        // Bytes that came with the 220 were sent before the handshake: a
        // man in the middle's injection (CVE-2011-0411's kind) is refused.
        if !self.reader.buffer().is_empty() {
            return Err(failed(
                "the next hop sent data after its 220 to STARTTLS".into(),
            ));
        }
        let SmtpClient {
            reader,
            writer,
            peer,
            settings,
            ..
        } = self;
        let stream = reader.into_inner().unsplit(writer.into_inner());
        let Stream::Plain(tcp) = stream else {
            return Err(failed("STARTTLS on a connection already encrypted".into()));
        };
        let config = super::tls::client_config(tls).map_err(|e| failed(e.to_string()))?;
        let name = super::tls::server_name(tls, peer_name, addr.ip())
            .map_err(|e| failed(e.to_string()))?;
        let connector = tokio_rustls::TlsConnector::from(config);
        let handshake = timeout(settings.command_timeout, connector.connect(name, tcp)).await;
        let tls_stream = match handshake {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(failed(e.to_string())),
            Err(_) => return Err(failed("timed out".into())),
        };
        let info = TlsInfo::of(tls_stream.get_ref().1, tls.mode == TlsMode::Verify);
        let (read, write) = tokio::io::split(Stream::Tls(Box::new(tls_stream)));
        let mut client = SmtpClient {
            reader: BufReader::with_capacity(8 * 1024, read),
            writer: BufWriter::with_capacity(CHUNK, write),
            tls: Some(info),
            tls_fell_back: false,
            peer,
            extensions: Extensions::default(),
            settings,
            broken: false,
        };
        if !client.greet().await? {
            client.quit().await;
            return Err(ClientError::Protocol {
                stage: "ehlo",
                line: "EHLO refused after STARTTLS".into(),
            });
        }
        Ok(client)
    }

    /// What STARTTLS negotiated; None in plain text.
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    /// `may`: TLS was tried on this hop and failed or was refused, so this
    /// connection is plain text.
    pub fn tls_fell_back(&self) -> bool {
        self.tls_fell_back
    }

    /// What the hop offered in its EHLO reply.
    pub fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    /// The peer as "mx.example.com[127.0.0.1]:2526" (for logs and Remote-MTA).
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Sends one message. `Ok` means the transaction ran: each recipient's
    /// fate is in the outcome. `Err` means nothing is known to have been
    /// delivered (or, for the permanent errors, that it never can be here).
    /// After `Ok`, call [`SmtpClient::reset`] before the next transaction.
    pub async fn send(&mut self, tx: &Transaction<'_>) -> Result<TxOutcome, ClientError> {
        if self.broken {
            return Err(not_usable("mail"));
        }
        // A hop without SMTPUTF8: when only some recipients need it (a
        // UTF-8 local part) and sender and header are ASCII, the others
        // go without it and only those fail 5.6.7; one UTF-8 recipient
        // failed every recipient of the hop before (walkAR F3).
        let mut utf8_only = vec![false; tx.rcpts.len()];
        if tx.smtputf8 && !self.extensions.smtputf8 && needs_smtputf8(tx) {
            for (i, r) in tx.rcpts.iter().enumerate() {
                utf8_only[i] = !wire_address(r.address, false).is_ascii();
            }
            if !utf8_only.contains(&false) || !sender_and_header_ascii(tx) {
                return Err(ClientError::SmtpUtf8NotSupported {
                    peer: self.peer.clone(),
                });
            }
        }
        if tx.eight_bit && !self.extensions.eight_bit_mime {
            return Err(ClientError::EightBitNotSupported);
        }
        if let Some(limit) = self.extensions.size {
            if limit != 0 && limit < tx.size {
                return Err(ClientError::TooBig { limit });
            }
        }
        let mut finals: Vec<Option<Reply>> = vec![None; tx.rcpts.len()];
        if tx.rcpts.is_empty() {
            return Ok(TxOutcome { rcpts: Vec::new() });
        }
        if !address_is_sendable(tx.mail_from) {
            let reply = Reply::local(
                501,
                "5.1.7 Bad sender address syntax (not sent by Mailward)",
            );
            return Ok(TxOutcome {
                rcpts: vec![reply; tx.rcpts.len()],
            });
        }
        let xforward = self.xforward_command(tx);
        let mail = self.mail_command(tx);
        let mut rcpts = Vec::with_capacity(tx.rcpts.len());
        for (i, rcpt) in tx.rcpts.iter().enumerate() {
            if utf8_only[i] {
                let why = ClientError::SmtpUtf8NotSupported {
                    peer: self.peer.clone(),
                };
                finals[i] = Some(Reply::local(553, &format!("5.6.7 {why}")));
            } else if rcpt.address.is_empty() || !address_is_sendable(rcpt.address) {
                finals[i] = Some(Reply::local(
                    501,
                    "5.1.3 Bad recipient address syntax (not sent by Mailward)",
                ));
            } else {
                rcpts.push((i, self.rcpt_command(rcpt, self.utf8(tx))));
            }
        }
        if !rcpts.is_empty() {
            if self.extensions.pipelining {
                self.send_pipelined(tx, xforward.as_deref(), &mail, &rcpts, &mut finals)
                    .await?;
            } else {
                self.send_stepwise(tx, xforward.as_deref(), &mail, &rcpts, &mut finals)
                    .await?;
            }
        }
        Ok(outcome(finals))
    }

    /// RSET, so that the connection can carry the next message.
    pub async fn reset(&mut self) -> Result<(), ClientError> {
        if self.broken {
            return Err(not_usable("rset"));
        }
        self.command(b"RSET\r\n", "rset").await?;
        let reply = self.read("rset", self.settings.command_timeout).await?;
        if reply.is_positive() {
            Ok(())
        } else {
            self.broken = true;
            Err(ClientError::Rejected {
                stage: "rset",
                reply,
            })
        }
    }

    /// QUIT and close; errors are ignored (the work is done by then).
    pub async fn quit(mut self) {
        if !self.broken {
            let limit = self.settings.command_timeout.min(QUIT_TIMEOUT);
            if self.write_flush(b"QUIT\r\n", "quit", limit).await.is_ok() {
                let _ = self.read("quit", limit).await;
            }
        }
        let _ = timeout(QUIT_TIMEOUT, self.writer.shutdown()).await;
    }

    /// MAIL, every RCPT and DATA in one write, then the replies in order
    /// (RFC 2920).
    async fn send_pipelined(
        &mut self,
        tx: &Transaction<'_>,
        xforward: Option<&str>,
        mail: &str,
        rcpts: &[(usize, String)],
        finals: &mut [Option<Reply>],
    ) -> Result<(), ClientError> {
        let command_timeout = self.settings.command_timeout;
        let mut batch = String::with_capacity(mail.len() + rcpts.len() * 64 + 8);
        batch.push_str(xforward.unwrap_or_default());
        batch.push_str(mail);
        for (_, rcpt) in rcpts {
            batch.push_str(rcpt);
        }
        batch.push_str("DATA\r\n");
        self.command(batch.as_bytes(), "mail").await?;
        if xforward.is_some() {
            self.xforward_reply().await?;
        }

        let reply = self.read("mail", command_timeout).await?;
        if !reply.is_positive() {
            expect_final(&reply, "mail")?;
            self.closing(&reply);
            fill(finals, &reply);
            if !self.broken {
                self.drain_refused(rcpts.len()).await;
            }
            return Ok(());
        }

        let mut accepted = Vec::with_capacity(rcpts.len());
        for (i, _) in rcpts {
            let reply = self.read("rcpt", command_timeout).await?;
            if reply.is_positive() {
                accepted.push(*i);
                continue;
            }
            expect_final(&reply, "rcpt")?;
            finals[*i] = Some(reply.clone());
            if self.closing(&reply) {
                fill(finals, &reply);
                return Ok(());
            }
        }

        let data = self.read("data", command_timeout).await?;
        if accepted.is_empty() {
            // RFC 2920: with no recipient the server must refuse DATA. A
            // broken one that says 354 gets an empty message, whose reply we
            // ignore; the recipients keep their RCPT replies.
            if data.code == 354 {
                self.end_empty_data().await;
            } else {
                self.closing(&data);
            }
            return Ok(());
        }
        self.finish_data(tx, data, &accepted, finals).await
    }

    /// One command at a time, each reply awaited (no PIPELINING).
    async fn send_stepwise(
        &mut self,
        tx: &Transaction<'_>,
        xforward: Option<&str>,
        mail: &str,
        rcpts: &[(usize, String)],
        finals: &mut [Option<Reply>],
    ) -> Result<(), ClientError> {
        let command_timeout = self.settings.command_timeout;
        if let Some(line) = xforward {
            self.command(line.as_bytes(), "xforward").await?;
            self.xforward_reply().await?;
        }
        self.command(mail.as_bytes(), "mail").await?;
        let reply = self.read("mail", command_timeout).await?;
        if !reply.is_positive() {
            expect_final(&reply, "mail")?;
            self.closing(&reply);
            fill(finals, &reply);
            return Ok(());
        }

        let mut accepted = Vec::with_capacity(rcpts.len());
        for (i, rcpt) in rcpts {
            self.command(rcpt.as_bytes(), "rcpt").await?;
            let reply = self.read("rcpt", command_timeout).await?;
            if reply.is_positive() {
                accepted.push(*i);
                continue;
            }
            expect_final(&reply, "rcpt")?;
            finals[*i] = Some(reply.clone());
            if self.closing(&reply) {
                fill(finals, &reply);
                return Ok(());
            }
        }
        if accepted.is_empty() {
            return Ok(());
        }

        self.command(b"DATA\r\n", "data").await?;
        let data = self.read("data", command_timeout).await?;
        self.finish_data(tx, data, &accepted, finals).await
    }

    /// Given the reply to DATA with at least one recipient accepted: sends
    /// the body on 354 and gives the accepted recipients the final reply, or
    /// gives them the refusal of DATA.
    async fn finish_data(
        &mut self,
        tx: &Transaction<'_>,
        data: Reply,
        accepted: &[usize],
        finals: &mut [Option<Reply>],
    ) -> Result<(), ClientError> {
        let reply = if data.code == 354 {
            let reply = self.send_body(tx.body).await?;
            expect_final(&reply, END_OF_DATA)?;
            reply
        } else if data.is_positive() {
            return Err(ClientError::Protocol {
                stage: "data",
                line: data.to_line(),
            });
        } else {
            expect_final(&data, "data")?;
            data
        };
        self.closing(&reply);
        for &i in accepted {
            finals[i] = Some(reply.clone());
        }
        fill(finals, &reply);
        Ok(())
    }

    /// Writes the body, dot-stuffed and with CRLF line ends, then ".", and
    /// reads the final reply (each write and the reply within `data_timeout`).
    async fn send_body(&mut self, body: &[u8]) -> Result<Reply, ClientError> {
        let data_timeout = self.settings.data_timeout;
        let mut encoder = DataEncoder::default();
        let mut buf = Vec::with_capacity(CHUNK + CHUNK / 8);
        for chunk in body.chunks(CHUNK) {
            buf.clear();
            encoder.encode(chunk, &mut buf);
            self.write(&buf, "data", data_timeout).await?;
        }
        buf.clear();
        encoder.finish(&mut buf);
        self.write_flush(&buf, "data", data_timeout).await?;
        self.read(END_OF_DATA, data_timeout).await
    }

    /// After a 354 that should not have come: an empty message, reply ignored.
    async fn end_empty_data(&mut self) {
        let data_timeout = self.settings.data_timeout;
        if self
            .write_flush(b".\r\n", "data", data_timeout)
            .await
            .is_ok()
        {
            if let Ok(reply) = self.read(END_OF_DATA, data_timeout).await {
                self.closing(&reply);
            }
        }
    }

    /// After MAIL was refused in a pipelined batch: reads the replies to the
    /// RCPTs and to DATA, so that the connection stays in step. A failure
    /// only marks the connection unusable; the outcome is already known.
    async fn drain_refused(&mut self, rcpts: usize) {
        let command_timeout = self.settings.command_timeout;
        for _ in 0..rcpts {
            match self.read("rcpt", command_timeout).await {
                Ok(reply) if !self.closing(&reply) => {}
                _ => return,
            }
        }
        match self.read("data", command_timeout).await {
            Ok(reply) if reply.code == 354 => self.end_empty_data().await,
            Ok(reply) => {
                self.closing(&reply);
            }
            Err(_) => {}
        }
    }

    /// True (and the connection marked unusable) when the reply is 421: the
    /// server is closing the channel (RFC 5321 3.8).
    fn closing(&mut self, reply: &Reply) -> bool {
        if reply.code == 421 {
            self.broken = true;
        }
        self.broken
    }

    /// The XFORWARD line for the attributes the hop takes, when it offers
    /// XFORWARD and the message has an origin.
    fn xforward_command(&self, tx: &Transaction<'_>) -> Option<String> {
        let origin = tx.origin?;
        let takes = |name: &str| self.extensions.xforward.iter().any(|n| n == name);
        let addr = match origin.addr {
            std::net::IpAddr::V6(a) => format!("IPv6:{a}"),
            a => a.to_string(),
        };
        let helo = if origin.helo.is_empty() {
            "[UNAVAILABLE]".to_string()
        } else {
            xtext_encode(origin.helo)
        };
        let mut cmd = String::from("XFORWARD");
        for (name, value) in [
            ("ADDR", addr),
            ("HELO", helo),
            ("IDENT", xtext_encode(origin.ident)),
        ] {
            if takes(name) {
                let _ = write!(cmd, " {name}={value}");
            }
        }
        (cmd.len() > "XFORWARD".len()).then(|| cmd + "\r\n")
    }

    /// The reply to XFORWARD: a refusal only costs the hop's logs the
    /// original client (the message goes on); a closing reply ends the
    /// connection like any other.
    async fn xforward_reply(&mut self) -> Result<(), ClientError> {
        let reply = self.read("xforward", self.settings.command_timeout).await?;
        if !reply.is_positive() {
            tracing::debug!(target: "delivery", relay = %self.peer(), reply = %reply.to_line(),
                "The next hop refused XFORWARD; sending without it.");
            if self.closing(&reply) {
                return Err(ClientError::Rejected {
                    stage: "xforward",
                    reply,
                });
            }
        }
        Ok(())
    }

    /// Whether this transaction goes with SMTPUTF8: it came with it and
    /// the hop offers it.
    fn utf8(&self, tx: &Transaction<'_>) -> bool {
        tx.smtputf8 && self.extensions.smtputf8
    }

    fn mail_command(&self, tx: &Transaction<'_>) -> String {
        let mut cmd = format!("MAIL FROM:<{}>", wire_address(tx.mail_from, self.utf8(tx)));
        if tx.eight_bit && self.extensions.eight_bit_mime {
            cmd.push_str(" BODY=8BITMIME");
        }
        if self.utf8(tx) {
            cmd.push_str(" SMTPUTF8");
        }
        if self.extensions.size.is_some() {
            let _ = write!(cmd, " SIZE={}", tx.size);
        }
        if self.extensions.dsn {
            match tx.ret {
                Some(Ret::Full) => cmd.push_str(" RET=FULL"),
                Some(Ret::Hdrs) => cmd.push_str(" RET=HDRS"),
                None => {}
            }
            if let Some(envid) = tx.envid {
                let envid = xtext_encode(envid);
                // RFC 3461 4.4: at most 100 characters; a longer one is dropped.
                if !envid.is_empty() && envid.len() <= 100 {
                    cmd.push_str(" ENVID=");
                    cmd.push_str(&envid);
                }
            }
        }
        cmd.push_str("\r\n");
        cmd
    }

    fn rcpt_command(&self, rcpt: &TxRcpt<'_>, utf8: bool) -> String {
        let mut cmd = format!("RCPT TO:<{}>", wire_address(rcpt.address, utf8));
        if self.extensions.dsn {
            if let Some(notify) = rcpt.notify {
                let value = notify.to_param();
                if !value.is_empty() {
                    cmd.push_str(" NOTIFY=");
                    cmd.push_str(&value);
                }
            }
            if let Some(orcpt) = rcpt.orcpt.and_then(|o| orcpt_param(o, utf8)) {
                cmd.push_str(" ORCPT=");
                cmd.push_str(&orcpt);
            }
        }
        cmd.push_str("\r\n");
        cmd
    }

    /// Writes and flushes one command or batch within `command_timeout`.
    async fn command(&mut self, bytes: &[u8], stage: &'static str) -> Result<(), ClientError> {
        self.write_flush(bytes, stage, self.settings.command_timeout)
            .await
    }

    async fn write_flush(
        &mut self,
        bytes: &[u8],
        stage: &'static str,
        limit: Duration,
    ) -> Result<(), ClientError> {
        self.write(bytes, stage, limit).await?;
        let result = timeout(limit, self.writer.flush()).await;
        self.io_result(result, stage)
    }

    /// Writes into the buffer (a large write goes straight to the socket).
    async fn write(
        &mut self,
        bytes: &[u8],
        stage: &'static str,
        limit: Duration,
    ) -> Result<(), ClientError> {
        let result = timeout(limit, self.writer.write_all(bytes)).await;
        self.io_result(result, stage)
    }

    fn io_result(
        &mut self,
        result: Result<io::Result<()>, tokio::time::error::Elapsed>,
        stage: &'static str,
    ) -> Result<(), ClientError> {
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => {
                self.broken = true;
                Err(ClientError::Io { stage, source })
            }
            Err(_) => {
                self.broken = true;
                Err(ClientError::Timeout { stage })
            }
        }
    }

    /// Reads one reply within `limit`; any failure leaves the connection
    /// unusable.
    async fn read(&mut self, stage: &'static str, limit: Duration) -> Result<Reply, ClientError> {
        let result = read_reply(&mut self.reader, stage, limit).await;
        if result.is_err() {
            self.broken = true;
        }
        result
    }
}

fn not_usable(stage: &'static str) -> ClientError {
    ClientError::Io {
        stage,
        source: io::Error::new(
            io::ErrorKind::NotConnected,
            "the connection is no longer usable",
        ),
    }
}

/// Only final replies (2yz, 4yz, 5yz) may answer MAIL, RCPT and end of data.
fn expect_final(reply: &Reply, stage: &'static str) -> Result<(), ClientError> {
    if reply.is_positive() || reply.is_transient() || reply.is_permanent() {
        Ok(())
    } else {
        Err(ClientError::Protocol {
            stage,
            line: reply.to_line(),
        })
    }
}

/// Gives `reply` to every recipient that has no final word yet.
fn fill(finals: &mut [Option<Reply>], reply: &Reply) {
    for slot in finals.iter_mut().filter(|slot| slot.is_none()) {
        *slot = Some(reply.clone());
    }
}

fn outcome(finals: Vec<Option<Reply>>) -> TxOutcome {
    TxOutcome {
        rcpts: finals
            .into_iter()
            .map(|reply| {
                // Every slot is filled by then; this only guards the invariant.
                reply.unwrap_or_else(|| Reply::local(451, "4.3.0 No reply recorded"))
            })
            .collect(),
    }
}

/// "mx.example.com[127.0.0.1]:2526" (or "[127.0.0.1]:2526" without a name).
pub(crate) fn peer_label(name: &str, addr: SocketAddr) -> String {
    let name: String = name
        .chars()
        .filter(|c| !c.is_control() && !c.is_whitespace())
        .collect();
    format!("{name}[{}]:{}", addr.ip(), addr.port())
}

fn clean_helo(name: &str) -> String {
    let name: String = name
        .chars()
        .filter(|c| !c.is_control() && !c.is_whitespace())
        .collect();
    if name.is_empty() {
        "localhost".to_string()
    } else {
        name
    }
}

/// An address can go inside "<...>" only without control characters and
/// angle brackets (they would end or split the command).
fn address_is_sendable(address: &str) -> bool {
    !address
        .chars()
        .any(|c| c.is_control() || c == '<' || c == '>')
}

/// An address as this transaction sends it: as the client wrote it under
/// SMTPUTF8, else with a U-label domain as its A-label (RFC 6531 3.2: the
/// same domain; how Postfix sends it to a hop without SMTPUTF8). An ASCII
/// address is always sent as it is.
fn wire_address(address: &str, utf8: bool) -> std::borrow::Cow<'_, str> {
    if utf8 || address.is_ascii() {
        std::borrow::Cow::Borrowed(address)
    } else {
        std::borrow::Cow::Owned(crate::text::a_label_mailbox(address))
    }
}

/// Whether a message that came with SMTPUTF8 still needs it: its sender or
/// a recipient has a non-ASCII local part (a U-label domain goes as its
/// A-label), or its header block holds a non-ASCII octet. Without, it goes
/// to a hop that does not offer SMTPUTF8 as any message does (as Postfix
/// sends it).
fn sender_and_header_ascii(tx: &Transaction<'_>) -> bool {
    let header = &tx.body[..crate::text::HeaderEnd::of(tx.body).header];
    wire_address(tx.mail_from, false).is_ascii() && header.is_ascii()
}

fn needs_smtputf8(tx: &Transaction<'_>) -> bool {
    let header = &tx.body[..crate::text::HeaderEnd::of(tx.body).header];
    !wire_address(tx.mail_from, false).is_ascii()
        || tx
            .rcpts
            .iter()
            .any(|r| !wire_address(r.address, false).is_ascii())
        || !header.is_ascii()
}

/// The ORCPT parameter to send for the ORCPT we were given: "type;xtext",
/// kept when valid, its address part encoded when not; `None` when it cannot
/// be made valid (RFC 3461 4.2: at most 500 characters). A `utf-8` one with
/// UTF-8 characters (RFC 6533 utf-8-addr-unitext) is kept under SMTPUTF8
/// (`utf8`) and written with `\x{HEX}` for them (utf-8-addr-xtext)
/// otherwise.
fn orcpt_param(orcpt: &str, utf8: bool) -> Option<String> {
    let orcpt = orcpt.trim();
    let (kind, address) = match orcpt.split_once(';') {
        Some((kind, address)) => (kind.trim(), address.trim()),
        None => ("rfc822", orcpt),
    };
    let kind_ok = !kind.is_empty()
        && kind
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !kind_ok || address.is_empty() {
        return None;
    }
    let address = if is_xtext(address) {
        address.to_string()
    } else if kind.eq_ignore_ascii_case("utf-8")
        && !address.is_ascii()
        && !address.chars().any(|c| c.is_control() || c == ' ')
    {
        if utf8 {
            address.to_string()
        } else {
            let mut out = String::with_capacity(address.len() + 16);
            for c in address.chars() {
                if c.is_ascii() {
                    out.push(c);
                } else {
                    let _ = write!(out, "\\x{{{:X}}}", u32::from(c));
                }
            }
            out
        }
    } else {
        xtext_encode(address)
    };
    let param = format!("{kind};{address}");
    (param.len() <= 500).then_some(param)
}

/// Why a reply line could not be read.
enum LineError {
    Io(io::Error),
    Eof,
    TooLong,
}

/// Reads one line (up to and including LF) into `line`, refusing to hold
/// more than `max` octets.
async fn read_line_capped<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
    max: usize,
) -> Result<(), LineError> {
    loop {
        let available = reader.fill_buf().await.map_err(LineError::Io)?;
        if available.is_empty() {
            return Err(LineError::Eof);
        }
        let (take, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        if line.len() + take > max {
            return Err(LineError::TooLong);
        }
        line.extend_from_slice(&available[..take]);
        reader.consume(take);
        if done {
            return Ok(());
        }
    }
}

/// Reads one whole reply, single or multi-line, within `limit`.
async fn read_reply<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    stage: &'static str,
    limit: Duration,
) -> Result<Reply, ClientError> {
    match timeout(limit, read_reply_unbounded(reader, stage)).await {
        Ok(result) => result,
        Err(_) => Err(ClientError::Timeout { stage }),
    }
}

async fn read_reply_unbounded<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    stage: &'static str,
) -> Result<Reply, ClientError> {
    let mut parser = ReplyParser::default();
    let mut line = Vec::with_capacity(128);
    loop {
        line.clear();
        match read_line_capped(reader, &mut line, MAX_REPLY_LINE).await {
            Ok(()) => {}
            Err(LineError::Io(source)) => return Err(ClientError::Io { stage, source }),
            Err(LineError::Eof) => {
                return Err(ClientError::Io {
                    stage,
                    source: io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed by the server",
                    ),
                })
            }
            Err(LineError::TooLong) => {
                return Err(ClientError::Protocol {
                    stage,
                    line: format!(
                        "reply line longer than {MAX_REPLY_LINE} octets: {}",
                        printable(&line)
                    ),
                })
            }
        }
        match parser.feed(&line) {
            Ok(Some(reply)) => return Ok(reply),
            Ok(None) => {}
            Err(line) => return Err(ClientError::Protocol { stage, line }),
        }
    }
}

/// Assembles a reply from its lines ("250-..." continues, "250 ..." ends).
#[derive(Default)]
struct ReplyParser {
    code: Option<u16>,
    text: String,
    lines: usize,
}

impl ReplyParser {
    /// Takes one raw line (with or without CRLF). `Ok(Some)` when the reply
    /// is complete; `Err` with a printable excerpt when the line is not part
    /// of a valid reply.
    fn feed(&mut self, raw: &[u8]) -> Result<Option<Reply>, String> {
        let line = raw.strip_suffix(b"\n").unwrap_or(raw);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let bad = |why: &str| format!("{why}: {}", printable(line));
        let code = match line.get(..3) {
            Some(&[a @ b'2'..=b'5', b, c]) if b.is_ascii_digit() && c.is_ascii_digit() => {
                u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
            }
            _ => return Err(bad("not a reply")),
        };
        let last = match line.get(3) {
            None | Some(b' ') => true,
            Some(b'-') => false,
            Some(_) => return Err(bad("not a reply")),
        };
        if self.code.is_some_and(|c| c != code) {
            return Err(bad("reply code changed within a reply"));
        }
        self.lines += 1;
        if !last && self.lines >= MAX_REPLY_LINES {
            return Err(bad("reply longer than the line limit"));
        }
        if self.code.is_some() {
            self.text.push('\n');
        }
        self.code = Some(code);
        self.text
            .push_str(&String::from_utf8_lossy(line.get(4..).unwrap_or_default()));
        if last {
            Ok(Some(Reply {
                code,
                text: std::mem::take(&mut self.text),
            }))
        } else {
            Ok(None)
        }
    }
}

/// A bounded, printable excerpt of a line received, for error messages.
fn printable(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(&line[..line.len().min(200)]);
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim_end()
        .to_string()
}

/// Turns the message into the DATA stream: bare CR and bare LF become CRLF,
/// a "." at the start of a line is doubled (RFC 5321 4.5.2), the last line
/// gets its CRLF, and ".\r\n" ends it. Works chunk by chunk (a CRLF may be
/// split between two chunks). Lines are not wrapped: keeping them within 998
/// octets is up to whoever built the message.
#[derive(Debug)]
struct DataEncoder {
    /// The next octet starts a line.
    at_line_start: bool,
    /// The last octet was a CR whose LF, if any, is in the next chunk.
    pending_cr: bool,
}

impl Default for DataEncoder {
    fn default() -> Self {
        DataEncoder {
            at_line_start: true,
            pending_cr: false,
        }
    }
}

impl DataEncoder {
    fn encode(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() {
            if self.pending_cr {
                self.pending_cr = false;
                out.extend_from_slice(b"\r\n");
                self.at_line_start = true;
                if input[0] == b'\n' {
                    input = &input[1..];
                    continue;
                }
            }
            match input[0] {
                b'\r' => {
                    self.pending_cr = true;
                    input = &input[1..];
                }
                b'\n' => {
                    out.extend_from_slice(b"\r\n");
                    self.at_line_start = true;
                    input = &input[1..];
                }
                first => {
                    if self.at_line_start && first == b'.' {
                        out.push(b'.');
                    }
                    self.at_line_start = false;
                    let run = input
                        .iter()
                        .position(|&b| b == b'\r' || b == b'\n')
                        .unwrap_or(input.len());
                    out.extend_from_slice(&input[..run]);
                    input = &input[run..];
                }
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.pending_cr || !self.at_line_start {
            out.extend_from_slice(b"\r\n");
        }
        self.pending_cr = false;
        self.at_line_start = true;
        out.extend_from_slice(b".\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;
    use tokio::task::JoinHandle;

    fn reply(code: u16, text: &str) -> Reply {
        Reply {
            code,
            text: text.to_string(),
        }
    }

    async fn parse(input: &[u8]) -> Result<Reply, ClientError> {
        let mut reader = input;
        read_reply(&mut reader, "test", Duration::from_secs(5)).await
    }

    fn encode(chunks: &[&[u8]]) -> Vec<u8> {
        let mut enc = DataEncoder::default();
        let mut out = Vec::new();
        for chunk in chunks {
            enc.encode(chunk, &mut out);
        }
        enc.finish(&mut out);
        out
    }

    #[tokio::test]
    async fn parses_a_single_line_reply() {
        let r = parse(b"250 2.1.0 Ok\r\n").await.unwrap();
        assert_eq!(r, reply(250, "2.1.0 Ok"));
        assert_eq!(r.enhanced().as_deref(), Some("2.1.0"));
        assert!(r.is_positive() && !r.is_transient() && !r.is_permanent());
        // Bare LF, a bare code and a code with only a space are replies too.
        assert_eq!(parse(b"354\n").await.unwrap(), reply(354, ""));
        assert_eq!(parse(b"221 \r\n").await.unwrap().to_line(), "221");
    }

    #[tokio::test]
    async fn parses_a_multi_line_reply_and_quotes_it_on_one_line() {
        let input = b"550-5.1.1 The account\r\n550-5.1.1 does not exist.\r\n550 5.1.1 See https://x.test/\r\n250 next\r\n";
        let mut reader = &input[..];
        let r = read_reply(&mut reader, "rcpt", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(r.code, 550);
        assert_eq!(
            r.text,
            "5.1.1 The account\n5.1.1 does not exist.\n5.1.1 See https://x.test/"
        );
        assert!(r.is_permanent());
        assert_eq!(r.enhanced().as_deref(), Some("5.1.1"));
        assert_eq!(
            r.to_line(),
            "550 5.1.1 The account does not exist. See https://x.test/"
        );
        // The next reply is left in the stream.
        let next = read_reply(&mut reader, "rcpt", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(next, reply(250, "next"));
    }

    #[tokio::test]
    async fn refuses_garbage() {
        for input in [
            &b"hello\r\n"[..],
            b"25 short\r\n",
            b"250x Ok\r\n",
            b"650 out of range\r\n",
            b"250-first\r\n251 other code\r\n",
        ] {
            match parse(input).await {
                Err(ClientError::Protocol { stage: "test", .. }) => {}
                other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
            }
        }
        match parse(b"250-first\r\n").await {
            Err(ClientError::Io { source, .. }) => {
                assert_eq!(source.kind(), io::ErrorKind::UnexpectedEof)
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn refuses_overlong_lines_and_replies() {
        let mut long = b"250 ".to_vec();
        long.extend(std::iter::repeat_n(b'x', MAX_REPLY_LINE));
        long.extend_from_slice(b"\r\n");
        assert!(matches!(
            parse(&long).await,
            Err(ClientError::Protocol { .. })
        ));
        let many = "250-line\r\n".repeat(MAX_REPLY_LINES + 5) + "250 end\r\n";
        assert!(matches!(
            parse(many.as_bytes()).await,
            Err(ClientError::Protocol { .. })
        ));
        let enough = "250-line\r\n".repeat(MAX_REPLY_LINES - 1) + "250 end\r\n";
        assert_eq!(
            parse(enough.as_bytes()).await.unwrap().text.lines().count(),
            MAX_REPLY_LINES
        );
    }

    #[test]
    fn enhanced_codes_must_agree_with_the_reply_class() {
        assert_eq!(reply(550, "2.0.0 odd").enhanced(), None);
        assert_eq!(
            reply(451, "4.7.1 Try later").enhanced().as_deref(),
            Some("4.7.1")
        );
        assert_eq!(reply(550, "5.1.10 x").enhanced().as_deref(), Some("5.1.10"));
        assert_eq!(reply(550, "5.1 x").enhanced(), None);
        assert_eq!(reply(550, "User unknown").enhanced(), None);
        assert_eq!(reply(550, "").enhanced(), None);
        assert_eq!(reply(550, "bad\tbyte").to_line(), "550 bad byte");
    }

    #[test]
    fn a_long_reply_is_quoted_cut_to_a_thousand_octets() {
        // 100 lines of 4 KiB (the most a reply may be) are kept in every
        // deferred recipient's last error and quoted in DSNs: cut, on a
        // character boundary, marked.
        let line = format!("4.7.1 {}", "é".repeat(2000));
        let text = vec![line; MAX_REPLY_LINES].join("\n");
        let quoted = reply(451, &text).to_line();
        assert!(quoted.len() <= MAX_QUOTED_REPLY, "{}", quoted.len());
        assert!(quoted.starts_with("451 4.7.1 éé"));
        assert!(quoted.ends_with("é..."), "{}", &quoted[quoted.len() - 10..]);
        // Short replies are whole.
        assert_eq!(
            reply(451, "4.7.1 Try later").to_line(),
            "451 4.7.1 Try later"
        );
    }

    #[test]
    fn reads_extensions_from_ehlo() {
        let r = reply(
            250,
            "mx.test greets you\nPIPELINING\nsize 10240000\n8BITMIME\nDSN\nSTARTTLS\nENHANCEDSTATUSCODES\nAUTH PLAIN\nXFORWARD NAME addr\nsmtputf8",
        );
        let ext = Extensions::from_ehlo(&r);
        assert_eq!(
            ext,
            Extensions {
                pipelining: true,
                eight_bit_mime: true,
                size: Some(10_240_000),
                dsn: true,
                starttls: true,
                enhanced_status_codes: true,
                xforward: vec!["NAME".to_string(), "ADDR".to_string()],
                smtputf8: true,
            }
        );
        let bare = Extensions::from_ehlo(&reply(250, "mx.test\nSIZE"));
        assert_eq!(bare.size, Some(0));
        // The greeting line is not a keyword.
        assert!(!Extensions::from_ehlo(&reply(250, "PIPELINING")).pipelining);
    }

    #[test]
    fn dot_stuffs_and_normalises_line_ends() {
        assert_eq!(encode(&[b""]), b".\r\n");
        assert_eq!(encode(&[b"a\r\nb\r\n"]), b"a\r\nb\r\n.\r\n");
        assert_eq!(encode(&[b"a\r\nb"]), b"a\r\nb\r\n.\r\n");
        assert_eq!(
            encode(&[b".hidden\r\n..two\r\n.\r\nmid.dle\r\n"]),
            b"..hidden\r\n...two\r\n..\r\nmid.dle\r\n.\r\n"
        );
        assert_eq!(
            encode(&[b"bare\nlf\rcr\r\r\n.x\n"]),
            b"bare\r\nlf\r\ncr\r\n\r\n..x\r\n.\r\n"
        );
        // A CRLF or a leading dot split between chunks.
        assert_eq!(
            encode(&[b"a\r", b"\nb\r", b".c"]),
            b"a\r\nb\r\n..c\r\n.\r\n"
        );
        assert_eq!(encode(&[b"a\r\n", b".", b"b"]), b"a\r\n..b\r\n.\r\n");
        assert_eq!(encode(&[b"end\r"]), b"end\r\n.\r\n");
        // 8-bit octets pass through.
        assert_eq!(
            encode(&[b"\xc3\xa9t\xc3\xa9\r\n"]),
            b"\xc3\xa9t\xc3\xa9\r\n.\r\n"
        );
    }

    #[test]
    fn encodes_xtext_and_orcpt() {
        assert_eq!(
            orcpt_param("rfc822;user+2Bx@example.com", false).as_deref(),
            Some("rfc822;user+2Bx@example.com")
        );
        assert_eq!(
            orcpt_param("rfc822; a b@example.com", false).as_deref(),
            Some("rfc822;a+20b@example.com")
        );
        assert_eq!(
            orcpt_param("u@example.com", false).as_deref(),
            Some("rfc822;u@example.com")
        );
        assert_eq!(orcpt_param("bad type;x", false), None);
        assert_eq!(orcpt_param("rfc822;", false), None);
        assert_eq!(
            orcpt_param(&format!("rfc822;{}", "a".repeat(600)), false),
            None
        );
        // RFC 6533: a utf-8 ORCPT keeps its characters under SMTPUTF8 and
        // writes them as \x{HEX} without.
        assert_eq!(
            orcpt_param("utf-8;j\u{fc}rgen@example.com", true).as_deref(),
            Some("utf-8;j\u{fc}rgen@example.com")
        );
        assert_eq!(
            orcpt_param("utf-8;j\u{fc}rgen@example.com", false).as_deref(),
            Some("utf-8;j\\x{FC}rgen@example.com")
        );
    }

    /// A message with SMTPUTF8 from `from` to `to`, with `header`.
    fn utf8_tx<'a>(from: &'a str, to: &'a str, body: &'a [u8]) -> Transaction<'a> {
        Transaction {
            mail_from: from,
            eight_bit: !body.is_ascii(),
            smtputf8: true,
            size: body.len() as u64,
            ret: None,
            envid: None,
            origin: None,
            rcpts: vec![TxRcpt {
                address: to,
                notify: None,
                orcpt: None,
            }],
            body,
        }
    }

    #[tokio::test]
    async fn smtputf8_goes_to_a_hop_that_offers_it_with_the_addresses_as_written() {
        let (addr, server) =
            fake_server(Script::new(&["PIPELINING", "8BITMIME", "SMTPUTF8"])).await;
        let mut client = SmtpClient::connect(addr, "mx", &settings(), &no_tls(), &qid())
            .await
            .unwrap();
        assert!(client.extensions().smtputf8);
        let body = "Subject: Gr\u{fc}\u{df}e\r\n\r\nhi\r\n".as_bytes();
        let tx = utf8_tx(
            "j\u{fc}rgen@b\u{fc}cher.example",
            "\u{3b4}@\u{3c0}\u{3b1}.example",
            body,
        );
        let out = client.send(&tx).await.unwrap();
        assert!(out.rcpts.iter().all(Reply::is_positive), "{out:?}");
        client.quit().await;
        let seen = server.await.unwrap();
        assert_eq!(
            seen.commands[1..4],
            [
                "MAIL FROM:<j\u{fc}rgen@b\u{fc}cher.example> BODY=8BITMIME SMTPUTF8",
                "RCPT TO:<\u{3b4}@\u{3c0}\u{3b1}.example>",
                "DATA"
            ]
        );
    }

    #[tokio::test]
    async fn a_hop_without_smtputf8_gets_ascii_mail_without_it_and_utf8_mail_not_at_all() {
        let (addr, server) = fake_server(Script::new(&["PIPELINING", "8BITMIME"])).await;
        let mut client = SmtpClient::connect(addr, "mx", &settings(), &no_tls(), &qid())
            .await
            .unwrap();
        // ASCII after all (a U-label domain goes as its A-label): sent
        // without the parameter.
        let ascii = utf8_tx(
            "alice@sender.test",
            "bob@b\u{fc}cher.example",
            b"Subject: hi\r\n\r\nGr\xc3\xbc\xc3\x9fe\r\n",
        );
        let out = client.send(&ascii).await.unwrap();
        assert!(out.rcpts.iter().all(Reply::is_positive), "{out:?}");
        client.reset().await.unwrap();
        // A UTF-8 local part, a UTF-8 sender, a UTF-8 header: refused here,
        // for good, with Postfix's words.
        for tx in [
            utf8_tx(
                "alice@sender.test",
                "j\u{fc}rgen@example.com",
                b"Subject: hi\r\n\r\nx\r\n",
            ),
            utf8_tx(
                "j\u{fc}rgen@example.com",
                "bob@example.com",
                b"Subject: hi\r\n\r\nx\r\n",
            ),
            utf8_tx(
                "alice@sender.test",
                "bob@example.com",
                "Subject: Gr\u{fc}\u{df}e\r\n\r\nx\r\n".as_bytes(),
            ),
        ] {
            let err = client.send(&tx).await.unwrap_err();
            assert!(err.is_permanent(), "{err}");
            assert_eq!(err.status(), "5.6.7");
            assert!(
                err.to_string().starts_with(
                    "SMTPUTF8 is required, but was not offered by host mx[127.0.0.1]:"
                ),
                "{err}"
            );
        }
        client.quit().await;
        let seen = server.await.unwrap();
        assert_eq!(
            seen.commands[1..4],
            [
                "MAIL FROM:<alice@sender.test> BODY=8BITMIME",
                "RCPT TO:<bob@xn--bcher-kva.example>",
                "DATA"
            ]
        );
        assert_eq!(seen.commands[4..], ["RSET", "QUIT"]);
    }

    #[test]
    fn errors_say_whether_they_are_permanent() {
        let rejected = |stage, code| ClientError::Rejected {
            stage,
            reply: reply(code, "go away"),
        };
        assert!(rejected("mail", 554).is_permanent());
        assert_eq!(rejected("mail", 554).status(), "5.0.0");
        assert!(!rejected("mail", 421).is_permanent());
        assert_eq!(rejected("mail", 421).status(), "4.0.0");
        // A 5xx greeting waits for another try, as a 4xx one does.
        for code in [554, 421] {
            assert!(!rejected("banner", code).is_permanent(), "{code}");
            assert_eq!(rejected("banner", code).status(), "4.0.0");
        }
        assert!(ClientError::EightBitNotSupported.is_permanent());
        assert_eq!(ClientError::EightBitNotSupported.status(), "5.6.3");
        assert_eq!(ClientError::TooBig { limit: 1 }.status(), "5.3.4");
        assert!(!ClientError::Timeout { stage: "data" }.is_permanent());
        assert_eq!(ClientError::Timeout { stage: "data" }.status(), "4.4.1");
        // Only a failure after the final dot may have left the message with
        // the next hop; one while the body was still being written may not.
        assert!(ClientError::Timeout { stage: END_OF_DATA }.after_end_of_data());
        let closed = || io::Error::new(io::ErrorKind::UnexpectedEof, "closed");
        assert!(ClientError::Io {
            stage: END_OF_DATA,
            source: closed()
        }
        .after_end_of_data());
        for stage in ["mail", "rcpt", "data", "rset"] {
            assert!(
                !ClientError::Timeout { stage }.after_end_of_data(),
                "{stage}"
            );
            assert!(!ClientError::Io {
                stage,
                source: closed()
            }
            .after_end_of_data());
        }
    }

    /// What the fake server saw: each command line, and each message body
    /// as received (still dot-stuffed, without the final ".").
    #[derive(Debug, Default)]
    struct Transcript {
        commands: Vec<String>,
        bodies: Vec<Vec<u8>>,
    }

    /// How the fake server behaves.
    #[derive(Clone)]
    struct Script {
        /// The EHLO reply, lines after the greeting ("PIPELINING", ...).
        extensions: &'static [&'static str],
        /// Answer EHLO with 502 (the client must fall back to HELO).
        refuse_ehlo: bool,
        /// Answer MAIL with this reply instead of 250.
        mail_reply: Option<&'static str>,
        /// With PIPELINING, answer DATA with 354 even without recipients.
        always_354: bool,
    }

    const ALL: &[&str] = &[
        "PIPELINING",
        "8BITMIME",
        "SIZE 1000000",
        "DSN",
        "ENHANCEDSTATUSCODES",
    ];

    impl Script {
        fn new(extensions: &'static [&'static str]) -> Script {
            Script {
                extensions,
                refuse_ehlo: false,
                mail_reply: None,
                always_354: false,
            }
        }
    }

    /// A one-connection SMTP server that records what it receives. With
    /// PIPELINING it answers nothing from MAIL until DATA has arrived, so a
    /// client that waits for the MAIL reply before sending RCPT hangs (and
    /// the test times out).
    async fn fake_server(script: Script) -> (SocketAddr, JoinHandle<Transcript>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (read, mut write) = stream.into_split();
            let mut reader = BufReader::new(read);
            let mut seen = Transcript::default();
            let pipelining = script.extensions.contains(&"PIPELINING");
            write.write_all(b"220 fake.test ESMTP\r\n").await.unwrap();
            let mut pending = String::new();
            let mut accepted = 0;
            let mut mail_ok = true;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).await.unwrap() == 0 {
                    break;
                }
                let cmd = line.trim_end_matches(['\r', '\n']).to_string();
                seen.commands.push(cmd.clone());
                let verb = cmd
                    .split([' ', ':'])
                    .next()
                    .unwrap_or_default()
                    .to_ascii_uppercase();
                let answer = match verb.as_str() {
                    "EHLO" if script.refuse_ehlo => "502 5.5.2 Say HELO\r\n".to_string(),
                    "EHLO" => {
                        let mut lines: Vec<String> = vec!["fake.test".into()];
                        lines.extend(script.extensions.iter().map(|e| e.to_string()));
                        let n = lines.len();
                        lines
                            .iter()
                            .enumerate()
                            .map(|(i, l)| {
                                format!("250{}{l}\r\n", if i + 1 == n { ' ' } else { '-' })
                            })
                            .collect()
                    }
                    "HELO" => "250 fake.test\r\n".to_string(),
                    "MAIL" => {
                        accepted = 0;
                        mail_ok = script.mail_reply.is_none();
                        format!("{}\r\n", script.mail_reply.unwrap_or("250 2.1.0 Ok"))
                    }
                    "RCPT" if !mail_ok => "503 5.5.1 Need MAIL\r\n".to_string(),
                    "RCPT" if cmd.contains("<bad") => "550 5.1.1 User unknown\r\n".to_string(),
                    "RCPT" => {
                        accepted += 1;
                        "250 2.1.5 Ok\r\n".to_string()
                    }
                    "DATA" if accepted == 0 && !script.always_354 => {
                        "554 5.5.1 No valid recipients\r\n".to_string()
                    }
                    "DATA" => {
                        write
                            .write_all(format!("{pending}354 End data with .\r\n").as_bytes())
                            .await
                            .unwrap();
                        pending.clear();
                        let mut body = Vec::new();
                        loop {
                            let mut l = Vec::new();
                            reader.read_until(b'\n', &mut l).await.unwrap();
                            if l == b".\r\n" || l.is_empty() {
                                break;
                            }
                            body.extend_from_slice(&l);
                        }
                        seen.bodies.push(body);
                        "250 2.0.0 Ok: queued as ABC\r\n".to_string()
                    }
                    "RSET" | "XFORWARD" => "250 2.0.0 Ok\r\n".to_string(),
                    "QUIT" => {
                        write.write_all(b"221 2.0.0 Bye\r\n").await.unwrap();
                        break;
                    }
                    _ => "500 5.5.2 What?\r\n".to_string(),
                };
                let in_batch = pipelining && matches!(verb.as_str(), "XFORWARD" | "MAIL" | "RCPT");
                let data_refused = verb == "DATA" && answer.starts_with('5');
                pending.push_str(&answer);
                if !in_batch || data_refused || verb == "DATA" {
                    write.write_all(pending.as_bytes()).await.unwrap();
                    pending.clear();
                }
            }
            // Anything after QUIT would be a bug.
            let mut rest = Vec::new();
            let _ = reader.read_to_end(&mut rest).await;
            assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
            seen
        });
        (addr, task)
    }

    /// The queue ID the test connections are made for.
    fn qid() -> QueueId {
        QueueId("1A24AE420F0D7021".into())
    }

    fn no_tls() -> OutboundTls {
        OutboundTls {
            mode: TlsMode::None,
            ..OutboundTls::default()
        }
    }

    fn settings() -> ClientSettings {
        ClientSettings {
            helo_name: "gw.test".into(),
            connect_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(5),
            data_timeout: Duration::from_secs(5),
        }
    }

    fn two_rcpts<'a>(body: &'a [u8], eight_bit: bool) -> Transaction<'a> {
        Transaction {
            mail_from: "sender@a.test",
            eight_bit,
            smtputf8: false,
            size: body.len() as u64,
            ret: Some(Ret::Hdrs),
            envid: Some("id+1"),
            origin: None,
            rcpts: vec![
                TxRcpt {
                    address: "bad@b.test",
                    notify: Some(Notify {
                        failure: true,
                        delay: true,
                        ..Notify::default()
                    }),
                    orcpt: Some("rfc822;bad@b.test"),
                },
                TxRcpt {
                    address: "good@b.test",
                    notify: None,
                    orcpt: None,
                },
            ],
            body,
        }
    }

    #[tokio::test]
    async fn pipelined_transaction() {
        let (addr, server) = fake_server(Script::new(ALL)).await;
        let mut client = SmtpClient::connect(addr, "mx.b.test", &settings(), &no_tls(), &qid())
            .await
            .unwrap();
        assert_eq!(
            client.peer(),
            format!("mx.b.test[127.0.0.1]:{}", addr.port())
        );
        assert!(client.extensions().pipelining && client.extensions().dsn);
        let body = b"Subject: hi\r\n\r\n.leading dot\nbare lf \xc3\xa9\r\n";
        let tx = two_rcpts(body, true);
        let out = tokio::time::timeout(Duration::from_secs(10), client.send(&tx))
            .await
            .expect("the client waited for a reply inside the pipelined batch")
            .unwrap();
        assert_eq!(out.rcpts.len(), 2);
        assert_eq!(out.rcpts[0].to_line(), "550 5.1.1 User unknown");
        assert!(out.rcpts[0].is_permanent());
        assert_eq!(out.rcpts[1].to_line(), "250 2.0.0 Ok: queued as ABC");
        assert!(out.rcpts[1].is_positive());
        client.reset().await.unwrap();
        client.quit().await;

        let seen = server.await.unwrap();
        let size = body.len();
        assert_eq!(
            seen.commands,
            vec![
                "EHLO gw.test".to_string(),
                format!(
                    "MAIL FROM:<sender@a.test> BODY=8BITMIME SIZE={size} RET=HDRS ENVID=id+2B1"
                ),
                "RCPT TO:<bad@b.test> NOTIFY=FAILURE,DELAY ORCPT=rfc822;bad@b.test".into(),
                "RCPT TO:<good@b.test>".into(),
                "DATA".into(),
                "RSET".into(),
                "QUIT".into(),
            ]
        );
        assert_eq!(
            seen.bodies,
            vec![b"Subject: hi\r\n\r\n..leading dot\r\nbare lf \xc3\xa9\r\n".to_vec()]
        );
    }

    /// A hop that offers XFORWARD is told the original client before MAIL,
    /// the attributes it takes only, in the pipelined batch or on its own;
    /// one that does not offer it hears nothing of it.
    #[tokio::test]
    async fn xforward_names_the_origin_to_a_hop_that_offers_it() {
        let origin = Origin {
            addr: "2001:db8::7".parse().unwrap(),
            helo: "client example",
            ident: "1A2B",
        };
        let cases: [(&'static [&'static str], Option<&str>); 3] = [
            (
                &["PIPELINING", "XFORWARD NAME ADDR PROTO HELO IDENT SOURCE"],
                Some("XFORWARD ADDR=IPv6:2001:db8::7 HELO=client+20example IDENT=1A2B"),
            ),
            (&["XFORWARD ADDR"], Some("XFORWARD ADDR=IPv6:2001:db8::7")),
            (&["PIPELINING"], None),
        ];
        for (extensions, want) in cases {
            let (addr, server) = fake_server(Script::new(extensions)).await;
            let mut client = SmtpClient::connect(addr, "", &settings(), &no_tls(), &qid())
                .await
                .unwrap();
            let mut tx = two_rcpts(b"x", false);
            tx.origin = Some(origin);
            let out = tokio::time::timeout(Duration::from_secs(10), client.send(&tx))
                .await
                .expect("XFORWARD's reply was awaited inside the pipelined batch")
                .unwrap();
            assert_eq!(out.rcpts[1].code, 250, "{extensions:?}");
            client.quit().await;
            let seen = server.await.unwrap();
            assert_eq!(seen.commands[0], "EHLO gw.test");
            match want {
                Some(line) => {
                    assert_eq!(seen.commands[1], line);
                    assert!(seen.commands[2].starts_with("MAIL FROM:"));
                }
                None => assert!(
                    seen.commands.iter().all(|c| !c.starts_with("XFORWARD")),
                    "{:?}",
                    seen.commands
                ),
            }
        }
    }

    #[tokio::test]
    async fn stepwise_transaction_without_extensions() {
        let (addr, server) = fake_server(Script::new(&["8BITMIME"])).await;
        let mut client = SmtpClient::connect(addr, "", &settings(), &no_tls(), &qid())
            .await
            .unwrap();
        assert_eq!(client.peer(), format!("[127.0.0.1]:{}", addr.port()));
        let out = client.send(&two_rcpts(b"x", true)).await.unwrap();
        assert_eq!(out.rcpts[0].code, 550);
        assert_eq!(out.rcpts[1].code, 250);
        // No recipient accepted: no DATA, and the connection carries on.
        client.reset().await.unwrap();
        let mut tx = two_rcpts(b"y", false);
        tx.rcpts.remove(1);
        let out = client.send(&tx).await.unwrap();
        assert_eq!(out.rcpts, vec![reply(550, "5.1.1 User unknown")]);
        client.reset().await.unwrap();
        client.quit().await;
        let seen = server.await.unwrap();
        assert_eq!(
            seen.commands,
            vec![
                "EHLO gw.test",
                // No DSN or SIZE offered: no parameters for them.
                "MAIL FROM:<sender@a.test> BODY=8BITMIME",
                "RCPT TO:<bad@b.test>",
                "RCPT TO:<good@b.test>",
                "DATA",
                "RSET",
                "MAIL FROM:<sender@a.test>",
                "RCPT TO:<bad@b.test>",
                "RSET",
                "QUIT",
            ]
        );
        assert_eq!(seen.bodies, vec![b"x\r\n".to_vec()]);
    }

    #[tokio::test]
    async fn refused_mail_answers_for_every_recipient() {
        for extensions in [ALL, &["8BITMIME"][..]] {
            let mut script = Script::new(extensions);
            script.mail_reply = Some("553 5.7.1 Sender rejected");
            let (addr, server) = fake_server(script).await;
            let mut client = SmtpClient::connect(addr, "mx", &settings(), &no_tls(), &qid())
                .await
                .unwrap();
            let out = client.send(&two_rcpts(b"x", false)).await.unwrap();
            assert_eq!(out.rcpts, vec![reply(553, "5.7.1 Sender rejected"); 2]);
            client.reset().await.unwrap();
            client.quit().await;
            let seen = server.await.unwrap();
            assert!(seen.bodies.is_empty());
            let rcpts = seen
                .commands
                .iter()
                .filter(|c| c.starts_with("RCPT"))
                .count();
            assert_eq!(rcpts, if extensions.len() > 1 { 2 } else { 0 });
        }
    }

    #[tokio::test]
    async fn broken_354_without_recipients_gets_an_empty_message() {
        let mut script = Script::new(ALL);
        script.always_354 = true;
        let (addr, server) = fake_server(script).await;
        let mut client = SmtpClient::connect(addr, "mx", &settings(), &no_tls(), &qid())
            .await
            .unwrap();
        let mut tx = two_rcpts(b"secret body", false);
        tx.rcpts.remove(1);
        let out = client.send(&tx).await.unwrap();
        assert_eq!(out.rcpts, vec![reply(550, "5.1.1 User unknown")]);
        client.reset().await.unwrap();
        client.quit().await;
        let seen = server.await.unwrap();
        assert_eq!(seen.bodies, vec![Vec::<u8>::new()]);
    }

    #[tokio::test]
    async fn eight_bit_body_needs_8bitmime() {
        let (addr, server) = fake_server(Script::new(&["PIPELINING", "SIZE 10"])).await;
        let mut client = SmtpClient::connect(addr, "mx", &settings(), &no_tls(), &qid())
            .await
            .unwrap();
        let err = client.send(&two_rcpts(b"\xe9", true)).await.unwrap_err();
        assert!(matches!(err, ClientError::EightBitNotSupported), "{err}");
        assert!(err.is_permanent());
        assert_eq!(err.status(), "5.6.3");
        let err = client
            .send(&two_rcpts(b"eleven byte", false))
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::TooBig { limit: 10 }), "{err}");
        client.quit().await;
        let seen = server.await.unwrap();
        assert_eq!(seen.commands, vec!["EHLO gw.test", "QUIT"]);
    }

    #[tokio::test]
    async fn falls_back_to_helo() {
        let mut script = Script::new(ALL);
        script.refuse_ehlo = true;
        let (addr, server) = fake_server(script).await;
        let client = SmtpClient::connect(addr, "mx", &settings(), &no_tls(), &qid())
            .await
            .unwrap();
        assert_eq!(client.extensions(), &Extensions::default());
        client.quit().await;
        let seen = server.await.unwrap();
        assert_eq!(seen.commands, vec!["EHLO gw.test", "HELO gw.test", "QUIT"]);
    }

    #[tokio::test]
    async fn unsendable_addresses_are_refused_here() {
        let (addr, server) = fake_server(Script::new(ALL)).await;
        let mut client = SmtpClient::connect(addr, "mx", &settings(), &no_tls(), &qid())
            .await
            .unwrap();
        let mut tx = two_rcpts(b"x", false);
        tx.rcpts[0].address = "evil>\r\nRSET";
        let out = client.send(&tx).await.unwrap();
        assert_eq!(out.rcpts[0].code, 501);
        assert_eq!(out.rcpts[1].code, 250);
        client.quit().await;
        let seen = server.await.unwrap();
        assert!(!seen.commands.iter().any(|c| c.contains("evil")));
    }

    #[tokio::test]
    async fn silent_server_times_out_and_banner_refusal_is_rejected() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (silent, _) = listener.accept().await.unwrap();
            let (mut refusing, _) = listener.accept().await.unwrap();
            refusing
                .write_all(b"554 5.7.1 No thanks\r\n")
                .await
                .unwrap();
            let mut quit = [0u8; 6];
            refusing.read_exact(&mut quit).await.unwrap();
            refusing.write_all(b"221 Bye\r\n").await.unwrap();
            let mut rest = Vec::new();
            let _ = refusing.read_to_end(&mut rest).await;
            drop(silent);
            (quit, rest)
        });
        let mut quick = settings();
        quick.command_timeout = Duration::from_millis(200);
        let err = SmtpClient::connect(addr, "mx", &quick, &no_tls(), &qid())
            .await
            .unwrap_err();
        assert!(
            matches!(err, ClientError::Timeout { stage: "banner" }),
            "{err}"
        );
        let err = SmtpClient::connect(addr, "mx", &settings(), &no_tls(), &qid())
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::Rejected {
                    stage: "banner",
                    ..
                }
            ) && !err.is_permanent(),
            "a 5xx greeting is refused, and waits for another try: {err}"
        );
        assert_eq!(
            err.reply().map(Reply::to_line).as_deref(),
            Some("554 5.7.1 No thanks")
        );
        let (quit, rest) = server.await.unwrap();
        assert_eq!(&quit, b"QUIT\r\n");
        assert!(rest.is_empty());
    }
}
