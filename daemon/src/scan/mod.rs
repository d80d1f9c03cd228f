//! The scan step of the message path: anti-virus and content filtering.
//!
//! A spooled message is parsed with mail-parser; every leaf MIME part
//! (transfer-decoded), every message nested in it, every uuencoded file (in
//! a text part, or a part sent as `x-uuencode`) and every member of a zip, gzip or tar archive (to
//! `max_scan_depth` levels and `max_unpacked_size` bytes) is checked
//! against the name/MIME filters and scanned with the YARA rules of the
//! signature bases. Each finding belongs to a top-level part, and the
//! policy's `action_*` for its status says whether that part stays, goes
//! or is replaced by a notice ([`rewrite`]).
//!
//! The message status is the worst finding, in this order: infected,
//! suspicious, protected, error, filtered, clean. Disinfection ("cure") is
//! not offered: a part is kept, removed or replaced, never repaired.
//!
//! [`scan_message`] is synchronous and pure (rules, bytes, policy in;
//! verdict and rewritten bytes out); [`engine`] runs it on worker threads.

mod archive;
mod budget;
pub mod engine;
mod filter;
pub mod rewrite;
mod uuencode;
mod walk;

use crate::bases::BasesInfo;
use crate::config::{Action, Policy};
pub use budget::MemoryPool;
pub use engine::Engine;
use mail_parser::{MessageParser, MimeHeaders};
pub use mailward_metrics::event::{AvStatus, SpamStatus};
use rewrite::Edit;
use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

/// The parser of the scan, built once. Only the MIME headers are parsed:
/// types, names, encodings and boundaries are all the scan and the rewrite
/// read. The others (Received, addresses, dates) are skipped unparsed:
/// mail-parser's default parses them all, which took a tenth of the scan
/// step on a 1 KiB message (bench/scan-bench.sh).
static PARSER: LazyLock<MessageParser> = LazyLock::new(|| {
    MessageParser::new()
        .with_mime_headers()
        .default_header_ignore()
});

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

    /// The policy's action for parts with this finding.
    pub fn action(self, policy: &Policy) -> Action {
        match self {
            Kind::Filtered => policy.action_filtered,
            Kind::Error => policy.action_error,
            Kind::Protected => policy.action_protected,
            Kind::Suspicious => policy.action_suspicious,
            Kind::Infected => policy.action_infected,
        }
    }
}

/// One thing found in a message.
#[derive(Debug, Clone, PartialEq, Eq)]
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanReport {
    pub av: AvStatus,
    /// None when spam was not checked.
    pub spam: Option<SpamStatus>,
    /// Detection names (infected and suspicious), each once.
    pub viruses: Vec<String>,
    /// Name/MIME rules that filtered parts, each once.
    pub filter_rules: Vec<String>,
}

/// Everything the scan decided about one message.
#[derive(Debug, Clone)]
pub struct ScanOutcome {
    pub report: ScanReport,
    pub findings: Vec<Finding>,
    /// The message with parts removed or replaced; None when unchanged.
    pub rewritten: Option<Vec<u8>>,
    /// The `X-Mailward-AV` header line with its CRLF, when policy adds
    /// headers.
    pub header: Option<String>,
    pub duration: Duration,
    /// Unpacking stopped because all workers together held
    /// `limits.scan_memory` (counted in the statistics).
    pub memory_refused: bool,
}

impl ScanOutcome {
    /// The outcome when a message could not be scanned at all.
    pub fn failed(problem: &str, duration: Duration) -> ScanOutcome {
        ScanOutcome {
            report: ScanReport {
                av: AvStatus::Error,
                spam: None,
                viruses: Vec::new(),
                filter_rules: Vec::new(),
            },
            findings: vec![Finding {
                kind: Kind::Error,
                name: problem.to_string(),
                path: "message".into(),
                part: None,
            }],
            rewritten: None,
            header: None,
            duration,
            memory_refused: false,
        }
    }

    /// The outcome when the policy does not ask for a scan.
    pub fn unchecked(check_spam: bool) -> ScanOutcome {
        ScanOutcome {
            report: ScanReport {
                av: AvStatus::Clean,
                spam: check_spam.then_some(SpamStatus::Clean),
                viruses: Vec::new(),
                filter_rules: Vec::new(),
            },
            findings: Vec::new(),
            rewritten: None,
            header: None,
            duration: Duration::ZERO,
            memory_refused: false,
        }
    }

    /// "av/infected", as policy lists write it.
    pub fn status(&self) -> String {
        format!("av/{}", self.report.av.as_str())
    }
}

fn unique(names: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in names {
        if !out.contains(&n) {
            out.push(n);
        }
    }
    out
}

/// The `X-Mailward-AV` header: status, detections or problems, and the
/// bases in use. Rule names are ASCII identifiers; the rest is made ASCII.
fn av_header(av: AvStatus, findings: &[Finding], bases: Option<&BasesInfo>) -> String {
    let mut h = format!("X-Mailward-AV: {}", av.as_str());
    let worst = findings.iter().map(|f| f.kind).max();
    let names = unique(
        findings
            .iter()
            .filter(|f| Some(f.kind) == worst)
            .map(|f| rewrite::ascii(&f.name).replace(';', ",")),
    );
    if !names.is_empty() {
        let shown: Vec<&str> = names.iter().take(5).map(String::as_str).collect();
        h.push_str(&format!(
            "; detection=\"{}\"",
            shown.join(", ").replace('"', "'")
        ));
    }
    match bases {
        Some(b) => {
            // As "%Y-%m-%dT%H:%M:%SZ" would, without parsing a format for
            // every message (that took a tenth of the scan step outside
            // the rules on a 1 KiB message).
            let released = chrono::DateTime::from_timestamp(b.released, 0)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default();
            h.push_str(";\r\n\tbases=");
            h.push_str(&released);
            h.push_str("; version=\"");
            h.push_str(&rewrite::ascii(&b.version));
            h.push('"');
        }
        None => h.push_str("; bases=none"),
    }
    h.push_str("\r\n");
    h
}

/// Scans one message and applies the part actions of `policy`. `scanner`
/// is None when no rules are loaded; the status is then `av/error`. Only
/// the message's own `max_unpacked_size` bounds unpacking (offline use and
/// tests); the gateway's workers use [`scan_message_within`].
pub fn scan_message(
    scanner: Option<&mut yara_x::Scanner<'_>>,
    bases: Option<&BasesInfo>,
    data: &[u8],
    policy: &Policy,
    timeout: Duration,
) -> ScanOutcome {
    static UNBOUNDED: LazyLock<MemoryPool> = LazyLock::new(MemoryPool::unbounded);
    scan_message_within(scanner, bases, data, policy, timeout, &UNBOUNDED)
}

/// [`scan_message`], unpacking within `pool`, the bytes that all scan
/// workers together may hold.
pub fn scan_message_within(
    scanner: Option<&mut yara_x::Scanner<'_>>,
    bases: Option<&BasesInfo>,
    data: &[u8],
    policy: &Policy,
    timeout: Duration,
    pool: &MemoryPool,
) -> ScanOutcome {
    let started = Instant::now();
    let filters = filter::Filters::new(policy);
    let no_rules = scanner.is_none();
    let mut walk = walk::Walk::new(
        scanner,
        &filters,
        policy.max_scan_depth,
        budget::Budget::new(policy.max_unpacked_size.0, pool),
        started + timeout,
    );
    let parsed = PARSER.parse(data);
    match &parsed {
        Some(msg) => walk.message(msg, Some(data), None, "", 0),
        None => {
            walk.object(None, "message", None, "message/rfc822", data, 0);
        }
    }
    let mut findings = std::mem::take(&mut walk.findings);
    let memory_refused = walk.budget.exhausted == Some(budget::Exhausted::Shared);
    drop(walk);
    if parsed.is_none() {
        findings.push(Finding {
            kind: Kind::Error,
            name: "not a parseable message".into(),
            path: "message".into(),
            part: None,
        });
    }
    if no_rules {
        findings.push(Finding {
            kind: Kind::Error,
            name: "no signature bases loaded".into(),
            path: "message".into(),
            part: None,
        });
    }
    let av = findings
        .iter()
        .map(|f| f.kind)
        .max()
        .map_or(AvStatus::Clean, Kind::status);
    let viruses = unique(
        findings
            .iter()
            .filter(|f| matches!(f.kind, Kind::Infected | Kind::Suspicious))
            .map(|f| f.name.clone()),
    );
    let filter_rules = unique(
        findings
            .iter()
            .filter(|f| f.kind == Kind::Filtered)
            .map(|f| f.name.clone()),
    );
    let rewritten = parsed.as_ref().and_then(|msg| {
        let edits = edits(msg, &findings, policy);
        (!edits.is_empty()).then(|| rewrite::apply(data, msg, &edits))
    });
    let header = policy.add_headers.then(|| av_header(av, &findings, bases));
    ScanOutcome {
        report: ScanReport {
            av,
            // No spam filter yet: a checked message counts as spam-clean.
            spam: policy.check_spam.then_some(SpamStatus::Clean),
            viruses,
            filter_rules,
        },
        findings,
        rewritten,
        header,
        duration: started.elapsed(),
        memory_refused,
    }
}

/// The edit of each top-level part: the action for its worst finding.
fn edits(
    msg: &mail_parser::Message<'_>,
    findings: &[Finding],
    policy: &Policy,
) -> BTreeMap<usize, (Edit, String)> {
    let mut worst: BTreeMap<usize, &Finding> = BTreeMap::new();
    for f in findings {
        if let Some(p) = f.part {
            let e = worst.entry(p).or_insert(f);
            if f.kind > e.kind {
                *e = f;
            }
        }
    }
    let mut out = BTreeMap::new();
    for (part, f) in worst {
        let edit = match f.kind.action(policy) {
            Action::Pass => continue,
            Action::Remove => Edit::Remove,
            Action::Placeholder => Edit::Placeholder,
        };
        let label = msg
            .parts
            .get(part)
            .and_then(|p| p.attachment_name())
            .map(|n| format!("\"{n}\""))
            .unwrap_or_else(|| format!("part {}", part + 1));
        let verb = match edit {
            Edit::Remove => "removed",
            Edit::Placeholder => "replaced",
        };
        let notice = format!(
            "Mailward {verb} {label} of this message: {} ({} in {}).",
            f.kind.status().as_str(),
            f.name,
            f.path
        );
        out.insert(part, (edit, notice));
    }
    out
}

#[cfg(test)]
mod tests;
