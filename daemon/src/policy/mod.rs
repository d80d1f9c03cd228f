//! Policy: what happens to a checked message, per group of its recipients.
//!
//! - [`partition`]: recipients by policy group (KMG: groups of sender and
//!   recipient pairs). A recipient is in the first group, in alphabetical
//!   order of the names (not the file's order), whose `recipients` match
//!   it or whose `senders` match the sender or the client; otherwise in
//!   the default group (`[policy]`). `check-config` warns where that order
//!   decides between two groups (`config::validate`, walkO 9).
//! - [`plan`]: for each group, a [`plan::Plan`] decided purely from its
//!   policy and the checks' report: deliver, refuse in the session or block;
//!   part edits; the subject mark and verdict headers; quarantine and
//!   archive copies; notifications.
//! - [`verdict`]: the checks and the plans of one message, on a scan worker
//!   (the part edits need the parsed message), with each group's bytes.
//! - [`execute`]: carrying the plans out (stores, spool, queue), saying
//!   what happened with events only.
//! - [`edit`], [`subject`]: the byte-level edits; [`notify`]: notifications.
//! - [`verdict_headers`]: only the verdict headers this gateway writes
//!   leave it (the ones a message comes with are removed on delivery).

pub mod edit;
pub mod execute;
pub mod milter;
pub mod notify;
pub mod plan;
pub mod subject;
pub mod verdict;
pub mod verdict_headers;

use crate::check::Partition;
use crate::config::{Config, GroupEntry};
use crate::envelope::Envelope;
use std::sync::Arc;

/// Whether one `senders`/`recipients` entry matches `address` (or, for an
/// `ip NET` entry, the client).
fn entry_matches(entry: &GroupEntry, address: &str, env: &Envelope) -> bool {
    match entry {
        GroupEntry::Net(net) => crate::config::rules::net_contains(net, env.client_ip),
        GroupEntry::Address(pattern) => pattern.matches(address),
    }
}

/// The group of one recipient: the first group (by name) whose
/// `recipients` match it or whose `senders` match the sender or the
/// client; None = the default group.
pub fn group_of<'c>(cfg: &'c Config, env: &Envelope, rcpt: &str) -> Option<&'c str> {
    cfg.group.iter().find_map(|(name, g)| {
        let by_sender = g
            .senders
            .iter()
            .any(|e| entry_matches(e, &env.mail_from, env));
        let by_rcpt = g.recipients.iter().any(|e| entry_matches(e, rcpt, env));
        (by_sender || by_rcpt).then_some(name.as_str())
    })
}

/// The policy in force for group `name` ("" or an unknown name: the
/// default `[policy]`): the group's own keys over `[policy]`.
pub fn policy_of(cfg: &Config, name: &str) -> crate::config::Policy {
    match cfg.group.get(name) {
        Some(g) => g.effective(&cfg.policy),
        None => cfg.policy.clone(),
    }
}

/// The pending recipients of `env` by group, each group with the policy in
/// force for it (its own keys over `[policy]`). The default group comes
/// first, then the others by name.
pub fn partition(cfg: &Config, env: &Envelope) -> Vec<Partition> {
    let mut out: Vec<Partition> = Vec::new();
    for (i, r) in env.rcpts.iter().enumerate() {
        if !r.is_pending() {
            continue;
        }
        let name = group_of(cfg, env, &r.address).unwrap_or("");
        match out.iter_mut().find(|p| p.group == name) {
            Some(p) => p.rcpts.push(i),
            None => {
                out.push(Partition {
                    group: name.to_string(),
                    policy: Arc::new(policy_of(cfg, name)),
                    rcpts: vec![i],
                });
            }
        }
    }
    out.sort_by(|a, b| a.group.cmp(&b.group));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{QueueId, Recipient};

    pub(crate) fn env(from: &str, to: &[&str], ip: &str) -> Envelope {
        let mut e = Envelope::new(
            QueueId::generate(),
            ip.parse().unwrap(),
            "h".into(),
            from.into(),
        );
        e.rcpts = to.iter().map(|a| Recipient::new(a.to_string())).collect();
        e
    }

    fn groups(cfg: &Config, e: &Envelope) -> Vec<(String, Vec<usize>)> {
        partition(cfg, e)
            .into_iter()
            .map(|p| (p.group, p.rcpts))
            .collect()
    }

    #[test]
    fn table_of_group_membership() {
        let cfg = crate::config::parse(
            "[group.managers]\nrecipients = [\"*@managers.example.com\"]\n\
             [group.lab]\nsenders = [\"ip 10.1.0.0/16\", \"*@lab.example.com\"]\n",
            "t.toml",
        )
        .unwrap();
        let g = |s: &str| s.to_string();
        let cases = [
            (
                env("a@x", &["b@managers.example.com"], "192.0.2.1"),
                vec![(g("managers"), vec![0])],
            ),
            // Each recipient in its own group.
            (
                env(
                    "a@x",
                    &["b@example.com", "c@MANAGERS.example.com"],
                    "192.0.2.1",
                ),
                vec![(g(""), vec![0]), (g("managers"), vec![1])],
            ),
            // By sender, or by the client's network: every recipient.
            (
                env("a@lab.example.com", &["b@example.com", "c@x"], "192.0.2.1"),
                vec![(g("lab"), vec![0, 1])],
            ),
            (
                env("a@x", &["b@example.com"], "10.1.2.3"),
                vec![(g("lab"), vec![0])],
            ),
            (
                env("a@x", &["b@example.com"], "10.2.0.1"),
                vec![(g(""), vec![0])],
            ),
            // Both match: the first by name wins.
            (
                env(
                    "a@lab.example.com",
                    &["b@managers.example.com"],
                    "192.0.2.1",
                ),
                vec![(g("lab"), vec![0])],
            ),
        ];
        for (e, want) in cases {
            assert_eq!(groups(&cfg, &e), want, "{} -> {:?}", e.mail_from, e.rcpts);
        }
    }

    #[test]
    fn a_group_gets_its_own_keys_over_the_default_policy() {
        let cfg = crate::config::parse(
            "[policy]\nblock = [\"as/spam\"]\n\
             [group.strict]\nrecipients = [\"*@strict.example.com\"]\nblock = [\"av/all\"]\n",
            "t.toml",
        )
        .unwrap();
        let e = env(
            "a@x",
            &["u@example.com", "boss@strict.example.com"],
            "192.0.2.1",
        );
        let parts = partition(&cfg, &e);
        assert_eq!(parts[0].policy.block, cfg.policy.block);
        assert_eq!(parts[1].group, "strict");
        assert_eq!(parts[1].policy.block[0].as_str(), "av/all");
    }

    /// The ```toml blocks of a page of docs/.
    fn toml_blocks(page: &str) -> Vec<String> {
        let path = format!("{}/../docs/{page}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        text.split("```toml\n")
            .skip(1)
            .filter_map(|b| b.split_once("```").map(|(toml, _)| toml.to_string()))
            .collect()
    }

    /// Blacklisted mail is `as/blacklisted`, never `as/spam`: an example in
    /// the docs whose list names as/spam alone teaches a policy that
    /// delivers blacklisted mail unmarked (walkB finding 5).
    #[test]
    fn the_docs_list_as_blacklisted_wherever_they_list_as_spam() {
        let lists = ["reject", "block", "quarantine", "mark_subject"];
        let mut examples = 0;
        for page in ["policy.md", "spam.md"] {
            for block in toml_blocks(page) {
                for line in block.lines() {
                    let Some((key, value)) = line.split_once(" = ") else {
                        continue;
                    };
                    if lists.contains(&key.trim()) && value.contains("\"as/spam\"") {
                        examples += 1;
                        assert!(
                            value.contains("\"as/blacklisted\"") || value.contains("\"as/all\""),
                            "{page}: `{line}` names as/spam without as/blacklisted"
                        );
                    }
                }
            }
        }
        assert!(examples >= 3, "the pages show lists with as/spam");
    }

    /// The groups example of policy.md, as configured, blocks blacklisted
    /// mail for the managers and delivers it to the others.
    #[test]
    fn the_groups_example_of_the_docs_blocks_blacklisted_mail() {
        use crate::check::{spam::Evidence, Report};
        use crate::policy::plan::{decide, Delivery};
        let example = toml_blocks("policy.md")
            .into_iter()
            .find(|b| b.contains("[group.managers]"))
            .unwrap();
        let cfg = crate::config::parse(&example, "policy.md").unwrap();
        let report = Report {
            spam: Some(Evidence {
                blacklisted: Some("sender *@spammer.example".into()),
                ..Evidence::default()
            }),
            ..Report::default()
        };
        let e = env(
            "x@spammer.example",
            &["user@example.com", "boss@managers.example.com"],
            "192.0.2.1",
        );
        let plans: Vec<_> = partition(&cfg, &e)
            .iter()
            .map(|p| decide(&p.policy, &p.group, &report, false, false))
            .collect();
        assert_eq!(plans.len(), 2);
        assert_eq!(plans[0].delivery, Delivery::Deliver, "default group");
        assert_eq!(plans[1].delivery, Delivery::Block, "managers");
    }
}
