//! An immutable copy of the whole model and its JSON rendering (the stats
//! file written by `mailward stats write`).

use crate::catalogue::{self, Category, Kind, StatId, CATALOGUE, TOP_TABLES};
use crate::raw::RawRecord;
use crate::top::TopEntry;
use serde_json::{json, Map, Value};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    pub id: StatId,
    /// (upper bound in the exposed unit, cumulative count)
    pub buckets: Vec<(f64, u64)>,
    /// The sum of the observations in the exposed unit (seconds, points).
    pub sum: f64,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Unix time of the snapshot.
    pub taken_at: f64,
    pub start_time: i64,
    /// The counter discontinuity time (start or last `stats reset`).
    pub reset_time: i64,
    pub version: String,
    pub enabled: Vec<Category>,
    pub(crate) cells: Vec<u64>,
    pub(crate) offsets: Arc<Vec<usize>>,
    /// The catalogue's histograms.
    pub histograms: Vec<HistogramSnapshot>,
    /// Indexed by [`catalogue::TopId`].
    pub tops: Vec<Vec<TopEntry>>,
    /// The counts of each policy group ("" = the default group), in the
    /// order of mwPolicyGroupTable's rows ([`crate::group::GroupTable`]).
    pub groups: Vec<(String, crate::group::GroupCounts)>,
    /// The most recent raw records, oldest first.
    pub recent: Vec<RawRecord>,
    /// The configuration in force: when it was loaded, successful and
    /// refused reloads since start (not zeroed by `stats reset`).
    pub config: ConfigState,
}

/// What the model knows of the configuration's life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConfigState {
    pub loaded_at: i64,
    pub reloads: u64,
    pub reload_failures: u64,
    /// When the last reload was refused, while no reload has succeeded
    /// since (0: the file on disk was in force at the last attempt).
    pub refused_at: i64,
}

impl ConfigState {
    /// The file on disk was in force at the last attempt to load it (at
    /// start, or the last reload was accepted): what
    /// `mailward_config_last_reload_successful` and
    /// mwConfigLastReloadSuccessful say, so that an alert on a refused
    /// reload ends when a later one is accepted, and at a restart.
    pub fn last_reload_successful(&self) -> bool {
        self.refused_at == 0
    }
}

/// How a policy group is named in the renderings: "" is the default
/// group (`[policy]`).
pub fn group_name(group: &str) -> &str {
    if group.is_empty() {
        "default"
    } else {
        group
    }
}

impl Snapshot {
    /// The histogram `id` (None: not a histogram of the catalogue).
    pub fn histogram(&self, id: StatId) -> Option<&HistogramSnapshot> {
        self.histograms.iter().find(|h| h.id == id)
    }

    /// The stored values of a statistic, one per label value.
    pub fn values(&self, id: StatId) -> &[u64] {
        let start = self.offsets[id as usize];
        let width = catalogue::stat(id).width();
        self.cells.get(start..start + width).unwrap_or(&[])
    }

    /// For a one-hot statistic (one label value at 1, the others at 0,
    /// as `mailward_update_last_result`): the label value that is set.
    pub fn flagged(&self, id: StatId) -> Option<&'static str> {
        let labels = catalogue::stat(id).label?.1;
        let i = self.values(id).iter().position(|v| *v == 1)?;
        labels.get(i).copied()
    }

    pub fn value(&self, id: StatId, label: usize) -> u64 {
        self.values(id).get(label).copied().unwrap_or(0)
    }

    /// The value as exposed (seconds for microsecond cells).
    pub fn exposed(&self, id: StatId, label: usize) -> f64 {
        let v = self.value(id, label);
        match catalogue::stat(id).unit {
            catalogue::Unit::Micros => v as f64 / 1e6,
            _ => v as f64,
        }
    }

    pub fn is_enabled(&self, c: Category) -> bool {
        self.enabled.contains(&c)
    }

    /// Whether statistic `id` is collected (and so rendered everywhere):
    /// its category is in `statistics.options`, or it is always collected
    /// ([`catalogue::always_collected`]).
    pub fn collects(&self, id: StatId) -> bool {
        catalogue::always_collected(id) || self.is_enabled(catalogue::stat(id).category)
    }

    pub fn top(&self, id: catalogue::TopId) -> &[TopEntry] {
        self.tops.get(id as usize).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The value for JSON: an integer, or seconds for microsecond cells.
    fn json_value(&self, id: StatId, label: usize) -> Value {
        match catalogue::stat(id).unit {
            catalogue::Unit::Micros => json!(self.exposed(id, label)),
            _ => json!(self.value(id, label)),
        }
    }

    /// The stats file: every enabled category, keyed by catalogue names.
    pub fn to_json(&self) -> Value {
        let mut root = Map::new();
        root.insert("version".into(), json!(self.version));
        root.insert("taken_at".into(), json!(self.taken_at));
        root.insert("start_time".into(), json!(self.start_time));
        root.insert("reset_time".into(), json!(self.reset_time));
        // The configuration's life, as on /metrics and under mwConfig.
        root.insert(
            "config".into(),
            json!({
                "mailward_config_reloads_total": {
                    "ok": self.config.reloads,
                    "refused": self.config.reload_failures,
                },
                "mailward_config_loaded_timestamp_seconds": self.config.loaded_at,
                "mailward_config_last_reload_successful":
                    u8::from(self.config.last_reload_successful()),
            }),
        );
        for cat in Category::ALL {
            let enabled = self.is_enabled(cat);
            if !enabled
                && !CATALOGUE
                    .iter()
                    .any(|s| s.category == cat && self.collects(s.id))
            {
                continue;
            }
            let mut section = Map::new();
            for s in CATALOGUE
                .iter()
                .filter(|s| s.category == cat && self.collects(s.id))
            {
                let v = if s.kind == Kind::Histogram {
                    let h = self.histogram(s.id);
                    // "sum_seconds" for times (as the file always had it),
                    // "sum" otherwise.
                    let sum_key = if s.unit == catalogue::Unit::Micros {
                        "sum_seconds"
                    } else {
                        "sum"
                    };
                    json!({
                        "count": h.map_or(0, |h| h.count),
                        sum_key: h.map_or(0.0, |h| h.sum),
                        "buckets": h.map(|h| h.buckets.iter()
                            .map(|(le, n)| json!({"le": le, "count": n})).collect::<Vec<_>>())
                            .unwrap_or_default(),
                    })
                } else {
                    match s.label {
                        None => self.json_value(s.id, 0),
                        Some((_, values)) => Value::Object(
                            values
                                .iter()
                                .enumerate()
                                .map(|(i, name)| (name.to_string(), self.json_value(s.id, i)))
                                .collect(),
                        ),
                    }
                };
                // A figure /metrics also shows under a standard name is
                // in the file under both, as on /metrics.
                for (_, twin, _) in crate::prometheus::STANDARD_TWINS
                    .iter()
                    .filter(|(id, _, _)| *id == s.id)
                {
                    section.insert(twin.to_string(), v.clone());
                }
                section.insert(s.prom.to_string(), v);
            }
            for t in TOP_TABLES.iter().filter(|t| enabled && t.category == cat) {
                section.insert(t.prom.to_string(), json!(self.top(t.id)));
            }
            if enabled && cat == Category::Raw {
                section.insert("recent".into(), json!(self.recent));
            }
            if enabled && cat == Category::Messages {
                // The counts of each policy group, as on /metrics
                // (mwPolicyGroupTable in SNMP).
                for col in crate::group::GROUP_COLUMNS {
                    section.insert(
                        col.prom.into(),
                        Value::Object(
                            self.groups
                                .iter()
                                .map(|(g, c)| (group_name(g).to_string(), json!((col.read)(c))))
                                .collect(),
                        ),
                    );
                }
            }
            root.insert(cat.as_str().to_string(), Value::Object(section));
        }
        Value::Object(root)
    }
}

/// The last update of the bases as a statistics file written by
/// [`Snapshot::to_json`] holds it: (its result, an index of
/// [`catalogue::UPDATE_RESULTS`], and its unix time). None when the file
/// has no update in it (none attempted, or a layout it does not know).
pub fn last_update_in_json(file: &Value) -> Option<(usize, i64)> {
    let check = catalogue::stat(StatId::UpdateLastCheck);
    let result = catalogue::stat(StatId::UpdateLastResult);
    let at = file
        .get(check.category.as_str())?
        .get(check.prom)?
        .as_i64()
        .filter(|at| *at > 0)?;
    let flags = file
        .get(result.category.as_str())?
        .get(result.prom)?
        .as_object()?;
    let result = catalogue::UPDATE_RESULTS
        .iter()
        .position(|r| flags.get(*r).and_then(Value::as_u64) == Some(1))?;
    Some((result, at))
}
