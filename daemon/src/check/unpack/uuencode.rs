//! uuencoded files inside text bodies (`begin 644 name` ... `end`), which
//! old mailers and some malware still send. mail-parser does not decode
//! them, so the scanner finds and decodes them here.

/// One uuencoded file found in a text.
#[derive(Debug, PartialEq, Eq)]
pub struct UuFile {
    pub name: String,
    pub data: Vec<u8>,
}

/// Every `begin MODE NAME` block of `text`, decoded. A block without its
/// `end` line is decoded up to where the text stops (a truncated file is
/// still scanned). Lines that are not valid uuencode are skipped.
pub fn find(text: &[u8]) -> Vec<UuFile> {
    let mut out = Vec::new();
    let mut lines = text
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    while let Some(line) = lines.next() {
        let Some(name) = begin_line(line) else {
            continue;
        };
        let mut data = Vec::new();
        for l in lines.by_ref() {
            if l == b"end" {
                break;
            }
            decode_line(l, &mut data);
        }
        out.push(UuFile { name, data });
    }
    out
}

/// `begin 644 name.exe` -> "name.exe".
fn begin_line(line: &[u8]) -> Option<String> {
    let rest = line.strip_prefix(b"begin ")?;
    let text = std::str::from_utf8(rest).ok()?;
    let (mode, name) = text.trim().split_once(' ')?;
    if mode.is_empty() || !mode.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    Some(name.trim().to_string())
}

/// Decodes one line: a length character, then groups of four characters
/// holding three bytes each.
fn decode_line(line: &[u8], out: &mut Vec<u8>) {
    let Some((&len_char, body)) = line.split_first() else {
        return;
    };
    let val = |c: u8| c.wrapping_sub(b' ') & 0x3f;
    let len = val(len_char) as usize;
    if len == 0 || body.len() < len.div_ceil(3) * 4 {
        return;
    }
    let start = out.len();
    for group in body.chunks(4).take(len.div_ceil(3)) {
        let mut g = [0u8; 4];
        for (i, c) in group.iter().enumerate() {
            g[i] = val(*c);
        }
        out.push((g[0] << 2) | (g[1] >> 4));
        out.push((g[1] << 4) | (g[2] >> 2));
        out.push((g[2] << 6) | g[3]);
    }
    out.truncate(start + len);
}

/// Encodes `data` as a uuencoded block (for tests and for symmetry).
#[cfg(test)]
pub fn encode(name: &str, data: &[u8]) -> String {
    let enc = |v: u8| if v == 0 { '`' } else { (v + b' ') as char };
    let mut s = format!("begin 644 {name}\n");
    for line in data.chunks(45) {
        s.push(enc(line.len() as u8));
        for g in line.chunks(3) {
            let b = [g[0], *g.get(1).unwrap_or(&0), *g.get(2).unwrap_or(&0)];
            s.push(enc(b[0] >> 2));
            s.push(enc(((b[0] << 4) | (b[1] >> 4)) & 0x3f));
            s.push(enc(((b[1] << 2) | (b[2] >> 6)) & 0x3f));
            s.push(enc(b[2] & 0x3f));
        }
        s.push('\n');
    }
    s.push_str("`\nend\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_inside_a_text() {
        let payload: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let text = format!(
            "Hello,\r\nsee below.\r\n\r\n{}\r\nBye\r\n",
            encode("x.bin", &payload).replace('\n', "\r\n")
        );
        let found = find(text.as_bytes());
        assert_eq!(
            found,
            vec![UuFile {
                name: "x.bin".into(),
                data: payload
            }]
        );
    }

    #[test]
    fn known_vector() {
        // "Cat" in the classic uuencode example.
        let found = find(b"begin 644 cat.txt\n#0V%T\n`\nend\n");
        assert_eq!(found[0].data, b"Cat");
    }

    #[test]
    fn garbage_is_not_a_file_and_never_panics() {
        assert!(find(b"begin here the story\nM\xff\xfe\nend\n").is_empty());
        let f = find(b"begin 600 t\nM\n\xff\nMMMM\n");
        assert_eq!(f.len(), 1);
    }
}
