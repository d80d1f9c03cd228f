//! systemd's part, played by the test: a unix datagram socket named in
//! `NOTIFY_SOCKET`, and `WATCHDOG_USEC` as a unit with `WatchdogSec` sets
//! it. The daemon must say `READY=1` once it greets, keep the watchdog
//! alive, frame a SIGHUP reload with `RELOADING=1` (and the
//! `MONOTONIC_USEC=` that systemd 253 wants) and `READY=1`, and say
//! `STOPPING=1` on SIGTERM, in that order.

use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use mailward_e2e::*;

/// What the daemon sent, with when it arrived.
type Received = Arc<Mutex<Vec<(Instant, String)>>>;

fn listen(socket: UnixDatagram) -> Received {
    let got: Received = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 4096];
        while let Ok(n) = socket.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if let Ok(mut v) = sink.lock() {
                v.push((Instant::now(), text));
            }
        }
    });
    got
}

fn messages(got: &Received) -> Vec<String> {
    got.lock()
        .map(|v| v.iter().map(|(_, m)| m.clone()).collect())
        .unwrap_or_default()
}

/// The index of the first message after `from` that has every line of
/// `lines` (each `KEY=VALUE` or a `KEY=` prefix).
fn find(all: &[String], from: usize, lines: &[&str]) -> Option<usize> {
    (from..all.len()).find(|&i| {
        lines
            .iter()
            .all(|want| all[i].lines().any(|l| l.starts_with(want)))
    })
}

#[test]
fn notify_socket_gets_ready_watchdog_reloading_ready_and_stopping_in_order() -> Result<()> {
    let dir = TestDir::new("systemd-notify")?;
    let path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path)?;
    let got = listen(socket);
    let sink = Sink::start(dir.path(), "sink")?;
    let config = Config::new(dir.path()).route_to_port("*", sink.port);
    let mut daemon = Daemon::new(&config)?;
    daemon.set_env("NOTIFY_SOCKET", &path.display().to_string());
    // WatchdogSec=2s: a ping every second. (With 1 s, one stall of half
    // a second on a loaded test machine was a failure.)
    daemon.set_env("WATCHDOG_USEC", "2000000");
    daemon.spawn()?;
    daemon.wait_ready()?;

    let ready = wait_until("READY=1", Duration::from_secs(10), || {
        Ok(find(
            &messages(&got),
            0,
            &["READY=1", "STATUS=Accepting mail"],
        ))
    })?;
    // Five seconds of watchdog: about five pings, none more than a
    // period apart.
    std::thread::sleep(Duration::from_secs(5));
    let pings: Vec<Instant> = got
        .lock()
        .map(|v| {
            v.iter()
                .filter(|(_, m)| m.lines().any(|l| l == "WATCHDOG=1"))
                .map(|(t, _)| *t)
                .collect()
        })
        .unwrap_or_default();
    ensure!(pings.len() >= 3, "watchdog pings in 5 s: {}", pings.len());
    let gap = pings
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    ensure!(
        gap < Duration::from_millis(2000),
        "the longest gap between pings, {gap:?}, is past WatchdogSec"
    );

    daemon.sighup()?;
    let reloaded = wait_until("READY=1 after the reload", Duration::from_secs(20), || {
        let all = messages(&got);
        let Some(r) = find(&all, ready + 1, &["RELOADING=1", "MONOTONIC_USEC="]) else {
            return Ok(None);
        };
        Ok(find(
            &all,
            r + 1,
            &["READY=1", "STATUS=The new configuration is in force"],
        ))
    })?;

    let status = daemon.sigterm()?;
    ensure!(status.success(), "clean stop: {status}");
    let all = messages(&got);
    let stopping = find(&all, reloaded + 1, &["STOPPING=1"])
        .with_context(|| format!("no STOPPING=1 after the reload: {all:?}"))?;
    ensure!(
        find(&all, 0, &["STOPPING=1"]) == Some(stopping),
        "STOPPING=1 comes last: {all:?}"
    );
    Ok(())
}
