//! Raw records (DESIGN 6): one tab-separated line per message and recipient,
//!
//! `UNIXTIME SIZE SENDER RECIPIENT STATUS DETAIL CLIENT_IP QUEUE_ID GROUP MODE`
//!
//! (MODE, how the message came: smtp, filter or milter, was added last so
//! that readers of the nine older fields keep working.)
//!
//! appended to `statistics.raw_destination`. A line is built whole and
//! written with one `write` to a file opened for appending, so readers never
//! see a partial line from us (a write a full disk cut short is taken back,
//! see [`RotatingFile`]). Fields are escaped (backslash, tab, CR, LF and
//! other control characters as `\\`, `\t`, `\r`, `\n`, `\xHH`), so a hostile
//! address cannot add a column or a line; an empty field is written `-`.
//! The file is rotated and reopened like the log ([`RotatingFile`]).

use std::path::{Path, PathBuf};

use crate::rotate::RotatingFile;

/// The mode of the raw record file and its rotated copies.
pub const RAW_FILE_MODE: u32 = 0o640;

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
    /// smtp, filter or milter (`catalogue::MODES`).
    pub mode: &'static str,
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
            self.sender.as_str(),
            self.recipient.as_str(),
            self.status.as_str(),
            self.detail.as_str(),
            self.client_ip.as_str(),
            self.queue_id.as_str(),
            self.group.as_str(),
            self.mode,
        ] {
            out.push('\t');
            escape(f, &mut out);
        }
        out.push('\n');
        out
    }
}

/// The raw record file: a [`RotatingFile`] of mode [`RAW_FILE_MODE`].
pub struct RawLog {
    file: RotatingFile,
}

impl RawLog {
    pub fn new(path: &Path, rotate_size: u64, rotate_rounds: u32) -> RawLog {
        RawLog {
            file: RotatingFile::new(path, rotate_size, rotate_rounds, RAW_FILE_MODE),
        }
    }

    pub fn append(&self, record: &RawRecord) -> Result<(), RawError> {
        self.file
            .append(record.line().as_bytes())
            .map_err(|source| RawError {
                path: self.file.path().to_path_buf(),
                source,
            })
    }

    /// Closes the file; the next record opens its path again.
    pub fn reopen(&self) {
        self.file.reopen();
    }

    /// Rotations that failed so far, and the last one's error.
    pub fn rotation_failure(&self) -> (u64, Option<String>) {
        self.file.rotation_failure()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A record from `sender`, for the model's tests too.
    pub(crate) fn rec(sender: &str) -> RawRecord {
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
            mode: "smtp",
        }
    }

    #[test]
    fn hostile_fields_cannot_add_columns_or_lines() {
        let line = rec("a\tb\nc\\d\u{1}\"é").line();
        assert_eq!(line.matches('\t').count(), 9);
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
            assert!(text.ends_with('\n') && text.lines().all(|l| l.split('\t').count() == 10));
        }
    }
}
