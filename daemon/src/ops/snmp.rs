//! SNMP for the gateway: the AgentX subagent serving MAILWARD-MIB (the view
//! of the statistics snapshot, built by the metrics crate from the
//! catalogue) and the notifications of `snmp.traps`. The subagent runs
//! whether or not a master is up and never holds up mail: requests are
//! answered from an immutable view rebuilt at most once a second, and
//! notifications wait in a bounded queue while no master is connected.

use crate::gateway::Gateway;
use mailward_agentx::{
    self as agentx, Oid, Registration, Subagent, SubagentConfig, Value, VarBind,
};
use mailward_metrics::snmp::{self as view, SnmpValue};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long one view of the statistics is served before it is rebuilt: a
/// walk sees one consistent snapshot, and a busy NMS costs one snapshot a
/// second at most.
const VIEW_TTL: Duration = Duration::from_secs(1);

/// The notifications of MAILWARD-MIB.
#[derive(Debug, Clone)]
pub enum Trap {
    ProductStart,
    ProductStop,
    ProductError {
        message: String,
    },
    ConfigReloaded {
        ok: bool,
        message: String,
    },
    BasesReloaded,
    UpdateStatus {
        result: crate::check::bases::UpdateResult,
        message: String,
    },
    ObsoleteBases,
    AlertThreshold {
        name: String,
        value: u64,
        threshold: u64,
        raised: bool,
    },
}

impl Trap {
    /// (arc under mwNotifications, `snmp.traps` category that enables it)
    fn arc_and_category(&self) -> (u32, &'static str) {
        match self {
            Trap::ProductStart => (1, "admin"),
            Trap::ProductStop => (2, "admin"),
            Trap::ProductError { .. } => (3, "admin"),
            Trap::ConfigReloaded { .. } => (4, "config"),
            Trap::BasesReloaded => (5, "update"),
            Trap::UpdateStatus { .. } => (6, "update"),
            Trap::ObsoleteBases => (7, "update"),
            Trap::AlertThreshold { .. } => (8, "admin"),
        }
    }
}

fn to_value(v: SnmpValue) -> Value {
    match v {
        SnmpValue::Integer(i) => Value::Integer(i),
        SnmpValue::Counter32(c) => Value::Counter32(c),
        SnmpValue::Counter64(c) => Value::Counter64(c),
        SnmpValue::Gauge32(g) => Value::Gauge32(g),
        SnmpValue::TimeTicks(t) => Value::TimeTicks(t),
        SnmpValue::OctetString(b) => Value::OctetString(b),
    }
}

fn text(s: &str) -> Value {
    Value::OctetString(view::utf8_string(s))
}

/// The view's extras from the gateway's state.
fn extras(gw: &Gateway, snap: &mailward_metrics::Snapshot) -> view::Extras {
    let cfg = gw.config();
    let count = |name: &str| {
        snap.groups
            .iter()
            .find(|(g, _)| g == name)
            .map_or(0, |(_, n)| *n)
    };
    let mut groups = vec![("default".to_string(), count(""))];
    groups.extend(cfg.group.keys().map(|name| (name.clone(), count(name))));
    let has = |s: &str| cfg.snmp.services.iter().any(|x| x == s);
    let bases = gw.bases();
    view::Extras {
        config_file: cfg.origin.clone(),
        config_loaded_at: gw
            .config_loaded_at
            .load(std::sync::atomic::Ordering::Relaxed),
        reloads: gw.reloads.load(std::sync::atomic::Ordering::Relaxed) as u32,
        reload_failures: gw
            .reload_failures
            .load(std::sync::atomic::Ordering::Relaxed) as u32,
        groups,
        bases_obsolete: crate::check::bases::is_obsolete(
            bases.as_ref(),
            cfg.bases.obsolete_after.get(),
            chrono::Utc::now().timestamp(),
        ),
        services: view::Services {
            config: has("config"),
            statistics: has("statistics"),
            update: has("update"),
            admin: has("admin"),
        },
    }
}

/// Builds the MIB view of the gateway's current state.
pub fn build_view(gw: &Gateway, root: &Oid, objects: &[Oid]) -> agentx::MibView {
    let snap = gw.snapshot();
    let ex = extras(gw, &snap);
    let values = view::view(&snap, &ex)
        .into_iter()
        .map(|(oid, v)| (root.join(&oid), to_value(v)))
        .collect();
    agentx::MibView::new(values, objects.iter().cloned())
}

pub struct Snmp {
    root: Oid,
    subagent: Mutex<Option<Subagent>>,
    handle: Option<agentx::SubagentHandle>,
}

#[derive(Debug, thiserror::Error)]
pub enum SnmpError {
    #[error("agentx.socket: {0}")]
    Endpoint(#[from] agentx::EndpointError),
    #[error("agentx.root_oid: {0}")]
    Root(#[from] agentx::OidParseError),
}

impl Snmp {
    /// Starts the subagent (it connects in the background and keeps trying).
    pub fn start(gw: &Arc<Gateway>) -> Result<Snmp, SnmpError> {
        let cfg = gw.config();
        let endpoint = agentx::Endpoint::parse(&cfg.agentx.socket)?;
        let root: Oid = cfg.agentx.root_oid.parse()?;
        let objects: Arc<Vec<Oid>> = Arc::new(
            view::objects()
                .into_iter()
                .filter(|o| matches!(o.node, view::Node::Scalar | view::Node::Column))
                .map(|o| root.join(&o.oid))
                .collect(),
        );
        let mut sc = SubagentConfig::new(endpoint);
        sc.timeout = cfg.agentx.timeout.get();
        sc.retries = cfg.agentx.retries;
        sc.ping_interval = cfg.agentx.ping_interval.get();
        sc.id = root.clone();
        sc.description = format!("Mailward {} SMTP gateway", env!("CARGO_PKG_VERSION"));
        sc.registrations = vec![Registration::new(root.clone())];
        sc.agent_caps = vec![(
            root.join(&[2, 1, 1]),
            "MAILWARD-MIB: mwCompliance".to_string(),
        )];
        let cache: Arc<Mutex<Option<(Instant, Arc<dyn agentx::OidView>)>>> =
            Arc::new(Mutex::new(None));
        let provider: agentx::ViewProvider = {
            let gw = Arc::downgrade(gw);
            let root = root.clone();
            Arc::new(move || {
                let fresh = || -> Arc<dyn agentx::OidView> {
                    match gw.upgrade() {
                        Some(gw) => Arc::new(build_view(&gw, &root, &objects)),
                        None => Arc::new(agentx::MibView::new(Default::default(), [])),
                    }
                };
                let Ok(mut slot) = cache.lock() else {
                    return fresh();
                };
                if let Some((at, v)) = slot.as_ref() {
                    if at.elapsed() < VIEW_TTL {
                        return v.clone();
                    }
                }
                let v = fresh();
                *slot = Some((Instant::now(), v.clone()));
                v
            })
        };
        let subagent = agentx::start(sc, provider);
        let handle = subagent.handle();
        let h2 = handle.clone();
        let _ = gw.subagent_health.set(Box::new(move || h2.health()));
        Ok(Snmp {
            root,
            subagent: Mutex::new(Some(subagent)),
            handle: Some(handle),
        })
    }

    /// Sends a notification if `snmp.traps` enables its category.
    pub fn send(&self, gw: &Gateway, trap: Trap) {
        let cfg = gw.config();
        let (arc, category) = trap.arc_and_category();
        if !cfg.snmp.traps.iter().any(|t| t == category) {
            return;
        }
        let Some(handle) = &self.handle else {
            return;
        };
        let o = |path: &[u32]| self.root.join(path);
        let version = || VarBind::new(o(&[1, 4, 1, 0]), text(env!("CARGO_PKG_VERSION")));
        let config_file = || VarBind::new(o(&[1, 1, 1, 0]), text(&cfg.origin));
        let message = |m: &str| VarBind::new(o(&[1, 5, 1, 0]), text(m));
        let bases = gw.bases();
        let released = || {
            VarBind::new(
                o(&[1, 3, 4, 0]),
                Value::OctetString(view::date_and_time(
                    bases.as_ref().map_or(0, |b| b.released),
                )),
            )
        };
        let varbinds = match &trap {
            Trap::ProductStart => vec![version(), config_file()],
            Trap::ProductStop => vec![version()],
            Trap::ProductError { message: m } => vec![message(m)],
            Trap::ConfigReloaded { ok, message: m } => vec![
                config_file(),
                VarBind::new(o(&[1, 5, 2, 0]), Value::Integer(if *ok { 1 } else { 2 })),
                message(m),
            ],
            Trap::BasesReloaded => vec![
                VarBind::new(
                    o(&[1, 3, 5, 0]),
                    Value::Gauge32(
                        bases
                            .as_ref()
                            .map_or(0, |b| b.records.min(u64::from(u32::MAX)) as u32),
                    ),
                ),
                released(),
            ],
            Trap::UpdateStatus { result, message: m } => vec![
                VarBind::new(o(&[1, 3, 2, 0]), Value::Integer(*result as i32 + 1)),
                message(m),
            ],
            Trap::ObsoleteBases => vec![
                released(),
                VarBind::new(o(&[1, 3, 6, 0]), Value::Integer(1)),
            ],
            Trap::AlertThreshold {
                name,
                value,
                threshold,
                raised,
            } => vec![
                VarBind::new(o(&[1, 5, 3, 0]), text(name)),
                VarBind::new(
                    o(&[1, 5, 4, 0]),
                    Value::Gauge32((*value).min(u64::from(u32::MAX)) as u32),
                ),
                VarBind::new(
                    o(&[1, 5, 5, 0]),
                    Value::Gauge32((*threshold).min(u64::from(u32::MAX)) as u32),
                ),
                VarBind::new(
                    o(&[1, 5, 6, 0]),
                    Value::Integer(if *raised { 1 } else { 2 }),
                ),
            ],
        };
        handle.notify(o(&[0, arc]), varbinds);
        gw.stats.record(&mailward_metrics::Event::SnmpNotification {
            index: arc as usize - 1,
        });
        tracing::info!(target: "admin", notification = mailward_metrics::catalogue::SNMP_NOTIFICATIONS[arc as usize - 1],
            detail = ?trap, "SNMP notification raised.");
    }

    /// Closes the AgentX session (after the queued notifications).
    pub async fn stop(&self) {
        let subagent = self.subagent.lock().ok().and_then(|mut s| s.take());
        if let Some(s) = subagent {
            let _ = tokio::time::timeout(Duration::from_secs(5), s.shutdown()).await;
        }
    }
}

/// What the alert thresholds watch, sampled every [`ALERT_EVERY`].
pub const ALERT_EVERY: Duration = Duration::from_secs(10);

/// Watches `snmp.alert_thresholds` and the age of the bases; raises and
/// clears mwAlertThreshold, and sends mwObsoleteBases at start and daily.
pub async fn watch(gw: Arc<Gateway>, snmp: Arc<Snmp>) {
    let mut shutdown = gw.shutdown.clone();
    let mut raised: std::collections::HashSet<String> = Default::default();
    // (time, received, infected) samples of the last hour.
    let mut samples: std::collections::VecDeque<(Instant, u64, u64)> = Default::default();
    let mut next_obsolete_check = Instant::now();
    loop {
        let cfg = gw.config();
        let snap = gw.snapshot();
        let now = Instant::now();
        let received = snap.value(mailward_metrics::StatId::MessagesReceived, 0);
        let infected = snap.value(mailward_metrics::StatId::AvResults, 1);
        samples.push_back((now, received, infected));
        while samples
            .front()
            .is_some_and(|(t, _, _)| now.duration_since(*t) > Duration::from_secs(3600))
        {
            samples.pop_front();
        }
        let since = |window: Duration| {
            let base = samples
                .iter()
                .find(|(t, _, _)| now.duration_since(*t) <= window)
                .copied()
                .unwrap_or((now, received, infected));
            (
                received.saturating_sub(base.1),
                infected.saturating_sub(base.2),
            )
        };
        for (name, &threshold) in &cfg.snmp.alert_thresholds {
            // (value, over?) in the units the MIB documents.
            let (value, over) = match name.as_str() {
                "queue_messages" => {
                    let v = snap.value(mailward_metrics::StatId::QueueMessages, 0);
                    (v, v > threshold)
                }
                "infected_per_minute" => {
                    let (_, inf) = since(Duration::from_secs(60));
                    (inf, inf > threshold)
                }
                "infected_share_percent" => {
                    let (rec, inf) = since(Duration::from_secs(3600));
                    let share = (inf * 100).checked_div(rec).unwrap_or(0);
                    (share, share > threshold)
                }
                "spool_free_bytes" => {
                    let free = snap.value(mailward_metrics::StatId::SpoolFreeBytes, 0);
                    (free / (1024 * 1024), free < threshold)
                }
                _ => continue,
            };
            let threshold_shown = if name == "spool_free_bytes" {
                threshold / (1024 * 1024)
            } else {
                threshold
            };
            let was = raised.contains(name);
            if over != was {
                if over {
                    raised.insert(name.clone());
                } else {
                    raised.remove(name);
                }
                tracing::warn!(target: "admin", alert = %name, value, threshold = threshold_shown,
                    state = if over { "raised" } else { "cleared" }, "Alert threshold crossed.");
                snmp.send(
                    &gw,
                    Trap::AlertThreshold {
                        name: name.clone(),
                        value,
                        threshold: threshold_shown,
                        raised: over,
                    },
                );
            }
        }
        if now >= next_obsolete_check {
            let bases = gw.bases();
            if crate::check::bases::is_obsolete(
                bases.as_ref(),
                cfg.bases.obsolete_after.get(),
                chrono::Utc::now().timestamp(),
            ) {
                tracing::warn!(target: "admin", "The signature bases are obsolete (older than bases.obsolete_after).");
                snmp.send(&gw, Trap::ObsoleteBases);
            }
            next_obsolete_check = now + Duration::from_secs(86400);
        }
        tokio::select! {
            _ = tokio::time::sleep(ALERT_EVERY) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}
