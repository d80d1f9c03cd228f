//! Policy decisions: pure functions from the envelope (and, with scanning,
//! the scan report) to what happens. Today: which policy group a message
//! falls in. The actions per status come with the anti-virus issue.

use crate::config::{rules, Config, Pattern};
use crate::envelope::Envelope;

/// True when one `senders`/`recipients` entry matches: `ip NET` matches the
/// client address, anything else is an address glob.
fn entry_matches(entry: &str, address: &str, env: &Envelope) -> bool {
    match entry.strip_prefix("ip ") {
        Some(net) => rules::parse_net(net.trim())
            .map(|n| rules::net_contains(&n, env.client_ip))
            .unwrap_or(false),
        None => Pattern::new(entry).matches(address),
    }
}

/// The first group (by name) that the sender or any recipient matches;
/// None = the default group (`[policy]`).
pub fn group_of<'a>(cfg: &'a Config, env: &Envelope) -> Option<&'a str> {
    cfg.group.iter().find_map(|(name, g)| {
        let by_sender = g
            .senders
            .iter()
            .any(|e| entry_matches(e, &env.mail_from, env));
        let by_rcpt = g
            .recipients
            .iter()
            .any(|e| env.rcpts.iter().any(|r| entry_matches(e, &r.address, env)));
        (by_sender || by_rcpt).then_some(name.as_str())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{QueueId, Recipient};

    fn env(from: &str, to: &[&str], ip: &str) -> Envelope {
        Envelope {
            id: QueueId::generate(),
            received_at: 0,
            client_ip: ip.parse().unwrap(),
            helo: "h".into(),
            mail_from: from.into(),
            ret: None,
            envid: None,
            eight_bit: false,
            size: 1,
            rcpts: to.iter().map(|a| Recipient::new(a.to_string())).collect(),
            attempts: 0,
            next_attempt: 0,
            delay_notified: false,
            is_bounce: false,
        }
    }

    #[test]
    fn table_of_group_membership() {
        let cfg = crate::config::parse(
            "[group.managers]\nrecipients = [\"*@managers.example.com\"]\n\
             [group.lab]\nsenders = [\"ip 10.1.0.0/16\", \"*@lab.example.com\"]\n",
            "t.toml",
        )
        .unwrap();
        let cases = [
            (
                env("a@x", &["b@managers.example.com"], "192.0.2.1"),
                Some("managers"),
            ),
            (
                env(
                    "a@x",
                    &["b@example.com", "c@MANAGERS.example.com"],
                    "192.0.2.1",
                ),
                Some("managers"),
            ),
            (
                env("a@lab.example.com", &["b@example.com"], "192.0.2.1"),
                Some("lab"),
            ),
            (env("a@x", &["b@example.com"], "10.1.2.3"), Some("lab")),
            (env("a@x", &["b@example.com"], "10.2.0.1"), None),
            // Both match: the first by name wins.
            (
                env(
                    "a@lab.example.com",
                    &["b@managers.example.com"],
                    "192.0.2.1",
                ),
                Some("lab"),
            ),
        ];
        for (e, want) in cases {
            assert_eq!(group_of(&cfg, &e), want, "{} -> {:?}", e.mail_from, e.rcpts);
        }
    }
}
