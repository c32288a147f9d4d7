//! The liveness state machine in a deterministic simulated network: nodes are numbers, messages
//! take one step, a down node answers nothing (its messages fail as a refused dial would).
//! Nodes are connected along `links` (all pairs, or a sparse ring as under a connection
//! manager); a killed node's connections close, as a killed process's sockets do.

use std::collections::{HashMap, HashSet, VecDeque};

use super::*;

/// A reply handle: the requester and its message id.
type Reply = (u32, u64);

const STEP_MS: u64 = 100;

enum Msg {
    Request { to: u32, from: u32, id: u64, request: ProbeRequest<u32> },
    Response { to: u32, from: u32, id: u64, ack: ProbeAck<u32> },
    Failed { to: u32, id: u64 },
}

struct Sim {
    nodes: Vec<Liveness<u32, Reply>>,
    down: HashSet<u32>,
    /// Links that drop everything (from, to), both ways when cut with `cut`.
    cut: HashSet<(u32, u32)>,
    /// Open connections (from, to), both directions listed.
    links: HashSet<(u32, u32)>,
    /// Messages sent to a node the sender had no connection to (each would dial).
    dials: u64,
    queue: VecDeque<Msg>,
    now: u64,
    /// Every `Changed` seen, by observer: (time, observer, peer, state).
    changes: Vec<(u64, u32, u32, State)>,
    /// Indirect probe requests sent: (time, sender, target).
    ping_reqs: Vec<(u64, u32, u32)>,
    /// Most updates seen on one message.
    max_piggyback: usize,
    messages: u64,
    /// Nodes that read their messages this many ms late (a starved event loop), and those
    /// messages until they are due.
    slow: HashMap<u32, u64>,
    late: Vec<(u64, Msg)>,
}

impl Sim {
    /// Every node connected to every other.
    fn new(n: u32, config: LivenessConfig) -> Sim {
        Sim::with_links(n, config, |_, _| true)
    }

    /// Each node connected to its `degree` nearest on a ring: a connected graph, sparse as a
    /// bounded connection count makes it.
    fn ring(n: u32, degree: u32, config: LivenessConfig) -> Sim {
        Sim::with_links(n, config, move |i, j| {
            let d = (i + n - j) % n;
            d.min(n - d) <= degree / 2
        })
    }

    fn with_links(n: u32, config: LivenessConfig, linked: impl Fn(u32, u32) -> bool) -> Sim {
        let mut nodes = Vec::new();
        let mut links = HashSet::new();
        for i in 0..n {
            let mut node = Liveness::new(i, LivenessConfig { seed: u64::from(i), ..config.clone() });
            for j in 0..n {
                node.handle(Input::MemberAdded(j), 0);
                if i != j && linked(i, j) {
                    node.handle(Input::Connected(j), 0);
                    links.insert((i, j));
                }
            }
            nodes.push(node);
        }
        Sim {
            nodes,
            links,
            dials: 0,
            down: HashSet::new(),
            cut: HashSet::new(),
            queue: VecDeque::new(),
            now: 0,
            changes: Vec::new(),
            ping_reqs: Vec::new(),
            max_piggyback: 0,
            messages: 0,
            slow: HashMap::new(),
            late: Vec::new(),
        }
    }

    /// Queues a message for the next step, or later if its recipient is slow.
    fn post(&mut self, m: Msg) {
        let to = match &m {
            Msg::Request { to, .. } | Msg::Response { to, .. } | Msg::Failed { to, .. } => *to,
        };
        match self.slow.get(&to) {
            Some(delay) => self.late.push((self.now + delay, m)),
            None => self.queue.push_back(m),
        }
    }

    fn input(&mut self, node: u32, input: Input<u32, Reply>) {
        if self.down.contains(&node) {
            return;
        }
        let outputs = self.nodes[node as usize].handle(input, self.now);
        for o in outputs {
            match o {
                Output::Send { to, id, request } => {
                    self.messages += 1;
                    if !self.links.contains(&(node, to)) {
                        self.dials += 1;
                    }
                    self.max_piggyback = self.max_piggyback.max(request.updates.len());
                    if let Some(t) = &request.target {
                        self.ping_reqs.push((self.now, node, *t));
                    }
                    if self.down.contains(&to) || self.cut.contains(&(node, to)) {
                        self.post(Msg::Failed { to: node, id });
                    } else {
                        self.post(Msg::Request { to, from: node, id, request });
                    }
                }
                Output::Reply { to: (requester, id), ack } => {
                    self.messages += 1;
                    self.max_piggyback = self.max_piggyback.max(ack.updates.len());
                    self.post(Msg::Response { to: requester, from: node, id, ack });
                }
                Output::Changed { peer, state } => self.changes.push((self.now, node, peer, state)),
            }
        }
    }

    /// One step: deliver what was sent in the previous step, then tick every node.
    fn step(&mut self) {
        self.now += STEP_MS;
        let mut batch: Vec<Msg> = self.queue.drain(..).collect();
        let now = self.now;
        let (due, late): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.late).into_iter().partition(|(t, _)| *t <= now);
        self.late = late;
        batch.extend(due.into_iter().map(|(_, m)| m));
        for m in batch {
            match m {
                Msg::Request { to, from, id, request } => {
                    self.input(to, Input::Request { from, request, reply: (from, id) })
                }
                Msg::Response { to, from, id, ack } => self.input(to, Input::Response { from, id, ack }),
                Msg::Failed { to, id } => self.input(to, Input::Failed { id }),
            }
        }
        for i in 0..self.nodes.len() as u32 {
            self.input(i, Input::Tick);
        }
    }

    /// A crash: the node answers nothing, and its connections close (not a parting).
    fn kill(&mut self, node: u32) {
        self.down.insert(node);
        let peers: Vec<u32> = self.links.iter().filter(|(a, _)| *a == node).map(|(_, b)| *b).collect();
        for peer in peers {
            self.links.remove(&(node, peer));
            self.links.remove(&(peer, node));
            self.input(peer, Input::Disconnected(node));
        }
    }

    /// A paused node resumes and its peers' maintenance connects it to `peers` again.
    fn revive(&mut self, node: u32, peers: impl IntoIterator<Item = u32>) {
        self.down.remove(&node);
        for peer in peers {
            self.links.insert((node, peer));
            self.links.insert((peer, node));
            self.input(peer, Input::Connected(node));
            self.input(node, Input::Connected(peer));
        }
    }

    /// The link between `a` and `b` drops everything; their connection closes (pings fail).
    fn sever(&mut self, a: u32, b: u32) {
        for (x, y) in [(a, b), (b, a)] {
            self.cut.insert((x, y));
            self.links.remove(&(x, y));
            self.input(x, Input::Disconnected(y));
        }
    }

    fn run_ms(&mut self, ms: u64) {
        for _ in 0..ms / STEP_MS {
            self.step();
        }
    }

    /// Steps until every up node but `except` shows `peer` in `state`; the time taken.
    fn until_all(&mut self, peer: u32, state: State, limit_ms: u64) -> Option<u64> {
        let start = self.now;
        while self.now - start <= limit_ms {
            let all = (0..self.nodes.len() as u32)
                .filter(|i| *i != peer && !self.down.contains(i))
                .all(|i| self.nodes[i as usize].state_of(&peer) == Some(state));
            if all {
                return Some(self.now - start);
            }
            self.step();
        }
        None
    }

    fn first_change(&self, observer: u32, peer: u32, state: State) -> Option<u64> {
        self.changes.iter().find(|c| c.1 == observer && c.2 == peer && c.3 == state).map(|c| c.0)
    }
}

#[test]
fn a_healthy_cluster_stays_alive() {
    let mut sim = Sim::new(8, LivenessConfig::default());
    sim.run_ms(60_000);
    for node in &sim.nodes {
        assert!(node.view().iter().all(|m| m.state == State::Alive && m.last_seen_ms.is_some()));
    }
    assert!(sim.changes.iter().all(|c| c.3 == State::Alive), "no false suspicion");
}

#[test]
fn suspect_only_after_direct_and_indirect_probes_fail() {
    let config = LivenessConfig::default();
    let mut sim = Sim::new(8, config.clone());
    sim.run_ms(3_000);
    sim.kill(7);
    let killed_at = sim.now;
    let t = sim.until_all(7, State::Suspect, 20_000);
    assert!(t.is_some(), "every node suspects the dead one");
    for observer in 0..7 {
        let suspected = sim.first_change(observer, 7, State::Suspect).expect("suspected");
        assert!(suspected >= killed_at + config.probe_timeout_ms, "not before a probe timed out");
    }
    // Whoever suspected first did so after asking others to probe, and after their time ran out.
    let first = sim.changes.iter().find(|c| c.2 == 7 && c.3 == State::Suspect).expect("a suspicion");
    let asked = sim.ping_reqs.iter().find(|r| r.1 == first.1 && r.2 == 7).expect("indirect probes sent");
    assert!(
        asked.0 <= first.0 - config.indirect_timeout_ms,
        "suspected only after the indirect probes' time"
    );
}

#[test]
fn dead_after_the_suspicion_timeout() {
    let config = LivenessConfig::default();
    let mut sim = Sim::new(8, config.clone());
    sim.run_ms(3_000);
    sim.kill(3);
    let killed_at = sim.now;
    let t = sim.until_all(3, State::Dead, 30_000).expect("dead everywhere");
    assert!(t <= 20_000, "dead everywhere within 20 s of simulated time, took {t} ms");
    let first_suspect = sim.changes.iter().find(|c| c.2 == 3 && c.3 == State::Suspect).expect("suspected").0;
    let first_dead = sim.changes.iter().find(|c| c.2 == 3 && c.3 == State::Dead).expect("dead").0;
    assert!(
        first_dead >= first_suspect + config.suspicion_timeout_ms,
        "dead only after the suspicion timeout"
    );
    assert!(first_suspect > killed_at);
}

#[test]
fn a_paused_node_refutes_with_a_higher_incarnation() {
    let mut sim = Sim::new(8, LivenessConfig::default());
    sim.run_ms(3_000);
    // Paused long enough for the pings to close its connections.
    sim.kill(5);
    sim.until_all(5, State::Dead, 30_000).expect("dead while paused");
    sim.revive(5, [0, 1]);
    let t = sim.until_all(5, State::Alive, 10_000).expect("alive again everywhere");
    assert!(t <= 10_000);
    assert!(sim.nodes[5].incarnation() > 0, "it refuted the claim against it");
    // And it stays alive: the refutation beat the old claims everywhere.
    sim.run_ms(20_000);
    for i in 0..8u32 {
        if i != 5 {
            assert_eq!(sim.nodes[i as usize].state_of(&5), Some(State::Alive), "node {i}");
        }
    }
}

#[test]
fn a_lost_direct_probe_is_saved_by_the_indirect_ones() {
    let mut sim = Sim::new(6, LivenessConfig::default());
    // 0 cannot reach 4 directly, but everyone else can.
    sim.sever(0, 4);
    sim.run_ms(60_000);
    assert!(sim.ping_reqs.iter().any(|r| r.1 == 0 && r.2 == 4), "0 asked others to probe 4");
    assert!(sim.first_change(0, 4, State::Suspect).is_none(), "an indirect answer keeps 4 alive in 0's view");
}

#[test]
fn a_connected_member_is_alive_whatever_the_rumours() {
    let mut node: Liveness<u32, Reply> = Liveness::new(0, LivenessConfig::default());
    node.handle(Input::MemberAdded(1), 0);
    node.handle(Input::Connected(1), 0);
    let rumour = ProbeRequest {
        target: None,
        incarnation: 0,
        updates: vec![Update { peer: 1, state: State::Dead, incarnation: 0 }],
    };
    node.handle(Input::Request { from: 2, request: rumour, reply: (2, 1) }, 10);
    assert_eq!(node.state_of(&1), Some(State::Alive));
    // Once the connection is gone, the rumour shows.
    node.handle(Input::Disconnected(1), 20);
    assert_eq!(node.state_of(&1), Some(State::Dead));
}

#[test]
fn a_claim_about_oneself_is_refuted() {
    let mut node: Liveness<u32, Reply> = Liveness::new(0, LivenessConfig::default());
    node.handle(Input::MemberAdded(1), 0);
    let claim = ProbeRequest {
        target: None,
        incarnation: 0,
        updates: vec![Update { peer: 0, state: State::Suspect, incarnation: 3 }],
    };
    let out = node.handle(Input::Request { from: 1, request: claim, reply: (1, 1) }, 10);
    assert_eq!(node.incarnation(), 4);
    let Some(Output::Reply { ack, .. }) = out.into_iter().find(|o| matches!(o, Output::Reply { .. })) else {
        panic!("the probe is answered");
    };
    assert!(ack.acked);
    assert!(ack.updates.contains(&Update { peer: 0, state: State::Alive, incarnation: 4 }));
    // An old alive claim does not undo a newer suspicion; a newer alive one does.
    node.handle(Input::MemberAdded(2), 0);
    let apply = |node: &mut Liveness<u32, Reply>, state, incarnation| {
        let request = ProbeRequest {
            target: None,
            incarnation: 0,
            updates: vec![Update { peer: 2, state, incarnation }],
        };
        node.handle(Input::Request { from: 1, request, reply: (1, 2) }, 20);
    };
    apply(&mut node, State::Suspect, 2);
    apply(&mut node, State::Alive, 2);
    assert_eq!(node.state_of(&2), Some(State::Suspect));
    apply(&mut node, State::Alive, 3);
    assert_eq!(node.state_of(&2), Some(State::Alive));
}

/// Messages per node per second, with one node dead (so suspicions and indirect probes run).
fn load(n: u32) -> (f64, usize) {
    let mut sim = Sim::new(n, LivenessConfig::default());
    sim.run_ms(2_000);
    sim.kill(n - 1);
    sim.messages = 0;
    sim.run_ms(60_000);
    let per_node = sim.messages as f64 / f64::from(n - 1) / 60.0;
    (per_node, sim.max_piggyback)
}

#[test]
fn dissemination_is_bounded_and_load_does_not_grow_with_n() {
    let (small, _) = load(10);
    let (large, piggyback) = load(80);
    assert!(piggyback <= MAX_PIGGYBACK, "at most {MAX_PIGGYBACK} updates on a message, saw {piggyback}");
    assert!(small < 3.0 && large < 3.0, "about one probe and one ack per second: {small} and {large}");
    assert!(large < small * 1.3, "no growth with N: {small} at 10 nodes, {large} at 80");
    // Updates stop being sent once they have been sent a bounded number of times.
    let mut sim = Sim::new(20, LivenessConfig::default());
    sim.run_ms(2_000);
    sim.kill(19);
    sim.until_all(19, State::Dead, 30_000).expect("dead everywhere");
    sim.run_ms(30_000);
    assert!(sim.max_piggyback <= MAX_PIGGYBACK);
    for node in &sim.nodes[..19] {
        assert_eq!(node.queued_updates(), 0, "nothing is retransmitted forever");
    }
}

#[test]
fn hostile_claims_neither_crash_nor_outweigh_direct_evidence() {
    let mut node: Liveness<u32, Reply> = Liveness::new(0, LivenessConfig::default());
    node.handle(Input::MemberAdded(1), 0);
    node.handle(Input::MemberAdded(2), 0);
    let updates = vec![
        Update { peer: 0, state: State::Dead, incarnation: u64::MAX },
        Update { peer: 1, state: State::Dead, incarnation: u64::MAX },
        Update { peer: 99, state: State::Suspect, incarnation: 5 },
    ];
    let request = ProbeRequest { target: Some(77), incarnation: u64::MAX, updates };
    node.handle(Input::Request { from: 2, request, reply: (2, 1) }, 10);
    assert_eq!(node.incarnation(), u64::MAX, "saturated, no overflow");
    assert_eq!(node.state_of(&99), None, "claims about non-members are ignored");
    assert_eq!(node.state_of(&1), Some(State::Dead));
    // 1 answers us directly: alive here whatever was claimed.
    let ack = ProbeAck { acked: true, incarnation: 0, updates: Vec::new() };
    node.handle(Input::Response { from: 1, id: 12345, ack }, 20);
    assert_eq!(node.state_of(&1), Some(State::Alive));
}

/// The members a batch of outputs probes directly (not through a helper).
/// Node 0 with default settings and these members (none connected yet).
fn node_with_members(members: impl IntoIterator<Item = u32>) -> Liveness<u32, Reply> {
    let mut node = Liveness::new(0, LivenessConfig::default());
    for p in members {
        node.handle(Input::MemberAdded(p), 0);
    }
    node
}

fn direct_probes(out: &[Output<u32, Reply>]) -> Vec<u32> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send { to, request, .. } if request.target.is_none() => Some(*to),
            _ => None,
        })
        .collect()
}

#[test]
fn a_closed_connection_is_probed_first() {
    let mut node = node_with_members(1..50);
    node.handle(Input::Connected(37), 0);
    node.handle(Input::Tick, 0);
    node.handle(Input::Disconnected(37), 500);
    let probed = direct_probes(&node.handle(Input::Tick, 1000));
    assert_eq!(probed, vec![37], "one probe this period, of the member that just disconnected");
}

#[test]
fn a_connected_member_whose_probes_go_unanswered_shows_suspect_but_not_dead_while_connected() {
    let mut node: Liveness<u32, Reply> = Liveness::new(0, LivenessConfig::default());
    node.handle(Input::MemberAdded(1), 0);
    node.handle(Input::MemberAdded(2), 0);
    node.handle(Input::Connected(1), 0);
    // Nobody answers anything (1 is paused, its socket still open; 2 cannot reach it either).
    let mut suspected_at = None;
    for t in (0..20_000).step_by(100) {
        node.handle(Input::Tick, t);
        if suspected_at.is_none() && node.state_of(&1) == Some(State::Suspect) {
            suspected_at = Some(t);
        }
    }
    let at = suspected_at.expect("suspected although its connection is open");
    assert!(at <= 5_000, "suspected only {at} ms in");
    assert_eq!(node.state_of(&1), Some(State::Suspect), "never dead while its connection is open");
    // A sign of life shows it alive again at once.
    node.handle(Input::Connected(1), 20_000);
    assert_eq!(node.state_of(&1), Some(State::Alive));
}

#[test]
fn a_peer_connected_before_its_record_arrives_is_a_connected_member() {
    // A node's connections open before gossip or anti-entropy brings the peers' node records.
    let mut node: Liveness<u32, Reply> = Liveness::new(0, LivenessConfig::default());
    for p in [1, 2] {
        node.handle(Input::Connected(p), 0);
    }
    node.handle(Input::Disconnected(2), 0);
    for p in 1..4 {
        node.handle(Input::MemberAdded(p), 0);
    }
    let connected: Vec<(u32, bool)> = node.view().iter().map(|m| (m.peer, m.connected)).collect();
    assert_eq!(connected, vec![(1, true), (2, false), (3, false)]);
}

#[test]
fn with_few_connections_a_crash_is_found_and_spread_to_everyone_and_probes_dial_rarely() {
    // 60 nodes, each connected to 8 others: only those 8 watch a node; the rest hear of it.
    let config = LivenessConfig::default();
    let mut sim = Sim::ring(60, 8, config.clone());
    sim.run_ms(60_000);
    assert!(sim.changes.iter().all(|c| c.3 == State::Alive), "no false suspicion");
    for node in &sim.nodes {
        assert!(node.view().iter().all(|m| m.state == State::Alive));
    }
    // A healthy network dials only for the far probes: about one per node per far interval.
    let per_node_per_min = sim.dials as f64 / 60.0;
    let far_per_min = 60_000.0 / config.far_probe_interval_ms as f64;
    assert!(
        per_node_per_min <= far_per_min * 1.5,
        "{per_node_per_min:.2} dials per node per minute, {far_per_min:.1} far probes expected"
    );
    sim.kill(17);
    let t = sim.until_all(17, State::Dead, 60_000).expect("dead everywhere, also where never connected");
    assert!(t <= 30_000, "dead everywhere within 30 s of simulated time, took {t} ms");
}

#[test]
fn a_member_no_one_is_connected_to_is_found_dead_by_the_far_probes() {
    // Node 9 is in every table but gone before anyone connected to it (a table loaded at start).
    let config = LivenessConfig { far_probe_interval_ms: 10_000, ..LivenessConfig::default() };
    let mut sim = Sim::with_links(10, config, |i, j| i != 9 && j != 9);
    sim.down.insert(9);
    let t = sim.until_all(9, State::Dead, 60_000).expect("found dead without any connection to it");
    assert!(t <= 40_000, "took {t} ms");
}

#[test]
fn a_parting_is_not_looked_into() {
    let mut node: Liveness<u32, Reply> = Liveness::new(0, LivenessConfig::default());
    for p in 1..4 {
        node.handle(Input::MemberAdded(p), 0);
        node.handle(Input::Connected(p), 0);
    }
    node.handle(Input::Tick, 0);
    node.handle(Input::Parted(2), 500);
    let probed = direct_probes(&node.handle(Input::Tick, 1000));
    assert!(!probed.contains(&2), "a peer that parted is not probed (which would dial it): {probed:?}");
    assert_eq!(node.state_of(&2), Some(State::Alive));
    assert!(!node.view().iter().find(|m| m.peer == 2).expect("a member").connected);
}

#[test]
fn a_helper_probes_only_a_target_it_is_connected_to() {
    let mut node = node_with_members(1..4);
    node.handle(Input::Connected(1), 0);
    node.handle(Input::Connected(2), 0);
    let ping_req = |target| ProbeRequest { target: Some(target), incarnation: 0, updates: Vec::new() };
    // 3 is not connected: answered "not reached" at once, nothing sent (no dial).
    let out = node.handle(Input::Request { from: 1, request: ping_req(3), reply: (1, 1) }, 10);
    assert!(!out.iter().any(|o| matches!(o, Output::Send { .. })), "no probe of an unconnected target");
    let acked = out.iter().find_map(|o| match o {
        Output::Reply { ack, .. } => Some(ack.acked),
        _ => None,
    });
    assert_eq!(acked, Some(false));
    // 2 is connected: probed over that connection.
    let out = node.handle(Input::Request { from: 1, request: ping_req(2), reply: (1, 2) }, 20);
    assert!(out.iter().any(|o| matches!(o, Output::Send { to: 2, .. })));
}

/// The suspicions `observer` raised of others (its own view turning suspect).
fn accusations(sim: &Sim, observer: u32) -> usize {
    sim.changes.iter().filter(|c| c.1 == observer && c.3 == State::Suspect).count()
}

/// Lifeguard: a node that reads every message 2.5 s late (its event loop starved) times out its
/// probes of healthy members. Without local health it accuses one per probe period; with it,
/// the first failures stretch its timeouts past its lag and the accusations stop, and once it
/// keeps up again its score comes back down to 0 (within a minute from the highest).
#[test]
fn a_slow_node_stretches_its_timeouts_instead_of_accusing_healthy_members() {
    let run = |max_health| {
        let mut sim = Sim::new(10, LivenessConfig { max_health, ..LivenessConfig::default() });
        sim.run_ms(2_000);
        sim.slow.insert(0, 2_500);
        sim.run_ms(60_000);
        sim
    };
    let without = accusations(&run(0), 0);
    let mut sim = run(LivenessConfig::default().max_health);
    let with = accusations(&sim, 0);
    assert!(without >= 20, "with the stretching off, the slow node accuses often: {without}");
    assert!(with <= 3, "with local health it stops accusing: {with} (without: {without})");
    let stretched = sim.nodes[0].health();
    assert!(stretched > 0, "the slow node's score went up");
    for i in 1..10 {
        assert_eq!(sim.nodes[i].health(), 0, "node {i} keeps up: its score stays 0");
    }
    sim.slow.clear();
    let mut recovered = None;
    // One point per probe answered in time, at the stretched period: 9 + 8 + ... + 2 s from 8.
    for s in 1..=600 {
        sim.step();
        if sim.nodes[0].health() == 0 {
            recovered = Some(s * STEP_MS);
            break;
        }
    }
    eprintln!("accusations in 60 s: {without} without local health, {with} with; score {stretched}, back to 0 after {recovered:?} ms");
    assert!(recovered.is_some(), "back to 0 within 60 s of keeping up (was {stretched})");
    let healthy = (1..10).all(|p| sim.nodes[0].state_of(&p) == Some(State::Alive));
    assert!(healthy, "and it sees every member alive");
}

/// Readers' view is rebuilt (N members, at every node) only when something they see changed: a
/// state, a connection, or the probe period's `last_seen`; not for every message heard.
#[test]
fn the_view_is_dirty_only_when_what_readers_see_changes() {
    let mut node = node_with_members(1..5);
    node.handle(Input::Connected(1), 0);
    node.handle(Input::Tick, 0);
    assert!(node.take_dirty(), "members added, a connection, the first period");
    for t in 1..100 {
        node.handle(Input::Heard(1), t);
        node.handle(Input::Heard(2), t);
    }
    assert!(!node.take_dirty(), "messages from members already shown alive change nothing shown");
    node.handle(Input::Connected(2), 100);
    assert!(node.take_dirty(), "member 2 is shown connected now");
    node.handle(Input::Tick, 200);
    assert!(!node.take_dirty(), "within the probe period");
    node.handle(Input::Tick, 1_000);
    assert!(node.take_dirty(), "the next period moves the connected members' last_seen");
}
