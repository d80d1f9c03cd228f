//! Access rules (`access.*_rules`): `"allow"` or `"deny"` followed by what
//! they match, checked in order; the first rule that matches decides. This
//! file parses and evaluates rules; which list is checked at which SMTP
//! stage belongs to the SMTP session.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use super::pattern::Pattern;

/// What a matching rule decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleAction {
    /// Let the client go on.
    Allow,
    /// Refuse the connection, greeting, sender or recipient.
    Deny,
}

/// What a rule looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matcher {
    /// `any`: every subject.
    Any,
    /// `ip 10.0.0.0/8` or `ip 192.0.2.1`: the client's address.
    Ip(IpNet),
    /// `host *.example.com`: the client's name (reverse DNS or HELO,
    /// depending on the list); never matches when there is none.
    Host(Pattern),
    /// `address *@example.com`: the envelope address (MAIL FROM or RCPT TO,
    /// depending on the list); never matches when there is none.
    Address(Pattern),
}

/// One access rule, e.g. `"deny ip 10.0.0.0/8"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Allow or deny.
    pub action: RuleAction,
    /// What it applies to.
    pub matcher: Matcher,
}

/// What a rule list is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subject<'a> {
    /// The client's address.
    pub ip: IpAddr,
    /// The client's host name (reverse DNS or HELO), if known.
    pub host: Option<&'a str>,
    /// The envelope address under consideration, if any.
    pub address: Option<&'a str>,
}

const RULE_EXAMPLE: &str = "expected a rule like \"allow any\", \"deny ip 10.0.0.0/8\", \
                            \"allow host *.example.com\" or \"deny address *@example.com\"";

impl Rule {
    /// Parses `ACTION MATCHER`: `allow|deny` then `any`, `ip ADDR[/N]`,
    /// `host GLOB` or `address GLOB` (keywords in any case).
    pub fn parse(text: &str) -> Result<Rule, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let bad = |why: &str| format!("{RULE_EXAMPLE}, got {text:?}{why}");
        let action = match words.first().map(|w| w.to_ascii_lowercase()).as_deref() {
            Some("allow") => RuleAction::Allow,
            Some("deny") => RuleAction::Deny,
            _ => return Err(bad(" (a rule starts with \"allow\" or \"deny\")")),
        };
        let kind = words.get(1).map(|w| w.to_ascii_lowercase());
        let matcher = match (kind.as_deref(), &words[words.len().min(2)..]) {
            (Some("any"), []) => Matcher::Any,
            (Some("ip"), [net]) => {
                Matcher::Ip(parse_net(net).map_err(|e| bad(&format!(" ({e})")))?)
            }
            (Some("host"), [glob]) => Matcher::Host(Pattern::new(glob)),
            (Some("address"), [glob]) => Matcher::Address(Pattern::new(glob)),
            _ => return Err(bad("")),
        };
        Ok(Rule { action, matcher })
    }

    /// Why this rule can never match, if it cannot: an address pattern
    /// with `<` or `>` (as Postfix access maps write the null sender, `<>`)
    /// is compared with bare addresses, and the null sender has none
    /// (walkBT F3: `deny address <>` was valid, and `<>` still got 250).
    /// `address`: what the list's address rules are compared with, the
    /// sender (mail_from_rules) or the recipient (rcpt_rules); none in
    /// connect_rules and helo_rules, where an address rule never matches
    /// (walkBU U6).
    pub fn never_matches(&self, address: Option<AddressOf>) -> Option<String> {
        match (&self.matcher, address) {
            (Matcher::Address(_), None) => Some(format!(
                "{self}: never matches: no address is known yet at this stage; address rules \
                 belong in mail_from_rules and rcpt_rules"
            )),
            (Matcher::Address(p), Some(of)) if p.as_str().contains(['<', '>']) => Some(format!(
                "{self}: never matches: addresses are compared bare (user@example.com, without < >){}",
                match of {
                    _ if !p.as_str().trim_matches(['<', '>']).is_empty() => "",
                    AddressOf::Sender => {
                        ", and the null sender <> has no address, so no address rule matches it"
                    }
                    AddressOf::Recipient => ", and no recipient is <>",
                }
            )),
            _ => None,
        }
    }

    /// Whether this rule applies to `subject`.
    pub fn matches(&self, subject: &Subject<'_>) -> bool {
        match &self.matcher {
            Matcher::Any => true,
            Matcher::Ip(net) => net_contains(net, subject.ip),
            Matcher::Host(p) => subject
                .host
                .is_some_and(|h| p.matches(h.strip_suffix('.').unwrap_or(h))),
            Matcher::Address(p) => subject.address.is_some_and(|a| p.matches(a)),
        }
    }
}

/// What a list's address rules are compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressOf {
    Sender,
    Recipient,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let action = match self.action {
            RuleAction::Allow => "allow",
            RuleAction::Deny => "deny",
        };
        match &self.matcher {
            Matcher::Any => write!(f, "{action} any"),
            Matcher::Ip(net) => write!(f, "{action} ip {net}"),
            Matcher::Host(p) => write!(f, "{action} host {p}"),
            Matcher::Address(p) => write!(f, "{action} address {p}"),
        }
    }
}

/// The action of the first rule that matches `subject`, or `None` when none
/// does (the caller decides the default).
pub fn first_match(rules: &[Rule], subject: &Subject<'_>) -> Option<RuleAction> {
    rules.iter().find(|r| r.matches(subject)).map(|r| r.action)
}

/// A network `10.0.0.0/8` or a single address `192.0.2.1` (as /32 or /128).
pub fn parse_net(text: &str) -> Result<IpNet, String> {
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net);
    }
    text.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("{text:?} is not an address or network like \"10.0.0.0/8\""))
}

/// Whether `net` holds `ip`, seeing an IPv4-mapped IPv6 address
/// (`::ffff:192.0.2.1`) as the IPv4 address it carries.
pub fn net_contains(net: &IpNet, ip: IpAddr) -> bool {
    net.contains(&ip) || net.contains(&ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(texts: &[&str]) -> Vec<Rule> {
        texts.iter().map(|t| Rule::parse(t).unwrap()).collect()
    }

    #[test]
    fn parse() {
        assert_eq!(
            Rule::parse("allow any").unwrap(),
            Rule {
                action: RuleAction::Allow,
                matcher: Matcher::Any
            }
        );
        assert_eq!(
            Rule::parse("DENY  IP 10.0.0.0/8").unwrap(),
            Rule {
                action: RuleAction::Deny,
                matcher: Matcher::Ip("10.0.0.0/8".parse().unwrap())
            }
        );
        assert_eq!(
            Rule::parse("deny ip 192.0.2.1").unwrap().matcher,
            Matcher::Ip("192.0.2.1/32".parse().unwrap())
        );
        assert_eq!(
            Rule::parse("deny ip 2001:db8::/32").unwrap().matcher,
            Matcher::Ip("2001:db8::/32".parse().unwrap())
        );
        assert_eq!(
            Rule::parse("allow host *.example.com").unwrap().matcher,
            Matcher::Host(Pattern::new("*.example.com"))
        );
        assert_eq!(
            Rule::parse("deny address *@spam.example").unwrap().matcher,
            Matcher::Address(Pattern::new("*@spam.example"))
        );
        for text in [
            "allow any",
            "deny ip 10.0.0.0/8",
            "allow host *.example.com",
            "deny address *@x",
        ] {
            assert_eq!(Rule::parse(text).unwrap().to_string(), text);
        }
        for bad in [
            "",
            "allow",
            "permit any",
            "allow any more",
            "deny ip",
            "deny ip 10.0.0.0/33",
            "deny ip example.com",
            "deny host",
            "deny host a b",
            "deny mx x",
        ] {
            let e = Rule::parse(bad).unwrap_err();
            assert!(e.starts_with("expected a rule like"), "{bad}: {e}");
        }
    }

    #[test]
    fn first_match_wins() {
        let list = rules(&[
            "allow ip 10.1.0.0/16",
            "deny ip 10.0.0.0/8",
            "deny host *.dialup.example",
            "allow address *@friends.example",
            "deny address *@*",
        ]);
        let s = |ip: &str, host: Option<&'static str>, address: Option<&'static str>| Subject {
            ip: ip.parse().unwrap(),
            host,
            address,
        };
        assert_eq!(
            first_match(&list, &s("10.1.2.3", None, None)),
            Some(RuleAction::Allow)
        );
        assert_eq!(
            first_match(&list, &s("10.2.2.3", None, None)),
            Some(RuleAction::Deny)
        );
        assert_eq!(
            first_match(&list, &s("::ffff:10.2.2.3", None, None)),
            Some(RuleAction::Deny)
        );
        assert_eq!(first_match(&list, &s("192.0.2.1", None, None)), None);
        assert_eq!(
            first_match(&list, &s("192.0.2.1", Some("H1.Dialup.Example."), None)),
            Some(RuleAction::Deny)
        );
        assert_eq!(
            first_match(
                &list,
                &s("192.0.2.1", Some("mx.example"), Some("a@friends.example"))
            ),
            Some(RuleAction::Allow)
        );
        assert_eq!(
            first_match(&list, &s("192.0.2.1", None, Some("a@other.example"))),
            Some(RuleAction::Deny)
        );
        assert_eq!(first_match(&[], &s("192.0.2.1", None, None)), None);
        assert_eq!(
            first_match(&rules(&["allow any"]), &s("192.0.2.1", None, None)),
            Some(RuleAction::Allow)
        );
    }
}
