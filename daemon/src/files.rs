//! Files and directories that hold mail or statistics, created with the
//! modes Mailward promises whatever the umask it was started with: queued
//! mail is readable by the daemon's user only, and what monitoring reads
//! (statistics, the admin socket's directory) by its group too.
//!
//! | what | mode |
//! | --- | --- |
//! | `data_dir`, the statistics and bases directories | 0750 |
//! | `spool/`, quarantine and archive stores | 0700 |
//! | spool segments, the lock file | 0600 |
//! | statistics file, raw records, bases files | 0640 |
//!
//! `mailward run` also sets the process umask to 027, so that a file
//! created anywhere else (a temporary file, a rotated log) is never
//! readable by other users either. Modes of directories and files left by
//! an older version are corrected when they are opened, and at start (when
//! the data directory's lock is taken) for the lock file and the
//! statistics under `data_dir`, which may not be opened for a while.
//!
//! This module also owns the data directory's lock: one running instance
//! per `data_dir`, taken before anything under it is touched.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Directories other users must not enter (mail lives there).
pub const PRIVATE_DIR: u32 = 0o700;
/// Directories the daemon's group may read (statistics, admin socket).
pub const GROUP_DIR: u32 = 0o750;
/// Files with mail in them.
pub const PRIVATE_FILE: u32 = 0o600;
/// Files the daemon's group may read.
pub const GROUP_FILE: u32 = 0o640;
/// The umask `mailward run` sets: nothing for others, no writing for the group.
pub const UMASK: u32 = 0o027;

/// The lock file inside `data_dir`; it holds the PID of its owner.
pub const LOCK_FILE: &str = "mailward.lock";

/// Sets the process umask to [`UMASK`]; call once, before threads start.
pub fn restrict_umask() {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(UMASK as _));
}

/// Creates `path` (and its parents) when missing and gives `path` itself
/// `mode`, also when it existed with a wider one.
pub fn ensure_dir(path: &Path, mode: u32) -> io::Result<()> {
    if path.as_os_str().is_empty() {
        return Ok(());
    }
    DirBuilder::new().recursive(true).mode(mode).create(path)?;
    set_mode(path, mode)
}

/// Gives `path` exactly `mode` unless it has it already. A directory
/// with the sticky bit (`/tmp`) or owned by another user is shared, not
/// ours: it is left as it is.
pub fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)?;
    let current = meta.permissions().mode() & 0o7777;
    let shared = current & 0o1000 != 0 || meta.uid() != nix::unistd::geteuid().as_raw();
    if current != mode && !shared {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Opens `path` for appending, creating it with `mode` (and correcting the
/// mode of a file left wider by an older version).
pub fn open_append(path: &Path, mode: u32) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(mode)
        .open(path)?;
    let current = file.metadata()?.permissions().mode() & 0o7777;
    if current != mode {
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    Ok(file)
}

/// Flushes a directory, so that names created or renamed in it survive a
/// crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replaces `dir/name` with `bytes` (mode `mode`), or removes it when
/// `bytes` is None (no error when it is not there): written beside it as
/// `name.tmp`, flushed, renamed over it, and never left beside it when
/// that fails. For the small state files a restart reads (the SNMP alarms
/// raised, what a shared spam store held).
pub fn replace_small_file(
    dir: &Path,
    name: &str,
    bytes: Option<&[u8]>,
    mode: u32,
) -> io::Result<()> {
    let file = dir.join(name);
    let Some(bytes) = bytes else {
        return match std::fs::remove_file(&file) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    };
    let tmp = dir.join(format!("{name}.tmp"));
    let written = (|| {
        let mut f = create(&tmp, mode)?;
        f.write_all(bytes)?;
        f.sync_data()?;
        std::fs::rename(&tmp, &file)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Creates a new file (failing if it exists) with `mode`.
pub fn create_new(path: &Path, mode: u32) -> io::Result<File> {
    OpenOptions::new()
        .create_new(true)
        .append(true)
        .mode(mode)
        .open(path)
}

/// Creates or truncates `path` for writing with `mode`.
pub fn create(path: &Path, mode: u32) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(mode)
        .open(path)?;
    let current = file.metadata()?.permissions().mode() & 0o7777;
    if current != mode {
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    Ok(file)
}

/// What Mailward keeps under `data_dir` outside the stores and the spool
/// (which correct their own modes when they open), with its mode: the
/// statistics directory and files, written only every
/// `statistics.write_interval` or at the first message, so that without
/// this they kept a wider mode for a while after the start (walkJ F4).
const LEFT_UNDER_DATA_DIR: &[(&str, u32)] = &[
    ("stats", GROUP_DIR),
    ("stats/stats.json", GROUP_FILE),
    ("stats/raw.log", GROUP_FILE),
];

/// Narrows the modes of [`LEFT_UNDER_DATA_DIR`] that are wider than
/// promised (bits are only taken away, never added; a symbolic link is
/// left alone). At start, once the data directory is ours: a failure is
/// logged and the start goes on (each file gets its mode again when it is
/// next written).
fn narrow_left_modes(data_dir: &Path) {
    for (name, mode) in LEFT_UNDER_DATA_DIR {
        let path = data_dir.join(name);
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() || m.is_file() => m,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                tracing::warn!(target: "app", path = %path.display(), error = %e,
                    "Cannot read the mode of a file under the data directory.");
                continue;
            }
        };
        let current = meta.permissions().mode() & 0o7777;
        let narrowed = current & mode;
        if narrowed != current {
            if let Err(e) =
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(narrowed))
            {
                tracing::warn!(target: "app", path = %path.display(), error = %e,
                    "Cannot narrow the mode of a file under the data directory.");
            }
        }
    }
}

/// Why the data directory cannot be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another Mailward{} is running on {} (it holds {}): stop it first, \
         or give this instance its own server.data_dir",
        pid.as_deref().map(|p| format!(" (pid {p})")).unwrap_or_default(),
        dir.display(),
        lock.display()
    )]
    Held {
        dir: PathBuf,
        lock: PathBuf,
        pid: Option<String>,
    },
    #[error("cannot make or lock the data directory (server.data_dir) at {}: {source}{hint}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
        /// What to do, for a permission refused (see [`LockError::io`]).
        hint: String,
    },
}

impl LockError {
    /// An I/O error on `path`, named absolute (a relative data_dir is
    /// relative to the directory mailward was started in, which the
    /// reader may not know); a permission refused says who was refused
    /// and what to change (walkAC: the key alone did not say).
    fn io(path: &Path, source: io::Error) -> LockError {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let hint = if source.kind() == io::ErrorKind::PermissionDenied {
            let user = crate::ops::privileges::user_name(nix::unistd::geteuid().as_raw());
            format!(
                "; mailward runs as {user}: make the directory (or its parent) writable by {user}, \
                 or set server.data_dir to a directory {user} may write"
            )
        } else {
            String::new()
        };
        LockError::Io { path, source, hint }
    }
}

/// The exclusive hold on a data directory; released when the process ends
/// (the kernel drops the lock with the file descriptor, also after kill -9).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    path: PathBuf,
    /// The PID a holder left in the file: it ended without releasing the
    /// lock (killed, a crash, a power loss), since a holder that ends
    /// empties it ([`Drop`]).
    unreleased_by: Option<String>,
    /// Whether [`Drop`] puts `unreleased_by` back, for a holder that is
    /// not a run ([`DataDirLock::passing_on_unclean_end`]).
    pass_on: bool,
}

impl Drop for DataDirLock {
    /// Empties the file: only a holder that did not end (kill -9, a crash,
    /// a power loss) leaves its PID for the next one to see. A holder that
    /// passes an unclean end on writes the PID it found back instead.
    fn drop(&mut self) {
        let _ = self._file.set_len(0);
        if let (true, Some(pid)) = (self.pass_on, &self.unreleased_by) {
            let _ = std::io::Seek::rewind(&mut self._file);
            let _ = writeln!(self._file, "{pid}");
        }
    }
}

impl DataDirLock {
    /// Takes the lock of `data_dir` (creating the directory, 0750, when
    /// missing) and writes our PID into it. Fails at once, without waiting
    /// and without changing anything else, when another process holds it.
    pub fn take(data_dir: &Path) -> Result<DataDirLock, LockError> {
        let path = data_dir.join(LOCK_FILE);
        let io = |source| LockError::io(&path, source);
        ensure_dir(data_dir, GROUP_DIR).map_err(|source| LockError::io(data_dir, source))?;
        // Opened without truncating: the holder's PID must stay readable
        // for the instance that is refused.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(PRIVATE_FILE)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let pid = std::fs::read_to_string(&path)
                    .ok()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty());
                return Err(LockError::Held {
                    dir: data_dir.to_path_buf(),
                    lock: path,
                    pid,
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        let mut left = String::new();
        let _ = std::io::Read::read_to_string(&mut file, &mut left);
        let unreleased_by = Some(left.trim().to_string()).filter(|p| !p.is_empty());
        file.set_len(0).map_err(io)?;
        std::io::Seek::rewind(&mut file).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        // A lock file left wider by an older version (or by hand): the
        // open above keeps the mode of a file that exists (walkJ F4).
        let current = file.metadata().map_err(io)?.permissions().mode() & 0o7777;
        if current != PRIVATE_FILE {
            file.set_permissions(std::fs::Permissions::from_mode(PRIVATE_FILE))
                .map_err(io)?;
        }
        narrow_left_modes(data_dir);
        Ok(DataDirLock {
            _file: file,
            path,
            unreleased_by,
            pass_on: false,
        })
    }

    /// For a holder that is not a run (`mailward queue salvage` after a
    /// crash): the PID of a run that did not end cleanly is left in the
    /// file when this holder ends, so that the next start still says the
    /// previous run died, which its recovery lines explain.
    pub fn passing_on_unclean_end(mut self) -> DataDirLock {
        self.pass_on = true;
        self
    }

    /// The PID of the previous holder when it ended without releasing the
    /// lock (walkBF F3: a restart after kill -9 read like any other).
    pub fn unreleased_by(&self) -> Option<&str> {
        self.unreleased_by.as_deref()
    }

    /// Refuses as [`DataDirLock::take`] would when another process holds
    /// the lock, without creating or changing anything: what a start
    /// checks before it looks at who owns the directory, so that a second
    /// gateway is told another one runs (exit 75), not to `chown` the
    /// running one's directory.
    pub fn ensure_free(data_dir: &Path) -> Result<(), LockError> {
        let path = data_dir.join(LOCK_FILE);
        let Ok(file) = OpenOptions::new().read(true).open(&path) else {
            // No lock file (or none we may read): nothing to tell yet;
            // take() decides.
            return Ok(());
        };
        match file.try_lock_shared() {
            Err(std::fs::TryLockError::WouldBlock) => Err(LockError::Held {
                dir: data_dir.to_path_buf(),
                lock: path.clone(),
                pid: std::fs::read_to_string(&path)
                    .ok()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty()),
            }),
            // Free (the shared lock goes with the file), or not lockable:
            // take() decides.
            _ => Ok(()),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// walkBF F3: a holder that ends empties the file; one that did not
    /// (its PID still there) is told to the next.
    #[test]
    fn a_holder_that_did_not_end_is_told_to_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::take(dir.path()).unwrap();
        assert_eq!(first.unreleased_by(), None);
        drop(first);
        assert_eq!(
            std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap(),
            ""
        );
        let second = DataDirLock::take(dir.path()).unwrap();
        assert_eq!(second.unreleased_by(), None);
        drop(second);
        // As kill -9 leaves it: the file keeps the PID, unlocked.
        let fresh = tempfile::tempdir().unwrap();
        std::fs::write(fresh.path().join(LOCK_FILE), "4242\n").unwrap();
        let next = DataDirLock::take(fresh.path()).unwrap();
        assert_eq!(next.unreleased_by(), Some("4242"));
        assert_eq!(
            std::fs::read_to_string(fresh.path().join(LOCK_FILE)).unwrap(),
            format!("{}\n", std::process::id())
        );
        drop(next);
        // A salvage between the crash and the next start passes it on.
        std::fs::write(fresh.path().join(LOCK_FILE), "4243\n").unwrap();
        let salvage = DataDirLock::take(fresh.path())
            .unwrap()
            .passing_on_unclean_end();
        drop(salvage);
        let start = DataDirLock::take(fresh.path()).unwrap();
        assert_eq!(start.unreleased_by(), Some("4243"));
        drop(start);
        let after_clean_stop = DataDirLock::take(fresh.path())
            .unwrap()
            .passing_on_unclean_end();
        drop(after_clean_stop);
        assert_eq!(
            std::fs::read_to_string(fresh.path().join(LOCK_FILE)).unwrap(),
            ""
        );
    }

    #[test]
    fn a_held_lock_is_seen_without_taking_it() {
        let dir = tempfile::tempdir().unwrap();
        assert!(DataDirLock::ensure_free(dir.path()).is_ok(), "no lock file");
        assert!(!dir.path().join(LOCK_FILE).exists(), "nothing created");
        let first = DataDirLock::take(dir.path()).unwrap();
        let e = DataDirLock::ensure_free(dir.path()).unwrap_err();
        assert!(matches!(e, LockError::Held { .. }), "{e}");
        assert!(
            e.to_string().contains(&std::process::id().to_string()),
            "{e}"
        );
        drop(first);
        assert!(DataDirLock::ensure_free(dir.path()).is_ok(), "released");
    }

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused_with_the_holders_pid() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::take(dir.path()).unwrap();
        let second = DataDirLock::take(dir.path()).unwrap_err();
        let text = second.to_string();
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        assert!(text.contains("another Mailward"), "{text}");
        drop(first);
        DataDirLock::take(dir.path()).expect("free again once the holder is gone");
    }

    #[test]
    fn modes_do_not_depend_on_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        // A directory left world-readable by an older version is corrected.
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o755)).unwrap();
        ensure_dir(&sub, PRIVATE_DIR).unwrap();
        let mode = std::fs::metadata(&sub).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let file = sub.join("f");
        std::fs::write(&file, "x").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        open_append(&file, PRIVATE_FILE).unwrap();
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    /// walkJ F4: a lock file and statistics left 0666/0777 kept those
    /// modes after a start (the statistics until next written).
    #[test]
    fn wide_modes_left_under_the_data_dir_are_narrowed_when_it_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let stats = dir.path().join("stats");
        std::fs::create_dir(&stats).unwrap();
        let lock = dir.path().join(LOCK_FILE);
        for f in [&lock, &stats.join("stats.json"), &stats.join("raw.log")] {
            std::fs::write(f, "x").unwrap();
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o666)).unwrap();
        }
        std::fs::set_permissions(&stats, std::fs::Permissions::from_mode(0o777)).unwrap();
        // Narrower than promised stays as it is: bits are only taken away.
        std::fs::set_permissions(
            stats.join("raw.log"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let _held = DataDirLock::take(dir.path()).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&lock), 0o600, "lock file");
        assert_eq!(mode(&stats), 0o750, "stats/");
        assert_eq!(mode(&stats.join("stats.json")), 0o640, "stats.json");
        assert_eq!(mode(&stats.join("raw.log")), 0o600, "raw.log");
    }
}
