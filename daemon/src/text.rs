//! Small text helpers the protocol code shares, so that each exists once:
//! RFC 3461 xtext (ENVID, ORCPT), the ASCII sanitiser for what goes into
//! headers, notices and reports, and a cut on a character boundary.

use std::fmt::Write as _;

/// RFC 3461 4: "+HH" for every octet outside `!`..`~`, and for `+` and `=`.
pub fn xtext_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if (33..=126).contains(&b) && b != b'+' && b != b'=' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "+{b:02X}");
        }
    }
    out
}

/// Whether `value` is valid xtext: printable ASCII but `=`, and `+` only
/// before two upper-case hex digits.
pub fn is_xtext(value: &str) -> bool {
    xtext_decode(value).is_some()
}

/// Undoes xtext; None when `value` is not valid xtext (or not UTF-8 once
/// decoded).
pub fn xtext_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                let hex = bytes.get(i + 1..i + 3)?;
                if !hex
                    .iter()
                    .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(b))
                {
                    return None;
                }
                out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                i += 3;
            }
            b'=' => return None,
            b @ 33..=126 => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

/// Keeps printable ASCII and spaces; anything else becomes `?`, so that
/// the text is safe in a 7-bit header, notice or report field.
pub fn ascii(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// A duration in two units at most, as people write it: "3d 4h", "2h 5m",
/// "42s" (negative: 0s). For ages in tables and status lines.
pub fn age(secs: i64) -> String {
    let s = secs.max(0);
    let (d, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {}s", s % 60)
    } else {
        format!("{s}s")
    }
}

/// `s` cut to at most `max` octets, on a character boundary.
pub fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_as_people_write_them() {
        assert_eq!(age(-5), "0s");
        assert_eq!(age(42), "42s");
        assert_eq!(age(125), "2m 5s");
        assert_eq!(age(2 * 3600 + 5 * 60 + 9), "2h 5m");
        assert_eq!(age(3 * 86_400 + 4 * 3600 + 59), "3d 4h");
    }

    #[test]
    fn xtext_round_trips_and_is_strict() {
        assert_eq!(xtext_encode("a+b=c d\u{e9}"), "a+2Bb+3Dc+20d+C3+A9");
        assert_eq!(
            xtext_decode(&xtext_encode("a+b=c d")).as_deref(),
            Some("a+b=c d")
        );
        for bad in ["+G1", "a+2", "a=b", "a b", "+2b"] {
            assert_eq!(xtext_decode(bad), None, "{bad}");
        }
        assert!(is_xtext("rfc822;a+2Bb@example.com"));
    }

    #[test]
    fn ascii_and_cut() {
        assert_eq!(ascii("caf\u{e9}\r\n\t !"), "caf???? !");
        assert_eq!(cut("h\u{e9}llo", 2), "h");
        assert_eq!(cut("hello", 255), "hello");
    }
}
