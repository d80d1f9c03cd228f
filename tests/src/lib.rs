//! The end-to-end harness of Mailward: it starts the real daemon and real
//! peers on free loopback ports (Postfix's smtp-sink as the next hop,
//! dnsmasq for DNS, swaks and smtp-source as clients, a raw client for
//! exact replies) in a temporary directory per test, and kills them all on
//! drop. It owns no test: those are in `tests/tests/`, one file per theme,
//! with their fixtures in `tests/resources/`.
//!
//! The daemon binary is taken from `$MAILWARD_BIN`, else from the
//! workspace's `target/release` or `target/debug`; `tests/run` builds it.
#![forbid(unsafe_code)]

pub mod config;
pub mod daemon;
pub mod dns;
pub mod failures;
pub mod load;
pub mod mail;
pub mod mime;
pub mod postfix;
pub mod prometheus;
pub mod redis;
pub mod rsyslog;
pub mod samples;
pub mod scripted;
pub mod sink;
pub mod smtp;
pub mod snmp;
pub mod stats;
pub mod tmpfs;
pub mod tools;

use std::time::Duration;

use anyhow::Result;

pub use config::Config;
pub use daemon::Daemon;
pub use dns::Dns;
pub use scripted::ScriptedServer;
pub use sink::{Sink, SinkMessage};
pub use smtp::{Reply, SmtpClient};
pub use tools::{
    bind_free_udp, free_port, read_resource, require, resource, swaks, wait_until, TestDir,
};

/// How long a relayed message may take to reach the next hop.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// The usual rig: a test directory, an smtp-sink, and a Mailward that
/// routes every recipient to that sink. Dropped in field order: daemon,
/// sink, directory.
pub struct Gateway {
    /// The daemon.
    pub daemon: Daemon,
    /// The next hop.
    pub sink: Sink,
    /// The config it was started with.
    pub config: Config,
    /// Where everything lives.
    pub dir: TestDir,
}

impl Gateway {
    /// Starts a sink and a daemon on the minimal config with route
    /// `* -> [127.0.0.1:SINKPORT]`, changed by `tweak`.
    pub fn start(name: &str, tweak: impl FnOnce(Config) -> Config) -> Result<Gateway> {
        let dir = TestDir::new(name)?;
        let sink = Sink::start(dir.path(), "sink")?;
        let config = tweak(Config::new(dir.path()).route_to_port("*", sink.port));
        let daemon = Daemon::start(&config)?;
        Ok(Gateway {
            daemon,
            sink,
            config,
            dir,
        })
    }

    /// The daemon's SMTP port.
    pub fn port(&self) -> u16 {
        self.daemon.port
    }

    /// A raw client, connected and greeted with 220.
    pub fn client(&self) -> Result<SmtpClient> {
        SmtpClient::connect_ok(self.port())
    }

    /// A raw client after a successful `EHLO client.test`.
    pub fn ehlo_client(&self) -> Result<SmtpClient> {
        let mut client = self.client()?;
        client.ehlo("client.test")?;
        Ok(client)
    }
}
