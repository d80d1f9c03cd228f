//! A file appended to in whole lines, rotated by size and reopened on
//! request. The log (`log.destination = "file:PATH"`) and the raw records
//! share it, so both follow the same rules (`log.rotate_size`,
//! `log.rotate_rounds`, `mailward log reopen`):
//!
//! - every [`RotatingFile::append`] is one `write` of a whole line to a file
//!   opened with `O_APPEND`, so no reader ever sees half of one of our lines;
//! - past `rotate_size` (0 = never), PATH becomes PATH.1, PATH.1 becomes
//!   PATH.2, ... and PATH.`rotate_rounds` is removed, so at most
//!   `rotate_rounds` old files are kept beside PATH (0 rounds: PATH is
//!   simply started anew);
//! - [`RotatingFile::reopen`] closes the file so that the next line opens
//!   PATH again: after logrotate's `create` has moved the old file away, lines
//!   land in the new one without `copytruncate`;
//! - a rotation that fails (a directory the unprivileged user may not write
//!   to) never costs a line: lines go on to PATH past `rotate_size`, the
//!   failure is counted and kept ([`RotatingFile::rotation_failure`]), and
//!   rotation is tried again after another `rotate_size` bytes.
//!
//! The file is created with the given mode (logs and raw records name
//! senders and recipients: 0640), whatever the umask, in a directory made
//! 0750 when it is missing.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// See the module documentation.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    rotate_size: u64,
    rotate_rounds: u32,
    mode: u32,
    /// The open file and its length; `None` until the next line opens it.
    file: Mutex<Option<(File, u64)>>,
    /// After a failed rotation: the length PATH must reach before the
    /// next try (0: no failure pending).
    retry_at: AtomicU64,
    failures: AtomicU64,
    last_failure: Mutex<Option<String>>,
}

impl RotatingFile {
    /// A file at `path`, opened on the first line.
    pub fn new(path: &Path, rotate_size: u64, rotate_rounds: u32, mode: u32) -> RotatingFile {
        RotatingFile {
            path: path.to_path_buf(),
            rotate_size,
            rotate_rounds,
            mode,
            file: Mutex::new(None),
            retry_at: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            last_failure: Mutex::new(None),
        }
    }

    /// Rotations that failed so far, and the last one's error.
    pub fn rotation_failure(&self) -> (u64, Option<String>) {
        let last = self.last_failure.lock().ok().and_then(|g| g.clone());
        (self.failures.load(Ordering::Relaxed), last)
    }

    /// The path lines go to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the file now (to report a bad path at start rather than on the
    /// first line).
    pub fn open_now(&self) -> std::io::Result<()> {
        let mut guard = self.lock()?;
        if guard.is_none() {
            *guard = Some(self.open()?);
        }
        Ok(())
    }

    /// Closes the file; the next line opens `path` again (logrotate's
    /// `postrotate`, SIGHUP).
    pub fn reopen(&self) {
        if let Ok(mut guard) = self.file.lock() {
            *guard = None;
        }
        // A new file starts with the usual size; a failure with the old
        // one says nothing of it.
        self.retry_at.store(0, Ordering::Relaxed);
    }

    fn lock(&self) -> std::io::Result<std::sync::MutexGuard<'_, Option<(File, u64)>>> {
        self.file
            .lock()
            .map_err(|_| std::io::Error::other("lock poisoned"))
    }

    fn open(&self) -> std::io::Result<(File, u64)> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(dir)?;
        }
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(self.mode)
            .open(&self.path)?;
        let meta = f.metadata()?;
        if meta.permissions().mode() & 0o777 != self.mode {
            // A file left wider (an older version, a umask) is narrowed.
            f.set_permissions(std::fs::Permissions::from_mode(self.mode))?;
        }
        Ok((f, meta.len()))
    }

    fn rotate(&self) -> std::io::Result<()> {
        let name = |i: u32| PathBuf::from(format!("{}.{i}", self.path.display()));
        if self.rotate_rounds == 0 {
            return std::fs::remove_file(&self.path);
        }
        let _ = std::fs::remove_file(name(self.rotate_rounds));
        for i in (1..self.rotate_rounds).rev() {
            let _ = std::fs::rename(name(i), name(i + 1));
        }
        std::fs::rename(&self.path, name(1))
    }

    /// Appends one whole line (`line` ends with its newline), rotating
    /// first when it would take the file past `rotate_size`. A failed write
    /// closes the file, so the next line opens `path` again.
    pub fn append(&self, line: &[u8]) -> std::io::Result<()> {
        let mut guard = self.lock()?;
        if guard.is_none() {
            *guard = Some(self.open()?);
        }
        if let Some((_, len)) = guard.as_ref() {
            let len = *len;
            let due = self.rotate_size.max(self.retry_at.load(Ordering::Relaxed));
            if self.rotate_size > 0 && len > 0 && len + line.len() as u64 > due {
                *guard = None;
                match self.rotate() {
                    Ok(()) => self.retry_at.store(0, Ordering::Relaxed),
                    Err(e) => {
                        // Keep the line: go on past the size, and try
                        // again after another rotate_size bytes.
                        self.failures.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut last) = self.last_failure.lock() {
                            *last = Some(format!("cannot rotate {}: {e}", self.path.display()));
                        }
                        self.retry_at
                            .store(len.saturating_add(self.rotate_size), Ordering::Relaxed);
                    }
                }
                *guard = Some(self.open()?);
            }
        }
        let Some((file, len)) = guard.as_mut() else {
            return Ok(());
        };
        match file.write_all(line) {
            Ok(()) => {
                *len += line.len() as u64;
                Ok(())
            }
            Err(e) => {
                *guard = None;
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn rotates_whole_lines_and_keeps_the_rounds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/x.log");
        let f = RotatingFile::new(&path, 100, 3, 0o640);
        for i in 0..100 {
            f.append(format!("line {i:04} of the test\n").as_bytes())
                .unwrap();
        }
        let mut seen = Vec::new();
        for name in ["x.log.3", "x.log.2", "x.log.1", "x.log"] {
            let p = dir.path().join("logs").join(name);
            let text = std::fs::read_to_string(&p).unwrap();
            assert!(text.len() <= 100, "{name}: {}", text.len());
            for l in text.lines() {
                assert!(l.starts_with("line ") && l.ends_with(" of the test"), "{l}");
                seen.push(l.to_string());
            }
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o640, "{name}");
        }
        assert!(!dir.path().join("logs/x.log.4").exists());
        // The newest lines, in order, with none lost among those kept.
        let numbers: Vec<u32> = seen.iter().map(|l| l[5..9].parse().unwrap()).collect();
        assert_eq!(*numbers.last().unwrap(), 99);
        assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");
    }

    #[test]
    fn a_rotation_that_fails_keeps_every_line_and_is_tried_again() {
        // A directory where PATH.1 should go makes the rename fail, even
        // for root (as a directory the user may not write to does in
        // production).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        let blocker = dir.path().join("x.log.1");
        std::fs::create_dir(&blocker).unwrap();
        std::fs::write(blocker.join("keep"), b"").unwrap();
        let f = RotatingFile::new(&path, 100, 1, 0o640);
        for i in 0..20 {
            f.append(format!("line {i:04} of the test\n").as_bytes())
                .unwrap();
        }
        let (failures, last) = f.rotation_failure();
        // 20 lines of 23 bytes: tried at 100 bytes, then after each further
        // 100 (at most 4 times), never at every line.
        assert!((2..=4).contains(&failures), "{failures}");
        assert!(last.unwrap().starts_with("cannot rotate"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 20, "every line kept: {text}");
        // Once the obstacle is gone, the next due rotation works.
        std::fs::remove_dir_all(&blocker).unwrap();
        for i in 0..3 {
            f.append(format!("more {i:04} of the test\n").as_bytes())
                .unwrap();
        }
        assert!(std::fs::read_to_string(&blocker)
            .unwrap()
            .starts_with("line 0000"));
        assert_eq!(f.rotation_failure().0, failures);
    }

    #[test]
    fn reopen_follows_a_moved_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        let f = RotatingFile::new(&path, 0, 5, 0o640);
        f.append(b"before\n").unwrap();
        std::fs::rename(&path, dir.path().join("x.log.old")).unwrap();
        f.append(b"still to the moved file\n").unwrap();
        f.reopen();
        f.append(b"after\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "after\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("x.log.old")).unwrap(),
            "before\nstill to the moved file\n"
        );
    }
}
