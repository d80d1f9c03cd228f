//! Assembly of the message from the lines of DATA: end-of-data detection,
//! dot-unstuffing, line-end normalisation, and the facts the session checks
//! before it accepts (size, over-long lines, hop count, 8-bit content).
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
    /// The previous line ended in CRLF (or DATA just began): only then can
    /// "." CRLF end the data. A bare LF before "." does not: accepting
    /// LF "." CRLF as the end is what SMTP smuggling exploits.
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
    pub fn line(&mut self, raw: &[u8]) -> bool {
        let (content, crlf) = if let Some(c) = raw.strip_suffix(b"\r\n") {
            (c, true)
        } else if let Some(c) = raw.strip_suffix(b"\n") {
            (c, false)
        } else {
            (raw, false)
        };
        if crlf && self.prev_crlf && content == b"." {
            return true;
        }
        self.prev_crlf = crlf;
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
            } else if content.len() >= 9 && content[..9].eq_ignore_ascii_case(b"received:") {
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
        false
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
            b"Received: a\r\nreceived: b\r\nSubject: s\r\n\r\nReceived: body\r\n.\r\n",
            1000,
        );
        assert_eq!(m.hops, 2);
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
