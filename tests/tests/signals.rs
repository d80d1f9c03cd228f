//! Signals: SIGHUP reloads the config (a broken file is refused, the old
//! config keeps running and mail keeps flowing); SIGTERM stops with exit
//! status 0, tells open sessions 421, and keeps undelivered mail in the
//! spool for the next start.

use std::net::TcpStream;
use std::time::Duration;

use anyhow::Result;
use mailward_e2e::*;

fn greeting_text(port: u16) -> Result<String> {
    Ok(SmtpClient::connect(port)?.banner.to_string())
}

fn send(port: u16) -> Result<String> {
    let mut c = SmtpClient::connect_ok(port)?;
    c.ehlo("client.test")?;
    let id = c.send_mail_ok(
        "alice@sender.test",
        &["bob@example.com"],
        &read_resource("mail/plain.eml")?,
    )?;
    c.quit();
    Ok(id)
}

#[test]
fn sighup_reloads_and_refuses_a_broken_config() -> Result<()> {
    let mut gw = Gateway::start("sighup", |c| c)?;
    send(gw.port())?;
    gw.sink.wait_for_count(1, DELIVERY_TIMEOUT)?;

    // A good change is taken on SIGHUP (new sessions see it).
    let renamed = gw.config.clone().set_str("server", "hostname", "mw2.test");
    gw.daemon.write_config(&renamed.render())?;
    gw.daemon.sighup()?;
    wait_until(
        "the new hostname in the greeting",
        Duration::from_secs(30),
        || Ok((greeting_text(gw.port())? == "220 mw2.test ESMTP Mailward").then_some(())),
    )?;

    // A broken one is refused, with the reason in the log.
    let broken = renamed
        .clone()
        .set_str("server", "hostname", "mw3.test")
        .render()
        + "\n[no_such_section]\nno_such_key = 1\n";
    gw.daemon.refuse_reload_of(&broken, "no_such_section")?;
    assert_eq!(greeting_text(gw.port())?, "220 mw2.test ESMTP Mailward");
    let id = send(gw.port())?;
    let messages = gw.sink.wait_for_count(2, DELIVERY_TIMEOUT)?;
    assert!(
        messages.iter().any(|m| m.queue_ids() == [id.clone()]),
        "mail still flows"
    );
    gw.config = renamed;
    Ok(())
}

/// walkAP F11: `mailward reload` reloads as SIGHUP does and says what
/// came of it, instead of the admin fishing the outcome from the log or
/// `status`: the new file in force when it returns, or every problem as
/// FILE:LINE: key: problem, exit status 1, and the old file still serving.
#[test]
fn the_reload_command_says_whether_the_file_was_taken() -> Result<()> {
    let mut gw = Gateway::start("reload-cli", |c| c)?;
    let file = gw.daemon.config_path().to_path_buf();
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let reload = |gw: &Gateway| -> Result<(Option<i32>, String, String)> {
        let out = gw.daemon.cli(&["reload"])?;
        Ok((
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    };
    let status = |gw: &Gateway| -> Result<serde_json::Value> {
        Ok(serde_json::from_str(
            &gw.daemon.cli_ok(&["status", "--json"])?,
        )?)
    };

    // A good edit: in force when the command returns (no waiting for the
    // log), and said so with the reload count.
    // walkAY T7: with a warning of the new file, printed as check-config
    // prints it (it was only in the log).
    let renamed = gw
        .config
        .clone()
        .set_str("server", "hostname", "mw2.test")
        .set_str("statistics", "write_interval", "500ms");
    gw.daemon.write_config(&renamed.render())?;
    let (code, stdout, stderr) = reload(&gw)?;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stderr.lines().any(|l| l.starts_with('/')
            && l.contains(
                ": warning: statistics.write_interval: 500ms rewrites the statistics file"
            )),
        "{stderr}"
    );
    let first = stdout.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("Reloaded /")
            && first.contains(&name)
            && first.ends_with("(1 reload(s) since the start, 0 refused)."),
        "{stdout}"
    );
    assert!(stdout.contains("Changed: server, statistics."), "{stdout}");
    assert_eq!(greeting_text(gw.port())?, "220 mw2.test ESMTP Mailward");
    let s = status(&gw)?;
    assert_eq!(
        (s["reloads"].as_u64(), s["reload_failures"].as_u64()),
        (Some(1), Some(0)),
        "{s}"
    );

    // A bad edit: refused with the file, line and key of each problem,
    // exit status 1, and the daemon goes on with the previous file.
    let broken = renamed
        .clone()
        .set_str("server", "hostname", "mw3.test")
        .set("limits", "no_such_limit", "1");
    let text = broken.render();
    let line = text
        .lines()
        .position(|l| l.starts_with("no_such_limit"))
        .map(|n| n + 1)
        .unwrap_or_default();
    gw.daemon.write_config(&text)?;
    let (code, stdout, stderr) = reload(&gw)?;
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("reload refused: the daemon keeps running on the previous configuration"),
        "{stderr}"
    );
    let wanted = format!("{name}:{line}: limits.no_such_limit: unknown key");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with('/') && l.ends_with(&wanted)),
        "no line ending {wanted}:\n{stderr}"
    );
    assert!(
        gw.daemon.is_running(),
        "the daemon stopped on a refused reload"
    );
    assert_eq!(greeting_text(gw.port())?, "220 mw2.test ESMTP Mailward");
    let s = status(&gw)?;
    assert_eq!(
        (s["reloads"].as_u64(), s["reload_failures"].as_u64()),
        (Some(1), Some(1)),
        "{s}"
    );
    let id = send(gw.port())?;
    let messages = gw.sink.wait_for_count(1, DELIVERY_TIMEOUT)?;
    assert!(
        messages.iter().any(|m| m.queue_ids() == [id.clone()]),
        "mail still flows after the refusal"
    );
    gw.config = renamed;

    // No daemon: what to do, and the "unreachable" status.
    gw.daemon.sigterm()?;
    let (code, _, stderr) = reload(&gw)?;
    assert_eq!(code, Some(69), "{stderr}");
    assert!(stderr.contains("Is `mailward run` running"), "{stderr}");
    Ok(())
}

/// walkF 19b: a reload that changed a key taking effect only at restart
/// said so once in the log; `mailward status` then looked healthy although
/// the file on disk was not what ran.
#[test]
fn status_names_the_keys_that_wait_for_a_restart() -> Result<()> {
    let mut gw = Gateway::start("restart-pending", |c| {
        c.set("limits", "antiviral_sessions", "2")
    })?;
    let pending = |gw: &Gateway| -> Result<serde_json::Value> {
        Ok(serde_json::from_str(
            &gw.daemon.cli_ok(&["status", "--json"])?,
        )?)
    };
    let changed = gw
        .config
        .clone()
        .set("limits", "antiviral_sessions", "3")
        .set_str("server", "hostname", "mw2.test");
    gw.daemon.write_config(&changed.render())?;
    gw.daemon.sighup()?;
    wait_until(
        "the new hostname in the greeting",
        Duration::from_secs(30),
        || Ok((greeting_text(gw.port())? == "220 mw2.test ESMTP Mailward").then_some(())),
    )?;
    let status = pending(&gw)?;
    let keys = status["restart_pending"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(keys.len(), 1, "{status}");
    let key = keys[0].as_str().unwrap_or_default();
    assert!(
        key.starts_with("limits.antiviral_sessions changed ("),
        "{status}"
    );
    let problems = status["problems"].to_string();
    assert!(
        problems.contains("take effect only at restart") && problems.contains(key),
        "{status}"
    );
    let text = gw.daemon.cli_ok(&["status"])?;
    assert!(text.contains("Restart the daemon"), "{text}");

    // The file put back: nothing waits any more.
    let back =
        changed
            .set_str("server", "hostname", "mw3.test")
            .set("limits", "antiviral_sessions", "2");
    gw.daemon.write_config(&back.render())?;
    gw.daemon.sighup()?;
    wait_until(
        "the third hostname in the greeting",
        Duration::from_secs(30),
        || Ok((greeting_text(gw.port())? == "220 mw3.test ESMTP Mailward").then_some(())),
    )?;
    let status = pending(&gw)?;
    assert_eq!(status["restart_pending"], serde_json::json!([]), "{status}");
    assert!(
        !status["problems"].to_string().contains("restart"),
        "{status}"
    );
    gw.config = back;
    Ok(())
}

/// walkT 3: after a reload that changed server.data_dir, every CLI
/// command asked the new directory's admin socket, which does not exist
/// (the daemon keeps the one it started with until it restarts): `status`
/// said "not running" for a running gateway, and logrotate's `log reopen`
/// failed silently. The CLI now finds the daemon running this file.
#[test]
fn the_cli_finds_the_daemon_after_a_reload_moved_its_data_dir() -> Result<()> {
    cli_finds_the_daemon_after_a_move("moved-data-dir", false)
}

/// walkAC F0a: the same with the embedded default's relative data_dir
/// ("mailward-data"): the daemon bound its socket by the relative name,
/// which /proc/net/unix shows as it is, so the CLI's search (absolute
/// names only) never found it.
#[test]
fn the_cli_finds_the_daemon_after_a_reload_moved_a_relative_data_dir() -> Result<()> {
    cli_finds_the_daemon_after_a_move("moved-relative-data-dir", true)
}

fn cli_finds_the_daemon_after_a_move(name: &str, relative: bool) -> Result<()> {
    // The daemon and the CLI both run in the test directory, where the
    // relative "data" is the harness's data_dir.
    let gw = Gateway::start(name, |c| {
        if relative {
            c.set_str("server", "data_dir", "data")
        } else {
            c
        }
    })?;
    let elsewhere = if relative {
        "otherdata".to_string()
    } else {
        gw.config.dir.join("otherdata").display().to_string()
    };
    let moved = gw
        .config
        .clone()
        .set_str("server", "data_dir", &elsewhere)
        .set_str("server", "hostname", "mw2.test");
    gw.daemon.write_config(&moved.render())?;
    gw.daemon.sighup()?;
    wait_until(
        "the new hostname in the greeting",
        Duration::from_secs(30),
        || Ok((greeting_text(gw.port())? == "220 mw2.test ESMTP Mailward").then_some(())),
    )?;
    let out = gw.daemon.cli(&["status", "--json"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "`mailward status` after the reload exited {}:\n{stderr}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    // walkT 6: a running daemon's object had no "running" at all.
    assert_eq!(status["running"], true, "{status}");
    let pending = status["restart_pending"].to_string();
    assert!(
        pending.contains("server.data_dir changed"),
        "status lists the data_dir change as waiting for a restart: {status}"
    );
    let old_socket = gw.config.data_dir().join("admin.sock");
    assert!(
        stderr.contains("listens at") && stderr.contains(&old_socket.display().to_string()),
        "the CLI says where it found the daemon: {stderr}"
    );
    // Any command, not only status.
    // gw.config keeps the data_dir the daemon runs on, for the teardown.
    gw.daemon.cli_ok(&["queue", "list"])?;
    Ok(())
}

#[test]
fn sigterm_stops_cleanly_and_keeps_undelivered_mail() -> Result<()> {
    let dir = TestDir::new("sigterm")?;
    let next_hop_port = free_port(); // down for now
    let config = Config::new(dir.path()).route_to_port("*", next_hop_port);
    let mut daemon = Daemon::start(&config)?;
    let mut ids = vec![send(daemon.port)?, send(daemon.port)?];

    // An idle session is told 421 when the daemon stops.
    let mut idle = SmtpClient::connect_ok(daemon.port)?;
    idle.ehlo("client.test")?;
    let status = daemon.sigterm()?;
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status}"
    );
    let reply = idle.read_reply();
    assert!(
        matches!(&reply, Ok(r) if r.code == 421 && r.enhanced().is_some_and(|e| e.starts_with("4."))),
        "an open session gets 421 on shutdown, got {reply:?}"
    );
    assert!(
        TcpStream::connect(("127.0.0.1", daemon.port)).is_err(),
        "nothing listens after the stop"
    );

    // The next start delivers what was left.
    let sink = Sink::start_with(dir.path(), "sink", next_hop_port, &[])?;
    daemon.restart()?;
    let messages = sink.wait_for_count(2, DELIVERY_TIMEOUT)?;
    let mut got: Vec<String> = messages.iter().flat_map(|m| m.queue_ids()).collect();
    got.sort();
    ids.sort();
    assert_eq!(got, ids);
    Ok(())
}

#[test]
fn sigterm_stops_even_with_a_client_over_the_per_ip_limit() -> Result<()> {
    let dir = TestDir::new("sigterm-limit")?;
    let config = Config::new(dir.path()).route_to_port("*", free_port()).set(
        "limits",
        "incoming_sessions_per_ip",
        "1",
    );
    let mut daemon = Daemon::start(&config)?;
    let first = SmtpClient::connect_ok(daemon.port)?;
    // Over the limit: refused (or, wrongly, left waiting).
    let second = SmtpClient::connect_with_timeout(daemon.port, Duration::from_secs(5));
    drop(first);
    drop(second);
    let status = daemon.sigterm()?;
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status}"
    );
    Ok(())
}
