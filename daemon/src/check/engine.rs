//! The scan engine: the compiled rules in use and the pool of worker
//! threads that run the checks (and the policy decisions that need the
//! parsed message) with them. The work itself is given as a closure that
//! receives the worker's [`Tools`]: the engine knows threads and rules, not
//! what a verdict is.
//!
//! - One compiled rule set is shared by all workers (yara-x `Rules` is
//!   immutable and thread-safe); each worker has its own `Scanner`.
//! - `limits.antiviral_sessions` workers, started once. Scanning is CPU
//!   work: it runs on these threads, never on the async runtime, so a slow
//!   scan never holds up a session or the listener.
//! - A reload compiles the new set first and swaps it in with one pointer
//!   store; a worker notices the new generation before its next message and
//!   builds a new scanner. Scans under way finish with the rules they
//!   started with, and a set that fails to compile never replaces one that
//!   works.

use super::{MemoryPool, Tools};
use crate::check::bases::{BasesError, BasesInfo};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::oneshot;

/// One compiled rule set.
pub struct Loaded {
    /// None when no set could be compiled yet (then every scan is
    /// `av/error`, never a silent "clean").
    pub rules: Option<yara_x::Rules>,
    pub info: Option<BasesInfo>,
    /// Rules in the compiled set.
    pub count: usize,
    generation: u64,
}

/// One piece of work for a worker; it sends its own result.
type Job = Box<dyn FnOnce(&mut Tools<'_, '_>) + Send>;

pub struct Engine {
    loaded: RwLock<Arc<Loaded>>,
    generation: AtomicU64,
    /// One reload at a time: two at once (a SIGHUP during `bases update`)
    /// would both take the same generation number, and the one that read
    /// the directory first could be swapped in last.
    reloading: Mutex<()>,
    jobs: Mutex<Sender<Job>>,
    /// Messages waiting for a worker.
    waiting: AtomicU64,
    /// What all workers together may hold unpacked (`limits.scan_memory`).
    pool: MemoryPool,
    /// The spam check's rules and models, shared by the workers.
    pub spam: Arc<crate::check::spam::knowledge::Shared>,
}

impl Engine {
    /// Starts `workers` scan threads with the bases in `dir` (when they
    /// compile; otherwise with none, and the error is returned beside the
    /// engine so that the caller can report it). Together they unpack at
    /// most `memory` bytes at a time. Fails when not one worker could be
    /// started: with none, every accepted message would wait for a check
    /// that never comes.
    pub fn start(
        workers: usize,
        dir: &Path,
        memory: u64,
        spam: Arc<crate::check::spam::knowledge::Shared>,
    ) -> Result<(Arc<Engine>, Option<BasesError>), std::io::Error> {
        let (loaded, problem) = match load(dir, 1) {
            Ok(l) => (l, None),
            Err(e) => (
                Loaded {
                    rules: None,
                    info: None,
                    count: 0,
                    generation: 1,
                },
                Some(e),
            ),
        };
        let (tx, rx) = channel();
        let engine = Arc::new(Engine {
            loaded: RwLock::new(Arc::new(loaded)),
            generation: AtomicU64::new(1),
            reloading: Mutex::new(()),
            jobs: Mutex::new(tx),
            waiting: AtomicU64::new(0),
            pool: MemoryPool::new(memory),
            spam,
        });
        let rx = Arc::new(Mutex::new(rx));
        let wanted = workers.max(1);
        for n in 0..wanted {
            let (engine, rx) = (engine.clone(), rx.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("scan-{n}"))
                .spawn(move || worker(&engine, &rx));
            if let Err(e) = spawned {
                if n == 0 {
                    return Err(e);
                }
                // The system is out of threads or memory: the next spawn
                // fails the same way, so one line, not one per worker
                // (walkAW F10: 89,000 lines in two seconds).
                tracing::error!(target: "scan", error = %e, started = n, wanted,
                    "Cannot start more scan workers; scanning goes on with those started (lower limits.antiviral_sessions).");
                break;
            }
        }
        Ok((engine, problem))
    }

    /// The rule set in use.
    pub fn current(&self) -> Arc<Loaded> {
        match self.loaded.read() {
            Ok(l) => l.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The bases in use (None: none loaded).
    pub fn info(&self) -> Option<BasesInfo> {
        self.current().info.clone()
    }

    /// Messages waiting for a free worker.
    pub fn waiting(&self) -> u64 {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Compiles the bases in `dir` and puts them in use. On error the rules
    /// in use stay. Blocking (compiling takes a while for large sets): call
    /// it from a blocking context.
    pub fn reload(&self, dir: &Path) -> Result<BasesInfo, BasesError> {
        let _one_at_a_time = self
            .reloading
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let generation = self.generation.load(Ordering::Acquire) + 1;
        let mut loaded = load(dir, generation)?;
        let mut slot = self
            .loaded
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // The same set compiled again (a SIGHUP) keeps the time it came
        // into use: mwBasesLoaded moved at every reload, a "new bases"
        // step on an NMS's graph with no mwBasesReloaded (walkBE 4).
        if let (Some(new), Some(old)) = (loaded.info.as_mut(), slot.info.as_ref()) {
            if new.version == old.version && new.released == old.released {
                new.loaded_at = old.loaded_at;
            }
        }
        let info = loaded.info.clone().ok_or_else(|| BasesError::Manifest {
            path: dir.join("manifest.toml"),
            problem: "missing".into(),
        })?;
        *slot = Arc::new(loaded);
        // Under the write lock: a worker that sees the new number finds
        // the new set.
        self.generation.store(generation, Ordering::Release);
        Ok(info)
    }

    /// Queues `work` for a worker; the receiver gets its result, or an
    /// error when no worker can run it or it failed (a panic in a parser
    /// costs one message's verdict, never the worker).
    pub fn run<R: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Tools<'_, '_>) -> R + Send + 'static,
    ) -> oneshot::Receiver<R> {
        let (done, rx) = oneshot::channel();
        let job: Job = Box::new(move |tools| {
            let _ = done.send(work(tools));
        });
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let sent = match self.jobs.lock() {
            Ok(tx) => tx.send(job).is_ok(),
            Err(_) => false,
        };
        if !sent {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            tracing::error!(target: "scan", "No scan worker is running; the message gets av/error.");
        }
        rx
    }
}

fn load(dir: &Path, generation: u64) -> Result<Loaded, BasesError> {
    let info = crate::check::bases::read(dir)?.ok_or_else(|| BasesError::Manifest {
        path: dir.join("manifest.toml"),
        problem: "missing: no signature bases installed".into(),
    })?;
    let (rules, count) = crate::check::bases::compile(dir)?;
    Ok(Loaded {
        rules: Some(rules),
        info: Some(info),
        count,
        generation,
    })
}

fn worker(engine: &Engine, rx: &Mutex<Receiver<Job>>) {
    let mut pending: Option<Job> = None;
    loop {
        let loaded = engine.current();
        let mut scanner = loaded.rules.as_ref().map(yara_x::Scanner::new);
        loop {
            let job = match pending.take() {
                Some(j) => j,
                None => {
                    let next = match rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    match next {
                        Ok(j) => j,
                        Err(_) => return,
                    }
                }
            };
            if engine.generation.load(Ordering::Acquire) != loaded.generation {
                pending = Some(job);
                break;
            }
            engine.waiting.fetch_sub(1, Ordering::Relaxed);
            let mut tools = Tools {
                scanner: scanner.as_mut(),
                bases: loaded.info.as_ref(),
                pool: &engine.pool,
                spam: Some(engine.spam.loaded()),
            };
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut tools)));
            if result.is_err() {
                // The job's result sender is gone with the unwinding: its
                // caller sees the failure. Start afresh with a new scanner.
                tracing::error!(target: "scan", "A check failed on a message (internal error); its status is av/error.");
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_reloads_each_take_their_own_generation() {
        let dir = tempfile::tempdir().unwrap();
        crate::check::bases::install_default(dir.path()).unwrap();
        let cfg = Arc::new(crate::config::parse(crate::config::DEFAULT_TOML, "<test>").unwrap());
        let (spam, _) = crate::check::spam::knowledge::Shared::open(cfg);
        let (engine, problem) = Engine::start(1, dir.path(), 1 << 20, spam).unwrap();
        assert!(problem.is_none(), "{problem:?}");
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..3 {
                        engine.reload(dir.path()).unwrap();
                    }
                });
            }
        });
        // Twelve reloads after the start's generation 1: none lost, and
        // the set in use is the last one's.
        assert_eq!(engine.generation.load(Ordering::Acquire), 13);
        assert_eq!(engine.current().generation, 13);
    }

    /// walkBE 4: the same set compiled again keeps the time it came into
    /// use (mwBasesLoaded); another set gets its own.
    #[test]
    fn a_reload_of_the_same_set_keeps_its_load_time() {
        let dir = tempfile::tempdir().unwrap();
        crate::check::bases::install_default(dir.path()).unwrap();
        let cfg = Arc::new(crate::config::parse(crate::config::DEFAULT_TOML, "<test>").unwrap());
        let (spam, _) = crate::check::spam::knowledge::Shared::open(cfg);
        let (engine, _) = Engine::start(1, dir.path(), 1 << 20, spam).unwrap();
        // The set in use, as a start at another time (or of another
        // version) would have left it.
        let in_use = |change: &dyn Fn(&mut BasesInfo)| {
            let mut slot = engine.loaded.write().unwrap();
            let mut info = slot.info.clone().unwrap();
            change(&mut info);
            *slot = Arc::new(Loaded {
                rules: None,
                info: Some(info),
                count: 0,
                generation: slot.generation,
            });
        };
        in_use(&|i| i.loaded_at = 1000);
        assert_eq!(engine.reload(dir.path()).unwrap().loaded_at, 1000);
        assert_eq!(engine.current().info.as_ref().unwrap().loaded_at, 1000);
        // Another version: loaded now.
        in_use(&|i| i.version = "1999.01.01.1".into());
        assert!(engine.reload(dir.path()).unwrap().loaded_at > 1000);
    }
}
