//! Destination suspension, as Postfix's queue manager does it ("delivery
//! temporarily suspended"): after [`SUSPEND_AFTER`] connection-level
//! failures in a row at one destination (a next hop as routing names it,
//! the key of the per-destination concurrency), its other due messages are
//! deferred without connecting until the suspension ends; then one attempt
//! (the probe) is let through, and its success lifts the suspension while
//! its failure suspends the destination again for twice as long. Without
//! it, a backlog of thousands of messages for a dead hop made thousands of
//! connect time-outs, one per message, each time its retry came.
//!
//! This module owns the per-destination state and the decision; the pool
//! asks it before connecting and tells it how the connection went, and the
//! statistics hear of it through events.

use super::attempt::Outcome;
use super::client::ClientError;
use super::pool::PoolError;
use super::route::Destination;
use crate::events::ResumedBy;
use chrono::{DateTime, Utc};
use mailward_metrics::Stats;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Connection-level failures in a row that suspend a destination. Not a
/// configuration key: `[limits]` and `[timeouts]` are the design's config
/// contract and the config module is not delivery's; Postfix's own
/// default (`default_destination_concurrency_failed_cohort_limit`) is 1,
/// a little more forgives one unlucky connect.
pub const SUSPEND_AFTER: u32 = 3;

/// A destination's state that has not seen a failure for this long is
/// forgotten (its next attempt starts afresh), so that the map does not
/// keep every hop that ever failed once.
const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// A probe that has not reported back for this long (its attempt was
/// cancelled) no longer stops another one.
const PROBE_LOST_AFTER: Duration = Duration::from_secs(600);

/// What the pool may do for one attempt at a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// Connect (`probe`: the one attempt after a suspension ended).
    Go { probe: bool },
    /// Do not connect: defer with the last real error.
    Suspended(Suspended),
}

/// Why an attempt may not connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suspended {
    pub until: DateTime<Utc>,
    /// The suspension has ended and another attempt is probing the hop.
    pub probing: bool,
    /// The outcome of the last failed connection: its reply (status and
    /// words) and relay go into the deferral and the DSN.
    pub last: Outcome,
}

impl Suspended {
    /// When the mail deferred by it is tried again (Unix time): at the
    /// suspension's end, so that its first attempt then is the probe; or,
    /// while a probe runs, after `min_backoff`, not every second until
    /// the probe's connect times out.
    pub fn retry_at(&self, now: DateTime<Utc>, min_backoff: Duration) -> i64 {
        if self.probing {
            let wait = i64::try_from(min_backoff.as_secs()).unwrap_or(i64::MAX);
            return now.timestamp().saturating_add(wait.max(1));
        }
        // The second after `until` or at it: never before its end.
        let partial = i64::from(self.until.timestamp_subsec_nanos() > 0);
        self.until.timestamp() + partial
    }

    /// The deferral's log line (walkBP F1: while a probe ran, it named an
    /// `until` already past).
    pub fn log(&self, queue_id: &crate::envelope::QueueId, dest: &Destination) {
        let reply = match &self.last {
            Outcome::Deferred { reply, .. } | Outcome::Failed { reply, .. } => reply.as_str(),
            Outcome::Delivered { reply, .. } => reply.as_str(),
        };
        if self.probing {
            tracing::info!(target: "delivery", queue_id = %queue_id, destination = %dest,
                "Destination suspended, a probe is under way, last error: {reply}; deferred without connecting.");
        } else {
            tracing::info!(target: "delivery", queue_id = %queue_id, destination = %dest,
                "Destination suspended until {}, last error: {reply}; deferred without connecting.",
                self.until.format("%Y-%m-%dT%H:%M:%SZ"));
        }
    }
}

struct State {
    /// Connection-level failures in a row.
    failures: u32,
    /// The deferral the last failure gave.
    last: Outcome,
    /// When the last failure was seen.
    seen: Instant,
    /// Suspended until then, and for how long it was suspended.
    until: Option<(DateTime<Utc>, Duration)>,
    /// A probe is under way since then.
    probing: Option<Instant>,
}

/// One suspended destination, as `mailward status` names it: the
/// administrator sees which next hop is not served and why without
/// searching the log for its 'Destination suspended' line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SuspendedNow {
    /// The destination as the log names it: `[HOST]:PORT` for a route's
    /// host, `DOMAIN:PORT` for MX delivery.
    pub destination: String,
    /// Unix time the suspension ends; then one attempt probes the hop.
    pub until: i64,
    /// Connection-level failures in a row.
    pub failures: u32,
    /// The last failure's deferral (status and words), as the messages'
    /// deferrals and DSNs carry it.
    pub last_error: String,
    /// A probe is under way (the suspension has ended and one attempt is
    /// connecting).
    pub probing: bool,
    /// The suspension has ended and no attempt has probed yet: the next
    /// attempt of its mail (on that mail's own retry time) is the probe.
    /// An older daemon's answer lacks it (false).
    #[serde(default)]
    pub probe_due: bool,
}

/// Suspended destinations, shared by every attempt (the delivery pool
/// decides with them; the gateway lists them for `mailward status`).
#[derive(Default)]
pub struct Suspensions {
    by_dest: Mutex<HashMap<Destination, State>>,
    /// The next hops of routes whose name does not resolve now, with why
    /// and since when (Unix time): their mail waits, and `mailward
    /// status` says so (walkBH F8: a mistyped catch-all route queued all
    /// mail for days with no problem listed).
    misrouted: Mutex<std::collections::BTreeMap<String, (String, i64)>>,
}

/// A route's next hop whose name does not resolve now.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Misrouted {
    /// The next hop, as the log names it (`[relay.example]:25`).
    pub destination: String,
    /// Why (`address look-up: relay.example: no such domain`).
    pub error: String,
    /// Since when (Unix time).
    pub since: i64,
}

/// True for the failures that say the hop itself is not serving: the
/// connect refused or timed out, no greeting (time-out, closed, garbled),
/// or a greeting that refuses (4xx, or 5xx: both wait here). A refused
/// STARTTLS or a failed DNS look-up says nothing of the hop's health.
pub fn is_connection_failure(e: &PoolError) -> bool {
    match e {
        PoolError::Connect { error, .. } => match error {
            ClientError::Connect { .. } => true,
            ClientError::Timeout { stage } => matches!(*stage, "connect" | "banner"),
            ClientError::Io { stage, .. } | ClientError::Protocol { stage, .. } => {
                *stage == "banner"
            }
            ClientError::Rejected { stage, .. } => *stage == "banner",
            _ => false,
        },
        _ => false,
    }
}

impl Suspensions {
    /// A look-up of `dest`, a route's next hop, found no such name
    /// (`error`); None: it resolved.
    pub fn looked_up(&self, dest: &Destination, error: Option<&str>) {
        let Ok(mut map) = self.misrouted.lock() else {
            return;
        };
        match error {
            Some(e) => {
                map.entry(dest.to_string())
                    .and_modify(|(why, _)| *why = e.to_string())
                    .or_insert_with(|| (e.to_string(), Utc::now().timestamp()));
            }
            None => {
                map.remove(&dest.to_string());
            }
        }
    }

    /// The next hops of `routes` (those in force) that do not resolve now.
    /// Only theirs: mending a route's `to` makes another hop, and the old
    /// one is never looked up again (walkBI F1).
    pub fn misrouted(&self, routes: &[crate::config::Route]) -> Vec<Misrouted> {
        let named: std::collections::HashSet<String> = routes
            .iter()
            .map(|r| super::route::of_route(r, "").to_string())
            .collect();
        self.misrouted
            .lock()
            .map(|m| {
                m.iter()
                    .filter(|(d, _)| named.contains(*d))
                    .map(|(d, (e, since))| Misrouted {
                        destination: d.clone(),
                        error: e.clone(),
                        since: *since,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether an attempt at `dest` may connect now.
    pub fn gate(&self, dest: &Destination, now: DateTime<Utc>) -> Gate {
        let Ok(mut map) = self.by_dest.lock() else {
            return Gate::Go { probe: false };
        };
        let Some(state) = map.get_mut(dest) else {
            return Gate::Go { probe: false };
        };
        let Some((until, _)) = state.until else {
            return Gate::Go { probe: false };
        };
        let probe_running = state
            .probing
            .is_some_and(|since| since.elapsed() < PROBE_LOST_AFTER);
        if now < until || probe_running {
            return Gate::Suspended(Suspended {
                until,
                probing: now >= until,
                last: state.last.clone(),
            });
        }
        state.probing = Some(Instant::now());
        Gate::Go { probe: true }
    }

    /// The connection to `dest` was made and greeted: a suspension ends.
    pub fn succeeded(&self, dest: &Destination, stats: &Stats) {
        let Ok(mut map) = self.by_dest.lock() else {
            return;
        };
        if let Some(state) = map.remove(dest) {
            if state.until.is_some() {
                crate::events::DestinationResumed {
                    destination: dest,
                    by: ResumedBy::Probe,
                }
                .emit(stats);
            }
        }
    }

    /// The connection to `dest` failed with `e`, whose deferral is
    /// `outcome`. A connection-level failure counts towards a suspension
    /// (or, for a probe, suspends again for twice as long, at most `max`);
    /// another failure only lets the next attempt probe.
    pub fn failed(
        &self,
        dest: &Destination,
        e: &PoolError,
        outcome: &Outcome,
        (min, max): (Duration, Duration),
        stats: &Stats,
    ) {
        let Ok(mut map) = self.by_dest.lock() else {
            return;
        };
        if !is_connection_failure(e) {
            if let Some(state) = map.get_mut(dest) {
                state.probing = None;
            }
            return;
        }
        let state = map.entry(dest.clone()).or_insert_with(|| State {
            failures: 0,
            last: outcome.clone(),
            seen: Instant::now(),
            until: None,
            probing: None,
        });
        state.failures = state.failures.saturating_add(1);
        state.last = outcome.clone();
        state.seen = Instant::now();
        let probe = state.probing.take().is_some();
        let now = Utc::now();
        let (period, first) = match state.until {
            // Only a probe's failure suspends again: the attempts that
            // were connecting when the suspension began each doubled it
            // (a 5 min suspension became 20 at once in a 20k backlog).
            Some(_) if !probe => return,
            Some((_, period)) => (period.saturating_mul(2).min(max).max(min.min(max)), false),
            None if state.failures >= SUSPEND_AFTER => (min.min(max), true),
            None => return,
        };
        let until = now + chrono::Duration::from_std(period).unwrap_or(chrono::Duration::MAX);
        state.until = Some((until, period));
        let last = match &state.last {
            Outcome::Deferred { reply, .. } | Outcome::Failed { reply, .. } => reply.as_str(),
            Outcome::Delivered { reply, .. } => reply.as_str(),
        };
        crate::events::DestinationSuspended {
            destination: dest,
            until,
            failures: state.failures,
            last_error: last,
            again: !first,
        }
        .emit(stats);
    }

    /// Forgets destinations that have not failed for a long while; a
    /// suspension forgotten so ends (the next attempt connects).
    pub fn reap(&self, stats: &Stats) {
        let Ok(mut map) = self.by_dest.lock() else {
            return;
        };
        map.retain(|dest, state| {
            let keep = state.seen.elapsed() < FORGET_AFTER
                || state
                    .probing
                    .is_some_and(|since| since.elapsed() < PROBE_LOST_AFTER);
            if !keep && state.until.is_some() {
                crate::events::DestinationResumed {
                    destination: dest,
                    by: ResumedBy::Forgotten,
                }
                .emit(stats);
            }
            keep
        });
    }

    /// An administrator's `queue flush`: every suspension ends and is
    /// forgotten, so the flushed mail connects (a hop still dead is
    /// suspended again after [`SUSPEND_AFTER`] failures). Postfix's
    /// `postqueue -f` does the same to its queue manager's dead
    /// destinations; keeping them made a flush after the hop came back
    /// defer the mail without connecting, each time growing its back-off
    /// (walkAW F1). Returns the destinations let go, as the log names them.
    pub fn lift_all(&self, stats: &Stats) -> Vec<String> {
        let Ok(mut map) = self.by_dest.lock() else {
            return Vec::new();
        };
        let mut lifted = Vec::new();
        for (dest, state) in map.drain() {
            if state.until.is_some() {
                crate::events::DestinationResumed {
                    destination: &dest,
                    by: ResumedBy::Flush,
                }
                .emit(stats);
                lifted.push(dest.to_string());
            }
        }
        lifted.sort();
        lifted
    }

    /// The destinations suspended at `now`, the longest suspended first
    /// (the latest end last), for `mailward status`.
    pub fn list(&self, now: DateTime<Utc>) -> Vec<SuspendedNow> {
        let Ok(map) = self.by_dest.lock() else {
            return Vec::new();
        };
        let mut list: Vec<SuspendedNow> = map
            .iter()
            .filter_map(|(dest, state)| {
                let (until, _) = state.until?;
                let probing = state
                    .probing
                    .is_some_and(|since| since.elapsed() < PROBE_LOST_AFTER);
                Some(SuspendedNow {
                    destination: dest.to_string(),
                    until: until.timestamp(),
                    failures: state.failures,
                    last_error: match &state.last {
                        Outcome::Deferred { reply, .. }
                        | Outcome::Failed { reply, .. }
                        | Outcome::Delivered { reply, .. } => reply.clone(),
                    },
                    probing,
                    probe_due: !probing && until <= now,
                })
            })
            .collect();
        list.sort_by(|a, b| (a.until, &a.destination).cmp(&(b.until, &b.destination)));
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OutboundTls;

    fn dead() -> Destination {
        Destination::Direct {
            host: "127.0.0.1".into(),
            port: 30199,
            tls: OutboundTls::default(),
        }
    }

    fn refused() -> (PoolError, Outcome) {
        let addr: std::net::SocketAddr = "127.0.0.1:30199".parse().unwrap();
        let e = PoolError::Connect {
            error: ClientError::Connect {
                addr,
                source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
            },
            name: "127.0.0.1".into(),
            addr,
        };
        let outcome = Outcome::Deferred {
            reply: format!("4.4.1 {e}"),
            relay: "[127.0.0.1]:30199".into(),
        };
        (e, outcome)
    }

    const BACKOFF: (Duration, Duration) = (Duration::from_secs(60), Duration::from_secs(300));

    /// Three refused connects suspend the destination for the minimum
    /// back-off; meanwhile attempts are deferred with the last real error;
    /// after it one probe goes, and only one; a failed probe suspends for
    /// twice as long (capped); a successful one lifts the suspension.
    #[test]
    fn a_dead_destination_is_suspended_probed_and_lifted() {
        let stats = Stats::new(&mailward_metrics::Category::ALL, 10, None, "test");
        let s = Suspensions::default();
        let (e, outcome) = refused();
        let now = Utc::now();
        for n in 0..SUSPEND_AFTER {
            assert_eq!(s.gate(&dead(), now), Gate::Go { probe: false }, "{n}");
            s.failed(&dead(), &e, &outcome, BACKOFF, &stats);
        }
        let Gate::Suspended(Suspended { until, last, .. }) = s.gate(&dead(), Utc::now()) else {
            panic!("suspended after {SUSPEND_AFTER} failures");
        };
        assert_eq!(last, outcome, "the deferral carries the last real error");
        let secs = (until - Utc::now()).num_seconds();
        assert!((55..=60).contains(&secs), "{secs}");
        assert_eq!(s.list(Utc::now()).len(), 1);
        let listed = s.list(Utc::now());
        assert_eq!(
            listed,
            vec![SuspendedNow {
                destination: "[127.0.0.1]:30199".into(),
                until: until.timestamp(),
                failures: SUSPEND_AFTER,
                last_error: "4.4.1 cannot connect to 127.0.0.1:30199: connection refused".into(),
                probing: false,
                probe_due: false,
            }],
            "status names the destination, the end, the failures and the last error"
        );
        // Attempts that were connecting when it began fail too: the
        // suspension stays as it is.
        s.failed(&dead(), &e, &outcome, BACKOFF, &stats);
        s.failed(&dead(), &e, &outcome, BACKOFF, &stats);
        let Gate::Suspended(Suspended { until: same, .. }) = s.gate(&dead(), Utc::now()) else {
            panic!("still suspended");
        };
        assert_eq!(same, until, "extended by attempts that were not probes");
        // The period is over: until an attempt comes, status says the
        // next one probes (not "until" a time gone by); then one probe,
        // the others still wait.
        let later = until + chrono::Duration::seconds(1);
        let due = s.list(later);
        assert!(due[0].probe_due && !due[0].probing, "{due:?}");
        assert_eq!(s.gate(&dead(), later), Gate::Go { probe: true });
        // While the probe runs the others are told so, and wait the
        // minimum back-off, not a second at a time (walkBP F1).
        let Gate::Suspended(probing) = s.gate(&dead(), later) else {
            panic!("one probe at a time");
        };
        assert!(probing.probing);
        assert_eq!(probing.retry_at(later, BACKOFF.0), later.timestamp() + 60);
        let listed = s.list(later);
        assert!(listed[0].probing, "status says a probe is under way");
        assert!(!listed[0].probe_due, "{listed:?}");
        s.failed(&dead(), &e, &outcome, BACKOFF, &stats);
        let Gate::Suspended(Suspended { until: again, .. }) = s.gate(&dead(), Utc::now()) else {
            panic!("a failed probe suspends again");
        };
        let secs = (again - Utc::now()).num_seconds();
        assert!((115..=120).contains(&secs), "twice as long: {secs}");
        // A successful probe lifts it.
        let later = again + chrono::Duration::seconds(1);
        assert_eq!(s.gate(&dead(), later), Gate::Go { probe: true });
        s.succeeded(&dead(), &stats);
        assert_eq!(s.gate(&dead(), later), Gate::Go { probe: false });
        assert_eq!(s.list(later), vec![], "a lifted suspension leaves the list");
        let snap = stats.snapshot(&mailward_metrics::Gauges::default());
        use mailward_metrics::StatId;
        assert_eq!(
            snap.value(StatId::DestinationSuspensions, 0),
            2,
            "suspended, then again after the failed probe"
        );
        assert_eq!(snap.value(StatId::DestinationsSuspended, 0), 0);
    }

    /// walkBP F1: mail deferred by a suspension is tried again at its end,
    /// never a moment before (then it was deferred again, its back-off
    /// doubled, and no probe came when the suspension ended).
    #[test]
    fn mail_held_by_a_suspension_is_due_at_its_end() {
        let (_, last) = refused();
        let until = DateTime::from_timestamp(1_800_000_000, 400_000_000).unwrap();
        let held = Suspended {
            until,
            probing: false,
            last,
        };
        let now = until - chrono::Duration::seconds(14);
        assert_eq!(held.retry_at(now, BACKOFF.0), 1_800_000_001);
        let whole = Suspended {
            until: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            ..held
        };
        assert_eq!(whole.retry_at(now, BACKOFF.0), 1_800_000_000);
    }

    /// walkAW F1: `queue flush` lifts every suspension, so that the mail
    /// it makes due connects (the hop may be back); a destination with
    /// failures but no suspension is forgotten too, and not named.
    #[test]
    fn a_flush_lifts_every_suspension() {
        let stats = Stats::new(&mailward_metrics::Category::ALL, 10, None, "test");
        let s = Suspensions::default();
        let (e, outcome) = refused();
        for _ in 0..SUSPEND_AFTER {
            s.failed(&dead(), &e, &outcome, BACKOFF, &stats);
        }
        let other = Destination::Direct {
            host: "127.0.0.2".into(),
            port: 30199,
            tls: OutboundTls::default(),
        };
        s.failed(&other, &e, &outcome, BACKOFF, &stats);
        assert!(matches!(s.gate(&dead(), Utc::now()), Gate::Suspended(_)));
        assert_eq!(s.lift_all(&stats), vec!["[127.0.0.1]:30199".to_string()]);
        assert_eq!(s.gate(&dead(), Utc::now()), Gate::Go { probe: false });
        assert_eq!(s.list(Utc::now()), vec![]);
        let snap = stats.snapshot(&mailward_metrics::Gauges::default());
        assert_eq!(
            snap.value(mailward_metrics::StatId::DestinationsSuspended, 0),
            0
        );
        // Still dead: three more failures suspend it again.
        for _ in 0..SUSPEND_AFTER {
            s.failed(&dead(), &e, &outcome, BACKOFF, &stats);
        }
        assert!(matches!(s.gate(&dead(), Utc::now()), Gate::Suspended(_)));
        assert_eq!(s.lift_all(&stats).len(), 1);
    }

    /// A refused STARTTLS or a failed look-up is not the hop being dead.
    #[test]
    fn other_failures_do_not_suspend() {
        let stats = Stats::new(&mailward_metrics::Category::ALL, 10, None, "test");
        let s = Suspensions::default();
        let e = PoolError::Connect {
            error: ClientError::TlsRequired {
                mode: "encrypt",
                why: "no STARTTLS".into(),
                status: "4.7.4",
            },
            name: "x".into(),
            addr: "127.0.0.1:30199".parse().unwrap(),
        };
        let outcome = Outcome::Deferred {
            reply: "4.7.4 x".into(),
            relay: String::new(),
        };
        for _ in 0..10 {
            s.failed(&dead(), &e, &outcome, BACKOFF, &stats);
        }
        assert_eq!(s.gate(&dead(), Utc::now()), Gate::Go { probe: false });
        assert!(!is_connection_failure(&PoolError::Closed));
    }
}
