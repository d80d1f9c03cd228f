//! A full disk: the spool lives on an 8 MiB tmpfs and the next hop is down,
//! so mail piles up until the disk is full. While it is full, new mail gets
//! 4xx (never a 250 without storage: every 250 must be delivered). Once
//! the next hop is back and the queue drains, new mail is taken again
//! within seconds, without a restart; and after a restart on a full disk.
//! Needs root (to mount the tmpfs).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use mailward_e2e::load::{tagged_message, transaction, Ledger};
use mailward_e2e::tmpfs::Tmpfs;
use mailward_e2e::{free_port, wait_until, Config, Daemon, Sink, SmtpClient, TestDir};

use crate::report::{Goal, Report};
use crate::Length;

const CASE: &str = "disk-full";
/// Attempts after the first refusal, all of which must be refused too.
const WHILE_FULL: usize = 20;

/// Sends 64 KiB tagged messages until one is refused; then WHILE_FULL more.
/// Returns (the first refusal's code, 4xx replies among the later ones).
fn fill(port: u16, ledger: &Ledger, phase: &str) -> Result<(u16, usize)> {
    let mut first = None;
    let mut refused_4xx = 0usize;
    let mut after = 0;
    for n in 0..2000 {
        let tag = format!("disk-{phase}-m{n}");
        let mut c = SmtpClient::connect_ok(port)?;
        c.ehlo("client.test")?;
        match transaction(&mut c, &tagged_message(&tag, 64 * 1024)?)? {
            Ok(id) => ledger.record(id, tag),
            Err(reply) => {
                first.get_or_insert(reply.code);
                if reply.class() == 4 {
                    refused_4xx += 1;
                }
            }
        }
        if first.is_some() {
            after += 1;
            if after > WHILE_FULL {
                break;
            }
        }
    }
    let first = first.context("the disk never filled")?;
    // The first refusal is counted in the loop too.
    Ok((first, refused_4xx.saturating_sub(1)))
}

/// Starts the next hop, drains the queue, and times the first 250 after.
fn drain_and_recover(
    r: &mut Report,
    dir: &TestDir,
    daemon: &Daemon,
    ledger: &Ledger,
    sink_port: u16,
    phase: &str,
) -> Result<Sink> {
    let sink = Sink::start_with(dir.path(), &format!("sink-{phase}"), sink_port, &[])?;
    daemon.queue_flush()?;
    let s = ledger.settle(&sink, Duration::from_secs(120))?;
    let drained = Instant::now();
    wait_until(
        "a 250 after the queue drained",
        Duration::from_secs(30),
        || {
            let mut c = SmtpClient::connect_ok(daemon.port)?;
            c.ehlo("client.test")?;
            let tag = format!("disk-{phase}-after");
            Ok(match transaction(&mut c, &tagged_message(&tag, 1024)?)? {
                Ok(id) => {
                    ledger.record(id, tag);
                    Some(())
                }
                Err(_) => None,
            })
        },
    )?;
    r.figure(
        CASE,
        &format!("{phase}: first 250 after the drain (s)"),
        drained.elapsed().as_secs_f64(),
        Goal::AtMost(5.0),
    );
    // Everything that got a 250, the message after the drain included.
    let all = ledger.settle(&sink, Duration::from_secs(60))?;
    r.figure(
        CASE,
        &format!("{phase}: accepted"),
        all.accepted as f64,
        Goal::None,
    );
    r.figure(
        CASE,
        &format!("{phase}: lost"),
        (s.lost.len().max(all.lost.len())) as f64,
        Goal::Exactly(0.0),
    );
    Ok(sink)
}

pub fn run(r: &mut Report, _len: Length) -> Result<()> {
    let dir = TestDir::new("chaos-disk")?;
    let _disk = Tmpfs::mount(&dir.join("data"), "8m")?;
    let sink_port = free_port();
    // Almost no space kept free: the disk really fills, and writes fail.
    let config = Config::new(dir.path())
        .route_to_port("*", sink_port)
        .set_str("limits", "min_queue_free_space", "1KiB");
    let mut daemon = Daemon::start(&config)?;

    let ledger = Ledger::default();
    let (code, later) = fill(daemon.port, &ledger, "no restart")?;
    r.figure(
        CASE,
        "first refusal when full (reply code)",
        code as f64,
        Goal::AtMost(499.0),
    );
    r.figure(
        CASE,
        "refused with 4xx while full, of 20 more",
        later as f64,
        Goal::Exactly(WHILE_FULL as f64),
    );
    let pid = daemon.pid();
    let mut sink = drain_and_recover(r, &dir, &daemon, &ledger, sink_port, "no restart")?;
    r.check(CASE, "no restart: the same process", daemon.pid() == pid);

    // Fill again, and restart on the full disk before the next hop returns.
    sink.stop();
    let ledger = Ledger::default();
    fill(daemon.port, &ledger, "restart")?;
    daemon.sigterm()?;
    let started = daemon.restart();
    r.check(CASE, "restart: starts on a full disk", started.is_ok());
    started?;
    drain_and_recover(r, &dir, &daemon, &ledger, sink_port, "restart")?;
    Ok(())
}
