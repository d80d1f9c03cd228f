//! The Prometheus endpoint: `GET /metrics` on `metrics.listen` renders one
//! snapshot of the statistics model. Anything else gets 404. A scrape never
//! waits on mail processing (the snapshot copies atomics), and a failing or
//! absent scraper never affects mail.

use crate::gateway::Gateway;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

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

async fn handle(
    gw: Arc<Gateway>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    // HEAD too: some health checkers use it (hyper leaves the body out).
    let method_ok = req.method() == Method::GET || req.method() == Method::HEAD;
    if !method_ok || req.uri().path() != "/metrics" {
        return Ok(respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            "Mailward serves GET /metrics here.\n".into(),
        ));
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

/// Serves `listener` in the background.
pub fn serve(gw: Arc<Gateway>, listener: TcpListener) {
    tokio::spawn(async move {
        loop {
            let (tcp, _) = match listener.accept().await {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(target: "app", error = %e, "Metrics accept failed.");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let gw = gw.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| handle(gw.clone(), req));
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service);
                // A scraper that stalls is cut off rather than held forever.
                let _ = tokio::time::timeout(std::time::Duration::from_secs(60), conn).await;
            });
        }
    });
}
