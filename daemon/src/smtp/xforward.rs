//! Postfix's XFORWARD extension (XFORWARD_README): a content filter or
//! before-queue proxy in front of us (Postfix's `smtp` client with
//! `smtp_send_xforward_command = yes`, or its `smtpd` proxy) tells us who
//! the *original* client was, so that logs, raw records, statistics, the
//! spam lists, DNSBL scoring and SPF see that client instead of the
//! loopback address of the MTA that handed the message over.
//!
//! As in Postfix, the forwarded identity is for what we *record and score*,
//! not for access control: relay permission and the access rules stay with
//! the connecting peer (XCLIENT, which would change them, is not offered).
//! Only clients in `relay_networks` may use it, and it is only announced to
//! them. The attributes last for one mail transaction: they are forgotten
//! after the end of DATA, RSET and a new EHLO/HELO (Postfix forgets them at
//! the end of each transaction too, and its client sends them again before
//! every MAIL).

use super::command::ParseError;
use crate::text::xtext_decode;
use std::net::IpAddr;

/// The attribute names announced after `XFORWARD` in the EHLO reply.
pub const ANNOUNCED: &str = "XFORWARD NAME ADDR PORT PROTO HELO IDENT SOURCE";

/// What a forwarding MTA told us about the original client. `None` for an
/// attribute not sent, or sent as `[UNAVAILABLE]`/`[TEMPUNAVAIL]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forwarded {
    /// The client's verified host name.
    pub name: Option<String>,
    pub addr: Option<IpAddr>,
    pub port: Option<u16>,
    /// SMTP or ESMTP (as the client spoke to the first MTA).
    pub proto: Option<String>,
    pub helo: Option<String>,
    /// The first MTA's own message ID (logged beside ours).
    pub ident: Option<String>,
    /// LOCAL or REMOTE.
    pub source: Option<String>,
}

const SYNTAX: ParseError = ParseError::other("501 5.5.4 Syntax: XFORWARD attribute=value...");
const BAD_NAME: ParseError = ParseError::other("501 5.5.4 Bad XFORWARD attribute name");
const BAD_VALUE: ParseError = ParseError::other("501 5.5.4 Bad XFORWARD attribute value");
const BAD_ADDR: ParseError = ParseError::other("501 5.5.4 Bad XFORWARD address syntax");

/// Longest attribute value kept (Postfix limits a name to 255 octets; an
/// IDENT or HELO beyond that is not something we want in a log line).
const MAX_VALUE: usize = 255;

impl Forwarded {
    /// Applies the attributes of one XFORWARD command (the text after the
    /// verb) on top of what earlier commands of this transaction said:
    /// attributes may come in several commands. Nothing is changed when the
    /// line is refused (the error carries the reply, in Postfix's wording).
    pub fn apply(&mut self, args: &str) -> Result<(), ParseError> {
        let mut next = self.clone();
        let mut any = false;
        for item in args.split_ascii_whitespace() {
            any = true;
            let (name, raw) = item.split_once('=').ok_or(SYNTAX)?;
            let value = xtext_decode(raw).ok_or(BAD_VALUE)?;
            if value.len() > MAX_VALUE || value.bytes().any(|b| b.is_ascii_control()) {
                return Err(BAD_VALUE);
            }
            let value = match value.as_str() {
                "[UNAVAILABLE]" | "[TEMPUNAVAIL]" => None,
                _ => Some(value),
            };
            match name.to_ascii_uppercase().as_str() {
                // Both go into our Received line, which filters downstream
                // parse (walkAH 7: `HELO=fake (trusted.example.com
                // [10.0.0.1])` put a made-up relay there): a NAME that is no
                // host name is unknown, and HELO is neutered, as Postfix's
                // xforward_cmd does.
                "NAME" => next.name = value.filter(|v| crate::text::is_hostname(v)),
                "HELO" => next.helo = value.map(|v| neuter(&v)),
                "IDENT" => next.ident = value.map(|v| neuter(&v)),
                "ADDR" => next.addr = value.as_deref().map(parse_addr).transpose()?,
                "PORT" => {
                    next.port = value
                        .as_deref()
                        .map(|v| v.parse::<u16>().map_err(|_| BAD_VALUE))
                        .transpose()?
                }
                "PROTO" => next.proto = value,
                "SOURCE" => next.source = value,
                _ => return Err(BAD_NAME),
            }
        }
        if !any {
            return Err(SYNTAX);
        }
        *self = next;
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        *self == Forwarded::default()
    }
}

/// Characters that could make a forwarded value read as more than one
/// token in a Received line or a log (Postfix's NEUTER_CHARACTERS), each
/// replaced with `?`.
fn neuter(value: &str) -> String {
    value
        .chars()
        .map(|c| if " <>()\\\";@".contains(c) { '?' } else { c })
        .collect()
}

/// An address as Postfix forwards it: IPv4 text, or IPv6 text with an
/// optional `IPv6:` prefix; IPv4-mapped IPv6 becomes IPv4, as a direct
/// client's address does at session start.
fn parse_addr(text: &str) -> Result<IpAddr, ParseError> {
    let text = text
        .get(..5)
        .filter(|p| p.eq_ignore_ascii_case("ipv6:"))
        .and_then(|_| text.get(5..))
        .unwrap_or(text);
    text.parse::<IpAddr>()
        .map(|ip| ip.to_canonical())
        .map_err(|_| BAD_ADDR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postfix_attributes_in_two_commands() {
        let mut f = Forwarded::default();
        f.apply(
            "NAME=mail.example.net ADDR=192.0.2.7 PORT=51000 PROTO=ESMTP HELO=mail.example.net",
        )
        .unwrap();
        f.apply("IDENT=4Xyz1 SOURCE=REMOTE").unwrap();
        assert_eq!(f.name.as_deref(), Some("mail.example.net"));
        assert_eq!(f.addr, Some("192.0.2.7".parse().unwrap()));
        assert_eq!(f.port, Some(51000));
        assert_eq!(f.proto.as_deref(), Some("ESMTP"));
        assert_eq!(f.helo.as_deref(), Some("mail.example.net"));
        assert_eq!(f.ident.as_deref(), Some("4Xyz1"));
        assert_eq!(f.source.as_deref(), Some("REMOTE"));
    }

    #[test]
    fn names_are_case_insensitive_and_values_xtext() {
        let mut f = Forwarded::default();
        f.apply("helo=odd+20name addr=IPv6:2001:db8::1").unwrap();
        assert_eq!(f.helo.as_deref(), Some("odd?name"));
        assert_eq!(f.addr, Some("2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn a_forwarded_helo_or_name_cannot_spoof_the_received_line() {
        let mut f = Forwarded::default();
        f.apply("ADDR=192.0.2.7 HELO=fake.test+20(trusted.example.com+20[10.0.0.1]) NAME=trusted.example.com+20[10.0.0.1])")
            .unwrap();
        assert_eq!(
            f.helo.as_deref(),
            Some("fake.test??trusted.example.com?[10.0.0.1]?")
        );
        assert_eq!(f.name, None);
        f.apply("HELO=a;b\"c\\d<e>@f NAME=mail.example.net IDENT=x+20y")
            .unwrap();
        assert_eq!(f.helo.as_deref(), Some("a?b?c?d?e??f"));
        assert_eq!(f.name.as_deref(), Some("mail.example.net"));
        assert_eq!(f.ident.as_deref(), Some("x?y"));
        f.apply("NAME=-bad-.example").unwrap();
        assert_eq!(f.name, None);
    }

    #[test]
    fn mapped_ipv6_becomes_ipv4() {
        let mut f = Forwarded::default();
        f.apply("ADDR=IPv6:::ffff:192.0.2.9").unwrap();
        assert_eq!(f.addr, Some("192.0.2.9".parse().unwrap()));
    }

    #[test]
    fn unavailable_clears_an_attribute() {
        let mut f = Forwarded::default();
        f.apply("NAME=host.example ADDR=192.0.2.1").unwrap();
        f.apply("NAME=[UNAVAILABLE] ADDR=[TEMPUNAVAIL]").unwrap();
        assert_eq!(f.name, None);
        assert_eq!(f.addr, None);
        assert!(f.is_empty());
    }

    #[test]
    fn a_refused_line_changes_nothing() {
        let mut f = Forwarded::default();
        f.apply("ADDR=192.0.2.1").unwrap();
        for (line, reply) in [
            ("", SYNTAX.reply),
            ("NAME", SYNTAX.reply),
            ("COLOR=blue", BAD_NAME.reply),
            ("NAME=ok ADDR=not-an-ip", BAD_ADDR.reply),
            ("PORT=70000", BAD_VALUE.reply),
            ("HELO=a+0Db", BAD_VALUE.reply),
            ("HELO=bad+zz", BAD_VALUE.reply),
        ] {
            assert_eq!(f.apply(line).unwrap_err().reply, reply, "{line}");
            assert_eq!(f.addr, Some("192.0.2.1".parse().unwrap()), "{line}");
            assert_eq!(f.name, None, "{line}");
        }
        let long = format!("IDENT={}", "x".repeat(MAX_VALUE + 1));
        assert_eq!(f.apply(&long).unwrap_err(), BAD_VALUE);
    }
}
