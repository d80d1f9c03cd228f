//! A private Postfix: its own config_directory, queue_directory and
//! maillog under the test directory, one smtpd on a loopback port, relaying
//! everything to a next hop (a sink), started with `postfix -c DIR start`
//! and stopped on drop. Needs root (Postfix's daemons become `postfix`) and
//! Debian's postfix package, installed with "No configuration".

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::sink::banner_is_220;
use crate::tools::{free_port, output_text, require, wait_until, READY_TIMEOUT};

pub struct Postfix {
    /// The smtpd's port.
    pub port: u16,
    dir: PathBuf,
    running: bool,
}

/// How the private Postfix is set up.
#[derive(Debug, Clone, Default)]
pub struct PostfixSetup {
    /// Where it relays everything (`relayhost = [127.0.0.1]:PORT`).
    pub relay_port: u16,
    /// (certificate, key) for STARTTLS; none: no STARTTLS offered.
    pub tls: Option<(String, String)>,
    /// More main.cf lines.
    pub extra: Vec<String>,
    /// `-o name=value` options of the public smtpd (a before-queue proxy,
    /// a milter), one per entry without the `-o`.
    pub smtpd_options: Vec<String>,
    /// More master.cf lines, as written there (a content filter's
    /// transport and its re-injection smtpd).
    pub master: Vec<String>,
}

/// The private instance's main.cf and master.cf (its services after the
/// public smtpd line), shared with the benchmarks (bench/lib/peers.sh).
const MAIN_CF: &str = include_str!("../resources/postfix/main.cf");
const MASTER_CF: &str = include_str!("../resources/postfix/master.cf");

impl Postfix {
    /// Writes main.cf and master.cf under `dir/postfix-NAME/` and starts it.
    pub fn start(dir: &Path, name: &str, setup: &PostfixSetup) -> Result<Postfix> {
        let postfix = require("postfix", "postfix")?;
        let dir = dir.join(format!("postfix-{name}"));
        for sub in ["etc", "spool", "data"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let chown = Command::new("chown")
            .arg("postfix")
            .arg(dir.join("data"))
            .output()?;
        if !chown.status.success() {
            bail!(
                "chown postfix {}: {} (the private Postfix needs root)",
                dir.join("data").display(),
                output_text(&chown)
            );
        }
        let port = free_port();
        let mut main = MAIN_CF
            .replace("@DIR@", &dir.display().to_string())
            .replace("@NAME@", name)
            .replace("@RELAY@", &setup.relay_port.to_string());
        if let Some((cert, key)) = &setup.tls {
            main.push_str(&format!(
                "smtpd_tls_cert_file = {cert}\nsmtpd_tls_key_file = {key}\nsmtpd_tls_security_level = may\nsmtpd_tls_received_header = yes\nsmtpd_tls_loglevel = 1\n"
            ));
        }
        for line in &setup.extra {
            main.push_str(line);
            main.push('\n');
        }
        std::fs::write(dir.join("etc/main.cf"), main)?;
        let options: String = setup
            .smtpd_options
            .iter()
            .map(|o| format!("  -o {o}\n"))
            .collect();
        let extra_master: String = setup.master.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(
            dir.join("etc/master.cf"),
            format!("127.0.0.1:{port} inet n - n - - smtpd\n{options}{MASTER_CF}{extra_master}"),
        )?;
        let etc = dir.join("etc").display().to_string();
        // `check` makes the queue directories.
        let _ = Command::new(&postfix).args(["-c", &etc, "check"]).output();
        let out = Command::new(&postfix)
            .args(["-c", &etc, "start"])
            .output()
            .context("starting postfix")?;
        let pf = Postfix {
            port,
            dir: dir.clone(),
            running: out.status.success(),
        };
        if !out.status.success() {
            bail!(
                "postfix -c {etc} start: {}\n{}",
                output_text(&out),
                pf.log()
            );
        }
        wait_until("Postfix to greet", READY_TIMEOUT, || {
            Ok(banner_is_220(port).then_some(()))
        })
        .with_context(|| pf.log())?;
        Ok(pf)
    }

    fn etc(&self) -> String {
        self.dir.join("etc").display().to_string()
    }

    /// Its queue as `postqueue -j` shows it: one JSON object per message
    /// (queue_name, queue_id, recipients with delay_reason, ...).
    pub fn queue(&self) -> Result<Vec<serde_json::Value>> {
        let postqueue = require("postqueue", "postfix")?;
        let out = Command::new(postqueue)
            .args(["-c", &self.etc(), "-j"])
            .output()
            .context("running postqueue -j")?;
        if !out.status.success() {
            bail!("postqueue -j: {}", output_text(&out));
        }
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).with_context(|| format!("postqueue -j line {l}")))
            .collect()
    }

    /// Waits until its queue is empty; fails with the queue and the log.
    pub fn wait_queue_empty(&self, timeout: std::time::Duration) -> Result<()> {
        wait_until("Postfix's queue to be empty", timeout, || {
            Ok(self.queue()?.is_empty().then_some(()))
        })
        .with_context(|| format!("{:?}\n{}", self.queue(), self.log()))
    }

    /// `postqueue -f`: tries every deferred message now.
    pub fn flush(&self) -> Result<()> {
        let postqueue = require("postqueue", "postfix")?;
        let out = Command::new(postqueue)
            .args(["-c", &self.etc(), "-f"])
            .output()
            .context("running postqueue -f")?;
        if !out.status.success() {
            bail!("postqueue -f: {}", output_text(&out));
        }
        Ok(())
    }

    /// Its maillog.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("maillog")).unwrap_or_default()
    }

    /// Stops it.
    pub fn stop(&mut self) {
        if self.running {
            if let Ok(postfix) = require("postfix", "postfix") {
                let etc = self.dir.join("etc").display().to_string();
                let _ = Command::new(postfix).args(["-c", &etc, "stop"]).output();
            }
            self.running = false;
        }
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        self.stop();
    }
}
