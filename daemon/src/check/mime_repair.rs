//! Reading a message's structure as mail clients read it where mail-parser
//! 0.11 reads it otherwise, so that the checks see what a recipient sees.
//! It owns two repairs, both made on a copy of the bytes before they are
//! parsed again (the message in the spool is never changed):
//!
//! - A header block without its empty line. Clients (and Python's `email`,
//!   and Postfix's cleanup) end a header at the first line that is not a
//!   header field ([`is_header_line`]: `X-Foo : x`, white space before the
//!   colon, is one); mail-parser skips such lines and reads on, so that the
//!   body (a virus, an attachment) disappears into the header. The empty
//!   line is put where the client's header ends: before the top-level
//!   body, and before the body of each MIME part.
//! - Folding next to `=` in a `Content-Type` or `Content-Disposition`
//!   parameter (`boundary=` CRLF ` "Q"`). RFC 5322 3.2.2 allows folding
//!   white space there; mail-parser then loses the parameter (a multipart
//!   read as one text part, an attachment without its name). Such a fold
//!   is unfolded.
//!
//! Only the structure is repaired; what a part holds is the checks' and
//! the unpacker's. A message whose repairs cannot all be made (a nested
//! message sent base64-encoded, or more rounds than [`ROUNDS`]) is
//! reported `unresolved`, and the scan gives `av/error`, never "clean".

use mail_parser::{Message, MessageParser, MimeHeaders, PartType};
use std::collections::BTreeMap;

/// Parse-and-repair rounds at most. Each round repairs every header block
/// the parse shows; a repair can reveal parts the previous parse could not
/// see (a part's header that swallowed the rest of the message), so a few
/// rounds are needed for a message damaged at several levels.
const ROUNDS: usize = 16;

/// A message as the checks read it.
pub struct Read<'r> {
    /// The parse (of a repaired copy when a repair was needed: its
    /// `raw_message` is that copy, and its offsets point into it).
    pub message: Option<Message<'r>>,
    /// Some repair that was needed could not be made.
    pub unresolved: bool,
    /// A header block was ended at a line that is no header field, and
    /// MIME fields (`Content-*`, `MIME-Version`) follow that line before
    /// the empty line: a reader that skips the bad line (mail-parser
    /// does, and so may a recipient's) reads another structure than this
    /// one. The checks then scan that reading too ([`crate::check::run`]).
    pub other_reading: bool,
}

/// One change to the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fix {
    /// Insert an empty line here (the end of a header block).
    EmptyLine,
    /// Remove this many bytes here (the line end of a fold next to `=`).
    Unfold(usize),
}

/// Parses `raw` with `parser`, repairing the structure as needed.
pub fn read<'r>(parser: &MessageParser, raw: &'r [u8]) -> Read<'r> {
    let first = parser.parse(raw);
    let (fixes, unfixable) = needed(first.as_ref(), raw);
    if fixes.is_empty() {
        return Read {
            message: first,
            unresolved: unfixable,
            other_reading: false,
        };
    }
    let mut other_reading = disagrees(raw, &fixes);
    drop(first);
    let mut bytes = apply(raw, &fixes);
    for _ in 1..ROUNDS {
        let msg = parser.parse(&bytes);
        let (fixes, unfixable) = needed(msg.as_ref(), &bytes);
        if fixes.is_empty() {
            return Read {
                message: msg.map(Message::into_owned),
                unresolved: unfixable,
                other_reading,
            };
        }
        other_reading |= disagrees(&bytes, &fixes);
        drop(msg);
        bytes = apply(&bytes, &fixes);
    }
    Read {
        message: parser.parse(&bytes).map(Message::into_owned),
        unresolved: true,
        other_reading,
    }
}

/// Lines looked at after a header block's bad line for MIME fields.
const OTHER_READING_LINES: usize = 200;

/// Whether an empty line to be inserted (a header block ended at a line
/// that is no field) leaves MIME fields below it in the same block: then
/// a reader that skips the bad line sees a structure the repaired reading
/// does not (walkAH 2: `this is not a header line` above the
/// `Content-Type` of a multipart hid its attachment from the scan).
fn disagrees(bytes: &[u8], fixes: &BTreeMap<usize, Fix>) -> bool {
    fixes.iter().any(|(&at, fix)| {
        if *fix != Fix::EmptyLine || bytes[at..].starts_with(b"--") {
            // (A delimiter right below a part's header: a part without a
            // body, not a bad line.)
            return false;
        }
        let mut pos = line_at(bytes, at).1;
        for _ in 0..OTHER_READING_LINES {
            if pos >= bytes.len() {
                return false;
            }
            let (end, next) = line_at(bytes, pos);
            let line = &bytes[pos..end];
            if line.is_empty() {
                return false;
            }
            if field_name(line).is_some_and(|name| {
                (name.len() >= 8 && name[..8].eq_ignore_ascii_case(b"content-"))
                    || name.eq_ignore_ascii_case(b"mime-version")
            }) {
                return true;
            }
            pos = next;
        }
        false
    })
}

/// The repairs a parse of `bytes` shows to be needed, and whether some
/// needed repair cannot be made in `bytes` (it lies in a nested message
/// that was transfer-encoded).
fn needed(msg: Option<&Message<'_>>, bytes: &[u8]) -> (BTreeMap<usize, Fix>, bool) {
    let mut fixes = BTreeMap::new();
    let mut unfixable = false;
    match msg {
        Some(m) => walk(m, bytes, &mut fixes, &mut unfixable, 0),
        // No header field at all (a message that is only a body line):
        // the header ends at once.
        None => header_block(bytes, 0, &mut fixes),
    }
    (fixes, unfixable)
}

/// Messages nested deeper than this are not looked into for repairs (the
/// unpacker stops far earlier, at `max_scan_depth`).
const MAX_NESTING: u32 = 64;

fn walk(
    msg: &Message<'_>,
    bytes: &[u8],
    fixes: &mut BTreeMap<usize, Fix>,
    unfixable: &mut bool,
    depth: u32,
) {
    if depth > MAX_NESTING {
        return;
    }
    for part in &msg.parts {
        header_block(bytes, part.offset_header as usize, fixes);
        match &part.body {
            PartType::Multipart(children) => {
                let Some(boundary) = part.content_type().and_then(|c| c.attribute("boundary"))
                else {
                    continue;
                };
                // A part whose header ran to the end of the message is not
                // in the parse at all: look behind the last part read for
                // the next delimiter and the header after it.
                let from = children
                    .last()
                    .and_then(|&c| msg.parts.get(c as usize))
                    .map_or(part.offset_body as usize, |c| {
                        (c.offset_end as usize).max(c.offset_body as usize)
                    });
                if let Some(next) = next_part(bytes, from, boundary.as_bytes()) {
                    header_block(bytes, next, fixes);
                }
            }
            PartType::Message(inner) => {
                // `raw_message()` is the nested message's own slice; its
                // offsets point into the whole buffer it was parsed from
                // (walkS finding 1: comparing the slice took every
                // forwarded message for a transfer-encoded copy).
                let base: &[u8] = &inner.raw_message;
                if std::ptr::eq(base.as_ptr(), bytes.as_ptr()) {
                    // Sent as is: its offsets point into these bytes.
                    walk(inner, bytes, fixes, unfixable, depth + 1);
                } else {
                    // Transfer-encoded: its bytes are a decoded copy; what
                    // it needs cannot be repaired here.
                    let mut inner_fixes = BTreeMap::new();
                    walk(inner, base, &mut inner_fixes, unfixable, depth + 1);
                    *unfixable |= !inner_fixes.is_empty();
                }
            }
            _ => {}
        }
    }
}

/// One line: where its content ends (before CR LF or LF) and where the
/// next line starts.
fn line_at(bytes: &[u8], at: usize) -> (usize, usize) {
    let rest = bytes.get(at..).unwrap_or_default();
    match rest.iter().position(|&b| b == b'\n') {
        Some(n) => {
            let end = if n > 0 && rest[n - 1] == b'\r' {
                n - 1
            } else {
                n
            };
            (at + end, at + n + 1)
        }
        None => (bytes.len(), bytes.len()),
    }
}

/// Whether a line (without its line end) is part of a header block as a
/// client reads it: a field (`name:`, the name printable ASCII without
/// white space, maybe followed by white space before the colon), a
/// continuation (starts with white space), or an mbox `From ` line.
///
/// White space before the colon (`X-Foo : x`) is RFC 5322's obsolete
/// field syntax (4.5.3, `field-name *WSP ":"`), which receivers must
/// accept, and which Postfix's cleanup (`is_header`) and RFC 5322 mail
/// clients take as a field. Python's `email` does not; ending the header
/// there, as it does, hid the whole MIME structure below such a line from
/// the scanner while the recipient's client showed its attachment
/// (walkAH 2). Of two readings, the checks take the one that hides less.
pub(crate) fn is_header_line(line: &[u8]) -> bool {
    match line.first() {
        None => false,
        Some(b' ' | b'\t') => true,
        Some(_) if line.starts_with(b"From ") => true,
        Some(_) => field_name(line).is_some(),
    }
}

/// The name of a header field line (`name *WSP ":"`), None when the line
/// is not one. Shared by every reader of field names (the hop count too),
/// so that they agree on what a field is.
pub(crate) fn field_name(line: &[u8]) -> Option<&[u8]> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = &line[..colon];
    let end = name
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(0, |i| i + 1);
    let name = &name[..end];
    (!name.is_empty() && name.iter().all(|&b| (33..=126).contains(&b))).then_some(name)
}

/// Reads the header block that starts at `start`, noting the repairs it
/// needs: an empty line before its first line that is not a header line,
/// and the unfolding of folds next to `=` in its content fields.
fn header_block(bytes: &[u8], start: usize, fixes: &mut BTreeMap<usize, Fix>) {
    let mut at = start;
    // Whether the field being read is Content-Type or -Disposition.
    let mut content_field = false;
    while at < bytes.len() {
        let (end, next) = line_at(bytes, at);
        let line = &bytes[at..end];
        if line.is_empty() {
            return;
        }
        if !is_header_line(line) {
            fixes.insert(at, Fix::EmptyLine);
            return;
        }
        match line[0] {
            b' ' | b'\t' => {
                let before = bytes[start..at]
                    .iter()
                    .rev()
                    .find(|b| !b.is_ascii_whitespace());
                let after = line.iter().find(|b| !b.is_ascii_whitespace());
                if content_field && (before == Some(&b'=') || after == Some(&b'=')) {
                    // The previous line's end (CR LF or LF) goes.
                    let (prev_end, _) = line_at(bytes, line_start(bytes, at - 1));
                    fixes.insert(prev_end, Fix::Unfold(at - prev_end));
                }
            }
            _ => {
                let name = field_name(line).unwrap_or_default();
                content_field = name.eq_ignore_ascii_case(b"content-type")
                    || name.eq_ignore_ascii_case(b"content-disposition");
            }
        }
        at = next;
    }
}

/// Where the line holding byte `at` starts.
fn line_start(bytes: &[u8], at: usize) -> usize {
    bytes[..at]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |n| n + 1)
}

/// Where the header of the next part of a multipart starts: the line after
/// the first delimiter line (`--boundary`, maybe with trailing white space)
/// at or after `from`; None at a close delimiter or the end.
fn next_part(bytes: &[u8], from: usize, boundary: &[u8]) -> Option<usize> {
    let dash = [b"--".as_slice(), boundary].concat();
    let mut at = line_start(bytes, from.min(bytes.len()));
    while at < bytes.len() {
        let (end, next) = line_at(bytes, at);
        let line = &bytes[at..end];
        if let Some(rest) = line.strip_prefix(dash.as_slice()) {
            if rest.starts_with(b"--") {
                return None;
            }
            if rest.iter().all(u8::is_ascii_whitespace) {
                return Some(next);
            }
        }
        at = next;
    }
    None
}

/// A copy of `bytes` with `fixes` made. An empty line takes the line end
/// of the line it goes before (CR LF unless that line ends in a bare LF).
fn apply(bytes: &[u8], fixes: &BTreeMap<usize, Fix>) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 2 * fixes.len());
    let mut copied = 0;
    for (&at, fix) in fixes {
        if at < copied {
            continue;
        }
        out.extend_from_slice(&bytes[copied..at]);
        copied = at;
        match *fix {
            Fix::EmptyLine => {
                let (end, next) = line_at(bytes, at);
                let bare_lf = next > end && next - end == 1;
                out.extend_from_slice(if bare_lf { b"\n" } else { b"\r\n" });
            }
            Fix::Unfold(n) => copied = (at + n).min(bytes.len()),
        }
    }
    out.extend_from_slice(&bytes[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parser() -> MessageParser {
        MessageParser::new().with_mime_headers()
    }

    #[test]
    fn the_header_ends_at_the_first_line_that_is_not_a_field() {
        let raw = b"From: a@b\r\nSubject: x\r\nbody line\r\nmore: text\r\n";
        let r = read(&parser(), raw);
        let m = r.message.unwrap();
        assert_eq!(
            m.raw_message(),
            b"From: a@b\r\nSubject: x\r\n\r\nbody line\r\nmore: text\r\n"
        );
        assert!(!r.unresolved);
        // A message that is only a body line gets an empty header.
        let m = read(&parser(), b"body only\n").message.unwrap();
        assert_eq!(m.raw_message(), b"\nbody only\n");
        // A whole message is left as it is.
        let raw = b"Subject: x\r\n\r\nbody\r\n";
        assert!(matches!(
            read(&parser(), raw).message.unwrap().raw_message,
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn a_part_without_its_empty_line_is_found_and_repaired() {
        let raw = b"Subject: x\r\nContent-Type: multipart/mixed; boundary=\"Q\"\r\n\
--Q\r\nContent-Type: text/plain\r\n\r\nhi\r\n--Q\r\n\
Content-Type: application/zip; name=\"a.zip\"\r\nContent-Transfer-Encoding: base64\r\n\
UEsDBA==\r\n--Q--\r\n";
        let r = read(&parser(), raw);
        let m = r.message.unwrap();
        let names: Vec<Option<&str>> = m.parts.iter().map(|p| p.attachment_name()).collect();
        assert_eq!(names, [None, None, Some("a.zip")]);
        assert_eq!(m.parts[2].contents(), b"PK\x03\x04");
    }

    #[test]
    fn white_space_before_the_colon_does_not_end_the_header() {
        // walkAH 2: `X-Foo : spaced` ended the header for the scanner, so
        // the multipart below it was one text part and its attachment
        // was never decoded.
        let raw = b"Subject: x\r\nX-Foo : spaced\r\nX-Bar\t: tab\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=BB\r\n\r\n--BB\r\nContent-Type: text/plain\r\n\r\nhi\r\n\
--BB\r\nContent-Type: application/octet-stream; name=\"e.com\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nUEsDBA==\r\n--BB--\r\n";
        let r = read(&parser(), raw);
        let m = r.message.unwrap();
        let names: Vec<Option<&str>> = m.parts.iter().map(|p| p.attachment_name()).collect();
        assert_eq!(names, [None, None, Some("e.com")]);
        assert_eq!(m.parts[2].contents(), b"PK\x03\x04");
        assert!(!r.unresolved);
        assert_eq!(field_name(b"X-Foo : x"), Some(b"X-Foo".as_slice()));
        assert_eq!(field_name(b"Received\t:from"), Some(b"Received".as_slice()));
        assert_eq!(field_name(b" : x"), None);
        assert_eq!(field_name(b"not a field: x"), None);
        assert_eq!(field_name(b"no colon"), None);
    }

    #[test]
    fn a_bad_line_above_mime_fields_asks_for_the_other_reading() {
        let multipart = "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=BB\r\n\r\n\
--BB\r\nContent-Type: text/plain\r\n\r\nhi\r\n--BB--\r\n";
        let raw = format!("Subject: x\r\nthis is not a header line\r\n{multipart}");
        assert!(read(&parser(), raw.as_bytes()).other_reading);
        // A body that starts without its empty line is no other reading.
        let raw = b"Subject: x\r\nhello\r\nregards: me\r\n";
        assert!(!read(&parser(), raw).other_reading);
        let raw = format!("Subject: x\r\n{multipart}");
        assert!(!read(&parser(), raw.as_bytes()).other_reading);
    }

    #[test]
    fn a_fold_next_to_the_equals_sign_is_unfolded() {
        for fold in ["boundary=\r\n \"Q\"", "boundary\r\n\t=Q", "boundary=\n\t Q"] {
            let raw = format!(
                "Subject: x\r\nContent-Type: multipart/mixed;\r\n {fold}\r\n\r\n--Q\r\n\
Content-Disposition: attachment; filename=\r\n a.exe\r\n\r\nhi\r\n--Q--\r\n"
            );
            let m = read(&parser(), raw.as_bytes()).message.unwrap();
            assert_eq!(m.parts.len(), 2, "{fold}");
            assert_eq!(m.parts[1].attachment_name(), Some("a.exe"), "{fold}");
        }
    }
}
