//! A classifier model: token counts per class, and the file it is kept in.
//!
//! One format serves the shipped base, the site's own learning (the
//! overlay) and `mailward spam export`/`import`:
//!
//! ```text
//! "MWSPAM\r\n"                      8 bytes, the magic
//! format version        u32 LE     (FORMAT)
//! tokenizer version     u32 LE     (tokens::VERSION)
//! spam messages         u64 LE
//! ham messages          u64 LE
//! token count           u64 LE, then per token: hash u64, spam u32, ham u32
//! learnt count          u64 LE, then per message: digest u64, class u8 (1 spam, 0 ham)
//! CRC-32 of all of the above, u32 LE
//! ```
//!
//! A file is read whole and checked (magic, versions, lengths, checksum)
//! before it is used, so a torn or foreign file is refused, never half
//! used. Writes go to a temporary file, fsync, rename.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"MWSPAM\r\n";
/// Version of the layout above.
pub const FORMAT: u32 = 1;

/// What a trim leaves, in tenths of the maximum.
const TRIM_TO: usize = 9;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a Mailward spam model ({problem})")]
    Invalid { path: PathBuf, problem: String },
}

/// Which class a message was learnt as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Spam,
    Ham,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Spam => "spam",
            Class::Ham => "ham",
        }
    }
}

/// Counts of one token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub spam: u32,
    pub ham: u32,
}

/// Token counts per class, and (for site learning) which messages were
/// learnt, so that a message learnt twice counts once and can be forgotten.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Model {
    pub spam_messages: u64,
    pub ham_messages: u64,
    pub tokens: HashMap<u64, Counts>,
    pub learnt: HashMap<u64, Class>,
}

/// What [`Model::learn`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learnt {
    /// Counted for the first time.
    New,
    /// Already learnt as this class: nothing changed.
    Already,
    /// Learnt before as the other class: moved.
    Moved,
}

impl Learnt {
    pub fn as_str(self) -> &'static str {
        match self {
            Learnt::New => "new",
            Learnt::Already => "already",
            Learnt::Moved => "moved",
        }
    }
}

impl Model {
    /// Learns one message (its digest and tokens) as `class`.
    pub fn learn(&mut self, digest: u64, tokens: &[u64], class: Class) -> Learnt {
        let outcome = match self.learnt.get(&digest) {
            Some(c) if *c == class => return Learnt::Already,
            Some(&other) => {
                self.count(tokens, other, false);
                Learnt::Moved
            }
            None => Learnt::New,
        };
        self.count(tokens, class, true);
        self.learnt.insert(digest, class);
        outcome
    }

    /// How many messages both this model and `other` learnt.
    pub fn shared_with(&self, other: &Model) -> usize {
        other
            .learnt
            .keys()
            .filter(|d| self.learnt.contains_key(d))
            .count()
    }

    /// Forgets one message; false when it was not learnt.
    pub fn forget(&mut self, digest: u64, tokens: &[u64]) -> bool {
        match self.learnt.remove(&digest) {
            Some(class) => {
                self.count(tokens, class, false);
                true
            }
            None => false,
        }
    }

    /// Adds another model's counts and learnt messages to this one (the
    /// caller makes sure no message is in both).
    pub fn absorb(&mut self, other: &Model) {
        for (t, c) in &other.tokens {
            let s = self.tokens.entry(*t).or_default();
            s.spam = s.spam.saturating_add(c.spam);
            s.ham = s.ham.saturating_add(c.ham);
        }
        self.spam_messages = self.spam_messages.saturating_add(other.spam_messages);
        self.ham_messages = self.ham_messages.saturating_add(other.ham_messages);
        self.learnt
            .extend(other.learnt.iter().map(|(d, c)| (*d, *c)));
    }

    /// Keeps the site's learning bounded: past `max` tokens, the rarest are
    /// forgotten until [`TRIM_TO`] of `max` remain (the fewest spam and ham
    /// together first, ties by hash, so two gateways trimming the same
    /// model agree). Each message adds new tokens, about 140 of them in the
    /// SpamAssassin corpus, so autolearn on a busy gateway would otherwise
    /// grow the model (rewritten whole at every fold of its journal, and
    /// held whole in every gateway's memory) without end. A token seen once or twice
    /// says little: the classifier weighs a token by how often it was seen
    /// (SpamAssassin expires its Bayes tokens by age for the same reason).
    /// The message counts and the learnt digests stay (those have their
    /// own bound, [`Model::trim_learnt`]), so a forgotten message's tokens
    /// that were trimmed are simply not there to take back. Returns how
    /// many tokens were forgotten.
    pub fn trim(&mut self, max: usize) -> usize {
        trim_rarest(&mut self.tokens, max, |c| {
            u64::from(c.spam) + u64::from(c.ham)
        })
    }

    /// Keeps at most `max` learnt messages' identities (down to nine
    /// tenths, the lowest digests first: the digests carry no age, and a
    /// hash picks as fairly as anything would). A message whose identity
    /// is gone still counts in the tokens; learnt again, it would count
    /// twice, and `spam forget` no longer finds it. Returns how many were
    /// let go.
    pub fn trim_learnt(&mut self, max: usize) -> usize {
        trim_rarest(&mut self.learnt, max, |_| 0)
    }

    pub(super) fn count(&mut self, tokens: &[u64], class: Class, add: bool) {
        let step = |n: &mut u32| {
            *n = if add {
                n.saturating_add(1)
            } else {
                n.saturating_sub(1)
            };
        };
        let total = match class {
            Class::Spam => &mut self.spam_messages,
            Class::Ham => &mut self.ham_messages,
        };
        *total = if add {
            total.saturating_add(1)
        } else {
            total.saturating_sub(1)
        };
        for t in tokens {
            let c = self.tokens.entry(*t).or_default();
            match class {
                Class::Spam => step(&mut c.spam),
                Class::Ham => step(&mut c.ham),
            }
            if c.spam == 0 && c.ham == 0 {
                self.tokens.remove(t);
            }
        }
    }

    /// The model as file bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(48 + self.tokens.len() * 16 + self.learnt.len() * 9);
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&FORMAT.to_le_bytes());
        b.extend_from_slice(&super::tokens::VERSION.to_le_bytes());
        b.extend_from_slice(&self.spam_messages.to_le_bytes());
        b.extend_from_slice(&self.ham_messages.to_le_bytes());
        // Sorted, so that the same model gives the same bytes.
        let mut tokens: Vec<_> = self.tokens.iter().collect();
        tokens.sort_unstable_by_key(|(h, _)| **h);
        b.extend_from_slice(&(tokens.len() as u64).to_le_bytes());
        for (h, c) in tokens {
            b.extend_from_slice(&h.to_le_bytes());
            b.extend_from_slice(&c.spam.to_le_bytes());
            b.extend_from_slice(&c.ham.to_le_bytes());
        }
        let mut learnt: Vec<_> = self.learnt.iter().collect();
        learnt.sort_unstable_by_key(|(d, _)| **d);
        b.extend_from_slice(&(learnt.len() as u64).to_le_bytes());
        for (d, c) in learnt {
            b.extend_from_slice(&d.to_le_bytes());
            b.push(u8::from(*c == Class::Spam));
        }
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// Reads file bytes, checking everything before anything is used.
    pub fn from_bytes(b: &[u8], path: &Path) -> Result<Model, ModelError> {
        let bad = |problem: &str| ModelError::Invalid {
            path: path.to_path_buf(),
            problem: problem.to_string(),
        };
        if b.len() < 8 + 4 + 4 + 8 + 8 + 8 + 8 + 4 || &b[..8] != MAGIC {
            return Err(bad("no model header"));
        }
        let (body, crc) = b.split_at(b.len() - 4);
        let crc = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
        if crc32fast::hash(body) != crc {
            return Err(bad("checksum mismatch: the file is damaged or cut short"));
        }
        let mut r = Reader { b: body, at: 8 };
        let format = r.u32().ok_or_else(|| bad("cut short"))?;
        if format != FORMAT {
            return Err(bad(&format!(
                "format version {format}, this Mailward reads {FORMAT}"
            )));
        }
        let tv = r.u32().ok_or_else(|| bad("cut short"))?;
        if tv != super::tokens::VERSION {
            return Err(bad(&format!(
                "tokenizer version {tv}, this Mailward tokenizes with {}",
                super::tokens::VERSION
            )));
        }
        let spam_messages = r.u64().ok_or_else(|| bad("cut short"))?;
        let ham_messages = r.u64().ok_or_else(|| bad("cut short"))?;
        let n = r.u64().ok_or_else(|| bad("cut short"))?;
        if n > (body.len() as u64) / 16 {
            return Err(bad("token count beyond the file's size"));
        }
        let mut tokens = HashMap::with_capacity(n as usize);
        for _ in 0..n {
            let h = r.u64().ok_or_else(|| bad("cut short in the tokens"))?;
            let spam = r.u32().ok_or_else(|| bad("cut short in the tokens"))?;
            let ham = r.u32().ok_or_else(|| bad("cut short in the tokens"))?;
            // A model written by Mailward lists each token once: a second
            // entry would be silently summed or lost, so the file is foreign.
            if tokens.insert(h, Counts { spam, ham }).is_some() {
                return Err(bad("a token listed twice"));
            }
        }
        let n = r.u64().ok_or_else(|| bad("cut short"))?;
        if n > (body.len() as u64) / 9 {
            return Err(bad("learnt count beyond the file's size"));
        }
        let mut learnt = HashMap::with_capacity(n as usize);
        for _ in 0..n {
            let d = r
                .u64()
                .ok_or_else(|| bad("cut short in the learnt messages"))?;
            let c = match r
                .u8()
                .ok_or_else(|| bad("cut short in the learnt messages"))?
            {
                1 => Class::Spam,
                0 => Class::Ham,
                _ => return Err(bad("a learnt message of no class")),
            };
            if learnt.insert(d, c).is_some() {
                return Err(bad("a learnt message listed twice"));
            }
        }
        if r.at != body.len() {
            return Err(bad("bytes after the end"));
        }
        Ok(Model {
            spam_messages,
            ham_messages,
            tokens,
            learnt,
        })
    }

    /// Reads a model file; Ok(None) when there is none.
    pub fn read(path: &Path) -> Result<Option<Model>, ModelError> {
        match std::fs::read(path) {
            Ok(b) => Model::from_bytes(&b, path).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ModelError::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Writes the model durably: a temporary file, fsync, rename, and the
    /// directory synced.
    pub fn write(&self, path: &Path) -> Result<(), ModelError> {
        let io = |source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io)?;
        let tmp = path.with_extension("tmp");
        {
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
            f.write_all(&self.to_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, path).map_err(io)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let s = self.b.get(self.at..self.at + N)?;
        self.at += N;
        s.try_into().ok()
    }
    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|a| a[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.take::<4>().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take::<8>().map(u64::from_le_bytes)
    }
}

/// Removes the entries of `map` with the lowest (`weight`, key) until nine
/// tenths of `max` remain, when it holds more than `max`.
fn trim_rarest<V>(map: &mut HashMap<u64, V>, max: usize, weight: impl Fn(&V) -> u64) -> usize {
    if map.len() <= max {
        return 0;
    }
    let keep = max.saturating_mul(TRIM_TO) / 10;
    let excess = map.len() - keep;
    let mut order: Vec<(u64, u64)> = map.iter().map(|(k, v)| (weight(v), *k)).collect();
    if excess < order.len() {
        // The `excess` lowest before it, in no particular order.
        order.select_nth_unstable(excess);
    }
    for (_, k) in &order[..excess] {
        map.remove(k);
    }
    excess
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How many messages two models both learnt (an import's overlap).
    #[test]
    fn shared_lessons_are_counted_by_message() {
        let mut site = Model::default();
        site.learn(1, &[10], Class::Spam);
        site.learn(2, &[11], Class::Spam);
        let mut other = Model::default();
        other.learn(2, &[11], Class::Ham);
        other.learn(3, &[12], Class::Ham);
        assert_eq!(site.shared_with(&other), 1);
    }

    #[test]
    fn learning_twice_counts_once_moves_between_classes_and_forgets() {
        let mut m = Model::default();
        assert_eq!(m.learn(1, &[10, 11], Class::Spam), Learnt::New);
        assert_eq!(m.learn(1, &[10, 11], Class::Spam), Learnt::Already);
        assert_eq!(m.spam_messages, 1);
        assert_eq!(m.tokens[&10], Counts { spam: 1, ham: 0 });
        assert_eq!(m.learn(1, &[10, 11], Class::Ham), Learnt::Moved);
        assert_eq!((m.spam_messages, m.ham_messages), (0, 1));
        assert_eq!(m.tokens[&10], Counts { spam: 0, ham: 1 });
        assert!(m.forget(1, &[10, 11]));
        assert!(!m.forget(1, &[10, 11]));
        assert_eq!(m, Model::default());
    }

    #[test]
    fn trimming_forgets_the_rarest_tokens_and_keeps_the_counts() {
        let mut m = Model::default();
        // Token t is seen in t messages (1 to 100), each its own message.
        let mut digest = 0;
        for t in 1..=100u64 {
            for _ in 0..t {
                digest += 1;
                m.learn(digest, &[t], Class::Spam);
            }
        }
        let before = m.clone();
        assert_eq!(m.trim(100), 0, "at the maximum nothing goes");
        assert_eq!(m, before);
        assert_eq!(m.trim(50), 55, "past it, down to nine tenths");
        assert_eq!(m.tokens.len(), 45);
        assert!(m.tokens.keys().all(|t| *t > 55), "the rarest went first");
        assert_eq!(m.tokens[&100], Counts { spam: 100, ham: 0 });
        assert_eq!(m.spam_messages, before.spam_messages);
        assert_eq!(m.learnt, before.learnt);
        // Forgetting a message whose token was trimmed takes back the rest.
        assert!(m.forget(1, &[1]));
        assert_eq!(m.spam_messages, before.spam_messages - 1);
        assert!(!m.tokens.contains_key(&1));
        // Ties go by hash, the same on every gateway.
        let mut a = Model::default();
        for t in 0..20u64 {
            a.learn(t, &[t], Class::Ham);
        }
        let mut b = a.clone();
        a.trim(10);
        b.trim(10);
        assert_eq!(a, b);
        assert!(a.tokens.keys().all(|t| *t >= 11), "{:?}", a.tokens.keys());
        // Identities have a bound of their own; the counts stay.
        let counts = a.tokens.clone();
        assert_eq!(a.trim_learnt(20), 0);
        assert_eq!(a.trim_learnt(10), 11);
        assert_eq!(a.learnt.len(), 9);
        assert!(a.learnt.keys().all(|d| *d >= 11));
        assert_eq!((a.tokens.clone(), a.ham_messages), (counts, 20));
        assert!(!a.forget(3, &[3]), "an identity let go is not found");
    }

    #[test]
    fn files_round_trip_and_damage_is_refused() {
        let mut m = Model::default();
        m.learn(7, &[1, 2, 3], Class::Spam);
        m.learn(8, &[2, 3, 4], Class::Ham);
        let b = m.to_bytes();
        let p = Path::new("t.model");
        assert_eq!(Model::from_bytes(&b, p).unwrap(), m);
        for cut in [0, 9, b.len() / 2, b.len() - 1] {
            assert!(Model::from_bytes(&b[..cut], p).is_err(), "cut at {cut}");
        }
        let mut flipped = b.clone();
        flipped[40] ^= 1;
        let e = Model::from_bytes(&flipped, p).unwrap_err().to_string();
        assert!(e.contains("checksum"), "{e}");
    }

    #[test]
    fn a_file_listing_a_token_twice_is_refused() {
        // One token, written twice by hand, with a valid checksum.
        let mut b = MAGIC.to_vec();
        b.extend(FORMAT.to_le_bytes());
        b.extend(super::super::tokens::VERSION.to_le_bytes());
        b.extend(1u64.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        b.extend(2u64.to_le_bytes());
        for _ in 0..2 {
            b.extend(42u64.to_le_bytes());
            b.extend(1u32.to_le_bytes());
            b.extend(0u32.to_le_bytes());
        }
        b.extend(0u64.to_le_bytes());
        let crc = crc32fast::hash(&b);
        b.extend(crc.to_le_bytes());
        let e = Model::from_bytes(&b, Path::new("t.model"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("a token listed twice"), "{e}");
    }
}
