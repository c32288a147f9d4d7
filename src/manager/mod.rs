//! The manager socket: the original JSON protocol on a loopback TCP port, served by one task per
//! client (a [`connection::Connection`] for framing, [`handler`] for requests). The only module that
//! knows the JSON protocol.

pub mod client;
mod connection;
mod handler;
pub mod protocol;
pub mod timestamp;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::node::NodeHandle;

/// The original's port.
pub const DEFAULT_PORT: u16 = 3002;
/// Requests larger than this get an error and the connection is closed.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Clients served at once; more are told so and closed, so file descriptors stay bounded.
pub const DEFAULT_MAX_CLIENTS: usize = 1024;
/// A client silent this long between requests is closed, freeing its slot.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// A request must arrive whole within this time of its first byte (no slow-loris).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A client that does not read its replies for this long is closed.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after a failed accept (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Time allowed to tell a refused client why.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// Limits of the manager socket.
#[derive(Debug, Clone, Copy)]
pub struct ManagerConfig {
    pub max_request_bytes: usize,
    pub max_clients: usize,
    pub idle_timeout: Duration,
    pub request_timeout: Duration,
    pub write_timeout: Duration,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_clients: DEFAULT_MAX_CLIENTS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
        }
    }
}

/// Errors of the manager socket.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error("the manager socket must listen on a loopback address, not {0} (it has no authentication)")]
    NotLoopback(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Counters of the manager socket, reported by `message_type 9`.
#[derive(Debug, Default)]
pub struct ManagerStats {
    pub accepted: AtomicU64,
    pub refused_busy: AtomicU64,
    pub refused_not_loopback: AtomicU64,
    pub requests: AtomicU64,
    pub bad_requests: AtomicU64,
    pub timed_out: AtomicU64,
}

/// A copy of [`ManagerStats`] at one moment.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct StatsSnapshot {
    pub accepted: u64,
    pub refused_busy: u64,
    pub refused_not_loopback: u64,
    pub requests: u64,
    pub bad_requests: u64,
    pub timed_out: u64,
}

impl ManagerStats {
    fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            accepted: self.accepted.load(Relaxed),
            refused_busy: self.refused_busy.load(Relaxed),
            refused_not_loopback: self.refused_not_loopback.load(Relaxed),
            requests: self.requests.load(Relaxed),
            bad_requests: self.bad_requests.load(Relaxed),
            timed_out: self.timed_out.load(Relaxed),
        }
    }
}

fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().to_canonical().is_loopback()
}

/// Binds the manager socket, refusing a non-loopback address: the protocol has no authentication.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ManagerError> {
    if !is_loopback(&addr) {
        return Err(ManagerError::NotLoopback(addr));
    }
    TcpListener::bind(addr).await.map_err(|source| ManagerError::Bind { addr, source })
}

/// Accepts clients until shutdown: loopback peers only, at most `max_clients` at once.
pub async fn serve(
    listener: TcpListener,
    node: NodeHandle,
    config: ManagerConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let stats = Arc::new(ManagerStats::default());
    let slots = Arc::new(Semaphore::new(config.max_clients));
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        if !is_loopback(&peer) {
            stats.refused_not_loopback.fetch_add(1, Relaxed);
            tracing::warn!(%peer, "refused a non-loopback manager client");
            continue;
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            stats.refused_busy.fetch_add(1, Relaxed);
            tokio::spawn(async move {
                let mut stream = stream;
                let reply = protocol::error_reply(protocol::ACTION_CONNECT, &(), "too many connections");
                let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, stream.write_all(&reply)).await;
            });
            continue;
        };
        stats.accepted.fetch_add(1, Relaxed);
        let (node, stats, shutdown) = (node.clone(), stats.clone(), shutdown.clone());
        tokio::spawn(async move {
            handler::serve_client(stream, peer, node, config, stats, shutdown).await;
            drop(slot);
        });
    }
}
