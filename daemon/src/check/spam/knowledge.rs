//! What the spam check knows, shared by the scan workers: the content rules
//! and the classifier's models. The site's learning is in its store
//! ([`super::store`]): `site.model` and `site.journal`, which `mailward
//! spam learn` and autolearn change, or a Redis server. A thread of its own
//! (`spam-knowledge`) looks at the files and the store every [`RECHECK`]
//! and swaps new learning in without a restart, so that no scan worker
//! ever waits for a model to be read: it applies the journal's new records
//! to a copy of the model in use, and reads the whole learning only when
//! the snapshot was rewritten. A damaged model is refused and the one in
//! use stays; a Redis that cannot be read makes the classifier abstain
//! until it can be again.
//!
//! Files, under `[spam] dir` (default `DATA_DIR/spam`):
//! - `site.model` and `site.journal`: what this site learnt (and which
//!   messages), unless `[spam] store` names a Redis;
//! - `base.model`: an installed base (`mailward spam import --base`), the
//!   previous one kept as `base.model.bak` for `spam rollback`.

use super::classifier::{Classifier, Readiness};
use super::model::{Model, ModelError};
use super::rules::{self, RuleSet};
use super::store::{Cursor, Limits, Since, Store, StoreError, Version, REDIS_TIMEOUT};
use crate::config::Config;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, SystemTime};

/// How often the daemon looks for new learning.
const RECHECK: Duration = Duration::from_secs(2);

pub use super::store::SITE;
pub const BASE: &str = "base.model";

/// Rules and models, as one immutable value.
#[derive(Debug, Default)]
pub struct Knowledge {
    pub rules: RuleSet,
    pub classifier: Classifier,
    /// `[spam] dnsbl`: what a listing of the client is worth.
    pub dnsbl: Vec<crate::config::ScoredZone>,
    /// `[spam] blacklist` and `whitelist`.
    pub blacklist: Vec<crate::config::GroupEntry>,
    pub whitelist: Vec<crate::config::GroupEntry>,
    /// `[spam] traps`.
    pub traps: Vec<crate::config::Pattern>,
    /// `[network] relay_networks`: who is one of ours
    /// ([`crate::standing::Standing`]).
    pub relay_networks: Vec<ipnet::IpNet>,
}

/// Which part of the spam knowledge cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    /// `base.model`.
    Base,
    /// The site's learning in its directory (`site.model`, `site.journal`).
    Site,
    /// The site's learning in a shared store (Redis).
    Store,
}

/// A model, or the store, that cannot be read: what `mailward status`,
/// `spam status` and `spam check` say of it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Unreadable {
    pub part: Part,
    /// The file, or the store's URL (without its password).
    pub path: String,
    /// Why, as read (`not a Mailward spam model (checksum mismatch: ...)`).
    pub reason: String,
    /// What was read of it before stays in use (a file damaged while the
    /// daemon runs): the classifier still speaks, until a restart.
    pub in_use_stays: bool,
}

impl Unreadable {
    pub fn of(part: Part, e: &StoreError) -> Unreadable {
        let (path, reason) = match e {
            StoreError::Model(ModelError::Invalid { path, problem }) => (
                path.display().to_string(),
                format!("not a Mailward spam model ({problem})"),
            ),
            StoreError::Model(ModelError::Io { path, source })
            | StoreError::Io { path, source } => (path.display().to_string(), source.to_string()),
            StoreError::Redis { url, message } => (url.clone(), message.clone()),
        };
        Unreadable {
            part,
            path,
            reason,
            in_use_stays: false,
        }
    }

    /// What to do about it, as a sentence's end (`spam status`, `mailward
    /// status`): the way out walkR found for a damaged file (finding 1).
    pub fn next_step(&self) -> &'static str {
        self.part.next_step()
    }
}

impl Part {
    /// What to do about a part that cannot be read, as a sentence's end.
    pub fn next_step(self) -> &'static str {
        match self {
            Part::Site => "move it away and `mailward spam import` your last export (`mailward spam export` writes one), or remove it to start learning over; a running daemon picks either up within seconds",
            Part::Base => "move it away and install a good base (`mailward spam import --base FILE`, or `mailward spam rollback` to the previous one), or remove it to run without a base; a running daemon picks either up within seconds",
            Part::Store => "the classifier is back within seconds of the store answering again",
        }
    }
}

impl std::fmt::Display for Unreadable {
    /// As the error read it: `PATH: REASON` (`Redis URL: REASON`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.part {
            Part::Store => write!(f, "Redis {}: {}", self.path, self.reason),
            _ => write!(f, "{}: {}", self.path, self.reason),
        }
    }
}

/// A shared store that came back empty after holding learning (a Redis
/// restarted without persistence, flushed, or a fresh replica): what it
/// held before, for `mailward status` (walkR finding 2).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Emptied {
    /// The store's URL (without its password).
    pub store: String,
    /// The learning in use before it came back empty.
    pub spam: u64,
    pub ham: u64,
}

/// What [`Knowledge::load_parts`] read.
pub struct Loaded {
    pub knowledge: Knowledge,
    /// Why the site's rules file (`[spam] rules`) cannot be used: the
    /// built-in rules alone are loaded.
    pub rules: Option<String>,
    /// The models (or the store) that could not be read: an empty model
    /// stands in for each, and the classifier is unavailable (it abstains
    /// rather than speak from part of the learning; the rules weigh
    /// double), as when a Redis store does not answer.
    pub unreadable: Vec<Unreadable>,
}

impl Loaded {
    /// Every problem as one sentence each.
    pub fn problems(&self) -> Vec<String> {
        self.rules
            .iter()
            .cloned()
            .chain(self.unreadable.iter().map(ToString::to_string))
            .collect()
    }
}

impl Knowledge {
    /// Reads everything the configuration names. Problems with a model are
    /// returned beside what could be loaded (an empty model in its place,
    /// the classifier unavailable): mail is still checked by the rules.
    pub fn load(cfg: &Config) -> (Knowledge, Vec<String>) {
        let loaded = Knowledge::load_parts(cfg, true);
        let problems = loaded.problems();
        (loaded.knowledge, problems)
    }

    /// As [`Knowledge::load`] without the site's learning (an empty model
    /// in its place): for `spam status`, which reads the store itself, once.
    pub fn load_without_site(cfg: &Config) -> (Knowledge, Vec<String>) {
        let loaded = Knowledge::load_parts(cfg, false);
        let problems = loaded.problems();
        (loaded.knowledge, problems)
    }

    /// As [`Knowledge::load`], saying apart what could not be read.
    /// `site`: read the site's store too (false: leave it empty, for the
    /// caller to fill).
    pub fn load_parts(cfg: &Config, site: bool) -> Loaded {
        let mut rules_problem = None;
        let mut unreadable = Vec::new();
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
                    // A site rule of a built-in name replaces it. One of
                    // weight 0 switches the rule off (docs/spam.md): it is
                    // dropped, not run and listed as `NAME=+0.0` in every
                    // verdict (and not counted among the rules in use).
                    rules.retain(|r| !extra.iter().any(|e| e.name == r.name));
                    rules.extend(extra.into_iter().filter(|e| e.weight != 0.0));
                }
                Err(e) => rules_problem = Some(format!("spam rules {}: {e}", file.display())),
            }
        }
        let mut classifier = Classifier {
            min_learnt: cfg.spam.min_learnt,
            ..Classifier::default()
        };
        match Model::read(&cfg.spam.dir.join(BASE)) {
            Ok(base) => classifier.base = base.map(Arc::new),
            Err(e) => unreadable.push(Unreadable::of(Part::Base, &e.into())),
        }
        if site {
            match Store::of(&cfg.spam).and_then(|s| s.read()) {
                Ok(m) => classifier.site = Arc::new(m),
                Err(e) => unreadable.push(Unreadable::of(site_part(cfg), &e)),
            }
        }
        // A model that should be there and cannot be read: the classifier
        // abstains, as for a Redis that does not answer, rather than speak
        // from part of the learning (walkR finding 1: a damaged
        // site.model read as "learnt 0", and nothing said so).
        classifier.unavailable = !unreadable.is_empty();
        let knowledge = Knowledge {
            rules: rules.into(),
            classifier,
            dnsbl: cfg.spam.dnsbl.clone(),
            blacklist: cfg.spam.blacklist.clone(),
            whitelist: cfg.spam.whitelist.clone(),
            traps: cfg.spam.traps.clone(),
            relay_networks: cfg.network.relay_networks.clone(),
        };
        Loaded {
            knowledge,
            rules: rules_problem,
            unreadable,
        }
    }
}

/// The part a configuration's site learning is: its directory, or a
/// shared store.
fn site_part(cfg: &Config) -> Part {
    if cfg.spam.store.is_empty() {
        Part::Site
    } else {
        Part::Store
    }
}

/// The knowledge in use, reloaded when its files or its store change.
pub struct Shared {
    store: Store,
    base_path: std::path::PathBuf,
    current: RwLock<Arc<Knowledge>>,
    /// What the base file was at the last look.
    seen: Mutex<Option<SystemTime>>,
    /// Where the site's learning in use was read up to.
    site_at: Mutex<Option<Cursor>>,
    /// Held while new knowledge is built from the knowledge in use and
    /// installed (the watcher, a reload): two at once would lose one's
    /// change, and the watcher's cursor would run ahead of its model.
    installing: Mutex<()>,
    config: RwLock<Arc<Config>>,
    /// The Redis store could not be read at the last look.
    store_down: AtomicBool,
    /// What cannot be read now, for `mailward status` (walkR finding 1).
    damage: Mutex<Damage>,
    /// The counts of a shared store last kept in `DATA_DIR`
    /// ([`super::held`]); None before the first.
    held: Mutex<Option<(u64, u64)>>,
    /// Autolearn's thread (`[spam] autolearn`).
    learner: Option<super::autolearn::Learner>,
}

/// What of the knowledge cannot be read now.
#[derive(Debug, Default)]
struct Damage {
    /// `base.model`.
    base: Option<Unreadable>,
    /// The site's learning in its directory.
    site: Option<Unreadable>,
    /// The shared store (while `store_down`).
    store: Option<Unreadable>,
    /// The shared store came back empty, and has learnt nothing since.
    emptied: Option<Emptied>,
}

impl Damage {
    fn all(&self) -> impl Iterator<Item = &Unreadable> {
        [&self.base, &self.site, &self.store]
            .into_iter()
            .filter_map(Option::as_ref)
    }

    /// Whether the classifier must abstain: some part of its learning is
    /// missing (not one kept in use from before).
    fn unavailable(&self) -> bool {
        self.all().any(|u| !u.in_use_stays)
    }
}

impl Shared {
    pub fn open(cfg: Arc<Config>) -> (Arc<Shared>, Vec<String>) {
        let mut problems = Vec::new();
        let store = match Store::of(&cfg.spam) {
            Ok(s) => s,
            Err(e) => {
                problems.push(e.to_string());
                Store::dir(&cfg.spam.dir, Limits::of(&cfg.spam))
            }
        };
        let loaded = Knowledge::load_parts(&cfg, false);
        problems.extend(loaded.problems());
        let mut damage = Damage {
            base: loaded.unreadable.into_iter().find(|u| u.part == Part::Base),
            ..Damage::default()
        };
        let mut k = loaded.knowledge;
        // The version before the site is read: a change in between only
        // makes the watcher look once more, never miss it; and a damaged
        // file reported here is not reported again until it changes.
        let (version, first) = first_read(&store);
        // The site with where it was read up to, for the watcher to go on.
        let site_at = match first {
            Ok((model, at)) => {
                k.classifier.site = Arc::new(model);
                Some(at)
            }
            Err(e) if store.is_shared() => {
                // The line the running daemon logs when Redis goes away
                // (docs/spam.md), and the watcher's "answers again" once
                // it is back: the classifier is unavailable meanwhile
                // (walkAV F8: not "abstains", the word for too little
                // learnt), the rules weigh double, mail flows.
                tracing::error!(target: "scan", error = %e,
                    "Cannot read the spam store; the classifier is unavailable until it can (mail still flows; the rules weigh double).");
                damage.store = Some(Unreadable::of(Part::Store, &e));
                None
            }
            Err(e) => {
                // A damaged site.model: nothing of it is in use, so the
                // classifier is unavailable until it is repaired, and
                // `mailward status` says so for as long (walkR finding 1).
                problems.push(e.to_string());
                damage.site = Some(Unreadable::of(Part::Site, &e));
                None
            }
        };
        let down = damage.store.is_some();
        let read_at_start = site_at.is_some();
        k.classifier.unavailable = damage.unavailable();
        let shared = Arc::new_cyclic(|me: &std::sync::Weak<Shared>| {
            let me = me.clone();
            let base_of = me.clone();
            let learner = super::autolearn::Learner::start(
                store.clone(),
                Box::new(move || me.upgrade()?.site_in_use()),
                Box::new(move || base_of.upgrade()?.loaded().classifier.base.clone()),
            );
            Shared {
                learner,
                base_path: cfg.spam.dir.join(BASE),
                seen: Mutex::new(None),
                site_at: Mutex::new(site_at),
                installing: Mutex::new(()),
                store,
                current: RwLock::new(Arc::new(k)),
                config: RwLock::new(cfg),
                store_down: AtomicBool::new(down),
                damage: Mutex::new(damage),
                held: Mutex::new(None),
            }
        });
        // A shared store read empty at the start, though it held learning
        // when this gateway last read it: lost while no gateway watched
        // (walkBH F12), said as the watcher says a loss it sees.
        if read_at_start && shared.store.is_shared() {
            let site = shared.loaded().classifier.site.clone();
            let data_dir = &shared.config().server.data_dir;
            match super::held::read(data_dir, &shared.store.describe()) {
                Some(h) if site.spam_messages + site.ham_messages == 0 => {
                    let before = Model {
                        spam_messages: h.spam,
                        ham_messages: h.ham,
                        ..Model::default()
                    };
                    note_emptied(&shared, &before, &site);
                }
                _ => keep_held(&shared),
            }
        }
        if let Ok(mut seen) = shared.seen.lock() {
            *seen = shared.stamp();
        }
        // Whether the classifier speaks, said at the start (walkAV F5: the
        // log never said it abstains, nor how far it is from min_learnt)
        // and again whenever it changes ([`Shared::install`]).
        let now = shared.loaded();
        let c = &now.classifier;
        if c.readiness() != Readiness::Unavailable {
            log_readiness(
                c.readiness(),
                c.spam_messages(),
                c.ham_messages(),
                c.min_learnt,
            );
        }
        let weak = Arc::downgrade(&shared);
        let spawned = std::thread::Builder::new()
            .name("spam-knowledge".into())
            .spawn(move || watch(&weak, version));
        if let Err(e) = spawned {
            problems.push(format!(
                "cannot start the spam knowledge watcher (new learning needs a restart): {e}"
            ));
        }
        (shared, problems)
    }

    /// The site's store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// What of the spam knowledge cannot be read now (a damaged
    /// `base.model` or `site.model`, a Redis that does not answer), for
    /// `mailward status`.
    pub fn unreadable(&self) -> Vec<Unreadable> {
        self.damaged(|d| d.all().cloned().collect())
    }

    /// The shared store came back empty after holding learning, and has
    /// learnt nothing since (None: it did not).
    pub fn emptied(&self) -> Option<Emptied> {
        self.damaged(|d| d.emptied.clone())
    }

    /// Looks at (or changes) what cannot be read.
    fn damaged<R>(&self, f: impl FnOnce(&mut Damage) -> R) -> R {
        match self.damage.lock() {
            Ok(mut d) => f(&mut d),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    /// Learns one message as `class` now, into the site's store: an
    /// administrator's verdict (a quarantined message released as not
    /// spam, or removed as spam indeed). Unlike autolearn it is not queued or dropped; the watcher
    /// reads the new model within [`RECHECK`] like any other change.
    pub fn learn_now(
        &self,
        raw: &[u8],
        class: super::model::Class,
    ) -> Result<super::model::Learnt, super::store::StoreError> {
        // A quarantined copy as it came, without what a gateway marked on
        // it (walkR finding 7).
        let marks = super::tokens::Marks::of(&self.config());
        let (digest, tokens) = super::for_learning(&super::tokens::unmark(raw, &marks));
        // Beside the installed base (`Changing::learn_beside_base` in the spam store).
        let in_base = self
            .loaded()
            .classifier
            .base
            .as_ref()
            .and_then(|b| b.learnt.get(&digest).copied());
        let from = self.site_in_use();
        self.store
            .update_from(from.as_ref().map(|(m, at)| (&**m, *at)), |model| {
                let learnt = model.learn_beside_base(in_base, digest, &tokens, class);
                super::store::Edit::when(learnt != super::model::Learnt::Already, learnt)
            })
            .map(|(learnt, _)| learnt)
    }

    /// Autolearn: when `[spam] autolearn` is on and the verdict teaches
    /// something ([`super::autolearn::lesson`]), the message is queued to be
    /// learnt.
    pub fn autolearn(&self, raw: &Arc<Vec<u8>>, evidence: &super::Evidence) {
        let cfg = self.config();
        if let (true, Some(learner), Some(class)) = (
            cfg.spam.autolearn,
            &self.learner,
            super::autolearn::lesson(evidence),
        ) {
            // Not into a shared store that came back empty (note_emptied):
            // the first confident verdict ended the problem there before
            // an administrator saw it, and the import that restores the
            // learning then refused the message it had learnt (walkBG 4).
            if self.emptied().is_some() {
                return;
            }
            // Learnt as `spam learn` learns it: without verdict fields a
            // sender wrote in our name, nor a subject mark it came with.
            let raw = match super::tokens::unmark(raw, &super::tokens::Marks::of(&cfg)) {
                std::borrow::Cow::Borrowed(_) => raw.clone(),
                std::borrow::Cow::Owned(v) => Arc::new(v),
            };
            learner.offer(raw, class);
        }
    }

    /// The configuration in use.
    fn config(&self) -> Arc<Config> {
        match self.config.read() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// The base file's time.
    fn stamp(&self) -> Option<SystemTime> {
        std::fs::metadata(&self.base_path)
            .and_then(|m| m.modified())
            .ok()
    }

    /// Reloads when the base file changed since the last look (the
    /// watcher).
    fn look_at_base(&self) {
        let now = self.stamp();
        let changed = match self.seen.lock() {
            Ok(mut seen) => std::mem::replace(&mut *seen, now) != now,
            Err(p) => std::mem::replace(&mut *p.into_inner(), now) != now,
        };
        if changed {
            self.reload();
        }
    }

    /// The site's model in use and the cursor it was read at, as one pair
    /// (taken under `installing`, which the watcher holds while it moves
    /// both): where autolearn starts a batch instead of reading the whole
    /// learning. None before the store could be read once.
    fn site_in_use(&self) -> Option<(Arc<Model>, Cursor)> {
        let _installing = self.installing.lock().unwrap_or_else(|p| p.into_inner());
        let at = match self.site_at.lock() {
            Ok(a) => *a,
            Err(p) => *p.into_inner(),
        }?;
        Some((self.loaded().classifier.site.clone(), at))
    }

    /// Where the site's learning in use was read up to (None: it was
    /// never read).
    fn site_read_at(&self) -> Option<Cursor> {
        match self.site_at.lock() {
            Ok(a) => *a,
            Err(p) => *p.into_inner(),
        }
    }

    /// What changed in the site's store since the learning in use was
    /// read, and where that leaves the reader (network or file reads: the
    /// caller installs it).
    fn fetch_site(&self) -> Result<(Since, Cursor), super::store::StoreError> {
        match self.site_read_at() {
            Some(c) => self.store.read_since(c),
            None => self.store.read_at().map(|(m, c)| (Since::Whole(m), c)),
        }
    }

    /// Installs what [`Shared::fetch_site`] found: the model in use with
    /// the journal's new records applied (on a copy: scan workers may be
    /// reading it), or the whole learning. Returns the new model, how it
    /// was read ("journal" or "snapshot") and how many journal records were
    /// applied; None when nothing changed. The caller holds `installing`.
    fn install_site(
        &self,
        since: Since,
        cursor: Cursor,
    ) -> Option<(Arc<Model>, &'static str, usize)> {
        match self.site_at.lock() {
            Ok(mut a) => *a = Some(cursor),
            Err(p) => *p.into_inner() = Some(cursor),
        }
        let (model, read, n) = match since {
            Since::Whole(m) => (Arc::new(m), "snapshot", 0),
            Since::Changes(c) if c.is_empty() => return None,
            Since::Changes(changes) => {
                let mut m = Model::clone(&self.loaded().classifier.site);
                for c in &changes {
                    m.apply(c);
                }
                (Arc::new(m), "journal", changes.len())
            }
        };
        self.with_site(Some(model.clone()));
        Some((model, read, n))
    }

    /// The knowledge in use (never reads a file or the store: the watcher
    /// keeps it up to date, so scan workers and the statistics may call it).
    pub fn loaded(&self) -> Arc<Knowledge> {
        match self.current.read() {
            Ok(k) => k.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn install(&self, k: Knowledge) {
        let before = self.loaded().classifier.readiness();
        let after = k.classifier.readiness();
        let (spam, ham, min_learnt) = (
            k.classifier.spam_messages(),
            k.classifier.ham_messages(),
            k.classifier.min_learnt,
        );
        match self.current.write() {
            Ok(mut c) => *c = Arc::new(k),
            Err(p) => *p.into_inner() = Arc::new(k),
        }
        // Becoming unavailable has its own ERROR line; becoming active or
        // abstaining again (a store back empty) is said here.
        if after != before && after != Readiness::Unavailable {
            log_readiness(after, spam, ham, min_learnt);
        }
    }

    /// Loads again (a new configuration, or a new base); a model that
    /// cannot be read leaves the one in use. The site's learning is not
    /// read here: the watcher follows it (and a SIGHUP must not wait for
    /// Redis).
    pub fn reload(&self) {
        let cfg = match self.config.read() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        };
        let loaded = Knowledge::load_parts(&cfg, false);
        let _installing = self.installing.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.loaded();
        for p in loaded.problems() {
            tracing::error!(target: "scan", problem = %p, "Cannot load spam knowledge; the models in use stay.");
        }
        let rules_failed = loaded.rules.is_some();
        let mut k = loaded.knowledge;
        // The site's learning is the watcher's: it stays.
        k.classifier.site = old.classifier.site.clone();
        // Keep the base in use for one that cannot be read.
        let base = loaded
            .unreadable
            .into_iter()
            .find(|u| u.part == Part::Base)
            .map(|mut u| {
                k.classifier.base = old.classifier.base.clone();
                u.in_use_stays = old.classifier.base.is_some();
                u
            });
        let (spam, ham, rules) = (
            k.classifier.spam_messages(),
            k.classifier.ham_messages(),
            k.rules.len(),
        );
        // Which base is in use now (an installed or rolled-back one shows
        // here, walkBW 3).
        let in_base = k.classifier.base.as_ref().map_or_else(
            || "none".to_string(),
            |b| format!("{} spam, {} ham", b.spam_messages, b.ham_messages),
        );
        // Which was loaded, after the ERROR above: "Spam knowledge loaded"
        // alone read as if the damaged base had been (walkR finding 1).
        match &base {
            None if rules_failed => {
                tracing::info!(target: "scan", spam, ham, base = %in_base, rules,
                "Spam knowledge loaded with the built-in rules only (the site's rules cannot be used).")
            }
            None => {
                tracing::info!(target: "scan", spam, ham, base = %in_base, rules, "Spam knowledge loaded.")
            }
            Some(u) if u.in_use_stays => tracing::info!(target: "scan", spam, ham, rules,
                "Spam rules loaded; the base in use stays (the base file cannot be read)."),
            Some(_) => tracing::warn!(target: "scan", spam, ham, rules,
                "Spam rules loaded without a base (the base file cannot be read): the classifier is unavailable until it can be."),
        }
        self.damaged(|d| d.base = base);
        k.classifier.unavailable = self.unavailable();
        self.install(k);
    }

    /// Whether the classifier must abstain now: its Redis store does not
    /// answer, or a model it should have cannot be read.
    fn unavailable(&self) -> bool {
        self.store_down.load(Ordering::Relaxed) || self.damaged(|d| d.unavailable())
    }

    /// The knowledge in use with another site model, or the availability
    /// of now (the watcher): everything else is shared, not copied.
    fn with_site(&self, site: Option<Arc<Model>>) {
        let unavailable = self.unavailable();
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
            relay_networks: old.relay_networks.clone(),
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

/// The line that says whether the classifier speaks.
fn log_readiness(r: Readiness, spam: u64, ham: u64, min_learnt: u64) {
    if r == Readiness::Active {
        tracing::info!(target: "scan", spam, ham, min_learnt,
            "Spam classifier active: it has learnt spam.min_learnt messages of each class; its verdict counts beside the rules.");
    } else {
        tracing::info!(target: "scan", spam, ham, min_learnt,
            "Spam classifier abstaining: it has not learnt spam.min_learnt messages of each class yet; until it has, the rules weigh double.");
    }
}

/// One step of [`first_read`]'s thread.
enum FirstStep {
    Version(Result<Version, super::store::StoreError>),
    Read(Result<(Model, Cursor), super::store::StoreError>),
}

/// The store's version and learning at the daemon's start. A Redis store
/// is asked from a thread of its own, and the start waits at most one
/// [`REDIS_TIMEOUT`] for its first answer (the version, one GET): a Redis
/// that accepts connections and never answers held the start up for about
/// 4 s (a timeout for each connection's setup and each command; walkJ
/// F3). Once it answered, its learning is read to the end (each command
/// has its own timeout). A directory store is read here.
fn first_read(
    store: &Store,
) -> (
    Option<Version>,
    Result<(Model, Cursor), super::store::StoreError>,
) {
    if !store.is_shared() {
        if let Some(path) = store.foreign_journal() {
            tracing::warn!(target: "scan", journal = %path.display(),
                "The spam journal is damaged at its start or not one this Mailward reads: its learning is not counted; the next change keeps it aside (mailward spam status).");
        }
        return (store.version().ok(), store.read_at());
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let asked = store.clone();
    let spawned = std::thread::Builder::new()
        .name("spam-store-start".into())
        .spawn(move || match asked.version() {
            Ok(v) => {
                // Nobody waits any more after a timeout: then stop.
                if tx.send(FirstStep::Version(Ok(v))).is_ok() {
                    let _ = tx.send(FirstStep::Read(asked.read_at()));
                }
            }
            Err(e) => {
                let _ = tx.send(FirstStep::Version(Err(e)));
            }
        });
    if spawned.is_err() {
        return (store.version().ok(), store.read_at());
    }
    match rx.recv_timeout(REDIS_TIMEOUT) {
        Ok(FirstStep::Version(Ok(v))) => match rx.recv() {
            Ok(FirstStep::Read(read)) => (Some(v), read),
            _ => (Some(v), Err(store.no_answer())),
        },
        Ok(FirstStep::Version(Err(e))) => (None, Err(e)),
        _ => (None, Err(store.no_answer())),
    }
}

/// The watcher: every [`RECHECK`], the base file, then the site's version
/// and, when it moved, what changed. `seen` is the version the start read
/// the site at. Ends when the knowledge is dropped.
fn watch(shared: &Weak<Shared>, mut seen: Option<Version>) {
    loop {
        std::thread::sleep(RECHECK);
        let Some(s) = shared.upgrade() else { return };
        s.look_at_base();
        poll_site(&s, &mut seen);
    }
}

/// A shared store read whole again: when it is empty and the learning in
/// use was not, its learning was lost (a Redis restarted without
/// persistence, flushed, a fresh replica after a failover), and every
/// gateway follows it to nothing; said loudly, and kept as a problem until
/// it learns again (walkR finding 2: the log said only "the classifier is
/// back"). Learning back in it ends the problem.
fn note_emptied(s: &Shared, before: &Model, now: &Model) {
    let held = before.spam_messages + before.ham_messages;
    if s.store.is_shared() && held > 0 && now.spam_messages + now.ham_messages == 0 {
        let emptied = Emptied {
            store: s.store.describe(),
            spam: before.spam_messages,
            ham: before.ham_messages,
        };
        tracing::warn!(target: "scan", spam = emptied.spam, ham = emptied.ham, store = %emptied.store,
            "The spam store is empty, though it held the spam and ham counted here (a Redis restarted without persistence, or flushed?): every gateway sharing it lost that learning. Restore it with `mailward spam import EXPORT` (your last `mailward spam export`).");
        s.damaged(|d| d.emptied = Some(emptied));
        if s.config().spam.autolearn {
            tracing::warn!(target: "scan", store = %s.store.describe(),
                "Autolearn waits until the spam store is restored with `mailward spam import EXPORT`: what it learnt meanwhile would end this problem with the learning still lost, and make the import refuse its messages (so would a `spam learn` before the import).");
        }
    }
}

/// Keeps what a shared store holds now in `DATA_DIR` ([`super::held`])
/// when it changed, for the next start to compare; not while the store is
/// emptied (what it held is what the next start must still be told).
fn keep_held(s: &Shared) {
    if !s.store.is_shared() || s.emptied().is_some() {
        return;
    }
    let site = s.loaded().classifier.site.clone();
    let counts = (site.spam_messages, site.ham_messages);
    let mut kept = s.held.lock().unwrap_or_else(|p| p.into_inner());
    if *kept == Some(counts) {
        return;
    }
    let data_dir = s.config().server.data_dir.clone();
    let held = Emptied {
        store: s.store.describe(),
        spam: counts.0,
        ham: counts.1,
    };
    if let Err(e) = super::held::write(&data_dir, &held) {
        // Once per count: the cost is only a loss a restart cannot tell.
        tracing::warn!(target: "scan", file = %data_dir.join(super::held::FILE).display(), error = %e,
            "Cannot keep what the spam store holds; a start after the store lost its learning will not notice it.");
    }
    *kept = Some(counts);
}

/// One look at the site's store: the version; a new one, what changed.
/// A Redis that cannot be read makes the classifier abstain; a damaged file
/// leaves the model in use (and is said once per change of the files), and
/// is a standing problem until it can be read again.
fn poll_site(s: &Shared, seen: &mut Option<Version>) {
    let was_down = s.store_down.load(Ordering::Relaxed);
    let standing = was_down || s.damaged(|d| d.site.is_some());
    let mut version = None;
    let result = s.store.version().and_then(|v| {
        version = Some(v);
        if Some(v) == *seen && !was_down {
            return Ok(None);
        }
        let fetched = s.fetch_site()?;
        if snapshot_to_check(*seen, v, &fetched.0, standing) {
            s.store.check_snapshot()?;
        }
        Ok(Some(fetched))
    });
    let _installing = s.installing.lock().unwrap_or_else(|p| p.into_inner());
    match result {
        Ok(None) => {}
        Ok(Some((since, cursor))) => {
            *seen = version;
            let was_unavailable = s.loaded().classifier.unavailable;
            if was_down {
                s.store_down.store(false, Ordering::Relaxed);
                tracing::info!(target: "scan", store = %s.store.describe(), "The spam store answers again; its learning is read again.");
            }
            s.damaged(|d| {
                d.store = None;
                d.site = None;
            });
            let before = s.loaded().classifier.site.clone();
            if let Since::Whole(m) = &since {
                note_emptied(s, &before, m);
            }
            match s.install_site(since, cursor) {
                Some((model, read, changes)) => {
                    tracing::info!(target: "scan", spam = model.spam_messages, ham = model.ham_messages,
                        read = %read, changes, store = %s.store.describe(), "Spam learning loaded from the site's store.");
                }
                None if was_unavailable != s.unavailable() => s.with_site(None),
                None => {}
            }
            let site = s.loaded().classifier.site.clone();
            if site.spam_messages + site.ham_messages > 0 {
                s.damaged(|d| d.emptied = None);
            }
            keep_held(s);
        }
        Err(e) if s.store.is_shared() => {
            if !was_down {
                tracing::error!(target: "scan", error = %e,
                    "Cannot read the spam store; the classifier is unavailable until it can (mail still flows; the rules weigh double).");
                s.store_down.store(true, Ordering::Relaxed);
                s.damaged(|d| d.store = Some(Unreadable::of(Part::Store, &e)));
                s.with_site(None);
            }
        }
        Err(e) => {
            // Not again until the files change again, and said once for
            // the same damage (a journal appended to meanwhile checks the
            // snapshot again).
            *seen = version;
            let mut damaged = Unreadable::of(Part::Site, &e);
            damaged.in_use_stays = s.site_read_at().is_some();
            let again = s.damaged(|d| {
                d.site
                    .as_ref()
                    .is_some_and(|u| u.reason == damaged.reason && u.path == damaged.path)
            });
            if !again {
                tracing::error!(target: "scan", problem = %e, "Cannot load spam knowledge; the models in use stay.");
            }
            s.damaged(|d| d.site = Some(damaged));
            s.with_site(None);
        }
    }
}

/// Whether a look that found the same snapshot (only journal records, or
/// nothing new) must still read the snapshot whole to check it: the
/// snapshot may have been changed in place, which the reader's cursor does
/// not see (a file's size and last four bytes stay, and so does a Redis
/// generation). So when the file's time moved, when the Redis version
/// moved without a new journal element, or while the store or the site is
/// already a problem (walkAB finding 1: `setrange` on the Redis key, or
/// `dd conv=notrunc` on `site.model`, went unnoticed until a restart).
fn snapshot_to_check(seen: Option<Version>, now: Version, since: &Since, standing: bool) -> bool {
    let Since::Changes(changes) = since else {
        // Read whole: checked as it was read.
        return false;
    };
    standing
        || match (seen, now) {
            (Some(Version::File(before, _)), Version::File(after, _)) => before != after,
            (Some(Version::Redis(before)), Version::Redis(after)) => {
                before != after && changes.is_empty()
            }
            _ => false,
        }
}

#[cfg(test)]
mod tests {
    use super::super::classifier::Readiness;
    use super::*;

    /// A configuration whose spam directory is in `dir`, with a model of
    /// `spam` and `ham` messages written to each of `files` there.
    fn with_models(dir: &std::path::Path, files: &[&str], spam: u64, ham: u64) -> Config {
        let mut cfg = crate::config::parse("", "t.toml").unwrap();
        cfg.spam.dir = dir.join("spam");
        std::fs::create_dir_all(&cfg.spam.dir).unwrap();
        for f in files {
            Model {
                spam_messages: spam,
                ham_messages: ham,
                ..Model::default()
            }
            .write(&cfg.spam.dir.join(f))
            .unwrap();
        }
        cfg
    }

    /// One byte of `path` changed in the middle, as disk damage would.
    fn damage(path: &std::path::Path) {
        let mut b = std::fs::read(path).unwrap();
        let mid = b.len() / 2;
        b[mid] ^= 0xff;
        std::fs::write(path, b).unwrap();
    }

    #[test]
    fn a_damaged_site_model_at_start_is_unavailable_and_said_until_repaired() {
        // walkR finding 1: the classifier said "abstaining, learnt 0" and
        // nothing counted or listed the damage.
        let dir = tempfile::tempdir().unwrap();
        let cfg = with_models(dir.path(), &[SITE], 300, 300);
        let site = cfg.spam.dir.join(SITE);
        damage(&site);
        let (shared, problems) = Shared::open(Arc::new(cfg));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("checksum mismatch"), "{problems:?}");
        let k = shared.loaded();
        assert_eq!(k.classifier.readiness(), Readiness::Unavailable);
        // What the scan log line and the unavailable counter read.
        let e = super::super::examine(&k, b"Subject: hi\r\n\r\nhello\r\n", None, None);
        assert!(e.classifier_unavailable);
        assert_eq!(
            shared.unreadable(),
            [Unreadable {
                part: Part::Site,
                path: site.display().to_string(),
                reason: "not a Mailward spam model (checksum mismatch: the file is damaged or cut short)"
                    .into(),
                in_use_stays: false,
            }]
        );
        // A reload (SIGHUP) does not make it available.
        shared.reload();
        assert_eq!(
            shared.loaded().classifier.readiness(),
            Readiness::Unavailable
        );
        // Moved away (then an export imported, or learning begun again):
        // the watcher reads it, and all is well again.
        std::fs::rename(&site, dir.path().join("damaged.model")).unwrap();
        poll_site(&shared, &mut None);
        assert!(shared.unreadable().is_empty(), "{:?}", shared.unreadable());
        assert_eq!(
            shared.loaded().classifier.readiness(),
            Readiness::Abstaining
        );
    }

    #[test]
    fn a_site_model_damaged_in_place_while_running_is_noticed_and_kept() {
        // walkAB finding 1: a byte overwritten in the middle of site.model
        // (size and CRC bytes the same) was never read again, and
        // `mailward status` stayed green until a restart found it.
        let dir = tempfile::tempdir().unwrap();
        let cfg = with_models(dir.path(), &[SITE], 300, 300);
        let site = cfg.spam.dir.join(SITE);
        let (shared, problems) = Shared::open(Arc::new(cfg));
        assert!(problems.is_empty(), "{problems:?}");
        assert!(shared.unreadable().is_empty());
        let mut seen = shared.store().version().ok();
        damage(&site);
        // A time of its own, whatever the clock's granularity.
        std::fs::File::options()
            .write(true)
            .open(&site)
            .unwrap()
            .set_modified(SystemTime::now() + Duration::from_secs(60))
            .unwrap();
        poll_site(&shared, &mut seen);
        let u = shared.unreadable();
        assert!(
            u.len() == 1
                && u[0].part == Part::Site
                && u[0].in_use_stays
                && u[0].reason.contains("checksum mismatch"),
            "{u:?}"
        );
        // The model in use stays: the classifier still speaks from it.
        let k = shared.loaded();
        assert_eq!(k.classifier.readiness(), Readiness::Active);
        assert_eq!(k.classifier.spam_messages(), 300);
        // Still a problem at the next look.
        poll_site(&shared, &mut seen);
        assert_eq!(shared.unreadable().len(), 1);
        // Repaired (a good snapshot in its place): the problem goes.
        std::fs::rename(&site, dir.path().join("damaged.model")).unwrap();
        Model {
            spam_messages: 300,
            ham_messages: 300,
            ..Model::default()
        }
        .write(&site)
        .unwrap();
        poll_site(&shared, &mut seen);
        assert!(shared.unreadable().is_empty(), "{:?}", shared.unreadable());
        assert_eq!(shared.loaded().classifier.readiness(), Readiness::Active);
    }

    #[test]
    fn a_damaged_base_is_unavailable_at_start_and_kept_while_running() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = with_models(dir.path(), &[BASE], 300, 300);
        let base = cfg.spam.dir.join(BASE);
        damage(&base);
        let (shared, problems) = Shared::open(Arc::new(cfg));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(
            shared.loaded().classifier.readiness(),
            Readiness::Unavailable
        );
        let u = shared.unreadable();
        assert!(
            u.len() == 1 && u[0].part == Part::Base && !u[0].in_use_stays,
            "{u:?}"
        );
        // A good base: in use, the problem gone.
        Model {
            spam_messages: 300,
            ham_messages: 300,
            ..Model::default()
        }
        .write(&base)
        .unwrap();
        shared.reload();
        assert_eq!(shared.loaded().classifier.readiness(), Readiness::Active);
        assert!(shared.unreadable().is_empty());
        // Damaged while running: the base in use stays, the classifier
        // speaks, and the damage stands as a problem (a restart would lose
        // the base).
        damage(&base);
        shared.reload();
        let k = shared.loaded();
        assert_eq!(k.classifier.readiness(), Readiness::Active);
        assert_eq!(k.classifier.spam_messages(), 300);
        let u = shared.unreadable();
        assert!(
            u.len() == 1 && u[0].part == Part::Base && u[0].in_use_stays,
            "{u:?}"
        );
    }

    #[test]
    fn a_hung_redis_holds_the_start_up_one_timeout_at_most() {
        // walkJ F3: a Redis that accepts connections and never answers
        // held the start up about 4 s. A listener that never accepts.
        let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = crate::config::parse("", "t.toml").unwrap();
        cfg.spam.dir = dir.path().join("spam");
        cfg.spam.store = format!("redis://{}/0", hung.local_addr().unwrap());
        let started = std::time::Instant::now();
        let (shared, problems) = Shared::open(Arc::new(cfg));
        let took = started.elapsed();
        assert!(took < Duration::from_millis(1500), "{took:?}");
        // Logged as the line the running daemon logs when Redis goes
        // away, not as a knowledge file that cannot be loaded.
        assert!(problems.is_empty(), "{problems:?}");
        assert!(shared.loaded().classifier.unavailable);
        assert!(shared.store_down.load(Ordering::Relaxed));
    }
}
