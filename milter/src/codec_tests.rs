//! Tests of the codec: a realistic Postfix session decoded from
//! hand-built bytes, every truncation of every packet, responses encoded
//! to exact bytes, the checks that refuse bad responses, negotiation,
//! framing on a stream, and pseudo-random inputs that must never panic.

use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

use crate::*;

/// A framed packet: length, command byte, data.
fn pkt(code: u8, data: &[u8]) -> Vec<u8> {
    let mut out = ((data.len() + 1) as u32).to_be_bytes().to_vec();
    out.push(code);
    out.extend_from_slice(data);
    out
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Splits exactly one packet off `framed` and decodes it.
fn decode_one(framed: &[u8]) -> Result<Command, DecodeError> {
    let packets: Vec<&[u8]> = split_packets(framed, MAX_PACKET)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(packets.len(), 1, "one packet expected");
    Command::decode(packets[0])
}

fn encode(r: &Response) -> Vec<u8> {
    let mut out = Vec::new();
    r.encode(&mut out).unwrap();
    out
}

/// What Postfix 3 sends with `milter_protocol = 6`: every action and
/// every protocol flag of version 6.
fn postfix_optneg() -> Vec<u8> {
    pkt(
        b'O',
        &cat(&[
            &6u32.to_be_bytes(),
            &0x1FFu32.to_be_bytes(),
            &0x1F_FFFFu32.to_be_bytes(),
        ]),
    )
}

/// A whole Postfix session as (packet, what it decodes to), in order.
fn postfix_session() -> Vec<(Vec<u8>, Command)> {
    let s = |v: &str| v.to_string();
    vec![
        (
            postfix_optneg(),
            Command::OptNeg(OptNeg {
                version: 6,
                actions: Actions(0x1FF),
                protocol: Protocol(0x1F_FFFF),
            }),
        ),
        (
            pkt(
                b'D',
                b"Cj\0mx.example.org\0{daemon_name}\0mx\0{client_addr}\x00192.0.2.1\0",
            ),
            Command::Macro(Macros {
                for_command: b'C',
                pairs: vec![
                    (s("j"), s("mx.example.org")),
                    (s("{daemon_name}"), s("mx")),
                    (s("{client_addr}"), s("192.0.2.1")),
                ],
            }),
        ),
        (
            pkt(b'C', b"client.example.net\x004\xc3\x5a192.0.2.1\0"),
            Command::Connect(Connect {
                hostname: s("client.example.net"),
                client: Client::Inet {
                    ip: ip("192.0.2.1"),
                    port: 50010,
                },
            }),
        ),
        (
            pkt(b'D', b"H"),
            Command::Macro(Macros {
                for_command: b'H',
                pairs: vec![],
            }),
        ),
        (
            pkt(b'H', b"client.example.net\0"),
            Command::Helo {
                name: s("client.example.net"),
            },
        ),
        (
            pkt(b'D', b"Mi\x004Xq1Y2Z3\0{mail_addr}\0sender@example.com\0"),
            Command::Macro(Macros {
                for_command: b'M',
                pairs: vec![
                    (s("i"), s("4Xq1Y2Z3")),
                    (s("{mail_addr}"), s("sender@example.com")),
                ],
            }),
        ),
        (
            pkt(b'M', b"<sender@example.com>\0SIZE=1234\0BODY=8BITMIME\0"),
            Command::Mail {
                sender: s("<sender@example.com>"),
                args: vec![s("SIZE=1234"), s("BODY=8BITMIME")],
            },
        ),
        (
            pkt(b'R', b"<rcpt@example.org>\0"),
            Command::Rcpt {
                recipient: s("<rcpt@example.org>"),
                args: vec![],
            },
        ),
        (
            pkt(b'R', b"<other@example.org>\0NOTIFY=NEVER\0"),
            Command::Rcpt {
                recipient: s("<other@example.org>"),
                args: vec![s("NOTIFY=NEVER")],
            },
        ),
        (pkt(b'T', b""), Command::Data),
        (
            pkt(b'L', b"Subject\0Gr\xc3\xbc\xc3\x9fe \xe9t\xe9\0"),
            Command::Header {
                name: s("Subject"),
                value: b"Gr\xc3\xbc\xc3\x9fe \xe9t\xe9".to_vec(),
            },
        ),
        (
            pkt(b'L', b"Received\0from a.example\n\tby b.example\0"),
            Command::Header {
                name: s("Received"),
                value: b"from a.example\n\tby b.example".to_vec(),
            },
        ),
        (
            pkt(b'L', b"X-Empty\0\0"),
            Command::Header {
                name: s("X-Empty"),
                value: vec![],
            },
        ),
        (pkt(b'N', b""), Command::EndOfHeaders),
        (
            pkt(b'B', b"Hello,\r\n\r\nthis is the body.\r\n"),
            Command::Body(b"Hello,\r\n\r\nthis is the body.\r\n".to_vec()),
        ),
        (pkt(b'E', b""), Command::EndOfMessage(vec![])),
        (pkt(b'A', b""), Command::Abort),
        (
            pkt(b'U', b"XFOO bar\0"),
            Command::Unknown {
                line: s("XFOO bar"),
            },
        ),
        (pkt(b'K', b""), Command::QuitNc),
        (
            pkt(b'C', b"[2001:db8::25]\x006\x00\x19IPv6:2001:db8::25\0"),
            Command::Connect(Connect {
                hostname: s("[2001:db8::25]"),
                client: Client::Inet {
                    ip: ip("2001:db8::25"),
                    port: 25,
                },
            }),
        ),
        (pkt(b'Q', b""), Command::Quit),
    ]
}

/// Packets that are not in the session above but decode.
fn other_valid_packets() -> Vec<(Vec<u8>, Command)> {
    vec![
        (
            pkt(b'C', b"localhost\0U"),
            Command::Connect(Connect {
                hostname: "localhost".into(),
                client: Client::Unknown,
            }),
        ),
        (
            pkt(b'C', b"localhost\0L\0\0/var/run/mta.sock\0"),
            Command::Connect(Connect {
                hostname: "localhost".into(),
                client: Client::Unix {
                    path: "/var/run/mta.sock".into(),
                },
            }),
        ),
        (
            pkt(b'C', b"h\x006\0\x19::1\0"),
            Command::Connect(Connect {
                hostname: "h".into(),
                client: Client::Inet {
                    ip: ip("::1"),
                    port: 25,
                },
            }),
        ),
        (
            pkt(b'E', b"last chunk\r\n"),
            Command::EndOfMessage(b"last chunk\r\n".to_vec()),
        ),
        (pkt(b'B', b""), Command::Body(vec![])),
    ]
}

// ---- Decoding -------------------------------------------------------------

#[test]
fn a_postfix_session_decodes() {
    for (bytes, want) in postfix_session().into_iter().chain(other_valid_packets()) {
        assert_eq!(decode_one(&bytes).unwrap(), want, "{bytes:?}");
    }
}

#[test]
fn a_postfix_session_decodes_from_one_stream() {
    let session = postfix_session();
    let stream: Vec<u8> = session.iter().flat_map(|(b, _)| b.clone()).collect();
    let decoded: Vec<Command> = split_packets(&stream, MAX_PACKET)
        .map(|p| Command::decode(p.unwrap()).unwrap())
        .collect();
    let want: Vec<Command> = session.into_iter().map(|(_, c)| c).collect();
    assert_eq!(decoded, want);
}

#[test]
fn macros_are_looked_up_by_name_as_sent() {
    let Command::Macro(m) = decode_one(&postfix_session()[1].0).unwrap() else {
        panic!("not macros");
    };
    assert_eq!(m.get("j"), Some("mx.example.org"));
    assert_eq!(m.get("{client_addr}"), Some("192.0.2.1"));
    assert_eq!(m.get("client_addr"), None);
}

#[test]
fn optneg_ignores_extra_bytes_like_libmilter() {
    let mut data = cat(&[
        &2u32.to_be_bytes(),
        &0x3Fu32.to_be_bytes(),
        &0x7Fu32.to_be_bytes(),
    ]);
    data.extend_from_slice(b"future extension");
    assert_eq!(
        Command::decode(&cat(&[b"O", &data])).unwrap(),
        Command::OptNeg(OptNeg {
            version: 2,
            actions: Actions(0x3F),
            protocol: Protocol(0x7F),
        })
    );
}

#[test]
fn eight_bit_text_is_kept_or_replaced_as_documented() {
    // Header values keep their bytes; strings become lossy UTF-8.
    let c = Command::decode(b"H\xffhelo\0").unwrap();
    assert_eq!(
        c,
        Command::Helo {
            name: "\u{fffd}helo".into()
        }
    );
}

#[test]
fn malformed_commands_are_typed_errors() {
    use DecodeError::*;
    let cases: Vec<(&[u8], DecodeError)> = vec![
        (b"", Empty),
        (b"Z", UnknownCommand(b'Z')),
        (b"\0", UnknownCommand(0)),
        (
            b"O\0\0\0\x06\0\0",
            Truncated {
                command: 'O',
                what: "actions",
                needed: 4,
                available: 2,
            },
        ),
        (
            b"Hno nul",
            MissingNul {
                command: 'H',
                what: "HELO name",
            },
        ),
        (
            b"H",
            MissingNul {
                command: 'H',
                what: "HELO name",
            },
        ),
        (
            b"Hhelo\0x",
            TrailingBytes {
                command: 'H',
                count: 1,
            },
        ),
        (
            b"Tx",
            TrailingBytes {
                command: 'T',
                count: 1,
            },
        ),
        (
            b"Q\0",
            TrailingBytes {
                command: 'Q',
                count: 1,
            },
        ),
        (
            b"M",
            MissingNul {
                command: 'M',
                what: "sender",
            },
        ),
        (
            b"M<a>\0SIZE=1",
            MissingNul {
                command: 'M',
                what: "ESMTP argument",
            },
        ),
        (
            b"LSubject\0no nul",
            MissingNul {
                command: 'L',
                what: "header value",
            },
        ),
        (
            b"LSubject\0",
            MissingNul {
                command: 'L',
                what: "header value",
            },
        ),
        (
            b"D",
            Truncated {
                command: 'D',
                what: "macro command",
                needed: 1,
                available: 0,
            },
        ),
        (b"DXj\0v\0", UnknownMacroCommand(b'X')),
        (b"DCj\0", UnpairedMacro { name: "j".into() }),
        (
            b"DCj\0v",
            MissingNul {
                command: 'D',
                what: "macro value",
            },
        ),
        (
            b"Chost\0",
            Truncated {
                command: 'C',
                what: "address family",
                needed: 1,
                available: 0,
            },
        ),
        (b"Chost\0X\0\0a\0", UnknownFamily(b'X')),
        (
            b"Chost\x004\0",
            Truncated {
                command: 'C',
                what: "port",
                needed: 2,
                available: 1,
            },
        ),
        (
            b"Chost\x004\0\x19192.0.2.1",
            MissingNul {
                command: 'C',
                what: "address",
            },
        ),
        (
            b"Chost\x004\0\x19192.0.2.300\0",
            BadAddress {
                family: '4',
                address: "192.0.2.300".into(),
            },
        ),
        (
            b"Chost\x004\0\x192001:db8::1\0",
            BadAddress {
                family: '4',
                address: "2001:db8::1".into(),
            },
        ),
        (
            b"Chost\x006\0\x19IPv6:\0",
            BadAddress {
                family: '6',
                address: "IPv6:".into(),
            },
        ),
        (
            b"Chost\x006\0\x19fe80::1%eth0\0",
            BadAddress {
                family: '6',
                address: "fe80::1%eth0".into(),
            },
        ),
        (
            b"Chost\x006\0\x19\xff\0",
            BadAddress {
                family: '6',
                address: "\u{fffd}".into(),
            },
        ),
        (
            b"Chost\0U\0",
            TrailingBytes {
                command: 'C',
                count: 1,
            },
        ),
    ];
    for (bytes, want) in cases {
        assert_eq!(Command::decode(bytes), Err(want), "{bytes:?}");
    }
    // Errors name what was wrong.
    assert_eq!(
        Command::decode(b"Z").unwrap_err().to_string(),
        "unknown milter command 0x5a ('Z')"
    );
}

#[test]
fn every_truncation_of_every_packet_is_an_error() {
    let all: Vec<Vec<u8>> = postfix_session()
        .into_iter()
        .chain(other_valid_packets())
        .map(|(b, _)| b)
        .collect();
    for bytes in &all {
        // Framed: the length field tells that bytes are missing.
        for n in 1..bytes.len() {
            let items: Vec<_> = split_packets(&bytes[..n], MAX_PACKET).collect();
            assert_eq!(items.len(), 1, "{bytes:?} cut at {n}");
            assert!(items[0].is_err(), "{bytes:?} cut at {n}");
        }
        // Unframed: never a panic; and where the last byte is a string's
        // NUL or an OPTNEG word, every cut is an error.
        let packet = &bytes[4..];
        let strict = matches!(packet[0], b'O' | b'C' | b'H' | b'L' | b'U')
            || (matches!(packet[0], b'M' | b'R')
                && packet.iter().filter(|&&b| b == 0).count() == 1);
        for n in 0..packet.len() {
            let result = Command::decode(&packet[..n]);
            if strict || n == 0 {
                assert!(result.is_err(), "{packet:?} cut at {n}: {result:?}");
            }
        }
    }
}

// ---- Replies expected -------------------------------------------------------

#[test]
fn which_commands_expect_a_reply() {
    let none = Protocol::NONE;
    let all_nr = Protocol::NR_CONN
        | Protocol::NR_HELO
        | Protocol::NR_MAIL
        | Protocol::NR_RCPT
        | Protocol::NR_DATA
        | Protocol::NR_UNKN
        | Protocol::NR_HDR
        | Protocol::NR_EOH
        | Protocol::NR_BODY;
    for (_, c) in postfix_session() {
        let always = matches!(c, Command::OptNeg(_) | Command::EndOfMessage(_));
        let never = matches!(
            c,
            Command::Macro(_) | Command::Abort | Command::Quit | Command::QuitNc
        );
        assert_eq!(c.expects_reply(none), !never, "{c:?}");
        assert_eq!(c.expects_reply(all_nr), always, "{c:?}");
    }
    // Each NR_* flag silences its own step only.
    let header = Command::Header {
        name: "a".into(),
        value: vec![],
    };
    assert!(!header.expects_reply(Protocol::NR_HDR));
    assert!(header.expects_reply(Protocol::NR_BODY | Protocol::NOHDRS));
    assert!(!Command::Body(vec![]).expects_reply(Protocol::NR_BODY));
    assert!(!Command::Data.expects_reply(Protocol::NR_DATA));
}

// ---- Encoding -----------------------------------------------------------

#[test]
fn responses_encode_to_exact_bytes() {
    let cases: Vec<(Response, Vec<u8>)> = vec![
        (Response::Continue, vec![0, 0, 0, 1, b'c']),
        (Response::Accept, vec![0, 0, 0, 1, b'a']),
        (Response::Reject, vec![0, 0, 0, 1, b'r']),
        (Response::Tempfail, vec![0, 0, 0, 1, b't']),
        (Response::Discard, vec![0, 0, 0, 1, b'd']),
        (Response::Progress, vec![0, 0, 0, 1, b'p']),
        (Response::Skip, vec![0, 0, 0, 1, b's']),
        (
            Response::OptNeg(OptNeg {
                version: 6,
                actions: Actions::ADDHDRS | Actions::QUARANTINE,
                protocol: Protocol::NOUNKNOWN | Protocol::NODATA,
            }),
            cat(&[
                &[0, 0, 0, 13, b'O'],
                &[0, 0, 0, 6],
                &[0, 0, 0, 0x21],
                &[0, 0, 3, 0],
            ]),
        ),
        (
            Response::ReplyCode(ReplyCode::new("550 5.7.1 Message refused").unwrap()),
            cat(&[&[0, 0, 0, 27, b'y'], b"550 5.7.1 Message refused\0"]),
        ),
        (
            Response::AddHeader {
                name: "X-Mailward".into(),
                value: "scanned".into(),
            },
            cat(&[&[0, 0, 0, 20, b'h'], b"X-Mailward\0scanned\0"]),
        ),
        (
            Response::ChangeHeader {
                index: 2,
                name: "Subject".into(),
                value: b"[SPAM] hi".to_vec(),
            },
            cat(&[&[0, 0, 0, 23, b'm', 0, 0, 0, 2], b"Subject\0[SPAM] hi\0"]),
        ),
        (
            Response::ChangeHeader {
                index: 1,
                name: "X-Old".into(),
                value: vec![],
            },
            cat(&[&[0, 0, 0, 12, b'm', 0, 0, 0, 1], b"X-Old\0\0"]),
        ),
        (
            Response::InsertHeader {
                index: 0,
                name: "X-Top".into(),
                value: b"folded\n\tvalue \xe9".to_vec(),
            },
            cat(&[
                &[0, 0, 0, 27, b'i', 0, 0, 0, 0],
                b"X-Top\0folded\n\tvalue \xe9\0",
            ]),
        ),
        (
            Response::ReplaceBody(b"new body\r\n".to_vec()),
            cat(&[&[0, 0, 0, 11, b'b'], b"new body\r\n"]),
        ),
        (
            Response::Quarantine {
                reason: "virus found".into(),
            },
            cat(&[&[0, 0, 0, 13, b'q'], b"virus found\0"]),
        ),
        (
            Response::AddRcpt {
                rcpt: "<a@example.org>".into(),
            },
            cat(&[&[0, 0, 0, 17, b'+'], b"<a@example.org>\0"]),
        ),
        (
            Response::DelRcpt {
                rcpt: "<a@example.org>".into(),
            },
            cat(&[&[0, 0, 0, 17, b'-'], b"<a@example.org>\0"]),
        ),
        (
            Response::AddRcptPar {
                rcpt: "<a@example.org>".into(),
                args: Some("NOTIFY=NEVER".into()),
            },
            cat(&[&[0, 0, 0, 30, b'2'], b"<a@example.org>\0NOTIFY=NEVER\0"]),
        ),
        (
            Response::ChangeFrom {
                sender: "<>".into(),
                args: None,
            },
            cat(&[&[0, 0, 0, 4, b'e'], b"<>\0"]),
        ),
        (
            Response::ChangeFrom {
                sender: "<b@example.org>".into(),
                args: Some("SIZE=10 BODY=8BITMIME".into()),
            },
            cat(&[
                &[0, 0, 0, 39, b'e'],
                b"<b@example.org>\0SIZE=10 BODY=8BITMIME\0",
            ]),
        ),
    ];
    for (response, want) in &cases {
        assert_eq!(&encode(response), want, "{response:?}");
        assert_eq!(want[4], response.code());
    }
    // Several responses append to one buffer.
    let mut out = Vec::new();
    for (response, _) in &cases {
        response.encode(&mut out).unwrap();
    }
    let want: Vec<u8> = cases.iter().flat_map(|(_, b)| b.clone()).collect();
    assert_eq!(out, want);
}

#[test]
fn percent_is_doubled_in_replies() {
    let r = ReplyCode::new("451 4.7.1 100% busy, try %s later").unwrap();
    assert_eq!(r.as_wire(), "451 4.7.1 100%% busy, try %%s later");
    assert_eq!(
        encode(&Response::ReplyCode(r)),
        cat(&[
            &[0, 0, 0, 37, b'y'],
            b"451 4.7.1 100%% busy, try %%s later\0"
        ])
    );
}

#[test]
fn bad_replies_are_refused() {
    for (reply, reason) in [
        ("", "the code must start with 4 or 5"),
        ("250 ok", "the code must start with 4 or 5"),
        ("5", "the code must be three digits"),
        ("55x no", "the code must be three digits"),
        ("550", "the code must be followed by a space"),
        ("550-first line", "the code must be followed by a space"),
        ("550Refused", "the code must be followed by a space"),
        ("550 a\0b", "it contains a NUL byte"),
        ("550 a\r\n550 b", "it contains a line break"),
        ("550 a\nb", "it contains a line break"),
        (
            "550 4.7.1 mismatch",
            "the enhanced status code's class differs from the code's",
        ),
    ] {
        assert_eq!(
            ReplyCode::new(reply),
            Err(EncodeError::BadReply {
                reply: reply.into(),
                reason
            }),
            "{reply:?}"
        );
    }
    assert!(ReplyCode::new("421 ").is_ok());
    assert!(ReplyCode::new("554 Rejected").is_ok());
}

#[test]
fn bad_responses_are_refused_and_leave_the_buffer_alone() {
    let cases: Vec<(Response, EncodeError)> = vec![
        (
            Response::AddHeader {
                name: "X-A".into(),
                value: b"a\0b".to_vec(),
            },
            EncodeError::Nul {
                what: "header value",
            },
        ),
        (
            Response::AddHeader {
                name: "X-A\0".into(),
                value: vec![],
            },
            EncodeError::BadHeaderName {
                name: "X-A\0".into(),
            },
        ),
        (
            Response::AddHeader {
                name: "".into(),
                value: vec![],
            },
            EncodeError::BadHeaderName { name: "".into() },
        ),
        (
            Response::InsertHeader {
                index: 0,
                name: "Bad Name".into(),
                value: vec![],
            },
            EncodeError::BadHeaderName {
                name: "Bad Name".into(),
            },
        ),
        (
            Response::ChangeHeader {
                index: 1,
                name: "X-A:".into(),
                value: vec![],
            },
            EncodeError::BadHeaderName {
                name: "X-A:".into(),
            },
        ),
        (
            Response::AddHeader {
                name: "X-A\r\nBcc".into(),
                value: vec![],
            },
            EncodeError::BadHeaderName {
                name: "X-A\r\nBcc".into(),
            },
        ),
        (
            Response::AddHeader {
                name: "X-A".into(),
                value: b"a\r\n\tb".to_vec(),
            },
            EncodeError::BadHeaderFolding,
        ),
        (
            Response::AddHeader {
                name: "X-A".into(),
                value: b"a\nBcc: x".to_vec(),
            },
            EncodeError::BadHeaderFolding,
        ),
        (
            Response::AddHeader {
                name: "X-A".into(),
                value: b"a\n".to_vec(),
            },
            EncodeError::BadHeaderFolding,
        ),
        (
            Response::AddHeader {
                name: "X-A".into(),
                value: b"a\rb".to_vec(),
            },
            EncodeError::BadHeaderFolding,
        ),
        (
            Response::AddRcpt {
                rcpt: "<a@b>\0".into(),
            },
            EncodeError::Nul { what: "recipient" },
        ),
        (
            Response::DelRcpt {
                rcpt: "<a@b>\n".into(),
            },
            EncodeError::LineBreak { what: "recipient" },
        ),
        (
            Response::ChangeFrom {
                sender: "<a@b>".into(),
                args: Some("SIZE=1\r".into()),
            },
            EncodeError::LineBreak {
                what: "ESMTP arguments",
            },
        ),
        (
            Response::Quarantine {
                reason: "a\0".into(),
            },
            EncodeError::Nul {
                what: "quarantine reason",
            },
        ),
        (
            Response::ReplaceBody(vec![b'x'; CHUNK_SIZE + 1]),
            EncodeError::TooLong {
                what: "SMFIR_REPLBODY",
                len: CHUNK_SIZE + 1,
                max: CHUNK_SIZE,
            },
        ),
        (
            Response::AddHeader {
                name: "X-Long".into(),
                value: vec![b'x'; CHUNK_SIZE],
            },
            EncodeError::TooLong {
                what: "SMFIR_ADDHEADER",
                len: CHUNK_SIZE + 8,
                max: CHUNK_SIZE,
            },
        ),
    ];
    for (response, want) in cases {
        let mut out = b"before".to_vec();
        assert_eq!(response.encode(&mut out), Err(want), "{response:?}");
        assert_eq!(out, b"before");
    }
}

#[test]
fn bodies_are_split_into_chunks_of_65535() {
    let body: Vec<u8> = (0..2 * CHUNK_SIZE + 10).map(|i| i as u8).collect();
    let parts = replace_body(&body);
    assert_eq!(parts.len(), 3);
    let mut joined = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let Response::ReplaceBody(chunk) = part else {
            panic!("not a body chunk");
        };
        assert_eq!(chunk.len(), if i < 2 { CHUNK_SIZE } else { 10 });
        let bytes = encode(part);
        assert_eq!(
            bytes[..5],
            cat(&[&((chunk.len() + 1) as u32).to_be_bytes(), b"b"])
        );
        joined.extend_from_slice(&bytes[5..]);
    }
    assert_eq!(joined, body);
    // Exactly one chunk's worth is one packet; an empty body one empty one.
    assert_eq!(replace_body(&vec![b'x'; CHUNK_SIZE]).len(), 1);
    assert_eq!(replace_body(&vec![b'x'; CHUNK_SIZE + 1]).len(), 2);
    assert_eq!(replace_body(b""), vec![Response::ReplaceBody(vec![])]);
}

// ---- Negotiation ----------------------------------------------------------

#[test]
fn negotiation_with_a_v6_mta_offering_everything() {
    let mta = OptNeg {
        version: 6,
        actions: Actions(0x1FF),
        protocol: Protocol(0x1F_FFFF),
    };
    let want_actions = Actions::ADDHDRS | Actions::CHGHDRS | Actions::QUARANTINE;
    let want_protocol = Protocol::NOUNKNOWN | Protocol::NODATA | Protocol::NR_HDR;
    let n = negotiate(&mta, want_actions, want_protocol).unwrap();
    assert_eq!(
        n.reply,
        OptNeg {
            version: 6,
            actions: want_actions,
            protocol: want_protocol,
        }
    );
    assert!(n.missing_actions.is_empty());
    assert!(n.dropped_protocol.is_empty());
    // A later MTA version is answered with ours.
    let n = negotiate(&OptNeg { version: 7, ..mta }, want_actions, want_protocol).unwrap();
    assert_eq!(n.reply.version, PROTOCOL_VERSION);
}

#[test]
fn negotiation_with_an_old_mta() {
    // Sendmail 8.12-era: version 2, V2 actions and protocol.
    let mta = OptNeg {
        version: 2,
        actions: Actions(0x3F),
        protocol: Protocol(0x7F),
    };
    let want_actions = Actions::ADDHDRS | Actions::QUARANTINE | Actions::CHGFROM;
    let want_protocol = Protocol::NOUNKNOWN | Protocol::NODATA | Protocol::NOHELO;
    let n = negotiate(&mta, want_actions, want_protocol).unwrap();
    assert_eq!(n.reply.version, 2);
    assert_eq!(n.reply.actions, Actions::ADDHDRS | Actions::QUARANTINE);
    assert_eq!(n.missing_actions, Actions::CHGFROM);
    // Bits the MTA did not offer are never in the reply.
    assert_eq!(n.reply.protocol, Protocol::NOHELO);
    assert_eq!(n.dropped_protocol, Protocol::NOUNKNOWN | Protocol::NODATA);
    for v in 3..=5 {
        let n = negotiate(&OptNeg { version: v, ..mta }, want_actions, want_protocol).unwrap();
        assert_eq!(n.reply.version, v);
    }
}

#[test]
fn negotiation_drops_no_reply_flags_the_mta_lacks() {
    let mta = OptNeg {
        version: 6,
        actions: Actions::ADDHDRS,
        protocol: Protocol::NOUNKNOWN | Protocol::NR_HDR | Protocol::SKIP,
    };
    let n = negotiate(
        &mta,
        Actions::ADDHDRS,
        Protocol::NR_HDR | Protocol::NR_BODY | Protocol::HDR_LEADSPC,
    )
    .unwrap();
    assert_eq!(n.reply.protocol, Protocol::NR_HDR);
    assert_eq!(
        n.dropped_protocol,
        Protocol::NR_BODY | Protocol::HDR_LEADSPC
    );
    // The session then replies to body chunks after all.
    assert!(Command::Body(vec![]).expects_reply(n.reply.protocol));
}

#[test]
fn negotiation_refuses_version_1() {
    for v in [0, 1] {
        let mta = OptNeg {
            version: v,
            actions: Actions(0x0F),
            protocol: Protocol(0x3F),
        };
        assert_eq!(
            negotiate(&mta, Actions::NONE, Protocol::NONE),
            Err(NegotiateError::VersionTooOld(v))
        );
    }
}

#[test]
fn an_mta_offering_nothing_is_taken_to_offer_version_1_sets() {
    let mta = OptNeg {
        version: 2,
        actions: Actions::NONE,
        protocol: Protocol::NONE,
    };
    let n = negotiate(
        &mta,
        Actions::ADDHDRS | Actions::QUARANTINE,
        Protocol::NOHELO | Protocol::NODATA,
    )
    .unwrap();
    assert_eq!(n.reply.actions, Actions::ADDHDRS);
    assert_eq!(n.missing_actions, Actions::QUARANTINE);
    assert_eq!(n.reply.protocol, Protocol::NOHELO);
    assert_eq!(n.dropped_protocol, Protocol::NODATA);
}

// ---- Framing on a stream ----------------------------------------------------

/// A reader that hands out one byte per read, to exercise partial reads.
struct OneByte<'a>(&'a [u8]);

impl AsyncRead for OneByte<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if let Some((&b, rest)) = self.0.split_first() {
            if buf.remaining() > 0 {
                buf.put_slice(&[b]);
                self.0 = rest;
            }
        }
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn read_packet_returns_none_on_a_clean_eof() {
    let mut r: &[u8] = b"";
    assert!(read_packet(&mut r, MAX_PACKET).await.unwrap().is_none());
}

/// Every packet up to a clean end of stream.
async fn read_all<R: AsyncRead + Unpin>(r: &mut R) -> Vec<Vec<u8>> {
    let mut packets = Vec::new();
    while let Some(p) = read_packet(r, MAX_PACKET).await.unwrap() {
        packets.push(p);
    }
    packets
}

#[tokio::test]
async fn read_packet_reads_packets_back_to_back() {
    let stream = cat(&[&postfix_optneg(), &pkt(b'Q', b"")]);
    let want = vec![postfix_optneg()[4..].to_vec(), b"Q".to_vec()];
    let mut plain: &[u8] = &stream;
    assert_eq!(read_all(&mut plain).await, want);
    assert_eq!(read_all(&mut OneByte(&stream)).await, want);
}

#[tokio::test]
async fn read_packet_errors() {
    // EOF inside the length field.
    let mut r = OneByte(&[0, 0]);
    assert!(matches!(
        read_packet(&mut r, MAX_PACKET).await,
        Err(WireError::EofInLength { got: 2 })
    ));
    // EOF inside the data.
    let mut r: &[u8] = &[0, 0, 0, 5, b'H', b'a'];
    assert!(matches!(
        read_packet(&mut r, MAX_PACKET).await,
        Err(WireError::EofInData { length: 5, got: 2 })
    ));
    // EOF right after the length.
    let mut r: &[u8] = &[0, 0, 0, 1];
    assert!(matches!(
        read_packet(&mut r, MAX_PACKET).await,
        Err(WireError::EofInData { length: 1, got: 0 })
    ));
    // Length 0.
    let mut r: &[u8] = &[0, 0, 0, 0, b'Q'];
    assert!(matches!(
        read_packet(&mut r, MAX_PACKET).await,
        Err(WireError::EmptyPacket)
    ));
    // Too long, refused from the length alone (no data follows).
    let mut r: &[u8] = &(MAX_PACKET + 1).to_be_bytes();
    let err = read_packet(&mut r, MAX_PACKET).await.unwrap_err();
    assert!(matches!(
        err,
        WireError::TooLong {
            length,
            max: MAX_PACKET
        } if length == MAX_PACKET + 1
    ));
    assert_eq!(
        err.to_string(),
        "packet of 1048577 bytes is over the limit of 1048576 bytes"
    );
    // HTTP sent to the milter port says so (walkH: only the number).
    let mut r: &[u8] = b"GET / HTTP/1.1\r\n";
    let err = read_packet(&mut r, MAX_PACKET).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "packet of 1195725856 bytes is over the limit of 1048576 bytes (the connection began with \"GET \": not the milter protocol; HTTP or SMTP sent to the milter port?)"
    );
    let mut r: &[u8] = &[0xff, 0xff, 0xff, 0xff];
    assert!(matches!(
        read_packet(&mut r, 100).await,
        Err(WireError::TooLong {
            length: u32::MAX,
            max: 100
        })
    ));
    // Exactly the limit is fine.
    let big = pkt(b'B', &[b'x'; 99]);
    let mut r: &[u8] = &big;
    assert_eq!(read_packet(&mut r, 100).await.unwrap().unwrap().len(), 100);
}

#[test]
fn split_packets_stops_at_the_first_error() {
    let stream = cat(&[&pkt(b'T', b""), &[0, 0, 0, 0], &pkt(b'Q', b"")]);
    let items: Vec<_> = split_packets(&stream, MAX_PACKET).collect();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].as_ref().unwrap(), b"T");
    assert!(matches!(items[1], Err(WireError::EmptyPacket)));
    assert_eq!(split_packets(b"", MAX_PACKET).count(), 0);
    let items: Vec<_> = split_packets(&[0, 0, 0, 9, b'B'], 8).collect();
    assert!(matches!(
        items[..],
        [Err(WireError::TooLong { length: 9, max: 8 })]
    ));
}

// ---- Pseudo-random input ----------------------------------------------------

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

    /// Random bytes, mostly printable, sometimes anything.
    fn bytes(&mut self, max: usize, nul: bool) -> Vec<u8> {
        let len = self.below(max + 1);
        (0..len)
            .map(|_| {
                let b = if self.below(4) == 0 {
                    self.next() as u8
                } else {
                    b' ' + self.below(95) as u8
                };
                if b == 0 && !nul {
                    b'0'
                } else {
                    b
                }
            })
            .collect()
    }
}

/// Decoding never panics: random bytes, random data behind each command
/// byte, and mutations of valid packets, framed and not.
#[test]
fn decoding_random_bytes_never_panics() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let valid: Vec<Vec<u8>> = postfix_session()
        .into_iter()
        .chain(other_valid_packets())
        .map(|(b, _)| b)
        .collect();
    let codes = b"ODCHMRTLNBEAQKUZ\0";
    let mut decoded = 0usize;
    for case in 0..60_000usize {
        let bytes: Vec<u8> = match case % 3 {
            0 => rng.bytes(64, true),
            1 => {
                let data = rng.bytes(48, true);
                pkt(codes[rng.below(codes.len())], &data)
            }
            _ => {
                let mut b = valid[rng.below(valid.len())].clone();
                for _ in 0..1 + rng.below(3) {
                    if b.is_empty() {
                        break;
                    }
                    let i = rng.below(b.len());
                    match rng.below(4) {
                        0 => b[i] = rng.next() as u8,
                        1 => b[i] ^= 1 << rng.below(8),
                        2 => b[i] = 0,
                        _ => b.truncate(i),
                    }
                }
                b
            }
        };
        for packet in split_packets(&bytes, MAX_PACKET).flatten() {
            if let Ok(c) = Command::decode(packet) {
                decoded += 1;
                let _ = c.expects_reply(Protocol(rng.next() as u32));
                if let Command::OptNeg(o) = c {
                    let _ = negotiate(&o, Actions(rng.next() as u32), Protocol(0x30_0000));
                }
            }
        }
        let _ = Command::decode(&bytes);
    }
    // The mutations must reach valid packets too, or the test tests little.
    assert!(decoded > 5_000, "only {decoded} decoded");
}

/// Strings without NULs survive a trip through the wire format: what an
/// MTA encodes, `decode` gives back.
#[test]
fn random_strings_round_trip_through_decode() {
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    for _ in 0..5_000 {
        let name = rng.bytes(20, false);
        let value = rng.bytes(200, false);
        let header = pkt(b'L', &cat(&[&name, b"\0", &value, b"\0"]));
        assert_eq!(
            decode_one(&header).unwrap(),
            Command::Header {
                name: lossy(&name),
                value: value.clone(),
            }
        );
        let args: Vec<Vec<u8>> = (0..1 + rng.below(4))
            .map(|_| rng.bytes(30, false))
            .collect();
        let mut data = Vec::new();
        for a in &args {
            data.extend_from_slice(a);
            data.push(0);
        }
        assert_eq!(
            decode_one(&pkt(b'M', &data)).unwrap(),
            Command::Mail {
                sender: lossy(&args[0]),
                args: args[1..].iter().map(|a| lossy(a)).collect(),
            }
        );
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..rng.below(4))
            .map(|_| (rng.bytes(12, false), rng.bytes(30, false)))
            .collect();
        let mut data = vec![b'R'];
        for (n, v) in &pairs {
            data.extend_from_slice(&cat(&[n, b"\0", v, b"\0"]));
        }
        assert_eq!(
            decode_one(&pkt(b'D', &data)).unwrap(),
            Command::Macro(Macros {
                for_command: b'R',
                pairs: pairs.iter().map(|(n, v)| (lossy(n), lossy(v))).collect(),
            })
        );
    }
}

/// Header responses encode exactly when their name and value pass the
/// documented rules, and then to `name\0value\0` behind a correct length.
#[test]
fn random_header_responses_encode_only_when_valid() {
    let mut rng = XorShift(0x0123_4567_89ab_cdef);
    let specials = [b'\r', b'\n', b' ', b'\t', b':', 0];
    let mut encoded = 0;
    for _ in 0..20_000 {
        let mut name = rng.bytes(12, true);
        let mut value = rng.bytes(40, true);
        // Sprinkle the bytes the rules are about.
        for _ in 0..rng.below(3) {
            if !value.is_empty() {
                let i = rng.below(value.len());
                value[i] = specials[rng.below(specials.len())];
            }
            if !name.is_empty() && rng.below(4) == 0 {
                let i = rng.below(name.len());
                name[i] = specials[rng.below(specials.len())];
            }
        }
        let name = String::from_utf8_lossy(&name).into_owned();
        let name_ok =
            !name.is_empty() && name.bytes().all(|b| (33..=126).contains(&b) && b != b':');
        let value_ok = value.iter().enumerate().all(|(i, &b)| match b {
            0 | b'\r' => false,
            b'\n' => matches!(value.get(i + 1), Some(b' ' | b'\t')),
            _ => true,
        });
        let response = Response::AddHeader {
            name: name.clone(),
            value: value.clone(),
        };
        let mut out = Vec::new();
        match response.encode(&mut out) {
            Ok(()) => {
                assert!(name_ok && value_ok, "{name:?} {value:?}");
                encoded += 1;
                let data = cat(&[name.as_bytes(), b"\0", &value, b"\0"]);
                assert_eq!(out, pkt(b'h', &data));
            }
            Err(_) => assert!(!(name_ok && value_ok), "{name:?} {value:?}"),
        }
    }
    assert!(encoded > 1_000, "only {encoded} encoded");
}
