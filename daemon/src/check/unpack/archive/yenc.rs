//! yEnc (`=ybegin` ... `=yend`), the binary encoding of Usenet: each octet
//! plus 42, with `=` escaping the few that may not stand in a line (the
//! escaped octet plus 64). Newsreaders and some mail clients decode it.

/// One file decoded from a yEnc block.
#[derive(Debug, PartialEq, Eq)]
pub struct YencFile {
    pub name: String,
    pub data: Vec<u8>,
    /// What was wrong (a CRC or size that does not match): the data holds
    /// what was decoded.
    pub problem: Option<String>,
}

/// Whether `text` holds a yEnc block: a line that starts `=ybegin `.
pub fn holds(text: &[u8]) -> bool {
    begin_lines(text).next().is_some()
}

/// Where each `=ybegin ` line starts.
fn begin_lines(text: &[u8]) -> impl Iterator<Item = usize> + '_ {
    let mut from = 0;
    std::iter::from_fn(move || loop {
        let p = super::find(text, b"=ybegin ", from)?;
        from = p + 1;
        if p == 0 || text[p - 1] == b'\n' {
            return Some(p);
        }
    })
}

/// The value of `key=` in a yEnc keyword line (`name=` is the rest of the
/// line, spaces and all).
fn param<'a>(line: &'a [u8], key: &str) -> Option<&'a [u8]> {
    let key = format!(" {key}=");
    let at = super::find(line, key.as_bytes(), 0)? + key.len();
    let rest = &line[at..];
    if key == " name=" {
        return Some(rest.trim_ascii());
    }
    Some(
        rest.split(|&b| b == b' ')
            .next()
            .unwrap_or(rest)
            .trim_ascii(),
    )
}

/// The number in `key=` of a yEnc keyword line.
fn number(line: &[u8], key: &str) -> Option<u64> {
    std::str::from_utf8(param(line, key)?).ok()?.parse().ok()
}

/// Whether a block is plausibly a yEnc file, and not a text that quotes
/// a yEnc header (`=ybegin line=128 size=19338 name=joystick.jpg`, a line
/// of prose, `=yend ...`: walkAL 3): it decodes to the size its header
/// (or its `=ypart` range, or its `=yend`) declares, or a data line is
/// as long as the `line=` its header declares (an encoder writes every
/// line but the last that long; an escape at the end may add one).
fn plausible(
    first: &[u8],
    part: Option<&[u8]>,
    end: Option<&[u8]>,
    body: &[&[u8]],
    decoded: &[usize],
) -> bool {
    let part_size = part.and_then(|p| {
        let (begin, end) = (number(p, "begin")?, number(p, "end")?);
        end.checked_sub(begin).map(|d| d + 1)
    });
    let sizes = [
        number(first, "size"),
        part_size,
        end.and_then(|e| number(e, "size")),
    ];
    if sizes
        .iter()
        .flatten()
        .any(|&s| decoded.iter().any(|&d| d as u64 == s))
    {
        return true;
    }
    number(first, "line")
        .filter(|&l| l > 0)
        .is_some_and(|l| body.iter().any(|b| b.len() as u64 >= l))
}

/// Every yEnc block of `text`, decoded. A block without `=yend` is decoded
/// to where the text stops. A block that is not plausibly a file
/// ([`plausible`]) is decoded and scanned all the same, but its CRC and
/// its missing `=yend` are no damage: it is text.
pub fn find(text: &[u8]) -> Vec<YencFile> {
    let mut out = Vec::new();
    for p in begin_lines(text) {
        let mut lines = text[p..]
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
        let Some(first) = lines.next() else { continue };
        let name = param(first, "name")
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "yenc".into());
        let mut body: Vec<&[u8]> = Vec::new();
        let mut end_line: Option<&[u8]> = None;
        let mut part_line: Option<&[u8]> = None;
        for line in lines {
            if line.starts_with(b"=yend") {
                end_line = Some(line);
                break;
            }
            if line.starts_with(b"=ypart") {
                part_line = part_line.or(Some(line));
                continue;
            }
            if line.starts_with(b"=ybegin ") {
                continue;
            }
            body.push(line);
        }
        let data = decode_lines(body.iter().copied());
        // (As UTF-8 text, each octet written as a Latin-1 character, it
        // is longer than it decodes to: see below.)
        let lengths = [data.len(), latin1(&body).map_or(0, |l| l.len())];
        if !plausible(first, part_line, end_line, &body, &lengths) {
            out.push(YencFile {
                name,
                data,
                problem: None,
            });
            continue;
        }
        let crc = end_line
            .and_then(|l| param(l, "pcrc32").or_else(|| param(l, "crc32")))
            .and_then(|c| std::str::from_utf8(c).ok())
            .and_then(|c| u32::from_str_radix(c, 16).ok());
        let (data, problem) = match crc {
            Some(want) if crc32(&data) != want => {
                // Written as UTF-8 by a program that took the octets for
                // Latin-1 characters (a mail client may show it so): read
                // back as Latin-1, it may be the file.
                match latin1(&body) {
                    Some(again) if crc32(&again) == want => (again, None),
                    _ => (data, Some(format!("{name}: the yEnc CRC does not match"))),
                }
            }
            _ if end_line.is_none() => (data, Some(format!("{name}: the yEnc block has no =yend"))),
            _ => (data, None),
        };
        out.push(YencFile {
            name,
            data,
            problem,
        });
    }
    out
}

fn decode_lines<'a>(lines: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for line in lines {
        let mut bytes = line.iter();
        while let Some(&b) = bytes.next() {
            if b == b'=' {
                if let Some(&e) = bytes.next() {
                    out.push(e.wrapping_sub(64).wrapping_sub(42));
                }
            } else {
                out.push(b.wrapping_sub(42));
            }
        }
    }
    out
}

/// The block's lines decoded after reading them as UTF-8 text and writing
/// each character back as one Latin-1 octet (None: not such text).
fn latin1(body: &[&[u8]]) -> Option<Vec<u8>> {
    let mut lines = Vec::with_capacity(body.len());
    for l in body {
        let text = std::str::from_utf8(l).ok()?;
        let octets: Option<Vec<u8>> = text
            .chars()
            .map(|c| u8::try_from(u32::from(c)).ok())
            .collect();
        lines.push(octets?);
    }
    Some(decode_lines(lines.iter().map(Vec::as_slice)))
}

/// CRC-32 (IEEE), as yEnc's `crc32=` gives it.
fn crc32(data: &[u8]) -> u32 {
    let mut h = flate2::Crc::new();
    h.update(data);
    h.sum()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// yEnc of `data` named `name`, as a poster writes it (each octet
    /// plus 42, `=` escaping, the CRC-32 in `=yend`); CRLF line ends.
    pub(crate) fn encode(name: &str, data: &[u8]) -> Vec<u8> {
        let mut out = format!("=ybegin line=128 size={} name={name}\r\n", data.len()).into_bytes();
        for &c in data {
            let o = c.wrapping_add(42);
            if matches!(o, 0 | b'\n' | b'\r' | b'=') {
                out.extend_from_slice(&[b'=', o.wrapping_add(64)]);
            } else {
                out.push(o);
            }
        }
        out.extend_from_slice(
            format!(
                "\r\n=yend size={} crc32={:08x}\r\n",
                data.len(),
                crc32(data)
            )
            .as_bytes(),
        );
        out
    }

    #[test]
    fn decodes_a_block_and_checks_its_crc() {
        let data: Vec<u8> = (0..=255u8).chain(b"X5O!P%@AP".iter().copied()).collect();
        let text = [
            b"look:\r\n".as_slice(),
            &encode("my file.com", &data),
            b"bye\r\n",
        ]
        .concat();
        assert!(holds(&text));
        assert_eq!(
            find(&text),
            [YencFile {
                name: "my file.com".into(),
                data: data.clone(),
                problem: None
            }]
        );
        // Sent as UTF-8 text: found as the file all the same.
        let utf8: String = encode("e.com", b"X5O!P%@AP")
            .iter()
            .map(|&b| b as char)
            .collect();
        let f = find(utf8.as_bytes());
        assert_eq!(
            (f[0].data.as_slice(), &f[0].problem),
            (b"X5O!P%@AP".as_slice(), &None)
        );
        // Damaged: decoded all the same, and said.
        let mut bad = encode("e.com", b"hello");
        bad[40] ^= 1;
        assert!(find(&bad)[0].problem.is_some());
        assert!(!holds(b"text with =ybegin in the middle of a line"));
    }
}
