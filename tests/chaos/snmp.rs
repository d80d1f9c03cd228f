//! The AgentX master misbehaves: snmpd is restarted N times, then stopped
//! with SIGSTOP (it holds the socket but answers nothing). Mail must keep
//! flowing through all of it (monitoring never stops mail), and the
//! subagent must be back in the tree soon after each restart.

use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use mailward_e2e::load::Load;
use mailward_e2e::snmp::NetSnmp;
use mailward_e2e::{Config, Daemon, Sink, TestDir};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::report::{Goal, Report};
use crate::Length;

const CASE: &str = "snmp";

pub fn run(r: &mut Report, len: Length) -> Result<()> {
    let restarts = len.pick(3, 10);
    let frozen = Duration::from_secs(len.pick(5, 20));
    let dir = TestDir::new("chaos-snmp")?;
    let mut snmp = NetSnmp::start(dir.path())?;
    let sink = Sink::start(dir.path(), "sink")?;
    let config = Config::new(dir.path())
        .route_to_port("*", sink.port)
        .set_str("agentx", "socket", &snmp.agentx_setting())
        .set_str("agentx", "ping_interval", "1s")
        .set_str("agentx", "timeout", "1s");
    let _daemon = Daemon::start(&config)?;
    snmp.wait_subtree(Duration::from_secs(20))?;
    let load = Load::start(config.port, 2, "snmp")?;
    load.wait_accepted(20, Duration::from_secs(60))?;

    let mut back = Vec::new();
    for _ in 0..restarts {
        snmp.stop_snmpd()?;
        thread::sleep(Duration::from_millis(200));
        snmp.start_snmpd()?;
        let t = Instant::now();
        snmp.wait_subtree(Duration::from_secs(60))?;
        back.push(t.elapsed().as_secs_f64());
    }
    back.sort_by(f64::total_cmp);
    r.figure(CASE, "snmpd restarts", restarts as f64, Goal::None);
    r.figure(
        CASE,
        "subtree back after a restart, median (s)",
        back[back.len() / 2],
        Goal::None,
    );
    r.figure(
        CASE,
        "subtree back after a restart, worst (s)",
        back.last().copied().unwrap_or(0.0),
        Goal::AtMost(10.0),
    );

    // Frozen master: it accepts nothing and answers nothing.
    let pid = Pid::from_raw(snmp.snmpd_pid().context("snmpd is not running")? as i32);
    let before = load.ledger.accepted();
    kill(pid, Signal::SIGSTOP)?;
    thread::sleep(frozen);
    let during = load.ledger.accepted() - before;
    kill(pid, Signal::SIGCONT)?;
    let t = Instant::now();
    snmp.wait_subtree(Duration::from_secs(60))?;
    r.figure(
        CASE,
        &format!("accepted while snmpd was stopped {} s", frozen.as_secs()),
        during as f64,
        Goal::AtLeast(10.0),
    );
    r.figure(
        CASE,
        "subtree back after SIGCONT (s)",
        t.elapsed().as_secs_f64(),
        Goal::AtMost(10.0),
    );

    let ledger = load.stop();
    let s = ledger.settle(&sink, Duration::from_secs(60))?;
    r.figure(CASE, "accepted in all", s.accepted as f64, Goal::None);
    r.figure(
        CASE,
        "refused or broken transactions",
        (ledger.refused() + ledger.broken()) as f64,
        Goal::Exactly(0.0),
    );
    r.figure(CASE, "lost", s.lost.len() as f64, Goal::Exactly(0.0));
    Ok(())
}
