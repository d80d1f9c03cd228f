//! The working queue: every message between acceptance and its last
//! recipient's final result, in memory (the spool holds the durable copy).
//! It knows when each message is due and hands due messages to delivery; it
//! does not talk SMTP. The admin commands (`queue list|show|flush|remove|
//! hold|release`) read and change it. A held message is never due: it
//! waits, out of the schedule, until it is released.
//!
//! The schedule has two stages, so that a wake costs the work of what it
//! starts, not of the backlog (walkAS F2: one walk of every due message per
//! ended attempt made a 50k flush take 276 CPU-seconds). Messages not due
//! yet are in `due`, ordered by due time; once due they are routed (once)
//! and put in the ready queue of their destinations ([`Group`]), where a
//! destination at its concurrency limit is passed over as a whole. Each
//! group serves mail not tried yet and retries alternately, so new mail is
//! not held behind a due backlog (walkAS F4), as Postfix's qmgr takes from
//! its incoming queue beside the deferred one.

use super::route::Destination;
use crate::envelope::{Envelope, QueueId};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("no message {0} in the queue")]
    NotFound(QueueId),
    #[error("message {0} is being delivered or changed right now; try again in a moment")]
    Busy(QueueId),
    #[error("message {0} is held already")]
    AlreadyHeld(QueueId),
    #[error("message {0} is not held")]
    NotHeld(QueueId),
    #[error("queue state is unavailable (internal error)")]
    Poisoned,
}

struct Entry {
    /// Shared, so that `queue list` copies pointers under the lock, not
    /// every envelope of a long queue (a change copies it on write).
    envelope: Arc<Envelope>,
    /// A delivery attempt, or an administrator's change being recorded,
    /// holds it; it is not due again until it returns.
    in_flight: bool,
    /// Set while the entry waits in a ready queue: the mark of its place
    /// there. A place whose mark no longer matches (the message was taken,
    /// held, removed, or readied again since) is skipped when reached, so
    /// leaving a ready queue costs nothing.
    ready: Option<u64>,
}

/// The next hops of a message's pending recipients, each once, in order:
/// what delivery groups due mail by.
pub type Route = Arc<[Destination]>;

/// The due messages of one route, in the order they fell due: those never
/// tried yet (new mail) and retries apart, served alternately.
#[derive(Default)]
struct Group {
    fresh: VecDeque<(u64, QueueId)>,
    retry: VecDeque<(u64, QueueId)>,
    /// The next take is from `fresh` when both have mail.
    fresh_turn: bool,
}

/// The place `mark` of `id` is still the entry's place in a ready queue.
fn current(entries: &HashMap<QueueId, Entry>, mark: u64, id: &QueueId) -> bool {
    entries.get(id).is_some_and(|e| e.ready == Some(mark))
}

impl Group {
    /// Drops the stale places at the heads; says whether the next take is
    /// from `fresh` (None: the group has no due mail left).
    fn head(&mut self, entries: &HashMap<QueueId, Entry>) -> Option<bool> {
        for q in [&mut self.fresh, &mut self.retry] {
            while q.front().is_some_and(|(m, id)| !current(entries, *m, id)) {
                q.pop_front();
            }
        }
        match (self.fresh.is_empty(), self.retry.is_empty()) {
            (true, true) => None,
            (false, true) => Some(true),
            (true, false) => Some(false),
            (false, false) => Some(self.fresh_turn),
        }
    }

    /// Every place, in order, stale or not.
    fn drain(&mut self) -> impl Iterator<Item = (u64, QueueId)> + '_ {
        self.fresh.drain(..).chain(self.retry.drain(..))
    }
}

#[derive(Default)]
struct Inner {
    entries: HashMap<QueueId, Entry>,
    /// (due time, id) of every entry at rest that is not in a ready queue.
    due: BTreeSet<(i64, QueueId)>,
    /// The ready queues of due mail, by route.
    ready: HashMap<Route, Group>,
    /// The last ready mark given.
    ready_mark: u64,
    bytes: u64,
    /// Entries whose envelope says held: kept as a running count, since the
    /// statistics read it every second and the queue may be long.
    held: usize,
}

impl Inner {
    /// Puts `envelope` in at rest, counted and (unless held) scheduled.
    /// Its id must not be in the entries (see [`Inner::remove`]).
    fn put(&mut self, envelope: Envelope) {
        self.bytes += envelope.size;
        self.held += usize::from(envelope.held);
        if !envelope.held {
            self.due
                .insert((envelope.next_attempt, envelope.id.clone()));
        }
        self.entries.insert(
            envelope.id.clone(),
            Entry {
                envelope: Arc::new(envelope),
                in_flight: false,
                ready: None,
            },
        );
    }

    /// Takes the entry of `id` out, uncounted and unscheduled.
    fn remove(&mut self, id: &QueueId) -> Option<Entry> {
        let entry = self.entries.remove(id)?;
        self.bytes -= entry.envelope.size;
        self.held -= usize::from(entry.envelope.held);
        if entry.ready.is_none() {
            self.due.remove(&(entry.envelope.next_attempt, id.clone()));
        }
        Some(entry)
    }
}

/// An administrator's hold or release, taken out of the schedule until the
/// spool has recorded it: [`Pending::settle`] then puts the message back as
/// changed, or as it was when the spool could not record the change. While
/// it is pending, delivery cannot take the message, so a release that the
/// spool fails to record cannot race an attempt that already started. A
/// change dropped unsettled (its task cancelled) puts the message back as
/// it was, rather than leaving it out of the schedule until a restart.
#[must_use = "a pending change keeps its message out of the schedule until it is settled"]
pub struct Pending<'q> {
    queue: &'q Queue,
    /// The envelope as it was; None once settled.
    before: Option<Envelope>,
    /// The envelope as the change makes it: what the spool records.
    pub after: Envelope,
}

impl Pending<'_> {
    /// Ends the change: the message goes back to the schedule as changed
    /// when the spool `recorded` it, as it was otherwise.
    pub fn settle(mut self, recorded: bool) {
        let before = self.before.take();
        let back = if recorded {
            Some(self.after.clone())
        } else {
            before
        };
        if let Some(env) = back {
            self.queue.complete(env);
        }
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Some(before) = self.before.take() {
            self.queue.complete(before);
        }
    }
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
            inner.remove(&envelope.id);
            inner.put(envelope);
        }
        self.wake.notify_one();
    }

    /// Takes the messages due now (marking them in flight), and says when
    /// the next one falls due.
    #[cfg(test)]
    pub fn take_due(&self, max: usize) -> (Vec<Envelope>, Option<i64>) {
        let (due, next) = self.take_due_where(max, |_| Route::from(Vec::new()), |_| Some(()));
        (due.into_iter().map(|(env, ())| env).collect(), next)
    }

    /// Takes up to `max` of the messages due now (marking them in flight,
    /// with what `admit` gave for their route), and says when the next one
    /// falls due after now. A message is routed once, by `route`, when it
    /// falls due; `admit` is asked once per route and turn, and a route it
    /// turns away is passed over whole for this call: its mail stays at
    /// rest and due, in its place (not `active`: an administrator can hold
    /// or remove it), and goes first when asked again (delivery asks when
    /// an attempt ends, so its destination has room again). Routes take
    /// turns, one message each; within one, new mail and retries take
    /// turns. The runner turns away routes with a destination that has as
    /// many attempts in flight as it may have.
    pub fn take_due_where<T>(
        &self,
        max: usize,
        mut route: impl FnMut(&Envelope) -> Route,
        mut admit: impl FnMut(&Route) -> Option<T>,
    ) -> (Vec<(Envelope, T)>, Option<i64>) {
        let Ok(mut inner) = self.inner.lock() else {
            return (Vec::new(), None);
        };
        let Inner {
            entries,
            due,
            ready,
            ready_mark,
            ..
        } = &mut *inner;
        let t = now();
        // Newly due mail into the ready queues, each routed once.
        while due.first().is_some_and(|(at, _)| *at <= t) {
            let Some((_, id)) = due.pop_first() else {
                break;
            };
            let Some(entry) = entries.get_mut(&id) else {
                continue;
            };
            *ready_mark += 1;
            entry.ready = Some(*ready_mark);
            let group = ready.entry(route(&entry.envelope)).or_default();
            let place = (*ready_mark, id);
            if entry.envelope.attempts == 0 {
                group.fresh.push_back(place);
            } else {
                group.retry.push_back(place);
            }
        }
        let mut out = Vec::new();
        let mut open: Vec<Route> = ready.keys().cloned().collect();
        while out.len() < max && !open.is_empty() {
            let mut i = 0;
            while i < open.len() && out.len() < max {
                let Some(group) = ready.get_mut(&open[i]) else {
                    open.swap_remove(i);
                    continue;
                };
                let Some(fresh) = group.head(entries) else {
                    ready.remove(&open[i]);
                    open.swap_remove(i);
                    continue;
                };
                let Some(with) = admit(&open[i]) else {
                    open.swap_remove(i);
                    continue;
                };
                let q = if fresh {
                    &mut group.fresh
                } else {
                    &mut group.retry
                };
                group.fresh_turn = !fresh;
                // head() left a current place at the front.
                if let Some((_, id)) = q.pop_front() {
                    if let Some(entry) = entries.get_mut(&id) {
                        entry.ready = None;
                        entry.in_flight = true;
                        out.push((Envelope::clone(&entry.envelope), with));
                    }
                }
                i += 1;
            }
        }
        // Those turned away are asked about again when an attempt ends,
        // not in a loop until then: the next time is after now.
        let next = due.first().map(|(t, _)| *t);
        (out, next)
    }

    /// Sends the ready mail back to be routed anew when it is next taken:
    /// the configuration (its routes) changed.
    pub fn reroute(&self) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let Inner {
            entries,
            due,
            ready,
            ..
        } = &mut *inner;
        for (_, mut group) in ready.drain() {
            for (mark, id) in group.drain() {
                let Some(entry) = entries.get_mut(&id) else {
                    continue;
                };
                if entry.ready == Some(mark) {
                    entry.ready = None;
                    due.insert((entry.envelope.next_attempt, id));
                }
            }
        }
        drop(inner);
        self.wake.notify_one();
    }

    /// An attempt is over: keep the new state (due again at its
    /// `next_attempt`), or drop the message when it is done.
    pub fn complete(&self, envelope: Envelope) {
        if let Ok(mut inner) = self.inner.lock() {
            if inner.remove(&envelope.id).is_some() && !envelope.is_done() {
                inner.put(envelope);
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
                Arc::make_mut(&mut e.envelope).next_attempt = 0;
            }
            inner.due.insert((0, id.clone()));
        }
        // Mail already in a ready queue is due now as it is.
        let ready = inner.entries.values().filter(|e| e.ready.is_some()).count();
        drop(inner);
        self.wake.notify_one();
        waiting.len() + ready
    }

    /// Holds a message: out of the schedule until it is released. The
    /// change takes effect when it is settled, after the spool recorded it.
    pub fn hold(&self, id: &QueueId) -> Result<Pending<'_>, QueueError> {
        self.change(id, |env| {
            if env.held {
                return Err(QueueError::AlreadyHeld(env.id.clone()));
            }
            env.held = true;
            Ok(())
        })
    }

    /// Releases a held message, due at once once the change is settled.
    pub fn release(&self, id: &QueueId) -> Result<Pending<'_>, QueueError> {
        self.change(id, |env| {
            if !env.held {
                return Err(QueueError::NotHeld(env.id.clone()));
            }
            env.held = false;
            env.next_attempt = 0;
            Ok(())
        })
    }

    /// Takes a message at rest out of the schedule, as a delivery attempt
    /// would, with `edit` applied to a copy of its envelope.
    fn change(
        &self,
        id: &QueueId,
        edit: impl FnOnce(&mut Envelope) -> Result<(), QueueError>,
    ) -> Result<Pending<'_>, QueueError> {
        let mut inner = self.inner.lock().map_err(|_| QueueError::Poisoned)?;
        let entry = at_rest(&mut inner.entries, id)?;
        let mut after = Envelope::clone(&entry.envelope);
        edit(&mut after)?;
        entry.in_flight = true;
        let was_ready = entry.ready.take().is_some();
        let before = Envelope::clone(&entry.envelope);
        if !was_ready {
            inner.due.remove(&(before.next_attempt, id.clone()));
        }
        Ok(Pending {
            queue: self,
            before: Some(before),
            after,
        })
    }

    /// Takes a message out of the queue (the caller records it in the spool).
    pub fn take(&self, id: &QueueId) -> Result<Envelope, QueueError> {
        let mut inner = self.inner.lock().map_err(|_| QueueError::Poisoned)?;
        at_rest(&mut inner.entries, id)?;
        let entry = inner
            .remove(id)
            .ok_or_else(|| QueueError::NotFound(id.clone()))?;
        Ok(Arc::unwrap_or_clone(entry.envelope))
    }

    pub fn get(&self, id: &QueueId) -> Option<Envelope> {
        self.inner
            .lock()
            .ok()?
            .entries
            .get(id)
            .map(|e| Envelope::clone(&e.envelope))
    }

    /// Every message, oldest first.
    pub fn list(&self) -> Vec<Arc<Envelope>> {
        let Ok(inner) = self.inner.lock() else {
            return Vec::new();
        };
        let mut out: Vec<Arc<Envelope>> =
            inner.entries.values().map(|e| e.envelope.clone()).collect();
        // Sorted after the lock is let go: deliveries and new mail wait
        // for the copy only, not for the sort of a long queue.
        drop(inner);
        out.sort_by(|a, b| (a.received_at, &a.id).cmp(&(b.received_at, &b.id)));
        out
    }

    /// The IDs of the messages held by an administrator, oldest first:
    /// what `queue flush` leaves out of the schedule, for its reply to
    /// name (walkP 15: it skipped them silently).
    pub fn held_ids(&self) -> Vec<QueueId> {
        let Ok(inner) = self.inner.lock() else {
            return Vec::new();
        };
        let mut out: Vec<(i64, QueueId)> = inner
            .entries
            .values()
            .filter(|e| e.envelope.held)
            .map(|e| (e.envelope.received_at, e.envelope.id.clone()))
            .collect();
        drop(inner);
        out.sort();
        out.into_iter().map(|(_, id)| id).collect()
    }

    /// The IDs of the messages a delivery attempt (or an administrator's
    /// change being recorded) holds right now: `queue list` shows them as
    /// `active`, which is also why `hold` and `remove` answer "being
    /// delivered or changed right now" (walkP 15: it showed `now`).
    pub fn active_ids(&self) -> BTreeSet<QueueId> {
        let Ok(inner) = self.inner.lock() else {
            return BTreeSet::new();
        };
        inner
            .entries
            .iter()
            .filter(|(_, e)| e.in_flight)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Messages held by an administrator.
    pub fn held(&self) -> usize {
        self.inner.lock().map(|i| i.held).unwrap_or(0)
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
            received_at: 1,
            size: 10,
            rcpts: vec![Recipient::new("c@d".into())],
            next_attempt: next,
            ..Envelope::new(
                QueueId::generate(),
                "127.0.0.1".parse().unwrap(),
                "h".into(),
                "a@b".into(),
            )
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
    fn held_and_active_messages_are_named() {
        let q = Queue::new();
        let mut held = env(now() + 3600);
        held.held = true;
        let busy = env(0);
        let resting = env(now() + 3600);
        for e in [&held, &busy, &resting] {
            q.enqueue(e.clone());
        }
        assert_eq!(q.held_ids(), vec![held.id.clone()]);
        assert!(q.active_ids().is_empty());
        let (due, _) = q.take_due(10);
        assert_eq!(due.len(), 1);
        assert_eq!(
            q.active_ids().into_iter().collect::<Vec<_>>(),
            vec![busy.id.clone()]
        );
        // The flush schedules the resting one, not the held one.
        assert_eq!(q.flush(), 1);
        assert_eq!(q.held_ids(), vec![held.id.clone()]);
        q.complete(due[0].clone());
        assert!(q.active_ids().is_empty());
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

    fn route_to(name: &str) -> Route {
        vec![Destination::Direct {
            host: name.into(),
            port: 25,
            tls: Default::default(),
        }]
        .into()
    }

    #[test]
    fn a_message_turned_away_stays_due_at_rest_and_changeable() {
        let q = Queue::new();
        let (a, b, c) = (env(0), env(1), env(now() + 3600));
        for e in [&a, &b, &c] {
            q.enqueue(e.clone());
        }
        let (dead, good) = (route_to("dead.test"), route_to("good.test"));
        let route = |e: &Envelope| {
            if e.id == a.id {
                dead.clone()
            } else {
                good.clone()
            }
        };
        // `a`'s route is turned away, `b` taken.
        let (due, next) = q.take_due_where(10, route, |r| (*r != dead).then_some(7));
        assert_eq!(due.len(), 1);
        assert_eq!((&due[0].0.id, due[0].1), (&b.id, 7));
        assert_eq!(next, Some(c.next_attempt), "not 'due now' in a loop");
        assert_eq!(
            q.active_ids().into_iter().collect::<Vec<_>>(),
            vec![b.id.clone()]
        );
        // At rest: an administrator can hold it (here the spool "fails",
        // so it stays as it was).
        q.hold(&a.id).unwrap().settle(false);
        // Asked again, it comes first.
        let (due, _) = q.take_due_where(1, route, |_| Some(()));
        assert_eq!(due[0].0.id, a.id);
    }

    /// walkAS F2: a route turned away is passed over whole, and asked once
    /// per call however much mail it has; the others' mail is taken, in
    /// turns, and nothing is taken twice or lost.
    #[test]
    fn a_full_route_is_asked_once_and_the_others_take_turns() {
        let q = Queue::new();
        let (dead, one, two) = (route_to("dead"), route_to("one"), route_to("two"));
        let mut by_id = HashMap::new();
        for n in 0..3000 {
            let e = env(0);
            let r = [&dead, &dead, &one, &two][n % 4].clone();
            by_id.insert(e.id.clone(), r);
            q.enqueue(e);
        }
        let route = |e: &Envelope| by_id[&e.id].clone();
        let mut asked_dead = 0;
        let (due, _) = q.take_due_where(10, route, |r| {
            if *r == dead {
                asked_dead += 1;
                None
            } else {
                Some(())
            }
        });
        assert_eq!(asked_dead, 1, "the dead route was asked per message");
        let took: Vec<&Route> = due.iter().map(|(e, ())| &by_id[&e.id]).collect();
        assert_eq!(took.len(), 10);
        assert_eq!(took.iter().filter(|r| ***r == one).count(), 5, "turns");
        // Everything else comes out once, the dead route's too when it has
        // room again.
        let (rest, _) = q.take_due_where(usize::MAX, route, |_| Some(()));
        let mut ids: Vec<QueueId> = due
            .iter()
            .chain(&rest)
            .map(|(e, ())| e.id.clone())
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 3000);
        assert!(q.take_due_where(10, route, |_| Some(())).0.is_empty());
    }

    /// walkAS F4: with a backlog of retries due (a flush, or a hop back
    /// after an outage), new mail is taken at the next turn, not after the
    /// backlog.
    #[test]
    fn new_mail_is_not_held_behind_a_due_backlog() {
        let q = Queue::new();
        for _ in 0..1000 {
            let mut e = env(now() + 3600);
            e.attempts = 3;
            q.enqueue(e);
        }
        assert_eq!(q.flush(), 1000);
        let route = |_: &Envelope| route_to("hop");
        // Some of the backlog goes (the hop's slots fill), then new mail.
        let (first, _) = q.take_due_where(4, route, |_| Some(()));
        assert_eq!(first.len(), 4);
        let new = env(0);
        q.enqueue(new.clone());
        let mut order = Vec::new();
        loop {
            let (got, _) = q.take_due_where(2, route, |_| Some(()));
            if got.is_empty() {
                break;
            }
            order.extend(got.into_iter().map(|(e, ())| e.id));
        }
        assert_eq!(order.len(), 1000 - 4 + 1);
        let at = order.iter().position(|id| *id == new.id);
        assert!(at.is_some_and(|n| n < 2), "new mail taken at {at:?} of 997");
    }

    /// A ready message held, released or removed leaves its ready queue;
    /// a new configuration routes the ready mail anew.
    #[test]
    fn ready_mail_changed_by_an_administrator_or_rerouted_is_taken_right() {
        let q = Queue::new();
        let (a, b) = (env(0), env(0));
        q.enqueue(a.clone());
        q.enqueue(b.clone());
        let old = route_to("old");
        // Both ready, their route full.
        assert!(q
            .take_due_where(10, |_| old.clone(), |_| None::<()>)
            .0
            .is_empty());
        recorded(q.hold(&a.id)).unwrap();
        assert!(q.take(&b.id).is_ok());
        assert!(q.take_due(10).0.is_empty(), "held or removed, yet taken");
        recorded(q.release(&a.id)).unwrap();
        assert!(q
            .take_due_where(10, |_| old.clone(), |_| None::<()>)
            .0
            .is_empty());
        q.reroute();
        let new = route_to("new");
        let mut asked = Vec::new();
        let (due, _) = q.take_due_where(
            10,
            |_| new.clone(),
            |r| {
                asked.push(r.clone());
                Some(())
            },
        );
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].0.id, a.id);
        assert_eq!(asked, vec![new]);
        assert_eq!(q.size(), (1, 10));
    }

    /// A queue with one message, due now, and its ID.
    fn one_queued() -> (Queue, QueueId) {
        let q = Queue::new();
        let e = env(0);
        let id = e.id.clone();
        q.enqueue(e);
        (q, id)
    }

    /// Holds or releases `id` as the admin command does when the spool
    /// records the change.
    fn recorded(p: Result<Pending<'_>, QueueError>) -> Result<Envelope, QueueError> {
        let p = p?;
        let after = p.after.clone();
        p.settle(true);
        Ok(after)
    }

    #[test]
    fn a_held_message_is_never_due_until_released() {
        let (q, id) = one_queued();
        assert!(recorded(q.hold(&id)).unwrap().held);
        assert!(matches!(q.hold(&id), Err(QueueError::AlreadyHeld(_))));
        assert!(q.take_due(10).0.is_empty(), "held, yet due");
        assert_eq!(q.flush(), 0, "a flush releases nothing");
        assert!(q.take_due(10).0.is_empty());
        // Recovered from the spool as held: still not due, counted once.
        let mut again = q.get(&id).unwrap();
        again.next_attempt = 0;
        q.enqueue(again);
        assert!(q.take_due(10).0.is_empty());
        assert_eq!(q.held(), 1);
        let released = recorded(q.release(&id)).unwrap();
        assert_eq!(q.held(), 0);
        assert!(!released.held && released.next_attempt == 0);
        assert!(matches!(q.release(&id), Err(QueueError::NotHeld(_))));
        let (due, _) = q.take_due(10);
        assert_eq!(due.len(), 1);
        // In flight: it cannot be held until the attempt is over.
        assert!(matches!(q.hold(&id), Err(QueueError::Busy(_))));
        assert_eq!(q.size(), (1, 10));
    }

    #[test]
    fn a_change_the_spool_has_not_recorded_yet_keeps_delivery_away() {
        let (q, id) = one_queued();
        recorded(q.hold(&id)).unwrap();
        // A release being recorded: not due yet, and not changeable twice.
        let pending = q.release(&id).unwrap();
        assert!(!pending.after.held);
        assert!(
            q.take_due(10).0.is_empty(),
            "taken before the spool said yes"
        );
        assert!(matches!(q.hold(&id), Err(QueueError::Busy(_))));
        assert!(q.get(&id).unwrap().held, "changed before it was recorded");
        // The spool could not record it: still held, and holdable again
        // later, never half released.
        pending.settle(false);
        assert!(q.get(&id).unwrap().held);
        assert_eq!(q.held(), 1);
        assert!(q.take_due(10).0.is_empty());
        // A hold the spool cannot record leaves the message due as before.
        recorded(q.release(&id)).unwrap();
        let pending = q.hold(&id).unwrap();
        assert!(q.take_due(10).0.is_empty(), "due while a hold is recorded");
        pending.settle(false);
        assert_eq!(q.held(), 0);
        assert_eq!(q.take_due(10).0.len(), 1);
        assert_eq!(q.size(), (1, 10));
    }

    #[test]
    fn a_change_dropped_unsettled_puts_the_message_back_as_it_was() {
        let (q, id) = one_queued();
        drop(q.hold(&id).unwrap());
        assert!(!q.get(&id).unwrap().held);
        assert_eq!(q.take_due(10).0.len(), 1, "due again, not stuck in flight");
    }
}
