//! The scenarios, each returning its figures. Propagation is timed with `wait_for_key` (the node
//! answers the moment the key is applied), convergence by polling digests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use udht::cluster::Cluster;
use udht::core::PeerFields;
use udht::NodeHandle;

use crate::traffic;

mod idle;
pub use idle::IdleOptions;

/// Progress lines at most this often, so long runs show they are alive.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// Convergence timeline sampling period.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// Concurrent writes while loading the join scenario's records.
const LOAD_CONCURRENCY: usize = 64;

/// Figures of one scenario.
pub struct Outcome {
    pub name: String,
    pub converged: bool,
    pub figures: Value,
    /// Spread: every write's time to reach all nodes, in ms.
    pub latencies_ms: Vec<f64>,
    /// (seconds since the scenario's convergence phase began, fraction of nodes on the majority digest)
    pub timeline: Vec<(f64, f64)>,
}

impl Outcome {
    pub fn to_json(&self) -> Value {
        let mut v = self.figures.clone();
        v["converged"] = json!(self.converged);
        if !self.timeline.is_empty() {
            v["timeline"] = json!(self.timeline);
        }
        v
    }
}

fn peer(i: usize) -> PeerFields {
    PeerFields {
        name: Some(format!("peer number {i}")),
        ip: Some(format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255)),
        port: Some("8001".into()),
        ..Default::default()
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Traffic counters at the start of a scenario.
struct Traffic {
    wire: Option<traffic::Counters>,
    messages: u64,
    at: Instant,
}

pub struct Sim<'a> {
    cluster: &'a mut Cluster,
    rng: StdRng,
    timeout: Duration,
    next_key: usize,
    /// Idle bytes per node per second, once the idle scenario has measured them.
    idle_rate: Option<f64>,
}

impl<'a> Sim<'a> {
    pub fn new(cluster: &'a mut Cluster, seed: u64, timeout: Duration) -> Self {
        Sim { cluster, rng: StdRng::seed_from_u64(seed), timeout, next_key: 0, idle_rate: None }
    }

    fn random_running(&mut self) -> usize {
        let running = self.cluster.running();
        running[self.rng.gen_range(0..running.len())]
    }

    async fn messages_sent(&self) -> u64 {
        let mut total = 0;
        for i in self.cluster.running() {
            if let Ok(s) = self.cluster.status(i) {
                let n = s.net_stats;
                total += n.gossip_published + n.sync_requests_sent + n.sync_responses_sent;
            }
        }
        total
    }

    async fn traffic_start(&self) -> Traffic {
        Traffic { wire: traffic::loopback(), messages: self.messages_sent().await, at: Instant::now() }
    }

    /// Bytes and messages sent per node per second since `t` (bytes: see [`traffic`]).
    async fn traffic_figures(&self, t: Traffic) -> Value {
        let secs = t.at.elapsed().as_secs_f64().max(1e-9);
        let n = self.cluster.running().len();
        let (bytes, bytes_per_node) = match (t.wire, traffic::loopback()) {
            (Some(a), Some(b)) => {
                let rate = traffic::Rate::between(a, b, n);
                (json!(rate.bytes_per_node_per_sec()), json!(rate.bytes_per_node))
            }
            _ => (Value::Null, Value::Null),
        };
        let messages = self.messages_sent().await.saturating_sub(t.messages) as f64 / n.max(1) as f64 / secs;
        json!({
            "bytes_per_node_per_sec": bytes,
            "bytes_per_node": bytes_per_node,
            "messages_per_node_per_sec": messages,
            "duration_secs": secs,
        })
    }

    /// Writes `key` at node `writer` and waits until every running node has applied it: the
    /// time that took, or `None` if some node did not within the timeout.
    async fn write_and_wait(
        &mut self,
        writer: usize,
        key: String,
        fields: PeerFields,
    ) -> anyhow::Result<Option<Duration>> {
        let handles: Vec<NodeHandle> = self
            .cluster
            .running()
            .iter()
            .map(|&i| self.cluster.handle(i).cloned())
            .collect::<Result<_, _>>()?;
        // Register the waiters before the write, so no arrival is missed.
        let waits: Vec<_> = handles
            .iter()
            .map(|h| {
                let (h, key) = (h.clone(), key.clone());
                tokio::spawn(async move { h.wait_for_key(key).await })
            })
            .collect();
        tokio::task::yield_now().await;
        let t0 = Instant::now();
        self.cluster.handle(writer)?.add(key, fields).await?;
        let all = tokio::time::timeout(self.timeout, futures_join(waits)).await;
        Ok(all.ok().map(|()| t0.elapsed()))
    }

    /// Samples the fraction of running nodes on the majority digest until all agree or timeout.
    async fn converge_with_timeline(&self, start: Instant) -> (bool, f64, Vec<(f64, f64)>) {
        let mut timeline = Vec::new();
        loop {
            let running = self.cluster.running();
            let digests = self.cluster.digests(&running).await.unwrap_or_default();
            let mut counts: HashMap<&String, usize> = HashMap::new();
            for d in &digests {
                *counts.entry(d).or_default() += 1;
            }
            let majority = counts.values().copied().max().unwrap_or(0);
            let t = start.elapsed().as_secs_f64();
            timeline.push((t, majority as f64 / running.len().max(1) as f64));
            if majority == running.len() {
                return (true, t, timeline);
            }
            if start.elapsed() > self.timeout {
                return (false, t, timeline);
            }
            tokio::time::sleep(SAMPLE_EVERY).await;
        }
    }

    /// W writes at random nodes, one after another; for each, the time until every node has it.
    pub async fn spread(&mut self, writes: usize) -> anyhow::Result<Outcome> {
        let traffic = self.traffic_start().await;
        let mut latencies = Vec::with_capacity(writes);
        let mut missed = 0;
        let mut last_progress = Instant::now();
        for w in 0..writes {
            let writer = self.random_running();
            match self.write_and_wait(writer, format!("spread-{w}"), peer(w)).await? {
                Some(t) => latencies.push(t.as_secs_f64() * 1000.0),
                None => missed += 1,
            }
            if last_progress.elapsed() > PROGRESS_EVERY {
                eprintln!("  spread: {}/{writes} writes", w + 1);
                last_progress = Instant::now();
            }
        }
        let mut sorted = latencies.clone();
        sorted.sort_by(f64::total_cmp);
        let mut figures = json!({
            "writes": writes,
            "missed": missed,
            "p50_ms": percentile(&sorted, 50.0),
            "p90_ms": percentile(&sorted, 90.0),
            "p99_ms": percentile(&sorted, 99.0),
            "max_ms": sorted.last().copied().unwrap_or(f64::NAN),
        });
        merge(&mut figures, self.traffic_figures(traffic).await);
        // Writes back to back: gossip of several writes shares messages, so this is the cheap
        // end of a write's cost (the idle scenario times isolated writes). Net of the idle rate
        // when the idle scenario ran before.
        let per_write = |bytes: f64| bytes / writes.max(1) as f64;
        if let Some(bytes) = figures["bytes_per_node"].as_f64() {
            figures["bytes_per_write_per_node"] = json!(per_write(bytes));
            if let (Some(idle), Some(secs)) = (self.idle_rate, figures["duration_secs"].as_f64()) {
                figures["bytes_per_write_per_node_net_of_idle"] = json!(per_write(bytes - idle * secs));
            }
        }
        let converged = missed == 0 && self.cluster.wait_converged(self.timeout).await.is_ok();
        println!(
            "spread    N={} writes={writes}: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms, \
             {:.0} B/write/node ({:.0} net of idle), converged={converged}",
            self.cluster.running().len(),
            figures["p50_ms"].as_f64().unwrap_or(f64::NAN),
            figures["p90_ms"].as_f64().unwrap_or(f64::NAN),
            figures["p99_ms"].as_f64().unwrap_or(f64::NAN),
            figures["max_ms"].as_f64().unwrap_or(f64::NAN),
            figures["bytes_per_write_per_node"].as_f64().unwrap_or(f64::NAN),
            figures["bytes_per_write_per_node_net_of_idle"].as_f64().unwrap_or(f64::NAN),
        );
        Ok(Outcome {
            name: "spread".into(),
            converged,
            figures,
            latencies_ms: latencies,
            timeline: Vec::new(),
        })
    }

    /// Loads R records into the network, then starts a fresh node: time until it has them all.
    pub async fn join(&mut self, records: usize) -> anyhow::Result<Outcome> {
        eprintln!("  join: loading {records} records ...");
        let load_start = Instant::now();
        let mut last_progress = Instant::now();
        let mut done = 0;
        while done < records {
            let batch = LOAD_CONCURRENCY.min(records - done);
            let mut tasks = Vec::with_capacity(batch);
            for _ in 0..batch {
                let pick = self.random_running();
                let h = self.cluster.handle(pick)?.clone();
                let i = self.next_key;
                self.next_key += 1;
                tasks.push(tokio::spawn(async move { h.add(format!("join-{i}"), peer(i)).await }));
            }
            for t in tasks {
                t.await??;
            }
            done += batch;
            if last_progress.elapsed() > PROGRESS_EVERY {
                eprintln!("  join: loaded {done}/{records}");
                last_progress = Instant::now();
            }
        }
        self.cluster.wait_converged(self.timeout).await?;
        eprintln!(
            "  join: loaded and converged in {:.1}s; a new node joins",
            load_start.elapsed().as_secs_f64()
        );
        let traffic = self.traffic_start().await;
        let start = Instant::now();
        let joiner = self.cluster.add_node().await?;
        let (converged, secs, timeline) = self.converge_with_timeline(start).await;
        let held = self.cluster.status(joiner)?.table_size;
        let mut figures = json!({"records": records, "joiner_table_size": held, "secs": secs});
        merge(&mut figures, self.traffic_figures(traffic).await);
        println!("join      N={} records={records}: new node has all {held} records in {secs:.2}s, converged={converged}", self.cluster.running().len() - 1);
        Ok(Outcome { name: "join".into(), converged, figures, latencies_ms: Vec::new(), timeline })
    }

    /// Splits the cluster in halves, writes on both sides, heals: time until all digests agree.
    pub async fn partition(&mut self, writes_per_side: usize) -> anyhow::Result<Outcome> {
        let running = self.cluster.running();
        let (left, right) = running.split_at(running.len() / 2);
        let (left, right) = (left.to_vec(), right.to_vec());
        self.cluster.partition(&[&left, &right]).await?;
        for w in 0..writes_per_side {
            let l = left[self.rng.gen_range(0..left.len())];
            let r = right[self.rng.gen_range(0..right.len())];
            self.cluster.handle(l)?.add(format!("left-{w}"), peer(w)).await?;
            self.cluster.handle(r)?.add(format!("right-{w}"), peer(w)).await?;
        }
        let diverged = self.cluster.digests(&[left[0], right[0]]).await?;
        let traffic = self.traffic_start().await;
        let start = Instant::now();
        self.cluster.heal(&[&left, &right]).await?;
        let (converged, secs, timeline) = self.converge_with_timeline(start).await;
        let mut figures = json!({"writes_per_side": writes_per_side, "sides_diverged": diverged[0] != diverged[1], "secs": secs});
        merge(&mut figures, self.traffic_figures(traffic).await);
        println!("partition N={} writes/side={writes_per_side}: healed and converged in {secs:.2}s, converged={converged}", running.len());
        Ok(Outcome { name: "partition".into(), converged, figures, latencies_ms: Vec::new(), timeline })
    }

    /// Stops and restarts random nodes (never the seed) while a writer keeps writing at random
    /// running nodes; at the end every acknowledged write must be on every node.
    pub async fn churn(&mut self, rounds: usize, writes: usize) -> anyhow::Result<Outcome> {
        let n = self.cluster.len();
        let handles: Arc<Mutex<Vec<Option<NodeHandle>>>> =
            Arc::new(Mutex::new((0..n).map(|i| self.cluster.handle(i).ok().cloned()).collect()));
        let acked = Arc::new(Mutex::new(Vec::<String>::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (handles, acked, stop) = (handles.clone(), acked.clone(), stop.clone());
            let seed = self.rng.gen::<u64>();
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(seed);
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) || i < writes {
                    let pick = {
                        let hs = handles.lock().unwrap();
                        let live: Vec<&NodeHandle> = hs.iter().flatten().collect();
                        live[rng.gen_range(0..live.len())].clone()
                    };
                    let key = format!("churn-{i}");
                    if let Ok(true) = pick.add(key.clone(), peer(i)).await {
                        acked.lock().unwrap().push(key);
                    }
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        };
        let traffic = self.traffic_start().await;
        for round in 0..rounds {
            let victim = 1 + self.rng.gen_range(0..n - 1);
            handles.lock().unwrap()[victim] = None;
            self.cluster.stop_node(victim).await?;
            tokio::time::sleep(Duration::from_millis(300)).await;
            self.cluster.start_node(victim).await?;
            handles.lock().unwrap()[victim] = Some(self.cluster.handle(victim)?.clone());
            tokio::time::sleep(Duration::from_millis(300)).await;
            eprintln!("  churn: round {}/{rounds} (restarted node {victim})", round + 1);
        }
        stop.store(true, Ordering::Relaxed);
        writer.await?;
        let start = Instant::now();
        let (converged, secs, timeline) = self.converge_with_timeline(start).await;
        let acked = acked.lock().unwrap().clone();
        let mut lost = 0;
        for key in &acked {
            for i in self.cluster.running() {
                if self.cluster.handle(i)?.get(key).is_none() {
                    lost += 1;
                    break;
                }
            }
        }
        let mut figures = json!({"rounds": rounds, "acked": acked.len(), "lost": lost, "secs": secs});
        merge(&mut figures, self.traffic_figures(traffic).await);
        println!("churn     N={n} rounds={rounds}: {} acked writes, {lost} lost, converged in {secs:.2}s after the last restart, converged={}", acked.len(), converged && lost == 0);
        Ok(Outcome {
            name: "churn".into(),
            converged: converged && lost == 0,
            figures,
            latencies_ms: Vec::new(),
            timeline,
        })
    }
}

fn merge(into: &mut Value, from: Value) {
    if let (Some(a), Value::Object(b)) = (into.as_object_mut(), from) {
        a.extend(b);
    }
}

/// Waits for every task (each a node's `wait_for_key`).
async fn futures_join(tasks: Vec<tokio::task::JoinHandle<Result<(), udht::node::NodeError>>>) {
    for t in tasks {
        let _ = t.await;
    }
}
