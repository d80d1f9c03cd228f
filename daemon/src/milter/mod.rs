//! The milter listener (`[milter] listen`, `mailward milter`): Postfix or
//! Sendmail connects, hands over each message of its SMTP sessions over
//! the milter protocol (the `mailward-milter` codec), and gets the verdict
//! at end of message. The checks and the plans are the SMTP path's; what
//! the plans become for a message the MTA keeps is
//! [`crate::policy::milter`]. Nothing is spooled here but notifications.
//!
//! Connections are bounded (`[milter] max_connections`; more wait to be
//! accepted), each is read with a deadline, and a malformed packet closes
//! only its own connection, with a log line. Its log lines are in the
//! `smtp` category (the inbound side), with `peer` naming the MTA.

pub mod server;
mod session;
