//! Assembly of the message from the lines of DATA: end-of-data detection,
//! dot-unstuffing, line-end normalisation (bare LF and bare CR become
//! CRLF), the splitting of over-long lines when `limits.long_lines` is
//! "split", and the facts the session checks before it accepts (size,
//! over-long lines, hop count, 8-bit content).
//! Pure: the session feeds lines (or, when lines are split, the pieces of
//! a long line as they come), this decides nothing about replies.

use crate::config::LongLines;

/// Longest line RFC 5322 2.1.1 allows, without its CRLF.
pub const MAX_LINE: usize = 998;

/// The reply to a message refused for a line over [`MAX_LINE`] octets
/// (`limits.long_lines = "refuse"`).
pub const LONG_LINE_REPLY: &str =
    "554 5.6.0 Message has a line longer than 998 octets (RFC 5322 section 2.1.1)";

/// The most octets the header section may have (its line ends counted).
/// Postfix bounds each header field (header_size_limit, 100 KB) but not
/// the section; a message made of 1.3 million tiny fields (18 MB, under
/// the size limit) cost ~450 MB and seconds of CPU to check (walkAU F9):
/// parsing makes a header cost ~25 times its size. 1 MiB is ten times
/// the largest header a real message carries (long Received and ARC
/// chains, a To: of some thousand addresses).
pub const MAX_HEADER_OCTETS: u64 = 1024 * 1024;
/// The most header fields: real mail carries tens, a long list or relay
/// chain a few hundred; 10,000 fields of 100 octets would still be under
/// [`MAX_HEADER_OCTETS`] but cost most per octet.
pub const MAX_HEADER_FIELDS: u32 = 10_000;

/// The reply to a message whose header section is over
/// [`MAX_HEADER_OCTETS`] or [`MAX_HEADER_FIELDS`]: 552 is RFC 5321's code
/// for exceeded storage, 5.3.4 RFC 3463's "message too big for system".
pub const HEADER_TOO_LARGE_REPLY: &str = "552 5.3.4 Message header too large";

/// What DATA produced.
#[derive(Debug)]
pub struct Assembled {
    /// The message with CRLF line ends, as it will be spooled (without our
    /// Received header, which the session puts in front).
    pub body: Vec<u8>,
    /// Octets the client sent (after unstuffing, with CRLF line ends, and
    /// the octets a split inserted).
    pub size: u64,
    /// More than the size limit: the body was not kept.
    pub oversize: bool,
    /// A line was longer than 998 octets and `long_lines` is "refuse".
    pub long_line: bool,
    /// Lines longer than 998 octets: refused (`long_line`) or split, each
    /// counted once however many lines it became.
    pub long_lines: u32,
    /// The longest line, in octets without its line end (a line the
    /// reader threw away counts as 999).
    pub longest: usize,
    /// `Received:` header fields in the header section.
    pub hops: u32,
    /// Octets above 127 anywhere.
    pub eight_bit: bool,
    /// The header section went over [`MAX_HEADER_OCTETS`] or
    /// [`MAX_HEADER_FIELDS`]: the message was not kept from there on
    /// (the rest of DATA is only read to its end). Never set by an
    /// assembler without a size limit (`mailward scan` reading a local
    /// file, which keeps everything it is given).
    pub header_too_large: bool,
}

impl Assembled {
    /// Lines that were split (none when long lines are refused).
    pub fn split(&self) -> u32 {
        if self.long_line {
            0
        } else {
            self.long_lines
        }
    }
}

pub struct Assembler {
    out: Assembled,
    max: u64,
    /// `limits.long_lines` is "split".
    split: bool,
    in_header: bool,
    /// Octets and fields of the header section so far.
    header_octets: u64,
    header_fields: u32,
    /// The previous line ended in CRLF (CRs then LF) or DATA just began:
    /// only then can "." CRLF end the data. A bare LF or a bare CR before
    /// "." does not: accepting LF "." CRLF or CR "." CRLF as the end is
    /// what SMTP smuggling exploits.
    prev_crlf: bool,
    /// Part of the current line came already ([`Assembler::part`]): what
    /// comes next is not at the start of a line.
    mid_line: bool,
    /// CRs at the end of the last part: the line end if only CRs and the
    /// LF follow, bare CRs (line ends of their own) if anything else does.
    held_crs: usize,
    /// The current piece (the octets between two line ends), unstuffed,
    /// not yet kept: at most [`MAX_LINE`] octets plus one part when
    /// splitting.
    piece: Vec<u8>,
    /// Something of the current piece came (its first octet was looked at
    /// for dot-stuffing).
    started: bool,
    /// The current piece began with "." and nothing came after it yet:
    /// the dot is stuffing if more comes, the line "." if not.
    dot: bool,
    /// Octets of the current piece so far (after unstuffing).
    piece_len: usize,
    /// Lines the current piece has become so far (splits).
    cuts: u32,
}

impl Assembler {
    /// An assembler that refuses lines over 998 octets (the default of
    /// `limits.long_lines`).
    pub fn new(max_size: u64) -> Assembler {
        Assembler::with_long_lines(max_size, LongLines::Refuse)
    }

    /// An assembler that refuses or splits lines over 998 octets.
    pub fn with_long_lines(max_size: u64, long_lines: LongLines) -> Assembler {
        Assembler {
            out: Assembled {
                body: Vec::with_capacity(8192),
                size: 0,
                oversize: false,
                long_line: false,
                long_lines: 0,
                longest: 0,
                hops: 0,
                eight_bit: false,
                header_too_large: false,
            },
            header_octets: 0,
            header_fields: 0,
            max: max_size,
            split: long_lines == LongLines::Split,
            in_header: true,
            prev_crlf: true,
            mid_line: false,
            held_crs: 0,
            piece: Vec::new(),
            started: false,
            dot: false,
            piece_len: 0,
            cuts: 0,
        }
    }

    /// Notes a line the reader threw away for its length (the message will
    /// be refused, but DATA must still end where the client ends it: after
    /// an over-long line that ended in CRLF, "." CRLF is the end).
    pub fn too_long(&mut self, crlf: bool) {
        self.out.long_line = true;
        self.out.long_lines = self.out.long_lines.saturating_add(1);
        self.out.longest = self.out.longest.max(MAX_LINE + 1);
        self.prev_crlf = crlf;
    }

    /// Feeds one line as read (terminator included), or the last part of
    /// a line whose first parts came through [`Assembler::part`]. Returns
    /// true at the end of data.
    ///
    /// A bare CR ends a line here as it does on the way out (the sender
    /// writes every line end as CRLF), so that the spool, the checks and
    /// the next hop all see the same lines: otherwise a boundary or a
    /// header field hidden behind a bare CR is content to the scanner and
    /// a line of its own to the next hop. A run of CRs right before the
    /// LF is one line end (CR CR LF, from broken mailers, is not an empty
    /// line). Each piece is a line of its own: unstuffed, measured and
    /// counted as such. Only "." CRLF right after a line that ended in
    /// (CR)LF ends the data, that is the octets CR LF "." CR LF: a "."
    /// after a bare CR, or ".\r\r\n", is content, stored as a "." line
    /// and sent on dot-stuffed.
    pub fn line(&mut self, raw: &[u8]) -> bool {
        if !self.mid_line && raw == b".\r\n" && self.prev_crlf {
            return true;
        }
        let (content, lf, crs) = match raw.strip_suffix(b"\n") {
            Some(c) => {
                let crs = trailing_crs(c);
                (&c[..c.len() - crs], true, crs)
            }
            None => (raw, false, 0),
        };
        let held = std::mem::take(&mut self.held_crs);
        // CRs held from the last part belong to the line end when only
        // CRs come between them and the LF.
        let crlf = lf && (crs > 0 || (content.is_empty() && held > 0));
        if !(lf && content.is_empty()) {
            for _ in 0..held {
                self.end_piece();
            }
        }
        self.content(content);
        self.end_piece();
        self.prev_crlf = crlf;
        self.mid_line = false;
        false
    }

    /// Feeds a part of a line that goes on (the reader's cut of a line
    /// longer than it holds; only when lines are split). CRs at its end
    /// are held until it is known whether the LF follows them.
    pub fn part(&mut self, raw: &[u8]) {
        let crs = trailing_crs(raw);
        let content = &raw[..raw.len() - crs];
        if content.is_empty() {
            self.held_crs = self.held_crs.saturating_add(crs);
        } else {
            for _ in 0..std::mem::take(&mut self.held_crs) {
                self.end_piece();
            }
            self.content(content);
            self.held_crs = crs;
        }
        self.mid_line = true;
    }

    /// Octets of a line without its line end: each CR in them ends a piece.
    fn content(&mut self, content: &[u8]) {
        let mut pieces = content.split(|&b| b == b'\r');
        if let Some(first) = pieces.next() {
            self.more(first);
        }
        for piece in pieces {
            self.end_piece();
            self.more(piece);
        }
    }

    /// More octets of the current piece.
    fn more(&mut self, mut octets: &[u8]) {
        if octets.is_empty() {
            return;
        }
        if !self.started {
            self.started = true;
            if let Some(rest) = octets.strip_prefix(b".") {
                self.dot = true;
                octets = rest;
                if octets.is_empty() {
                    return;
                }
            }
        }
        // A dot followed by more was stuffing: it goes.
        self.dot = false;
        self.piece_len += octets.len();
        self.piece.extend_from_slice(octets);
        if self.split {
            while self.piece.len() > MAX_LINE {
                self.cut();
            }
        }
    }

    /// Keeps a line of at most [`MAX_LINE`] octets of the current piece,
    /// which is longer: up to its last space or tab within the limit (the
    /// rest begins with that space or tab, a folded continuation in the
    /// header), else its first 998 octets, the rest after an inserted
    /// space (Postfix's CRLF SPACE). Never where the line kept would be
    /// white space only, nor in a header field's name.
    fn cut(&mut self) {
        let first = self.cuts == 0;
        if first {
            self.out.long_lines = self.out.long_lines.saturating_add(1);
        }
        self.cuts = self.cuts.saturating_add(1);
        let at = break_at(&self.piece, first && self.in_header);
        let kept: Vec<u8> = self.piece.drain(..at.unwrap_or(MAX_LINE)).collect();
        if at.is_none() {
            self.piece.insert(0, b' ');
        }
        self.keep(&kept);
    }

    /// Ends the current piece: keeps what is left of it.
    fn end_piece(&mut self) {
        if self.dot {
            self.piece.push(b'.');
            self.piece_len = 1;
        }
        if self.piece_len > MAX_LINE && !self.split {
            self.out.long_line = true;
            self.out.long_lines = self.out.long_lines.saturating_add(1);
        }
        self.out.longest = self.out.longest.max(self.piece_len);
        let piece = std::mem::take(&mut self.piece);
        self.keep(&piece);
        self.piece = piece;
        self.piece.clear();
        self.started = false;
        self.dot = false;
        self.piece_len = 0;
        self.cuts = 0;
    }

    /// Keeps one line of the message (without its line end).
    fn keep(&mut self, content: &[u8]) {
        if self.in_header {
            if !content.is_empty() {
                self.header_octets += content.len() as u64 + 2;
                if !content.first().is_some_and(|&b| is_wsp(b)) {
                    self.header_fields = self.header_fields.saturating_add(1);
                }
                if self.max < u64::MAX
                    && !self.out.header_too_large
                    && (self.header_octets > MAX_HEADER_OCTETS
                        || self.header_fields > MAX_HEADER_FIELDS)
                {
                    // Refused at the end of data: nothing more is kept.
                    self.out.header_too_large = true;
                    self.out.body = Vec::new();
                }
            }
            if content.is_empty() {
                self.in_header = false;
            } else if crate::check::mime_repair::field_name(content)
                .is_some_and(|name| name.eq_ignore_ascii_case(b"received"))
            {
                // `Received : x` too (RFC 5322 4.5.3; walkAH 8): the
                // checks' reader of field names, so both agree.
                self.out.hops = self.out.hops.saturating_add(1);
            }
        }
        if !self.out.eight_bit && content.iter().any(|&b| b >= 0x80) {
            self.out.eight_bit = true;
        }
        self.out.size += content.len() as u64 + 2;
        if self.out.header_too_large {
            // Only counted, as for an oversize message.
        } else if self.out.size > self.max {
            if !self.out.oversize {
                self.out.oversize = true;
                self.out.body = Vec::new();
            }
        } else {
            self.out.body.extend_from_slice(content);
            self.out.body.extend_from_slice(b"\r\n");
        }
    }

    /// What this assembler does with a line over 998 octets.
    pub fn long_lines(&self) -> LongLines {
        if self.split {
            LongLines::Split
        } else {
            LongLines::Refuse
        }
    }

    /// Octets of message kept so far (after unstuffing).
    pub fn received(&self) -> u64 {
        self.out.size
    }

    pub fn finish(self) -> Assembled {
        self.out
    }
}

/// CRs at the end of `octets`.
fn trailing_crs(octets: &[u8]) -> usize {
    octets.iter().rev().take_while(|&&b| b == b'\r').count()
}

fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Where a line longer than [`MAX_LINE`] is broken at white space: the
/// index of the last space or tab at most [`MAX_LINE`] that leaves
/// something other than white space before it, and, for the first line of
/// a header field, comes after its colon. None: no such place.
fn break_at(line: &[u8], header_field: bool) -> Option<usize> {
    let window = &line[..=MAX_LINE];
    let mut low = window.iter().position(|&b| !is_wsp(b))? + 1;
    if header_field && !is_wsp(line[0]) {
        if let Some(colon) = window.iter().position(|&b| b == b':') {
            low = low.max(colon + 1);
        }
    }
    (low..=MAX_LINE).rev().find(|&i| is_wsp(window[i]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reader's part size in the session.
    const MAX_DATA_PART: usize = 1002;

    fn feed(input: &[u8], max: u64) -> (Assembled, bool) {
        let mut a = Assembler::new(max);
        let mut ended = false;
        for line in input.split_inclusive(|&b| b == b'\n') {
            if a.line(line) {
                ended = true;
                break;
            }
        }
        (a.finish(), ended)
    }

    #[test]
    fn unstuffs_and_ends_on_crlf_dot_crlf() {
        let (m, ended) = feed(b"Subject: x\r\n\r\n..leading dot\r\n.\r\nafter\r\n", 1000);
        assert!(ended);
        assert_eq!(m.body, b"Subject: x\r\n\r\n.leading dot\r\n");
    }

    #[test]
    fn bare_lf_becomes_crlf_and_cannot_end_data() {
        let (m, ended) = feed(b"Subject: x\n\nline\n.\nmore\r\n", 1000);
        assert!(!ended, "LF . LF must not end the data");
        assert_eq!(m.body, b"Subject: x\r\n\r\nline\r\n.\r\nmore\r\n");
        let (_, ended) = feed(b"a\n.\r\n", 1000);
        assert!(!ended, "LF . CRLF must not end the data (SMTP smuggling)");
    }

    /// walkY 1: a bare CR was content to the scanner but a line end to
    /// the next hop. Now it ends a line here too.
    #[test]
    fn bare_cr_ends_a_line_in_the_header_and_the_body() {
        let (m, ended) = feed(
            b"From: a@evil.test\r\nSubject: hi\rFrom: ceo@example.com\rReceived: x\r\n\r\n\
hello\r--BB\rContent-Type: text/plain\r\r--BB--\r\n.\r\n",
            10_000,
        );
        assert!(ended);
        assert_eq!(
            m.body,
            b"From: a@evil.test\r\nSubject: hi\r\nFrom: ceo@example.com\r\nReceived: x\r\n\r\n\
hello\r\n--BB\r\nContent-Type: text/plain\r\n\r\n--BB--\r\n"
                .as_slice()
        );
        assert_eq!(m.hops, 1, "a Received: after a bare CR is a hop");
    }

    #[test]
    fn cr_cr_lf_is_one_line_end_not_an_empty_line() {
        let (m, ended) = feed(
            b"Subject: x\r\r\nTo: b@example.com\r\r\r\n\r\nbody\r\r\n.\r\n",
            1000,
        );
        assert!(ended, "CR CR LF . CR LF holds CR LF . CR LF: the end");
        assert_eq!(m.body, b"Subject: x\r\nTo: b@example.com\r\n\r\nbody\r\n");
    }

    #[test]
    fn a_dot_after_a_bare_cr_or_before_cr_cr_lf_is_content() {
        // CR "." CR LF: not CR LF "." CR LF, so not the end (smuggling).
        let (m, ended) = feed(b"a\r.\r\nMAIL FROM:<x@evil.test>\r\n", 1000);
        assert!(!ended);
        assert_eq!(m.body, b"a\r\n.\r\nMAIL FROM:<x@evil.test>\r\n");
        // "." CR CR LF is not "." CR LF either.
        let (m, ended) = feed(b"a\r\n.\r\r\nb\r\n", 1000);
        assert!(!ended);
        assert_eq!(m.body, b"a\r\n.\r\nb\r\n");
        // "." CR followed by more on the line: a "." line, then the rest.
        let (m, ended) = feed(b"a\r\n.\rQUIT\r\n", 1000);
        assert!(!ended);
        assert_eq!(m.body, b"a\r\n.\r\nQUIT\r\n");
        // After any of them, the real end still ends.
        let (_, ended) = feed(b"a\r.\r\n.\r\n", 1000);
        assert!(ended);
    }

    #[test]
    fn pieces_are_unstuffed_and_measured_one_by_one() {
        let (m, _) = feed(b"a\r..b\r\n.\r\n", 1000);
        assert_eq!(m.body, b"a\r\n.b\r\n");
        let halves = [
            b"x".repeat(600),
            b"\r".to_vec(),
            b"x".repeat(600),
            b"\r\n.\r\n".to_vec(),
        ]
        .concat();
        let (m, _) = feed(&halves, 10_000);
        assert!(!m.long_line, "two lines of 600 octets");
        let long = [b"x".repeat(999), b"\ra\r\n.\r\n".to_vec()].concat();
        let (m, _) = feed(&long, 10_000);
        assert!(m.long_line, "999 octets before a bare CR");
    }

    #[test]
    fn data_ends_after_a_line_the_reader_threw_away() {
        let mut a = Assembler::new(10_000);
        assert!(!a.line(b"Subject: x\r\n"));
        a.too_long(true);
        assert!(a.line(b".\r\n"), "CRLF . CRLF after a long line ends DATA");
        assert!(a.finish().long_line);
        // A long line that ended in a bare LF cannot be followed by the end
        // (SMTP smuggling again).
        let mut a = Assembler::new(10_000);
        a.too_long(false);
        assert!(!a.line(b".\r\n"));
    }

    #[test]
    fn a_header_section_over_its_bounds_is_flagged_and_not_kept() {
        // 10,001 tiny fields: under 1 MiB, over the field bound.
        let mut many = Vec::new();
        for n in 0..=MAX_HEADER_FIELDS {
            many.extend_from_slice(format!("X-H{n}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\nbody\r\n.\r\n");
        let (a, ended) = feed(&many, 64 * 1024 * 1024);
        assert!(ended);
        assert!(a.header_too_large);
        assert!(a.body.is_empty(), "nothing kept once over the bound");
        assert!(!a.oversize);
        // 10,000 fields, folded lines not counted as fields: accepted.
        let mut fine = Vec::new();
        for n in 0..MAX_HEADER_FIELDS {
            fine.extend_from_slice(format!("X-H{n}: v\r\n\tfolded\r\n").as_bytes());
        }
        fine.extend_from_slice(b"\r\nbody\r\n.\r\n");
        let (a, _) = feed(&fine, 64 * 1024 * 1024);
        assert!(!a.header_too_large);
        assert!(a.body.ends_with(b"\r\nbody\r\n"));
        // Over 1 MiB in few fields (folded lines of 900 octets).
        let mut big = b"Subject: x\r\n".to_vec();
        let fold = format!("\t{}\r\n", "y".repeat(900));
        while (big.len() as u64) <= MAX_HEADER_OCTETS {
            big.extend_from_slice(fold.as_bytes());
        }
        big.extend_from_slice(b"\r\nbody\r\n.\r\n");
        let (a, _) = feed(&big, 64 * 1024 * 1024);
        assert!(a.header_too_large);
        // A body of any number of short lines is no header.
        let mut body = b"Subject: x\r\n\r\n".to_vec();
        for n in 0..20_000 {
            body.extend_from_slice(format!("X-H{n}: v\r\n").as_bytes());
        }
        body.extend_from_slice(b".\r\n");
        let (a, _) = feed(&body, 64 * 1024 * 1024);
        assert!(!a.header_too_large);
    }

    #[test]
    fn counts_hops_only_in_the_header() {
        let (m, _) = feed(
            b"Received: a\r\nreceived: b\r\nRECEIVED\t: c\r\nReceived : d\r\nReceivedX: e\r\n\
Subject: s\r\n\r\nReceived: body\r\n.\r\n",
            1000,
        );
        assert_eq!(m.hops, 4);
    }

    #[test]
    fn flags_oversize_long_lines_and_8bit() {
        let (m, _) = feed(b"a\r\nb\r\nc\r\n.\r\n", 5);
        assert!(m.oversize);
        assert!(m.body.is_empty());
        let long = [b"x".repeat(999), b"\r\n.\r\n".to_vec()].concat();
        let (m, ended) = feed(&long, 10_000);
        assert!(m.long_line);
        assert!(ended);
        let (m, _) = feed("caf\u{e9}\r\n.\r\n".as_bytes(), 100);
        assert!(m.eight_bit);
    }

    /// Feeds `input` as the reader hands it over with `Bound::Cut(size)`:
    /// a line longer than `size` octets in parts of `size`, its last part
    /// (with the LF) as a line.
    fn feed_parts(input: &[u8], max: u64, size: usize, mode: LongLines) -> (Assembled, bool) {
        let mut a = Assembler::with_long_lines(max, mode);
        for line in input.split_inclusive(|&b| b == b'\n') {
            let mut rest = line;
            while rest.len() > size {
                a.part(&rest[..size]);
                rest = &rest[size..];
            }
            if a.line(rest) {
                return (a.finish(), true);
            }
        }
        (a.finish(), false)
    }

    /// The lines of a CRLF message, without their line ends.
    fn lines_of(body: &[u8]) -> Vec<&[u8]> {
        let body = body.strip_suffix(b"\r\n").unwrap_or(body);
        body.split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .collect()
    }

    /// A line cut anywhere by the reader, even between the CRs of its end
    /// or right after a leading dot, is the same message as the whole
    /// line: the same unstuffing, line ends, end of data and counts.
    #[test]
    fn a_line_read_in_parts_assembles_as_the_whole_line() {
        let inputs: &[&[u8]] = &[
            b"Subject: x\r\n\r\n..leading dot\r\n.\r\nafter\r\n",
            b"Subject: x\n\nline\n.\nmore\r\n",
            b"From: a@evil.test\r\nSubject: hi\rFrom: ceo@example.com\rReceived: x\r\n\r\n\
hello\r--BB\rContent-Type: text/plain\r\r--BB--\r\n.\r\n",
            b"Subject: x\r\r\nTo: b@example.com\r\r\r\n\r\nbody\r\r\n.\r\n",
            b"a\r.\r\nMAIL FROM:<x@evil.test>\r\n",
            b"a\r\n.\r\r\nb\r\n",
            b"a\r\n.\rQUIT\r\n",
            b"a\r.\r\n.\r\n",
            b"a\r..b\r\n..\r\n.\r\n",
            b"Received: a\r\nreceived: b\r\nRECEIVED\t: c\r\nReceived : d\r\n\r\nReceived: e\r\n.\r\n",
            "caf\u{e9}\r\n\r\r\r\rx\r\r\n.\r\n".as_bytes(),
        ];
        for input in inputs {
            let (whole, ended) = feed(input, 10_000);
            for mode in [LongLines::Refuse, LongLines::Split] {
                for size in (3..=9).chain([1002]) {
                    let (parts, parts_ended) = feed_parts(input, 10_000, size, mode);
                    let what = format!("{:?} in parts of {size}", String::from_utf8_lossy(input));
                    assert_eq!(parts_ended, ended, "{what}");
                    assert_eq!(
                        String::from_utf8_lossy(&parts.body),
                        String::from_utf8_lossy(&whole.body),
                        "{what}"
                    );
                    assert_eq!(
                        (parts.size, parts.hops, parts.eight_bit, parts.long_lines),
                        (whole.size, whole.hops, whole.eight_bit, 0),
                        "{what}"
                    );
                }
            }
        }
    }

    /// limits.long_lines = "split": every line kept is at most 998 octets;
    /// a header field is folded at its white space (unfolded, the same
    /// value), a body line broken at a space or, with none, by CRLF SPACE
    /// at octet 998 as Postfix does.
    #[test]
    fn split_lines_are_998_octets_at_most_and_unfold_to_the_original() {
        let to: String = (0..60)
            .map(|i| format!("user{i:02}@example.com"))
            .collect::<Vec<_>>()
            .join(", ");
        let to = format!("To: {to}");
        assert!(to.len() > 1200, "{}", to.len());
        let words = "word ".repeat(300);
        let words = words.trim_end();
        let xs = "x".repeat(1500);
        let input = format!(
            "Received: from a\r\n{to}\r\nSubject: {xs}\r\n\r\n{xs}\r\n{words}\r\n..{xs}\r\nend\r\n.\r\n"
        );
        let (m, ended) = feed_parts(input.as_bytes(), 100_000, 1002, LongLines::Split);
        assert!(ended, "DATA ends after split lines");
        assert!(!m.long_line, "nothing to refuse");
        assert_eq!(m.long_lines, 5);
        assert_eq!(m.split(), 5);
        assert_eq!(m.hops, 1);
        let lines = lines_of(&m.body);
        assert!(lines.iter().all(|l| l.len() <= MAX_LINE), "{lines:?}");
        let text = String::from_utf8_lossy(&m.body).into_owned();
        let (header, body) = text.split_once("\r\n\r\n").unwrap();
        // Unfolding (RFC 5322 2.2.3) gives back the To: field as sent; the
        // Subject had no white space after its name: CRLF SPACE inserted.
        let unfolded = header.replace("\r\n ", " ").replace("\r\n\t", "\t");
        assert!(unfolded.contains(&format!("\r\n{to}\r\n")), "{header}");
        assert!(!header.contains(&format!("\r\n{to}\r\n")), "folded");
        assert!(
            header.ends_with(&format!("Subject:\r\n {}\r\n {}", &xs[..997], &xs[997..])),
            "{header}"
        );
        let body_lines: Vec<&str> = body.split("\r\n").collect();
        assert_eq!(body_lines[0], &xs[..998]);
        assert_eq!(body_lines[1], format!(" {}", &xs[998..]));
        // The words: broken before a space, nothing added.
        assert_eq!(body_lines[2].len(), 994, "{}", body_lines[2]);
        assert_eq!(format!("{}{}", body_lines[2], body_lines[3]), words);
        // ".." at the start of a long line is a stuffed ".".
        assert_eq!(body_lines[4], format!(".{}", &xs[..997]));
        assert_eq!(body_lines[5], format!(" {}", &xs[997..]));
        assert_eq!(body_lines[6], "end");
        // The same message refused: nothing split, the flag for the 554.
        let (m, ended) = feed(input.as_bytes(), 100_000);
        assert!(ended && m.long_line && m.split() == 0);
        assert_eq!(m.longest, "Subject: ".len() + 1500);
    }

    /// A line of megabytes is never held: at most a line and a part.
    #[test]
    fn a_long_line_in_parts_is_held_in_bounded_memory() {
        let mut a = Assembler::with_long_lines(1 << 30, LongLines::Split);
        assert!(!a.line(b"Subject: big\r\n"));
        assert!(!a.line(b"\r\n"));
        let part = [b'a'; MAX_DATA_PART];
        for _ in 0..10_000 {
            a.part(&part);
            assert!(
                a.piece.capacity() <= 4 * MAX_DATA_PART,
                "{}",
                a.piece.capacity()
            );
        }
        assert!(!a.line(b"b\r\n"));
        // After a long line that ended in CRLF, "." CRLF ends DATA; after
        // one that ended in a bare LF it does not.
        assert!(a.line(b".\r\n"));
        let m = a.finish();
        assert_eq!(m.split(), 1);
        let lines = lines_of(&m.body);
        assert!(lines.iter().all(|l| l.len() <= MAX_LINE));
        assert_eq!(
            lines.iter().skip(2).map(|l| l.len() - 1).sum::<usize>() + 1,
            10_000 * MAX_DATA_PART + 1,
            "every octet is kept, with one space added per line but the first"
        );
        let mut a = Assembler::with_long_lines(1 << 20, LongLines::Split);
        a.part(&part);
        assert!(!a.line(b"\n"));
        assert!(!a.line(b".\r\n"), "LF . CRLF is not the end (smuggling)");
        assert!(a.line(b".\r\n"), "after the \".\" line CRLF, it is");
    }
}
