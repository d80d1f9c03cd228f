//! Syslog output (`log.destination = "syslog..."`): a `tracing` layer that
//! turns each event into one syslog line and hands it to a writer thread.
//!
//! The promise is that logging never holds up mail:
//!
//! - the layer formats the line in the caller's thread (so the timestamp is
//!   the event's) and *tries* to queue it ([`super::line_queue`], shared
//!   with standard error); a full queue (a slow or stuck syslog daemon)
//!   drops the line and counts it;
//! - the writer thread owns the socket. Local and UDP sockets are
//!   non-blocking, a TCP connection has a short write timeout; a failed
//!   send drops the line, counts it, and closes the connection, which is
//!   tried again at most once a second while lines come (a full datagram
//!   buffer loses its line only; a TCP write that timed out always closes,
//!   since part of its frame may have left and the next frame must start
//!   on a frame boundary);
//! - when lines get through again, one warning says how many were dropped
//!   meanwhile. The count since start is `mailward_log_lines_dropped_total`.
//!
//! Formatting (PRI, RFC 3164 and RFC 5424 headers, structured-data
//! escaping) is the `fasyslog` crate's; the transport is ours, because its
//! senders block, and its TCP sender frames with a newline where we want
//! octet counting (RFC 6587 3.4.1: a message may hold any byte).
//!
//! Each line: ident `mailward`, our PID, facility from the destination,
//! the host name in RFC 5424 and, in RFC 3164, only towards a network
//! collector (UDP, TCP): to a local socket (`/dev/log`, `unix:PATH`) an
//! RFC 3164 line has none, as glibc's syslog(3) sends it, since a local
//! syslog daemon takes the word after the timestamp as the program name
//! (rsyslog's imuxsock does by default, and journald) and would file our
//! lines under the host's name; severity from the level (ERROR err, WARN warning, INFO info, DEBUG and
//! TRACE debug). The text is `CATEGORY: MESSAGE key=value ...`; in RFC 5424
//! the category is also the MSGID and every field is a parameter of the
//! structured-data element `mailward@32473` (32473: the documentation
//! enterprise number the MIB uses), so a collector can index queue IDs.
//! Control characters in values are escaped (`\n`, `\xHH`): one event is
//! one line, whatever a client sent.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{TcpStream, ToSocketAddrs, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fasyslog::format::SyslogContext;
use fasyslog::{Facility, SDElement, Severity};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

use super::line_queue::LineQueue;
use crate::config::{SyslogFormat, SyslogTarget, SyslogTransport};

/// How long a TCP write or connect may take before the line is dropped.
const TCP_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a lost connection is tried again (while lines come).
const RETRY: Duration = Duration::from_secs(1);
/// The structured-data ID of our fields (RFC 5424 6.3.2: NAME@PEN).
pub const SD_ID: &str = "mailward@32473";

/// The facility code of a configuration name (validated at load).
fn facility(name: &str) -> Facility {
    match name {
        "kern" => Facility::KERN,
        "user" => Facility::USER,
        "daemon" => Facility::DAEMON,
        "auth" => Facility::AUTH,
        "syslog" => Facility::SYSLOG,
        "lpr" => Facility::LPR,
        "news" => Facility::NEWS,
        "uucp" => Facility::UUCP,
        "cron" => Facility::CRON,
        "authpriv" => Facility::AUTHPRIV,
        "ftp" => Facility::FTP,
        "local0" => Facility::LOCAL0,
        "local1" => Facility::LOCAL1,
        "local2" => Facility::LOCAL2,
        "local3" => Facility::LOCAL3,
        "local4" => Facility::LOCAL4,
        "local5" => Facility::LOCAL5,
        "local6" => Facility::LOCAL6,
        "local7" => Facility::LOCAL7,
        _ => Facility::MAIL,
    }
}

fn severity(level: &Level) -> Severity {
    match *level {
        Level::ERROR => Severity::ERROR,
        Level::WARN => Severity::WARNING,
        Level::INFO => Severity::INFORMATIONAL,
        _ => Severity::DEBUG,
    }
}

/// Escapes control characters so that a value stays on its line.
pub(crate) fn push_escaped(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02X}", c as u32);
            }
            c if is_escaped_in_logs(c) => {
                let _ = write!(out, "\\u{{{:04X}}}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// A field's value in the text of a line, the same in the log file, on
/// standard error and to syslog: as it is, or in double quotes when
/// [`super::logging::needs_quotes`] says so (empty, or holding a space,
/// `=`, `"`, `\`, a control or a bidi character), so that `key=value`
/// pairs can be split again (walkT 14: `why=all recipients done` could
/// not be; walkAA 1: `detail=Mailward started` in the file). Inside the
/// quotes `"` and `\` are escaped with `\`, and control and bidi
/// characters as [`push_escaped`] writes them.
pub(crate) fn push_value(out: &mut String, value: &str) {
    if !super::logging::needs_quotes(value) {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => {
                let mut buf = [0u8; 4];
                push_escaped(out, c.encode_utf8(&mut buf));
            }
        }
    }
    out.push('"');
}

/// Unicode's bidirectional formatting characters (embeddings, overrides,
/// isolates, marks): shown raw, U+202E turns the rest of a log line around
/// in a terminal, the very trick `invoice\u{202E}fdp.exe` plays on a reader
/// (walkL 19). They are escaped like control characters.
pub(crate) fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// Characters written escaped in a log line besides the controls: the
/// bidi controls above, and U+2028/U+2029 (LINE and PARAGRAPH SEPARATOR),
/// which are no controls to Rust but line breaks to many log viewers and
/// to JavaScript-based log tools (walkAD 11).
pub(crate) fn is_escaped_format(c: char) -> bool {
    is_bidi_control(c) || matches!(c, '\u{2028}' | '\u{2029}')
}

/// What a log line (and a store entry shown on a terminal) writes escaped
/// besides the controls: [`is_escaped_format`], and the invisible format
/// characters (U+FEFF, the zero-width ones, the soft hyphen...), with
/// which a subject or an address looks like text a grep does not find
/// (walkAR F1). Not a rule for addresses: those refuse by their own.
pub(crate) fn is_escaped_in_logs(c: char) -> bool {
    is_escaped_format(c) || crate::text::is_invisible_format(c)
}

/// The message and fields of one event.
#[derive(Default)]
struct Fields {
    message: String,
    pairs: Vec<(&'static str, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            push_escaped(&mut self.message, value);
        } else {
            self.pairs.push((field.name(), value.to_string()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            push_escaped(&mut self.message, &text);
        } else {
            self.pairs.push((field.name(), text));
        }
    }
}

/// Builds the bytes of one syslog message (without transport framing).
pub struct Formatter {
    context: SyslogContext,
    format: SyslogFormat,
    /// The facility, for the RFC 3164 lines built here ([`Formatter::local`]).
    facility: Facility,
    /// To a local socket: RFC 3164 lines go without the host name, which
    /// `fasyslog` always writes (see the module documentation).
    local: bool,
}

impl Formatter {
    pub fn new(target: &SyslogTarget, format: SyslogFormat) -> Formatter {
        let mut context = SyslogContext::new();
        context
            .facility(facility(&target.facility))
            .appname("mailward")
            .procid(std::process::id().to_string());
        let local = matches!(
            target.transport,
            SyslogTransport::Local | SyslogTransport::Unix(_)
        );
        Formatter {
            context,
            format,
            facility: facility(&target.facility),
            local,
        }
    }

    /// One line: `CATEGORY: MESSAGE key=value ...`, with the fields as
    /// structured data too under RFC 5424.
    pub fn line(
        &self,
        level: &Level,
        category: &str,
        message: &str,
        pairs: &[(&str, String)],
    ) -> Vec<u8> {
        let mut text = String::with_capacity(message.len() + 64);
        text.push_str(category);
        text.push_str(": ");
        text.push_str(message);
        for (k, v) in pairs {
            let _ = write!(text, " {k}=");
            push_value(&mut text, v);
        }
        let severity = severity(level);
        match self.format {
            // What glibc's syslog(3) sends to /dev/log: `<PRI>TIMESTAMP
            // TAG[PID]: MSG`, the local time as RFC 3164 4.1.2 has it.
            SyslogFormat::Rfc3164 if self.local => format!(
                "<{}>{} mailward[{}]: {text}",
                (self.facility.code() << 3) | severity.code(),
                chrono::Local::now().format("%b %e %H:%M:%S"),
                std::process::id()
            )
            .into_bytes(),
            SyslogFormat::Rfc3164 => self
                .context
                .format_rfc3164(severity, Some(text))
                .to_string()
                .into_bytes(),
            SyslogFormat::Rfc5424 => {
                let mut elements = Vec::new();
                if let Ok(mut e) = SDElement::new(SD_ID) {
                    let _ = e.add_param("category", category);
                    for (k, v) in pairs {
                        // A name syslog cannot carry is only in the text.
                        let mut escaped = String::with_capacity(v.len());
                        push_escaped(&mut escaped, v);
                        let _ = e.add_param(*k, escaped);
                    }
                    elements.push(e);
                }
                self.context
                    .format_rfc5424(severity, Some(category), elements, Some(text))
                    .to_string()
                    .into_bytes()
            }
        }
    }
}

/// The layer: formats and queues; see the module documentation.
pub struct SyslogLayer {
    formatter: Arc<Formatter>,
    queue: LineQueue,
}

impl SyslogLayer {
    /// The layer and its writer thread (which ends when the layer is gone).
    pub fn start(target: &SyslogTarget, format: SyslogFormat) -> std::io::Result<SyslogLayer> {
        let formatter = Arc::new(Formatter::new(target, format));
        let mut writer = Writer {
            transport: target.transport.clone(),
            conn: None,
            next_try: Instant::now(),
            dropped_since_ok: 0,
            formatter: formatter.clone(),
        };
        // Connect now so that a first failure is said once on stderr (the
        // journal under systemd); mail starts either way.
        if let Err(e) = writer.connect() {
            eprintln!(
                "mailward: syslog at {} is not reachable ({e}); log lines are dropped and counted until it is",
                target.transport
            );
        }
        let queue = LineQueue::start("syslog", move |line| writer.deliver(line))?;
        Ok(SyslogLayer { formatter, queue })
    }
}

impl<S: Subscriber> Layer<S> for SyslogLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        let line = self.formatter.line(
            meta.level(),
            super::logging::category_of(meta.target()),
            &fields.message,
            &fields.pairs,
        );
        if self.queue.push(line).is_err() {
            super::logging::count_dropped(1);
        }
    }
}

enum Conn {
    Unix(UnixDatagram),
    Udp(UdpSocket),
    Tcp(TcpStream),
}

struct Writer {
    transport: SyslogTransport,
    conn: Option<Conn>,
    next_try: Instant,
    /// Lines lost since the last one that got through.
    dropped_since_ok: u64,
    formatter: Arc<Formatter>,
}

impl Writer {
    fn connect(&mut self) -> std::io::Result<()> {
        self.next_try = Instant::now() + RETRY;
        let conn = match &self.transport {
            SyslogTransport::Local => Conn::Unix(unix("/dev/log".as_ref())?),
            SyslogTransport::Unix(p) => Conn::Unix(unix(p)?),
            SyslogTransport::Udp(addr) => {
                let to = resolve(addr)?;
                let bind: std::net::SocketAddr = if to.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let s = UdpSocket::bind(bind)?;
                s.connect(to)?;
                s.set_nonblocking(true)?;
                Conn::Udp(s)
            }
            SyslogTransport::Tcp(addr) => {
                let s = TcpStream::connect_timeout(&resolve(addr)?, TCP_TIMEOUT)?;
                s.set_write_timeout(Some(TCP_TIMEOUT))?;
                s.set_nodelay(true)?;
                Conn::Tcp(s)
            }
        };
        self.conn = Some(conn);
        Ok(())
    }

    fn send(&mut self, line: &[u8]) -> std::io::Result<()> {
        match self.conn.as_mut() {
            None => Err(std::io::Error::from(std::io::ErrorKind::NotConnected)),
            Some(Conn::Unix(s)) => s.send(line).map(|_| ()),
            Some(Conn::Udp(s)) => s.send(line).map(|_| ()),
            Some(Conn::Tcp(s)) => {
                let mut frame = Vec::with_capacity(line.len() + 8);
                let _ = write!(frame, "{} ", line.len());
                frame.extend_from_slice(line);
                s.write_all(&frame)
            }
        }
    }

    /// Sends one line, connecting first if needed; counts it when lost.
    fn deliver(&mut self, line: &[u8]) {
        if self.conn.is_none() && Instant::now() >= self.next_try {
            let _ = self.connect();
        }
        match self.send(line) {
            Ok(()) => {
                if self.dropped_since_ok > 0 {
                    let n = std::mem::take(&mut self.dropped_since_ok);
                    let notice = self.formatter.line(
                        &Level::WARN,
                        "app",
                        &format!(
                            "{n} log line(s) were dropped while syslog at {} was unreachable or too slow.",
                            self.transport
                        ),
                        &[],
                    );
                    let _ = self.send(&notice);
                }
            }
            Err(e) => {
                // A full datagram socket buffer (a slow reader) loses this
                // line only; anything else closes the connection for a
                // later retry. So does a TCP write that timed out: part of
                // the frame may be on the wire, and the next frame after
                // it would be read from the middle of this one (octet
                // counting has no resynchronisation).
                let keep = e.kind() == std::io::ErrorKind::WouldBlock
                    && !matches!(self.conn, Some(Conn::Tcp(_)));
                if !keep {
                    self.conn = None;
                }
                self.dropped_since_ok += 1;
                super::logging::dropped_because(format!("syslog at {}: {e}", self.transport));
            }
        }
    }
}

fn unix(path: &std::path::Path) -> std::io::Result<UnixDatagram> {
    let s = UnixDatagram::unbound()?;
    s.connect(path)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

fn resolve(addr: &str) -> std::io::Result<std::net::SocketAddr> {
    addr.to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{addr} has no address")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(transport: SyslogTransport) -> SyslogTarget {
        SyslogTarget {
            transport,
            facility: "local3".into(),
        }
    }

    #[test]
    fn rfc3164_line() {
        let f = Formatter::new(&target(SyslogTransport::Local), SyslogFormat::Rfc3164);
        let line = f.line(
            &Level::WARN,
            "smtp",
            "Session refused.",
            &[("client", "192.0.2.1".into())],
        );
        let text = String::from_utf8(line).unwrap();
        // local3 = 19, warning = 4: 19*8+4 = 156.
        assert!(text.starts_with("<156>"), "{text}");
        let pid = std::process::id();
        assert!(
            text.ends_with(&format!(
                " mailward[{pid}]: smtp: Session refused. client=192.0.2.1"
            )),
            "{text}"
        );
    }

    #[test]
    fn rfc3164_names_the_host_to_a_collector_but_not_to_a_local_socket() {
        // walkF #3: with the host name after the timestamp, rsyslog's
        // default local input (imuxsock) took it as the program name, and
        // the recipe's `$programname == 'mailward'` never matched.
        let pid = std::process::id();
        // `<14>Dec  5 03:24:19 HOST PROGRAM[PID]: x`
        let host = SyslogContext::new()
            .format_rfc3164(Severity::INFORMATIONAL, Some("x"))
            .to_string();
        let host = host.split(' ').nth_back(2).unwrap_or_default().to_string();
        for transport in [
            SyslogTransport::Local,
            SyslogTransport::Unix("/run/x.sock".into()),
        ] {
            let f = Formatter::new(&target(transport), SyslogFormat::Rfc3164);
            let text = String::from_utf8(f.line(&Level::INFO, "smtp", "Hi.", &[])).unwrap();
            // `<158>Dec  5 03:24:19 mailward[PID]: smtp: Hi.`
            let (head, rest) = text.split_at(20);
            assert!(head.starts_with("<158>"), "{text}");
            assert!(
                chrono::NaiveTime::parse_from_str(&head[12..20], "%H:%M:%S").is_ok(),
                "{text}"
            );
            assert_eq!(rest, format!(" mailward[{pid}]: smtp: Hi."), "{text}");
        }
        for transport in [
            SyslogTransport::Udp("127.0.0.1:514".into()),
            SyslogTransport::Tcp("127.0.0.1:601".into()),
        ] {
            let f = Formatter::new(&target(transport), SyslogFormat::Rfc3164);
            let text = String::from_utf8(f.line(&Level::INFO, "smtp", "Hi.", &[])).unwrap();
            assert!(
                text.ends_with(&format!(" {host} mailward[{pid}]: smtp: Hi.")),
                "{text}"
            );
        }
        // RFC 5424 has a field for it, which its parsers expect: kept.
        let f = Formatter::new(&target(SyslogTransport::Local), SyslogFormat::Rfc5424);
        let text = String::from_utf8(f.line(&Level::INFO, "smtp", "Hi.", &[])).unwrap();
        assert!(
            text.contains(&format!(" {host} mailward {pid} smtp ")),
            "{text}"
        );
    }

    #[test]
    fn rfc5424_line_carries_fields_as_structured_data() {
        let f = Formatter::new(&target(SyslogTransport::Local), SyslogFormat::Rfc5424);
        let line = f.line(
            &Level::INFO,
            "delivery",
            "Delivered.",
            &[("queue_id", "Q1".into()), ("reply", "250 \"ok\" ]".into())],
        );
        let text = String::from_utf8(line).unwrap();
        // local3 info = 158, version 1.
        assert!(text.starts_with("<158>1 "), "{text}");
        let pid = std::process::id();
        assert!(text.contains(&format!(" mailward {pid} delivery [mailward@32473 category=\"delivery\" queue_id=\"Q1\" reply=\"250 \\\"ok\\\" \\]\"] delivery: Delivered. queue_id=Q1")), "{text}");
    }

    #[test]
    fn values_with_spaces_are_quoted_in_the_text() {
        // walkT 14: `why=all recipients done` could not be split as
        // key=value, while the log file has why="all recipients done".
        let f = Formatter::new(&target(SyslogTransport::Local), SyslogFormat::Rfc3164);
        let line = f.line(
            &Level::INFO,
            "delivery",
            "Done.",
            &[
                ("mode", "smtp".into()),
                ("why", "all recipients done".into()),
                ("reply", r#"250 "ok""#.into()),
                ("empty", String::new()),
            ],
        );
        let text = String::from_utf8(line).unwrap();
        assert!(
            text.ends_with(
                r#"delivery: Done. mode=smtp why="all recipients done" reply="250 \"ok\"" empty="""#
            ),
            "{text}"
        );
    }

    #[test]
    fn control_characters_stay_on_the_line() {
        let mut out = String::new();
        push_escaped(&mut out, "a\nb\r\u{1b}[31m\u{0}é");
        assert_eq!(out, "a\\nb\\r\\x1B[31m\\x00é");
    }

    #[test]
    fn tcp_frames_are_octet_counted_and_a_dead_peer_is_counted_not_waited_for() {
        use std::io::Read;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let f = Arc::new(Formatter::new(
            &target(SyslogTransport::Tcp(addr.clone())),
            SyslogFormat::Rfc3164,
        ));
        let mut w = Writer {
            transport: SyslogTransport::Tcp(addr),
            conn: None,
            next_try: Instant::now(),
            dropped_since_ok: 0,
            formatter: f,
        };
        w.deliver(b"hello");
        w.deliver("two\nlines".as_bytes());
        let (mut peer, _) = listener.accept().unwrap();
        drop(w);
        let mut got = String::new();
        peer.read_to_string(&mut got).unwrap();
        assert_eq!(got, "5 hello9 two\nlines");

        // Nobody listening: the line is dropped and counted at once.
        let before = super::super::logging::dropped();
        let mut w = Writer {
            transport: SyslogTransport::Unix("/nonexistent/log.sock".into()),
            conn: None,
            next_try: Instant::now(),
            dropped_since_ok: 0,
            formatter: Arc::new(Formatter::new(
                &target(SyslogTransport::Local),
                SyslogFormat::Rfc3164,
            )),
        };
        w.deliver(b"lost");
        assert_eq!(w.dropped_since_ok, 1);
        assert!(super::super::logging::dropped() > before);
    }

    #[test]
    fn a_tcp_write_that_times_out_never_leaves_a_broken_frame_behind() {
        use std::io::Read;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mut w = Writer {
            transport: SyslogTransport::Tcp(addr.clone()),
            conn: None,
            next_try: Instant::now(),
            dropped_since_ok: 0,
            formatter: Arc::new(Formatter::new(
                &target(SyslogTransport::Tcp(addr)),
                SyslogFormat::Rfc3164,
            )),
        };
        w.connect().unwrap();
        let Some(Conn::Tcp(s)) = &w.conn else {
            panic!("not connected")
        };
        s.set_write_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        // The collector accepts and does not read: frames of 64 KiB fill
        // both socket buffers until a write times out part-way.
        let (mut peer, _) = listener.accept().unwrap();
        let line = vec![b'x'; 64 * 1024];
        let mut sent = 0;
        while w.dropped_since_ok == 0 {
            w.deliver(&line);
            sent += 1;
            assert!(sent < 10_000, "the socket never filled");
        }
        // The connection that holds a part frame is given up; what the
        // collector reads on it is whole frames and then at most one cut
        // frame, never a frame that starts inside another one.
        assert!(w.conn.is_none(), "a timed-out TCP connection is kept");
        let mut got = Vec::new();
        peer.read_to_end(&mut got).unwrap();
        let head = format!("{} ", line.len());
        let mut rest = &got[..];
        while rest.len() >= head.len() + line.len() {
            assert!(
                rest.starts_with(head.as_bytes()),
                "a frame starts mid-frame"
            );
            assert!(rest[head.len()..head.len() + line.len()] == line[..]);
            rest = &rest[head.len() + line.len()..];
        }
        // The next line goes out on a new connection, from a frame's start.
        w.next_try = Instant::now();
        w.deliver(b"after");
        let (mut peer, _) = listener.accept().unwrap();
        drop(w);
        let mut got = String::new();
        peer.read_to_string(&mut got).unwrap();
        assert!(got.starts_with("5 after"), "{got:.40}");
    }
}
