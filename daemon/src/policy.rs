//! Policy decisions: pure functions from the envelope and the scan verdict
//! to what happens: which policy group a message falls in, the policy in
//! force for it, and the message's fate (deliver, refuse in the session,
//! or block). What happens to single parts is the scanner's (`action_*`,
//! see `scan`).

use crate::config::{rules, statuses_cover, Config, Pattern, Policy};
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

/// The policy in force for a message (its group's, or `[policy]`) and
/// the group's name ("" for the default).
pub fn effective(cfg: &Config, env: &Envelope) -> (Policy, String) {
    match group_of(cfg, env).and_then(|name| cfg.group.get(name).map(|g| (name, g))) {
        Some((name, g)) => (g.effective(&cfg.policy), name.to_string()),
        None => (cfg.policy.clone(), String::new()),
    }
}

/// What becomes of a scanned message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Queued for delivery (parts may have been removed or replaced).
    Deliver,
    /// Refused in the SMTP session with this reply.
    Reject(String),
    /// Accepted but never delivered.
    Block,
}

/// The fate of a message with AV status `status` ("av/infected") and the
/// names behind it. `in_session` is false when the scan finished after
/// the 250 was sent: a refusal is no longer possible and becomes a block
/// (DESIGN 1: no bounce, no backscatter).
pub fn fate(policy: &Policy, status: &str, names: &[String], in_session: bool) -> Fate {
    if statuses_cover(&policy.reject, status) {
        if !in_session {
            return Fate::Block;
        }
        let why = if names.is_empty() {
            String::new()
        } else {
            let shown: Vec<&str> = names.iter().take(3).map(String::as_str).collect();
            format!(" ({})", crate::scan::rewrite::ascii(&shown.join(", ")))
        };
        return Fate::Reject(format!(
            "550 5.7.1 Message refused by content policy: {status}{why}"
        ));
    }
    if statuses_cover(&policy.block, status) {
        return Fate::Block;
    }
    Fate::Deliver
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
            scanned: false,
            added_headers: String::new(),
        }
    }

    #[test]
    fn fates() {
        let mut p = crate::config::parse("", "t.toml").unwrap().policy;
        p.reject = vec![crate::config::Status("av/infected".into())];
        p.block = vec![crate::config::Status("av/all".into())];
        let names = vec!["EICAR_Test_File".to_string()];
        assert_eq!(
            fate(&p, "av/infected", &names, true),
            Fate::Reject(
                "550 5.7.1 Message refused by content policy: av/infected (EICAR_Test_File)".into()
            )
        );
        assert_eq!(fate(&p, "av/infected", &names, false), Fate::Block);
        assert_eq!(fate(&p, "av/protected", &[], true), Fate::Block);
        p.block.clear();
        assert_eq!(fate(&p, "av/clean", &[], true), Fate::Deliver);
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
