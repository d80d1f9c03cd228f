//! Logging: installs the process-wide `tracing` subscriber from `[log]`.
//!
//! The log categories of the configuration (`config app smtp scan cfilter
//! spam policy delivery backup notif admin`) are tracing targets: code logs
//! with `info!(target: "smtp", ...)`, and events without a target count
//! by their module ([`module_of`]: `mailward::smtp::session` is `smtp`,
//! `mailward::check::av` is `scan`); other events of this crate are `app`. `log.options` becomes
//! an `EnvFilter` (see [`directives`]); the environment variable
//! `MAILWARD_LOG`, when set, replaces it with an `EnvFilter` of its own for
//! debugging.
//!
//! Lines go to stderr, to a file, or to syslog ([`super::syslog`]). A file
//! is a [`RotatingFile`]: each line is one append, rotated at
//! `log.rotate_size`, reopened by [`reopen`] (SIGHUP, `mailward log
//! reopen`). In a file a line stays one line: a newline inside a value (a
//! client's text in a `%` field) is written as `\n`. JSON lines are
//! serde_json's, valid for any input. Lines that cannot be written are
//! dropped and counted ([`dropped`]), and a file says how many once lines
//! get through again: mail never waits for the log (the
//! daemon's lines to a file, to syslog or to standard error are queued to
//! a thread of their own each, [`LineQueue`]).

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use mailward_metrics::RotatingFile;
use tracing::Dispatch;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use super::line_queue::LineQueue;
use crate::config::{
    Log, LogDestination, LogFormat, LogLevel, LogOption, SyslogTransport, LOG_CATEGORIES,
};

/// The mode of log files: they name senders, recipients and clients.
pub const LOG_FILE_MODE: u32 = 0o640;

/// Log lines dropped since start (see [`dropped`]).
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// The installed log file, for [`reopen`].
static LOG_FILE: Mutex<Option<Arc<FileLog>>> = Mutex::new(None);

/// Why the last line was lost on its way out, and when (Unix time), when
/// the writer knows it (a log file that cannot be opened or written, a
/// syslog socket that refuses): `mailward status` names it beside the
/// count, where "unreachable or too slow" would send the operator after
/// a slow disk (see [`last_error`]). A line dropped because the queue was
/// full has no error of its own and leaves this alone.
static LAST_ERROR: Mutex<Option<(String, i64)>> = Mutex::new(None);

/// Why lines were last dropped, when known: the error and its Unix time.
pub fn last_error() -> Option<(String, i64)> {
    LAST_ERROR.lock().ok()?.clone()
}

/// Counts one line lost by a writer and keeps why ([`last_error`]).
/// Called by the writer threads only, never where mail waits.
pub(crate) fn dropped_because(error: String) {
    count_dropped(1);
    if let Ok(mut last) = LAST_ERROR.lock() {
        *last = Some((error, chrono::Utc::now().timestamp()));
    }
}

/// Log lines not written since start: syslog or the reader of standard
/// error unreachable or too slow, or a log file that could not be written
/// (`mailward_log_lines_dropped_total`).
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Counts lines lost on their way out.
pub(crate) fn count_dropped(lines: u64) {
    DROPPED.fetch_add(lines, Ordering::Relaxed);
}

/// Closes the log file so that the next line opens its path again (after
/// logrotate moved it). Returns the path, or `None` when the log does not
/// go to a file.
pub fn reopen() -> Option<PathBuf> {
    let log = log_file()?;
    log.reopen();
    Some(log.file.path().to_path_buf())
}

/// The log file, when the log goes to one.
fn log_file() -> Option<Arc<FileLog>> {
    LOG_FILE.lock().ok()?.clone()
}

/// The log file's path, when the log goes to one.
pub fn file_path() -> Option<PathBuf> {
    Some(log_file()?.file.path().to_path_buf())
}

/// Failed rotations of the log file so far (0 when it is not a file).
pub fn rotation_failures() -> u64 {
    log_file().map_or(0, |f| f.file.rotation_failure().0)
}

/// The last failed rotation of the log file or the raw records file, as
/// "cannot rotate PATH: ERROR", for `mailward status` (walkT 8): the log
/// file's when both failed.
pub fn last_rotation_failure(gw: &crate::gateway::Gateway) -> Option<String> {
    log_file()
        .and_then(|f| f.file.rotation_failure().1)
        .or_else(|| gw.stats.raw_rotation_failure().1)
}

/// Says in the log, once a minute at most, when the log file or the raw
/// records file could not be rotated (a directory the unprivileged user
/// may not write to): their lines go on past `rotate_size`, none is lost,
/// but the operator has to act.
pub async fn watch_rotation(gw: Arc<crate::gateway::Gateway>) {
    let mut shutdown = gw.shutdown.clone();
    let mut seen = (0u64, 0u64);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(60)) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let log = log_file().map_or((0, None), |f| f.file.rotation_failure());
        let raw = gw.stats.raw_rotation_failure();
        for ((failures, last), seen) in [(log, &mut seen.0), (raw, &mut seen.1)] {
            if failures > *seen {
                *seen = failures;
                tracing::warn!(target: "app", failures, error = last.as_deref().unwrap_or("-"),
                    "A file could not be rotated; its lines go on past log.rotate_size and none is lost. \
                     Make its directory writable by the user Mailward runs as, or leave rotation to logrotate (rotate_size = \"0\").");
            }
        }
    }
}

/// Whether the directory of the log file can take a rotation (checked
/// after the switch to the unprivileged user): a warning for the log
/// when `rotate_size` is set and it cannot.
pub fn rotation_possible(log: &Log) -> Option<String> {
    let LogDestination::File(path) = &log.destination else {
        return None;
    };
    if log.rotate_size.0 == 0 {
        return None;
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty())?;
    nix::unistd::access(
        dir,
        nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
    )
    .err()
    .map(|e| format!("{} is not writable by this user ({e})", dir.display()))
}

/// What a reopen did: the files reopened, and those whose new file cannot
/// be opened by this process (their lines are lost until it can).
#[derive(Debug, Default)]
pub struct Reopened {
    pub log: Option<PathBuf>,
    pub raw: Option<PathBuf>,
    pub failed: Vec<ReopenError>,
}

/// A file a reopen could not open again: logrotate moved the old one away
/// and the user the daemon runs as may not create the new one.
#[derive(Debug, thiserror::Error)]
#[error("cannot open {} as user {user} after the reopen: {source}; until it can be, its lines are lost. Make {} writable by {user}, or have the file created for it (logrotate's `create 0640 {user} GROUP`, or `install -m 0640 -o {user} /dev/null {}`): lines are written again as soon as it can be opened.", .path.display(), .path.parent().map_or_else(|| ".".into(), |d| d.display().to_string()), .path.display())]
pub struct ReopenError {
    pub path: PathBuf,
    /// The user the daemon runs as.
    pub user: String,
    #[source]
    pub source: std::io::Error,
}

/// Whether the file at `path` can be opened for appending, made as the
/// writers make it ([`RotatingFile`]: its directory 0750, the file `mode`)
/// when it is missing. A reopen only closes the files, and the next line
/// opens them: this tells the administrator now, rather than dropping
/// that line and the next ones without a word.
fn probe(path: &std::path::Path, mode: u32) -> Result<(), ReopenError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let opened = (|| {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(dir)?;
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(mode)
            .open(path)
            .map(drop)
    })();
    opened.map_err(|source| ReopenError {
        path: path.to_path_buf(),
        user: crate::ops::privileges::current_user(),
        source,
    })
}

/// What `check-config` warns about in `[log]`: settings that are valid but
/// do nothing, as (key, problem). `format` shapes the lines to standard
/// error and files only; syslog lines are RFC 3164 or 5424 text whatever
/// it says, and an operator who set "json" for a collector would wait for
/// JSON that never comes.
pub fn config_warnings(log: &Log) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let (LogFormat::Json, LogDestination::Syslog(t)) = (log.format, &log.destination) {
        out.push((
            "format",
            format!(
                "log.format: \"json\" applies to stderr and file destinations only; to syslog ({}) lines go as syslog text (log.syslog_format). Remove the key, or log to a file to get JSON",
                t.transport
            ),
        ));
    }
    // A local socket that is not there (a container or a host without a
    // syslog daemon): `run` would drop every line (walkT 15).
    if let LogDestination::Syslog(t) = &log.destination {
        let socket = match &t.transport {
            SyslogTransport::Local => Some(std::path::Path::new("/dev/log")),
            SyslogTransport::Unix(p) => Some(p.as_path()),
            _ => None,
        };
        if let Some(socket) = socket.filter(|s| std::fs::symlink_metadata(s).is_err()) {
            out.push((
                "destination",
                format!(
                    "log.destination: {} does not exist on this machine, so no syslog daemon listens there and every log line would be dropped (counted) until one does. Start the syslog daemon (rsyslog, or systemd-journald's /dev/log), or log to a file or stderr",
                    socket.display()
                ),
            ));
        }
    }
    out
}

/// Reopens the log file and the raw records file (`mailward log reopen`,
/// SIGHUP); says which ones, and which of them cannot be opened again.
pub fn reopen_all(gw: &crate::gateway::Gateway) -> Reopened {
    let log = reopen();
    gw.stats.reopen_raw();
    let config = gw.config();
    let raw = config
        .statistics
        .options
        .iter()
        .any(|o| o == "raw")
        .then(|| config.statistics.raw_destination.clone());
    let mut failed = Vec::new();
    let files = log.iter().map(|p| (p, LOG_FILE_MODE, "log"));
    let raws = raw
        .iter()
        .map(|p| (p, mailward_metrics::raw::RAW_FILE_MODE, "raw records"));
    for (path, mode, what) in files.chain(raws) {
        if let Err(e) = probe(path, mode) {
            // Said for SIGHUP too, whose reopen has no one to answer; when
            // it is the log file that cannot be opened, its own line would
            // be lost, so standard error (the journal) gets it as well.
            tracing::warn!(target: "app", file = what, error = %e, "A file could not be opened again after a reopen.");
            if what == "log" {
                eprintln!("mailward: {e}");
            }
            failed.push(e);
        }
    }
    Reopened { log, raw, failed }
}

/// The log category of an event's target: a category itself, or the
/// category of the module it comes from (the longest [`module_of`] that
/// prefixes it); other targets of this crate are `app`, and other crates'
/// keep their own name.
pub fn category_of(target: &str) -> &str {
    if let Some(c) = LOG_CATEGORIES.iter().find(|c| **c == target) {
        return c;
    }
    let mut best: Option<(&str, usize)> = None;
    for c in LOG_CATEGORIES {
        if let Some(m) = module_of(c) {
            let under =
                target == m || (target.starts_with(m) && target[m.len()..].starts_with("::"));
            if under && best.is_none_or(|(_, len)| m.len() > len) {
                best = Some((c, m.len()));
            }
        }
    }
    best.map_or(target, |(c, _)| c)
}

/// The log file: a [`RotatingFile`], written by a thread of its own for
/// the daemon. A local append is quick until the disk is not: a full or
/// failing disk, or a log directory on NFS whose server went away, can
/// hold a `write(2)` for minutes, and with it every thread that logs (the
/// sessions' runtime threads, the scanners, the spool writer), so mail
/// would stop behind the log. Queued, a line waits for the writer (up to
/// [`super::line_queue::LINES`] of them) and past that is dropped and
/// counted, as for syslog and standard error. One-shot uses (the tests of
/// this module) write directly.
struct FileLog {
    file: Arc<RotatingFile>,
    queue: Option<LineQueue>,
    /// A [`FileLog::reopen`] not done yet: [`REOPEN_QUEUED`] when its
    /// turn among the lines is queued, [`REOPEN_AT_NEXT_LINE`] when the
    /// queue was full.
    reopen: Arc<AtomicU8>,
}

const REOPEN_QUEUED: u8 = 1;
const REOPEN_AT_NEXT_LINE: u8 = 2;

impl FileLog {
    fn new(file: Arc<RotatingFile>, queued: bool) -> FileLog {
        let reopen = Arc::new(AtomicU8::new(0));
        let queue = queued
            .then(|| {
                let (file, reopen) = (file.clone(), reopen.clone());
                // Lines lost since the last one written, and the last
                // error: said in the file once lines get through again, as
                // for syslog (walkT 5: a full disk left a silent gap).
                let mut lost: Option<(u64, String)> = None;
                // An empty line is a reopen's turn (LineQueue::wake): lines
                // queued before it still go to the file logrotate moved,
                // those after it to the new one.
                LineQueue::start("file-log", move |line| {
                    let due = reopen.load(Ordering::Acquire);
                    if (line.is_empty() && due != 0) || due == REOPEN_AT_NEXT_LINE {
                        reopen.store(0, Ordering::Release);
                        file.reopen();
                    }
                    if line.is_empty() {
                        return;
                    }
                    match file.append(line) {
                        Ok(()) => {
                            if let Some((lines, error)) = lost.take() {
                                // Queued behind this line, through the
                                // usual format (text or JSON).
                                tracing::warn!(target: "app", lines, error = %error,
                                    "{lines} log line(s) were dropped while the log file could not be written.");
                            }
                        }
                        Err(e) => {
                            let error = format!(
                                "cannot write {} as user {}: {e}",
                                file.path().display(),
                                crate::ops::privileges::current_user()
                            );
                            let count = lost.as_ref().map_or(0, |(n, _)| *n) + 1;
                            lost = Some((count, error.clone()));
                            dropped_because(error);
                        }
                    }
                })
                .ok()
            })
            .flatten();
        FileLog {
            file,
            queue,
            reopen,
        }
    }

    /// Closes the file so that the next line opens its path again, after
    /// the lines already queued; never waits for the writer (which may be
    /// the one stuck).
    fn reopen(&self) {
        match &self.queue {
            Some(queue) => {
                self.reopen.store(REOPEN_QUEUED, Ordering::Release);
                if !queue.wake() {
                    self.reopen.store(REOPEN_AT_NEXT_LINE, Ordering::Release);
                }
            }
            None => self.file.reopen(),
        }
    }

    fn write(&self, line: Vec<u8>) {
        LineQueue::push_or_write(self.queue.as_ref(), line, |l| self.file.append(l));
    }

    fn flush(&self, wait: std::time::Duration) {
        if let Some(queue) = &self.queue {
            queue.flush(wait);
        }
    }
}

/// Lines to the [`FileLog`]; see the module documentation.
#[derive(Clone)]
struct FileLines(Arc<FileLog>, LogFormat);

struct FileLine<'a>(&'a FileLog, LogFormat);

impl<'a> MakeWriter<'a> for FileLines {
    type Writer = FileLine<'a>;

    fn make_writer(&'a self) -> FileLine<'a> {
        FileLine(&self.0, self.1)
    }
}

impl std::io::Write for FileLine<'_> {
    /// The formatter hands over one whole line per event.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(one_line(buf, self.1).into_owned());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Lines to standard error, escaped as [`one_line`] does: through
/// [`StderrQueue`] for the daemon, directly for one-shot commands.
#[derive(Clone, Copy)]
struct StderrLines {
    format: LogFormat,
    queued: bool,
}

struct StderrLine(StderrLines);

impl MakeWriter<'_> for StderrLines {
    type Writer = StderrLine;

    fn make_writer(&self) -> StderrLine {
        StderrLine(*self)
    }
}

impl std::io::Write for StderrLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let line = one_line(buf, self.0.format);
        if self.0.queued {
            StderrQueue::push(line.into_owned());
        } else {
            // One write_all of the whole line: stderr is unbuffered, and
            // lines of two threads must not interleave.
            std::io::stderr().write_all(&line)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The daemon's lines to standard error, written by a thread of their
/// own ([`LineQueue`]). Standard error is a pipe to journald or a
/// container's log driver, and a write to a full pipe blocks: with
/// journald stalled, or Docker's blocking log mode behind a dead
/// collector, every thread that logs (the sessions' runtime threads, the
/// scanners, the spool writer) would stop in `write(2)`, and mail with
/// them. [`LogGuard`] waits a moment for the queue at exit, so that the
/// last lines (a stop, a start-up error) are not lost. Should its thread
/// not start, lines are written directly, as one-shot commands write them.
struct StderrQueue;

impl StderrQueue {
    fn get() -> Option<&'static LineQueue> {
        static QUEUE: std::sync::OnceLock<Option<LineQueue>> = std::sync::OnceLock::new();
        QUEUE
            .get_or_init(|| {
                LineQueue::start("stderr-log", |line| {
                    if std::io::stderr().write_all(line).is_err() {
                        count_dropped(1);
                    }
                })
                .ok()
            })
            .as_ref()
    }

    fn push(line: Vec<u8>) {
        LineQueue::push_or_write(Self::get(), line, |l| std::io::stderr().write_all(l));
    }
}

/// One formatted event as one line, with its control characters escaped.
/// Values can come from the network (a decoded subject, an attachment
/// name, a peer's reply): none of them may start a line that looks like
/// ours, or send escape sequences to the terminal of whoever tails the
/// log. Text is escaped the way the syslog writer escapes it (`\n`, `\r`,
/// `\t`, `\xHH`). In JSON the encoder has escaped C0 controls already but
/// not C1 ones (U+0080 to U+009F, CSI among them), which can only stand
/// inside strings there: they become `\u00XX`, so the line stays valid
/// JSON with the same value.
fn one_line(buf: &[u8], format: LogFormat) -> std::borrow::Cow<'_, [u8]> {
    let body = buf.strip_suffix(b"\n").unwrap_or(buf);
    // Fast path: printable ASCII and UTF-8 sequences that cannot be C1
    // controls (encoded 0xC2 0x80..=0x9F) or bidi controls (0xE2 0x80/0x81
    // .., 0xD8 0x9C).
    if body
        .iter()
        .all(|&b| b >= 0x20 && b != 0x7f && b != 0xc2 && b != 0xe2 && b != 0xd8)
        && body.len() + 1 == buf.len()
    {
        return std::borrow::Cow::Borrowed(buf);
    }
    let text = String::from_utf8_lossy(body);
    let mut out = String::with_capacity(body.len() + 16);
    match format {
        LogFormat::Text => super::syslog::push_escaped(&mut out, &text),
        LogFormat::Json => {
            use std::fmt::Write as _;
            for c in text.chars() {
                if c.is_control() || super::syslog::is_escaped_in_logs(c) {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                } else {
                    out.push(c);
                }
            }
        }
    }
    out.push('\n');
    std::borrow::Cow::Owned(out.into_bytes())
}

/// Whether a field's value must be quoted in a text log line (the file,
/// standard error and syslog alike, [`super::syslog::push_value`]): when
/// it is empty or holds a space, `=`, `"`, `\` or a control or bidi
/// character. Unquoted, `a to=ceo@example.com x.exe` adds a field of the
/// sender's choosing for logfmt readers (walkV 5), and `detail=Mailward
/// started` splits into `detail=Mailward` and a stray word (walkAA 1).
/// Other values stay as they are (`object=eicar.com`).
pub fn needs_quotes(value: &str) -> bool {
    value.is_empty()
        || value.chars().any(|c| {
            c.is_control()
                || matches!(c, ' ' | '"' | '=' | '\\')
                || super::syslog::is_escaped_in_logs(c)
        })
}

/// The environment variable that overrides `log.options` (EnvFilter syntax,
/// e.g. `MAILWARD_LOG=info,smtp=trace`).
pub const ENV_VAR: &str = "MAILWARD_LOG";

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The syslog writer thread could not be started.
    #[error("cannot start the syslog writer: {0}")]
    Syslog(std::io::Error),
    /// The log file could not be opened for appending.
    #[error("cannot open log file {}: {source}", path.display())]
    OpenFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `MAILWARD_LOG` is set but is not a valid filter.
    #[error("{ENV_VAR} is not a valid filter: {0}")]
    BadEnvFilter(String),
    /// `log.options` did not make a filter (the loader validates them, so
    /// this means a `Log` built by hand).
    #[error("log.options: {0}")]
    BadOptions(String),
    /// A global subscriber was installed before.
    #[error("logging is already set up: {0}")]
    AlreadyInstalled(String),
}

/// Returned by [`init`]; keep it for the life of the process. When it
/// drops (the daemon's end), the lines still queued for standard error
/// or the log file are given two seconds to be written.
#[derive(Debug)]
#[must_use = "logging stays installed, but keep the guard so that queued lines are written at exit"]
pub struct LogGuard {
    stderr: bool,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        let wait = std::time::Duration::from_secs(2);
        if let (true, Some(queue)) = (self.stderr, StderrQueue::get()) {
            queue.flush(wait);
        }
        if let Some(log) = log_file() {
            log.flush(wait);
        }
    }
}

/// Installs the global subscriber described by `log`.
pub fn init(log: &Log) -> Result<LogGuard, LogError> {
    let (dispatch, file) = build(log, true)?;
    dispatch
        .try_init()
        .map_err(|e| LogError::AlreadyInstalled(e.to_string()))?;
    if let Ok(mut slot) = LOG_FILE.lock() {
        *slot = file;
    }
    Ok(LogGuard {
        stderr: matches!(log.destination, LogDestination::Stderr),
    })
}

/// Logging for one-shot CLI commands: warnings and errors to stderr as text
/// (or what `MAILWARD_LOG` says). Does nothing if logging is already set up.
pub fn init_cli() {
    let filter = env_filter()
        .ok()
        .flatten()
        .unwrap_or_else(|| EnvFilter::new("warn"));
    let lines = StderrLines {
        format: LogFormat::Text,
        queued: false,
    };
    let _ = text_dispatch(filter, lines, false).try_init();
}

/// The subscriber described by `log`, not installed (for [`init`] and
/// tests).
pub fn dispatch(log: &Log) -> Result<Dispatch, LogError> {
    build(log, false).map(|(d, _)| d)
}

/// The subscriber and, for a file destination, its file; `queued`: the
/// daemon's lines to a file or to standard error go through a
/// [`LineQueue`].
fn build(log: &Log, queued: bool) -> Result<(Dispatch, Option<Arc<FileLog>>), LogError> {
    let filter = match env_filter()? {
        Some(filter) => filter,
        None => EnvFilter::try_new(directives(&log.options)?)
            .map_err(|e| LogError::BadOptions(e.to_string()))?,
    };
    match &log.destination {
        LogDestination::Stderr => {
            let lines = StderrLines {
                format: log.format,
                queued,
            };
            Ok((
                match log.format {
                    // No colours even on a terminal: their escape sequences
                    // would be escaped like a client's.
                    LogFormat::Text => text_dispatch(filter, lines, false),
                    LogFormat::Json => json_dispatch(filter, lines),
                },
                None,
            ))
        }
        LogDestination::File(path) => {
            let file = Arc::new(RotatingFile::new(
                path,
                log.rotate_size.0,
                log.rotate_rounds,
                LOG_FILE_MODE,
            ));
            file.open_now().map_err(|source| LogError::OpenFile {
                path: path.clone(),
                source,
            })?;
            let file = Arc::new(FileLog::new(file, queued));
            let writer = FileLines(file.clone(), log.format);
            Ok((
                match log.format {
                    LogFormat::Text => text_dispatch(filter, writer, false),
                    LogFormat::Json => json_dispatch(filter, writer),
                },
                Some(file),
            ))
        }
        LogDestination::Syslog(target) => {
            let layer = super::syslog::SyslogLayer::start(target, log.syslog_format)
                .map_err(LogError::Syslog)?;
            Ok((
                Dispatch::new(tracing_subscriber::registry().with(filter).with(layer)),
                None,
            ))
        }
    }
}

/// The filter from `MAILWARD_LOG`, if set and not blank.
fn env_filter() -> Result<Option<EnvFilter>, LogError> {
    match std::env::var(ENV_VAR) {
        Ok(text) if !text.trim().is_empty() => EnvFilter::try_new(text.trim())
            .map(Some)
            .map_err(|e| LogError::BadEnvFilter(e.to_string())),
        _ => Ok(None),
    }
}

fn text_dispatch<W>(filter: EnvFilter, writer: W, ansi: bool) -> Dispatch
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    Dispatch::new(
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(writer)
            .with_ansi(ansi)
            .fmt_fields(TextFields)
            .finish(),
    )
}

/// The fields of a text line in the log file or on standard error:
/// `MESSAGE key=value ...`, each value quoted by the rule syslog lines
/// follow ([`super::syslog::push_value`]), whether it was logged as a
/// string, with `%` or with `?`. tracing's default quotes every string
/// and no `%` value, so the file had `notification="mwProductStart"
/// detail=Mailward started` where syslog had `notification=mwProductStart
/// detail="Mailward started"` (walkAA 1).
struct TextFields;

impl<'w> tracing_subscriber::field::MakeVisitor<tracing_subscriber::fmt::format::Writer<'w>>
    for TextFields
{
    type Visitor = TextVisitor<'w>;

    fn make_visitor(&self, writer: tracing_subscriber::fmt::format::Writer<'w>) -> TextVisitor<'w> {
        TextVisitor {
            writer,
            first: true,
            result: Ok(()),
            text: String::new(),
        }
    }
}

/// Writes one event's (or span's) fields for [`TextFields`].
struct TextVisitor<'w> {
    writer: tracing_subscriber::fmt::format::Writer<'w>,
    first: bool,
    result: std::fmt::Result,
    /// One field's text, reused for the next: one allocation per event,
    /// not one per field, on the path every log line takes.
    text: String,
}

impl TextVisitor<'_> {
    fn write(&mut self, field: &tracing::field::Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        let name = field.name();
        // Fields the `log` crate's bridge adds (`log.target`, ...).
        if name.starts_with("log.") {
            return;
        }
        if name == "message" {
            // Control characters are escaped for the whole line (`one_line`).
            if !self.first {
                self.result = self.writer.write_char(' ');
            }
            self.first = false;
            if self.result.is_ok() {
                self.result = self.writer.write_str(value);
            }
            return;
        }
        let text = &mut self.text;
        text.clear();
        if !self.first {
            text.push(' ');
        }
        self.first = false;
        text.push_str(name.strip_prefix("r#").unwrap_or(name));
        text.push('=');
        super::syslog::push_value(text, value);
        self.result = self.writer.write_str(text);
    }
}

impl tracing::field::Visit for TextVisitor<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.write(field, value);
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.write(field, &format!("{value:?}"));
    }
}

impl tracing_subscriber::field::VisitOutput<std::fmt::Result> for TextVisitor<'_> {
    fn finish(self) -> std::fmt::Result {
        self.result
    }
}

impl tracing_subscriber::field::VisitFmt for TextVisitor<'_> {
    fn writer(&mut self) -> &mut dyn std::fmt::Write {
        &mut self.writer
    }
}

fn json_dispatch<W>(filter: EnvFilter, writer: W) -> Dispatch
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    Dispatch::new(
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(writer)
            .json()
            .finish(),
    )
}

/// The tracing filter name of a configuration level: fatal and error →
/// `error`, warning → `warn`, info → `info`, activity → `debug`, debug →
/// `trace`; `None` (a removed category) → `off`.
fn filter_level(level: Option<LogLevel>) -> &'static str {
    match level {
        None => "off",
        Some(LogLevel::Fatal | LogLevel::Error) => "error",
        Some(LogLevel::Warning) => "warn",
        Some(LogLevel::Info) => "info",
        Some(LogLevel::Activity) => "debug",
        Some(LogLevel::Debug) => "trace",
    }
}

/// `log.options` as `EnvFilter` directives.
///
/// Options apply in order from `all.error`: `all.LEVEL` sets every category
/// (forgetting earlier per-category items), `CATEGORY.LEVEL` one category,
/// `-CATEGORY` turns it off (`-all`: everything). Each category becomes
/// the directives `CATEGORY=L` and `mailward::CATEGORY=L` (`app` is the
/// crate-wide `mailward=L`); other crates log at the level of `all` but at
/// most `warn`.
pub fn directives(options: &[String]) -> Result<String, LogError> {
    let mut all = Some(LogLevel::Error);
    let mut per_category: Vec<(&str, Option<LogLevel>)> = Vec::new();
    for text in options {
        let option = LogOption::parse(text).map_err(LogError::BadOptions)?;
        match option.category {
            None => {
                all = option.level;
                per_category.clear();
            }
            Some(category) => {
                let name = LOG_CATEGORIES
                    .iter()
                    .find(|c| **c == category)
                    .copied()
                    .ok_or_else(|| {
                        LogError::BadOptions(format!("unknown category {category:?}"))
                    })?;
                per_category.retain(|(c, _)| *c != name);
                per_category.push((name, option.level));
            }
        }
    }
    let level_of = |category: &str| {
        per_category
            .iter()
            .find(|(c, _)| *c == category)
            .map_or(all, |(_, l)| *l)
    };
    let foreign = all.map(|l| l.min(LogLevel::Warning));
    let mut out = vec![filter_level(foreign).to_string()];
    // The DNS library's warnings are said in our words by `dns.rs` (a
    // server that does not answer, or refuses): its own came three per
    // look-up and per probe, forever, for a server that answers REFUSED
    // without the question (unbound: "detected forged question section",
    // walkAM 1), in a target no `log.options` category could name.
    let dns_library = filter_level(all.map(|l| l.min(LogLevel::Error)));
    for module in DNS_LIBRARY {
        out.push(format!("{module}={dns_library}"));
    }
    for category in LOG_CATEGORIES {
        let level = filter_level(level_of(category));
        out.push(format!("{category}={level}"));
        if let Some(module) = module_of(category) {
            out.push(format!("{module}={level}"));
        }
    }
    Ok(out.join(","))
}

/// The DNS library's crates, logged at `error` at most ([`directives`]).
const DNS_LIBRARY: &[&str] = &["hickory_net", "hickory_proto", "hickory_resolver"];

/// The module whose events (those without a target) count as `category`.
pub fn module_of(category: &str) -> Option<&'static str> {
    Some(match category {
        "app" => "mailward",
        "config" => "mailward::config",
        "smtp" => "mailward::smtp",
        "scan" => "mailward::check",
        "cfilter" => "mailward::check::filter",
        "policy" => "mailward::policy",
        "delivery" => "mailward::delivery",
        "backup" => "mailward::store",
        "notif" => "mailward::policy::notify",
        "admin" => "mailward::ops",
        // The subagent's crate logs under target "snmp"; its events
        // without a target come from its own modules.
        "snmp" => "mailward_agentx",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ByteSize;

    fn opts(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn has(directives: &str, wanted: &str) -> bool {
        directives.split(',').any(|d| d == wanted)
    }

    #[test]
    fn options_to_directives() {
        let d = directives(&opts(&["all.info"])).unwrap();
        assert!(d.starts_with("warn,"), "{d}");
        assert!(
            has(&d, "smtp=info") && has(&d, "mailward::smtp=info") && has(&d, "mailward=info"),
            "{d}"
        );

        let d = directives(&opts(&[
            "all.info",
            "smtp.debug",
            "-scan",
            "delivery.activity",
            "spam.warning",
        ]))
        .unwrap();
        assert!(
            has(&d, "smtp=trace") && has(&d, "mailward::smtp=trace"),
            "{d}"
        );
        assert!(has(&d, "scan=off") && has(&d, "mailward::check=off"), "{d}");
        assert!(has(&d, "delivery=debug"), "{d}");
        assert!(has(&d, "spam=warn"), "{d}");
        assert!(has(&d, "config=info") && has(&d, "mailward=info"), "{d}");

        // Later items win; `all` resets earlier categories.
        let d = directives(&opts(&["smtp.debug", "all.warning"])).unwrap();
        assert!(has(&d, "smtp=warn"), "{d}");
        let d = directives(&opts(&["all.debug", "app.fatal"])).unwrap();
        assert!(d.starts_with("warn,"), "{d}");
        assert!(
            has(&d, "mailward=error") && has(&d, "app=error") && has(&d, "smtp=trace"),
            "{d}"
        );

        // The DNS library says errors only (walkAM 1), at most what all
        // says.
        let d = directives(&opts(&["all.debug"])).unwrap();
        assert!(
            has(&d, "hickory_net=error") && has(&d, "hickory_proto=error"),
            "{d}"
        );
        let d = directives(&opts(&["-all"])).unwrap();
        assert!(has(&d, "hickory_net=off"), "{d}");

        // Nothing given: errors only. `-all`: nothing.
        let d = directives(&[]).unwrap();
        assert!(d.starts_with("error,") && has(&d, "smtp=error"), "{d}");
        let d = directives(&opts(&["-all"])).unwrap();
        assert!(d.starts_with("off,") && has(&d, "mailward=off"), "{d}");

        for d in [
            directives(&opts(&["all.info", "smtp.debug", "-scan"])).unwrap(),
            directives(&[]).unwrap(),
        ] {
            assert!(EnvFilter::try_new(&d).is_ok(), "{d}");
        }
        assert!(matches!(
            directives(&opts(&["smtp.loud"])),
            Err(LogError::BadOptions(_))
        ));
    }

    fn log_to(destination: LogDestination, format: LogFormat, options: &[&str]) -> Log {
        Log {
            destination,
            options: opts(options),
            format,
            syslog_format: crate::config::SyslogFormat::Rfc3164,
            rotate_size: ByteSize::mib(10),
            rotate_rounds: 5,
        }
    }

    #[test]
    fn file_destination_appends_filtered_lines() {
        if std::env::var_os(ENV_VAR).is_some() {
            return; // the override would change what is logged
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mailward.log");
        std::fs::write(&path, "earlier line\n").unwrap();
        let log = log_to(
            LogDestination::File(path.clone()),
            LogFormat::Text,
            &["all.info", "-scan", "smtp.activity"],
        );
        let dispatch = dispatch(&log).unwrap();
        tracing::dispatcher::with_default(&dispatch, || {
            tracing::info!(target: "smtp", client = "192.0.2.1", "Session opened.");
            tracing::debug!(target: "smtp", "Activity shown.");
            tracing::trace!(target: "smtp", "Debug hidden.");
            tracing::error!(target: "scan", "Scan removed.");
            tracing::debug!(target: "config", "Config activity hidden.");
            tracing::warn!(target: "config", "Config warning shown.");
        });
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("earlier line\n"), "{text}");
        assert!(
            text.contains("Session opened. client=192.0.2.1\n"),
            "{text}"
        );
        assert!(text.contains("Activity shown."), "{text}");
        assert!(text.contains("Config warning shown."), "{text}");
        assert!(!text.contains("Debug hidden."), "{text}");
        assert!(!text.contains("Scan removed."), "{text}");
        assert!(!text.contains("Config activity hidden."), "{text}");
        assert!(!text.contains('\u{1b}'), "no colours in files: {text}");
    }

    #[test]
    fn a_queued_log_file_reopens_in_turn_with_its_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.log");
        let file = Arc::new(RotatingFile::new(&path, 0, 0, LOG_FILE_MODE));
        let log = FileLog::new(file, true);
        assert!(log.queue.is_some());
        let wait = std::time::Duration::from_secs(10);
        log.write(b"before\n".to_vec());
        log.flush(wait);
        // logrotate's `create`: the file moves, then `log reopen`.
        std::fs::rename(&path, dir.path().join("m.log.1")).unwrap();
        log.write(b"between\n".to_vec());
        log.reopen();
        log.write(b"after\n".to_vec());
        log.flush(wait);
        let old = std::fs::read_to_string(dir.path().join("m.log.1")).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert_eq!(old, "before\nbetween\n");
        assert_eq!(new, "after\n");
    }

    /// A queued log file on a FIFO at `path` (made here), and the FIFO's
    /// reader, opened first and non-blocking, that nobody reads yet: the
    /// writer stalls in write(2) once the pipe is full, as on a disk or an
    /// NFS server that stopped answering.
    fn fifo_log(path: &std::path::Path) -> (FileLog, std::fs::File) {
        use std::os::unix::fs::OpenOptionsExt;
        nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open(path)
            .unwrap();
        let file = Arc::new(RotatingFile::new(path, 0, 0, 0o600));
        file.open_now().unwrap();
        (FileLog::new(file, true), reader)
    }

    /// The FIFO's reader comes back: everything the writer sends it until
    /// `log` is flushed.
    fn drain_while_flushing(log: &FileLog, mut reader: std::fs::File) -> Vec<u8> {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let drain = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                use std::io::Read as _;
                let (mut got, mut buf) = (Vec::new(), vec![0u8; 1 << 16]);
                loop {
                    match reader.read(&mut buf) {
                        Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
                        _ if stop.load(Ordering::Acquire) => return got,
                        _ => std::thread::sleep(std::time::Duration::from_millis(5)),
                    }
                }
            })
        };
        log.flush(std::time::Duration::from_secs(30));
        stop.store(true, Ordering::Release);
        drain.join().unwrap()
    }

    #[test]
    fn a_reopen_waits_its_turn_behind_a_stalled_writer() {
        // The writer is held in write(2) on a FIFO nobody reads yet, with
        // a backlog queued behind it: a reopen now must still let every
        // line logged before it reach the moved file, and only the lines
        // after it go to the new one, however long the writer was stuck.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.log");
        let (log, reader) = fifo_log(&path);
        // 1,000 lines of 100 bytes: more than a pipe holds (64 KiB), so the
        // writer is stuck before the last of them, let alone "between".
        let backlog = 1000usize;
        for i in 0..backlog {
            log.write(format!("{i:08} {}\n", "x".repeat(90)).into_bytes());
        }
        // logrotate's `create`: the file moves, then `log reopen`.
        std::fs::rename(&path, dir.path().join("m.log.1")).unwrap();
        log.write(b"between\n".to_vec());
        log.reopen();
        log.write(b"after\n".to_vec());
        // Now the disk comes back.
        let written = drain_while_flushing(&log, reader);
        let old = String::from_utf8(written).unwrap();
        let old: Vec<&str> = old.lines().collect();
        assert_eq!(
            old.len(),
            backlog + 1,
            "the backlog and \"between\" went to the moved file"
        );
        assert_eq!(old[backlog], "between");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "after\n");
    }

    #[test]
    fn a_log_file_nobody_drains_costs_counted_lines_not_waits() {
        // A FIFO whose reader never reads stands for a disk or an NFS
        // server that stopped answering: the writer blocks in write(2)
        // once the pipe is full. The threads that log must not.
        let dir = tempfile::tempdir().unwrap();
        let (log, reader) = fifo_log(&dir.path().join("stuck.log"));
        let before = dropped();
        // About 2 MiB of lines, 30 times a pipe's buffer: the writer
        // stalls, the queue fills, and the rest are dropped at once.
        let lines = 20_000usize;
        let line = |i: usize| format!("{i:08} {}\n", "x".repeat(90)).into_bytes();
        for i in 0..lines {
            log.write(line(i));
        }
        let lost = dropped() - before;
        // The reader comes back: what was queued is written, in order.
        let written = drain_while_flushing(&log, reader);
        let text = String::from_utf8(written).unwrap();
        let numbers: Vec<usize> = text.lines().map(|l| l[..8].parse().unwrap()).collect();
        assert!(
            numbers.len() >= super::super::line_queue::LINES && numbers.len() < lines,
            "the queue's lines are written, the rest dropped: {} of {lines}",
            numbers.len()
        );
        assert!(
            lost >= (lines - numbers.len()) as u64,
            "every line dropped is counted"
        );
        assert_eq!(numbers[0], 0);
        assert!(numbers.windows(2).all(|p| p[0] < p[1]), "in order");
    }

    #[test]
    fn json_format() {
        let Some(text) = logged(LogFormat::Json, || {
            tracing::info!(target: "delivery", queue_id = "Q1", "Message delivered.");
        }) else {
            return;
        };
        let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(line["target"], "delivery");
        assert_eq!(line["fields"]["message"], "Message delivered.");
        assert_eq!(line["fields"]["queue_id"], "Q1");
    }

    #[test]
    fn categories_of_targets() {
        assert_eq!(category_of("smtp"), "smtp");
        assert_eq!(category_of("mailward::smtp::session"), "smtp");
        assert_eq!(category_of("mailward::check::filter::names"), "cfilter");
        assert_eq!(category_of("mailward::check::av"), "scan");
        assert_eq!(category_of("mailward::policy::notify"), "notif");
        assert_eq!(category_of("mailward::gateway"), "app");
        // walkE: the subagent's "AgentX session opened." (info) could not
        // be logged at any log.options: its target was no category.
        assert_eq!(category_of("snmp"), "snmp");
        assert_eq!(category_of("mailward_agentx"), "snmp");
        assert_eq!(category_of("mailward_agentx::subagent"), "snmp");
        let d = directives(&opts(&["all.info"])).unwrap();
        assert!(
            has(&d, "snmp=info") && has(&d, "mailward_agentx=info"),
            "{d}"
        );
        let d = directives(&opts(&["all.info", "snmp.debug"])).unwrap();
        assert!(has(&d, "snmp=trace"), "{d}");
        assert_eq!(category_of("hickory_proto::udp"), "hickory_proto::udp");
    }

    /// What a file destination in `format` (all.info) holds after
    /// `emit`; None when MAILWARD_LOG overrides the filter.
    fn logged(format: LogFormat, emit: impl FnOnce()) -> Option<String> {
        if std::env::var_os(ENV_VAR).is_some() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        let log = log_to(LogDestination::File(path.clone()), format, &["all.info"]);
        tracing::dispatcher::with_default(&dispatch(&log).unwrap(), emit);
        Some(std::fs::read_to_string(&path).unwrap())
    }

    /// One line, and no control character but its newline.
    fn assert_one_clean_line(text: &str) {
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "a control character reached the file: {text:?}"
        );
    }

    /// walkAA 1: the file had `notification="mwProductStart"
    /// detail=Mailward started` where syslog had `notification=mwProductStart
    /// detail="Mailward started"`; now both quote by the value.
    #[test]
    fn text_lines_quote_values_as_syslog_does() {
        let Some(text) = logged(LogFormat::Text, || {
            tracing::info!(target: "admin", notification = "mwProductStart",
                detail = %"Mailward started", empty = %"", code = 250u16,
                mode = ?"smtp", "SNMP notification raised.");
        }) else {
            return;
        };
        let fields = r#"notification=mwProductStart detail="Mailward started" empty="" code=250 mode="\"smtp\"""#;
        assert!(
            text.ends_with(&format!("INFO admin: SNMP notification raised. {fields}\n")),
            "{text}"
        );
        let target = crate::config::SyslogTarget {
            transport: SyslogTransport::Local,
            facility: "mail".into(),
        };
        let syslog =
            super::super::syslog::Formatter::new(&target, crate::config::SyslogFormat::Rfc3164)
                .line(
                    &tracing::Level::INFO,
                    "admin",
                    "SNMP notification raised.",
                    &[
                        ("notification", "mwProductStart".into()),
                        ("detail", "Mailward started".into()),
                        ("empty", String::new()),
                        ("code", "250".into()),
                        ("mode", "\"smtp\"".into()),
                    ],
                );
        let syslog = String::from_utf8(syslog).unwrap();
        assert!(
            syslog.ends_with(&format!("admin: SNMP notification raised. {fields}")),
            "{syslog}"
        );
    }

    #[test]
    fn a_newline_in_a_value_stays_on_its_line() {
        let Some(text) = logged(LogFormat::Text, || {
            tracing::info!(target: "smtp", helo = %"evil\nFAKE LINE", "HELO seen.");
        }) else {
            return;
        };
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("helo=\"evil\\nFAKE LINE\""), "{text}");
    }

    #[test]
    fn control_characters_from_the_network_are_escaped() {
        let Some(text) = logged(LogFormat::Text, || {
            tracing::info!(
                target: "smtp",
                name = %"inv\u{1b}[2J\roice\u{9b}31m.zip",
                subject = %"Caf\u{e9} \u{2603}",
                "Attachment seen."
            );
        }) else {
            return;
        };
        assert_one_clean_line(&text);
        assert!(
            text.contains("name=\"inv\\x1B[2J\\roice\\x9B31m.zip\""),
            "{text}"
        );
        // Letters outside ASCII stay as they are.
        assert!(text.contains("subject=\"Caf\u{e9} \u{2603}\""), "{text}");
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn json_lines_stay_valid_json_with_c1_controls_escaped() {
        let name = "inv\u{9b}31m\u{1b}[2J.zip";
        let Some(text) = logged(LogFormat::Json, || {
            tracing::info!(target: "smtp", name = %name, "Attachment seen.");
        }) else {
            return;
        };
        assert_one_clean_line(&text);
        let line: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(line["fields"]["name"], name, "the value is kept");
    }

    #[test]
    fn line_and_paragraph_separators_are_escaped() {
        // walkAD 11: U+2028 was written raw; viewers and JS tools break
        // the line there.
        let name = "a\u{2028}b\u{2029}c.exe";
        assert!(needs_quotes(name));
        let Some(text) = logged(LogFormat::Text, || {
            tracing::info!(target: "scan", object = %name, "Finding.");
        }) else {
            return;
        };
        assert!(
            text.contains("object=\"a\\u{2028}b\\u{2029}c.exe\""),
            "{text}"
        );
        let Some(json) = logged(LogFormat::Json, || {
            tracing::info!(target: "scan", object = %name, "Finding.");
        }) else {
            return;
        };
        assert!(
            !json.contains('\u{2028}') && !json.contains('\u{2029}'),
            "{json}"
        );
        let line: serde_json::Value = serde_json::from_str(json.trim_end()).unwrap();
        assert_eq!(line["fields"]["object"], name, "the value is kept");
    }

    #[test]
    fn bidi_controls_are_escaped_so_a_line_reads_as_it_is() {
        // walkL 19: `invoice\u{202E}fdp.exe` was written raw, and a
        // terminal showed the rest of the line reversed ("invoiceexe.pdf").
        let name = "invoice\u{202E}fdp.exe";
        let Some(text) = logged(LogFormat::Text, || {
            tracing::info!(target: "scan", object = %name, "Finding.");
        }) else {
            return;
        };
        assert!(
            text.contains("object=\"invoice\\u{202E}fdp.exe\""),
            "{text}"
        );
        assert!(!text.contains('\u{202E}'), "{text}");
        let Some(json) = logged(LogFormat::Json, || {
            tracing::info!(target: "scan", object = %name, "Finding.");
        }) else {
            return;
        };
        assert!(!json.contains('\u{202E}'), "{json}");
        let line: serde_json::Value = serde_json::from_str(json.trim_end()).unwrap();
        assert_eq!(line["fields"]["object"], name, "the value is kept");
    }

    #[test]
    fn invisible_format_characters_are_escaped_so_a_grep_finds_what_it_sees() {
        // walkAR F1: `n\u{200B}ou.example` was written raw, and the line
        // looked like `nou.example`, which a grep for it did not find.
        let subject = "n\u{200B}ou \u{FEFF}soft\u{AD}hyphen";
        let Some(text) = logged(LogFormat::Text, || {
            tracing::info!(target: "scan", subject = %subject, "Message checked.");
        }) else {
            return;
        };
        assert!(
            text.contains("n\\u{200B}ou \\u{FEFF}soft\\u{00AD}hyphen"),
            "{text}"
        );
        assert!(
            !text.contains('\u{200B}') && !text.contains('\u{AD}'),
            "{text}"
        );
    }

    /// walkV 5: a name could add fields of its own (`to=ceo@example.com`).
    #[test]
    fn a_value_that_could_add_fields_is_quoted_and_a_plain_one_is_not() {
        assert!(!needs_quotes("eicar.com"));
        assert!(!needs_quotes("invoice.zip/\u{43f}.scr"));
        for v in [
            "",
            "part 1",
            "a b=c",
            "a\\b",
            "a=b",
            "a\"b",
            "a\nb",
            "x\u{202E}y",
        ] {
            assert!(needs_quotes(v), "{v:?}");
        }
        let name = "a\n2026-12-05T19:00:00Z  INFO delivery: Delivered. queue_id=FAKE to=ceo@example.com x.exe";
        let Some(text) = logged(LogFormat::Text, || {
            tracing::info!(target: "scan", detection = %"eicar.com", object = %name, "Finding.");
        }) else {
            return;
        };
        assert_one_clean_line(&text);
        assert!(
            text.contains("detection=eicar.com object=\"a\\n2026-12-05T19:00:00Z  INFO delivery: Delivered. queue_id=FAKE to=ceo@example.com x.exe\"\n"),
            "{text}"
        );
        let Some(json) = logged(LogFormat::Json, || {
            tracing::info!(target: "scan", object = %name, "Finding.");
        }) else {
            return;
        };
        let line: serde_json::Value = serde_json::from_str(json.trim_end()).unwrap();
        assert_eq!(line["fields"]["object"], name, "the value is kept");
    }

    #[test]
    fn one_line_leaves_clean_lines_alone() {
        let clean = b"2026-12-01T13:00:00Z  INFO smtp: Message accepted. from=a@b.test\n";
        assert!(matches!(
            one_line(clean, LogFormat::Text),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(&*one_line(b"a\tb\n", LogFormat::Text), b"a\\tb\n");
        assert_eq!(&*one_line(b"no newline", LogFormat::Text), b"no newline\n");
    }

    #[test]
    fn a_new_file_that_cannot_be_made_is_reported_with_the_user_and_the_fix() {
        // walkF #5: `log reopen` said "Reopened" while the unprivileged
        // daemon could not create the new file, and the lines vanished.
        // A path under a regular file cannot be made, even by root.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let path = file.join("mailward.log");
        let e = probe(&path, LOG_FILE_MODE).unwrap_err();
        let text = e.to_string();
        let user = crate::ops::privileges::current_user();
        assert!(
            text.starts_with(&format!(
                "cannot open {} as user {user} after the reopen: ",
                path.display()
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!("Make {} writable by {user}", file.display())),
            "{text}"
        );
        // A file that can be made is made, with the log's mode.
        let good = dir.path().join("logs").join("mailward.log");
        probe(&good, LOG_FILE_MODE).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&good).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & !LOG_FILE_MODE, 0, "{mode:o}");
    }

    #[test]
    fn a_line_the_file_writer_cannot_write_keeps_its_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let path = file.join("m.log");
        let log = FileLog::new(
            Arc::new(RotatingFile::new(&path, 0, 0, LOG_FILE_MODE)),
            true,
        );
        let before = dropped();
        // Another test's writer (syslog's) may keep its own error in
        // between: a few tries for this one's to be the last.
        let mut last = None;
        for _ in 0..5 {
            log.write(b"lost\n".to_vec());
            log.flush(std::time::Duration::from_secs(10));
            last = last_error().map(|(e, _)| e);
            if last
                .as_deref()
                .is_some_and(|e| e.contains(&path.display().to_string()))
            {
                break;
            }
        }
        assert!(dropped() > before);
        let error = last.unwrap_or_default();
        assert!(
            error.starts_with(&format!(
                "cannot write {} as user {}: ",
                path.display(),
                crate::ops::privileges::current_user()
            )),
            "{error}"
        );
    }

    #[test]
    fn json_with_a_syslog_destination_is_warned_about() {
        // walkF #17: the collector got RFC 3164 text, silently.
        let syslog = LogDestination::Syslog(crate::config::SyslogTarget {
            transport: crate::config::SyslogTransport::Tcp("127.0.0.1:601".into()),
            facility: "local3".into(),
        });
        let w = config_warnings(&log_to(syslog.clone(), LogFormat::Json, &[]));
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].0, "format");
        assert!(
            w[0].1.starts_with("log.format: \"json\" applies to stderr and file destinations only; to syslog (tcp:127.0.0.1:601)"),
            "{}",
            w[0].1
        );
        assert!(config_warnings(&log_to(syslog, LogFormat::Text, &[])).is_empty());
        let file = LogDestination::File("/var/log/mailward/mailward.log".into());
        assert!(config_warnings(&log_to(file, LogFormat::Json, &[])).is_empty());
    }

    #[test]
    fn a_syslog_socket_that_does_not_exist_is_warned_about() {
        // walkT 15: check-config said nothing; `run` then dropped every line.
        let dir = tempfile::tempdir().unwrap();
        let to = |path: std::path::PathBuf| {
            LogDestination::Syslog(crate::config::SyslogTarget {
                transport: crate::config::SyslogTransport::Unix(path),
                facility: "local3".into(),
            })
        };
        let missing = dir.path().join("log");
        let w = config_warnings(&log_to(to(missing.clone()), LogFormat::Text, &[]));
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].0, "destination");
        assert!(
            w[0].1
                .contains(&format!("{} does not exist", missing.display())),
            "{}",
            w[0].1
        );
        let _socket = std::os::unix::net::UnixDatagram::bind(&missing).unwrap();
        assert!(config_warnings(&log_to(to(missing), LogFormat::Text, &[])).is_empty());
    }

    #[test]
    fn unopenable_destinations() {
        // Under a regular file: not a directory, even for root.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let path = file.join("x.log");
        let log = log_to(
            LogDestination::File(path.clone()),
            LogFormat::Text,
            &["all.info"],
        );
        let e = dispatch(&log).unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("cannot open log file {}: ", path.display())),
            "{e}"
        );
    }
}
