//! Crash safety: while raw clients keep sending (each recording the queue
//! ID of every 250 it gets), the daemon is killed with SIGKILL three times and
//! restarted on the same data_dir. Every message that got a 250 must reach
//! the next hop, with its own content (at least once: a delivery cut off
//! by the kill may be repeated). The chaos suite (`tests/chaos/run`) does
//! the same for more cycles and prints the figures.
//!
//! Damage: a spool segment damaged in the middle stops the start; once
//! moved aside and salvaged (`mailward queue salvage`), its intact
//! messages are delivered and the damaged one is named.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use mailward_e2e::daemon::mailward_bin;
use mailward_e2e::load::Load;
use mailward_e2e::tools::output_text;
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
    // walkBF F3: each start after a kill says the previous run did not
    // stop cleanly (and what that may repeat).
    let said = gw
        .daemon
        .full_log()
        .matches("WARN app: The previous run did not stop cleanly")
        .count();
    ensure!(
        said == 3,
        "three starts after a kill -9 said so {said} time(s)"
    );
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

/// Sends one message tagged `tag` (in its body, so that the test can find
/// its bytes in the spool) and returns its queue ID.
fn send_tagged(port: u16, tag: &str) -> Result<String> {
    let mut c = SmtpClient::connect_ok(port)?;
    c.ehlo("client.test")?;
    let message = format!(
        "From: <a@sender.test>\r\nTo: <b@example.com>\r\nSubject: {tag}\r\n\r\nbody of {tag}\r\n"
    );
    let id = c.send_mail_ok("a@sender.test", &["b@example.com"], message.as_bytes())?;
    c.quit();
    Ok(id)
}

/// The oldest segment file of the spool.
fn first_segment(spool: &Path) -> Result<PathBuf> {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(spool)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segments.sort();
    segments
        .into_iter()
        .next()
        .context("no segment in the spool")
}

#[test]
fn a_damaged_segment_is_salvaged_and_its_intact_mail_delivered() -> Result<()> {
    let dir = TestDir::new("salvage")?;
    let next_hop = free_port(); // nothing listens there until the end
    let config = Config::new(dir.path()).route_to_port("*", next_hop);
    let mut daemon = Daemon::start(&config)?;
    let mut first = Vec::new();
    for n in 1..=3 {
        first.push(send_tagged(daemon.port, &format!("salvage-tag-{n}"))?);
    }
    daemon.sigterm()?;
    // The second start writes a newer segment: the first is no longer the
    // one a crash could have torn.
    daemon.restart()?;
    ensure!(
        !daemon.full_log().contains("did not stop cleanly"),
        "a start after a clean stop says nothing of an unclean one"
    );
    let later = [
        send_tagged(daemon.port, "salvage-tag-4")?,
        send_tagged(daemon.port, "salvage-tag-5")?,
    ];
    daemon.sigterm()?;

    // One flipped byte in the second message's bytes, as a bad block would.
    let spool = config.data_dir().join("spool");
    let segment = first_segment(&spool)?;
    let mut bytes = std::fs::read(&segment)?;
    let at = bytes
        .windows(b"body of salvage-tag-2".len())
        .position(|w| w == b"body of salvage-tag-2")
        .context("the second message's bytes are in the first segment")?;
    bytes[at] ^= 0x20;
    std::fs::write(&segment, &bytes)?;

    // The start is refused, naming the file and what to do.
    let mut child = Command::new(mailward_bin()?)
        .args(["run", "--config"])
        .arg(daemon.config_path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let status = wait_until(
        "a start on a damaged spool to end",
        Duration::from_secs(30),
        || Ok(child.try_wait()?),
    )?;
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().context("stderr")?, &mut stderr)?;
    ensure!(
        !status.success()
            && stderr.contains(&segment.display().to_string())
            && stderr.contains("move the file aside")
            && stderr.contains("mailward queue salvage FILE"),
        "a start on a damaged segment must fail, naming it ({status}):\n{stderr}"
    );

    // The operator moves it aside and starts: mail flows, the later
    // messages are queued, the first three are not.
    let aside = dir.path().join("aside");
    std::fs::create_dir_all(&aside)?;
    let moved = aside.join(segment.file_name().context("segment name")?);
    std::fs::rename(&segment, &moved)?;
    daemon.restart()?;
    let mut queued = daemon.queue_ids()?;
    queued.sort();
    let mut want = later.to_vec();
    want.sort();
    ensure!(
        queued == want,
        "queue after moving the file aside: {queued:?}, want {want:?}"
    );
    let moved_arg = moved.display().to_string();
    let refused = daemon.cli(&["queue", "salvage", &moved_arg])?;
    ensure!(
        refused.status.code() == Some(75)
            && output_text(&refused).contains("stop it first (salvage works offline"),
        "salvage beside a running gateway must be refused with 75:\n{}",
        output_text(&refused)
    );
    daemon.sigterm()?;

    // A dry run says what comes back and what is lost, and writes nothing.
    let dry = daemon.cli_ok(&["queue", "salvage", &moved_arg, "--dry-run"])?;
    let section = |text: &str, title: &str| -> String {
        text.split(title)
            .nth(1)
            .map(|rest| {
                rest.lines()
                    .skip(1)
                    .take_while(|l| l.starts_with("  "))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    };
    let back = section(&dry, "Back in the queue");
    let lost = section(&dry, "Lost in the damage");
    ensure!(
        dry.contains("Dry run: nothing written.")
            && back.contains(&first[0])
            && back.contains(&first[2])
            && !back.contains(&first[1])
            && lost.contains(&first[1])
            && lost.contains("a@sender.test -> b@example.com"),
        "dry run (back: {}, {}; lost: {}):\n{dry}",
        first[0],
        first[2],
        first[1]
    );
    ensure!(!segment.exists(), "a dry run wrote {}", segment.display());

    // walkAZ F2: a configuration whose data directory has no spool is the
    // configuration's problem, said at its key with 64.
    let elsewhere = dir.join("elsewhere.toml");
    std::fs::write(
        &elsewhere,
        format!(
            "[server]\nhostname = \"gw.test\"\ndata_dir = \"{}\"\n",
            dir.join("no-data").display()
        ),
    )?;
    let wrong = Command::new(mailward_bin()?)
        .args(["queue", "salvage", &moved_arg, "--config"])
        .arg(&elsewhere)
        .output()?;
    let said = String::from_utf8_lossy(&wrong.stderr);
    ensure!(
        wrong.status.code() == Some(64)
            && said.starts_with(&format!(
                "{}:3: server.data_dir: there is no spool at ",
                elsewhere.display()
            )),
        "salvage with a data directory without a spool ({:?}):\n{said}",
        wrong.status
    );

    let done = daemon.cli_ok(&["queue", "salvage", &moved_arg])?;
    ensure!(
        done.contains(&format!("Wrote {}.", segment.display()))
            && done.contains("Queue: 2 message(s) before, 4 after."),
        "salvage:\n{done}"
    );

    // The next hop comes up: the four intact messages arrive, the damaged
    // one does not.
    let sink = Sink::start_with(dir.path(), "sink", next_hop, &[])?;
    daemon.restart()?;
    daemon.queue_flush()?;
    let messages = sink.wait_for_count(4, DELIVERY_TIMEOUT)?;
    let mut got: Vec<String> = messages.iter().flat_map(|m| m.queue_ids()).collect();
    got.sort();
    let mut want = vec![
        first[0].clone(),
        first[2].clone(),
        later[0].clone(),
        later[1].clone(),
    ];
    want.sort();
    ensure!(got == want, "delivered {got:?}, want {want:?}");
    if sink.settle(Duration::from_secs(3))?.len() != 4 {
        bail!(
            "more than the four intact messages arrived: {:?}",
            sink.files()
        );
    }
    Ok(())
}
