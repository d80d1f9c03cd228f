//! What unpacking may hold in memory. Each message may unpack up to its
//! policy's `max_unpacked_size`; all scan workers together may hold up to
//! `limits.scan_memory` at once. Without the shared bound, eight zip bombs
//! scanned side by side each fill their own allowance, and resident memory
//! grows with `antiviral_sessions` × `max_unpacked_size`.
//!
//! Bytes are taken from both as they are unpacked and go back to the pool
//! when the message's scan ends ([`Budget`] is dropped). A scan that finds
//! the pool empty stops unpacking: that message gets `av/error` (never a
//! silent "clean") and is counted; the next message starts afresh.

use std::sync::atomic::{AtomicU64, Ordering};

/// The bytes all scans together may hold unpacked.
#[derive(Debug)]
pub struct MemoryPool {
    capacity: u64,
    in_use: AtomicU64,
}

impl MemoryPool {
    pub fn new(capacity: u64) -> MemoryPool {
        MemoryPool {
            capacity,
            in_use: AtomicU64::new(0),
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

    fn give_back(&self, n: u64) {
        let _ = self
            .in_use
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(n))
            });
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
    left: u64,
    pool: &'p MemoryPool,
    held: u64,
    /// Set once a bound has refused bytes.
    pub exhausted: Option<Exhausted>,
}

impl<'p> Budget<'p> {
    pub fn new(max_unpacked: u64, pool: &'p MemoryPool) -> Budget<'p> {
        Budget {
            left: max_unpacked,
            pool,
            held: 0,
            exhausted: None,
        }
    }

    /// Takes up to `n` bytes; returns how many may be kept. Fewer than `n`
    /// means a bound is reached ([`Budget::exhausted`] says which).
    pub fn grant(&mut self, n: u64) -> u64 {
        let want = n.min(self.left);
        let got = self.pool.take(want);
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
        self.pool.give_back(self.held);
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
}
