//! SNMP for the gateway: the AgentX subagent serving MAILWARD-MIB (the view
//! of the statistics snapshot, built by the metrics crate from the
//! catalogue) and the notifications of `snmp.traps`. The subagent runs
//! whether or not a master is up and never holds up mail: requests are
//! answered from an immutable view rebuilt at most once a second, and
//! notifications wait in a bounded queue while no master is connected.

use crate::events::Notification;
use crate::gateway::Gateway;
use crate::ops::open_alarms;
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

/// The view being served, and when it was built.
type CachedView = (Instant, Arc<dyn agentx::OidView>);

/// The MIB name of a notification, and the `snmp.traps` category that
/// enables it. Its number and the objects it carries are the MIB's
/// (`mailward_metrics::mib::NOTIFICATIONS`), not written here again.
fn mib_name(n: &Notification) -> (&'static str, &'static str) {
    match n {
        Notification::ProductStart => ("mwProductStart", "admin"),
        Notification::ProductStop => ("mwProductStop", "admin"),
        Notification::ProductError { .. } => ("mwProductError", "admin"),
        Notification::ProductErrorCleared { .. } => ("mwProductErrorCleared", "admin"),
        Notification::ConfigReloaded { .. } => ("mwConfigReloaded", "config"),
        Notification::BasesReloaded => ("mwBasesReloaded", "update"),
        Notification::UpdateStatus { .. } => ("mwUpdateStatus", "update"),
        Notification::ObsoleteBases => ("mwObsoleteBases", "update"),
        Notification::AlertThreshold { .. } => ("mwAlertThreshold", "admin"),
    }
}

/// The notifications a full queue keeps (see `SubagentConfig::kept`):
/// mwProductStart, under `root`.
fn kept_notifications(root: &Oid) -> Vec<Oid> {
    mailward_metrics::mib::NOTIFICATIONS
        .iter()
        .filter(|(n, ..)| *n == "mwProductStart")
        .map(|(_, arc, ..)| root.join(&[0, *arc]))
        .collect()
}

/// The value of one object a notification carries.
fn object_value(object: &str, n: &Notification, gw: &Gateway) -> Option<Value> {
    let cfg = gw.config();
    let bases = gw.bases();
    let gauge = |v: u64| Value::Gauge32(v.min(u64::from(u32::MAX)) as u32);
    Some(match (object, n) {
        ("mwVersion", _) => text(env!("CARGO_PKG_VERSION")),
        ("mwConfigFile", _) => text(&cfg.origin),
        ("mwNotifyMessage", Notification::ProductError { message })
        | ("mwNotifyMessage", Notification::ProductErrorCleared { message })
        | ("mwNotifyMessage", Notification::ConfigReloaded { message, .. })
        | ("mwNotifyMessage", Notification::UpdateStatus { message, .. }) => notify_text(message),
        ("mwReloadResult", Notification::ConfigReloaded { ok, .. }) => {
            Value::Integer(if *ok { 1 } else { 2 })
        }
        ("mwBasesRecords", _) => gauge(bases.as_ref().map_or(0, |b| b.records)),
        ("mwBasesReleased", _) => Value::OctetString(view::date_and_time(
            bases.as_ref().map_or(0, |b| b.released),
        )),
        ("mwUpdateLastResult", Notification::UpdateStatus { result, .. }) => {
            Value::Integer(*result as i32 + 1)
        }
        ("mwBasesObsolete", _) => Value::Integer(1),
        ("mwAlertName", Notification::AlertThreshold { name, .. }) => text(name),
        ("mwAlertValue", Notification::AlertThreshold { value, .. }) => gauge(*value),
        ("mwAlertThresholdValue", Notification::AlertThreshold { threshold, .. }) => {
            gauge(*threshold)
        }
        ("mwAlertState", Notification::AlertThreshold { raised, .. }) => {
            Value::Integer(if *raised { 1 } else { 2 })
        }
        _ => return None,
    })
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

/// The octets of a `MwUtf8String`.
const NOTIFY_TEXT_MAX: usize = 255;

/// `mwNotifyMessage`: the text whole when it fits the 255 octets of a
/// `MwUtf8String`, else cut after a whole word and ended with `...`, so
/// that the NMS sees the text was cut (walkT 11: a reload's message ended
/// `log.options changed ([\"all.info\"] -> [\"all.info\", \"s`). The log
/// and `mailward status` have the whole text.
fn notify_text(message: &str) -> Value {
    if message.len() <= NOTIFY_TEXT_MAX {
        return text(message);
    }
    let mut end = NOTIFY_TEXT_MAX - "...".len();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let cut = &message[..end];
    // At the last space, unless that throws away more than half.
    let cut = match cut.rfind(' ') {
        Some(space) if space > NOTIFY_TEXT_MAX / 2 => &cut[..space],
        _ => cut,
    };
    let cut = cut.trim_end_matches([' ', ',', ';', ':', '(']);
    Value::OctetString(format!("{cut}...").into_bytes())
}

/// The view's extras from the gateway's state.
fn extras(gw: &Gateway, snap: &mailward_metrics::Snapshot) -> view::Extras {
    let cfg = gw.config();
    let has = |s: &str| cfg.snmp.services.iter().any(|x| x == s);
    view::Extras {
        config_file: cfg.origin.clone(),
        config_loaded_at: snap.config.loaded_at,
        reloads: snap.config.reloads.min(u64::from(u32::MAX)) as u32,
        reload_failures: snap.config.reload_failures.min(u64::from(u32::MAX)) as u32,
        services: view::Services {
            config: has("config"),
            statistics: has("statistics"),
            update: has("update"),
            admin: has("admin"),
        },
    }
}

/// Builds the MIB view of the gateway's current state. `objects` are the
/// MIB's scalars and columns, relative to the root; only those this view
/// implements are declared to the subagent, so that a Get of one not
/// served (`snmp.services`, a category not collected) answers noSuchObject.
pub fn build_view(gw: &Gateway, root: &Oid, objects: &[Vec<u32>]) -> agentx::MibView {
    let snap = gw.snapshot();
    let ex = extras(gw, &snap);
    let values = view::view(&snap, &ex)
        .into_iter()
        .map(|(oid, v)| (root.join(&oid), to_value(v)))
        .collect();
    let implemented = objects
        .iter()
        .filter(|o| view::is_implemented(o, &snap, &ex))
        .map(|o| root.join(o));
    agentx::MibView::new(values, implemented)
}

pub struct Snmp {
    root: Oid,
    /// The MIB's scalars by name, with their instance OID (`.0`), for the
    /// objects notifications carry.
    objects: Vec<(String, Oid)>,
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
    /// Starts the subagent (it connects in the background and keeps trying)
    /// and becomes where the gateway's notifications go.
    pub fn start(gw: &Arc<Gateway>) -> Result<Arc<Snmp>, SnmpError> {
        let cfg = gw.config();
        let root: Oid = cfg.agentx.root_oid.parse()?;
        if cfg.agentx.socket.is_empty() {
            // Off: no session is tried, and the notifications go nowhere
            // (the log keeps what they say).
            tracing::info!(target: "snmp",
                "The AgentX subagent is off (agentx.socket = \"\"): no SNMP objects and no SNMP notifications.");
            return Ok(Arc::new(Snmp {
                objects: Default::default(),
                root,
                subagent: Mutex::new(None),
                handle: None,
            }));
        }
        let endpoint = agentx::Endpoint::parse(&cfg.agentx.socket)?;
        let objects: Arc<Vec<Vec<u32>>> = Arc::new(
            view::objects()
                .into_iter()
                .filter(|o| matches!(o.node, view::Node::Scalar | view::Node::Column))
                .map(|o| o.oid)
                .collect(),
        );
        let mut sc = SubagentConfig::new(endpoint);
        sc.timeout = cfg.agentx.timeout.get();
        sc.retries = cfg.agentx.retries;
        sc.ping_interval = cfg.agentx.ping_interval.get();
        sc.id = root.clone();
        sc.description = format!("Mailward {} SMTP gateway", env!("CARGO_PKG_VERSION"));
        sc.registrations = vec![Registration::new(root.clone())];
        // walkAA 5: a master down at start for long enough to fill the
        // queue would lose mwProductStart first; it is kept, the oldest
        // of the others go.
        sc.kept = kept_notifications(&root);
        sc.agent_caps = vec![(
            root.join(&[2, 1, 1]),
            "MAILWARD-MIB: mwCompliance".to_string(),
        )];
        // mwSnmpNotificationsCount counts what the master acknowledged
        // (handed on to its sinks), by name: a notification queued while
        // no master is up counts when it is finally sent, and one dropped
        // from the full queue never does (it counts in
        // mwSnmpNotificationsDropped instead).
        sc.on_sent = Some(agentx::SentHook({
            let stats = Arc::clone(&gw.stats);
            let notifications = root.join(&[0]);
            Arc::new(move |trap: &Oid| {
                let arc = trap
                    .as_slice()
                    .strip_prefix(notifications.as_slice())
                    .and_then(|rest| match rest {
                        [arc] => Some(*arc as usize),
                        _ => None,
                    });
                if let Some(index) = arc.and_then(|a| a.checked_sub(1)) {
                    stats.record(&mailward_metrics::Event::SnmpNotification { index });
                }
            })
        }));
        let cache: Arc<Mutex<Option<CachedView>>> = Arc::new(Mutex::new(None));
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
        let scalars = view::objects()
            .into_iter()
            .filter(|o| matches!(o.node, view::Node::Scalar))
            .map(|o| (o.name.clone(), root.join(&o.oid).join(&[0])))
            .collect();
        let snmp = Arc::new(Snmp {
            objects: scalars,
            root,
            subagent: Mutex::new(Some(subagent)),
            handle: Some(handle),
        });
        // The gateway raises notifications without knowing about SNMP.
        let (weak, sender) = (Arc::downgrade(gw), snmp.clone());
        gw.set_notifier(Box::new(move |n| {
            if let Some(gw) = weak.upgrade() {
                sender.send(&gw, n);
            }
        }));
        Ok(snmp)
    }

    /// Sends a notification if `snmp.traps` enables its category.
    pub fn send(&self, gw: &Gateway, trap: &Notification) {
        let cfg = gw.config();
        let (name, category) = mib_name(trap);
        if !cfg.snmp.traps.iter().any(|t| t == category) {
            return;
        }
        let Some(handle) = &self.handle else {
            return;
        };
        let Some((_, arc, objects, _)) = mailward_metrics::mib::NOTIFICATIONS
            .iter()
            .find(|(n, ..)| *n == name)
        else {
            tracing::error!(target: "admin", notification = name, "Not a notification of MAILWARD-MIB.");
            return;
        };
        let arc = *arc;
        let mut varbinds = Vec::with_capacity(objects.len());
        for object in objects.iter() {
            let oid = self
                .objects
                .iter()
                .find(|(n, _)| n == object)
                .map(|(_, o)| o);
            match (oid, object_value(object, trap, gw)) {
                (Some(oid), Some(value)) => varbinds.push(VarBind::new(oid.clone(), value)),
                _ => tracing::error!(target: "admin", notification = name, object,
                    "A notification object has no value here; it is left out."),
            }
        }
        // Counted in mwSnmpNotificationsCount once the master acknowledges
        // it (the subagent's `on_sent`, set in `start`), not here.
        handle.notify(self.root.join(&[0, arc]), varbinds);
        tracing::info!(target: "admin", notification = mailward_metrics::catalogue::SNMP_NOTIFICATIONS[arc as usize - 1],
            detail = %trap, "SNMP notification raised.");
    }

    /// Closes the AgentX session (after the queued notifications).
    pub async fn stop(&self) {
        let subagent = self.subagent.lock().ok().and_then(|mut s| s.take());
        if let Some(s) = subagent {
            // Said, so that a stop slowed by a hung master has its reason
            // in the log (walkBE 2: five silent seconds).
            if tokio::time::timeout(STOP_WAIT, s.shutdown()).await.is_err() {
                tracing::warn!(target: "admin", waited = ?STOP_WAIT,
                    "The AgentX master did not acknowledge the last notifications (mwProductStop) and the session's close in time; stopping anyway (a hung master may still pass them on later).");
            }
        }
    }
}

/// How long a stop waits for the AgentX master to take the queued
/// notifications and the session's close.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// What the alert thresholds watch, sampled every [`ALERT_EVERY`].
pub const ALERT_EVERY: Duration = Duration::from_secs(10);

/// The (received, infected) counts of the newest sample at least `window`
/// old (the oldest one when none is, the counts now being the caller's).
/// Samples come every [`ALERT_EVERY`], never exactly `window` apart: the
/// sample taken `window` ago lands a little past it, and taking only
/// those within the window counted a message for 50 to 60 s of a minute.
fn counts_since(
    samples: &std::collections::VecDeque<(Instant, u64, u64)>,
    now: Instant,
    window: Duration,
) -> (u64, u64) {
    samples
        .iter()
        .rev()
        .find(|(t, _, _)| now.duration_since(*t) >= window)
        .or(samples.front())
        .map_or((0, 0), |&(_, r, i)| (r, i))
}

/// The infected share in whole percent, rounded up, and whether it is
/// above `threshold` percent, compared exactly: 2 infected of 221 (0.9 %)
/// is over 0 and shown as 1, not as 0 and "cleared".
/// The unit of an alert's value and threshold in the log (walkT 7: the
/// free spool was logged in MiB under the name spool_free_bytes, with
/// nothing to say so; the threshold configured in bytes is shown in MiB).
fn alert_unit(name: &str) -> &'static str {
    match name {
        "queue_messages" => "messages",
        "infected_per_minute" => "infected messages in the last minute",
        "infected_share_percent" | "dns_failed_percent" => "percent",
        "spool_free_bytes" => "MiB",
        _ => "-",
    }
}

fn share_over(infected: u64, received: u64, threshold: u64) -> (u64, bool) {
    if received == 0 {
        return (0, false);
    }
    let hundred = infected.saturating_mul(100);
    (
        hundred.div_ceil(received),
        hundred > threshold.saturating_mul(received),
    )
}

/// Watches `snmp.alert_thresholds` and the age of the bases; raises and
/// clears mwAlertThreshold, and sends mwObsoleteBases at start, when
/// another set comes into use, and daily.
pub async fn watch(gw: Arc<Gateway>) {
    let mut shutdown = gw.shutdown.clone();
    let data_dir = gw.config().server.data_dir.clone();
    // What the previous run left raised at the NMS is taken as raised by
    // this one (walkBE 6): still wrong, it stays raised without a second
    // notification; gone, it is cleared at the first look.
    let previous = open_alarms::read(&data_dir);
    if !previous.is_empty() {
        tracing::info!(target: "admin", thresholds = ?previous.thresholds.keys().collect::<Vec<_>>(),
            stores = ?previous.stores, bases = previous.bases.is_some(),
            "Alarms the previous run left raised are looked at again; those that are gone are cleared.");
    }
    if let Some(dir) = &previous.bases {
        if gw.bases_on_disk_error().is_none() {
            tracing::info!(target: "app", dir = %dir, "The signature bases on disk load again.");
            gw.notify(Notification::ProductErrorCleared {
                message: format!("the signature bases in {dir} load again"),
            });
        }
    }
    let mut written = previous.clone();
    let mut write_failure_said = false;
    // The thresholds raised, with the threshold each was raised at (as
    // shown), so that one a reload removes can still be cleared.
    let mut raised: std::collections::HashMap<String, u64> =
        previous.thresholds.into_iter().collect();
    // (time, received, infected) samples of the last hour.
    let mut samples: std::collections::VecDeque<(Instant, u64, u64)> = Default::default();
    let mut next_obsolete_check = Instant::now();
    // How many sets had come into use at the last look: another set that
    // comes into use (a rollback, a reload, an update) is checked at once,
    // not up to a day later (walkM), even when it is the set of the look
    // before (walkBE 1: an update and a rollback within 10 s).
    let mut bases_seen = gw.bases_changes();
    // The stores whose failing writes were reported, by store, with the
    // first failure of that run: one error notification per run, until a
    // write succeeds again.
    // A store the previous run reported has no failure time of this run:
    // it is cleared unless it fails now, and then reported again.
    let mut stores_reported: std::collections::HashMap<String, i64> = previous
        .stores
        .into_iter()
        .map(|store| (store, i64::MIN))
        .collect();
    // The spool segments whose loss was reported: one error notification
    // each (the spool keeps them until a restart).
    let mut lost_reported: std::collections::BTreeSet<u64> = Default::default();
    loop {
        let cfg = gw.config();
        // Counted from start, `stats reset`s or not: the windows are about
        // the mail, not about the counters an operator zeroed.
        let (snap, (carried_received, carried_infected)) = gw.snapshot_with_carried();
        let now = Instant::now();
        let received = carried_received + snap.value(mailward_metrics::StatId::MessagesReceived, 0);
        let infected = carried_infected + snap.value(mailward_metrics::StatId::AvResults, 1);
        samples.push_back((now, received, infected));
        while samples
            .front()
            .is_some_and(|(t, _, _)| now.duration_since(*t) > Duration::from_secs(3700))
        {
            samples.pop_front();
        }
        let since = |window: Duration| {
            let (r, i) = counts_since(&samples, now, window);
            (received.saturating_sub(r), infected.saturating_sub(i))
        };
        let dns_failed = gw
            .dns_recent
            .since_return(gw.dns().server_returns())
            .failed_percent();
        // (value shown, over?) in the units the MIB documents, for a
        // threshold of `threshold` (None: not a threshold we know).
        let measure = |name: &str, threshold: u64| -> Option<(u64, bool)> {
            Some(match name {
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
                    share_over(inf, rec, threshold)
                }
                "dns_failed_percent" => {
                    // Nothing to say below a sample of look-ups.
                    let share = dns_failed.unwrap_or(0);
                    (share, share > threshold)
                }
                "spool_free_bytes" => {
                    let free = snap.value(mailward_metrics::StatId::SpoolFreeBytes, 0);
                    (free / (1024 * 1024), free < threshold)
                }
                _ => return None,
            })
        };
        let mut raised_now = Vec::new();
        for (name, &threshold) in &cfg.snmp.alert_thresholds {
            let Some((value, over)) = measure(name, threshold) else {
                continue;
            };
            let threshold_shown = if name == "spool_free_bytes" {
                threshold / (1024 * 1024)
            } else {
                threshold
            };
            if over {
                raised_now.push(crate::ops::status::RaisedAlert {
                    name: name.clone(),
                    value,
                    threshold: threshold_shown,
                });
            }
            let was = raised.contains_key(name);
            if over != was {
                if over {
                    raised.insert(name.clone(), threshold_shown);
                } else {
                    raised.remove(name);
                }
                // A clear is good news: said at INFO in its own words, so
                // that log alerting on "crossed" does not page on it
                // (walkAM 12).
                if over {
                    tracing::warn!(target: "admin", alert = %name, value,
                        threshold = threshold_shown, unit = alert_unit(name), state = "raised",
                        "Alert threshold crossed.");
                } else {
                    tracing::info!(target: "admin", alert = %name, value,
                        threshold = threshold_shown, unit = alert_unit(name), state = "cleared",
                        "Alert threshold cleared.");
                }
                gw.notify(Notification::AlertThreshold {
                    name: name.clone(),
                    value,
                    threshold: threshold_shown,
                    raised: over,
                });
            }
        }
        gw.set_alerts_raised(raised_now);
        // A raised threshold that a reload took away is cleared: no
        // longer watched, it would stay open at the NMS for good.
        let removed: Vec<(String, u64)> = raised
            .iter()
            .filter(|(name, _)| !cfg.snmp.alert_thresholds.contains_key(name.as_str()))
            .map(|(name, &t)| (name.clone(), t))
            .collect();
        for (name, threshold_shown) in removed {
            raised.remove(&name);
            let value = measure(&name, 0).map_or(0, |(v, _)| v);
            tracing::info!(target: "admin", alert = %name, value, threshold = threshold_shown,
                unit = alert_unit(&name), state = "cleared",
                "Alert threshold no longer configured; cleared.");
            gw.notify(Notification::AlertThreshold {
                name,
                value,
                threshold: threshold_shown,
                raised: false,
            });
        }
        let failing = gw.stores.write_failing();
        // A reported store that writes again is cleared at the NMS (its
        // log line, "The quarantine writes its copies again.", is the
        // store's own); one failing since another time is raised again.
        let mut cleared = Vec::new();
        stores_reported.retain(|store, since| {
            let still = failing.iter().find(|f| &f.store == store);
            if still.is_none() {
                cleared.push(store.clone());
            }
            still.is_some_and(|f| f.since == *since)
        });
        for store in cleared {
            gw.notify(Notification::ProductErrorCleared {
                message: format!(
                    "the {} writes its copies again",
                    crate::store::store_name(&store)
                ),
            });
        }
        for f in failing {
            if stores_reported.get(&f.store) == Some(&f.since) {
                continue;
            }
            stores_reported.insert(f.store.clone(), f.since);
            gw.notify(Notification::ProductError {
                message: format!(
                    "the {} cannot write its copies ({}); see mailward status",
                    f.name(),
                    f.error
                ),
            });
        }
        // Lost mail is a fault an NMS must hear of without reading logs:
        // a segment holding accepted mail deleted by something else (or
        // missing at start).
        for (segment, messages) in gw.spool.lost_segments() {
            if !lost_reported.insert(segment) {
                continue;
            }
            gw.notify(Notification::ProductError {
                message: crate::ops::status::lost_segment_problem(segment, messages),
            });
        }
        let changes = gw.bases_changes();
        if changes != bases_seen {
            next_obsolete_check = now;
        }
        bases_seen = changes;
        if now >= next_obsolete_check {
            let bases = gw.bases();
            if crate::check::bases::is_obsolete(
                bases.as_ref(),
                cfg.bases.obsolete_after.get(),
                chrono::Utc::now().timestamp(),
            ) {
                let builtin = bases
                    .as_ref()
                    .is_some_and(|b| crate::check::bases::is_builtin(&b.version));
                let what_to_do = if builtin {
                    ": they are the built-in default set; install a real set (mailward bases update --from DIR, docs/bases.md)"
                } else {
                    ""
                };
                tracing::warn!(target: "admin", "The signature bases are obsolete (older than bases.obsolete_after){what_to_do}.");
                gw.notify(Notification::ObsoleteBases);
            }
            next_obsolete_check = now + Duration::from_secs(86400);
        }
        // With the subagent off no NMS heard of them: nothing to clear
        // after a restart (walkBH F9: a "cleared" for an alarm never sent).
        let open = if cfg.agentx.socket.is_empty() {
            open_alarms::OpenAlarms::default()
        } else {
            open_alarms::OpenAlarms {
                thresholds: raised.iter().map(|(n, &t)| (n.clone(), t)).collect(),
                stores: stores_reported.keys().cloned().collect(),
                bases: gw
                    .bases_on_disk_error()
                    .map(|_| cfg.bases.av.display().to_string()),
            }
        };
        if open != written {
            let (dir, alarms) = (data_dir.clone(), open.clone());
            let job = tokio::task::spawn_blocking(move || open_alarms::write(&dir, &alarms));
            let error = match tokio::time::timeout(ALERT_EVERY, job).await {
                Ok(Ok(Ok(()))) => None,
                Ok(Ok(Err(e))) => Some(e.to_string()),
                Ok(Err(join)) => Some(join.to_string()),
                Err(_) => Some("the write has not finished (a slow or hung disk?)".to_string()),
            };
            gw.set_alarms_unkept(
                error
                    .as_ref()
                    .map(|e| format!("{}: {e}", open_alarms::path(&data_dir).display())),
            );
            match error {
                None => {
                    written = open;
                    if write_failure_said {
                        tracing::info!(target: "admin", file = %open_alarms::path(&data_dir).display(),
                            "The alarms raised at the NMS are kept for the next start again.");
                    }
                    write_failure_said = false;
                }
                // Once until a write succeeds: tried again every look.
                Some(e) if !write_failure_said => {
                    write_failure_said = true;
                    tracing::warn!(target: "admin", file = %open_alarms::path(&data_dir).display(), error = %e,
                        "Cannot keep the alarms raised at the NMS for the next start; after a restart now, those that are gone would not be cleared.");
                }
                Some(_) => {}
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(ALERT_EVERY) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// walkAA 5: the start notification (.0.1) is the one a full queue
    /// keeps.
    #[test]
    fn the_start_notification_is_kept_by_a_full_queue() {
        let root: Oid = "1.3.6.1.4.1.32473.25".parse().unwrap();
        assert_eq!(
            kept_notifications(&root),
            vec!["1.3.6.1.4.1.32473.25.0.1".parse::<Oid>().unwrap()]
        );
    }

    fn octets(v: Value) -> String {
        match v {
            Value::OctetString(b) => String::from_utf8(b).expect("UTF-8"),
            other => panic!("not a string: {other:?}"),
        }
    }

    #[test]
    fn a_notification_text_too_long_is_cut_after_a_word_with_an_ellipsis() {
        // walkT 11: cut mid-value at 255 octets, with nothing to say so.
        let message = "The new configuration is in force, but for 2 key(s) that need a restart: \
            network.listen_on changed ([\"127.0.0.1:35101\"] -> [\"127.0.0.1:35121\"]): it takes effect only at restart; \
            the running value stays; log.options changed ([\"all.info\"] -> [\"all.info\", \"snmp.debug\"]): it takes \
            effect only at restart; the running value stays.";
        assert!(message.len() > 255);
        let cut = octets(notify_text(message));
        assert!(cut.len() <= 255, "{} octets: {cut}", cut.len());
        assert!(cut.ends_with("..."), "{cut}");
        let kept = cut.strip_suffix("...").unwrap_or_default();
        assert!(message.starts_with(kept), "{cut}");
        // Cut where a word ends: the next character of the whole text is a
        // space or a punctuation mark.
        let next = message[kept.len()..].chars().next();
        assert!(matches!(next, Some(' ' | ',' | ';' | ':')), "{cut}");
        // Short texts are whole; a text of one long word is cut in it.
        assert_eq!(octets(notify_text("Reload refused.")), "Reload refused.");
        let word = "é".repeat(200);
        let cut = octets(notify_text(&word));
        assert!(cut.len() <= 255 && cut.ends_with("..."), "{cut}");
    }

    #[test]
    fn a_message_counts_for_a_whole_minute() {
        // walkE: an infected message dropped out of infected_per_minute
        // after 50 to 60 s, one check early.
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_millis(s * 10_000 + 7);
        // Samples every 10 s; the message came between the 0 s and 10 s
        // samples, so the 10 s one and all later count it.
        let mut samples = std::collections::VecDeque::new();
        for i in 0..=7u64 {
            samples.push_back((at(i), 0, u64::from(i >= 1)));
        }
        let minute = Duration::from_secs(60);
        // At 60 s the base is the 0 s sample: the message counts.
        assert_eq!(counts_since(&samples, at(6), minute).1, 0);
        // At 70 s the base is the 10 s sample, which has it: 70 s > a minute.
        assert_eq!(counts_since(&samples, at(7), minute).1, 1);
        // Before a minute has passed, the oldest sample is the base.
        assert_eq!(counts_since(&samples, at(2), minute), (0, 0));
        assert_eq!(counts_since(&Default::default(), at(2), minute), (0, 0));
    }

    #[test]
    fn the_infected_share_is_compared_exactly_and_shown_rounded_up() {
        assert_eq!(share_over(2, 221, 0), (1, true), "0.9 % is over 0");
        assert_eq!(share_over(0, 221, 0), (0, false));
        assert_eq!(share_over(2, 100, 2), (2, false), "2 % is not over 2");
        assert_eq!(share_over(21, 1000, 2), (3, true), "2.1 % is over 2");
        assert_eq!(share_over(5, 0, 0), (0, false), "nothing received");
    }
}
