//! The subagent's own health: whether a session is open and how many
//! reconnects, requests, errors and notifications there were. Kept in
//! atomics so that reading it (for statistics or a status page) is cheap
//! and never waits for the session task. Only `events.rs` changes it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// A snapshot of the subagent's health.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Health {
    /// Whether an AgentX session with the master is open now.
    pub connected: bool,
    /// Subtrees the master accepted on the current session: an open session
    /// serves nothing while its registration is refused (another subagent
    /// holds the subtree), so `connected` alone does not say "served".
    pub registered: u64,
    /// Sessions opened after the first one (each is a recovery from a lost
    /// or refused session).
    pub reconnects: u64,
    /// Requests from the master answered (Get, GetNext, GetBulk and the
    /// Set phases).
    pub requests: u64,
    /// Errors: failed connects (once per outage and cause), refused Open, Register,
    /// AddAgentCaps or Notify, unparsable PDUs, lost sessions.
    pub errors: u64,
    /// Notifications the master acknowledged.
    pub notifications_sent: u64,
    /// Notifications dropped because the queue was full.
    pub notifications_dropped: u64,
    /// The most recent error, as a sentence.
    pub last_error: Option<String>,
}

/// The live counters behind [`Health`].
#[derive(Debug, Default)]
pub(crate) struct HealthCounters {
    /// See [`Health::connected`].
    pub(crate) connected: AtomicBool,
    /// See [`Health::registered`].
    pub(crate) registered: AtomicU64,
    /// Sessions opened so far (the first one is not a reconnect).
    pub(crate) sessions_opened: AtomicU64,
    /// See [`Health::reconnects`].
    pub(crate) reconnects: AtomicU64,
    /// See [`Health::requests`].
    pub(crate) requests: AtomicU64,
    /// See [`Health::errors`].
    pub(crate) errors: AtomicU64,
    /// See [`Health::notifications_sent`].
    pub(crate) notifications_sent: AtomicU64,
    /// See [`Health::notifications_dropped`].
    pub(crate) notifications_dropped: AtomicU64,
    /// See [`Health::last_error`].
    pub(crate) last_error: Mutex<Option<String>>,
}

impl HealthCounters {
    pub(crate) fn snapshot(&self) -> Health {
        Health {
            connected: self.connected.load(Ordering::Relaxed),
            registered: self.registered.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            notifications_sent: self.notifications_sent.load(Ordering::Relaxed),
            notifications_dropped: self.notifications_dropped.load(Ordering::Relaxed),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }

    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn error(&self, message: String) {
        Self::add(&self.errors);
        self.note(message);
    }

    /// Keeps `message` as the last error without counting it (a failure
    /// already counted, again).
    pub(crate) fn note(&self, message: String) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(message);
    }
}
