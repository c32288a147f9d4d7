//! Shared harness for integration tests. Every test crate includes it with `mod common;`.
//!
//! - Starting nodes: [`try_start_node`] is the one in-process starter (a real node in a fresh
//!   temp dir, its manager socket on 127.0.0.1 and an ephemeral port unless `configure` says
//!   otherwise); [`start_node_with`] and [`start_node`] are its panicking forms. [`start_cluster`]
//!   puts a `udht::cluster::Cluster` in a temp dir, and [`process::NodeProcess::start`] is the one
//!   starter of real `udht-node` processes.
//! - Networks: [`netns::Internet`] builds a small internet of network namespaces (public
//!   nodes, home routers with NAT) for the NAT tests; [`process::NodeProcess::start_in`] starts a
//!   node in one of its namespaces.
//! - Waiting: [`eventually`] is the one bounded polling wait; nothing else in the tests sleeps in
//!   a loop.
//! - The manager socket: a raw TCP client, [`Conn`], that writes exact bytes and reads exact
//!   bytes; plus the manager protocol's transcript requests and replies and the reply checks the
//!   `manager_*` tests share.
//!
//! Every read has a deadline, so a missing reply fails the test instead of hanging it.
#![allow(dead_code)]

pub mod netns;
pub mod process;

use std::collections::BTreeSet;
use std::fmt::{Debug, Display};
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::Duration;

use libp2p::Multiaddr;
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{timeout, Instant};
use udht::cluster::Cluster;
use udht::{NodeConfig, RunningNode, StartError};

/// How long a test waits for a reply before calling it missing: generous, because debug builds
/// on a busy 2-core machine answer slowly (a batch of 64 durable adds once took over 2 s while
/// other builds ran); a missing reply still fails the test.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Waiting for a condition.

/// How long [`eventually`] pauses between two probes. Not shorter: `udht-node` answers on its
/// manager socket a moment before it installs its SIGTERM handler and before its own record is
/// committed, and a readiness poll fast enough to land in that moment makes the process tests
/// flaky (a SIGTERM that kills instead of stopping it, a `peer id` reply with null data).
pub const POLL: Duration = Duration::from_millis(50);

/// What one probe of [`eventually`] found: done (with a value), or not yet.
pub trait Probe {
    type Output;
    /// `Ok` when the wait is over; `Err` with what was observed instead, if worth showing.
    fn check(self) -> Result<Self::Output, Option<String>>;
}

/// `true` when the condition holds.
impl Probe for bool {
    type Output = ();
    fn check(self) -> Result<(), Option<String>> {
        if self {
            Ok(())
        } else {
            Err(None)
        }
    }
}

/// `Some(value)` when the condition holds.
impl<T> Probe for Option<T> {
    type Output = T;
    fn check(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

/// `Ok(value)` when the condition holds, `Err(observed)` when not yet: a timeout shows the last
/// observation.
impl<T, E: Debug> Probe for Result<T, E> {
    type Output = T;
    fn check(self) -> Result<T, Option<String>> {
        self.map_err(|observed| Some(format!("{observed:?}")))
    }
}

/// Probes until the probe says done, and returns its value; on a timeout, the `Err` names `what`
/// was awaited, for how long, and the last observation if the probe gave one. Bounded: a probe
/// still running at the deadline is abandoned (so a hung probe fails instead of hanging).
pub async fn try_eventually<P: Probe>(
    what: impl Display,
    within: Duration,
    mut probe: impl AsyncFnMut() -> P,
) -> Result<P::Output, String> {
    let deadline = Instant::now() + within;
    let mut last = None;
    loop {
        match tokio::time::timeout_at(deadline, probe()).await {
            Ok(found) => match found.check() {
                Ok(value) => return Ok(value),
                Err(observed) => last = observed.or(last),
            },
            Err(_) => {
                let last = last.map_or(String::new(), |l| format!("; last observed: {l}"));
                return Err(format!(
                    "timed out after {within:?} waiting for {what} (a probe was still running){last}"
                ));
            }
        }
        if Instant::now() >= deadline {
            let last = last.map_or(String::new(), |l| format!("; last observed: {l}"));
            return Err(format!("timed out after {within:?} waiting for {what}{last}"));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// [`try_eventually`], failing the test on a timeout:
/// `common::eventually("equal digests", WAIT, async || a.digest() == b.digest()).await`.
pub async fn eventually<P: Probe>(
    what: impl Display,
    within: Duration,
    probe: impl AsyncFnMut() -> P,
) -> P::Output {
    try_eventually(what, within, probe).await.unwrap_or_else(|e| panic!("{e}"))
}

// ---------------------------------------------------------------------------------------------
// Starting nodes.

/// How long a started node may take to listen on its p2p address.
pub const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);

/// The in-process node starter: a node with its own temp dir (dropped with the returned
/// `TempDir`), every default (manager socket on 127.0.0.1, an ephemeral port, no p2p listen
/// address), then changed by `configure`. Returns the start-up error, for tests of start-up.
pub async fn try_start_node(
    configure: impl FnOnce(&mut NodeConfig),
) -> Result<(RunningNode, TempDir), StartError> {
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let mut cfg = NodeConfig::new(dir.path(), "127.0.0.1:0".parse().unwrap());
    configure(&mut cfg);
    let running = RunningNode::start(cfg).await?;
    Ok((running, dir))
}

/// [`try_start_node`], failing the test if the node does not start.
pub async fn start_node_with(configure: impl FnOnce(&mut NodeConfig)) -> (RunningNode, TempDir) {
    try_start_node(configure).await.unwrap_or_else(|e| panic!("node failed to start: {e}"))
}

/// A node with every default.
pub async fn start_node() -> (RunningNode, TempDir) {
    start_node_with(|_| {}).await
}

/// The node's first p2p listen address, once it has one (for nodes configured with `listen`).
pub async fn listen_addr(node: &RunningNode) -> Multiaddr {
    let what = format!("a listen address of {}", node.peer_id);
    let addr =
        eventually(what, LISTEN_TIMEOUT, async || node.handle.status().listen_addrs.first().cloned()).await;
    addr.parse().unwrap_or_else(|e| panic!("listen address {addr:?} is not a multiaddr: {e}"))
}

/// `n` nodes of a `udht::cluster::Cluster` (node 0 the seed) in a temp dir; `configure` adjusts
/// every node's config.
pub async fn start_cluster(
    n: usize,
    configure: impl Fn(&mut NodeConfig) + Send + Sync + 'static,
) -> (Cluster, TempDir) {
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let cluster = Cluster::start(dir.path(), n, configure)
        .await
        .unwrap_or_else(|e| panic!("a cluster of {n} failed to start: {e}"));
    (cluster, dir)
}

// ---------------------------------------------------------------------------------------------
// A raw client of the manager socket.

/// How a read of a connection ended when the test expected the server to close it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// An orderly close (FIN): the read returned 0.
    Eof,
    /// The connection was reset (RST), e.g. because the server closed with unread input.
    Reset,
}

/// One raw client connection to a manager socket. Bytes read past a reply are kept for the next.
pub struct Conn {
    stream: TcpStream,
    pending: Vec<u8>,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> Conn {
        let stream = timeout(REPLY_TIMEOUT, TcpStream::connect(addr))
            .await
            .unwrap_or_else(|_| panic!("connecting to {addr} timed out"))
            .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
        stream.set_nodelay(true).unwrap();
        Conn { stream, pending: Vec::new() }
    }

    /// Connects from a chosen local address (port chosen by the system).
    pub async fn connect_from(local: IpAddr, addr: SocketAddr) -> Conn {
        let socket = if local.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.unwrap();
        socket.bind(SocketAddr::new(local, 0)).unwrap_or_else(|e| panic!("binding to {local}: {e}"));
        Self::connect_socket(socket, addr, &format!(" from {local}")).await
    }

    /// Connects with a receive buffer of about `bytes` (the kernel doubles it, and does not grow
    /// it): a client whose socket fills after a few replies, so the server's later writes wait.
    pub async fn connect_with_small_window(addr: SocketAddr, bytes: u32) -> Conn {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(bytes).unwrap();
        Self::connect_socket(socket, addr, " with a small window").await
    }

    async fn connect_socket(socket: TcpSocket, addr: SocketAddr, how: &str) -> Conn {
        let stream = timeout(REPLY_TIMEOUT, socket.connect(addr))
            .await
            .unwrap_or_else(|_| panic!("connecting to {addr}{how} timed out"))
            .unwrap_or_else(|e| panic!("connecting to {addr}{how}: {e}"));
        stream.set_nodelay(true).unwrap();
        Conn { stream, pending: Vec::new() }
    }

    /// Writes `bytes` exactly as given, in one write call.
    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("writing a request");
    }

    /// Writes `bytes`, returning the error instead of panicking (for a peer that may have closed).
    pub async fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Reads once, with a deadline; `Ok(0)` on EOF, `Err` on a socket error, `None` on timeout.
    async fn read_some(&mut self, deadline: Instant) -> Option<std::io::Result<usize>> {
        // Straight into the heap buffer: a stack array here would bloat every test's future.
        self.pending.reserve(64 * 1024);
        tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.pending)).await.ok()
    }

    /// The next reply line, `\n` included, exactly as sent. Panics on timeout or close.
    pub async fn read_line(&mut self) -> Vec<u8> {
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            if let Some(i) = self.pending.iter().position(|&b| b == b'\n') {
                return self.pending.drain(..=i).collect();
            }
            match self.read_some(deadline).await {
                None => panic!(
                    "no complete reply line within {REPLY_TIMEOUT:?}; got so far: {:?}",
                    String::from_utf8_lossy(&self.pending)
                ),
                Some(Ok(0)) => panic!(
                    "the server closed the connection before a complete reply line; got: {:?}",
                    String::from_utf8_lossy(&self.pending)
                ),
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("reading a reply: {e}"),
            }
        }
    }

    /// The next reply line as text (panics if it is not UTF-8).
    pub async fn read_line_string(&mut self) -> String {
        String::from_utf8(self.read_line().await).expect("reply is not UTF-8")
    }

    /// The next reply line, parsed as JSON.
    pub async fn read_json(&mut self) -> Value {
        let line = self.read_line().await;
        serde_json::from_slice(&line)
            .unwrap_or_else(|e| panic!("reply is not JSON ({e}): {:?}", String::from_utf8_lossy(&line)))
    }

    /// Sends `request` and returns the raw reply line.
    pub async fn request(&mut self, request: &[u8]) -> Vec<u8> {
        self.send(request).await;
        self.read_line().await
    }

    /// Sends `request` and returns the reply line as text.
    pub async fn request_string(&mut self, request: &[u8]) -> String {
        self.send(request).await;
        self.read_line_string().await
    }

    /// Sends `request` and returns the reply parsed as JSON.
    pub async fn request_json(&mut self, request: &[u8]) -> Value {
        self.send(request).await;
        self.read_json().await
    }

    /// Reads a bare pickle (no framing): until the bytes decode as a whole pickle.
    pub async fn read_pickle(&mut self) -> Vec<u8> {
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            if self.pending.last() == Some(&b'.')
                && serde_pickle::value_from_slice(&self.pending, serde_pickle::DeOptions::new()).is_ok()
            {
                return std::mem::take(&mut self.pending);
            }
            match self.read_some(deadline).await {
                None => {
                    panic!("no complete pickle within {REPLY_TIMEOUT:?}; got {} bytes", self.pending.len())
                }
                Some(Ok(0)) => panic!("the server closed the connection in the middle of a pickle"),
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("reading a pickle: {e}"),
            }
        }
    }

    /// Asserts that no reply is pending beyond those already read: replies come in request order,
    /// so the reply to a fresh `peer id` request must be the very next line.
    pub async fn expect_no_more_replies(&mut self) {
        self.send(PEER_ID).await;
        let next = self.read_json().await;
        assert_eq!(next["action"], "peer id", "an extra reply was pending: {next}");
    }

    /// Asserts that nothing arrives (and the connection stays open) for `wait`.
    pub async fn expect_silence(&mut self, wait: Duration) {
        assert!(self.pending.is_empty(), "unexpected bytes: {:?}", String::from_utf8_lossy(&self.pending));
        match self.read_some(Instant::now() + wait).await {
            None => {}
            Some(Ok(0)) => panic!("the server closed the connection, expected it to wait"),
            Some(Ok(_)) => {
                panic!("expected no reply yet, got {:?}", String::from_utf8_lossy(&self.pending))
            }
            Some(Err(e)) => panic!("expected no reply yet, got an error: {e}"),
        }
    }

    /// Waits up to `wait` for the server to close the connection: `Some` with how it closed, or
    /// `None` if it is still open. Panics if any bytes arrive instead.
    pub async fn poll_closed(&mut self, wait: Duration) -> Option<Closed> {
        assert!(self.pending.is_empty(), "unexpected bytes: {:?}", String::from_utf8_lossy(&self.pending));
        match self.read_some(Instant::now() + wait).await {
            None => None,
            Some(Ok(0)) => Some(Closed::Eof),
            Some(Ok(_)) => {
                panic!("expected the connection closed, got {:?}", String::from_utf8_lossy(&self.pending))
            }
            Some(Err(e)) if is_reset(&e) => Some(Closed::Reset),
            Some(Err(e)) => panic!("expected the connection closed, got an error: {e}"),
        }
    }

    /// A complete reply line if one arrives within `wait` (the bytes stay buffered otherwise).
    pub async fn poll_line(&mut self, wait: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(i) = self.pending.iter().position(|&b| b == b'\n') {
                return Some(self.pending.drain(..=i).collect());
            }
            match self.read_some(deadline).await {
                Some(Ok(n)) if n > 0 => {}
                _ => return None,
            }
        }
    }

    /// Waits up to `within` for the server to close the connection, with no further bytes before
    /// the close. Returns how it was closed; panics if it stays open or sends anything.
    pub async fn expect_closed_within(&mut self, within: Duration) -> Closed {
        match self.poll_closed(within).await {
            Some(closed) => closed,
            None => panic!("the server did not close the connection within {within:?}"),
        }
    }

    /// Asserts an orderly close (read returns 0) with no further bytes.
    pub async fn expect_eof(&mut self) {
        assert_eq!(self.expect_closed_within(REPLY_TIMEOUT).await, Closed::Eof, "expected EOF, not a reset");
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().unwrap()
    }
}

pub fn is_reset(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe
    )
}

/// One request on a fresh connection; the reply parsed as JSON.
pub async fn request_once(addr: SocketAddr, request: &[u8]) -> Value {
    Conn::connect(addr).await.request_json(request).await
}

/// Runs `script` with the system's `python3` (arguments `args`, `stdin` on its standard input)
/// and returns what it printed; panics, with its stderr, if it fails.
pub fn python3(script: &str, args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running python3 (needed to check pickles as the original's clients read them)");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python3 failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Decodes a pickle with the system's `python3`, as the original's clients do (`pickle.loads`).
/// Returns `{"value": <the object as JSON>, "types": <the same shape, every leaf replaced by its
/// Python type name>}`. Panics if Python cannot load it or cannot express it as JSON (a datetime,
/// for instance).
pub fn python_unpickle(pickle: &[u8]) -> Value {
    const SCRIPT: &str = r#"
import pickle, sys, json
obj = pickle.loads(sys.stdin.buffer.read())
def kinds(v):
    if isinstance(v, dict):
        return {str(k): kinds(x) for k, x in v.items()}
    if isinstance(v, list):
        return [kinds(x) for x in v]
    return type(v).__name__
print(json.dumps({"value": obj, "types": kinds(obj), "top": type(obj).__name__}))
"#;
    serde_json::from_slice(&python3(SCRIPT, &[], pickle)).expect("python3 printed JSON")
}

/// Asserts `s` is a timestamp as the original wrote them: `YYYY-MM-DD HH:MM:SS.ffffff`, and recent.
pub fn assert_timestamp(s: &str) {
    let b = s.as_bytes();
    let shape_ok = b.len() == 26
        && b.iter().enumerate().all(|(i, &c)| match i {
            4 | 7 => c == b'-',
            10 => c == b' ',
            13 | 16 => c == b':',
            19 => c == b'.',
            _ => c.is_ascii_digit(),
        });
    assert!(shape_ok, "timestamp {s:?} is not in the format YYYY-MM-DD HH:MM:SS.ffffff");
    let num = |r: std::ops::Range<usize>| s[r].parse::<u32>().unwrap();
    let (year, month, day, hour, min, sec) =
        (num(0..4), num(5..7), num(8..10), num(11..13), num(14..16), num(17..19));
    assert!((1..=12).contains(&month) && (1..=31).contains(&day), "timestamp {s:?} has an impossible date");
    assert!(hour < 24 && min < 60 && sec < 61, "timestamp {s:?} has an impossible time");
    let _ = year;
    // This format sorts like time: recent means between a day ago and a minute from now.
    let at = |us: i64| {
        let mut buf = [0u8; udht::manager::timestamp::TIMESTAMP_LEN];
        String::from_utf8(udht::manager::timestamp::format_micros_into(us, &mut buf).to_vec()).unwrap()
    };
    let now = udht::core::now_micros();
    let (from, to) = (at(now - 86_400_000_000), at(now + 60_000_000));
    assert!(from.as_str() <= s && s <= to.as_str(), "timestamp {s:?} is not recent ({from} .. {to})");
}

// ---------------------------------------------------------------------------------------------
// The manager protocol, shared by the `manager_*` tests: the spec transcript's exact replies and
// first-revision requests, request builders, and reply checks.

// Exact replies the spec's transcript gives.
pub const ADD_OK: &str = "{\"action\": \"peer add\", \"result\": \"completed\", \"data\": true}\n";
pub const ADD_EXISTS: &str = "{\"action\": \"peer add\", \"result\": \"error\", \"data\": false}\n";
pub const GET_MISSING: &str = "{\"action\": \"peer get\", \"result\": \"error\", \"data\": null}\n";
pub const UPDATE_OK: &str = "{\"action\": \"peer update\", \"result\": \"completed\", \"data\": true}\n";
pub const UPDATE_MISSING: &str = "{\"action\": \"peer update\", \"result\": \"error\", \"data\": false}\n";
pub const REMOVE_OK: &str = "{\"action\": \"peer remove\", \"result\": \"completed\", \"data\": null}\n";
pub const REMOVE_MISSING: &str = "{\"action\": \"peer remove\", \"result\": \"error\", \"data\": null}\n";

// Requests of the first revision, exactly as in the transcript (compact, no trailing newline).
pub const FELIPE_ADD: &[u8] =
    br#"{"message_type":3,"data":{"peer_ip":"101.3.4.2","peer_port":"8001","peer_name":"Felipe Nunes"}}"#;
pub const FELIPE_GET: &[u8] = br#"{"message_type":7,"data":{"peer_ip":"101.3.4.2"}}"#;
pub const FELIPE_UPDATE: &[u8] =
    br#"{"message_type":6,"data":{"peer_ip":"101.3.4.2","peer_port":"8002","peer_name":"F"}}"#;
pub const FELIPE_REMOVE: &[u8] = br#"{"message_type":4,"data":{"peer_ip":"101.3.4.2"}}"#;
pub const MISSING_GET: &[u8] = br#"{"message_type":7,"data":{"peer_ip":"9.9.9.9"}}"#;
pub const MISSING_UPDATE: &[u8] =
    br#"{"message_type":6,"data":{"peer_ip":"9.9.9.9","peer_port":"8002","peer_name":"F"}}"#;
pub const MISSING_REMOVE: &[u8] = br#"{"message_type":4,"data":{"peer_ip":"9.9.9.9"}}"#;
pub const CLOSE: &[u8] = br#"{"message_type":1}"#;
pub const TABLE_PICKLE: &[u8] = br#"{"message_type":2}"#;
pub const TABLE_JSON: &[u8] = br#"{"message_type": 2, "format": "json"}"#;
pub const PEER_ID: &[u8] = br#"{"message_type":8}"#;
pub const STATUS: &[u8] = br#"{"message_type":9}"#;

/// A first-revision add.
pub fn add_req(ip: &str, port: &str, name: &str) -> Vec<u8> {
    json!({"message_type": 3, "data": {"peer_ip": ip, "peer_port": port, "peer_name": name}})
        .to_string()
        .into_bytes()
}

/// A first-revision get.
pub fn get_req(ip: &str) -> Vec<u8> {
    json!({"message_type": 7, "data": {"peer_ip": ip}}).to_string().into_bytes()
}

/// The `data` of a reply line, after checking it is a completed reply of `action`.
pub fn completed_data(reply: &Value, action: &str) -> Value {
    assert_eq!(reply["action"], action, "reply: {reply}");
    assert_eq!(reply["result"], "completed", "reply: {reply}");
    reply["data"].clone()
}

/// The exact first-revision `peer get` reply, for the timestamps the record actually has.
pub fn expected_rev1_get(name: &str, ip: &str, port: &str, record: &Value) -> String {
    let ts =
        |f: &str| record[f].as_str().unwrap_or_else(|| panic!("`{f}` is not a string: {record}")).to_owned();
    format!(
        "{{\"action\": \"peer get\", \"result\": \"completed\", \"data\": {{\"name\": \"{name}\", \"ip\": \"{ip}\", \
         \"port\": \"{port}\", \"createdAt\": \"{}\", \"updatedAt\": \"{}\", \"lastConnectionOn\": \"{}\"}}}}\n",
        ts("createdAt"),
        ts("updatedAt"),
        ts("lastConnectionOn")
    )
}

pub fn keys_of(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap_or_else(|| panic!("not an object: {v}")).keys().cloned().collect()
}

pub fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The node still answers: on `conn` (if given) and on a fresh connection.
pub async fn assert_still_serving(conn: Option<&mut Conn>, node: &udht::RunningNode) {
    if let Some(conn) = conn {
        let reply = conn.request_json(PEER_ID).await;
        assert_eq!(completed_data(&reply, "peer id")["peer_id"], node.peer_id.as_str());
    }
    let reply = request_once(node.manager_addr, PEER_ID).await;
    assert_eq!(completed_data(&reply, "peer id")["peer_id"], node.peer_id.as_str());
}

pub fn status_of(reply: &Value) -> Value {
    let data = completed_data(reply, "node status");
    let digest = data["digest"].as_str().unwrap_or_else(|| panic!("no digest: {data}"));
    assert_eq!(digest.len(), 32, "digest {digest:?} is not 32 hex digits");
    assert!(digest.bytes().all(|b| b.is_ascii_hexdigit()), "digest {digest:?} is not hex");
    assert!(data["listen_addrs"].is_array() && data["connected_peers"].is_array(), "{data}");
    assert!(data["table_size"].is_u64(), "{data}");
    data
}

// ---------------------------------------------------------------------------------------------
// HTTP (the metrics and status page server).

/// One HTTP/1.1 GET over a fresh connection: the status code and the body (read up to its
/// Content-Length, or to the end: some servers keep the connection open whatever we ask).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connecting to the HTTP server");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("sending the request");
    let mut raw = Vec::new();
    let read = async {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw[..end]).to_lowercase();
                let length = head.lines().find_map(|l| {
                    l.strip_prefix("content-length:").and_then(|v| v.trim().parse::<usize>().ok())
                });
                if length.is_some_and(|n| raw.len() >= end + 4 + n) {
                    return;
                }
            }
            match stream.read(&mut chunk).await.expect("reading the answer") {
                0 => return,
                n => raw.extend_from_slice(&chunk[..n]),
            }
        }
    };
    timeout(Duration::from_secs(10), read).await.expect("the HTTP answer within 10 s");
    let text = String::from_utf8(raw).expect("an HTTP answer in UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no header end in {text:?}"));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{head}"));
    (status, body.to_owned())
}
