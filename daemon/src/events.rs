//! Typed events of the message path. Business code says what happened
//! (`MessageAccepted { .. }.emit(&stats)`), and the event does the
//! bookkeeping: it updates the statistics model, writes raw records and
//! logs (with the queue ID on every line about a message). No module
//! increments a counter by hand.

use crate::envelope::{Envelope, QueueId};
use mailward_metrics::event::{self as m, Direction};
use mailward_metrics::{Event, RawRecord, Stats};
use std::net::IpAddr;
use std::time::Duration;

pub use mailward_metrics::event::{
    AvStatus, DeliveryResult, RejectReason, SpamStatus, TimeoutPhase,
};

pub struct SessionOpened {
    pub client: std::net::SocketAddr,
}

impl SessionOpened {
    pub fn emit(&self, stats: &Stats) {
        stats.record(&Event::SessionOpened {
            direction: Direction::In,
        });
        tracing::debug!(target: "smtp", client = %self.client, "Session opened.");
    }
}

pub struct SessionClosed {
    pub client: std::net::SocketAddr,
    pub messages: u32,
}

impl SessionClosed {
    pub fn emit(&self, stats: &Stats) {
        stats.record(&Event::SessionClosed {
            direction: Direction::In,
        });
        tracing::debug!(target: "smtp", client = %self.client, messages = self.messages, "Session closed.");
    }
}

/// An outbound session to a next hop was opened.
pub struct OutboundSessionOpened<'a> {
    pub peer: &'a str,
}

impl OutboundSessionOpened<'_> {
    pub fn emit(&self, stats: &Stats) {
        stats.record(&Event::SessionOpened {
            direction: Direction::Out,
        });
        tracing::debug!(target: "delivery", peer = %self.peer, "Connected to the next hop.");
    }
}

pub struct MessageAccepted<'a> {
    pub envelope: &'a Envelope,
}

impl MessageAccepted<'_> {
    pub fn emit(&self, stats: &Stats) {
        let e = self.envelope;
        stats.record(&Event::MessageAccepted { size: e.size });
        tracing::info!(target: "smtp", queue_id = %e.id, client = %e.client_ip, from = %e.mail_from,
            rcpts = e.rcpts.len(), size = e.size, "Message accepted.");
    }
}

/// An inbound session's deadline passed; it gets 421 and is closed.
pub struct SessionTimedOut {
    pub client: IpAddr,
    pub phase: TimeoutPhase,
    /// The shorter stress-mode timeouts applied.
    pub stress: bool,
}

impl SessionTimedOut {
    pub fn emit(&self, stats: &Stats) {
        stats.record(&Event::SessionTimedOut {
            phase: self.phase,
            stress: self.stress,
        });
        tracing::info!(target: "smtp", client = %self.client, phase = self.phase.as_str(),
            stress = self.stress, "Session timed out; closing it.");
    }
}

pub struct MessageRejected<'a> {
    pub reason: RejectReason,
    pub client: IpAddr,
    pub reply: &'a str,
}

impl MessageRejected<'_> {
    pub fn emit(&self, stats: &Stats) {
        stats.record(&Event::MessageRejected {
            reason: self.reason,
        });
        tracing::info!(target: "smtp", client = %self.client, reason = self.reason.as_str(),
            reply = %self.reply, "Refused in the session.");
    }
}

/// The scan of one message is over: verdicts, statistics, and one raw record
/// per recipient.
pub struct ScanFinished<'a> {
    pub envelope: &'a Envelope,
    pub av: AvStatus,
    pub spam: Option<SpamStatus>,
    pub viruses: &'a [String],
    pub filter_rules: &'a [String],
    pub duration: Duration,
    /// The policy group the message fell in ("" = the default).
    pub group: &'a str,
}

impl ScanFinished<'_> {
    /// The status a raw record shows: the AV verdict unless it is clean,
    /// then the spam verdict (so a clean message shows `as/clean`, or
    /// `av/clean` when spam was not checked).
    pub fn status(&self) -> String {
        match (self.av, self.spam) {
            (AvStatus::Clean, Some(s)) => format!("as/{}", s.as_str()),
            (av, _) => format!("av/{}", av.as_str()),
        }
    }

    pub fn emit(&self, stats: &Stats) {
        let e = self.envelope;
        stats.record(&Event::ScanFinished {
            av: self.av,
            spam: self.spam,
            viruses: self.viruses,
            filter_rules: self.filter_rules,
            sender: &e.mail_from,
            client: e.client_ip,
            duration: self.duration,
            group: self.group,
        });
        let status = self.status();
        let detail = self
            .viruses
            .first()
            .or(self.filter_rules.first())
            .cloned()
            .unwrap_or_default();
        for r in &e.rcpts {
            let record = RawRecord {
                time: e.received_at,
                size: e.size,
                sender: e.mail_from.clone(),
                recipient: r.address.clone(),
                status: status.clone(),
                detail: detail.clone(),
                client_ip: e.client_ip.to_string(),
                queue_id: e.id.0.clone(),
                group: self.group.to_string(),
            };
            if let Err(err) = stats.record_raw(record) {
                tracing::warn!(target: "app", queue_id = %e.id, error = %err, "Cannot write a raw record.");
            }
        }
        tracing::info!(target: "scan", queue_id = %e.id, status = %status, detail = %detail,
            duration_ms = self.duration.as_millis() as u64, "Message scanned.");
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
}

impl DeliveryAttempted<'_> {
    pub fn emit(&self, stats: &Stats) {
        stats.record(&Event::DeliveryAttempted {
            result: self.result,
            rcpts: 1,
            bytes: 0,
        });
        match self.result {
            DeliveryResult::Delivered => {
                tracing::info!(target: "delivery", queue_id = %self.id, to = %self.rcpt,
                relay = %self.relay, reply = %self.detail, "Delivered.")
            }
            DeliveryResult::Deferred => {
                tracing::info!(target: "delivery", queue_id = %self.id, to = %self.rcpt,
                relay = %self.relay, reason = %self.detail, "Deferred; will retry.")
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
