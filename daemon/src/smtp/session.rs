//! One inbound SMTP session (RFC 5321): the state machine from the banner
//! to QUIT, with access rules, anti-relay, limits and timeouts. The message
//! is spooled (durably) before the 250; the session then hands it to the
//! queue. It owns no sockets beyond its own and no counters: what happens is
//! said with events.

use super::command::{self, Command, MailParams, Verb};
use super::data::{Assembler, HEADER_TOO_LARGE_REPLY, LONG_LINE_REPLY};
use super::stream::{Bound, Conn, Line, Stream, WriteLimit};
use super::xforward::{self, Forwarded};
use crate::config::{first_match, Config, LongLines, Matcher, Rule, RuleAction, Subject};
use crate::envelope::{Envelope, QueueId, Recipient};
use crate::events::{
    InboundTls, MessageRejected, RecipientRejected, Refused, RefusedTransaction, RejectReason,
    SessionClosed, SessionOpened, SessionTimedOut, TimeoutPhase,
};
use crate::gateway::{Gateway, SessionSlot};
use crate::spool::NoRoom;
use crate::standing::Standing;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// Longest command line we read (RFC 5321 allows 512; extensions add more).
const MAX_COMMAND_LINE: usize = 2048;
/// Longest DATA line we keep: 998 octets + CRLF, plus slack to see that a
/// line is too long rather than cut. With `limits.long_lines = "split"`, a
/// longer line comes in parts of this size.
const MAX_DATA_LINE: usize = 1002;
/// After this many refused commands the session is closed (like Postfix's
/// smtpd_hard_error_limit).
const HARD_ERROR_LIMIT: u32 = 20;
/// Recipients past `limits.max_rcpts_per_message` that a transaction may
/// give before each further one counts toward the error limit (Postfix's
/// smtpd_recipient_overshoot_limit): an MTA overshoots by at most its
/// pipelined batch; a client sending 200,000 is abusing us (walkAH 4).
const RCPT_OVERSHOOT_LIMIT: u32 = 1000;
/// NOOP, RSET, VRFY, HELP, EHLO and HELO a session may give before each
/// further one counts toward the error limit (Postfix's
/// smtpd_junk_command_limit): a client that sends no mail cannot keep its
/// slot for ever with a NOOP now and then (walkAH 6). A message accepted
/// starts the count again.
const JUNK_COMMAND_LIMIT: u32 = 100;

/// One inbound session's short ID on its log lines (`session=17`), so
/// that an administrator can follow one connection from the log, as
/// Postfix's `smtpd[PID]` allows, where a client's IP alone mixes the
/// concurrent sessions of one relay (walkAP F6). A counter: unique while
/// the daemon runs, counted from 1 again after a restart (which the log
/// says, "Mailward started."); free to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionId(u64);

impl SessionId {
    /// The next session's ID.
    pub fn next() -> SessionId {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        SessionId(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }
}

tokio::task_local! {
    /// The inbound session the current task serves ([`current`]).
    static CURRENT: SessionId;
}

/// The inbound session the calling task serves; None in a milter
/// connection, a connection refused before it became a session, and the
/// background work after a 250. The events logged during a session
/// ("Refused in the session.", "Message accepted.") take their `session=`
/// from here, so that one session's lines are found by its ID alone
/// without passing the ID through every call that may log.
pub fn current() -> Option<SessionId> {
    CURRENT.try_with(|s| *s).ok()
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Where the session stands. A transaction only exists after a greeting.
enum State {
    /// Connected, no (valid) EHLO/HELO yet, or just after STARTTLS.
    Start,
    /// Greeted, no transaction.
    Ready,
    /// MAIL given; recipients being collected (boxed: the other states
    /// are empty).
    Mail(Box<Transaction>),
}

struct Transaction {
    from: String,
    params: MailParams,
    rcpts: Vec<Recipient>,
    /// Its refused recipients, as `mailward_messages_rejected_total` sees
    /// them: the transaction counts once if it ends without a message.
    refusals: Refusals,
    /// The SPF result for the sender (None: not checked).
    spf: Option<crate::auth::Spf>,
    /// Who the message is from: the peer, or the original client an MTA
    /// in front of us forwarded (XFORWARD).
    client: Client,
    /// Spool room held for the message (its declared SIZE, then what DATA
    /// brings): other sessions' admission checks count it.
    room: crate::spool::Reservation,
    /// Recipients refused with `452 4.5.3 Too many recipients`: the first
    /// is logged on its own, the others once when the transaction ends.
    over_limit: u32,
}

impl Transaction {
    /// Logs the recipients refused over `limits.max_rcpts_per_message`
    /// after the first, once for the transaction (walkAH 4: one INFO line
    /// each, 30 MB of log in 0.7 s).
    fn log_over_limit(&self, client: std::net::IpAddr, session: SessionId) {
        if self.over_limit > 1 {
            tracing::info!(target: "smtp", session = %session, client = %client, reason = "limit",
                refused = "recipient", from = %self.from, count = self.over_limit,
                reply = "452 4.5.3 Too many recipients",
                "Recipients over limits.max_rcpts_per_message refused in this transaction (the first one logged on its own).");
        }
    }

    /// The transaction as a refusal's log line names it.
    fn named(&self) -> crate::events::RefusedTransaction<'_> {
        crate::events::RefusedTransaction {
            queue_id: None,
            upstream_id: self.client.upstream_id.as_deref(),
            from: &self.from,
            rcpts: self.rcpts.len(),
        }
    }
}

/// What a transaction's refused recipients owe the statistics. Each refused
/// RCPT counts in `mailward_recipients_rejected_total` at once; the
/// transaction counts once in `mailward_messages_rejected_total`, and only
/// if it ends without a message accepted (a message refused at DATA counts
/// with its own reason instead, an accepted one not at all).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Refusals {
    /// No recipient refused.
    None,
    /// Recipients were refused; the first one's reason, client and reply.
    Pending {
        reason: RejectReason,
        client: std::net::IpAddr,
        reply: String,
    },
    /// Already counted (DATA was answered "no valid recipients"): nothing
    /// more this transaction does is counted again.
    Counted,
}

impl Refusals {
    /// A recipient was refused: the first one's reason stands.
    fn recipient(&mut self, reason: RejectReason, client: std::net::IpAddr, reply: &str) {
        if *self == Refusals::None {
            *self = Refusals::Pending {
                reason,
                client,
                reply: reply.to_string(),
            };
        }
    }

    /// The transaction ends here without a message: counted if its
    /// recipients were refused and it was not counted yet.
    fn settle(&mut self) -> Option<Settled> {
        match std::mem::replace(self, Refusals::Counted) {
            Refusals::Pending {
                reason,
                client,
                reply,
            } => Some(Settled {
                reason,
                client,
                reply,
            }),
            Refusals::None => {
                *self = Refusals::None;
                None
            }
            Refusals::Counted => None,
        }
    }
}

/// A transaction whose recipients were refused, ending without a message.
#[derive(Debug)]
struct Settled {
    reason: RejectReason,
    client: std::net::IpAddr,
    /// Its first refused recipient's reply.
    reply: String,
}

impl Settled {
    /// Counts the transaction once in `mailward_messages_rejected_total`
    /// and logs it at INFO with its sender and accepted recipients, so
    /// that `grep from=SENDER` finds mail that never came (walkY 3: only a
    /// debug line said so). `reply` is the reply that ended it (`554 5.5.1
    /// No valid recipients`); without one (RSET, QUIT, a new greeting, the
    /// connection gone), its first refused recipient's.
    fn emit(
        &self,
        stats: &mailward_metrics::Stats,
        tx: &RefusedTransaction<'_>,
        reply: Option<&str>,
    ) {
        self.emit_ended(stats, tx, reply, None);
    }

    /// As [`Self::emit`], for a transaction the session's end cut off:
    /// `cause=` says what did, `reply` is what the session ended with.
    fn emit_ended(
        &self,
        stats: &mailward_metrics::Stats,
        tx: &RefusedTransaction<'_>,
        reply: Option<&str>,
        cause: Option<&'static str>,
    ) {
        MessageRejected {
            reason: self.reason,
            client: self.client,
            reply: reply.unwrap_or(&self.reply),
            refused: Refused::Transaction,
            cause,
        }
        .emit_with(stats, Some(tx));
    }
}

/// What cut a session off with a transaction open, for that
/// transaction's refusal line: its reply was the first refused
/// recipient's, a reply it never got as its end (walkAU F6: a session cut
/// by 421, a write time-out or a hang-up logged `reply="452 4.5.3 Too
/// many recipients"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// 421 after too many refused commands.
    TooManyErrors,
    /// 421 after too many NOOP, RSET, VRFY, HELP, EHLO or HELO.
    JunkCommands,
    /// 421 for a command or DATA deadline.
    Timeout,
    /// Our replies not read within the write deadline: no reply.
    WriteTimeout,
    /// The client closed the connection (or it failed): no reply.
    Disconnected,
    /// 421 for the gateway stopping.
    Shutdown,
    /// 554 for commands pipelined behind DATA.
    Pipelining,
    /// 221 for a web request's verb (GET, POST, CONNECT).
    WebRequest,
}

impl Ending {
    /// After a failed write: the deadline passed, or the connection is
    /// gone.
    fn of_write(e: &std::io::Error) -> Ending {
        if e.kind() == std::io::ErrorKind::TimedOut {
            Ending::WriteTimeout
        } else {
            Ending::Disconnected
        }
    }

    /// The `cause=` of the line.
    fn cause(self) -> &'static str {
        match self {
            Ending::TooManyErrors => "too_many_errors",
            Ending::JunkCommands => "junk_commands",
            Ending::Timeout => "timeout",
            Ending::WriteTimeout => "write_timeout",
            Ending::Disconnected => "disconnected",
            Ending::Shutdown => "shutdown",
            Ending::Pipelining => "pipelining",
            Ending::WebRequest => "web_request",
        }
    }

    /// The `reply=` of the line: the reply the session ended with, or
    /// that there was none.
    fn reply(self, hostname: &str) -> String {
        match self {
            Ending::TooManyErrors | Ending::JunkCommands => TOO_MANY_ERRORS.to_string(),
            Ending::Timeout => format!("421 4.4.2 {hostname} Timeout exceeded, closing connection"),
            Ending::WriteTimeout => "none: the client did not read our replies".to_string(),
            Ending::Disconnected => "none: the client closed the connection".to_string(),
            Ending::Shutdown => SHUTTING_DOWN.to_string(),
            Ending::Pipelining => IMPROPER_PIPELINING.to_string(),
            Ending::WebRequest => WEB_REQUEST.to_string(),
        }
    }
}

const TOO_MANY_ERRORS: &str = "421 4.7.0 Too many errors, closing connection";
const SHUTTING_DOWN: &str = "421 4.3.2 Service shutting down, try again later";
const IMPROPER_PIPELINING: &str = "554 5.5.0 Error: improper command pipelining after DATA";
/// Out of sequence: the same words whether the command parsed or not
/// (walkBK F4), so that a client learns the step it skipped.
const NEED_MAIL: &str = "503 5.5.1 Need MAIL command";
const SEND_HELO_FIRST: &str = "503 5.5.1 Send HELO/EHLO first";
const NESTED_MAIL: &str = "503 5.5.1 Nested MAIL command";
/// The answer to a web request's first line, as Postfix answers its
/// `smtpd_forbidden_commands` (221 2.7.0, then the connection closes).
const WEB_REQUEST: &str =
    "221 2.7.0 Error: a web request (GET, POST, CONNECT, HEAD or PUT) on an SMTP port; closing connection";

/// Whether `line` starts a web request: a browser or a proxy made to
/// talk to this port (cross-protocol scripting: an HTML form's POST to
/// port 2525 whose body is SMTP commands, walkBK F1). Answered each with
/// a 500, its body's MAIL, RCPT and DATA would be taken as commands;
/// Postfix ends the session at the first (`smtpd_forbidden_commands =
/// CONNECT GET POST`), and so does this session (HEAD and PUT too, walkBM
/// F4). No SMTP command starts with these words.
fn is_web_request(line: &[u8]) -> bool {
    ["GET ", "POST ", "CONNECT ", "HEAD ", "PUT "]
        .iter()
        .any(|verb| {
            line.len() >= verb.len() && line[..verb.len()].eq_ignore_ascii_case(verb.as_bytes())
        })
}

/// The client a transaction is recorded and scored for (logs, raw records,
/// statistics, spam lists, DNSBL scoring, SPF, the Received line). Access
/// rules and relay permission always use the connecting peer.
#[derive(Debug, Clone)]
struct Client {
    ip: std::net::IpAddr,
    /// Who it is to us: the peer's standing, or the forwarded client's.
    standing: Standing,
    helo: String,
    /// Its verified host name, when known.
    name: Option<String>,
    /// SMTP or ESMTP, when forwarded.
    proto: Option<String>,
    /// The `[spam] dnsbl` zones that list it.
    dnsbl_listed: Vec<String>,
    /// The MTA that forwarded this identity (the peer), and its own
    /// message ID.
    forwarded_by: Option<std::net::IpAddr>,
    upstream_id: Option<String>,
}

/// What the command loop does next.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
    StartTls,
}

pub struct Session {
    gw: Arc<Gateway>,
    /// The configuration this session started with; a reload does not change
    /// a session mid-flight.
    cfg: Arc<Config>,
    peer: SocketAddr,
    /// The client's verified reverse name, looked up only when a rule needs it.
    rdns: Option<String>,
    /// Who the peer is to us (relay permission, XFORWARD, the tests for
    /// mail from outside).
    standing: Standing,
    /// The `[spam] dnsbl` zones that list the client.
    dnsbl_listed: Vec<String>,
    /// A greeting was refused by `access.helo_rules` (counted once).
    helo_refused: bool,
    /// STARTTLS's outcome so far: "tls" once a handshake completed,
    /// "failed" once one failed (counted then); None: plain.
    tls_result: Option<&'static str>,
    helo: Option<String>,
    /// XFORWARD attributes given since the last transaction.
    forwarded: Forwarded,
    esmtp: bool,
    state: State,
    /// Messages sent to the end of DATA, accepted or refused, and their
    /// octets: what `max_messages_per_session` and `max_session_size`
    /// bound.
    messages: u32,
    session_bytes: u64,
    /// Messages accepted (250), for the session's closing line.
    accepted: u32,
    errors: u32,
    /// Commands that move no mail (JUNK_COMMAND_LIMIT) since the start or
    /// the last message accepted.
    junk: u32,
    /// Held for the whole session (given back early when cut for stress).
    slot: SessionSlot,
    /// On the session's log lines.
    id: SessionId,
    /// What cut the session off, when it was not QUIT or one of its
    /// own refusals: named on the open transaction's line.
    ending: Option<Ending>,
}

/// When a read must be over: `normal`, or `stressed` (the earlier one)
/// while the gateway is under stress.
#[derive(Debug, Clone, Copy)]
struct Deadlines {
    normal: tokio::time::Instant,
    stressed: tokio::time::Instant,
}

/// How a read against deadlines ended.
enum Read {
    Line(std::io::Result<Line>),
    /// The deadline passed; `stress` when it was the stress one.
    TimedOut {
        stress: bool,
    },
    /// The gateway is stopping.
    Shutdown,
}

/// Reads one line before its deadline. The stress state is watched while
/// waiting: a session idle since before the load rose gets the stress
/// deadline as soon as stress begins, not after its normal timeout. A
/// stress deadline cuts the session only if it can give its slot back
/// while the load is still above the mark ([`SessionSlot::release_for_stress`]);
/// otherwise it waits on, rechecking every [`STRESS_RECHECK`]. The read
/// itself is started once, so a partial line is never lost.
///
/// The read is polled first (`biased`): after the process was stopped
/// (SIGSTOP, a VM pause, a swap storm) past a deadline, a line already
/// in the buffer or the socket is served, not answered 421 (walkAU F2:
/// an unbiased select picked the timer for about half such sessions).
/// Only a line that is not all there when the deadline passes times out.
async fn read_by(
    conn: &mut Conn,
    line: &mut Vec<u8>,
    bound: Bound,
    deadlines: Deadlines,
    stress: &mut tokio::sync::watch::Receiver<bool>,
    release_for_stress: &(dyn Fn() -> bool + Sync),
    shutdown: Option<&mut tokio::sync::watch::Receiver<bool>>,
) -> Read {
    let read = conn.read_line(line, bound);
    tokio::pin!(read);
    let stopping = async {
        match shutdown {
            Some(s) => {
                let _ = s.wait_for(|stop| *stop).await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::pin!(stopping);
    let mut watching = true;
    let mut recheck = deadlines.stressed;
    loop {
        let under = *stress.borrow_and_update();
        let stressed = under && deadlines.stressed < deadlines.normal;
        let deadline = if stressed {
            deadlines.stressed.max(recheck).min(deadlines.normal)
        } else {
            deadlines.normal
        };
        tokio::select! {
            biased;
            r = &mut read => return Read::Line(r),
            _ = tokio::time::sleep_until(deadline) => {
                let now = tokio::time::Instant::now();
                if now >= deadlines.normal {
                    return Read::TimedOut { stress: false };
                }
                if stressed && release_for_stress() {
                    return Read::TimedOut { stress: true };
                }
                recheck = now + STRESS_RECHECK;
            }
            _ = &mut stopping => return Read::Shutdown,
            changed = stress.changed(), if watching => watching = changed.is_ok(),
        }
    }
}

/// How soon a session past its stress deadline, spared because the load
/// had already fallen to the mark, looks again (the stress watch may not
/// change in between when sessions open and close at once).
const STRESS_RECHECK: Duration = Duration::from_millis(200);

/// How long DATA may take after the 354 when `received` octets have come
/// so far: the base timeout (shorter under stress) plus `received` at
/// `limits.min_data_rate` octets per second (0: no allowance for size).
fn data_allowance(cfg: &Config, received: u64, stress: bool) -> Duration {
    let base = if stress {
        cfg.timeouts.stress_data.get()
    } else {
        cfg.timeouts.data.get()
    };
    match cfg.limits.min_data_rate {
        0 => base,
        rate => base.saturating_add(Duration::from_secs(received / u64::from(rate))),
    }
}

fn rules_need_host(rules: &[&[Rule]]) -> bool {
    rules
        .iter()
        .any(|list| list.iter().any(|r| matches!(r.matcher, Matcher::Host(_))))
}

impl Session {
    pub fn new(gw: Arc<Gateway>, peer: SocketAddr, slot: SessionSlot) -> Session {
        let cfg = gw.config();
        let standing = Standing::of(&cfg, peer.ip(), None);
        Session {
            gw,
            cfg,
            peer,
            standing,
            rdns: None,
            dnsbl_listed: Vec::new(),
            helo: None,
            helo_refused: false,
            tls_result: None,
            forwarded: Forwarded::default(),
            esmtp: false,
            state: State::Start,
            messages: 0,
            session_bytes: 0,
            accepted: 0,
            errors: 0,
            junk: 0,
            slot,
            id: SessionId::next(),
            ending: None,
        }
    }

    /// Refuses a MAIL command: counted once, for the client XFORWARD
    /// named for the transaction it would start (walkH: size and limit
    /// refusals logged the forwarding MTA), else the peer. Refusals at or
    /// after DATA name their transaction's client with [`Self::reject_for`].
    /// The line names the sender refused (`from=`, as written), so that a
    /// postmaster asked about it finds it (walkAR F5).
    fn reject(&self, conn: &mut Conn, reason: RejectReason, reply: &str, from: &str) {
        let client = self.forwarded.addr.unwrap_or_else(|| self.peer.ip());
        let named = RefusedTransaction {
            upstream_id: self.forwarded.ident.as_deref(),
            from,
            ..Default::default()
        };
        self.reject_for(conn, client, reason, reply, Some(&named));
    }

    /// A refusal that concerns a transaction's client: the one XFORWARD
    /// named (as the raw records and accepted lines say), not the MTA
    /// that forwarded it. With `tx`, the log line names the transaction
    /// (sender, recipients, queue IDs) so that it can be found in the
    /// forwarding MTA's log too.
    fn reject_for(
        &self,
        conn: &mut Conn,
        client: std::net::IpAddr,
        reason: RejectReason,
        reply: &str,
        tx: Option<&crate::events::RefusedTransaction<'_>>,
    ) {
        MessageRejected {
            reason,
            client,
            reply,
            refused: Refused::Transaction,
            cause: None,
        }
        .emit_with(&self.gw.stats, tx);
        conn.reply(reply);
    }

    /// Refuses the whole session (at connect, at HELO/EHLO, or closing it
    /// for too many errors). Counted once.
    fn reject_session(&self, conn: &mut Conn, reason: RejectReason, reply: &str) {
        self.refuse_session(conn, reason, reply, None);
    }

    /// Ends the session for `ending`, a protocol fault (reason syntax):
    /// the ending is remembered for the closing line, and the refusal
    /// line names its cause when `named` (walkAU F6: junk commands;
    /// walkBK F1: a web request; pipelining).
    fn end_session(&mut self, conn: &mut Conn, ending: Ending, reply: &str, named: bool) {
        self.ending = Some(ending);
        let cause = named.then_some(ending.cause());
        self.refuse_session(conn, RejectReason::Syntax, reply, cause);
    }

    fn refuse_session(
        &self,
        conn: &mut Conn,
        reason: RejectReason,
        reply: &str,
        cause: Option<&'static str>,
    ) {
        MessageRejected {
            reason,
            client: self.peer.ip(),
            reply,
            refused: Refused::Session,
            cause,
        }
        .emit(&self.gw.stats);
        conn.reply(reply);
    }

    /// Refuses one RCPT of the open transaction: counted as a recipient
    /// now, and the transaction remembers it (its first refused recipient
    /// gives the reason it counts with if it ends without a message). The
    /// line names the recipient refused (`to=`, as written; walkAR F5).
    fn reject_rcpt(
        &mut self,
        conn: &mut Conn,
        client: std::net::IpAddr,
        reason: RejectReason,
        reply: &str,
        to: &str,
    ) {
        let tx = match &self.state {
            State::Mail(tx) => Some(&**tx),
            _ => None,
        };
        RecipientRejected {
            reason,
            client,
            reply,
            from: tx.map(|t| t.from.as_str()),
        }
        .emit_for(
            &self.gw.stats,
            &crate::events::RefusedRecipient {
                to,
                upstream_id: tx.and_then(|t| t.client.upstream_id.as_deref()),
            },
        );
        if let State::Mail(tx) = &mut self.state {
            tx.refusals.recipient(reason, client, reply);
        }
        conn.reply(reply);
    }

    /// Refuses a MAIL for the client's own doing (its sender, size, SPF):
    /// like an unknown command it counts toward the error limit, so that a
    /// client cannot probe the rules without end (Postfix counts every
    /// refusal in smtpd_hard_error_limit); past it the session gets 421
    /// and closes instead (walkY 2).
    fn refuse_mail(
        &mut self,
        conn: &mut Conn,
        reason: RejectReason,
        reply: &str,
        from: &str,
    ) -> Flow {
        if self.too_many_errors(conn) {
            return Flow::Close;
        }
        self.reject(conn, reason, reply, from);
        Flow::Continue
    }

    /// [`Self::reject_rcpt`], counted toward the error limit as
    /// [`Self::refuse_mail`] is: a relay prober or an address harvester
    /// gets 20 tries a session, not an endless supply.
    fn refuse_rcpt(
        &mut self,
        conn: &mut Conn,
        client: std::net::IpAddr,
        reason: RejectReason,
        reply: &str,
        to: &str,
    ) -> Flow {
        if self.too_many_errors(conn) {
            return Flow::Close;
        }
        self.reject_rcpt(conn, client, reason, reply, to);
        Flow::Continue
    }

    /// Moves to `next`. A transaction left here ends without a message
    /// accepted: it counts as refused if its recipients were.
    fn leave(&mut self, next: State) {
        if let State::Mail(mut tx) = std::mem::replace(&mut self.state, next) {
            tx.log_over_limit(self.peer.ip(), self.id);
            if let Some(refused) = tx.refusals.settle() {
                let reply = self.ending.map(|e| e.reply(&self.cfg.server.hostname));
                let cause = self.ending.map(Ending::cause);
                refused.emit_ended(&self.gw.stats, &tx.named(), reply.as_deref(), cause);
            }
        }
    }

    /// Runs the session to its end.
    pub async fn run(self, tcp: TcpStream) {
        let id = self.id;
        CURRENT.scope(id, self.serve(tcp)).await
    }

    async fn serve(mut self, tcp: TcpStream) {
        SessionOpened {
            client: self.peer,
            session: self.id.0,
        }
        .emit(&self.gw.stats);
        let limit = WriteLimit {
            client: self.peer.ip(),
            stats: self.gw.stats.clone(),
            normal: self.cfg.timeouts.command.get(),
            stressed: self.cfg.timeouts.stress_command.get(),
            stress: self.gw.stress_watch(),
        };
        let mut conn = Conn::new(Stream::Plain(tcp), limit);
        let open = if self.greet(&mut conn).await {
            self.command_loop(conn).await
        } else {
            Some(conn)
        };
        // However the session ended (QUIT, the connection closed or timed
        // out, too many errors, shutdown), an open transaction ends with it.
        self.leave(State::Start);
        match self.tls_result {
            // Counted when it failed.
            Some("failed") => {}
            Some(result) => InboundTls { result }.emit(&self.gw.stats),
            None => InboundTls { result: "plain" }.emit(&self.gw.stats),
        }
        SessionClosed {
            client: self.peer,
            messages: self.accepted,
            session: self.id.0,
        }
        .emit(&self.gw.stats);
        // The session is over: its slot goes back before the connection
        // is closed, and before the 221 that answers QUIT leaves (the last
        // replies are buffered until `shutdown` flushes them). A client
        // that connects again as soon as it has read 221 (a sending MTA's
        // next batch, a monitoring probe) must find the slot free, not be
        // refused by `incoming_sessions_per_ip` for a session that ended.
        drop(self.slot);
        if let Some(mut conn) = open {
            conn.shutdown().await;
        }
    }

    async fn greet(&mut self, conn: &mut Conn) -> bool {
        let ip = self.peer.ip();
        let access = &self.cfg.access;
        if rules_need_host(&[
            &access.connect_rules,
            &access.mail_from_rules,
            &access.rcpt_rules,
        ]) {
            self.rdns = self.gw.dns().verified_name(ip).await;
        }
        let subject = Subject {
            ip,
            host: self.rdns.as_deref(),
            address: None,
        };
        if first_match(&self.cfg.access.connect_rules, &subject) == Some(RuleAction::Deny) {
            self.reject_session(conn, RejectReason::Access, "554 5.7.1 Access denied");
            let _ = conn.flush().await;
            return false;
        }
        // The refusing and the scoring zones are asked together: a slow
        // DNS server delays the greeting by one timeouts.dns, not two. Our
        // own clients are not asked about (crate::standing).
        let dns = self.gw.dns();
        let (refusing, scoring) = tokio::join!(
            async {
                if self.cfg.access.dnsbl.is_empty() || !self.standing.is_outside() {
                    return None;
                }
                let (listed, tally) = dns.dnsbl(ip, &self.cfg.access.dnsbl).await;
                self.gw
                    .count_lookups(&tally.event(), tally.answered(), tally.failed);
                listed
            },
            self.gw.scoring_dnsbl(&self.cfg, ip, &self.standing)
        );
        if let Some((zone, _answer)) = refusing {
            let reply =
                format!("554 5.7.1 Service unavailable; client [{ip}] blocked using {zone}");
            self.reject_session(conn, RejectReason::Dnsbl, &reply);
            let _ = conn.flush().await;
            return false;
        }
        self.dnsbl_listed = scoring;
        conn.reply(&format!("220 {} ESMTP Mailward", self.cfg.server.hostname));
        conn.flush().await.is_ok()
    }

    /// Reads and answers commands until the session ends; returns the
    /// connection for the last flush, None when it is already gone.
    async fn command_loop(&mut self, mut conn: Conn) -> Option<Conn> {
        let mut shutdown = self.gw.shutdown.clone();
        let mut stress = self.gw.stress_watch();
        let mut line = Vec::with_capacity(256);
        loop {
            if let Err(e) = conn.flush_if_idle().await {
                self.ending = Some(Ending::of_write(&e));
                return None;
            }
            if *shutdown.borrow() {
                self.ending = Some(Ending::Shutdown);
                conn.reply(SHUTTING_DOWN);
                return Some(conn);
            }
            // The whole command line must arrive within the deadline (not
            // each read: a client trickling one octet a second is cut off
            // too); shorter while the gateway is under stress.
            let now = tokio::time::Instant::now();
            let read = read_by(
                &mut conn,
                &mut line,
                Bound::Discard(MAX_COMMAND_LINE),
                Deadlines {
                    normal: now + self.cfg.timeouts.command.get(),
                    stressed: now + self.cfg.timeouts.stress_command.get(),
                },
                &mut stress,
                &|| self.slot.release_for_stress(&self.cfg),
                Some(&mut shutdown),
            )
            .await;
            match read {
                Read::Shutdown => {
                    self.ending = Some(Ending::Shutdown);
                    conn.reply(SHUTTING_DOWN);
                    return Some(conn);
                }
                Read::TimedOut { stress } => {
                    self.ending = Some(Ending::Timeout);
                    let tx = match &self.state {
                        State::Mail(tx) => Some(&**tx),
                        _ => None,
                    };
                    self.timed_out(&mut conn, TimeoutPhase::Command, stress, tx);
                    return Some(conn);
                }
                Read::Line(Err(_)) | Read::Line(Ok(Line::Eof)) => {
                    self.ending = Some(Ending::Disconnected);
                    return None;
                }
                // (Commands are read with Bound::Discard: never in parts.)
                Read::Line(Ok(Line::TooLong { .. } | Line::Part)) => {
                    if self.refuse(&mut conn, "500 5.5.2 Line too long") {
                        return Some(conn);
                    }
                    continue;
                }
                Read::Line(Ok(Line::Complete)) => {}
            }
            let text = line.strip_suffix(b"\n").unwrap_or(&line);
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            if is_web_request(text) {
                self.end_session(&mut conn, Ending::WebRequest, WEB_REQUEST, true);
                return Some(conn);
            }
            let flow = match command::parse(text) {
                Ok(cmd) => self.dispatch(&mut conn, cmd).await,
                Err(e) => self.malformed(&mut conn, e, text),
            };
            match flow {
                Flow::Continue => {}
                Flow::Close => return Some(conn),
                Flow::StartTls => conn = self.start_tls(conn).await?,
            }
        }
    }

    /// Ends the session for a deadline that passed: counted, and 421.
    fn timed_out(
        &self,
        conn: &mut Conn,
        phase: TimeoutPhase,
        stress: bool,
        tx: Option<&Transaction>,
    ) {
        SessionTimedOut {
            client: self.peer.ip(),
            phase,
            stress,
            transaction: tx.map(|t| (t.from.as_str(), t.rcpts.len())),
        }
        .emit(&self.gw.stats);
        conn.timeout_counted();
        conn.reply(&format!(
            "421 4.4.2 {} Timeout exceeded, closing connection",
            self.cfg.server.hostname
        ));
    }

    /// Sends an error reply to a command that is no transaction (unknown,
    /// out of sequence, not allowed) and counts it against the error
    /// limit; true when the session must close because the client keeps
    /// sending bad commands (that close is what the statistics count).
    fn refuse(&mut self, conn: &mut Conn, reply: &str) -> bool {
        if self.too_many_errors(conn) {
            return true;
        }
        conn.reply(reply);
        false
    }

    /// Counts one more error; past the limit, refuses the session (421,
    /// counted under syntax whatever the last error was) and says so with
    /// true.
    fn too_many_errors(&mut self, conn: &mut Conn) -> bool {
        self.over_error_limit(conn, Ending::TooManyErrors)
    }

    /// As [`Self::too_many_errors`], for the error that `ending` says;
    /// a junk command over the limit is named so on the line
    /// (`cause=junk_commands`: nothing was malformed; walkAU F6). The
    /// count stays under `syntax`, as the statistics define it.
    fn over_error_limit(&mut self, conn: &mut Conn, ending: Ending) -> bool {
        self.errors += 1;
        if self.errors > HARD_ERROR_LIMIT {
            let named = ending == Ending::JunkCommands;
            self.end_session(conn, ending, TOO_MANY_ERRORS, named);
            return true;
        }
        false
    }

    /// Answers a line that is no valid command. A MAIL that would have
    /// opened a transaction is a refused transaction, a RCPT inside one a
    /// refused recipient (both reason syntax); anything else, or either
    /// out of sequence, is a protocol error counted only in the error
    /// limit.
    fn malformed(&mut self, conn: &mut Conn, e: command::ParseError, line: &[u8]) -> Flow {
        if self.too_many_errors(conn) {
            return Flow::Close;
        }
        match (e.verb, &self.state) {
            (Verb::Mail, State::Ready) => {
                let from = command::written_path(line);
                self.reject(conn, RejectReason::Syntax, e.reply, &from);
            }
            (Verb::Rcpt, State::Mail(_)) => {
                let to = command::written_path(line);
                self.reject_rcpt(conn, self.peer.ip(), RejectReason::Syntax, e.reply, &to);
            }
            // Out of sequence first, as a well-formed command would be
            // told (walkBK F4: a bad address before MAIL got its 553, and
            // the client never learnt it had skipped MAIL).
            (Verb::Rcpt, _) => conn.reply(NEED_MAIL),
            (Verb::Mail, State::Start) => conn.reply(SEND_HELO_FIRST),
            (Verb::Mail, State::Mail(_)) => conn.reply(NESTED_MAIL),
            _ => conn.reply(e.reply),
        }
        Flow::Continue
    }

    async fn dispatch(&mut self, conn: &mut Conn, cmd: Command) -> Flow {
        if matches!(
            cmd,
            Command::Noop
                | Command::Rset
                | Command::Vrfy
                | Command::Help
                | Command::Ehlo(_)
                | Command::Helo(_)
        ) {
            self.junk = self.junk.saturating_add(1);
            if self.junk > JUNK_COMMAND_LIMIT && self.over_error_limit(conn, Ending::JunkCommands) {
                return Flow::Close;
            }
        }
        match cmd {
            Command::Ehlo(name) => self.hello(conn, name, true),
            Command::Helo(name) => self.hello(conn, name, false),
            Command::Mail { from, params } => self.mail(conn, from, params).await,
            Command::Rcpt { to, params } => self.rcpt(conn, to, params),
            Command::Data => self.data(conn).await,
            Command::Rset => {
                if !matches!(self.state, State::Start) {
                    self.leave(State::Ready);
                }
                self.forwarded = Forwarded::default();
                conn.reply("250 2.0.0 Ok");
                Flow::Continue
            }
            Command::Xforward(args) => self.xforward(conn, &args),
            Command::Noop => {
                conn.reply("250 2.0.0 Ok");
                Flow::Continue
            }
            Command::Quit => {
                conn.reply("221 2.0.0 Bye");
                Flow::Close
            }
            Command::Vrfy => {
                conn.reply(
                    "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery",
                );
                Flow::Continue
            }
            Command::Help => {
                // Only what this session may use: STARTTLS when it is
                // offered (and not done yet), XFORWARD to whom it is.
                let mut commands =
                    String::from("EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP");
                if self.gw.tls().is_some() && !conn.is_tls() {
                    commands.push_str(" STARTTLS");
                }
                if self.may_forward() {
                    commands.push_str(" XFORWARD");
                }
                conn.reply("214-2.0.0 Mailward SMTP gateway. Commands:");
                conn.reply(&format!("214-2.0.0   {commands}"));
                conn.reply("214 2.0.0 See RFC 5321.");
                Flow::Continue
            }
            Command::StartTls => {
                if self.gw.tls().is_none() || conn.is_tls() {
                    self.flow_refuse(conn, "502 5.5.1 STARTTLS not available")
                } else if !self.esmtp {
                    self.flow_refuse(conn, "503 5.5.1 Send EHLO first")
                } else if matches!(self.state, State::Mail(_)) {
                    self.flow_refuse(
                        conn,
                        "503 5.5.1 STARTTLS not allowed during a mail transaction",
                    )
                } else {
                    conn.reply("220 2.0.0 Ready to start TLS");
                    Flow::StartTls
                }
            }
        }
    }

    /// Refuses the session for input sent behind DATA before the 354:
    /// one line (`cause=pipelining`), counted under `syntax` (a protocol
    /// violation, like the error limit's 421). The open transaction, if
    /// any, ends with the session and counts only if it had refusals.
    fn improper_pipelining(&mut self, conn: &mut Conn) {
        self.end_session(conn, Ending::Pipelining, IMPROPER_PIPELINING, true);
    }

    fn flow_refuse(&mut self, conn: &mut Conn, reply: &str) -> Flow {
        if self.refuse(conn, reply) {
            Flow::Close
        } else {
            Flow::Continue
        }
    }

    /// Upgrades the connection after "220 Ready to start TLS"; None when
    /// the handshake fails (the session ends).
    async fn start_tls(&mut self, mut conn: Conn) -> Option<Conn> {
        conn.flush().await.ok()?;
        let acceptor = self.gw.tls()?;
        let limit = conn.write_limit();
        let (tcp, discarded) = conn.into_plain()?;
        if discarded {
            tracing::warn!(target: "smtp", session = %self.id, client = %self.peer.ip(),
                "Client sent commands after STARTTLS before the handshake; they were discarded.");
        }
        let stress = self.gw.under_stress(&self.cfg);
        // Stress mode only shortens the deadline, as for a command line.
        let timeout = if stress {
            (self.cfg.timeouts.stress_command.get()).min(self.cfg.timeouts.command.get())
        } else {
            self.cfg.timeouts.command.get()
        };
        match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => {
                self.tls_result = Some("tls");
                self.leave(State::Start);
                self.helo = None;
                self.esmtp = false;
                Some(Conn::new(Stream::Tls(Box::new(tls)), limit))
            }
            Ok(Err(e)) => {
                tracing::info!(target: "smtp", session = %self.id, client = %self.peer.ip(),
                    error = %e, "TLS handshake failed.");
                self.tls_result = Some("failed");
                InboundTls { result: "failed" }.emit(&self.gw.stats);
                None
            }
            Err(_) => {
                self.tls_result = Some("failed");
                InboundTls { result: "failed" }.emit(&self.gw.stats);
                SessionTimedOut {
                    client: self.peer.ip(),
                    phase: TimeoutPhase::Tls,
                    stress,
                    transaction: None,
                }
                .emit(&self.gw.stats);
                None
            }
        }
    }

    fn hello(&mut self, conn: &mut Conn, name: String, esmtp: bool) -> Flow {
        let subject = Subject {
            ip: self.peer.ip(),
            host: Some(&name),
            address: None,
        };
        if first_match(&self.cfg.access.helo_rules, &subject) == Some(RuleAction::Deny) {
            // The client can start no transaction without a greeting: the
            // session is refused, and counted once however often it tries
            // again (walkK: each refused greeting counted a session).
            if self.too_many_errors(conn) {
                return Flow::Close;
            }
            let reply = "550 5.7.1 Helo command rejected: access denied";
            // Each refused name is logged, the refusal counted once
            // (walkBT F1: a second refused greeting left no line, and none
            // named the name the rules refused).
            tracing::info!(target: "smtp", session = %self.id, client = %self.peer.ip(),
                helo = %name, counted = !self.helo_refused,
                "HELO/EHLO name refused by access.helo_rules; the client may greet again.");
            if self.helo_refused {
                conn.reply(reply);
            } else {
                self.helo_refused = true;
                self.reject_session(conn, RejectReason::Access, reply);
            }
            return Flow::Continue;
        }
        let host = &self.cfg.server.hostname;
        if esmtp {
            let mut lines = vec![
                format!("{host} Hello {name} [{}]", self.peer.ip()),
                "PIPELINING".to_string(),
                format!("SIZE {}", self.cfg.limits.max_message_size.0),
                "8BITMIME".to_string(),
                "ENHANCEDSTATUSCODES".to_string(),
            ];
            if self.gw.tls().is_some() && !conn.is_tls() {
                lines.push("STARTTLS".to_string());
            }
            lines.push("DSN".to_string());
            // RFC 6531: UTF-8 addresses and headers, for transactions that
            // ask with MAIL FROM:<...> SMTPUTF8.
            lines.push("SMTPUTF8".to_string());
            if self.may_forward() {
                lines.push(xforward::ANNOUNCED.to_string());
            }
            let last = lines.len() - 1;
            for (i, l) in lines.iter().enumerate() {
                let sep = if i == last { ' ' } else { '-' };
                conn.reply(&format!("250{sep}{l}"));
            }
        } else {
            conn.reply(&format!("250 {host}"));
        }
        self.helo = Some(name);
        self.esmtp = esmtp;
        self.leave(State::Ready);
        self.forwarded = Forwarded::default();
        Flow::Continue
    }

    /// Only an MTA of `network.xforward_hosts` may say who its client
    /// was: anyone else could make a spammer's mail look like a partner's,
    /// and not every client that may relay is such an MTA (walkAU F7).
    fn may_forward(&self) -> bool {
        self.cfg.network.may_xforward(self.peer.ip())
    }

    fn xforward(&mut self, conn: &mut Conn, args: &str) -> Flow {
        if !self.may_forward() {
            // Not a transaction (the next MAIL is the client's own): an
            // error like an unknown command, counted only in the limit.
            return self.flow_refuse(conn, "550 5.7.0 Error: insufficient authorization");
        }
        match self.state {
            State::Start => return self.flow_refuse(conn, "503 5.5.1 Error: send HELO/EHLO first"),
            State::Mail(_) => {
                return self.flow_refuse(conn, "503 5.5.1 Error: MAIL transaction in progress")
            }
            State::Ready => {}
        }
        match self.forwarded.apply(args) {
            Ok(()) => {
                conn.reply("250 2.0.0 Ok");
                Flow::Continue
            }
            Err(e) => self.flow_refuse(conn, e.reply),
        }
    }

    /// The client of a transaction starting now: the forwarded one where
    /// XFORWARD said (attribute by attribute), else the peer. A forwarded
    /// address is looked up in the scoring DNSBL zones here (the peer's
    /// were at the greeting).
    async fn transaction_client(&mut self) -> Client {
        let f = std::mem::take(&mut self.forwarded);
        let forwarded_by = (!f.is_empty()).then(|| self.peer.ip());
        let (ip, standing, dnsbl_listed, name) = match f.addr {
            Some(ip) if ip != self.peer.ip() => {
                let standing = Standing::of(&self.cfg, ip, None);
                let listed = self.gw.scoring_dnsbl(&self.cfg, ip, &standing).await;
                (ip, standing, listed, f.name)
            }
            _ => (
                self.peer.ip(),
                self.standing.clone(),
                self.dnsbl_listed.clone(),
                f.name.or_else(|| self.rdns.clone()),
            ),
        };
        if let Some(by) = forwarded_by {
            tracing::debug!(target: "smtp", session = %self.id, client = %ip, forwarded_by = %by,
                upstream_id = f.ident.as_deref().unwrap_or("-"), "Client forwarded (XFORWARD).");
        }
        // A forwarded client's HELO that the MTA did not send is unknown,
        // not the MTA's own greeting (walkY 6: the Received line, the
        // outbound XFORWARD and SPF's HELO identity named the MTA), as
        // Postfix's FORWARD_HELO has it.
        let helo = match f.addr {
            Some(_) => f.helo,
            None => f.helo.or_else(|| self.helo.clone()),
        };
        Client {
            ip,
            standing,
            helo: helo.unwrap_or_default(),
            name,
            proto: f.proto,
            dnsbl_listed,
            forwarded_by,
            upstream_id: f.ident,
        }
    }

    async fn mail(&mut self, conn: &mut Conn, from: String, params: MailParams) -> Flow {
        match self.state {
            State::Start => return self.flow_refuse(conn, SEND_HELO_FIRST),
            State::Mail(_) => return self.flow_refuse(conn, NESTED_MAIL),
            State::Ready => {}
        }
        // RFC 6531 3.4: SMTPUTF8 only where the server offered it, in its
        // EHLO reply; a session greeted with HELO was offered no extension.
        // Refused as a parameter not recognised (RFC 5321 4.1.1.11: 555),
        // as Postfix refuses one it did not offer. Unlike SIZE or BODY,
        // which only describe the message, it would make us take UTF-8
        // addresses and promise them to the next hop: the client must
        // learn now that this session cannot carry them.
        if params.smtputf8 && !self.esmtp {
            return self.refuse_mail(conn, RejectReason::Syntax, command::BAD_PARAM.reply, &from);
        }
        let limits = &self.cfg.limits;
        if self.messages >= limits.max_messages_per_session {
            self.reject(
                conn,
                RejectReason::Limit,
                "421 4.7.0 Too many messages in this session; continue in a new session",
                &from,
            );
            return Flow::Close;
        }
        let declared = params.size.unwrap_or(0);
        if declared > limits.max_message_size.0 {
            return self.refuse_mail(
                conn,
                RejectReason::Size,
                "552 5.3.4 Message size exceeds fixed limit",
                &from,
            );
        }
        if self.session_bytes.saturating_add(declared) > limits.max_session_size.0 {
            self.reject(
                conn,
                RejectReason::Limit,
                "421 4.7.0 Session size limit reached; continue in a new session",
                &from,
            );
            return Flow::Close;
        }
        let mut room = self.gw.spool.reservation();
        match self.gw.spool.reserve(&mut room, declared) {
            Ok(found) => super::space::taken(&found, limits),
            Err(NoRoom::Short(found)) => {
                super::space::refused(&found, super::space::When::Mail, limits);
                let named = RefusedTransaction {
                    upstream_id: self.forwarded.ident.as_deref(),
                    from: &from,
                    ..Default::default()
                };
                self.refuse_for_space(conn, &named);
                return Flow::Continue;
            }
            Err(NoRoom::Unknown(e)) => {
                tracing::warn!(target: "smtp", error = %e, "Cannot read free spool space.");
            }
        }
        let subject = Subject {
            ip: self.peer.ip(),
            host: self.rdns.as_deref(),
            address: Some(&from),
        };
        if first_match(&self.cfg.access.mail_from_rules, &subject) == Some(RuleAction::Deny) {
            return self.refuse_mail(
                conn,
                RejectReason::Access,
                "550 5.7.1 Sender address rejected: access denied",
                &from,
            );
        }
        let client = self.transaction_client().await;
        // The null sender's SPF identity is the HELO name: none known (a
        // forwarded client whose HELO the MTA did not give), nothing to
        // check.
        let spf = if from.is_empty() && client.helo.is_empty() {
            None
        } else {
            (self.gw)
                .spf(&self.cfg, client.ip, &client.standing, &client.helo, &from)
                .await
        };
        // After the queue (network.after_queue), a refusal would come back
        // to the sender as a bounce: the fail stays a spam test only; so
        // it does for a client whitelisted by address (a forwarder).
        let refusal = crate::auth::spf_refusal(self.cfg.spam.spf, spf.as_ref(), client.ip)
            .filter(|_| !self.cfg.network.after_queue)
            .filter(|_| !crate::check::spam::whitelisted_client(&self.cfg, client.ip));
        if let Some(reply) = refusal {
            if self.too_many_errors(conn) {
                return Flow::Close;
            }
            let named = crate::events::RefusedTransaction {
                upstream_id: client.upstream_id.as_deref(),
                from: &from,
                ..Default::default()
            };
            self.reject_for(conn, client.ip, RejectReason::Policy, &reply, Some(&named));
            return Flow::Continue;
        }
        self.state = State::Mail(Box::new(Transaction {
            from,
            params,
            rcpts: Vec::new(),
            refusals: Refusals::None,
            spf,
            client,
            room,
            over_limit: 0,
        }));
        conn.reply("250 2.1.0 Ok");
        Flow::Continue
    }

    /// `452 4.3.1` for lack of spool space, at MAIL or at the end of DATA.
    /// 452 4.3.1 for a transaction the spool has no room for; its line
    /// names the sender (walkBK F7: `grep from=SENDER` did not find it).
    fn refuse_for_space(&self, conn: &mut Conn, tx: &RefusedTransaction<'_>) {
        // Delivered mail may be pinned in a segment by a waiting message:
        // the writer compacts now rather than at its next tick, so that
        // the client's retry finds the space.
        self.gw.spool.reclaim_soon();
        let reply = "452 4.3.1 Insufficient system storage";
        // Named as `reject` names it: the forwarded client, if any.
        MessageRejected {
            reason: RejectReason::Tempfail,
            client: self.forwarded.addr.unwrap_or_else(|| self.peer.ip()),
            reply,
            refused: Refused::Transaction,
            cause: Some("spool_space"),
        }
        .emit_for(&self.gw.stats, tx);
        conn.reply(reply);
    }

    fn rcpt(&mut self, conn: &mut Conn, to: String, params: command::RcptParams) -> Flow {
        let State::Mail(tx) = &self.state else {
            return self.flow_refuse(conn, NEED_MAIL);
        };
        // RFC 6531 3.4: a UTF-8 address only in a transaction that
        // declared SMTPUTF8 (the parser took its syntax). As written: a
        // U-label domain is canonical as its A-label by now, and
        // `bob@bücher.example` still needs the parameter.
        if (params.written_utf8 || !to.is_ascii()) && !tx.params.smtputf8 {
            return self.refuse_rcpt(
                conn,
                self.peer.ip(),
                RejectReason::Syntax,
                command::NEEDS_SMTPUTF8,
                &to,
            );
        }
        // An ORCPT with UTF-8 as it is (RFC 6533 utf-8-addr-unitext) is
        // for SMTPUTF8 only; without, it is a malformed parameter.
        if params.orcpt.as_deref().is_some_and(|o| !o.is_ascii()) && !tx.params.smtputf8 {
            return self.refuse_rcpt(
                conn,
                self.peer.ip(),
                RejectReason::Syntax,
                command::BAD_PARAM.reply,
                &to,
            );
        }
        if tx.rcpts.len() >= self.cfg.limits.max_rcpts_per_message as usize {
            // Not counted toward the error limit: an MTA with more
            // recipients than we take in one transaction sends the rest
            // in the next one (Postfix allows such an overshoot too), up
            // to RCPT_OVERSHOOT_LIMIT of them.
            let over = tx.over_limit.saturating_add(1);
            if over > RCPT_OVERSHOOT_LIMIT && self.too_many_errors(conn) {
                return Flow::Close;
            }
            let reply = "452 4.5.3 Too many recipients";
            if over == 1 {
                self.reject_rcpt(conn, self.peer.ip(), RejectReason::Limit, reply, &to);
            } else {
                // Counted one by one as every refused recipient is, but
                // logged once for the transaction (Transaction::log_over_limit).
                self.gw
                    .stats
                    .record(&mailward_metrics::event::Event::RecipientRejected {
                        reason: RejectReason::Limit,
                    });
                conn.reply(reply);
            }
            if let State::Mail(tx) = &mut self.state {
                tx.over_limit = over;
            }
            return Flow::Continue;
        }
        // "Postmaster" without a domain must always be accepted (RFC 5321
        // 4.5.1), from anyone, and so are postmaster and MAILER-DAEMON at
        // our own name (the sender of our DSNs, whom people reply to): all
        // go to server.postmaster.
        let ours = to.eq_ignore_ascii_case("postmaster") || self.is_our_mailbox(&to);
        let to = if ours {
            self.cfg.server.postmaster.clone()
        } else {
            to
        };
        let ip = self.peer.ip();
        let subject = Subject {
            ip,
            host: self.rdns.as_deref(),
            address: Some(&to),
        };
        // Postmaster is exempt from the recipient rules too (walkK: a
        // `deny any` after the site's own domains refused it).
        if !ours && first_match(&self.cfg.access.rcpt_rules, &subject) == Some(RuleAction::Deny) {
            return self.refuse_rcpt(
                conn,
                ip,
                RejectReason::Access,
                "550 5.7.1 Recipient address rejected: access denied",
                &to,
            );
        }
        // A U-label domain is protected under its A-label, the form the
        // configuration and the DNS know (`bücher.example` is
        // `xn--bcher-kva.example`).
        let domain = crate::envelope::domain_of(&to);
        let protected = self.cfg.network.is_protected(&domain)
            || (!domain.is_ascii()
                && crate::text::a_label_domain(&domain)
                    .is_some_and(|a| self.cfg.network.is_protected(&a)));
        let relay_client = self.standing.may_relay();
        if !protected && !relay_client && !ours {
            let reply = format!("554 5.7.1 <{to}>: Relay access denied");
            return self.refuse_rcpt(conn, ip, RejectReason::Relay, &reply, &to);
        }
        // "user%other@protected", "other!user@protected" and
        // "\"user@other\"@protected" ask the next hop to route further; one
        // that honours them would make us an open relay. Only clients that
        // may relay anyway may use them (Postfix: allow_untrusted_routing).
        if !relay_client && crate::envelope::has_sender_routing(&to) {
            let reply = format!("550 5.7.1 <{to}>: Sender-specified routing is not allowed");
            return self.refuse_rcpt(conn, ip, RejectReason::Relay, &reply, &to);
        }
        if let Some((client, reply)) = self.refused_as_blacklisted(&to) {
            return self.refuse_rcpt(conn, client, RejectReason::Policy, &reply, &to);
        }
        let State::Mail(tx) = &mut self.state else {
            return Flow::Continue;
        };
        if !tx.rcpts.iter().any(|r| r.address.eq_ignore_ascii_case(&to)) {
            let mut r = Recipient::new(to);
            r.notify = params.notify;
            r.orcpt = params.orcpt;
            tx.rcpts.push(r);
        }
        conn.reply("250 2.1.5 Ok");
        Flow::Continue
    }

    /// `postmaster@` or `mailer-daemon@` our host name (any case).
    fn is_our_mailbox(&self, to: &str) -> bool {
        let Some((local, domain)) = to.rsplit_once('@') else {
            return false;
        };
        domain.eq_ignore_ascii_case(&self.cfg.server.hostname)
            && (local.eq_ignore_ascii_case("postmaster")
                || local.eq_ignore_ascii_case("mailer-daemon"))
    }

    /// The earliest point a `[spam] blacklist` can decide: when the sender
    /// or the client is listed, the message will be `as/blacklisted` for
    /// every recipient (nothing overrides a blacklisting), so a recipient
    /// whose group refuses that status (`reject`, with `check_spam`) is
    /// refused now instead of after the whole message came in. Never
    /// after the queue (network.after_queue): the status becomes a block
    /// once the message is in. Returns the client refused and the reply.
    fn refused_as_blacklisted(&self, to: &str) -> Option<(std::net::IpAddr, String)> {
        let State::Mail(tx) = &self.state else {
            return None;
        };
        if self.cfg.network.after_queue {
            return None;
        }
        let ip = tx.client.ip;
        if !crate::check::spam::blacklisted(&self.cfg, ip, &tx.from) {
            return None;
        }
        let probe = Envelope::new(
            crate::envelope::QueueId(String::new()),
            ip,
            tx.client.helo.clone(),
            tx.from.clone(),
        );
        let group = crate::policy::group_of(&self.cfg, &probe, to).unwrap_or("");
        let policy = crate::policy::policy_of(&self.cfg, group);
        (policy.check_spam && policy.reject.iter().any(|s| s.covers("as/blacklisted"))).then(|| {
            (
                ip,
                format!("550 5.7.1 <{to}>: Message refused: the sender or client is blacklisted"),
            )
        })
    }

    async fn data(&mut self, conn: &mut Conn) -> Flow {
        // RFC 2920 3.1: DATA ends a pipelined group; the client must wait
        // for 354 before it sends the message. One that sends on makes its
        // message read as commands when DATA is refused (walkAU F3: a body
        // became a second transaction), and is how pipelined-body
        // injection works. A client outside relay_networks doing so is
        // cut off, as Postfix 3.9's smtpd_forbid_unauth_pipelining does;
        // our own MTAs (relay_networks) are trusted to pipeline correctly.
        // The connection's own client counts here, not one XFORWARD named.
        let peer_outside = Standing::of(&self.cfg, self.peer.ip(), None).is_outside();
        if peer_outside && conn.has_buffered_input() {
            self.improper_pipelining(conn);
            return Flow::Close;
        }
        match &mut self.state {
            State::Mail(tx) if !tx.rcpts.is_empty() => {}
            State::Mail(tx) => {
                // Every recipient given was refused: the transaction ends
                // here for the statistics (counted once, even if the client
                // goes on with it). No RCPT at all is only out of sequence.
                let reply = "554 5.5.1 No valid recipients";
                if let Some(refused) = tx.refusals.settle() {
                    refused.emit(&self.gw.stats, &tx.named(), Some(reply));
                }
                return self.flow_refuse(conn, reply);
            }
            _ => return self.flow_refuse(conn, NEED_MAIL),
        }
        let State::Mail(mut tx) = std::mem::replace(&mut self.state, State::Ready) else {
            return Flow::Continue;
        };
        tx.log_over_limit(self.peer.ip(), self.id);
        // From here the transaction ends in this function. Refused with a
        // reply, it counts with that reply's reason; accepted, not at all;
        // cut short (connection lost, timed out), it is settled here.
        let mut refusals = std::mem::replace(&mut tx.refusals, Refusals::Counted);
        let (from, upstream_id) = (tx.from.clone(), tx.client.upstream_id.clone());
        let rcpts = tx.rcpts.len();
        // Cut off in DATA: the line says by what (walkAU F6).
        let hostname = self.cfg.server.hostname.clone();
        let mut settle = |stats: &mailward_metrics::Stats, ending: Ending| {
            if let Some(refused) = refusals.settle() {
                let named = RefusedTransaction {
                    queue_id: None,
                    upstream_id: upstream_id.as_deref(),
                    from: &from,
                    rcpts,
                };
                let reply = ending.reply(&hostname);
                refused.emit_ended(stats, &named, Some(&reply), Some(ending.cause()));
            }
        };
        conn.reply("354 End data with <CR><LF>.<CR><LF>");
        if let Err(e) = conn.flush().await {
            settle(&self.gw.stats, Ending::of_write(&e));
            return Flow::Close;
        }
        let limits = &self.cfg.limits;
        let mut asm = Assembler::with_long_lines(limits.max_message_size.0, limits.long_lines);
        // A line too long is refused (read and thrown away) or split (read
        // in parts): either way no more than MAX_DATA_LINE octets of it are
        // held at a time.
        let bound = match limits.long_lines {
            LongLines::Refuse => Bound::Discard(MAX_DATA_LINE),
            LongLines::Split => Bound::Cut(MAX_DATA_LINE),
        };
        let mut line = Vec::with_capacity(MAX_DATA_LINE);
        let started = tokio::time::Instant::now();
        let mut stress = self.gw.stress_watch();
        // Refused for spool space while the data came in: the bytes are no
        // longer kept (`dropped` counts those before), and the end of DATA
        // gets 452.
        let mut short = Short::No;
        let mut dropped = 0u64;
        let mut last_line = started;
        loop {
            let received = dropped + asm.received();
            // One deadline for the whole DATA phase: timeouts.data, plus the
            // time the octets received so far may take at min_data_rate.
            // A client that trickles a line a second no longer holds its
            // slot for ever. And each line must come within
            // timeouts.command of the one before (of the 354): the credit
            // for octets already received is not for idling (walkAH 5: 20
            // MiB sent at once, then silence, held the slot for 12 hours),
            // as Postfix never extends the deadline beyond smtpd_timeout.
            let idle = |timeout: Duration| last_line + timeout;
            let deadlines = Deadlines {
                normal: (started + data_allowance(&self.cfg, received, false))
                    .min(idle(self.cfg.timeouts.command.get())),
                stressed: (started + data_allowance(&self.cfg, received, true))
                    .min(idle(self.cfg.timeouts.stress_command.get())),
            };
            let release = || self.slot.release_for_stress(&self.cfg);
            match read_by(
                conn,
                &mut line,
                bound,
                deadlines,
                &mut stress,
                &release,
                None,
            )
            .await
            {
                Read::TimedOut { stress } => {
                    self.timed_out(conn, TimeoutPhase::Data, stress, Some(&tx));
                    settle(&self.gw.stats, Ending::Timeout);
                    return Flow::Close;
                }
                Read::Shutdown => {
                    settle(&self.gw.stats, Ending::Shutdown);
                    return Flow::Close;
                }
                Read::Line(Err(_)) | Read::Line(Ok(Line::Eof)) => {
                    // Postfix's "lost connection after DATA": nothing else
                    // at the default level says that a message with its
                    // recipients accepted never came (walkBK F6).
                    tracing::info!(target: "smtp", session = %self.id, client = %tx.client.ip,
                        from = %crate::events::sender(&tx.from), rcpts = tx.rcpts.len(),
                        received = dropped + asm.received(),
                        "Connection lost in DATA; the message was not accepted.");
                    settle(&self.gw.stats, Ending::Disconnected);
                    return Flow::Close;
                }
                Read::Line(Ok(Line::TooLong { crlf })) => {
                    last_line = tokio::time::Instant::now();
                    asm.too_long(crlf);
                    short.line_ended(crlf, &mut asm, &mut dropped);
                }
                Read::Line(Ok(Line::Part)) => {
                    last_line = tokio::time::Instant::now();
                    asm.part(&line);
                }
                Read::Line(Ok(Line::Complete)) => {
                    last_line = tokio::time::Instant::now();
                    if asm.line(&line) {
                        break;
                    }
                    short.line_ended(line.ends_with(b"\r\n"), &mut asm, &mut dropped);
                }
            }
            // The bytes are on their way to the spool: room for them is
            // taken as they come (a chunk at a time), so that messages
            // without SIZE, together, cannot write past the floor.
            // (Not past max_message_size: that message is refused with 552
            // and not kept either.)
            let wanted = asm.received().min(limits.max_message_size.0);
            if short == Short::No && wanted > tx.room.bytes() {
                let more = (wanted - tx.room.bytes()).max(ROOM_CHUNK);
                if let Err(NoRoom::Short(found)) = self.gw.spool.reserve(&mut tx.room, more) {
                    super::space::refused(&found, super::space::When::Data, limits);
                    tx.room.release();
                    short = Short::Pending;
                }
            }
        }
        let msg = asm.finish();
        // Every message sent counts against the session's limits, refused
        // or not: the octets were read either way, and a session sending
        // refused messages (too big, infected, a long line) was otherwise
        // bounded by nothing but each DATA's deadline (walkBK F9).
        self.messages = self.messages.saturating_add(1);
        self.session_bytes = self.session_bytes.saturating_add(msg.size);
        if short != Short::No && dropped + msg.size <= limits.max_message_size.0 {
            self.refuse_for_space(conn, &tx.named());
            return Flow::Continue;
        }
        if msg.oversize {
            self.reject_for(
                conn,
                tx.client.ip,
                RejectReason::Size,
                "552 5.3.4 Message size exceeds fixed limit",
                Some(&tx.named()),
            );
            return Flow::Continue;
        }
        if msg.header_too_large {
            // walkAU F9: a header of a million tiny fields costs ~25 times
            // its size to check; refused before anything parses it.
            self.reject_for(
                conn,
                tx.client.ip,
                RejectReason::Size,
                HEADER_TOO_LARGE_REPLY,
                Some(&tx.named()),
            );
            return Flow::Continue;
        }
        if msg.long_line {
            self.reject_for(
                conn,
                tx.client.ip,
                RejectReason::Syntax,
                LONG_LINE_REPLY,
                Some(&tx.named()),
            );
            return Flow::Continue;
        }
        if msg.hops >= limits.max_hops {
            self.reject_for(
                conn,
                tx.client.ip,
                RejectReason::Limit,
                "554 5.4.6 Too many hops (mail loop?)",
                Some(&tx.named()),
            );
            return Flow::Continue;
        }
        if self.session_bytes > limits.max_session_size.0 {
            self.reject_for(
                conn,
                tx.client.ip,
                RejectReason::Limit,
                "421 4.7.0 Session size limit reached; continue in a new session",
                Some(&tx.named()),
            );
            return Flow::Close;
        }
        self.accept(conn, *tx, msg).await
    }

    async fn accept(
        &mut self,
        conn: &mut Conn,
        tx: Transaction,
        msg: super::data::Assembled,
    ) -> Flow {
        let id = QueueId::generate();
        let received = self.received_header(&id, conn.tls_summary(), &tx);
        let mut bytes = Vec::with_capacity(received.len() + msg.body.len());
        bytes.extend_from_slice(received.as_bytes());
        bytes.extend_from_slice(&msg.body);
        let bytes = std::sync::Arc::new(bytes);
        let mut envelope = Envelope::new(id.clone(), tx.client.ip, tx.client.helo, tx.from);
        envelope.ret = tx.params.ret;
        envelope.envid = tx.params.envid;
        // The content says whether it is 8-bit, not BODY=: many clients
        // declare 8BITMIME for every message, and a declared but 7-bit one
        // may go to a hop without 8BITMIME (walkK: it was bounced 5.6.3).
        envelope.eight_bit = msg.eight_bit;
        envelope.smtputf8 = tx.params.smtputf8;
        envelope.size = bytes.len() as u64;
        envelope.rcpts = tx.rcpts;
        envelope.tls = conn.is_tls();
        envelope.dnsbl_listed = tx.client.dnsbl_listed;
        envelope.forwarded_by = tx.client.forwarded_by;
        envelope.upstream_id = tx.client.upstream_id;
        envelope.auth.spf = tx.spf;
        let written = self.gw.spool.accept(&envelope, bytes.clone()).await;
        // Written (its room is now used space) or refused: either way the
        // room held for it goes back.
        drop(tx.room);
        if written.is_ok() && msg.split() > 0 {
            // Once per message (limits.long_lines = "split"): what the
            // next hop gets is no longer byte for byte what was sent.
            tracing::info!(target: "smtp", session = %self.id, queue_id = %id, lines = msg.split(),
                "Split lines longer than 998 octets.");
        }
        if let Err(e) = written {
            tracing::error!(target: "smtp", session = %self.id, queue_id = %id, error = %e,
                "Cannot spool the message.");
            self.reject_for(
                conn,
                envelope.client_ip,
                RejectReason::Tempfail,
                "451 4.3.0 Local error writing the message, try again later",
                Some(&crate::events::RefusedTransaction {
                    queue_id: Some(&id),
                    upstream_id: envelope.upstream_id.as_deref(),
                    from: &envelope.mail_from,
                    rcpts: envelope.rcpts.len(),
                }),
            );
            return Flow::Continue;
        }
        // The message is safe on disk. Its checks and plans are awaited
        // here, up to scan_in_session, so that a refusal can be given in
        // the session; checks that take longer are carried out after the
        // 250, where a refusal becomes a block. After the queue
        // (network.after_queue) a refusal is a block from the start: the
        // MTA that queued the message would bounce it to its sender.
        use crate::policy::execute::{self, Answer};
        let client = envelope.client_ip;
        // The envelope goes to the checks: what the refusal's log line
        // names is kept (a few strings, for a refusal only).
        let kept = (
            envelope.upstream_id.clone(),
            envelope.mail_from.clone(),
            envelope.rcpts.len(),
        );
        let may_refuse = !self.cfg.network.after_queue;
        let answer = execute::in_session(&self.gw, envelope, bytes, may_refuse).await;
        let named = crate::events::RefusedTransaction {
            queue_id: Some(&id),
            upstream_id: kept.0.as_deref(),
            from: &kept.1,
            rcpts: kept.2,
        };
        match answer {
            Answer::Accepted => {}
            Answer::Refused(reply) => {
                self.reject_for(conn, client, RejectReason::Policy, &reply, Some(&named));
                return Flow::Continue;
            }
            Answer::TempFail(reply) => {
                self.reject_for(conn, client, RejectReason::Tempfail, &reply, Some(&named));
                return Flow::Continue;
            }
        }
        self.accepted = self.accepted.saturating_add(1);
        self.junk = 0;
        conn.reply(&format!("250 2.0.0 Ok: queued as {id}"));
        Flow::Continue
    }

    /// The Received line. With XFORWARD it names the original client, so
    /// that the trace shows where the message came from (Postfix's own
    /// re-injection smtpd names the connection instead: its line and ours
    /// together show both).
    fn received_header(&self, id: &QueueId, tls: Option<String>, tx: &Transaction) -> String {
        let esmtp = match tx.client.proto.as_deref() {
            Some(p) => p.eq_ignore_ascii_case("ESMTP"),
            None => self.esmtp,
        };
        // RFC 6531 4.3: UTF8SMTP(S) for a transaction with SMTPUTF8.
        let proto = match (tx.params.smtputf8, esmtp, tls.is_some()) {
            (true, _, true) => "UTF8SMTPS",
            (true, _, false) => "UTF8SMTP",
            (false, true, true) => "ESMTPS",
            (false, true, false) => "ESMTP",
            (false, false, true) => "SMTPS",
            (false, false, false) => "SMTP",
        };
        let helo = match tx.client.helo.as_str() {
            "" => "unknown",
            h => h,
        };
        let rdns = tx.client.name.as_deref().unwrap_or("unknown");
        let for_clause = match tx.rcpts.as_slice() {
            // A U-label domain as its A-label: our own header must not
            // make a message whose envelope goes as ASCII need SMTPUTF8 at
            // a next hop without it (a UTF-8 local part needs it anyway).
            [only] => format!(
                "\r\n\tfor <{}>",
                crate::text::a_label_mailbox(&only.address)
            ),
            _ => String::new(),
        };
        let using = tls
            .map(|t| format!("\r\n\t(using {t})"))
            .unwrap_or_default();
        format!(
            "Received: from {helo} ({rdns} [{}]){using}\r\n\tby {} (Mailward) with {proto} id {id}{for_clause};\r\n\t{}\r\n",
            address_literal(tx.client.ip),
            self.cfg.server.hostname,
            chrono::Utc::now().to_rfc2822(),
        )
    }
}

/// Spool room a message takes at a time as its data comes in (one check
/// of the free space per chunk).
const ROOM_CHUNK: u64 = 64 * 1024;

/// Whether DATA was refused for spool space while it came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Short {
    No,
    /// Refused: the bytes are dropped from the next line on that ends in
    /// CRLF (the assembler starts again there, and only there may "."
    /// end the data).
    Pending,
    /// Refused and the bytes no longer kept.
    Dropping,
}

impl Short {
    /// After a line: once refused and at a line end where the data may
    /// end, swaps the assembler for one that keeps nothing (its size
    /// limit is 0), counting what the old one had in `dropped`.
    fn line_ended(&mut self, crlf: bool, asm: &mut Assembler, dropped: &mut u64) {
        if *self == Short::Pending && crlf {
            *dropped += asm.received();
            *asm = Assembler::with_long_lines(0, asm.long_lines());
            *self = Short::Dropping;
        }
    }
}

/// An address as RFC 5321 4.1.3 writes it in brackets: IPv6 with its
/// `IPv6:` tag (as Postfix writes it), IPv4 bare.
fn address_literal(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => format!("IPv6:{v6}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn web_requests_are_told_from_smtp_commands() {
        for line in [
            "GET / HTTP/1.1",
            "post /x HTTP/1.0",
            "CONNECT host:25 HTTP/1.1",
            "HEAD / HTTP/1.1",
            "PUT /x HTTP/1.1",
        ] {
            assert!(super::is_web_request(line.as_bytes()), "{line}");
        }
        for line in ["GETX", "GET", "MAIL FROM:<a@b>", "POSTMASTER", "EHLO get"] {
            assert!(!super::is_web_request(line.as_bytes()), "{line}");
        }
    }

    use super::{Refusals, RejectReason};

    fn ip() -> std::net::IpAddr {
        std::net::IpAddr::from([192, 0, 2, 7])
    }

    #[test]
    fn a_transaction_without_refused_recipients_is_never_counted() {
        let mut r = Refusals::None;
        assert!(r.settle().is_none());
        assert!(r.settle().is_none());
    }

    #[test]
    fn refused_recipients_count_their_transaction_once_with_the_first_reason() {
        let mut r = Refusals::None;
        r.recipient(RejectReason::Access, ip(), "550 5.7.1 a");
        r.recipient(RejectReason::Relay, ip(), "554 5.7.1 b");
        r.recipient(RejectReason::Syntax, ip(), "501 5.1.3 c");
        let counted = r.settle().map(|t| (t.reason, t.reply));
        assert_eq!(
            counted,
            Some((RejectReason::Access, "550 5.7.1 a".to_string()))
        );
        // DATA answered "no valid recipients", then RSET, or more refused
        // recipients and QUIT: the same transaction, not counted again.
        r.recipient(RejectReason::Limit, ip(), "452 4.5.3 d");
        assert!(r.settle().is_none());
        assert!(r.settle().is_none());
    }

    #[test]
    fn address_rules_match_an_idn_address_in_either_form() {
        // One form on each side, so plain first_match does: the command
        // keeps an address with its domain as A-labels (text.rs), and a
        // rule written with U-labels is turned into them when the
        // configuration is loaded (config/validate.rs). `deny address
        // *@xn--bcher-kva.example` refuses `user@bücher.example` (else
        // SMTPUTF8 would be a way round it), and `allow address
        // *@bücher.example` takes it.
        use crate::config::{first_match, Rule, RuleAction, Subject};
        let rules = |texts: &[&str]| -> Vec<Rule> {
            let list = texts
                .iter()
                .map(|t| format!("{t:?}"))
                .collect::<Vec<_>>()
                .join(", ");
            crate::config::parse(&format!("[access]\nrcpt_rules = [{list}]\n"), "t.toml")
                .map(|c| c.access.rcpt_rules)
                .unwrap_or_default()
        };
        let verdict = |rules: &[Rule], written: &str| {
            let stored = crate::text::a_label_mailbox(written);
            first_match(
                rules,
                &Subject {
                    ip: ip(),
                    host: None,
                    address: Some(&stored),
                },
            )
        };
        let deny_a_label = rules(&["deny address *@xn--bcher-kva.example", "allow any"]);
        assert_eq!(deny_a_label.len(), 2);
        assert_eq!(
            verdict(&deny_a_label, "j\u{fc}rgen@b\u{fc}cher.example"),
            Some(RuleAction::Deny)
        );
        assert_eq!(
            verdict(&deny_a_label, "user@example.com"),
            Some(RuleAction::Allow)
        );
        let allow_u_label = rules(&["allow address *@b\u{fc}cher.example", "deny any"]);
        assert_eq!(allow_u_label.len(), 2);
        assert_eq!(
            verdict(&allow_u_label, "user@b\u{fc}cher.example"),
            Some(RuleAction::Allow)
        );
        assert_eq!(
            verdict(&allow_u_label, "user@example.com"),
            Some(RuleAction::Deny)
        );
    }

    #[test]
    fn received_lines_write_ipv6_clients_with_their_tag() {
        assert_eq!(super::address_literal("::1".parse().unwrap()), "IPv6:::1");
        assert_eq!(
            super::address_literal("2001:db8::25".parse().unwrap()),
            "IPv6:2001:db8::25"
        );
        assert_eq!(
            super::address_literal("192.0.2.7".parse().unwrap()),
            "192.0.2.7"
        );
    }
}

#[cfg(test)]
mod read_tests {
    use super::{read_by, Deadlines, Read};
    use crate::smtp::stream::{Bound, Conn, Line, Stream, WriteLimit};
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;

    /// walkAU F2: a line that is all there when the session looks again
    /// after a stall is served, even though its deadline has passed. The
    /// old unbiased select picked the timer half the time, so sixteen
    /// rounds tell the two apart.
    #[tokio::test]
    async fn a_line_already_received_wins_over_a_passed_deadline() {
        let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => panic!("bind: {e}"),
        };
        let addr = match listener.local_addr() {
            Ok(a) => a,
            Err(e) => panic!("local_addr: {e}"),
        };
        let (client, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        let (mut client, server) = match (client, accepted) {
            (Ok(c), Ok((s, _))) => (c, s),
            (c, s) => panic!("connect: {:?} / accept: {:?}", c.err(), s.err()),
        };
        let (_stress_tx, stress_rx) = tokio::sync::watch::channel(false);
        let mut stress = stress_rx.clone();
        let limit = WriteLimit {
            client: addr.ip(),
            stats: Arc::new(mailward_metrics::Stats::new(&[], 10, None, "test")),
            normal: Duration::from_secs(5),
            stressed: Duration::from_secs(5),
            stress: stress_rx,
        };
        let mut conn = Conn::new(Stream::Plain(server), limit);
        let mut line = Vec::new();
        for round in 0..16 {
            let sent = format!("NOOP {round}\r\n");
            if let Err(e) = client.write_all(sent.as_bytes()).await {
                panic!("write: {e}");
            }
            // The line reaches our socket; then the "stall" is over and
            // both deadlines lie in the past.
            tokio::time::sleep(Duration::from_millis(20)).await;
            let past = tokio::time::Instant::now() - Duration::from_millis(1);
            let deadlines = Deadlines {
                normal: past,
                stressed: past,
            };
            let read = read_by(
                &mut conn,
                &mut line,
                Bound::Discard(512),
                deadlines,
                &mut stress,
                &|| true,
                None,
            )
            .await;
            match read {
                Read::Line(Ok(Line::Complete)) => assert_eq!(line, sent.as_bytes()),
                Read::TimedOut { .. } => panic!("round {round}: a received line timed out"),
                _ => panic!("round {round}: the line was not read"),
            }
        }
        // Nothing sent: the passed deadline ends the read.
        let past = tokio::time::Instant::now();
        let read = read_by(
            &mut conn,
            &mut line,
            Bound::Discard(512),
            Deadlines {
                normal: past,
                stressed: past,
            },
            &mut stress,
            &|| true,
            None,
        )
        .await;
        assert!(matches!(read, Read::TimedOut { stress: false }));
    }
}
