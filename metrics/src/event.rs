//! What the message path reports. Each event is applied to the model as a
//! whole (see [`crate::Stats::record`]); label values come from bounded sets.

use std::net::IpAddr;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
}

/// Why a session, a transaction or a recipient was refused in the session
/// (what each counts: `catalogue::REJECT_REASON_MEANINGS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    Relay,
    Access,
    Dnsbl,
    Size,
    Limit,
    Syntax,
    Policy,
    Tempfail,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        crate::catalogue::REJECT_REASONS[self as usize]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AvStatus {
    Clean,
    Infected,
    Suspicious,
    Protected,
    Error,
    Filtered,
}

impl AvStatus {
    pub fn as_str(self) -> &'static str {
        crate::catalogue::AV_STATUSES[self as usize]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpamStatus {
    Spam,
    Probable,
    Formal,
    Blacklisted,
    Clean,
}

impl SpamStatus {
    pub fn as_str(self) -> &'static str {
        crate::catalogue::SPAM_STATUSES[self as usize]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryResult {
    Delivered,
    Deferred,
    Bounced,
}

impl DeliveryResult {
    pub fn as_str(self) -> &'static str {
        crate::catalogue::DELIVERY_RESULTS[self as usize]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyTarget {
    Sender,
    Recipients,
    Admin,
    Dsn,
}

/// How a message reached the checks (the `mode` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Over SMTP from its own client: Mailward as the relay.
    Smtp,
    /// Over SMTP from an MTA that named its client with XFORWARD (Postfix
    /// content filter or before-queue proxy).
    Filter,
    /// For an MTA over the milter protocol.
    Milter,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        crate::catalogue::MODES[self as usize]
    }
}

/// Why a milter connection ended on an error (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MilterError {
    Malformed,
    Idle,
    Io,
}

impl MilterError {
    pub fn as_str(self) -> &'static str {
        crate::catalogue::MILTER_ERRORS[self as usize]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveDirection {
    Incoming,
    Outgoing,
}

#[derive(Debug, Clone)]
pub enum Event<'a> {
    /// DNSBL look-ups made for one client, by outcome.
    DnsblLookups {
        listed: u64,
        not_listed: u64,
        failed: u64,
    },
    /// URI DNS list look-ups for one message, by outcome.
    SurblLookups {
        listed: u64,
        not_listed: u64,
        failed: u64,
    },
    /// Delivery's DNS look-ups for one next hop, by outcome.
    DeliveryDnsLookups {
        answered: u64,
        not_found: u64,
        failed: u64,
    },
    /// A message judged without the classifier because its shared store
    /// (Redis) could not be read.
    SpamClassifierUnavailable,
    /// One outbound connection's STARTTLS outcome; `result` is one of
    /// `catalogue::OUTBOUND_TLS_RESULTS`.
    OutboundTls {
        result: &'static str,
    },
    /// One inbound session's STARTTLS outcome (at the end of the session,
    /// or when its handshake fails); `result` is one of
    /// `catalogue::INBOUND_TLS_RESULTS`.
    InboundTls {
        result: &'static str,
    },
    /// A message store could not write a copy; `store` is one of
    /// `catalogue::STORES`.
    StoreWriteFailed {
        store: &'static str,
    },
    /// One SPF check; `result` is one of `catalogue::AUTH_RESULTS`.
    SpfChecked {
        result: &'static str,
    },
    /// One DKIM signature verified.
    DkimChecked {
        result: &'static str,
    },
    /// One DMARC evaluation.
    DmarcChecked {
        result: &'static str,
    },
    SessionOpened {
        direction: Direction,
    },
    SessionClosed {
        direction: Direction,
    },
    MessageAccepted {
        size: u64,
    },
    /// A session or a transaction refused in the session: once each (a
    /// transaction whose recipients were all refused counts when it ends).
    MessageRejected {
        reason: RejectReason,
    },
    /// One RCPT refused in the session.
    RecipientRejected {
        reason: RejectReason,
    },
    /// One message scanned.
    ScanFinished {
        av: AvStatus,
        spam: Option<SpamStatus>,
        /// The spam score (None: the spam check did not run).
        spam_score: Option<f64>,
        /// Detection names (a message may carry several).
        viruses: &'a [String],
        /// Name/MIME rules that filtered parts.
        filter_rules: &'a [String],
        /// The spam tests that fired (names), once each.
        spam_tests: &'a [String],
        sender: &'a str,
        client: IpAddr,
        duration: Duration,
        /// The policy groups its recipients fall in, with what each
        /// group's plan made of it: the message counts once for each.
        groups: &'a [crate::group::GroupOutcome<'a>],
        mode: Mode,
    },
    DeliveryAttempted {
        result: DeliveryResult,
        /// Recipients this result concerns.
        rcpts: u64,
        /// Octets sent (counted once per accepted transaction).
        bytes: u64,
        /// The recipients' domain, lower case ("" when it does not apply):
        /// a deferral counts in the deferred domains' top-N table.
        domain: &'a str,
    },
    NotificationSent {
        to: NotifyTarget,
    },
    /// A group's recipients do not get the message.
    MessageBlocked {
        /// The group ("" = the default group).
        group: &'a str,
        /// The first group blocked for this message: the message counts
        /// once in `mailward_messages_blocked_total`, however many of its
        /// groups block it (each counts in its own row).
        first: bool,
    },
    /// A message to be delivered came with verdict headers not written
    /// here (they are removed).
    ForeignVerdictHeaders,
    MessageQuarantined {
        /// The group whose policy asked for the copy ("" = the default).
        group: &'a str,
    },
    MessageArchived {
        direction: ArchiveDirection,
    },
    /// The AgentX master acknowledged an SNMP notification (index into
    /// SNMP_NOTIFICATIONS): sent, not merely raised.
    SnmpNotification {
        index: usize,
    },
    /// An inbound session was closed because a deadline passed.
    SessionTimedOut {
        phase: TimeoutPhase,
        /// The shorter timeouts of stress mode applied.
        stress: bool,
    },
    /// A delivery destination was suspended (again, when `again`).
    DestinationSuspended {
        again: bool,
    },
    /// A suspended destination was let go (a probe got through, or it was
    /// forgotten).
    DestinationResumed,
    /// The MTA opened a milter connection.
    MilterConnectionOpened,
    /// Every milter connection slot was found taken (the MTA's next
    /// connection waits).
    MilterSlotsFull,
    /// A milter connection ended, on an error or not.
    MilterConnectionClosed {
        error: Option<MilterError>,
    },
    /// A scan was cut short by the shared unpacking budget.
    ScanMemoryRefused,
    /// A quarantined message was released by an administrator.
    QuarantineReleased,
    /// A configuration was put in force (`ok`, also at start) or a reload
    /// was refused, at unix time `at`.
    ConfigLoaded {
        ok: bool,
        reload: bool,
        at: i64,
        /// The configuration's policy groups (`[group.NAME]`, by name)
        /// when it is put in force; ignored for a refused reload.
        groups: &'a [&'a str],
    },
    /// An update of the bases was attempted (result: index into
    /// `catalogue::UPDATE_RESULTS`), at unix time `at`.
    UpdateAttempted {
        result: usize,
        at: i64,
    },
}

/// What an inbound session was doing when its deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutPhase {
    Command,
    Data,
    Tls,
    /// Our replies were not taken by the client within the write deadline
    /// (it sends commands but does not read).
    Write,
}

impl TimeoutPhase {
    pub fn as_str(self) -> &'static str {
        crate::catalogue::TIMEOUT_PHASES[self as usize]
    }
}
