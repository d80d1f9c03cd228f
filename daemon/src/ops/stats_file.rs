//! The statistics file (`statistics.destination`): a JSON rendering of one
//! snapshot, replaced atomically (written beside it, then renamed), every
//! `statistics.write_interval`, on SIGUSR1 and on `mailward stats write`.

use crate::gateway::Gateway;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

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

/// Whether a write is in progress (it may outlive its caller's wait).
static WRITING: AtomicBool = AtomicBool::new(false);

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
    let json =
        serde_json::to_vec_pretty(&snap.to_json()).map_err(|e| err(std::io::Error::other(e)))?;
    if WRITING.swap(true, Ordering::AcqRel) {
        return Err(err(std::io::Error::other(
            "the previous write has not finished (a slow or hung disk?)",
        )));
    }
    let target = path.clone();
    let job = tokio::task::spawn_blocking(move || {
        let r = store(&target, &json);
        WRITING.store(false, Ordering::Release);
        r
    });
    match tokio::time::timeout(WRITE_WAIT, job).await {
        Ok(Ok(r)) => r.map(|()| path.clone()).map_err(err),
        Ok(Err(join)) => {
            WRITING.store(false, Ordering::Release);
            Err(err(std::io::Error::other(join)))
        }
        Err(_) => Err(err(std::io::Error::other(format!(
            "not written after {}s (a slow or hung disk?); still trying",
            WRITE_WAIT.as_secs()
        )))),
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
/// reload changes it) until shutdown.
pub async fn periodic(gw: std::sync::Arc<Gateway>) {
    let mut shutdown = gw.shutdown.clone();
    loop {
        let every = gw.config().statistics.write_interval.get();
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        if let Err(e) = write(&gw).await {
            tracing::warn!(target: "app", error = %e, "Cannot write the statistics file.");
        }
    }
}
