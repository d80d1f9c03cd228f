//! The `Authentication-Results` header field (RFC 8601): what the gateway
//! found of the sender's authenticity (SPF, DKIM, DMARC), written for the
//! MTAs, filters and mailbox rules after it, in the name of its host
//! (`server.authserv_id`, by default `server.hostname`). Reading the authserv-id of a field
//! that came with a message is here too: fields in our name that we did
//! not write are removed (`policy::verdict_headers`).

use super::{Auth, Outcome};
use std::borrow::Cow;

impl Auth {
    /// The field (with its CRLF), or None when nothing was checked.
    /// `null_sender`: SPF checked the HELO name, not a MAIL FROM domain.
    pub fn results_header(&self, authserv_id: &str, null_sender: bool) -> Option<String> {
        let mut results: Vec<String> = Vec::new();
        if let Some(spf) = &self.spf {
            let property = if null_sender {
                "smtp.helo"
            } else {
                "smtp.mailfrom"
            };
            results.push(format!(
                "spf={} {property}={}",
                spf.result,
                value(&spf.domain)
            ));
        }
        match &self.dkim {
            // Checked, and the message carries no signature.
            Some(signatures) if signatures.is_empty() => results.push("dkim=none".into()),
            _ => {}
        }
        for dkim in self.dkim.iter().flatten() {
            results.push(if dkim.domain.is_empty() {
                format!("dkim={}", dkim.result)
            } else {
                format!("dkim={} header.d={}", dkim.result, value(&dkim.domain))
            });
        }
        if let Some(dmarc) = &self.dmarc {
            // The policy is known when the record was read: not for a
            // temperror or permerror.
            let read = matches!(dmarc.result, Outcome::Pass | Outcome::Fail);
            let policy = if dmarc.policy.is_empty() || !read {
                String::new()
            } else {
                format!(" (p={})", value(&dmarc.policy))
            };
            results.push(format!(
                "dmarc={}{policy} header.from={}",
                dmarc.result,
                value(&dmarc.domain)
            ));
        }
        if results.is_empty() {
            return None;
        }
        // One result per line, so that none passes 78 characters however
        // many signatures there are (RFC 5322 2.1.1).
        Some(format!(
            "Authentication-Results: {};\r\n\t{}\r\n",
            value(authserv_id),
            results.join(";\r\n\t")
        ))
    }
}

/// A property value as RFC 8601 allows it: a token as it is, anything
/// else (a domain a forged signature named, with spaces or ';') as a
/// quoted string, control and non-ASCII characters left out.
fn value(s: &str) -> Cow<'_, str> {
    let token = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(&b));
    if token {
        return Cow::Borrowed(s);
    }
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars().filter(|c| c.is_ascii() && !c.is_ascii_control()) {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    Cow::Owned(q)
}

/// The authserv-id of an `Authentication-Results` field's value (what
/// follows the colon, folded lines included): the first token or quoted
/// string after any comments and white space. None when there is none.
pub fn authserv_id(value: &[u8]) -> Option<Vec<u8>> {
    let mut i = 0;
    // Comments nest, and may hold quoted pairs (RFC 5322 3.2.2).
    loop {
        while i < value.len() && value[i].is_ascii_whitespace() {
            i += 1;
        }
        if value.get(i) != Some(&b'(') {
            break;
        }
        let mut depth = 0usize;
        while i < value.len() {
            match value[i] {
                b'\\' => i += 1,
                b'(' => depth += 1,
                b')' => {
                    depth -= 1;
                    if depth == 0 {
                        i += 1;
                        break;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        if depth > 0 {
            return None;
        }
    }
    if value.get(i) == Some(&b'"') {
        let mut id = Vec::new();
        i += 1;
        while i < value.len() {
            match value[i] {
                b'"' => return Some(id),
                b'\\' if i + 1 < value.len() => {
                    id.push(value[i + 1]);
                    i += 2;
                }
                b => {
                    id.push(b);
                    i += 1;
                }
            }
        }
        return None;
    }
    let end = value[i..]
        .iter()
        .position(|b| b.is_ascii_whitespace() || b"();".contains(b))
        .map_or(value.len(), |n| i + n);
    (end > i).then(|| value[i..end].to_vec())
}

#[cfg(test)]
mod tests {
    use super::super::{Dkim, Dmarc, Spf};
    use super::*;

    #[test]
    fn an_unsigned_message_and_a_domain_without_policy_are_none() {
        let unsigned = Auth {
            dkim: Some(Vec::new()),
            dmarc: Some(Dmarc {
                result: Outcome::None,
                domain: "example.org".into(),
                policy: String::new(),
            }),
            ..Auth::default()
        };
        assert_eq!(
            unsigned.results_header("mw.example.net", false).unwrap(),
            "Authentication-Results: mw.example.net;\r\n\
             \tdkim=none;\r\n\
             \tdmarc=none header.from=example.org\r\n"
        );
        // Not checked is not "none": nothing is said.
        assert_eq!(
            Auth::default().results_header("mw.example.net", false),
            None
        );
    }

    #[test]
    fn the_results_go_one_per_line_in_our_name() {
        let auth = Auth {
            spf: Some(Spf {
                result: Outcome::Pass,
                domain: "example.org".into(),
                explanation: None,
            }),
            dkim: Some(vec![
                Dkim {
                    result: Outcome::Pass,
                    domain: "example.org".into(),
                },
                Dkim {
                    result: Outcome::Fail,
                    domain: "bad;domain x".into(),
                },
            ]),
            dmarc: Some(Dmarc {
                result: Outcome::Pass,
                domain: "example.org".into(),
                policy: "reject".into(),
            }),
        };
        assert_eq!(
            auth.results_header("mw.example.net", false).unwrap(),
            "Authentication-Results: mw.example.net;\r\n\
             \tspf=pass smtp.mailfrom=example.org;\r\n\
             \tdkim=pass header.d=example.org;\r\n\
             \tdkim=fail header.d=\"bad;domain x\";\r\n\
             \tdmarc=pass (p=reject) header.from=example.org\r\n"
        );
        let helo = Auth {
            spf: Some(Spf {
                result: Outcome::None,
                domain: "mx.example.org".into(),
                explanation: None,
            }),
            ..Auth::default()
        };
        assert_eq!(
            helo.results_header("mw.example.net", true).unwrap(),
            "Authentication-Results: mw.example.net;\r\n\tspf=none smtp.helo=mx.example.org\r\n"
        );
        let unanswered = Auth {
            dmarc: Some(Dmarc {
                result: Outcome::TempError,
                domain: "example.org".into(),
                policy: "none".into(),
            }),
            ..Auth::default()
        };
        assert_eq!(
            unanswered.results_header("mw.example.net", false).unwrap(),
            "Authentication-Results: mw.example.net;\r\n\tdmarc=temperror header.from=example.org\r\n"
        );
    }

    #[test]
    fn the_authserv_id_is_read_past_comments_and_folds() {
        let cases: [(&[u8], Option<&[u8]>); 7] = [
            (b" mw.example.net; spf=pass", Some(b"mw.example.net")),
            (b" mw.example.net 1; none", Some(b"mw.example.net")),
            (
                b" (a (nested) \\) comment)\r\n\tmw.example.net;",
                Some(b"mw.example.net"),
            ),
            (b" \"mw.ex\\\"ample\"; none", Some(b"mw.ex\"ample")),
            (b" (unclosed comment", None),
            (b"   ", None),
            (b" ;spf=pass", None),
        ];
        for (value, want) in cases {
            assert_eq!(
                authserv_id(value).as_deref(),
                want,
                "{}",
                String::from_utf8_lossy(value)
            );
        }
    }
}
