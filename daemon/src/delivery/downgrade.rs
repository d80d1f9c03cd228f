//! Turning 8-bit content into 7-bit MIME for a next hop that does not offer
//! 8BITMIME.
//!
//! RFC 6152 §3 leaves a relay two choices for such a hop: convert the
//! message to 7-bit MIME (RFC 2045) or bounce it. Bouncing loses more than
//! it should: the failure DSN of an 8-bit message returns it whole, so when
//! the sender's own hop is 7-bit too, the notice is lost as well (walkK).
//! Postfix converts by default (`disable_mime_output_conversion = no`), and
//! so do we:
//! - a leaf part with 8-bit octets gets quoted-printable (`text/*`) or
//!   base64 (anything else), and its Content-Transfer-Encoding says so;
//! - a multipart or `message/rfc822` is converted part by part, and its own
//!   `8bit`/`binary` encoding becomes `7bit`;
//! - a converted message without `MIME-Version` gets one, and one without
//!   a Content-Type is text/plain: it gets one whose charset is `utf-8`
//!   when the body is UTF-8 and `unknown-8bit` (RFC 1428) when it is not.
//!
//! What cannot be converted is refused with the reason, and the message
//! then fails 5.6.3 at that hop as before: 8-bit octets in a header field
//! (they need SMTPUTF8 or RFC 2047 words, and a relay cannot know their
//! charset), in a part already declared base64 or quoted-printable (broken;
//! encoding it again would hide that), in a multipart's preamble or
//! epilogue, in a `message/*` part other than rfc822 and the RFC 6532/6533
//! `message/global*` types (encoded whole, quoted-printable), or nested deeper than
//! [`MAX_DEPTH`]. Every entity without 8-bit octets stays byte for byte as
//! it came. A DKIM signature over a converted body no longer verifies, as
//! with Postfix's conversion.

use crate::delivery::dsn::is_eight_bit;
use crate::text::find_bytes as find;
use base64::Engine as _;

/// How deep parts may nest before we give up (a bound on recursion for a
/// hostile message; real mail nests a handful of levels).
pub const MAX_DEPTH: usize = 32;

/// Why a message cannot be sent as 7-bit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unconvertible {
    #[error("a header field holds 8-bit octets")]
    EightBitHeader,
    #[error("a part declared {0} holds 8-bit octets")]
    EncodedEightBit(String),
    #[error("a multipart's preamble or epilogue holds 8-bit octets")]
    EightBitOutsideParts,
    #[error("a {0} part holds 8-bit octets")]
    EightBitMessagePart(String),
    #[error("a multipart without a boundary holds 8-bit octets")]
    NoBoundary,
    #[error("MIME parts are nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

/// The message as 7-bit MIME, or why it cannot be.
pub fn seven_bit(message: &[u8]) -> Result<Vec<u8>, Unconvertible> {
    convert(message, Kind::Message, 0)
}

/// What an entity is when its header does not say (RFC 2045 5.2, RFC 2046
/// 5.1.5), and whether it is a whole message (which may lack MIME headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Message,
    Part,
    DigestPart,
}

fn convert(entity: &[u8], kind: Kind, depth: usize) -> Result<Vec<u8>, Unconvertible> {
    if !is_eight_bit(entity) {
        return Ok(entity.to_vec());
    }
    if depth > MAX_DEPTH {
        return Err(Unconvertible::TooDeep);
    }
    let e = Entity::split(entity);
    if is_eight_bit(e.header) {
        return Err(Unconvertible::EightBitHeader);
    }
    let declared = field(e.header, "content-type").map(|v| ContentType::parse(&v));
    let media = match (&declared, kind) {
        (Some(ct), _) => ct.media.clone(),
        (None, Kind::DigestPart) => "message/rfc822".to_string(),
        (None, _) => "text/plain".to_string(),
    };
    let encoding = field(e.header, "content-transfer-encoding")
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let unencoded = matches!(encoding.as_str(), "8bit" | "binary");

    if media.starts_with("multipart/") {
        let boundary = declared
            .and_then(|ct| ct.boundary)
            .ok_or(Unconvertible::NoBoundary)?;
        let digest = media == "multipart/digest";
        let body = multipart(e.body, &boundary, digest, depth)?;
        let header = if unencoded {
            with_encoding(e.header, "7bit")
        } else {
            e.header.to_vec()
        };
        return Ok(e.assemble(&mime_version(header, kind), &body));
    }
    if media == "message/rfc822" {
        if matches!(encoding.as_str(), "base64" | "quoted-printable") {
            return Err(Unconvertible::EncodedEightBit(encoding));
        }
        let body = convert(e.body, Kind::Message, depth + 1)?;
        let header = if unencoded {
            with_encoding(e.header, "7bit")
        } else {
            e.header.to_vec()
        };
        return Ok(e.assemble(&mime_version(header, kind), &body));
    }
    // RFC 6532 3.5 and RFC 6533 6: unlike message/rfc822, the types of
    // internationalised mail and of its reports may be encoded as a whole
    // (an RFC 6533 report to a hop without 8BITMIME would be lost
    // otherwise); quoted-printable, as they are mostly ASCII text.
    let global = matches!(
        media.as_str(),
        "message/global"
            | "message/global-headers"
            | "message/global-delivery-status"
            | "message/global-disposition-notification"
    );
    if media.starts_with("message/") && !global {
        return Err(Unconvertible::EightBitMessagePart(media));
    }
    if matches!(encoding.as_str(), "base64" | "quoted-printable") {
        return Err(Unconvertible::EncodedEightBit(encoding));
    }
    let (body, name) = if media.starts_with("text/") || global {
        (quoted_printable::encode(e.body), "quoted-printable")
    } else {
        (base64_lines(e.body), "base64")
    };
    let mut header = with_encoding(e.header, name);
    if kind == Kind::Message && declared.is_none() {
        let eol = eol_of(e.header);
        let charset = if std::str::from_utf8(e.body).is_ok() {
            "utf-8"
        } else {
            "unknown-8bit"
        };
        header.extend_from_slice(format!("Content-Type: text/plain; charset={charset}").as_bytes());
        header.extend_from_slice(eol);
    }
    Ok(e.assemble(&mime_version(header, kind), &body))
}

/// A converted message's header with `MIME-Version` (RFC 2045 4): without
/// it, the Content-Transfer-Encoding just added means nothing to a reader.
fn mime_version(mut header: Vec<u8>, kind: Kind) -> Vec<u8> {
    if kind == Kind::Message && field(&header, "mime-version").is_none() {
        let eol = eol_of(&header);
        header.extend_from_slice(b"MIME-Version: 1.0");
        header.extend_from_slice(eol);
    }
    header
}

/// An entity cut at its first empty line.
struct Entity<'a> {
    header: &'a [u8],
    /// The empty line itself ("" when the entity has none).
    blank: &'a [u8],
    body: &'a [u8],
}

impl<'a> Entity<'a> {
    fn split(entity: &'a [u8]) -> Entity<'a> {
        let end = crate::text::HeaderEnd::of(entity);
        Entity {
            header: &entity[..end.header],
            blank: &entity[end.header..end.body()],
            body: &entity[end.body()..],
        }
    }

    fn assemble(&self, header: &[u8], body: &[u8]) -> Vec<u8> {
        let blank: &[u8] = if self.blank.is_empty() && !body.is_empty() {
            eol_of(header)
        } else {
            self.blank
        };
        let mut out = Vec::with_capacity(header.len() + blank.len() + body.len());
        out.extend_from_slice(header);
        out.extend_from_slice(blank);
        out.extend_from_slice(body);
        out
    }
}

/// Converts each part of a multipart body; the delimiter lines, and the
/// line break before each (RFC 2046 5.1.1: it belongs to the delimiter),
/// stay as they are.
fn multipart(
    body: &[u8],
    boundary: &str,
    digest: bool,
    depth: usize,
) -> Result<Vec<u8>, Unconvertible> {
    let delimiters = delimiters(body, boundary);
    let Some(first) = delimiters.first() else {
        // No part at all: everything is preamble.
        return Err(Unconvertible::EightBitOutsideParts);
    };
    if is_eight_bit(&body[..first.start]) {
        return Err(Unconvertible::EightBitOutsideParts);
    }
    let kind = if digest { Kind::DigestPart } else { Kind::Part };
    let mut out = Vec::with_capacity(body.len() + body.len() / 2);
    out.extend_from_slice(&body[..first.end]);
    for (i, d) in delimiters.iter().enumerate() {
        if d.close {
            let epilogue = &body[d.end..];
            if is_eight_bit(epilogue) {
                return Err(Unconvertible::EightBitOutsideParts);
            }
            out.extend_from_slice(epilogue);
            break;
        }
        match delimiters.get(i + 1) {
            Some(next) => {
                let part_end = line_break_before(body, next.start).max(d.end);
                out.extend_from_slice(&convert(&body[d.end..part_end], kind, depth + 1)?);
                out.extend_from_slice(&body[part_end..next.end]);
            }
            // Cut short: the last part runs to the end.
            None => out.extend_from_slice(&convert(&body[d.end..], kind, depth + 1)?),
        }
    }
    Ok(out)
}

/// A delimiter line: where it starts, where the next line starts, and
/// whether it closes the multipart.
struct Delimiter {
    start: usize,
    end: usize,
    close: bool,
}

fn delimiters(body: &[u8], boundary: &str) -> Vec<Delimiter> {
    let dash = format!("--{boundary}");
    let mut found = Vec::new();
    let mut pos = 0;
    while pos < body.len() {
        let end = find(&body[pos..], b"\n").map_or(body.len(), |i| pos + i + 1);
        if let Some(rest) = body[pos..end].strip_prefix(dash.as_bytes()) {
            let padding = |s: &[u8]| s.iter().all(|b| b" \t\r\n".contains(b));
            if padding(rest) {
                found.push(Delimiter {
                    start: pos,
                    end,
                    close: false,
                });
            } else if rest.starts_with(b"--") && padding(&rest[2..]) {
                found.push(Delimiter {
                    start: pos,
                    end,
                    close: true,
                });
                break;
            }
        }
        pos = end;
    }
    found
}

/// Where the line break that ends just before `at` starts.
fn line_break_before(body: &[u8], at: usize) -> usize {
    if at >= 2 && &body[at - 2..at] == b"\r\n" {
        at - 2
    } else if at >= 1 && body[at - 1] == b'\n' {
        at - 1
    } else {
        at
    }
}

/// The header with every Content-Transfer-Encoding field (and its folded
/// lines) taken out and one saying `encoding` added at the end.
fn with_encoding(header: &[u8], encoding: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(header.len() + 40);
    let mut dropping = false;
    for line in lines(header) {
        let folded = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if !folded {
            dropping = name_is(line, "content-transfer-encoding");
        }
        if !dropping {
            out.extend_from_slice(line);
        }
    }
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.extend_from_slice(eol_of(header));
    }
    out.extend_from_slice(format!("Content-Transfer-Encoding: {encoding}").as_bytes());
    out.extend_from_slice(eol_of(header));
    out
}

/// The first field called `name`, unfolded.
fn field(header: &[u8], name: &str) -> Option<String> {
    let mut value: Option<String> = None;
    for line in lines(header) {
        let folded = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        match (&mut value, folded) {
            (Some(v), true) => v.push_str(String::from_utf8_lossy(line).trim_end()),
            (Some(_), false) => break,
            (None, false) if name_is(line, name) => {
                let colon = line.iter().position(|b| *b == b':').unwrap_or(line.len());
                let rest = line.get(colon + 1..).unwrap_or_default();
                value = Some(String::from_utf8_lossy(rest).trim().to_string());
            }
            _ => {}
        }
    }
    value
}

fn name_is(line: &[u8], name: &str) -> bool {
    line.iter().position(|b| *b == b':').is_some_and(|colon| {
        String::from_utf8_lossy(&line[..colon])
            .trim()
            .eq_ignore_ascii_case(name)
    })
}

/// Lines with their line ends.
fn lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes.split_inclusive(|b| *b == b'\n')
}

/// The line end the entity uses (CRLF, as SMTP carries it, unless it has
/// only bare LFs).
fn eol_of(header: &[u8]) -> &'static [u8] {
    if header.contains(&b'\n') && find(header, b"\r\n").is_none() {
        b"\n"
    } else {
        b"\r\n"
    }
}

fn base64_lines(data: &[u8]) -> Vec<u8> {
    let text = base64::engine::general_purpose::STANDARD.encode(data);
    let mut out = Vec::with_capacity(text.len() + text.len() / 38 + 2);
    for chunk in text.as_bytes().chunks(76) {
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The media type (lower case) and boundary of a Content-Type value.
struct ContentType {
    media: String,
    boundary: Option<String>,
}

impl ContentType {
    fn parse(value: &str) -> ContentType {
        let (media, params) = value.split_once(';').unwrap_or((value, ""));
        ContentType {
            media: media.trim().to_ascii_lowercase(),
            boundary: parameter(params, "boundary"),
        }
    }
}

/// One parameter of a Content-Type (RFC 2045 5.1): a token or a quoted
/// string, where a quoted string may hold `;` and backslash escapes.
fn parameter(params: &str, wanted: &str) -> Option<String> {
    let mut rest = params;
    loop {
        rest = rest.trim_start_matches([' ', '\t', '\r', '\n', ';']);
        if rest.is_empty() {
            return None;
        }
        let eq = rest.find('=')?;
        let name = rest[..eq].trim();
        let after = rest[eq + 1..].trim_start();
        let (value, tail) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    _ => value.push(c),
                }
            }
            (value, &quoted[end.min(quoted.len())..])
        } else {
            let end = after
                .find([';', ' ', '\t', '\r', '\n'])
                .unwrap_or(after.len());
            (after[..end].to_string(), &after[end..])
        };
        if name.eq_ignore_ascii_case(wanted) {
            return Some(value);
        }
        // Skip to the next parameter.
        rest = match tail.find(';') {
            Some(i) => &tail[i..],
            None => "",
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    #[test]
    fn seven_bit_mail_is_left_byte_for_byte() {
        let m = b"Subject: hi\r\nContent-Transfer-Encoding: 8bit\r\n\r\nplain\r\n";
        assert_eq!(seven_bit(m).as_deref(), Ok(&m[..]));
    }

    #[test]
    fn a_text_body_becomes_quoted_printable() {
        let m = "Subject: s\r\nContent-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: 8bit\r\n\r\nGr\u{fc}\u{df}e = 1\r\n";
        let out = seven_bit(m.as_bytes()).map(|b| text(&b));
        assert_eq!(
            out.as_deref(),
            Ok("Subject: s\r\nContent-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\nMIME-Version: 1.0\r\n\r\nGr=C3=BC=C3=9Fe =3D 1\r\n")
        );
    }

    #[test]
    fn a_message_without_mime_headers_gets_them() {
        let out = seven_bit("Subject: s\r\n\r\nGr\u{fc}\u{df}e\r\n".as_bytes())
            .map(|b| text(&b))
            .unwrap_or_default();
        assert!(out.contains("\r\nMIME-Version: 1.0\r\n"), "{out}");
        assert!(
            out.contains("\r\nContent-Type: text/plain; charset=utf-8\r\n"),
            "{out}"
        );
        assert!(out.ends_with("\r\n\r\nGr=C3=BC=C3=9Fe\r\n"), "{out}");
        let latin1 = seven_bit(b"Subject: s\r\n\r\nGr\xfc\xdfe\r\n")
            .map(|b| text(&b))
            .unwrap_or_default();
        assert!(latin1.contains("charset=unknown-8bit"), "{latin1}");
    }

    #[test]
    fn multipart_parts_are_converted_each_and_the_rest_kept() {
        let m = b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b;1\"\r\n\
Content-Transfer-Encoding: 8bit\r\n\r\npreamble\r\n--b;1\r\n\
Content-Type: text/plain\r\n\r\nplain\r\n--b;1\r\n\
Content-Type: text/plain; charset=iso-8859-1\r\n\r\ncaf\xe9\r\n--b;1\r\n\
Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n\xff\xfe\r\n\
--b;1--\r\nepilogue\r\n";
        let out = seven_bit(m).unwrap_or_default();
        assert!(!is_eight_bit(&out));
        let out = text(&out);
        assert!(
            out.contains(
                "boundary=\"b;1\"\r\nContent-Transfer-Encoding: 7bit\r\n\r\npreamble\r\n--b;1\r\n"
            ),
            "{out}"
        );
        assert!(out.contains("\r\n\r\nplain\r\n--b;1\r\n"), "{out}");
        assert!(out.contains("charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=E9\r\n--b;1\r\n"), "{out}");
        assert!(
            out.contains(
                "Content-Transfer-Encoding: base64\r\n\r\n//4=\r\n\r\n--b;1--\r\nepilogue\r\n"
            ),
            "{out}"
        );
        assert!(!out.contains("binary"), "{out}");
    }

    #[test]
    fn a_returned_message_inside_a_report_is_converted_too() {
        let m = b"Content-Type: multipart/report; report-type=delivery-status; boundary=\"R\"\r\n\
Content-Transfer-Encoding: 8bit\r\n\r\n--R\r\nContent-Type: text/plain\r\n\r\nfailed\r\n--R\r\n\
Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
Subject: x\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nGr\xc3\xbc\xc3\x9fe\r\n\r\n--R--\r\n";
        let out = text(&seven_bit(m).unwrap_or_default());
        assert!(
            out.contains("Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 7bit\r\n\r\nSubject: x\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\nMIME-Version: 1.0\r\n\r\nGr=C3=BC=C3=9Fe\r\n\r\n--R--"),
            "{out}"
        );
    }

    #[test]
    fn the_parts_of_an_internationalised_report_are_encoded_whole() {
        let report = "Content-Type: multipart/report; report-type=global-delivery-status; boundary=\"b\"\r\n\
MIME-Version: 1.0\r\nContent-Transfer-Encoding: 8bit\r\n\r\n--b\r\n\
Content-Type: message/global-delivery-status\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
Final-Recipient: utf-8; j\u{fc}rgen@example.com\r\n\r\n--b\r\n\
Content-Type: message/global\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
Subject: Gr\u{fc}\u{df}e\r\n\r\nhi\r\n\r\n--b--\r\n";
        let out = seven_bit(report.as_bytes()).map(|o| text(&o));
        let Ok(out) = out else {
            panic!("{out:?}");
        };
        assert!(out.is_ascii(), "{out}");
        assert!(
            out.contains("Content-Type: message/global-delivery-status\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nFinal-Recipient: utf-8; j=C3=BCrgen@example.com"),
            "{out}"
        );
        assert!(
            out.contains("Content-Type: message/global\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nSubject: Gr=C3=BC=C3=9Fe"),
            "{out}"
        );
    }

    #[test]
    fn what_cannot_be_converted_says_why() {
        assert_eq!(
            seven_bit("Subject: Gr\u{fc}\u{df}e\r\n\r\nbody\u{fc}\r\n".as_bytes()),
            Err(Unconvertible::EightBitHeader)
        );
        assert_eq!(
            seven_bit(b"Content-Transfer-Encoding: base64\r\n\r\n\xff\r\n"),
            Err(Unconvertible::EncodedEightBit("base64".into()))
        );
        assert_eq!(
            seven_bit(b"Content-Type: multipart/mixed; boundary=b\r\n\r\n\xff\r\n--b\r\n\r\nx\r\n--b--\r\n"),
            Err(Unconvertible::EightBitOutsideParts)
        );
        assert_eq!(
            seven_bit(b"Content-Type: multipart/mixed\r\n\r\n\xff\r\n"),
            Err(Unconvertible::NoBoundary)
        );
        assert_eq!(
            seven_bit(b"Content-Type: message/delivery-status\r\n\r\nX: \xff\r\n"),
            Err(Unconvertible::EightBitMessagePart(
                "message/delivery-status".into()
            ))
        );
        let mut deep = Vec::new();
        for _ in 0..=MAX_DEPTH + 1 {
            deep.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
        }
        deep.extend_from_slice(b"\r\n\xff\r\n");
        assert_eq!(seven_bit(&deep), Err(Unconvertible::TooDeep));
    }

    #[test]
    fn a_multipart_cut_short_converts_its_last_part() {
        let m = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n\xe9t\xe9";
        let out = text(&seven_bit(m).unwrap_or_default());
        assert!(
            out.ends_with("--b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=E9t=E9"),
            "{out}"
        );
    }

    #[test]
    fn parameters_are_read_as_rfc_2045_writes_them() {
        assert_eq!(
            parameter("; charset=x; boundary=\"a \\\"b\\\"; c\"", "boundary").as_deref(),
            Some("a \"b\"; c")
        );
        assert_eq!(
            parameter(" BOUNDARY=abc ", "boundary").as_deref(),
            Some("abc")
        );
        assert_eq!(parameter("; charset=x", "boundary"), None);
        assert_eq!(parameter("; broken", "boundary"), None);
    }
}
