//! Inbound SMTP: the listeners, the session state machine, command parsing
//! and DATA assembly. It accepts mail into the spool and hands it to the
//! queue; it does not deliver.

pub mod command;
pub mod data;
pub mod server;
pub mod session;
mod space;
pub mod stream;
pub mod tls;
pub mod xforward;
