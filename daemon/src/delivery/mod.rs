//! Delivery: taking deliverable messages from the spool to the next hop.
//! `client` speaks SMTP to one next hop over one connection and reports the
//! reply for each recipient; `dsn` builds the RFC 3464 delivery status
//! notifications sent back to senders; `tls` is outbound STARTTLS. Choosing the hop, queueing, retrying
//! and deciding when a DSN is due live in the modules beside them, not here.

pub mod attempt;
pub mod client;
pub mod downgrade;
pub mod dsn;
pub mod pool;
pub mod queue;
pub mod route;
pub mod runner;
pub mod suspend;
pub mod tls;
