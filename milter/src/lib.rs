//! The filter side of the Sendmail milter protocol, version 6, as
//! libmilter speaks it: the MTA (Postfix, Sendmail) connects and sends
//! commands, the filter answers. This crate is the codec only; it owns no
//! socket and keeps no session state, and it knows nothing of what the
//! filter decides.
//!
//! - `wire`: framing. [`read_packet`] reads one length-prefixed packet
//!   from a stream, [`split_packets`] splits a byte slice the same way;
//!   both refuse packets over a limit ([`MAX_PACKET`]) from the length
//!   field alone.
//! - `command`: [`Command::decode`] turns a packet into a [`Command`]
//!   (total: any bytes give a command or a typed [`DecodeError`], never a
//!   panic), and [`Command::expects_reply`] says whether the MTA waits for
//!   an answer.
//! - `response`: [`Response::encode`] writes a whole packet, refusing
//!   what the MTA would misread ([`EncodeError`]); [`ReplyCode`] checks an
//!   SMTP reply; [`replace_body`] cuts a new body into packets.
//! - `negotiate`: [`negotiate`] answers the MTA's option negotiation.
//! - `flags`: the [`Actions`] and [`Protocol`] bit sets.
//!
//! Written from libmilter's headers and documentation and Postfix's
//! `milter8.c` as references for the wire format; no code is taken from
//! the GPL `milter`/`indymilter` crates.

#![forbid(unsafe_code)]
// Nothing that can fail at run time may panic: errors are returned, typed
// and with context (the tests may unwrap).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod command;
mod flags;
mod negotiate;
mod response;
mod wire;

#[cfg(test)]
mod codec_tests;

pub use command::{Client, Command, Connect, DecodeError, Macros};
pub use flags::{Actions, Protocol};
pub use negotiate::{
    negotiate, NegotiateError, Negotiated, OptNeg, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION,
};
pub use response::{replace_body, EncodeError, ReplyCode, Response, CHUNK_SIZE};
pub use wire::{read_packet, split_packets, SplitPackets, WireError, LENGTH_BYTES, MAX_PACKET};
