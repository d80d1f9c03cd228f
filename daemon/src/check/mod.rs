//! The check pipeline (DESIGN 1): one MIME parse of a spooled message, one
//! decomposition of it into objects ([`unpack`]: parts, nested messages,
//! uuencoded files, archive members), then an ordered list of checks, each
//! adding what it finds to one [`Report`]: the anti-virus check ([`av`],
//! YARA rules of the signature bases) and the content filter ([`filter`],
//! names and MIME types), then the spam check ([`spam`]).
//!
//! The checks report; they never decide. What happens to the message is the
//! policy's: `policy::plan::decide` reads the report with each policy
//! group's settings. Evidence that is the same for every group (a virus is
//! a virus) is kept once; evidence that depends on a group's settings (its
//! filter rules) is kept per group.
//!
//! Everything here is synchronous CPU work on bytes: [`engine`] runs it on
//! the scan worker threads, never on the async runtime.

pub mod av;
pub mod bases;
pub mod engine;
pub mod filter;
pub mod mime_repair;
pub mod spam;
pub mod unpack;

use crate::check::bases::BasesInfo;
use crate::config::Policy;
use crate::envelope::Envelope;
pub use engine::Engine;
use mail_parser::{Message, MessageParser};
pub use mailward_metrics::event::{AvStatus, SpamStatus};
use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};
pub use unpack::budget::MemoryPool;
use unpack::Unpacked;

/// The parser of the pipeline, built once. Only the MIME headers are parsed:
/// types, names, encodings and boundaries are all the checks and the part
/// edits read. The others (Received, addresses, dates) are skipped unparsed:
/// mail-parser's default parses them all, which took a tenth of the scan
/// step on a 1 KiB message (bench/scan-bench.sh).
static PARSER: LazyLock<MessageParser> = LazyLock::new(|| {
    MessageParser::new()
        .with_mime_headers()
        .default_header_ignore()
});

/// Parses a message as the pipeline does (None: not a message at all).
/// Its structure is read as mail clients read it ([`mime_repair`]): when a
/// repair was needed, the message's `raw_message` is the repaired copy and
/// its offsets point there, not into `raw`.
pub fn parse(raw: &[u8]) -> Option<Message<'_>> {
    mime_repair::read(&PARSER, raw).message
}

/// What one finding means, from least to most severe (the order decides
/// the message status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Filtered,
    Error,
    Protected,
    Suspicious,
    Infected,
}

impl Kind {
    pub fn status(self) -> AvStatus {
        match self {
            Kind::Filtered => AvStatus::Filtered,
            Kind::Error => AvStatus::Error,
            Kind::Protected => AvStatus::Protected,
            Kind::Suspicious => AvStatus::Suspicious,
            Kind::Infected => AvStatus::Infected,
        }
    }
}

/// One thing found in a message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Finding {
    pub kind: Kind,
    /// The detection (rule identifier), the filter rule (`name:*.exe`) or
    /// the problem ("encrypted", "damaged zip archive: ...").
    pub name: String,
    /// Where: "invoice.zip/docs/readme.exe", "part 1".
    pub path: String,
    /// The top-level MIME part it was found under (None: the message as a
    /// whole could not be parsed).
    pub part: Option<usize>,
}

impl Finding {
    pub fn new(
        kind: Kind,
        name: impl Into<String>,
        path: impl Into<String>,
        part: Option<usize>,
    ) -> Finding {
        Finding {
            kind,
            name: name.into(),
            path: path.into(),
            part,
        }
    }
}

/// A policy group's share of a message: its recipients (indices into the
/// envelope's) and the policy in force for them.
#[derive(Debug, Clone)]
pub struct Partition {
    /// The group's name; "" for the default group (`[policy]`).
    pub group: String,
    pub policy: Arc<Policy>,
    pub rcpts: Vec<usize>,
}

impl Partition {
    /// The group's name as logs and notices show it ("default" for `[policy]`).
    pub fn label(&self) -> &str {
        mailward_metrics::snapshot::group_name(&self.group)
    }
}

/// What the checks found about one message, for policy to judge.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Whether the anti-virus check ran (a group with `check_av` wanted it).
    pub av_checked: bool,
    /// What it found, and what could not be looked into: the same for
    /// every group.
    pub av: Vec<Finding>,
    /// Content-filter findings by group name (each group has its rules).
    pub filtered: BTreeMap<String, Vec<Finding>>,
    /// Objects looked at (parts, nested messages, members, decoded files).
    pub objects: usize,
    /// Unpacking stopped because the workers' shared memory was in use.
    pub memory_refused: bool,
    /// The signature bases the anti-virus check used.
    pub bases: Option<BasesInfo>,
    /// What the spam check found (None: it did not run).
    pub spam: Option<spam::Evidence>,
    /// The `Authentication-Results` field of the message (SPF, DKIM and
    /// DMARC as the session and the checks found them; None when none was
    /// checked). Written with the verdict headers (`add_headers`).
    pub authentication: Option<String>,
    /// Time the pipeline took.
    pub duration: Duration,
}

impl Report {
    /// A report for a message that could not be checked at all (no worker,
    /// an internal error): `av/error`, never a silent "clean".
    pub fn failed(problem: &str, duration: Duration) -> Report {
        Report {
            av_checked: true,
            av: vec![Finding::new(Kind::Error, problem, "message", None)],
            duration,
            ..Report::default()
        }
    }

    /// The findings that count for one group: the anti-virus ones when its
    /// policy checks for viruses, and its own content-filter ones.
    pub fn findings_for<'r>(
        &'r self,
        group: &str,
        policy: &Policy,
    ) -> impl Iterator<Item = &'r Finding> + 'r {
        let av = policy.check_av.then_some(self.av.iter());
        let filtered = policy
            .check_av
            .then(|| self.filtered.get(group).map(|v| v.iter()))
            .flatten();
        av.into_iter()
            .flatten()
            .chain(filtered.into_iter().flatten())
    }

    /// The anti-virus status for one group (None: it does not check).
    pub fn av_status(&self, group: &str, policy: &Policy) -> Option<AvStatus> {
        policy.check_av.then(|| {
            self.findings_for(group, policy)
                .map(|f| f.kind)
                .max()
                .map_or(AvStatus::Clean, Kind::status)
        })
    }

    /// The spam status for one group, at its `spam_level` (None: it does
    /// not check).
    pub fn spam_status(&self, policy: &Policy) -> Option<SpamStatus> {
        policy.check_spam.then(|| {
            self.spam
                .as_ref()
                .map_or(SpamStatus::Clean, |e| e.status(policy.spam_level))
        })
    }

    /// Detection names (infected and suspicious), each once.
    pub fn viruses(&self) -> Vec<String> {
        unique(
            self.av
                .iter()
                .filter(|f| matches!(f.kind, Kind::Infected | Kind::Suspicious))
                .map(|f| f.name.clone()),
        )
    }

    /// What the virus statistics count: each infected file once, by its
    /// detection name (two infected attachments are two detections, as
    /// their two log lines are). Suspicious findings (a heuristic such as
    /// a double extension) are not viruses: they count in the AV results
    /// only, as `mailward_group_infected_total` leaves them out too.
    pub fn detections(&self) -> Vec<String> {
        let mut seen: Vec<(&str, &str)> = Vec::new();
        for f in self.av.iter().filter(|f| f.kind == Kind::Infected) {
            if !seen.contains(&(f.name.as_str(), f.path.as_str())) {
                seen.push((f.name.as_str(), f.path.as_str()));
            }
        }
        seen.into_iter().map(|(name, _)| name.to_string()).collect()
    }

    /// The filter rules that matched, once per part and rule whatever the
    /// groups that share the finding (the statistics count parts).
    pub fn filtered_parts(&self) -> Vec<String> {
        let mut seen: Vec<(&str, &str)> = Vec::new();
        for f in self.filtered.values().flatten() {
            if !seen.contains(&(f.name.as_str(), f.path.as_str())) {
                seen.push((f.name.as_str(), f.path.as_str()));
            }
        }
        seen.into_iter().map(|(name, _)| name.to_string()).collect()
    }

    /// Filter rules that matched for a group, each once.
    pub fn filter_rules(&self, group: &str) -> Vec<String> {
        unique(
            self.filtered
                .get(group)
                .into_iter()
                .flatten()
                .map(|f| f.name.clone()),
        )
    }
}

/// Each name once, in the order first seen.
pub fn unique(names: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in names {
        if !out.contains(&n) {
            out.push(n);
        }
    }
    out
}

/// What a check is given: the message, taken apart, and the groups its
/// recipients fall in.
pub struct Context<'a, 'm, 'p> {
    pub envelope: &'a Envelope,
    pub raw: &'m [u8],
    pub message: Option<&'m Message<'m>>,
    pub unpacked: &'a mut Unpacked<'m, 'p>,
    pub partitions: &'a [Partition],
}

/// The worker's own tools: its YARA scanner (None: no bases loaded), and
/// what every worker shares.
pub struct Tools<'w, 'r> {
    pub scanner: Option<&'w mut yara_x::Scanner<'r>>,
    pub bases: Option<&'w BasesInfo>,
    pub pool: &'w MemoryPool,
    /// The spam check's rules and models (None: rules only, built in).
    pub spam: Option<Arc<spam::knowledge::Knowledge>>,
}

/// One check of the pipeline. A new check is a new file with one of these,
/// and one line in [`run`]: the others do not change.
pub trait Check {
    /// For logs.
    fn name(&self) -> &'static str;
    /// Whether a group's policy asks for this check.
    fn wanted(&self, policy: &Policy) -> bool;
    /// Adds what it finds to `report`.
    fn run(&self, cx: &mut Context<'_, '_, '_>, tools: &mut Tools<'_, '_>, report: &mut Report);
}

/// Runs every check that some partition wants, in order, on one message
/// (the deadline is `timeout` from now, for all of them together).
pub fn run(
    envelope: &Envelope,
    raw: &[u8],
    partitions: &[Partition],
    tools: &mut Tools<'_, '_>,
    timeout: Duration,
) -> Report {
    let started = Instant::now();
    let checks: [&dyn Check; 3] = [&av::Av, &filter::ContentFilter, &spam::Spam];
    let wanted: Vec<&dyn Check> = checks
        .into_iter()
        .filter(|c| partitions.iter().any(|p| c.wanted(&p.policy)))
        .collect();
    let mut report = Report::default();
    if wanted.is_empty() {
        return report;
    }
    // A message in several groups is taken apart to the deepest and
    // largest limits among them.
    let depth = partitions
        .iter()
        .map(|p| p.policy.max_scan_depth)
        .max()
        .unwrap_or(0);
    let size = partitions
        .iter()
        .map(|p| p.policy.max_unpacked_size.0)
        .max()
        .unwrap_or(0);
    let mime_repair::Read {
        message: parsed,
        unresolved,
        other_reading,
        ambiguous,
        neutralised,
    } = mime_repair::read(&PARSER, raw);
    let mut unpacked = unpack::unpack_restoring(
        parsed.as_ref(),
        raw,
        neutralised,
        depth,
        unpack::budget::Budget::new(size, tools.pool),
        started + timeout,
    );
    if parsed.is_none() {
        unpacked.findings.push(Finding::new(
            Kind::Error,
            "not a parseable message",
            "message",
            None,
        ));
    }
    if let Some(why) = unresolved {
        // Some of it may be hidden from the parse: never "clean".
        unpacked
            .findings
            .push(Finding::new(Kind::Error, why, "message", None));
    }
    if let Some(why) = ambiguous {
        // Readers differ in the boundary they take, and so in the parts
        // they show (walkAJ 7, walkAX 4).
        unpacked
            .findings
            .push(Finding::new(Kind::Error, why, "message", None));
    }
    let mut cx = Context {
        envelope,
        raw,
        message: parsed.as_ref(),
        unpacked: &mut unpacked,
        partitions,
    };
    for check in wanted {
        check.run(&mut cx, tools, &mut report);
    }
    report.objects = unpacked.objects.len();
    report.memory_refused = unpacked.memory_refused();
    // What could not be looked into counts where the viruses do: a part
    // that could not be unpacked is av/error for every group.
    report.av.append(&mut unpacked.findings);
    drop(unpacked);
    if let (Some(why), true) = (
        other_reading,
        partitions.iter().any(|p| av::Av.wanted(&p.policy)),
    ) {
        other_reading_av(
            why,
            envelope,
            raw,
            partitions,
            tools,
            depth,
            size,
            started + timeout,
            &mut report,
        );
    }
    report.duration = started.elapsed();
    report
}

/// Scans the message as a reader that skips a header line that is no
/// field reads it (mail-parser unrepaired; [`mime_repair::Read::other_reading`]),
/// and adds what the anti-virus check finds there: of two readings, the
/// worse verdict counts (walkAH 2). Its findings name no part (the parts
/// of the two readings are not the same), so the group's action for the
/// status decides, not a part edit.
#[allow(clippy::too_many_arguments)]
fn other_reading_av(
    why: &str,
    envelope: &Envelope,
    raw: &[u8],
    partitions: &[Partition],
    tools: &mut Tools<'_, '_>,
    depth: u32,
    size: u64,
    deadline: Instant,
    report: &mut Report,
) {
    let Some(other) = PARSER.parse(raw) else {
        return;
    };
    let mut unpacked = unpack::unpack(
        Some(&other),
        raw,
        depth,
        unpack::budget::Budget::new(size, tools.pool),
        deadline,
    );
    let mut cx = Context {
        envelope,
        raw,
        message: Some(&other),
        unpacked: &mut unpacked,
        partitions,
    };
    let mut found = Report::default();
    av::Av.run(&mut cx, tools, &mut found);
    for f in found.av {
        if matches!(f.kind, Kind::Infected | Kind::Suspicious) {
            report.av.push(Finding::new(
                f.kind,
                f.name,
                format!("{} ({why})", f.path),
                None,
            ));
        }
    }
}

#[cfg(test)]
mod tests;
