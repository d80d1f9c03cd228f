//! Typed events of the message path. Business code says what happened
//! (`MessageAccepted { .. }.emit(&stats)`), and the event does the
//! bookkeeping: it updates the statistics model, writes raw records and
//! logs (with the queue ID on every line about a message). No module
//! increments a counter by hand.

use crate::config::SpamLevel;
use crate::envelope::{Envelope, QueueId};
use crate::policy::verdict::Verdict;
use crate::smtp::session::current as session;
use mailward_metrics::event::{self as m, Direction};
use mailward_metrics::group::GroupOutcome;
use mailward_metrics::snapshot::group_name;
use mailward_metrics::{Event, RawRecord, Stats};
use std::net::IpAddr;

pub use mailward_metrics::event::{
    AvStatus, DeliveryResult, RejectReason, SpamStatus, TimeoutPhase,
};

pub struct SessionOpened {
    pub client: std::net::SocketAddr,
    /// The session's ID (`session=`), as on its other lines.
    pub session: u64,
}

impl SessionOpened {
    pub fn emit(&self, stats: &Stats) {
        stats.record(&Event::SessionOpened {
            direction: Direction::In,
        });
        tracing::debug!(target: "smtp", session = self.session, client = %self.client, "Session opened.");
    }
}

pub struct SessionClosed {
    pub client: std::net::SocketAddr,
    /// Messages accepted in the session.
    pub messages: u32,
    /// The session's ID (`session=`), as on its other lines.
    pub session: u64,
}

impl SessionClosed {
    pub fn emit(&self, stats: &Stats) {
        stats.record(&Event::SessionClosed {
            direction: Direction::In,
        });
        tracing::debug!(target: "smtp", session = self.session, client = %self.client, messages = self.messages, "Session closed.");
    }
}

/// One inbound session's STARTTLS outcome for mwInboundTlsTable: "tls"
/// (a handshake completed), "plain" (none was made) at the end of the
/// session, "failed" when a handshake fails or times out (logged apart).
pub struct InboundTls {
    pub result: &'static str,
}

impl InboundTls {
    pub fn emit(&self, stats: &Stats) {
        stats.record(&Event::InboundTls {
            result: self.result,
        });
    }
}

/// The MTA opened a milter connection.
pub struct MilterConnectionOpened<'a> {
    pub peer: &'a str,
}

impl MilterConnectionOpened<'_> {
    pub fn emit(&self, stats: &Stats) {
        stats.record(&Event::MilterConnectionOpened);
        tracing::debug!(target: "smtp", peer = %self.peer, "Milter connection opened.");
    }
}

/// A milter connection ended; `error` says why when it was not the MTA's
/// choice.
pub struct MilterConnectionClosed<'a> {
    pub peer: &'a str,
    pub error: Option<(m::MilterError, &'a dyn std::fmt::Display)>,
}

impl MilterConnectionClosed<'_> {
    pub fn emit(&self, stats: &Stats) {
        stats.record(&Event::MilterConnectionClosed {
            error: self.error.map(|(reason, _)| reason),
        });
        match self.error {
            None => tracing::debug!(target: "smtp", peer = %self.peer, "Milter connection closed."),
            Some((reason, error)) => tracing::warn!(target: "smtp", peer = %self.peer,
                reason = reason.as_str(), %error,
                "Milter connection closed on an error; the MTA applies its milter_default_action to what was under way."),
        }
    }
}

/// What operators are told about the gateway itself: the SNMP
/// notifications of MAILWARD-MIB (`snmp.traps` chooses which are sent). The
/// gateway raises them with [`crate::gateway::Gateway::notify`]; the SNMP
/// side sends them.
#[derive(Debug, Clone)]
pub enum Notification {
    ProductStart,
    ProductStop,
    ProductError {
        message: String,
    },
    /// A fault that mwProductError reported and that can end has ended
    /// (the bases on disk load again, a store writes again): the NMS can
    /// close the alarm without polling.
    ProductErrorCleared {
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

/// What a notification says, for the log line that records it (the
/// varbinds carry the same facts to the trap receiver).
impl std::fmt::Display for Notification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Notification::ProductStart => f.write_str("Mailward started"),
            Notification::ProductStop => f.write_str("Mailward is stopping"),
            Notification::ProductError { message } => f.write_str(message),
            Notification::ProductErrorCleared { message } => f.write_str(message),
            Notification::ConfigReloaded { ok: true, message } => f.write_str(message),
            Notification::ConfigReloaded { ok: false, message } => write!(f, "refused: {message}"),
            Notification::BasesReloaded => f.write_str("new signature bases in use"),
            Notification::UpdateStatus { result, message } => {
                // The MIB's own names, as mwUpdateLastResult gives them.
                let result = mailward_metrics::snmp::UPDATE_RESULT_NAMES
                    .get(*result as usize)
                    .copied()
                    .unwrap_or("unknown");
                write!(f, "{result}: {message}")
            }
            Notification::ObsoleteBases => f.write_str("the signature bases are obsolete"),
            Notification::AlertThreshold {
                name,
                value,
                threshold,
                raised,
            } => {
                // The unit where the name does not say it (walkT 7: the
                // free spool is shown in MiB under a name ending in bytes).
                let unit = match name.as_str() {
                    "spool_free_bytes" => " MiB",
                    "infected_share_percent" | "dns_failed_percent" => " %",
                    _ => "",
                };
                write!(
                    f,
                    "{name} {} ({value}{unit}, threshold {threshold}{unit})",
                    if *raised { "raised" } else { "cleared" }
                )
            }
        }
    }
}

/// A configuration was put in force by a reload, or a reload refused.
pub struct ConfigReloaded<'a> {
    pub ok: bool,
    pub message: &'a str,
}

impl ConfigReloaded<'_> {
    pub fn emit(&self, gw: &crate::gateway::Gateway) {
        let cfg = gw.config();
        let groups: Vec<&str> = cfg.group.keys().map(String::as_str).collect();
        gw.stats.record(&Event::ConfigLoaded {
            ok: self.ok,
            reload: true,
            at: chrono::Utc::now().timestamp(),
            groups: &groups,
        });
        if self.ok {
            tracing::info!(target: "config", origin = %cfg.origin, "Configuration reloaded.");
        } else {
            tracing::error!(target: "config", "{}", self.message);
        }
        gw.notify(Notification::ConfigReloaded {
            ok: self.ok,
            message: self.message.to_string(),
        });
    }
}

/// An update (or rollback) of the signature bases was attempted.
pub struct UpdateAttempted<'a> {
    pub result: crate::check::bases::UpdateResult,
    pub message: &'a str,
}

impl UpdateAttempted<'_> {
    pub fn emit(&self, gw: &crate::gateway::Gateway) {
        gw.stats.record(&Event::UpdateAttempted {
            result: self.result as usize,
            at: chrono::Utc::now().timestamp(),
        });
        // A refused update is worth a look, as a refused reload is.
        let result = self.result.name();
        if self.result == crate::check::bases::UpdateResult::Error {
            tracing::warn!(target: "admin", result = %result, "{}", self.message);
        } else {
            tracing::info!(target: "admin", result = %result, "{}", self.message);
        }
        gw.notify(Notification::UpdateStatus {
            result: self.result,
            message: self.message.to_string(),
        });
    }
}

/// An outbound connection's TCP connect starts: from now it counts as an
/// open outbound session (and as one opened), greeting or not, until
/// [`OutboundSessionClosed`], as an inbound one counts from its accept.
pub struct OutboundSessionStarted;

impl OutboundSessionStarted {
    pub fn emit(&self, stats: &Stats) {
        stats.record(&Event::SessionOpened {
            direction: Direction::Out,
        });
    }
}

/// An outbound session to a next hop was greeted and is ready for mail
/// (it was counted open when its connect started:
/// [`OutboundSessionStarted`]).
pub struct OutboundSessionOpened<'a> {
    pub peer: &'a str,
    /// What STARTTLS negotiated, if it did.
    pub tls: Option<&'a crate::delivery::tls::TlsInfo>,
    /// The route's `tls`.
    pub tls_mode: crate::config::TlsMode,
    /// `may`: STARTTLS failed or was refused; this connection is plain.
    pub fell_back: bool,
}

impl OutboundSessionOpened<'_> {
    pub fn emit(&self, stats: &Stats) {
        let result = match (self.tls, self.fell_back) {
            (Some(_), _) => "tls",
            (None, true) => "fallback",
            (None, false) => "plain",
        };
        stats.record(&Event::OutboundTls { result });
        match self.tls {
            Some(t) => tracing::debug!(target: "delivery", peer = %self.peer, tls = %t,
                "Connected to the next hop."),
            None => tracing::debug!(target: "delivery", peer = %self.peer, tls = "none",
                tls_mode = self.tls_mode.as_str(), "Connected to the next hop."),
        }
    }
}

/// `encrypt`/`verify`: the next hop could not give the TLS required.
pub struct OutboundTlsFailed<'a> {
    /// The message the connection was for: an administrator grepping its
    /// queue ID sees why it was deferred.
    pub queue_id: &'a QueueId,
    pub peer: &'a str,
    pub error: &'a dyn std::fmt::Display,
}

impl OutboundTlsFailed<'_> {
    pub fn emit(&self, stats: &Stats) {
        stats.record(&Event::OutboundTls { result: "failed" });
        tracing::warn!(target: "delivery", queue_id = %self.queue_id, peer = %self.peer, error = %self.error,
            "TLS required but not had; delivery to this hop is deferred.");
    }
}

/// A delivery destination was suspended after connection-level failures
/// in a row ([`crate::delivery::suspend`]), or again after its probe
/// failed: its due mail is deferred without connecting until `until`.
pub struct DestinationSuspended<'a> {
    pub destination: &'a crate::delivery::route::Destination,
    pub until: chrono::DateTime<chrono::Utc>,
    pub failures: u32,
    pub last_error: &'a str,
    /// A probe failed: suspended again, already counted as suspended.
    pub again: bool,
}

impl DestinationSuspended<'_> {
    pub fn emit(&self, stats: &Stats) {
        stats.record(&Event::DestinationSuspended { again: self.again });
        let until = self.until.format("%Y-%m-%dT%H:%M:%SZ");
        tracing::warn!(target: "delivery", destination = %self.destination, failures = self.failures,
            until = %until, last_error = %self.last_error,
            "Destination suspended: its mail is deferred without connecting until then, when one attempt probes it.");
    }
}

/// Why a suspended destination was let go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumedBy {
    /// A probe got through.
    Probe,
    /// It had not failed for an hour and was forgotten.
    Forgotten,
    /// An administrator's `queue flush`.
    Flush,
}

/// A suspended destination was let go.
pub struct DestinationResumed<'a> {
    pub destination: &'a crate::delivery::route::Destination,
    pub by: ResumedBy,
}

impl DestinationResumed<'_> {
    pub fn emit(&self, stats: &Stats) {
        stats.record(&Event::DestinationResumed);
        match self.by {
            ResumedBy::Forgotten => {
                tracing::info!(target: "delivery", destination = %self.destination,
                "Destination suspension forgotten after an hour without attempts; the next attempt connects.")
            }
            ResumedBy::Probe => tracing::info!(target: "delivery", destination = %self.destination,
                "Destination suspension lifted: a connection got through."),
            ResumedBy::Flush => tracing::info!(target: "delivery", destination = %self.destination,
                "Destination suspension lifted by queue flush; its mail connects again."),
        }
    }
}

/// An outbound session (in use or idle) was closed.
pub struct OutboundSessionClosed;

impl OutboundSessionClosed {
    pub fn emit(&self, stats: &Stats) {
        stats.record(&Event::SessionClosed {
            direction: Direction::Out,
        });
    }
}

pub struct MessageAccepted<'a> {
    pub envelope: &'a Envelope,
}

impl MessageAccepted<'_> {
    /// Logs the acceptance. It is counted with the message's verdict
    /// ([`MessageChecked`] with `accepted`), in one step, so that no
    /// snapshot shows the message received without its verdict.
    pub fn log(&self) {
        let e = self.envelope;
        // forwarded_by and upstream_id only when an MTA forwarded the
        // client (an absent Option is not written).
        // The session when one gives the 250 (none for a milter's or a
        // recheck's); after queue_id, where greps of this line look.
        tracing::info!(target: "smtp", queue_id = %e.id, session = session().map(tracing::field::display),
            client = %e.client_ip,
            from = %sender(&e.mail_from), rcpts = e.rcpts.len(), size = e.size, mode = e.mode().as_str(),
            forwarded_by = e.forwarded_by.map(tracing::field::display),
            upstream_id = e.upstream_id.as_deref(), "Message accepted.");
    }
}

/// The envelope sender as the docs, `quarantine list` and the notices
/// write it: `<>` for the null sender, so that `grep 'from=<>'` finds the
/// bounces (walkAD 11: it was `from=""`).
pub fn sender(mail_from: &str) -> &str {
    if mail_from.is_empty() {
        "<>"
    } else {
        mail_from
    }
}

/// Addresses a log line names at most; the rest are counted.
pub const MAX_LOGGED_ADDRESSES: usize = 5;

/// Up to [`MAX_LOGGED_ADDRESSES`] of `addresses`, comma-separated, then
/// ` +N more`: `grep ADDRESS` finds the line of a blocked or quarantined
/// recipient (walkAD 4), and a message to 1,000 recipients writes no
/// 30 kB line.
pub fn some_addresses<'a>(addresses: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::new();
    let mut more = 0usize;
    for (n, a) in addresses.into_iter().enumerate() {
        if n < MAX_LOGGED_ADDRESSES {
            if n > 0 {
                out.push(',');
            }
            out.push_str(a);
        } else {
            more += 1;
        }
    }
    if more > 0 {
        out.push_str(&format!(" +{more} more"));
    }
    out
}

/// An inbound session's deadline passed; it gets 421 and is closed.
pub struct SessionTimedOut<'a> {
    pub client: IpAddr,
    pub phase: TimeoutPhase,
    /// The shorter stress-mode timeouts applied.
    pub stress: bool,
    /// The transaction open when the deadline passed: its sender and its
    /// recipients so far, so that `grep from=SENDER` finds a message lost
    /// to a timeout in DATA too (walkAI 13).
    pub transaction: Option<(&'a str, usize)>,
}

impl SessionTimedOut<'_> {
    pub fn emit(&self, stats: &Stats) {
        stats.record(&Event::SessionTimedOut {
            phase: self.phase,
            stress: self.stress,
        });
        tracing::info!(target: "smtp", session = session().map(tracing::field::display), client = %self.client, phase = self.phase.as_str(),
            stress = self.stress, from = self.transaction.map(|t| sender(t.0)),
            rcpts = self.transaction.map(|t| t.1), "Session timed out; closing it.");
    }
}

/// What a refusal counted in `mailward_messages_rejected_total` refused:
/// the log line says it, beside the recipients refused one by one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The whole session: at connect (access rules, DNSBL, session
    /// limits), at HELO/EHLO (access rules), or closed for too many errors.
    Session,
    /// A transaction: its MAIL, or its message at or after DATA.
    Transaction,
}

impl Refused {
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Session => "session",
            Refused::Transaction => "transaction",
        }
    }
}

/// A session or a transaction refused with `reply`: counts once in
/// `mailward_messages_rejected_total{reason}`, and one log line.
pub struct MessageRejected<'a> {
    pub reason: RejectReason,
    pub client: IpAddr,
    pub reply: &'a str,
    pub refused: Refused,
    /// What `reason` does not say, where it is one of several causes
    /// (`spool_space` for a `tempfail` that is the spool's disk); the
    /// statistics label stays `reason`.
    pub cause: Option<&'static str>,
}

/// What lets an administrator find a refused transaction in the MTA's
/// log too (walkX finding 5): the sender and the number of recipients
/// (Postfix's reject lines name `from=` and `to=`), our queue ID once the
/// message has one, and the MTA's own queue ID where it told us (the
/// milter macro `i`, XFORWARD's IDENT).
#[derive(Default)]
pub struct RefusedTransaction<'a> {
    pub queue_id: Option<&'a QueueId>,
    pub upstream_id: Option<&'a str>,
    pub from: &'a str,
    pub rcpts: usize,
}

impl MessageRejected<'_> {
    pub fn emit(&self, stats: &Stats) {
        self.emit_with(stats, None);
    }

    /// As [`Self::emit`], with the transaction's fields on the log line.
    pub fn emit_for(&self, stats: &Stats, tx: &RefusedTransaction<'_>) {
        self.emit_with(stats, Some(tx));
    }

    /// Counts the refusal and logs it; with `tx`, the log line carries
    /// the transaction's fields (sender, recipients, queue IDs).
    /// From an inbound SMTP session the line carries its `session=` ID
    /// (a milter connection has none).
    pub fn emit_with(&self, stats: &Stats, tx: Option<&RefusedTransaction<'_>>) {
        stats.record(&Event::MessageRejected {
            reason: self.reason,
        });
        tracing::info!(target: "smtp", session = session().map(tracing::field::display), client = %self.client, reason = self.reason.as_str(),
            cause = self.cause, refused = self.refused.as_str(),
            queue_id = tx.and_then(|t| t.queue_id).map(tracing::field::display),
            upstream_id = tx.and_then(|t| t.upstream_id),
            from = tx.map(|t| tracing::field::display(sender(t.from))),
            rcpts = tx.map(|t| t.rcpts),
            reply = %self.reply,
            "Refused in the session.");
    }
}

/// One RCPT refused with `reply`: counts in
/// `mailward_recipients_rejected_total{reason}`, and one log line. Its
/// transaction is counted once, when it ends (see [`TransactionRefused`]).
pub struct RecipientRejected<'a> {
    pub reason: RejectReason,
    pub client: IpAddr,
    pub reply: &'a str,
    /// The open transaction's sender, so that `grep from=SENDER` finds
    /// the refusals of its recipients too (walkY 3).
    pub from: Option<&'a str>,
}

/// The recipient a refusal is about, for its log line: the address
/// (`grep to=ADDRESS`, as Postfix's reject lines have it) and the MTA's
/// queue ID where it told us (the milter macro `i`; walkAF 7: a milter's
/// refused recipients were found neither by address nor by Postfix's
/// queue ID).
pub struct RefusedRecipient<'a> {
    pub to: &'a str,
    pub upstream_id: Option<&'a str>,
}

impl RecipientRejected<'_> {
    pub fn emit(&self, stats: &Stats) {
        self.emit_with(stats, None);
    }

    /// As [`Self::emit`], naming the recipient and the MTA's queue ID.
    pub fn emit_for(&self, stats: &Stats, rcpt: &RefusedRecipient<'_>) {
        self.emit_with(stats, Some(rcpt));
    }

    /// Counts the refusal only: one of a run logged once for its
    /// transaction ([`RecipientsOverLimit`]).
    pub fn count(&self, stats: &Stats) {
        stats.record(&Event::RecipientRejected {
            reason: self.reason,
        });
    }

    fn emit_with(&self, stats: &Stats, rcpt: Option<&RefusedRecipient<'_>>) {
        self.count(stats);
        tracing::info!(target: "smtp", session = session().map(tracing::field::display), client = %self.client, reason = self.reason.as_str(),
            refused = "recipient",
            upstream_id = rcpt.and_then(|r| r.upstream_id),
            from = self.from.map(|f| tracing::field::display(sender(f))),
            to = rcpt.map(|r| tracing::field::display(r.to)),
            reply = %self.reply, "Refused in the session.");
    }
}

/// The recipients of one transaction refused past a bound, after the
/// first (logged on its own with [`RecipientRejected`]), each counted
/// with [`RecipientRejected::count`]: one line when the transaction ends,
/// not one per RCPT (walkAH 4: a client sending 200,000 of them wrote 30 MB
/// of log; walkAI 7: the milter's bound did so still).
pub struct RecipientsOverLimit<'a> {
    pub client: IpAddr,
    /// The bound, as the line names it (`the milter's 10000 per message`).
    pub limit: &'a str,
    pub from: &'a str,
    pub upstream_id: Option<&'a str>,
    /// Every recipient refused past the bound, the first one included.
    pub count: u32,
    pub reply: &'a str,
}

impl RecipientsOverLimit<'_> {
    /// Logs the line when more than the first was refused.
    pub fn emit(&self) {
        if self.count > 1 {
            tracing::info!(target: "smtp", client = %self.client, reason = "limit",
                refused = "recipient", upstream_id = self.upstream_id, from = %sender(self.from),
                count = self.count, reply = %self.reply,
                "Recipients over {} refused in this transaction (the first one logged on its own).",
                self.limit);
        }
    }
}

/// A transaction whose recipients were refused ended without a message
/// accepted (no valid recipients at DATA, RSET, a new greeting, the end of
/// the session): it counts once in `mailward_messages_rejected_total`, with
/// the reason of its first refused recipient. Its refusals were each
/// logged already, so this says so at debug level only.
pub struct TransactionRefused {
    pub reason: RejectReason,
    pub client: IpAddr,
}

impl TransactionRefused {
    pub fn emit(&self, stats: &Stats) {
        stats.record(&Event::MessageRejected {
            reason: self.reason,
        });
        tracing::debug!(target: "smtp", client = %self.client, reason = self.reason.as_str(),
            "Transaction ended without a message after its recipients were refused; counted as refused.");
    }
}

/// The checks of one message are over and its plans decided: the verdict
/// is counted once for the message and once per policy group, and one raw
/// record is written per recipient (with its group's status).
pub struct MessageChecked<'a> {
    pub envelope: &'a Envelope,
    pub verdict: &'a Verdict,
    /// False when the message was refused in the session.
    pub accepted: bool,
}

impl MessageChecked<'_> {
    /// Counts and logs the verdict.
    pub fn emit(&self, stats: &Stats, level: SpamLevel) {
        self.count(stats, level);
        self.log();
    }

    /// Counts the verdict and writes the raw records. For an accepted
    /// message, only once its copies and its fate are stored: one answered
    /// 451 because a copy could not be written comes again, and is counted
    /// then. The spam verdict is counted at `level`, `[policy]
    /// spam_level`, whatever level the groups judged it at: their own
    /// verdicts go to the group counters (walkBW 1: a message sent only
    /// to a `maximum` group counted as its `spam`).
    pub fn count(&self, stats: &Stats, level: SpamLevel) {
        let e = self.envelope;
        let v = self.verdict;
        let (av, spam) = v.statuses();
        let spam = spam.map(|_| {
            v.report
                .spam
                .as_ref()
                .map_or(SpamStatus::Clean, |ev| ev.status(level))
        });
        let viruses = v.report.detections();
        let filter_rules = v.report.filtered_parts();
        let groups: Vec<GroupOutcome> = v
            .groups
            .iter()
            .map(|g| GroupOutcome {
                group: g.partition.group.as_str(),
                infected: g.plan.av == Some(AvStatus::Infected),
                spam: matches!(
                    g.plan.spam,
                    Some(SpamStatus::Spam | SpamStatus::Blacklisted)
                ),
                refused: !self.accepted,
            })
            .collect();
        let spam_tests: Vec<String> = v
            .report
            .spam
            .as_ref()
            .map(|e| e.test_names().into_iter().map(str::to_string).collect())
            .unwrap_or_default();
        let checked = Event::ScanFinished {
            av,
            spam,
            spam_score: v.report.spam.as_ref().map(|e| e.score()),
            viruses: &viruses,
            filter_rules: &filter_rules,
            spam_tests: &spam_tests,
            sender: &e.mail_from,
            client: e.client_ip,
            duration: v.report.duration,
            groups: &groups,
            mode: e.mode(),
        };
        if self.accepted {
            stats.record_all(&[Event::MessageAccepted { size: e.size }, checked]);
        } else {
            stats.record(&checked);
        }
        for (g, status, detail) in self.shown() {
            for &i in &g.partition.rcpts {
                let Some(r) = e.rcpts.get(i) else { continue };
                let record = RawRecord {
                    time: e.received_at,
                    size: e.size,
                    sender: e.mail_from.clone(),
                    recipient: r.address.clone(),
                    status: status.clone(),
                    detail: detail.clone(),
                    client_ip: e.client_ip.to_string(),
                    queue_id: e.id.0.clone(),
                    group: g.partition.group.clone(),
                    mode: e.mode().as_str(),
                };
                if let Err(err) = stats.record_raw(record) {
                    tracing::warn!(target: "app", queue_id = %e.id, error = %err, "Cannot write a raw record.");
                }
            }
        }
        if v.report
            .spam
            .as_ref()
            .is_some_and(|ev| ev.classifier_unavailable)
        {
            stats.record(&Event::SpamClassifierUnavailable);
        }
    }

    /// Logs the verdict: a line per group, and the spam tests.
    pub fn log(&self) {
        let e = self.envelope;
        let v = self.verdict;
        for (g, status, detail) in self.shown() {
            tracing::info!(target: "scan", queue_id = %e.id, group = %g.partition.label(),
                rcpts = g.partition.rcpts.len(), status = %status, detail = %detail,
                duration_ms = v.report.duration.as_millis() as u64,
                accepted = self.accepted, "Message checked.");
        }
        if let Some(ev) = &v.report.spam {
            let classifier = match (ev.probability, ev.classifier_unavailable) {
                (Some(p), _) => format!("{p:.4}"),
                (None, true) => "unavailable".into(),
                (None, false) => "abstained".into(),
            };
            tracing::info!(target: "scan", queue_id = %e.id, score = %format!("{:.1}", ev.shown_score()),
                rating = ev.rating(), classifier = %classifier,
                formal = ev.formal.unwrap_or("-"), tests = %ev.weighed(), "Spam tests.");
        }
    }

    /// Each group with the status it shows and the first of its worst
    /// findings (the AV ones come first).
    fn shown(&self) -> Vec<(&crate::policy::verdict::Judged, String, String)> {
        let v = self.verdict;
        v.groups
            .iter()
            .map(|g| {
                let detail = v
                    .report
                    .findings_for(&g.partition.group, &g.partition.policy)
                    .fold(None, |best: Option<&crate::check::Finding>, f| match best {
                        Some(b) if b.kind >= f.kind => Some(b),
                        _ => Some(f),
                    })
                    .map(|f| f.name.clone())
                    .unwrap_or_default();
                (g, g.plan.shown_status(), detail)
            })
            .collect()
    }
}

/// A group's recipients do not get the message (policy `block`).
pub struct MessageBlocked<'a> {
    pub id: &'a QueueId,
    /// The group ("" = the default group).
    pub group: &'a str,
    pub status: &'a str,
    /// The group's recipients, as [`some_addresses`] writes them.
    pub to: &'a str,
    pub rcpts: usize,
    /// The first group blocked for this message (it counts once).
    pub first: bool,
}

impl MessageBlocked<'_> {
    pub fn emit(&self, stats: &Stats) {
        stats.record(&Event::MessageBlocked {
            group: self.group,
            first: self.first,
        });
        tracing::info!(target: "policy", queue_id = %self.id, group = %group_name(self.group),
            status = %self.status, rcpts = self.rcpts, to = %self.to, "Message blocked for these recipients: accepted, not delivered.");
    }
}

/// A message to be delivered came with verdict headers this gateway did
/// not write; the delivered copies go without them
/// ([`crate::policy::verdict_headers`]).
pub struct ForeignVerdictHeaders<'a> {
    pub id: &'a QueueId,
    /// How many fields.
    pub fields: usize,
}

impl ForeignVerdictHeaders<'_> {
    pub fn emit(&self, stats: &Stats) {
        stats.record(&Event::ForeignVerdictHeaders);
        // The names come from the list that strips them, so that the
        // sentence cannot fall behind a new verdict header.
        tracing::info!(target: "policy", queue_id = %self.id, fields = self.fields,
            "The message came with verdict headers ({}, Authentication-Results in our name) not written here; the copies delivered go without them.",
            crate::policy::verdict_headers::NAMES.join(", "));
    }
}

/// A copy of a message was kept in quarantine.
pub struct MessageQuarantined<'a> {
    /// The quarantine entry (the queue ID, or ID.N for one group's copy).
    pub id: &'a QueueId,
    /// The group ("" = the default group).
    pub group: &'a str,
    pub reason: &'a str,
    pub bytes: u64,
    /// The group's recipients, as [`some_addresses`] writes them.
    pub to: &'a str,
}

impl MessageQuarantined<'_> {
    pub fn emit(&self, stats: &Stats) {
        stats.record(&Event::MessageQuarantined { group: self.group });
        // The message's queue ID too (the entry's without its `.N`), as on
        // every other line about it: a reader keyed on `queue_id=` missed
        // this one (walkAP F3).
        let queue_id = self.id.0.split('.').next().unwrap_or_default();
        tracing::info!(target: "backup", queue_id = %queue_id, quarantine_id = %self.id, group = %group_name(self.group),
            reason = %self.reason, size = self.bytes, to = %self.to, "Message copied to quarantine.");
    }
}

/// A quarantined message was released by an administrator.
pub struct QuarantineReleased<'a> {
    pub entry: &'a str,
    pub queue_id: &'a QueueId,
    pub to: &'a [String],
}

impl QuarantineReleased<'_> {
    pub fn emit(&self, stats: &Stats) {
        self.emit_by(stats, None);
    }

    /// As [`Self::emit`], naming who released it (`by=USER(UID)`, the admin
    /// socket's peer): the audit trail of "who let the virus through"
    /// (walkAD 5), since several people may write to the socket.
    pub fn emit_by(&self, stats: &Stats, by: Option<&str>) {
        stats.record(&Event::QuarantineReleased);
        tracing::info!(target: "admin", quarantine_id = %self.entry, queue_id = %self.queue_id,
            to = %self.to.join(","), by, "Quarantined message released.");
    }
}

/// A copy of a message was kept in the archive.
pub struct MessageArchived<'a> {
    pub id: &'a QueueId,
    pub direction: crate::store::Direction,
    pub bytes: u64,
}

impl MessageArchived<'_> {
    pub fn emit(&self, stats: &Stats) {
        stats.record(&Event::MessageArchived {
            direction: match self.direction {
                crate::store::Direction::Incoming => m::ArchiveDirection::Incoming,
                crate::store::Direction::Outgoing => m::ArchiveDirection::Outgoing,
            },
        });
        tracing::info!(target: "backup", queue_id = %self.id, direction = self.direction.as_str(),
            size = self.bytes, "Message copied to the archive.");
    }
}

/// A notification about message `about` was queued.
pub struct NotificationQueued<'a> {
    pub about: &'a QueueId,
    pub id: &'a QueueId,
    pub to: crate::policy::plan::NotifyTo,
    pub address: &'a str,
}

impl NotificationQueued<'_> {
    pub fn emit(&self, stats: &Stats) {
        use crate::policy::plan::NotifyTo;
        stats.record(&Event::NotificationSent {
            to: match self.to {
                NotifyTo::Sender => m::NotifyTarget::Sender,
                NotifyTo::Recipients => m::NotifyTarget::Recipients,
                NotifyTo::Admin => m::NotifyTarget::Admin,
            },
        });
        tracing::info!(target: "notif", queue_id = %self.about, notification_id = %self.id,
            to = self.to.as_str(), address = %self.address, "Notification queued.");
    }
}

/// A scan stopped unpacking because all workers together held
/// `limits.scan_memory`.
pub struct ScanMemoryRefused<'a> {
    pub id: &'a QueueId,
}

impl ScanMemoryRefused<'_> {
    pub fn emit(&self, stats: &Stats) {
        stats.record(&Event::ScanMemoryRefused);
        tracing::warn!(target: "scan", queue_id = %self.id,
            "Scan memory of all workers (limits.scan_memory) in use: this message was not unpacked in full; its status is av/error.");
    }
}

pub struct DeliveryAttempted<'a> {
    pub id: &'a QueueId,
    pub rcpt: &'a str,
    pub result: DeliveryResult,
    pub relay: &'a str,
    pub detail: &'a str,
    /// For a delivery: the TLS version and cipher, or "none".
    pub tls: &'a str,
    /// The message is a notice of ours (a DSN or a notification): when it
    /// fails, nothing more is sent about it (RFC 3461 6.2), so the log
    /// says that it is dropped.
    pub notice: bool,
}

impl DeliveryAttempted<'_> {
    pub fn emit(&self, stats: &Stats) {
        let domain = match self.result {
            // Only deferrals are ranked by domain: no allocation otherwise.
            DeliveryResult::Deferred => self
                .rcpt
                .rsplit_once('@')
                .map_or(String::new(), |(_, d)| d.to_ascii_lowercase()),
            _ => String::new(),
        };
        stats.record(&Event::DeliveryAttempted {
            result: self.result,
            rcpts: 1,
            bytes: 0,
            domain: &domain,
        });
        match self.result {
            DeliveryResult::Delivered => {
                tracing::info!(target: "delivery", queue_id = %self.id, to = %self.rcpt,
                relay = %self.relay, tls = %self.tls, reply = %self.detail, "Delivered.")
            }
            DeliveryResult::Deferred => {
                tracing::info!(target: "delivery", queue_id = %self.id, to = %self.rcpt,
                relay = %self.relay, reason = %self.detail, "Deferred; will retry.")
            }
            DeliveryResult::Bounced if self.notice => {
                tracing::warn!(target: "delivery", queue_id = %self.id, to = %self.rcpt,
                relay = %self.relay, reason = %self.detail,
                "Delivery of a notice (DSN or notification) failed for good; it is dropped, as no notice is sent about a notice.")
            }
            DeliveryResult::Bounced => {
                tracing::warn!(target: "delivery", queue_id = %self.id, to = %self.rcpt,
                relay = %self.relay, reason = %self.detail, "Delivery failed for good.")
            }
        }
    }
}

/// A next hop accepted the message for some recipients: the octets sent.
pub struct MessageSent<'a> {
    pub id: &'a QueueId,
    pub bytes: u64,
}

impl MessageSent<'_> {
    pub fn emit(&self, stats: &Stats) {
        stats.record(&Event::DeliveryAttempted {
            result: DeliveryResult::Delivered,
            rcpts: 0,
            bytes: self.bytes,
            domain: "",
        });
        tracing::debug!(target: "delivery", queue_id = %self.id, bytes = self.bytes, "Message sent.");
    }
}

/// A DSN was queued about message `about`.
pub struct DsnQueued<'a> {
    pub about: &'a QueueId,
    pub dsn: &'a QueueId,
    pub kind: &'a str,
    pub to: &'a str,
}

impl DsnQueued<'_> {
    pub fn emit(&self, stats: &Stats) {
        stats.record(&Event::NotificationSent {
            to: m::NotifyTarget::Dsn,
        });
        tracing::info!(target: "notif", queue_id = %self.about, dsn_id = %self.dsn, kind = self.kind,
            to = %self.to, "Delivery status notification queued.");
    }
}

/// A message left the queue (all recipients done, expired, or removed by an
/// administrator).
pub struct MessageRemoved<'a> {
    pub id: &'a QueueId,
    pub why: &'a str,
}

impl MessageRemoved<'_> {
    pub fn emit(&self) {
        tracing::info!(target: "delivery", queue_id = %self.id, why = self.why, "Message removed from the queue.");
    }
}

#[cfg(test)]
mod tests {
    use super::Notification;

    #[test]
    fn a_notification_reads_as_words_in_the_log() {
        let reload = Notification::ConfigReloaded {
            ok: false,
            message: "mw.toml:3: limits.max_rcpts: unknown key".into(),
        };
        assert_eq!(
            reload.to_string(),
            "refused: mw.toml:3: limits.max_rcpts: unknown key"
        );
        let alert = Notification::AlertThreshold {
            name: "queue_length".into(),
            value: 1200,
            threshold: 1000,
            raised: true,
        };
        assert_eq!(
            alert.to_string(),
            "queue_length raised (1200, threshold 1000)"
        );
        let update = Notification::UpdateStatus {
            result: crate::check::bases::UpdateResult::RolledBack,
            message: "back to the previous set".into(),
        };
        assert_eq!(update.to_string(), "rolledBack: back to the previous set");
    }
}
