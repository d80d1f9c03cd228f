//! The live model: atomic cells for every catalogue entry, the scan-time
//! histogram, the top-N tables and the ring of recent raw records. Events
//! are applied under a shared lock and snapshots taken under the exclusive
//! one, so a snapshot never shows half of an event (for example a message
//! counted as received but not yet its verdict).

use crate::catalogue::{self, Category, Kind, StatId, TopId, CATALOGUE};
use crate::event::{ArchiveDirection, DeliveryResult, Direction, Event, NotifyTarget};
use crate::group::{GroupCounts, GroupTable};
use crate::raw::{RawLog, RawRecord};
use crate::snapshot::{HistogramSnapshot, Snapshot};
use crate::top::Top;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};

/// Upper bounds of the scan-time histogram, in seconds.
pub const SCAN_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];
/// Upper bounds of the spam-score histogram, in points. A bucket counts
/// the scores at or below its bound (`le`, as Prometheus defines it and
/// `histogram_quantile` assumes). A level marks a score *at* its threshold
/// (8.0 is spam at the standard level, and BAYES_95 alone scores exactly
/// 8.0), so a bound at a threshold would mix marked and unmarked mail; the
/// bounds sit a millionth under each level's thresholds (3, 4, 4.5, 5, 6,
/// 8, 12) instead. A score is a whole number of millionths
/// (`Evidence::score` rounds it so), so `le="7.999999"` holds exactly the
/// scores under 8 and `1 - bucket{le="7.999999"} / count` is the share the
/// standard level marks as spam (walkI finding 9, walkU finding 6).
pub const SPAM_SCORE_BUCKETS: &[f64] = &[
    0.0, 1.0, 2.0, 2.999999, 3.999999, 4.499999, 4.999999, 5.999999, 7.999999, 10.0, 11.999999,
    15.0, 20.0, 30.0,
];

/// The histograms of the catalogue: their bounds, and how many stored
/// units make one exposed unit (sums are kept as integers). Every bucket
/// counts the values at or below its bound (`le`).
const HISTOGRAMS: &[(StatId, &[f64], f64)] = &[
    (StatId::ScanDuration, SCAN_BUCKETS, 1e6),
    (StatId::SpamScore, SPAM_SCORE_BUCKETS, 1e3),
];

/// Raw records kept in memory for the SNMP table of recent records.
pub const RECENT_RAW: usize = 50;

/// Values sampled from the rest of the gateway when a snapshot is taken
/// (they are levels owned elsewhere, not counted here).
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    pub queue_messages: u64,
    /// Of those, held by an administrator.
    pub queue_held: u64,
    pub queue_bytes: u64,
    pub spool_free_bytes: u64,
    pub bases_records: u64,
    pub bases_released: i64,
    pub bases_loaded: i64,
    /// Released longer ago than `bases.obsolete_after` (false when none
    /// are loaded): sampled with the rest, so that SNMP and Prometheus say
    /// it the moment it becomes true, not at the next daily check.
    pub bases_obsolete: bool,
    pub agentx_connected: bool,
    /// The master accepted the subtree's registration (see
    /// `mailward_agentx_registered`).
    pub agentx_registered: bool,
    pub agentx_reconnects: u64,
    /// Requests from the AgentX master answered, and the subagent's errors.
    pub agentx_requests: u64,
    pub agentx_errors: u64,
    pub snmp_notifications_dropped: u64,
    pub spool_reclaimable_bytes: u64,
    pub stress_mode: bool,
    /// (entries, octets) in quarantine.
    pub quarantine: (u64, u64),
    /// (entries, octets) in the archive, incoming and outgoing.
    pub archive: [(u64, u64); 2],
    /// Messages the spam classifier has learnt: spam, ham.
    pub spam_learnt: [u64; 2],
    /// Log lines dropped since start (the logger keeps the count: it runs
    /// before and beside the model).
    pub log_lines_dropped: u64,
    /// Failed spool writes since start (the spool's writer keeps the
    /// count).
    pub spool_write_errors: u64,
    /// Failed reads of waiting messages since start (the spool keeps the
    /// count).
    pub spool_read_errors: u64,
    /// Segments found deleted with waiting mail, or missing at start,
    /// since start (the spool keeps them).
    pub spool_segments_lost: u64,
    /// Seconds the spool's current write has been stalled (0 under 5 s).
    pub spool_write_stalled: u64,
    /// Delivered mail the spool keeps because a damaged segment's note
    /// holds its reclamation back.
    pub spool_damaged_kept_bytes: u64,
    /// Failed rotations of the log file (the logger keeps the count; the
    /// raw records file's are the model's own).
    pub log_rotation_failures: u64,
    /// DNS list zones not asked now (no answer to their last look-ups).
    pub dns_lists_resting: u64,
    /// The DNS server did not answer its last probe.
    pub dns_server_silent: bool,
    /// Seconds since the oldest message tried and still waiting was
    /// received (0: none).
    pub queue_oldest_deferred: u64,
    /// The signature bases on disk did not load at the last try.
    pub bases_on_disk_broken: bool,
}

struct Histogram {
    id: StatId,
    bounds: &'static [f64],
    /// Stored units per exposed unit (1e6: microseconds for seconds).
    scale: f64,
    buckets: Vec<AtomicU64>,
    /// The sum, in stored units.
    sum: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn observe(&self, value: f64) {
        if let Some(i) = self.bounds.iter().position(|le| value <= *le) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        // Rounded, not cut: 1.001 points * 1e3 is 1000.9999999999999.
        self.sum
            .fetch_add((value.max(0.0) * self.scale).round() as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    fn zero(&self) {
        for b in &self.buckets {
            b.store(0, Relaxed);
        }
        self.sum.store(0, Relaxed);
        self.count.store(0, Relaxed);
    }

    fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0;
        let buckets = self
            .bounds
            .iter()
            .zip(&self.buckets)
            .map(|(le, n)| {
                cumulative += n.load(Relaxed);
                (*le, cumulative)
            })
            .collect();
        HistogramSnapshot {
            id: self.id,
            buckets,
            sum: self.sum.load(Relaxed) as f64 / self.scale,
            count: self.count.load(Relaxed),
        }
    }
}

pub struct Stats {
    /// Shared by events, exclusive for snapshots and resets.
    lock: RwLock<()>,
    cells: Vec<AtomicU64>,
    offsets: Arc<Vec<usize>>,
    histograms: Vec<Histogram>,
    tops: Vec<Mutex<Top>>,
    recent: Mutex<VecDeque<RawRecord>>,
    /// Counts per policy group ("" = default), in mwPolicyGroupTable's rows.
    groups: Mutex<GroupTable>,
    /// The configuration's life (since start).
    config: Mutex<crate::snapshot::ConfigState>,
    raw: Option<RawLog>,
    enabled: Vec<Category>,
    top_n: usize,
    start_time: i64,
    reset_time: AtomicI64,
    version: String,
    /// The counters kept outside the model (the subagent's, the logger's,
    /// the raw file's rotations) as they were at the last reset: a
    /// snapshot shows what they counted since, so that `stats reset`
    /// zeroes them like the model's own.
    /// In the order of [`Stats::outside_counters`].
    outside_at_reset: Mutex<[u64; OUTSIDE]>,
    /// Called after an update attempt of the bases is recorded: the daemon
    /// writes the statistics file then, so that a restart finds the last
    /// update there ([`Stats::restore_last_update`]).
    update_hook: Mutex<Option<UpdateHook>>,
}

/// See [`Stats::set_update_hook`].
pub type UpdateHook = Box<dyn Fn() + Send + Sync>;

/// How many counters are kept outside the model ([`Stats::outside_counters`]).
const OUTSIDE: usize = 10;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Stats {
    /// A model collecting the `enabled` categories, ranking `top_n` rows,
    /// writing raw records to `raw` (when given and "raw" is enabled).
    pub fn new(enabled: &[Category], top_n: usize, raw: Option<RawLog>, version: &str) -> Stats {
        let mut offsets = Vec::with_capacity(CATALOGUE.len());
        let mut total = 0;
        for s in CATALOGUE {
            offsets.push(total);
            total += s.width();
        }
        let started = now();
        let stats = Stats {
            lock: RwLock::new(()),
            cells: (0..total).map(|_| AtomicU64::new(0)).collect(),
            offsets: Arc::new(offsets),
            histograms: HISTOGRAMS
                .iter()
                .map(|(id, bounds, scale)| Histogram {
                    id: *id,
                    bounds,
                    scale: *scale,
                    buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
                    sum: AtomicU64::new(0),
                    count: AtomicU64::new(0),
                })
                .collect(),
            tops: catalogue::TOP_TABLES
                .iter()
                .map(|_| Mutex::new(Top::default()))
                .collect(),
            recent: Mutex::new(VecDeque::with_capacity(RECENT_RAW)),
            groups: Mutex::new(GroupTable::default()),
            config: Mutex::new(crate::snapshot::ConfigState {
                loaded_at: started,
                ..Default::default()
            }),
            raw: if enabled.contains(&Category::Raw) {
                raw
            } else {
                None
            },
            enabled: enabled.to_vec(),
            top_n,
            start_time: started,
            reset_time: AtomicI64::new(started),
            version: version.to_string(),
            outside_at_reset: Mutex::new([0; OUTSIDE]),
            update_hook: Mutex::new(None),
        };
        // No update attempted yet: the last result is "unknown".
        stats.store(
            StatId::UpdateLastResult,
            catalogue::UPDATE_RESULTS.len() - 1,
            1,
        );
        stats
    }

    pub fn is_enabled(&self, c: Category) -> bool {
        self.enabled.contains(&c)
    }

    fn cell(&self, id: StatId, label: usize) -> Option<&AtomicU64> {
        let s = catalogue::stat(id);
        let collected = catalogue::always_collected(id) || self.is_enabled(s.category);
        if !collected || label >= s.width() {
            return None;
        }
        self.cells.get(self.offsets[id as usize] + label)
    }

    /// Counts in the row of policy group `group`.
    fn count_group(&self, group: &str, f: impl FnOnce(&mut GroupCounts)) {
        if let Ok(mut g) = self.groups.lock() {
            g.count(group, f);
        }
    }

    fn add(&self, id: StatId, label: usize, n: u64) {
        if let Some(c) = self.cell(id, label) {
            c.fetch_add(n, Relaxed);
        }
    }

    /// `counts[i]` to label `i` of `id` (in the catalogue's label order).
    fn add_each(&self, id: StatId, counts: &[u64]) {
        for (label, n) in counts.iter().enumerate() {
            self.add(id, label, *n);
        }
    }

    /// One SPF/DKIM/DMARC result, by its RFC 8601 word.
    fn add_auth(&self, id: StatId, result: &str) {
        if let Some(i) = crate::catalogue::AUTH_RESULTS
            .iter()
            .position(|r| *r == result)
        {
            self.add(id, i, 1);
        }
    }

    fn observe(&self, id: StatId, value: f64) {
        if let Some(h) = self.histograms.iter().find(|h| h.id == id) {
            h.observe(value);
        }
    }

    fn store(&self, id: StatId, label: usize, v: u64) {
        if let Some(c) = self.cell(id, label) {
            c.store(v, Relaxed);
        }
    }

    fn sub(&self, id: StatId, label: usize) {
        if let Some(c) = self.cell(id, label) {
            let _ = c.fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(1)));
        }
    }

    fn top(&self, id: TopId, item: &str) {
        let t = catalogue::top_table(id);
        if !self.is_enabled(t.category) {
            return;
        }
        if let Some(m) = self.tops.get(id as usize) {
            if let Ok(mut top) = m.lock() {
                top.add(item, 1);
            }
        }
    }

    /// Applies one event.
    pub fn record(&self, event: &Event<'_>) {
        {
            let _shared = self.lock.read();
            self.apply(event);
        }
        self.after(std::slice::from_ref(event));
    }

    /// Calls the update hook when `events` hold an update attempt (after
    /// the lock is released: the hook may take a snapshot).
    fn after(&self, events: &[Event<'_>]) {
        if !events
            .iter()
            .any(|e| matches!(e, Event::UpdateAttempted { .. }))
        {
            return;
        }
        if let Ok(hook) = self.update_hook.lock() {
            if let Some(hook) = hook.as_ref() {
                hook();
            }
        }
    }

    /// Sets what is called after each update attempt is recorded.
    pub fn set_update_hook(&self, hook: UpdateHook) {
        if let Ok(mut h) = self.update_hook.lock() {
            *h = Some(hook);
        }
    }

    /// Puts back the last update of the bases of an earlier run (its
    /// `result`, an index of [`catalogue::UPDATE_RESULTS`], and its time),
    /// as the statistics file kept it: a restart must not say "never
    /// (unknown)" after an update, nor clear a failed one's alert. Not an
    /// update attempt (nothing is sent or logged); an attempt already
    /// recorded in this run is newer and stays. Returns whether it was
    /// put back.
    pub fn restore_last_update(&self, result: usize, at: i64) -> bool {
        if at <= 0 || result >= catalogue::UPDATE_RESULTS.len() {
            return false;
        }
        // Exclusive: no attempt is recorded between the look and the store.
        let _exclusive = self.lock.write();
        let recorded = self
            .cell(StatId::UpdateLastCheck, 0)
            .map_or(0, |c| c.load(Relaxed));
        if recorded != 0 {
            return false;
        }
        self.apply(&Event::UpdateAttempted { result, at });
        true
    }

    /// Applies events as one: a snapshot shows all of them or none. For
    /// what is one fact to a reader but two events here, such as a message
    /// accepted and its verdict (received must never run ahead of the
    /// verdict counters in a scrape).
    pub fn record_all(&self, events: &[Event<'_>]) {
        {
            let _shared = self.lock.read();
            for e in events {
                self.apply(e);
            }
        }
        self.after(events);
    }

    /// Applies one event; the caller holds the shared lock.
    fn apply(&self, event: &Event<'_>) {
        match event {
            Event::SessionOpened { direction } => {
                let d = (*direction == Direction::Out) as usize;
                self.add(StatId::SessionsOpened, d, 1);
                self.add(StatId::Sessions, d, 1);
            }
            Event::SessionClosed { direction } => {
                self.sub(StatId::Sessions, (*direction == Direction::Out) as usize)
            }
            Event::MilterSlotsFull => self.add(StatId::MilterSlotsFull, 0, 1),
            Event::DestinationSuspended { again } => {
                self.add(StatId::DestinationSuspensions, 0, 1);
                // Suspended again: already counted among those suspended now.
                if !again {
                    self.add(StatId::DestinationsSuspended, 0, 1);
                }
            }
            Event::DestinationResumed => self.sub(StatId::DestinationsSuspended, 0),
            Event::MilterConnectionOpened => {
                self.add(StatId::MilterConnectionsOpened, 0, 1);
                self.add(StatId::MilterConnections, 0, 1);
            }
            Event::MilterConnectionClosed { error } => {
                self.sub(StatId::MilterConnections, 0);
                if let Some(e) = error {
                    self.add(StatId::MilterConnectionErrors, *e as usize, 1);
                }
            }
            Event::MessageAccepted { size } => {
                self.add(StatId::MessagesReceived, 0, 1);
                self.add(StatId::ReceivedBytes, 0, *size);
            }
            Event::MessageRejected { reason } => {
                self.add(StatId::MessagesRejected, *reason as usize, 1)
            }
            Event::RecipientRejected { reason } => {
                self.add(StatId::RecipientsRejected, *reason as usize, 1)
            }
            Event::ScanFinished {
                av,
                spam,
                spam_score,
                viruses,
                filter_rules,
                spam_tests,
                sender,
                client,
                duration,
                groups,
                mode,
            } => {
                self.add(StatId::MessagesChecked, *mode as usize, 1);
                for o in groups.iter() {
                    self.count_group(o.group, |c| {
                        c.messages += 1;
                        c.infected += u64::from(o.infected);
                        c.spam += u64::from(o.spam);
                        c.refused += u64::from(o.refused);
                    });
                }
                self.add(StatId::AvResults, *av as usize, 1);
                if let Some(s) = spam {
                    self.add(StatId::SpamResults, *s as usize, 1);
                }
                if self.is_enabled(Category::Resources) {
                    self.observe(StatId::ScanDuration, duration.as_secs_f64());
                }
                if let (Some(score), true) = (spam_score, self.is_enabled(Category::Filters)) {
                    self.observe(StatId::SpamScore, *score);
                }
                if !viruses.is_empty() {
                    self.add(StatId::VirusesDetected, 0, viruses.len() as u64);
                    for v in viruses.iter() {
                        self.top(TopId::Viruses, v);
                    }
                    self.top(
                        TopId::InfectedSenders,
                        if sender.is_empty() { "<>" } else { sender },
                    );
                    self.top(TopId::InfectedClients, &client.to_string());
                }
                for rule in filter_rules.iter() {
                    self.add(StatId::FilterHits, 0, 1);
                    self.top(TopId::FilterRules, rule);
                }
                for test in spam_tests.iter() {
                    self.add(StatId::SpamTestHits, 0, 1);
                    self.top(TopId::SpamTests, test);
                }
            }
            Event::DeliveryAttempted {
                result,
                rcpts,
                bytes,
                domain,
            } => {
                self.add(StatId::Deliveries, *result as usize, *rcpts);
                self.add(StatId::DeliveredBytes, 0, *bytes);
                if *result == DeliveryResult::Deferred && *rcpts > 0 && !domain.is_empty() {
                    self.top(TopId::DeferredDomains, domain);
                }
            }
            Event::NotificationSent { to } => {
                let i = match to {
                    NotifyTarget::Sender => 0,
                    NotifyTarget::Recipients => 1,
                    NotifyTarget::Admin => 2,
                    NotifyTarget::Dsn => 3,
                };
                self.add(StatId::NotificationsSent, i, 1)
            }
            Event::MessageBlocked { group, first } => {
                if *first {
                    self.add(StatId::MessagesBlocked, 0, 1);
                }
                self.count_group(group, |c| c.blocked += 1);
            }
            Event::ForeignVerdictHeaders => self.add(StatId::ForeignVerdictHeaders, 0, 1),
            Event::MessageQuarantined { group } => {
                self.add(StatId::MessagesQuarantined, 0, 1);
                self.count_group(group, |c| c.quarantined += 1);
            }
            Event::MessageArchived { direction } => self.add(
                StatId::MessagesArchived,
                (*direction == ArchiveDirection::Outgoing) as usize,
                1,
            ),
            Event::SnmpNotification { index } => self.add(StatId::SnmpNotifications, *index, 1),
            Event::SessionTimedOut { phase, stress } => {
                self.add(StatId::SessionTimeouts, *phase as usize, 1);
                if *stress {
                    self.add(StatId::StressTimeouts, 0, 1);
                }
            }
            Event::ScanMemoryRefused => self.add(StatId::ScanMemoryRefused, 0, 1),
            Event::DnsblLookups {
                listed,
                not_listed,
                failed,
            } => self.add_each(StatId::DnsblLookups, &[*listed, *not_listed, *failed]),
            Event::SurblLookups {
                listed,
                not_listed,
                failed,
            } => self.add_each(StatId::SurblLookups, &[*listed, *not_listed, *failed]),
            Event::DeliveryDnsLookups {
                answered,
                not_found,
                failed,
            } => self.add_each(
                StatId::DeliveryDnsLookups,
                &[*answered, *not_found, *failed],
            ),
            Event::SpamClassifierUnavailable => self.add(StatId::SpamClassifierUnavailable, 0, 1),
            Event::SpfChecked { result } => self.add_auth(StatId::SpfResults, result),
            Event::OutboundTls { result } => {
                if let Some(i) = catalogue::OUTBOUND_TLS_RESULTS
                    .iter()
                    .position(|r| r == result)
                {
                    self.add(StatId::OutboundTls, i, 1);
                }
            }
            Event::InboundTls { result } => {
                if let Some(i) = catalogue::INBOUND_TLS_RESULTS
                    .iter()
                    .position(|r| r == result)
                {
                    self.add(StatId::InboundTls, i, 1);
                }
            }
            Event::StoreWriteFailed { store } => {
                if let Some(i) = catalogue::STORES.iter().position(|s| s == store) {
                    self.add(StatId::StoreWriteErrors, i, 1);
                }
            }
            Event::DkimChecked { result } => self.add_auth(StatId::DkimResults, result),
            Event::DmarcChecked { result } => self.add_auth(StatId::DmarcResults, result),
            Event::QuarantineReleased => self.add(StatId::QuarantineReleases, 0, 1),
            Event::ConfigLoaded {
                ok,
                reload,
                at,
                groups,
            } => {
                if *ok {
                    if let Ok(mut g) = self.groups.lock() {
                        g.configure(groups);
                    }
                }
                if let Ok(mut c) = self.config.lock() {
                    match (ok, reload) {
                        (true, true) => {
                            c.reloads += 1;
                            c.loaded_at = *at;
                            c.refused_at = 0;
                        }
                        (true, false) => c.loaded_at = *at,
                        (false, _) => {
                            c.reload_failures += 1;
                            c.refused_at = *at;
                        }
                    }
                }
            }
            Event::UpdateAttempted { result, at } => {
                self.store(StatId::UpdateLastCheck, 0, (*at).max(0) as u64);
                for i in 0..catalogue::UPDATE_RESULTS.len() {
                    self.store(StatId::UpdateLastResult, i, (i == *result) as u64);
                }
            }
        }
    }

    /// Closes the raw record file; the next record opens its path again
    /// (`mailward log reopen`, SIGHUP).
    pub fn reopen_raw(&self) {
        if let Some(raw) = &self.raw {
            raw.reopen();
        }
    }

    /// Rotations of the raw record file that failed so far, and the last
    /// one's error (0 without a raw record file).
    pub fn raw_rotation_failure(&self) -> (u64, Option<String>) {
        self.raw
            .as_ref()
            .map_or((0, None), |raw| raw.rotation_failure())
    }

    /// Writes one raw record (file and the ring of recent ones) and counts it.
    /// A write error is returned for the caller to log; mail goes on.
    pub fn record_raw(&self, record: RawRecord) -> Result<(), crate::raw::RawError> {
        if !self.is_enabled(Category::Raw) {
            return Ok(());
        }
        // The file is written outside the model's lock: a slow disk must
        // never hold up snapshots (scrapes, SNMP) or other events.
        let written = match &self.raw {
            Some(log) => log.append(&record),
            None => Ok(()),
        };
        let _shared = self.lock.read();
        // "Written": a record the file refused is counted as lost instead
        // (the caller logs why); the recent ones still show it.
        if written.is_ok() {
            self.add(StatId::RawRecords, 0, 1);
        } else {
            self.add(StatId::RawRecordsLost, 0, 1);
        }
        if let Ok(mut ring) = self.recent.lock() {
            if ring.len() == RECENT_RAW {
                ring.pop_front();
            }
            ring.push_back(record);
        }
        written
    }

    /// The counters kept outside the model, as `gauges` and the raw file
    /// give them now, by statistic and label.
    fn outside_counters(&self, gauges: &Gauges) -> [((StatId, usize), u64); OUTSIDE] {
        [
            ((StatId::AgentxReconnects, 0), gauges.agentx_reconnects),
            ((StatId::AgentxRequests, 0), gauges.agentx_requests),
            ((StatId::AgentxErrors, 0), gauges.agentx_errors),
            (
                (StatId::SnmpNotificationsDropped, 0),
                gauges.snmp_notifications_dropped,
            ),
            ((StatId::LogLinesDropped, 0), gauges.log_lines_dropped),
            ((StatId::SpoolWriteErrors, 0), gauges.spool_write_errors),
            ((StatId::SpoolReadErrors, 0), gauges.spool_read_errors),
            ((StatId::SpoolSegmentsLost, 0), gauges.spool_segments_lost),
            (
                (StatId::LogRotationFailures, 0),
                gauges.log_rotation_failures,
            ),
            (
                (StatId::LogRotationFailures, 1),
                self.raw_rotation_failure().0,
            ),
        ]
    }

    /// Zeroes the counters, histogram and top-N tables and moves the
    /// discontinuity time (levels such as open sessions are kept);
    /// `gauges` gives the counters kept outside the model as they are now,
    /// which count from there.
    pub fn reset(&self, gauges: &Gauges) {
        let outside = self.outside_counters(gauges);
        let _exclusive = self.lock.write();
        if let Ok(mut at) = self.outside_at_reset.lock() {
            *at = outside.map(|(_, now)| now);
        }
        for s in CATALOGUE.iter().filter(|s| s.kind != Kind::Gauge) {
            let base = self.offsets[s.id as usize];
            for i in 0..s.width() {
                if let Some(c) = self.cells.get(base + i) {
                    c.store(0, Relaxed);
                }
            }
        }
        for h in &self.histograms {
            h.zero();
        }
        for t in &self.tops {
            if let Ok(mut t) = t.lock() {
                t.clear();
            }
        }
        if let Ok(mut g) = self.groups.lock() {
            g.reset();
        }
        self.reset_time.store(now(), Relaxed);
    }

    /// An immutable copy of the whole model, with `gauges` and the process's
    /// own figures filled in.
    pub fn snapshot(&self, gauges: &Gauges) -> Snapshot {
        let proc = crate::process::sample();
        let _exclusive = self.lock.write();
        let mut cells: Vec<u64> = self.cells.iter().map(|c| c.load(Relaxed)).collect();
        let mut set = |id: StatId, label: usize, v: u64| {
            if let Some(c) = cells.get_mut(self.offsets[id as usize] + label) {
                *c = v;
            }
        };
        set(StatId::QueueMessages, 0, gauges.queue_messages);
        set(StatId::QueueHeldMessages, 0, gauges.queue_held);
        set(StatId::DnsListsResting, 0, gauges.dns_lists_resting);
        set(StatId::DnsServerSilent, 0, gauges.dns_server_silent as u64);
        set(StatId::QueueOldestDeferred, 0, gauges.queue_oldest_deferred);
        set(
            StatId::BasesOnDiskBroken,
            0,
            gauges.bases_on_disk_broken as u64,
        );
        set(StatId::QueueBytes, 0, gauges.queue_bytes);
        set(StatId::SpoolFreeBytes, 0, gauges.spool_free_bytes);
        set(
            StatId::SpoolReclaimableBytes,
            0,
            gauges.spool_reclaimable_bytes,
        );
        set(StatId::StressMode, 0, gauges.stress_mode as u64);
        set(StatId::SpoolWriteStalled, 0, gauges.spool_write_stalled);
        set(
            StatId::SpoolDamagedKeptBytes,
            0,
            gauges.spool_damaged_kept_bytes,
        );
        set(StatId::QuarantineMessages, 0, gauges.quarantine.0);
        set(StatId::QuarantineBytes, 0, gauges.quarantine.1);
        for (i, (n, b)) in gauges.archive.iter().enumerate() {
            set(StatId::ArchiveMessages, i, *n);
            set(StatId::ArchiveBytes, i, *b);
        }
        set(StatId::SpamLearnt, 0, gauges.spam_learnt[0]);
        set(StatId::SpamLearnt, 1, gauges.spam_learnt[1]);
        set(StatId::CpuSeconds, 0, proc.cpu_micros);
        set(StatId::ResidentMemory, 0, proc.rss_bytes);
        set(StatId::OpenFds, 0, proc.open_fds);
        set(StatId::MaxFds, 0, proc.max_fds);
        set(StatId::StartTime, 0, self.start_time.max(0) as u64);
        set(
            StatId::StatsReset,
            0,
            self.reset_time.load(Relaxed).max(0) as u64,
        );
        set(StatId::BasesRecords, 0, gauges.bases_records);
        set(
            StatId::BasesReleased,
            0,
            gauges.bases_released.max(0) as u64,
        );
        set(StatId::BasesLoaded, 0, gauges.bases_loaded.max(0) as u64);
        set(StatId::BasesObsolete, 0, gauges.bases_obsolete as u64);
        set(StatId::AgentxConnected, 0, gauges.agentx_connected as u64);
        set(StatId::AgentxRegistered, 0, gauges.agentx_registered as u64);
        let at_reset = self.outside_at_reset.lock().map_or([0; OUTSIDE], |a| *a);
        for (((id, label), now), then) in self.outside_counters(gauges).into_iter().zip(at_reset) {
            set(id, label, now.saturating_sub(then));
        }
        let tops = self
            .tops
            .iter()
            .map(|t| t.lock().map(|t| t.ranked(self.top_n)).unwrap_or_default())
            .collect();
        let recent = self
            .recent
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default();
        let groups = self
            .groups
            .lock()
            .map(|g| g.rows().to_vec())
            .unwrap_or_default();
        Snapshot {
            config: self.config.lock().map(|c| *c).unwrap_or_default(),
            groups,
            taken_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
            start_time: self.start_time,
            reset_time: self.reset_time.load(Relaxed),
            version: self.version.clone(),
            enabled: self.enabled.clone(),
            cells,
            offsets: self.offsets.clone(),
            histograms: self.histograms.iter().map(Histogram::snapshot).collect(),
            tops,
            recent,
        }
    }
}
