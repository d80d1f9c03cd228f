//! What the spam check knows, shared by the scan workers: the content rules
//! and the classifier's models. The site's learning is in its store
//! ([`super::store`]): `site.model`, which `mailward spam learn` rewrites
//! (atomically) and the daemon looks at every [`RECHECK`], or a Redis
//! server that a thread of its own polls as often. New learning is swapped
//! in without a restart; a damaged model is refused and the one in use
//! stays; a Redis that cannot be read makes the classifier abstain until it
//! can be again.
//!
//! Files, under `[spam] dir` (default `DATA_DIR/spam`):
//! - `site.model`: what this site learnt (and which messages), unless
//!   `[spam] store` names a Redis;
//! - `base.model`: an installed base (`mailward spam import --base`), the
//!   previous one kept as `base.model.bak` for `spam rollback`.

use super::classifier::Classifier;
use super::model::Model;
use super::rules::{self, Rule};
use super::store::{Store, Version};
use crate::config::Config;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant, SystemTime};

/// How often the daemon looks for new learning.
const RECHECK: Duration = Duration::from_secs(2);

pub use super::store::SITE;
pub const BASE: &str = "base.model";

/// Rules and models, as one immutable value.
#[derive(Debug, Default)]
pub struct Knowledge {
    pub rules: Vec<Rule>,
    pub classifier: Classifier,
    /// `[spam] dnsbl`: what a listing of the client is worth.
    pub dnsbl: Vec<crate::config::ScoredZone>,
    /// `[spam] blacklist` and `whitelist`.
    pub blacklist: Vec<crate::config::GroupEntry>,
    pub whitelist: Vec<crate::config::GroupEntry>,
    /// `[spam] traps`.
    pub traps: Vec<crate::config::Pattern>,
}

impl Knowledge {
    /// Reads everything the configuration names. Problems with a model are
    /// returned beside what could be loaded (an empty model in its place):
    /// mail is still checked by the rules.
    pub fn load(cfg: &Config) -> (Knowledge, Vec<String>) {
        let (k, problems, _) = Knowledge::load_parts(cfg, true);
        (k, problems)
    }

    /// As [`Knowledge::load`], also saying which models could not be read
    /// (base, site), so that a reload keeps the ones in use for those.
    /// `site`: read the site's store too (false: leave it empty, for the
    /// caller to fill).
    fn load_parts(cfg: &Config, site: bool) -> (Knowledge, Vec<String>, (bool, bool)) {
        let mut problems = Vec::new();
        let mut failed = (false, false);
        let mut rules = rules::built_in();
        if let Some(file) = &cfg.spam.rules {
            match std::fs::read_to_string(file)
                .map_err(|e| e.to_string())
                .and_then(|t| {
                    rules::parse(&t).map_err(|p| {
                        p.iter()
                            .map(|(l, m)| format!("{}:{l}: {m}", file.display()))
                            .collect::<Vec<_>>()
                            .join("; ")
                    })
                }) {
                Ok(extra) => {
                    // A site rule of a built-in name replaces it.
                    rules.retain(|r| !extra.iter().any(|e| e.name == r.name));
                    rules.extend(extra);
                }
                Err(e) => problems.push(format!("spam rules {}: {e}", file.display())),
            }
        }
        let mut classifier = Classifier {
            min_learnt: cfg.spam.min_learnt,
            ..Classifier::default()
        };
        match Model::read(&cfg.spam.dir.join(BASE)) {
            Ok(base) => classifier.base = base.map(Arc::new),
            Err(e) => {
                failed.0 = true;
                problems.push(e.to_string());
            }
        }
        if site {
            match Store::new(&cfg.spam.dir, &cfg.spam.store).and_then(|s| s.read()) {
                Ok(m) => classifier.site = Arc::new(m),
                Err(e) => {
                    failed.1 = true;
                    classifier.unavailable = !cfg.spam.store.is_empty();
                    problems.push(e.to_string());
                }
            }
        } else {
            failed.1 = true;
        }
        let k = Knowledge {
            rules,
            classifier,
            dnsbl: cfg.spam.dnsbl.clone(),
            blacklist: cfg.spam.blacklist.clone(),
            whitelist: cfg.spam.whitelist.clone(),
            traps: cfg.spam.traps.clone(),
        };
        (k, problems, failed)
    }
}

/// The knowledge in use, reloaded when its files or its store change.
pub struct Shared {
    store: Store,
    base_path: std::path::PathBuf,
    current: RwLock<Arc<Knowledge>>,
    /// When the files were last looked at, and what they were then.
    seen: Mutex<(Instant, Stamp)>,
    config: RwLock<Arc<Config>>,
    /// The Redis store could not be read at the last look.
    store_down: AtomicBool,
    /// Autolearn's thread (`[spam] autolearn`).
    learner: Option<super::autolearn::Learner>,
}

/// The base file's time, and the site's version when it is a file.
type Stamp = (Option<SystemTime>, Option<Version>);

impl Shared {
    pub fn open(cfg: Arc<Config>) -> (Arc<Shared>, Vec<String>) {
        let (k, mut problems) = Knowledge::load(&cfg);
        let store = match Store::new(&cfg.spam.dir, &cfg.spam.store) {
            Ok(s) => s,
            Err(e) => {
                problems.push(e.to_string());
                Store::Dir(cfg.spam.dir.clone())
            }
        };
        let down = k.classifier.unavailable;
        let learner = super::autolearn::Learner::start(store.clone());
        let shared = Arc::new(Shared {
            learner,
            base_path: cfg.spam.dir.join(BASE),
            seen: Mutex::new((Instant::now(), (None, None))),
            store,
            current: RwLock::new(Arc::new(k)),
            config: RwLock::new(cfg),
            store_down: AtomicBool::new(down),
        });
        if let Ok(mut seen) = shared.seen.lock() {
            seen.1 = shared.stamp();
        }
        if matches!(shared.store, Store::Redis { .. }) {
            let weak = Arc::downgrade(&shared);
            let spawned = std::thread::Builder::new()
                .name("spam-store".into())
                .spawn(move || poll_redis(&weak));
            if let Err(e) = spawned {
                problems.push(format!("cannot start the spam store poller: {e}"));
            }
        }
        (shared, problems)
    }

    /// The site's store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Autolearn: when `[spam] autolearn` is on and the verdict teaches
    /// something ([`super::autolearn::lesson`]), the message is queued to be
    /// learnt.
    pub fn autolearn(&self, raw: &Arc<Vec<u8>>, evidence: &super::Evidence) {
        let on = match self.config.read() {
            Ok(c) => c.spam.autolearn,
            Err(p) => p.into_inner().spam.autolearn,
        };
        if let (true, Some(learner), Some(class)) =
            (on, &self.learner, super::autolearn::lesson(evidence))
        {
            learner.offer(raw.clone(), class);
        }
    }

    fn stamp(&self) -> Stamp {
        let base = std::fs::metadata(&self.base_path)
            .and_then(|m| m.modified())
            .ok();
        let site = match &self.store {
            Store::Dir(_) => self.store.version().ok(),
            // Polled by its own thread.
            Store::Redis { .. } => None,
        };
        (base, site)
    }

    /// The knowledge to check a message with; reloads first when a file
    /// changed (looked at most every [`RECHECK`]).
    pub fn current(&self) -> Arc<Knowledge> {
        let changed = match self.seen.lock() {
            Ok(mut seen) if seen.0.elapsed() >= RECHECK => {
                seen.0 = Instant::now();
                let now = self.stamp();
                let changed = now != seen.1;
                seen.1 = now;
                changed
            }
            _ => false,
        };
        if changed {
            self.reload();
        }
        self.loaded()
    }

    /// The knowledge in use, without looking for new files: for readers on
    /// the async runtime (statistics), which must not read models.
    pub fn loaded(&self) -> Arc<Knowledge> {
        match self.current.read() {
            Ok(k) => k.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn install(&self, k: Knowledge) {
        match self.current.write() {
            Ok(mut c) => *c = Arc::new(k),
            Err(p) => *p.into_inner() = Arc::new(k),
        }
    }

    /// Loads again (a new configuration, or new learning); a model that
    /// cannot be read leaves the one in use. A Redis site is not read here
    /// (this may run on a scan worker): its poller keeps it.
    pub fn reload(&self) {
        let cfg = match self.config.read() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        };
        let from_file = matches!(self.store, Store::Dir(_));
        let (mut k, problems, (base_failed, site_failed)) = Knowledge::load_parts(&cfg, from_file);
        let old = self.loaded();
        for p in &problems {
            tracing::error!(target: "scan", problem = %p, "Cannot load spam knowledge; the models in use stay.");
        }
        // Keep what was good before for whatever failed now.
        if site_failed {
            k.classifier.site = old.classifier.site.clone();
        }
        if base_failed {
            k.classifier.base = old.classifier.base.clone();
        }
        k.classifier.unavailable = self.store_down.load(Ordering::Relaxed);
        tracing::info!(target: "scan", spam = k.classifier.spam_messages(), ham = k.classifier.ham_messages(),
            rules = k.rules.len(), "Spam knowledge loaded.");
        self.install(k);
    }

    /// The knowledge in use with another site model or availability (the
    /// Redis poller): everything else is shared, not copied.
    fn with_site(&self, site: Option<Arc<Model>>, unavailable: bool) {
        let old = self.loaded();
        let k = Knowledge {
            rules: old.rules.clone(),
            classifier: Classifier {
                base: old.classifier.base.clone(),
                site: site.unwrap_or_else(|| old.classifier.site.clone()),
                min_learnt: old.classifier.min_learnt,
                unavailable,
            },
            dnsbl: old.dnsbl.clone(),
            blacklist: old.blacklist.clone(),
            whitelist: old.whitelist.clone(),
            traps: old.traps.clone(),
        };
        self.install(k);
    }

    /// A new configuration (SIGHUP): its rules and `min_learnt`.
    pub fn reconfigure(&self, cfg: Arc<Config>) {
        match self.config.write() {
            Ok(mut c) => *c = cfg,
            Err(p) => *p.into_inner() = cfg,
        }
        self.reload();
    }
}

/// The Redis poller: every [`RECHECK`], the version; a new one, the model.
/// Ends when the knowledge is dropped.
fn poll_redis(shared: &Weak<Shared>) {
    let mut seen: Option<Version> = None;
    loop {
        let Some(s) = shared.upgrade() else { return };
        let was_down = s.store_down.load(Ordering::Relaxed);
        let result = s.store.version().and_then(|v| {
            if Some(v) == seen && !was_down {
                return Ok(None);
            }
            s.store.read().map(|m| Some((v, m)))
        });
        match result {
            Ok(None) => {}
            Ok(Some((v, model))) => {
                seen = Some(v);
                s.store_down.store(false, Ordering::Relaxed);
                if was_down {
                    tracing::info!(target: "scan", store = %s.store.describe(), "The spam store answers again; the classifier is back.");
                }
                tracing::info!(target: "scan", spam = model.spam_messages, ham = model.ham_messages,
                    store = %s.store.describe(), "Spam learning loaded from the shared store.");
                s.with_site(Some(Arc::new(model)), false);
            }
            Err(e) => {
                if !was_down {
                    tracing::error!(target: "scan", error = %e,
                        "Cannot read the spam store; the classifier abstains until it can (mail still flows).");
                    s.store_down.store(true, Ordering::Relaxed);
                    s.with_site(None, true);
                }
            }
        }
        drop(s);
        std::thread::sleep(RECHECK);
    }
}
