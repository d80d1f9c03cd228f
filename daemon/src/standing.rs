//! Who a client is to us: one of ours, or someone from outside. Decided
//! here only, from the configuration and what the client proved; every
//! stage that treats our own clients differently asks [`Standing`], never
//! `relay_networks` itself, so that the stages cannot drift apart.
//!
//! What being ours changes:
//! - the DNSBL zones, refusing (`[access] dnsbl`) and scoring
//!   (`[spam] dnsbl`), are not asked about it, as Postfix's postscreen
//!   permits mynetworks before its DNSBL test: an office behind an address
//!   on a policy list must not lose its mail;
//! - no SPF, DKIM or DMARC: they say whether mail from outside comes from
//!   where its domain sends, not whether the site's own users may send
//!   (a user sending from home fails the domain's own SPF);
//! - only a `relay_networks` client may relay to any domain, use
//!   sender-specified routing and XFORWARD. A user who authenticated with
//!   the MTA in front (milter) has that MTA decide those.
//!
//! Content checks (anti-virus, content filter, spam rules and classifier)
//! apply to everyone, but for the two spam heuristics on fields that a
//! submission server adds for its own clients: `MISSING_DATE` and
//! `MISSING_MESSAGE_ID` (a script or a printer of ours leaves them out, and
//! Postfix in front of a before-queue proxy adds them after we judged:
//! walkAO 1).

use crate::config::rules::net_contains;
use crate::config::Config;
use ipnet::IpNet;
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// An address of `[network] relay_networks`.
    RelayNetwork,
    /// A user who authenticated with the MTA in front of us (the milter
    /// macro `{auth_authen}`), wherever they connect from.
    Authenticated(String),
    /// Anyone else.
    Outside,
}

impl Standing {
    /// The standing of client `ip`, which authenticated as `user` (when it
    /// did, as far as we know).
    pub fn of(cfg: &Config, ip: IpAddr, user: Option<&str>) -> Standing {
        Standing::among(&cfg.network.relay_networks, ip, user)
    }

    /// As [`Standing::of`], from `relay_networks` alone (for a stage that
    /// keeps a copy of them, as the spam check's knowledge does).
    pub fn among(relay_networks: &[IpNet], ip: IpAddr, user: Option<&str>) -> Standing {
        match user.filter(|u| !u.is_empty()) {
            Some(u) => Standing::Authenticated(u.to_string()),
            None if relay_networks.iter().any(|n| net_contains(n, ip)) => Standing::RelayNetwork,
            None => Standing::Outside,
        }
    }

    /// Whether the tests for mail from outside apply: DNSBL zones, SPF,
    /// DKIM and DMARC.
    pub fn is_outside(&self) -> bool {
        *self == Standing::Outside
    }

    /// Whether the client may relay to any domain, route by the sender's
    /// `%`/`!` forms and say who its own client was (XFORWARD).
    pub fn may_relay(&self) -> bool {
        *self == Standing::RelayNetwork
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ours_are_the_relay_networks_and_the_authenticated() {
        let cfg = crate::config::load(None).unwrap();
        let inside: IpAddr = "127.0.0.1".parse().unwrap();
        let outside: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(Standing::of(&cfg, inside, None), Standing::RelayNetwork);
        assert_eq!(Standing::of(&cfg, outside, None), Standing::Outside);
        assert_eq!(Standing::of(&cfg, outside, Some("")), Standing::Outside);
        let user = Standing::of(&cfg, outside, Some("ann"));
        assert_eq!(user, Standing::Authenticated("ann".into()));
        // Authenticated: spared the outside's tests, but relaying is the
        // MTA's decision, not granted by us.
        assert!(!user.is_outside() && !user.may_relay());
        assert!(Standing::RelayNetwork.may_relay() && !Standing::RelayNetwork.is_outside());
        assert!(Standing::Outside.is_outside() && !Standing::Outside.may_relay());
    }
}
