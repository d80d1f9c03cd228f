//! The Prometheus text exposition of a snapshot, built as metric families
//! from the catalogue and encoded by the `prometheus` crate's text encoder
//! (which does the escaping of help text and label values).

use crate::catalogue::{Kind, CATALOGUE, TOP_TABLES};
use crate::snapshot::Snapshot;
use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
use prometheus::Encoder;

#[derive(Debug, thiserror::Error)]
#[error("cannot encode the metrics: {0}")]
pub struct RenderError(String);

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn label(name: &str, value: &str) -> LabelPair {
    let mut l = LabelPair::default();
    l.set_name(name.to_string());
    l.set_value(value.to_string());
    l
}

fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_string());
    f.set_help(help.to_string());
    f.set_field_type(kind);
    f.set_metric(metrics);
    f
}

fn sample(kind: Kind, value: f64, labels: Vec<LabelPair>) -> Metric {
    let mut m = Metric::default();
    m.set_label(labels);
    if kind == Kind::Counter {
        let mut c = Counter::default();
        c.set_value(value);
        m.set_counter(c);
    } else {
        let mut g = Gauge::default();
        g.set_value(value);
        m.set_gauge(g);
    }
    m
}

/// The metric families of a snapshot (the statistics it collects: the
/// enabled categories and those always collected).
pub fn families(snap: &Snapshot) -> Vec<MetricFamily> {
    let mut out = Vec::new();
    for s in CATALOGUE.iter().filter(|s| snap.collects(s.id)) {
        let metrics = match s.kind {
            Kind::Histogram => {
                let Some(hs) = snap.histogram(s.id) else {
                    continue;
                };
                let mut h = Histogram::default();
                h.set_sample_count(hs.count);
                h.set_sample_sum(hs.sum);
                h.set_bucket(
                    hs.buckets
                        .iter()
                        .map(|(le, n)| {
                            let mut b = Bucket::default();
                            b.set_upper_bound(*le);
                            b.set_cumulative_count(*n);
                            b
                        })
                        .collect(),
                );
                let mut m = Metric::default();
                m.set_histogram(h);
                vec![m]
            }
            kind => match s.label {
                None => vec![sample(kind, snap.exposed(s.id, 0), vec![])],
                Some((name, values)) => values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| sample(kind, snap.exposed(s.id, i), vec![label(name, v)]))
                    .collect(),
            },
        };
        let kind = match s.kind {
            Kind::Counter => MetricType::COUNTER,
            Kind::Gauge => MetricType::GAUGE,
            Kind::Histogram => MetricType::HISTOGRAM,
        };
        if let Some((_, name, help)) = STANDARD_TWINS.iter().find(|(id, _, _)| *id == s.id) {
            out.push(family(name, help, kind, metrics.clone()));
        }
        out.push(family(s.prom, s.help, kind, metrics));
    }
    for t in TOP_TABLES.iter().filter(|t| snap.is_enabled(t.category)) {
        let rows: Vec<Metric> = snap
            .top(t.id)
            .iter()
            .map(|e| {
                sample(
                    Kind::Gauge,
                    e.count as f64,
                    vec![
                        label("rank", &e.rank.to_string()),
                        label(t.item_label, &e.item),
                    ],
                )
            })
            .collect();
        // An empty family is invalid in the text format: an empty table is
        // simply absent until its first row.
        if !rows.is_empty() {
            out.push(family(t.prom, t.help, MetricType::GAUGE, rows));
        }
    }
    // The counts of each policy group: the same as mwPolicyGroupTable.
    // Groups come from the configuration, so they are labels, not catalogue
    // entries; each is exported (at 0) from the configuration that names it.
    if snap.is_enabled(crate::catalogue::Category::Messages) && !snap.groups.is_empty() {
        for col in crate::group::GROUP_COLUMNS {
            let rows = snap
                .groups
                .iter()
                .map(|(g, c)| {
                    sample(
                        Kind::Counter,
                        (col.read)(c) as f64,
                        vec![label("group", crate::snapshot::group_name(g))],
                    )
                })
                .collect();
            out.push(family(col.prom, col.help, MetricType::COUNTER, rows));
        }
    }
    // The configuration's life, as mwConfigLoadedAt, mwConfigReloads and
    // mwConfigReloadFailures say it (not zeroed by `stats reset`): kept
    // outside the catalogue because it is not a statistic of a category.
    out.extend(config_families(&snap.config));
    out.push(family(
        "mailward_build_info",
        "Mailward's version; always 1.",
        MetricType::GAUGE,
        vec![sample(
            Kind::Gauge,
            1.0,
            vec![label("version", &snap.version)],
        )],
    ));
    out
}

/// Statistics also exported under the name of the standard process
/// collector (client_golang's, which generic rules and dashboards use), as
/// a second rendering of the same figure: not a second statistic.
pub const STANDARD_TWINS: &[(crate::catalogue::StatId, &str, &str)] = &[(
    crate::catalogue::StatId::StartTime,
    "process_start_time_seconds",
    "When the daemon started (Unix time): mailward_start_time_seconds under the standard process collector's name.",
)];

/// The exposition text of a snapshot.
pub fn render(snap: &Snapshot) -> Result<String, RenderError> {
    let mut buf = Vec::new();
    prometheus::TextEncoder::new()
        .encode(&families(snap), &mut buf)
        .map_err(|e| RenderError(e.to_string()))?;
    String::from_utf8(buf).map_err(|e| RenderError(e.to_string()))
}

/// The Prometheus names of the configuration state, with their MIB twins
/// (for metrics.md).
pub const CONFIG_METRICS: [(&str, &str, &str); 3] = [
    (
        "mailward_config_reloads_total",
        "mwConfigReloads (.3) for result=\"ok\", mwConfigReloadFailures (.4) for result=\"refused\"",
        "Reloads (SIGHUP) since start, by result: `ok` (the new configuration is in force) or `refused` (it was invalid; the one before stays). Not zeroed by `stats reset`.",
    ),
    (
        "mailward_config_loaded_timestamp_seconds",
        "mwConfigLoadedAt (.2)",
        "When the configuration in force was loaded (Unix time).",
    ),
    (
        "mailward_config_last_reload_successful",
        "mwConfigLastReloadSuccessful (.6)",
        "1 when the file on disk was in force at the last attempt to load it: at start, and after a reload (SIGHUP) that was accepted; 0 after a refused reload, until a later one is accepted (or a restart). As Prometheus's own prometheus_config_last_reload_successful.",
    ),
];

fn config_families(c: &crate::snapshot::ConfigState) -> Vec<MetricFamily> {
    vec![
        family(
            CONFIG_METRICS[0].0,
            CONFIG_METRICS[0].2,
            MetricType::COUNTER,
            vec![
                sample(Kind::Counter, c.reloads as f64, vec![label("result", "ok")]),
                sample(
                    Kind::Counter,
                    c.reload_failures as f64,
                    vec![label("result", "refused")],
                ),
            ],
        ),
        family(
            CONFIG_METRICS[1].0,
            CONFIG_METRICS[1].2,
            MetricType::GAUGE,
            vec![sample(Kind::Gauge, c.loaded_at as f64, vec![])],
        ),
        family(
            CONFIG_METRICS[2].0,
            CONFIG_METRICS[2].2,
            MetricType::GAUGE,
            vec![sample(
                Kind::Gauge,
                f64::from(u8::from(c.last_reload_successful())),
                vec![],
            )],
        ),
    ]
}
