//! The durable spool: every accepted message and every later change of its
//! envelope is appended to a segment log and fdatasync'ed before anyone acts
//! on it. It owns the files under `spool/`; it does not decide what happens to
//! a message (that is the queue's job).
//!
//! # Layout and guarantee
//! `spool/NNNNNNNNNNNNNNNN.seg` files hold records (see [`record`]). One writer
//! thread appends the records that sessions and the queue hand it, and makes
//! them durable with one `fdatasync` per batch (group commit): under load,
//! many messages share one disk flush, so throughput is not bound by one
//! fsync per message. A caller's future resolves only after the flush that
//! covered its record, so a 250 reply always follows durable storage of the
//! message bytes and envelope. New segment files are made durable by an fsync
//! of the directory before the first record in them is acknowledged.
//!
//! Recovery reads the segments in order; the last state recorded for each
//! message wins. A torn record at the end of the newest segment (a crash in
//! the middle of a write) was never acknowledged, and is cut off.
//!
//! A segment is deleted once no live message has its bytes in it and every
//! older segment is gone (so that a "removed" record can never be lost while
//! the message it removes is still on disk), and no older segment refused
//! as damaged waits for its salvage (`spool/damaged-N`, see
//! [`record::DAMAGED_NOTE`]): the newer ones record what became of its
//! messages. A message that stays long (a
//! deferred one) would pin its segment and every newer one; the writer
//! therefore copies the few live messages of an old segment forward
//! ("compaction") when the spool holds more than [`COMPACT_AFTER_SEGMENTS`]
//! segments.
//!
//! Segments are large (64 MiB), so on a small disk one deferred message
//! could pin all the delivered mail written after it in the same segment,
//! and the admission check would refuse every new message for as long as
//! that one waits. So when the free space comes within a segment of the
//! admission floor ([`Spool::set_free_floor`], `limits.min_queue_free_space`)
//! the writer also compacts under pressure: it closes the current segment
//! and copies every live message forward, whenever that copies no more
//! than it frees.
//!
//! # A full disk
//! Space is reclaimed without waiting for the next successful write: once a
//! second (and right away after a failed write) the writer rolls over from
//! a current segment that no live message uses and deletes the dead prefix
//! of segments. The free-space check of new mail counts that reclaimable
//! space ([`Spool::available`]), and keeps free, besides the floor, the
//! room the compaction under pressure needs for its copy
//! ([`Index::copy_reserve`]) and the bytes of every message being received
//! ([`Spool::reserve`]): so clients that declare no size cannot, together,
//! write the disk past the floor and leave the copy no room (walkP 1).
//! A "removed" or "updated" record from
//! delivery that cannot be written (the disk is full) still takes effect in
//! memory: the removal becomes durable when the segment holding the message
//! is deleted; a crash before that delivers the message again
//! (at-least-once, never lost). An administrator's change
//! ([`Spool::update_or_nothing`], [`Spool::remove_or_nothing`]) does not:
//! the command said that nothing changed.
//!
//! # Ownership
//! One process owns a spool: `mailward run` holds the data directory's lock
//! ([`crate::files::DataDirLock`]) before it opens it. Segments are 0600 in
//! a 0700 directory.

mod record;
pub mod salvage;
mod writer;

use crate::envelope::{Envelope, QueueId};
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

pub use record::RecordKind;

/// A segment is closed and a new one started past this size.
pub const SEGMENT_SIZE: u64 = 64 * 1024 * 1024;
/// Past this many segments, live messages of the oldest one are copied forward.
pub const COMPACT_AFTER_SEGMENTS: usize = 4;
/// A current segment that no live message uses is rolled over (and then
/// deleted) once it holds this many dead bytes, or at once after a failed
/// write. Below it, an idle spool keeps its segment instead of making a new
/// file after every delivered burst.
pub const ROLL_DEAD_AFTER: u64 = 1024 * 1024;
/// How often the writer looks for space to reclaim when nothing is written.
pub const MAINTENANCE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
/// Room kept beyond the bytes of a compaction's copy: the file system
/// rounds a file up to whole blocks, and the copy may need a new segment.
pub const COPY_SLACK: u64 = 64 * 1024;
/// A disk write of the spool that has not completed after this long is
/// said at WARN (a frozen or stalled disk: every session waiting for its
/// 250 hangs meanwhile).
pub const STALL_WARN_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {}: {source}{}", .path.display(), denied_hint(.path, .source))]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("spool {path}: corrupt record at offset {offset}: {problem}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        problem: String,
    },
    #[error("spool writer has stopped (a previous write failed; see the log)")]
    WriterGone,
    #[error("message {0} is not in the spool")]
    NotFound(QueueId),
}

impl SpoolError {
    fn io(path: &Path, source: io::Error) -> SpoolError {
        SpoolError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// For a permission refused on a spool file: who owns it (or the spool
/// directory, when that is what bars the way), its mode, who mailward
/// runs as, and the fix those call for: a `chown` when another user owns
/// it (a file left root's, say by a restore or a tool run as root), a
/// `chmod` when mailward's user owns it without the mode to use it
/// (walkAM 8: a spool directory mode 000 was told to `chown` to the user
/// who owned it already).
///
/// When owner and mode allow it, neither fixes anything (walkAU F8: an
/// immutable spool directory was told to `chown -R root:` as root): the
/// refusal comes from an attribute (`chattr +i`/`+a`), a read-only bind
/// mount or a security module, and the hint says where to look. A
/// read-only file system (EROFS) is said as such.
fn denied_hint(path: &Path, source: &io::Error) -> String {
    use std::os::unix::fs::MetadataExt;
    let absolute = |p: &Path| {
        std::path::absolute(p)
            .unwrap_or_else(|_| p.to_path_buf())
            .display()
            .to_string()
    };
    if source.raw_os_error() == Some(nix::errno::Errno::EROFS as i32) {
        return format!(
            "; the file system holding {} is mounted read-only (an error remount after disk trouble, or a read-only mount): check dmesg and the disk, then remount it read-write (mount -o remount,rw)",
            absolute(path)
        );
    }
    if source.kind() != io::ErrorKind::PermissionDenied {
        return String::new();
    }
    let name = |uid: u32| {
        nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map_or_else(
                || format!("uid {uid}"),
                |u| format!("{} (uid {uid})", u.name),
            )
    };
    let uid = nix::unistd::geteuid();
    let user = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |u| u.name);
    // The spool directory is what to chown: the file's parent, or the
    // path itself when it is the directory.
    let dir = if path.is_dir() {
        path
    } else {
        path.parent().unwrap_or(path)
    };
    // What we may see, the directory first: one we may not search hides
    // the file.
    let mut seen: Vec<(&Path, std::fs::Metadata)> = Vec::new();
    for p in [dir, path] {
        if seen.iter().all(|(q, _)| *q != p) {
            if let Ok(m) = std::fs::symlink_metadata(p) {
                seen.push((p, m));
            }
        }
    }
    let chown = format!("chown -R {user}: {}", absolute(dir));
    let fix = seen.iter().find_map(|(p, m)| {
        if m.uid() != uid.as_raw() {
            return Some((*p, chown.clone()));
        }
        let (need, bits) = if m.is_dir() {
            (0o700, "rwx")
        } else {
            (0o600, "rw")
        };
        (m.mode() & need != need).then(|| (*p, format!("chmod u+{bits} {}", absolute(p))))
    });
    // Described: what the fix is about, else the file, else its directory.
    let about = fix
        .as_ref()
        .map(|(p, _)| *p)
        .or_else(|| seen.iter().find(|(p, _)| *p == path).map(|(p, _)| *p))
        .or_else(|| seen.first().map(|(p, _)| *p));
    let owner = about
        .and_then(|a| seen.iter().find(|(p, _)| *p == a))
        .map(|(p, m)| {
            format!(
                "{} {}, mode {:04o}, ",
                if *p == path {
                    "it belongs to".to_string()
                } else {
                    format!("its directory {} belongs to", absolute(p))
                },
                name(m.uid()),
                m.mode() & 0o7777
            )
        })
        .unwrap_or_default();
    let fix = match fix {
        Some((_, f)) => f,
        // Owner and mode are right (or cannot be seen: then the chown).
        None if seen.is_empty() => chown,
        None => format!(
            "owner and mode allow it, so something else refuses: an immutable or append-only attribute (lsattr -d {dir}; chattr -i -a {dir}), a read-only bind mount (findmnt -T {dir}) or a security module (SELinux, AppArmor: see the audit log)",
            dir = absolute(dir)
        ),
    };
    format!(
        "; {owner}and mailward runs as {}: {fix}",
        name(uid.as_raw())
    )
}

#[cfg(test)]
mod denied_hint_tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn hint(path: &Path) -> String {
        denied_hint(path, &io::Error::from(io::ErrorKind::PermissionDenied))
    }

    /// walkAM 8: the owner was right and the mode was not; the advice was
    /// a `chown -R` to the owner it already had.
    #[test]
    fn a_refused_spool_gets_the_chmod_or_the_chown_its_owner_and_mode_call_for() {
        let top = tempfile::tempdir().unwrap();
        let spool = top.path().join("spool");
        std::fs::create_dir(&spool).unwrap();
        let file = spool.join("0000000000000001.seg");
        std::fs::write(&file, b"").unwrap();
        let me = nix::unistd::geteuid();
        let user = nix::unistd::User::from_uid(me).unwrap().unwrap().name;
        // Our directory, mode 000: the directory's mode, not its owner.
        std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o000)).unwrap();
        let text = hint(&file);
        std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(
            text.contains(&format!(
                "its directory {} belongs to {user} (uid {me}), mode 0000, ",
                spool.display()
            )) && text.ends_with(&format!(": chmod u+rwx {}", spool.display())),
            "{text}"
        );
        assert!(!text.contains("chown"), "{text}");
        // Our file without read and write for us: the file's mode.
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o000)).unwrap();
        let text = hint(&file);
        assert!(
            text.contains(&format!("it belongs to {user} (uid {me}), mode 0000, "))
                && text.ends_with(&format!(": chmod u+rw {}", file.display())),
            "{text}"
        );
        // Owner and mode right (an immutable directory, a read-only bind
        // mount, an LSM): no chown, no chmod, but where to look (walkAU F8).
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let text = denied_hint(&file, &io::Error::from_raw_os_error(1));
        assert!(
            text.contains(&format!("it belongs to {user} (uid {me}), mode 0600, "))
                && text.contains(&format!("lsattr -d {}", spool.display()))
                && text.contains("read-only bind mount"),
            "{text}"
        );
        assert!(!text.contains("chown") && !text.contains("chmod"), "{text}");
        // A read-only file system is said as such.
        let text = denied_hint(&file, &io::Error::from_raw_os_error(30));
        assert!(
            text.contains("mounted read-only") && text.contains("remount,rw"),
            "{text}"
        );
        assert!(!text.contains("chown"), "{text}");
        // Another user's file (root can give it away): the chown.
        if me.is_root() {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
            nix::unistd::chown(&file, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
            let text = hint(&file);
            assert!(
                text.contains("it belongs to ")
                    && text.contains("(uid 65534), mode 0600, ")
                    && text.ends_with(&format!(": chown -R {user}: {}", spool.display())),
                "{text}"
            );
        }
    }
}

/// Where the bytes of one message are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub segment: u64,
    pub offset: u64,
    pub len: u64,
}

/// What the writer and the readers share: where each live message's bytes
/// are, and its last recorded envelope (which compaction copies forward).
#[derive(Debug, Default)]
pub(crate) struct Index {
    pub(crate) messages: HashMap<QueueId, Entry>,
    /// Live messages per segment, for deletion and compaction.
    pub(crate) live: std::collections::BTreeMap<u64, usize>,
    /// Bytes in each segment file, for the reclaimable-space figure.
    pub(crate) bytes: std::collections::BTreeMap<u64, u64>,
    /// Bytes a copy of each segment's live messages takes (their records,
    /// with the envelopes as they are now): what compaction writes to move
    /// them, and so the room it needs ([`Index::copy_reserve`]).
    pub(crate) live_bytes: std::collections::BTreeMap<u64, u64>,
    /// The segment the writer appends to, and a handle to read it: the
    /// messages in it are read through that handle ([`Spool::read`]), so
    /// that a segment deleted by someone else is still read until the
    /// writer has copied its messages to a new one.
    pub(crate) open: Option<(u64, Arc<File>)>,
}

#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) loc: Location,
    pub(crate) envelope: Vec<u8>,
}

impl Entry {
    /// Bytes its record takes when compaction copies it forward.
    pub(crate) fn copy_len(&self) -> u64 {
        record::HEADER_LEN + self.envelope.len() as u64 + self.loc.len
    }
}

impl Index {
    pub(crate) fn insert(&mut self, id: QueueId, loc: Location, envelope: Vec<u8>) {
        let entry = Entry { loc, envelope };
        *self.live_bytes.entry(loc.segment).or_insert(0) += entry.copy_len();
        if let Some(old) = self.messages.insert(id, entry) {
            self.release(&old);
        }
        *self.live.entry(loc.segment).or_insert(0) += 1;
    }

    pub(crate) fn set_envelope(&mut self, id: &QueueId, envelope: Vec<u8>) {
        if let Some(e) = self.messages.get_mut(id) {
            let before = e.copy_len();
            e.envelope = envelope;
            let after = e.copy_len();
            if let Some(b) = self.live_bytes.get_mut(&e.loc.segment) {
                *b = b.saturating_sub(before).saturating_add(after);
            }
        }
    }

    pub(crate) fn remove(&mut self, id: &QueueId) {
        if let Some(old) = self.messages.remove(id) {
            self.release(&old);
        }
    }

    fn release(&mut self, old: &Entry) {
        if let Some(n) = self.live.get_mut(&old.loc.segment) {
            *n = n.saturating_sub(1);
        }
        if let Some(b) = self.live_bytes.get_mut(&old.loc.segment) {
            *b = b.saturating_sub(old.copy_len());
        }
    }

    /// Room the compaction under pressure needs on the disk to copy the
    /// waiting messages forward: it copies one segment's live messages at
    /// a time and deletes that segment before the next, so the segment
    /// holding the most live bytes is what it needs. While a damaged
    /// segment waits for its salvage (`keep_after`), the segments after it
    /// cannot be deleted and are not copied: only the older ones count.
    /// 0 when nothing waits.
    pub(crate) fn copy_reserve(&self, keep_after: Option<u64>) -> u64 {
        let need = self
            .live_bytes
            .iter()
            .filter(|(&seg, _)| keep_after.is_none_or(|damaged| seg < damaged))
            .map(|(_, &b)| b)
            .max()
            .unwrap_or(0);
        if need == 0 {
            0
        } else {
            need.saturating_add(COPY_SLACK)
        }
    }
}

/// One record to append.
#[derive(Debug, Clone)]
pub struct Record {
    pub kind: RecordKind,
    pub envelope: Envelope,
    /// The message bytes (accepted records only). Shared, not copied: the
    /// session keeps the bytes for the checks.
    pub data: Option<Arc<Vec<u8>>>,
    /// Whether a failed write leaves the spool's index as it was. An
    /// *updated* or *removed* record from delivery takes effect in memory
    /// even when it cannot be written (the delivery happened; it becomes
    /// durable when the message's segment goes). An administrator's hold,
    /// release or removal is different: the command answers "nothing
    /// changed", so nothing may change later either (compaction copies
    /// the index's envelope forward, and a removal lets the message's
    /// segments be deleted).
    pub only_if_written: bool,
}

impl Record {
    /// A new message, or new bytes for one already spooled (same ID).
    pub fn accepted(envelope: Envelope, data: impl Into<Arc<Vec<u8>>>) -> Record {
        Record {
            kind: RecordKind::Accepted,
            envelope,
            data: Some(data.into()),
            only_if_written: false,
        }
    }

    /// A new state of a message's envelope.
    pub fn updated(envelope: Envelope) -> Record {
        Record {
            kind: RecordKind::Updated,
            envelope,
            data: None,
            only_if_written: false,
        }
    }

    /// The message has left the queue.
    pub fn removed(envelope: Envelope) -> Record {
        Record {
            kind: RecordKind::Removed,
            envelope,
            data: None,
            only_if_written: false,
        }
    }

    /// The same record, taking effect only if it is written: when the
    /// write fails, the spool keeps the message as it was (see
    /// [`Record::only_if_written`]).
    pub fn only_if_written(self) -> Record {
        Record {
            only_if_written: true,
            ..self
        }
    }
}

/// Where the writer thread says whether a batch of records is durable.
pub(crate) type Ack = oneshot::Sender<Result<(), String>>;

/// One request to the writer thread.
pub(crate) enum Op {
    /// Records made durable by one flush and acknowledged together: after
    /// a crash, either all of them were acknowledged or none was.
    Append {
        records: Vec<Record>,
        done: Ack,
    },
    /// The periodic look for space to reclaim (and for old segments to
    /// compact).
    Maintain,
    Stop(oneshot::Sender<()>),
}

/// Figures the writer publishes for the rest of the gateway.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Bytes that deleting dead segments would free now.
    pub(crate) reclaimable: std::sync::atomic::AtomicU64,
    /// Batches whose write or flush failed since start.
    pub(crate) write_errors: std::sync::atomic::AtomicU64,
    /// Since when the writes fail, and the last error (None once a write
    /// succeeds again): what `mailward status` says while new mail gets
    /// 451.
    pub(crate) failing: std::sync::Mutex<Option<(i64, String)>>,
    /// The free space the admission check keeps (`limits.min_queue_free_space`):
    /// within a segment of it, the writer compacts under pressure.
    pub(crate) free_floor: std::sync::atomic::AtomicU64,
    /// Bytes the compaction under pressure needed to copy forward and
    /// could not write (the disk had no room for the copy); 0 when it is
    /// not stuck.
    pub(crate) compaction_short_of: std::sync::atomic::AtomicU64,
    /// Room the admission check keeps for the compaction's copy of the
    /// waiting messages ([`Index::copy_reserve`]), so that new mail never
    /// takes the bytes that copy needs.
    pub(crate) copy_reserve: std::sync::atomic::AtomicU64,
    /// Bytes held by messages being received now ([`Reservation`]): they
    /// are on their way to the disk, so every admission check counts them.
    pub(crate) receiving: std::sync::atomic::AtomicU64,
    /// A segment refused as damaged that waits for its salvage, and the
    /// bytes of delivered mail kept meanwhile (None when there is none).
    pub(crate) damaged: std::sync::Mutex<Option<DamagedKept>>,
    /// The admission check's refusals of late, for `mailward status`.
    pub(crate) refusals: std::sync::Mutex<Refusals>,
    /// Messages whose removal (their delivery done) could not be written,
    /// with the segment holding them: until that segment is deleted a
    /// restart delivers them again, which the stop says (walkAE 3).
    pub(crate) unrecorded_done: std::sync::Mutex<std::collections::BTreeMap<QueueId, u64>>,
    /// When (Unix milliseconds) the writer's current disk write started;
    /// 0 when none runs. The ticker watches it for stalls.
    pub(crate) write_started_ms: std::sync::atomic::AtomicI64,
    /// Commits (a session's message, a queue change) answered by the
    /// current disk write.
    pub(crate) write_waiting: std::sync::atomic::AtomicUsize,
    /// Commits handed to the writer and not taken by it yet (they wait
    /// behind the current write).
    pub(crate) commits_queued: std::sync::atomic::AtomicUsize,
    /// The current stall was said (at WARN); its end is said at INFO.
    pub(crate) stall_warned: std::sync::atomic::AtomicBool,
    /// Segments found deleted while messages waited in them, with how
    /// many: said once each (ERROR), and counted in `read_errors`.
    pub(crate) lost_segments: std::sync::Mutex<std::collections::BTreeMap<u64, usize>>,
    /// Since when (Unix time) starting a new segment fails, and the last
    /// error with its hint (None once one starts): for `mailward status`.
    pub(crate) rotate_failing: std::sync::Mutex<Option<(i64, String)>>,
    /// Reads of a waiting message that failed (its segment deleted or
    /// unreadable) since start.
    pub(crate) read_errors: std::sync::atomic::AtomicU64,
    /// Tests only: the next writes of records fail as on a full disk.
    #[cfg(test)]
    pub(crate) fail_writes: std::sync::atomic::AtomicBool,
}

/// The times (Unix seconds) of the admission check's recent refusals, and
/// the last one's figures.
#[derive(Debug, Default)]
pub(crate) struct Refusals {
    times: std::collections::VecDeque<i64>,
    /// The last one, whose count is filled in when asked.
    last: Option<SpaceRefusals>,
}

/// Most refusal times kept (a minute's worth on a busy gateway).
const REFUSALS_KEPT: usize = 100_000;

/// New mail refused for spool space (`452 4.3.1`) of late, at MAIL or at
/// the end of its data alike: what `mailward status` says when the room
/// left is over nothing but under what real messages need (walkW 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SpaceRefusals {
    /// Refusals in the window asked for.
    pub count: u64,
    /// Unix time of the last one.
    pub last_at: i64,
    /// The room the last refused message asked for: its declared SIZE,
    /// or the data it had sent (0: a MAIL without SIZE).
    pub wanted: u64,
    /// The room new mail had then: the space new mail may use less the
    /// floor, the copy room and the other messages being received.
    pub left: u64,
    /// The figures `left` came from, at that moment too (walkAE 6: status
    /// printed them as of now, after a compaction, so they did not add
    /// up): the space new mail could use,
    #[serde(default)]
    pub available: u64,
    /// `limits.min_queue_free_space`,
    #[serde(default)]
    pub floor: u64,
    /// the room kept for the compaction's copy,
    #[serde(default)]
    pub copy_reserve: u64,
    /// and what the other messages being received held.
    #[serde(default)]
    pub receiving: u64,
}

/// A spool segment refused as damaged at a start and not back (neither
/// salvaged nor given up): no segment after it is deleted, so the spool
/// keeps delivered mail until then (what `mailward status` says).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DamagedKept {
    /// Its number (`0000000000000025.seg` is 25).
    pub segment: u64,
    /// Its note, `DATA_DIR/spool/damaged-N`: deleting it gives the segment
    /// up, and the spool deletes the newer segments again within a second.
    pub note: PathBuf,
    /// Bytes of the segments after it that hold no waiting message: what
    /// the spool would have deleted by now.
    pub kept_bytes: u64,
}

/// Room held for a message being received ([`Spool::reserve`]): every
/// admission check counts it against the free space until it is dropped
/// (the message was written, or refused, or the session ended).
#[derive(Debug)]
pub struct Reservation {
    shared: Arc<Shared>,
    bytes: u64,
}

impl Reservation {
    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Gives the room back now (the message is refused and its bytes are
    /// not kept).
    pub fn release(&mut self) {
        let bytes = std::mem::take(&mut self.bytes);
        self.shared
            .receiving
            .fetch_sub(bytes, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.release();
    }
}

/// What an admission check compared: the space new mail may use against
/// what must stay free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Room {
    /// Free bytes on the spool's disk plus the reclaimable ones.
    pub available: u64,
    /// `limits.min_queue_free_space`.
    pub floor: u64,
    /// Kept for the compaction's copy of the waiting messages.
    pub copy_reserve: u64,
    /// Held by messages being received, this one's included.
    pub receiving: u64,
}

impl Room {
    /// What must stay free besides the messages being received.
    pub fn kept(&self) -> u64 {
        self.floor.saturating_add(self.copy_reserve)
    }
}

/// Why [`Spool::reserve`] took no room.
#[derive(Debug)]
pub enum NoRoom {
    /// Taking it would leave less than the floor and the copy reserve
    /// free (nothing was taken).
    Short(Room),
    /// The free space cannot be read: the room was taken unchecked.
    Unknown(SpoolError),
}

/// Handle to the spool; cheap to clone.
#[derive(Clone)]
pub struct Spool {
    dir: PathBuf,
    tx: mpsc::Sender<Op>,
    index: Arc<Mutex<Index>>,
    shared: Arc<Shared>,
}

impl Spool {
    /// Opens (creating if need be) the spool in `dir`, recovers every live
    /// message and starts the writer thread. Returns the live envelopes in
    /// the order they were accepted.
    pub fn open(dir: &Path) -> Result<(Spool, Vec<Envelope>), SpoolError> {
        crate::files::ensure_dir(dir, crate::files::PRIVATE_DIR)
            .map_err(|e| SpoolError::io(dir, e))?;
        let recovered = record::recover(dir)?;
        for &n in &recovered.missing {
            warn_missing(dir, n, &recovered.orphans);
        }
        let index = Arc::new(Mutex::new(recovered.index));
        let shared = Arc::new(Shared::default());
        if !recovered.holes.is_empty() {
            warn_holes(dir, &recovered.holes, &recovered.orphans);
            if let Ok(mut lost) = shared.lost_segments.lock() {
                lost.extend(recovered.holes.iter().map(|&n| (n, 0)));
            }
        }
        let (tx, rx) = mpsc::channel(4096);
        writer::start(
            dir.to_path_buf(),
            recovered.next_segment,
            recovered.missing,
            rx,
            index.clone(),
            shared.clone(),
        )?;
        writer::start_ticker(tx.downgrade(), shared.clone())?;
        let spool = Spool {
            dir: dir.to_path_buf(),
            tx,
            index,
            shared,
        };
        Ok((spool, recovered.envelopes))
    }

    async fn append(
        &self,
        kind: RecordKind,
        envelope: &Envelope,
        data: Option<Arc<Vec<u8>>>,
    ) -> Result<(), SpoolError> {
        self.commit(vec![Record {
            kind,
            envelope: envelope.clone(),
            data,
            only_if_written: false,
        }])
        .await
    }

    /// Appends `records` together: one flush covers all of them, and they
    /// are acknowledged together (a message's groups and notifications,
    /// and its own new state, are never half written).
    pub async fn commit(&self, records: Vec<Record>) -> Result<(), SpoolError> {
        if records.is_empty() {
            return Ok(());
        }
        let (done, wait) = oneshot::channel();
        self.shared
            .commits_queued
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.tx.send(Op::Append { records, done }).await.is_err() {
            self.shared
                .commits_queued
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            return Err(SpoolError::WriterGone);
        }
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(problem)) => Err(SpoolError::Io {
                path: self.dir.clone(),
                source: io::Error::other(problem),
            }),
            Err(_) => Err(SpoolError::WriterGone),
        }
    }

    /// Stores a new message durably. When this returns Ok, the message and
    /// its envelope survive a crash.
    pub async fn accept(
        &self,
        envelope: &Envelope,
        data: impl Into<Arc<Vec<u8>>>,
    ) -> Result<(), SpoolError> {
        self.append(RecordKind::Accepted, envelope, Some(data.into()))
            .await
    }

    /// Records a new state of the envelope durably.
    pub async fn update(&self, envelope: &Envelope) -> Result<(), SpoolError> {
        self.append(RecordKind::Updated, envelope, None).await
    }

    /// Records durably that the message has left the queue.
    pub async fn remove(&self, envelope: &Envelope) -> Result<(), SpoolError> {
        self.append(RecordKind::Removed, envelope, None).await
    }

    /// An administrator's change of the envelope (hold, release): like
    /// [`Spool::update`], but when it cannot be written the spool keeps
    /// the envelope it had, so that "nothing changed" stays true after a
    /// compaction or a restart.
    pub async fn update_or_nothing(&self, envelope: &Envelope) -> Result<(), SpoolError> {
        self.commit(vec![Record::updated(envelope.clone()).only_if_written()])
            .await
    }

    /// An administrator's removal: like [`Spool::remove`], but when it
    /// cannot be written the message stays in the spool, bytes and all
    /// (its segments are not deleted), as the queue keeps it.
    pub async fn remove_or_nothing(&self, envelope: &Envelope) -> Result<(), SpoolError> {
        self.commit(vec![Record::removed(envelope.clone()).only_if_written()])
            .await
    }

    /// Reads the bytes of a live message.
    pub fn read(&self, id: &QueueId) -> Result<Vec<u8>, SpoolError> {
        // A message's segment may be deleted between the look-up and the
        // open because the writer moved the message meanwhile (compaction,
        // a copy forward on a short disk, a lost open segment saved): then
        // its new place is read. Only a segment gone with the message still
        // recorded in it is lost mail.
        let mut tries = 0;
        loop {
            let (loc, open) = self.locate(id)?;
            let path = record::segment_path(&self.dir, loc.segment);
            let file = match open {
                Some(file) => file,
                None => match File::open(&path) {
                    Ok(file) => Arc::new(file),
                    Err(e) => {
                        tries += 1;
                        if e.kind() == io::ErrorKind::NotFound
                            && tries < 3
                            && self.locate(id)?.0 != loc
                        {
                            continue;
                        }
                        self.shared
                            .read_errors
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if e.kind() == io::ErrorKind::NotFound {
                            report_lost(&self.shared, &self.index, &self.dir, loc.segment);
                        }
                        return Err(SpoolError::io(&path, e));
                    }
                },
            };
            let len = usize::try_from(loc.len).map_err(|_| SpoolError::Corrupt {
                path: path.clone(),
                offset: loc.offset,
                problem: "message larger than memory".into(),
            })?;
            let mut buf = vec![0u8; len];
            file.read_exact_at(&mut buf, loc.offset)
                .map_err(|e| SpoolError::io(&path, e))?;
            return Ok(buf);
        }
    }

    /// Where message `id` is, and the writer's handle on its segment when
    /// that is the open one. Both are taken under one lock, as the writer
    /// moves them under it: a message in the open segment is read through
    /// that handle even when the segment's name is gone (CI: a delivery
    /// raced the writer saving a deleted open segment, read it by name, and
    /// reported as lost mail being saved).
    fn locate(&self, id: &QueueId) -> Result<(Location, Option<Arc<File>>), SpoolError> {
        let idx = self.index.lock().map_err(|_| SpoolError::WriterGone)?;
        let loc = idx
            .messages
            .get(id)
            .map(|e| e.loc)
            .ok_or_else(|| SpoolError::NotFound(id.clone()))?;
        let open = idx
            .open
            .as_ref()
            .filter(|(n, _)| *n == loc.segment)
            .map(|(_, f)| f.clone());
        Ok((loc, open))
    }

    /// Free bytes on the file system that holds the spool.
    pub fn free_space(&self) -> Result<u64, SpoolError> {
        free_space(&self.dir)
    }

    /// Bytes of dead segments the writer will delete before it needs the
    /// space (at its next round, within [`MAINTENANCE_INTERVAL`]).
    pub fn reclaimable(&self) -> u64 {
        self.shared
            .reclaimable
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Space new mail may use: free bytes plus what is reclaimable. This is
    /// what the admission check (`limits.min_queue_free_space`) compares,
    /// so that a spool full of delivered mail never refuses new mail.
    pub fn available(&self) -> Result<u64, SpoolError> {
        Ok(self.free_space()?.saturating_add(self.reclaimable()))
    }

    /// An empty reservation, for [`Spool::reserve`] to grow.
    pub fn reservation(&self) -> Reservation {
        Reservation {
            shared: self.shared.clone(),
            bytes: 0,
        }
    }

    /// The admission check of new mail: takes `more` bytes of room for the
    /// message `r` is for, when the space new mail may use
    /// ([`Spool::available`]) stays at or above the floor
    /// (`limits.min_queue_free_space`), the room kept for the compaction's
    /// copy, and every message being received (this one's room
    /// included). `more` = 0 asks whether there is room at all. A MAIL
    /// takes its declared SIZE; DATA takes more as the bytes come in, so
    /// that clients that declare no size, together, cannot write past the
    /// floor.
    pub fn reserve(&self, r: &mut Reservation, more: u64) -> Result<Room, NoRoom> {
        use std::sync::atomic::Ordering::Relaxed;
        let available = match self.available() {
            Ok(a) => a,
            Err(e) => {
                self.shared.receiving.fetch_add(more, Relaxed);
                r.bytes += more;
                return Err(NoRoom::Unknown(e));
            }
        };
        // Taken first and given back when short: two sessions racing for
        // the last room may both be refused, never both let in.
        let receiving = self
            .shared
            .receiving
            .fetch_add(more, Relaxed)
            .saturating_add(more);
        let room = Room {
            available,
            floor: self.shared.free_floor.load(Relaxed),
            copy_reserve: self.shared.copy_reserve.load(Relaxed),
            receiving,
        };
        if available >= room.kept().saturating_add(receiving) {
            r.bytes += more;
            Ok(room)
        } else {
            self.shared.receiving.fetch_sub(more, Relaxed);
            let wanted = r.bytes.saturating_add(more);
            let others = receiving.saturating_sub(wanted);
            let left = available.saturating_sub(room.kept().saturating_add(others));
            if let Ok(mut seen) = self.shared.refusals.lock() {
                let now = chrono::Utc::now().timestamp();
                if seen.times.len() >= REFUSALS_KEPT {
                    seen.times.pop_front();
                }
                seen.times.push_back(now);
                seen.last = Some(SpaceRefusals {
                    count: 0,
                    last_at: now,
                    wanted,
                    left,
                    available,
                    floor: room.floor,
                    copy_reserve: room.copy_reserve,
                    receiving: others,
                });
            }
            Err(NoRoom::Short(room))
        }
    }

    /// The admission check's refusals in the last `window` seconds (None
    /// when there were none).
    pub fn space_refusals(&self, window: i64) -> Option<SpaceRefusals> {
        let mut seen = self.shared.refusals.lock().ok()?;
        let since = chrono::Utc::now().timestamp() - window;
        while seen.times.front().is_some_and(|&t| t < since) {
            seen.times.pop_front();
        }
        let last = seen.last.filter(|r| r.last_at >= since)?;
        Some(SpaceRefusals {
            count: seen.times.len() as u64,
            ..last
        })
    }

    /// Room the admission check keeps for the compaction's copy of the
    /// waiting messages (see [`Spool::reserve`]).
    pub fn copy_reserve(&self) -> u64 {
        self.shared
            .copy_reserve
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sets the free space new mail must leave (`limits.min_queue_free_space`);
    /// the writer compacts under pressure near it.
    pub fn set_free_floor(&self, bytes: u64) {
        self.shared
            .free_floor
            .store(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    /// Asks the writer for a maintenance round now (the admission check is
    /// about to refuse for space): it need not wait for the next tick.
    pub fn reclaim_soon(&self) {
        let _ = self.tx.try_send(Op::Maintain);
    }

    /// Batches that could not be written since start (a full disk, an I/O
    /// error): each one refused its new messages with 451.
    pub fn write_errors(&self) -> u64 {
        self.shared
            .write_errors
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Since when (Unix time) the spool's writes fail, and the last
    /// error; None while they succeed.
    pub fn write_failing(&self) -> Option<(i64, String)> {
        self.shared.failing.lock().ok().and_then(|f| f.clone())
    }

    /// When the compaction under pressure cannot run because the disk has
    /// no room for the copy of the waiting messages: the bytes that copy
    /// needs (the delivered mail behind them stays on disk until they
    /// leave or space is freed). 0 otherwise.
    pub fn compaction_short_of(&self) -> u64 {
        self.shared
            .compaction_short_of
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A segment refused as damaged whose salvage the spool waits for,
    /// keeping the segments after it (and the delivered mail in them).
    pub fn damaged_kept(&self) -> Option<DamagedKept> {
        self.shared.damaged.lock().ok().and_then(|d| d.clone())
    }

    /// Seconds the spool's current disk write has been running, when past
    /// [`STALL_WARN_AFTER`] (a stalled disk: sessions wait for their
    /// replies); None otherwise.
    pub fn write_stalled_for(&self) -> Option<u64> {
        writer::stalled_for(&self.shared).filter(|&s| s >= STALL_WARN_AFTER.as_secs())
    }

    /// Since when (Unix time) the spool cannot start a new segment, and
    /// the last error with the fix it calls for (walkAU F8: an immutable
    /// spool directory); None while it can. Mail still flows into the
    /// current segment meanwhile, but its dead space is not freed.
    pub fn rotate_failing(&self) -> Option<(i64, String)> {
        self.shared
            .rotate_failing
            .lock()
            .ok()
            .and_then(|f| f.clone())
    }

    /// Reads of waiting messages that failed since start (a segment
    /// deleted under the gateway, an I/O error).
    pub fn read_errors(&self) -> u64 {
        self.shared
            .read_errors
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Segments deleted by someone else while messages waited in them
    /// (segment number, messages in it when found): those messages are
    /// lost.
    pub fn lost_segments(&self) -> Vec<(u64, usize)> {
        self.shared
            .lost_segments
            .lock()
            .map(|l| l.iter().map(|(&s, &n)| (s, n)).collect())
            .unwrap_or_default()
    }

    /// Flushes and stops the writer (graceful shutdown).
    pub async fn stop(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Op::Stop(done)).await.is_ok() {
            let _ = wait.await;
        }
        // A clean stop is no crash, but these go again all the same: the
        // log says which, so that the receiving side can be told (walkAE 3).
        let again = self.unrecorded_done();
        if !again.is_empty() {
            const SHOWN: usize = 50;
            let mut ids: Vec<&str> = again.iter().take(SHOWN).map(|id| id.0.as_str()).collect();
            if again.len() > SHOWN {
                ids.push("...");
            }
            tracing::warn!(target: "app", messages = again.len(), queue_ids = %ids.join(" "),
                "Messages delivered (or bounced) while the spool could not write are not recorded as done: they will be delivered again after the next start.");
        }
    }

    /// Messages whose removal could not be written and whose segment is
    /// still on disk: a start now delivers them again.
    pub fn unrecorded_done(&self) -> Vec<QueueId> {
        let Ok(done) = self.shared.unrecorded_done.lock() else {
            return Vec::new();
        };
        done.iter()
            .filter(|(_, &segment)| record::segment_path(&self.dir, segment).exists())
            .map(|(id, _)| id.clone())
            .collect()
    }
}

/// Says once (ERROR) that segment `seg` was deleted by someone else while
/// messages waited in it: they cannot be delivered, and no restart brings
/// them back (walkAU F1: a delivery said only "Cannot read the message
/// from the spool" and deferred them forever).
pub(crate) fn report_lost(shared: &Shared, index: &Mutex<Index>, dir: &Path, seg: u64) {
    let ids: Vec<QueueId> = match index.lock() {
        Ok(idx) => idx
            .messages
            .iter()
            .filter(|(_, e)| e.loc.segment == seg)
            .map(|(id, _)| id.clone())
            .collect(),
        Err(_) => return,
    };
    let Ok(mut lost) = shared.lost_segments.lock() else {
        return;
    };
    if lost.insert(seg, ids.len()).is_some() {
        return;
    }
    drop(lost);
    const SHOWN: usize = 50;
    let mut shown: Vec<&str> = ids.iter().take(SHOWN).map(|id| id.0.as_str()).collect();
    if ids.len() > SHOWN {
        shown.push("...");
    }
    tracing::error!(target: "app", segment = %record::segment_path(dir, seg).display(),
        messages = ids.len(), queue_ids = %shown.join(" "),
        "A spool segment holding waiting messages was deleted by something other than mailward: those messages cannot be delivered and are lost (their senders were told 250). Restore the file from a backup under its name if you can; otherwise tell the senders, and remove them (mailward queue remove). Find what deletes files in the spool directory: only mailward may.");
}

/// Says at start (ERROR) that segments are missing between the oldest and
/// the newest one: the spool never deletes those, so the mail recorded
/// only in them is lost (walkAU F1: a start after the open segment was
/// deleted said only "The queue is empty.").
fn warn_holes(dir: &Path, holes: &[u64], orphans: &[QueueId]) {
    const SHOWN: usize = 20;
    let mut ids: Vec<&str> = orphans.iter().take(SHOWN).map(|id| id.0.as_str()).collect();
    if orphans.len() > SHOWN {
        ids.push("...");
    }
    let names: Vec<String> = holes
        .iter()
        .map(|&n| record::segment_path(dir, n).display().to_string())
        .collect();
    tracing::error!(target: "app", segments = %names.join(" "), later_records = orphans.len(), queue_ids = %ids.join(" "),
        "Spool segments are missing between the oldest and the newest: mailward deletes only its oldest segments, so these were deleted by something else (or are damaged segments given up). Mail recorded only in them is lost, without a DSN; the messages named here have later records and are out of the queue. Restore the files from a backup under their names before the next start if you can, and find what deletes files in the spool directory: only mailward may.");
}

/// Says at start that segment `n`, refused as damaged earlier, is still
/// out of the spool: what is out of the queue, and that newer segments are
/// kept until it is salvaged.
fn warn_missing(dir: &Path, n: u64, orphans: &[QueueId]) {
    const SHOWN: usize = 20;
    let mut ids: Vec<&str> = orphans.iter().take(SHOWN).map(|id| id.0.as_str()).collect();
    if orphans.len() > SHOWN {
        ids.push("...");
    }
    tracing::warn!(target: "app", segment = %record::segment_path(dir, n).display(),
        note = %record::damaged_note_path(dir, n).display(),
        later_records = orphans.len(), queue_ids = %ids.join(" "),
        "A spool segment refused as damaged is still missing: the messages recorded in it (those named here have later records) are out of the queue until `mailward queue salvage` puts it back; no newer segment is deleted meanwhile, so delivered mail stays on the disk (mailward status says how much). Salvage it soon, or delete the note to give it up (the spool then deletes the newer segments within a second).");
}

/// Recovery alone, without the writer: replays the segments in `dir`
/// exactly as [`Spool::open`] does (and so cuts off a torn record at the
/// end of the newest segment) and returns the live envelopes in the order
/// they were accepted. For the spool_record fuzz target (daemon/fuzz) and
/// offline inspection; `dir` must not be in use by a running spool.
pub fn recover(dir: &Path) -> Result<Vec<Envelope>, SpoolError> {
    record::recover(dir).map(|r| r.envelopes)
}

/// Free bytes available to us on the file system of `dir`.
pub fn free_space(dir: &Path) -> Result<u64, SpoolError> {
    let st = nix::sys::statvfs::statvfs(dir)
        .map_err(|e| SpoolError::io(dir, io::Error::from_raw_os_error(e as i32)))?;
    #[allow(clippy::unnecessary_cast)]
    Ok((st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64))
}

#[cfg(test)]
mod tests;
