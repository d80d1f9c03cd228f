//! The scan step against bare yara-x, in one process: driven by
//! `bench/scan-bench.sh`, which also runs `clamscan` on the same files.
//!
//! `scan_bench generate DIR` writes a rule set (`DIR/rules/bench.yar` and
//! its `manifest.toml`: 1,000 rules of text, hex and regex strings) and
//! messages (`DIR/mail/1k/*.eml`: 1 KiB of plain text; `DIR/mail/100k`:
//! about 100 KiB, a text part and a base64 PDF-like attachment), all from a
//! fixed seed, so every run scans the same bytes. No rule matches any of
//! them: each string carries random characters that the mail text, drawn
//! from a word list, never has. The last two rules are canaries, which
//! the two messages of `DIR/mail/control` match (one in its text, one in
//! its attachment once decoded), to show that a scanner sees both.
//!
//! `scan_bench run RULES MAILDIR...` compiles the rules once and times,
//! over each directory in turn and in the same rounds:
//! - `ours`: [`mailward::policy::verdict::scan_message`], the whole scan step (MIME
//!   parse, decoding, archive detection, filters, the rules on every part,
//!   the verdict and the `X-Mailward-AV` header);
//! - `yara-x`: a bare `Scanner::scan` of each message's bytes as they are;
//! - `parts`: mail-parser plus a bare `Scanner::scan` of each decoded leaf
//!   part, the least a MIME-aware scanner has to do;
//! - and, to show where our time goes, mail-parser alone and
//!   `scan_message` without rules.
//!
//! The modes take turns pass by pass (one pass = the whole directory),
//! enough passes to last about `--round-secs` per mode and round; the
//! tables show the medians of the rounds, and the median of the per-round
//! ratios ours/yara-x (cost per message) with their range.

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use mail_parser::{MessageParser, PartType};
use mailward::check::AvStatus;
use mailward::policy::verdict::scan_message;
use std::fmt::Write as _;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Times Mailward's scan step against bare yara-x")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes DIR/rules (bench.yar, manifest.toml) and
    /// DIR/mail/{1k,100k,control}.
    Generate {
        dir: PathBuf,
        /// Rules in the set.
        #[arg(long, default_value_t = 1000)]
        rules: usize,
        /// 1 KiB messages.
        #[arg(long, default_value_t = 1000)]
        small: usize,
        /// 100 KiB messages.
        #[arg(long, default_value_t = 200)]
        large: usize,
    },
    /// Times the scan of every message in each MAILDIR.
    Run {
        rules: PathBuf,
        #[arg(required = true)]
        maildirs: Vec<PathBuf>,
        /// Timed rounds (the table shows medians).
        #[arg(long, default_value_t = 7)]
        rounds: usize,
        /// How long each mode runs in one round, about.
        #[arg(long, default_value_t = 0.4)]
        round_secs: f64,
        /// Messages that must each be found infected before timing starts
        /// (the control messages of `generate`).
        #[arg(long)]
        control: Option<PathBuf>,
        /// Also write one line per directory here: label, messages, mean
        /// bytes, µs per message for ours, yara-x and parts, and the ratio.
        #[arg(long)]
        summary: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Generate {
            dir,
            rules,
            small,
            large,
        } => generate(&dir, rules, small, large),
        Command::Run {
            rules,
            maildirs,
            control,
            rounds,
            round_secs,
            summary,
        } => run(
            &rules,
            &maildirs,
            control.as_deref(),
            rounds.max(1),
            round_secs,
            summary.as_deref(),
        ),
    }
}

// ---------------------------------------------------------------------------
// Generating rules and messages.

/// splitmix64: a fixed seed gives the same rules and mail on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    fn alnum(&mut self, n: usize) -> String {
        const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        (0..n)
            .map(|_| CHARS[self.below(CHARS.len())] as char)
            .collect()
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Text strings as signature sets have them; each gets a random tail.
const TEXT_STRINGS: &[&str] = &[
    "cmd.exe /c start ",
    "powershell -nop -w hidden -enc ",
    "Software\\Microsoft\\Windows\\CurrentVersion\\Run\\",
    "CreateObject(\"WScript.Shell\").Run \"",
    "Sub AutoOpen()\r\n    Shell \"",
    "eval(base64_decode(\"",
    "document.write(unescape(\"%3C",
    "User-Agent: Mozilla/4.0 (compatible; MSIE 6.0; ",
    "Global\\",
    "<script>var ",
    "/wp-content/plugins/",
    "Your account has been suspended. Verify at https://",
    "Dear customer, your invoice #",
    "bitsadmin /transfer ",
    "regsvr32 /s /n /u /i:http://",
    "mshta vbscript:Execute(\"",
    "certutil -urlcache -split -f http://",
    "\\AppData\\Roaming\\",
    "schtasks /create /tn ",
    "-----BEGIN PGP MESSAGE-----\r\nVersion: ",
];

const REGEX_FORMS: &[&str] = &[
    r"https?:\/\/[a-z0-9\-]{4,16}\.(top|xyz|club|online)\/@\/[a-z]{3,8}\.php",
    r"@_[0-9a-f]{8,16}\.(exe|scr|pif|dll)",
    r#"eval\s*\(\s*(base64_decode|gzinflate)\s*\(\s*["']@"#,
    r"[A-Z]{2,4}@[0-9]{4,8}\.(zip|rar)",
];

const FAMILIES: &[&str] = &[
    "Trojan",
    "Downloader",
    "Phish",
    "Macro",
    "Exploit",
    "Backdoor",
    "Dropper",
    "Script",
];

/// A YARA text string literal.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            // ClamAV's YARA reader knows \xNN but not \r.
            '\r' => out.push_str("\\x0D"),
            '\n' => out.push_str("\\x0A"),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A hex string of 8 to 16 random bytes, sometimes with a wildcard byte or
/// a short jump; every run of literal bytes is at least 3 long (ClamAV
/// wants at least 2).
fn hex_string(rng: &mut Rng) -> String {
    let n = rng.range(8, 16);
    let gap = if rng.chance(30) {
        Some(rng.range(3, n - 3))
    } else {
        None
    };
    let mut out = String::from("{");
    for (i, b) in rng.bytes(n).into_iter().enumerate() {
        if Some(i) == gap {
            if rng.chance(70) {
                out.push_str(" ??");
            } else {
                out.push_str(" [1-4]");
            }
        }
        let _ = write!(out, " {b:02X}");
    }
    out.push_str(" }");
    out
}

fn rule(rng: &mut Rng, index: usize) -> String {
    let family = rng.pick(FAMILIES);
    let mut out = format!("rule {family}_Gen_{index:04}");
    if rng.chance(5) {
        out.push_str(" : suspicious");
    }
    let _ = write!(
        out,
        "\n{{\n    meta:\n        description = \"generated benchmark rule {index}\"\n    strings:\n"
    );
    let n = match rng.below(10) {
        0..=2 => 1,
        3..=6 => 2,
        7..=8 => 3,
        _ => 4,
    };
    for s in 0..n {
        let text = match rng.below(100) {
            0..=44 => hex_string(rng),
            45..=96 => {
                let len = rng.range(8, 12);
                let tail = rng.alnum(len);
                let mut t = quoted(&format!("{}{tail}", rng.pick(TEXT_STRINGS)));
                match rng.below(100) {
                    0..=24 => t.push_str(" nocase"),
                    25..=29 => t.push_str(" wide ascii"),
                    30..=34 => t.push_str(" fullword"),
                    _ => {}
                }
                t
            }
            _ => {
                let form = rng.pick(REGEX_FORMS).replace('@', &rng.alnum(8));
                format!("/{form}/")
            }
        };
        let _ = writeln!(out, "        $s{s} = {text}");
    }
    let condition = match (n, rng.below(100)) {
        (1, 0..=79) => "any of them".to_string(),
        (1, _) => "$s0".to_string(),
        (_, 0..=54) => "any of them".to_string(),
        (_, 55..=74) => "2 of them".to_string(),
        (_, 75..=89) => "all of them".to_string(),
        (2, _) => "$s0 and $s1".to_string(),
        (_, _) => {
            let rest: Vec<String> = (1..n).map(|s| format!("$s{s}")).collect();
            format!("$s0 and ({})", rest.join(" or "))
        }
    };
    let _ = write!(out, "    condition:\n        {condition}\n}}\n\n");
    out
}

const WORDS: &[&str] = &[
    "the",
    "meeting",
    "project",
    "report",
    "please",
    "find",
    "attached",
    "thanks",
    "regards",
    "schedule",
    "next",
    "week",
    "budget",
    "review",
    "team",
    "update",
    "customer",
    "order",
    "delivery",
    "invoice",
    "contract",
    "draft",
    "comments",
    "before",
    "Friday",
    "Monday",
    "quarter",
    "results",
    "sales",
    "figures",
    "office",
    "travel",
    "plan",
    "agenda",
    "call",
    "minutes",
    "decision",
    "approval",
    "question",
    "answer",
    "about",
    "with",
    "from",
    "for",
    "and",
    "we",
    "you",
    "our",
    "your",
    "will",
    "can",
    "should",
    "have",
    "has",
    "been",
    "this",
    "that",
    "these",
    "new",
    "latest",
    "version",
    "changes",
    "issue",
    "support",
    "service",
    "account",
    "payment",
    "received",
    "sent",
    "today",
    "tomorrow",
    "morning",
    "afternoon",
    "available",
    "confirm",
    "details",
    "information",
    "product",
    "release",
    "notes",
    "test",
    "server",
    "network",
    "backup",
    "training",
    "holiday",
    "conference",
    "room",
    "lunch",
];

const NAMES: &[&str] = &[
    "Alice Martin",
    "Bob Keller",
    "Chloe Dubois",
    "David Novak",
    "Eva Lindqvist",
    "Frank Moreau",
    "Grace Okafor",
    "Hugo Santos",
];

fn sentence(rng: &mut Rng) -> String {
    let n = rng.range(6, 16);
    let mut words: Vec<String> = (0..n).map(|_| rng.pick(WORDS).to_string()).collect();
    if let Some(first) = words.first_mut() {
        let mut c = first.chars();
        if let Some(f) = c.next() {
            *first = f.to_uppercase().chain(c).collect();
        }
    }
    format!("{}.", words.join(" "))
}

/// Text wrapped at 72 columns, CRLF line ends, about `size` bytes.
fn text_body(rng: &mut Rng, size: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    while out.len() + line.len() < size + 80 {
        for w in sentence(rng).split(' ') {
            if !line.is_empty() && line.len() + 1 + w.len() > 72 {
                out.push_str(&line);
                out.push_str("\r\n");
                line.clear();
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(w);
        }
        if rng.chance(15) {
            out.push_str(&line);
            out.push_str("\r\n\r\n");
            line.clear();
        }
    }
    out.push_str(&line);
    out.push_str("\r\n");
    out
}

fn address(name: &str, domain: &str) -> String {
    let local = name.to_ascii_lowercase().replace(' ', ".");
    format!("{name} <{local}@{domain}>")
}

fn headers(rng: &mut Rng, i: usize, subject: &str, content: &str) -> String {
    let from = rng.pick(NAMES);
    let to = rng.pick(NAMES);
    let ip = format!("198.51.100.{}", rng.range(1, 254));
    let day = rng.range(1, 28);
    let (h, m, s) = (rng.below(24), rng.below(60), rng.below(60));
    format!(
        "Received: from mail.example.org (mail.example.org [{ip}])\r\n\
         \tby mx.example.com with ESMTPS id {id}\r\n\
         \tfor <{to_local}@example.com>; {day} Mar 2026 {h:02}:{m:02}:{s:02} +0000\r\n\
         From: {from}\r\n\
         To: {to}\r\n\
         Subject: {subject}\r\n\
         Date: {day} Mar 2026 {h:02}:{m:02}:{s:02} +0000\r\n\
         Message-ID: <{mid}.{i}@example.org>\r\n\
         MIME-Version: 1.0\r\n\
         {content}\r\n",
        id = rng.alnum(12),
        to_local = to.to_ascii_lowercase().replace(' ', "."),
        from = address(from, "example.org"),
        to = address(to, "example.com"),
        mid = rng.alnum(16),
    )
}

/// A plain-text message of exactly `size` bytes; `extra` is put on the
/// first line of the body.
fn small_message(rng: &mut Rng, i: usize, size: usize, extra: Option<&str>) -> Vec<u8> {
    let subject = format!(
        "{} {}",
        rng.pick(&["Re:", "Fwd:", "About the"]),
        sentence(rng)
    );
    let head = headers(
        rng,
        i,
        subject.trim_end_matches('.'),
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n",
    );
    let mut body = extra.map(|e| format!("{e}\r\n")).unwrap_or_default();
    body.push_str(&text_body(rng, size.saturating_sub(head.len())));
    body.truncate(size.saturating_sub(head.len() + 2));
    if body.ends_with('\r') {
        body.pop();
        body.push('.');
    }
    body.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

/// Base64 in lines of 76 characters, each with its CRLF.
fn base64_lines(data: &[u8]) -> String {
    use base64::Engine as _;
    let mut out = String::with_capacity(data.len() * 4 / 3 + data.len() / 28 + 4);
    for line in data.chunks(57) {
        out.push_str(&base64::engine::general_purpose::STANDARD.encode(line));
        out.push_str("\r\n");
    }
    out
}

/// About `size` bytes: a text part and a base64 PDF-like attachment
/// (a PDF header and trailer around incompressible bytes, as a compressed
/// stream looks); `extra` goes into the attachment after its header.
fn large_message(rng: &mut Rng, i: usize, size: usize, extra: Option<&[u8]>) -> Vec<u8> {
    let boundary = format!("----=_Part_{}_{}", i, rng.alnum(10));
    let head = headers(
        rng,
        i,
        &format!("Quarterly report {i}"),
        &format!("Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n"),
    );
    let text = text_body(rng, 1500);
    let file = format!("report-{i}.pdf");
    let part1 = format!(
        "This is a multi-part message in MIME format.\r\n\r\n--{boundary}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 7bit\r\n\r\n{text}\r\n--{boundary}\r\n\
         Content-Type: application/pdf; name=\"{file}\"\r\n\
         Content-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"{file}\"\r\n\r\n"
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let room = size.saturating_sub(head.len() + part1.len() + tail.len());
    let raw_len = room / 78 * 57;
    let mut pdf = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    pdf.extend_from_slice(extra.unwrap_or_default());
    let trailer = b"\nendstream\nendobj\n%%EOF\n";
    pdf.extend(rng.bytes(raw_len.saturating_sub(pdf.len() + trailer.len())));
    pdf.extend_from_slice(trailer);
    let mut out = head.into_bytes();
    out.extend_from_slice(part1.as_bytes());
    out.extend_from_slice(base64_lines(&pdf).trim_end().as_bytes());
    out.extend_from_slice(tail.as_bytes());
    out
}

/// The last two rules of the set: one that the text of `control/text.eml`
/// matches and one that the attachment of `control/attachment.eml` does
/// (once decoded), to show that each scanner sees both.
fn canary_rules(text: &str, hex: &[u8]) -> String {
    let hex: Vec<String> = hex.iter().map(|b| format!("{b:02X}")).collect();
    format!(
        "rule Bench_Canary_Text\n{{\n    strings:\n        $s0 = {}\n    condition:\n        \
         any of them\n}}\n\nrule Bench_Canary_Attachment\n{{\n    strings:\n        \
         $s0 = {{ {} }}\n    condition:\n        any of them\n}}\n",
        quoted(text),
        hex.join(" ")
    )
}

fn generate(dir: &Path, rules: usize, small: usize, large: usize) -> anyhow::Result<()> {
    let mut rng = Rng(0x6d61_696c_7761_7264);
    let rules_dir = dir.join("rules");
    std::fs::create_dir_all(&rules_dir)?;
    let mut text = String::from(
        "// Generated by scan_bench: random signatures that match no benchmark mail\n\
         // (but the two canaries at the end match the control messages).\n\n",
    );
    for i in 0..rules.saturating_sub(2) {
        text.push_str(&rule(&mut rng, i));
    }
    let canary_text = format!("cmd.exe /c start {}", rng.alnum(10));
    let canary_hex = rng.bytes(12);
    text.push_str(&canary_rules(&canary_text, &canary_hex));
    std::fs::write(rules_dir.join("bench.yar"), text)?;
    std::fs::write(
        rules_dir.join("manifest.toml"),
        format!("version = \"bench.1\"\nreleased = \"2026-01-01T00:00:00Z\"\nrecords = {rules}\n"),
    )?;
    let write = |sub: &str, name: String, msg: Vec<u8>| -> anyhow::Result<()> {
        let mail = dir.join("mail").join(sub);
        std::fs::create_dir_all(&mail)?;
        Ok(std::fs::write(mail.join(name), msg)?)
    };
    for i in 0..small {
        write(
            "1k",
            format!("{i:05}.eml"),
            small_message(&mut rng, i, 1024, None),
        )?;
    }
    for i in 0..large {
        let msg = large_message(&mut rng, i, 100 * 1024, None);
        write("100k", format!("{i:05}.eml"), msg)?;
    }
    let line = format!("Please run {canary_text} before the call.");
    write(
        "control",
        "text.eml".into(),
        small_message(&mut rng, 0, 1024, Some(&line)),
    )?;
    let msg = large_message(&mut rng, 0, 100 * 1024, Some(&canary_hex));
    write("control", "attachment.eml".into(), msg)?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Timing.

const TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `scan_message`: the whole scan step.
    Ours,
    /// A bare `Scanner::scan` of the message bytes.
    Bare,
    /// mail-parser, then a bare `Scanner::scan` of each decoded leaf part.
    Parts,
    /// mail-parser alone.
    Parse,
    /// `scan_message` with no rules: all of ours but the YARA scans.
    Walk,
}

const MODES: [Mode; 5] = [Mode::Ours, Mode::Bare, Mode::Parts, Mode::Parse, Mode::Walk];

struct Bench<'r> {
    scanner: yara_x::Scanner<'r>,
    /// mail-parser as the scan step sets it up: MIME headers parsed, the
    /// others skipped.
    parser: MessageParser,
    info: Option<mailward::check::bases::BasesInfo>,
    policy: mailward::config::Policy,
}

impl Bench<'_> {
    /// One pass of `mode` over `msgs`; returns a count that depends on
    /// the work (findings, matches), so that none of it can be left out.
    fn pass(&mut self, mode: Mode, msgs: &[Vec<u8>]) -> anyhow::Result<usize> {
        let mut acc = 0;
        for m in msgs {
            let m = black_box(m.as_slice());
            acc += match mode {
                Mode::Ours | Mode::Walk => {
                    let scanner = (mode == Mode::Ours).then_some(&mut self.scanner);
                    let o = scan_message(scanner, self.info.as_ref(), m, &self.policy, TIMEOUT);
                    o.findings.len() + o.header.map_or(0, |h| h.len())
                }
                Mode::Bare => self.scanner.scan(m)?.matching_rules().len(),
                Mode::Parts => {
                    let mut n = 0;
                    if let Some(msg) = self.parser.parse(m) {
                        for p in &msg.parts {
                            if !matches!(p.body, PartType::Multipart(_) | PartType::Message(_)) {
                                n += self.scanner.scan(p.contents())?.matching_rules().len();
                            }
                        }
                    }
                    n
                }
                Mode::Parse => self.parser.parse(m).map_or(0, |msg| msg.parts.len()),
            };
        }
        Ok(black_box(acc))
    }

    fn outcome(&mut self, m: &[u8]) -> mailward::policy::verdict::ScanOutcome {
        scan_message(
            Some(&mut self.scanner),
            self.info.as_ref(),
            m,
            &self.policy,
            TIMEOUT,
        )
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn load_dir(dir: &Path) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("{}: no .eml files", dir.display());
    }
    files
        .iter()
        .map(|f| {
            let name = f
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let data = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
            Ok((name, data))
        })
        .collect()
}

/// Medians of one directory, µs per message by mode.
struct Figures {
    label: String,
    count: usize,
    mean_bytes: f64,
    us: Vec<f64>,
    ratio: f64,
    ratio_range: (f64, f64),
}

fn measure(
    bench: &mut Bench<'_>,
    dir: &Path,
    rounds: usize,
    round_secs: f64,
) -> anyhow::Result<Figures> {
    let label = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let files = load_dir(dir)?;
    // Every message must be clean for both, or the modes would not do
    // the same work (and the rules would not be what we meant).
    for (name, m) in &files {
        let o = bench.outcome(m);
        if o.report.av != AvStatus::Clean || !o.findings.is_empty() {
            bail!("{label}/{name}: not clean for Mailward: {:?}", o.findings);
        }
        let hits: Vec<String> = bench
            .scanner
            .scan(m)?
            .matching_rules()
            .map(|r| r.identifier().to_string())
            .collect();
        if !hits.is_empty() {
            bail!("{label}/{name}: bare yara-x matches {hits:?}");
        }
    }
    let msgs: Vec<Vec<u8>> = files.into_iter().map(|(_, m)| m).collect();
    let bytes: usize = msgs.iter().map(Vec::len).sum();
    // Warm-up and calibration: passes per round from one pass of ours.
    for mode in MODES {
        bench.pass(mode, &msgs)?;
    }
    let t = Instant::now();
    bench.pass(Mode::Ours, &msgs)?;
    let one = t.elapsed().as_secs_f64().max(1e-6);
    let passes = ((round_secs / one).ceil() as usize).max(1);
    let mut us: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); MODES.len()];
    let mut ratios = Vec::with_capacity(rounds);
    for r in 0..rounds {
        // The modes take turns pass by pass, so that a burst of load from
        // elsewhere on the machine falls on all of them alike.
        let mut secs = [0.0; MODES.len()];
        for p in 0..passes {
            for k in 0..MODES.len() {
                let m = (r + p + k) % MODES.len();
                let t = Instant::now();
                bench.pass(MODES[m], &msgs)?;
                secs[m] += t.elapsed().as_secs_f64();
            }
        }
        let per = |s: f64| s * 1e6 / (passes * msgs.len()) as f64;
        for (m, s) in secs.iter().enumerate() {
            us[m].push(per(*s));
        }
        ratios.push(secs[0] / secs[1]);
    }
    Ok(Figures {
        label,
        count: msgs.len(),
        mean_bytes: bytes as f64 / msgs.len() as f64,
        us: us.iter().map(|v| median(v)).collect(),
        ratio: median(&ratios),
        ratio_range: (
            ratios.iter().copied().fold(f64::INFINITY, f64::min),
            ratios.iter().copied().fold(0.0, f64::max),
        ),
    })
}

fn run(
    rules_dir: &Path,
    maildirs: &[PathBuf],
    control: Option<&Path>,
    rounds: usize,
    round_secs: f64,
    summary: Option<&Path>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let (rules, count) = mailward::check::bases::compile(rules_dir)?;
    let compiled = started.elapsed();
    let mut bench = Bench {
        scanner: yara_x::Scanner::new(&rules),
        parser: MessageParser::new()
            .with_mime_headers()
            .default_header_ignore(),
        info: mailward::check::bases::read(rules_dir)?,
        policy: mailward::config::parse("", "bench.toml")?.policy,
    };
    println!("{count} rules compiled in {:.2} s.", compiled.as_secs_f64());
    if let Some(dir) = control {
        for (name, m) in load_dir(dir)? {
            let o = bench.outcome(&m);
            if o.report.viruses.is_empty() {
                bail!(
                    "control message {name}: Mailward found nothing ({:?})",
                    o.report.av
                );
            }
            // The bare scan of the raw bytes is shown, not required: it
            // cannot see into a base64 attachment.
            let bare: Vec<String> = bench
                .scanner
                .scan(&m)?
                .matching_rules()
                .map(|r| r.identifier().to_string())
                .collect();
            println!(
                "Control {name}: ours {} {}; bare yara-x on the raw bytes: {}",
                o.report.av.as_str(),
                o.report.viruses.join(", "),
                if bare.is_empty() {
                    "nothing".to_string()
                } else {
                    bare.join(", ")
                }
            );
        }
    }
    if let Some((name, m)) = load_dir(&maildirs[0])?.first() {
        let header = bench.outcome(m).header.unwrap_or_default();
        println!("Header added to {name}: {header:?}");
    }
    let mut all = Vec::new();
    for dir in maildirs {
        all.push(measure(&mut bench, dir, rounds, round_secs)?);
    }

    println!();
    println!(
        "Single thread, messages in memory; medians of {rounds} rounds of about {round_secs} s \
         per mode. MB = 10^6 bytes of message."
    );
    println!(
        "ours = the scan step (scan_message); yara-x = bare Scanner::scan of the message bytes; \
         parts = mail-parser + bare scan of each decoded part."
    );
    println!("ratio = cost per message ours / yara-x: median of the per-round ratios (range).");
    println!(
        "{:<5} {:>5} {:>7} | {:>8} {:>6} {:>7} | {:>8} {:>6} {:>7} | {:>8} {:>6} {:>7} | {:>17}",
        "set",
        "msgs",
        "bytes",
        "ours/s",
        "MB/s",
        "us/msg",
        "yara-x/s",
        "MB/s",
        "us/msg",
        "parts/s",
        "MB/s",
        "us/msg",
        "ratio ours/yara-x"
    );
    for f in &all {
        let mut row = format!("{:<5} {:>5} {:>7.0}", f.label, f.count, f.mean_bytes);
        for us in &f.us[..3] {
            let _ = write!(
                row,
                " | {:>8.0} {:>6.1} {:>7.2}",
                1e6 / us,
                f.mean_bytes / us,
                us
            );
        }
        let (lo, hi) = f.ratio_range;
        let _ = write!(row, " | {:>5.2} ({lo:.2}-{hi:.2})", f.ratio);
        println!("{row}");
    }
    println!();
    println!("Where our time goes, us per message (medians; the differences are estimates):");
    println!(
        "{:<5} | {:>8} | {:>8} {:>10} | {:>10} {:>12} | {:>8}",
        "set", "ours", "no rules", "(parse)", "ours-norul", "parts-parse", "yara-x"
    );
    for f in &all {
        let [ours, bare, parts, parse, walk] = [f.us[0], f.us[1], f.us[2], f.us[3], f.us[4]];
        println!(
            "{:<5} | {ours:>8.2} | {walk:>8.2} {parse:>10.2} | {:>10.2} {:>12.2} | {bare:>8.2}",
            f.label,
            ours - walk,
            parts - parse,
        );
    }
    println!(
        "no rules = scan_message without a scanner (MIME walk, decoding, filters, verdict, \
         header); (parse) = mail-parser alone, part of it;"
    );
    println!(
        "ours-norul = what the YARA scans add to ours; parts-parse = bare scans of the decoded \
         parts; yara-x = one bare scan of the raw message."
    );
    if let Some(path) = summary {
        let mut lines = String::new();
        for f in &all {
            let _ = writeln!(
                lines,
                "{} {} {:.0} {:.3} {:.3} {:.3} {:.3}",
                f.label, f.count, f.mean_bytes, f.us[0], f.us[1], f.us[2], f.ratio
            );
        }
        std::fs::write(path, lines).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
