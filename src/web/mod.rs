//! The HTTP edge (`--metrics ADDR`): Prometheus metrics at `/metrics`, a live status page at `/`,
//! and the two small JSON endpoints the page polls (`/api/status`, `/api/table`). Like the
//! manager socket it listens on loopback only, unless the operator opts in (`--metrics-public`):
//! the table and the node's addresses are not for the whole internet to read.

mod api;
mod collector;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::manager::ManagerStats;
use crate::node::NodeHandle;

pub use collector::NodeCollector;

/// Most HTTP connections served at once: a scraper and a few browser tabs need a handful; the
/// bound keeps a misbehaving client from holding unbounded tasks and sockets.
pub const MAX_CONNECTIONS: usize = 64;
/// A client must send its request headers within this long, so idle sockets do not pile up.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// After a failed accept (e.g. out of file descriptors), wait before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// The page: one self-contained file, no external assets, no build step.
const PAGE: &str = include_str!("page.html");

/// Why the HTTP server could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("the metrics address {0} is not loopback; pass --metrics-public to serve it to other hosts")]
    NotLoopback(SocketAddr),
    #[error("cannot listen for metrics on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// What the handlers read: the node's view, the manager's counters, and the metrics registry.
pub struct WebState {
    node: NodeHandle,
    registry: Registry,
    /// Connections closed at once because `MAX_CONNECTIONS` were open (on `/metrics`).
    refused: prometheus_client::metrics::counter::Counter,
}

impl WebState {
    /// `registry` holds what other parts registered (libp2p's metrics, the manager's and the
    /// store's histograms); the node's own figures are added here, read at each scrape.
    pub fn new(node: NodeHandle, manager: Arc<ManagerStats>, mut registry: Registry) -> Self {
        registry.register_collector(Box::new(NodeCollector::new(node.clone(), manager)));
        let refused = prometheus_client::metrics::counter::Counter::default();
        registry.register(
            "udht_http_connections_refused",
            "HTTP connections closed at once because the most allowed were open.",
            refused.clone(),
        );
        WebState { node, registry, refused }
    }
}

/// Binds the HTTP listener; refuses a non-loopback address unless `public`.
pub async fn bind(addr: SocketAddr, public: bool) -> Result<TcpListener, WebError> {
    if !public && !addr.ip().is_loopback() {
        return Err(WebError::NotLoopback(addr));
    }
    TcpListener::bind(addr).await.map_err(|source| WebError::Bind { addr, source })
}

/// Serves HTTP until `shutdown` changes.
pub async fn serve(listener: TcpListener, state: Arc<WebState>, mut shutdown: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        // Over the bound the connection is closed at once: a scraper retries at its next interval.
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            state.refused.inc();
            tracing::debug!("too many metrics connections; closing one");
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(state, req).await) }
            });
            let served = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!(error = %e, "metrics connection ended with an error");
            }
            drop(slot);
        });
    }
}

async fn route(state: Arc<WebState>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET is served here\n");
    }
    match req.uri().path() {
        "/metrics" => metrics(&state),
        "/" | "/index.html" => respond(StatusCode::OK, "text/html; charset=utf-8", PAGE.as_bytes().to_vec()),
        "/api/status" => json(api::status(&state.node)),
        "/api/table" => match api::TableQuery::parse(req.uri().query().unwrap_or("")) {
            // Filtering and sorting a large table takes a while: off the threads that serve the
            // node's clients.
            Ok(query) => match tokio::task::spawn_blocking(move || api::table(&state.node, &query)).await {
                Ok(page) => json(page),
                Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "reading the table failed\n"),
            },
            Err(e) => text(StatusCode::BAD_REQUEST, &format!("{e}\n")),
        },
        _ => text(StatusCode::NOT_FOUND, "not found; try /, /metrics, /api/status or /api/table\n"),
    }
}

fn metrics(state: &WebState) -> Response<Full<Bytes>> {
    let mut body = String::with_capacity(16 * 1024);
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => respond(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            body.into_bytes(),
        ),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &format!("encoding the metrics failed: {e}\n")),
    }
}

fn json(body: Vec<u8>) -> Response<Full<Bytes>> {
    respond(StatusCode::OK, "application/json", body)
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    respond(status, "text/plain; charset=utf-8", body.as_bytes().to_vec())
}

fn respond(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Every answer is the node's state now: a cached copy would show a stale table.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
