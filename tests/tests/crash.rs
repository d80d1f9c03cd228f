//! Crash safety: while raw clients keep sending (each recording the queue
//! ID of every 250 it gets), the daemon is killed with SIGKILL three times and
//! restarted on the same data_dir. Every message that got a 250 must reach
//! the next hop, with its own content (at least once: a delivery cut off
//! by the kill may be repeated). The chaos suite (`tests/chaos/run`) does
//! the same for more cycles and prints the figures.

use std::time::Duration;

use anyhow::{ensure, Result};
use mailward_e2e::load::Load;
use mailward_e2e::*;

#[test]
fn every_accepted_message_survives_kill_9() -> Result<()> {
    let mut gw = Gateway::start("crash", |c| c)?;
    let load = Load::start(gw.port(), 4, "crash")?;
    for target in [200, 400, 600] {
        load.wait_accepted(target, Duration::from_secs(120))?;
        gw.daemon.kill9()?;
        eprintln!("killed with {} accepted", load.ledger.accepted());
        gw.daemon.restart()?;
    }
    load.wait_accepted(800, Duration::from_secs(120))?;
    let ledger = load.stop();
    let settled = ledger.settle(&gw.sink, Duration::from_secs(180))?;
    eprintln!(
        "{} messages got a 250; {} arrived more than once (allowed after a kill)",
        settled.accepted, settled.duplicated
    );
    ensure!(
        settled.lost.is_empty(),
        "{} of {} accepted messages never arrived, e.g. {:?}; queue list: {:?}",
        settled.lost.len(),
        settled.accepted,
        &settled.lost[..settled.lost.len().min(10)],
        gw.daemon.queue_ids()
    );
    ensure!(
        settled.wrong.is_empty(),
        "messages with the wrong content:\n{}",
        settled.wrong.join("\n")
    );
    Ok(())
}
