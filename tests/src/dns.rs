//! A private DNS server for test zones: `dnsmasq` on a free loopback port,
//! answering only from its command line (no upstream, no /etc/hosts), and
//! authoritative for `.test` so that unknown names there get NXDOMAIN (a
//! DNSBL miss) rather than REFUSED.

use std::fs::File;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::give_up;
use anyhow::{bail, Context, Result};

use crate::tools::{self, free_port, require, wait_until, READY_TIMEOUT};

/// The name the readiness probe asks for.
const PROBE_NAME: &str = "ready.mailward.test";

/// A running dnsmasq.
pub struct Dns {
    /// The port, UDP and TCP.
    pub port: u16,
    /// dnsmasq's log (it logs every query).
    log_path: PathBuf,
    /// The process.
    child: Child,
}

impl Dns {
    /// Starts dnsmasq with the given record options, e.g.
    /// `--mx-host=mx.test,mail.mx.test,10`, `--host-record=mail.mx.test,127.0.0.1`,
    /// `--txt-record=...`.
    ///
    /// Another port is tried when dnsmasq found its port taken
    /// ([`tools::on_free_ports`]).
    pub fn start(dir: &Path, records: &[&str]) -> Result<Dns> {
        tools::on_free_ports(
            || Dns::start_at(dir, free_port(), records),
            |e| e.contains("Address already in use"),
        )
    }

    /// The same on a given port (e.g. where a dead server was).
    pub fn start_at(dir: &Path, port: u16, records: &[&str]) -> Result<Dns> {
        let program = require("dnsmasq", "dnsmasq-base")?;
        let log_path = dir.join("dnsmasq.log");
        let log = File::options().create(true).append(true).open(&log_path)?;
        let child = Command::new(program)
            .args([
                "--no-daemon",
                &format!("--port={port}"),
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--no-resolv",
                "--no-hosts",
                "--no-poll",
                "--conf-file=/dev/null",
                "--pid-file=",
                "--log-queries",
                "--local=/test/",
                &format!("--host-record={PROBE_NAME},127.0.0.1"),
            ])
            .args(records)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting dnsmasq")?;
        let mut dns = Dns {
            port,
            log_path,
            child,
        };
        dns.wait_ready()?;
        Ok(dns)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let port = self.port;
        let log_path = self.log_path.clone();
        let child = &mut self.child;
        wait_until("dnsmasq to answer", READY_TIMEOUT, || {
            if let Some(status) = child.try_wait()? {
                give_up!("dnsmasq exited ({status}): {}", tools::tail(&log_path, 20));
            }
            Ok(query(port, PROBE_NAME, QTYPE_A)
                .ok()
                .filter(|a| a.rcode == 0 && a.answers > 0)
                .map(|_| ()))
        })
    }

    /// The value for `access.dns_resolver`.
    pub fn resolver(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Asks the server itself: (rcode, number of answers) for `name`/`qtype`.
    pub fn query(&self, name: &str, qtype: u16) -> Result<Answer> {
        query(self.port, name, qtype)
    }

    /// dnsmasq's log (every query it answered), for failure messages.
    pub fn log(&self) -> String {
        tools::tail(&self.log_path, 50)
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Query type A.
pub const QTYPE_A: u16 = 1;
/// Query type MX.
pub const QTYPE_MX: u16 = 15;

/// What a DNS server said, in the little a readiness probe needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// 0 NOERROR, 3 NXDOMAIN, 5 REFUSED ...
    pub rcode: u8,
    /// The number of answer records.
    pub answers: u16,
}

/// One UDP query to 127.0.0.1:`port`.
pub fn query(port: u16, name: &str, qtype: u16) -> Result<Answer> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(Duration::from_millis(500)))?;
    let id: u16 = 0x4d57;
    let mut packet = Vec::new();
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&0x0100u16.to_be_bytes()); // recursion desired
    packet.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // one question
    for label in name.trim_end_matches('.').split('.') {
        packet.push(label.len() as u8);
        packet.extend_from_slice(label.as_bytes());
    }
    packet.push(0);
    packet.extend_from_slice(&qtype.to_be_bytes());
    packet.extend_from_slice(&1u16.to_be_bytes()); // class IN
    socket.send_to(&packet, ("127.0.0.1", port))?;
    let mut buf = [0u8; 1500];
    let n = socket.recv(&mut buf).context("no DNS answer")?;
    if n < 12 || buf[..2] != id.to_be_bytes() {
        bail!("malformed DNS answer");
    }
    Ok(Answer {
        rcode: buf[3] & 0x0f,
        answers: u16::from_be_bytes([buf[6], buf[7]]),
    })
}
