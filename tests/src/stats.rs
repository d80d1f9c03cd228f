//! Reading Mailward's statistics as a user would: the Prometheus text of
//! `GET /metrics` (fetched over a plain socket and parsed, label escapes
//! included), the JSON stats file that `mailward stats write` produces, the
//! raw records (one tab-separated line per message and recipient, fields
//! unescaped), and `promtool check metrics`. Both renderings can be
//! flattened to the same keys (`name` or `name{label value}`) so that a
//! test compares them value by value.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

use crate::config::Config;
use crate::daemon::Daemon;
use crate::sink::Sink;
use crate::tools::{free_port, output_text, wait_until};

/// Where a test's statistics go, and the port /metrics is served on.
#[derive(Debug, Clone)]
pub struct StatsSetup {
    /// `metrics.listen` is 127.0.0.1:`metrics_port`.
    pub metrics_port: u16,
    /// `statistics.destination`.
    pub file: PathBuf,
    /// `statistics.raw_destination`.
    pub raw: PathBuf,
}

impl StatsSetup {
    /// A free metrics port and files under `dir/stats-out/`.
    pub fn new(dir: &Path) -> StatsSetup {
        StatsSetup {
            metrics_port: free_port(),
            file: dir.join("stats-out").join("stats.json"),
            raw: dir.join("stats-out").join("raw.log"),
        }
    }

    /// `config` with `[metrics]` and `[statistics]` set to this setup (all
    /// categories, the periodic write far away so that only the test writes
    /// the file).
    pub fn apply(&self, config: Config) -> Config {
        config
            .set_str(
                "metrics",
                "listen",
                &format!("127.0.0.1:{}", self.metrics_port),
            )
            .set_str(
                "statistics",
                "destination",
                &self.file.display().to_string(),
            )
            .set_str(
                "statistics",
                "raw_destination",
                &self.raw.display().to_string(),
            )
            .set_str("statistics", "write_interval", "1h")
            .set_list(
                "statistics",
                "options",
                &["messages", "resources", "viruses", "filters", "raw"],
            )
    }

    /// The exposition text of one scrape.
    pub fn scrape_text(&self) -> Result<String> {
        crate::prometheus::scrape(self.metrics_port)
    }

    /// One scrape, parsed.
    pub fn scrape(&self) -> Result<Metrics> {
        let text = self.scrape_text()?;
        Metrics::parse(&text).with_context(|| format!("parsing /metrics:\n{text}"))
    }

    /// Waits (up to `timeout`) until `sink` has `delivered` messages, the
    /// queue holds `queued` (each tried once), no inbound session is open
    /// and `more` holds of the scrape; returns that scrape. Counters read
    /// before then may still be moving.
    pub fn settle(
        &self,
        daemon: &Daemon,
        sink: &Sink,
        (delivered, queued): (usize, usize),
        timeout: Duration,
        more: impl Fn(&Metrics) -> bool,
    ) -> Result<Metrics> {
        let mut last = String::new();
        wait_until("the traffic to settle", timeout, || {
            let at_sink = sink.count();
            let queue = daemon.queue_list()?;
            let tried = queue
                .iter()
                .all(|m| m["attempts"].as_u64().unwrap_or(0) >= 1);
            let m = self.scrape()?;
            let open_in = m.value("mailward_sessions", &[("direction", "in")])?;
            last = format!(
                "sink {at_sink}/{delivered}, queue {}/{queued} (all tried: {tried}), open inbound sessions {open_in}",
                queue.len()
            );
            Ok((at_sink == delivered
                && queue.len() == queued
                && tried
                && open_in == 0.0
                && more(&m))
                .then_some(m))
        })
        .with_context(|| format!("last seen: {last}"))
    }

    /// `mailward stats write`, then the file it wrote, parsed. Fails unless
    /// the command names the configured destination.
    pub fn write_file(&self, daemon: &Daemon) -> Result<Value> {
        let out = daemon.cli_ok(&["stats", "write"])?;
        ensure!(
            out.contains(&self.file.display().to_string()),
            "`stats write` does not name {}: {out:?}",
            self.file.display()
        );
        self.read_file()
    }

    /// The stats file as it is now, parsed.
    pub fn read_file(&self) -> Result<Value> {
        let text = std::fs::read_to_string(&self.file)
            .with_context(|| format!("reading {}", self.file.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON:\n{text}", self.file.display()))
    }

    /// The raw records file, split into lines (each checked to have exactly
    /// 9 fields, the first two numbers).
    pub fn raw_lines(&self) -> Result<Vec<RawLine>> {
        let bytes = match std::fs::read(&self.raw) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).context(format!("reading {}", self.raw.display())),
        };
        let text = String::from_utf8(bytes)
            .with_context(|| format!("{} is not UTF-8", self.raw.display()))?;
        ensure!(
            text.is_empty() || text.ends_with('\n'),
            "{} ends in a partial line: {:?}",
            self.raw.display(),
            &text[text.len().saturating_sub(200)..]
        );
        text.lines().map(RawLine::parse).collect()
    }
}

/// One sample of the exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    /// In the order written.
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A parsed scrape: samples and the `# TYPE` of each family.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub text: String,
    pub samples: Vec<Sample>,
    /// Family name -> counter, gauge, histogram, ...
    pub types: BTreeMap<String, String>,
}

impl Metrics {
    /// Parses the text format (version 0.0.4).
    pub fn parse(text: &str) -> Result<Metrics> {
        let mut samples = Vec::new();
        let mut types = BTreeMap::new();
        for line in text.lines() {
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').context("TYPE line")?;
                types.insert(name.to_string(), kind.trim().to_string());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            samples.push(parse_sample(line).with_context(|| format!("sample line {line:?}"))?);
        }
        Ok(Metrics {
            text: text.to_string(),
            samples,
            types,
        })
    }

    /// The samples named `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.name == name)
    }

    /// The one sample `name` with exactly these labels (in any order).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.all(name)
            .find(|s| {
                s.labels.len() == labels.len() && labels.iter().all(|(k, v)| s.label(k) == Some(*v))
            })
            .map(|s| s.value)
    }

    /// Like [`get`](Self::get), failing when absent.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Result<f64> {
        self.get(name, labels)
            .with_context(|| format!("no sample {name}{labels:?} in /metrics"))
    }

    /// The sum of every sample named `name`.
    pub fn sum(&self, name: &str) -> f64 {
        self.all(name).map(|s| s.value).sum()
    }

    /// The families whose `# TYPE` is counter.
    pub fn counters(&self) -> Vec<String> {
        self.types
            .iter()
            .filter(|(_, k)| *k == "counter")
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Every sample as `name` or `name{v1,v2}` (label values only, in
    /// order) -> value; top-N rows, `+Inf` buckets and build info left out,
    /// so that the keys are those of [`flatten_json`].
    pub fn flat(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for s in &self.samples {
            if s.name.starts_with("mailward_top_") || s.name == "mailward_build_info" {
                continue;
            }
            if s.label("le") == Some("+Inf") {
                continue;
            }
            out.insert(
                flat_key(&s.name, s.labels.iter().map(|(_, v)| v.as_str())),
                s.value,
            );
        }
        out
    }
}

fn flat_key<'a>(name: &str, values: impl Iterator<Item = &'a str>) -> String {
    let values: Vec<&str> = values.collect();
    if values.is_empty() {
        name.to_string()
    } else {
        format!("{name}{{{}}}", values.join(","))
    }
}

fn parse_sample(line: &str) -> Result<Sample> {
    let name_end = line.find(['{', ' ']).context("no value")?;
    let name = &line[..name_end];
    ensure!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
        "bad metric name {name:?}"
    );
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(mut inner) = rest.strip_prefix('{') {
        loop {
            inner = inner.trim_start_matches(',');
            if let Some(after) = inner.strip_prefix('}') {
                rest = after;
                break;
            }
            let (lname, after) = inner.split_once("=\"").context("label without =\"")?;
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                let (i, c) = chars.next().context("unterminated label value")?;
                match c {
                    '\\' => match chars.next().context("dangling backslash")?.1 {
                        'n' => value.push('\n'),
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        other => bail!("unknown escape \\{other} in a label value"),
                    },
                    '"' => break i,
                    c => value.push(c),
                }
            };
            labels.push((lname.to_string(), value));
            inner = &after[end + 1..];
        }
    }
    let mut words = rest.split_whitespace();
    let value = words.next().context("no value")?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().with_context(|| format!("value {v:?}"))?,
    };
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Every number of a stats file as `name` or `name{label value}` -> value
/// (histograms as `NAME_count`, `NAME_sum`, `NAME_bucket{le}`); top-N
/// tables and recent raw records left out.
pub fn flatten_json(doc: &Value) -> Result<BTreeMap<String, f64>> {
    let mut out = BTreeMap::new();
    let root = doc.as_object().context("the stats file is not an object")?;
    for (section, body) in root {
        let Some(body) = body.as_object() else {
            continue; // version, taken_at, start_time, reset_time
        };
        for (name, v) in body {
            match v {
                Value::Number(n) => {
                    out.insert(name.clone(), n.as_f64().context("number")?);
                }
                Value::Object(map) if map.contains_key("buckets") => {
                    let num = |k: &str| {
                        map.get(k)
                            .and_then(Value::as_f64)
                            .with_context(|| format!("{section}.{name}.{k}"))
                    };
                    out.insert(format!("{name}_count"), num("count")?);
                    let sum = num("sum_seconds").or_else(|_| num("sum"))?;
                    out.insert(format!("{name}_sum"), sum);
                    for b in map["buckets"].as_array().context("buckets")? {
                        let le = b["le"].as_f64().context("le")?;
                        let n = b["count"].as_f64().context("bucket count")?;
                        out.insert(format!("{name}_bucket{{{le}}}"), n);
                    }
                }
                Value::Object(map) => {
                    for (label, n) in map {
                        out.insert(
                            format!("{name}{{{label}}}"),
                            n.as_f64()
                                .with_context(|| format!("{section}.{name}.{label}: {n}"))?,
                        );
                    }
                }
                Value::Array(_) => {}
                other => bail!("{section}.{name}: unexpected {other}"),
            }
        }
    }
    Ok(out)
}

/// The differences between two flattened renderings, ignoring `skip`.
pub fn differences(
    a_name: &str,
    a: &BTreeMap<String, f64>,
    b_name: &str,
    b: &BTreeMap<String, f64>,
    skip: &[&str],
) -> Vec<String> {
    let skipped = |k: &str| {
        skip.iter()
            .any(|s| k == *s || k.starts_with(&format!("{s}{{")))
    };
    let mut out = Vec::new();
    for (k, va) in a.iter().filter(|(k, _)| !skipped(k)) {
        match b.get(k) {
            None => out.push(format!("{k}: {va} in {a_name}, absent in {b_name}")),
            Some(vb) if vb != va => out.push(format!("{k}: {va} in {a_name}, {vb} in {b_name}")),
            Some(_) => {}
        }
    }
    for k in b.keys().filter(|k| !skipped(k) && !a.contains_key(*k)) {
        out.push(format!("{k}: absent in {a_name}, {} in {b_name}", b[k]));
    }
    out
}

/// One raw record: the 9 fields, unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawLine {
    pub line: String,
    pub time: i64,
    pub size: u64,
    pub sender: String,
    pub recipient: String,
    pub status: String,
    pub detail: String,
    pub client_ip: String,
    pub queue_id: String,
    pub group: String,
    /// smtp, filter or milter.
    pub mode: String,
}

impl RawLine {
    /// Parses one line (without its newline): exactly 10 tab-separated
    /// fields, `-` for an empty one.
    pub fn parse(line: &str) -> Result<RawLine> {
        let f: Vec<&str> = line.split('\t').collect();
        ensure!(
            f.len() == 10,
            "raw record with {} fields, not 10: {line:?}",
            f.len()
        );
        ensure!(!line.contains('\r'), "raw record with a bare CR: {line:?}");
        let field = |i: usize| unescape(f[i]).with_context(|| format!("field {i} of {line:?}"));
        Ok(RawLine {
            line: line.to_string(),
            time: f[0]
                .parse()
                .with_context(|| format!("UNIXTIME of {line:?}"))?,
            size: f[1].parse().with_context(|| format!("SIZE of {line:?}"))?,
            sender: field(2)?,
            recipient: field(3)?,
            status: field(4)?,
            detail: field(5)?,
            client_ip: field(6)?,
            queue_id: field(7)?,
            group: field(8)?,
            mode: field(9)?,
        })
    }
}

/// Undoes the raw record escaping: `\\`, `\t`, `\n`, `\r`, `\xHH`; a
/// lone `-` is the empty field. Fails on anything else after a backslash
/// and on raw control characters.
pub fn unescape(field: &str) -> Result<String> {
    if field == "-" {
        return Ok(String::new());
    }
    let mut out = String::new();
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c.is_control() {
            bail!("raw control character {c:?} in {field:?}");
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                let b = u8::from_str_radix(&hex, 16)
                    .with_context(|| format!("\\x{hex} in {field:?}"))?;
                out.push(b as char);
            }
            other => bail!("unknown escape \\{other:?} in {field:?}"),
        }
    }
    Ok(out)
}

/// `promtool check metrics` on `text`: whether it passed, and its output
/// (empty when the exposition is clean).
pub fn promtool_check(text: &str) -> Result<(bool, String)> {
    let out = crate::prometheus::promtool_check_metrics(text)?;
    Ok((out.status.success(), output_text(&out)))
}
