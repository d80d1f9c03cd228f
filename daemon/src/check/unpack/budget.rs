//! What unpacking may hold in memory. Each message may unpack up to its
//! policy's `max_unpacked_size`; all scan workers together may hold up to
//! `limits.scan_memory` at once. Without the shared bound, eight zip bombs
//! scanned side by side each fill their own allowance, and resident memory
//! grows with `antiviral_sessions` × `max_unpacked_size`.
//!
//! Bytes are taken from both as they are unpacked and go back to the pool
//! when the message's scan ends ([`Budget`] is dropped). A scan that finds
//! the pool in use by other scans waits for their bytes to come back, up
//! to its deadline (`timeouts.scan`): other clients' zip bombs are load,
//! not a verdict on this message, and giving up at once let a virus sent
//! beside a few bombs through as `av/error` (walkS finding 2). Scans that
//! hold bytes must not all wait for each other: when every scan holding
//! bytes would be waiting, the one of them that holds the most stops (its
//! message gets `av/error`, never a silent "clean", and is counted) and its
//! bytes, given back when its scan ends, let the others go on. That is the
//! zip bomb as a rule, not whichever scan happened to wait last: before, a
//! real attachment scanned beside bombs completed the circle and was the
//! one stopped, within a fraction of a second (walkZ finding 3). A scan
//! that alone would need more than the whole pool, or that still finds no
//! room at its deadline, stops too.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

/// The bytes all scans together may hold unpacked.
#[derive(Debug)]
pub struct MemoryPool {
    capacity: u64,
    in_use: AtomicU64,
    /// Who holds and who waits; scans waiting for bytes sleep on `freed`.
    /// The mutex also orders a waiter's look at `in_use` before its sleep
    /// against a give-back, so that no wake-up is lost.
    scans: Mutex<Scans>,
    freed: Condvar,
    /// The next scan's number (to tell waiters apart).
    next_id: AtomicU64,
}

/// Scans with bytes of the pool, and those of them waiting for more.
#[derive(Debug, Default)]
struct Scans {
    holding: usize,
    /// (scan, bytes it holds) of each holder waiting for more.
    waiting: Vec<(u64, u64)>,
    /// Waiters told to stop, to break a circle of waits.
    stop: Vec<u64>,
}

impl MemoryPool {
    pub fn new(capacity: u64) -> MemoryPool {
        MemoryPool {
            capacity,
            in_use: AtomicU64::new(0),
            scans: Mutex::new(Scans::default()),
            freed: Condvar::new(),
            next_id: AtomicU64::new(0),
        }
    }

    /// A pool that never runs out (tests, benchmarks, offline checks).
    pub fn unbounded() -> MemoryPool {
        MemoryPool::new(u64::MAX)
    }

    /// Bytes held by scans now.
    pub fn in_use(&self) -> u64 {
        self.in_use.load(Ordering::Relaxed)
    }

    /// Takes up to `n` bytes; returns how many it got.
    fn take(&self, n: u64) -> u64 {
        let mut granted = 0;
        let _ = self
            .in_use
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                granted = n.min(self.capacity.saturating_sub(used));
                Some(used + granted)
            });
        granted
    }

    /// Takes exactly `n` bytes, or none.
    fn take_all(&self, n: u64) -> bool {
        self.in_use
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (self.capacity.saturating_sub(used) >= n).then_some(used + n)
            })
            .is_ok()
    }

    fn scans(&self) -> std::sync::MutexGuard<'_, Scans> {
        match self.scans.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Takes exactly `n` bytes, waiting for other scans to give bytes back
    /// until `deadline`; false when they did not in time, or when this
    /// scan is the one to stop a circle of waits (`holder`: this scan's
    /// number and the bytes it holds, when it holds some; see the module).
    /// All or nothing, so that waiting scans take no share another needs.
    fn wait_for(&self, n: u64, deadline: Instant, holder: Option<(u64, u64)>) -> bool {
        let mut scans = self.scans();
        if let Some(me) = holder {
            scans.waiting.push(me);
        }
        let me = holder.map(|(id, _)| id);
        let got = loop {
            if me.is_some_and(|id| scans.stop.contains(&id)) {
                break false;
            }
            if self.take_all(n) {
                break true;
            }
            let now = Instant::now();
            if now >= deadline {
                break false;
            }
            if me.is_some() && scans.waiting.len() >= scans.holding {
                // Every holder waits: the one holding the most stops.
                let most = scans
                    .waiting
                    .iter()
                    .max_by_key(|&&(id, held)| (held, id))
                    .map(|&(id, _)| id);
                if most == me {
                    break false;
                }
                if let Some(id) = most.filter(|id| !scans.stop.contains(id)) {
                    scans.stop.push(id);
                    self.freed.notify_all();
                }
            }
            scans = match self.freed.wait_timeout(scans, deadline - now) {
                Ok((g, _)) => g,
                Err(poisoned) => poisoned.into_inner().0,
            };
        };
        if let Some(id) = me {
            scans.waiting.retain(|&(w, _)| w != id);
            scans.stop.retain(|&w| w != id);
        }
        got
    }

    /// A scan took its first bytes.
    fn joined(&self) {
        self.scans().holding += 1;
    }

    /// A scan gives back its `n` bytes and leaves.
    fn left(&self, n: u64) {
        let _ = self
            .in_use
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(n))
            });
        // Under the mutex: a waiter between its look and its sleep holds
        // it, so this wakes it rather than passing it by.
        let mut scans = self.scans();
        scans.holding = scans.holding.saturating_sub(1);
        self.freed.notify_all();
    }
}

/// Which bound stopped the unpacking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exhausted {
    /// This message's `max_unpacked_size`.
    Message,
    /// The workers' shared `limits.scan_memory`.
    Shared,
}

impl Exhausted {
    /// The finding that reports it.
    pub fn problem(self) -> &'static str {
        match self {
            Exhausted::Message => "unpacked size limit (max_unpacked_size) reached",
            Exhausted::Shared => {
                "scan memory of all workers (limits.scan_memory) in use; not unpacked"
            }
        }
    }
}

/// One message's allowance, drawing on the shared pool.
#[derive(Debug)]
pub struct Budget<'p> {
    /// This scan's number in the pool.
    id: u64,
    left: u64,
    pool: &'p MemoryPool,
    held: u64,
    /// Until when a grant may wait for the shared pool (None: it does not
    /// wait).
    deadline: Option<Instant>,
    /// Set once a bound has refused bytes.
    pub exhausted: Option<Exhausted>,
}

impl<'p> Budget<'p> {
    pub fn new(max_unpacked: u64, pool: &'p MemoryPool) -> Budget<'p> {
        Budget {
            id: pool.next_id.fetch_add(1, Ordering::Relaxed),
            left: max_unpacked,
            pool,
            held: 0,
            deadline: None,
            exhausted: None,
        }
    }

    /// Lets grants wait for the shared pool until `deadline` (the scan's).
    pub fn wait_until(&mut self, deadline: Instant) {
        self.deadline = Some(deadline);
    }

    /// Takes up to `n` bytes; returns how many may be kept. Fewer than `n`
    /// means a bound is reached ([`Budget::exhausted`] says which). When
    /// other scans hold the shared pool, it waits for them up to the
    /// deadline, unless this scan alone would need more than the pool.
    pub fn grant(&mut self, n: u64) -> u64 {
        let want = n.min(self.left);
        let fits_alone = self.held.saturating_add(want) <= self.pool.capacity;
        let whole = match self.deadline {
            Some(deadline) if want > 0 && fits_alone => {
                self.pool.take_all(want)
                    || self.pool.wait_for(
                        want,
                        deadline,
                        (self.held > 0).then_some((self.id, self.held)),
                    )
            }
            _ => false,
        };
        let got = if whole { want } else { self.pool.take(want) };
        if self.held == 0 && got > 0 {
            self.pool.joined();
        }
        self.held += got;
        self.left -= got;
        if got < n {
            self.exhausted.get_or_insert(if got < want {
                Exhausted::Shared
            } else {
                Exhausted::Message
            });
        }
        got
    }

    /// Bytes this message may still unpack (by its own bound).
    #[cfg(test)]
    pub fn left(&self) -> u64 {
        self.left
    }

    /// Bytes that may be unpacked now: the message's own bound, or what
    /// is left in the shared pool, whichever is less.
    pub fn available(&self) -> u64 {
        self.left
            .min(self.pool.capacity.saturating_sub(self.pool.in_use()))
    }
}

impl Drop for Budget<'_> {
    fn drop(&mut self) {
        if self.held > 0 {
            self.pool.left(self.held);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_bound_and_the_shared_bound_each_stop_unpacking() {
        let pool = MemoryPool::new(100);
        let mut a = Budget::new(60, &pool);
        assert_eq!(a.grant(50), 50);
        assert_eq!(a.grant(50), 10, "the message's own bound");
        assert_eq!(a.exhausted, Some(Exhausted::Message));
        let mut b = Budget::new(60, &pool);
        assert_eq!(b.grant(60), 40, "only what the pool has left");
        assert_eq!(b.exhausted, Some(Exhausted::Shared));
        assert_eq!(pool.in_use(), 100);
        drop(a);
        assert_eq!(pool.in_use(), 40, "a finished scan gives its bytes back");
        drop(b);
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn a_scan_waits_for_bytes_other_scans_give_back_until_its_deadline() {
        use std::time::Duration;
        let pool = MemoryPool::new(100);
        let soon = || Instant::now() + Duration::from_secs(10);
        std::thread::scope(|s| {
            let mut bomb = Budget::new(100, &pool);
            assert_eq!(bomb.grant(90), 90);
            let (tx, rx) = std::sync::mpsc::channel();
            s.spawn(move || {
                let _ = rx.recv();
                std::thread::sleep(Duration::from_millis(50));
                drop(bomb);
            });
            let mut virus = Budget::new(100, &pool);
            virus.wait_until(soon());
            tx.send(()).unwrap();
            assert_eq!(virus.grant(50), 50, "waits for the bomb's scan to end");
            assert_eq!(virus.exhausted, None);
        });
        assert_eq!(pool.in_use(), 0);
        // No scan gives bytes back before the deadline: it stops there.
        let mut hog = Budget::new(100, &pool);
        assert_eq!(hog.grant(80), 80);
        let mut late = Budget::new(100, &pool);
        let started = Instant::now();
        late.wait_until(started + Duration::from_millis(100));
        assert_eq!(late.grant(50), 20, "what is left, at the deadline");
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert_eq!(late.exhausted, Some(Exhausted::Shared));
        // A circle of waits: every scan holding bytes wants more. The one
        // holding the most (the bomb) stops and its bytes let the other
        // go on, whichever of them waited last (walkZ 3: the real
        // attachment waited last and was the one stopped, at once).
        drop((hog, late));
        std::thread::scope(|s| {
            let pool = &pool;
            let mut mail = Budget::new(100, pool);
            mail.wait_until(Instant::now() + Duration::from_secs(30));
            assert_eq!(mail.grant(10), 10);
            let bomb = s.spawn(move || {
                let mut bomb = Budget::new(100, pool);
                bomb.wait_until(Instant::now() + Duration::from_secs(30));
                assert_eq!(bomb.grant(80), 80);
                let more = bomb.grant(40);
                (more, bomb.exhausted)
            });
            while pool.scans().waiting.is_empty() {
                std::thread::sleep(Duration::from_millis(1));
            }
            let started = Instant::now();
            assert_eq!(mail.grant(50), 50, "the bomb stops, not the mail");
            assert!(started.elapsed() < Duration::from_secs(5));
            assert_eq!(mail.exhausted, None);
            let (more, exhausted) = bomb.join().unwrap();
            assert_eq!(more, 10, "the bomb keeps what was free, no more");
            assert_eq!(exhausted, Some(Exhausted::Shared));
            // The holder that waits last and holds the most stops itself.
            drop(mail);
            let (a_holds, a_holding) = std::sync::mpsc::channel();
            let (go, wait) = std::sync::mpsc::channel::<()>();
            let a = s.spawn(move || {
                let mut a = Budget::new(100, pool);
                a.wait_until(Instant::now() + Duration::from_secs(30));
                assert_eq!(a.grant(30), 30);
                a_holds.send(()).unwrap();
                let _ = wait.recv();
                a.grant(40)
            });
            a_holding.recv().unwrap();
            let mut b = Budget::new(100, pool);
            b.wait_until(Instant::now() + Duration::from_secs(30));
            assert_eq!(b.grant(70), 70);
            go.send(()).unwrap();
            while pool.scans().waiting.is_empty() {
                std::thread::sleep(Duration::from_millis(1));
            }
            let started = Instant::now();
            assert_eq!(b.grant(40), 0, "it holds the most: it stops");
            assert!(started.elapsed() < Duration::from_secs(5));
            assert_eq!(b.exhausted, Some(Exhausted::Shared));
            drop(b);
            assert_eq!(a.join().unwrap(), 40, "the other goes on");
        });
        // More than the whole pool: no wait, it can never fit.
        let mut huge = Budget::new(1000, &pool);
        huge.wait_until(Instant::now() + Duration::from_secs(60));
        let started = Instant::now();
        assert_eq!(huge.grant(500), 100);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(huge.exhausted, Some(Exhausted::Shared));
    }
}
