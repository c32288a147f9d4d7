//! The manager socket: the original JSON protocol on a loopback TCP port, served by one task per
//! client (a [`connection::Connection`] for framing, [`handler`] for requests). The only module that
//! knows the JSON protocol.

pub mod client;
mod config;
mod connection;
mod handler;
pub mod protocol;
mod stats;
pub mod timestamp;
mod watching;

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::node::NodeHandle;

pub use config::{
    ManagerConfig, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CLIENTS, DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_REQUEST_TIMEOUT, DEFAULT_WRITE_TIMEOUT,
};
pub use stats::ManagerStats;

/// The original's port.
pub const DEFAULT_PORT: u16 = 3002;
/// Pause after a failed accept (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Time allowed to tell a refused client why.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

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
    stats: Arc<ManagerStats>,
    mut shutdown: watch::Receiver<bool>,
) {
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
