//! The subagent as its owner sees it: `SubagentConfig`, `start`, and the
//! `Subagent` handle for notifications, health and shutdown. It owns the
//! notification queue shared with the session task; the AgentX exchange
//! itself is in `session.rs`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::endpoint::Endpoint;
use crate::events::Event;
use crate::health::{Health, HealthCounters};
use crate::oid::Oid;
use crate::session::Session;
use crate::value::VarBind;
use crate::view::ViewProvider;

/// The registration priority RFC 2741 recommends by default.
pub const DEFAULT_PRIORITY: u8 = 127;

/// The default notification queue size.
pub const DEFAULT_QUEUE_LIMIT: usize = 100;

/// One MIB region to register with the master (default context).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    /// The subtree served.
    pub subtree: Oid,
    /// 1..=255, smaller wins when two sessions register the same subtree;
    /// [`DEFAULT_PRIORITY`] unless there is a reason.
    pub priority: u8,
}

impl Registration {
    /// A registration of `subtree` at the default priority.
    pub fn new(subtree: Oid) -> Registration {
        Registration {
            subtree,
            priority: DEFAULT_PRIORITY,
        }
    }
}

/// How the subagent reaches its master and what it registers.
#[derive(Clone, Debug)]
pub struct SubagentConfig {
    /// Where the master listens.
    pub endpoint: Endpoint,
    /// How long to wait for one answer from the master; also sent as the
    /// Open-PDU's `o.timeout` (net-snmp ignores it: its own `agentXTimeout`
    /// rules how long it waits for us).
    pub timeout: Duration,
    /// How many `timeout`s a response (to a Ping, Register, Notify...) may
    /// take before the master is presumed dead and the session is reset.
    pub retries: u32,
    /// How often to Ping the master to notice a dead session; zero
    /// disables pings.
    pub ping_interval: Duration,
    /// Identifies the subagent in the Open-PDU (`o.id`).
    pub id: Oid,
    /// Describes the subagent in the Open-PDU (`o.descr`).
    pub description: String,
    /// The subtrees to register on each new session.
    pub registrations: Vec<Registration>,
    /// Agent capabilities (sysORID, sysORDescr) to add on each new session.
    pub agent_caps: Vec<(Oid, String)>,
    /// How many notifications may wait while no session is open; when
    /// full, the oldest is dropped (and counted), but see `kept`.
    pub queue_limit: usize,
    /// The snmpTrapOID.0 of notifications a full queue drops only when it
    /// holds nothing else: the oldest of the others goes first. For a
    /// start notification, which a long master outage at start would
    /// otherwise lose behind a hundred later ones, although it is the one
    /// an NMS most needs (walkAA 5).
    pub kept: Vec<Oid>,
    /// Told the snmpTrapOID.0 of each notification the master acknowledged:
    /// the owner counts notifications sent (not merely raised) where it
    /// keeps its own statistics. None: nobody is told.
    pub on_sent: Option<SentHook>,
}

/// A function the session task calls, with the notification's
/// snmpTrapOID.0, when the master acknowledges a Notify-PDU. It runs on
/// the session task: it must be quick and must not block.
#[derive(Clone)]
pub struct SentHook(pub Arc<dyn Fn(&Oid) + Send + Sync>);

impl std::fmt::Debug for SentHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SentHook")
    }
}

impl SubagentConfig {
    /// A configuration with net-snmp-like defaults (timeout 1 s, 5
    /// retries, ping every 15 s, queue of 100) and nothing registered.
    pub fn new(endpoint: Endpoint) -> SubagentConfig {
        SubagentConfig {
            endpoint,
            timeout: Duration::from_secs(1),
            retries: 5,
            ping_interval: Duration::from_secs(15),
            id: Oid::null(),
            description: String::from("AgentX subagent"),
            registrations: Vec::new(),
            agent_caps: Vec::new(),
            queue_limit: DEFAULT_QUEUE_LIMIT,
            kept: Vec::new(),
            on_sent: None,
        }
    }
}

/// A queued notification. Its sysUpTime.0 is not part of it: that is
/// computed when it is sent, on the clock of the master it is sent to.
#[derive(Clone, Debug)]
pub(crate) struct Notification {
    /// When it was raised: its sysUpTime.0 is the master's uptime at that
    /// moment, however long it waited in the queue.
    pub(crate) raised: Instant,
    /// snmpTrapOID.0.
    pub(crate) trap_oid: Oid,
    /// The VarBinds after sysUpTime.0 and snmpTrapOID.0.
    pub(crate) varbinds: Vec<VarBind>,
}

/// What the owner's handles and the session task share.
pub(crate) struct Shared {
    /// The health counters.
    pub(crate) health: HealthCounters,
    /// Notifications not yet handed to the master.
    queue: Mutex<VecDeque<Notification>>,
    /// Wakes the session task when a notification is queued.
    pub(crate) wake: Notify,
    /// When the subagent started: the origin of sysUpTime.0 should a
    /// notification ever be stamped before any master was seen (the
    /// session only sends after an Open, which sets `master_clock`).
    started: Instant,
    /// The master's sysUpTime (from the response to our Open on the
    /// current session) and when we learnt it: notifications carry the
    /// master's clock, so that an NMS sees one sysUpTime from one agent
    /// address.
    master_clock: Mutex<Option<(u32, Instant)>>,
    /// The queue's bound (at least 1).
    queue_limit: usize,
    /// [`SubagentConfig::kept`].
    kept: Vec<Oid>,
}

impl Shared {
    fn new(queue_limit: usize, kept: Vec<Oid>) -> Shared {
        Shared {
            health: HealthCounters::default(),
            queue: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            started: Instant::now(),
            master_clock: Mutex::new(None),
            queue_limit: queue_limit.max(1),
            kept,
        }
    }

    /// sysUpTime.0 of a notification raised at `raised` and sent now, on
    /// the clock of the master of the current session.
    pub(crate) fn sys_uptime_of(&self, raised: Instant) -> u32 {
        let clock = *self.master_clock.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match clock {
            Some(master) => sys_uptime_at(master, raised, now),
            None => sys_uptime_at((0, self.started), raised, now),
        }
    }

    /// Records the master's sysUpTime from the response to an Open (each
    /// new session: a restarted master starts its clock again).
    pub(crate) fn set_master_uptime(&self, ticks: u32) {
        *self.master_clock.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((ticks, Instant::now()));
    }

    /// Queues a notification, dropping the oldest when full (see
    /// [`Shared::trim`]).
    fn enqueue(&self, n: Notification) {
        let dropped = {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            q.push_back(n);
            self.trim(&mut q)
        };
        self.report_drops(dropped);
        self.wake.notify_one();
    }

    /// Puts back notifications that were sent but not acknowledged when a
    /// session was lost, in front of the queue and in their order.
    pub(crate) fn requeue_front(&self, ns: Vec<Notification>) {
        if ns.is_empty() {
            return;
        }
        let dropped = {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            for n in ns.into_iter().rev() {
                q.push_front(n);
            }
            self.trim(&mut q)
        };
        self.report_drops(dropped);
    }

    /// The oldest queued notification.
    pub(crate) fn pop(&self) -> Option<Notification> {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
    }

    /// Drops notifications past the limit: the oldest that is not one
    /// of `kept`, or the oldest when all are. Returns their trap OIDs.
    fn trim(&self, q: &mut VecDeque<Notification>) -> Vec<Oid> {
        let mut dropped = Vec::new();
        while q.len() > self.queue_limit {
            let oldest = q
                .iter()
                .position(|n| !self.kept.contains(&n.trap_oid))
                .unwrap_or(0);
            match q.remove(oldest) {
                Some(n) => dropped.push(n.trap_oid),
                None => break,
            }
        }
        dropped
    }

    fn report_drops(&self, dropped: Vec<Oid>) {
        for trap in dropped {
            Event::NotificationDropped {
                queue_limit: self.queue_limit,
                trap,
            }
            .emit(&self.health);
        }
    }
}

/// Starts the subagent: spawns its session task on the current Tokio
/// runtime and returns at once, whether or not a master is up (the task
/// keeps connecting, with capped exponential back-off).
///
/// # Panics
///
/// When called outside a Tokio runtime (as `tokio::spawn` does).
pub fn start(config: SubagentConfig, view: ViewProvider) -> Subagent {
    let shared = Arc::new(Shared::new(config.queue_limit, config.kept.clone()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let session = Session::new(config, view, Arc::clone(&shared));
    let task = tokio::spawn(session.run(stop_rx));
    Subagent {
        handle: SubagentHandle { shared },
        stop: stop_tx,
        task,
    }
}

/// A running subagent. [`Subagent::shutdown`] stops it and waits for the
/// Close; dropping it stops it the same way, in the background.
pub struct Subagent {
    /// For notify and health.
    handle: SubagentHandle,
    /// Tells the task to stop.
    stop: watch::Sender<bool>,
    /// The session task, awaited on shutdown.
    task: JoinHandle<()>,
}

impl Subagent {
    /// Sends a notification: a Notify-PDU whose VarBinds are sysUpTime.0,
    /// snmpTrapOID.0 = `trap_oid`, then `varbinds`. While no session is
    /// open it waits in the bounded queue. Never blocks.
    ///
    /// sysUpTime.0 is the uptime of the master it is sent to, at the
    /// moment of this call: computed when the Notify-PDU is sent, from the
    /// master's sysUpTime learnt at the Open, so a notification that waited
    /// for a master still carries the time it was raised; one raised before
    /// that master started carries 0.
    pub fn notify(&self, trap_oid: Oid, varbinds: Vec<VarBind>) {
        self.handle.notify(trap_oid, varbinds)
    }

    /// The subagent's health now.
    pub fn health(&self) -> Health {
        self.handle.health()
    }

    /// A cloneable handle for notify and health, for other tasks.
    pub fn handle(&self) -> SubagentHandle {
        self.handle.clone()
    }

    /// Stops the subagent: sends what is queued (waiting at most
    /// `timeout * retries` for the master to take it), closes the session
    /// with reason shutdown, and ends the task.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// A cloneable handle to a running subagent: notifications and health.
#[derive(Clone)]
pub struct SubagentHandle {
    /// Shared with the session task.
    shared: Arc<Shared>,
}

impl SubagentHandle {
    /// See [`Subagent::notify`].
    pub fn notify(&self, trap_oid: Oid, varbinds: Vec<VarBind>) {
        self.shared.enqueue(Notification {
            raised: Instant::now(),
            trap_oid,
            varbinds,
        });
    }

    /// See [`Subagent::health`].
    pub fn health(&self) -> Health {
        self.shared.health.snapshot()
    }
}

/// The hundredths of a second in `d` (TimeTicks' unit).
fn ticks(d: Duration) -> u64 {
    (d.as_millis() / 10).min(u128::from(u64::MAX)) as u64
}

/// sysUpTime.0 of a notification raised at `raised` and sent at `now` to
/// a master whose sysUpTime was `master.0` at `master.1`: the master's
/// uptime now, less the time since the notification was raised. 0 when it
/// was raised before that master started (it cannot carry a time from
/// before the clock it is told on). Wraps like TimeTicks.
fn sys_uptime_at(master: (u32, Instant), raised: Instant, now: Instant) -> u32 {
    let (at_open, learnt) = master;
    // The master's uptime now, unwrapped: its clock ran on since we learnt it.
    let master_now = u64::from(at_open) + ticks(now.saturating_duration_since(learnt));
    let age = ticks(now.saturating_duration_since(raised));
    // TimeTicks wrap at 2^32; the truncation is that wrap.
    master_now.saturating_sub(age) as u32
}

#[cfg(test)]
mod clock_tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_notification_sent_at_once_carries_the_masters_uptime_now() {
        let open = Instant::now();
        // The master said 1234.56 s at the Open; 10 s later a trap is
        // raised and sent at once.
        let now = open + 10 * S;
        assert_eq!(sys_uptime_at((123_456, open), now, now), 124_456);
    }

    #[test]
    fn a_notification_raised_before_the_session_carries_when_it_was_raised() {
        // snmpd up 60 s when we open; the trap was raised 2 s before the
        // Open and sent 0.5 s after it: 58 s on snmpd's clock, not 0.
        let raised = Instant::now();
        let open = raised + 2 * S;
        let sent = open + S / 2;
        assert_eq!(sys_uptime_at((6_000, open), raised, sent), 5_800);
    }

    #[test]
    fn a_notification_raised_before_this_master_started_carries_zero() {
        // Raised during an outage, 30 s before the new snmpd (up 2 s at
        // the Open) started: not the old master's clock extrapolated.
        let raised = Instant::now();
        let open = raised + 32 * S;
        assert_eq!(sys_uptime_at((200, open), raised, open + S), 0);
    }

    #[test]
    fn sys_uptime_wraps_like_timeticks() {
        let open = Instant::now();
        assert_eq!(sys_uptime_at((u32::MAX, open), open + S, open + S), 99);
    }

    fn raised(trap: &[u32]) -> Notification {
        Notification {
            raised: Instant::now(),
            trap_oid: Oid::from(trap.to_vec()),
            varbinds: Vec::new(),
        }
    }

    fn queued(shared: &Shared) -> Vec<u32> {
        std::iter::from_fn(|| shared.pop())
            .map(|n| *n.trap_oid.as_slice().last().unwrap_or(&0))
            .collect()
    }

    /// walkAA 5: a master down at start, then more notifications than
    /// the queue holds: the start notification (kept) is still sent, the
    /// oldest of the others are dropped.
    #[test]
    fn a_full_queue_drops_the_oldest_but_keeps_the_kept() {
        let start = [1, 3, 6, 1, 4, 1, 32473, 25, 0, 1];
        let shared = Shared::new(3, vec![Oid::from(start.to_vec())]);
        shared.enqueue(raised(&start));
        for i in 4..=9 {
            shared.enqueue(raised(&[1, 3, 6, 1, 4, 1, 32473, 25, 0, i]));
        }
        assert_eq!(shared.health.snapshot().notifications_dropped, 4);
        assert_eq!(queued(&shared), vec![1, 8, 9]);
        // Nothing kept: the oldest goes, as before.
        let plain = Shared::new(2, Vec::new());
        for i in 1..=3 {
            plain.enqueue(raised(&[1, 3, 6, 1, 4, 1, 32473, 25, 0, i]));
        }
        assert_eq!(queued(&plain), vec![2, 3]);
        // Only kept ones: the oldest of them goes.
        let all = Shared::new(1, vec![Oid::from(start.to_vec())]);
        all.enqueue(raised(&start));
        all.enqueue(raised(&start));
        assert_eq!(all.health.snapshot().notifications_dropped, 1);
        assert_eq!(queued(&all).len(), 1);
    }

    #[test]
    fn shared_uses_the_clock_of_the_latest_open() {
        let shared = Shared::new(10, Vec::new());
        let raised = Instant::now();
        shared.set_master_uptime(500_000);
        let t = shared.sys_uptime_of(raised);
        assert!((499_900..=500_100).contains(&t), "{t}");
        // A restarted master: its own, younger clock from now on.
        shared.set_master_uptime(3);
        let t = shared.sys_uptime_of(Instant::now());
        assert!(t < 100, "{t}");
    }
}
