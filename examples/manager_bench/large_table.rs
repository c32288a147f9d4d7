//! Part 3: a large table. Adds R records to a fresh node, times the whole table as JSON and as a
//! pickle, restarts the node on the same data and times the load, and reports resident memory.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use udht::{NodeConfig, RunningNode};

use crate::client::{add_request, bulk_add, connect, Conn};
use crate::report::{memory, mib, trim_heap, Summary, RESTART_MAX_SECS, RSS_MAX_MIB, TABLE_MAX_SECS};
use crate::{Args, CONNS, REPLY_TIMEOUT};

/// The pickled table has no terminator: it is complete once the node has been silent this long.
const PICKLE_IDLE: Duration = Duration::from_millis(300);
/// How many times each whole-table request is timed.
const TABLE_RUNS: usize = 2;

pub async fn large_table(args: &Args, parent: &Path, summary: &mut Summary) -> Result<()> {
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
    let process = measure_process(dir.path(), expected).await?;

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
    match process {
        Some((load, rss)) => {
            summary.target(
                &format!("udht-node process: load {records} records < {RESTART_MAX_SECS} s"),
                "process-load",
                format!("{load:.3} s"),
                load < RESTART_MAX_SECS,
            );
            summary.target(
                &format!("udht-node process VmRSS < {RSS_MAX_MIB} MiB"),
                "rss",
                format!("{rss:.1} MiB"),
                rss < RSS_MAX_MIB,
            );
        }
        None => summary.target(
            &format!("VmRSS after restart (this process) < {RSS_MAX_MIB} MiB"),
            "rss",
            format!("{:.1} MiB", rss_after.rss_mib),
            rss_after.rss_mib < RSS_MAX_MIB,
        ),
    }
    Ok(())
}

/// Starts the real `udht-node` binary (built beside this example) on the benchmark's data dir:
/// the time until its manager socket reports the whole table, and its own resident memory, which
/// unlike this process's holds nothing but the node. `None` if the binary is not built.
async fn measure_process(dir: &Path, expected: usize) -> Result<Option<(f64, f64)>> {
    let exe = std::env::current_exe()?;
    let Some(bin) = exe.parent().and_then(Path::parent).map(|d| d.join("udht-node")).filter(|b| b.exists())
    else {
        println!("  (udht-node is not built beside this example: `cargo build --release` measures the process too)");
        return Ok(None);
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let manager: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let t = Instant::now();
    let mut child = std::process::Command::new(&bin)
        .args(["--data-dir", &dir.display().to_string(), "--manager", &manager.to_string()])
        .args(["--listen", "/ip4/127.0.0.1/tcp/0"])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let load = loop {
        if let Ok(size) = table_size(manager).await {
            ensure!(size == expected, "the udht-node process reports {size} records, expected {expected}");
            break t.elapsed().as_secs_f64();
        }
        if t.elapsed() > REPLY_TIMEOUT {
            let _ = child.kill();
            bail!("the udht-node process did not answer within {REPLY_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()))?;
    let rss_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("VmRSS of the udht-node process")?;
    let _ = std::process::Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let _ = child.wait();
    let rss = rss_kib / 1024.0;
    println!(
        "  udht-node process on the same data: whole table served after {load:.3} s, VmRSS {rss:.1} MiB"
    );
    Ok(Some((load, rss)))
}

/// `message_type 9`'s `table_size`.
pub async fn table_size(addr: SocketAddr) -> Result<usize> {
    let mut conn = Conn::connect(addr).await?;
    let reply = conn.call(br#"{"message_type": 9}"#).await?;
    let v: serde_json::Value = serde_json::from_slice(reply).context("the status reply")?;
    v["data"]["table_size"].as_u64().map(|n| n as usize).with_context(|| format!("no table_size in {v}"))
}

/// The whole table as JSON: seconds from sending the request to the reply's last byte.
pub async fn table_json(addr: SocketAddr) -> Result<(f64, Vec<u8>)> {
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
pub async fn table_pickle(addr: SocketAddr) -> Result<(f64, Vec<u8>)> {
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
