//! The state every part of a running gateway shares: the current
//! configuration (swapped whole on reload; a session keeps the one it started
//! with), the TLS acceptor and resolver built from it, the spool, the queue,
//! session counts for the connection limits, and the shutdown signal.

use crate::config::Config;
use crate::delivery::queue::Queue;
use crate::dns::Dns;
use crate::spool::Spool;
use crate::standing::Standing;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// What a configuration needs built before it can serve.
pub struct Built {
    pub tls: Option<TlsAcceptor>,
    /// The validity of the certificate `tls` serves.
    pub tls_validity: Option<crate::smtp::tls::CertValidity>,
    pub dns: Arc<Dns>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("TLS: {0}")]
    Tls(#[from] crate::smtp::tls::TlsError),
    #[error("DNS: {0}")]
    Dns(#[from] crate::dns::DnsError),
}

/// Builds what `config` needs; fails without touching the running state.
/// On a reload, `running` is the resolver in use: what it learnt of the
/// DNS server and the list zones is kept when the new one asks the same
/// servers ([`Dns::keep_health_of`]).
pub fn build(config: &Config, running: Option<&Dns>) -> Result<Built, BuildError> {
    let (tls, tls_validity) = match (&config.network.tls_certificate, &config.network.tls_key) {
        (Some(cert), Some(key)) => {
            let loaded = crate::smtp::tls::acceptor(cert, key)?;
            (Some(loaded.acceptor), loaded.validity)
        }
        _ => (None, None),
    };
    let mut dns = Dns::new(config.access.dns_resolver, config.timeouts.dns.get())?;
    if let Some(old) = running {
        if dns.keep_health_of(old) {
            tracing::debug!(target: "config", "Same DNS servers: what is known of their health is kept.");
        }
    }
    Ok(Built {
        tls,
        tls_validity,
        dns: Arc::new(dns),
    })
}

/// Logs what is wrong with the STARTTLS certificate now (at the start and
/// at each reload), as `mailward status` lists it.
fn warn_of_certificate(validity: Option<&crate::smtp::tls::CertValidity>) {
    if let Some(mut problem) = validity.and_then(|v| v.problem(chrono::Utc::now().timestamp())) {
        if let Some(first) = problem.get_mut(..1) {
            first.make_ascii_uppercase();
        }
        tracing::warn!(target: "config", "{problem}.");
    }
}

/// Sends a notification on (the SNMP side's trap sender).
type Notifier = Box<dyn Fn(&crate::events::Notification) + Send + Sync>;

pub struct Gateway {
    config: RwLock<Arc<Config>>,
    tls: RwLock<Option<TlsAcceptor>>,
    tls_validity: RwLock<Option<crate::smtp::tls::CertValidity>>,
    dns: RwLock<Arc<Dns>>,
    /// Whether the last DNS look-ups were answered, for `mailward status`.
    pub dns_recent: crate::dns::RecentLookups,
    /// Messages received and found infected before the `stats reset`s so
    /// far: the alert windows (mwAlertThreshold) add them back, so that
    /// zeroing the statistics does not clear an outbreak alert (walkM).
    pub counted_before_resets: std::sync::Mutex<(u64, u64)>,
    pub spool: Spool,
    pub queue: Arc<Queue>,
    /// Quarantine and archive.
    pub stores: Arc<crate::store::Stores>,
    /// The subagent's health, once it runs.
    pub subagent_health:
        std::sync::OnceLock<Box<dyn Fn() -> mailward_agentx::Health + Send + Sync>>,
    /// The one statistics model.
    pub stats: Arc<mailward_metrics::Stats>,
    /// Open inbound sessions, for `limits.incoming_sessions`.
    sessions: SessionCount,
    /// Whether the gateway is under stress now; sessions waiting for a
    /// client watch it, so that idle ones get the stress deadline as soon
    /// as the load rises, not after their normal timeout.
    stress: watch::Sender<bool>,
    /// Open inbound sessions per client address (per network for IPv6:
    /// [`client_network`]).
    per_ip: Mutex<HashMap<IpAddr, u32>>,
    /// What the last successful reload could not change (keys that take
    /// effect only at restart), as sentences; `mailward status` shows them
    /// until a restart or a reload of a file that no longer changes them.
    restart_pending: Mutex<Vec<String>>,
    /// Becomes true when the gateway stops.
    pub shutdown: watch::Receiver<bool>,
    /// The scan engine: compiled signature bases and scan workers.
    pub scanner: Arc<crate::check::Engine>,
    /// Messages whose checks go on after the reply, bounded by
    /// `limits.scan_memory` ([`crate::budget`]).
    pub backlog: Arc<crate::budget::Budget>,
    /// Delivery destinations suspended after connection failures in a
    /// row: the delivery pool decides with them, `mailward status` lists
    /// them.
    pub suspensions: Arc<crate::delivery::suspend::Suspensions>,
    /// Spooled messages whose checks are under way (in the session or
    /// after its reply, or at start for those a stop left): a stop leaves
    /// them unchecked in the spool and says how many
    /// ([`crate::policy::execute::Checking`]).
    pub checks_in_progress: std::sync::atomic::AtomicU64,
    /// Where notifications go (the SNMP side registers itself at start;
    /// until then, and without it, they are only logged).
    notifier: std::sync::OnceLock<Notifier>,
    /// Why the set in the bases directory does not load, from the last
    /// attempt to load it (start, SIGHUP, update, rollback); None once one
    /// succeeds. The rules in use may be an older set that still works,
    /// but this is what the next start would meet: `mailward status`
    /// keeps saying so until the set is fixed or rolled back.
    bases_on_disk: Mutex<Option<String>>,
    /// One change of the bases directory at a time (`bases update`,
    /// `bases rollback`, and the reload of SIGHUP, which must not read the
    /// directory between the two renames of an install).
    bases_change: tokio::sync::Mutex<()>,
    /// How many times another set of bases came into use since start: the
    /// obsolete check follows each one (walkBE 1: sampled every 10 s, an
    /// update and a rollback within one look left the set "unchanged").
    bases_changes: std::sync::atomic::AtomicU64,
    /// Why the SNMP alarms raised now cannot be kept in
    /// `DATA_DIR/alarms.json` (None: they are), for `mailward status`.
    alarms_unkept: Mutex<Option<String>>,
    /// What the last update or rollback said (since start), so that
    /// `mailward status` can say what a failed one failed on.
    last_update_message: Mutex<Option<String>>,
    /// Why the last reload was refused, until one succeeds (walkAM 13:
    /// the status problem said it was refused, not why).
    reload_refusal: Mutex<Option<String>>,
    /// The alert thresholds raised now, as the watcher that raises and
    /// clears them (and sends the traps) last saw them: `mailward status`
    /// reads them here rather than measuring again (walkAS F5).
    alerts_raised: Mutex<Vec<crate::ops::status::RaisedAlert>>,
}

impl Gateway {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: Config,
        built: Built,
        spool: Spool,
        queue: Arc<Queue>,
        stores: Arc<crate::store::Stores>,
        stats: Arc<mailward_metrics::Stats>,
        scanner: Arc<crate::check::Engine>,
        shutdown: watch::Receiver<bool>,
    ) -> Gateway {
        spool.set_free_floor(config.limits.min_queue_free_space.0);
        stores.count_into(&stats);
        Gateway {
            config: RwLock::new(Arc::new(config)),
            tls: RwLock::new(built.tls),
            tls_validity: RwLock::new(built.tls_validity),
            dns: RwLock::new(built.dns),
            dns_recent: crate::dns::RecentLookups::default(),
            counted_before_resets: std::sync::Mutex::new((0, 0)),
            spool,
            queue,
            stores,
            stats,
            subagent_health: std::sync::OnceLock::new(),
            sessions: SessionCount::default(),
            stress: watch::Sender::new(false),
            per_ip: Mutex::new(HashMap::new()),
            restart_pending: Mutex::new(Vec::new()),
            shutdown,
            scanner,
            backlog: Arc::default(),
            suspensions: Arc::default(),
            checks_in_progress: Default::default(),
            notifier: std::sync::OnceLock::new(),
            bases_on_disk: Mutex::new(None),
            bases_change: tokio::sync::Mutex::new(()),
            bases_changes: Default::default(),
            alarms_unkept: Mutex::new(None),
            last_update_message: Mutex::new(None),
            reload_refusal: Mutex::new(None),
            alerts_raised: Mutex::new(Vec::new()),
        }
    }

    /// Publishes the alert thresholds raised now (the watcher, each pass).
    pub fn set_alerts_raised(&self, raised: Vec<crate::ops::status::RaisedAlert>) {
        match self.alerts_raised.lock() {
            Ok(mut r) => *r = raised,
            Err(poisoned) => *poisoned.into_inner() = raised,
        }
    }

    /// The alert thresholds raised now.
    pub fn alerts_raised(&self) -> Vec<crate::ops::status::RaisedAlert> {
        match self.alerts_raised.lock() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Records what the reload just made could not change.
    pub fn set_restart_pending(&self, kept: Vec<String>) {
        match self.restart_pending.lock() {
            Ok(mut k) => *k = kept,
            Err(poisoned) => *poisoned.into_inner() = kept,
        }
    }

    /// The keys changed on disk that wait for a restart.
    pub fn restart_pending(&self) -> Vec<String> {
        match self.restart_pending.lock() {
            Ok(k) => k.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn config(&self) -> Arc<Config> {
        match self.config.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The validity of the STARTTLS certificate in use.
    pub fn tls_validity(&self) -> Option<crate::smtp::tls::CertValidity> {
        self.tls_validity.read().map_or(None, |v| v.clone())
    }

    /// Says at the start what is wrong with the STARTTLS certificate.
    pub fn warn_of_certificate(&self) {
        warn_of_certificate(self.tls_validity().as_ref());
    }

    pub fn tls(&self) -> Option<TlsAcceptor> {
        match self.tls.read() {
            Ok(t) => t.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn dns(&self) -> Arc<Dns> {
        match self.dns.read() {
            Ok(d) => d.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The `[spam] dnsbl` zones that list client `ip`, counted: scored by
    /// the spam check, not refused (one listing is a hint). Asked for the
    /// client of an SMTP session, of XFORWARD and of a milter connection,
    /// when it comes from outside.
    pub async fn scoring_dnsbl(
        &self,
        cfg: &Config,
        ip: IpAddr,
        standing: &Standing,
    ) -> Vec<String> {
        if cfg.spam.dnsbl.is_empty() || !standing.is_outside() {
            return Vec::new();
        }
        let zones = cfg.spam.dnsbl.iter().map(|z| z.zone.as_str());
        let (listed, tally) = self.dns().dnsbl_all(ip, zones).await;
        self.count_lookups(&tally.event(), tally.answered(), tally.failed);
        listed
    }

    /// SPF for `from` (the HELO name for `<>`) sent by client `ip`, counted
    /// by result; None when SPF is off or the client is one of ours (SPF
    /// says nothing about mail the site itself sends out). The same for
    /// SMTP and milter clients.
    pub async fn spf(
        &self,
        cfg: &Config,
        ip: IpAddr,
        standing: &Standing,
        helo: &str,
        from: &str,
    ) -> Option<crate::auth::Spf> {
        if cfg.spam.spf == crate::config::SpfMode::Off || !standing.is_outside() {
            return None;
        }
        let dns = self.dns();
        let s = if dns.server_answers() {
            crate::auth::spf(
                dns.authenticator(),
                ip,
                helo,
                &cfg.server.hostname,
                from,
                dns.timeout(),
                // Only a refusal quotes the explanation.
                cfg.spam.spf == crate::config::SpfMode::Reject,
            )
            .await
            .0
        } else {
            // The server did not answer its last probe: temperror at once
            // rather than after timeouts.dns.
            crate::auth::spf_unanswered(helo, from)
        };
        let failed = u64::from(s.result == crate::auth::Outcome::TempError);
        if failed > 0 {
            dns.doubt_server();
        }
        self.count_lookups(
            &mailward_metrics::Event::SpfChecked {
                result: s.result.as_str(),
            },
            1 - failed,
            failed,
        );
        tracing::debug!(target: "smtp", client = %ip, domain = %s.domain, result = %s.result, "SPF checked.");
        Some(s)
    }

    /// Counts DNS look-ups: `event` in the statistics, and `answered` and
    /// `failed` in the recent window that `mailward status` reads.
    pub fn count_lookups(&self, event: &mailward_metrics::Event<'_>, answered: u64, failed: u64) {
        self.stats.record(event);
        self.dns_recent.note(answered, failed);
    }

    /// Swaps in a new configuration that has been validated and built.
    pub fn install(&self, config: Config, built: Built) {
        if let Ok(mut t) = self.tls.write() {
            *t = built.tls;
        }
        warn_of_certificate(built.tls_validity.as_ref());
        if let Ok(mut v) = self.tls_validity.write() {
            *v = built.tls_validity;
        }
        if let Ok(mut d) = self.dns.write() {
            *d = built.dns;
        }
        self.spool
            .set_free_floor(config.limits.min_queue_free_space.0);
        if let Ok(mut c) = self.config.write() {
            *c = Arc::new(config);
        }
    }

    /// A snapshot of the statistics, with the levels sampled now.
    pub fn snapshot(&self) -> mailward_metrics::Snapshot {
        self.stats.snapshot(&self.gauges())
    }

    /// `mailward stats reset`: the model's counters, and those kept
    /// outside it (the subagent's, the logger's) count from now.
    pub fn reset_stats(&self) -> mailward_metrics::Snapshot {
        // Under the lock the alert watcher reads with its snapshot, so that
        // it never sees a count both carried and still in the model.
        let mut carried = self.counted_before_resets.lock().ok();
        let before = self.snapshot();
        if let Some(c) = carried.as_deref_mut() {
            c.0 += before.value(mailward_metrics::StatId::MessagesReceived, 0);
            c.1 += before.value(mailward_metrics::StatId::AvResults, 1);
        }
        self.stats.reset(&self.gauges());
        before
    }

    /// A snapshot with the counts of [`Gateway::counted_before_resets`],
    /// taken together.
    pub fn snapshot_with_carried(&self) -> (mailward_metrics::Snapshot, (u64, u64)) {
        let carried = self.counted_before_resets.lock().ok();
        let snap = self.snapshot();
        (snap, carried.as_deref().copied().unwrap_or((0, 0)))
    }

    /// Seconds since the oldest message tried at least once, with a
    /// recipient still waiting and not held, was received: what `mailward
    /// status` calls mail not leaving past 30 minutes, for Prometheus and
    /// SNMP (walkAM 10).
    fn oldest_deferred(&self) -> u64 {
        let now = chrono::Utc::now().timestamp();
        self.queue
            .list()
            .iter()
            .filter(|e| {
                !e.held
                    && e.attempts > 0
                    && e.rcpts
                        .iter()
                        .any(|r| matches!(r.state, crate::envelope::RcptState::Pending { .. }))
            })
            .map(|e| (now - e.received_at).max(0) as u64)
            .max()
            .unwrap_or(0)
    }

    /// The levels, and the counters kept outside the model, as they are now.
    fn gauges(&self) -> mailward_metrics::Gauges {
        let (queue_messages, queue_bytes) = self.queue.size();
        let bases = self.bases();
        let dns = self.dns();
        let subagent = self.subagent_health.get().map(|h| h());
        mailward_metrics::Gauges {
            queue_messages: queue_messages as u64,
            queue_held: self.queue.held() as u64,
            dns_lists_resting: dns.resting_count() as u64,
            dns_server_silent: !dns.server_answers(),
            queue_oldest_deferred: self.oldest_deferred(),
            bases_on_disk_broken: self.bases_on_disk.lock().is_ok_and(|e| e.is_some()),
            queue_bytes,
            spool_free_bytes: self.spool.free_space().unwrap_or(0),
            bases_records: bases.as_ref().map_or(0, |b| b.records),
            bases_released: bases.as_ref().map_or(0, |b| b.released),
            bases_loaded: bases.as_ref().map_or(0, |b| b.loaded_at),
            bases_obsolete: crate::check::bases::is_obsolete(
                bases.as_ref(),
                self.config().bases.obsolete_after.get(),
                chrono::Utc::now().timestamp(),
            ),
            agentx_connected: subagent.as_ref().is_some_and(|h| h.connected),
            agentx_registered: subagent.as_ref().is_some_and(|h| h.registered > 0),
            agentx_reconnects: subagent.as_ref().map_or(0, |h| h.reconnects),
            agentx_requests: subagent.as_ref().map_or(0, |h| h.requests),
            agentx_errors: subagent.as_ref().map_or(0, |h| h.errors),
            snmp_notifications_dropped: subagent.as_ref().map_or(0, |h| h.notifications_dropped),
            spool_reclaimable_bytes: self.spool.reclaimable(),
            spool_damaged_kept_bytes: self.spool.damaged_kept().map_or(0, |d| d.kept_bytes),
            stress_mode: self.under_stress(&self.config()),
            quarantine: self.stores.quarantine.totals(),
            archive: [
                self.stores
                    .archive(crate::store::Direction::Incoming)
                    .totals(),
                self.stores
                    .archive(crate::store::Direction::Outgoing)
                    .totals(),
            ],
            spam_learnt: {
                let k = self.scanner.spam.loaded();
                [k.classifier.spam_messages(), k.classifier.ham_messages()]
            },
            log_lines_dropped: crate::ops::logging::dropped(),
            spool_write_errors: self.spool.write_errors(),
            spool_read_errors: self.spool.read_errors(),
            spool_segments_lost: self.spool.lost_segments().len() as u64,
            spool_write_stalled: self.spool.write_stalled_for().unwrap_or(0),
            log_rotation_failures: crate::ops::logging::rotation_failures(),
        }
    }

    /// Sets where notifications go (once; the SNMP side at start).
    pub fn set_notifier(&self, f: Box<dyn Fn(&crate::events::Notification) + Send + Sync>) {
        let _ = self.notifier.set(f);
    }

    /// Raises a notification for operators (an SNMP notification when the
    /// subagent runs and `snmp.traps` enables it).
    pub fn notify(&self, n: crate::events::Notification) {
        if let Some(f) = self.notifier.get() {
            f(&n);
        }
    }

    /// Records an update attempt of the bases and reports it; after an
    /// update or a rollback, the new set is compiled and put in use.
    pub async fn update_attempted(
        &self,
        result: crate::check::bases::UpdateResult,
        message: String,
    ) -> (crate::check::bases::UpdateResult, String) {
        let mut result = result;
        let mut message = message;
        if matches!(
            result,
            crate::check::bases::UpdateResult::Updated
                | crate::check::bases::UpdateResult::RolledBack
        ) {
            match self.reload_bases().await {
                Ok(loaded) => {
                    if loaded.is_some() {
                        self.notify(crate::events::Notification::BasesReloaded);
                    } else {
                        self.note_bases_change();
                    }
                    // Said to the person who typed the command, too.
                    let mismatch = self.bases().and_then(|b| {
                        crate::check::bases::records_mismatch(&b, self.scanner.current().count)
                    });
                    if let Some(w) = mismatch {
                        message = format!("{message} Note: {w}.");
                    }
                }
                Err(e) => {
                    result = crate::check::bases::UpdateResult::Error;
                    message = format!(
                        "{message} But the new set cannot be used: {e}; the rules in use stay."
                    );
                }
            }
        }
        // Before the event: the statistics file written when it is
        // recorded keeps this message with its result.
        *self
            .last_update_message
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(message.clone());
        crate::events::UpdateAttempted {
            result,
            message: &message,
        }
        .emit(self);
        (result, message)
    }

    /// The bases in use (None: none loaded).
    pub fn bases(&self) -> Option<crate::check::bases::BasesInfo> {
        self.scanner.info()
    }

    /// Why the last reload was refused (None: none was, or one succeeded
    /// since).
    pub fn reload_refusal(&self) -> Option<String> {
        self.reload_refusal
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Records the outcome of a reload: `Some(why)` refused, None in force.
    pub fn set_reload_refusal(&self, why: Option<String>) {
        *self
            .reload_refusal
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = why;
    }

    /// What the last update or rollback said (None: none), since start or
    /// read back from the statistics file of the previous run.
    pub fn last_update_message(&self) -> Option<String> {
        self.last_update_message
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Puts back what the last update of the previous run said, unless an
    /// update since start said something newer.
    pub fn restore_last_update_message(&self, message: String) {
        self.last_update_message
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_or_insert(message);
    }

    /// Why the set in the bases directory does not load (None: it loads,
    /// or was not tried).
    pub fn bases_on_disk_error(&self) -> Option<String> {
        self.bases_on_disk
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Records how the last attempt to load the bases directory went (the
    /// start records its own; reloads record theirs).
    /// A set that loads after one that did not is said once, as its
    /// failure was (walkAM 5: the log and the NMS kept the fault open).
    pub fn set_bases_on_disk_error(&self, error: Option<String>) {
        let loads = error.is_none();
        let was = std::mem::replace(
            &mut *self
                .bases_on_disk
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            error,
        );
        if was.is_some() && loads {
            let dir = self.config().bases.av.display().to_string();
            tracing::info!(target: "app", dir = %dir, "The signature bases on disk load again.");
            self.notify(crate::events::Notification::ProductErrorCleared {
                message: format!("the signature bases in {dir} load again"),
            });
        }
    }

    /// Takes the right to change the bases directory; None while another
    /// update or rollback runs (it is refused, not queued: the person who
    /// typed it learns at once, and the one running decides what is in
    /// use).
    pub fn try_change_bases(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        self.bases_change.try_lock().ok()
    }

    /// Waits for the right to change (or reread) the bases directory.
    pub async fn change_bases(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.bases_change.lock().await
    }

    /// Compiles the bases directory and puts the rules in use (at start,
    /// on SIGHUP, after an update or rollback). Returns the new bases when
    /// their version changed. On error the rules in use stay, and the
    /// error is kept for `mailward status` until a load succeeds.
    pub async fn reload_bases(
        &self,
    ) -> Result<Option<crate::check::bases::BasesInfo>, crate::check::bases::BasesError> {
        let dir = self.config().bases.av.clone();
        let before = self.bases();
        let engine = self.scanner.clone();
        let loaded = tokio::task::spawn_blocking(move || engine.reload(&dir))
            .await
            .map_err(|e| crate::check::bases::BasesError::Compile {
                problem: format!("the compile task failed: {e}"),
            })
            .and_then(|r| r);
        self.set_bases_on_disk_error(loaded.as_ref().err().map(ToString::to_string));
        let info = loaded?;
        if let Some(w) = crate::check::bases::records_mismatch(&info, self.scanner.current().count)
        {
            tracing::warn!(target: "app", "The signature bases loaded, but {w}.");
        }
        let changed =
            before.is_none_or(|b| b.version != info.version || b.released != info.released);
        if changed {
            self.note_bases_change();
        }
        Ok(changed.then_some(info))
    }

    /// How many times another set of bases came into use since start.
    pub fn bases_changes(&self) -> u64 {
        self.bases_changes.load(Ordering::Relaxed)
    }

    /// Counts a set of bases coming into use, for the obsolete check that
    /// follows each: another set loaded, or an update or rollback that
    /// named the set in use already, whose answer promises that check too
    /// (walkBH F14, walkBI F3).
    pub fn note_bases_change(&self) {
        self.bases_changes.fetch_add(1, Ordering::Relaxed);
    }

    /// Why the SNMP alarms cannot be kept for the next start, if so.
    pub fn alarms_unkept(&self) -> Option<String> {
        self.alarms_unkept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Sets why the SNMP alarms cannot be kept (None: they are now).
    pub fn set_alarms_unkept(&self, why: Option<String>) {
        *self
            .alarms_unkept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = why;
    }

    /// Whether the gateway is under stress: more inbound sessions open than
    /// `limits.stress_percent` of `limits.incoming_sessions`. Sessions then
    /// get the shorter stress timeouts (Postfix's stress mode), so that idle
    /// or trickling clients give their slots back.
    pub fn under_stress(&self, cfg: &Config) -> bool {
        above_stress_mark(self.sessions.now(), &cfg.limits)
    }

    /// Follows [`Gateway::under_stress`] as sessions open and close.
    pub fn stress_watch(&self) -> watch::Receiver<bool> {
        self.stress.subscribe()
    }

    fn update_stress(&self) {
        let now = self.under_stress(&self.config());
        self.stress.send_if_modified(|s| {
            let changed = *s != now;
            *s = now;
            changed
        });
    }

    /// Takes a session slot for a client, or says which limit refuses it.
    pub fn open_session(self: &Arc<Self>, ip: IpAddr) -> Result<SessionSlot, &'static str> {
        let cfg = self.config();
        let total = self.sessions.enter();
        self.update_stress();
        let slot = SessionSlot {
            gateway: self.clone(),
            ip,
            counted_ip: false,
            released: AtomicBool::new(false),
        };
        if total > cfg.limits.incoming_sessions {
            return Err("421 4.7.0 Too many sessions, try again later");
        }
        let Ok(mut per_ip) = self.per_ip.lock() else {
            return Err("421 4.3.0 Internal error, try again later");
        };
        let mut slot = slot;
        // Counted by the network the slot remembers, so that a reload
        // that changes the prefix gives the slot back where it was taken.
        slot.ip = client_network(ip, cfg.limits.incoming_sessions_per_ipv6_prefix);
        let n = per_ip.entry(slot.ip).or_insert(0);
        *n += 1;
        let over = *n > cfg.limits.incoming_sessions_per_ip;
        // The guard must go before `slot` can drop: its Drop takes the lock.
        drop(per_ip);
        slot.counted_ip = true;
        if over {
            return Err("421 4.7.0 Too many sessions from your address, try again later");
        }
        Ok(slot)
    }
}

/// What `limits.incoming_sessions_per_ip` counts a client by: an IPv4
/// address itself (an IPv4-mapped IPv6 one as IPv4), an IPv6 address by
/// its first `ipv6_prefix` bits. One IPv6 site is given a /64 or more, and
/// a client that picks a new address from it for every connection would
/// otherwise never meet the limit.
pub fn client_network(ip: IpAddr, ipv6_prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u32::from(ipv6_prefix.min(128));
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & mask))
            }
        },
    }
}

/// Whether `open` inbound sessions are more than `limits.stress_percent`
/// of `limits.incoming_sessions` (0 %: never).
fn above_stress_mark(open: u32, limits: &crate::config::Limits) -> bool {
    let pct = u64::from(limits.stress_percent);
    pct > 0 && u64::from(open) * 100 > u64::from(limits.incoming_sessions) * pct
}

/// The open inbound sessions.
#[derive(Default)]
struct SessionCount(AtomicU32);

impl SessionCount {
    /// Counts a new session in; the count with it.
    fn enter(&self) -> u32 {
        self.0.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Counts a session out.
    fn leave(&self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }

    fn now(&self) -> u32 {
        self.0.load(Ordering::Acquire)
    }

    /// Takes one session off the count if the count is above the stress
    /// mark, in one step: of sessions asking at once, only as many as
    /// bring the count down to the mark get a yes.
    fn leave_if_stressed(&self, limits: &crate::config::Limits) -> bool {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                above_stress_mark(n, limits).then(|| n - 1)
            })
            .is_ok()
    }
}

/// A held session slot; dropping it frees the slot.
pub struct SessionSlot {
    gateway: Arc<Gateway>,
    /// What `per_ip` counts this client by ([`client_network`]).
    ip: IpAddr,
    counted_ip: bool,
    /// Given back early by [`SessionSlot::release_for_stress`].
    released: AtomicBool,
}

impl SessionSlot {
    /// Gives the slot back ahead of the session's end, for a session about
    /// to be cut by a stress deadline, but only while the load is still
    /// above the stress mark. Idle sessions whose stress deadlines pass at
    /// the same instant would otherwise each see the load above the mark
    /// (the count drops only when a cut session is gone) and all be cut;
    /// claiming the slot here stops the cuts exactly at the mark. False:
    /// the load is no longer above it, the session keeps its slot.
    pub fn release_for_stress(&self, cfg: &Config) -> bool {
        if self.released.load(Ordering::Acquire) {
            return true;
        }
        let claimed = self.gateway.sessions.leave_if_stressed(&cfg.limits);
        if claimed {
            self.released.store(true, Ordering::Release);
            self.gateway.update_stress();
        }
        claimed
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        if !self.released.load(Ordering::Acquire) {
            self.gateway.sessions.leave();
        }
        self.gateway.update_stress();
        if self.counted_ip {
            if let Ok(mut per_ip) = self.gateway.per_ip.lock() {
                if let Some(n) = per_ip.get_mut(&self.ip) {
                    *n -= 1;
                    if *n == 0 {
                        per_ip.remove(&self.ip);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(sessions: u32, percent: u32) -> crate::config::Limits {
        let mut cfg = match crate::config::load(None) {
            Ok(c) => c,
            Err(e) => panic!("the embedded default must load: {e}"),
        };
        cfg.limits.incoming_sessions = sessions;
        cfg.limits.stress_percent = percent;
        cfg.limits
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_network() {
        let ip = |s: &str| match s.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(e) => panic!("{s}: {e}"),
        };
        // IPv4 as it is, mapped IPv4 as IPv4, whatever the prefix.
        assert_eq!(client_network(ip("192.0.2.7"), 64), ip("192.0.2.7"));
        assert_eq!(client_network(ip("::ffff:192.0.2.7"), 64), ip("192.0.2.7"));
        // Two addresses of one /64 are one client at 64, two at 128.
        let a = ip("2001:db8:1:2:aaaa::1");
        let b = ip("2001:db8:1:2:bbbb:cccc:dddd:eeee");
        assert_eq!(client_network(a, 64), ip("2001:db8:1:2::"));
        assert_eq!(client_network(a, 64), client_network(b, 64));
        assert_ne!(client_network(a, 128), client_network(b, 128));
        assert_eq!(client_network(a, 128), a);
        // Prefixes not on a group boundary, and the edges.
        assert_eq!(
            client_network(ip("2001:db8:ffff::1"), 36),
            ip("2001:db8:f000::")
        );
        assert_eq!(client_network(ip("2001:db8::1"), 0), ip("::"));
        assert_eq!(client_network(ip("2001:db8::1"), 200), ip("2001:db8::1"));
    }

    #[test]
    fn the_stress_mark_is_a_share_of_the_session_limit() {
        let l = limits(10, 50);
        assert!(!above_stress_mark(5, &l));
        assert!(above_stress_mark(6, &l));
        assert!(!above_stress_mark(1000, &limits(10, 0)), "0 % turns it off");
    }

    #[test]
    fn sessions_cut_at_once_for_stress_stop_at_the_mark() {
        // 7 of 10 open, mark 5: whatever the interleaving, two and only two
        // of seven sessions whose stress deadlines pass together may leave.
        let l = limits(10, 50);
        for _ in 0..200 {
            let count = SessionCount(AtomicU32::new(7));
            let barrier = std::sync::Barrier::new(7);
            let left = std::thread::scope(|s| {
                let handles: Vec<_> = (0..7)
                    .map(|_| {
                        s.spawn(|| {
                            barrier.wait();
                            count.leave_if_stressed(&l)
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join())
                    .filter(|r| matches!(r, Ok(true)))
                    .count()
            });
            assert_eq!(left, 2);
            assert_eq!(count.now(), 5);
        }
    }
}
