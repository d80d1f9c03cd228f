//! Taking parts out of a message (`remove`) or replacing them with a short
//! notice (`placeholder`), on the raw bytes, so that everything not touched
//! stays byte for byte as it came and the result is still valid MIME.
//!
//! The unit is a leaf of the top-level MIME tree: a forwarded message or an
//! archive is removed or replaced as a whole. Rules:
//! - In a multipart, `remove` cuts the part with its delimiter line;
//!   `placeholder` keeps the delimiter and puts a text/plain part in its
//!   place.
//! - A multipart must keep at least one part (RFC 2046 5.1.1): when every
//!   part of one would be removed, the last one gets a placeholder instead.
//! - A message that is a single part has no part to cut out: both actions
//!   replace its body with the notice and its content headers with text/plain.

use crate::text::find_bytes as find;
use mail_parser::{Message, MimeHeaders, PartType};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edit {
    Remove,
    Placeholder,
}

const NOTICE_HEADERS: &str = "Content-Type: text/plain; charset=us-ascii\r\n\
Content-Disposition: inline\r\nContent-Transfer-Encoding: 7bit\r\n";

/// The headers of a notice that names a file in another script
/// (`ärger Résumé.exe`, `привет.scr`): UTF-8, quoted-printable, so that it
/// passes any hop, 8BITMIME or not, and the recipient reads the name they
/// know rather than `??????.scr` (walkV 3).
const NOTICE_HEADERS_UTF8: &str = "Content-Type: text/plain; charset=utf-8\r\n\
Content-Disposition: inline\r\nContent-Transfer-Encoding: quoted-printable\r\n";

/// A notice part: its content headers, the empty line and the text.
fn notice_part(notice: &str) -> Vec<u8> {
    let text = notice_text(notice);
    let mut out = Vec::with_capacity(text.len() + 120);
    if text.is_ascii() {
        out.extend_from_slice(NOTICE_HEADERS.as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(text.as_bytes());
    } else {
        out.extend_from_slice(NOTICE_HEADERS_UTF8.as_bytes());
        out.extend_from_slice(b"\r\n");
        for line in text.split_terminator("\r\n") {
            out.extend_from_slice(quoted_printable(line).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

/// One line of text as quoted-printable (RFC 2045 6.7): encoded lines of
/// at most 76 characters, joined by soft line breaks.
fn quoted_printable(line: &str) -> String {
    const WIDTH: usize = 76;
    let mut out = String::with_capacity(line.len() * 2);
    let mut col = 0;
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let last = i + 1 == bytes.len();
        let token = if ((33..=126).contains(&b) && b != b'=') || (b == b' ' && !last) {
            (b as char).to_string()
        } else {
            format!("={b:02X}")
        };
        // Room for the token and, unless it ends the line, a soft break.
        if col + token.len() > WIDTH - usize::from(!last) {
            out.push_str("=\r\n");
            col = 0;
        }
        col += token.len();
        out.push_str(&token);
    }
    out
}

fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

pub use crate::text::ascii;

/// The longest run of text without a space a notice or header quotes
/// whole; a longer one (an archive member name of 3,000 characters) is
/// cut in the middle with an ellipsis.
pub const MAX_QUOTED: usize = 120;

/// Where a notice line is wrapped (at a space). A notice of ordinary
/// length stays one line; RFC 5322 2.1.1 allows 998 octets at most.
const NOTICE_WIDTH: usize = 200;

/// `text` (ASCII) cut to `max` octets at most: its start and its end,
/// with `...` between, so that a name keeps its extension.
pub fn shorten(text: &str, max: usize) -> String {
    if text.len() <= max || max < 8 {
        return crate::text::cut(text, max).to_string();
    }
    let keep = max - 3;
    let head = crate::text::cut(text, keep * 2 / 3);
    let mut tail_at = text.len() - (keep - head.len());
    while !text.is_char_boundary(tail_at) {
        tail_at += 1;
    }
    format!("{head}...{}", &text[tail_at..])
}

/// A notice as it is written into a message: control characters
/// flattened (a file name's line breaks start no line), long runs cut
/// ([`MAX_QUOTED`]) and wrapped at spaces, each line ending in CRLF.
fn notice_text(notice: &str) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in crate::text::one_line(notice).split(' ') {
        let word = shorten(word, MAX_QUOTED);
        if !line.is_empty() && line.len() + 1 + word.len() > NOTICE_WIDTH {
            out.push_str(&line);
            out.push_str("\r\n");
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&word);
    }
    out.push_str(&line);
    out.push_str("\r\n");
    out
}

/// Applies `edits` (top-level part index -> edit and notice text) to `raw`,
/// the message `msg` was parsed from. When the parse repaired the message's
/// structure (`check::parse`: a header without its empty line), `msg`
/// holds the repaired copy and its offsets point there: the edits are made
/// on that copy, which is what the recipient's client reads anyway.
pub fn apply(raw: &[u8], msg: &Message<'_>, edits: &BTreeMap<usize, (Edit, String)>) -> Vec<u8> {
    let raw = parsed_bytes(raw, msg);
    let mut parent: BTreeMap<usize, usize> = BTreeMap::new();
    for (i, p) in msg.parts.iter().enumerate() {
        if let PartType::Multipart(children) = &p.body {
            for &c in children {
                parent.insert(c as usize, i);
            }
        }
    }
    let mut edits = edits.clone();
    // A single-part message (or an edit of the root): rewrite it whole.
    if let Some((_, notice)) = edits
        .iter()
        .find(|(i, _)| !parent.contains_key(i))
        .map(|(i, e)| (*i, e.1.clone()))
    {
        return single_part(raw, msg, &notice);
    }
    // Keep one part in every multipart.
    for p in &msg.parts {
        if let PartType::Multipart(children) = &p.body {
            let all_removed = !children.is_empty()
                && children
                    .iter()
                    .all(|c| matches!(edits.get(&(*c as usize)), Some((Edit::Remove, _))));
            if all_removed {
                if let Some(last) = children.last().and_then(|c| edits.get_mut(&(*c as usize))) {
                    last.0 = Edit::Placeholder;
                }
            }
        }
    }
    // Byte ranges to replace, computed on the original, applied from the end.
    let mut cuts: Vec<(usize, usize, Vec<u8>)> = Vec::new();
    for (&i, (edit, notice)) in &edits {
        let (Some(part), Some(&p)) = (msg.parts.get(i), parent.get(&i)) else {
            continue;
        };
        let Some(boundary) = msg
            .parts
            .get(p)
            .and_then(|pp| pp.content_type())
            .and_then(|ct| ct.attribute("boundary"))
        else {
            continue;
        };
        let dash = [b"--".as_slice(), boundary.as_bytes()].concat();
        let line_dash = [b"\n--".as_slice(), boundary.as_bytes()].concat();
        let h = (part.offset_header as usize).min(raw.len());
        // Where this part's body ends: before the CRLF of the next delimiter
        // (or at mail-parser's end offset when the message is cut short).
        let (body_end, next_line) = match find(&raw[h..], &line_dash) {
            Some(n) => {
                let n = h + n;
                let end = if n > 0 && raw[n - 1] == b'\r' {
                    n - 1
                } else {
                    n
                };
                (end, Some(n + 1))
            }
            None => ((part.offset_end as usize).clamp(h, raw.len()), None),
        };
        match edit {
            Edit::Placeholder => {
                cuts.push((h, body_end, notice_part(notice)));
            }
            Edit::Remove => {
                let Some(d) = rfind(&raw[..h], &dash) else {
                    continue;
                };
                if d >= 1 && raw[d - 1] == b'\n' {
                    // "CRLF--boundary CRLF part" goes; the previous part now
                    // runs into the next delimiter's CRLF.
                    let start = if d >= 2 && raw[d - 2] == b'\r' {
                        d - 2
                    } else {
                        d - 1
                    };
                    cuts.push((start, body_end, Vec::new()));
                } else if let Some(next) = next_line {
                    // The first delimiter, at the very start of the body: the
                    // next delimiter takes its place.
                    cuts.push((d, next, Vec::new()));
                }
            }
        }
    }
    cuts.sort_by_key(|c| std::cmp::Reverse(c.0));
    let mut out = raw.to_vec();
    let mut floor = usize::MAX;
    for (start, end, with) in cuts {
        // Overlapping ranges cannot come from distinct leaves; skip rather
        // than corrupt if one ever does.
        if end > floor || start > end {
            continue;
        }
        out.splice(start..end, with);
        floor = start;
    }
    out
}

/// The bytes `msg`'s offsets point into: its own copy when it has one.
fn parsed_bytes<'a>(raw: &'a [u8], msg: &'a Message<'_>) -> &'a [u8] {
    if msg.raw_message().is_empty() {
        raw
    } else {
        msg.raw_message()
    }
}

/// Content headers that describe the body being replaced.
fn is_content_header(field: &[u8]) -> bool {
    let name = field.split(|&b| b == b':').next().unwrap_or(b"");
    let name = String::from_utf8_lossy(name).trim().to_ascii_lowercase();
    matches!(
        name.as_str(),
        "content-type"
            | "content-transfer-encoding"
            | "content-disposition"
            | "content-description"
    )
}

fn single_part(raw: &[u8], msg: &Message<'_>, notice: &str) -> Vec<u8> {
    let body_at = msg
        .parts
        .first()
        .map(|p| p.offset_body as usize)
        .unwrap_or(raw.len())
        .min(raw.len());
    let header = &raw[..body_at];
    // Fields are a line plus its continuation lines.
    let mut fields: Vec<Vec<u8>> = Vec::new();
    for line in header.split_inclusive(|&b| b == b'\n') {
        let bare = line.strip_suffix(b"\n").unwrap_or(line);
        let bare = bare.strip_suffix(b"\r").unwrap_or(bare);
        if bare.is_empty() {
            break;
        }
        match (bare.first(), fields.last_mut()) {
            (Some(b' ' | b'\t'), Some(last)) => last.extend_from_slice(line),
            _ => fields.push(line.to_vec()),
        }
    }
    let has_mime_version = fields
        .iter()
        .any(|f| f.len() >= 13 && f[..13].eq_ignore_ascii_case(b"mime-version:"));
    let mut out = Vec::with_capacity(header.len() + notice.len() + 200);
    for f in fields.iter().filter(|f| !is_content_header(f)) {
        out.extend_from_slice(f);
        if !f.ends_with(b"\n") {
            out.extend_from_slice(b"\r\n");
        }
    }
    if !has_mime_version {
        out.extend_from_slice(b"MIME-Version: 1.0\r\n");
    }
    out.extend_from_slice(&notice_part(notice));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::MessageParser;

    const MIXED: &str = "From: a@example.com\r\nTo: b@example.com\r\nSubject: t\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"BB\"\r\n\r\n\
preamble\r\n--BB\r\nContent-Type: text/plain\r\n\r\nHello there\r\n\
--BB\r\nContent-Type: application/octet-stream; name=\"evil.bin\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nZXZpbA==\r\n\
--BB\r\nContent-Type: text/plain; name=\"note.txt\"\r\n\r\nkeep me\r\n--BB--\r\n";

    fn parse(raw: &[u8]) -> Message<'_> {
        MessageParser::default().parse(raw).unwrap()
    }

    fn index_of(msg: &Message<'_>, name: &str) -> usize {
        msg.parts
            .iter()
            .position(|p| p.attachment_name() == Some(name))
            .unwrap()
    }

    #[test]
    fn remove_cuts_the_part_and_keeps_the_rest_identical() {
        let msg = parse(MIXED.as_bytes());
        let evil = index_of(&msg, "evil.bin");
        let edits = BTreeMap::from([(evil, (Edit::Remove, "gone".to_string()))]);
        let out = apply(MIXED.as_bytes(), &msg, &edits);
        let want = MIXED.replace(
            "\r\n--BB\r\nContent-Type: application/octet-stream; name=\"evil.bin\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nZXZpbA==",
            "",
        );
        assert_eq!(String::from_utf8_lossy(&out), want);
        let again = parse(&out);
        let names: Vec<_> = again
            .parts
            .iter()
            .filter_map(|p| p.attachment_name())
            .collect();
        assert_eq!(names, ["note.txt"]);
    }

    #[test]
    fn placeholder_replaces_the_part_in_place() {
        let msg = parse(MIXED.as_bytes());
        let evil = index_of(&msg, "evil.bin");
        let edits = BTreeMap::from([(
            evil,
            (Edit::Placeholder, "Removed: infected (Test)".to_string()),
        )]);
        let out = String::from_utf8(apply(MIXED.as_bytes(), &msg, &edits)).unwrap();
        assert!(out.contains("--BB\r\nContent-Type: text/plain; charset=us-ascii\r\n"));
        assert!(
            out.contains("\r\n\r\nRemoved: infected (Test)\r\n\r\n--BB\r\n"),
            "{out}"
        );
        assert!(!out.contains("ZXZpbA=="));
        assert!(out.ends_with("keep me\r\n--BB--\r\n"));
    }

    #[test]
    fn removing_the_first_and_every_part() {
        let msg = parse(MIXED.as_bytes());
        let first = msg
            .parts
            .iter()
            .position(|p| p.text_contents() == Some("Hello there"))
            .unwrap();
        let edits = BTreeMap::from([(first, (Edit::Remove, "x".to_string()))]);
        let out = apply(MIXED.as_bytes(), &msg, &edits);
        let again = parse(&out);
        assert_eq!(again.parts.len(), msg.parts.len() - 1);
        assert!(!String::from_utf8_lossy(&out).contains("Hello there"));
        let leaves: Vec<usize> = (1..msg.parts.len()).collect();
        let all: BTreeMap<_, _> = leaves
            .iter()
            .map(|&i| (i, (Edit::Remove, "all gone".to_string())))
            .collect();
        let out = String::from_utf8(apply(MIXED.as_bytes(), &msg, &all)).unwrap();
        assert!(
            out.contains("all gone"),
            "one part stays, as a notice: {out}"
        );
        assert_eq!(parse(out.as_bytes()).parts.len(), 2);
    }

    #[test]
    fn a_single_part_message_gets_the_notice_as_body() {
        let raw = "From: a@example.com\r\nContent-Type: application/zip;\r\n\tname=\"x.zip\"\r\n\
Content-Transfer-Encoding: base64\r\nSubject: s\r\n\r\nUEsDBA==\r\n";
        let msg = parse(raw.as_bytes());
        let edits = BTreeMap::from([(0, (Edit::Remove, "notice \u{e9}".to_string()))]);
        let out = String::from_utf8(apply(raw.as_bytes(), &msg, &edits)).unwrap();
        assert_eq!(
            out,
            "From: a@example.com\r\nSubject: s\r\nMIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Disposition: inline\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\r\nnotice =C3=A9\r\n"
        );
        let edits = BTreeMap::from([(0, (Edit::Remove, "notice".to_string()))]);
        let out = String::from_utf8(apply(raw.as_bytes(), &msg, &edits)).unwrap();
        assert!(
            out.ends_with(
                "charset=us-ascii\r\nContent-Disposition: inline\r\n\
Content-Transfer-Encoding: 7bit\r\n\r\nnotice\r\n"
            ),
            "{out}"
        );
    }

    /// walkV 3: a placeholder named `привет.scr` as `??????.scr`. It keeps
    /// the name, in a part any hop can carry, and a name's line breaks
    /// start no line of the notice (walkV 1).
    #[test]
    fn a_placeholder_keeps_a_non_ascii_name_and_no_line_breaks() {
        let msg = parse(MIXED.as_bytes());
        let evil = index_of(&msg, "evil.bin");
        let name = "\u{43f}\u{440}\u{438}\u{432}\u{435}\u{442}\n\nIMPORTANT: log in at http://evil.example/ \
with your password and read this long line to the end. \u{e4}rger R\u{e9}sum\u{e9}.scr";
        let edits = BTreeMap::from([(
            evil,
            (Edit::Placeholder, format!("Mailward replaced \"{name}\".")),
        )]);
        let out = apply(MIXED.as_bytes(), &msg, &edits);
        assert!(out.is_ascii(), "{}", String::from_utf8_lossy(&out));
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("charset=utf-8\r\nContent-Disposition: inline\r\nContent-Transfer-Encoding: quoted-printable\r\n"),
            "{text}"
        );
        for line in text.split("\r\n") {
            assert!(line.len() <= 76, "{line}");
            assert!(!line.starts_with("IMPORTANT"), "{text}");
        }
        let again = parse(text.as_bytes());
        let notice = again
            .parts
            .iter()
            .filter_map(|p| p.text_contents())
            .find(|t| t.starts_with("Mailward replaced"))
            .unwrap_or_default()
            .to_string();
        assert_eq!(
            notice.trim_end(),
            format!("Mailward replaced \"{}\".", crate::text::one_line(name))
        );
    }
}
