//! The working queue: every message between acceptance and its last
//! recipient's final result, in memory (the spool holds the durable copy).
//! It knows when each message is due and hands due messages to delivery; it
//! does not talk SMTP. The admin commands (`queue list|show|flush|remove|
//! hold|release`) read and change it. A held message is never due: it
//! waits, out of the schedule, until it is released.

use crate::envelope::{Envelope, QueueId};
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use tokio::sync::Notify;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("no message {0} in the queue")]
    NotFound(QueueId),
    #[error("message {0} is being delivered right now; try again in a moment")]
    Busy(QueueId),
    #[error("message {0} is held already")]
    AlreadyHeld(QueueId),
    #[error("message {0} is not held")]
    NotHeld(QueueId),
    #[error("queue state is unavailable (internal error)")]
    Poisoned,
}

struct Entry {
    envelope: Envelope,
    /// A delivery attempt holds it; it is not due again until it returns.
    in_flight: bool,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<QueueId, Entry>,
    /// (due time, id) of every entry not in flight.
    due: BTreeSet<(i64, QueueId)>,
    bytes: u64,
}

#[derive(Default)]
pub struct Queue {
    inner: Mutex<Inner>,
    wake: Notify,
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The entry of `id`, unless a delivery attempt holds it (an administrator
/// changes only messages at rest).
fn at_rest<'a>(
    entries: &'a mut HashMap<QueueId, Entry>,
    id: &QueueId,
) -> Result<&'a mut Entry, QueueError> {
    match entries.get_mut(id) {
        None => Err(QueueError::NotFound(id.clone())),
        Some(e) if e.in_flight => Err(QueueError::Busy(id.clone())),
        Some(e) => Ok(e),
    }
}

impl Queue {
    pub fn new() -> Queue {
        Queue::default()
    }

    /// Adds a spooled message; it is due at `next_attempt` (0 = now).
    pub fn enqueue(&self, envelope: Envelope) {
        if let Ok(mut inner) = self.inner.lock() {
            let id = envelope.id.clone();
            inner.bytes += envelope.size;
            if !envelope.held {
                inner.due.insert((envelope.next_attempt, id.clone()));
            }
            if let Some(old) = inner.entries.insert(
                id,
                Entry {
                    envelope,
                    in_flight: false,
                },
            ) {
                inner.bytes -= old.envelope.size;
                inner
                    .due
                    .remove(&(old.envelope.next_attempt, old.envelope.id));
            }
        }
        self.wake.notify_one();
    }

    /// Takes the messages due now (marking them in flight), and says when
    /// the next one falls due.
    pub fn take_due(&self, max: usize) -> (Vec<Envelope>, Option<i64>) {
        let Ok(mut inner) = self.inner.lock() else {
            return (Vec::new(), None);
        };
        let t = now();
        let mut out = Vec::new();
        while out.len() < max {
            let Some(first) = inner.due.first().cloned() else {
                break;
            };
            if first.0 > t {
                break;
            }
            inner.due.remove(&first);
            if let Some(entry) = inner.entries.get_mut(&first.1) {
                entry.in_flight = true;
                out.push(entry.envelope.clone());
            }
        }
        let next = inner.due.first().map(|(t, _)| *t);
        (out, next)
    }

    /// An attempt is over: keep the new state (due again at its
    /// `next_attempt`), or drop the message when it is done.
    pub fn complete(&self, envelope: Envelope) {
        if let Ok(mut inner) = self.inner.lock() {
            let id = envelope.id.clone();
            if envelope.is_done() {
                if let Some(old) = inner.entries.remove(&id) {
                    inner.bytes -= old.envelope.size;
                }
            } else if let Some(entry) = inner.entries.get_mut(&id) {
                let (due, held) = (envelope.next_attempt, envelope.held);
                entry.envelope = envelope;
                entry.in_flight = false;
                if !held {
                    inner.due.insert((due, id));
                }
            }
        }
        self.wake.notify_one();
    }

    /// Waits until something may have become due.
    pub async fn changed(&self) {
        self.wake.notified().await
    }

    /// Makes every waiting message due now.
    pub fn flush(&self) -> usize {
        let Ok(mut inner) = self.inner.lock() else {
            return 0;
        };
        let waiting: Vec<(i64, QueueId)> = inner.due.iter().cloned().collect();
        inner.due.clear();
        for (_, id) in &waiting {
            if let Some(e) = inner.entries.get_mut(id) {
                e.envelope.next_attempt = 0;
            }
            inner.due.insert((0, id.clone()));
        }
        drop(inner);
        self.wake.notify_one();
        waiting.len()
    }

    /// Holds a message: out of the schedule until [`Queue::release`]. Returns
    /// the envelope as it is now, for the caller to record in the spool.
    pub fn hold(&self, id: &QueueId) -> Result<Envelope, QueueError> {
        let mut inner = self.inner.lock().map_err(|_| QueueError::Poisoned)?;
        let entry = at_rest(&mut inner.entries, id)?;
        if entry.envelope.held {
            return Err(QueueError::AlreadyHeld(id.clone()));
        }
        entry.envelope.held = true;
        let env = entry.envelope.clone();
        inner.due.remove(&(env.next_attempt, id.clone()));
        Ok(env)
    }

    /// Releases a held message: due at once. Returns the envelope as it is
    /// now, for the caller to record in the spool.
    pub fn release(&self, id: &QueueId) -> Result<Envelope, QueueError> {
        let mut inner = self.inner.lock().map_err(|_| QueueError::Poisoned)?;
        let entry = at_rest(&mut inner.entries, id)?;
        if !entry.envelope.held {
            return Err(QueueError::NotHeld(id.clone()));
        }
        entry.envelope.held = false;
        entry.envelope.next_attempt = 0;
        let env = entry.envelope.clone();
        inner.due.insert((0, id.clone()));
        drop(inner);
        self.wake.notify_one();
        Ok(env)
    }

    /// Takes a message out of the queue (the caller records it in the spool).
    pub fn take(&self, id: &QueueId) -> Result<Envelope, QueueError> {
        let mut inner = self.inner.lock().map_err(|_| QueueError::Poisoned)?;
        at_rest(&mut inner.entries, id)?;
        let entry = inner
            .entries
            .remove(id)
            .ok_or_else(|| QueueError::NotFound(id.clone()))?;
        inner.bytes -= entry.envelope.size;
        inner.due.remove(&(entry.envelope.next_attempt, id.clone()));
        Ok(entry.envelope)
    }

    pub fn get(&self, id: &QueueId) -> Option<Envelope> {
        self.inner
            .lock()
            .ok()?
            .entries
            .get(id)
            .map(|e| e.envelope.clone())
    }

    /// Every message, oldest first.
    pub fn list(&self) -> Vec<Envelope> {
        let Ok(inner) = self.inner.lock() else {
            return Vec::new();
        };
        let mut out: Vec<Envelope> = inner.entries.values().map(|e| e.envelope.clone()).collect();
        out.sort_by(|a, b| (a.received_at, &a.id).cmp(&(b.received_at, &b.id)));
        out
    }

    /// Messages held by an administrator.
    pub fn held(&self) -> usize {
        self.inner
            .lock()
            .map(|i| i.entries.values().filter(|e| e.envelope.held).count())
            .unwrap_or(0)
    }

    /// (messages, octets) in the queue.
    pub fn size(&self) -> (usize, u64) {
        self.inner
            .lock()
            .map(|i| (i.entries.len(), i.bytes))
            .unwrap_or((0, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{RcptState, Recipient};

    fn env(next: i64) -> Envelope {
        Envelope {
            id: QueueId::generate(),
            received_at: 1,
            client_ip: "127.0.0.1".parse().unwrap(),
            helo: "h".into(),
            mail_from: "a@b".into(),
            ret: None,
            envid: None,
            eight_bit: false,
            size: 10,
            rcpts: vec![Recipient::new("c@d".into())],
            attempts: 0,
            next_attempt: next,
            delay_notified: false,
            is_bounce: false,
            scanned: false,
            added_headers: String::new(),
            tls: false,
            dnsbl_listed: Vec::new(),
            auth: Default::default(),
            forwarded_by: None,
            upstream_id: None,
            milter: false,
            sasl_user: None,
            held: false,
        }
    }

    #[test]
    fn due_messages_are_taken_once_and_come_back_when_deferred() {
        let q = Queue::new();
        let a = env(0);
        let later = env(now() + 3600);
        q.enqueue(a.clone());
        q.enqueue(later.clone());
        let (due, next) = q.take_due(10);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].id, a.id);
        assert_eq!(next, Some(later.next_attempt));
        assert!(q.take_due(10).0.is_empty(), "in flight: not due twice");
        assert!(matches!(q.take(&a.id), Err(QueueError::Busy(_))));
        let mut back = due[0].clone();
        back.next_attempt = 0;
        q.complete(back);
        assert_eq!(q.take_due(10).0.len(), 1);
        assert_eq!(q.size(), (2, 20));
    }

    #[test]
    fn done_messages_leave_and_flush_makes_all_due() {
        let q = Queue::new();
        let a = env(0);
        q.enqueue(a);
        let (mut due, _) = q.take_due(10);
        let mut done = due.remove(0);
        done.rcpts[0].state = RcptState::Delivered {
            reply: "250 ok".into(),
            at: 1,
        };
        q.complete(done);
        assert_eq!(q.size(), (0, 0));
        q.enqueue(env(now() + 3600));
        q.enqueue(env(now() + 7200));
        assert_eq!(q.flush(), 2);
        assert_eq!(q.take_due(10).0.len(), 2);
    }

    #[test]
    fn a_held_message_is_never_due_until_released() {
        let q = Queue::new();
        let e = env(0);
        let id = e.id.clone();
        q.enqueue(e);
        assert!(q.hold(&id).unwrap().held);
        assert!(matches!(q.hold(&id), Err(QueueError::AlreadyHeld(_))));
        assert!(q.take_due(10).0.is_empty(), "held, yet due");
        assert_eq!(q.flush(), 0, "a flush releases nothing");
        assert!(q.take_due(10).0.is_empty());
        // Recovered from the spool as held: still not due.
        let mut again = q.get(&id).unwrap();
        again.next_attempt = 0;
        q.enqueue(again);
        assert!(q.take_due(10).0.is_empty());
        assert_eq!(q.held(), 1);
        let released = q.release(&id).unwrap();
        assert_eq!(q.held(), 0);
        assert!(!released.held && released.next_attempt == 0);
        assert!(matches!(q.release(&id), Err(QueueError::NotHeld(_))));
        let (due, _) = q.take_due(10);
        assert_eq!(due.len(), 1);
        // In flight: it cannot be held until the attempt is over.
        assert!(matches!(q.hold(&id), Err(QueueError::Busy(_))));
    }
}
