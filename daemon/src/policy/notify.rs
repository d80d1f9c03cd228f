//! Notifications: the messages Mailward sends about a checked message to its
//! sender, its recipients and the administrator (`notify_sender`,
//! `notify_recipients`, `notify_admin`), made from templates.
//!
//! - Templates use Jinja syntax (the `minijinja` crate). A built-in set is
//!   compiled in (`policy/templates/`); a group's `notify_templates`
//!   directory may hold its own `sender.txt`, `recipients.txt` and
//!   `admin.txt`. A template starts with its `Subject:` line, then an empty
//!   line, then the body.
//! - Variables: see [`VARIABLES`]. `check-config` refuses a template with a
//!   syntax error or an unknown variable, as `FILE:LINE: problem`.
//! - A notification is a new message from the null sender (`<>`, so that
//!   nothing ever bounces back to us), `Auto-Submitted: auto-generated`
//!   (RFC 3834), queued like a DSN. Whom it never goes to is the plan's
//!   rule ([`super::plan`]): the null sender, and the sender of spam.

use super::plan::NotifyTo;
use super::verdict::{Judged, Verdict};
use crate::config::{Config, TemplateTexts, TemplatesDir};
use crate::envelope::{Envelope, Notify, QueueId, Recipient};
use crate::text::one_line;
use std::path::Path;
use std::sync::Arc;

/// The variables a template may use.
pub const VARIABLES: &[(&str, &str)] = &[
    ("queue_id", "the queue ID given in the 250 reply"),
    ("sender", "the envelope sender (<> for none)"),
    (
        "from",
        "the message's From: header as the reader's client shows it (name and address), on one line, at most 60 characters (then ...); empty without one",
    ),
    ("recipients", "the recipients of the group, a list"),
    (
        "subject",
        "the message's Subject, decoded, on one line, at most 60 characters (then ...)",
    ),
    (
        "status",
        "the verdict shown in logs: av/infected, as/spam, ...",
    ),
    ("statuses", "every status of the message, a list"),
    (
        "findings",
        "what the checks found, a list of lines (at most 20, then one line with how many more)",
    ),
    (
        "action",
        "what was done: delivered, parts removed, blocked, ...",
    ),
    (
        "changed",
        "true when the message was not delivered as sent (blocked, refused, parts removed)",
    ),
    ("group", "the policy group (default for [policy])"),
    ("client", "the client's address"),
    (
        "quarantine_id",
        "the quarantine entry, when a copy was kept",
    ),
    (
        "archived",
        "true when the incoming archive keeps a copy as received ([archive] incoming)",
    ),
    ("hostname", "server.hostname"),
    ("date", "when the message was received (RFC 5322)"),
    (
        "config",
        "the configuration file the daemon runs with, an absolute path (\"\" for the built-in one)",
    ),
];

/// The built-in templates.
const BUILT_IN: [(NotifyTo, &str, &str); 3] = [
    (
        NotifyTo::Sender,
        "sender.txt",
        include_str!("templates/sender.txt"),
    ),
    (
        NotifyTo::Recipients,
        "recipients.txt",
        include_str!("templates/recipients.txt"),
    ),
    (
        NotifyTo::Admin,
        "admin.txt",
        include_str!("templates/admin.txt"),
    ),
];

/// The file a template for `to` is read from in a templates directory.
fn file_name(to: NotifyTo) -> &'static str {
    BUILT_IN
        .iter()
        .find(|(t, _, _)| *t == to)
        .map_or("admin.txt", |(_, f, _)| f)
}

fn built_in(to: NotifyTo) -> &'static str {
    BUILT_IN
        .iter()
        .find(|(t, _, _)| *t == to)
        .map_or("", |(_, _, text)| text)
}

/// A problem in a template: its line (1-based, 0 when unknown) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateProblem {
    pub line: usize,
    pub problem: String,
}

fn environment() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    // Plain text: nothing is HTML-escaped.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env
}

/// Checks one template's text: syntax, the Subject line, and that it
/// uses only [`VARIABLES`].
pub fn check_template(name: &str, text: &str) -> Vec<TemplateProblem> {
    let env = environment();
    let tmpl = match env.template_from_named_str(name, text) {
        Ok(t) => t,
        Err(e) => {
            return vec![TemplateProblem {
                line: e.line().unwrap_or(0),
                problem: format!("template syntax: {}", e.detail().unwrap_or("invalid")),
            }]
        }
    };
    let mut out = Vec::new();
    let mut lines = text.lines();
    if !lines
        .next()
        .is_some_and(|l| l.to_ascii_lowercase().starts_with("subject:"))
    {
        out.push(TemplateProblem {
            line: 1,
            problem:
                "a template starts with its \"Subject:\" line, then an empty line, then the body"
                    .into(),
        });
    } else if text
        .lines()
        .next()
        .is_some_and(|l| l["subject:".len()..].trim().is_empty())
    {
        out.push(TemplateProblem {
            line: 1,
            problem: "the Subject line is empty: every notice would go out without a subject"
                .into(),
        });
    } else if let Some(n) = lines.position(|l| l.trim().is_empty()) {
        // Lines between the Subject and the empty line would be header
        // lines, which notices ignore: say so rather than drop them.
        if n > 0 {
            out.push(TemplateProblem {
                line: 2,
                problem: format!(
                    "expected an empty line after the Subject line: the {n} line(s) before the \
                     first empty line would be header lines, and notices use only Subject:"
                ),
            });
        }
    } else {
        out.push(TemplateProblem {
            line: 2,
            problem: "expected an empty line after the Subject line, then the body (without it \
                      the whole template is the body and the notice has no subject)"
                .into(),
        });
    }
    let mut unknown: Vec<String> = tmpl
        .undeclared_variables(false)
        .into_iter()
        .filter(|v| !VARIABLES.iter().any(|(k, _)| k == v))
        .collect();
    unknown.sort();
    for v in unknown {
        let line = text
            .lines()
            .position(|l| l.contains(&v))
            .map_or(0, |i| i + 1);
        out.push(TemplateProblem {
            line,
            problem: format!(
                "unknown variable `{v}` (variables: {})",
                VARIABLES
                    .iter()
                    .map(|(k, _)| *k)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    if out.is_empty() {
        // Compiling finds no unknown filter and no index out of range:
        // render as a notice would, once with values and once with empty
        // lists, so that what fails at run time fails here (walkO 2).
        for (values, context) in [
            (
                "a recipient, two findings and a quarantine ID",
                sample_context(true),
            ),
            ("no findings and no quarantine ID", sample_context(false)),
        ] {
            if let Err(e) = tmpl.render(context) {
                out.push(TemplateProblem {
                    line: e.line().unwrap_or(0),
                    problem: format!(
                        "cannot be rendered with sample values ({values}): {}",
                        render_problem(&e)
                    ),
                });
                break;
            }
        }
    }
    out
}

/// What a render error says, without the "(in FILE:LINE)" minijinja adds
/// (the caller names the file and the line).
fn render_problem(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    }
}

/// The values `check-config` renders a template with: a notice about one
/// recipient with two findings and a quarantine entry (`full`), or one
/// with empty lists and no quarantine entry.
fn sample_context(full: bool) -> minijinja::Value {
    let (findings, statuses, quarantine_id): (Vec<&str>, Vec<&str>, &str) = if full {
        (
            vec![
                "infected EICAR_Test_File in eicar.com",
                "filtered name:*.exe in tool.exe",
            ],
            vec!["av/infected", "as/clean"],
            "1A243AA1DA371F9D.2",
        )
    } else {
        (Vec::new(), Vec::new(), "")
    };
    minijinja::context! {
        queue_id => "1A243AA1DA371F9D",
        sender => "me@example.com",
        from => "Me <me@example.com>",
        recipients => vec!["user@example.com"],
        subject => "Invoice 4711",
        status => "av/infected",
        statuses => statuses,
        findings => findings,
        action => "blocked (not delivered); a copy is kept in quarantine",
        group => "default",
        changed => full,
        client => "192.0.2.1",
        quarantine_id => quarantine_id,
        archived => full,
        hostname => "gw.example.com",
        date => "Sat, 5 Dec 2026 00:45:51 +0000",
        config => if full { "/etc/mailward/mailward.toml" } else { "" },
    }
}

/// The configuration file the daemon runs with, as a command's
/// `--config` takes it: absolute (the daemon never changes directory),
/// quoted for a shell unless plain ([`crate::ops::stores::shell_word`]);
/// "" for the built-in configuration.
/// An admin notice's hint (`mailward quarantine show ID --config PATH`)
/// then works on a host where the CLI would not find the file itself
/// (walkO 14).
fn config_path(cfg: &Config) -> String {
    if cfg.origin == crate::config::DEFAULT_ORIGIN {
        return String::new();
    }
    let path = std::path::absolute(&cfg.origin)
        .map_or_else(|_| cfg.origin.clone(), |p| p.display().to_string());
    // As the commands' own hints quote it (walkBU U5: a `$(...)` in the
    // path ran when the notice's command was pasted).
    crate::ops::stores::shell_word(&path)
}

/// The file names a `notify_templates` directory may hold.
pub fn template_files() -> [&'static str; 3] {
    BUILT_IN.map(|(_, file, _)| file)
}

/// Reads and checks the templates in a `notify_templates` directory, when
/// the configuration is loaded: the texts of the files that are there (by
/// file name; the others are the built-in ones), and (file, problem) pairs.
pub fn load_dir(dir: &Path) -> (TemplateTexts, Vec<(String, TemplateProblem)>) {
    let mut texts = TemplateTexts::new();
    if !dir.is_dir() {
        return (
            texts,
            vec![(
                dir.display().to_string(),
                TemplateProblem {
                    line: 0,
                    problem: "not a directory of notification templates".into(),
                },
            )],
        );
    }
    let mut out = Vec::new();
    for (_, file, _) in BUILT_IN {
        let path = dir.join(file);
        match read_template(&path) {
            Ok(Err(problem)) => out.push((path.display().to_string(), problem)),
            Ok(Ok(text)) => {
                out.extend(
                    check_template(file, &text)
                        .into_iter()
                        .map(|p| (path.display().to_string(), p)),
                );
                texts.insert(file.to_string(), Arc::from(text));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => out.push((
                path.display().to_string(),
                TemplateProblem {
                    line: 0,
                    problem: format!("cannot read: {e}"),
                },
            )),
        }
    }
    (texts, out)
}

/// The largest template taken. Every notice carries its text: a 30 MB
/// template made every notice 30 MB, over the gateway's own message size
/// limit, and next hops refused them (walkAY T1).
const MAX_TEMPLATE: u64 = 64 * 1024;

/// A template file's text as a notice uses it, or what is wrong with it
/// (the outer error: it cannot be read at all). Line breaks are made
/// `\n`: an editor on Windows saves CRLF, and the empty line after the
/// Subject would be "\r\n" and go unseen (walkO 7); a UTF-8 byte order
/// mark before the Subject line (Notepad) is dropped (walkAY T3).
fn read_template(path: &Path) -> std::io::Result<Result<String, TemplateProblem>> {
    use std::io::Read as _;
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(MAX_TEMPLATE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_TEMPLATE {
        return Ok(Err(TemplateProblem {
            line: 0,
            problem: format!(
                "larger than {}: every notice carries its template's text, and a notice that \
                 size is refused by next hops (a template is a short letter)",
                crate::config::ByteSize(MAX_TEMPLATE)
            ),
        }));
    }
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&bytes);
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(Ok(text.replace("\r\n", "\n"))),
        Err(e) => {
            let at = e.valid_up_to();
            let line_start = bytes[..at]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
            // Its place in the line, counted from 1 (walkAZ F12: an offset
            // in the file beside a line number read as a column).
            let column = at - line_start + 1;
            Ok(Err(TemplateProblem {
                line,
                problem: format!(
                    "not UTF-8 (octet {column} of the line): templates are UTF-8; convert it, \
                     e.g. `iconv -f latin1 -t utf-8`"
                ),
            }))
        }
    }
}

/// The template text for `to` in a group: the one read from its directory
/// when the configuration was loaded, else the built-in one.
fn template(dir: &TemplatesDir, to: NotifyTo) -> &str {
    dir.texts
        .get(file_name(to))
        .map_or_else(|| built_in(to), |t| &**t)
}

/// The message's Subject, decoded (empty when it has none), on one line:
/// the first Subject field, the one the subject mark goes on and most
/// clients show (walkAD 10: mail-parser's `subject()` is the last one). A
/// field in raw 8-bit that is no UTF-8 (old clients, much spam) is read as
/// windows-1252, as mail clients do, not shown as U+FFFD (walkAD 11).
fn subject_of(m: Option<&mail_parser::Message>, raw: &[u8]) -> String {
    let Some(m) = m else {
        return String::new();
    };
    let Some(h) = m
        .headers()
        .iter()
        .find(|h| h.name == mail_parser::HeaderName::Subject)
    else {
        return String::new();
    };
    let value = raw
        .get(h.offset_start as usize..h.offset_end as usize)
        .unwrap_or_default();
    let text = match std::str::from_utf8(value) {
        Ok(_) => h.value.as_text().unwrap_or_default().to_string(),
        Err(_) => windows_1252(value),
    };
    one_line(text.trim())
}

/// The message's first From: address as a client shows it, `Name
/// <address>` (or the address alone), decoded and on one line; empty
/// without one. The envelope sender of a phish is not the From its reader
/// sees, and a notice that names only the former is not recognised
/// (walkAY N1).
fn from_of(m: Option<&mail_parser::Message>) -> String {
    let Some(addr) = m
        .and_then(mail_parser::Message::from)
        .and_then(mail_parser::Address::first)
    else {
        return String::new();
    };
    let text = match (addr.name.as_deref(), addr.address.as_deref()) {
        (Some(name), Some(address)) if !name.trim().is_empty() => {
            format!("{} <{address}>", name.trim())
        }
        (_, Some(address)) => address.to_string(),
        (Some(name), None) => name.trim().to_string(),
        (None, None) => String::new(),
    };
    one_line(&text)
}

/// The most characters of the message's Subject a notice quotes; a longer
/// one is cut and ends in `...`. A notice carries the sender's subject to
/// the next hop, whose checks read it as the notice's text: the EICAR test
/// string (68 characters) or a content rule's phrase quoted whole made a
/// notice "infected" and blocked there, so the recipient never learnt of the
/// message (walkAD 11). The start of a subject is what tells the reader
/// which message it was.
pub const MAX_QUOTED_SUBJECT: usize = 60;

/// `subject` (one line) as a notice quotes it: at most
/// [`MAX_QUOTED_SUBJECT`] characters, then `...`.
fn quoted_subject(subject: &str) -> String {
    quoted(subject)
}

/// Sender-supplied text (a subject, a part's name, a detection that
/// quotes the sender) as a notice quotes it: on one line, at most
/// [`MAX_QUOTED_SUBJECT`] characters, then `...`.
fn quoted(text: &str) -> String {
    match text.char_indices().nth(MAX_QUOTED_SUBJECT) {
        None => text.to_string(),
        Some((end, _)) => format!("{}...", text[..end].trim_end()),
    }
}

/// The findings of group `j` as a notice lists them: `infected
/// EICAR_Test_File in eicar.com`, with the detection and the part's name
/// quoted as the subject is ([`quoted`]). The part's name is the
/// sender's: an attachment named with the EICAR test string (68
/// characters) or a content rule's phrase, quoted whole, made the notices
/// themselves "infected" at the next hop (and at a second Mailward), so
/// that the addressee never learnt of the message (walkAP F5). The
/// quarantine entry and the log keep the whole name. With `with_spam`, the
/// spam verdict follows, unless it is no finding: `as/clean`, nor
/// `as/formal` (a bounce, an auto-reply: mail that is not spam).
fn notice_findings(verdict: &Verdict, j: &Judged, with_spam: bool) -> Vec<String> {
    use crate::check::SpamStatus;
    let mut lines: Vec<String> = verdict
        .report
        .findings_for(&j.partition.group, &j.partition.policy)
        .map(|f| {
            format!(
                "{} {} in {}",
                f.kind.status().as_str(),
                quoted(&one_line(&f.name)),
                quoted(&one_line(&f.path))
            )
        })
        .collect();
    if let (true, Some(status), Some(e)) = (with_spam, j.plan.spam, verdict.report.spam.as_ref()) {
        if !matches!(status, SpamStatus::Clean | SpamStatus::Formal) {
            lines.push(e.finding_line(status));
        }
    }
    lines
}

/// `bytes` read as windows-1252 (Latin-1 with printable characters in
/// 0x80-0x9F; the five bytes it leaves undefined become U+FFFD).
fn windows_1252(bytes: &[u8]) -> String {
    const HIGH: [char; 32] = [
        '€', '\u{FFFD}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{FFFD}', 'Ž',
        '\u{FFFD}', '\u{FFFD}', '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ',
        '\u{FFFD}', 'ž', 'Ÿ',
    ];
    bytes
        .iter()
        .map(|&b| match b {
            0x80..=0x9F => HIGH[usize::from(b - 0x80)],
            _ => char::from(b),
        })
        .collect()
}

/// Findings a notice lists at most; the rest are one line saying how many
/// more, and where the whole list is (walkAD 9: a zip of 3,000 EICAR
/// files made 180 kB notices, one of them to a forged sender).
pub const MAX_NOTICE_FINDINGS: usize = 20;

/// `findings` cut to [`MAX_NOTICE_FINDINGS`], with `... and N more
/// findings` and, when there is one, where to read them all (`more`).
fn capped_findings(mut findings: Vec<String>, more: Option<String>) -> Vec<String> {
    if findings.len() <= MAX_NOTICE_FINDINGS {
        return findings;
    }
    let rest = findings.len() - MAX_NOTICE_FINDINGS;
    findings.truncate(MAX_NOTICE_FINDINGS);
    let noun = if rest == 1 { "finding" } else { "findings" };
    findings.push(match more {
        Some(where_) => format!("... and {rest} more {noun} ({where_})"),
        None => format!("... and {rest} more {noun}"),
    });
    findings
}

/// What was done, in words.
fn action(j: &Judged, quarantined: bool) -> String {
    use super::plan::Delivery;
    let mut a = match j.plan.delivery {
        Delivery::Deliver if !j.plan.edits.is_empty() => {
            "delivered with parts removed or replaced".to_string()
        }
        Delivery::Deliver => "delivered".to_string(),
        Delivery::Block => "blocked (not delivered)".to_string(),
        Delivery::Refuse(_) => "refused".to_string(),
    };
    if quarantined {
        a.push_str("; a copy is kept in quarantine");
    }
    a
}

/// The indent that lines up a continued field with its value in the
/// built-in templates (`  Action:     `).
const CONTINUED: &str = "\n              ";

/// The actions of several groups, one line each, in the form
/// `user@example.com: delivered; a copy is kept in quarantine`: one
/// action can hold a `;` of its own, so a separator within a line would
/// make one action read as two (walkI 19). One group: its action alone.
fn actions_by_group(
    about: &[&Judged],
    rcpts_of: impl Fn(&Judged) -> Vec<String>,
    quarantined: impl Fn(&Judged) -> bool,
) -> String {
    let actions = union(about.iter().map(|g| vec![action(g, quarantined(g))]));
    if actions.len() == 1 {
        return actions.join("");
    }
    about
        .iter()
        .map(|g| format!("{}: {}", rcpts_of(g).join(", "), action(g, quarantined(g))))
        .collect::<Vec<_>>()
        .join(CONTINUED)
}

/// Keeps a header value on one line and in ASCII (RFC 2047 for the rest).
fn header_value(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.is_ascii() {
        one_line
    } else {
        use std::fmt::Write as _;
        let mut out = String::new();
        // Encoded words of at most 45 octets of text each (RFC 2047 2.).
        let mut chunk = String::new();
        for c in one_line.chars() {
            if chunk.len() + c.len_utf8() > 45 {
                let _ = write!(out, "=?UTF-8?Q?{}?= ", q_encode(&chunk));
                chunk.clear();
            }
            chunk.push(c);
        }
        if !chunk.is_empty() {
            let _ = write!(out, "=?UTF-8?Q?{}?=", q_encode(&chunk));
        }
        out.trim_end().to_string()
    }
}

/// Where a header line is folded (RFC 5322 2.1.1: "SHOULD be no more
/// than 78 characters"; 998 is the limit).
const HEADER_WIDTH: usize = 78;

/// The longest encoded text of one RFC 2047 encoded word: with
/// `=?UTF-8?Q?` and `?=` it stays under 75 characters (RFC 2047 2.), and
/// after `Subject: ` or a fold's space under [`HEADER_WIDTH`].
const ENCODED_TEXT: usize = 50;

/// The header field `name: value` with its CRLF, on one logical line
/// (control characters become spaces) folded at [`HEADER_WIDTH`] (RFC 5322
/// 2.2.3): ASCII at its spaces, anything else as RFC 2047 encoded words,
/// one per physical line. A template's `Subject: Warnung zu
/// „{{ subject }}“` about a message whose subject decodes to 1,000
/// characters made one line of 1,947 octets, which strict relays (and
/// Mailward's own listener) refuse (walkV 2a).
fn folded_header(name: &str, value: &str) -> String {
    let value = one_line(value);
    let fold = "\r\n ";
    let mut out = format!("{name}:");
    let mut col = out.len();
    // An ASCII word too long to fit a line of its own goes encoded too,
    // since folding cannot split it.
    let longest_word = value.split(' ').map(str::len).max().unwrap_or(0);
    // Text that reads as an encoded word (`=?utf-8?q?...?=`) goes encoded
    // too: written as it is, a reader would decode it into other text
    // (RFC 2047 5: such text must be encoded).
    let looks_encoded = value
        .split(' ')
        .any(|w| w.starts_with("=?") && w.ends_with("?="));
    if value.is_ascii() && longest_word + 1 < HEADER_WIDTH && !looks_encoded {
        for word in value.split(' ').filter(|w| !w.is_empty()) {
            if col + 1 + word.len() > HEADER_WIDTH && col > name.len() + 1 {
                out.push_str(fold);
                col = 1;
            } else {
                out.push(' ');
                col += 1;
            }
            out.push_str(word);
            col += word.len();
        }
    } else {
        for (i, word) in encoded_words(&value).iter().enumerate() {
            out.push_str(if i == 0 { " " } else { fold });
            out.push_str(word);
        }
    }
    out.push_str("\r\n");
    out
}

/// `text` as RFC 2047 Q encoded words of at most [`ENCODED_TEXT`] encoded
/// characters each, never splitting a character.
fn encoded_words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chunk = String::new();
    let mut buf = [0u8; 4];
    for c in text.chars() {
        let enc = q_encode(c.encode_utf8(&mut buf));
        if !chunk.is_empty() && chunk.len() + enc.len() > ENCODED_TEXT {
            out.push(format!("=?UTF-8?Q?{chunk}?="));
            chunk.clear();
        }
        chunk.push_str(&enc);
    }
    if !chunk.is_empty() {
        out.push(format!("=?UTF-8?Q?{chunk}?="));
    }
    out
}

fn q_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b' ' => out.push('_'),
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'!' | b'*' | b'+' | b'-' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("={b:02X}")),
        }
    }
    out
}

/// The items of `lists` in order, each once.
fn union(lists: impl IntoIterator<Item = Vec<String>>) -> Vec<String> {
    // A set beside the list: 10,000 findings would be 10^8 comparisons.
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<String> = Vec::new();
    for item in lists.into_iter().flatten() {
        if seen.insert(item.clone()) {
            out.push(item);
        }
    }
    out
}

/// The notification to `to` about the message `env` (bytes `raw`, groups
/// `about` of `verdict`), as an envelope and bytes ready to spool with ID
/// `id`; None when there is nobody to send it to (the null sender, no admin
/// address). `about` is one group, except for the sender's notice: a
/// message whose recipients fall in several groups gets one notice to its
/// sender for all of them (the sender is one person, and mostly forged:
/// one notice per group would double the backscatter). Its template is
/// the first group's; recipients, statuses and findings are those of every
/// group, and the action says which recipients it was for when the groups
/// differ, one line per group. Empty `about`: nothing to say (None).
///
/// What each addressee may learn: a recipients' notice goes to
/// `addressee` alone (one notice per recipient) and names no other
/// recipient, so that a Bcc recipient stays hidden (walkI 5). The sender's
/// notice names the recipients of the groups it is about: the sender chose
/// them, and knowing who did not get the message as sent is the point of
/// the notice; its address may be forged, which is why it is off by
/// default and only for viruses. It states anti-virus findings only, never
/// a spam or clean verdict.
#[allow(clippy::too_many_arguments)]
pub fn compose(
    cfg: &Config,
    env: &Envelope,
    raw: &[u8],
    about: &[&Judged],
    verdict: &Verdict,
    to: NotifyTo,
    addressee: Option<&str>,
    id: QueueId,
) -> Result<Option<(Envelope, Vec<u8>)>, String> {
    let Some(j) = about.first().copied() else {
        return Ok(None);
    };
    let rcpts_of = |g: &Judged| -> Vec<String> {
        g.partition
            .rcpts
            .iter()
            .filter_map(|&i| env.rcpts.get(i).map(|r| r.address.clone()))
            .collect()
    };
    let group_rcpts = match (to, addressee) {
        (NotifyTo::Recipients, Some(a)) => vec![a.to_string()],
        _ => union(about.iter().map(|g| rcpts_of(g))),
    };
    let addresses: Vec<String> = match to {
        NotifyTo::Sender => vec![env.mail_from.clone()],
        NotifyTo::Recipients => group_rcpts.clone(),
        NotifyTo::Admin => vec![j.partition.policy.admin_address.clone()],
    }
    .into_iter()
    .filter(|a| !a.is_empty())
    .collect();
    if addresses.is_empty() {
        return Ok(None);
    }
    let received = chrono::DateTime::from_timestamp(env.received_at, 0)
        .unwrap_or_default()
        .to_rfc2822();
    let quarantine_id_of = |g: &Judged| {
        g.plan.quarantine.as_ref().map(|_| {
            if verdict.groups.len() > 1 {
                let k = verdict
                    .groups
                    .iter()
                    .position(|o| o.partition.group == g.partition.group)
                    .unwrap_or(0);
                env.id.derived(&(k + 1).to_string()).0
            } else {
                env.id.0.clone()
            }
        })
    };
    let quarantine_id = about.iter().find_map(|g| quarantine_id_of(g));
    let archived = cfg.archive.incoming;
    // Where an administrator reads the whole list; the sender has no use
    // for our commands.
    let whole_list = match (to, &quarantine_id) {
        (NotifyTo::Sender, _) => None,
        (_, Some(q)) => Some(format!("mailward quarantine show {q}")),
        (_, None) if archived => Some(format!("mailward archive show {} --incoming", env.id)),
        (_, None) => None,
    };
    let findings = capped_findings(
        union(
            about
                .iter()
                .map(|g| notice_findings(verdict, g, to != NotifyTo::Sender)),
        ),
        whole_list,
    );
    let action = actions_by_group(about, rcpts_of, |g| quarantine_id_of(g).is_some());
    // The sender hears of anti-virus findings only; the others of the
    // status that decided what happened (the block's cause: walkI 11).
    let (status, statuses) = if to == NotifyTo::Sender {
        let av: Vec<String> = union(
            about
                .iter()
                .map(|g| g.plan.av_finding().into_iter().collect()),
        );
        (av.join(", "), av)
    } else {
        (
            union(about.iter().map(|g| vec![g.plan.outcome_status()])).join(", "),
            union(about.iter().map(|g| g.plan.statuses())),
        )
    };
    // One parse of the header for the subject and the From.
    let headers = mail_parser::MessageParser::default().parse_headers(raw);
    let context = minijinja::context! {
        queue_id => env.id.0.clone(),
        sender => if env.mail_from.is_empty() { "<>".to_string() } else { env.mail_from.clone() },
        from => quoted(&from_of(headers.as_ref())),
        recipients => group_rcpts,
        subject => quoted_subject(&subject_of(headers.as_ref(), raw)),
        status => status,
        statuses => statuses,
        findings => findings,
        action => action,
        group => union(about.iter().map(|g| vec![g.partition.label().to_string()])).join(", "),
        changed => about.iter().any(|g| {
            !g.plan.edits.is_empty() || g.plan.delivery != super::plan::Delivery::Deliver
        }),
        client => env.client_ip.to_string(),
        quarantine_id => quarantine_id.unwrap_or_default(),
        archived => archived,
        hostname => cfg.server.hostname.clone(),
        date => received,
        config => config_path(cfg),
    };
    let dir = &j.partition.policy.notify_templates;
    let text = template(dir, to);
    let menv = environment();
    let render = |text: &str| {
        menv.template_from_named_str(file_name(to), text)
            .and_then(|t| t.render(&context))
    };
    let rendered = match render(text) {
        Ok(r) => r,
        // A template of the group's that check-config passed but that
        // fails on these values: the built-in one rather than no notice.
        Err(e) if text != built_in(to) => {
            tracing::error!(target: "notif", queue_id = %env.id, to = to.as_str(),
                template = %Path::new(&dir.dir).join(file_name(to)).display(),
                group = %j.partition.label(), address = %addresses.join(","),
                line = e.line().unwrap_or(0), problem = %render_problem(&e),
                "Cannot render the notification template; the built-in template is used.");
            render(built_in(to)).map_err(|e| format!("{}: {e}", file_name(to)))?
        }
        Err(e) => return Err(format!("built-in {}: {e}", file_name(to))),
    };
    let (subject, body) = match rendered.split_once("\n\n") {
        Some((head, body)) => (
            head.lines()
                .next()
                .and_then(|l| l.split_once(':'))
                .map_or(String::new(), |(_, v)| v.trim().to_string()),
            body.to_string(),
        ),
        None => (String::new(), rendered),
    };
    // A Subject that renders empty (`Subject: {{ subject }}` for a message
    // without one: walkAZ F11) would send a notice without a subject.
    let subject = if subject.is_empty() {
        String::from("Mailward notification")
    } else {
        subject
    };
    let mut msg = String::new();
    msg.push_str(&format!(
        "From: \"Mailward on {}\" <{}>\r\n",
        header_value(&cfg.server.hostname),
        cfg.server.postmaster
    ));
    msg.push_str(&format!("To: {}\r\n", addresses.join(",\r\n ")));
    msg.push_str(&folded_header("Subject", &subject));
    msg.push_str(&format!("Date: {}\r\n", chrono::Utc::now().to_rfc2822()));
    msg.push_str(&format!("Message-ID: <{}@{}>\r\n", id, cfg.server.hostname));
    msg.push_str("Auto-Submitted: auto-generated\r\n");
    msg.push_str("MIME-Version: 1.0\r\n");
    msg.push_str("Content-Type: text/plain; charset=utf-8\r\n");
    msg.push_str("Content-Transfer-Encoding: 8bit\r\n\r\n");
    // A UTF-8 address in RCPT TO or in the header (`To: jürgen@...`)
    // needs SMTPUTF8, as for the RFC 6533 report: without the flag the
    // notice went out raw, and an SMTPUTF8 hop (Postfix, Mailward)
    // refused it 553 5.6.7, so the international addressee never heard
    // (walkAR F4). The body's UTF-8 needs only 8BITMIME.
    let smtputf8 = !msg.is_ascii() || addresses.iter().any(|a| !a.is_ascii());
    for line in body.lines() {
        for (i, piece) in wrapped(line, MAX_LINE).into_iter().enumerate() {
            if i > 0 {
                msg.push_str("    ");
            }
            msg.push_str(piece);
            msg.push_str("\r\n");
        }
    }
    let bytes = msg.into_bytes();
    let mut e = Envelope::new(
        id,
        std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        cfg.server.hostname.clone(),
        String::new(),
    );
    e.rcpts = addresses
        .into_iter()
        .map(|a| {
            let mut r = Recipient::new(a);
            r.notify = Some(Notify {
                never: true,
                ..Notify::default()
            });
            r
        })
        .collect();
    e.is_bounce = true;
    e.scanned = true;
    e.eight_bit = !bytes.is_ascii();
    e.smtputf8 = smtputf8;
    e.size = bytes.len() as u64;
    Ok(Some((e, bytes)))
}

/// RFC 5322 2.1.1: a line holds at most 998 octets.
const MAX_LINE: usize = 998;

/// `line` in pieces of at most `max` octets, each ending at a space where
/// there is one (a list of 50 recipients stays whole: walkO 10 found it
/// cut mid-address), the later ones leaving room for the four spaces the
/// caller indents them by, so that they read as the line's continuation.
/// Nothing is dropped.
fn wrapped(line: &str, max: usize) -> Vec<&str> {
    const INDENT: usize = 4;
    let mut out = Vec::new();
    let mut rest = line;
    let mut room = max;
    while rest.len() > room {
        let mut end = room;
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        // After a space if there is one past the first quarter, else a
        // plain cut on a character boundary.
        let cut = rest[..end]
            .rfind(' ')
            .filter(|&i| i > end / 4)
            .map_or(end, |i| i + 1);
        out.push(rest[..cut].trim_end());
        rest = &rest[cut..];
        room = max - INDENT;
    }
    out.push(rest);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_long_notice_line_is_wrapped_not_cut() {
        let rcpts: Vec<String> = (1..=50)
            .map(|n| format!("longer.mailbox.name.{n:02}@example.com"))
            .collect();
        let line = format!("  Recipients: {}", rcpts.join(", "));
        assert!(line.len() > MAX_LINE);
        let pieces = wrapped(&line, MAX_LINE);
        assert!(pieces.len() >= 2, "{pieces:?}");
        assert!(pieces[0].len() <= MAX_LINE);
        for p in &pieces[1..] {
            assert!(p.len() + 4 <= MAX_LINE, "{}", p.len());
        }
        let whole: String = pieces.concat();
        for r in &rcpts {
            assert!(whole.contains(r.as_str()), "{r} is named");
        }
        // No space to cut at: cut anyway, nothing lost.
        let word = "x".repeat(2500);
        assert_eq!(wrapped(&word, MAX_LINE).concat(), word);
        assert_eq!(wrapped("short", MAX_LINE), ["short"]);
    }

    use super::*;

    #[test]
    fn the_built_in_templates_are_valid() {
        for (_, name, text) in BUILT_IN {
            assert_eq!(check_template(name, text), Vec::new(), "{name}");
        }
    }

    #[test]
    fn a_broken_template_is_reported_with_its_line() {
        let p = check_template(
            "admin.txt",
            "Subject: x\n\nline two\n{% if status %}\nno end\n",
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].problem.starts_with("template syntax"), "{p:?}");
        assert!(p[0].line >= 4, "{p:?}");
        let p = check_template("admin.txt", "Subject: x\n\nHello {{ nobody }}\n");
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].line, 3);
        assert!(
            p[0].problem.starts_with("unknown variable `nobody`"),
            "{p:?}"
        );
        let p = check_template("admin.txt", "no subject\n\nbody\n");
        assert_eq!(p[0].line, 1);
    }

    /// What compiles but fails when rendered (a filter that does not
    /// exist, an index past the end of a list) is found by check-config,
    /// at its line (walkO 2).
    #[test]
    fn a_template_that_cannot_be_rendered_is_refused_at_its_line() {
        let p = check_template("recipients.txt", "Subject: {{ status | upcase }}\n\nbody\n");
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].line, 1, "{p:?}");
        assert!(
            p[0].problem
                .starts_with("cannot be rendered with sample values")
                && p[0].problem.contains("upcase"),
            "{p:?}"
        );
        let p = check_template(
            "recipients.txt",
            "Subject: x\n\nline\n{{ recipients[5] }}\n",
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].line, 4, "{p:?}");
        // A list that can be empty: findings[0] fails for a notice without.
        let p = check_template("admin.txt", "Subject: {{ findings[0] }}\n\nx\n");
        assert!(
            p.len() == 1 && p[0].problem.contains("no findings and no quarantine ID"),
            "{p:?}"
        );
        // Guarded, it passes.
        let p = check_template(
            "admin.txt",
            "Subject: {% if findings %}{{ findings[0] }}{% endif %}\n\nx\n",
        );
        assert_eq!(p, Vec::new());
    }

    /// A template that fails at run time all the same (here: on one
    /// finding, which no sample has) gives the built-in notice, not none.
    #[test]
    fn a_template_that_fails_at_run_time_falls_back_to_the_built_in_one() {
        let mut cfg = crate::config::parse(
            "[policy]\nnotify_recipients = [\"av/infected\"]\n",
            "t.toml",
        )
        .unwrap();
        let broken = "Subject: {% if findings | length == 1 %}{{ findings[3] }}{% endif %}\n\nx\n";
        assert_eq!(check_template("recipients.txt", broken), Vec::new());
        cfg.policy.notify_templates = TemplatesDir {
            dir: "/etc/mailward/tpl".into(),
            texts: [("recipients.txt".to_string(), Arc::from(broken))].into(),
        };
        let mut env = Envelope::new(
            QueueId::generate(),
            "192.0.2.1".parse().unwrap(),
            "client.test".into(),
            "me@other.example".into(),
        );
        env.rcpts = vec![Recipient::new("user@example.com".into())];
        let report = eicar();
        let verdict =
            Verdict::from_report(report, super::super::partition(&cfg, &env), false, false);
        let mut records = Vec::new();
        let n = super::super::execute::compose_notifications(
            &cfg,
            &env,
            b"Subject: s\r\n\r\nx\r\n",
            &verdict,
            &mut records,
        );
        assert_eq!(n.len(), 1, "a notice all the same");
        let text = String::from_utf8_lossy(records[0].data.as_deref().map_or(&[][..], |d| &d[..]))
            .into_owned();
        assert!(
            text.contains("Subject: A message for you was checked: av/infected\r\n"),
            "{text}"
        );
    }

    /// The empty line after the Subject is required; CRLF line ends (an
    /// editor on Windows) are read as LF (walkO 7).
    #[test]
    fn the_subject_line_is_followed_by_an_empty_line() {
        let p = check_template("recipients.txt", "Subject: x\nLine one\n");
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].line, 2);
        assert!(
            p[0].problem
                .starts_with("expected an empty line after the Subject line"),
            "{p:?}"
        );
        let p = check_template("recipients.txt", "Subject: x\nReply-To: a@b\n\nbody\n");
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].line, 2);
        let dir = std::env::temp_dir().join(format!("mw-crlf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("recipients.txt"),
            "Subject: CRLF test {{ status }}\r\n\r\nLine one\r\n",
        )
        .unwrap();
        let (texts, problems) = load_dir(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(problems, Vec::new());
        assert_eq!(
            texts.get("recipients.txt").map(|t| &**t),
            Some("Subject: CRLF test {{ status }}\n\nLine one\n")
        );
    }

    /// walkAY T1, T3, T4, T5: a 30 MB template made every notice 30 MB; a
    /// byte order mark (Notepad) was read as a missing Subject line; a
    /// Latin-1 file said only "stream did not contain valid UTF-8"; an
    /// empty Subject passed.
    #[test]
    fn a_template_is_short_utf8_with_a_subject_and_may_start_with_a_bom() {
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str, bytes: &[u8]| {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        };
        at(
            "sender.txt",
            b"\xef\xbb\xbfSubject: bom {{ status }}\n\nbody\n",
        );
        at("recipients.txt", b"Subject: caf\xe9\n\nline two\n");
        let mut big = b"Subject: big\n\n".to_vec();
        big.resize(64 * 1024 + 1, b'x');
        at("admin.txt", &big);
        let (texts, problems) = load_dir(dir.path());
        assert_eq!(
            texts.get("sender.txt").map(|t| &**t),
            Some("Subject: bom {{ status }}\n\nbody\n")
        );
        let said: Vec<(String, usize, String)> = problems
            .into_iter()
            .map(|(file, p)| {
                let name = file.rsplit('/').next().unwrap_or_default().to_string();
                (name, p.line, p.problem)
            })
            .collect();
        assert_eq!(said.len(), 2, "{said:?}");
        assert!(
            said.iter().any(|(f, line, p)| f == "recipients.txt"
                && *line == 1
                && p.starts_with("not UTF-8 (octet 13 of the line): templates are UTF-8")),
            "{said:?}"
        );
        assert!(
            said.iter()
                .any(|(f, _, p)| f == "admin.txt" && p.starts_with("larger than 64KiB")),
            "{said:?}"
        );
        let p = check_template("admin.txt", "Subject:  \n\nbody\n");
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].problem.starts_with("the Subject line is empty"),
            "{p:?}"
        );
    }

    /// An infected message from alice to a recipient of the default group
    /// and one of `managers`, with this raw Subject field; both groups
    /// notify the sender and the recipients (managers also blocks it). The
    /// notices composed, as (to, envelope, text).
    fn notices(subject: &str) -> Vec<(NotifyTo, Envelope, String)> {
        notices_about(subject, "eicar.com")
    }

    /// The notices about a message with subject `subject` whose part
    /// `path` is infected: the sender's and the recipients' notices.
    fn notices_about(subject: &str, path: &str) -> Vec<(NotifyTo, Envelope, String)> {
        use crate::check::{Finding, Kind};
        let cfg = crate::config::parse(
            "[policy]\nnotify_sender = [\"av/infected\"]\nnotify_recipients = [\"av/infected\"]\n\
             [group.managers]\nrecipients = [\"*@managers.example.com\"]\nblock = [\"av/infected\"]\n",
            "t.toml",
        )
        .unwrap();
        let mut env = Envelope::new(
            QueueId::generate(),
            "192.0.2.1".parse().unwrap(),
            "client.test".into(),
            "alice@sender.test".into(),
        );
        env.rcpts = ["user@example.com", "boss@managers.example.com"]
            .into_iter()
            .map(|a| Recipient::new(a.into()))
            .collect();
        let raw = format!("Subject: {subject}\r\nFrom: alice@sender.test\r\n\r\nhello\r\n");
        let report = av_report(vec![Finding::new(
            Kind::Infected,
            "EICAR_Test_File",
            path,
            Some(0),
        )]);
        let verdict =
            Verdict::from_report(report, super::super::partition(&cfg, &env), false, false);
        let mut records = Vec::new();
        let composed = super::super::execute::compose_notifications(
            &cfg,
            &env,
            raw.as_bytes(),
            &verdict,
            &mut records,
        );
        assert_eq!(records.len(), composed.len());
        composed
            .into_iter()
            .zip(records)
            .map(|((to, e), r)| {
                let bytes = r.data.map(|d| d.to_vec()).unwrap_or_default();
                (to, e, String::from_utf8_lossy(&bytes).into_owned())
            })
            .collect()
    }

    #[test]
    fn the_sender_gets_one_notice_for_all_groups() {
        let n = notices("Invoice 4711");
        let to_sender: Vec<_> = n
            .iter()
            .filter(|(to, ..)| *to == NotifyTo::Sender)
            .collect();
        assert_eq!(to_sender.len(), 1, "one notice to the sender: {n:#?}");
        let (_, e, text) = to_sender[0];
        assert_eq!(e.rcpts.len(), 1);
        assert_eq!(e.rcpts[0].address, "alice@sender.test");
        assert!(
            text.contains("Recipients: user@example.com, boss@managers.example.com\r\n"),
            "{text}"
        );
        // The groups did different things: the action says which was which.
        assert!(
            text.contains(
                "Action:     user@example.com: delivered\r\n              \
                 boss@managers.example.com: blocked (not delivered)\r\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("Found:      infected EICAR_Test_File in eicar.com\r\n"),
            "{text}"
        );
        // Each group's recipients still get their own notice.
        let to_rcpts: Vec<_> = n
            .iter()
            .filter(|(to, ..)| *to == NotifyTo::Recipients)
            .map(|(_, e, _)| e.rcpts[0].address.as_str())
            .collect();
        assert_eq!(to_rcpts, ["user@example.com", "boss@managers.example.com"]);
    }

    /// Two recipients of one group, one of them a Bcc: each gets a notice
    /// addressed to them alone, naming nobody else (walkI 5).
    #[test]
    fn each_recipient_gets_a_notice_of_their_own() {
        let cfg = crate::config::parse(
            "[policy]\nnotify_recipients = [\"av/infected\"]\n",
            "t.toml",
        )
        .unwrap();
        let mut env = Envelope::new(
            QueueId::generate(),
            "192.0.2.1".parse().unwrap(),
            "client.test".into(),
            "me@other.example".into(),
        );
        env.rcpts = ["user@example.com", "secret-bcc@example.com"]
            .into_iter()
            .map(|a| Recipient::new(a.into()))
            .collect();
        let raw = b"To: user@example.com\r\nSubject: bcc test\r\n\r\nhi\r\n";
        let report = eicar();
        let verdict =
            Verdict::from_report(report, super::super::partition(&cfg, &env), false, false);
        let mut records = Vec::new();
        let n =
            super::super::execute::compose_notifications(&cfg, &env, raw, &verdict, &mut records);
        let to: Vec<Vec<&str>> = n
            .iter()
            .map(|(_, e)| e.rcpts.iter().map(|r| r.address.as_str()).collect())
            .collect();
        assert_eq!(to, [["user@example.com"], ["secret-bcc@example.com"]]);
        let texts: Vec<String> = records
            .iter()
            .map(|r| {
                String::from_utf8_lossy(r.data.as_deref().map_or(&[][..], |d| &d[..])).into_owned()
            })
            .collect();
        assert!(
            texts[0].contains("To: user@example.com\r\n"),
            "{}",
            texts[0]
        );
        assert!(!texts[0].contains("secret-bcc"), "{}", texts[0]);
        assert!(
            texts[1].contains("To: secret-bcc@example.com\r\n"),
            "{}",
            texts[1]
        );
        assert!(!texts[1].contains("user@example.com"), "{}", texts[1]);
    }

    /// walkAR F4: a notice to a UTF-8 address went out without SMTPUTF8,
    /// and SMTPUTF8 hops refused it (553 5.6.7): lost for the very people
    /// it was for. One to ASCII addresses needs no SMTPUTF8.
    #[test]
    fn a_notice_to_a_utf8_address_is_flagged_smtputf8() {
        let cfg = crate::config::parse(
            "[policy]\nnotify_sender = [\"av/infected\"]\nnotify_recipients = [\"av/infected\"]\n",
            "t.toml",
        )
        .unwrap();
        let mut env = Envelope::new(
            QueueId::generate(),
            "192.0.2.1".parse().unwrap(),
            "client.test".into(),
            "j\u{fc}rgen@xn--bcher-kva.example".into(),
        );
        env.smtputf8 = true;
        env.rcpts = vec![Recipient::new("user@example.com".into())];
        let raw = b"To: user@example.com\r\nSubject: s\r\n\r\nhi\r\n";
        let verdict =
            Verdict::from_report(eicar(), super::super::partition(&cfg, &env), false, false);
        let mut records = Vec::new();
        let n =
            super::super::execute::compose_notifications(&cfg, &env, raw, &verdict, &mut records);
        let flags: Vec<(String, bool)> = n
            .iter()
            .map(|(_, e)| (e.rcpts[0].address.clone(), e.smtputf8))
            .collect();
        assert_eq!(flags.len(), 2, "{flags:?}");
        for (to, smtputf8) in &flags {
            assert_eq!(*smtputf8, !to.is_ascii(), "{flags:?}");
        }
        assert!(flags.iter().any(|(to, _)| !to.is_ascii()), "{flags:?}");
    }

    /// The one notice that the configuration `toml` sends about a message
    /// from me@other.example to user@example.com whose checks found
    /// `report`.
    fn the_one_notice(toml: &str, report: crate::check::Report) -> String {
        let cfg = crate::config::parse(toml, "t.toml").unwrap();
        let mut env = Envelope::new(
            QueueId::generate(),
            "192.0.2.1".parse().unwrap(),
            "client.test".into(),
            "me@other.example".into(),
        );
        env.rcpts = vec![Recipient::new("user@example.com".into())];
        let verdict =
            Verdict::from_report(report, super::super::partition(&cfg, &env), false, false);
        let mut records = Vec::new();
        let n = super::super::execute::compose_notifications(
            &cfg,
            &env,
            b"Subject: s\r\n\r\nx\r\n",
            &verdict,
            &mut records,
        );
        assert_eq!(n.len(), 1);
        String::from_utf8_lossy(records[0].data.as_deref().map_or(&[][..], |d| &d[..])).into_owned()
    }

    /// A sender's notice about an infected probable spam states the
    /// virus, never the spam verdict (walkI 1). (One about an `as/spam` or
    /// `as/blacklisted` virus is not sent at all: plan's tests.)
    #[test]
    fn a_sender_notice_never_states_a_spam_status() {
        use crate::check::Report;
        let text = the_one_notice(
            "[policy]\nnotify_sender = [\"av/infected\"]\nblock = [\"as/probable\"]\n",
            Report {
                spam: Some(crate::check::spam::Evidence {
                    hits: vec![crate::check::spam::rules::Hit::new("SUBJ_FREE", 6.0)],
                    ..Default::default()
                }),
                ..eicar()
            },
        );
        assert!(text.contains("Result:     av/infected\r\n"), "{text}");
        assert!(
            text.contains("Action:     blocked (not delivered)\r\n"),
            "{text}"
        );
        assert!(!text.contains("as/"), "{text}");
    }

    /// A finding whose action was `pass` (delivered as sent): the sender
    /// is not told it was "not delivered as sent" (walkO 6).
    #[test]
    fn a_sender_notice_about_a_message_delivered_as_sent_says_so() {
        let text = the_one_notice("[policy]\nnotify_sender = [\"av/all\"]\n", encrypted());
        assert!(text.contains("Action:     delivered\r\n"), "{text}");
        assert!(!text.contains("not delivered as sent"), "{text}");
        assert!(!text.contains("may not have received"), "{text}");
        assert!(
            text.contains(
                "Subject: Your message was delivered; a problem was found in it: av/protected\r\n"
            ),
            "{text}"
        );
    }

    /// walkV 7 and 13: the recipient's notice said "your administrator
    /// can help" for a message kept nowhere, and for one in their mailbox.
    #[test]
    fn a_recipient_notice_says_what_is_left_of_the_message() {
        let n = notices("Invoice 4711");
        let to_recipients: Vec<&String> = n
            .iter()
            .filter(|(to, _, _)| *to == NotifyTo::Recipients)
            .map(|(_, _, t)| t)
            .collect();
        assert_eq!(to_recipients.len(), 2, "{n:?}");
        let mut kept_nowhere = 0;
        for text in to_recipients {
            if text.contains("a copy is kept in quarantine") {
                assert!(text.contains("your administrator can help"), "{text}");
            } else if text.contains("Action:     delivered\r\n") {
                assert!(
                    text.contains("It was delivered to you: open the part named above"),
                    "{text}"
                );
            } else {
                kept_nowhere += 1;
                assert!(text.contains("blocked (not delivered)"), "{text}");
                assert!(!text.contains("administrator can help"), "{text}");
                assert!(
                    text.contains("\r\nNo copy of it was kept: if you need it, ask the sender"),
                    "{text}"
                );
            }
        }
        assert_eq!(kept_nowhere, 1, "managers' block, not quarantined");
        // Delivered unchanged (action pass): it is in their mailbox.
        let text = the_one_notice("[policy]\nnotify_recipients = [\"av/all\"]\n", encrypted());
        assert!(text.contains("Action:     delivered\r\n"), "{text}");
        assert!(
            text.contains("\r\nIt was delivered to you: open the part named above"),
            "{text}"
        );
        assert!(!text.contains("administrator can help"), "{text}");
        // walkAY A1: delivered spam was told "open the part named above"
        // (none is), and its quarantine copy was not quoted.
        let text = the_one_notice(
            "[policy]\nnotify_recipients = [\"as/spam\"]\nquarantine = [\"as/spam\"]\n",
            gtube(),
        );
        assert!(
            text.contains("Action:     delivered; a copy is kept in quarantine\r\n"),
            "{text}"
        );
        assert!(
            text.contains("\r\nIt was delivered to you, marked: do not follow its links"),
            "{text}"
        );
        assert!(!text.contains("part named above"), "{text}");
        assert!(text.contains("quote the quarantine ID 1"), "{text}");
    }

    /// walkV 1: an attachment named `invoice%0A%0AIMPORTANT: ...` wrote
    /// the sender's paragraphs into the notices "from the postmaster".
    #[test]
    fn a_file_name_with_line_breaks_writes_no_line_of_a_notice() {
        let n = notices_about(
            "Invoice",
            "invoice\n\nIMPORTANT: this message is held. Log in at http://evil.example/\r\n\r\n.exe",
        );
        assert!(n.len() >= 2, "{n:?}");
        for (to, _, text) in &n {
            for line in text.split("\r\n") {
                assert!(
                    !line.starts_with("IMPORTANT") && !line.starts_with(".exe"),
                    "{to:?}: {text}"
                );
            }
            // On one line, and quoted at most 60 characters long (walkAP
            // F5), as the subject is.
            assert!(
                text.contains(
                    "infected EICAR_Test_File in invoice IMPORTANT: this message is held. \
                     Log in at http://ev...\r\n"
                ),
                "{to:?}: {text}"
            );
        }
    }

    /// walkAP F5: an attachment named with the EICAR test string made
    /// every notice carry it whole, so that the notices were themselves
    /// "infected" at the next hop. A part's name is quoted as the subject
    /// is: at most 60 characters, then `...`.
    #[test]
    fn a_part_named_with_a_signature_is_quoted_short_in_every_notice() {
        let eicar_text = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
        let n = notices_about("Invoice", eicar_text);
        assert!(n.len() >= 2, "{n:?}");
        for (to, _, text) in &n {
            assert!(
                !text.contains("EICAR-STANDARD-ANTIVIRUS-TEST-FILE!"),
                "{to:?}: {text}"
            );
            assert!(
                text.contains(&format!(
                    "infected EICAR_Test_File in {}...\r\n",
                    &eicar_text[..MAX_QUOTED_SUBJECT]
                )),
                "{to:?}: {text}"
            );
        }
        // A short name and a long archive path's start stay readable.
        assert_eq!(quoted("eicar.com"), "eicar.com");
        let path = format!("{}/setup.exe", "d".repeat(70));
        assert_eq!(quoted(&path), format!("{}...", "d".repeat(60)));
    }

    /// walkAP F5: a notice about a bounce listed `as/formal score=0.0
    /// rating=0 tests=none` as a finding. Neither as/formal nor as/clean
    /// is one; as/spam is.
    #[test]
    fn a_notice_lists_no_formal_or_clean_spam_verdict_as_a_finding() {
        let toml = "[policy]\ncheck_spam = true\nnotify_admin = [\"av/all\", \"as/all\"]\n";
        let raw = b"Subject: s\r\n\r\nx\r\n";
        let with_spam = |formal: Option<&'static str>, score: f64| crate::check::Report {
            spam: Some(crate::check::spam::Evidence {
                hits: vec![crate::check::spam::rules::Hit::new("SOME_TEST", score)],
                formal,
                ..Default::default()
            }),
            ..eicar()
        };
        for (formal, score, listed) in [
            (Some("delivery status notification"), 0.0, false),
            (None, 0.0, false),
            (None, 20.0, true),
        ] {
            let notices = notices_of(toml, raw, with_spam(formal, score));
            assert_eq!(notices.len(), 1, "{formal:?} {score}");
            let text = &notices[0].1;
            assert!(text.contains("  infected EICAR in eicar.com\r\n"), "{text}");
            // A status still (Statuses:), but no finding line.
            assert!(!text.contains("as/formal score="), "{text}");
            assert!(!text.contains("as/formal ("), "{text}");
            assert!(!text.contains("as/clean score="), "{text}");
            assert_eq!(text.contains("  as/spam score=20.0"), listed, "{text}");
        }
    }

    #[test]
    fn a_decoded_subject_stays_on_one_line_in_notices() {
        // "Grüße\r\nBcc: victim@evil.example\r\n\r\nHi" once decoded.
        let n = notices("=?UTF-8?Q?Gr=C3=BC=C3=9Fe=0D=0ABcc:_victim@evil.example=0D=0A=0D=0AHi?=");
        assert!(!n.is_empty());
        for (to, _, text) in &n {
            assert!(
                text.contains("Subject:    Grüße Bcc: victim@evil.example Hi\r\n"),
                "{to:?}: {text}"
            );
            assert!(
                !text.contains("\r\nBcc:") && !text.contains("\r\nHi\r\n"),
                "{to:?}: {text}"
            );
        }
        assert_eq!(one_line("a\r\n\tb\u{7}c\n"), "a b c");
    }

    /// walkV 2a: a Subject of 1,000 characters made one header line of
    /// 1,947 octets. Every line is folded under 78 characters, and the
    /// header reads back as the text it was made from.
    #[test]
    fn a_long_subject_is_folded_and_reads_back_whole() {
        let ascii = (0..300)
            .map(|n| format!("w{n}"))
            .collect::<Vec<_>>()
            .join(" ");
        let german = format!("Warnung zu „{}“", "Grüße aus Köln, ".repeat(125).trim_end());
        let one_word = "x".repeat(2000);
        for text in [
            ascii.as_str(),
            german.as_str(),
            one_word.as_str(),
            "short",
            "Über",
        ] {
            let header = folded_header("Subject", text);
            assert!(header.is_ascii(), "{header}");
            assert!(header.ends_with("\r\n"), "{header}");
            for line in header.trim_end().split("\r\n") {
                assert!(line.len() <= HEADER_WIDTH, "{} octets: {line}", line.len());
                assert!(!line.trim().is_empty(), "no empty line: {header:?}");
            }
            let msg = format!("{header}From: a@example.com\r\n\r\nbody\r\n");
            let parsed = mail_parser::MessageParser::default()
                .parse(msg.as_bytes())
                .and_then(|m| m.subject().map(str::to_string));
            assert_eq!(parsed.as_deref(), Some(text), "{header}");
        }
        assert_eq!(folded_header("Subject", "a\r\nb"), "Subject: a b\r\n");
    }

    #[test]
    fn header_values_stay_on_one_ascii_line() {
        assert_eq!(header_value("a\r\nb"), "a  b");
        let v = header_value("Überweisung für Sie");
        assert!(
            v.is_ascii() && v.starts_with("=?UTF-8?Q?=C3=9Cberweisung_f"),
            "{v}"
        );
    }

    /// The notices `toml` sends about `raw` from me@other.example to
    /// user@example.com whose checks found `report`, by addressee kind.
    fn notices_of(toml: &str, raw: &[u8], report: crate::check::Report) -> Vec<(NotifyTo, String)> {
        let cfg = crate::config::parse(toml, "t.toml").unwrap();
        let mut env = Envelope::new(
            QueueId::generate(),
            "192.0.2.1".parse().unwrap(),
            "client.test".into(),
            "me@other.example".into(),
        );
        env.rcpts = vec![Recipient::new("user@example.com".into())];
        let verdict =
            Verdict::from_report(report, super::super::partition(&cfg, &env), false, false);
        let mut records = Vec::new();
        let n =
            super::super::execute::compose_notifications(&cfg, &env, raw, &verdict, &mut records);
        n.iter()
            .zip(&records)
            .map(|((to, _), r)| {
                let data = r.data.as_deref().map_or(&[][..], |d| &d[..]);
                (*to, String::from_utf8_lossy(data).into_owned())
            })
            .collect()
    }

    /// A report whose anti-virus check found `findings`.
    fn av_report(findings: Vec<crate::check::Finding>) -> crate::check::Report {
        crate::check::Report {
            av_checked: true,
            av: findings,
            ..crate::check::Report::default()
        }
    }

    /// A clean message that the spam check calls spam (GTUBE).
    fn gtube() -> crate::check::Report {
        crate::check::Report {
            spam: Some(crate::check::spam::Evidence {
                hits: vec![crate::check::spam::rules::Hit::new("GTUBE", 1000.0)],
                ..Default::default()
            }),
            ..av_report(Vec::new())
        }
    }

    /// A report of the EICAR test file in `eicar.com`.
    fn eicar() -> crate::check::Report {
        use crate::check::{Finding, Kind};
        av_report(vec![Finding::new(
            Kind::Infected,
            "EICAR",
            "eicar.com",
            Some(0),
        )])
    }

    /// A report of an encrypted member, `a.zip/doc.txt` (av/protected).
    fn encrypted() -> crate::check::Report {
        use crate::check::{Finding, Kind};
        av_report(vec![Finding::new(
            Kind::Protected,
            "encrypted",
            "a.zip/doc.txt",
            Some(0),
        )])
    }

    /// walkAZ F11: a template whose Subject renders empty gives the notice
    /// a subject all the same.
    #[test]
    fn a_subject_that_renders_empty_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("recipients.txt"),
            "Subject: {{ subject }}\n\nA message for you: {{ status }}\n",
        )
        .unwrap();
        let toml = format!(
            "[policy]\nnotify_recipients = [\"av/all\"]\nnotify_templates = \"{}\"\n",
            dir.path().display()
        );
        let n = notices_of(&toml, b"To: user@example.com\r\n\r\nx\r\n", eicar());
        assert_eq!(n.len(), 1);
        assert!(
            n[0].1.contains("\r\nSubject: Mailward notification\r\n"),
            "{}",
            n[0].1
        );
    }

    /// walkAY N1: the recipients' notice shows the From its reader sees
    /// beside the envelope sender, and no From line without one.
    #[test]
    fn a_recipient_notice_shows_the_header_from_and_the_envelope_sender() {
        let toml = "[policy]\nnotify_recipients = [\"av/all\"]\n";
        let raw =
            b"From: =?utf-8?q?Chief_Executive?= <ceo@example.com>\r\nSubject: urgent\r\n\r\nx\r\n";
        let n = notices_of(toml, raw, eicar());
        assert_eq!(n.len(), 1);
        assert!(
            n[0].1
                .contains("  From:       Chief Executive <ceo@example.com>\r\n  Sender:     "),
            "{}",
            n[0].1
        );
        let n = notices_of(toml, b"Subject: none\r\n\r\nx\r\n", eicar());
        assert!(!n[0].1.contains("  From:  "), "{}", n[0].1);
        assert!(n[0].1.contains("  Sender:     "), "{}", n[0].1);
    }

    /// walkAD 10 and 11: the notice shows the first of two Subjects (the
    /// one marked and shown by most clients), and a raw Latin-1 subject
    /// reads as the sender wrote it, not as U+FFFD.
    #[test]
    fn a_notice_shows_the_first_subject_and_reads_raw_latin1() {
        let toml = "[policy]\nnotify_recipients = [\"av/all\"]\n";
        let two = b"Subject: Quarterly report\r\nSubject: FREE MONEY!!\r\n\r\nx\r\n";
        let notices = notices_of(toml, two, eicar());
        assert_eq!(notices.len(), 1);
        assert!(
            notices[0].1.contains("Subject:    Quarterly report\r\n"),
            "{}",
            notices[0].1
        );
        let latin1 = b"Subject: Gr\xfc\xdfe \x80 raw\r\n\r\nx\r\n";
        let notices = notices_of(toml, latin1, eicar());
        assert!(
            notices[0].1.contains("Subject:    Grüße € raw\r\n"),
            "{}",
            notices[0].1
        );
    }

    /// A notice is valid RFC 5322 whatever the quoted Subject holds: its
    /// header ASCII and folded under 78 characters, every line under 998
    /// octets and CRLF-terminated, no control character but the line
    /// ends; and the Subject is quoted at most 60 characters long, so that
    /// a signature in it (EICAR, 68 characters) does not make the notice
    /// "infected" at the next hop (walkAD 11).
    #[test]
    fn a_hostile_subject_makes_a_valid_notice_and_is_quoted_short() {
        let eicar_text = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
        let long = "word ".repeat(1000);
        let subjects: Vec<Vec<u8>> = vec![
            eicar_text.as_bytes().to_vec(),
            long.trim_end().as_bytes().to_vec(),
            b"Gr\xfc\xdfe\x1b[31m \x7f bell\x07 nul-free raw 8-bit \xe4\xf6\xfc".to_vec(),
            format!("=?UTF-8?B?{}?=", "w7zDpMO2".repeat(200)).into_bytes(),
            b"=?UTF-8?Q?a=0D=0ABcc:_v@evil.example?= =?x-unknown?q?zz?=".to_vec(),
        ];
        let toml = "[policy]\nnotify_admin = [\"av/all\"]\nnotify_recipients = [\"av/all\"]\n";
        for subject in &subjects {
            let mut raw = b"Subject: ".to_vec();
            raw.extend_from_slice(subject);
            raw.extend_from_slice(b"\r\nFrom: a@other.example\r\n\r\nx\r\n");
            let notices = notices_of(toml, &raw, eicar());
            assert_eq!(notices.len(), 2, "{}", String::from_utf8_lossy(subject));
            for (to, text) in &notices {
                assert!(text.ends_with("\r\n"), "{to:?}: {text}");
                let (head, body) = text.split_once("\r\n\r\n").unwrap();
                assert!(head.is_ascii(), "{to:?}: {head}");
                for line in head.split("\r\n") {
                    assert!(line.len() <= HEADER_WIDTH, "{to:?}: {line}");
                }
                for line in body.trim_end_matches("\r\n").split("\r\n") {
                    assert!(line.len() <= MAX_LINE, "{to:?}: {} octets", line.len());
                    assert!(!line.chars().any(char::is_control), "{to:?}: {line:?}");
                }
                assert!(
                    !text.contains("EICAR-STANDARD-ANTIVIRUS-TEST-FILE!"),
                    "{to:?}: {text}"
                );
                let quoted = text
                    .split("\r\n")
                    .find_map(|l| l.trim_start().strip_prefix("Subject:    "))
                    .unwrap_or_else(|| panic!("{to:?}: no quoted subject: {text}"));
                assert!(
                    quoted.chars().count() <= MAX_QUOTED_SUBJECT + 3,
                    "{to:?}: {quoted}"
                );
                let parsed = mail_parser::MessageParser::default().parse(text.as_bytes());
                assert!(
                    parsed.as_ref().and_then(|m| m.subject()).is_some(),
                    "{to:?}: {text}"
                );
            }
        }
        assert_eq!(quoted_subject("short"), "short");
        let cut = quoted_subject(&"ä".repeat(100));
        assert_eq!(cut, format!("{}...", "ä".repeat(MAX_QUOTED_SUBJECT)));
        // Text that reads as an encoded word is encoded in a header.
        let header = folded_header("Subject", "About =?utf-8?q?Urgent=21?= now");
        assert!(
            header.starts_with("Subject: =?UTF-8?Q?About_=3D=3Futf-8"),
            "{header}"
        );
    }

    /// walkAD 9: 3,000 findings make no 180 kB notice; the administrator
    /// is told where the whole list is.
    #[test]
    fn a_notice_lists_twenty_findings_and_says_how_many_more() {
        use crate::check::{Finding, Kind};
        let report = av_report(
            (0..3000)
                .map(|i| {
                    Finding::new(
                        Kind::Infected,
                        "EICAR",
                        format!("many.zip/eicar{i}.com"),
                        Some(0),
                    )
                })
                .collect(),
        );
        let toml = "[policy]\nnotify_admin = [\"av/all\"]\nnotify_recipients = [\"av/all\"]\nquarantine = [\"av/infected\"]\n";
        let notices = notices_of(toml, b"Subject: s\r\n\r\nx\r\n", report);
        assert_eq!(notices.len(), 2);
        for (to, text) in &notices {
            let found = text.matches("infected EICAR in many.zip/").count();
            assert_eq!(found, MAX_NOTICE_FINDINGS, "{to:?}: {text}");
            assert!(
                text.contains("... and 2980 more findings (mailward quarantine show "),
                "{to:?}: {text}"
            );
            assert!(text.len() < 10_000, "{to:?}: {} octets", text.len());
        }
    }

    /// walkAP F10: the recipient of a quarantined message is given the
    /// entry's ID, which `quarantine release` takes as it is (the queue ID
    /// of a message in two groups names two entries).
    #[test]
    fn a_recipient_notice_quotes_the_quarantine_id() {
        let toml = "[policy]\nnotify_recipients = [\"av/all\"]\nquarantine = [\"av/all\"]\nblock = [\"av/all\"]\n";
        let n = notices_of(toml, b"Subject: s\r\n\r\nx\r\n", eicar());
        assert_eq!(n.len(), 1);
        let text = &n[0].1;
        let id = text
            .split("Quote its quarantine ID ")
            .nth(1)
            .and_then(|rest| rest.split('.').next())
            .unwrap_or_default();
        assert!(crate::envelope::QueueId::is_valid(id), "{text}");
    }

    /// walkAD 11: with the incoming archive on, a recipient of a message
    /// kept nowhere else is not told that no copy was kept.
    #[test]
    fn a_recipient_notice_knows_the_incoming_archive_keeps_a_copy() {
        let toml = "[policy]\nnotify_recipients = [\"av/all\"]\nblock = [\"av/all\"]\n";
        let raw = b"Subject: s\r\n\r\nx\r\n";
        let kept_nowhere = notices_of(toml, raw, eicar());
        assert!(
            kept_nowhere[0].1.contains("No copy of it was kept"),
            "{}",
            kept_nowhere[0].1
        );
        let archived = notices_of(&format!("{toml}[archive]\nincoming = true\n"), raw, eicar());
        let text = &archived[0].1;
        assert!(!text.contains("No copy of it was kept"), "{text}");
        assert!(
            text.contains("the gateway archives the mail it receives"),
            "{text}"
        );
    }
}
