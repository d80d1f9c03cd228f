//! The figures of a chaos run: one line per measure, beside its goal, and
//! a summary. A figure with a goal passes or fails; one without a goal is
//! printed for the record (durations, duplicates after a crash).

use std::fmt;
use std::time::Instant;

/// What a figure must be.
#[derive(Debug, Clone, Copy)]
pub enum Goal {
    /// Printed, not judged.
    None,
    /// Exactly this.
    Exactly(f64),
    /// No more than this.
    AtMost(f64),
    /// At least this.
    AtLeast(f64),
}

impl Goal {
    fn holds(self, v: f64) -> Option<bool> {
        match self {
            Goal::None => None,
            Goal::Exactly(g) => Some((v - g).abs() < 1e-9),
            Goal::AtMost(g) => Some(v <= g),
            Goal::AtLeast(g) => Some(v >= g),
        }
    }
}

impl fmt::Display for Goal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Goal::None => write!(f, "-"),
            Goal::Exactly(g) => write!(f, "= {}", num(*g)),
            Goal::AtMost(g) => write!(f, "<= {}", num(*g)),
            Goal::AtLeast(g) => write!(f, ">= {}", num(*g)),
        }
    }
}

fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.2}")
    }
}

/// The run's figures so far.
pub struct Report {
    started: Instant,
    failed: Vec<String>,
    figures: usize,
}

impl Report {
    pub fn new() -> Report {
        println!(
            "{:<12} {:<52} {:>10} {:>10}  result",
            "case", "measure", "value", "goal"
        );
        Report {
            started: Instant::now(),
            failed: Vec::new(),
            figures: 0,
        }
    }

    /// Prints one figure, with its unit in the measure's name.
    pub fn figure(&mut self, case: &str, measure: &str, value: f64, goal: Goal) {
        self.figures += 1;
        let verdict = match goal.holds(value) {
            None => "",
            Some(true) => "ok",
            Some(false) => {
                self.failed
                    .push(format!("{case}: {measure} = {} (goal {goal})", num(value)));
                "FAILED"
            }
        };
        println!(
            "{case:<12} {measure:<52} {:>10} {:>10}  {verdict}",
            num(value),
            goal.to_string()
        );
    }

    /// A yes/no figure (1 = yes), which must be yes.
    pub fn check(&mut self, case: &str, measure: &str, ok: bool) {
        self.figure(case, measure, ok as u8 as f64, Goal::Exactly(1.0));
    }

    /// A case that could not run at all: a failure with its reason.
    pub fn broken(&mut self, case: &str, why: &anyhow::Error) {
        self.figures += 1;
        let why = format!("{why:#}");
        let first = why.lines().next().unwrap_or("").to_string();
        println!(
            "{case:<12} {:<52} {:>10} {:>10}  FAILED",
            "could not run", "-", "-"
        );
        println!("{case:<12}   {first}");
        self.failed.push(format!("{case}: could not run: {why}"));
    }

    /// Prints the summary; true when every goal held.
    pub fn finish(self) -> bool {
        println!(
            "\nchaos: {} figures, {} failed, {:.0} s",
            self.figures,
            self.failed.len(),
            self.started.elapsed().as_secs_f64()
        );
        for f in &self.failed {
            println!("  FAILED {f}");
        }
        self.failed.is_empty()
    }
}
