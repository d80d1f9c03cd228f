//! The operator's side of the gateway, beside the path of the mail: the
//! command line and the admin socket it talks to, logging, the Prometheus
//! endpoint, the SNMP subagent and notifications, and the statistics file.
//! None of these holds up mail: they read snapshots and send commands.

pub mod admin;
pub mod cli;
pub mod line_queue;
pub mod logging;
pub mod manual;
pub mod metrics_http;
pub mod open_alarms;
pub mod privileges;
pub mod queue_summary;
pub mod salvage_report;
pub mod scan_cli;
pub mod snmp;
pub mod spam_cli;
pub mod stats_file;
pub mod status;
pub mod stores;
pub mod syslog;
pub mod systemd;
