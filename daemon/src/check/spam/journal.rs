//! The site's learning as a snapshot and a journal of changes since it.
//!
//! Rewriting the whole model on every change (up to ~32 MB at the default
//! `max_tokens`) and having every gateway read it whole again made each
//! autolearn batch cost a full write, an fsync and one full read per
//! gateway. Now a change appends what it did to the journal (a few hundred
//! bytes a message), readers apply only the records they have not seen,
//! and the snapshot is rewritten (compacted) only when the journal has
//! grown to a quarter of it, when a change passes the limits (the trim is
//! whole-model), or for an import.
//!
//! A record is an effect, not an intent: "these tokens, taken from class
//! A (or none) and given to class B (or none)", as the writer's
//! [`Model::learn`] or [`Model::forget`] resolved it on the model of the
//! moment. Applying it is the same arithmetic on every reader, so every
//! gateway arrives at the writer's model.
//!
//! File layout (`site.journal` beside `site.model`):
//!
//! ```text
//! "MWSPJRN\n"             8 bytes, the magic
//! format version   u32 LE  (FORMAT)
//! tokenizer version u32 LE
//! snapshot length  u64 LE  the site.model it follows (0: none)
//! snapshot CRC-32  u32 LE  that file's last four bytes
//! journal id       u64 LE  random, new with each journal
//! then records:    length u32 LE, payload, CRC-32 of the payload u32 LE
//! payload:         digest u64, from u8, to u8 (0 none, 1 spam, 2 ham),
//!                  then the tokens, u64 LE each
//! ```
//!
//! The id tells a reader that the journal it follows is still the one it
//! read: a journal removed and begun again (the learning reset by hand and
//! learnt anew between two looks) has another id, and the reader reads it
//! from its start instead of going on at its old offset.
//!
//! A journal whose header names another snapshot is stale (a compaction
//! replaced the snapshot and was cut short before the journal went) and
//! is ignored. A record cut short or damaged ends the journal there: it
//! was being appended when the writer stopped, and nothing after it was
//! acknowledged. The next writer cuts it off before appending.
//!
//! In Redis the same records are the elements of one list, and a random
//! generation, new with each snapshot (and set by the first change to a
//! store that has none), says which snapshot they follow.

use super::model::{Class, Model};

const MAGIC: &[u8; 8] = b"MWSPJRN\n";
/// Version of the layout above.
pub const FORMAT: u32 = 1;
/// Bytes of the file header.
pub const HEADER: usize = 8 + 4 + 4 + 8 + 4 + 8;

/// One learnt, moved or forgotten message, as it changed the counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub digest: u64,
    /// The class its tokens were taken from (a move or a forget).
    pub from: Option<Class>,
    /// The class its tokens were given to (a learn or a move).
    pub to: Option<Class>,
    pub tokens: Vec<u64>,
}

fn class_byte(c: Option<Class>) -> u8 {
    match c {
        None => 0,
        Some(Class::Spam) => 1,
        Some(Class::Ham) => 2,
    }
}

fn byte_class(b: u8) -> Option<Option<Class>> {
    match b {
        0 => Some(None),
        1 => Some(Some(Class::Spam)),
        2 => Some(Some(Class::Ham)),
        _ => None,
    }
}

impl Change {
    /// The record: length, payload, CRC-32.
    pub fn to_record(&self) -> Vec<u8> {
        let len = 10 + self.tokens.len() * 8;
        let mut b = Vec::with_capacity(len + 8);
        b.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
        b.extend_from_slice(&self.digest.to_le_bytes());
        b.push(class_byte(self.from));
        b.push(class_byte(self.to));
        for t in &self.tokens {
            b.extend_from_slice(&t.to_le_bytes());
        }
        let crc = crc32fast::hash(&b[4..]);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// The first record of `b` and its length in bytes; None when `b`
    /// does not start with a whole, intact record.
    pub fn from_record(b: &[u8]) -> Option<(Change, usize)> {
        let len = usize::try_from(u32::from_le_bytes(b.get(..4)?.try_into().ok()?)).ok()?;
        if len < 10 || (len - 10) % 8 != 0 {
            return None;
        }
        let payload = b.get(4..4 + len)?;
        let crc = u32::from_le_bytes(b.get(4 + len..8 + len)?.try_into().ok()?);
        if crc32fast::hash(payload) != crc {
            return None;
        }
        let digest = u64::from_le_bytes(payload[..8].try_into().ok()?);
        let from = byte_class(payload[8])?;
        let to = byte_class(payload[9])?;
        let tokens = payload[10..]
            .chunks_exact(8)
            .filter_map(|c| c.try_into().ok().map(u64::from_le_bytes))
            .collect();
        Some((
            Change {
                digest,
                from,
                to,
                tokens,
            },
            8 + len,
        ))
    }
}

impl Model {
    /// Applies a journal record: what [`Model::learn`] or
    /// [`Model::forget`] did on the writer's copy, done on this one.
    pub fn apply(&mut self, c: &Change) {
        if let Some(from) = c.from {
            self.count(&c.tokens, from, false);
        }
        match c.to {
            Some(to) => {
                self.count(&c.tokens, to, true);
                self.learnt.insert(c.digest, to);
            }
            None => {
                self.learnt.remove(&c.digest);
            }
        }
    }
}

/// Which snapshot a file journal follows: its length and CRC-32 trailer
/// (0, 0 when there is no snapshot).
pub type Follows = (u64, u32);

/// The snapshot bytes' identity for a journal header.
pub fn follows(snapshot: Option<&[u8]>) -> Follows {
    match snapshot {
        Some(b) if b.len() >= 4 => {
            let t = &b[b.len() - 4..];
            (b.len() as u64, u32::from_le_bytes([t[0], t[1], t[2], t[3]]))
        }
        _ => (0, 0),
    }
}

/// A file journal's header for the snapshot it follows, with its id.
pub fn header(of: Follows, id: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(HEADER);
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&FORMAT.to_le_bytes());
    b.extend_from_slice(&super::tokens::VERSION.to_le_bytes());
    b.extend_from_slice(&of.0.to_le_bytes());
    b.extend_from_slice(&of.1.to_le_bytes());
    b.extend_from_slice(&id.to_le_bytes());
    b
}

/// The id of the journal whose bytes start with `b`, when it is a journal
/// this Mailward reads that follows snapshot `of`.
pub fn id_for(b: &[u8], of: Follows) -> Option<u64> {
    let head = b.get(..HEADER)?;
    let id = u64::from_le_bytes(head[HEADER - 8..].try_into().ok()?);
    (head[..HEADER - 8] == header(of, id)[..HEADER - 8] && id != 0).then_some(id)
}

/// Whether file journal bytes `b` are damaged at their start or not a
/// journal of this Mailward (its magic, layout and tokenizer), whichever
/// snapshot they follow: unlike a stale journal, such a file may hold
/// learning that no reader counts, so it is kept aside, never overwritten
/// (walkAW F24). Fewer bytes than a header are a new journal cut short
/// before any record was acknowledged.
pub fn foreign(b: &[u8]) -> bool {
    const KIND: usize = 8 + 4 + 4;
    b.len() >= HEADER && b[..KIND] != header((0, 0), 1)[..KIND]
}

/// A new journal id or Redis generation: random, never 0 (0 is "none").
pub fn new_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    h.write_u32(std::process::id());
    h.finish() | 1
}

/// What a file journal holds for a snapshot.
#[derive(Debug, Default)]
pub struct Read {
    pub changes: Vec<Change>,
    /// Bytes up to the end of the last intact record (the header
    /// included); 0 when the journal does not follow this snapshot.
    pub end: u64,
    /// The journal's id (0 when it does not follow this snapshot).
    pub id: u64,
    /// The journal's length: past `end` are bytes no reader counts (a
    /// record cut short or damaged and what follows it, or a whole stale
    /// journal).
    pub len: u64,
}

/// The records of file journal bytes `b` from byte `from` on (the header
/// when 0) that follow snapshot `of`. A stale or foreign journal reads as
/// empty with `end` 0; reading stops at the first record cut short.
pub fn read(b: &[u8], of: Follows, from: u64) -> Read {
    let Some(id) = id_for(b, of) else {
        return Read {
            len: b.len() as u64,
            ..Read::default()
        };
    };
    let at = usize::try_from(from).unwrap_or(usize::MAX).max(HEADER);
    let (changes, n) = records(b.get(at..).unwrap_or_default());
    Read {
        changes,
        end: (at.min(b.len()) + n) as u64,
        id,
        len: b.len() as u64,
    }
}

/// The whole, intact records at the start of `b`, and their length in
/// bytes.
pub fn records(b: &[u8]) -> (Vec<Change>, usize) {
    let mut at = 0;
    let mut changes = Vec::new();
    while let Some((c, n)) = b.get(at..).and_then(Change::from_record) {
        changes.push(c);
        at += n;
    }
    (changes, at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn learnt(d: u64, tokens: &[u64], class: Class) -> Change {
        Change {
            digest: d,
            from: None,
            to: Some(class),
            tokens: tokens.to_vec(),
        }
    }

    #[test]
    fn records_round_trip_and_a_torn_one_ends_the_journal() {
        let of = follows(Some(b"snapshot-bytes-with-crc!"));
        let a = learnt(1, &[10, 11, 12], Class::Spam);
        let b = Change {
            digest: 1,
            from: Some(Class::Spam),
            to: Some(Class::Ham),
            tokens: vec![10, 11, 12],
        };
        let mut file = header(of, new_id());
        file.extend(a.to_record());
        let after_a = file.len() as u64;
        file.extend(b.to_record());
        let r = read(&file, of, 0);
        assert_eq!(r.changes, vec![a.clone(), b.clone()]);
        assert_eq!(r.end, file.len() as u64);
        // From where a reader stopped, only what came after.
        assert_eq!(read(&file, of, after_a).changes, vec![b.clone()]);
        // Cut anywhere inside the second record: the first one stays.
        for cut in after_a as usize..file.len() {
            let r = read(&file[..cut], of, 0);
            assert_eq!((r.changes.len(), r.end), (1, after_a), "cut at {cut}");
        }
        // A flipped bit in the second record ends the journal before it.
        let mut flipped = file.clone();
        let last = flipped.len() - 6;
        flipped[last] ^= 1;
        assert_eq!(read(&flipped, of, 0).changes, vec![a]);
        // A journal of another snapshot is stale: nothing of it counts.
        let r = read(&file, follows(Some(b"another snapshot")), 0);
        assert_eq!((r.changes.len(), r.end), (0, 0));
    }

    #[test]
    fn applying_what_learn_and_forget_did_gives_the_writers_model() {
        let mut writer = Model::default();
        let mut reader = Model::default();
        let mut journal = Vec::new();
        let steps: [(u64, &[u64], Option<Class>); 5] = [
            (1, &[1, 2, 3], Some(Class::Spam)),
            (2, &[2, 3, 4], Some(Class::Ham)),
            (1, &[1, 2, 3], Some(Class::Ham)),
            (2, &[2, 3, 4], None),
            (3, &[9], Some(Class::Spam)),
        ];
        for (d, tokens, class) in steps {
            let from = writer.learnt.get(&d).copied();
            match class {
                Some(c) => {
                    writer.learn(d, tokens, c);
                }
                None => {
                    writer.forget(d, tokens);
                }
            }
            journal.push(Change {
                digest: d,
                from,
                to: class,
                tokens: tokens.to_vec(),
            });
        }
        for c in &journal {
            reader.apply(c);
        }
        assert_eq!(reader, writer);
        assert_eq!((reader.spam_messages, reader.ham_messages), (1, 1));
    }

    #[test]
    fn hostile_records_are_refused_not_trusted() {
        // A length that is not whole tokens, one past the bytes, a class
        // byte of no class.
        let mut r = learnt(5, &[1], Class::Spam).to_record();
        assert!(Change::from_record(&r).is_some());
        r[0] = 11;
        assert!(Change::from_record(&r).is_none());
        let mut r = learnt(5, &[1], Class::Spam).to_record();
        r[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Change::from_record(&r).is_none());
        let mut c = learnt(5, &[1], Class::Spam).to_record();
        c[13] = 7;
        let crc = crc32fast::hash(&c[4..c.len() - 4]);
        let n = c.len();
        c[n - 4..].copy_from_slice(&crc.to_le_bytes());
        assert!(Change::from_record(&c).is_none());
    }
}
