//! systemd's notify protocol (`Type=notify`), through the `sd-notify`
//! crate. Outside systemd (no `NOTIFY_SOCKET`) every call does nothing.
//!
//! - `READY=1` (with a `STATUS=`) once the listeners accept mail;
//! - `RELOADING=1` with `MONOTONIC_USEC=` when a SIGHUP reload starts, then
//!   `READY=1` and a `STATUS=` saying whether the new configuration is in
//!   force (systemd 253's `Type=notify-reload` needs the timestamp; 252,
//!   Debian 12's, ignores it);
//! - `STOPPING=1` when the stop begins;
//! - `WATCHDOG=1` every half of `WatchdogSec` when the unit sets it, from a
//!   task on the async runtime, so a runtime that stops turning stops the
//!   pings and systemd restarts the gateway.
//!
//! A failed send is logged at debug level and otherwise ignored: the
//! service manager is a watcher, never a reason to stop mail.

use sd_notify::NotifyState;

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(target: "app", error = %e, "Cannot notify the service manager.");
    }
}

/// The gateway accepts mail.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A reload begins.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// A reload ended (`status` says how).
pub fn reloaded(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// The stop begins.
pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("Stopping: finishing what is in flight."),
    ]);
}

/// Pings the watchdog every half of its period until `shutdown` is set,
/// when the unit asked for one (`WatchdogSec`).
pub fn start_watchdog(mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let Some(period) = sd_notify::watchdog_enabled() else {
        return;
    };
    let every = (period / 2).max(std::time::Duration::from_millis(10));
    tracing::info!(target: "app", period_ms = period.as_millis() as u64, "systemd watchdog on.");
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = tick.tick() => send(&[NotifyState::Watchdog]),
                _ = shutdown.changed() => {
                    if *shutdown.borrow() {
                        return;
                    }
                }
            }
        }
    });
}
