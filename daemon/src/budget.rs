//! Bytes held by work in flight, bounded: a [`Budget`] gives out
//! [`Share`]s while their bytes stay within a cap, and a share gives its
//! bytes back when it drops, whoever holds it last. Used where messages
//! wait in memory for work that may fall behind:
//!
//! - the checks that go on after the reply (`Gateway::backlog`): a session
//!   waits `timeouts.scan_in_session` for its checks, then answers 250 and
//!   leaves them running with the message in memory. When the workers (or
//!   the DNS) cannot keep up, every session would hand over one message
//!   after another while the spool already holds them all; so they hold
//!   at most `limits.scan_memory` together (one message is always taken,
//!   however large), and past that a session waits for its own verdict,
//!   up to `timeouts.scan` more, as a before-queue filter makes its client
//!   wait (then it leaves it all the same, so that the reply comes within
//!   the client's patience). The load slows the clients down instead of
//!   filling the memory;
//! - autolearn's queue (`check::spam::autolearn`), whose messages wait
//!   while the spam store (Redis) is slow.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Bytes given out and not yet given back.
#[derive(Debug, Default)]
pub struct Budget {
    bytes: AtomicU64,
}

/// One message's share of a [`Budget`]; dropping it gives the bytes back.
#[derive(Debug)]
pub struct Share {
    budget: Arc<Budget>,
    bytes: u64,
}

impl Budget {
    /// A share of `bytes`, or None when it would take the budget past
    /// `cap` (an empty budget gives any share).
    pub fn take(self: &Arc<Self>, bytes: u64, cap: u64) -> Option<Share> {
        self.bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                (now == 0 || now.saturating_add(bytes) <= cap).then(|| now.saturating_add(bytes))
            })
            .ok()
            .map(|_| Share {
                budget: self.clone(),
                bytes,
            })
    }

    /// Bytes held now.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Acquire)
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let _ = self
            .budget
            .bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                Some(now.saturating_sub(self.bytes))
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_given_within_the_cap_and_back_when_dropped() {
        let b = Arc::new(Budget::default());
        // One message is always taken, even past the cap.
        let big = b.take(500, 100);
        assert!(big.is_some());
        assert!(b.take(1, 100).is_none(), "past the cap");
        drop(big);
        assert_eq!(b.bytes(), 0);
        let a = b.take(60, 100);
        let c = b.take(40, 100);
        assert!(a.is_some() && c.is_some());
        assert!(b.take(1, 100).is_none());
        drop(a);
        assert!(b.take(60, 100).is_some(), "bytes given back are free again");
        drop(c);
        assert_eq!(b.bytes(), 0);
    }
}
