//! Collecting every problem of an end-to-end test and reporting them
//! together, so one run shows all that is wrong, not only the first.

use anyhow::{bail, Result};

/// What is wrong, collected and reported together.
#[derive(Default)]
pub struct Failures(pub Vec<String>);

impl Failures {
    pub fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.0.push(what());
        }
    }

    pub fn push(&mut self, what: impl Into<String>) {
        self.0.push(what.into());
    }

    /// Records the error of a step that failed, and goes on.
    pub fn step<T>(&mut self, what: &str, r: Result<T>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(format!("{what}: {e:#}"));
                None
            }
        }
    }

    pub fn finish(self, context: impl FnOnce() -> String) -> Result<()> {
        if self.0.is_empty() {
            return Ok(());
        }
        bail!(
            "{} problem(s):\n- {}\n\n{}",
            self.0.len(),
            self.0.join("\n- "),
            context()
        )
    }
}
