//! Taking a message apart for the checks: every leaf MIME part
//! (transfer-decoded), every message nested in it, every uuencoded file (in
//! a text body, or a part sent as `x-uuencode`), every member of a zip,
//! gzip or tar archive, and the parts of a mail file found as a file (an
//! `.eml` in an archive, a forwarded mail attached as
//! `application/octet-stream`), down to `max_scan_depth` levels, within the
//! unpacking budget ([`budget`]) and the deadline. Each becomes an
//! [`Object`]; what cannot be looked into becomes a finding (encrypted:
//! protected; damaged, too deep, over a limit, out of time: error). The
//! checks look at the objects; none of them unpacks anything itself.
//!
//! Objects are tied to the top-level MIME part they were found under,
//! because that is the unit the actions work on: an infected file inside a
//! zip attachment, or inside a forwarded message, makes the whole
//! attachment the part to remove or replace.

pub mod archive;
pub(crate) mod base64;
pub mod budget;
pub mod smime;
pub(crate) mod uuencode;

use super::{Finding, Kind};
use archive::Member;
use budget::{Budget, Exhausted};
use mail_parser::{Encoding, HeaderName, HeaderValue, Message, MessagePart, MimeHeaders, PartType};
use std::borrow::Cow;
use std::time::Instant;

/// Nesting is capped here whatever `max_scan_depth` says: a zip that
/// contains itself must not recurse until the stack runs out.
pub const DEPTH_CAP: u32 = 32;

/// One thing a check may look at.
#[derive(Debug)]
pub struct Object<'m> {
    /// The top-level MIME part it was found under (None: the message as a
    /// whole could not be parsed).
    pub part: Option<usize>,
    /// Where it is: "invoice.zip/docs/readme.exe", "part 1".
    pub path: String,
    /// Its file name, when it has one (attachments, members).
    pub name: Option<String>,
    /// A part's other names: every `Content-Disposition` `filename` and
    /// `Content-Type` `name` value (plain or RFC 2231 `filename*`, of every
    /// such field) that differs from `name`. Clients differ in which one
    /// they save under, so the checks look at each.
    pub aliases: Vec<String>,
    /// "type/subtype", lower case.
    pub mime: String,
    /// Its bytes, decoded; empty for a nested message (its parts are
    /// objects of their own).
    pub data: Cow<'m, [u8]>,
    /// The object it was found in (an archive, a text holding uuencoded
    /// files), so that a check does not report the same thing twice.
    pub parent: Option<usize>,
    /// A nested message: named and typed, but its bytes are its parts.
    pub is_message: bool,
}

/// A message taken apart.
pub struct Unpacked<'m, 'p> {
    pub objects: Vec<Object<'m>>,
    /// What could not be looked into.
    pub findings: Vec<Finding>,
    /// The bytes unpacked, held until the checks are done.
    pub budget: Budget<'p>,
    pub deadline: Instant,
    timed_out: bool,
    max_depth: u32,
    /// Dashes to put back in the bytes of parts read from the buffer at
    /// `restore_base` (the repaired copy of the message): see
    /// [`crate::check::mime_repair::Read::neutralised`].
    restore: Vec<usize>,
    restore_base: usize,
    /// The object being added is a part of a `multipart/encrypted`
    /// (taken by [`Self::object`] as it starts).
    in_encrypted_multipart: bool,
}

/// The content type of a part as "type/subtype", lower case.
pub fn mime_of(part: &MessagePart<'_>) -> String {
    match part.content_type() {
        Some(ct) => match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub).to_ascii_lowercase(),
            None => ct.ctype().to_ascii_lowercase(),
        },
        None if part.is_message() => "message/rfc822".into(),
        None => "text/plain".into(),
    }
}

/// The transfer-decoded bytes of a part. mail-parser converts text parts
/// to UTF-8 from their charset; a scanner needs the bytes as sent, so for
/// text the raw body is decoded here when it is at hand.
///
/// A part mail-parser could not decode (`is_encoding_problem`: the last
/// part of a multipart that lacks its closing delimiter, for one) it keeps
/// as undecoded text; such a part is decoded here by the transfer encoding
/// its header declares, as a mail client would show it.
///
/// Base64 is always decoded here ([`base64`]): mail-parser's decoder stops
/// at a character outside the alphabet and drops a last group without its
/// padding, where RFC 2045 and clients decode on.
///
/// `restore` (sorted positions in `raw`) are bytes to read as `-`.
fn part_bytes<'m>(
    part: &'m MessagePart<'_>,
    raw: Option<&[u8]>,
    restore: &[usize],
) -> Cow<'m, [u8]> {
    // The encoding declared, read as MIME reads it ([`encoding_named`]),
    // wins over mail-parser's reading of the field; a part it could not
    // decode otherwise stays as sent.
    let encoding = match declared_encoding(part) {
        Encoding::None if part.is_encoding_problem => Encoding::None,
        Encoding::None => part.encoding,
        declared => declared,
    };
    // From the raw body: text (kept as sent, not converted), base64 (see
    // above), and an encoding mail-parser did not apply itself.
    let (b, e) = (part.offset_body as usize, part.offset_end as usize);
    let touched = if b <= e {
        &restore[restore.partition_point(|&q| q < b)..restore.partition_point(|&q| q < e)]
    } else {
        &[]
    };
    let from_raw = part.is_text()
        || encoding == Encoding::Base64
        || encoding != part.encoding
        || !touched.is_empty();
    if let (true, Some(raw)) = (from_raw, raw) {
        if b <= e && e <= raw.len() {
            let mut body = Cow::Borrowed(&raw[b..e]);
            if !touched.is_empty() {
                let body = body.to_mut();
                for &q in touched {
                    body[q - b] = b'-';
                }
            }
            if let Some(d) = decode(encoding, &body) {
                return Cow::Owned(d);
            }
        }
    }
    if part.is_encoding_problem && encoding != Encoding::None {
        if let Some(d) = decode(encoding, part.contents()) {
            return Cow::Owned(d);
        }
    }
    Cow::Borrowed(part.contents())
}

/// The names a part carries besides `name` (the one mail-parser gives
/// first, its `attachment_name`): each `filename` of each
/// `Content-Disposition` field, then each `name` of each `Content-Type`
/// field, in order, once each. mail-parser keeps a plain `filename` and an
/// RFC 2231 `filename*` both, as two values named `filename`, and gives the
/// first only: `filename="tool.txt"; filename*=utf-8''tool.exe` hid the
/// name RFC 6266 tells clients to prefer (walkZ 4).
fn other_names(part: &MessagePart<'_>, name: Option<&str>) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (field, param) in [
        (HeaderName::ContentDisposition, "filename"),
        (HeaderName::ContentType, "name"),
    ] {
        for h in part.headers.iter().filter(|h| h.name == field) {
            let HeaderValue::ContentType(ct) = &h.value else {
                continue;
            };
            for a in ct.attributes().unwrap_or_default() {
                if a.name.eq_ignore_ascii_case(param)
                    && Some(a.value.as_ref()) != name
                    && !names.iter().any(|n| n == &a.value)
                {
                    names.push(a.value.to_string());
                }
            }
        }
    }
    // RFC 2047 6.2: white space between two encoded-words is dropped, so
    // `=?utf-8?Q?tool.e?= =?utf-8?Q?xe?=` is `tool.exe` to a client;
    // mail-parser keeps the space (`tool.e xe`), and `*.exe` missed it
    // (walkAJ 3). Which spaces were between words is lost in the decoded
    // value, so a name with white space in its extension is also matched
    // (and scanned) with its white space removed. (Elsewhere a space does
    // not change what a name rule on the extension sees, and each name is
    // one more scan.)
    for n in name.into_iter().map(str::to_string).chain(names.clone()) {
        let spaced_extension = n
            .rsplit_once('.')
            .is_some_and(|(_, ext)| ext.contains(char::is_whitespace));
        let joined: String = n.chars().filter(|c| !c.is_whitespace()).collect();
        if spaced_extension
            && joined != n
            && Some(joined.as_str()) != name
            && !names.contains(&joined)
        {
            names.push(joined);
        }
    }
    names
}

/// The transfer encoding a part's header declares.
fn declared_encoding(part: &MessagePart<'_>) -> Encoding {
    part.content_transfer_encoding()
        .map_or(Encoding::None, encoding_named)
}

/// The transfer encoding a `Content-Transfer-Encoding` value names, read
/// as MIME reads a header field (RFC 2045 s.3, s.6.1): the case of the
/// token does not matter, RFC 822 comments (`base64 (sent by X)`) are
/// not part of it, and what follows the token (`base64;`) is ignored, as
/// lenient clients do; quotes around it (`"base64"`) are dropped. mail-parser
/// compares the whole value and left these undecoded: a zip sent so was
/// scanned as base64 text and passed as clean.
fn encoding_named(value: &str) -> Encoding {
    let token = first_token(value);
    if token.eq_ignore_ascii_case("base64") {
        Encoding::Base64
    } else if token.eq_ignore_ascii_case("quoted-printable") {
        Encoding::QuotedPrintable
    } else {
        Encoding::None
    }
}

/// The first token of a structured header value: comments (nested, with
/// quoted pairs) and white space skipped, quotes taken off, up to white
/// space, `;`, `(` or the end.
fn first_token(value: &str) -> String {
    let mut token = String::new();
    let mut depth = 0u32;
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if depth > 0 => {
                chars.next();
            }
            '(' => depth += 1,
            ')' if depth > 0 => depth -= 1,
            _ if depth > 0 => {}
            '"' => {}
            c if c.is_whitespace() && token.is_empty() => {}
            c if c.is_whitespace() || c == ';' => break,
            c => token.push(c),
        }
        if depth > 0 && !token.is_empty() {
            break;
        }
    }
    token
}

fn decode(encoding: Encoding, body: &[u8]) -> Option<Vec<u8>> {
    match encoding {
        Encoding::None => Some(body.to_vec()),
        Encoding::Base64 => Some(base64::decode(body)),
        Encoding::QuotedPrintable => {
            mail_parser::decoders::quoted_printable::quoted_printable_decode(body)
        }
    }
}

/// Takes `raw` apart, using its parse when there is one.
pub fn unpack<'m, 'p>(
    parsed: Option<&'m Message<'m>>,
    raw: &'m [u8],
    max_depth: u32,
    budget: Budget<'p>,
    deadline: Instant,
) -> Unpacked<'m, 'p> {
    unpack_restoring(parsed, raw, Vec::new(), max_depth, budget, deadline)
}

/// [`unpack`] for a parse of a repaired copy in which the dashes at
/// `restore` were neutralised (`mime_repair::Read::neutralised`): the
/// parts' bytes are read with them put back.
pub fn unpack_restoring<'m, 'p>(
    parsed: Option<&'m Message<'m>>,
    raw: &'m [u8],
    restore: Vec<usize>,
    max_depth: u32,
    mut budget: Budget<'p>,
    deadline: Instant,
) -> Unpacked<'m, 'p> {
    // Other scans' bytes come back within the deadline as a rule: this
    // message waits for them rather than taking their load for its verdict.
    budget.wait_until(deadline);
    let mut u = Unpacked {
        objects: Vec::new(),
        findings: Vec::new(),
        budget,
        deadline,
        timed_out: false,
        max_depth: max_depth.min(DEPTH_CAP),
        restore,
        restore_base: parsed.map_or(0, |m| m.raw_message.as_ptr() as usize),
        in_encrypted_multipart: false,
    };
    match parsed {
        Some(msg) => u.message(msg, Under::Own, None, "", 0, &|data| data),
        None => {
            u.object(
                None,
                None,
                "message".into(),
                None,
                "message/rfc822".into(),
                Cow::Borrowed(raw),
                0,
            );
        }
    }
    u
}

/// Which top-level part of the message the objects of a (nested) message
/// hang under: the unit the actions work on.
#[derive(Debug, Clone, Copy)]
enum Under {
    /// The message itself: each of its parts is its own unit.
    Own,
    /// A message inside the top-level part given (None: the message as a
    /// whole could not be parsed).
    Part(Option<usize>),
}

impl<'m> Unpacked<'m, '_> {
    fn find(&mut self, part: Option<usize>, kind: Kind, name: impl Into<String>, path: &str) {
        self.findings.push(Finding::new(kind, name, path, part));
    }

    /// Checks the deadline; reports it once.
    pub fn out_of_time(&mut self, part: Option<usize>, path: &str) -> bool {
        if !self.timed_out && Instant::now() >= self.deadline {
            self.time_is_up(part, path);
        }
        self.timed_out
    }

    /// The checks of this message stop here: `av/error`.
    pub fn time_is_up(&mut self, part: Option<usize>, path: &str) {
        if !self.timed_out {
            self.timed_out = true;
            self.find(
                part,
                Kind::Error,
                "scan time limit (timeouts.scan) reached",
                path,
            );
        }
    }

    /// Whether going one level below `depth` passes `max_scan_depth`;
    /// reported at `path` when it does.
    fn too_deep(&mut self, part: Option<usize>, depth: u32, path: &str) -> bool {
        let too = depth + 1 > self.max_depth;
        if too {
            // At the cap, max_scan_depth was not what stopped it: naming
            // it would send the administrator to raise it in vain.
            let why = if self.max_depth == DEPTH_CAP {
                "nested deeper than 32 levels (the cap, whatever max_scan_depth says)"
            } else {
                "nested deeper than max_scan_depth"
            };
            self.find(part, Kind::Error, why, path);
        }
        too
    }

    /// Takes `len` octets from the unpacking budget; when it has run out,
    /// says so at `path` (and the caller reads no further).
    fn granted(&mut self, part: Option<usize>, len: usize, path: &str) -> bool {
        let n = len as u64;
        let ok = self.budget.grant(n) >= n;
        if !ok {
            let why = self.budget.exhausted.unwrap_or(Exhausted::Message);
            self.find(part, Kind::Error, why.problem(), path);
        }
        ok
    }

    /// Whether the shared pool ran out for this message.
    pub fn memory_refused(&self) -> bool {
        self.budget.exhausted == Some(Exhausted::Shared)
    }

    /// Walks a parsed message; `under` says which top-level part its
    /// objects hang under, `parent` the object it was found in (a mail file
    /// in an archive). The parts' offsets point into the message's
    /// `raw_message` (the whole message for one sent as is, the decoded
    /// bytes for one sent encoded, the repaired copy for one whose
    /// structure had to be repaired). `keep` makes a part's bytes the
    /// objects' own: borrowed as they are for the message being checked,
    /// copied for a mail file parsed from bytes unpacked here.
    fn message<'a>(
        &mut self,
        msg: &'a Message<'a>,
        under: Under,
        parent: Option<usize>,
        path: &str,
        depth: u32,
        keep: &dyn Fn(Cow<'a, [u8]>) -> Cow<'m, [u8]>,
    ) {
        // The parts of a multipart/encrypted: their armored data is that
        // multipart's finding, not one more of their own.
        let mut encrypted_children: Vec<u32> = Vec::new();
        for (i, part) in msg.parts.iter().enumerate() {
            let unit = match under {
                Under::Own => Some(i),
                Under::Part(p) => p,
            };
            let multipart_type = part
                .content_type()
                .is_some_and(|ct| ct.ctype().eq_ignore_ascii_case("multipart"));
            // RFC 2045 6.4 allows a multipart no encoding but 7bit, 8bit
            // and binary; naive senders (PHP `mail()`, web shops) put
            // one on it all the same. Clients ignore it and read the
            // parts as sent; one that decodes it may show other parts
            // (walkAJ 9): both readings are scanned ([`Self::encoded_multipart`]).
            let encoded = if multipart_type {
                declared_encoding(part)
            } else {
                Encoding::None
            };
            if let PartType::Multipart(children) = &part.body {
                self.outside_parts(msg, part, children, (unit, parent), path, i, depth);
                let here = part_path(path, &format!("part {}", i + 1));
                if let Some(what) = encrypted_multipart(part) {
                    // Its parts are walked all the same (the control part,
                    // the armored data): they are what a client receives.
                    self.find(unit, Kind::Protected, what, &here);
                    encrypted_children.extend(children.iter().copied());
                }
                if encoded != Encoding::None {
                    let raw: &'a [u8] = &msg.raw_message;
                    self.encoded_multipart(raw, part, encoded, (unit, parent), &here, true, depth);
                }
                continue;
            }
            let name = part.attachment_name();
            let label = match name {
                Some(n) => n.to_string(),
                None => format!("part {}", i + 1),
            };
            let here = if path.is_empty() {
                label
            } else {
                format!("{path}/{label}")
            };
            if self.out_of_time(unit, &here) {
                return;
            }
            let mime = mime_of(part);
            match &part.body {
                PartType::Message(inner) => {
                    self.objects.push(Object {
                        part: unit,
                        path: here.clone(),
                        name: name.map(str::to_string),
                        aliases: other_names(part, name),
                        mime,
                        data: Cow::Borrowed(&[]),
                        parent,
                        is_message: true,
                    });
                    if !self.too_deep(unit, depth, &here) {
                        self.message(inner, Under::Part(unit), parent, &here, depth + 1, keep);
                    }
                }
                _ => {
                    // The whole buffer the offsets point into, not the
                    // nested message's own slice (`raw_message()`).
                    let restore: &[usize] =
                        if msg.raw_message.as_ptr() as usize == self.restore_base {
                            &self.restore
                        } else {
                            &[]
                        };
                    let data = keep(part_bytes(part, Some(&msg.raw_message), restore));
                    let index = self.objects.len();
                    self.in_encrypted_multipart = encrypted_children.contains(&(i as u32));
                    self.object(
                        unit,
                        parent,
                        here.clone(),
                        name.map(str::to_string),
                        mime,
                        data,
                        depth,
                    );
                    if let Some(o) = self.objects.get_mut(index) {
                        o.aliases = other_names(part, name);
                    }
                    if encoded != Encoding::None {
                        // No delimiter line found as sent (base64 hides
                        // them): the part is the decoded bytes; the
                        // decoded reading may find the parts.
                        let raw: &'a [u8] = &msg.raw_message;
                        let under = self.objects.get(index).map_or(parent, |_| Some(index));
                        self.encoded_multipart(
                            raw,
                            part,
                            encoded,
                            (unit, under),
                            &here,
                            false,
                            depth,
                        );
                    }
                }
            }
        }
    }

    /// The second reading of a multipart sent with a base64 or
    /// quoted-printable `Content-Transfer-Encoding` (RFC 2045 6.4 forbids
    /// it). Clients (Python's `email`, Thunderbird, Outlook) ignore the
    /// encoding and read the parts as sent: that reading is the parse
    /// itself (`read_as_sent`: it found the delimiter lines). A reader
    /// that decodes the body first may see other parts (walkAJ 9: a
    /// multipart hidden under base64): when decoding changes the bytes,
    /// the decoded body is parsed under the multipart's own header (less
    /// the encoding) and walked like a nested message, its objects under
    /// the multipart's top-level part, named `here (read transfer-decoded)/...`.
    /// Every object of both readings is checked: the worse verdict
    /// counts. Only when neither reading finds the parts is it `av/error`.
    #[allow(clippy::too_many_arguments)]
    fn encoded_multipart(
        &mut self,
        raw: &[u8],
        part: &MessagePart<'_>,
        encoding: Encoding,
        (unit, parent): (Option<usize>, Option<usize>),
        here: &str,
        read_as_sent: bool,
        depth: u32,
    ) {
        let (h, b, e) = (
            part.offset_header as usize,
            part.offset_body as usize,
            part.offset_end as usize,
        );
        let body = if h <= b && b <= e && e <= raw.len() {
            &raw[b..e]
        } else {
            &[][..]
        };
        let decoded = match encoding {
            Encoding::Base64 => base64::decode(body),
            Encoding::QuotedPrintable => quoted_printable_lenient(body),
            Encoding::None => return,
        };
        if decoded == body {
            // Nothing to decode: one reading only, the parse's.
            return;
        }
        let unreadable = "not unpacked: a multipart sent base64 or quoted-printable encoded \
                          (no reading finds its parts)";
        let at = format!("{here} (read transfer-decoded)");
        let mut copy = without_transfer_encoding(&raw[h.min(b)..b]);
        copy.extend_from_slice(&decoded);
        drop(decoded);
        // Even when clients' reading was made (`read_as_sent`), a decoded
        // reading refused by max_scan_depth or the unpacking budget is
        // `av/error`, as every other refusal: what only it would find
        // went unseen (walkAN 1, 2: an EICAR at depth max_scan_depth, or
        // behind a nearly spent budget, was delivered "clean").
        if self.too_deep(unit, depth, &at) || !self.granted(unit, copy.len(), &at) {
            return;
        }
        let Some(msg) = super::parse(&copy) else {
            if !read_as_sent {
                self.find(unit, Kind::Error, unreadable, here);
            }
            return;
        };
        let found_parts = msg
            .parts
            .first()
            .is_some_and(|p| matches!(p.body, PartType::Multipart(_)));
        if !read_as_sent && !found_parts {
            self.find(unit, Kind::Error, unreadable, here);
        }
        let before = self.findings.len();
        self.message(&msg, Under::Part(unit), parent, &at, depth + 1, &|data| {
            Cow::Owned(data.into_owned())
        });
        if read_as_sent && !self.timed_out {
            // What decoding damages is no error when the parts were read
            // as sent (a line of base64 that ends in `=` takes the
            // delimiter line below it, once decoded): from this reading,
            // only what it finds counts, as for the other readings of
            // [`crate::check::run`].
            let tail = self.findings.split_off(before);
            self.findings
                .extend(tail.into_iter().filter(|f| f.kind != Kind::Error));
        }
    }

    /// Adds the text of multipart `part` (index `i`) that lies outside its
    /// parts, its preamble and epilogue, as one object when there is any
    /// besides the delimiter lines. RFC 2046 tells clients to ignore it, and
    /// they do; but a second scanner downstream reads raw bytes, and a
    /// message stamped clean here that it then flags (an EICAR text in the
    /// preamble, walkZ 11) shakes trust in both. Edits of this object's
    /// finding replace or remove the multipart it belongs to.
    #[allow(clippy::too_many_arguments)]
    fn outside_parts(
        &mut self,
        msg: &Message<'_>,
        part: &MessagePart<'_>,
        children: &[u32],
        (unit, parent): (Option<usize>, Option<usize>),
        path: &str,
        i: usize,
        depth: u32,
    ) {
        let raw: &[u8] = &msg.raw_message;
        let (start, end) = (part.offset_body as usize, part.offset_end as usize);
        if start >= end || end > raw.len() {
            return;
        }
        let mut taken: Vec<(usize, usize)> = children
            .iter()
            .filter_map(|&c| msg.parts.get(c as usize))
            .map(|c| (c.offset_header as usize, c.offset_end as usize))
            .filter(|(b, e)| b <= e)
            .collect();
        taken.sort_unstable();
        let boundary = part
            .content_type()
            .and_then(|ct| ct.attribute("boundary"))
            .unwrap_or("");
        let mut text = Vec::new();
        let mut at = start;
        for (b, e) in taken.into_iter().chain([(end, end)]) {
            let b = b.clamp(at, end);
            outside_text(&raw[at..b], boundary, &mut text);
            at = at.max(e.min(end));
        }
        if text.is_empty() {
            return;
        }
        let label = format!("part {} preamble/epilogue", i + 1);
        let here = if path.is_empty() {
            label
        } else {
            format!("{path}/{label}")
        };
        if !self.granted(unit, text.len(), &here) {
            return;
        }
        self.object(
            unit,
            parent,
            here,
            None,
            "text/plain".into(),
            Cow::Owned(text),
            depth,
        );
    }

    /// Adds an archive member under its name, then whatever is inside it.
    /// Its other names (`also`: the local header's, the raw central one)
    /// are matched and scanned under too, as a part's second name is.
    /// A member whose bytes cannot be read (encrypted, or packed with a
    /// method not unpacked) comes with no bytes: its name is in the clear,
    /// and the name filter and the name rules see it (walkBS S7: an
    /// encrypted `invoice.exe` passed `*.exe`).
    #[allow(clippy::too_many_arguments)]
    fn member(
        &mut self,
        part: Option<usize>,
        parent: usize,
        path: &str,
        name: String,
        data: Vec<u8>,
        also: Vec<String>,
        depth: u32,
    ) {
        let added = self.object(
            part,
            Some(parent),
            format!("{path}/{name}"),
            Some(name),
            "application/octet-stream".into(),
            Cow::Owned(data),
            depth + 1,
        );
        if let Some(o) = added.and_then(|at| self.objects.get_mut(at)) {
            o.aliases.extend(also);
        }
    }

    /// Adds one object, then whatever is inside it; gives its index
    /// (none when the time for the message is up and nothing was added).
    #[allow(clippy::too_many_arguments)]
    fn object(
        &mut self,
        part: Option<usize>,
        parent: Option<usize>,
        path: String,
        name: Option<String>,
        mime: String,
        data: Cow<'m, [u8]>,
        depth: u32,
    ) -> Option<usize> {
        let in_encrypted_multipart = std::mem::take(&mut self.in_encrypted_multipart);
        if self.out_of_time(part, &path) {
            return None;
        }
        let format = archive::detect(&data);
        let uuencoded = format.is_none()
            && ((mime.starts_with("text/") && memchr_begin(&data)) || starts_uuencoded(&data));
        // The message being checked, when it could not be parsed, is not
        // parsed a second time.
        let mail_file =
            format.is_none() && !uuencoded && mime != "message/rfc822" && is_mail_file(&data);
        // An S/MIME blob (smime.p7m): what it wraps is walked as a
        // nested message, whatever type the part declares.
        let cms = format.is_none() && !uuencoded && !mail_file && smime::is_cms(&data);
        let index = self.objects.len();
        let holds_more = format.is_some() || uuencoded || mail_file || cms;
        self.objects.push(Object {
            part,
            path: path.clone(),
            name: name.clone(),
            aliases: Vec::new(),
            mime,
            data,
            parent,
            is_message: false,
        });
        if !holds_more {
            // A part that says it is BinHex but holds none the scanner can
            // find (no banner, no `:` line whose CRC checks): a reader that
            // skips to the first `:` may still decode it.
            if archive::binhex_not_found(&self.objects[index].mime, &self.objects[index].data) {
                self.find(
                    part,
                    Kind::Error,
                    "not unpacked: BinHex (no BinHex data found in an application/mac-binhex40 part)",
                    &path,
                );
                return Some(index);
            }
            // OpenPGP armor (`gpg --armor --encrypt`): an attachment
            // `.asc`/`.gpg`/`.pgp`, or a body encrypted inline, that only
            // the recipient's key opens. (In a multipart/encrypted, the
            // multipart says so.)
            if !in_encrypted_multipart && pgp_encrypted(&self.objects[index].data) {
                self.find(part, Kind::Protected, "encrypted PGP message", &path);
                return Some(index);
            }
            if let Some(u) = archive::unopened(&self.objects[index].data) {
                if u.encrypted {
                    self.find(
                        part,
                        Kind::Protected,
                        format!("encrypted {} archive", u.format),
                        &path,
                    );
                } else {
                    self.find(
                        part,
                        Kind::Error,
                        format!("not unpacked: {} is not a supported format", u.format),
                        &path,
                    );
                }
            }
            return Some(index);
        }
        // Borrowed back while what is inside is added after it (no copy),
        // and put in place again below.
        let inner = std::mem::take(&mut self.objects[index].data);
        if mail_file {
            self.mail_file(index, &inner, depth);
        } else if cms {
            self.smime(index, &inner, depth);
        } else {
            self.inside(index, format, &inner, depth);
        }
        self.objects[index].data = inner;
        Some(index)
    }

    /// Adds the parts of object `index`, a mail file, as a nested message's
    /// would be: a virus in a forwarded mail saved into a zip is found as
    /// it is in a message/rfc822 part. Its parts are copies, counted in the
    /// unpacking budget.
    fn mail_file(&mut self, index: usize, inner: &[u8], depth: u32) {
        let (part, path) = {
            let o = &self.objects[index];
            (o.part, o.path.clone())
        };
        if self.too_deep(part, depth, &path) || !self.granted(part, inner.len(), &path) {
            return;
        }
        if let Some(msg) = super::parse(inner) {
            self.message(
                &msg,
                Under::Part(part),
                Some(index),
                &path,
                depth + 1,
                &|data| Cow::Owned(data.into_owned()),
            );
        }
    }

    /// Adds what an S/MIME blob (object `index`) wraps: the MIME entity of
    /// an opaque-signed message, walked as a nested message (walkAJ 4);
    /// encrypted content is `av/protected`, a blob that cannot be read
    /// `av/error`.
    fn smime(&mut self, index: usize, inner: &[u8], depth: u32) {
        let (part, path) = {
            let o = &self.objects[index];
            (o.part, o.path.clone())
        };
        match smime::read(inner) {
            smime::Cms::Signed(entity) => self.mail_file(index, &entity, depth),
            smime::Cms::Detached => {}
            smime::Cms::Encrypted => {
                self.find(part, Kind::Protected, "encrypted S/MIME message", &path)
            }
            smime::Cms::Unreadable(why) => self.find(part, Kind::Error, why, &path),
        }
    }

    /// Adds what is inside object `index`: archive members, or the files
    /// uuencoded in it.
    fn inside(&mut self, index: usize, format: Option<archive::Format>, inner: &[u8], depth: u32) {
        let (part, path, name) = {
            let o = &self.objects[index];
            (o.part, o.path.clone(), o.name.clone())
        };
        if let Some(format) = format {
            if self.too_deep(part, depth, &path) {
                return;
            }
            let members = archive::unpack(
                format,
                name.as_deref().unwrap_or("archive"),
                inner,
                &mut self.budget,
                self.deadline,
            );
            for m in members {
                match m {
                    Member::File {
                        name: n,
                        data: d,
                        also,
                    } => self.member(part, index, &path, n, d, also, depth),
                    Member::Encrypted { name: n, also } => {
                        self.find(part, Kind::Protected, "encrypted", &format!("{path}/{n}"));
                        self.member(part, index, &path, n, Vec::new(), also, depth);
                    }
                    Member::Damaged { problem } => self.find(
                        part,
                        Kind::Error,
                        format!("damaged {} archive: {problem}", format.as_str()),
                        &path,
                    ),
                    Member::NotUnpacked {
                        name: n,
                        method,
                        also,
                    } => {
                        self.find(
                            part,
                            Kind::Error,
                            format!("not unpacked: compression method {method} is not supported"),
                            &format!("{path}/{n}"),
                        );
                        self.member(part, index, &path, n, Vec::new(), also, depth);
                    }
                    Member::Limit { problem } => self.find(part, Kind::Error, problem, &path),
                    Member::Deadline { name: n } => self.time_is_up(part, &format!("{path}/{n}")),
                }
            }
        } else {
            for f in uuencode::find(inner) {
                let at = format!("{path}/{}", f.name);
                if self.too_deep(part, depth, &at) {
                    continue;
                }
                if !self.granted(part, f.data.len(), &at) {
                    return;
                }
                self.object(
                    part,
                    Some(index),
                    at,
                    Some(f.name),
                    "application/octet-stream".into(),
                    Cow::Owned(f.data),
                    depth + 1,
                );
            }
        }
    }
}

/// Whether an object is a mail message saved as a file, with MIME parts to
/// look into: its header block (the first 64 KiB at most) is all header
/// fields, names a MIME structure (`MIME-Version` or `Content-Type`) and has
/// a field only mail has (`From`, `Date`, `Received`, `Return-Path`,
/// `Message-ID`, `Subject`, `To`), and a body follows. A name ending in
/// `.eml` alone does not make one: what matters is what a mail client
/// would open it as. Cheap on anything else: the first line decides most.
/// Appends the lines of `gap` (text between a multipart's parts) that are
/// neither blank nor one of its delimiter lines to `out`.
fn outside_text(gap: &[u8], boundary: &str, out: &mut Vec<u8>) {
    for line in gap.split(|&b| b == b'\n') {
        let trimmed = line.trim_ascii();
        let delimiter = !boundary.is_empty()
            && trimmed
                .strip_prefix(b"--")
                .and_then(|t| t.strip_prefix(boundary.as_bytes()))
                .is_some_and(|rest| rest.is_empty() || rest == b"--");
        if trimmed.is_empty() || delimiter {
            continue;
        }
        out.extend_from_slice(line);
        out.push(b'\n');
    }
}

/// `label` under `path` ("" for the message itself).
fn part_path(path: &str, label: &str) -> String {
    if path.is_empty() {
        label.to_string()
    } else {
        format!("{path}/{label}")
    }
}

/// What a `multipart/encrypted` (RFC 1847) is, for its `av/protected`
/// finding; None for any other part. Only the recipient's key opens it,
/// as for encrypted S/MIME.
fn encrypted_multipart(part: &MessagePart<'_>) -> Option<&'static str> {
    let ct = part.content_type()?;
    if !(ct.ctype().eq_ignore_ascii_case("multipart")
        && ct
            .subtype()
            .is_some_and(|s| s.eq_ignore_ascii_case("encrypted")))
    {
        return None;
    }
    let pgp = ct
        .attribute("protocol")
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("application/pgp-encrypted"));
    Some(if pgp {
        "encrypted PGP/MIME message"
    } else {
        "encrypted message (multipart/encrypted)"
    })
}

/// Whether `data` is an OpenPGP message in ASCII armor (RFC 4880 6.2):
/// it starts, after white space, with `-----BEGIN PGP MESSAGE-----`.
/// (Signed-only text, `BEGIN PGP SIGNED MESSAGE`, is readable and is not.)
fn pgp_encrypted(data: &[u8]) -> bool {
    data.trim_ascii_start()
        .starts_with(b"-----BEGIN PGP MESSAGE-----")
}

/// A header block without its `Content-Transfer-Encoding` fields (and
/// their continuation lines).
fn without_transfer_encoding(header: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(header.len());
    let mut dropping = false;
    for line in header.split_inclusive(|&b| b == b'\n') {
        if dropping && matches!(line.first(), Some(b' ' | b'\t')) {
            continue;
        }
        dropping = line
            .iter()
            .position(|&b| b == b':')
            .map(|c| line[..c].trim_ascii_end())
            .is_some_and(|n| n.eq_ignore_ascii_case(b"content-transfer-encoding"));
        if !dropping {
            out.extend_from_slice(line);
        }
    }
    out
}

/// Quoted-printable decoded as lenient readers (Python's `quopri`, mail
/// clients) decode it: `=XX` (hex) is the octet, `=` at the end of a
/// line (white space may follow it) joins the lines, and any other `=`
/// is kept as it is. (mail-parser's decoder gives up at the first `=`
/// that is neither.)
fn quoted_printable_lenient(body: &[u8]) -> Vec<u8> {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let c = body[i];
        if c == b'=' {
            let rest = &body[i + 1..];
            let ws = rest
                .iter()
                .take_while(|&&b| b == b' ' || b == b'\t')
                .count();
            match (rest.get(ws), rest.get(ws + 1)) {
                (None, _) => break,
                (Some(b'\n'), _) => {
                    i += ws + 2;
                    continue;
                }
                (Some(b'\r'), Some(b'\n')) => {
                    i += ws + 3;
                    continue;
                }
                _ => {}
            }
            if let (Some(hi), Some(lo)) = (
                rest.first().copied().and_then(hex),
                rest.get(1).copied().and_then(hex),
            ) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

fn is_mail_file(data: &[u8]) -> bool {
    mail_header(data).is_some_and(|h| h.fields >= 2 && h.mime && h.mail && h.body)
}

/// What the header block at the start of `data` says of it being mail
/// (None: it is not a block of header fields at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailHeader {
    /// Header fields in the block.
    pub fields: usize,
    /// A `MIME-Version` or `Content-Type` field.
    pub mime: bool,
    /// A field only mail has (`From`, `Date`, `Received`, `Return-Path`,
    /// `Message-ID`, `Subject`, `To`).
    pub mail: bool,
    /// An empty line ends the block (a body may follow).
    pub body: bool,
}

/// Reads the header block at the start of `data` (its first 64 KiB at
/// most): None when a line of it is not a header field. Cheap on anything
/// else: the first line decides most.
pub fn mail_header(data: &[u8]) -> Option<MailHeader> {
    let head = &data[..data.len().min(64 * 1024)];
    let end = crate::text::HeaderEnd::of(head);
    if end.header == 0 {
        return None;
    }
    let mut h = MailHeader {
        fields: 0,
        mime: false,
        mail: false,
        body: end.blank > 0,
    };
    for (n, line) in head[..end.header]
        .split_inclusive(|&b| b == b'\n')
        .enumerate()
    {
        if n > 0 && matches!(line.first(), Some(b' ' | b'\t')) {
            continue;
        }
        let colon = line.iter().position(|&b| b == b':')?;
        let field = &line[..colon];
        if field.is_empty() || !field.iter().all(|b| (33..=126).contains(b)) {
            return None;
        }
        h.fields += 1;
        let is = |want: &str| field.eq_ignore_ascii_case(want.as_bytes());
        h.mime |= is("MIME-Version") || is("Content-Type");
        h.mail |= [
            "From",
            "Date",
            "Received",
            "Return-Path",
            "Message-ID",
            "Subject",
            "To",
        ]
        .iter()
        .any(|f| is(f));
    }
    Some(h)
}

/// Whether a text may hold a uuencoded block (a cheap test before parsing).
fn memchr_begin(data: &[u8]) -> bool {
    data.windows(6).any(|w| w == b"begin ")
}

/// Whether an object of any type is itself a uuencoded file (it starts
/// with a `begin ` line). mail-parser does not decode a part sent with
/// `Content-Transfer-Encoding: x-uuencode`: it arrives here as that text,
/// typed as its attachment (`application/octet-stream`).
fn starts_uuencoded(data: &[u8]) -> bool {
    let text = data.trim_ascii_start();
    text.starts_with(b"begin ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use budget::MemoryPool;
    use std::io::Write;

    #[test]
    fn a_transfer_encoding_is_read_as_mime_reads_it() {
        // walkZ 1: a comment, a trailing ';' or quotes left the part
        // undecoded, and an EICAR zip sent so passed as clean.
        for value in [
            "base64",
            "BASE64",
            "  Base64  ",
            "Base64 (comment)",
            "(first) base64",
            "base64(no space)",
            "base64;",
            "base64; x=y",
            "\"base64\"",
            "base64 (a (nested) \\) comment)",
        ] {
            assert_eq!(encoding_named(value), Encoding::Base64, "{value:?}");
        }
        assert_eq!(
            encoding_named("Quoted-Printable (qp)"),
            Encoding::QuotedPrintable
        );
        for value in ["", "7bit", "x-foo", "(base64)", "base64x", "x-base64"] {
            assert_eq!(encoding_named(value), Encoding::None, "{value:?}");
        }
        // And the part's bytes are the decoded ones.
        for cte in ["Base64 (comment)", "base64;", "\"base64\""] {
            let raw = format!(
                "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n\
--B\r\nContent-Type: application/zip; name=x.zip\r\n\
Content-Transfer-Encoding: {cte}\r\n\r\nUEsDBGhlbGxv\r\n--B--\r\n"
            );
            let objects = objects_of(&raw);
            assert!(
                objects.iter().any(|o| o.2 == b"PK\x03\x04hello"),
                "{cte}: {objects:?}"
            );
        }
    }

    #[test]
    fn a_part_is_scanned_with_the_dashes_of_a_boundary_inside_a_line() {
        // The copy read for the structure has `-_XX` for a `--XX` that is
        // no delimiter line (mime_repair); what the rules see is the part
        // as sent, so a boundary chosen to overlap a signature changes
        // nothing.
        for body in ["MZ \x01 a--XX-- b", "text --XX c", "--XX--tail"] {
            let raw = format!(
                "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n\
--XX\r\nContent-Type: application/octet-stream; name=a.bin\r\n\
Content-Transfer-Encoding: 8bit\r\n\r\n{body}\r\n--XX\r\n\
Content-Type: text/plain\r\n\r\n{body} 2\r\n--XX--\r\n"
            );
            let objects = objects_of(&raw);
            let data: Vec<&[u8]> = objects.iter().map(|o| o.2.as_slice()).collect();
            assert!(data.contains(&body.as_bytes()), "{body}: {objects:?}");
            assert!(
                data.contains(&format!("{body} 2").as_bytes()),
                "{body}: {objects:?}"
            );
        }
    }

    /// The objects of `raw` as (path, top-level part, bytes).
    /// What `look` takes from `raw` unpacked as the scanner does.
    fn unpacked_of<T>(raw: &str, look: impl FnOnce(&Unpacked<'_, '_>) -> T) -> T {
        let read = crate::check::mime_repair::read(
            &mail_parser::MessageParser::new().with_mime_headers(),
            raw.as_bytes(),
        );
        let msg = read.message.unwrap();
        let pool = MemoryPool::unbounded();
        let u = unpack_restoring(
            Some(&msg),
            raw.as_bytes(),
            read.neutralised,
            8,
            Budget::new(1 << 20, &pool),
            Instant::now() + std::time::Duration::from_secs(60),
        );
        look(&u)
    }

    fn objects_of(raw: &str) -> Vec<(String, Option<usize>, Vec<u8>)> {
        unpacked_of(raw, |u| {
            u.objects
                .iter()
                .map(|o| (o.path.clone(), o.part, o.data.to_vec()))
                .collect()
        })
    }

    #[test]
    fn a_binhex_part_without_binhex_is_an_error_not_clean() {
        // walkAJ 5: a reader that skips to the first `:` may decode what
        // the scanner finds no BinHex in; it is not stamped clean.
        let raw = "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n\
--B\r\nContent-Type: application/mac-binhex40; name=\"e.hqx\"\r\n\r\n\
junk before the data\r\n--B--\r\n";
        let findings = unpacked_of(raw, |u| u.findings.clone());
        assert!(
            findings
                .iter()
                .any(|f| f.kind == Kind::Error && f.name.starts_with("not unpacked: BinHex")),
            "{findings:?}"
        );
    }

    #[test]
    fn text_outside_a_multipart_s_parts_is_an_object_of_its_own() {
        // walkZ 11: a preamble or epilogue was read by nothing, so a
        // downstream scanner of raw bytes flagged what was stamped clean.
        let eicar = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
        let head = "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n";
        let preamble =
            format!("{head}{eicar}\r\n--B\r\nContent-Type: text/plain\r\n\r\nhi\r\n--B--\r\n");
        let epilogue =
            format!("{head}--B\r\nContent-Type: text/plain\r\n\r\nhi\r\n--B--\r\n{eicar}\r\n");
        for raw in [preamble, epilogue] {
            let objects = objects_of(&raw);
            let outside = objects
                .iter()
                .find(|o| o.0 == "part 1 preamble/epilogue")
                .unwrap_or_else(|| panic!("{objects:?}"));
            assert_eq!(outside.1, Some(0), "hangs under the multipart");
            assert_eq!(outside.2.trim_ascii(), eicar.as_bytes());
            assert!(objects.iter().any(|o| o.2 == b"hi"), "{objects:?}");
        }
        // Nothing but delimiters and blank lines: no object.
        let bare = format!("{head}\r\n--B\r\n\r\nhi\r\n--B--\r\n\r\n");
        let objects = objects_of(&bare);
        assert_eq!(objects.len(), 1, "{objects:?}");
        // A nested multipart's epilogue is found under the part holding it.
        let nested = format!(
            "{head}--B\r\nContent-Type: text/plain\r\n\r\nhi\r\n\
--B\r\nContent-Type: multipart/alternative; boundary=C\r\n\r\n\
--C\r\nContent-Type: text/plain\r\n\r\nyo\r\n--C--\r\n{eicar}\r\n--B--\r\n"
        );
        let objects = objects_of(&nested);
        let outside: Vec<_> = objects
            .iter()
            .filter(|o| o.0.ends_with("preamble/epilogue"))
            .collect();
        assert_eq!(outside.len(), 1, "{objects:?}");
        assert_eq!(outside[0].0, "part 3 preamble/epilogue");
        assert_eq!(outside[0].2.trim_ascii(), eicar.as_bytes());
    }

    #[test]
    fn a_mail_file_is_known_by_its_header_block() {
        let mime = b"Received: from a\r\n by b\r\nFrom: a@example.com\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=X\r\n\r\n--X\r\n\r\nhi\r\n--X--\r\n";
        assert!(is_mail_file(mime));
        assert!(is_mail_file(
            &mime
                .iter()
                .filter(|&&b| b != b'\r')
                .copied()
                .collect::<Vec<_>>()
        ));
        // Not worth parsing, or not mail: no MIME structure, a letter that
        // starts with "Dear John:", only a header, a binary file.
        assert!(!is_mail_file(
            b"From: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n"
        ));
        assert!(!is_mail_file(
            b"Dear John: see below.\r\nContent-Type: text\r\n\r\nx"
        ));
        assert!(!is_mail_file(b"From: a\r\nMIME-Version: 1.0\r\n"));
        assert!(!is_mail_file(
            b"Content-Type: text/plain\r\n\r\nno mail field"
        ));
        assert!(!is_mail_file(b"%PDF-1.7\r\n\r\n"));
        assert!(!is_mail_file(b""));
    }

    #[test]
    fn a_time_out_inside_an_archive_is_one_finding_at_the_member_being_read() {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for n in ["f00000.txt", "f00001.txt"] {
            w.start_file(n, zip::write::SimpleFileOptions::default())
                .unwrap();
            w.write_all(b"data").unwrap();
        }
        let z = w.finish().unwrap().into_inner();
        let pool = MemoryPool::unbounded();
        // The deadline has passed when the first member is read.
        let mut u = Unpacked {
            objects: Vec::new(),
            findings: Vec::new(),
            budget: Budget::new(1 << 20, &pool),
            deadline: Instant::now(),
            timed_out: false,
            max_depth: 8,
            restore: Vec::new(),
            restore_base: 0,
            in_encrypted_multipart: false,
        };
        u.objects.push(Object {
            part: Some(1),
            path: "many.zip".into(),
            name: Some("many.zip".into()),
            aliases: Vec::new(),
            mime: "application/zip".into(),
            data: Cow::Borrowed(&[]),
            parent: None,
            is_message: false,
        });
        u.inside(0, Some(archive::Format::Zip), &z, 0);
        // Later checks find the time is up and add nothing.
        assert!(u.out_of_time(Some(1), "many.zip/f00001.txt"));
        let found: Vec<(&str, &str)> = u
            .findings
            .iter()
            .map(|f| (f.name.as_str(), f.path.as_str()))
            .collect();
        assert_eq!(
            found,
            [(
                "scan time limit (timeouts.scan) reached",
                "many.zip/f00000.txt"
            )]
        );
    }

    #[test]
    fn nesting_stopped_by_the_cap_does_not_blame_max_scan_depth() {
        // walkS: max_scan_depth = 45 and a 45-deep chain said "nested
        // deeper than max_scan_depth", though the cap of 32 stopped it.
        let pool = MemoryPool::unbounded();
        let finding = |max_depth| {
            let mut u = unpack(
                None,
                b"",
                max_depth,
                Budget::new(1 << 20, &pool),
                Instant::now() + std::time::Duration::from_secs(60),
            );
            assert!(u.too_deep(None, DEPTH_CAP, "a.zip"));
            u.findings.pop().map(|f| f.name).unwrap_or_default()
        };
        assert_eq!(finding(8), "nested deeper than max_scan_depth");
        assert_eq!(
            finding(45),
            "nested deeper than 32 levels (the cap, whatever max_scan_depth says)"
        );
    }
}
