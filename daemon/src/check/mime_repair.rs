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
//! the unpacker's. [`Origin`] says where each byte of the copy comes from,
//! so that a part edit planned on the copy is made on the message itself
//! (the sender's bytes stay wherever nothing is edited). A message whose repairs cannot all be made (a nested
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
    /// Some repair that was needed could not be made, or the structure is
    /// past what is read (Some(why), for the finding to say).
    pub unresolved: Option<&'static str>,
    /// A header block was ended at a line that is no header field, and
    /// MIME fields (`Content-*`, `MIME-Version`) follow that line before
    /// the empty line: a reader that skips the bad line (mail-parser
    /// does, and so may a recipient's) reads another structure than this
    /// one. The checks then scan that reading too ([`crate::check::run`]).
    /// So does a second `Content-Type` or `Content-Transfer-Encoding`
    /// field in one header block (this reading takes the first, as
    /// clients do, and mail-parser's own the last), and a `--boundary`
    /// that is no delimiter line (mail-parser takes it for one).
    /// Some(why), for the findings of that reading to say.
    pub other_reading: Option<&'static str>,
    /// Readers differ in the parts they show: a multipart names two
    /// different boundaries ([`two_boundaries`]), or has no usable one.
    /// The scan gives `av/error`; Some(why), for the finding to say.
    pub ambiguous: Option<&'static str>,
    /// Where the copy (`message`'s `raw_message`) has a `_` for a `-` of
    /// the message ([`Fix::Neutralise`]), sorted: what a part holds is
    /// scanned with those dashes put back ([`crate::check::unpack`]), so
    /// that a boundary chosen to overlap a signature cannot change the
    /// bytes the rules see.
    pub neutralised: Vec<usize>,
}

/// One change to the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fix {
    /// Insert an empty line here (the end of a header block).
    EmptyLine,
    /// Remove this many bytes here (the line end of a fold next to `=`).
    Unfold(usize),
    /// Replace the byte here (the second `-` of a `--boundary` that is no
    /// delimiter line, [`stray_delimiters`]) by `_`, so that mail-parser
    /// does not take it for one. The length does not change.
    Neutralise,
    /// Remove this many bytes here: a second `Content-Type` or
    /// `Content-Transfer-Encoding` field of a header block, with its
    /// continuation lines. Clients (Python's `email`, Thunderbird) read
    /// the first; mail-parser reads the last (walkAJ 1).
    DropField(usize),
    /// Insert a close-delimiter line here, before a delimiter line of an
    /// enclosing multipart: `--`, the boundary that lies at `boundary`
    /// (`len` bytes) in the bytes, `--` and a line end. RFC 2046 5.1.2
    /// ends a body part at the next delimiter of any enclosing
    /// multipart, and so do Python's `email` and mail clients; mail-parser
    /// 0.11 reads the rest of the message into the multipart left
    /// unclosed, so that the outer parts after it went unscanned
    /// (walkAN 3).
    Close { boundary: usize, len: usize },
}

/// Parses `raw` with `parser`, repairing the structure as needed.
pub fn read<'r>(parser: &MessageParser, raw: &'r [u8]) -> Read<'r> {
    read_with_origin(parser, raw).0
}

/// [`read`], and where the bytes of its copy come from in `raw`.
pub fn read_with_origin<'r>(parser: &MessageParser, raw: &'r [u8]) -> (Read<'r>, Origin) {
    let first = parser.parse(raw);
    let (fixes, unfixable, ambiguous) = needed(first.as_ref(), raw);
    if fixes.is_empty() {
        let read = Read {
            message: first,
            unresolved: unfixable,
            other_reading: None,
            ambiguous,
            neutralised: Vec::new(),
        };
        return (read, Origin::same(raw.len()));
    }
    let mut other_reading = disagrees(raw, &fixes);
    drop(first);
    let mut neutralised = Vec::new();
    let (mut bytes, round) = apply(raw, &fixes, &mut neutralised);
    let mut origin = round;
    for _ in 1..ROUNDS {
        let msg = parser.parse(&bytes);
        let (fixes, unfixable, ambiguous) = needed(msg.as_ref(), &bytes);
        if fixes.is_empty() {
            let read = Read {
                message: msg.map(Message::into_owned),
                unresolved: unfixable,
                other_reading,
                ambiguous,
                neutralised,
            };
            return (read, origin);
        }
        other_reading = other_reading.or(disagrees(&bytes, &fixes));
        drop(msg);
        let (next, round) = apply(&bytes, &fixes, &mut neutralised);
        bytes = next;
        origin = origin.then(&round);
    }
    let read = Read {
        message: parser.parse(&bytes).map(Message::into_owned),
        unresolved: Some(NOT_READABLE),
        other_reading,
        ambiguous: None,
        neutralised,
    };
    (read, origin)
}

/// Where the bytes of `copy` come from in `raw`, when `copy` is the copy
/// [`crate::check::parse`] reads of `raw` (`raw` itself when no repair was
/// needed). It makes that copy again, with the pipeline's parser, and
/// None says that `copy` is not it.
pub fn origin(raw: &[u8], copy: &[u8]) -> Option<Origin> {
    if copy == raw {
        return Some(Origin::same(raw.len()));
    }
    let (read, origin) = read_with_origin(&super::PARSER, raw);
    let made = read.message.as_ref().map(Message::raw_message);
    (made == Some(copy)).then_some(origin)
}

/// Where the bytes of a repaired copy come from in the message it was
/// made of, so that what is planned on the copy can be done to the
/// message itself: a part edit ([`crate::policy::edit`]) keeps the
/// sender's bytes wherever it edits nothing.
///
/// The copy is a row of runs. A kept run is bytes of the message, one for
/// one (a neutralised dash, `_` in the copy, stands where its `-` stood);
/// an added run is an empty line the repair put in, and stands between
/// two bytes of the message. What the repair took out (a fold's line end,
/// a second `Content-Type` field) lies between two runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// In the order of the copy, without gaps from 0 to `copy_len`.
    runs: Vec<Run>,
    copy_len: usize,
    raw_len: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    /// Where it starts in the copy.
    copy: usize,
    /// Where it starts in the message; an added run: where it stands.
    raw: usize,
    len: usize,
    added: bool,
}

impl Origin {
    /// A copy that is the message (`len` bytes), unchanged.
    pub fn same(len: usize) -> Origin {
        let mut o = Origin {
            runs: Vec::new(),
            copy_len: 0,
            raw_len: len,
        };
        o.push(Run {
            copy: 0,
            raw: 0,
            len,
            added: false,
        });
        o
    }

    /// Appends a run at the copy's end, joined to the last one when it
    /// continues it.
    fn push(&mut self, run: Run) {
        if run.len == 0 {
            return;
        }
        self.copy_len = run.copy + run.len;
        if let Some(last) = self.runs.last_mut() {
            let raw_next = if run.added {
                last.raw
            } else {
                last.raw + last.len
            };
            if last.added == run.added && raw_next == run.raw {
                last.len += run.len;
                return;
            }
        }
        self.runs.push(run);
    }

    /// The run that holds the copy's byte at `at`.
    fn run_at(&self, at: usize) -> Option<&Run> {
        let i = self.runs.partition_point(|r| r.copy + r.len <= at);
        self.runs.get(i).filter(|r| r.copy <= at)
    }

    /// Where the copy's byte at `at` is in the message; None for a byte
    /// the repair added (or past the copy's end).
    pub fn byte(&self, at: usize) -> Option<usize> {
        self.run_at(at)
            .filter(|r| !r.added)
            .map(|r| r.raw + (at - r.copy))
    }

    /// Where in the message a stretch of the copy that starts at `at`
    /// starts. Bytes the repair took out right before `at` go with the
    /// stretch (the earlier of the two message positions).
    pub fn start(&self, at: usize) -> usize {
        let at = at.min(self.copy_len);
        if at == 0 {
            return 0;
        }
        match self.run_at(at - 1) {
            Some(r) if r.added => r.raw,
            Some(r) => r.raw + (at - r.copy),
            None => 0,
        }
    }

    /// Where in the message a stretch of the copy that ends at `at`
    /// ends. Bytes the repair took out right at `at` go with the stretch
    /// (the later of the two message positions).
    pub fn end(&self, at: usize) -> usize {
        match self.run_at(at) {
            Some(r) if r.added => r.raw,
            Some(r) => r.raw + (at - r.copy),
            None => self.raw_len,
        }
    }

    /// This origin followed by the repairs of one more round (`round`:
    /// where that round's copy comes from in this one's copy).
    fn then(&self, round: &Origin) -> Origin {
        let mut out = Origin {
            runs: Vec::with_capacity(self.runs.len() + round.runs.len()),
            copy_len: 0,
            raw_len: self.raw_len,
        };
        for r in &round.runs {
            if r.added {
                out.push(Run {
                    raw: self.end(r.raw),
                    ..*r
                });
                continue;
            }
            let (from, to) = (r.raw, r.raw + r.len);
            let first = self.runs.partition_point(|s| s.copy + s.len <= from);
            for s in self.runs[first..].iter().take_while(|s| s.copy < to) {
                let lo = s.copy.max(from);
                let hi = (s.copy + s.len).min(to);
                out.push(Run {
                    copy: r.copy + (lo - from),
                    raw: if s.added {
                        s.raw
                    } else {
                        s.raw + (lo - s.copy)
                    },
                    len: hi - lo,
                    added: s.added,
                });
            }
        }
        out
    }
}

/// Lines looked at after a header block's bad line for MIME fields.
const OTHER_READING_LINES: usize = 200;

/// Whether an empty line to be inserted (a header block ended at a line
/// that is no field) leaves MIME fields below it in the same block: then
/// a reader that skips the bad line sees a structure the repaired reading
/// does not (walkAH 2: `this is not a header line` above the
/// `Content-Type` of a multipart hid its attachment from the scan).
///
/// Also a second `Content-Type` or `Content-Transfer-Encoding` (which
/// mail-parser alone reads), and a `--boundary` that is no delimiter line
/// (a lenient reader may take `--XXfoo` for one, as mail-parser does).
/// Some(why) when the readings differ.
fn disagrees(bytes: &[u8], fixes: &BTreeMap<usize, Fix>) -> Option<&'static str> {
    if fixes.values().any(|f| matches!(f, Fix::DropField(_))) {
        return Some("read with the last of two Content-Type or Content-Transfer-Encoding fields");
    }
    if fixes.values().any(|f| *f == Fix::Neutralise) {
        return Some("read with a --boundary inside a line taken for a delimiter");
    }
    let bad_line = fixes.iter().any(|(&at, fix)| {
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
    });
    bad_line.then_some("read past a header line that is no field")
}

/// The repairs a parse of `bytes` shows to be needed, whether some
/// needed repair cannot be made in `bytes` (it lies in a nested message
/// that was transfer-encoded), and whether a multipart names two
/// boundaries.
fn needed(
    msg: Option<&Message<'_>>,
    bytes: &[u8],
) -> (
    BTreeMap<usize, Fix>,
    Option<&'static str>,
    Option<&'static str>,
) {
    let mut fixes = BTreeMap::new();
    let mut unfixable = None;
    let mut ambiguous = None;
    match msg {
        Some(m) => {
            let mut seen = Structure::default();
            let mut broken = false;
            walk(m, bytes, &mut fixes, &mut broken, 0, &mut seen);
            unfixable = broken.then_some(NOT_READABLE);
            ambiguous = seen.ambiguous;
            if seen.too_deep {
                // av/error whatever else is found: no more rounds, and
                // no look for stray delimiters among thousands of
                // boundaries (walkAX 9: the cost grew with the square of
                // the depth, 75 s of CPU for 40,000 levels).
                return (BTreeMap::new(), Some(TOO_DEEP), ambiguous);
            }
            match stray_delimiters(bytes, &seen) {
                Ok(stray) if !stray.is_empty() => {
                    // The parts this parse shows after a stray delimiter
                    // are not the message's: their "headers" need no
                    // repair. The next round reads the structure again.
                    fixes = stray.into_iter().map(|at| (at, Fix::Neutralise)).collect();
                }
                Ok(_) => {}
                Err(why) => unfixable = Some(why),
            }
        }
        // No header field at all (a message that is only a body line):
        // the header ends at once.
        None => header_block(bytes, 0, &mut fixes),
    }
    (fixes, unfixable, ambiguous)
}

/// What a parse shows of the multiparts in one buffer: their boundaries
/// (with where the first of their bodies starts), and where the header
/// blocks of the parts lie.
#[derive(Default)]
struct Structure {
    boundaries: BTreeMap<Vec<u8>, usize>,
    headers: Vec<(usize, usize)>,
    /// Readers differ in the parts they show (why).
    ambiguous: Option<&'static str>,
    /// A multipart lies deeper than [`MAX_MULTIPART_NESTING`].
    too_deep: bool,
}

/// Why a structure is not read as it is (the finding's text, `av/error`).
const NOT_READABLE: &str = "message structure not readable (a header without its empty line, \
or a boundary inside a line, in a forwarded message sent encoded)";
const TOO_MANY: &str = "not unpacked: more than 10,000 multipart boundaries";
const NOT_UTF8: &str = "message structure not readable: a multipart boundary that is not UTF-8";
const TOO_DEEP: &str = "not unpacked: multiparts nested deeper than 100 levels";
/// Why readers differ.
const TWO_BOUNDARIES: &str = "message structure ambiguous: a multipart names two boundaries";
const NO_BOUNDARY: &str =
    "message structure ambiguous: a multipart without a usable boundary (its parts are not read)";

/// Multiparts nested deeper than this are `av/error` and not looked into
/// for repairs (Postfix's `mime_nesting_limit` is 100 too): each level's
/// check reads the levels under it, and mail does not nest so deep.
const MAX_MULTIPART_NESTING: u32 = 100;

/// Whether `part` says it is a multipart but has no boundary to split it
/// by: none, an empty one, or one whose delimiter never comes (mail-parser
/// then reads it as one text part, or as a multipart of no part). Lenient
/// readers guess a boundary from the first `--` line and show the parts
/// that the checks never saw (walkAX 4: an EICAR and a `tool.exe` inside
/// were av/clean).
fn no_usable_boundary(part: &mail_parser::MessagePart<'_>) -> bool {
    let Some(ct) = part.content_type() else {
        return false;
    };
    if !ct.c_type.eq_ignore_ascii_case("multipart") {
        return false;
    }
    // A multipart sent encoded (base64, quoted-printable: walkAL 1) shows
    // its delimiters once decoded; that reading is the unpacker's.
    let encoded = part.content_transfer_encoding().is_some_and(|e| {
        !["7bit", "8bit", "binary"]
            .iter()
            .any(|plain| e.trim().eq_ignore_ascii_case(plain))
    });
    if encoded {
        return false;
    }
    match &part.body {
        PartType::Multipart(children) => {
            children.is_empty() || ct.attribute("boundary").is_none_or(str::is_empty)
        }
        _ => true,
    }
}

/// Whether a multipart's `Content-Type` names two different boundaries
/// (`boundary="AA"; boundary="XX"`, or `boundary*=''AA; boundary="XX"`).
/// Readers differ in which one they take (mail-parser and Python's
/// `email` the first plain one, Python the plain one over an RFC 2231
/// one), so the parts one reader sees another may not (walkAJ 7).
fn two_boundaries(part: &mail_parser::MessagePart<'_>) -> bool {
    let mut values = part
        .headers
        .iter()
        .filter(|h| h.name == mail_parser::HeaderName::ContentType)
        .filter_map(|h| match &h.value {
            mail_parser::HeaderValue::ContentType(ct) => Some(ct),
            _ => None,
        })
        .flat_map(|ct| ct.attributes().unwrap_or_default())
        .filter(|a| {
            let n = a
                .name
                .trim_end_matches(|c: char| c == '*' || c.is_ascii_digit());
            n.eq_ignore_ascii_case("boundary")
        })
        .map(|a| a.value.as_ref());
    let first = values.next();
    values.any(|v| Some(v) != first)
}

/// Distinct boundaries looked for at most; a message with more is
/// `unresolved` (av/error, [`TOO_MANY`]).
const MAX_BOUNDARIES: usize = 10_000;

/// Where `--boundary` occurs in the bodies of `bytes` without being a
/// delimiter line as RFC 2046 5.1.1 (and Python's `email`, Thunderbird)
/// reads one: at the start of a line, followed by nothing but an optional
/// `--` and white space. mail-parser 0.11 (`seek_part_end`) takes
/// `--boundary` anywhere for a delimiter: `hello --XX--` in a text part
/// closed the multipart for the scanner, and the attachment after it,
/// which every client shows, was never scanned (walkAJ 1b). Each position
/// returned is that of the second `-`. A line that is a delimiter of
/// another boundary of the message (`--XXY` beside `XX`) is left alone.
/// Err(why): too many boundaries to look for, or one that cannot be.
fn stray_delimiters(bytes: &[u8], seen: &Structure) -> Result<Vec<usize>, &'static str> {
    if seen.boundaries.is_empty() {
        return Ok(Vec::new());
    }
    if seen.boundaries.len() > MAX_BOUNDARIES {
        return Err(TOO_MANY);
    }
    let from = seen.boundaries.values().copied().min().unwrap_or(0);
    // The longest first: at one position the longest boundary is found.
    let mut sorted: Vec<&Vec<u8>> = seen.boundaries.keys().collect();
    sorted.sort_by_key(|b| std::cmp::Reverse(b.len()));
    let pattern = sorted
        .iter()
        .map(|b| format!("--{}", regex::escape(&String::from_utf8_lossy(b))))
        .collect::<Vec<_>>()
        .join("|");
    // A boundary that is not UTF-8 cannot be written as a pattern here.
    if sorted.iter().any(|b| std::str::from_utf8(b).is_err()) {
        return Err(NOT_UTF8);
    }
    let re = regex::bytes::RegexBuilder::new(&pattern)
        .unicode(false)
        .size_limit(64 << 20)
        .build()
        .map_err(|_| TOO_MANY)?;
    let mut headers = seen.headers.clone();
    headers.sort_unstable();
    let in_header = |at: usize| {
        let i = headers.partition_point(|&(h, _)| h <= at);
        i > 0 && at < headers[i - 1].1
    };
    let mut out = Vec::new();
    let mut at = from.min(bytes.len());
    while let Some(m) = re.find_at(bytes, at) {
        let p = m.start();
        at = p + 1;
        if in_header(p) {
            continue;
        }
        let line_start = p == 0 || matches!(bytes[p - 1], b'\n' | b'\r');
        let delimiter = line_start && sorted.iter().any(|b| is_delimiter_rest(&bytes[p + 2..], b));
        if !delimiter {
            out.push(p + 1);
        }
    }
    Ok(out)
}

/// Whether `rest` (what follows the `--` at a line start) is `boundary`,
/// maybe `--`, then only white space to the line end.
fn is_delimiter_rest(rest: &[u8], boundary: &[u8]) -> bool {
    let Some(rest) = rest.strip_prefix(boundary) else {
        return false;
    };
    let rest = rest.strip_prefix(b"--").unwrap_or(rest);
    for &b in rest {
        match b {
            b' ' | b'\t' => {}
            b'\r' | b'\n' => return true,
            _ => return false,
        }
    }
    true
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
    seen: &mut Structure,
) {
    if depth > MAX_NESTING {
        return;
    }
    // Each part's multipart nesting: mail-parser lists the parts flat, a
    // multipart before its children.
    let mut nesting = vec![0u32; msg.parts.len()];
    for (i, part) in msg.parts.iter().enumerate() {
        header_block(bytes, part.offset_header as usize, fixes);
        // (A part whose header starts inside a line follows a stray
        // delimiter: its "header" is text, and is looked at.)
        let h = part.offset_header as usize;
        if h == 0 || matches!(bytes.get(h.wrapping_sub(1)), Some(b'\n')) {
            seen.headers.push((h, part.offset_body as usize));
        }
        // (Whatever mail-parser made of the part: without a delimiter of
        // the boundary it read, a multipart is one text part to it.)
        if two_boundaries(part) {
            seen.ambiguous = seen.ambiguous.or(Some(TWO_BOUNDARIES));
        }
        if no_usable_boundary(part) {
            seen.ambiguous = seen.ambiguous.or(Some(NO_BOUNDARY));
        }
        match &part.body {
            PartType::Multipart(children) => {
                let level = nesting.get(i).copied().unwrap_or(0);
                for &c in children {
                    if let Some(n) = nesting.get_mut(c as usize) {
                        *n = level.saturating_add(1);
                    }
                }
                if level >= MAX_MULTIPART_NESTING {
                    seen.too_deep = true;
                    continue;
                }
                let Some(boundary) = part.content_type().and_then(|c| c.attribute("boundary"))
                else {
                    continue;
                };
                let start = seen
                    .boundaries
                    .entry(boundary.as_bytes().to_vec())
                    .or_insert(usize::MAX);
                *start = (*start).min(part.offset_body as usize);
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
                for child in children.iter().filter_map(|&c| msg.parts.get(c as usize)) {
                    if let Some((at, fix)) = unclosed(bytes, child, boundary.as_bytes()) {
                        fixes.insert(at, fix);
                    }
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
                    walk(inner, bytes, fixes, unfixable, depth + 1, seen);
                } else {
                    // Transfer-encoded: its bytes are a decoded copy; what
                    // it needs cannot be repaired here.
                    let mut inner_fixes = BTreeMap::new();
                    let mut inner_seen = Structure::default();
                    walk(
                        inner,
                        base,
                        &mut inner_fixes,
                        unfixable,
                        depth + 1,
                        &mut inner_seen,
                    );
                    seen.ambiguous = seen.ambiguous.or(inner_seen.ambiguous);
                    seen.too_deep |= inner_seen.too_deep;
                    *unfixable |= !inner_fixes.is_empty()
                        || stray_delimiters(base, &inner_seen).map_or(true, |s| !s.is_empty());
                }
            }
            _ => {}
        }
    }
}

/// Where a multipart `part` (a part of the multipart of boundary
/// `outer`) is left unclosed: a delimiter line of `outer` in its body
/// before its own close-delimiter line. Its close-delimiter line goes
/// there ([`Fix::Close`]).
fn unclosed(
    bytes: &[u8],
    part: &mail_parser::MessagePart<'_>,
    outer: &[u8],
) -> Option<(usize, Fix)> {
    if !matches!(part.body, PartType::Multipart(_)) {
        return None;
    }
    let inner = part.content_type()?.attribute("boundary")?.as_bytes();
    if inner == outer || inner.is_empty() {
        return None;
    }
    let from = part.offset_body as usize;
    let to = (part.offset_end as usize).min(bytes.len());
    let mut at = from;
    // Where the inner boundary lies in the bytes (its first delimiter).
    let mut found: Option<usize> = None;
    while at < to {
        let (end, next) = line_at(bytes, at);
        let line = &bytes[at..end];
        if let Some(rest) = line.strip_prefix(b"--") {
            if is_delimiter_rest(rest, inner) {
                if rest[inner.len()..].starts_with(b"--") {
                    return None;
                }
                found = found.or(Some(at + 2));
            } else if is_delimiter_rest(rest, outer) {
                return found.map(|boundary| {
                    (
                        at,
                        Fix::Close {
                            boundary,
                            len: inner.len(),
                        },
                    )
                });
            }
        }
        at = next;
    }
    None
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
    // Content-Type and Content-Transfer-Encoding seen in this block.
    let mut seen = [false; 2];
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
                let once = [b"content-type".as_slice(), b"content-transfer-encoding"]
                    .iter()
                    .position(|f| name.eq_ignore_ascii_case(f));
                if let Some(i) = once {
                    if seen[i] {
                        // The second one goes, with its continuation lines.
                        let mut end = next;
                        while end < bytes.len() && matches!(bytes[end], b' ' | b'\t') {
                            let (e, n) = line_at(bytes, end);
                            if e == end {
                                break;
                            }
                            end = n;
                        }
                        fixes.insert(at, Fix::DropField(end - at));
                        content_field = false;
                        at = end;
                        continue;
                    }
                    seen[i] = true;
                }
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

/// A copy of `bytes` with `fixes` made, and where its bytes come from in
/// `bytes`. An empty line takes the line end of the line it goes before
/// (CR LF unless that line ends in a bare LF).
///
/// `marks` (sorted positions in `bytes` of dashes neutralised before)
/// become their positions in the copy, with those neutralised now added.
fn apply(bytes: &[u8], fixes: &BTreeMap<usize, Fix>, marks: &mut Vec<usize>) -> (Vec<u8>, Origin) {
    let mut out = Vec::with_capacity(bytes.len() + 2 * fixes.len());
    let mut origin = Origin {
        runs: Vec::new(),
        copy_len: 0,
        raw_len: bytes.len(),
    };
    let mut copied = 0;
    let old = std::mem::take(marks);
    let mut next_mark = old.iter().copied().peekable();
    // Moves the marks in bytes[copied..to] (copied to out) to the copy.
    let mut carry = |out: &Vec<u8>, copied: usize, to: usize, marks: &mut Vec<usize>| {
        while let Some(q) = next_mark.next_if(|&q| q < to) {
            if q >= copied {
                marks.push(out.len() + (q - copied));
            }
        }
    };
    let kept = |out: &Vec<u8>, from: usize, to: usize| Run {
        copy: out.len(),
        raw: from,
        len: to - from,
        added: false,
    };
    for (&at, fix) in fixes {
        if at < copied {
            continue;
        }
        carry(&out, copied, at, marks);
        origin.push(kept(&out, copied, at));
        out.extend_from_slice(&bytes[copied..at]);
        copied = at;
        match *fix {
            Fix::EmptyLine => {
                let (end, next) = line_at(bytes, at);
                let bare_lf = next > end && next - end == 1;
                let line_end: &[u8] = if bare_lf { b"\n" } else { b"\r\n" };
                origin.push(Run {
                    copy: out.len(),
                    raw: at,
                    len: line_end.len(),
                    added: true,
                });
                out.extend_from_slice(line_end);
            }
            Fix::Unfold(n) | Fix::DropField(n) => copied = (at + n).min(bytes.len()),
            Fix::Close { boundary, len } => {
                let (end, next) = line_at(bytes, at);
                let bare_lf = next > end && next - end == 1;
                let line_end: &[u8] = if bare_lf { b"\n" } else { b"\r\n" };
                let name = bytes.get(boundary..boundary + len).unwrap_or_default();
                let line = [b"--".as_slice(), name, b"--", line_end].concat();
                origin.push(Run {
                    copy: out.len(),
                    raw: at,
                    len: line.len(),
                    added: true,
                });
                out.extend_from_slice(&line);
            }
            Fix::Neutralise => {
                marks.push(out.len());
                origin.push(kept(&out, at, at + 1));
                out.push(b'_');
                copied = (at + 1).min(bytes.len());
            }
        }
    }
    carry(&out, copied, bytes.len(), marks);
    origin.push(kept(&out, copied, bytes.len()));
    out.extend_from_slice(&bytes[copied..]);
    marks.sort_unstable();
    (out, origin)
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
        assert!(r.unresolved.is_none());
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

    /// A message `depth` multiparts deep, a text part at the bottom.
    fn deep(depth: usize) -> Vec<u8> {
        let mut m =
            String::from("Subject: deep\r\nContent-Type: multipart/mixed; boundary=\"b0\"\r\n\r\n");
        for i in 1..depth {
            m += &format!(
                "--b{}\r\nContent-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n",
                i - 1
            );
        }
        m += &format!(
            "--b{}\r\nContent-Type: text/plain\r\n\r\nhello\r\n",
            depth - 1
        );
        for i in (0..depth).rev() {
            m += &format!("--b{i}--\r\n");
        }
        m.into_bytes()
    }

    /// walkAX 9: the check of each level read every level under it, so
    /// the cost grew with the square of the depth (40,000 levels, 75 s of
    /// CPU); past 100 levels the message is av/error and not looked into
    /// (what that costs now is a benchmark's question, not a test's).
    #[test]
    fn multiparts_nested_past_the_limit_are_unresolved() {
        let raw = deep(100);
        let r = read(&parser(), &raw);
        assert_eq!((r.unresolved, r.ambiguous), (None, None));
        let raw = deep(102);
        let r = read(&parser(), &raw);
        assert_eq!(r.unresolved, Some(TOO_DEEP));
        let raw = deep(20_000);
        let r = read(&parser(), &raw);
        assert_eq!(r.unresolved, Some(TOO_DEEP));
    }

    /// walkAX 4: a multipart with no boundary, an empty one or one that
    /// never comes was read as one text part and its parts were never
    /// checked (lenient clients guess the boundary and show them).
    #[test]
    fn a_multipart_without_a_usable_boundary_is_ambiguous() {
        let body = "\r\n--XYZ\r\nContent-Type: text/plain\r\n\r\nhi\r\n--XYZ\r\n\
Content-Type: application/octet-stream; name=\"tool.exe\"\r\n\r\nMZ\r\n--XYZ--\r\n";
        for ct in [
            "multipart/mixed",
            "multipart/mixed; boundary=\"\"",
            "multipart/mixed; boundary=\"NOPE\"",
        ] {
            let raw = format!("Subject: x\r\nContent-Type: {ct}\r\n{body}");
            let r = read(&parser(), raw.as_bytes());
            assert_eq!(r.ambiguous, Some(NO_BOUNDARY), "{ct}");
        }
        let raw = format!("Subject: x\r\nContent-Type: multipart/mixed; boundary=XYZ\r\n{body}");
        assert_eq!(read(&parser(), raw.as_bytes()).ambiguous, None);
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
        assert!(r.unresolved.is_none());
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
        assert!(read(&parser(), raw.as_bytes()).other_reading.is_some());
        // A body that starts without its empty line is no other reading.
        let raw = b"Subject: x\r\nhello\r\nregards: me\r\n";
        assert!(read(&parser(), raw).other_reading.is_none());
        let raw = format!("Subject: x\r\n{multipart}");
        assert!(read(&parser(), raw.as_bytes()).other_reading.is_none());
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

    /// Every byte of a repaired copy maps back to the message: a kept one
    /// to the same byte (a neutralised `_` to its `-`), and what the
    /// repairs took out is what lies between the kept ones. Three rounds:
    /// the unfold shows the multipart, then the stray `--Q` is
    /// neutralised, then the second Content-Type goes and an empty line
    /// comes.
    #[test]
    fn the_origin_maps_each_byte_of_the_copy_back_to_the_message() {
        let raw = b"Subject: x\r\nContent-Type: multipart/mixed;\r\n boundary=\r\n \"Q\"\r\n\r\n\
--Q\r\nContent-Type: text/plain\r\nContent-Type: text/html\r\n\r\nsee --Q here\r\n\
--Q\r\nContent-Type: application/zip; name=\"a.zip\"\r\nUEsDBA==\r\n--Q--\r\n";
        let (r, map) = read_with_origin(&parser(), raw);
        let m = r.message.unwrap();
        let names: Vec<Option<&str>> = m.parts.iter().map(|p| p.attachment_name()).collect();
        assert_eq!(names, [None, None, Some("a.zip")]);
        let copy = m.raw_message();
        assert!(find(copy, b"see -_Q here"));
        let (mut taken_out, mut added, mut next) = (Vec::new(), Vec::new(), 0);
        for (i, &b) in copy.iter().enumerate() {
            match map.byte(i) {
                Some(at) => {
                    assert!(at >= next, "byte {i} maps back in order");
                    taken_out.extend_from_slice(&raw[next..at]);
                    let sent = if r.neutralised.contains(&i) { b'-' } else { b };
                    assert_eq!(raw[at], sent, "byte {i}");
                    next = at + 1;
                }
                None => added.push(b),
            }
        }
        taken_out.extend_from_slice(&raw[next..]);
        assert_eq!(
            String::from_utf8_lossy(&taken_out),
            "\r\nContent-Type: text/html\r\n"
        );
        assert_eq!(added, b"\r\n");
        assert_eq!(r.neutralised.len(), 1);
        // A stretch of the copy takes with it what was taken out at its
        // edges: here, the second field.
        let at = copy
            .windows(26)
            .position(|w| w == b"Content-Type: text/plain\r\n")
            .unwrap()
            + 26;
        assert_eq!(
            &raw[map.start(at)..map.end(at)],
            b"Content-Type: text/html\r\n"
        );
        assert_eq!((map.start(0), map.end(copy.len())), (0, raw.len()));
        // The pipeline's reading makes the same copy; another copy, or the
        // message itself, has an origin of its own.
        assert_eq!(origin(raw, copy), Some(map.clone()));
        assert_eq!(origin(raw, b"other"), None);
        assert_eq!(origin(raw, raw), Some(Origin::same(raw.len())));
    }

    fn find(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }
}
