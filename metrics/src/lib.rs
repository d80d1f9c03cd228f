//! Mailward's one statistics model. Business code reports [`Event`]s; the
//! [`Stats`] model counts them; a [`Snapshot`] is an immutable copy of the
//! whole model taken in one step, and every rendering (Prometheus text, the
//! stats file, the SNMP view) reads a snapshot, so two renderings of one
//! snapshot always agree. The [`catalogue`] declares each statistic once.
#![forbid(unsafe_code)]
// Nothing that can fail at run time may panic: errors are returned, typed
// and with context (the tests may unwrap).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod catalogue;
pub mod event;
pub mod group;
pub mod mib;
pub mod model;
pub mod process;
pub mod prometheus;
pub mod raw;
pub mod reference;
pub mod rotate;
pub mod snapshot;
pub mod snmp;
pub mod top;

pub use catalogue::{Category, Kind, Stat, StatId, TopId, CATALOGUE, TOP_TABLES};
pub use event::Event;
pub use model::{Gauges, Stats};
pub use raw::{RawLog, RawRecord};
pub use rotate::RotatingFile;
pub use snapshot::Snapshot;

#[cfg(test)]
mod tests;
