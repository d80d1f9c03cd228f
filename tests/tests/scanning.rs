//! Scanning as a mail administrator checks it, end to end: the real daemon
//! on its built-in default bases, between a raw SMTP client and Postfix's
//! smtp-sink. What is checked is what an administrator would look at: what
//! the next hop received (is the virus gone, is the rest intact and still
//! valid MIME, is the notice there), the `X-Mailward-AV` header, the SMTP
//! reply, and where cheap the log's findings, the raw records and
//! `mailward stats show`.
//!
//! - The EICAR test file in ten carriers (the body, base64, quoted-
//!   printable, uuencoded, zip, zip in zip, forwarded message, gzip, tar,
//!   tar.gz), each under the three answers a policy can give: `remove`,
//!   `placeholder`, and `reject` in the session. One daemon serves all
//!   three through policy groups of recipients.
//! - A clean message arrives byte for byte, below the verdict header.
//! - A password-protected zip (`zip -P`), a truncated zip and broken MIME.
//! - A zip bomb of 1 GiB: `av/error`, delivered in time, memory bounded.
//! - Name and MIME filters, includes and excludes combined, with a `file:`
//!   list; `mailward scan` gives the gateway's verdicts on the same mail
//!   and attachments saved as files.
//! - Bases: a set with a syntax error refused (file and line said), a new
//!   set in use without restart, SIGHUP, rollback.
//! - Debian's clamav-testfiles: what is found in each, printed as a table
//!   (docs/scanning-clamav-testfiles.md); asserted for the formats Mailward
//!   unpacks.
//!
//! The EICAR string is put together at run time, so that this source does
//! not look like the test file to other scanners. Every problem is
//! collected and all are reported at once. Needs the Debian packages
//! postfix (smtp-sink), zip and clamav-testfiles (tests/install-deps.sh).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::{Cursor, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use mail_parser::{MessageParser, MimeHeaders, PartType};
use mailward_e2e::failures::Failures;
use mailward_e2e::mime::{self, Encoding, Part};
use mailward_e2e::samples::{eicar, vm_hwm, zip_bomb, zip_of};
use mailward_e2e::stats::StatsSetup;
use mailward_e2e::tools::{output_text, run};
use mailward_e2e::*;

/// The second line of every verdict header under the built-in default
/// bases.
const DEFAULT_BASES: &str = "\tbases=2026-11-24T00:00:00Z; version=\"2026.11.24.1\"";

/// The default bases' rule for the EICAR test file.
const EICAR_RULE: &str = "EICAR_Test_File";

const SENDER: &str = "alice@sender.test";

/// The delimiter of every test message (the forwarded one has its own).
const BOUNDARY: &str = "mw-e2e-outer-7f3a";

/// Where Debian's clamav-testfiles puts its samples.
const CLAMAV_TESTFILES: &str = "/usr/share/clamav-testfiles";

fn eicar_text() -> String {
    String::from_utf8(eicar()).expect("ASCII")
}

/// The greeting every test message starts with.
fn greeting() -> Part {
    Part::text("Hello Bob,\r\n\r\nhere are the files.\r\n")
}

/// A harmless attachment that must survive every action.
fn notes() -> Part {
    Part::attachment("notes.txt", "text/plain", b"Meeting at ten, room 4.\r\n")
}

fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(data)?;
    Ok(gz.finish()?)
}

fn tar_of(files: &[(&str, &[u8])]) -> Result<Vec<u8>> {
    let mut t = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        t.append_data(&mut h, name, *data)?;
    }
    Ok(t.into_inner()?)
}

/// Sends one message in a session of its own; the reply to the end of data.
fn send(port: u16, rcpt: &str, message: &[u8]) -> Result<Reply> {
    let mut c = SmtpClient::connect_ok(port)?;
    c.ehlo("client.test")?;
    let reply = c.send_mail(SENDER, &[rcpt], message)?;
    c.quit();
    Ok(reply)
}

/// Sends one message that must be queued; its queue ID.
fn send_ok(port: u16, rcpt: &str, message: &[u8]) -> Result<String> {
    let reply = send(port, rcpt, message)?;
    reply.expect(250, "2.0.0")?;
    reply
        .queue_id()
        .with_context(|| format!("no queue ID in: {reply}"))
}

/// Waits until the sink has a message for every queue ID of `ids`; returns
/// them by queue ID.
fn delivered(sink: &Sink, ids: &[&str]) -> Result<BTreeMap<String, SinkMessage>> {
    let mut missing = Vec::new();
    wait_until(
        &format!("{} message(s) at the sink", ids.len()),
        DELIVERY_TIMEOUT,
        || {
            let mut by_id = BTreeMap::new();
            for m in sink.messages()? {
                for id in m.queue_ids() {
                    by_id.insert(id, m.clone());
                }
            }
            missing = ids
                .iter()
                .filter(|id| !by_id.contains_key(**id))
                .map(|id| id.to_string())
                .collect();
            Ok(missing.is_empty().then_some(by_id))
        },
    )
    .with_context(|| format!("not delivered: {missing:?}"))
}

/// Checks the verdict header on top of `m`: `X-Mailward-AV: STATUS;` (with
/// `detection="..."` when given), folded, the default bases below.
fn check_verdict(
    f: &mut Failures,
    what: &str,
    m: &SinkMessage,
    status: &str,
    detection: Option<&str>,
) {
    let first = match detection {
        Some(d) => format!("X-Mailward-AV: {status}; detection=\"{d}\";"),
        None => format!("X-Mailward-AV: {status};"),
    };
    let got: Vec<&str> = m.message.lines().take(2).collect();
    f.check(got == [first.as_str(), DEFAULT_BASES], || {
        format!(
            "{what}: the message starts with {got:?}, expected the verdict {:?}",
            [first.as_str(), DEFAULT_BASES]
        )
    });
}

/// The status and detection of the verdict header of `m`.
fn verdict_of(m: &SinkMessage) -> (String, String) {
    let value = m.header("X-Mailward-AV").unwrap_or_default();
    let status = value.split(';').next().unwrap_or("").trim().to_string();
    let detection = value
        .split_once("detection=\"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(d, _)| d.to_string())
        .unwrap_or_default();
    (status, detection)
}

/// Checks that the daemon logged a finding `detection` at `object` for
/// message `id`.
fn check_finding_logged(
    f: &mut Failures,
    what: &str,
    log: &str,
    id: &str,
    detection: &str,
    object: &str,
) {
    // A value with a space is logged in quotes (`object="part 1"`).
    let value = |v: &str| {
        if v.contains(' ') {
            format!("\"{v}\"")
        } else {
            v.to_string()
        }
    };
    let (detection, object) = (value(detection), value(object));
    let found = log.lines().any(|l| {
        l.contains(" Finding. ")
            && l.contains(&format!("queue_id={id} "))
            && l.contains(&format!(" detection={detection} "))
            && l.ends_with(&format!(" object={object}"))
    });
    f.check(found, || {
        format!("{what}: no log line `Finding. queue_id={id} ... detection={detection} object={object}`")
    });
}

/// One leaf part of a delivered message, decoded.
struct Leaf {
    /// "part 3", or "forwarded.eml/part 2" inside a forwarded message.
    path: String,
    /// The attachment name.
    name: Option<String>,
    content_type: String,
    data: Vec<u8>,
}

/// Every leaf part of `message`, forwarded messages walked into.
fn leaves(message: &[u8]) -> Result<Vec<Leaf>> {
    let parsed = MessageParser::default()
        .parse(message)
        .context("mail-parser cannot parse it")?;
    let mut out = Vec::new();
    walk(&parsed, "", &mut out);
    Ok(out)
}

fn walk(msg: &mail_parser::Message<'_>, prefix: &str, out: &mut Vec<Leaf>) {
    for (i, part) in msg.parts.iter().enumerate() {
        let name = part.attachment_name().map(str::to_string);
        let path = format!(
            "{prefix}{}",
            name.clone().unwrap_or_else(|| format!("part {}", i + 1))
        );
        let content_type = part
            .content_type()
            .map(|ct| format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or("")).to_ascii_lowercase())
            .unwrap_or_else(|| "text/plain".into());
        match &part.body {
            PartType::Multipart(_) => {}
            PartType::Message(inner) => walk(inner, &format!("{path}/"), out),
            _ => out.push(Leaf {
                path,
                name,
                content_type,
                data: part.contents().to_vec(),
            }),
        }
    }
}

/// `data` and, when it is a zip, gzip or tar archive, what is inside (a
/// few levels deep): what a recipient could get out of an attachment.
fn unpacked(data: &[u8], depth: u32) -> Vec<Vec<u8>> {
    let mut out = vec![data.to_vec()];
    if depth == 0 {
        return out;
    }
    let mut inner = Vec::new();
    if data.starts_with(b"PK\x03\x04") {
        if let Ok(mut z) = zip::ZipArchive::new(Cursor::new(data)) {
            for i in 0..z.len() {
                let mut v = Vec::new();
                if let Ok(mut member) = z.by_index(i) {
                    if member.read_to_end(&mut v).is_ok() {
                        inner.push(v);
                    }
                }
            }
        }
    } else if data.starts_with(&[0x1f, 0x8b]) {
        let mut v = Vec::new();
        if flate2::read::MultiGzDecoder::new(data)
            .read_to_end(&mut v)
            .is_ok()
        {
            inner.push(v);
        }
    } else if data.len() > 262 && &data[257..262] == b"ustar" {
        let mut archive = tar::Archive::new(data);
        if let Ok(entries) = archive.entries() {
            for mut entry in entries.flatten() {
                let mut v = Vec::new();
                if entry.read_to_end(&mut v).is_ok() {
                    inner.push(v);
                }
            }
        }
    }
    for v in inner {
        out.extend(unpacked(&v, depth - 1));
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Where the EICAR string still is in a delivered message: in its bytes,
/// in a decoded part, in an archive member, or as a uuencoded block.
fn eicar_places(message: &str, leaves: &[Leaf]) -> Vec<String> {
    let e = eicar();
    let mut places = Vec::new();
    if contains(message.as_bytes(), &e) {
        places.push("in the message as it is".to_string());
    }
    for leaf in leaves {
        if unpacked(&leaf.data, 4).iter().any(|d| contains(d, &e)) {
            places.push(format!("in {} (decoded or unpacked)", leaf.path));
        }
        if contains(&leaf.data, b"begin 644 ") {
            places.push(format!("a uuencoded block in {}", leaf.path));
        }
    }
    places
}

/// What is wrong with `message` as MIME: mail-parser cannot read it, or a
/// multipart's delimiters are not balanced (at least one `--B`, exactly one
/// `--B--`).
fn mime_problems(message: &str) -> Vec<String> {
    let Some(parsed) = MessageParser::default().parse(message.as_bytes()) else {
        return vec!["mail-parser cannot parse it".into()];
    };
    let mut boundaries = Vec::new();
    collect_boundaries(&parsed, &mut boundaries);
    let mut problems = Vec::new();
    for b in boundaries {
        let open = format!("--{b}");
        let close = format!("--{b}--");
        let opens = message.lines().filter(|l| l.trim_end() == open).count();
        let closes = message.lines().filter(|l| l.trim_end() == close).count();
        if opens == 0 || closes != 1 {
            problems.push(format!(
                "boundary {b:?}: {opens} delimiter line(s) and {closes} closing one(s), expected at least 1 and exactly 1"
            ));
        }
    }
    problems
}

fn collect_boundaries(msg: &mail_parser::Message<'_>, out: &mut Vec<String>) {
    for part in &msg.parts {
        match &part.body {
            PartType::Multipart(_) => {
                if let Some(b) = part.content_type().and_then(|ct| ct.attribute("boundary")) {
                    out.push(b.to_string());
                }
            }
            PartType::Message(inner) => collect_boundaries(inner, out),
            _ => {}
        }
    }
}

/// The names of the attachments in `leaves`.
fn names(leaves: &[Leaf]) -> Vec<String> {
    leaves.iter().filter_map(|l| l.name.clone()).collect()
}

/// The EICAR test file in one carrier.
struct Carrier {
    /// What it shows, for messages.
    what: &'static str,
    /// Its part of the recipient's address.
    key: &'static str,
    message: Vec<u8>,
    /// The top-level part as the notice names it: `"files.zip"`, `part 2`.
    unit: String,
    /// Where the finding is: `outer.zip/inner.zip/eicar.com`.
    object: &'static str,
    /// The message is one part: the body itself gives way to the notice.
    single: bool,
    /// The greeting is a part of its own that stays.
    keeps_greeting: bool,
}

fn carriers() -> Result<Vec<Carrier>> {
    let e = eicar();
    let with = |subject: &str, carrier: Part| {
        mime::multipart(subject, BOUNDARY, &[greeting(), carrier, notes()])
    };
    let attachment = |name: &str, ctype: &str, data: &[u8]| Part::attachment(name, ctype, data);
    let forwarded = mime::multipart(
        "the original",
        "mw-e2e-inner-91c2",
        &[
            Part::text("The file is attached.\r\n"),
            attachment("eicar.com", "application/octet-stream", &e),
        ],
    );
    let uu_text = format!(
        "Hello Bob,\r\n\r\nthe file, uuencoded:\r\n\r\n{}\r\nBye\r\n",
        mime::uuencode("eicar.com", &e)
    );
    let carrier = |what, key, message, unit: &str, object| Carrier {
        what,
        key,
        message,
        unit: unit.to_string(),
        object,
        single: false,
        keeps_greeting: true,
    };
    Ok(vec![
        Carrier {
            single: true,
            keeps_greeting: false,
            ..carrier(
                "as the plain body",
                "body",
                mime::single("the body", &Part::text(&format!("{}\r\n", eicar_text()))),
                "part 1",
                "part 1",
            )
        },
        carrier(
            "as a base64 attachment",
            "base64",
            with(
                "base64",
                attachment("eicar.com", "application/octet-stream", &e),
            ),
            "\"eicar.com\"",
            "eicar.com",
        ),
        carrier(
            "as a quoted-printable attachment",
            "qp",
            with(
                "quoted-printable",
                attachment("eicar.txt", "text/plain; charset=us-ascii", &e)
                    .encoded(Encoding::QuotedPrintable),
            ),
            "\"eicar.txt\"",
            "eicar.txt",
        ),
        Carrier {
            keeps_greeting: false,
            ..carrier(
                "uuencoded in a text body",
                "uu",
                mime::multipart("uuencoded", BOUNDARY, &[Part::text(&uu_text), notes()]),
                "part 2",
                "part 2/eicar.com",
            )
        },
        carrier(
            "inside a zip",
            "zip",
            with(
                "zip",
                attachment(
                    "files.zip",
                    "application/zip",
                    &zip_of(&[("readme.txt", b"Read me.\r\n"), ("eicar.com", &e)])?,
                ),
            ),
            "\"files.zip\"",
            "files.zip/eicar.com",
        ),
        carrier(
            "inside a zip inside a zip",
            "zipzip",
            with(
                "zip in zip",
                attachment(
                    "outer.zip",
                    "application/zip",
                    &zip_of(&[("inner.zip", &zip_of(&[("eicar.com", &e)])?)])?,
                ),
            ),
            "\"outer.zip\"",
            "outer.zip/inner.zip/eicar.com",
        ),
        carrier(
            "inside a forwarded message",
            "forwarded",
            with("forwarded", Part::message("forwarded.eml", &forwarded)),
            "\"forwarded.eml\"",
            "forwarded.eml/eicar.com",
        ),
        carrier(
            "inside a .gz",
            "gz",
            with(
                "gzip",
                attachment("eicar.com.gz", "application/gzip", &gzip(&e)?),
            ),
            "\"eicar.com.gz\"",
            "eicar.com.gz/eicar.com",
        ),
        carrier(
            "inside a .tar",
            "tar",
            with(
                "tar",
                attachment(
                    "eicar.tar",
                    "application/x-tar",
                    &tar_of(&[("eicar.com", &e)])?,
                ),
            ),
            "\"eicar.tar\"",
            "eicar.tar/eicar.com",
        ),
        carrier(
            "inside a .tar.gz",
            "tgz",
            with(
                "tar.gz",
                attachment(
                    "eicar.tar.gz",
                    "application/gzip",
                    &gzip(&tar_of(&[("docs/eicar.com", &e)])?)?,
                ),
            ),
            "\"eicar.tar.gz\"",
            "eicar.tar.gz/eicar.tar/docs/eicar.com",
        ),
    ])
}

/// How a policy answers an infected message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Remove,
    Placeholder,
    Reject,
}

impl Answer {
    /// The recipient domain whose policy group gives this answer.
    fn domain(self) -> &'static str {
        match self {
            Answer::Remove => "example.com",
            Answer::Placeholder => "placeholder.example.com",
            Answer::Reject => "reject.example.com",
        }
    }
}

/// Checks what the sink got for `c` sent under `answer` (remove or
/// placeholder).
fn check_cleaned(f: &mut Failures, c: &Carrier, answer: Answer, m: &SinkMessage) {
    let what = format!("EICAR {} ({answer:?})", c.what);
    check_verdict(f, &what, m, "infected", Some(EICAR_RULE));
    let text = &m.message;
    let Some(leaves) = f.step(&format!("{what}: reading it"), leaves(text.as_bytes())) else {
        return;
    };
    let places = eicar_places(text, &leaves);
    f.check(places.is_empty(), || {
        format!("{what}: EICAR is still there: {places:?}\n{text}")
    });
    let problems = mime_problems(text);
    f.check(problems.is_empty(), || {
        format!("{what}: not valid MIME: {problems:?}\n{text}")
    });
    let verb = match (answer, c.single) {
        (Answer::Remove, true) => "removed",
        _ => "replaced",
    };
    let notice = format!(
        "Mailward {verb} {} of this message: infected ({EICAR_RULE} in {}).",
        c.unit, c.object
    );
    let notices: Vec<&Leaf> = leaves
        .iter()
        .filter(|l| l.data.starts_with(b"Mailward "))
        .collect();
    let want_notice = c.single || answer == Answer::Placeholder;
    let notice_ok = if want_notice {
        notices.len() == 1
            && notices[0].content_type == "text/plain"
            && String::from_utf8_lossy(&notices[0].data).trim_end() == notice
    } else {
        notices.is_empty()
    };
    f.check(notice_ok, || {
        format!(
            "{what}: expected {}, found {:?}:\n{text}",
            if want_notice {
                format!("one text/plain part {notice:?}")
            } else {
                "no notice".to_string()
            },
            notices
                .iter()
                .map(|l| String::from_utf8_lossy(&l.data).into_owned())
                .collect::<Vec<_>>()
        )
    });
    if c.single {
        f.check(
            m.header("Content-Type")
                .is_some_and(|ct| ct.starts_with("text/plain")),
            || format!("{what}: the single part is not text/plain now:\n{text}"),
        );
        return;
    }
    // The notice stands where the part was: after the greeting, if that
    // is a part of its own.
    if answer == Answer::Placeholder {
        let at = leaves.iter().position(|l| l.data.starts_with(b"Mailward "));
        let want = usize::from(c.keeps_greeting);
        f.check(at == Some(want), || {
            format!("{what}: the notice is leaf {at:?}, expected leaf {want}:\n{text}")
        });
    }
    // The other parts are there as they were.
    let names = names(&leaves);
    f.check(
        names.last().map(String::as_str) == Some("notes.txt"),
        || format!("{what}: notes.txt is not the last attachment: {names:?}\n{text}"),
    );
    let greeting = leaves
        .iter()
        .any(|l| l.data.starts_with(b"Hello Bob,") && l.name.is_none());
    f.check(greeting == c.keeps_greeting, || {
        format!(
            "{what}: the greeting part is {}:\n{text}",
            if greeting { "there" } else { "gone" }
        )
    });
    let carrier_name = c.unit.trim_matches('"');
    f.check(!names.iter().any(|n| n == carrier_name), || {
        format!("{what}: the attachment {carrier_name} is still there:\n{text}")
    });
}

/// The main rig: the default policy removes, the recipients of
/// placeholder.example.com get notices, those of reject.example.com are
/// refused in the session.
fn main_rig(dir: &TestDir, stats: &StatsSetup, sink: &Sink) -> Result<Daemon> {
    let config = Config::new(dir.path())
        .set_str("policy", "action_infected", "remove")
        .set_list(
            "group.notices",
            "recipients",
            &["*@placeholder.example.com"],
        )
        .set_str("group.notices", "action_infected", "placeholder")
        .set_list("group.refusals", "recipients", &["*@reject.example.com"])
        .set_list("group.refusals", "reject", &["av/infected"])
        .route_to_port("*", sink.port);
    Daemon::start(&stats.apply(config))
}

#[test]
fn eicar_in_every_carrier_is_removed_replaced_or_refused() -> Result<()> {
    let started = Instant::now();
    let dir = TestDir::new("scan-eicar")?;
    let sink = Sink::start(dir.path(), "sink")?;
    let stats = StatsSetup::new(dir.path());
    let daemon = main_rig(&dir, &stats, &sink)?;
    let mut f = Failures::default();
    let carriers = carriers()?;

    // Send everything first, then look at what arrived.
    let mut queued: Vec<(&Carrier, Answer, String)> = Vec::new();
    for c in &carriers {
        for answer in [Answer::Remove, Answer::Placeholder, Answer::Reject] {
            let rcpt = format!("{}@{}", c.key, answer.domain());
            let what = format!("EICAR {} ({answer:?})", c.what);
            let Some(reply) = f.step(
                &format!("{what}: sending"),
                send(daemon.port, &rcpt, &c.message),
            ) else {
                continue;
            };
            if answer == Answer::Reject {
                let why = format!("av/infected ({EICAR_RULE})");
                f.check(
                    reply.is(550, "5.7.1") && reply.text().contains(&why),
                    || format!("{what}: got {reply}, expected 550 5.7.1 ... {why}"),
                );
                continue;
            }
            match reply.queue_id().filter(|_| reply.is(250, "2.0.0")) {
                Some(id) => queued.push((c, answer, id)),
                None => f.push(format!("{what}: got {reply}, expected 250 2.0.0 queued")),
            }
        }
    }
    let ids: Vec<&str> = queued.iter().map(|(_, _, id)| id.as_str()).collect();
    let by_id = f
        .step("the cleaned messages at the sink", delivered(&sink, &ids))
        .unwrap_or_default();
    let log = daemon.full_log();
    let raw = f
        .step("reading the raw records", stats.raw_lines())
        .unwrap_or_default();
    for (c, answer, id) in &queued {
        let Some(m) = by_id.get(id) else { continue };
        check_cleaned(&mut f, c, *answer, m);
        if *answer == Answer::Remove {
            let what = format!("EICAR {}", c.what);
            check_finding_logged(&mut f, &what, &log, id, EICAR_RULE, c.object);
            let record = raw.iter().find(|r| &r.queue_id == id);
            f.check(
                record.is_some_and(|r| r.status == "av/infected" && r.detail == EICAR_RULE),
                || {
                    format!(
                        "{what}: raw record {:?}, expected status av/infected and detail {EICAR_RULE}",
                        record.map(|r| &r.line)
                    )
                },
            );
        }
    }
    // Nothing for the refused ones reached the sink.
    let stray: Vec<String> = sink
        .messages()?
        .iter()
        .flat_map(|m| m.recipients())
        .filter(|r| r.ends_with("@reject.example.com"))
        .collect();
    f.check(stray.is_empty(), || {
        format!("refused messages reached the sink anyway: {stray:?}")
    });
    // `stats show`: one detection per message, refused ones included.
    let want = (carriers.len() * 3) as u64;
    if let Some(text) = f.step(
        "mailward stats show --json",
        daemon.cli_ok(&["stats", "show", "--json"]),
    ) {
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let top = &doc["viruses"]["mailward_top_virus_detections"];
        let count = top
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["item"] == EICAR_RULE))
            .and_then(|r| r["count"].as_u64());
        f.check(count == Some(want), || {
            format!(
                "stats show: top virus detections {top}, expected {EICAR_RULE} with count {want}"
            )
        });
    }
    eprintln!(
        "EICAR in every carrier: {:.1}s",
        started.elapsed().as_secs_f64()
    );
    f.finish(|| format!("test directory {}\n{}", dir.path().display(), daemon.log()))
}

#[test]
fn clean_protected_and_damaged_messages() -> Result<()> {
    let started = Instant::now();
    let zip_cli = require("zip", "zip")?;
    let dir = TestDir::new("scan-damaged")?;
    let sink = Sink::start(dir.path(), "sink")?;
    let stats = StatsSetup::new(dir.path());
    let daemon = main_rig(&dir, &stats, &sink)?;
    let mut f = Failures::default();
    let e = eicar();

    // A clean message with attachments, a forwarded message and a line
    // that starts with a dot: delivered byte for byte.
    let clean = mime::multipart(
        "clean",
        BOUNDARY,
        &[
            Part::text("Hello Bob,\r\n\r\n.. a line that starts with dots,\r\nand the report.\r\n"),
            Part::attachment(
                "report.pdf",
                "application/pdf",
                b"%PDF-1.4\n% harmless\n1 0 obj << >> endobj\n%%EOF\n",
            ),
            notes().encoded(Encoding::QuotedPrintable),
            Part::message(
                "earlier.eml",
                &mime::multipart(
                    "earlier",
                    "mw-e2e-inner-91c2",
                    &[Part::text("Earlier mail.\r\n"), notes()],
                ),
            ),
            Part::attachment(
                "archive.zip",
                "application/zip",
                &zip_of(&[("a.txt", b"just text\r\n")])?,
            ),
        ],
    );

    // A password-protected zip with EICAR inside, made by zip(1).
    let inside = dir.join("protected");
    std::fs::create_dir_all(&inside)?;
    std::fs::write(inside.join("eicar.com"), &e)?;
    let (zip_path, member) = (inside.join("protected.zip"), inside.join("eicar.com"));
    let args = [
        OsStr::new("-q"),
        OsStr::new("-j"),
        OsStr::new("-P"),
        OsStr::new("secret"),
        zip_path.as_os_str(),
        member.as_os_str(),
    ];
    let out = run(&zip_cli, &args)?;
    if !out.status.success() {
        bail!("zip -P failed: {}", output_text(&out));
    }
    let protected_zip = std::fs::read(&zip_path)?;
    let protected = mime::multipart(
        "protected",
        BOUNDARY,
        &[
            greeting(),
            Part::attachment("protected.zip", "application/zip", &protected_zip),
            notes(),
        ],
    );

    // A zip cut in the middle of its second member: the first, EICAR, is
    // still read.
    let filler: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let whole = zip_of(&[("eicar.com", &e), ("filler.bin", &filler)])?;
    let truncated = mime::multipart(
        "truncated zip",
        BOUNDARY,
        &[
            greeting(),
            Part::attachment("cut.zip", "application/zip", &whole[..whole.len() / 2]),
            notes(),
        ],
    );

    // A multipart without its closing delimiter; EICAR in the last part.
    let mut unclosed = mime::multipart(
        "unclosed",
        BOUNDARY,
        &[
            greeting(),
            notes(),
            Part::attachment("eicar.com", "application/octet-stream", &e),
        ],
    );
    let close = format!("--{BOUNDARY}--\r\n");
    unclosed.truncate(unclosed.len() - close.len());

    // A part whose base64 is garbage, then EICAR in a good one.
    let mut bad_base64 = mime::header("bad base64").into_bytes();
    bad_base64.extend_from_slice(
        format!(
            "Content-Type: multipart/mixed; boundary=\"{BOUNDARY}\"\r\n\r\n\
             --{BOUNDARY}\r\n{}--{BOUNDARY}\r\n\
             Content-Type: application/octet-stream; name=\"broken.bin\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n\
             This is ### not base64 at all !!!\r\n@@@@ %%%% ^^^^\r\n\
             --{BOUNDARY}\r\n{}--{BOUNDARY}\r\n{}--{BOUNDARY}--\r\n",
            String::from_utf8(greeting().render())?,
            String::from_utf8(
                Part::attachment("eicar.com", "application/octet-stream", &e).render()
            )?,
            String::from_utf8(notes().render())?,
        )
        .as_bytes(),
    );

    let port = daemon.port;
    let mut ids = BTreeMap::new();
    for (key, message) in [
        ("clean", &clean),
        ("protected", &protected),
        ("truncated", &truncated),
        ("unclosed", &unclosed),
        ("badbase64", &bad_base64),
    ] {
        if let Some(id) = f.step(
            &format!("sending {key}"),
            send_ok(port, &format!("{key}@example.com"), message),
        ) {
            ids.insert(key, id);
        }
    }
    let wanted: Vec<&str> = ids.values().map(String::as_str).collect();
    let by_id = f
        .step("the messages at the sink", delivered(&sink, &wanted))
        .unwrap_or_default();
    let log = daemon.full_log();
    let got = |key: &str| ids.get(key).and_then(|id| by_id.get(id));

    if let Some(m) = got("clean") {
        let what = "a clean multipart message";
        check_verdict(&mut f, what, m, "clean", None);
        // Below the verdicts (AV on two lines, spam and its rating on one
        // each): our Received field, then exactly what was sent.
        let lines: Vec<&str> = m.message.lines().collect();
        f.check(
            lines
                .get(3)
                .is_some_and(|l| l.starts_with("X-Mailward-Spam-Rating: "))
                && lines
                    .get(4)
                    .is_some_and(|l| l.starts_with("Received: from "))
                && m.message.contains("\tby mw.test (Mailward) with ESMTP id "),
            || {
                format!(
                    "{what}: no Received field of ours below the verdict:\n{}",
                    m.message
                )
            },
        );
        let stripped = String::from_utf8(mail::strip_added_headers(m.message.as_bytes()))?;
        let sent = String::from_utf8(clean.clone())?.replace("\r\n", "\n");
        f.check(stripped == sent, || {
            format!(
                "{what}: not delivered byte for byte; sent:\n{sent}\n----- delivered, without the verdict and Received:\n{stripped}"
            )
        });
    }
    if let Some(m) = got("protected") {
        let what = "a password-protected zip (action_protected = pass)";
        check_verdict(&mut f, what, m, "protected", Some("encrypted"));
        if let Some(leaves) = f.step(what, leaves(m.message.as_bytes())) {
            let zip = leaves
                .iter()
                .find(|l| l.name.as_deref() == Some("protected.zip"));
            f.check(zip.is_some_and(|l| l.data == protected_zip), || {
                format!(
                    "{what}: protected.zip is not delivered as it was sent:\n{}",
                    m.message
                )
            });
        }
        check_finding_logged(
            &mut f,
            what,
            &log,
            &ids["protected"],
            "encrypted",
            "protected.zip/eicar.com",
        );
    }
    for (key, what) in [
        ("truncated", "a truncated zip"),
        ("unclosed", "a multipart without its closing delimiter"),
        ("badbase64", "a part of bad base64 before a good one"),
    ] {
        let Some(m) = got(key) else { continue };
        check_verdict(&mut f, what, m, "infected", Some(EICAR_RULE));
        let Some(leaves) = f.step(what, leaves(m.message.as_bytes())) else {
            continue;
        };
        let places = eicar_places(&m.message, &leaves);
        f.check(places.is_empty(), || {
            format!("{what}: EICAR is still there: {places:?}\n{}", m.message)
        });
        let names = names(&leaves);
        f.check(names.iter().any(|n| n == "notes.txt"), || {
            format!("{what}: notes.txt is gone:\n{}", m.message)
        });
        if key != "unclosed" {
            let problems = mime_problems(&m.message);
            f.check(problems.is_empty(), || {
                format!("{what}: not valid MIME: {problems:?}\n{}", m.message)
            });
        }
    }
    if let Some(id) = ids.get("truncated") {
        let what = "a truncated zip";
        check_finding_logged(&mut f, what, &log, id, EICAR_RULE, "cut.zip/eicar.com");
        let damaged = log.lines().any(|l| {
            l.contains(&format!("queue_id={id} "))
                && l.contains("status=error detection=\"damaged zip archive: ")
        });
        f.check(damaged, || {
            format!("{what}: no log line `Finding. queue_id={id} status=error detection=\"damaged zip archive: ...`")
        });
    }
    eprintln!(
        "clean, protected, damaged: {:.1}s",
        started.elapsed().as_secs_f64()
    );
    f.finish(|| format!("test directory {}\n{}", dir.path().display(), daemon.log()))
}

#[test]
fn a_zip_bomb_of_1_gib_is_an_error_delivered_in_time_with_bounded_memory() -> Result<()> {
    /// `timeouts.scan` of this rig.
    const SCAN_TIMEOUT: Duration = Duration::from_secs(30);
    /// What the daemon may hold at its peak (max_unpacked_size is 100 MiB).
    const MEMORY_CEILING: u64 = 600 << 20;
    let started = Instant::now();
    let bomb = zip_bomb(1024)?;
    let made_in = started.elapsed();
    let gw = Gateway::start("scan-bomb", |c| c.set_str("timeouts", "scan", "30s"))?;
    let pid = gw.daemon.pid().context("the daemon is not running")?;
    let mut f = Failures::default();
    let before = vm_hwm(pid)?;
    let message = mime::multipart(
        "zeros",
        BOUNDARY,
        &[
            greeting(),
            Part::attachment("zeros.zip", "application/zip", &bomb),
        ],
    );
    let sent_at = Instant::now();
    let id = send_ok(gw.port(), "bomb@example.com", &message)?;
    let m = delivered(&gw.sink, &[&id])?
        .remove(&id)
        .context("delivered")?;
    let took = sent_at.elapsed();
    let peak = vm_hwm(pid)?;
    let what = "a zip of 1 GiB of zeros";
    check_verdict(
        &mut f,
        what,
        &m,
        "error",
        Some("zeros.bin: unpacked size limit (max_unpacked_size) reached"),
    );
    f.check(took < SCAN_TIMEOUT, || {
        format!("{what}: delivered after {took:?}, more than timeouts.scan ({SCAN_TIMEOUT:?})")
    });
    f.check(peak < MEMORY_CEILING, || {
        format!(
            "{what}: the daemon's peak memory (VmHWM) is {} MiB, more than {} MiB",
            peak >> 20,
            MEMORY_CEILING >> 20
        )
    });
    // action_error = pass: the attachment is delivered as it was.
    if let Some(leaves) = f.step(what, leaves(m.message.as_bytes())) {
        let zip = leaves
            .iter()
            .find(|l| l.name.as_deref() == Some("zeros.zip"));
        f.check(zip.is_some_and(|l| l.data == bomb), || {
            format!("{what}: zeros.zip is not delivered as it was sent")
        });
    }
    eprintln!(
        "zip bomb: {} KiB packed, made in {:.1}s; sent to delivered in {:.1}s; daemon VmHWM {} MiB before, {} MiB after; whole test {:.1}s",
        bomb.len() >> 10,
        made_in.as_secs_f64(),
        took.as_secs_f64(),
        before >> 20,
        peak >> 20,
        started.elapsed().as_secs_f64()
    );
    f.finish(|| gw.daemon.log())
}

#[test]
fn name_and_mime_filters_with_includes_excludes_and_a_file_list() -> Result<()> {
    let started = Instant::now();
    let dir = TestDir::new("scan-filters")?;
    let sink = Sink::start(dir.path(), "sink")?;
    let stats = StatsSetup::new(dir.path());
    // Relative to the config file, which the daemon writes into dir.
    std::fs::write(
        dir.join("blocked-names.txt"),
        "# Names no mail of ours carries.\n*.scr\n*.bat   # batch files\n\n",
    )?;
    let config = Config::new(dir.path())
        .set_list(
            "policy",
            "include_by_name",
            &["*.exe", "file:blocked-names.txt"],
        )
        .set_list("policy", "exclude_by_name", &["setup-*.exe"])
        .set_list("policy", "include_by_mime", &["video/*"])
        .set_list("policy", "exclude_by_mime", &["video/mp4"])
        .set_str("policy", "action_filtered", "remove")
        .route_to_port("*", sink.port);
    let daemon = Daemon::start(&stats.apply(config))?;
    let mut f = Failures::default();

    let mixed = mime::multipart(
        "filtered",
        BOUNDARY,
        &[
            greeting(),
            Part::attachment("tool.exe", "application/octet-stream", b"MZ not really"),
            Part::attachment("setup-1.2.exe", "application/x-msdownload", b"MZ setup"),
            Part::attachment("clip.mov", "video/quicktime", b"moov"),
            Part::attachment("clip.mp4", "video/mp4", b"ftypmp42"),
            Part::attachment("screensaver.scr", "application/octet-stream", b"scr"),
            Part::attachment(
                "tools.zip",
                "application/zip",
                &zip_of(&[
                    ("readme.txt", b"Run it.\r\n"),
                    ("run.bat", b"@echo off\r\n"),
                ])?,
            ),
            notes(),
        ],
    );
    let allowed = mime::multipart(
        "allowed",
        BOUNDARY,
        &[
            greeting(),
            Part::attachment("setup-2.0.exe", "application/octet-stream", b"MZ setup"),
            Part::attachment("film.mp4", "video/mp4", b"ftypmp42"),
        ],
    );
    // walkZ 4: a plain filename first and the RFC 2231 one (which RFC
    // 6266 tells clients to prefer) second: the second was never matched.
    let hidden = format!(
        "From: {SENDER}\r\nTo: hidden@example.com\r\nSubject: hidden\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"{BOUNDARY}\"\r\n\r\n--{BOUNDARY}\r\n\
Content-Type: text/plain\r\n\r\nHello Bob,\r\n--{BOUNDARY}\r\n\
Content-Type: application/octet-stream\r\n\
Content-Disposition: attachment; filename=\"tool.txt\"; filename*=utf-8''tool.exe\r\n\
Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--{BOUNDARY}--\r\n",
        mime::base64(b"Run me.").trim_end()
    );
    let mixed_id = send_ok(daemon.port, "mixed@example.com", &mixed)?;
    let allowed_id = send_ok(daemon.port, "allowed@example.com", &allowed)?;
    let hidden_id = send_ok(daemon.port, "hidden@example.com", hidden.as_bytes())?;
    let by_id = delivered(&sink, &[&mixed_id, &allowed_id, &hidden_id])?;
    let log = daemon.full_log();

    let what = "filtered parts";
    let m = &by_id[&mixed_id];
    check_verdict(
        &mut f,
        what,
        m,
        "filtered",
        Some("name:*.exe, mime:video/*, name:*.scr, name:*.bat"),
    );
    if let Some(leaves) = f.step(what, leaves(m.message.as_bytes())) {
        let names = names(&leaves);
        f.check(
            names == ["setup-1.2.exe", "clip.mp4", "notes.txt"],
            || {
                format!(
                    "{what}: attachments {names:?}, expected the excluded and unmatched ones only: setup-1.2.exe, clip.mp4, notes.txt:\n{}",
                    m.message
                )
            },
        );
    }
    let problems = mime_problems(&m.message);
    f.check(problems.is_empty(), || {
        format!("{what}: not valid MIME: {problems:?}\n{}", m.message)
    });
    for (rule, object) in [
        ("name:*.exe", "tool.exe"),
        ("mime:video/*", "clip.mov"),
        ("name:*.scr", "screensaver.scr"),
        ("name:*.bat", "tools.zip/run.bat"),
    ] {
        check_finding_logged(&mut f, what, &log, &mixed_id, rule, object);
    }
    let raw = f.step("raw records", stats.raw_lines()).unwrap_or_default();
    let record = raw.iter().find(|r| r.queue_id == mixed_id);
    f.check(
        record.is_some_and(|r| r.status == "av/filtered" && r.detail == "name:*.exe"),
        || {
            format!(
                "{what}: raw record {:?}, expected status av/filtered and detail name:*.exe",
                record.map(|r| &r.line)
            )
        },
    );
    if let Some(text) = f.step(
        "mailward stats show --json",
        daemon.cli_ok(&["stats", "show", "--json"]),
    ) {
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let top = &doc["filters"]["mailward_top_filter_rule_hits"];
        let mut hits: Vec<(String, u64)> = top
            .as_array()
            .map(|rows| {
                rows.iter()
                    .map(|r| {
                        (
                            r["item"].as_str().unwrap_or("").to_string(),
                            r["count"].as_u64().unwrap_or(0),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        hits.sort();
        // name:*.exe twice: tool.exe here and in the message below.
        let want: Vec<(String, u64)> = [
            ("mime:video/*", 1),
            ("name:*.bat", 1),
            ("name:*.exe", 2),
            ("name:*.scr", 1),
        ]
        .iter()
        .map(|(r, n)| (r.to_string(), *n))
        .collect();
        f.check(hits == want, || {
            format!("stats show: filter rule hits {hits:?}, expected {want:?}")
        });
    }

    // `mailward scan` on the same mail and its attachments saved as
    // files gives the gateway's answer: what an administrator asks before
    // telling a partner "send it zipped".
    let what = "mailward scan";
    let saved = dir.join("saved");
    std::fs::create_dir_all(&saved)?;
    std::fs::write(saved.join("mixed.eml"), &mixed)?;
    std::fs::write(saved.join("tool.exe"), b"MZ not really")?;
    std::fs::write(saved.join("setup-1.2.exe"), b"MZ setup")?;
    std::fs::write(
        saved.join("tools.zip"),
        zip_of(&[
            ("readme.txt", b"Run it.\r\n"),
            ("run.bat", b"@echo off\r\n"),
        ])?,
    )?;
    std::fs::write(saved.join("notes.txt"), b"Nothing to see.\r\n")?;
    if let Some(out) = f.step(what, daemon.cli(&["scan", "--json", "saved"])) {
        f.check(out.status.code() == Some(1), || {
            format!(
                "{what}: exit status {:?}, expected 1 (something found):\n{}",
                out.status,
                output_text(&out)
            )
        });
        let verdicts: BTreeMap<String, (String, Vec<String>)> =
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .map(|v| {
                    let file = v["file"]
                        .as_str()
                        .unwrap_or("")
                        .trim_start_matches("saved/")
                        .to_string();
                    let rules = v["findings"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .map(|x| x["name"].as_str().unwrap_or("").to_string())
                                .collect()
                        })
                        .unwrap_or_default();
                    (
                        file,
                        (v["status"].as_str().unwrap_or("").to_string(), rules),
                    )
                })
                .collect();
        let rules = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let want: BTreeMap<String, (String, Vec<String>)> = [
            (
                "mixed.eml",
                "av/filtered",
                rules(&["name:*.exe", "mime:video/*", "name:*.scr", "name:*.bat"]),
            ),
            ("notes.txt", "av/clean", vec![]),
            ("setup-1.2.exe", "av/clean", vec![]),
            ("tool.exe", "av/filtered", rules(&["name:*.exe"])),
            ("tools.zip", "av/filtered", rules(&["name:*.bat"])),
        ]
        .into_iter()
        .map(|(f, s, r)| (f.to_string(), (s.to_string(), r)))
        .collect();
        f.check(verdicts == want, || {
            format!(
                "{what}: verdicts\n{verdicts:#?}\nexpected\n{want:#?}\n{}",
                output_text(&out)
            )
        });
    }
    if let Some(out) = f.step(what, daemon.cli(&["scan", "saved/notes.txt"])) {
        f.check(
            out.status.success()
                && String::from_utf8_lossy(&out.stdout).trim() == "saved/notes.txt: av/clean",
            || {
                format!(
                    "{what}: a clean file, expected exit 0 and `saved/notes.txt: av/clean`:\n{}",
                    output_text(&out)
                )
            },
        );
    }

    let what = "filename=\"tool.txt\"; filename*=utf-8''tool.exe";
    let m = &by_id[&hidden_id];
    check_verdict(&mut f, what, m, "filtered", Some("name:*.exe"));
    f.check(!m.message.contains("tool.txt\"; filename*"), || {
        format!("{what}: the attachment is still there:\n{}", m.message)
    });
    // Reported under the name that matched (walkZ 6), not tool.txt alone.
    let logged = log.lines().any(|l| {
        l.contains(" Finding. ")
            && l.contains(&format!("queue_id={hidden_id} "))
            && l.contains(" detection=name:*.exe ")
            && l.contains("tool.txt (also named tool.exe)")
    });
    f.check(logged, || {
        format!("{what}: no Finding log line for name:*.exe at `tool.txt (also named tool.exe)`")
    });

    // Only excluded names and types: clean, delivered byte for byte.
    let what = "excluded attachments only";
    let m = &by_id[&allowed_id];
    check_verdict(&mut f, what, m, "clean", None);
    let stripped = String::from_utf8(mail::strip_added_headers(m.message.as_bytes()))?;
    let sent = String::from_utf8(allowed)?.replace("\r\n", "\n");
    f.check(stripped == sent, || {
        format!("{what}: changed on the way:\n{}", m.message)
    });
    eprintln!("filters: {:.1}s", started.elapsed().as_secs_f64());
    f.finish(|| format!("test directory {}\n{}", dir.path().display(), daemon.log()))
}

/// tests/resources/bases/marker: one rule, for MARKER.
const MARKER_SET: &str = "bases/marker";
const MARKER_RULE: &str = "Mailward_E2E_Marker";
const MARKER_BASES: &str = "\tbases=2026-11-25T00:00:00Z; version=\"2026.11.25.1\"";

/// tests/resources/bases/broken-rule-syntax: its rules.yar has a syntax
/// error on this line.
const BROKEN_SET: &str = "bases/broken-rule-syntax";
const BROKEN_LINE: u32 = 6;

/// A string no real mail carries, which only the marker set detects.
fn marker() -> String {
    ["MAILWARD-E2E-SCAN", "-MARKER-7Q"].concat()
}

#[test]
fn bases_update_refusal_sighup_and_rollback_change_what_is_found() -> Result<()> {
    let started = Instant::now();
    // The fixtures are of November 2026: not obsolete for years (an
    // obsolete set's update says so, which bases.rs checks).
    let gw = Gateway::start("scan-bases", |c| {
        c.set_str("bases", "obsolete_after", "3650d")
    })?;
    let mut f = Failures::default();
    let port = gw.port();
    let eicar_message = mime::multipart(
        "eicar",
        BOUNDARY,
        &[
            greeting(),
            Part::attachment("eicar.com", "application/octet-stream", &eicar()),
        ],
    );
    let marker_message = mime::multipart(
        "marker",
        BOUNDARY,
        &[
            greeting(),
            Part::attachment("marker.txt", "text/plain", marker().as_bytes()),
        ],
    );
    // Sends both messages and checks the verdict each gets: (status,
    // detection, bases line) for EICAR, then for the marker.
    let both = |f: &mut Failures,
                step: &str,
                eicar: (&str, Option<&str>),
                mark: (&str, Option<&str>),
                bases: &str| {
        for (kind, message, (status, detection)) in [
            ("EICAR", &eicar_message, eicar),
            ("the marker", &marker_message, mark),
        ] {
            let what = format!("{step}: {kind}");
            let Some(id) = f.step(&what, send_ok(port, "bob@example.com", message)) else {
                continue;
            };
            let Some(mut got) = f.step(&what, delivered(&gw.sink, &[&id])) else {
                continue;
            };
            let Some(m) = got.remove(&id) else { continue };
            let first = match detection {
                Some(d) => format!("X-Mailward-AV: {status}; detection=\"{d}\";"),
                None => format!("X-Mailward-AV: {status};"),
            };
            let lines: Vec<&str> = m.message.lines().take(2).collect();
            f.check(lines == [first.as_str(), bases], || {
                format!(
                    "{what}: the message starts with {lines:?}, expected {:?}",
                    [first.as_str(), bases]
                )
            });
        }
    };
    let status_line = |f: &mut Failures, step: &str, version: &str| {
        if let Some(text) = f.step(
            &format!("{step}: bases status"),
            gw.daemon.cli_ok(&["bases", "status"]),
        ) {
            let in_use = text
                .lines()
                .find(|l| l.trim_start().starts_with("in use:"))
                .unwrap_or("");
            f.check(in_use.contains(&format!("version {version},")), || {
                format!(
                    "{step}: `bases status` says {in_use:?}, expected version {version}:\n{text}"
                )
            });
        }
    };

    // 1. The built-in default set: EICAR is found, the marker is not.
    status_line(&mut f, "at start", "2026.11.24.1");
    both(
        &mut f,
        "at start",
        ("infected", Some(EICAR_RULE)),
        ("clean", None),
        DEFAULT_BASES,
    );

    // 2. A set with a syntax error is refused, saying where.
    let broken = resource(BROKEN_SET);
    let out = gw
        .daemon
        .cli(&["bases", "update", "--from", &broken.display().to_string()])?;
    let stderr = String::from_utf8_lossy(&out.stderr).trim_end().to_string();
    let at = format!("{}:{BROKEN_LINE}:", broken.join("rules.yar").display());
    f.check(
        out.status.code() == Some(1)
            && stderr.starts_with(&format!("mailward: Update from {} refused: ", broken.display()))
            && stderr.contains(&at)
            && stderr.ends_with("; the bases in use stay."),
        || {
            format!(
                "update from a set with a syntax error: exit {:?}, stderr {stderr:?}; expected exit 1 and a refusal naming {at}...",
                out.status.code()
            )
        },
    );
    status_line(&mut f, "after the refused update", "2026.11.24.1");
    both(
        &mut f,
        "after the refused update",
        ("infected", Some(EICAR_RULE)),
        ("clean", None),
        DEFAULT_BASES,
    );

    // 3. A good set is in use at once, without a restart.
    let good = resource(MARKER_SET).display().to_string();
    let out = gw.daemon.cli(&["bases", "update", "--from", &good])?;
    let want = format!("Bases 2026.11.25.1 (1 record) from {good} are in use.");
    f.check(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim_end() == want,
        || {
            format!(
                "update from the marker set: {}, expected {want:?}",
                output_text(&out)
            )
        },
    );
    status_line(&mut f, "after the update", "2026.11.25.1");
    // The new set is the whole set: it has no EICAR rule.
    both(
        &mut f,
        "after the update",
        ("clean", None),
        ("infected", Some(MARKER_RULE)),
        MARKER_BASES,
    );

    // 4. SIGHUP with nothing edited: the same rules, mail flows.
    let reloads = |log: &str| log.matches("Configuration reloaded.").count();
    let before = reloads(&gw.daemon.full_log());
    gw.daemon.sighup()?;
    f.step(
        "SIGHUP: the reload",
        wait_until("the reload after SIGHUP", Duration::from_secs(10), || {
            Ok((reloads(&gw.daemon.full_log()) > before).then_some(()))
        }),
    );
    both(
        &mut f,
        "after SIGHUP",
        ("clean", None),
        ("infected", Some(MARKER_RULE)),
        MARKER_BASES,
    );
    status_line(&mut f, "after SIGHUP", "2026.11.25.1");

    // 5. Rollback: back to the default set.
    let out = gw.daemon.cli(&["bases", "rollback"])?;
    let want = "Rolled back to bases 2026.11.24.1 (5 records).";
    f.check(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim_end() == want,
        || format!("rollback: {}, expected {want:?}", output_text(&out)),
    );
    status_line(&mut f, "after the rollback", "2026.11.24.1");
    both(
        &mut f,
        "after the rollback",
        ("infected", Some(EICAR_RULE)),
        ("clean", None),
        DEFAULT_BASES,
    );

    let log = gw.daemon.full_log();
    f.check(!log.contains("cannot be reloaded"), || {
        "the log says the bases could not be reloaded".into()
    });
    eprintln!("bases: {:.1}s", started.elapsed().as_secs_f64());
    f.finish(|| gw.daemon.log())
}

/// The mbox `From ` line that starts a message file, if any, taken off;
/// line ends made CRLF.
fn as_message(data: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(data);
    let text = match text.strip_prefix("From ") {
        Some(rest) => rest.split_once('\n').map_or("", |(_, t)| t).to_string(),
        None => text.into_owned(),
    };
    text.replace("\r\n", "\n")
        .replace('\n', "\r\n")
        .into_bytes()
}

#[test]
fn clamav_testfiles_what_is_found_in_each() -> Result<()> {
    let started = Instant::now();
    let dir = Path::new(CLAMAV_TESTFILES);
    if !dir.is_dir() {
        bail!("{CLAMAV_TESTFILES} not found: install the Debian package clamav-testfiles (tests/install-deps.sh)");
    }
    let mut files: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    // Files that are mail themselves, sent also as what they are.
    let is_mail = |name: &str| name.ends_with(".mail") || name.contains(".mbox.");
    let mut cases: Vec<(String, &str, Vec<u8>)> = Vec::new();
    for name in &files {
        let data = std::fs::read(dir.join(name))?;
        let attach = |ctype: &str| {
            mime::multipart(
                name,
                BOUNDARY,
                &[greeting(), Part::attachment(name, ctype, &data)],
            )
        };
        cases.push((
            name.clone(),
            "attachment",
            attach("application/octet-stream"),
        ));
        if is_mail(name) {
            let message = as_message(&data);
            cases.push((name.clone(), "the message itself", message.clone()));
            cases.push((
                name.clone(),
                "message/rfc822 attachment",
                mime::multipart(
                    name,
                    BOUNDARY,
                    &[greeting(), Part::message(&format!("{name}.eml"), &message)],
                ),
            ));
            cases.push((name.clone(), "text/plain attachment", attach("text/plain")));
        }
    }
    let gw = Gateway::start("scan-clamav", |c| c)?;
    let mut f = Failures::default();
    let mut ids = Vec::new();
    for (n, (name, how, message)) in cases.iter().enumerate() {
        let id = f.step(
            &format!("sending {name} as {how}"),
            send_ok(gw.port(), &format!("sample{n}@example.com"), message),
        );
        ids.push(id);
    }
    let wanted: Vec<&str> = ids.iter().flatten().map(String::as_str).collect();
    let by_id = f
        .step("the samples at the sink", delivered(&gw.sink, &wanted))
        .unwrap_or_default();

    // What the built-in bases must find: the formats Mailward unpacks.
    let must: &[(&str, &str)] = &[
        ("clam.exe", "attachment"),
        ("clam.zip", "attachment"),
        ("clam.tar.gz", "attachment"),
        ("clam.mail", "the message itself"),
        ("clam.mail", "message/rfc822 attachment"),
        ("clam.exe.mbox.base64", "the message itself"),
        ("clam.exe.mbox.base64", "message/rfc822 attachment"),
        ("clam.exe.mbox.uu", "the message itself"),
        ("clam.exe.mbox.uu", "message/rfc822 attachment"),
        ("clam.exe.mbox.uu", "text/plain attachment"),
    ];
    let mut table = String::from(
        "| file | sent as | found | X-Mailward-AV | detection |\n| --- | --- | --- | --- | --- |\n",
    );
    for ((name, how, _), id) in cases.iter().zip(&ids) {
        let Some(m) = id.as_ref().and_then(|id| by_id.get(id)) else {
            let _ = writeln!(table, "| {name} | {how} | (not delivered) | | |");
            continue;
        };
        let (status, detection) = verdict_of(m);
        let found = matches!(status.as_str(), "infected" | "suspicious");
        let _ = writeln!(
            table,
            "| {name} | {how} | {} | {status} | {} |",
            if found { "detected" } else { "not detected" },
            if detection.is_empty() {
                "-"
            } else {
                &detection
            }
        );
        if must.contains(&(name.as_str(), *how)) {
            f.check(status == "infected" && detection == "ClamAV_Test_File", || {
                format!("{name} as {how}: X-Mailward-AV {status} {detection:?}, expected infected \"ClamAV_Test_File\"")
            });
        }
    }
    for (name, how) in must {
        f.check(cases.iter().any(|(n, h, _)| n == name && h == how), || {
            format!("{name} ({how}) is not among the files of {CLAMAV_TESTFILES}")
        });
    }
    println!("{table}");
    eprintln!(
        "clamav-testfiles: {} messages in {:.1}s",
        cases.len(),
        started.elapsed().as_secs_f64()
    );
    f.finish(|| gw.daemon.log())
}

#[test]
fn structure_tricks_clients_read_through_do_not_hide_a_virus() -> Result<()> {
    let dir = TestDir::new("scan-tricks")?;
    let sink = Sink::start(dir.path(), "sink")?;
    let stats = StatsSetup::new(dir.path());
    let daemon = main_rig(&dir, &stats, &sink)?;
    let mut f = Failures::default();
    let zip = zip_of(&[("eicar.com", &eicar())])?;
    let message = |subject: &str, ctype: &str, gap: &str, part_gap: &str, body: &str| {
        format!(
            "From: {SENDER}\r\nTo: bob@example.com\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; {ctype}\r\n{gap}--Q\r\nContent-Type: text/plain\r\n\r\nhello\r\n\
--Q\r\nContent-Type: application/zip; name=\"inv.zip\"\r\nContent-Transfer-Encoding: base64\r\n\
Content-Disposition: attachment; filename=\"inv.zip\"\r\n{part_gap}{body}\r\n--Q--\r\n"
        )
    };
    let with_cte = |msg: &str, cte: &str| {
        msg.replace(
            "Content-Transfer-Encoding: base64\r\n",
            &format!("Content-Transfer-Encoding: {cte}\r\n"),
        )
    };
    // Lines of 76, the last without its CRLF (the delimiter brings one).
    let base64_lines = |data: &[u8]| mime::base64(data).trim_end_matches("\r\n").to_string();
    let b64 = base64_lines(&zip);
    let flat = b64.replace("\r\n", "");
    let cases = [
        (
            "no empty line after the header",
            message("a", "boundary=\"Q\"", "", "\r\n", &b64),
        ),
        (
            "no empty line after a part header",
            message("b", "boundary=\"Q\"", "\r\n", "", &b64),
        ),
        (
            "a dot in the base64",
            message(
                "c",
                "boundary=\"Q\"",
                "\r\n",
                "\r\n",
                &format!("{}.{}", &flat[..40], &flat[40..]),
            ),
        ),
        (
            "boundary folded after '='",
            message("d", "boundary=\r\n \"Q\"", "\r\n", "\r\n", &b64),
        ),
        (
            "a byte in front of the zip",
            message(
                "e",
                "boundary=\"Q\"",
                "\r\n",
                "\r\n",
                &base64_lines(&[b"\n".as_slice(), &zip].concat()),
            ),
        ),
        // walkZ 1: RFC 2045 allows comments in the field; lenient clients
        // take the first token. These were delivered as av/clean.
        (
            "Content-Transfer-Encoding: Base64 (comment)",
            with_cte(
                &message("f", "boundary=\"Q\"", "\r\n", "\r\n", &b64),
                "Base64 (comment)",
            ),
        ),
        (
            "Content-Transfer-Encoding: base64;",
            with_cte(
                &message("g", "boundary=\"Q\"", "\r\n", "\r\n", &b64),
                "base64;",
            ),
        ),
        (
            "Content-Transfer-Encoding: \"base64\"",
            with_cte(
                &message("h", "boundary=\"Q\"", "\r\n", "\r\n", &b64),
                "\"base64\"",
            ),
        ),
    ];
    // Sends each case, then checks that each was delivered as infected
    // and without `gone` (what the virus was carried in).
    let send_all = |f: &mut Failures, cases: &[(&str, String)], gone: &str| -> Result<()> {
        let mut ids = Vec::new();
        for (what, msg) in cases {
            ids.push((
                *what,
                send_ok(daemon.port, "bob@example.com", msg.as_bytes())?,
            ));
        }
        let id_list: Vec<&str> = ids.iter().map(|(_, id)| id.as_str()).collect();
        let got = delivered(&sink, &id_list)?;
        for (what, id) in &ids {
            let Some(m) = got.get(id) else { continue };
            check_verdict(f, what, m, "infected", Some(EICAR_RULE));
            f.check(!m.message.contains(gone), || {
                format!("{what}: it is still there:\n{}", m.message)
            });
        }
        Ok(())
    };
    send_all(&mut f, &cases, &b64[..60])?;
    // walkZ 11: text outside the parts is ignored by clients but read by a
    // scanner of raw bytes downstream: a message stamped clean here with
    // EICAR in its preamble or epilogue was flagged there.
    let harmless = base64_lines(b"not a zip, just bytes\r\n");
    let eicar_line = format!("{}\r\n", eicar_text());
    let outside = [
        (
            "EICAR text in the preamble",
            message(
                "i",
                "boundary=\"Q\"",
                &format!("\r\n{eicar_line}"),
                "\r\n",
                &harmless,
            ),
        ),
        (
            "EICAR text in the epilogue",
            message("j", "boundary=\"Q\"", "\r\n", "\r\n", &harmless) + &eicar_line,
        ),
    ];
    send_all(&mut f, &outside, &eicar_text())?;
    f.finish(|| format!("test directory {}\n{}", dir.path().display(), daemon.log()))
}

/// walkAH 2: a header field written with white space before its colon
/// (`X-Foo : spaced`, RFC 5322 4.5.3's obsolete syntax, a field to Postfix
/// and to RFC 5322 mail clients) ended the header for the scanner: the
/// multipart below it was read as one text body, its EICAR attachment was
/// never decoded, and the message went on stamped clean.
#[test]
fn a_header_field_with_space_before_its_colon_does_not_hide_a_virus() -> Result<()> {
    let dir = TestDir::new("scan-space-colon")?;
    let sink = Sink::start(dir.path(), "sink")?;
    let stats = StatsSetup::new(dir.path());
    let daemon = main_rig(&dir, &stats, &sink)?;
    let mut f = Failures::default();
    let b64 = mime::base64(&eicar()).trim_end_matches("\r\n").to_string();
    let message = |extra: &str| {
        format!(
            "From: {SENDER}\r\nTo: bob@example.com\r\nSubject: space colon\r\n{extra}\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=BB\r\n\r\n\
--BB\r\nContent-Type: text/plain\r\n\r\nhello\r\n--BB\r\n\
Content-Type: application/octet-stream; name=\"e.com\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--BB--\r\n"
        )
    };
    let mut ids = Vec::new();
    for extra in ["X-Foo : spaced", "X-Bar\t: tab", "Comments  :  two spaces"] {
        ids.push((
            extra,
            send_ok(daemon.port, "bob@example.com", message(extra).as_bytes())?,
        ));
    }
    // A line that is no field at all ends the header for Python and
    // Postfix, while a reader that skips it (mail-parser does) reads the
    // multipart below: both readings are scanned and the worse counts.
    // The readings' parts differ, so the action is taken on the whole
    // message: its body is replaced by the notice.
    let skipped = send_ok(
        daemon.port,
        "bob@example.com",
        message("this is not a header line").as_bytes(),
    )?;
    let id_list: Vec<&str> = ids
        .iter()
        .map(|(_, id)| id.as_str())
        .chain([skipped.as_str()])
        .collect();
    let got = delivered(&sink, &id_list)?;
    for (what, id) in &ids {
        let Some(m) = got.get(id) else { continue };
        check_verdict(&mut f, what, m, "infected", Some(EICAR_RULE));
        f.check(!m.message.contains(&b64[..40]), || {
            format!("{what}: the EICAR part is still there:\n{}", m.message)
        });
    }
    if let Some(m) = got.get(&skipped) {
        check_verdict(
            &mut f,
            "a line that is no field",
            m,
            "infected",
            Some(EICAR_RULE),
        );
        f.check(!m.message.contains(&b64[..40]), || {
            format!(
                "a line that is no field: the EICAR part is still there:\n{}",
                m.message
            )
        });
    }
    f.finish(|| format!("test directory {}\n{}", dir.path().display(), daemon.log()))
}

/// walkAJ 1b and 1: `--BOUNDARY--` inside a text line closed the multipart
/// for the scanner (mail-parser matches the delimiter anywhere), and a
/// second `Content-Transfer-Encoding` was read where clients read the
/// first: an EICAR attachment that every client shows went on stamped
/// clean. Through the gateway: found, the attachment removed, the text
/// part delivered.
#[test]
fn a_boundary_inside_a_line_or_a_second_content_field_does_not_hide_a_virus() -> Result<()> {
    let dir = TestDir::new("scan-rfc-structure")?;
    let sink = Sink::start(dir.path(), "sink")?;
    let stats = StatsSetup::new(dir.path());
    let daemon = main_rig(&dir, &stats, &sink)?;
    let mut f = Failures::default();
    let b64 = mime::base64(&eicar()).trim_end_matches("\r\n").to_string();
    let message = |text: &str, cte: &str| {
        format!(
            "From: {SENDER}\r\nTo: bob@example.com\r\nSubject: rfc structure\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"=_mixed_0012\"\r\n\r\n--=_mixed_0012\r\n\
Content-Type: text/plain; charset=us-ascii\r\n\r\n{text}\r\n\r\n--=_mixed_0012\r\n\
Content-Type: application/octet-stream; name=\"invoice.com\"\r\n\
Content-Disposition: attachment; filename=\"invoice.com\"\r\n{cte}\r\n{b64}\r\n\r\n--=_mixed_0012--\r\n"
        )
    };
    let b64_cte = "Content-Transfer-Encoding: base64\r\n";
    let cases = [
        (
            "a close delimiter inside a text line",
            message(
                "Hi Bob, the invoice is attached. (ref --=_mixed_0012--)",
                b64_cte,
            ),
        ),
        (
            "a close delimiter after a space",
            message("Hi Bob,\r\n --=_mixed_0012--", b64_cte),
        ),
        (
            "text after the close delimiter",
            message("Hi Bob,\r\n--=_mixed_0012--foo", b64_cte),
        ),
        (
            "base64 then 7bit",
            message(
                "Hi Bob, the invoice is attached.",
                "Content-Transfer-Encoding: base64\r\nContent-Transfer-Encoding: 7bit\r\n",
            ),
        ),
    ];
    let mut ids = Vec::new();
    for (what, msg) in &cases {
        ids.push((
            *what,
            send_ok(daemon.port, "bob@example.com", msg.as_bytes())?,
        ));
    }
    let id_list: Vec<&str> = ids.iter().map(|(_, id)| id.as_str()).collect();
    let got = delivered(&sink, &id_list)?;
    for (what, id) in &ids {
        let Some(m) = got.get(id) else { continue };
        check_verdict(&mut f, what, m, "infected", Some(EICAR_RULE));
        f.check(!m.message.contains(&b64[..40]), || {
            format!("{what}: the EICAR part is still there:\n{}", m.message)
        });
        f.check(m.message.contains("Hi Bob"), || {
            format!("{what}: the text part is gone:\n{}", m.message)
        });
    }
    f.finish(|| format!("test directory {}\n{}", dir.path().display(), daemon.log()))
}

/// walkAL 1, 2, 3, 4: legitimate mail that the stricter MIME reading made
/// `av/error` (with `action_error = "placeholder"`, replaced by a notice:
/// a shop's whole order confirmation), and PGP/MIME encrypted mail that
/// was `av/clean`. Through the gateway: the first three are delivered
/// byte for byte, the encrypted one is `av/protected`.
#[test]
fn odd_but_legitimate_mail_is_delivered_intact_and_pgp_mime_is_protected() -> Result<()> {
    let dir = TestDir::new("scan-odd-legit")?;
    let sink = Sink::start(dir.path(), "sink")?;
    let stats = StatsSetup::new(dir.path());
    let config = Config::new(dir.path())
        .set_str("policy", "action_error", "placeholder")
        .route_to_port("*", sink.port);
    let daemon = Daemon::start(&stats.apply(config))?;
    let mut f = Failures::default();
    let head = "From: shop@example.com\r\nTo: bob@example.com\r\n\
                Date: Sun, 6 Dec 2026 08:00:00 +0000\r\n\
                Message-ID: <walkal-odd@shop.example.com>\r\nMIME-Version: 1.0\r\n";
    // PHP mail(): quoted-printable on the multipart and on its parts.
    let shop = format!(
        "{head}Subject: Order 4711 confirmed\r\n\
         Content-Type: multipart/alternative; boundary=\"b1_abc\"\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\r\n\
         --b1_abc\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\r\n\
         Thank you for your order. Total: 12,50 =E2=82=AC\r\n\
         --b1_abc\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\r\n\
         <p style=3D\"color:red\">Thank you for your order.</p>\r\n--b1_abc--\r\n"
    );
    let yenc = format!(
        "{head}Subject: yEnc question\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n\
         The header looks like this:\r\n\r\n\
         =ybegin line=128 size=19338 name=joystick.jpg\r\n(data)\r\n\
         =yend size=19338 crc32=ded29f4f\r\n\r\nWhy does my decoder fail?\r\n"
    );
    // A detached signature as Outlook Express writes it (BER), cut short.
    let signature = "MIAGCSqGSIb3DQEHAqCAMIACAQExCzAJBgUrDgMCGgUAMIAGCSqGSIb3DQEHAQAAoIAwggMA\r\nMIICaVpaWlpaWlpa\r\n";
    let signed = format!(
        "{head}Subject: signed\r\n\
         Content-Type: multipart/signed; protocol=\"application/x-pkcs7-signature\"; \
         micalg=SHA1; boundary=\"S\"\r\n\r\n--S\r\nContent-Type: text/plain\r\n\r\nhello\r\n\
         --S\r\nContent-Type: application/x-pkcs7-signature; name=\"smime.p7s\"\r\n\
         Content-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"smime.p7s\"\r\n\r\n{signature}--S--\r\n"
    );
    let pgp = format!(
        "{head}Subject: secret\r\n\
         Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; \
         boundary=\"E\"\r\n\r\n--E\r\nContent-Type: application/pgp-encrypted\r\n\r\n\
         Version: 1\r\n\r\n--E\r\n\
         Content-Type: application/octet-stream; name=\"encrypted.asc\"\r\n\r\n\
         -----BEGIN PGP MESSAGE-----\r\n\r\nhQEMA1x2y3z4AQf/abcdefghijklmnop\r\n=Ab12\r\n\
         -----END PGP MESSAGE-----\r\n--E--\r\n"
    );
    let messages = [
        ("shop", &shop, "clean", None),
        ("yenc", &yenc, "clean", None),
        ("signed", &signed, "clean", None),
        ("pgp", &pgp, "protected", Some("encrypted PGP/MIME message")),
    ];
    let mut ids = BTreeMap::new();
    for (key, message, _, _) in &messages {
        if let Some(id) = f.step(
            &format!("sending {key}"),
            send_ok(daemon.port, "bob@example.com", message.as_bytes()),
        ) {
            ids.insert(*key, id);
        }
    }
    let wanted: Vec<&str> = ids.values().map(String::as_str).collect();
    let by_id = f
        .step("the messages at the sink", delivered(&sink, &wanted))
        .unwrap_or_default();
    for (key, message, status, detection) in messages {
        let Some(m) = ids.get(key).and_then(|id| by_id.get(id)) else {
            continue;
        };
        check_verdict(&mut f, key, m, status, detection);
        let stripped = String::from_utf8(mail::strip_added_headers(m.message.as_bytes()))?;
        let sent = message.replace("\r\n", "\n");
        f.check(stripped == sent, || {
            format!(
                "{key}: not delivered byte for byte; sent:\n{sent}\n----- delivered:\n{stripped}"
            )
        });
    }
    f.finish(|| format!("test directory {}\n{}", dir.path().display(), daemon.log()))
}
