//! `mailward run`: builds the gateway from a validated configuration,
//! recovers the spool, starts the listeners, the delivery loop and the admin
//! socket, and then waits for signals: SIGHUP reloads (a bad configuration is
//! refused and the running one kept), SIGTERM/SIGINT stop gracefully.

use crate::config::{self, Config, RestartOnly};
use crate::delivery::attempt::Delivery;
use crate::delivery::pool::Pool;
use crate::delivery::queue::Queue;
use crate::events::{ConfigReloaded, Notification};
use crate::gateway::{self, Gateway};
use crate::ops::snmp::Snmp;
use crate::spool::Spool;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

/// How long open sessions and deliveries may take to finish on stop.
const GRACE: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Build(#[from] gateway::BuildError),
    #[error(transparent)]
    Spool(#[from] crate::spool::SpoolError),
    #[error("{0}{hint}", hint = bind_hint(&.0.source, .0.addr, "network.listen_on"))]
    Bind(#[from] crate::smtp::server::BindError),
    #[error(transparent)]
    Admin(#[from] crate::ops::admin::AdminError),
    #[error("{0}{hint}", hint = bind_hint(&.0.source, .0.addr, "metrics.listen"))]
    Metrics(#[from] crate::ops::metrics_http::MetricsError),
    #[error("a component stopped unexpectedly (see the log)")]
    ComponentFailed,
    #[error(transparent)]
    Snmp(#[from] crate::ops::snmp::SnmpError),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("cannot start a scan worker: {0}; the system is out of threads or memory (see ulimit -u and systemd's TasksMax)")]
    ScanWorkers(std::io::Error),
    #[error(transparent)]
    Locked(#[from] crate::files::LockError),
    #[error("quarantine or archive: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Privilege(#[from] crate::ops::privileges::PrivilegeError),
    #[error(transparent)]
    Milter(#[from] crate::milter::server::MilterBindError),
}

/// What to do when a port cannot be bound: the two causes an operator
/// meets, each with its remedy and the key that names the port.
fn bind_hint(e: &std::io::Error, addr: std::net::SocketAddr, key: &str) -> String {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => format!(
            "; another program holds it (`ss -ltnp 'sport = :{}'` names it): stop it, or change {key}",
            addr.port()
        ),
        std::io::ErrorKind::PermissionDenied if addr.port() < 1024 => format!(
            "; ports below 1024 need root: start mailward as root with [server] user set (it binds, then gives up root), or give it CAP_NET_BIND_SERVICE, or change {key}"
        ),
        std::io::ErrorKind::AddrNotAvailable => {
            format!("; no interface of this host has that address: change {key}")
        }
        _ => String::new(),
    }
}

impl RunError {
    /// The sysexits status `mailward run` ends with: 75 (EX_TEMPFAIL) when
    /// another instance holds the data directory (try again once it is
    /// gone), 71 (EX_OSERR) for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Locked(crate::files::LockError::Held { .. }) => 75,
            _ => 71,
        }
    }
}

/// What the command line sets over the configuration file, applied at start
/// and again at every reload, so that a SIGHUP neither undoes it nor warns
/// that it "needs a restart": `mailward milter` has no SMTP listener and may
/// name its socket with --listen.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub milter_only: bool,
    pub milter_listen: Option<config::MilterListen>,
}

impl Overrides {
    pub fn apply(&self, config: &mut Config) {
        if let Some(l) = &self.milter_listen {
            config.milter.listen = Some(l.clone());
        }
        if self.milter_only {
            // A milter only: the MTA owns the SMTP port.
            config.network.listen_on.clear();
        }
    }

    /// What `config` asks for that this mode does not do, one warning
    /// each: a milter sees each message only after the MTA has let its
    /// client in, so who may connect, send and relay is the MTA's
    /// decision. Logged at start and at each reload, so that an operator
    /// who set them does not believe they hold. `mailward run` with
    /// `[milter] listen` applies them on its own SMTP listener only, and
    /// says so (walkBA F4: the rules silently did not cover the milter).
    pub fn ignored(&self, config: &Config) -> Vec<String> {
        self.ignored_keys(config)
            .into_iter()
            .map(|(_, warning)| warning)
            .collect()
    }

    /// [`Overrides::ignored`] with the `[access]` key each warning is
    /// about, for `check-config` to say its line.
    pub fn ignored_keys(&self, config: &Config) -> Vec<(&'static str, String)> {
        let scope = if self.milter_only {
            "is not applied by `mailward milter`"
        } else if config.milter.listen.is_some() && config.network.listen_on.is_empty() {
            // walkBC F4: no listener of its own for them to apply on.
            "is not applied: network.listen_on is empty, so all mail comes from the MTA at milter.listen"
        } else if config.milter.listen.is_some() {
            "is applied on Mailward's own SMTP listener only, not to the mail the MTA hands over at milter.listen"
        } else {
            return Vec::new();
        };
        let a = &config.access;
        let mut out = Vec::new();
        if !a.dnsbl.is_empty() {
            out.push(("dnsbl", format!(
                "access.dnsbl {scope}: the MTA decides who may connect \
                 (Postfix: postscreen_dnsbl_sites or reject_rbl_client); the [spam] dnsbl zones still score"
            )));
        }
        for (key, rules) in [
            ("connect_rules", &a.connect_rules),
            ("helo_rules", &a.helo_rules),
            ("mail_from_rules", &a.mail_from_rules),
            ("rcpt_rules", &a.rcpt_rules),
        ] {
            if !rules.is_empty() {
                out.push((
                    key,
                    format!(
                        "access.{key} {scope}: the MTA's own \
                     restrictions decide (Postfix: smtpd_*_restrictions, check_*_access)"
                    ),
                ));
            }
        }
        out
    }
}

/// Why the directory of `file` cannot take a rotation by this user, if it
/// cannot (checked after the switch).
fn writable_dir(file: &Path) -> Option<String> {
    let dir = file.parent().filter(|d| !d.as_os_str().is_empty())?;
    nix::unistd::access(
        dir,
        nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
    )
    .err()
    .map(|e| format!("{} is not writable by this user ({e})", dir.display()))
}

/// Runs the gateway until SIGTERM/SIGINT. `path` is the configuration file
/// (None: the embedded default), re-read on SIGHUP.
/// `switch`: the user to become once the ports are bound (started as root;
/// see [`crate::ops::privileges`]).
pub async fn run(
    config: Config,
    path: Option<PathBuf>,
    overrides: Overrides,
    switch: Option<crate::ops::privileges::Switch>,
) -> Result<(), RunError> {
    // The signals first: once a port is bound, a client or a supervisor
    // can see the gateway and signal it, and loading the bases can take
    // seconds. A SIGHUP (logrotate's postrotate, a test) or SIGUSR1 whose
    // default action still stood would kill the process; caught here, it
    // waits until the main loop takes it (a reload right after the start).
    let mut hup = signal(SignalKind::hangup()).map_err(RunError::Signals)?;
    let mut term = signal(SignalKind::terminate()).map_err(RunError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(RunError::Signals)?;
    let mut usr1 = signal(SignalKind::user_defined1()).map_err(RunError::Signals)?;
    if let Some(s) = &switch {
        // A running gateway first: its directory is another user's when
        // its configuration names another user, and this start must be
        // told to stop, not to chown that directory.
        crate::files::DataDirLock::ensure_free(&config.server.data_dir)?;
        s.prepare(&config.server.data_dir, &config.server.admin_socket)?;
    }
    // The data directory has one owner. Before anything else (the spool,
    // the bases, the admin socket, the listeners), so that a second start
    // on the same configuration changes nothing of the running instance.
    let lock = crate::files::DataDirLock::take(&config.server.data_dir)?;
    if let Some(s) = &switch {
        s.hand_over(lock.path())?;
    }
    tracing::debug!(target: "app", lock = %lock.path().display(), "Data directory locked.");
    if let Some(pid) = lock.unreleased_by() {
        // Said before recovery's lines, which it explains (walkBF F3).
        tracing::warn!(target: "app", previous_pid = %pid,
            "The previous run did not stop cleanly (killed, a crash or a power loss): nothing it accepted is lost, but a delivery under way then may reach its next hop twice, and a message spooled but not yet answered may come again from its client (docs/reliability.md).");
    }
    // The ports (25 needs root), then root is given up: everything after
    // this, mail, the spool, the bases, the admin socket, runs as the user.
    let listeners = crate::smtp::server::bind(&config.network.listen_on).await?;
    let metrics_listener = match config.metrics.listen {
        Some(addr) => Some(crate::ops::metrics_http::bind(addr).await?),
        None => None,
    };
    let milter_listener = match &config.milter.listen {
        Some(at) => Some(crate::milter::server::bind(at).await?),
        None => None,
    };
    if let (Some(s), Some(path)) = (&switch, milter_listener.as_ref().and_then(|l| l.path())) {
        s.hand_over(path)?;
    }
    let raw_records = config.statistics.options.iter().any(|o| o == "raw");
    if let (Some(s), true) = (&switch, raw_records) {
        s.prepare_file(
            &config.statistics.raw_destination,
            mailward_metrics::raw::RAW_FILE_MODE,
        )?;
    }
    if let Some(s) = &switch {
        s.apply()?;
        tracing::info!(target: "app", user = %s.user, uid = s.uid.as_raw(), gid = s.gid.as_raw(),
            "Ports bound; switched to the unprivileged user.");
        if let Some(why) = crate::ops::logging::rotation_possible(&config.log) {
            tracing::warn!(target: "app", user = %s.user, problem = %why,
                "The log file cannot be rotated by the unprivileged user: its lines will go on past log.rotate_size. Give the directory to the user, or leave rotation to logrotate (rotate_size = \"0\").");
        }
        if let (true, Some(why)) = (
            raw_records && config.log.rotate_size.0 > 0,
            writable_dir(&config.statistics.raw_destination),
        ) {
            tracing::warn!(target: "app", user = %s.user, problem = %why,
                "The raw records file cannot be rotated by the unprivileged user: it will go on past log.rotate_size. Give the directory to the user, or leave rotation to logrotate (rotate_size = \"0\").");
        }
    }
    let built = gateway::build(&config, None)?;
    let (spool, recovered) = Spool::open(&config.server.spool_dir())?;
    let queue = Arc::new(Queue::new());
    if !recovered.is_empty() {
        tracing::info!(target: "app", messages = recovered.len(), "Recovered messages from the spool; delivery resumes.");
    }
    // Messages spooled but not scanned when the gateway stopped are
    // scanned (below, once the scanner runs) before they are queued.
    let stores = Arc::new(crate::store::Stores::open(&config)?);
    let (scanned, unscanned): (Vec<_>, Vec<_>) = recovered
        .into_iter()
        .partition(|e| e.scanned || e.is_bounce);
    for env in scanned {
        queue.enqueue(env);
    }
    let bases_dir = config.bases.av.clone();
    match crate::check::bases::install_default(&bases_dir) {
        Ok(true) => tracing::info!(target: "app", dir = %bases_dir.display(),
            "No signature bases yet: installed the built-in default set."),
        Ok(false) => {}
        Err(e) => {
            tracing::error!(target: "app", error = %e, "Cannot install the built-in default bases.")
        }
    }
    let (spam, spam_problems) =
        crate::check::spam::knowledge::Shared::open(Arc::new(config.clone()));
    for p in &spam_problems {
        tracing::error!(target: "app", problem = %p,
            "Cannot load spam knowledge; the spam check runs without it (rules, or an empty model).");
    }
    let (scanner, bases_problem) = crate::check::Engine::start(
        config.limits.antiviral_sessions as usize,
        &bases_dir,
        config.limits.scan_memory.0,
        spam,
    )
    .map_err(RunError::ScanWorkers)?;
    match (&bases_problem, scanner.info()) {
        (Some(e), _) => tracing::error!(target: "app", error = %e,
            "The signature bases cannot be used; every message gets av/error until they are fixed."),
        (None, Some(b)) => {
            tracing::info!(target: "app", version = %b.version, records = b.records,
                rules = scanner.current().count, "Signature bases loaded.");
            if let Some(w) = crate::check::bases::records_mismatch(&b, scanner.current().count) {
                tracing::warn!(target: "app", "The signature bases loaded, but {w}.");
            }
        }
        (None, None) => {}
    }
    let stats = Arc::new(statistics(&config));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stop_rx_for_watchdog = stop_rx.clone();
    let admin_socket = config.server.admin_socket.clone();
    let limits = config.limits.clone();
    let listen = config.network.listen_on.clone();
    let gw = Arc::new(Gateway::new(
        config,
        built,
        spool.clone(),
        queue,
        stores.clone(),
        stats.clone(),
        scanner,
        stop_rx,
    ));
    // `mailward status` says why no bases are loaded.
    gw.set_bases_on_disk_error(bases_problem.as_ref().map(ToString::to_string));
    tokio::spawn(recheck_all(gw.clone(), unscanned));
    tokio::spawn(crate::store::Stores::expire_periodically(
        stores,
        gw.shutdown.clone(),
    ));
    // `mailward reload` asks over the admin socket; the main loop below
    // carries it out as it does a SIGHUP (one reload at a time, in one
    // place) and answers through the oneshot the request brings.
    let (reload_tx, mut reload_rx) = tokio::sync::mpsc::channel::<crate::ops::admin::ReloadAsk>(4);
    crate::ops::admin::start(gw.clone(), &admin_socket, reload_tx)?;
    let snmp = Snmp::start(&gw)?;
    if let Some(listener) = metrics_listener {
        crate::ops::metrics_http::serve(gw.clone(), listener);
    }
    let delivery = Arc::new(Delivery {
        gw: gw.clone(),
        pool: Pool::new(
            limits.outgoing_sessions as usize,
            limits.outgoing_sessions_per_host as usize,
            stats,
            gw.suspensions.clone(),
        ),
    });
    tokio::spawn(crate::ops::stats_file::periodic(gw.clone()));
    tokio::spawn(crate::ops::admin::check_update_from_periodically(
        gw.clone(),
    ));
    let mut deliveries = tokio::spawn(crate::delivery::runner::run(delivery, GRACE));
    let mut server = tokio::spawn(crate::smtp::server::serve(gw.clone(), listeners, GRACE));
    let milter_at = gw.config().milter.listen.as_ref().map(|l| l.to_string());
    let mut milter = match milter_listener {
        Some(l) => tokio::spawn(crate::milter::server::serve(gw.clone(), l, GRACE)),
        None => tokio::spawn(std::future::pending::<()>()),
    };
    tokio::spawn(crate::ops::logging::watch_rotation(gw.clone()));
    gw.notify(Notification::ProductStart);
    // After mwProductStart: the clears of what the previous run left
    // raised follow the start, as an NMS reads them.
    tokio::spawn(crate::ops::snmp::watch(gw.clone()));
    // The worst state of the AV check, and the one a poller may not watch
    // for (mwBasesRecords 0): said as a fault, as mwObsoleteBases says
    // the milder one. Its subject, "the signature bases in DIR", is the
    // one the clear names, so that an NMS pairs the two (walkBH F10).
    if let Some(e) = &bases_problem {
        gw.notify(Notification::ProductError {
            message: format!(
                "the signature bases in {} cannot be used ({e}); every message gets av/error until they are fixed",
                bases_dir.display()
            ),
        });
    }
    tracing::info!(target: "app", version = env!("CARGO_PKG_VERSION"),
        listen = ?listen, milter = milter_at.as_deref().unwrap_or("-"),
        config = %gw.config().origin, "Mailward started.");
    for w in overrides.ignored(&gw.config()) {
        tracing::warn!(target: "config", "{w}.");
    }
    // What check-config warns about (a misnamed template file, a group
    // order that surprises), in the log too: the daemon may have been
    // started without anyone running check-config.
    for w in &gw.config().warnings {
        tracing::warn!(target: "config", "{}", w.warning());
    }
    gw.warn_of_certificate();
    crate::ops::systemd::ready(&match &milter_at {
        Some(m) => format!("Accepting mail on {listen:?}, milter on {m}."),
        None => format!("Accepting mail on {listen:?}."),
    });
    crate::ops::systemd::start_watchdog(stop_rx_for_watchdog);
    let mut failed = false;
    loop {
        tokio::select! {
            // A component that ends before the stop is a fault: report it
            // and stop, so that a supervisor restarts the whole gateway.
            r = &mut server => {
                let message = format!("The SMTP listener stopped unexpectedly ({r:?}); stopping.");
                tracing::error!(target: "app", "{message}");
                gw.notify(Notification::ProductError { message });
                failed = true;
                break;
            }
            r = &mut milter => {
                let message = format!("The milter listener stopped unexpectedly ({r:?}); stopping.");
                tracing::error!(target: "app", "{message}");
                gw.notify(Notification::ProductError { message });
                failed = true;
                break;
            }
            r = &mut deliveries => {
                let message = format!("The delivery loop stopped unexpectedly ({r:?}); stopping.");
                tracing::error!(target: "app", "{message}");
                gw.notify(Notification::ProductError { message });
                failed = true;
                break;
            }
            _ = hup.recv() => {
                let _ = reload_as_asked(&gw, path.as_deref(), &overrides).await;
            }
            // `mailward reload`: the same reload as SIGHUP's; the CLI waits
            // for its outcome (a CLI gone meanwhile is no matter).
            Some(ask) = reload_rx.recv() => {
                let outcome = reload_as_asked(&gw, path.as_deref(), &overrides).await;
                let _ = ask.send(outcome);
            }
            // In a task of its own: the main loop must go on answering
            // signals while the file is written.
            _ = usr1.recv() => {
                let gw = gw.clone();
                tokio::spawn(async move {
                    match crate::ops::stats_file::write(&gw).await {
                        Ok(p) => tracing::info!(target: "app", path = %p.display(), "Statistics written (SIGUSR1)."),
                        Err(e) => tracing::warn!(target: "app", error = %e, "Cannot write the statistics file."),
                    }
                });
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    // A `mailward reload` asked meanwhile hears that nothing was reloaded
    // (its oneshot is dropped) instead of waiting for the stop.
    drop(reload_rx);
    tracing::info!(target: "app", "Stopping: no new mail; finishing what is in flight.");
    crate::ops::systemd::stopping();
    gw.notify(Notification::ProductStop);
    let _ = stop_tx.send(true);
    if !server.is_finished() {
        let _ = server.await;
    }
    if milter_at.is_some() && !milter.is_finished() {
        let _ = milter.await;
    } else {
        milter.abort();
    }
    if !deliveries.is_finished() {
        let _ = deliveries.await;
    }
    // The last figures of this run: the counters start again at 0 at the
    // next start, so whatever happened since the last periodic write would
    // otherwise be in no statistics file (bounded: a hung disk costs at
    // most the file's own write deadline).
    match crate::ops::stats_file::write(&gw).await {
        Ok(p) => tracing::info!(target: "app", path = %p.display(), "Statistics written (stop)."),
        Err(e) => tracing::warn!(target: "app", error = %e, "Cannot write the statistics file."),
    }
    spool.stop().await;
    snmp.stop().await;
    let _ = std::fs::remove_file(&admin_socket);
    // Checks cut short by the stop (their tasks end with the runtime):
    // those messages had their 250 or are about to be refused, and are
    // checked again at the next start (walkS 13).
    let unchecked = gw
        .checks_in_progress
        .load(std::sync::atomic::Ordering::Relaxed);
    if unchecked > 0 {
        tracing::info!(target: "app", messages = unchecked,
            "Messages accepted but not yet checked stay in the spool; they are checked at the next start.");
    }
    tracing::info!(target: "app", queued = gw.queue.size().0, unchecked, "Mailward stopped; the spool keeps undelivered mail.");
    drop(lock);
    if failed {
        return Err(RunError::ComponentFailed);
    }
    Ok(())
}

/// The statistics model of `[statistics]`: the categories it collects, the
/// length of its top-N tables and the raw record file (rotated like logs).
/// Which categories are collected is fixed at start.
fn statistics(config: &Config) -> mailward_metrics::Stats {
    let s = &config.statistics;
    let enabled: Vec<mailward_metrics::Category> = s
        .options
        .iter()
        .filter_map(|o| mailward_metrics::Category::parse(o))
        .collect();
    let raw = mailward_metrics::RawLog::new(
        &s.raw_destination,
        config.log.rotate_size.0,
        config.log.rotate_rounds,
    );
    let stats = mailward_metrics::Stats::new(
        &enabled,
        s.top as usize,
        Some(raw),
        env!("CARGO_PKG_VERSION"),
    );
    // The policy groups get their rows in mwPolicyGroupTable from the
    // start, by name, before any message counts in one.
    let groups: Vec<&str> = config.group.keys().map(String::as_str).collect();
    stats.record(&mailward_metrics::Event::ConfigLoaded {
        ok: true,
        reload: false,
        at: chrono::Utc::now().timestamp(),
        groups: &groups,
    });
    stats
}

/// What a refused reload says (log, mwNotifyMessage, systemd status): the
/// first problem before the file's path, since mwNotifyMessage holds 255
/// octets and a long path cut the problem off (walkM).
fn refusal_message(problems: &[config::ConfigProblem]) -> String {
    let Some(p) = problems.first() else {
        return "Reload refused; the running configuration stays.".into();
    };
    let what = if p.key.is_empty() {
        p.problem.clone()
    } else {
        format!("{}: {}", p.key, p.problem)
    };
    let place = if p.line == 0 {
        p.file.clone()
    } else {
        format!("{}:{}", p.file, p.line)
    };
    let more = match problems.len() {
        1 => String::new(),
        n => format!("; {} more problem(s), see check-config", n - 1),
    };
    format!("Reload refused: {what} (in {place}{more}); the running configuration stays.")
}

/// What a reload came to, for `mailward reload` (the admin socket's
/// answer) and the service manager's status line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReloadOutcome {
    /// The new configuration is in force (false: refused, the running one
    /// stays).
    pub ok: bool,
    /// The file re-read (`<default>` for the embedded default): the one
    /// the daemon was started with, whichever `--config` the CLI was given.
    pub file: String,
    /// The one-line status (log, mwConfigReloaded, systemd STATUS=).
    pub message: String,
    /// Why it was refused, one `FILE:LINE: key: problem` each, all of them.
    #[serde(default)]
    pub problems: Vec<String>,
    /// The sections whose settings changed and are in force now (`limits`,
    /// `group.managers`), so that the operator sees the edit was taken.
    #[serde(default)]
    pub changed: Vec<String>,
    /// Keys changed in the file that keep their running value until a
    /// restart, one sentence each (`log.options changed (a -> b)`).
    #[serde(default)]
    pub restart: Vec<String>,
    /// The new configuration's warnings, as check-config prints them
    /// (`FILE:LINE: warning: key: ...`): valid, but most likely not meant
    /// (walkAY T7: a misnamed template file was said only in the log).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Successful reloads since the start, this one included.
    pub reloads: u64,
    /// Refused reloads since the start, this one included.
    pub refused: u64,
}

/// A reload as SIGHUP and `mailward reload` ask for it, the one path both
/// take: the log files reopened (logrotate's postrotate may send SIGHUP
/// instead of `mailward log reopen`, as most daemons allow), systemd told
/// RELOADING=1 then READY=1 with the outcome, and [`reload`] in between
/// (traps, counters, restart-pending keys).
async fn reload_as_asked(
    gw: &Gateway,
    path: Option<&Path>,
    overrides: &Overrides,
) -> ReloadOutcome {
    crate::ops::logging::reopen_all(gw);
    crate::ops::systemd::reloading();
    let mut outcome = reload(gw, path, overrides).await;
    crate::ops::systemd::reloaded(&outcome.message);
    let snap = gw.snapshot();
    outcome.reloads = snap.config.reloads;
    outcome.refused = snap.config.reload_failures;
    outcome
}

/// The sections of `new` whose settings differ from `old`'s: `[group.X]`
/// one by one (added, removed or changed), the routing table as `route`.
/// Every field is named, so that a new section cannot be forgotten here.
fn changed_sections(old: &Config, new: &Config) -> Vec<String> {
    let Config {
        origin: _,
        server,
        network,
        access,
        limits,
        timeouts,
        route,
        policy,
        group,
        archive,
        quarantine,
        spam,
        bases,
        statistics,
        snmp,
        agentx,
        metrics,
        milter,
        log,
        warnings: _,
    } = new;
    let mut out = Vec::new();
    let mut differs = |name: &str, changed: bool| {
        if changed {
            out.push(name.to_string());
        }
    };
    differs("server", *server != old.server);
    differs("network", *network != old.network);
    differs("access", *access != old.access);
    differs("limits", *limits != old.limits);
    differs("timeouts", *timeouts != old.timeouts);
    differs("route", *route != old.route);
    differs("policy", *policy != old.policy);
    let names: std::collections::BTreeSet<&String> = group.keys().chain(old.group.keys()).collect();
    for name in names {
        differs(
            &format!("group.{name}"),
            group.get(name) != old.group.get(name),
        );
    }
    differs("archive", *archive != old.archive);
    differs("quarantine", *quarantine != old.quarantine);
    differs("spam", *spam != old.spam);
    differs("bases", *bases != old.bases);
    differs("statistics", *statistics != old.statistics);
    differs("snmp", *snmp != old.snmp);
    differs("agentx", *agentx != old.agentx);
    differs("metrics", *metrics != old.metrics);
    differs("milter", *milter != old.milter);
    differs("log", *log != old.log);
    out
}

/// Re-reads and validates the configuration; installs it only when all of
/// it is good. Says what came of it (the counters are filled in by
/// [`reload_as_asked`]).
async fn reload(gw: &Gateway, path: Option<&Path>, overrides: &Overrides) -> ReloadOutcome {
    // As `mailward status` names it (an absolute path, or `<default>`).
    let file = gw.config().origin.clone();
    let refused = |message: String, problems: Vec<String>| ReloadOutcome {
        ok: false,
        file: file.clone(),
        message,
        problems,
        changed: Vec::new(),
        restart: Vec::new(),
        warnings: Vec::new(),
        reloads: 0,
        refused: 0,
    };
    let new = match config::load(path) {
        Ok(c) => c,
        Err(errors) => {
            for p in &errors.0 {
                tracing::error!(target: "config", "{p}");
            }
            let message = refusal_message(&errors.0);
            ConfigReloaded {
                ok: false,
                message: &message,
            }
            .emit(gw);
            return refused(message, errors.0.iter().map(ToString::to_string).collect());
        }
    };
    let mut new = new;
    overrides.apply(&mut new);
    let running = gw.config();
    let kept = config::keep_restart_only(&running, &mut new);
    let mut changed = changed_sections(&running, &new);
    drop(running);
    for k in &kept {
        tracing::warn!(target: "config", "{k}.");
    }
    for w in overrides.ignored(&new) {
        tracing::warn!(target: "config", "{w}.");
    }
    let mut warnings: Vec<String> = new.warnings.iter().map(|w| w.warning()).collect();
    for w in &warnings {
        tracing::warn!(target: "config", "{w}");
    }
    match gateway::build(&new, Some(&gw.dns())) {
        Ok(built) => {
            // A certificate renewed in place (certbot's files) changes no
            // setting: said anyway, so that the reload is seen to have
            // taken it (walkBJ F3: "No setting in force changed.").
            if let Some(v) = built
                .tls_validity
                .as_ref()
                .filter(|v| gw.tls_validity().as_ref() != Some(*v))
            {
                changed.push(format!(
                    "the STARTTLS certificate ({}, valid until {})",
                    v.subject,
                    chrono::DateTime::from_timestamp(v.not_after, 0).map_or_else(
                        || v.not_after.to_string(),
                        |d| d.format("%Y-%m-%d").to_string()
                    )
                ));
            }
            // As check-config says it (walkBM F1: only the log did).
            if let Some(problem) = built
                .tls_validity
                .as_ref()
                .and_then(|v| v.problem(chrono::Utc::now().timestamp()))
            {
                warnings.push(format!(
                    "{}: warning: network.tls_certificate: {problem}",
                    new.origin
                ));
            }
            gw.scanner.spam.reconfigure(Arc::new(new.clone()));
            gw.stores.set_retention(&new);
            gw.install(new, built);
            gw.set_restart_pending(kept.iter().map(|k| k.change.clone()).collect());
            let message = if kept.is_empty() {
                "The new configuration is in force.".to_string()
            } else {
                // The keys' names first: the message reaches SNMP
                // (255 octets), where a cut should lose values, not
                // which keys wait for the restart.
                format!(
                    "The new configuration is in force, but for {} key(s) that need a restart: {}; {}.",
                    kept.len(),
                    kept.iter().map(RestartOnly::key).collect::<Vec<_>>().join(", "),
                    kept.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
                )
            };
            gw.set_reload_refusal(None);
            ConfigReloaded {
                ok: true,
                message: &message,
            }
            .emit(gw);
            // Not between the two renames of an update under way.
            let _one_change = gw.change_bases().await;
            match gw.reload_bases().await {
                Ok(Some(b)) => {
                    tracing::info!(target: "app", version = %b.version, records = b.records, "New signature bases in use.");
                    gw.notify(Notification::BasesReloaded);
                }
                Ok(None) => {}
                Err(e) => {
                    // The rules in use stay, but the set on disk is what the
                    // next start loads: said as a fault, not only logged.
                    let dir = gw.config().bases.av.display().to_string();
                    tracing::error!(target: "app", error = %e, dir = %dir,
                        "The signature bases cannot be reloaded; the rules in use stay, but a restart would run without AV rules until the set is fixed or rolled back (mailward bases rollback).");
                    gw.notify(Notification::ProductError {
                        message: format!(
                            "the signature bases in {dir} do not load ({e}); the rules in use stay, but a restart would run without AV rules until the set is fixed or rolled back"
                        ),
                    });
                    // And to whoever asked for the reload (walkBM F9: it
                    // said "No setting in force changed." and no more).
                    warnings.push(format!(
                        "mailward: warning: the signature bases in {dir} do not load ({e}): the rules in use stay, but a restart would run without AV rules until the set is fixed or rolled back (mailward bases rollback)"
                    ));
                }
            }
            ReloadOutcome {
                ok: true,
                file,
                message,
                problems: Vec::new(),
                changed,
                restart: kept.iter().map(|k| k.change.clone()).collect(),
                warnings,
                reloads: 0,
                refused: 0,
            }
        }
        Err(e) => {
            let message = format!("Reload refused: {e}; the running configuration stays in force.");
            gw.set_reload_refusal(Some(e.to_string()));
            ConfigReloaded {
                ok: false,
                message: &message,
            }
            .emit(gw);
            refused(message, vec![e.to_string()])
        }
    }
}

/// Checks the messages a stop left spooled but unchecked, a few at a time:
/// each is read from the spool only when a worker is about to be free for
/// it, so that thousands left by a crash are not all in memory at once
/// (and new mail gets its turn at the workers meanwhile).
async fn recheck_all(gw: Arc<Gateway>, unscanned: Vec<crate::envelope::Envelope>) {
    if unscanned.is_empty() {
        return;
    }
    let total = unscanned.len();
    let at_once = (gw.config().limits.antiviral_sessions as usize).max(1) * 2;
    let slots = Arc::new(tokio::sync::Semaphore::new(at_once));
    tracing::info!(target: "scan", messages = total, "Checking the messages left unchecked at the last stop.");
    for env in unscanned {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let gw = gw.clone();
        tokio::spawn(async move {
            crate::policy::execute::recheck(gw, env).await;
            drop(slot);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_names_the_sections_that_changed() {
        let old = config::load(None).unwrap();
        assert_eq!(changed_sections(&old, &old), Vec::<String>::new());
        let text = format!(
            "{}\n[group.sales]\nrecipients = [\"*@sales.example.com\"]\nblock = [\"as/spam\"]\n",
            config::DEFAULT_TOML
        )
        .replace("max_rcpts_per_message = 100", "max_rcpts_per_message = 101");
        let new = config::parse(&text, "test.toml").unwrap();
        assert_eq!(changed_sections(&old, &new), ["limits", "group.sales"]);
        // A group removed is a change too.
        assert_eq!(changed_sections(&new, &old), ["limits", "group.sales"]);
    }

    #[test]
    fn a_refused_reload_says_the_problem_before_the_long_path() {
        // walkM 5: "Reload refused (1 problems; first: /very/long/path...";
        // mwNotifyMessage holds 255 octets, and the problem was cut off.
        let long = format!("/etc/{}/mailward.toml", "verylongdirectoryname".repeat(10));
        let problem = |line, key: &str| config::ConfigProblem {
            file: long.clone(),
            line,
            key: key.into(),
            problem: "invalid basic string".into(),
        };
        let one = refusal_message(&[problem(505, "log.bad")]);
        assert!(
            one.starts_with("Reload refused: log.bad: invalid basic string (in /etc/"),
            "{one}"
        );
        assert!(
            one.ends_with(":505); the running configuration stays."),
            "{one}"
        );
        let two = refusal_message(&[problem(1, ""), problem(2, "a.b")]);
        assert!(
            two.starts_with("Reload refused: invalid basic string (in /etc/"),
            "{two}"
        );
        assert!(
            two.contains(":1; 1 more problem(s), see check-config)"),
            "{two}"
        );
    }

    #[test]
    fn a_port_that_cannot_be_bound_says_what_to_do() {
        // walkF: "Address already in use" alone, with no key and no way to
        // find the holder.
        let e = RunError::Bind(crate::smtp::server::BindError {
            addr: "127.0.0.1:2525".parse().unwrap(),
            source: std::io::Error::from(std::io::ErrorKind::AddrInUse),
        });
        let text = e.to_string();
        assert!(
            text.starts_with("cannot listen on 127.0.0.1:2525: "),
            "{text}"
        );
        assert!(
            text.contains("`ss -ltnp 'sport = :2525'`")
                && text.ends_with("change network.listen_on"),
            "{text}"
        );
        let e = RunError::Metrics(crate::ops::metrics_http::MetricsError {
            addr: "127.0.0.1:25".parse().unwrap(),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        });
        let text = e.to_string();
        assert!(
            text.contains("ports below 1024 need root") && text.ends_with("change metrics.listen"),
            "{text}"
        );
        assert_eq!(e.exit_code(), 71);
    }

    #[test]
    fn a_milter_names_the_access_settings_it_does_not_apply() {
        let mut cfg = match config::load(None) {
            Ok(c) => c,
            Err(e) => panic!("the embedded default must load: {e}"),
        };
        let milter = Overrides {
            milter_only: true,
            milter_listen: None,
        };
        assert!(milter.ignored(&cfg).is_empty(), "the default sets none");
        cfg.access.dnsbl = vec!["bl.example.org".into()];
        cfg.access.rcpt_rules = config::parse(
            "[access]\nrcpt_rules = [\"deny address *@example.org\"]\n",
            "t.toml",
        )
        .map(|c| c.access.rcpt_rules)
        .unwrap_or_default();
        assert_eq!(cfg.access.rcpt_rules.len(), 1, "the rule parses");
        let ignored = milter.ignored(&cfg);
        assert_eq!(ignored.len(), 2, "{ignored:?}");
        assert!(ignored[0].starts_with("access.dnsbl is not applied"));
        assert!(ignored[1].starts_with("access.rcpt_rules is not applied"));
        // The SMTP gateway applies them all.
        assert!(Overrides::default().ignored(&cfg).is_empty());
        // Beside a milter, on its own listener only (walkBA F4).
        let Ok(listen) = config::MilterListen::parse("inet:10031@127.0.0.1") else {
            panic!("a milter socket parses");
        };
        cfg.milter.listen = Some(listen);
        let both = Overrides::default().ignored(&cfg);
        assert_eq!(both.len(), 2, "{both:?}");
        assert!(both[1].starts_with("access.rcpt_rules is applied on Mailward's own SMTP listener only, not to the mail the MTA hands over at milter.listen: "), "{both:?}");
        // With no SMTP listener, nowhere (walkBC F4).
        cfg.network.listen_on.clear();
        let none = Overrides::default().ignored(&cfg);
        assert!(
            none.len() == 2
                && none[0].starts_with("access.dnsbl is not applied: network.listen_on is empty"),
            "{none:?}"
        );
    }
}
