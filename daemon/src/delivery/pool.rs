//! Outgoing SMTP connections: the total and per-destination session limits,
//! and a small cache of idle connections so that a burst of messages to one
//! next hop reuses a session (RSET between messages) instead of paying a
//! connect and EHLO for each, as Postfix's connection cache does.

use super::client::{ClientError, ClientSettings, SmtpClient};
use super::route::{self, Candidate, Destination, RouteError};
use crate::dns::{Dns, LookupTally, RecentLookups};
use crate::envelope::QueueId;
use mailward_metrics::Stats;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// An idle connection older than this is closed rather than reused.
const IDLE_TTL: Duration = Duration::from_secs(5);

/// An outbound connection, counted in the statistics (the gauge
/// `mailward_sessions{direction="out"}`) from the moment its TCP connect
/// starts until it is closed: a hop that accepts TCP and never greets holds
/// a session of ours as surely as one that delivers, and an NMS watching
/// the gauge must see those sessions piling up (FIXO task 1: they counted
/// only once greeted, so a dead hop showed 0 outbound sessions).
pub struct OpenGuard(Arc<Stats>);

impl OpenGuard {
    /// Counts a connection whose TCP connect starts now.
    fn connecting(stats: &Arc<Stats>) -> OpenGuard {
        crate::events::OutboundSessionStarted.emit(stats);
        OpenGuard(stats.clone())
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        crate::events::OutboundSessionClosed.emit(&self.0);
    }
}

/// A connection with its session slots; give it back with [`Pool::release`].
pub struct Leased {
    _open: OpenGuard,
    pub client: SmtpClient,
    /// Taken from the idle cache (the peer may have closed it meanwhile).
    pub reused: bool,
    pub dest: Destination,
    _total: OwnedSemaphorePermit,
    _host: OwnedSemaphorePermit,
}

/// A connection kept open for reuse, with its slot and when it was parked.
type Idle = (SmtpClient, OpenGuard, Instant);

pub struct Pool {
    total: Arc<Semaphore>,
    per_host_limit: usize,
    per_host: Mutex<HashMap<Destination, Arc<Semaphore>>>,
    idle: Mutex<HashMap<Destination, Vec<Idle>>>,
    stats: Arc<Stats>,
    /// Destinations whose connections keep failing: their mail waits
    /// without connecting ([`super::suspend`]).
    pub suspensions: Arc<super::suspend::Suspensions>,
}

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error(transparent)]
    Route(#[from] RouteError),
    /// No candidate address took the session; the last one tried, and why.
    #[error("{error}")]
    Connect {
        error: ClientError,
        name: String,
        addr: std::net::SocketAddr,
    },
    #[error("delivery is shutting down")]
    Closed,
}

impl PoolError {
    pub fn is_permanent(&self) -> bool {
        match self {
            PoolError::Route(RouteError::Permanent(_) | RouteError::NullMx(_)) => true,
            PoolError::Connect { error, .. } => error.is_permanent(),
            _ => false,
        }
    }

    pub fn status(&self) -> &'static str {
        match self {
            PoolError::Route(e) => e.status(),
            PoolError::Connect { error, .. } => error.status(),
            PoolError::Closed => "4.3.2",
        }
    }

    /// The `relay=` of the failed lease (docs/spool-and-delivery.md, "The
    /// queue and retries"): `NAME[ADDRESS]:PORT` when the last address
    /// tried greeted and then refused, `[ADDRESS]:PORT` when it failed at
    /// the connection, before a greeting or at the TLS handshake, and
    /// `DESTINATION:PORT` when no address was reached at all (a failed
    /// look-up, a null MX). walkP: MX delivery said `DOMAIN:25` for a
    /// refused connection.
    pub fn relay(&self, dest: &Destination) -> String {
        match self {
            PoolError::Connect {
                error: ClientError::Rejected { .. },
                name,
                addr,
            } => crate::delivery::client::peer_label(name, *addr),
            PoolError::Connect { addr, .. } => format!("[{}]:{}", addr.ip(), addr.port()),
            _ => dest.to_string(),
        }
    }
}

impl Pool {
    /// `open` counts the outbound connections (shared with the gateway's
    /// statistics); `suspensions` are the gateway's, which lists them in
    /// `mailward status`.
    pub fn new(
        total: usize,
        per_host: usize,
        stats: Arc<Stats>,
        suspensions: Arc<super::suspend::Suspensions>,
    ) -> Pool {
        Pool {
            stats,
            total: Arc::new(Semaphore::new(total.max(1))),
            per_host_limit: per_host.max(1),
            per_host: Mutex::new(HashMap::new()),
            idle: Mutex::new(HashMap::new()),
            suspensions,
        }
    }

    fn host_semaphore(&self, dest: &Destination) -> Result<Arc<Semaphore>, PoolError> {
        let mut map = self.per_host.lock().map_err(|_| PoolError::Closed)?;
        Ok(map
            .entry(dest.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_host_limit)))
            .clone())
    }

    /// How many sessions one destination may have at once
    /// (`limits.outgoing_sessions_per_host`, read at start): the runner
    /// keeps no more attempts in flight per destination.
    pub fn per_host_limit(&self) -> usize {
        self.per_host_limit
    }

    /// The statistics the pool reports to.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// A connection to `dest`: a cached idle one, or a new one to the first
    /// candidate address that answers (its DNS look-ups noted in `recent`).
    /// `queue_id` is the message it is for, named in the log lines of the
    /// connection.
    pub async fn lease(
        &self,
        dns: &Dns,
        recent: &RecentLookups,
        dest: &Destination,
        settings: &ClientSettings,
        queue_id: &QueueId,
    ) -> Result<Leased, PoolError> {
        // The destination's slot first, then one of all: an attempt that
        // waits for a busy (or dead) destination must not sit on a session
        // slot that mail for other destinations could use (walkAQ 3: with
        // the total taken first, 120 messages for a hop that never greeted
        // held every slot, and mail for a healthy hop waited a minute).
        let host = self
            .host_semaphore(dest)?
            .acquire_owned()
            .await
            .map_err(|_| PoolError::Closed)?;
        let total = self
            .total
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| PoolError::Closed)?;
        if let Some((client, open)) = self.take_idle(dest) {
            return Ok(Leased {
                _open: open,
                client,
                reused: true,
                dest: dest.clone(),
                _total: total,
                _host: host,
            });
        }
        let mut tally = LookupTally::default();
        let candidates = route::candidates(dns, &mut tally, dest).await;
        if !tally.is_empty() {
            // The statistics first: whoever sees the look-ups in the status
            // window finds them counted too.
            self.stats.record(&tally.event());
            recent.note(tally.answered + tally.not_found, tally.failed);
        }
        if dest.routed() {
            match &candidates {
                Err(RouteError::Misrouted(why)) => self.suspensions.looked_up(dest, Some(why)),
                Ok(_) => self.suspensions.looked_up(dest, None),
                Err(_) => {}
            }
        }
        let candidates = candidates?;
        let (client, open) =
            connect_first(&candidates, settings, dest.tls(), &self.stats, queue_id).await?;
        crate::events::OutboundSessionOpened {
            peer: client.peer(),
            tls: client.tls(),
            tls_mode: dest.tls().mode,
            fell_back: client.tls_fell_back(),
        }
        .emit(&self.stats);
        Ok(Leased {
            _open: open,
            client,
            reused: false,
            dest: dest.clone(),
            _total: total,
            _host: host,
        })
    }

    fn take_idle(&self, dest: &Destination) -> Option<(SmtpClient, OpenGuard)> {
        let mut idle = self.idle.lock().ok()?;
        let list = idle.get_mut(dest)?;
        while let Some((client, open, since)) = list.pop() {
            if since.elapsed() < IDLE_TTL {
                return Some((client, open));
            }
            tokio::spawn(quit(client, open));
        }
        None
    }

    /// Returns a connection after a successful transaction (already RSET).
    pub fn release(&self, leased: Leased) {
        let Leased {
            client,
            dest,
            _open: open,
            ..
        } = leased;
        if let Ok(mut idle) = self.idle.lock() {
            let list = idle.entry(dest).or_default();
            if list.len() < self.per_host_limit {
                list.push((client, open, Instant::now()));
                return;
            }
        }
        tokio::spawn(quit(client, open));
    }

    /// Closes idle connections past their time (called periodically).
    pub fn reap(&self) {
        let Ok(mut idle) = self.idle.lock() else {
            return;
        };
        for list in idle.values_mut() {
            let (keep, old): (Vec<_>, Vec<_>) = list
                .drain(..)
                .partition(|(_, _, since)| since.elapsed() < IDLE_TTL);
            *list = keep;
            for (client, open, _) in old {
                tokio::spawn(quit(client, open));
            }
        }
        idle.retain(|_, l| !l.is_empty());
        drop(idle);
        self.suspensions.reap(&self.stats);
        // The per-destination limits of hops nobody is delivering to: one
        // entry per destination ever used would otherwise stay for the
        // daemon's life, and without routes destinations are recipients'
        // domains (DSNs go to any sender's). One no lease holds (only the
        // map refers to it, all its permits back) is made anew when needed.
        if let Ok(mut hosts) = self.per_host.lock() {
            hosts.retain(|_, s| {
                Arc::strong_count(s) > 1 || s.available_permits() < self.per_host_limit
            });
        }
    }

    /// Closes every idle connection (shutdown).
    pub async fn close_all(&self) {
        let all: Vec<(SmtpClient, OpenGuard)> = match self.idle.lock() {
            Ok(mut idle) => idle
                .drain()
                .flat_map(|(_, l)| l)
                .map(|(c, o, _)| (c, o))
                .collect(),
            Err(_) => Vec::new(),
        };
        for (client, open) in all {
            quit(client, open).await;
        }
    }
}

/// Says goodbye; the connection stops counting as open afterwards.
async fn quit(client: SmtpClient, open: OpenGuard) {
    client.quit().await;
    drop(open);
}

async fn connect_first(
    candidates: &[Candidate],
    settings: &ClientSettings,
    tls: &crate::config::OutboundTls,
    stats: &Arc<Stats>,
    queue_id: &QueueId,
) -> Result<(SmtpClient, OpenGuard), PoolError> {
    let mut last: Option<PoolError> = None;
    for c in candidates {
        // Counted while it connects and waits for the greeting; a failed
        // connection stops counting when the guard drops, here.
        let open = OpenGuard::connecting(stats);
        match SmtpClient::connect(c.addr, &c.name, settings, tls, queue_id).await {
            Ok(client) => return Ok((client, open)),
            Err(e) => {
                if matches!(e, crate::delivery::client::ClientError::TlsRequired { .. }) {
                    crate::events::OutboundTlsFailed {
                        queue_id,
                        peer: &crate::delivery::client::peer_label(&c.name, c.addr),
                        error: &e,
                    }
                    .emit(stats);
                }
                // With the message's queue ID, so that `grep QUEUE_ID` shows why
                // an address was skipped (walkAQ 1).
                tracing::info!(target: "delivery", queue_id = %queue_id, host = %c.name, addr = %c.addr, error = %e,
                    "Next-hop address failed; trying the next address, if any.");
                // A 5xx greeting from one MX does not stop us trying others.
                last = Some(PoolError::Connect {
                    error: e,
                    name: c.name.clone(),
                    addr: c.addr,
                });
            }
        }
    }
    Err(last.unwrap_or_else(|| PoolError::Route(RouteError::Temporary("no address to try".into()))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OutboundTls;

    fn mx(domain: &str) -> Destination {
        Destination::Mx {
            domain: domain.to_string(),
            port: 25,
            tls: OutboundTls::default(),
            routed: false,
        }
    }

    /// walkP: on MX delivery a refused connection was logged with
    /// `relay=implicit.test:25`; the doc says `[ADDRESS]:PORT`, the last
    /// address tried.
    #[tokio::test]
    async fn a_failed_lease_names_the_last_address_tried() {
        // Two addresses, nothing listening on either port.
        let dead = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .unwrap()
        };
        let (first, second) = (dead(), dead());
        let candidates = [
            Candidate {
                name: "mx1.implicit.test".into(),
                addr: first,
            },
            Candidate {
                name: "mx2.implicit.test".into(),
                addr: second,
            },
        ];
        let settings = ClientSettings {
            helo_name: "gw.test".into(),
            connect_timeout: Duration::from_secs(2),
            command_timeout: Duration::from_secs(2),
            data_timeout: Duration::from_secs(2),
        };
        let stats = Arc::new(mailward_metrics::Stats::new(&[], 10, None, "test"));
        let tls = OutboundTls::default();
        let id = QueueId("1A24AE420F0D7021".into());
        let Err(e) = connect_first(&candidates, &settings, &tls, &stats, &id).await else {
            panic!("nothing listens there");
        };
        assert_eq!(
            e.relay(&mx("implicit.test")),
            format!("[127.0.0.1]:{}", second.port())
        );
        assert!(!e.is_permanent());
        // No address reached at all: the destination.
        let none = PoolError::Route(RouteError::Permanent("x: no such domain".into()));
        assert_eq!(none.relay(&mx("nx.test")), "nx.test:25");
        // A hop that greeted and then refused: its name too.
        let refused = PoolError::Connect {
            error: ClientError::Rejected {
                stage: "banner",
                reply: crate::delivery::client::Reply {
                    code: 554,
                    text: "5.3.0 go away".into(),
                },
            },
            name: "mx1.implicit.test".into(),
            addr: first,
        };
        assert_eq!(
            refused.relay(&mx("implicit.test")),
            format!("mx1.implicit.test[127.0.0.1]:{}", first.port())
        );
    }

    /// FIXO task 1: a hop that accepts TCP and never greets holds an
    /// outbound session of ours; the gauge counts it while it waits for
    /// the greeting, and lets it go when the wait fails.
    #[tokio::test]
    async fn a_connection_waiting_for_its_greeting_counts_as_an_open_session() {
        use mailward_metrics::{Gauges, StatId};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (accepted_tx, accepted_rx) = tokio::sync::oneshot::channel();
        let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
        let hop = tokio::spawn(async move {
            let (silent, _) = listener.accept().await.unwrap();
            let _ = accepted_tx.send(());
            // Holds the connection open, greeting nobody, until told.
            let _ = release_rx.await;
            drop(silent);
        });
        let stats = Arc::new(mailward_metrics::Stats::new(
            &mailward_metrics::Category::ALL,
            10,
            None,
            "test",
        ));
        let open_out = |stats: &Stats| {
            let snap = stats.snapshot(&Gauges::default());
            (
                snap.value(StatId::Sessions, 1),
                snap.value(StatId::SessionsOpened, 1),
            )
        };
        let candidates = [Candidate {
            name: "silent.test".into(),
            addr,
        }];
        let settings = ClientSettings {
            helo_name: "gw.test".into(),
            connect_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(30),
            data_timeout: Duration::from_secs(5),
        };
        let connecting = {
            let stats = stats.clone();
            tokio::spawn(async move {
                let id = QueueId("1A24AE420F0D7021".into());
                connect_first(&candidates, &settings, &OutboundTls::default(), &stats, &id)
                    .await
                    .map(|_| ())
            })
        };
        accepted_rx.await.unwrap();
        assert_eq!(
            open_out(&stats),
            (1, 1),
            "waiting for the greeting: one outbound session open"
        );
        release_tx.send(()).unwrap();
        hop.await.unwrap();
        assert!(connecting.await.unwrap().is_err(), "no greeting came");
        assert_eq!(
            open_out(&stats),
            (0, 1),
            "the failed connection is no longer open"
        );
    }

    #[test]
    fn the_limits_of_destinations_nobody_delivers_to_are_let_go() {
        let stats = Arc::new(mailward_metrics::Stats::new(&[], 10, None, "test"));
        let pool = Pool::new(10, 2, stats, Arc::default());
        for n in 0..1000 {
            pool.host_semaphore(&mx(&format!("d{n}.test"))).unwrap();
        }
        // One destination in use: a permit held, and its semaphore shared.
        let busy = pool.host_semaphore(&mx("busy.test")).unwrap();
        let permit = busy.clone().try_acquire_owned().unwrap();
        drop(busy);
        assert_eq!(pool.per_host.lock().unwrap().len(), 1001);
        pool.reap();
        let left: Vec<Destination> = pool.per_host.lock().unwrap().keys().cloned().collect();
        assert_eq!(left, vec![mx("busy.test")], "only the one in use stays");
        // Its limit holds while it is in use: the same semaphore comes back.
        let again = pool.host_semaphore(&mx("busy.test")).unwrap();
        assert_eq!(again.available_permits(), 1);
        drop(permit);
        drop(again);
        pool.reap();
        assert!(pool.per_host.lock().unwrap().is_empty());
    }
}
