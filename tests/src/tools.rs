//! The environment of a test: external commands (and the Debian package
//! each comes from), free loopback ports, temporary directories, fixtures
//! and polling with deadlines. It knows nothing about SMTP.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::net::{TcpListener, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

/// How long anything may take to become ready (a daemon, a sink, a DNS
/// server). Generous because CI is a slow, shared two-core machine.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How often conditions are polled.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Directories searched after `PATH`: Postfix's tools live in /usr/sbin,
/// which is not in an ordinary user's `PATH`.
const EXTRA_BIN_DIRS: &[&str] = &["/usr/sbin", "/sbin", "/usr/local/sbin"];

/// Finds `cmd`, or fails with the Debian package that provides it.
pub fn require(cmd: &str, debian_package: &str) -> Result<PathBuf> {
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let dirs = path_dirs
        .into_iter()
        .chain(EXTRA_BIN_DIRS.iter().map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(cmd);
        if let Ok(meta) = candidate.metadata() {
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return Ok(candidate);
            }
        }
    }
    bail!("`{cmd}` not found: install the Debian package {debian_package} (tests/install-deps.sh)")
}

/// Ports handed out by this process, so that two tests running in
/// parallel never get the same one between its release and its reuse.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// The lowest port `free_port` hands out: above the well-known and most
/// registered services' ports.
const LOWEST_PORT: u16 = 10_000;

/// The first port of the kernel's ephemeral range (Linux's
/// `net.ipv4.ip_local_port_range`), where it picks the source port of an
/// outgoing connection and the port of a `bind(0)`; 32768 when it cannot
/// be read, Linux's default.
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// A loopback TCP port that is free now (and free for UDP too, so that a
/// DNS server can use it).
///
/// The port is picked below the ephemeral range. A test hands the port
/// to a peer (the daemon, smtp-sink, dnsmasq) that binds it later,
/// sometimes seconds later; a port from the ephemeral range could be
/// taken in that gap by any outgoing connection on the machine (the
/// test's own clients, the daemon's deliveries, the AgentX session)
/// as its source port, and the peer would then fail to start. Below the
/// range only another listener can take it, and this process's own are
/// never handed out twice. Where the range starts too low to leave room
/// (a tuned machine), the kernel's pick is used as before.
pub fn free_port() -> u16 {
    let high = ephemeral_low();
    // Where this process starts looking: spread by the process id so that
    // two test processes (a test and its chaos run, say) seldom probe the
    // same ports in the same order.
    let span = u32::from(high.saturating_sub(LOWEST_PORT));
    let mut next = if span >= 1_000 {
        std::process::id().wrapping_mul(2_654_435_761) % span
    } else {
        0
    };
    loop {
        let port = if span >= 1_000 {
            next = (next + 1) % span;
            // In range by construction: next < span <= u16::MAX.
            LOWEST_PORT + u16::try_from(next).unwrap_or(0)
        } else {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
            listener.local_addr().expect("local_addr").port()
        };
        if !tcp_port_unused(port) || UdpSocket::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        let mut guard = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if guard.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
}

/// Starts a peer on ports from [`free_port`] with `start`, again (five
/// times at most) when it failed because one of them was taken between
/// the probe and the peer's bind (the daemons' resolvers send from random
/// UDP ports, below the ephemeral range too): `taken` reads the error
/// (with its context: the peer's log tail) for the peer's words for it.
pub fn on_free_ports<T>(
    mut start: impl FnMut() -> anyhow::Result<T>,
    taken: impl Fn(&str) -> bool,
) -> anyhow::Result<T> {
    let mut tries = 0;
    loop {
        match start() {
            Err(e) if tries < 5 && taken(&format!("{e:#}")) => tries += 1,
            other => return other,
        }
    }
}

/// A UDP socket bound on 127.0.0.1 to one of [`free_port`]'s ports. The
/// port can be taken between the probe and this bind (the daemons' DNS
/// resolver sends from random ports, below the ephemeral range too), so
/// another port is tried then.
pub fn bind_free_udp() -> std::io::Result<UdpSocket> {
    let mut last = None;
    for _ in 0..50 {
        match UdpSocket::bind(("127.0.0.1", free_port())) {
            Ok(socket) => return Ok(socket),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free UDP port")))
}

/// Whether no TCP socket on 127.0.0.1 holds `port`, not even one in
/// TIME_WAIT: the probe binds without `SO_REUSEADDR` (which
/// `TcpListener::bind` sets), because a port an earlier test's daemon
/// served on is in TIME_WAIT for a minute, and a peer that binds without
/// that option would fail on it.
fn tcp_port_unused(port: u16) -> bool {
    use nix::sys::socket::{bind, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
    use std::net::{Ipv4Addr, SocketAddrV4};
    use std::os::fd::AsRawFd;
    let Ok(fd) = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    ) else {
        return false;
    };
    bind(
        fd.as_raw_fd(),
        &SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)),
    )
    .is_ok()
}

/// Whether the test processes run as root (then smtp-sink must be told
/// which user to become, and dnsmasq drops to `nobody` by itself).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A temporary directory for one test: configs, spool, sink dumps, logs.
/// Removed at the end unless `MAILWARD_E2E_KEEP` is set (then its path is
/// printed, for looking at a failure).
pub struct TestDir {
    /// The directory; None once kept.
    dir: Option<tempfile::TempDir>,
    /// Its path, valid in both cases.
    path: PathBuf,
}

impl TestDir {
    /// A new directory named after the test.
    pub fn new(name: &str) -> Result<TestDir> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("mailward-e2e-{name}-"))
            .tempdir()
            .context("creating a temporary directory")?;
        // smtp-sink runs as `postfix` when we are root, and must reach its
        // dump directory below this one.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let path = dir.path().to_path_buf();
        let dir = if std::env::var_os("MAILWARD_E2E_KEEP").is_some() {
            eprintln!("keeping test directory {}", path.display());
            let _ = dir.keep();
            None
        } else {
            Some(dir)
        };
        Ok(TestDir { dir, path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path inside it.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            // Files written by smtp-sink as `postfix` are removable by root;
            // a failure here must not hide the test's own result.
            let _ = dir.close();
        }
    }
}

/// The directory of fixtures, `tests/resources/`.
pub fn resources_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("resources")
}

/// The path of one fixture.
pub fn resource(name: &str) -> PathBuf {
    resources_dir().join(name)
}

/// The bytes of one fixture.
pub fn read_resource(name: &str) -> Result<Vec<u8>> {
    let path = resource(name);
    std::fs::read(&path).with_context(|| format!("reading fixture {}", path.display()))
}

/// An error that [`wait_until`] returns at once instead of polling on:
/// the peer it waits for has exited (or said it cannot start), and no
/// amount of waiting will change that.
#[derive(Debug)]
pub struct GaveUp(pub String);

impl std::fmt::Display for GaveUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GaveUp {}

/// `return Err(...)` from a [`wait_until`] check that should not wait on.
#[macro_export]
macro_rules! give_up {
    ($($arg:tt)*) => {
        return Err($crate::tools::GaveUp(format!($($arg)*)).into())
    };
}

/// Polls `check` until it returns Some, or fails after `timeout` saying
/// what it waited for (and the last error `check` gave, if any); an error
/// of [`give_up!`] ends the wait at once.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let start = Instant::now();
    let mut last_error = None;
    loop {
        match check() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) if e.downcast_ref::<GaveUp>().is_some() => {
                return Err(e.context(format!("while waiting for {what}")))
            }
            Err(e) => last_error = Some(e),
        }
        if start.elapsed() > timeout {
            match last_error {
                Some(e) => bail!(
                    "timed out after {:.1}s waiting for {what}; last error: {e:#}",
                    timeout.as_secs_f64()
                ),
                None => bail!(
                    "timed out after {:.1}s waiting for {what}",
                    timeout.as_secs_f64()
                ),
            }
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// Runs a command to its end and returns its output, failing only when it
/// cannot be started.
pub fn run(program: &Path, args: &[impl AsRef<OsStr>]) -> Result<Output> {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", program.display()))
}

/// stdout and stderr of a finished command, for assertions and messages.
pub fn output_text(output: &Output) -> String {
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.stderr.is_empty() {
        text.push_str("\n--- stderr ---\n");
        text.push_str(&String::from_utf8_lossy(&output.stderr));
    }
    text
}

/// Runs `swaks` with `args` (it prints the whole conversation: `->` what it
/// sent, `<-` what it got, `~>`/`<~` the same under TLS).
pub fn swaks(args: &[&str]) -> Result<Output> {
    let swaks = require("swaks", "swaks")?;
    run(&swaks, args)
}

/// swaks sending `message` (written to DIR/NAME.eml first) from
/// alice@sender.test to `rcpt` at 127.0.0.1:PORT, with `extra` arguments
/// (`--ehlo`, `--local-interface`, ...): (exit ok, transcript).
pub fn swaks_message(
    dir: &Path,
    port: u16,
    name: &str,
    rcpt: &str,
    message: &[u8],
    extra: &[&str],
) -> Result<(bool, String)> {
    let file = dir.join(format!("{name}.eml"));
    std::fs::write(&file, message)?;
    let server = format!("127.0.0.1:{port}");
    let file = file.display().to_string();
    let mut args = vec![
        "--server",
        &server,
        "--from",
        "alice@sender.test",
        "--to",
        rcpt,
        "--data",
        &file,
    ];
    args.extend_from_slice(extra);
    let out = swaks(&args)?;
    Ok((out.status.success(), output_text(&out)))
}

/// Fails unless swaks can do STARTTLS (it needs Perl's Net::SSLeay, which
/// swaks only recommends).
pub fn require_swaks_tls() -> Result<()> {
    let swaks = require("swaks", "swaks")?;
    let out = run(&swaks, &["--support"])?;
    if !output_text(&out).contains("=== TLS supported") {
        bail!("`swaks --tls` cannot work: install the Debian package libnet-ssleay-perl (tests/install-deps.sh)");
    }
    Ok(())
}

/// Runs Postfix's `smtp-source` load generator with `args`.
pub fn smtp_source(args: &[&str]) -> Result<Output> {
    let source = require("smtp-source", "postfix")?;
    run(&source, args)
}

/// Reads a log file once its writer has caught up: read, wait 20 ms, and
/// read again until two reads agree (for at most 2 s).
///
/// The gateway's log writer, when busy (a test that sends a dozen
/// messages in a burst), lingers 2 ms to take lines in batches, so the
/// line behind a reply or a counter the test has just seen can land a
/// moment later. An administrator who reads the log after a counter moved
/// sees it; a test reading at once might not.
pub fn read_settled(path: &Path) -> std::io::Result<String> {
    let start = Instant::now();
    let mut text = std::fs::read(path)?;
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let again = std::fs::read(path)?;
        if again.len() == text.len() || start.elapsed() > Duration::from_secs(2) {
            return Ok(String::from_utf8_lossy(&again).into_owned());
        }
        text = again;
    }
}

/// The last `n` lines of a log file, for failure messages.
pub fn tail(path: &Path, n: usize) -> String {
    let text = match read_settled(path) {
        Ok(text) => text,
        Err(e) => return format!("(cannot read {}: {e})", path.display()),
    };
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].join("\n")
}

/// Makes a self-signed certificate for `cn` in `dir` with openssl, valid
/// 30 days (past the 14 within which the gateway says it expires);
/// returns the paths of (cert, key).
pub fn self_signed(dir: &Path, cn: &str) -> Result<(String, String)> {
    self_signed_for(dir, cn, 30)
}

/// [`self_signed`], valid `days` days.
pub fn self_signed_for(dir: &Path, cn: &str, days: u32) -> Result<(String, String)> {
    let openssl = require("openssl", "openssl")?;
    let cert = dir.join("cert.pem").display().to_string();
    let key = dir.join("key.pem").display().to_string();
    let out = run(
        &openssl,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &format!("/CN={cn}"),
            "-days",
            &days.to_string(),
            "-keyout",
            &key,
            "-out",
            &cert,
        ],
    )?;
    ensure!(
        out.status.success(),
        "openssl failed:\n{}",
        output_text(&out)
    );
    Ok((cert, key))
}

/// A test CA and a server certificate it signs for `name` (subjectAltName
/// DNS:`name`, serverAuth), made with openssl in `dir`: what a real
/// next hop with a certificate from a (private) CA has. Returns the paths
/// of (CA certificate, server certificate, server key).
pub fn ca_and_leaf(dir: &Path, name: &str) -> Result<(String, String, String)> {
    let openssl = require("openssl", "openssl")?;
    let p = |f: &str| dir.join(f).display().to_string();
    let (ca, ca_key, leaf, key, csr, ext) = (
        p("ca.pem"),
        p("ca.key"),
        p("leaf.pem"),
        p("leaf.key"),
        p("leaf.csr"),
        p("leaf.ext"),
    );
    std::fs::write(
        &ext,
        format!(
            "subjectAltName=DNS:{name}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
        ),
    )?;
    let steps: [Vec<&str>; 3] = [
        vec![
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=Mailward Test CA",
            "-days",
            "30",
            "-keyout",
            &ca_key,
            "-out",
            &ca,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ],
        vec![
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=leaf", "-keyout", &key, "-out",
            &csr,
        ],
        vec![
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "30",
            "-out",
            &leaf,
            "-extfile",
            &ext,
        ],
    ];
    for args in &steps {
        let out = run(&openssl, args)?;
        ensure!(
            out.status.success(),
            "openssl {}:\n{}",
            args.join(" "),
            output_text(&out)
        );
    }
    Ok((ca, leaf, key))
}
