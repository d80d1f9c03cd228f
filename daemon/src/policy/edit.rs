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

use crate::check::mime_repair::{self, Origin};
use crate::text::find_bytes as find;
use crate::text::rfind_bytes as rfind;
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
/// the message `msg` was parsed from.
///
/// When the parse repaired the message's structure (`check::parse`,
/// [`mime_repair`]: a header without its empty line, a `--boundary`
/// inside a line neutralised to `-_boundary`, a second `Content-Type`
/// dropped, a fold unfolded), `msg` holds the repaired copy and its
/// offsets point there. The parts to edit are found in that copy, as the
/// scan read them, and the edit is made on `raw` ([`mime_repair::Origin`]
/// maps the one to the other): the recipient gets the sender's bytes
/// everywhere but in the part removed or replaced. (A copy that
/// `check::parse` did not make cannot be mapped: the edit is then made on
/// it.)
pub fn apply(raw: &[u8], msg: &Message<'_>, edits: &BTreeMap<usize, (Edit, String)>) -> Vec<u8> {
    let copy = parsed_bytes(raw, msg);
    let on_copy = || edit(copy, copy, &Origin::same(copy.len()), msg, edits).0;
    match mime_repair::origin(raw, copy) {
        // Cuts mapped back that would overlap would have to be skipped,
        // and a skipped cut delivers the part the verdict says is gone:
        // then the edit is made on the copy, where the parser's ranges
        // cannot overlap (the sender's bytes are lost, the part is not
        // delivered).
        Some(origin) => match edit(raw, copy, &origin, msg, edits) {
            (out, true) => out,
            (_, false) => on_copy(),
        },
        None => on_copy(),
    }
}

/// [`apply`] on `raw`, with the parts found in `copy` (what `msg` was
/// parsed from; `origin` says where its bytes are in `raw`).
///
/// Where a part's edit starts and ends is taken from delimiter lines,
/// which a repair never changes, and the line ends around them are those
/// of `raw`. An empty line the repair inserted at an edge (a part header
/// that ran into the next delimiter) is not in `raw`, so it neither moves
/// an edge nor is left behind; bytes the repair took out at an edge go
/// with the part edited, never into a neighbour that is kept.
fn edit(
    raw: &[u8],
    copy: &[u8],
    origin: &Origin,
    msg: &Message<'_>,
    edits: &BTreeMap<usize, (Edit, String)>,
) -> (Vec<u8>, bool) {
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
        let body_at = msg.parts.first().map_or(raw.len(), |p| {
            origin.start((p.offset_body as usize).min(copy.len()))
        });
        return (single_part(raw, body_at.min(raw.len()), &notice), true);
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
    // Where a copy's byte is in `raw` (a delimiter's: always one of raw's).
    let at_raw = |at: usize| origin.byte(at).unwrap_or_else(|| origin.start(at));
    // Byte ranges of `raw` to replace, applied from the end.
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
        let h = (part.offset_header as usize).min(copy.len());
        // Where this part's body ends: before the line end of the next
        // delimiter line (or at mail-parser's end offset when the message
        // is cut short); and where that delimiter starts.
        let (body_end, next_line) = match find(&copy[h..], &line_dash) {
            Some(n) => {
                let next = at_raw(h + n + 1).min(raw.len());
                (before_line_end(raw, next), Some(next))
            }
            None => (
                origin
                    .end((part.offset_end as usize).clamp(h, copy.len()))
                    .min(raw.len()),
                None,
            ),
        };
        match edit {
            Edit::Placeholder => {
                cuts.push((origin.start(h), body_end, notice_part(notice)));
            }
            Edit::Remove => {
                let Some(d) = rfind(&copy[..h], &dash) else {
                    continue;
                };
                let d = at_raw(d).min(raw.len());
                if d >= 1 && raw[d - 1] == b'\n' {
                    // "CRLF--boundary CRLF part" goes; the previous part now
                    // runs into the next delimiter's CRLF.
                    cuts.push((before_line_end(raw, d), body_end, Vec::new()));
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
    let mut all_made = true;
    for (start, end, with) in cuts {
        // Overlapping ranges cannot come from distinct leaves; skip rather
        // than corrupt if one ever does, and say so ([`apply`]).
        if end > floor || start > end || end > out.len() {
            all_made = false;
            continue;
        }
        out.splice(start..end, with);
        floor = start;
    }
    (out, all_made)
}

/// `at` (a line start), moved back over the line end before it (CR LF or
/// LF), if there is one.
fn before_line_end(raw: &[u8], at: usize) -> usize {
    let head = &raw[..at.min(raw.len())];
    let head = head
        .strip_suffix(b"\r\n")
        .or_else(|| head.strip_suffix(b"\n"))
        .unwrap_or(head);
    head.len()
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

/// The message's header (`raw` up to `body_at`) without its content
/// fields, and the notice as its body.
fn single_part(raw: &[u8], body_at: usize, notice: &str) -> Vec<u8> {
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

    /// A message the scan reads repaired (`mime_repair`): a fold next to
    /// `=`, a `--BB` inside two text lines, a second Content-Type, and
    /// part headers without their empty line (one runs into the next
    /// delimiter).
    const REPAIRED: &str = "From: a@example.com\r\nSubject: t\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed;\r\n boundary=\r\n \"BB\"\r\n\r\n\
--BB\r\nContent-Type: text/plain\r\nContent-Type: text/html\r\n\r\n\
see the --BB line, and --BB-- too\r\n\
--BB\r\nContent-Type: application/octet-stream; name=\"evil.exe\"\r\n\
Content-Transfer-Encoding: base64\r\nZXZpbA==\r\n\
--BB\r\nContent-Type: application/octet-stream; name=\"empty.exe\"\r\n\
--BB\r\nContent-Type: text/plain; name=\"note.txt\"\r\nkeep -- me --BB\r\n--BB--\r\n";

    /// The indexes in `msg` of the parts named `names`.
    fn named(msg: &Message<'_>, names: &[&str]) -> Vec<usize> {
        names.iter().map(|n| index_of(msg, n)).collect()
    }

    /// What the recipient gets is the sender's bytes but for the part
    /// edited: no `-_BB` of the scanner's copy, no field lost, no empty
    /// line of its own (the edit used to be made on the repaired copy).
    #[test]
    fn an_edit_of_a_repaired_message_keeps_the_senders_bytes() {
        let raw = REPAIRED.as_bytes();
        let msg = crate::check::parse(raw).unwrap();
        assert!(
            !std::ptr::eq(msg.raw_message().as_ptr(), raw.as_ptr()),
            "the scan reads a repaired copy"
        );
        let removed = named(&msg, &["evil.exe", "empty.exe"]);
        let edits = removed
            .iter()
            .map(|&i| (i, (Edit::Remove, "gone".to_string())))
            .collect();
        let out = String::from_utf8(apply(raw, &msg, &edits)).unwrap();
        let want = REPAIRED
            .replace(
                "\r\n--BB\r\nContent-Type: application/octet-stream; name=\"evil.exe\"\r\n\
Content-Transfer-Encoding: base64\r\nZXZpbA==",
                "",
            )
            .replace(
                "\r\n--BB\r\nContent-Type: application/octet-stream; name=\"empty.exe\"",
                "",
            );
        assert_eq!(out, want);
        let again = crate::check::parse(out.as_bytes()).unwrap();
        let names: Vec<_> = again
            .parts
            .iter()
            .filter_map(|p| p.attachment_name())
            .collect();
        assert_eq!(names, ["note.txt"]);

        // A placeholder for the last part, whose header has no empty line
        // and whose text a `--BB` was neutralised in.
        let note = index_of(&msg, "note.txt");
        let edits = BTreeMap::from([(note, (Edit::Placeholder, "replaced".to_string()))]);
        let out = apply(raw, &msg, &edits);
        let notice = String::from_utf8(notice_part("replaced")).unwrap();
        let want = REPAIRED.replace(
            "Content-Type: text/plain; name=\"note.txt\"\r\nkeep -- me --BB",
            &notice,
        );
        assert_eq!(String::from_utf8_lossy(&out), want);
    }

    /// A single part whose header the scan ended at a line that is no
    /// field, with two Content-Types: the notice takes the body's place,
    /// and the other fields stay as sent.
    #[test]
    fn a_repaired_single_part_keeps_its_other_fields() {
        let raw = "From: a@example.com\r\nContent-Type: application/zip\r\n\
Content-Type: text/plain\r\nX-Note: a=\r\n b\r\nUEsDBA== is no field\r\n";
        let msg = crate::check::parse(raw.as_bytes()).unwrap();
        let edits = BTreeMap::from([(0, (Edit::Remove, "gone".to_string()))]);
        let out = String::from_utf8(apply(raw.as_bytes(), &msg, &edits)).unwrap();
        let notice = String::from_utf8(notice_part("gone")).unwrap();
        assert_eq!(
            out,
            format!("From: a@example.com\r\nX-Note: a=\r\n b\r\nMIME-Version: 1.0\r\n{notice}")
        );
    }
}
