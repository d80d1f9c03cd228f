//! Typed events of the message path. Business code says what happened
//! (`MessageAccepted { .. }.emit()`), and the event does the bookkeeping:
//! today it writes the log line (with the queue ID on every line about a
//! message); the statistics model (metrics crate) will count the same events,
//! so no module ever increments a counter by hand.

use crate::envelope::{Envelope, QueueId};
use std::net::IpAddr;

/// Why a transaction was refused in the session; a bounded set, so that it
/// can label a metric.
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
        match self {
            RejectReason::Relay => "relay",
            RejectReason::Access => "access",
            RejectReason::Dnsbl => "dnsbl",
            RejectReason::Size => "size",
            RejectReason::Limit => "limit",
            RejectReason::Syntax => "syntax",
            RejectReason::Policy => "policy",
            RejectReason::Tempfail => "tempfail",
        }
    }
}

pub struct SessionOpened {
    pub client: std::net::SocketAddr,
}

impl SessionOpened {
    pub fn emit(&self) {
        tracing::debug!(target: "smtp", client = %self.client, "Session opened.");
    }
}

pub struct SessionClosed {
    pub client: std::net::SocketAddr,
    pub messages: u32,
}

impl SessionClosed {
    pub fn emit(&self) {
        tracing::debug!(target: "smtp", client = %self.client, messages = self.messages, "Session closed.");
    }
}

pub struct MessageAccepted<'a> {
    pub envelope: &'a Envelope,
}

impl MessageAccepted<'_> {
    pub fn emit(&self) {
        let e = self.envelope;
        tracing::info!(target: "smtp", queue_id = %e.id, client = %e.client_ip, from = %e.mail_from,
            rcpts = e.rcpts.len(), size = e.size, "Message accepted.");
    }
}

pub struct MessageRejected<'a> {
    pub reason: RejectReason,
    pub client: IpAddr,
    pub reply: &'a str,
}

impl MessageRejected<'_> {
    pub fn emit(&self) {
        tracing::info!(target: "smtp", client = %self.client, reason = self.reason.as_str(),
            reply = %self.reply, "Refused in the session.");
    }
}

/// The outcome of one delivery attempt for one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryResult {
    Delivered,
    Deferred,
    Bounced,
}

impl DeliveryResult {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryResult::Delivered => "delivered",
            DeliveryResult::Deferred => "deferred",
            DeliveryResult::Bounced => "bounced",
        }
    }
}

pub struct DeliveryAttempted<'a> {
    pub id: &'a QueueId,
    pub rcpt: &'a str,
    pub result: DeliveryResult,
    pub relay: &'a str,
    pub detail: &'a str,
    pub size: u64,
}

impl DeliveryAttempted<'_> {
    pub fn emit(&self) {
        match self.result {
            DeliveryResult::Delivered => tracing::info!(target: "delivery", queue_id = %self.id, to = %self.rcpt,
                relay = %self.relay, reply = %self.detail, "Delivered."),
            DeliveryResult::Deferred => tracing::info!(target: "delivery", queue_id = %self.id, to = %self.rcpt,
                relay = %self.relay, reason = %self.detail, "Deferred; will retry."),
            DeliveryResult::Bounced => tracing::warn!(target: "delivery", queue_id = %self.id, to = %self.rcpt,
                relay = %self.relay, reason = %self.detail, "Delivery failed for good."),
        }
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
    pub fn emit(&self) {
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
