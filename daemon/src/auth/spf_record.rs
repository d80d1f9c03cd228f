//! An SPF record (RFC 7208 sections 4.5, 5, 6 and 12), read strictly: a
//! record that breaks the grammar is a `permerror` as a whole, before any
//! of its terms is evaluated (section 4.6). mail-auth 0.13 reads records
//! leniently (a bad CIDR length, an unknown mechanism or a numeric top
//! label were taken as something else), which is why this reader exists.

use super::spf_macro::MacroString;
use std::net::{Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qualifier {
    Pass,
    Fail,
    SoftFail,
    Neutral,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mechanism {
    All,
    Include(MacroString),
    /// `a` and `mx`: the name (the current domain when None) and the CIDR
    /// lengths to compare IPv4 and IPv6 clients with.
    A {
        name: Option<MacroString>,
        v4: u8,
        v6: u8,
    },
    Mx {
        name: Option<MacroString>,
        v4: u8,
        v6: u8,
    },
    Ptr(Option<MacroString>),
    Ip4 {
        net: Ipv4Addr,
        len: u8,
    },
    Ip6 {
        net: Ipv6Addr,
        len: u8,
    },
    Exists(MacroString),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub qualifier: Qualifier,
    pub mechanism: Mechanism,
}

/// A record that follows the grammar. Unknown modifiers are checked and
/// dropped (section 6: they are ignored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub directives: Vec<Directive>,
    pub redirect: Option<MacroString>,
    /// Where the explanation of a `fail` is published (fetched only when
    /// someone will read it: [`super::spf_check::Check::explaining`]).
    pub exp: Option<MacroString>,
}

/// Whether a TXT string is an SPF record: "v=spf1" alone or followed by a
/// space (section 4.5; "v=spf10" is not one).
pub fn is_spf(txt: &[u8]) -> bool {
    txt.len() >= 6 && txt[..6].eq_ignore_ascii_case(b"v=spf1") && (txt.len() == 6 || txt[6] == b' ')
}

impl Record {
    /// Reads one record (`txt` passes [`is_spf`]). The error says which
    /// term is wrong and why.
    pub fn parse(txt: &[u8]) -> Result<Record, String> {
        let text = std::str::from_utf8(txt)
            .ok()
            .filter(|t| t.is_ascii())
            .ok_or_else(|| "the record is not 7-bit ASCII".to_string())?;
        if let Some(c) = text.chars().find(|c| !(' '..='~').contains(c)) {
            return Err(format!(
                "the record holds the control character {:#04x}",
                c as u32
            ));
        }
        let mut record = Record {
            directives: Vec::new(),
            redirect: None,
            exp: None,
        };
        for term in text.split(' ').skip(1).filter(|t| !t.is_empty()) {
            record
                .add(term)
                .map_err(|e| format!("term {term:?}: {e}"))?;
        }
        Ok(record)
    }

    fn add(&mut self, term: &str) -> Result<(), String> {
        let (qualifier, rest) = match term.as_bytes()[0] {
            b'+' => (Some(Qualifier::Pass), &term[1..]),
            b'-' => (Some(Qualifier::Fail), &term[1..]),
            b'~' => (Some(Qualifier::SoftFail), &term[1..]),
            b'?' => (Some(Qualifier::Neutral), &term[1..]),
            _ => (None, term),
        };
        let name_end = rest.find([':', '/', '=']).unwrap_or(rest.len());
        let (name, arg) = rest.split_at(name_end);
        if qualifier.is_none() && arg.starts_with('=') {
            return self.modifier(name, &arg[1..]);
        }
        let mechanism = mechanism(&name.to_ascii_lowercase(), arg)?;
        self.directives.push(Directive {
            qualifier: qualifier.unwrap_or(Qualifier::Pass),
            mechanism,
        });
        Ok(())
    }

    fn modifier(&mut self, name: &str, value: &str) -> Result<(), String> {
        let valid_name = name.as_bytes().first().is_some_and(u8::is_ascii_alphabetic)
            && name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c));
        if !valid_name {
            return Err("not a valid modifier name".to_string());
        }
        let slot = match name.to_ascii_lowercase().as_str() {
            "redirect" => &mut self.redirect,
            "exp" => &mut self.exp,
            _ => {
                // Unknown modifiers are ignored, but must still be
                // macro strings (section 6); every macro letter is taken,
                // since what a modifier we do not know allows is unknown.
                MacroString::parse(value, super::spf_macro::Place::Explanation)?;
                return Ok(());
            }
        };
        if slot.is_some() {
            return Err(format!("{name}= appears twice"));
        }
        *slot = Some(MacroString::parse_domain(value)?);
        Ok(())
    }
}

fn mechanism(name: &str, arg: &str) -> Result<Mechanism, String> {
    let domain = |arg: &str| -> Result<MacroString, String> {
        let spec = arg
            .strip_prefix(':')
            .ok_or_else(|| format!("{name} needs ':' and a domain"))?;
        MacroString::parse_domain(spec)
    };
    match name {
        "all" if arg.is_empty() => Ok(Mechanism::All),
        "include" => Ok(Mechanism::Include(domain(arg)?)),
        "exists" => Ok(Mechanism::Exists(domain(arg)?)),
        "ptr" if arg.is_empty() => Ok(Mechanism::Ptr(None)),
        "ptr" => Ok(Mechanism::Ptr(Some(domain(arg)?))),
        "a" | "mx" => {
            let (spec, v4, v6) = dual_cidr(arg)?;
            let name_spec = if spec.is_empty() {
                None
            } else {
                Some(domain(spec)?)
            };
            Ok(if name == "a" {
                Mechanism::A {
                    name: name_spec,
                    v4,
                    v6,
                }
            } else {
                Mechanism::Mx {
                    name: name_spec,
                    v4,
                    v6,
                }
            })
        }
        "ip4" => {
            let (net, len) = network(arg, 32)?;
            let net = net
                .parse::<Ipv4Addr>()
                .map_err(|_| format!("{net:?} is not an IPv4 address"))?;
            Ok(Mechanism::Ip4 { net, len })
        }
        "ip6" => {
            let (net, len) = network(arg, 128)?;
            let net = net
                .parse::<Ipv6Addr>()
                .map_err(|_| format!("{net:?} is not an IPv6 address"))?;
            Ok(Mechanism::Ip6 { net, len })
        }
        "all" => Err("all takes no argument".to_string()),
        _ => Err(format!("{name:?} is not a mechanism")),
    }
}

/// A CIDR length: no leading zero, at most `max`.
fn cidr(digits: &str, max: u8) -> Result<u8, String> {
    let bad = || format!("/{digits} is not a prefix length from 0 to {max}");
    if digits.is_empty()
        || !digits.bytes().all(|c| c.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
        || digits.len() > 3
    {
        return Err(bad());
    }
    let n: u8 = digits.parse().map_err(|_| bad())?;
    if n > max {
        return Err(bad());
    }
    Ok(n)
}

/// `:NETWORK[/LENGTH]` of ip4 and ip6.
fn network(arg: &str, max: u8) -> Result<(&str, u8), String> {
    let arg = arg
        .strip_prefix(':')
        .ok_or_else(|| "needs ':' and a network".to_string())?;
    match arg.rsplit_once('/') {
        Some((net, len)) => Ok((net, cidr(len, max)?)),
        None => Ok((arg, max)),
    }
}

/// `[:domain][/v4][//v6]` of a and mx: the domain part and both lengths.
/// The lengths are taken from the end, since a domain-spec may hold '/'.
fn dual_cidr(arg: &str) -> Result<(&str, u8, u8), String> {
    let digits_at_end = |s: &str| s.len() - s.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let mut rest = arg;
    let mut v6 = 128;
    let n = digits_at_end(rest);
    if n > 0 && rest[..rest.len() - n].ends_with("//") {
        v6 = cidr(&rest[rest.len() - n..], 128)?;
        rest = &rest[..rest.len() - n - 2];
    }
    let mut v4 = 32;
    let n = digits_at_end(rest);
    if n > 0 && rest[..rest.len() - n].ends_with('/') && !rest[..rest.len() - n].ends_with("//") {
        v4 = cidr(&rest[rest.len() - n..], 32)?;
        rest = &rest[..rest.len() - n - 1];
    }
    if !rest.is_empty() && !rest.starts_with(':') {
        return Err("takes ':' and a domain, then /LENGTH or //LENGTH".to_string());
    }
    Ok((rest, v4, v6))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Record, String> {
        Record::parse(s.as_bytes())
    }

    #[test]
    fn records_of_the_rfc_are_read() {
        let r = parse("v=spf1 +mx a:colo.example.com/28 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all")
            .unwrap();
        assert_eq!(r.directives.len(), 5);
        assert!(matches!(
            r.directives[1].mechanism,
            Mechanism::A {
                v4: 28,
                v6: 128,
                ..
            }
        ));
        assert!(matches!(
            r.directives[3].mechanism,
            Mechanism::Ip6 { len: 32, .. }
        ));
        assert_eq!(r.directives[4].qualifier, Qualifier::Fail);
        let r = parse("v=spf1  a//64 mx/24//96 redirect=_spf.example.com  charset=utf-8 ").unwrap();
        assert!(matches!(
            r.directives[0].mechanism,
            Mechanism::A {
                name: None,
                v4: 32,
                v6: 64
            }
        ));
        assert!(matches!(
            r.directives[1].mechanism,
            Mechanism::Mx {
                name: None,
                v4: 24,
                v6: 96
            }
        ));
        assert!(r.redirect.is_some());
        assert!(parse("v=spf1").unwrap().directives.is_empty());
        // An unknown modifier is ignored once it is a macro string.
        assert_eq!(
            parse("v=spf1 moo=%{c}.%{t} -all").unwrap().directives.len(),
            1
        );
    }

    #[test]
    fn what_breaks_the_grammar_is_refused_with_its_term() {
        for bad in [
            "v=spf1 ip4:1.2.3.4/33",
            "v=spf1 ip4:1.2.3.4/032",
            "v=spf1 ip6:::1/129",
            "v=spf1 a/33",
            "v=spf1 a:foo.example.com//129",
            "v=spf1 a:192.0.2.1",
            "v=spf1 a:museum",
            "v=spf1 mx:example.123",
            "v=spf1 foo:bar",
            "v=spf1 all:example.com",
            "v=spf1 include",
            "v=spf1 redirect=a.example.com redirect=b.example.com",
            "v=spf1 =foo",
            "v=spf1 1x=foo",
            "v=spf1 exp=%{z}",
            "v=spf1 ip4:1.2.3.4\t-all",
            "v=spf1 -all \u{e9}",
            "v=spf1 ip4:1.2.3",
        ] {
            let e = parse(bad).expect_err(bad);
            assert!(e.starts_with("term ") || e.contains("record"), "{bad}: {e}");
        }
        let e = parse("v=spf1 ip4:192.0.2.1/33 -all").unwrap_err();
        assert!(e.contains("\"ip4:192.0.2.1/33\""), "{e}");
    }

    /// Records come from anyone's DNS: pieces of the grammar put together
    /// at random (a fixed seed) must give a record or an error, never a
    /// panic, and what parses must expand.
    #[test]
    fn random_records_never_panic() {
        const PIECES: &[&str] = &[
            " ",
            "  ",
            "+",
            "-",
            "~",
            "?",
            "a",
            "mx",
            "ptr",
            "ip4",
            "ip6",
            "all",
            "include",
            "exists",
            "redirect",
            "exp",
            "=",
            ":",
            "/",
            "//",
            "%",
            "%{",
            "}",
            "%%",
            "%_",
            "%-",
            "d",
            "i",
            "p",
            "l",
            "r",
            "0",
            "1",
            "32",
            "129",
            "033",
            ".",
            "..",
            "example.com",
            "::",
            "::1",
            "1.2.3.4",
            "\u{e9}",
            "\t",
            "-",
            "_",
            "x=",
        ];
        let mut seed: u64 = 0x5eed;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize
        };
        let vars = super::super::spf_macro::Vars {
            sender: "a@example.com",
            domain: "example.com",
            ip: "2001:db8::1".parse().unwrap(),
            helo: "h.example.com",
            receiver: "mw.example.net",
            validated: Some("v.example.com"),
        };
        let mut parsed = 0;
        for _ in 0..20_000 {
            let mut text = String::from("v=spf1 ");
            for _ in 0..next() % 12 {
                text.push_str(PIECES[next() % PIECES.len()]);
            }
            if let Ok(record) = Record::parse(text.as_bytes()) {
                parsed += 1;
                for d in &record.directives {
                    if let Mechanism::Include(m) | Mechanism::Exists(m) = &d.mechanism {
                        m.expand(&vars);
                    }
                }
                for m in record.redirect.iter().chain(record.exp.iter()) {
                    m.expand(&vars);
                }
            }
        }
        // Some of them are records, or the test says little.
        assert!(parsed > 500, "{parsed} parsed");
    }

    #[test]
    fn only_v_spf1_and_a_space_starts_a_record() {
        assert!(is_spf(b"v=spf1"));
        assert!(is_spf(b"V=SPF1 -all"));
        assert!(!is_spf(b"v=spf10 -all"));
        assert!(!is_spf(b"v=spf1-all"));
        assert!(!is_spf(b"spf2.0/pra -all"));
    }
}
