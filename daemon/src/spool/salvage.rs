//! Salvage of a damaged segment: `mailward queue salvage FILE`.
//!
//! Recovery refuses to start on a damaged record that is not the torn end
//! of the newest segment, and the operator moves that segment aside. The
//! messages whose last record was in it then leave the queue, although
//! every record but the damaged ones is intact: each is framed by its
//! length and checked by its CRC-32.
//!
//! Salvage copies the intact records of the file, in their order, into a
//! new segment with the file's own number, back in the spool. Recovery then
//! replays it in its place among the others, so the last record of each
//! message still wins: a message delivered after the damaged segment was
//! written (a *removed* record in a newer segment) stays delivered, and one
//! that the file says was delivered (a *removed* record in it) is not sent
//! again. Past a damaged record, the reading starts again at the next
//! record whose header, checksum and envelope are right, so one bad block
//! in the middle of a segment costs only the records it touches.
//!
//! It works offline: it takes the data directory's lock, so it refuses to
//! run beside a gateway that owns the spool (which read the segments at its
//! start and would not see the new one).

use super::record::{self, RecordKind, Replay, MAGIC};
use super::SpoolError;
use crate::envelope::{Envelope, QueueId};
use crate::files::{DataDirLock, LockError};
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SalvageError {
    #[error(
        "a gateway{} runs on {}: stop it first (salvage works offline: a running \
         gateway read its segments at its start and would not see the repaired one)",
        pid.as_deref().map(|p| format!(" (pid {p})")).unwrap_or_default(),
        dir.display()
    )]
    Running { dir: PathBuf, pid: Option<String> },
    #[error(transparent)]
    Lock(LockError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot tell which segment {} was from its name: give --segment N, \
         N being the number of its name in the spool (0000000000000003.seg is 3)",
        path.display()
    )]
    NoNumber { path: PathBuf },
    #[error(
        "the spool already has a segment {segment} ({}): salvage writes the repaired \
         copy there. Check the number (--segment N)",
        existing.display()
    )]
    Taken { segment: u64, existing: PathBuf },
    #[error(
        "{} is in the spool itself: stop the gateway, move it aside (mv {} /root/), \
         start the gateway if you want mail to flow meanwhile, and salvage the moved file",
        path.display(),
        path.display()
    )]
    InSpool { path: PathBuf },
    #[error(
        "there is no spool at {}: give the gateway's configuration (--config FILE), \
         whose server.data_dir holds spool/",
        dir.display()
    )]
    NoSpool { dir: PathBuf },
    #[error(
        "segment {segment} is not older than the spool's segments (they go up to {last}): \
         salvage puts a file back in its place among them, and at this number its old records \
         would be read after the newer ones, so that mail delivered since would be delivered \
         again. Check the number (the file's name, or --segment N)"
    )]
    TooNew { segment: u64, last: u64 },
    #[error(
        "{} was salvaged before (as segment {segment} at {when}; the same size and checksum, \
         noted in {}): its messages were put back then, and again they would be delivered a \
         second time. If the spool was restored from a copy taken before that salvage, delete \
         that line and run it again",
        path.display(),
        ledger.display()
    )]
    Again {
        path: PathBuf,
        segment: u64,
        when: String,
        ledger: PathBuf,
    },
    #[error("{} holds no intact record: nothing to salvage (keep it for a closer look)", path.display())]
    NothingIntact { path: PathBuf },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl SalvageError {
    /// The exit status: 75 (EX_TEMPFAIL) while a gateway owns the spool, as
    /// a second `mailward run` gets; 64 for a configuration whose data
    /// directory has no spool, as for any bad configuration; 2 when the
    /// segment number must be given, as for any usage error; 66
    /// (EX_NOINPUT) for a file that cannot be read; 73 (EX_CANTCREAT) when
    /// the repaired copy cannot be written; 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            SalvageError::Running { .. } => 75,
            SalvageError::NoSpool { .. } => 64,
            SalvageError::NoNumber { .. } => 2,
            SalvageError::Read { .. } => 66,
            SalvageError::Write { .. } => 73,
            _ => 1,
        }
    }
}

/// A stretch of the file that could not be read as records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub offset: u64,
    pub len: u64,
    /// What was wrong with the record at `offset`.
    pub problem: String,
    /// The message the first damaged record was about, when its envelope
    /// can still be read (only its message bytes are damaged).
    pub about: Option<(RecordKind, Envelope)>,
}

/// What a salvage found and did.
#[derive(Debug)]
pub struct Salvage {
    pub source: PathBuf,
    pub segment: u64,
    pub source_bytes: u64,
    /// Where the repaired copy is (a dry run writes none).
    pub written: Option<PathBuf>,
    pub accepted: usize,
    pub updated: usize,
    pub removed: usize,
    pub damage: Vec<Damage>,
    /// Messages in the queue before, and after, counting the repaired copy.
    pub queued_before: usize,
    pub queued_after: usize,
    /// Messages the salvage puts back in the queue.
    pub back: Vec<Envelope>,
    /// Messages that leave the queue: the file records that they were
    /// delivered or removed (without it they would be sent again).
    pub gone: Vec<Envelope>,
    /// Messages whose damaged *accepted* record is not made up for by
    /// another copy: they are lost, and their senders should be told.
    pub lost: Vec<Envelope>,
    /// Messages lost because their *accepted* record (envelope and bytes)
    /// is damaged past reading, known by their later intact *updated*
    /// records in the file: the envelope is the last of those. Neither in
    /// the queue nor removed, they would otherwise vanish unnamed.
    pub lost_accepted: Vec<Envelope>,
    /// A file with no intact record whose segment has a note
    /// (`damaged-N`): there is nothing to put back, so the note is removed
    /// (a dry run only says so) and the spool deletes the segments after
    /// it again. None otherwise.
    pub given_up: Option<PathBuf>,
    /// Whether it was a dry run (nothing changed in the spool).
    pub dry_run: bool,
}

/// Salvages `file` (a segment moved aside from `data_dir/spool`) as segment
/// `segment` (by default the number its name starts with). With `dry_run`,
/// the figures are the same and the spool is left as it was.
pub fn salvage(
    data_dir: &Path,
    file: &Path,
    segment: Option<u64>,
    dry_run: bool,
) -> Result<Salvage, SalvageError> {
    // A file that is not there is said first: its name is no matter then.
    std::fs::metadata(file).map_err(|source| SalvageError::Read {
        path: file.to_path_buf(),
        source,
    })?;
    let segment = match segment {
        Some(n) => n,
        None => number_of(file).ok_or_else(|| SalvageError::NoNumber {
            path: file.to_path_buf(),
        })?,
    };
    let dir = data_dir.join("spool");
    if !dir.is_dir() {
        return Err(SalvageError::NoSpool { dir });
    }
    // A salvage usually follows a crash: the next start must still say so.
    let _lock = DataDirLock::take(data_dir)
        .map_err(|e| match e {
            LockError::Held { dir, pid, .. } => SalvageError::Running { dir, pid },
            e => SalvageError::Lock(e),
        })?
        .passing_on_unclean_end();
    let target = record::segment_path(&dir, segment);
    if same_file(&target, file) {
        return Err(SalvageError::InSpool {
            path: file.to_path_buf(),
        });
    }
    if target.exists() {
        return Err(SalvageError::Taken {
            segment,
            existing: target,
        });
    }
    let bytes = std::fs::read(file).map_err(|source| SalvageError::Read {
        path: file.to_path_buf(),
        source,
    })?;
    let scan = scan(&bytes);
    if scan.kept.is_empty() {
        let note = record::damaged_note_path(&dir, segment);
        if !note.exists() {
            return Err(SalvageError::NothingIntact {
                path: file.to_path_buf(),
            });
        }
        // Nothing can come back, and its note keeps every newer segment
        // (the delivered mail in them) for a salvage that has nothing to
        // do: the file is given up.
        let segments: Vec<(u64, PathBuf)> = record::list_segments(&dir)?
            .into_iter()
            .map(|n| (n, record::segment_path(&dir, n)))
            .collect();
        let queued = record::replay(&segments, Replay::Look)?.envelopes.len();
        if !dry_run {
            record::clear_damaged_note(&dir, segment).map_err(|source| SalvageError::Write {
                path: note.clone(),
                source,
            })?;
        }
        return Ok(Salvage {
            source: file.to_path_buf(),
            segment,
            source_bytes: bytes.len() as u64,
            written: None,
            accepted: 0,
            updated: 0,
            removed: 0,
            damage: scan.damage,
            queued_before: queued,
            queued_after: queued,
            back: Vec::new(),
            gone: Vec::new(),
            lost: Vec::new(),
            lost_accepted: Vec::new(),
            given_up: Some(note),
            dry_run,
        });
    }
    refuse_too_new(&dir, segment)?;
    let checksum = crc32fast::hash(&bytes);
    if let Some((segment, when)) = salvaged_before(&dir, bytes.len() as u64, checksum) {
        return Err(SalvageError::Again {
            path: file.to_path_buf(),
            segment,
            when,
            ledger: dir.join(LEDGER),
        });
    }

    let mut segments: Vec<(u64, PathBuf)> = record::list_segments(&dir)?
        .into_iter()
        .map(|n| (n, record::segment_path(&dir, n)))
        .collect();
    let before = record::replay(&segments, Replay::Look)?.envelopes;

    // Written under a name recovery does not read (it ends in .tmp), made
    // durable, and only then renamed into place: a crash halfway leaves
    // the spool as it was.
    let tmp = dir.join(format!(".salvage-{segment:016}.tmp"));
    let write = |source| SalvageError::Write {
        path: tmp.clone(),
        source,
    };
    {
        let mut out = crate::files::create(&tmp, crate::files::PRIVATE_FILE).map_err(write)?;
        // Run as root (the usual way, between `systemctl stop` and
        // `start`), the copy would be root's and the gateway, as its
        // unprivileged user, could not open it: it takes the spool's owner.
        give_to_owner_of(&dir, &out).map_err(write)?;
        for (start, end) in &scan.kept {
            out.write_all(&bytes[*start as usize..*end as usize])
                .map_err(write)?;
        }
        out.sync_all().map_err(write)?;
    }
    let place = segments.partition_point(|(n, _)| *n < segment);
    segments.insert(place, (segment, tmp.clone()));
    let after = record::replay(&segments, Replay::Look);
    let written = if dry_run || after.is_err() {
        let _ = std::fs::remove_file(&tmp);
        None
    } else {
        std::fs::rename(&tmp, &target).map_err(|source| SalvageError::Write {
            path: target.clone(),
            source,
        })?;
        crate::files::sync_dir(&dir).map_err(|source| SalvageError::Write {
            path: dir.clone(),
            source,
        })?;
        // The segment is back: the spool may delete newer segments again.
        // (A note left behind is cleared by the next start, which finds
        // the segment present.)
        let _ = record::clear_damaged_note(&dir, segment);
        note_salvaged(&dir, file, bytes.len() as u64, checksum, segment);
        Some(target)
    };
    let after = after?;
    let (after, delivered) = (after.envelopes, after.removed);

    let ids = |list: &[Envelope]| {
        list.iter()
            .map(|e| e.id.clone())
            .collect::<HashSet<QueueId>>()
    };
    let (had, has) = (ids(&before), ids(&after));
    let back = after
        .iter()
        .filter(|e| !had.contains(&e.id))
        .cloned()
        .collect();
    let gone = before
        .iter()
        .filter(|e| !has.contains(&e.id))
        .cloned()
        .collect();
    let lost = scan
        .damage
        .iter()
        .filter_map(|d| match &d.about {
            Some((RecordKind::Accepted, e))
                if !has.contains(&e.id) && !had.contains(&e.id) && !delivered.contains(&e.id) =>
            {
                Some(e.clone())
            }
            _ => None,
        })
        .collect::<Vec<Envelope>>();
    // A message with records in the file but no intact accepted record
    // anywhere, that is neither queued nor removed: its accepted record
    // was in the damage (walkAI 2: one flipped byte in its envelope).
    let named: HashSet<QueueId> = ids(&lost);
    let mut accepted_here = HashSet::new();
    let mut updates: Vec<Envelope> = Vec::new();
    for (start, _) in &scan.kept {
        match readable_envelope(&bytes, *start as usize) {
            Some((RecordKind::Accepted, e)) => {
                accepted_here.insert(e.id);
            }
            Some((RecordKind::Updated, e)) => match updates.iter_mut().find(|u| u.id == e.id) {
                Some(last) => *last = e,
                None => updates.push(e),
            },
            _ => {}
        }
    }
    let lost_accepted = updates
        .into_iter()
        .filter(|e| {
            !accepted_here.contains(&e.id)
                && !has.contains(&e.id)
                && !had.contains(&e.id)
                && !delivered.contains(&e.id)
                && !named.contains(&e.id)
        })
        .collect();
    Ok(Salvage {
        source: file.to_path_buf(),
        segment,
        source_bytes: bytes.len() as u64,
        written,
        accepted: scan.count(RecordKind::Accepted),
        updated: scan.count(RecordKind::Updated),
        removed: scan.count(RecordKind::Removed),
        damage: scan.damage,
        queued_before: before.len(),
        queued_after: after.len(),
        back,
        gone,
        lost,
        lost_accepted,
        given_up: None,
        dry_run,
    })
}

/// The file in `spool/` that lists what was salvaged, one line per file:
/// size, CRC-32, segment number, time, the file's path.
const LEDGER: &str = "salvaged";

/// Refuses a number at or above the spool's newest segment (and the least
/// number a new segment may take, `next-segment`, which a refused newest
/// segment raised past its own): there the file's old records would be
/// replayed after newer ones. A spool without a record in it has no
/// order to break.
fn refuse_too_new(dir: &Path, segment: u64) -> Result<(), SalvageError> {
    let present = record::list_segments(dir)?;
    let has_records = present
        .iter()
        .any(|&n| std::fs::metadata(record::segment_path(dir, n)).is_ok_and(|m| m.len() > 0));
    let limit = present
        .last()
        .map_or(0, |n| n + 1)
        .max(record::read_mark(dir));
    if has_records && segment >= limit {
        return Err(SalvageError::TooNew {
            segment,
            last: limit.saturating_sub(1),
        });
    }
    Ok(())
}

/// The segment and time of an earlier salvage of a file of this size and
/// checksum, from the ledger.
fn salvaged_before(dir: &Path, size: u64, checksum: u32) -> Option<(u64, String)> {
    let text = std::fs::read_to_string(dir.join(LEDGER)).ok()?;
    text.lines().find_map(|line| {
        let mut f = line.split(' ');
        let (s, c, seg, when) = (f.next()?, f.next()?, f.next()?, f.next()?);
        (s.parse::<u64>().ok()? == size && u32::from_str_radix(c, 16).ok()? == checksum)
            .then(|| Some((seg.parse().ok()?, when.to_string())))
            .flatten()
    })
}

/// Adds the salvaged file to the ledger; a failure costs only the warning
/// of a second salvage of it.
fn note_salvaged(dir: &Path, file: &Path, size: u64, checksum: u32, segment: u64) {
    let path = dir.join(LEDGER);
    let line = format!(
        "{size} {checksum:08x} {segment} {} {}\n",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        file.display()
    );
    let done = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&path)
        .and_then(|mut f| {
            crate::files::set_mode(&path, crate::files::PRIVATE_FILE)?;
            give_to_owner_of(dir, &f)?;
            f.write_all(line.as_bytes())?;
            f.sync_all()
        });
    if let Err(e) = done {
        tracing::warn!(target: "app", file = %path.display(), error = %e,
            "Cannot note the salvage; a second salvage of the same file would not be refused.");
    }
}

/// Gives `file` (written in `dir`) the owner and group of `dir`, when
/// they differ: a file that root writes in a spool that belongs to the
/// gateway's user would otherwise be closed to that user.
fn give_to_owner_of(dir: &Path, file: &std::fs::File) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let (d, f) = (std::fs::metadata(dir)?, file.metadata()?);
    if (d.uid(), d.gid()) == (f.uid(), f.gid()) {
        return Ok(());
    }
    std::os::unix::fs::fchown(file, Some(d.uid()), Some(d.gid())).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "cannot give it the owner of {} (uid {}, gid {}), as the gateway must read it: {e}; \
                 run the salvage as root or as that user",
                dir.display(),
                d.uid(),
                d.gid()
            ),
        )
    })
}

/// Whether `a` and `b` are one file (the same inode), e.g. the segment in
/// the spool given as the file to salvage.
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// The number a segment's name starts with: `0000000000000003.seg`, or
/// the same with a suffix the operator added (`.seg.damaged`).
fn number_of(file: &Path) -> Option<u64> {
    let name = file.file_name()?.to_str()?;
    let digits: String = name.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The intact records of a segment's bytes and the stretches between them.
struct Scan {
    /// (start, end) of each intact record, in file order.
    kept: Vec<(u64, u64)>,
    kinds: Vec<RecordKind>,
    damage: Vec<Damage>,
}

impl Scan {
    fn count(&self, kind: RecordKind) -> usize {
        self.kinds.iter().filter(|k| **k == kind).count()
    }
}

/// The kind and envelope a damaged record still shows, if its header's
/// envelope length holds and the envelope parses.
fn readable_envelope(bytes: &[u8], offset: usize) -> Option<(RecordKind, Envelope)> {
    let header = bytes.get(offset..offset + record::HEADER_LEN as usize)?;
    if &header[0..4] != MAGIC {
        return None;
    }
    let kind = RecordKind::from_u8(header[4])?;
    let env_len = u32::from_le_bytes([header[8], header[9], header[10], header[11]]) as usize;
    let start = offset + record::HEADER_LEN as usize;
    let env = bytes.get(start..start.checked_add(env_len)?)?;
    serde_json::from_slice(env).ok().map(|e| (kind, e))
}

fn scan(bytes: &[u8]) -> Scan {
    let mut scan = Scan {
        kept: Vec::new(),
        kinds: Vec::new(),
        damage: Vec::new(),
    };
    let len = bytes.len() as u64;
    let mut offset = 0u64;
    while offset < len {
        match record::record_at(bytes, offset) {
            Ok((kind, next)) => {
                scan.kept.push((offset, next));
                scan.kinds.push(kind);
                offset = next;
            }
            Err(problem) => {
                let resume = record::next_intact(bytes, offset + 1).unwrap_or(len);
                scan.damage.push(Damage {
                    offset,
                    len: resume - offset,
                    problem,
                    about: readable_envelope(bytes, offset as usize),
                });
                offset = resume;
            }
        }
    }
    scan
}

#[cfg(test)]
mod tests;
