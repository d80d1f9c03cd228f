//! Mailward, the SMTP filtering gateway: the daemon's library. `main.rs` is a
//! thin CLI over it; the end-to-end tests in `tests/` drive the binary.
#![forbid(unsafe_code)]

pub mod admin;
pub mod bases;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod dns;
pub mod envelope;
pub mod events;
pub mod files;
pub mod gateway;
pub mod logging;
pub mod metrics_http;
pub mod policy;
pub mod queue;
pub mod run;
pub mod scan;
pub mod screen;
pub mod smtp;
pub mod snmp;
pub mod spool;
pub mod stats_file;
pub mod tls;
