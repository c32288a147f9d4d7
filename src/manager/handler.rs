//! One task per client: read requests, ask the node, write the replies in request order.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use futures::future::join_all;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::node::{NodeError, NodeHandle, Status};

use super::connection::{Connection, FrameError};
use super::protocol::{self as p, RecordView, Request, TableView};
use super::{ManagerConfig, ManagerStats, StatsSnapshot};

/// Most requests of one connection served at once: when a client has pipelined several, those
/// already buffered run concurrently (their writes share group commits); replies keep request order.
const MAX_BATCH: usize = 64;

/// Why a connection stops reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Type 1: answer what came before it, then close.
    Close,
    /// Unrecoverable bad input (malformed JSON, oversized): answer, then drain a little and close.
    Linger,
}

/// Serves one client until it closes, misbehaves past recovery, or the node shuts down.
pub(super) async fn serve_client(
    stream: TcpStream,
    peer: SocketAddr,
    node: NodeHandle,
    config: ManagerConfig,
    stats: Arc<ManagerStats>,
    shutdown: watch::Receiver<bool>,
) {
    let mut conn = Connection::new(stream, config.max_request_bytes);
    let wt = config.write_timeout;
    let mut batch: Vec<Result<Request, Vec<u8>>> = Vec::with_capacity(MAX_BATCH);
    // Made once per connection, not per request (each `changed()` registers a waiter).
    let mut stop = std::pin::pin!(async move {
        let mut shutdown = shutdown;
        let _ = shutdown.changed().await;
    });
    loop {
        let read = tokio::select! {
            r = conn.read_frame(config.idle_timeout, config.request_timeout) => r,
            _ = &mut stop => return,
        };
        // The first frame, then whatever else is already buffered (a pipelining client).
        let mut next = read;
        let mut ending = None;
        loop {
            match next {
                Ok(Some(frame)) => {
                    stats.requests.fetch_add(1, Relaxed);
                    match p::parse(&frame) {
                        Ok(Request::Close) => ending = Some(Ending::Close),
                        Ok(request) => batch.push(Ok(request)),
                        Err(bad) => {
                            stats.bad_requests.fetch_add(1, Relaxed);
                            tracing::debug!(%peer, error = %bad.error, "bad request");
                            if bad.fatal {
                                ending = Some(Ending::Linger);
                            }
                            batch.push(Err(bad.encode()));
                        }
                    }
                }
                Ok(None) if batch.is_empty() => return,
                Ok(None) => ending = Some(Ending::Close),
                Err(FrameError::TooLarge(max)) => {
                    stats.bad_requests.fetch_add(1, Relaxed);
                    let msg = format!("request larger than {max} bytes; closing the connection");
                    batch.push(Err(p::error_reply(p::ACTION_REQUEST, &(), &msg)));
                    ending = Some(Ending::Linger);
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
            }
            if ending.is_some() || batch.len() >= MAX_BATCH || !conn.has_buffered_frame() {
                break;
            }
            next = conn.read_frame(config.idle_timeout, config.request_timeout).await;
        }
        let replies: Vec<Vec<u8>> = if batch.len() == 1 {
            vec![answer(batch.pop().expect("one request"), &node, &stats).await]
        } else {
            join_all(batch.drain(..).map(|r| answer(r, &node, &stats))).await
        };
        for reply in &replies {
            if conn.queue(reply, wt).await.is_err() {
                return;
            }
        }
        if conn.flush(wt).await.is_err() {
            return;
        }
        match ending {
            Some(Ending::Close) => return,
            Some(Ending::Linger) => return conn.linger_close().await,
            None => {}
        }
    }
}

/// The reply to a parsed request (or the error reply of a bad one, already encoded).
async fn answer(parsed: Result<Request, Vec<u8>>, node: &NodeHandle, stats: &ManagerStats) -> Vec<u8> {
    match parsed {
        Ok(request) => execute(request, node, stats).await,
        Err(reply) => reply,
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
