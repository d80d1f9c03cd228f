//! Where a recipient's mail goes next: the first `[[route]]` whose pattern
//! matches the recipient, else the MX of the recipient's domain (RFC 5321
//! section 5.1), and the ordered list of addresses to try for it. An
//! internationalised domain is routed and looked up by its A-label.

use crate::config::{NextHop, OutboundTls, Route};
use crate::dns::{Dns, DnsError, LookupTally};
use std::net::SocketAddr;

/// A next hop, as the key that groups recipients and pools connections.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Destination {
    /// This host and port, no MX look-up.
    Direct {
        host: String,
        port: u16,
        tls: OutboundTls,
    },
    /// The MX hosts of this domain, on this port.
    Mx {
        domain: String,
        port: u16,
        tls: OutboundTls,
        /// Written by the administrator in a `[[route]]` and not the
        /// recipient's own domain (true), or the recipient's domain
        /// (false): a name that does not exist is a mistake of the
        /// configuration in the first case, not of the sender.
        routed: bool,
    },
}

impl Destination {
    /// Whether the administrator wrote this hop in a `[[route]]`.
    pub fn routed(&self) -> bool {
        match self {
            Destination::Direct { .. } => true,
            Destination::Mx { routed, .. } => *routed,
        }
    }

    /// The STARTTLS settings for this hop.
    pub fn tls(&self) -> &OutboundTls {
        match self {
            Destination::Direct { tls, .. } | Destination::Mx { tls, .. } => tls,
        }
    }
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::Direct { host, port, .. } => write!(f, "[{host}]:{port}"),
            Destination::Mx { domain, port, .. } => write!(f, "{domain}:{port}"),
        }
    }
}

/// The destination of one recipient. A U-label domain (`bücher.example`)
/// is matched and looked up as its A-label (`xn--bcher-kva.example`), the
/// form the DNS knows; a route written with the U-label matches too.
pub fn destination(routes: &[Route], rcpt: &str) -> Destination {
    let a_label = crate::text::a_label_mailbox(rcpt);
    let domain = crate::envelope::domain_of(&a_label);
    for route in routes {
        if route.pattern.matches(&a_label) || (a_label != rcpt && route.pattern.matches(rcpt)) {
            return of_route(route, &domain);
        }
    }
    // MX delivery without a route: opportunistic, as Postfix's "may".
    Destination::Mx {
        domain,
        port: 25,
        tls: OutboundTls::default(),
        routed: false,
    }
}

/// The hop a route's `to` names, for a recipient in `rcpt_domain`
/// (A-label): a route to that very domain (for a port or TLS) looks up
/// what the sender wrote, so it is not `routed`.
pub fn of_route(route: &Route, rcpt_domain: &str) -> Destination {
    match &route.to {
        NextHop::Direct { host, port } => Destination::Direct {
            host: host.clone(),
            port: *port,
            tls: route.tls.clone(),
        },
        NextHop::Mx { domain, port } => Destination::Mx {
            domain: domain.clone(),
            port: *port,
            tls: route.tls.clone(),
            routed: !domain.eq_ignore_ascii_case(rcpt_domain),
        },
    }
}

/// One address to try, with the name it was found under (for logs and DSNs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub name: String,
    pub addr: SocketAddr,
}

/// Why no address could be found.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// The domain does not exist, or has no address.
    #[error("{0}")]
    Permanent(String),
    /// The domain says it takes no mail (null MX, RFC 7505).
    #[error("{0}")]
    NullMx(String),
    #[error("{0}")]
    Temporary(String),
    /// A host or domain of a `[[route]]` that does not exist, has no
    /// address or takes no mail: the configuration's mistake, so the mail
    /// waits for it to be mended instead of going back to every sender
    /// (walkBF F6: a typo in the catch-all route bounced all mail with
    /// 5.1.2), as Postfix defers a relayhost it cannot find.
    #[error("{0}")]
    Misrouted(String),
}

impl RouteError {
    /// The enhanced status code for DSNs.
    pub fn status(&self) -> &'static str {
        match self {
            RouteError::Permanent(_) => "5.1.2",
            // RFC 7505 section 4.1: "Recipient address has null MX".
            RouteError::NullMx(_) => "5.1.10",
            RouteError::Temporary(_) => "4.4.3",
            // RFC 3463: "System incorrectly configured".
            RouteError::Misrouted(_) => "4.3.5",
        }
    }
}

fn dns_error(e: DnsError, what: &str) -> RouteError {
    match e {
        DnsError::NotFound { .. } => RouteError::Permanent(format!("{what}: {e}")),
        // A failed look-up already says which (`MX look-up failed: timed
        // out`): not "MX look-up" twice (walkP 15).
        other => {
            let said = other.to_string();
            RouteError::Temporary(if said.contains("look-up") {
                said
            } else {
                format!("{what}: {said}")
            })
        }
    }
}

/// The addresses to try, in order: MX hosts by preference (each host's
/// addresses in the order DNS gave them), or the host itself. Each DNS
/// look-up is added to `tally`, so that the statistics and `mailward
/// status` see a dead DNS server on a gateway that only relays.
pub async fn candidates(
    dns: &Dns,
    tally: &mut LookupTally,
    dest: &Destination,
) -> Result<Vec<Candidate>, RouteError> {
    match candidates_of(dns, tally, dest).await {
        Err(RouteError::Permanent(why) | RouteError::NullMx(why)) if dest.routed() => {
            // Words for the sender too (a delay notice, the bounce at
            // expiry carry them): what happened, not the administrator's
            // to-do, which `mailward status` and the docs give (walkBH F1).
            Err(RouteError::Misrouted(format!(
                "{why} (a next hop this gateway is configured to use)"
            )))
        }
        other => other,
    }
}

async fn candidates_of(
    dns: &Dns,
    tally: &mut LookupTally,
    dest: &Destination,
) -> Result<Vec<Candidate>, RouteError> {
    let (hosts, port) = match dest {
        Destination::Direct { host, port, .. } => (vec![host.clone()], *port),
        Destination::Mx { domain, port, .. } => {
            let mx = dns.mx(domain).await;
            tally.note(&mx);
            let hosts = match mx {
                Ok(mx) if mx.len() == 1 && (mx[0].host.is_empty() || mx[0].host == ".") => {
                    return Err(RouteError::NullMx(format!(
                        "{domain} does not accept mail (null MX, RFC 7505)"
                    )))
                }
                Ok(mx) if !mx.is_empty() => mx.into_iter().map(|m| m.host).collect(),
                // A domain that does not exist has no implicit MX either;
                // said as such, not as "no A/AAAA record" (walkP 13).
                Err(e @ DnsError::NotFound { nx: true, .. }) => {
                    return Err(dns_error(e, "MX look-up"))
                }
                // No MX: the domain itself is the implicit MX (RFC 5321 5.1).
                Ok(_) | Err(DnsError::NotFound { .. }) => vec![domain.clone()],
                Err(e) => return Err(dns_error(e, "MX look-up")),
            };
            (hosts, *port)
        }
    };
    let mut out = Vec::new();
    let mut last_err = None;
    for host in hosts {
        let ips = dns.ips(&host).await;
        if crate::dns::address_literal(&host).is_none() {
            tally.note(&ips);
        }
        match ips {
            Ok(ips) => out.extend(ips.into_iter().map(|ip| Candidate {
                name: host.clone(),
                addr: SocketAddr::new(ip, port),
            })),
            Err(e) => last_err = Some(e),
        }
    }
    if out.is_empty() {
        return Err(match last_err {
            Some(e) => dns_error(e, "address look-up"),
            None => RouteError::Temporary(format!("{dest}: no address to deliver to")),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_u_label_domain_is_routed_and_looked_up_as_its_a_label() {
        let dest = destination(&[], "j\u{fc}rgen@B\u{fc}cher.example");
        assert!(
            matches!(&dest, Destination::Mx { domain, port: 25, .. } if domain == "xn--bcher-kva.example"),
            "{dest:?}"
        );
        let routes: Vec<Route> = crate::config::parse(
            "[[route]]\nmatch = \"*@xn--bcher-kva.example\"\nto = \"[127.0.0.1]:2525\"\n",
            "t.toml",
        )
        .map(|c| c.route)
        .unwrap_or_default();
        assert_eq!(routes.len(), 1);
        let dest = destination(&routes, "\u{3b4}@b\u{fc}cher.example");
        assert!(
            matches!(&dest, Destination::Direct { host, port: 2525, .. } if host == "127.0.0.1"),
            "{dest:?}"
        );
        // ASCII addresses are routed as before.
        let dest = destination(&routes, "bob@example.com");
        assert!(
            matches!(&dest, Destination::Mx { domain, .. } if domain == "example.com"),
            "{dest:?}"
        );
    }

    /// walkBF F6: a hop the administrator wrote (a host, or another
    /// domain's MX) is the configuration's; the recipient's own domain,
    /// by a route or not, is what the sender wrote.
    #[test]
    fn a_hop_written_in_a_route_is_told_from_the_recipient_s_domain() {
        let routes: Vec<Route> = crate::config::parse(
            "[[route]]\nmatch = \"*@a.example\"\nto = \"A.example:2525\"\n\
             [[route]]\nmatch = \"*@b.example\"\nto = \"relay.example:25\"\n\
             [[route]]\nmatch = \"*@c.example\"\nto = \"[smart.example]:25\"\n",
            "t.toml",
        )
        .map(|c| c.route)
        .unwrap_or_default();
        assert_eq!(routes.len(), 3);
        assert!(!destination(&routes, "x@a.example").routed());
        assert!(destination(&routes, "x@b.example").routed());
        assert!(destination(&routes, "x@c.example").routed());
        assert!(!destination(&routes, "x@d.example").routed());
        assert_eq!(RouteError::Misrouted("x".into()).status(), "4.3.5");
    }
}
