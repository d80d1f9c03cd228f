//! Tests of the PDU codec against the encodings of RFC 2741 sections 5
//! and 6 (hand-written byte vectors), round trips of every PDU type,
//! little-endian input, and malformed input: truncations, garbage, and a
//! long pseudo-random run that decoding never panics on.

use crate::oid::Oid;
use crate::pdu::*;
use crate::value::{Value, VarBind};
use crate::wire::{varbind_len, Reader, Writer};

fn oid(s: &str) -> Oid {
    s.parse().unwrap()
}

/// Big-endian u32s as bytes.
fn be(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_be_bytes()).collect()
}

/// Little-endian u32s as bytes.
fn le(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn encode_oid(o: &Oid, include: bool) -> Vec<u8> {
    let mut out = Vec::new();
    Writer { out: &mut out }.oid(o, include).unwrap();
    out
}

fn encode_varbind(vb: &VarBind) -> Vec<u8> {
    let mut out = Vec::new();
    Writer { out: &mut out }.varbind(vb).unwrap();
    out
}

/// A header in network byte order.
fn header(pdu_type: u8, flags: u8, ids: [u32; 3], payload_len: u32) -> Vec<u8> {
    cat(&[
        &[1, pdu_type, flags, 0],
        &be(&[ids[0], ids[1], ids[2], payload_len]),
    ])
}

// ---- Section 5.1: Object Identifier -------------------------------------

#[test]
fn rfc_oid_example_sys_descr_uses_the_internet_prefix() {
    // "sysDescr.0 (1.3.6.1.2.1.1.1.0)": n_subid 4, prefix 2, then 1.1.1.0.
    let want = cat(&[&[4, 2, 0, 0], &be(&[1, 1, 1, 0])]);
    assert_eq!(encode_oid(&oid("1.3.6.1.2.1.1.1.0"), false), want);
    let (back, include) = Reader::new(&want, true).oid("t").unwrap();
    assert_eq!((back, include), (oid("1.3.6.1.2.1.1.1.0"), false));
}

#[test]
fn rfc_oid_example_without_prefix() {
    // "1.2.3.4": n_subid 4, prefix 0.
    let want = cat(&[&[4, 0, 0, 0], &be(&[1, 2, 3, 4])]);
    assert_eq!(encode_oid(&oid("1.2.3.4"), false), want);
    assert_eq!(Reader::new(&want, true).oid("t").unwrap().0, oid("1.2.3.4"));
}

#[test]
fn oid_prefix_edge_cases() {
    // The null OID: a header of zeros.
    assert_eq!(encode_oid(&Oid::null(), false), vec![0, 0, 0, 0]);
    assert_eq!(
        Reader::new(&[0, 0, 0, 0], true).oid("t").unwrap().0,
        Oid::null()
    );
    // 1.3.6.1.4 exactly: prefix 4 and no sub-identifier.
    assert_eq!(encode_oid(&oid("1.3.6.1.4"), false), vec![0, 4, 0, 0]);
    assert_eq!(
        Reader::new(&[0, 4, 0, 0], true).oid("t").unwrap().0,
        oid("1.3.6.1.4")
    );
    // internet.0 and internet.256 cannot use the prefix.
    assert_eq!(encode_oid(&oid("1.3.6.1.0.5"), false)[..2], [6, 0]);
    assert_eq!(encode_oid(&oid("1.3.6.1.256.5"), false)[..2], [6, 0]);
    assert_eq!(encode_oid(&oid("1.3.6.1.255.5"), false)[..2], [1, 255]);
    // Our enterprise root.
    let want = cat(&[&[3, 4, 0, 0], &be(&[1, 32473, 25])]);
    assert_eq!(encode_oid(&oid("1.3.6.1.4.1.32473.25"), false), want);
    // 128 sub-identifiers after the prefix are fine, 129 are not.
    let long = Oid::new(vec![7u32; 128]);
    assert_eq!(encode_oid(&long, false)[0], 128);
    let mut out = Vec::new();
    assert_eq!(
        Writer { out: &mut out }.oid(&Oid::new(vec![7u32; 129]), false),
        Err(EncodeError::OidTooLong(129))
    );
    assert_eq!(
        Reader::new(&[129, 0, 0, 0], true).oid("t"),
        Err(DecodeError::OidTooLong(129))
    );
}

// ---- Section 5.2: SearchRange ---------------------------------------------

#[test]
fn rfc_search_range_example() {
    // From 1.3.6.1.2.1.25.2 (inclusive) to 1.3.6.1.2.1.25.2.1 (exclusive).
    let want = cat(&[
        &[3, 2, 1, 0],
        &be(&[1, 25, 2]),
        &[4, 2, 0, 0],
        &be(&[1, 25, 2, 1]),
    ]);
    let sr = SearchRange {
        start: oid("1.3.6.1.2.1.25.2"),
        include: true,
        end: oid("1.3.6.1.2.1.25.2.1"),
    };
    let mut out = Vec::new();
    Writer { out: &mut out }.search_range(&sr).unwrap();
    assert_eq!(out, want);
    assert_eq!(Reader::new(&want, true).search_range().unwrap(), sr);
}

// ---- Section 5.3: Octet String --------------------------------------------

#[test]
fn octet_strings_are_padded_to_four_bytes() {
    for (s, want) in [
        (&b""[..], be(&[0])),
        (&b"a"[..], cat(&[&be(&[1]), b"a\0\0\0"])),
        (&b"abcd"[..], cat(&[&be(&[4]), b"abcd"])),
        (&b"abcde"[..], cat(&[&be(&[5]), b"abcde\0\0\0"])),
    ] {
        let mut out = Vec::new();
        Writer { out: &mut out }.octets(s).unwrap();
        assert_eq!(out, want, "{s:?}");
        let mut r = Reader::new(&want, true);
        assert_eq!(r.octets("t").unwrap(), s);
        assert!(r.is_empty(), "padding consumed for {s:?}");
    }
    // Padding is required even at the end of the PDU.
    let short = cat(&[&be(&[5]), b"abcde"]);
    assert!(matches!(
        Reader::new(&short, true).octets("t"),
        Err(DecodeError::Truncated { .. })
    ));
}

// ---- Section 5.4: every value type -----------------------------------------

#[test]
fn every_value_type_encodes_as_the_rfc_says() {
    let name = oid("1.3.6.1.4.1.32473.25.1");
    let name_bytes = cat(&[&[4, 4, 0, 0], &be(&[1, 32473, 25, 1])]);
    let cases: Vec<(Value, u16, Vec<u8>)> = vec![
        (Value::Integer(-2), 2, be(&[0xffff_fffe])),
        (
            Value::OctetString(b"hi!".to_vec()),
            4,
            cat(&[&be(&[3]), b"hi!\0"]),
        ),
        (
            Value::OctetString(vec![0xff, 0x00, 0x80]),
            4,
            cat(&[&be(&[3]), &[0xff, 0, 0x80, 0]]),
        ),
        (Value::Null, 5, vec![]),
        (
            Value::ObjectIdentifier(oid("1.3.6.1.6.3.1.1.5.1")),
            6,
            cat(&[&[5, 6, 0, 0], &be(&[3, 1, 1, 5, 1])]),
        ),
        (
            Value::IpAddress([192, 0, 2, 200]),
            64,
            cat(&[&be(&[4]), &[192, 0, 2, 200]]),
        ),
        (Value::Counter32(4_000_000_000), 65, be(&[4_000_000_000])),
        (Value::Gauge32(42), 66, be(&[42])),
        (Value::TimeTicks(123_456), 67, be(&[123_456])),
        (
            Value::Opaque(vec![0x9f, 0x78, 0x04, 1, 2, 3, 4]),
            68,
            cat(&[&be(&[7]), &[0x9f, 0x78, 4, 1, 2, 3, 4, 0]]),
        ),
        (
            Value::Counter64(0x0102_0304_0506_0708),
            70,
            vec![1, 2, 3, 4, 5, 6, 7, 8],
        ),
        (Value::NoSuchObject, 128, vec![]),
        (Value::NoSuchInstance, 129, vec![]),
        (Value::EndOfMibView, 130, vec![]),
    ];
    for (value, code, data) in cases {
        let vb = VarBind::new(name.clone(), value.clone());
        let want = cat(&[&code.to_be_bytes(), &[0, 0], &name_bytes, &data]);
        let got = encode_varbind(&vb);
        assert_eq!(got, want, "{value:?}");
        assert_eq!(varbind_len(&vb), want.len(), "{value:?}");
        let mut r = Reader::new(&want, true);
        assert_eq!(r.varbind().unwrap(), vb);
        assert!(r.is_empty());
    }
}

#[test]
fn bad_values_are_typed_errors() {
    let name = [0u8, 0, 0, 0];
    // v.type 3 is not an AgentX type.
    let bytes = cat(&[&[0, 3, 0, 0], &name]);
    assert_eq!(
        Reader::new(&bytes, true).varbind(),
        Err(DecodeError::UnknownValueType(3))
    );
    // An IpAddress of 5 octets.
    let bytes = cat(&[&[0, 64, 0, 0], &name, &be(&[5]), &[1, 2, 3, 4, 5, 0, 0, 0]]);
    assert_eq!(
        Reader::new(&bytes, true).varbind(),
        Err(DecodeError::BadIpAddress(5))
    );
    // A Counter64 cut short.
    let bytes = cat(&[&[0, 70, 0, 0], &name, &[0, 0, 0, 1]]);
    assert!(matches!(
        Reader::new(&bytes, true).varbind(),
        Err(DecodeError::Truncated { .. })
    ));
    // An octet string claiming 4 GiB: refused without allocating it.
    let bytes = cat(&[&[0, 4, 0, 0], &name, &be(&[u32::MAX])]);
    assert!(matches!(
        Reader::new(&bytes, true).varbind(),
        Err(DecodeError::Truncated { .. })
    ));
}

// ---- Section 6.1: header -------------------------------------------------

#[test]
fn header_is_network_byte_order_with_the_flag_set() {
    let ping = Pdu::new(
        0x0102_0304,
        0x0506_0708,
        0x090a_0b0c,
        Payload::Ping(Ping { context: None }),
    );
    let bytes = ping.encode().unwrap();
    assert_eq!(
        bytes,
        vec![1, 13, 0x10, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0, 0, 0, 0]
    );
    let h = Header::decode(bytes[..20].try_into().unwrap()).unwrap();
    assert_eq!(
        h,
        Header {
            version: 1,
            pdu_type: 13,
            flags: Flags::NETWORK_BYTE_ORDER,
            session_id: 0x0102_0304,
            transaction_id: 0x0506_0708,
            packet_id: 0x090a_0b0c,
            payload_length: 0,
        }
    );
}

#[test]
fn header_errors() {
    let mut h = header(13, 0x10, [1, 2, 3], 0);
    h[0] = 2;
    assert_eq!(
        Header::decode(h[..].try_into().unwrap()),
        Err(DecodeError::BadVersion(2))
    );
    let h = header(5, 0x10, [1, 2, 3], MAX_PAYLOAD + 1);
    assert_eq!(
        Header::decode(h[..].try_into().unwrap()),
        Err(DecodeError::PayloadTooLarge {
            length: MAX_PAYLOAD + 1,
            max: MAX_PAYLOAD
        })
    );
    // The limit itself is allowed.
    let h = header(5, 0x10, [1, 2, 3], MAX_PAYLOAD);
    assert!(Header::decode(h[..].try_into().unwrap()).is_ok());
    // An unknown type passes the header (to be answered parseError) but
    // not the PDU.
    let h = header(99, 0x10, [1, 2, 3], 0);
    let hd = Header::decode(h[..].try_into().unwrap()).unwrap();
    assert_eq!(Pdu::decode(&hd, &[]), Err(DecodeError::UnknownPduType(99)));
    assert_eq!(Pdu::decode_frame(&h), Err(DecodeError::UnknownPduType(99)));
}

// ---- Section 6.2: PDUs -----------------------------------------------------

#[test]
fn rfc_register_example_with_range() {
    // 6.2.3: 1.3.6.1.2.1.2.2.1.[1-22].7, r.range_subid 10, upper bound 22.
    let payload = cat(&[
        &[0, 127, 10, 0],
        &[6, 2, 0, 0],
        &be(&[1, 2, 2, 1, 1, 7]),
        &be(&[22]),
    ]);
    let bytes = cat(&[&header(3, 0x10, [5, 0, 9], payload.len() as u32), &payload]);
    let pdu = Pdu::decode_frame(&bytes).unwrap();
    let want = Pdu {
        session_id: 5,
        transaction_id: 0,
        packet_id: 9,
        flags: Flags::NETWORK_BYTE_ORDER,
        payload: Payload::Register(Register {
            context: None,
            timeout: 0,
            priority: 127,
            range_subid: 10,
            subtree: oid("1.3.6.1.2.1.2.2.1.1.7"),
            upper_bound: 22,
        }),
    };
    assert_eq!(pdu, want);
    assert_eq!(want.encode().unwrap(), bytes);
}

#[test]
fn open_pdu_bytes() {
    let open = Pdu::new(
        0,
        0,
        1,
        Payload::Open(Open {
            timeout: 1,
            id: oid("1.3.6.1.4.1.32473.25"),
            description: b"Mailward".to_vec(),
        }),
    );
    let payload = cat(&[
        &[1, 0, 0, 0],
        &[3, 4, 0, 0],
        &be(&[1, 32473, 25]),
        &be(&[8]),
        b"Mailward",
    ]);
    assert_eq!(
        open.encode().unwrap(),
        cat(&[&header(1, 0x10, [0, 0, 1], 32), &payload])
    );
}

#[test]
fn get_bulk_and_response_bytes() {
    let bulk = Pdu::new(
        7,
        8,
        9,
        Payload::GetBulk(GetBulk {
            context: None,
            non_repeaters: 1,
            max_repetitions: 10,
            ranges: vec![SearchRange {
                start: oid("1.3.6.1.2.1.1.3"),
                include: false,
                end: Oid::null(),
            }],
        }),
    );
    let payload = cat(&[
        &[0, 1, 0, 10],
        &[3, 2, 0, 0],
        &be(&[1, 1, 3]),
        &[0, 0, 0, 0],
    ]);
    assert_eq!(
        bulk.encode().unwrap(),
        cat(&[&header(7, 0x10, [7, 8, 9], 24), &payload])
    );

    let resp = Pdu::new(
        7,
        8,
        9,
        Payload::Response(Response {
            sys_uptime: 100,
            error: ErrorStatus::DUPLICATE_REGISTRATION,
            index: 1,
            varbinds: vec![VarBind::new(oid("1.3.6.1.2.1.1.3.0"), Value::TimeTicks(5))],
        }),
    );
    let payload = cat(&[
        &be(&[100]),
        &[1, 7, 0, 1],
        &[0, 67, 0, 0],
        &[4, 2, 0, 0],
        &be(&[1, 1, 3, 0]),
        &be(&[5]),
    ]);
    assert_eq!(
        resp.encode().unwrap(),
        cat(&[&header(18, 0x10, [7, 8, 9], 36), &payload])
    );
}

#[test]
fn context_follows_the_header_when_flagged() {
    let payload = cat(&[
        &be(&[3]),
        b"ctx\0",
        &[3, 2, 0, 0],
        &be(&[1, 1, 3]),
        &[0, 0, 0, 0],
    ]);
    let bytes = cat(&[&header(5, 0x18, [1, 2, 3], payload.len() as u32), &payload]);
    let pdu = Pdu::decode_frame(&bytes).unwrap();
    assert_eq!(pdu.payload.context(), Some(&b"ctx"[..]));
    assert_eq!(pdu.encode().unwrap(), bytes);
    // PDUs without a context field ignore the flag (as net-snmp does).
    let bytes = cat(&[&header(9, 0x18, [1, 2, 3], 0)]);
    assert_eq!(
        Pdu::decode_frame(&bytes).unwrap().payload,
        Payload::CommitSet
    );
}

#[test]
fn little_endian_input_decodes_like_big_endian() {
    // A GetNext for sysUpTime..(unbounded) and a Response with a Counter64,
    // written by hand in little-endian order (NETWORK_BYTE_ORDER clear).
    let le_getnext = cat(&[
        &[1, 6, 0x00, 0],
        &le(&[11, 22, 33, 20]),
        &[3, 2, 1, 0],
        &le(&[1, 1, 3]),
        &[0, 0, 0, 0],
    ]);
    let be_getnext = cat(&[
        &[1, 6, 0x10, 0],
        &be(&[11, 22, 33, 20]),
        &[3, 2, 1, 0],
        &be(&[1, 1, 3]),
        &[0, 0, 0, 0],
    ]);
    let a = Pdu::decode_frame(&le_getnext).unwrap();
    let b = Pdu::decode_frame(&be_getnext).unwrap();
    assert_eq!(a.payload, b.payload);
    assert_eq!((a.session_id, a.transaction_id, a.packet_id), (11, 22, 33));
    assert!(!a.flags.contains(Flags::NETWORK_BYTE_ORDER));
    // Re-encoded, it is network byte order.
    assert_eq!(a.encode().unwrap(), be_getnext);

    let mut payload = le(&[500]);
    payload.extend_from_slice(&0u16.to_le_bytes());
    payload.extend_from_slice(&0u16.to_le_bytes());
    payload.extend_from_slice(&70u16.to_le_bytes());
    payload.extend_from_slice(&[0, 0, 2, 4, 0, 0]);
    payload.extend_from_slice(&le(&[1, 32473]));
    payload.extend_from_slice(&0x1122_3344_5566_7788u64.to_le_bytes());
    payload.extend_from_slice(&le(&[0]));
    // ...and a GetBulk's u16 fields.
    let frame = cat(&[
        &[1, 18, 0, 0],
        &le(&[1, 2, 3, payload.len() as u32 - 4]),
        &payload[..payload.len() - 4],
    ]);
    let pdu = Pdu::decode_frame(&frame).unwrap();
    let Payload::Response(r) = pdu.payload else {
        panic!("not a response")
    };
    assert_eq!(r.sys_uptime, 500);
    assert_eq!(
        r.varbinds,
        vec![VarBind::new(
            oid("1.3.6.1.4.1.32473"),
            Value::Counter64(0x1122_3344_5566_7788)
        )]
    );
    let bulk = cat(&[
        &[1, 7, 0, 0],
        &le(&[1, 2, 3, 4]),
        &2u16.to_le_bytes(),
        &300u16.to_le_bytes(),
    ]);
    let Payload::GetBulk(g) = Pdu::decode_frame(&bulk).unwrap().payload else {
        panic!("not a getbulk")
    };
    assert_eq!((g.non_repeaters, g.max_repetitions), (2, 300));
}

/// One PDU of every type, with every field set to something.
fn every_pdu() -> Vec<Pdu> {
    let ctx = Some(b"ctx1".to_vec());
    let vbs = vec![
        VarBind::new(oid("1.3.6.1.2.1.1.3.0"), Value::TimeTicks(1)),
        VarBind::new(
            oid("1.3.6.1.6.3.1.1.4.1.0"),
            Value::ObjectIdentifier(oid("1.3.6.1.4.1.32473.25.0.1")),
        ),
        VarBind::new(oid("1.2"), Value::OctetString(b"odd".to_vec())),
        VarBind::new(oid("1.3"), Value::IpAddress([10, 0, 0, 1])),
        VarBind::new(oid("1.4"), Value::Counter64(u64::MAX)),
        VarBind::new(oid("1.5"), Value::Opaque(vec![1, 2, 3, 4, 5])),
        VarBind::new(oid("1.6"), Value::Null),
        VarBind::new(oid("1.7"), Value::Integer(i32::MIN)),
        VarBind::new(oid("1.8"), Value::Counter32(1)),
        VarBind::new(oid("1.9"), Value::Gauge32(2)),
        VarBind::new(oid("1.10"), Value::NoSuchObject),
        VarBind::new(oid("1.11"), Value::NoSuchInstance),
        VarBind::new(oid("1.12"), Value::EndOfMibView),
    ];
    let ranges = vec![
        SearchRange {
            start: oid("1.3.6.1.4.1.32473.25"),
            include: true,
            end: oid("1.3.6.1.4.1.32473.26"),
        },
        SearchRange {
            start: oid("1.3.6.1.4.1.32473.25.1.2.1.6.150"),
            include: false,
            end: Oid::null(),
        },
    ];
    let payloads = vec![
        Payload::Open(Open {
            timeout: 5,
            id: oid("1.3.6.1.4.1.32473.25"),
            description: b"Mailward subagent".to_vec(),
        }),
        Payload::Close(Close {
            reason: CloseReason::Shutdown,
        }),
        Payload::Close(Close {
            reason: CloseReason::Unknown(77),
        }),
        Payload::Register(Register {
            context: ctx.clone(),
            timeout: 3,
            priority: 127,
            range_subid: 0,
            subtree: oid("1.3.6.1.4.1.32473.25"),
            upper_bound: 0,
        }),
        Payload::Unregister(Unregister {
            context: None,
            priority: 1,
            range_subid: 2,
            subtree: oid("1.3.6.1.4.1.32473.25"),
            upper_bound: 9,
        }),
        Payload::Get(Get {
            context: None,
            ranges: ranges.clone(),
        }),
        Payload::GetNext(Get {
            context: ctx.clone(),
            ranges: ranges.clone(),
        }),
        Payload::GetBulk(GetBulk {
            context: None,
            non_repeaters: 1,
            max_repetitions: 25,
            ranges,
        }),
        Payload::TestSet(VarBindPdu {
            context: None,
            varbinds: vbs.clone(),
        }),
        Payload::CommitSet,
        Payload::UndoSet,
        Payload::CleanupSet,
        Payload::Notify(VarBindPdu {
            context: ctx.clone(),
            varbinds: vbs.clone(),
        }),
        Payload::Ping(Ping {
            context: ctx.clone(),
        }),
        Payload::Ping(Ping { context: None }),
        Payload::IndexAllocate(VarBindPdu {
            context: None,
            varbinds: vbs.clone(),
        }),
        Payload::IndexDeallocate(VarBindPdu {
            context: None,
            varbinds: vbs.clone(),
        }),
        Payload::AddAgentCaps(AddAgentCaps {
            context: None,
            id: oid("1.3.6.1.4.1.32473.25.2.1"),
            description: b"caps".to_vec(),
        }),
        Payload::RemoveAgentCaps(RemoveAgentCaps {
            context: ctx,
            id: oid("1.3.6.1.4.1.32473.25.2.1"),
        }),
        Payload::Response(Response {
            sys_uptime: 99,
            error: ErrorStatus::NOT_WRITABLE,
            index: 3,
            varbinds: vbs,
        }),
    ];
    payloads
        .into_iter()
        .enumerate()
        .map(|(i, payload)| {
            let mut pdu = Pdu::new(1000 + i as u32, 2000, 3000 + i as u32, payload);
            pdu.flags = Flags::NETWORK_BYTE_ORDER;
            if pdu.payload.context().is_some() {
                pdu.flags = pdu.flags.with(Flags::NON_DEFAULT_CONTEXT);
            }
            pdu
        })
        .collect()
}

#[test]
fn every_pdu_type_round_trips() {
    let mut seen = std::collections::HashSet::new();
    for pdu in every_pdu() {
        let bytes = pdu.encode().unwrap();
        assert_eq!(bytes.len() % 4, 0, "{pdu:?}");
        let back = Pdu::decode_frame(&bytes).unwrap();
        assert_eq!(back, pdu);
        assert_eq!(back.encode().unwrap(), bytes);
        seen.insert(pdu.pdu_type() as u8);
    }
    assert_eq!(seen.len(), 18, "all 18 PDU types");
}

#[test]
fn instance_registration_flag_is_kept() {
    let mut pdu = Pdu::new(
        1,
        0,
        2,
        Payload::Register(Register {
            context: None,
            timeout: 0,
            priority: 127,
            range_subid: 0,
            subtree: oid("1.3.6.1.4.1.32473.25.1.1.1.0"),
            upper_bound: 0,
        }),
    );
    pdu.flags = Flags::INSTANCE_REGISTRATION;
    let bytes = pdu.encode().unwrap();
    assert_eq!(bytes[2], 0x11);
}

#[test]
fn every_truncation_is_an_error() {
    for pdu in every_pdu() {
        let bytes = pdu.encode().unwrap();
        for cut in 0..bytes.len() {
            assert!(
                Pdu::decode_frame(&bytes[..cut]).is_err(),
                "{:?} cut at {cut}",
                pdu.pdu_type()
            );
            // The same cut with a header that agrees about the length.
            if cut >= HEADER_LEN {
                let mut fixed = bytes[..cut].to_vec();
                let len = (cut - HEADER_LEN) as u32;
                fixed[16..20].copy_from_slice(&len.to_be_bytes());
                let _ = Pdu::decode_frame(&fixed);
            }
        }
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(
            Pdu::decode_frame(&longer),
            Err(DecodeError::TrailingBytes(4))
        );
    }
}

#[test]
fn trailing_bytes_inside_the_payload_are_an_error() {
    // A Close with 8 bytes of payload.
    let bytes = cat(&[&header(2, 0x10, [1, 2, 3], 8), &[5, 0, 0, 0, 0, 0, 0, 0]]);
    assert_eq!(
        Pdu::decode_frame(&bytes),
        Err(DecodeError::TrailingBytes(4))
    );
}

#[test]
fn oversized_payload_cannot_be_encoded() {
    let pdu = Pdu::new(
        1,
        2,
        3,
        Payload::Notify(VarBindPdu {
            context: None,
            varbinds: vec![VarBind::new(
                oid("1.2"),
                Value::OctetString(vec![0; MAX_PAYLOAD as usize]),
            )],
        }),
    );
    assert!(matches!(pdu.encode(), Err(EncodeError::PayloadTooLarge(_))));
}

/// A small xorshift PRNG (no dependency needed).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Decoding never panics: random bytes, random bytes behind a plausible
/// header, and random mutations of valid PDUs (which reach deep into the
/// decoder). Decoded PDUs that can be re-encoded decode to themselves.
#[test]
fn decoding_random_bytes_never_panics() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let valid: Vec<Vec<u8>> = every_pdu().iter().map(|p| p.encode().unwrap()).collect();
    let mut decoded = 0usize;
    for case in 0..60_000usize {
        let bytes: Vec<u8> = match case % 3 {
            0 => {
                let len = rng.below(160);
                (0..len).map(|_| rng.next() as u8).collect()
            }
            1 => {
                let len = rng.below(120);
                let mut b = vec![1, 1 + rng.below(18) as u8, rng.next() as u8 & 0x1f, 0];
                let payload: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                let big = b[2] & 0x10 != 0;
                for w in [
                    rng.next() as u32,
                    rng.next() as u32,
                    rng.next() as u32,
                    len as u32,
                ] {
                    b.extend_from_slice(&if big {
                        w.to_be_bytes()
                    } else {
                        w.to_le_bytes()
                    });
                }
                b.extend_from_slice(&payload);
                b
            }
            _ => {
                let mut b = valid[rng.below(valid.len())].clone();
                for _ in 0..1 + rng.below(4) {
                    let i = rng.below(b.len());
                    match rng.below(3) {
                        0 => b[i] = rng.next() as u8,
                        1 => b[i] ^= 1 << rng.below(8),
                        _ => b.truncate(i.max(HEADER_LEN)),
                    }
                }
                b
            }
        };
        if let Ok(pdu) = Pdu::decode_frame(&bytes) {
            decoded += 1;
            if let Ok(again) = pdu.encode() {
                let back = Pdu::decode_frame(&again).unwrap();
                assert_eq!(back.payload, pdu.payload);
            }
        }
        if bytes.len() >= HEADER_LEN {
            let head: [u8; HEADER_LEN] = bytes[..HEADER_LEN].try_into().unwrap();
            if let Ok(h) = Header::decode(&head) {
                let _ = Pdu::decode(&h, &bytes[HEADER_LEN..]);
            }
        }
    }
    // The mutations must reach valid PDUs too, or the test tests little.
    assert!(decoded > 1000, "only {decoded} decoded");
}
