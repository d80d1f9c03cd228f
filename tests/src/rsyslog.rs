//! A private rsyslog: Debian's `rsyslogd` in the foreground on its own
//! configuration, with a unix datagram socket (imuxsock, not /dev/log), a
//! UDP port and a TCP port (octet-counted frames accepted), all on loopback,
//! writing every message to one file as
//!
//! `FACILITY.SEVERITY PROGRAM[PID] MSGID STRUCTURED-DATA MSG`
//!
//! so a test can check what arrived and how rsyslog parsed it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::tools::{self, free_port, require, wait_until, READY_TIMEOUT};

pub struct Rsyslog {
    pub socket: PathBuf,
    pub udp_port: u16,
    pub tcp_port: u16,
    /// Where rsyslog writes what it received.
    pub output: PathBuf,
    dir: PathBuf,
    child: Option<Child>,
}

impl Rsyslog {
    /// Starts rsyslogd with its state under `dir/rsyslog/`.
    pub fn start(dir: &Path) -> Result<Rsyslog> {
        let dir = dir.join("rsyslog");
        std::fs::create_dir_all(&dir)?;
        let mut r = Rsyslog {
            socket: dir.join("log.sock"),
            udp_port: free_port(),
            tcp_port: free_port(),
            output: dir.join("messages"),
            dir,
            child: None,
        };
        r.resume()?;
        Ok(r)
    }

    /// Starts it again after [`Rsyslog::stop`], on the same socket and ports.
    pub fn resume(&mut self) -> Result<()> {
        let program = require("rsyslogd", "rsyslog")?;
        let conf = self.dir.join("rsyslog.conf");
        std::fs::write(
            &conf,
            format!(
                r#"global(workDirectory="{dir}")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="{socket}" UseSpecialParser="off" ParseHostname="on")
module(load="imudp")
input(type="imudp" address="127.0.0.1" port="{udp}")
module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="{tcp}")
template(name="test" type="string"
  string="%syslogfacility-text%.%syslogseverity-text% %programname%[%procid%] %msgid% %structured-data% %msg%\n")
*.* action(type="omfile" file="{out}" template="test" flushOnTXEnd="on" asyncWriting="off")
"#,
                dir = self.dir.display(),
                socket = self.socket.display(),
                udp = self.udp_port,
                tcp = self.tcp_port,
                out = self.output.display(),
            ),
        )?;
        let log_path = self.dir.join("rsyslogd.log");
        let log = File::options().create(true).append(true).open(&log_path)?;
        let child = Command::new(program)
            .arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(self.dir.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting rsyslogd")?;
        self.child = Some(child);
        let (socket, tcp) = (self.socket.clone(), self.tcp_port);
        wait_until("rsyslogd to listen", READY_TIMEOUT, || {
            if let Some(c) = self.child.as_mut() {
                if let Some(status) = c.try_wait()? {
                    bail!("rsyslogd exited ({status}): {}", tools::tail(&log_path, 20));
                }
            }
            let up = socket.exists() && std::net::TcpStream::connect(("127.0.0.1", tcp)).is_ok();
            Ok(up.then_some(()))
        })
    }

    /// Stops it (SIGKILL) and removes its socket, as a crashed daemon would
    /// leave nothing listening.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// What rsyslog wrote so far.
    pub fn text(&self) -> String {
        std::fs::read_to_string(&self.output).unwrap_or_default()
    }

    /// Waits until a written line contains every one of `parts`; returns it.
    pub fn wait_line(&self, parts: &[&str]) -> Result<String> {
        wait_until(
            &format!("rsyslog to write a line with {parts:?}"),
            Duration::from_secs(20),
            || {
                Ok(self
                    .text()
                    .lines()
                    .find(|l| parts.iter().all(|p| l.contains(p)))
                    .map(str::to_string))
            },
        )
        .with_context(|| format!("rsyslog wrote:\n{}", self.text()))
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.stop();
    }
}
