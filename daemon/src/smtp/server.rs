//! The accept loops: one per `network.listen_on` address. Each connection
//! takes a session slot (total and per-IP limits; a client over a limit gets
//! 421 and is closed) and runs in its own task. Accept errors (out of file
//! descriptors) back off instead of spinning.

use super::session::Session;
use crate::gateway::Gateway;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct BindError {
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// Binds every address first, so that a bad one stops the start cleanly.
pub async fn bind(addrs: &[SocketAddr]) -> Result<Vec<TcpListener>, BindError> {
    let mut out = Vec::with_capacity(addrs.len());
    for &addr in addrs {
        let l = TcpListener::bind(addr)
            .await
            .map_err(|source| BindError { addr, source })?;
        out.push(l);
    }
    Ok(out)
}

/// Accepts until shutdown; then waits up to `grace` for open sessions (they
/// answer 421 to their next command) and returns.
pub async fn serve(gw: Arc<Gateway>, listeners: Vec<TcpListener>, grace: Duration) {
    let mut sessions = JoinSet::new();
    let mut accepts = JoinSet::new();
    let (conn_tx, mut conn_rx) = tokio::sync::mpsc::channel(64);
    for listener in listeners {
        let tx = conn_tx.clone();
        accepts.spawn(async move {
            let mut backoff = Duration::from_millis(5);
            loop {
                match listener.accept().await {
                    Ok(pair) => {
                        backoff = Duration::from_millis(5);
                        if tx.send(pair).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(target: "smtp", error = %e, "Accept failed; backing off.");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                    }
                }
            }
        });
    }
    drop(conn_tx);
    let mut shutdown = gw.shutdown.clone();
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break,
            Some((tcp, peer)) = conn_rx.recv() => {
                let _ = tcp.set_nodelay(true);
                // An IPv4 client of a [::] listener arrives as ::ffff:a.b.c.d:
                // from here on it is a.b.c.d, for the limits, the access
                // rules, relay_networks, DNSBL, logs and statistics alike.
                let peer = std::net::SocketAddr::new(peer.ip().to_canonical(), peer.port());
                match gw.open_session(peer.ip()) {
                    Ok(slot) => {
                        let session = Session::new(gw.clone(), peer, slot);
                        sessions.spawn(session.run(tcp));
                    }
                    Err(reply) => {
                        // One log line, the event's (it names the client,
                        // the reason and the reply).
                        crate::events::MessageRejected {
                            reason: crate::events::RejectReason::Limit,
                            client: peer.ip(),
                            reply,
                            refused: crate::events::Refused::Session,
                            cause: None,
                        }
                        .emit(&gw.stats);
                        sessions.spawn(async move {
                            let mut tcp = tcp;
                            let _ = tcp.write_all(format!("{reply}\r\n").as_bytes()).await;
                            let _ = tcp.shutdown().await;
                        });
                    }
                }
            }
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
    accepts.abort_all();
    let deadline = tokio::time::sleep(grace);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => {
                tracing::warn!(target: "app", open = sessions.len(), "Sessions still open after the grace period; closing them.");
                sessions.abort_all();
                break;
            }
            next = sessions.join_next() => if next.is_none() { break },
        }
    }
}
