//! `mailward spam ...`: learning, forgetting, judging files offline, and
//! moving what was learnt between gateways. These work on the files under
//! `[spam] dir` directly (a lock file keeps two learners apart); a running
//! daemon picks the new learning up within seconds, without a restart.

use crate::check::spam::knowledge::{Knowledge, BASE};
use crate::check::spam::model::{Class, Learnt, Model, ModelError};
use crate::check::spam::store::{Edit, Journalled, Store, Trimmed};
use crate::check::spam::{self, Evidence};
use crate::config::Config;
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
/// `From ` line), an mbox of several, or a directory of such files (sorted
/// by name, not recursive).
pub fn messages(paths: &[PathBuf]) -> Result<Vec<Source>, SpamCliError> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(io(p))?;
        if meta.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(io(p))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.is_file())
                .collect();
            files.sort();
            for f in files {
                read_file(&f, &mut out)?;
            }
        } else {
            read_file(p, &mut out)?;
        }
    }
    Ok(out)
}

fn read_file(path: &Path, out: &mut Vec<Source>) -> Result<(), SpamCliError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    let name = path.display().to_string();
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
    pub moved: usize,
    pub forgotten: usize,
    pub unknown: usize,
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
    // The messages are read and tokenised first, outside the store's lock
    // (and once, even when a shared store makes the change run again).
    let mut learning = Vec::new();
    for (paths, class) in [(spam, Class::Spam), (ham, Class::Ham)] {
        if paths.is_empty() {
            continue;
        }
        let msgs = messages(paths)?;
        let _ = writeln!(
            err,
            "Reading {} message(s) to learn as {}.",
            msgs.len(),
            class.as_str()
        );
        for (i, m) in msgs.iter().enumerate() {
            let (digest, tokens) = spam::for_learning(&m.bytes);
            learning.push((digest, tokens, class));
            progress(i + 1, msgs.len(), err);
        }
    }
    let store = site_store(cfg)?;
    let _ = writeln!(err, "Learning into {}.", store.describe());
    let (tally, trimmed) = store.update(|model| {
        let mut tally = Tally::default();
        for (digest, tokens, class) in &learning {
            match model.learn(*digest, tokens, *class) {
                Learnt::New => tally.new += 1,
                Learnt::Already => tally.already += 1,
                Learnt::Moved => tally.moved += 1,
            }
        }
        Edit::when(tally.new + tally.moved > 0, tally)
    })?;
    tell_trimmed(cfg, trimmed, err);
    Ok(tally)
}

/// The site's learning store of the configuration.
fn site_store(cfg: &Config) -> Result<Store, SpamCliError> {
    Ok(Store::of(&cfg.spam)?)
}

/// Says on the terminal what a change forgot to stay within `[spam]
/// max_tokens` and `max_learnt`, and what it dropped of a damaged journal
/// (the daemon's log has them, which the commands do not show): an
/// operator teaching a large corpus by hand should not have to find it in
/// `spam status`.
fn tell_trimmed(cfg: &Config, trimmed: Trimmed, err: &mut dyn Write) {
    if trimmed.journal > 0 {
        let _ = writeln!(
            err,
            "Dropped {} byte(s) of the journal after its last intact record (a record cut short or damaged, and what followed it; no gateway had counted them).",
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
    let forgetting: Vec<(u64, Vec<u64>)> = messages(paths)?
        .iter()
        .map(|m| spam::for_learning(&m.bytes))
        .collect();
    let (tally, trimmed) = site_store(cfg)?.update(|model| {
        let mut tally = Tally::default();
        for (digest, tokens) in &forgetting {
            if model.forget(*digest, tokens) {
                tally.forgotten += 1;
            } else {
                tally.unknown += 1;
            }
        }
        Edit::when(tally.forgotten > 0, tally)
    })?;
    // Only when the limits were lowered since the last change.
    tell_trimmed(cfg, trimmed, err);
    Ok(tally)
}

/// Judges one message as the gateway's default group would (rules,
/// heuristics, classifier; no network tests).
pub fn check_one(k: &Knowledge, raw: &[u8]) -> Evidence {
    let parsed = crate::check::parse(raw);
    spam::examine(k, raw, parsed.as_ref(), None)
}

/// `spam check`: one line (or JSON object) per message; with `clues` > 0
/// the classifier's most telling tokens of each, by their text.
pub fn check(
    cfg: &Config,
    paths: &[PathBuf],
    json: bool,
    clues: usize,
    out: &mut dyn Write,
) -> Result<(), SpamCliError> {
    let (k, problems) = Knowledge::load(cfg);
    if let Some(p) = problems.first() {
        return Err(SpamCliError::Usage(format!(
            "cannot load the spam knowledge: {p}"
        )));
    }
    let level = cfg.policy.spam_level;
    for m in messages(paths)? {
        let e = check_one(&k, &m.bytes);
        let status = e.status(level);
        let telling = match clues {
            0 => Vec::new(),
            n => named_clues(&k, &m.bytes, n),
        };
        let line = if json {
            let mut v = serde_json::json!({
                "file": m.name,
                "status": format!("as/{}", status.as_str()),
                "score": (e.score() * 10.0).round() / 10.0,
                "rating": e.rating(),
                "tests": e.test_names(),
                "probability": e.probability,
                "formal": e.formal,
            });
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
                e.score(),
                e.rating(),
            );
            if !e.hits.is_empty() {
                line.push(' ');
                line.push_str(&e.weighed());
            }
            for (c, name) in &telling {
                line.push_str(&format!(
                    "\n  {:.4} spam={} ham={} {name}",
                    c.probability, c.spam, c.ham
                ));
            }
            line
        };
        if writeln!(out, "{line}").is_err() {
            break;
        }
    }
    Ok(())
}

/// The `n` most telling clues of a message with their tokens' texts
/// (none while the classifier abstains).
fn named_clues(k: &Knowledge, raw: &[u8], n: usize) -> Vec<(spam::classifier::Clue, String)> {
    let tokens = spam::named_tokens(raw);
    let clues = k.classifier.clues(tokens.iter()).unwrap_or_default();
    clues
        .into_iter()
        .take(n)
        .map(|c| {
            let name = tokens.name(c.token).unwrap_or("?").to_string();
            (c, name)
        })
        .collect()
}

/// `spam status`.
pub fn status(cfg: &Config) -> serde_json::Value {
    let (k, mut problems) = Knowledge::load(cfg);
    let c = &k.classifier;
    let store = Store::of(&cfg.spam);
    let journal = match &store {
        Ok(s) => s.journalled().map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Ok(j) = &journal {
        if j.unread > 0 {
            problems.push(format!(
                "the journal ends in {} byte(s) after a record cut short or damaged, never counted; the next change or `mailward spam fold` drops them",
                j.unread
            ));
        }
    }
    serde_json::json!({
        "dir": cfg.spam.dir.display().to_string(),
        "store": store.as_ref().map(|s| s.describe()).unwrap_or_else(|e| e.to_string()),
        "base": c.base.as_ref().map(|b| serde_json::json!({
            "spam": b.spam_messages, "ham": b.ham_messages, "tokens": b.tokens.len(),
        })),
        "site": {
            "spam": c.site.spam_messages, "ham": c.site.ham_messages,
            "tokens": c.site.tokens.len(), "messages": c.site.learnt.len(),
            "max_tokens": cfg.spam.max_tokens, "max_learnt": cfg.spam.max_learnt,
        },
        "journal": match journal {
            Ok(j) => serde_json::json!({
                "records": j.records, "bytes": j.bytes, "unread": j.unread,
                "snapshot": j.snapshot, "fold_at": j.fold_at(),
            }),
            Err(e) => serde_json::Value::from(e),
        },
        "min_learnt": c.min_learnt,
        "classifier": c.readiness().as_str(),
        "rules": k.rules.len(),
        "level": format!("{:?}", cfg.policy.spam_level).to_lowercase(),
        "problems": problems,
    })
}

/// `spam fold`: the journal folded into a new snapshot now.
pub fn fold(cfg: &Config, err: &mut dyn Write) -> Result<Journalled, SpamCliError> {
    let store = site_store(cfg)?;
    let _ = writeln!(err, "Folding the journal of {}.", store.describe());
    let (folded, trimmed) = store.fold()?;
    tell_trimmed(cfg, trimmed, err);
    Ok(folded)
}

/// `spam export FILE`: the site's learning, as a model file.
pub fn export(cfg: &Config, to: &Path) -> Result<Model, SpamCliError> {
    let model = site_store(cfg)?.read()?;
    model.write(to)?;
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
    let incoming = Model::read(from)?
        .ok_or_else(|| SpamCliError::Usage(format!("{}: no such file", from.display())))?;
    let dir = &cfg.spam.dir;
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
        incoming.write(&base)?;
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
            let overlap = incoming
                .learnt
                .keys()
                .filter(|d| site.learnt.contains_key(d))
                .count();
            if overlap > 0 {
                return Edit::Unchanged(Err(SpamCliError::Usage(format!(
                    "{}: {overlap} of its messages are learnt here already; import it with --base, or forget them first",
                    from.display()
                ))));
            }
            site.absorb(&incoming);
            Edit::Changed(Ok((**site).clone()))
        })?;
    tell_trimmed(cfg, trimmed, err);
    merged.map(|model| Imported { model, base: None })
}

/// `spam rollback`: the previous base back.
pub fn rollback(cfg: &Config) -> Result<(), SpamCliError> {
    let dir = &cfg.spam.dir;
    let _lock = crate::check::spam::store::Lock::take(dir)?;
    let bak = dir.join(format!("{BASE}.bak"));
    let base = dir.join(BASE);
    let previous = Model::read(&bak)?.ok_or_else(|| {
        // After a first base there is none to go back to: say what undoes
        // it instead.
        SpamCliError::Usage(if base.exists() {
            format!(
                "no previous base to roll back to: {} is the first base installed; remove it to go back to no base",
                base.display()
            )
        } else {
            "no previous base to roll back to".into()
        })
    })?;
    if base.exists() {
        std::fs::rename(&base, dir.join(format!("{BASE}.tmp-old"))).map_err(io(&base))?;
    }
    previous.write(&base)?;
    let old = dir.join(format!("{BASE}.tmp-old"));
    if old.exists() {
        std::fs::rename(&old, &bak).map_err(io(&bak))?;
    }
    Ok(())
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
}
