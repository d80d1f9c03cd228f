//! SPF macro strings (RFC 7208 section 7): their syntax, checked before
//! anything is looked up, and their expansion into the names the record
//! asks about. The syntax is checked on the text as published: "it is not
//! correct to check syntax after macro expansion" (the RFC's test suite).

use std::fmt::Write as _;
use std::net::IpAddr;

/// A macro string: literal text and `%{...}` expansions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacroString(Vec<Piece>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Expand(Expand),
}

/// One `%{LETTER DIGITS r DELIMITERS}`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expand {
    /// The macro letter, lower case.
    letter: u8,
    /// An upper-case letter asks for the value URL-escaped.
    escape: bool,
    /// Keep only this many of the rightmost parts.
    keep: Option<usize>,
    reverse: bool,
    /// The characters that split the value ("." when none is given).
    delimiters: Vec<u8>,
}

/// Where a macro string stands: the letters `c`, `r` and `t` are allowed
/// only in explanation text (section 7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    DomainSpec,
    Explanation,
}

impl MacroString {
    /// Parses `text` (printable ASCII, no spaces: the record's terms are
    /// split on spaces before this).
    pub fn parse(text: &str, place: Place) -> Result<MacroString, String> {
        let bytes = text.as_bytes();
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b != b'%' {
                if !(0x21..=0x7e).contains(&b) {
                    return Err(format!("character {b:#04x} is not allowed in {text:?}"));
                }
                literal.push(char::from(b));
                i += 1;
                continue;
            }
            match bytes.get(i + 1) {
                Some(b'%') => literal.push('%'),
                Some(b'_') => literal.push(' '),
                Some(b'-') => literal.push_str("%20"),
                Some(b'{') => {
                    let close = bytes[i..]
                        .iter()
                        .position(|&c| c == b'}')
                        .ok_or_else(|| format!("unclosed macro in {text:?}"))?;
                    let expand = Expand::parse(&bytes[i + 2..i + close], place)
                        .map_err(|e| format!("{e} in {text:?}"))?;
                    if !literal.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Expand(expand));
                    i += close + 1;
                    continue;
                }
                _ => {
                    return Err(format!(
                        "a lone '%' in {text:?} (write %% for a percent sign)"
                    ))
                }
            }
            i += 2;
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(MacroString(pieces))
    }

    /// Parses a domain-spec: a macro string that ends in a macro or in
    /// "." and a top label that is not all digits (section 7.1), so that
    /// `a:192.0.2.1` (an address where a name belongs) is refused.
    pub fn parse_domain(text: &str) -> Result<MacroString, String> {
        let spec = MacroString::parse(text, Place::DomainSpec)?;
        let ends_in_macro = text.ends_with('}')
            || (text.len() >= 2 && text.ends_with(['%', '_', '-']) && {
                // "%%", "%_" and "%-" are macro-expands too, unless their
                // '%' is itself the end of a "%%".
                let tail = &text.as_bytes()[..text.len() - 1];
                tail.iter().rev().take_while(|&&c| c == b'%').count() % 2 == 1
            });
        if ends_in_macro {
            return Ok(spec);
        }
        let name = text.strip_suffix('.').unwrap_or(text);
        let Some((_, top)) = name.rsplit_once('.') else {
            return Err(format!(
                "{text:?} is not a domain name (no dot before its last label)"
            ));
        };
        if !is_toplabel(top) {
            return Err(format!(
                "{text:?} does not end in a valid top label ({top:?}: letters, digits and inner hyphens, not all digits)"
            ));
        }
        Ok(spec)
    }

    /// The string with its macros expanded.
    pub fn expand(&self, vars: &Vars<'_>) -> String {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Literal(s) => out.push_str(s),
                Piece::Expand(e) => e.expand(vars, &mut out),
            }
        }
        out
    }

    /// Whether expanding it needs the validated name of the client (`%{p}`).
    pub fn needs_validated_name(&self) -> bool {
        self.0
            .iter()
            .any(|p| matches!(p, Piece::Expand(e) if e.letter == b'p'))
    }
}

/// toplabel = ( *alphanum ALPHA *alphanum ) / ( 1*alphanum "-" *( alphanum / "-" ) alphanum )
fn is_toplabel(label: &str) -> bool {
    let b = label.as_bytes();
    let (Some(first), Some(last)) = (b.first(), b.last()) else {
        return false;
    };
    first.is_ascii_alphanumeric()
        && last.is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && !b.iter().all(u8::is_ascii_digit)
}

impl Expand {
    fn parse(inner: &[u8], place: Place) -> Result<Expand, String> {
        let (&letter, mut rest) = inner
            .split_first()
            .ok_or_else(|| "an empty macro %{}".to_string())?;
        let lower = letter.to_ascii_lowercase();
        match lower {
            b's' | b'l' | b'o' | b'd' | b'i' | b'p' | b'h' | b'v' => {}
            b'c' | b'r' | b't' if place == Place::Explanation => {}
            b'c' | b'r' | b't' => {
                return Err(format!(
                    "macro letter '{}' is allowed only in explanations",
                    char::from(letter)
                ))
            }
            _ => return Err(format!("unknown macro letter '{}'", char::from(letter))),
        }
        let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
        let keep = if digits > 0 {
            let n: usize = std::str::from_utf8(&rest[..digits])
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(usize::MAX);
            if n == 0 {
                return Err("a macro may not keep 0 parts".to_string());
            }
            Some(n)
        } else {
            None
        };
        rest = &rest[digits..];
        let reverse = matches!(rest.first(), Some(b'r' | b'R'));
        if reverse {
            rest = &rest[1..];
        }
        if let Some(bad) = rest.iter().find(|c| !b".-+,/_=".contains(c)) {
            return Err(format!("'{}' is not a macro delimiter", char::from(*bad)));
        }
        Ok(Expand {
            letter: lower,
            escape: letter.is_ascii_uppercase(),
            keep,
            reverse,
            delimiters: rest.to_vec(),
        })
    }

    fn expand(&self, vars: &Vars<'_>, out: &mut String) {
        let value = vars.value(self.letter);
        let delimiters: &[u8] = if self.delimiters.is_empty() {
            b"."
        } else {
            &self.delimiters
        };
        let mut parts: Vec<&str> = value
            .split(|c: char| c.is_ascii() && delimiters.contains(&(c as u8)))
            .collect();
        if self.reverse {
            parts.reverse();
        }
        if let Some(keep) = self.keep {
            let skip = parts.len().saturating_sub(keep);
            parts.drain(..skip);
        }
        let joined = parts.join(".");
        if self.escape {
            for b in joined.bytes() {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    out.push(char::from(b));
                } else {
                    let _ = write!(out, "%{b:02X}");
                }
            }
        } else {
            out.push_str(&joined);
        }
    }
}

/// The values the macro letters stand for, in one check_host() call.
#[derive(Debug, Clone)]
pub struct Vars<'a> {
    /// `<sender>`: "postmaster@DOMAIN" when the sender has no local part.
    pub sender: &'a str,
    /// `<domain>`: the domain whose record is being evaluated.
    pub domain: &'a str,
    pub ip: IpAddr,
    pub helo: &'a str,
    /// Our own host name (`%{r}`).
    pub receiver: &'a str,
    /// The client's validated name (`%{p}`), when it was needed.
    pub validated: Option<&'a str>,
}

impl Vars<'_> {
    fn value(&self, letter: u8) -> String {
        let (local, sender_domain) = self.sender.rsplit_once('@').unwrap_or(("postmaster", ""));
        match letter {
            b's' => self.sender.to_string(),
            b'l' => local.to_string(),
            b'o' => sender_domain.to_string(),
            b'd' => self.domain.to_string(),
            b'i' => match self.ip {
                IpAddr::V4(v4) => v4.to_string(),
                IpAddr::V6(v6) => {
                    let mut s = String::with_capacity(63);
                    for byte in v6.octets() {
                        for nibble in [byte >> 4, byte & 0xf] {
                            if !s.is_empty() {
                                s.push('.');
                            }
                            let _ = write!(s, "{nibble:x}");
                        }
                    }
                    s
                }
            },
            b'p' => self.validated.unwrap_or("unknown").to_string(),
            b'v' => match self.ip {
                IpAddr::V4(_) => "in-addr".to_string(),
                IpAddr::V6(_) => "ip6".to_string(),
            },
            b'h' => self.helo.to_string(),
            b'c' => self.ip.to_string(),
            b'r' => self.receiver.to_string(),
            b't' => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
                .to_string(),
            _ => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(ip: &str) -> Vars<'static> {
        Vars {
            sender: "strong-bad@email.example.com",
            domain: "email.example.com",
            ip: ip.parse().unwrap(),
            helo: "mx.example.org",
            receiver: "mw.example.net",
            validated: None,
        }
    }

    fn expand(text: &str, ip: &str) -> String {
        MacroString::parse(text, Place::Explanation)
            .unwrap()
            .expand(&vars(ip))
    }

    /// The examples of RFC 7208 section 7.4.
    #[test]
    fn the_rfc_examples_expand_as_written() {
        let v4 = "192.0.2.3";
        assert_eq!(expand("%{s}", v4), "strong-bad@email.example.com");
        assert_eq!(expand("%{o}", v4), "email.example.com");
        assert_eq!(expand("%{d}", v4), "email.example.com");
        assert_eq!(expand("%{d4}", v4), "email.example.com");
        assert_eq!(expand("%{d3}", v4), "email.example.com");
        assert_eq!(expand("%{d2}", v4), "example.com");
        assert_eq!(expand("%{d1}", v4), "com");
        assert_eq!(expand("%{dr}", v4), "com.example.email");
        assert_eq!(expand("%{d2r}", v4), "example.email");
        assert_eq!(expand("%{l}", v4), "strong-bad");
        assert_eq!(expand("%{l-}", v4), "strong.bad");
        assert_eq!(expand("%{lr}", v4), "strong-bad");
        assert_eq!(expand("%{lr-}", v4), "bad.strong");
        assert_eq!(expand("%{l1r-}", v4), "strong");
        assert_eq!(
            expand("%{ir}.%{v}._spf.%{d2}", v4),
            "3.2.0.192.in-addr._spf.example.com"
        );
        assert_eq!(
            expand("%{lr-}.lp._spf.%{d2}", v4),
            "bad.strong.lp._spf.example.com"
        );
        assert_eq!(
            expand("%{ir}.%{v}._spf.%{d2}", "2001:db8::cb01"),
            "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com"
        );
        assert_eq!(expand("%{S}", v4), "strong-bad%40email.example.com");
        assert_eq!(expand("a%%b%_c%-d", v4), "a%b c%20d");
    }

    #[test]
    fn syntax_is_checked_before_expansion() {
        // Macro syntax first, then names that do not end in a top label.
        for bad in [
            "%{x}",
            "%{d0}",
            "%{d",
            "%",
            "%{dx}",
            "a%b",
            "%{c}.example.com",
            "192.0.2.1",
            "example",
            "example.",
            "example.123",
            "foo.-com",
            "foo.com-",
        ] {
            assert!(
                MacroString::parse_domain(bad).is_err(),
                "{bad} should be refused"
            );
        }
        for good in [
            "example.com",
            "example.com.",
            "%{d}",
            "%{ir}.%{v}._spf.%{d2}",
            "foo.%{d}%%",
            "x.a-1",
            "_spf.example.com",
        ] {
            assert!(
                MacroString::parse_domain(good).is_ok(),
                "{good} should be accepted"
            );
        }
        // "%%" ending a "%%%%" is a macro; the '%' of "a%%_" is not the end.
        assert!(MacroString::parse_domain("a.%%").is_ok());
        assert!(MacroString::parse_domain("a.b%%_").is_err());
        assert!(MacroString::parse("%{c}", Place::Explanation).is_ok());
    }
}
