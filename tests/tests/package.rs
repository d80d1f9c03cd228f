//! The Debian package as an administrator meets it: `packaging/build-deb.sh`
//! packs the release binary the tests use, `lintian` finds no error, `dpkg
//! -i` installs it (system user, directories, conffile modes), the
//! installed `mailward check-config` accepts the shipped configuration,
//! `systemd-analyze verify` accepts the installed unit, the man pages,
//! completions, MIB and dashboards are where the package says, and `dpkg
//! --purge` takes the user and the directories away again.
//!
//! It installs into this machine's root: run it where that is fine (CI,
//! a test VM). It needs cargo-deb (`cargo install cargo-deb --locked`),
//! Debian's lintian and systemd.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use mailward_e2e::daemon::mailward_bin;
use mailward_e2e::tools::{is_root, output_text, require};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn sh(program: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(program).args(args).output()?;
    let text = output_text(&out);
    ensure!(
        out.status.success(),
        "{} {}: {}\n{text}",
        program.display(),
        args.join(" "),
        out.status
    );
    Ok(text)
}

#[test]
fn the_package_builds_lints_installs_checks_and_purges() -> Result<()> {
    ensure!(
        is_root(),
        "this test installs a package: run it as root (tests/run does)"
    );
    let cargo = require("cargo", "cargo (rustup)")?;
    let probe = Command::new(&cargo).args(["deb", "--version"]).output()?;
    if !probe.status.success() {
        bail!(
            "cargo-deb is missing: cargo install cargo-deb --locked (tests/install-deps.sh does)"
        );
    }
    let lintian = require("lintian", "lintian")?;
    let dpkg = require("dpkg", "dpkg")?;
    let analyze = require("systemd-analyze", "systemd")?;

    // Pack the binary under test (MAILWARD_BIN's target dir).
    let bin = mailward_bin()?;
    let target = bin
        .parent()
        .and_then(Path::parent)
        .context("the binary is not in TARGET/release")?;
    let out = Command::new(workspace().join("packaging/build-deb.sh"))
        .arg("--no-build")
        .env("CARGO_TARGET_DIR", target)
        .current_dir(workspace())
        .output()?;
    let said = output_text(&out);
    ensure!(out.status.success(), "build-deb.sh: {said}");
    let deb = said
        .lines()
        .rev()
        .find(|l| l.trim_end().ends_with(".deb"))
        .map(|l| PathBuf::from(l.trim()))
        .with_context(|| format!("no .deb named in: {said}"))?;

    let lint = Command::new(&lintian).arg(&deb).output()?;
    let lint_text = output_text(&lint);
    let errors: Vec<&str> = lint_text.lines().filter(|l| l.starts_with("E: ")).collect();
    ensure!(errors.is_empty(), "lintian errors:\n{lint_text}");

    // walkN: an upgrade must neither stop nor restart a running gateway
    // (operations.md: check the configuration, then restart). cargo-deb's
    // default restarted it in postinst and stopped it in prerm.
    let control = mailward_e2e::TestDir::new("deb-control")?;
    sh(
        &require("dpkg-deb", "dpkg")?,
        &[
            "-e",
            &deb.display().to_string(),
            &control.path().join("DEBIAN").display().to_string(),
        ],
    )?;
    for script in ["postinst", "prerm"] {
        let text =
            std::fs::read_to_string(control.path().join("DEBIAN").join(script)).unwrap_or_default();
        ensure!(
            !text.contains("try-restart") && !text.contains("restart mailward"),
            "{script} restarts the gateway on upgrade:\n{text}"
        );
        if script == "prerm" {
            ensure!(
                text.contains("\"$1\" = remove") || !text.contains("stop"),
                "prerm stops the gateway on upgrade, not only on remove:\n{text}"
            );
        }
    }

    sh(&dpkg, &["-i", &deb.display().to_string()])?;
    let result = installed_checks(&analyze);
    // An override of the kind operations.md suggests: the purge must take
    // it away with the user it names, or every later dpkg run stops on it
    // (walkBC F10).
    let statoverride = require("dpkg-statoverride", "dpkg")?;
    // The log shipper's override of operations.md, recorded without
    // --update for a directory that is gone: the next configure makes the
    // directory and applies it (walkBD F3: it made nothing, and the daemon
    // could not start).
    let added = sh(
        &statoverride,
        &["--add", "mailward", "adm", "2750", "/var/log/mailward"],
    )
    .and_then(|_| Ok(std::fs::remove_dir("/var/log/mailward")?))
    .and_then(|()| sh(&dpkg, &["-i", &deb.display().to_string()]))
    .and_then(|_| {
        let m = std::fs::metadata("/var/log/mailward")?;
        // adm is GID 4 on every Debian system (base-passwd).
        ensure!(
            m.permissions().mode() & 0o7777 == 0o2750 && m.gid() == 4,
            "the override of /var/log/mailward is applied at configure: gid {} mode {:o}",
            m.gid(),
            m.permissions().mode() & 0o7777
        );
        Ok(())
    });
    let purge = sh(&dpkg, &["--purge", "mailward"]);
    let left = Command::new(&statoverride)
        .args(["--list", "/var/log/mailward"])
        .output()?;
    if left.status.success() {
        // Whatever the outcome, the machine's dpkg must go on working.
        let _ = Command::new(&statoverride)
            .args(["--remove", "/var/log/mailward"])
            .output();
    }
    result?;
    added?;
    let purged = purge?;
    ensure!(
        !left.status.success()
            && purged
                .contains("removed the dpkg-statoverride of /var/log/mailward (mailward adm 2750)"),
        "the purge leaves the override naming mailward:\n{}\n{purged}",
        output_text(&left)
    );
    ensure!(
        Command::new("id").arg("mailward").output()?.status.code() != Some(0),
        "the user mailward is gone after the purge"
    );
    for dir in ["/var/lib/mailward", "/var/log/mailward", "/etc/mailward"] {
        ensure!(!Path::new(dir).exists(), "{dir} is gone after the purge");
    }
    Ok(())
}

fn installed_checks(analyze: &Path) -> Result<()> {
    let mailward = Path::new("/usr/sbin/mailward");
    let said = sh(
        mailward,
        &["check-config", "--config", "/etc/mailward/mailward.toml"],
    )?;
    ensure!(said.contains("configuration is valid"), "{said}");
    let conf = std::fs::metadata("/etc/mailward/mailward.toml")?;
    ensure!(
        conf.permissions().mode() & 0o777 == 0o640,
        "the configuration is 0640, not {:o}",
        conf.permissions().mode() & 0o777
    );
    let uid: u32 = String::from_utf8(Command::new("id").args(["-u", "mailward"]).output()?.stdout)?
        .trim()
        .parse()
        .context("the package makes the user mailward")?;
    for dir in ["/var/lib/mailward", "/var/log/mailward"] {
        let m = std::fs::metadata(dir)?;
        ensure!(
            m.uid() == uid && m.permissions().mode() & 0o777 == 0o750,
            "{dir}: uid {} mode {:o}",
            m.uid(),
            m.permissions().mode() & 0o777
        );
    }
    let unit = "/lib/systemd/system/mailward.service";
    let verify = Command::new(analyze).args(["verify", unit]).output()?;
    ensure!(
        verify.status.success() && output_text(&verify).trim().is_empty(),
        "systemd-analyze verify: {}",
        output_text(&verify)
    );
    for file in [
        "/usr/share/man/man8/mailward.8.gz",
        "/usr/share/man/man8/mailward-queue-list.8.gz",
        "/usr/share/bash-completion/completions/mailward",
        "/usr/share/zsh/vendor-completions/_mailward",
        "/usr/share/fish/vendor_completions.d/mailward.fish",
        "/usr/share/snmp/mibs/MAILWARD-MIB.txt",
        "/usr/share/mailward/dashboards/mailward-overview.json",
        "/etc/logrotate.d/mailward",
    ] {
        ensure!(Path::new(file).is_file(), "{file} is installed");
    }
    // walkBB F5: a DEP-5 copyright with its Files: paragraph, naming the
    // list of the crates linked in, which is there and holds their notices.
    let copyright = std::fs::read_to_string("/usr/share/doc/mailward/copyright")?;
    ensure!(
        copyright
            .contains("\nFiles: *\nCopyright: 2026, Mailward developers\nLicense: Apache-2.0\n")
            && copyright.contains("/usr/share/doc/mailward/bundled-crates.txt.gz"),
        "copyright:\n{copyright}"
    );
    let crates = Command::new("zcat")
        .arg("/usr/share/doc/mailward/bundled-crates.txt.gz")
        .output()?;
    let crates = String::from_utf8_lossy(&crates.stdout);
    ensure!(
        crates.contains("\nyara-x ")
            && crates.contains("\ntokio ")
            // walkBC F6: yara-x ships no licence file in its crate.
            && crates.contains("Copyright (c) 2024. The YARA-X Authors.")
            && !crates.contains("Files: none in the crate\n")
            && crates.contains("Permission is hereby granted, free of charge"),
        "bundled-crates.txt.gz names the crates and holds their licence texts:\n{}",
        crates.chars().take(2000).collect::<String>()
    );
    Ok(())
}
