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
use crate::oid::{well_known, Oid};
use crate::session::Session;
use crate::value::{Value, VarBind};
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
    /// full, the oldest is dropped (and counted).
    pub queue_limit: usize,
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
        }
    }
}

/// A queued notification: its complete VarBindList (sysUpTime.0 and
/// snmpTrapOID.0 first).
#[derive(Clone, Debug)]
pub(crate) struct Notification {
    /// The VarBinds of the Notify-PDU.
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
    /// When the subagent started: the origin of the notifications'
    /// sysUpTime.0.
    started: Instant,
    /// The master's sysUpTime (from the response to our Open) and when we
    /// learnt it: notifications carry the master's clock, so that an NMS
    /// sees one sysUpTime from one agent address.
    master_clock: Mutex<Option<(u32, Instant)>>,
    /// The queue's bound (at least 1).
    queue_limit: usize,
}

impl Shared {
    fn new(queue_limit: usize) -> Shared {
        Shared {
            health: HealthCounters::default(),
            queue: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            started: Instant::now(),
            master_clock: Mutex::new(None),
            queue_limit: queue_limit.max(1),
        }
    }

    /// The master's uptime now, in hundredths of a second (wrapping, as
    /// TimeTicks do); before any master was seen, the subagent's own.
    fn uptime_ticks(&self) -> u32 {
        let clock = *self.master_clock.lock().unwrap_or_else(|e| e.into_inner());
        match clock {
            Some((ticks, at)) => ticks.wrapping_add((at.elapsed().as_millis() / 10) as u32),
            None => (self.started.elapsed().as_millis() / 10) as u32,
        }
    }

    /// Records the master's sysUpTime from the response to an Open.
    pub(crate) fn set_master_uptime(&self, ticks: u32) {
        *self.master_clock.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((ticks, Instant::now()));
    }

    /// Queues a notification, dropping the oldest when full.
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

    fn trim(&self, q: &mut VecDeque<Notification>) -> usize {
        let mut dropped = 0;
        while q.len() > self.queue_limit {
            q.pop_front();
            dropped += 1;
        }
        dropped
    }

    fn report_drops(&self, dropped: usize) {
        for _ in 0..dropped {
            Event::NotificationDropped {
                queue_limit: self.queue_limit,
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
    let shared = Arc::new(Shared::new(config.queue_limit));
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
    /// Sends a notification: a Notify-PDU whose VarBinds are sysUpTime.0
    /// (TimeTicks since the subagent started), snmpTrapOID.0 = `trap_oid`,
    /// then `varbinds`. While no session is open it waits in the bounded
    /// queue. Never blocks.
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
        let mut all = Vec::with_capacity(varbinds.len() + 2);
        all.push(VarBind::new(
            Oid::from_slice(well_known::SYS_UPTIME_0),
            Value::TimeTicks(self.shared.uptime_ticks()),
        ));
        all.push(VarBind::new(
            Oid::from_slice(well_known::SNMP_TRAP_OID_0),
            Value::ObjectIdentifier(trap_oid),
        ));
        all.extend(varbinds);
        self.shared.enqueue(Notification { varbinds: all });
    }

    /// See [`Subagent::health`].
    pub fn health(&self) -> Health {
        self.shared.health.snapshot()
    }
}

#[cfg(test)]
mod clock_tests {
    use super::*;

    #[test]
    fn notifications_carry_the_masters_clock_once_known() {
        let shared = Shared::new(10);
        assert!(shared.uptime_ticks() < 100, "own clock before any master");
        shared.set_master_uptime(123_456);
        let t = shared.uptime_ticks();
        assert!((123_456..123_556).contains(&t), "{t}");
        shared.set_master_uptime(u32::MAX);
        std::thread::sleep(std::time::Duration::from_millis(30));
        assert!(shared.uptime_ticks() < 100, "TimeTicks wrap");
    }
}
