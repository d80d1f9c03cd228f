//! Sender authentication: SPF (RFC 7208) for the MAIL FROM identity (HELO
//! for the null sender; our own evaluation, `spf_check`), DKIM signatures
//! (RFC 6376) and the DMARC policy of the From domain (RFC 7489, with the
//! `mail-auth` crate), all over the gateway's one resolver. The results are signals for the spam check and the proof a
//! whitelisted sender needs; they never stop mail on their own unless
//! `[spam] spf = "reject"` says so.
//!
//! Every look-up is bounded: a slow DNS server gives `temperror`, never a
//! stuck session. The results are kept in the envelope (spooled), so that a
//! message checked again after a restart is judged on what the session saw.

pub mod results;
mod spf_check;
mod spf_macro;
mod spf_record;

use mail_auth::{
    dmarc::verify::DmarcParameters, dmarc::Policy, AuthenticatedMessage, DkimResult, DmarcResult,
    MessageAuthenticator, SpfOutput, SpfResult,
};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

/// One authentication result, in the words of RFC 8601.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail,
    SoftFail,
    Neutral,
    None,
    TempError,
    PermError,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::SoftFail => "softfail",
            Outcome::Neutral => "neutral",
            Outcome::None => "none",
            Outcome::TempError => "temperror",
            Outcome::PermError => "permerror",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The SPF result for the identity checked (the MAIL FROM domain, or the
/// HELO name for the null sender).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spf {
    pub result: Outcome,
    pub domain: String,
    /// For a `fail`, the domain's own explanation (its `exp=` text), when
    /// it was asked for: a refusal quotes it. Not spooled (a message
    /// refused at MAIL is never queued).
    #[serde(skip)]
    pub explanation: Option<String>,
}

/// One DKIM signature's result and its signing domain (d=).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dkim {
    pub result: Outcome,
    pub domain: String,
}

/// The DMARC result for the From domain and the policy it publishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dmarc {
    pub result: Outcome,
    pub domain: String,
    /// "none", "quarantine", "reject" ("" when no record was found).
    pub policy: String,
}

/// What is known of the sender's authenticity (kept in the envelope).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Auth {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spf: Option<Spf>,
    /// The signatures' results. None: DKIM was not checked (`[spam] dkim`
    /// off, a client inside, a message the check could not read, or an
    /// envelope spooled before "none" was told apart); empty: the message
    /// carries no signature (`dkim=none`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dkim: Option<Vec<Dkim>>,
    /// None when DMARC was not evaluated (with DKIM) or the From field
    /// names no single domain; `Outcome::None` when the domain publishes no
    /// policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dmarc: Option<Dmarc>,
}

impl Auth {
    pub fn is_empty(&self) -> bool {
        self.spf.is_none() && self.dkim.is_none() && self.dmarc.is_none()
    }

    /// Whether `sender` (an address) is vouched for: SPF passed for its
    /// domain, or a valid DKIM signature comes from that domain or a parent
    /// of it. A whitelist entry for a sender counts only then.
    pub fn vouches_for(&self, sender: &str) -> bool {
        let Some((_, domain)) = sender.rsplit_once('@') else {
            return false;
        };
        let domain = domain.to_ascii_lowercase();
        let spf = self
            .spf
            .as_ref()
            .is_some_and(|s| s.result == Outcome::Pass && s.domain.eq_ignore_ascii_case(&domain));
        let dkim = self.dkim.iter().flatten().any(|d| {
            let d_dom = d.domain.to_ascii_lowercase();
            d.result == Outcome::Pass && (domain == d_dom || domain.ends_with(&format!(".{d_dom}")))
        });
        spf || dkim
    }
}

fn dkim_outcome(r: &DkimResult) -> Outcome {
    use mail_auth::{dkim::DkimError, Error};
    match r {
        DkimResult::Pass => Outcome::Pass,
        // mail-auth calls a body that no longer matches its hash neutral;
        // RFC 6376 6.1.3 makes it a failed signature, and so do we.
        DkimResult::Neutral(Error::Dkim(DkimError::FailedBodyHashMatch)) => Outcome::Fail,
        DkimResult::Neutral(_) => Outcome::Neutral,
        DkimResult::Fail(_) => Outcome::Fail,
        DkimResult::PermError(_) => Outcome::PermError,
        DkimResult::TempError(_) => Outcome::TempError,
        DkimResult::None => Outcome::None,
    }
}

fn dmarc_outcome(r: &DmarcResult) -> Outcome {
    match r {
        DmarcResult::Pass => Outcome::Pass,
        DmarcResult::Fail(_) => Outcome::Fail,
        DmarcResult::TempError(_) => Outcome::TempError,
        DmarcResult::PermError(_) => Outcome::PermError,
        DmarcResult::None => Outcome::None,
    }
}

/// The most of a domain's explanation a refusal quotes: the reply line
/// stays well inside SMTP's 512 octets (RFC 5321 4.5.3.1.5).
const MAX_EXPLANATION: usize = 200;

/// The refusal at MAIL for an SPF `fail` when `[spam] spf = "reject"`
/// (RFC 7372: 5.7.23), None otherwise. The domain's explanation, when it
/// gave one, follows as its words ("DOMAIN explains: ...", as RFC 7208
/// 6.2 and 8.4 suggest, so that no one takes it for ours): printable
/// ASCII only, cut at [`MAX_EXPLANATION`] characters.
pub fn spf_refusal(mode: crate::config::SpfMode, spf: Option<&Spf>, ip: IpAddr) -> Option<String> {
    let s = spf?;
    (s.result == Outcome::Fail && mode == crate::config::SpfMode::Reject).then(|| {
        let mut reply = format!(
            "550 5.7.23 SPF validation failed: {} does not allow {ip} to send for it",
            s.domain
        );
        if let Some(text) = s.explanation.as_deref().map(str::trim) {
            if !text.is_empty() {
                let mut quoted: String = text
                    .chars()
                    .take(MAX_EXPLANATION)
                    .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
                    .collect();
                if text.chars().count() > MAX_EXPLANATION {
                    quoted.push_str("...");
                }
                reply.push_str(&format!("; {} explains: {quoted}", s.domain));
            }
        }
        reply
    })
}

/// The identity SPF checks: the MAIL FROM domain, or the HELO name for
/// the null sender.
fn spf_domain<'a>(helo: &'a str, sender: &'a str) -> &'a str {
    if sender.is_empty() {
        helo
    } else {
        sender.rsplit_once('@').map_or(helo, |(_, d)| d)
    }
}

/// SPF's result when the DNS gave no answer (in time, or at all:
/// [`crate::dns::Dns::server_answers`]).
pub fn spf_unanswered(helo: &str, sender: &str) -> Spf {
    Spf {
        result: Outcome::TempError,
        domain: spf_domain(helo, sender).to_string(),
        explanation: None,
    }
}

/// DKIM's and DMARC's results for `raw` when the DNS server is known
/// silent, so that nothing is asked: what a look-up without an answer
/// gives ([`unanswered`]). Only the header is parsed (no body hash: there
/// is no key to check one against), so this is quick whatever the size.
/// No DKIM result (None) when the message cannot be read as one.
pub fn dkim_dmarc_silent(raw: &[u8]) -> (Option<Vec<Dkim>>, Option<Dmarc>) {
    let header_end = crate::text::HeaderEnd::of(raw).body();
    match AuthenticatedMessage::parse(&raw[..header_end]) {
        Some(message) => unanswered(&message),
        None => (None, None),
    }
}

/// DKIM's and DMARC's results for `message` when the DNS gives no answer.
/// A signature is `temperror` (its key could not be fetched; one that
/// cannot be read at all is `neutral`, as mail-auth has it with an
/// answer); an unsigned message has none (`dkim=none`: it needs no DNS).
/// DMARC is `temperror` for the From domain (its policy could not be
/// fetched), and nothing when From names no single domain, as with an
/// answer.
fn unanswered(message: &AuthenticatedMessage<'_>) -> (Option<Vec<Dkim>>, Option<Dmarc>) {
    let malformed = message
        .errors
        .iter()
        .filter(|e| matches!(e.header, mail_auth::Error::Dkim(_)))
        .map(|_| Dkim {
            result: Outcome::Neutral,
            domain: String::new(),
        });
    let signed = message.dkim_headers.iter().map(|h| Dkim {
        result: Outcome::TempError,
        domain: h.header.d.clone(),
    });
    let dkim: Vec<Dkim> = malformed.chain(signed).collect();
    let mut domains = message
        .from
        .iter()
        .filter_map(|a| a.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()));
    let first = domains.next();
    let dmarc = match first {
        Some(d) if !d.is_empty() && domains.all(|o| o == d) => Some(Dmarc {
            result: Outcome::TempError,
            domain: d,
            policy: String::new(),
        }),
        _ => None,
    };
    (Some(dkim), dmarc)
}

/// The SPF check of one transaction. `helo` is the client's HELO/EHLO
/// name, `host` ours (for the `%{r}` macro), `sender` the MAIL FROM
/// address ("" for the null sender: then the HELO identity is checked).
/// At most `limit` in all, however many look-ups the record asks for.
/// With the result, for a `permerror` or `temperror`, a sentence saying
/// why (which term of whose record, which look-up), for the log and for
/// `mailward spam spf`. With `explain`, a `fail` also fetches the
/// domain's explanation (`exp=`).
pub async fn spf(
    auth: &MessageAuthenticator,
    ip: IpAddr,
    helo: &str,
    host: &str,
    sender: &str,
    limit: Duration,
    explain: bool,
) -> (Spf, Option<String>) {
    let domain = spf_domain(helo, sender);
    let mut check = spf_check::Check::new(&auth.0, ip, sender, helo, host, domain);
    let deadline = tokio::time::Instant::now() + limit;
    match tokio::time::timeout_at(deadline, check.run()).await {
        Ok(mut verdict) => {
            if explain && verdict.result == Outcome::Fail {
                // In what is left of the limit: a slow explanation loses
                // its text, never the result.
                verdict.explanation = tokio::time::timeout_at(deadline, check.explanation())
                    .await
                    .ok()
                    .flatten();
            }
            if let Some(why) = &verdict.why {
                tracing::debug!(target: "spam", domain, result = %verdict.result, why = %why, "SPF");
            }
            (
                Spf {
                    result: verdict.result,
                    domain: domain.to_string(),
                    explanation: verdict.explanation,
                },
                verdict.why,
            )
        }
        Err(_) => (
            spf_unanswered(helo, sender),
            Some(format!("no answer within {} s", limit.as_secs_f64())),
        ),
    }
}

/// DKIM signatures and DMARC for a received message (`raw`, our Received
/// header first), with the SPF result the session had. At most `limit`.
/// No DKIM result (None) when the message cannot be read as one.
pub async fn dkim_dmarc(
    auth: &MessageAuthenticator,
    raw: &[u8],
    mail_from: &str,
    helo: &str,
    spf: Option<&Spf>,
    limit: Duration,
) -> (Option<Vec<Dkim>>, Option<Dmarc>) {
    let Some(message) = AuthenticatedMessage::parse(raw) else {
        return (None, None);
    };
    let work = async {
        let outputs = auth.verify_dkim(&message).await;
        let dkim: Vec<Dkim> = outputs
            .iter()
            .map(|o| Dkim {
                result: dkim_outcome(o.result()),
                domain: o.signature().map(|s| s.d.clone()).unwrap_or_default(),
            })
            .collect();
        let mail_from_domain = match mail_from.rsplit_once('@') {
            Some((_, d)) => d,
            None => helo,
        };
        let spf_output = match spf {
            Some(s) => SpfOutput::new(s.domain.clone()).with_result(match s.result {
                Outcome::Pass => SpfResult::Pass,
                Outcome::Fail => SpfResult::Fail,
                Outcome::SoftFail => SpfResult::SoftFail,
                Outcome::Neutral => SpfResult::Neutral,
                Outcome::TempError => SpfResult::TempError,
                Outcome::PermError => SpfResult::PermError,
                Outcome::None => SpfResult::None,
            }),
            None => SpfOutput::new(mail_from_domain.to_string()),
        };
        let out = auth
            .verify_dmarc(DmarcParameters::new(
                &message,
                &outputs,
                mail_from_domain,
                &spf_output,
            ))
            .await;
        let result = out.result();
        // A domain without a policy is `dmarc=none` (RFC 7489 11.2), as
        // OpenDMARC writes it; no domain (several in From) is nothing.
        let dmarc = (!out.domain().is_empty()).then(|| Dmarc {
            result: dmarc_outcome(&result),
            domain: out.domain().to_string(),
            policy: match out.policy() {
                Policy::None => "none",
                Policy::Quarantine => "quarantine",
                Policy::Reject => "reject",
                Policy::Unspecified => "",
            }
            .to_string(),
        });
        (Some(dkim), dmarc)
    };
    tokio::time::timeout(limit, work)
        .await
        .unwrap_or_else(|_| unanswered(&message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spf(result: Outcome, domain: &str) -> Option<Spf> {
        Some(Spf {
            result,
            domain: domain.into(),
            explanation: None,
        })
    }

    #[test]
    fn a_refusal_quotes_the_domains_explanation_as_its_words() {
        use crate::config::SpfMode;
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let mut s = spf(Outcome::Fail, "example.org").unwrap();
        let plain =
            "550 5.7.23 SPF validation failed: example.org does not allow 192.0.2.7 to send for it";
        assert_eq!(spf_refusal(SpfMode::Reject, Some(&s), ip).unwrap(), plain);
        assert_eq!(spf_refusal(SpfMode::Score, Some(&s), ip), None);
        s.explanation = Some("See https://example.org/spf?ip=192.0.2.7".into());
        assert_eq!(
            spf_refusal(SpfMode::Reject, Some(&s), ip).unwrap(),
            format!("{plain}; example.org explains: See https://example.org/spf?ip=192.0.2.7")
        );
        // What could break the reply line is replaced; a long text is cut.
        s.explanation = Some(format!("a\r\nb\u{e9} {}", "x".repeat(500)));
        let reply = spf_refusal(SpfMode::Reject, Some(&s), ip).unwrap();
        assert!(reply.contains("explains: a??b? xxx"), "{reply}");
        assert!(reply.ends_with("x..."), "{reply}");
        assert!(reply.len() < 400, "{}", reply.len());
        assert!(reply.bytes().all(|b| (0x20..0x7f).contains(&b)));
        // An empty explanation says nothing.
        s.explanation = Some("  ".into());
        assert_eq!(spf_refusal(SpfMode::Reject, Some(&s), ip).unwrap(), plain);
        let mut pass = spf(Outcome::Pass, "example.org").unwrap();
        pass.explanation = Some("never quoted".into());
        assert_eq!(spf_refusal(SpfMode::Reject, Some(&pass), ip), None);
    }

    const UNSIGNED: &[u8] =
        b"From: Ann <ann@Other.Example>\r\nTo: bob@example.com\r\nSubject: hi\r\n\r\nHello.\r\n";
    const SIGNED: &[u8] = b"DKIM-Signature: v=1; a=rsa-sha256; c=simple/simple; d=other.example;\r\n s=sel; h=from:to:subject; bh=AAAA; b=AAAA\r\nFrom: ann@other.example\r\nTo: bob@example.com\r\nSubject: hi\r\n\r\nHello.\r\n";

    fn tempfail_dmarc(domain: &str) -> Option<Dmarc> {
        Some(Dmarc {
            result: Outcome::TempError,
            domain: domain.into(),
            policy: String::new(),
        })
    }

    #[test]
    fn without_dns_unsigned_is_none_a_signature_and_dmarc_are_temperror() {
        let (dkim, dmarc) = dkim_dmarc_silent(UNSIGNED);
        assert_eq!(dkim, Some(Vec::new()), "unsigned: dkim=none");
        assert_eq!(dmarc, tempfail_dmarc("other.example"));
        let (dkim, dmarc) = dkim_dmarc_silent(SIGNED);
        assert_eq!(
            dkim,
            Some(vec![Dkim {
                result: Outcome::TempError,
                domain: "other.example".into(),
            }])
        );
        assert_eq!(dmarc, tempfail_dmarc("other.example"));
        // Two From domains: DMARC does not apply, with or without DNS.
        let two = b"From: a@one.example, b@two.example\r\nSubject: x\r\n\r\nx\r\n";
        assert_eq!(dkim_dmarc_silent(two), (Some(Vec::new()), None));
        let auth = Auth {
            dkim: dkim_dmarc_silent(UNSIGNED).0,
            dmarc: dkim_dmarc_silent(UNSIGNED).1,
            ..Auth::default()
        };
        let header = auth.results_header("gw.example", false).unwrap_or_default();
        assert!(
            header.contains("dkim=none;")
                && header.contains("dmarc=temperror header.from=other.example"),
            "{header}"
        );
    }

    #[tokio::test]
    async fn a_look_up_without_an_answer_gives_the_same_as_a_silent_server() {
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let at = silent.local_addr().unwrap_or_else(|e| panic!("{e}"));
        // The resolver's own timeout is longer than the limit: the limit
        // cuts the work, as `timeouts.dns` does for the whole of it.
        let dns = crate::dns::Dns::new(Some(at), Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("{e}"));
        for raw in [UNSIGNED, SIGNED] {
            let got = dkim_dmarc(
                dns.authenticator(),
                raw,
                "ann@other.example",
                "mx.other.example",
                None,
                Duration::from_millis(300),
            )
            .await;
            assert_eq!(got, dkim_dmarc_silent(raw));
        }
    }

    #[test]
    fn only_a_pass_for_the_senders_domain_vouches() {
        let mut a = Auth {
            spf: spf(Outcome::Pass, "example.org"),
            ..Auth::default()
        };
        assert!(a.vouches_for("ceo@example.org"));
        assert!(a.vouches_for("ceo@EXAMPLE.org"));
        assert!(!a.vouches_for("ceo@other.example"));
        a.spf = spf(Outcome::SoftFail, "example.org");
        assert!(!a.vouches_for("ceo@example.org"));
        a.dkim = Some(vec![Dkim {
            result: Outcome::Pass,
            domain: "example.org".into(),
        }]);
        assert!(a.vouches_for("ceo@example.org"));
        assert!(a.vouches_for("ceo@mail.example.org"));
        assert!(!a.vouches_for("ceo@badexample.org"));
        a.dkim = Some(vec![Dkim {
            result: Outcome::Fail,
            domain: "example.org".into(),
        }]);
        assert!(!a.vouches_for("ceo@example.org"));
        assert!(!a.vouches_for(""));
    }

    #[test]
    fn spooled_results_read_back_and_unsigned_is_not_unchecked() {
        // An envelope spooled before DKIM's "none" was told apart: its
        // signatures still count, and no signatures means "not checked".
        let old: Auth =
            serde_json::from_str(r#"{"dkim":[{"result":"pass","domain":"example.org"}]}"#)
                .unwrap_or_else(|e| panic!("{e}"));
        assert!(old.vouches_for("ceo@example.org"));
        let old: Auth = serde_json::from_str("{}").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(old.dkim, None);
        // Checked and unsigned survives the spool as such.
        let unsigned = Auth {
            dkim: Some(Vec::new()),
            ..Auth::default()
        };
        let text = serde_json::to_string(&unsigned).unwrap_or_else(|e| panic!("{e}"));
        let back: Auth = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.dkim, Some(Vec::new()), "{text}");
    }
}
