//! Option negotiation (SMFIC_OPTNEG and its reply): which protocol
//! version, actions and protocol steps a session uses. A pure function of
//! what the MTA offers and what the filter wants; the session sends the
//! result as [`Response::OptNeg`](crate::Response::OptNeg) and keeps it to
//! know which steps get a reply ([`Command::expects_reply`](crate::Command::expects_reply)).
//!
//! It follows libmilter (`st_optionneg` in `engine.c`) with one difference:
//! libmilter aborts the connection when the MTA does not offer every action
//! the filter registered, while [`negotiate`] hands back the intersection
//! and the missing actions, so that a filter can run without, say,
//! quarantine and say so in its log.

use crate::flags::{Actions, Protocol};

/// The protocol version this crate speaks (libmilter's SMFI_PROT_VERSION).
pub const PROTOCOL_VERSION: u32 = 6;

/// The oldest MTA protocol version accepted (libmilter's
/// SMFI_PROT_VERSION_MIN): version 1 had no negotiation worth the name.
pub const MIN_PROTOCOL_VERSION: u32 = 2;

/// What libmilter assumes when an MTA offers no action at all
/// (SMFI_V1_ACTS: add headers, change body, add and delete recipients).
const V1_ACTIONS: Actions = Actions(0x0F);

/// What libmilter assumes when an MTA offers no protocol flag at all
/// (SMFI_V1_PROT: NOCONNECT up to NOHDRS).
const V1_PROTOCOL: Protocol = Protocol(0x3F);

/// The three words of an SMFIC_OPTNEG packet, from the MTA (its offer) or
/// from the filter (its reply).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptNeg {
    /// The milter protocol version.
    pub version: u32,
    /// From the MTA, the actions it can perform; from the filter, those
    /// it will request.
    pub actions: Actions,
    /// From the MTA, the protocol flags it understands; from the filter,
    /// those it sets for this session.
    pub protocol: Protocol,
}

/// The outcome of [`negotiate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// The reply to send, and the session's settings from now on: the
    /// filter may request only `reply.actions`, and `reply.protocol`
    /// decides which steps are sent and which get a reply.
    pub reply: OptNeg,
    /// Wanted actions the MTA does not offer. The filter must not request
    /// them in this session; worth a log line (e.g. no quarantine).
    pub missing_actions: Actions,
    /// Wanted protocol flags the MTA does not offer, left out of the
    /// reply (an MTA fails the negotiation on a flag it did not offer).
    /// A dropped `NR_*` flag means the filter must reply to that step
    /// after all; a dropped `NO*` flag means the step will be sent.
    pub dropped_protocol: Protocol,
}

/// Why a negotiation failed. The session then closes the connection, as
/// libmilter does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiateError {
    /// The MTA speaks a version older than [`MIN_PROTOCOL_VERSION`].
    #[error("MTA offers milter protocol version {0}; at least 2 is needed")]
    VersionTooOld(u32),
}

/// Answers the MTA's option negotiation.
///
/// `actions` and `protocol` are what the filter wants, e.g. `ADDHDRS |
/// QUARANTINE` and `NOUNKNOWN | NODATA | NR_HDR`. The reply carries the
/// lower of the MTA's version and [`PROTOCOL_VERSION`], and of each set
/// only the bits the MTA offered. As libmilter does, an MTA that offers no
/// actions (or no protocol flags) is taken to offer version 1's.
pub fn negotiate(
    mta: &OptNeg,
    actions: Actions,
    protocol: Protocol,
) -> Result<Negotiated, NegotiateError> {
    if mta.version < MIN_PROTOCOL_VERSION {
        return Err(NegotiateError::VersionTooOld(mta.version));
    }
    let offered_actions = if mta.actions.is_empty() {
        V1_ACTIONS
    } else {
        mta.actions
    };
    let offered_protocol = if mta.protocol.is_empty() {
        V1_PROTOCOL
    } else {
        mta.protocol
    };
    Ok(Negotiated {
        reply: OptNeg {
            version: mta.version.min(PROTOCOL_VERSION),
            actions: actions & offered_actions,
            protocol: protocol & offered_protocol,
        },
        missing_actions: actions.without(offered_actions),
        dropped_protocol: protocol.without(offered_protocol),
    })
}
