//! Test messages put together in code, so that a test says in one line
//! what it sends and the bytes on the wire are exactly known: a
//! multipart/mixed message of text parts, attachments (base64,
//! quoted-printable, or as they are) and forwarded messages, and the
//! encodings themselves (base64, quoted-printable, uuencode). Lines end in
//! CRLF. It knows nothing about scanning: what goes into a part is the
//! test's business.

use std::fmt::Write as _;

/// How a part's bytes are written into the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `Content-Transfer-Encoding: base64`, 76 characters a line.
    Base64,
    /// `Content-Transfer-Encoding: quoted-printable`, every byte but
    /// letters and digits encoded, with soft line breaks.
    QuotedPrintable,
    /// As they are (`7bit`); the bytes must be lines of text.
    SevenBit,
}

/// One leaf part of a multipart message.
#[derive(Debug, Clone)]
pub struct Part {
    /// The `Content-Type` value without the name, e.g. `application/zip`.
    pub content_type: String,
    /// The attachment's file name (`Content-Disposition: attachment`);
    /// None for an inline body part.
    pub filename: Option<String>,
    pub encoding: Encoding,
    /// The bytes before encoding.
    pub data: Vec<u8>,
}

impl Part {
    /// An inline `text/plain` body part, as it is.
    pub fn text(body: &str) -> Part {
        Part {
            content_type: "text/plain; charset=us-ascii".into(),
            filename: None,
            encoding: Encoding::SevenBit,
            data: body.as_bytes().to_vec(),
        }
    }

    /// A base64 attachment.
    pub fn attachment(filename: &str, content_type: &str, data: &[u8]) -> Part {
        Part {
            content_type: content_type.into(),
            filename: Some(filename.into()),
            encoding: Encoding::Base64,
            data: data.to_vec(),
        }
    }

    /// The same part with another transfer encoding.
    pub fn encoded(self, encoding: Encoding) -> Part {
        Part { encoding, ..self }
    }

    /// A forwarded message: a `message/rfc822` attachment, as it is.
    pub fn message(filename: &str, message: &[u8]) -> Part {
        Part {
            content_type: "message/rfc822".into(),
            filename: Some(filename.into()),
            encoding: Encoding::SevenBit,
            data: message.to_vec(),
        }
    }

    /// The part with its header, without the delimiter line before it.
    pub fn render(&self) -> Vec<u8> {
        let mut out = String::new();
        match &self.filename {
            Some(name) => {
                let _ = write!(
                    out,
                    "Content-Type: {}; name=\"{name}\"\r\n\
                     Content-Disposition: attachment; filename=\"{name}\"\r\n",
                    self.content_type
                );
            }
            None => {
                let _ = write!(
                    out,
                    "Content-Type: {}\r\nContent-Disposition: inline\r\n",
                    self.content_type
                );
            }
        }
        let (cte, body) = match self.encoding {
            Encoding::Base64 => ("base64", base64(&self.data).into_bytes()),
            Encoding::QuotedPrintable => (
                "quoted-printable",
                quoted_printable(&self.data).into_bytes(),
            ),
            Encoding::SevenBit => ("7bit", self.data.clone()),
        };
        // A message/rfc822 part may only be 7bit, 8bit or binary; 7bit is
        // also the default, so it is written only for the other types.
        if self.encoding != Encoding::SevenBit || !self.content_type.starts_with("message/") {
            let _ = write!(out, "Content-Transfer-Encoding: {cte}\r\n");
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&body);
        if !bytes.ends_with(b"\r\n") {
            bytes.extend_from_slice(b"\r\n");
        }
        bytes
    }
}

/// The header of a test message from alice@sender.test to bob@example.com,
/// up to and including `MIME-Version`, without the empty line.
pub fn header(subject: &str) -> String {
    let id: String = subject
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!(
        "From: Alice <alice@sender.test>\r\nTo: Bob <bob@example.com>\r\n\
         Subject: {subject}\r\nDate: Tue, 24 Nov 2026 08:00:00 +0000\r\n\
         Message-ID: <{id}@sender.test>\r\nMIME-Version: 1.0\r\n"
    )
}

/// A multipart/mixed message of `parts` with delimiter `boundary`.
pub fn multipart(subject: &str, boundary: &str, parts: &[Part]) -> Vec<u8> {
    let mut out = format!(
        "{}Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n\
         This is a multi-part message in MIME format.\r\n",
        header(subject)
    )
    .into_bytes();
    for part in parts {
        out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        out.extend_from_slice(&part.render());
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}

/// A message that is one part: `part`'s content headers and body right
/// below the message header.
pub fn single(subject: &str, part: &Part) -> Vec<u8> {
    let mut out = header(subject).into_bytes();
    out.extend_from_slice(&part.render());
    out
}

/// Base64 in lines of 76 characters, each ending in CRLF.
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len() * 4 / 3 + data.len() / 38 + 4);
    for (n, chunk) in data.chunks(3).enumerate() {
        if n > 0 && n % 19 == 0 {
            out.push_str("\r\n");
        }
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((v >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out.push_str("\r\n");
    out
}

/// Quoted-printable with every byte but ASCII letters and digits written
/// as `=XX`, and a soft line break every 60 characters or so: nothing of
/// the original survives as a run of more than a few characters.
pub fn quoted_printable(data: &[u8]) -> String {
    let mut out = String::new();
    let mut line = 0;
    for &b in data {
        if line >= 60 {
            out.push_str("=\r\n");
            line = 0;
        }
        if b.is_ascii_alphanumeric() {
            out.push(b as char);
            line += 1;
        } else {
            let _ = write!(out, "={b:02X}");
            line += 3;
        }
    }
    out.push_str("\r\n");
    out
}

/// A uuencoded block (`begin 644 NAME` ... `end`) with CRLF line ends.
pub fn uuencode(name: &str, data: &[u8]) -> String {
    let enc = |v: u8| if v == 0 { '`' } else { (v + b' ') as char };
    let mut out = format!("begin 644 {name}\r\n");
    for line in data.chunks(45) {
        out.push(enc(line.len() as u8));
        for g in line.chunks(3) {
            let b = [g[0], *g.get(1).unwrap_or(&0), *g.get(2).unwrap_or(&0)];
            out.push(enc(b[0] >> 2));
            out.push(enc(((b[0] << 4) | (b[1] >> 4)) & 0x3f));
            out.push(enc(((b[1] << 2) | (b[2] >> 6)) & 0x3f));
            out.push(enc(b[2] & 0x3f));
        }
        out.push_str("\r\n");
    }
    out.push_str("`\r\nend\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        assert_eq!(base64(b"Cat"), "Q2F0\r\n");
        assert_eq!(base64(b"Ca"), "Q2E=\r\n");
        assert_eq!(base64(&[0u8; 57]).lines().next().unwrap().len(), 76);
        assert_eq!(quoted_printable(b"a=b c"), "a=3Db=20c\r\n");
        // The classic example: "Cat" is "#0V%T".
        assert_eq!(
            uuencode("c", b"Cat"),
            "begin 644 c\r\n#0V%T\r\n`\r\nend\r\n"
        );
    }

    #[test]
    fn a_multipart_message() {
        let msg = multipart(
            "two parts",
            "BB",
            &[
                Part::text("Hello\r\n"),
                Part::attachment("a.bin", "application/octet-stream", b"Cat"),
            ],
        );
        let text = String::from_utf8(msg).unwrap();
        assert!(text.starts_with("From: Alice <alice@sender.test>\r\n"));
        assert!(text.contains("boundary=\"BB\"\r\n\r\n"));
        assert!(text.contains(
            "--BB\r\nContent-Type: application/octet-stream; name=\"a.bin\"\r\n\
             Content-Disposition: attachment; filename=\"a.bin\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\nQ2F0\r\n--BB--\r\n"
        ));
    }
}
