//! Walking a message for the scanner: every MIME part (decoded), nested
//! messages, uuencoded files (in text bodies, or a part sent as
//! `x-uuencode`) and archive members, each
//! checked by the name/MIME filters and scanned with the YARA rules.
//!
//! Findings are tied to the top-level MIME part they were found under,
//! because that is the unit the actions work on: an infected file inside
//! a zip attachment, or inside a forwarded message, makes the whole
//! attachment the part to remove or replace.

use super::archive::{self, Member};
use super::budget::{Budget, Exhausted};
use super::filter::Filters;
use super::uuencode;
use super::{Finding, Kind};
use mail_parser::{Encoding, Message, MessagePart, MimeHeaders, PartType};
use std::borrow::Cow;
use std::time::{Duration, Instant};

/// Nesting is capped here whatever `max_scan_depth` says: a zip that
/// contains itself must not recurse until the stack runs out.
pub const DEPTH_CAP: u32 = 32;

/// The rule tag that makes a match "suspicious" rather than "infected".
pub const SUSPICIOUS_TAG: &str = "suspicious";

pub struct Walk<'a, 'r> {
    /// None when no rules are loaded (then every message is `av/error`).
    pub yara: Option<&'a mut yara_x::Scanner<'r>>,
    pub filters: &'a Filters,
    pub max_depth: u32,
    /// Bytes that may still be unpacked from this message (and from the
    /// pool all workers share).
    pub budget: Budget<'a>,
    pub deadline: Instant,
    pub findings: Vec<Finding>,
    /// Objects scanned (parts, members, decoded files).
    pub objects: u64,
    timed_out: bool,
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
fn part_bytes<'m>(part: &'m MessagePart<'_>, raw: Option<&[u8]>) -> Cow<'m, [u8]> {
    let encoding = if part.is_encoding_problem {
        declared_encoding(part)
    } else {
        part.encoding
    };
    if let (true, Some(raw)) = (part.is_text(), raw) {
        let (b, e) = (part.offset_body as usize, part.offset_end as usize);
        if b <= e && e <= raw.len() {
            if let Some(d) = decode(encoding, &raw[b..e]) {
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

/// The transfer encoding a part's header declares.
fn declared_encoding(part: &MessagePart<'_>) -> Encoding {
    match part.content_transfer_encoding().map(str::trim) {
        Some(e) if e.eq_ignore_ascii_case("base64") => Encoding::Base64,
        Some(e) if e.eq_ignore_ascii_case("quoted-printable") => Encoding::QuotedPrintable,
        _ => Encoding::None,
    }
}

fn decode(encoding: Encoding, body: &[u8]) -> Option<Vec<u8>> {
    match encoding {
        Encoding::None => Some(body.to_vec()),
        Encoding::Base64 => mail_parser::decoders::base64::base64_decode(body),
        Encoding::QuotedPrintable => {
            mail_parser::decoders::quoted_printable::quoted_printable_decode(body)
        }
    }
}

impl<'a, 'r> Walk<'a, 'r> {
    pub fn new(
        yara: Option<&'a mut yara_x::Scanner<'r>>,
        filters: &'a Filters,
        max_depth: u32,
        budget: Budget<'a>,
        deadline: Instant,
    ) -> Walk<'a, 'r> {
        Walk {
            yara,
            filters,
            max_depth: max_depth.min(DEPTH_CAP),
            budget,
            deadline,
            findings: Vec::new(),
            objects: 0,
            timed_out: false,
        }
    }

    fn find(&mut self, part: Option<usize>, kind: Kind, name: impl Into<String>, path: &str) {
        self.findings.push(Finding {
            kind,
            name: name.into(),
            path: path.to_string(),
            part,
        });
    }

    /// Checks the deadline; reports it once.
    fn out_of_time(&mut self, part: Option<usize>, path: &str) -> bool {
        if !self.timed_out && Instant::now() >= self.deadline {
            self.time_is_up(part, path);
        }
        self.timed_out
    }

    /// The scan of this message stops here: `av/error`.
    fn time_is_up(&mut self, part: Option<usize>, path: &str) {
        self.timed_out = true;
        self.find(
            part,
            Kind::Error,
            "scan time limit (timeouts.scan) reached",
            path,
        );
    }

    /// Walks a parsed message. `raw` is its bytes when offsets into them
    /// are valid (the top-level message); `top` the top-level part that a
    /// nested message hangs under.
    pub fn message(
        &mut self,
        msg: &Message<'_>,
        raw: Option<&[u8]>,
        top: Option<usize>,
        path: &str,
        depth: u32,
    ) {
        for (i, part) in msg.parts.iter().enumerate() {
            if matches!(part.body, PartType::Multipart(_)) {
                continue;
            }
            let unit = top.or(Some(i));
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
                    self.objects += 1;
                    if let Some(rule) = self.filters.check(name, &mime) {
                        self.find(unit, Kind::Filtered, rule, &here);
                    }
                    if depth + 1 > self.max_depth {
                        self.find(
                            unit,
                            Kind::Error,
                            "nested deeper than max_scan_depth",
                            &here,
                        );
                    } else {
                        self.message(inner, None, unit, &here, depth + 1);
                    }
                }
                _ => {
                    let data = part_bytes(part, raw);
                    self.object(unit, &here, name, &mime, &data, depth);
                }
            }
        }
    }

    /// Filters and scans one object, then whatever is inside it.
    pub fn object(
        &mut self,
        part: Option<usize>,
        path: &str,
        name: Option<&str>,
        mime: &str,
        data: &[u8],
        depth: u32,
    ) {
        if self.out_of_time(part, path) {
            return;
        }
        self.objects += 1;
        if let Some(rule) = self.filters.check(name, mime) {
            self.find(part, Kind::Filtered, rule, path);
        }
        let own_from = self.findings.len();
        self.rules(part, path, name, mime, data);
        let own_to = self.findings.len();
        if let Some(format) = archive::detect(data) {
            if depth + 1 > self.max_depth {
                self.find(part, Kind::Error, "nested deeper than max_scan_depth", path);
                return;
            }
            let members = archive::unpack(
                format,
                name.unwrap_or("archive"),
                data,
                &mut self.budget,
                self.deadline,
            );
            for m in members {
                match m {
                    Member::File { name: n, data: d } => {
                        let inner = format!("{path}/{n}");
                        let mime = "application/octet-stream";
                        self.object(part, &inner, Some(&n), mime, &d, depth + 1);
                    }
                    Member::Encrypted { name: n } => {
                        self.find(part, Kind::Protected, "encrypted", &format!("{path}/{n}"))
                    }
                    Member::Damaged { problem } => self.find(
                        part,
                        Kind::Error,
                        format!("damaged {} archive: {problem}", format.as_str()),
                        path,
                    ),
                    Member::Limit { problem } => self.find(part, Kind::Error, problem, path),
                }
            }
            self.drop_container_duplicates(own_from, own_to);
        } else if (mime.starts_with("text/") && memchr_begin(data)) || starts_uuencoded(data) {
            for f in uuencode::find(data) {
                let inner = format!("{path}/{}", f.name);
                if depth + 1 > self.max_depth {
                    self.find(
                        part,
                        Kind::Error,
                        "nested deeper than max_scan_depth",
                        &inner,
                    );
                    continue;
                }
                let n = f.data.len() as u64;
                if self.budget.grant(n) < n {
                    let why = self.budget.exhausted.unwrap_or(Exhausted::Message);
                    self.find(part, Kind::Error, why.problem(), &inner);
                    return;
                }
                let mime = "application/octet-stream";
                self.object(part, &inner, Some(&f.name), mime, &f.data, depth + 1);
            }
        }
    }

    /// A stored (uncompressed) member also matches in the archive's own
    /// bytes: keep the finding that says where it really is, the member's.
    fn drop_container_duplicates(&mut self, from: usize, to: usize) {
        let inner: Vec<String> = self.findings[to..].iter().map(|f| f.name.clone()).collect();
        let mut i = 0;
        self.findings.retain(|f| {
            let own = (from..to).contains(&i);
            i += 1;
            !(own && inner.contains(&f.name))
        });
    }

    /// Runs the YARA rules over one object.
    fn rules(
        &mut self,
        part: Option<usize>,
        path: &str,
        name: Option<&str>,
        mime: &str,
        data: &[u8],
    ) {
        let Some(scanner) = self.yara.as_deref_mut() else {
            return;
        };
        let left = self.deadline.saturating_duration_since(Instant::now());
        // yara-x counts its timeout in whole seconds.
        scanner.set_timeout(left.max(Duration::from_secs(1)));
        // Both globals are declared by every compiled set (see bases.rs);
        // an error here would only mean an unusual rule set, not a bad mail.
        let _ = scanner.set_global("filename", name.unwrap_or(""));
        let _ = scanner.set_global("mime_type", mime);
        let hits: Result<Vec<(String, bool)>, yara_x::ScanError> = scanner.scan(data).map(|r| {
            r.matching_rules()
                .map(|m| {
                    let suspicious = m.tags().any(|t| t.identifier() == SUSPICIOUS_TAG);
                    (m.identifier().to_string(), suspicious)
                })
                .collect()
        });
        match hits {
            Ok(hits) => {
                for (rule, suspicious) in hits {
                    let kind = if suspicious {
                        Kind::Suspicious
                    } else {
                        Kind::Infected
                    };
                    self.find(part, kind, rule, path);
                }
            }
            Err(yara_x::ScanError::Timeout) => self.time_is_up(part, path),
            Err(e) => self.find(part, Kind::Error, format!("rules: {e}"), path),
        }
    }
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
