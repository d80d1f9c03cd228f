//! SIGKILL under load: four clients keep sending while the daemon is killed
//! and restarted on the same data_dir, N times. Every message that got a
//! 250 must reach the next hop with its own content. Duplicates are allowed
//! (a delivery cut off by the kill is repeated: at-least-once) and printed.

use std::time::{Duration, Instant};

use anyhow::Result;
use mailward_e2e::load::Load;
use mailward_e2e::Gateway;

use crate::report::{Goal, Report};
use crate::Length;

const CASE: &str = "kill-9";

pub fn run(r: &mut Report, len: Length) -> Result<()> {
    let cycles = len.pick(3, 20);
    let per_cycle = len.pick(150, 300);
    let mut gw = Gateway::start("chaos-kill9", |c| c)?;
    let load = Load::start(gw.port(), 4, "kill9")?;
    let mut restarts = Vec::new();
    for n in 1..=cycles {
        load.wait_accepted(n * per_cycle, Duration::from_secs(120))?;
        gw.daemon.kill9()?;
        let t = Instant::now();
        gw.daemon.restart()?;
        restarts.push(t.elapsed().as_secs_f64());
    }
    load.wait_accepted((cycles + 1) * per_cycle, Duration::from_secs(120))?;
    let ledger = load.stop();
    let s = ledger.settle(&gw.sink, Duration::from_secs(300))?;
    r.figure(CASE, "kill -9 cycles", cycles as f64, Goal::None);
    r.figure(
        CASE,
        "messages accepted (250)",
        s.accepted as f64,
        Goal::None,
    );
    r.figure(
        CASE,
        "lost (250 but never delivered)",
        s.lost.len() as f64,
        Goal::Exactly(0.0),
    );
    r.figure(
        CASE,
        "wrong content",
        s.wrong.len() as f64,
        Goal::Exactly(0.0),
    );
    r.figure(
        CASE,
        "duplicated (at-least-once)",
        s.duplicated as f64,
        Goal::None,
    );
    r.figure(
        CASE,
        "duplicated, % of accepted",
        100.0 * s.duplicated as f64 / s.accepted.max(1) as f64,
        Goal::None,
    );
    let worst = restarts.iter().copied().fold(0.0, f64::max);
    r.figure(
        CASE,
        "restart to greeting, worst (s)",
        worst,
        Goal::AtMost(10.0),
    );
    Ok(())
}
