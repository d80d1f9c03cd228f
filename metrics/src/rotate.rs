//! A file appended to in whole lines, rotated by size and reopened on
//! request. The log (`log.destination = "file:PATH"`) and the raw records
//! share it, so both follow the same rules (`log.rotate_size`,
//! `log.rotate_rounds`, `mailward log reopen`):
//!
//! - every [`RotatingFile::append`] is one `write` of a whole line to a file
//!   opened with `O_APPEND`, so no reader ever sees half of one of our lines;
//! - a write cut short (a full disk: part of the line went out, then
//!   `ENOSPC`) is taken back: the file is truncated to where the line
//!   began, so the next line does not land glued to half of this one. When
//!   even that fails, or the file was left ending mid-line (a crash, an
//!   older version), the next line written starts with a newline, so the
//!   torn part stays a line of its own. Lines that could not be written
//!   are counted ([`RotatingFile::lost`]); the caller says where;
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
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// Where a line is appended: the open file, or a test's failing writer.
trait AppendTarget {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize>;
    /// The current size (with whatever part of a line went out).
    fn size(&self) -> io::Result<u64>;
    fn truncate(&self, size: u64) -> io::Result<()>;
}

impl AppendTarget for File {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Write::write(self, buf)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn truncate(&self, size: u64) -> io::Result<()> {
        self.set_len(size)
    }
}

/// A write that did not take the whole line.
#[derive(Debug)]
struct Unwritten {
    error: io::Error,
    /// Part of the line is still at the end of the file (it could not be
    /// taken back): the next line must start with a newline.
    torn: bool,
}

/// Writes `line` whole or, as far as the file allows, not at all: a write
/// cut short after some bytes (`ENOSPC`, `EFBIG`, `EIO`) is taken back by
/// truncating the file by as many bytes. The file is opened `O_APPEND` and
/// only this process writes it, under the [`RotatingFile`]'s lock, so the
/// bytes at its end are ours.
fn write_whole(target: &mut impl AppendTarget, line: &[u8]) -> Result<(), Unwritten> {
    let mut written = 0;
    let error = loop {
        if written == line.len() {
            return Ok(());
        }
        match target.write(&line[written..]) {
            Ok(0) => break io::Error::from(io::ErrorKind::WriteZero),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break e,
        }
    };
    let torn = written > 0
        && match target.size() {
            Ok(size) if size >= written as u64 => target.truncate(size - written as u64).is_err(),
            _ => true,
        };
    Err(Unwritten { error, torn })
}

/// Whether the file at `path`, `len` bytes long, ends in the middle of a
/// line. A file this process may append to but not read is taken as whole.
fn ends_mid_line(path: &Path, len: u64) -> bool {
    use std::os::unix::fs::FileExt;
    if len == 0 {
        return false;
    }
    let mut last = [0u8; 1];
    File::open(path)
        .and_then(|f| f.read_exact_at(&mut last, len - 1))
        .is_ok_and(|()| last[0] != b'\n')
}

/// The open file, its length, and whether it ends mid-line.
#[derive(Debug)]
struct Open {
    file: File,
    len: u64,
    torn: bool,
}

/// See the module documentation.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    rotate_size: u64,
    rotate_rounds: u32,
    mode: u32,
    /// The open file; `None` until the next line opens it.
    file: Mutex<Option<Open>>,
    /// After a failed rotation: the length PATH must reach before the
    /// next try (0: no failure pending).
    retry_at: AtomicU64,
    failures: AtomicU64,
    last_failure: Mutex<Option<String>>,
    /// Lines [`RotatingFile::append`] could not write.
    lost: AtomicU64,
    /// A failed write left part of its line that could not be taken back:
    /// the next open starts with a newline (even when the file cannot be
    /// read to see it).
    left_torn: AtomicBool,
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
            lost: AtomicU64::new(0),
            left_torn: AtomicBool::new(false),
        }
    }

    /// Rotations that failed so far, and the last one's error.
    pub fn rotation_failure(&self) -> (u64, Option<String>) {
        let last = self.last_failure.lock().ok().and_then(|g| g.clone());
        (self.failures.load(Ordering::Relaxed), last)
    }

    /// Lines that could not be written so far (the file could not be
    /// opened or written: a full disk, a directory the user may not write).
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
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

    fn lock(&self) -> std::io::Result<std::sync::MutexGuard<'_, Option<Open>>> {
        self.file
            .lock()
            .map_err(|_| std::io::Error::other("lock poisoned"))
    }

    fn open(&self) -> std::io::Result<Open> {
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
        let len = meta.len();
        let left_torn = self.left_torn.swap(false, Ordering::Relaxed);
        Ok(Open {
            file: f,
            len,
            torn: len > 0 && (left_torn || ends_mid_line(&self.path, len)),
        })
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
    /// leaves no part of the line behind (see the module documentation) and
    /// closes the file, so the next line opens `path` again; the line is
    /// counted as lost ([`RotatingFile::lost`]).
    pub fn append(&self, line: &[u8]) -> std::io::Result<()> {
        let written = self.append_locked(line);
        if written.is_err() {
            self.lost.fetch_add(1, Ordering::Relaxed);
        }
        written
    }

    fn append_locked(&self, line: &[u8]) -> std::io::Result<()> {
        let mut guard = self.lock()?;
        if guard.is_none() {
            *guard = Some(self.open()?);
        }
        if let Some(open) = guard.as_ref() {
            let len = open.len;
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
        let Some(open) = guard.as_mut() else {
            return Ok(());
        };
        // After a torn line, this one starts on a line of its own.
        let was_torn = open.torn;
        let mended;
        let bytes = if open.torn {
            mended = [b"\n", line].concat();
            &mended[..]
        } else {
            line
        };
        match write_whole(&mut open.file, bytes) {
            Ok(()) => {
                open.len += bytes.len() as u64;
                open.torn = false;
                Ok(())
            }
            Err(Unwritten { error, torn }) => {
                // The next line opens the file again (and looks at its
                // last byte).
                if torn || was_torn {
                    self.left_torn.store(true, Ordering::Relaxed);
                }
                *guard = None;
                Err(error)
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

    /// A file on a disk that fills: takes `room` more bytes, then fails
    /// with ENOSPC (after a short write, as write(2) does).
    struct FillingDisk {
        data: std::cell::RefCell<Vec<u8>>,
        room: usize,
        truncate_fails: bool,
    }

    impl AppendTarget for FillingDisk {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::Error::from_raw_os_error(28));
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            self.data.borrow_mut().extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn size(&self) -> io::Result<u64> {
            Ok(self.data.borrow().len() as u64)
        }

        fn truncate(&self, size: u64) -> io::Result<()> {
            if self.truncate_fails {
                return Err(io::Error::from_raw_os_error(5));
            }
            self.data.borrow_mut().truncate(size as usize);
            Ok(())
        }
    }

    fn disk(data: &[u8], room: usize, truncate_fails: bool) -> FillingDisk {
        FillingDisk {
            data: std::cell::RefCell::new(data.to_vec()),
            room,
            truncate_fails,
        }
    }

    #[test]
    fn a_write_cut_short_by_a_full_disk_leaves_no_half_line() {
        // walkT 2: the write that hit ENOSPC left "... mod" without its
        // newline, and the first line after the disk had room again was
        // glued onto it: two events on one line.
        let mut full = disk(b"first line\n", 10, false);
        let err = write_whole(&mut full, b"a line that does not fit\n").unwrap_err();
        assert_eq!(err.error.raw_os_error(), Some(28));
        assert!(!err.torn);
        assert_eq!(full.data.borrow().as_slice(), b"first line\n");
        // Without the fix the next line was glued on; now it is whole.
        full.room = 100;
        write_whole(&mut full, b"second line\n").unwrap();
        assert_eq!(full.data.borrow().as_slice(), b"first line\nsecond line\n");
        // A truncate that fails too leaves a torn line, and says so.
        let err = write_whole(&mut disk(b"", 5, true), b"0123456789\n").unwrap_err();
        assert!(err.torn);
        // Nothing written at all: nothing to take back.
        assert!(
            !write_whole(&mut disk(b"", 0, true), b"x\n")
                .unwrap_err()
                .torn
        );
    }

    #[test]
    fn a_write_cut_short_on_a_real_file_is_taken_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        std::fs::write(&path, b"whole\n").unwrap();
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        // write(2) took 4 bytes of the line, then the disk was full.
        struct Short<'a>(&'a mut File, usize);
        impl AppendTarget for Short<'_> {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                if self.1 == 0 {
                    return Err(io::Error::from_raw_os_error(28));
                }
                let n = Write::write(self.0, &buf[..buf.len().min(self.1)])?;
                self.1 -= n;
                Ok(n)
            }
            fn size(&self) -> io::Result<u64> {
                self.0.size()
            }
            fn truncate(&self, size: u64) -> io::Result<()> {
                self.0.truncate(size)
            }
        }
        let err = write_whole(&mut Short(&mut file, 4), b"torn line\n").unwrap_err();
        assert!(!err.torn);
        assert_eq!(std::fs::read(&path).unwrap(), b"whole\n");
    }

    #[test]
    fn a_file_left_mid_line_gets_the_next_line_on_a_line_of_its_own() {
        // A crash (or a version before the truncation) left half a line.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        std::fs::write(&path, b"whole\nhalf a li").unwrap();
        let f = RotatingFile::new(&path, 0, 1, 0o640);
        f.append(b"next\n").unwrap();
        f.append(b"and more\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "whole\nhalf a li\nnext\nand more\n"
        );
        // A whole file gets no empty line.
        let whole = dir.path().join("y.log");
        std::fs::write(&whole, b"whole\n").unwrap();
        let f = RotatingFile::new(&whole, 0, 1, 0o640);
        f.append(b"next\n").unwrap();
        assert_eq!(std::fs::read_to_string(&whole).unwrap(), "whole\nnext\n");
    }

    #[test]
    fn lines_that_cannot_be_written_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("not-a-dir");
        std::fs::write(&blocker, b"").unwrap();
        let f = RotatingFile::new(&blocker.join("x.log"), 0, 1, 0o640);
        assert!(f.append(b"one\n").is_err());
        assert!(f.append(b"two\n").is_err());
        assert_eq!(f.lost(), 2);
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
