//! The admin side of the quarantine and the archive: what the daemon does
//! for `mailward quarantine ...` and `mailward archive ...` (list, show,
//! release or send, remove, purge). The CLI only asks; the daemon, which
//! owns the stores and the spool, does it, so that a released message is
//! spooled durably and queued like any other.

use crate::check::spam::model::{Class, Learnt};
use crate::envelope::{Envelope, QueueId, Recipient};
use crate::events::QuarantineReleased;
use crate::gateway::Gateway;
use crate::store::{Direction, Entry, Released, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Which entries `list` shows.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Filter {
    /// Only entries with this status ("av/infected"; "av/all" for any AV
    /// finding, not av/clean, as in policy lists).
    #[serde(default)]
    pub status: Option<String>,
    /// Only entries stored in the last this many seconds.
    #[serde(default)]
    pub since: Option<u64>,
}

/// One entry as `list --json` prints it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Listed {
    pub id: String,
    pub queue_id: String,
    /// When the message was received, RFC 3339.
    pub received: String,
    /// When the entry was stored, RFC 3339.
    pub stored: String,
    pub sender: String,
    pub recipients: Vec<String>,
    pub statuses: Vec<String>,
    pub reason: String,
    pub group: String,
    pub size: u64,
    pub client_ip: String,
    pub findings: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub released: Vec<Release>,
    /// The entry's description cannot be read (why): only its ID, the
    /// time its description was written and its size are known, and
    /// `remove` is what can be done with it (walkAW F19).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
}

/// A release as listed: its time in RFC 3339 like `received` and `stored`
/// (it was Unix seconds, alone among the times: walkO 14).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// Unix time; RFC 3339 in JSON.
    #[serde(serialize_with = "at_rfc3339", deserialize_with = "at_either")]
    pub at: i64,
    /// The queue ID it was queued under.
    pub queue_id: String,
    pub to: Vec<String>,
}

impl From<&Released> for Release {
    fn from(r: &Released) -> Release {
        Release {
            at: r.at,
            queue_id: r.queue_id.clone(),
            to: r.to.clone(),
        }
    }
}

fn at_rfc3339<S: serde::Serializer>(at: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*at))
}

/// An RFC 3339 time, or Unix seconds (a daemon of the version before).
fn at_either<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum At {
        Unix(i64),
        Text(String),
    }
    match At::deserialize(d)? {
        At::Unix(t) => Ok(t),
        At::Text(t) => chrono::DateTime::parse_from_rfc3339(&t)
            .map(|d| d.timestamp())
            .map_err(serde::de::Error::custom),
    }
}

fn rfc3339(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

impl Listed {
    /// The entry as a list shows it: at most
    /// [`crate::policy::notify::MAX_NOTICE_FINDINGS`] findings, then where
    /// the rest are. A zip of 3,000 EICAR files made a 146 kB line of
    /// `quarantine list --json` (walkAD 9); `show` keeps every finding.
    fn for_list(e: &Entry, direction: Option<Direction>) -> Listed {
        let mut l = Listed::new(e, direction);
        let max = crate::policy::notify::MAX_NOTICE_FINDINGS;
        if l.findings.len() > max {
            let more = l.findings.len() - max;
            l.findings.truncate(max);
            let show = match direction {
                None => format!("mailward quarantine show {}", l.id),
                Some(d) => format!("mailward archive show {} --{}", l.id, d.as_str()),
            };
            l.findings
                .push(format!("... and {more} more findings ({show})"));
        }
        l
    }

    pub fn new(e: &Entry, direction: Option<Direction>) -> Listed {
        Listed {
            id: e.id.clone(),
            queue_id: e.meta.queue_id.clone(),
            received: rfc3339(e.meta.received),
            stored: rfc3339(e.stored),
            sender: e.meta.sender.clone(),
            recipients: e.meta.recipients.clone(),
            statuses: e.meta.statuses.clone(),
            reason: e.meta.reason.clone(),
            // As `show`, the notices and the statistics name it: the
            // default group is "default", not "".
            group: mailward_metrics::snapshot::group_name(&e.meta.group).to_string(),
            size: e.meta.size,
            client_ip: e.meta.client_ip.clone(),
            // Entries written before findings were flattened (walkV 1)
            // may hold a file name's line breaks: `show` must not print
            // them as lines of its own.
            findings: e
                .meta
                .findings
                .iter()
                .map(|f| crate::text::one_line(f))
                .collect(),
            direction: direction.map(|d| d.as_str().to_string()),
            released: e.released.iter().map(Release::from).collect(),
            unreadable: None,
        }
    }

    /// An entry whose description cannot be read, with why.
    fn unreadable(e: &Entry, problem: String, direction: Option<Direction>) -> Listed {
        Listed {
            unreadable: Some(crate::text::one_line(&problem)),
            ..Listed::new(e, direction)
        }
    }
}

fn matches(e: &Entry, f: &Filter, now: i64) -> bool {
    let by_status = f.status.as_deref().is_none_or(|s| {
        crate::config::Status::parse(s)
            .map(|st| e.meta.statuses.iter().any(|x| st.covers(x)))
            .unwrap_or(false)
    });
    let by_age = f
        .since
        .is_none_or(|secs| e.stored >= now.saturating_sub(secs as i64));
    by_status && by_age
}

/// The directory of the quarantine (`direction` None) or of an archive
/// under `data_dir`, as the daemon opens them.
pub fn store_dir(data_dir: &std::path::Path, direction: Option<Direction>) -> std::path::PathBuf {
    match direction {
        None => data_dir.join("quarantine"),
        Some(d) => data_dir.join("archive").join(d.as_str()),
    }
}

/// The entries of the store in `dir` that `filter` selects, oldest
/// first, read from their `ID.json` files without the daemon and without
/// writing anything (walkAP F9: with the gateway stopped, for maintenance
/// or after a crash, `quarantine list` only said the daemon was not
/// reachable, though the entries are plain files). What the daemon would
/// repair at its start (an `ID.eml` without its description, temporary
/// files) is left as it is and not listed.
pub fn list_offline(
    dir: &std::path::Path,
    filter: &Filter,
    direction: Option<Direction>,
) -> Result<Vec<Listed>, String> {
    if let Some(st) = &filter.status {
        crate::config::Status::parse(st)?;
    }
    let read = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut entries = Vec::new();
    let mut unreadable = Vec::new();
    for item in read {
        let item = item.map_err(|e| format!("{}: {e}", dir.display()))?;
        let name = item.file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_suffix(".json") else {
            continue;
        };
        if !QueueId::is_valid(id) {
            continue;
        }
        match entry_offline(dir, id) {
            Ok(e) => entries.push(e),
            // One entry that cannot be read does not hide the others.
            Err(why) => unreadable.push((crate::store::unreadable_entry(dir, id), why)),
        }
    }
    entries.sort_by(|a, b| (a.stored, &a.id).cmp(&(b.stored, &b.id)));
    unreadable.sort_by(|(a, _), (b, _)| (a.stored, &a.id).cmp(&(b.stored, &b.id)));
    let now = chrono::Utc::now().timestamp();
    Ok(listed(&entries, unreadable, filter, now, direction))
}

/// One entry of the store in `dir`, read from its `ID.json` file.
fn entry_offline(dir: &std::path::Path, id: &str) -> Result<Entry, String> {
    let path = dir.join(format!("{id}.json"));
    let text = std::fs::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("{id}: no such entry in {}", dir.display()),
        _ => format!("{}: {e}", path.display()),
    })?;
    serde_json::from_slice(&text).map_err(|e| format!("{}: unreadable entry: {e}", path.display()))
}

/// `show` without the daemon: entry `id` of the store in `dir` and its
/// message, as the daemon answers [`show`].
pub fn show_offline(dir: &std::path::Path, id: &str) -> Result<serde_json::Value, String> {
    use base64::Engine as _;
    if !QueueId::is_valid(id) {
        return Err(format!("`{id}` is not an entry ID"));
    }
    let entry = entry_offline(dir, id)?;
    let path = dir.join(format!("{id}.eml"));
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(serde_json::json!({
        "entry": Listed::new(&entry, None),
        "message_b64": base64::engine::general_purpose::STANDARD.encode(&bytes),
    }))
}

/// The archives a command names: `direction`'s, or both.
pub fn archives(direction: Option<Direction>) -> Vec<Direction> {
    match direction {
        Some(d) => vec![d],
        None => vec![Direction::Incoming, Direction::Outgoing],
    }
}

/// `archive list` without the daemon (walkAW F16: the quarantine had this
/// fallback, the archive only said the daemon was not reachable): the
/// entries of `direction`'s archive, or of both, oldest first, as the
/// daemon answers. An archive that was never turned on has no directory
/// and no entries.
pub fn archive_list_offline(
    data_dir: &std::path::Path,
    filter: &Filter,
    direction: Option<Direction>,
) -> Result<Vec<Listed>, String> {
    let mut all = Vec::new();
    for d in archives(direction) {
        let dir = store_dir(data_dir, Some(d));
        if dir.exists() {
            all.extend(list_offline(&dir, filter, Some(d))?);
        }
    }
    all.sort_by(|a, b| (&a.stored, &a.id).cmp(&(&b.stored, &b.id)));
    Ok(all)
}

/// `archive show` without the daemon: the entry in `direction`'s archive,
/// or in the one that holds it, as [`archive_of`] picks.
pub fn archive_show_offline(
    data_dir: &std::path::Path,
    id: &str,
    direction: Option<Direction>,
) -> Result<serde_json::Value, String> {
    if !QueueId::is_valid(id) {
        return Err(format!("`{id}` is not an entry ID"));
    }
    let d = match direction {
        Some(d) => d,
        None => {
            let holds = |d| {
                store_dir(data_dir, Some(d))
                    .join(format!("{id}.json"))
                    .exists()
            };
            let (incoming, outgoing) = (holds(Direction::Incoming), holds(Direction::Outgoing));
            if !incoming && !outgoing {
                // Both were looked in (walkAZ F8: only outgoing was named).
                return Err(format!(
                    "{id}: no such entry in the archive ({})",
                    data_dir.join("archive").display()
                ));
            }
            pick_archive(incoming, outgoing, id)?
        }
    };
    show_offline(&store_dir(data_dir, Some(d)), id)
}

/// What the CLI says before an answer read from the files (the daemon
/// does not answer): where they are, and which commands (`needs`) need it.
pub fn offline_note(dir: &std::path::Path, needs: &str) -> String {
    format!(
        "the daemon does not answer: read from the entry files in {} (ID.json, ID.eml), read-only; {needs} need the daemon",
        dir.display()
    )
}

/// The address of a `--to ADDRESS` (`quarantine release`, `archive send`)
/// as it goes into RCPT TO: one mailbox (RFC 5321), maybe in angle
/// brackets; else a sentence that names it and shows the expected form.
pub fn forward_path(given: &str) -> Result<String, String> {
    let trimmed = given.trim();
    let addr = trimmed
        .strip_prefix('<')
        .and_then(|a| a.strip_suffix('>'))
        .unwrap_or(trimmed);
    if trimmed.is_empty() {
        return Err("the address is empty: give one address like user@example.com".into());
    }
    if addr.is_empty() {
        return Err(format!(
            "`{given}` is the null address, which cannot receive mail: give one address like user@example.com"
        ));
    }
    // An internationalised domain is written as its A-label (walkV 11:
    // user@bücher.example was refused as non-ASCII while
    // user@xn--bcher-kva.example was taken). A non-ASCII local part is
    // taken as an SMTPUTF8 client's RCPT is: the released message is
    // queued with SMTPUTF8 ([`send_again`]), and a next hop without it
    // fails that recipient with 5.6.7 and a report to the sender, as for
    // any UTF-8 recipient. Control characters and octets that were not
    // UTF-8 are still refused.
    let addr = crate::text::a_label_mailbox(addr);
    crate::text::check_utf8_mailbox(&addr)
        .map(|()| addr.clone())
        .map_err(|why| {
            format!("`{given}` is not an address: {why}; give one address like user@example.com")
        })
}

/// Runs blocking store work off the runtime.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(said(&e)),
        Err(e) => Err(format!("the store task failed: {e}")),
    }
}

/// A store error as the command prints it. A refused permission is the
/// daemon's, not that of the administrator reading it as root: it names
/// the daemon's user (walkBQ F2: a bare "Permission denied" on a
/// directory root could read).
fn said(e: &StoreError) -> String {
    match e {
        StoreError::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
            let user = crate::ops::privileges::user_name(nix::unistd::geteuid().as_raw());
            format!(
                "{e}: the daemon runs as {user}, who must be able to read and write the store's \
                 files (see their owner and mode)"
            )
        }
        e => e.to_string(),
    }
}

/// The entries of `store` that `filter` selects, oldest first.
pub async fn list(
    store: &Arc<Store>,
    filter: Filter,
    direction: Option<Direction>,
) -> Result<Vec<Listed>, String> {
    let s = store.clone();
    let (entries, unreadable) = blocking(move || s.list_all()).await?;
    let now = chrono::Utc::now().timestamp();
    if let Some(st) = &filter.status {
        crate::config::Status::parse(st)?;
    }
    Ok(listed(&entries, unreadable, &filter, now, direction))
}

/// The listing of `entries` that `filter` selects, and after them those
/// whose description cannot be read (unless a status is asked for: they
/// have none), so that they are seen and can be removed.
fn listed(
    entries: &[Entry],
    unreadable: Vec<crate::store::Unreadable>,
    filter: &Filter,
    now: i64,
    direction: Option<Direction>,
) -> Vec<Listed> {
    let mut out: Vec<Listed> = entries
        .iter()
        .filter(|e| matches(e, filter, now))
        .map(|e| Listed::for_list(e, direction))
        .collect();
    if filter.status.is_none() {
        out.extend(
            unreadable
                .into_iter()
                .filter(|(e, _)| matches(e, filter, now))
                .map(|(e, why)| Listed::unreadable(&e, why, direction)),
        );
    }
    out
}

tokio::task_local! {
    /// Who sent the admin request being served (`USER(UID)`, from the
    /// socket's peer credentials), for the audit lines of the store
    /// commands: several people may write to the admin socket (it is
    /// group-writable), and "who released the virus" must have an answer
    /// (walkAD 5). Set by the admin server around each request.
    pub static ADMIN_PEER: String;
}

/// The user of the admin request being served ("unknown" outside one).
fn by() -> String {
    ADMIN_PEER
        .try_with(String::clone)
        .unwrap_or_else(|_| "unknown".to_string())
}

/// One entry and its message, base64-encoded: the bytes as stored, 8-bit
/// ones included, so that `show --raw > sample.eml` saves the message
/// received (walkAD 6: a lossy text turned them into U+FFFD). The CLI
/// makes the terminal view from them ([`terminal_text`]).
pub async fn show(store: &Arc<Store>, id: String) -> Result<serde_json::Value, String> {
    use base64::Engine as _;
    let s = store.clone();
    let (entry, bytes) = blocking(move || s.get(&id)).await?;
    Ok(serde_json::json!({
        "entry": Listed::new(&entry, None),
        "message_b64": base64::engine::general_purpose::STANDARD.encode(&bytes),
    }))
}

/// A stored message as `quarantine show` prints it on a terminal: invalid
/// UTF-8 shown as U+FFFD, and every control character but TAB and the line
/// breaks, DEL and C1 controls written visibly (`^[`, `^?`, `<U+009B>`),
/// as `cat -v` does. The message is the sender's: raw, its escape
/// sequences would set the window title, clear the metadata just printed
/// and draw a fake one in its place, for the administrator deciding
/// whether to release it (walkAD 8). `--raw` writes the bytes as they are.
pub fn terminal_text(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\t' | '\n' => out.push(c),
            '\r' if chars.peek() == Some(&'\n') => out.push(c),
            '\x7f' => out.push_str("^?"),
            c if (c as u32) < 0x20 => {
                out.push('^');
                out.push(char::from(b'@' + c as u8));
            }
            c if c.is_control() || crate::ops::syslog::is_escaped_in_logs(c) => {
                out.push_str(&format!("<U+{:04X}>", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

/// A message spooled again, not yet queued: the caller logs why (the
/// release, by whom) and then queues it, so that the audit line comes
/// before the delivery lines of its queue ID (walkAI 5).
pub struct Spooled {
    pub queue_id: QueueId,
    pub rcpts: Vec<String>,
    /// Where a failure of the new message is reported, in words
    /// ([`FailureReport::describe`]).
    pub failure_report: FailureReport,
    /// What the administrator sends on although the checks held it back
    /// (a virus), in words, for the command's answer; None for other mail.
    pub warning: Option<String>,
    envelope: Envelope,
}

/// The anti-virus statuses of an entry that make sending it on without a
/// check unsafe: every one but av/clean (a virus, a suspicious or filtered
/// part, one that could not be scanned). One predicate for the release's
/// warning, `archive send`'s and where a failure is reported: the release
/// had warned of av/infected and av/suspicious alone while the other two
/// named every av/ status (final review, stop 61).
fn unsafe_statuses(statuses: &[String]) -> Vec<&str> {
    statuses
        .iter()
        .map(String::as_str)
        .filter(|s| s.starts_with("av/") && *s != "av/clean")
        .collect()
}

/// The warning for sending on an entry of `statuses` with `findings`: it
/// goes as it came, unscanned (walkAX 2: a release of an infected entry
/// said nothing of the virus it delivered).
fn carries_malware(statuses: &[String], findings: &[String]) -> Option<String> {
    let bad = unsafe_statuses(statuses);
    if bad.is_empty() {
        return None;
    }
    // The checks' findings, not the spam verdict's line.
    let av: Vec<&String> = findings.iter().filter(|f| !f.starts_with("as/")).collect();
    let shown: Vec<String> = av
        .iter()
        .take(3)
        .map(|f| crate::text::one_line(f))
        .collect();
    let more = av.len().saturating_sub(shown.len());
    let listed = match (shown.is_empty(), more) {
        (true, _) => String::new(),
        (false, 0) => format!(": {}", shown.join("; ")),
        (false, n) => format!(": {} and {n} more", shown.join("; ")),
    };
    Some(format!(
        "Warning: it holds {}{listed}; it is delivered as it came, without a verdict header and not scanned again.",
        bad.join(" and ")
    ))
}

/// Where a failure of a message sent again (a release, `archive send`) is
/// reported. Such a message was held back or kept because of what it
/// carries, and its envelope sender is the original one, which for virus
/// mail is almost always forged: a report with the whole message
/// (RET=FULL, the default) mailed the released virus to that third party
/// when the next hop refused a recipient (walkAP F8). So the report never
/// carries the message (RET=HDRS: headers only), and for an entry with an
/// anti-virus finding it goes to `server.postmaster` instead of the
/// original sender: the administrator who released it learns that it did
/// not arrive, and the forged sender gets no backscatter. The trace header
/// and the entry keep the original sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureReport {
    /// To the original sender, headers only.
    Sender(String),
    /// To the postmaster (the address), headers only, because of these
    /// anti-virus statuses.
    Postmaster {
        address: String,
        because: Vec<String>,
    },
    /// To nobody: the original sender is the null sender and there is
    /// no anti-virus finding.
    Nobody,
}

impl FailureReport {
    /// Where reports go for a message from `sender` whose entry holds
    /// `statuses`, with the postmaster `postmaster`.
    pub fn decide(sender: &str, statuses: &[String], postmaster: &str) -> FailureReport {
        let av: Vec<String> = unsafe_statuses(statuses)
            .into_iter()
            .map(str::to_string)
            .collect();
        if !av.is_empty() && !postmaster.is_empty() {
            FailureReport::Postmaster {
                address: postmaster.to_string(),
                because: av,
            }
        } else if sender.is_empty() {
            FailureReport::Nobody
        } else {
            FailureReport::Sender(sender.to_string())
        }
    }

    /// The envelope sender the message goes with.
    fn return_path(&self) -> &str {
        match self {
            FailureReport::Sender(a) | FailureReport::Postmaster { address: a, .. } => a,
            FailureReport::Nobody => "",
        }
    }

    /// A sentence for the CLI and the log: "a failure is reported to
    /// postmaster@example.com (headers only; the entry holds av/infected,
    /// so not to the original sender)".
    pub fn describe(&self) -> String {
        match self {
            FailureReport::Sender(a) => {
                format!("a failure is reported to the original sender {a} (headers only)")
            }
            FailureReport::Postmaster { address, because } => format!(
                "a failure is reported to {address} (headers only; the entry holds {}, so not to the original sender)",
                because.join(", ")
            ),
            FailureReport::Nobody => {
                "a failure is reported to nobody (the original sender is <>)".to_string()
            }
        }
    }
}

impl Spooled {
    /// Hands it to delivery.
    pub fn queue(self, gw: &Gateway) {
        gw.queue.enqueue(self.envelope);
    }
}

/// Spools the message of entry `id` again: for its original recipients,
/// or `to`. It skips the checks (an administrator decided) and gets a
/// trace header saying where it came from; [`Spooled::queue`] sends it.
pub async fn send_again(
    gw: &Gateway,
    store: &Arc<Store>,
    id: String,
    to: Option<String>,
    what: &str,
    delivered_copy: bool,
) -> Result<Spooled, String> {
    // Checked again here, not only by the CLI: a script may talk to the
    // socket itself, and a bad address is delivered to no one but bounced,
    // with the released message, to its sender.
    let to = to.as_deref().map(forward_path).transpose()?;
    let s = store.clone();
    let entry_id = id.clone();
    let (entry, bytes) = blocking(move || s.get(&entry_id)).await?;
    let rcpts: Vec<String> = match to {
        Some(a) => vec![a],
        None => entry.meta.recipients.clone(),
    };
    if rcpts.is_empty() {
        return Err(format!("{id} has no recipients: give --to ADDRESS"));
    }
    let cfg = gw.config();
    let new_id = QueueId::generate();
    let client = entry
        .meta
        .client_ip
        .parse()
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    let failure_report = FailureReport::decide(
        &entry.meta.sender,
        &entry.meta.statuses,
        &cfg.server.postmaster,
    );
    let mut env = Envelope::new(
        new_id.clone(),
        client,
        entry.meta.helo.clone(),
        failure_report.return_path().to_string(),
    );
    env.rcpts = rcpts.iter().cloned().map(Recipient::new).collect();
    // Headers only, whoever the report goes to ([`FailureReport`]).
    env.ret = Some(crate::envelope::Ret::Hdrs);
    env.scanned = true;
    // A UTF-8 address can only go with SMTPUTF8 (RFC 6531): a `--to` with
    // a UTF-8 local part, or an entry whose message came with it (the
    // store keeps no flag; its UTF-8 addresses tell). A message with only
    // UTF-8 in its header keeps going without it, as it came.
    env.smtputf8 = !env.mail_from.is_ascii() || env.rcpts.iter().any(|r| !r.address.is_ascii());
    // The outgoing archive's copy carries the entry's statuses, so that
    // `archive list --outgoing --status av/infected` finds the virus an
    // administrator let through (walkV 2).
    env.statuses = entry.meta.statuses.clone();
    // A copy this gateway delivered (the outgoing archive's) carries our
    // verdict fields; the delivery strips such fields from what it sends
    // as a sender's forgery, so they go on top as added headers, where it
    // keeps them (`archive send --outgoing` lost X-Mailward-AV). A copy as
    // received keeps the sender's fields in the message, and the delivery
    // strips them as it does for any message.
    let (ours, bytes) = match delivered_copy
        .then(|| crate::policy::verdict_headers::take(&bytes, &cfg.server.authserv_id))
        .flatten()
    {
        Some((ours, rest)) => (ours, rest),
        None => (String::new(), bytes),
    };
    env.size = bytes.len() as u64;
    env.eight_bit = bytes.iter().any(|&b| b >= 0x80);
    // The original sender stays on record in the trace header when
    // reports go to the postmaster instead.
    let original = match &failure_report {
        FailureReport::Postmaster { .. } => format!(
            "; original sender <{}>",
            crate::text::one_line(&entry.meta.sender)
        ),
        _ => String::new(),
    };
    env.added_headers = format!(
        "Received: from {what} (entry {id}{original}) by {} (Mailward) with local id {new_id};\r\n\t{}\r\n{ours}",
        cfg.server.hostname,
        chrono::Utc::now().to_rfc2822()
    );
    gw.spool
        .accept(&env, bytes)
        .await
        .map_err(|e| format!("cannot spool the message: {e}"))?;
    // What the command warned of, in the audit line too (walkBH F13).
    let unsafe_now = unsafe_statuses(&entry.meta.statuses).join(",");
    tracing::info!(target: "admin", store = store.what(), entry = %id, queue_id = %new_id,
        return_path = %env.mail_from, ret = "HDRS", unsafe_statuses = %unsafe_now,
        "Spooled again; {}.", failure_report.describe());
    Ok(Spooled {
        queue_id: new_id,
        rcpts,
        failure_report,
        warning: carries_malware(&entry.meta.statuses, &entry.meta.findings),
        envelope: env,
    })
}

/// `quarantine release`: sends the message on, and records the release in
/// the entry (which stays until it expires or is removed). With
/// `learn_ham`, the spam classifier also learns the message as ham (a
/// false positive released): after the release, which stands whether or
/// not the learning works.
pub async fn release(
    gw: &Gateway,
    id: String,
    to: Option<String>,
    learn_ham: bool,
    again: bool,
) -> Result<serde_json::Value, String> {
    let store = gw.stores.quarantine.clone();
    let given = id.clone();
    let id = resolve(&store, id, "quarantine release").await?;
    let one_send = store.sends.lock().await;
    if !again {
        not_sent_before(&store, &id, to.as_deref(), "released").await?;
    }
    let spooled = send_again(gw, &store, id.clone(), to, "quarantine", false).await?;
    let (queue_id, rcpts) = (spooled.queue_id.clone(), spooled.rcpts.clone());
    QuarantineReleased {
        entry: &id,
        queue_id: &queue_id,
        to: &rcpts,
    }
    .emit_by(&gw.stats, Some(&by()));
    let failure_report = spooled.failure_report.describe();
    let warning = spooled.warning.clone();
    let spooled_warning = warning.is_some();
    spooled.queue(gw);
    note_sent(&store, &id, &queue_id, &rcpts).await;
    drop(one_send);
    let mut answer = serde_json::json!({
        "id": id, "queue_id": queue_id.0, "to": rcpts,
        "failure_report": failure_report,
    });
    if let Some(w) = warning {
        answer["warning"] = w.into();
    }
    if given != id {
        answer["given"] = given.into();
    }
    // A virus or a filtered part is no spam false positive: `--learn-ham`
    // out of habit on such an entry would teach malware mail as ham
    // (walkBQ 7). The release stands; the lesson is not given.
    if learn_ham && spooled_warning {
        tracing::info!(target: "admin", quarantine_id = %id, by = %by(),
            "Released; not learnt as ham: it holds an anti-virus finding.");
        answer["learnt"] = UNSAFE_NOT_LEARNT.into();
    } else if learn_ham {
        match learn_entry(gw, &store, &id, Class::Ham).await {
            Ok(None) => {
                tracing::info!(target: "admin", quarantine_id = %id, by = %by(),
                    "Released; the GTUBE test message is not learnt as ham.");
                answer["learnt"] = GTUBE_NOT_LEARNT.into();
            }
            Ok(Some(l)) => {
                tracing::info!(target: "admin", quarantine_id = %id, learnt = l.as_str(),
                    by = %by(), "Released message learnt as ham by an administrator.");
                answer["learnt"] = l.as_str().into();
                // Held as formal mail: the lesson is the classifier's,
                // and formal detection is no classifier (walkCA F9: the
                // next issue of a newsletter was held again).
                let (s, entry) = (store.clone(), id.clone());
                if let Ok(e) = blocking(move || s.entry(&entry)).await {
                    answer["held_as"] = e.meta.reason.into();
                }
            }
            Err(e) => {
                tracing::warn!(target: "admin", quarantine_id = %id, error = %e,
                    "Released, but not learnt as ham.");
                answer["learn_error"] = e.into();
            }
        }
    }
    Ok(answer)
}

/// What `quarantine release` (`done` "Released") or `archive send`
/// ("Sent ... again") prints for the daemon's answer `data`: which entry
/// went (the one entry of a queue ID given: walkAP F1), as which queue ID
/// to whom, that it is queued and how to follow it (walkAP F2: with the
/// next hop down it said only "Released"), and where a failure will be
/// reported (walkAP F8). `config`: the `--config` given, for the command.
pub fn sent_reply(
    data: &serde_json::Value,
    done: &str,
    config: Option<&std::path::Path>,
) -> String {
    let text = |k: &str| data[k].as_str().unwrap_or("?").to_string();
    let (id, queue_id) = (text("id"), text("queue_id"));
    let to: Vec<&str> = data["to"]
        .as_array()
        .map(|t| t.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let which = match data["given"].as_str() {
        Some(given) => format!(" (the one entry of queue ID {given})"),
        None => String::new(),
    };
    let again = if done == "Sent" { " again" } else { "" };
    let config = config_arg(config);
    let mut out = format!(
        "{done} {id}{which}{again} as queue ID {queue_id} to {}.\nIt is queued for delivery: follow it with `mailward queue show {queue_id}{config}`",
        to.join(", ")
    );
    if let Some(r) = data["failure_report"].as_str() {
        out.push_str("; ");
        out.push_str(r);
    }
    out.push('.');
    if let Some(w) = data["warning"].as_str() {
        out.push('\n');
        out.push_str(w);
    }
    out
}

/// ` --config PATH` (absolute, quoted when it holds white space) for a
/// command the CLI suggests, when the command it answers was given one:
/// without it the suggestion finds another daemon's socket, or none.
pub fn config_arg(config: Option<&std::path::Path>) -> String {
    match config {
        Some(p) => {
            let p = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
            format!(" --config {}", shell_word(&p.display().to_string()))
        }
        None => String::new(),
    }
}

/// `text` as one word of a POSIX shell command: as it is when every
/// character is plain, else in single quotes (a `'` as `'\''`): a `'`,
/// `$(...)` or `;` in a path broke a pasted command or ran one (walkBS S6).
pub fn shell_word(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+:@,=%".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// `text` (the daemon's answer to a command) with [`config_arg`] added to
/// each command it suggests in backquotes (`` `mailward ...` ``) that has
/// none: the daemon does not know the `--config` the command was given,
/// and without it the suggestion asks another daemon, or none (walkBQ F3).
pub fn with_config_arg(text: &str, config: Option<&std::path::Path>) -> String {
    let arg = config_arg(config);
    if arg.is_empty() {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + arg.len());
    let parts = text.split('`').count();
    for (i, part) in text.split('`').enumerate() {
        if i > 0 {
            out.push('`');
        }
        out.push_str(part);
        // Odd parts are inside backquotes, when a closing one follows.
        let closed = parts > i + 1;
        if i % 2 == 1 && closed && part.starts_with("mailward ") && !part.contains("--config") {
            out.push_str(&arg);
        }
    }
    out
}

/// Refuses a second send of entry `id` to recipients it was sent to (its
/// own, or `to`): each is a delivery (two administrators answering the
/// same ticket, a command from the shell history would deliver a virus
/// twice). A copy for someone else (an analyst) is not a second delivery.
/// `done` names the send ("released", "sent").
async fn not_sent_before(
    store: &Arc<Store>,
    id: &str,
    to: Option<&str>,
    done: &str,
) -> Result<(), String> {
    let (s, entry_id) = (store.clone(), id.to_string());
    let entry = blocking(move || s.entry(&entry_id)).await?;
    let target = match to.map(forward_path).transpose()? {
        Some(a) => vec![a],
        None => entry.meta.recipients.clone(),
    };
    let to_them = |r: &&Released| {
        r.to.iter()
            .any(|a| target.iter().any(|t| t.eq_ignore_ascii_case(a)))
    };
    let before: Vec<&Released> = entry.released.iter().filter(to_them).collect();
    let Some(last) = before.last() else {
        return Ok(());
    };
    let mut why = already_released(id, last, before.len(), done);
    if to.is_none() {
        let command = if done == "released" {
            "mailward quarantine release"
        } else {
            "mailward archive send"
        };
        why.push_str(&not_yet_sent_to(id, &entry, command));
    }
    Err(why)
}

/// For a send without `--to` refused because the entry went to some of
/// its recipients before: the recipients it has not gone to yet, and the
/// command for each (walkAP F7: after a release to one recipient, the only
/// way on was `--again`, which sent it a second time to that one). Empty
/// when it went to all of them.
fn not_yet_sent_to(id: &str, entry: &Entry, command: &str) -> String {
    let remaining: Vec<&String> = entry
        .meta
        .recipients
        .iter()
        .filter(|r| {
            !entry
                .released
                .iter()
                .any(|x| x.to.iter().any(|a| a.eq_ignore_ascii_case(r)))
        })
        .collect();
    match remaining.as_slice() {
        [] => String::new(),
        [one] => format!(
            ". It has not gone to {one} yet: to send it there only, run `{command} {id} --to {one}`"
        ),
        many => {
            format!(
            ". It has not gone to {} yet: to send it there only, run (--to takes one address) {}",
            many.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", "),
            many.iter()
                .map(|r| format!("`{command} {id} --to {r}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
        }
    }
}

/// How an entry ID given to a command resolves ([`resolve`]).
enum Resolved {
    /// An entry has that ID.
    Itself,
    /// It is the queue ID of these entries (one per policy group, `ID.N`).
    Entries(Vec<Entry>),
}

/// The entry `id` names: itself, or, for the queue ID of a message whose
/// quarantine entries are one per policy group (`ID.N`), its one entry
/// when there is exactly one (walkAP F1: the ID a notice or the log gives
/// was refused although it named one entry). Several are refused with each
/// entry's recipients and the command to give (`command`, e.g.
/// "quarantine release").
pub async fn resolve(store: &Arc<Store>, id: String, command: &str) -> Result<String, String> {
    let (s, wanted) = (store.clone(), id.clone());
    let found = blocking(move || match s.entry(&wanted) {
        // An entry that cannot be read is still itself: `remove` removes
        // it, and `show` says why it cannot (walkAW F19).
        Ok(_) | Err(StoreError::Corrupt { .. }) => Ok(Resolved::Itself),
        Err(StoreError::QueueIdOfEntries { .. }) => {
            let prefix = format!("{wanted}.");
            Ok(Resolved::Entries(
                s.list()?
                    .into_iter()
                    .filter(|e| e.id.starts_with(&prefix))
                    .collect(),
            ))
        }
        Err(e) => Err(e),
    })
    .await?;
    match found {
        Resolved::Itself => Ok(id),
        Resolved::Entries(entries) => pick_entry(&id, store.what(), &entries, command),
    }
}

/// The one entry of `entries` (those of queue ID `id` in store `what`),
/// or why the administrator must choose.
fn pick_entry(id: &str, what: &str, entries: &[Entry], command: &str) -> Result<String, String> {
    match entries {
        [] => Err(format!(
            "{id}: no such entry (see `mailward quarantine list` or `mailward archive list`)"
        )),
        [one] => Ok(one.id.clone()),
        many => Err(format!(
            "{id} is the queue ID of {} {what} entries, one per policy group: {}. Give the entry ID, e.g. `mailward {command} {}`",
            many.len(),
            many.iter()
                .map(|e| format!("{} ({})", e.id, e.meta.recipients.join(", ")))
                .collect::<Vec<_>>()
                .join(", "),
            many[0].id
        )),
    }
}

/// Notes in entry `id` that it was sent as `queue_id` to `rcpts` (logged
/// when the note cannot be written: the send stands).
async fn note_sent(store: &Arc<Store>, id: &str, queue_id: &QueueId, rcpts: &[String]) {
    let record = Released {
        at: chrono::Utc::now().timestamp(),
        queue_id: queue_id.0.clone(),
        to: rcpts.to_vec(),
    };
    let (s, entry_id) = (store.clone(), id.to_string());
    if let Err(e) = blocking(move || s.released(&entry_id, record)).await {
        tracing::warn!(target: "admin", store = store.what(), entry = %id, error = %e,
            "Sent, but the send could not be noted in the entry.");
    }
}

/// `archive send`: queues an archived copy again, once per recipient
/// unless `again`, and says which of its statuses make it unsafe to send
/// without a check (walkV 10: an incoming copy of an infected message went
/// out silently, as often as asked).
pub async fn send_archived(
    gw: &Gateway,
    store: &Arc<Store>,
    id: String,
    to: Option<String>,
    again: bool,
    what: &str,
) -> Result<serde_json::Value, String> {
    let _one_send = store.sends.lock().await;
    if !again {
        not_sent_before(store, &id, to.as_deref(), "sent").await?;
    }
    let (s, entry_id) = (store.clone(), id.clone());
    let entry = blocking(move || s.entry(&entry_id)).await?;
    let delivered_copy = Arc::ptr_eq(store, gw.stores.archive(Direction::Outgoing));
    let spooled = send_again(gw, store, id.clone(), to, what, delivered_copy).await?;
    let (queue_id, rcpts) = (spooled.queue_id.clone(), spooled.rcpts.clone());
    let failure_report = spooled.failure_report.describe();
    tracing::info!(target: "admin", store = store.what(), archive_id = %id,
        queue_id = %queue_id, to = %rcpts.join(","), by = %by(), "Archived message sent again.");
    spooled.queue(gw);
    note_sent(store, &id, &queue_id, &rcpts).await;
    Ok(serde_json::json!({
        "id": id, "queue_id": queue_id.0, "to": rcpts,
        "unsafe_statuses": unsafe_statuses(&entry.meta.statuses),
        "failure_report": failure_report, "delivered_copy": delivered_copy,
    }))
}

/// The warning of `archive send` (`data` is [`send_archived`]'s answer)
/// when the copy's statuses name a virus or a filtered part. An outgoing
/// copy is the message as it was delivered, after the plan's changes: its
/// statuses are the checks' on the message received, and a part the plan
/// removed or replaced is not in it, so it is said so (walkAY A3: a
/// cleaned copy was said to carry the virus as it came).
pub fn archive_send_warning(data: &serde_json::Value) -> Option<String> {
    let statuses: Vec<&str> = data["unsafe_statuses"]
        .as_array()?
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    if statuses.is_empty() {
        return None;
    }
    let (id, statuses) = (data["id"].as_str().unwrap_or("?"), statuses.join(", "));
    Some(if data["delivered_copy"].as_bool() == Some(true) {
        format!(
            "mailward: warning: {id} was checked as {statuses} when it was received; this copy is the one delivered, as the plan left it (a part the plan removed or replaced is not in it; one it let pass still is), and it was sent as archived, without a new check"
        )
    } else {
        format!(
            "mailward: warning: {id} carries {statuses}: it was sent as archived, without a check"
        )
    })
}

fn already_released(id: &str, last: &Released, times: usize, done: &str) -> String {
    let at = chrono::DateTime::from_timestamp(last.at, 0).map_or_else(
        || last.at.to_string(),
        |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    );
    let before = if times > 1 {
        format!("{times} times; the last ")
    } else {
        String::new()
    };
    format!(
        "{id} was already {done} ({before}at {at}, as queue ID {} to {}); give --again to send it once more",
        last.queue_id,
        last.to.join(", ")
    )
}

/// Teaches the spam classifier entry `id` of `store` as `class`, now.
/// None: the entry is the GTUBE test message, which is not learnt.
async fn learn_entry(
    gw: &Gateway,
    store: &Arc<Store>,
    id: &str,
    class: Class,
) -> Result<Option<Learnt>, String> {
    let (s, entry_id, spam) = (store.clone(), id.to_string(), gw.scanner.spam.clone());
    tokio::task::spawn_blocking(move || {
        let (_, bytes) = s.get(&entry_id).map_err(|e| e.to_string())?;
        if crate::check::spam::is_gtube(&bytes) {
            return Ok(None);
        }
        spam.learn_now(&bytes, class)
            .map(Some)
            .map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|e| Err(format!("the learning task failed: {e}")))
}

/// `quarantine remove --learn-spam`: the administrator confirms a
/// quarantined message is spam. It is learnt first and removed only once
/// learnt, so a lesson that fails loses nothing (try again).
pub async fn remove_as_spam(gw: &Gateway, id: String) -> Result<serde_json::Value, String> {
    let store = gw.stores.quarantine.clone();
    // An entry that is not there is said as `remove` says it (walkAK 8:
    // "not learnt as spam, so not removed: ... no such entry" hid the
    // cause behind the consequence).
    let s = store.clone();
    let wanted = id.clone();
    blocking(move || s.entry(&wanted).map(|_| ())).await?;
    let learnt = learn_entry(gw, &store, &id, Class::Spam)
        .await
        .map_err(|e| format!("not learnt as spam, so not removed: {e}"))?;
    let learnt = match learnt {
        Some(l) => {
            tracing::info!(target: "admin", quarantine_id = %id, learnt = l.as_str(),
                by = %by(), "Quarantined message learnt as spam by an administrator.");
            l.as_str()
        }
        None => {
            tracing::info!(target: "admin", quarantine_id = %id, by = %by(),
                "The GTUBE test message is not learnt as spam; it is removed.");
            GTUBE_NOT_LEARNT
        }
    };
    let mut answer = remove(&store, id).await?;
    answer["learnt"] = learnt.into();
    Ok(answer)
}

/// The daemon's answer's `learnt` for the GTUBE test message, which the
/// quarantine's --learn-ham and --learn-spam do not learn.
pub const GTUBE_NOT_LEARNT: &str = "gtube";

/// `learnt` of a release `--learn-ham` of an entry with an anti-virus
/// finding: not learnt.
pub const UNSAFE_NOT_LEARNT: &str = "unsafe";

/// `remove`: one entry.
pub async fn remove(store: &Arc<Store>, id: String) -> Result<serde_json::Value, String> {
    let s = store.clone();
    let e = blocking(move || s.remove(&id)).await?;
    tracing::info!(target: "admin", store = store.what(), id = %e.id, by = %by(),
        "Store entry removed by an administrator.");
    Ok(serde_json::json!({ "removed": e.id }))
}

/// `purge --older-than`: every entry stored more than `older_than` seconds ago.
pub async fn purge(store: &Arc<Store>, older_than: u64) -> Result<serde_json::Value, String> {
    let s = store.clone();
    let before = chrono::Utc::now()
        .timestamp()
        .saturating_sub(older_than as i64);
    let gone = blocking(move || s.purge(before)).await?;
    let ids: Vec<String> = gone.iter().map(|e| e.id.clone()).collect();
    tracing::info!(target: "admin", store = store.what(), entries = gone.len(),
        ids = %crate::store::some_ids(&ids), by = %by(), "Store entries purged by an administrator.");
    Ok(serde_json::json!({ "removed": gone.len() }))
}

/// The archive store of an entry: the one asked for, else the one that
/// holds `id`. Both copies of a message share its ID, and they are not the
/// same message: incoming is as received (before the checks and the
/// policy), outgoing as delivered. When both hold `id`, the administrator
/// must choose: `show`, `send` or `remove` of the wrong one would show,
/// re-deliver unfiltered (to recipients the policy blocked it for) or
/// delete the other copy than the one meant.
pub fn archive_of(
    gw: &Gateway,
    id: &str,
    direction: Option<Direction>,
) -> Result<(Arc<Store>, Direction), String> {
    if let Some(d) = direction {
        return Ok((gw.stores.archive(d).clone(), d));
    }
    // An entry whose description cannot be read is there too (walkBR N3:
    // it was "no such entry" unless --incoming named its archive).
    let holds = |d: Direction| {
        matches!(
            gw.stores.archive(d).entry(id),
            Ok(_)
                | Err(
                    crate::store::StoreError::Corrupt { .. } | crate::store::StoreError::Io { .. }
                )
        )
    };
    let d = pick_archive(holds(Direction::Incoming), holds(Direction::Outgoing), id)?;
    Ok((gw.stores.archive(d).clone(), d))
}

/// Which archive to use for an ID found in incoming (`incoming`) and/or
/// outgoing (`outgoing`), when the command did not say.
fn pick_archive(incoming: bool, outgoing: bool, id: &str) -> Result<Direction, String> {
    match (incoming, outgoing) {
        (true, true) => Err(format!(
            "{id} is in both archives: the incoming copy (as received, before the checks and the policy) and the outgoing one (as delivered); choose one with --incoming or --outgoing"
        )),
        (true, false) => Ok(Direction::Incoming),
        // In neither, the outgoing store says that it has no such entry.
        (false, _) => Ok(Direction::Outgoing),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggested_commands_get_the_config_given() {
        let text = "X.1 was already released; give --again. It has not gone to d@example.com \
                    yet: to send it there only, run `mailward quarantine release X.1 --to d@example.com`";
        let path = std::path::Path::new("/etc/mw/mw.toml");
        assert_eq!(
            with_config_arg(text, Some(path)),
            text.replace("d@example.com`", "d@example.com --config /etc/mw/mw.toml`")
        );
        assert_eq!(with_config_arg(text, None), text);
        // Quoted for the shell when it is not plain.
        for (path, quoted) in [
            ("/a b/mw.toml", " --config '/a b/mw.toml'"),
            ("/it's/mw.toml", " --config '/it'\\''s/mw.toml'"),
            ("/x$(id)/mw.toml", " --config '/x$(id)/mw.toml'"),
        ] {
            assert_eq!(config_arg(Some(std::path::Path::new(path))), quoted);
        }
        // Not a command, one that has it already, an unclosed quote.
        for same in [
            "use `--again`",
            "run `mailward queue show X --config /a.toml`",
            "odd `mailward queue show X",
        ] {
            assert_eq!(with_config_arg(same, Some(path)), same);
        }
    }

    #[test]
    fn a_second_release_says_when_and_to_whom_the_first_went() {
        let r = Released {
            at: 1_796_475_633,
            queue_id: "1A2464ABDA8D94EC".into(),
            to: vec!["boss@example.com".into()],
        };
        assert_eq!(
            already_released("1A2464A8EDAD94EB.2", &r, 1, "released"),
            "1A2464A8EDAD94EB.2 was already released (at 2026-12-05 13:00:33 UTC, as queue ID 1A2464ABDA8D94EC to boss@example.com); give --again to send it once more"
        );
        assert!(already_released("X", &r, 3, "released")
            .contains("released (3 times; the last at 2026-12-05"));
    }

    /// walkAP F9: the quarantine is read from its files with the daemon
    /// stopped, and nothing is written.
    #[test]
    fn the_quarantine_is_listed_and_shown_from_its_files() {
        let dir = tempfile::tempdir().unwrap();
        let q = store_dir(dir.path(), None);
        std::fs::create_dir_all(&q).unwrap();
        let mut e = entry(&["av/infected", "as/clean"]);
        e.id = "1A22E9FF2EB0B74B.2".into();
        std::fs::write(
            q.join("1A22E9FF2EB0B74B.2.json"),
            serde_json::to_vec(&e).unwrap(),
        )
        .unwrap();
        std::fs::write(
            q.join("1A22E9FF2EB0B74B.2.eml"),
            b"Subject: x\r\n\r\nbody\r\n",
        )
        .unwrap();
        std::fs::write(q.join("half.tmp"), b"").unwrap();
        let before: Vec<_> = std::fs::read_dir(&q)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        let all = list_offline(&q, &Filter::default(), None).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].id, "1A22E9FF2EB0B74B.2");
        let spam = Filter {
            status: Some("as/all".into()),
            since: None,
        };
        assert!(list_offline(&q, &spam, None).unwrap().is_empty());
        let shown = show_offline(&q, "1A22E9FF2EB0B74B.2").unwrap();
        assert_eq!(shown["entry"]["id"], "1A22E9FF2EB0B74B.2");
        assert_eq!(shown["message_b64"], "U3ViamVjdDogeA0KDQpib2R5DQo=");
        let e = show_offline(&q, "1A22E9FF2EB0B74C")
            .err()
            .unwrap_or_default();
        assert!(e.starts_with("1A22E9FF2EB0B74C: no such entry in /"), "{e}");
        let after: Vec<_> = std::fs::read_dir(&q)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(before.len(), after.len(), "nothing written or removed");
        assert_eq!(
            store_dir(std::path::Path::new("/d"), Some(Direction::Incoming)),
            std::path::Path::new("/d/archive/incoming")
        );
        assert!(offline_note(&q, "send, remove and purge")
            .ends_with("(ID.json, ID.eml), read-only; send, remove and purge need the daemon"));
    }

    /// walkAW F16: the archive is read from its files too, both
    /// directions oldest first, each entry marked with its direction; an
    /// archive never turned on (no directory) has no entries.
    #[test]
    fn the_archive_is_listed_and_shown_from_its_files() {
        let dir = tempfile::tempdir().unwrap();
        assert!(archive_list_offline(dir.path(), &Filter::default(), None)
            .unwrap()
            .is_empty());
        let put = |d: Direction, id: &str, stored: i64| {
            let at = store_dir(dir.path(), Some(d));
            std::fs::create_dir_all(&at).unwrap();
            let mut e = entry(&["av/clean", "as/clean"]);
            e.id = id.into();
            e.stored = stored;
            std::fs::write(
                at.join(format!("{id}.json")),
                serde_json::to_vec(&e).unwrap(),
            )
            .unwrap();
            std::fs::write(at.join(format!("{id}.eml")), b"Subject: x\r\n\r\nbody\r\n").unwrap();
        };
        put(Direction::Outgoing, "1A22E9FF2EB0B74B", 200);
        put(Direction::Incoming, "1A22E9FF2EB0B74C", 300);
        put(Direction::Incoming, "1A22E9FF2EB0B74D", 100);
        let all = archive_list_offline(dir.path(), &Filter::default(), None).unwrap();
        let got: Vec<(&str, Option<&str>)> = all
            .iter()
            .map(|l| (l.id.as_str(), l.direction.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("1A22E9FF2EB0B74D", Some("incoming")),
                ("1A22E9FF2EB0B74B", Some("outgoing")),
                ("1A22E9FF2EB0B74C", Some("incoming")),
            ]
        );
        let out = archive_list_offline(dir.path(), &Filter::default(), Some(Direction::Outgoing))
            .unwrap();
        assert_eq!(out.len(), 1);
        let shown = archive_show_offline(dir.path(), "1A22E9FF2EB0B74C", None).unwrap();
        assert_eq!(shown["entry"]["id"], "1A22E9FF2EB0B74C");
        // In both archives: the command must choose, as with the daemon.
        put(Direction::Outgoing, "1A22E9FF2EB0B74C", 300);
        let e = archive_show_offline(dir.path(), "1A22E9FF2EB0B74C", None)
            .err()
            .unwrap_or_default();
        assert!(
            e.contains("choose one with --incoming or --outgoing"),
            "{e}"
        );
        let e = archive_show_offline(dir.path(), "1A22E9FF2EB0B74E", None)
            .err()
            .unwrap_or_default();
        assert!(
            e.starts_with("1A22E9FF2EB0B74E: no such entry in the archive ("),
            "{e}"
        );
        let e = archive_show_offline(dir.path(), "../x", None)
            .err()
            .unwrap_or_default();
        assert_eq!(e, "`../x` is not an entry ID");
    }

    /// walkAD 9: a zip of 3,000 EICAR files made a 146 kB list line.
    /// walkAP F8: a released virus the next hop refused went back, whole,
    /// to the original (forged) sender. Reports are headers only; with an
    /// anti-virus finding they go to the postmaster.
    #[test]
    fn a_failure_of_a_released_virus_is_reported_to_the_postmaster() {
        let st = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let pm = "postmaster@gw.example";
        let virus = FailureReport::decide(
            "victim@innocent.test",
            &st(&["av/infected", "as/clean"]),
            pm,
        );
        assert_eq!(virus.return_path(), pm);
        assert_eq!(
            virus.describe(),
            "a failure is reported to postmaster@gw.example (headers only; the entry holds av/infected, so not to the original sender)"
        );
        let spam = FailureReport::decide("me@example.com", &st(&["av/clean", "as/spam"]), pm);
        assert_eq!(spam.return_path(), "me@example.com");
        assert_eq!(
            spam.describe(),
            "a failure is reported to the original sender me@example.com (headers only)"
        );
        let bounce = FailureReport::decide("", &st(&["as/formal"]), pm);
        assert_eq!(bounce.return_path(), "");
        let filtered = FailureReport::decide("", &st(&["av/filtered"]), pm);
        assert_eq!(filtered.return_path(), pm);
    }

    /// walkAP F1, F2: a queue ID with one entry releases that entry and
    /// says which; the reply says the message is queued and how to follow
    /// it, and where a failure goes.
    #[test]
    fn a_queue_id_with_one_entry_names_it_and_several_are_listed() {
        let mut a = entry(&["av/infected"]);
        a.id = "1A24AE3CA486CCDB.2".into();
        a.meta.recipients = vec!["q@quar.corp.test".into()];
        assert_eq!(
            pick_entry(
                "1A24AE3CA486CCDB",
                "quarantine",
                &[a.clone()],
                "quarantine release"
            ),
            Ok("1A24AE3CA486CCDB.2".to_string())
        );
        let mut b = a.clone();
        b.id = "1A24AE3CA486CCDB.3".into();
        b.meta.recipients = vec!["r@x.test".into(), "s@x.test".into()];
        assert_eq!(
            pick_entry("1A24AE3CA486CCDB", "quarantine", &[a, b], "quarantine release"),
            Err("1A24AE3CA486CCDB is the queue ID of 2 quarantine entries, one per policy group: 1A24AE3CA486CCDB.2 (q@quar.corp.test), 1A24AE3CA486CCDB.3 (r@x.test, s@x.test). Give the entry ID, e.g. `mailward quarantine release 1A24AE3CA486CCDB.2`".to_string())
        );
        let data = serde_json::json!({
            "id": "1A24AE3CA486CCDB.2", "given": "1A24AE3CA486CCDB",
            "queue_id": "1A24AE4199B6CCDE", "to": ["q@quar.corp.test"],
            "failure_report": "a failure is reported to postmaster@gw.example (headers only; the entry holds av/infected, so not to the original sender)",
        });
        assert_eq!(
            sent_reply(&data, "Released", Some(std::path::Path::new("/etc/mailward/mw.toml"))),
            "Released 1A24AE3CA486CCDB.2 (the one entry of queue ID 1A24AE3CA486CCDB) as queue ID 1A24AE4199B6CCDE to q@quar.corp.test.\nIt is queued for delivery: follow it with `mailward queue show 1A24AE4199B6CCDE --config /etc/mailward/mw.toml`; a failure is reported to postmaster@gw.example (headers only; the entry holds av/infected, so not to the original sender)."
        );
        let data = serde_json::json!({"id": "X", "queue_id": "Y", "to": ["a@b.test"]});
        assert_eq!(
            sent_reply(&data, "Sent", None),
            "Sent X again as queue ID Y to a@b.test.\nIt is queued for delivery: follow it with `mailward queue show Y`."
        );
        // walkAX 2: a release of an infected entry says what it delivers.
        let warning = carries_malware(
            &["av/infected".into(), "as/clean".into()],
            &["infected EICAR_Test_File in invoice.zip/eicar.com".into()],
        );
        assert_eq!(
            warning.as_deref(),
            Some("Warning: it holds av/infected: infected EICAR_Test_File in invoice.zip/eicar.com; it is delivered as it came, without a verdict header and not scanned again.")
        );
        let data =
            serde_json::json!({"id": "X", "queue_id": "Y", "to": ["a@b.test"], "warning": warning});
        assert!(sent_reply(&data, "Released", None).ends_with("`mailward queue show Y`.\nWarning: it holds av/infected: infected EICAR_Test_File in invoice.zip/eicar.com; it is delivered as it came, without a verdict header and not scanned again."));
        assert_eq!(carries_malware(&["as/spam".into()], &[]), None);
        assert_eq!(
            carries_malware(&["av/clean".into(), "as/spam".into()], &[]),
            None
        );
        // A filtered part is as unsafe to send on as it is to report to
        // the original sender about.
        assert_eq!(
            carries_malware(
                &["av/filtered".into()],
                &["filtered invoice.exe (name *.exe)".into()]
            )
            .as_deref(),
            Some("Warning: it holds av/filtered: filtered invoice.exe (name *.exe); it is delivered as it came, without a verdict header and not scanned again.")
        );
    }

    #[test]
    fn archive_send_warns_of_a_virus_in_words_for_its_copy() {
        let incoming = serde_json::json!({"id": "X", "unsafe_statuses": ["av/infected"], "delivered_copy": false});
        assert_eq!(
            archive_send_warning(&incoming).as_deref(),
            Some("mailward: warning: X carries av/infected: it was sent as archived, without a check")
        );
        // walkAY A3: the outgoing copy is what was delivered.
        let outgoing = serde_json::json!({"id": "X", "unsafe_statuses": ["av/infected"], "delivered_copy": true});
        assert_eq!(
            archive_send_warning(&outgoing).as_deref(),
            Some("mailward: warning: X was checked as av/infected when it was received; this copy is the one delivered, as the plan left it (a part the plan removed or replaced is not in it; one it let pass still is), and it was sent as archived, without a new check")
        );
        let clean = serde_json::json!({"id": "X", "unsafe_statuses": [], "delivered_copy": true});
        assert_eq!(archive_send_warning(&clean), None);
    }

    /// walkAP F7: after a release to one recipient, a release without
    /// --to names the others and the command for each.
    #[test]
    fn a_partly_released_entry_names_who_has_not_had_it() {
        let mut e = entry(&["av/infected"]);
        e.id = "1A24AE62624C8231".into();
        e.meta.recipients = vec!["q7@quar.corp.test".into(), "q8@quar.corp.test".into()];
        e.released.push(Released {
            at: 1_796_475_633,
            queue_id: "1A24AE62A26C8232".into(),
            to: vec!["Q7@quar.corp.test".into()],
        });
        assert_eq!(
            not_yet_sent_to(&e.id, &e, "mailward quarantine release"),
            ". It has not gone to q8@quar.corp.test yet: to send it there only, run `mailward quarantine release 1A24AE62624C8231 --to q8@quar.corp.test`"
        );
        e.meta.recipients.push("q9@quar.corp.test".into());
        let many = not_yet_sent_to(&e.id, &e, "mailward quarantine release");
        assert!(
            many.starts_with(". It has not gone to q8@quar.corp.test, q9@quar.corp.test yet")
                && many.ends_with(
                    "`mailward quarantine release 1A24AE62624C8231 --to q9@quar.corp.test`"
                ),
            "{many}"
        );
        e.meta.recipients.truncate(1);
        assert_eq!(not_yet_sent_to(&e.id, &e, "x"), "");
    }

    #[test]
    fn a_list_names_twenty_findings_and_where_the_rest_are() {
        let e = Entry {
            id: "1A248E6FCED7439F".into(),
            stored: 0,
            meta: crate::store::EntryMeta {
                findings: (0..3000)
                    .map(|i| format!("infected EICAR_Test_File in many.zip/{i}.com"))
                    .collect(),
                ..Default::default()
            },
            released: Vec::new(),
        };
        let l = Listed::for_list(&e, None);
        assert_eq!(l.findings.len(), 21);
        assert_eq!(
            l.findings[20],
            "... and 2980 more findings (mailward quarantine show 1A248E6FCED7439F)"
        );
        let a = Listed::for_list(&e, Some(Direction::Incoming));
        assert!(a.findings[20].ends_with("(mailward archive show 1A248E6FCED7439F --incoming)"));
        // `show` keeps them all.
        assert_eq!(Listed::new(&e, None).findings.len(), 3000);
    }

    /// walkO 14: `quarantine list --json` wrote a release's time as Unix
    /// seconds beside RFC 3339 `received` and `stored`.
    #[test]
    fn a_release_is_listed_with_an_rfc3339_time() {
        let r = Release::from(&Released {
            at: 1_796_475_633,
            queue_id: "1A2464ABDA8D94EC".into(),
            to: vec!["boss@example.com".into()],
        });
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["at"], "2026-12-05T13:00:33Z");
        // The CLI reads it back, and what an older daemon sent too.
        assert_eq!(serde_json::from_value::<Release>(json).unwrap(), r);
        let old = serde_json::json!({"at": 1_796_475_633, "queue_id": "Q", "to": []});
        assert_eq!(serde_json::from_value::<Release>(old).unwrap().at, r.at);
    }

    #[test]
    fn an_audit_line_names_at_most_twenty_ids() {
        let ids: Vec<String> = (0..23).map(|n| format!("ID{n}")).collect();
        let line = crate::store::some_ids(&ids);
        assert!(
            line.starts_with("ID0,ID1,") && line.ends_with("ID19 (and 3 more)"),
            "{line}"
        );
        assert_eq!(crate::store::some_ids(&ids[..2]), "ID0,ID1");
    }

    #[test]
    fn to_takes_one_address_and_names_a_bad_one() {
        for (given, want) in [
            ("analyst@example.com", "analyst@example.com"),
            ("<analyst@example.com>", "analyst@example.com"),
            (" analyst@example.com ", "analyst@example.com"),
            ("abuse@[192.0.2.7]", "abuse@[192.0.2.7]"),
        ] {
            assert_eq!(forward_path(given).as_deref(), Ok(want), "{given}");
        }
        for bad in [
            "@reject.test",
            "a@",
            "x@",
            "a@b@c",
            "a@example.com,b@example.com",
            "notanaddress",
            "x y@example.com",
            "<a@example.com",
            "a@example.com>",
            "<<a@example.com>>",
            "a@exa_mple.com",
        ] {
            let e = forward_path(bad).err().unwrap_or_default();
            assert!(
                e.starts_with(&format!("`{bad}` is not an address: "))
                    && e.ends_with("give one address like user@example.com"),
                "{bad}: {e}"
            );
        }
        let e = forward_path("<>").err().unwrap_or_default();
        assert!(e.starts_with("`<>` is the null address"), "{e}");
        let e = forward_path("").err().unwrap_or_default();
        assert_eq!(
            e,
            "the address is empty: give one address like user@example.com"
        );
        // walkV 11: an internationalised domain becomes its A-label; a
        // non-ASCII local part is taken (the release goes with SMTPUTF8),
        // control characters and broken UTF-8 are not.
        assert_eq!(
            forward_path("user@Bücher.example").as_deref(),
            Ok("user@xn--bcher-kva.example")
        );
        assert_eq!(
            forward_path("jürgen@Bücher.example").as_deref(),
            Ok("jürgen@xn--bcher-kva.example")
        );
        for bad in ["j\u{fffd}rgen@example.com", "j\u{85}rgen@example.com"] {
            let e = forward_path(bad).err().unwrap_or_default();
            assert!(e.contains("not UTF-8"), "{e}");
        }
    }

    /// A stored entry of the default group with these statuses.
    fn entry(statuses: &[&str]) -> Entry {
        Entry {
            id: "1A22E9FF2EB0B74B".into(),
            stored: 1_000,
            meta: crate::store::EntryMeta {
                queue_id: "1A22E9FF2EB0B74B".into(),
                received: 1_000,
                sender: "me@example.com".into(),
                recipients: vec!["user@example.com".into()],
                client_ip: "127.0.0.1".into(),
                helo: "client.test".into(),
                statuses: statuses.iter().map(|s| s.to_string()).collect(),
                findings: Vec::new(),
                group: String::new(),
                reason: statuses.first().map_or(String::new(), |s| s.to_string()),
                size: 896,
            },
            released: Vec::new(),
        }
    }

    #[test]
    fn a_status_filter_of_all_lists_findings_not_clean_entries() {
        let by = |status: &str| Filter {
            status: Some(status.into()),
            since: None,
        };
        let infected = entry(&["av/infected", "as/clean"]);
        let spam = entry(&["av/clean", "as/spam"]);
        let formal = entry(&["av/clean", "as/formal"]);
        for (filter, e, want) in [
            ("av/all", &infected, true),
            ("av/all", &spam, false),
            ("av/all", &formal, false),
            ("as/all", &infected, false),
            ("as/all", &spam, true),
            ("as/all", &formal, false),
            ("as/formal", &formal, true),
            ("av/clean", &spam, true),
        ] {
            assert_eq!(
                matches(e, &by(filter), 2_000),
                want,
                "--status {filter} on {:?}",
                e.meta.statuses
            );
        }
    }

    #[test]
    fn the_listing_names_the_default_group_default() {
        let mut e = entry(&["av/infected", "as/clean"]);
        let json = serde_json::to_value(Listed::new(&e, None)).unwrap_or_default();
        assert_eq!(json["group"], "default", "{json}");
        e.meta.group = "managers".into();
        assert_eq!(Listed::new(&e, None).group, "managers");
    }

    #[test]
    fn an_id_in_both_archives_needs_a_choice() {
        let e = pick_archive(true, true, "1A22E10E77891C7A")
            .err()
            .unwrap_or_default();
        assert!(
            e.starts_with("1A22E10E77891C7A is in both archives")
                && e.ends_with("choose one with --incoming or --outgoing"),
            "{e}"
        );
        assert_eq!(pick_archive(true, false, "X"), Ok(Direction::Incoming));
        assert_eq!(pick_archive(false, true, "X"), Ok(Direction::Outgoing));
        assert_eq!(pick_archive(false, false, "X"), Ok(Direction::Outgoing));
    }
}
