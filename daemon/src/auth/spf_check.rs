//! RFC 7208's check_host(): the evaluation of a domain's SPF record for a
//! client address, over the gateway's resolver.
//!
//! Why not mail-auth's own: measured against the RFC's test suite
//! (tests/tests/spf.rs), mail-auth 0.13 diverged on 56 of 203 tests. Some
//! divergences let mail through that the RFC refuses: an IPv4 client
//! matched `ip6:::/0` (a `pass` for anyone), and records the RFC calls
//! syntax errors were evaluated. Others refused what it allows: validated
//! `ptr` names with a trailing dot never matched, and a macro that expands
//! to a name the DNS cannot carry gave `temperror` (which also made the
//! gateway doubt a DNS server that was fine). The record grammar, the
//! macros and this evaluation are ours; mail-auth still checks DKIM and
//! DMARC.

use super::spf_macro::{MacroString, Place, Vars};
use super::spf_record::{is_spf, Mechanism, Qualifier, Record};
use super::Outcome;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::domain::Name;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::pin::Pin;

/// Terms that query the DNS, per check (section 4.6.4).
const MAX_LOOKUPS: u32 = 10;
/// Look-ups that find nothing, per check (section 4.6.4).
const MAX_VOID: u32 = 2;
/// Address look-ups per `mx`, and names checked per `ptr` (section 4.6.4).
const MAX_NAMES: usize = 10;

/// A result, and for the errors a sentence saying why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub result: Outcome,
    pub why: Option<String>,
    /// For a `fail`, the failing domain's own explanation (its `exp=`
    /// text, section 6.2), when asked for and usable.
    pub explanation: Option<String>,
}

impl Verdict {
    fn of(result: Outcome) -> Verdict {
        Verdict {
            result,
            why: None,
            explanation: None,
        }
    }

    fn error(result: Outcome, why: String) -> Verdict {
        Verdict {
            result,
            why: Some(why),
            explanation: None,
        }
    }
}

/// What a DNS question gave.
enum Answer<T> {
    Found(Vec<T>),
    /// No such name, or no record of the type (a "void" look-up).
    Void,
}

/// One check_host() run: the client, the identities, and the limits
/// shared by every record it reaches through include and redirect.
pub struct Check<'a> {
    resolver: &'a TokioResolver,
    ip: IpAddr,
    sender: String,
    helo: &'a str,
    receiver: &'a str,
    /// The identity checked: the MAIL FROM domain or the HELO name.
    domain: String,
    lookups: u32,
    voids: u32,
    /// The client's validated names, looked up once for every `ptr` term
    /// and `%{p}` macro of the check.
    names: Option<Vec<String>>,
    /// The `exp=` of the record whose directive failed last, and that
    /// record's domain: what [`Check::explanation`] fetches.
    failed_exp: Option<(MacroString, String)>,
}

/// A domain-spec expanded: the text (for include and redirect, and the
/// messages) and the DNS name it stands for.
struct Target {
    text: String,
    name: Name,
}

impl<'a> Check<'a> {
    /// `sender` is the MAIL FROM address, or "" when the HELO identity is
    /// checked (then `postmaster@HELO` stands for it, section 4.3);
    /// `domain` is the identity's domain.
    pub fn new(
        resolver: &'a TokioResolver,
        ip: IpAddr,
        sender: &str,
        helo: &'a str,
        receiver: &'a str,
        domain: &str,
    ) -> Check<'a> {
        // An IPv4-mapped client is an IPv4 client (section 5: IPv4
        // addresses are matched by ip4 and A records only).
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let sender = match sender.rsplit_once('@') {
            Some((local, d)) if !local.is_empty() => format!("{local}@{d}"),
            Some((_, d)) => format!("postmaster@{d}"),
            None => format!("postmaster@{domain}"),
        };
        Check {
            resolver,
            ip,
            sender,
            helo,
            receiver,
            domain: domain.to_string(),
            lookups: 0,
            voids: 0,
            names: None,
            failed_exp: None,
        }
    }

    /// check_host() for the identity's domain (section 4).
    pub async fn run(&mut self) -> Verdict {
        let domain = std::mem::take(&mut self.domain);
        // Section 4.3: a malformed or single-label identity has no policy.
        if to_name(&domain).is_none_or(|n| n.num_labels() < 2) || domain.starts_with('[') {
            return Verdict::of(Outcome::None);
        }
        self.host(domain).await
    }

    /// The evaluation of one domain's record; boxed, since include and
    /// redirect recurse (bounded by [`MAX_LOOKUPS`]).
    fn host(&mut self, domain: String) -> Pin<Box<dyn Future<Output = Verdict> + Send + '_>> {
        Box::pin(async move {
            let record = match self.record(&domain).await {
                Ok(Some(r)) => r,
                Ok(None) => return Verdict::of(Outcome::None),
                Err(v) => return v,
            };
            for directive in &record.directives {
                match self.matches(&directive.mechanism, &domain).await {
                    Ok(true) => {
                        if directive.qualifier == Qualifier::Fail {
                            // The last record to fail is the one whose
                            // explanation counts (section 6.2): an
                            // included record's fail is overwritten by the
                            // including record's own (include only
                            // matches), and a redirect's target writes its
                            // own, or none.
                            self.failed_exp = record.exp.clone().map(|e| (e, domain.clone()));
                        }
                        return Verdict::of(match directive.qualifier {
                            Qualifier::Pass => Outcome::Pass,
                            Qualifier::Fail => Outcome::Fail,
                            Qualifier::SoftFail => Outcome::SoftFail,
                            Qualifier::Neutral => Outcome::Neutral,
                        });
                    }
                    Ok(false) => {}
                    Err(v) => return v,
                }
            }
            // Section 6.1: redirect only when no mechanism matched.
            let Some(redirect) = &record.redirect else {
                return Verdict::of(Outcome::Neutral);
            };
            if let Err(v) = self.count_lookup() {
                return v;
            }
            let Some(target) = self.target(redirect, &domain).await else {
                return Verdict::error(
                    Outcome::PermError,
                    format!("{domain}: redirect= names no valid domain"),
                );
            };
            let verdict = self.host(target.text.clone()).await;
            if verdict.result == Outcome::None {
                return Verdict::error(
                    Outcome::PermError,
                    format!("{domain}: redirect={} has no SPF record", target.text),
                );
            }
            verdict
        })
    }

    /// The one SPF record of `domain` (section 4.5): None when it has
    /// none; permerror when it has two or one that breaks the grammar.
    async fn record(&mut self, domain: &str) -> Result<Option<Record>, Verdict> {
        let Some(name) = to_name(domain) else {
            return Ok(None);
        };
        let txts = match self.ask(&name, RecordType::TXT).await? {
            Answer::Found(records) => records,
            Answer::Void => return Ok(None),
        };
        let mut spf = txts.into_iter().filter_map(|r| match r {
            RData::TXT(txt) => {
                let joined: Vec<u8> = txt
                    .txt_data
                    .iter()
                    .flat_map(|s| s.iter().copied())
                    .collect();
                is_spf(&joined).then_some(joined)
            }
            _ => None,
        });
        let Some(first) = spf.next() else {
            return Ok(None);
        };
        if spf.next().is_some() {
            return Err(Verdict::error(
                Outcome::PermError,
                format!("{domain} publishes more than one SPF record"),
            ));
        }
        Record::parse(&first).map(Some).map_err(|e| {
            Verdict::error(
                Outcome::PermError,
                format!("the SPF record of {domain}: {e}"),
            )
        })
    }

    async fn matches(&mut self, mechanism: &Mechanism, domain: &str) -> Result<bool, Verdict> {
        match mechanism {
            Mechanism::All => Ok(true),
            Mechanism::Ip4 { net, len } => Ok(match self.ip {
                IpAddr::V4(ip) => in_v4(ip, *net, *len),
                IpAddr::V6(_) => false,
            }),
            Mechanism::Ip6 { net, len } => Ok(match self.ip {
                IpAddr::V6(ip) => in_v6(ip, *net, *len),
                IpAddr::V4(_) => false,
            }),
            Mechanism::Include(spec) => {
                self.count_lookup()?;
                let Some(target) = self.target(spec, domain).await else {
                    return Err(Verdict::error(
                        Outcome::PermError,
                        format!("{domain}: include names no valid domain"),
                    ));
                };
                // Section 5.2: what an included record's result means.
                let verdict = self.host(target.text.clone()).await;
                match verdict.result {
                    Outcome::Pass => Ok(true),
                    Outcome::Fail | Outcome::SoftFail | Outcome::Neutral => Ok(false),
                    Outcome::TempError => Err(verdict),
                    Outcome::None => Err(Verdict::error(
                        Outcome::PermError,
                        format!("{domain}: include:{} has no SPF record", target.text),
                    )),
                    Outcome::PermError => Err(verdict),
                }
            }
            Mechanism::A { name, v4, v6 } => {
                self.count_lookup()?;
                let Some(target) = self.target_or(name.as_ref(), domain).await else {
                    return self.void(domain).map(|()| false);
                };
                self.address_matches(&target.name, *v4, *v6, true).await
            }
            Mechanism::Mx { name, v4, v6 } => {
                self.count_lookup()?;
                let Some(target) = self.target_or(name.as_ref(), domain).await else {
                    return self.void(domain).map(|()| false);
                };
                let exchanges: Vec<Name> = match self.ask(&target.name, RecordType::MX).await? {
                    Answer::Found(records) => records
                        .into_iter()
                        .filter_map(|r| match r {
                            RData::MX(mx) if !mx.exchange.is_root() => Some(mx.exchange),
                            _ => None,
                        })
                        .collect(),
                    Answer::Void => return self.void(domain).map(|()| false),
                };
                if exchanges.len() > MAX_NAMES {
                    return Err(Verdict::error(
                        Outcome::PermError,
                        format!("{} has more than {MAX_NAMES} MX records", target.text),
                    ));
                }
                for exchange in &exchanges {
                    if self.address_matches(exchange, *v4, *v6, false).await? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Mechanism::Ptr(spec) => {
                self.count_lookup()?;
                let Some(target) = self.target_or(spec.as_ref(), domain).await else {
                    return Ok(false);
                };
                let target = target.text.to_ascii_lowercase();
                // Section 5.5: a DNS error while looking up PTR records
                // means no match, not an error.
                let names = self.validated_names().await;
                Ok(names.iter().any(|n| {
                    n == &target
                        || n.strip_suffix(target.as_str())
                            .is_some_and(|p| p.ends_with('.'))
                }))
            }
            Mechanism::Exists(spec) => {
                self.count_lookup()?;
                let Some(target) = self.target(spec, domain).await else {
                    return self.void(domain).map(|()| false);
                };
                // Always an A query, whatever the client (section 5.7).
                match self.ask(&target.name, RecordType::A).await? {
                    Answer::Found(r) => Ok(r.iter().any(|d| matches!(d, RData::A(_)))),
                    Answer::Void => self.void(domain).map(|()| false),
                }
            }
        }
    }

    /// Whether `host`'s addresses (A for an IPv4 client, AAAA for IPv6)
    /// hold the client within the CIDR length. A name without addresses
    /// is a void look-up when it is the mechanism's own (`a`), not when
    /// it is one of an `mx`'s exchanges or a `ptr` name. Names from the
    /// DNS are asked as they came, label by label, not through text.
    async fn address_matches(
        &mut self,
        host: &Name,
        v4: u8,
        v6: u8,
        own: bool,
    ) -> Result<bool, Verdict> {
        let kind = match self.ip {
            IpAddr::V4(_) => RecordType::A,
            IpAddr::V6(_) => RecordType::AAAA,
        };
        let records = match self.ask(host, kind).await? {
            Answer::Found(r) => r,
            Answer::Void if own => return self.void(&text_of(host)).map(|()| false),
            Answer::Void => return Ok(false),
        };
        Ok(records.iter().any(|r| match (r, self.ip) {
            (RData::A(a), IpAddr::V4(ip)) => in_v4(ip, a.0, v4),
            (RData::AAAA(a), IpAddr::V6(ip)) => in_v6(ip, a.0, v6),
            _ => false,
        }))
    }

    /// The client's names that lead back to it (PTR, then A/AAAA of each
    /// of at most ten names), lower case, without the final dot; looked up
    /// once per check.
    async fn validated_names(&mut self) -> Vec<String> {
        if let Some(names) = &self.names {
            return names.clone();
        }
        let mut names = Vec::new();
        if let Ok(Answer::Found(ptrs)) = self.ask(&Name::from(self.ip), RecordType::PTR).await {
            for ptr in ptrs.into_iter().take(MAX_NAMES) {
                let RData::PTR(ptr) = ptr else { continue };
                if let Ok(true) = self.address_matches(&ptr.0, 32, 128, false).await {
                    names.push(text_of(&ptr.0).to_ascii_lowercase());
                }
            }
        }
        self.names = Some(names.clone());
        names
    }

    /// A domain-spec expanded (section 4.8): names over 253 characters
    /// lose labels on the left. None when the expansion is no name.
    async fn target(&mut self, spec: &MacroString, domain: &str) -> Option<Target> {
        let validated = self.validated_for(spec, domain).await;
        let mut name = spec.expand(&self.vars(domain, validated.as_deref()));
        if name.ends_with('.') {
            name.pop();
        }
        while name.len() > 253 {
            name = name.split_once('.')?.1.to_string();
        }
        let dns = to_name(&name)?;
        Some(Target {
            text: name,
            name: dns,
        })
    }

    /// The validated name `%{p}` stands for, when `spec` has one.
    async fn validated_for(&mut self, spec: &MacroString, domain: &str) -> Option<String> {
        if !spec.needs_validated_name() {
            return None;
        }
        let names = self.validated_names().await;
        // RFC 7208 7.3: prefer the domain itself or a subdomain.
        let domain = domain.to_ascii_lowercase();
        let suffix = format!(".{domain}");
        names
            .iter()
            .find(|n| **n == domain || n.ends_with(&suffix))
            .or(names.first())
            .cloned()
    }

    fn vars<'v>(&'v self, domain: &'v str, validated: Option<&'v str>) -> Vars<'v> {
        Vars {
            sender: &self.sender,
            domain,
            ip: self.ip,
            helo: self.helo,
            receiver: self.receiver,
            validated,
        }
    }

    /// After [`Check::run`] gave `fail`, the failing domain's explanation
    /// (section 6.2): the one TXT record of its `exp=` name, read as an
    /// explain-string and expanded. None, as if there were no `exp=`,
    /// when the look-up fails or finds no record or several, or the text
    /// is not ASCII or breaks the macro syntax. One more look-up, not
    /// counted as a term or a void one (section 4.6.4 lists the terms
    /// that count; the suite's `exp-void`), so worth making only where
    /// someone reads the text (a refusal, `mailward spam spf`).
    pub async fn explanation(&mut self) -> Option<String> {
        let (spec, domain) = self.failed_exp.take()?;
        let domain = domain.as_str();
        let target = self.target(&spec, domain).await?;
        let lookup = self
            .resolver
            .lookup(target.name.clone(), RecordType::TXT)
            .await
            .ok()?;
        let mut texts = lookup.answers().iter().filter_map(|r| match &r.data {
            RData::TXT(txt) => Some(txt),
            _ => None,
        });
        let (Some(txt), None) = (texts.next(), texts.next()) else {
            return None;
        };
        // The record's strings joined with nothing between them.
        let joined: Vec<u8> = txt
            .txt_data
            .iter()
            .flat_map(|s| s.iter().copied())
            .collect();
        let text = String::from_utf8(joined).ok().filter(|t| t.is_ascii())?;
        // explain-string = *( macro-string / SP ): the spaces stay as
        // they are, the words between them are macro strings.
        let mut words = Vec::new();
        for word in text.split(' ') {
            words.push(MacroString::parse(word, Place::Explanation).ok()?);
        }
        let mut out = Vec::with_capacity(words.len());
        for word in &words {
            let validated = self.validated_for(word, domain).await;
            out.push(word.expand(&self.vars(domain, validated.as_deref())));
        }
        Some(out.join(" "))
    }

    /// A mechanism's domain-spec, or the current domain when it has none.
    async fn target_or(&mut self, spec: Option<&MacroString>, domain: &str) -> Option<Target> {
        match spec {
            Some(spec) => self.target(spec, domain).await,
            None => to_name(domain).map(|name| Target {
                text: domain.to_string(),
                name,
            }),
        }
    }

    fn count_lookup(&mut self) -> Result<(), Verdict> {
        self.lookups += 1;
        if self.lookups > MAX_LOOKUPS {
            return Err(Verdict::error(
                Outcome::PermError,
                format!("more than {MAX_LOOKUPS} DNS-querying terms"),
            ));
        }
        Ok(())
    }

    /// A look-up that found nothing: past the second, permerror.
    fn void(&mut self, name: &str) -> Result<(), Verdict> {
        self.voids += 1;
        if self.voids > MAX_VOID {
            return Err(Verdict::error(
                Outcome::PermError,
                format!("more than {MAX_VOID} look-ups found nothing (the last: {name})"),
            ));
        }
        Ok(())
    }

    /// One question to the resolver; a failure (timeout, SERVFAIL) is a
    /// temperror.
    async fn ask(&mut self, name: &Name, kind: RecordType) -> Result<Answer<RData>, Verdict> {
        match self.resolver.lookup(name.clone(), kind).await {
            Ok(lookup) => {
                let records: Vec<RData> = lookup
                    .answers()
                    .iter()
                    .filter(|r| r.record_type() == kind)
                    .map(|r| r.data.clone())
                    .collect();
                Ok(if records.is_empty() {
                    Answer::Void
                } else {
                    Answer::Found(records)
                })
            }
            Err(e) if is_void(&e) => Ok(Answer::Void),
            Err(e) => Err(Verdict::error(
                Outcome::TempError,
                format!("{}: {kind} look-up failed: {e}", text_of(name)),
            )),
        }
    }
}

/// A name's labels joined by dots, as they are (no escapes), without
/// the final dot.
fn text_of(name: &Name) -> String {
    name.iter()
        .map(String::from_utf8_lossy)
        .collect::<Vec<_>>()
        .join(".")
}

fn is_void(e: &NetError) -> bool {
    e.is_no_records_found() || e.is_nx_domain()
}

/// A name the DNS can carry: labels of 1 to 63 octets, 253 in all.
/// Labels are taken as they are (a macro may put a space or '%' in one).
fn to_name(domain: &str) -> Option<Name> {
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    if domain.is_empty() || domain.len() > 253 {
        return None;
    }
    let labels: Vec<&[u8]> = domain.split('.').map(str::as_bytes).collect();
    if labels.iter().any(|l| l.is_empty() || l.len() > 63) {
        return None;
    }
    Name::from_labels(labels).ok()
}

fn in_v4(ip: Ipv4Addr, net: Ipv4Addr, len: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, len: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    u128::from(ip) & mask == u128::from(net) & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_match_by_prefix() {
        let ip: Ipv4Addr = "192.0.2.77".parse().unwrap();
        assert!(in_v4(ip, "192.0.2.0".parse().unwrap(), 24));
        assert!(!in_v4(ip, "192.0.3.0".parse().unwrap(), 24));
        assert!(in_v4(ip, "10.0.0.0".parse().unwrap(), 0));
        assert!(in_v4(ip, ip, 32));
        assert!(!in_v4(ip, "192.0.2.76".parse().unwrap(), 32));
        let ip6: Ipv6Addr = "2001:db8::1".parse().unwrap();
        assert!(in_v6(ip6, "2001:db8::".parse().unwrap(), 32));
        assert!(in_v6(ip6, "::".parse().unwrap(), 0));
        assert!(!in_v6(ip6, "2001:db9::".parse().unwrap(), 32));
    }

    #[test]
    fn names_the_dns_cannot_carry_are_no_names() {
        assert!(to_name("example.com").is_some());
        assert!(to_name("example.com.").is_some());
        assert!(to_name("a b.%20.example.com").is_some());
        assert!(to_name("a..example.com").is_none());
        assert!(to_name("").is_none());
        assert!(to_name(&format!("{}.com", "a".repeat(64))).is_none());
        assert!(to_name(&format!("{}com", "a.".repeat(130))).is_none());
    }
}
