//! The delivery loop: takes due messages from the queue and runs their
//! attempts as tasks, never more at once than the outgoing session limit
//! allows to make progress, sleeps until the next message falls due or the
//! queue changes, and drains in-flight attempts on shutdown.

use super::attempt::Delivery;
use std::sync::Arc;
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

pub async fn run(delivery: Arc<Delivery>, grace: Duration) {
    let gw = delivery.gw.clone();
    let mut shutdown = gw.shutdown.clone();
    let mut tasks = JoinSet::new();
    let mut reap = tokio::time::interval(REAP_EVERY);
    loop {
        if *shutdown.borrow() {
            break;
        }
        // Attempts beyond what the session limits let run at once would
        // only wait on the pool, each holding its message in memory.
        let cfg = gw.config();
        let room = (cfg.limits.outgoing_sessions as usize * 2).saturating_sub(tasks.len());
        let (due, next) = gw.queue.take_due(room);
        for env in due {
            tasks.spawn(delivery.clone().attempt(env));
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
