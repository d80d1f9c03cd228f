//! The keys a reload cannot change: what `mailward run` builds once at
//! start (the listeners, the data directory and its lock, the admin socket,
//! the worker pools, the statistics model, logging, the AgentX session).
//! A SIGHUP that changes one of them keeps the running value for it, says
//! so, and applies the rest of the new configuration; changing them needs a
//! restart.

use super::Config;

/// Restores, in `new`, the running value of every key that takes effect only
/// at restart; returns one sentence per key that was changed.
pub fn keep_restart_only(running: &Config, new: &mut Config) -> Vec<String> {
    let mut kept = Vec::new();
    macro_rules! keep {
        ($($section:ident . $key:ident),* $(,)?) => {$(
            if new.$section.$key != running.$section.$key {
                kept.push(format!(
                    "{}.{} changed ({:?} -> {:?}): it takes effect only at restart; the running value stays",
                    stringify!($section),
                    stringify!($key),
                    running.$section.$key,
                    new.$section.$key,
                ));
                new.$section.$key = running.$section.$key.clone();
            }
        )*};
    }
    keep!(
        server.data_dir,
        server.admin_socket,
        server.user,
        server.group,
        network.listen_on,
        limits.antiviral_sessions,
        limits.outgoing_sessions,
        limits.outgoing_sessions_per_host,
        limits.scan_memory,
        spam.dir,
        spam.max_tokens,
        spam.max_learnt,
        metrics.listen,
        milter.listen,
        milter.max_connections,
        statistics.options,
        statistics.raw_destination,
        statistics.top,
        agentx.socket,
        agentx.timeout,
        agentx.retries,
        agentx.ping_interval,
        agentx.root_oid,
        log.destination,
        log.options,
        log.format,
        log.syslog_format,
        log.rotate_size,
        log.rotate_rounds,
    );
    // The spam store is opened once (its poller thread holds it); its URL
    // may carry a password, so the values are not repeated.
    if new.spam.store != running.spam.store {
        kept.push(
            "spam.store changed: it takes effect only at restart; the running store stays".into(),
        );
        new.spam.store = running.spam.store.clone();
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_only_keys_keep_their_running_values_and_the_rest_applies() {
        let running = super::super::parse("", "a.toml").unwrap();
        let mut new = super::super::parse(
            "[server]\ndata_dir = \"elsewhere\"\nadmin_socket = \"mailward-data/admin.sock\"\n\
             [statistics]\nraw_destination = \"mailward-data/stats/raw.log\"\n\
             [spam]\ndir = \"mailward-data/spam\"\nstore = \"redis://:pw@127.0.0.1:6379/0\"\n\
             [limits]\nmax_rcpts_per_message = 7\nantiviral_sessions = 9\n",
            "a.toml",
        )
        .unwrap();
        let kept = keep_restart_only(&running, &mut new);
        assert_eq!(kept.len(), 3, "{kept:?}");
        assert_eq!(
            kept[2],
            "spam.store changed: it takes effect only at restart; the running store stays"
        );
        assert!(new.spam.store.is_empty());
        assert!(
            kept[0].starts_with("server.data_dir changed"),
            "{}",
            kept[0]
        );
        assert!(
            kept[1].starts_with("limits.antiviral_sessions changed (4 -> 9)"),
            "{}",
            kept[1]
        );
        assert_eq!(new.server, running.server);
        assert_eq!(new.limits.max_rcpts_per_message, 7, "the rest applies");
        assert!(keep_restart_only(&running, &mut running.clone()).is_empty());
    }
}
