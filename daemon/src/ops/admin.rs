//! The admin socket: a unix socket (mode 0660) through which the CLI asks
//! the running daemon about its queue. One JSON request line, one JSON
//! response line, then the connection closes. The protocol is internal to
//! `mailward`; scripts should use `mailward queue list --json`.

use crate::envelope::{Envelope, QueueId, RcptState};
use crate::gateway::Gateway;
use crate::store::Direction;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// Longest request we read.
const MAX_REQUEST: u64 = 64 * 1024;

/// Admin connections served at once (`mailward` commands, scripts); past
/// this one is refused with an error it can show.
const MAX_CONNECTIONS: usize = 16;

/// Time for a connection's request line to arrive. The CLI sends it at
/// once; a client that connects and says nothing gives its slot back.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Time for a response to be taken by a client that does not read.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("admin socket {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The socket's directory cannot be made: without systemd nothing
    /// makes /run/mailward, and `Permission denied` alone named neither
    /// the directory nor the fix (walkBB F2).
    #[error("admin socket {}: cannot make its directory {}: {source}; make it for the daemon's user (install -d -o {owner} -g {group} -m 0750 {}: systemd's RuntimeDirectory= does at each start), or set server.admin_socket to a place that user can write", path.display(), dir.display(), dir.display())]
    Dir {
        path: PathBuf,
        dir: PathBuf,
        owner: String,
        group: String,
        #[source]
        source: std::io::Error,
    },
    #[error("admin socket {0} is in use: is another mailward running with this data directory?")]
    InUse(PathBuf),
    #[error("cannot reach the daemon at {path}{hint}: {source}. Is `mailward run` running with this configuration? (A daemon keeps the server.data_dir and server.admin_socket it started with until it restarts: if the file changed them since, it listens at the old place.)")]
    Unreachable {
        path: PathBuf,
        /// Where a relative path points, and the packaged configuration
        /// when there is one ([`where_hint`]).
        hint: String,
        #[source]
        source: std::io::Error,
    },
    /// The socket is there (or its directory is), but this user may not
    /// use it: not a daemon that is down, so not [`AdminError::Unreachable`].
    #[error("this user ({user}) may not use the admin socket {path}: {access} ({source}), so whether the daemon runs is not known. Run the command as root or as the daemon's user, or add {user} to the group that may (then log in again).")]
    NotPermitted {
        path: PathBuf,
        /// Who runs the command.
        user: String,
        /// Whose the socket (or the directory that bars the way) is.
        access: Box<Access>,
        #[source]
        source: std::io::Error,
    },
    /// The socket took the connection (the kernel does, for a listening
    /// socket, even when the daemon is stopped or hung) but no answer came
    /// within the command's deadline ([`Request::deadline`]).
    #[error("the daemon at {} accepted the connection but did not answer within {}: it may be stopped (kill -CONT) or hung, and may still carry the request out if it resumes. Look at `systemctl status mailward` and its log, and restart it if it stays so (`systemctl restart mailward`; without systemd, stop the pid in server.data_dir/mailward.lock and start it again).", .path.display(), seconds(*.after))]
    NoAnswer { path: PathBuf, after: Duration },
    #[error("the daemon answered something unreadable: {0}")]
    BadResponse(String),
    #[error("{0}")]
    Refused(String),
}

impl AdminError {
    /// The exit status of a CLI command that fails with this error
    /// (sysexits): 77 when this user may not use the socket, 69 when no
    /// daemon answers, 1 when the daemon refused the request.
    pub fn exit_code(&self) -> u8 {
        match self {
            AdminError::Refused(_) => 1,
            AdminError::NotPermitted { .. } => 77,
            _ => 69,
        }
    }
}

/// A deadline as people read it: "10 s", "30 min", or milliseconds for
/// the short ones of the tests.
fn seconds(d: Duration) -> String {
    match d.as_secs() {
        0 => format!("{} ms", d.as_millis()),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// Owner, group and mode of the socket or of the directory that bars the
/// way to it, for a [`AdminError::NotPermitted`] message.
#[derive(Debug)]
pub enum Access {
    Socket {
        owner: String,
        group: String,
        mode: u32,
    },
    Directory {
        path: PathBuf,
        owner: String,
        group: String,
        mode: u32,
    },
    /// Neither could be read.
    Unknown,
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Access::Socket { owner, group, mode } => {
                write!(f, "it is {owner}:{group} mode {mode:04o}")
            }
            Access::Directory {
                path,
                owner,
                group,
                mode,
            } => write!(
                f,
                "its directory {} is {owner}:{group} mode {mode:04o}",
                path.display()
            ),
            Access::Unknown => write!(f, "its owner and mode cannot be read either"),
        }
    }
}

/// The name of user `uid` (or the number, when it has none).
fn user_name(uid: u32) -> String {
    use nix::unistd::{Uid, User};
    User::from_uid(Uid::from_raw(uid))
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |u| u.name)
}

/// The name of group `gid` (or the number).
fn group_name(gid: u32) -> String {
    use nix::unistd::{Gid, Group};
    Group::from_gid(Gid::from_raw(gid))
        .ok()
        .flatten()
        .map_or_else(|| gid.to_string(), |g| g.name)
}

/// Owner, group and mode of socket `path`, else of the nearest directory
/// above it that can be read (one this user cannot enter hides the socket).
fn access_of(path: &Path) -> Access {
    use std::os::unix::fs::MetadataExt;
    if let Ok(m) = std::fs::metadata(path) {
        return Access::Socket {
            owner: user_name(m.uid()),
            group: group_name(m.gid()),
            mode: m.mode() & 0o7777,
        };
    }
    for dir in path.ancestors().skip(1) {
        if let Ok(m) = std::fs::metadata(dir) {
            return Access::Directory {
                path: dir.to_path_buf(),
                owner: user_name(m.uid()),
                group: group_name(m.gid()),
                mode: m.mode() & 0o7777,
            };
        }
    }
    Access::Unknown
}

/// The error of a failed connection to the socket at `path`: a permission
/// problem is told apart from a daemon that does not run, so that a
/// monitoring user outside the socket's group is not told the daemon is
/// down.
pub fn connect_error(path: &Path, source: std::io::Error) -> AdminError {
    if source.kind() == std::io::ErrorKind::PermissionDenied {
        AdminError::NotPermitted {
            path: path.to_path_buf(),
            user: user_name(nix::unistd::geteuid().as_raw()),
            access: Box::new(access_of(path)),
            source,
        }
    } else {
        AdminError::Unreachable {
            path: path.to_path_buf(),
            hint: where_hint(path, Path::new(PACKAGED_CONFIG)),
            source,
        }
    }
}

/// The Debian package's configuration file.
pub const PACKAGED_CONFIG: &str = "/etc/mailward/mailward.toml";

/// For a relative socket path (the embedded default's
/// `mailward-data/admin.sock`, used when no --config is given): the
/// directory it is relative to and, where the package is installed, the
/// configuration to give (walkN: on a packaged host `mailward status`
/// without --config said the daemon was not running).
fn where_hint(path: &Path, packaged: &Path) -> String {
    if path.is_absolute() {
        return String::new();
    }
    let cwd = std::env::current_dir().map_or_else(|_| ".".into(), |d| d.display().to_string());
    let mut hint = format!(" (relative to the current directory {cwd})");
    if packaged.exists() {
        hint.push_str(&format!(
            "; the packaged gateway's configuration is {}: give --config {} or set MAILWARD_CONFIG={}",
            packaged.display(),
            packaged.display(),
            packaged.display()
        ));
    }
    hint
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// The queue, or the part of it `filter` selects (walkAS F6: 20k
    /// messages were 40,000 lines with no way to look at a part).
    QueueList {
        #[serde(flatten, default)]
        filter: QueueFilter,
    },
    QueueShow {
        id: String,
    },
    QueueFlush,
    QueueRemove {
        id: String,
    },
    QueueHold {
        id: String,
    },
    QueueRelease {
        id: String,
    },
    BasesStatus,
    BasesUpdate {
        from: Option<String>,
        /// Install a set released before the one in use.
        #[serde(default)]
        allow_older: bool,
    },
    BasesRollback,
    Status,
    StatsShow,
    StatsWrite,
    StatsReset,
    LogReopen,
    /// Re-read the configuration file, as SIGHUP does, and say what came
    /// of it (`mailward reload`).
    Reload,
    QuarantineList {
        #[serde(flatten)]
        filter: super::stores::Filter,
    },
    QuarantineShow {
        id: String,
    },
    QuarantineRelease {
        id: String,
        to: Option<String>,
        /// Also teach the spam classifier that it is ham.
        #[serde(default)]
        learn_ham: bool,
        /// Send it even if it was released before.
        #[serde(default)]
        again: bool,
    },
    QuarantineRemove {
        id: String,
        /// Teach the spam classifier that it is spam before removing it.
        #[serde(default)]
        learn_spam: bool,
    },
    QuarantinePurge {
        older_than: u64,
    },
    ArchiveList {
        #[serde(flatten)]
        filter: super::stores::Filter,
        direction: Option<Direction>,
    },
    ArchiveShow {
        id: String,
        direction: Option<Direction>,
    },
    ArchiveSend {
        id: String,
        direction: Option<Direction>,
        to: Option<String>,
        /// Send it even to recipients it was sent to before.
        #[serde(default)]
        again: bool,
    },
    ArchiveRemove {
        id: String,
        direction: Option<Direction>,
    },
    ArchivePurge {
        older_than: u64,
        direction: Option<Direction>,
    },
}

/// How long the CLI waits for most answers: the daemon gives them from
/// memory or with a few file operations, at once. Past it a daemon that
/// accepts but does not answer (stopped, hung) is reported, rather than a
/// monitoring check or logrotate's `postrotate` waiting for ever.
pub const QUICK_DEADLINE: Duration = Duration::from_secs(10);

/// For requests that go through a whole store on disk (listings, purges)
/// or write and spool a message (release, send again, learning): tens of
/// thousands of entries on a slow disk take more than [`QUICK_DEADLINE`].
pub const STORE_DEADLINE: Duration = Duration::from_secs(300);

/// For `bases update` and `bases rollback`: the daemon checks and compiles
/// a whole rule set before it answers, which takes minutes for a large
/// one (mail keeps flowing meanwhile).
pub const BASES_DEADLINE: Duration = Duration::from_secs(1800);

/// How long the daemon waits for one update to read and compile its set
/// before it gives up on it: well within [`BASES_DEADLINE`], so that the
/// CLI hears why.
pub const UPDATE_DEADLINE: Duration = Duration::from_secs(600);

impl Request {
    /// How long the CLI waits for the daemon's answer to this request,
    /// from the connection on: by what the daemon does for it
    /// ([`handle`]).
    pub fn deadline(&self) -> Duration {
        match self {
            // A reload reloads the bases too, and compiles a changed set
            // before it answers, as an update does.
            Request::BasesUpdate { .. } | Request::BasesRollback | Request::Reload => {
                BASES_DEADLINE
            }
            Request::QuarantineList { .. }
            | Request::QuarantineRelease { .. }
            | Request::QuarantineRemove {
                learn_spam: true, ..
            }
            | Request::QuarantinePurge { .. }
            | Request::ArchiveList { .. }
            | Request::ArchiveSend { .. }
            | Request::ArchivePurge { .. } => STORE_DEADLINE,
            // From memory (status, statistics, the queue, bases status, log
            // reopen, which never waits for the log writer), or one entry's
            // few files (show, hold, release, remove, stats write).
            Request::QueueList { .. }
            | Request::QueueShow { .. }
            | Request::QueueFlush
            | Request::QueueRemove { .. }
            | Request::QueueHold { .. }
            | Request::QueueRelease { .. }
            | Request::BasesStatus
            | Request::Status
            | Request::StatsShow
            | Request::StatsWrite
            | Request::StatsReset
            | Request::LogReopen
            | Request::QuarantineShow { .. }
            | Request::QuarantineRemove { .. }
            | Request::ArchiveShow { .. }
            | Request::ArchiveRemove { .. } => QUICK_DEADLINE,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub data: serde_json::Value,
}

/// One recipient as the CLI shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct RcptView {
    pub address: String,
    /// pending | delivered | failed
    pub state: String,
    /// The last error (pending) or the final reply.
    pub detail: Option<String>,
}

/// One queued message as the CLI shows it (`queue list --json` prints a
/// JSON array of these).
#[derive(Debug, Serialize, Deserialize)]
pub struct QueueItem {
    pub id: String,
    pub size: u64,
    pub received_at: i64,
    pub sender: String,
    pub recipients: Vec<RcptView>,
    pub attempts: u32,
    pub next_attempt: i64,
    /// Held by an administrator (`queue hold`): no attempt until released.
    #[serde(default)]
    pub held: bool,
    /// A delivery attempt (or a change) has it now: `queue hold` and
    /// `remove` answer "right now" until it ends.
    #[serde(default)]
    pub active: bool,
}

/// Which queued messages `queue list` shows (every field optional; all
/// given must match).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueFilter {
    /// A recipient still waiting at this domain (case-insensitive; its
    /// subdomains not included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The envelope sender, case-insensitive; `<>` for bounces, `@DOMAIN`
    /// for any sender at that domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Tried at least once and still waiting, not held (as `status`
    /// counts deferred mail).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deferred: bool,
    /// Held by an administrator.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
    /// At most this many, oldest first as the queue lists them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

impl QueueFilter {
    pub fn is_empty(&self) -> bool {
        *self == QueueFilter::default()
    }

    pub fn matches(&self, e: &Envelope) -> bool {
        let waiting = |r: &crate::envelope::Recipient| matches!(r.state, RcptState::Pending { .. });
        if let Some(domain) = &self.to {
            let domain = domain.trim_start_matches('@');
            let at = |a: &str| {
                a.rsplit_once('@')
                    .is_some_and(|(_, d)| d.eq_ignore_ascii_case(domain))
            };
            if !e.rcpts.iter().any(|r| waiting(r) && at(&r.address)) {
                return false;
            }
        }
        if let Some(from) = &self.from {
            let ok = if from == "<>" {
                e.mail_from.is_empty()
            } else if let Some(domain) = from.strip_prefix('@') {
                e.mail_from
                    .rsplit_once('@')
                    .is_some_and(|(_, d)| d.eq_ignore_ascii_case(domain))
            } else {
                e.mail_from.eq_ignore_ascii_case(from)
            };
            if !ok {
                return false;
            }
        }
        if self.deferred && (e.held || e.attempts == 0 || !e.rcpts.iter().any(waiting)) {
            return false;
        }
        if self.held && !e.held {
            return false;
        }
        true
    }
}

/// The answer to a filtered `queue list`: the messages shown, how many
/// matched (more than shown when `limit` cut) and how many are queued.
#[derive(Debug, Serialize, Deserialize)]
pub struct QueueListing {
    pub items: Vec<QueueItem>,
    pub matched: u64,
    pub queued: u64,
}

/// What `queue show` prints beside the listing's row: where the message
/// came from and the envelope as its DSNs will use it (walkK: RET, ENVID,
/// NOTIFY and ORCPT were shown nowhere, so an administrator could not tell
/// whether removing a message or letting it expire tells its sender).
pub fn show_detail(env: &Envelope) -> serde_json::Value {
    use crate::envelope::Ret;
    let notify = |n: &crate::envelope::Notify| {
        if n.never {
            return "NEVER".to_string();
        }
        [
            ("SUCCESS", n.success),
            ("FAILURE", n.failure),
            ("DELAY", n.delay),
        ]
        .iter()
        .filter(|(_, on)| *on)
        .map(|(w, _)| *w)
        .collect::<Vec<_>>()
        .join(",")
    };
    serde_json::json!({
        "received_at": env.received_at,
        "client": env.client_ip.to_string(),
        "helo": env.helo,
        "tls": env.tls,
        "forwarded_by": env.forwarded_by.map(|a| a.to_string()),
        "upstream_id": env.upstream_id,
        "ret": env.ret.map(|r| match r {
            Ret::Full => "FULL",
            Ret::Hdrs => "HDRS",
        }),
        "envid": env.envid,
        "attempts": env.attempts,
        "delay_notified": env.delay_notified,
        "recipients": env
            .rcpts
            .iter()
            .map(|r| serde_json::json!({
                "address": r.address,
                "notify": r.notify.as_ref().map(notify),
                "orcpt": r.orcpt,
            }))
            .collect::<Vec<_>>(),
    })
}

impl From<&Envelope> for QueueItem {
    fn from(e: &Envelope) -> QueueItem {
        QueueItem {
            id: e.id.0.clone(),
            size: e.size,
            received_at: e.received_at,
            sender: e.mail_from.clone(),
            recipients: e
                .rcpts
                .iter()
                .map(|r| {
                    let (state, detail) = match &r.state {
                        RcptState::Pending { last_error } => ("pending", last_error.clone()),
                        RcptState::Delivered { reply, .. } => ("delivered", Some(reply.clone())),
                        RcptState::Failed { reply, .. } => ("failed", Some(reply.clone())),
                    };
                    RcptView {
                        address: r.address.clone(),
                        state: state.into(),
                        detail,
                    }
                })
                .collect(),
            attempts: e.attempts,
            next_attempt: e.next_attempt,
            held: e.held,
            active: false,
        }
    }
}

fn ok(data: serde_json::Value) -> Response {
    Response {
        ok: true,
        error: None,
        data,
    }
}

fn err(msg: String) -> Response {
    Response {
        ok: false,
        error: Some(msg),
        data: serde_json::Value::Null,
    }
}

fn parse_id(id: &str) -> Result<QueueId, Response> {
    // In either case, as the entry IDs of the stores (walkAW F25).
    let canonical = QueueId::canonical(id);
    if QueueId::is_valid(&canonical) {
        Ok(QueueId(canonical))
    } else {
        Err(err(format!(
            "`{id}` is not a queue ID (16 hexadecimal digits, maybe with a .N suffix, as `mailward queue list` shows)"
        )))
    }
}

/// A reload asked over the admin socket (`mailward reload`): the main loop
/// of `mailward run` carries it out as it does a SIGHUP, one at a time,
/// and sends the outcome back through this.
pub type ReloadAsk = tokio::sync::oneshot::Sender<crate::run::ReloadOutcome>;

/// `Request::Reload`: hands the reload to the main loop and waits for it.
async fn reload(reloads: &tokio::sync::mpsc::Sender<ReloadAsk>) -> Response {
    let by = super::stores::ADMIN_PEER
        .try_with(String::clone)
        .unwrap_or_else(|_| "unknown".to_string());
    tracing::info!(target: "admin", by = %by, "Configuration reload asked (mailward reload).");
    let (tx, rx) = tokio::sync::oneshot::channel();
    if reloads.send(tx).await.is_err() {
        return err("the daemon is stopping; nothing was reloaded".into());
    }
    match rx.await {
        Ok(outcome) => answer(serde_json::to_value(outcome).map_err(|e| e.to_string())),
        Err(_) => err("the daemon stopped before it reloaded; nothing was reloaded".into()),
    }
}

/// What `mailward reload` prints for the daemon's answer, and whether the
/// reload was taken: (lines for stdout, lines for stderr, taken). `asked`
/// is the file given with --config, which only finds the socket: the
/// daemon re-reads the file it was started with, and a different one is
/// said so.
pub fn reload_report(
    outcome: &crate::run::ReloadOutcome,
    asked: Option<&Path>,
) -> (Vec<String>, Vec<String>, bool) {
    let (mut out, mut errs) = (Vec::new(), Vec::new());
    let asked = asked.map(|p| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()));
    if let Some(asked) = asked.filter(|a| a.as_path() != Path::new(&outcome.file)) {
        errs.push(format!(
            "mailward: note: the daemon re-reads the file it was started with, {}, not {}.",
            outcome.file,
            asked.display()
        ));
    }
    if !outcome.ok {
        errs.push(format!(
            "mailward: reload refused: the daemon keeps running on the previous configuration; fix {} (mailward check-config) and reload again:",
            outcome.file
        ));
        if outcome.problems.is_empty() {
            errs.push(outcome.message.clone());
        }
        errs.extend(outcome.problems.iter().cloned());
        return (out, errs, false);
    }
    out.push(format!(
        "Reloaded {} ({} reload(s) since the start, {} refused).",
        outcome.file, outcome.reloads, outcome.refused
    ));
    if outcome.changed.is_empty() {
        out.push("No setting in force changed.".into());
    } else {
        out.push(format!("Changed: {}.", outcome.changed.join(", ")));
    }
    if !outcome.restart.is_empty() {
        out.push(format!(
            "Needs a restart (the running value stays until then): {}.",
            outcome.restart.join("; ")
        ));
    }
    // On stderr, as check-config prints them: the reload is done.
    errs.extend(outcome.warnings.iter().cloned());
    (out, errs, true)
}

/// [`reload_report`] of the daemon's answer as it came over the socket.
pub fn reload_answer(
    data: serde_json::Value,
    asked: Option<&Path>,
) -> (Vec<String>, Vec<String>, bool) {
    match serde_json::from_value::<crate::run::ReloadOutcome>(data) {
        Ok(outcome) => reload_report(&outcome, asked),
        Err(e) => (
            Vec::new(),
            vec![format!(
                "mailward: the daemon's answer cannot be read ({e}); see `mailward status` for whether it reloaded"
            )],
            false,
        ),
    }
}

/// The reply to a store command.
fn answer(r: Result<serde_json::Value, String>) -> Response {
    r.map_or_else(err, ok)
}

async fn handle(
    gw: &Gateway,
    reloads: &tokio::sync::mpsc::Sender<ReloadAsk>,
    req: Request,
) -> Response {
    use super::stores;
    let archives = stores::archives;
    match req {
        Request::QuarantineList { filter } => answer(
            stores::list(&gw.stores.quarantine, filter, None)
                .await
                .and_then(|l| serde_json::to_value(l).map_err(|e| e.to_string())),
        ),
        Request::QuarantineShow { id } => {
            let store = &gw.stores.quarantine;
            match stores::resolve(store, id, "quarantine show").await {
                Ok(id) => answer(stores::show(store, id).await),
                Err(e) => err(e),
            }
        }
        Request::QuarantineRelease {
            id,
            to,
            learn_ham,
            again,
        } => answer(stores::release(gw, id, to, learn_ham, again).await),
        Request::QuarantineRemove { id, learn_spam } => answer(if learn_spam {
            stores::remove_as_spam(gw, id).await
        } else {
            stores::remove(&gw.stores.quarantine, id).await
        }),
        Request::QuarantinePurge { older_than } => {
            answer(stores::purge(&gw.stores.quarantine, older_than).await)
        }
        Request::ArchiveList { filter, direction } => {
            let mut all = Vec::new();
            for d in archives(direction) {
                match stores::list(gw.stores.archive(d), filter.clone(), Some(d)).await {
                    Ok(l) => all.extend(l),
                    Err(e) => return err(e),
                }
            }
            all.sort_by(|a, b| (&a.stored, &a.id).cmp(&(&b.stored, &b.id)));
            answer(serde_json::to_value(all).map_err(|e| e.to_string()))
        }
        Request::ArchiveShow { id, direction } => {
            let (store, _) = match stores::archive_of(gw, &id, direction) {
                Ok(found) => found,
                Err(e) => return err(e),
            };
            answer(stores::show(&store, id).await)
        }
        Request::ArchiveSend {
            id,
            direction,
            to,
            again,
        } => {
            let (store, d) = match stores::archive_of(gw, &id, direction) {
                Ok(found) => found,
                Err(e) => return err(e),
            };
            let what = format!("archive {}", d.as_str());
            answer(stores::send_archived(gw, &store, id, to, again, &what).await)
        }
        Request::ArchiveRemove { id, direction } => {
            let (store, _) = match stores::archive_of(gw, &id, direction) {
                Ok(found) => found,
                Err(e) => return err(e),
            };
            answer(stores::remove(&store, id).await)
        }
        Request::ArchivePurge {
            older_than,
            direction,
        } => {
            let mut removed = 0;
            for d in archives(direction) {
                match stores::purge(gw.stores.archive(d), older_than).await {
                    Ok(v) => removed += v["removed"].as_u64().unwrap_or(0),
                    Err(e) => return err(e),
                }
            }
            ok(serde_json::json!({ "removed": removed }))
        }
        Request::QueueList { filter } => {
            // Which are in delivery now (walkP 15: "NEXT TRY now" for a
            // message whose attempt had run for 40 s, and hold refused).
            let active = gw.queue.active_ids();
            let queue = gw.queue.list();
            // Filtered here, not in the CLI: 20k envelopes are not
            // serialised to be thrown away.
            let mut matched = 0u64;
            let mut items = Vec::new();
            for e in queue.iter().filter(|e| filter.matches(e)) {
                matched += 1;
                if filter.limit.is_none_or(|n| items.len() < n) {
                    items.push(QueueItem {
                        active: active.contains(&e.id),
                        ..QueueItem::from(e.as_ref())
                    });
                }
            }
            // Without a filter the answer stays the bare array that
            // `queue summary`, scripts and older CLIs read.
            let answer = if filter.is_empty() {
                serde_json::to_value(items)
            } else {
                serde_json::to_value(QueueListing {
                    items,
                    matched,
                    queued: queue.len() as u64,
                })
            };
            answer.map_or_else(|e| err(e.to_string()), ok)
        }
        Request::QueueShow { id } => {
            let id = match parse_id(&id) {
                Ok(id) => id,
                Err(r) => return r,
            };
            let Some(env) = gw.queue.get(&id) else {
                return err(format!("no message {id} in the queue"));
            };
            let message = gw
                .spool
                .read(&id)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_else(|e| format!("(cannot read the message: {e})"));
            ok(serde_json::json!({
                "envelope": QueueItem::from(&env),
                "detail": show_detail(&env),
                "message": message,
            }))
        }
        Request::BasesStatus => bases_status(gw),
        Request::BasesUpdate { from, allow_older } => bases_update(gw, from, allow_older).await,
        Request::BasesRollback => bases_rollback(gw).await,
        Request::StatsShow => ok(gw.snapshot().to_json()),
        Request::Status => {
            serde_json::to_value(super::status::of(gw)).map_or_else(|e| err(e.to_string()), ok)
        }
        Request::StatsWrite => match crate::ops::stats_file::write(gw).await {
            Ok(path) => ok(serde_json::json!({ "path": path })),
            Err(e) => err(e.to_string()),
        },
        Request::Reload => reload(reloads).await,
        Request::LogReopen => {
            let reopened = crate::ops::logging::reopen_all(gw);
            if !reopened.failed.is_empty() {
                // Not "reopened": the command must fail so that the
                // administrator (or logrotate's mail) hears of lost lines.
                let why: Vec<String> = reopened.failed.iter().map(ToString::to_string).collect();
                return err(why.join(" "));
            }
            tracing::info!(target: "admin", "Log files reopened.");
            ok(serde_json::json!({ "log": reopened.log, "raw": reopened.raw }))
        }
        Request::StatsReset => {
            // The figures up to the reset go to the stats file first, as
            // at a stop (walkU 2: an accountant reading the file lost up to
            // write_interval of counts); the snapshot is taken with the
            // reset (one snapshot serves both).
            let before = gw.reset_stats();
            tracing::info!(target: "admin", "Statistics reset.");
            let reset_time = gw.snapshot().reset_time;
            match crate::ops::stats_file::write_snapshot(gw, &before).await {
                Ok(path) => {
                    tracing::info!(target: "app", path = %path.display(), "Statistics written (reset): the figures up to the reset.");
                    ok(serde_json::json!({ "reset_time": reset_time, "path": path }))
                }
                Err(e) => {
                    tracing::warn!(target: "app", error = %e, "Cannot write the statistics file.");
                    ok(
                        serde_json::json!({ "reset_time": reset_time, "write_error": e.to_string() }),
                    )
                }
            }
        }
        Request::QueueFlush => {
            // Suspensions first: the mail made due next must find its
            // destinations open (walkAW F1).
            let lifted = gw.suspensions.lift_all(&gw.stats);
            let n = gw.queue.flush();
            // Held messages stay held: named, so that the admin is not
            // left wondering why one did not go (walkP 15).
            let held: Vec<String> = gw
                .queue
                .held_ids()
                .iter()
                .map(ToString::to_string)
                .collect();
            tracing::info!(target: "admin", messages = n, held = held.len(), "Queue flush requested.");
            ok(serde_json::json!({ "scheduled": n, "held": held, "resumed": lifted }))
        }
        Request::QueueHold { id } => hold_or_release(gw, &id, true).await,
        Request::QueueRelease { id } => hold_or_release(gw, &id, false).await,
        Request::QueueRemove { id } => {
            let id = match parse_id(&id) {
                Ok(id) => id,
                Err(r) => return r,
            };
            match gw.queue.take(&id) {
                Ok(env) => {
                    // Only if written: a removal the spool cannot record
                    // must not let the spool delete the message's bytes
                    // while the queue keeps it.
                    if let Err(e) = gw.spool.remove_or_nothing(&env).await {
                        // Put it back: the removal is not durable.
                        gw.queue.enqueue(env);
                        return err(format!("cannot record the removal: {e}"));
                    }
                    crate::events::MessageRemoved {
                        id: &id,
                        why: "removed by an administrator",
                    }
                    .emit();
                    ok(serde_json::json!({ "removed": id.0 }))
                }
                Err(e) => err(e.to_string()),
            }
        }
    }
}

/// `queue hold` (`hold`) or `queue release`: recorded in the spool, so that
/// it survives a restart, before it takes effect in the queue; delivery
/// cannot take the message meanwhile, and when the spool cannot record the
/// change the message stays as it was.
async fn hold_or_release(gw: &Gateway, id: &str, hold: bool) -> Response {
    let id = match parse_id(id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let pending = if hold {
        gw.queue.hold(&id)
    } else {
        gw.queue.release(&id)
    };
    let pending = match pending {
        Ok(p) => p,
        Err(e) => return err(e.to_string()),
    };
    // Only if written: a change the spool cannot record must not reach the
    // spool's own copy of the envelope either (compaction writes that copy
    // forward, and a restart would then apply the change after all).
    let recorded = gw.spool.update_or_nothing(&pending.after).await;
    let received_at = pending.after.received_at;
    pending.settle(recorded.is_ok());
    if let Err(e) = recorded {
        return err(format!(
            "cannot record it in the spool, so nothing changed: {e}"
        ));
    }
    if hold {
        tracing::info!(target: "admin", queue_id = %id, "Message held by an administrator; no delivery until it is released.");
        ok(serde_json::json!({ "held": id.0 }))
    } else {
        tracing::info!(target: "admin", queue_id = %id, "Message released by an administrator; it is due now.");
        // A held message keeps its age (walkP 15): past its lifetime, the
        // attempt now is its last, and the administrator is told so.
        let lifetime = gw.config().timeouts.max_queue_lifetime.get().as_secs() as i64;
        let age = chrono::Utc::now().timestamp() - received_at;
        ok(serde_json::json!({ "released": id.0, "past_lifetime": age > lifetime }))
    }
}

fn bases_status(gw: &Gateway) -> Response {
    use mailward_metrics::StatId;
    let cfg = gw.config();
    let snap = gw.snapshot();
    let info = |b: Option<crate::check::bases::BasesInfo>| {
        b.map(|b| {
            serde_json::json!({
                "version": b.version, "released": b.released, "records": b.records, "loaded_at": b.loaded_at,
            })
        })
    };
    // The previous set is not loaded: it has no load time.
    let (previous, previous_error) =
        match crate::check::bases::read(&crate::check::bases::previous_dir(&cfg.bases.av)) {
            Ok(b) => (
                b.map(|b| crate::check::bases::BasesInfo { loaded_at: 0, ..b }),
                None,
            ),
            // A previous set that is there but does not read (its checksum,
            // its manifest) is said, not shown as none (walkS finding 8).
            Err(e) => (None, Some(e.to_string())),
        };
    let current = gw.bases();
    // The statistics keep the last update (one flag per result).
    let result = snap.flagged(StatId::UpdateLastResult).unwrap_or("unknown");
    ok(serde_json::json!({
        "directory": cfg.bases.av,
        "obsolete": crate::check::bases::is_obsolete(
            current.as_ref(),
            cfg.bases.obsolete_after.get(),
            chrono::Utc::now().timestamp()
        ),
        "current": info(current),
        "rules_compiled": gw.scanner.current().count,
        "scans_waiting": gw.scanner.waiting(),
        "previous": info(previous),
        "previous_error": previous_error,
        "last_check": snap.value(StatId::UpdateLastCheck, 0),
        "last_result": result,
        // The set in the directory, when it does not load: what the next
        // start would meet.
        "on_disk_error": gw.bases_on_disk_error(),
        "last_message": gw.last_update_message(),
    }))
}

/// The answer to an update or rollback while another one runs.
pub const BASES_BUSY: &str = "another change of the bases (an update, a rollback, or their reload by SIGHUP) is running; nothing was changed: try again when it has finished";

/// Refuses a change of the bases while another runs: two at once renamed
/// each other's directories away (walkL 4: `av` gone, half a set kept as
/// `av.previous`). The refusal touches nothing and is not an update
/// attempt: the last result stays that of the one running.
fn refuse_busy(what: &str) -> Response {
    tracing::warn!(target: "admin", "The bases {what} was refused: {BASES_BUSY}.");
    err(BASES_BUSY.into())
}

async fn bases_update(gw: &Gateway, from: Option<String>, allow_older: bool) -> Response {
    let Some(_one_change) = gw.try_change_bases() else {
        return refuse_busy("update");
    };
    update_holding_the_lock(gw, from, allow_older).await
}

/// How often `bases.update_from` is checked for a newer set (and once at
/// start).
pub const UPDATE_CHECK_INTERVAL: Duration = Duration::from_secs(3600);

/// The periodic check of `bases.update_from`: at start, then every
/// [`UPDATE_CHECK_INTERVAL`], the same update as `mailward bases update`
/// without `--from` (logged, counted and sent as mwUpdateStatus), so that
/// a site that publishes its sets there needs no cron job. It waits for an
/// update or rollback under way rather than being refused. The key is read
/// each time: a reload that sets or clears it takes effect at the next
/// check.
pub async fn check_update_from_periodically(gw: Arc<Gateway>) {
    let mut shutdown = gw.shutdown.clone();
    // The held-back version last said, so that it is said once.
    let mut said: Option<String> = None;
    loop {
        let cfg = gw.config();
        if !cfg.bases.update_from.is_empty() {
            let _one_change = gw.change_bases().await;
            // A set an administrator rolled back from is not put in use
            // again by this check (walkS finding 6); `mailward bases
            // update` installs it on purpose.
            let held_back = crate::check::bases::rolled_back_from(&cfg.bases.av).filter(|v| {
                crate::check::bases::read(&crate::check::bases::source_dir(&cfg.bases.update_from))
                    .ok()
                    .flatten()
                    .is_some_and(|offered| &offered.version == v)
            });
            match held_back {
                Some(v) => {
                    if said.as_ref() != Some(&v) {
                        tracing::info!(target: "admin", version = %v, from = %cfg.bases.update_from,
                            "The set offered by bases.update_from was rolled back by an administrator: it is not put in use again until a newer one is offered or `mailward bases update` installs it.");
                        said = Some(v);
                    }
                }
                None => {
                    said = None;
                    let _ = update_holding_the_lock(&gw, None, false).await;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(UPDATE_CHECK_INTERVAL) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// Whether an update's reading thread is under way (it may outlive an
/// update abandoned at [`UPDATE_DEADLINE`]).
static UPDATE_READING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `bases update`, once the caller holds the gateway's bases lock.
async fn update_holding_the_lock(
    gw: &Gateway,
    from: Option<String>,
    allow_older: bool,
) -> Response {
    use crate::check::bases::UpdateResult;
    let cfg = gw.config();
    let from =
        from.or_else(|| (!cfg.bases.update_from.is_empty()).then(|| cfg.bases.update_from.clone()));
    let Some(from) = from else {
        return err("no source to update from: give --from DIR or set bases.update_from".into());
    };
    let dir = cfg.bases.av.clone();
    let source = crate::check::bases::source_dir(&from);
    // An abandoned update's thread may still be blocked in the source (a
    // hung mount): another attempt would block one more thread each hour
    // until the blocking pool, which the stats file and the spool's
    // checks share, runs out.
    if UPDATE_READING.swap(true, std::sync::atomic::Ordering::AcqRel) {
        let message = format!(
            "Update from {from} not started: the read of an earlier, abandoned update has not returned yet (a source on a hung network mount?); the bases in use stay. Fix or unmount the source; updates start again once that read ends."
        );
        return err(gw.update_attempted(UpdateResult::Error, message).await.1);
    }
    let abandoned = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = abandoned.clone();
    let job = tokio::task::spawn_blocking(move || {
        // Cleared when the read ends, however it ends.
        struct Reading;
        impl Drop for Reading {
            fn drop(&mut self) {
                UPDATE_READING.store(false, std::sync::atomic::Ordering::Release);
            }
        }
        let _reading = Reading;
        crate::check::bases::install_unless(&dir, &source, allow_older, &flag)
    });
    // A source that never answers (a hung NFS or FUSE mount) held the
    // bases lock for good: every later update, rollback and SIGHUP waited
    // behind it, silently (walkS finding 4). Given up on after
    // UPDATE_DEADLINE; the reading thread, if it ever returns, installs
    // nothing.
    let outcome = match tokio::time::timeout(UPDATE_DEADLINE, job).await {
        Ok(outcome) => outcome,
        Err(_) => {
            abandoned.store(true, std::sync::atomic::Ordering::Release);
            let message = format!(
                "Update from {from} abandoned: reading and compiling the set took more than {} (a source on a hung network mount?); the bases in use stay, and that set will not be put in use late.",
                seconds(UPDATE_DEADLINE)
            );
            return err(gw.update_attempted(UpdateResult::Error, message).await.1);
        }
    };
    match outcome {
        Ok(Ok((result, info))) => {
            let obsolete = crate::check::bases::obsolete_note(
                &info,
                cfg.bases.obsolete_after.get(),
                chrono::Utc::now().timestamp(),
            )
            .unwrap_or_default();
            if result == UpdateResult::NotNeeded && !obsolete.is_empty() {
                // The answer says mwObsoleteBases follows: the watcher's
                // check is asked for, as after a set coming into use
                // (walkBI F3).
                gw.note_bases_change();
            }
            let message = match result {
                // An obsolete set in use is said here too (walkAZ F13).
                UpdateResult::NotNeeded => format!(
                    "Bases {} are already in use; nothing to do.{obsolete}",
                    info.version
                ),
                _ => format!(
                    "Bases {} ({}) from {from} are in use.{obsolete}",
                    info.version,
                    crate::text::counted(info.records, "record"),
                ),
            };
            match gw.update_attempted(result, message).await {
                (UpdateResult::Error, message) => err(message),
                (result, message) => {
                    ok(serde_json::json!({ "result": result.name(), "message": message }))
                }
            }
        }
        Ok(Err(e)) => {
            // The command may run as root and see the set; the daemon reads
            // it as its own user, maybe in its own /tmp (PrivateTmp).
            let reader = match &e {
                crate::check::bases::BasesError::Read { source, .. }
                    if matches!(
                        source.kind(),
                        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::NotFound
                    ) =>
                {
                    let me = crate::ops::privileges::current_user();
                    format!(
                        " (the daemon reads the set itself, as {me}: the directory must be open to {me}, and under systemd's PrivateTmp and ProtectHome not in /tmp or a home directory)"
                    )
                }
                _ => String::new(),
            };
            let message =
                format!("Update from {from} refused: {e}{reader}; the bases in use stay.");
            err(gw.update_attempted(UpdateResult::Error, message).await.1)
        }
        Err(e) => err(format!("update task failed: {e}")),
    }
}

async fn bases_rollback(gw: &Gateway) -> Response {
    let Some(_one_change) = gw.try_change_bases() else {
        return refuse_busy("rollback");
    };
    let dir = gw.config().bases.av.clone();
    match tokio::task::spawn_blocking(move || crate::check::bases::rollback(&dir)).await {
        Ok(Ok(info)) => {
            let message = format!(
                "Rolled back to bases {} ({}).{}",
                info.version,
                crate::text::counted(info.records, "record"),
                crate::check::bases::obsolete_note(
                    &info,
                    gw.config().bases.obsolete_after.get(),
                    chrono::Utc::now().timestamp()
                )
                .unwrap_or_default()
            );
            match gw
                .update_attempted(crate::check::bases::UpdateResult::RolledBack, message)
                .await
            {
                (crate::check::bases::UpdateResult::Error, message) => err(message),
                (_, message) => ok(
                    serde_json::json!({ "result": crate::check::bases::UpdateResult::RolledBack.name(), "message": message }),
                ),
            }
        }
        // Refused like an update: logged, counted and sent as error.
        Ok(Err(e)) => {
            let message = format!("Rollback refused: {e}; the bases in use stay.");
            err(gw
                .update_attempted(crate::check::bases::UpdateResult::Error, message)
                .await
                .1)
        }
        Err(e) => err(format!("rollback task failed: {e}")),
    }
}

/// Binds the admin socket (replacing a stale one) and serves it. A
/// `Request::Reload` is sent on `reloads` to the main loop, which reloads
/// as for SIGHUP.
pub fn start(
    gw: Arc<Gateway>,
    path: &Path,
    reloads: tokio::sync::mpsc::Sender<ReloadAsk>,
) -> Result<(), AdminError> {
    let io = |source| AdminError::Io {
        path: path.to_path_buf(),
        source,
    };
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(AdminError::InUse(path.to_path_buf()));
        }
        std::fs::remove_file(path).map_err(io)?;
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::files::ensure_dir(dir, crate::files::GROUP_DIR).map_err(|source| {
            use nix::unistd::{getegid, geteuid, Group, User};
            let owner = User::from_uid(geteuid())
                .ok()
                .flatten()
                .map_or_else(|| geteuid().to_string(), |u| u.name);
            let group = Group::from_gid(getegid())
                .ok()
                .flatten()
                .map_or_else(|| getegid().to_string(), |g| g.name);
            AdminError::Dir {
                path: path.to_path_buf(),
                dir: dir.to_path_buf(),
                owner,
                group,
                source,
            }
        })?;
    }
    // Bound by its absolute name when that fits a socket address (108
    // bytes on Linux): /proc/net/unix lists the name as bound, and the CLI
    // looks there for a running daemon whose socket moved with a reload
    // that changed data_dir (main.rs `running_socket`, absolute names
    // only); with the default relative data_dir it never found it (walkAC).
    let bound = std::path::absolute(path)
        .ok()
        .filter(|p| p.as_os_str().len() < 108)
        .unwrap_or_else(|| path.to_path_buf());
    let listener = UnixListener::bind(&bound).map_err(io)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(io)?;
    tokio::spawn(async move {
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                // Answered at once and never waited for: a command left
                // hanging (or a script gone wild) must not take the
                // descriptors that SMTP sessions need.
                if let Ok(mut bytes) = serde_json::to_vec(&err(format!(
                    "the daemon is serving {MAX_CONNECTIONS} admin connections already; try again in a moment"
                ))) {
                    bytes.push(b'\n');
                    // Tried at once on the std socket (non-blocking).
                    if let Ok(mut std_stream) = stream.into_std() {
                        use std::io::Write as _;
                        let _ = std_stream.write(&bytes);
                    }
                }
                continue;
            };
            let gw = gw.clone();
            let reloads = reloads.clone();
            // Who is asking, for the audit lines (walkAD 5); the socket's
            // mode decides who may ask at all.
            let peer = match stream.peer_cred() {
                Ok(c) => format!("{}({})", user_name(c.uid()), c.uid()),
                Err(_) => "unknown".to_string(),
            };
            tokio::spawn(async move {
                let _slot = slot;
                let (read, mut write) = stream.into_split();
                let mut line = String::new();
                let mut reader = BufReader::new(read.take(MAX_REQUEST));
                let response = match tokio::time::timeout(
                    REQUEST_TIMEOUT,
                    reader.read_line(&mut line),
                )
                .await
                {
                    Ok(Ok(_)) => match serde_json::from_str::<Request>(&line) {
                        Ok(req) => {
                            super::stores::ADMIN_PEER
                                .scope(peer, handle(&gw, &reloads, req))
                                .await
                        }
                        Err(e) => err(format!("bad request: {e}")),
                    },
                    Ok(Err(e)) => err(format!("cannot read request: {e}")),
                    Err(_) => err(format!("no request within {} s", REQUEST_TIMEOUT.as_secs())),
                };
                if let Ok(mut bytes) = serde_json::to_vec(&response) {
                    bytes.push(b'\n');
                    let _ = tokio::time::timeout(RESPONSE_TIMEOUT, write.write_all(&bytes)).await;
                }
            });
        }
    });
    Ok(())
}

/// The admin socket of configuration `text`, read leniently: only
/// `server.data_dir` and `server.admin_socket`, with the defaults of a full
/// load, whatever else the file gets wrong. For the admin commands when the
/// file on disk no longer loads: the daemon refused it on SIGHUP and runs
/// on the one it loaded before, and `mailward status` or the `log reopen`
/// of logrotate must still reach it. None when even these two keys cannot
/// be read (not TOML, or not paths).
pub fn socket_of_text(text: &str) -> Option<PathBuf> {
    // A file that is not TOML any more (a table written twice, say) still
    // has its [server] table: read that one alone (walkJ: status could
    // not reach a daemon that refused such a file and ran on).
    let doc: toml::Table = match toml::from_str(text) {
        Ok(doc) => doc,
        Err(_) => toml::from_str(&server_table_of(text)?).ok()?,
    };
    let server = match doc.get("server") {
        Some(toml::Value::Table(t)) => Some(t),
        None => None,
        Some(_) => return None,
    };
    // A key that is set must be a non-empty string, as the full load
    // wants; a key left out takes the default.
    let path = |key: &str| -> Option<Option<PathBuf>> {
        match server.and_then(|t| t.get(key)) {
            None => Some(None),
            Some(toml::Value::String(s)) if !s.is_empty() => Some(Some(PathBuf::from(s))),
            Some(_) => None,
        }
    };
    let data_dir =
        path("data_dir")?.unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_DATA_DIR));
    Some(path("admin_socket")?.unwrap_or_else(|| data_dir.join("admin.sock")))
}

/// The `[server]` table's lines of `text`, from its header to the next
/// table's; None when the file has no such header line.
fn server_table_of(text: &str) -> Option<String> {
    let mut lines = text.lines();
    lines.find(|l| {
        let l = l.trim();
        l == "[server]" || l.starts_with("[server]") && l[8..].trim_start().starts_with('#')
    })?;
    let body: Vec<&str> = lines
        .take_while(|l| !l.trim_start().starts_with('['))
        .collect();
    Some(format!("[server]\n{}\n", body.join("\n")))
}

/// Sends one request to the daemon behind `path` (CLI side), and waits
/// for the answer up to the request's [`Request::deadline`].
pub async fn call(path: &Path, req: &Request) -> Result<serde_json::Value, AdminError> {
    call_within(path, req, req.deadline()).await
}

/// [`call`] with the deadline given: connecting, sending and reading the
/// answer must be done within `deadline`.
pub async fn call_within(
    path: &Path,
    req: &Request,
    deadline: Duration,
) -> Result<serde_json::Value, AdminError> {
    let exchange = async {
        let mut stream = UnixStream::connect(path)
            .await
            .map_err(|source| connect_error(path, source))?;
        let mut bytes =
            serde_json::to_vec(req).map_err(|e| AdminError::BadResponse(e.to_string()))?;
        bytes.push(b'\n');
        let io = |source| AdminError::Io {
            path: path.to_path_buf(),
            source,
        };
        // A daemon that refuses the connection (too many at once) answers
        // and closes without reading: the write may fail, and its answer is
        // still there to read.
        let written = stream.write_all(&bytes).await;
        let mut out = Vec::new();
        let read = stream.read_to_end(&mut out).await;
        if out.is_empty() {
            written.map_err(io)?;
            read.map_err(io)?;
        }
        Ok(out)
    };
    let out = tokio::time::timeout(deadline, exchange)
        .await
        .map_err(|_| AdminError::NoAnswer {
            path: path.to_path_buf(),
            after: deadline,
        })??;
    let resp: Response =
        serde_json::from_slice(&out).map_err(|e| AdminError::BadResponse(e.to_string()))?;
    if resp.ok {
        Ok(resp.data)
    } else {
        Err(AdminError::Refused(
            resp.error.unwrap_or_else(|| "the daemon refused".into()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(ok: bool) -> crate::run::ReloadOutcome {
        crate::run::ReloadOutcome {
            ok,
            file: "/etc/mailward/mailward.toml".into(),
            message: String::new(),
            problems: Vec::new(),
            changed: Vec::new(),
            restart: Vec::new(),
            warnings: Vec::new(),
            reloads: 2,
            refused: 1,
        }
    }

    #[test]
    fn a_refused_reload_prints_every_problem_and_fails() {
        // walkAP F11: the refusal was only in the log and `status`.
        let mut o = outcome(false);
        o.problems = vec![
            "/etc/mailward/mailward.toml:18: policy.block: expected a status".into(),
            "/etc/mailward/mailward.toml:19: policy.quarantine_what: unknown key".into(),
        ];
        let (out, errs, taken) = reload_report(&o, Some(Path::new("/etc/mailward/mailward.toml")));
        assert!(!taken);
        assert!(out.is_empty(), "{out:?}");
        assert!(
            errs[0].contains("keeps running on the previous configuration"),
            "{errs:?}"
        );
        assert_eq!(&errs[1..], &o.problems[..]);
    }

    #[test]
    fn a_reload_says_what_changed_and_what_waits_for_a_restart() {
        let mut o = outcome(true);
        o.changed = vec!["policy".into(), "group.managers".into()];
        o.restart = vec!["log.options changed ([\"all.info\"] -> [\"all.debug\"])".into()];
        let (out, errs, taken) = reload_report(&o, None);
        assert!(taken && errs.is_empty(), "{errs:?}");
        assert_eq!(
            out,
            [
                "Reloaded /etc/mailward/mailward.toml (2 reload(s) since the start, 1 refused).",
                "Changed: policy, group.managers.",
                "Needs a restart (the running value stays until then): log.options changed ([\"all.info\"] -> [\"all.debug\"]).",
            ]
        );
        // walkAY T7: the new configuration's warnings are printed too.
        let mut w = o.clone();
        w.warnings = vec!["/etc/mailward/mailward.toml:9: warning: log.rotate_size: tiny".into()];
        let (_, errs, taken) = reload_report(&w, None);
        assert!(taken);
        assert_eq!(errs, w.warnings);
        // --config naming another file than the daemon's: said, since the
        // daemon re-read its own.
        let (_, errs, taken) = reload_report(&o, Some(Path::new("/tmp/other.toml")));
        assert!(taken);
        assert!(
            errs.len() == 1 && errs[0].contains("not /tmp/other.toml"),
            "{errs:?}"
        );
        // An answer that is not an outcome is not taken for a reload.
        let (_, errs, taken) = reload_answer(serde_json::json!({"log": "x"}), None);
        assert!(!taken && errs[0].contains("mailward status"), "{errs:?}");
    }

    #[test]
    fn a_relative_socket_says_where_it_looked_and_names_the_packaged_file() {
        // walkN 5: `mailward status` without --config on a packaged host
        // said the daemon was not running, asking mailward-data/admin.sock
        // in whatever directory the admin stood in.
        let dir = tempfile::tempdir().unwrap();
        let packaged = dir.path().join("mailward.toml");
        let rel = Path::new("mailward-data/admin.sock");
        assert_eq!(
            where_hint(Path::new("/run/mailward/admin.sock"), &packaged),
            ""
        );
        let hint = where_hint(rel, &packaged);
        assert!(
            hint.starts_with(" (relative to the current directory /"),
            "{hint}"
        );
        assert!(!hint.contains("packaged"), "{hint}");
        std::fs::write(&packaged, "").unwrap();
        let hint = where_hint(rel, &packaged);
        assert!(
            hint.ends_with(&format!("set MAILWARD_CONFIG={}", packaged.display())),
            "{hint}"
        );
    }
    use crate::config;

    #[test]
    fn the_socket_is_found_in_a_file_that_does_not_load() {
        // Where the full load puts it, for files that load.
        let without_data_dir = config::DEFAULT_TOML.replace("data_dir = \"mailward-data\"", "");
        for text in [
            config::DEFAULT_TOML.to_string(),
            without_data_dir,
            config::DEFAULT_TOML.replace("data_dir = \"mailward-data\"", "data_dir = \"/srv/mw\""),
            config::DEFAULT_TOML.replace(
                "# admin_socket = \"mailward-data/admin.sock\"",
                "admin_socket = \"/run/mailward/admin.sock\"",
            ),
        ] {
            let full = config::parse(&text, "mailward.toml")
                .unwrap_or_else(|e| panic!("{e}"))
                .server
                .admin_socket;
            assert_eq!(socket_of_text(&text), Some(full));
        }
        // A file the daemon would refuse: the socket is still found.
        let broken = "[server]\ndata_dir = \"/srv/mw\"\nno_such_key = 1\n[limits]\nmax_message_size = \"big\"\n";
        assert!(config::parse(broken, "mailward.toml").is_err());
        assert_eq!(
            socket_of_text(broken),
            Some(PathBuf::from("/srv/mw/admin.sock"))
        );
        assert_eq!(
            socket_of_text("[limits]\nmax_message_size = \"big\"\n"),
            Some(PathBuf::from("mailward-data/admin.sock"))
        );
        // Not TOML any more (walkJ: a second [limits] table appended).
        let twice = "[server]\ndata_dir = \"/srv/mw\" # ours\n[limits]\nmax_hops = 5\n[limits]\nmax_hops = 6\n";
        assert!(toml::from_str::<toml::Table>(twice).is_err());
        assert_eq!(
            socket_of_text(twice),
            Some(PathBuf::from("/srv/mw/admin.sock"))
        );
        // Unless the two keys themselves cannot be read.
        for unreadable in [
            "[server\ndata_dir = \"/srv/mw\"\n",
            "[server]\ndata_dir = 5\n",
            "[server]\ndata_dir = \"\"\n",
            "[server]\nadmin_socket = [\"a\"]\n",
            "server = 1\n",
        ] {
            assert_eq!(socket_of_text(unreadable), None, "{unreadable}");
        }
    }

    #[test]
    fn a_socket_this_user_may_not_use_is_not_a_daemon_that_is_down() {
        use std::io::{Error, ErrorKind};
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("admin.sock");
        std::fs::write(&sock, "").unwrap();
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o660)).unwrap();
        let me = user_name(nix::unistd::geteuid().as_raw());
        let group = group_name(nix::unistd::getegid().as_raw());
        let e = connect_error(&sock, Error::from(ErrorKind::PermissionDenied));
        assert_eq!(e.exit_code(), 77);
        let text = e.to_string();
        for part in [
            format!(
                "this user ({me}) may not use the admin socket {}: ",
                sock.display()
            ),
            format!("it is {me}:{group} mode 0660"),
            "Run the command as root or as the daemon's user".to_string(),
            format!("add {me} to the group that may"),
        ] {
            assert!(text.contains(&part), "{part:?} in {text}");
        }
        assert!(!text.contains("Is `mailward run` running"), "{text}");
        // Where the socket cannot be seen, its directory is named.
        let hidden = dir.path().join("private").join("admin.sock");
        let text = connect_error(&hidden, Error::from(ErrorKind::PermissionDenied)).to_string();
        assert!(
            text.contains(&format!("its directory {} is {me}:", dir.path().display())),
            "{text}"
        );
        // A daemon that does not run stays 69, with its own advice.
        for kind in [ErrorKind::NotFound, ErrorKind::ConnectionRefused] {
            let e = connect_error(&sock, Error::from(kind));
            assert_eq!(e.exit_code(), 69);
            assert!(e.to_string().contains("Is `mailward run` running"), "{e}");
            assert!(e.to_string().contains("until it restarts"), "{e}");
        }
        assert_eq!(AdminError::Refused("no such entry".into()).exit_code(), 1);
    }

    #[tokio::test]
    async fn a_daemon_that_accepts_but_never_answers_is_reported_not_waited_for() {
        // walkF #2: a SIGSTOPped daemon's socket still accepts (the kernel
        // does it); `status` and logrotate's `log reopen` waited for ever.
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("admin.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        // Accepts, keeps the connection open, never reads or answers.
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                open.push(stream);
            }
        });
        let deadline = Duration::from_millis(200);
        let called = tokio::time::timeout(
            Duration::from_secs(10),
            call_within(&sock, &Request::LogReopen, deadline),
        )
        .await;
        held.abort();
        let Ok(Err(e)) = called else {
            panic!("no error within the deadline: {called:?}");
        };
        assert!(matches!(e, AdminError::NoAnswer { .. }), "{e:?}");
        assert_eq!(e.exit_code(), 69);
        let text = e.to_string();
        assert!(
            text.starts_with(&format!(
                "the daemon at {} accepted the connection but did not answer within 200 ms: it may be stopped (kill -CONT) or hung, and may still carry the request out if it resumes.",
                sock.display()
            )),
            "{text}"
        );
        assert!(text.contains("systemctl status mailward"), "{text}");
    }

    #[test]
    fn quick_requests_get_the_short_deadline_the_long_ones_more() {
        assert_eq!(Request::Status.deadline(), Duration::from_secs(10));
        assert_eq!(Request::LogReopen.deadline(), QUICK_DEADLINE);
        assert_eq!(
            Request::QueueList {
                filter: QueueFilter::default()
            }
            .deadline(),
            QUICK_DEADLINE
        );
        assert_eq!(Request::QueueFlush.deadline(), QUICK_DEADLINE);
        let update = Request::BasesUpdate {
            from: None,
            allow_older: false,
        };
        assert!(update.deadline() >= Duration::from_secs(600));
        assert!(Request::QuarantinePurge { older_than: 0 }.deadline() > QUICK_DEADLINE);
        assert_eq!(seconds(QUICK_DEADLINE), "10 s");
        assert_eq!(seconds(BASES_DEADLINE), "30 min");
    }

    /// walkAS F6: the filters an administrator uses at 20k queued select
    /// what they say, and an old request without a filter still parses.
    #[test]
    fn queue_filters_select_by_recipient_domain_sender_and_state() {
        let msg = |from: &str, to: &str, attempts: u32, held: bool, delivered: bool| {
            let mut e = Envelope::new(
                QueueId("1A2443B7BB7C605B".into()),
                std::net::Ipv4Addr::LOCALHOST.into(),
                "client.test".into(),
                from.into(),
            );
            e.rcpts.push(crate::envelope::Recipient::new(to.into()));
            e.attempts = attempts;
            e.held = held;
            if delivered {
                e.rcpts[0].state = RcptState::Delivered {
                    reply: "250 ok".into(),
                    at: 0,
                };
            }
            e
        };
        let fresh = msg("a@Example.NET", "x@example.org", 0, false, false);
        let deferred = msg("", "y@EXAMPLE.org", 2, false, false);
        let held = msg("b@other.test", "z@sub.example.org", 1, true, false);
        let done_there = msg("c@other.test", "w@example.org", 1, false, true);
        let all = [&fresh, &deferred, &held, &done_there];
        let pick = |f: QueueFilter| -> Vec<usize> {
            (0..all.len()).filter(|&i| f.matches(all[i])).collect()
        };
        let to = |d: &str| QueueFilter {
            to: Some(d.into()),
            ..Default::default()
        };
        let from = |a: &str| QueueFilter {
            from: Some(a.into()),
            ..Default::default()
        };
        // A recipient already delivered there does not count, nor a subdomain.
        assert_eq!(pick(to("example.org")), [0, 1]);
        assert_eq!(pick(to("@example.org")), [0, 1]);
        assert_eq!(pick(from("A@example.net")), [0]);
        assert_eq!(pick(from("@example.net")), [0]);
        assert_eq!(pick(from("<>")), [1]);
        assert_eq!(
            pick(QueueFilter {
                deferred: true,
                ..Default::default()
            }),
            [1]
        );
        assert_eq!(
            pick(QueueFilter {
                held: true,
                ..Default::default()
            }),
            [2]
        );
        assert_eq!(pick(QueueFilter::default()), [0, 1, 2, 3]);
        assert!(QueueFilter::default().is_empty());
        assert!(!QueueFilter {
            limit: Some(5),
            ..Default::default()
        }
        .is_empty());
        let old: Request = serde_json::from_str(r#"{"cmd":"queue_list"}"#).unwrap();
        assert!(matches!(old, Request::QueueList { filter } if filter.is_empty()));
        let new: Request =
            serde_json::from_str(r#"{"cmd":"queue_list","to":"example.org","limit":3}"#).unwrap();
        assert!(
            matches!(new, Request::QueueList { filter } if filter.to.as_deref() == Some("example.org") && filter.limit == Some(3))
        );
    }
}
