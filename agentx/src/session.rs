//! The AgentX session with the master, as a state machine: Connecting
//! (connect and Open), Open (register, serve, ping, notify), Backoff
//! (capped exponential, reset by a successful Open), Stopped. It frames
//! PDUs on the socket (exactly a 20-byte header, then exactly the
//! declared payload, capped), answers requests synchronously through
//! `handler.rs`, and reports through `events.rs`. It does not know what
//! the view holds.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::{sleep, sleep_until, timeout, timeout_at, Instant, Interval, MissedTickBehavior};
use tracing::{debug, trace};

use crate::endpoint::{Endpoint, Stream};
use crate::events::{Event, Told};
use crate::handler;
use crate::oid::{well_known, Oid};
use crate::pdu::{
    AddAgentCaps, Close, CloseReason, DecodeError, EncodeError, ErrorStatus, Header, Open, Payload,
    Pdu, PduType, Ping, Register, Response, VarBindPdu, HEADER_LEN,
};
use crate::subagent::{Notification, Shared, SubagentConfig};
use crate::value::{Value, VarBind};
use crate::view::ViewProvider;

/// The first reconnect delay.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
/// The longest reconnect delay. Short: the master is nearly always the
/// local snmpd, a refused connect to it costs nothing, and an NMS that
/// polls across `systemctl restart snmpd` saw our objects missing for up
/// to 30 s with a longer cap (walkAT F2). Failures after the first of an
/// outage are logged at debug level, so the retries do not fill the log.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// The least response timeout honoured (a zero timeout would fail
/// everything at once).
const TIMEOUT_MIN: Duration = Duration::from_millis(10);
/// The most a response may take, whatever the configuration says (keeps
/// deadline arithmetic far from overflow).
const RESPONSE_TIMEOUT_MAX: Duration = Duration::from_secs(3600);
/// How much the frame reader asks the socket for at a time.
const READ_CHUNK: usize = 16 * 1024;
/// A deadline that never comes (in practice).
const FAR: Duration = Duration::from_secs(86_400);
/// A registration the master refused (another subagent holds the subtree
/// at that priority) is sent again after this long, doubling up to
/// [`REGISTER_RETRY_MAX`], for as long as the session lasts: when the
/// other subagent goes, ours takes the subtree over without a reconnect.
const REGISTER_RETRY_FIRST: Duration = Duration::from_secs(5);
const REGISTER_RETRY_MAX: Duration = Duration::from_secs(300);

/// Why a connection ended or could not be set up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkError {
    #[error("connecting timed out after {0:?}")]
    ConnectTimeout(Duration),
    #[error("cannot connect: {0}")]
    Connect(io::Error),
    /// A UNIX socket this process may not open, with who owns it.
    #[error("cannot connect: {error}; {hint}")]
    ConnectDenied { error: io::Error, hint: String },
    #[error("the master refused to open a session: {0}")]
    OpenRefused(ErrorStatus),
    #[error("no response to {what} within {after:?}")]
    NoResponse { what: String, after: Duration },
    #[error("writing to the master timed out after {0:?}")]
    WriteTimeout(Duration),
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("the master closed the connection")]
    Eof,
    #[error("the master sent bytes that are not AgentX: {0}")]
    Garbage(DecodeError),
    #[error("the master closed the session ({0:?})")]
    ClosedByMaster(CloseReason),
    #[error("cannot encode a PDU: {0}")]
    Encode(#[from] EncodeError),
}

impl LinkError {
    /// The cause of a failure, as an outage tells causes apart: bytes that
    /// are not AgentX are one cause whichever bytes they were (walkBE 7: a
    /// peer answering random bytes was "another reason" at every retry).
    fn cause(&self) -> String {
        match self {
            LinkError::Garbage(_) => "the master sent bytes that are not AgentX".to_string(),
            other => other.to_string(),
        }
    }
}

/// The causes told during one outage (walkT 4: the first cause stayed
/// in `mailward status` while every retry failed for another).
#[derive(Default)]
struct Outage {
    /// Each cause told so far, as its error text (a few at most).
    causes: Vec<String>,
    /// The outage began with a lost session, which was told: its first
    /// failed reconnect is not told again (a restarting master refuses
    /// for a moment).
    after_loss: bool,
}

/// More causes than this in one outage are told each time they recur.
const OUTAGE_CAUSES: usize = 8;

impl Outage {
    /// How a failure with `cause` is told: the first of an outage, a cause
    /// not seen in it yet, or one already told.
    fn tell(&mut self, cause: String) -> Told {
        if self.causes.contains(&cause) {
            return Told::Again;
        }
        let told = match (self.causes.is_empty(), self.after_loss) {
            (true, true) => Told::Again,
            (true, false) => Told::First,
            (false, _) => Told::NewCause,
        };
        if self.causes.len() < OUTAGE_CAUSES {
            self.causes.push(cause);
        }
        told
    }
}

/// The states of the session task.
enum State {
    /// Connect to the master and open a session.
    Connecting,
    /// Wait before the next attempt.
    Backoff(Duration),
    /// A session is open.
    Open(Connection),
    /// The owner asked us to stop; the task ends.
    Stopped,
}

/// How an open session ended.
enum End {
    /// The owner asked us to stop.
    Shutdown,
    /// The connection or the session failed.
    Lost(LinkError),
}

/// What woke the serve loop.
enum Wake {
    Stop,
    Frame(Result<(Header, Vec<u8>), LinkError>),
    Overdue,
    Ping,
    Notify,
    RetryRegistrations,
}

/// A request we sent and whose response we await.
enum Awaited {
    /// Register-PDU for `registrations[i]`.
    Register(usize),
    /// AddAgentCaps-PDU for `agent_caps[i]`.
    AgentCaps(usize),
    /// Ping-PDU.
    Ping,
    /// Notify-PDU (kept to be queued again if the session is lost first).
    Notify(Notification),
    /// Close-PDU.
    Close,
}

impl Awaited {
    fn describe(&self, config: &SubagentConfig) -> String {
        match self {
            Awaited::Register(i) => match config.registrations.get(*i) {
                Some(r) => format!("the registration of {}", r.subtree),
                None => String::from("a registration"),
            },
            Awaited::AgentCaps(_) => String::from("AddAgentCaps"),
            Awaited::Ping => String::from("a Ping"),
            Awaited::Notify(_) => String::from("a Notify"),
            Awaited::Close => String::from("Close"),
        }
    }
}

/// One awaited response.
struct Pending {
    /// What it answers.
    what: Awaited,
    /// When the master is presumed dead if it has not answered.
    deadline: Instant,
}

/// A connection with an open (or opening) session.
struct Connection {
    /// The socket.
    stream: Box<dyn Stream>,
    /// Bytes read but not yet framed.
    reader: FrameReader,
    /// The master's h.sessionID for us.
    session_id: u32,
    /// Requests we sent, by h.packetID.
    pending: BTreeMap<u32, Pending>,
    /// Register and AddAgentCaps responses still awaited: queued
    /// notifications are sent once there are none.
    setup_outstanding: usize,
    /// Whether a Ping is awaiting its response.
    ping_outstanding: bool,
    /// Registrations the master refused (indices), sent again at
    /// `retry_at`; the next wait after that is `retry_delay`.
    refused: Vec<usize>,
    retry_at: Option<Instant>,
    retry_delay: Duration,
    /// (registration, status) refusals logged as errors on this session:
    /// a master that keeps refusing is said once, not every retry.
    refusals_told: Vec<(usize, ErrorStatus)>,
}

impl Connection {
    fn new(stream: Box<dyn Stream>) -> Connection {
        Connection {
            stream,
            reader: FrameReader::default(),
            session_id: 0,
            pending: BTreeMap::new(),
            setup_outstanding: 0,
            ping_outstanding: false,
            refused: Vec::new(),
            retry_at: None,
            retry_delay: REGISTER_RETRY_FIRST,
            refusals_told: Vec::new(),
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.deadline).min()
    }

    /// Notifications sent but not acknowledged, in the order sent.
    fn take_unacknowledged(&mut self) -> Vec<Notification> {
        std::mem::take(&mut self.pending)
            .into_values()
            .filter_map(|p| match p.what {
                Awaited::Notify(n) => Some(n),
                _ => None,
            })
            .collect()
    }

    fn notifications_pending(&self) -> bool {
        self.pending
            .values()
            .any(|p| matches!(p.what, Awaited::Notify(_)))
    }
}

/// Cuts the byte stream into PDUs: exactly a header, then exactly the
/// payload it declares (at most `MAX_PAYLOAD`, checked from the header
/// before anything more is read for it). Cancel-safe: all state is here.
#[derive(Default)]
struct FrameReader {
    /// Bytes received and not yet handed out.
    buf: Vec<u8>,
}

impl FrameReader {
    async fn read_frame(
        &mut self,
        stream: &mut Box<dyn Stream>,
    ) -> Result<(Header, Vec<u8>), LinkError> {
        loop {
            if let Some(frame) = self.take_frame()? {
                return Ok(frame);
            }
            self.buf.reserve(READ_CHUNK);
            let n = stream.read_buf(&mut self.buf).await?;
            if n == 0 {
                return Err(LinkError::Eof);
            }
        }
    }

    fn take_frame(&mut self) -> Result<Option<(Header, Vec<u8>)>, LinkError> {
        let Some(head) = self.buf.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let mut bytes = [0u8; HEADER_LEN];
        bytes.copy_from_slice(head);
        let header = Header::decode(&bytes).map_err(LinkError::Garbage)?;
        let total = HEADER_LEN + header.payload_length as usize;
        let Some(payload) = self.buf.get(HEADER_LEN..total) else {
            return Ok(None);
        };
        let payload = payload.to_vec();
        self.buf.drain(..total);
        Ok(Some((header, payload)))
    }
}

/// Capped exponential back-off.
struct Backoff {
    /// The next delay.
    next: Duration,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff { next: BACKOFF_MIN }
    }

    fn next(&mut self) -> Duration {
        let d = self.next;
        self.next = (d * 2).min(BACKOFF_MAX);
        d
    }

    fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }
}

/// Resolves when the owner asks us to stop (or drops the `Subagent`).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Ticks of the ping timer, or never when pings are disabled.
async fn ping_tick(timer: &mut Option<Interval>) {
    match timer {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending::<()>().await,
    }
}

/// The session task.
pub(crate) struct Session {
    /// What to connect to and register.
    config: SubagentConfig,
    /// What to serve.
    view: ViewProvider,
    /// Queue and health, shared with the owner.
    shared: Arc<Shared>,
    /// How long a response may take: `timeout * retries`, clamped.
    response_timeout: Duration,
    /// The last h.packetID used.
    packet_id: u32,
}

impl Session {
    pub(crate) fn new(config: SubagentConfig, view: ViewProvider, shared: Arc<Shared>) -> Session {
        let response_timeout = config
            .timeout
            .max(TIMEOUT_MIN)
            .checked_mul(config.retries.max(1))
            .unwrap_or(RESPONSE_TIMEOUT_MAX)
            .min(RESPONSE_TIMEOUT_MAX);
        Session {
            config,
            view,
            shared,
            response_timeout,
            packet_id: 0,
        }
    }

    fn next_packet_id(&mut self) -> u32 {
        self.packet_id = self.packet_id.wrapping_add(1);
        self.packet_id
    }

    fn endpoint(&self) -> &Endpoint {
        &self.config.endpoint
    }

    /// Runs the state machine until told to stop.
    pub(crate) async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut backoff = Backoff::new();
        // The causes of the current outage told so far: a failure for a
        // cause already told is logged at debug level only, a new cause
        // (snmpd started with other permissions, another program on the
        // port) is told again.
        let mut outage = Outage::default();
        let mut state = State::Connecting;
        loop {
            state = match state {
                State::Connecting => {
                    let result = tokio::select! {
                        biased;
                        _ = stopped(&mut stop) => None,
                        r = self.open() => Some(r),
                    };
                    match result {
                        None => State::Stopped,
                        Some(Ok(conn)) => {
                            backoff.reset();
                            outage = Outage::default();
                            Event::SessionOpened {
                                endpoint: &self.config.endpoint,
                                session_id: conn.session_id,
                            }
                            .emit(&self.shared.health);
                            State::Open(conn)
                        }
                        Some(Err(e)) => {
                            let delay = backoff.next();
                            let told = outage.tell(e.cause());
                            match e {
                                LinkError::OpenRefused(status) => Event::OpenRefused {
                                    endpoint: self.endpoint(),
                                    status,
                                    told,
                                }
                                .emit(&self.shared.health),
                                other => Event::ConnectFailed {
                                    endpoint: self.endpoint(),
                                    error: &other,
                                    retry_in: delay,
                                    told,
                                }
                                .emit(&self.shared.health),
                            }
                            State::Backoff(delay)
                        }
                    }
                }
                State::Backoff(delay) => {
                    tokio::select! {
                        biased;
                        _ = stopped(&mut stop) => State::Stopped,
                        _ = sleep(delay) => State::Connecting,
                    }
                }
                State::Open(mut conn) => match self.serve(&mut conn, &mut stop).await {
                    End::Shutdown => {
                        self.close(conn).await;
                        State::Stopped
                    }
                    End::Lost(error) => {
                        let session_id = conn.session_id;
                        self.shared.requeue_front(conn.take_unacknowledged());
                        match error {
                            LinkError::ClosedByMaster(reason) => {
                                Event::ClosedByMaster { session_id, reason }
                            }
                            ref other => Event::SessionLost {
                                endpoint: &self.config.endpoint,
                                session_id,
                                reason: other,
                            },
                        }
                        .emit(&self.shared.health);
                        // The loss was told; the reconnects that fail next
                        // are told by cause.
                        outage = Outage {
                            after_loss: true,
                            ..Outage::default()
                        };
                        State::Backoff(backoff.next())
                    }
                },
                State::Stopped => return,
            };
        }
    }

    /// Connects and opens a session.
    async fn open(&mut self) -> Result<Connection, LinkError> {
        let rt = self.response_timeout;
        let stream = match timeout(rt, self.config.endpoint.connect()).await {
            Err(_) => return Err(LinkError::ConnectTimeout(rt)),
            Ok(Err(e)) => {
                return Err(match &self.config.endpoint {
                    Endpoint::Unix(path) if e.kind() == io::ErrorKind::PermissionDenied => {
                        LinkError::ConnectDenied {
                            error: e,
                            hint: crate::endpoint::permission_hint(path),
                        }
                    }
                    _ => LinkError::Connect(e),
                })
            }
            Ok(Ok(s)) => s,
        };
        let mut conn = Connection::new(stream);
        let packet_id = self.next_packet_id();
        // o.timeout is whole seconds, 1..=255.
        let secs = self.config.timeout.as_millis().div_ceil(1000).clamp(1, 255) as u8;
        let open = Pdu::new(
            0,
            0,
            packet_id,
            Payload::Open(Open {
                timeout: secs,
                id: self.config.id.clone(),
                description: self.config.description.as_bytes().to_vec(),
            }),
        );
        self.write(&mut conn, &open).await?;
        let deadline = Instant::now() + rt;
        loop {
            let (header, payload) = timeout_at(deadline, conn.reader.read_frame(&mut conn.stream))
                .await
                .map_err(|_| LinkError::NoResponse {
                    what: String::from("Open"),
                    after: rt,
                })??;
            match Pdu::decode(&header, &payload) {
                Ok(Pdu {
                    packet_id: id,
                    session_id,
                    payload: Payload::Response(r),
                    ..
                }) if id == packet_id => {
                    if !r.error.is_ok() {
                        return Err(LinkError::OpenRefused(r.error));
                    }
                    conn.session_id = session_id;
                    self.shared.set_master_uptime(r.sys_uptime);
                    return Ok(conn);
                }
                Ok(Pdu {
                    payload: Payload::Close(c),
                    ..
                }) => return Err(LinkError::ClosedByMaster(c.reason)),
                // Nothing else is meaningful before the session is open.
                other => {
                    debug!(target: "snmp", pdu = ?other, "Ignored a PDU received before the session was open.")
                }
            }
        }
    }

    /// Serves an open session until it ends.
    async fn serve(&mut self, conn: &mut Connection, stop: &mut watch::Receiver<bool>) -> End {
        if let Err(e) = self.register_all(conn).await {
            return End::Lost(e);
        }
        let mut ping = if self.config.ping_interval.is_zero() {
            None
        } else {
            let period = self.config.ping_interval.min(FAR);
            let mut t = tokio::time::interval_at(Instant::now() + period, period);
            t.set_missed_tick_behavior(MissedTickBehavior::Delay);
            Some(t)
        };
        loop {
            if conn.setup_outstanding == 0 {
                if let Err(e) = self.flush_notifications(conn).await {
                    return End::Lost(e);
                }
            }
            let deadline = conn.next_deadline().unwrap_or_else(|| Instant::now() + FAR);
            let wake = tokio::select! {
                biased;
                _ = stopped(stop) => Wake::Stop,
                frame = conn.reader.read_frame(&mut conn.stream) => Wake::Frame(frame),
                _ = sleep_until(deadline) => Wake::Overdue,
                _ = ping_tick(&mut ping) => Wake::Ping,
                _ = self.shared.wake.notified(), if conn.setup_outstanding == 0 => Wake::Notify,
                _ = sleep_until(conn.retry_at.unwrap_or_else(|| Instant::now() + FAR)),
                    if conn.retry_at.is_some() => Wake::RetryRegistrations,
            };
            let result = match wake {
                Wake::Stop => return End::Shutdown,
                Wake::Frame(Err(e)) => Err(e),
                Wake::Frame(Ok((header, payload))) => self.on_frame(conn, &header, &payload).await,
                Wake::Overdue => self.check_overdue(conn),
                Wake::Ping if conn.ping_outstanding => Ok(()),
                Wake::Ping => {
                    conn.ping_outstanding = true;
                    self.request(conn, Payload::Ping(Ping { context: None }), Awaited::Ping)
                        .await
                }
                Wake::Notify => Ok(()),
                Wake::RetryRegistrations => self.retry_registrations(conn).await,
            };
            if let Err(e) = result {
                return End::Lost(e);
            }
        }
    }

    /// Sends a Register-PDU for every subtree and an AddAgentCaps-PDU for
    /// every capability, without waiting: the responses are handled as
    /// they come, while requests are served.
    async fn register_all(&mut self, conn: &mut Connection) -> Result<(), LinkError> {
        for i in 0..self.config.registrations.len() {
            self.register(conn, i).await?;
        }
        for i in 0..self.config.agent_caps.len() {
            let (id, descr) = &self.config.agent_caps[i];
            let payload = Payload::AddAgentCaps(AddAgentCaps {
                context: None,
                id: id.clone(),
                description: descr.as_bytes().to_vec(),
            });
            self.request(conn, payload, Awaited::AgentCaps(i)).await?;
        }
        Ok(())
    }

    /// Sends the Register-PDU of `registrations[i]`.
    async fn register(&mut self, conn: &mut Connection, i: usize) -> Result<(), LinkError> {
        let Some(r) = self.config.registrations.get(i) else {
            return Ok(());
        };
        let payload = Payload::Register(Register {
            context: None,
            timeout: 0,
            priority: r.priority,
            range_subid: 0,
            subtree: r.subtree.clone(),
            upper_bound: 0,
        });
        self.request(conn, payload, Awaited::Register(i)).await
    }

    /// Sends the refused registrations again.
    async fn retry_registrations(&mut self, conn: &mut Connection) -> Result<(), LinkError> {
        conn.retry_at = None;
        for i in std::mem::take(&mut conn.refused) {
            self.register(conn, i).await?;
        }
        Ok(())
    }

    /// Sends every queued notification. Each one's sysUpTime.0 is stamped
    /// now, on the clock of this session's master, as of when it was
    /// raised (a notification sent again after a reconnect is stamped
    /// again, on the new master's clock).
    async fn flush_notifications(&mut self, conn: &mut Connection) -> Result<(), LinkError> {
        while let Some(n) = self.shared.pop() {
            let mut varbinds = Vec::with_capacity(n.varbinds.len() + 2);
            varbinds.push(VarBind::new(
                Oid::from_slice(well_known::SYS_UPTIME_0),
                Value::TimeTicks(self.shared.sys_uptime_of(n.raised)),
            ));
            varbinds.push(VarBind::new(
                Oid::from_slice(well_known::SNMP_TRAP_OID_0),
                Value::ObjectIdentifier(n.trap_oid.clone()),
            ));
            varbinds.extend(n.varbinds.iter().cloned());
            let payload = Payload::Notify(VarBindPdu {
                context: None,
                varbinds,
            });
            self.request(conn, payload, Awaited::Notify(n)).await?;
        }
        Ok(())
    }

    /// Sends a request of ours and records that its response is awaited.
    /// A request that cannot be encoded is reported and skipped.
    async fn request(
        &mut self,
        conn: &mut Connection,
        payload: Payload,
        what: Awaited,
    ) -> Result<(), LinkError> {
        let packet_id = self.next_packet_id();
        let pdu = Pdu::new(conn.session_id, 0, packet_id, payload);
        let bytes = match pdu.encode() {
            Ok(b) => b,
            Err(e) => {
                self.unencodable(conn, what, &e);
                return Ok(());
            }
        };
        if matches!(what, Awaited::Register(_) | Awaited::AgentCaps(_)) {
            conn.setup_outstanding += 1;
        }
        conn.pending.insert(
            packet_id,
            Pending {
                what,
                deadline: Instant::now() + self.response_timeout,
            },
        );
        self.write_bytes(conn, &bytes).await
    }

    fn unencodable(&self, conn: &mut Connection, what: Awaited, error: &EncodeError) {
        let health = &self.shared.health;
        Event::RequestUnencodable {
            what: what.describe(&self.config),
            error,
        }
        .emit(health);
        match what {
            Awaited::Notify(n) => Event::NotificationDropped {
                queue_limit: self.config.queue_limit,
                trap: n.trap_oid,
            }
            .emit(health),
            Awaited::Ping => conn.ping_outstanding = false,
            Awaited::Register(_) | Awaited::AgentCaps(_) | Awaited::Close => {}
        }
    }

    /// Handles one PDU from the master.
    async fn on_frame(
        &mut self,
        conn: &mut Connection,
        header: &Header,
        payload: &[u8],
    ) -> Result<(), LinkError> {
        trace!(target: "snmp", pdu_type = header.pdu_type, flags = header.flags.0,
            session_id = header.session_id, packet_id = header.packet_id,
            payload_length = header.payload_length, "AgentX PDU received.");
        let pdu = match Pdu::decode(header, payload) {
            Ok(pdu) => pdu,
            Err(error) => {
                if header.pdu_type == PduType::Response as u8 {
                    // 7.2.2: an unparsable response is dropped silently.
                    Event::ResponseUnparsable { error: &error }.emit(&self.shared.health);
                    return Ok(());
                }
                Event::RequestUnparsable { error: &error }.emit(&self.shared.health);
                let reply = Pdu::new(
                    header.session_id,
                    header.transaction_id,
                    header.packet_id,
                    Payload::Response(handler::error(ErrorStatus::PARSE_ERROR, 0)),
                );
                return self.write(conn, &reply).await;
            }
        };
        match &pdu.payload {
            Payload::Response(r) => {
                self.on_response(conn, pdu.packet_id, r);
                Ok(())
            }
            Payload::Close(c) => Err(LinkError::ClosedByMaster(c.reason)),
            Payload::Get(_)
            | Payload::GetNext(_)
            | Payload::GetBulk(_)
            | Payload::TestSet(_)
            | Payload::CommitSet
            | Payload::UndoSet
            | Payload::CleanupSet
            | Payload::Ping(_) => {
                let view = (self.view)();
                let response = handler::answer(view.as_ref(), conn.session_id, &pdu);
                if pdu.pdu_type() != PduType::Ping {
                    Event::RequestAnswered.emit(&self.shared.health);
                }
                match response {
                    Some(r) => self.reply(conn, &pdu, r).await,
                    None => Ok(()),
                }
            }
            _ => {
                Event::UnexpectedPdu {
                    pdu_type: pdu.pdu_type() as u8,
                }
                .emit(&self.shared.health);
                let r = handler::error(ErrorStatus::PROCESSING_ERROR, 0);
                self.reply(conn, &pdu, r).await
            }
        }
    }

    /// Sends a response, echoing the request's IDs; genErr when the
    /// response cannot be encoded.
    async fn reply(
        &mut self,
        conn: &mut Connection,
        request: &Pdu,
        response: Response,
    ) -> Result<(), LinkError> {
        let mut pdu = Pdu::new(
            request.session_id,
            request.transaction_id,
            request.packet_id,
            Payload::Response(response),
        );
        let bytes = match pdu.encode() {
            Ok(b) => b,
            Err(error) => {
                Event::ResponseUnencodable { error: &error }.emit(&self.shared.health);
                pdu.payload = Payload::Response(handler::error(ErrorStatus::GEN_ERR, 0));
                pdu.encode()?
            }
        };
        self.write_bytes(conn, &bytes).await
    }

    /// Matches a response to the request it answers.
    fn on_response(&mut self, conn: &mut Connection, packet_id: u32, r: &Response) {
        let Some(pending) = conn.pending.remove(&packet_id) else {
            debug!(target: "snmp", packet_id, "Ignored a response to no request of ours.");
            return;
        };
        let health = &self.shared.health;
        match pending.what {
            Awaited::Register(i) => {
                conn.setup_outstanding = conn.setup_outstanding.saturating_sub(1);
                if let Some(reg) = self.config.registrations.get(i) {
                    if r.error.is_ok() {
                        conn.refusals_told.retain(|(j, _)| *j != i);
                        Event::Registered {
                            subtree: &reg.subtree,
                            priority: reg.priority,
                        }
                        .emit(health);
                        if conn.refused.is_empty() && conn.retry_at.is_none() {
                            conn.retry_delay = REGISTER_RETRY_FIRST;
                        }
                    } else {
                        let retry_in = conn.retry_delay;
                        if conn.retry_at.is_none() {
                            conn.retry_at = Some(Instant::now() + retry_in);
                            conn.retry_delay = (retry_in * 2).min(REGISTER_RETRY_MAX);
                        }
                        conn.refused.push(i);
                        let first = !conn.refusals_told.contains(&(i, r.error));
                        if first {
                            conn.refusals_told.push((i, r.error));
                        }
                        Event::RegistrationRefused {
                            subtree: &reg.subtree,
                            priority: reg.priority,
                            status: r.error,
                            retry_in,
                            first,
                        }
                        .emit(health);
                    }
                }
            }
            Awaited::AgentCaps(i) => {
                conn.setup_outstanding = conn.setup_outstanding.saturating_sub(1);
                if let (false, Some((id, _))) = (r.error.is_ok(), self.config.agent_caps.get(i)) {
                    Event::AgentCapsRefused {
                        id,
                        status: r.error,
                    }
                    .emit(health);
                }
            }
            Awaited::Ping => conn.ping_outstanding = false,
            Awaited::Notify(n) if r.error.is_ok() => {
                Event::NotificationSent.emit(health);
                if let Some(hook) = &self.config.on_sent {
                    (hook.0)(&n.trap_oid);
                }
            }
            Awaited::Notify(_) => Event::NotificationRefused {
                status: r.error,
                index: r.index,
            }
            .emit(health),
            Awaited::Close => {}
        }
    }

    /// Fails the session when a response is overdue.
    fn check_overdue(&self, conn: &Connection) -> Result<(), LinkError> {
        let now = Instant::now();
        match conn.pending.values().find(|p| p.deadline <= now) {
            Some(p) => Err(LinkError::NoResponse {
                what: p.what.describe(&self.config),
                after: self.response_timeout,
            }),
            None => Ok(()),
        }
    }

    /// On graceful stop: hands the master what is queued (waiting at most
    /// one response timeout for it), then sends Close (reason shutdown)
    /// and waits at most one response timeout for its response.
    async fn close(&mut self, mut conn: Connection) {
        let rt = self.response_timeout;
        let flushed = timeout(rt, async {
            self.flush_notifications(&mut conn).await?;
            while conn.notifications_pending() {
                let (header, payload) = conn.reader.read_frame(&mut conn.stream).await?;
                self.on_frame(&mut conn, &header, &payload).await?;
            }
            Ok::<(), LinkError>(())
        })
        .await;
        match flushed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                debug!(target: "snmp", error = %e, "Could not hand over every notification before closing.")
            }
            Err(_) => {
                debug!(target: "snmp", after = ?rt, "The master did not take every notification before closing.")
            }
        }
        let closed = timeout(rt, async {
            let packet_id = self.next_packet_id();
            let close = Pdu::new(
                conn.session_id,
                0,
                packet_id,
                Payload::Close(Close {
                    reason: CloseReason::Shutdown,
                }),
            );
            conn.pending.insert(
                packet_id,
                Pending {
                    what: Awaited::Close,
                    deadline: Instant::now() + rt,
                },
            );
            self.write(&mut conn, &close).await?;
            while conn.pending.contains_key(&packet_id) {
                let (header, payload) = conn.reader.read_frame(&mut conn.stream).await?;
                if let Ok(Pdu {
                    packet_id: id,
                    payload: Payload::Response(_),
                    ..
                }) = Pdu::decode(&header, &payload)
                {
                    conn.pending.remove(&id);
                }
            }
            Ok::<(), LinkError>(())
        })
        .await;
        if let Ok(Err(e)) = &closed {
            debug!(target: "snmp", error = %e, "The master did not acknowledge the Close.");
        }
        let _ = conn.stream.shutdown().await;
        Event::SessionClosed {
            session_id: conn.session_id,
        }
        .emit(&self.shared.health);
    }

    async fn write(&self, conn: &mut Connection, pdu: &Pdu) -> Result<(), LinkError> {
        let bytes = pdu.encode()?;
        self.write_bytes(conn, &bytes).await
    }

    /// Writes bytes, failing the session when the master does not take
    /// them within the response timeout.
    async fn write_bytes(&self, conn: &mut Connection, bytes: &[u8]) -> Result<(), LinkError> {
        match timeout(self.response_timeout, conn.stream.write_all(bytes)).await {
            Err(_) => Err(LinkError::WriteTimeout(self.response_timeout)),
            Ok(r) => Ok(r?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_of_an_outage_is_told_once_and_the_last_error_is_the_latest() {
        // walkT 4: `mailward status` kept "Connection refused", the first
        // cause, while every retry failed with another one, and nothing
        // but a debug line said so.
        let health = crate::health::HealthCounters::default();
        let endpoint = Endpoint::parse("tcp:127.0.0.1:1").unwrap();
        let mut outage = Outage::default();
        let mut told = Vec::new();
        for cause in ["refused", "refused", "not AgentX", "not AgentX", "refused"] {
            let t = outage.tell(cause.to_string());
            told.push(t);
            Event::ConnectFailed {
                endpoint: &endpoint,
                error: &cause,
                retry_in: Duration::from_secs(1),
                told: t,
            }
            .emit(&health);
        }
        use Told::*;
        assert_eq!(told, [First, Again, NewCause, Again, Again]);
        let h = health.snapshot();
        assert_eq!(h.errors, 2, "once per cause");
        assert_eq!(
            h.last_error.as_deref(),
            Some("cannot reach the AgentX master at tcp:127.0.0.1:1: refused")
        );
        // After a lost session (told already), the first cause is not told
        // again; a change of cause is.
        let mut after = Outage {
            after_loss: true,
            ..Outage::default()
        };
        assert_eq!(after.tell("refused".into()), Again);
        assert_eq!(after.tell("denied".into()), NewCause);
        // walkBE 7: random bytes are one cause, whichever bytes they were.
        let mut garbage = Outage::default();
        let a = LinkError::Garbage(crate::pdu::DecodeError::BadVersion(126));
        let b = LinkError::Garbage(crate::pdu::DecodeError::BadVersion(88));
        assert_eq!(garbage.tell(a.cause()), First);
        assert_eq!(garbage.tell(b.cause()), Again);
    }

    #[test]
    fn a_socket_that_refuses_our_user_says_whose_it_is() {
        // walkT 9: "Permission denied" with no word of agentXPerms.
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("master");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let hint = crate::endpoint::permission_hint(&socket);
        assert!(
            hint.starts_with(&format!("the socket {} is ", socket.display())),
            "{hint}"
        );
        assert!(hint.contains("Mailward runs as "), "{hint}");
        assert!(hint.contains("agentXPerms 0660 0755 SNMPD-USER "), "{hint}");
        assert!(!hint.contains("chgrp"), "{hint}");
        // Unseen (a directory that bars the way): the nearest one seen,
        // and what to do to the directory, not the agentXPerms line alone
        // (walkAM 2: net-snmp makes its directory root:root 0550 whatever
        // group agentXPerms names).
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o550)).unwrap();
        let hint = crate::endpoint::permission_hint(&dir.path().join("no/such/master"));
        assert!(
            hint.starts_with(&format!("its directory {} is ", dir.path().display())),
            "{hint}"
        );
        assert!(hint.contains(" 0550 and Mailward runs as "), "{hint}");
        assert!(hint.contains("group to the socket only"), "{hint}");
        assert!(
            hint.contains("(`chgrp ") && hint.contains(&format!(" {}`)", dir.path().display())),
            "{hint}"
        );
        assert!(hint.contains("agentXPerms 0660 0755 SNMPD-USER "), "{hint}");
        // No group search bit: the group alone would not help.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o500)).unwrap();
        let hint = crate::endpoint::permission_hint(&dir.path().join("no/such/master"));
        assert!(
            hint.contains(&format!("(`chmod 0755 {}`)", dir.path().display())),
            "{hint}"
        );
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    }

    /// The reconnect schedule a master that comes back meets: the wait
    /// before the next attempt is never more than twice the outage so far
    /// (plus the first half second), and never more than BACKOFF_MAX.
    #[test]
    fn reconnect_delays_double_from_half_a_second_up_to_the_cap_and_restart_after_success() {
        let mut b = Backoff::new();
        let delays: Vec<Duration> = (0..9).map(|_| b.next()).collect();
        let ms: Vec<u128> = delays.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [500, 1000, 2000, 4000, 5000, 5000, 5000, 5000, 5000]);
        let mut waited = Duration::ZERO;
        for d in &delays[..4] {
            assert!(*d <= waited * 2 + BACKOFF_MIN, "{d:?} after {waited:?}");
            waited += *d;
        }
        b.reset();
        assert_eq!(b.next(), BACKOFF_MIN);
    }
}
