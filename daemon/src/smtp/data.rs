//! Assembly of the message from the lines of DATA: end-of-data detection,
//! dot-unstuffing, line-end normalisation (bare LF and bare CR become
//! CRLF), and the facts the session checks before it accepts (size,
//! over-long lines, hop count, 8-bit content).
//! Pure: the session feeds lines, this decides nothing about replies.

/// Longest line RFC 5322 2.1.1 allows, without its CRLF.
pub const MAX_LINE: usize = 998;

/// What DATA produced.
#[derive(Debug)]
pub struct Assembled {
    /// The message with CRLF line ends, as it will be spooled (without our
    /// Received header, which the session puts in front).
    pub body: Vec<u8>,
    /// Octets the client sent (after unstuffing, with CRLF line ends).
    pub size: u64,
    /// More than the size limit: the body was not kept.
    pub oversize: bool,
    /// A line was longer than 998 octets.
    pub long_line: bool,
    /// `Received:` header fields in the header section.
    pub hops: u32,
    /// Octets above 127 anywhere.
    pub eight_bit: bool,
}

pub struct Assembler {
    out: Assembled,
    max: u64,
    in_header: bool,
    /// The previous line ended in CRLF (CRs then LF) or DATA just began:
    /// only then can "." CRLF end the data. A bare LF or a bare CR before
    /// "." does not: accepting LF "." CRLF or CR "." CRLF as the end is
    /// what SMTP smuggling exploits.
    prev_crlf: bool,
}

impl Assembler {
    pub fn new(max_size: u64) -> Assembler {
        Assembler {
            out: Assembled {
                body: Vec::with_capacity(8192),
                size: 0,
                oversize: false,
                long_line: false,
                hops: 0,
                eight_bit: false,
            },
            max: max_size,
            in_header: true,
            prev_crlf: true,
        }
    }

    /// Notes a line the reader threw away for its length (the message will
    /// be refused, but DATA must still end where the client ends it: after
    /// an over-long line that ended in CRLF, "." CRLF is the end).
    pub fn too_long(&mut self, crlf: bool) {
        self.out.long_line = true;
        self.prev_crlf = crlf;
    }

    /// Feeds one line as read (terminator included). Returns true at the
    /// end of data.
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
        if raw == b".\r\n" && self.prev_crlf {
            return true;
        }
        let (content, crlf) = match raw.strip_suffix(b"\n") {
            Some(c) => {
                let kept = c.len() - c.iter().rev().take_while(|&&b| b == b'\r').count();
                (&c[..kept], kept < c.len())
            }
            None => (raw, false),
        };
        self.prev_crlf = crlf;
        for piece in content.split(|&b| b == b'\r') {
            self.piece(piece);
        }
        false
    }

    /// Keeps one line of the message (without its line end).
    fn piece(&mut self, content: &[u8]) {
        let content = match content.strip_prefix(b".") {
            Some(rest) if !rest.is_empty() => rest,
            _ => content,
        };
        if content.len() > MAX_LINE {
            self.out.long_line = true;
        }
        if self.in_header {
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
        if self.out.size > self.max {
            if !self.out.oversize {
                self.out.oversize = true;
                self.out.body = Vec::new();
            }
        } else {
            self.out.body.extend_from_slice(content);
            self.out.body.extend_from_slice(b"\r\n");
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
