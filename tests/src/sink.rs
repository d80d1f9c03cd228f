//! The next hop: Postfix's `smtp-sink`, dumping each message it receives
//! into its own file, and the parsing of those dumps.
//!
//! A dump file is created (empty) at MAIL FROM and written when the
//! transaction ends; it holds smtp-sink's own header lines (`X-Client-Addr`,
//! `X-Helo-Args`, `X-Mail-Args`, one `X-Rcpt-Args` per recipient, and a
//! three-line `Received:`), then the message with the dots unstuffed and
//! CRLF turned into LF, then one empty line. A file is counted as a
//! message only once it ends with that empty line.

use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::give_up;
use anyhow::{bail, Context, Result};

use crate::mail;
use crate::tools::{self, free_port, require, wait_until, READY_TIMEOUT};

/// A running smtp-sink on 127.0.0.1.
pub struct Sink {
    /// The port it listens on.
    pub port: u16,
    /// Where each message lands as a file.
    pub dump_dir: PathBuf,
    /// smtp-sink's own output (errors, -v conversations).
    log_path: PathBuf,
    /// The process; None once stopped.
    child: Option<Child>,
}

impl Sink {
    /// Starts a sink on a free port, dumping into `dir/NAME/` (on another
    /// port when something bound that one between the probe and the
    /// sink's bind: a CI run lost a test to that once).
    pub fn start(dir: &Path, name: &str) -> Result<Sink> {
        tools::on_free_ports(
            || Self::start_with(dir, name, free_port(), &[]),
            |e| e.contains("Address already in use"),
        )
    }

    /// Starts a sink on `port` with extra smtp-sink options (such as
    /// `-r RCPT` to refuse every recipient with a 4xx).
    pub fn start_with(dir: &Path, name: &str, port: u16, extra: &[&str]) -> Result<Sink> {
        let program = require("smtp-sink", "postfix")?;
        let dump_dir = dir.join(name);
        fs::create_dir_all(&dump_dir)?;
        // When we are root smtp-sink becomes `postfix` and writes as that.
        fs::set_permissions(&dump_dir, fs::Permissions::from_mode(0o777))?;
        let log_path = dir.join(format!("{name}.log"));
        let log = File::options().create(true).append(true).open(&log_path)?;
        let mut cmd = Command::new(program);
        if tools::is_root() {
            cmd.args(["-u", "postfix"]);
        }
        cmd.args(extra)
            .arg("-d")
            .arg(format!("{}/%s.", dump_dir.display()))
            .arg(format!("127.0.0.1:{port}"))
            .arg("100")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = cmd.spawn().context("starting smtp-sink")?;
        let mut sink = Sink {
            port,
            dump_dir,
            log_path,
            child: Some(child),
        };
        sink.wait_ready()?;
        Ok(sink)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let port = self.port;
        let log_path = self.log_path.clone();
        let child = self.child.as_mut().expect("started");
        wait_until("smtp-sink to greet", READY_TIMEOUT, || {
            if let Some(status) = child.try_wait()? {
                give_up!(
                    "smtp-sink on port {port} exited ({status}): {}",
                    tools::tail(&log_path, 20)
                );
            }
            Ok(banner_is_220(port).then_some(()))
        })
    }

    /// Stops the sink (the dumps stay).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Every dump file, complete or not, in name order.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = fs::read_dir(&self.dump_dir)
            .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        files
    }

    /// Every completely received message, in file name order.
    pub fn messages(&self) -> Result<Vec<SinkMessage>> {
        let mut out = Vec::new();
        for path in self.files() {
            let bytes = match fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).context(format!("reading {}", path.display())),
            };
            if !bytes.ends_with(b"\n\n") {
                continue;
            }
            out.push(SinkMessage::parse(&path, &bytes)?);
        }
        Ok(out)
    }

    /// How many messages have been received completely.
    pub fn count(&self) -> usize {
        self.messages().map(|m| m.len()).unwrap_or(0)
    }

    /// Waits until at least `n` messages are in; returns them all.
    pub fn wait_for_count(&self, n: usize, timeout: Duration) -> Result<Vec<SinkMessage>> {
        let mut seen = 0;
        wait_until(
            &format!("{n} message(s) at the sink on port {}", self.port),
            timeout,
            || {
                let messages = self.messages()?;
                seen = messages.len();
                Ok((messages.len() >= n).then_some(messages))
            },
        )
        .with_context(|| format!("the sink has {seen}"))
    }

    /// Waits until the number of messages has not changed for `quiet`
    /// (for asserting that nothing more arrives); returns them.
    pub fn settle(&self, quiet: Duration) -> Result<Vec<SinkMessage>> {
        let mut last = self.messages()?.len();
        let mut since = Instant::now();
        wait_until("the sink to settle", quiet * 10 + READY_TIMEOUT, || {
            let messages = self.messages()?;
            if messages.len() != last {
                last = messages.len();
                since = Instant::now();
            }
            Ok((since.elapsed() >= quiet).then_some(messages))
        })
    }

    /// smtp-sink's log, for failure messages.
    pub fn log(&self) -> String {
        tools::tail(&self.log_path, 50)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether 127.0.0.1:`port` accepts and greets with a 220 line.
pub fn banner_is_220(port: u16) -> bool {
    greeting(port).is_some_and(|code| code == 220)
}

/// The code of the greeting 127.0.0.1:`port` sends, if it accepts and
/// sends one (220, or 554/421 when it refuses us).
pub fn greeting(port: u16) -> Option<u16> {
    greeting_within(port, std::time::Duration::from_secs(5))
}

/// As [`greeting`], waiting up to `timeout` for the greeting once the
/// connection is made. A daemon that has bound its port but is still
/// starting (spool recovery, bases) greets late; a probe that gave up
/// would still be served later, as one more session in its statistics.
pub fn greeting_within(port: u16, timeout: std::time::Duration) -> Option<u16> {
    let client = crate::smtp::SmtpClient::connect_with_timeout(port, timeout).ok()?;
    let code = client.banner.code;
    client.quit();
    Some(code)
}

/// One message as smtp-sink received it.
#[derive(Debug, Clone)]
pub struct SinkMessage {
    /// The dump file.
    pub path: PathBuf,
    /// `X-Helo-Args`: what the client (Mailward) said in EHLO/HELO.
    pub helo: Option<String>,
    /// `X-Mail-Args`: the MAIL FROM arguments, e.g. `<a@b> SIZE=10` or `<>`.
    pub mail_args: String,
    /// `X-Rcpt-Args`: the RCPT TO arguments, one per recipient, in order.
    pub rcpt_args: Vec<String>,
    /// The message as received (LF line endings, dots unstuffed).
    pub message: String,
}

impl SinkMessage {
    /// Parses a complete dump file.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<SinkMessage> {
        let text = String::from_utf8_lossy(bytes);
        let mut helo = None;
        let mut mail_args = None;
        let mut rcpt_args = Vec::new();
        let mut rest: &str = &text;
        // smtp-sink's own lines, up to and including its Received: field.
        loop {
            let (line, tail) = rest
                .split_once('\n')
                .with_context(|| format!("truncated dump {}", path.display()))?;
            if let Some(v) = line.strip_prefix("X-Helo-Args: ") {
                helo = Some(v.to_string());
            } else if let Some(v) = line.strip_prefix("X-Mail-Args: ") {
                mail_args = Some(v.to_string());
            } else if let Some(v) = line.strip_prefix("X-Rcpt-Args: ") {
                rcpt_args.push(v.to_string());
            } else if line.starts_with("Received: ") {
                rest = tail;
                // Its two continuation lines.
                while rest.starts_with('\t') {
                    rest = rest.split_once('\n').map_or("", |(_, t)| t);
                }
                break;
            } else if !line.starts_with("X-") {
                bail!("unexpected line {line:?} in dump {}", path.display());
            }
            rest = tail;
        }
        // The dump ends with one empty line of smtp-sink's.
        let message = rest.strip_suffix('\n').unwrap_or(rest).to_string();
        Ok(SinkMessage {
            path: path.to_path_buf(),
            helo,
            mail_args: mail_args
                .with_context(|| format!("no X-Mail-Args in {}", path.display()))?,
            rcpt_args,
            message,
        })
    }

    /// The envelope sender (inside `<>`; empty for the null sender).
    pub fn sender(&self) -> String {
        address_of(&self.mail_args)
    }

    /// The envelope recipients (inside `<>`).
    pub fn recipients(&self) -> Vec<String> {
        self.rcpt_args.iter().map(|a| address_of(a)).collect()
    }

    /// The header fields, unfolded.
    pub fn headers(&self) -> Vec<(String, String)> {
        mail::headers(&self.message)
    }

    /// The first value of header field `name`.
    pub fn header(&self, name: &str) -> Option<String> {
        mail::header(&self.message, name)
    }

    /// The body (after the first empty line).
    pub fn body(&self) -> &str {
        mail::body(&self.message)
    }

    /// The Mailward queue IDs in its `Received:` headers.
    pub fn queue_ids(&self) -> Vec<String> {
        mail::mailward_queue_ids(&self.message)
    }
}

/// The address inside the first `<...>` of SMTP command arguments.
fn address_of(args: &str) -> String {
    let first = args.split_whitespace().next().unwrap_or("");
    first
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_dump() {
        let dump = b"X-Client-Addr: 127.0.0.1\nX-Client-Proto: ESMTP\nX-Helo-Args: mw.test\nX-Mail-Args: <> RET=HDRS\nX-Rcpt-Args: <a@b>\nX-Rcpt-Args: <c@d> NOTIFY=NEVER\nReceived: from mw.test ([127.0.0.1])\n\tby smtp-sink (smtp-sink) with ESMTP id 1a2b3c4d;\n\tMon, 1 Jan 2024 00:00:00 +0000 (UTC)\nSubject: x\n\n..y\n\n";
        let m = SinkMessage::parse(Path::new("d"), dump).unwrap();
        assert_eq!(m.sender(), "");
        assert_eq!(m.recipients(), ["a@b", "c@d"]);
        assert_eq!(m.helo.as_deref(), Some("mw.test"));
        assert_eq!(m.message, "Subject: x\n\n..y\n");
        assert_eq!(m.body(), "..y\n");
    }
}
