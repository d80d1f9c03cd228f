//! The signature bases as an operator handles them, with the real net-snmp
//! (snmpd as AgentX master, snmptrapd logging every notification): a
//! gateway started with an empty bases directory installs the built-in
//! default set there (2026.11.24.1, 5 records) and says so in `mailward
//! bases status`, on `/metrics` and over SNMP; `bases update --from DIR`
//! puts a good set in
//! use and says so everywhere (status, /metrics, `snmpget`, mwBasesReloaded
//! and mwUpdateStatus updated(1)); the same set again is notNeeded(2); a
//! broken set (no `released`, no rule file, a rule with a syntax error) is
//! refused with a clear message, error(3), and the bases in use stay;
//! `bases rollback` after a newer set goes back to the older one
//! (rolledBack(4), mwBasesReloaded again); and mail flows throughout.
//!
//! The sets are fixtures in `tests/resources/bases/`. Each problem is
//! collected and all are reported at once, each with what was expected and
//! what was found. Needs the Debian packages snmpd, snmptrapd, snmp,
//! postfix (smtp-sink) and swaks, and the IETF base MIBs in
//! target/mibs-base/ (tests/install-deps.sh installs and fetches them).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use mailward_e2e::failures::Failures;
use mailward_e2e::snmp::{
    parse_date_and_time_hex, parse_date_and_time_text, rfc3339, unix_now, NetSnmp, Trap, ROOT,
};
use mailward_e2e::stats::{Metrics, StatsSetup};
use mailward_e2e::tools::output_text;
use mailward_e2e::*;

/// How long the subtree may take to answer after the daemon greets.
const SUBTREE_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a notification may take to reach snmptrapd.
const TRAP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long `snmpget` may show the old state: the view is served for 1 s
/// (daemon/src/snmp.rs VIEW_TTL) before it is rebuilt.
const VIEW_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a message may take to reach the sink.
const MAIL_TIMEOUT: Duration = Duration::from_secs(20);

/// `mwBasesReloaded` and `mwUpdateStatus`: arcs under mwNotifications.
const BASES_RELOADED: u32 = 5;
const UPDATE_STATUS: u32 = 6;

/// The varbinds of those notifications, relative to the root.
const MW_BASES_RELEASED_0: &str = "1.3.4.0";
const MW_BASES_RECORDS_0: &str = "1.3.5.0";
const MW_UPDATE_LAST_RESULT_0: &str = "1.3.2.0";
const MW_NOTIFY_MESSAGE_0: &str = "1.5.1.0";

/// The label values of `mailward_update_last_result`, with the numbers of
/// MAILWARD-MIB's MwUpdateResult.
const RESULTS: &[(&str, u32, &str)] = &[
    ("updated", 1, "updated"),
    ("not_needed", 2, "notNeeded"),
    ("error", 3, "error"),
    ("rolled_back", 4, "rolledBack"),
    ("unknown", 5, "unknown"),
];

/// A good bases set, with what its manifest says.
struct Set {
    /// Its directory, relative to the workspace.
    dir: &'static str,
    version: &'static str,
    /// `released` of the manifest, in unix seconds.
    released: i64,
    records: u64,
}

/// The built-in default set (bases/default, compiled into the binary):
/// released 2026-11-24T00:00:00Z, 5 records.
const DEFAULT: Set = Set {
    dir: "bases/default",
    version: "2026.11.24.1",
    released: 1_795_478_400,
    records: 5,
};

/// tests/resources/bases/v1: released 2026-11-20T00:00:00Z, 3 records.
const V1: Set = Set {
    dir: "tests/resources/bases/v1",
    version: "2026.11.20.1",
    released: 1_795_132_800,
    records: 3,
};

/// tests/resources/bases/v2: released 2026-11-22T00:00:00Z, 5 records.
const V2: Set = Set {
    dir: "tests/resources/bases/v2",
    version: "2026.11.22.1",
    released: 1_795_305_600,
    records: 5,
};

/// A manifest without `released` (and a rule file).
const BROKEN_MANIFEST: &str = "broken-manifest";

/// A valid manifest and no `.yar` file.
const BROKEN_NO_RULES: &str = "broken-no-rules";

/// A valid manifest and a rule with a syntax error on line 6 of rules.yar.
const BROKEN_RULE_SYNTAX: &str = "broken-rule-syntax";

fn fixture(name: &str) -> PathBuf {
    resource(&format!("bases/{name}"))
}

/// The directory of a good set.
fn set_dir(set: &Set) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .join(set.dir)
}

/// A time as `mailward bases status` prints it (chrono's RFC 3339 in UTC).
fn cli_time(unix: i64) -> String {
    rfc3339(unix).replace('Z', "+00:00")
}

/// A numeric OID under Mailward's root.
fn mw(rel: &str) -> String {
    format!("{ROOT}.{rel}")
}

/// snmptrapd + snmpd, a sink, and a Mailward with /metrics, every
/// notification category, its bases in `DIR/bases/av` (none there before
/// it starts: it installs its built-in default set).
/// Dropped in field order.
struct Rig {
    daemon: Daemon,
    snmp: NetSnmp,
    sink: Sink,
    stats: StatsSetup,
    dir: TestDir,
}

impl Rig {
    fn start() -> Result<Rig> {
        let dir = TestDir::new("bases")?;
        let snmp = NetSnmp::start(dir.path())?;
        let sink = Sink::start(dir.path(), "sink")?;
        let stats = StatsSetup::new(dir.path());
        let av = dir.join("bases").join("av");
        let config = Config::new(dir.path())
            .set_str("bases", "av", &av.display().to_string())
            // The fixtures are of November 2026: not obsolete for years.
            .set_str("bases", "obsolete_after", "3650d")
            .set_str("agentx", "socket", &snmp.agentx_setting())
            .set_str("agentx", "ping_interval", "1s")
            .set_str("agentx", "timeout", "1s")
            .set_list("snmp", "traps", &["config", "admin", "update"])
            .route_to_port("*", sink.port);
        let config = stats.apply(config);
        let daemon = Daemon::start(&config)?;
        let rig = Rig {
            daemon,
            snmp,
            sink,
            stats,
            dir,
        };
        rig.snmp
            .wait_subtree(SUBTREE_TIMEOUT)
            .with_context(|| rig.context())?;
        Ok(rig)
    }

    /// `mailward bases status`, as `key -> value` (`in use`, `previous`,
    /// `obsolete`, `last update`, ...).
    fn status(&self) -> Result<BTreeMap<String, String>> {
        let text = self.daemon.cli_ok(&["bases", "status"])?;
        Ok(text
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect())
    }

    /// `mailward ARGS`: (exit code, stdout, stderr), with the time just
    /// before and just after.
    fn cli(&self, args: &[&str]) -> Result<Outcome> {
        let before = unix_now();
        let out = self.daemon.cli(args)?;
        let after = unix_now();
        Ok(Outcome {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).trim_end().to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim_end().to_string(),
            text: output_text(&out),
            before,
            after,
        })
    }

    fn context(&self) -> String {
        format!(
            "test directory: {}\n----- mailward log -----\n{}\n----- net-snmp -----\n{}",
            self.dir.path().display(),
            self.daemon.log(),
            self.snmp.logs()
        )
    }
}

/// What a CLI command did.
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    /// Both, for messages.
    text: String,
    before: i64,
    after: i64,
}

/// The expected bases in use (`None`: none) after an action, the result
/// of the last update, and when that action ran.
struct Expect<'a> {
    what: &'a str,
    in_use: Option<&'a Set>,
    previous: Option<&'a Set>,
    result: &'a str,
    /// When the last update was attempted: between these (0, 0: never).
    checked: (i64, i64),
    /// When the bases in use were loaded: between these.
    loaded: (i64, i64),
}

/// Checks `bases status`, /metrics and (polling) snmpget against `e`.
fn check_state(f: &mut Failures, rig: &Rig, e: &Expect) {
    let what = e.what;
    let m = match rig.stats.scrape() {
        Ok(m) => m,
        Err(e) => {
            f.push(format!("{what}: scraping /metrics: {e:#}"));
            return;
        }
    };
    let gauge = |name: &str| m.get(name, &[]);

    // /metrics.
    let records = e.in_use.map_or(0, |s| s.records) as f64;
    let got = gauge("mailward_bases_records");
    f.check(got == Some(records), || {
        format!("{what}: /metrics mailward_bases_records = {got:?}, expected {records}")
    });
    let released = e.in_use.map_or(0, |s| s.released) as f64;
    let got = gauge("mailward_bases_released_timestamp_seconds");
    f.check(got == Some(released), || {
        format!(
            "{what}: /metrics mailward_bases_released_timestamp_seconds = {got:?}, expected {released}"
        )
    });
    // The fixtures are far from bases.obsolete_after (3650d); none loaded
    // is not obsolete either. SNMP says the same below (mwBasesObsolete).
    let got = gauge("mailward_bases_obsolete");
    f.check(got == Some(0.0), || {
        format!("{what}: /metrics mailward_bases_obsolete = {got:?}, expected 0")
    });
    let results = result_series(&m);
    let want: Vec<(String, Option<f64>)> = RESULTS
        .iter()
        .map(|(r, _, _)| (r.to_string(), Some(if *r == e.result { 1.0 } else { 0.0 })))
        .collect();
    f.check(results == want, || {
        format!(
            "{what}: /metrics mailward_update_last_result = {results:?}, expected {want:?} (result=\"{}\" 1, the others 0)",
            e.result
        )
    });
    let checked = gauge("mailward_update_last_check_timestamp_seconds");
    let checked_ok = checked.is_some_and(|t| {
        let t = t as i64;
        if e.checked == (0, 0) {
            t == 0
        } else {
            t > 0 && e.checked.0 <= t && t <= e.checked.1
        }
    });
    f.check(checked_ok, || {
        format!(
            "{what}: /metrics mailward_update_last_check_timestamp_seconds = {checked:?}, expected {}",
            if e.checked == (0, 0) {
                "0 (never)".to_string()
            } else {
                format!("the time of the command, {}..={}", e.checked.0, e.checked.1)
            }
        )
    });
    let loaded = gauge("mailward_bases_loaded_timestamp_seconds");
    let loaded_ok = loaded.is_some_and(|t| {
        let t = t as i64;
        match e.in_use {
            None => t == 0,
            Some(_) => e.loaded.0 <= t && t <= e.loaded.1,
        }
    });
    f.check(loaded_ok, || {
        format!(
            "{what}: /metrics mailward_bases_loaded_timestamp_seconds = {loaded:?}, expected {}",
            match e.in_use {
                None => "0 (none)".to_string(),
                Some(_) => format!("{}..={}", e.loaded.0, e.loaded.1),
            }
        )
    });

    // `bases status`, which must agree with /metrics on the times.
    let Some(status) = f.step(&format!("{what}: mailward bases status"), rig.status()) else {
        return;
    };
    let field = |k: &str| status.get(k).cloned().unwrap_or_default();
    let av = rig.dir.join("bases").join("av").display().to_string();
    f.check(field("directory") == av, || {
        format!(
            "{what}: status `directory: {}`, expected {av}",
            field("directory")
        )
    });
    let want_in_use = match e.in_use {
        None => "none".to_string(),
        Some(s) => format!(
            "version {}, released {}, {} records, loaded {}",
            s.version,
            cli_time(s.released),
            s.records,
            cli_time(loaded.unwrap_or(0.0) as i64)
        ),
    };
    f.check(field("in use") == want_in_use, || {
        format!(
            "{what}: status `in use: {}`, expected `in use: {want_in_use}`",
            field("in use")
        )
    });
    // The previous set: its version, release and records, and no load
    // time (it is kept, not loaded).
    let previous = field("previous");
    let previous_ok = match e.previous {
        None => previous == "none",
        Some(s) => {
            previous
                == format!(
                    "version {}, released {}, {} records",
                    s.version,
                    cli_time(s.released),
                    s.records
                )
        }
    };
    f.check(previous_ok, || {
        format!(
            "{what}: status `previous: {previous}`, expected {}",
            match e.previous {
                None => "none".to_string(),
                Some(s) => format!(
                    "version {}, released {}, {} records",
                    s.version,
                    cli_time(s.released),
                    s.records
                ),
            }
        )
    });
    f.check(field("obsolete") == "false", || {
        format!(
            "{what}: status `obsolete: {}`, expected false",
            field("obsolete")
        )
    });
    let want_last = if e.checked == (0, 0) {
        format!("never ({})", e.result)
    } else {
        format!("{} ({})", cli_time(checked.unwrap_or(0.0) as i64), e.result)
    };
    f.check(field("last update") == want_last, || {
        format!(
            "{what}: status `last update: {}`, expected `last update: {want_last}`",
            field("last update")
        )
    });

    // snmpget, until the cached view shows the new state.
    let (_, code, label) = RESULTS
        .iter()
        .find(|(r, _, _)| *r == e.result)
        .copied()
        .unwrap_or(("?", 0, "?"));
    let want = [
        (
            "mwUpdateLastResult",
            SnmpWant::Is(format!("INTEGER: {label}({code})")),
        ),
        (
            "mwBasesRecords",
            SnmpWant::Is(format!("Gauge32: {}", e.in_use.map_or(0, |s| s.records))),
        ),
        (
            "mwBasesReleased",
            SnmpWant::Time(e.in_use.map_or(0, |s| s.released)),
        ),
        (
            "mwUpdateLastCheck",
            SnmpWant::Time(checked.unwrap_or(0.0) as i64),
        ),
        ("mwBasesObsolete", SnmpWant::Is("INTEGER: false(2)".into())),
    ];
    f.step(&format!("{what}: snmpget"), snmp_until(&rig.snmp, &want));
}

/// `mailward_update_last_result` by label, in the order of [`RESULTS`].
fn result_series(m: &Metrics) -> Vec<(String, Option<f64>)> {
    RESULTS
        .iter()
        .map(|(r, _, _)| {
            (
                r.to_string(),
                m.get("mailward_update_last_result", &[("result", r)]),
            )
        })
        .collect()
}

/// What an object of snmpget must show.
#[derive(Debug)]
enum SnmpWant {
    /// Exactly `TYPE: VALUE`.
    Is(String),
    /// A DateAndTime of this unix time.
    Time(i64),
}

/// Polls `snmpget` of `OBJECT.0` for each of `want` until every value is as
/// wanted; fails with the last answer.
fn snmp_until(snmp: &NetSnmp, want: &[(&str, SnmpWant)]) -> Result<()> {
    let oids: Vec<String> = want
        .iter()
        .map(|(n, _)| format!("MAILWARD-MIB::{n}.0"))
        .collect();
    let refs: Vec<&str> = oids.iter().map(String::as_str).collect();
    let mut last = String::new();
    wait_until("snmpget to show the new state", VIEW_TIMEOUT, || {
        let lines = snmp.lines("snmpget", &[], &refs)?;
        last = lines
            .iter()
            .map(|l| format!("{} = {}", l.oid, l.value))
            .collect::<Vec<_>>()
            .join("; ");
        let ok = want.iter().zip(&oids).all(|((_, w), oid)| {
            lines.iter().any(|l| {
                &l.oid == oid
                    && match w {
                        SnmpWant::Is(v) => &l.value == v,
                        SnmpWant::Time(t) => {
                            l.kind() == "STRING" && parse_date_and_time_text(l.text()) == Some(*t)
                        }
                    }
            })
        });
        Ok(ok.then_some(()))
    })
    .with_context(|| format!("expected {want:?}; last answer: {last}"))
}

/// Waits for mwUpdateStatus after trap number `from`; checks its result
/// and that its message is `STRING: "MESSAGE..."` starting with
/// `message_start`. Returns its position.
fn check_update_status(
    f: &mut Failures,
    rig: &Rig,
    what: &str,
    from: usize,
    code: u32,
    message_start: &str,
) -> Option<usize> {
    let (pos, t) = f.step(
        &format!("{what}: mwUpdateStatus at snmptrapd"),
        rig.snmp.wait_trap(UPDATE_STATUS, from, TRAP_TIMEOUT),
    )?;
    let result = t.value(&mw(MW_UPDATE_LAST_RESULT_0));
    let want = format!("INTEGER: {code}");
    f.check(result == Some(want.as_str()), || {
        format!(
            "{what}: mwUpdateStatus mwUpdateLastResult.0 = {result:?}, expected {want:?}:\n{}",
            t.line
        )
    });
    let message = t.value(&mw(MW_NOTIFY_MESSAGE_0));
    let want = format!("STRING: \"{message_start}");
    f.check(message.is_some_and(|m| m.starts_with(&want)), || {
        format!(
            "{what}: mwUpdateStatus mwNotifyMessage.0 = {message:?}, expected it to start with {want:?}:\n{}",
            t.line
        )
    });
    f.check(t.varbinds.len() == 4, || {
        format!(
            "{what}: mwUpdateStatus has {} varbinds, expected sysUpTime.0, snmpTrapOID.0, mwUpdateLastResult.0, mwNotifyMessage.0:\n{}",
            t.varbinds.len(),
            t.line
        )
    });
    Some(pos)
}

/// Waits for mwBasesReloaded after trap number `from`; checks that it
/// carries the records and release of `set`.
fn check_bases_reloaded(f: &mut Failures, rig: &Rig, what: &str, from: usize, set: &Set) {
    let Some((_, t)) = f.step(
        &format!("{what}: mwBasesReloaded at snmptrapd"),
        rig.snmp.wait_trap(BASES_RELOADED, from, TRAP_TIMEOUT),
    ) else {
        return;
    };
    let records = t.value(&mw(MW_BASES_RECORDS_0));
    let want = format!("Gauge32: {}", set.records);
    f.check(records == Some(want.as_str()), || {
        format!(
            "{what}: mwBasesReloaded mwBasesRecords.0 = {records:?}, expected {want:?}:\n{}",
            t.line
        )
    });
    let released = t
        .value(&mw(MW_BASES_RELEASED_0))
        .and_then(parse_date_and_time_hex);
    f.check(released == Some(set.released), || {
        format!(
            "{what}: mwBasesReloaded mwBasesReleased.0 = {:?}, expected the DateAndTime of {}:\n{}",
            released.map(rfc3339),
            rfc3339(set.released),
            t.line
        )
    });
}

/// Fails when an mwBasesReloaded arrived among traps `from..until`.
fn check_no_bases_reloaded(f: &mut Failures, rig: &Rig, what: &str, from: usize, until: usize) {
    let oid = mw(&format!("0.{BASES_RELOADED}"));
    let stray: Vec<Trap> = rig
        .snmp
        .traps()
        .into_iter()
        .take(until)
        .skip(from)
        .filter(|t| t.trap_oid() == Some(oid.as_str()))
        .collect();
    f.check(stray.is_empty(), || {
        format!(
            "{what}: mwBasesReloaded was sent though the bases in use did not change:\n{}",
            stray
                .iter()
                .map(|t| t.line.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
}

/// One message through the gateway with swaks; its queue ID.
fn send(port: u16, to: &str) -> Result<String> {
    let server = format!("127.0.0.1:{port}");
    let out = swaks(&[
        "--server",
        &server,
        "--ehlo",
        "client.test",
        "--from",
        "alice@sender.test",
        "--to",
        to,
    ])?;
    let text = output_text(&out);
    text.lines()
        .find_map(|l| {
            l.split_once("queued as ")
                .map(|(_, id)| id.trim().to_string())
        })
        .with_context(|| format!("swaks to {to}: no 250 queued:\n{text}"))
}

/// Sends one message and waits until the sink has `count`; checks that the
/// last one is it.
fn mail_flows(f: &mut Failures, rig: &Rig, what: &str, to: &str, count: usize) {
    let Some(id) = f.step(&format!("{what}: sending {to}"), send(rig.daemon.port, to)) else {
        return;
    };
    let Some(messages) = f.step(
        &format!("{what}: {to} ({id}) at the sink"),
        rig.sink.wait_for_count(count, MAIL_TIMEOUT),
    ) else {
        return;
    };
    f.check(
        messages
            .iter()
            .any(|m| m.recipients().iter().any(|r| r.contains(to)) && m.queue_ids().contains(&id)),
        || {
            format!(
                "{what}: the sink has {} message(s), none for {to} with queue ID {id}",
                messages.len()
            )
        },
    );
}

/// A change that puts a set in use (an update or a rollback): `mailward
/// ARGS` exits 0 saying `msg`; then the state, the mwBasesReloaded trap
/// and the mwUpdateStatus trap (`status`) follow. When it ran.
struct PutInUse<'a> {
    what: &'a str,
    args: &'a [&'a str],
    msg: String,
    in_use: &'a Set,
    previous: &'a Set,
    result: &'a str,
    status: u32,
}

fn put_in_use(f: &mut Failures, rig: &Rig, c: PutInUse) -> Result<(i64, i64)> {
    let (what, msg) = (c.what, &c.msg);
    let n = rig.snmp.traps().len();
    let out = rig.cli(c.args)?;
    f.check(out.code == Some(0) && out.stdout == *msg, || {
        format!(
            "{what}: exit {:?} and {:?}, expected exit 0 and {msg:?}:\n{}",
            out.code, out.stdout, out.text
        )
    });
    check_state(
        f,
        rig,
        &Expect {
            what,
            in_use: Some(c.in_use),
            previous: Some(c.previous),
            result: c.result,
            checked: (out.before, out.after),
            loaded: (out.before, out.after),
        },
    );
    check_bases_reloaded(f, rig, what, n, c.in_use);
    check_update_status(f, rig, what, n, c.status, msg);
    Ok((out.before, out.after))
}

#[test]
fn update_refusal_and_rollback_of_the_bases_as_an_operator_sees_them() -> Result<()> {
    let starting = unix_now();
    let mut rig = Rig::start()?;
    let started = unix_now();
    let mut f = Failures::default();
    for set in [&DEFAULT, &V1, &V2] {
        let text = std::fs::read_to_string(set_dir(set).join("manifest.toml"))?;
        let line = format!("released = \"{}\"", rfc3339(set.released));
        f.check(
            text.contains(&line) && text.contains(&format!("records = {}", set.records)),
            || {
                format!(
                    "{}: the manifest does not say {line} and records = {}",
                    set.dir, set.records
                )
            },
        );
    }

    // 1. The built-in default set, installed at start.
    check_state(
        &mut f,
        &rig,
        &Expect {
            what: "at start, the built-in default bases",
            in_use: Some(&DEFAULT),
            previous: None,
            result: "unknown",
            checked: (0, 0),
            loaded: (starting, started),
        },
    );

    // 2. A good set.
    let v1 = set_dir(&V1).display().to_string();
    let v1_loaded = put_in_use(
        &mut f,
        &rig,
        PutInUse {
            what: "update --from v1",
            args: &["bases", "update", "--from", &v1],
            msg: format!(
                "Bases {} ({} records) from {v1} are in use.",
                V1.version, V1.records
            ),
            in_use: &V1,
            previous: &DEFAULT,
            result: "updated",
            status: 1,
        },
    )?;

    // 3. The same set again: nothing to do.
    let n = rig.snmp.traps().len();
    let out = rig.cli(&["bases", "update", "--from", &v1])?;
    let what = "update --from v1 again";
    let msg = format!("Bases {} are already in use; nothing to do.", V1.version);
    f.check(out.code == Some(0) && out.stdout == msg, || {
        format!(
            "{what}: exit {:?} and {:?}, expected exit 0 and {msg:?}:\n{}",
            out.code, out.stdout, out.text
        )
    });
    check_state(
        &mut f,
        &rig,
        &Expect {
            what,
            in_use: Some(&V1),
            previous: Some(&DEFAULT),
            result: "not_needed",
            checked: (out.before, out.after),
            loaded: v1_loaded,
        },
    );
    if let Some(pos) = check_update_status(&mut f, &rig, what, n, 2, &msg) {
        check_no_bases_reloaded(&mut f, &rig, what, n, pos);
    }

    // 4. Broken sets: refused, the bases in use stay.
    let broken = [
        (
            BROKEN_MANIFEST,
            "released is missing (like released = \"2026-11-24T00:00:00Z\")",
        ),
        (BROKEN_NO_RULES, "no .yar rule files"),
        (BROKEN_RULE_SYNTAX, "rules.yar:6:"),
        // No such directory: the message says the daemon reads it, as
        // which user (walkF: root's CLI saw the set, the daemon did not).
        ("no-such-set", "(the daemon reads the set itself, as "),
    ];
    for (name, problem) in broken {
        let dir = fixture(name).display().to_string();
        let n = rig.snmp.traps().len();
        let out = rig.cli(&["bases", "update", "--from", &dir])?;
        let what = format!("update --from {name}");
        let start = format!("mailward: Update from {dir} refused: ");
        let end = "; the bases in use stay.";
        f.check(
            out.code == Some(1)
                && out.stdout.is_empty()
                && out.stderr.starts_with(&start)
                && out.stderr.ends_with(end)
                && out.stderr.lines().count() == 1
                && out.stderr.contains(problem),
            || {
                format!(
                    "{what}: exit {:?}, stdout {:?}, stderr {:?}; expected exit 1, nothing on stdout, and on stderr one line {start:?}...{problem:?}...{end:?}",
                    out.code, out.stdout, out.stderr
                )
            },
        );
        check_state(
            &mut f,
            &rig,
            &Expect {
                what: &what,
                in_use: Some(&V1),
                previous: Some(&DEFAULT),
                result: "error",
                checked: (out.before, out.after),
                loaded: v1_loaded,
            },
        );
        if let Some(pos) = check_update_status(
            &mut f,
            &rig,
            &what,
            n,
            3,
            &format!("Update from {dir} refused: "),
        ) {
            check_no_bases_reloaded(&mut f, &rig, &what, n, pos);
        }
    }
    mail_flows(
        &mut f,
        &rig,
        "after the refused updates",
        "first@example.com",
        1,
    );

    // 5. A newer set, then back to the older one.
    let v2 = set_dir(&V2).display().to_string();
    put_in_use(
        &mut f,
        &rig,
        PutInUse {
            what: "update --from v2",
            args: &["bases", "update", "--from", &v2],
            msg: format!(
                "Bases {} ({} records) from {v2} are in use.",
                V2.version, V2.records
            ),
            in_use: &V2,
            previous: &V1,
            result: "updated",
            status: 1,
        },
    )?;
    put_in_use(
        &mut f,
        &rig,
        PutInUse {
            what: "rollback after v2",
            args: &["bases", "rollback"],
            msg: format!(
                "Rolled back to bases {} ({} records).",
                V1.version, V1.records
            ),
            in_use: &V1,
            previous: &V2,
            result: "rolled_back",
            status: 4,
        },
    )?;

    // 6. Mail still flows, and the notifications were counted as sent.
    mail_flows(&mut f, &rig, "at the end", "last@example.com", 2);
    let traps = rig.snmp.traps();
    let m = f.step("the last scrape", rig.stats.scrape());
    for (name, arc, want) in [
        ("mwBasesReloaded", BASES_RELOADED, 3),
        ("mwUpdateStatus", UPDATE_STATUS, 8),
        ("mwObsoleteBases", 7, 0),
    ] {
        let oid = mw(&format!("0.{arc}"));
        let received = traps
            .iter()
            .filter(|t| t.trap_oid() == Some(oid.as_str()))
            .count();
        f.check(received == want, || {
            format!("{name}: snmptrapd received {received}, expected {want}")
        });
        if let Some(m) = &m {
            let counted = m.get("mailward_snmp_notifications_total", &[("name", name)]);
            f.check(counted == Some(want as f64), || {
                format!(
                    "/metrics mailward_snmp_notifications_total{{name=\"{name}\"}} = {counted:?}, expected {want}"
                )
            });
        }
    }
    let running = rig.daemon.is_running();
    f.check(running, || "the daemon is not running at the end".into());
    f.finish(|| rig.context())
}

#[test]
fn a_gateway_on_its_built_in_set_is_told_to_install_a_real_one() -> Result<()> {
    // The built-in set (a few test rules, installed at the first start)
    // grows obsolete like any set, but there is nothing to update it
    // from: `mailward status` asks for a real set instead of an update.
    let dir = TestDir::new("bases-built-in")?;
    let stats = StatsSetup::new(dir.path());
    let daemon = Daemon::start(
        &stats.apply(
            Config::new(dir.path())
                // Obsolete whatever the day the test runs.
                .set_str("bases", "obsolete_after", "1s"),
        ),
    )?;
    // /metrics says it too, for the alert MailwardBasesObsolete.
    let obsolete = stats.scrape()?.get("mailward_bases_obsolete", &[]);
    anyhow::ensure!(
        obsolete == Some(1.0),
        "/metrics mailward_bases_obsolete = {obsolete:?}, expected 1"
    );
    let status: serde_json::Value = serde_json::from_str(&daemon.cli_ok(&["status", "--json"])?)?;
    anyhow::ensure!(
        status["bases"]["builtin"] == true && status["bases"]["version"] == DEFAULT.version,
        "the built-in set in use: {}",
        status["bases"]
    );
    let problems = status["problems"].to_string();
    anyhow::ensure!(
        problems.contains(&format!(
            "The signature bases in use are the built-in default set {} ({} records",
            DEFAULT.version, DEFAULT.records
        )) && problems.contains("install a real set (mailward bases update --from DIR"),
        "the problem asks for a real set: {problems}"
    );
    let text = daemon.cli_ok(&["status"])?;
    anyhow::ensure!(
        text.contains(&format!(
            "bases:    {} (built-in default set), ",
            DEFAULT.version
        )),
        "{text}"
    );
    wait_until(
        "the obsolete-bases warning",
        Duration::from_secs(10),
        || {
            Ok(daemon
                .full_log()
                .contains("they are the built-in default set; install a real set")
                .then_some(()))
        },
    )
    .map_err(|e| e.context(daemon.full_log()))?;
    // A real set, once old, is to be updated.
    let v1 = set_dir(&V1).display().to_string();
    let said = daemon.cli_ok(&["bases", "update", "--from", &v1])?;
    // walkAY S1: the update's answer says so, not only the log later.
    let head = format!(
        "Bases {} ({} records) from {v1} are in use. They are obsolete: released ",
        V1.version, V1.records
    );
    anyhow::ensure!(
        said.starts_with(&head)
            && said
                .trim_end()
                .ends_with("ago, beyond bases.obsolete_after (1s); mwObsoleteBases follows."),
        "the update's answer: {said:?}"
    );
    let status: serde_json::Value = serde_json::from_str(&daemon.cli_ok(&["status", "--json"])?)?;
    let problems = status["problems"].to_string();
    anyhow::ensure!(
        status["bases"]["builtin"] == false
            && problems.contains(&format!(
                "The signature bases {} are older than bases.obsolete_after: update them",
                V1.version
            )),
        "{}\n{problems}",
        status["bases"]
    );
    // walkM 4: an obsolete set that comes into use is said (and trapped,
    // mwObsoleteBases) within one alert period, not up to a day later.
    wait_until(
        "the obsolete-bases warning for the new set",
        Duration::from_secs(25),
        || {
            Ok(daemon
                .full_log()
                .contains("The signature bases are obsolete (older than bases.obsolete_after).")
                .then_some(()))
        },
    )
    .map_err(|e| e.context(daemon.full_log()))?;
    // walkBE 1: an update and a rollback to the same obsolete set within
    // one 10-second look are still two sets coming into use: said again,
    // although the set in use looks as it did at the last look.
    let said_obsolete = |d: &Daemon| {
        d.full_log()
            .matches("The signature bases are obsolete (older than bases.obsolete_after).")
            .count()
    };
    let before = said_obsolete(&daemon);
    daemon.cli_ok(&[
        "bases",
        "update",
        "--from",
        &set_dir(&V2).display().to_string(),
    ])?;
    daemon.cli_ok(&["bases", "rollback"])?;
    wait_until(
        "the obsolete-bases warning after the rollback",
        Duration::from_secs(25),
        || Ok((said_obsolete(&daemon) > before).then_some(())),
    )
    .map_err(|e| e.context(daemon.full_log()))?;
    Ok(())
}

/// `mwProductError`: arc 3 under mwNotifications.
const PRODUCT_ERROR: u32 = 3;
/// `mwProductErrorCleared`: arc 9.
const PRODUCT_ERROR_CLEARED: u32 = 9;

/// The mwNotifyMessage of the first notification `arc` (under
/// mwNotifications) snmptrapd received after its first `since` traps.
fn notify_message(rig: &Rig, since: usize, arc: u32) -> Result<String> {
    let oid = mw(&format!("0.{arc}"));
    let trap = wait_until(&format!("notification {oid}"), TRAP_TIMEOUT, || {
        Ok(rig.snmp.traps()[since..]
            .iter()
            .find(|t| t.trap_oid() == Some(oid.as_str()))
            .cloned())
    })?;
    Ok(trap
        .value(&mw(MW_NOTIFY_MESSAGE_0))
        .unwrap_or_default()
        .to_string())
}

/// `mailward status --json`.
fn status_json(daemon: &Daemon) -> Result<serde_json::Value> {
    Ok(serde_json::from_str(
        &daemon.cli_ok(&["status", "--json"])?,
    )?)
}

#[test]
fn a_set_broken_on_disk_is_reported_until_it_loads_again() -> Result<()> {
    // walkL 5: a set that no longer compiled on SIGHUP was logged once;
    // status said nothing, no trap was sent, and the next start ran with
    // no AV rules at all.
    let mut rig = Rig::start()?;
    let mut f = Failures::default();
    let av = rig.dir.join("bases").join("av");
    let broken = av.join("broken.yar");
    std::fs::write(&broken, "rule Broken {\n condition: $nope\n}\n")?;
    let manifest = std::fs::read_to_string(av.join("manifest.toml"))?;
    std::fs::write(
        av.join("manifest.toml"),
        manifest.replace(DEFAULT.version, "2026.12.03.1"),
    )?;
    let n = rig.snmp.traps().len();
    rig.daemon.sighup()?;
    let problem = "The signature bases on disk do not load: error[E025]: unknown pattern `$nope`";
    let status = wait_until("the status problem", Duration::from_secs(10), || {
        let s = status_json(&rig.daemon)?;
        Ok(s["problems"].to_string().contains(problem).then_some(s))
    });
    match status {
        Ok(s) => {
            let problems = s["problems"].to_string();
            f.check(
                problems.contains(
                    "a restart would run without AV rules until the set is fixed or rolled back",
                ) && problems.contains(&format!("The rules in use ({})", DEFAULT.version))
                    && s["bases_on_disk_error"]
                        .as_str()
                        .is_some_and(|e| e.contains("broken.yar:2:")),
                || format!("after SIGHUP, status --json: {s}"),
            );
        }
        Err(e) => f.push(format!("after SIGHUP: {e}")),
    }
    // walkAM 6: Prometheus saw nothing of it.
    let broken_gauge = |rig: &Rig| {
        rig.stats
            .scrape()
            .ok()
            .and_then(|m| m.get("mailward_bases_on_disk_broken", &[]))
    };
    let seen = broken_gauge(&rig);
    f.check(seen == Some(1.0), || {
        format!("after SIGHUP, mailward_bases_on_disk_broken is {seen:?}, not 1")
    });
    let text = f.step("status", rig.daemon.cli_ok(&["status"]));
    f.check(text.as_deref().is_some_and(|t| t.contains(problem)), || {
        format!("after SIGHUP, `mailward status` does not say {problem:?}: {text:?}")
    });
    let bases = f.step("bases status", rig.daemon.cli_ok(&["bases", "status"]));
    f.check(
        bases
            .as_deref()
            .is_some_and(|t| t.contains("on disk:     does not load: error[E025]")),
        || format!("after SIGHUP, `bases status` does not name the set on disk: {bases:?}"),
    );
    match notify_message(&rig, n, PRODUCT_ERROR) {
        Ok(message) => f.check(message.contains("do not load"), || {
            format!("mwProductError after SIGHUP says {message:?}")
        }),
        Err(e) => f.push(format!("after SIGHUP: {e}")),
    }

    // An ordinary restart: none loaded, and status says why.
    f.step("stopping", rig.daemon.sigterm());
    rig.daemon.restart()?;
    let s = status_json(&rig.daemon)?;
    let problems = s["problems"].to_string();
    f.check(
        s["bases"].is_null()
            && problems.contains("No signature bases are loaded")
            && problems
                .contains("The set on disk does not load: error[E025]: unknown pattern `$nope`"),
        || format!("after the restart, status --json: {s}"),
    );

    // Fixed: the problem goes with the next reload.
    std::fs::remove_file(&broken)?;
    let n = rig.snmp.traps().len();
    rig.daemon.sighup()?;
    let fixed = wait_until("the set to load again", Duration::from_secs(10), || {
        let s = status_json(&rig.daemon)?;
        Ok((s["bases"]["version"] == "2026.12.03.1").then_some(s))
    });
    match fixed {
        Ok(s) => f.check(
            s["bases_on_disk_error"].is_null()
                && !s["problems"].to_string().contains("do not load"),
            || format!("after the fix, status --json: {s}"),
        ),
        Err(e) => f.push(format!("after the fix: {e}")),
    }
    // walkAM 5, 6: the recovery is said, and the gauge falls back.
    let seen = broken_gauge(&rig);
    f.check(seen == Some(0.0), || {
        format!("after the fix, mailward_bases_on_disk_broken is {seen:?}, not 0")
    });
    let log = rig.daemon.full_log();
    f.check(
        log.lines()
            .any(|l| l.contains("INFO app: The signature bases on disk load again.")),
        || "after the fix, no 'The signature bases on disk load again.' line".to_string(),
    );
    // The NMS closes the alarm mwProductError opened without polling.
    match notify_message(&rig, n, PRODUCT_ERROR_CLEARED) {
        Ok(message) => f.check(
            message.contains("signature bases in") && message.contains("av load again"),
            || format!("mwProductErrorCleared after the fix says {message:?}"),
        ),
        Err(e) => f.push(format!("after the fix: {e}")),
    }
    f.finish(|| rig.context())
}

/// The version in `DIR/manifest.toml`, None without one.
fn manifest_version(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("manifest.toml")).ok()?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix("version"))
        .and_then(|v| v.split('"').nth(1))
        .map(str::to_string)
}

#[test]
fn updates_started_together_are_one_at_a_time_and_a_refused_one_changes_nothing() -> Result<()> {
    // walkL 4: four `bases update` at once renamed each other's
    // directories: `av` vanished, half a set was kept as `av.previous`,
    // and the outputs contradicted what was in use.
    let rig = Rig::start()?;
    let mut f = Failures::default();
    let av = rig.dir.join("bases").join("av");
    let rules = set_dir(&DEFAULT).join("mailward-default.yar");
    let bin = mailward_e2e::daemon::mailward_bin()?;
    for round in 1..=3 {
        let mut sets = Vec::new();
        for i in 1..=4 {
            let dir = rig.dir.join(format!("set-{round}-{i}"));
            std::fs::create_dir_all(&dir)?;
            std::fs::copy(&rules, dir.join("mailward-default.yar"))?;
            let version = format!("2026.12.{round:02}.{i}");
            std::fs::write(
                dir.join("manifest.toml"),
                format!(
                    "version = \"{version}\"\nreleased = \"2026-12-{round:02}T0{i}:00:00Z\"\nrecords = 5\n"
                ),
            )?;
            sets.push((dir.display().to_string(), version));
        }
        let outcomes: Vec<(String, String, std::io::Result<std::process::Output>)> =
            std::thread::scope(|s| {
                let runs: Vec<_> = sets
                    .iter()
                    .map(|(dir, version)| {
                        let bin = &bin;
                        let config = rig.daemon.config_path();
                        s.spawn(move || {
                            let out = std::process::Command::new(bin)
                                .args(["bases", "update", "--from", dir, "--config"])
                                .arg(config)
                                .stdin(std::process::Stdio::null())
                                .output();
                            (dir.clone(), version.clone(), out)
                        })
                    })
                    .collect();
                runs.into_iter().filter_map(|r| r.join().ok()).collect()
            });
        let mut installed = Vec::new();
        for (dir, version, out) in outcomes {
            let Some(out) = f.step(
                &format!("round {round}: update --from {dir}"),
                out.map_err(Into::into),
            ) else {
                continue;
            };
            let stdout = String::from_utf8_lossy(&out.stdout).trim_end().to_string();
            let stderr = String::from_utf8_lossy(&out.stderr).trim_end().to_string();
            let done = format!("Bases {version} (5 records) from {dir} are in use.");
            if out.status.success() && stdout == done {
                installed.push(version);
            } else {
                // Refused as busy, or (when it ran after a newer one) as
                // older than the set in use: both leave everything as it was.
                f.check(
                    out.status.code() == Some(1)
                        && (stderr.contains("is running; nothing was changed")
                            || stderr.contains("is older than the one in use")),
                    || {
                        format!(
                            "round {round}: update --from {dir}: exit {:?}, stdout {stdout:?}, stderr {stderr:?}; expected {done:?} or a refusal (busy, or older)",
                            out.status.code()
                        )
                    },
                );
            }
        }
        f.check(!installed.is_empty(), || {
            format!("round {round}: no update succeeded")
        });
        let on_disk = manifest_version(&av);
        let previous = manifest_version(&bases_previous(&av));
        let status = f.step("bases status", rig.status());
        let in_use = status
            .as_ref()
            .and_then(|s| s.get("in use"))
            .and_then(|v| v.strip_prefix("version "))
            .and_then(|v| v.split(',').next())
            .map(str::to_string);
        f.check(
            on_disk.is_some()
                && on_disk == in_use
                && in_use.as_ref().is_some_and(|v| installed.contains(v))
                && previous.is_some()
                && bases_previous(&av).join("mailward-default.yar").exists(),
            || {
                format!(
                    "round {round}: on disk {on_disk:?}, in use {in_use:?}, previous {previous:?}, reported installed {installed:?}"
                )
            },
        );
    }
    f.finish(|| rig.context())
}

/// `DIR.previous`.
fn bases_previous(av: &Path) -> PathBuf {
    PathBuf::from(format!("{}.previous", av.display()))
}

#[test]
fn bases_update_from_is_checked_at_start_without_a_command() -> Result<()> {
    // walkL 11: the default configuration promised a periodic check of
    // bases.update_from, and nothing ever looked there.
    let dir = TestDir::new("bases-update-from")?;
    let v1 = set_dir(&V1);
    let daemon = Daemon::start(
        &Config::new(dir.path())
            .set_str("bases", "update_from", &format!("file://{}", v1.display()))
            .set_str("bases", "obsolete_after", "3650d"),
    )?;
    // The set is in use a moment before the update is recorded (the
    // reload comes first: a set that cannot be loaded is an error, not an
    // update), so both are waited for.
    let in_use = format!("in use:      version {},", V1.version);
    let status = wait_until(
        "the set of bases.update_from in use and recorded",
        Duration::from_secs(20),
        || {
            let text = daemon.cli_ok(&["bases", "status"])?;
            Ok((text.contains(&in_use) && text.contains("(updated)")).then_some(text))
        },
    )
    .map_err(|e| e.context(daemon.full_log()))?;
    anyhow::ensure!(status.contains("(updated)"), "{status}");
    let line = format!(
        "Bases {} ({} records) from file://{} are in use.",
        V1.version,
        V1.records,
        v1.display()
    );
    let log = wait_until("the update's log line", Duration::from_secs(5), || {
        let log = daemon.full_log();
        Ok((log.contains(&line) && log.contains("result=updated")).then_some(log))
    })?;
    anyhow::ensure!(log.contains(&line), "{log}");

    // walkL 15 and 16: a refused update is logged as a warning with the
    // documented result name, and status says what it failed on.
    let broken = fixture(BROKEN_RULE_SYNTAX).display().to_string();
    let out = daemon.cli(&["bases", "update", "--from", &broken])?;
    anyhow::ensure!(out.status.code() == Some(1), "{}", output_text(&out));
    let refused = format!("Update from {broken} refused: ");
    let log = daemon.full_log();
    anyhow::ensure!(
        log.lines().any(|l| l.contains("WARN admin: ")
            && l.contains(&refused)
            && l.contains("result=error")),
        "{log}"
    );
    let status = status_json(&daemon)?;
    let problems = status["problems"].to_string();
    anyhow::ensure!(
        problems.contains(&format!(
            "The last update of the bases ended with error: {refused}"
        )) && problems.contains("rules.yar:6:")
            && problems.contains("category admin")
            && !problems.contains("target admin"),
        "{problems}"
    );
    let text = daemon.cli_ok(&["bases", "status"])?;
    anyhow::ensure!(text.contains(&format!("last error:  {refused}")), "{text}");

    // walkL 12: a rollback to a previous set that does not compile says
    // so (not "no previous bases"), and is recorded like a refused update.
    let av = dir.join("data").join("bases").join("av");
    std::fs::write(
        bases_previous(&av).join("broken.yar"),
        "rule Broken {\n condition: $nope\n}\n",
    )?;
    let out = daemon.cli(&["bases", "rollback"])?;
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    anyhow::ensure!(
        out.status.code() == Some(1)
            && stderr.contains("Rollback refused: ")
            && stderr.contains(
                "the previous set does not load, so it cannot be put in use: error[E025]"
            )
            && !stderr.contains("no previous bases"),
        "{}",
        output_text(&out)
    );
    let log = daemon.full_log();
    anyhow::ensure!(
        log.lines()
            .any(|l| l.contains("WARN admin: Rollback refused: ") && l.contains("result=error")),
        "{log}"
    );
    let text = daemon.cli_ok(&["bases", "status"])?;
    anyhow::ensure!(
        text.contains(&format!("in use:      version {},", V1.version))
            && text.contains("(error)")
            && text.contains("last error:  Rollback refused: "),
        "{text}"
    );

    // walkL 13: a manifest whose record count is not the set's is noted.
    let wrong = dir.join("wrong-records");
    std::fs::create_dir_all(&wrong)?;
    std::fs::copy(v1.join("rules.yar"), wrong.join("rules.yar"))?;
    std::fs::write(
        wrong.join("manifest.toml"),
        "version = \"2026.12.04.2\"\nreleased = \"2026-12-05T00:00:00Z\"\nrecords = 1204\n",
    )?;
    let said = daemon.cli_ok(&["bases", "update", "--from", &wrong.display().to_string()])?;
    let note = format!(
        "the manifest of bases 2026.12.04.2 says 1204 records, but the set has {} rules",
        V1.records
    );
    anyhow::ensure!(said.contains(&note), "{said}");
    anyhow::ensure!(
        daemon
            .full_log()
            .lines()
            .any(|l| l.contains("WARN app: ") && l.contains(&note)),
        "{}",
        daemon.full_log()
    );
    Ok(())
}
