//! The configuration: reading `mailward.toml` (or the embedded default),
//! checking it, and the typed [`Config`] the rest of the daemon reads.
//!
//! Loading never stops at the first mistake: TOML syntax errors, unknown
//! keys, bad values and rules between keys are all collected and returned
//! together as [`ConfigErrors`], one `FILE:LINE: key: problem` line each.
//! This module does not watch files or reload: `SIGHUP` handling calls
//! [`load`] again and keeps the old [`Config`] if it fails.
//!
//! Inside: `raw` is the TOML layout (serde, every value still raw),
//! `validate` turns it into the types of `types` with the defaults of
//! DESIGN section 4, `locate` finds the line of a key, and `units`,
//! `pattern` and `rules` are the value syntaxes.

/// Calls `$cb!` with `$args` followed by every `[policy]` key and its type.
/// `[policy]`, `[group.NAME]` (each key an `Option` there), the raw layout
/// and the reader are all generated from this one list.
macro_rules! for_policy_keys {
    ($cb:ident ! ( $($args:tt)* )) => {
        $cb! { $($args)*
            check_av: bool,
            check_spam: bool,
            spam_level: SpamLevel,
            mark_subject: Vec<Status>,
            subject_prefix: BTreeMap<String, String>,
            add_headers: bool,
            action_infected: Action,
            action_suspicious: Action,
            action_protected: Action,
            action_error: Action,
            action_filtered: Action,
            reject: Vec<Status>,
            block: Vec<Status>,
            quarantine: Vec<Status>,
            notify_sender: Vec<Status>,
            notify_recipients: Vec<Status>,
            notify_admin: Vec<Status>,
            admin_address: String,
            notify_templates: TemplatesDir,
            include_by_name: Vec<Pattern>,
            exclude_by_name: Vec<Pattern>,
            include_by_mime: Vec<Pattern>,
            exclude_by_mime: Vec<Pattern>,
            max_scan_depth: u32,
            max_unpacked_size: ByteSize,
        }
    };
}

mod locate;
mod pattern;
mod raw;
mod restart;
pub mod rules;
mod types;
mod units;
mod validate;

use std::fmt;
use std::path::Path;

pub use pattern::{DomainPattern, Pattern};
pub use restart::{keep_restart_only, RestartOnly};
pub use rules::{first_match, Matcher, Rule, RuleAction, Subject};
pub use types::*;
pub use units::{ByteSize, Dur, UnitError};

use locate::{KeyPath, Locator, Seg};

/// The embedded default configuration, fully commented: what `mailward run`
/// uses without `--config`, and what `mailward config default` prints.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// `server.data_dir` when the file leaves it out (relative to the working
/// directory, as in the embedded default). One constant, because the CLI
/// finds the admin socket from it without loading the whole file.
pub const DEFAULT_DATA_DIR: &str = "mailward-data";

/// The origin name of the embedded default.
pub const DEFAULT_ORIGIN: &str = "<default>";

/// One thing wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The file (or `"<default>"`).
    pub file: String,
    /// 1-based line; 0 when no line applies (an unreadable file, or a key
    /// that is not written anywhere).
    pub line: usize,
    /// The dotted key, e.g. `limits.max_message_size` or `route[1].to`;
    /// empty when the problem is not about one key (a syntax error).
    pub key: String,
    /// What is wrong, as a phrase: `expected a size like "20MiB", got "big"`.
    pub problem: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No line applies: "FILE: problem", not a line 0 that no editor
        // can go to.
        if self.line == 0 && self.key.is_empty() {
            write!(f, "{}: {}", self.file, self.problem)
        } else if self.line == 0 {
            write!(f, "{}: {}: {}", self.file, self.key, self.problem)
        } else if self.key.is_empty() {
            write!(f, "{}:{}: {}", self.file, self.line, self.problem)
        } else {
            write!(
                f,
                "{}:{}: {}: {}",
                self.file, self.line, self.key, self.problem
            )
        }
    }
}

impl ConfigProblem {
    /// The problem as a warning: `FILE:LINE: warning: key: problem`, as
    /// `check-config` prints it.
    pub fn warning(&self) -> String {
        let at = match self.line {
            0 => self.file.clone(),
            line => format!("{}:{line}", self.file),
        };
        match self.key.as_str() {
            "" => format!("{at}: warning: {}", self.problem),
            key => format!("{at}: warning: {key}: {}", self.problem),
        }
    }
}

/// Every problem found in a configuration, in the order of the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", lines(.0))]
pub struct ConfigErrors(pub Vec<ConfigProblem>);

fn lines(problems: &[ConfigProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The line of a top-level table's key (`("server", "user")`) in
/// configuration `text`; 0 when it is not written there.
pub fn line_of_key(text: &str, table: &str, key: &str) -> usize {
    Locator::new(text).line_of(&KeyPath::root(table).key(key))
}

/// The line of `key` in the `n`th table of the array of tables `array`
/// (`[[route]]`), or of that table's header when the key is not written.
pub fn line_of_nth_key(text: &str, array: &str, n: usize, key: &str) -> usize {
    Locator::new(text).line_of(&KeyPath::root(array).index(n).key(key))
}

/// Reads and checks the configuration file at `path`, or the embedded
/// default when `path` is `None`.
pub fn load(path: Option<&Path>) -> Result<Config, ConfigErrors> {
    let Some(path) = path else {
        return parse(DEFAULT_TOML, DEFAULT_ORIGIN);
    };
    let origin = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, &origin),
        Err(e) => Err(ConfigErrors(vec![ConfigProblem {
            file: origin,
            line: 0,
            key: String::new(),
            problem: unreadable(path, &e),
        }])),
    }
}

/// Why the file cannot be read, and what to do: a file this user may not
/// read names the user, the file's owner, group and mode (a daemon reading
/// it after giving up root, or a monitoring user outside the group, is
/// not the root who checked it with `check-config`).
fn unreadable(path: &Path, e: &std::io::Error) -> String {
    use std::os::unix::fs::MetadataExt;
    match e.kind() {
        // A stale MAILWARD_CONFIG in a profile is not a --config the
        // reader typed (walkAI 11).
        std::io::ErrorKind::NotFound
            if std::env::var_os("MAILWARD_CONFIG").is_some_and(|v| Path::new(&v) == path) =>
        {
            format!(
                "cannot read the configuration named by MAILWARD_CONFIG: {e}; set \
                 MAILWARD_CONFIG to an existing file, or give --config one \
                 (`mailward config default > FILE` writes a commented one)"
            )
        }
        std::io::ErrorKind::NotFound => format!(
            "cannot read the configuration: {e}; give --config an existing file \
             (`mailward config default > FILE` writes a commented one)"
        ),
        std::io::ErrorKind::PermissionDenied => {
            let me = crate::ops::privileges::current_user();
            let file = std::fs::metadata(path).ok().map(|m| {
                let user = nix::unistd::User::from_uid(m.uid().into())
                    .ok()
                    .flatten()
                    .map_or_else(|| m.uid().to_string(), |u| u.name);
                let group = nix::unistd::Group::from_gid(m.gid().into())
                    .ok()
                    .flatten()
                    .map_or_else(|| m.gid().to_string(), |g| g.name);
                (user, group, m.mode() & 0o7777)
            });
            match file {
                // The group may read it: joining the group is the way.
                Some((user, group, mode)) if mode & 0o040 != 0 => format!(
                    "cannot read the configuration as {me}: {e} (the file is {user}:{group} {mode:04o}); \
                     run as root or as a member of group {group}, or make the file readable by {me} \
                     (the package's is root:mailward 0640)"
                ),
                Some((user, group, mode)) => format!(
                    "cannot read the configuration as {me}: {e} (the file is {user}:{group} {mode:04o}, \
                     closed to its group); run as root, or make it readable by {me}: give it the \
                     daemon's group and mode 0640 (the package's is root:mailward 0640)"
                ),
                None => format!(
                    "cannot read the configuration as {me}: {e} (a directory on the way may \
                     not be open to {me}); run as root, or open the path to {me}"
                ),
            }
        }
        // walkAW F9: the OS's and the decoder's words alone.
        std::io::ErrorKind::IsADirectory => "cannot read the configuration: it is a directory; \
            give --config the file (`mailward config default > FILE` writes a commented one)"
            .to_string(),
        std::io::ErrorKind::InvalidData => "cannot read the configuration: it is not text in \
            UTF-8 (is it the configuration file? `mailward config default > FILE` writes a \
            commented one)"
            .to_string(),
        _ => format!("cannot read the configuration: {e}"),
    }
}

/// Parses and checks configuration `text`; `origin` names it in messages
/// and becomes [`Config::origin`].
pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigErrors> {
    let locator = Locator::new(text);
    let mut ctx = validate::Ctx::new(&locator, origin);

    let mut unknown: Vec<Vec<Seg>> = Vec::new();
    let raw: Result<raw::RawConfig, toml::de::Error> =
        serde_ignored::deserialize(toml::Deserializer::new(text), |path| {
            unknown.push(segments(&path))
        });
    for segs in unknown {
        let hint = match segs.split_last() {
            Some((Seg::Key(k), parent)) => unknown_key_hint(k, parent),
            _ => String::new(),
        };
        ctx.report(&KeyPath(segs), format!("unknown key{hint}"));
    }

    let config = match raw {
        Ok(raw) => Some(validate::build(&mut ctx, &raw)),
        Err(e) => {
            let (line, key) = match e.span() {
                Some(span) => (locator.line_at(span.start), locator.key_at(span.start)),
                None => (0, String::new()),
            };
            let mut said = tidy_serde_message(e.message());
            // toml calls a control character in a string an "invalid
            // basic string" too: said as such, not as a missing quote
            // (walkBE 5).
            if e.message().contains("invalid basic string")
                || e.message().contains("invalid literal string")
            {
                // A CRLF file's CR ends the line; it is no character of it.
                let text_line = text
                    .lines()
                    .nth(line.saturating_sub(1))
                    .unwrap_or("")
                    .trim_end_matches('\r');
                if let Some(c) = text_line.chars().find(|c| c.is_control() && *c != '\t') {
                    said = format!(
                        "a string holds the control character U+{:04X}, which TOML does not allow there: remove it, or write it as \\u{:04X} in double quotes",
                        c as u32, c as u32
                    );
                }
            }
            ctx.report_line(line, key, said);
            None
        }
    };

    let mut problems = ctx.problems;
    match config {
        Some(mut config) if problems.is_empty() => {
            config.warnings = ctx.warnings;
            config.warnings.sort_by_key(|p| p.line);
            Ok(config)
        }
        _ => {
            problems.sort_by_key(|p| p.line);
            Err(ConfigErrors(problems))
        }
    }
}

/// The key path of a `serde_ignored` path.
fn segments(path: &serde_ignored::Path<'_>) -> Vec<Seg> {
    use serde_ignored::Path;
    let mut segs = match path {
        Path::Root => return Vec::new(),
        Path::Seq { parent, .. }
        | Path::Map { parent, .. }
        | Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => segments(parent),
    };
    match path {
        Path::Seq { index, .. } => segs.push(Seg::Index(*index)),
        Path::Map { key, .. } => segs.push(Seg::Key(key.clone())),
        _ => {}
    }
    segs
}

/// One line of a message from toml/serde, without the names of our
/// internal types.
fn tidy_serde_message(message: &str) -> String {
    let mut out = message.trim().replace('\n', "; ");
    for (from, to) in [
        ("expected struct RawConfig", "expected a table"),
        ("expected struct RawRoute", "expected a table ([[route]])"),
        (
            "expected struct RawGroup",
            "expected a table ([group.NAME])",
        ),
        ("expected a map", "expected a table"),
        ("invalid type: sequence", "invalid type: array"),
        ("invalid type: map", "invalid type: table"),
        // `[route]` for `[[route]]` (walkAW F14).
        (
            "invalid type: table, expected a sequence",
            "a single table where a list is wanted (a list of tables is written with two brackets: [[route]], not [route])",
        ),
        // `max_hops 50`, the `=` forgotten (walkAW F6).
        (
            "expected `.`, `=`",
            "a key must be followed by = and its value (key = value)",
        ),
        // toml's names for a string that does not end (walkAC: "invalid
        // basic string" said neither what nor where to look).
        (
            "invalid basic string",
            "a string that does not end on its line (a closing \" missing?)",
        ),
        (
            "invalid literal string",
            "a string in single quotes that does not end on its line (a closing ' missing?)",
        ),
    ] {
        out = out.replace(from, to);
    }
    // A table written twice: toml says "invalid table header; duplicate
    // key `server` in document root" (walkAI 10).
    const TWICE: &str = "invalid table header; duplicate key `";
    if let Some(at) = out.find(TWICE) {
        let rest = &out[at + TWICE.len()..];
        if let Some(end) = rest.find('`') {
            let name = rest[..end].to_string();
            let tail = rest[end + 1..]
                .split_once(';')
                .map_or(String::new(), |(_, t)| format!(";{t}"));
            out.replace_range(
                at..,
                &format!("[{name}] is written twice: a table is written once, merge the two{tail}"),
            );
        }
    }
    while let Some(at) = out.find("expected struct Raw") {
        let end = out[at..]
            .find([',', ';', ')'])
            .map_or(out.len(), |e| at + e);
        out.replace_range(at..end, "expected a table");
    }
    if out.is_empty() {
        // toml gives no text for some syntax errors (a bare CR in a
        // comment, found by the config_load fuzz target); a problem line
        // must still say what is wrong.
        out = "TOML syntax error (a bare carriage return, or a character TOML does not allow here)"
            .into();
    }
    out
}

/// What to say after "unknown key" for `name` in the table at `parent`: a
/// close spelling of a key of that table, and the tables where `name` is a
/// key, so that a key put in the wrong section (`spam_level` under
/// `[spam]`) says where it goes instead of only that it is wrong.
fn unknown_key_hint(name: &str, parent: &[Seg]) -> String {
    let here = table_label(parent);
    let mut places: Vec<&str> = Vec::new();
    for (label, keys) in raw::tables() {
        if Some(label) != here && keys.contains(&name) && !places.contains(&label) {
            places.push(label);
        }
    }
    let near = closest(name, raw::known_keys(parent));
    match (near, places.as_slice()) {
        (None, []) => String::new(),
        (Some(k), []) => format!(" (did you mean `{k}`?)"),
        (None, places) => format!(" ({name} belongs in {})", either(places)),
        (Some(k), places) => format!(
            " (did you mean `{k}`? {name} is a key of {})",
            either(places)
        ),
    }
}

/// The label [`raw::tables`] gives the table at `parent`; `None` for the
/// root or a place that is no table.
fn table_label(parent: &[Seg]) -> Option<&'static str> {
    match parent {
        [Seg::Key(s), Seg::Index(_)] if s == "route" => Some("[[route]]"),
        [Seg::Key(s), Seg::Key(_)] if s == "group" => Some("a [group.NAME]"),
        [Seg::Key(s)] => raw::tables()
            .into_iter()
            .map(|(label, _)| label)
            .find(|label| label.strip_prefix('[').and_then(|l| l.strip_suffix(']')) == Some(s)),
        _ => None,
    }
}

/// `a`, `a or b`, `a, b or c`.
fn either(items: &[&str]) -> String {
    match items.split_last() {
        None => String::new(),
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// The name in `known` closest to `name`, if within 2 edits.
fn closest<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (edit_distance(name, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests;
