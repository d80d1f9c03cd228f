//! SNMP for the tests: a private net-snmp rig (DESIGN 7, "Test rig"):
//! `snmpd` as AgentX master on a UNIX socket in the test directory and
//! `snmptrapd` logging every notification to a file, both on free loopback
//! UDP ports and reading nothing from /etc or /var; net-snmp's clients run
//! with MAILWARD-MIB loaded from `mibs/` and the IETF base modules from
//! `target/mibs-base/` (fetched by tests/install-deps.sh). Also the parsing
//! of what those tools print (walk lines, trap lines, DateAndTime), of
//! `mibs/MAILWARD-MIB.txt` (names, OIDs, syntaxes, notification objects),
//! and of the statistics catalogue as docs/metrics.md publishes it (which
//! MIB object is the twin of which Prometheus series).
//!
//! It owns no test: those are in `tests/tests/snmp.rs`.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::give_up;
use anyhow::{bail, ensure, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::tools::{free_port, output_text, require, tail, wait_until, READY_TIMEOUT};

/// `MAILWARD-MIB::mailwardMIB`, the default `agentx.root_oid`.
pub const ROOT: &str = "1.3.6.1.4.1.32473.25";

/// `sysUpTime.0`, the first varbind of every notification.
pub const SYS_UPTIME_0: &str = "1.3.6.1.2.1.1.3.0";

/// `snmpTrapOID.0`, the second varbind of every notification.
pub const SNMP_TRAP_OID_0: &str = "1.3.6.1.6.3.1.1.4.1.0";

/// The IETF modules MAILWARD-MIB imports, which must be in the base dir.
pub const BASE_MODULES: &[&str] = &["SNMPv2-SMI", "SNMPv2-TC", "SNMPv2-CONF"];

/// The workspace (the parent of `tests/`).
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// `mibs/`, where MAILWARD-MIB lives.
pub fn mibs_dir() -> PathBuf {
    workspace_dir().join("mibs")
}

/// `mibs/MAILWARD-MIB.txt`.
pub fn mib_file() -> PathBuf {
    mibs_dir().join("MAILWARD-MIB.txt")
}

/// The directory of the IETF base MIBs that tests/fetch-base-mibs.sh
/// fills: `$CARGO_TARGET_DIR/mibs-base`, else the workspace's
/// `target/mibs-base`. Fails, saying what to run, when a module is missing.
pub fn base_mibs_dir() -> Result<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_dir().join("target"));
    let dir = target.join("mibs-base");
    let missing: Vec<&str> = BASE_MODULES
        .iter()
        .copied()
        .filter(|m| !dir.join(format!("{m}.txt")).is_file())
        .collect();
    if !missing.is_empty() {
        bail!(
            "the IETF base MIB modules {} are not in {}: run tests/install-deps.sh \
             (it fetches them once from the npm registry's net-snmp package through \
             tests/fetch-base-mibs.sh)",
            missing.join(", "),
            dir.display()
        );
    }
    Ok(dir)
}

/// The MIB search path for `-M`, MIBDIRS and SMIPATH: the base modules,
/// then `mibs/`.
pub fn mib_path() -> Result<String> {
    Ok(format!(
        "{}:{}",
        base_mibs_dir()?.display(),
        mibs_dir().display()
    ))
}

/// The environment that keeps every net-snmp program away from /etc and
/// /var: its persistent files and config path are `dir`, no MIB is loaded
/// unless asked for.
pub fn net_snmp_env(dir: &Path) -> Vec<(&'static str, String)> {
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

/// Runs a net-snmp client (`snmpwalk`, `snmptranslate`, ...) from the
/// Debian package `snmp` with `args`, in the environment of `dir`.
pub fn net_snmp_tool(dir: &Path, tool: &str, args: &[String]) -> Result<Output> {
    let program = require(tool, "snmp")?;
    make_persistent_dir(dir)?;
    Command::new(&program)
        .args(args)
        .envs(net_snmp_env(dir))
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", program.display()))
}

/// A private snmpd (AgentX master) and snmptrapd under `DIR/snmp/`; both
/// killed on drop.
pub struct NetSnmp {
    /// Configs, logs, the AgentX socket and net-snmp's persistent files.
    pub dir: PathBuf,
    /// snmpd's UDP port (SNMP requests).
    pub port: u16,
    /// snmptrapd's UDP port (snmpd's trap2sink).
    pub trap_port: u16,
    /// The AgentX socket.
    agentx: PathBuf,
    /// snmpd's `agentXPerms` (socket mode, directory mode, owner, group).
    perms: String,
    /// The `-M` path of the clients.
    mib_path: String,
    /// snmpd; None while stopped.
    snmpd: Option<Child>,
    /// snmptrapd.
    snmptrapd: Option<Child>,
    /// snmpd starts so far (one log file each).
    starts: u32,
}

impl NetSnmp {
    /// Starts snmptrapd, then snmpd, under `dir/snmp/`; returns once snmpd
    /// answers a request for its own sysUpTime.0.
    /// Both start again on other ports when either found its port taken
    /// ([`crate::tools::on_free_ports`]).
    pub fn start(dir: &Path) -> Result<NetSnmp> {
        NetSnmp::start_with(dir, "0600 0700", None)
    }

    /// Like [`NetSnmp::start`], with snmpd's `agentXPerms` set to `perms`
    /// and, with `subdir`, the socket in a directory of that name that
    /// snmpd makes itself (as Debian's `/var/agentx`).
    pub fn start_with(dir: &Path, perms: &str, subdir: Option<&str>) -> Result<NetSnmp> {
        crate::tools::on_free_ports(
            || NetSnmp::start_on(dir, free_port(), free_port(), perms, subdir),
            port_taken,
        )
    }

    /// Writes snmpd.conf for the ports, socket and `agentXPerms` of `self`.
    fn write_snmpd_conf(&self) -> Result<()> {
        fs::write(
            self.dir.join("snmpd.conf"),
            format!(
                "# Written by the Mailward end-to-end tests (DESIGN 7).\n\
                 agentAddress   udp:127.0.0.1:{}\n\
                 rocommunity    public 127.0.0.1\n\
                 master         agentx\n\
                 agentXSocket   unix:{}\n\
                 agentXPerms    {}\n\
                 trap2sink      127.0.0.1:{} public\n",
                self.port,
                self.agentx.display(),
                self.perms,
                self.trap_port
            ),
        )?;
        Ok(())
    }

    /// Sets snmpd's `agentXPerms` for its next start.
    pub fn set_perms(&mut self, perms: &str) -> Result<()> {
        self.perms = perms.to_string();
        self.write_snmpd_conf()
    }

    fn start_on(
        dir: &Path,
        port: u16,
        trap_port: u16,
        perms: &str,
        subdir: Option<&str>,
    ) -> Result<NetSnmp> {
        let mib_path = mib_path()?;
        let snmptrapd = require("snmptrapd", "snmptrapd")?;
        require("snmpd", "snmpd")?;
        let home = dir.join("snmp");
        make_persistent_dir(&home)?;
        let agentx = match subdir {
            Some(sub) => home.join(sub).join("master"),
            None => home.join("agentx.sock"),
        };
        fs::write(
            home.join("snmptrapd.conf"),
            "# Written by the Mailward end-to-end tests (DESIGN 7).\n\
             authCommunity log public\n\
             format2 TRAP %b %v\\n\n",
        )?;
        let mut cmd = Command::new(snmptrapd);
        cmd.args(["-f", "-C", "-c"])
            .arg(home.join("snmptrapd.conf"))
            .args(["-X", "-n", "-On", "-Lf"])
            .arg(home.join("traps.log"))
            .arg("-p")
            .arg(home.join("snmptrapd.pid"))
            .arg(format!("udp:127.0.0.1:{trap_port}"));
        let trapd = spawn(cmd, &home, "snmptrapd.out")?;
        let mut rig = NetSnmp {
            dir: home,
            port,
            trap_port,
            agentx,
            perms: perms.to_string(),
            mib_path,
            snmpd: None,
            snmptrapd: Some(trapd),
            starts: 0,
        };
        rig.write_snmpd_conf()?;
        let log = rig.traps_log();
        let trapd = &mut rig.snmptrapd;
        wait_until("snmptrapd to open its log", READY_TIMEOUT, || {
            if let Some(status) = trapd.as_mut().map(Child::try_wait).transpose()?.flatten() {
                give_up!("snmptrapd exited ({status})");
            }
            Ok(fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("NET-SNMP version")
                .then_some(()))
        })
        .with_context(|| rig.logs())?;
        rig.start_snmpd()?;
        Ok(rig)
    }

    /// The AgentX socket.
    pub fn socket(&self) -> PathBuf {
        self.agentx.clone()
    }

    /// `agentx.socket` for Mailward's config.
    pub fn agentx_setting(&self) -> String {
        format!("unix:{}", self.socket().display())
    }

    /// snmptrapd's log.
    pub fn traps_log(&self) -> PathBuf {
        self.dir.join("traps.log")
    }

    /// Starts snmpd (again); returns once it answers for its own
    /// sysUpTime.0 and its AgentX socket exists.
    pub fn start_snmpd(&mut self) -> Result<()> {
        if self.snmpd.is_some() {
            bail!("snmpd is already running");
        }
        let _ = fs::remove_file(self.socket());
        self.starts += 1;
        let mut cmd = Command::new(require("snmpd", "snmpd")?);
        cmd.args(["-f", "-Lo", "-C", "-c"])
            .arg(self.dir.join("snmpd.conf"))
            .args(["-I", "-smux", "-p"])
            .arg(self.dir.join("snmpd.pid"));
        let log = format!("snmpd.{}.out", self.starts);
        self.snmpd = Some(spawn(cmd, &self.dir, &log)?);
        let sysuptime = format!(".{SYS_UPTIME_0}");
        wait_until("snmpd to answer", READY_TIMEOUT, || {
            if let Some(child) = self.snmpd.as_mut() {
                if let Some(status) = child.try_wait()? {
                    give_up!("snmpd exited ({status})");
                }
            }
            if !self.socket().exists() {
                return Ok(None);
            }
            let out = self.run("snmpget", &["-t", "0.5", "-r", "0", "-On"], &[&sysuptime])?;
            Ok(output_text(&out).contains("Timeticks").then_some(()))
        })
        .with_context(|| self.logs())
    }

    /// Stops snmpd with SIGTERM (SIGKILL if it lingers).
    /// snmpd's process ID, while it runs (to stop it with SIGSTOP).
    pub fn snmpd_pid(&self) -> Option<u32> {
        self.snmpd.as_ref().map(Child::id)
    }

    pub fn stop_snmpd(&mut self) -> Result<()> {
        let mut child = self.snmpd.take().context("snmpd is not running")?;
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let stopped = wait_until("snmpd to stop", Duration::from_secs(10), || {
            Ok(child.try_wait()?)
        });
        if stopped.is_err() {
            let _ = child.kill();
            let _ = child.wait();
        }
        Ok(())
    }

    /// Runs `tool -v2c -c public -M BASE:mibs -m MAILWARD-MIB OPTIONS
    /// 127.0.0.1:PORT OIDS`.
    pub fn run(&self, tool: &str, options: &[&str], oids: &[&str]) -> Result<Output> {
        let mut args: Vec<String> = ["-v2c", "-c", "public", "-M", &self.mib_path]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(["-m".to_string(), "MAILWARD-MIB".to_string()]);
        args.extend(options.iter().map(|s| s.to_string()));
        args.push(format!("127.0.0.1:{}", self.port));
        args.extend(oids.iter().map(|s| s.to_string()));
        net_snmp_tool(&self.dir, tool, &args)
    }

    /// Like [`run`](Self::run), parsing stdout into lines; fails when the
    /// tool fails or writes to stderr.
    pub fn lines(&self, tool: &str, options: &[&str], oids: &[&str]) -> Result<Vec<VarLine>> {
        let out = self.run(tool, options, oids)?;
        ensure!(
            out.status.success() && out.stderr.is_empty(),
            "{tool} {} {} failed ({}):\n{}",
            options.join(" "),
            oids.join(" "),
            out.status,
            output_text(&out)
        );
        Ok(parse_var_lines(&String::from_utf8_lossy(&out.stdout)))
    }

    /// snmpd's own sysUpTime.0, in hundredths of a second: the clock the
    /// notifications it forwards for Mailward must carry.
    pub fn sys_uptime(&self) -> Result<u64> {
        let out = self.run("snmpget", &["-On"], &[&format!(".{SYS_UPTIME_0}")])?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_once("Timeticks: (")
            .and_then(|(_, rest)| rest.split(')').next())
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("no Timeticks in snmpget sysUpTime.0: {}", output_text(&out)))
    }

    /// Waits until our subtree answers through snmpd (a GetNext of the
    /// root returns an object under it, whichever `snmp.services` serves),
    /// i.e. the subagent is connected and registered.
    pub fn wait_subtree(&self, timeout: Duration) -> Result<()> {
        let root = format!(".{ROOT}");
        let under = format!(".{ROOT}.");
        wait_until(
            "Mailward's subtree to answer through snmpd",
            timeout,
            || {
                let out = self.run("snmpgetnext", &["-t", "0.5", "-r", "0", "-On"], &[&root])?;
                Ok(String::from_utf8_lossy(&out.stdout)
                    .starts_with(&under)
                    .then_some(()))
            },
        )
    }

    /// Every notification snmptrapd logged so far, in order.
    pub fn traps(&self) -> Vec<Trap> {
        fs::read_to_string(self.traps_log())
            .unwrap_or_default()
            .lines()
            .filter_map(Trap::parse)
            .collect()
    }

    /// Waits for a notification with trap OID `ROOT.0.ARC` among those
    /// after the first `skip` (so that a test sees only what followed its
    /// action); returns it and its position.
    pub fn wait_trap(&self, arc: u32, skip: usize, timeout: Duration) -> Result<(usize, Trap)> {
        let oid = format!("{ROOT}.0.{arc}");
        wait_until(&format!("notification {oid} at snmptrapd"), timeout, || {
            Ok(self
                .traps()
                .into_iter()
                .enumerate()
                .skip(skip)
                .find(|(_, t)| t.trap_oid() == Some(oid.as_str())))
        })
    }

    /// snmpd's and snmptrapd's own logs and the traps, for failure messages.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for n in 1..=self.starts {
            let path = self.dir.join(format!("snmpd.{n}.out"));
            s += &format!("--- {}\n{}\n", path.display(), tail(&path, 20));
        }
        let trapd = self.dir.join("snmptrapd.out");
        s += &format!("--- {}\n{}\n", trapd.display(), tail(&trapd, 10));
        s += &format!(
            "--- {}\n{}\n",
            self.traps_log().display(),
            tail(&self.traps_log(), 30)
        );
        s
    }
}

impl Drop for NetSnmp {
    fn drop(&mut self) {
        for mut child in [self.snmpd.take(), self.snmptrapd.take()]
            .into_iter()
            .flatten()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether net-snmp's words in `text` say that a port was in use.
fn port_taken(text: &str) -> bool {
    text.contains("Error opening specified endpoint") || text.contains("Address already in use")
}

/// `DIR/persist/` with the `cert_indexes/` that net-snmp would otherwise
/// create on first use, announcing it on stderr.
fn make_persistent_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir.join("persist").join("cert_indexes"))
        .with_context(|| format!("creating {}/persist", dir.display()))
}

fn spawn(mut cmd: Command, dir: &Path, log: &str) -> Result<Child> {
    let out = File::create(dir.join(log))?;
    let err = out.try_clone()?;
    cmd.envs(net_snmp_env(dir))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("starting {:?}", cmd.get_program()))
}

/// One `OID = TYPE: VALUE` line of snmpget, snmpwalk and friends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarLine {
    /// As printed: `MAILWARD-MIB::mwMessagesReceived.0`, or `.1.3.6...`
    /// with `-On`.
    pub oid: String,
    /// As printed after ` = `: `Counter64: 6`, `STRING: x`, `No Such
    /// Instance currently exists at this OID`.
    pub value: String,
}

impl VarLine {
    /// The object name and the instance of a `MODULE::name.instance` OID.
    pub fn name_and_instance(&self) -> Option<(&str, &str)> {
        let (_, rest) = self.oid.split_once("::")?;
        Some(rest.split_once('.').unwrap_or((rest, "")))
    }

    /// The number in `Counter64: 6 octets`, `Gauge32: 12`, `INTEGER:
    /// true(1)`, `Timeticks: (1453) 0:00:14.53`.
    pub fn number(&self) -> Option<u64> {
        let (_, v) = self.value.split_once(": ")?;
        let v = v.trim();
        if let Some(inner) = v.strip_prefix('(') {
            return inner.split(')').next()?.parse().ok();
        }
        if let Some(open) = v.find('(') {
            return v[open + 1..].trim_end_matches(')').parse().ok();
        }
        v.split_whitespace().next()?.parse().ok()
    }

    /// The type word before `: `.
    pub fn kind(&self) -> &str {
        self.value
            .split_once(": ")
            .map_or(self.value.as_str(), |(k, _)| k)
    }

    /// The text after `TYPE: `.
    pub fn text(&self) -> &str {
        self.value.split_once(": ").map_or("", |(_, v)| v)
    }
}

/// Parses the lines of a net-snmp client; a line without ` = ` continues
/// the value of the previous one.
pub fn parse_var_lines(out: &str) -> Vec<VarLine> {
    let mut lines: Vec<VarLine> = Vec::new();
    for line in out.lines() {
        match line.split_once(" = ") {
            Some((oid, value)) if !oid.contains(' ') => lines.push(VarLine {
                oid: oid.trim().to_string(),
                value: value.trim_end().to_string(),
            }),
            _ => {
                if let Some(last) = lines.last_mut() {
                    last.value.push('\n');
                    last.value.push_str(line);
                }
            }
        }
    }
    lines
}

/// One notification as snmptrapd logged it (`format2 TRAP %b %v\n` with
/// `-On`): the transport, then the varbinds separated by tabs.
#[derive(Debug, Clone)]
pub struct Trap {
    /// The whole line.
    pub line: String,
    /// (numeric OID without the leading dot, `TYPE: VALUE` trimmed).
    pub varbinds: Vec<(String, String)>,
}

impl Trap {
    /// Parses one line of traps.log; None for other lines.
    pub fn parse(line: &str) -> Option<Trap> {
        let rest = line.strip_prefix("TRAP ")?;
        // The transport ends at the first " ." (the first varbind's OID).
        let start = rest.find(" .")?;
        let varbinds = rest[start + 1..]
            .split('\t')
            .filter_map(|vb| {
                let (oid, value) = vb.split_once(" = ")?;
                Some((
                    oid.trim().trim_start_matches('.').to_string(),
                    value.trim().to_string(),
                ))
            })
            .collect();
        Some(Trap {
            line: line.to_string(),
            varbinds,
        })
    }

    /// The value of snmpTrapOID.0 without `OID: .`.
    pub fn trap_oid(&self) -> Option<&str> {
        self.value(SNMP_TRAP_OID_0)
            .and_then(|v| v.strip_prefix("OID: "))
            .map(|v| v.trim_start_matches('.'))
    }

    /// The value of the varbind `oid` (numeric, no leading dot).
    pub fn value(&self, oid: &str) -> Option<&str> {
        self.varbinds
            .iter()
            .find(|(o, _)| o == oid)
            .map(|(_, v)| v.as_str())
    }

    /// sysUpTime.0 in hundredths of a second, when it is the first varbind.
    pub fn uptime(&self) -> Option<u64> {
        let (oid, value) = self.varbinds.first()?;
        if oid != SYS_UPTIME_0 {
            return None;
        }
        let inner = value.strip_prefix("Timeticks: (")?;
        inner.split(')').next()?.parse().ok()
    }
}

// ---- time ---------------------------------------------------------------

/// Days since 1970-01-01 of a civil date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Unix seconds as RFC 3339 UTC (`2026-11-24T01:21:08Z`).
pub fn rfc3339(unix: i64) -> String {
    let (y, m, d) = civil_from_days(unix.div_euclid(86_400));
    let s = unix.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

/// Unix seconds of an RFC 3339 UTC time as the log writes it
/// (`2026-11-24T01:21:08Z`), the inverse of [`rfc3339`].
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let (date, time) = text.trim().strip_suffix('Z')?.split_once('T')?;
    let date: Vec<i64> = date
        .split('-')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let hms: Vec<i64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    ensure_len(&date, 3)?;
    ensure_len(&hms, 3)?;
    Some(days_from_civil(date[0], date[1], date[2]) * 86_400 + hms[0] * 3600 + hms[1] * 60 + hms[2])
}

/// Unix seconds of a DateAndTime as net-snmp prints it with the MIB
/// loaded (`2026-11-24,1:39:44.0,+0:0`), offset applied.
pub fn parse_date_and_time_text(text: &str) -> Option<i64> {
    let mut parts = text.trim().split(',');
    let date: Vec<i64> = parts
        .next()?
        .split('-')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let time = parts.next()?;
    let (hms, _deci) = time.split_once('.').unwrap_or((time, "0"));
    let hms: Vec<i64> = hms
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    ensure_len(&date, 3)?;
    ensure_len(&hms, 3)?;
    // '0000000000000000'H ("0-0-0,0:0:0.0"): never, 0 as /metrics says.
    if date == [0, 0, 0] {
        return Some(0);
    }
    let mut unix =
        days_from_civil(date[0], date[1], date[2]) * 86_400 + hms[0] * 3600 + hms[1] * 60 + hms[2];
    if let Some(zone) = parts.next() {
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let (h, m) = zone[1..].split_once(':')?;
        let offset = h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60;
        unix -= sign * offset;
    }
    Some(unix)
}

fn ensure_len(v: &[i64], n: usize) -> Option<()> {
    (v.len() == n).then_some(())
}

/// Unix seconds of a DateAndTime as snmptrapd prints it without the MIB
/// (`Hex-STRING: 07 E4 01 01 00 00 00 00 2B 00 00`), offset applied.
pub fn parse_date_and_time_hex(value: &str) -> Option<i64> {
    let hex = value.trim().strip_prefix("Hex-STRING:")?;
    let b: Vec<i64> = hex
        .split_whitespace()
        .map(|x| i64::from_str_radix(x, 16).ok())
        .collect::<Option<_>>()?;
    if b.len() != 8 && b.len() != 11 {
        return None;
    }
    // '0000000000000000'H: never, 0 as /metrics says.
    if b.iter().all(|x| *x == 0) {
        return Some(0);
    }
    let mut unix =
        days_from_civil(b[0] * 256 + b[1], b[2], b[3]) * 86_400 + b[4] * 3600 + b[5] * 60 + b[6];
    if b.len() == 11 {
        let offset = b[9] * 3600 + b[10] * 60;
        unix -= if b[8] == i64::from(b'-') {
            -offset
        } else {
            offset
        };
    }
    Some(unix)
}

/// Now in unix seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

// ---- MAILWARD-MIB -------------------------------------------------------

/// What a definition of the MIB is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MibKind {
    ObjectIdentifier,
    ModuleIdentity,
    ObjectType,
    NotificationType,
    ObjectGroup,
    NotificationGroup,
    ModuleCompliance,
    ObjectIdentity,
}

impl MibKind {
    fn from_macro(word: &str) -> Option<MibKind> {
        Some(match word {
            "MODULE-IDENTITY" => MibKind::ModuleIdentity,
            "OBJECT-TYPE" => MibKind::ObjectType,
            "NOTIFICATION-TYPE" => MibKind::NotificationType,
            "OBJECT-GROUP" => MibKind::ObjectGroup,
            "NOTIFICATION-GROUP" => MibKind::NotificationGroup,
            "MODULE-COMPLIANCE" => MibKind::ModuleCompliance,
            "OBJECT-IDENTITY" => MibKind::ObjectIdentity,
            _ => return None,
        })
    }
}

/// One named node of the MIB.
#[derive(Debug, Clone)]
pub struct MibNode {
    pub name: String,
    pub kind: MibKind,
    /// `::= { parent arc }`.
    pub parent: String,
    pub arc: u32,
    /// The SYNTAX clause, tokens joined by spaces.
    pub syntax: Option<String>,
    /// MAX-ACCESS.
    pub access: Option<String>,
    /// UNITS (`octets`, `microseconds`).
    pub units: Option<String>,
    /// OBJECTS of a notification or object group.
    pub objects: Vec<String>,
    /// INDEX of a conceptual row.
    pub index: Vec<String>,
}

/// The definitions of one MIB module, in file order.
#[derive(Debug, Clone)]
pub struct Mib {
    pub nodes: Vec<MibNode>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Punct(&'static str),
}

fn tokenize(text: &str) -> Vec<Tok> {
    let chars: Vec<char> = text.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '-' && chars.get(i + 1) == Some(&'-') {
            // A comment runs to the end of the line (or the next "--").
            i += 2;
            while i < chars.len() && chars[i] != '\n' {
                if chars[i] == '-' && chars.get(i + 1) == Some(&'-') {
                    i += 2;
                    break;
                }
                i += 1;
            }
        } else if c == '"' {
            i += 1;
            let start = i;
            while i < chars.len() && chars[i] != '"' {
                i += 1;
            }
            toks.push(Tok::Str(chars[start..i.min(chars.len())].iter().collect()));
            i += 1;
        } else if c == ':' && chars.get(i + 1) == Some(&':') && chars.get(i + 2) == Some(&'=') {
            toks.push(Tok::Punct("::="));
            i += 3;
        } else if c == '.' && chars.get(i + 1) == Some(&'.') {
            toks.push(Tok::Punct(".."));
            i += 2;
        } else if c.is_ascii_alphanumeric() {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric()
                    || (chars[i] == '-'
                        && chars.get(i + 1) != Some(&'-')
                        && chars.get(i + 1).is_some_and(|n| n.is_ascii_alphanumeric())))
            {
                i += 1;
            }
            toks.push(Tok::Word(chars[start..i].iter().collect()));
        } else {
            let p = match c {
                '{' => "{",
                '}' => "}",
                '(' => "(",
                ')' => ")",
                ',' => ",",
                ';' => ";",
                '|' => "|",
                '[' => "[",
                ']' => "]",
                _ => "?",
            };
            toks.push(Tok::Punct(p));
            i += 1;
        }
    }
    toks
}

fn word(t: Option<&Tok>) -> Option<&str> {
    match t {
        Some(Tok::Word(w)) => Some(w.as_str()),
        _ => None,
    }
}

/// The names of a `{ a, b, c }` list starting at `toks[i]`; returns them
/// and the position after the `}`.
fn brace_list(toks: &[Tok], mut i: usize) -> (Vec<String>, usize) {
    let mut out = Vec::new();
    if toks.get(i) != Some(&Tok::Punct("{")) {
        return (out, i);
    }
    i += 1;
    while i < toks.len() && toks[i] != Tok::Punct("}") {
        if let Tok::Word(w) = &toks[i] {
            out.push(w.clone());
        }
        i += 1;
    }
    (out, i + 1)
}

const CLAUSES: &[&str] = &[
    "SYNTAX",
    "UNITS",
    "MAX-ACCESS",
    "ACCESS",
    "STATUS",
    "DESCRIPTION",
    "REFERENCE",
    "INDEX",
    "AUGMENTS",
    "DEFVAL",
    "OBJECTS",
    "NOTIFICATIONS",
];

impl Mib {
    /// Parses `mibs/MAILWARD-MIB.txt`.
    pub fn load() -> Result<Mib> {
        let path = mib_file();
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        Mib::parse(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Parses the definitions of an SMIv2 module: enough of the grammar for
    /// names, OIDs, SYNTAX, MAX-ACCESS, UNITS, INDEX and OBJECTS.
    pub fn parse(text: &str) -> Result<Mib> {
        let toks = tokenize(text);
        let mut nodes = Vec::new();
        let mut i = 0;
        while i < toks.len() {
            // IMPORTS run to the first ';'.
            if word(toks.get(i)) == Some("IMPORTS") {
                while i < toks.len() && toks[i] != Tok::Punct(";") {
                    i += 1;
                }
                continue;
            }
            let Some(name) = word(toks.get(i)) else {
                i += 1;
                continue;
            };
            let starts_lower = name.starts_with(|c: char| c.is_ascii_lowercase());
            // name OBJECT IDENTIFIER ::= { parent arc }
            if starts_lower
                && word(toks.get(i + 1)) == Some("OBJECT")
                && word(toks.get(i + 2)) == Some("IDENTIFIER")
                && toks.get(i + 3) == Some(&Tok::Punct("::="))
            {
                let (list, next) = brace_list(&toks, i + 4);
                nodes.push(assignment(name, MibKind::ObjectIdentifier, &list)?);
                i = next;
                continue;
            }
            let kind = word(toks.get(i + 1)).and_then(MibKind::from_macro);
            let Some(kind) = kind.filter(|_| starts_lower) else {
                i += 1;
                continue;
            };
            // Clauses up to ::= { parent arc }.
            let mut j = i + 2;
            let mut syntax = None;
            let mut access = None;
            let mut units = None;
            let mut objects = Vec::new();
            let mut index = Vec::new();
            while j < toks.len() && toks[j] != Tok::Punct("::=") {
                match word(toks.get(j)) {
                    Some("SYNTAX") => {
                        let mut k = j + 1;
                        let mut words = Vec::new();
                        while k < toks.len()
                            && !word(toks.get(k)).is_some_and(|w| CLAUSES.contains(&w))
                        {
                            match &toks[k] {
                                Tok::Word(w) => words.push(w.clone()),
                                Tok::Punct(p) => words.push(p.to_string()),
                                Tok::Str(t) => words.push(format!("{t:?}")),
                            }
                            k += 1;
                        }
                        syntax = Some(words.join(" "));
                        j = k;
                    }
                    Some("MAX-ACCESS") | Some("ACCESS") => {
                        access = word(toks.get(j + 1)).map(str::to_string);
                        j += 2;
                    }
                    Some("UNITS") => {
                        if let Some(Tok::Str(t)) = toks.get(j + 1) {
                            units = Some(t.clone());
                        }
                        j += 2;
                    }
                    Some("OBJECTS") if objects.is_empty() => {
                        let (list, next) = brace_list(&toks, j + 1);
                        objects = list;
                        j = next;
                    }
                    Some("INDEX") => {
                        let (list, next) = brace_list(&toks, j + 1);
                        index = list.into_iter().filter(|w| w != "IMPLIED").collect();
                        j = next;
                    }
                    _ => j += 1,
                }
            }
            let (list, next) = brace_list(&toks, j + 1);
            let mut node = assignment(name, kind, &list)?;
            node.syntax = syntax;
            node.access = access;
            node.units = units;
            node.objects = objects;
            node.index = index;
            nodes.push(node);
            i = next;
        }
        ensure!(
            nodes.iter().any(|n| n.name == "mailwardMIB"),
            "no mailwardMIB MODULE-IDENTITY"
        );
        Ok(Mib { nodes })
    }

    /// The node named `name`.
    pub fn node(&self, name: &str) -> Option<&MibNode> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The numeric OID of `name` (no leading dot), resolved up to
    /// `enterprises`.
    pub fn oid(&self, name: &str) -> Option<String> {
        let mut arcs = Vec::new();
        let mut cur = name.to_string();
        for _ in 0..64 {
            if cur == "enterprises" {
                arcs.reverse();
                let tail: Vec<String> = arcs.iter().map(u32::to_string).collect();
                return Some(format!("1.3.6.1.4.1.{}", tail.join(".")));
            }
            let node = self.node(&cur)?;
            arcs.push(node.arc);
            cur = node.parent.clone();
        }
        None
    }

    /// The OBJECT-TYPEs.
    pub fn object_types(&self) -> impl Iterator<Item = &MibNode> {
        self.nodes.iter().filter(|n| n.kind == MibKind::ObjectType)
    }

    /// The NOTIFICATION-TYPEs.
    pub fn notifications(&self) -> impl Iterator<Item = &MibNode> {
        self.nodes
            .iter()
            .filter(|n| n.kind == MibKind::NotificationType)
    }

    /// Whether `name` is a column (its parent is a conceptual row).
    pub fn is_column(&self, name: &str) -> bool {
        self.node(name)
            .and_then(|n| self.node(&n.parent))
            .is_some_and(|p| p.kind == MibKind::ObjectType && !p.index.is_empty())
    }

    /// The INDEX objects of the row that column `name` is in.
    pub fn index_of(&self, name: &str) -> Vec<String> {
        self.node(name)
            .and_then(|n| self.node(&n.parent))
            .map(|p| p.index.clone())
            .unwrap_or_default()
    }

    /// The objects an SNMP GET may read (MAX-ACCESS read-only or
    /// read-write), scalars and columns.
    pub fn readable(&self) -> Vec<&MibNode> {
        self.object_types()
            .filter(|n| matches!(n.access.as_deref(), Some("read-only" | "read-write")))
            .collect()
    }
}

fn assignment(name: &str, kind: MibKind, list: &[String]) -> Result<MibNode> {
    let (parent, arc) = match list {
        [parent, arc] => (parent.clone(), arc.parse::<u32>().ok()),
        _ => (String::new(), None),
    };
    let arc = arc.with_context(|| {
        format!(
            "{name}: ::= {{ {} }} is not {{ parent arc }}",
            list.join(" ")
        )
    })?;
    Ok(MibNode {
        name: name.to_string(),
        kind,
        parent,
        arc,
        syntax: None,
        access: None,
        units: None,
        objects: Vec::new(),
        index: Vec::new(),
    })
}

/// Compares numeric OIDs (dotted, no leading dot) arc by arc.
pub fn oid_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let arcs = |s: &str| -> Vec<u64> {
        s.trim_start_matches('.')
            .split('.')
            .filter_map(|x| x.parse().ok())
            .collect()
    };
    arcs(a).cmp(&arcs(b))
}

/// Whether numeric OID `oid` is `root` or below it.
pub fn oid_under(oid: &str, root: &str) -> bool {
    let oid = oid.trim_start_matches('.');
    let root = root.trim_start_matches('.');
    oid == root || oid.starts_with(&format!("{root}."))
}

// ---- the catalogue, as docs/metrics.md publishes it -----------------------

/// One statistic of the catalogue with its MIB twin.
#[derive(Debug, Clone)]
pub struct CatalogueEntry {
    /// The Prometheus family (`mailward_messages_received_total`).
    pub prometheus: String,
    /// counter, gauge or histogram.
    pub kind: String,
    /// The label and its values (`reason`, [relay, access, ...]); values
    /// empty for an open label such as `version`.
    pub label: Option<(String, Vec<String>)>,
    /// count, bytes, seconds, unix seconds, 0/1, ...
    pub unit: String,
    /// The MIB object (`mwMessagesRejected`): a scalar, or the base name of
    /// a table (`...Table`, `...Count`) or of a histogram (`...Count`,
    /// `...Total`).
    pub mib: String,
}

/// One top-N table of the catalogue.
#[derive(Debug, Clone)]
pub struct TopTable {
    /// The Prometheus gauge (`mailward_top_virus_detections`).
    pub prometheus: String,
    /// Its item label (`virus`).
    pub item_label: String,
    /// The MIB table (`mwTopVirusTable`).
    pub mib_table: String,
}

/// The catalogue's tables in docs/metrics.md.
#[derive(Debug, Clone)]
pub struct Catalogue {
    pub entries: Vec<CatalogueEntry>,
    pub top_tables: Vec<TopTable>,
    /// The per-policy-group columns: (Prometheus family labelled `group`,
    /// column of mwPolicyGroupTable).
    pub group_columns: Vec<(String, String)>,
}

impl Catalogue {
    /// Reads docs/metrics.md (generated from metrics/src/catalogue.rs).
    pub fn load() -> Result<Catalogue> {
        let path = workspace_dir().join("docs").join("metrics.md");
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let mut entries = Vec::new();
        let mut top_tables = Vec::new();
        let mut group_columns = Vec::new();
        for line in text.lines() {
            let cells: Vec<String> = line.split('|').map(|c| c.trim().replace('`', "")).collect();
            // "| a | b |" splits into ["", a, b, ""].
            if cells.len() < 3
                || !cells[1].starts_with("mailward_") && !cells[1].starts_with("process_")
            {
                continue;
            }
            let cells = &cells[1..cells.len() - 1];
            match cells.len() {
                7 => {
                    let label = if cells[2].is_empty() {
                        None
                    } else {
                        let (name, values) = cells[2].split_once(':').unwrap_or((&cells[2], ""));
                        let values = values
                            .split(',')
                            .map(|v| v.trim().to_string())
                            .filter(|v| !v.is_empty())
                            .collect();
                        Some((name.trim().to_string(), values))
                    };
                    entries.push(CatalogueEntry {
                        prometheus: cells[0].clone(),
                        kind: cells[1].clone(),
                        label,
                        unit: cells[3].clone(),
                        mib: cells[5].clone(),
                    });
                }
                4 if cells[1] == "group" => group_columns.push((
                    cells[0].clone(),
                    cells[2]
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string(),
                )),
                5 => top_tables.push(TopTable {
                    prometheus: cells[0].clone(),
                    item_label: cells[1].clone(),
                    mib_table: cells[3].clone(),
                }),
                _ => {}
            }
        }
        ensure!(
            entries.len() >= 20 && !top_tables.is_empty() && group_columns.len() > 1,
            "{}: found {} catalogue rows, {} top-N tables and {} policy group columns; has its layout changed?",
            path.display(),
            entries.len(),
            top_tables.len(),
            group_columns.len()
        );
        Ok(Catalogue {
            entries,
            top_tables,
            group_columns,
        })
    }
}

/// An SMI name for a label value (`not_needed` -> `notNeeded`), as the
/// MIB's enumerations spell them.
pub fn smi_label(value: &str) -> String {
    let mut out = String::new();
    let mut up = false;
    for c in value.chars() {
        if c == '_' || c == '-' {
            up = true;
        } else if up {
            out.extend(c.to_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// A walk as a map from printed OID to value text, for comparing walks.
pub fn by_oid(lines: &[VarLine]) -> BTreeMap<String, String> {
    lines
        .iter()
        .map(|l| (l.oid.clone(), l.value.clone()))
        .collect()
}

/// Waits `d`, for when a test must let a cache expire.
pub fn pause(d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_walk_and_trap_lines() {
        let lines = parse_var_lines(
            "MAILWARD-MIB::mwReceivedOctets.0 = Counter64: 2157 octets\n\
             MAILWARD-MIB::mwAgentxConnected.0 = INTEGER: true(1)\n\
             MAILWARD-MIB::mwUptime.0 = Timeticks: (1453) 0:00:14.53\n\
             MAILWARD-MIB::mwMessagesRejectedCount.relay = Counter64: 1\n",
        );
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0].number(), Some(2157));
        assert_eq!(lines[1].number(), Some(1));
        assert_eq!(lines[2].number(), Some(1453));
        assert_eq!(
            lines[3].name_and_instance(),
            Some(("mwMessagesRejectedCount", "relay"))
        );
        let trap = Trap::parse(
            "TRAP UDP: [127.0.0.1]:1->[127.0.0.1]:2 .1.3.6.1.2.1.1.3.0 = Timeticks: (7) 0:00:00.07\t\
             .1.3.6.1.6.3.1.1.4.1.0 = OID: .1.3.6.1.4.1.32473.25.0.7\t\
             .1.3.6.1.4.1.32473.25.1.3.4.0 = Hex-STRING: 07 E4 01 01 00 00 00 00 2B 00 00 ",
        )
        .unwrap();
        assert_eq!(trap.uptime(), Some(7));
        assert_eq!(trap.trap_oid(), Some("1.3.6.1.4.1.32473.25.0.7"));
        let released = trap.value("1.3.6.1.4.1.32473.25.1.3.4.0").unwrap();
        assert_eq!(parse_date_and_time_hex(released), Some(1_577_836_800));
    }

    #[test]
    fn converts_times() {
        assert_eq!(rfc3339(1_577_836_800), "2020-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_483_268), "2026-11-24T01:21:08Z");
        assert_eq!(
            parse_date_and_time_text("2026-11-24,1:21:8.0,+0:0"),
            Some(1_795_483_268)
        );
        assert_eq!(parse_date_and_time_text("1970-1-1,0:0:0.0,+0:0"), Some(0));
        // The all-zero DateAndTime of "never".
        assert_eq!(parse_date_and_time_text("0-0-0,0:0:0.0"), Some(0));
        assert_eq!(
            parse_date_and_time_hex("Hex-STRING: 00 00 00 00 00 00 00 00"),
            Some(0)
        );
        assert_eq!(
            parse_date_and_time_text("2026-11-24,3:21:8.0,+2:0"),
            Some(1_795_483_268)
        );
    }

    #[test]
    fn parses_the_mib() {
        let mib = Mib::load().unwrap();
        assert_eq!(mib.oid("mailwardMIB").as_deref(), Some(ROOT));
        assert_eq!(
            mib.oid("mwMessagesReceived").as_deref(),
            Some("1.3.6.1.4.1.32473.25.1.2.1.1")
        );
        assert!(mib.is_column("mwMessagesRejectedCount"));
        assert!(!mib.is_column("mwMessagesReceived"));
        let start = mib.node("mwProductStart").unwrap();
        assert_eq!(start.objects, ["mwVersion", "mwConfigFile"]);
        assert_eq!(smi_label("rolled_back"), "rolledBack");
    }
}
