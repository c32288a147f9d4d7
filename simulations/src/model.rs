//! `--model`: the replica protocol at a scale the in-process cluster cannot reach. Runs the
//! seeded, deterministic simulation of `udht::core::replica::sim` (no sockets, no runtime,
//! simulated time) over many replicas, once on a clean network and once through partitions and
//! crash-restarts, and prints what convergence cost. A failed property names the seed that
//! replays it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{json, Value};
use udht::core::replica::sim::{run as simulate, SimConfig, SimError, SimReport};

/// Client writes over the write (and fault) phase.
const WRITES: usize = 300;
/// Distinct keys they touch: enough conflicts to matter, enough keys to spread.
const KEYS: usize = 100;
/// Length of the write phase; faults come every 1.5 s of it, so ten crashes and ten partitions.
const FAULT_MS: u64 = 15_000;
/// Message loss of the two cases unless `--loss` says otherwise.
const CLEAN_LOSS: f64 = 0.01;
const FAULTY_LOSS: f64 = 0.05;

/// What `--model` was asked for.
#[derive(Debug, Clone)]
pub struct Options {
    pub replicas: usize,
    pub seed: u64,
    /// Links per replica.
    pub degree: usize,
    /// Overrides both cases' message loss.
    pub loss: Option<f64>,
    /// Where `model.json` goes.
    pub out: PathBuf,
}

/// One simulated case and how it ended.
struct Case {
    name: &'static str,
    config: SimConfig,
    result: Result<SimReport, SimError>,
    wall: Duration,
}

impl Case {
    fn run(name: &'static str, config: SimConfig) -> Case {
        eprintln!(
            "model {name}: {} replicas, degree {}, loss {}, seed {} ...",
            config.replicas, config.degree, config.loss, config.seed
        );
        let started = Instant::now();
        let result = simulate(&config);
        Case { name, config, result, wall: started.elapsed() }
    }

    fn print(&self) {
        let wall = self.wall.as_secs_f64();
        match &self.result {
            Ok(r) => println!(
                "model {:<6} replicas {} seed {}: converged {} ms ({:.1} rounds) after the faults; \
                 {:.0} msgs and {:.0} bytes per replica; {} acked writes; {} crashes, {} partitions; \
                 wall {wall:.2} s",
                self.name,
                r.replicas,
                r.seed,
                r.converged_ms,
                r.rounds,
                r.messages_per_replica(),
                r.bytes as f64 / r.replicas.max(1) as f64,
                r.acked_writes,
                r.crashes,
                r.partitions,
            ),
            Err(e) => println!("model {:<6} FAILED: {e}; wall {wall:.2} s", self.name),
        }
    }

    fn to_json(&self) -> Value {
        let c = &self.config;
        let mut v = json!({
            "config": {
                "replicas": c.replicas,
                "seed": c.seed,
                "degree": c.degree,
                "writes": c.writes,
                "keys": c.keys,
                "fault_ms": c.fault_ms,
                "latency_ms": [c.latency_ms.0, c.latency_ms.1],
                "loss": c.loss,
                "duplicate": c.duplicate,
                "partitions": c.partitions,
                "crashes": c.crashes,
                "clock_skew_ms": c.clock_skew_ms,
                "settle_limit_ms": c.settle_limit_ms,
                "sync_interval_ms": c.sync_interval_ms,
            },
            "wall_secs": self.wall.as_secs_f64(),
        });
        match &self.result {
            Ok(r) => {
                v["converged"] = json!(true);
                v["replicas"] = json!(r.replicas);
                v["seed"] = json!(r.seed);
                v["converged_ms"] = json!(r.converged_ms);
                v["rounds"] = json!(r.rounds);
                v["messages"] = json!(r.messages);
                v["bytes"] = json!(r.bytes);
                v["messages_per_replica"] = json!(r.messages_per_replica());
                v["bytes_per_replica"] = json!(r.bytes as f64 / r.replicas.max(1) as f64);
                v["lost_messages"] = json!(r.lost_messages);
                v["acked_writes"] = json!(r.acked_writes);
                v["crashes"] = json!(r.crashes);
                v["partitions"] = json!(r.partitions);
            }
            Err(e) => {
                v["converged"] = json!(false);
                v["error"] = json!(e.to_string());
            }
        }
        v
    }
}

/// A large network's base: the test suite's faulty shape, wider and with more writes.
fn base(o: &Options) -> SimConfig {
    SimConfig {
        degree: o.degree,
        writes: WRITES,
        keys: KEYS,
        fault_ms: FAULT_MS,
        ..SimConfig::faulty(o.replicas, o.seed)
    }
}

/// Runs the clean and the faulty case, prints their figures, writes `model.json` to `o.out`, and
/// fails if either broke a property.
pub fn run(o: &Options) -> anyhow::Result<()> {
    anyhow::ensure!(o.replicas >= 2, "--replicas must be at least 2");
    anyhow::ensure!(o.degree >= 1, "--degree must be at least 1");
    if let Some(loss) = o.loss {
        anyhow::ensure!((0.0..1.0).contains(&loss), "--loss must be in [0, 1)");
    }
    let clean =
        SimConfig { partitions: false, crashes: false, loss: o.loss.unwrap_or(CLEAN_LOSS), ..base(o) };
    let faulty =
        SimConfig { partitions: true, crashes: true, loss: o.loss.unwrap_or(FAULTY_LOSS), ..base(o) };
    let cases = [Case::run("clean", clean), Case::run("faulty", faulty)];
    for case in &cases {
        case.print();
    }
    write_json(&o.out, &cases)?;
    let failures: Vec<String> =
        cases.iter().filter_map(|c| c.result.as_ref().err().map(|e| format!("{}: {e}", c.name))).collect();
    anyhow::ensure!(failures.is_empty(), "the model broke a property: {}", failures.join("; "));
    Ok(())
}

fn write_json(out: &Path, cases: &[Case]) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let report = json!({
        "all_converged": cases.iter().all(|c| c.result.is_ok()),
        "cases": cases.iter().map(|c| (c.name.to_string(), c.to_json())).collect::<serde_json::Map<_, _>>(),
    });
    let path = out.join("model.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("writing {}", path.display()))?;
    eprintln!("model report: {}", path.display());
    Ok(())
}
