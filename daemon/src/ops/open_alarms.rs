//! The alarms this gateway has raised at the NMS and not cleared yet,
//! kept in `DATA_DIR/alarms.json` so that the next run can clear the ones
//! that are gone.
//!
//! A raised `mwAlertThreshold` or a `mwProductError` that can end (the
//! bases on disk not loading, a store that cannot write) is cleared by the
//! run that raised it. A restart used to forget them: the new process
//! starts with empty windows and a loading set, never crosses again, and
//! so never clears; the NMS kept the alarm open for good (walkBE 6). The
//! file is written whenever the set changes (not only at a clean stop, so
//! that a crash keeps it too) and read once at start, where the watcher
//! ([`crate::ops::snmp::watch`]) takes it as raised by itself: what is
//! still wrong stays raised without a second notification, what is not is
//! cleared at the first look.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The file, in the data directory.
pub const FILE: &str = "alarms.json";

/// What is raised at the NMS now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OpenAlarms {
    /// `mwAlertThreshold`s raised: the threshold's name and the threshold
    /// it was raised at, as shown in the notification.
    pub thresholds: BTreeMap<String, u64>,
    /// Stores (their names in the configuration) whose failing writes
    /// were reported by `mwProductError`.
    pub stores: BTreeSet<String>,
    /// The bases directory whose set did not load, reported by
    /// `mwProductError`.
    pub bases: Option<String>,
}

impl OpenAlarms {
    pub fn is_empty(&self) -> bool {
        self.thresholds.is_empty() && self.stores.is_empty() && self.bases.is_none()
    }
}

/// Where the file is for a data directory.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE)
}

/// The alarms the previous run left raised: none when there is no file
/// (a first start, or nothing was raised). A file that cannot be read is
/// said and taken as none: the worst it costs is an alarm the NMS keeps.
pub fn read(data_dir: &Path) -> OpenAlarms {
    let file = path(data_dir);
    match std::fs::read(&file) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(target: "admin", file = %file.display(), error = %e,
                "The alarms left raised by the previous run cannot be read; none is cleared at this start.");
            OpenAlarms::default()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => OpenAlarms::default(),
        Err(e) => {
            tracing::warn!(target: "admin", file = %file.display(), error = %e,
                "The alarms left raised by the previous run cannot be read; none is cleared at this start.");
            OpenAlarms::default()
        }
    }
}

/// Replaces the file with `alarms` (removes it when none is raised):
/// written beside it, flushed, renamed over it.
pub fn write(data_dir: &Path, alarms: &OpenAlarms) -> std::io::Result<()> {
    let json = if alarms.is_empty() {
        None
    } else {
        Some(serde_json::to_vec_pretty(alarms).map_err(std::io::Error::other)?)
    };
    crate::files::replace_small_file(data_dir, FILE, json.as_deref(), crate::files::GROUP_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alarms_round_trip_and_none_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()), OpenAlarms::default());
        let mut alarms = OpenAlarms::default();
        alarms.thresholds.insert("infected_per_minute".into(), 0);
        alarms.stores.insert("quarantine".into());
        alarms.bases = Some("/var/lib/mailward/bases/av".into());
        write(dir.path(), &alarms).unwrap();
        assert_eq!(read(dir.path()), alarms);
        write(dir.path(), &OpenAlarms::default()).unwrap();
        assert!(!path(dir.path()).exists());
        // Nothing to remove: no error.
        write(dir.path(), &OpenAlarms::default()).unwrap();
    }

    #[test]
    fn a_damaged_file_is_taken_as_none() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(path(dir.path()), b"{not json").unwrap();
        assert_eq!(read(dir.path()), OpenAlarms::default());
        // A file of an older or newer run with other fields still reads.
        std::fs::write(
            path(dir.path()),
            br#"{"thresholds":{"queue_messages":5},"later":1}"#,
        )
        .unwrap();
        assert_eq!(read(dir.path()).thresholds.get("queue_messages"), Some(&5));
    }
}
