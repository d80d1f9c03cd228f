//! Binding the milter socket (TCP or UNIX) and the accept loop.

use super::session::Session;
use crate::config::MilterListen;
use crate::gateway::Gateway;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, UnixListener};
use tokio::task::JoinSet;

#[derive(Debug, thiserror::Error)]
pub enum MilterBindError {
    #[error("cannot listen for milter connections on {at}: {source}")]
    Bind {
        at: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} exists and is not a socket; refusing to replace it (remove it or choose another [milter] listen path)")]
    NotASocket { path: PathBuf },
}

/// A bound milter socket.
pub enum Listener {
    Tcp(TcpListener),
    Unix {
        listener: UnixListener,
        path: PathBuf,
    },
}

impl Listener {
    /// The UNIX socket's path, to hand over to the unprivileged user.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            Listener::Unix { path, .. } => Some(path),
            Listener::Tcp(_) => None,
        }
    }
}

/// Binds `at`. A UNIX socket left by an earlier run is replaced (a file
/// that is not a socket is not); the new one is 0660, so the MTA's user
/// needs our group (docs/postfix.md).
pub async fn bind(at: &MilterListen) -> Result<Listener, MilterBindError> {
    let err = |source| MilterBindError::Bind {
        at: at.to_string(),
        source,
    };
    match at {
        MilterListen::Inet(addr) => Ok(Listener::Tcp(TcpListener::bind(addr).await.map_err(err)?)),
        MilterListen::Unix(path) => {
            use std::os::unix::fs::{FileTypeExt, PermissionsExt};
            match std::fs::symlink_metadata(path) {
                Ok(m) if m.file_type().is_socket() => {
                    std::fs::remove_file(path).map_err(err)?;
                }
                Ok(_) => return Err(MilterBindError::NotASocket { path: path.clone() }),
                Err(_) => {}
            }
            let listener = UnixListener::bind(path).map_err(err)?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(err)?;
            Ok(Listener::Unix {
                listener,
                path: path.clone(),
            })
        }
    }
}

/// How often, at most, the log says that every connection slot is taken.
const FULL_WARN_EVERY: Duration = Duration::from_secs(60);

/// Accepts until shutdown, at most `[milter] max_connections` at once;
/// then waits up to `grace` for open connections and returns.
pub async fn serve(gw: Arc<Gateway>, listener: Listener, grace: Duration) {
    let max = gw.config().milter.max_connections.max(1) as usize;
    let permits = Arc::new(tokio::sync::Semaphore::new(max));
    let mut connections = JoinSet::new();
    let mut shutdown = gw.shutdown.clone();
    let mut backoff = Duration::from_millis(5);
    let mut warned: Option<tokio::time::Instant> = None;
    loop {
        // Finished connections are reaped before each accept, so that the
        // set holds only open ones.
        while connections.try_join_next().is_some() {}
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(tokio::sync::TryAcquireError::Closed) => break,
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                // The MTA's next connection is not accepted until one
                // ends: its SMTP client waits, and Postfix gives up after
                // milter_command_timeout with milter_default_action
                // (walkX finding 3: this was silent).
                gw.stats.record(&mailward_metrics::Event::MilterSlotsFull);
                if warned.is_none_or(|t| t.elapsed() >= FULL_WARN_EVERY) {
                    warned = Some(tokio::time::Instant::now());
                    tracing::warn!(target: "smtp", max_connections = max,
                        "Every milter connection slot is taken (milter.max_connections); the MTA's next connection waits until one ends, and Postfix gives up on it after milter_command_timeout (30 s) with its milter_default_action (tempfail: 451 to the SMTP client). Keep max_connections at or above the process limit of every smtpd that uses the milter.");
                }
                tokio::select! {
                    _ = shutdown.wait_for(|stop| *stop) => break,
                    p = permits.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                }
            }
        };
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break,
            a = accept(&listener) => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(5);
                let session = Session::new(gw.clone(), peer);
                connections.spawn(async move {
                    session.run(stream).await;
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!(target: "smtp", error = %e, "Accept failed; backing off.");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
    let deadline = tokio::time::sleep(grace);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => {
                tracing::warn!(target: "app", open = connections.len(),
                    "Milter connections still open after the grace period; closing them.");
                connections.abort_all();
                break;
            }
            next = connections.join_next() => if next.is_none() { break },
        }
    }
    if let Some(path) = listener.path() {
        let _ = std::fs::remove_file(path);
    }
}

/// A stream of either kind, and who is at the other end (for logs).
type Accepted = (Box<dyn super::session::Stream>, String);

async fn accept(listener: &Listener) -> std::io::Result<Accepted> {
    match listener {
        Listener::Tcp(l) => {
            let (s, peer) = l.accept().await?;
            let _ = s.set_nodelay(true);
            Ok((Box::new(s), peer.to_string()))
        }
        Listener::Unix { listener, path } => {
            let (s, _) = listener.accept().await?;
            Ok((Box::new(s), format!("unix:{}", path.display())))
        }
    }
}
