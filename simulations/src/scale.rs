//! `--scale`: idle traffic per node at sizes the in-process cluster cannot reach, computed from
//! what the idle scenario measured (its `report.json` files), not from guesses. A plain
//! calculation, printed with every input and where it came from.
//!
//! A node's idle traffic is split by how each part grows with N:
//! - per connection (pings both ways, periodic identify): fitted as the slope of the measured
//!   idle rate against the measured connections per node over the runs given, times the
//!   connections a node keeps at scale (the connection manager's high mark; a small cluster is
//!   fully connected);
//! - per node, constant in N (one liveness probe and one ack per period, one anti-entropy round
//!   per interval, gossipsub heartbeats, which send nothing when nothing was published): the
//!   fit's intercept;
//! - probes to members we are not connected to: the round-robin probes ride on open connections,
//!   and only the far probe (one per `LivenessConfig::far_probe_interval_ms`, to a member with no
//!   connection) opens one (TCP, noise, yamux, identify both ways, the anti-entropy round every
//!   new connection starts), at a cost per connection opened that is an input
//!   (`--scale-dial-bytes`); none while every member is connected (small N);
//! - the own-record refreshes of all N nodes: N / interval writes per second, with the interval
//!   the nodes use (the configured one, stretched to a second per known node up to a quarter of
//!   the node TTL: `core::replica::REFRESH_MS_PER_NODE`), each costing every node the measured
//!   bytes per write (gossipsub forwards a message to a fixed mesh degree
//!   whatever N is, and IHAVE goes to a fixed number of peers, so a write's cost per node does
//!   not grow with N).

use std::path::PathBuf;

use anyhow::Context;
use serde_json::Value;
use udht::core::replica::REFRESH_MS_PER_NODE;
use udht::core::table::DEFAULT_NODE_TTL;

/// What `--scale` was asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// Idle reports (`report.json` of runs with the idle scenario), at least two sizes.
    pub reports: Vec<PathBuf>,
    /// Sizes to compute.
    pub sizes: Vec<usize>,
    /// Connections a node keeps once N is large (the connection manager's high mark).
    pub connections: f64,
    /// Bytes on the wire (both directions) to open a connection and do what a new connection
    /// triggers.
    pub dial_bytes: f64,
    /// Far liveness probes (each opening a connection) each node starts per second.
    pub far_probes_per_sec: f64,
}

/// One measured run, as its report gives it.
#[derive(Debug, Clone)]
struct Measured {
    nodes: f64,
    connections: f64,
    idle: f64,
    per_write: f64,
    refresh_secs: f64,
}

fn load(path: &PathBuf) -> anyhow::Result<Measured> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let v: Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let idle = &v["scenarios"]["idle"];
    let num = |x: &Value, what: &str| {
        x.as_f64().with_context(|| format!("{}: no {what} (was the idle scenario run?)", path.display()))
    };
    Ok(Measured {
        nodes: num(&idle["nodes"], "nodes")?,
        connections: num(&idle["mean_connections_per_node"], "mean_connections_per_node")?,
        idle: num(&idle["idle_bytes_per_node_per_sec"], "idle_bytes_per_node_per_sec")?,
        per_write: num(&idle["bytes_per_write_per_node"], "bytes_per_write_per_node")?,
        refresh_secs: num(&idle["refresh_interval_secs"], "refresh_interval_secs")?,
    })
}

/// Least-squares line through (x, y): (intercept, slope).
fn fit(points: &[(f64, f64)]) -> (f64, f64) {
    let n = points.len() as f64;
    let (sx, sy) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let sxx: f64 = points.iter().map(|(x, _)| (x - mx) * (x - mx)).sum();
    let sxy: f64 = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    (my - slope * mx, slope)
}

pub fn run(o: &Options) -> anyhow::Result<()> {
    anyhow::ensure!(o.reports.len() >= 2, "--scale needs idle reports of at least two sizes");
    let runs: Vec<Measured> = o.reports.iter().map(load).collect::<anyhow::Result<_>>()?;
    let (fixed, per_conn) = fit(&runs.iter().map(|r| (r.connections, r.idle)).collect::<Vec<_>>());
    let largest = runs.iter().max_by(|a, b| a.nodes.total_cmp(&b.nodes)).expect("at least two runs");
    println!("inputs (measured, from the idle reports):");
    for (r, path) in runs.iter().zip(&o.reports) {
        let predicted = fixed + per_conn * r.connections;
        println!(
            "  N={:<4} {:>5.1} connections/node, idle {:>6.0} B/s/node (fit: {predicted:>6.0}), {:>5.0} B/write/node  [{}]",
            r.nodes,
            r.connections,
            r.idle,
            r.per_write,
            path.display()
        );
    }
    println!(
        "  fit of idle against connections: {fixed:.0} B/s/node fixed + {per_conn:.1} B/s per connection"
    );
    println!(
        "  bytes per write per node: {:.0} (the largest run, N={}); refresh interval {:.0} s",
        largest.per_write, largest.nodes, largest.refresh_secs
    );
    println!(
        "inputs (given): {:.0} connections/node at scale, {:.0} bytes per connection opened, {:.3} far probes/s/node",
        o.connections, o.dial_bytes, o.far_probes_per_sec
    );
    let per_node_secs = REFRESH_MS_PER_NODE as f64 / 1000.0;
    let ttl_cap_secs = DEFAULT_NODE_TTL.as_secs_f64() / 4.0;
    println!(
        "  refresh interval (the nodes' rule): max({:.0} s, min(N x {per_node_secs} s, node TTL / 4 = {ttl_cap_secs:.0} s))",
        largest.refresh_secs
    );
    println!(
        "{:>7} {:>6} {:>7} {:>9} {:>12} {:>8} {:>10} {:>16}",
        "N", "conns", "fixed", "per-conn", "probe dials", "refresh", "total B/s", "without dials"
    );
    for &n in &o.sizes {
        let n = n as f64;
        let conns = (n - 1.0).min(o.connections);
        let conn_part = per_conn * conns;
        let dials = if conns < n - 1.0 { o.far_probes_per_sec * o.dial_bytes } else { 0.0 };
        let interval = largest.refresh_secs.max((n * per_node_secs).min(ttl_cap_secs));
        let refresh = n / interval * largest.per_write;
        let total = fixed + conn_part + dials + refresh;
        println!(
            "{n:>7} {conns:>6.0} {fixed:>7.0} {conn_part:>9.0} {dials:>12.0} {refresh:>8.0} {total:>10.0} {:>16.0}",
            total - dials
        );
    }
    Ok(())
}
