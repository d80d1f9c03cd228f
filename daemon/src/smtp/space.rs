//! Refusing new mail for lack of spool space (`limits.min_queue_free_space`,
//! `452 4.3.1`). One refused client is an INFO line like any refusal, but
//! a gateway that refuses *all* new mail must say so where an operator
//! alerting on WARN looks (walkP finding 9): a WARN once when an episode
//! begins, an INFO when new mail is taken again, and each refusal's line
//! names the cause (`cause="spool_space"` on
//! [`crate::events::MessageRejected`]; its `reason` stays `tempfail`, the
//! label of `mailward_messages_rejected_total`).
//!
//! An episode is the state in which no message fits, whatever its size:
//! the space new mail may use is under the floor plus the copy room. One
//! message too big for the room left (a large `SIZE=`, or data that
//! crossed the line while other mail still fits) is that message's
//! refusal only: its INFO line, no WARN (walkW 2: any client could raise
//! and clear the WARN with one `MAIL ... SIZE=`). The WARN names what
//! refuses: the floor, or the floor plus the copy room (walkW 5).
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

/// What a refusal for space says in the log beside its INFO line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Said {
    /// Nothing more: this message did not fit, smaller mail still does.
    Nothing,
    /// The WARN of an episode: under the floor.
    UnderFloor,
    /// The WARN of an episode: over the floor, under it plus the room
    /// kept for the compaction's copy.
    UnderFloorAndCopyRoom,
}

/// Whether a refusal opens an episode, and which cause it names.
fn said(room: &Room) -> Said {
    if room.available < room.floor {
        Said::UnderFloor
    } else if room.available < room.kept() {
        Said::UnderFloorAndCopyRoom
    } else {
        Said::Nothing
    }
}

/// A refusal for space: when no new message fits at all, the start of an
/// episode is logged once, with the figures compared.
pub(super) fn refused(room: &Room, when: When, limits: &Limits) {
    let said = said(room);
    if said == Said::Nothing || SHORT.swap(true, Ordering::Relaxed) {
        return;
    }
    let min = &limits.min_queue_free_space;
    let (free_kib, copy_reserve_kib, receiving_kib) = (
        room.available / 1024,
        room.copy_reserve / 1024,
        room.receiving / 1024,
    );
    let refused_at = match when {
        When::Mail => "mail",
        When::Data => "end of data",
    };
    if said == Said::UnderFloor {
        tracing::warn!(target: "smtp", free_kib, min_queue_free_space = %min,
            copy_reserve_kib, receiving_kib, refused_at,
            "Spool free space is under limits.min_queue_free_space: new mail gets 452 4.3.1 until space comes back.");
    } else {
        tracing::warn!(target: "smtp", free_kib, min_queue_free_space = %min,
            copy_reserve_kib, receiving_kib, refused_at,
            "Spool free space is under limits.min_queue_free_space plus the room kept to copy the waiting messages forward (copy_reserve_kib): new mail gets 452 4.3.1 until space comes back or the waiting messages leave (mailward queue list).");
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

#[cfg(test)]
mod tests {
    use super::*;

    fn room(available: u64, floor: u64, copy_reserve: u64, receiving: u64) -> Room {
        Room {
            available,
            floor,
            copy_reserve,
            receiving,
        }
    }

    /// walkW 2: `MAIL SIZE=7500000` with 7.7 MB free over a 1 MiB floor
    /// logged "Spool free space is under limits.min_queue_free_space",
    /// and the next MAIL "back over": one message too big for the room
    /// left is its own refusal, not the gateway's.
    #[test]
    fn only_a_spool_that_fits_no_message_opens_an_episode() {
        const MIB: u64 = 1 << 20;
        // One large SIZE, or one message crossing the line in its data,
        // or other clients' data on its way: other mail still fits.
        assert_eq!(said(&room(7 * MIB, MIB, 0, 8 * MIB)), Said::Nothing);
        assert_eq!(said(&room(2 * MIB, MIB, 0, 2 * MIB)), Said::Nothing);
        // Nothing fits: under the floor ...
        assert_eq!(said(&room(MIB / 2, MIB, 0, 0)), Said::UnderFloor);
        // ... or over it but under it plus the copy room (walkW 5: the
        // WARN said "under limits.min_queue_free_space" with 3.4 MiB free
        // over a 1 MiB floor).
        assert_eq!(
            said(&room(3 * MIB, MIB, 3 * MIB, 0)),
            Said::UnderFloorAndCopyRoom
        );
    }
}
