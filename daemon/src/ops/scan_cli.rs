//! `mailward scan PATH...`: checks files offline with the anti-virus bases
//! and the content filter of the configuration, as the gateway checks the
//! mail that carries them, without a running daemon and without sending
//! anything. An administrator asks "would this attachment be stopped?" or
//! "what does the quarantined copy hold?" and gets the gateway's answer.
//!
//! A file that is a message (a header block such as a mail client saves,
//! or an mbox) is checked as a message; any other file (an attachment
//! saved from a mail client, a download) is checked as the one attachment
//! of a message, under its own name, so that the name and MIME filters
//! apply to it as they would in mail.

use crate::check::bases::{self, BasesError};
use crate::check::unpack::mail_header;
use crate::check::{self, AvStatus, Finding, MemoryPool, Partition, Report, Tools};
use crate::config::{Config, LongLines};
use crate::envelope::{Envelope, QueueId, Recipient};
use base64::Engine as _;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ScanCliError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot load the signature bases: {0}")]
    Bases(#[from] BasesError),
    #[error("{0}")]
    Usage(String),
    #[error("{path}: {size} bytes, more than limits.max_message_size ({limit} bytes): the gateway refuses such a message (552 5.3.4), so it is not checked")]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
}

/// What `mailward scan` is asked.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// One JSON object per message and group instead of text.
    pub json: bool,
    /// The envelope sender the groups see ("" = the null sender).
    pub from: String,
    /// Envelope recipients; none = one recipient of the default group.
    pub to: Vec<String>,
    /// Every file is checked as an attachment, even one that reads as a
    /// message.
    pub attachment: bool,
}

/// How a run ended, for the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Everything checked is `av/clean` (exit 0).
    Clean,
    /// Something could not be looked into (`av/error`) or a PATH could not
    /// be read, and nothing was found (exit 3).
    Unchecked,
    /// Some message is infected, suspicious, protected or filtered (exit 1).
    Found,
}

/// One thing to check: where it came from and the message to check.
struct Item {
    name: String,
    message: Vec<u8>,
}

/// Checks every PATH (a file, a directory walked recursively in name
/// order, an mbox) and writes one verdict per message and group to `out`;
/// PATHs that cannot be read are said on `err` and the others are checked.
pub fn scan(
    cfg: &Config,
    paths: &[PathBuf],
    opts: &Options,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Outcome, ScanCliError> {
    let (rules, info) = load_bases(cfg, err)?;
    let mut scanner = yara_x::Scanner::new(&rules);
    let pool = MemoryPool::new(cfg.limits.scan_memory.0);
    let envelope = envelope(opts);
    let partitions = partitions(cfg, &envelope);
    let mut outcome = Outcome::Clean;
    let (mut checked, mut unread) = (0usize, 0usize);
    let limit = cfg.limits.max_message_size.0;
    // A path not read is also a JSON line for a script that reads stdout
    // only (walkZ 14): {"file": ..., "status": "error", "error": ...}.
    let not_read = |out: &mut dyn Write, err: &mut dyn Write, file: &Path, e: &ScanCliError| {
        // A file name may hold a line break (walkBR N2).
        let _ = writeln!(err, "mailward: {}", escaped(&e.to_string()));
        if opts.json {
            let _ = writeln!(out, "{}", unread_line(file, e));
        }
    };
    for path in paths {
        let (files, dirs_unread) = match gather(path, err) {
            Ok(found) => found,
            Err(e) => {
                unread += 1;
                not_read(out, err, path, &e);
                continue;
            }
        };
        // One file at a time: a directory of large files is never all in
        // memory at once. A file or a sub-directory that cannot be read is
        // said; the others are checked (walkBS S5: one unreadable
        // sub-directory left the whole walk unchecked).
        for (dir, e) in &dirs_unread {
            unread += 1;
            not_read(out, err, dir, e);
        }
        for file in files {
            let items = match read_one(&file, opts.attachment, limit) {
                Ok(items) => items,
                Err(e) => {
                    unread += 1;
                    not_read(out, err, &file, &e);
                    continue;
                }
            };
            for item in items {
                // A line over 998 octets: the session refuses the message
                // or splits the line before the checks see it.
                let (split_copy, fate) = long_lines(&item.message, cfg.limits.long_lines);
                let message = split_copy.as_deref().unwrap_or(&item.message);
                let mut tools = Tools {
                    scanner: Some(&mut scanner),
                    bases: info.as_ref(),
                    pool: &pool,
                    spam: None,
                };
                let report = check::run(
                    &envelope,
                    message,
                    &partitions,
                    &mut tools,
                    cfg.timeouts.scan.get(),
                );
                checked += 1;
                for p in &partitions {
                    let status = report.av_status(&p.group, &p.policy);
                    outcome = outcome.max(match status {
                        _ if matches!(fate, LongLineFate::Refused { .. }) => Outcome::Found,
                        Some(AvStatus::Clean) | None => Outcome::Clean,
                        Some(AvStatus::Error) => Outcome::Unchecked,
                        Some(_) => Outcome::Found,
                    });
                    let verdict = Verdict {
                        status,
                        report: &report,
                        null_sender: opts.from.is_empty(),
                        fate,
                    };
                    let line = if opts.json {
                        json_line(&item, p, &verdict)
                    } else {
                        text_line(&item, p, &verdict, partitions.len())
                    };
                    if writeln!(out, "{line}").is_err() {
                        return Ok(outcome);
                    }
                }
            }
        }
    }
    // Counted as said above, file by file and directory by directory: "1
    // of 1 path(s)" for a directory mostly read misled (walkBU).
    if unread > 0 {
        let what = match unread {
            1 => "1 file or directory".to_string(),
            n => format!("{n} files or directories"),
        };
        let _ = writeln!(
            err,
            "mailward: {what} could not be read (named above); {checked} message(s) checked"
        );
        outcome = outcome.max(Outcome::Unchecked);
    }
    Ok(outcome)
}

/// The installed bases, as the gateway loads them; the built-in set when
/// none is installed yet (a host where the gateway never ran), said on
/// `err` so that nobody takes its few test rules for a real set.
fn load_bases(
    cfg: &Config,
    err: &mut dyn Write,
) -> Result<(yara_x::Rules, Option<bases::BasesInfo>), ScanCliError> {
    let dir = &cfg.bases.av;
    // Only "not there" means "none installed": a directory this user may
    // not read (the daemon's, 0750) is said, not checked with less.
    let manifest = dir.join("manifest.toml");
    match std::fs::metadata(&manifest) {
        Ok(_) => {
            let info = bases::read(dir)?;
            let (rules, _) = bases::compile(dir)?;
            return Ok((rules, info));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(ScanCliError::Io {
                path: manifest,
                source,
            })
        }
    }
    let (rules, info) = bases::compile_builtin()?;
    let _ = writeln!(
        err,
        "mailward: warning: no signature bases installed in {} (bases.av): checking with the built-in set {}, a few test rules only (the gateway installs it at its first start; `mailward bases update --from DIR` installs a real set)",
        dir.display(),
        info.as_ref().map_or("", |i| i.version.as_str()),
    );
    Ok((rules, info))
}

/// The envelope the groups are chosen by, as if the message came from a
/// client on the loopback address.
fn envelope(opts: &Options) -> Envelope {
    let mut env = Envelope::new(
        QueueId::generate(),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        "localhost".into(),
        opts.from.clone(),
    );
    env.rcpts = if opts.to.is_empty() {
        // No address of any group: the default group's policy.
        vec![Recipient::new("recipient@scan.invalid".into())]
    } else {
        opts.to.iter().cloned().map(Recipient::new).collect()
    };
    env
}

/// The groups of the envelope's recipients, with the anti-virus check and
/// the content filter as each group has them and the spam check off: it
/// judges the session as well as the message (`mailward spam check` does
/// that offline).
fn partitions(cfg: &Config, env: &Envelope) -> Vec<Partition> {
    crate::policy::partition(cfg, env)
        .into_iter()
        .map(|mut p| {
            let mut policy = (*p.policy).clone();
            policy.check_spam = false;
            p.policy = Arc::new(policy);
            p
        })
        .collect()
}

/// The files of one PATH: itself, or a directory's, recursively. What a
/// directory holds besides files and directories (symbolic links, FIFOs,
/// sockets, devices) is not read, and said on `err` (walkZ 9: skipped
/// without a word).
/// The regular files of `path` (itself, or those under it), and the
/// sub-directories that could not be read, with why.
#[allow(clippy::type_complexity)]
fn gather(
    path: &Path,
    err: &mut dyn Write,
) -> Result<(Vec<PathBuf>, Vec<(PathBuf, ScanCliError)>), ScanCliError> {
    let io = |source| ScanCliError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_dir() {
        return Ok((vec![path.to_path_buf()], Vec::new()));
    }
    let mut files = Vec::new();
    let mut skipped = Skipped::default();
    walk(path, &mut files, &mut skipped)?;
    if let Some(note) = skipped.note() {
        let _ = writeln!(
            err,
            "mailward: {}: {note}",
            escaped(&path.display().to_string())
        );
    }
    if files.is_empty() && skipped.unreadable.is_empty() {
        return Err(ScanCliError::Usage(format!(
            "{}: the directory holds no regular files",
            path.display()
        )));
    }
    Ok((files, skipped.unreadable))
}

/// What a directory walk did not read.
#[derive(Debug, Default)]
struct Skipped {
    links: Vec<PathBuf>,
    special: Vec<PathBuf>,
    /// Sub-directories that could not be read, and why.
    unreadable: Vec<(PathBuf, ScanCliError)>,
}

impl Skipped {
    /// "2 symbolic link(s) not followed (a/l1, a/l2); 1 special file(s)
    /// not read (a/fifo)", the first 3 of each named; None: nothing.
    fn note(&self) -> Option<String> {
        let list = |v: &[PathBuf]| {
            let mut s: Vec<String> = v
                .iter()
                .take(3)
                .map(|p| escaped(&p.display().to_string()))
                .collect();
            if v.len() > 3 {
                s.push("...".into());
            }
            s.join(", ")
        };
        let mut parts = Vec::new();
        if !self.links.is_empty() {
            parts.push(format!(
                "{} symbolic link(s) not followed ({})",
                self.links.len(),
                list(&self.links)
            ));
        }
        if !self.special.is_empty() {
            parts.push(format!(
                "{} special file(s) (FIFO, socket, device) not read ({})",
                self.special.len(),
                list(&self.special)
            ));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// The regular files under `dir`, in name order, recursively (symbolic
/// links are not followed: a link to `/` would walk the whole host).
fn walk(dir: &Path, files: &mut Vec<PathBuf>, skipped: &mut Skipped) -> Result<(), ScanCliError> {
    let io = |source| ScanCliError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries: Vec<std::fs::DirEntry> = std::fs::read_dir(dir)
        .map_err(io)?
        .collect::<Result<_, _>>()
        .map_err(io)?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for e in entries {
        let kind = e.file_type().map_err(io)?;
        if kind.is_dir() {
            let sub = e.path();
            if let Err(why) = walk(&sub, files, skipped) {
                skipped.unreadable.push((sub, why));
            }
        } else if kind.is_file() {
            files.push(e.path());
        } else if kind.is_symlink() {
            skipped.links.push(e.path());
        } else {
            skipped.special.push(e.path());
        }
    }
    Ok(())
}

/// One file: its messages when it reads as mail (one message, or several
/// in an mbox), else itself as an attachment. A file larger than `limit`
/// (limits.max_message_size) is not read, unless it is an mbox: the
/// gateway never checks such a message, and a stray disk image must not
/// fill the memory.
fn read_one(path: &Path, attachment: bool, limit: u64) -> Result<Vec<Item>, ScanCliError> {
    let io = |source| ScanCliError::Io {
        path: path.to_path_buf(),
        source,
    };
    // A FIFO would block the read until something writes to it, a device
    // read forever: only a regular file is read (walkZ 9).
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(ScanCliError::Usage(format!(
            "{}: not a regular file (a FIFO, socket or device): not read",
            path.display()
        )));
    }
    let size = meta.len();
    if size > limit && (attachment || !is_mbox(path).map_err(io)?) {
        return Err(ScanCliError::TooLarge {
            path: path.to_path_buf(),
            size,
            limit,
        });
    }
    let bytes = std::fs::read(path).map_err(io)?;
    let name = path.display().to_string();
    let is_mail = bytes.starts_with(b"From ") || mail_header(&bytes).is_some_and(|h| h.mail);
    if attachment || !is_mail {
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        return Ok(vec![Item {
            name,
            message: as_attachment(&file_name, &bytes),
        }]);
    }
    if !bytes.starts_with(b"From ") {
        return Ok(vec![Item {
            name,
            message: bytes,
        }]);
    }
    let sources = super::spam_cli::messages(std::slice::from_ref(&path.to_path_buf()))
        .map_err(|e| ScanCliError::Usage(e.to_string()))?;
    Ok(sources
        .into_iter()
        .map(|s| Item {
            name: s.name,
            message: s.bytes,
        })
        .collect())
}

/// Whether the file starts as an mbox does ("From ").
fn is_mbox(path: &Path) -> std::io::Result<bool> {
    use std::io::Read;
    let mut head = [0u8; 5];
    let mut f = std::fs::File::open(path)?;
    let mut got = 0;
    while got < head.len() {
        match f.read(&mut head[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(&head[..got] == b"From ")
}

/// A message whose one part is `data`, attached under `file_name` as
/// `application/octet-stream` (what a mail client declares for a file it
/// does not know), base64-encoded as clients send it.
fn as_attachment(file_name: &str, data: &[u8]) -> Vec<u8> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(data);
    let boundary = "=_mailward-scan-boundary-7d3c1e";
    let param = filename_param(file_name);
    let mut m = format!(
        "From: <>\r\nSubject: mailward scan\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n\
         --{boundary}\r\nContent-Type: application/octet-stream; {name}\r\n\
         Content-Disposition: attachment; {param}\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n",
        name = param.replacen("filename", "name", 1),
    );
    for line in encoded.as_bytes().chunks(76) {
        m.push_str(&String::from_utf8_lossy(line));
        m.push_str("\r\n");
    }
    m.push_str(&format!("--{boundary}--\r\n"));
    m.into_bytes()
}

/// `filename="NAME"`, or RFC 2231's `filename*=utf-8''NAME` for a name a
/// quoted string cannot carry (non-ASCII, quotes, control characters).
fn filename_param(name: &str) -> String {
    let plain = name
        .chars()
        .all(|c| c.is_ascii() && !c.is_ascii_control() && c != '"' && c != '\\');
    if plain {
        return format!("filename=\"{name}\"");
    }
    let mut v = String::from("filename*=utf-8''");
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            v.push(char::from(b));
        } else {
            v.push_str(&format!("%{b:02X}"));
        }
    }
    v
}

/// What the session does with a message's lines over 998 octets
/// (`limits.long_lines`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LongLineFate {
    /// It has none.
    None,
    /// The message is refused at the end of DATA (`"refuse"`): how many
    /// such lines, the longest (octets without the line end).
    Refused { lines: u32, longest: usize },
    /// They are split before the checks (`"split"`): how many.
    Split(u32),
}

/// The message as DATA keeps it when its long lines are split (None: as
/// it is), and what becomes of its long lines. The file goes through the
/// session's own reader of DATA, dot-stuffed as a client sends it.
fn long_lines(message: &[u8], mode: LongLines) -> (Option<Vec<u8>>, LongLineFate) {
    use crate::smtp::data::Assembler;
    let mut asm = Assembler::with_long_lines(u64::MAX, mode);
    let mut stuffed = Vec::new();
    for line in message.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b".") {
            stuffed.clear();
            stuffed.push(b'.');
            stuffed.extend_from_slice(line);
            asm.line(&stuffed);
        } else {
            asm.line(line);
        }
    }
    let m = asm.finish();
    if m.long_line {
        let (lines, longest) = (m.long_lines, m.longest);
        (None, LongLineFate::Refused { lines, longest })
    } else if m.split() > 0 {
        let lines = m.split();
        (Some(m.body), LongLineFate::Split(lines))
    } else {
        (None, LongLineFate::None)
    }
}

/// The checks' answer for one message and group.
struct Verdict<'a> {
    status: Option<AvStatus>,
    report: &'a Report,
    null_sender: bool,
    fate: LongLineFate,
}

impl Verdict<'_> {
    /// The `gateway:` line for this group: always for a message refused
    /// for its lines, else for a finding or lines split.
    fn gateway(&self, p: &Partition) -> Option<String> {
        let split = match self.fate {
            LongLineFate::Refused { lines, longest } => {
                return Some(format!(
                    "refused in the session ({}; {lines} line(s), the longest {longest} octets; limits.long_lines = \"split\" would split them)",
                    crate::smtp::data::LONG_LINE_REPLY
                ))
            }
            LongLineFate::Split(lines) => lines,
            LongLineFate::None => 0,
        };
        match self.status {
            None => None,
            Some(AvStatus::Clean) if split == 0 => None,
            Some(_) => Some(outcome(p, self.report, self.null_sender, split)),
        }
    }
}

/// "eicar.zip: av/infected" and one line per finding.
/// Names from the message (an attachment's, an archive member's path) and
/// from the disk are written escaped as the log writes them (walkBO F2: a
/// sender's line break started a fake `other.eml: av/clean` line, and a
/// U+202E showed `photo<U+202E>gpj.scr` as "photorcs.jpg").
fn text_line(item: &Item, p: &Partition, verdict: &Verdict<'_>, groups: usize) -> String {
    let mut line = escaped(&item.name);
    if groups > 1 || !p.group.is_empty() {
        line.push_str(&format!(" (group {})", p.label()));
    }
    match verdict.status {
        None => line.push_str(": not checked (check_av = false in this group)"),
        Some(s) => {
            line.push_str(&format!(": av/{}", s.as_str()));
            for f in verdict.report.findings_for(&p.group, &p.policy) {
                let (name, path) = (escaped(&f.name), escaped(&f.path));
                line.push_str(&format!("\n  {}: {name} in {path}", kind(f)));
            }
        }
    }
    if let Some(gateway) = verdict.gateway(p) {
        line.push_str(&format!("\n  gateway: {gateway}"));
    }
    line
}

fn escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    crate::ops::syslog::push_escaped(&mut out, text);
    out
}

/// What the gateway would do with the message for this group, from the
/// plan its policy makes (walkZ 10: a group that blocks and one that
/// removes the part printed the same line): "refused in the session
/// (550 ...)", "blocked, not delivered", "delivered, 1 part removed", ...
/// `split`: lines over 998 octets the session splits.
fn outcome(p: &Partition, report: &Report, null_sender: bool, split: u32) -> String {
    use crate::policy::edit::Edit;
    use crate::policy::plan::{decide, Delivery};
    let plan = decide(&p.policy, &p.group, report, true, null_sender);
    let mut what = match &plan.delivery {
        Delivery::Refuse(reply) => format!(
            "refused in the session ({reply}; blocked if the scan outlasts timeouts.scan_in_session)"
        ),
        Delivery::Block => "blocked, not delivered".to_string(),
        Delivery::Deliver => {
            let count = |e: Edit| plan.edits.values().filter(|(x, _)| *x == e).count();
            let (removed, replaced) = (count(Edit::Remove), count(Edit::Placeholder));
            let mut parts = Vec::new();
            if split > 0 {
                parts.push(format!("{split} line(s) longer than 998 octets split"));
            }
            if removed > 0 {
                parts.push(format!("{removed} part(s) removed"));
            }
            if replaced > 0 {
                parts.push(format!("{replaced} part(s) replaced by a notice"));
            }
            if parts.is_empty() {
                "delivered as it came".to_string()
            } else {
                format!("delivered, {}", parts.join(", "))
            }
        }
    };
    if let Some(prefix) = &plan.subject_prefix {
        what.push_str(&format!(", subject marked {prefix:?}"));
    }
    if plan.quarantine.is_some() {
        what.push_str(", a copy quarantined");
    }
    what
}

fn json_line(item: &Item, p: &Partition, verdict: &Verdict<'_>) -> String {
    let (status, report) = (verdict.status, verdict.report);
    let findings: Vec<serde_json::Value> = report
        .findings_for(&p.group, &p.policy)
        .map(|f| {
            serde_json::json!({
                "status": format!("av/{}", f.kind.status().as_str()),
                "name": f.name,
                "path": f.path,
            })
        })
        .collect();
    serde_json::json!({
        "file": item.name,
        "group": p.label(),
        "status": status.map(|s| format!("av/{}", s.as_str())),
        "findings": findings,
        "gateway": match verdict.fate {
            LongLineFate::Refused { .. } => verdict.gateway(p),
            _ => status.map(|_| {
                let split = match verdict.fate {
                    LongLineFate::Split(lines) => lines,
                    _ => 0,
                };
                outcome(p, report, verdict.null_sender, split)
            }),
        },
        "objects": report.objects,
        "bases": report.bases.as_ref().map(|b| b.version.clone()),
        "milliseconds": report.duration.as_millis() as u64,
    })
    .to_string()
}

/// The JSON line of a path that could not be read.
fn unread_line(file: &Path, e: &ScanCliError) -> String {
    serde_json::json!({
        "file": file.display().to_string(),
        "status": "error",
        "error": e.to_string(),
    })
    .to_string()
}

/// A finding's status word, as the verdict header writes it.
fn kind(f: &Finding) -> &'static str {
    f.kind.status().as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg_with_bases(dir: &Path) -> Config {
        let mut cfg = crate::config::parse(crate::config::DEFAULT_TOML, "<test>").unwrap();
        cfg.bases.av = dir.join("av");
        bases::install_default(&cfg.bases.av).unwrap();
        cfg
    }

    const EICAR: &[u8] = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

    fn run(cfg: &Config, paths: &[PathBuf], opts: &Options) -> (Outcome, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let outcome = scan(cfg, paths, opts, &mut out, &mut err).unwrap();
        (
            outcome,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn a_plain_file_is_checked_as_an_attachment_under_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = cfg_with_bases(dir.path());
        let file = dir.path().join("eicar.com");
        std::fs::write(&file, EICAR).unwrap();
        let clean = dir.path().join("notes.txt");
        std::fs::write(&clean, b"nothing to see here\n").unwrap();
        let (outcome, out, err) = run(&cfg, &[file, clean], &Options::default());
        assert_eq!(outcome, Outcome::Found, "{out}{err}");
        let mut lines = out.lines();
        assert!(
            lines.next().unwrap().ends_with("eicar.com: av/infected"),
            "{out}"
        );
        assert!(lines.next().unwrap().contains("infected: "), "{out}");
        assert!(out.contains("notes.txt: av/clean"), "{out}");
        assert!(err.is_empty(), "{err}");
    }

    #[test]
    fn a_message_file_is_checked_as_the_message() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = cfg_with_bases(dir.path());
        let inner = base64::engine::general_purpose::STANDARD.encode(EICAR);
        let msg = format!(
            "From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n\
             --b\r\nContent-Type: application/octet-stream; name=\"test.bin\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{inner}\r\n--b--\r\n"
        );
        let file = dir.path().join("mail.eml");
        std::fs::write(&file, msg).unwrap();
        let (outcome, out, _) = run(
            &cfg,
            std::slice::from_ref(&file),
            &Options {
                json: true,
                ..Options::default()
            },
        );
        assert_eq!(outcome, Outcome::Found);
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["status"], "av/infected", "{out}");
        assert_eq!(v["group"], "default");
        assert!(
            v["findings"][0]["path"]
                .as_str()
                .unwrap()
                .contains("test.bin"),
            "{out}"
        );
        // The same file as an attachment: one object more (the message
        // itself is the attachment's content).
        let (_, out2, _) = run(
            &cfg,
            &[file],
            &Options {
                json: true,
                attachment: true,
                ..Options::default()
            },
        );
        let v2: serde_json::Value = serde_json::from_str(out2.trim()).unwrap();
        assert_eq!(v2["status"], "av/infected", "{out2}");
        assert!(
            v2["findings"][0]["path"]
                .as_str()
                .unwrap()
                .contains("mail.eml"),
            "{out2}"
        );
    }

    #[test]
    fn a_filtered_name_counts_for_the_group_that_filters_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = cfg_with_bases(dir.path());
        cfg.policy.include_by_name = vec![crate::config::Pattern::new("*.exe")];
        let file = dir.path().join("tool.exe");
        std::fs::write(&file, b"MZ not really a program").unwrap();
        let (outcome, out, _) = run(&cfg, &[file], &Options::default());
        assert_eq!(outcome, Outcome::Found);
        assert!(out.contains("tool.exe: av/filtered"), "{out}");
        assert!(out.contains("filtered: name:*.exe in"), "{out}");
        // What the gateway would do (walkZ 10), by the group's actions.
        cfg.policy.action_filtered = crate::config::Action::Placeholder;
        let file = dir.path().join("tool.exe");
        let (_, out, _) = run(&cfg, std::slice::from_ref(&file), &Options::default());
        assert!(
            out.ends_with("\n  gateway: delivered, 1 part(s) replaced by a notice\n"),
            "{out}"
        );
        let json = Options {
            json: true,
            ..Options::default()
        };
        let (_, out, _) = run(&cfg, &[file], &json);
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(
            v["gateway"], "delivered, 1 part(s) replaced by a notice",
            "{out}"
        );
    }

    #[test]
    fn a_name_from_the_message_cannot_start_lines_or_turn_text_around() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = cfg_with_bases(dir.path());
        cfg.policy.include_by_name = vec![crate::config::Pattern::new("*.exe")];
        let msg = "From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n\
             --b\r\nContent-Type: application/octet-stream\r\n\
             Content-Disposition: attachment; filename*=utf-8''run.exe%0Aother.eml%3A%20av%2Fclean%E2%80%AEtxt\r\n\r\n\
             MZ\r\n--b--\r\n";
        let file = dir.path().join("mail.eml");
        std::fs::write(&file, msg).unwrap();
        let (outcome, out, _) = run(&cfg, &[file], &Options::default());
        assert_eq!(outcome, Outcome::Found, "{out}");
        assert!(
            out.contains("filtered: name:*.exe in run.exe\\nother.eml: av/clean\\u{202E}txt"),
            "{out}"
        );
        assert!(!out.contains('\u{202E}'), "{out}");
        assert!(!out.lines().any(|l| l.starts_with("other.eml")), "{out}");
    }

    #[test]
    fn a_missing_path_is_said_and_the_others_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = cfg_with_bases(dir.path());
        let sub = dir.path().join("d/e");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join("a.txt"), b"a").unwrap();
        std::fs::write(dir.path().join("d/b.txt"), b"b").unwrap();
        let (outcome, out, err) = run(
            &cfg,
            &[dir.path().join("nosuch"), dir.path().join("d")],
            &Options::default(),
        );
        assert_eq!(outcome, Outcome::Unchecked);
        assert!(err.contains("nosuch: No such file"), "{err}");
        assert!(
            err.contains(
                "1 file or directory could not be read (named above); 2 message(s) checked"
            ),
            "{err}"
        );
        // Name order, the subdirectory's file where its name sorts.
        let names: Vec<&str> = out.lines().collect();
        assert!(
            names[0].contains("b.txt") && names[1].contains("e/a.txt"),
            "{out}"
        );
    }

    #[test]
    fn links_and_special_files_are_said_and_a_fifo_is_never_opened() {
        // walkZ 9: skipped without a word, and a FIFO named on the command
        // line blocked until killed. walkZ 14: --json said nothing of them.
        let dir = tempfile::tempdir().unwrap();
        let cfg = cfg_with_bases(dir.path());
        let d = dir.path().join("d");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("a.txt"), b"a").unwrap();
        std::os::unix::fs::symlink(d.join("a.txt"), d.join("link.txt")).unwrap();
        let fifo = d.join("fifo");
        nix::unistd::mkfifo(
            &fifo,
            nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
        )
        .unwrap();
        let (outcome, out, err) = run(&cfg, std::slice::from_ref(&d), &Options::default());
        assert_eq!(outcome, Outcome::Clean, "{err}");
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(err.contains("1 symbolic link(s) not followed ("), "{err}");
        assert!(err.contains("link.txt)"), "{err}");
        assert!(
            err.contains("1 special file(s) (FIFO, socket, device) not read ("),
            "{err}"
        );
        // Named on the command line: refused, not opened (this would hang).
        let json = Options {
            json: true,
            ..Options::default()
        };
        let (outcome, out, err) = run(&cfg, &[fifo.clone(), dir.path().join("nosuch")], &json);
        assert_eq!(outcome, Outcome::Unchecked);
        assert!(
            err.contains("not a regular file (a FIFO, socket or device)"),
            "{err}"
        );
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(lines.iter().all(|v| v["status"] == "error"), "{out}");
        assert!(
            lines[1]["error"].as_str().unwrap().contains("No such file"),
            "{out}"
        );
        // A directory of links only: said why nothing was checked.
        let only = dir.path().join("only");
        std::fs::create_dir_all(&only).unwrap();
        std::os::unix::fs::symlink(d.join("a.txt"), only.join("l")).unwrap();
        let (_, _, err) = run(&cfg, &[only], &Options::default());
        assert!(err.contains("1 symbolic link(s) not followed"), "{err}");
        assert!(
            err.contains("the directory holds no regular files"),
            "{err}"
        );
    }

    #[test]
    fn a_file_over_max_message_size_is_not_read_and_is_said() {
        // A stray disk image among saved attachments must not fill the
        // memory: the gateway would refuse such a message anyway.
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = cfg_with_bases(dir.path());
        cfg.limits.max_message_size = crate::config::ByteSize(1024);
        let big = dir.path().join("d/big.img");
        std::fs::create_dir_all(dir.path().join("d")).unwrap();
        std::fs::write(&big, vec![b'x'; 4096]).unwrap();
        std::fs::write(dir.path().join("d/small.com"), EICAR).unwrap();
        let (outcome, out, err) = run(&cfg, &[dir.path().join("d")], &Options::default());
        assert_eq!(outcome, Outcome::Found, "{out}{err}");
        assert!(out.contains("small.com: av/infected"), "{out}");
        assert!(!out.contains("big.img"), "{out}");
        assert!(
            err.contains("big.img: 4096 bytes, more than limits.max_message_size (1024 bytes)"),
            "{err}"
        );
        // An mbox is a collection of messages: it is read whatever its size.
        let mbox = dir.path().join("saved.mbox");
        let mut text = Vec::new();
        for _ in 0..40 {
            text.extend_from_slice(
                b"From a@b Thu Jan  1 00:00:00 2026\nFrom: a@b\nSubject: s\n\nhello\n\n",
            );
        }
        std::fs::write(&mbox, &text).unwrap();
        let (outcome, out, err) = run(&cfg, &[mbox], &Options::default());
        assert_eq!(outcome, Outcome::Clean, "{out}{err}");
        assert_eq!(out.lines().count(), 40, "{out}");
    }

    #[test]
    fn without_installed_bases_the_built_in_set_is_used_and_said() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = crate::config::parse(crate::config::DEFAULT_TOML, "<test>").unwrap();
        cfg.bases.av = dir.path().join("none");
        let file = dir.path().join("x.com");
        std::fs::write(&file, EICAR).unwrap();
        let (outcome, _, err) = run(&cfg, &[file], &Options::default());
        assert_eq!(outcome, Outcome::Found);
        assert!(err.contains("no signature bases installed"), "{err}");
        assert!(
            !dir.path().join("none").exists(),
            "nothing is installed by a check"
        );
    }

    #[test]
    fn odd_file_names_are_carried_in_rfc_2231_form() {
        assert_eq!(filename_param("a b.exe"), "filename=\"a b.exe\"");
        assert_eq!(
            filename_param("Rechnung ä.exe"),
            "filename*=utf-8''Rechnung%20%C3%A4.exe"
        );
        assert_eq!(filename_param("q\"x.exe"), "filename*=utf-8''q%22x.exe");
    }

    /// walkAL 5: a message the session refuses for a line over 998
    /// octets was `av/clean`, exit 0, with no word of the refusal.
    #[test]
    fn a_line_over_998_octets_is_refused_or_split_as_the_session_does() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = cfg_with_bases(dir.path());
        let file = dir.path().join("newsletter.eml");
        let html = format!("<p>{}</p>", "news ".repeat(222));
        assert_eq!(html.len(), 1117);
        std::fs::write(
            &file,
            format!("From: a@example.com\nSubject: news\n\n{html}\n.{html}\nbye\n"),
        )
        .unwrap();
        let (outcome, out, err) = run(&cfg, std::slice::from_ref(&file), &Options::default());
        assert_eq!(outcome, Outcome::Found, "the gateway stops it: {out}{err}");
        assert!(
            out.ends_with(
                "newsletter.eml: av/clean\n  gateway: refused in the session (554 5.6.0 Message \
                 has a line longer than 998 octets (RFC 5322 section 2.1.1); 2 line(s), the \
                 longest 1118 octets; limits.long_lines = \"split\" would split them)\n"
            ),
            "{out}"
        );
        let json = Options {
            json: true,
            ..Options::default()
        };
        let (_, out, _) = run(&cfg, std::slice::from_ref(&file), &json);
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert!(
            v["gateway"]
                .as_str()
                .unwrap()
                .starts_with("refused in the session (554 5.6.0 "),
            "{out}"
        );
        cfg.limits.long_lines = LongLines::Split;
        let (outcome, out, _) = run(&cfg, std::slice::from_ref(&file), &Options::default());
        assert_eq!(outcome, Outcome::Clean, "delivered: {out}");
        assert!(
            out.ends_with(
                "newsletter.eml: av/clean\n  gateway: delivered, 2 line(s) longer than 998 \
                 octets split\n"
            ),
            "{out}"
        );
        // Lines of 998 octets are nobody's business.
        std::fs::write(&file, format!("Subject: ok\n\n{}\n", "y".repeat(998))).unwrap();
        cfg.limits.long_lines = LongLines::Refuse;
        let (outcome, out, _) = run(&cfg, &[file], &Options::default());
        assert_eq!(outcome, Outcome::Clean);
        assert!(!out.contains("gateway:"), "{out}");
    }
}
