//! `mailward spam ...`: learning, forgetting, judging files offline, and
//! moving what was learnt between gateways. These work on the files under
//! `[spam] dir` directly (a lock file keeps two learners apart); a running
//! daemon picks the new learning up within seconds, without a restart.

use crate::check::spam::knowledge::{Knowledge, Part, Unreadable, BASE};
use crate::check::spam::model::{Class, Learnt, Model, ModelError};
use crate::check::spam::store::{Edit, Journalled, Store, Trimmed};
use crate::check::spam::tokens::{unmark, Marks};
use crate::check::spam::{self, Evidence};
use crate::config::{Config, SpamLevel};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SpamCliError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] crate::check::spam::store::StoreError),
    #[error("{0}")]
    Usage(String),
    /// A command line that cannot be run as given (no class to learn, an
    /// unknown `--level` or `--group`): exit status 2, as for the
    /// arguments the parser refuses.
    #[error("{0}")]
    Args(String),
    /// The site's snapshot cannot be read: what it is, why, and the way
    /// out.
    #[error("{0}")]
    Damaged(String),
    /// `spam check`: PATHs that could not be read (each said on its own
    /// line); the others were judged.
    #[error("{}", unread(*.0, *.1))]
    Unread(usize, usize),
    /// `spam check`: files of the directories given that were empty or could
    /// not be read (each said on its own line, skipped); the others were judged.
    #[error("{0} file(s) of the directories given were empty or could not be read (each named above) and were skipped; the others were judged")]
    Skipped(usize),
    /// `spam status` listed this many problems (each on its own line).
    #[error("spam status lists {0} problem(s)")]
    Problems(usize),
    /// A PATH that cannot be used as given (missing, unreadable, a
    /// directory where a file is wanted): the command, the path, what is
    /// wrong in words and what the command takes (walkAK 8: a bare OS
    /// error said neither).
    #[error("{}", path_text(.command, .path, .what, .takes))]
    Path {
        /// The subcommand ("spam learn"), whose `--help` says more; None
        /// for messages read on another command's behalf.
        command: Option<&'static str>,
        path: PathBuf,
        what: String,
        takes: &'static str,
    },
}

/// What a PATH of messages may be, as the commands that read them say.
const MESSAGE_PATHS: &str = "give a message file, a directory of them, a Maildir folder or an mbox";

/// What [`SpamCliError::Path`] says.
fn path_text(command: &Option<&'static str>, path: &Path, what: &str, takes: &str) -> String {
    match command {
        Some(c) => format!(
            "{c}: {}: {what}; {takes} (see mailward {c} --help)",
            path.display()
        ),
        None => format!("{}: {what}; {takes}", path.display()),
    }
}

/// A failure on `path` in words: the OS's message without its number.
fn in_words(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied to this user".into(),
        std::io::ErrorKind::IsADirectory => "a directory, not a file".into(),
        _ => {
            let text = e.to_string();
            let text = match text.rfind(" (os error ") {
                Some(at) => text[..at].to_string(),
                None => text,
            };
            let mut c = text.chars();
            match c.next() {
                Some(first) => first.to_lowercase().chain(c).collect(),
                None => text,
            }
        }
    }
}

/// The error of a PATH of messages that cannot be read ([`MESSAGE_PATHS`]).
fn unreadable<'a>(
    command: Option<&'static str>,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> SpamCliError + 'a {
    move |e| SpamCliError::Path {
        command,
        path: path.to_path_buf(),
        what: in_words(&e),
        takes: MESSAGE_PATHS,
    }
}

impl SpamCliError {
    /// The command's exit status: 2 for a command line that cannot be run
    /// as given ([`SpamCliError::Args`]; the doc's "usage error"), 1 for
    /// anything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            SpamCliError::Args(_) => 2,
            _ => 1,
        }
    }
}

/// The warning for a file with NUL bytes, which SMTP never carries (a
/// binary given by mistake), said by `spam check` and `spam learn` alike;
/// `then` is what was done with it all the same.
fn holds_nul(name: &str, then: &str) -> String {
    format!(
        "mailward: warning: {name}: holds NUL bytes, so it is not a mail message as SMTP carries one; {then}"
    )
}

/// What [`SpamCliError::Unread`] says: nothing was judged when no PATH
/// could be read (walkR finding 14: "the others were judged" of none).
fn unread(n: usize, of: usize) -> String {
    if n == of {
        format!("{n} of {of} path(s) could not be read; nothing was judged")
    } else {
        format!("{n} of {of} path(s) could not be read; the others were judged")
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpamCliError + '_ {
    move |source| SpamCliError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One message read from a PATH: where it came from, and its bytes.
pub struct Source {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// The messages of PATHs: a file of one message (it may start with an mbox
/// `From ` line), an mbox of several, a directory of such files (sorted
/// by name, not recursive), or a Maildir folder (a directory with `cur/`
/// and `new/`: the files of both). An error when the PATHs together give
/// no message because their directories hold none.
/// A file of a directory that cannot be read (or is empty) is an error
/// here too: the callers that go on without it use [`gather`].
pub fn messages(paths: &[PathBuf]) -> Result<Vec<Source>, SpamCliError> {
    let (out, skipped) = messages_for(None, paths)?;
    match skipped.into_iter().next() {
        Some(first) => Err(first),
        None => Ok(out),
    }
}

/// [`messages`] for `command`, which a PATH that cannot be read names,
/// with the files of its directories that were skipped ([`gather`]).
fn messages_for(
    command: Option<&'static str>,
    paths: &[PathBuf],
) -> Result<(Vec<Source>, Vec<SpamCliError>), SpamCliError> {
    let mut g = gather(command, paths)?;
    if g.messages.is_empty() && !g.skipped.is_empty() {
        return Err(g.skipped.swap_remove(0));
    }
    if g.messages.is_empty() && !g.empty.is_empty() {
        return Err(no_messages(&g.empty));
    }
    Ok((g.messages, g.skipped))
}

/// What PATHs gave ([`gather`]).
struct Gathered {
    messages: Vec<Source>,
    /// The directories among them that hold no file.
    empty: Vec<PathBuf>,
    /// Files of those directories that could not be read or are empty,
    /// each with what is wrong.
    skipped: Vec<SpamCliError>,
}

/// The messages of PATHs ([`messages`]), the directories among them
/// that give none, and the files of a directory that could not be used:
/// an empty directory among several PATHs (a Maildir's `new/` once its
/// mail was read) does not stop the others (walkR finding 6), nor does one
/// empty or unreadable file stop its directory (walkAV F1: a Junk folder
/// with one 0-byte file, from a crashed delivery, could not be learnt at
/// all). A PATH given as a file must be read.
fn gather(command: Option<&'static str>, paths: &[PathBuf]) -> Result<Gathered, SpamCliError> {
    let mut g = Gathered {
        messages: Vec::new(),
        empty: Vec::new(),
        skipped: Vec::new(),
    };
    for p in paths {
        if p.as_os_str() == STDIN {
            read_file(command, p, &mut g.messages)?;
            continue;
        }
        let meta = std::fs::metadata(p).map_err(unreadable(command, p))?;
        if meta.is_dir() {
            let files = message_files(command, p)?;
            if files.is_empty() {
                g.empty.push(p.clone());
            }
            for f in files {
                if let Err(e) = read_file(command, &f, &mut g.messages) {
                    g.skipped.push(e);
                }
            }
        } else {
            read_file(command, p, &mut g.messages)?;
        }
    }
    Ok(g)
}

/// The error of PATHs whose every file was skipped (each said above).
fn nothing_read(skipped: usize) -> SpamCliError {
    SpamCliError::Usage(format!(
        "none of the {skipped} file(s) given could be used (each is named above)"
    ))
}

/// Says on `err` which files of the directories were skipped, when the
/// command goes on with the others.
fn tell_skipped(skipped: &[SpamCliError], err: &mut dyn Write) {
    for e in skipped {
        let _ = writeln!(err, "mailward: warning: {e}; skipped");
    }
}

/// The files of a directory, sorted by name; of a Maildir folder (`cur/`
/// and `new/` in it, as Dovecot and Postfix keep `~/Maildir/.Junk/`),
/// those of `cur/` and then `new/`, not its own (index and UID lists).
fn message_files(command: Option<&'static str>, dir: &Path) -> Result<Vec<PathBuf>, SpamCliError> {
    let maildir = ["cur", "new"].iter().all(|d| dir.join(d).is_dir());
    let dirs = if maildir {
        vec![dir.join("cur"), dir.join("new")]
    } else {
        vec![dir.to_path_buf()]
    };
    let mut all = Vec::new();
    for d in dirs {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&d)
            .map_err(unreadable(command, &d))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|f| f.is_file())
            .collect();
        files.sort();
        all.extend(files);
    }
    Ok(all)
}

/// The error of PATHs that gave no message, their directories holding
/// none: an empty (or mistyped) directory would otherwise learn "0 new
/// message(s)" without a word (walkI finding 22).
fn no_messages(empty: &[PathBuf]) -> SpamCliError {
    SpamCliError::Usage(match empty {
        [one] => format!("{}: the directory holds no message files", one.display()),
        many => format!(
            "{}: none of these directories holds a message file",
            many.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })
}

/// Says on `err` which directories held no message, when other PATHs did.
fn tell_empty(empty: &[PathBuf], err: &mut dyn Write) {
    for d in empty {
        let _ = writeln!(
            err,
            "mailward: {}: the directory holds no message files; the other PATHs are used",
            d.display()
        );
    }
}

/// The PATH that names standard input (walkAV F11: a mail client's "pipe
/// message", `doveadm fetch ... | mailward spam check -`).
pub const STDIN: &str = "-";

fn read_file(
    command: Option<&'static str>,
    path: &Path,
    out: &mut Vec<Source>,
) -> Result<(), SpamCliError> {
    let (bytes, name) = if path.as_os_str() == STDIN {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut bytes)
            .map_err(unreadable(command, path))?;
        (bytes, "<stdin>".to_string())
    } else {
        (
            std::fs::read(path).map_err(unreadable(command, path))?,
            path.display().to_string(),
        )
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        // Learnt, it would count as a message (walkI 22).
        return Err(SpamCliError::Usage(format!(
            "{name}: the file is empty, not a message"
        )));
    }
    if !bytes.starts_with(b"From ") {
        out.push(Source { name, bytes });
        return Ok(());
    }
    // mbox: a message starts at a "From SENDER DATE" line after an empty
    // line. Bodies often hold unescaped "From " lines (the SpamAssassin
    // corpus does), so a line counts only with the asctime date that
    // delivery agents write after the sender.
    static SEPARATOR: std::sync::LazyLock<Option<regex::bytes::Regex>> =
        std::sync::LazyLock::new(|| {
            regex::bytes::Regex::new(
                r"\nFrom \S+ +[A-Z][a-z]{2} [A-Z][a-z]{2} +\d{1,2} \d{1,2}:\d{2}(:\d{2})? ",
            )
            .ok()
        });
    let mut starts = vec![0usize];
    if let Some(sep) = SEPARATOR.as_ref() {
        for m in sep.find_iter(&bytes) {
            let at = m.start();
            if at > 0 && bytes[at - 1] == b'\n' || at > 1 && &bytes[at - 2..at] == b"\n\r" {
                starts.push(at + 1);
            }
        }
    }
    let n = starts.len();
    for (k, &s) in starts.iter().enumerate() {
        let e = starts.get(k + 1).copied().unwrap_or(bytes.len());
        let chunk = &bytes[s..e];
        // Without the "From " line itself.
        let body = match chunk.iter().position(|b| *b == b'\n') {
            Some(nl) => &chunk[nl + 1..],
            None => continue,
        };
        out.push(Source {
            name: if n == 1 {
                name.clone()
            } else {
                format!("{name}#{}", k + 1)
            },
            bytes: body.to_vec(),
        });
    }
    Ok(())
}

/// What a learn or forget run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub new: usize,
    pub already: usize,
    /// Of `already`, those the installed base holds as the same class:
    /// not learnt into the site again, where they would count twice
    /// (walkAV F9).
    pub in_base: usize,
    pub moved: usize,
    /// Of `moved`, those taught again as the base holds them: the site's
    /// lesson to the contrary is taken back.
    pub back_to_base: usize,
    pub forgotten: usize,
    pub unknown: usize,
}

impl Tally {
    /// The line `spam learn` prints.
    pub fn learnt_summary(&self) -> String {
        let in_base = match self.in_base {
            0 => String::new(),
            n => format!(" ({n} of them in the base)"),
        };
        // (Said beside the count it belongs to: "0 already known (1 of
        // them in the base)" read as one of none, walkBW 2.)
        let back = match self.back_to_base {
            0 => String::new(),
            n => format!(" ({n} back to the class the base holds them in)"),
        };
        format!(
            "Learnt {} new message(s); {} already known{in_base}; {} moved to the other class{back}.",
            self.new, self.already, self.moved
        )
    }

    /// The line `spam forget` prints.
    pub fn forgot_summary(&self) -> String {
        format!(
            "Forgot {} message(s); {} {} not learnt.",
            self.forgotten,
            self.unknown,
            if self.unknown == 1 { "was" } else { "were" }
        )
    }
}

fn progress(done: usize, total: usize, err: &mut dyn Write) {
    if done.is_multiple_of(500) || done == total {
        let _ = writeln!(err, "  {done}/{total} messages");
    }
}

/// Learns `spam` and `ham` into the site model.
pub fn learn(
    cfg: &Config,
    spam: &[PathBuf],
    ham: &[PathBuf],
    err: &mut dyn Write,
) -> Result<Tally, SpamCliError> {
    if spam.is_empty() && ham.is_empty() {
        return Err(SpamCliError::Args(
            "say what to learn: --spam PATH... and/or --ham PATH...".into(),
        ));
    }
    let _owner = crate::ops::privileges::OwnedByDataDir::new(&cfg.spam.dir, &cfg.server.data_dir);
    let store = site_store(cfg)?;
    // A dir that will be refused is said before the messages are read
    // (walkBG 1: a large folder read for minutes, then refused).
    if let Some(refused) = dir_refused(cfg).filter(|_| !store.is_shared()) {
        return Err(refused);
    }
    // The messages are read and tokenised first, outside the store's lock
    // (and once, even when a shared store makes the change run again).
    let mut learning = Vec::new();
    let mut read = Vec::new();
    let mut empty = Vec::new();
    let mut skipped = 0;
    for (paths, class) in [(spam, Class::Spam), (ham, Class::Ham)] {
        if paths.is_empty() {
            continue;
        }
        let g = gather(Some("spam learn"), paths)?;
        empty.extend(g.empty);
        skipped += g.skipped.len();
        tell_skipped(&g.skipped, err);
        read.push((g.messages, class));
    }
    if read.iter().all(|(m, _)| m.is_empty()) {
        if skipped > 0 {
            return Err(nothing_read(skipped));
        }
        if !empty.is_empty() {
            return Err(no_messages(&empty));
        }
    }
    tell_empty(&empty, err);
    let marks = Marks::of(cfg);
    // What the installed base learnt (`Changing::learn_beside_base` in
    // the spam store). A base that cannot be read is the status's
    // problem, not this command's.
    let base_learnt = match Model::read(&cfg.spam.dir.join(BASE)) {
        Ok(Some(base)) => base.learnt,
        _ => Default::default(),
    };
    for (msgs, class) in read {
        let _ = writeln!(
            err,
            "Reading {} message(s) to learn as {}.",
            msgs.len(),
            class.as_str()
        );
        for (i, m) in msgs.iter().enumerate() {
            if spam::is_gtube(&m.bytes) {
                let _ = writeln!(
                    err,
                    "mailward: warning: {}: the GTUBE test message; not learnt (its words are a test's)",
                    m.name
                );
            } else {
                // Said as `spam check` says it (walkAW F21: a binary file
                // given by mistake was learnt without a word), and learnt
                // as given.
                if m.bytes.contains(&0) {
                    let _ = writeln!(
                        err,
                        "{}",
                        holds_nul(
                            &m.name,
                            "learnt anyway (`mailward spam forget` takes it back)"
                        )
                    );
                }
                // As it arrived: not the gateway's marks (walkR finding 7).
                let (digest, tokens) = spam::for_learning(&unmark(&m.bytes, &marks));
                let in_base = base_learnt.get(&digest).copied();
                learning.push((digest, tokens, class, in_base));
            }
            progress(i + 1, msgs.len(), err);
        }
    }
    if !store.is_shared() {
        made_ready(cfg, err)?;
    }
    let _ = writeln!(err, "Learning into {}.", place(cfg, &store));
    let (tally, trimmed) = store
        .update(|model| {
            let mut tally = Tally::default();
            for (digest, tokens, class, in_base) in &learning {
                let as_base = *in_base == Some(*class);
                match model.learn_beside_base(*in_base, *digest, tokens, *class) {
                    Learnt::New => tally.new += 1,
                    Learnt::Already => {
                        tally.already += 1;
                        tally.in_base += usize::from(as_base);
                    }
                    Learnt::Moved => {
                        tally.moved += 1;
                        tally.back_to_base += usize::from(as_base);
                    }
                }
            }
            Edit::when(tally.new + tally.moved > 0, tally)
        })
        .map_err(changing(cfg))?;
    tell_trimmed(cfg, trimmed, err);
    Ok(tally)
}

/// The site's learning store of the configuration.
fn site_store(cfg: &Config) -> Result<Store, SpamCliError> {
    Ok(Store::of(&cfg.spam)?)
}

/// Where a command changes the site's learning, as it says it: "the site
/// store in DIR" (the change goes to `site.journal` there, and
/// `site.model` may not exist yet: walkR finding 14), or the Redis URL.
fn place(cfg: &Config, store: &Store) -> String {
    if store.is_shared() {
        store.describe()
    } else {
        format!("the site store in {}", cfg.spam.dir.display())
    }
}

/// Why `[spam] dir` cannot be made ready for a command that writes it,
/// or None when it is a directory or can be made one: only the last
/// component is made, so that a mistyped `dir` is refused rather than
/// made a tree of directories no gateway reads (walkR finding 12).
fn dir_refused(cfg: &Config) -> Option<SpamCliError> {
    let dir = &cfg.spam.dir;
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => None,
        Ok(_) => Some(not_a_directory(cfg)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = missing_parent(cfg)?;
            Some(SpamCliError::Usage(
                if *dir == cfg.server.data_dir.join("spam") {
                    // `dir` left to its default: the data directory is what is
                    // missing (the daemon makes it at its start).
                    format!(
                        "{}: no such directory, and the data directory {} does not exist either: \
                     check server.data_dir in {}, or start the daemon once (it creates it)",
                        dir.display(),
                        parent.display(),
                        cfg.origin
                    )
                } else {
                    format!(
                    "{}: no such directory, and its parent {} does not exist either: check spam.dir \
                     in {} (only the last directory of it is created)",
                    dir.display(),
                    parent.display(),
                    cfg.origin
                )
                },
            ))
        }
        Err(e) => Some(io(dir)(e)),
    }
}

/// `[spam] dir` made ready for a command that writes it: a directory
/// that exists, or one made now (and said) when [`dir_refused`] allows.
fn made_ready(cfg: &Config, err: &mut dyn Write) -> Result<(), SpamCliError> {
    if let Some(refused) = dir_refused(cfg) {
        return Err(refused);
    }
    let dir = &cfg.spam.dir;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir(dir).map_err(io(dir))?;
    if cfg.spam.store.is_empty() {
        let _ = writeln!(
            err,
            "Created {} (spam.dir): nothing was learnt there before.",
            dir.display()
        );
    } else {
        // The site's learning goes to Redis; the directory holds the
        // base and its backup (walkAK 4: "nothing was learnt there"
        // read as the import landing in the wrong place).
        let _ = writeln!(
            err,
            "Created {} (spam.dir, for the base; the site's learning is in {}).",
            dir.display(),
            Store::of(&cfg.spam)
                .map(|s| s.describe())
                .unwrap_or_else(|_| "spam.store".to_string())
        );
    }
    Ok(())
}

/// The missing parent of `[spam] dir`, for which `spam learn` refuses to
/// make the directory: with `dir` left to its default, the data
/// directory (walkBG 1: `spam status` said "`spam learn` creates it"
/// there while `spam learn` refused).
fn missing_parent(cfg: &Config) -> Option<PathBuf> {
    let parent = cfg
        .spam
        .dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    (!parent.is_dir()).then(|| parent.to_path_buf())
}

/// The error of a `[spam] dir` that is a file.
fn not_a_directory(cfg: &Config) -> SpamCliError {
    SpamCliError::Usage(format!(
        "{}: is not a directory (spam.dir in {})",
        cfg.spam.dir.display(),
        cfg.origin
    ))
}

/// `[spam] dir` for a command that only changes what was learnt there
/// (`forget`, `fold`, `rollback`): it must exist; none is made.
fn existing(cfg: &Config) -> Result<(), SpamCliError> {
    let dir = &cfg.spam.dir;
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(not_a_directory(cfg)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(SpamCliError::Usage(format!(
            "{} does not exist: nothing was learnt there (spam.dir in {})",
            dir.display(),
            cfg.origin
        ))),
        Err(e) => Err(io(dir)(e)),
    }
}

/// The way out of a damaged snapshot, as a sentence's end: a file is moved
/// away, a Redis key deleted (walkR finding 5), and the last export
/// imported.
fn snapshot_step(shared: bool) -> &'static str {
    if shared {
        "to start again from your last export, delete the learning's keys on that Redis \
         (`redis-cli DEL mailward:spam:site mailward:spam:journal mailward:spam:generation`, \
         with its -h, -p and -n) and `mailward spam import` the export; every gateway reads it \
         within seconds"
    } else {
        Part::Site.next_step()
    }
}

/// A damaged snapshot as the commands say it: which snapshot, why, and
/// what to do (walkR finding 14: the path and the reason alone left the
/// admin guessing); None for any other error.
fn damaged_snapshot(e: &crate::check::spam::store::StoreError, shared: bool) -> Option<String> {
    match e {
        crate::check::spam::store::StoreError::Model(ModelError::Invalid { path, problem }) => {
            Some(format!(
                "the snapshot {} cannot be read (not a Mailward spam model: {problem}); {}",
                if shared {
                    format!("of {} (mailward:spam:site)", path.display())
                } else {
                    path.display().to_string()
                },
                snapshot_step(shared)
            ))
        }
        _ => None,
    }
}

/// A store error of a command that changes the site's learning: a damaged
/// snapshot with the way out.
fn changing(cfg: &Config) -> impl Fn(crate::check::spam::store::StoreError) -> SpamCliError + '_ {
    move |e| match damaged_snapshot(&e, !cfg.spam.store.is_empty()) {
        Some(said) => SpamCliError::Damaged(said),
        None => SpamCliError::Store(e),
    }
}

/// Says on the terminal what a change forgot to stay within `[spam]
/// max_tokens` and `max_learnt`, and what it dropped of a damaged journal
/// (the daemon's log has them, which the commands do not show): an
/// operator teaching a large corpus by hand should not have to find it in
/// `spam status`.
fn tell_trimmed(cfg: &Config, trimmed: Trimmed, err: &mut dyn Write) {
    if trimmed.journal > 0 {
        // A torn file record was never read by a gateway; a damaged Redis
        // element may have been, before it was damaged (walkAK 5).
        let counted = if cfg.spam.store.is_empty() {
            "; no gateway had counted them"
        } else {
            ""
        };
        let _ = writeln!(
            err,
            "Dropped {} byte(s) of the journal after its last intact record (a record cut short or damaged, and what followed it{counted}).",
            trimmed.journal
        );
    }
    if trimmed.tokens > 0 {
        let _ = writeln!(
            err,
            "The site's learning passed spam.max_tokens ({}): the {} rarest tokens were forgotten.",
            cfg.spam.max_tokens, trimmed.tokens
        );
    }
    if trimmed.learnt > 0 {
        let _ = writeln!(
            err,
            "The site's learning passed spam.max_learnt ({}): {} learnt messages' identities were let go; their counts stay, but `spam forget` no longer finds them.",
            cfg.spam.max_learnt, trimmed.learnt
        );
    }
}

/// Forgets messages learnt before.
pub fn forget(cfg: &Config, paths: &[PathBuf], err: &mut dyn Write) -> Result<Tally, SpamCliError> {
    let _owner = crate::ops::privileges::OwnedByDataDir::new(&cfg.spam.dir, &cfg.server.data_dir);
    if cfg.spam.store.is_empty() {
        existing(cfg)?;
    }
    let Gathered {
        messages: msgs,
        empty,
        skipped,
    } = gather(Some("spam forget"), paths)?;
    tell_skipped(&skipped, err);
    if msgs.is_empty() && !skipped.is_empty() {
        return Err(nothing_read(skipped.len()));
    }
    if msgs.is_empty() && !empty.is_empty() {
        return Err(no_messages(&empty));
    }
    tell_empty(&empty, err);
    let marks = Marks::of(cfg);
    let forgetting: Vec<(u64, Vec<u64>)> = msgs
        .iter()
        .map(|m| spam::for_learning(&unmark(&m.bytes, &marks)))
        .collect();
    let (tally, trimmed) = site_store(cfg)?
        .update(|model| {
            let mut tally = Tally::default();
            for (digest, tokens) in &forgetting {
                if model.forget(*digest, tokens) {
                    tally.forgotten += 1;
                } else {
                    tally.unknown += 1;
                }
            }
            Edit::when(tally.forgotten > 0, tally)
        })
        .map_err(changing(cfg))?;
    // Only when the limits were lowered since the last change.
    tell_trimmed(cfg, trimmed, err);
    Ok(tally)
}

/// Judges one message as the gateway's default group would (rules,
/// heuristics, classifier; no network tests).
pub fn check_one(k: &Knowledge, raw: &[u8]) -> Evidence {
    // The gateway adds its Received field, dated now, on top of every
    // message, so a message without a header block (a first line that is
    // empty, or not a field) still has one there and gets the MISSING_*
    // tests; a file here would have none and get none (walkI finding 22).
    // A message without a Received field (composed, or saved before it was
    // sent) gets one dated now too: DATE_IN_FUTURE compares the Date with
    // the topmost Received, and the gateway's fired where `spam check`
    // had nothing to compare with (walkAB finding 7). A message that has
    // one (a delivered copy) is judged against its own.
    let with_received;
    let needs_received = match mail_parser::MessageParser::default().parse_headers(raw) {
        None => true,
        Some(m) => m.header_raw("received").is_none(),
    };
    let raw = if needs_received {
        let field = format!(
            "Received: by localhost (mailward spam check); {}\r\n",
            chrono::Utc::now().to_rfc2822()
        );
        with_received = [field.as_bytes(), raw].concat();
        &with_received[..]
    } else {
        raw
    };
    let parsed = crate::check::parse(raw);
    spam::examine(k, raw, parsed.as_ref(), None)
}

/// `spam check`: one line (or JSON object) per message; with `clues` > 0
/// the classifier's most telling tokens of each, by their text.
///
/// A PATH that cannot be read is said on `err` and the others are still
/// judged; the result is then [`SpamCliError::Unread`].
/// The level `spam check` judges at: `--level`, else the level of
/// `--group NAME`, else `[policy] spam_level` (walkI 22: a group's users
/// complain about verdicts at their group's level).
pub fn judging_level(
    cfg: &Config,
    level: Option<&str>,
    group: Option<&str>,
) -> Result<SpamLevel, SpamCliError> {
    if let Some(text) = level {
        return SpamLevel::parse(text).map_err(|e| SpamCliError::Args(format!("--level: {e}")));
    }
    match group {
        None => Ok(cfg.policy.spam_level),
        Some(name) => cfg
            .group
            .get(name)
            .map(|g| g.effective(&cfg.policy).spam_level)
            .ok_or_else(|| {
                let known: Vec<&str> = cfg.group.keys().map(String::as_str).collect();
                SpamCliError::Args(if known.is_empty() {
                    format!("--group {name}: the configuration has no [group.*] section")
                } else {
                    format!(
                        "--group {name}: no [group.{name}] in the configuration (groups: {})",
                        known.join(", ")
                    )
                })
            }),
    }
}

#[allow(clippy::too_many_arguments)]
pub fn check(
    cfg: &Config,
    paths: &[PathBuf],
    json: bool,
    clues: usize,
    level: SpamLevel,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), SpamCliError> {
    let loaded = Knowledge::load_parts(cfg, true);
    if let Some(p) = &loaded.rules {
        return Err(SpamCliError::Usage(format!(
            "cannot load the spam knowledge: {p}"
        )));
    }
    // Learning that cannot be read (a Redis down, a damaged site.model):
    // judged as the gateway judges now, without the classifier and the
    // rules at double weight, rather than not at all (walkR finding 4).
    for u in &loaded.unreadable {
        let _ = writeln!(
            err,
            "mailward: warning: {u}: judging without the classifier, as the gateway does meanwhile (the rules weigh double)"
        );
    }
    let k = loaded.knowledge;
    let unavailable = k.classifier.unavailable;
    // active, abstaining (too little learnt: the rules weigh double) or
    // unavailable, on every --json object.
    let readiness = k.classifier.readiness().as_str();
    // Asked for clues the classifier cannot give: why there are none
    // (walkR finding 14: the verdict came alone, without a word).
    let no_clues = (clues > 0).then(|| no_clues(&k.classifier)).flatten();
    let mut unread = 0;
    let mut skipped = 0;
    let mut judged = Vec::new();
    for p in paths {
        match messages_for(Some("spam check"), std::slice::from_ref(p)) {
            Ok((m, passed_over)) => {
                judged.extend(m);
                skipped += passed_over.len();
                tell_skipped(&passed_over, err);
            }
            Err(e) => {
                unread += 1;
                let _ = writeln!(err, "mailward: {e}");
            }
        }
    }
    let marks = Marks::of(cfg);
    for m in judged {
        // A binary file given by mistake is judged like anything else (the
        // gateway would), but said (walkAV F3: an ELF file came out
        // as/probable without a word). SMTP carries no NUL.
        if m.bytes.contains(&0) {
            let _ = writeln!(err, "{}", holds_nul(&m.name, "judged anyway"));
        }
        // Judged as it arrived, as it is learnt: a message from a Junk
        // folder carries the gateway's marks (walkR finding 7).
        let raw = unmark(&m.bytes, &marks);
        let e = check_one(&k, &raw);
        let status = e.status(level);
        let telling = match clues {
            0 => Vec::new(),
            n => named_clues(&k, &raw, n),
        };
        let line = if json {
            let mut v = serde_json::json!({
                "file": m.name,
                "status": format!("as/{}", status.as_str()),
                "score": e.shown_score(),
                "rating": e.rating(),
                "tests": e.test_names(),
                // What each test counted for, as the text line and the log
                // say it (walkAV F2: a script could not tell why a score
                // was what it was, the rules weighing double while the
                // classifier is silent).
                "weights": e
                    .hits
                    .iter()
                    .map(|h| (h.name.clone(), ((h.weight * 100.0).round() / 100.0).into()))
                    .collect::<serde_json::Map<String, serde_json::Value>>(),
                "probability": e.probability,
                "formal": e.formal,
                "classifier": readiness,
            });
            if let Some(why) = &no_clues {
                v["no_clues"] = why.as_str().into();
            }
            if clues > 0 {
                v["clues"] = telling
                    .iter()
                    .map(|(c, name)| {
                        serde_json::json!({
                            "token": name,
                            "probability": (c.probability * 10_000.0).round() / 10_000.0,
                            "spam": c.spam,
                            "ham": c.ham,
                        })
                    })
                    .collect();
            }
            v.to_string()
        } else {
            let mut line = format!(
                "{}: as/{} score={:.1} rating={}",
                m.name,
                status.as_str(),
                e.shown_score(),
                e.rating(),
            );
            // Why it is formal, as the log line and `--json` say it.
            match e.formal {
                Some(why) if why.contains(' ') => line.push_str(&format!(" formal={why:?}")),
                Some(why) => line.push_str(&format!(" formal={why}")),
                None => {}
            }
            // An automatic message scored over the probable threshold is
            // judged by its score: `as/spam ... formal=...` alone read as a
            // contradiction (walkBW 4).
            if e.formal.is_some()
                && matches!(
                    status,
                    crate::check::SpamStatus::Spam
                        | crate::check::SpamStatus::Probable
                        | crate::check::SpamStatus::Blacklisted
                )
            {
                line.push_str(" (automatic, but over the probable threshold: judged by its score)");
            }
            if !e.hits.is_empty() {
                line.push(' ');
                line.push_str(&e.weighed());
            }
            if unavailable {
                line.push_str(" (classifier unavailable)");
            }
            for (c, name) in &telling {
                line.push_str(&format!(
                    "\n  {:.4} spam={} ham={} {name}",
                    c.probability, c.spam, c.ham
                ));
            }
            if let Some(why) = &no_clues {
                line.push_str(&format!("\n  {why}"));
            }
            line
        };
        if writeln!(out, "{line}").is_err() {
            break;
        }
    }
    match (unread, skipped) {
        (0, 0) => Ok(()),
        (0, n) => Err(SpamCliError::Skipped(n)),
        (n, _) => Err(SpamCliError::Unread(n, paths.len())),
    }
}

/// Why the classifier gives no clues, when it cannot (None: it can).
fn no_clues(c: &spam::classifier::Classifier) -> Option<String> {
    use spam::classifier::Readiness;
    match c.readiness() {
        Readiness::Active => None,
        Readiness::Abstaining => Some(format!(
            "no clues: the classifier abstains (learnt {} spam and {} ham, scores from {} of each)",
            c.spam_messages(),
            c.ham_messages(),
            c.min_learnt
        )),
        Readiness::Unavailable => {
            Some("no clues: the classifier is unavailable (its learning cannot be read)".into())
        }
    }
}

/// The `n` most telling clues of a message with their tokens' texts
/// (none while the classifier abstains).
fn named_clues(k: &Knowledge, raw: &[u8], n: usize) -> Vec<(spam::classifier::Clue, String)> {
    let tokens = spam::named_tokens(raw);
    let clues = k
        .classifier
        .clues(tokens.iter(), |t| tokens.is_structure(t))
        .unwrap_or_default();
    clues
        .into_iter()
        .take(n)
        .map(|c| {
            let name = tokens.name(c.token).unwrap_or("?").to_string();
            (c, name)
        })
        .collect()
}

/// `spam status`. The site's counts are what can be read of the store (a
/// damaged journal's records before the damage, as gateways count them
/// once it is folded), and `null` when it cannot be read at all: zeros
/// would say the learning is lost (walkI findings 15 and 16).
pub fn status(cfg: &Config) -> serde_json::Value {
    let loaded = Knowledge::load_parts(cfg, false);
    // A model that cannot be read, with the way out (walkR findings 1 and
    // 14: the path and the reason alone left the admin guessing).
    let with_step = |u: &Unreadable| match u.part {
        Part::Store => u.to_string(),
        _ => format!("{u}; {}", u.next_step()),
    };
    // A mistyped `[spam] dir` is not a healthy empty store (walkR
    // finding 12): one that does not exist is said so; a file is one
    // problem (not one per file that cannot be read under it).
    let dir_kind = std::fs::metadata(&cfg.spam.dir).map(|m| m.is_dir());
    let dir_exists = dir_kind.is_ok();
    let dir_is_file = dir_kind.as_ref().is_ok_and(|is_dir| !is_dir);
    // Which parts cannot be read, each with its problem below: what the
    // text form goes by, not the wording of a problem.
    let mut unreadable_parts: Vec<Part> = Vec::new();
    if !dir_is_file {
        for u in &loaded.unreadable {
            if !unreadable_parts.contains(&u.part) {
                unreadable_parts.push(u.part);
            }
        }
    }
    let mut problems: Vec<String> = loaded
        .rules
        .iter()
        .cloned()
        .chain(
            loaded
                .unreadable
                .iter()
                .filter(|_| !dir_is_file)
                .map(with_step),
        )
        .collect();
    let mut k = loaded.knowledge;
    let store = Store::of(&cfg.spam);
    // The store is read once: a Redis that does not answer costs one
    // timeout, not one per question.
    let shared = store.as_ref().is_ok_and(|s| s.is_shared());
    // Why the store cannot be read, as a problem.
    let mut unreadable = None;
    if dir_is_file {
        problems.push(not_a_directory(cfg).to_string());
    }
    // With a shared store the site's learning is in Redis: `spam learn`
    // needs no dir then.
    let dir_parent_missing = missing_parent(cfg).filter(|_| !dir_exists && !dir_is_file && !shared);
    if dir_parent_missing.is_some() {
        // walkAK 7: "`spam learn` creates it" while `spam learn` refuses a
        // dir whose parent is missing: a mistyped dir (or a data
        // directory that does not exist) is a problem here, where
        // monitoring sees it, said as `spam learn` says it.
        if let Some(refused) = dir_refused(cfg) {
            problems.push(refused.to_string());
        }
    }
    let readable = match &store {
        Ok(_) if !shared && !dir_exists => Ok(crate::check::spam::store::Readable {
            model: Model::default(),
            journal: Journalled::default(),
            refused: None,
        }),
        Ok(s) => s.readable().map_err(|e| {
            unreadable = Some(damaged_snapshot(&e, shared).unwrap_or_else(|| {
                if shared {
                    e.to_string()
                } else {
                    with_step(&Unreadable::of(Part::Site, &e))
                }
            }));
            e.to_string()
        }),
        Err(e) => Err(e.to_string()),
    };
    let site = match &readable {
        Ok(r) => {
            if let Some(refused) = &r.refused {
                // What every gateway's read says now: their classifier
                // abstains until the journal is repaired.
                problems.push(refused.to_string());
                k.classifier.unavailable = true;
            }
            if let Some(path) = store.as_ref().ok().and_then(Store::foreign_journal) {
                problems.push(format!(
                    "{} is damaged at its start or not a journal this Mailward reads: its learning is not counted; the next change keeps it aside as {}.damaged-TIME (restore the learning from a backup or `spam export`, or learn the messages again)",
                    path.display(),
                    path.display()
                ));
            }
            // A damaged Redis element is said once, by `refused` (walkBG
            // 5: the same damage was a second problem, in a file
            // journal's words).
            if r.journal.unread > 0 && r.refused.is_none() {
                problems.push(format!(
                    "the journal ends in {} byte(s) after a record cut short or damaged, never counted; the next change or `mailward spam fold` drops them",
                    r.journal.unread
                ));
            }
            k.classifier.site = std::sync::Arc::new(r.model.clone());
            let m = &r.model;
            serde_json::json!({
                "spam": m.spam_messages, "ham": m.ham_messages,
                "tokens": m.tokens.len(), "messages": m.learnt.len(),
            })
        }
        Err(e) => {
            // A damaged site.model is as unavailable to a gateway as a
            // Redis that does not answer (walkR finding 1). A dir that is
            // a file is said once, above.
            if shared || !dir_is_file {
                problems.push(unreadable.clone().unwrap_or_else(|| e.clone()));
                let part = if shared { Part::Store } else { Part::Site };
                if !unreadable_parts.contains(&part) {
                    unreadable_parts.push(part);
                }
            }
            k.classifier.unavailable = true;
            serde_json::json!({
                "spam": null, "ham": null, "tokens": null, "messages": null,
            })
        }
    };
    let mut site = site;
    site["max_tokens"] = cfg.spam.max_tokens.into();
    site["max_learnt"] = cfg.spam.max_learnt.into();
    let c = &k.classifier;
    serde_json::json!({
        "dir": cfg.spam.dir.display().to_string(),
        "dir_exists": dir_exists,
        "store": store.as_ref().map(|s| s.describe()).unwrap_or_else(|e| e.to_string()),
        "base": c.base.as_ref().map(|b| serde_json::json!({
            "spam": b.spam_messages, "ham": b.ham_messages, "tokens": b.tokens.len(),
        })),
        "site": site,
        "journal": match &readable {
            Ok(r) => {
                let j = r.journal;
                serde_json::json!({
                    "records": j.records, "bytes": j.bytes, "unread": j.unread,
                    "snapshot": j.snapshot, "fold_at": j.fold_at(),
                })
            }
            Err(e) => serde_json::Value::from(e.as_str()),
        },
        "min_learnt": c.min_learnt,
        "classifier": c.readiness().as_str(),
        "rules": k.rules.len(),
        "level": format!("{:?}", cfg.policy.spam_level).to_lowercase(),
        "problems": problems,
        // The parts ("base", "site", "store") that cannot be read, each
        // with its problem above.
        "unreadable": unreadable_parts,
        // A dir whose parent is missing too, which `spam learn` refuses
        // to create (the problem above says so).
        "dir_parent_missing": dir_parent_missing.map(|p| p.display().to_string()),
    })
}

/// How `spam status` ends: an error when it lists problems, so that a
/// monitoring check that keys on the exit status (a Nagios or Icinga
/// check, a systemd timer) sees them without parsing the JSON (walkR
/// finding 8). The command then exits 1.
pub fn status_outcome(v: &serde_json::Value) -> Result<(), SpamCliError> {
    match v["problems"].as_array().map_or(0, Vec::len) {
        0 => Ok(()),
        n => Err(SpamCliError::Problems(n)),
    }
}

/// `spam status` as text, from what [`status`] gives.
pub fn status_text(v: &serde_json::Value) -> String {
    let mut out = format!("Spam knowledge in {}\n", v["dir"].as_str().unwrap_or("?"));
    let unreadable = |part: Part| {
        v["unreadable"]
            .as_array()
            .is_some_and(|parts| parts.contains(&serde_json::json!(part)))
    };
    match &v["base"] {
        // walkAK 8: a damaged base read as "none", as if none were installed.
        serde_json::Value::Null if unreadable(Part::Base) => {
            out += "  base:       unknown: base.model cannot be read (see the problem below)\n"
        }
        serde_json::Value::Null => out += "  base:       none\n",
        b => {
            out += &format!(
                "  base:       {} spam, {} ham, {} tokens\n",
                b["spam"], b["ham"], b["tokens"]
            )
        }
    }
    let store = v["store"].as_str().unwrap_or("?");
    let s = &v["site"];
    if s["spam"].is_null() {
        // Not zeros: the learning is unknown, not lost.
        out += &format!(
            "  site:       unknown: the store cannot be read ({store}; see the problem below)\n"
        );
    } else if v["dir_exists"] == false && !store.contains("://") {
        // Not "0 spam, 0 ham": a mistyped dir would read as a healthy
        // empty store (walkR finding 12).
        let dir = v["dir"].as_str().unwrap_or("?");
        let refused = !v["dir_parent_missing"].is_null();
        out += &format!(
            "  site:       none: {dir} does not exist yet (nothing learnt there; {})\n",
            if refused {
                "see the problem below"
            } else {
                "`spam learn` creates it"
            }
        );
    } else {
        out += &format!(
            "  site:       {} spam, {} ham, {} tokens of at most {} ({store})\n",
            s["spam"], s["ham"], s["tokens"], s["max_tokens"]
        );
    }
    let j = &v["journal"];
    if j.is_string() {
        // The store as a whole could not be read (most often the snapshot,
        // site.model): its problem says which and why, not this line
        // (walkR finding 14).
        out += "  journal:    unknown: the store cannot be read (see the problem below)\n";
    } else {
        out += &format!(
            "  journal:    {} change(s), {} bytes since the snapshot of {} bytes (folded in past {})\n",
            j["records"], j["bytes"], j["snapshot"], j["fold_at"]
        );
    }
    let classifier = v["classifier"].as_str().unwrap_or("?");
    out += &format!(
        "  classifier: {classifier} (scores from {} of each{})\n",
        v["min_learnt"],
        match classifier {
            "active" => "",
            "abstaining" => "; until then the rules weigh double",
            _ => "; the rules weigh double until its learning can be read",
        }
    );
    out += &format!("  rules:      {}\n", v["rules"]);
    out += &format!(
        "  level:      {} (policy.spam_level)\n",
        v["level"].as_str().unwrap_or("?")
    );
    for p in v["problems"].as_array().into_iter().flatten() {
        out += &format!("  problem:    {}\n", p.as_str().unwrap_or_default());
    }
    out
}

/// `spam fold`: the journal folded into a new snapshot now.
///
/// A journal whose every record is damaged has nothing to fold: its
/// damaged bytes are dropped, the snapshot is left as it is (walkR finding
/// 13), and what is returned holds no record and the bytes dropped.
pub fn fold(cfg: &Config, err: &mut dyn Write) -> Result<Journalled, SpamCliError> {
    let _owner = crate::ops::privileges::OwnedByDataDir::new(&cfg.spam.dir, &cfg.server.data_dir);
    let store = site_store(cfg)?;
    if !store.is_shared() && !cfg.spam.dir.exists() {
        // A gateway that has learnt nothing has nothing to fold: not an
        // error, so that `spam fold && rsync ...` backs up a new gateway
        // too (walkAA finding 8). Nothing is created.
        let _ = writeln!(
            err,
            "{} does not exist: nothing was learnt there (spam.dir in {}).",
            cfg.spam.dir.display(),
            cfg.origin
        );
        return Ok(Journalled::default());
    }
    if !store.is_shared() {
        existing(cfg)?;
    }
    let _ = writeln!(err, "Folding the journal of {}.", place(cfg, &store));
    let (folded, trimmed) = store.fold().map_err(changing(cfg))?;
    tell_trimmed(cfg, trimmed, err);
    Ok(folded)
}

/// `spam export FILE`: the site's learning, as a model file. The
/// directory must exist (a typo in the path is not made a directory), and
/// an existing file is replaced only with `force`.
pub fn export(cfg: &Config, to: &Path, force: bool) -> Result<Model, SpamCliError> {
    let parent = to.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(dir) = parent.filter(|d| !d.is_dir()) {
        return Err(SpamCliError::Usage(format!(
            "{}: no such directory (spam export creates no directories)",
            dir.display()
        )));
    }
    let export_path = |what: String| SpamCliError::Path {
        command: Some("spam export"),
        path: to.to_path_buf(),
        what,
        takes: "give the file to write, in a directory this user can write",
    };
    if to.is_dir() {
        // --force would not replace it either: it cannot be renamed over.
        return Err(export_path("a directory, not a file".into()));
    }
    if to.exists() && !force {
        return Err(SpamCliError::Usage(format!(
            "{} exists; --force replaces it",
            to.display()
        )));
    }
    let model = site_store(cfg)?.read()?;
    match model.write(to) {
        Err(ModelError::Io { source, .. }) => Err(export_path(in_words(&source))),
        r => r.map_err(SpamCliError::from),
    }?;
    Ok(model)
}

/// What `spam import` did.
#[derive(Debug)]
pub struct Imported {
    /// The site's learning after a merge, or the base installed.
    pub model: Model,
    /// With `--base`: the base file, and whether a base was there before
    /// (and is now `base.model.bak`, for `spam rollback`).
    pub base: Option<(PathBuf, bool)>,
}

impl Imported {
    /// The line `spam import` prints. A first base cannot be rolled back
    /// (there is no earlier base to go back to), so it says so and what
    /// undoes it instead of promising a rollback.
    pub fn summary(&self, from: &Path) -> String {
        let m = &self.model;
        match &self.base {
            None => format!(
                "Imported {}: the site has learnt {} spam and {} ham message(s).",
                from.display(),
                m.spam_messages,
                m.ham_messages
            ),
            Some((_, true)) => format!(
                "Installed {} as the base ({} spam, {} ham); the previous base is kept for `spam rollback`.",
                from.display(),
                m.spam_messages,
                m.ham_messages
            ),
            Some((base, false)) => format!(
                "Installed {} as the base ({} spam, {} ham). There was no base before, so \
                 `spam rollback` has none to go back to: to go back to no base, remove {}.",
                from.display(),
                m.spam_messages,
                m.ham_messages,
                base.display()
            ),
        }
    }
}

/// `spam import FILE`: adds another gateway's learning to this site's
/// (`merge`), or installs it as the base (the base in use is kept as
/// `base.model.bak` for `spam rollback`). The file is checked whole first.
pub fn import(
    cfg: &Config,
    from: &Path,
    as_base: bool,
    err: &mut dyn Write,
) -> Result<Imported, SpamCliError> {
    let _owner = crate::ops::privileges::OwnedByDataDir::new(&cfg.spam.dir, &cfg.server.data_dir);
    let import_path = |what: String| SpamCliError::Path {
        command: Some("spam import"),
        path: from.to_path_buf(),
        what,
        takes: "give a model file that `mailward spam export` wrote",
    };
    let incoming = match Model::read(from) {
        Ok(Some(m)) => m,
        Ok(None) => return Err(import_path("no such file".into())),
        Err(ModelError::Io { source, .. }) => return Err(import_path(in_words(&source))),
        Err(e) => return Err(e.into()),
    };
    let dir = &cfg.spam.dir;
    if as_base {
        // The site's learning stays beside the new base: what both hold
        // counts twice (walkAV F9). Said, not refused: the base is often a
        // colleague's model that shares some mail with the site's.
        let overlap = site_store(cfg)
            .ok()
            .and_then(|store| store.read().ok())
            .map_or(0, |site| site.shared_with(&incoming));
        if overlap > 0 {
            let _ = writeln!(
                err,
                "mailward: warning: {overlap} of the base's messages are in the site's learning too: they count twice until they are forgotten there (mailward spam forget PATH...)"
            );
        }
    }
    made_ready(cfg, err)?;
    let _lock = crate::check::spam::store::Lock::take(dir)?;
    if as_base {
        let base = dir.join(BASE);
        let bak = dir.join(format!("{BASE}.bak"));
        let replaced = base.exists();
        if replaced {
            std::fs::copy(&base, &bak).map_err(io(&bak))?;
        } else {
            // A backup left from before the base was removed is not the
            // base this install replaces (there was none): `spam rollback`
            // must not bring it back.
            match std::fs::remove_file(&bak) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io(&bak)(e));
                }
                _ => {}
            }
        }
        // A base that `spam rollback` set aside is no longer the one just
        // rolled back from.
        match std::fs::remove_file(dir.join(ROLLED_BACK)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io(&dir.join(ROLLED_BACK))(e));
            }
            _ => {}
        }
        incoming.write(&base)?;
        // The site's learning is shared, the base is not (walkBG 6: two
        // gateways on one Redis judged alike until one got a base).
        if let Some(store) = site_store(cfg)
            .ok()
            .filter(Store::is_shared)
            .map(|s| s.describe())
        {
            let _ = writeln!(
                err,
                "Note: the base is this gateway's file ({}); the site's learning in {store} is shared, the base is not: install it on every gateway sharing that store (`mailward spam import --base FILE` on each), or they judge the same message differently.",
                base.display()
            );
        }
        return Ok(Imported {
            model: incoming,
            base: Some((base, replaced)),
        });
    }
    drop(_lock);
    let (merged, trimmed) = site_store(cfg)?
        .update(|site| {
            // Per message where the other side knows which messages it
            // learnt, so that a message both learnt counts once.
            let overlap = site.shared_with(&incoming);
            if overlap > 0 {
                // An export holds the counts its messages add up to, not
                // each message's words: the ones learnt here too cannot be
                // left out, so the import is refused; restoring into a
                // store that learnt a little since it lost its learning
                // takes emptying it (walkBG 4: the way out was given for
                // a damaged snapshot only).
                let (verb, empty) = if overlap == 1 { ("is", "it") } else { ("are", "them") };
                let emptying = if site_store(cfg).is_ok_and(|s| s.is_shared()) {
                    "delete the learning's keys on that Redis (`redis-cli DEL mailward:spam:site mailward:spam:journal mailward:spam:generation`, with its -h, -p and -n)"
                } else {
                    "stop the daemon and move site.model and site.journal out of spam.dir"
                };
                return Edit::Unchanged(Err(SpamCliError::Usage(format!(
                    "{}: {overlap} of its messages {verb} learnt here already: forget {empty} first (`mailward spam forget` with the message files; as the base, with --base, they would count twice), or, to restore the export in place of this store's learning, {emptying} and import it again",
                    from.display()
                ))));
            }
            site.absorb(&incoming);
            Edit::Changed(Ok((**site).clone()))
        })
        .map_err(changing(cfg))?;
    tell_trimmed(cfg, trimmed, err);
    merged.map(|model| Imported { model, base: None })
}

/// Where `spam rollback` keeps the base it rolled back from: no command
/// uses it again by itself (`spam import --base` it to go back to it).
pub const ROLLED_BACK: &str = "base.model.rolled-back";

/// `spam rollback`: the previous base back, once. The previous base
/// (`base.model.bak`) becomes the base and the one it replaces is kept as
/// [`ROLLED_BACK`]; there is no previous base after it, so a second
/// rollback is refused instead of swapping the two back and forth while
/// saying "the previous base is in use again" each time (walkI finding 8).
/// Returns where the replaced base is kept.
pub fn rollback(cfg: &Config) -> Result<PathBuf, SpamCliError> {
    let _owner = crate::ops::privileges::OwnedByDataDir::new(&cfg.spam.dir, &cfg.server.data_dir);
    existing(cfg)?;
    let dir = &cfg.spam.dir;
    let _lock = crate::check::spam::store::Lock::take(dir)?;
    let bak = dir.join(format!("{BASE}.bak"));
    let base = dir.join(BASE);
    let kept = dir.join(ROLLED_BACK);
    // Read whole first: a damaged backup is refused before anything moves.
    if Model::read(&bak)?.is_none() {
        return Err(SpamCliError::Usage(if base.exists() && kept.exists() {
            format!(
                "the previous base is already in use (`spam rollback` was run; the base it \
                 replaced is kept as {}); `spam import --base FILE` to install another",
                kept.display()
            )
        } else if base.exists() {
            // After a first base there is none to go back to: say what
            // undoes it instead.
            format!(
                "no previous base to roll back to: {} is the first base installed; remove it to go back to no base",
                base.display()
            )
        } else {
            "no previous base to roll back to".into()
        }));
    }
    if base.exists() {
        std::fs::copy(&base, &kept).map_err(io(&kept))?;
    }
    // One rename: a daemon sees the old base or the previous one, never
    // none.
    std::fs::rename(&bak, &base).map_err(io(&base))?;
    Ok(kept)
}

/// The `--sender` of `spam spf`: an address as written in MAIL FROM, with
/// or without its angle brackets (`<news@example.org>` as copied from a
/// log), or empty for the null sender. An empty local part is an address
/// SPF checks as `postmaster@DOMAIN` (RFC 7208 4.3; the RFC's test suite
/// has it). Anything else without a domain is refused: its "domain" would
/// be checked as the empty name.
pub fn sender_arg(s: &str) -> Result<String, String> {
    let t = s.trim();
    let t = t
        .strip_prefix('<')
        .and_then(|t| t.strip_suffix('>'))
        .unwrap_or(t);
    // One @ outside a quoted local part ("a@b"@c.example is an address,
    // a@b@c is not: the session refuses it), a domain without spaces.
    let well_formed = |(local, domain): (&str, &str)| {
        let quoted = local.len() >= 2 && local.starts_with('"') && local.ends_with('"');
        (quoted || !local.contains('@'))
            && !domain.is_empty()
            && !domain.contains(|c: char| c.is_whitespace() || c == '"')
    };
    if t.is_empty() || t.rsplit_once('@').is_some_and(well_formed) {
        Ok(t.to_string())
    } else {
        Err(format!(
            "{s:?} is not an address: give local@domain (angle brackets allowed) or \"\" for the null sender"
        ))
    }
}

/// SPF for `ip` and `sender` (HELO `helo`), as the session checks it: the
/// configuration's resolver and timeout, or the DNS server `dns`; for an
/// error, why.
pub fn spf(
    cfg: &Config,
    ip: std::net::IpAddr,
    helo: &str,
    sender: &str,
    dns: Option<std::net::SocketAddr>,
) -> Result<(crate::auth::Spf, Option<String>), SpamCliError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| SpamCliError::Usage(format!("cannot start the DNS client: {e}")))?;
    runtime.block_on(async {
        let timeout = cfg.timeouts.dns.get();
        let dns = crate::dns::Dns::new(dns.or(cfg.access.dns_resolver), timeout)
            .map_err(|e| SpamCliError::Usage(e.to_string()))?;
        Ok(crate::auth::spf(
            dns.authenticator(),
            ip,
            helo,
            &cfg.server.hostname,
            sender,
            timeout,
            true,
        )
        .await)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learning_past_max_tokens_says_so_on_the_terminal() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = crate::config::parse("", "t.toml").unwrap();
        cfg.spam.dir = dir.path().join("spam");
        // Below what the configuration accepts, so that a few messages pass it.
        cfg.spam.max_tokens = 20;
        let mail = dir.path().join("mail");
        std::fs::create_dir(&mail).unwrap();
        for i in 0..3 {
            std::fs::write(
                mail.join(format!("{i}.eml")),
                format!(
                    "From: a{i}@example.com\r\nSubject: offer {i}\r\n\r\n\
                     cheap pills number{i} lottery winnings{i} click here now {i}\r\n"
                ),
            )
            .unwrap();
        }
        let mut err = Vec::new();
        let tally = learn(&cfg, &[mail], &[], &mut err).unwrap();
        assert_eq!(tally.new, 3);
        let err = String::from_utf8(err).unwrap();
        assert!(
            err.contains("The site's learning passed spam.max_tokens (20): the "),
            "{err}"
        );
        let site = site_store(&cfg).unwrap().read().unwrap();
        assert_eq!(site.tokens.len(), 18, "nine tenths of the limit kept");
        assert_eq!(site.spam_messages, 3);
        // Within the limit, nothing is said.
        cfg.spam.max_tokens = 2_000_000;
        let mut err = Vec::new();
        forget(&cfg, &[dir.path().join("mail/0.eml")], &mut err).unwrap();
        assert!(!String::from_utf8(err).unwrap().contains("passed"));
    }

    /// walkAW F21: `spam check` warned of a file with NUL bytes, `spam
    /// learn` learnt it without a word.
    #[test]
    fn learning_a_file_with_nul_bytes_is_said() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = crate::config::parse("", "t.toml").unwrap();
        cfg.spam.dir = dir.path().join("spam");
        let bin = dir.path().join("garbage.bin");
        std::fs::write(&bin, b"\x7fELF\x00\x00binary\x00stuff").unwrap();
        let mut err = Vec::new();
        let tally = learn(&cfg, &[bin], &[], &mut err).unwrap();
        assert_eq!(tally.new, 1);
        let err = String::from_utf8(err).unwrap();
        assert!(
            err.contains("garbage.bin: holds NUL bytes, so it is not a mail message as SMTP carries one; learnt anyway"),
            "{err}"
        );
    }

    /// walkAV F9: the base and the site's learning were never compared,
    /// so the same messages counted twice and took the classifier past
    /// min_learnt on half the mail.
    #[test]
    fn what_the_base_learnt_is_not_learnt_again_and_an_overlapping_base_is_said() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = crate::config::parse("", "t.toml").unwrap();
        cfg.spam.dir = dir.path().join("spam");
        std::fs::create_dir(&cfg.spam.dir).unwrap();
        let (a, b) = (dir.path().join("a.eml"), dir.path().join("b.eml"));
        std::fs::write(
            &a,
            "From: a@x.test\r\nSubject: pills\r\n\r\ncheap pills\r\n",
        )
        .unwrap();
        std::fs::write(&b, "From: b@x.test\r\nSubject: loans\r\n\r\nfast loans\r\n").unwrap();
        let mut base = Model::default();
        let (digest, tokens) = spam::for_learning(&std::fs::read(&a).unwrap());
        base.learn(digest, &tokens, Class::Spam);
        base.write(&cfg.spam.dir.join(BASE)).unwrap();
        let tally = learn(&cfg, &[a.clone(), b.clone()], &[], &mut Vec::new()).unwrap();
        assert_eq!((tally.new, tally.already, tally.in_base), (1, 1, 1));
        assert_eq!(
            tally.learnt_summary(),
            "Learnt 1 new message(s); 1 already known (1 of them in the base); 0 moved to the other class."
        );
        let site = site_store(&cfg).unwrap().read().unwrap();
        assert_eq!(site.spam_messages, 1, "only b in the site");
        // Learnt as the other class, it is learnt here: the site corrects
        // its base.
        let tally = learn(&cfg, &[], std::slice::from_ref(&a), &mut Vec::new()).unwrap();
        assert_eq!((tally.new, tally.in_base), (1, 0));
        // And taught as the base has it again: the site's lesson is taken
        // back, not counted beside the base's.
        let tally = learn(&cfg, std::slice::from_ref(&a), &[], &mut Vec::new()).unwrap();
        assert_eq!(
            (tally.moved, tally.back_to_base, tally.in_base, tally.new),
            (1, 1, 0, 0)
        );
        assert_eq!(
            tally.learnt_summary(),
            "Learnt 0 new message(s); 0 already known; 1 moved to the other class (1 back to the class the base holds them in)."
        );
        let site = site_store(&cfg).unwrap().read().unwrap();
        assert_eq!((site.spam_messages, site.ham_messages), (1, 0), "only b");
        // A base that holds what the site learnt is installed, and said.
        let file = dir.path().join("colleague.model");
        let mut other = Model::default();
        let (digest, tokens) = spam::for_learning(&std::fs::read(&b).unwrap());
        other.learn(digest, &tokens, Class::Spam);
        other.write(&file).unwrap();
        let mut err = Vec::new();
        import(&cfg, &file, true, &mut err).unwrap();
        assert!(
            String::from_utf8(err).unwrap().contains(
                "mailward: warning: 1 of the base's messages are in the site's learning too: they count twice until they are forgotten there"
            )
        );
    }

    #[test]
    fn a_first_base_says_it_cannot_be_rolled_back_and_how_to_undo_it() {
        // walkB finding 4: a first `import --base` promised `spam rollback`,
        // which then found no previous base.
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = crate::config::parse("", "t.toml").unwrap();
        cfg.spam.dir = dir.path().join("spam");
        std::fs::create_dir(&cfg.spam.dir).unwrap();
        let file = dir.path().join("export.model");
        let model = Model {
            spam_messages: 50,
            ham_messages: 40,
            ..Model::default()
        };
        model.write(&file).unwrap();
        let base = cfg.spam.dir.join(BASE);
        // A backup left by an earlier base that was then removed by hand.
        std::fs::write(cfg.spam.dir.join("base.model.bak"), "stale").unwrap();

        let first = import(&cfg, &file, true, &mut Vec::new()).unwrap();
        assert_eq!(
            first.summary(&file),
            format!(
                "Installed {} as the base (50 spam, 40 ham). There was no base before, so \
                 `spam rollback` has none to go back to: to go back to no base, remove {}.",
                file.display(),
                base.display()
            )
        );
        let e = rollback(&cfg).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "no previous base to roll back to: {} is the first base installed; remove it to \
                 go back to no base",
                base.display()
            )
        );
        assert!(base.exists(), "a failed rollback leaves the base");

        let second = import(&cfg, &file, true, &mut Vec::new()).unwrap();
        assert_eq!(
            second.summary(&file),
            format!(
                "Installed {} as the base (50 spam, 40 ham); the previous base is kept for \
                 `spam rollback`.",
                file.display()
            )
        );
        rollback(&cfg).unwrap();
    }

    fn config_in(dir: &Path) -> Config {
        let mut cfg = crate::config::parse("", "t.toml").unwrap();
        cfg.spam.dir = dir.join("spam");
        std::fs::create_dir_all(&cfg.spam.dir).unwrap();
        cfg
    }

    #[test]
    fn a_second_rollback_is_refused_instead_of_swapping_back() {
        // walkI finding 8: each rollback swapped base.model and its backup
        // and said "The previous base is in use again."
        let dir = tempfile::tempdir().unwrap();
        let cfg = config_in(dir.path());
        let (older, newer) = (
            dir.path().join("older.model"),
            dir.path().join("newer.model"),
        );
        for (file, spam) in [(&older, 950), (&newer, 947)] {
            Model {
                spam_messages: spam,
                ham_messages: 40,
                ..Model::default()
            }
            .write(file)
            .unwrap();
        }
        import(&cfg, &older, true, &mut Vec::new()).unwrap();
        import(&cfg, &newer, true, &mut Vec::new()).unwrap();
        let base = cfg.spam.dir.join(BASE);
        let kept = rollback(&cfg).unwrap();
        assert_eq!(kept, cfg.spam.dir.join(ROLLED_BACK));
        let in_use = Model::read(&base).unwrap().unwrap();
        assert_eq!(in_use.spam_messages, 950, "the previous base is in use");
        assert_eq!(Model::read(&kept).unwrap().unwrap().spam_messages, 947);
        let e = rollback(&cfg).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "the previous base is already in use (`spam rollback` was run; the base it \
                 replaced is kept as {}); `spam import --base FILE` to install another",
                kept.display()
            )
        );
        assert_eq!(Model::read(&base).unwrap().unwrap().spam_messages, 950);
        // A new base can be rolled back again, to the one in use before it.
        import(&cfg, &newer, true, &mut Vec::new()).unwrap();
        assert!(
            !kept.exists(),
            "the set-aside base is not the one rolled back from now"
        );
        rollback(&cfg).unwrap();
        assert_eq!(Model::read(&base).unwrap().unwrap().spam_messages, 950);
    }

    #[test]
    fn spf_sender_takes_angle_brackets_and_refuses_a_non_address() {
        // walkI finding 21: `--sender "<news@partner.test>"` checked the
        // domain "partner.test>".
        assert_eq!(
            sender_arg("<news@partner.test>").unwrap(),
            "news@partner.test"
        );
        assert_eq!(
            sender_arg("news@partner.test").unwrap(),
            "news@partner.test"
        );
        assert_eq!(sender_arg("").unwrap(), "");
        assert_eq!(sender_arg("<>").unwrap(), "");
        // No local part: SPF checks it as postmaster@ (RFC 7208 4.3).
        assert_eq!(sender_arg("@example.net").unwrap(), "@example.net");
        assert_eq!(
            sender_arg("\"a@b\"@example.net").unwrap(),
            "\"a@b\"@example.net"
        );
        for bad in ["noatsign", "user@", "<@>", "a@b@c", "a@exa mple.net"] {
            let e = sender_arg(bad).unwrap_err();
            assert!(e.contains("is not an address"), "{bad}: {e}");
        }
    }

    #[test]
    fn export_neither_creates_directories_nor_replaces_a_file_silently() {
        // walkI finding 22.
        let dir = tempfile::tempdir().unwrap();
        let cfg = config_in(dir.path());
        let typo = dir.path().join("typo/dir/x.model");
        let e = export(&cfg, &typo, false).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{}: no such directory (spam export creates no directories)",
                dir.path().join("typo/dir").display()
            )
        );
        assert!(!dir.path().join("typo").exists());
        let to = dir.path().join("x.model");
        export(&cfg, &to, false).unwrap();
        let e = export(&cfg, &to, false).unwrap_err().to_string();
        assert_eq!(e, format!("{} exists; --force replaces it", to.display()));
        export(&cfg, &to, true).unwrap();
    }

    /// walkAK 8: `spam learn /x/y` printed a bare OS error. Each command
    /// that takes a PATH names itself, the path, what is wrong in words
    /// and what it takes, and fails (exit status 1).
    #[test]
    fn a_path_that_cannot_be_used_says_which_what_is_wrong_and_what_to_give() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config_in(dir.path());
        let missing = dir.path().join("x/y");
        let paths = std::slice::from_ref(&missing);
        let mut err = Vec::new();
        let e = learn(&cfg, paths, &[], &mut err).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "spam learn: {}: no such file or directory; give a message file, a directory of them, a Maildir folder or an mbox (see mailward spam learn --help)",
                missing.display()
            )
        );
        assert_eq!(e.exit_code(), 1);
        let e = learn(&cfg, &[], paths, &mut err).unwrap_err();
        assert!(e.to_string().starts_with("spam learn: "), "{e}");
        let e = forget(&cfg, paths, &mut err).unwrap_err();
        assert!(
            e.to_string().starts_with(&format!(
                "spam forget: {}: no such file or directory; give a message file",
                missing.display()
            )),
            "{e}"
        );
        let e = import(&cfg, &missing, false, &mut err)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!(
                "spam import: {}: no such file; give a model file that `mailward spam export` wrote (see mailward spam import --help)",
                missing.display()
            )
        );
        // A directory where a file is wanted: not "Is a directory (os
        // error 21)".
        let e = import(&cfg, dir.path(), true, &mut err)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!(
                "spam import: {}: a directory, not a file; give a model file",
                dir.path().display()
            )),
            "{e}"
        );
        let e = export(&cfg, dir.path(), true).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "spam export: {}: a directory, not a file; give the file to write, in a directory this user can write (see mailward spam export --help)",
                dir.path().display()
            )
        );
        // Read on another command's behalf (`mailward scan` of an mbox):
        // no spam command to send the user to.
        let e = messages(paths).err().unwrap().to_string();
        assert_eq!(
            e,
            format!(
                "{}: no such file or directory; give a message file, a directory of them, a Maildir folder or an mbox",
                missing.display()
            )
        );
    }

    /// `spam status`'s text says "see the problem below" from what the
    /// JSON says cannot be read, not from a problem's wording: reworded
    /// problems leave it as it was.
    #[test]
    fn what_cannot_be_read_is_a_field_not_a_reading_of_the_problems() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config_in(dir.path());
        std::fs::write(cfg.spam.dir.join(BASE), "not a model\n").unwrap();
        let mut v = status(&cfg);
        assert_eq!(v["unreadable"], serde_json::json!(["base"]), "{v}");
        assert_eq!(v["dir_parent_missing"], serde_json::Value::Null);
        let text = status_text(&v);
        assert!(
            text.contains(
                "  base:       unknown: base.model cannot be read (see the problem below)\n"
            ),
            "{text}"
        );
        v["problems"] = serde_json::json!(["reworded"]);
        assert!(status_text(&v).contains("base:       unknown: base.model cannot be read"));
        // A problem that names base.model without the base being
        // unreadable does not make it unknown.
        std::fs::remove_file(cfg.spam.dir.join(BASE)).unwrap();
        let mut v = status(&cfg);
        assert_eq!(v["unreadable"], serde_json::json!([]));
        v["problems"] = serde_json::json!([format!("something about {BASE}")]);
        assert!(status_text(&v).contains("  base:       none\n"));
        // A dir whose parent is missing: said from the field.
        cfg.spam.dir = dir.path().join("typo/deep/spam");
        let mut v = status(&cfg);
        assert_eq!(
            v["dir_parent_missing"],
            dir.path().join("typo/deep").display().to_string()
        );
        v["problems"] = serde_json::json!(["reworded"]);
        assert!(
            status_text(&v)
                .contains("does not exist yet (nothing learnt there; see the problem below)"),
            "{}",
            status_text(&v)
        );
    }

    #[test]
    fn an_os_error_is_said_in_words_without_its_number() {
        let e = std::io::Error::from_raw_os_error(5);
        assert_eq!(in_words(&e), "input/output error");
        assert_eq!(
            in_words(&std::io::Error::from(std::io::ErrorKind::PermissionDenied)),
            "permission denied to this user"
        );
    }

    #[test]
    fn check_judges_at_the_level_asked_for_or_the_group_s() {
        // walkI 22: only `[policy] spam_level` could be checked, though the
        // same message is clean for one group and spam for another.
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config_in(dir.path());
        let managers = crate::config::Group {
            spam_level: Some(SpamLevel::Maximum),
            ..crate::config::Group::default()
        };
        cfg.group.insert("managers".into(), managers);
        let file = dir.path().join("m.eml");
        // No Date, Message-ID or To: 4.6 points of rules.
        std::fs::write(&file, "From: a@b.test\nSubject: hi\n\nhello\n").unwrap();
        let judged = |level| {
            let mut out = Vec::new();
            check(
                &cfg,
                std::slice::from_ref(&file),
                true,
                0,
                level,
                &mut out,
                &mut Vec::new(),
            )
            .unwrap();
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            v["status"].as_str().unwrap_or_default().to_string()
        };
        let at = |level: Option<&str>, group: Option<&str>| judging_level(&cfg, level, group);
        assert_eq!(judged(at(None, None).unwrap()), "as/clean");
        assert_eq!(judged(at(Some("high"), None).unwrap()), "as/probable");
        assert_eq!(judged(at(None, Some("managers")).unwrap()), "as/spam");
        assert_eq!(
            at(Some("loud"), None).unwrap_err().to_string(),
            "--level: expected one of \"minimum\", \"standard\", \"high\", \"maximum\", got \"loud\""
        );
        assert_eq!(
            at(None, Some("sales")).unwrap_err().to_string(),
            "--group sales: no [group.sales] in the configuration (groups: managers)"
        );
    }

    #[test]
    fn learning_as_root_leaves_the_files_to_the_data_directory_s_owner() {
        // walkN 2: a root `spam learn` made DATA_DIR/spam root's, and the
        // daemon's user could then neither learn nor start.
        use std::os::unix::fs::MetadataExt as _;
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("not root: nothing is handed over; run the tests as root to check it");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config_in(dir.path());
        cfg.server.data_dir = dir.path().to_path_buf();
        nix::unistd::chown(
            &cfg.server.data_dir,
            Some(nix::unistd::Uid::from_raw(65534)),
            Some(nix::unistd::Gid::from_raw(65534)),
        )
        .unwrap();
        let ham = dir.path().join("ham.eml");
        std::fs::write(&ham, "From: a@b.test\nSubject: hi\n\nhello\n").unwrap();
        learn(&cfg, &[], std::slice::from_ref(&ham), &mut Vec::new()).unwrap();
        let mut paths = vec![cfg.spam.dir.clone()];
        paths.extend(
            std::fs::read_dir(&cfg.spam.dir)
                .unwrap()
                .map(|e| e.unwrap().path()),
        );
        assert!(paths.len() > 1, "{paths:?}");
        for p in paths {
            let m = std::fs::metadata(&p).unwrap();
            assert_eq!((m.uid(), m.gid()), (65534, 65534), "{}", p.display());
        }
    }

    #[test]
    fn an_empty_file_is_not_a_message() {
        // walkI 22: `spam learn` learnt an empty file as one message.
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.eml");
        std::fs::write(&empty, "\n").unwrap();
        let e = messages(std::slice::from_ref(&empty))
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e,
            Some(format!(
                "{}: the file is empty, not a message",
                empty.display()
            ))
        );
    }

    /// walkAV F1: one 0-byte file in a Junk folder made `spam check DIR`
    /// judge nothing and `spam learn DIR` learn nothing; it is named and
    /// skipped, and the folder's other messages are used.
    #[test]
    fn an_empty_file_in_a_directory_is_skipped_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config_in(dir.path());
        let junk = dir.path().join("Junk");
        std::fs::create_dir(&junk).unwrap();
        for i in 0..2 {
            std::fs::write(
                junk.join(format!("{i}.eml")),
                format!("From: a{i}@example.com\r\nSubject: offer {i}\r\n\r\ncheap pills {i}\r\n"),
            )
            .unwrap();
        }
        let empty = junk.join("zz-empty.eml");
        std::fs::write(&empty, "").unwrap();
        let skipped = format!(
            "mailward: warning: {}: the file is empty, not a message; skipped\n",
            empty.display()
        );
        // check: the two judged, the empty one named, exit status 1.
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let r = check(
            &cfg,
            std::slice::from_ref(&junk),
            false,
            0,
            cfg.policy.spam_level,
            &mut out,
            &mut err,
        );
        let e = r.unwrap_err();
        assert_eq!(
            e.to_string(),
            "1 file(s) of the directories given were empty or could not be read (each named above) and were skipped; the others were judged"
        );
        assert_eq!(e.exit_code(), 1);
        assert_eq!(String::from_utf8(out).unwrap().lines().count(), 2);
        assert_eq!(String::from_utf8(err).unwrap(), skipped);
        // learn: the two learnt, the empty one named.
        let mut err = Vec::new();
        let tally = learn(&cfg, std::slice::from_ref(&junk), &[], &mut err).unwrap();
        assert_eq!(tally.new, 2);
        assert!(String::from_utf8(err).unwrap().starts_with(&skipped));
        // forget the same.
        let mut err = Vec::new();
        let tally = forget(&cfg, std::slice::from_ref(&junk), &mut err).unwrap();
        assert_eq!(tally.forgotten, 2);
        assert!(String::from_utf8(err).unwrap().starts_with(&skipped));
        // A folder with nothing usable is still an error, and says why.
        let only = dir.path().join("only-empty");
        std::fs::create_dir(&only).unwrap();
        std::fs::write(only.join("x.eml"), "").unwrap();
        let mut err = Vec::new();
        let e = learn(&cfg, std::slice::from_ref(&only), &[], &mut err).unwrap_err();
        assert_eq!(
            e.to_string(),
            "none of the 1 file(s) given could be used (each is named above)"
        );
        assert!(String::from_utf8(err)
            .unwrap()
            .contains("x.eml: the file is empty"));
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let e = check(
            &cfg,
            std::slice::from_ref(&only),
            false,
            0,
            cfg.policy.spam_level,
            &mut out,
            &mut err,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "1 of 1 path(s) could not be read; nothing was judged"
        );
        assert!(String::from_utf8(err)
            .unwrap()
            .contains("x.eml: the file is empty"));
    }

    #[test]
    fn check_judges_the_files_that_exist_and_reports_the_missing_one() {
        // walkI finding 22: one missing file suppressed every verdict.
        let dir = tempfile::tempdir().unwrap();
        let cfg = config_in(dir.path());
        let (a, b) = (dir.path().join("a.eml"), dir.path().join("b.eml"));
        let mail = "From: a@b.test\nTo: c@d.test\nSubject: hi\nDate: Fri, 04 Dec 2026 10:00:00 +0000\nMessage-ID: <x@b.test>\n\nhello\n";
        std::fs::write(&a, mail).unwrap();
        std::fs::write(&b, mail).unwrap();
        let missing = dir.path().join("missing.eml");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let r = check(
            &cfg,
            &[a.clone(), missing.clone(), b.clone()],
            false,
            0,
            cfg.policy.spam_level,
            &mut out,
            &mut err,
        );
        assert_eq!(
            r.unwrap_err().to_string(),
            "1 of 3 path(s) could not be read; the others were judged"
        );
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.starts_with(&format!("{}: as/clean", a.display())),
            "{out}"
        );
        assert!(
            out.contains(&format!("\n{}: as/clean", b.display())),
            "{out}"
        );
        let err = String::from_utf8(err).unwrap();
        assert!(
            err.starts_with(&format!(
                "mailward: spam check: {}: no such file or directory; ",
                missing.display()
            )),
            "{err}"
        );
    }

    #[test]
    fn check_judges_without_the_classifier_when_the_learning_cannot_be_read() {
        // walkR finding 4: `spam check` refused to judge while the gateway
        // judged the same mail with the rules. And finding 8: `spam
        // status` exited 0 while it listed the damage.
        let dir = tempfile::tempdir().unwrap();
        let cfg = config_in(dir.path());
        let mail = "From: a@b.test\nTo: c@d.test\nSubject: hi\nDate: Fri, 04 Dec 2026 10:00:00 +0000\nMessage-ID: <x@b.test>\n\nDear friend, click here\n";
        let file = dir.path().join("m.eml");
        std::fs::write(&file, mail).unwrap();
        assert!(status_outcome(&status(&cfg)).is_ok());
        std::fs::write(
            cfg.spam.dir.join(crate::check::spam::knowledge::SITE),
            "not a model",
        )
        .unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        check(
            &cfg,
            std::slice::from_ref(&file),
            false,
            0,
            cfg.policy.spam_level,
            &mut out,
            &mut err,
        )
        .unwrap();
        let (out, err) = (
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        );
        assert_eq!(
            out,
            format!(
                "{}: as/clean score=3.0 rating=30 DEAR_FRIEND=+2.0 CLICK_HERE=+1.0 (classifier unavailable)\n",
                file.display()
            )
        );
        assert!(
            err.starts_with(&format!(
                "mailward: warning: {}: not a Mailward spam model (no model header): judging without the classifier",
                cfg.spam.dir.join("site.model").display()
            )),
            "{err}"
        );
        let mut out = Vec::new();
        check(
            &cfg,
            std::slice::from_ref(&file),
            true,
            0,
            cfg.policy.spam_level,
            &mut out,
            &mut Vec::new(),
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["classifier"], "unavailable");
        let v = status(&cfg);
        assert_eq!(v["classifier"], "unavailable");
        assert_eq!(
            status_outcome(&v).unwrap_err().to_string(),
            "spam status lists 1 problem(s)"
        );
    }

    #[test]
    fn a_maildir_folder_is_one_folder_and_an_empty_directory_stops_no_other() {
        // walkR finding 6: `spam learn --spam ~/Maildir/.Junk/` found "no
        // message files", and `.Junk/cur .Junk/new` with `new/` empty (read
        // mail) learnt nothing.
        let dir = tempfile::tempdir().unwrap();
        let cfg = config_in(dir.path());
        let junk = dir.path().join("Maildir/.Junk");
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(junk.join(sub)).unwrap();
        }
        std::fs::write(junk.join("dovecot-uidlist"), "3 V1 N2\n").unwrap();
        for i in 0..2 {
            std::fs::write(
                junk.join(format!("cur/17000000{i}.M1P1.host:2,S")),
                format!("From: a{i}@b.test\nSubject: offer {i}\n\ncheap pills {i}\n"),
            )
            .unwrap();
        }
        let found = messages(std::slice::from_ref(&junk)).unwrap();
        assert_eq!(found.len(), 2, "cur/ and new/, not the folder's own files");
        let (cur, new) = (junk.join("cur"), junk.join("new"));
        let mut err = Vec::new();
        let tally = learn(&cfg, &[cur, new.clone()], &[], &mut err).unwrap();
        assert_eq!(tally.new, 2);
        let err = String::from_utf8(err).unwrap();
        assert!(
            err.contains(&format!(
                "mailward: {}: the directory holds no message files; the other PATHs are used",
                new.display()
            )),
            "{err}"
        );
        // Only when all of them give nothing is it an error.
        let other = dir.path().join("empty");
        std::fs::create_dir(&other).unwrap();
        let e = learn(
            &cfg,
            std::slice::from_ref(&new),
            std::slice::from_ref(&other),
            &mut Vec::new(),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}, {}: none of these directories holds a message file",
                new.display(),
                other.display()
            )
        );
        assert_eq!(
            unread(1, 1),
            "1 of 1 path(s) could not be read; nothing was judged"
        );
    }

    #[test]
    fn a_file_without_a_header_block_is_judged_as_the_gateway_would() {
        // walkI finding 22: the gateway adds Received on top, so such a
        // message gets the MISSING_* tests there; `spam check` gave none.
        let k = Knowledge::default();
        for raw in ["\nhello there\n", "hello there\n\nmore\n"] {
            let e = check_one(&k, raw.as_bytes());
            for name in [
                "MISSING_DATE",
                "MISSING_MESSAGE_ID",
                "MISSING_TO",
                "MISSING_SUBJECT",
            ] {
                assert!(e.test_names().contains(&name), "{raw:?}: {}", e.weighed());
            }
        }
    }

    #[test]
    fn a_date_ahead_of_now_is_in_the_future_without_a_received_field() {
        // walkAB finding 7: the gateway said DATE_IN_FUTURE (against its
        // own Received, dated now), `spam check` of the same file nothing.
        let k = Knowledge::default();
        let ahead = (chrono::Utc::now() + chrono::Duration::hours(4)).to_rfc2822();
        let raw = format!("Date: {ahead}\r\nSubject: hi\r\nTo: a@b.example\r\n\r\nhello\r\n");
        let e = check_one(&k, raw.as_bytes());
        assert!(
            e.test_names().contains(&"DATE_IN_FUTURE"),
            "{}",
            e.weighed()
        );
        let now = chrono::Utc::now().to_rfc2822();
        let raw = format!("Date: {now}\r\nSubject: hi\r\nTo: a@b.example\r\n\r\nhello\r\n");
        let e = check_one(&k, raw.as_bytes());
        assert!(
            !e.test_names().contains(&"DATE_IN_FUTURE"),
            "{}",
            e.weighed()
        );
        // With a Received field of its own, that one is the reference.
        let raw = format!(
            "Received: from x by y; {now}\r\nDate: {ahead}\r\nSubject: hi\r\n\r\nhello\r\n"
        );
        assert!(check_one(&k, raw.as_bytes())
            .test_names()
            .contains(&"DATE_IN_FUTURE"));
    }

    #[test]
    fn forget_and_learn_say_what_they_did_in_words() {
        // walkI finding 22: "1 were not learnt"; an empty directory learnt
        // "0 new message(s)" without a word.
        let one = Tally {
            unknown: 1,
            ..Tally::default()
        };
        assert_eq!(
            one.forgot_summary(),
            "Forgot 0 message(s); 1 was not learnt."
        );
        let two = Tally {
            forgotten: 1,
            unknown: 2,
            ..Tally::default()
        };
        assert_eq!(
            two.forgot_summary(),
            "Forgot 1 message(s); 2 were not learnt."
        );
        let dir = tempfile::tempdir().unwrap();
        let cfg = config_in(dir.path());
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let e = learn(&cfg, std::slice::from_ref(&empty), &[], &mut Vec::new()).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{}: the directory holds no message files", empty.display())
        );
    }

    /// A message as the gateway delivered it to a Junk folder: the subject
    /// mark, the verdict fields, our Authentication-Results.
    fn delivered(cfg: &Config, arrived: &str) -> String {
        let marked = crate::policy::subject::mark(arrived.as_bytes(), "[!!SPAM]");
        format!(
            "X-Mailward-Spam: as/spam; score=9.0;\r\n\ttests=BAYES_99\r\nX-Mailward-Spam-Rating: 90\r\n\
             Authentication-Results: {}; spf=pass smtp.mailfrom=shop.test\r\n{}",
            cfg.server.authserv_id,
            String::from_utf8(marked).unwrap()
        )
    }

    #[test]
    fn a_message_learnt_as_delivered_is_the_message_as_it_arrived() {
        // walkR finding 7: a Junk folder taught `subject:!!spam` and
        // `hdr:x-mailward-spam` as the marks of spam.
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config_in(dir.path());
        cfg.spam.min_learnt = 1;
        let arrived =
            "From: Deals <d@shop.test>\r\nTo: bob@example.com\r\nSubject: Cheap pills now\r\n\
            Message-ID: <1@shop.test>\r\n\r\nBuy cheap pills, best price, click here.\r\n";
        let (a, d, h) = (
            dir.path().join("arrived.eml"),
            dir.path().join("delivered.eml"),
            dir.path().join("ham.eml"),
        );
        std::fs::write(&a, arrived).unwrap();
        std::fs::write(&d, delivered(&cfg, arrived)).unwrap();
        std::fs::write(
            &h,
            "From: ann@example.com\nSubject: lunch\n\nNoon at the station?\n",
        )
        .unwrap();
        let tally = learn(
            &cfg,
            std::slice::from_ref(&d),
            std::slice::from_ref(&h),
            &mut Vec::new(),
        )
        .unwrap();
        assert_eq!(tally.new, 2);
        let again = learn(&cfg, std::slice::from_ref(&a), &[], &mut Vec::new()).unwrap();
        assert_eq!(
            (again.new, again.already),
            (0, 1),
            "learnt twice counts once"
        );
        let mut out = Vec::new();
        check(
            &cfg,
            std::slice::from_ref(&d),
            true,
            500,
            cfg.policy.spam_level,
            &mut out,
            &mut Vec::new(),
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let clues: Vec<&str> = v["clues"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["token"].as_str())
            .collect();
        assert!(clues.contains(&"subject:pills"), "{clues:?}");
        assert!(
            !clues.iter().any(|c| c.contains("!!spam")
                || c.starts_with("hdr:x-mailward")
                || c == &"hdr:authentication-results"),
            "{clues:?}"
        );
        let model = site_store(&cfg).unwrap().read().unwrap();
        let known = |t: &[&str]| {
            model
                .tokens
                .contains_key(&crate::check::spam::tokens::hash(t))
        };
        assert!(known(&["subject", "pills"]));
        assert!(!known(&["subject", "!!spam"]));
        assert!(!known(&["hdr", "x-mailward-spam"]));
        assert!(!known(&["hdr", "authentication-results"]));
        // Forgotten as delivered, it is gone.
        let gone = forget(&cfg, std::slice::from_ref(&d), &mut Vec::new()).unwrap();
        assert_eq!(gone.forgotten, 1);
    }

    #[test]
    fn a_mistyped_dir_is_neither_made_nor_shown_as_an_empty_store() {
        // walkR finding 12: `spam learn` made /nonexistent/deep/spam, and
        // `spam status` showed it as "0 spam, 0 ham".
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = crate::config::parse("", "t.toml").unwrap();
        let ham = dir.path().join("ham.eml");
        std::fs::write(&ham, "From: a@b.test\nSubject: hi\n\nhello\n").unwrap();
        // A dir whose parent exists: `spam learn` makes it, and says so.
        cfg.spam.dir = dir.path().join("spam");
        let v = status(&cfg);
        assert!(status_outcome(&v).is_ok(), "{v}");
        assert_eq!(v["dir_exists"], false);
        assert!(
            status_text(&v).contains(&format!(
                "  site:       none: {} does not exist yet (nothing learnt there; `spam learn` creates it)\n",
                cfg.spam.dir.display()
            )),
            "{}",
            status_text(&v)
        );
        // One whose parent is missing too is a problem that monitoring
        // sees, since `spam learn` refuses it (walkAK 7).
        cfg.spam.dir = dir.path().join("typo/deep/spam");
        let v = status(&cfg);
        assert!(status_outcome(&v).is_err(), "{v}");
        let text = status_text(&v);
        assert!(
            text.contains(&format!(
                "  site:       none: {} does not exist yet (nothing learnt there; see the problem below)\n",
                cfg.spam.dir.display()
            )) && text.contains("check spam.dir in t.toml"),
            "{text}"
        );
        let e = learn(&cfg, &[], std::slice::from_ref(&ham), &mut Vec::new()).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: no such directory, and its parent {} does not exist either: check spam.dir in \
                 t.toml (only the last directory of it is created)",
                cfg.spam.dir.display(),
                dir.path().join("typo/deep").display()
            )
        );
        assert!(!dir.path().join("typo").exists());
        // walkBG 1: the default dir in a data directory that does not
        // exist: the same problem in `spam status` as `spam learn`'s
        // refusal, which comes before any message is read.
        let mut fresh = crate::config::parse("", "t.toml").unwrap();
        fresh.server.data_dir = dir.path().join("data");
        fresh.spam.dir = fresh.server.data_dir.join("spam");
        let v = status(&fresh);
        assert!(status_outcome(&v).is_err(), "{v}");
        assert_eq!(
            v["dir_parent_missing"],
            fresh.server.data_dir.display().to_string()
        );
        let refusal = format!(
            "{}: no such directory, and the data directory {} does not exist either: check \
             server.data_dir in t.toml, or start the daemon once (it creates it)",
            fresh.spam.dir.display(),
            fresh.server.data_dir.display()
        );
        let text = status_text(&v);
        assert!(
            text.contains("(nothing learnt there; see the problem below)\n")
                && text.contains(&refusal),
            "{text}"
        );
        let unread = dir.path().join("not-read-yet.eml");
        let e = learn(&fresh, &[], std::slice::from_ref(&unread), &mut Vec::new()).unwrap_err();
        assert_eq!(e.to_string(), refusal);
        assert!(!fresh.server.data_dir.exists());
        let e = forget(&cfg, std::slice::from_ref(&ham), &mut Vec::new()).unwrap_err();
        assert!(
            e.to_string()
                .contains("does not exist: nothing was learnt there"),
            "{e}"
        );
        assert!(!dir.path().join("typo").exists());
        // Nothing to fold where nothing was learnt: exit 0, nothing made
        // (walkAA finding 8: `spam fold && rsync` failed on a new gateway).
        let mut err = Vec::new();
        let folded = fold(&cfg, &mut err).unwrap();
        assert_eq!(folded.records, 0);
        assert!(String::from_utf8(err)
            .unwrap()
            .contains("does not exist: nothing was learnt there"),);
        assert!(!dir.path().join("typo").exists());
        // Its last component is made, and said.
        cfg.spam.dir = dir.path().join("spam");
        let mut err = Vec::new();
        learn(&cfg, &[], std::slice::from_ref(&ham), &mut err).unwrap();
        let err = String::from_utf8(err).unwrap();
        assert!(
            err.contains(&format!(
                "Created {} (spam.dir): nothing was learnt there before.\nLearning into the site store in {}.",
                cfg.spam.dir.display(),
                cfg.spam.dir.display()
            )),
            "{err}"
        );
        // A file is not a directory.
        cfg.spam.dir = ham.clone();
        let e = learn(&cfg, &[], std::slice::from_ref(&ham), &mut Vec::new()).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{}: is not a directory (spam.dir in t.toml)", ham.display())
        );
        let v = status(&cfg);
        assert_eq!(
            v["problems"],
            serde_json::json!([format!(
                "{}: is not a directory (spam.dir in t.toml)",
                ham.display()
            )])
        );
    }

    #[test]
    fn a_fold_of_damaged_records_only_leaves_the_snapshot() {
        // walkR finding 13: "Folded 0 change(s) ... into a new snapshot",
        // and the snapshot rewritten for nothing.
        let dir = tempfile::tempdir().unwrap();
        let cfg = config_in(dir.path());
        let mail = |n: usize| {
            let f = dir.path().join(format!("{n}.eml"));
            std::fs::write(
                &f,
                format!("From: a@b.test\nSubject: note {n}\n\nword{n} here\n"),
            )
            .unwrap();
            f
        };
        learn(&cfg, &[], &[mail(0), mail(1)], &mut Vec::new()).unwrap();
        fold(&cfg, &mut Vec::new()).unwrap();
        let site = cfg.spam.dir.join(crate::check::spam::knowledge::SITE);
        let snapshot = std::fs::read(&site).unwrap();
        let before = std::fs::metadata(&site).unwrap().modified().unwrap();
        learn(&cfg, &[], &[mail(2)], &mut Vec::new()).unwrap();
        // One byte of the only record.
        let journal = cfg.spam.dir.join("site.journal");
        let mut bytes = std::fs::read(&journal).unwrap();
        let at = crate::check::spam::journal::HEADER + 10;
        bytes[at] ^= 0xff;
        std::fs::write(&journal, &bytes).unwrap();
        let mut err = Vec::new();
        let folded = fold(&cfg, &mut err).unwrap();
        // No record, the damaged bytes dropped: the command says "No
        // intact change to fold" (and not also "Nothing to fold": the
        // journal held changes).
        assert_eq!(folded.records, 0, "{folded:?}");
        assert!(folded.unread > 0, "{folded:?}");
        let err = String::from_utf8(err).unwrap();
        assert!(err.contains("Dropped "), "{err}");
        assert_eq!(std::fs::read(&site).unwrap(), snapshot);
        assert_eq!(
            std::fs::metadata(&site).unwrap().modified().unwrap(),
            before
        );
        assert_eq!(
            std::fs::metadata(&journal).unwrap().len(),
            crate::check::spam::journal::HEADER as u64
        );
        let v = status(&cfg);
        assert_eq!(v["problems"], serde_json::json!([]), "{v}");
        assert_eq!(v["site"]["ham"], 2);
    }

    #[test]
    fn usage_errors_exit_2_and_checks_say_why() {
        // walkR finding 14.
        let dir = tempfile::tempdir().unwrap();
        let cfg = config_in(dir.path());
        let e = judging_level(&cfg, Some("loud"), None).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert_eq!(
            judging_level(&cfg, None, Some("x"))
                .unwrap_err()
                .exit_code(),
            2
        );
        let e = learn(&cfg, &[], &[], &mut Vec::new()).unwrap_err();
        assert_eq!(
            (e.exit_code(), e.to_string().as_str()),
            (2, "say what to learn: --spam PATH... and/or --ham PATH...")
        );
        assert_eq!(SpamCliError::Unread(1, 2).exit_code(), 1);
        // An auto-reply says why it is formal; clues asked of a classifier
        // that abstains say why there are none.
        let ooo = dir.path().join("ooo.eml");
        std::fs::write(
            &ooo,
            "From: a@b.test\nTo: c@d.test\nSubject: Out of Office\nAuto-Submitted: auto-replied\n\
             Date: Fri, 04 Dec 2026 10:00:00 +0000\nMessage-ID: <o@b.test>\n\nI am away.\n",
        )
        .unwrap();
        let mut out = Vec::new();
        check(
            &cfg,
            std::slice::from_ref(&ooo),
            false,
            5,
            cfg.policy.spam_level,
            &mut out,
            &mut Vec::new(),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!(
                "{}: as/formal score=0.0 rating=0 formal=Auto-Submitted\n  no clues: the classifier \
                 abstains (learnt 0 spam and 0 ham, scores from 200 of each)\n",
                ooo.display()
            )
        );
        // An auto-reply scored as spam (GTUBE) says it is judged by its
        // score (walkBW 4).
        let gtube = dir.path().join("gtube-ooo.eml");
        std::fs::write(
            &gtube,
            "From: a@b.test\nTo: c@d.test\nSubject: Out of Office\nAuto-Submitted: auto-replied\n\
             Date: Fri, 04 Dec 2026 10:00:00 +0000\nMessage-ID: <g@b.test>\n\n\
             XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\n",
        )
        .unwrap();
        let mut out = Vec::new();
        check(
            &cfg,
            std::slice::from_ref(&gtube),
            false,
            0,
            cfg.policy.spam_level,
            &mut out,
            &mut Vec::new(),
        )
        .unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.contains(": as/spam ")
                && out.contains(
                    "formal=Auto-Submitted (automatic, but over the probable threshold: judged by its score)"
                ),
            "{out}"
        );
        // A damaged snapshot names itself and the way out.
        std::fs::write(
            cfg.spam.dir.join(crate::check::spam::knowledge::SITE),
            "not a model",
        )
        .unwrap();
        let e = learn(&cfg, &[], std::slice::from_ref(&ooo), &mut Vec::new()).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "the snapshot {} cannot be read (not a Mailward spam model: no model header); move it \
                 away and `mailward spam import` your last export (`mailward spam export` writes one), \
                 or remove it to start learning over; a running daemon picks either up within seconds",
                cfg.spam.dir.join("site.model").display()
            )
        );
    }
}
