//! The spool's single writer thread: batches appends, makes each batch
//! durable with one fdatasync (group commit), acknowledges, rotates segments,
//! deletes segments nobody needs and copies live messages out of old ones.
//! A ticker thread wakes it once a second so that dead space is reclaimed
//! also when nothing is written (a full disk).

use super::record::{self, RecordKind};
use super::{
    Index, Location, Op, Shared, SpoolError, COMPACT_AFTER_SEGMENTS, MAINTENANCE_INTERVAL,
    ROLL_DEAD_AFTER, SEGMENT_SIZE,
};
use crate::envelope::QueueId;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Most records one flush covers; bounds the latency of the first in a batch.
const MAX_BATCH: usize = 1024;
/// Most bytes one flush covers.
const MAX_BATCH_BYTES: usize = 32 * 1024 * 1024;

struct Segment {
    number: u64,
    file: File,
    len: u64,
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// How many numbers past a file in the way a new segment may skip.
const MAX_SKIPPED_NUMBERS: u64 = 1000;

impl Segment {
    /// A handle to read this segment for the readers ([`Index::open`]):
    /// opened through the writer's descriptor (Linux: /proc/self/fd), as
    /// that one is write-only and the name may already be gone. None when
    /// it cannot be opened (the readers open the segment by name).
    fn shared(&self) -> Option<(u64, Arc<File>)> {
        let fd = std::os::fd::AsRawFd::as_raw_fd(&self.file);
        let file = File::open(format!("/proc/self/fd/{fd}")).ok()?;
        Some((self.number, Arc::new(file)))
    }

    /// Creates segment `number`. A file in the way: an empty one (left by
    /// a crash between create and first write) is taken over; a non-empty
    /// one is renamed out of the segments' names (`NNNN.seg.in-the-way`,
    /// kept for a look), so that the next start, which reads every
    /// `NNNN.seg`, does not refuse it as damage. When it cannot be renamed
    /// it is left alone and the next number is taken.
    fn create(dir: &Path, number: u64) -> Result<Segment, SpoolError> {
        let first = number;
        let mut number = number;
        let file = loop {
            let path = record::segment_path(dir, number);
            match crate::files::create_new(&path, crate::files::PRIVATE_FILE) {
                Ok(file) => break file,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(1);
                    if len == 0 {
                        let file = crate::files::open_append(&path, crate::files::PRIVATE_FILE)
                            .map_err(|e| SpoolError::io(&path, e))?;
                        break file;
                    }
                    match move_out_of_the_way(&path) {
                        Ok(moved) => {
                            tracing::warn!(target: "app", segment = %path.display(), bytes = len, moved_to = %moved.display(),
                                "A file was in the way of a new spool segment; renamed it so that the spool does not read it as a segment (look at it, then delete it).");
                            continue;
                        }
                        Err(e) => {
                            tracing::warn!(target: "app", segment = %path.display(), bytes = len, error = %e,
                                "A file is in the way of a new spool segment and cannot be renamed; leaving it and taking the next number. Move it out of the spool before the next start, or the start refuses it as a damaged segment.");
                        }
                    }
                    if number - first >= MAX_SKIPPED_NUMBERS {
                        return Err(SpoolError::io(&path, e));
                    }
                    number += 1;
                }
                Err(e) => return Err(SpoolError::io(&path, e)),
            }
        };
        // The new name must be durable before anything in it is acknowledged.
        sync_dir(dir).map_err(|e| SpoolError::io(dir, e))?;
        Ok(Segment {
            number,
            file,
            len: 0,
        })
    }
}

/// Renames `path` (a file in the way of a new segment) to a free name
/// that ends in `.in-the-way`, durably; returns the new name.
fn move_out_of_the_way(path: &Path) -> std::io::Result<PathBuf> {
    let mut name = path.as_os_str().to_owned();
    name.push(".in-the-way");
    let mut to = PathBuf::from(&name);
    let mut n = 1;
    while to.exists() {
        if n > 100 {
            return Err(std::io::Error::other("too many files in the way already"));
        }
        let mut next = name.clone();
        next.push(format!(".{n}"));
        to = PathBuf::from(next);
        n += 1;
    }
    std::fs::rename(path, &to)?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(to)
}

pub(super) fn start(
    dir: PathBuf,
    first_segment: u64,
    missing: Vec<u64>,
    rx: mpsc::Receiver<Op>,
    index: Arc<Mutex<Index>>,
    shared: Arc<Shared>,
) -> Result<(), SpoolError> {
    let dir_id = std::fs::metadata(&dir)
        .map(|m| (m.dev(), m.ino()))
        .map_err(|e| SpoolError::io(&dir, e))?;
    let segment = Segment::create(&dir, first_segment)?;
    if let Ok(mut idx) = index.lock() {
        idx.live.entry(segment.number).or_insert(0);
        idx.bytes.insert(segment.number, 0);
        idx.open = segment.shared();
    }
    let mut w = Writer {
        dir,
        dir_id,
        vanished: None,
        segment,
        index,
        shared,
        failing: false,
        rotate_failing: None,
        keep_after: missing.first().copied(),
        missing,
    };
    w.publish();
    std::thread::Builder::new()
        .name("spool-writer".into())
        .spawn(move || w.run(rx))
        .map_err(|e| SpoolError::io(Path::new("spool-writer thread"), e))?;
    Ok(())
}

/// Wakes the writer every [`MAINTENANCE_INTERVAL`] until the spool is gone
/// (it holds only a weak sender, so it never keeps the writer alive).
/// It also watches the writer's disk writes: one that has not completed
/// after [`super::STALL_WARN_AFTER`] (a frozen file system, a SAN or NFS
/// hiccup) is said once at WARN, with the sessions waiting for it (walkAU
/// F12: they hung without a word in the log).
pub(super) fn start_ticker(
    tx: mpsc::WeakSender<Op>,
    shared: Arc<Shared>,
) -> Result<(), SpoolError> {
    std::thread::Builder::new()
        .name("spool-ticker".into())
        .spawn(move || loop {
            std::thread::sleep(MAINTENANCE_INTERVAL);
            let Some(tx) = tx.upgrade() else { return };
            watch_stall(&shared);
            match tx.try_send(Op::Maintain) {
                Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        })
        .map(|_| ())
        .map_err(|e| SpoolError::io(Path::new("spool-ticker thread"), e))
}

/// Says once per stall that the writer's current disk write has not
/// completed for [`super::STALL_WARN_AFTER`], with the commits waiting
/// for it and behind it.
fn watch_stall(shared: &Shared) {
    use std::sync::atomic::Ordering::Relaxed;
    let Some(secs) = stalled_for(shared) else {
        return;
    };
    if secs < super::STALL_WARN_AFTER.as_secs() || shared.stall_warned.swap(true, Relaxed) {
        return;
    }
    let in_batch = shared.write_waiting.load(Relaxed);
    let queued = shared.commits_queued.load(Relaxed);
    tracing::warn!(target: "app", seconds = secs, commits_waiting = in_batch + queued,
        in_this_write = in_batch, queued_behind = queued,
        "Spool write has not completed for {secs} s: the disk holding the spool does not answer (frozen file system, SAN or NFS stall, failing disk). Sessions wait for their 250 meanwhile (commits_waiting counts their messages and the queue's changes); they are answered when the write completes, which is said at INFO. Check the disk (dmesg, fsfreeze -u, the storage).");
}

/// Seconds the writer's current disk write has been running (None when
/// none is).
pub(super) fn stalled_for(shared: &Shared) -> Option<u64> {
    let started = shared
        .write_started_ms
        .load(std::sync::atomic::Ordering::Relaxed);
    (started > 0).then(|| {
        let now = chrono::Utc::now().timestamp_millis();
        u64::try_from(now.saturating_sub(started)).unwrap_or(0) / 1000
    })
}

/// What became of the spool's files under the writer, said once per
/// incident (walkAU F1).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Vanished {
    /// The spool directory is not the one opened at start (renamed,
    /// deleted, replaced): nothing can be written where a restart would
    /// read it, so every write is refused until it is back.
    Dir(String),
}

/// Where the current segment stands.
enum Place {
    Ok,
    /// The current segment is no longer reachable by its name (deleted,
    /// renamed, replaced), though the directory is the spool's.
    SegmentGone,
    /// The spool directory is gone or replaced.
    DirGone(String),
}

struct Writer {
    dir: PathBuf,
    /// Device and inode of the spool directory at start: a directory
    /// renamed away, or replaced by another of the same name, is no longer
    /// where a restart would read the segments.
    dir_id: (u64, u64),
    vanished: Option<Vanished>,
    segment: Segment,
    index: Arc<Mutex<Index>>,
    shared: Arc<Shared>,
    /// The last batch could not be written (a full disk): dead space is
    /// reclaimed before the next write instead of waiting for the segment
    /// to grow.
    failing: bool,
    /// A segment refused as damaged and not salvaged yet: no segment newer
    /// than it is deleted (they record what became of its messages).
    keep_after: Option<u64>,
    /// Every such segment (oldest first) whose note (`damaged-N`) was
    /// there at start: each round looks whether the operator deleted a
    /// note (gave the segment up), so that the spool deletes the newer
    /// segments again without a restart.
    missing: Vec<u64>,
    /// Since when, and how often, starting a new segment has failed in a
    /// row: said once at WARN, then at DEBUG until it works (a read-only
    /// file system lasts until someone comes; walkAE 7).
    rotate_failing: Option<(chrono::DateTime<chrono::Utc>, u64)>,
}

/// What a batch held, for the log line of a failed write.
#[derive(Debug, Default, Clone, Copy)]
struct Held {
    /// New messages (*accepted* records of IDs not yet in the spool) from
    /// clients: refused.
    new_messages: usize,
    /// New notices of our own (DSNs, notifications: `is_bounce`): no
    /// client was refused; their sender tries them again (walkAE 8).
    notices: usize,
    /// Changes of queued messages (other records, new bytes of one).
    changes: usize,
}

impl Held {
    fn of<'a>(records: impl IntoIterator<Item = &'a super::Record>, index: &Index) -> Held {
        let mut held = Held::default();
        for r in records {
            if r.kind == RecordKind::Accepted && !index.messages.contains_key(&r.envelope.id) {
                if r.envelope.is_bounce {
                    held.notices += 1;
                } else {
                    held.new_messages += 1;
                }
            } else {
                held.changes += 1;
            }
        }
        held
    }

    /// The log line of a failed write of this batch.
    fn sentence(&self) -> String {
        let mut parts = Vec::new();
        if self.new_messages > 0 {
            parts.push(format!(
                "{} new message(s) were not accepted",
                self.new_messages
            ));
        }
        if self.notices > 0 {
            parts.push(format!(
                "{} notice(s) of our own (DSNs, notifications) were not written and are tried again",
                self.notices
            ));
        }
        if self.changes > 0 || parts.is_empty() {
            parts.push(format!(
                "{} state change(s) of queued messages were not recorded",
                self.changes
            ));
        }
        let last = parts.pop().unwrap_or_default();
        if parts.is_empty() {
            format!("Spool write failed; {last}.")
        } else {
            format!("Spool write failed; {} and {last}.", parts.join(", "))
        }
    }
}

/// Notes a message whose removal could not be written (see
/// `Shared::unrecorded_done`); bounded, as the log line is.
fn note_unrecorded(shared: &super::Shared, id: &QueueId, segment: u64) {
    const KEPT: usize = 10_000;
    if let Ok(mut done) = shared.unrecorded_done.lock() {
        if done.len() < KEPT {
            done.insert(id.clone(), segment);
        }
    }
}

struct Pending {
    kind: RecordKind,
    id: QueueId,
    envelope: Vec<u8>,
    loc: Option<Location>,
    /// A failed write leaves the index as it was (an administrator's change).
    only_if_written: bool,
    done: Option<super::Ack>,
}

impl Writer {
    fn run(&mut self, mut rx: mpsc::Receiver<Op>) {
        // A start adds a segment: past the limit, the oldest is copied
        // forward now rather than at the next rotation (64 MiB away).
        self.compact();
        while let Some(first) = rx.blocking_recv() {
            if matches!(first, Op::Append { .. }) {
                self.shared
                    .commits_queued
                    .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            }
            let mut ops = vec![first];
            let mut bytes = 0usize;
            while ops.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
                match rx.try_recv() {
                    Ok(op) => {
                        if matches!(op, Op::Append { .. }) {
                            self.shared
                                .commits_queued
                                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        if let Op::Append { records, .. } = &op {
                            bytes += records
                                .iter()
                                .filter_map(|r| r.data.as_ref())
                                .map(|d| d.len())
                                .sum::<usize>();
                        }
                        ops.push(op);
                    }
                    Err(_) => break,
                }
            }
            let mut stop = None;
            let mut maintain = false;
            let mut appends = Vec::with_capacity(ops.len());
            for op in ops {
                match op {
                    Op::Append { records, done } => appends.push((records, done)),
                    Op::Maintain => maintain = true,
                    Op::Stop(done) => stop = Some(done),
                }
            }
            if !appends.is_empty() {
                self.write_batch(appends);
            }
            if maintain {
                self.maintain();
            }
            if let Some(done) = stop {
                let _ = self.segment.file.sync_data();
                let _ = done.send(());
                return;
            }
        }
    }

    fn write_batch(&mut self, appends: Vec<(Vec<super::Record>, super::Ack)>) {
        // Free dead space before new data lands in a segment that only dead
        // messages use: once a live message is written there, the segment
        // (and the space of every delivered message in it) is pinned until
        // that message leaves. Also right after a failed write.
        if self.failing
            || (self.segment.len >= ROLL_DEAD_AFTER
                && self.current_is_dead()
                && self.keep_after.is_none())
        {
            self.maintain();
        }
        let held = match self.index.lock() {
            Ok(idx) => Held::of(appends.iter().flat_map(|(r, _)| r.iter()), &idx),
            Err(_) => Held::default(),
        };
        // Nothing is written where a restart would not read it (walkAU
        // F1: mail acknowledged into a deleted segment was lost).
        if let Err(msg) = self.keep_in_place() {
            self.refuse(&msg, held, appends);
            return;
        }
        if self.segment.len >= SEGMENT_SIZE {
            if let Err(e) = self.rotate() {
                self.refuse(&e.to_string(), held, appends);
                return;
            }
        }
        let mut buf = Vec::new();
        let mut pending = Vec::with_capacity(appends.len());
        'ops: for (records, done) in appends {
            // Encoded first, so that a record that cannot be encoded fails
            // its whole group before anything of it is written.
            let mut envs = Vec::with_capacity(records.len());
            for r in &records {
                match serde_json::to_vec(&r.envelope) {
                    Ok(v) => envs.push(v),
                    Err(e) => {
                        let _ = done.send(Err(format!("cannot encode envelope: {e}")));
                        continue 'ops;
                    }
                }
            }
            let last = records.len().saturating_sub(1);
            let mut done = Some(done);
            for (i, (r, env)) in records.into_iter().zip(envs).enumerate() {
                let start = self.segment.len + buf.len() as u64;
                let data: &[u8] = r.data.as_deref().map_or(&[], Vec::as_slice);
                let data_at = record::encode(&mut buf, r.kind, &env, data);
                let loc = (r.kind == RecordKind::Accepted).then_some(Location {
                    segment: self.segment.number,
                    offset: start + data_at,
                    len: data.len() as u64,
                });
                pending.push(Pending {
                    kind: r.kind,
                    id: r.envelope.id.clone(),
                    envelope: env,
                    loc,
                    only_if_written: r.only_if_written,
                    // The group is acknowledged once, with its last record.
                    done: if i == last { done.take() } else { None },
                });
            }
        }
        let waiting = pending.iter().filter(|p| p.done.is_some()).count();
        let mut result = self.timed(waiting, |w| w.write_durably(&buf));
        // Deleted or moved while the batch was written: nothing of it is
        // acknowledged from a file a restart would not read. It goes to a
        // new segment (the directory is the spool's) or is refused.
        if result.is_ok() {
            match self.place() {
                Place::Ok => {}
                Place::DirGone(why) => {
                    self.dir_vanished(&why);
                    result = Err(std::io::Error::other(why));
                }
                Place::SegmentGone => {
                    let before = self.segment.len;
                    match self.replace_lost_segment() {
                        Ok(()) => {
                            let (number, base) = (self.segment.number, self.segment.len);
                            for loc in pending.iter_mut().filter_map(|p| p.loc.as_mut()) {
                                loc.segment = number;
                                loc.offset = loc.offset - before + base;
                            }
                            result = self.timed(waiting, |w| w.write_durably(&buf));
                        }
                        Err(e) => result = Err(std::io::Error::other(e.to_string())),
                    }
                }
            }
        }
        match result {
            Ok(()) => {
                self.segment.len += buf.len() as u64;
                if self.failing {
                    if let Ok(mut f) = self.shared.failing.lock() {
                        *f = None;
                    }
                }
                self.failing = false;
                self.apply(&mut pending);
                self.collect_garbage();
                // Published before the acknowledgements, so that whoever
                // waited for this batch sees the space it freed.
                self.publish();
                for p in &mut pending {
                    if let Some(done) = p.done.take() {
                        let _ = done.send(Ok(()));
                    }
                }
            }
            Err(e) => {
                self.failed(&e.to_string(), held);
                // Whatever part of the batch reached the file must not stay in
                // front of later records: cut it off, or start a new segment.
                if self.segment.file.set_len(self.segment.len).is_err() {
                    let _ = self.rotate();
                }
                // New messages were not stored: they are refused (451). What
                // happened to stored ones (delivered, retried) still holds in
                // memory; it becomes durable when their segment is deleted,
                // or is done again after a crash (at-least-once). An
                // administrator's change does not: the command said that
                // nothing changed.
                if let Ok(mut idx) = self.index.lock() {
                    for p in pending.iter_mut().filter(|p| !p.only_if_written) {
                        match p.kind {
                            RecordKind::Updated => {
                                idx.set_envelope(&p.id, std::mem::take(&mut p.envelope))
                            }
                            RecordKind::Removed => {
                                if let Some(entry) = idx.messages.get(&p.id) {
                                    note_unrecorded(&self.shared, &p.id, entry.loc.segment);
                                }
                                idx.remove(&p.id)
                            }
                            RecordKind::Accepted => {}
                        }
                    }
                }
                self.collect_garbage();
                self.publish();
                for p in &mut pending {
                    if let Some(done) = p.done.take() {
                        let _ = done.send(Err(e.to_string()));
                    }
                }
            }
        }
    }

    /// Writes `buf` at the end of the current segment and flushes it.
    fn write_durably(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.injected_failure()
            .and_then(|()| self.segment.file.write_all(buf))
            .and_then(|()| self.segment.file.sync_data())
    }

    /// Runs a disk write of the writer, published for the stall watch
    /// ([`watch_stall`]) with the `waiting` sessions it answers; a write
    /// that was said to stall says when it completes.
    fn timed<T>(&mut self, waiting: usize, f: impl FnOnce(&mut Self) -> T) -> T {
        use std::sync::atomic::Ordering::Relaxed;
        let started = chrono::Utc::now().timestamp_millis().max(1);
        self.shared.write_waiting.store(waiting, Relaxed);
        self.shared.write_started_ms.store(started, Relaxed);
        let out = f(self);
        self.shared.write_started_ms.store(0, Relaxed);
        self.shared.write_waiting.store(0, Relaxed);
        if self.shared.stall_warned.swap(false, Relaxed) {
            let secs = (chrono::Utc::now().timestamp_millis() - started) / 1000;
            tracing::info!(target: "app", seconds = secs, commits_answered = waiting,
                "The stalled spool write completed after {secs} s; the waiting sessions get their replies now. A client that gave up meanwhile has not seen its 250 and may send its message again (a duplicate).");
        }
        out
    }

    /// Refuses a whole batch that could not be written (`msg`), as a
    /// failed write does.
    fn refuse(&mut self, msg: &str, held: Held, appends: Vec<(Vec<super::Record>, super::Ack)>) {
        self.failed(msg, held);
        if let Ok(idx) = self.index.lock() {
            for r in appends.iter().flat_map(|(r, _)| r.iter()) {
                if r.kind == RecordKind::Removed && !r.only_if_written {
                    if let Some(entry) = idx.messages.get(&r.envelope.id) {
                        note_unrecorded(&self.shared, &r.envelope.id, entry.loc.segment);
                    }
                }
            }
        }
        for (_, done) in appends {
            let _ = done.send(Err(msg.to_string()));
        }
    }

    /// Where the current segment stands: still under its name in the
    /// spool directory opened at start, or not.
    fn place(&self) -> Place {
        match std::fs::metadata(&self.dir) {
            Ok(m) if (m.dev(), m.ino()) == self.dir_id => {}
            Ok(_) => {
                return Place::DirGone(format!(
                    "the spool directory {} was replaced by another directory while mailward ran",
                    self.dir.display()
                ))
            }
            Err(e) => {
                return Place::DirGone(format!(
                    "the spool directory {} is gone while mailward ran (renamed or deleted): {e}",
                    self.dir.display()
                ))
            }
        }
        let ours = match self.segment.file.metadata() {
            Ok(m) => m,
            // Cannot tell: the write itself says whether the file works.
            Err(_) => return Place::Ok,
        };
        let path = record::segment_path(&self.dir, self.segment.number);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if ours.nlink() > 0 && (m.dev(), m.ino()) == (ours.dev(), ours.ino()) => {
                Place::Ok
            }
            _ => Place::SegmentGone,
        }
    }

    /// Before a batch: the current segment is where a restart reads it, or
    /// is replaced by a new one; Err (the batch is refused) while the spool
    /// directory is not the one opened at start.
    fn keep_in_place(&mut self) -> Result<(), String> {
        match self.place() {
            Place::Ok => {
                self.back_in_place();
                Ok(())
            }
            Place::DirGone(why) => {
                self.dir_vanished(&why);
                Err(why)
            }
            Place::SegmentGone => {
                self.back_in_place();
                self.replace_lost_segment().map_err(|e| e.to_string())
            }
        }
    }

    /// The spool directory went: said once (ERROR) with what to do, and
    /// `mailward status` says it (the spool's writes fail) until it is back.
    fn dir_vanished(&mut self, why: &str) {
        if let Ok(mut f) = self.shared.failing.lock() {
            if f.is_none() {
                *f = Some((chrono::Utc::now().timestamp(), why.to_string()));
            }
        }
        self.failing = true;
        if self.vanished.is_none() {
            tracing::error!(target: "app", spool = %self.dir.display(), error = %why,
                "The spool directory is not the one mailward opened at start: nothing written now could be read back, so new mail gets 451 4.3.0 and state changes are not recorded. Move the directory back (mailward takes mail again within a second), or stop mailward and put the spool in place before starting it again; never rename or delete the spool of a running gateway.");
        }
        self.vanished = Some(Vanished::Dir(why.to_string()));
    }

    /// The spool directory is the one opened at start again.
    fn back_in_place(&mut self) {
        if let Some(Vanished::Dir(_)) = self.vanished.take() {
            // (A full disk meanwhile is said again by the next write.)
            if let Ok(mut f) = self.shared.failing.lock() {
                *f = None;
            }
            tracing::info!(target: "app", spool = %self.dir.display(),
                "The spool directory is back in place: the spool writes again.");
        }
    }

    /// The current segment was deleted (or renamed, or replaced) by
    /// someone else: starts a new one, and copies the messages waiting in
    /// the lost one there from the file still open (Linux: through
    /// /proc/self/fd), so that what was acknowledged stays on disk.
    fn replace_lost_segment(&mut self) -> Result<(), SpoolError> {
        let lost = self.segment.number;
        let path = record::segment_path(&self.dir, lost);
        let fd = std::os::fd::AsRawFd::as_raw_fd(&self.segment.file);
        let src = File::open(format!("/proc/self/fd/{fd}"));
        let next = Segment::create(&self.dir, lost + 1)?;
        let old = std::mem::replace(&mut self.segment, next);
        if let Ok(mut idx) = self.index.lock() {
            idx.live.entry(self.segment.number).or_insert(0);
            idx.bytes.insert(self.segment.number, 0);
        }
        let waiting = self.ids_in(lost);
        let copied = match &src {
            Ok(src) => self.copy_forward_from(lost, src),
            Err(_) => None,
        };
        // Only now are the readers sent to the new segment: until the
        // copy moved them, the messages were read from the lost file.
        if let Ok(mut idx) = self.index.lock() {
            idx.open = self.segment.shared();
        }
        drop(old);
        match copied {
            Some(n) if n == waiting.len() => {
                tracing::error!(target: "app", segment = %path.display(), new_segment = self.segment.number, messages_copied = n,
                    "The open spool segment was deleted (or renamed) by something other than mailward: started a new one and copied the messages waiting in the lost one there, from the file still open; nothing was lost. Find what deletes files in the spool directory (a cleanup job, tmpfiles, an operator): only mailward may.");
            }
            _ => {
                let shown: Vec<&str> = waiting.iter().take(50).map(|id| id.0.as_str()).collect();
                tracing::error!(target: "app", segment = %path.display(), new_segment = self.segment.number,
                    messages = waiting.len(), copied = copied.unwrap_or(0), queue_ids = %shown.join(" "),
                    "The open spool segment was deleted (or renamed) by something other than mailward and its waiting messages could not all be copied to a new segment: those not copied are lost at the next restart. Put the file back under its name if it was renamed; find what deletes files in the spool directory: only mailward may.");
            }
        }
        self.collect_garbage();
        Ok(())
    }

    /// The messages whose bytes are in segment `seg`.
    fn ids_in(&self, seg: u64) -> Vec<QueueId> {
        self.index
            .lock()
            .map(|idx| {
                idx.messages
                    .iter()
                    .filter(|(_, e)| e.loc.segment == seg)
                    .map(|(id, _)| id.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Says loudly (once per segment) that an older segment holding
    /// waiting messages is gone from the spool directory: they cannot be
    /// delivered, and are lost.
    fn look_for_lost_segments(&self) {
        let segs: Vec<u64> = match self.index.lock() {
            Ok(idx) => idx
                .live
                .iter()
                .filter(|(&seg, &n)| n > 0 && seg != self.segment.number)
                .map(|(&seg, _)| seg)
                .collect(),
            Err(_) => return,
        };
        for seg in segs {
            let path = record::segment_path(&self.dir, seg);
            if let Err(e) = std::fs::symlink_metadata(&path) {
                if e.kind() == std::io::ErrorKind::NotFound {
                    super::report_lost(&self.shared, &self.index, &self.dir, seg);
                }
            }
        }
    }

    /// Tests only: a write that fails as on a full disk, when asked for.
    fn injected_failure(&self) -> std::io::Result<()> {
        #[cfg(test)]
        if self
            .shared
            .fail_writes
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Err(std::io::Error::from_raw_os_error(28));
        }
        Ok(())
    }

    /// Notes a failed write of a batch that held `new_messages` new
    /// messages (refused) and `changes` changes of queued ones (not
    /// recorded): counted, logged, and the next write reclaims space first.
    fn failed(&mut self, problem: &str, held: Held) {
        self.failing = true;
        if let Ok(mut f) = self.shared.failing.lock() {
            let since = f
                .as_ref()
                .map_or_else(|| chrono::Utc::now().timestamp(), |(t, _)| *t);
            *f = Some((since, problem.to_string()));
        }
        self.shared
            .write_errors
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let what = held.sentence();
        tracing::error!(target: "app", segment = self.segment.number, error = %problem,
            new_messages = held.new_messages, notices = held.notices, state_changes = held.changes, "{what}");
    }

    fn apply(&self, pending: &mut [Pending]) {
        let Ok(mut idx) = self.index.lock() else {
            return;
        };
        for p in pending.iter_mut() {
            match (p.kind, p.loc) {
                (RecordKind::Accepted, Some(loc)) => {
                    idx.insert(p.id.clone(), loc, std::mem::take(&mut p.envelope))
                }
                (RecordKind::Updated, _) => {
                    idx.set_envelope(&p.id, std::mem::take(&mut p.envelope))
                }
                (RecordKind::Removed, _) => idx.remove(&p.id),
                (RecordKind::Accepted, None) => {}
            }
        }
        idx.bytes.insert(self.segment.number, self.segment.len);
    }

    fn rotate(&mut self) -> Result<(), SpoolError> {
        let _ = self.segment.file.sync_data();
        let next = Segment::create(&self.dir, self.segment.number + 1)?;
        self.segment = next;
        if let Ok(mut idx) = self.index.lock() {
            idx.live.entry(self.segment.number).or_insert(0);
            idx.bytes.insert(self.segment.number, 0);
            idx.open = self.segment.shared();
        }
        if self.segment_count() > COMPACT_AFTER_SEGMENTS {
            self.compact();
        }
        Ok(())
    }

    fn segment_count(&self) -> usize {
        self.index.lock().map(|i| i.live.len()).unwrap_or(0)
    }

    /// Whether no live message has its bytes in the current segment.
    fn current_is_dead(&self) -> bool {
        self.index
            .lock()
            .map(|i| i.live.get(&self.segment.number).copied().unwrap_or(0) == 0)
            .unwrap_or(false)
    }

    /// The periodic round: rolls over from a current segment that only holds
    /// dead bytes (when it is big enough to matter, or the disk is full), and
    /// deletes the dead prefix of segments.
    fn maintain(&mut self) {
        self.look_at_damaged_notes();
        // Also when nothing is written: the messages acknowledged into a
        // segment deleted meanwhile are copied out of it within a second,
        // and a spool directory gone is in the log and the status at once.
        if self.keep_in_place().is_err() {
            return;
        }
        self.look_for_lost_segments();
        // (Not while a damaged segment waits for its salvage: the old one
        // could not be deleted.)
        let dead = self.current_is_dead() && self.keep_after.is_none();
        if dead && self.segment.len > 0 && (self.failing || self.segment.len >= ROLL_DEAD_AFTER) {
            let rotated = self.rotate();
            if let Ok(mut f) = self.shared.rotate_failing.lock() {
                *f = match &rotated {
                    Ok(()) => None,
                    Err(e) => Some((
                        f.as_ref()
                            .map_or_else(|| chrono::Utc::now().timestamp(), |(t, _)| *t),
                        e.to_string(),
                    )),
                };
            }
            match (rotated, self.rotate_failing.take()) {
                (Ok(()), None) => tracing::info!(target: "app", segment = self.segment.number,
                    "Started a new spool segment to free the space of delivered mail."),
                (Ok(()), Some((since, tries))) => tracing::info!(target: "app",
                    segment = self.segment.number, failed_tries = tries, since = %since.to_rfc3339(),
                    "The spool writes again: started a new spool segment to free the space of delivered mail."),
                (Err(e), None) => {
                    tracing::warn!(target: "app", error = %e,
                        "Cannot start a new spool segment yet; will try again every second, and say so again only when it works.");
                    self.rotate_failing = Some((chrono::Utc::now(), 1));
                }
                (Err(e), Some((since, tries))) => {
                    tracing::debug!(target: "app", error = %e, failed_tries = tries + 1,
                        "Cannot start a new spool segment yet; will try again.");
                    self.rotate_failing = Some((since, tries + 1));
                }
            }
        }
        // Segments pile up without a rotation too: every start opens one,
        // and a message deferred for days pins them all. Compaction (one
        // old segment per round, nothing when there are few) keeps disk
        // use to the queue's.
        self.compact();
        self.collect_garbage();
        if self.under_pressure() {
            self.relieve();
        } else {
            self.compaction_unstuck();
        }
        self.publish();
    }

    /// Whether the free space is within one segment of what the admission
    /// check keeps (the floor and the room for the compaction's copy).
    fn under_pressure(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let kept = self
            .shared
            .free_floor
            .load(Relaxed)
            .saturating_add(self.shared.copy_reserve.load(Relaxed));
        super::free_space(&self.dir).is_ok_and(|free| free < kept.saturating_add(SEGMENT_SIZE))
    }

    /// Compaction under pressure: when the segments hold at least
    /// [`ROLL_DEAD_AFTER`] dead bytes, and no fewer than the live message
    /// bytes a full compaction would copy, closes the current segment (when
    /// a live message pins dead bytes in it) and copies every live message
    /// forward, oldest segment first, so that the old segments can go. The
    /// rule keeps the copying no larger than the space it frees.
    fn relieve(&mut self) {
        let (dead, live, current_dead, current_live) = {
            let Ok(idx) = self.index.lock() else {
                return;
            };
            // What a copy of each live message takes: its record, with the
            // envelope as it is now (counting only the message bytes would
            // call the envelopes of many small messages dead, and copy them
            // round after round without freeing anything).
            let mut live_bytes: std::collections::BTreeMap<u64, u64> = Default::default();
            for e in idx.messages.values() {
                *live_bytes.entry(e.loc.segment).or_insert(0) +=
                    record::HEADER_LEN + e.envelope.len() as u64 + e.loc.len;
            }
            // While a damaged segment waits for its salvage, the segments
            // after it stay whatever is copied out of them: only the older
            // ones count (copying the others costs room and frees none).
            live_bytes.retain(|&seg, _| !self.kept(seg));
            let total: u64 = idx
                .bytes
                .iter()
                .filter(|(&seg, _)| !self.kept(seg))
                .map(|(_, b)| b)
                .sum();
            let live: u64 = live_bytes.values().sum();
            let current_live = live_bytes.get(&self.segment.number).copied().unwrap_or(0);
            (
                total.saturating_sub(live),
                live,
                self.segment.len.saturating_sub(current_live),
                current_live,
            )
        };
        if dead < ROLL_DEAD_AFTER || dead < live {
            return;
        }
        if current_live > 0 && current_dead >= ROLL_DEAD_AFTER && !self.kept(self.segment.number) {
            if let Err(e) = self.rotate() {
                tracing::debug!(target: "app", error = %e,
                    "Cannot start a new spool segment to free the space of delivered mail yet; will try again.");
                self.compaction_stuck(dead);
                return;
            }
        }
        let old: Vec<u64> = match self.index.lock() {
            Ok(idx) => idx
                .live
                .iter()
                .filter(|(&seg, &n)| n > 0 && seg != self.segment.number && !self.kept(seg))
                .map(|(&seg, _)| seg)
                .collect(),
            Err(_) => return,
        };
        let mut moved = 0;
        let mut stuck = false;
        for seg in &old {
            match self.copy_forward(*seg) {
                // Deleted before the next copy: the room the admission
                // check keeps (`Index::copy_reserve`) is one segment's copy.
                Some(n) => {
                    moved += n;
                    self.collect_garbage();
                }
                // No room for the copy yet: what was copied stays copied.
                None => {
                    stuck = true;
                    break;
                }
            }
        }
        self.collect_garbage();
        if stuck {
            self.compaction_stuck(dead);
        } else {
            self.compaction_unstuck();
        }
        // Said only when something moved: a round with nothing to copy
        // (the dead bytes in segments no live message pins) would say it
        // every second while the disk stays short.
        if moved > 0 {
            tracing::info!(target: "app", segments = old.len(), messages = moved, dead_bytes = dead,
                "Spool space is short: copied the live messages forward to free the space of delivered mail.");
        }
    }

    /// The compaction under pressure could not write its copy (the disk
    /// is full: a client without SIZE took the last bytes, or another
    /// program did). Said once per episode, with what the copy needs.
    fn compaction_stuck(&mut self, dead: u64) {
        let need: u64 = match self.index.lock() {
            Ok(idx) => idx
                .messages
                .values()
                .filter(|e| e.loc.segment != self.segment.number)
                .map(|e| record::HEADER_LEN + e.envelope.len() as u64 + e.loc.len)
                .sum(),
            Err(_) => return,
        };
        let was = self
            .shared
            .compaction_short_of
            .swap(need.max(1), std::sync::atomic::Ordering::Relaxed);
        if was == 0 {
            let free = super::free_space(&self.dir).unwrap_or(0);
            tracing::warn!(target: "app", needed_bytes = need, free_bytes = free, dead_bytes = dead,
                "Spool space is short, and the waiting messages cannot be copied forward to free the space of delivered mail: the disk has no room for the copy. New mail is refused until space is freed on that disk or the waiting messages leave (mailward queue list).");
        }
    }

    /// The compaction under pressure ran (or has nothing to do): no longer stuck.
    fn compaction_unstuck(&mut self) {
        let was = self
            .shared
            .compaction_short_of
            .swap(0, std::sync::atomic::Ordering::Relaxed);
        if was > 0 {
            tracing::info!(target: "app",
                "The spool could copy the waiting messages forward again; the space of delivered mail is being freed.");
        }
    }

    /// Publishes the bytes that deleting dead segments would free: the dead
    /// prefix, and the current segment when nothing lives in it and it is
    /// large enough to be rolled over before the next write
    /// ([`ROLL_DEAD_AFTER`]). A smaller one is not counted: the next
    /// message is written beside its dead bytes and pins them, so counting
    /// them would let new mail take that much more than the disk has.
    fn publish(&self) {
        let Ok(idx) = self.index.lock() else {
            return;
        };
        let mut reclaimable = 0u64;
        for (&seg, &n) in &idx.live {
            if n > 0 || self.kept(seg) {
                break;
            }
            let bytes = idx.bytes.get(&seg).copied().unwrap_or(0);
            if seg == self.segment.number && bytes < ROLL_DEAD_AFTER {
                break;
            }
            reclaimable += bytes;
        }
        self.shared
            .reclaimable
            .store(reclaimable, std::sync::atomic::Ordering::Relaxed);
        self.shared.copy_reserve.store(
            idx.copy_reserve(self.keep_after),
            std::sync::atomic::Ordering::Relaxed,
        );
        let damaged = self.keep_after.map(|segment| {
            let kept = |m: &std::collections::BTreeMap<u64, u64>| -> u64 {
                m.range(segment.saturating_add(1)..).map(|(_, b)| b).sum()
            };
            super::DamagedKept {
                segment,
                note: record::damaged_note_path(&self.dir, segment),
                kept_bytes: kept(&idx.bytes).saturating_sub(kept(&idx.live_bytes)),
            }
        });
        if let Ok(mut d) = self.shared.damaged.lock() {
            *d = damaged;
        }
    }

    /// Whether the operator gave a damaged segment up (deleted its note,
    /// `damaged-N`) since the start: then the segments after it are no
    /// longer kept for its salvage (the next damaged one still missing, if
    /// any, takes its place). A note that cannot be looked at counts as
    /// there.
    fn look_at_damaged_notes(&mut self) {
        if self.keep_after.is_none() {
            return;
        }
        let dir = self.dir.clone();
        self.missing.retain(|&n| {
            let there = !matches!(
                std::fs::symlink_metadata(record::damaged_note_path(&dir, n)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound
            );
            if !there {
                tracing::info!(target: "app", segment = %record::segment_path(&dir, n).display(),
                    note = %record::damaged_note_path(&dir, n).display(),
                    "The note of a damaged spool segment was deleted: the segment is given up (its messages stay out of the queue), and the spool deletes the segments after it again.");
            }
            there
        });
        self.keep_after = self.missing.first().copied();
    }

    /// Whether segment `seg` must stay although nothing lives in it: it is
    /// newer than a damaged segment that waits for its salvage.
    fn kept(&self, seg: u64) -> bool {
        self.keep_after.is_some_and(|missing| seg > missing)
    }

    /// Deletes the oldest segments while nothing lives in them. Only a prefix
    /// goes, so that a record removing a message never vanishes before the
    /// record that added it.
    fn collect_garbage(&self) {
        let doomed: Vec<u64> = {
            let Ok(mut idx) = self.index.lock() else {
                return;
            };
            let mut out = Vec::new();
            while let Some((&seg, &n)) = idx.live.iter().next() {
                if n > 0 || seg == self.segment.number || self.kept(seg) {
                    break;
                }
                idx.live.remove(&seg);
                idx.bytes.remove(&seg);
                idx.live_bytes.remove(&seg);
                out.push(seg);
            }
            out
        };
        for seg in doomed {
            let path = record::segment_path(&self.dir, seg);
            if let Err(e) = std::fs::remove_file(&path) {
                // A segment deleted by someone else was said when found.
                if e.kind() == std::io::ErrorKind::NotFound {
                    continue;
                }
                tracing::warn!(target: "app", segment = %path.display(), error = %e, "Cannot delete an empty spool segment.");
            }
        }
    }

    /// Copies the live messages of the oldest segment to the current one, so
    /// that a long-deferred message does not pin every segment after it.
    fn compact(&mut self) {
        if self.segment_count() <= COMPACT_AFTER_SEGMENTS {
            return;
        }
        // The oldest segment with a live message (the older ones are
        // deleted, or kept for a damaged segment's salvage).
        let oldest = match self.index.lock() {
            Ok(idx) => match idx.live.iter().find(|(_, &n)| n > 0) {
                Some((&oldest, _)) => oldest,
                None => return,
            },
            Err(_) => return,
        };
        // A segment kept for a damaged one's salvage stays anyway: copying
        // its messages would only take more room.
        if oldest == self.segment.number || self.kept(oldest) {
            return;
        }
        if let Some(count) = self.copy_forward(oldest) {
            tracing::info!(target: "app", segment = oldest, messages = count, "Copied live messages out of an old spool segment.");
        }
        self.collect_garbage();
    }

    /// Copies the live messages of segment `seg` (not the current one) to
    /// the current segment; returns how many, or None when they could not
    /// be written (a full disk: nothing moved).
    fn copy_forward(&mut self, seg: u64) -> Option<usize> {
        if seg == self.segment.number {
            return Some(0);
        }
        let path = record::segment_path(&self.dir, seg);
        let src = File::open(&path).ok()?;
        self.copy_forward_from(seg, &src)
    }

    /// [`Writer::copy_forward`] from `src`, the file of segment `seg`.
    fn copy_forward_from(&mut self, seg: u64, src: &File) -> Option<usize> {
        let movers: Vec<(QueueId, Location, Vec<u8>)> = {
            let idx = self.index.lock().ok()?;
            idx.messages
                .iter()
                .filter(|(_, e)| e.loc.segment == seg)
                .map(|(id, e)| (id.clone(), e.loc, e.envelope.clone()))
                .collect()
        };
        let mut buf = Vec::new();
        let mut moved = Vec::new();
        for (id, loc, env) in movers {
            let mut data = vec![0u8; loc.len as usize];
            if src.read_exact_at(&mut data, loc.offset).is_err() {
                continue;
            }
            let start = self.segment.len + buf.len() as u64;
            let at = record::encode(&mut buf, RecordKind::Accepted, &env, &data);
            moved.push((
                id,
                Location {
                    segment: self.segment.number,
                    offset: start + at,
                    len: loc.len,
                },
                env,
            ));
        }
        if self.timed(0, |w| w.write_durably(&buf)).is_err() {
            let _ = self.segment.file.set_len(self.segment.len);
            return None;
        }
        self.segment.len += buf.len() as u64;
        let count = moved.len();
        if let Ok(mut idx) = self.index.lock() {
            idx.bytes.insert(self.segment.number, self.segment.len);
            for (id, loc, env) in moved {
                // A message removed meanwhile stays removed.
                if idx.messages.contains_key(&id) {
                    idx.insert(id, loc, env);
                }
            }
        }
        Some(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Envelope;

    fn env() -> Envelope {
        Envelope::new(
            QueueId::generate(),
            "127.0.0.1".parse().unwrap(),
            "client.test".into(),
            "a@example.com".into(),
        )
    }

    /// walkP: a `queue hold` that failed on a full disk was logged as
    /// "the new messages in this batch were not accepted", so that an
    /// admin reading the log believed mail had been refused.
    #[test]
    fn a_failed_write_says_what_its_batch_held() {
        let queued = env();
        let mut index = Index::default();
        index.insert(
            queued.id.clone(),
            Location {
                segment: 1,
                offset: 0,
                len: 1,
            },
            Vec::new(),
        );
        let hold = [super::super::Record::updated(queued.clone())];
        let said = Held::of(&hold, &index).sentence();
        assert_eq!(
            said,
            "Spool write failed; 1 state change(s) of queued messages were not recorded."
        );
        assert!(!said.contains("new message"), "{said}");
        let mixed = [
            super::super::Record::accepted(env(), b"x".to_vec()),
            super::super::Record::accepted(env(), b"y".to_vec()),
            super::super::Record::removed(queued),
        ];
        assert_eq!(
            Held::of(&mixed, &index).sentence(),
            "Spool write failed; 2 new message(s) were not accepted and 1 state change(s) of queued messages were not recorded."
        );
        // walkAE 8: a DSN that could not be spooled is no client's refused
        // message.
        let mut dsn = env();
        dsn.is_bounce = true;
        let notice = [super::super::Record::accepted(dsn, b"z".to_vec())];
        let said = Held::of(&notice, &index).sentence();
        assert_eq!(
            said,
            "Spool write failed; 1 notice(s) of our own (DSNs, notifications) were not written and are tried again."
        );
        assert!(!said.contains("not accepted"), "{said}");
    }
}
