//! What happens to the subagent, as typed events: each `emit` both logs
//! (tracing target `snmp`) and updates the health counters, so the session
//! code never logs or counts by hand. Nothing here decides anything.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tracing::{debug, error, info, warn};

use crate::endpoint::Endpoint;
use crate::health::HealthCounters;
use crate::oid::Oid;
use crate::pdu::{CloseReason, DecodeError, ErrorStatus};

/// How a failure to reach the master is told: each cause once per outage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Told {
    /// The first failure of an outage: a warning, counted.
    First,
    /// A cause not seen yet in this outage (snmpd came back with
    /// permissions that refuse us, another program took the port): a
    /// warning, counted.
    NewCause,
    /// A cause already told: debug level; it is still the last error.
    Again,
}

/// One thing that happened.
pub(crate) enum Event<'a> {
    /// Connecting or opening failed.
    ConnectFailed {
        endpoint: &'a Endpoint,
        error: &'a dyn std::fmt::Display,
        retry_in: Duration,
        told: Told,
    },
    /// The master refused to open a session.
    OpenRefused {
        endpoint: &'a Endpoint,
        status: ErrorStatus,
        told: Told,
    },
    /// A session is open.
    SessionOpened {
        endpoint: &'a Endpoint,
        session_id: u32,
    },
    /// A subtree is registered.
    Registered { subtree: &'a Oid, priority: u8 },
    /// The master refused a registration.
    RegistrationRefused {
        subtree: &'a Oid,
        priority: u8,
        status: ErrorStatus,
        /// When it is sent again (on this session).
        retry_in: Duration,
        /// The first refusal of this registration with this status on this
        /// session: logged as an error; the retries' refusals only at debug.
        first: bool,
    },
    /// The master refused an AddAgentCaps.
    AgentCapsRefused { id: &'a Oid, status: ErrorStatus },
    /// The session ended other than by our shutdown.
    SessionLost {
        endpoint: &'a Endpoint,
        session_id: u32,
        reason: &'a dyn std::fmt::Display,
    },
    /// The master closed the session with a Close-PDU.
    ClosedByMaster {
        session_id: u32,
        reason: CloseReason,
    },
    /// A request from the master could not be parsed; answered parseError.
    RequestUnparsable { error: &'a DecodeError },
    /// A response from the master could not be parsed; dropped.
    ResponseUnparsable { error: &'a DecodeError },
    /// A PDU type a master does not send to a subagent.
    UnexpectedPdu { pdu_type: u8 },
    /// A request was answered.
    RequestAnswered,
    /// A response could not be encoded (a view value too big, an OID too
    /// long); answered genErr.
    ResponseUnencodable { error: &'a dyn std::fmt::Display },
    /// A request of ours (Register, Notify...) could not be encoded (an OID
    /// too long, a value too big); skipped.
    RequestUnencodable {
        what: String,
        error: &'a dyn std::fmt::Display,
    },
    /// The master acknowledged a notification.
    NotificationSent,
    /// The master refused a notification.
    NotificationRefused { status: ErrorStatus, index: u16 },
    /// The queue was full: the oldest notification (not one of
    /// `SubagentConfig::kept`, unless all are) was dropped; `trap` is its
    /// snmpTrapOID.0.
    NotificationDropped { queue_limit: usize, trap: Oid },
    /// The session was closed on shutdown.
    SessionClosed { session_id: u32 },
}

impl Event<'_> {
    pub(crate) fn emit(self, health: &HealthCounters) {
        match self {
            Event::ConnectFailed {
                endpoint,
                error,
                retry_in,
                told,
            } => {
                let message = format!("cannot reach the AgentX master at {endpoint}: {error}");
                match told {
                    Told::First => {
                        warn!(target: "snmp", %endpoint, %error, retry_in = ?retry_in,
                            "Cannot reach the AgentX master; retrying in the background.");
                        health.error(message);
                    }
                    Told::NewCause => {
                        warn!(target: "snmp", %endpoint, %error, retry_in = ?retry_in,
                            "The AgentX master is still unreachable, now for another reason; retrying in the background.");
                        health.error(message);
                    }
                    Told::Again => {
                        debug!(target: "snmp", %endpoint, %error, retry_in = ?retry_in,
                            "AgentX master still unreachable.");
                        health.note(message);
                    }
                }
            }
            Event::OpenRefused {
                endpoint,
                status,
                told,
            } => {
                let message =
                    format!("the AgentX master at {endpoint} refused to open a session: {status}");
                if told == Told::Again {
                    debug!(target: "snmp", %endpoint, %status,
                        "The AgentX master still refuses to open a session.");
                    health.note(message);
                } else {
                    error!(target: "snmp", %endpoint, %status,
                        "The AgentX master refused to open a session.");
                    health.error(message);
                }
            }
            Event::SessionOpened {
                endpoint,
                session_id,
            } => {
                health.connected.store(true, Ordering::Relaxed);
                health.registered.store(0, Ordering::Relaxed);
                let before = health.sessions_opened.fetch_add(1, Ordering::Relaxed);
                if before > 0 {
                    HealthCounters::add(&health.reconnects);
                }
                info!(target: "snmp", %endpoint, session_id, reconnect = before > 0,
                    "AgentX session opened.");
            }
            Event::Registered { subtree, priority } => {
                HealthCounters::add(&health.registered);
                info!(target: "snmp", %subtree, priority, "AgentX subtree registered.");
            }
            Event::RegistrationRefused {
                subtree,
                priority,
                status,
                retry_in,
                first,
            } => {
                if !first {
                    debug!(target: "snmp", %subtree, priority, %status, retry_in = ?retry_in,
                        "The AgentX master still refuses the subtree.");
                } else if status == ErrorStatus::DUPLICATE_REGISTRATION {
                    error!(target: "snmp", %subtree, priority, %status, retry_in = ?retry_in,
                        "The AgentX master refused to register the subtree: another subagent \
                         registered it already at this priority. Nothing under it is served \
                         until it is registered; it is sent again after retry_in (and after a \
                         reconnect).");
                } else {
                    error!(target: "snmp", %subtree, priority, %status, retry_in = ?retry_in,
                        "The AgentX master refused to register the subtree. Nothing under it is \
                         served until it is registered; it is sent again after retry_in (and after \
                         a reconnect).");
                }
                health.error(format!(
                    "registration of {subtree} (priority {priority}) refused: {status}"
                ));
            }
            Event::AgentCapsRefused { id, status } => {
                warn!(target: "snmp", %id, %status,
                    "The AgentX master refused the agent capabilities.");
                health.error(format!("agent capabilities {id} refused: {status}"));
            }
            Event::SessionLost {
                endpoint,
                session_id,
                reason,
            } => {
                health.connected.store(false, Ordering::Relaxed);
                health.registered.store(0, Ordering::Relaxed);
                warn!(target: "snmp", %endpoint, session_id, %reason,
                    "AgentX session lost; reconnecting.");
                health.error(format!("AgentX session {session_id} lost: {reason}"));
            }
            Event::ClosedByMaster { session_id, reason } => {
                health.connected.store(false, Ordering::Relaxed);
                health.registered.store(0, Ordering::Relaxed);
                warn!(target: "snmp", session_id, reason = ?reason,
                    "The AgentX master closed the session; reconnecting.");
                health.error(format!(
                    "the AgentX master closed session {session_id} ({reason:?})"
                ));
            }
            Event::RequestUnparsable { error } => {
                warn!(target: "snmp", %error,
                    "Unparsable request from the AgentX master; answered parseError.");
                health.error(format!(
                    "unparsable request from the AgentX master: {error}"
                ));
            }
            Event::ResponseUnparsable { error } => {
                warn!(target: "snmp", %error,
                    "Unparsable response from the AgentX master; dropped.");
                health.error(format!(
                    "unparsable response from the AgentX master: {error}"
                ));
            }
            Event::UnexpectedPdu { pdu_type } => {
                warn!(target: "snmp", pdu_type,
                    "The AgentX master sent a PDU a master does not send; answered processingError.");
                health.error(format!("the AgentX master sent a PDU of type {pdu_type}"));
            }
            Event::RequestAnswered => {
                HealthCounters::add(&health.requests);
            }
            Event::ResponseUnencodable { error } => {
                error!(target: "snmp", %error,
                    "Cannot encode the answer to an AgentX request; answered genErr.");
                health.error(format!("cannot encode an AgentX response: {error}"));
            }
            Event::RequestUnencodable { what, error } => {
                error!(target: "snmp", what = %what, %error,
                    "Cannot encode an AgentX request; skipped.");
                health.error(format!("cannot encode {what}: {error}"));
            }
            Event::NotificationSent => {
                HealthCounters::add(&health.notifications_sent);
            }
            Event::NotificationRefused { status, index } => {
                error!(target: "snmp", %status, index,
                    "The AgentX master refused a notification.");
                health.error(format!("notification refused: {status} at varbind {index}"));
            }
            Event::NotificationDropped { queue_limit, trap } => {
                HealthCounters::add(&health.notifications_dropped);
                warn!(target: "snmp", queue_limit, dropped = %trap,
                    "Notification queue full; the oldest notification was dropped (a start notification is kept).");
            }
            Event::SessionClosed { session_id } => {
                health.connected.store(false, Ordering::Relaxed);
                health.registered.store(0, Ordering::Relaxed);
                info!(target: "snmp", session_id, "AgentX session closed.");
            }
        }
    }
}
