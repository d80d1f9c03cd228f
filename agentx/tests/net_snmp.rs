//! The subagent against the REAL net-snmp: `snmpd` as AgentX master on a
//! UNIX socket in a temporary directory, `snmptrapd` logging to a file,
//! both on free loopback UDP ports and reading no configuration from /etc
//! (DESIGN 7, "Test rig"). A toy view under 1.3.6.1.4.1.32473.25 with
//! scalars and a 150-row table of mixed types is read back with snmpget,
//! snmpwalk and snmpbulkwalk; snmpd is restarted under the subagent; a
//! notification arrives at snmptrapd, and one raised while snmpd is down
//! arrives after it is back.
//!
//! Needs the Debian packages snmpd, snmptrapd and snmp
//! (tests/install-deps.sh).

use std::net::UdpSocket;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use mailward_agentx::{
    fixed_view, start, Endpoint, MibView, Oid, OidView, Registration, Subagent, SubagentConfig,
    Value, VarBind,
};

/// Deadline for anything to become ready (CI is a slow 2-core machine).
const READY: Duration = Duration::from_secs(30);
/// Poll interval.
const POLL: Duration = Duration::from_millis(50);
/// Rows of the toy table.
const ROWS: u32 = 150;
const ROOT: &str = "1.3.6.1.4.1.32473.25";

fn oid(s: &str) -> Oid {
    s.parse().unwrap()
}

/// The path of `cmd`, or a panic naming the Debian package to install.
fn require(cmd: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(cmd);
        if let Ok(meta) = candidate.metadata() {
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return candidate;
            }
        }
    }
    panic!("`{cmd}` not found: install the Debian package {package} (tests/install-deps.sh installs it)");
}

/// A free loopback UDP port (bound and released).
fn free_udp_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

/// Polls `f` until it returns Some, or panics after `deadline`.
fn wait_for<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        thread::sleep(POLL);
    }
}

/// snmpd and snmptrapd in a private directory; killed on drop.
struct NetSnmp {
    dir: tempfile::TempDir,
    port: u16,
    snmpd_bin: PathBuf,
    snmpd: Option<Child>,
    snmptrapd: Option<Child>,
    tools: PathBuf,
    /// How many times snmpd was started (for log file names).
    starts: u32,
}

impl NetSnmp {
    fn start() -> NetSnmp {
        let snmpd_bin = require("snmpd", "snmpd");
        let snmptrapd_bin = require("snmptrapd", "snmptrapd");
        let snmpget = require("snmpget", "snmp");
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("persist")).unwrap();
        let port = free_udp_port();
        let trap_port = free_udp_port();
        let d = dir.path().display();
        std::fs::write(
            dir.path().join("snmpd.conf"),
            format!(
                "agentAddress   udp:127.0.0.1:{port}\n\
                 rocommunity    public 127.0.0.1\n\
                 master         agentx\n\
                 agentXSocket   unix:{d}/agentx.sock\n\
                 agentXPerms    0600 0700\n\
                 trap2sink      127.0.0.1:{trap_port} public\n"
            ),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("snmptrapd.conf"),
            "authCommunity log public\nformat2 TRAP %b %v\\n\n",
        )
        .unwrap();
        let mut cmd = Command::new(&snmptrapd_bin);
        cmd.args(["-f", "-C", "-c"])
            .arg(dir.path().join("snmptrapd.conf"))
            .args(["-X", "-n", "-On", "-Lf"])
            .arg(dir.path().join("traps.log"))
            .arg("-p")
            .arg(dir.path().join("snmptrapd.pid"))
            .arg(format!("udp:127.0.0.1:{trap_port}"));
        let snmptrapd = spawn(cmd, dir.path(), "snmptrapd.out");
        let mut rig = NetSnmp {
            dir,
            port,
            snmpd_bin,
            snmpd: None,
            snmptrapd: Some(snmptrapd),
            tools: snmpget.parent().unwrap().to_path_buf(),
            starts: 0,
        };
        wait_for("snmptrapd's log", READY, || {
            rig.path("traps.log").exists().then_some(())
        });
        rig.start_snmpd();
        rig
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn socket(&self) -> PathBuf {
        self.path("agentx.sock")
    }

    fn start_snmpd(&mut self) {
        let _ = std::fs::remove_file(self.socket());
        self.starts += 1;
        let mut cmd = Command::new(&self.snmpd_bin);
        cmd.args(["-f", "-Lo", "-C", "-c"])
            .arg(self.path("snmpd.conf"))
            .args(["-I", "-smux", "-p"])
            .arg(self.path("snmpd.pid"));
        self.snmpd = Some(spawn(
            cmd,
            self.dir.path(),
            &format!("snmpd.{}.out", self.starts),
        ));
        wait_for("snmpd to answer", READY, || {
            if !self.socket().exists() {
                return None;
            }
            let out = self.snmp(
                "snmpget",
                &["-t", "0.5", "-r", "0"],
                &[".1.3.6.1.2.1.1.3.0"],
            );
            out.contains("Timeticks").then_some(())
        });
    }

    /// Stops snmpd (SIGTERM, then SIGKILL if it lingers).
    fn stop_snmpd(&mut self) {
        if let Some(mut child) = self.snmpd.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let end = Instant::now() + Duration::from_secs(10);
            while Instant::now() < end {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                thread::sleep(POLL);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs an snmp tool (v2c, community public, numeric OIDs, then
    /// `options`) against snmpd for `oids`; stdout and stderr together.
    fn snmp(&self, tool: &str, options: &[&str], oids: &[&str]) -> String {
        let out = Command::new(self.tools.join(tool))
            .args(["-v2c", "-c", "public", "-On"])
            .args(options)
            .arg(format!("127.0.0.1:{}", self.port))
            .args(oids)
            .envs(env(self.dir.path()))
            .output()
            .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
        let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
        s.push_str(&String::from_utf8_lossy(&out.stderr));
        s
    }

    fn traps(&self) -> String {
        std::fs::read_to_string(self.path("traps.log")).unwrap_or_default()
    }

    /// Everything the daemons logged (for failure messages).
    fn logs(&self) -> String {
        let mut s = String::new();
        for n in 1..=self.starts {
            s += &format!("--- snmpd.{n}.out\n");
            s += &std::fs::read_to_string(self.path(&format!("snmpd.{n}.out"))).unwrap_or_default();
        }
        s += "--- traps.log\n";
        s += &self.traps();
        s
    }
}

impl Drop for NetSnmp {
    fn drop(&mut self) {
        for child in [self.snmpd.take(), self.snmptrapd.take()]
            .into_iter()
            .flatten()
        {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::env::var_os("MAILWARD_E2E_KEEP").is_some() {
            self.dir.disable_cleanup(true);
            eprintln!("keeping {}", self.dir.path().display());
        }
    }
}

/// The environment that keeps net-snmp away from /etc and /var.
fn env(dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        (
            "SNMP_PERSISTENT_DIR",
            dir.join("persist").display().to_string(),
        ),
        ("SNMPCONFPATH", dir.display().to_string()),
        ("MIBS", String::new()),
        ("MIBDIRS", String::new()),
    ]
}

fn spawn(mut cmd: Command, dir: &Path, log: &str) -> Child {
    let out = std::fs::File::create(dir.join(log)).unwrap();
    let err = out.try_clone().unwrap();
    cmd.envs(env(dir))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()))
}

/// The toy view: scalars of every type under ROOT.1.1, and a 150-row table
/// ROOT.1.2.1.{1..6}.row of mixed types.
fn toy_view() -> MibView {
    let root = oid(ROOT);
    let mut b = MibView::builder();
    let scalars = [
        Value::Integer(-42),
        Value::string("Mailward test"),
        Value::Counter64(u64::MAX),
        Value::TimeTicks(123_456),
        Value::IpAddress([192, 0, 2, 1]),
        Value::ObjectIdentifier(root.join(&[0, 1])),
        Value::Gauge32(4_000_000_000),
        Value::Counter32(7),
        Value::OctetString(vec![0x00, 0xff, 0x10]),
    ];
    for (i, v) in scalars.into_iter().enumerate() {
        b.scalar(root.join(&[1, 1, i as u32 + 1]), v);
    }
    for col in 1..=6u32 {
        b.object(root.join(&[1, 2, 1, col]));
    }
    for row in 1..=ROWS {
        let col = |c: u32| root.join(&[1, 2, 1, c, row]);
        b.insert(col(1), Value::Counter64(u64::from(row) * 1_000_000_007));
        b.insert(col(2), Value::string(format!("row-{row}")));
        b.insert(col(3), Value::Integer(row as i32 - 75));
        b.insert(col(4), Value::TimeTicks(row * 100));
        b.insert(
            col(5),
            Value::IpAddress([10, 0, (row / 256) as u8, (row % 256) as u8]),
        );
        b.insert(col(6), Value::ObjectIdentifier(root.join(&[3, row])));
    }
    b.build()
}

/// How net-snmp prints a value (`-On`, no MIBs loaded); TimeTicks only up
/// to the raw number.
fn net_snmp_text(v: &Value) -> String {
    match v {
        Value::Integer(n) => format!("INTEGER: {n}"),
        Value::OctetString(b) => match std::str::from_utf8(b) {
            Ok(s) if s.chars().all(|c| !c.is_control()) => format!("STRING: \"{s}\""),
            _ => {
                let hex: Vec<String> = b.iter().map(|x| format!("{x:02X}")).collect();
                format!("Hex-STRING: {}", hex.join(" "))
            }
        },
        Value::ObjectIdentifier(o) => format!("OID: .{o}"),
        Value::IpAddress(a) => format!("IpAddress: {}.{}.{}.{}", a[0], a[1], a[2], a[3]),
        Value::Counter32(n) => format!("Counter32: {n}"),
        Value::Gauge32(n) => format!("Gauge32: {n}"),
        Value::TimeTicks(n) => format!("Timeticks: ({n})"),
        Value::Counter64(n) => format!("Counter64: {n}"),
        other => panic!("not in the toy view: {other:?}"),
    }
}

/// Parses "OID = value" lines; the value text trimmed.
fn parse_lines(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter_map(|l| l.split_once(" = "))
        .map(|(o, v)| {
            (
                o.trim().trim_start_matches('.').to_string(),
                v.trim().to_string(),
            )
        })
        .collect()
}

/// Checks that the output lists exactly the view, in order.
fn assert_same(what: &str, out: &str, view: &MibView) {
    let got = parse_lines(out);
    assert_eq!(
        got.len(),
        view.len(),
        "{what}: {} lines, {} expected:\n{out}",
        got.len(),
        view.len()
    );
    for ((name, text), (oid, value)) in got.iter().zip(view.iter()) {
        assert_eq!(name, &oid.to_string(), "{what}: order");
        let want = net_snmp_text(value);
        assert!(
            text.starts_with(&want),
            "{what}: {name} = {text}, expected {want}"
        );
        if !matches!(value, Value::TimeTicks(_)) {
            assert_eq!(text, &want, "{what}: {name}");
        }
    }
}

fn config(socket: PathBuf) -> SubagentConfig {
    let mut c = SubagentConfig::new(Endpoint::Unix(socket));
    c.timeout = Duration::from_secs(1);
    c.retries = 3;
    c.ping_interval = Duration::from_secs(1);
    c.id = oid(ROOT);
    c.description = String::from("mailward-agentx test subagent");
    c.registrations = vec![Registration::new(oid(ROOT))];
    c.agent_caps = vec![(
        oid(ROOT).join(&[2, 1]),
        String::from("mailward-agentx test capabilities"),
    )];
    c
}

fn wait_connected(sub: &Subagent, rig: &NetSnmp, reconnects: u64) {
    wait_for("the subagent's session", READY, || {
        let h = sub.health();
        (h.connected && h.reconnects >= reconnects).then_some(())
    });
    // Registered once our subtree answers through snmpd.
    wait_for("our subtree to answer", READY, || {
        let out = rig.snmp("snmpget", &[], &[&format!("{ROOT}.1.1.1.0")]);
        out.contains("INTEGER: -42").then_some(())
    });
}

/// Finds a trap line with this trap OID; returns it.
fn trap_line(rig: &NetSnmp, trap: &Oid) -> Option<String> {
    let needle = format!(".1.3.6.1.6.3.1.1.4.1.0 = OID: .{trap}\t");
    let needle_end = format!(".1.3.6.1.6.3.1.1.4.1.0 = OID: .{trap}");
    rig.traps()
        .lines()
        .find(|l| l.contains(&needle) || l.ends_with(&needle_end))
        .map(str::to_string)
}

#[test]
fn serves_through_real_net_snmp() {
    // MAILWARD_AGENTX_LOG=snmp=trace shows every PDU from the master.
    if let Ok(filter) = std::env::var("MAILWARD_AGENTX_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
    let mut rig = NetSnmp::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let view = toy_view();
    let sub = {
        let _enter = runtime.enter();
        start(config(rig.socket()), fixed_view(view.clone()))
    };
    wait_connected(&sub, &rig, 0);

    // Idle for a few ping intervals: snmpd answers our Pings, the session
    // stays up.
    thread::sleep(Duration::from_millis(2500));
    let h = sub.health();
    assert!(h.connected && h.reconnects == 0 && h.errors == 0, "{h:?}");

    // snmpget: each scalar, rows, a missing instance and a missing object.
    let mut args: Vec<String> = (1..=9).map(|i| format!("{ROOT}.1.1.{i}.0")).collect();
    args.push(format!("{ROOT}.1.2.1.2.150"));
    args.push(format!("{ROOT}.1.2.1.5.1"));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = rig.snmp("snmpget", &[], &refs);
    let got = parse_lines(&out);
    assert_eq!(got.len(), 11, "{out}");
    for (name, text) in &got {
        let value = view.get(&oid(name));
        assert!(!value.is_exception(), "{name} not in the view");
        assert!(text.starts_with(&net_snmp_text(&value)), "{name} = {text}");
    }
    let out = rig.snmp("snmpget", &[], &[&format!("{ROOT}.1.2.1.2.151")]);
    assert!(
        out.contains("No Such Instance currently exists at this OID"),
        "{out}"
    );
    let out = rig.snmp("snmpget", &[], &[&format!("{ROOT}.1.1.1")]);
    assert!(
        out.contains("No Such Instance currently exists at this OID"),
        "{out}"
    );
    let out = rig.snmp("snmpget", &[], &[&format!("{ROOT}.1.2.1.9.1")]);
    assert!(
        out.contains("No Such Object available on this agent at this OID"),
        "{out}"
    );

    // snmpwalk and snmpbulkwalk: every value, exactly, in order.
    let t = Instant::now();
    let walk = rig.snmp("snmpwalk", &[], &[ROOT]);
    let walk_time = t.elapsed();
    assert_same("snmpwalk", &walk, &view);
    let t = Instant::now();
    let bulk = rig.snmp("snmpbulkwalk", &[], &[ROOT]);
    let bulk_time = t.elapsed();
    assert_same("snmpbulkwalk", &bulk, &view);
    let bulk50 = rig.snmp("snmpbulkwalk", &["-Cr50"], &[ROOT]);
    assert_same("snmpbulkwalk -Cr50", &bulk50, &view);
    // The same number of objects that snmpd serves itself, for comparison.
    let t = Instant::now();
    let own = rig.snmp("snmpbulkwalk", &["-Cc"], &[".1"]);
    let own_time = t.elapsed();
    let own_count = parse_lines(&own).len();
    eprintln!(
        "timing: snmpwalk of {} objects {walk_time:?}, snmpbulkwalk {bulk_time:?}; \
         snmpbulkwalk of snmpd's whole tree ({own_count} objects, ours included) {own_time:?}",
        view.len()
    );

    // Walking past our subtree leaves it: the next object is snmpd's own.
    let last = format!("{ROOT}.1.2.1.6.{ROWS}");
    let out = rig.snmp("snmpgetnext", &[], &[&last]);
    let next = parse_lines(&out);
    assert_eq!(next.len(), 1, "{out}");
    let next_oid = oid(&next[0].0);
    assert!(!next_oid.starts_with(&oid(ROOT)), "{out}");
    assert!(next_oid > oid(&last), "{out}");
    let out = rig.snmp("snmpbulkget", &["-Cn0", "-Cr3"], &[&last]);
    let lines = parse_lines(&out);
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines.iter().all(|(o, _)| !oid(o).starts_with(&oid(ROOT))),
        "{out}"
    );

    // A notification arrives at snmptrapd with its trap OID and varbinds.
    let trap = oid(ROOT).join(&[0, 1]);
    sub.notify(
        trap.clone(),
        vec![
            VarBind::new(oid(ROOT).join(&[1, 1, 2, 0]), Value::string("hello trap")),
            VarBind::new(oid(ROOT).join(&[1, 1, 1, 0]), Value::Integer(5)),
            VarBind::new(
                oid(ROOT).join(&[1, 1, 5, 0]),
                Value::IpAddress([192, 0, 2, 9]),
            ),
        ],
    );
    let line = wait_for("the trap at snmptrapd", READY, || trap_line(&rig, &trap));
    let fields: Vec<&str> = line.split('\t').collect();
    assert!(
        fields[0].contains(".1.3.6.1.2.1.1.3.0 = Timeticks: ("),
        "{line}"
    );
    assert_eq!(
        fields[1],
        format!(".1.3.6.1.6.3.1.1.4.1.0 = OID: .{trap}"),
        "{line}"
    );
    assert_eq!(
        fields[2],
        format!(".{ROOT}.1.1.2.0 = STRING: \"hello trap\""),
        "{line}"
    );
    assert_eq!(fields[3], format!(".{ROOT}.1.1.1.0 = INTEGER: 5"), "{line}");
    assert_eq!(
        fields[4],
        format!(".{ROOT}.1.1.5.0 = IpAddress: 192.0.2.9"),
        "{line}"
    );
    wait_for("the notification acknowledged", READY, || {
        (sub.health().notifications_sent == 1).then_some(())
    });

    // Restart snmpd under the subagent; a notification raised while it is
    // down arrives once it is back.
    rig.stop_snmpd();
    wait_for("the subagent to notice", READY, || {
        (!sub.health().connected).then_some(())
    });
    let down_trap = oid(ROOT).join(&[0, 2]);
    sub.notify(
        down_trap.clone(),
        vec![VarBind::new(
            oid(ROOT).join(&[1, 1, 7, 0]),
            Value::Gauge32(77),
        )],
    );
    let restarted = Instant::now();
    rig.start_snmpd();
    wait_connected(&sub, &rig, 1);
    eprintln!(
        "timing: the subtree answered {:?} after snmpd was started again",
        restarted.elapsed()
    );
    let line = wait_for("the trap raised while snmpd was down", READY, || {
        trap_line(&rig, &down_trap)
    });
    assert!(
        line.ends_with(&format!(".{ROOT}.1.1.7.0 = Gauge32: 77")),
        "{line}"
    );
    let walk = rig.snmp("snmpbulkwalk", &[], &[ROOT]);
    assert_same("snmpbulkwalk after the restart", &walk, &view);

    let h = sub.health();
    assert!(h.connected, "{h:?}");
    assert_eq!(h.reconnects, 1, "{h:?}");
    assert_eq!(h.notifications_sent, 2, "{h:?}");
    assert_eq!(h.notifications_dropped, 0, "{h:?}");
    assert!(h.requests > 900, "{h:?}");

    runtime.block_on(sub.shutdown());
    // After a graceful Close, snmpd no longer has our subtree.
    let out = rig.snmp("snmpget", &[], &[&format!("{ROOT}.1.1.1.0")]);
    assert!(out.contains("No Such Object"), "{out}\n{}", rig.logs());
}
