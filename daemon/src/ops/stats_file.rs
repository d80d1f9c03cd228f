//! The statistics file (`statistics.destination`): a JSON rendering of one
//! snapshot, replaced atomically (written beside it, then renamed), every
//! `statistics.write_interval`, on SIGUSR1 and on `mailward stats write`.

use crate::gateway::Gateway;
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[error("statistics file {path}: {source}")]
pub struct StatsFileError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Writes the file; returns its path.
pub fn write(gw: &Gateway) -> Result<PathBuf, StatsFileError> {
    let path = gw.config().statistics.destination.clone();
    let err = |source| StatsFileError {
        path: path.clone(),
        source,
    };
    let json = serde_json::to_vec_pretty(&gw.snapshot().to_json())
        .map_err(|e| err(std::io::Error::other(e)))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::files::ensure_dir(dir, crate::files::GROUP_DIR).map_err(err)?;
    }
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    // Monitoring (the daemon's group) may read it; other users may not.
    let mut f = crate::files::create(&tmp, crate::files::GROUP_FILE).map_err(err)?;
    f.write_all(&json).map_err(err)?;
    f.write_all(b"\n").map_err(err)?;
    f.sync_data().map_err(err)?;
    std::fs::rename(&tmp, &path).map_err(err)?;
    Ok(path)
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
        if let Err(e) = write(&gw) {
            tracing::warn!(target: "app", error = %e, "Cannot write the statistics file.");
        }
    }
}
