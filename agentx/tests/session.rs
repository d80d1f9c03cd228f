//! The session against a scripted fake master on a UNIX socket in a
//! temporary directory: the Open/Register/AddAgentCaps handshake, exact
//! Get/GetNext/GetBulk answers, Set refusals, and recovery from a master
//! that closes the socket, sends Close or garbage, refuses a registration,
//! or stops answering Pings; notifications queued while down, overflow,
//! and a graceful Close.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailward_agentx::pdu::{
    CloseReason, ErrorStatus, Flags, Get, GetBulk, Header, Payload, Pdu, PduType, Response,
    SearchRange, VarBindPdu, HEADER_LEN,
};
use mailward_agentx::{
    fixed_view, start, well_known, Endpoint, Health, MibView, Oid, Registration, SentHook,
    Subagent, SubagentConfig, Value, VarBind,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::time::{sleep, timeout, Instant};

/// How long any expected event may take (generous: CI is slow).
const WAIT: Duration = Duration::from_secs(15);

fn oid(s: &str) -> Oid {
    s.parse().unwrap()
}

const ROOT: &str = "1.3.6.1.4.1.32473.25";

/// A toy view: two scalars and a 3-row column under ROOT.1, and a scalar
/// under ROOT.9 (a second registration).
fn view() -> MibView {
    let root = oid(ROOT);
    let mut b = MibView::builder();
    b.scalar(root.join(&[1, 1, 1]), Value::Integer(42));
    b.scalar(root.join(&[1, 1, 2]), Value::string("hello"));
    b.object(root.join(&[1, 2, 1, 1]));
    for row in 1..=3u32 {
        b.insert(
            root.join(&[1, 2, 1, 1, row]),
            Value::Counter64(u64::from(row) * 1000),
        );
    }
    b.scalar(root.join(&[9, 1]), Value::Gauge32(9));
    b.build()
}

struct Rig {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Rig {
    fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.sock");
        Rig { _dir: dir, path }
    }

    fn listen(&self) -> UnixListener {
        let _ = std::fs::remove_file(&self.path);
        UnixListener::bind(&self.path).unwrap()
    }

    fn config(&self) -> SubagentConfig {
        let mut c = SubagentConfig::new(Endpoint::Unix(self.path.clone()));
        c.timeout = Duration::from_millis(300);
        c.retries = 3;
        c.ping_interval = Duration::from_secs(60);
        c.id = oid(ROOT);
        c.description = String::from("test subagent");
        c.registrations = vec![
            Registration::new(oid(ROOT).child(1)),
            Registration {
                subtree: oid(ROOT).child(9),
                priority: 50,
            },
        ];
        c.agent_caps = vec![(oid(ROOT).join(&[2, 1]), String::from("caps"))];
        c
    }
}

fn start_subagent(config: SubagentConfig) -> Subagent {
    start(config, fixed_view(view()))
}

/// A connected socket, UNIX or TCP.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// One accepted connection, seen from the master's side.
struct Master {
    stream: Box<dyn Io>,
    session_id: u32,
    next_packet: u32,
    /// Notify-PDUs received (and acknowledged) while waiting for something
    /// else.
    notifies: Vec<Vec<VarBind>>,
    /// Whether to answer the subagent's Pings.
    answer_pings: bool,
    /// The sysUpTime this master puts in its responses (its clock at the
    /// Open is what the subagent stamps notifications with).
    uptime: u32,
}

impl Master {
    async fn accept(listener: &UnixListener) -> Master {
        let (stream, _) = timeout(WAIT, listener.accept())
            .await
            .expect("the subagent did not connect in time")
            .unwrap();
        Master::with(Box::new(stream))
    }

    async fn accept_tcp(listener: &TcpListener) -> Master {
        let (stream, _) = timeout(WAIT, listener.accept())
            .await
            .expect("the subagent did not connect in time")
            .unwrap();
        Master::with(Box::new(stream))
    }

    fn with(stream: Box<dyn Io>) -> Master {
        Master {
            stream,
            session_id: 0,
            next_packet: 1000,
            notifies: Vec::new(),
            answer_pings: true,
            uptime: 1,
        }
    }

    /// The next PDU, or None on EOF.
    async fn recv_raw(&mut self) -> Option<Pdu> {
        let mut head = [0u8; HEADER_LEN];
        match timeout(WAIT, self.stream.read_exact(&mut head))
            .await
            .expect("no PDU in time")
        {
            Ok(_) => {}
            Err(_) => return None,
        }
        let header = Header::decode(&head).unwrap();
        // What we send: network byte order, always.
        assert!(header.flags.contains(Flags::NETWORK_BYTE_ORDER));
        let mut payload = vec![0u8; header.payload_length as usize];
        timeout(WAIT, self.stream.read_exact(&mut payload))
            .await
            .unwrap()
            .unwrap();
        Some(Pdu::decode(&header, &payload).unwrap())
    }

    async fn recv(&mut self) -> Pdu {
        self.recv_raw()
            .await
            .expect("the subagent closed the connection")
    }

    async fn send(&mut self, pdu: &Pdu) {
        self.stream.write_all(&pdu.encode().unwrap()).await.unwrap();
    }

    async fn respond(&mut self, to: &Pdu, session_id: u32, error: ErrorStatus) {
        let reply = Pdu::new(
            session_id,
            to.transaction_id,
            to.packet_id,
            Payload::Response(Response {
                sys_uptime: self.uptime,
                error,
                index: 0,
                varbinds: Vec::new(),
            }),
        );
        self.send(&reply).await;
    }

    /// Accepts the Open, giving the session `session_id`.
    async fn open(&mut self, session_id: u32) -> Pdu {
        let open = self.recv().await;
        assert_eq!(open.pdu_type(), PduType::Open, "{open:?}");
        self.session_id = session_id;
        self.respond(&open, session_id, ErrorStatus::NO_ERROR).await;
        open
    }

    /// Answers the two registrations (with `first_status` for the first)
    /// and the AddAgentCaps; returns the PDUs.
    async fn registrations(&mut self, first_status: ErrorStatus) -> Vec<Pdu> {
        let mut got = Vec::new();
        for i in 0..3 {
            let pdu = self.recv().await;
            let status = if i == 0 {
                first_status
            } else {
                ErrorStatus::NO_ERROR
            };
            self.respond(&pdu, self.session_id, status).await;
            got.push(pdu);
        }
        got
    }

    async fn handshake(&mut self, session_id: u32) {
        self.open(session_id).await;
        self.registrations(ErrorStatus::NO_ERROR).await;
    }

    /// Sends a request and returns the response to it, answering Pings and
    /// acknowledging Notifies meanwhile.
    async fn request(&mut self, payload: Payload) -> Pdu {
        self.next_packet += 1;
        let req = Pdu::new(self.session_id, 77, self.next_packet, payload);
        self.send(&req).await;
        self.response_to(self.next_packet).await
    }

    async fn response_to(&mut self, packet_id: u32) -> Pdu {
        loop {
            let pdu = self.recv().await;
            match &pdu.payload {
                Payload::Response(_) if pdu.packet_id == packet_id => return pdu,
                Payload::Ping(_) => {
                    if self.answer_pings {
                        self.respond(&pdu, self.session_id, ErrorStatus::NO_ERROR)
                            .await;
                    }
                }
                Payload::Notify(n) => {
                    self.notifies.push(n.varbinds.clone());
                    self.respond(&pdu, self.session_id, ErrorStatus::NO_ERROR)
                        .await;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// Waits for `n` Notify-PDUs (acknowledging each).
    async fn notifications(&mut self, n: usize) -> Vec<Vec<VarBind>> {
        while self.notifies.len() < n {
            let pdu = self.recv().await;
            match &pdu.payload {
                Payload::Notify(v) => {
                    self.notifies.push(v.varbinds.clone());
                    self.respond(&pdu, self.session_id, ErrorStatus::NO_ERROR)
                        .await;
                }
                Payload::Ping(_) => {
                    self.respond(&pdu, self.session_id, ErrorStatus::NO_ERROR)
                        .await
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        std::mem::take(&mut self.notifies)
    }
}

fn response(pdu: &Pdu) -> &Response {
    match &pdu.payload {
        Payload::Response(r) => r,
        other => panic!("not a response: {other:?}"),
    }
}

fn sr(start: &str, include: bool, end: &str) -> SearchRange {
    SearchRange {
        start: oid(start),
        include,
        end: if end.is_empty() {
            Oid::null()
        } else {
            oid(end)
        },
    }
}

fn pairs(r: &Response) -> Vec<(String, Value)> {
    r.varbinds
        .iter()
        .map(|vb| (vb.name.to_string(), vb.value.clone()))
        .collect()
}

async fn wait_health(sub: &Subagent, what: &str, cond: impl Fn(&Health) -> bool) -> Health {
    let deadline = Instant::now() + WAIT;
    loop {
        let h = sub.health();
        if cond(&h) {
            return h;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {h:?}"
        );
        sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn open_register_and_agent_caps_handshake() {
    let rig = Rig::new();
    let listener = rig.listen();
    let sub = start_subagent(rig.config());
    let mut m = Master::accept(&listener).await;
    let open = m.open(42).await;
    assert_eq!(
        open.payload,
        Payload::Open(mailward_agentx::pdu::Open {
            timeout: 1,
            id: oid(ROOT),
            description: b"test subagent".to_vec(),
        })
    );
    let regs = m.registrations(ErrorStatus::NO_ERROR).await;
    let expect = [(oid(ROOT).child(1), 127u8), (oid(ROOT).child(9), 50u8)];
    for (pdu, (subtree, priority)) in regs.iter().zip(expect) {
        assert_eq!(pdu.session_id, 42);
        assert!(!pdu.flags.contains(Flags::NON_DEFAULT_CONTEXT));
        assert_eq!(
            pdu.payload,
            Payload::Register(mailward_agentx::pdu::Register {
                context: None,
                timeout: 0,
                priority,
                range_subid: 0,
                subtree,
                upper_bound: 0,
            })
        );
    }
    assert_eq!(
        regs[2].payload,
        Payload::AddAgentCaps(mailward_agentx::pdu::AddAgentCaps {
            context: None,
            id: oid(ROOT).join(&[2, 1]),
            description: b"caps".to_vec(),
        })
    );
    let h = wait_health(&sub, "connected", |h| h.connected).await;
    assert_eq!((h.reconnects, h.errors), (0, 0));
    sub.shutdown().await;
}

#[tokio::test]
async fn answers_get_getnext_getbulk_exactly() {
    let rig = Rig::new();
    let listener = rig.listen();
    let sub = start_subagent(rig.config());
    let mut m = Master::accept(&listener).await;
    m.handshake(7).await;
    let r = ROOT;

    let resp = m
        .request(Payload::Get(Get {
            context: None,
            ranges: vec![
                sr(&format!("{r}.1.1.1.0"), false, ""),
                sr(&format!("{r}.1.1.2.0"), false, ""),
                sr(&format!("{r}.1.2.1.1.4"), false, ""),
                sr(&format!("{r}.1.3.0"), false, ""),
            ],
        }))
        .await;
    // IDs are echoed.
    assert_eq!(
        (resp.session_id, resp.transaction_id, resp.packet_id),
        (7, 77, m.next_packet)
    );
    assert_eq!(response(&resp).error, ErrorStatus::NO_ERROR);
    assert_eq!(
        pairs(response(&resp)),
        vec![
            (format!("{r}.1.1.1.0"), Value::Integer(42)),
            (format!("{r}.1.1.2.0"), Value::string("hello")),
            (format!("{r}.1.2.1.1.4"), Value::NoSuchInstance),
            (format!("{r}.1.3.0"), Value::NoSuchObject),
        ]
    );

    // GetNext as net-snmp sends it: scoped to the registered region.
    let resp = m
        .request(Payload::GetNext(Get {
            context: None,
            ranges: vec![
                sr(&format!("{r}.1"), true, &format!("{r}.2")),
                sr(&format!("{r}.1.1.2.0"), false, &format!("{r}.2")),
                sr(&format!("{r}.1.2.1.1.3"), false, &format!("{r}.2")),
            ],
        }))
        .await;
    assert_eq!(
        pairs(response(&resp)),
        vec![
            (format!("{r}.1.1.1.0"), Value::Integer(42)),
            (format!("{r}.1.2.1.1.1"), Value::Counter64(1000)),
            (format!("{r}.1.2.1.1.3"), Value::EndOfMibView),
        ]
    );

    let resp = m
        .request(Payload::GetBulk(GetBulk {
            context: None,
            non_repeaters: 1,
            max_repetitions: 4,
            ranges: vec![
                sr(&format!("{r}.1.1.1"), false, ""),
                sr(&format!("{r}.1.2"), false, &format!("{r}.2")),
            ],
        }))
        .await;
    assert_eq!(
        pairs(response(&resp)),
        vec![
            (format!("{r}.1.1.1.0"), Value::Integer(42)),
            (format!("{r}.1.2.1.1.1"), Value::Counter64(1000)),
            (format!("{r}.1.2.1.1.2"), Value::Counter64(2000)),
            (format!("{r}.1.2.1.1.3"), Value::Counter64(3000)),
            (format!("{r}.1.2.1.1.3"), Value::EndOfMibView),
        ]
    );

    // A little-endian request (Get of ROOT.9.1, the scalar object without
    // its .0) gets the right answer, in network byte order.
    m.next_packet += 1;
    let packet = m.next_packet;
    let mut bytes = vec![1u8, 5, 0x00, 0];
    for w in [7u32, 78, packet, 28] {
        bytes.extend_from_slice(&w.to_le_bytes());
    }
    bytes.extend_from_slice(&[5, 4, 0, 0]);
    for w in [1u32, 32473, 25, 9, 1] {
        bytes.extend_from_slice(&w.to_le_bytes());
    }
    bytes.extend_from_slice(&[0, 0, 0, 0]);
    let resp_to_le = {
        m.stream.write_all(&bytes).await.unwrap();
        m.response_to(packet).await
    };
    assert_eq!(resp_to_le.transaction_id, 78);
    assert_eq!(
        pairs(response(&resp_to_le)),
        vec![(format!("{r}.9.1"), Value::NoSuchInstance)]
    );

    // Sets are refused; CleanupSet has no response.
    let resp = m
        .request(Payload::TestSet(VarBindPdu {
            context: None,
            varbinds: vec![VarBind::new(
                oid(&format!("{r}.1.1.1.0")),
                Value::Integer(1),
            )],
        }))
        .await;
    assert_eq!((response(&resp).error.0, response(&resp).index), (17, 1));
    m.next_packet += 1;
    let cleanup = Pdu::new(7, 77, m.next_packet, Payload::CleanupSet);
    m.send(&cleanup).await;
    let resp = m.request(Payload::CommitSet).await;
    assert_eq!(response(&resp).error, ErrorStatus::COMMIT_FAILED);
    let resp = m.request(Payload::UndoSet).await;
    assert_eq!(response(&resp).error, ErrorStatus::NO_ERROR);

    // A non-default context is unsupported (262).
    let resp = m
        .request(Payload::Get(Get {
            context: Some(b"other".to_vec()),
            ranges: vec![sr(&format!("{r}.1.1.1.0"), false, "")],
        }))
        .await;
    assert_eq!(response(&resp).error.0, 262);

    // A valid header with a broken payload is answered parseError, and the
    // session goes on.
    m.next_packet += 1;
    let packet = m.next_packet;
    let mut bad = Vec::new();
    bad.extend_from_slice(&[1, 5, 0x10, 0]);
    for w in [7u32, 79, packet, 4] {
        bad.extend_from_slice(&w.to_be_bytes());
    }
    bad.extend_from_slice(&[200, 0, 0, 0]); // n_subid 200
    m.stream.write_all(&bad).await.unwrap();
    let resp = m.response_to(packet).await;
    assert_eq!(response(&resp).error, ErrorStatus::PARSE_ERROR);
    let resp = m
        .request(Payload::Get(Get {
            context: None,
            ranges: vec![sr(&format!("{r}.9.1.0"), false, "")],
        }))
        .await;
    assert_eq!(
        pairs(response(&resp)),
        vec![(format!("{r}.9.1.0"), Value::Gauge32(9))]
    );

    let h = sub.health();
    assert!(h.connected);
    assert_eq!(h.requests, 10, "{h:?}");
    assert_eq!(h.reconnects, 0);
    sub.shutdown().await;
}

#[tokio::test]
async fn reconnects_after_the_master_closes_the_socket() {
    let rig = Rig::new();
    let listener = rig.listen();
    let sub = start_subagent(rig.config());
    let mut m = Master::accept(&listener).await;
    m.handshake(1).await;
    wait_health(&sub, "connected", |h| h.connected).await;
    drop(m);
    let mut m = Master::accept(&listener).await;
    m.handshake(2).await;
    let h = wait_health(&sub, "reconnected", |h| h.connected && h.reconnects == 1).await;
    assert!(h.last_error.unwrap_or_default().contains("lost"));
    let resp = m
        .request(Payload::Get(Get {
            context: None,
            ranges: vec![sr(&format!("{ROOT}.1.1.1.0"), false, "")],
        }))
        .await;
    assert_eq!(resp.session_id, 2);
    assert_eq!(response(&resp).varbinds[0].value, Value::Integer(42));
    sub.shutdown().await;
}

#[tokio::test]
async fn reconnects_after_a_close_from_the_master() {
    let rig = Rig::new();
    let listener = rig.listen();
    let sub = start_subagent(rig.config());
    let mut m = Master::accept(&listener).await;
    m.handshake(1).await;
    let close = Pdu::new(
        1,
        0,
        5,
        Payload::Close(mailward_agentx::pdu::Close {
            reason: CloseReason::Shutdown,
        }),
    );
    m.send(&close).await;
    // The subagent drops this connection...
    assert!(m.recv_raw().await.is_none());
    // ...and opens a new session.
    let mut m = Master::accept(&listener).await;
    m.handshake(2).await;
    wait_health(&sub, "reconnected", |h| h.connected && h.reconnects == 1).await;
    sub.shutdown().await;
}

#[tokio::test]
async fn garbage_resets_the_connection_without_panic() {
    let rig = Rig::new();
    let listener = rig.listen();
    let sub = start_subagent(rig.config());
    let mut m = Master::accept(&listener).await;
    m.handshake(1).await;
    m.stream
        .write_all(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n\x00\xff\xfe garbage garbage")
        .await
        .unwrap();
    assert!(m.recv_raw().await.is_none(), "the connection is dropped");
    let mut m = Master::accept(&listener).await;
    m.handshake(2).await;
    let h = wait_health(&sub, "reconnected", |h| h.connected && h.reconnects == 1).await;
    assert!(h.errors >= 1);
    // A header declaring a huge payload is garbage too.
    let mut huge = vec![1u8, 5, 0x10, 0];
    for w in [2u32, 0, 9, u32::MAX] {
        huge.extend_from_slice(&w.to_be_bytes());
    }
    m.stream.write_all(&huge).await.unwrap();
    assert!(m.recv_raw().await.is_none());
    let mut m = Master::accept(&listener).await;
    m.handshake(3).await;
    wait_health(&sub, "reconnected twice", |h| {
        h.connected && h.reconnects == 2
    })
    .await;
    sub.shutdown().await;
}

/// Captures log lines written by tracing.
#[derive(Clone, Default)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuf {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn duplicate_registration_is_logged_and_the_rest_is_served() {
    let logs = LogBuf::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    // The test runtime is single-threaded: the subagent task logs here.
    let _guard = tracing::subscriber::set_default(subscriber);

    let rig = Rig::new();
    let listener = rig.listen();
    let sub = start_subagent(rig.config());
    let mut m = Master::accept(&listener).await;
    m.open(1).await;
    m.registrations(ErrorStatus::DUPLICATE_REGISTRATION).await;
    let h = wait_health(&sub, "the refusal", |h| h.errors == 1).await;
    assert!(h.connected);
    let last = h.last_error.unwrap();
    assert!(last.contains(&format!("{ROOT}.1")), "{last}");
    assert!(last.contains("duplicateRegistration"), "{last}");
    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains("duplicateRegistration"))
        .unwrap_or_else(|| panic!("no log line about it in:\n{text}"));
    assert!(line.contains("ERROR"), "{line}");
    assert!(line.contains(&format!("subtree={ROOT}.1")), "{line}");
    assert!(line.contains("snmp"), "{line}");
    // The other subtree is served.
    let resp = m
        .request(Payload::Get(Get {
            context: None,
            ranges: vec![sr(&format!("{ROOT}.9.1.0"), false, "")],
        }))
        .await;
    assert_eq!(response(&resp).varbinds[0].value, Value::Gauge32(9));
    // The refused registration is sent again on this session (after 5 s),
    // and refused again: counted, but not logged as an error a second
    // time (a master that keeps refusing would fill the log).
    let retry = loop {
        let pdu = m.recv().await;
        match &pdu.payload {
            Payload::Register(_) => break pdu,
            Payload::Ping(_) => m.respond(&pdu, 1, ErrorStatus::NO_ERROR).await,
            other => panic!("unexpected {other:?}"),
        }
    };
    m.respond(&retry, 1, ErrorStatus::DUPLICATE_REGISTRATION)
        .await;
    wait_health(&sub, "the second refusal", |h| h.errors == 2).await;
    let text = logs.text();
    assert_eq!(
        text.lines()
            .filter(|l| l.contains("ERROR") && l.contains("duplicateRegistration"))
            .count(),
        1,
        "one error line for one cause:\n{text}"
    );
    // After a reconnect, the refused registration is tried again.
    drop(m);
    let mut m = Master::accept(&listener).await;
    m.open(2).await;
    let regs = m.registrations(ErrorStatus::NO_ERROR).await;
    match &regs[0].payload {
        Payload::Register(r) => assert_eq!(r.subtree, oid(ROOT).child(1)),
        other => panic!("{other:?}"),
    }
    sub.shutdown().await;
}

#[tokio::test]
async fn a_master_that_stops_answering_pings_is_left() {
    let rig = Rig::new();
    let listener = rig.listen();
    let mut config = rig.config();
    // A Ping every 300 ms, each to be answered within 2 x 500 ms.
    config.timeout = Duration::from_millis(500);
    config.retries = 2;
    config.ping_interval = Duration::from_millis(300);
    let sub = start_subagent(config);
    let mut m = Master::accept(&listener).await;
    m.handshake(1).await;
    // Pings are answered for a while: the session stays.
    m.answer_pings = true;
    let started = Instant::now();
    let mut pings = 0;
    while started.elapsed() < Duration::from_millis(1200) {
        if let Ok(Some(pdu)) = timeout(Duration::from_millis(100), m.recv_raw()).await {
            assert_eq!(pdu.pdu_type(), PduType::Ping);
            assert_eq!(pdu.session_id, 1);
            m.respond(&pdu, 1, ErrorStatus::NO_ERROR).await;
            pings += 1;
        }
    }
    assert!(pings >= 2, "{pings} pings");
    assert_eq!(sub.health().reconnects, 0);
    // Then the master goes silent (but keeps the socket open).
    let silent = m;
    let mut m = Master::accept(&listener).await;
    m.handshake(2).await;
    let h = wait_health(&sub, "reconnected", |h| h.connected && h.reconnects == 1).await;
    assert!(h.last_error.unwrap().contains("Ping"));
    drop(silent);
    sub.shutdown().await;
}

fn trap_varbinds(n: &[VarBind]) -> (u32, Oid, Vec<VarBind>) {
    assert_eq!(n[0].name.as_slice(), well_known::SYS_UPTIME_0);
    let Value::TimeTicks(t) = n[0].value else {
        panic!("{:?}", n[0])
    };
    assert_eq!(n[1].name.as_slice(), well_known::SNMP_TRAP_OID_0);
    let Value::ObjectIdentifier(trap) = &n[1].value else {
        panic!("{:?}", n[1])
    };
    (t, trap.clone(), n[2..].to_vec())
}

#[tokio::test]
async fn notifications_wait_while_down_and_overflow_is_counted() {
    let rig = Rig::new();
    let mut config = rig.config();
    config.queue_limit = 3;
    // No master yet.
    let sub = start_subagent(config);
    sleep(Duration::from_millis(100)).await;
    for i in 1..=5u32 {
        sub.notify(
            oid(ROOT).join(&[0, i]),
            vec![VarBind::new(
                oid(ROOT).join(&[1, 1, 1, 0]),
                Value::Integer(i as i32),
            )],
        );
    }
    let h = sub.health();
    assert!(!h.connected);
    assert_eq!(h.notifications_dropped, 2);
    assert_eq!(h.notifications_sent, 0);
    assert!(h.last_error.unwrap().contains("cannot reach"));

    let listener = rig.listen();
    let mut m = Master::accept(&listener).await;
    m.handshake(1).await;
    let got = m.notifications(3).await;
    let traps: Vec<Oid> = got.iter().map(|n| trap_varbinds(n).1).collect();
    // The two oldest were dropped; the rest arrive in order.
    assert_eq!(
        traps,
        vec![
            oid(ROOT).join(&[0, 3]),
            oid(ROOT).join(&[0, 4]),
            oid(ROOT).join(&[0, 5])
        ]
    );
    let (_, _, rest) = trap_varbinds(&got[0]);
    assert_eq!(
        rest,
        vec![VarBind::new(
            oid(ROOT).join(&[1, 1, 1, 0]),
            Value::Integer(3)
        )]
    );
    let h = wait_health(&sub, "acknowledged", |h| h.notifications_sent == 3).await;
    assert_eq!(h.notifications_dropped, 2);

    // While connected, a notification goes out at once.
    sub.notify(oid(ROOT).join(&[0, 9]), Vec::new());
    let got = m.notifications(1).await;
    let (ticks, trap, rest) = trap_varbinds(&got[0]);
    assert_eq!(trap, oid(ROOT).join(&[0, 9]));
    assert!(rest.is_empty());
    assert!(ticks < 100 * 60, "uptime {ticks} ticks");
    sub.shutdown().await;
}

/// Sets the subagent's on_sent hook to record what the master took.
fn record_sent(config: &mut SubagentConfig) -> Arc<Mutex<Vec<Oid>>> {
    let sent: Arc<Mutex<Vec<Oid>>> = Arc::default();
    let told = Arc::clone(&sent);
    config.on_sent = Some(SentHook(Arc::new(move |trap: &Oid| {
        told.lock().unwrap().push(trap.clone())
    })));
    sent
}

#[tokio::test]
async fn notifications_carry_the_masters_clock_as_of_when_they_were_raised() {
    let rig = Rig::new();
    let mut config = rig.config();
    let sent = record_sent(&mut config);
    // Raised before any master: queued, not yet sent.
    let sub = start_subagent(config);
    sub.notify(oid(ROOT).join(&[0, 1]), Vec::new());
    assert!(sent.lock().unwrap().is_empty(), "told sent while queued");

    // A master that has been up for an hour (360000 ticks) opens the
    // session: the trap says when it was raised on that master's clock,
    // an hour less the moments it waited, not the subagent's own (near 0).
    let listener = rig.listen();
    let mut m = Master::accept(&listener).await;
    m.uptime = 360_000;
    m.handshake(1).await;
    let got = m.notifications(1).await;
    let (ticks, trap, _) = trap_varbinds(&got[0]);
    assert_eq!(trap, oid(ROOT).join(&[0, 1]));
    assert!(
        (350_000..=360_000).contains(&ticks),
        "sysUpTime.0 {ticks}, expected the master's 360000 less the wait"
    );
    wait_health(&sub, "acknowledged", |h| h.notifications_sent == 1).await;
    assert_eq!(*sent.lock().unwrap(), vec![oid(ROOT).join(&[0, 1])]);

    // The master goes; a trap raised during the outage goes to the next
    // master, which started after it was raised (the reconnect waits at
    // least 0.5 s; this master says it has been up 0.01 s): 0, not the
    // first master's clock run on.
    drop(m);
    wait_health(&sub, "disconnected", |h| !h.connected).await;
    sub.notify(oid(ROOT).join(&[0, 2]), Vec::new());
    let mut m = Master::accept(&listener).await;
    m.uptime = 1;
    m.handshake(2).await;
    let got = m.notifications(1).await;
    let (ticks, trap, _) = trap_varbinds(&got[0]);
    assert_eq!(trap, oid(ROOT).join(&[0, 2]));
    assert_eq!(
        ticks, 0,
        "sysUpTime.0 of a trap raised before this master started"
    );
    wait_health(&sub, "acknowledged", |h| h.notifications_sent == 2).await;
    assert_eq!(
        *sent.lock().unwrap(),
        vec![oid(ROOT).join(&[0, 1]), oid(ROOT).join(&[0, 2])]
    );
    sub.shutdown().await;
}

#[tokio::test]
async fn a_refused_notification_is_not_told_sent() {
    let rig = Rig::new();
    let mut config = rig.config();
    let sent = record_sent(&mut config);
    let listener = rig.listen();
    let sub = start_subagent(config);
    let mut m = Master::accept(&listener).await;
    m.handshake(1).await;
    sub.notify(oid(ROOT).join(&[0, 3]), Vec::new());
    let pdu = m.recv().await;
    assert_eq!(pdu.pdu_type(), PduType::Notify);
    m.respond(&pdu, 1, ErrorStatus::PROCESSING_ERROR).await;
    let h = wait_health(&sub, "the refusal", |h| h.errors > 0).await;
    assert_eq!(h.notifications_sent, 0);
    assert!(
        sent.lock().unwrap().is_empty(),
        "a refused trap was told sent"
    );
    sub.shutdown().await;
}

#[tokio::test]
async fn an_unacknowledged_notification_is_sent_again_after_a_reconnect() {
    let rig = Rig::new();
    let listener = rig.listen();
    let sub = start_subagent(rig.config());
    let mut m = Master::accept(&listener).await;
    m.handshake(1).await;
    sub.notify(oid(ROOT).join(&[0, 1]), Vec::new());
    let pdu = m.recv().await;
    assert_eq!(pdu.pdu_type(), PduType::Notify);
    drop(m); // without acknowledging it
    let mut m = Master::accept(&listener).await;
    m.handshake(2).await;
    let got = m.notifications(1).await;
    assert_eq!(trap_varbinds(&got[0]).1, oid(ROOT).join(&[0, 1]));
    wait_health(&sub, "acknowledged", |h| h.notifications_sent == 1).await;
    sub.shutdown().await;
}

#[tokio::test]
async fn shutdown_sends_what_is_queued_then_close() {
    let rig = Rig::new();
    let listener = rig.listen();
    let sub = start_subagent(rig.config());
    let mut m = Master::accept(&listener).await;
    m.handshake(1).await;
    wait_health(&sub, "connected", |h| h.connected).await;
    sub.notify(oid(ROOT).join(&[0, 2]), Vec::new());
    let stopping = tokio::spawn(sub.shutdown());
    let got = m.notifications(1).await;
    assert_eq!(trap_varbinds(&got[0]).1, oid(ROOT).join(&[0, 2]));
    let close = m.recv().await;
    assert_eq!(
        close.payload,
        Payload::Close(mailward_agentx::pdu::Close {
            reason: CloseReason::Shutdown
        })
    );
    assert_eq!(close.session_id, 1);
    m.respond(&close, 1, ErrorStatus::NO_ERROR).await;
    timeout(WAIT, stopping).await.unwrap().unwrap();
    assert!(m.recv_raw().await.is_none());
}

#[tokio::test]
async fn starts_without_a_master_and_connects_when_it_appears() {
    let rig = Rig::new();
    let sub = start_subagent(rig.config());
    sleep(Duration::from_millis(700)).await;
    assert!(!sub.health().connected);
    let listener = rig.listen();
    let mut m = Master::accept(&listener).await;
    m.handshake(1).await;
    let h = wait_health(&sub, "connected", |h| h.connected).await;
    // The first session is not a reconnect; the failed attempts are one
    // error (the outage), not one per attempt.
    assert_eq!((h.reconnects, h.errors), (0, 1));
    sub.shutdown().await;
}

#[tokio::test]
async fn connects_over_tcp() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let rig = Rig::new();
    let mut config = rig.config();
    config.endpoint = Endpoint::parse(&format!("tcp:127.0.0.1:{port}")).unwrap();
    let sub = start_subagent(config);
    let mut m = Master::accept_tcp(&listener).await;
    m.handshake(3).await;
    let resp = m
        .request(Payload::Get(Get {
            context: None,
            ranges: vec![sr(&format!("{ROOT}.1.1.2.0"), false, "")],
        }))
        .await;
    assert_eq!(response(&resp).varbinds[0].value, Value::string("hello"));
    wait_health(&sub, "connected", |h| h.connected).await;
    sub.shutdown().await;
}
