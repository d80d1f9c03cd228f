//! The signature bases as the rest of the gateway sees them: what is loaded
//! (version, release time, record count, when loaded) from the bases
//! directory's `manifest.toml`, and whether it is obsolete. Compiling and
//! using the rules (YARA) belongs to the scanner; this module only reads the
//! manifest, so that statistics, SNMP and traps can report the bases.
//!
//! `manifest.toml`:
//! ```toml
//! version = "2026.11.24.1"
//! released = "2026-11-24T00:00:00Z"   # RFC 3339
//! records = 1204
//! ```

use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasesInfo {
    pub version: String,
    /// Unix time of the release.
    pub released: i64,
    pub records: u64,
    /// Unix time they were loaded.
    pub loaded_at: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum BasesError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {problem}")]
    Manifest { path: PathBuf, problem: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    version: String,
    released: String,
    records: u64,
    #[serde(default)]
    #[allow(dead_code)]
    checksum: Option<String>,
}

/// Reads `DIR/manifest.toml`; Ok(None) when the directory has no manifest
/// (no bases installed).
pub fn read(dir: &Path) -> Result<Option<BasesInfo>, BasesError> {
    let path = dir.join("manifest.toml");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(BasesError::Read { path, source }),
    };
    let m: Manifest = toml::from_str(&text).map_err(|e| BasesError::Manifest {
        path: path.clone(),
        problem: e.to_string(),
    })?;
    let released = chrono::DateTime::parse_from_rfc3339(&m.released)
        .map_err(|e| BasesError::Manifest {
            path: path.clone(),
            problem: format!(
                "released: expected an RFC 3339 time like \"2026-11-24T00:00:00Z\": {e}"
            ),
        })?
        .timestamp();
    Ok(Some(BasesInfo {
        version: m.version,
        released,
        records: m.records,
        loaded_at: chrono::Utc::now().timestamp(),
    }))
}

/// True when bases are loaded and older than `max_age` at `now`.
pub fn is_obsolete(info: Option<&BasesInfo>, max_age: std::time::Duration, now: i64) -> bool {
    info.is_some_and(|b| now - b.released > max_age.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_manifest_and_judges_its_age() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        std::fs::write(
            dir.path().join("manifest.toml"),
            "version = \"1\"\nreleased = \"2026-01-01T00:00:00Z\"\nrecords = 12\n",
        )
        .unwrap();
        let info = read(dir.path()).unwrap().unwrap();
        assert_eq!(info.records, 12);
        assert_eq!(info.released, 1_767_225_600);
        let week = std::time::Duration::from_secs(7 * 86400);
        assert!(is_obsolete(Some(&info), week, info.released + 8 * 86400));
        assert!(!is_obsolete(Some(&info), week, info.released + 86400));
        assert!(!is_obsolete(None, week, 0));
        std::fs::write(dir.path().join("manifest.toml"), "version = 1\n").unwrap();
        assert!(matches!(read(dir.path()), Err(BasesError::Manifest { .. })));
    }
}
