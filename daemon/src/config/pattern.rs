//! Name patterns of the configuration: [`Pattern`], a case-insensitive glob
//! with `*` and `?` (addresses, host names, file names), and
//! [`DomainPattern`], a domain or `*.domain` for `network.protected_domains`.

use std::fmt;

/// A case-insensitive glob: `*` matches any run of characters (also none),
/// `?` exactly one; everything else matches itself. `"*@example.com"`,
/// `"*.exe"`, `"mx?.example.net"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pattern {
    /// The pattern as written, for messages and `as_str`.
    text: String,
    /// The pattern lower-cased, as characters, for matching.
    chars: Vec<char>,
}

impl Pattern {
    /// A pattern from its text; every string is a valid glob.
    pub fn new(text: &str) -> Pattern {
        Pattern {
            text: text.to_string(),
            chars: text.chars().flat_map(char::to_lowercase).collect(),
        }
    }

    /// An address glob (routes' `match`, access rules, `[spam]` lists,
    /// group members) with the domain after its last `@` in the one form
    /// envelope addresses have: an internationalised label as its A-label
    /// (`*@b\u{fc}cher.example` is `*@xn--bcher-kva.example`), so that a
    /// glob written either way matches the address written either way
    /// (walkAR F2). A label with `*` or `?` is kept as it is, and must
    /// then be ASCII; a label IDNA would change (an invisible or fullwidth
    /// character) is refused, as at RCPT TO.
    pub fn address(text: &str) -> Result<Pattern, String> {
        let Some((local, domain)) = text.rsplit_once('@') else {
            return Ok(Pattern::new(text));
        };
        if !domain.contains(['*', '?']) && !domain.is_empty() {
            return crate::text::canonical_domain(domain)
                .map(|a_label| Pattern::new(&format!("{local}@{a_label}")))
                .map_err(|e| format!("{text:?}: {e}"));
        }
        let mut labels = Vec::new();
        for label in domain.split('.') {
            let glob = label.contains(['*', '?']);
            if glob && !label.is_ascii() {
                return Err(format!(
                    "{text:?}: a domain label with * or ? must be written with A-labels (\"xn--...\"), got {label:?}"
                ));
            }
            if glob || label.is_empty() {
                labels.push(label.to_string());
                continue;
            }
            match crate::text::canonical_domain(label) {
                Ok(a_label) => labels.push(a_label),
                Err(e) => return Err(format!("{text:?}: {e}")),
            }
        }
        Ok(Pattern::new(&format!("{local}@{}", labels.join("."))))
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `s` matches the whole pattern, ignoring case.
    pub fn matches(&self, s: &str) -> bool {
        let subject: Vec<char> = s.chars().flat_map(char::to_lowercase).collect();
        glob_match(&self.chars, &subject)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Iterative glob matching with backtracking to the last `*`: linear in
/// practice, never exponential.
fn glob_match(pattern: &[char], subject: &[char]) -> bool {
    let (mut p, mut s) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while s < subject.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, s));
                p += 1;
            }
            Some(&c) if c == '?' || c == subject[s] => {
                p += 1;
                s += 1;
            }
            _ => match star {
                Some((sp, ss)) => {
                    p = sp + 1;
                    s = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// A mail domain (`"example.com"`, matched exactly) or all its sub-domains
/// (`"*.example.com"`, which does not match `example.com` itself). Matching
/// ignores case and a trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DomainPattern {
    /// As written.
    text: String,
    /// Lower-cased domain without the `*.`.
    domain: String,
    /// Whether it was written `*.domain`.
    subdomains: bool,
}

impl DomainPattern {
    /// Parses `"example.com"` or `"*.example.com"`.
    pub fn parse(text: &str) -> Result<DomainPattern, String> {
        let (subdomains, domain) = match text.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let domain = domain.strip_suffix('.').unwrap_or(domain);
        // A U-label is taken as its A-label, the form envelope domains
        // have (walkAR F2: `protected_domains = ["例子.测试"]` was refused
        // while routes took it); one IDNA would change is an error.
        let domain = match crate::text::canonical_domain(domain) {
            Ok(a_label) => a_label.to_ascii_lowercase(),
            Err(e @ crate::text::MailboxError::IdnNotCanonical { .. })
            | Err(e @ crate::text::MailboxError::IdnDisallowed(..)) => {
                return Err(format!("{text:?}: {e}"))
            }
            Err(_) => domain.to_ascii_lowercase(),
        };
        if !is_domain(&domain) {
            return Err(format!(
                "expected a domain like \"example.com\" or \"*.example.com\", got {text:?}"
            ));
        }
        Ok(DomainPattern {
            text: text.to_string(),
            domain,
            subdomains,
        })
    }

    /// As written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `domain` is this domain (or, for `*.x`, one below it).
    pub fn matches(&self, domain: &str) -> bool {
        let domain = domain.strip_suffix('.').unwrap_or(domain);
        if self.subdomains {
            let Some(cut) = domain.len().checked_sub(self.domain.len() + 1) else {
                return false;
            };
            domain.is_char_boundary(cut)
                && domain[cut..].starts_with('.')
                && domain[cut + 1..].eq_ignore_ascii_case(&self.domain)
                && cut > 0
        } else {
            domain.eq_ignore_ascii_case(&self.domain)
        }
    }
}

impl fmt::Display for DomainPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A host or domain name: dot-separated labels of letters, digits, `-` and
/// `_`, none empty (IDNs are written in their ASCII form).
pub fn is_domain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob() {
        let cases = [
            ("*@example.com", "john@example.com", true),
            ("*@example.com", "John@EXAMPLE.com", true),
            ("*@example.com", "john@example.com.evil", false),
            ("*@example.com", "john@sub.example.com", false),
            ("*@*.example.com", "john@sub.example.com", true),
            ("*.exe", "setup.EXE", true),
            ("*.exe", "setup.exe.txt", false),
            ("mx?.example.net", "mx1.example.net", true),
            ("mx?.example.net", "mx12.example.net", false),
            ("*", "", true),
            ("*", "anything", true),
            ("", "", true),
            ("", "a", false),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("**a", "bba", true),
            ("é*", "Éclair", true),
        ];
        for (pattern, subject, expected) in cases {
            assert_eq!(
                Pattern::new(pattern).matches(subject),
                expected,
                "{pattern} vs {subject}"
            );
        }
        assert_eq!(Pattern::new("*.EXE").as_str(), "*.EXE");
    }

    #[test]
    fn idn_globs_match_the_a_label_form_envelope_addresses_have() {
        let p = Pattern::address("*@\u{4f8b}\u{5b50}.\u{6d4b}\u{8bd5}").unwrap();
        assert_eq!(p.as_str(), "*@xn--fsqu00a.xn--0zwm56d");
        assert!(p.matches("x@xn--fsqu00a.xn--0zwm56d"));
        let p = Pattern::address("*@*.B\u{fc}cher.example").unwrap();
        assert!(p.matches("a@mx.xn--bcher-kva.example"));
        let p = Pattern::address("*@XN--BCHER-KVA.example").unwrap();
        assert!(p.matches("j\u{fc}rgen@xn--bcher-kva.example"));
        assert_eq!(Pattern::address("*").unwrap().as_str(), "*");
        assert_eq!(
            Pattern::address("*@example.com").unwrap().as_str(),
            "*@example.com"
        );
        for bad in [
            "*@spam\u{ad}mer.example",
            "*@n\u{200b}ou.example",
            "*@b\u{fc}*.example",
            "*@xn--zz.example",
        ] {
            assert!(Pattern::address(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn domains() {
        let idn = DomainPattern::parse("*.\u{4f8b}\u{5b50}.\u{6d4b}\u{8bd5}").unwrap();
        assert!(idn.matches("mx.xn--fsqu00a.xn--0zwm56d"));
        assert!(DomainPattern::parse("B\u{fc}cher.example")
            .unwrap()
            .matches("xn--bcher-kva.example"));
        assert!(DomainPattern::parse("b\u{fc}cher\u{3002}example").is_err());
        let exact = DomainPattern::parse("Example.com").unwrap();
        assert!(exact.matches("example.com"));
        assert!(exact.matches("EXAMPLE.COM."));
        assert!(!exact.matches("sub.example.com"));
        assert!(!exact.matches("xexample.com"));
        assert_eq!(exact.as_str(), "Example.com");

        let sub = DomainPattern::parse("*.example.com").unwrap();
        assert!(sub.matches("a.example.com"));
        assert!(sub.matches("a.b.EXAMPLE.com"));
        assert!(!sub.matches("example.com"));
        assert!(!sub.matches(".example.com"));
        assert!(!sub.matches("xexample.com"));
        assert!(!sub.matches("a.example.com.evil"));
        assert!(!sub.matches("é.example.co"));

        for bad in [
            "",
            "*",
            "*.",
            "a..b",
            "*example.com",
            "ex ample.com",
            "a.*.com",
        ] {
            assert!(DomainPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
