//! Zip bombs (1 GiB of zeros, about 1 MiB packed), one at a time and eight
//! at once, with 1 GiB allowed per message but 64 MiB for all scan workers
//! together: the daemon's peak memory must stay near that bound, and every
//! bomb is delivered with av/error (never as clean).

use std::thread;
use std::time::Duration;

use anyhow::{Context, Result};
use mailward_e2e::mime::{self, Part};
use mailward_e2e::samples::{vm_hwm, zip_bomb};
use mailward_e2e::stats::StatsSetup;
use mailward_e2e::{Gateway, SmtpClient};

use crate::report::{Goal, Report};
use crate::Length;

const CASE: &str = "zip-bombs";
/// `limits.scan_memory` of this rig.
const SCAN_MEMORY_MIB: u64 = 64;
/// What else the daemon may hold while scanning (parsed messages, the
/// bombs' own bytes, buffers): the bound is SCAN_MEMORY plus this.
const SLACK_MIB: u64 = 96;

fn send(port: u16, message: &[u8]) -> Result<String> {
    let mut c = SmtpClient::connect_ok(port)?;
    c.ehlo("client.test")?;
    c.send_mail_ok("a@example.com", &["b@example.com"], message)
}

pub fn run(r: &mut Report, _len: Length) -> Result<()> {
    let stats = StatsSetup::new(&std::env::temp_dir());
    let gw = Gateway::start("chaos-bombs", |c| {
        stats
            .apply(c)
            .set("limits", "antiviral_sessions", "4")
            .set_str("limits", "scan_memory", &format!("{SCAN_MEMORY_MIB}MiB"))
            .set_str("policy", "max_unpacked_size", "1GiB")
            .set_str("timeouts", "scan", "60s")
    })?;
    let pid = gw.daemon.pid().context("the daemon is not running")?;
    let bomb = zip_bomb(1024)?;
    let message = mime::multipart(
        "zeros",
        "b-chaos",
        &[
            Part::text("zeros\r\n"),
            Part::attachment("zeros.zip", "application/zip", &bomb),
        ],
    );
    let base = vm_hwm(pid)?;
    send(gw.port(), &message)?;
    gw.sink.wait_for_count(1, Duration::from_secs(120))?;
    let one = vm_hwm(pid)?.saturating_sub(base) >> 20;
    let senders: Vec<_> = (0..8)
        .map(|_| {
            let (port, message) = (gw.port(), message.clone());
            thread::spawn(move || send(port, &message))
        })
        .collect();
    for s in senders {
        s.join()
            .map_err(|_| anyhow::anyhow!("a sender panicked"))??;
    }
    let delivered = gw.sink.wait_for_count(9, Duration::from_secs(300))?;
    let eight = vm_hwm(pid)?.saturating_sub(base) >> 20;
    let clean = delivered
        .iter()
        .filter(|m| {
            !m.header("X-Mailward-AV")
                .is_some_and(|h| h.starts_with("error"))
        })
        .count();
    let bound = (SCAN_MEMORY_MIB + SLACK_MIB) as f64;
    r.figure(
        CASE,
        "one bomb: peak memory growth (MiB)",
        one as f64,
        Goal::AtMost(bound),
    );
    r.figure(
        CASE,
        "8 at once: peak memory growth (MiB)",
        eight as f64,
        Goal::AtMost(bound),
    );
    r.figure(
        CASE,
        "scans refused for the shared bound",
        stats
            .scrape()?
            .value("mailward_scan_memory_refused_total", &[])?,
        Goal::None,
    );
    r.figure(
        CASE,
        "bombs delivered not as av/error",
        clean as f64,
        Goal::Exactly(0.0),
    );
    Ok(())
}
