//! The node's side of liveness: feeds the state machine (`core::liveness`) what the table and
//! the network show, executes what it asks (probes and acks over `net`), and publishes the
//! members' states to readers through a view only the node task writes.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

pub(super) use crate::core::liveness::Input;
use crate::core::liveness::{Liveness, LivenessConfig, Output, State};
use crate::core::sign::owner_of_key;
use crate::core::{now_millis, PeerRecord, Table};
use crate::net::{parse_multiaddr, NetEvent, Network, PeerId, ProbeEvent, ProbeResponder, ProbeStats};

/// How often the state machine's timers advance (its probe period is longer).
pub(super) const TICK: Duration = Duration::from_millis(250);

type Machine = Liveness<PeerId, ProbeResponder>;

/// A node record's liveness as readers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Shared with the driver's cache: a peer id's text (base58) is costly to make.
    pub peer_id: Arc<str>,
    pub state: State,
    /// Microseconds since the epoch of the last direct evidence, if any.
    pub last_seen_us: Option<u64>,
    pub connected: bool,
}

/// The counts `message_type 9` shows, and the probe traffic.
#[derive(Debug, Clone, Copy, Default)]
pub struct LivenessCounts {
    pub alive: usize,
    pub suspect: usize,
    pub dead: usize,
    /// Lifeguard's local health score (0: healthy; each point stretches the probe period and
    /// timeouts once more because this node's own probes went unanswered).
    pub local_health: u32,
    pub probes: ProbeStats,
}

/// What readers see; written only by the node task, once per turn when something changed.
#[derive(Debug, Default)]
pub(super) struct MembersView {
    state: RwLock<(Arc<Vec<Member>>, LivenessCounts)>,
}

impl MembersView {
    pub fn members(&self) -> Arc<Vec<Member>> {
        self.state.read().unwrap_or_else(|e| e.into_inner()).0.clone()
    }

    pub fn counts(&self) -> LivenessCounts {
        self.state.read().unwrap_or_else(|e| e.into_inner()).1
    }

    fn publish(&self, members: Vec<Member>, counts: LivenessCounts) {
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = (Arc::new(members), counts);
    }
}

/// The state machine and its view.
pub(super) struct Driver {
    machine: Machine,
    view: Arc<MembersView>,
    /// Members' peer ids as text, made once each (base58 is slow, and the view is rebuilt
    /// every probe period).
    names: HashMap<PeerId, Arc<str>>,
}

/// The peer id of a node record's key (a libp2p peer id), if it is one.
fn node_key(key: &str) -> Option<PeerId> {
    owner_of_key(key)?;
    key.parse().ok()
}

/// What a network event says of a peer's liveness: connections, and any message (probes say
/// it themselves, with the sender's incarnation).
pub(super) fn evidence(event: &NetEvent) -> Option<Input<PeerId, ProbeResponder>> {
    match event {
        NetEvent::PeerConnected(p) => Some(Input::Connected(*p)),
        NetEvent::PeerDisconnected { peer, parted: false } => Some(Input::Disconnected(*peer)),
        NetEvent::PeerDisconnected { peer, parted: true } => Some(Input::Parted(*peer)),
        NetEvent::Gossip { from, .. } => Some(Input::Heard(*from)),
        NetEvent::SyncRequest { peer, .. }
        | NetEvent::MalformedSyncRequest { peer, .. }
        | NetEvent::SyncResponse { peer, .. } => Some(Input::Heard(*peer)),
        _ => None,
    }
}

impl Driver {
    /// Starts with the node records of the table as loaded.
    pub fn new(me: PeerId, table: &Table, view: Arc<MembersView>) -> Self {
        let config = LivenessConfig { seed: rand::random(), ..LivenessConfig::default() };
        let mut machine = Machine::new(me, config);
        let now = now_millis();
        for (key, _) in table.iter_live() {
            if let Some(peer) = node_key(key) {
                machine.handle(Input::MemberAdded(peer), now);
            }
        }
        Driver { machine, view, names: HashMap::new() }
    }

    /// A record changed in the table: a node record joins or leaves the members.
    pub fn record_changed(
        &mut self,
        key: &str,
        record: Option<&Arc<PeerRecord>>,
        net: &mut Network,
        table: &Table,
    ) {
        if let Some(peer) = node_key(key) {
            let input = if record.is_some() { Input::MemberAdded(peer) } else { Input::MemberRemoved(peer) };
            self.input(input, net, table);
        }
    }

    pub fn probe_event(&mut self, event: ProbeEvent, net: &mut Network, table: &Table) {
        let input = match event {
            ProbeEvent::Request { peer, request, responder } => {
                Input::Request { from: peer, request, reply: responder }
            }
            ProbeEvent::Response { peer, id, ack } => Input::Response { from: peer, id, ack },
            ProbeEvent::Failed { id } => Input::Failed { id },
        };
        self.input(input, net, table);
    }

    /// Feeds one input and executes the outputs; a probe that cannot be sent fails at once.
    pub fn input(&mut self, input: Input<PeerId, ProbeResponder>, net: &mut Network, table: &Table) {
        let mut inputs = vec![input];
        while let Some(input) = inputs.pop() {
            for output in self.machine.handle(input, now_millis()) {
                match output {
                    Output::Send { to, id, request } => {
                        let addrs = table
                            .get(&to.to_string())
                            .map(|r| r.addrs.iter().filter_map(|a| parse_multiaddr(a).ok()).collect())
                            .unwrap_or_default();
                        if !net.send_probe(to, addrs, id, request) {
                            inputs.push(Input::Failed { id });
                        }
                    }
                    Output::Reply { to, ack } => net.respond_probe(to, ack),
                    Output::Changed { peer, state } => {
                        tracing::info!(%peer, state = state.as_str(), "liveness")
                    }
                }
            }
        }
    }

    /// The network's maintenance round, with the table's node records as peers to dial while
    /// below the target: their addresses are confirmed ones (relay circuits included), so this
    /// reaches nodes behind NATs that no Kademlia walk returns (their Kademlia is a client).
    pub fn maintain(&self, net: &mut Network, table: &Table) {
        let wanted = net.peers_wanted();
        let members = if wanted == 0 { Vec::new() } else { self.machine.unconnected(wanted * 2) };
        let known = members
            .into_iter()
            .map(|peer| {
                let addrs = table
                    .get(&peer.to_string())
                    .map(|r| r.addrs.iter().filter_map(|a| parse_multiaddr(a).ok()).collect())
                    .unwrap_or_default();
                (peer, addrs)
            })
            .collect();
        net.maintain(known);
    }

    /// Shows readers the members, if anything changed since last time.
    pub fn publish(&mut self, net: &Network) {
        if !self.machine.take_dirty() {
            return;
        }
        let mut counts = LivenessCounts {
            probes: net.probe_stats(),
            local_health: self.machine.health(),
            ..LivenessCounts::default()
        };
        let view = self.machine.view();
        if self.names.len() > view.len() {
            let members: HashSet<PeerId> = view.iter().map(|m| m.peer).collect();
            self.names.retain(|p, _| members.contains(p));
        }
        let names = &mut self.names;
        let members = view
            .into_iter()
            .map(|m| {
                match m.state {
                    State::Alive => counts.alive += 1,
                    State::Suspect => counts.suspect += 1,
                    State::Dead => counts.dead += 1,
                }
                Member {
                    peer_id: names.entry(m.peer).or_insert_with(|| m.peer.to_string().into()).clone(),
                    state: m.state,
                    last_seen_us: m.last_seen_ms.map(|ms| ms * 1000),
                    connected: m.connected,
                }
            })
            .collect();
        self.view.publish(members, counts);
    }
}
