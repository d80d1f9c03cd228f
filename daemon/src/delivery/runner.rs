//! The delivery loop: takes due messages from the queue and runs their
//! attempts as tasks, never more at once than the outgoing session limit
//! allows to make progress, nor more per destination than
//! `limits.outgoing_sessions_per_host` (the rest of a destination's mail
//! stays queued, at rest, until one of its attempts ends), sleeps until the
//! next message falls due or the queue changes, and drains in-flight
//! attempts on shutdown.

use super::attempt::Delivery;
use super::route::{destination, Destination};
use crate::config::Config;
use crate::envelope::Envelope;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinSet;

/// How often idle outgoing connections are checked for expiry.
const REAP_EVERY: Duration = Duration::from_secs(2);

/// Queue IDs the grace-period warning names at most; the rest are
/// counted (walkAE: with thousands of attempts in flight it named them
/// all, one log line of tens of kilobytes). `mailward queue list` after the
/// restart shows every message still queued.
const MAX_NAMED_IDS: usize = 20;

/// The first [`MAX_NAMED_IDS`] of `ids`, comma-separated, then
/// ` and N more`.
fn some_ids<'a>(ids: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::new();
    let mut more = 0usize;
    for (n, id) in ids.into_iter().enumerate() {
        if n < MAX_NAMED_IDS {
            if n > 0 {
                out.push(',');
            }
            out.push_str(id);
        } else {
            more += 1;
        }
    }
    if more > 0 {
        out.push_str(&format!(" and {more} more"));
    }
    out
}

/// The next hops of a message's pending recipients, each once, in order.
fn destinations(cfg: &Config, env: &Envelope) -> Arc<[Destination]> {
    let mut dests: Vec<Destination> = env
        .pending()
        .map(|(_, r)| destination(&cfg.route, &r.address))
        .collect();
    dests.sort();
    dests.dedup();
    dests.into()
}

/// Delivery attempts in flight per destination, as Postfix's queue manager
/// keeps per-destination concurrency: one destination that accepts
/// connections and never answers holds at most `limit` attempts (and so at
/// most that many of the outgoing sessions); its other messages stay in
/// the queue, not `active`, so that mail for other destinations is taken
/// past them and an administrator can hold or remove them (walkAQ 3).
struct InFlight {
    limit: usize,
    per_dest: Mutex<HashMap<Destination, usize>>,
}

/// The slots of one attempt, one per destination of its message; given
/// back when the attempt ends, however it ends (done, cancelled, panicked).
struct Slots {
    of: Arc<InFlight>,
    dests: Arc<[Destination]>,
}

impl InFlight {
    fn new(limit: usize) -> Arc<InFlight> {
        Arc::new(InFlight {
            limit: limit.max(1),
            per_dest: Mutex::new(HashMap::new()),
        })
    }

    /// A slot at each of `dests` when every one has room, else none: a
    /// message waits for its busiest destination rather than run an
    /// attempt over the limit (its other recipients are then tried with
    /// it, in due order, when that destination has room).
    fn reserve(self: &Arc<Self>, dests: &Arc<[Destination]>) -> Option<Slots> {
        let mut per_dest = self.per_dest.lock().ok()?;
        if dests
            .iter()
            .any(|d| per_dest.get(d).is_some_and(|n| *n >= self.limit))
        {
            return None;
        }
        for d in dests.iter() {
            *per_dest.entry(d.clone()).or_default() += 1;
        }
        Some(Slots {
            of: self.clone(),
            dests: dests.clone(),
        })
    }

    #[cfg(test)]
    fn in_flight(&self, dest: &Destination) -> usize {
        self.per_dest
            .lock()
            .map(|m| m.get(dest).copied().unwrap_or(0))
            .unwrap_or(0)
    }
}

impl Drop for Slots {
    fn drop(&mut self) {
        let Ok(mut per_dest) = self.of.per_dest.lock() else {
            return;
        };
        for d in self.dests.iter() {
            if let Some(n) = per_dest.get_mut(d) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    per_dest.remove(d);
                }
            }
        }
    }
}

pub async fn run(delivery: Arc<Delivery>, grace: Duration) {
    let gw = delivery.gw.clone();
    let mut shutdown = gw.shutdown.clone();
    let mut tasks = JoinSet::new();
    let mut reap = tokio::time::interval(REAP_EVERY);
    // The pool's limit, fixed at start as the pool's own is.
    let in_flight = InFlight::new(delivery.pool.per_host_limit());
    // The queue routes each message once, when it falls due, and keeps it
    // in its destinations' ready queue (walkAS F2); a new configuration
    // may route it elsewhere, so ready mail is routed anew after a reload.
    let mut routed_by: Option<Arc<Config>> = None;
    loop {
        if *shutdown.borrow() {
            break;
        }
        // Attempts beyond what the session limits let run at once would
        // only wait on the pool, each holding its message in memory.
        let cfg = gw.config();
        if !routed_by.as_ref().is_some_and(|c| Arc::ptr_eq(c, &cfg)) {
            if routed_by.is_some() {
                gw.queue.reroute();
            }
            routed_by = Some(cfg.clone());
        }
        let room = (cfg.limits.outgoing_sessions as usize * 2).saturating_sub(tasks.len());
        let (due, next) = gw.queue.take_due_where(
            room,
            |env| destinations(&cfg, env),
            |dests| in_flight.reserve(dests),
        );
        for (env, slots) in due {
            let delivery = delivery.clone();
            tasks.spawn(async move {
                let _slots = slots;
                delivery.attempt(env).await
            });
        }
        let wait = match next {
            Some(t) => {
                let secs = (t - chrono::Utc::now().timestamp()).max(0) as u64;
                Duration::from_secs(secs).max(Duration::from_millis(50))
            }
            None => Duration::from_secs(3600),
        };
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break,
            _ = gw.queue.changed() => {}
            _ = tokio::time::sleep(wait) => {}
            // An attempt ended: its destinations have room again.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = reap.tick() => delivery.pool.reap(),
        }
    }
    let deadline = tokio::time::sleep(grace);
    tokio::pin!(deadline);
    while !tasks.is_empty() {
        tokio::select! {
            _ = &mut deadline => {
                // Named, so that a duplicate can be traced: a hop that had
                // the whole message but had not answered its end of data
                // may get it again after the restart (walkAE 3).
                let active = gw.queue.active_ids();
                let ids = some_ids(active.iter().map(|id| id.0.as_str()));
                tracing::warn!(target: "delivery", in_flight = tasks.len(), queue_ids = %ids,
                    "Delivery attempts still running after the grace period; they will be retried after restart, and a next hop that had a whole message but had not answered its end of data may get it twice.");
                tasks.abort_all();
                break;
            }
            _ = tasks.join_next() => {}
        }
    }
    delivery.pool.close_all().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(name: &str) -> Destination {
        Destination::Direct {
            host: name.into(),
            port: 25,
            tls: Default::default(),
        }
    }

    /// walkAQ 3: a destination has at most `limit` attempts in flight; a
    /// message for it and another, busy or not, waits; slots come back
    /// when an attempt ends.
    #[test]
    fn a_busy_destination_turns_its_mail_away_and_no_other() {
        let in_flight = InFlight::new(2);
        let (dead, good) = (dest("dead.test"), dest("good.test"));
        let only = |d: &Destination| -> Arc<[Destination]> { vec![d.clone()].into() };
        let first = in_flight.reserve(&only(&dead)).expect("room");
        let second = in_flight.reserve(&only(&dead)).expect("room");
        assert!(in_flight.reserve(&only(&dead)).is_none(), "over the limit");
        let both: Arc<[Destination]> = vec![dead.clone(), good.clone()].into();
        assert!(in_flight.reserve(&both).is_none(), "waits for the busy one");
        assert_eq!(in_flight.in_flight(&good), 0, "nothing taken for it");
        let healthy: Vec<Slots> = (0..2)
            .map(|_| in_flight.reserve(&only(&good)).expect("room"))
            .collect();
        assert_eq!(in_flight.in_flight(&good), 2);
        drop(first);
        assert_eq!(in_flight.in_flight(&dead), 1);
        drop(healthy);
        let third = in_flight.reserve(&both).expect("room at both now");
        assert_eq!(
            (in_flight.in_flight(&dead), in_flight.in_flight(&good)),
            (2, 1)
        );
        drop((second, third));
        assert!(in_flight.per_dest.lock().unwrap().is_empty());
    }

    /// walkAE: the grace-period warning names at most 20 attempts, and
    /// says how many more there were.
    #[test]
    fn the_grace_warning_names_twenty_ids_and_counts_the_rest() {
        let ids: Vec<String> = (0..5000).map(|n| format!("1A2498B64AD6{n:04}")).collect();
        let line = some_ids(ids.iter().map(String::as_str));
        let named: Vec<&str> = line
            .split(" and ")
            .next()
            .unwrap_or("")
            .split(',')
            .collect();
        assert_eq!(named.len(), MAX_NAMED_IDS, "{line}");
        assert_eq!(named[0], "1A2498B64AD60000");
        assert!(line.ends_with(" and 4980 more"), "{line}");
        assert!(line.len() < 500, "{} octets", line.len());
        let few = ["A", "B", "C"];
        assert_eq!(some_ids(few), "A,B,C");
        assert_eq!(
            some_ids(ids.iter().take(20).map(String::as_str))
                .matches(',')
                .count(),
            19
        );
        assert_eq!(some_ids([]), "");
    }
}
