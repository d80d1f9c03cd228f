//! BinHex 4.0 (`.hqx`, `application/mac-binhex40`): a Macintosh file as
//! text, which Apple Mail, StuffIt and Python's old `binhex` decode. A
//! line `(This file must be converted with BinHex 4.0)`, then the data
//! between two colons in a 64-character alphabet, run-length encoded
//! (`0x90`), holding a header (name, type, creator, the lengths of the two
//! forks), the data fork and the resource fork, each followed by its
//! CRC-16 (XMODEM).

/// The line that announces BinHex 4.0 (up to its version).
const BANNER: &[u8] = b"(This file must be converted with BinHex";

/// The 64 characters, in value order.
const ALPHABET: &[u8; 64] = b"!\"#$%&'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr";

/// One file decoded from BinHex.
#[derive(Debug, PartialEq, Eq)]
pub struct HqxFile {
    pub name: String,
    pub data: Vec<u8>,
    pub resource: Vec<u8>,
    /// What was wrong, when something was (a CRC that does not match, the
    /// text cut short): the forks hold what could be decoded.
    pub problem: Option<String>,
}

/// Where the encoded data of `text` starts (after its first `:`), when
/// `text` holds BinHex: after the banner line, or at the start of the text
/// (white space aside) when the header found there passes its CRC.
pub fn start(text: &[u8]) -> Option<usize> {
    if let Some(b) = super::find(text, BANNER, 0) {
        return super::find(text, b":", b + BANNER.len()).map(|c| c + 1);
    }
    let lead = text.len() - text.trim_ascii_start().len();
    if text.get(lead) != Some(&b':') {
        return None;
    }
    // No banner: only a header whose CRC holds makes it BinHex.
    let head = expand(&sextets(&text[lead + 1..], 400).0, 300);
    header(&head).filter(|h| h.crc_ok).map(|_| lead + 1)
}

/// Decodes the BinHex in `text` (None: there is none), keeping at most
/// `limit` decoded octets (the budget); `Err` names the limit.
pub fn decode(text: &[u8], limit: u64) -> Option<Result<HqxFile, String>> {
    let at = start(text)?;
    let (packed, ended) = sextets(&text[at..], usize::MAX);
    let cap = usize::try_from(limit)
        .unwrap_or(usize::MAX)
        .saturating_add(512);
    let plain = expand(&packed, cap);
    if plain.len() >= cap {
        return Some(Err("the BinHex data unpacks to more than the budget".into()));
    }
    let Some(h) = header(&plain) else {
        return Some(Ok(HqxFile {
            name: "binhex".into(),
            data: Vec::new(),
            resource: Vec::new(),
            problem: Some("no BinHex header could be read".into()),
        }));
    };
    let mut problem = (!h.crc_ok).then(|| "the header's CRC does not match".to_string());
    let mut fork = |from: usize, len: usize, what: &str| -> (Vec<u8>, usize) {
        let end = from.saturating_add(len).min(plain.len());
        let data = plain.get(from..end).unwrap_or_default().to_vec();
        let crc_at = from.saturating_add(len);
        let told = plain
            .get(crc_at..crc_at.saturating_add(2))
            .map(|b| u16::from_be_bytes([b[0], b[1]]));
        if problem.is_none() {
            if data.len() < len || told.is_none() {
                problem = Some(format!("the {what} is cut short"));
            } else if !told.is_some_and(|t| crc_matches(&data, t)) {
                problem = Some(format!("the {what}'s CRC does not match"));
            }
        }
        (data, crc_at.saturating_add(2))
    };
    let (data, next) = fork(h.size, h.data_len, "data fork");
    let (resource, _) = fork(next, h.resource_len, "resource fork");
    if problem.is_none() && !ended {
        problem = Some("the closing ':' is missing".into());
    }
    Some(Ok(HqxFile {
        name: h.name,
        data,
        resource,
        problem,
    }))
}

/// The BinHex header at the start of decoded `plain`.
struct Header {
    name: String,
    /// Its length, with its CRC.
    size: usize,
    data_len: usize,
    resource_len: usize,
    crc_ok: bool,
}

fn header(plain: &[u8]) -> Option<Header> {
    let n = usize::from(*plain.first()?);
    if n == 0 || n > 63 {
        return None;
    }
    // Length, name, version, type, creator, flags, two fork lengths.
    let end = 1 + n + 1 + 4 + 4 + 2 + 4 + 4;
    let h = plain.get(..end + 2)?;
    let word = |i: usize| u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]) as usize;
    Some(Header {
        name: String::from_utf8_lossy(&h[1..1 + n]).into_owned(),
        size: end + 2,
        data_len: word(end - 8),
        resource_len: word(end - 4),
        crc_ok: crc_matches(&h[..end], u16::from_be_bytes([h[end], h[end + 1]])),
    })
}

/// The octets the 6-bit characters of `text` give, up to the closing `:`
/// or `max` characters; line ends and white space are skipped, as
/// decoders do; true when the closing `:` was found.
fn sextets(text: &[u8], max: usize) -> (Vec<u8>, bool) {
    let mut out = Vec::with_capacity(text.len().min(max) * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in text.iter().take(max) {
        if c == b':' {
            return (out, true);
        }
        let Some(v) = ALPHABET.iter().position(|&a| a == c) else {
            continue;
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    (out, false)
}

/// Undoes the run-length encoding: `c 0x90 n` is `c` n times in all,
/// `0x90 0x00` a literal `0x90`; at most `cap` octets.
fn expand(packed: &[u8], cap: usize) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::with_capacity(packed.len().min(cap));
    let mut i = 0;
    while i < packed.len() && out.len() < cap {
        let c = packed[i];
        if c == 0x90 {
            match packed.get(i + 1) {
                Some(0) => out.push(0x90),
                Some(&n) => {
                    if let Some(&last) = out.last() {
                        let more = (usize::from(n) - 1).min(cap - out.len());
                        out.extend(std::iter::repeat_n(last, more));
                    }
                }
                None => {}
            }
            i += 2;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Whether `told` is the CRC of `data`: as Python's `binhex` and most
/// decoders compute it, or over the data and two zero octets, as some
/// encoders do (the walkAJ sample was written so).
fn crc_matches(data: &[u8], told: u16) -> bool {
    crc16(data) == told || crc16_more(crc16(data), &[0, 0]) == told
}

/// CRC-16 as BinHex computes it (XMODEM: polynomial 0x1021, start 0).
fn crc16(data: &[u8]) -> u16 {
    crc16_more(0, data)
}

/// Goes on with CRC `crc` over `data`.
fn crc16_more(mut crc: u16, data: &[u8]) -> u16 {
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    /// BinHex of `data` named `name`, as `binhex` wrote it (RLE of 0x90
    /// only, 64 characters a line).
    pub(crate) fn encode(name: &[u8], data: &[u8]) -> Vec<u8> {
        let mut h = vec![name.len() as u8];
        h.extend_from_slice(name);
        h.extend_from_slice(b"\0TEXTttxt\0\0");
        h.extend_from_slice(&(data.len() as u32).to_be_bytes());
        h.extend_from_slice(&0u32.to_be_bytes());
        let mut s = h.clone();
        s.extend_from_slice(&crc16(&h).to_be_bytes());
        s.extend_from_slice(data);
        s.extend_from_slice(&crc16(data).to_be_bytes());
        s.extend_from_slice(&crc16(b"").to_be_bytes());
        let mut rle = Vec::new();
        for b in s {
            rle.push(b);
            if b == 0x90 {
                rle.push(0);
            }
        }
        let mut chars = Vec::new();
        for chunk in rle.chunks(3) {
            let mut g = [0u8; 3];
            g[..chunk.len()].copy_from_slice(chunk);
            let v = u32::from_be_bytes([0, g[0], g[1], g[2]]);
            let n = (chunk.len() * 8).div_ceil(6);
            for k in 0..n {
                chars.push(ALPHABET[((v >> (18 - 6 * k)) & 63) as usize]);
            }
        }
        let mut out = b"(This file must be converted with BinHex 4.0)\n\n:".to_vec();
        for line in chars.chunks(63) {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        out.pop();
        out.extend_from_slice(b":\n");
        out
    }

    #[test]
    fn decodes_what_binhex_wrote() {
        let data = b"X5O!P%@AP \x90\x90\x90 and a run: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".to_vec();
        let text = [b"look at this:\n".as_slice(), &encode(b"e.com", &data)].concat();
        let f = decode(&text, 1 << 20).unwrap().unwrap();
        assert_eq!(
            (f.name.as_str(), f.data.as_slice(), f.problem),
            ("e.com", data.as_slice(), None)
        );
        // Without the banner, at the start of the text: found by its CRC.
        let bare = &encode(b"e.com", &data)[47..];
        assert!(bare.starts_with(b":"));
        assert_eq!(decode(bare, 1 << 20).unwrap().unwrap().data, data);
        // A colon at the start of an ordinary text is not BinHex.
        assert_eq!(start(b":-) see you"), None);
        assert!(decode(b"plain text", 1 << 20).is_none());
    }

    #[test]
    fn run_lengths_expand_and_damage_is_said() {
        assert_eq!(expand(&[b'a', 0x90, 5, 0x90, 0, b'b'], 100), b"aaaaa\x90b");
        assert_eq!(expand(&[b'a', 0x90, 255, 0x90, 255], 10).len(), 10);
        let mut text = encode(b"e.com", b"hello world, this is the data fork");
        let at = text.len() - 8;
        text[at] = if text[at] == b'A' { b'B' } else { b'A' };
        let f = decode(&text, 1 << 20).unwrap().unwrap();
        assert!(f.problem.is_some(), "{f:?}");
        let cut = &text[..60];
        let f = decode(cut, 1 << 20).unwrap().unwrap();
        assert!(f.problem.is_some(), "{f:?}");
    }
}
