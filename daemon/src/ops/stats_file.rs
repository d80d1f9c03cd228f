//! The statistics file (`statistics.destination`): a JSON rendering of one
//! snapshot, replaced atomically (written beside it, then renamed), every
//! `statistics.write_interval`, on SIGUSR1 and on `mailward stats write`.

use crate::gateway::Gateway;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("statistics file {path}: {source}")]
pub struct StatsFileError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// How long a caller waits for the file to be written. The write itself
/// (an fsync on the spool's disk, or a monitoring share that may hang) is
/// done off the runtime's threads and goes on after that; only one is in
/// progress at a time.
const WRITE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The key, at the file's top level, of what the last update of the bases
/// said. A file written before it had none: its update is read back
/// without a message, as before.
const LAST_UPDATE_MESSAGE: &str = "update_last_message";

/// Held while a write is in progress (it may outlive its caller's wait).
/// A second write waits for the first, up to [`WRITE_WAIT`], rather than
/// failing at once: `stats reset` during a periodic write must still
/// write the figures up to the reset.
static WRITING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Writes the file; returns its path. The snapshot is taken here; the
/// file is written on a blocking thread, so that a slow or hung disk
/// holds no runtime thread (mail's) and no caller past [`WRITE_WAIT`].
pub async fn write(gw: &Gateway) -> Result<PathBuf, StatsFileError> {
    write_snapshot(gw, &gw.snapshot()).await
}

/// Writes `snap` as the file (`stats reset` writes the figures up to the
/// reset, taken with it).
pub async fn write_snapshot(
    gw: &Gateway,
    snap: &mailward_metrics::Snapshot,
) -> Result<PathBuf, StatsFileError> {
    let path = gw.config().statistics.destination.clone();
    let err = |source| StatsFileError {
        path: path.clone(),
        source,
    };
    let mut doc = snap.to_json();
    // What the last update of the bases said (a failed one's reason), kept
    // beside its time and result for the next run ([`restore_last_update`]).
    if let (Some(root), Some(message)) = (doc.as_object_mut(), gw.last_update_message()) {
        root.insert(
            LAST_UPDATE_MESSAGE.into(),
            serde_json::Value::String(message),
        );
    }
    let json = serde_json::to_vec_pretty(&doc).map_err(|e| err(std::io::Error::other(e)))?;
    write_bytes(&path, json).await.map_err(err)?;
    Ok(path)
}

/// Writes `json` as the file at `path` off the runtime's threads, one
/// write at a time, waiting at most [`WRITE_WAIT`] in all.
async fn write_bytes(path: &Path, json: Vec<u8>) -> std::io::Result<()> {
    let started = tokio::time::Instant::now();
    let Ok(writing) = tokio::time::timeout(WRITE_WAIT, WRITING.lock()).await else {
        return Err(std::io::Error::other(format!(
            "the previous write has not finished after {}s (a slow or hung disk?)",
            WRITE_WAIT.as_secs()
        )));
    };
    let target = path.to_path_buf();
    let job = tokio::task::spawn_blocking(move || {
        // The guard goes with the write: a caller that stops waiting
        // leaves the next writer waiting for the disk, not racing it.
        let _writing = writing;
        store(&target, &json)
    });
    match tokio::time::timeout(WRITE_WAIT.saturating_sub(started.elapsed()), job).await {
        Ok(Ok(r)) => r,
        Ok(Err(join)) => Err(std::io::Error::other(join)),
        Err(_) => Err(std::io::Error::other(format!(
            "not written after {}s (a slow or hung disk?); still trying",
            WRITE_WAIT.as_secs()
        ))),
    }
}

/// Replaces the file at `path` with `json`: written beside it, flushed,
/// then renamed over it.
fn store(path: &Path, json: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::files::ensure_dir(dir, crate::files::GROUP_DIR)?;
    }
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    // Monitoring (the daemon's group) may read it; other users may not.
    let mut f = crate::files::create(&tmp, crate::files::GROUP_FILE)?;
    f.write_all(json)?;
    f.write_all(b"\n")?;
    f.sync_data()?;
    std::fs::rename(&tmp, path)
}

/// Writes the file every `write_interval` (read anew after each write, so a
/// reload changes it) and after each update attempt of the bases, until
/// shutdown. First it puts back the last update the file of the previous
/// run kept ([`restore_last_update`]).
pub async fn periodic(gw: std::sync::Arc<Gateway>) {
    let mut shutdown = gw.shutdown.clone();
    // Before the restore: an update recorded meanwhile is written too.
    let updated = std::sync::Arc::new(tokio::sync::Notify::new());
    let hook = updated.clone();
    gw.stats
        .set_update_hook(Box::new(move || hook.notify_one()));
    restore_last_update(&gw).await;
    loop {
        let every = gw.config().statistics.write_interval.get();
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            // At once, so that a restart (even after a crash) finds it.
            _ = updated.notified() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        if let Err(e) = write(&gw).await {
            tracing::warn!(target: "app", error = %e, "Cannot write the statistics file.");
        }
    }
}

/// Puts back the last update of the bases (its time, result and message)
/// from the statistics file the previous run wrote, so that a restart does
/// not say "never (unknown)" on /metrics, in SNMP and in `mailward bases
/// status` after an update, nor clear the alert of a failed one, nor lose
/// what it failed on (walkAG 2). An update attempted since start is newer
/// and stays. A missing file is a
/// first start; one that does not read is said and otherwise ignored.
pub async fn restore_last_update(gw: &Gateway) {
    let path = gw.config().statistics.destination.clone();
    let target = path.clone();
    let read = tokio::task::spawn_blocking(move || std::fs::read(&target));
    let bytes = match tokio::time::timeout(WRITE_WAIT, read).await {
        Ok(Ok(Ok(bytes))) => bytes,
        Ok(Ok(Err(e))) if e.kind() == std::io::ErrorKind::NotFound => return,
        Ok(Ok(Err(e))) => {
            let e = StatsFileError { path, source: e };
            tracing::warn!(target: "app", error = %e,
                "Cannot read the statistics file; the last update of the bases is not known until the next one.");
            return;
        }
        Ok(Err(join)) => {
            tracing::warn!(target: "app", path = %path.display(), error = %join,
                "Cannot read the statistics file; the last update of the bases is not known until the next one.");
            return;
        }
        Err(_) => {
            tracing::warn!(target: "app", path = %path.display(),
                "The statistics file was not read within {}s (a slow or hung disk?); the last update of the bases is not known until the next one.",
                WRITE_WAIT.as_secs());
            return;
        }
    };
    let (last, message) = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(file) => (
            mailward_metrics::snapshot::last_update_in_json(&file),
            file.get(LAST_UPDATE_MESSAGE)
                .and_then(serde_json::Value::as_str)
                .map(str::to_string),
        ),
        Err(e) => {
            tracing::warn!(target: "app", path = %path.display(), error = %e,
                "The statistics file is not JSON; the last update of the bases is not known until the next one.");
            return;
        }
    };
    if let Some((result, at)) = last {
        if gw.stats.restore_last_update(result, at) {
            if let Some(message) = message {
                gw.restore_last_update_message(message);
            }
            let when = chrono::DateTime::from_timestamp(at, 0)
                .map_or_else(|| at.to_string(), |t| t.to_rfc3339());
            tracing::info!(target: "app", path = %path.display(), at = %when,
                result = mailward_metrics::catalogue::UPDATE_RESULTS.get(result).copied().unwrap_or("unknown"),
                "The last update of the bases, read back from the statistics file.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `stats reset` while the periodic write was on the disk got "the
    /// previous write has not finished" and the figures up to the reset
    /// were never written: a second write waits for the first.
    #[tokio::test]
    async fn a_write_during_another_waits_for_it_and_is_made() {
        let dir = tempfile::tempdir()
            .map_err(|e| e.to_string())
            .unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("stats.json");
        let held = WRITING.lock().await;
        let writer = tokio::spawn({
            let path = path.clone();
            async move { write_bytes(&path, b"{\"after\": 1}".to_vec()).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(!path.exists(), "written while another write held the file");
        drop(held);
        let done = writer.await.map_err(|e| e.to_string());
        assert!(matches!(done, Ok(Ok(()))), "{done:?}");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(text, "{\"after\": 1}\n");
    }
}
