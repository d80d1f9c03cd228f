//! A private rsyslog: Debian's `rsyslogd` in the foreground on its own
//! configuration, with a unix datagram socket (imuxsock, not /dev/log,
//! with the input's default parsing, as a host's /dev/log has it, so that
//! a test sees what the docs' recipe gets), a UDP port and a TCP port
//! (octet-counted frames accepted), all on loopback,
//! writing every message to one file as
//!
//! `FACILITY.SEVERITY PROGRAM[PID] MSGID STRUCTURED-DATA MSG`
//!
//! so a test can check what arrived and how rsyslog parsed it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::give_up;
use anyhow::{Context, Result};

use crate::tools::{self, free_port, require, wait_until, READY_TIMEOUT};

/// What rsyslogd logs (and then runs on without that input) when one of
/// its ports is taken: "imudp: Could not create udp listener, ignoring
/// port ..." and "Could not create tcp listener, ignoring port ...".
const PORT_TAKEN: &str = "listener, ignoring port";

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
        Rsyslog::start_on(dir, free_port)
    }

    /// As [`Rsyslog::start`], with its ports from `port`.
    fn start_on(dir: &Path, mut port: impl FnMut() -> u16) -> Result<Rsyslog> {
        let dir = dir.join("rsyslog");
        std::fs::create_dir_all(&dir)?;
        let mut r = Rsyslog {
            socket: dir.join("log.sock"),
            udp_port: 0,
            tcp_port: 0,
            output: dir.join("messages"),
            dir,
            child: None,
        };
        // free_port's probe and rsyslogd's bind can be raced by another
        // test's socket; rsyslogd then logs it and keeps running without
        // that input, so `resume` reads its log and this tries other ports.
        tools::on_free_ports(
            || {
                r.udp_port = port();
                r.tcp_port = port();
                r.resume()
            },
            |e| e.contains(PORT_TAKEN),
        )?;
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
input(type="imuxsock" Socket="{socket}")
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
        // What this start logs: the log is kept across starts.
        let from = log.metadata()?.len();
        let taken = || {
            let text = std::fs::read(&log_path).unwrap_or_default();
            let text = String::from_utf8_lossy(text.get(from as usize..).unwrap_or_default());
            text.lines()
                .find(|l| l.contains(PORT_TAKEN))
                .map(str::to_string)
        };
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
        let listening = wait_until("rsyslogd to listen", READY_TIMEOUT, || {
            if let Some(c) = self.child.as_mut() {
                if let Some(status) = c.try_wait()? {
                    give_up!("rsyslogd exited ({status}): {}", tools::tail(&log_path, 20));
                }
            }
            if let Some(line) = taken() {
                give_up!("{line}");
            }
            let up = socket.exists() && std::net::TcpStream::connect(("127.0.0.1", tcp)).is_ok();
            Ok(up.then_some(()))
        })
        .and_then(|()| {
            // A connect can reach whoever else holds the TCP port before
            // rsyslogd has said it could not: give it a moment to say so.
            std::thread::sleep(Duration::from_millis(200));
            match taken() {
                Some(line) => give_up!("{line}"),
                None => Ok(()),
            }
        });
        if listening.is_err() {
            self.stop();
        }
        listening
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsyslog_moves_to_other_ports_when_one_was_taken() -> Result<()> {
        // What a race between free_port's probe and rsyslogd's bind looks
        // like: the first UDP port it is given is held by someone else.
        let held = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let taken = held.local_addr()?.port();
        let dir = tempfile::tempdir()?;
        let mut first = Some(taken);
        let r = Rsyslog::start_on(dir.path(), || first.take().unwrap_or_else(free_port))?;
        assert_ne!(r.udp_port, taken);
        let sender = std::net::UdpSocket::bind("127.0.0.1:0")?;
        sender.send_to(b"<22>probe[7]: over UDP", ("127.0.0.1", r.udp_port))?;
        r.wait_line(&["mail.info", "over UDP"])?;
        Ok(())
    }
}
