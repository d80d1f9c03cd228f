//! `mailward status`: the running daemon on one screen, for the
//! administrator who wants to know "is it up, and is anything wrong?"
//! before reading logs or dashboards. Everything comes from what the
//! daemon already keeps (the statistics snapshot, the bases, the spam
//! knowledge, the subagent's health): asking costs no I/O.
//!
//! The same [`Status`] is the admin socket's answer and the `--json`
//! output; `problems` lists, as sentences, what an operator should act on.

use crate::check::spam::classifier::Readiness;
use crate::check::spam::knowledge::{Emptied, Part, Unreadable};
use crate::config::{Config, LogDestination, SyslogTransport};
use crate::gateway::Gateway;
use mailward_metrics::StatId;
use serde::{Deserialize, Serialize};

/// The daemon's state, as `mailward status --json` prints it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub version: String,
    pub pid: u32,
    /// Unix time of the start.
    pub started: i64,
    /// The configuration file, or `<default>`.
    pub config: String,
    /// Unix time the configuration in force was loaded.
    pub config_loaded: i64,
    pub reloads: u64,
    pub reload_failures: u64,
    /// Unix time of the last refused reload while none succeeded since (0:
    /// none): the file on disk is not the configuration in force.
    #[serde(default)]
    pub reload_refused_at: i64,
    /// Why that reload was refused (the first problem, as the log and the
    /// `mwConfigReloaded` notification say it); None before a reload.
    #[serde(default)]
    pub reload_refused_why: Option<String>,
    /// Keys the file on disk changes that take effect only at restart (the
    /// last reload kept their running values), one sentence each.
    #[serde(default)]
    pub restart_pending: Vec<String>,
    /// What is wrong with the STARTTLS certificate in use (expired, not
    /// valid yet, expiring within 14 days); None when nothing.
    #[serde(default)]
    pub tls_certificate_problem: Option<String>,
    /// SMTP listeners (none for `mailward milter`).
    pub listen: Vec<String>,
    pub milter: Option<String>,
    /// Milter connections open now (one per SMTP session of the MTA).
    #[serde(default)]
    pub milter_connections: u64,
    /// `[milter] max_connections` in force (0: no milter listener). When
    /// every one is taken, the MTA's next SMTP session waits and then gets
    /// its milter_default_action.
    #[serde(default)]
    pub milter_max_connections: u64,
    /// Where `/metrics` is served.
    pub metrics: Option<String>,
    pub queue_messages: u64,
    /// Of those, held by an administrator (`mailward queue hold`).
    #[serde(default)]
    pub queue_held: u64,
    pub queue_bytes: u64,
    /// The queued mail that was tried and waits for another attempt.
    #[serde(default)]
    pub deferred: Deferred,
    /// Delivery destinations suspended now after connection failures in a
    /// row (`mailward_destinations_suspended`): their mail waits without
    /// connecting until a probe gets through.
    #[serde(default)]
    pub destinations_suspended: u64,
    /// Those destinations, each with the end of its suspension, its
    /// failures and its last error, the longest suspended first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suspended: Vec<crate::delivery::suspend::SuspendedNow>,
    /// The routes' next hops whose name does not resolve now: their mail
    /// waits (4.3.5).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub misrouted: Vec<crate::delivery::suspend::Misrouted>,
    /// Why the SNMP alarms raised now cannot be kept for the next start
    /// (`DATA_DIR/alarms.json`), None when they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarms_unkept: Option<String>,
    /// The `snmp.alert_thresholds` raised now, as the mwAlertThreshold
    /// notifications and the "Alert threshold crossed" log lines say
    /// them (walkAS F5: 20k queued over a 10k threshold and no problem).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts_raised: Vec<RaisedAlert>,
    pub spool_free_bytes: u64,
    /// Spool space held by delivered mail only, counted as available.
    #[serde(default)]
    pub spool_reclaimable_bytes: u64,
    /// `limits.min_queue_free_space`: under it (free plus reclaimable), new
    /// mail gets 452.
    #[serde(default)]
    pub min_queue_free_space: u64,
    /// Room the admission check keeps beside that floor for the
    /// compaction's copy of the waiting messages.
    #[serde(default)]
    pub spool_copy_reserve: u64,
    /// Since when (Unix time) the spool's writes fail, with the last
    /// error: new mail gets 451 4.3.0 meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spool_write_failing: Option<(i64, String)>,
    /// The message stores (quarantine, archive) whose writes fail now:
    /// since when, how often, the last error; each until a write succeeds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub store_write_failing: Vec<crate::store::WriteFailing>,
    /// Bytes the compaction under pressure needs and cannot write (0: not
    /// stuck).
    #[serde(default)]
    pub compaction_short_of: u64,
    /// Seconds a spool write (and its fsync) has been under way, past the
    /// spool's warning delay: the disk stalls (walkAU F12). None otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spool_write_stalled_secs: Option<u64>,
    /// Since when (Unix time) the spool cannot start a new segment, and
    /// the error with its fix (walkAU F8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spool_rotate_failing: Option<(i64, String)>,
    /// Segments deleted by someone else while messages waited in them
    /// (segment, messages): those messages are lost (walkAU F1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spool_lost_segments: Vec<(u64, usize)>,
    /// A spool segment refused as damaged that waits for its salvage: the
    /// segments after it (and the delivered mail in them) are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spool_damaged: Option<crate::spool::DamagedKept>,
    /// New mail refused for spool space in the last minute (at MAIL or at
    /// the end of its data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub space_refusals: Option<crate::spool::SpaceRefusals>,
    pub sessions_in: u64,
    pub sessions_out: u64,
    /// Limits reached: idle sessions get the stress deadlines.
    pub stress: bool,
    pub bases: Option<Bases>,
    /// Why the set in the bases directory does not load (the last attempt,
    /// at start, SIGHUP, update or rollback, failed); None when it loads.
    /// With bases in use, those are an older set kept in memory: a restart
    /// would run without AV rules.
    #[serde(default)]
    pub bases_on_disk_error: Option<String>,
    /// A previous set a rollback could go back to is there.
    #[serde(default)]
    pub bases_previous: bool,
    pub spam: Spam,
    pub snmp: Snmp,
    pub log: Log,
    #[serde(default)]
    pub dns: Dns,
    /// What needs an operator, one sentence each; empty when all is well.
    pub problems: Vec<String>,
}

/// One raised alert threshold, in the units of mwAlertValue and
/// mwAlertThresholdValue (spool_free_bytes in MiB).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RaisedAlert {
    /// The key of `snmp.alert_thresholds`.
    pub name: String,
    pub value: u64,
    pub threshold: u64,
}

/// The problem sentence of a raised alert threshold: what crossed what,
/// and where to look.
pub fn alert_problem(a: &RaisedAlert) -> String {
    let (over, unit, look) = match a.name.as_str() {
        "queue_messages" => (
            "over",
            "message(s)",
            "mail arrives faster than it leaves; `mailward queue summary` shows where it waits and the last error of each domain",
        ),
        "infected_per_minute" => (
            "over",
            "infected message(s) in the last minute",
            "an outbreak or a sender gone bad; `mailward stats show` and the top infected senders and clients name the source",
        ),
        "infected_share_percent" => (
            "over",
            "% of the last hour's messages infected",
            "an outbreak or a sender gone bad; `mailward stats show` and the top infected senders and clients name the source",
        ),
        "spool_free_bytes" => (
            "under",
            "MiB free for the spool",
            "free space on the spool's file system before new mail gets 452 (limits.min_queue_free_space)",
        ),
        "dns_failed_percent" => (
            "over",
            "% of the recent DNS look-ups failed",
            "see the dns: line and access.dns_resolver",
        ),
        _ => ("against", "", "see the log's 'Alert threshold crossed' line"),
    };
    format!(
        "Alert threshold {} raised: {} {unit}, {over} snmp.alert_thresholds.{} = {}: {look}.",
        a.name, a.value, a.name, a.threshold
    )
}

/// The problem sentence of a spool segment lost with accepted mail in it
/// ([`crate::spool::Spool::lost_segments`]), also the mwProductError
/// notification's text: one wording wherever an operator meets it. A
/// segment found missing at start has no count (0): what was only in it
/// is unknown.
pub fn lost_segment_problem(segment: u64, messages: usize) -> String {
    let what = if messages > 0 {
        format!("was deleted by something other than Mailward while {messages} message(s) waited in it: they are lost (the log's ERROR line names their queue IDs; their senders got 250)")
    } else {
        "was missing between the others at start: the mail recorded only in it is lost (the log's ERROR line names what it can; its senders got 250)".to_string()
    };
    format!("Spool segment {segment} {what}. Find what deletes files in the spool directory (a cleanup job, tmpwatch) and keep it out of it.")
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Bases {
    pub version: String,
    pub records: u64,
    /// Unix time of the release.
    pub released: i64,
    pub obsolete: bool,
    /// The built-in default set (installed at the first start).
    #[serde(default)]
    pub builtin: bool,
    /// The last update's result (updated, not_needed, error, rolled_back,
    /// unknown).
    pub last_update: String,
    /// What the last update said (since start): for an error, why.
    #[serde(default)]
    pub last_update_message: Option<String>,
}

/// What the installed spam base has learnt.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct BaseLearnt {
    pub spam: u64,
    pub ham: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Spam {
    /// active, abstaining (not enough learnt) or unavailable (store down),
    /// as `spam status` says it.
    pub classifier: Readiness,
    pub learnt_spam: u64,
    pub learnt_ham: u64,
    /// Of the learnt messages, the base's (none: no base installed), so
    /// that an installed or rolled-back base shows (walkBW 3).
    #[serde(default)]
    pub base: Option<BaseLearnt>,
    pub min_learnt: u64,
    /// `site.model`'s path or the Redis URL (without its password).
    pub store: String,
    /// What of the classifier's learning cannot be read now (a damaged
    /// `base.model` or `site.model`, a Redis that does not answer): each a
    /// problem until it can be read again.
    #[serde(default)]
    pub unreadable: Vec<Unreadable>,
    /// The shared store came back empty after holding this learning, and
    /// has learnt nothing since.
    #[serde(default)]
    pub emptied: Option<Emptied>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Snmp {
    pub state: SnmpState,
    pub master: String,
    pub root_oid: String,
    pub last_error: Option<String>,
    /// Since the last statistics reset, as mwAgentxRequests,
    /// mwAgentxErrors and mwAgentxReconnects count them.
    #[serde(default)]
    pub requests: u64,
    #[serde(default)]
    pub errors: u64,
    #[serde(default)]
    pub reconnects: u64,
}

/// What the AgentX subagent does for the NMS.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SnmpState {
    /// Not started yet (the first moments of the daemon).
    Starting,
    /// The master accepted the subtree: it is served.
    Serving,
    /// A session, but the master refused the subtree (another subagent
    /// holds it).
    Refused,
    /// No session with the master.
    Disconnected,
    /// No subagent: `agentx.socket = ""`.
    Off,
}

impl SnmpState {
    pub fn as_str(self) -> &'static str {
        match self {
            SnmpState::Starting => "starting",
            SnmpState::Serving => "serving",
            SnmpState::Refused => "refused",
            SnmpState::Disconnected => "disconnected",
            SnmpState::Off => "off",
        }
    }
}

/// The DNS server and how its last look-ups went.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Dns {
    /// `access.dns_resolver`, or `system` for /etc/resolv.conf's.
    pub resolver: String,
    /// Of the last DNS look-ups (DNSBL, URI list, SPF, delivery's MX and
    /// address look-ups; at most 64), how many there were and how many got
    /// no answer.
    pub recent: u32,
    pub recent_failed: u32,
    /// DNS list zones not asked now: their last look-ups got no answer
    /// ([`crate::dns::ZoneHealth`]).
    #[serde(default)]
    pub resting_zones: Vec<String>,
    /// Since when (Unix time) the DNS server has not answered its probes,
    /// so that SPF and DKIM/DMARC are not asked ([`crate::dns::Dns::doubt_server`]);
    /// None while it answers.
    #[serde(default)]
    pub server_silent_since: Option<i64>,
    /// Of the last look-ups the gateway's resolver made itself (DNS
    /// lists, MX, A/AAAA, PTR; at most 64: SPF and DKIM go through a
    /// library that does not tell), how many there were and how many the
    /// server answered REFUSED: it is there, but does not resolve for
    /// this host ([`crate::dns::Dns::refused_of`]).
    #[serde(default)]
    pub recent_asked: u32,
    #[serde(default)]
    pub recent_refused: u32,
    /// The last probe of the DNS server was answered REFUSED
    /// ([`crate::dns::Dns::server_refuses`]): also when the refusal
    /// carries no question (unbound), which the look-ups cannot tell
    /// from silence (walkAM 1).
    #[serde(default)]
    pub server_refuses: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Log {
    pub destination: String,
    pub lines_dropped: u64,
    pub rotation_failures: u64,
    /// Why a line was last dropped, when its writer knew it (a file that
    /// cannot be opened, a syslog socket that refuses), and when (Unix
    /// time): the cause, rather than "unreachable or too slow".
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub last_error_at: i64,
    /// The last rotation that failed: "cannot rotate PATH: ERROR".
    #[serde(default)]
    pub last_rotation_failure: Option<String>,
    /// Raw records the raw records file could not take since the last
    /// statistics reset (mailward_raw_records_lost_total).
    #[serde(default)]
    pub raw_lost: u64,
}

/// Mail tried at least once and still waiting: what says that mail is not
/// leaving (a next hop down or refusing), which `queue:` alone hides.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Deferred {
    /// Messages tried at least once with recipients still waiting (held
    /// ones not counted: they wait for an administrator).
    pub messages: u64,
    /// Seconds since the oldest of them was received (0: none).
    pub oldest: i64,
    /// Of them, those received more than [`DEFERRED_PROBLEM_AFTER`] ago.
    pub stuck: u64,
    /// Among the stuck ones, the recipient domain with the most waiting
    /// recipients, how many, and its last error, as `mailward queue
    /// summary` gives them.
    pub domain: Option<String>,
    pub domain_waiting: u64,
    pub last_error: Option<String>,
}

/// Age (seconds since it was received) past which a message that was
/// tried and still waits is a problem. Past greylisting, which a retry at
/// the default `timeouts.min_backoff` (5 min) gets through within about a
/// quarter of an hour, and a next hop's short restart, but hours before
/// `timeouts.delay_notice` (4 h) tells the senders: the operator should
/// hear first. A fixed age rather than a key: the check must not depend
/// on the retry settings it is meant to watch.
pub const DEFERRED_PROBLEM_AFTER: i64 = 30 * 60;

/// The deferred mail among `queue` at Unix time `now`.
pub fn deferred_of(queue: &[std::sync::Arc<crate::envelope::Envelope>], now: i64) -> Deferred {
    use crate::envelope::RcptState;
    let mut d = Deferred::default();
    let mut stuck = Vec::new();
    for e in queue {
        let waiting = e
            .rcpts
            .iter()
            .any(|r| matches!(r.state, RcptState::Pending { .. }));
        if e.held || e.attempts == 0 || !waiting {
            continue;
        }
        let age = (now - e.received_at).max(0);
        d.messages += 1;
        d.oldest = d.oldest.max(age);
        if age > DEFERRED_PROBLEM_AFTER {
            d.stuck += 1;
            stuck.push(super::admin::QueueItem::from(e.as_ref()));
        }
    }
    // The stuck ones only: a summary of the whole queue would be an
    // operator's `queue summary`, not a status.
    if let Some(top) = super::queue_summary::summarize(&stuck, now)
        .domains
        .into_iter()
        .next()
    {
        d.domain = Some(top.domain);
        d.domain_waiting = top.waiting;
        d.last_error = top.last_error;
    }
    d
}

/// The status of `gw` now.
pub fn of(gw: &Gateway) -> Status {
    let cfg = gw.config();
    let snap = gw.snapshot();
    let now = chrono::Utc::now().timestamp();
    let bases = gw.bases().map(|b| Bases {
        obsolete: crate::check::bases::is_obsolete(Some(&b), cfg.bases.obsolete_after.get(), now),
        builtin: crate::check::bases::is_builtin(&b.version),
        version: b.version,
        records: b.records,
        released: b.released,
        last_update: snap
            .flagged(StatId::UpdateLastResult)
            .unwrap_or("unknown")
            .to_string(),
        last_update_message: gw.last_update_message(),
    });
    let knowledge = gw.scanner.spam.loaded();
    let c = &knowledge.classifier;
    let spam = Spam {
        classifier: c.readiness(),
        learnt_spam: c.spam_messages(),
        learnt_ham: c.ham_messages(),
        base: c.base.as_ref().map(|b| BaseLearnt {
            spam: b.spam_messages,
            ham: b.ham_messages,
        }),
        min_learnt: c.min_learnt,
        store: gw.scanner.spam.store().describe(),
        unreadable: gw.scanner.spam.unreadable(),
        emptied: gw.scanner.spam.emptied(),
    };
    let health = gw.subagent_health.get().map(|h| h());
    let snmp = Snmp {
        state: match &health {
            None if cfg.agentx.socket.is_empty() => SnmpState::Off,
            None => SnmpState::Starting,
            Some(h) if h.registered > 0 => SnmpState::Serving,
            Some(h) if h.connected => SnmpState::Refused,
            Some(_) => SnmpState::Disconnected,
        },
        master: cfg.agentx.socket.clone(),
        root_oid: cfg.agentx.root_oid.clone(),
        last_error: health.and_then(|h| h.last_error),
        requests: snap.value(StatId::AgentxRequests, 0),
        errors: snap.value(StatId::AgentxErrors, 0),
        reconnects: snap.value(StatId::AgentxReconnects, 0),
    };
    let last_error = super::logging::last_error();
    let log = Log {
        destination: destination(&cfg),
        lines_dropped: snap.value(StatId::LogLinesDropped, 0),
        rotation_failures: snap.values(StatId::LogRotationFailures).iter().sum(),
        last_error_at: last_error.as_ref().map_or(0, |(_, t)| *t),
        last_error: last_error.map(|(e, _)| e),
        last_rotation_failure: super::logging::last_rotation_failure(gw),
        raw_lost: snap.value(StatId::RawRecordsLost, 0),
    };
    let (recent_failed, recent) = gw
        .dns_recent
        .since_return(gw.dns().server_returns())
        .failed_of();
    let (recent_refused, recent_asked) = gw.dns().refused_of();
    let dns = Dns {
        resolver: cfg
            .access
            .dns_resolver
            .map_or_else(|| "system".to_string(), |a| a.to_string()),
        recent,
        recent_failed,
        resting_zones: gw.dns().resting_zones(),
        server_silent_since: gw.dns().server_silent_since().map(|t| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        }),
        recent_asked,
        recent_refused,
        server_refuses: gw.dns().server_refuses(),
    };
    let mut status = Status {
        version: env!("CARGO_PKG_VERSION").to_string(),
        pid: std::process::id(),
        started: snap.start_time,
        config: cfg.origin.clone(),
        config_loaded: snap.config.loaded_at,
        reloads: snap.config.reloads,
        reload_failures: snap.config.reload_failures,
        reload_refused_at: snap.config.refused_at,
        reload_refused_why: gw.reload_refusal(),
        restart_pending: gw.restart_pending(),
        tls_certificate_problem: gw
            .tls_validity()
            .and_then(|v| v.problem(chrono::Utc::now().timestamp())),
        listen: cfg
            .network
            .listen_on
            .iter()
            .map(ToString::to_string)
            .collect(),
        milter: cfg.milter.listen.as_ref().map(ToString::to_string),
        milter_connections: snap.value(StatId::MilterConnections, 0),
        milter_max_connections: if cfg.milter.listen.is_some() {
            u64::from(cfg.milter.max_connections)
        } else {
            0
        },
        metrics: cfg.metrics.listen.map(|a| a.to_string()),
        queue_messages: snap.value(StatId::QueueMessages, 0),
        queue_held: snap.value(StatId::QueueHeldMessages, 0),
        queue_bytes: snap.value(StatId::QueueBytes, 0),
        deferred: deferred_of(&gw.queue.list(), now),
        destinations_suspended: snap.value(StatId::DestinationsSuspended, 0),
        suspended: gw.suspensions.list(chrono::Utc::now()),
        misrouted: gw.suspensions.misrouted(&cfg.route),
        alarms_unkept: gw.alarms_unkept(),
        // Not measured again here: the alert watcher (ops/snmp.rs), which
        // raises and clears them and sends the traps, publishes them.
        alerts_raised: gw.alerts_raised(),
        spool_free_bytes: snap.value(StatId::SpoolFreeBytes, 0),
        spool_reclaimable_bytes: snap.value(StatId::SpoolReclaimableBytes, 0),
        min_queue_free_space: cfg.limits.min_queue_free_space.0,
        spool_copy_reserve: gw.spool.copy_reserve(),
        spool_write_failing: gw.spool.write_failing(),
        store_write_failing: gw.stores.write_failing(),
        compaction_short_of: gw.spool.compaction_short_of(),
        spool_write_stalled_secs: gw.spool.write_stalled_for(),
        spool_rotate_failing: gw.spool.rotate_failing(),
        spool_lost_segments: gw.spool.lost_segments(),
        spool_damaged: gw.spool.damaged_kept(),
        space_refusals: gw.spool.space_refusals(60),
        sessions_in: snap.value(StatId::Sessions, 0),
        sessions_out: snap.value(StatId::Sessions, 1),
        stress: snap.value(StatId::StressMode, 0) == 1,
        bases,
        bases_on_disk_error: gw.bases_on_disk_error(),
        // Whether a rollback has a set to go to, as rollback itself first
        // asks: its manifest is there. Not read and checksummed here:
        // status is polled by monitoring, and a checksum reads every rule
        // file of the set.
        bases_previous: crate::check::bases::previous_dir(&gw.config().bases.av)
            .join("manifest.toml")
            .exists(),
        spam,
        snmp,
        log,
        dns,
        problems: Vec::new(),
    };
    status.problems = problems(&status);
    status
}

/// What an operator should act on, one sentence each.
pub fn problems(s: &Status) -> Vec<String> {
    let mut p = Vec::new();
    if let Some(t) = &s.tls_certificate_problem {
        let mut t = t.clone();
        if let Some(first) = t.get_mut(..1) {
            first.make_ascii_uppercase();
        }
        p.push(format!("{t}."));
    }
    match (&s.bases, &s.bases_on_disk_error) {
        (None, None) => {
            p.push("No signature bases are loaded: messages are not scanned for viruses.".into())
        }
        // The rollback is offered only when there is a set to go back to
        // (walkS finding 12).
        (None, Some(e)) => p.push(format!(
            "No signature bases are loaded: messages are not scanned for viruses (every message gets av/error). The set on disk does not load: {e}. {}",
            if s.bases_previous {
                "Fix it, or go back to the previous set (mailward bases rollback)."
            } else {
                "Fix it, or install a set with mailward bases update --from DIR (there is no previous set to roll back to)."
            }
        )),
        (Some(b), Some(e)) => p.push(format!(
            "The signature bases on disk do not load: {e}. The rules in use ({}) stay until the daemon stops, but a restart would run without AV rules until the set is fixed or rolled back (mailward bases rollback).",
            b.version
        )),
        (Some(_), None) => {}
    }
    match &s.bases {
        None => {}
        Some(b) => {
            if b.records == 0 {
                p.push(format!(
                    "The signature bases {} have no records: nothing is detected.",
                    b.version
                ));
            }
            if b.obsolete && b.builtin {
                p.push(format!(
                    "The signature bases in use are the built-in default set {} ({} records: test files and file-name tricks, no real malware) and older than bases.obsolete_after: install a real set (mailward bases update --from DIR, or set bases.update_from; docs/bases.md).",
                    b.version, b.records
                ));
            } else if b.obsolete {
                p.push(format!(
                    "The signature bases {} are older than bases.obsolete_after: update them (mailward bases update).",
                    b.version
                ));
            }
            // A rollback is an administrator's own choice, not something to
            // act on: the bases line still names it as the last update.
            if b.last_update == "error" {
                p.push(match &b.last_update_message {
                    Some(m) => format!(
                        "The last update of the bases ended with error: {} (the log, category admin, has each attempt); this clears at the next update that succeeds.",
                        m.trim_end().trim_end_matches('.')
                    ),
                    None => "The last update of the bases ended with error (see the log, category admin); this clears at the next update that succeeds.".into(),
                });
            }
        }
    }
    // A refused reload is a problem until a later one succeeds: only then
    // is the file on disk the configuration in force again.
    if s.reload_refused_at > 0 {
        p.push(format!(
            "The configuration reload of {} was refused{}: the file on disk is not the one in force (mailward check-config).",
            rfc3339(s.reload_refused_at),
            s.reload_refused_why
                .as_deref()
                .map_or(String::new(), |why| format!(" ({why})"))
        ));
    }
    let available = s.spool_free_bytes.saturating_add(s.spool_reclaimable_bytes);
    if available < s.min_queue_free_space {
        p.push(format!(
            "New mail is refused (452 4.3.1): the spool's disk has {} available, under limits.min_queue_free_space ({}). Free space on that disk, or remove queued mail that cannot leave (mailward queue list).",
            bytes(available),
            bytes(s.min_queue_free_space)
        ));
    } else if available < s.min_queue_free_space.saturating_add(s.spool_copy_reserve) {
        p.push(format!(
            "New mail is refused (452 4.3.1): the spool's disk has {} available, under limits.min_queue_free_space ({}) plus the {} kept to copy the waiting messages forward. Free space on that disk, or remove queued mail that cannot leave (mailward queue list).",
            bytes(available),
            bytes(s.min_queue_free_space),
            bytes(s.spool_copy_reserve)
        ));
    } else if let Some(r) = &s.space_refusals {
        // Room for nothing is said above; room for less than the mail
        // that comes is said by the refusals themselves (walkW 3).
        // The figures of that moment, which add up; now's differ after
        // a compaction (walkAE 6). A refusal while the data comes in is
        // made as the message crosses the line, so its size is the data
        // up to then, not the whole message.
        let what = if r.wanted == 0 {
            "a MAIL without SIZE".to_string()
        } else {
            format!(
                "a message that asked for room for {} (its SIZE, or its data up to then)",
                bytes(r.wanted)
            )
        };
        p.push(format!(
            "{} message(s) got 452 4.3.1 for spool space in the last minute, the last at {} for {what}, with {} left for new mail then (the {} available less limits.min_queue_free_space ({}), the {} kept to copy the waiting messages forward and the {} of the other messages being received); now {} is available. Free space on that disk, or remove queued mail that cannot leave (mailward queue list).",
            r.count,
            rfc3339(r.last_at),
            bytes(r.left),
            bytes(r.available),
            bytes(r.floor),
            bytes(r.copy_reserve),
            bytes(r.receiving),
            bytes(available),
        ));
    }
    if let Some((since, error)) = &s.spool_write_failing {
        p.push(format!(
            "The spool cannot write since {} ({error}): new mail gets 451 4.3.0 and state changes are not recorded. Free space on the spool's disk, or check it (read-only, failing); mail is taken again at the next write that succeeds.",
            rfc3339(*since)
        ));
    }
    if let Some(secs) = s.spool_write_stalled_secs {
        p.push(format!(
            "A spool write has not completed for {secs}s: the spool's disk stalls (frozen, a SAN or NFS hiccup, failing), and the sessions waiting for it get no answer meanwhile. Check the disk (dmesg, fsfreeze, the storage); when the write completes the mail is taken, and clients that gave up may send it again (duplicates)."
        ));
    }
    if let Some((since, error)) = &s.spool_rotate_failing {
        p.push(format!(
            "The spool cannot start a new segment since {} ({error}): mail still goes into the current one, but the space of delivered mail is not freed.",
            rfc3339(*since)
        ));
    }
    for &(segment, messages) in &s.spool_lost_segments {
        p.push(lost_segment_problem(segment, messages));
    }
    for f in &s.store_write_failing {
        p.push(store_write_failing(f));
    }
    if s.compaction_short_of > 0 {
        p.push(format!(
            "The spool cannot copy its waiting messages forward: it needs {} more on its disk, so the delivered mail behind them stays there until they leave. Free that much space, or remove queued mail that cannot leave (mailward queue list).",
            bytes(s.compaction_short_of)
        ));
    }
    if let Some(d) = &s.spool_damaged {
        p.push(format!(
            "Spool segment {} was refused as damaged at a start and is not back: no segment after it is deleted, so delivered mail stays on the spool's disk ({} so far) until new mail is refused for space. Salvage it (stop the gateway, `mailward queue salvage FILE`), or give it up: `rm {}` (the spool deletes the segments after it within a second). See docs/spool-and-delivery.md, Recovery.",
            d.segment,
            bytes(d.kept_bytes),
            d.note.display()
        ));
    }
    if !s.restart_pending.is_empty() {
        p.push(format!(
            "{} key(s) changed in the file take effect only at restart (the running values stay until then): {}. Restart the daemon (systemctl restart mailward) to use them.",
            s.restart_pending.len(),
            s.restart_pending.join("; ")
        ));
    }
    if s.milter_max_connections > 0 && s.milter_connections >= s.milter_max_connections {
        p.push(format!(
            "Every milter connection slot is taken ({} of milter.max_connections {}): the MTA's next SMTP session waits for one, and Postfix gives up after milter_command_timeout (30 s) with its milter_default_action (tempfail: 451). Raise milter.max_connections (restart) to at least the process limit of every smtpd that uses the milter (master.cf maxproc, default_process_limit 100), or look for SMTP sessions held open at the MTA.",
            s.milter_connections, s.milter_max_connections
        ));
    }
    if s.stress {
        p.push(format!(
            "Under stress (session limits reached): idle sessions get the short deadlines. If it lasts, raise limits.incoming_sessions (or lower limits.incoming_sessions_per_ip if one client holds them), or look for a client that opens sessions and leaves them idle (ss -tn '{}').",
            ss_filter(&s.listen)
        ));
    }
    for u in &s.spam.unreadable {
        p.push(spam_unreadable(u));
    }
    if let Some(e) = &s.spam.emptied {
        p.push(format!(
            "The spam store {} came back empty: it held {} spam and {} ham before (a Redis restarted without persistence, flushed, or a fresh replica), and every gateway sharing it lost that learning. Restore it with `mailward spam import EXPORT` (your last `mailward spam export`), and run that Redis with persistence (appendonly yes, or RDB snapshots); learning anything into it again ends this problem.",
            e.store, e.spam, e.ham
        ));
    }
    // A daemon that does not say why (an older one).
    if s.spam.classifier == Readiness::Unavailable
        && !s.spam.unreadable.iter().any(|u| !u.in_use_stays)
    {
        p.push(format!(
            "The spam store {} cannot be read: the classifier is unavailable, mail is judged by the other tests (the rules at double weight).",
            s.spam.store
        ));
    }
    match s.snmp.state {
        SnmpState::Disconnected => p.push(format!(
            "No AgentX session with the master at {}: the NMS sees no Mailward objects and gets no traps{}.",
            s.snmp.master,
            s.snmp
                .last_error
                .as_ref()
                .map_or(String::new(), |e| format!(" (last error: {e})"))
        )),
        SnmpState::Refused => p.push(format!(
            "The AgentX master refuses the subtree {}: another subagent (often a second gateway) holds it. Give each gateway on one snmpd its own agentx.root_oid, or stop the other; this one takes the subtree over when it is free.",
            s.snmp.root_oid
        )),
        _ => {}
    }
    if let (Some(t), true) = (s.dns.server_silent_since, s.dns.server_refuses) {
        // Its refusals carry no question (unbound), which the look-ups
        // cannot use: silent for them, refusing for the operator
        // (walkAM 1).
        p.push(format!(
            "The DNS server {} answers REFUSED (without the question, as unbound refuses) since {}: it does not resolve for this host. Allow this host recursion there (unbound's access-control, BIND's allow-recursion), or set access.dns_resolver to a server that does; meanwhile SPF and DKIM/DMARC give temperror and the DNS lists list nothing, without asking, until a probe is answered (one 5 s after the last), and mail routed by MX waits in the queue.",
            s.dns.resolver,
            rfc3339(t)
        ));
    } else if let Some(t) = s.dns.server_silent_since {
        // A probe found it: no need for a sample of failures.
        p.push(format!(
            "The DNS server {} has not answered a probe since {}: SPF and DKIM/DMARC give temperror and the DNS lists list nothing, without asking, until one is answered (a probe 5 s after the last one timed out, with or without mail), and mail routed by MX waits in the queue (check access.dns_resolver).",
            s.dns.resolver,
            rfc3339(t)
        ));
    } else if s.dns.recent_asked >= crate::dns::RecentLookups::SAMPLE
        && s.dns.recent_refused * 2 > s.dns.recent_asked
    {
        // The server answers, and refuses (walkAK 2): "no answer" would
        // send the operator after a dead server or network. Before the
        // resting zones: the lists rest because of the refusals. (A
        // refused probe alone says nothing: a server of local zones only,
        // dnsmasq without upstream servers, refuses the probe's made-up
        // name and answers the look-ups that matter; unbound's refusal,
        // which the look-ups cannot use, is the silent case above.)
        let who = match s.dns.resolver.as_str() {
            "system" => "the system's resolvers (/etc/resolv.conf)",
            other => other,
        };
        let what = format!(
            "{} of the last {} DNS look-ups were REFUSED by {who}",
            s.dns.recent_refused, s.dns.recent_asked
        );
        p.push(format!(
            "{what}: it does not resolve for this host. Allow this host recursion there (unbound's access-control, BIND's allow-recursion; a dnsmasq needs upstream servers), or set access.dns_resolver to a server that does; meanwhile the DNS lists list nothing, SPF and DKIM/DMARC give temperror, the spam check judges without DNSBL, SPF and URI lists, and mail routed by MX waits in the queue."
        ));
    } else if !s.dns.resting_zones.is_empty() {
        // The server answers its probes (each list failure has it probed,
        // so a dead server would be silent above): the lists themselves
        // are dead, and the failures of the sample are theirs, so the
        // sentence below would send the operator to the wrong place.
        p.push(format!(
            "The DNS list zone(s) {} got no answer to their last {} look-ups while the DNS server {} answers: they list nothing, without being asked, until one answers a probe (every 5 s); check that they still serve you ([access] dnsbl, [spam] dnsbl, [spam] surbl).",
            s.dns.resting_zones.join(", "),
            crate::dns::ZoneHealth::REST_AFTER,
            s.dns.resolver
        ));
    } else if s.dns.recent >= crate::dns::RecentLookups::SAMPLE
        && s.dns.recent_failed * 2 > s.dns.recent
    {
        p.push(format!(
            "{} of the last {} DNS look-ups got no answer from {}: sessions wait up to timeouts.dns (but not for DNS lists that rest, nor for any DNS test once a probe finds the server silent), the spam check judges without DNSBL, SPF and URI lists, and mail routed by MX waits in the queue (check access.dns_resolver).",
            s.dns.recent_failed, s.dns.recent, s.dns.resolver
        ));
    }
    if s.deferred.stuck > 0 {
        let d = &s.deferred;
        let most = match (&d.domain, &d.last_error) {
            (Some(domain), Some(e)) => format!(
                "; most for {domain} ({} recipient(s)), last error: {}",
                d.domain_waiting,
                crate::text::cut(e, 200).replace(['\r', '\n'], " ")
            ),
            (Some(domain), None) => {
                format!("; most for {domain} ({} recipient(s))", d.domain_waiting)
            }
            _ => String::new(),
        };
        p.push(format!(
            "{} message(s) tried and still waiting for delivery after more than {} min, the oldest for {}{most}: mail is not leaving. See `mailward queue summary` and check that next hop (the route's address, its DNS, whether it takes connections); the messages are retried until timeouts.max_queue_lifetime.",
            d.stuck,
            DEFERRED_PROBLEM_AFTER / 60,
            crate::text::age(d.oldest)
        ));
    }
    // Before the queue's own problems: an alert the operator set is the
    // first thing they look for.
    p.extend(s.alerts_raised.iter().map(alert_problem));
    // At once, not after DEFERRED_PROBLEM_AFTER: a suspension is the
    // delivery side saying the hop does not serve (3 connection failures
    // in a row), and its mail now waits without even being tried.
    if s.destinations_suspended > 0 || !s.suspended.is_empty() {
        p.push(suspended_problem(s));
    }
    for m in &s.misrouted {
        p.push(format!(
            "The next hop {} of a [[route]] cannot be found ({}) since {}: its mail waits, deferred (4.3.5), until its lifetime ends. Mend the route's `to`, `mailward reload`, then `mailward queue flush` to send it at once.",
            m.destination,
            m.error,
            rfc3339(m.since)
        ));
    }
    if let Some(e) = &s.alarms_unkept {
        p.push(format!(
            "The SNMP alarms raised now cannot be kept for the next start ({e}): after a restart, those that have ended would stay open at the NMS. It must be a file the daemon's user may replace, in a data directory it may write."
        ));
    }
    if s.log.lines_dropped > 0 {
        let error = s.log.last_error.as_deref().unwrap_or("");
        let what_to_do = if s.log.destination.starts_with("file:")
            && (error.contains("(os error 28)") || error.contains("(os error 122)"))
        {
            // A full disk is not a permission problem (walkT finding 5).
            "free space on the log file's filesystem (or raise the user's quota there); lines are written again as soon as there is room, and the file then says how many were dropped"
        } else if s.log.destination.starts_with("file:") && error.contains("(os error 5)") {
            "check the disk under the log file (dmesg); lines are written again as soon as it takes them"
        } else if s.log.destination.starts_with("file:") && s.log.last_error.is_none() {
            // No error of its own: the writer's queue was full, the file
            // open but the write stalled (walkAA 3: a FIFO nobody read was
            // sent to directory permissions).
            "find what stalls the disk or mount under the log file (dmesg, an NFS server that does not answer); lines are written again as soon as it takes them"
        } else if s.log.destination.starts_with("file:") {
            "make the file's directory writable by the user Mailward runs as, or have the file created for it (logrotate's `create`); lines are written again as soon as it can be opened"
        } else if s.log.destination.starts_with("syslog") {
            "check that the syslog daemon runs and takes lines there; they go out again as soon as it does"
        } else {
            "check what reads Mailward's standard error (the journal, a container's log driver)"
        };
        p.push(match &s.log.last_error {
            Some(e) => format!(
                "{} log line(s) were dropped since the last statistics reset; the last failure, at {}: {e}. To stop it, {what_to_do}.",
                s.log.lines_dropped,
                rfc3339(s.log.last_error_at)
            ),
            None if s.log.destination.starts_with("file:") => format!(
                "{} log line(s) were dropped since the last statistics reset ({}: the writer could not keep up, the disk or mount under it is stalled or too slow): {what_to_do}.",
                s.log.lines_dropped, s.log.destination
            ),
            None => format!(
                "{} log line(s) were dropped since the last statistics reset ({} unreachable or too slow): {what_to_do}.",
                s.log.lines_dropped, s.log.destination
            ),
        });
    }
    if s.log.raw_lost > 0 {
        // walkT 2: records a full disk or a directory the user may not
        // write to took; mailward_raw_records_lost_total counts them too.
        p.push(format!(
            "{} raw record(s) could not be written to the raw records file since the last statistics reset (see \"Cannot write a raw record.\" in the log): free space on its filesystem, or make its directory writable by the user Mailward runs as; the statistics still count those messages.",
            s.log.raw_lost
        ));
    }
    if s.log.rotation_failures > 0 {
        let last = s
            .log
            .last_rotation_failure
            .as_deref()
            .map(|e| format!(" (the last: {e})"))
            .unwrap_or_default();
        p.push(format!(
            "{} rotation(s) of the log or raw records file failed{last}: the file grows past log.rotate_size. Make the file's directory writable by the user Mailward runs as, or set log.rotate_size = \"0\" and leave rotation to logrotate.",
            s.log.rotation_failures
        ));
    }
    p
}

/// The problem sentence of spam learning that cannot be read: what, where,
/// why, what it costs, and what to do (walkR finding 1: a damaged
/// `site.model` showed as "learnt 0 spam and 0 ham", and no problem).
/// The problem of a store that cannot write: what, since when, the last
/// error, what it does to mail and what to do.
fn store_write_failing(f: &crate::store::WriteFailing) -> String {
    let effect = if f.store == "archive outgoing" {
        "delivered messages go on without their outgoing archive copy"
    } else {
        "a message that needs this copy is refused with 451 4.3.0 in the session (the sender's server retries), or stays unchecked in the spool when the copy was due after the 250"
    };
    let times = if f.failures == 1 {
        format!("at {}", rfc3339(f.since))
    } else {
        format!(
            "since {} ({} failed copies, the last at {})",
            rfc3339(f.since),
            f.failures,
            rfc3339(f.last_at)
        )
    };
    let store = f.name();
    format!(
        "The {store} cannot write its copies {times}: {}. Meanwhile {effect}. Free space on the file system of {}, or make it writable by the gateway's user (not mounted read-only, owner and mode of the directory); this clears at the next copy written.",
        f.error.trim_end().trim_end_matches('.'),
        f.dir.display()
    )
}

fn spam_unreadable(u: &Unreadable) -> String {
    let what = match u.part {
        Part::Base => "The spam base",
        Part::Site => "The site's spam learning",
        Part::Store => "The spam store",
    };
    let cost = if u.in_use_stays {
        "what was read of it before stays in use, but a restart would run without the classifier"
    } else {
        "the classifier is unavailable, and mail is judged by the other tests (the rules at double weight)"
    };
    match u.part {
        Part::Store => format!(
            "{what} {} cannot be read ({}): {cost} until it can be.",
            u.path, u.reason
        ),
        _ => format!(
            "{what} {} cannot be read ({}): {cost}. To repair it, {}.",
            u.path,
            u.reason,
            u.next_step()
        ),
    }
}

/// What `mailward status --json` prints when the daemon gave no status:
/// `running` false when no daemon answers (not running, or hung), null
/// when this user may not ask (whether it runs is not known), true when it
/// answered with an error; `problems` holds the one sentence of `error`.
pub fn unanswered(error: &super::admin::AdminError) -> serde_json::Value {
    use super::admin::AdminError;
    let running = match error {
        AdminError::NotPermitted { .. } => serde_json::Value::Null,
        AdminError::Refused(_) => serde_json::Value::Bool(true),
        _ => serde_json::Value::Bool(false),
    };
    serde_json::json!({ "running": running, "problems": [error.to_string()] })
}

/// `[log] destination` as written in the configuration.
fn destination(cfg: &Config) -> String {
    match &cfg.log.destination {
        LogDestination::Stderr => "stderr".into(),
        LogDestination::File(p) => format!("file:{}", p.display()),
        LogDestination::Syslog(t) => match &t.transport {
            SyslogTransport::Local => format!("syslog:{}", t.facility),
            other => format!("syslog:{other}@{}", t.facility),
        },
    }
}

/// Destinations named in the suspension problem; the rest are counted.
const SUSPENDED_NAMED: usize = 5;

/// The problem sentence of suspended destinations: which, until when,
/// after how many failures and on what error, then what to do. An older
/// daemon's answer has only the count: then the log names them.
fn suspended_problem(s: &Status) -> String {
    let count = s.destinations_suspended.max(s.suspended.len() as u64);
    let mut named: Vec<String> = s
        .suspended
        .iter()
        .take(SUSPENDED_NAMED)
        .map(|d| {
            let when = if d.probing {
                "a probe under way".to_string()
            } else if d.probe_due {
                format!(
                    "ended {}: its mail's next attempt probes it",
                    rfc3339(d.until)
                )
            } else {
                format!("until {}", rfc3339(d.until))
            };
            format!(
                "{} ({when}, {} failure(s), last: {})",
                d.destination,
                d.failures,
                crate::text::cut(&d.last_error, 200).replace(['\r', '\n'], " ")
            )
        })
        .collect();
    if s.suspended.len() > SUSPENDED_NAMED {
        named.push(format!(
            "and {} more (`mailward status --json` lists them all)",
            s.suspended.len() - SUSPENDED_NAMED
        ));
    }
    let which = if named.is_empty() {
        ". The log's 'Destination suspended' lines name each with its last error.".to_string()
    } else {
        format!(": {}.", named.join("; "))
    };
    format!(
        "{count} delivery destination(s) suspended after connection failures in a row{which} Their mail waits without connecting until a probe gets through (after timeouts.min_backoff, doubled per failed probe); `mailward queue summary` shows the waiting domains. Check that next hop (whether it takes connections, the route's address, its DNS); once it is back, `mailward queue flush` lifts the suspension."
    )
}

/// A Unix time as RFC 3339 ("?" when out of range).
fn rfc3339(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0).map_or_else(|| "?".to_string(), |t| t.to_rfc3339())
}

/// The status as text, one aspect per line, then the problems.
pub fn render(s: &Status, now: i64) -> String {
    let mut out = format!(
        "Mailward {} is running: pid {}, up {} (since {})\n",
        s.version,
        s.pid,
        crate::text::age(now - s.started),
        rfc3339(s.started)
    );
    out += &format!(
        "config:   {} (loaded {}, {} reload(s), {} refused)\n",
        s.config,
        rfc3339(s.config_loaded),
        s.reloads,
        s.reload_failures
    );
    let mut ways: Vec<String> = s.listen.iter().map(|l| format!("SMTP {l}")).collect();
    if let Some(m) = &s.milter {
        ways.push(format!("milter {m}"));
    }
    if let Some(m) = &s.metrics {
        ways.push(format!("metrics http://{m}/metrics"));
    }
    out += &format!("listens:  {}\n", ways.join(", "));
    let mut notes = Vec::new();
    if s.queue_held > 0 {
        notes.push(format!("{} held", s.queue_held));
    }
    if s.deferred.messages > 0 {
        notes.push(format!(
            "{} deferred, the oldest for {}",
            s.deferred.messages,
            crate::text::age(s.deferred.oldest)
        ));
    }
    if s.destinations_suspended > 0 {
        notes.push(format!(
            "{} destination(s) suspended",
            s.destinations_suspended
        ));
    }
    let held = if notes.is_empty() {
        String::new()
    } else {
        format!(" ({})", notes.join("; "))
    };
    out += &format!(
        "queue:    {} message(s){held}, {}; spool {} free\n",
        s.queue_messages,
        bytes(s.queue_bytes),
        bytes(s.spool_free_bytes)
    );
    out += &format!(
        "sessions: {} in, {} out{}\n",
        s.sessions_in,
        s.sessions_out,
        if s.stress { " (under stress)" } else { "" }
    );
    if s.milter.is_some() {
        out += &format!(
            "milter:   {} of {} connection(s) open{}\n",
            s.milter_connections,
            s.milter_max_connections,
            if s.milter_max_connections > 0 && s.milter_connections >= s.milter_max_connections {
                " (all taken: see the problems)"
            } else {
                ""
            }
        );
    }
    out += &match &s.bases {
        None => "bases:    none loaded\n".to_string(),
        Some(b) => format!(
            "bases:    {}{}, {}, released {}{}; last update: {}\n",
            b.version,
            if b.builtin {
                " (built-in default set)"
            } else {
                ""
            },
            crate::text::counted(b.records, "record"),
            rfc3339(b.released),
            if b.obsolete { " (obsolete)" } else { "" },
            // The result's name as words ("rolled back"), not the label.
            b.last_update.replace('_', " ")
        ),
    };
    let needs = match s.spam.classifier {
        Readiness::Abstaining => format!(
            ", needs {} of each; until then the rules weigh double",
            s.spam.min_learnt
        ),
        Readiness::Unavailable => {
            "; the rules weigh double until its learning can be read: see the problems".into()
        }
        Readiness::Active => String::new(),
    };
    let base = match s.spam.base {
        Some(b) => format!(", {} and {} of them from the base", b.spam, b.ham),
        None => String::new(),
    };
    out += &format!(
        "spam:     classifier {} (learnt {} spam and {} ham{base}{needs}; {})\n",
        s.spam.classifier.as_str(),
        s.spam.learnt_spam,
        s.spam.learnt_ham,
        s.spam.store
    );
    if s.snmp.state == SnmpState::Off {
        out += "snmp:     off (agentx.socket = \"\": no AgentX subagent, no SNMP notifications)\n";
    } else {
        out += &format!(
            "snmp:     {} (master {}, subtree {}); {} request(s), {} error(s), {} reconnect(s)\n",
            s.snmp.state.as_str(),
            s.snmp.master,
            s.snmp.root_oid,
            s.snmp.requests,
            s.snmp.errors,
            s.snmp.reconnects
        );
    }
    let resolver = match s.dns.resolver.as_str() {
        "system" => "the system's resolvers",
        other => other,
    };
    out += &if s.dns.recent == 0 {
        format!("dns:      {resolver}; no look-ups yet\n")
    } else {
        format!(
            "dns:      {resolver}; {} of the last {} look-ups failed{}{}{}\n",
            s.dns.recent_failed,
            s.dns.recent,
            if s.dns.recent_refused > 0 {
                format!(
                    "; {} of its last {} list, MX, address and PTR look-ups REFUSED",
                    s.dns.recent_refused, s.dns.recent_asked
                )
            } else {
                String::new()
            },
            match s.dns.server_silent_since {
                Some(t) => format!(
                    "; server {} since {} (SPF, DKIM/DMARC, DNS lists not asked)",
                    if s.dns.server_refuses {
                        "refusing (REFUSED without the question)"
                    } else {
                        "not answering"
                    },
                    rfc3339(t)
                ),
                None => String::new(),
            },
            if s.dns.resting_zones.is_empty() {
                String::new()
            } else {
                format!(
                    "; not asking (no answer lately): {}",
                    s.dns.resting_zones.join(", ")
                )
            }
        )
    };
    out += &format!(
        "log:      {}; {} line(s) dropped, {} failed rotation(s)\n",
        s.log.destination, s.log.lines_dropped, s.log.rotation_failures
    );
    if s.problems.is_empty() {
        out += "No problems.\n";
    } else {
        out += &format!("{} problem(s):\n", s.problems.len());
        for p in &s.problems {
            out += &format!("  - {p}\n");
        }
    }
    out
}

/// Bytes in binary units, one decimal.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The `ss` filter for the sessions on the SMTP listeners: the ports
/// this gateway listens on (walkBK F5: the hint said port 25 whatever
/// they were).
fn ss_filter(listen: &[String]) -> String {
    let mut ports: Vec<&str> = listen
        .iter()
        .filter_map(|l| l.rsplit_once(':').map(|(_, port)| port))
        .collect();
    ports.sort_unstable();
    ports.dedup();
    match ports.as_slice() {
        [] => "sport = :25".to_string(),
        [one] => format!("sport = :{one}"),
        many => format!(
            "( {} )",
            many.iter()
                .map(|p| format!("sport = :{p}"))
                .collect::<Vec<_>>()
                .join(" or ")
        ),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_stress_hint_names_the_ports_listened_on() {
        let l = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(super::ss_filter(&l(&["0.0.0.0:2525"])), "sport = :2525");
        assert_eq!(
            super::ss_filter(&l(&["0.0.0.0:25", "[::]:25", "0.0.0.0:587"])),
            "( sport = :25 or sport = :587 )"
        );
    }

    use super::*;

    fn healthy() -> Status {
        Status {
            version: "0.1.0".into(),
            pid: 42,
            started: 1_000,
            config: "/etc/mailward/mailward.toml".into(),
            config_loaded: 1_000,
            reloads: 0,
            reload_failures: 0,
            reload_refused_at: 0,
            reload_refused_why: None,
            restart_pending: Vec::new(),
            tls_certificate_problem: None,
            listen: vec!["127.0.0.1:2525".into()],
            milter: None,
            milter_connections: 0,
            milter_max_connections: 0,
            metrics: Some("127.0.0.1:9925".into()),
            queue_messages: 3,
            queue_held: 0,
            queue_bytes: 12_288,
            deferred: Deferred::default(),
            destinations_suspended: 0,
            suspended: Vec::new(),
            misrouted: Vec::new(),
            alarms_unkept: None,
            alerts_raised: Vec::new(),
            spool_free_bytes: 40 << 30,
            spool_reclaimable_bytes: 0,
            min_queue_free_space: 100 << 20,
            spool_copy_reserve: 0,
            spool_write_failing: None,
            store_write_failing: Vec::new(),
            compaction_short_of: 0,
            spool_write_stalled_secs: None,
            spool_rotate_failing: None,
            spool_lost_segments: Vec::new(),
            spool_damaged: None,
            space_refusals: None,
            sessions_in: 2,
            sessions_out: 1,
            stress: false,
            bases: Some(Bases {
                version: "2026.12.01.3".into(),
                records: 1204,
                released: 1_000,
                obsolete: false,
                builtin: false,
                last_update: "updated".into(),
                last_update_message: None,
            }),
            bases_on_disk_error: None,
            bases_previous: false,
            spam: Spam {
                classifier: Readiness::Active,
                learnt_spam: 947,
                learnt_ham: 2069,
                base: None,
                min_learnt: 200,
                store: "/var/lib/mailward/spam/site.model".into(),
                unreadable: Vec::new(),
                emptied: None,
            },
            snmp: Snmp {
                state: SnmpState::Serving,
                master: "tcp:127.0.0.1:705".into(),
                root_oid: "1.3.6.1.4.1.32473.25".into(),
                last_error: None,
                requests: 120,
                errors: 0,
                reconnects: 1,
            },
            log: Log {
                destination: "syslog:mail".into(),
                lines_dropped: 0,
                rotation_failures: 0,
                last_error: None,
                last_error_at: 0,
                last_rotation_failure: None,
                raw_lost: 0,
            },
            dns: Dns {
                resolver: "127.0.0.1:53".into(),
                recent: 64,
                recent_failed: 2,
                resting_zones: Vec::new(),
                server_silent_since: None,
                recent_asked: 64,
                recent_refused: 0,
                server_refuses: false,
            },
            problems: Vec::new(),
        }
    }

    #[test]
    fn a_healthy_gateway_has_no_problems_and_reads_in_a_screen() {
        let s = healthy();
        assert!(problems(&s).is_empty());
        let text = render(&s, 1_000 + 2 * 3600 + 5 * 60);
        assert!(
            text.starts_with("Mailward 0.1.0 is running: pid 42, up 2h 5m"),
            "{text}"
        );
        assert!(text.contains("queue:    3 message(s), 12.0 KiB; spool 40.0 GiB free"));
        assert!(
            text.contains("snmp:     serving (master tcp:127.0.0.1:705, subtree 1.3.6.1.4.1.32473.25); 120 request(s), 0 error(s), 1 reconnect(s)\n"),
            "{text}"
        );
        assert!(text.contains("dns:      127.0.0.1:53; 2 of the last 64 look-ups failed"));
        assert!(text.ends_with("No problems.\n"), "{text}");
        // With a base installed, how much of the learning is its (walkBW 3).
        let mut s = s;
        s.spam.base = Some(BaseLearnt {
            spam: 900,
            ham: 2000,
        });
        assert!(
            render(&s, 1_000).contains(
                "spam:     classifier active (learnt 947 spam and 2069 ham, 900 and 2000 of them from the base; /var/lib/mailward/spam/site.model)\n"
            ),
            "{}",
            render(&s, 1_000)
        );
    }

    /// walkX finding 8: status said nothing about milter connections, nor
    /// when every slot was taken (the MTA's next session then waits and
    /// gets its milter_default_action).
    #[test]
    fn milter_connections_are_shown_and_all_slots_taken_is_a_problem() {
        let mut s = healthy();
        let text = render(&s, 1_000);
        assert!(!text.contains("milter:"), "no milter, no line: {text}");
        s.milter = Some("inet:10031@127.0.0.1".into());
        s.milter_max_connections = 128;
        s.milter_connections = 127;
        assert!(problems(&s).is_empty(), "{:#?}", problems(&s));
        let text = render(&s, 1_000);
        assert!(
            text.contains("milter:   127 of 128 connection(s) open\n"),
            "{text}"
        );
        s.milter_connections = 128;
        s.problems = problems(&s);
        assert_eq!(s.problems.len(), 1, "{:#?}", s.problems);
        assert!(
            s.problems[0].contains("128 of milter.max_connections 128")
                && s.problems[0].contains("milter_default_action"),
            "{}",
            s.problems[0]
        );
        let text = render(&s, 1_000);
        assert!(
            text.contains(
                "milter:   128 of 128 connection(s) open (all taken: see the problems)\n"
            ),
            "{text}"
        );
        // An older daemon's JSON, without the fields, still reads.
        let mut v = serde_json::to_value(&s).unwrap();
        let o = v.as_object_mut().unwrap();
        o.remove("milter_connections");
        o.remove("milter_max_connections");
        let old: Status = serde_json::from_value(v).unwrap();
        assert_eq!(old.milter_connections, 0);
    }

    #[test]
    fn a_dns_server_that_stopped_answering_is_a_problem_a_few_failures_are_not() {
        let mut s = healthy();
        s.dns.recent_failed = 33;
        let p = problems(&s);
        assert_eq!(p.len(), 1, "{p:#?}");
        assert!(
            p[0].starts_with("33 of the last 64 DNS look-ups got no answer from 127.0.0.1:53"),
            "{}",
            p[0]
        );
        s.dns.recent_failed = 32;
        assert!(problems(&s).is_empty(), "half is not most");
        // A probe that got no answer says it, whatever the sample: one
        // problem, not two.
        s.dns.server_silent_since = Some(1_000);
        s.dns.recent_failed = 64;
        let p = problems(&s);
        assert_eq!(p.len(), 1, "{p:#?}");
        assert!(
            p[0].starts_with("The DNS server 127.0.0.1:53 has not answered a probe since 1970-01-01T00:16:40+00:00: SPF and DKIM/DMARC give temperror"),
            "{}",
            p[0]
        );
        assert!(render(&s, 2_000).contains(
            "dns:      127.0.0.1:53; 64 of the last 64 look-ups failed; server not answering since 1970-01-01T00:16:40+00:00 (SPF, DKIM/DMARC, DNS lists not asked)"
        ));
        // Resting zones while the server answers: the lists are named,
        // not the server.
        s.dns.server_silent_since = None;
        s.dns.resting_zones = vec!["bl.test".into(), "score.test".into()];
        let p = problems(&s);
        assert_eq!(p.len(), 1, "{p:#?}");
        assert!(
            p[0].starts_with("The DNS list zone(s) bl.test, score.test got no answer to their last 8 look-ups while the DNS server 127.0.0.1:53 answers"),
            "{}",
            p[0]
        );
        s.dns.recent_failed = 0;
        assert_eq!(problems(&s).len(), 1, "a dead list is a problem by itself");
        s.dns.resting_zones.clear();
        // Too few look-ups to blame the server.
        s.dns.recent = 4;
        s.dns.recent_failed = 4;
        assert!(problems(&s).is_empty());
    }

    /// walkAK 2: a server that answers REFUSED was reported as one that
    /// gives no answer; it is named as refusing, once, before the zones
    /// that rest because of it.
    #[test]
    fn a_dns_server_that_refuses_is_named_as_refusing_not_as_silent() {
        let mut s = healthy();
        s.dns.recent_failed = 64;
        s.dns.recent_asked = 40;
        s.dns.recent_refused = 40;
        s.dns.resting_zones = vec!["bl.test".into()];
        let p = problems(&s);
        assert_eq!(p.len(), 1, "{p:#?}");
        assert!(
            p[0].starts_with("40 of the last 40 DNS look-ups were REFUSED by 127.0.0.1:53: it does not resolve for this host. Allow this host recursion there")
                && p[0].contains("or set access.dns_resolver to a server that does")
                && !p[0].contains("no answer"),
            "{}",
            p[0]
        );
        assert!(render(&s, 2_000).contains(
            "dns:      127.0.0.1:53; 64 of the last 64 look-ups failed; 40 of its last 40 list, MX, address and PTR look-ups REFUSED; not asking (no answer lately): bl.test\n"
        ));
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(
            (&json["dns"]["recent_refused"], &json["dns"]["recent_asked"]),
            (&serde_json::json!(40), &serde_json::json!(40))
        );
        // A few refusals among answers are no problem; a silent server is
        // said as such.
        s.dns.resting_zones.clear();
        s.dns.recent_failed = 2;
        s.dns.recent_refused = 20;
        assert!(problems(&s).is_empty(), "half is not most");
        s.dns.recent_refused = 4;
        s.dns.recent_asked = 4;
        assert!(problems(&s).is_empty(), "too few look-ups to say");
        // walkAM 1: unbound refuses without the question; the look-ups
        // time out (failed, not refused), the probe is refused.
        s.dns.recent_refused = 0;
        s.dns.recent_asked = 30;
        s.dns.recent_failed = 30;
        s.dns.recent = 30;
        s.dns.server_refuses = true;
        // Found by the probe (the look-ups cannot use its replies): said
        // as refusing, not as silent.
        s.dns.server_silent_since = Some(1_000);
        let p = problems(&s);
        assert_eq!(p.len(), 1, "{p:#?}");
        assert!(
            p[0].starts_with("The DNS server 127.0.0.1:53 answers REFUSED (without the question, as unbound refuses) since 1970-01-01T00:16:40+00:00: it does not resolve for this host")
                && !p[0].contains("has not answered"),
            "{}",
            p[0]
        );
        assert!(render(&s, 2_000).contains(
            "; server refusing (REFUSED without the question) since 1970-01-01T00:16:40+00:00 (SPF, DKIM/DMARC, DNS lists not asked)"
        ));
        s.dns.server_silent_since = None;
        // A server of local zones only refuses the probe's made-up name
        // (with the question: it answers) and answers the look-ups: no
        // problem; when its look-ups fail, they are said as such (the
        // e2e `names_that_never_get_an_answer...`).
        s.dns.recent_failed = 1;
        assert!(problems(&s).is_empty(), "{:#?}", problems(&s));
        s.dns.recent_failed = 30;
        let p = problems(&s);
        assert!(
            p.len() == 1 && p[0].starts_with("30 of the last 30 DNS look-ups got no answer"),
            "{p:#?}"
        );
        s.dns.server_refuses = false;
        s.dns.server_silent_since = Some(1_000);
        s.dns.recent_refused = 40;
        s.dns.recent_asked = 40;
        let p = problems(&s);
        assert!(
            p.len() == 1 && p[0].starts_with("The DNS server 127.0.0.1:53 has not answered"),
            "{p:#?}"
        );
    }

    /// walkP 5: every message got 451 (the spool's writes failed) and
    /// status named no problem.
    #[test]
    fn a_spool_that_cannot_write_is_a_problem() {
        let mut s = healthy();
        s.spool_write_failing = Some((
            1_796_475_633,
            "No space left on device (os error 28)".into(),
        ));
        let p = problems(&s);
        assert_eq!(p.len(), 1, "{p:#?}");
        assert!(
            p[0].starts_with("The spool cannot write since 2026-12-05T13:00:33+00:00 (No space left on device (os error 28)): new mail gets 451 4.3.0"),
            "{}",
            p[0]
        );
        s.spool_write_failing = None;
        s.compaction_short_of = 624 << 10;
        let p = problems(&s);
        assert_eq!(p.len(), 1, "{p:#?}");
        assert!(
            p[0].contains("it needs 624.0 KiB more on its disk"),
            "{}",
            p[0]
        );
    }

    /// walkAU F1, F8, F12: a stalled disk, a spool directory that takes
    /// no new segment and a segment deleted under the gateway were only
    /// log lines.
    #[test]
    fn spool_stalls_blocked_segments_and_lost_mail_are_problems() {
        let mut s = healthy();
        s.spool_write_stalled_secs = Some(42);
        s.spool_rotate_failing = Some((
            1_796_475_633,
            "Operation not permitted (os error 1); check lsattr -d".into(),
        ));
        s.spool_lost_segments = vec![(7, 2), (3, 0)];
        let p = problems(&s);
        assert_eq!(p.len(), 4, "{p:#?}");
        assert!(
            p[0].starts_with("A spool write has not completed for 42s"),
            "{}",
            p[0]
        );
        assert!(
            p[1].starts_with("The spool cannot start a new segment since 2026-12-05T13:00:33+00:00 (Operation not permitted"),
            "{}",
            p[1]
        );
        assert!(
            p[2].starts_with("Spool segment 7 was deleted by something other than Mailward while 2 message(s) waited in it: they are lost"),
            "{}",
            p[2]
        );
        // Missing at start: no count to give, and no "0 message(s)".
        assert!(
            p[3].starts_with("Spool segment 3 was missing between the others at start: the mail recorded only in it is lost"),
            "{}",
            p[3]
        );
    }

    /// A quarantine or archive copy that could not be written was only a
    /// log line: status says which store, since when, why and what to do.
    #[test]
    fn a_store_that_cannot_write_is_a_problem() {
        let mut s = healthy();
        s.store_write_failing = vec![
            crate::store::WriteFailing {
                store: "quarantine".into(),
                dir: "/var/lib/mailward/quarantine".into(),
                since: 1_796_475_633,
                last_at: 1_796_475_693,
                failures: 3,
                error: "/var/lib/mailward/quarantine/1A22E10E77891C7A.eml.tmp: Read-only file system (os error 30)".into(),
            },
            crate::store::WriteFailing {
                store: "archive outgoing".into(),
                dir: "/var/lib/mailward/archive/outgoing".into(),
                since: 1_796_475_633,
                last_at: 1_796_475_633,
                failures: 1,
                error: "No space left on device (os error 28)".into(),
            },
        ];
        let p = problems(&s);
        assert_eq!(p.len(), 2, "{p:#?}");
        assert_eq!(
            p[0],
            "The quarantine cannot write its copies since 2026-12-05T13:00:33+00:00 (3 failed copies, the last at 2026-12-05T13:01:33+00:00): /var/lib/mailward/quarantine/1A22E10E77891C7A.eml.tmp: Read-only file system (os error 30). Meanwhile a message that needs this copy is refused with 451 4.3.0 in the session (the sender's server retries), or stays unchecked in the spool when the copy was due after the 250. Free space on the file system of /var/lib/mailward/quarantine, or make it writable by the gateway's user (not mounted read-only, owner and mode of the directory); this clears at the next copy written."
        );
        assert!(
            p[1].starts_with("The outgoing archive cannot write its copies at 2026-12-05T13:00:33+00:00: No space left on device (os error 28). Meanwhile delivered messages go on without their outgoing archive copy."),
            "{}",
            p[1]
        );
    }

    /// walkJ: the gateway refused every message with 452 and status
    /// named no problem.
    #[test]
    fn a_spool_under_its_floor_is_a_problem() {
        let mut s = healthy();
        s.spool_free_bytes = 3 << 20;
        s.spool_reclaimable_bytes = 1 << 20;
        s.min_queue_free_space = 4 << 20;
        assert!(problems(&s).is_empty(), "reclaimable space counts");
        s.spool_reclaimable_bytes = 0;
        let p = problems(&s);
        assert_eq!(p.len(), 1, "{p:#?}");
        assert!(
            p[0].starts_with("New mail is refused (452 4.3.1): the spool's disk has 3.0 MiB available, under limits.min_queue_free_space (4.0 MiB)."),
            "{}",
            p[0]
        );
        // Over the floor, but not over the floor and the room kept for
        // the compaction's copy: refused too, and said why.
        s.spool_free_bytes = 5 << 20;
        s.spool_copy_reserve = 2 << 20;
        let p = problems(&s);
        assert_eq!(p.len(), 1, "{p:#?}");
        assert!(
            p[0].contains("5.0 MiB available, under limits.min_queue_free_space (4.0 MiB) plus the 2.0 MiB kept to copy the waiting messages forward"),
            "{}",
            p[0]
        );
        s.spool_free_bytes = 6 << 20;
        assert!(problems(&s).is_empty(), "{:#?}", problems(&s));
    }

    /// walkW 1: a damaged segment's note kept every newer segment (6.8 MB
    /// of delivered mail on an 8 MiB disk, mail refused) and status named
    /// no problem.
    #[test]
    fn a_damaged_segment_that_keeps_delivered_mail_is_a_problem() {
        let mut s = healthy();
        s.spool_damaged = Some(crate::spool::DamagedKept {
            segment: 19,
            note: "/var/lib/mailward/spool/damaged-0000000000000019".into(),
            kept_bytes: 7 << 20,
        });
        let p = problems(&s);
        assert_eq!(p.len(), 1, "{p:#?}");
        assert!(
            p[0].starts_with("Spool segment 19 was refused as damaged at a start and is not back: no segment after it is deleted, so delivered mail stays on the spool's disk (7.0 MiB so far)"),
            "{}",
            p[0]
        );
        assert!(
            p[0].contains("`rm /var/lib/mailward/spool/damaged-0000000000000019`"),
            "{}",
            p[0]
        );
        // An older daemon's JSON, without the field, still reads.
        let mut v = serde_json::to_value(&s).unwrap();
        v.as_object_mut().unwrap().remove("spool_damaged");
        let old: Status = serde_json::from_value(v).unwrap();
        assert_eq!(old.spool_damaged, None);
    }

    /// walkW 3: free space over the floor for a message of 0 bytes, under
    /// it for every real one (452 at the end of DATA): status said nothing.
    #[test]
    fn refusals_for_space_in_the_last_minute_are_a_problem() {
        let mut s = healthy();
        s.spool_free_bytes = 1_400 << 10;
        s.min_queue_free_space = 1 << 20;
        assert!(problems(&s).is_empty(), "{:#?}", problems(&s));
        s.space_refusals = Some(crate::spool::SpaceRefusals {
            count: 12,
            last_at: 1_764_000_000,
            wanted: 200 << 10,
            left: 120 << 10,
            // walkAE 6: the figures of the refusal, which add up
            // (1.4 MiB - 1 MiB - 136 KiB - 128 KiB = 120 KiB), not
            // today's 1.4 MiB and copy reserve.
            available: 1_400 << 10,
            floor: 1 << 20,
            copy_reserve: 136 << 10,
            receiving: 128 << 10,
        });
        s.spool_free_bytes = 7 << 20;
        let p = problems(&s);
        assert_eq!(p.len(), 1, "{p:#?}");
        assert!(
            p[0].starts_with("12 message(s) got 452 4.3.1 for spool space in the last minute, the last at 2025-11-24T16:00:00+00:00 for a message that asked for room for 200.0 KiB (its SIZE, or its data up to then), with 120.0 KiB left for new mail then (the 1.4 MiB available less limits.min_queue_free_space (1.0 MiB), the 136.0 KiB kept to copy the waiting messages forward and the 128.0 KiB of the other messages being received); now 7.0 MiB is available."),
            "{}",
            p[0]
        );
        s.spool_free_bytes = 1_400 << 10;
        // Room for nothing is one problem, not two.
        s.spool_free_bytes = 512 << 10;
        let p = problems(&s);
        assert_eq!(p.len(), 1, "{p:#?}");
        assert!(
            p[0].starts_with("New mail is refused (452 4.3.1)"),
            "{}",
            p[0]
        );
    }

    #[test]
    fn each_degradation_is_a_problem_sentence() {
        let mut s = healthy();
        s.snmp.state = SnmpState::Refused;
        s.spam.classifier = Readiness::Unavailable;
        s.spam.store = "redis://10.0.0.5:6379/0".into();
        s.log.rotation_failures = 2;
        s.reload_failures = 1;
        s.reload_refused_at = 1_764_000_000;
        // walkAM 13: the problem says why, as the log and the trap do.
        s.reload_refused_why = Some(
            "timeouts.min_backoff: expected a duration like \"30s\" or \"5m\", got \"thirty\" (in /etc/mailward/mailward.toml:159)".into(),
        );
        if let Some(b) = s.bases.as_mut() {
            b.obsolete = true;
            b.last_update = "error".into();
        }
        let p = problems(&s);
        assert_eq!(p.len(), 6, "{p:#?}");
        assert!(p
            .iter()
            .any(|l| l.contains("refuses the subtree 1.3.6.1.4.1.32473.25")));
        assert!(p
            .iter()
            .any(|l| l.contains("redis://10.0.0.5:6379/0 cannot be read")));
        assert!(p.iter().any(|l| l.contains(
            "was refused (timeouts.min_backoff: expected a duration like \"30s\" or \"5m\", got \"thirty\" (in /etc/mailward/mailward.toml:159)): the file on disk is not the one in force"
        )), "{p:#?}");
        assert!(p
            .iter()
            .any(|l| l.contains("older than bases.obsolete_after")));
        s.bases = None;
        s.snmp.state = SnmpState::Disconnected;
        let p = problems(&s);
        assert!(p.iter().any(|l| l.starts_with("No signature bases")));
        assert!(p.iter().any(|l| l.starts_with("No AgentX session")));
        // walkBH F8 and F3: a route's next hop that cannot be found, and
        // alarms that cannot be kept, are problems with what to do.
        s.misrouted = vec![crate::delivery::suspend::Misrouted {
            destination: "[relay.typo.example]:25".into(),
            error: "address look-up: relay.typo.example: no such domain".into(),
            since: 0,
        }];
        s.alarms_unkept = Some("/var/lib/mailward/alarms.json: Permission denied".into());
        let p = problems(&s);
        assert!(p.iter().any(|l| l.starts_with("The next hop [relay.typo.example]:25 of a [[route]] cannot be found (address look-up: relay.typo.example: no such domain) since 1970-01-01T00:00:00+00:00: its mail waits")), "{p:#?}");
        assert!(p.iter().any(|l| l.starts_with("The SNMP alarms raised now cannot be kept for the next start (/var/lib/mailward/alarms.json: Permission denied)")), "{p:#?}");
        // walkBE 8: a subagent turned off is no problem, and says so.
        s.snmp.state = SnmpState::Off;
        assert!(!problems(&s).iter().any(|l| l.contains("AgentX")));
        assert!(render(&s, 0).contains(
            "snmp:     off (agentx.socket = \"\": no AgentX subagent, no SNMP notifications)\n"
        ));
    }

    #[test]
    fn spam_learning_that_cannot_be_read_is_a_problem_with_the_way_out() {
        // walkR finding 1: a damaged site.model at start showed as
        // "classifier abstaining (learnt 0 spam and 0 ham ...)" and no
        // problem, while every message was judged without the classifier.
        let mut s = healthy();
        s.spam.classifier = Readiness::Unavailable;
        s.spam.learnt_spam = 0;
        s.spam.learnt_ham = 0;
        s.spam.unreadable = vec![Unreadable {
            part: Part::Site,
            path: "/var/lib/mailward/spam/site.model".into(),
            reason:
                "not a Mailward spam model (checksum mismatch: the file is damaged or cut short)"
                    .into(),
            in_use_stays: false,
        }];
        let p = problems(&s);
        assert_eq!(p, [
            "The site's spam learning /var/lib/mailward/spam/site.model cannot be read (not a Mailward spam model (checksum mismatch: the file is damaged or cut short)): the classifier is unavailable, and mail is judged by the other tests (the rules at double weight). To repair it, move it away and `mailward spam import` your last export (`mailward spam export` writes one), or remove it to start learning over; a running daemon picks either up within seconds."
        ]);
        let text = render(&s, 2_000);
        assert!(
            text.contains("spam:     classifier unavailable (learnt 0 spam and 0 ham; the rules weigh double until its learning can be read: see the problems; "),
            "{text}"
        );
        // A base damaged while running: the one in use stays, but a restart
        // would lose it.
        s.spam.classifier = Readiness::Active;
        s.spam.unreadable = vec![Unreadable {
            part: Part::Base,
            path: "/var/lib/mailward/spam/base.model".into(),
            reason: "not a Mailward spam model (no model header)".into(),
            in_use_stays: true,
        }];
        let p = problems(&s);
        assert_eq!(p.len(), 1, "{p:#?}");
        assert!(
            p[0].starts_with("The spam base /var/lib/mailward/spam/base.model cannot be read (not a Mailward spam model (no model header)): what was read of it before stays in use, but a restart would run without the classifier. To repair it, move it away and install a good base"),
            "{}",
            p[0]
        );
    }

    #[test]
    fn a_shared_store_that_came_back_empty_is_a_problem() {
        // walkR finding 2: a Redis restarted without persistence wiped every
        // gateway's learning, and the log said "the classifier is back".
        let mut s = healthy();
        s.spam.classifier = Readiness::Abstaining;
        s.spam.store = "redis://10.0.0.5:6379/0".into();
        s.spam.emptied = Some(Emptied {
            store: "redis://10.0.0.5:6379/0".into(),
            spam: 230,
            ham: 231,
        });
        let p = problems(&s);
        assert_eq!(p.len(), 1, "{p:#?}");
        assert!(
            p[0].starts_with("The spam store redis://10.0.0.5:6379/0 came back empty: it held 230 spam and 231 ham before")
                && p[0].contains("Restore it with `mailward spam import EXPORT`"),
            "{}",
            p[0]
        );
    }

    #[test]
    fn lost_raw_records_a_full_log_disk_and_failed_rotations_say_what_to_do() {
        let mut s = healthy();
        s.log.raw_lost = 3;
        s.log.destination = "file:/var/log/mailward/mailward.log".into();
        s.log.lines_dropped = 2;
        s.log.last_error =
            Some("/var/log/mailward/mailward.log: No space left on device (os error 28)".into());
        s.log.rotation_failures = 1;
        s.log.last_rotation_failure =
            Some("cannot rotate /var/log/mailward/raw.log: Permission denied (os error 13)".into());
        let p = problems(&s);
        assert!(
            p.iter()
                .any(|l| l.contains("free space on the log file's filesystem")),
            "a full disk is not a permission problem: {p:#?}"
        );
        assert!(
            p.iter()
                .any(|l| l.starts_with("3 raw record(s) could not be written")),
            "{p:#?}"
        );
        assert!(
            p.iter().any(
                |l| l.contains("(the last: cannot rotate /var/log/mailward/raw.log")
                    && l.contains("log.rotate_size = \"0\"")
            ),
            "{p:#?}"
        );
    }

    #[test]
    fn a_set_on_disk_that_does_not_load_is_a_problem_until_it_loads() {
        // walkL 5: a set broken on disk after a SIGHUP was only logged; the
        // next start then ran with no AV rules, and nothing had warned.
        let mut s = healthy();
        let e = "error[E025]: unknown pattern `$nope` at /srv/av/broken.yar:2:13";
        s.bases_on_disk_error = Some(e.into());
        let p = problems(&s);
        assert_eq!(p.len(), 1, "{p:#?}");
        assert!(
            p[0].starts_with(&format!("The signature bases on disk do not load: {e}."))
                && p[0].contains("The rules in use (2026.12.01.3) stay")
                && p[0].contains(
                    "a restart would run without AV rules until the set is fixed or rolled back"
                ),
            "{}",
            p[0]
        );
        // At a start where the set does not load: why none are loaded.
        s.bases = None;
        let p = problems(&s);
        assert_eq!(p.len(), 1, "{p:#?}");
        assert!(
            p[0].starts_with("No signature bases are loaded")
                && p[0].contains(&format!("The set on disk does not load: {e}.")),
            "{}",
            p[0]
        );
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["bases_on_disk_error"], e);
    }

    #[test]
    fn a_rollback_is_shown_but_not_a_problem() {
        // walkC: `bases rollback` is the administrator's own act; status
        // listed it among the problems as if it had failed.
        let mut s = healthy();
        if let Some(b) = s.bases.as_mut() {
            b.last_update = "rolled_back".into();
        }
        assert!(problems(&s).is_empty(), "{:#?}", problems(&s));
        assert!(render(&s, 2_000).contains("last update: rolled back"));
        if let Some(b) = s.bases.as_mut() {
            b.last_update = "error".into();
        }
        assert_eq!(problems(&s).len(), 1);
    }

    #[test]
    fn a_failed_update_says_what_it_failed_on_and_where_to_look() {
        // walkL 16: "(see the log, target admin)": tracing's word, and
        // not what the error was.
        let mut s = healthy();
        let why = "Update from /srv/b refused: error[E001]: syntax error at /srv/b/r.yar:3:5; the bases in use stay.";
        if let Some(b) = s.bases.as_mut() {
            b.last_update = "error".into();
            b.last_update_message = Some(why.into());
        }
        let p = problems(&s);
        assert_eq!(
            p,
            vec![format!(
                "The last update of the bases ended with error: {} (the log, category admin, has each attempt); this clears at the next update that succeeds.",
                why.trim_end_matches('.')
            )]
        );
        assert!(!p[0].contains("target"));
    }

    #[test]
    fn an_obsolete_built_in_set_asks_for_a_real_one() {
        let mut s = healthy();
        let builtin = crate::check::bases::builtin_version().unwrap();
        if let Some(b) = s.bases.as_mut() {
            b.version = builtin.clone();
            b.records = 5;
            b.builtin = crate::check::bases::is_builtin(&b.version);
            b.obsolete = true;
        }
        let p = problems(&s);
        assert_eq!(p.len(), 1, "{p:#?}");
        assert!(
            p[0].starts_with(&format!(
                "The signature bases in use are the built-in default set {builtin} (5 records"
            )) && p[0].contains("install a real set (mailward bases update --from DIR"),
            "{}",
            p[0]
        );
        assert!(render(&s, 2_000).contains(&format!(
            "bases:    {builtin} (built-in default set), 5 records"
        )));
        // Any other set is told to update.
        assert!(!crate::check::bases::is_builtin("2026.12.01.3"));
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
    }

    #[test]
    fn a_daemon_that_does_not_answer_is_still_a_json_object_with_a_problem() {
        // walkF #16: `status --json` printed nothing then.
        use crate::ops::admin::AdminError;
        let down = AdminError::Unreachable {
            path: "/run/mailward/admin.sock".into(),
            hint: String::new(),
            source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        };
        let v = unanswered(&down);
        assert_eq!(v["running"], false);
        let problems = v["problems"].as_array().unwrap();
        assert_eq!(problems.len(), 1);
        assert!(problems[0]
            .as_str()
            .unwrap()
            .starts_with("cannot reach the daemon at /run/mailward/admin.sock: "));
        assert_ne!(v["problems"], serde_json::json!([]));
        let hung = AdminError::NoAnswer {
            path: "/run/mailward/admin.sock".into(),
            after: std::time::Duration::from_secs(10),
        };
        assert_eq!(unanswered(&hung)["running"], false);
        assert_eq!(hung.exit_code(), 69);
    }

    #[test]
    fn mail_that_is_not_leaving_is_a_problem_with_its_domain_and_error() {
        // walkF #8: with the next hop down, status listed no problem.
        use crate::envelope::{Envelope, RcptState};
        let now = 100_000;
        let msg = |age: i64, attempts: u32, to: &str, error: Option<&str>, held: bool| {
            let mut e = Envelope::new(
                crate::envelope::QueueId("1A2443B7BB7C605B".into()),
                std::net::Ipv4Addr::LOCALHOST.into(),
                "client.test".into(),
                "me@sender.test".into(),
            );
            e.rcpts.push(crate::envelope::Recipient::new(to.into()));
            e.received_at = now - age;
            e.attempts = attempts;
            e.held = held;
            for r in &mut e.rcpts {
                r.state = RcptState::Pending {
                    last_error: error.map(str::to_string),
                };
            }
            std::sync::Arc::new(e)
        };
        let refused = "4.4.1 cannot connect to 127.0.0.1:2526: Connection refused (os error 111)";
        let queue = [
            // New, not tried yet: not deferred.
            msg(10, 0, "a@example.com", None, false),
            // Tried, but young (greylisting): deferred, not a problem.
            msg(
                300,
                1,
                "b@grey.example",
                Some("451 4.7.1 greylisted"),
                false,
            ),
            // Held: the administrator's.
            msg(7200, 3, "c@example.com", Some(refused), true),
            // Stuck at one domain.
            msg(3 * 3600, 5, "d@example.com", Some(refused), false),
            msg(2 * 3600, 4, "e@example.com", Some(refused), false),
        ];
        let d = deferred_of(&queue, now);
        assert_eq!((d.messages, d.oldest, d.stuck), (3, 3 * 3600, 2), "{d:?}");
        assert_eq!(d.domain.as_deref(), Some("example.com"));
        assert_eq!(d.domain_waiting, 2);
        assert_eq!(d.last_error.as_deref(), Some(refused));
        let mut s = healthy();
        s.deferred = d;
        let p = problems(&s);
        assert_eq!(p.len(), 1, "{p:#?}");
        assert!(
            p[0].starts_with(&format!(
                "2 message(s) tried and still waiting for delivery after more than 30 min, the oldest for 3h 0m; most for example.com (2 recipient(s)), last error: {refused}: mail is not leaving. See `mailward queue summary`"
            )),
            "{}",
            p[0]
        );
        assert!(
            render(&s, now)
                .contains("queue:    3 message(s) (3 deferred, the oldest for 3h 0m), 12.0 KiB;"),
            "{}",
            render(&s, now)
        );
        // Only young deferrals: shown, not a problem.
        let d = deferred_of(&queue[..2], now);
        assert_eq!((d.messages, d.stuck), (1, 0));
        s.deferred = d;
        assert!(problems(&s).is_empty());
    }

    #[test]
    fn dropped_log_lines_name_their_cause_when_it_is_known() {
        // walkF #5: a log file the daemon could not create was blamed on
        // a destination "unreachable or too slow".
        let mut s = healthy();
        s.log.destination = "file:/var/log/mailward/mailward.log".into();
        s.log.lines_dropped = 6;
        let p = problems(&s);
        assert_eq!(p.len(), 1, "{p:#?}");
        // walkAA 3: a full queue (no error of its own) is a stalled disk
        // or mount, not a permission to fix.
        assert!(
            p[0].starts_with("6 log line(s) were dropped since the last statistics reset (file:/var/log/mailward/mailward.log: the writer could not keep up, the disk or mount under it is stalled or too slow): find what stalls the disk or mount"),
            "{}",
            p[0]
        );
        assert!(!p[0].contains("writable"), "{}", p[0]);
        s.log.last_error = Some(
            "cannot write /var/log/mailward/mailward.log as user mailward: Permission denied (os error 13)"
                .into(),
        );
        s.log.last_error_at = 1_000;
        let p = problems(&s);
        assert!(
            p[0].starts_with("6 log line(s) were dropped since the last statistics reset; the last failure, at 1970-01-01T00:16:40+00:00: cannot write /var/log/mailward/mailward.log as user mailward: Permission denied (os error 13). To stop it, make the file's directory writable"),
            "{}",
            p[0]
        );
        assert!(!p[0].contains("too slow"), "{}", p[0]);
    }

    /// A suspended destination is a problem at once (its mail is not
    /// even tried), and the queue line counts it.
    #[test]
    fn a_suspended_destination_is_a_problem_at_once() {
        let mut s = healthy();
        s.destinations_suspended = 2;
        s.suspended = vec![
            crate::delivery::suspend::SuspendedNow {
                destination: "[10.0.0.7]:25".into(),
                until: 1_000,
                failures: 3,
                last_error:
                    "4.4.1 cannot connect to 10.0.0.7:25: Connection refused (os error 111)".into(),
                probing: false,
                probe_due: false,
            },
            crate::delivery::suspend::SuspendedNow {
                destination: "example.net:25".into(),
                until: 2_000,
                failures: 4,
                last_error: "4.4.2 no greeting from mx.example.net[192.0.2.1]:25 within 300s"
                    .into(),
                probing: true,
                probe_due: false,
            },
        ];
        let p = problems(&s);
        assert_eq!(p.len(), 1, "{p:#?}");
        assert_eq!(
            p[0],
            "2 delivery destination(s) suspended after connection failures in a row: \
             [10.0.0.7]:25 (until 1970-01-01T00:16:40+00:00, 3 failure(s), last: 4.4.1 cannot connect to 10.0.0.7:25: Connection refused (os error 111)); \
             example.net:25 (a probe under way, 4 failure(s), last: 4.4.2 no greeting from mx.example.net[192.0.2.1]:25 within 300s). \
             Their mail waits without connecting until a probe gets through (after timeouts.min_backoff, doubled per failed probe); \
             `mailward queue summary` shows the waiting domains. Check that next hop (whether it takes connections, the route's address, its DNS); once it is back, `mailward queue flush` lifts the suspension."
        );
        // Ended with no attempt yet: not "until" a time gone by.
        s.suspended[0].probe_due = true;
        let p = problems(&s);
        assert!(
            p[0].contains("[10.0.0.7]:25 (ended 1970-01-01T00:16:40+00:00: its mail's next attempt probes it, 3 failure(s), last: 4.4.1"),
            "{}",
            p[0]
        );
        // More than five: five named, the rest counted.
        s.suspended = (0..7)
            .map(|n| crate::delivery::suspend::SuspendedNow {
                destination: format!("d{n}.test:25"),
                until: 1_000 + n,
                failures: 3,
                last_error: "4.4.1 refused".into(),
                probing: false,
                probe_due: false,
            })
            .collect();
        let p = problems(&s);
        assert!(
            p[0].starts_with("7 delivery destination(s) suspended")
                && p[0].contains("d4.test:25")
                && !p[0].contains("d5.test:25")
                && p[0].contains("and 2 more (`mailward status --json` lists them all)"),
            "{}",
            p[0]
        );
        // An older daemon's answer has only the count: the log names them.
        s.suspended.clear();
        let p = problems(&s);
        assert!(
            p[0].starts_with("2 delivery destination(s) suspended after connection failures in a row. The log's 'Destination suspended' lines")
                && p[0].contains("mailward queue summary"),
            "{}",
            p[0]
        );
        assert!(render(&s, s.started + 60)
            .contains("queue:    3 message(s) (2 destination(s) suspended), 12.0 KiB;"));
        // An older daemon's answer without the field reads as none.
        let mut json = serde_json::to_value(healthy()).unwrap();
        json.as_object_mut()
            .unwrap()
            .remove("destinations_suspended");
        let old: Status = serde_json::from_value(json).unwrap();
        assert_eq!(old.destinations_suspended, 0);
    }

    /// walkAS F5: a raised alert threshold is a problem with its value,
    /// its threshold and where to look.
    #[test]
    fn a_raised_alert_threshold_is_a_problem_with_value_and_threshold() {
        let mut s = healthy();
        s.alerts_raised = vec![
            RaisedAlert {
                name: "queue_messages".into(),
                value: 20_001,
                threshold: 10_000,
            },
            RaisedAlert {
                name: "spool_free_bytes".into(),
                value: 800,
                threshold: 1024,
            },
        ];
        let p = problems(&s);
        assert_eq!(p.len(), 2, "{p:#?}");
        assert!(
            p[0].starts_with("Alert threshold queue_messages raised: 20001 message(s), over snmp.alert_thresholds.queue_messages = 10000:")
                && p[0].contains("mailward queue summary"),
            "{}",
            p[0]
        );
        assert!(
            p[1].starts_with("Alert threshold spool_free_bytes raised: 800 MiB free for the spool, under snmp.alert_thresholds.spool_free_bytes = 1024:"),
            "{}",
            p[1]
        );
        for name in crate::config::SNMP_THRESHOLDS {
            let text = alert_problem(&RaisedAlert {
                name: (*name).into(),
                value: 1,
                threshold: 0,
            });
            assert!(
                !text.contains("'Alert threshold crossed' line"),
                "{name}: {text}"
            );
        }
        // An older daemon's answer without the field reads as none.
        let json = serde_json::to_value(healthy()).unwrap();
        assert!(json.get("alerts_raised").is_none());
        assert_eq!(
            serde_json::from_value::<Status>(json)
                .unwrap()
                .alerts_raised,
            []
        );
    }
}
