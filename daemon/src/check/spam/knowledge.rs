//! What the spam check knows, shared by the scan workers: the content rules
//! and the classifier's models. The site's learning is a file that
//! `mailward spam learn` rewrites (atomically); the daemon notices a new one
//! within [`RECHECK`] and swaps it in without a restart. A damaged file is
//! refused and the models in use stay.
//!
//! Files, under `[spam] dir` (default `DATA_DIR/spam`):
//! - `site.model`: what this site learnt (and which messages);
//! - `base.model`: an installed base (`mailward spam import --base`), the
//!   previous one kept as `base.model.bak` for `spam rollback`.

use super::classifier::Classifier;
use super::model::{Model, ModelError};
use super::rules::{self, Rule};
use crate::config::Config;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

/// How often the daemon looks for new learning.
const RECHECK: Duration = Duration::from_secs(2);

pub const SITE: &str = "site.model";
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
}

impl Knowledge {
    /// Reads everything the configuration names. Problems with a model are
    /// returned beside what could be loaded (an empty model in its place):
    /// mail is still checked by the rules.
    pub fn load(cfg: &Config) -> (Knowledge, Vec<String>) {
        let (k, problems, _) = Knowledge::load_parts(cfg);
        (k, problems)
    }

    /// As [`Knowledge::load`], also saying which models could not be read
    /// (base, site), so that a reload keeps the ones in use for those.
    fn load_parts(cfg: &Config) -> (Knowledge, Vec<String>, (bool, bool)) {
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
            Ok(base) => classifier.base = base,
            Err(e) => {
                failed.0 = true;
                problems.push(e.to_string());
            }
        }
        match Model::read(&cfg.spam.dir.join(SITE)) {
            Ok(site) => classifier.site = site.unwrap_or_default(),
            Err(e) => {
                failed.1 = true;
                problems.push(e.to_string());
            }
        }
        let k = Knowledge {
            rules,
            classifier,
            dnsbl: cfg.spam.dnsbl.clone(),
            blacklist: cfg.spam.blacklist.clone(),
            whitelist: cfg.spam.whitelist.clone(),
        };
        (k, problems, failed)
    }
}

/// The knowledge in use, reloaded when its files change.
pub struct Shared {
    dir: PathBuf,
    current: RwLock<Arc<Knowledge>>,
    /// When the files were last looked at, and their modification times.
    seen: Mutex<(Instant, Stamp)>,
    config: RwLock<Arc<Config>>,
}

type Stamp = (Option<SystemTime>, Option<SystemTime>);

fn stamp(dir: &Path) -> Stamp {
    let m = |f: &str| {
        std::fs::metadata(dir.join(f))
            .and_then(|m| m.modified())
            .ok()
    };
    (m(BASE), m(SITE))
}

impl Shared {
    pub fn open(cfg: Arc<Config>) -> (Arc<Shared>, Vec<String>) {
        let (k, problems) = Knowledge::load(&cfg);
        let dir = cfg.spam.dir.clone();
        let shared = Shared {
            seen: Mutex::new((Instant::now(), stamp(&dir))),
            dir,
            current: RwLock::new(Arc::new(k)),
            config: RwLock::new(cfg),
        };
        (Arc::new(shared), problems)
    }

    /// The knowledge to check a message with; reloads first when a file
    /// changed (looked at most every [`RECHECK`]).
    pub fn current(&self) -> Arc<Knowledge> {
        let changed = match self.seen.lock() {
            Ok(mut seen) if seen.0.elapsed() >= RECHECK => {
                seen.0 = Instant::now();
                let now = stamp(&self.dir);
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

    /// Loads again (a new configuration, or new learning); a model that
    /// cannot be read leaves the one in use.
    pub fn reload(&self) {
        let cfg = match self.config.read() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        };
        let (mut k, problems, (base_failed, site_failed)) = Knowledge::load_parts(&cfg);
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
        tracing::info!(target: "scan", spam = k.classifier.spam_messages(), ham = k.classifier.ham_messages(),
            rules = k.rules.len(), "Spam knowledge loaded.");
        match self.current.write() {
            Ok(mut c) => *c = Arc::new(k),
            Err(p) => *p.into_inner() = Arc::new(k),
        }
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

/// Reads the site model for changing it (the CLI).
pub fn read_site(dir: &Path) -> Result<Model, ModelError> {
    Ok(Model::read(&dir.join(SITE))?.unwrap_or_default())
}
