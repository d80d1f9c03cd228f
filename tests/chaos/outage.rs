//! The next hop is down while mail arrives, then comes back: every message
//! is delivered once (no crash, so no duplicate).

use std::time::{Duration, Instant};

use anyhow::Result;
use mailward_e2e::load::Load;
use mailward_e2e::{free_port, Config, Daemon, Sink, TestDir};

use crate::report::{Goal, Report};
use crate::Length;

const CASE: &str = "outage";

pub fn run(r: &mut Report, len: Length) -> Result<()> {
    let messages = len.pick(200, 1000);
    let dir = TestDir::new("chaos-outage")?;
    let sink_port = free_port();
    let config = Config::new(dir.path()).route_to_port("*", sink_port);
    let daemon = Daemon::start(&config)?;
    let load = Load::start(daemon.port, 4, "outage")?;
    load.wait_accepted(messages, Duration::from_secs(300))?;
    let ledger = load.stop();
    let queued = daemon.queue_ids()?.len();
    let sink = Sink::start_with(dir.path(), "sink", sink_port, &[])?;
    let back = Instant::now();
    daemon.queue_flush()?;
    let s = ledger.settle(&sink, Duration::from_secs(300))?;
    let drained = back.elapsed().as_secs_f64();
    r.figure(
        CASE,
        "accepted while the next hop was down",
        s.accepted as f64,
        Goal::None,
    );
    r.figure(
        CASE,
        "queued when it came back",
        queued as f64,
        Goal::AtLeast(s.accepted as f64),
    );
    r.figure(CASE, "lost", s.lost.len() as f64, Goal::Exactly(0.0));
    r.figure(CASE, "duplicated", s.duplicated as f64, Goal::Exactly(0.0));
    r.figure(
        CASE,
        "queue drained after its return (s)",
        drained,
        Goal::None,
    );
    Ok(())
}
