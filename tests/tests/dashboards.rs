//! The Grafana dashboard (`dashboards/mailward-overview.json`) and the
//! example alert rules (`dashboards/prometheus/mailward-alerts.yaml`),
//! proven two ways:
//!
//! - statically, without a daemon: the JSON has the structure Grafana
//!   imports, every query filters on `$instance`, every metric name and
//!   label value in a query is in the statistics catalogue
//!   (`metrics/src/catalogue.rs`, read as text), and every metric of the
//!   DESIGN 8 contract is on a panel;
//! - live: a Mailward that has handled real traffic (clean mail from
//!   smtp-source and swaks, a relay denial, an oversized message, a
//!   deferred delivery) is scraped every second by Debian's `prometheus`,
//!   and every panel query is evaluated through its HTTP API: each parses,
//!   and returns data wherever that traffic (or an always-exported series)
//!   guarantees some. The same Prometheus evaluates the alert rules, and
//!   `promtool check metrics` reads a raw scrape.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use mailward_e2e::prometheus::{
    self, promtool_check_metrics, promtool_check_rules, promtool_test_rules, Prometheus,
};
use mailward_e2e::tools::{output_text, smtp_source, READY_TIMEOUT};
use mailward_e2e::*;
use serde_json::Value;

const DASHBOARD: &str = "dashboards/mailward-overview.json";
const ALERT_RULES: &str = "dashboards/prometheus/mailward-alerts.yaml";
const ALERT_RULE_TESTS: &str = "dashboards/prometheus/mailward-alerts.test.yaml";
const CATALOGUE: &str = "metrics/src/catalogue.rs";
/// The per-policy-group families (label `group`, values from the configuration).
const GROUP_COLUMNS: &str = "metrics/src/group.rs";
const CONFIG_METRICS: &str = "metrics/src/prometheus.rs";

/// The metric names of DESIGN 8 that dashboards, alerts and operators'
/// scripts depend on (the top-N tables are added from the catalogue).
const CONTRACT: &[&str] = &[
    "mailward_messages_received_total",
    "mailward_messages_rejected_total",
    "mailward_av_results_total",
    "mailward_spam_results_total",
    "mailward_messages_blocked_total",
    "mailward_messages_quarantined_total",
    "mailward_messages_archived_total",
    "mailward_deliveries_total",
    "mailward_notifications_sent_total",
    "mailward_received_bytes_total",
    "mailward_delivered_bytes_total",
    "mailward_sessions",
    "mailward_queue_messages",
    "mailward_queue_bytes",
    "mailward_spool_free_bytes",
    "mailward_scan_duration_seconds",
    "mailward_bases_records",
    "mailward_bases_released_timestamp_seconds",
    "mailward_bases_loaded_timestamp_seconds",
    "mailward_update_last_check_timestamp_seconds",
    "mailward_update_last_result",
    "mailward_agentx_connected",
    "mailward_agentx_reconnects_total",
    "mailward_snmp_notifications_total",
    "mailward_snmp_notifications_dropped_total",
    "mailward_stats_reset_timestamp_seconds",
    "mailward_start_time_seconds",
    "mailward_build_info",
    // The process metrics of issue 3 (CPU, memory, files).
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_open_fds",
];

/// What a panel's queries must return against the live rig.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Data, because the test's traffic produced some.
    Traffic,
    /// Data, because its series are exported from the start (a counter at
    /// 0, a gauge, a process metric, build info).
    Exported,
    /// Only a valid query: its data needs viruses, filter rules, signature
    /// bases or an SNMP master, which the rig does not have (or it filters
    /// out the zero that means "none").
    Parses,
}

use Expect::*;

/// Every panel with queries, by title. A new panel must be added here, so
/// that someone decides what the live test may demand of it.
const EXPECT: &[(&str, Expect)] = &[
    // Summary
    ("Version", Exported),
    ("Uptime", Exported),
    ("Last stats reset", Exported),
    ("Received", Traffic),
    ("Queue", Traffic),
    ("Spool free", Exported),
    ("Bases age", Parses),
    ("AgentX", Exported),
    // Traffic
    ("Messages in and out", Traffic),
    ("Bytes in and out", Traffic),
    // Verdicts, rejects and policy
    ("AV verdicts", Traffic),
    ("Spam verdicts", Traffic),
    ("Policy outcomes", Exported),
    ("Rejects by reason", Traffic),
    ("Recipients rejected by reason", Traffic),
    ("Rejects by reason, whole range", Traffic),
    // Queue, spool and sessions
    ("Queue messages", Traffic),
    ("Queue size", Traffic),
    ("Spool free space", Exported),
    ("Open sessions", Exported),
    ("Sessions opened", Traffic),
    ("Oldest deferred", Exported),
    // Scanning
    ("Scan latency", Traffic),
    ("Scans", Traffic),
    ("Mean scan time", Traffic),
    // Delivery and notifications
    ("Deliveries by result", Traffic),
    ("Top deferred domains", Traffic),
    ("Delivery DNS look-ups", Exported),
    ("Notifications", Exported),
    ("Destinations suspended", Exported),
    // Viruses and filters
    ("Top viruses", Parses),
    ("Top infected senders", Parses),
    ("Top infected clients", Parses),
    ("Top filter rules", Parses),
    ("Detections and filter hits", Exported),
    // Signature bases and updates
    ("Bases released", Parses),
    ("Bases records", Exported),
    ("Bases loaded", Parses),
    ("Last update check", Parses),
    ("Last update result", Parses),
    ("Bases age over time", Parses),
    ("Bases on disk", Exported),
    // SNMP subagent
    ("AgentX session", Exported),
    ("AgentX requests, errors, reconnects", Exported),
    ("SNMP notifications", Exported),
    // Process
    ("CPU", Exported),
    ("Resident memory", Exported),
    ("Open files", Exported),
    ("Raw records", Exported),
    // Reliability
    ("Session time-outs", Exported),
    ("Stress mode", Exported),
    ("Spool reclaimable", Exported),
    ("Scans refused for memory", Exported),
    ("Spool faults", Exported),
    ("Configuration reloads", Exported),
    // Quarantine and archive
    ("Quarantined messages", Exported),
    ("Quarantine size", Exported),
    ("Quarantined and released", Exported),
    ("Archive size", Exported),
    ("Store write errors", Exported),
    // Spam check
    ("Spam tests fired", Exported),
    ("Top spam tests", Parses),
    ("Classifier learnt", Exported),
    ("DNSBL look-ups", Exported),
    ("SPF results", Exported),
    ("DKIM and DMARC", Exported),
    ("URI list look-ups", Exported),
    ("Spam scores", Exported),
    ("Classifier unavailable", Exported),
    ("DNS lists resting, server silent", Exported),
    // TLS and logging
    ("Inbound TLS", Traffic),
    ("Outbound TLS", Exported),
    (
        "Log lines dropped, raw records lost and failed rotations",
        Exported,
    ),
    // Ways in
    ("Checked by way in", Traffic),
    ("Milter connections", Exported),
    // Policy groups: every column of a group is exported from its first
    // message (the default group's, from the test's clean mail).
    ("Messages by policy group", Traffic),
    ("Outcomes by policy group", Traffic),
];

/// Grafana's variables, replaced as Grafana would for the live queries:
/// all instances, and fixed intervals (at least 4 scrapes for rates).
const SUBSTITUTIONS: &[(&str, &str)] = &[
    ("$__rate_interval", "30s"),
    ("$__interval", "5s"),
    ("$__range", "5m"),
    ("$instance", ".*"),
];

/// The instance filter every selector of a panel query carries.
const INSTANCE_MATCHER: (&str, &str, &str) = ("instance", "=~", "$instance");

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn read_workspace_file(path: &str) -> Result<String> {
    let full = workspace().join(path);
    std::fs::read_to_string(&full).with_context(|| format!("reading {}", full.display()))
}

fn load_dashboard() -> Result<Value> {
    let text = read_workspace_file(DASHBOARD)?;
    serde_json::from_str(&text).with_context(|| format!("{DASHBOARD} is not JSON"))
}

// ---------------------------------------------------------------------
// The catalogue, read from its source text.

/// One exposed metric family of the catalogue.
#[derive(Debug, Clone)]
struct Family {
    /// Its label and the bounded set of values (None: unlabelled).
    label: Option<(String, Vec<String>)>,
    /// Prometheus histogram (`_bucket`, `_sum`, `_count` series).
    histogram: bool,
    /// A top-N table: labelled `rank` and this item label, values free.
    top_item: Option<String>,
}

#[derive(Debug, Default)]
struct Catalogue {
    /// Family name -> family.
    families: BTreeMap<String, Family>,
}

impl Catalogue {
    /// The family a series name belongs to, and whether it is a histogram's
    /// `_bucket` series.
    fn family_of(&self, series: &str) -> Option<(&str, &Family, bool)> {
        if let Some((name, family)) = self.families.get_key_value(series) {
            if !family.histogram {
                return Some((name, family, false));
            }
        }
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = series.strip_suffix(suffix) {
                if let Some((name, family)) = self.families.get_key_value(base) {
                    if family.histogram {
                        return Some((name, family, suffix == "_bucket"));
                    }
                }
            }
        }
        None
    }
}

/// Parses `metrics/src/catalogue.rs`: the label value constants
/// (`pub const X: &[&str] = &[...]`), every entry of CATALOGUE, and the `prom`/`item_label` pairs of TOP_TABLES. Adds
/// the per-group families of `metrics/src/group.rs` and
/// `mailward_build_info{version}`, which the exposition adds beside them.
fn load_catalogue() -> Result<Catalogue> {
    let text = read_workspace_file(CATALOGUE)?;
    let mut consts: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("pub const ") {
        rest = &rest[at + "pub const ".len()..];
        let header = rest.lines().next().unwrap_or_default();
        let Some((name, _)) = header.split_once(": &[&str] = &[") else {
            continue;
        };
        // `header` is the start of `rest`: the values begin after `= &[`.
        let body_start = header.find("= &[").context("a constant without = &[")? + 4;
        let body_end = rest[body_start..]
            .find("];")
            .with_context(|| format!("constant {name} without ];"))?;
        consts.insert(
            name.trim().to_string(),
            string_literals(&rest[body_start..body_start + body_end]),
        );
    }
    let mut catalogue = Catalogue::default();
    // CATALOGUE: one constructor call per statistic, its first argument
    // the StatId (whatever the constructor is called and however the
    // arguments are laid out).
    let start = text
        .find("pub static CATALOGUE")
        .context("no CATALOGUE in the catalogue")?;
    let end = text[start..]
        .find("\n];")
        .map(|e| start + e)
        .context("no end of CATALOGUE")?;
    let mut rest = &text[start..end];
    while let Some(at) = rest.find("StatId::") {
        let call = &rest[at..];
        let args = top_level_args(call).context("an unterminated CATALOGUE entry")?;
        rest = &call[1..];
        // Read by what the arguments are, not where: the Prometheus name is
        // the one literal with its prefix, the kind an identifier, the label
        // `None` or `Some(("name", VALUES))`.
        let prom = args
            .iter()
            .flat_map(|a| string_literals(a))
            .find(|s| s.starts_with("mailward_") || s.starts_with("process_"))
            .with_context(|| format!("no Prometheus name in {args:?}"))?;
        let label = match args.iter().find(|a| a.starts_with("Some((")) {
            None => None,
            Some(some) => {
                let name = string_literals(some)
                    .into_iter()
                    .next()
                    .with_context(|| format!("no label name in {some}"))?;
                let set = some
                    .rsplit(',')
                    .next()
                    .unwrap_or_default()
                    .trim_matches(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .to_string();
                let values = consts
                    .get(&set)
                    .with_context(|| format!("label values {set:?} of {prom} not found"))?;
                Some((name, values.clone()))
            }
        };
        catalogue.families.insert(
            prom,
            Family {
                label,
                histogram: args
                    .iter()
                    .any(|a| a == "Histogram" || a == "Kind::Histogram"),
                top_item: None,
            },
        );
    }
    let tops = text
        .find("pub static TOP_TABLES")
        .map(|at| &text[at..])
        .context("no TOP_TABLES in the catalogue")?;
    let proms = field_literals(tops, "prom:");
    let items = field_literals(tops, "item_label:");
    ensure!(
        !proms.is_empty() && proms.len() == items.len(),
        "TOP_TABLES: {proms:?} / {items:?}"
    );
    for (prom, item) in proms.into_iter().zip(items) {
        catalogue.families.insert(
            prom,
            Family {
                label: None,
                histogram: false,
                top_item: Some(item),
            },
        );
    }
    let groups = read_workspace_file(GROUP_COLUMNS)?;
    let groups = groups
        .find("pub const GROUP_COLUMNS")
        .map(|at| &groups[at..])
        .context("no GROUP_COLUMNS in the group module")?;
    for prom in field_literals(groups, "prom:") {
        catalogue.families.insert(
            prom,
            Family {
                label: Some(("group".to_string(), Vec::new())),
                histogram: false,
                top_item: None,
            },
        );
    }
    // The configuration's life (prometheus.rs CONFIG_METRICS, rendered
    // outside the catalogue like the groups): its names, and the `result`
    // label values config_families writes.
    let prometheus = read_workspace_file(CONFIG_METRICS)?;
    let config = prometheus
        .find("pub const CONFIG_METRICS")
        .map(|at| &prometheus[at..])
        .context("no CONFIG_METRICS in the Prometheus renderer")?;
    let results: Vec<String> = prometheus
        .match_indices("label(\"result\", \"")
        .filter_map(|(at, m)| {
            let value = &prometheus[at + m.len()..];
            value.split('"').next().map(str::to_string)
        })
        .collect();
    for prom in string_literals(config.split("];").next().unwrap_or_default())
        .into_iter()
        .filter(|s| s.starts_with("mailward_config_"))
    {
        let label = prom
            .ends_with("_total")
            .then(|| ("result".to_string(), results.clone()));
        catalogue.families.insert(
            prom,
            Family {
                label,
                histogram: false,
                top_item: None,
            },
        );
    }
    catalogue.families.insert(
        "mailward_build_info".to_string(),
        Family {
            label: Some(("version".to_string(), Vec::new())),
            histogram: false,
            top_item: None,
        },
    );
    ensure!(
        catalogue.families.len() > 30,
        "only {} families read from {CATALOGUE}: has its layout changed?",
        catalogue.families.len()
    );
    Ok(catalogue)
}

/// The string literals in `text`, in order.
fn string_literals(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '"' {
            let mut s = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => s.extend(chars.next()),
                    '"' => break,
                    c => s.push(c),
                }
            }
            out.push(s);
        }
    }
    out
}

/// The string literal after each `field` in `text`.
fn field_literals(text: &str, field: &str) -> Vec<String> {
    text.match_indices(field)
        .filter_map(|(at, _)| {
            let line = text[at + field.len()..].lines().next()?;
            string_literals(line).into_iter().next()
        })
        .collect()
}

/// The arguments of a call whose text starts at its first argument (just
/// after the opening parenthesis): split at top-level commas, up to the
/// closing parenthesis, string literals skipped.
fn top_level_args(text: &str) -> Option<Vec<String>> {
    let mut args = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                current.push(c);
                while let Some(c) = chars.next() {
                    current.push(c);
                    match c {
                        '\\' => current.extend(chars.next()),
                        '"' => break,
                        _ => {}
                    }
                }
            }
            '(' | '[' | '{' => {
                depth += 1;
                current.push(c);
            }
            ')' | ']' | '}' if depth == 0 => {
                if !current.trim().is_empty() {
                    args.push(current.trim().to_string());
                }
                return Some(args);
            }
            ')' | ']' | '}' => {
                depth -= 1;
                current.push(c);
            }
            ',' if depth == 0 => {
                args.push(current.trim().to_string());
                current.clear();
            }
            c => current.push(c),
        }
    }
    None
}

// ---------------------------------------------------------------------
// PromQL, as far as the checks need it.

/// A series selector in an expression: `name{label op "value", ...}`.
#[derive(Debug, Clone)]
struct Selector {
    name: String,
    /// (label, operator, value); None when the selector has no braces.
    matchers: Option<Vec<(String, String, String)>>,
}

/// The selectors of `mailward_*` and `process_*` series in `expr`, plus
/// every range duration (`[...]`) it uses.
fn selectors(expr: &str) -> Result<(Vec<Selector>, Vec<String>)> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut ranges = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&chars, i)?;
        } else if c == '[' {
            let end = chars[i..]
                .iter()
                .position(|&c| c == ']')
                .with_context(|| format!("unclosed [ in {expr}"))?;
            ranges.push(chars[i + 1..i + end].iter().collect());
            i += end + 1;
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            let name: String = chars[start..i].iter().collect();
            if !(name.starts_with("mailward_") || name.starts_with("process_")) {
                continue;
            }
            let mut j = i;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            let mut matchers = None;
            if j < chars.len() && chars[j] == '{' {
                let mut k = j + 1;
                while k < chars.len() && chars[k] != '}' {
                    if "\"'`".contains(chars[k]) {
                        k = skip_string(&chars, k)?;
                    } else {
                        k += 1;
                    }
                }
                ensure!(k < chars.len(), "unclosed {{ in {expr}");
                let inside: String = chars[j + 1..k].iter().collect();
                matchers = Some(parse_matchers(&inside).with_context(|| format!("in {expr}"))?);
                i = k + 1;
            }
            out.push(Selector { name, matchers });
        } else {
            i += 1;
        }
    }
    Ok((out, ranges))
}

/// The index just after the string literal starting at `start`.
fn skip_string(chars: &[char], start: usize) -> Result<usize> {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() {
        if chars[i] == '\\' && quote != '`' {
            i += 2;
        } else if chars[i] == quote {
            return Ok(i + 1);
        } else {
            i += 1;
        }
    }
    bail!("unterminated string literal")
}

/// `a="x", b=~"y|z"` -> [(a, =, x), (b, =~, y|z)].
fn parse_matchers(inside: &str) -> Result<Vec<(String, String, String)>> {
    let mut out = Vec::new();
    let mut rest = inside.trim();
    while !rest.is_empty() {
        let label: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        ensure!(!label.is_empty(), "bad matcher at {rest:?}");
        rest = rest[label.len()..].trim_start();
        let op = ["=~", "!~", "!=", "="]
            .into_iter()
            .find(|op| rest.starts_with(op))
            .with_context(|| format!("no operator at {rest:?}"))?;
        rest = rest[op.len()..].trim_start();
        let chars: Vec<char> = rest.chars().collect();
        ensure!(
            chars.first().is_some_and(|c| "\"'`".contains(*c)),
            "no quoted value at {rest:?}"
        );
        let end = skip_string(&chars, 0)?;
        let literal: String = chars[..end].iter().collect();
        let value = literal[1..literal.len() - 1].replace("\\\\", "\\");
        out.push((label, op.to_string(), value));
        rest = rest[literal.len()..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Ok(out)
}

/// Problems of one expression against the catalogue: unknown series,
/// unknown labels, label values outside the catalogue's sets, and (when
/// `need_instance`) selectors without `instance=~"$instance"`.
fn check_expr(expr: &str, catalogue: &Catalogue, need_instance: bool) -> Vec<String> {
    let (selectors, _) = match selectors(expr) {
        Ok(s) => s,
        Err(e) => return vec![format!("cannot read: {e:#}")],
    };
    let mut problems = Vec::new();
    if selectors.is_empty() {
        problems.push("uses no Mailward series".to_string());
    }
    for sel in selectors {
        let Some((family_name, family, bucket)) = catalogue.family_of(&sel.name) else {
            problems.push(format!("{} is not in the catalogue", sel.name));
            continue;
        };
        let matchers = sel.matchers.clone().unwrap_or_default();
        if need_instance
            && !matchers
                .iter()
                .any(|(l, o, v)| (l.as_str(), o.as_str(), v.as_str()) == INSTANCE_MATCHER)
        {
            problems.push(format!("{} lacks {{instance=~\"$instance\"}}", sel.name));
        }
        for (label, op, value) in &matchers {
            match label.as_str() {
                "instance" | "job" => continue,
                "le" if bucket => continue,
                "rank" if family.top_item.is_some() => continue,
                l if family.top_item.as_deref() == Some(l) => continue,
                _ => {}
            }
            let Some((own, values)) = &family.label else {
                problems.push(format!("{family_name} has no label {label}"));
                continue;
            };
            if label != own {
                problems.push(format!("{family_name} has label {own}, not {label}"));
                continue;
            }
            if values.is_empty() {
                continue;
            }
            let alternatives: Vec<&str> = if op.ends_with('~') {
                value.split('|').collect()
            } else {
                vec![value.as_str()]
            };
            for alt in alternatives {
                let literal = !alt.contains(|c: char| "\\.*+?()[]{}^$".contains(c));
                if literal && !values.iter().any(|v| v == alt) {
                    problems.push(format!(
                        "{family_name}{{{label}={alt:?}}}: not one of {values:?}"
                    ));
                }
            }
        }
    }
    problems
}

/// Replaces Grafana's variables for a live query.
fn substitute(expr: &str) -> String {
    SUBSTITUTIONS
        .iter()
        .fold(expr.to_string(), |e, (var, value)| e.replace(var, value))
}

// ---------------------------------------------------------------------
// The dashboard's queries.

/// One query of the dashboard.
#[derive(Debug, Clone)]
struct Query {
    /// Where it is, for messages: `panel 11 "Title" target A`.
    place: String,
    /// The panel's title, None for an annotation.
    panel: Option<String>,
    expr: String,
}

/// Every panel, rows' nested panels included.
fn all_panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        out.push(panel);
        for nested in panel["panels"].as_array().into_iter().flatten() {
            out.push(nested);
        }
    }
    out
}

/// The queries of every panel target and of every Prometheus annotation.
fn queries(dashboard: &Value) -> Vec<Query> {
    let mut out = Vec::new();
    for panel in all_panels(dashboard) {
        let title = panel["title"].as_str().unwrap_or("?").to_string();
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.push(Query {
                place: format!(
                    "panel {} {title:?} target {}",
                    panel["id"],
                    target["refId"].as_str().unwrap_or("?")
                ),
                panel: Some(title.clone()),
                expr: target["expr"].as_str().unwrap_or_default().to_string(),
            });
        }
    }
    for annotation in dashboard["annotations"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(expr) = annotation["expr"].as_str() {
            out.push(Query {
                place: format!(
                    "annotation {:?}",
                    annotation["name"].as_str().unwrap_or("?")
                ),
                panel: None,
                expr: expr.to_string(),
            });
        }
    }
    out
}

fn expectation(title: &str) -> Option<Expect> {
    EXPECT.iter().find(|(t, _)| *t == title).map(|(_, e)| *e)
}

/// The `expr` of each rule in the alert rules file (inline, or a `|`
/// block of more-indented lines).
fn rule_exprs(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let key = trimmed.strip_prefix("- ").unwrap_or(trimmed);
        let Some(value) = key.strip_prefix("expr:") else {
            continue;
        };
        let value = value.trim();
        if value == "|" || value == ">" {
            let indent = line.len() - key.len();
            let block: Vec<&str> = lines[i + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
                .map(|l| l.trim())
                .collect();
            out.push(block.join(" ").trim().to_string());
        } else {
            out.push(value.to_string());
        }
    }
    out
}

// ---------------------------------------------------------------------
// Static tests.

#[test]
fn catalogue_text_is_read_completely() -> Result<()> {
    let catalogue = load_catalogue()?;
    let rejected = &catalogue.families["mailward_messages_rejected_total"];
    let (label, values) = rejected.label.as_ref().context("reason label")?;
    assert_eq!(label, "reason");
    assert_eq!(
        values,
        &["relay", "access", "dnsbl", "size", "limit", "syntax", "policy", "tempfail"]
    );
    assert!(catalogue.families["mailward_scan_duration_seconds"].histogram);
    assert!(catalogue
        .family_of("mailward_scan_duration_seconds_bucket")
        .is_some());
    assert!(catalogue
        .family_of("mailward_scan_duration_seconds")
        .is_none());
    assert_eq!(
        catalogue.families["mailward_top_virus_detections"]
            .top_item
            .as_deref(),
        Some("virus")
    );
    assert!(catalogue.families.contains_key("process_cpu_seconds_total"));
    Ok(())
}

#[test]
fn promql_reader_finds_selectors_matchers_and_ranges() -> Result<()> {
    let (sel, ranges) = selectors(
        r#"sum by (le) (rate(mailward_x_bucket{instance=~"$instance", a="b|c"}[$__rate_interval])) / on() process_y"#,
    )?;
    assert_eq!(sel.len(), 2);
    assert_eq!(sel[0].name, "mailward_x_bucket");
    assert_eq!(
        sel[0].matchers.as_deref(),
        Some(
            &[
                ("instance".into(), "=~".into(), "$instance".into()),
                ("a".into(), "=".into(), "b|c".into())
            ][..]
        )
    );
    assert!(sel[1].matchers.is_none());
    assert_eq!(ranges, ["$__rate_interval"]);
    assert_eq!(
        rule_exprs("  - expr: |\n      a\n        / b\n    for: 1m\n  - expr: c > 0\n"),
        ["a / b", "c > 0"]
    );
    Ok(())
}

#[test]
fn dashboard_has_the_structure_grafana_imports() -> Result<()> {
    let dashboard = load_dashboard()?;
    let catalogue = load_catalogue()?;
    let mut problems: Vec<String> = Vec::new();
    let mut problem = |p: String| problems.push(p);

    // The dashboard itself.
    match dashboard["schemaVersion"].as_u64() {
        Some(v) if (36..=41).contains(&v) => {}
        other => problem(format!(
            "schemaVersion {other:?}: want a current one (36-41)"
        )),
    }
    if dashboard["uid"] != "mailward-overview" {
        problem(format!(
            "uid {}: want \"mailward-overview\"",
            dashboard["uid"]
        ));
    }
    if dashboard["title"].as_str().unwrap_or("").is_empty() {
        problem("no title".into());
    }
    if !dashboard["id"].is_null() {
        problem(format!(
            "id {}: null, so that import creates it",
            dashboard["id"]
        ));
    }

    // Its variables.
    let vars = dashboard["templating"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let var = |name: &str| vars.iter().find(|v| v["name"] == name).cloned();
    match var("datasource") {
        Some(v) if v["type"] == "datasource" && v["query"] == "prometheus" => {}
        other => problem(format!(
            "no variable `datasource` of type datasource querying prometheus: {other:?}"
        )),
    }
    match var("instance") {
        Some(v) => {
            let query = v["query"]["query"].as_str().or(v["query"].as_str());
            if v["type"] != "query"
                || query != Some("label_values(mailward_build_info, instance)")
                || v["datasource"]["uid"] != "${datasource}"
            {
                problem(format!(
                    "variable `instance` must query label_values(mailward_build_info, instance) on ${{datasource}}: {v}"
                ));
            }
        }
        None => problem("no variable `instance`".into()),
    }

    // The panels.
    let panels = all_panels(&dashboard);
    if panels.len() < 10 {
        problem(format!("only {} panels", panels.len()));
    }
    let mut ids = BTreeSet::new();
    let mut titles = BTreeSet::new();
    let mut boxes: Vec<(String, [i64; 4])> = Vec::new();
    for panel in &panels {
        let title = panel["title"].as_str().unwrap_or("").to_string();
        let name = format!("panel {} {title:?}", panel["id"]);
        match panel["id"].as_u64() {
            Some(id) if ids.insert(id) => {}
            Some(id) => problem(format!("{name}: id {id} used twice")),
            None => problem(format!("{name}: no numeric id")),
        }
        if title.is_empty() {
            problem(format!("{name}: no title"));
        }
        if panel["type"].as_str().unwrap_or("").is_empty() {
            problem(format!("{name}: no type"));
        }
        let pos = &panel["gridPos"];
        let dims: Vec<Option<i64>> = ["x", "y", "w", "h"]
            .iter()
            .map(|k| pos[k].as_i64())
            .collect();
        match dims.as_slice() {
            [Some(x), Some(y), Some(w), Some(h)] => {
                if *x < 0 || *y < 0 || *w < 1 || *h < 1 || x + w > 24 {
                    problem(format!("{name}: gridPos {pos} outside the 24-column grid"));
                }
                for (other, [ox, oy, ow, oh]) in &boxes {
                    if x < &(ox + ow) && ox < &(x + w) && y < &(oy + oh) && oy < &(y + h) {
                        problem(format!("{name}: gridPos {pos} overlaps {other}"));
                    }
                }
                boxes.push((name.clone(), [*x, *y, *w, *h]));
            }
            _ => problem(format!("{name}: gridPos {pos} lacks x, y, w or h")),
        }
        if panel["type"] == "row" {
            continue;
        }
        if !titles.insert(title.clone()) {
            problem(format!("{name}: title used twice"));
        }
        if panel["datasource"]["uid"] != "${datasource}"
            || panel["datasource"]["type"] != "prometheus"
        {
            problem(format!(
                "{name}: datasource {} is not ${{datasource}}",
                panel["datasource"]
            ));
        }
        if panel["fieldConfig"]["defaults"]["unit"]
            .as_str()
            .unwrap_or("")
            .is_empty()
        {
            problem(format!("{name}: no unit"));
        }
        let targets = panel["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            problem(format!("{name}: no targets"));
        }
        let mut refs = BTreeSet::new();
        for target in &targets {
            if target["expr"].as_str().unwrap_or("").trim().is_empty() {
                problem(format!("{name}: a target without expr: {target}"));
            }
            if !refs.insert(target["refId"].as_str().unwrap_or("").to_string()) {
                problem(format!("{name}: refId {} twice", target["refId"]));
            }
        }
        // A panel drawn in bytes draws counts as bytes too unless an
        // override gives them their own unit (walkD: "Archive size" showed
        // 2 messages as "2 B").
        if panel["fieldConfig"]["defaults"]["unit"].as_str() == Some("bytes") {
            let overrides = panel["fieldConfig"]["overrides"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for target in &targets {
                let expr = target["expr"].as_str().unwrap_or("");
                let sized = expr.contains("_bytes");
                let covered = overrides.iter().any(|o| {
                    let by = o["matcher"]["id"].as_str();
                    let what = o["matcher"]["options"].as_str();
                    (by == Some("byFrameRefID") && what == target["refId"].as_str())
                        || (by == Some("byName") && what == target["legendFormat"].as_str())
                });
                if !sized && !covered {
                    problem(format!(
                        "{name}: target {} counts no bytes ({expr}) but the panel's unit is bytes: add an override by its refId",
                        target["refId"]
                    ));
                }
            }
        }
        if expectation(&title).is_none() {
            problem(format!(
                "{name}: not in EXPECT of tests/tests/dashboards.rs: say what the live test may demand of it"
            ));
        }
    }
    for (title, _) in EXPECT {
        if !titles.contains(*title) {
            problem(format!("EXPECT names {title:?}, which is no panel"));
        }
    }

    // The queries.
    let queries = queries(&dashboard);
    let mut used: BTreeSet<String> = BTreeSet::new();
    for q in &queries {
        for p in check_expr(&q.expr, &catalogue, true) {
            problem(format!("{}: {p}\n    {}", q.place, q.expr));
        }
        if let Ok((sels, ranges)) = selectors(&q.expr) {
            for sel in sels {
                if let Some((family, _, _)) = catalogue.family_of(&sel.name) {
                    if q.panel.is_some() {
                        used.insert(family.to_string());
                    }
                }
            }
            for range in ranges {
                if !["$__rate_interval", "$__interval", "$__range"].contains(&range.as_str()) {
                    problem(format!(
                        "{}: range [{range}]: use $__rate_interval (or $__interval, $__range)\n    {}",
                        q.place, q.expr
                    ));
                }
            }
        }
        let live = substitute(&q.expr);
        if live.contains('$') {
            problem(format!("{}: unknown variable left in {live}", q.place));
        }
    }

    // The contract, and the top-N tables, each on a panel.
    let tops: Vec<String> = catalogue
        .families
        .iter()
        .filter(|(_, f)| f.top_item.is_some())
        .map(|(n, _)| n.clone())
        .collect();
    for name in CONTRACT.iter().map(|s| s.to_string()).chain(tops) {
        if !catalogue.families.contains_key(&name) {
            problem(format!(
                "contract metric {name} is not in {CATALOGUE} (renamed? DESIGN 8 says change both together)"
            ));
        }
        if !used.contains(&name) {
            problem(format!("contract metric {name} is on no panel"));
        }
    }

    assert!(
        problems.is_empty(),
        "{DASHBOARD}: {} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
    Ok(())
}

#[test]
fn alert_rules_use_catalogue_names_and_pass_promtool() -> Result<()> {
    let catalogue = load_catalogue()?;
    let yaml = read_workspace_file(ALERT_RULES)?;
    let exprs = rule_exprs(&yaml);
    let alerts = yaml
        .lines()
        .filter(|l| l.trim_start().starts_with("- alert:"))
        .count();
    assert_eq!(exprs.len(), alerts, "one expr per alert in {ALERT_RULES}");
    let mut problems = Vec::new();
    for expr in &exprs {
        if expr.contains("up{") {
            continue;
        }
        for p in check_expr(expr, &catalogue, false) {
            problems.push(format!("{p}\n    {expr}"));
        }
    }
    assert!(
        problems.is_empty(),
        "{ALERT_RULES}:\n{}",
        problems.join("\n")
    );
    let out = promtool_check_rules(&workspace().join(ALERT_RULES))?;
    assert!(
        out.status.success(),
        "promtool check rules {ALERT_RULES}:\n{}",
        output_text(&out)
    );
    // The rules' own unit tests: each alert fires for the series it is
    // about, and not for the others.
    let out = promtool_test_rules(&workspace().join(ALERT_RULE_TESTS))?;
    assert!(
        out.status.success(),
        "promtool test rules {ALERT_RULE_TESTS}:\n{}",
        output_text(&out)
    );
    Ok(())
}

/// walkU finding 1: the "Restarts" and "Stats resets" annotations counted
/// `changes(x[$__interval])`, and Grafana runs an annotation query with its
/// step as `$__interval`, so each window was one step long: a change whose
/// last old sample fell in one window and first new sample in the next was
/// in neither (missed at a quarter of the step alignments with a 15 s
/// scrape and a 1m step). An annotation must mark each change at exactly
/// one step whatever the alignment: true over a span of exactly one step.
/// promtool evaluates each expression every 5 s around a restart that also
/// cost a scrape (15 s scrape, 1m step).
#[test]
fn annotations_mark_every_restart_and_reset_at_exactly_one_step() -> Result<()> {
    const STEP: u32 = 60;
    const SCRAPE: u32 = 15;
    // Old value until 300 s, the scrape at 315 s lost, the new value from
    // 330 s.
    const FIRST_NEW: u32 = 330;
    let dashboard = load_dashboard()?;
    let annotations: Vec<Query> = queries(&dashboard)
        .into_iter()
        .filter(|q| q.panel.is_none())
        .collect();
    let names: Vec<&str> = annotations.iter().map(|q| q.place.as_str()).collect();
    ensure!(
        names == ["annotation \"Restarts\"", "annotation \"Stats resets\""],
        "the annotations are {names:?}"
    );
    let dir = tempfile::tempdir()?;
    for q in &annotations {
        let expr = format!(
            "count({})",
            q.expr
                .replace("$__interval", &format!("{STEP}s"))
                .replace("$instance", ".*")
        );
        let (sels, _) = selectors(&expr)?;
        let series: BTreeSet<String> = sels.into_iter().map(|s| s.name).collect();
        let mut yaml = format!(
            "rule_files: []\nevaluation_interval: {STEP}s\ntests:\n  - interval: {SCRAPE}s\n    input_series:\n"
        );
        for name in &series {
            yaml.push_str(&format!(
                "      - series: '{name}{{instance=\"gw\"}}'\n        values: '1000x20 _ 2000x20'\n"
            ));
        }
        yaml.push_str("    promql_expr_test:\n");
        for t in (FIRST_NEW - 2 * STEP..FIRST_NEW + 2 * STEP).step_by(5) {
            let marked = (FIRST_NEW..FIRST_NEW + STEP).contains(&t);
            yaml.push_str(&format!(
                "      - expr: '{}'\n        eval_time: {t}s\n        exp_samples:{}\n",
                expr.replace('\'', "''"),
                if marked {
                    "\n          - labels: '{}'\n            value: 1"
                } else {
                    " []"
                }
            ));
        }
        let file = dir.path().join("annotation.test.yaml");
        std::fs::write(&file, &yaml)?;
        let out = promtool_test_rules(&file)?;
        ensure!(
            out.status.success(),
            "{} does not mark a change at exactly one step of {STEP} s (true from the first \
             new sample at {FIRST_NEW} s for one step):\n    {}\n{}",
            q.place,
            q.expr,
            output_text(&out)
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------
// The live test.

const CLEAN_SOURCE: usize = 20;
const CLEAN_SWAKS: usize = 3;
/// Accepted messages: the clean ones and the deferred one.
const RECEIVED: usize = CLEAN_SOURCE + CLEAN_SWAKS + 1;

/// Sends the traffic mix, checking each reply: clean mail (smtp-source and
/// swaks), a relay denial, an oversized message and one to a next hop that
/// is down.
fn send_traffic(gw_port: u16) -> Result<()> {
    let server = format!("127.0.0.1:{gw_port}");
    // Clean mail: smtp-source over two sessions, and swaks.
    let out = smtp_source(&[
        "-s",
        "2",
        "-m",
        &CLEAN_SOURCE.to_string(),
        "-l",
        "1024",
        "-f",
        "sender@example.com",
        "-t",
        "rcpt@example.com",
        &server,
    ])?;
    ensure!(
        out.status.success(),
        "smtp-source failed:\n{}",
        output_text(&out)
    );
    for n in 0..CLEAN_SWAKS {
        let out = swaks(&[
            "--server",
            &server,
            "--from",
            "alice@sender.test",
            "--to",
            &format!("bob{n}@example.com"),
            "--ehlo",
            "client.test",
            "--data",
            &resource("mail/plain.eml").display().to_string(),
        ])?;
        ensure!(out.status.success(), "swaks failed:\n{}", output_text(&out));
    }
    // Relay denied: 127.0.0.1 is outside relay_networks, elsewhere.test
    // is not protected.
    let out = swaks(&[
        "--server",
        &server,
        "--from",
        "alice@sender.test",
        "--to",
        "victim@elsewhere.test",
        "--ehlo",
        "client.test",
    ])?;
    let text = output_text(&out);
    ensure!(
        !out.status.success() && text.contains("<** 554 5.7.1"),
        "swaks to an unprotected domain was not refused with 554 5.7.1:\n{text}"
    );
    // Oversized: 20 KiB over a 10 KiB limit.
    let mut c = SmtpClient::connect_ok(gw_port)?;
    c.ehlo("client.test")?;
    let mut big = b"Subject: too big\r\n\r\n".to_vec();
    while big.len() < 20 * 1024 {
        big.extend_from_slice(
            b"0123456789012345678901234567890123456789012345678901234567890123456789\r\n",
        );
    }
    c.send_mail("alice@sender.test", &["bob@example.com"], &big)?
        .expect(552, "5.3.4")?;
    c.quit();
    // Deferred: deferred.test is routed to a port nobody listens on.
    let mut c = SmtpClient::connect_ok(gw_port)?;
    c.ehlo("client.test")?;
    c.send_mail_ok(
        "alice@sender.test",
        &["carol@deferred.test"],
        &read_resource("mail/plain.eml")?,
    )?;
    c.quit();
    Ok(())
}

/// What Prometheus must see once the traffic is in: each a query that
/// returns one value, and the least and most that value may be.
fn state_checks() -> Vec<(String, f64, f64)> {
    let j = r#"job="mailward""#;
    let at_least = |expr: String, min: usize| (expr, min as f64, f64::INFINITY);
    let exactly = |expr: String, value: f64| (expr, value, value);
    vec![
        // The traffic.
        at_least(format!("sum(mailward_messages_received_total{{{j}}})"), RECEIVED),
        at_least(format!(r#"sum(mailward_messages_rejected_total{{{j},reason="relay"}})"#), 1),
        at_least(format!(r#"sum(mailward_messages_rejected_total{{{j},reason="size"}})"#), 1),
        // The relay denial: one refused recipient, and its transaction
        // (ended by QUIT without a message) counted once above.
        exactly(format!(r#"sum(mailward_recipients_rejected_total{{{j},reason="relay"}})"#), 1.0),
        exactly(format!(r#"sum(mailward_messages_rejected_total{{{j},reason="relay"}})"#), 1.0),
        at_least(format!(r#"sum(mailward_deliveries_total{{{j},result="delivered"}})"#), RECEIVED - 1),
        at_least(format!(r#"sum(mailward_deliveries_total{{{j},result="deferred"}})"#), 1),
        at_least(format!("sum(mailward_queue_messages{{{j}}})"), 1),
        at_least(format!("sum(mailward_queue_bytes{{{j}}})"), 1),
        at_least(format!("sum(mailward_received_bytes_total{{{j}}})"), CLEAN_SOURCE * 1024),
        at_least(format!("sum(mailward_delivered_bytes_total{{{j}}})"), 1024),
        at_least(format!(r#"sum(mailward_sessions_opened_total{{{j},direction="in"}})"#), 7),
        at_least(format!(r#"sum(mailward_sessions_opened_total{{{j},direction="out"}})"#), 1),
        // Every inbound session ends with its STARTTLS outcome, the rig's
        // in plain text (the Inbound TLS panel).
        at_least(format!(r#"sum(mailward_inbound_tls_total{{{j},result="plain"}})"#), 7),
        at_least(format!(r#"sum(mailward_av_results_total{{{j},status="clean"}})"#), RECEIVED),
        at_least(format!(r#"sum(mailward_spam_results_total{{{j},status="clean"}})"#), RECEIVED),
        at_least(format!("sum(mailward_scan_duration_seconds_count{{{j}}})"), RECEIVED),
        // What the rig does not have: an AgentX master, an update; its bases
        // are the built-in default set.
        // The built-in default bases (bases/default/manifest.toml).
        exactly(format!("sum(mailward_bases_records{{{j}}})"), 5.0),
        exactly(format!("sum(mailward_agentx_connected{{{j}}})"), 0.0),
        exactly(format!("sum(mailward_agentx_registered{{{j}}})"), 0.0),
        exactly(format!(r#"sum(mailward_update_last_result{{{j},result="unknown"}})"#), 1.0),
        exactly(format!("sum(mailward_update_last_result{{{j}}})"), 1.0),
        // The daemon itself: one build, started less than ten minutes ago.
        exactly(format!("count(mailward_build_info{{{j}}} == 1)"), 1.0),
        (format!("time() - max(mailward_start_time_seconds{{{j}}})"), 0.0, 600.0),
        // Counters were zeroed at start (no `stats reset` since).
        (
            format!("max(abs(mailward_stats_reset_timestamp_seconds{{{j}}} - mailward_start_time_seconds{{{j}}}))"),
            0.0,
            1.0,
        ),
    ]
}

#[test]
fn every_panel_query_answers_from_a_live_prometheus() -> Result<()> {
    // Fail at once, naming the package, when Prometheus is not installed.
    require("prometheus", prometheus::PACKAGE)?;
    require("promtool", prometheus::PACKAGE)?;
    let dashboard = load_dashboard()?;
    let catalogue = load_catalogue()?;

    let dir = TestDir::new("dashboards")?;
    let sink = Sink::start(dir.path(), "sink")?;
    let closed_port = free_port(); // nothing listens: deliveries there defer
    let metrics_port = free_port();
    let config = Config::new(dir.path())
        .set_list("network", "relay_networks", &["10.0.0.0/8"])
        .set_list(
            "network",
            "protected_domains",
            &["example.com", "deferred.test"],
        )
        .set_str("limits", "max_message_size", "10KiB")
        .set_str("metrics", "listen", &format!("127.0.0.1:{metrics_port}"))
        .route_to_port("*@deferred.test", closed_port)
        .route_to_port("*", sink.port);
    let daemon = Daemon::start(&config)?;
    wait_until(
        &format!("GET /metrics on metrics.listen = 127.0.0.1:{metrics_port}"),
        READY_TIMEOUT,
        || Ok(prometheus::scrape(metrics_port).ok()),
    )?;

    let prom = Prometheus::start(
        dir.path(),
        "prometheus",
        &[("mailward", format!("127.0.0.1:{metrics_port}"))],
        &[workspace().join(ALERT_RULES)],
    )?;
    let up = r#"up{job="mailward"} == 1"#;
    prom.wait_for(up, Duration::from_secs(60))
        .with_context(|| format!("prometheus log:\n{}", prom.log()))?;

    // The traffic, sent while Prometheus scrapes, so that rates move.
    send_traffic(daemon.port)?;
    sink.wait_for_count(CLEAN_SOURCE + CLEAN_SWAKS, DELIVERY_TIMEOUT)?;

    let mut failures: Vec<String> = Vec::new();

    // Prometheus sees what was sent (counters are scraped every second).
    let checks = state_checks();
    let deadline = Instant::now() + Duration::from_secs(60);
    let short: Vec<String> = loop {
        let short: Vec<String> = checks
            .iter()
            .filter_map(|(expr, min, max)| match prom.query(expr) {
                Ok(r) => match r.single_value() {
                    Some(v) if v >= *min && v <= *max => None,
                    v => Some(format!("{expr}: {v:?}, want {min} to {max}")),
                },
                Err(e) => Some(format!("{expr}: {e:#}")),
            })
            .collect();
        if short.is_empty() || Instant::now() > deadline {
            break short;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    failures.extend(
        short
            .into_iter()
            .map(|s| format!("not seen in prometheus: {s}")),
    );
    // A few more scrapes, so that every rate window holds several samples.
    std::thread::sleep(Duration::from_secs(5));
    match prom.query(r#"count_over_time(up{job="mailward"}[30s])"#) {
        Ok(r) if r.single_value().is_some_and(|n| n >= 5.0) => {}
        other => failures.push(format!("fewer than 5 scrapes in 30 s: {other:?}")),
    }

    // Every query of the dashboard.
    for q in queries(&dashboard) {
        let expr = substitute(&q.expr);
        let expect = q.panel.as_deref().and_then(expectation).unwrap_or(Parses);
        let answer = prom.query(&expr);
        // Shown with --nocapture, and beside a failure.
        eprintln!(
            "{}: {}",
            q.place,
            match &answer {
                Ok(r) if r.result_type == "vector" => format!("{} series", r.samples().len()),
                Ok(r) => r.result_type.clone(),
                Err(_) => "error".to_string(),
            }
        );
        match answer {
            Err(e) => failures.push(format!("{}: query failed: {e:#}\n    {expr}", q.place)),
            Ok(r) if r.is_empty() && expect == Traffic => failures.push(format!(
                "{}: no data although the traffic must have produced some\n    {expr}",
                q.place
            )),
            Ok(r) if r.is_empty() && expect == Exported => failures.push(format!(
                "{}: no data: its series must be exported from the start (0 until used)\n    {expr}",
                q.place
            )),
            Ok(_) => {}
        }
    }

    // The instance variable's query.
    match prom.api(&format!(
        "label/instance/values?match[]={}",
        prometheus::url_encode("mailward_build_info")
    )) {
        Ok(values)
            if values
                .as_array()
                .is_some_and(|v| v.iter().any(|i| *i == format!("127.0.0.1:{metrics_port}"))) => {}
        other => failures.push(format!(
            "label_values(mailward_build_info, instance) has not 127.0.0.1:{metrics_port}: {other:?}"
        )),
    }

    // Every family of the catalogue is exported, with each of its label
    // values, from the start (top-N tables only once they have items).
    for (name, family) in &catalogue.families {
        if family.top_item.is_some() {
            continue;
        }
        let series: Vec<String> = if family.histogram {
            ["_bucket", "_sum", "_count"]
                .iter()
                .map(|s| format!("{name}{s}"))
                .collect()
        } else {
            vec![name.clone()]
        };
        for s in series {
            let expr = format!(r#"{s}{{job="mailward"}}"#);
            let result = match prom.query(&expr) {
                Ok(r) => r,
                Err(e) => {
                    failures.push(format!("{expr}: {e:#}"));
                    continue;
                }
            };
            if result.is_empty() {
                failures.push(format!("not exposed: {s}"));
                continue;
            }
            if let Some((label, values)) = &family.label {
                let seen: BTreeSet<String> = result
                    .samples()
                    .iter()
                    .filter_map(|(labels, _)| labels.get(label)?.as_str().map(str::to_string))
                    .collect();
                if values.is_empty() {
                    if seen.iter().all(|v| v.is_empty()) {
                        failures.push(format!("{s}: no {label} label"));
                    }
                } else {
                    let missing: Vec<&String> =
                        values.iter().filter(|v| !seen.contains(*v)).collect();
                    let extra: Vec<&String> = seen.iter().filter(|v| !values.contains(v)).collect();
                    if !missing.is_empty() || !extra.is_empty() {
                        failures.push(format!(
                            "{s}: {label} values missing {missing:?}, unknown {extra:?}"
                        ));
                    }
                }
            }
        }
    }

    // The alert rules evaluate without error.
    match prom.api("rules?type=alert") {
        Ok(data) => {
            let rules: Vec<Value> = data["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                .collect();
            let expected = rule_exprs(&read_workspace_file(ALERT_RULES)?).len();
            if rules.len() != expected {
                failures.push(format!(
                    "prometheus loaded {} alert rules of {expected}",
                    rules.len()
                ));
            }
            for rule in rules {
                if rule["health"] != "ok" {
                    failures.push(format!(
                        "alert {}: health {} {}\n    {}",
                        rule["name"], rule["health"], rule["lastError"], rule["query"]
                    ));
                }
            }
        }
        Err(e) => failures.push(format!("GET /api/v1/rules: {e:#}")),
    }

    // promtool reads a raw scrape without complaint.
    match prometheus::scrape(metrics_port) {
        Ok(exposition) => {
            let out = promtool_check_metrics(&exposition)?;
            let text = output_text(&out);
            if !out.status.success() || !text.trim().is_empty() {
                failures.push(format!("promtool check metrics ({}):\n{text}", out.status));
            }
        }
        Err(e) => failures.push(format!("scraping /metrics: {e:#}")),
    }

    // `stats reset`: Prometheus sees a counter reset, and rates stay at or
    // above zero across it (never a negative rate).
    match daemon.cli(&["stats", "reset"]) {
        Ok(out) if out.status.success() => {
            let seen = prom.wait_for(
                "resets(mailward_messages_received_total[1m]) >= 1",
                Duration::from_secs(30),
            );
            if let Err(e) = seen {
                failures.push(format!(
                    "after stats reset, Prometheus saw no counter reset: {e:#}"
                ));
            }
            for expr in [
                "rate(mailward_messages_received_total[1m])",
                "rate(mailward_deliveries_total[1m])",
                "increase(mailward_received_bytes_total[1m])",
            ] {
                match prom.query(&format!("min({expr})")) {
                    Ok(r) => match r.single_value() {
                        Some(v) if v >= 0.0 => {}
                        other => failures.push(format!(
                            "after stats reset, {expr} = {other:?}, expected >= 0"
                        )),
                    },
                    Err(e) => failures.push(format!("{expr}: {e:#}")),
                }
            }
        }
        Ok(out) => failures.push(format!(
            "mailward stats reset failed: {}",
            output_text(&out)
        )),
        Err(e) => failures.push(format!("mailward stats reset: {e:#}")),
    }

    if !failures.is_empty() {
        let exposition = prometheus::scrape(metrics_port).unwrap_or_else(|e| format!("{e:#}"));
        eprintln!("----- /metrics -----\n{exposition}\n-----");
        eprintln!("----- prometheus log -----\n{}\n-----", prom.log());
    }
    assert!(
        failures.is_empty(),
        "{} failure(s) against the live Prometheus:\n{}",
        failures.len(),
        failures.join("\n")
    );
    Ok(())
}
