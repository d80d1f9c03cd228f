//! The check of the milter fuzz target. `decode.rs` calls it on
//! libFuzzer's input; `milter/tests/corpus.rs` includes this same file and
//! calls it on every file of `corpus/decode/`, so that plain `cargo test`
//! replays the corpus on stable Rust.
//!
//! It panics (`assert!`) when the code under test panics or breaks an
//! invariant; an error returned for bad input is fine.

use mailward_milter::{
    negotiate, split_packets, Actions, Command, Protocol, Response, MAX_PACKET,
    MIN_PROTOCOL_VERSION, PROTOCOL_VERSION,
};

/// Whatever an MTA could send on a milter socket: split into packets the
/// way `read_packet` reads a stream, each decoded. No byte sequence may
/// panic; a packet is never empty nor over the limit; and an option
/// negotiation that decodes can be answered, with a reply that encodes.
/// The whole input is also decoded as one packet's command byte and data.
pub fn decode(data: &[u8]) {
    for packet in split_packets(data, MAX_PACKET) {
        let Ok(packet) = packet else {
            break;
        };
        assert!(!packet.is_empty() && packet.len() <= MAX_PACKET as usize);
        let Ok(command) = Command::decode(packet) else {
            continue;
        };
        let _ = command.expects_reply(Protocol::NONE);
        if let Command::OptNeg(offer) = &command {
            if let Ok(n) = negotiate(offer, Actions(u32::MAX), Protocol(u32::MAX)) {
                assert!((MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&n.reply.version));
                assert!(offer.protocol.is_empty() || offer.protocol.contains(n.reply.protocol));
                assert!(offer.actions.is_empty() || offer.actions.contains(n.reply.actions));
                let mut out = Vec::new();
                assert!(Response::OptNeg(n.reply).encode(&mut out).is_ok());
            }
        }
    }
    let _ = Command::decode(data);
}
