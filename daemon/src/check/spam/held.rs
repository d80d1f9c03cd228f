//! What a shared spam store (Redis) held when this gateway last read it,
//! kept in `DATA_DIR/spam-store.json`, so that a start can tell a store
//! that lost its learning while no gateway ran (a host that runs both
//! rebooted, a Redis without persistence restarted with them) from a new
//! one (walkBH F12: only a gateway running at the loss noticed it, and
//! autolearn then wrote into the empty store at once).
//!
//! The file is the daemon's own: written when the counts it reads change
//! (the learning of a store that came back empty is not overwritten with
//! nothing), removed when the store is empty by forgetting, and keyed by
//! the store's URL (without password), so that a new store is not taken
//! for the old one emptied.

use std::path::{Path, PathBuf};

use super::knowledge::Emptied;

/// The file, in the data directory.
pub const FILE: &str = "spam-store.json";

fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE)
}

/// What `store` held when last read: None when nothing is kept for it
/// (no file, another store's, or a file that cannot be read: the worst
/// that costs is a loss not noticed, as before this file).
pub fn read(data_dir: &Path, store: &str) -> Option<Emptied> {
    let bytes = std::fs::read(path(data_dir)).ok()?;
    let held: Emptied = serde_json::from_slice(&bytes).ok()?;
    (held.store == store && (held.spam > 0 || held.ham > 0)).then_some(held)
}

/// Keeps `held` (removes the file when it holds nothing): written beside
/// it, flushed, renamed over it.
pub fn write(data_dir: &Path, held: &Emptied) -> std::io::Result<()> {
    let json = if held.spam == 0 && held.ham == 0 {
        None
    } else {
        Some(serde_json::to_vec_pretty(held).map_err(std::io::Error::other)?)
    };
    crate::files::replace_small_file(data_dir, FILE, json.as_deref(), crate::files::GROUP_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(store: &str, spam: u64, ham: u64) -> Emptied {
        Emptied {
            store: store.into(),
            spam,
            ham,
        }
    }

    #[test]
    fn kept_per_store_and_nothing_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let url = "redis://127.0.0.1:6379/0";
        assert_eq!(read(dir.path(), url), None);
        write(dir.path(), &held(url, 8, 3)).unwrap();
        assert_eq!(read(dir.path(), url), Some(held(url, 8, 3)));
        // Another store (a new Redis) is not the old one emptied.
        assert_eq!(read(dir.path(), "redis://127.0.0.1:6380/0"), None);
        write(dir.path(), &held(url, 0, 0)).unwrap();
        assert!(!path(dir.path()).exists());
        assert_eq!(read(dir.path(), url), None);
        // Nothing to remove: no error; garbage is nothing kept.
        write(dir.path(), &held(url, 0, 0)).unwrap();
        std::fs::write(path(dir.path()), b"{").unwrap();
        assert_eq!(read(dir.path(), url), None);
    }

    #[test]
    fn counts_at_the_top_of_the_range_are_still_held() {
        // The file is input: a sum of its counts would wrap to "nothing
        // held" in a release build (and panic in a debug one).
        let dir = tempfile::tempdir().unwrap();
        let url = "redis://127.0.0.1:6379/0";
        write(dir.path(), &held(url, u64::MAX, 1)).unwrap();
        assert_eq!(read(dir.path(), url), Some(held(url, u64::MAX, 1)));
    }
}
