//! Refusing new mail for lack of spool space (`limits.min_queue_free_space`,
//! `452 4.3.1`). One refused client is an INFO line like any refusal, but
//! a gateway that refuses *all* new mail must say so where an operator
//! alerting on WARN looks (walkP finding 9): a WARN once when an episode
//! begins, an INFO when new mail is taken again, and each refusal's line
//! names the cause (`cause="spool_space"` on
//! [`crate::events::MessageRejected`]; its `reason` stays `tempfail`, the
//! label of `mailward_messages_rejected_total`).
//!
//! The check itself is the spool's ([`crate::spool::Spool::reserve`]): the
//! space new mail may use against `limits.min_queue_free_space`, the room
//! kept for the compaction's copy of the waiting messages, and the bytes
//! of every message being received. A MAIL is refused when there is no
//! room; a message whose bytes cross the line while they stream (a client
//! that declared no SIZE) is refused at the end of its DATA.

use crate::config::Limits;
use crate::spool::Room;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether new mail is refused for spool space right now. Process-wide,
/// as the spool is: every session sees the same episode, and a reload
/// does not start a new one.
static SHORT: AtomicBool = AtomicBool::new(false);

/// Where the check refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum When {
    /// At MAIL: no room for the declared size (or any, without SIZE).
    Mail,
    /// While the message streamed: its bytes would have crossed the line.
    Data,
}

/// A refusal for space: the start of an episode is logged once, with
/// the figures compared.
pub(super) fn refused(room: &Room, when: When, limits: &Limits) {
    if SHORT.swap(true, Ordering::Relaxed) {
        return;
    }
    let min = &limits.min_queue_free_space;
    let (free_kib, copy_reserve_kib, receiving_kib) = (
        room.available / 1024,
        room.copy_reserve / 1024,
        room.receiving / 1024,
    );
    match when {
        When::Mail => tracing::warn!(target: "smtp", free_kib, min_queue_free_space = %min,
            copy_reserve_kib, receiving_kib,
            "Spool free space is under limits.min_queue_free_space: new mail gets 452 4.3.1 until space comes back."),
        When::Data => tracing::warn!(target: "smtp", free_kib, min_queue_free_space = %min,
            copy_reserve_kib, receiving_kib,
            "Spool free space is short: a message would have taken it under limits.min_queue_free_space while its data came in (no SIZE declared, or more sent than declared), and gets 452 4.3.1 at the end of its data."),
    }
}

/// A MAIL found room: the end of an episode is logged once.
pub(super) fn taken(room: &Room, limits: &Limits) {
    if SHORT.swap(false, Ordering::Relaxed) {
        tracing::info!(target: "smtp", free_kib = room.available / 1024,
            min_queue_free_space = %limits.min_queue_free_space,
            "Spool free space is back over limits.min_queue_free_space: new mail is taken again.");
    }
}
