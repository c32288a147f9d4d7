//! A seeded, deterministic simulation of N replica cores (after iroh-gossip's `proto/sim.rs`):
//! a simulated network with latency, loss, duplication and reordering, partitions, crash-restart
//! (a crash loses what the store had not committed; a restart reloads what it had), and a
//! workload of client writes. After the faults end it checks three properties: every replica
//! converges to the same digest, no acknowledged write is lost, and every key's final value is the
//! highest-stamped write that became durable anywhere. The same seed replays the same run.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::core::delta::entry_size;
use crate::core::sign::Signer;
use crate::core::sync::{SyncRequest, SyncResponse};
use crate::core::{Entry, PeerFields, Table, TableConfig};

use super::{Input, Output, Replica, ReplicaConfig, RequestId, Seq, Timer, Types, Verdict, WriteOp};

/// The simulation's handles: replicas are numbered, writes and gossip messages too.
#[derive(Debug)]
pub struct Sim;

impl Types for Sim {
    type Peer = usize;
    /// The write's number in the workload.
    type Reply = u64;
    /// (message number, the replica it came from).
    type Gossip = (u64, usize);
    /// (the requesting replica, its request id).
    type Responder = (usize, RequestId);
}

/// The start of simulated wall time: stamps look like real ones.
const EPOCH_MS: u64 = 1_800_000_000_000;
/// An outstanding anti-entropy request fails after this long without an answer.
const REQUEST_TIMEOUT_MS: u64 = 5_000;
/// How often convergence is checked once the faults are over.
const CHECK_EVERY_MS: u64 = 50;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub replicas: usize,
    pub seed: u64,
    /// Links per replica (a random graph); all replicas when larger.
    pub degree: usize,
    /// Client writes during the fault phase, at random replicas and times.
    pub writes: usize,
    /// Distinct keys written: few keys, many conflicts.
    pub keys: usize,
    /// Length of the phase with writes and faults.
    pub fault_ms: u64,
    /// One-way latency, uniform in this range (so messages reorder).
    pub latency_ms: (u64, u64),
    /// Probability that a message is lost.
    pub loss: f64,
    /// Probability that a message is delivered twice.
    pub duplicate: f64,
    /// Cut the network in two now and then during the fault phase.
    pub partitions: bool,
    /// Crash and restart replicas now and then during the fault phase.
    pub crashes: bool,
    /// Fill replicas' disks now and then during the fault phase: their commits fail until the
    /// disk is freed (a while later, or when the faults end) and a probe commit succeeds.
    pub full_disks: bool,
    /// Each replica's clock is off by up to this much (either way).
    pub clock_skew_ms: u64,
    /// How long after the faults end the replicas have to converge.
    pub settle_limit_ms: u64,
    pub sync_interval_ms: u64,
}

impl SimConfig {
    /// A small faulty network: the shape `cargo test` runs for many seeds.
    pub fn faulty(replicas: usize, seed: u64) -> Self {
        SimConfig {
            replicas,
            seed,
            degree: 4,
            writes: 60,
            keys: 12,
            fault_ms: 8_000,
            latency_ms: (1, 40),
            loss: 0.05,
            duplicate: 0.02,
            partitions: true,
            crashes: true,
            full_disks: true,
            clock_skew_ms: 200,
            settle_limit_ms: 120_000,
            sync_interval_ms: 1_000,
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone, Default)]
pub struct SimReport {
    pub seed: u64,
    pub replicas: usize,
    /// Simulated time from the end of the faults (or the last write) to convergence.
    pub converged_ms: u64,
    /// The same, in mean one-way latencies.
    pub rounds: f64,
    pub messages: u64,
    pub bytes: u64,
    pub acked_writes: usize,
    pub crashes: usize,
    pub partitions: usize,
    pub lost_messages: u64,
    /// Times a replica's store started failing commits (a full disk met a commit).
    pub store_outages: usize,
    /// Replicas whose table, when their store was probed, was not what the store held (a failed
    /// commit not rolled back, or rolled back wrongly): must stay empty.
    pub half_applied: Vec<usize>,
    /// (banning replica, banned replica): must stay empty, every replica being honest.
    pub bans: Vec<(usize, usize)>,
}

impl SimReport {
    pub fn messages_per_replica(&self) -> f64 {
        self.messages as f64 / self.replicas.max(1) as f64
    }
}

/// A property that did not hold; the seed replays the run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    #[error("seed {seed}: not converged {limit_ms} ms after the faults ended ({distinct} digests)")]
    NotConverged { seed: u64, limit_ms: u64, distinct: usize },
    #[error("seed {seed}: acknowledged write of {key:?} at {stamp} lost on replica {replica}")]
    LostWrite { seed: u64, key: String, stamp: String, replica: usize },
    #[error("seed {seed}: honest replicas were banned (banning, banned): {bans:?}")]
    HonestPeerBanned { seed: u64, bans: Vec<(usize, usize)> },
    #[error("seed {seed}: replicas {replicas:?} held changes their failed commits had not stored")]
    HalfApplied { seed: u64, replicas: Vec<usize> },
    #[error("seed {seed}: key {key:?} ended at {got}, the highest durable write is {want}")]
    WrongWinner { seed: u64, key: String, got: String, want: String },
}

#[derive(Clone)]
enum Msg {
    Gossip { id: u64, data: Arc<Vec<u8>> },
    Request { id: RequestId, request: SyncRequest },
    Response { id: RequestId, response: SyncResponse, clock_us: i64 },
}

enum Event {
    Deliver {
        from: usize,
        to: usize,
        incarnation: u64,
        msg: Msg,
    },
    RequestTimeout {
        node: usize,
        incarnation: u64,
        id: RequestId,
    },
    Commit {
        node: usize,
        incarnation: u64,
    },
    /// The store reaches a probe queued behind its commits.
    Probe {
        node: usize,
        incarnation: u64,
    },
    DiskFull,
    DiskFreed {
        node: usize,
    },
    Timer {
        node: usize,
        incarnation: u64,
        timer: Timer,
    },
    Write {
        node: usize,
        write: u64,
    },
    Crash,
    Restart {
        node: usize,
    },
    Partition,
    Heal,
    FaultsEnd,
    Check,
}

struct Node {
    replica: Option<Replica<Sim>>,
    /// Bumped at every crash: events for an earlier incarnation are dropped.
    incarnation: u64,
    clock_offset_ms: i64,
    /// What the store made durable.
    store: HashMap<String, Entry>,
    /// Commits handed to the store, in order.
    in_flight: VecDeque<(Seq, Vec<Entry>, Vec<String>)>,
    /// When the last queued commit completes (commits complete in order).
    store_busy_until: u64,
    /// The disk is full: commits and probes fail.
    disk_full: bool,
    /// A commit failed: every later one fails too until a probe succeeds (as the real store).
    store_failed: bool,
    /// Gossip messages seen (gossipsub's seen cache).
    seen: HashSet<u64>,
    /// Outstanding anti-entropy requests.
    outstanding: HashSet<RequestId>,
}

/// The simulated world.
struct World {
    config: SimConfig,
    rng: StdRng,
    now: u64,
    order: u64,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: HashMap<u64, Event>,
    nodes: Vec<Node>,
    graph: Vec<BTreeSet<usize>>,
    /// Which side of the partition each replica is on (all 0 when healed).
    side: Vec<u8>,
    /// Links currently up, as (low, high).
    up: BTreeSet<(usize, usize)>,
    next_msg: u64,
    /// Every gossip message's bytes, for forwarding.
    gossip_data: HashMap<u64, Arc<Vec<u8>>>,
    /// Each write's entry, once the replica made it.
    writes: HashMap<u64, Entry>,
    acked: Vec<u64>,
    /// The highest-stamped entry of each key that some store made durable.
    durable_max: HashMap<String, Entry>,
    faults_over_at: Option<u64>,
    report: SimReport,
}

/// Runs one simulation; `Err` names the property that failed and the seed.
pub fn run(config: &SimConfig) -> Result<SimReport, SimError> {
    let mut world = World::new(config.clone());
    world.run()
}

impl World {
    fn new(config: SimConfig) -> World {
        let mut rng = StdRng::seed_from_u64(config.seed);
        let n = config.replicas;
        let mut graph = vec![BTreeSet::new(); n];
        for a in 0..n {
            // A ring keeps the graph connected; random chords make it small-world.
            let b = (a + 1) % n;
            if a != b {
                graph[a].insert(b);
                graph[b].insert(a);
            }
            while graph[a].len() < config.degree.min(n - 1) {
                let b = rng.gen_range(0..n);
                if b != a {
                    graph[a].insert(b);
                    graph[b].insert(a);
                }
            }
        }
        let nodes = (0..n)
            .map(|_| Node {
                replica: None,
                incarnation: 0,
                clock_offset_ms: rng.gen_range(-(config.clock_skew_ms as i64)..=config.clock_skew_ms as i64),
                store: HashMap::new(),
                in_flight: VecDeque::new(),
                store_busy_until: 0,
                disk_full: false,
                store_failed: false,
                seen: HashSet::new(),
                outstanding: HashSet::new(),
            })
            .collect();
        let report = SimReport { seed: config.seed, replicas: n, ..Default::default() };
        World {
            rng,
            now: EPOCH_MS,
            order: 0,
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            nodes,
            graph,
            side: vec![0; n],
            up: BTreeSet::new(),
            next_msg: 0,
            gossip_data: HashMap::new(),
            writes: HashMap::new(),
            acked: Vec::new(),
            durable_max: HashMap::new(),
            faults_over_at: None,
            report,
            config,
        }
    }

    fn at(&mut self, after_ms: u64, event: Event) {
        self.order += 1;
        self.queue.push(Reverse((self.now + after_ms, self.order)));
        self.events.insert(self.order, event);
    }

    fn run(&mut self) -> Result<SimReport, SimError> {
        for i in 0..self.config.replicas {
            self.boot(i);
        }
        self.relink();
        self.plan_workload();
        let limit = EPOCH_MS + self.config.fault_ms + self.config.settle_limit_ms;
        while let Some(Reverse((time, order))) = self.queue.pop() {
            if time > limit {
                break;
            }
            self.now = time;
            let event = self.events.remove(&order).expect("every queued event is stored");
            if let Some(done) = self.step(event) {
                return done;
            }
        }
        Err(SimError::NotConverged {
            seed: self.config.seed,
            limit_ms: self.config.settle_limit_ms,
            distinct: self.distinct_digests(),
        })
    }

    fn plan_workload(&mut self) {
        let c = self.config.clone();
        for write in 0..c.writes as u64 {
            let (t, node) = (self.rng.gen_range(0..c.fault_ms), self.rng.gen_range(0..c.replicas));
            self.at(t, Event::Write { node, write });
        }
        let faults = (c.fault_ms / 1_500).max(1);
        for _ in 0..faults {
            if c.crashes {
                let t = self.rng.gen_range(0..c.fault_ms);
                self.at(t, Event::Crash);
            }
            if c.partitions {
                let t = self.rng.gen_range(0..c.fault_ms);
                self.at(t, Event::Partition);
            }
            if c.full_disks {
                let t = self.rng.gen_range(0..c.fault_ms);
                self.at(t, Event::DiskFull);
            }
        }
        self.at(c.fault_ms, Event::FaultsEnd);
    }

    /// Starts (or restarts) replica `i` from what its store holds.
    fn boot(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let table = Table::load(signer(i), "sim", TableConfig::default(), node.store.values().cloned());
        let config = ReplicaConfig {
            own_key: format!("replica-{i}"),
            name: format!("replica-{i}"),
            ports: Default::default(),
            sync_interval_ms: self.config.sync_interval_ms,
            refresh_interval_ms: 24 * 3600 * 1000,
            gc_interval_ms: 24 * 3600 * 1000,
            max_in_flight: 64,
            peer_entry_rate: super::DEFAULT_PEER_ENTRY_RATE,
            probe_interval_ms: super::DEFAULT_PROBE_INTERVAL_MS,
            seed: self.config.seed ^ ((i as u64) << 32) ^ node.incarnation,
            // Replicas start together: none would find a peer to compare clocks with at once.
            clock_wait_ms: 0,
        };
        node.replica = Some(Replica::new(config, table));
        self.input(i, Input::Start);
    }

    fn step(&mut self, event: Event) -> Option<Result<SimReport, SimError>> {
        match event {
            Event::Deliver { from, to, incarnation, msg } => {
                if self.nodes[to].incarnation == incarnation && self.is_up(from, to) {
                    self.deliver(from, to, msg);
                }
            }
            Event::RequestTimeout { node, incarnation, id } => {
                if self.nodes[node].incarnation == incarnation && self.nodes[node].outstanding.remove(&id) {
                    self.input(node, Input::SyncFailed { id, error: "timeout".into() });
                }
            }
            Event::Commit { node, incarnation } => {
                if self.nodes[node].incarnation == incarnation {
                    self.commit(node);
                }
            }
            Event::Probe { node, incarnation } => {
                if self.nodes[node].incarnation == incarnation {
                    self.probe(node);
                }
            }
            Event::DiskFull => {
                let node = self.rng.gen_range(0..self.nodes.len());
                self.nodes[node].disk_full = true;
                let freed_after = self.rng.gen_range(500..5_000);
                self.at(freed_after, Event::DiskFreed { node });
            }
            Event::DiskFreed { node } => self.nodes[node].disk_full = false,
            Event::Timer { node, incarnation, timer } => {
                if self.nodes[node].incarnation == incarnation {
                    self.input(node, Input::TimerFired(timer));
                }
            }
            Event::Write { node, write } => self.client_write(node, write),
            Event::Crash => self.crash(),
            Event::Restart { node } => {
                self.boot(node);
                self.relink();
            }
            Event::Partition => self.partition(),
            Event::Heal => {
                self.side.iter_mut().for_each(|s| *s = 0);
                self.relink();
            }
            Event::FaultsEnd => self.end_faults(),
            Event::Check => return self.check(),
        }
        None
    }

    fn client_write(&mut self, node: usize, write: u64) {
        if self.nodes[node].replica.is_none() {
            return;
        }
        let key = format!("key-{}", self.rng.gen_range(0..self.config.keys));
        let fields = PeerFields {
            name: Some(format!("w{write}")),
            ip: Some("198.18.0.1".into()),
            ..Default::default()
        };
        let op = match self.rng.gen_range(0..20) {
            0..=9 => WriteOp::Add { key, fields },
            10..=16 => WriteOp::Update { key, fields },
            _ => WriteOp::Remove { key },
        };
        self.input(node, Input::Write { op, reply: write });
    }

    fn crash(&mut self) {
        let alive: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.nodes[i].replica.is_some()).collect();
        if alive.len() < 2 {
            return;
        }
        let i = alive[self.rng.gen_range(0..alive.len())];
        let node = &mut self.nodes[i];
        node.replica = None;
        node.incarnation += 1;
        node.in_flight.clear();
        node.outstanding.clear();
        node.seen.clear();
        node.store_busy_until = 0;
        node.store_failed = false;
        self.report.crashes += 1;
        self.relink();
        let down_for = self.rng.gen_range(300..3_000);
        self.at(down_for, Event::Restart { node: i });
    }

    fn partition(&mut self) {
        for s in self.side.iter_mut() {
            *s = self.rng.gen_range(0..2);
        }
        self.report.partitions += 1;
        self.relink();
        let heal_after = self.rng.gen_range(500..4_000);
        self.at(heal_after, Event::Heal);
    }

    fn end_faults(&mut self) {
        // Pending restarts and heals still fire; make sure everything is whole now.
        for i in 0..self.nodes.len() {
            if self.nodes[i].replica.is_none() {
                self.boot(i);
            }
        }
        self.side.iter_mut().for_each(|s| *s = 0);
        self.nodes.iter_mut().for_each(|n| n.disk_full = false);
        self.relink();
        self.faults_over_at = Some(self.now);
        self.at(CHECK_EVERY_MS, Event::Check);
    }

    fn is_up(&self, a: usize, b: usize) -> bool {
        self.up.contains(&(a.min(b), a.max(b)))
    }

    /// Brings the set of live links in line with crashes and partitions, telling both ends.
    fn relink(&mut self) {
        let mut want = BTreeSet::new();
        for (a, neighbours) in self.graph.iter().enumerate() {
            for &b in neighbours.iter().filter(|&&b| a < b) {
                let alive = self.nodes[a].replica.is_some() && self.nodes[b].replica.is_some();
                if alive && self.side[a] == self.side[b] {
                    want.insert((a, b));
                }
            }
        }
        let gone: Vec<_> = self.up.difference(&want).copied().collect();
        let new: Vec<_> = want.difference(&self.up).copied().collect();
        self.up = want;
        for (a, b) in gone {
            self.input(a, Input::PeerDisconnected(b));
            self.input(b, Input::PeerDisconnected(a));
        }
        for (a, b) in new {
            self.input(a, Input::PeerConnected(b));
            self.input(b, Input::PeerConnected(a));
        }
    }

    fn send(&mut self, from: usize, to: usize, msg: Msg) {
        if !self.is_up(from, to) {
            self.report.lost_messages += 1;
            return;
        }
        self.report.messages += 1;
        self.report.bytes += msg_bytes(&msg) as u64;
        if self.rng.gen_bool(self.config.loss) {
            self.report.lost_messages += 1;
            return;
        }
        let copies = if self.rng.gen_bool(self.config.duplicate) { 2 } else { 1 };
        let incarnation = self.nodes[to].incarnation;
        let (lo, hi) = self.config.latency_ms;
        for _ in 0..copies {
            let latency = self.rng.gen_range(lo..=hi);
            self.at(latency, Event::Deliver { from, to, incarnation, msg: msg.clone() });
        }
    }

    fn deliver(&mut self, from: usize, to: usize, msg: Msg) {
        match msg {
            Msg::Gossip { id, data } => {
                if self.nodes[to].seen.insert(id) {
                    self.input(to, Input::Gossip { from, id: (id, from), data: data.to_vec() });
                }
            }
            Msg::Request { id, request } => {
                self.input(to, Input::SyncRequest { from, request, responder: (from, id) })
            }
            Msg::Response { id, response, clock_us } => {
                // A duplicate, or an answer after the timeout, goes in too: the replica must
                // shrug it off.
                self.nodes[to].outstanding.remove(&id);
                self.input(to, Input::SyncResponse { from, id, response, clock_us });
            }
        }
    }

    fn now_us(&self, i: usize) -> i64 {
        (self.now as i64 + self.nodes[i].clock_offset_ms) * 1000
    }

    /// Feeds one input to replica `i` and executes its outputs.
    fn input(&mut self, i: usize, input: Input<Sim>) {
        let now_us = self.now_us(i);
        // A write's one Persist carries its entry: kept to check the write is never lost.
        let write_id = if let Input::Write { reply, .. } = &input { Some(*reply) } else { None };
        let Some(replica) = self.nodes[i].replica.as_mut() else { return };
        let outputs: Vec<Output<Sim>> = replica.handle(input, now_us).collect();
        for output in outputs {
            if let (Some(w), Output::Persist { puts, .. }) = (write_id, &output) {
                if let Some(e) = puts.first() {
                    self.writes.insert(w, e.clone());
                }
            }
            self.execute(i, output);
        }
    }

    fn execute(&mut self, i: usize, output: Output<Sim>) {
        match output {
            Output::Persist { seq, puts, deletes, .. } => {
                let node = &mut self.nodes[i];
                let done_at = node.store_busy_until.max(self.now) + 1 + (self.order % 3);
                node.store_busy_until = done_at;
                node.in_flight.push_back((seq, puts, deletes));
                let incarnation = node.incarnation;
                let after = done_at - self.now;
                self.at(after, Event::Commit { node: i, incarnation });
            }
            Output::Applied { .. } => {}
            Output::Reply { to, result } => {
                if result == Ok(true) {
                    self.acked.push(to);
                }
            }
            Output::Publish(data) => {
                self.next_msg += 1;
                let id = self.next_msg;
                let data = Arc::new(data);
                self.nodes[i].seen.insert(id);
                self.gossip_data.insert(id, data.clone());
                self.flood(i, None, id, data);
            }
            Output::GossipVerdict { id: (id, from), verdict } => {
                if verdict == Verdict::Accept {
                    if let Some(data) = self.gossip_data.get(&id).cloned() {
                        self.flood(i, Some(from), id, data);
                    }
                }
            }
            Output::SendSync { to, id, request } => {
                self.nodes[i].outstanding.insert(id);
                let incarnation = self.nodes[i].incarnation;
                self.at(REQUEST_TIMEOUT_MS, Event::RequestTimeout { node: i, incarnation, id });
                self.send(i, to, Msg::Request { id, request });
            }
            Output::RespondSync { to: (requester, id), response, clock_us } => {
                self.send(i, requester, Msg::Response { id, response, clock_us })
            }
            // Every simulated replica is honest: a ban means the protocol blamed one wrongly.
            Output::Ban(peer) => self.report.bans.push((i, peer)),
            Output::Unban(_) => {}
            Output::Schedule { after_ms, timer } => {
                let incarnation = self.nodes[i].incarnation;
                self.at(after_ms, Event::Timer { node: i, incarnation, timer });
            }
            Output::Probe => {
                // Behind the queued commits, like the real store's.
                let node = &mut self.nodes[i];
                let done_at = node.store_busy_until.max(self.now) + 1;
                node.store_busy_until = done_at;
                let incarnation = node.incarnation;
                self.at(done_at - self.now, Event::Probe { node: i, incarnation });
            }
        }
    }
}

impl World {
    /// Sends a gossip message to every linked neighbour but the one it came from.
    fn flood(&mut self, i: usize, from: Option<usize>, id: u64, data: Arc<Vec<u8>>) {
        let neighbours: Vec<usize> = self.graph[i].iter().copied().filter(|&b| Some(b) != from).collect();
        for b in neighbours {
            if self.is_up(i, b) {
                self.send(i, b, Msg::Gossip { id, data: data.clone() });
            }
        }
    }

    /// The store of replica `i` finishes its oldest commit.
    fn commit(&mut self, i: usize) {
        let Some((seq, puts, deletes)) = self.nodes[i].in_flight.pop_front() else { return };
        let node = &mut self.nodes[i];
        if node.disk_full || node.store_failed {
            self.report.store_outages += usize::from(!node.store_failed);
            node.store_failed = true;
            self.input(i, Input::CommitFailed { seq, error: "No space left on device".into() });
            return;
        }
        for k in deletes {
            node.store.remove(&k);
        }
        for e in puts {
            let newer = self.durable_max.get(&e.key).is_none_or(|m| m.stamp < e.stamp);
            if newer {
                self.durable_max.insert(e.key.clone(), e.clone());
            }
            if node.store.get(&e.key).is_none_or(|old| old.stamp < e.stamp) {
                node.store.insert(e.key.clone(), e);
            }
        }
        self.input(i, Input::Committed(seq));
    }

    /// The store of replica `i` tries a probe commit.
    fn probe(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        // Read-only, every failed commit rolled back: the table must be what the store holds.
        if let Some(r) = node.replica.as_ref() {
            let stored = Table::load(signer(i), "sim", TableConfig::default(), node.store.values().cloned());
            if r.read_only().is_some() && r.pending_commits() == 0 && r.table().root() != stored.root() {
                self.report.half_applied.push(i);
            }
        }
        let node = &mut self.nodes[i];
        if node.disk_full {
            self.input(i, Input::ProbeFailed { error: "No space left on device".into() });
        } else {
            node.store_failed = false;
            self.input(i, Input::ProbeOk);
        }
    }

    fn roots(&self) -> Vec<u128> {
        self.nodes.iter().filter_map(|n| n.replica.as_ref().map(|r| r.table().root())).collect()
    }

    fn distinct_digests(&self) -> usize {
        self.roots().into_iter().collect::<BTreeSet<_>>().len()
    }

    /// After the faults: converged (same digest everywhere, nothing in flight)? Then check the
    /// properties and end the run.
    fn check(&mut self) -> Option<Result<SimReport, SimError>> {
        let quiet = self.nodes.iter().all(|n| {
            let idle = |r: &Replica<Sim>| r.pending_commits() == 0 && r.read_only().is_none();
            n.in_flight.is_empty() && n.replica.as_ref().is_some_and(idle)
        });
        if !quiet || self.distinct_digests() != 1 {
            self.at(CHECK_EVERY_MS, Event::Check);
            return None;
        }
        let over = self.faults_over_at.expect("checks start when the faults end");
        self.report.converged_ms = self.now - over;
        let (lo, hi) = self.config.latency_ms;
        self.report.rounds = self.report.converged_ms as f64 / ((lo + hi) as f64 / 2.0).max(1.0);
        self.report.acked_writes = self.acked.len();
        Some(self.verify().map(|()| self.report.clone()))
    }

    fn verify(&self) -> Result<(), SimError> {
        let seed = self.config.seed;
        if !self.report.bans.is_empty() {
            return Err(SimError::HonestPeerBanned { seed, bans: self.report.bans.clone() });
        }
        if !self.report.half_applied.is_empty() {
            return Err(SimError::HalfApplied { seed, replicas: self.report.half_applied.clone() });
        }
        for (i, node) in self.nodes.iter().enumerate() {
            let table = node.replica.as_ref().expect("every replica runs at the end").table();
            for w in &self.acked {
                let e = &self.writes[w];
                if table.entry(&e.key).is_none_or(|got| got.stamp < e.stamp) {
                    let stamp = format!("{:?}", e.stamp);
                    return Err(SimError::LostWrite { seed, key: e.key.clone(), stamp, replica: i });
                }
            }
            for (key, want) in &self.durable_max {
                let got = table.entry(key).map(|e| e.stamp);
                if got != Some(want.stamp) {
                    let (got, want) = (format!("{got:?}"), format!("{:?}", want.stamp));
                    return Err(SimError::WrongWinner { seed, key: key.clone(), got, want });
                }
            }
        }
        Ok(())
    }
}

/// Replica `i`'s signing key, derived from its number.
fn signer(i: usize) -> Signer {
    let mut secret = [0u8; 32];
    secret[..8].copy_from_slice(&(i as u64).to_be_bytes());
    Signer::from_secret(secret)
}

/// Roughly what a message weighs on the wire.
fn msg_bytes(msg: &Msg) -> usize {
    match msg {
        Msg::Gossip { data, .. } => data.len(),
        Msg::Request { request, .. } => match request {
            SyncRequest::Root { .. } => 16,
            SyncRequest::Buckets { hashes } => hashes.len(),
            SyncRequest::Pull { buckets } => 2 * buckets.len(),
            SyncRequest::Push { entries } => entries.iter().map(entry_size).sum(),
        },
        Msg::Response { response, .. } => match response {
            SyncResponse::Root { .. } | SyncResponse::Ack { .. } => 16,
            SyncResponse::Diff { buckets, hashes } => 2 * buckets.len() + hashes.len(),
            SyncResponse::Entries { entries, .. } => entries.iter().map(entry_size).sum(),
            SyncResponse::Refused { reason } => reason.len(),
        },
    }
}
