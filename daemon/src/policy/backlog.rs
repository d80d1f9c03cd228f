//! The checks that go on after the reply: their messages' bytes, bounded.
//!
//! A session waits for its message's checks up to
//! `timeouts.scan_in_session`, then answers 250 and leaves them to go on
//! in the background, holding the message in memory until its verdict is
//! carried out. When the scan workers cannot keep up (a flood of large
//! messages, a slow DNS for the URI lists), each session would hand one
//! message after another to the background: memory grows without bound
//! while the spool already holds every one of them. So the background
//! takes messages only while their bytes stay within `limits.scan_memory`
//! (the memory the checks may hold; one message is always taken, however
//! large); past that, a session waits for its own verdict, up to
//! `timeouts.scan` more, as a before-queue filter makes its client wait
//! (and after that leaves it to the background all the same, so that the
//! reply comes within the client's patience). The load then slows the
//! clients down instead of filling the memory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Bytes of messages whose checks go on after the reply.
#[derive(Debug, Default)]
pub struct Backlog {
    bytes: AtomicU64,
}

/// One message's place in the [`Backlog`]; dropping it gives the place back.
#[derive(Debug)]
pub struct Place {
    backlog: Arc<Backlog>,
    bytes: u64,
}

impl Backlog {
    /// A place for a message of `bytes`, or None when it would take the
    /// backlog past `cap` (an empty backlog takes any message).
    pub fn take(self: &Arc<Self>, bytes: u64, cap: u64) -> Option<Place> {
        self.bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                (now == 0 || now.saturating_add(bytes) <= cap).then(|| now.saturating_add(bytes))
            })
            .ok()
            .map(|_| Place {
                backlog: self.clone(),
                bytes,
            })
    }

    /// Bytes held now.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Acquire)
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let _ = self
            .backlog
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
    fn places_are_given_within_the_cap_and_back_when_dropped() {
        let b = Arc::new(Backlog::default());
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
        assert!(
            b.take(60, 100).is_some(),
            "a place given back is free again"
        );
        drop(c);
        assert_eq!(b.bytes(), 0);
    }
}
