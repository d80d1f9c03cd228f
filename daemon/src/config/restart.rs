//! The keys a reload cannot change: what `mailward run` builds once at
//! start (the listeners, the data directory and its lock, the admin socket,
//! the worker pools, the statistics model, logging, the AgentX session).
//! A SIGHUP that changes one of them keeps the running value for it, says
//! so, and applies the rest of the new configuration; changing them needs a
//! restart.

use super::types::{LogDestination, LogFormat, MilterListen, SyslogFormat};
use super::units::{ByteSize, Dur};
use super::Config;
use std::net::SocketAddr;
use std::path::PathBuf;

/// A key's value as an administrator writes it in the file (`"5s"`,
/// `["127.0.0.1:25"]`), for the message that says it was kept.
trait Written {
    fn written(&self) -> String;
}

/// A TOML string.
fn quoted(text: &str) -> String {
    format!("{text:?}")
}

macro_rules! written_as_string {
    ($($t:ty),*) => {$(
        impl Written for $t {
            fn written(&self) -> String {
                quoted(&self.to_string())
            }
        }
    )*};
}
written_as_string!(
    String,
    SocketAddr,
    MilterListen,
    Dur,
    ByteSize,
    LogDestination,
    LogFormat,
    SyslogFormat
);

impl Written for u32 {
    fn written(&self) -> String {
        self.to_string()
    }
}

impl Written for u64 {
    fn written(&self) -> String {
        self.to_string()
    }
}

impl Written for PathBuf {
    fn written(&self) -> String {
        quoted(&self.display().to_string())
    }
}

impl<T: Written> Written for Option<T> {
    fn written(&self) -> String {
        self.as_ref()
            .map_or_else(|| "(not set)".to_string(), T::written)
    }
}

impl<T: Written> Written for Vec<T> {
    fn written(&self) -> String {
        let items: Vec<String> = self.iter().map(T::written).collect();
        format!("[{}]", items.join(", "))
    }
}

/// A key a reload changed on disk but could not change in the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartOnly {
    /// `server.user changed ("a" -> "b")`, or without the values for a key
    /// that may hold a password.
    pub change: String,
    /// What stays until the restart: "value", or "store" for spam.store.
    stays: &'static str,
}

impl RestartOnly {
    /// The key alone (`server.user`).
    pub fn key(&self) -> &str {
        self.change.split(' ').next().unwrap_or(&self.change)
    }
}

impl std::fmt::Display for RestartOnly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: it takes effect only at restart; the running {} stays",
            self.change, self.stays
        )
    }
}

/// Restores, in `new`, the running value of every key that takes effect only
/// at restart; returns each key that was changed.
pub fn keep_restart_only(running: &Config, new: &mut Config) -> Vec<RestartOnly> {
    let mut kept = Vec::new();
    // Paths that default to places inside the data directory were worked
    // out from the new one: they follow the data directory that stays.
    // (Without this a reload that changed data_dir read the bases from
    // the new directory while saying the old one stays, and each
    // restart-only path under it was reported as a change of its own.)
    if new.server.data_dir != running.server.data_dir {
        let (from, to) = (new.server.data_dir.clone(), &running.server.data_dir);
        for path in [
            &mut new.bases.av,
            &mut new.statistics.destination,
            &mut new.statistics.raw_destination,
            &mut new.server.admin_socket,
            &mut new.spam.dir,
        ] {
            if let Ok(inside) = path.strip_prefix(&from) {
                *path = to.join(inside);
            }
        }
    }
    macro_rules! keep {
        ($($section:ident . $key:ident),* $(,)?) => {$(
            if new.$section.$key != running.$section.$key {
                kept.push(RestartOnly {
                    change: format!(
                        "{}.{} changed ({} -> {})",
                        stringify!($section),
                        stringify!($key),
                        running.$section.$key.written(),
                        new.$section.$key.written(),
                    ),
                    stays: "value",
                });
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
        kept.push(RestartOnly {
            change: "spam.store changed".into(),
            stays: "store",
        });
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
            kept[2].to_string(),
            "spam.store changed: it takes effect only at restart; the running store stays"
        );
        assert!(new.spam.store.is_empty());
        assert_eq!(
            kept[0].to_string(),
            "server.data_dir changed (\"mailward-data\" -> \"elsewhere\"): it takes effect only at restart; the running value stays"
        );
        // What defaults to inside the data directory follows the one that
        // stays.
        assert_eq!(new.bases.av, running.bases.av);
        assert_eq!(new.statistics.destination, running.statistics.destination);
        assert!(
            kept[1].change == "limits.antiviral_sessions changed (4 -> 9)",
            "{}",
            kept[1]
        );
        assert_eq!(new.server, running.server);
        assert_eq!(new.limits.max_rcpts_per_message, 7, "the rest applies");
        assert!(keep_restart_only(&running, &mut running.clone()).is_empty());
    }

    #[test]
    fn a_new_data_dir_is_one_kept_key_not_one_per_path_under_it() {
        let running = super::super::parse("", "a.toml").unwrap();
        let mut new =
            super::super::parse("[server]\ndata_dir = \"/srv/mailward\"\n", "a.toml").unwrap();
        let kept = keep_restart_only(&running, &mut new);
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert_eq!(new.server.admin_socket, running.server.admin_socket);
        assert_eq!(new.spam.dir, running.spam.dir);
        assert_eq!(
            new.statistics.raw_destination,
            running.statistics.raw_destination
        );
    }

    #[test]
    fn kept_values_are_shown_as_written_in_the_file() {
        let running = super::super::parse("", "a.toml").unwrap();
        let mut new = super::super::parse(
            "[log]\ndestination = \"syslog:udp:127.0.0.1:25514@local3\"\nsyslog_format = \"rfc5424\"\n\
             rotate_size = \"1MiB\"\n[network]\nlisten_on = [\"127.0.0.1:2600\", \"[::1]:2600\"]\n",
            "a.toml",
        )
        .unwrap();
        let kept = keep_restart_only(&running, &mut new);
        let said = |key: &str| {
            kept.iter()
                .find(|k| k.change.starts_with(key))
                .unwrap_or_else(|| panic!("{key} in {kept:?}"))
                .change
                .clone()
        };
        assert_eq!(
            said("log.destination"),
            "log.destination changed (\"stderr\" -> \"syslog:udp:127.0.0.1:25514@local3\")"
        );
        assert_eq!(
            said("log.syslog_format"),
            "log.syslog_format changed (\"rfc3164\" -> \"rfc5424\")"
        );
        assert!(
            said("network.listen_on").ends_with("-> [\"127.0.0.1:2600\", \"[::1]:2600\"])"),
            "{kept:?}"
        );
        assert!(
            said("log.rotate_size").ends_with("-> \"1MiB\")"),
            "{kept:?}"
        );
    }
}
