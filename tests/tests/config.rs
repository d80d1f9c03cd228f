//! Configuration errors as an operator meets them: `check-config` lists
//! every problem as `FILE:LINE: key: problem`, `run` refuses a bad file
//! with exit status 64, and the embedded default is commented and valid.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use mailward_e2e::daemon::mailward_bin;
use mailward_e2e::tools::output_text;
use mailward_e2e::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Runs `mailward ARGS` in `dir`, giving up after 30 seconds.
fn mailward(dir: &TestDir, args: &[&str]) -> Result<Output> {
    let mut child = Command::new(mailward_bin()?)
        .args(args)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = child.id();
    wait_until(
        &format!("`mailward {}` to exit", args.join(" ")),
        Duration::from_secs(30),
        || Ok(child.try_wait()?),
    )
    .inspect_err(|_| {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    })?;
    Ok(child.wait_with_output()?)
}

/// (line, key) of each mistake in `config/several-problems.toml`.
const PROBLEMS: &[(u32, &str)] = &[
    (7, "server.hostnmae"),
    (10, "network.listen_on"),
    (12, "network.relay_networks"),
    (15, "access.connect_rules"),
    (18, "limits.max_message_size"),
    (21, "timeouts.min_backoff"),
];

/// Checks that `text` has a `FILE:LINE: key: problem` line for each of
/// PROBLEMS.
fn assert_every_problem(text: &str, file: &str) -> Result<()> {
    let mut missing = Vec::new();
    for (line, key) in PROBLEMS {
        let prefix = format!("{file}:{line}: {key}: ");
        if !text
            .lines()
            .any(|l| l.starts_with(&prefix) && l.len() > prefix.len())
        {
            missing.push(prefix);
        }
    }
    ensure!(
        missing.is_empty(),
        "missing problem lines {missing:#?} in:\n{text}"
    );
    Ok(())
}

#[test]
fn check_config_reports_every_problem_with_file_and_line() -> Result<()> {
    let dir = TestDir::new("check-config")?;
    let file = resource("config/several-problems.toml")
        .display()
        .to_string();
    let out = mailward(&dir, &["check-config", "--config", &file])?;
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert_every_problem(&output_text(&out), &file)
}

#[test]
fn check_config_reports_a_toml_syntax_error_with_its_line() -> Result<()> {
    let dir = TestDir::new("check-syntax")?;
    let file = resource("config/toml-syntax-error.toml")
        .display()
        .to_string();
    let out = mailward(&dir, &["check-config", "--config", &file])?;
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with(&format!("{file}:5: "))),
        "no {file}:5: line in:\n{text}"
    );
    Ok(())
}

#[test]
fn check_config_warns_of_a_user_this_machine_lacks() -> Result<()> {
    // A valid file that names a user and group nobody created: still
    // valid (exit 0, it may be meant for another machine), but the
    // operator hears about it with the line, before `run` refuses as root.
    let dir = TestDir::new("check-user")?;
    let file = dir.path().join("m.toml");
    std::fs::write(
        &file,
        "[server]\nhostname = \"gw.test\"\nuser = \"mw-nobody-here\"\ngroup = \"mw-no-group\"\n",
    )?;
    let file = file.display().to_string();
    let out = mailward(&dir, &["check-config", "--config", &file])?;
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("configuration is valid"), "{text}");
    for (line, key, name) in [
        (3, "server.user", "mw-nobody-here"),
        (4, "server.group", "mw-no-group"),
    ] {
        let prefix = format!("{file}:{line}: warning: {key}: there is no ");
        assert!(
            text.lines()
                .any(|l| l.starts_with(&prefix) && l.contains(&format!("{name:?}"))),
            "no {prefix}... line in:\n{text}"
        );
    }
    // An account the machine has gives no warning.
    std::fs::write(
        dir.path().join("root.toml"),
        "[server]\nuser = \"root\"\nhostname = \"mx1.mailward.test\"\npostmaster = \"postmaster@mailward.test\"\n",
    )?;
    let root = dir.path().join("root.toml").display().to_string();
    let out = mailward(&dir, &["check-config", "--config", &root])?;
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(!text.contains("warning"), "{text}");
    Ok(())
}

/// walkN 4: a gateway set up by the package's steps kept the default's
/// `gw.example.com` and `postmaster@example.com`: check-config says so
/// (a warning: the file is valid).
#[test]
fn check_config_warns_about_the_example_names_left_in_place() -> Result<()> {
    let dir = TestDir::new("check-example-names")?;
    let file = dir.path().join("m.toml");
    std::fs::write(&file, "[server]\nuser = \"root\"\n")?;
    let file = file.display().to_string();
    let out = mailward(&dir, &["check-config", "--config", &file])?;
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    for key in [
        "server.hostname: gw.example.com",
        "server.postmaster: postmaster@example.com",
    ] {
        assert!(
            text.lines()
                .any(|l| l.contains(": warning: ") && l.contains(key)),
            "no warning about {key} in:\n{text}"
        );
    }
    Ok(())
}

#[test]
fn run_refuses_a_bad_config_with_exit_64() -> Result<()> {
    let dir = TestDir::new("run-bad-config")?;
    let file = resource("config/several-problems.toml")
        .display()
        .to_string();
    let out = mailward(&dir, &["run", "--config", &file])?;
    assert_eq!(out.status.code(), Some(64), "{}", output_text(&out));
    assert_every_problem(&output_text(&out), &file)
}

/// walkF: `status --json` printed nothing when the configuration could not
/// be read, so a monitoring script's `jq` had no object to judge.
#[test]
fn status_json_reports_an_unreadable_config_as_json() -> Result<()> {
    let dir = TestDir::new("status-json-bad-config")?;
    let file = dir.path().join("missing.toml").display().to_string();
    let out = mailward(&dir, &["status", "--json", "--config", &file])?;
    assert_eq!(out.status.code(), Some(64), "{}", output_text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("stdout is not JSON: {}", output_text(&out)))?;
    assert_eq!(v["running"], serde_json::Value::Null, "{v}");
    let problem = v["problems"][0].as_str().unwrap_or_default();
    ensure!(
        problem.starts_with(&format!("{file}: cannot read the configuration")),
        "{v}"
    );
    Ok(())
}

#[test]
fn run_exits_71_when_the_system_refuses_what_check_config_accepts() -> Result<()> {
    // walkF: a log file that cannot be opened exited 64 ("invalid
    // configuration") although check-config called the file valid; and
    // a port in use said nothing of what to do.
    let dir = TestDir::new("run-refused")?;
    let holder = std::net::TcpListener::bind("127.0.0.1:0")?;
    let taken = holder.local_addr()?.port();
    let base = Config::new(dir.path());
    let log = base
        .clone()
        .set_str("log", "destination", "file:/proc/no-such-dir/mailward.log")
        .render();
    let port = base
        .set("network", "listen_on", &format!("[\"127.0.0.1:{taken}\"]"))
        .render();
    for (name, text, wanted) in [
        ("log.toml", log, "check log.destination"),
        ("port.toml", port, "another program holds it (`ss -ltnp"),
    ] {
        let file = dir.join(name);
        std::fs::write(&file, text)?;
        let path = file.display().to_string();
        let check = mailward(&dir, &["check-config", "--config", &path])?;
        assert_eq!(check.status.code(), Some(0), "{}", output_text(&check));
        let out = mailward(&dir, &["run", "--config", &path])?;
        let text = output_text(&out);
        assert_eq!(out.status.code(), Some(71), "{name}: {text}");
        assert!(text.contains(wanted), "{name}: no {wanted:?} in:\n{text}");
    }
    drop(holder);
    Ok(())
}

/// walkAW F23: a listener certificate that is not PEM made `run` say
/// only `TLS: ...` and exit 71, as for a port in use; it is the
/// configuration naming the wrong file: said at its key and line, 64.
#[test]
fn run_names_the_key_of_a_certificate_that_is_not_pem() -> Result<()> {
    let dir = TestDir::new("run-bad-cert")?;
    let cert = dir.join("cert.der");
    let key = dir.join("key.pem");
    std::fs::write(&cert, [0x30u8, 0x82, 0x01, 0x0a, 0x02])?;
    std::fs::write(&key, "not a key\n")?;
    let file = dir.join("tls.toml");
    let text = Config::new(dir.path())
        .set_str("network", "tls_certificate", &cert.display().to_string())
        .set_str("network", "tls_key", &key.display().to_string())
        .render();
    let line = text
        .lines()
        .position(|l| l.starts_with("tls_certificate"))
        .map(|n| n + 1)
        .context("no tls_certificate line")?;
    std::fs::write(&file, text)?;
    let path = file.display().to_string();
    let out = mailward(&dir, &["run", "--config", &path])?;
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(64), "{text}");
    let wanted = format!(
        "{path}:{line}: network.tls_certificate: {}: no certificate found",
        cert.display()
    );
    assert!(text.contains(&wanted), "no {wanted:?} in:\n{text}");
    // check-config says the same of the same line.
    let check = mailward(&dir, &["check-config", "--config", &path])?;
    assert!(
        output_text(&check).contains(&format!("{path}:{line}: network.tls_certificate: ")),
        "{}",
        output_text(&check)
    );
    // walkAZ F6, F7: a good certificate with a key that is not one, or
    // the key of another certificate: said at tls_key, both by run and
    // check-config, naming both files for a mismatch.
    let good = TestDir::new("run-bad-cert-good")?;
    let (good_cert, _) = mailward_e2e::tools::self_signed(good.path(), "mw.test")?;
    let other = TestDir::new("run-bad-cert-other")?;
    let (_, other_key) = mailward_e2e::tools::self_signed(other.path(), "other.test")?;
    for (key_file, wanted) in [
        (
            key.display().to_string(),
            "no private key found".to_string(),
        ),
        (
            other_key.clone(),
            format!("{other_key}: this key does not belong to the certificate in {good_cert}"),
        ),
    ] {
        let text = Config::new(dir.path())
            .set_str("network", "tls_certificate", &good_cert)
            .set_str("network", "tls_key", &key_file)
            .render();
        let line = text
            .lines()
            .position(|l| l.starts_with("tls_key"))
            .map(|n| n + 1)
            .context("no tls_key line")?;
        std::fs::write(&file, text)?;
        let at = format!("{path}:{line}: network.tls_key: ");
        for args in [
            &["run", "--config", &path][..],
            &["check-config", "--config", &path],
        ] {
            let out = mailward(&dir, args)?;
            let said = output_text(&out);
            assert!(
                said.contains(&at) && said.contains(&wanted),
                "{args:?}: no {at:?} ... {wanted:?} in:\n{said}"
            );
        }
    }
    Ok(())
}

#[test]
fn milter_listen_problems_do_not_offer_no_milter() -> Result<()> {
    // walkA finding 5: `mailward milter --listen ""` was told it could give
    // "" for no milter, and was then refused for it.
    let dir = TestDir::new("milter-listen")?;
    for bad in ["", "inet:127.0.0.1:10031"] {
        let out = mailward(&dir, &["milter", "--listen", bad])?;
        let text = output_text(&out);
        assert_eq!(out.status.code(), Some(64), "{bad:?}: {text}");
        assert!(
            text.contains(&format!(
                "mailward milter: --listen: expected \"inet:10031@127.0.0.1\", \"inet6:10031@[::1]\" \
                 or \"unix:/run/mailward/milter.sock\", got {bad:?}"
            )),
            "{bad:?}: {text}"
        );
        assert!(!text.contains("for no milter"), "{bad:?}: {text}");
    }
    Ok(())
}

#[test]
fn default_config_is_commented_and_valid() -> Result<()> {
    let dir = TestDir::new("default-config")?;
    let out = mailward(&dir, &["config", "default"])?;
    ensure!(out.status.success(), "{}", output_text(&out));
    let text = String::from_utf8(out.stdout)?;
    for section in [
        "[server]",
        "[network]",
        "[access]",
        "[limits]",
        "[timeouts]",
        "[[route]]",
        "[policy]",
        "[metrics]",
        "[agentx]",
        "[log]",
    ] {
        assert!(
            text.lines().any(|l| l.trim() == section),
            "no {section} in the default"
        );
    }
    let comments = text
        .lines()
        .filter(|l| l.trim_start().starts_with('#'))
        .count();
    let keys = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && l.contains(" = "))
        .count();
    assert!(comments >= keys, "{comments} comment lines for {keys} keys");

    let file = dir.join("default.toml");
    std::fs::write(&file, &text)?;
    let file = file.display().to_string();
    let check = mailward(&dir, &["check-config", "--config", &file])?;
    assert_eq!(check.status.code(), Some(0), "{}", output_text(&check));
    Ok(())
}

#[test]
fn the_test_config_is_valid() -> Result<()> {
    let dir = TestDir::new("test-config")?;
    let config = Config::new(dir.path()).route_to_port("*", 2526);
    std::fs::write(config.path(), config.render())?;
    let file = config.path().display().to_string();
    let out = mailward(&dir, &["check-config", "--config", &file]).context("check-config")?;
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    Ok(())
}

/// walkAL 5: `limits.long_lines` takes "refuse" or "split"; anything
/// else is named with its file, line and key, and `run` refuses it.
#[test]
fn a_bad_long_lines_value_is_reported_with_file_line_and_key() -> Result<()> {
    let dir = TestDir::new("long-lines-value")?;
    let file = dir.join("m.toml");
    std::fs::write(
        &file,
        "[server]\nuser = \"root\"\n\n[limits]\nmax_hops = 30\nlong_lines = \"wrap\"\n",
    )?;
    let file = file.display().to_string();
    let expected =
        format!("{file}:6: limits.long_lines: expected \"refuse\" or \"split\", got \"wrap\"");
    let out = mailward(&dir, &["check-config", "--config", &file])?;
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    ensure!(
        text.lines().any(|l| l == expected),
        "no {expected:?} in:\n{text}"
    );
    let out = mailward(&dir, &["run", "--config", &file])?;
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(64), "{text}");
    ensure!(
        text.lines().any(|l| l == expected),
        "no {expected:?} in:\n{text}"
    );
    // Both values are taken.
    for value in ["refuse", "split"] {
        std::fs::write(
            &file,
            format!("[server]\nuser = \"root\"\n\n[limits]\nlong_lines = \"{value}\"\n"),
        )?;
        let out = mailward(&dir, &["check-config", "--config", &file])?;
        assert_eq!(out.status.code(), Some(0), "{value}: {}", output_text(&out));
    }
    Ok(())
}

/// walkAU F7: `network.xforward_hosts` is in `mailward config default`
/// with its comment, a bad value is named with its file, line and key,
/// and a network wider than one host is a warning (any machine in it
/// could set the client SPF and the Received line are computed from).
#[test]
fn xforward_hosts_is_documented_checked_and_warned_of_when_wide() -> Result<()> {
    let dir = TestDir::new("xforward-hosts")?;
    let out = mailward(&dir, &["config", "default"])?;
    let text = String::from_utf8(out.stdout)?;
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("xforward_hosts = "))
        .context("xforward_hosts in the default")?;
    ensure!(
        lines[at] == r#"xforward_hosts = ["127.0.0.0/8", "::1/128"]"#
            && lines[at - 1].starts_with('#'),
        "{}",
        lines[at.saturating_sub(3)..=at].join("\n")
    );
    let file = dir.join("m.toml");
    let check = |body: &str| -> Result<(Option<i32>, String)> {
        std::fs::write(
            &file,
            format!("[server]\nuser = \"root\"\nhostname = \"mx1.mailward.test\"\npostmaster = \"postmaster@mailward.test\"\n\n[network]\n{body}\n"),
        )?;
        let out = mailward(
            &dir,
            &["check-config", "--config", &file.display().to_string()],
        )?;
        Ok((out.status.code(), output_text(&out)))
    };
    let name = file.display().to_string();
    let (code, text) = check("xforward_hosts = [\"not-a-net\"]")?;
    ensure!(code == Some(1), "{text}");
    let prefix = format!("{name}:7: network.xforward_hosts: ");
    ensure!(
        text.lines().any(|l| l.starts_with(&prefix)),
        "no {prefix} in:\n{text}"
    );
    let (code, text) = check("xforward_hosts = [\"192.168.10.0/24\"]")?;
    ensure!(code == Some(0), "{text}");
    let prefix = format!(
        "{name}:7: warning: network.xforward_hosts: 192.168.10.0/24 is wider than one host"
    );
    ensure!(
        text.lines().any(|l| l.starts_with(&prefix)),
        "no {prefix} in:\n{text}"
    );
    let (code, text) = check("xforward_hosts = [\"192.168.10.5\", \"::1\"]")?;
    ensure!(code == Some(0) && !text.contains("warning"), "{text}");
    Ok(())
}
