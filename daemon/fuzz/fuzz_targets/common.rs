//! The checks of the daemon's fuzz targets, one function per target. Each
//! target in this directory is one line that calls its function on
//! libFuzzer's input; `daemon/tests/fuzz_corpus.rs` includes this same file
//! and calls the functions on every file of `corpus/`, so that plain
//! `cargo test` replays the corpus on stable Rust.
//!
//! A function panics (`assert!`) when the code under test panics or breaks
//! an invariant; an error the code returns for bad input is fine.

// Each target uses one of these functions; the corpus test uses them all.
#![allow(dead_code)]

use mailward::config::Policy;
use mailward::smtp::command::{self, Command};
use mailward::smtp::data::{Assembler, MAX_LINE};
use mailward::spool::SpoolError;
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Duration;

// ---------------------------------------------------------------- smtp_command

/// `smtp::command::parse` on one command line (the session has removed the
/// CRLF): no panic; the verb is case-insensitive; and what it accepts is
/// safe to put in a `Received:` header, a log line or the next hop's
/// MAIL/RCPT command (bounded, no controls, no angle brackets, ENVID and
/// ORCPT valid xtext once re-encoded).
pub fn smtp_command(line: &[u8]) {
    let parsed = command::parse(line);
    // RFC 5321 2.4: verbs are case-insensitive.
    let verb_len = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
    let mut swapped = line.to_vec();
    for b in &mut swapped[..verb_len] {
        if b.is_ascii_alphabetic() {
            *b ^= 0x20;
        }
    }
    assert_eq!(
        command::parse(&swapped),
        parsed,
        "the verb's case changed the result"
    );

    match parsed {
        Ok(Command::Ehlo(name)) | Ok(Command::Helo(name)) => {
            assert!(!name.is_empty() && name.len() <= 255, "EHLO name {name:?}");
            assert!(
                name.bytes().all(|b| b.is_ascii_graphic()),
                "EHLO name {name:?}"
            );
        }
        Ok(Command::Mail { from, params }) => {
            if !from.is_empty() {
                check_path(&from);
            }
            if let Some(envid) = &params.envid {
                // Delivery sends it on as xtext: it must mean the same there.
                let sent = mailward::text::xtext_encode(envid);
                assert!(
                    sent.bytes().all(|b| b.is_ascii_graphic() && b != b'='),
                    "ENVID re-encoded as {sent:?}"
                );
                assert_eq!(
                    mailward::text::xtext_decode(&sent).as_deref(),
                    Some(envid.as_str())
                );
            }
        }
        Ok(Command::Rcpt { to, params }) => {
            check_path(&to);
            if let Some(orcpt) = &params.orcpt {
                assert!(orcpt.contains(';') && orcpt.len() <= 500, "ORCPT {orcpt:?}");
                if orcpt.is_ascii() {
                    assert!(
                        orcpt.bytes().all(|b| b.is_ascii_graphic()),
                        "ORCPT {orcpt:?}"
                    );
                    assert!(
                        mailward::text::xtext_decode(orcpt).is_some(),
                        "ORCPT {orcpt:?}"
                    );
                } else {
                    // RFC 6533's utf-8 address type: raw UTF-8, no controls.
                    assert!(!orcpt.chars().any(char::is_control), "ORCPT {orcpt:?}");
                }
            }
        }
        Ok(_) | Err(_) => {}
    }
}

/// A forward or reverse path the parser accepted: printable ASCII, or
/// UTF-8 (SMTPUTF8, RFC 6531) without controls or invisible format
/// characters; never the brackets; its domain in the one form Mailward
/// keeps (A-labels).
fn check_path(path: &str) {
    assert!(!path.is_empty() && path.len() <= 256, "path {path:?}");
    assert!(
        path.chars().all(|c| if c.is_ascii() {
            (' '..'\x7f').contains(&c) && c != '<' && c != '>'
        } else {
            !c.is_control() && !mailward::text::is_invisible_format(c)
        }),
        "path {path:?}"
    );
    if let Some((_, domain)) = path.rsplit_once('@') {
        assert!(domain.is_ascii(), "domain not as A-labels: {path:?}");
    }
}

// ----------------------------------------------------------------- data_reader

/// What the session's reader keeps of one DATA line (`MAX_DATA_LINE` in
/// daemon/src/smtp/session.rs, private there): 998 octets, CRLF and slack.
/// A longer line reaches the assembler as `too_long(crlf)`.
const MAX_DATA_LINE: usize = 1002;

/// Message size limits the first input byte chooses from.
const MAX_SIZES: [u64; 8] = [0, 1, 5, 64, 1000, 10_000, 10 * 1024 * 1024, u64::MAX];

/// `smtp::data::Assembler` fed the input split after each LF. The first
/// byte chooses the size limit (low 3 bits) and whether lines are delivered
/// as the session's reader does (bit 3: a line over 1002 octets becomes
/// `too_long(crlf)`, and a last line without LF is an EOF, never fed);
/// otherwise every piece goes to `line()` as it is.
///
/// Checked against a model of RFC 5321 4.5.2 after every step: the data
/// ends exactly at "." CRLF after a CRLF (never after a bare LF: SMTP
/// smuggling), and nothing is fed after that; `received()` never decreases
/// and counts every unstuffed line plus CRLF; the body is the unstuffed
/// lines with CRLF ends (so never a bare LF), or empty once over the limit;
/// the long-line and 8-bit flags are right.
pub fn data_reader(data: &[u8]) {
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    let max = MAX_SIZES[usize::from(mode & 7)];
    let as_reader = mode & 8 != 0;

    let mut asm = Assembler::new(max);
    // The model.
    let mut prev_crlf = true;
    let mut body = Vec::new();
    let mut size = 0u64;
    let mut long_line = false;
    let mut eight_bit = false;
    let mut lines = 0u32;
    for raw in input.split_inclusive(|&b| b == b'\n') {
        if as_reader && !raw.ends_with(b"\n") {
            break; // EOF in the middle of a line: the session closes.
        }
        let crlf = raw.ends_with(b"\r\n");
        if as_reader && raw.len() > MAX_DATA_LINE {
            asm.too_long(crlf);
            long_line = true;
            prev_crlf = crlf;
        } else {
            let end = asm.line(raw);
            let want_end = prev_crlf && raw == b".\r\n";
            assert_eq!(
                end, want_end,
                "end of data after {lines} lines: line {raw:?}"
            );
            if end {
                break;
            }
            // A run of CRs before the LF is one line end; a bare CR ends
            // a line too (walkY 1): each piece is a line of its own.
            let (content, ended_crlf) = match raw.strip_suffix(b"\n") {
                Some(c) => {
                    let kept = c.len() - c.iter().rev().take_while(|&&b| b == b'\r').count();
                    (&c[..kept], kept < c.len())
                }
                None => (raw, false),
            };
            for piece in content.split(|&b| b == b'\r') {
                let piece = match piece.strip_prefix(b".") {
                    Some(rest) if !rest.is_empty() => rest,
                    _ => piece,
                };
                size += piece.len() as u64 + 2;
                long_line |= piece.len() > MAX_LINE;
                eight_bit |= piece.iter().any(|&b| b >= 0x80);
                body.extend_from_slice(piece);
                body.extend_from_slice(b"\r\n");
                lines += 1;
            }
            prev_crlf = ended_crlf;
        }
        assert_eq!(asm.received(), size, "received() after {lines} lines");
    }
    let m = asm.finish();
    assert_eq!(m.size, size);
    assert_eq!(
        m.oversize,
        size > max,
        "oversize with {size} octets, limit {max}"
    );
    if m.oversize {
        assert!(m.body.is_empty(), "an oversize body is not kept");
    } else {
        assert_eq!(m.body, body);
    }
    for (i, &b) in m.body.iter().enumerate() {
        if b == b'\n' {
            assert!(
                i > 0 && m.body[i - 1] == b'\r',
                "bare LF at {i} of the body"
            );
        }
        if b == b'\r' {
            assert!(
                m.body.get(i + 1) == Some(&b'\n'),
                "bare CR at {i} of the body"
            );
        }
    }
    assert_eq!(m.long_line, long_line);
    assert_eq!(m.eight_bit, eight_bit);
    assert!(m.hops <= lines);
}

// ---------------------------------------------------------------- scan_message

/// A policy that exercises the filters and the rewrite more than the
/// default does (placeholders instead of removal, small unpack limits).
const STRICT_POLICY: &str = r#"
[policy]
action_infected = "placeholder"
action_suspicious = "placeholder"
action_protected = "remove"
action_error = "placeholder"
action_filtered = "placeholder"
include_by_name = ["*.exe", "*.js", "*.bat"]
exclude_by_name = ["*.pdf"]
include_by_mime = ["application/x-msdownload"]
exclude_by_mime = ["text/*"]
max_scan_depth = 3
max_unpacked_size = "1MiB"
"#;

struct Scan {
    rules: yara_x::Rules,
    bases: mailward::check::bases::BasesInfo,
    /// The embedded default policy (`config::parse("")`).
    default: Policy,
    strict: Policy,
}

/// The built-in default bases (`bases::DEFAULT_SET`), installed and
/// compiled by the daemon's own code, once.
static SCAN: LazyLock<Scan> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let bases = dir.path().join("bases");
    mailward::check::bases::install_default(&bases).expect("the default bases install");
    let (rules, _) = mailward::check::bases::compile(&bases).expect("the default bases compile");
    let info = mailward::check::bases::read(&bases)
        .expect("the default manifest reads")
        .expect("the default bases have a manifest");
    let policy = |text: &str| {
        mailward::config::parse(text, "fuzz.toml")
            .unwrap_or_else(|e| panic!("fuzz policy:\n{e}"))
            .policy
    };
    Scan {
        rules,
        bases: info,
        default: policy(""),
        strict: policy(STRICT_POLICY),
    }
});

thread_local! {
    /// One scanner reused for every input, as a scan worker reuses its own.
    static SCANNER: RefCell<yara_x::Scanner<'static>> =
        RefCell::new(yara_x::Scanner::new(&LazyLock::force(&SCAN).rules));
}

/// `scan::scan_message` on the input as a message, with the default rules,
/// under the default policy (no bases info) and a strict one (with it): no
/// panic; the status is the worst finding; the `X-Mailward-AV` header is
/// one ASCII header field with CRLF ends and folded continuation lines.
pub fn scan_message(data: &[u8]) {
    let scan = LazyLock::force(&SCAN);
    for (policy, bases) in [(&scan.default, None), (&scan.strict, Some(&scan.bases))] {
        let outcome = SCANNER.with(|s| {
            let mut scanner = s.borrow_mut();
            mailward::policy::verdict::scan_message(
                Some(&mut scanner),
                bases,
                data,
                policy,
                Duration::from_secs(2),
            )
        });
        let worst = outcome.findings.iter().map(|f| f.kind).max();
        assert_eq!(
            outcome.report.av,
            worst.map_or(mailward::check::AvStatus::Clean, |k| k.status()),
            "status against the findings {:?}",
            outcome.findings
        );
        for list in [&outcome.report.viruses, &outcome.report.filter_rules] {
            for (i, n) in list.iter().enumerate() {
                assert!(!list[..i].contains(n), "{n:?} listed twice");
            }
        }
        assert_eq!(outcome.header.is_some(), policy.add_headers);
        if let Some(h) = &outcome.header {
            check_header(h);
        }
    }
}

/// The verdict header fields: "X-Mailward-AV: value" CRLF, then maybe
/// "X-Mailward-Spam: value" CRLF and "X-Mailward-Spam-Rating: N" CRLF (N
/// from 0 to 100); continuation lines start with white space, ASCII only.
fn check_header(h: &str) {
    if let Some(at) = h.find("X-Mailward-Spam-Rating: ") {
        let rating = h[at + "X-Mailward-Spam-Rating: ".len()..].trim_end_matches("\r\n");
        assert!(
            rating.parse::<u8>().is_ok_and(|r| r <= 100),
            "rating {rating:?} in {h:?}"
        );
    }
    assert!(
        h.starts_with("X-Mailward-AV: ") && h.ends_with("\r\n"),
        "{h:?}"
    );
    assert!(h.is_ascii(), "{h:?}");
    let b = h.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'\r' => assert_eq!(b.get(i + 1), Some(&b'\n'), "bare CR in {h:?}"),
            b'\n' => {
                assert!(i > 0 && b[i - 1] == b'\r', "bare LF in {h:?}");
                if let Some(&next) = b.get(i + 1) {
                    assert!(
                        next == b' '
                            || next == b'\t'
                            || h[i + 1..].starts_with("X-Mailward-Spam: ")
                            || h[i + 1..].starts_with("X-Mailward-Spam-Rating: "),
                        "unfolded line in {h:?}"
                    );
                }
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------- spool_record

/// Spool recovery (`spool::recover`, the code `Spool::open` runs) on the
/// input as the only segment, then on the input with the checksum of each
/// whole record set right, so that mutations reach the envelope decoder and
/// the replay instead of stopping at the CRC. No panic; the only error is
/// `Corrupt` (a record that passes its checksum but whose envelope does
/// not decode: lengths are checked before reading, so never an I/O error);
/// recovery only cuts a tail off the segment; a second recovery cuts
/// nothing more and finds the same envelopes.
pub fn spool_record(data: &[u8]) {
    recover_segment(data);
    let fixed = with_checksums(data);
    if fixed != data {
        recover_segment(&fixed);
    }
}

fn recover_segment(bytes: &[u8]) {
    let dir = scratch_dir();
    let seg = dir.path().join("0000000000000001.seg");
    std::fs::write(&seg, bytes).expect("write the segment");
    match mailward::spool::recover(dir.path()) {
        Ok(live) => {
            let left = std::fs::read(&seg).expect("read the segment back");
            assert!(
                bytes.starts_with(&left),
                "recovery changed more than the tail"
            );
            for (i, e) in live.iter().enumerate() {
                assert!(
                    live[..i].iter().all(|o| o.id != e.id),
                    "{} live twice",
                    e.id
                );
            }
            let again = mailward::spool::recover(dir.path())
                .unwrap_or_else(|e| panic!("a recovered spool no longer recovers: {e}"));
            assert_eq!(again, live, "a second recovery found other envelopes");
            let after = std::fs::read(&seg).expect("read the segment back");
            assert_eq!(after, left, "a second recovery cut more off");
        }
        Err(SpoolError::Corrupt { .. }) => {}
        Err(e) => panic!("recovery failed with other than Corrupt: {e}"),
    }
}

/// A fresh directory for one recovery, in memory when /dev/shm exists
/// (recovery fsyncs what it cuts off).
fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let base: PathBuf = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    tempfile::Builder::new()
        .prefix("mailward-fuzz-spool")
        .tempdir_in(base)
        .expect("a scratch directory")
}

/// `bytes` with the CRC-32 of every whole record set right, from the start
/// up to the first that does not fit. The layout is the one documented in
/// daemon/src/spool/record.rs: magic "MWR1", kind, 3 zero octets, envelope
/// length (u32 LE), data length (u64 LE), CRC-32 (u32 LE) of the kind, both
/// lengths, envelope and data; then the envelope and the data.
fn with_checksums(bytes: &[u8]) -> Vec<u8> {
    const HEADER: usize = 24;
    let mut out = bytes.to_vec();
    let mut at = 0usize;
    while let Some(h) = out.get(at..at + HEADER) {
        if &h[..4] != b"MWR1" {
            break;
        }
        let kind = h[4];
        let env_len = u32::from_le_bytes(h[8..12].try_into().expect("4 octets"));
        let data_len = u64::from_le_bytes(h[12..20].try_into().expect("8 octets"));
        let end = usize::try_from(env_len)
            .ok()
            .zip(usize::try_from(data_len).ok())
            .and_then(|(e, d)| (at + HEADER).checked_add(e)?.checked_add(d));
        let Some(end) = end.filter(|&end| end <= out.len()) else {
            break;
        };
        let mut crc = crc32fast::Hasher::new();
        crc.update(&[kind]);
        crc.update(&env_len.to_le_bytes());
        crc.update(&data_len.to_le_bytes());
        crc.update(&out[at + HEADER..end]);
        let crc = crc.finalize().to_le_bytes();
        out[at + 20..at + HEADER].copy_from_slice(&crc);
        at = end;
    }
    out
}

// ----------------------------------------------------------------- config_load

/// `config::parse` on the input as a configuration file (lossy UTF-8): no
/// panic; a refusal always says why (at least one problem, each with text
/// and a line within the file).
pub fn config_load(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match mailward::config::parse(&text, "fuzz.toml") {
        Ok(config) => assert_eq!(config.origin, "fuzz.toml"),
        Err(errors) => {
            assert!(!errors.0.is_empty(), "refused without a problem");
            let last_line = text.split('\n').count();
            for p in &errors.0 {
                assert!(!p.problem.is_empty(), "a problem without text: {p:?}");
                if p.file == "fuzz.toml" {
                    assert!(p.line <= last_line, "line {} of {last_line}: {p:?}", p.line);
                }
            }
        }
    }
}

// ---------------------------------------------------------------- spam_examine

use mailward::check::spam::{self as spam, knowledge::Knowledge, model::Class};
use mailward::check::SpamStatus;
use mailward::config::SpamLevel;

/// The spam check's knowledge here: the built-in rules, and a classifier
/// that has learnt two small messages of each class and scores from one,
/// so that the tokenizer, the rules, the formal tests and the classifier
/// all run on every input.
static SPAM_KNOWLEDGE: LazyLock<Knowledge> = LazyLock::new(|| {
    let mut k = Knowledge {
        rules: spam::rules::built_in().into(),
        ..Knowledge::default()
    };
    k.classifier.min_learnt = 1;
    let site = std::sync::Arc::make_mut(&mut k.classifier.site);
    for (raw, class) in [
        (
            &b"Subject: FREE money now\r\n\r\nclick here http://192.0.2.1/x earn cash\r\n"[..],
            Class::Spam,
        ),
        (
            b"Subject: cheap pills\r\nContent-Type: text/html\r\n\r\n<b>act now</b>\r\n",
            Class::Spam,
        ),
        (
            b"Subject: lunch\r\n\r\nshall we meet at noon by the station\r\n",
            Class::Ham,
        ),
        (
            b"Subject: patch\r\n\r\nthe parser change is in review\r\n",
            Class::Ham,
        ),
    ] {
        let (digest, tokens) = spam::for_learning(raw);
        site.learn(digest, &tokens, class);
    }
    k
});

/// What each level may say, least spammy first (formal and clean are the
/// same rank: neither is marked).
fn rank(s: SpamStatus) -> u8 {
    match s {
        SpamStatus::Clean | SpamStatus::Formal => 0,
        SpamStatus::Probable => 1,
        SpamStatus::Spam => 2,
        SpamStatus::Blacklisted => 3,
    }
}

/// `spam::examine` on a whole message, parsed as the pipeline parses it,
/// then learning and forgetting it: no panic; the score is finite and the
/// sum of the hits' weights, no test fires twice, a probability is within
/// 0..=1 (and None only when the classifier did not score); a higher level
/// never judges the message less spammy; the `X-Mailward-Spam` field is
/// ASCII, CRLF-ended and folded within 78 octets a line; and learning the
/// message then forgetting it leaves the model as it was.
pub fn spam_examine(data: &[u8]) {
    let k = LazyLock::force(&SPAM_KNOWLEDGE);
    let parsed = mailward::check::parse(data);
    let e = spam::examine(k, data, parsed.as_ref(), None);
    let score = e.score();
    assert!(score.is_finite(), "score {score} of {:?}", e.hits);
    let sum: f64 = e.hits.iter().map(|h| h.weight).sum();
    assert!((score - sum).abs() < 1e-9, "score {score} against {sum}");
    let names = e.test_names();
    for (i, n) in names.iter().enumerate() {
        assert!(!names[..i].contains(n), "{n} fired twice: {names:?}");
        assert!(
            !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'),
            "test name {n:?}"
        );
    }
    if let Some(p) = e.probability {
        assert!((0.0..=1.0).contains(&p), "probability {p}");
        assert!(names.iter().any(|n| n.starts_with("BAYES_")), "{names:?}");
    }
    let levels = [
        SpamLevel::Minimum,
        SpamLevel::Standard,
        SpamLevel::High,
        SpamLevel::Maximum,
    ];
    let ranks: Vec<u8> = levels.iter().map(|l| rank(e.status(*l))).collect();
    assert!(
        ranks.windows(2).all(|w| w[0] <= w[1]),
        "levels {ranks:?} for {score}"
    );
    let header = e.header(e.status(SpamLevel::Standard));
    assert!(header.is_ascii() && header.ends_with("\r\n"), "{header:?}");
    for line in header.trim_end_matches("\r\n").split("\r\n") {
        assert!(
            line.len() <= 78,
            "a line of {} octets in {header:?}",
            line.len()
        );
    }

    let (digest, tokens) = spam::for_learning(data);
    let mut model = k.classifier.site.as_ref().clone();
    let before = model.clone();
    if model.learn(digest, &tokens, Class::Spam) == spam::model::Learnt::New {
        assert!(
            model.forget(digest, &tokens),
            "a message just learnt is forgotten"
        );
        assert!(model == before, "learn then forget changed the model");
    }
}

// ------------------------------------------------------------------ spam_model

/// `Model::from_bytes` on a model file or Redis value (a gateway reads
/// both, and `spam import` reads files from elsewhere): no panic, no
/// allocation beyond the input's size; a model it accepts writes back to
/// the same bytes. The same bytes as journal records (a `site.journal`
/// after its header, or the Redis journal's elements): the records read
/// encode back to the bytes they came from, and applying them to a model
/// does not panic.
pub fn spam_model(data: &[u8]) {
    use mailward::check::spam::{journal, model::Model};
    let (changes, n) = journal::records(data);
    let again: Vec<u8> = changes.iter().flat_map(|c| c.to_record()).collect();
    assert_eq!(
        again[..],
        data[..n],
        "a journal record read as something else"
    );
    let mut learnt = Model::default();
    for c in &changes {
        learnt.apply(c);
    }
    if let Ok(m) = Model::from_bytes(data, Path::new("fuzz.model")) {
        let again = m.to_bytes();
        let back = Model::from_bytes(&again, Path::new("again.model"));
        assert!(back.as_ref().is_ok_and(|b| *b == m), "{back:?}");
        assert_eq!(
            again.len(),
            data.len(),
            "a model accepted with bytes it does not keep"
        );
    }
}
