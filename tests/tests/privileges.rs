//! Giving up root, as an operator checks it: started as root with
//! `[server] user`, the daemon runs with that user's uid and gid (real,
//! effective, saved and filesystem ids, and no supplementary groups of
//! root's), everything it wrote under data_dir is that user's and closed
//! to others, the admin socket is 0660 to the group, and a local user
//! outside the group can neither read spooled mail nor use the admin
//! socket, while one inside the group can. Started as root without `user`,
//! or with a user that does not exist, it refuses with exit 64 and says
//! what to set.
//!
//! The test makes two system users (`mw-e2e`, the daemon's, and
//! `mw-e2e-out`, an outsider) with `useradd` when they are missing, and
//! runs commands as them with util-linux's `setpriv`. It needs root.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use mailward_e2e::daemon::mailward_bin;
use mailward_e2e::stats::StatsSetup;
use mailward_e2e::tools::{is_root, output_text, require};
use mailward_e2e::*;

const USER: &str = "mw-e2e";
const OUTSIDER: &str = "mw-e2e-out";

fn id_of(flag: &str, name: &str) -> Result<u32> {
    let out = Command::new("id").args([flag, name]).output()?;
    ensure!(
        out.status.success(),
        "id {flag} {name}: {}",
        output_text(&out)
    );
    Ok(String::from_utf8(out.stdout)?.trim().parse()?)
}

/// Makes a system user with its own group when it is missing.
fn ensure_user(name: &str) -> Result<(u32, u32)> {
    // The tests of this file run on parallel threads and each makes the
    // user on a fresh machine: two useradd at once, and the loser failed
    // on the lock of /etc/passwd before the winner had written it (seen
    // once in a full run). One at a time here; other test binaries run
    // after this one.
    static MAKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = MAKING.lock().unwrap_or_else(|p| p.into_inner());
    if id_of("-u", name).is_err() {
        let useradd = require("useradd", "passwd")?;
        let out = Command::new(useradd)
            .args(["--system", "--user-group", "--no-create-home"])
            .args(["--shell", "/usr/sbin/nologin", name])
            .output()?;
        // Two test binaries may race to make it; the loser finds it made.
        if !out.status.success() && id_of("-u", name).is_err() {
            bail!("useradd {name}: {}", output_text(&out));
        }
    }
    Ok((id_of("-u", name)?, id_of("-g", name)?))
}

/// Runs `program args` as `user` with group `group` and no other group.
fn as_user(user: &str, group: &str, program: &Path, args: &[&str]) -> Result<Output> {
    let setpriv = require("setpriv", "util-linux")?;
    Ok(Command::new(setpriv)
        .arg(format!("--reuid={user}"))
        .arg(format!("--regid={group}"))
        .arg("--clear-groups")
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .output()?)
}

/// The numbers after `key:` in /proc/PID/status.
fn status_ids(pid: u32, key: &str) -> Result<Vec<u32>> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{key}:")))
        .with_context(|| format!("no {key} in /proc/{pid}/status"))?;
    Ok(line[key.len() + 1..]
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect())
}

#[test]
fn root_switches_to_the_user_and_outsiders_stay_out() -> Result<()> {
    ensure!(
        is_root(),
        "this test starts mailward as root and makes system users: run it as root (tests/run does)"
    );
    let (uid, gid) = ensure_user(USER)?;
    ensure_user(OUTSIDER)?;
    let dir = TestDir::new("privileges")?;
    // The user must reach data_dir through the test directory.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))?;
    let config = Config::new(dir.path())
        .set_str("server", "user", USER)
        // Kept in the spool: the next hop never answers.
        .route_to_port("*", free_port());
    let daemon = Daemon::start(&config)?;
    let pid = daemon.pid().context("pid")?;
    ensure!(
        status_ids(pid, "Uid")? == [uid; 4],
        "uids (real, effective, saved, fs): {:?}, want {uid}",
        status_ids(pid, "Uid")?
    );
    ensure!(
        status_ids(pid, "Gid")? == [gid; 4],
        "gids: {:?}, want {gid}",
        status_ids(pid, "Gid")?
    );
    let groups = status_ids(pid, "Groups")?;
    ensure!(
        groups.iter().all(|g| *g == gid),
        "no supplementary group but the user's: {groups:?}"
    );
    ensure!(
        daemon.log().contains("switched to the unprivileged user"),
        "{}",
        daemon.log()
    );

    let mut c = SmtpClient::connect_ok(daemon.port)?;
    c.ehlo("client.test")?;
    let id = c.send_mail_ok(
        "a@sender.test",
        &["b@example.com"],
        b"Subject: secret\r\n\r\nThe secret.\r\n",
    )?;
    c.quit();

    // Everything under data_dir is the user's and closed to others.
    let data = config.data_dir();
    let mut files = Vec::new();
    let mut dirs = vec![data.clone()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            let meta = std::fs::symlink_metadata(&p)?;
            ensure!(
                meta.uid() == uid,
                "{} belongs to uid {}, not {uid}",
                p.display(),
                meta.uid()
            );
            let mode = meta.permissions().mode() & 0o777;
            ensure!(
                mode & 0o007 == 0,
                "{} is open to others: {mode:o}",
                p.display()
            );
            if meta.is_dir() {
                dirs.push(p);
            } else {
                files.push(p);
            }
        }
    }
    let socket = data.join("admin.sock");
    let meta = std::fs::metadata(&socket)?;
    ensure!(
        meta.permissions().mode() & 0o777 == 0o660 && meta.gid() == gid,
        "admin socket: mode {:o}, gid {}",
        meta.permissions().mode() & 0o777,
        meta.gid()
    );
    let spooled = files
        .iter()
        .find(|p| {
            std::fs::read(p)
                .map(|b| b.windows(11).any(|w| w == b"The secret."))
                .unwrap_or(false)
        })
        .context("the message is somewhere in the spool")?;

    // The outsider: no mail, no admin socket.
    let cat = require("cat", "coreutils")?;
    let out = as_user(OUTSIDER, OUTSIDER, &cat, &[&spooled.display().to_string()])?;
    ensure!(
        !out.status.success() && output_text(&out).contains("Permission denied"),
        "an outsider read the spool: {}",
        output_text(&out)
    );
    let bin = mailward_bin()?;
    let config = daemon.config_path().display().to_string();
    let out = as_user(
        OUTSIDER,
        OUTSIDER,
        &bin,
        &["queue", "list", "--config", &config],
    )?;
    ensure!(
        !out.status.success() && output_text(&out).contains("ermission denied"),
        "an outsider used the admin socket: {}",
        output_text(&out)
    );
    // The same person given the group may.
    wait_until("the message in the queue", DELIVERY_TIMEOUT, || {
        Ok(daemon.queue_ids()?.contains(&id).then_some(()))
    })?;
    let out = as_user(
        OUTSIDER,
        USER,
        &bin,
        &["queue", "list", "--config", &config],
    )?;
    ensure!(
        out.status.success() && output_text(&out).contains(&id),
        "a member of the group lists the queue: {}",
        output_text(&out)
    );
    Ok(())
}

#[test]
fn a_log_directory_the_user_cannot_write_costs_no_line() -> Result<()> {
    // Started as root, Mailward gives the log file to the user but not its
    // directory (it may be /var/log itself): rotating there would fail.
    // It says so at start, and lines go on past rotate_size, none lost.
    ensure!(
        is_root(),
        "this test starts mailward as root and makes a system user: run it as root (tests/run does)"
    );
    ensure_user(USER)?;
    let dir = TestDir::new("privileges-log")?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))?;
    let logs = dir.join("logs");
    std::fs::create_dir(&logs)?;
    std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o755))?;
    let log = logs.join("mailward.log");
    let stats = StatsSetup::new(dir.path());
    let config = stats
        .apply(Config::new(dir.path()))
        .set_str("server", "user", USER)
        .set_str("log", "destination", &format!("file:{}", log.display()))
        .set_str("log", "rotate_size", "2KiB")
        .route_to_port("*", free_port());
    let daemon = Daemon::start(&config)?;
    let mut c = SmtpClient::connect_ok(daemon.port)?;
    c.ehlo("client.test")?;
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(c.send_mail_ok(
            "a@sender.test",
            &["b@example.com"],
            format!("Subject: n{i}\r\n\r\nBody {i}.\r\n").as_bytes(),
        )?);
    }
    c.quit();
    // Twelve messages in a burst keep the log writer busy: it lingers
    // 2 ms per batch, so the last lines may land just after the last 250.
    let text = wait_until(
        "a \"Message accepted.\" line for each message",
        Duration::from_secs(10),
        || {
            let text = std::fs::read_to_string(&log)?;
            let all = ids.iter().all(|id| {
                text.lines()
                    .any(|l| l.contains("Message accepted.") && l.contains(id.as_str()))
            });
            Ok(all.then_some(text))
        },
    )
    .with_context(|| format!("{}:\n{}", log.display(), tools::tail(&log, 80)))?;
    ensure!(
        text.contains("The log file cannot be rotated by the unprivileged user"),
        "no warning at start in:\n{text}"
    );
    ensure!(
        text.len() > 2048,
        "the log stopped at {} bytes:\n{text}",
        text.len()
    );
    for id in &ids {
        ensure!(
            text.lines()
                .any(|l| l.contains("Message accepted.") && l.contains(id.as_str())),
            "no \"Message accepted.\" line for {id} in:\n{text}"
        );
    }
    ensure!(
        !logs.join("mailward.log.1").exists(),
        "rotated in a directory the user cannot write?"
    );
    // The failed rotations are counted, for an alert before the disk fills.
    let m = stats.scrape()?;
    let failed = m.get("mailward_log_rotation_failures_total", &[("file", "log")]);
    ensure!(
        failed.is_some_and(|n| n >= 1.0),
        "mailward_log_rotation_failures_total{{file=\"log\"}} = {failed:?}, expected at least 1"
    );
    let raw = m.get("mailward_log_rotation_failures_total", &[("file", "raw")]);
    ensure!(
        raw == Some(0.0),
        "mailward_log_rotation_failures_total{{file=\"raw\"}} = {raw:?}, expected 0 (no raw records file)"
    );
    Ok(())
}

#[test]
fn root_without_a_user_or_with_an_unknown_one_is_refused() -> Result<()> {
    ensure!(
        is_root(),
        "this test starts mailward as root: run it as root"
    );
    let dir = TestDir::new("privileges-refused")?;
    let config = Config::new(dir.path()).render();
    let bin = mailward_bin()?;
    for (text, wanted) in [
        (
            config
                .lines()
                .filter(|l| !l.starts_with("user = "))
                .collect::<Vec<_>>()
                .join("\n"),
            "server.user is not set: set [server] user = \"mailward\"",
        ),
        (
            config.replace("user = \"root\"", "user = \"no-such-user-mw\""),
            "server.user: there is no user \"no-such-user-mw\"",
        ),
    ] {
        let path = dir.join("refused.toml");
        std::fs::write(&path, &text)?;
        let out = Command::new(&bin)
            .args(["run", "--config"])
            .arg(&path)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .output()?;
        let said = output_text(&out);
        ensure!(out.status.code() == Some(64), "exit 64: {said}");
        ensure!(said.contains(wanted), "{said}");
        ensure!(
            !dir.join("data").exists(),
            "nothing is made before the refusal"
        );
        // walkAC F0b: check-config said "configuration is valid" and no
        // more for a file that run, as root, refuses: it says why now.
        let out = Command::new(&bin)
            .args(["check-config", "--config"])
            .arg(&path)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .output()?;
        let said = output_text(&out);
        ensure!(
            said.contains(wanted) && said.contains("mailward run refuses to start as root here"),
            "check-config warns about what run refuses ({wanted}): {said}"
        );
    }
    Ok(())
}

/// walkBJ F1: a TLS key only root may read (0600 root, as in
/// /etc/ssl/private): `check-config` run by root read it and said valid,
/// then `run`, switched to the user, stopped with a bare "Permission
/// denied". Both say now who cannot read it and what to change, and the
/// key made readable to the user's group is taken.
#[test]
fn a_tls_key_the_user_cannot_read_is_said_before_the_start() -> Result<()> {
    ensure!(is_root(), "this test makes system users: run it as root");
    ensure_user(USER)?;
    let dir = TestDir::new("privileges-tls")?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))?;
    let (cert, key) = mailward_e2e::tools::self_signed(dir.path(), "mx.test")?;
    std::fs::set_permissions(&cert, std::fs::Permissions::from_mode(0o644))?;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
    let config = Config::new(dir.path())
        .set_str("server", "user", USER)
        .set_str("network", "tls_certificate", &cert)
        .set_str("network", "tls_key", &key);
    let path = dir.join("tls.toml");
    std::fs::write(&path, config.render())?;
    let bin = mailward_bin()?;
    let said = |command: &str| -> Result<(Option<i32>, String)> {
        let out = Command::new(&bin)
            .args([command, "--config"])
            .arg(&path)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .output()?;
        Ok((out.status.code(), output_text(&out)))
    };
    let (code, text) = said("check-config")?;
    ensure!(
        code == Some(0)
            && text.contains("mailward run refuses to start with it as root here")
            && text.contains(&format!(
                "network.tls_key: {key}: mailward run switches to {USER} (server.user) and then cannot read it (600 root:root)"
            )),
        "check-config names the key the user cannot read: {text}"
    );
    let (code, text) = said("run")?;
    ensure!(
        code == Some(71)
            && text.contains("Permission denied")
            && text.contains(&format!(
                "mailward runs as {USER}: make the file readable by {USER} or its group"
            )),
        "run says who was refused: {text}"
    );
    // Readable by the user's group: nothing to say.
    let gid = id_of("-g", USER)?;
    std::os::unix::fs::chown(&key, None, Some(gid))?;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640))?;
    let (code, text) = said("check-config")?;
    ensure!(
        code == Some(0) && !text.contains("tls_key"),
        "the key readable by the group: {text}"
    );
    Ok(())
}

#[test]
fn what_root_made_or_restored_does_not_stop_the_user() -> Result<()> {
    // walkF: (1) a raw records file in a directory root made (the log's)
    // could never be created by the user: every record lost, each one
    // counted as written; (2) a second gateway with another user on a
    // running one's data_dir was told to `chown -R` that directory
    // instead of "another Mailward is running" (exit 75); (3) a spool
    // restored as root failed after the switch with a bare "Permission
    // denied".
    ensure!(
        is_root(),
        "this test starts mailward as root and makes system users: run it as root (tests/run does)"
    );
    let (uid, _) = ensure_user(USER)?;
    ensure_user(OUTSIDER)?;
    let dir = TestDir::new("privileges-made")?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))?;
    // As the package's configuration has it: the log file and the raw
    // records in one directory, which nobody made beforehand.
    let logs = dir.join("logs");
    let raw = logs.join("raw.log");
    let stats = StatsSetup::new(dir.path());
    let config = stats
        .apply(Config::new(dir.path()))
        .set_str("server", "user", USER)
        .set_str(
            "log",
            "destination",
            &format!("file:{}", logs.join("mailward.log").display()),
        )
        .set_str("statistics", "raw_destination", &raw.display().to_string())
        .route_to_port("*", free_port());
    let daemon = Daemon::start(&config)?;
    let mut c = SmtpClient::connect_ok(daemon.port)?;
    c.ehlo("client.test")?;
    let id = c.send_mail_ok(
        "a@sender.test",
        &["b@example.com"],
        b"Subject: r\r\n\r\nr\r\n",
    )?;
    c.quit();
    let owner = std::fs::metadata(&logs)?.uid();
    ensure!(
        owner == uid,
        "{} made for uid {owner}, not the user's {uid}",
        logs.display()
    );
    let meta = std::fs::metadata(&raw).with_context(|| format!("no {}", raw.display()))?;
    ensure!(
        meta.uid() == uid,
        "{} belongs to uid {}, not {uid}",
        raw.display(),
        meta.uid()
    );
    let lines = tools::read_settled(&raw)?;
    ensure!(
        lines.contains(id.as_str()),
        "no raw record of {id} in {}:\n{lines}",
        raw.display()
    );
    let m = stats.scrape()?;
    ensure!(
        m.get("mailward_raw_records_total", &[]) == Some(1.0),
        "mailward_raw_records_total = {:?}",
        m.get("mailward_raw_records_total", &[])
    );
    let log = tools::read_settled(&logs.join("mailward.log"))?;
    ensure!(
        !log.contains("cannot be rotated by the unprivileged user"),
        "the directory made for the user should take rotations:\n{log}"
    );

    // A second gateway, another user, the same data_dir (and, as a copied
    // configuration has it, the same log file).
    let log_file = logs.join("mailward.log");
    let log_before = tools::read_settled(&log_file)?;
    let second = Config::new(&dir.join("second"))
        .set_str("server", "user", OUTSIDER)
        .set_str(
            "server",
            "data_dir",
            &config.data_dir().display().to_string(),
        )
        .set_str(
            "log",
            "destination",
            &format!("file:{}", log_file.display()),
        );
    std::fs::create_dir_all(dir.join("second"))?;
    std::fs::write(second.path(), second.render())?;
    let out = Command::new(mailward_bin()?)
        .args(["run", "--config"])
        .arg(second.path())
        .stdin(Stdio::null())
        .output()?;
    let text = output_text(&out);
    ensure!(
        out.status.code() == Some(75) && text.contains("another Mailward") && !text.contains("chown"),
        "a second gateway on a running one's data_dir: exit {:?}, wanted 75 and no chown advice:\n{text}",
        out.status.code()
    );
    // walkAA: the refused start handed the running gateway's log file to
    // its own user (and wrote its refusal there); the running gateway
    // then could not reopen its log after a rotation.
    let owner = std::fs::metadata(&log_file)?.uid();
    ensure!(
        owner == uid,
        "the refused start gave {} to uid {owner}; the running gateway's user is {uid}",
        log_file.display()
    );
    let log_after = tools::read_settled(&log_file)?;
    ensure!(
        !log_after[log_before.len().min(log_after.len())..].contains("another Mailward"),
        "the refused start wrote into the running gateway's log:\n{log_after}"
    );
    drop(daemon);

    // A spool restored as root.
    let spool = config.data_dir().join("spool");
    let out = Command::new("chown")
        .args(["-R", "root:root"])
        .arg(&spool)
        .output()?;
    ensure!(out.status.success(), "chown: {}", output_text(&out));
    let out = Command::new(mailward_bin()?)
        .args(["run", "--config"])
        .arg(config.path())
        .stdin(Stdio::null())
        .output()?;
    let text = output_text(&out);
    ensure!(
        out.status.code() == Some(71)
            && text.contains(&format!("{} belongs to uid 0", spool.display()))
            && text.contains(&format!("chown -R {USER}: {}", spool.display())),
        "a root-owned spool: exit {:?}, wanted 71 naming the chown:\n{text}",
        out.status.code()
    );
    Ok(())
}

#[test]
fn a_salvage_run_as_root_leaves_the_spool_to_the_users_gateway() -> Result<()> {
    // walkAI 1: `mailward queue salvage` run as root (between `systemctl
    // stop` and `start`, as its --help shows) wrote the repaired segment
    // root's, mode 0600: the gateway, as its user, then stopped at its
    // start with a bare "Permission denied" (exit 71).
    ensure!(
        is_root(),
        "this test salvages as root and makes system users: run it as root (tests/run does)"
    );
    let (uid, _) = ensure_user(USER)?;
    let dir = TestDir::new("privileges-salvage")?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))?;
    let config = Config::new(dir.path())
        .set_str("server", "user", USER)
        .route_to_port("*", free_port());
    let mut daemon = Daemon::start(&config)?;
    let mut ids = Vec::new();
    for n in 1..=2 {
        let mut c = SmtpClient::connect_ok(daemon.port)?;
        c.ehlo("client.test")?;
        ids.push(c.send_mail_ok(
            "a@sender.test",
            &["b@example.com"],
            format!("Subject: s\r\n\r\nbody of priv-salvage-{n}\r\n").as_bytes(),
        )?);
        c.quit();
    }
    daemon.sigterm()?;
    daemon.restart()?;
    daemon.sigterm()?;

    // One flipped byte in the second message's bytes; the file moved aside.
    let spool = config.data_dir().join("spool");
    let mut segments: Vec<_> = std::fs::read_dir(&spool)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segments.sort();
    let needle = b"body of priv-salvage-2";
    let (segment, mut bytes) = segments
        .iter()
        .find_map(|p| {
            let b = std::fs::read(p).ok()?;
            b.windows(needle.len())
                .any(|w| w == needle)
                .then(|| (p.clone(), b))
        })
        .context("the second message's bytes are in a segment")?;
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .context("needle")?;
    bytes[at] ^= 0x20;
    let aside = dir.join("aside");
    std::fs::create_dir_all(&aside)?;
    let moved = aside.join(segment.file_name().context("segment name")?);
    std::fs::write(&moved, &bytes)?;
    std::fs::remove_file(&segment)?;

    let out = Command::new(mailward_bin()?)
        .args(["queue", "salvage"])
        .arg(&moved)
        .arg("--config")
        .arg(config.path())
        .stdin(Stdio::null())
        .output()?;
    let text = output_text(&out);
    ensure!(
        out.status.success() && text.contains(&format!("Wrote {}.", segment.display())),
        "salvage as root: exit {:?}:\n{text}",
        out.status.code()
    );
    for written in [segment.clone(), spool.join("salvaged")] {
        let meta = std::fs::metadata(&written)?;
        ensure!(
            meta.uid() == uid,
            "{} belongs to uid {} after a salvage as root, not to the gateway's user {USER} (uid {uid})",
            written.display(),
            meta.uid()
        );
    }
    // The gateway, as its user, starts on it and has the intact message.
    daemon.restart()?;
    let queued = daemon.queue_ids()?;
    ensure!(
        queued.contains(&ids[0]) && !queued.contains(&ids[1]),
        "queue after the salvage: {queued:?}; want {} and not {}",
        ids[0],
        ids[1]
    );
    Ok(())
}
