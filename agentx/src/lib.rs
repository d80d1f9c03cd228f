//! An AgentX subagent (RFC 2741) that serves a read-only MIB view through
//! a master agent such as net-snmp's `snmpd`, and sends notifications
//! through it. It knows nothing about mail: its owner hands it a view
//! provider (a cheap function returning the current immutable snapshot)
//! and the subtrees to register.
//!
//! - [`pdu`]: the PDU codec (both byte orders in, network byte order out;
//!   decoding is total and bounded).
//! - [`OidView`] and the ready-made [`MibView`]: what is served.
//! - [`start`] / [`Subagent`]: the session task (connect, Open, Register,
//!   AddAgentCaps, serve Get/GetNext/GetBulk, refuse Sets, Ping, reconnect
//!   with capped back-off, queue notifications while down, Close on
//!   shutdown) and its [`Health`].
//!
//! Log target: `snmp`.

#![forbid(unsafe_code)]
// Nothing that can fail at run time may panic: errors are returned, typed
// and with context (the tests may unwrap).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod endpoint;
mod events;
mod handler;
mod health;
mod oid;
pub mod pdu;
mod session;
mod subagent;
mod value;
mod view;
mod wire;

#[cfg(test)]
mod codec_tests;

pub use endpoint::{Endpoint, EndpointError, AGENTX_TCP_PORT};
pub use health::Health;
pub use oid::{well_known, Oid, OidParseError, MAX_SUBIDS};
pub use subagent::{
    start, Registration, SentHook, Subagent, SubagentConfig, SubagentHandle, DEFAULT_PRIORITY,
    DEFAULT_QUEUE_LIMIT,
};
pub use value::{Value, VarBind};
pub use view::{fixed_view, MibView, MibViewBuilder, OidView, ViewProvider};
