//! Where the site's learning lives: `site.model` under `[spam] dir` (the
//! default), or one Redis server that several gateways share (`[spam] store
//! = "redis://HOST:PORT/DB"`, DESIGN 9). The base model is a file either
//! way: it is installed per gateway, like the signature bases.
//!
//! Every change is a read-modify-write of the whole model under a lock: a
//! file lock (`learn.lock`) for the directory, WATCH/MULTI for Redis (a
//! change made by another gateway in between makes this one start again).
//! It keeps the model within the [`Limits`] of `[spam] max_tokens` and
//! `max_learnt`.
//! Readers need no lock: the file is replaced by rename, and the Redis value
//! in one SET, each with a version that changes with it.
//!
//! Redis is asked with short timeouts: the daemon reads it from its own
//! thread, never from a scan worker or the async runtime, and a Redis that
//! is down or slow costs the classifier's opinion, never a message.

use super::model::{Model, ModelError};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub const SITE: &str = "site.model";

/// How long one Redis command may take.
const REDIS_TIMEOUT: Duration = Duration::from_secs(1);
/// Attempts of one change when other writers keep getting in between.
const REDIS_TRIES: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("Redis {url}: {message}")]
    Redis { url: String, message: String },
}

/// The site's learning store: where it is, and how much it keeps.
#[derive(Debug, Clone)]
pub struct Store {
    at: Place,
    limits: Limits,
}

#[derive(Debug, Clone)]
enum Place {
    Dir(PathBuf),
    Redis {
        client: redis::Client,
        /// The URL as configured (without a password), for messages.
        url: String,
    },
}

/// How much the site's learning keeps (`[spam] max_tokens` and
/// `max_learnt`): every change that passes one forgets down to nine
/// tenths of it ([`Model::trim`], [`Model::trim_learnt`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Distinct tokens (16 bytes each in the file or Redis value).
    pub tokens: usize,
    /// Learnt messages' identities (9 bytes each).
    pub learnt: usize,
}

impl Limits {
    /// The limits of a configuration.
    pub fn of(spam: &crate::config::Spam) -> Limits {
        let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        Limits {
            tokens: size(spam.max_tokens),
            learnt: size(spam.max_learnt),
        }
    }
}

/// What a change forgot to stay within the [`Limits`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Trimmed {
    /// Tokens forgotten, the rarest first.
    pub tokens: usize,
    /// Learnt messages' identities let go (their counts stay).
    pub learnt: usize,
}

/// What changes when the stored model does: the file's modification time,
/// or the Redis version counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    File(Option<SystemTime>),
    Redis(Option<i64>),
}

const SITE_KEY: &str = "mailward:spam:site";
const VERSION_KEY: &str = "mailward:spam:version";

/// Holds the learning lock of a spam directory while alive (site changes,
/// and the CLI's base installs and rollbacks).
pub struct Lock(std::fs::File);

impl Lock {
    pub fn take(dir: &Path) -> Result<Lock, StoreError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join("learn.lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        f.lock().map_err(io(&path))?;
        Ok(Lock(f))
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

impl Store {
    /// The store of a configuration's `[spam]`: `store` "" is the
    /// directory `dir`.
    pub fn of(spam: &crate::config::Spam) -> Result<Store, StoreError> {
        Store::new(&spam.dir, &spam.store, Limits::of(spam))
    }

    /// The store `store` ("" is the directory `dir`).
    pub fn new(dir: &Path, store: &str, limits: Limits) -> Result<Store, StoreError> {
        if store.is_empty() {
            return Ok(Store::dir(dir, limits));
        }
        let client = redis::Client::open(store).map_err(|e| StoreError::Redis {
            url: shown(store),
            message: e.to_string(),
        })?;
        Ok(Store {
            at: Place::Redis {
                client,
                url: shown(store),
            },
            limits,
        })
    }

    /// The directory store in `dir`.
    pub fn dir(dir: &Path, limits: Limits) -> Store {
        Store {
            at: Place::Dir(dir.to_path_buf()),
            limits,
        }
    }

    /// Whether several gateways may share it (Redis): its version is a
    /// network call, so it is polled apart from the files.
    pub fn is_shared(&self) -> bool {
        matches!(self.at, Place::Redis { .. })
    }

    /// What `status` shows.
    pub fn describe(&self) -> String {
        match &self.at {
            Place::Dir(dir) => dir.join(SITE).display().to_string(),
            Place::Redis { url, .. } => url.clone(),
        }
    }

    fn redis_error(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Redis {
            url: self.describe(),
            message: e.to_string(),
        }
    }

    fn connect(&self, client: &redis::Client) -> Result<redis::Connection, StoreError> {
        let con = client
            .get_connection_with_timeout(REDIS_TIMEOUT)
            .map_err(|e| self.redis_error(e))?;
        con.set_read_timeout(Some(REDIS_TIMEOUT))
            .and_then(|()| con.set_write_timeout(Some(REDIS_TIMEOUT)))
            .map_err(|e| self.redis_error(e))?;
        Ok(con)
    }

    /// The version of the stored model (cheap: a stat or one GET).
    pub fn version(&self) -> Result<Version, StoreError> {
        match &self.at {
            Place::Dir(dir) => Ok(Version::File(
                std::fs::metadata(dir.join(SITE))
                    .and_then(|m| m.modified())
                    .ok(),
            )),
            Place::Redis { client, .. } => {
                let mut con = self.connect(client)?;
                let v: Option<i64> = redis::cmd("GET")
                    .arg(VERSION_KEY)
                    .query(&mut con)
                    .map_err(|e| self.redis_error(e))?;
                Ok(Version::Redis(v))
            }
        }
    }

    /// The site's model (empty when nothing was learnt yet).
    pub fn read(&self) -> Result<Model, StoreError> {
        match &self.at {
            Place::Dir(dir) => Ok(Model::read(&dir.join(SITE))?.unwrap_or_default()),
            Place::Redis { client, .. } => {
                let mut con = self.connect(client)?;
                let blob: Option<Vec<u8>> = redis::cmd("GET")
                    .arg(SITE_KEY)
                    .query(&mut con)
                    .map_err(|e| self.redis_error(e))?;
                self.decode(blob)
            }
        }
    }

    fn decode(&self, blob: Option<Vec<u8>>) -> Result<Model, StoreError> {
        match blob {
            Some(b) => Ok(Model::from_bytes(&b, Path::new(&self.describe()))?),
            None => Ok(Model::default()),
        }
    }

    /// Changes the site's model with `change` under the store's lock and
    /// writes it back when `change` says it changed it; `change` may run
    /// more than once (Redis, when another gateway wrote in between), on
    /// the model as it is then.
    ///
    /// An unchanged model is not written: writing it would move the
    /// store's version and make every gateway reload the same model.
    ///
    /// A change that takes the model past its [`Limits`] also forgets
    /// what [`Trimmed`] says (and logs it).
    pub fn update<R>(
        &self,
        mut change: impl FnMut(&mut Model) -> Edit<R>,
    ) -> Result<(R, Trimmed), StoreError> {
        match &self.at {
            Place::Dir(dir) => {
                let _lock = Lock::take(dir)?;
                let mut model = Model::read(&dir.join(SITE))?.unwrap_or_default();
                match change(&mut model) {
                    Edit::Changed(r) => {
                        let trimmed = self.trim(&mut model);
                        model.write(&dir.join(SITE))?;
                        Ok((r, trimmed))
                    }
                    Edit::Unchanged(r) => Ok((r, Trimmed::default())),
                }
            }
            Place::Redis { client, .. } => {
                let mut con = self.connect(client)?;
                for _ in 0..REDIS_TRIES {
                    redis::cmd("WATCH")
                        .arg(SITE_KEY)
                        .query::<()>(&mut con)
                        .map_err(|e| self.redis_error(e))?;
                    let blob: Option<Vec<u8>> = redis::cmd("GET")
                        .arg(SITE_KEY)
                        .query(&mut con)
                        .map_err(|e| self.redis_error(e))?;
                    let mut model = self.decode(blob)?;
                    let r = match change(&mut model) {
                        Edit::Changed(r) => (r, self.trim(&mut model)),
                        Edit::Unchanged(r) => {
                            redis::cmd("UNWATCH")
                                .query::<()>(&mut con)
                                .map_err(|e| self.redis_error(e))?;
                            return Ok((r, Trimmed::default()));
                        }
                    };
                    // EXEC answers nil when the watched key changed.
                    let done: Option<(i64,)> = redis::pipe()
                        .atomic()
                        .cmd("SET")
                        .arg(SITE_KEY)
                        .arg(model.to_bytes())
                        .ignore()
                        .cmd("INCR")
                        .arg(VERSION_KEY)
                        .query(&mut con)
                        .map_err(|e| self.redis_error(e))?;
                    if done.is_some() {
                        return Ok(r);
                    }
                }
                Err(self.redis_error(format!(
                    "the model kept changing under {REDIS_TRIES} attempts; try again"
                )))
            }
        }
    }

    /// Keeps a changed model within the store's [`Limits`].
    fn trim(&self, model: &mut Model) -> Trimmed {
        let trimmed = Trimmed {
            tokens: model.trim(self.limits.tokens),
            learnt: model.trim_learnt(self.limits.learnt),
        };
        if trimmed.tokens > 0 {
            tracing::info!(target: "scan", forgotten = trimmed.tokens, kept = model.tokens.len(),
                max_tokens = self.limits.tokens,
                "The site's spam learning passed spam.max_tokens; the rarest tokens were forgotten.");
        }
        if trimmed.learnt > 0 {
            tracing::info!(target: "scan", let_go = trimmed.learnt, kept = model.learnt.len(),
                max_learnt = self.limits.learnt,
                "The site's spam learning passed spam.max_learnt; some messages' identities were let go (their counts stay).");
        }
        trimmed
    }
}

/// What a change given to [`Store::update`] did to the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edit<R> {
    /// The model changed: it is written back.
    Changed(R),
    /// Nothing changed (all already learnt, nothing to forget, a refused
    /// import): nothing is written.
    Unchanged(R),
}

impl<R> Edit<R> {
    /// `Changed(r)` when `changed`, else `Unchanged(r)`.
    pub fn when(changed: bool, r: R) -> Self {
        if changed {
            Edit::Changed(r)
        } else {
            Edit::Unchanged(r)
        }
    }
}

/// A Redis URL without its password, for logs and messages.
fn shown(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::spam::model::{Class, Learnt};

    const LIMITS: Limits = Limits {
        tokens: 1000,
        learnt: 1000,
    };

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            shown("redis://:s3cret@10.0.0.1:6379/2"),
            "redis://***@10.0.0.1:6379/2"
        );
        assert_eq!(
            shown("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
    }

    #[test]
    fn a_directory_store_learns_under_its_lock_and_versions_change() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::dir(dir.path(), LIMITS);
        assert_eq!(store.read().unwrap().spam_messages, 0);
        let before = store.version().unwrap();
        let learn = |m: &mut Model| {
            let l = m.learn(7, &[1, 2, 3], Class::Spam);
            Edit::when(l != Learnt::Already, l)
        };
        assert_eq!(store.update(learn).unwrap().0, Learnt::New);
        assert_eq!(store.read().unwrap().spam_messages, 1);
        let after = store.version().unwrap();
        assert_ne!(after, before);
        // Learning it again changes nothing, so nothing is written and
        // gateways watching the version do not reload.
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(store.update(learn).unwrap().0, Learnt::Already);
        assert_eq!(store.version().unwrap(), after);
    }

    #[test]
    fn a_change_past_the_limits_forgets_and_says_how_much() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::dir(
            dir.path(),
            Limits {
                tokens: 100,
                learnt: 10,
            },
        );
        // Twelve messages of ten tokens each, all new: 120 tokens.
        let ((), trimmed) = store
            .update(|m| {
                for d in 0..12u64 {
                    let tokens: Vec<u64> = (d * 10..d * 10 + 10).collect();
                    m.learn(d, &tokens, Class::Spam);
                }
                Edit::Changed(())
            })
            .unwrap();
        assert_eq!(
            trimmed,
            Trimmed {
                tokens: 30,
                learnt: 3
            },
            "both down to nine tenths of their limit"
        );
        let kept = store.read().unwrap();
        assert_eq!((kept.tokens.len(), kept.learnt.len()), (90, 9));
        assert_eq!(kept.spam_messages, 12, "the counts stay");
        // Within the limits nothing more goes.
        let (_, trimmed) = store
            .update(|m| Edit::when(m.learn(99, &[5000], Class::Ham) == Learnt::New, ()))
            .unwrap();
        assert_eq!(trimmed, Trimmed::default());
    }

    #[test]
    fn an_unreachable_redis_is_an_error_not_a_wait() {
        // Port 1 on loopback: refused at once.
        let store = Store::new(Path::new("/nonexistent"), "redis://127.0.0.1:1/0", LIMITS).unwrap();
        let started = std::time::Instant::now();
        let e = store.read().unwrap_err();
        assert!(
            e.to_string().starts_with("Redis redis://127.0.0.1:1/0:"),
            "{e}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(Store::new(Path::new("/x"), "http://nope", LIMITS).is_err());
    }
}
