//! One task per client: read requests, ask the node, write the replies in request order.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use futures::future::join_all;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::core::TableStats;
use crate::net::NetStats;
use crate::node::{LivenessCounts, NodeError, NodeHandle, Status, SyncStats};

use super::config::ManagerConfig;
use super::connection::{Connection, FrameError};
use super::protocol::{self as p, Frame, MemberRow, Request, TableView};
use super::stats::{ManagerStats, StatsSnapshot};
use super::timestamp::{format_micros_into, TIMESTAMP_LEN};
use super::watching;

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
    /// Type 11: answer what came before it, then stream changes until the watch ends.
    Watch { snapshot: bool },
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
    // Looked at after every batch: the read below goes first, so a client that never pauses
    // would otherwise keep `stop` from being polled at all.
    let stopping = shutdown.clone();
    // Made once per connection, not per request (each `changed()` registers a waiter).
    let mut stop = std::pin::pin!(async move {
        let mut shutdown = shutdown;
        let _ = shutdown.changed().await;
    });
    loop {
        // The read first: a request that has arrived is served without polling `stop` (which
        // locks the shutdown watch's list of waiters) and without drawing a random branch order.
        let read = tokio::select! {
            biased;
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
                    match p::parse(frame) {
                        Ok(Frame::Close) => ending = Some(Ending::Close),
                        Ok(Frame::Request(Request::Watch { snapshot })) => {
                            ending = Some(Ending::Watch { snapshot })
                        }
                        Ok(Frame::Request(request)) => batch.push(Ok(request)),
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
                Err(FrameError::Slow(limit)) => {
                    // Told why before the close, so a client that stalled is not left guessing.
                    stats.timed_out.fetch_add(1, Relaxed);
                    tracing::debug!(%peer, "closing a client whose request did not complete");
                    let msg = format!("request not completed within {limit:?}; closing the connection");
                    batch.push(Err(p::error_reply(p::ACTION_REQUEST, &(), &msg)));
                    ending = Some(Ending::Linger);
                }
                Err(FrameError::Idle) => {
                    stats.timed_out.fetch_add(1, Relaxed);
                    tracing::debug!(%peer, "closing an idle client");
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
        // One request (a serial client's) is queued as it is, without a list of replies around it.
        if batch.len() == 1 {
            let reply = answer(batch.pop().expect("one request"), &node, &stats).await;
            if conn.queue(&reply, wt).await.is_err() {
                return;
            }
        } else {
            for reply in &answer_batch(&mut batch, &node, &stats).await {
                if conn.queue(reply, wt).await.is_err() {
                    return;
                }
            }
        }
        if conn.flush(wt).await.is_err() {
            return;
        }
        match ending {
            Some(Ending::Close) => return,
            Some(Ending::Linger) => return conn.linger_close().await,
            Some(Ending::Watch { snapshot }) => {
                return watching::serve(&mut conn, &node, snapshot, &config, &stats, stop.as_mut()).await
            }
            // The node is stopping (or gone): as `stop` would have said.
            None if stopping.has_changed().unwrap_or(true) => return,
            None => {}
        }
    }
}

/// Answers pipelined requests, in order. Consecutive writes run at once (their commits share
/// fsyncs); anything after a write waits for it, so a read sees every earlier write of its
/// connection (reads do not queue behind the node task, so they could otherwise overtake).
async fn answer_batch(
    batch: &mut Vec<Result<Request, Vec<u8>>>,
    node: &NodeHandle,
    stats: &ManagerStats,
) -> Vec<Vec<u8>> {
    let mut replies = Vec::with_capacity(batch.len());
    let mut writes = Vec::new();
    for parsed in batch.drain(..) {
        match parsed {
            Ok(request @ (Request::Add { .. } | Request::Update { .. } | Request::Remove { .. })) => {
                writes.push(execute(request, node, stats))
            }
            other => {
                replies.extend(join_all(writes.drain(..)).await);
                replies.push(answer(other, node, stats).await);
            }
        }
    }
    replies.extend(join_all(writes).await);
    replies
}

/// The reply to a parsed request (or the error reply of a bad one, already encoded).
async fn answer(parsed: Result<Request, Vec<u8>>, node: &NodeHandle, stats: &ManagerStats) -> Vec<u8> {
    match parsed {
        Ok(request) => execute(request, node, stats).await,
        Err(reply) => reply,
    }
}

/// A write's reply: completed (`data_ok`) or the original's failure (`data_fail`), and which.
fn write_reply<T: Serialize>(
    action: &str,
    r: Result<bool, NodeError>,
    data_ok: T,
    data_fail: T,
) -> (Vec<u8>, &'static str) {
    match r {
        Ok(true) => (p::completed(action, &data_ok), COMPLETED),
        Ok(false) => (p::failed(action, &data_fail), FAILED),
        // The node's words: an invalid record, its own record, not durable, shutting down.
        Err(e) => (p::error_reply(action, &false, &e.to_string()), ERROR),
    }
}

/// How a request ended, as the latency histogram labels it.
const COMPLETED: &str = "completed";
const FAILED: &str = "failed";
const ERROR: &str = "error";

/// `message_type 9`'s `data`: the node's status and the manager's counters, as the wire shows them.
#[derive(Serialize)]
struct StatusView<'a> {
    peer_id: &'a str,
    listen_addrs: &'a [String],
    connected_peers: &'a [String],
    /// `public` (a peer dialled one of our addresses back), `private` (none worked: reachable
    /// through relays), or `unknown` (not tested yet).
    reachability: &'static str,
    /// Confirmed external addresses: direct ones, and relay circuits.
    external_addrs: &'a [String],
    /// Our circuit addresses through the relays holding a slot for us.
    relay_reservations: &'a [String],
    table_size: usize,
    digest: &'a str,
    tombstones: usize,
    table_stats: &'a TableStats,
    net_stats: &'a NetStats,
    sync_stats: &'a SyncStats,
    /// `null`, or why and since when the node refuses writes (a commit failed, e.g. disk full).
    read_only: Option<ReadOnlyView<'a>>,
    /// How far this node's clock is ahead of its peers' (negative: behind), median of
    /// `clock_peers` peers; null until compared.
    clock_offset_ms: Option<i64>,
    clock_peers: usize,
    /// Null while the clock is within half the max skew (or not compared yet); otherwise what is
    /// wrong, and whether writes are refused.
    clock: Option<String>,
    scrubbed_at_start: usize,
    /// Node records by liveness state as this node sees them (`message_type 10` lists them).
    members: MembersCount,
    manager: StatsSnapshot,
}

#[derive(Serialize)]
struct MembersCount {
    alive: usize,
    suspect: usize,
    dead: usize,
    /// 0 when this node keeps up; more when its own probes go unanswered (it then probes
    /// less often and waits longer before suspecting anyone).
    local_health: u32,
    probes_sent: u64,
    probes_received: u64,
    probe_failures: u64,
}

impl From<LivenessCounts> for MembersCount {
    fn from(c: LivenessCounts) -> Self {
        MembersCount {
            alive: c.alive,
            suspect: c.suspect,
            dead: c.dead,
            local_health: c.local_health,
            probes_sent: c.probes.probes_sent,
            probes_received: c.probes.probes_received,
            probe_failures: c.probes.probe_failures,
        }
    }
}

#[derive(Serialize)]
struct ReadOnlyView<'a> {
    /// `YYYY-MM-DD HH:MM:SS.ffffff` (UTC), like the records' timestamps.
    since: String,
    reason: &'a str,
}

impl<'a> StatusView<'a> {
    fn new(s: &'a Status, manager: StatsSnapshot) -> Self {
        StatusView {
            peer_id: &s.peer_id,
            listen_addrs: &s.listen_addrs,
            connected_peers: &s.connected_peers,
            reachability: s.reach.reachability.as_str(),
            external_addrs: &s.reach.external_addrs,
            relay_reservations: &s.reach.relay_reservations,
            table_size: s.table_size,
            digest: &s.digest,
            tombstones: s.tombstones,
            table_stats: &s.table_stats,
            net_stats: &s.net_stats,
            sync_stats: &s.sync_stats,
            read_only: s.read_only.as_ref().map(|r| {
                let mut buf = [0; TIMESTAMP_LEN];
                let since = String::from_utf8_lossy(format_micros_into(r.since_us, &mut buf)).into_owned();
                ReadOnlyView { since, reason: &r.reason }
            }),
            clock_offset_ms: s.clock.offset_ms,
            clock_peers: s.clock.peers,
            clock: s.clock.warning(),
            scrubbed_at_start: s.scrubbed_at_start,
            members: s.liveness.into(),
            manager,
        }
    }
}

/// Runs a request and records how long it took, by type and result.
async fn execute(request: Request, node: &NodeHandle, stats: &ManagerStats) -> Vec<u8> {
    let started = Instant::now();
    let kind = match &request {
        Request::Add { .. } => "add",
        Request::Update { .. } => "update",
        Request::Remove { .. } => "remove",
        Request::Get { .. } => "get",
        Request::Table { .. } => "table",
        Request::Identity => "identity",
        Request::Status => "status",
        Request::Members => "members",
        Request::Watch { .. } => "watch",
    };
    let (reply, result) = run(request, node, stats).await;
    stats.observe(kind, result, started.elapsed());
    reply
}

async fn run(request: Request, node: &NodeHandle, stats: &ManagerStats) -> (Vec<u8>, &'static str) {
    match request {
        Request::Add { key, fields } => write_reply(p::ACTION_ADD, node.add(key, fields).await, true, false),
        Request::Update { key, fields } => {
            write_reply(p::ACTION_UPDATE, node.update(key, fields).await, true, false)
        }
        Request::Remove { key } => write_reply(p::ACTION_REMOVE, node.remove(key).await, (), ()),
        Request::Get { key } => match node.get(&key) {
            Some(r) => (p::completed_record(p::ACTION_GET, &r), COMPLETED),
            None => (p::failed(p::ACTION_GET, &()), FAILED),
        },
        Request::Table { json } => {
            let table = node.snapshot();
            // Encoding a large table takes a while: keep it off the threads that serve other clients.
            let encoded = tokio::task::spawn_blocking(move || {
                if json {
                    p::completed(p::ACTION_TABLE, &TableView(&table))
                } else {
                    p::table_pickle(&table)
                }
            })
            .await;
            match encoded {
                Ok(reply) => (reply, COMPLETED),
                Err(_) => (p::error_reply(p::ACTION_TABLE, &(), "encoding the table failed"), ERROR),
            }
        }
        Request::Identity => match node.own_record() {
            Some(r) => (p::completed_record(p::ACTION_ID, &r), COMPLETED),
            None => (p::error_reply(p::ACTION_ID, &(), "own record not written yet"), ERROR),
        },
        Request::Status => {
            let status = node.status();
            (p::completed(p::ACTION_STATUS, &StatusView::new(&status, stats.snapshot())), COMPLETED)
        }
        Request::Members => (members_reply(node), COMPLETED),
        // Taken out of the batch as the connection's ending; never executed as a request.
        Request::Watch { .. } => {
            (p::error_reply(p::ACTION_WATCH, &(), "a watch cannot be answered in a batch"), ERROR)
        }
    }
}

/// `message_type 10`: each node record's liveness, its name from the table, and when it was last
/// seen (a node never heard from directly: when its record was last announced).
fn members_reply(node: &NodeHandle) -> Vec<u8> {
    let members = node.members();
    let records: Vec<_> = members.iter().map(|m| node.get(&m.peer_id)).collect();
    let rows: Vec<MemberRow<'_>> = members
        .iter()
        .zip(&records)
        .map(|(m, r)| MemberRow {
            peer_id: &m.peer_id,
            name: r.as_ref().map_or("", |r| r.name.as_str()),
            state: m.state.as_str(),
            last_seen_us: m
                .last_seen_us
                .and_then(|us| i64::try_from(us).ok())
                .or(r.as_ref().map(|r| r.last_connection_on))
                .unwrap_or(0),
            connected: m.connected,
        })
        .collect();
    p::completed(p::ACTION_MEMBERS, &rows)
}
