//! Raw records (DESIGN 6): one tab-separated line per message and recipient,
//!
//! `UNIXTIME SIZE SENDER RECIPIENT STATUS DETAIL CLIENT_IP QUEUE_ID GROUP`
//!
//! appended to `statistics.raw_destination`. A line is built whole and
//! written with one `write` to a file opened for appending, so readers never
//! see a partial line from us. Fields are escaped (backslash, tab, CR, LF and
//! other control characters as `\\`, `\t`, `\r`, `\n`, `\xHH`), so a hostile
//! address cannot add a column or a line; an empty field is written `-`.
//! The file is rotated like the log: past `rotate_size`, FILE becomes
//! FILE.1, FILE.1 becomes FILE.2, ... up to `rotate_rounds` files.

use std::fs::{File, OpenOptions};

/// The mode of the raw record file and its rotated copies.
pub const RAW_FILE_MODE: u32 = 0o640;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RawRecord {
    pub time: i64,
    pub size: u64,
    pub sender: String,
    pub recipient: String,
    /// "av/clean", "as/spam", ... (see DESIGN 5)
    pub status: String,
    /// Virus or rule; "" when none.
    pub detail: String,
    pub client_ip: String,
    pub queue_id: String,
    pub group: String,
}

#[derive(Debug, thiserror::Error)]
#[error("raw records {path}: {source}")]
pub struct RawError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Escapes one field (see the module doc).
pub fn escape(field: &str, out: &mut String) {
    if field.is_empty() {
        out.push('-');
        return;
    }
    for c in field.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02X}", c as u32)),
            c => out.push(c),
        }
    }
}

impl RawRecord {
    /// The line, with its newline.
    pub fn line(&self) -> String {
        let mut out = String::with_capacity(128);
        out.push_str(&self.time.to_string());
        out.push('\t');
        out.push_str(&self.size.to_string());
        for f in [
            &self.sender,
            &self.recipient,
            &self.status,
            &self.detail,
            &self.client_ip,
            &self.queue_id,
            &self.group,
        ] {
            out.push('\t');
            escape(f, &mut out);
        }
        out.push('\n');
        out
    }
}

pub struct RawLog {
    path: PathBuf,
    rotate_size: u64,
    rotate_rounds: u32,
    file: Mutex<Option<(File, u64)>>,
}

impl RawLog {
    pub fn new(path: &Path, rotate_size: u64, rotate_rounds: u32) -> RawLog {
        RawLog {
            path: path.to_path_buf(),
            rotate_size,
            rotate_rounds,
            file: Mutex::new(None),
        }
    }

    fn err(&self, source: std::io::Error) -> RawError {
        RawError {
            path: self.path.clone(),
            source,
        }
    }

    /// Opens (creating) the file for appending. Raw records name senders
    /// and recipients: the file is 0640 (the daemon's group may read it,
    /// other users may not) in a 0750 directory, whatever the umask, and a
    /// file left wider by an older version is narrowed.
    fn open(&self) -> Result<(File, u64), RawError> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(dir)
                .map_err(|e| self.err(e))?;
        }
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(RAW_FILE_MODE)
            .open(&self.path)
            .map_err(|e| self.err(e))?;
        let meta = f.metadata().map_err(|e| self.err(e))?;
        if meta.permissions().mode() & 0o777 != RAW_FILE_MODE {
            f.set_permissions(std::fs::Permissions::from_mode(RAW_FILE_MODE))
                .map_err(|e| self.err(e))?;
        }
        Ok((f, meta.len()))
    }

    fn rotate(&self) -> Result<(), RawError> {
        let name = |i: u32| PathBuf::from(format!("{}.{i}", self.path.display()));
        if self.rotate_rounds == 0 {
            return std::fs::remove_file(&self.path).map_err(|e| self.err(e));
        }
        let _ = std::fs::remove_file(name(self.rotate_rounds));
        for i in (1..self.rotate_rounds).rev() {
            let _ = std::fs::rename(name(i), name(i + 1));
        }
        std::fs::rename(&self.path, name(1)).map_err(|e| self.err(e))
    }

    pub fn append(&self, record: &RawRecord) -> Result<(), RawError> {
        let line = record.line();
        let mut guard = self
            .file
            .lock()
            .map_err(|_| self.err(std::io::Error::other("lock poisoned")))?;
        if guard.is_none() {
            *guard = Some(self.open()?);
        }
        if let Some((_, len)) = guard.as_ref() {
            if self.rotate_size > 0 && *len + line.len() as u64 > self.rotate_size && *len > 0 {
                *guard = None;
                self.rotate()?;
                *guard = Some(self.open()?);
            }
        }
        let Some((file, len)) = guard.as_mut() else {
            return Ok(());
        };
        match file.write_all(line.as_bytes()) {
            Ok(()) => {
                *len += line.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Reopen next time (the file may have been moved away).
                *guard = None;
                Err(self.err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(sender: &str) -> RawRecord {
        RawRecord {
            time: 1,
            size: 2,
            sender: sender.into(),
            recipient: "r@x".into(),
            status: "av/clean".into(),
            detail: String::new(),
            client_ip: "127.0.0.1".into(),
            queue_id: "Q".into(),
            group: String::new(),
        }
    }

    #[test]
    fn hostile_fields_cannot_add_columns_or_lines() {
        let line = rec("a\tb\nc\\d\u{1}\"é").line();
        assert_eq!(line.matches('\t').count(), 8);
        assert_eq!(line.matches('\n').count(), 1);
        assert!(line.contains("a\\tb\\nc\\\\d\\x01\"é"), "{line}");
        assert!(line.contains("\t-\t127.0.0.1"), "empty detail is -: {line}");
    }

    #[test]
    fn rotates_past_the_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raw.log");
        let log = RawLog::new(&path, 100, 2);
        for _ in 0..10 {
            log.append(&rec("s@x")).unwrap();
        }
        assert!(path.exists());
        assert!(dir.path().join("raw.log.1").exists());
        assert!(dir.path().join("raw.log.2").exists());
        assert!(!dir.path().join("raw.log.3").exists());
        for p in ["raw.log", "raw.log.1"] {
            let text = std::fs::read_to_string(dir.path().join(p)).unwrap();
            assert!(text.ends_with('\n') && text.lines().all(|l| l.split('\t').count() == 9));
        }
    }
}
