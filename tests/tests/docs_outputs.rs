//! What docs/policy.md, docs/spam.md and docs/scanning.md paste as the
//! daemon's output is what the daemon prints (walkB finding 6): the log
//! lines have the fields the binary writes, quoted as it quotes them, and
//! `spam status` counts the rules it counts. Values (IDs, sizes, times)
//! are the example's own; their shape is the binary's.

use std::collections::BTreeMap;

use anyhow::{ensure, Context, Result};
use mailward_e2e::failures::Failures;
use mailward_e2e::samples::infected_message;
use mailward_e2e::stats::StatsSetup;
use mailward_e2e::*;

/// The pages whose pasted outputs this test holds to the binary.
const PAGES: &[&str] = &["policy.md", "spam.md", "scanning.md"];

fn page(name: &str) -> Result<String> {
    let path = format!("{}/../docs/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).with_context(|| path)
}

/// A log line's message ("Delivered.") and its fields in order, each as
/// (key, whether its value is quoted as the binary quotes values: in
/// double quotes exactly when it is empty or holds a space, `=`, `"`, `\`
/// or an escaped character); None when the line is no log line.
fn log_line(line: &str) -> Option<(String, Vec<(String, bool)>)> {
    let start = line.find("INFO ")?;
    let line = &line[start..];
    let (_, rest) = line.split_once(": ")?;
    // The message ends at the first ". " that a `key=` follows.
    let end = rest.match_indices(". ").find_map(|(i, _)| {
        let after = &rest[i + 2..];
        let key = after.split('=').next()?;
        (!key.is_empty()
            && after.contains('=')
            && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        .then_some(i + 1)
    })?;
    let is_key = |k: &str| !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    let mut fields: Vec<(String, bool)> = Vec::new();
    let mut s = rest[end..].trim_start();
    while let Some((k, after)) = s.split_once('=') {
        if !is_key(k) {
            // A word that is no field: the value before it held a space
            // and was not quoted.
            if let Some(last) = fields.last_mut() {
                last.1 = false;
            }
            s = s.split_once(' ').map_or("", |(_, r)| r).trim_start();
            continue;
        }
        let (well, tail) = match after.strip_prefix('"') {
            Some(q) => {
                let mut close = None;
                let mut chars = q.char_indices();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => {
                            close = Some(i);
                            break;
                        }
                        _ => {}
                    }
                }
                let close = close?;
                let value = &q[..close];
                let needs = value.is_empty() || value.contains([' ', '=', '"', '\\']);
                (needs, &q[close + 1..])
            }
            None => {
                let i = after.find(' ').unwrap_or(after.len());
                let value = &after[..i];
                (
                    !value.is_empty() && !value.contains(['=', '"', '\\']),
                    &after[i..],
                )
            }
        };
        fields.push((k.to_string(), well));
        s = tail.trim_start();
    }
    if !s.is_empty() {
        if let Some(last) = fields.last_mut() {
            last.1 = false;
        }
    }
    Some((rest[..end].to_string(), fields))
}

#[test]
fn pasted_outputs_are_what_the_binary_prints() -> Result<()> {
    let stats_dir = TestDir::new("stats")?;
    let stats = StatsSetup::new(stats_dir.path());
    let gw = Gateway::start("docs-outputs", |c| {
        stats
            .apply(c)
            .set_list("policy", "quarantine", &["av/infected"])
            .set_list("policy", "notify_admin", &["av/infected"])
            .set_str("policy", "admin_address", "admin@example.com")
    })?;
    let mut f = Failures::default();
    let mut c = SmtpClient::connect_ok(gw.port())?;
    c.ehlo("client.test")?;
    c.send_mail_ok(
        "me@example.com",
        &["user@example.com"],
        &infected_message("Invoice 4711", "b-docs")?,
    )?;
    // The message and the admin notice.
    gw.sink.wait_for_count(2, DELIVERY_TIMEOUT)?;
    let mut printed: BTreeMap<String, Vec<(String, bool)>> = BTreeMap::new();
    wait_until("two Delivered. log lines", DELIVERY_TIMEOUT, || {
        Ok((gw.daemon.full_log().matches("Delivered.").count() >= 2).then_some(()))
    })?;
    for line in gw.daemon.full_log().lines() {
        if let Some((message, fields)) = log_line(line) {
            printed.entry(message).or_insert(fields);
        }
    }
    let mut compared = Vec::new();
    for name in PAGES {
        for (n, line) in page(name)?.lines().enumerate() {
            let Some((message, fields)) = log_line(line) else {
                continue;
            };
            let Some(want) = printed.get(&message) else {
                continue;
            };
            compared.push(message.clone());
            f.check(&fields == want, || {
                format!(
                    "{name}:{}: `{message}` pasted with {fields:?}; the binary writes {want:?}",
                    n + 1
                )
            });
        }
    }
    for must in [
        "Message accepted.",
        "Message checked.",
        "Spam tests.",
        "Delivered.",
        "Notification queued.",
        "Message copied to quarantine.",
    ] {
        f.check(compared.iter().any(|m| m == must), || {
            format!("no `{must}` line of the docs was compared: {compared:?}")
        });
    }

    // The rule count `spam status` prints, in every pasted `spam status`.
    let status: serde_json::Value =
        serde_json::from_str(&gw.daemon.cli_ok(&["spam", "status", "--json"])?)?;
    let rules = status["rules"].as_u64().context("rules in spam status")?;
    ensure!(rules > 0, "{status}");
    let spam = page("spam.md")?;
    let mut shown = 0;
    for (n, line) in spam.lines().enumerate() {
        let count = line
            .split_once("\"rules\":")
            .or_else(|| line.trim_start().strip_prefix("rules:").map(|r| ("", r)))
            .map(|(_, r)| {
                r.trim_start()
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
            });
        if let Some(count) = count.filter(|c| !c.is_empty()) {
            shown += 1;
            f.check(count == rules.to_string(), || {
                format!(
                    "spam.md:{}: rules {count}, the binary counts {rules}",
                    n + 1
                )
            });
        }
    }
    f.check(shown >= 3, || {
        format!("only {shown} rule counts in spam.md")
    });
    f.finish(|| gw.daemon.log())
}

/// The words of a log message, as the source writes them: a Rust string
/// continued on the next line (`\` at the line's end) joined again.
fn source_text() -> Result<String> {
    let root = format!("{}/..", env!("CARGO_MANIFEST_DIR"));
    let mut text = String::new();
    let mut dirs: Vec<std::path::PathBuf> = ["daemon/src", "agentx/src", "milter/src"]
        .iter()
        .map(|d| std::path::Path::new(&root).join(d))
        .collect();
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).with_context(|| dir.display().to_string())? {
            let path = e?.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                text.push_str(&std::fs::read_to_string(&path)?);
            }
        }
    }
    let mut joined = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(i) = rest.find("\\\n") {
        joined.push_str(&rest[..i]);
        rest = rest[i + 2..].trim_start();
    }
    joined.push_str(rest);
    Ok(joined)
}

/// walkN 6: README pasted `Message scanned.` and `Parts removed or
/// replaced.` long after the binary stopped writing them; the test above
/// compares only the lines this run prints. Every log line pasted in
/// README.md and docs/*.md must name a message the source still has: the
/// whole message, or (for one with values in it) four words of it in a
/// row, as written.
#[test]
fn pasted_log_lines_name_messages_the_binary_still_has() -> Result<()> {
    let source = source_text()?;
    let root = format!("{}/..", env!("CARGO_MANIFEST_DIR"));
    let mut pages = vec![std::path::Path::new(&root).join("README.md")];
    for e in std::fs::read_dir(std::path::Path::new(&root).join("docs"))? {
        let path = e?.path();
        if path.extension().is_some_and(|x| x == "md") {
            pages.push(path);
        }
    }
    let mut f = Failures::default();
    let mut checked = 0;
    for page in &pages {
        let text = std::fs::read_to_string(page)?;
        for (n, line) in text.lines().enumerate() {
            let Some(at) = [" INFO ", " WARN ", " ERROR ", " DEBUG "]
                .iter()
                .filter_map(|l| format!(" {line}").find(l))
                .min()
            else {
                continue;
            };
            let line = &format!(" {line}")[at..];
            let Some((_, rest)) = line.split_once(": ") else {
                continue;
            };
            let message = match rest.match_indices(". ").find(|(i, _)| {
                let after = &rest[i + 2..];
                after.split('=').next().is_some_and(|k| {
                    !k.is_empty()
                        && after.contains('=')
                        && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                })
            }) {
                Some((i, _)) => &rest[..=i],
                None => rest.trim_end(),
            };
            let words: Vec<&str> = message.split_whitespace().collect();
            let known = source.contains(message)
                || words.len() >= 4 && words.windows(4).any(|w| source.contains(&w.join(" ")));
            checked += 1;
            f.check(known, || {
                format!(
                    "{}:{}: the binary has no log message `{message}`",
                    page.display(),
                    n + 1
                )
            });
        }
    }
    f.check(checked > 50, || {
        format!("only {checked} pasted log lines found")
    });
    f.finish(String::new)
}
