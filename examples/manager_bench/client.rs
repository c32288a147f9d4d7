//! The measuring client: request builders, one connection that sends a request and reads its
//! reply line, a case run over N connections with its latency statistics, and the pipelined bulk
//! add.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Barrier;

use crate::{GET_KEYS, REPLY_TIMEOUT};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Get,
    Add,
}

/// Hands out distinct keys for adds.
#[derive(Default)]
pub struct Keys {
    next_add: AtomicU64,
}

impl Keys {
    /// Reserves `n` fresh add keys; returns the first index.
    pub fn reserve(&self, n: u64) -> u64 {
        self.next_add.fetch_add(n, Ordering::Relaxed)
    }
}

/// The keys of the records preloaded for gets: `172.16.x.y`.
pub fn get_key(i: u64, out: &mut Vec<u8>) {
    add_request_for(&format!("172.16.{}.{}", i >> 8, i & 255), out);
}

pub fn get_request(i: u64, out: &mut Vec<u8>) {
    out.clear();
    let _ = write!(out, r#"{{"message_type": 7, "data": {{"peer_ip": "172.16.{}.{}"}}}}"#, i >> 8, i & 255);
}

/// A first-revision add (no trailing newline, as the original clients send it).
pub fn add_request_for(ip: &str, out: &mut Vec<u8>) {
    out.clear();
    let _ = write!(
        out,
        r#"{{"message_type": 3, "data": {{"peer_ip": "{ip}", "peer_port": "8001", "peer_name": "bench peer {ip}"}}}}"#
    );
}

/// The add keys: `10.a.b.c`, distinct for every index.
pub fn add_request(i: u64, out: &mut Vec<u8>) {
    add_request_for(&format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255), out);
}

/// One measured case.
pub struct Case {
    pub name: String,
    pub conns: usize,
    wall: Duration,
    /// Nanoseconds, sorted.
    pub latencies: Vec<u64>,
    /// CPU time of this whole process (node, clients and, if attached, watchers) per operation,
    /// warm-up included: what the case costs, whatever else the machine is doing.
    pub cpu_per_op: Duration,
}

impl Case {
    pub fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64()
    }

    pub fn percentile_us(&self, p: f64) -> f64 {
        let i = ((self.latencies.len() as f64 * p / 100.0) as usize).min(self.latencies.len() - 1);
        self.latencies[i] as f64 / 1000.0
    }
}

/// Runs `ops` requests (after `warm` unmeasured ones) spread over `conns` connections, each
/// connection sending one request and waiting for its reply before the next.
pub async fn run_case(
    name: &str,
    addr: SocketAddr,
    op: Op,
    conns: usize,
    warm: usize,
    ops: usize,
    keys: &Keys,
) -> Result<Case> {
    let per_conn = ops.div_ceil(conns);
    let warm_per_conn = warm.div_ceil(conns);
    let cpu_before = process_cpu();
    let barrier = Arc::new(Barrier::new(conns));
    let mut tasks = Vec::with_capacity(conns);
    for c in 0..conns {
        let barrier = barrier.clone();
        // Distinct keys for adds, reserved before the task starts.
        let first_key = if op == Op::Add { keys.reserve((per_conn + warm_per_conn) as u64) } else { 0 };
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::connect(addr).await?;
            let mut req = Vec::with_capacity(256);
            let mut latencies = Vec::with_capacity(per_conn);
            let mut n = 0u64;
            let mut make = |req: &mut Vec<u8>| {
                match op {
                    Op::Get => get_request((c as u64 * 7919 + n) % GET_KEYS, req),
                    Op::Add => add_request(first_key + n, req),
                }
                n += 1;
            };
            for _ in 0..warm_per_conn {
                make(&mut req);
                let reply = conn.call(&req).await?;
                ensure!(is_completed(reply), "request failed: {}", show(reply));
            }
            barrier.wait().await;
            let start = Instant::now();
            for _ in 0..per_conn {
                make(&mut req);
                let t = Instant::now();
                let reply = conn.call(&req).await?;
                latencies.push(t.elapsed().as_nanos() as u64);
                ensure!(is_completed(reply), "request failed: {}", show(reply));
            }
            Ok::<_, anyhow::Error>((start, Instant::now(), latencies))
        }));
    }
    let mut start = None::<Instant>;
    let mut end = None::<Instant>;
    let mut latencies = Vec::with_capacity(per_conn * conns);
    for t in tasks {
        let (s, e, l) = t.await??;
        start = Some(start.map_or(s, |x| x.min(s)));
        end = Some(end.map_or(e, |x| x.max(e)));
        latencies.extend(l);
    }
    latencies.sort_unstable();
    let wall = end.expect("at least one connection") - start.expect("at least one connection");
    let done = (per_conn + warm_per_conn) * conns;
    let cpu_per_op = (process_cpu() - cpu_before) / done as u32;
    let case = Case { name: name.to_owned(), conns, wall, latencies, cpu_per_op };
    println!(
        "  {:<32} {:>2} conn(s): {:>8.0} ops/s, p50 {:.1} µs, CPU {:.1} µs/op",
        case.name,
        conns,
        case.rate(),
        case.percentile_us(50.0),
        cpu_per_op.as_secs_f64() * 1e6
    );
    Ok(case)
}

/// User and system CPU time of this process so far.
pub fn process_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

pub async fn connect(addr: SocketAddr) -> Result<TcpStream> {
    let stream = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// One connection that sends a request and reads its reply line.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> Result<Conn> {
        Ok(Conn { stream: connect(addr).await?, buf: Vec::with_capacity(4096) })
    }

    /// Writes the request's bytes and reads until `\n`; returns the reply, newline included.
    pub async fn call(&mut self, request: &[u8]) -> Result<&[u8]> {
        self.stream.write_all(request).await?;
        self.buf.clear();
        loop {
            let start = self.buf.len();
            self.buf.reserve(4096);
            let n = self.stream.read_buf(&mut self.buf).await?;
            ensure!(n > 0, "the server closed the connection");
            if self.buf[start..].contains(&b'\n') {
                return Ok(&self.buf);
            }
        }
    }
}

/// Adds the records `keys` over `conns` connections, each writing its requests back to back while
/// reading the replies; returns the time taken. Every reply must be "completed".
pub async fn bulk_add(
    addr: SocketAddr,
    keys: std::ops::Range<u64>,
    conns: usize,
    request: fn(u64, &mut Vec<u8>),
) -> Result<Duration> {
    let (first, count) = (keys.start, keys.end - keys.start);
    let t = Instant::now();
    let mut tasks = Vec::new();
    let per_conn = count.div_ceil(conns as u64);
    for c in 0..conns as u64 {
        let lo = first + c * per_conn;
        let hi = (lo + per_conn).min(first + count);
        if lo >= hi {
            break;
        }
        tasks.push(tokio::spawn(async move {
            let (mut rd, mut wr) = connect(addr).await?.into_split();
            let writer = async move {
                let mut batch = Vec::with_capacity(64 * 1024);
                let mut req = Vec::with_capacity(256);
                for i in lo..hi {
                    request(i, &mut req);
                    batch.extend_from_slice(&req);
                    if batch.len() >= 60 * 1024 {
                        wr.write_all(&batch).await?;
                        batch.clear();
                    }
                }
                wr.write_all(&batch).await?;
                Ok::<_, anyhow::Error>(wr)
            };
            let reader = async move {
                let want = hi - lo;
                let mut seen = 0u64;
                let mut buf = Vec::with_capacity(64 * 1024);
                while seen < want {
                    buf.reserve(64 * 1024);
                    let n = tokio::time::timeout(REPLY_TIMEOUT, rd.read_buf(&mut buf))
                        .await
                        .context("waiting for add replies")??;
                    ensure!(n > 0, "the node closed the connection during the bulk add");
                    let mut done = 0;
                    while let Some(nl) = buf[done..].iter().position(|&b| b == b'\n') {
                        let line = &buf[done..done + nl + 1];
                        ensure!(is_completed(line), "an add failed: {}", show(line));
                        seen += 1;
                        done += nl + 1;
                    }
                    buf.drain(..done);
                }
                Ok::<_, anyhow::Error>(())
            };
            let (w, r) = tokio::join!(writer, reader);
            w?;
            r
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(t.elapsed())
}

pub fn is_completed(reply: &[u8]) -> bool {
    const DONE: &[u8] = br#""result": "completed""#;
    reply.windows(DONE.len()).any(|w| w == DONE)
}

pub fn show(reply: &[u8]) -> String {
    String::from_utf8_lossy(&reply[..reply.len().min(300)]).trim_end().to_owned()
}
