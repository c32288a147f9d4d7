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
//!
//! Modules: `cases` (parts 1 and 2), `large_table` (part 3), `client` (the measuring client and its
//! latency statistics), `canned` (the canned-reply server), `report` (targets, memory, printing).

mod canned;
mod cases;
mod client;
mod large_table;
mod render;
mod report;
mod watchers;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use clap::Parser;

use cases::request_cases;
use large_table::large_table;
use report::{fs_type, Summary};

/// Concurrent connections of the concurrent cases and of the bulk load.
const CONNS: usize = 16;
/// Records preloaded for the `get` cases.
const GET_KEYS: u64 = 1000;
/// A reply not completed within this time is an error.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

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

    render::reply_encoding();
    let mut summary = Summary::default();
    request_cases(&args, &parent, &mut summary).await?;
    large_table(&args, &parent, &mut summary).await?;

    summary.print();
    Ok(())
}

fn warmup_ops(ops: usize) -> usize {
    (ops / 10).max(CONNS * 10)
}
