//! The checks and the plans of one message, on a scan worker: the checks
//! report once, each policy group's plan is decided from that report, and
//! a group whose plan changes the message (part edits, a subject mark)
//! gets its own copy of the bytes here, where the message can be parsed
//! again without holding up the async runtime.

use super::edit;
use super::plan::{self, Plan};
use crate::check::bases::BasesInfo;
use crate::check::{self, AvStatus, Finding, MemoryPool, Partition, Report, SpamStatus, Tools};
use crate::config::Policy;
use crate::envelope::{Envelope, QueueId};
use std::sync::Arc;
use std::time::Duration;

/// One group's share of a verdict.
#[derive(Debug, Clone)]
pub struct Judged {
    pub partition: Partition,
    pub plan: Plan,
    /// The group's copy of the message when its plan changes it.
    pub bytes: Option<Vec<u8>>,
}

/// What became of one message: the report, and a plan per group.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub report: Report,
    pub groups: Vec<Judged>,
}

impl Verdict {
    /// A group's findings, one line each, for its quarantine copy and its
    /// notices: the parts' findings, then (`with_spam`) the spam verdict
    /// when it is not `as/clean` (status, list, score, rating and tests),
    /// which is what an administrator weighs before a release. A notice to
    /// the sender goes without it: a spammer has no use for our tests.
    pub fn finding_lines(&self, j: &Judged, with_spam: bool) -> Vec<String> {
        let mut lines: Vec<String> = self
            .report
            .findings_for(&j.partition.group, &j.partition.policy)
            .map(finding_line)
            .collect();
        if let (true, Some(status), Some(e)) = (with_spam, j.plan.spam, self.report.spam.as_ref()) {
            if status != SpamStatus::Clean {
                lines.push(e.finding_line(status));
            }
        }
        lines
    }

    /// Decides every group's plan from `report` (no group gets new bytes:
    /// for a report made without the message, such as a failure).
    pub fn from_report(
        report: Report,
        partitions: Vec<Partition>,
        in_session: bool,
        null_sender: bool,
    ) -> Verdict {
        let groups = partitions
            .into_iter()
            .map(|partition| {
                let mut plan = plan::decide(
                    &partition.policy,
                    &partition.group,
                    &report,
                    in_session,
                    null_sender,
                );
                plan.edits.clear();
                plan.subject_prefix = None;
                Judged {
                    partition,
                    plan,
                    bytes: None,
                }
            })
            .collect();
        Verdict { report, groups }
    }

    /// The worst AV status over the groups (what the statistics count once
    /// per message), and the spam status.
    pub fn statuses(&self) -> (AvStatus, Option<SpamStatus>) {
        let av = self
            .groups
            .iter()
            .filter_map(|g| g.plan.av)
            .max_by_key(|s| severity(*s))
            .unwrap_or(AvStatus::Clean);
        let spam = self.groups.iter().find_map(|g| g.plan.spam);
        (av, spam)
    }
}

/// A finding as one line of a notice, a quarantine entry or an archive
/// entry: `infected EICAR_Test_File in eicar.com`. The part's name and the
/// detection come from the sender (a file name, an archive member's path,
/// a parse error quoting them): control characters are flattened, so that
/// a name like `invoice%0A%0AIMPORTANT: ...` cannot write lines of its own
/// into a notice from the postmaster (walkV 1).
pub fn finding_line(f: &Finding) -> String {
    format!(
        "{} {} in {}",
        f.kind.status().as_str(),
        crate::text::one_line(&f.name),
        crate::text::one_line(&f.path)
    )
}

/// The order of the AV statuses, least severe first (as the findings).
fn severity(s: AvStatus) -> u8 {
    match s {
        AvStatus::Clean => 0,
        AvStatus::Filtered => 1,
        AvStatus::Error => 2,
        AvStatus::Protected => 3,
        AvStatus::Suspicious => 4,
        AvStatus::Infected => 5,
    }
}

/// Runs the checks on `raw` and decides each group's plan.
pub fn judge(
    envelope: &Envelope,
    raw: &[u8],
    partitions: Vec<Partition>,
    tools: &mut Tools<'_, '_>,
    timeout: Duration,
    in_session: bool,
) -> Verdict {
    let report = check::run(envelope, raw, &partitions, tools, timeout);
    decide(envelope, raw, report, partitions, in_session)
}

/// Decides each group's plan from the checks' `report` (and makes the
/// copies of the groups whose plans change the message).
pub fn decide(
    envelope: &Envelope,
    raw: &[u8],
    report: Report,
    partitions: Vec<Partition>,
    in_session: bool,
) -> Verdict {
    let null_sender = envelope.mail_from.is_empty();
    let groups = partitions
        .into_iter()
        .map(|partition| {
            let plan = plan::decide(
                &partition.policy,
                &partition.group,
                &report,
                in_session,
                null_sender,
            );
            let bytes = plan.changes_bytes().then(|| group_bytes(raw, &plan));
            Judged {
                partition,
                plan,
                bytes,
            }
        })
        .collect();
    Verdict { report, groups }
}

/// A group's copy: the part edits, then the subject mark.
fn group_bytes(raw: &[u8], plan: &Plan) -> Vec<u8> {
    let mut bytes = if plan.edits.is_empty() {
        raw.to_vec()
    } else {
        match check::parse(raw) {
            Some(msg) => {
                // The notices name the part as the reader sees it.
                let edits = plan
                    .edits
                    .iter()
                    .map(|(&part, (e, notice))| {
                        let label = msg
                            .parts
                            .get(part)
                            .and_then(mail_parser::MimeHeaders::attachment_name)
                            .map(|n| format!("\"{}\"", crate::text::one_line(n)))
                            .unwrap_or_else(|| format!("part {}", part + 1));
                        (part, (*e, notice.replace("{part}", &label)))
                    })
                    .collect();
                edit::apply(raw, &msg, &edits)
            }
            None => raw.to_vec(),
        }
    };
    if let Some(prefix) = &plan.subject_prefix {
        bytes = super::subject::mark(&bytes, prefix);
    }
    bytes
}

/// One message judged alone, in the default group, outside the gateway:
/// what `mailward`'s offline checks, the tests and the scan benchmark use.
#[derive(Debug, Clone)]
pub struct ScanOutcome {
    pub report: ScanReport,
    pub findings: Vec<Finding>,
    /// The message with parts removed or replaced (and marked); None when
    /// unchanged.
    pub rewritten: Option<Vec<u8>>,
    /// The verdict header lines, when the policy adds headers.
    pub header: Option<String>,
    pub duration: Duration,
}

/// The statuses and names of a [`ScanOutcome`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanReport {
    pub av: AvStatus,
    pub spam: Option<SpamStatus>,
    pub viruses: Vec<String>,
    pub filter_rules: Vec<String>,
}

/// Checks one message with `policy` (YARA rules through `scanner`, None:
/// no rules) and applies its plan.
pub fn scan_message(
    scanner: Option<&mut yara_x::Scanner<'_>>,
    bases: Option<&BasesInfo>,
    data: &[u8],
    policy: &Policy,
    timeout: Duration,
) -> ScanOutcome {
    static POOL: std::sync::LazyLock<MemoryPool> = std::sync::LazyLock::new(MemoryPool::unbounded);
    let mut tools = Tools {
        scanner,
        bases,
        pool: &POOL,
        spam: None,
    };
    let envelope = Envelope::new(
        QueueId::generate(),
        std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        String::new(),
        String::new(),
    );
    let partition = Partition {
        group: String::new(),
        policy: Arc::new(policy.clone()),
        rcpts: Vec::new(),
    };
    let verdict = judge(&envelope, data, vec![partition], &mut tools, timeout, true);
    let Some(g) = verdict.groups.into_iter().next() else {
        return ScanOutcome {
            report: ScanReport {
                av: AvStatus::Error,
                spam: None,
                viruses: Vec::new(),
                filter_rules: Vec::new(),
            },
            findings: Vec::new(),
            rewritten: None,
            header: None,
            duration: verdict.report.duration,
        };
    };
    let r = &verdict.report;
    ScanOutcome {
        report: ScanReport {
            av: g.plan.av.unwrap_or(AvStatus::Clean),
            spam: g.plan.spam,
            viruses: r.viruses(),
            filter_rules: r.filter_rules(""),
        },
        findings: r.findings_for("", policy).cloned().collect(),
        rewritten: g.bytes,
        header: (!g.plan.headers.is_empty()).then(|| g.plan.headers.clone()),
        duration: r.duration,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::spam::{rules::Hit, Evidence};
    use crate::check::Kind;

    /// The verdict of an infected message with this spam evidence, for
    /// the default group.
    fn judged(spam: Evidence) -> Verdict {
        let policy = Arc::new(crate::config::parse("", "t.toml").unwrap().policy);
        let report = Report {
            av_checked: true,
            av: vec![Finding::new(Kind::Infected, "EICAR", "eicar.com", Some(0))],
            spam: Some(spam),
            ..Report::default()
        };
        let partition = Partition {
            group: String::new(),
            policy,
            rcpts: vec![0],
        };
        Verdict::from_report(report, vec![partition], false, false)
    }

    #[test]
    fn findings_name_the_spam_verdict_for_the_administrator_not_the_sender() {
        let v = judged(Evidence {
            hits: vec![Hit::new("REMOVE_ME", 0.5), Hit::new("BAYES_999", 9.0)],
            ..Evidence::default()
        });
        let j = &v.groups[0];
        assert_eq!(
            v.finding_lines(j, true),
            [
                "infected EICAR in eicar.com",
                "as/spam score=9.5 rating=82 tests=REMOVE_ME,BAYES_999"
            ]
        );
        assert_eq!(v.finding_lines(j, false), ["infected EICAR in eicar.com"]);

        let v = judged(Evidence {
            blacklisted: Some("dnsbl zen.example".into()),
            ..Evidence::default()
        });
        assert_eq!(
            v.finding_lines(&v.groups[0], true)[1],
            "as/blacklisted (dnsbl zen.example) score=0.0 rating=100 tests=none"
        );

        // A clean verdict is no finding.
        let v = judged(Evidence {
            hits: vec![Hit::new("BAYES_00", -2.5)],
            ..Evidence::default()
        });
        assert_eq!(v.finding_lines(&v.groups[0], true).len(), 1);
    }
}
