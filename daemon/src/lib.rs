//! Mailward, the SMTP filtering gateway: the daemon's library. `main.rs` is a
//! thin CLI over it; the end-to-end tests in `tests/` drive the binary.
//!
//! The modules, in the order a message travels:
//! - [`smtp`]: the inbound sessions (access rules, anti-relay, limits, DATA,
//!   XFORWARD from an MTA in front); or [`milter`]: messages an MTA keeps,
//!   handed over by the milter protocol;
//! - [`spool`]: the durable log every accepted message is in before its 250;
//! - [`check`]: one parse of the message, then the checks (anti-virus and
//!   content filter, later spam), each adding to one report;
//! - [`policy`]: recipients by policy group, a plan per group (decided
//!   purely), and carrying it out (part edits, subject, quarantine, archive,
//!   notifications);
//! - [`delivery`]: the working queue, routing, the outbound sessions, DSNs.
//!
//! Beside them: [`config`], [`envelope`], [`events`] (what happened, counted
//! and logged), [`gateway`] (the state they share), [`run`] (start and
//! signals), [`standing`] (whether a client is one of ours), [`files`],
//! [`dns`] and [`text`], and [`ops`], the operator's side (CLI, admin
//! socket, logging, metrics endpoint, SNMP, statistics file).
#![forbid(unsafe_code)]
// Nothing that can fail at run time may panic: errors are returned, typed
// and with context (the tests may unwrap).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

// The path of a message, in its order (blank lines keep rustfmt from
// sorting these).
pub mod smtp;

pub mod milter;

pub mod spool;

pub mod check;

pub mod policy;

pub mod store;

pub mod delivery;

pub mod auth;
pub mod budget;
pub mod config;
pub mod dns;
pub mod envelope;
pub mod events;
pub mod files;
pub mod gateway;
pub mod maybe_tls;
pub mod ops;
pub mod run;
pub mod standing;
pub mod text;
