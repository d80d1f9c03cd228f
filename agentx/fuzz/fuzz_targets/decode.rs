//! Fuzzes the AgentX PDU decoder with whatever a master could send: no
//! byte sequence may panic, a declared payload over the limit is refused
//! from the header alone, and whatever decodes re-encodes (in network byte
//! order) to a PDU that decodes to the same thing.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mailward_agentx::pdu::{Header, Pdu, HEADER_LEN, MAX_PAYLOAD};

fuzz_target!(|data: &[u8]| {
    // A whole frame: header, then exactly the declared payload.
    if let Ok(pdu) = Pdu::decode_frame(data) {
        if let Ok(bytes) = pdu.encode() {
            let again = Pdu::decode_frame(&bytes).expect("a re-encoded PDU decodes");
            assert_eq!(again.payload, pdu.payload);
            assert_eq!(again.packet_id, pdu.packet_id);
        }
    }
    // The header alone, then the rest as a payload whatever its length
    // (the way the session's framing calls the decoder).
    if let Some(head) = data.get(..HEADER_LEN) {
        let mut bytes = [0u8; HEADER_LEN];
        bytes.copy_from_slice(head);
        if let Ok(header) = Header::decode(&bytes) {
            assert!(header.payload_length <= MAX_PAYLOAD);
            let rest = &data[HEADER_LEN..];
            let n = rest.len().min(header.payload_length as usize);
            let mut h = header;
            h.payload_length = n as u32;
            let _ = Pdu::decode(&h, &rest[..n]);
        }
    }
});
