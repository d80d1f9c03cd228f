//! SIGKILL while the classifier learns: `mailward spam learn` of one new
//! message (of 150 words, or of 20,000 so that the journal is folded into
//! a new snapshot now and then) runs to its end and is timed, then the
//! same for another message of that size is killed after 0 to 1.5 times
//! that time, N times. The promise under test
//! (docs/spam.md, the snapshot and the journal): a message is learnt
//! before the command says "Learnt", and a kill leaves at most a record
//! cut short, which no reader counts and the next change cuts off. So:
//! every acknowledged message is learnt, the store is readable after
//! every kill, and one more change leaves no problem.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use mailward_e2e::daemon::mailward_bin;
use mailward_e2e::{Config, TestDir};

use crate::report::{Goal, Report};
use crate::Length;

const CASE: &str = "learn-kill-9";

/// A word of letters only (the tokenizer keeps it whole), one per `n`.
fn word(mut n: u64) -> String {
    let mut w = String::from("zq");
    loop {
        w.push(char::from(b'a' + (n % 26) as u8));
        n /= 26;
        if n == 0 {
            return w;
        }
    }
}

/// Messages come in pairs of one size (150 or 20,000 words by turns): the
/// first of a pair is learnt to the end and timed, the second killed.
fn is_large(i: u64) -> bool {
    (i / 2) % 2 == 1
}

/// Message `i`: its own words only, so that it is new to the store.
fn message(i: u64) -> Vec<u8> {
    let words = if is_large(i) { 20_000 } else { 150 };
    let mut body = String::new();
    for j in 0..words {
        body.push_str(&word(i * 1_000_000 + j));
        body.push(if j % 12 == 11 { '\n' } else { ' ' });
    }
    format!(
        "From: a{i}@example.org\r\nTo: b@example.com\r\nSubject: notes {i}\r\n\
         Message-ID: <learn-{i}@example.org>\r\nDate: Fri, 04 Dec 2026 10:00:00 +0000\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

/// `spam status --json` of the configuration.
fn status(bin: &Path, config: &Path) -> Result<serde_json::Value> {
    let out = Command::new(bin)
        .args(["spam", "status", "--json", "--config"])
        .arg(config)
        .output()
        .context("running mailward spam status")?;
    serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "spam status --json printed no JSON: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Its problems other than a journal that ends in a record cut short,
/// and whether it does.
fn problems(status: &serde_json::Value) -> (Vec<String>, bool) {
    let torn = status["journal"]["unread"].as_u64().unwrap_or(0) > 0;
    let others = status["problems"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p.as_str())
        .filter(|p| !p.starts_with("the journal ends in"))
        .map(str::to_string)
        .collect();
    (others, torn)
}

pub fn run(r: &mut Report, len: Length) -> Result<()> {
    let rounds: u64 = len.pick(80, 400);
    let bin = mailward_bin()?;
    let dir = TestDir::new("chaos-learn")?;
    let config = Config::new(dir.path());
    let config_path = config.path();
    std::fs::write(&config_path, config.render())?;
    // The data directory is the daemon's to make; spam learn makes only
    // the spam directory in it (a mistyped path is not created).
    std::fs::create_dir_all(config.data_dir())?;
    let messages = dir.path().join("messages");
    std::fs::create_dir_all(&messages)?;
    let mut acknowledged: Vec<PathBuf> = Vec::new();
    let (mut killed, mut torn, mut folds, mut unreadable) = (0, 0, 0, Vec::new());
    let mut snapshot = 0;
    // How long the last whole learn of each size took.
    let mut took: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    for i in 0..rounds {
        let file = messages.join(format!("{i}.eml"));
        std::fs::write(&file, message(i))?;
        let took = &mut took[usize::from(is_large(i))];
        let delay = (i % 2 == 1).then(|| {
            let last = took.last().copied().unwrap_or_default();
            last.mul_f64(1.5 * ((i * 37) % 100) as f64 / 100.0)
        });
        let started = Instant::now();
        let mut child = Command::new(&bin)
            .args(["spam", "learn", "--ham"])
            .arg(&file)
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting mailward spam learn")?;
        let finished = loop {
            if let Some(status) = child.try_wait()? {
                break Some(status);
            }
            if delay.is_some_and(|d| started.elapsed() >= d) {
                break None;
            }
            std::thread::sleep(Duration::from_micros(500));
        };
        match finished {
            Some(status) => {
                let out = child.wait_with_output()?;
                let said = String::from_utf8_lossy(&out.stdout);
                if !status.success() || !said.contains("Learnt 1 new message(s)") {
                    bail!("round {i}: spam learn did not learn ({status}): {said}");
                }
                took.push(started.elapsed());
                acknowledged.push(file);
            }
            None => {
                child.kill()?;
                child.wait()?;
                killed += 1;
            }
        }
        let now = status(&bin, &config_path)?;
        let (others, cut) = problems(&now);
        torn += u32::from(cut);
        if !others.is_empty() {
            unreadable.push(format!("after learn {i}: {}", others.join("; ")));
        }
        let size = now["journal"]["snapshot"].as_u64().unwrap_or(0);
        folds += u32::from(size != snapshot);
        snapshot = size;
    }
    // Every acknowledged message is known: learning them again learns
    // nothing new.
    let mut again = Command::new(&bin);
    again.args(["spam", "learn", "--ham"]);
    again.args(&acknowledged);
    let out = again
        .arg("--config")
        .arg(&config_path)
        .output()
        .context("running mailward spam learn")?;
    let said = String::from_utf8_lossy(&out.stdout);
    let lost = said
        .split("Learnt ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse::<f64>().ok())
        .with_context(|| format!("spam learn said: {said}"))?;
    // One more change (the fold) and nothing is wrong.
    let fold = Command::new(&bin)
        .args(["spam", "fold", "--config"])
        .arg(&config_path)
        .output()
        .context("running mailward spam fold")?;
    let after = status(&bin, &config_path)?;
    let (others, cut) = problems(&after);
    let ham = after["site"]["ham"].as_f64().unwrap_or(0.0);
    let median = |t: &[Duration]| {
        let mut t = t.to_vec();
        t.sort();
        t.get(t.len() / 2).copied().unwrap_or_default()
    };
    r.figure(CASE, "learns run", rounds as f64, Goal::None);
    r.figure(CASE, "learns killed", killed as f64, Goal::None);
    r.figure(
        CASE,
        "one learn, median (ms): 150 words",
        median(&took[0]).as_secs_f64() * 1000.0,
        Goal::None,
    );
    r.figure(
        CASE,
        "one learn, median (ms): 20,000 words",
        median(&took[1]).as_secs_f64() * 1000.0,
        Goal::None,
    );
    r.figure(
        CASE,
        "journal folded into a new snapshot",
        f64::from(folds),
        Goal::AtLeast(1.0),
    );
    r.figure(
        CASE,
        "kills that left a record cut short",
        f64::from(torn),
        Goal::None,
    );
    r.figure(
        CASE,
        "killed learns that had landed",
        ham - acknowledged.len() as f64,
        Goal::None,
    );
    r.figure(
        CASE,
        "store unreadable after a learn or a kill",
        unreadable.len() as f64,
        Goal::Exactly(0.0),
    );
    for u in &unreadable {
        println!("{CASE:<12}   {u}");
    }
    r.figure(
        CASE,
        "acknowledged (\"Learnt\") but not learnt",
        lost,
        Goal::Exactly(0.0),
    );
    r.check(
        CASE,
        "fold, then no problem and no record cut short",
        fold.status.success() && others.is_empty() && !cut,
    );
    Ok(())
}
