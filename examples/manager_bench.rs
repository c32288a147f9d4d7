//! A benchmark of the manager socket, in one process:
//!
//!     cargo run --release --example manager_bench -- [--ops N] [--records R] [--dir PATH]
//!
//! 1. Starts a real node (`RunningNode`, data in a temporary directory) and a "canned-reply" TCP
//!    server that answers every request with the same record-sized reply without looking at it:
//!    the loopback limit of this machine and runtime.
//! 2. Measures, with the same client code against both: serial `get` on one connection, serial
//!    durable `add` on one connection, and the same with 16 concurrent connections; prints ops/s,
//!    p50 and p99 latency, and for gets the ratio node/limit.
//! 3. On a fresh node: adds R records, times the whole table (`message_type 2`) as JSON and as a
//!    pickle, restarts the node on the same data and times the load, and reports resident memory.
//!
//! Targets are printed as PASS/FAIL; the exit code is non-zero only on errors.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Barrier;
use udht::{NodeConfig, RunningNode};

/// Concurrent connections of the concurrent cases and of the bulk load.
const CONNS: usize = 16;
/// Records preloaded for the `get` cases.
const GET_KEYS: u64 = 1000;
/// A reply not completed within this time is an error.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// The pickled table has no terminator: it is complete once the node has been silent this long.
const PICKLE_IDLE: Duration = Duration::from_millis(300);
/// How many times each whole-table request is timed.
const TABLE_RUNS: usize = 2;

// Targets.
const GET1_MIN_RATIO: f64 = 0.8;
const GET16_MIN_RATIO: f64 = 0.5;
const ADD16_MIN_OPS: f64 = 20_000.0;
const TABLE_MAX_SECS: f64 = 0.5;
const RESTART_MAX_SECS: f64 = 1.0;
const RSS_MAX_MIB: f64 = 100.0;

#[derive(Debug, Parser)]
#[command(about = "Benchmark of udht's manager socket")]
struct Args {
    /// Measured operations per case (after a warm-up of a tenth as many).
    #[arg(long, default_value_t = 20_000)]
    ops: usize,
    /// Records in the large-table phase.
    #[arg(long, default_value_t = 100_000)]
    records: u64,
    /// Directory to create the nodes' data dirs in (default: the system temp dir). Durable adds
    /// wait for fsync, so this decides what is measured.
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(args.ops >= CONNS, "--ops must be at least {CONNS}");
    ensure!(args.records >= 1, "--records must be at least 1");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> Result<()> {
    let parent = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    println!("udht manager socket benchmark");
    println!(
        "  machine: {} CPUs; tokio multi-thread runtime with {} workers, shared by the node, the canned server and the clients",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        tokio::runtime::Handle::current().metrics().num_workers()
    );
    println!("  data dirs under {} (filesystem: {})", parent.display(), fs_type(&parent));
    println!(
        "  --ops {} per case (warm-up {} first), --records {}",
        args.ops,
        warmup_ops(args.ops),
        args.records
    );

    let mut summary = Summary::default();
    request_cases(&args, &parent, &mut summary).await?;
    large_table(&args, &parent, &mut summary).await?;

    println!();
    println!("targets");
    for t in &summary.targets {
        println!("  {:<48} {:>16}   {}", t.what, t.value, if t.pass { "PASS" } else { "FAIL" });
    }
    let passed = summary.targets.iter().filter(|t| t.pass).count();
    let figures: Vec<String> = summary.targets.iter().map(|t| format!("{} {}", t.short, t.value)).collect();
    println!();
    println!("summary: {passed}/{} targets met; {}", summary.targets.len(), figures.join(", "));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Part 1 and 2: per-request cases against the node and the canned server.

async fn request_cases(args: &Args, parent: &Path, summary: &mut Summary) -> Result<()> {
    let dir = tempfile::Builder::new().prefix("udht-bench-").tempdir_in(parent)?;
    let node = RunningNode::start(NodeConfig::new(dir.path(), "127.0.0.1:0".parse()?)).await?;
    let node_addr = node.manager_addr;
    println!();
    println!("node {} started, manager socket {node_addr}", node.peer_id);

    let keys = Keys::default();
    let loaded = bulk_add(node_addr, 0..GET_KEYS, CONNS, get_key).await?;
    println!("preloaded {GET_KEYS} records for the get cases in {:.2} s", loaded.as_secs_f64());

    // The canned server answers with a real get reply, byte for byte.
    let mut probe = Conn::connect(node_addr).await?;
    let mut req = Vec::new();
    get_request(0, &mut req);
    let canned = Arc::new(probe.call(&req).await?.to_vec());
    ensure!(is_completed(&canned), "the node could not get a preloaded record: {}", show(&canned));
    drop(probe);
    let limit_addr = canned_server(canned.clone()).await?;
    println!("canned-reply server on {limit_addr}, reply of {} bytes (a real get reply)", canned.len());

    let ops = args.ops;
    let warm = warmup_ops(ops);
    println!();
    println!("measuring ({ops} ops per case)...");
    let limit_get1 =
        run_case("get   loopback limit (canned)", limit_addr, Op::Get, 1, warm, ops, &keys).await?;
    let node_get1 = run_case("get   node", node_addr, Op::Get, 1, warm, ops, &keys).await?;
    let node_add1 = run_case("add   node (durable)", node_addr, Op::Add, 1, warm, ops, &keys).await?;
    let limit_get16 =
        run_case("get   loopback limit (canned)", limit_addr, Op::Get, CONNS, warm, ops, &keys).await?;
    let node_get16 = run_case("get   node", node_addr, Op::Get, CONNS, warm, ops, &keys).await?;
    let node_add16 = run_case("add   node (durable)", node_addr, Op::Add, CONNS, warm, ops, &keys).await?;

    println!();
    println!(
        "{:<32} {:>5} {:>8} {:>10} {:>9} {:>9} {:>11}",
        "case", "conns", "ops", "ops/s", "p50 µs", "p99 µs", "node/limit"
    );
    let get1_ratio = node_get1.rate() / limit_get1.rate();
    let get16_ratio = node_get16.rate() / limit_get16.rate();
    for (case, ratio) in [
        (&limit_get1, None),
        (&node_get1, Some(get1_ratio)),
        (&node_add1, None),
        (&limit_get16, None),
        (&node_get16, Some(get16_ratio)),
        (&node_add16, None),
    ] {
        println!(
            "{:<32} {:>5} {:>8} {:>10.0} {:>9.1} {:>9.1} {:>11}",
            case.name,
            case.conns,
            case.latencies.len(),
            case.rate(),
            case.percentile_us(50.0),
            case.percentile_us(99.0),
            ratio.map_or(String::new(), |r| format!("{r:.2}x"))
        );
    }
    summary.target(
        &format!("get, 1 conn: node >= {GET1_MIN_RATIO}x limit"),
        "get1",
        format!("{get1_ratio:.2}x"),
        get1_ratio >= GET1_MIN_RATIO,
    );
    summary.target(
        &format!("get, {CONNS} conns: node >= {GET16_MIN_RATIO}x limit"),
        "get16",
        format!("{get16_ratio:.2}x"),
        get16_ratio >= GET16_MIN_RATIO,
    );
    summary.target(
        &format!("durable add, {CONNS} conns: >= {ADD16_MIN_OPS:.0} ops/s"),
        "add16",
        format!("{:.0} ops/s", node_add16.rate()),
        node_add16.rate() >= ADD16_MIN_OPS,
    );

    node.shutdown().await?;
    Ok(())
}

fn warmup_ops(ops: usize) -> usize {
    (ops / 10).max(CONNS * 10)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Get,
    Add,
}

/// Hands out distinct keys for adds.
#[derive(Default)]
struct Keys {
    next_add: AtomicU64,
}

impl Keys {
    /// Reserves `n` fresh add keys; returns the first index.
    fn reserve(&self, n: u64) -> u64 {
        self.next_add.fetch_add(n, Ordering::Relaxed)
    }
}

/// The keys of the records preloaded for gets: `172.16.x.y`.
fn get_key(i: u64, out: &mut Vec<u8>) {
    add_request_for(&format!("172.16.{}.{}", i >> 8, i & 255), out);
}

fn get_request(i: u64, out: &mut Vec<u8>) {
    out.clear();
    let _ = write!(out, r#"{{"message_type": 7, "data": {{"peer_ip": "172.16.{}.{}"}}}}"#, i >> 8, i & 255);
}

/// A first-revision add (no trailing newline, as the original clients send it).
fn add_request_for(ip: &str, out: &mut Vec<u8>) {
    out.clear();
    let _ = write!(
        out,
        r#"{{"message_type": 3, "data": {{"peer_ip": "{ip}", "peer_port": "8001", "peer_name": "bench peer {ip}"}}}}"#
    );
}

/// The add keys: `10.a.b.c`, distinct for every index.
fn add_request(i: u64, out: &mut Vec<u8>) {
    add_request_for(&format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255), out);
}

/// One measured case.
struct Case {
    name: String,
    conns: usize,
    wall: Duration,
    /// Nanoseconds, sorted.
    latencies: Vec<u64>,
}

impl Case {
    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64()
    }

    fn percentile_us(&self, p: f64) -> f64 {
        let i = ((self.latencies.len() as f64 * p / 100.0) as usize).min(self.latencies.len() - 1);
        self.latencies[i] as f64 / 1000.0
    }
}

/// Runs `ops` requests (after `warm` unmeasured ones) spread over `conns` connections, each
/// connection sending one request and waiting for its reply before the next.
async fn run_case(
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
    let case = Case { name: name.to_owned(), conns, wall, latencies };
    println!(
        "  {:<32} {:>2} conn(s): {:>8.0} ops/s, p50 {:.1} µs",
        case.name,
        conns,
        case.rate(),
        case.percentile_us(50.0)
    );
    Ok(case)
}

// ---------------------------------------------------------------------------------------------
// Part 3: a large table.

async fn large_table(args: &Args, parent: &Path, summary: &mut Summary) -> Result<()> {
    let records = args.records;
    let expected = records as usize + 1; // and the node's own record
    println!();
    println!("large table: {records} records");
    trim_heap();
    let rss_before = memory();
    let dir = tempfile::Builder::new().prefix("udht-bench-").tempdir_in(parent)?;
    let config = NodeConfig::new(dir.path(), "127.0.0.1:0".parse()?);
    let node = RunningNode::start(config.clone()).await?;
    let addr = node.manager_addr;

    let took = bulk_add(addr, 0..records, CONNS, add_request).await?;
    println!(
        "  added {records} records (durable adds, {CONNS} pipelined connections) in {:.2} s: {:.0} adds/s",
        took.as_secs_f64(),
        records as f64 / took.as_secs_f64()
    );
    let size = table_size(addr).await?;
    ensure!(size == expected, "the node reports {size} records, expected {expected}");

    let mut json_secs = Vec::new();
    let mut pickle_secs = Vec::new();
    for run in 1..=TABLE_RUNS {
        let (secs, bytes) = table_json(addr).await?;
        let t = Instant::now();
        let value: serde_json::Value = serde_json::from_slice(&bytes).context("the JSON table")?;
        let n = value["data"].as_object().map_or(0, |m| m.len());
        ensure!(n == expected, "the JSON table has {n} records, expected {expected}");
        println!(
            "  table as JSON   (run {run}): {secs:.3} s to the last byte, {:.1} MiB, {n} records (client parse {:.3} s)",
            mib(bytes.len()),
            t.elapsed().as_secs_f64()
        );
        json_secs.push(secs);
        drop((value, bytes));

        let (secs, bytes) = table_pickle(addr).await?;
        let t = Instant::now();
        let value = serde_pickle::value_from_slice(&bytes, serde_pickle::DeOptions::new())
            .context("the pickled table")?;
        let n = match &value {
            serde_pickle::Value::Dict(d) => d.len(),
            _ => bail!("the pickled table is not a dict"),
        };
        ensure!(n == expected, "the pickled table has {n} records, expected {expected}");
        println!(
            "  table as pickle (run {run}): {secs:.3} s to the last byte, {:.1} MiB, {n} records (client decode {:.3} s)",
            mib(bytes.len()),
            t.elapsed().as_secs_f64()
        );
        pickle_secs.push(secs);
    }
    let json_worst = json_secs.iter().copied().fold(0.0, f64::max);
    let pickle_worst = pickle_secs.iter().copied().fold(0.0, f64::max);

    let t = Instant::now();
    node.shutdown().await?;
    println!("  shut down in {:.3} s", t.elapsed().as_secs_f64());

    // Restart on the same data: time until the manager reports the whole table.
    trim_heap();
    let rss_stopped = memory();
    let t = Instant::now();
    let node = RunningNode::start(config).await?;
    let started = t.elapsed();
    let size = table_size(node.manager_addr).await?;
    let ready = t.elapsed();
    ensure!(size == expected, "after the restart the node reports {size} records, expected {expected}");
    println!(
        "  restart: start() returned after {:.3} s; status answered table_size {size} after {:.3} s",
        started.as_secs_f64(),
        ready.as_secs_f64()
    );

    let rss_after = memory();
    trim_heap();
    let rss_trimmed = memory();
    println!("  memory of this process (VmRSS):");
    println!("    before the large-table node started      {}", rss_before.show());
    println!("    with the node stopped, before restart    {}", rss_stopped.show());
    println!("    after the restart                        {}", rss_after.show());
    println!("    after the restart, freed heap returned   {}", rss_trimmed.show());
    println!(
        "    (the process holds the node with {expected} records, plus the benchmark: the tokio runtime, \
the idle canned server, and heap the allocator kept from earlier phases; peak VmHWM {:.1} MiB covers \
the client-side copies of the whole-table replies)",
        rss_after.hwm_mib
    );
    node.shutdown().await?;

    summary.target(
        &format!("table as JSON ({records} records) < {TABLE_MAX_SECS} s"),
        "json",
        format!("{json_worst:.3} s"),
        json_worst < TABLE_MAX_SECS,
    );
    summary.target(
        &format!("table as pickle ({records} records) < {TABLE_MAX_SECS} s"),
        "pickle",
        format!("{pickle_worst:.3} s"),
        pickle_worst < TABLE_MAX_SECS,
    );
    summary.target(
        &format!("restart, load {records} records < {RESTART_MAX_SECS} s"),
        "restart",
        format!("{:.3} s", ready.as_secs_f64()),
        ready.as_secs_f64() < RESTART_MAX_SECS,
    );
    summary.target(
        &format!("VmRSS after restart < {RSS_MAX_MIB} MiB"),
        "rss",
        format!("{:.1} MiB", rss_after.rss_mib),
        rss_after.rss_mib < RSS_MAX_MIB,
    );
    Ok(())
}

/// `message_type 9`'s `table_size`.
async fn table_size(addr: SocketAddr) -> Result<usize> {
    let mut conn = Conn::connect(addr).await?;
    let reply = conn.call(br#"{"message_type": 9}"#).await?;
    let v: serde_json::Value = serde_json::from_slice(reply).context("the status reply")?;
    v["data"]["table_size"].as_u64().map(|n| n as usize).with_context(|| format!("no table_size in {v}"))
}

/// The whole table as JSON: seconds from sending the request to the reply's last byte.
async fn table_json(addr: SocketAddr) -> Result<(f64, Vec<u8>)> {
    let mut stream = connect(addr).await?;
    let mut buf = Vec::with_capacity(1 << 20);
    let t = Instant::now();
    stream.write_all(br#"{"message_type": 2, "format": "json"}"#).await?;
    // The reply is one line and nothing follows it, so it ends when a read ends with `\n`.
    while buf.last() != Some(&b'\n') {
        buf.reserve(1 << 20);
        let n =
            tokio::time::timeout(REPLY_TIMEOUT, stream.read_buf(&mut buf)).await.context("table reply")??;
        ensure!(n > 0, "the node closed the connection during the table");
    }
    Ok((t.elapsed().as_secs_f64(), buf))
}

/// The whole table as a pickle: it has no terminator, so it is read until the node stops sending;
/// the time is that of the last byte.
async fn table_pickle(addr: SocketAddr) -> Result<(f64, Vec<u8>)> {
    let mut stream = connect(addr).await?;
    let mut buf = Vec::with_capacity(1 << 20);
    let t = Instant::now();
    stream.write_all(br#"{"message_type": 2}"#).await?;
    let mut last_byte = None;
    loop {
        buf.reserve(1 << 20);
        let wait = if buf.is_empty() { REPLY_TIMEOUT } else { PICKLE_IDLE };
        match tokio::time::timeout(wait, stream.read_buf(&mut buf)).await {
            Err(_) if buf.is_empty() => bail!("no table reply within {REPLY_TIMEOUT:?}"),
            Err(_) => break,
            Ok(Ok(0)) => break,
            Ok(Ok(_)) => last_byte = Some(t.elapsed()),
            Ok(Err(e)) => return Err(e.into()),
        }
    }
    let secs = last_byte.context("empty table reply")?.as_secs_f64();
    Ok((secs, buf))
}

// ---------------------------------------------------------------------------------------------
// Clients and the canned server.

async fn connect(addr: SocketAddr) -> Result<TcpStream> {
    let stream = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// One connection that sends a request and reads its reply line.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn connect(addr: SocketAddr) -> Result<Conn> {
        Ok(Conn { stream: connect(addr).await?, buf: Vec::with_capacity(4096) })
    }

    /// Writes the request's bytes and reads until `\n`; returns the reply, newline included.
    async fn call(&mut self, request: &[u8]) -> Result<&[u8]> {
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
async fn bulk_add(
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

/// The loopback limit: answers each complete JSON object it receives with the same bytes, without
/// parsing it (objects are found by tracking `{`/`}` depth outside strings).
async fn canned_server(reply: Arc<Vec<u8>>) -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let reply = reply.clone();
            tokio::spawn(async move {
                let _ = canned_connection(stream, &reply).await;
            });
        }
    });
    Ok(addr)
}

async fn canned_connection(mut stream: TcpStream, reply: &[u8]) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = vec![0u8; 8192];
    let mut out = Vec::with_capacity(4096);
    let (mut depth, mut in_str, mut escaped) = (0u32, false, false);
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        for &b in &buf[..n] {
            if in_str {
                match (escaped, b) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => in_str = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => in_str = true,
                b'{' => depth += 1,
                b'}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        out.extend_from_slice(reply);
                    }
                }
                _ => {}
            }
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
        }
    }
}

fn is_completed(reply: &[u8]) -> bool {
    const DONE: &[u8] = br#""result": "completed""#;
    reply.windows(DONE.len()).any(|w| w == DONE)
}

fn show(reply: &[u8]) -> String {
    String::from_utf8_lossy(&reply[..reply.len().min(300)]).trim_end().to_owned()
}

// ---------------------------------------------------------------------------------------------
// Reporting.

struct Target {
    what: String,
    short: &'static str,
    value: String,
    pass: bool,
}

#[derive(Default)]
struct Summary {
    targets: Vec<Target>,
}

impl Summary {
    fn target(&mut self, what: &str, short: &'static str, value: String, pass: bool) {
        self.targets.push(Target { what: what.to_owned(), short, value, pass });
    }
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Resident memory of this process, from /proc/self/status.
struct Memory {
    rss_mib: f64,
    hwm_mib: f64,
}

impl Memory {
    fn show(&self) -> String {
        format!("{:7.1} MiB", self.rss_mib)
    }
}

fn memory() -> Memory {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    Memory { rss_mib: field("VmRSS:"), hwm_mib: field("VmHWM:") }
}

/// Returns freed heap to the system (glibc keeps it otherwise), so RSS shows what is live.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The type of the filesystem holding `path`, from /proc/mounts (longest matching mount point).
fn fs_type(path: &Path) -> String {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_owned());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, point, kind) = (f.next()?, f.next()?, f.next()?);
            path.starts_with(point).then(|| (point.len(), kind.to_owned()))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "unknown".to_owned(), |(_, kind)| kind)
}
