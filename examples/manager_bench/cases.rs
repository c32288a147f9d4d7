//! Parts 1 and 2: per-request cases (serial and concurrent gets and durable adds) against the node
//! and against the canned-reply server, the loopback limit.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Watchers attached for the add case with the change feed (issue 11's benchmark).
const WATCHERS: usize = 10;

use anyhow::{ensure, Result};
use udht::{NodeConfig, RunningNode};

use crate::canned::canned_server;
use crate::client::{bulk_add, get_key, get_request, is_completed, run_case, show, Conn, Keys, Op};
use crate::report::{Summary, ADD16_MIN_OPS, GET16_MIN_RATIO, GET1_MIN_RATIO};
use crate::watchers::Watchers;
use crate::{warmup_ops, Args, CONNS, GET_KEYS};

pub async fn request_cases(args: &Args, parent: &Path, summary: &mut Summary) -> Result<()> {
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
    let watchers = Watchers::start(node_addr, WATCHERS).await?;
    let node_add16w =
        run_case("add   node (durable), 10 watchers", node_addr, Op::Add, CONNS, warm, ops, &keys).await?;
    // Every change of the case (and its warm-up) reached every watcher.
    let expected = (ops.div_ceil(CONNS) + warm.div_ceil(CONNS)) as u64 * CONNS as u64;
    let seen = watchers.finish(expected, Duration::from_secs(30)).await?;
    ensure!(seen.iter().all(|&s| s == expected), "watchers saw {seen:?} of {expected} changes");

    println!();
    println!(
        "{:<32} {:>5} {:>8} {:>10} {:>9} {:>9} {:>10} {:>11}",
        "case", "conns", "ops", "ops/s", "p50 µs", "p99 µs", "CPU µs/op", "node/limit"
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
        (&node_add16w, Some(node_add16w.rate() / node_add16.rate())),
    ] {
        println!(
            "{:<32} {:>5} {:>8} {:>10.0} {:>9.1} {:>9.1} {:>10.1} {:>11}",
            case.name,
            case.conns,
            case.latencies.len(),
            case.rate(),
            case.percentile_us(50.0),
            case.percentile_us(99.0),
            case.cpu_per_op.as_secs_f64() * 1e6,
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
    summary.target(
        &format!("durable add, {CONNS} conns, {WATCHERS} watchers: >= {ADD16_MIN_OPS:.0} ops/s"),
        "add16w",
        format!("{:.0} ops/s, each watcher saw all {expected}", node_add16w.rate()),
        node_add16w.rate() >= ADD16_MIN_OPS,
    );

    node.shutdown().await?;
    Ok(())
}
