//! The daemon's life: a second start on the same configuration is refused
//! with 75 and changes nothing; a stop while deliveries are under way loses
//! nothing; a storm of SIGHUPs, half of them with a broken configuration,
//! keeps mail flowing and the last good configuration in force.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use anyhow::Result;
use mailward_e2e::load::Load;
use mailward_e2e::{
    daemon::mailward_bin, free_port, wait_until, Config, Daemon, Gateway, Sink, TestDir,
};

use crate::report::{Goal, Report};
use crate::Length;

const CASE: &str = "lifecycle";

fn listing(dir: &std::path::Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn second_start(r: &mut Report) -> Result<()> {
    let gw = Gateway::start("chaos-second", |c| c)?;
    let load = Load::start(gw.port(), 2, "second")?;
    load.wait_accepted(50, Duration::from_secs(60))?;
    let spool = gw.config.data_dir().join("spool");
    let before = listing(&spool);
    let out = Command::new(mailward_bin()?)
        .args(["run", "--config"])
        .arg(gw.config.path())
        .current_dir(gw.dir.path())
        .stdin(Stdio::null())
        .output()?;
    r.figure(
        CASE,
        "second start: exit status",
        out.status.code().unwrap_or(-1) as f64,
        Goal::Exactly(75.0),
    );
    r.check(
        CASE,
        "second start: spool files unchanged",
        listing(&spool) == before,
    );
    let at = load.ledger.accepted();
    load.wait_accepted(at + 50, Duration::from_secs(60))?;
    let ledger = load.stop();
    let s = ledger.settle(&gw.sink, Duration::from_secs(60))?;
    r.figure(
        CASE,
        "second start: lost",
        s.lost.len() as f64,
        Goal::Exactly(0.0),
    );
    Ok(())
}

fn stop_during_delivery(r: &mut Report, len: Length) -> Result<()> {
    let dir = TestDir::new("chaos-stop")?;
    // The next hop waits 1 s before answering DATA: deliveries are under
    // way when the stop comes.
    let sink = Sink::start_with(dir.path(), "sink", free_port(), &["-w", "1"])?;
    let config = Config::new(dir.path()).route_to_port("*", sink.port);
    let mut daemon = Daemon::start(&config)?;
    let mut ledgers = Vec::new();
    for n in 0..len.pick(2, 5) {
        let load = Load::start(daemon.port, 2, &format!("stop{n}"))?;
        load.wait_accepted(30, Duration::from_secs(60))?;
        ledgers.push(load.stop());
        daemon.sigterm()?;
        daemon.restart()?;
    }
    let (mut accepted, mut lost, mut duplicated) = (0, 0, 0);
    for ledger in &ledgers {
        let s = ledger.settle(&sink, Duration::from_secs(120))?;
        accepted += s.accepted;
        lost += s.lost.len();
        duplicated += s.duplicated;
    }
    r.figure(
        CASE,
        "stop during delivery: accepted",
        accepted as f64,
        Goal::None,
    );
    r.figure(
        CASE,
        "stop during delivery: lost",
        lost as f64,
        Goal::Exactly(0.0),
    );
    r.figure(
        CASE,
        "stop during delivery: duplicated",
        duplicated as f64,
        Goal::None,
    );
    Ok(())
}

fn sighup_storm(r: &mut Report, len: Length) -> Result<()> {
    let mut gw = Gateway::start("chaos-sighup", |c| c)?;
    let load = Load::start(gw.port(), 2, "sighup")?;
    let good = |rcpts: u32| {
        gw.config
            .clone()
            .set("limits", "max_rcpts_per_message", &rcpts.to_string())
            .render()
    };
    let broken = format!("{}\n[limits\nthis is = not TOML\n", good(7));
    let rounds = len.pick(50, 200);
    for i in 0..rounds {
        let text = if i % 2 == 0 {
            broken.clone()
        } else {
            good(10 + i)
        };
        gw.daemon.write_config(&text)?;
        gw.daemon.sighup()?;
        thread::sleep(Duration::from_millis(20));
    }
    // The last good one, then a broken one: the good one stays in force.
    gw.daemon.write_config(&good(3))?;
    gw.daemon.sighup()?;
    thread::sleep(Duration::from_millis(500));
    gw.daemon.write_config(&broken)?;
    gw.daemon.sighup()?;
    wait_until(
        "the last reload to be refused",
        Duration::from_secs(10),
        || {
            Ok(gw
                .daemon
                .full_log()
                .contains("Reload refused")
                .then_some(()))
        },
    )?;
    thread::sleep(Duration::from_millis(500));
    let mut c = gw.ehlo_client()?;
    c.command("MAIL FROM:<a@example.com>")?;
    let mut codes = Vec::new();
    for n in 0..4 {
        codes.push(c.command(&format!("RCPT TO:<r{n}@example.com>"))?.code);
    }
    let at = load.ledger.accepted();
    load.wait_accepted(at + 20, Duration::from_secs(60))?;
    let ledger = load.stop();
    let s = ledger.settle(&gw.sink, Duration::from_secs(60))?;
    r.figure(
        CASE,
        "SIGHUP storm: signals sent",
        (rounds + 2) as f64,
        Goal::None,
    );
    r.check(
        CASE,
        "SIGHUP storm: last good config in force",
        codes == [250, 250, 250, 452],
    );
    r.check(
        CASE,
        "SIGHUP storm: daemon still running",
        gw.daemon.is_running(),
    );
    r.figure(
        CASE,
        "SIGHUP storm: accepted",
        s.accepted as f64,
        Goal::None,
    );
    r.figure(
        CASE,
        "SIGHUP storm: lost",
        s.lost.len() as f64,
        Goal::Exactly(0.0),
    );
    Ok(())
}

pub fn run(r: &mut Report, len: Length) -> Result<()> {
    // Each part stands alone: one that cannot run does not hide the others.
    if let Err(e) = second_start(r) {
        r.broken(CASE, &e);
    }
    if let Err(e) = stop_during_delivery(r, len) {
        r.broken(CASE, &e);
    }
    sighup_storm(r, len)
}
