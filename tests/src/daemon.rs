//! The daemon under test: `mailward run --config FILE` in the foreground,
//! its stderr in a log file, ready once its port greets, killed
//! on drop (its log is printed then, which libtest shows for a failed test). Also the CLI
//! (`check-config`, `queue ...`) run against the same config.

use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::Duration;

use crate::give_up;
use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::config::Config;
use crate::sink::greeting_within;
use crate::tools::{self, output_text, wait_until, READY_TIMEOUT};

/// How long a SIGTERM may take to stop the daemon.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The mailward binary: `$MAILWARD_BIN`, else the workspace's
/// `target/release/mailward`, else `target/debug/mailward`.
pub fn mailward_bin() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("MAILWARD_BIN") {
        let bin = PathBuf::from(bin);
        if bin.is_file() {
            return Ok(bin);
        }
        bail!(
            "MAILWARD_BIN={} does not exist: build it first: cargo build --release -p mailward",
            bin.display()
        );
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent");
    for profile in ["release", "debug"] {
        let bin = workspace.join("target").join(profile).join("mailward");
        if bin.is_file() {
            return Ok(bin);
        }
    }
    bail!("no mailward binary under target/: build it first: cargo build --release -p mailward")
}

/// A running (or stopped, or killed) Mailward.
pub struct Daemon {
    /// The binary.
    bin: PathBuf,
    /// The config file it runs on.
    pub config_path: PathBuf,
    /// Its working directory (the test directory).
    pub dir: PathBuf,
    /// Its SMTP port.
    pub port: u16,
    /// Where its stderr goes, appended over restarts.
    log_path: PathBuf,
    /// The process, None when stopped.
    child: Option<Child>,
    /// Starts so far, to mark each in the log.
    starts: u32,
    /// Extra environment for the process (e.g. NOTIFY_SOCKET).
    env: Vec<(String, String)>,
    /// Standard error to a pipe nobody reads ([`Daemon::leave_stderr_unread`]),
    /// and that pipe's read end, held open while the daemon runs.
    stderr_unread: bool,
    unread: Option<std::process::ChildStderr>,
}

impl Daemon {
    /// Writes `config` to its file and starts the daemon on it; returns
    /// once it greets.
    pub fn start(config: &Config) -> Result<Daemon> {
        let mut daemon = Self::new(config)?;
        daemon.spawn()?;
        daemon.wait_ready()?;
        Ok(daemon)
    }

    /// Writes `config` to its file without starting anything.
    pub fn new(config: &Config) -> Result<Daemon> {
        Self::from_text(&config.dir, config.port, &config.render())
    }

    /// Writes the config text `toml` to `dir/mailward.toml` and starts the
    /// daemon on it; `port` is the one its `listen_on` names. Returns once
    /// it greets.
    pub fn start_with_text(dir: &Path, port: u16, toml: &str) -> Result<Daemon> {
        let mut daemon = Self::from_text(dir, port, toml)?;
        daemon.spawn()?;
        daemon.wait_ready()?;
        Ok(daemon)
    }

    fn from_text(dir: &Path, port: u16, toml: &str) -> Result<Daemon> {
        let bin = mailward_bin()?;
        let config_path = dir.join("mailward.toml");
        fs::write(&config_path, toml)
            .with_context(|| format!("writing {}", config_path.display()))?;
        Ok(Daemon {
            bin,
            config_path,
            dir: dir.to_path_buf(),
            port,
            log_path: dir.join("mailward.log"),
            child: None,
            starts: 0,
            env: Vec::new(),
            stderr_unread: false,
            unread: None,
        })
    }

    /// Starts the process without waiting for it.
    pub fn spawn(&mut self) -> Result<()> {
        if self.child.is_some() {
            bail!("the daemon is already running");
        }
        self.starts += 1;
        let mut log = File::options()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        writeln!(log, "===== e2e: start #{} =====", self.starts)?;
        let stderr = if self.stderr_unread {
            Stdio::piped()
        } else {
            Stdio::from(log.try_clone()?)
        };
        let mut child = Command::new(&self.bin)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .arg("run")
            .arg("--config")
            .arg(&self.config_path)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        self.unread = child.stderr.take();
        self.child = Some(child);
        Ok(())
    }

    /// From the next [`Daemon::spawn`] on, the daemon's standard error is
    /// a pipe that nobody reads, as when journald or a container's log
    /// driver stalls: once its 64 KiB are full, writes to it block.
    pub fn leave_stderr_unread(&mut self) {
        self.stderr_unread = true;
    }

    /// Waits until the SMTP port greets (with 220, or with a refusal when
    /// the config denies us at connect); fails early when the process exits.
    pub fn wait_ready(&mut self) -> Result<()> {
        let port = self.port;
        let log_path = self.log_path.clone();
        let child = self.child.as_mut().context("the daemon is not running")?;
        wait_until(
            &format!("mailward to greet on port {port}"),
            READY_TIMEOUT,
            || {
                if let Some(status) = child.try_wait()? {
                    give_up!(
                        "mailward exited before greeting ({status}); its log:\n{}",
                        tools::tail(&log_path, 40)
                    );
                }
                // One probe that waits for the greeting: a connection is
                // made only once the port is bound, and probes that gave
                // up early would each count as a session of the daemon's.
                Ok(greeting_within(port, READY_TIMEOUT).map(|_| ()))
            },
        )
        .with_context(|| format!("log:\n{}", tools::tail(&self.log_path, 40)))
    }

    /// Sets an environment variable for the next [`Daemon::spawn`].
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.push((key.to_string(), value.to_string()));
    }

    /// The configuration file it runs on.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The process ID, when running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn signal(&self, signal: Signal) -> Result<()> {
        let pid = self.pid().context("the daemon is not running")?;
        kill(Pid::from_raw(pid as i32), signal).with_context(|| format!("sending {signal}"))?;
        Ok(())
    }

    /// Sends SIGHUP (reload).
    pub fn sighup(&self) -> Result<()> {
        self.signal(Signal::SIGHUP)
    }

    /// Sends SIGTERM and waits for the process to end; returns its status.
    pub fn sigterm(&mut self) -> Result<ExitStatus> {
        self.signal(Signal::SIGTERM)?;
        let mut child = self.child.take().expect("running");
        let status = wait_until("mailward to stop after SIGTERM", STOP_TIMEOUT, || {
            Ok(child.try_wait()?)
        });
        if status.is_err() {
            let _ = child.kill();
            let _ = child.wait();
        }
        status
    }

    /// Kills the process with SIGKILL (no chance to clean up).
    pub fn kill9(&mut self) -> Result<()> {
        let mut child = self.child.take().context("the daemon is not running")?;
        child.kill().context("SIGKILL")?;
        child.wait()?;
        Ok(())
    }

    /// Starts it again on the same config and data_dir; returns once it
    /// greets.
    pub fn restart(&mut self) -> Result<()> {
        self.spawn()?;
        self.wait_ready()
    }

    /// Whether the process is still alive.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Replaces the config file (for SIGHUP tests).
    ///
    /// Written beside and renamed into place, as an editor or configuration
    /// management does: a SIGHUP that comes while the file is half written
    /// must not read a shorter file that is still valid TOML (one cut just
    /// before `[[route]]` would put a configuration without routes in force).
    pub fn write_config(&self, text: &str) -> Result<()> {
        let tmp = self.config_path.with_extension("toml.tmp");
        fs::write(&tmp, text)?;
        fs::rename(&tmp, &self.config_path)?;
        Ok(())
    }

    /// Writes `text` in place of the file, sends SIGHUP and waits (30 s)
    /// until the log shows the reload refused it by naming `marker` (a key
    /// the broken file carries); fails if the daemon stopped.
    pub fn refuse_reload_of(&mut self, text: &str, marker: &str) -> Result<()> {
        self.write_config(text)?;
        self.sighup()?;
        wait_until(
            "the daemon to refuse the broken file",
            Duration::from_secs(30),
            || Ok(self.full_log().contains(marker).then_some(())),
        )?;
        if !self.is_running() {
            bail!("the daemon stopped on a broken configuration file");
        }
        Ok(())
    }

    /// The daemon's log so far (the last lines).
    pub fn log(&self) -> String {
        tools::tail(&self.log_path, 80)
    }

    /// The whole log.
    ///
    /// Read once the log writer has caught up ([`tools::read_settled`]).
    pub fn full_log(&self) -> String {
        tools::read_settled(&self.log_path).unwrap_or_default()
    }

    /// Runs `mailward ARGS --config FILE` (a CLI command that talks to this
    /// daemon) and returns its output, whatever its exit status.
    pub fn cli(&self, args: &[&str]) -> Result<Output> {
        Command::new(&self.bin)
            .args(args)
            .arg("--config")
            .arg(&self.config_path)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running mailward {}", args.join(" ")))
    }

    /// Like [`cli`](Self::cli), with `input` on its standard input.
    pub fn cli_with_stdin(&self, args: &[&str], input: &[u8]) -> Result<Output> {
        use std::io::Write;
        let mut child = Command::new(&self.bin)
            .args(args)
            .arg("--config")
            .arg(&self.config_path)
            .current_dir(&self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("running mailward {}", args.join(" ")))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(input)
                .context("writing to mailward's stdin")?;
        }
        child
            .wait_with_output()
            .with_context(|| format!("waiting for mailward {}", args.join(" ")))
    }

    /// Like [`cli`](Self::cli), failing unless it exits 0; returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.cli(args)?;
        if !out.status.success() {
            bail!(
                "`mailward {} --config ...` failed ({}):\n{}",
                args.join(" "),
                out.status,
                output_text(&out)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Like [`cli_ok`](Self::cli_ok) for a command on one queued message
    /// (`queue hold`, `remove`, `release`): while a delivery attempt holds
    /// the message, the command says "right now; try again" (the message
    /// is in flight until the attempt's outcome is on disk), so it is asked
    /// again for up to 10 s, as an operator would.
    pub fn queue_cli_ok(&self, args: &[&str]) -> Result<String> {
        crate::wait_until(
            &format!("`mailward {}` to find the message idle", args.join(" ")),
            Duration::from_secs(10),
            || {
                let out = self.cli(args)?;
                let text = output_text(&out);
                if out.status.success() {
                    Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()))
                } else if text.contains("right now; try again") {
                    Ok(None)
                } else {
                    bail!(
                        "`mailward {} --config ...` failed ({}):\n{text}",
                        args.join(" "),
                        out.status
                    )
                }
            },
        )
    }

    /// `mailward queue list --json`: the messages in the queue.
    pub fn queue_list(&self) -> Result<Vec<serde_json::Value>> {
        let text = self.cli_ok(&["queue", "list", "--json"])?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("`queue list --json` printed no JSON: {text:?}"))?;
        match value {
            serde_json::Value::Array(items) => Ok(items),
            other => bail!("`queue list --json` printed no array: {other}"),
        }
    }

    /// The queue IDs in `queue list --json`.
    pub fn queue_ids(&self) -> Result<Vec<String>> {
        Ok(self
            .queue_list()?
            .iter()
            .filter_map(|m| m["id"].as_str().map(str::to_string))
            .collect())
    }

    /// `mailward queue flush`: retry everything now.
    pub fn queue_flush(&self) -> Result<()> {
        self.cli_ok(&["queue", "flush"]).map(|_| ())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // libtest shows a test's output only when it fails: then this log
        // is beside the failure. The chaos suite prints figures, not logs.
        if std::env::var_os("MAILWARD_E2E_QUIET").is_some() {
            return;
        }
        eprintln!(
            "----- mailward log ({}) -----\n{}\n-----",
            self.log_path.display(),
            self.log()
        );
    }
}
