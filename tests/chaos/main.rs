//! The chaos suite: faults and hostile clients against the real daemon and
//! real peers on loopback ports, with each measure printed beside its goal.
//!
//! ```text
//! mailward-chaos [--long] [CASE...]     run all cases (or the named ones)
//! mailward-chaos --list                 the cases and what each shows
//! ```
//!
//! The short run (the default) is part of `tests/run` and takes a few
//! minutes; `--long` is for benchmarks and releases (20 kill cycles, 1,000
//! messages of outage, 10 snmpd restarts, ...). `tests/chaos/run` builds
//! what is needed and runs this, then (with `--long`) the fuzzers. The
//! daemon is `$MAILWARD_BIN` or the workspace's target/release/mailward.
//! Exit status 0 when every goal held, 1 otherwise, 2 on a usage error.
#![forbid(unsafe_code)]

mod bad_input;
mod bombs;
mod connections;
mod disk;
mod kill9;
mod learning;
mod lifecycle;
mod outage;
mod report;
mod snmp;

use std::process::ExitCode;

use report::Report;

/// Short or long: how hard each case pushes.
#[derive(Debug, Clone, Copy)]
pub struct Length {
    pub long: bool,
}

impl Length {
    /// `short` in the short run, `long` in the long one.
    pub fn pick<T>(self, short: T, long: T) -> T {
        if self.long {
            long
        } else {
            short
        }
    }
}

type CaseFn = fn(&mut Report, Length) -> anyhow::Result<()>;

/// Every case: its name, what it shows, and its function.
const CASES: &[(&str, &str, CaseFn)] = &[
    (
        "kill-9",
        "SIGKILL under load, N cycles: every 250 reaches the next hop (lost 0; duplicates printed)",
        kill9::run,
    ),
    (
        "learn-kill-9",
        "`spam learn` killed at spread-out moments, N times (folds included): every \"Learnt\" is learnt, the store stays readable",
        learning::run,
    ),
    (
        "outage",
        "the next hop down while mail arrives, then back: lost 0, duplicated 0",
        outage::run,
    ),
    (
        "disk-full",
        "a small tmpfs fills: 4xx while full, no 250 without storage, recovery without restart and after one, lost 0",
        disk::run,
    ),
    (
        "lifecycle",
        "second start (exit 75, spool untouched), stop during delivery, SIGHUP storms with broken configurations",
        lifecycle::run,
    ),
    (
        "snmp",
        "snmpd restarted N times and stopped (SIGSTOP): mail keeps flowing; reconnect times",
        snmp::run,
    ),
    (
        "connections",
        "300 idle connections, slowloris in commands and DATA, stress-mode timeouts",
        connections::run,
    ),
    (
        "bad-input",
        "over-long lines, NUL, bare CR/LF, smuggling, broken parameters, 1,000 RCPTs, deep and wide MIME, a 900 KB and a 2 MB header, TLS garbage",
        bad_input::run,
    ),
    (
        "zip-bombs",
        "1 GiB zip bombs one at a time and 8 at once: the scan memory bound holds",
        bombs::run,
    ),
];

fn usage() -> String {
    let mut s = String::from(
        "usage: mailward-chaos [--long] [CASE...] | --list\n\n\
         Runs the chaos cases against target/release/mailward (or $MAILWARD_BIN),\n\
         printing each measure beside its goal; exit 0 when every goal held.\n\n\
         example: mailward-chaos kill-9 disk-full\n\
         example: mailward-chaos --long\n\ncases:\n",
    );
    for (name, what, _) in CASES {
        s.push_str(&format!("  {name:<12} {what}\n"));
    }
    s
}

fn main() -> ExitCode {
    // The harness prints a daemon's log when it is dropped (for failed
    // tests); here the figures are the output, and each test directory
    // keeps its logs with MAILWARD_E2E_KEEP=1.
    std::env::set_var("MAILWARD_E2E_QUIET", "1");
    let mut length = Length { long: false };
    let mut chosen = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--long" => length.long = true,
            "--short" => length.long = false,
            "--list" | "-h" | "--help" => {
                print!("{}", usage());
                return ExitCode::SUCCESS;
            }
            name if CASES.iter().any(|(n, _, _)| *n == name) => chosen.push(arg),
            other => {
                eprintln!(
                    "mailward-chaos: unknown case or option {other:?}\n\n{}",
                    usage()
                );
                return ExitCode::from(2);
            }
        }
    }
    println!(
        "chaos ({}): {}\n",
        if length.long { "long" } else { "short" },
        if chosen.is_empty() {
            "all cases".to_string()
        } else {
            chosen.join(", ")
        }
    );
    let mut report = Report::new();
    for (name, _, case) in CASES {
        if !chosen.is_empty() && !chosen.iter().any(|c| c == name) {
            continue;
        }
        if let Err(e) = case(&mut report, length) {
            report.broken(name, &e);
        }
    }
    if report.finish() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
