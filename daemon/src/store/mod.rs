//! The message stores: quarantine and archive. Each keeps whole messages
//! with what Mailward knew about them, for an administrator to list, read,
//! release or send on, and remove; old entries expire by age and by the
//! store's total size, the oldest first.
//!
//! An entry is two files in the store's directory: `ID.eml` (the message as
//! received, before any part edit) and `ID.json` (its [`Entry`]). Both are
//! written to a temporary name, flushed, and renamed, and the directory is
//! flushed: an entry exists whole or not at all, and one written again
//! under the same ID (the same work done again after a crash) replaces
//! itself instead of adding a second. Directories are 0700, files 0600.
//!
//! Stores live on the local disk under `data_dir` (`quarantine/`,
//! `archive/incoming/`, `archive/outgoing/`). DESIGN 9 names object storage
//! for sites whose quarantine outgrows one host; that is not built yet.

use crate::config::Config;
use crate::files;
use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: no such entry (see `mailward quarantine list` or `mailward archive list`)")]
    NotFound(String),
    #[error("`{0}` is not an entry ID (a queue ID, maybe with a .N suffix)")]
    BadId(String),
    /// A message's queue ID where its entries have a .N suffix (one per
    /// group): notices and logs give the queue ID.
    #[error("{id} is the queue ID of {what} entries {entries}: give one of them")]
    QueueIdOfEntries {
        id: String,
        what: &'static str,
        entries: String,
    },
    #[error("{path}: unreadable entry: {problem}")]
    Corrupt { path: PathBuf, problem: String },
    #[error("the store task failed: {0}")]
    Task(String),
}

fn io(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Which archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// A copy of every accepted message, as received.
    Incoming,
    /// A copy of what was delivered, as sent.
    Outgoing,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Incoming => "incoming",
            Direction::Outgoing => "outgoing",
        }
    }
}

/// What a store keeps about a message beside its bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryMeta {
    pub queue_id: String,
    /// Unix time of the 250.
    pub received: i64,
    pub sender: String,
    pub recipients: Vec<String>,
    pub client_ip: String,
    pub helo: String,
    /// "av/infected", "as/clean", ...
    pub statuses: Vec<String>,
    /// One line per finding.
    pub findings: Vec<String>,
    /// The policy group ("" = the default group).
    pub group: String,
    /// Why the copy was kept: the status, or "incoming"/"outgoing".
    pub reason: String,
    /// Octets as received.
    pub size: u64,
}

/// A release of a quarantined message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Released {
    pub at: i64,
    /// The queue ID it was queued under.
    pub queue_id: String,
    pub to: Vec<String>,
}

/// One entry as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub id: String,
    /// Unix time it was stored.
    pub stored: i64,
    #[serde(flatten)]
    pub meta: EntryMeta,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub released: Vec<Released>,
}

/// An entry whose description cannot be read ([`unreadable_entry`]), and
/// why.
pub type Unreadable = (Entry, String);

/// What is known of entry `id` of the store in `dir` whose description
/// cannot be read: its ID, when its description was written (as
/// `stored`), the size of its message and `unreadable` as its reason.
pub fn unreadable_entry(dir: &Path, id: &str) -> Entry {
    let stored = std::fs::metadata(dir.join(format!("{id}.json")))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let size = std::fs::metadata(dir.join(format!("{id}.eml"))).map_or(0, |m| m.len());
    Entry {
        id: id.to_string(),
        stored,
        meta: EntryMeta {
            reason: "unreadable".to_string(),
            size,
            ..EntryMeta::default()
        },
        released: Vec::new(),
    }
}

/// Whether `id` may name an entry (also keeps paths inside the store).
fn valid_id(id: &str) -> bool {
    crate::envelope::QueueId::is_valid(id)
}

/// One store: a directory of entries, with its retention.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    /// "quarantine", "archive incoming", ...
    what: &'static str,
    /// `max_age` in seconds and `max_size` in octets: a reload sets them
    /// ([`Stores::set_retention`]).
    max_age: AtomicU64,
    max_size: AtomicU64,
    /// (entries, octets of their messages), kept for the statistics.
    totals: Mutex<(u64, u64)>,
    /// One writer at a time (rename and expiry on the same directory).
    write: Mutex<()>,
    /// Its writes failing: from the first failure after a write that
    /// succeeded (or the start) until the next one that succeeds.
    failing: Mutex<Option<WriteFailing>>,
    /// Where a failed write is counted (mailward_store_write_errors_total,
    /// mwStoreWriteErrorsTable): set once by the gateway.
    stats: CountedIn,
    /// The entries found unreadable and said so in the log: each is
    /// logged once, not at every listing and every minute's expiry pass.
    said_unreadable: Mutex<std::collections::HashSet<String>>,
    /// One release or send again at a time: the look at what an entry
    /// was sent to before and the note of the new send are one step, or
    /// two administrators on one ticket both deliver it (walkBQ F1).
    pub(crate) sends: tokio::sync::Mutex<()>,
}

/// The statistics a store counts its failed writes in (set once).
#[derive(Default)]
struct CountedIn(std::sync::OnceLock<std::sync::Arc<mailward_metrics::Stats>>);

impl std::fmt::Debug for CountedIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "counted"
        } else {
            "not counted"
        })
    }
}

/// A store whose writes fail (a full or read-only file system, a
/// directory the user may not write to): `mailward status` says it until
/// a write succeeds again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteFailing {
    /// "quarantine", "archive incoming", "archive outgoing".
    pub store: String,
    /// The store's directory.
    pub dir: PathBuf,
    /// Unix time of the first failure since the last write that succeeded.
    pub since: i64,
    /// Unix time of the last failure.
    pub last_at: i64,
    /// Failures since `since`.
    pub failures: u64,
    /// The last failure's error.
    pub error: String,
}

impl WriteFailing {
    /// The store as a sentence names it: "quarantine", "incoming
    /// archive", "outgoing archive".
    pub fn name(&self) -> &str {
        store_name(&self.store)
    }
}

/// A store's name in sentences ("incoming archive") from its key in
/// [`WriteFailing::store`] ("archive incoming").
pub fn store_name(store: &str) -> &str {
    match store {
        "archive incoming" => "incoming archive",
        "archive outgoing" => "outgoing archive",
        other => other,
    }
}

impl Store {
    /// Opens (creating) the store in `dir` and counts what is there.
    pub fn open(
        dir: &Path,
        what: &'static str,
        max_age: Duration,
        max_size: u64,
    ) -> Result<Store, StoreError> {
        files::ensure_dir(dir, files::PRIVATE_DIR).map_err(|e| io(dir, e))?;
        let store = Store {
            dir: dir.to_path_buf(),
            what,
            max_age: AtomicU64::new(max_age.as_secs()),
            max_size: AtomicU64::new(max_size),
            totals: Mutex::new((0, 0)),
            write: Mutex::new(()),
            failing: Mutex::new(None),
            stats: CountedIn::default(),
            said_unreadable: Mutex::new(std::collections::HashSet::new()),
            sends: tokio::sync::Mutex::new(()),
        };
        store.complete_interrupted();
        let entries = store.list()?;
        let bytes = entries.iter().map(|e| e.meta.size).sum();
        if let Ok(mut t) = store.totals.lock() {
            *t = (entries.len() as u64, bytes);
        }
        Ok(store)
    }

    /// At open (before any writer): what a stop in the middle of
    /// [`Store::put_blocking`] left. A message without its description
    /// (`ID.eml` alone) was neither listed nor expired (walkF): it gets a
    /// description saying so, and is listed, counted and expired like any
    /// entry (`quarantine release --to` sends it on, since its recipients
    /// are unknown). Temporary files of an unfinished write are removed.
    fn complete_interrupted(&self) {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                if let Err(err) = std::fs::remove_file(e.path()) {
                    tracing::warn!(target: "backup", store = self.what, file = %e.path().display(),
                        error = %err, "Cannot remove the temporary file of an unfinished store write.");
                }
                continue;
            }
            let Some(id) = name.strip_suffix(".eml") else {
                continue;
            };
            if !valid_id(id) || self.path(id, "json").exists() {
                continue;
            }
            let meta = e.metadata().ok();
            let stored = meta
                .as_ref()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or_else(|| chrono::Utc::now().timestamp(), |d| d.as_secs() as i64);
            let size = meta.map_or(0, |m| m.len());
            let entry = Entry {
                id: id.to_string(),
                stored,
                meta: EntryMeta {
                    queue_id: id.split('.').next().unwrap_or(id).to_string(),
                    received: stored,
                    reason: INTERRUPTED.to_string(),
                    size,
                    ..EntryMeta::default()
                },
                released: Vec::new(),
            };
            let written = serde_json::to_vec_pretty(&entry)
                .map_err(|e| io(&self.path(id, "json"), std::io::Error::other(e)))
                .and_then(|json| write_durably(&self.path(id, "json"), &json));
            match written {
                Ok(()) => tracing::warn!(target: "backup", store = self.what, id,
                    "A message stored when the gateway stopped had no description; it is listed as \"interrupted\", with no sender, recipients or statuses."),
                Err(err) => tracing::warn!(target: "backup", store = self.what, id, error = %err,
                    "A message stored when the gateway stopped has no description and cannot get one: it is not listed."),
            }
        }
        let _ = files::sync_dir(&self.dir);
    }

    fn path(&self, id: &str, ext: &str) -> PathBuf {
        self.dir.join(format!("{id}.{ext}"))
    }

    /// (entries, octets) now.
    pub fn totals(&self) -> (u64, u64) {
        self.totals.lock().map(|t| *t).unwrap_or((0, 0))
    }

    /// Writes one entry durably (blocking: call from a blocking context);
    /// returns the octets stored. A write that fails is counted and kept
    /// as the store's [`WriteFailing`] until one succeeds; the caller logs
    /// what becomes of the message.
    pub fn put_blocking(
        &self,
        id: &str,
        bytes: &[u8],
        meta: &EntryMeta,
    ) -> Result<u64, StoreError> {
        if !valid_id(id) {
            return Err(StoreError::BadId(id.to_string()));
        }
        let written = self.write_entry(id, bytes, meta);
        let now = chrono::Utc::now().timestamp();
        if let Ok(mut failing) = self.failing.lock() {
            match &written {
                Ok(_) => {
                    // Said once, as the failure was (walkAM 5): without it
                    // the log and the NMS keep the fault open for good.
                    if let Some(was) = failing.take() {
                        let name = was.name().to_string();
                        let since = chrono::DateTime::from_timestamp(was.since, 0)
                            .map(|t| t.to_rfc3339())
                            .unwrap_or_default();
                        if self.what == "archive outgoing" {
                            tracing::info!(target: "delivery", store = %name, failed_copies = was.failures,
                                failing_since = %since, "The {name} writes its copies again.");
                        } else {
                            tracing::info!(target: "policy", store = %name, failed_copies = was.failures,
                                failing_since = %since, "The {name} writes its copies again.");
                        }
                    }
                }
                Err(e) => {
                    let f = failing.get_or_insert_with(|| WriteFailing {
                        store: self.what.to_string(),
                        dir: self.dir.clone(),
                        since: now,
                        last_at: now,
                        failures: 0,
                        error: String::new(),
                    });
                    f.last_at = now;
                    f.failures += 1;
                    f.error = e.to_string();
                }
            }
        }
        if written.is_err() {
            if let Some(stats) = self.stats.0.get() {
                stats.record(&mailward_metrics::Event::StoreWriteFailed {
                    store: self.counted_as(),
                });
            }
        }
        written
    }

    /// The store's label in mailward_store_write_errors_total.
    fn counted_as(&self) -> &'static str {
        if self.what.starts_with("archive") {
            "archive"
        } else {
            "quarantine"
        }
    }

    /// Whether its writes fail now (since the last one that succeeded).
    pub fn write_failing(&self) -> Option<WriteFailing> {
        self.failing.lock().ok().and_then(|f| f.clone())
    }

    fn write_entry(&self, id: &str, bytes: &[u8], meta: &EntryMeta) -> Result<u64, StoreError> {
        let _w = self
            .write
            .lock()
            .map_err(|_| StoreError::Task("poisoned".into()))?;
        let existed = self.path(id, "json").is_file();
        let entry = Entry {
            id: id.to_string(),
            stored: chrono::Utc::now().timestamp(),
            meta: EntryMeta {
                size: bytes.len() as u64,
                ..meta.clone()
            },
            released: Vec::new(),
        };
        let json = serde_json::to_vec_pretty(&entry)
            .map_err(|e| io(&self.path(id, "json"), std::io::Error::other(e)))?;
        // The message first, its description last: an entry is listed
        // only once both are in place.
        write_durably(&self.path(id, "eml"), bytes)?;
        if let Err(e) = write_durably(&self.path(id, "json"), &json) {
            // A new message without its description is no entry: it
            // would hold its space unlisted until the next start. One
            // written before (the same work again) keeps its bytes.
            if !existed {
                let _ = std::fs::remove_file(self.path(id, "eml"));
            }
            return Err(e);
        }
        files::sync_dir(&self.dir).map_err(|e| io(&self.dir, e))?;
        if !existed {
            if let Ok(mut t) = self.totals.lock() {
                t.0 += 1;
                t.1 += bytes.len() as u64;
            }
        }
        drop(_w);
        let max_size = self.max_size.load(Ordering::Relaxed);
        if self.totals().1 > max_size {
            self.expire(chrono::Utc::now().timestamp());
            // Larger than the whole store: it went with the others, and
            // the store holds nothing of it (walkAY T8: only the INFO
            // line of the expiry said so).
            if bytes.len() as u64 > max_size {
                tracing::warn!(target: "backup", store = self.what, id, size = bytes.len(),
                    max_size = %crate::config::ByteSize(max_size),
                    "An entry larger than the store's max_size was removed as soon as it was written, with every older entry: raise max_size above limits.max_message_size.");
            }
        }
        Ok(bytes.len() as u64)
    }

    /// [`Store::put_blocking`] off the async runtime.
    pub async fn put(
        self: &std::sync::Arc<Self>,
        id: &str,
        bytes: &std::sync::Arc<Vec<u8>>,
        meta: &EntryMeta,
    ) -> Result<u64, StoreError> {
        let (store, id, bytes, meta) = (self.clone(), id.to_string(), bytes.clone(), meta.clone());
        tokio::task::spawn_blocking(move || store.put_blocking(&id, &bytes, &meta))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Every entry, oldest first.
    pub fn list(&self) -> Result<Vec<Entry>, StoreError> {
        Ok(self.list_all()?.0)
    }

    /// Every entry, oldest first, and beside them those whose description
    /// cannot be read, each as [`Store::unreadable_entry`] makes it with
    /// the problem (walkAW F19: they were skipped with a log line, and the
    /// administrator was told the quarantine was empty).
    pub fn list_all(&self) -> Result<(Vec<Entry>, Vec<Unreadable>), StoreError> {
        let mut out = Vec::new();
        let mut unreadable = Vec::new();
        for e in std::fs::read_dir(&self.dir).map_err(|e| io(&self.dir, e))? {
            let e = e.map_err(|e| io(&self.dir, e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(".json") else {
                continue;
            };
            if !valid_id(id) {
                continue;
            }
            match self.entry(id) {
                Ok(entry) => out.push(entry),
                Err(err) => {
                    // Once per entry (it was at each listing, and each
                    // minute's expiry pass: the review of walkAW F19). It
                    // is listed as unreadable, and `remove` takes it.
                    let first = self
                        .said_unreadable
                        .lock()
                        .map(|mut said| said.insert(id.to_string()))
                        .unwrap_or(true);
                    if first {
                        tracing::warn!(target: "backup", store = self.what, id, error = %err,
                            "A store entry cannot be read: it is kept, listed as unreadable, and not expired; remove it when it is of no use.");
                    }
                    // A description not readable by this user (a restore
                    // made as root) is as unreadable as a damaged one
                    // (walkBQ F1: it was left out of the list).
                    if matches!(err, StoreError::Corrupt { .. } | StoreError::Io { .. }) {
                        unreadable.push((self.unreadable_entry(id), err.to_string()));
                    }
                }
            }
        }
        out.sort_by(|a, b| (a.stored, &a.id).cmp(&(b.stored, &b.id)));
        unreadable.sort_by(|(a, _), (b, _)| (a.stored, &a.id).cmp(&(b.stored, &b.id)));
        Ok((out, unreadable))
    }

    /// [`unreadable_entry`] of this store.
    pub fn unreadable_entry(&self, id: &str) -> Entry {
        unreadable_entry(&self.dir, id)
    }

    /// One entry's description.
    pub fn entry(&self, id: &str) -> Result<Entry, StoreError> {
        if !valid_id(id) {
            return Err(StoreError::BadId(id.to_string()));
        }
        let path = self.path(id, "json");
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(self.not_found(id)),
            Err(e) => return Err(io(&path, e)),
        };
        serde_json::from_slice(&text).map_err(|e| StoreError::Corrupt {
            path,
            problem: e.to_string(),
        })
    }

    /// Why `id` names no entry: a queue ID whose entries have a .N suffix
    /// is answered with those entries (and their recipients), so that the
    /// queue ID a notice gives leads to them.
    fn not_found(&self, id: &str) -> StoreError {
        if id.contains('.') {
            return StoreError::NotFound(id.to_string());
        }
        let prefix = format!("{id}.");
        let mut ids: Vec<String> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let eid = name.strip_suffix(".json")?;
                (eid.starts_with(&prefix) && valid_id(eid)).then(|| eid.to_string())
            })
            .collect();
        if ids.is_empty() {
            return StoreError::NotFound(id.to_string());
        }
        ids.sort_by_key(|e| {
            let n = e.rsplit('.').next().and_then(|n| n.parse::<u64>().ok());
            (n.unwrap_or(u64::MAX), e.clone())
        });
        let entries = ids
            .iter()
            .map(|eid| match self.entry(eid) {
                Ok(e) if !e.meta.recipients.is_empty() => {
                    format!("{eid} ({})", e.meta.recipients.join(", "))
                }
                _ => eid.clone(),
            })
            .collect::<Vec<_>>()
            .join(", ");
        StoreError::QueueIdOfEntries {
            id: id.to_string(),
            what: self.what,
            entries,
        }
    }

    /// One entry and its message.
    pub fn get(&self, id: &str) -> Result<(Entry, Vec<u8>), StoreError> {
        let entry = self.entry(id)?;
        let path = self.path(id, "eml");
        let bytes = std::fs::read(&path).map_err(|e| io(&path, e))?;
        Ok((entry, bytes))
    }

    /// Records a release in the entry (which stays, for the record).
    pub fn released(&self, id: &str, release: Released) -> Result<(), StoreError> {
        let _w = self
            .write
            .lock()
            .map_err(|_| StoreError::Task("poisoned".into()))?;
        let mut entry = self.entry(id)?;
        entry.released.push(release);
        let json = serde_json::to_vec_pretty(&entry)
            .map_err(|e| io(&self.path(id, "json"), std::io::Error::other(e)))?;
        write_durably(&self.path(id, "json"), &json)?;
        files::sync_dir(&self.dir).map_err(|e| io(&self.dir, e))
    }

    /// Removes one entry.
    pub fn remove(&self, id: &str) -> Result<Entry, StoreError> {
        let _w = self
            .write
            .lock()
            .map_err(|_| StoreError::Task("poisoned".into()))?;
        self.remove_locked(id)
    }

    fn remove_locked(&self, id: &str) -> Result<Entry, StoreError> {
        // An entry whose description cannot be read is removed too: it is
        // the one thing to do with it (walkAW F19). It was never counted
        // in the totals.
        let (entry, counted) = match self.entry(id) {
            Ok(e) => (e, true),
            Err(StoreError::Corrupt { .. } | StoreError::Io { .. }) => {
                (self.unreadable_entry(id), false)
            }
            Err(e) => return Err(e),
        };
        // The description first: a half-removed entry is not listed.
        for ext in ["json", "eml"] {
            let path = self.path(id, ext);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&path, e)),
            }
        }
        if counted {
            if let Ok(mut t) = self.totals.lock() {
                t.0 = t.0.saturating_sub(1);
                t.1 = t.1.saturating_sub(entry.meta.size);
            }
        }
        Ok(entry)
    }

    /// Removes the entries stored at or before `before` (unix time); returns
    /// them.
    pub fn purge(&self, before: i64) -> Result<Vec<Entry>, StoreError> {
        let _w = self
            .write
            .lock()
            .map_err(|_| StoreError::Task("poisoned".into()))?;
        let mut out = Vec::new();
        let (entries, unreadable) = self.list_all()?;
        for e in entries.iter().chain(unreadable.iter().map(|(e, _)| e)) {
            if e.stored <= before {
                out.push(self.remove_locked(&e.id)?);
            }
        }
        Ok(out)
    }

    /// Sets the retention (a reload): the next expiry, within a minute,
    /// applies it.
    pub fn set_retention(&self, max_age: Duration, max_size: u64) {
        self.max_age.store(max_age.as_secs(), Ordering::Relaxed);
        self.max_size.store(max_size, Ordering::Relaxed);
    }

    /// What the store is, as logs name it: "quarantine", "archive
    /// incoming", "archive outgoing".
    pub fn what(&self) -> &'static str {
        self.what
    }

    /// Expires entries older than the store's `max_age`, then the oldest
    /// until its total is under `max_size`. Returns how many went.
    pub fn expire(&self, now: i64) -> usize {
        let Ok(_w) = self.write.lock() else {
            return 0;
        };
        let Ok(entries) = self.list() else {
            return 0;
        };
        let max_age = self.max_age.load(Ordering::Relaxed);
        let max_size = self.max_size.load(Ordering::Relaxed);
        let oldest_kept = now.saturating_sub(i64::try_from(max_age).unwrap_or(i64::MAX));
        let mut total: u64 = entries.iter().map(|e| e.meta.size).sum();
        let held = total;
        let mut gone = Vec::new();
        let (mut by_age, mut by_size) = (0usize, 0usize);
        for e in entries {
            let old = e.stored < oldest_kept;
            if !old && total <= max_size {
                break;
            }
            match self.remove_locked(&e.id) {
                Ok(_) => {
                    total = total.saturating_sub(e.meta.size);
                    gone.push(e.id);
                    if old {
                        by_age += 1;
                    } else {
                        by_size += 1;
                    }
                }
                Err(err) => {
                    tracing::warn!(target: "backup", store = self.what, id = %e.id, error = %err,
                        "Cannot expire a store entry.");
                    break;
                }
            }
        }
        if !gone.is_empty() {
            let why = expiry_why(by_age, by_size, max_age, max_size, held);
            tracing::info!(target: "backup", store = self.what, entries = gone.len(),
                why = %why, ids = %some_ids(&gone), "Expired store entries.");
        }
        gone.len()
    }
}

/// Which limit expired entries in one pass, and by how much (walkAD 11: a
/// line that named both limits left the administrator guessing):
/// `max_size (30KiB; held 636.2 KiB)`, `max_age (90d)`, or both, with
/// the number of entries each took when both did.
fn expiry_why(by_age: usize, by_size: usize, max_age: u64, max_size: u64, held: u64) -> String {
    let age = format!(
        "max_age ({})",
        crate::config::Dur(Duration::from_secs(max_age))
    );
    let size = format!(
        "max_size ({}; held {})",
        crate::config::ByteSize(max_size),
        crate::ops::status::bytes(held)
    );
    let n = |k: usize| format!("{k} {}", if k == 1 { "entry" } else { "entries" });
    match (by_age, by_size) {
        (_, 0) => age,
        (0, _) => size,
        (a, s) => format!("{age}: {}, {size}: {}", n(a), n(s)),
    }
}

/// Entry IDs a log line names at most; the rest are counted.
pub const MAX_LOGGED_IDS: usize = 20;

/// Up to [`MAX_LOGGED_IDS`] of `ids`, comma-separated, then `(and N
/// more)`: an audit line names what went without growing without bound
/// (a purge of 10,000 entries).
pub fn some_ids(ids: &[String]) -> String {
    let mut out = ids
        .iter()
        .take(MAX_LOGGED_IDS)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(",");
    if ids.len() > MAX_LOGGED_IDS {
        out.push_str(&format!(" (and {} more)", ids.len() - MAX_LOGGED_IDS));
    }
    out
}

/// The reason of an entry completed at open ([`Store::open`]).
pub const INTERRUPTED: &str = "interrupted";

/// Writes `bytes` to `path` through a temporary file: flushed, then renamed.
/// A write that fails once the temporary file exists removes it: on a full
/// file system, the part written of a large message would otherwise hold
/// its space until the next start, and every later write (a two-line
/// message) would fail too, refusing all mail with 451 after the space
/// came back (walkAD 3).
fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    let mut f = files::create(&tmp, files::PRIVATE_FILE).map_err(|e| io(&tmp, e))?;
    let written = f
        .write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| io(&tmp, e))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| io(path, e)));
    if written.is_err() {
        drop(f);
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// The stores of a gateway.
#[derive(Debug)]
pub struct Stores {
    pub quarantine: std::sync::Arc<Store>,
    archive_in: std::sync::Arc<Store>,
    archive_out: std::sync::Arc<Store>,
}

impl Stores {
    /// Opens the stores under `data_dir` with the retention of `cfg`.
    pub fn open(cfg: &Config) -> Result<Stores, StoreError> {
        let data = &cfg.server.data_dir;
        let q = &cfg.quarantine;
        let a = &cfg.archive;
        Ok(Stores {
            quarantine: std::sync::Arc::new(Store::open(
                &data.join("quarantine"),
                "quarantine",
                q.max_age.get(),
                q.max_size.0,
            )?),
            archive_in: std::sync::Arc::new(Store::open(
                &data.join("archive").join("incoming"),
                "archive incoming",
                a.max_age.get(),
                a.max_size.0,
            )?),
            archive_out: std::sync::Arc::new(Store::open(
                &data.join("archive").join("outgoing"),
                "archive outgoing",
                a.max_age.get(),
                a.max_size.0,
            )?),
        })
    }

    /// Puts the retention of a reloaded `cfg` in force (the directories
    /// stay: they follow data_dir, which needs a restart).
    pub fn set_retention(&self, cfg: &Config) {
        let (q, a) = (&cfg.quarantine, &cfg.archive);
        self.quarantine.set_retention(q.max_age.get(), q.max_size.0);
        for store in [&self.archive_in, &self.archive_out] {
            store.set_retention(a.max_age.get(), a.max_size.0);
        }
    }

    /// Counts every store's failed writes in `stats` from now on (once;
    /// the gateway does it as it starts).
    pub fn count_into(&self, stats: &std::sync::Arc<mailward_metrics::Stats>) {
        for store in [&self.quarantine, &self.archive_in, &self.archive_out] {
            let _ = store.stats.0.set(stats.clone());
        }
    }

    /// The stores whose writes fail now, quarantine first.
    pub fn write_failing(&self) -> Vec<WriteFailing> {
        [&self.quarantine, &self.archive_in, &self.archive_out]
            .iter()
            .filter_map(|s| s.write_failing())
            .collect()
    }

    pub fn archive(&self, d: Direction) -> &std::sync::Arc<Store> {
        match d {
            Direction::Incoming => &self.archive_in,
            Direction::Outgoing => &self.archive_out,
        }
    }

    /// Expires old entries in every store, once a minute, until shutdown.
    pub async fn expire_periodically(
        stores: std::sync::Arc<Stores>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            let s = stores.clone();
            let _ = tokio::task::spawn_blocking(move || {
                let now = chrono::Utc::now().timestamp();
                s.quarantine.expire(now);
                s.archive_in.expire(now);
                s.archive_out.expire(now);
            })
            .await;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(size: u64) -> EntryMeta {
        EntryMeta {
            queue_id: "1A22E10E77891C7A".into(),
            received: 1,
            sender: "a@x".into(),
            recipients: vec!["b@y".into()],
            client_ip: "127.0.0.1".into(),
            helo: "h".into(),
            statuses: vec!["av/infected".into()],
            findings: vec!["infected EICAR in x".into()],
            group: String::new(),
            reason: "av/infected".into(),
            size,
        }
    }

    /// walkAD 3: a write that fails leaves no temporary file (nor a
    /// message without its description) to hold the space of a full file
    /// system until the next start; the next write succeeds once it can.
    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), "test", Duration::from_secs(3600), 1 << 20).unwrap();
        // The rename fails: a directory holds the message's name.
        std::fs::create_dir(dir.path().join("1A22E10E77891C7A.eml")).unwrap();
        assert!(store
            .put_blocking("1A22E10E77891C7A", b"0123456789", &meta(0))
            .is_err());
        // The description's rename fails: the new message goes too.
        std::fs::create_dir(dir.path().join("1A22E10E77891C7B.json")).unwrap();
        assert!(store
            .put_blocking("1A22E10E77891C7B", b"0123456789", &meta(0))
            .is_err());
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["1A22E10E77891C7A.eml", "1A22E10E77891C7B.json"]);
        assert_eq!(store.totals(), (0, 0));
        std::fs::remove_dir(dir.path().join("1A22E10E77891C7A.eml")).unwrap();
        store
            .put_blocking("1A22E10E77891C7A", b"0123456789", &meta(0))
            .unwrap();
        assert_eq!(store.totals(), (1, 10));
    }

    /// walkAW F19: an entry whose description cannot be read was skipped
    /// by the listing (the quarantine said it was empty) and could not be
    /// removed; it is listed beside the others, and removed and purged.
    #[test]
    fn an_unreadable_entry_is_listed_apart_and_can_be_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), "test", Duration::from_secs(3600), 1 << 20).unwrap();
        for id in ["1A22E10E77891C7A", "1A22E10E77891C7B", "1A22E10E77891C7C"] {
            store.put_blocking(id, b"0123456789", &meta(10)).unwrap();
        }
        std::fs::write(dir.path().join("1A22E10E77891C7A.json"), b"\x00\xffgarbage").unwrap();
        std::fs::write(
            dir.path().join("1A22E10E77891C7B.json"),
            br#"{"id":"1A22E10E77891C7B","size":"big"}"#,
        )
        .unwrap();
        let (ok, bad) = store.list_all().unwrap();
        assert_eq!(ok.len(), 1);
        let ids: Vec<&str> = bad.iter().map(|(e, _)| e.id.as_str()).collect();
        assert_eq!(ids, ["1A22E10E77891C7A", "1A22E10E77891C7B"]);
        assert!(bad.iter().all(|(e, why)| e.meta.reason == "unreadable"
            && e.meta.size == 10
            && e.stored > 0
            && why.contains("unreadable entry")));
        // The expiry (every minute) takes the readable one and leaves
        // them, and each is said once.
        assert_eq!(store.expire(i64::MAX), 1);
        assert_eq!(store.list_all().unwrap().1.len(), 2);
        let said = store.said_unreadable.lock().map(|s| s.len()).unwrap_or(0);
        assert_eq!(said, 2);
        let gone = store.remove("1A22E10E77891C7A").unwrap();
        assert_eq!(gone.id, "1A22E10E77891C7A");
        assert!(!dir.path().join("1A22E10E77891C7A.eml").exists());
        let purged = store.purge(i64::MAX).unwrap();
        assert_eq!(purged.len(), 1, "the unreadable one is purged");
        assert_eq!(store.list_all().unwrap().1.len(), 0);
    }

    /// walkBQ F1: a description this user may not read (a restore made as
    /// root) was left out of the list, and `remove` refused it. The tests
    /// run as root, whom no mode stops: a link to itself fails the read
    /// with an I/O error as well.
    #[test]
    fn a_description_that_fails_to_read_is_listed_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), "test", Duration::from_secs(3600), 1 << 20).unwrap();
        store
            .put_blocking("1A22E10E77891C7D", b"0123456789", &meta(10))
            .unwrap();
        let json = dir.path().join("1A22E10E77891C7D.json");
        std::fs::remove_file(&json).unwrap();
        std::os::unix::fs::symlink(&json, &json).unwrap();
        let (ok, bad) = store.list_all().unwrap();
        assert!(ok.is_empty());
        assert_eq!(bad.len(), 1, "listed as unreadable");
        assert_eq!(bad[0].0.meta.reason, "unreadable");
        assert!(bad[0].1.contains("1A22E10E77891C7D.json"), "{}", bad[0].1);
        store.remove("1A22E10E77891C7D").unwrap();
        assert!(std::fs::symlink_metadata(&json).is_err());
        assert!(!dir.path().join("1A22E10E77891C7D.eml").exists());
    }

    /// A store that cannot write was only a log line: it is counted and
    /// said (since when, how often, the last error) until a write
    /// succeeds.
    #[test]
    fn failed_writes_are_counted_and_kept_until_one_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Store::open(dir.path(), "quarantine", Duration::from_secs(3600), 1 << 20).unwrap();
        let stats = std::sync::Arc::new(mailward_metrics::Stats::new(
            &mailward_metrics::Category::ALL,
            10,
            None,
            "test",
        ));
        let _ = store.stats.0.set(stats.clone());
        assert_eq!(store.write_failing(), None);
        std::fs::create_dir(dir.path().join("1A22E10E77891C7A.eml")).unwrap();
        for _ in 0..2 {
            assert!(store
                .put_blocking("1A22E10E77891C7A", b"0123456789", &meta(0))
                .is_err());
        }
        let f = store.write_failing().unwrap();
        assert_eq!((f.store.as_str(), f.failures), ("quarantine", 2));
        assert!(f.since > 0 && f.last_at >= f.since);
        assert!(f.error.contains("1A22E10E77891C7A.eml"), "{}", f.error);
        let snap = stats.snapshot(&mailward_metrics::Gauges::default());
        assert_eq!(snap.value(mailward_metrics::StatId::StoreWriteErrors, 0), 2);
        // A bad ID is the caller's mistake, not the store's.
        assert!(store.put_blocking("../x", b"0", &meta(0)).is_err());
        assert_eq!(store.write_failing().unwrap().failures, 2);
        std::fs::remove_dir(dir.path().join("1A22E10E77891C7A.eml")).unwrap();
        store
            .put_blocking("1A22E10E77891C7A", b"0123456789", &meta(0))
            .unwrap();
        assert_eq!(store.write_failing(), None);
    }

    #[test]
    fn the_expiry_says_which_limit_took_the_entries() {
        assert_eq!(
            expiry_why(0, 49, 90 * 86_400, 30 * 1024, 651_468),
            "max_size (30KiB; held 636.2 KiB)"
        );
        assert_eq!(expiry_why(3, 0, 90 * 86_400, 1 << 30, 10), "max_age (90d)");
        assert_eq!(
            expiry_why(2, 1, 3600, 1024, 4096),
            "max_age (1h): 2 entries, max_size (1KiB; held 4.0 KiB): 1 entry"
        );
    }

    #[test]
    fn entries_are_written_whole_replaced_not_doubled_and_expired_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), "test", Duration::from_secs(3600), 25).unwrap();
        store
            .put_blocking("1A22E10E77891C7A", b"0123456789", &meta(0))
            .unwrap();
        // The same work again after a crash: the same entry.
        store
            .put_blocking("1A22E10E77891C7A", b"0123456789", &meta(0))
            .unwrap();
        assert_eq!(store.totals(), (1, 10));
        store
            .put_blocking("1A22E10E77891C7B.2", b"0123456789", &meta(0))
            .unwrap();
        let (e, bytes) = store.get("1A22E10E77891C7B.2").unwrap();
        assert_eq!(bytes, b"0123456789");
        assert_eq!(e.meta.size, 10);
        // Over max_size (25): the oldest goes.
        store
            .put_blocking("1A22E10E77891C7C", b"0123456789", &meta(0))
            .unwrap();
        let ids: Vec<String> = store.list().unwrap().into_iter().map(|e| e.id).collect();
        assert_eq!(ids.len(), 2, "{ids:?}");
        assert!(!ids.contains(&"1A22E10E77891C7A".to_string()), "{ids:?}");
        assert_eq!(store.totals(), (2, 20));
        assert!(matches!(
            store.get("../etc/passwd"),
            Err(StoreError::BadId(_))
        ));
        // The queue ID of a message whose entries are per group (.N), as
        // the notices give it, leads to those entries.
        let err = store.get("1A22E10E77891C7B").unwrap_err().to_string();
        assert!(
            err.starts_with("1A22E10E77891C7B is the queue ID of ")
                && err.contains("entries 1A22E10E77891C7B.2")
                && err.ends_with(": give one of them"),
            "{err}"
        );
        assert!(matches!(
            store.get("1A22E10E77891C7D"),
            Err(StoreError::NotFound(_))
        ));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("1A22E10E77891C7C.eml"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_message_left_without_its_description_is_listed_at_the_next_open() {
        // walkF: a stop between the two writes of an entry left `ID.eml`
        // alone, never listed and never expired.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("1A22E10E77891C7A.2.eml"),
            b"Subject: x\r\n\r\nhi\r\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("1A22E10E77891C7B.json.tmp"), b"{").unwrap();
        let store = Store::open(dir.path(), "test", Duration::from_secs(3600), u64::MAX).unwrap();
        let listed = store.list().unwrap();
        assert_eq!(listed.len(), 1, "{listed:?}");
        let e = &listed[0];
        assert_eq!(e.id, "1A22E10E77891C7A.2");
        assert_eq!(e.meta.queue_id, "1A22E10E77891C7A");
        assert_eq!(e.meta.reason, INTERRUPTED);
        assert_eq!(e.meta.size, 18);
        assert!(e.meta.recipients.is_empty());
        assert_eq!(store.totals(), (1, 18));
        assert!(
            !dir.path().join("1A22E10E77891C7B.json.tmp").exists(),
            "the unfinished write is gone"
        );
        let (_, bytes) = store.get("1A22E10E77891C7A.2").unwrap();
        assert_eq!(bytes, b"Subject: x\r\n\r\nhi\r\n");
    }

    #[test]
    fn purge_and_age() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), "test", Duration::from_secs(60), u64::MAX).unwrap();
        store
            .put_blocking("1A22E10E77891C7A", b"x", &meta(0))
            .unwrap();
        let now = chrono::Utc::now().timestamp();
        assert_eq!(store.expire(now), 0);
        assert_eq!(store.expire(now + 120), 1, "older than max_age");
        store
            .put_blocking("1A22E10E77891C7A", b"x", &meta(0))
            .unwrap();
        assert_eq!(store.purge(now + 10).unwrap().len(), 1);
        assert_eq!(store.totals(), (0, 0));
    }

    #[test]
    fn a_reloaded_retention_applies_at_the_next_expiry_both_ways() {
        let cfg = |text: &str| crate::config::parse(text, "a.toml").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg("");
        c.server.data_dir = dir.path().to_path_buf();
        let stores = Stores::open(&c).unwrap();
        for id in ["1A22E10E77891C7A", "1A22E10E77891C7B"] {
            stores
                .quarantine
                .put_blocking(id, b"0123456789", &meta(0))
                .unwrap();
        }
        let now = chrono::Utc::now().timestamp();
        assert_eq!(stores.quarantine.expire(now), 0);
        // A reload lowers max_size: the oldest goes at the next expiry.
        stores.set_retention(&cfg("[quarantine]\nmax_size = \"15B\"\n"));
        assert_eq!(stores.quarantine.expire(now), 1);
        // And raises it again: a new entry no longer pushes one out.
        stores.set_retention(&cfg(
            "[quarantine]\nmax_size = \"1MiB\"\nmax_age = \"5s\"\n",
        ));
        stores
            .quarantine
            .put_blocking("1A22E10E77891C7C", b"0123456789", &meta(0))
            .unwrap();
        assert_eq!(stores.quarantine.totals().0, 2);
        // max_age from the reload too.
        assert_eq!(stores.quarantine.expire(now + 60), 2);
    }
}
