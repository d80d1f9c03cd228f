//! Refusing new mail for lack of spool space (`limits.min_queue_free_space`,
//! `452 4.3.1`). One refused client is an INFO line like any refusal, but
//! a gateway that refuses *all* new mail must say so where an operator
//! alerting on WARN looks (walkP finding 9): a WARN once when an episode
//! begins, an INFO when new mail is taken again, and each refusal's line
//! names the cause (`cause="spool_space"` on
//! [`crate::events::MessageRejected`]; its `reason` stays `tempfail`, the
//! label of `mailward_messages_rejected_total`).

use crate::config::Limits;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether new mail is refused for spool space right now. Process-wide,
/// as the spool is: every session sees the same episode, and a reload
/// does not start a new one.
static SHORT: AtomicBool = AtomicBool::new(false);

/// What a MAIL found: `free` octets in the spool against the configured
/// minimum. Logs the start of an episode (free under the minimum: every
/// new message is refused) and its end (back at or over it), once each.
pub(super) fn observe(free: u64, limits: &Limits) {
    let min = &limits.min_queue_free_space;
    if free < min.0 {
        if !SHORT.swap(true, Ordering::Relaxed) {
            tracing::warn!(target: "smtp", free_kib = free / 1024, min_queue_free_space = %min,
                "Spool free space is under limits.min_queue_free_space: new mail gets 452 4.3.1 until space comes back.");
        }
    } else if SHORT.swap(false, Ordering::Relaxed) {
        tracing::info!(target: "smtp", free_kib = free / 1024, min_queue_free_space = %min,
            "Spool free space is back over limits.min_queue_free_space: new mail is taken again.");
    }
}
