//! The Prometheus endpoint: `GET /metrics` on `metrics.listen` renders one
//! snapshot of the statistics model. Another path gets 404, another method 405. A scrape never
//! waits on mail processing (the snapshot copies atomics), and a failing or
//! absent scraper never affects mail: at most [`MAX_CONNECTIONS`] are served
//! at once (the daemon's descriptors are the sessions' too), a connection
//! that sends no request head within [`HEAD_TIMEOUT`] is closed, and one is
//! never kept past [`CONNECTION_LIFETIME`]. At the limit, a new connection
//! closes the oldest one that is not rendering a scrape
//! ([`make_room`]), so that connections left idle cannot keep Prometheus
//! out (walkAU F10: 32 half-sent requests every 10 s made every scrape a
//! 503).

use crate::gateway::Gateway;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug, thiserror::Error)]
#[error("cannot serve metrics on {addr}: {source}")]
pub struct MetricsError {
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

/// The answer to a request that is not a scrape (None for a scrape): 404
/// for another path, 405 naming the methods for another method on
/// `/metrics` (the resource exists; HTTP says which methods it takes).
fn refusal(method: &Method, path: &str) -> Option<Response<Full<Bytes>>> {
    if path != "/metrics" {
        return Some(respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            "Mailward serves GET /metrics here.\n".into(),
        ));
    }
    // HEAD too: some health checkers use it (hyper leaves the body out).
    if method == Method::GET || method == Method::HEAD {
        return None;
    }
    let mut r = respond(
        StatusCode::METHOD_NOT_ALLOWED,
        "text/plain",
        "Mailward serves GET and HEAD on /metrics.\n".into(),
    );
    r.headers_mut().insert(
        hyper::header::ALLOW,
        hyper::header::HeaderValue::from_static("GET, HEAD"),
    );
    Some(r)
}

async fn handle(
    gw: Arc<Gateway>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if let Some(r) = refusal(req.method(), req.uri().path()) {
        return Ok(r);
    }
    let snap = gw.snapshot();
    Ok(match mailward_metrics::prometheus::render(&snap) {
        Ok(text) => respond(
            StatusCode::OK,
            mailward_metrics::prometheus::CONTENT_TYPE,
            text,
        ),
        Err(e) => {
            tracing::error!(target: "app", error = %e, "Cannot render the metrics.");
            respond(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                format!("{e}\n"),
            )
        }
    })
}

/// Binds the metrics port (at start, before the gateway gives up root).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, MetricsError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError { addr, source })
}

/// Connections served at once. A Prometheus server keeps one; a handful
/// of scrapers, health checks and a person with curl fit many times over.
/// Past this, a connection is answered 503 and closed: a scrape storm or a
/// client that opens connections and leaves them idle must not take the
/// descriptors and memory that SMTP sessions need.
pub const MAX_CONNECTIONS: usize = 32;

/// Time for a request head to arrive, first or next on a kept connection.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection is closed this long after it opened, whatever it does.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// How long a new connection waits for the slot of the one closed for it.
const ROOM_WAIT: Duration = Duration::from_millis(200);

/// A connection being served: whether it is rendering a scrape now, and
/// how to close it.
struct Served {
    busy: Arc<AtomicBool>,
    task: tokio::task::AbortHandle,
}

/// At the limit: closes the oldest connection that is not rendering a
/// scrape (idle, waiting for a request head, or writing to a slow reader)
/// and takes its slot. The oldest, because a scraper's connection is
/// young when it asks (Prometheus opens one when a kept one was closed)
/// and idle ones left by a broken client or an attacker age first. None
/// when every connection is rendering (a real scrape storm) or the slot
/// did not come free in time: the newcomer is then refused.
async fn make_room(
    served: &mut VecDeque<Served>,
    slots: &Arc<Semaphore>,
) -> Option<OwnedSemaphorePermit> {
    let oldest_idle = served
        .iter()
        .position(|s| !s.busy.load(Ordering::Relaxed))?;
    let victim = served.remove(oldest_idle)?;
    // The task's future, and the slot it holds, are dropped when the
    // runtime next sees it: soon, not now.
    victim.task.abort();
    tokio::time::timeout(ROOM_WAIT, slots.clone().acquire_owned())
        .await
        .ok()?
        .ok()
}

/// What a connection past [`MAX_CONNECTIONS`] reads before it is closed.
fn busy_response() -> Vec<u8> {
    let body = format!("Mailward serves at most {MAX_CONNECTIONS} metrics connections at once.\n");
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serves `listener` in the background.
pub fn serve(gw: Arc<Gateway>, listener: TcpListener) {
    tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let busy_answer = busy_response();
        let mut last_warning: Option<Instant> = None;
        let mut last_eviction: Option<Instant> = None;
        let mut served: VecDeque<Served> = VecDeque::with_capacity(MAX_CONNECTIONS);
        loop {
            let (tcp, _) = match listener.accept().await {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(target: "app", error = %e, "Metrics accept failed.");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            served.retain(|s| !s.task.is_finished());
            let slot = match slots.clone().try_acquire_owned() {
                Ok(slot) => Some(slot),
                Err(_) => {
                    let room = make_room(&mut served, &slots).await;
                    if room.is_some()
                        && last_eviction.is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
                    {
                        last_eviction = Some(Instant::now());
                        tracing::warn!(target: "app", limit = MAX_CONNECTIONS, "Metrics connections at the limit: the oldest idle one was closed to serve a new one (this warning is given at most once a minute).");
                    }
                    room
                }
            };
            let Some(slot) = slot else {
                // Best effort and never waited for: the socket's buffer
                // takes these few octets, or the client goes without. (As
                // a std socket, still non-blocking, the write is tried at
                // once; tokio's would wait for the reactor to have seen
                // the new socket writable.)
                if let Ok(mut std_tcp) = tcp.into_std() {
                    use std::io::{Read as _, Write as _};
                    let _ = std_tcp.write(&busy_answer);
                    // A request already here is read off, so that closing
                    // sends FIN after the 503 rather than a reset that
                    // could make the client lose it.
                    let _ = std_tcp.shutdown(std::net::Shutdown::Write);
                    let _ = std_tcp.read(&mut [0u8; 4096]);
                }
                if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                    last_warning = Some(Instant::now());
                    tracing::warn!(target: "app", limit = MAX_CONNECTIONS, "Metrics connections over the limit are answered 503 (this warning is given at most once a minute).");
                }
                continue;
            };
            let gw = gw.clone();
            let busy = Arc::new(AtomicBool::new(false));
            let rendering = busy.clone();
            let task = tokio::spawn(async move {
                let _slot = slot;
                let service = hyper::service::service_fn(move |req| {
                    let (gw, rendering) = (gw.clone(), rendering.clone());
                    async move {
                        rendering.store(true, Ordering::Relaxed);
                        let response = handle(gw, req).await;
                        rendering.store(false, Ordering::Relaxed);
                        response
                    }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEAD_TIMEOUT)
                    .serve_connection(TokioIo::new(tcp), service);
                // A scraper that stalls is cut off rather than held forever.
                let _ = tokio::time::timeout(CONNECTION_LIFETIME, conn).await;
            });
            served.push_back(Served {
                busy,
                task: task.abort_handle(),
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_methods_on_metrics_get_405_and_other_paths_404() {
        // walkD: POST /metrics got 404, as if there were no such resource.
        let r = refusal(&Method::POST, "/metrics").map(|r| (r.status(), r.headers().clone()));
        let (status, headers) = r.unwrap_or_else(|| panic!("POST served as a scrape"));
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(
            headers.get(hyper::header::ALLOW).map(|v| v.as_bytes()),
            Some(&b"GET, HEAD"[..])
        );
        assert_eq!(
            refusal(&Method::GET, "/").map(|r| r.status()),
            Some(StatusCode::NOT_FOUND)
        );
        assert_eq!(
            refusal(&Method::POST, "/x").map(|r| r.status()),
            Some(StatusCode::NOT_FOUND)
        );
        assert!(refusal(&Method::GET, "/metrics").is_none());
        assert!(refusal(&Method::HEAD, "/metrics").is_none());
    }
}
