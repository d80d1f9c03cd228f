//! What the network says about a message, as spam tests: SPF of the
//! sender, DKIM signatures and the From domain's DMARC policy, and the URI
//! DNS lists (SURBL, URIBL) that list the registered domain of a link.
//!
//! The look-ups are made outside the scan workers (SPF in the session, DKIM
//! and DMARC before the checks, URI lists between the checks and the
//! plans); here they only become hits. The weights are set by hand, not
//! tuned: the public corpus the classifier is measured on cannot be replayed
//! against the DNS of its time (docs/spam.md).

use super::rules::Hit;
use super::text::Text;
use super::Evidence;
use crate::auth::{Auth, Outcome};
use crate::config::ScoredZone;

/// Registered domains looked up per message, at most: a message with
/// thousands of links must not cost thousands of queries. They are the
/// first distinct ones in the order of the message (docs/spam.md): a
/// spammer may pad a message with 20 harmless links, but only after the
/// link the reader is meant to follow, which is then asked.
pub const MAX_URI_DOMAINS: usize = 20;

/// SPF, DKIM and DMARC tests. `helo_identity`: SPF checked the HELO name
/// (null sender), named `SPF_HELO_*`.
pub fn sender_auth(auth: &Auth, helo_identity: bool, hits: &mut Vec<Hit>) {
    if let Some(spf) = &auth.spf {
        let weight = match spf.result {
            Outcome::Pass => Some(("PASS", -0.1)),
            Outcome::Fail => Some(("FAIL", 2.0)),
            Outcome::SoftFail => Some(("SOFTFAIL", 1.0)),
            Outcome::PermError => Some(("PERMERROR", 0.5)),
            Outcome::Neutral => Some(("NEUTRAL", 0.0)),
            Outcome::None | Outcome::TempError => None,
        };
        if let Some((word, w)) = weight {
            let prefix = if helo_identity { "SPF_HELO_" } else { "SPF_" };
            hits.push(Hit::new(&format!("{prefix}{word}"), w));
        }
    }
    let dkim = auth.dkim.iter().flatten();
    if dkim.clone().any(|d| d.result == Outcome::Pass) {
        hits.push(Hit::new("DKIM_VALID", -0.1));
    } else if dkim.clone().any(|d| {
        matches!(
            d.result,
            Outcome::Fail | Outcome::PermError | Outcome::Neutral
        )
    }) {
        hits.push(Hit::new("DKIM_INVALID", 0.5));
    }
    if let Some(d) = &auth.dmarc {
        match (d.result, d.policy.as_str()) {
            (Outcome::Pass, _) => hits.push(Hit::new("DMARC_PASS", -0.2)),
            (Outcome::Fail, "reject") => hits.push(Hit::new("DMARC_REJECT", 3.0)),
            (Outcome::Fail, "quarantine") => hits.push(Hit::new("DMARC_QUARANTINE", 2.0)),
            (Outcome::Fail, _) => hits.push(Hit::new("DMARC_NONE", 0.5)),
            _ => {}
        }
    }
}

/// The registered domain of `host` by the public suffix list (None for an
/// address, a bare suffix or a name that is not a domain).
pub fn registered_domain(host: &str) -> Option<String> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.parse::<std::net::IpAddr>().is_ok() || !host.contains('.') {
        return None;
    }
    let domain = psl::domain(host.as_bytes())?;
    // A name under an unlisted suffix gets the default rule ("*"): its
    // last two labels, which is what the lists hold too.
    std::str::from_utf8(domain.as_bytes())
        .ok()
        .map(str::to_string)
}

/// The distinct registered domains of the links in `text`, in the order
/// the message shows the links (first seen first), at most
/// [`MAX_URI_DOMAINS`]; a host is taken as a browser resolves it
/// (percent-escapes decoded).
pub fn uri_domains(text: &Text) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for url in &text.urls {
        if out.len() >= MAX_URI_DOMAINS {
            break;
        }
        if let Some(d) = registered_domain(&url.dns_host()) {
            if !out.contains(&d) {
                out.push(d);
            }
        }
    }
    out
}

impl Evidence {
    /// `zone` lists `domain` (a link's registered domain): one test per
    /// zone however many of the links it lists, or `as/blacklisted` for a
    /// final zone.
    pub fn uri_listed(&mut self, zone: &ScoredZone, domain: &str) {
        let name = zone.test_name_with("URIBL");
        if self.hits.iter().any(|h| h.name == name) {
            return;
        }
        match zone.weight {
            Some(w) => self.hits.push(Hit::new(&name, w)),
            None => {
                self.hits.push(Hit::new(&name, 0.0));
                self.blacklisted
                    .get_or_insert_with(|| format!("{} lists {domain}", zone.zone));
                // A listed link is as plain to the sender as to us: a
                // refusal for it tells nothing about a trap.
                self.trapped = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Dkim, Dmarc, Spf};

    fn names(auth: &Auth, helo: bool) -> Vec<String> {
        let mut hits = Vec::new();
        sender_auth(auth, helo, &mut hits);
        hits.into_iter().map(|h| h.name).collect()
    }

    #[test]
    fn registered_domains_follow_the_public_suffix_list() {
        assert_eq!(
            registered_domain("a.b.spam.example.co.uk").as_deref(),
            Some("example.co.uk")
        );
        assert_eq!(
            registered_domain("WWW.Example.COM.").as_deref(),
            Some("example.com")
        );
        // A private-section suffix: each user's site is its own domain.
        assert_eq!(
            registered_domain("evil.github.io").as_deref(),
            Some("evil.github.io")
        );
        assert_eq!(registered_domain("192.0.2.1"), None);
        assert_eq!(registered_domain("localhost"), None);
        assert_eq!(registered_domain("co.uk"), None);
    }

    #[test]
    fn authentication_results_become_tests() {
        let mut a = Auth {
            spf: Some(Spf {
                result: Outcome::Fail,
                domain: "example.org".into(),
                explanation: None,
            }),
            ..Auth::default()
        };
        assert_eq!(names(&a, false), ["SPF_FAIL"]);
        assert_eq!(names(&a, true), ["SPF_HELO_FAIL"]);
        a.spf = None;
        a.dkim = Some(vec![
            Dkim {
                result: Outcome::Fail,
                domain: "a.example".into(),
            },
            Dkim {
                result: Outcome::Pass,
                domain: "b.example".into(),
            },
        ]);
        assert_eq!(names(&a, false), ["DKIM_VALID"]);
        if let Some(signatures) = a.dkim.as_mut() {
            signatures.pop();
        }
        a.dmarc = Some(Dmarc {
            result: Outcome::Fail,
            domain: "a.example".into(),
            policy: "reject".into(),
        });
        assert_eq!(names(&a, false), ["DKIM_INVALID", "DMARC_REJECT"]);
        // Temporary errors say nothing either way.
        let t = Auth {
            spf: Some(Spf {
                result: Outcome::TempError,
                domain: "x.example".into(),
                explanation: None,
            }),
            ..Auth::default()
        };
        assert!(names(&t, false).is_empty());
    }

    #[test]
    fn padding_links_after_a_listed_one_do_not_hide_it() {
        // The link to follow, then 20 harmless links whose names sort
        // before it, and a second link into the same registered domain.
        let padding: String = (1..=20)
            .map(|i| format!("<http://a{i}.example/x>\r\n"))
            .collect();
        let raw = format!(
            "Subject: s\r\n\r\nBuy at http://www.evil.example/buy\r\n{padding}http://shop.evil.example/\r\n"
        );
        let message = mail_parser::MessageParser::new().parse(raw.as_bytes());
        let domains = uri_domains(&super::super::text::gather(message.as_ref()));
        assert_eq!(domains.len(), MAX_URI_DOMAINS);
        assert_eq!(domains[0], "evil.example");
        assert_eq!(domains[1], "a1.example");
        assert_eq!(domains[19], "a19.example");
        // A percent-escaped host is asked as the host it stands for.
        let raw = "Subject: s\r\n\r\nhttp://%65vil.example/ http://www.%45VIL.example/\r\n";
        let message = mail_parser::MessageParser::new().parse(raw.as_bytes());
        let domains = uri_domains(&super::super::text::gather(message.as_ref()));
        assert_eq!(domains, ["evil.example"]);
    }

    #[test]
    fn a_uri_list_fires_once_per_zone() {
        let mut e = Evidence::default();
        let scored = ScoredZone::parse("multi.uribl.test:4.0").unwrap();
        e.uri_listed(&scored, "spam.example");
        e.uri_listed(&scored, "other.example");
        assert_eq!(e.test_names(), ["URIBL_MULTI_URIBL_TEST"]);
        assert_eq!(e.score(), 4.0);
        assert!(e.blacklisted.is_none());
        let fin = ScoredZone::parse("black.uribl.test:final").unwrap();
        e.uri_listed(&fin, "spam.example");
        assert_eq!(
            e.blacklisted.as_deref(),
            Some("black.uribl.test lists spam.example")
        );
    }
}
