//! The catalogue: every statistic of Mailward, declared once. Each entry has
//! a stable number (its OID arc under its category in MAILWARD-MIB's
//! `mwStatistics`), a name, help text, kind, unit, its Prometheus name and,
//! when labelled, the bounded set of label values. The Prometheus exposition,
//! the stats file, the SNMP view, the metrics reference (docs/metrics.md) and
//! the MIB consistency test are all generated from this table. Numbers are
//! never reused: a statistic that goes away leaves a gap.

/// A statistics category of `statistics.options` (DESIGN 6); its number is
/// its OID arc under `mwStatistics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Messages = 1,
    Resources = 2,
    Viruses = 3,
    Filters = 4,
    Raw = 5,
}

impl Category {
    pub const ALL: [Category; 5] = [
        Category::Messages,
        Category::Resources,
        Category::Viruses,
        Category::Filters,
        Category::Raw,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Messages => "messages",
            Category::Resources => "resources",
            Category::Viruses => "viruses",
            Category::Filters => "filters",
            Category::Raw => "raw",
        }
    }

    pub fn parse(s: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Monotonic until `stats reset` (SNMP Counter64).
    Counter,
    /// A current level (SNMP Gauge32, or a timestamp as DateAndTime).
    Gauge,
    /// A distribution (Prometheus histogram; SNMP shows count and sum).
    Histogram,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// How a stored integer becomes the exposed value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// A count of things.
    Count,
    /// Octets.
    Bytes,
    /// Stored in microseconds, exposed in seconds.
    Micros,
    /// Unix time in seconds.
    Timestamp,
    /// 0 or 1.
    Flag,
    /// Spam-score points (histogram sums stored in thousandths).
    Points,
    /// Whole seconds (an age), stored and exposed as they are.
    Seconds,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "count",
            Unit::Bytes => "bytes",
            Unit::Micros => "seconds",
            Unit::Timestamp => "unix seconds",
            Unit::Flag => "0/1",
            Unit::Points => "points",
            Unit::Seconds => "seconds",
        }
    }
}

/// One statistic.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Stat {
    pub id: StatId,
    pub category: Category,
    /// Stable OID arc within the category's table of scalars.
    pub arc: u32,
    /// The MIB object's name (also the stats file's key).
    pub name: &'static str,
    pub prom: &'static str,
    /// What it counts, in Prometheus terms (its HELP text and the metrics
    /// reference): 0/1 flags, series names.
    pub help: &'static str,
    /// The MIB object's DESCRIPTION when `help` does not read right in
    /// SNMP terms (a flag is a TruthValue, true(1)/false(2); another
    /// statistic is named by its MIB object); `None`: `help` serves both.
    #[serde(skip)]
    pub snmp_help: Option<&'static str>,
    pub kind: Kind,
    pub unit: Unit,
    /// The label and its bounded set of values (one series per value; in
    /// SNMP, one column of the category's by-label table).
    pub label: Option<(&'static str, &'static [&'static str])>,
}

impl Stat {
    /// The same statistic with its own text for SNMP (see `snmp_help`).
    const fn snmp(self, text: &'static str) -> Stat {
        Stat {
            snmp_help: Some(text),
            ..self
        }
    }

    /// The text the MIB and docs/snmp-objects.md give: in SNMP terms.
    pub fn mib_help(&self) -> &'static str {
        match self.snmp_help {
            Some(t) => t,
            None => self.help,
        }
    }

    /// Number of stored cells: one per label value, or one.
    pub fn width(&self) -> usize {
        self.label.map_or(1, |(_, v)| v.len())
    }
}

/// Every statistic, in catalogue order (the index of [`CATALOGUE`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum StatId {
    MessagesReceived,
    ReceivedBytes,
    MessagesRejected,
    AvResults,
    SpamResults,
    MessagesBlocked,
    MessagesQuarantined,
    MessagesArchived,
    Deliveries,
    DeliveredBytes,
    NotificationsSent,
    SessionsOpened,
    Sessions,
    QueueMessages,
    QueueBytes,
    SpoolFreeBytes,
    ScanDuration,
    CpuSeconds,
    ResidentMemory,
    OpenFds,
    StartTime,
    StatsReset,
    BasesRecords,
    BasesReleased,
    BasesLoaded,
    UpdateLastCheck,
    UpdateLastResult,
    AgentxConnected,
    AgentxReconnects,
    SnmpNotifications,
    SnmpNotificationsDropped,
    VirusesDetected,
    FilterHits,
    RawRecords,
    SessionTimeouts,
    StressTimeouts,
    StressMode,
    SpoolReclaimableBytes,
    ScanMemoryRefused,
    QuarantineMessages,
    QuarantineBytes,
    QuarantineReleases,
    ArchiveMessages,
    ArchiveBytes,
    SpamTestHits,
    SpamLearnt,
    DnsblLookups,
    SpfResults,
    DkimResults,
    DmarcResults,
    SurblLookups,
    SpamScore,
    SpamClassifierUnavailable,
    LogLinesDropped,
    OutboundTls,
    MessagesChecked,
    MilterConnectionsOpened,
    MilterConnections,
    MilterConnectionErrors,
    AgentxRegistered,
    LogRotationFailures,
    QueueHeldMessages,
    DeliveryDnsLookups,
    DnsListsResting,
    DnsServerSilent,
    ForeignVerdictHeaders,
    AgentxRequests,
    AgentxErrors,
    RecipientsRejected,
    BasesObsolete,
    SpoolWriteErrors,
    RawRecordsLost,
    MaxFds,
    MilterSlotsFull,
    SpoolDamagedKeptBytes,
    InboundTls,
    StoreWriteErrors,
    QueueOldestDeferred,
    BasesOnDiskBroken,
    DestinationSuspensions,
    DestinationsSuspended,
    SpoolReadErrors,
    SpoolSegmentsLost,
    SpoolWriteStalled,
}

pub const REJECT_REASONS: &[&str] = &[
    "relay", "access", "dnsbl", "size", "limit", "syntax", "policy", "tempfail",
];
/// What each reject reason counts, in the order of [`REJECT_REASONS`]
/// (docs/metrics.md shows it). One transaction is one MAIL and what
/// follows it up to the end of its DATA, RSET, a new HELO/EHLO or the end
/// of the session.
pub const REJECT_REASON_MEANINGS: &[&str] = &[
    "a recipient refused because the client may not relay to its domain (554 5.7.1 Relay access denied), or because it asks for sender-specified routing (`user%other@`, `other!user@`)",
    "refused by an access rule: `access.connect_rules` (the session), `access.helo_rules` (the session, at HELO/EHLO), `access.mail_from_rules` (the transaction), `access.rcpt_rules` (a recipient)",
    "the session refused at connect because a zone of `access.dnsbl` lists the client",
    "the message too big for `limits.max_message_size`: said by MAIL's SIZE= (the transaction) or found at DATA (the message), or a header section over 1 MiB or 10,000 fields (552 5.3.4)",
    "a limit of `[limits]`: sessions at connect (`incoming_sessions`, `incoming_sessions_per_ip`), messages or octets per session (at MAIL or DATA), recipients per message (452 4.5.3 for each recipient past `max_rcpts_per_message`), hops (a mail loop)",
    "bad syntax: a MAIL whose address or parameters are malformed (the transaction; 501, 553, 555), a RCPT likewise (a recipient), a message line over 998 octets, or a session closed after too many errors (421 4.7.0; unknown and out-of-sequence commands count only there) or for sending on behind DATA from outside `relay_networks` (554 5.5.0, improper pipelining)",
    "content policy (`reject`) at DATA, SPF `fail` with `[spam] spf = \"reject\"` at MAIL, a blacklisted sender or client refused at RCPT (a recipient)",
    "a temporary refusal: too little spool space (at MAIL), the spool not written, a check that failed or timed out (at DATA)",
];
pub const AV_STATUSES: &[&str] = &[
    "clean",
    "infected",
    "suspicious",
    "protected",
    "error",
    "filtered",
];
pub const SPAM_STATUSES: &[&str] = &["spam", "probable", "formal", "blacklisted", "clean"];
pub const DIRECTIONS_ARCHIVE: &[&str] = &["incoming", "outgoing"];
pub const SPAM_CLASSES: &[&str] = &["spam", "ham"];
/// Outbound connections by STARTTLS outcome: encrypted, plain (not tried
/// or not offered), fallback (tried under "may", went on in plain text),
/// failed (required by "encrypt"/"verify" and not had: deferred).
pub const OUTBOUND_TLS_RESULTS: &[&str] = &["tls", "plain", "fallback", "failed"];
/// Inbound sessions by STARTTLS outcome: encrypted (a handshake
/// completed), plain (none tried), failed (the client's handshake failed
/// or timed out).
pub const INBOUND_TLS_RESULTS: &[&str] = &["tls", "plain", "failed"];
/// The message stores whose writes can fail: the quarantine and the
/// archive (incoming and outgoing copies alike).
pub const STORES: &[&str] = &["quarantine", "archive"];
pub const DNSBL_RESULTS: &[&str] = &["listed", "not_listed", "failed"];
/// Delivery's DNS look-ups (MX, A/AAAA): answered with records, answered
/// that there is no such name or record, or no answer (timeout, server
/// failure).
pub const LOOKUP_RESULTS: &[&str] = &["answered", "not_found", "failed"];
/// SPF, DKIM and DMARC results (RFC 8601 words).
pub const AUTH_RESULTS: &[&str] = &[
    "pass",
    "fail",
    "softfail",
    "neutral",
    "none",
    "temperror",
    "permerror",
];
pub const DELIVERY_RESULTS: &[&str] = &["delivered", "deferred", "bounced"];
/// How messages reach the checks: smtp (Mailward is the relay), filter
/// (from an MTA that forwarded its client with XFORWARD: a Postfix content
/// filter or before-queue proxy), milter. In the order of `event::Mode`.
pub const MODES: &[&str] = &["smtp", "filter", "milter"];
/// Why a milter connection was closed on an error: malformed (not the
/// milter protocol, or a failed negotiation), idle (no command within
/// timeouts.command), io (the socket failed). In the order of
/// `event::MilterError`.
pub const MILTER_ERRORS: &[&str] = &["malformed", "idle", "io"];
/// Files Mailward rotates itself: the log and the raw records.
pub const ROTATED_FILES: &[&str] = &["log", "raw"];
pub const NOTIFY_TARGETS: &[&str] = &["sender", "recipients", "admin", "dsn"];
pub const SESSION_DIRECTIONS: &[&str] = &["in", "out"];
/// What an inbound session was doing when its deadline passed.
pub const TIMEOUT_PHASES: &[&str] = &["command", "data", "tls", "write"];
pub const UPDATE_RESULTS: &[&str] = &["updated", "not_needed", "error", "rolled_back", "unknown"];
/// The SNMP notifications of MAILWARD-MIB.
pub const SNMP_NOTIFICATIONS: &[&str] = &[
    "mwProductStart",
    "mwProductStop",
    "mwProductError",
    "mwConfigReloaded",
    "mwBasesReloaded",
    "mwUpdateStatus",
    "mwObsoleteBases",
    "mwAlertThreshold",
    "mwProductErrorCleared",
];

use Category::*;
use Kind::*;

// One argument per column of the catalogue table below, in its order.
#[allow(clippy::too_many_arguments)]
const fn def(
    id: StatId,
    category: Category,
    arc: u32,
    name: &'static str,
    prom: &'static str,
    kind: Kind,
    unit: Unit,
    label: Option<(&'static str, &'static [&'static str])>,
    help: &'static str,
) -> Stat {
    Stat {
        id,
        category,
        arc,
        name,
        prom,
        help,
        snmp_help: None,
        kind,
        unit,
        label,
    }
}

pub static CATALOGUE: &[Stat] = &[
    def(
        StatId::MessagesReceived,
        Messages,
        1,
        "mwMessagesReceived",
        "mailward_messages_received_total",
        Counter,
        Unit::Count,
        None,
        "Messages accepted with 250 (one per message, not per recipient).",
    ),
    def(
        StatId::ReceivedBytes,
        Messages,
        2,
        "mwReceivedOctets",
        "mailward_received_bytes_total",
        Counter,
        Unit::Bytes,
        None,
        "Octets of accepted messages.",
    ),
    def(
        StatId::MessagesRejected,
        Messages,
        3,
        "mwMessagesRejected",
        "mailward_messages_rejected_total",
        Counter,
        Unit::Count,
        Some(("reason", REJECT_REASONS)),
        "Transactions or sessions refused in the SMTP session, once each, by reason: a session refused at connect, at HELO/EHLO or closed for too many errors, a refused MAIL, a message refused at or after DATA, and a transaction whose recipients were refused and that ended without a message accepted (with its first refused recipient's reason). A message accepted with 250 counts none, whatever recipients were refused (mwRecipientsRejected counts those).",
    ),
    def(
        StatId::AvResults,
        Messages,
        4,
        "mwAvResults",
        "mailward_av_results_total",
        Counter,
        Unit::Count,
        Some(("status", AV_STATUSES)),
        "Anti-virus verdicts, one per scanned message.",
    ),
    def(
        StatId::SpamResults,
        Messages,
        5,
        "mwSpamResults",
        "mailward_spam_results_total",
        Counter,
        Unit::Count,
        Some(("status", SPAM_STATUSES)),
        "Spam verdicts, one per scanned message.",
    ),
    def(
        StatId::MessagesBlocked,
        Messages,
        6,
        "mwMessagesBlocked",
        "mailward_messages_blocked_total",
        Counter,
        Unit::Count,
        None,
        "Messages accepted but not delivered to some or all of their recipients because policy blocked them (once per message; mailward_group_blocked_total counts each group).",
    )
    .snmp(
        "Messages accepted but not delivered to some or all of their recipients because policy blocked them (once per message; mwPolicyGroupBlocked counts each group).",
    ),
    def(
        StatId::MessagesQuarantined,
        Messages,
        7,
        "mwMessagesQuarantined",
        "mailward_messages_quarantined_total",
        Counter,
        Unit::Count,
        None,
        "Quarantine copies written: one per policy group whose plan quarantines a message, each an entry of mailward quarantine list (mailward_group_quarantined_total counts them by group).",
    )
    .snmp(
        "Quarantine copies written: one per policy group whose plan quarantines a message, each an entry of mailward quarantine list (mwPolicyGroupQuarantined counts them by group).",
    ),
    def(
        StatId::MessagesArchived,
        Messages,
        8,
        "mwMessagesArchived",
        "mailward_messages_archived_total",
        Counter,
        Unit::Count,
        Some(("direction", DIRECTIONS_ARCHIVE)),
        "Messages copied to the archive, by direction.",
    ),
    def(
        StatId::Deliveries,
        Messages,
        9,
        "mwDeliveries",
        "mailward_deliveries_total",
        Counter,
        Unit::Count,
        Some(("result", DELIVERY_RESULTS)),
        "Delivery attempts per recipient, by result.",
    ),
    def(
        StatId::DeliveredBytes,
        Messages,
        10,
        "mwDeliveredOctets",
        "mailward_delivered_bytes_total",
        Counter,
        Unit::Bytes,
        None,
        "Octets of messages accepted by a next hop (once per recipient group).",
    ),
    def(
        StatId::NotificationsSent,
        Messages,
        11,
        "mwNotificationsSent",
        "mailward_notifications_sent_total",
        Counter,
        Unit::Count,
        Some(("to", NOTIFY_TARGETS)),
        "Notifications queued, by addressee (dsn = delivery status notifications).",
    ),
    def(
        StatId::SessionsOpened,
        Resources,
        1,
        "mwSessionsOpened",
        "mailward_sessions_opened_total",
        Counter,
        Unit::Count,
        Some(("direction", SESSION_DIRECTIONS)),
        "SMTP sessions opened, inbound (connections accepted) and outbound (TCP connects started, those that failed or were never greeted included).",
    ),
    def(
        StatId::Sessions,
        Resources,
        2,
        "mwSessions",
        "mailward_sessions",
        Gauge,
        Unit::Count,
        Some(("direction", SESSION_DIRECTIONS)),
        "SMTP sessions open now, inbound (from the accepted connection) and outbound (from the start of the TCP connect, so that connections waiting for a next hop's greeting count too), until closed.",
    ),
    def(
        StatId::QueueMessages,
        Resources,
        3,
        "mwQueueMessages",
        "mailward_queue_messages",
        Gauge,
        Unit::Count,
        None,
        "Messages in the working queue.",
    ),
    def(
        StatId::QueueBytes,
        Resources,
        4,
        "mwQueueOctets",
        "mailward_queue_bytes",
        Gauge,
        Unit::Bytes,
        None,
        "Octets of the messages in the working queue.",
    ),
    def(
        StatId::SpoolFreeBytes,
        Resources,
        5,
        "mwSpoolFreeOctets",
        "mailward_spool_free_bytes",
        Gauge,
        Unit::Bytes,
        None,
        "Free space on the file system of the spool.",
    ),
    def(
        StatId::ScanDuration,
        Resources,
        6,
        "mwScanTime",
        "mailward_scan_duration_seconds",
        Histogram,
        Unit::Micros,
        None,
        "Time to scan one message.",
    ),
    def(
        StatId::CpuSeconds,
        Resources,
        7,
        "mwCpuTime",
        "process_cpu_seconds_total",
        Counter,
        Unit::Micros,
        None,
        "CPU time (user + system) used by the process.",
    ),
    def(
        StatId::ResidentMemory,
        Resources,
        8,
        "mwMemoryResident",
        "process_resident_memory_bytes",
        Gauge,
        Unit::Bytes,
        None,
        "Resident memory of the process.",
    ),
    def(
        StatId::OpenFds,
        Resources,
        9,
        "mwOpenFiles",
        "process_open_fds",
        Gauge,
        Unit::Count,
        None,
        "Open file descriptors of the process.",
    ),
    def(
        StatId::StartTime,
        Resources,
        10,
        "mwStartTime",
        "mailward_start_time_seconds",
        Gauge,
        Unit::Timestamp,
        None,
        "When the daemon started.",
    ),
    def(
        StatId::StatsReset,
        Resources,
        11,
        "mwCounterDiscontinuityTime",
        "mailward_stats_reset_timestamp_seconds",
        Gauge,
        Unit::Timestamp,
        None,
        "When the counters were last zeroed (start or `stats reset`).",
    ),
    def(
        StatId::BasesRecords,
        Resources,
        12,
        "mwBasesRecords",
        "mailward_bases_records",
        Gauge,
        Unit::Count,
        None,
        "Signature records in the bases in use (0: no bases loaded).",
    ),
    def(
        StatId::BasesReleased,
        Resources,
        13,
        "mwBasesReleased",
        "mailward_bases_released_timestamp_seconds",
        Gauge,
        Unit::Timestamp,
        None,
        "Release time of the bases in use (0: none).",
    ),
    def(
        StatId::BasesLoaded,
        Resources,
        14,
        "mwBasesLoaded",
        "mailward_bases_loaded_timestamp_seconds",
        Gauge,
        Unit::Timestamp,
        None,
        "When the bases in use were loaded (0: none).",
    ),
    def(
        StatId::UpdateLastCheck,
        Resources,
        15,
        "mwUpdateLastCheck",
        "mailward_update_last_check_timestamp_seconds",
        Gauge,
        Unit::Timestamp,
        None,
        "When an update of the bases was last attempted (0: never). Kept across restarts: the statistics file (statistics.destination), written after each attempt, gives it back at start.",
    ),
    def(
        StatId::UpdateLastResult,
        Resources,
        16,
        "mwUpdateLastResult",
        "mailward_update_last_result",
        Gauge,
        Unit::Flag,
        Some(("result", UPDATE_RESULTS)),
        "The result of the last update: the current one is 1, the others 0. Kept across restarts like the time of the last update; unknown when none was attempted.",
    ),
    def(
        StatId::AgentxConnected,
        Resources,
        17,
        "mwAgentxConnected",
        "mailward_agentx_connected",
        Gauge,
        Unit::Flag,
        None,
        "1 while the AgentX subagent has an open session with its master, 0 while it has none.",
    )
    .snmp(
        "true(1) while the AgentX subagent has an open session with its master, false(2) while it has none (the master then serves none of this subtree).",
    ),
    def(
        StatId::AgentxReconnects,
        Resources,
        18,
        "mwAgentxReconnects",
        "mailward_agentx_reconnects_total",
        Counter,
        Unit::Count,
        None,
        "AgentX sessions (re)opened after the first.",
    ),
    def(
        StatId::SnmpNotifications,
        Resources,
        19,
        "mwSnmpNotifications",
        "mailward_snmp_notifications_total",
        Counter,
        Unit::Count,
        Some(("name", SNMP_NOTIFICATIONS)),
        "SNMP notifications sent, by name: counted when the AgentX master acknowledges one (it then goes to the master's trap sinks), so one raised while no master is connected counts once it is sent, and one dropped from the full queue never does (see mwSnmpNotificationsDropped).",
    ),
    def(
        StatId::SnmpNotificationsDropped,
        Resources,
        20,
        "mwSnmpNotificationsDropped",
        "mailward_snmp_notifications_dropped_total",
        Counter,
        Unit::Count,
        None,
        "SNMP notifications dropped because the queue for an absent master was full.",
    ),
    def(
        StatId::VirusesDetected,
        Viruses,
        1,
        "mwVirusesDetected",
        "mailward_viruses_detected_total",
        Counter,
        Unit::Count,
        None,
        "Viruses found, one per infected file (two infected attachments count two); suspicious findings count only in the AV results.",
    ),
    def(
        StatId::FilterHits,
        Filters,
        1,
        "mwFilterHits",
        "mailward_filter_hits_total",
        Counter,
        Unit::Count,
        None,
        "Parts filtered by name or MIME type rules.",
    ),
    def(
        StatId::RawRecords,
        Raw,
        1,
        "mwRawRecords",
        "mailward_raw_records_total",
        Counter,
        Unit::Count,
        None,
        "Raw records written (one per message and recipient).",
    ),
    def(
        StatId::SessionTimeouts,
        Resources,
        21,
        "mwSessionTimeouts",
        "mailward_session_timeouts_total",
        Counter,
        Unit::Count,
        Some(("phase", TIMEOUT_PHASES)),
        "Inbound sessions closed because a deadline passed: a whole command line (timeouts.command), the DATA phase (timeouts.data plus its size at limits.min_data_rate), the TLS handshake, or a write of our replies that the client did not read (timeouts.command).",
    ),
    def(
        StatId::StressTimeouts,
        Resources,
        22,
        "mwStressTimeouts",
        "mailward_session_stress_timeouts_total",
        Counter,
        Unit::Count,
        None,
        "Of the session time-outs, those under the shorter timeouts of stress mode.",
    ),
    def(
        StatId::StressMode,
        Resources,
        23,
        "mwStressMode",
        "mailward_stress_mode",
        Gauge,
        Unit::Flag,
        None,
        "1 while open inbound sessions are above limits.stress_percent of incoming_sessions, when the stress timeouts apply; 0 otherwise.",
    )
    .snmp(
        "true(1) while open inbound sessions are above limits.stress_percent of incoming_sessions, when the stress timeouts apply; false(2) otherwise.",
    ),
    def(
        StatId::SpoolReclaimableBytes,
        Resources,
        24,
        "mwSpoolReclaimableOctets",
        "mailward_spool_reclaimable_bytes",
        Gauge,
        Unit::Bytes,
        None,
        "Spool space held by delivered mail only, which the spool may free at once (it does when the current segment holds 1 MiB of it, or when the space is needed); counted as available by the free-space check.",
    ),
    def(
        StatId::ScanMemoryRefused,
        Resources,
        25,
        "mwScanMemoryRefusals",
        "mailward_scan_memory_refused_total",
        Counter,
        Unit::Count,
        None,
        "Scans cut short because the scan workers together had unpacked limits.scan_memory (the message gets av/error).",
    ),
    def(
        StatId::QuarantineMessages,
        Resources,
        26,
        "mwQuarantineMessages",
        "mailward_quarantine_messages",
        Gauge,
        Unit::Count,
        None,
        "Messages in quarantine now.",
    ),
    def(
        StatId::QuarantineBytes,
        Resources,
        27,
        "mwQuarantineOctets",
        "mailward_quarantine_bytes",
        Gauge,
        Unit::Bytes,
        None,
        "Octets of the messages in quarantine now.",
    ),
    def(
        StatId::QuarantineReleases,
        Messages,
        12,
        "mwQuarantineReleases",
        "mailward_quarantine_releases_total",
        Counter,
        Unit::Count,
        None,
        "Quarantined messages released by an administrator (`mailward quarantine release`).",
    ),
    def(
        StatId::ArchiveMessages,
        Resources,
        28,
        "mwArchiveMessages",
        "mailward_archive_messages",
        Gauge,
        Unit::Count,
        Some(("direction", DIRECTIONS_ARCHIVE)),
        "Messages in the archive now, incoming and outgoing.",
    ),
    def(
        StatId::ArchiveBytes,
        Resources,
        29,
        "mwArchiveOctets",
        "mailward_archive_bytes",
        Gauge,
        Unit::Bytes,
        Some(("direction", DIRECTIONS_ARCHIVE)),
        "Octets of the messages in the archive now, incoming and outgoing.",
    ),
    def(
        StatId::SpamTestHits,
        Filters,
        4,
        "mwSpamTestHits",
        "mailward_spam_test_hits_total",
        Counter,
        Unit::Count,
        None,
        "Spam tests that fired (rules, heuristics and the classifier's band), summed over messages.",
    ),
    def(
        StatId::SpamLearnt,
        Resources,
        30,
        "mwSpamLearnt",
        "mailward_spam_learnt_messages",
        Gauge,
        Unit::Count,
        Some(("class", SPAM_CLASSES)),
        "Messages the spam classifier has learnt (base and site together), by class.",
    ),
    def(
        StatId::DnsblLookups,
        Resources,
        31,
        "mwDnsblLookups",
        "mailward_dnsbl_lookups_total",
        Counter,
        Unit::Count,
        Some(("result", DNSBL_RESULTS)),
        "DNSBL look-ups (access.dnsbl and spam.dnsbl zones), by result; failed = no answer in time or a DNS error (the client counts as not listed).",
    ),
    def(
        StatId::SpfResults,
        Resources,
        32,
        "mwSpfResults",
        "mailward_spf_checks_total",
        Counter,
        Unit::Count,
        Some(("result", AUTH_RESULTS)),
        "SPF checks at MAIL FROM (clients outside relay_networks), by result; temperror = the DNS did not answer in time.",
    ),
    def(
        StatId::DkimResults,
        Resources,
        33,
        "mwDkimResults",
        "mailward_dkim_signatures_total",
        Counter,
        Unit::Count,
        Some(("result", AUTH_RESULTS)),
        "DKIM signatures verified after DATA, by result.",
    ),
    def(
        StatId::DmarcResults,
        Resources,
        34,
        "mwDmarcResults",
        "mailward_dmarc_checks_total",
        Counter,
        Unit::Count,
        Some(("result", AUTH_RESULTS)),
        "DMARC evaluations of the From domain after DATA (with DKIM), by result; none = the domain publishes no policy.",
    ),
    def(
        StatId::SurblLookups,
        Resources,
        35,
        "mwSurblLookups",
        "mailward_surbl_lookups_total",
        Counter,
        Unit::Count,
        Some(("result", DNSBL_RESULTS)),
        "URI DNS list look-ups (spam.surbl zones) of the registered domains of links, by result.",
    ),
    def(
        StatId::SpamScore,
        Filters,
        5,
        "mwSpamScore",
        "mailward_spam_score_points",
        Histogram,
        Unit::Points,
        None,
        "Spam scores of checked messages. A bucket counts the scores at or below its bound (le). A level marks a score at its threshold, so the bounds sit a millionth under every level's thresholds (2.999999, 3.999999, 4.499999, 4.999999, 5.999999, 7.999999, 11.999999; scores are whole millionths): 1 - bucket le=7.999999 / count is the share the standard level marks as spam. A score below 0 counts in the le=0 bucket, and as 0 in the sum. The sum is kept in whole thousandths of a point (each score rounded to the nearest thousandth): _sum / _count is the mean score.",
    )
    .snmp(
        "Spam scores of checked messages (a score below 0 counts as 0).",
    ),
    def(
        StatId::SpamClassifierUnavailable,
        Resources,
        36,
        "mwSpamClassifierUnavailable",
        "mailward_spam_classifier_unavailable_total",
        Counter,
        Unit::Count,
        None,
        "Messages judged without the spam classifier because its learning could not be read: a spam.store Redis that does not answer or holds a damaged snapshot, or a damaged site.model or base.model.",
    ),
    def(
        StatId::LogLinesDropped,
        Resources,
        37,
        "mwLogLinesDropped",
        "mailward_log_lines_dropped_total",
        Counter,
        Unit::Count,
        None,
        "Log lines not written: the syslog daemon, the reader of standard error (journald, a container's log driver) or the log file's disk was unreachable, failing or too slow (its queue full). Mail is never held up for the log.",
    ),
    def(
        StatId::OutboundTls,
        Resources,
        38,
        "mwOutboundTls",
        "mailward_outbound_tls_total",
        Counter,
        Unit::Count,
        Some(("result", OUTBOUND_TLS_RESULTS)),
        "Outbound connections by STARTTLS outcome: tls (encrypted), plain (TLS off or not offered), fallback (a failed or refused STARTTLS under tls = \"may\": delivered in plain text), failed (required by \"encrypt\"/\"verify\" and not had: deferred).",
    ),
    def(
        StatId::MessagesChecked,
        Messages,
        13,
        "mwMessagesChecked",
        "mailward_messages_checked_total",
        Counter,
        Unit::Count,
        Some(("mode", MODES)),
        "Messages checked (refused ones too), by how they came: smtp (as relay), filter (from an MTA that forwarded its client with XFORWARD), milter.",
    ),
    def(
        StatId::MilterConnectionsOpened,
        Resources,
        39,
        "mwMilterConnectionsOpened",
        "mailward_milter_connections_opened_total",
        Counter,
        Unit::Count,
        None,
        "Milter connections accepted from the MTA ([milter] listen). Postfix keeps one per SMTP session of its own.",
    ),
    def(
        StatId::MilterConnections,
        Resources,
        40,
        "mwMilterConnections",
        "mailward_milter_connections",
        Gauge,
        Unit::Count,
        None,
        "Milter connections open now (at most [milter] max_connections).",
    ),
    def(
        StatId::MilterConnectionErrors,
        Resources,
        41,
        "mwMilterConnectionErrors",
        "mailward_milter_connection_errors_total",
        Counter,
        Unit::Count,
        Some(("reason", MILTER_ERRORS)),
        "Milter connections closed on an error, by reason: malformed (not the milter protocol, or no common protocol in the negotiation), idle (nothing from the MTA within timeouts.data plus limits.max_message_size at limits.min_data_rate, at least timeouts.command), io (the socket failed). The MTA applies its milter_default_action to what was under way.",
    ),
    def(
        StatId::AgentxRegistered,
        Resources,
        42,
        "mwAgentxRegistered",
        "mailward_agentx_registered",
        Gauge,
        Unit::Flag,
        None,
        "1 while the AgentX master has accepted the registration of the gateway's subtree, so that the master serves it; 0 while no session is open or while the master refuses it (another subagent registered the same subtree: see the log for duplicateRegistration). mailward_agentx_connected says only that a session is open.",
    )
    .snmp(
        "true(1) while the AgentX master has accepted the registration of the gateway's subtree, so that the master serves it; false(2) while no session is open or while the master refuses it (another subagent registered the same subtree: see the log for duplicateRegistration). mwAgentxConnected says only that a session is open.",
    ),
    def(
        StatId::LogRotationFailures,
        Resources,
        43,
        "mwLogRotationFailures",
        "mailward_log_rotation_failures_total",
        Counter,
        Unit::Count,
        Some(("file", ROTATED_FILES)),
        "Rotations (at log.rotate_size) that failed, by file: log (the log file) or raw (the raw records file). No line is lost: the file grows past rotate_size and rotation is tried again after as many bytes, but the disk fills if nobody acts (usually a directory the unprivileged user cannot write).",
    ),
    def(
        StatId::QueueHeldMessages,
        Resources,
        44,
        "mwQueueHeldMessages",
        "mailward_queue_held_messages",
        Gauge,
        Unit::Count,
        None,
        "Messages of the working queue held by an administrator (mailward queue hold): not delivered until released. Counted in mailward_queue_messages too.",
    )
    .snmp(
        "Messages of the working queue held by an administrator (mailward queue hold): not delivered until released. Counted in mwQueueMessages too.",
    ),
    def(
        StatId::DeliveryDnsLookups,
        Resources,
        45,
        "mwDeliveryDnsLookups",
        "mailward_delivery_dns_lookups_total",
        Counter,
        Unit::Count,
        Some(("result", LOOKUP_RESULTS)),
        "DNS look-ups of delivery (MX, then A/AAAA of the hosts to connect to; not for address literals or reused connections), by result.",
    ),
    def(
        StatId::DnsListsResting,
        Resources,
        46,
        "mwDnsListsResting",
        "mailward_dns_lists_resting",
        Gauge,
        Unit::Count,
        None,
        "DNS list zones ([access] dnsbl, [spam] dnsbl, [spam] surbl) not asked now because their last 8 look-ups got no answer: they list nothing, and their look-ups count as failed, until one of the probes (one every 5 s per zone) is answered. mailward status names them.",
    ),
    def(
        StatId::DnsServerSilent,
        Resources,
        47,
        "mwDnsServerSilent",
        "mailward_dns_server_silent",
        Gauge,
        Unit::Flag,
        None,
        "1 while the DNS server does not answer: a probe (a made-up name, sent after a DNS list, SPF, DKIM or DMARC look-up failed) got no reply within timeouts.dns. Meanwhile SPF and DKIM/DMARC give temperror and the DNS lists list nothing, at once, instead of waiting, and probes go on, each 5 s after the last one timed out, with or without mail, until one is answered. 0 otherwise.",
    )
    .snmp(
        "true(1) while the DNS server does not answer: a probe (a made-up name, sent after a DNS list, SPF, DKIM or DMARC look-up failed) got no reply within timeouts.dns. Meanwhile SPF and DKIM/DMARC give temperror and the DNS lists list nothing, at once, instead of waiting, and probes go on, each 5 s after the last one timed out, with or without mail, until one is answered. false(2) otherwise.",
    ),
    def(
        StatId::ForeignVerdictHeaders,
        Messages,
        15,
        "mwForeignVerdictHeaders",
        "mailward_foreign_verdict_headers_total",
        Counter,
        Unit::Count,
        None,
        "Messages that arrived with X-Mailward-AV, X-Mailward-Spam or X-Mailward-Spam-Rating fields, or Authentication-Results in this gateway's name (server.authserv_id), that it did not write (a forged verdict, or another gateway's): the copies delivered go without them.",
    ),
    def(
        StatId::AgentxRequests,
        Resources,
        48,
        "mwAgentxRequests",
        "mailward_agentx_requests_total",
        Counter,
        Unit::Count,
        None,
        "Requests from the AgentX master that the subagent answered (Get, GetNext, GetBulk and each Set phase): what the NMS's polls of the gateway's subtree cost it.",
    ),
    def(
        StatId::AgentxErrors,
        Resources,
        49,
        "mwAgentxErrors",
        "mailward_agentx_errors_total",
        Counter,
        Unit::Count,
        None,
        "AgentX errors: a master that cannot be reached (once per outage), an Open, Register, AddAgentCaps or Notify the master refused, a PDU that could not be parsed, a session lost. Mail is not affected; mailward status and the log give the last one.",
    ),
    def(
        StatId::RecipientsRejected,
        Messages,
        16,
        "mwRecipientsRejected",
        "mailward_recipients_rejected_total",
        Counter,
        Unit::Count,
        Some(("reason", REJECT_REASONS)),
        "Recipients refused in the SMTP session (every RCPT of a transaction refused, with its syntax too), by reason; mwMessagesRejected counts their transaction once, and only when it ends without a message accepted.",
    ),
    def(
        StatId::BasesObsolete,
        Resources,
        50,
        "mwBasesObsolete",
        "mailward_bases_obsolete",
        Gauge,
        Unit::Flag,
        None,
        "1 when the bases in use were released longer ago than bases.obsolete_after (the condition the SNMP notification mwObsoleteBases is sent for); 0 otherwise, and when none are loaded (mailward_bases_records is then 0).",
    )
    .snmp(
        "true(1) when the bases in use were released longer ago than bases.obsolete_after, the condition mwObsoleteBases is sent for; false(2) otherwise, and when none are loaded (mwBasesRecords is then 0).",
    ),
    def(
        StatId::SpoolWriteErrors,
        Resources,
        51,
        "mwSpoolWriteErrors",
        "mailward_spool_write_errors_total",
        Counter,
        Unit::Count,
        None,
        "Spool writes that failed (a full disk, a read-only or failing one): the new messages of that write got 451 4.3.0 (never a 250) and its state changes were not recorded. Any increase needs a look: mail is refused while it lasts.",
    ),
    def(
        StatId::RawRecordsLost,
        Raw,
        3,
        "mwRawRecordsLost",
        "mailward_raw_records_lost_total",
        Counter,
        Unit::Count,
        None,
        "Raw records the raw records file refused (a full disk, a directory the user may not write to; the log says why, \"Cannot write a raw record.\"): none left part of a line behind, and the other statistics still count their messages. mwRawRecentTable still shows them.",
    ),
    def(
        StatId::MaxFds,
        Resources,
        52,
        "mwMaxOpenFiles",
        "process_max_fds",
        Gauge,
        Unit::Count,
        None,
        "The most file descriptors the process may open (its soft RLIMIT_NOFILE; LimitNOFILE= under systemd): when the open files come near it, new connections and spool files fail. 0 when unknown.",
    ),
    def(
        StatId::MilterSlotsFull,
        Resources,
        53,
        "mwMilterSlotsFull",
        "mailward_milter_slots_full_total",
        Counter,
        Unit::Count,
        None,
        "Times every milter connection slot ([milter] max_connections) was taken: the MTA's next connection then waits until one ends, and Postfix gives up on it after milter_command_timeout with its milter_default_action (tempfail: 451 to the SMTP client). Any increase: raise max_connections to the process limit of every smtpd that uses the milter.",
    ),
    def(
        StatId::SpoolDamagedKeptBytes,
        Resources,
        54,
        "mwSpoolDamagedKeptOctets",
        "mailward_spool_damaged_kept_bytes",
        Gauge,
        Unit::Bytes,
        None,
        "Delivered mail the spool keeps because a damaged segment's note (damaged-N in the spool directory) holds its reclamation back; 0 when no note does. Not 0: the disk fills with delivered mail until the damaged file is salvaged or moved aside (mailward status says how).",
    ),
    def(
        StatId::InboundTls,
        Resources,
        55,
        "mwInboundTls",
        "mailward_inbound_tls_total",
        Counter,
        Unit::Count,
        Some(("result", INBOUND_TLS_RESULTS)),
        "Inbound SMTP sessions by STARTTLS outcome, one per session: tls (a handshake completed), plain (the session ended without STARTTLS, offered or not), failed (the client's handshake failed or timed out: the session ends, and the log says why). A share of failed that rises: a certificate expired or a protocol the clients refuse.",
    ),
    def(
        StatId::StoreWriteErrors,
        Resources,
        56,
        "mwStoreWriteErrors",
        "mailward_store_write_errors_total",
        Counter,
        Unit::Count,
        Some(("store", STORES)),
        "Copies a message store could not write (a full or read-only file system, a directory the user may not write to), by store: quarantine, or archive (incoming and outgoing copies). A quarantine or incoming archive copy that fails refuses its message with 451 4.3.0 in the session (after a 250 the message stays unchecked in the spool); an outgoing archive copy is only missing. Any increase needs a look: mailward status says which store, when and why.",
    ),
    def(
        StatId::QueueOldestDeferred,
        Resources,
        57,
        "mwQueueOldestDeferred",
        "mailward_queue_oldest_deferred_seconds",
        Gauge,
        Unit::Seconds,
        None,
        "Seconds since the oldest message that was tried and still waits for delivery was received (held messages left out); 0 when there is none. mailward status calls mail not leaving a problem past 30 minutes (1800): a next hop down or refusing.",
    ),
    def(
        StatId::BasesOnDiskBroken,
        Resources,
        58,
        "mwBasesOnDiskBroken",
        "mailward_bases_on_disk_broken",
        Gauge,
        Unit::Flag,
        None,
        "1 while the signature bases on disk do not load (the last start or reload could not compile them): the rules in use stay, but a restart would run without AV rules until the set is fixed or rolled back; mailward status says why. 0 otherwise.",
    )
    .snmp(
        "true(1) while the signature bases on disk do not load (the last start or reload could not compile them, the fault mwProductError was sent for): the rules in use stay, but a restart would run without AV rules until the set is fixed or rolled back; mailward status says why. false(2) otherwise.",
    ),
    def(
        StatId::DestinationSuspensions,
        Resources,
        59,
        "mwDestinationSuspensions",
        "mailward_destination_suspensions_total",
        Counter,
        Unit::Count,
        None,
        "Times a delivery destination (a next hop as routing names it: [host]:port or domain:port) was suspended after 3 connection-level failures in a row (connect refused or timed out, no greeting, a refusing greeting), or suspended again after its probe failed. While suspended its due mail is deferred without connecting; after timeouts.min_backoff (doubled per failed probe, at most timeouts.max_backoff) one attempt probes it, and its success lifts the suspension.",
    ),
    def(
        StatId::DestinationsSuspended,
        Resources,
        60,
        "mwDestinationsSuspended",
        "mailward_destinations_suspended",
        Gauge,
        Unit::Count,
        None,
        "Delivery destinations suspended now: their mail waits without connections until a probe gets through (the log line 'Destination suspended' names each). A destination that has not failed for an hour is forgotten and leaves this count.",
    ),
    def(
        StatId::SpoolReadErrors,
        Resources,
        61,
        "mwSpoolReadErrors",
        "mailward_spool_read_errors_total",
        Counter,
        Unit::Count,
        None,
        "Reads of a waiting message from the spool that failed: its segment file deleted by something other than mailward, or unreadable (permissions, a failing disk). That message is deferred (4.3.0 local spool error) and cannot leave while it lasts. Any increase needs a look: the log says which segment and, when it was deleted, which queue IDs are lost.",
    ),
    def(
        StatId::SpoolSegmentsLost,
        Resources,
        62,
        "mwSpoolSegmentsLost",
        "mailward_spool_segments_lost_total",
        Counter,
        Unit::Count,
        None,
        "Spool segments found deleted by something other than mailward while messages that got 250 waited in them (the open segment is copied to a new one from the file still open and is not counted: nothing is lost then), and segments missing between others at start. Their messages are lost: the ERROR line names the segment and queue IDs; mailward status says it until a restart. Anything above 0 means lost mail: find what deletes files in the spool directory.",
    ),
    def(
        StatId::SpoolWriteStalled,
        Resources,
        63,
        "mwSpoolWriteStalled",
        "mailward_spool_write_stalled_seconds",
        Gauge,
        Unit::Seconds,
        None,
        "Seconds the spool's current disk write has been waiting, once past 5 (0 otherwise): a frozen or failing disk, a hung network file system. The sessions whose messages it holds wait for their 250 meanwhile, and new mail waits behind it; the log says the stall (WARN) and its end.",
    ),
];

/// A top-N table (DESIGN 6), bounded by `statistics.top`; its number is its
/// table's OID arc within the category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct TopTable {
    pub id: TopId,
    pub category: Category,
    pub arc: u32,
    /// MIB table name stem and stats file key.
    pub name: &'static str,
    pub prom: &'static str,
    /// The label holding the item.
    pub item_label: &'static str,
    pub help: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum TopId {
    Viruses,
    InfectedSenders,
    InfectedClients,
    FilterRules,
    SpamTests,
    DeferredDomains,
}

pub static TOP_TABLES: &[TopTable] = &[
    TopTable {
        id: TopId::Viruses,
        category: Viruses,
        arc: 2,
        name: "mwTopVirus",
        prom: "mailward_top_virus_detections",
        item_label: "virus",
        help: "The most detected viruses (by detections since the last reset), ranked.",
    },
    TopTable {
        id: TopId::InfectedSenders,
        category: Viruses,
        arc: 3,
        name: "mwTopInfectedSender",
        prom: "mailward_top_infected_sender_messages",
        item_label: "sender",
        help: "The senders of the most infected messages, ranked.",
    },
    TopTable {
        id: TopId::InfectedClients,
        category: Viruses,
        arc: 4,
        name: "mwTopInfectedClient",
        prom: "mailward_top_infected_client_messages",
        item_label: "address",
        help: "The client addresses that sent the most infected messages, ranked.",
    },
    TopTable {
        id: TopId::FilterRules,
        category: Filters,
        arc: 2,
        name: "mwTopFilterRule",
        prom: "mailward_top_filter_rule_hits",
        item_label: "rule",
        help: "The name and MIME type rules with the most hits, ranked.",
    },
    TopTable {
        id: TopId::SpamTests,
        category: Filters,
        arc: 3,
        name: "mwTopSpamTest",
        prom: "mailward_top_spam_test_hits",
        item_label: "test",
        help: "The spam tests that fired most often, ranked.",
    },
    TopTable {
        id: TopId::DeferredDomains,
        category: Messages,
        arc: 14,
        name: "mwTopDeferredDomain",
        prom: "mailward_top_deferred_domain_recipients",
        item_label: "domain",
        help: "The recipient domains with the most deferred delivery attempts (one per recipient and attempt), ranked: where mail waits.",
    },
];

pub fn stat(id: StatId) -> &'static Stat {
    &CATALOGUE[id as usize]
}

pub fn top_table(id: TopId) -> &'static TopTable {
    &TOP_TABLES[id as usize]
}

/// Label value index, for the typed label enums.
pub fn label_index(id: StatId, value: &str) -> Option<usize> {
    stat(id).label?.1.iter().position(|v| *v == value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_match_positions_and_numbers_are_unique() {
        for (i, s) in CATALOGUE.iter().enumerate() {
            assert_eq!(s.id as usize, i, "{} out of place", s.name);
        }
        for (i, t) in TOP_TABLES.iter().enumerate() {
            assert_eq!(t.id as usize, i, "{} out of place", t.name);
        }
        let mut arcs = HashSet::new();
        for s in CATALOGUE {
            assert!(arcs.insert((s.category, s.arc)), "arc reused: {}", s.name);
        }
        for t in TOP_TABLES {
            assert!(arcs.insert((t.category, t.arc)), "arc reused: {}", t.name);
        }
        let mut names = HashSet::new();
        for s in CATALOGUE {
            assert!(names.insert(s.prom), "{} twice", s.prom);
            assert!(names.insert(s.name), "{} twice", s.name);
        }
    }

    #[test]
    fn every_reject_reason_says_what_it_counts() {
        assert_eq!(REJECT_REASON_MEANINGS.len(), REJECT_REASONS.len());
    }

    #[test]
    fn prometheus_names_follow_the_conventions() {
        for s in CATALOGUE {
            assert!(
                s.prom.starts_with("mailward_") || s.prom.starts_with("process_"),
                "{}",
                s.prom
            );
            match s.kind {
                Kind::Counter => assert!(s.prom.ends_with("_total"), "{}", s.prom),
                _ => assert!(!s.prom.ends_with("_total"), "{}", s.prom),
            }
            if s.unit == Unit::Bytes {
                assert!(s.prom.contains("_bytes"), "{}", s.prom);
            }
            if s.unit == Unit::Micros || s.unit == Unit::Timestamp || s.unit == Unit::Seconds {
                assert!(s.prom.contains("_seconds"), "{}", s.prom);
            }
        }
    }
}

/// Where a statistic stands in MAILWARD-MIB. Most live in `mwStatistics`
/// under their category; the few that describe the signature bases and the
/// daemon itself live in `mwUpdate` and `mwAdmin`, where an NMS looks for
/// them (DESIGN 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// `mwStatistics.CATEGORY.ARC`
    Statistics(Category, u32),
    /// `mwUpdate.ARC`
    Update(u32),
    /// `mwAdmin.ARC`
    Admin(u32),
}

/// Whether a statistic is kept and exported whatever `statistics.options`
/// says: the state of the daemon and of its bases (`mwAdmin`, `mwUpdate`)
/// is not a category of statistics an operator opts out of, and
/// `mwCounterDiscontinuityTime` must stand beside every counter served, or
/// an NMS cannot tell a reset from a wrap. Prometheus, SNMP and the stats
/// file all ask this, so they render the same set.
pub fn always_collected(id: StatId) -> bool {
    id == StatId::StatsReset || !matches!(place(id), Place::Statistics(..))
}

pub fn place(id: StatId) -> Place {
    match id {
        StatId::UpdateLastCheck => Place::Update(1),
        StatId::UpdateLastResult => Place::Update(2),
        StatId::BasesLoaded => Place::Update(3),
        StatId::BasesReleased => Place::Update(4),
        StatId::BasesRecords => Place::Update(5),
        StatId::BasesObsolete => Place::Update(6),
        StatId::BasesOnDiskBroken => Place::Update(7),
        StatId::StartTime => Place::Admin(2),
        other => {
            let s = stat(other);
            Place::Statistics(s.category, s.arc)
        }
    }
}
