//! The on-disk record format of spool segments and recovery from them.
//!
//! A record is a 24-byte header, the envelope as JSON, then the message bytes
//! (only in `Accepted` records):
//!
//! | bytes | field |
//! | --- | --- |
//! | 4 | magic `MWR1` |
//! | 1 | kind (1 accepted, 2 updated, 3 removed) |
//! | 3 | zero |
//! | 4 | envelope length, little-endian |
//! | 8 | data length, little-endian |
//! | 4 | CRC-32 of kind, both lengths, envelope and data |

use super::{Index, Location, SpoolError};
use crate::envelope::{Envelope, QueueId};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

pub(crate) const MAGIC: &[u8; 4] = b"MWR1";
pub(crate) const HEADER_LEN: u64 = 24;
/// Envelopes larger than this are refused when read back (a corrupt length).
const MAX_ENVELOPE: u32 = 64 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// A new message: envelope and bytes.
    Accepted = 1,
    /// A new state of the envelope.
    Updated = 2,
    /// The message has left the queue.
    Removed = 3,
}

impl RecordKind {
    pub(super) fn from_u8(b: u8) -> Option<RecordKind> {
        match b {
            1 => Some(RecordKind::Accepted),
            2 => Some(RecordKind::Updated),
            3 => Some(RecordKind::Removed),
            _ => None,
        }
    }
}

pub(crate) fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:016}.seg"))
}

fn crc(kind: u8, env: &[u8], data: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&[kind]);
    h.update(&(env.len() as u32).to_le_bytes());
    h.update(&(data.len() as u64).to_le_bytes());
    h.update(env);
    h.update(data);
    h.finalize()
}

/// Appends one encoded record to `out`; returns the offset of the data
/// within the record.
pub(crate) fn encode(out: &mut Vec<u8>, kind: RecordKind, env: &[u8], data: &[u8]) -> u64 {
    out.extend_from_slice(MAGIC);
    out.push(kind as u8);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&(env.len() as u32).to_le_bytes());
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc(kind as u8, env, data).to_le_bytes());
    out.extend_from_slice(env);
    out.extend_from_slice(data);
    HEADER_LEN + env.len() as u64
}

/// What recovery found.
pub(crate) struct Recovered {
    pub(crate) index: Index,
    pub(crate) envelopes: Vec<Envelope>,
    pub(crate) next_segment: u64,
    /// Messages a *removed* record took out of the queue ([`Replay::Look`]
    /// only: a start has no use for them).
    pub(crate) removed: std::collections::HashSet<QueueId>,
    /// Messages with an *updated* record but no *accepted* one (and no
    /// removal): their bytes are in a segment that is missing.
    pub(crate) orphans: Vec<QueueId>,
    /// Segments refused as damaged at an earlier start that are not back
    /// (see [`DAMAGED_NOTE`]); [`recover`] only.
    pub(crate) missing: Vec<u64>,
    /// Numbers missing between the oldest and the newest segment, other
    /// than those: the spool deletes only its oldest segments, so these
    /// were deleted by someone else (or are damaged segments given up);
    /// [`recover`] only.
    pub(crate) holes: Vec<u64>,
}

/// Lists segment numbers in `dir`, sorted.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<u64>, SpoolError> {
    let mut out = Vec::new();
    let rd = std::fs::read_dir(dir).map_err(|e| SpoolError::io(dir, e))?;
    for entry in rd {
        let entry = entry.map_err(|e| SpoolError::io(dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(num) = name.strip_suffix(".seg") {
            if let Ok(n) = num.parse::<u64>() {
                out.push(n);
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

pub(super) enum Read1 {
    Record {
        kind: RecordKind,
        env: Vec<u8>,
        data_offset: u64,
        data_len: u64,
        next: u64,
    },
    End,
    Torn(String),
}

pub(super) fn read_record(r: &mut impl Read, offset: u64, file_len: u64) -> io::Result<Read1> {
    if offset == file_len {
        return Ok(Read1::End);
    }
    if file_len - offset < HEADER_LEN {
        return Ok(Read1::Torn("short header".into()));
    }
    let mut h = [0u8; HEADER_LEN as usize];
    r.read_exact(&mut h)?;
    if &h[0..4] != MAGIC {
        return Ok(Read1::Torn("bad magic".into()));
    }
    let Some(kind) = RecordKind::from_u8(h[4]) else {
        return Ok(Read1::Torn(format!("unknown kind {}", h[4])));
    };
    let env_len = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    let data_len = u64::from_le_bytes([h[12], h[13], h[14], h[15], h[16], h[17], h[18], h[19]]);
    let want = u32::from_le_bytes([h[20], h[21], h[22], h[23]]);
    let body_len = u64::from(env_len).saturating_add(data_len);
    if env_len > MAX_ENVELOPE || body_len > file_len - offset - HEADER_LEN {
        return Ok(Read1::Torn("record longer than the file".into()));
    }
    let mut env = vec![0u8; env_len as usize];
    r.read_exact(&mut env)?;
    // The data is read in chunks only to check the CRC; it stays on disk.
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&[h[4]]);
    hasher.update(&env_len.to_le_bytes());
    hasher.update(&data_len.to_le_bytes());
    hasher.update(&env);
    let mut left = data_len;
    let mut chunk = vec![0u8; 256 * 1024];
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        r.read_exact(&mut chunk[..n])?;
        hasher.update(&chunk[..n]);
        left -= n as u64;
    }
    if hasher.finalize() != want {
        return Ok(Read1::Torn("checksum mismatch".into()));
    }
    Ok(Read1::Record {
        kind,
        env,
        data_offset: offset + HEADER_LEN + u64::from(env_len),
        data_len,
        next: offset + HEADER_LEN + body_len,
    })
}

/// A record that reads right at `offset` of a segment's bytes: its header,
/// its checksum and its envelope (a record whose checksum holds but whose
/// envelope does not parse is of no use to recovery). Its kind and where
/// the next record starts.
pub(super) fn record_at(bytes: &[u8], offset: u64) -> Result<(RecordKind, u64), String> {
    let len = bytes.len() as u64;
    let mut cursor = io::Cursor::new(bytes.get(offset as usize..).unwrap_or_default());
    match read_record(&mut cursor, offset, len) {
        Ok(Read1::Record {
            kind, env, next, ..
        }) => match serde_json::from_slice::<Envelope>(&env) {
            Ok(_) => Ok((kind, next)),
            Err(e) => Err(format!("envelope: {e}")),
        },
        Ok(Read1::Torn(problem)) => Err(problem),
        Ok(Read1::End) => Err("end of file".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// The first offset at or past `from` where a whole record reads right.
/// A record starts with the magic, so only those places are tried.
pub(super) fn next_intact(bytes: &[u8], from: u64) -> Option<u64> {
    let mut at = from;
    loop {
        let found = crate::text::find_bytes(bytes.get(at as usize..)?, MAGIC)?;
        let candidate = at + found as u64;
        if record_at(bytes, candidate).is_ok() {
            return Some(candidate);
        }
        at = candidate + 1;
    }
}

/// Whether the bytes from a bad record to the end of the newest segment
/// can be the trace of a write cut short by a crash: nothing intact after
/// them, and they begin as our writes begin (the magic, or as much of it
/// as reached the disk) or are zeros (blocks allocated, never written).
/// Anything else is damage, or a file that is not a segment, and is not
/// cut off.
pub(super) fn torn_tail(tail: &[u8]) -> Result<(), String> {
    let head = &tail[..tail.len().min(MAGIC.len())];
    if !(MAGIC.starts_with(head) || tail.iter().all(|b| *b == 0)) {
        return Err("the bytes there are not the start of a record of ours".into());
    }
    match next_intact(tail, 1) {
        Some(at) => Err(format!("an intact record follows {at} bytes further on")),
        None => Ok(()),
    }
}

/// The least number the next new segment may take, kept in `spool/` when
/// recovery refuses a damaged segment: the operator moves that file aside,
/// and if it was the newest, the next start would otherwise give its
/// number (or a lower one) to a new segment, so that `queue salvage`
/// could not put the file back before what was written since.
pub(crate) const NEXT_MARK: &str = "next-segment";

/// The prefix of the note recovery leaves in `spool/` when it refuses a
/// damaged segment (`damaged-0000000000000025` for segment 25). While the
/// note is there and its segment is not, the segment has been moved aside
/// and not yet salvaged: no newer segment may be deleted, because the
/// newer ones hold the *removed* and *updated* records of its messages
/// (without them a salvage would put delivered mail back in the queue).
/// A salvage of that number, or the segment back in the spool, ends it;
/// deleting the note gives the segment up.
pub(crate) const DAMAGED_NOTE: &str = "damaged-";

/// The path of the note for segment `n`.
pub(crate) fn damaged_note_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{DAMAGED_NOTE}{n:016}"))
}

/// The segment numbers of the notes in `dir` (none when it cannot be read:
/// the spool then behaves as before the notes).
fn damaged_notes(dir: &Path) -> Vec<u64> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<u64> = rd
        .filter_map(Result::ok)
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix(DAMAGED_NOTE)?
                .parse()
                .ok()
        })
        .collect();
    out.sort_unstable();
    out
}

/// Writes the note for segment `n` durably; a failure is logged (the
/// spool then deletes newer segments as if the file were gone for good).
fn write_damaged_note(dir: &Path, n: u64) {
    let path = damaged_note_path(dir, n);
    let text = format!(
        "Segment {n} ({}) was refused as damaged at {}.\n\
         While it is not in the spool, no newer segment is deleted: they hold what became\n\
         of its messages. `mailward queue salvage FILE` puts its intact records back and\n\
         removes this note. To give the segment up instead, delete this note: its messages\n\
         are then out of the queue for good (see docs/spool-and-delivery.md, Recovery).\n",
        segment_path(dir, n).display(),
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
    let done = crate::files::create(&path, crate::files::PRIVATE_FILE)
        .and_then(|mut f| {
            std::io::Write::write_all(&mut f, text.as_bytes())?;
            f.sync_all()
        })
        .and_then(|()| crate::files::sync_dir(dir));
    if let Err(e) = done {
        tracing::warn!(target: "app", note = %path.display(), error = %e,
            "Cannot note the damaged segment; until it is salvaged, newer segments may be deleted and a salvage may put delivered mail back.");
    }
}

/// Removes the note for segment `n` (it is back, or given up).
pub(crate) fn clear_damaged_note(dir: &Path, n: u64) -> io::Result<()> {
    match std::fs::remove_file(damaged_note_path(dir, n)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => crate::files::sync_dir(dir),
    }
}

/// Replays every segment in order. A torn record is tolerated only at the end
/// of the newest segment, where it is cut off.
pub(crate) fn recover(dir: &Path) -> Result<Recovered, SpoolError> {
    let numbers = list_segments(dir)?;
    let segments: Vec<(u64, PathBuf)> =
        numbers.iter().map(|&n| (n, segment_path(dir, n))).collect();
    match replay(&segments, Replay::Repair) {
        Ok(mut r) => {
            r.next_segment = r.next_segment.max(read_mark(dir));
            for n in damaged_notes(dir) {
                if numbers.binary_search(&n).is_ok() {
                    // Salvaged (or put back whole, and read right).
                    if let Err(e) = clear_damaged_note(dir, n) {
                        tracing::warn!(target: "app", note = %damaged_note_path(dir, n).display(), error = %e,
                            "Cannot remove the note of a damaged segment that is back.");
                    }
                } else {
                    r.missing.push(n);
                }
            }
            // (A few are enough to name; the numbers are dense.)
            const NAMED: usize = 100;
            r.holes = numbers
                .windows(2)
                .flat_map(|w| (w[0] + 1)..w[1])
                .filter(|n| !r.missing.contains(n))
                .take(NAMED)
                .collect();
            Ok(r)
        }
        Err(e) => {
            if let (SpoolError::Corrupt { path, .. }, Some(last)) = (&e, numbers.last()) {
                write_mark(dir, (last + 1).max(read_mark(dir)));
                // A file with no record of ours in it (a stray file, one
                // damaged whole) gives a salvage nothing to put back: no
                // note, so that the spool keeps no segment for it.
                if let Some((n, _)) = segments
                    .iter()
                    .find(|(_, p)| p == path && holds_a_record(p))
                {
                    write_damaged_note(dir, *n);
                }
            }
            Err(e)
        }
    }
}

/// Whether anything in the file at `path` reads as an intact record (when
/// it cannot be read, it is taken to: the note is then written, the safe
/// side).
pub(crate) fn holds_a_record(path: &Path) -> bool {
    std::fs::read(path).map_or(true, |bytes| next_intact(&bytes, 0).is_some())
}

/// The mark, or 0 when there is none (or it cannot be read: the numbers
/// of the segments present still hold).
pub(crate) fn read_mark(dir: &Path) -> u64 {
    std::fs::read_to_string(dir.join(NEXT_MARK))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Writes the mark durably (a new file renamed into place); a failure is
/// logged, and only costs the salvage its place (it then says the number
/// is taken).
fn write_mark(dir: &Path, next: u64) {
    let tmp = dir.join(format!(".{NEXT_MARK}.tmp"));
    let done = crate::files::create(&tmp, crate::files::PRIVATE_FILE)
        .and_then(|mut f| {
            std::io::Write::write_all(&mut f, format!("{next}\n").as_bytes())?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, dir.join(NEXT_MARK)))
        .and_then(|()| crate::files::sync_dir(dir));
    if let Err(e) = done {
        tracing::warn!(target: "app", dir = %dir.display(), error = %e,
            "Cannot keep the next segment number; a salvage may find the damaged segment's number taken.");
    }
}

/// What [`replay`] may change on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replay {
    /// As at start: cut a torn end off the newest segment, make files private.
    Repair,
    /// Look only (the salvage's before and after): a torn end of the newest
    /// segment ends the reading of it, and nothing is written.
    Look,
}

/// Replays `segments` (number and file, oldest first): the last record of
/// each message wins.
pub(crate) fn replay(segments: &[(u64, PathBuf)], mode: Replay) -> Result<Recovered, SpoolError> {
    let mut index = Index::default();
    let mut live: HashMap<QueueId, (u64, Envelope)> = HashMap::new();
    let mut order = 0u64;
    let mut removed = std::collections::HashSet::new();
    let mut orphans = std::collections::BTreeSet::new();
    let last = segments.last().map(|(n, _)| *n);
    for (seg, path) in segments {
        let (seg, path) = (*seg, path.clone());
        let file = File::open(&path).map_err(|e| SpoolError::io(&path, e))?;
        let file_len = file.metadata().map_err(|e| SpoolError::io(&path, e))?.len();
        // Segments written by an older version may be world-readable.
        if mode == Replay::Repair {
            crate::files::set_mode(&path, crate::files::PRIVATE_FILE)
                .map_err(|e| SpoolError::io(&path, e))?;
        }
        let mut r = BufReader::with_capacity(256 * 1024, file);
        let mut offset = 0u64;
        index.live.entry(seg).or_insert(0);
        index.bytes.insert(seg, file_len);
        loop {
            match read_record(&mut r, offset, file_len).map_err(|e| SpoolError::io(&path, e))? {
                Read1::End => break,
                Read1::Torn(problem) => {
                    // In the newest segment, only a tail that a crash can
                    // have left is cut off; damage with intact records
                    // after it (acknowledged mail) is refused as anywhere
                    // else.
                    let not_torn = if Some(seg) == last {
                        let bytes = std::fs::read(&path).map_err(|e| SpoolError::io(&path, e))?;
                        torn_tail(bytes.get(offset as usize..).unwrap_or_default()).err()
                    } else {
                        Some("this is not the newest segment".to_string())
                    };
                    if let Some(why) = not_torn {
                        let problem = if holds_a_record(&path) {
                            format!(
                                "{problem}; {why}, so it is not a torn write: \
                                 to start, move the file aside and keep it (the messages recorded \
                                 only in it are then out of the queue until `mailward queue salvage FILE` \
                                 puts its intact ones back; see docs/spool-and-delivery.md, Recovery)"
                            )
                        } else {
                            format!(
                                "{problem}; {why}, and nothing in the file reads as a record \
                                 (not a segment of mailward's, or damaged whole): to start, move it out \
                                 of the spool (a salvage could put nothing back, so the spool keeps \
                                 no segment for it; any message recorded only in it is lost)"
                            )
                        };
                        return Err(SpoolError::Corrupt {
                            path,
                            offset,
                            problem,
                        });
                    }
                    if mode == Replay::Look {
                        index.bytes.insert(seg, offset);
                        break;
                    }
                    tracing::warn!(target: "app", segment = %path.display(), offset, problem = %problem,
                        "Cutting off a torn record at the end of the spool (a write interrupted by a crash; it was never acknowledged).");
                    let f = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(|e| SpoolError::io(&path, e))?;
                    f.set_len(offset).map_err(|e| SpoolError::io(&path, e))?;
                    f.sync_all().map_err(|e| SpoolError::io(&path, e))?;
                    index.bytes.insert(seg, offset);
                    break;
                }
                Read1::Record {
                    kind,
                    env,
                    data_offset,
                    data_len,
                    next,
                } => {
                    let envelope: Envelope =
                        serde_json::from_slice(&env).map_err(|e| SpoolError::Corrupt {
                            path: path.clone(),
                            offset,
                            problem: format!("envelope: {e}"),
                        })?;
                    let id = envelope.id.clone();
                    match kind {
                        RecordKind::Accepted => {
                            index.insert(
                                id.clone(),
                                Location {
                                    segment: seg,
                                    offset: data_offset,
                                    len: data_len,
                                },
                                env,
                            );
                            let first = live.get(&id).map(|(o, _)| *o).unwrap_or_else(|| {
                                order += 1;
                                order
                            });
                            orphans.remove(&id);
                            live.insert(id, (first, envelope));
                        }
                        RecordKind::Updated => {
                            if let Some(slot) = live.get_mut(&id) {
                                slot.1 = envelope;
                                index.set_envelope(&id, env);
                            } else {
                                orphans.insert(id);
                            }
                        }
                        RecordKind::Removed => {
                            orphans.remove(&id);
                            live.remove(&id);
                            index.remove(&id);
                            if mode == Replay::Look {
                                removed.insert(id);
                            }
                        }
                    }
                    offset = next;
                }
            }
        }
    }
    let mut envelopes: Vec<(u64, Envelope)> = live.into_values().collect();
    envelopes.sort_by_key(|(o, _)| *o);
    Ok(Recovered {
        index,
        envelopes: envelopes.into_iter().map(|(_, e)| e).collect(),
        next_segment: last.map_or(1, |n| n + 1),
        removed,
        orphans: orphans.into_iter().collect(),
        missing: Vec::new(),
        holes: Vec::new(),
    })
}
