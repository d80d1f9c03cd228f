//! The signature bases: a directory of YARA rule files (`*.yar`, `*.yara`)
//! and a `manifest.toml` saying which release it is. This module reads the
//! manifest (version, release time, record count) for statistics, SNMP and
//! traps, compiles the rules for the scanner, and installs, backs up and
//! rolls back whole sets. Using the compiled rules is the scanner's part.
//!
//! Every file is compiled in its own namespace (the file name without
//! extension), so two files may use the same rule name. Two string
//! variables are declared for every set: `filename` (the attachment or
//! archive member name, "" when there is none) and `mime_type`.
//! `manifest.toml`:
//! ```toml
//! version = "2026.11.24.1"
//! released = "2026-11-24T00:00:00Z"   # RFC 3339
//! records = 1204
//! checksum = "sha256:..."             # optional, see [`checksum`]
//! ```

use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasesInfo {
    pub version: String,
    /// Unix time of the release.
    pub released: i64,
    pub records: u64,
    /// Unix time they were loaded.
    pub loaded_at: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum BasesError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {problem}")]
    Manifest { path: PathBuf, problem: String },
    #[error("{problem}")]
    Compile { problem: String },
    #[error("{path}: abandoned: the source did not answer in time (a hung network mount?)")]
    Abandoned { path: PathBuf },
    #[error(
        "the set offered ({offered}, released {offered_on}) is older than the one in use \
         ({in_use}, released {in_use_on}): a mirror that lags behind? To go back on \
         purpose, use `mailward bases rollback`, or give --allow-older"
    )]
    Older {
        offered: String,
        offered_on: String,
        in_use: String,
        in_use_on: String,
    },
}

/// The variables every rule set may use; the scanner sets them per object.
pub const GLOBALS: &[&str] = &["filename", "mime_type"];

/// The rule files of `dir`, sorted by name (the compile order).
fn rule_files(dir: &Path) -> Result<Vec<PathBuf>, BasesError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| BasesError::Read {
            path: dir.to_path_buf(),
            source,
        })?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yar" || x == "yara"))
        .collect();
    files.sort();
    Ok(files)
}

/// A yara-x report on one line: "error[E001]: ... at FILE:LINE:COL". The
/// whole report (with a source excerpt) would not fit a log line or the
/// 255 octets of mwUpdateStatus.
fn one_line(report: &str) -> String {
    let mut lines = report.lines().map(str::trim);
    let title = lines.next().unwrap_or("compile error").to_string();
    match lines.find_map(|l| l.strip_prefix("-->")) {
        Some(at) => format!("{title} at {}", at.trim()),
        None => title,
    }
}

/// The YARA modules built into this binary (the yara-x features in the
/// workspace Cargo.toml): what a rule may `import`.
pub const BUILT_IN_MODULES: &[&str] = &["console", "hash", "math", "string", "time"];

/// A compile error on one line; an `import` of a module that is not built
/// in says so, rather than yara-x's bare "unknown module" (most public rule
/// feeds import `pe`, `hash` or `math`, and an administrator's first
/// update failed on it without a word why: walkZ 2).
fn compile_problem(e: &yara_x::errors::CompileError) -> String {
    let line = one_line(&e.to_string());
    if !matches!(e, yara_x::errors::CompileError::UnknownModule(_)) {
        return line;
    }
    let module = line.split('`').nth(1).unwrap_or("the module").to_string();
    let available = if BUILT_IN_MODULES.is_empty() {
        "this Mailward is built without YARA modules".to_string()
    } else {
        format!(
            "this Mailward is built with the YARA modules {} only",
            BUILT_IN_MODULES.join(", ")
        )
    };
    format!(
        "{line}: {available}, `import \"{module}\"` is not available; remove the \
import and the rules that use the module (see docs/bases.md)"
    )
}

/// Compiles the rules of `dir`; the error names the file, line and column.
/// Returns the rules and how many there are.
pub fn compile(dir: &Path) -> Result<(yara_x::Rules, usize), BasesError> {
    let files = rule_files(dir)?;
    if files.is_empty() {
        return Err(BasesError::Manifest {
            path: dir.to_path_buf(),
            problem: "no .yar rule files".into(),
        });
    }
    let mut sources = Vec::with_capacity(files.len());
    for file in &files {
        let text = std::fs::read_to_string(file).map_err(|source| BasesError::Read {
            path: file.clone(),
            source,
        })?;
        sources.push((file.clone(), text));
    }
    compile_sources(&sources)
}

/// The built-in default set, compiled from the binary itself, with its
/// manifest: what `mailward scan` checks with on a host where no set is
/// installed (nothing is written to disk for it).
pub fn compile_builtin() -> Result<(yara_x::Rules, Option<BasesInfo>), BasesError> {
    let sources: Vec<(PathBuf, String)> = DEFAULT_SET
        .iter()
        .filter(|(name, _)| name.ends_with(".yar") || name.ends_with(".yara"))
        .map(|(name, text)| (PathBuf::from(name), text.to_string()))
        .collect();
    let (rules, _) = compile_sources(&sources)?;
    let info = DEFAULT_SET
        .iter()
        .find(|(name, _)| *name == "manifest.toml")
        .and_then(|(_, text)| toml::from_str::<Manifest>(text).ok())
        .map(|m| BasesInfo {
            version: m.version,
            released: chrono::DateTime::parse_from_rfc3339(&m.released)
                .map_or(0, |t| t.timestamp()),
            records: m.records,
            loaded_at: chrono::Utc::now().timestamp(),
        });
    Ok((rules, info))
}

/// Compiles rule texts, each (its file, its text) in its own namespace
/// (the file name without extension) in the order given.
fn compile_sources(sources: &[(PathBuf, String)]) -> Result<(yara_x::Rules, usize), BasesError> {
    let mut compiler = yara_x::Compiler::new();
    for g in GLOBALS {
        compiler
            .define_global(g, "")
            .map_err(|e| BasesError::Compile {
                problem: format!("declaring {g}: {e}"),
            })?;
    }
    for (file, text) in sources {
        // The whole file name: a.yar and a.yara are two files, two
        // namespaces (walkS finding 9).
        let namespace = file
            .file_name()
            .map(|s| {
                s.to_string_lossy()
                    .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
            })
            .unwrap_or_default();
        compiler.new_namespace(&namespace);
        let origin = file.display().to_string();
        compiler
            .add_source(yara_x::SourceCode::from(text.as_str()).with_origin(origin.as_str()))
            .map_err(|e| BasesError::Compile {
                problem: compile_problem(&e),
            })?;
    }
    // yara-x's warnings (a slow pattern, a condition always true or
    // false) do not stop a set, but they are the one hint that a rule
    // slows every scan or cannot work as meant (walkAX 8).
    for w in compiler.warnings() {
        tracing::warn!(target: "app", warning = %one_line(&w.to_string()),
            "A signature base rule compiles with a warning.");
    }
    let rules = compiler.build();
    let count = rules.iter().len();
    if count == 0 {
        // A feed cut to empty files compiles; with no rule nothing is
        // found, and every message would be called clean (walkAX 1).
        return Err(BasesError::Compile {
            problem: "the rule files hold no rule (a feed cut short?): a set without rules finds \
nothing"
                .into(),
        });
    }
    Ok((rules, count))
}

/// Clean objects no rule of a real set matches: nothing, a short text and a
/// small plain message. A set with a rule that matches one of them (a
/// `condition: true` left in a feed) would make every message av/infected,
/// replace its parts and notify every sender (walkAX 3), so it is refused.
const CLEAN_PROBES: &[&[u8]] = &[
    b"",
    b"hello\r\n",
    b"From: a@example.com\r\nTo: b@example.com\r\nSubject: lunch\r\n\r\nLunch at noon?\r\n",
];

/// The first rule of `rules` that matches a clean probe, as NAMESPACE.RULE.
fn matches_clean(rules: &yara_x::Rules) -> Option<String> {
    let mut scanner = yara_x::Scanner::new(rules);
    // A few bytes each: a rule that takes longer loops on nothing, and the
    // update must not hang on it.
    scanner.set_timeout(std::time::Duration::from_secs(5));
    for probe in CLEAN_PROBES {
        let Ok(results) = scanner.scan(probe) else {
            continue;
        };
        if let Some(rule) = results.matching_rules().next() {
            return Some(format!("{} (in {})", rule.identifier(), rule.namespace()));
        }
    }
    None
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    version: String,
    released: String,
    records: u64,
    /// `sha256:` and 64 hex digits over the rule files ([`checksum`]):
    /// a set cut short or altered on the way is refused.
    #[serde(default)]
    checksum: Option<String>,
}

/// SHA-256 as the TLS stack already provides it (ring, through rustls):
/// the checksum needs no crate of its own.
fn sha256() -> &'static dyn rustls::crypto::hash::Hash {
    match rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256 {
        rustls::SupportedCipherSuite::Tls13(s) => s.common.hash_provider,
        rustls::SupportedCipherSuite::Tls12(s) => s.common.hash_provider,
    }
}

/// The checksum of the set in `dir`, as the manifest gives it:
/// `sha256:` and the SHA-256 (lower-case hex) of the contents of its rule
/// files (`*.yar`, `*.yara`) one after the other in name order (byte
/// order, the compile order); what a publisher gets with
/// `cat $(LC_ALL=C ls *.yar *.yara 2>/dev/null) | sha256sum`.
pub fn checksum(dir: &Path) -> Result<String, BasesError> {
    let mut hash = sha256().start();
    for file in rule_files(dir)? {
        let bytes = std::fs::read(&file).map_err(|source| BasesError::Read {
            path: file.clone(),
            source,
        })?;
        hash.update(&bytes);
    }
    let digest = hash.finish();
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("sha256:{hex}"))
}

/// Checks the manifest's `checksum` (when it has one) against the rule
/// files of `dir`; the refusal gives the value the files have, so that a
/// publisher can fill it in.
fn verify_checksum(dir: &Path, path: &Path, declared: &str) -> Result<(), BasesError> {
    let wanted = declared.trim().to_ascii_lowercase();
    let well_formed = wanted
        .strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    if !well_formed {
        return Err(BasesError::Manifest {
            path: path.to_path_buf(),
            problem: format!(
                "checksum: expected \"sha256:\" and 64 hex digits, found {declared:?}"
            ),
        });
    }
    let actual = checksum(dir)?;
    if actual != wanted {
        return Err(BasesError::Manifest {
            path: path.to_path_buf(),
            problem: format!(
                "checksum mismatch: the manifest says {wanted}, the rule files give {actual} (a set cut short or altered? docs/bases.md says what it covers)"
            ),
        });
    }
    Ok(())
}

/// Reads `DIR/manifest.toml`; Ok(None) when the directory has no manifest
/// (no bases installed).
pub fn read(dir: &Path) -> Result<Option<BasesInfo>, BasesError> {
    let path = dir.join("manifest.toml");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(BasesError::Read { path, source }),
    };
    // The message alone, on one line: it goes into logs, CLI output and
    // the mwUpdateStatus text (255 octets), where a source snippet would
    // push the cause out.
    // Every problem of a manifest that reads as TOML, at once and in
    // words; what is left (broken TOML) in the parser's.
    if let Some(problem) = manifest_problems(&text) {
        return Err(BasesError::Manifest { path, problem });
    }
    let m: Manifest = toml::from_str(&text).map_err(|e| BasesError::Manifest {
        path: path.clone(),
        problem: e.message().replace('\n', " "),
    })?;
    let released = chrono::DateTime::parse_from_rfc3339(&m.released)
        .map_err(|_| BasesError::Manifest {
            path: path.clone(),
            problem: format!("released {}", NOT_RFC3339),
        })?
        .timestamp();
    if let Some(declared) = &m.checksum {
        verify_checksum(dir, &path, declared)?;
    }
    Ok(Some(BasesInfo {
        version: m.version,
        released,
        records: m.records,
        loaded_at: chrono::Utc::now().timestamp(),
    }))
}

/// What a `released` that is no time is told (the parser's own words, such
/// as "premature end of input", said nothing of the form wanted).
const NOT_RFC3339: &str = "is not an RFC 3339 time (like released = \"2026-11-24T00:00:00Z\")";

/// Every problem of a manifest, in words (walkAW F20: serde said the
/// first only, as "invalid type: integer `5`, expected a string"; walkAZ
/// F9: a blank version was put in use as "Bases  (0 records)"), joined by
/// "; "; None when there is none, or when its TOML itself is broken (then
/// the TOML parser's message says where).
fn manifest_problems(text: &str) -> Option<String> {
    let table: toml::Table = toml::from_str(text).ok()?;
    let mut out = Vec::new();
    let kind = |v: &toml::Value| match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "a number",
        toml::Value::Float(_) => "a decimal number",
        toml::Value::Boolean(_) => "true or false",
        toml::Value::Datetime(_) => "a bare date (not quoted)",
        toml::Value::Array(_) => "a list",
        toml::Value::Table(_) => "a table",
    };
    for (key, wanted, example) in [
        ("version", "a string", "version = \"2026.11.24.1\""),
        (
            "released",
            "a string",
            "released = \"2026-11-24T00:00:00Z\"",
        ),
        ("records", "a number", "records = 120"),
    ] {
        match table.get(key) {
            None => out.push(format!("{key} is missing (like {example})")),
            Some(v) if kind(v) != wanted => out.push(format!(
                "{key} is {} where {wanted} is expected (like {example})",
                kind(v)
            )),
            Some(v) if v.as_integer().is_some_and(|n| n < 0) => {
                out.push(format!("{key} is negative (like {example})"))
            }
            Some(_) => {}
        }
    }
    // Said with the others, not only once they are fixed (walkAZ F10).
    if let Some(text) = table.get("released").and_then(toml::Value::as_str) {
        if chrono::DateTime::parse_from_rfc3339(text).is_err() {
            out.push(format!("released {NOT_RFC3339}"));
        }
    }
    if let Some(text) = table.get("version").and_then(toml::Value::as_str) {
        if text.trim().is_empty() {
            out.push("version is empty (like version = \"2026.11.24.1\")".into());
        }
    }
    if let Some(v) = table.get("checksum").filter(|v| !v.is_str()) {
        out.push(format!(
            "checksum is {} where a string is expected (like checksum = \"sha256:...\")",
            kind(v)
        ));
    }
    let unknown: Vec<&str> = table
        .keys()
        .map(String::as_str)
        .filter(|k| !["version", "released", "records", "checksum"].contains(k))
        .collect();
    if !unknown.is_empty() {
        out.push(format!(
            "unknown key(s) {} (a manifest has version, released, records and checksum)",
            unknown.join(", ")
        ));
    }
    (!out.is_empty()).then(|| out.join("; "))
}

/// The warning when the manifest's `records` is not the number of rules
/// the set compiled to (a feed cut short, or a wrong manifest): statistics
/// and SNMP report the manifest's count, so the difference is said.
pub fn records_mismatch(info: &BasesInfo, compiled: usize) -> Option<String> {
    (info.records != compiled as u64).then(|| {
        format!(
            "the manifest of bases {} says {} records, but the set has {compiled} rules (a feed cut short, or a wrong manifest?); statistics and SNMP report the manifest's {}",
            info.version, info.records, info.records
        )
    })
}

/// True when bases are loaded and older than `max_age` at `now`.
pub fn is_obsolete(info: Option<&BasesInfo>, max_age: std::time::Duration, now: i64) -> bool {
    info.is_some_and(|b| now - b.released > max_age.as_secs() as i64)
}

/// What an update or rollback that put an obsolete set in use adds to its
/// answer (walkAY S1: "are in use" and exit 0, and the obsolete warning
/// only in the log ten seconds later): its age, against
/// `bases.obsolete_after`. None for a set that is not obsolete.
pub fn obsolete_note(info: &BasesInfo, max_age: std::time::Duration, now: i64) -> Option<String> {
    is_obsolete(Some(info), max_age, now).then(|| {
        format!(
            " They are obsolete: released {} ago, beyond bases.obsolete_after ({}); mwObsoleteBases follows.",
            crate::text::age(now - info.released),
            crate::config::Dur(max_age)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_manifest_and_judges_its_age() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        std::fs::write(
            dir.path().join("manifest.toml"),
            "version = \"1\"\nreleased = \"2026-01-01T00:00:00Z\"\nrecords = 12\n",
        )
        .unwrap();
        let info = read(dir.path()).unwrap().unwrap();
        assert_eq!(info.records, 12);
        assert_eq!(info.released, 1_767_225_600);
        let week = std::time::Duration::from_secs(7 * 86400);
        assert!(is_obsolete(Some(&info), week, info.released + 8 * 86400));
        assert!(!is_obsolete(Some(&info), week, info.released + 86400));
        assert!(!is_obsolete(None, week, 0));
        std::fs::write(dir.path().join("manifest.toml"), "version = 1\n").unwrap();
        assert!(matches!(read(dir.path()), Err(BasesError::Manifest { .. })));
        // walkAW F20: every problem, in words, not serde's first.
        let problem_of = |text: &str| {
            std::fs::write(dir.path().join("manifest.toml"), text).unwrap();
            read(dir.path())
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let e = problem_of("version = 5\nreleased = 2026-11-24\nrecord = 3\n");
        assert!(
            e.ends_with(
                "version is a number where a string is expected (like version = \"2026.11.24.1\"); \
released is a bare date (not quoted) where a string is expected (like released = \"2026-11-24T00:00:00Z\"); \
records is missing (like records = 120); \
unknown key(s) record (a manifest has version, released, records and checksum)"
            ),
            "{e}"
        );
        let e = problem_of("version = \"1\"\nreleased = \"2026-11-24T00:00:00Z\"\nrecords = -2\n");
        assert!(
            e.ends_with("records is negative (like records = 120)"),
            "{e}"
        );
        // walkAZ F9, F10: a blank version, and a released that is no
        // time said with the other problems.
        let e = problem_of("version = \" \"\nreleased = \"2026-11-24T00:00:00Z\"\nrecords = 1\n");
        assert!(
            e.ends_with("version is empty (like version = \"2026.11.24.1\")"),
            "{e}"
        );
        let e = problem_of("version = \"1\"\nreleased = \"yesterday\"\n");
        assert!(
            e.ends_with("records is missing (like records = 120); released is not an RFC 3339 time (like released = \"2026-11-24T00:00:00Z\")"),
            "{e}"
        );
        // Broken TOML keeps the parser's words.
        let e = problem_of("version = \"1\n");
        assert!(!e.contains("is missing"), "{e}");
    }

    /// walkAY S1: an update or rollback onto an obsolete set says so.
    #[test]
    fn an_obsolete_set_put_in_use_is_said() {
        let info = BasesInfo {
            version: "2026.11.26.1".into(),
            released: 1_000_000,
            records: 5,
            loaded_at: 0,
        };
        let week = std::time::Duration::from_secs(7 * 86_400);
        assert_eq!(
            obsolete_note(&info, week, 1_000_000 + 11 * 86_400 + 3600),
            Some(" They are obsolete: released 11d 1h ago, beyond bases.obsolete_after (7d); mwObsoleteBases follows.".into())
        );
        assert_eq!(obsolete_note(&info, week, 1_000_000 + 86_400), None);
    }

    #[test]
    fn a_manifest_record_count_unlike_the_rules_is_a_warning() {
        // walkL 13: `records = 1204` for a set of 6 rules went unremarked.
        let info = BasesInfo {
            version: "2026.12.04.2".into(),
            released: 0,
            records: 1204,
            loaded_at: 0,
        };
        let w = records_mismatch(&info, 6).unwrap();
        assert!(
            w.contains("says 1204 records, but the set has 6 rules"),
            "{w}"
        );
        assert_eq!(records_mismatch(&BasesInfo { records: 6, ..info }, 6), None);
    }

    #[test]
    fn the_manifest_checksum_is_verified_and_a_refusal_gives_the_right_one() {
        // walkL 10: `checksum` was parsed and never checked.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.yar"), "rule b { condition: false }\n").unwrap();
        std::fs::write(dir.path().join("a.yar"), "rule a { condition: false }\n").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a rule file\n").unwrap();
        // printf 'rule a { condition: false }\nrule b { condition: false }\n' | sha256sum
        let right = "sha256:50adee39489bf89e8cd7b84a21169e8c4774f2e80428315e92209139826cd0c9";
        assert_eq!(checksum(dir.path()).unwrap(), right);
        let manifest = |sum: &str| {
            std::fs::write(
                dir.path().join("manifest.toml"),
                format!("version = \"1\"\nreleased = \"2026-01-01T00:00:00Z\"\nrecords = 2\nchecksum = \"{sum}\"\n"),
            )
            .unwrap()
        };
        manifest(right);
        assert_eq!(validate(dir.path()).unwrap().version, "1");
        manifest(&right.to_uppercase().replace("SHA256", "sha256"));
        assert!(validate(dir.path()).is_ok(), "hex in either case");
        manifest(&format!("sha256:{}", "0".repeat(64)));
        let e = validate(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("checksum mismatch") && e.contains(&format!("the rule files give {right}")),
            "{e}"
        );
        manifest("md5:abc");
        let e = validate(dir.path()).unwrap_err().to_string();
        assert!(e.contains("expected \"sha256:\" and 64 hex digits"), "{e}");
    }
}

/// The result of an update attempt (MAILWARD-MIB's MwUpdateResult; the
/// index matches `catalogue::UPDATE_RESULTS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateResult {
    Updated = 0,
    NotNeeded = 1,
    Error = 2,
    RolledBack = 3,
}

impl UpdateResult {
    /// The documented name (docs/bases.md "Results", the label of
    /// `mailward_update_last_result`), for logs and answers.
    pub fn name(self) -> &'static str {
        match self {
            UpdateResult::Updated => "updated",
            UpdateResult::NotNeeded => "not_needed",
            UpdateResult::Error => "error",
            UpdateResult::RolledBack => "rolled_back",
        }
    }
}

/// The backup of the previous bases: `DIR.previous` beside `DIR`.
pub fn previous_dir(dir: &Path) -> PathBuf {
    PathBuf::from(format!("{}.previous", dir.display()))
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), BasesError> {
    let io = |path: &Path, source| BasesError::Read {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(to).map_err(|e| io(to, e))?;
    for entry in std::fs::read_dir(from).map_err(|e| io(from, e))? {
        let entry = entry.map_err(|e| io(from, e))?;
        let kind = entry.file_type().map_err(|e| io(&entry.path(), e))?;
        if kind.is_file() {
            let dest = to.join(entry.file_name());
            std::fs::copy(entry.path(), &dest).map_err(|e| io(&dest, e))?;
            std::fs::File::open(&dest)
                .and_then(|f| f.sync_all())
                .map_err(|e| io(&dest, e))?;
        }
    }
    std::fs::File::open(to)
        .and_then(|f| f.sync_all())
        .map_err(|e| io(to, e))
}

/// Checks a candidate set before it may replace the bases in use: a valid
/// manifest and rule files that compile.
pub fn validate(dir: &Path) -> Result<BasesInfo, BasesError> {
    // A directory that is not there is said as such, not as a missing
    // manifest in it.
    if let Err(source) = std::fs::metadata(dir) {
        return Err(BasesError::Read {
            path: dir.to_path_buf(),
            source,
        });
    }
    let info = read(dir)?.ok_or_else(|| BasesError::Manifest {
        path: dir.join("manifest.toml"),
        problem: "missing: a bases directory needs a manifest.toml".into(),
    })?;
    let nested = nested_rule_files(dir);
    if !nested.is_empty() {
        let shown: Vec<&str> = nested.iter().take(3).map(String::as_str).collect();
        let more = match nested.len() {
            n if n > 3 => format!(" and {} more", n - 3),
            _ => String::new(),
        };
        return Err(BasesError::Manifest {
            path: dir.to_path_buf(),
            problem: format!(
                "rule files in subdirectories are not read: {}{more}; a set's rule files must be \
at its top level (move them up, or leave them out of the set)",
                shown.join(", ")
            ),
        });
    }
    let (rules, _) = compile(dir)?;
    if let Some(rule) = matches_clean(&rules) {
        return Err(BasesError::Manifest {
            path: dir.to_path_buf(),
            problem: format!(
                "rule {rule} matches an empty object and a short clean text: every message \
would be av/infected; fix or remove the rule"
            ),
        });
    }
    Ok(info)
}

/// The rule files (`*.yar`, `*.yara`) in subdirectories of `dir`, as paths
/// relative to it, in name order: only the top level of a set is read, and
/// a feed unpacked with its folders lost those rules without a word
/// (walkZ 13). Symbolic links are not followed; 8 levels at most.
fn nested_rule_files(dir: &Path) -> Vec<String> {
    fn walk(dir: &Path, rel: &Path, depth: u32, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let Ok(kind) = e.file_type() else { continue };
            let rel = rel.join(e.file_name());
            if kind.is_dir() && depth < 8 {
                walk(&e.path(), &rel, depth + 1, out);
            } else if kind.is_file()
                && depth > 0
                && rel.extension().is_some_and(|x| x == "yar" || x == "yara")
            {
                out.push(rel.display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, Path::new(""), 0, &mut out);
    out
}

/// The default bases shipped inside the binary (the repository's
/// `bases/default/`): EICAR and a few suspicious patterns, so that a fresh
/// gateway scans for something before its first update.
pub const DEFAULT_SET: &[(&str, &str)] = &[
    (
        "manifest.toml",
        include_str!("../../../bases/default/manifest.toml"),
    ),
    (
        "mailward-default.yar",
        include_str!("../../../bases/default/mailward-default.yar"),
    ),
];

/// Whether a set of this version is the built-in default set (a fresh
/// gateway's, until the operator installs one): its few rules are test
/// files and file-name tricks, so when it grows obsolete the operator is
/// told to install a real set, not to "update" (there is nothing to update
/// it from but what the operator brings).
pub fn is_builtin(version: &str) -> bool {
    builtin_version().is_some_and(|v| v == version)
}

/// The version of the built-in default set.
pub fn builtin_version() -> Option<String> {
    DEFAULT_SET
        .iter()
        .find(|(name, _)| *name == "manifest.toml")
        .and_then(|(_, text)| toml::from_str::<Manifest>(text).ok())
        .map(|m| m.version)
}

/// Writes the default set into `dir` when `dir` does not exist or is
/// empty (a directory with files but no manifest is the operator's: it is
/// left alone and reported), or when it holds the default set's files torn
/// by a power cut right after an earlier install (see [`is_torn_default`]).
/// Each file and the staging directory are flushed before the rename, and
/// the parent after it, so that a power cut leaves either no set (and the
/// next start installs it) or the whole set, never empty files (walkAE 2).
/// Returns whether it did.
pub fn install_default(dir: &Path) -> Result<bool, BasesError> {
    let io = |path: &Path, source| BasesError::Read {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                if !is_torn_default(dir) {
                    return Ok(false);
                }
                tracing::warn!(target: "app", dir = %dir.display(),
                    "The built-in default bases are damaged (empty or unreadable files, as after a power cut right after they were installed): installing them again.");
                std::fs::remove_dir_all(dir).map_err(|e| io(dir, e))?;
            } else {
                std::fs::remove_dir(dir).map_err(|e| io(dir, e))?;
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(dir, e)),
    }
    let staging = PathBuf::from(format!("{}.new", dir.display()));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| io(&staging, e))?;
    }
    std::fs::create_dir_all(&staging).map_err(|e| io(&staging, e))?;
    for (name, text) in DEFAULT_SET {
        let path = staging.join(name);
        write_synced(&path, text.as_bytes()).map_err(|e| io(&path, e))?;
    }
    crate::files::sync_dir(&staging).map_err(|e| io(&staging, e))?;
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
    }
    std::fs::rename(&staging, dir).map_err(|e| io(&staging, e))?;
    sync_parent(dir).map_err(|e| io(dir, e))?;
    Ok(true)
}

/// Writes `bytes` to a new `path` and flushes it to the disk.
fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Flushes the directory holding `path`, so that a rename to `path`
/// survives a power cut.
fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => crate::files::sync_dir(parent),
        _ => crate::files::sync_dir(Path::new(".")),
    }
}

/// Whether `dir` holds nothing but files named as the built-in default
/// set's, and they do not make a set: a file is empty, or the manifest is
/// missing or does not parse. That is what a power cut leaves when it
/// follows an install whose data had not reached the disk (walkAE 2), and
/// no operator's set looks like it; left alone, it would keep the gateway
/// without virus scanning until someone deletes the directory.
fn is_torn_default(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    let mut any_empty = false;
    for entry in entries {
        let Ok(entry) = entry else {
            return false;
        };
        let name = entry.file_name();
        let ours = DEFAULT_SET.iter().any(|(n, _)| name.to_str() == Some(*n));
        let Ok(meta) = entry.metadata() else {
            return false;
        };
        if !ours || !meta.is_file() {
            return false;
        }
        any_empty |= meta.len() == 0;
    }
    any_empty || !matches!(read(dir), Ok(Some(_)))
}

/// Where an update comes from: a directory or a `file://` URL.
pub fn source_dir(from: &str) -> PathBuf {
    PathBuf::from(from.strip_prefix("file://").unwrap_or(from))
}

/// `--from` as the daemon must be given it: the daemon reads the set, from
/// its own working directory, so a relative path is made absolute here, on
/// the side of the person who typed it (a `file://` URL is left as it is).
pub fn absolute_source(from: &str) -> String {
    if from.starts_with("file://") || Path::new(from).is_absolute() {
        return from.to_string();
    }
    std::path::absolute(from).map_or_else(|_| from.to_string(), |p| p.display().to_string())
}

/// Installs the set in `from` as the bases in `dir`, keeping the current
/// set as `DIR.previous`. The swap is two renames, so the bases in use are
/// always a whole set. A set released before the one in use is refused
/// unless `allow_older` (an update source that lags behind must not take
/// the rules back); the built-in default set gives way to any set.
pub fn install(
    dir: &Path,
    from: &Path,
    allow_older: bool,
) -> Result<(UpdateResult, BasesInfo), BasesError> {
    install_unless(
        dir,
        from,
        allow_older,
        &std::sync::atomic::AtomicBool::new(false),
    )
}

/// [`install`], unless `abandoned` is set before the set is swapped in:
/// the daemon gives up on a source that does not answer (a hung NFS or
/// FUSE mount, walkS finding 4) and releases its lock, and the reading
/// thread, when the source answers at last, must not install the set then.
pub fn install_unless(
    dir: &Path,
    from: &Path,
    allow_older: bool,
    abandoned: &std::sync::atomic::AtomicBool,
) -> Result<(UpdateResult, BasesInfo), BasesError> {
    let gave_up = || {
        abandoned
            .load(std::sync::atomic::Ordering::Acquire)
            .then(|| BasesError::Abandoned {
                path: from.to_path_buf(),
            })
    };
    let new = validate(from)?;
    if let Some(e) = gave_up() {
        return Err(e);
    }
    // A release time in the future (a publisher's clock, a typo in the
    // year) would make every later, real set look older, and the set
    // would never grow obsolete (walkS finding 5).
    let tomorrow = chrono::Utc::now().timestamp() + 86_400;
    if new.released > tomorrow {
        return Err(BasesError::Manifest {
            path: from.join("manifest.toml"),
            problem: format!(
                "released {} is in the future (the publisher's clock, or a typo in the year?): \
                 refused, since every later set would look older than it",
                chrono::DateTime::from_timestamp(new.released, 0)
                    .map_or_else(|| new.released.to_string(), |t| t.to_rfc3339())
            ),
        });
    }
    if let Ok(Some(cur)) = read(dir) {
        if cur.version == new.version && cur.released == new.released {
            // The same manifest over other rule files is a re-spun or cut
            // feed: "nothing to do" would hide it (walkAX 11).
            if let (Ok(a), Ok(b)) = (checksum(dir), checksum(from)) {
                if a != b {
                    return Err(BasesError::Manifest {
                        path: from.join("manifest.toml"),
                        problem: format!(
                            "version {} is in use already, but with other rule files ({a} in \
use, {b} offered): a changed set needs a new version",
                            new.version
                        ),
                    });
                }
            }
            return Ok((UpdateResult::NotNeeded, cur));
        }
        if new.released < cur.released && !allow_older && !is_builtin(&cur.version) {
            let day = |t: i64| {
                chrono::DateTime::from_timestamp(t, 0).map_or_else(
                    || t.to_string(),
                    |d| d.format("%Y-%m-%d %H:%M UTC").to_string(),
                )
            };
            return Err(BasesError::Older {
                offered: new.version,
                offered_on: day(new.released),
                in_use: cur.version,
                in_use_on: day(cur.released),
            });
        }
    }
    let io = |path: &Path, source| BasesError::Read {
        path: path.to_path_buf(),
        source,
    };
    let staging = PathBuf::from(format!("{}.new", dir.display()));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| io(&staging, e))?;
    }
    copy_dir(from, &staging)?;
    if let Some(e) = gave_up() {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    let previous = previous_dir(dir);
    if dir.exists() {
        if previous.exists() {
            std::fs::remove_dir_all(&previous).map_err(|e| io(&previous, e))?;
        }
        std::fs::rename(dir, &previous).map_err(|e| io(dir, e))?;
    }
    std::fs::rename(&staging, dir).map_err(|e| io(&staging, e))?;
    // The two renames reach the disk before the update is reported done
    // (the files were flushed by `copy_dir`).
    sync_parent(dir).map_err(|e| io(dir, e))?;
    // A set installed on purpose ends what a rollback held back.
    let _ = std::fs::remove_file(rolled_back_marker(dir));
    Ok((UpdateResult::Updated, new))
}

/// Where a rollback notes the version it went back from, so that the
/// periodic update from `bases.update_from` does not put it in use again
/// at the next check or start (walkS finding 6): `DIR.rolled-back`.
pub fn rolled_back_marker(dir: &Path) -> PathBuf {
    PathBuf::from(format!("{}.rolled-back", dir.display()))
}

/// The version the last rollback went back from, while no set was
/// installed since.
pub fn rolled_back_from(dir: &Path) -> Option<String> {
    std::fs::read_to_string(rolled_back_marker(dir))
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Swaps the bases in use with the previous set.
pub fn rollback(dir: &Path) -> Result<BasesInfo, BasesError> {
    let previous = previous_dir(dir);
    // "None" only when there is none; a previous set that does not load is
    // said as such (`bases status` lists it as the previous set).
    if !previous.join("manifest.toml").exists() {
        return Err(BasesError::Manifest {
            path: previous,
            problem: "no previous bases to go back to".into(),
        });
    }
    let info = validate(&previous).map_err(|e| BasesError::Manifest {
        path: previous.clone(),
        problem: format!("the previous set does not load, so it cannot be put in use: {e}"),
    })?;
    let io = |path: &Path, source| BasesError::Read {
        path: path.to_path_buf(),
        source,
    };
    let swap = PathBuf::from(format!("{}.swap", dir.display()));
    if swap.exists() {
        std::fs::remove_dir_all(&swap).map_err(|e| io(&swap, e))?;
    }
    std::fs::rename(dir, &swap).map_err(|e| io(dir, e))?;
    std::fs::rename(&previous, dir).map_err(|e| io(&previous, e))?;
    std::fs::rename(&swap, &previous).map_err(|e| io(&swap, e))?;
    sync_parent(dir).map_err(|e| io(dir, e))?;
    if let Ok(Some(from)) = read(&previous) {
        let marker = rolled_back_marker(dir);
        if let Err(e) = std::fs::write(&marker, format!("{}\n", from.version)) {
            tracing::warn!(target: "admin", path = %marker.display(), error = %e,
                "Cannot note the rollback: the periodic update from bases.update_from may put the set rolled back from in use again.");
        }
    }
    Ok(info)
}

#[cfg(test)]
mod update_tests {
    use super::*;

    #[test]
    fn a_relative_source_is_made_absolute_for_the_daemon() {
        // walkF: `bases update --from nb` was read from the daemon's
        // working directory, not the one the command was typed in.
        let here = std::env::current_dir().unwrap();
        assert_eq!(absolute_source("nb"), here.join("nb").display().to_string());
        assert_eq!(absolute_source("/srv/b"), "/srv/b");
        assert_eq!(absolute_source("file://srv/b"), "file://srv/b");
    }

    #[test]
    fn a_rollback_to_a_broken_previous_set_says_so_and_swaps_nothing() {
        // walkL 12: it said "no previous bases to go back to" while
        // `bases status` listed the previous set.
        let tmp = tempfile::tempdir().unwrap();
        let av = tmp.path().join("av");
        let e = rollback(&av).unwrap_err().to_string();
        assert!(e.ends_with("no previous bases to go back to"), "{e}");
        let a = tmp.path().join("a");
        set(&a, "1");
        assert_eq!(install(&av, &a, false).unwrap().0, UpdateResult::Updated);
        let previous = previous_dir(&av);
        set(&previous, "2");
        std::fs::write(previous.join("broken.yar"), "rule x { condition: $nope }\n").unwrap();
        let e = rollback(&av).unwrap_err().to_string();
        assert!(
            e.contains("the previous set does not load, so it cannot be put in use: error[E")
                && !e.contains("no previous"),
            "{e}"
        );
        assert_eq!(read(&av).unwrap().unwrap().version, "1", "nothing swapped");
    }

    #[test]
    fn a_set_with_rule_files_in_subdirectories_is_refused_with_their_names() {
        // walkZ 13: sub/sub.yar was dropped without a word.
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        set(&a, "1");
        std::fs::create_dir_all(a.join("sub/deeper")).unwrap();
        std::fs::write(a.join("sub/README"), "not rules\n").unwrap();
        assert!(validate(&a).is_ok(), "a subdirectory without rules is fine");
        std::fs::write(a.join("sub/deeper/x.yara"), "rule x { condition: true }\n").unwrap();
        let e = validate(&a).unwrap_err().to_string();
        assert!(
            e.contains("rule files in subdirectories are not read: sub/deeper/x.yara;"),
            "{e}"
        );
    }

    #[test]
    fn an_import_of_a_module_not_built_in_says_so() {
        // walkZ 2: a bare "unknown module `pe`" refused a whole feed.
        let e = compile_sources(&[(
            PathBuf::from("m.yar"),
            "import \"pe\"\nrule r { condition: true }\n".to_string(),
        )])
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("unknown module `pe`"), "{e}");
        assert!(e.contains("`import \"pe\"` is not available"), "{e}");
        assert!(
            e.contains("built with the YARA modules console, hash, math, string, time only"),
            "{e}"
        );
        // The modules built in compile and work: hash and math, as rule
        // feeds use them.
        let (rules, n) = compile_sources(&[(
            PathBuf::from("m.yar"),
            "import \"hash\"\nimport \"math\"\nimport \"string\"\nimport \"time\"\n\
import \"console\"\nrule h { condition: hash.md5(0, filesize) == \
\"5d41402abc4b2a76b9719d911017c592\" and math.entropy(0, filesize) > 1.0 \
and string.length(\"ab\") == 2 and time.now() > 0 }\n"
                .to_string(),
        )])
        .unwrap();
        assert_eq!(n, 1);
        let mut scanner = yara_x::Scanner::new(&rules);
        let found = scanner.scan(b"hello").unwrap().matching_rules().len();
        assert_eq!(found, 1, "md5(\"hello\") and its entropy");
    }

    #[test]
    fn update_results_are_named_as_documented() {
        // walkL 15: logs said `result=Error`, not the documented `error`.
        for r in [
            UpdateResult::Updated,
            UpdateResult::NotNeeded,
            UpdateResult::Error,
            UpdateResult::RolledBack,
        ] {
            assert_eq!(
                r.name(),
                mailward_metrics::catalogue::UPDATE_RESULTS[r as usize]
            );
        }
    }

    fn set(dir: &Path, version: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(
            dir.join("manifest.toml"),
            format!("version = \"{version}\"\nreleased = \"2026-11-0{version}T00:00:00Z\"\nrecords = 3\n"),
        )
        .unwrap();
        std::fs::write(dir.join("rules.yar"), "rule r { condition: false }\n").unwrap();
    }

    /// walkAX 1, 3, 11: an empty rule file compiled to a set of no rule
    /// and was put in use (every virus then clean); a `condition: true`
    /// rule went in without a word; the same manifest over other rule
    /// files was "nothing to do".
    #[test]
    fn a_set_without_rules_or_matching_clean_mail_or_respun_under_its_version_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let (av, offered) = (tmp.path().join("av"), tmp.path().join("offered"));
        set(&offered, "1");
        std::fs::write(offered.join("rules.yar"), "").unwrap();
        let e = install(&av, &offered, false).unwrap_err().to_string();
        assert!(e.contains("the rule files hold no rule"), "{e}");
        std::fs::write(
            offered.join("rules.yar"),
            "rule ok { strings: $a = \"X5O!P%@AP\" condition: $a }\nrule anything { condition: true }\n",
        )
        .unwrap();
        let e = install(&av, &offered, false).unwrap_err().to_string();
        assert!(
            e.contains(
                "rule anything (in rules_yar) matches an empty object and a short clean text"
            ),
            "{e}"
        );
        assert!(read(&av).unwrap().is_none(), "nothing installed");
        // A rule on the file's size or name is not fooled by the probes.
        std::fs::write(
            offered.join("rules.yar"),
            "rule big { condition: filesize > 1000000 }\nrule exe { condition: filename matches /\\.exe$/ }\n",
        )
        .unwrap();
        assert_eq!(
            install(&av, &offered, false).unwrap().0,
            UpdateResult::Updated
        );
        assert_eq!(
            install(&av, &offered, false).unwrap().0,
            UpdateResult::NotNeeded
        );
        std::fs::write(offered.join("rules.yar"), "rule r { condition: false }\n").unwrap();
        let e = install(&av, &offered, false).unwrap_err().to_string();
        assert!(
            e.contains("version 1 is in use already, but with other rule files"),
            "{e}"
        );
    }

    #[test]
    fn a_set_released_in_the_future_is_refused_and_two_extensions_are_two_namespaces() {
        let tmp = tempfile::tempdir().unwrap();
        let (av, future) = (tmp.path().join("av"), tmp.path().join("future"));
        set(&future, "1");
        std::fs::write(
            future.join("manifest.toml"),
            "version = \"2062.1\"\nreleased = \"2062-01-01T00:00:00Z\"\nrecords = 3\n",
        )
        .unwrap();
        let e = install(&av, &future, false).unwrap_err().to_string();
        assert!(
            e.contains("released 2062-01-01T00:00:00+00:00 is in the future"),
            "{e}"
        );
        assert!(read(&av).unwrap().is_none(), "nothing installed");
        // a.yar and a.yara may both define rule r (walkS finding 9).
        std::fs::write(future.join("rules.yara"), "rule r { condition: false }\n").unwrap();
        assert_eq!(compile(&future).unwrap().1, 2);
    }

    #[test]
    fn install_keeps_a_backup_refuses_broken_sets_and_rolls_back() {
        let tmp = tempfile::tempdir().unwrap();
        let av = tmp.path().join("av");
        let (a, b, broken) = (
            tmp.path().join("a"),
            tmp.path().join("b"),
            tmp.path().join("broken"),
        );
        set(&a, "1");
        set(&b, "2");
        std::fs::create_dir_all(&broken).unwrap();
        std::fs::write(broken.join("manifest.toml"), "version = \"3\"\n").unwrap();
        assert_eq!(install(&av, &a, false).unwrap().0, UpdateResult::Updated);
        assert_eq!(install(&av, &a, false).unwrap().0, UpdateResult::NotNeeded);
        assert_eq!(install(&av, &b, false).unwrap().0, UpdateResult::Updated);
        assert!(install(&av, &broken, false).is_err());
        let gone = install(&av, &tmp.path().join("gone"), false).unwrap_err();
        assert!(
            matches!(gone, BasesError::Read { .. }) && !gone.to_string().contains("manifest"),
            "a missing directory is said as such: {gone}"
        );
        assert_eq!(
            read(&av).unwrap().unwrap().version,
            "2",
            "a refused set changes nothing"
        );
        assert_eq!(rollback(&av).unwrap().version, "1");
        assert_eq!(read(&av).unwrap().unwrap().version, "1");
        assert_eq!(read(&previous_dir(&av)).unwrap().unwrap().version, "2");
        assert_eq!(
            rolled_back_from(&av).as_deref(),
            Some("2"),
            "the rollback is noted"
        );
        assert_eq!(install(&av, &b, false).unwrap().0, UpdateResult::Updated);
        assert_eq!(
            rolled_back_from(&av),
            None,
            "a set installed on purpose ends it"
        );
    }

    /// walkAE 2: a power cut right after the first start left the default
    /// set's files empty, and the gateway ran without virus scanning until
    /// someone deleted the directory. A torn default set is installed
    /// again; an operator's set, even a broken one, is left alone.
    #[test]
    fn a_torn_default_set_is_installed_again_and_an_operators_set_is_not() {
        let tmp = tempfile::tempdir().unwrap();
        let av = tmp.path().join("av");
        assert!(install_default(&av).unwrap());
        assert!(!install_default(&av).unwrap(), "a whole set stays");
        let whole = validate(&av).unwrap();
        for (name, _) in DEFAULT_SET {
            std::fs::write(av.join(name), b"").unwrap();
        }
        assert!(validate(&av).is_err());
        assert!(
            install_default(&av).unwrap(),
            "empty files: installed again"
        );
        assert_eq!(validate(&av).unwrap().version, whole.version);
        // Only the manifest empty (one file reached the disk).
        std::fs::write(av.join("manifest.toml"), b"").unwrap();
        assert!(install_default(&av).unwrap());
        assert_eq!(validate(&av).unwrap().version, whole.version);
        // An operator's set with a file of its own is theirs, broken or not.
        std::fs::write(av.join("manifest.toml"), b"").unwrap();
        std::fs::write(av.join("local.yar"), b"rule x { condition: true }").unwrap();
        assert!(!install_default(&av).unwrap());
        assert!(av.join("local.yar").exists());
    }

    #[test]
    fn an_older_set_is_refused_unless_allowed_and_the_built_in_set_gives_way() {
        let tmp = tempfile::tempdir().unwrap();
        let av = tmp.path().join("av");
        let (old, new) = (tmp.path().join("old"), tmp.path().join("new"));
        set(&old, "1");
        set(&new, "2");
        // The built-in set (released later than "1") gives way to any set.
        assert!(install_default(&av).unwrap());
        assert_eq!(install(&av, &old, false).unwrap().0, UpdateResult::Updated);
        assert_eq!(install(&av, &new, false).unwrap().0, UpdateResult::Updated);
        let e = install(&av, &old, false).unwrap_err();
        assert!(matches!(e, BasesError::Older { .. }), "{e}");
        assert!(e.to_string().contains("--allow-older"), "{e}");
        assert_eq!(read(&av).unwrap().unwrap().version, "2", "nothing changed");
        assert_eq!(install(&av, &old, true).unwrap().0, UpdateResult::Updated);
        assert_eq!(read(&av).unwrap().unwrap().version, "1");
    }
}
