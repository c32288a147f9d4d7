//! One task per client: read a request, ask the node, write the reply, in order.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use serde::Serialize;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::node::{NodeError, NodeHandle, Status};

use super::connection::{Connection, FrameError};
use super::protocol::{self as p, RecordView, Request, TableView};
use super::{ManagerConfig, ManagerStats, StatsSnapshot};

/// Serves one client until it closes, misbehaves past recovery, or the node shuts down.
pub(super) async fn serve_client(
    stream: TcpStream,
    peer: SocketAddr,
    node: NodeHandle,
    config: ManagerConfig,
    stats: Arc<ManagerStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conn = Connection::new(stream, config.max_request_bytes);
    loop {
        let read = tokio::select! {
            r = conn.read_frame(config.idle_timeout, config.request_timeout) => r,
            _ = shutdown.changed() => return,
        };
        let frame = match read {
            Ok(Some(frame)) => frame,
            Ok(None) => return,
            Err(FrameError::TooLarge(max)) => {
                stats.bad_requests.fetch_add(1, Relaxed);
                let msg = format!("request larger than {max} bytes; closing the connection");
                let _ = conn.queue(&p::error_reply(p::ACTION_REQUEST, &(), &msg), config.write_timeout).await;
                if conn.flush(config.write_timeout).await.is_ok() {
                    conn.linger_close().await;
                }
                return;
            }
            Err(e @ (FrameError::Idle | FrameError::Slow(_))) => {
                stats.timed_out.fetch_add(1, Relaxed);
                tracing::debug!(%peer, error = %e, "closing client");
                return;
            }
            Err(FrameError::Io(e)) => {
                tracing::debug!(%peer, error = %e, "client connection failed");
                return;
            }
        };
        stats.requests.fetch_add(1, Relaxed);
        let (reply, close) = match p::parse(&frame) {
            Ok(Request::Close) => (Vec::new(), true),
            Ok(request) => (execute(request, &node, &stats).await, false),
            Err(bad) => {
                stats.bad_requests.fetch_add(1, Relaxed);
                tracing::debug!(%peer, error = %bad.error, "bad request");
                (bad.encode(), bad.fatal)
            }
        };
        if conn.queue(&reply, config.write_timeout).await.is_err() {
            return;
        }
        if (close || !conn.has_buffered_frame()) && conn.flush(config.write_timeout).await.is_err() {
            return;
        }
        if close {
            if reply.is_empty() {
                return; // type 1: the client asked to close
            }
            conn.linger_close().await; // malformed JSON: answered, then closed
            return;
        }
    }
}

/// The reply for a node-side failure (the write could not be made durable, or shutdown).
fn node_error(action: &str, is_write: bool, e: &NodeError) -> Vec<u8> {
    if is_write {
        p::error_reply(action, &false, &e.to_string())
    } else {
        p::error_reply(action, &(), &e.to_string())
    }
}

/// A write's reply: completed (`data_ok`) or the original's failure (`data_fail`).
fn write_reply<T: Serialize>(action: &str, r: Result<bool, NodeError>, data_ok: T, data_fail: T) -> Vec<u8> {
    match r {
        Ok(true) => p::completed(action, &data_ok),
        Ok(false) => p::failed(action, &data_fail),
        Err(e) => node_error(action, true, &e),
    }
}

#[derive(Serialize)]
struct StatusView {
    #[serde(flatten)]
    status: Status,
    manager: StatsSnapshot,
}

async fn execute(request: Request, node: &NodeHandle, stats: &ManagerStats) -> Vec<u8> {
    match request {
        Request::Close => Vec::new(),
        Request::Add { key, fields } => write_reply(p::ACTION_ADD, node.add(key, fields).await, true, false),
        Request::Update { key, fields } => {
            write_reply(p::ACTION_UPDATE, node.update(key, fields).await, true, false)
        }
        Request::Remove { key } => write_reply(p::ACTION_REMOVE, node.remove(key).await, (), ()),
        Request::Get { key } => match node.get(key).await {
            Ok(Some(r)) => p::completed(p::ACTION_GET, &RecordView(&r)),
            Ok(None) => p::failed(p::ACTION_GET, &()),
            Err(e) => node_error(p::ACTION_GET, false, &e),
        },
        Request::Table { json } => match node.snapshot().await {
            // Encoding a large table takes a while: keep it off the threads that serve other clients.
            Ok(table) => tokio::task::spawn_blocking(move || {
                if json {
                    p::completed(p::ACTION_TABLE, &TableView(&table))
                } else {
                    p::table_pickle(&table)
                }
            })
            .await
            .unwrap_or_else(|_| p::error_reply(p::ACTION_TABLE, &(), "encoding the table failed")),
            Err(e) => node_error(p::ACTION_TABLE, false, &e),
        },
        Request::Identity => match node.own_record().await {
            Ok(Some(r)) => p::completed(p::ACTION_ID, &RecordView(&r)),
            Ok(None) => p::error_reply(p::ACTION_ID, &(), "own record not written yet"),
            Err(e) => node_error(p::ACTION_ID, false, &e),
        },
        Request::Status => match node.status().await {
            Ok(status) => p::completed(p::ACTION_STATUS, &StatusView { status, manager: stats.snapshot() }),
            Err(e) => node_error(p::ACTION_STATUS, false, &e),
        },
    }
}
