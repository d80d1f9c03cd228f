//! SNMP as an operator checks it, with the real net-snmp (DESIGN 7): the
//! MIB lints clean and every object resolves; `snmpwalk` of Mailward's
//! subtree through a private `snmpd` (AgentX master on a UNIX socket)
//! names every object and agrees with `/metrics` counter for counter after
//! real mail; `snmpbulkwalk` of more than 100 table rows matches the walk
//! and stops at the end of the subtree; every notification arrives at a
//! private `snmptrapd` with its trap OID and varbinds; a restarted snmpd
//! gets the subtree back within seconds; neither a missing master nor one
//! that sends garbage touches the mail flow; and a second gateway on the
//! same subtree is told duplicateRegistration while the first serves on,
//! and takes the subtree over when the first stops.
//!
//! Each test collects what is wrong and reports it all at once, each item
//! with what was expected and what was found. Needs the Debian packages
//! snmpd, snmptrapd, snmp and smitools, and the IETF base MIBs in
//! target/mibs-base/ (tests/install-deps.sh installs and fetches both).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use mailward_e2e::failures::Failures;
use mailward_e2e::snmp::{
    mib_file, mib_path, net_snmp_tool, oid_cmp, oid_under, parse_date_and_time_hex,
    parse_date_and_time_text, pause, rfc3339, smi_label, unix_now, workspace_dir, Catalogue, Mib,
    MibKind, NetSnmp, Trap, VarLine, ROOT, SYS_UPTIME_0,
};
use mailward_e2e::stats::{Metrics, StatsSetup};
use mailward_e2e::tools::{is_root, output_text, smtp_source};
use mailward_e2e::*;

/// How long the subtree may take to answer after the daemon greets.
const SUBTREE_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a notification may take to reach snmptrapd.
const TRAP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the traffic may take to settle.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(40);

/// How long the SNMP view is served before it is rebuilt (daemon/src/snmp.rs
/// VIEW_TTL), plus a margin: waited before a walk that must see settled
/// traffic.
const VIEW_TTL: Duration = Duration::from_millis(1100);

/// The alert thresholds are sampled every 10 s (daemon snmp::ALERT_EVERY);
/// a crossing must be notified within this.
const ALERT_DEADLINE: Duration = Duration::from_secs(15);

/// Objects whose values move between two readings however still the
/// traffic is (time, CPU, memory, descriptors, disk, idle outbound
/// connections, and the AgentX requests that the readings themselves
/// make): compared for presence and type only.
const MOVING_OBJECTS: &[&str] = &[
    "mwUptime",
    "mwAgentxRequests",
    "mwCpuTime",
    "mwMemoryResident",
    "mwOpenFiles",
    "mwSpoolFreeOctets",
    "mwSessionsCount",
    // An age: a second more each second while a deferred message waits.
    "mwQueueOldestDeferred",
];

/// The same for /metrics, by flat key.
const MOVING_METRICS: &[&str] = &[
    "process_cpu_seconds_total",
    "mailward_agentx_requests_total",
    "process_resident_memory_bytes",
    "process_open_fds",
    "mailward_spool_free_bytes",
    "mailward_sessions{direction=\"out\"}",
    "mailward_sessions{direction=\"in\"}",
    "mailward_queue_oldest_deferred_seconds",
];

/// A daemon with metrics and statistics on, its AgentX master a private
/// snmpd, the next hop an smtp-sink for everything but `*@deferred.test`
/// (a port nobody listens on, tried once an hour). Dropped in field order.
struct Rig {
    daemon: Daemon,
    snmp: NetSnmp,
    sink: Sink,
    stats: StatsSetup,
    config: Config,
    dir: TestDir,
}

impl Rig {
    /// Starts snmptrapd, snmpd, a sink and Mailward (config changed by
    /// `tweak`); returns once Mailward's subtree answers through snmpd.
    fn start(name: &str, tweak: impl FnOnce(Config, &Path) -> Config) -> Result<Rig> {
        Rig::start_after(name, 0, tweak)
    }

    /// Like [`Rig::start`], but Mailward starts only once snmpd's
    /// sysUpTime.0 has reached `master_ticks`: its first notifications
    /// are raised on a master clock well past 0, so a trap stamped on any
    /// other clock shows.
    fn start_after(
        name: &str,
        master_ticks: u64,
        tweak: impl FnOnce(Config, &Path) -> Config,
    ) -> Result<Rig> {
        let dir = TestDir::new(name)?;
        let snmp = NetSnmp::start(dir.path())?;
        if master_ticks > 0 {
            wait_until(
                "snmpd's sysUpTime.0 to pass the head start",
                Duration::from_secs(30),
                || Ok((snmp.sys_uptime()? >= master_ticks).then_some(())),
            )?;
        }
        let sink = Sink::start(dir.path(), "sink")?;
        let stats = StatsSetup::new(dir.path());
        let config = snmp_config(Config::new(dir.path()), &snmp.agentx_setting())
            .route_to_port("*@deferred.test", free_port())
            .route_to_port("*", sink.port);
        // The tweak comes last: a test may narrow statistics.options.
        let config = tweak(stats.apply(config), dir.path());
        let daemon = Daemon::start(&config)?;
        let rig = Rig {
            daemon,
            snmp,
            sink,
            stats,
            config,
            dir,
        };
        rig.snmp
            .wait_subtree(SUBTREE_TIMEOUT)
            .with_context(|| rig.context())?;
        Ok(rig)
    }

    /// Waits until the sink has `delivered` messages, the queue holds
    /// `queued` (each tried once), and no inbound session is open; returns
    /// the last scrape.
    fn settle(&self, delivered: usize, queued: usize) -> Result<Metrics> {
        self.stats.settle(
            &self.daemon,
            &self.sink,
            (delivered, queued),
            SETTLE_TIMEOUT,
            |_| true,
        )
    }

    /// The daemon's and net-snmp's logs, for failure messages.
    fn context(&self) -> String {
        format!(
            "test directory: {}\n----- mailward log -----\n{}\n----- net-snmp -----\n{}",
            self.dir.path().display(),
            self.daemon.log(),
            self.snmp.logs()
        )
    }
}

/// The SNMP settings of these tests: the master at `socket`, pings every
/// second, every notification category on; mail for example.com and
/// deferred.test accepted from anyone, other domains refused (relay only
/// from 10/8); one delivery attempt an hour.
fn snmp_config(config: Config, socket: &str) -> Config {
    config
        .set_list("network", "relay_networks", &["10.0.0.0/8"])
        .set_list(
            "network",
            "protected_domains",
            &["example.com", "deferred.test"],
        )
        .set_str("timeouts", "min_backoff", "1h")
        .set_str("timeouts", "max_backoff", "1h")
        .set_str("agentx", "socket", socket)
        .set_str("agentx", "ping_interval", "1s")
        .set_str("agentx", "timeout", "1s")
        .set_list("snmp", "traps", &["config", "admin", "update"])
}

/// The queue IDs of `250 ... queued as ID` replies in a transcript.
fn queued_ids(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            l.split_once("queued as ")
                .map(|(_, id)| id.trim().to_string())
        })
        .collect()
}

/// One message with swaks; returns its queue ID.
fn send(port: u16, from: &str, to: &str) -> Result<String> {
    let server = format!("127.0.0.1:{port}");
    let out = swaks(&[
        "--server",
        &server,
        "--ehlo",
        "client.test",
        "--from",
        from,
        "--to",
        to,
    ])?;
    let text = output_text(&out);
    queued_ids(&text)
        .into_iter()
        .next()
        .with_context(|| format!("swaks to {to}: no 250 queued:\n{text}"))
}

/// A relay attempt, which must be refused with 554 5.7.1 at RCPT.
fn relay_attempt(port: u16) -> Result<()> {
    let server = format!("127.0.0.1:{port}");
    let out = swaks(&[
        "--server",
        &server,
        "--ehlo",
        "client.test",
        "--from",
        "alice@sender.test",
        "--to",
        "victim@elsewhere.test",
    ])?;
    let text = output_text(&out);
    ensure!(
        text.contains("554 5.7.1") && queued_ids(&text).is_empty(),
        "the relay attempt was not refused with 554 5.7.1:\n{text}"
    );
    Ok(())
}

/// `count` messages in `sessions` sessions with smtp-source; returns the
/// queue IDs.
fn source(port: u16, sessions: usize, count: usize, to: &str) -> Result<Vec<String>> {
    let target = format!("127.0.0.1:{port}");
    let (s, m) = (sessions.to_string(), count.to_string());
    let out = smtp_source(&[
        "-v",
        "-s",
        &s,
        "-m",
        &m,
        "-l",
        "1024",
        "-f",
        "load@source.test",
        "-t",
        to,
        &target,
    ])?;
    let text = output_text(&out);
    ensure!(out.status.success(), "smtp-source failed:\n{text}");
    let ids = queued_ids(&text);
    ensure!(
        ids.len() == count,
        "smtp-source: {} of {count} messages queued:\n{text}",
        ids.len()
    );
    Ok(ids)
}

/// The flat key of a sample: `name` or `name{k="v"}`.
fn metric_key(name: &str, label: Option<(&str, &str)>) -> String {
    match label {
        Some((k, v)) => format!("{name}{{{k}=\"{v}\"}}"),
        None => name.to_string(),
    }
}

// ---- 1. the MIB -----------------------------------------------------------

/// `mwConfigFile.0` under the default root: the first varbind of a few
/// notifications.
const ROOT_CONFIG_FILE_0: &str = ".1.3.6.1.4.1.32473.25.1.1.1.0";

#[test]
fn mib_lints_clean_and_every_object_resolves() -> Result<()> {
    let dir = TestDir::new("snmp-mib")?;
    let path = mib_path()?;
    let mib = Mib::load()?;
    let mut f = Failures::default();

    // smilint: silent at level 6. (-c /dev/null: no /etc/smi.conf.)
    let smilint = require("smilint", "smitools")?;
    let out = Command::new(&smilint)
        .args(["-c", "/dev/null", "-l", "6", "-s", "-m"])
        .arg(mib_file())
        .env("SMIPATH", &path)
        .output()
        .context("running smilint")?;
    let text = output_text(&out);
    f.check(text.trim().is_empty(), || {
        format!("smilint -l 6 -s -m mibs/MAILWARD-MIB.txt printed something (expected nothing):\n{text}")
    });

    // snmptranslate -Tp: the whole tree, no complaint, every node shown.
    let args: Vec<String> = ["-M", &path, "-m", "MAILWARD-MIB", "-Tp"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let out = net_snmp_tool(dir.path(), "snmptranslate", &args)?;
    let tree = String::from_utf8_lossy(&out.stdout).into_owned();
    f.check(out.status.success() && out.stderr.is_empty(), || {
        format!(
            "snmptranslate -m MAILWARD-MIB -Tp: expected a clean exit and no stderr, got {}:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let missing: Vec<String> = mib
        .nodes
        .iter()
        .filter(|n| !tree.contains(&format!("{}({})", n.name, n.arc)))
        .map(|n| format!("{}({})", n.name, n.arc))
        .collect();
    f.check(missing.is_empty(), || {
        format!(
            "snmptranslate -Tp does not show {} of the {} nodes of the MIB: {}",
            missing.len(),
            mib.nodes.len(),
            missing.join(", ")
        )
    });

    // snmptranslate -On MAILWARD-MIB::NAME for every node: the OID the MIB
    // text gives.
    let names: Vec<String> = mib
        .nodes
        .iter()
        .map(|n| format!("MAILWARD-MIB::{}", n.name))
        .collect();
    let mut args: Vec<String> = ["-M", &path, "-m", "MAILWARD-MIB", "-On"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(names.iter().cloned());
    let out = net_snmp_tool(dir.path(), "snmptranslate", &args)?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    // One OID per name, with an empty line between them.
    let got: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    if got.len() != names.len() || !out.stderr.is_empty() {
        f.push(format!(
            "snmptranslate -On of {} names: expected {} OIDs and no stderr, got {} lines; stderr:\n{}",
            names.len(),
            names.len(),
            got.len(),
            String::from_utf8_lossy(&out.stderr)
        ));
    } else {
        for (node, line) in mib.nodes.iter().zip(&got) {
            let want = mib.oid(&node.name).map(|o| format!(".{o}"));
            f.check(want.as_deref() == Some(*line), || {
                format!(
                    "snmptranslate -On MAILWARD-MIB::{} = {line}, the MIB text gives {}",
                    node.name,
                    want.as_deref().unwrap_or("no OID")
                )
            });
        }
    }
    // snmp.md's recipe for snmptrapd with the base modules only
    // (`-m SNMPv2-MIB:MAILWARD-MIB`) names a notification's varbinds:
    // the two standard ones too, which `-m MAILWARD-MIB` alone prints as
    // SNMPv2-SMI::mib-2.1.3.0 and SNMPv2-SMI::snmpModules.1.1.4.1.0
    // (walkAG 8).
    let varbinds = [
        ".1.3.6.1.2.1.1.3.0",
        ".1.3.6.1.6.3.1.1.4.1.0",
        ROOT_CONFIG_FILE_0,
    ];
    let mut args: Vec<String> = ["-M", &path, "-m", "SNMPv2-MIB:MAILWARD-MIB"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(varbinds.iter().map(|s| s.to_string()));
    let out = net_snmp_tool(dir.path(), "snmptranslate", &args)?;
    let named: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    let want = [
        "SNMPv2-MIB::sysUpTime.0",
        "SNMPv2-MIB::snmpTrapOID.0",
        "MAILWARD-MIB::mwConfigFile.0",
    ];
    f.check(named == want && out.stderr.is_empty(), || {
        format!(
            "snmptranslate -m SNMPv2-MIB:MAILWARD-MIB (snmp.md's snmptrapd recipe) names {varbinds:?} {named:?}, expected {want:?}; stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let snmp_md = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/snmp.md"))?;
    f.check(snmp_md.contains("`-m SNMPv2-MIB:MAILWARD-MIB`"), || {
        "docs/snmp.md does not give snmptrapd's -m SNMPv2-MIB:MAILWARD-MIB".to_string()
    });

    let objects = mib.object_types().count();
    let notifications = mib.notifications().count();
    // The design's eight, and the clearing of mwProductError.
    let mut names: Vec<&str> = mib.notifications().map(|n| n.name.as_str()).collect();
    names.sort_unstable();
    let mut want = vec![
        "mwProductStart",
        "mwProductStop",
        "mwProductError",
        "mwConfigReloaded",
        "mwBasesReloaded",
        "mwUpdateStatus",
        "mwObsoleteBases",
        "mwAlertThreshold",
        "mwProductErrorCleared",
    ];
    want.sort_unstable();
    f.check(objects >= 100 && names == want, || {
        format!("the MIB has {objects} OBJECT-TYPEs (expected 100+) and the notifications {names:?} (expected {want:?})")
    });
    eprintln!(
        "MIB: {} nodes ({objects} OBJECT-TYPEs, {notifications} notifications) resolved with snmptranslate",
        mib.nodes.len()
    );
    f.finish(|| format!("MIB search path: {path}"))
}

// ---- 2. snmpwalk against /metrics ------------------------------------------

/// Checks that every line of a walk names a readable object of the MIB
/// with an instance of the right shape.
fn check_names(f: &mut Failures, mib: &Mib, walk: &[VarLine], what: &str) {
    let readable: BTreeSet<&str> = mib.readable().iter().map(|n| n.name.as_str()).collect();
    let mut bad = Vec::new();
    for line in walk {
        let Some((name, instance)) = line.name_and_instance() else {
            bad.push(format!("{} (no MODULE::name)", line.oid));
            continue;
        };
        if !line.oid.starts_with("MAILWARD-MIB::") || !readable.contains(name) {
            bad.push(format!(
                "{} (not a readable object of MAILWARD-MIB)",
                line.oid
            ));
            continue;
        }
        let ok = if mib.is_column(name) {
            // One index: a number (Unsigned32) or an enumeration label.
            let index = mib.index_of(name);
            let enumerated = index.first().and_then(|i| mib.node(i)).is_some_and(|n| {
                n.syntax
                    .as_deref()
                    .is_some_and(|s| s.starts_with("INTEGER {"))
            });
            !instance.is_empty()
                && !instance.contains('.')
                && if enumerated {
                    instance.starts_with(|c: char| c.is_ascii_lowercase())
                } else {
                    instance.parse::<u32>().is_ok_and(|n| n >= 1)
                }
        } else {
            instance == "0"
        };
        if !ok {
            bad.push(format!("{} (bad instance {instance:?})", line.oid));
        }
    }
    f.check(bad.is_empty(), || {
        format!(
            "{what}: {} line(s) without a proper name (expected MAILWARD-MIB::object.instance): {}",
            bad.len(),
            bad.join(", ")
        )
    });
}

/// One value of the walk as a number comparable with /metrics: counters
/// and gauges as they are, TruthValue true(1)/false(2) as 1/0, DateAndTime
/// as unix seconds.
fn walk_number(line: &VarLine) -> Option<f64> {
    match line.kind() {
        "STRING" => parse_date_and_time_text(line.text()).map(|t| t as f64),
        "INTEGER" if line.text().starts_with("true(") => Some(1.0),
        "INTEGER" if line.text().starts_with("false(") => Some(0.0),
        _ => line.number().map(|n| n as f64),
    }
}

/// An SNMP instance and the /metrics series it must equal.
struct Twin {
    /// The MIB object (`mwMessagesRejectedCount`).
    object: String,
    /// Its instance (`0`, `relay`).
    instance: String,
    /// The Prometheus family.
    prometheus: String,
    /// The label and value of the series, if any.
    label: Option<(String, String)>,
    /// SNMP = /metrics x scale (1e6 for seconds shown as microseconds).
    scale: f64,
    /// How far apart they may be (1 for a truncated conversion).
    tolerance: f64,
}

impl Twin {
    /// `OBJECT.0` <-> the unlabelled `prometheus`, exactly.
    fn scalar(object: String, prometheus: String) -> Twin {
        Twin {
            object,
            instance: "0".into(),
            prometheus,
            label: None,
            scale: 1.0,
            tolerance: 0.0,
        }
    }
}

/// Compares every catalogue statistic's SNMP twin in `walk` with its
/// series in `m`; returns how many were compared.
fn compare_with_metrics(
    f: &mut Failures,
    mib: &Mib,
    catalogue: &Catalogue,
    walk: &[VarLine],
    m: &Metrics,
) -> usize {
    let by_oid: BTreeMap<&str, &VarLine> = walk.iter().map(|l| (l.oid.as_str(), l)).collect();
    let get = |name: &str, instance: &str| {
        by_oid
            .get(format!("MAILWARD-MIB::{name}.{instance}").as_str())
            .copied()
    };
    let mut compared = 0;
    let mut pairs: Vec<Twin> = Vec::new();
    for e in &catalogue.entries {
        match (&e.kind[..], &e.label) {
            ("histogram", _) => {
                pairs.push(Twin::scalar(
                    format!("{}Count", e.mib),
                    format!("{}_count", e.prometheus),
                ));
                // The SNMP total is an integer, truncated: microseconds
                // for seconds, thousandths for points.
                pairs.push(Twin {
                    scale: if e.unit == "seconds" { 1e6 } else { 1e3 },
                    tolerance: 1.0,
                    ..Twin::scalar(format!("{}Total", e.mib), format!("{}_sum", e.prometheus))
                });
            }
            (_, Some((label, values))) if values.is_empty() => {
                // mailward_build_info{version} <-> mwVersion.
                let snmp = get(&e.mib, "0");
                let prom = m
                    .all(&e.prometheus)
                    .find_map(|s| s.label(label).map(str::to_string));
                f.check(
                    snmp.is_some() && prom.is_some() && snmp.map(|l| l.text().trim_matches('"')) == prom.as_deref(),
                    || format!("{}.0 = {:?}, /metrics {}{{{label}}} = {prom:?}: expected the same text", e.mib, snmp.map(|l| &l.value), e.prometheus),
                );
                compared += 1;
            }
            (_, Some((label, values)))
                if mib.node(&e.mib).is_some_and(|n| {
                    !mib.is_column(&n.name) && n.kind == MibKind::ObjectType && n.syntax.is_some()
                }) =>
            {
                // An enumerated scalar (mwUpdateLastResult) <-> the one series at 1.
                let snmp = get(&e.mib, "0");
                let current: Vec<&String> = values
                    .iter()
                    .filter(|v| m.get(&e.prometheus, &[(label, v)]) == Some(1.0))
                    .collect();
                let want = current.first().map(|v| format!("{}(", smi_label(v)));
                f.check(
                    current.len() == 1 && snmp.is_some_and(|l| want.as_ref().is_some_and(|w| l.text().starts_with(w.as_str()))),
                    || format!("{}.0 = {:?}; /metrics {} at 1 for {current:?}: expected that one value", e.mib, snmp.map(|l| &l.value), e.prometheus),
                );
                compared += 1;
            }
            (_, Some((label, values))) => {
                for v in values {
                    pairs.push(Twin {
                        instance: smi_label(v),
                        label: Some((label.clone(), v.clone())),
                        ..Twin::scalar(format!("{}Count", e.mib), e.prometheus.clone())
                    });
                }
            }
            (_, None) => {
                // microseconds in the MIB for seconds in Prometheus.
                let micro = mib
                    .node(&e.mib)
                    .is_some_and(|n| n.units.as_deref() == Some("microseconds"))
                    && e.unit == "seconds";
                let twin = Twin::scalar(e.mib.clone(), e.prometheus.clone());
                pairs.push(if micro {
                    Twin {
                        scale: 1e6,
                        tolerance: 1.0,
                        ..twin
                    }
                } else {
                    twin
                });
            }
        }
    }
    // mwPolicyGroupTable: row 1 is the default group.
    for (prom, column) in &catalogue.group_columns {
        pairs.push(Twin {
            instance: "1".into(),
            label: Some(("group".into(), "default".into())),
            ..Twin::scalar(column.clone(), prom.clone())
        });
    }
    for Twin {
        object,
        instance,
        prometheus: prom,
        label,
        scale,
        tolerance,
    } in pairs
    {
        let key = metric_key(&prom, label.as_ref().map(|(k, v)| (k.as_str(), v.as_str())));
        let snmp = get(&object, &instance);
        let value = match &label {
            Some((k, v)) => m.get(&prom, &[(k.as_str(), v.as_str())]),
            None => m.get(&prom, &[]),
        };
        let (Some(line), Some(value)) = (snmp, value) else {
            f.push(format!(
                "{object}.{instance} <-> {key}: SNMP {:?}, /metrics {value:?}: both expected",
                snmp.map(|l| &l.value)
            ));
            continue;
        };
        compared += 1;
        let Some(n) = walk_number(line) else {
            f.push(format!(
                "{object}.{instance} = {}: not a number",
                line.value
            ));
            continue;
        };
        let expected = (value * scale).floor();
        if MOVING_METRICS.contains(&key.as_str()) {
            // Moving: the walk came first, so a counter may only have grown.
            if prom.ends_with("_total") {
                f.check(n <= expected + tolerance, || {
                    format!(
                        "{object}.{instance} = {n} > {key} x {scale} = {expected} read after it"
                    )
                });
            }
            continue;
        }
        f.check((n - expected).abs() <= tolerance, || {
            format!(
                "{object}.{instance} = {} but {key} = {value} (expected {expected})",
                line.value
            )
        });
    }
    // Top-N tables: row r <-> the series with rank r.
    for t in &catalogue.top_tables {
        let prefix = t.mib_table.trim_end_matches("Table");
        let rows = m.all(&t.prometheus).count();
        let snmp_rows = walk
            .iter()
            .filter(|l| {
                l.name_and_instance()
                    .is_some_and(|(n, _)| n == format!("{prefix}Count"))
            })
            .count();
        f.check(rows == snmp_rows, || {
            format!(
                "{}: {snmp_rows} rows in SNMP, {rows} series of {} in /metrics",
                t.mib_table, t.prometheus
            )
        });
        for s in m.all(&t.prometheus) {
            let rank = s.label("rank").unwrap_or("?");
            let item =
                get(&format!("{prefix}Item"), rank).map(|l| l.text().trim_matches('"').to_string());
            let count = get(&format!("{prefix}Count"), rank).and_then(VarLine::number);
            f.check(
                item.as_deref() == s.label(&t.item_label)
                    && count.map(|c| c as f64) == Some(s.value),
                || {
                    format!(
                        "{prefix} rank {rank}: SNMP ({item:?}, {count:?}), /metrics ({:?}, {})",
                        s.label(&t.item_label),
                        s.value
                    )
                },
            );
            compared += 1;
        }
    }
    compared
}

#[test]
fn snmpwalk_names_every_object_and_counters_equal_metrics() -> Result<()> {
    let mib = Mib::load()?;
    let catalogue = Catalogue::load()?;
    let rig = Rig::start("snmp-walk", |c, _| c)?;
    let port = rig.daemon.port;
    let mut f = Failures::default();

    // 5 delivered, 1 deferred, 1 relay attempt refused.
    source(port, 1, 5, "rcpt@example.com")?;
    send(port, "carol@sender.test", "held@deferred.test")?;
    relay_attempt(port)?;
    rig.settle(5, 1).with_context(|| rig.context())?;
    pause(VIEW_TTL);

    let walk = rig
        .snmp
        .lines("snmpwalk", &[], &["MAILWARD-MIB::mailwardMIB"])
        .with_context(|| rig.context())?;
    let m = rig.stats.scrape()?;

    check_names(&mut f, &mib, &walk, "snmpwalk");

    // Every readable object shows up, except the rows of top-N tables
    // that /metrics has empty too.
    let seen: BTreeSet<&str> = walk
        .iter()
        .filter_map(|l| l.name_and_instance().map(|(n, _)| n))
        .collect();
    let empty_tops: Vec<String> = catalogue
        .top_tables
        .iter()
        .filter(|t| m.all(&t.prometheus).next().is_none())
        .map(|t| t.mib_table.trim_end_matches("Table").to_string())
        .collect();
    let unseen: Vec<&str> = mib
        .readable()
        .iter()
        .map(|n| n.name.as_str())
        .filter(|n| !seen.contains(n) && !empty_tops.iter().any(|p| n.starts_with(p.as_str())))
        .collect();
    f.check(unseen.is_empty(), || {
        format!(
            "readable objects missing from the walk: {}",
            unseen.join(", ")
        )
    });

    let compared = compare_with_metrics(&mut f, &mib, &catalogue, &walk, &m);

    // What an operator expects from this traffic.
    let value = |name: &str| {
        walk.iter()
            .find(|l| l.oid == format!("MAILWARD-MIB::{name}"))
            .and_then(walk_number)
    };
    for (name, want) in [
        ("mwMessagesReceived.0", 6.0),
        ("mwMessagesRejectedCount.relay", 1.0),
        ("mwDeliveriesCount.delivered", 5.0),
        ("mwDeliveriesCount.deferred", 1.0),
        ("mwQueueMessages.0", 1.0),
        ("mwPolicyGroupMessages.1", 6.0),
        ("mwRawRecords.0", 6.0),
        ("mwAgentxConnected.0", 1.0),
        ("mwAgentxRegistered.0", 1.0),
        ("mwConfigReloads.0", 0.0),
        // The one deferred recipient's domain heads its top-N table.
        ("mwTopDeferredDomainCount.1", 1.0),
    ] {
        let got = value(name);
        f.check(got == Some(want), || {
            format!("{name}: expected {want}, walk has {got:?}")
        });
    }
    let rows = walk
        .iter()
        .filter(|l| l.oid.starts_with("MAILWARD-MIB::mwRawRecentTime."))
        .count();
    f.check(rows == 6, || {
        format!("mwRawRecentTable: expected 6 rows (one per message and recipient), found {rows}")
    });
    let config_file = walk
        .iter()
        .find(|l| l.oid == "MAILWARD-MIB::mwConfigFile.0")
        .map(|l| l.text().trim_matches('"').to_string());
    let want_file = rig.config.path().display().to_string();
    f.check(config_file.as_deref() == Some(want_file.as_str()), || {
        format!("mwConfigFile.0 = {config_file:?}, expected {want_file:?}")
    });
    let deferred = walk
        .iter()
        .find(|l| l.oid == "MAILWARD-MIB::mwTopDeferredDomainItem.1")
        .map(|l| l.text().trim_matches('"').to_string());
    f.check(deferred.as_deref() == Some("deferred.test"), || {
        format!("mwTopDeferredDomainItem.1 = {deferred:?}, expected \"deferred.test\"")
    });
    let group = walk
        .iter()
        .find(|l| l.oid == "MAILWARD-MIB::mwPolicyGroupName.1")
        .map(|l| l.text().trim_matches('"').to_string());
    f.check(group.as_deref() == Some("default"), || {
        format!("mwPolicyGroupName.1 = {group:?}, expected \"default\"")
    });
    let uptime = value("mwUptime.0");
    f.check(uptime.is_some_and(|u| u > 0.0), || {
        format!("mwUptime.0 = {uptime:?}, expected > 0")
    });
    let started = value("mwStartTime.0");
    let now = unix_now() as f64;
    f.check(started.is_some_and(|s| s <= now && s > now - 300.0), || {
        format!("mwStartTime.0 = {started:?}, expected within the last 5 minutes of {now}")
    });

    // No update attempted yet: "never", the all-zero DateAndTime the MIB
    // documents, not a date in 1970.
    let last_check = walk
        .iter()
        .find(|l| l.oid == "MAILWARD-MIB::mwUpdateLastCheck.0")
        .map(|l| l.value.clone());
    f.check(
        last_check
            .as_deref()
            .is_some_and(|v| v.ends_with(" 0-0-0,0:0:0.0")),
        || {
            format!("mwUpdateLastCheck.0 = {last_check:?} before any update, expected STRING: 0-0-0,0:0:0.0 ('0000000000000000'H: never)")
        },
    );

    eprintln!(
        "snmpwalk: {} objects, {compared} compared with their /metrics twins",
        walk.len()
    );
    f.finish(|| {
        let text: Vec<String> = walk
            .iter()
            .map(|l| format!("{} = {}", l.oid, l.value))
            .collect();
        format!("----- walk -----\n{}\n{}", text.join("\n"), rig.context())
    })
}

// ---- 3. snmpbulkwalk, missing instances, the end of the subtree -----------

/// mwPolicyGroupTable as (index, name, messages), from a walk of it.
fn group_rows(rig: &Rig) -> Result<Vec<(String, String, Option<f64>)>> {
    let walk = rig
        .snmp
        .lines("snmpwalk", &[], &["MAILWARD-MIB::mwPolicyGroupTable"])
        .with_context(|| rig.context())?;
    let rows = walk
        .iter()
        .filter_map(|l| {
            let row = l.oid.strip_prefix("MAILWARD-MIB::mwPolicyGroupName.")?;
            let messages = walk
                .iter()
                .find(|m| m.oid == format!("MAILWARD-MIB::mwPolicyGroupMessages.{row}"))
                .and_then(walk_number);
            Some((
                row.to_string(),
                l.text().trim_matches('"').to_string(),
                messages,
            ))
        })
        .collect();
    Ok(rows)
}

/// Checks that mwPolicyGroupTable, walked after the view's cache expired,
/// has the rows `want` (index, name, messages).
fn check_group_rows(
    f: &mut Failures,
    rig: &Rig,
    when: &str,
    want: &[(&str, &str, f64)],
) -> Result<()> {
    pause(VIEW_TTL);
    let got = group_rows(rig)?;
    let want: Vec<(String, String, Option<f64>)> = want
        .iter()
        .map(|(i, name, n)| (i.to_string(), name.to_string(), Some(*n)))
        .collect();
    f.check(got == want, || {
        format!("mwPolicyGroupTable {when}: {got:?}, expected {want:?}")
    });
    Ok(())
}

#[test]
fn a_policy_group_keeps_its_row_across_a_reload_until_stats_reset() -> Result<()> {
    let rig = Rig::start("snmp-groups", |c, _| {
        c.set_list("group.beta", "recipients", &["beta@example.com"])
    })?;
    let mut f = Failures::default();
    send(rig.daemon.port, "carol@sender.test", "beta@example.com")?;
    rig.settle(1, 0).with_context(|| rig.context())?;
    check_group_rows(
        &mut f,
        &rig,
        "at start",
        &[("1", "default", 0.0), ("2", "beta", 1.0)],
    )?;
    // A reload adds alpha, whose name sorts first: beta keeps row 2 and its
    // count, alpha gets row 3.
    let reloads = rig
        .daemon
        .full_log()
        .matches("Configuration reloaded.")
        .count();
    rig.daemon.write_config(
        &rig.config
            .clone()
            .set_list("group.alpha", "recipients", &["alpha@example.com"])
            .render(),
    )?;
    rig.daemon.sighup()?;
    wait_until("the reload", Duration::from_secs(10), || {
        Ok((rig
            .daemon
            .full_log()
            .matches("Configuration reloaded.")
            .count()
            > reloads)
            .then_some(()))
    })?;
    check_group_rows(
        &mut f,
        &rig,
        "after the reload that adds alpha",
        &[
            ("1", "default", 0.0),
            ("2", "beta", 1.0),
            ("3", "alpha", 0.0),
        ],
    )?;
    let m = rig.stats.scrape()?;
    f.check(
        m.get("mailward_group_messages_total", &[("group", "alpha")]) == Some(0.0),
        || "alpha is exported at 0 from the reload on".into(),
    );
    // stats reset numbers the rows afresh, by name, all at zero.
    rig.daemon.cli_ok(&["stats", "reset"])?;
    check_group_rows(
        &mut f,
        &rig,
        "after stats reset",
        &[
            ("1", "default", 0.0),
            ("2", "alpha", 0.0),
            ("3", "beta", 0.0),
        ],
    )?;
    f.finish(|| rig.context())
}

#[test]
fn snmpbulkwalk_of_hundreds_of_rows_matches_the_walk_and_ends_at_our_subtree() -> Result<()> {
    let mib = Mib::load()?;
    let rig = Rig::start("snmp-bulk", |c, _| c)?;
    let port = rig.daemon.port;
    let mut f = Failures::default();

    source(port, 5, 60, "rcpt@example.com")?;
    rig.settle(60, 0).with_context(|| rig.context())?;
    pause(VIEW_TTL);

    let root = "MAILWARD-MIB::mailwardMIB";
    let t = Instant::now();
    let walk = rig.snmp.lines("snmpwalk", &[], &[root])?;
    let walk_time = t.elapsed();
    let t = Instant::now();
    let bulk = rig.snmp.lines("snmpbulkwalk", &[], &[root])?;
    let bulk_time = t.elapsed();
    let bulk100 = rig.snmp.lines("snmpbulkwalk", &["-Cr100"], &[root])?;

    check_names(&mut f, &mib, &bulk, "snmpbulkwalk");
    let rows = bulk
        .iter()
        .filter(|l| l.name_and_instance().is_some_and(|(n, _)| mib.is_column(n)))
        .count();
    f.check(rows >= 100, || {
        format!("snmpbulkwalk: {rows} table cells, expected 100+")
    });
    let raw_rows = bulk
        .iter()
        .filter(|l| l.oid.starts_with("MAILWARD-MIB::mwRawRecentTime."))
        .count();
    f.check(raw_rows == 50, || {
        format!("mwRawRecentTable after 60 messages: expected 50 rows, found {raw_rows}")
    });
    let recipients_ok = bulk
        .iter()
        .filter(|l| l.oid.starts_with("MAILWARD-MIB::mwRawRecentRecipient."))
        .all(|l| l.text().trim_matches('"') == "rcpt@example.com");
    f.check(recipients_ok, || {
        "mwRawRecentRecipient: expected rcpt@example.com in every row".into()
    });

    // The same objects, in the same order, with the same values.
    for (what, other) in [("snmpbulkwalk", &bulk), ("snmpbulkwalk -Cr100", &bulk100)] {
        let walk_oids: Vec<&str> = walk.iter().map(|l| l.oid.as_str()).collect();
        let other_oids: Vec<&str> = other.iter().map(|l| l.oid.as_str()).collect();
        if walk_oids != other_oids {
            let a: BTreeSet<&str> = walk_oids.iter().copied().collect();
            let b: BTreeSet<&str> = other_oids.iter().copied().collect();
            f.push(format!(
                "{what}: {} lines vs snmpwalk's {}; only in snmpwalk: {:?}; only in {what}: {:?}",
                other.len(),
                walk.len(),
                a.difference(&b).take(10).collect::<Vec<_>>(),
                b.difference(&a).take(10).collect::<Vec<_>>()
            ));
            continue;
        }
        for (w, b) in walk.iter().zip(other.iter()) {
            let name = w.name_and_instance().map_or("", |(n, _)| n);
            let same = if MOVING_OBJECTS.contains(&name) {
                w.kind() == b.kind()
            } else {
                w.value == b.value
            };
            f.check(same, || {
                format!("{what}: {} = {}, snmpwalk gave {}", b.oid, b.value, w.value)
            });
        }
    }

    // It ends at the last readable object of the MIB.
    let last = mib
        .readable()
        .into_iter()
        .max_by(|a, b| {
            oid_cmp(
                &mib.oid(&a.name).unwrap_or_default(),
                &mib.oid(&b.name).unwrap_or_default(),
            )
        })
        .map(|n| n.name.clone())
        .unwrap_or_default();
    let want_last = if mib.is_column(&last) {
        None
    } else {
        Some(format!("MAILWARD-MIB::{last}.0"))
    };
    let got_last = bulk.last().map(|l| l.oid.clone());
    f.check(
        want_last.is_some()
            && got_last == want_last
            && walk.last().map(|l| &l.oid) == got_last.as_ref(),
        || {
            format!(
                "the walks end at {got_last:?} (snmpwalk {:?}), expected {want_last:?}",
                walk.last().map(|l| &l.oid)
            )
        },
    );

    // snmpget of a missing instance and of a missing object.
    let out = rig
        .snmp
        .run("snmpget", &[], &["MAILWARD-MIB::mwMessagesReceived.1"])?;
    let text = output_text(&out);
    f.check(text.contains("mwMessagesReceived.1 = No Such Instance currently exists at this OID"), || {
        format!("snmpget mwMessagesReceived.1: expected \"No Such Instance currently exists at this OID\", got:\n{text}")
    });
    let out = rig
        .snmp
        .run("snmpget", &["-On"], &[&format!(".{ROOT}.1.1.99.0")])?;
    let text = output_text(&out);
    f.check(text.contains("No Such Object available on this agent at this OID"), || {
        format!("snmpget of an object we do not have (.{ROOT}.1.1.99.0): expected \"No Such Object available on this agent at this OID\", got:\n{text}")
    });

    // snmpgetnext on our last OID leaves the subtree for snmpd's next object.
    let last_numeric = format!(".{}.0", mib.oid(&last).unwrap_or_default());
    match rig.snmp.lines("snmpgetnext", &["-On"], &[&last_numeric]) {
        Ok(next) => {
            let next_oid = next.first().map(|l| l.oid.clone()).unwrap_or_default();
            f.check(
                next.len() == 1 && !oid_under(&next_oid, ROOT) && oid_cmp(&next_oid, &last_numeric).is_gt()
                    && !next[0].value.contains("No more variables"),
                || format!("snmpgetnext {last_numeric}: expected one OID after it outside .{ROOT}, got {next:?}"),
            );
        }
        Err(e) => f.push(format!("snmpgetnext {last_numeric}: {e:#}")),
    }
    match rig.snmp.lines("snmpbulkget", &["-On", "-Cn0", "-Cr3"], &[&last_numeric]) {
        Ok(next) => f.check(next.len() == 3 && next.iter().all(|l| !oid_under(&l.oid, ROOT)), || {
            format!("snmpbulkget -Cr3 {last_numeric}: expected 3 OIDs outside .{ROOT}, got {next:?}")
        }),
        Err(e) => f.push(format!("snmpbulkget {last_numeric}: {e:#}")),
    }

    eprintln!(
        "timing: snmpwalk of {} objects {walk_time:?}, snmpbulkwalk {bulk_time:?} ({rows} table cells)",
        walk.len()
    );
    f.finish(|| rig.context())
}

// ---- 4. notifications ----------------------------------------------------------

/// What a varbind's value must be.
enum Want {
    /// Exactly this `TYPE: VALUE`.
    Is(String),
    /// A non-empty `STRING: "..."`.
    Text,
    /// A DateAndTime (`Hex-STRING`) of this unix time.
    Time(i64),
}

/// Checks a notification: sysUpTime.0, snmpTrapOID.0 = the OID of `name`,
/// then exactly the OBJECTS of its NOTIFICATION-TYPE (instance .0) in
/// order, with the values of `wants`.
fn check_trap(f: &mut Failures, mib: &Mib, name: &str, trap: &Trap, wants: &[(&str, Want)]) {
    let objects = mib
        .node(name)
        .map(|n| n.objects.clone())
        .unwrap_or_default();
    let names: Vec<&str> = wants.iter().map(|(n, _)| *n).collect();
    f.check(objects == names, || {
        format!("{name}: the MIB lists OBJECTS {objects:?}, the test expects {names:?}")
    });
    let vb = &trap.varbinds;
    f.check(vb.len() == 2 + wants.len(), || {
        format!(
            "{name}: {} varbinds, expected sysUpTime.0, snmpTrapOID.0 and {names:?}:\n{}",
            vb.len(),
            trap.line
        )
    });
    f.check(
        vb.first()
            .is_some_and(|(o, v)| o == SYS_UPTIME_0 && v.starts_with("Timeticks: (")),
        || {
            format!(
                "{name}: the first varbind is not sysUpTime.0 Timeticks:\n{}",
                trap.line
            )
        },
    );
    let want_oid = mib.oid(name).unwrap_or_default();
    f.check(
        trap.trap_oid() == Some(want_oid.as_str())
            && vb.get(1).is_some_and(|(o, _)| o == "1.3.6.1.6.3.1.1.4.1.0"),
        || {
            format!(
                "{name}: snmpTrapOID.0 = {:?} (second varbind), expected .{want_oid}:\n{}",
                trap.trap_oid(),
                trap.line
            )
        },
    );
    for (i, (object, want)) in wants.iter().enumerate() {
        let want_oid = format!("{}.0", mib.oid(object).unwrap_or_default());
        let Some((oid, value)) = vb.get(i + 2) else {
            continue;
        };
        f.check(*oid == want_oid, || {
            format!(
                "{name}: varbind {} is .{oid}, expected {object}.0 (.{want_oid})",
                i + 3
            )
        });
        let ok = match want {
            Want::Is(v) => value == v,
            Want::Text => value.starts_with("STRING: \"") && value.len() > "STRING: \"\"".len(),
            Want::Time(t) => parse_date_and_time_hex(value) == Some(*t),
        };
        f.check(ok, || {
            let expected = match want {
                Want::Is(v) => v.clone(),
                Want::Text => "a non-empty STRING".into(),
                Want::Time(t) => format!("the DateAndTime of {}", rfc3339(*t)),
            };
            format!("{name}: {object}.0 = {value}, expected {expected}")
        });
    }
}

/// Writes a bases manifest.
fn write_manifest(dir: &Path, version: &str, released: i64, records: u64) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("manifest.toml"),
        format!(
            "version = \"{version}\"\nreleased = \"{}\"\nrecords = {records}\n",
            rfc3339(released)
        ),
    )?;
    // A set needs a rule file that compiles to be loaded at all.
    std::fs::write(
        dir.join("rules.yar"),
        "rule mailward_e2e_snmp_marker { strings: $a = \"MAILWARD-E2E-SNMP-MARKER\" condition: $a }\n",
    )?;
    Ok(())
}

#[test]
fn every_notification_arrives_with_its_trap_oid_and_varbinds() -> Result<()> {
    let mib = Mib::load()?;
    const OLD_RELEASE: i64 = 1_577_836_800; // 2020-01-01, older than 7 days
    let mut bases_dir = None;
    // snmpd runs 2 s before Mailward starts (see the mwProductStart check).
    const HEAD_START: u64 = 200;
    let mut rig = Rig::start_after("snmp-traps", HEAD_START, |c, dir| {
        let bases = dir.join("bases");
        write_manifest(&bases, "2020.01.01", OLD_RELEASE, 12).expect("writing the manifest");
        bases_dir = Some(bases.clone());
        c.set_str("bases", "av", &bases.display().to_string())
            .set_str("bases", "obsolete_after", "7d")
            .set("snmp", "alert_thresholds", "{ queue_messages = 0 }")
    })?;
    let bases = bases_dir.expect("set");
    let port = rig.daemon.port;
    let config_file = rig.config.path().display().to_string();
    let config_text = rig.config.render();
    let mut f = Failures::default();
    let m = rig.stats.scrape()?;
    let version = m
        .all("mailward_build_info")
        .find_map(|s| s.label("version").map(str::to_string))
        .unwrap_or_default();
    let quoted = |s: &str| format!("STRING: \"{s}\"");

    // At start: mwProductStart, and mwObsoleteBases for the old manifest.
    if let Some((_, t)) = f.step(
        "mwProductStart at start",
        rig.snmp.wait_trap(1, 0, TRAP_TIMEOUT),
    ) {
        // Raised before the AgentX session opened, it carries snmpd's
        // clock when it was raised: after the head start snmpd had before
        // Mailward started, and not after snmpd's clock now.
        let now = rig.snmp.sys_uptime()?;
        let at = t.uptime();
        f.check(at.is_some_and(|u| u >= HEAD_START && u <= now), || {
            format!("mwProductStart's sysUpTime.0 = {at:?}, expected snmpd's clock when Mailward started: between {HEAD_START} (snmpd's uptime before Mailward started) and {now} (snmpd's uptime now)")
        });
        check_trap(
            &mut f,
            &mib,
            "mwProductStart",
            &t,
            &[
                ("mwVersion", Want::Is(quoted(&version))),
                ("mwConfigFile", Want::Is(quoted(&config_file))),
            ],
        );
    }
    if let Some((_, t)) = f.step(
        "mwObsoleteBases at start (manifest of 2020-01-01, obsolete_after 7d)",
        rig.snmp.wait_trap(7, 0, TRAP_TIMEOUT),
    ) {
        check_trap(
            &mut f,
            &mib,
            "mwObsoleteBases",
            &t,
            &[
                ("mwBasesReleased", Want::Time(OLD_RELEASE)),
                ("mwBasesObsolete", Want::Is("INTEGER: 1".into())),
            ],
        );
    }

    // A deferred message puts the queue over queue_messages = 0.
    let held = send(port, "carol@sender.test", "held@deferred.test")?;
    let queued_at = Instant::now();

    // SIGHUP with the same valid config: mwConfigReloaded success(1).
    let n = rig.snmp.traps().len();
    rig.daemon.sighup()?;
    if let Some((_, t)) = f.step(
        "mwConfigReloaded after SIGHUP (valid config)",
        rig.snmp.wait_trap(4, n, TRAP_TIMEOUT),
    ) {
        check_trap(
            &mut f,
            &mib,
            "mwConfigReloaded",
            &t,
            &[
                ("mwConfigFile", Want::Is(quoted(&config_file))),
                ("mwReloadResult", Want::Is("INTEGER: 1".into())),
                ("mwNotifyMessage", Want::Text),
            ],
        );
    }

    // New bases + SIGHUP: mwBasesReloaded with their records and release.
    let new_release = unix_now() - 3600;
    write_manifest(&bases, "2.0", new_release, 34)?;
    let n = rig.snmp.traps().len();
    rig.daemon.sighup()?;
    if let Some((_, t)) = f.step(
        "mwBasesReloaded after a new manifest and SIGHUP",
        rig.snmp.wait_trap(5, n, TRAP_TIMEOUT),
    ) {
        check_trap(
            &mut f,
            &mib,
            "mwBasesReloaded",
            &t,
            &[
                ("mwBasesRecords", Want::Is("Gauge32: 34".into())),
                ("mwBasesReleased", Want::Time(new_release)),
            ],
        );
    }
    let _ = rig.snmp.wait_trap(4, n, TRAP_TIMEOUT);

    // SIGHUP with a broken config: failure(2), and mail still flows.
    rig.daemon
        .write_config(&format!("{config_text}\n[broken\n"))?;
    let n = rig.snmp.traps().len();
    rig.daemon.sighup()?;
    if let Some((_, t)) = f.step(
        "mwConfigReloaded after SIGHUP (broken config)",
        rig.snmp.wait_trap(4, n, TRAP_TIMEOUT),
    ) {
        check_trap(
            &mut f,
            &mib,
            "mwConfigReloaded",
            &t,
            &[
                ("mwConfigFile", Want::Is(quoted(&config_file))),
                ("mwReloadResult", Want::Is("INTEGER: 2".into())),
                ("mwNotifyMessage", Want::Text),
            ],
        );
    }
    f.step(
        "a message after the refused reload",
        send(port, "dan@sender.test", "flow@example.com"),
    );
    f.step(
        "its delivery to the sink",
        rig.sink.wait_for_count(1, DELIVERY_TIMEOUT),
    );
    f.check(rig.daemon.is_running(), || {
        "the daemon stopped after a refused reload".into()
    });
    // The CLI reads the same file: put the good one back (no SIGHUP).
    rig.daemon.write_config(&config_text)?;
    pause(VIEW_TTL);
    match rig.snmp.lines(
        "snmpget",
        &[],
        &[
            "MAILWARD-MIB::mwConfigReloads.0",
            "MAILWARD-MIB::mwConfigReloadFailures.0",
        ],
    ) {
        Ok(v) => {
            let got: Vec<Option<u64>> = v.iter().map(VarLine::number).collect();
            f.check(got == [Some(2), Some(1)], || {
                format!("mwConfigReloads.0, mwConfigReloadFailures.0 = {got:?}, expected [2, 1]")
            });
        }
        Err(e) => f.push(format!("snmpget of the reload counters: {e:#}")),
    }
    // The same counts on /metrics (walkM 2: they were SNMP-only).
    match rig.stats.scrape() {
        Ok(m) => {
            let got = ["ok", "refused"].map(|r| {
                m.value("mailward_config_reloads_total", &[("result", r)])
                    .ok()
            });
            f.check(got == [Some(2.0), Some(1.0)], || {
                format!("mailward_config_reloads_total ok, refused = {got:?}, expected [2, 1]")
            });
        }
        Err(e) => f.push(format!("scraping /metrics for the reload counters: {e:#}")),
    }

    // The queue threshold: raised within ALERT_DEADLINE of the message...
    let raised = rig
        .snmp
        .wait_trap(8, 0, ALERT_DEADLINE.saturating_sub(queued_at.elapsed()));
    let raised_after = queued_at.elapsed();
    let mut cleared_from = 0;
    if let Some((pos, t)) = f.step(&format!("mwAlertThreshold raised within {ALERT_DEADLINE:?} of a deferred message (queue_messages = 0)"), raised) {
        cleared_from = pos + 1;
        check_trap(&mut f, &mib, "mwAlertThreshold", &t, &[
            ("mwAlertName", Want::Is(quoted("queue_messages"))),
            ("mwAlertValue", Want::Is("Gauge32: 1".into())),
            ("mwAlertThresholdValue", Want::Is("Gauge32: 0".into())),
            ("mwAlertState", Want::Is("INTEGER: 1".into())),
        ]);
        // `mailward status` names it too, from the same watcher (walkAS
        // F5: status listed no problem while the alert was raised).
        if let Some(out) = f.step("mailward status", rig.daemon.cli_ok(&["status"])) {
            f.check(
                out.contains("Alert threshold queue_messages raised: 1 message(s), over snmp.alert_thresholds.queue_messages = 0"),
                || format!("status does not name the raised threshold:\n{out}"),
            );
        }
    }
    // ... and cleared within ALERT_DEADLINE of `queue remove`.
    f.step(
        "mailward queue remove",
        rig.daemon.queue_cli_ok(&["queue", "remove", &held]),
    );
    let removed_at = Instant::now();
    let cleared = rig.snmp.wait_trap(8, cleared_from, ALERT_DEADLINE);
    let cleared_after = removed_at.elapsed();
    if let Some((_, t)) = f.step(
        &format!("mwAlertThreshold cleared within {ALERT_DEADLINE:?} of `queue remove`"),
        cleared,
    ) {
        check_trap(
            &mut f,
            &mib,
            "mwAlertThreshold",
            &t,
            &[
                ("mwAlertName", Want::Is(quoted("queue_messages"))),
                ("mwAlertValue", Want::Is("Gauge32: 0".into())),
                ("mwAlertThresholdValue", Want::Is("Gauge32: 0".into())),
                ("mwAlertState", Want::Is("INTEGER: 2".into())),
            ],
        );
        // The log says so in words that log alerting on "crossed" does
        // not page on (walkAM 12: the clear was a WARN "crossed").
        let log = rig.daemon.full_log();
        let lines = |state: &str| -> Vec<String> {
            log.lines()
                .filter(|l| l.contains("alert=queue_messages") && l.contains(state))
                .map(str::to_string)
                .collect()
        };
        let raised = lines("state=raised");
        f.check(
            raised.len() == 1 && raised[0].contains("WARN admin: Alert threshold crossed."),
            || format!("one WARN 'Alert threshold crossed.' for the raise, got {raised:?}"),
        );
        let cleared = lines("state=cleared");
        f.check(
            cleared.len() == 1 && cleared[0].contains("INFO admin: Alert threshold cleared."),
            || format!("one INFO 'Alert threshold cleared.' for the clear, got {cleared:?}"),
        );
    }

    // /metrics counts what snmptrapd received, by name.
    let m = rig.stats.scrape()?;
    let ours: Vec<Trap> = rig
        .snmp
        .traps()
        .into_iter()
        .filter(|t| {
            t.trap_oid()
                .is_some_and(|o| o.starts_with(&format!("{ROOT}.0.")))
        })
        .collect();
    for n in mib.notifications() {
        let oid = mib.oid(&n.name).unwrap_or_default();
        let received = ours
            .iter()
            .filter(|t| t.trap_oid() == Some(oid.as_str()))
            .count() as f64;
        let counted = m.get("mailward_snmp_notifications_total", &[("name", &n.name)]);
        f.check(counted == Some(received), || {
            format!("{}: snmptrapd received {received}, mailward_snmp_notifications_total{{name=\"{}\"}} = {counted:?}", n.name, n.name)
        });
    }
    let expected_counts = [
        ("mwProductStart", 1),
        ("mwObsoleteBases", 1),
        ("mwConfigReloaded", 3),
        ("mwBasesReloaded", 1),
        ("mwAlertThreshold", 2),
    ];
    for (name, want) in expected_counts {
        let oid = mib.oid(name).unwrap_or_default();
        let got = ours
            .iter()
            .filter(|t| t.trap_oid() == Some(oid.as_str()))
            .count();
        f.check(got == want, || {
            format!("{name}: received {got} time(s), expected {want}")
        });
    }

    // SIGTERM: mwProductStop.
    let n = rig.snmp.traps().len();
    match rig.daemon.sigterm() {
        Ok(status) => f.check(status.success(), || {
            format!("mailward exited with {status} after SIGTERM")
        }),
        Err(e) => f.push(format!("SIGTERM: {e:#}")),
    }
    if let Some((_, t)) = f.step(
        "mwProductStop after SIGTERM",
        rig.snmp.wait_trap(2, n, TRAP_TIMEOUT),
    ) {
        check_trap(
            &mut f,
            &mib,
            "mwProductStop",
            &t,
            &[("mwVersion", Want::Is(quoted(&version)))],
        );
    }

    // sysUpTime.0 counts from the start: it never goes back.
    let ours: Vec<Trap> = rig
        .snmp
        .traps()
        .into_iter()
        .filter(|t| {
            t.trap_oid()
                .is_some_and(|o| o.starts_with(&format!("{ROOT}.0.")))
        })
        .collect();
    let uptimes: Vec<Option<u64>> = ours.iter().map(Trap::uptime).collect();
    f.check(
        uptimes.iter().all(Option::is_some) && uptimes.windows(2).all(|w| w[0] <= w[1]),
        || {
            format!(
                "sysUpTime.0 of the notifications in order: {uptimes:?}, expected non-decreasing"
            )
        },
    );
    f.check(
        uptimes.last().copied().flatten().is_some_and(|u| u >= 1000),
        || {
            format!(
                "sysUpTime.0 of mwProductStop = {:?}, expected the 10+ s the daemon ran",
                uptimes.last()
            )
        },
    );

    eprintln!(
        "alert: raised {raised_after:?} after the deferred message was queued, cleared {cleared_after:?} after `queue remove`"
    );
    f.finish(|| rig.context())
}

#[test]
fn objects_not_served_answer_no_such_object() -> Result<()> {
    // Only the statistics subtree, and of it only two categories: the rest
    // of the MIB is not implemented here, which SNMP says with noSuchObject
    // (noSuchInstance would claim the object exists without that row).
    let rig = Rig::start("snmp-not-served", |c, _| {
        c.set_list("snmp", "services", &["statistics"]).set_list(
            "statistics",
            "options",
            &["messages", "viruses"],
        )
    })?;
    let mut f = Failures::default();
    let no_object = "No Such Object available on this agent at this OID";
    let asked = [
        "MAILWARD-MIB::mwConfigFile.0",
        "MAILWARD-MIB::mwVersion.0",
        "MAILWARD-MIB::mwBasesRecords.0",
        "MAILWARD-MIB::mwSessionsCount.in",
        "MAILWARD-MIB::mwNotifyMessage.0",
    ];
    let out = rig.snmp.run("snmpget", &[], &asked)?;
    let text = output_text(&out);
    for oid in asked {
        f.check(text.contains(&format!("{oid} = {no_object}")), || {
            format!("snmpget {oid}: expected \"{no_object}\", got:\n{text}")
        });
    }
    // What is served still answers, and an absent row of it is still
    // noSuchInstance.
    let out = rig.snmp.run(
        "snmpget",
        &[],
        &[
            "MAILWARD-MIB::mwMessagesReceived.0",
            "MAILWARD-MIB::mwMessagesReceived.1",
        ],
    )?;
    let text = output_text(&out);
    f.check(
        text.contains("mwMessagesReceived.0 = Counter64: 0")
            && text
                .contains("mwMessagesReceived.1 = No Such Instance currently exists at this OID"),
        || {
            format!(
                "snmpget mwMessagesReceived.0 and .1: expected 0 and noSuchInstance, got:\n{text}"
            )
        },
    );
    // Without the resources category, the discontinuity time still stands
    // beside the counters served, and /metrics still has the daemon's and
    // the bases' state, as SNMP does with those subtrees served.
    let out = rig.snmp.run(
        "snmpget",
        &[],
        &["MAILWARD-MIB::mwCounterDiscontinuityTime.0"],
    )?;
    let text = output_text(&out);
    f.check(
        text.contains("mwCounterDiscontinuityTime.0 = STRING: 2"),
        || format!("snmpget mwCounterDiscontinuityTime.0: expected a DateAndTime, got:\n{text}"),
    );
    let m = rig.stats.scrape()?;
    for family in [
        "mailward_start_time_seconds",
        "mailward_stats_reset_timestamp_seconds",
        "mailward_bases_records",
        "mailward_update_last_check_timestamp_seconds",
    ] {
        let v = m.value(family, &[]);
        f.check(v.is_ok(), || {
            format!("/metrics lacks {family} with statistics.options = [messages, viruses]: {v:?}")
        });
    }
    f.finish(|| rig.context())
}

// ---- 5. snmpd restarts under the daemon ------------------------------------------

#[test]
fn a_dns_server_that_stops_answering_raises_the_dns_alert() -> Result<()> {
    // `dns_failed_percent` is the SNMP twin of the MailwardDnsFailing
    // Prometheus alert: most of the last DNS look-ups without an answer.
    let mib = Mib::load()?;
    let silent = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let resolver = silent.local_addr()?.to_string();
    let mut rig = Rig::start("snmp-dns-alert", |c, _| {
        c.set("snmp", "alert_thresholds", "{ dns_failed_percent = 50 }")
            // An outside client, asked about in one DNSBL zone per session.
            .set("network", "relay_networks", "[]")
            .set_list("access", "dnsbl", &["bl.test"])
            .set_str("access", "dns_resolver", &resolver)
            .set_str("timeouts", "dns", "1s")
    })?;
    // Five look-ups make a sample (the harness's readiness session was one).
    for _ in 0..5 {
        SmtpClient::connect_ok(rig.daemon.port)?.quit();
    }
    let mut f = Failures::default();
    let quoted = |s: &str| format!("STRING: \"{s}\"");
    let mut raised_at = None;
    if let Some((pos, t)) = f.step(
        "mwAlertThreshold raised for dns_failed_percent",
        rig.snmp.wait_trap(8, 0, ALERT_DEADLINE),
    ) {
        raised_at = Some(pos);
        check_trap(
            &mut f,
            &mib,
            "mwAlertThreshold",
            &t,
            &[
                ("mwAlertName", Want::Is(quoted("dns_failed_percent"))),
                ("mwAlertValue", Want::Is("Gauge32: 100".into())),
                ("mwAlertThresholdValue", Want::Is("Gauge32: 50".into())),
                ("mwAlertState", Want::Is("INTEGER: 1".into())),
            ],
        );
    }
    // walkBE 6: a crash and a start leave no alarm open at the NMS. The
    // new run has no failed look-up to speak of, and clears the threshold
    // the previous one raised, after its mwProductStart.
    let file = rig.config.data_dir().join("alarms.json");
    if let Some(raised_at) = raised_at {
        // Kept for the next start as it is raised.
        let kept = wait_until(
            "alarms.json to hold the raised alarm",
            ALERT_DEADLINE,
            || {
                Ok(std::fs::read_to_string(&file)
                    .ok()
                    .filter(|t| t.contains("dns_failed_percent")))
            },
        );
        f.check(kept.is_ok(), || format!("{}: {kept:?}", file.display()));
        f.step("kill -9 of the gateway", rig.daemon.kill9());
        f.step("the gateway's start again", rig.daemon.restart());
        let start = rig.snmp.wait_trap(1, raised_at + 1, ALERT_DEADLINE);
        let cleared = rig.snmp.wait_trap(8, raised_at + 1, ALERT_DEADLINE);
        if let (Some((start_pos, _)), Some((pos, t))) = (
            f.step("mwProductStart after the restart", start),
            f.step(
                "mwAlertThreshold cleared after the restart, for the alarm the crashed run raised",
                cleared,
            ),
        ) {
            f.check(pos > start_pos, || {
                format!("the clear (trap {pos}) comes after mwProductStart (trap {start_pos})")
            });
            check_trap(
                &mut f,
                &mib,
                "mwAlertThreshold",
                &t,
                &[
                    ("mwAlertName", Want::Is(quoted("dns_failed_percent"))),
                    ("mwAlertValue", Want::Is("Gauge32: 0".into())),
                    ("mwAlertThresholdValue", Want::Is("Gauge32: 50".into())),
                    ("mwAlertState", Want::Is("INTEGER: 2".into())),
                ],
            );
            let log = rig.daemon.full_log();
            f.check(
                log.contains("Alarms the previous run left raised are looked at again"),
                || "the start says it looks at the previous run's alarms".into(),
            );
        }
        let gone = wait_until("alarms.json to be removed", ALERT_DEADLINE, || {
            Ok((!file.exists()).then_some(()))
        });
        f.check(gone.is_ok(), || {
            format!("{} is removed once nothing is raised", file.display())
        });
    }
    drop(silent);
    f.finish(|| rig.context())
}

#[test]
fn a_restarted_snmpd_gets_the_subtree_back_and_no_notification_is_lost_silently() -> Result<()> {
    let mut rig = Rig::start("snmp-restart", |c, _| c)?;
    let mut f = Failures::default();
    let root = "MAILWARD-MIB::mailwardMIB";
    let before = rig.snmp.lines("snmpbulkwalk", &[], &[root])?;
    let m = rig.stats.scrape()?;
    let reconnects = m.value("mailward_agentx_reconnects_total", &[])?;
    let dropped = m.value("mailward_snmp_notifications_dropped_total", &[])?;
    let errors = m.value("mailward_agentx_errors_total", &[])?;
    // The walk above was answered by the subagent, request by request.
    let requests = m.value("mailward_agentx_requests_total", &[])?;
    f.check(requests > 0.0, || {
        format!(
            "mailward_agentx_requests_total = {requests} after a walk of {} objects",
            before.len()
        )
    });

    let stopped = Instant::now();
    rig.snmp.stop_snmpd()?;
    f.step(
        "mailward_agentx_connected to drop to 0 once snmpd is gone",
        wait_until(
            "mailward_agentx_connected 0",
            Duration::from_secs(10),
            || {
                Ok((rig
                    .stats
                    .scrape()?
                    .value("mailward_agentx_connected", &[])?
                    == 0.0)
                    .then_some(()))
            },
        ),
    );
    // A notification raised while the master is away.
    let reloads_sent = |m: &Metrics| {
        m.get(
            "mailward_snmp_notifications_total",
            &[("name", "mwConfigReloaded")],
        )
        .unwrap_or(0.0)
    };
    let sent_before = reloads_sent(&rig.stats.scrape()?);
    let n = rig.snmp.traps().len();
    rig.daemon.sighup()?;
    wait_until(
        "the reload while snmpd is down",
        Duration::from_secs(10),
        || {
            Ok(rig
                .daemon
                .full_log()
                .contains("notification=mwConfigReloaded ")
                .then_some(()))
        },
    )?;

    // Raised is not sent: it waits in the queue, uncounted.
    let sent_while_down = reloads_sent(&rig.stats.scrape()?);
    f.check(sent_while_down == sent_before, || {
        format!("mailward_snmp_notifications_total{{name=\"mwConfigReloaded\"}} {sent_before} -> {sent_while_down} while snmpd was down, expected no change: nothing was sent")
    });
    rig.snmp.start_snmpd()?;
    let restarted = Instant::now();
    // The subagent reconnects on its own, with a back-off that doubles
    // from 0.5 s up to 5 s (its schedule is a unit test of the agentx
    // crate); the 30 s here bound the wait, they are no speed target.
    let back = rig.snmp.wait_subtree(Duration::from_secs(30));
    if f.step("the subtree to answer again after snmpd restarted", back)
        .is_some()
    {
        eprintln!(
            "the subtree answered {:?} after snmpd was back (down for {:?})",
            restarted.elapsed(),
            restarted - stopped
        );
    }

    let arrived = rig.snmp.wait_trap(4, n, TRAP_TIMEOUT);
    let m = rig.stats.scrape()?;
    let dropped_now = m.value("mailward_snmp_notifications_dropped_total", &[])?;
    match &arrived {
        Ok(_) => eprintln!("the notification raised while snmpd was down arrived after the restart"),
        Err(_) => eprintln!("the notification raised while snmpd was down did not arrive (dropped: {dropped} -> {dropped_now})"),
    }
    match arrived {
        Ok((_, t)) => {
            f.check(t.value(&format!("{ROOT}.1.5.2.0")) == Some("INTEGER: 1"), || {
                format!("the mwConfigReloaded raised while snmpd was down arrived, but not as success(1):\n{}", t.line)
            });
            // Counted when snmpd acknowledges it, just after it forwards it.
            let counted = wait_until(
                "mwConfigReloaded to be counted as sent",
                TRAP_TIMEOUT,
                || {
                    let sent = reloads_sent(&rig.stats.scrape()?);
                    Ok((sent == sent_before + 1.0).then_some(()))
                },
            );
            f.check(counted.is_ok(), || {
                let sent_after = rig.stats.scrape().map(|m| reloads_sent(&m));
                format!("mailward_snmp_notifications_total{{name=\"mwConfigReloaded\"}} {sent_before} -> {sent_after:?} once the queued notification reached snmptrapd, expected one more")
            });
            // Raised before this snmpd started: 0 on its clock, not the
            // old snmpd's clock run on (which the new one is far behind).
            let now = rig.snmp.sys_uptime()?;
            f.check(t.uptime() == Some(0), || {
                format!("the mwConfigReloaded raised while snmpd was down carries sysUpTime.0 = {:?}, expected 0 (raised before this snmpd started; its uptime is {now} now)", t.uptime())
            });
        }
        Err(e) => f.check(dropped_now > dropped, || {
            format!("the mwConfigReloaded raised while snmpd was down neither arrived ({e:#}) nor was counted in mailward_snmp_notifications_dropped_total ({dropped} -> {dropped_now})")
        }),
    }
    let reconnects_now = m.value("mailward_agentx_reconnects_total", &[])?;
    f.check(reconnects_now > reconnects, || {
        format!("mailward_agentx_reconnects_total {reconnects} -> {reconnects_now}, expected an increase")
    });
    let connected = m.value("mailward_agentx_connected", &[])?;
    f.check(connected == 1.0, || {
        format!("mailward_agentx_connected = {connected} after the restart, expected 1")
    });
    // Losing the master is the subagent's error, counted (mail is not).
    let errors_now = m.value("mailward_agentx_errors_total", &[])?;
    f.check(errors_now > errors, || {
        format!("mailward_agentx_errors_total {errors} -> {errors_now} across an snmpd restart, expected an increase")
    });

    match rig.snmp.lines("snmpbulkwalk", &[], &[root]) {
        Ok(after) => {
            let a: Vec<&str> = before.iter().map(|l| l.oid.as_str()).collect();
            let b: Vec<&str> = after.iter().map(|l| l.oid.as_str()).collect();
            f.check(a == b, || {
                format!(
                    "after the restart the walk has {} objects, before {}",
                    b.len(),
                    a.len()
                )
            });
        }
        Err(e) => f.push(format!("snmpbulkwalk after the restart: {e:#}")),
    }
    f.finish(|| rig.context())
}

// ---- 6. no master, a garbage master -----------------------------------------------

/// A daemon with metrics on, whose AgentX master is `socket`, delivering
/// everything to a sink.
fn gateway_with_master(
    name: &str,
    socket: impl FnOnce(&Path) -> String,
) -> Result<(Gateway, StatsSetup)> {
    let mut stats = None;
    let gw = Gateway::start(name, |c| {
        let s = StatsSetup::new(&c.dir);
        let socket = socket(&c.dir);
        let c = s.apply(
            c.set_str("agentx", "socket", &socket)
                .set_str("agentx", "ping_interval", "1s")
                .set_str("agentx", "timeout", "1s")
                .set_list("snmp", "traps", &["config", "admin", "update"]),
        );
        stats = Some(s);
        c
    })?;
    Ok((gw, stats.expect("set")))
}

#[test]
fn without_a_master_mail_flows_and_agentx_connected_is_zero() -> Result<()> {
    let started = Instant::now();
    let (mut gw, stats) = gateway_with_master("snmp-nomaster", |dir| {
        format!("unix:{}", dir.join("nowhere").join("agentx.sock").display())
    })?;
    let greeted = started.elapsed();
    let mut f = Failures::default();
    f.step(
        "a message",
        send(gw.port(), "alice@sender.test", "bob@example.com"),
    );
    f.step("its delivery", gw.sink.wait_for_count(1, DELIVERY_TIMEOUT));
    let m = stats.scrape()?;
    let connected = m.value("mailward_agentx_connected", &[])?;
    f.check(connected == 0.0, || {
        format!("mailward_agentx_connected = {connected}, expected 0")
    });
    let t = Instant::now();
    match gw.daemon.sigterm() {
        Ok(status) => f.check(status.success(), || {
            format!("exit status {status} after SIGTERM")
        }),
        Err(e) => f.push(format!("SIGTERM: {e:#}")),
    }
    let stopped = t.elapsed();
    f.check(stopped < Duration::from_secs(10), || {
        format!("SIGTERM took {stopped:?} without a master (queued notifications must not hold the stop), expected < 10 s")
    });
    eprintln!(
        "timing: greeted {greeted:?} after start, stopped {stopped:?} after SIGTERM, no master"
    );
    f.finish(|| gw.daemon.log())
}

/// walkBE 8: a site without SNMP turns the subagent off; mail flows, no
/// master is looked for, and `mailward status` lists no AgentX problem,
/// so its monitoring check can pass.
#[test]
fn a_subagent_turned_off_is_no_problem() -> Result<()> {
    let (gw, _stats) = gateway_with_master("snmp-off", |_| String::new())?;
    let mut f = Failures::default();
    f.step(
        "a message",
        send(gw.port(), "alice@sender.test", "bob@example.com"),
    );
    f.step("its delivery", gw.sink.wait_for_count(1, DELIVERY_TIMEOUT));
    if let Some(status) = f.step(
        "mailward status --json",
        gw.daemon.cli_ok(&["status", "--json"]),
    ) {
        let json: serde_json::Value = serde_json::from_str(&status)?;
        f.check(json["snmp"]["state"] == "off", || {
            format!("snmp state off expected: {}", json["snmp"])
        });
        let problems = json["problems"].to_string();
        f.check(!problems.contains("AgentX"), || {
            format!("no AgentX problem expected: {problems}")
        });
    }
    if let Some(text) = f.step("mailward status", gw.daemon.cli_ok(&["status"])) {
        f.check(
            text.contains(
                "snmp:     off (agentx.socket = \"\": no AgentX subagent, no SNMP notifications)",
            ),
            || text.clone(),
        );
    }
    let log = gw.daemon.full_log();
    f.check(
        log.contains("The AgentX subagent is off")
            && !log.contains("AgentX master")
            && !log.contains("AgentX session"),
        || format!("the log says it is off, and nothing of a master: {log}"),
    );
    f.finish(|| gw.daemon.log())
}

/// The snmpd.conf block of docs/snmp.md, "Setting up snmpd", as an
/// operator copies it.
fn doc_snmpd_conf() -> Result<String> {
    let path = workspace_dir().join("docs/snmp.md");
    let doc = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    let section = doc
        .split_once("## Setting up snmpd")
        .context("no \"## Setting up snmpd\" in docs/snmp.md")?
        .1;
    let block = section
        .split_once("```\n")
        .context("no code block under \"## Setting up snmpd\"")?
        .1;
    Ok(block
        .split_once("```")
        .context("the snmpd.conf block of docs/snmp.md does not end")?
        .0
        .to_string())
}

/// Replaces `what` in the doc's block, failing when the block no longer
/// has it (the test would then not be testing the doc).
fn adapt(block: String, what: &str, with: &str) -> Result<String> {
    ensure!(
        block.contains(what),
        "the snmpd.conf block of docs/snmp.md no longer contains {what:?}; adapt this test:\n{block}"
    );
    Ok(block.replace(what, with))
}

#[test]
fn the_snmpd_conf_of_snmp_md_is_what_a_real_snmpd_accepts() -> Result<()> {
    // walkT 1: the block had `# comments` after its directives, which
    // snmpd reads as part of the values: the AgentX socket was created as
    // a file named `master   # or tcp:...`, the view line was refused
    // ("invalid MASK") and the trap sink was not made. snmpd here runs on
    // the doc's own block, with only the places changed.
    let dir = TestDir::new("snmp-doc-conf")?;
    let mut snmp = NetSnmp::start(dir.path())?;
    snmp.stop_snmpd()?;
    // The socket's owner stays the doc's (the snmpd package's user); its
    // group is one this test's user is in, other than root's 0, which
    // net-snmp cannot tell from a failed look-up.
    let (owner, group) = if is_root() {
        ("Debian-snmp".to_string(), "nogroup".to_string())
    } else {
        let user = nix::unistd::User::from_uid(nix::unistd::getuid())?
            .context("this test's user has no name")?;
        let group = nix::unistd::Group::from_gid(nix::unistd::getgid())?
            .context("this test's group has no name")?;
        (user.name, group.name)
    };
    let block = doc_snmpd_conf()?;
    let block = adapt(
        block,
        "/var/agentx/master",
        &snmp.socket().display().to_string(),
    )?;
    let block = adapt(block, "Debian-snmp mailward", &format!("{owner} {group}"))?;
    let block = adapt(
        block,
        "nms.example.com public",
        &format!("127.0.0.1:{} public", snmp.trap_port),
    )?;
    // What the doc adds to: Debian's snmpd.conf, with the view of the
    // system group (sysUpTime.0, which start_snmpd asks for), on our port.
    let conf = format!(
        "agentAddress udp:127.0.0.1:{}\nview systemonly included .1.3.6.1.2.1.1\n{block}",
        snmp.port
    );
    std::fs::write(snmp.dir.join("snmpd.conf"), &conf)?;
    snmp.start_snmpd()
        .with_context(|| format!("snmpd on the doc's block:\n{conf}"))?;

    let mut f = Failures::default();
    // net-snmp says what it did not take with the file and line, or
    // "Can't identify" for a user or group.
    let said = std::fs::read_to_string(snmp.dir.join("snmpd.2.out")).unwrap_or_default();
    for line in said.lines() {
        f.check(
            !(line.contains("snmpd.conf") || line.contains("Can't identify")),
            || format!("snmpd complains about the doc's block: {line}\n{conf}"),
        );
    }
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(snmp.socket()) {
        Ok(m) => {
            let mode = m.permissions().mode() & 0o777;
            f.check(mode == 0o660, || {
                format!("the AgentX socket has mode {mode:o}, expected the doc's 0660")
            })
        }
        Err(e) => f.push(format!(
            "the AgentX socket {}: {e}",
            snmp.socket().display()
        )),
    }

    // Mailward with the doc's plain socket path: its subtree is in the
    // community's view and its notifications reach the trap sink.
    let config = snmp_config(
        Config::new(dir.path()),
        &snmp.socket().display().to_string(),
    );
    let daemon = Daemon::start(&config)?;
    f.step(
        "Mailward's subtree through snmpd's community view",
        snmp.wait_subtree(SUBTREE_TIMEOUT),
    );
    f.step(
        "mwProductStart at the doc's trap sink",
        snmp.wait_trap(1, 0, TRAP_TIMEOUT),
    );
    f.finish(|| format!("{}\n{}", daemon.log(), snmp.logs()))
}

/// A "master" that accepts on a UNIX socket, reads what the subagent says,
/// and answers garbage: an AgentX header announcing a 4 GiB payload, then
/// plain noise, then a header of an unknown version, in turn.
struct GarbageMaster {
    /// Connections accepted.
    connections: Arc<AtomicUsize>,
    /// Bytes the subagent sent on each connection.
    received: Arc<Mutex<Vec<usize>>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl GarbageMaster {
    fn start(path: &Path) -> Result<GarbageMaster> {
        let listener =
            UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
        listener.set_nonblocking(true)?;
        let connections = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, r, s) = (connections.clone(), received.clone(), stop.clone());
        let thread = thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Ok((mut conn, _)) = listener.accept() else {
                    thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let k = c.fetch_add(1, Ordering::Relaxed);
                let _ = conn.set_nonblocking(false);
                let _ = conn.set_read_timeout(Some(Duration::from_millis(500)));
                let mut buf = [0u8; 4096];
                let n = conn.read(&mut buf).unwrap_or(0);
                r.lock().unwrap_or_else(|e| e.into_inner()).push(n);
                let garbage: Vec<u8> = match k % 3 {
                    // version 1, Response, network byte order, ids, and a
                    // payload length of 0xFFFFFFF0.
                    0 => vec![
                        1, 18, 0x10, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0xFF, 0xFF, 0xFF, 0xF0,
                        0xde, 0xad,
                    ],
                    1 => b"\xff\xfe garbage from a broken master \x00\x01\x02\r\n".repeat(8),
                    _ => vec![
                        9, 99, 0xFF, 0xFF, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0, 0, 0, 4, 1, 2,
                        3, 4,
                    ],
                };
                let _ = conn.write_all(&garbage);
                thread::sleep(Duration::from_millis(300));
            }
        });
        Ok(GarbageMaster {
            connections,
            received,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for GarbageMaster {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn a_master_that_sends_garbage_does_not_touch_the_mail_flow() -> Result<()> {
    let dir = TestDir::new("snmp-garbage-sock")?;
    let socket = dir.join("garbage.sock");
    let master = GarbageMaster::start(&socket)?;
    let (mut gw, stats) =
        gateway_with_master("snmp-garbage", |_| format!("unix:{}", socket.display()))?;
    let mut f = Failures::default();

    f.step(
        "a message while the master talks garbage",
        send(gw.port(), "alice@sender.test", "bob@example.com"),
    );
    f.step(
        "the subagent to keep reconnecting (3 connections)",
        wait_until(
            "3 connections to the garbage master",
            Duration::from_secs(20),
            || Ok((master.connections.load(Ordering::Relaxed) >= 3).then_some(())),
        ),
    );
    f.step(
        "another message",
        send(gw.port(), "alice@sender.test", "carol@example.com"),
    );
    f.step(
        "both delivered",
        gw.sink.wait_for_count(2, DELIVERY_TIMEOUT),
    );
    f.check(gw.daemon.is_running(), || {
        "the daemon died talking to a garbage master".into()
    });
    let received = master
        .received
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    f.check(received.first().is_some_and(|n| *n >= 20), || {
        format!("the subagent sent {received:?} bytes per connection, expected an AgentX Open (20+ bytes) first")
    });
    let m = stats.scrape()?;
    let connected = m.value("mailward_agentx_connected", &[])?;
    f.check(connected == 0.0, || {
        format!("mailward_agentx_connected = {connected} with a garbage master, expected 0")
    });
    let log = gw.daemon.full_log();
    let complaints: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" snmp: ") && (l.contains(" WARN ") || l.contains(" ERROR ")))
        .collect();
    f.check(!complaints.is_empty(), || {
        "the daemon logged no snmp warning or error about the garbage".into()
    });
    let connections = master.connections.load(Ordering::Relaxed);
    match gw.daemon.sigterm() {
        Ok(status) => f.check(status.success(), || {
            format!("exit status {status} after SIGTERM")
        }),
        Err(e) => f.push(format!("SIGTERM: {e:#}")),
    }
    eprintln!(
        "garbage master: {connections} connections, bytes received per connection {received:?}; daemon said:\n{}",
        complaints.iter().take(6).copied().collect::<Vec<_>>().join("\n")
    );
    drop(master);
    f.finish(|| gw.daemon.log())
}

/// Two gateways on one host with the same `agentx.root_oid`: the master
/// refuses the second registration (duplicateRegistration, 263); the
/// second says so in its log and carries mail, the first keeps serving.
#[test]
fn a_second_gateway_on_the_same_subtree_is_told_duplicate_registration() -> Result<()> {
    let first = Rig::start("snmp-dup", |c, _| c)?;
    let mut f = Failures::default();
    let dir = TestDir::new("snmp-dup-second")?;
    let sink = Sink::start(dir.path(), "sink")?;
    let stats = StatsSetup::new(dir.path());
    let config = stats.apply(
        snmp_config(Config::new(dir.path()), &first.snmp.agentx_setting())
            .route_to_port("*", sink.port),
    );
    let mut second = Daemon::start(&config)?;
    let said = wait_until(
        "the second gateway to log the refused registration",
        Duration::from_secs(15),
        || {
            Ok(second
                .full_log()
                .lines()
                .find(|l| {
                    l.contains(" snmp: ")
                        && l.contains("ERROR")
                        && l.contains("duplicateRegistration")
                })
                .map(str::to_string))
        },
    );
    let said = f.step(
        "an ERROR from the snmp target naming duplicateRegistration in the second gateway's log",
        said,
    );
    f.step(
        "a message through the second gateway",
        send(second.port, "alice@sender.test", "bob@example.com"),
    );
    f.step("its delivery", sink.wait_for_count(1, DELIVERY_TIMEOUT));
    f.check(second.is_running(), || "the second gateway stopped".into());
    pause(VIEW_TTL);
    match first
        .snmp
        .lines("snmpget", &[], &["MAILWARD-MIB::mwConfigFile.0"])
    {
        Ok(v) => {
            let got = v.first().map(|l| l.text().trim_matches('"').to_string());
            let want = first.config.path().display().to_string();
            f.check(got.as_deref() == Some(want.as_str()), || {
                format!(
                    "mwConfigFile.0 through snmpd = {got:?}, expected the first gateway's {want:?}"
                )
            });
        }
        Err(e) => f.push(format!("snmpget mwConfigFile.0 with two gateways: {e:#}")),
    }
    let m = first.stats.scrape()?;
    let (connected, registered) = (
        m.value("mailward_agentx_connected", &[])?,
        m.value("mailward_agentx_registered", &[])?,
    );
    f.check(connected == 1.0 && registered == 1.0, || {
        format!("the first gateway's mailward_agentx_connected = {connected}, _registered = {registered}, expected 1 and 1")
    });
    if let Some(line) = said {
        eprintln!("second gateway: {line}");
    }
    // `mailward status` tells the two apart: the first serves, the second
    // is refused and says what to do about it.
    match first.daemon.cli_ok(&["status", "--json"]) {
        Ok(text) => {
            let v: serde_json::Value = serde_json::from_str(&text).context("status JSON")?;
            f.check(v["snmp"]["state"] == "serving", || {
                format!("the first gateway's status: {text}")
            });
            // It answered the snmpget above: status counts it, as
            // mwAgentxRequests does.
            f.check(
                v["snmp"]["requests"].as_u64().is_some_and(|n| n >= 1),
                || format!("the first gateway's status counts no AgentX request: {text}"),
            );
        }
        Err(e) => f.push(format!("mailward status on the first gateway: {e:#}")),
    }
    match second.cli_ok(&["status"]) {
        Ok(text) => f.check(
            text.contains("\nsnmp:     refused (")
                && text.contains("The AgentX master refuses the subtree 1.3.6.1.4.1.32473.25"),
            || format!("the second gateway's status:\n{text}"),
        ),
        Err(e) => f.push(format!("mailward status on the second gateway: {e:#}")),
    }
    // The second has a session but serves nothing: the two gauges say so.
    let m2 = stats.scrape()?;
    let (connected, registered) = (
        m2.value("mailward_agentx_connected", &[])?,
        m2.value("mailward_agentx_registered", &[])?,
    );
    f.check(connected == 1.0 && registered == 0.0, || {
        format!("the second gateway's mailward_agentx_connected = {connected}, _registered = {registered}, expected 1 and 0 (session open, subtree refused)")
    });
    // The first gateway goes: the second sends its refused registration
    // again on the same session (after 5 s, then 10, ...) and takes the
    // subtree over without a reconnect.
    let mut first = first;
    f.step(
        "stopping the first gateway",
        first.daemon.sigterm().map(|_| ()),
    );
    let want = config.path().display().to_string();
    let taken = wait_until(
        "snmpd to answer mwConfigFile.0 from the second gateway once the first is gone",
        // The retries back off (5 s, 10 s, 20 s, ...): normally well under
        // this.
        Duration::from_secs(120),
        || {
            let got = first
                .snmp
                .lines("snmpget", &[], &["MAILWARD-MIB::mwConfigFile.0"])
                .ok()
                .and_then(|v| v.first().map(|l| l.text().trim_matches('"').to_string()));
            Ok((got.as_deref() == Some(want.as_str())).then_some(()))
        },
    );
    f.step(
        "the second gateway serving the subtree after the first stopped (its refused registration sent again)",
        taken,
    );
    let registered = stats
        .scrape()
        .and_then(|m| m.value("mailward_agentx_registered", &[]));
    f.check(matches!(registered, Ok(r) if r == 1.0), || {
        format!("the second gateway's mailward_agentx_registered once it took over = {registered:?}, expected 1")
    });
    let _ = second.sigterm();
    // Stopped: `mailward status` says so, with exit status 69.
    match second.cli(&["status"]) {
        Ok(out) => f.check(
            out.status.code() == Some(69)
                && String::from_utf8_lossy(&out.stderr).contains("cannot reach the daemon"),
            || format!("status of a stopped gateway: {out:?}"),
        ),
        Err(e) => f.push(format!("mailward status after the stop: {e:#}")),
    }
    f.finish(|| {
        format!(
            "----- second gateway -----\n{}\n{}",
            second.log(),
            first.context()
        )
    })
}

/// walkAM 2: docs/snmp.md said `agentXPerms 0660 0550 SNMPD-USER GROUP`,
/// but net-snmp gives the group to the socket only and makes its
/// directory root:root 0550, which a gateway running as its own user
/// cannot pass; the hint then told the user to add the line they had.
/// Here the gateway runs as nobody (group nogroup): the hint names the
/// directory and the chgrp, the chgrp lets the gateway in without a
/// restart, and snmpd started afresh with the line docs/snmp.md gives now
/// (directory 0755) makes a directory the gateway passes.
#[test]
fn a_gateway_with_its_own_user_passes_snmpds_directory_set_up_as_the_docs_say() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    ensure!(
        is_root(),
        "this test starts snmpd and mailward as root, mailward switching to nobody: run it as root (tests/run does)"
    );
    let dir = TestDir::new("snmp-own-user")?;
    // nobody must reach data_dir, the log and snmpd's directory.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))?;
    let mut snmp = NetSnmp::start_with(dir.path(), "0660 0550 0 nogroup", Some("agentx"))?;
    let ax = snmp
        .socket()
        .parent()
        .context("socket's directory")?
        .to_path_buf();
    std::fs::set_permissions(&snmp.dir, std::fs::Permissions::from_mode(0o755))?;
    let logs = dir.join("logs");
    std::fs::create_dir(&logs)?;
    std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o755))?;
    let log = logs.join("mailward.log");
    let config = snmp_config(Config::new(dir.path()), &snmp.agentx_setting())
        .set_str("server", "user", "nobody")
        .set_str("log", "destination", &format!("file:{}", log.display()))
        .route_to_port("*", free_port());
    let _daemon = Daemon::start(&config)?;
    let mut f = Failures::default();
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let registered = |since: usize| {
        wait_until("the subtree registered", Duration::from_secs(40), || {
            Ok(read_log()[since..]
                .contains("AgentX subtree registered.")
                .then_some(()))
        })
    };
    let hint = wait_until("the refused connect told", Duration::from_secs(10), || {
        Ok(read_log()
            .lines()
            .find(|l| {
                l.contains("Cannot reach the AgentX master") && l.contains("Permission denied")
            })
            .map(str::to_string))
    });
    if let Some(hint) = f.step("a WARN with the permission hint", hint) {
        let mode = std::fs::metadata(&ax)?.permissions().mode() & 0o7777;
        f.check(mode == 0o550, || {
            format!("snmpd made {} mode {mode:o}", ax.display())
        });
        for want in [
            format!("its directory {} is root:root 0550", ax.display()),
            "Mailward runs as nobody:nogroup".to_string(),
            format!("(`chgrp nogroup {}`)", ax.display()),
            "`agentXPerms 0660 0755 SNMPD-USER nogroup`".to_string(),
        ] {
            f.check(hint.contains(&want), || {
                format!("`{want}` missing from: {hint}")
            });
        }
    }
    // The chgrp the hint gives: the next retry gets in.
    let out = Command::new("chgrp").arg("nogroup").arg(&ax).output()?;
    f.check(out.status.success(), || {
        format!("chgrp: {}", output_text(&out))
    });
    f.step(
        "registered after the chgrp, without a restart",
        registered(0),
    );
    // snmpd afresh with docs/snmp.md's line: the directory it makes is
    // 0755, the socket 0660 in nobody's group.
    let before = read_log().len();
    snmp.stop_snmpd()?;
    std::fs::remove_dir_all(&ax)?;
    snmp.set_perms("0660 0755 0 nogroup")?;
    snmp.start_snmpd()?;
    let mode = std::fs::metadata(&ax)?.permissions().mode() & 0o7777;
    f.check(mode == 0o755, || {
        format!("snmpd made {} mode {mode:o}", ax.display())
    });
    f.step(
        "registered again with agentXPerms 0660 0755 after snmpd made its directory afresh",
        registered(before),
    );
    f.finish(|| format!("{}\n{}", read_log(), snmp.logs()))
}
