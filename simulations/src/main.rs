//! The udht convergence simulator: N real nodes in this process on loopback, joined through one
//! bootstrap address, driven through scenarios (spread, join, partition, churn). Prints a line per
//! scenario, writes `report.json` and SVG charts, and exits non-zero if anything did not converge.

mod chart;
mod model;
mod scale;
mod scenarios;
mod traffic;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use serde::Serialize;
use udht::cluster::Cluster;
use udht::NodeConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Scenario {
    Idle,
    Spread,
    Join,
    Partition,
    Churn,
    All,
}

#[derive(Debug, Parser, Serialize)]
#[command(name = "udht-simulations", about = "Measure how fast and how surely udht converges")]
struct Args {
    /// Nodes in the cluster.
    #[arg(long, default_value_t = 20)]
    nodes: usize,
    /// Scenarios to run, comma-separated, in the order idle, spread, join, partition, churn.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "all")]
    scenario: Vec<Scenario>,
    /// Where report.json and the charts go (model.json with --model).
    #[arg(long, default_value = "simulations/out")]
    out: PathBuf,
    /// Writes in the spread scenario (and per side in partition, total in churn).
    #[arg(long, default_value_t = 200)]
    writes: usize,
    /// Records the network holds before a node joins (join scenario).
    #[arg(long, default_value_t = 10_000)]
    records: usize,
    /// Stop/restart rounds in the churn scenario.
    #[arg(long, default_value_t = 5)]
    churn_rounds: usize,
    /// Idle scenario: wait after the cluster converged before measuring, in seconds.
    #[arg(long, default_value_t = 10.0)]
    idle_settle: f64,
    /// Idle scenario: the measuring window, in seconds (at least one Kademlia walk, 60 s).
    #[arg(long, default_value_t = 60.0)]
    idle_secs: f64,
    /// Idle scenario: isolated writes timed after the window.
    #[arg(long, default_value_t = 20)]
    idle_writes: usize,
    /// Idle scenario: seconds from one isolated write to the next (longer than a write's gossip).
    #[arg(long, default_value_t = 3.0)]
    idle_write_gap: f64,
    /// Anti-entropy interval of every node, in seconds.
    #[arg(long, default_value_t = 10.0)]
    sync_interval: f64,
    /// Longest wait for any convergence, in seconds.
    #[arg(long, default_value_t = 120.0)]
    timeout: f64,
    /// Seed of the random choices (nodes to write at, nodes to restart).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Run the replica model (a seeded simulation of many replicas) instead of the node cluster.
    #[arg(long)]
    model: bool,
    /// Replicas in the model.
    #[arg(long, default_value_t = 1000)]
    replicas: usize,
    /// Links per replica in the model.
    #[arg(long, default_value_t = 8)]
    degree: usize,
    /// Message loss in the model, for both cases (default: 1% clean, 5% faulty).
    #[arg(long)]
    loss: Option<f64>,
    /// Compute idle traffic per node at large N from idle scenario reports (`report.json` of
    /// runs at two sizes or more, comma-separated) instead of running anything.
    #[arg(long, value_delimiter = ',')]
    scale: Vec<PathBuf>,
    /// Sizes --scale computes.
    #[arg(long, value_delimiter = ',', default_value = "50,1000,10000")]
    scale_sizes: Vec<usize>,
    /// Connections a node keeps at scale (the connection manager's high mark for the default
    /// target of 8: 12; the N=200 simulator run measures what nodes really keep).
    #[arg(long, default_value_t = 12.0)]
    scale_connections: f64,
    /// Bytes on the wire to open a connection (TCP, noise, yamux, identify both ways, the
    /// anti-entropy round a new connection starts): an estimate, see `scale.rs`.
    #[arg(long, default_value_t = 6000.0)]
    scale_dial_bytes: f64,
    /// Far liveness probes each node starts per second (each opens a connection); default: the
    /// nodes' own rate, one per `LivenessConfig::far_probe_interval_ms`.
    #[arg(long)]
    scale_far_probes_per_sec: Option<f64>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !args.scale.is_empty() {
        return scale::run(&scale::Options {
            reports: args.scale,
            sizes: args.scale_sizes,
            connections: args.scale_connections,
            dial_bytes: args.scale_dial_bytes,
            far_probes_per_sec: args.scale_far_probes_per_sec.unwrap_or_else(|| {
                1000.0 / udht::core::liveness::LivenessConfig::default().far_probe_interval_ms as f64
            }),
        });
    }
    if args.model {
        let Args { replicas, seed, degree, loss, out, .. } = args;
        return model::run(&model::Options { replicas, seed, degree, loss, out });
    }
    anyhow::ensure!(args.nodes >= 2, "--nodes must be at least 2");
    raise_open_file_limit();
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let runtime = tokio::runtime::Runtime::new()?;
    let all_converged = runtime.block_on(run(&args))?;
    if !all_converged {
        anyhow::bail!("some scenario did not converge; see {}", args.out.join("report.json").display());
    }
    Ok(())
}

/// N nodes in one process hold N times a node's sockets and files: the soft open-file limit
/// (often 1,024) is raised to the hard one, and both are printed.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain system calls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        let before = limit.rlim_cur;
        limit.rlim_cur = limit.rlim_max;
        let raised = libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0;
        let now = if raised { limit.rlim_max } else { before };
        eprintln!("open-file limit: {now} (was {before}, hard {})", limit.rlim_max);
    }
}

async fn run(args: &Args) -> anyhow::Result<bool> {
    let dir = tempfile::tempdir()?;
    let sync_interval = Duration::from_secs_f64(args.sync_interval);
    let started = std::time::Instant::now();
    eprintln!("starting {} nodes on 127.0.0.1 ...", args.nodes);
    let mut cluster = Cluster::start(dir.path(), args.nodes, move |c: &mut NodeConfig| {
        c.sync_interval = sync_interval;
    })
    .await?;
    let timeout = Duration::from_secs_f64(args.timeout);
    let warmup = cluster.wait_converged(timeout).await.context("the fresh cluster did not converge")?;
    eprintln!("{} nodes up and converged in {:.1}s", args.nodes, started.elapsed().as_secs_f64());

    let mut sim = scenarios::Sim::new(&mut cluster, args.seed, timeout);
    let wanted = |s: Scenario| args.scenario.contains(&s) || args.scenario.contains(&Scenario::All);
    let mut results = Vec::new();
    if wanted(Scenario::Idle) {
        let idle = scenarios::IdleOptions {
            settle: Duration::from_secs_f64(args.idle_settle),
            window: Duration::from_secs_f64(args.idle_secs),
            writes: args.idle_writes,
            gap: Duration::from_secs_f64(args.idle_write_gap),
            refresh_interval: udht::app::DEFAULT_REFRESH_INTERVAL,
        };
        results.push(sim.idle(&idle).await?);
    }
    if wanted(Scenario::Spread) {
        results.push(sim.spread(args.writes).await?);
    }
    if wanted(Scenario::Join) {
        results.push(sim.join(args.records).await?);
    }
    if wanted(Scenario::Partition) {
        results.push(sim.partition(args.writes).await?);
    }
    if wanted(Scenario::Churn) {
        results.push(sim.churn(args.churn_rounds, args.writes).await?);
    }
    cluster.shutdown().await?;

    let all_converged = results.iter().all(|r| r.converged);
    let report = serde_json::json!({
        "parameters": args,
        "warmup_secs": warmup.as_secs_f64(),
        "all_converged": all_converged,
        "scenarios": results.iter().map(|r| (r.name.clone(), r.to_json())).collect::<serde_json::Map<_, _>>(),
    });
    let path = args.out.join("report.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&report)?)?;
    chart::draw(&args.out, &results, args.nodes)?;
    eprintln!("report: {}; charts: {}", path.display(), args.out.join("*.svg").display());
    Ok(all_converged)
}
