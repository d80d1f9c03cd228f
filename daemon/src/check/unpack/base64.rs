//! Base64 as RFC 2045 section 6.8 tells a decoder to read it: characters
//! outside the alphabet (line ends, but also a stray `.` or `!`) are
//! ignored, and a body whose last group lacks its `=` padding still gives
//! its last bytes. mail-parser's decoder gives up at the first such
//! character; a client decodes on, so the scanner must too.

/// The value of one base64 character (None: not in the alphabet).
fn value(c: u8) -> Option<u32> {
    match c {
        b'A'..=b'Z' => Some(u32::from(c - b'A')),
        b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
        b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Decodes `data`. Padding ends a group, and the data after it is decoded
/// as new groups (a decoder that stopped there would show less than the
/// scanner is given to look at, never more).
pub fn decode(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 4 * 3 + 3);
    let mut acc: u32 = 0;
    let mut n = 0;
    for &c in data {
        if c == b'=' {
            flush(&mut out, acc, n);
            (acc, n) = (0, 0);
            continue;
        }
        let Some(v) = value(c) else { continue };
        acc = (acc << 6) | v;
        n += 1;
        if n == 4 {
            out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
            (acc, n) = (0, 0);
        }
    }
    flush(&mut out, acc, n);
    out
}

/// The bytes of a group cut short after `n` characters (one character
/// holds no whole byte).
fn flush(out: &mut Vec<u8>, acc: u32, n: u32) {
    match n {
        2 => out.push((acc >> 4) as u8),
        3 => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn characters_outside_the_alphabet_are_ignored_and_padding_may_be_missing() {
        assert_eq!(decode(b"QUJD\r\nREVG"), b"ABCDEF");
        assert_eq!(decode(b"QUJD.RE!!**VG"), b"ABCDEF");
        assert_eq!(decode(b"QUJDRA=="), b"ABCD");
        assert_eq!(decode(b"QUJDRA"), b"ABCD");
        assert_eq!(decode(b"QUJDREU"), b"ABCDE");
        assert_eq!(decode(b"QQ==QkM="), b"ABC");
        assert_eq!(decode(b"Q"), b"");
        assert_eq!(decode(b""), b"");
    }
}
