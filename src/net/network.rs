//! [`Network`]: the swarm and everything purely about connectivity (listening, bootstrap,
//! discovery, keeping enough connections). It hands the node task a few app-level events.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::core::ConnectedPoint;
use libp2p::gossipsub::{self, MessageAcceptance, MessageId, PublishError};
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::{StreamUpgradeError, SwarmEvent};
use libp2p::{identify, kad, Multiaddr, PeerId, Swarm};
use serde::Serialize;

use crate::core::replica::{OwnAddress, RequestId, Verdict};
use crate::core::sync::{SyncReply, SyncRequest};

use super::addr::{dialable, is_loopback, NetError};
use super::admission::{Admission, Judged};
use super::behaviour::{build_swarm, Behaviour, BehaviourEvent, Protocols};
use super::codec::{Inbound, SyncBytes};
use super::config::NetConfig;
use super::connmgr::{ConnManager, Watermarks};
use super::metrics::SwarmMetrics;
use super::probe::{Handled, ProbeEvent, ProbeResponder, ProbeStats, ProbeWire, Probes};
use super::reach::{Reach, ReachStatus};
use super::startup::{check_port_free, rejoin_peers, usable_listen_addrs};
use crate::core::liveness::{ProbeAck, ProbeRequest};

/// Keeping the node connected (bootstrap, rejoining from the stored table, dialling known peers).
mod dialing;
/// Keeping it from being connected to too many: parting from the least useful connections.
mod trimming;

/// How many closest peers a Kademlia walk looks for (see [`Network::walk`]).
const WALK_RESULTS: std::num::NonZeroUsize = std::num::NonZeroUsize::new(8).expect("8 is not zero");
/// A peer is not re-dialled sooner than this after a dial attempt.
const REDIAL_BACKOFF: Duration = Duration::from_secs(3);

/// A received gossip message, to be judged with [`Network::report_gossip`].
#[derive(Debug)]
pub struct GossipId {
    id: MessageId,
    source: PeerId,
}

/// Where an anti-entropy response goes.
#[derive(Debug)]
pub struct Responder(ResponseChannel<SyncReply>);

/// What the network tells the node task.
#[derive(Debug)]
pub enum NetEvent {
    /// A peer of this network is connected: identify showed it speaks our protocols.
    PeerConnected(PeerId),
    /// The last connection to a peer that was [`NetEvent::PeerConnected`] closed. `parted`: on
    /// purpose, by us or by the peer, which told us (the connection manager's trim); otherwise a
    /// failure, a crash or a ban, worth looking into.
    PeerDisconnected {
        peer: PeerId,
        parted: bool,
    },
    Gossip {
        from: PeerId,
        id: GossipId,
        data: Vec<u8>,
    },
    SyncRequest {
        peer: PeerId,
        request: SyncRequest,
        responder: Responder,
    },
    /// A request we could not read: answer it with a refusal and hold it against the peer.
    MalformedSyncRequest {
        peer: PeerId,
        reason: String,
        responder: Responder,
    },
    /// The answer to our request `id` (the id given to [`Network::request_sync`]).
    SyncResponse {
        peer: PeerId,
        id: RequestId,
        reply: SyncReply,
    },
    SyncFailed {
        id: RequestId,
        error: String,
    },
    /// Our listen addresses changed (e.g. the real port of `tcp/0` became known), or our
    /// reachability (confirmed external addresses, relay slots): the own record may change.
    ListenAddrsChanged,
    /// A liveness probe from a peer, or the answer (or failure) of ours.
    Probe(ProbeEvent),
}

/// Counters of the network, reported by `message_type 9`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct NetStats {
    pub gossip_published: u64,
    /// Publishes with no subscribed peer yet: normal, anti-entropy covers them.
    pub gossip_no_peers: u64,
    pub gossip_received: u64,
    pub gossip_rejected: u64,
    pub sync_requests_sent: u64,
    pub sync_responses_sent: u64,
    pub sync_inbound_failures: u64,
    pub sync_outbound_failures: u64,
    pub dials: u64,
    /// Connections established, both ways (dials of any behaviour, inbound): with the
    /// partings, how much the connection set churns.
    pub connections_opened: u64,
    /// Connections closed because their pings failed.
    pub dead_connections_closed: u64,
    /// Peers the connection manager parted from (above the high watermark), and peers that
    /// parted from us.
    pub peers_trimmed: u64,
    pub peers_parted_from_us: u64,
    /// Peers whose connections were closed because they do not speak this network's protocols
    /// (another network id or another libp2p application), or never identified themselves.
    pub strangers_closed: u64,
    /// Connections open now, to members and to peers still being identified (not a counter).
    pub open_connections: u64,
    /// Anti-entropy messages on the wire, in bytes (requests and responses).
    pub sync_bytes_sent: u64,
    pub sync_bytes_received: u64,
    /// Connections open now, direct and through a relay (not counters).
    pub direct_connections: u64,
    pub relayed_connections: u64,
    /// DCUtR upgrades of relayed connections finished, and those that made a direct connection.
    pub hole_punches_tried: u64,
    pub hole_punches_succeeded: u64,
    /// Slots relays granted us; circuits we relayed for others.
    pub relay_reservations_accepted: u64,
    pub relayed_circuits_served: u64,
}

/// The swarm and its connectivity state.
pub struct Network {
    swarm: Swarm<Behaviour>,
    protocols: Protocols,
    config: NetConfig,
    listen_addrs: Vec<Multiaddr>,
    /// Bootstrap addresses without `/p2p/`, with the peer we found there.
    bootstrap_peers: HashMap<Multiaddr, PeerId>,
    last_dial: HashMap<PeerId, Instant>,
    /// When a Kademlia walk last started (the join's or the maintenance round's).
    last_walk: Option<Instant>,
    /// Whether Kademlia bootstrapped from a bootstrap peer since start.
    bootstrapped: bool,
    /// Our outstanding sync requests: libp2p's id to the caller's, and the peer asked (it is not
    /// trimmed meanwhile). An entry leaves with the response or the failure, one of which libp2p
    /// always reports.
    outbound: HashMap<OutboundRequestId, (RequestId, PeerId)>,
    /// Bounded connections: watermarks around the target, partings.
    conns: ConnManager<PeerId>,
    /// Which connected peers are of this network; strangers met recently.
    admission: Admission<PeerId>,
    /// Peers banned by the replica. The only other reason to block a peer is a test's cut.
    banned: HashSet<PeerId>,
    /// Peers a test cut us off from (a partition), separate from bans so neither lifts the other.
    #[cfg(feature = "test-util")]
    cut: HashSet<PeerId>,
    stats: NetStats,
    /// libp2p's metrics, when `/metrics` is served.
    metrics: Option<SwarmMetrics>,
    /// Anti-entropy bytes on the wire, counted by the codec.
    sync_bytes: Arc<SyncBytes>,
    /// Our outstanding liveness probes.
    probes: Probes,
    /// Reachability: confirmed addresses, relays, hole punches.
    reach: Reach,
    /// Reachability changed since the node task last heard of it.
    reach_changed: bool,
    /// Peers of the stored table, dialled when we have no connection (see `NetConfig::rejoin`).
    rejoin: Vec<(PeerId, Vec<Multiaddr>)>,
}

impl Network {
    /// Builds the swarm, starts listening and dials the bootstrap peers.
    pub fn start(key: Keypair, config: NetConfig) -> Result<Network, NetError> {
        let protocols = Protocols::new(&config.network_id)?;
        let sync_bytes = Arc::new(SyncBytes::default());
        let listen = usable_listen_addrs(&config);
        for addr in &listen {
            check_port_free(addr)?;
        }
        let mut swarm = build_swarm(key, &config, &protocols, sync_bytes.clone())?;
        for addr in &listen {
            swarm
                .listen_on(addr.clone())
                .map_err(|e| NetError::Listen { addr: addr.to_string(), reason: e.to_string() })?;
        }
        for addr in &config.announce {
            swarm.add_external_address(addr.clone());
        }
        let rejoin = rejoin_peers(&config.rejoin, *swarm.local_peer_id());
        let reach = Reach::new(config.loopback_only(), config.relay_server, config.announce.clone());
        let marks = Watermarks::for_target(config.target_peers);
        let mut net = Network {
            swarm,
            protocols,
            config,
            listen_addrs: Vec::new(),
            bootstrap_peers: HashMap::new(),
            last_dial: HashMap::new(),
            last_walk: None,
            bootstrapped: false,
            outbound: HashMap::new(),
            conns: ConnManager::new(marks),
            admission: Admission::new(),
            banned: HashSet::new(),
            #[cfg(feature = "test-util")]
            cut: HashSet::new(),
            stats: NetStats::default(),
            metrics: None,
            sync_bytes,
            probes: Probes::default(),
            reach,
            reach_changed: false,
            rejoin,
        };
        net.dial_bootstrap();
        if !net.rejoin.is_empty() {
            tracing::info!(
                peers = net.rejoin.len(),
                "dialling peers of the stored table besides --bootstrap"
            );
        }
        net.dial_rejoin();
        Ok(net)
    }

    /// Records libp2p's metrics (connections, gossipsub, Kademlia, identify, ping) into `registry`
    /// from now on.
    pub fn register_metrics(&mut self, registry: &mut prometheus_client::registry::Registry) {
        self.metrics = Some(SwarmMetrics::new(registry));
    }

    pub fn local_peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    pub fn stats(&self) -> NetStats {
        let open = self.swarm.network_info().connection_counters().num_established();
        let (direct, relayed) = self.reach.connection_counts();
        let c = self.reach.counters;
        NetStats {
            open_connections: u64::from(open),
            direct_connections: direct,
            relayed_connections: relayed,
            hole_punches_tried: c.hole_punches_tried,
            hole_punches_succeeded: c.hole_punches_succeeded,
            relay_reservations_accepted: c.relay_reservations_accepted,
            relayed_circuits_served: c.relayed_circuits_served,
            sync_bytes_sent: self.sync_bytes.sent.load(Relaxed),
            sync_bytes_received: self.sync_bytes.received.load(Relaxed),
            ..self.stats
        }
    }

    /// How many more connections the node wants (0 at or above the target).
    pub fn peers_wanted(&self) -> usize {
        self.config.target_peers.saturating_sub(self.admission.member_count())
    }

    /// Addresses we listen on (the unspecified ones expanded to real interfaces).
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.listen_addrs.clone()
    }

    /// What the own record advertises (see `reach::own_address`): confirmed addresses only.
    pub fn own_address(&self) -> OwnAddress {
        let configured: Vec<Multiaddr> =
            self.config.announce.iter().chain(&self.config.listen).cloned().collect();
        self.reach.own_address(self.local_peer_id(), &self.listen_addrs, &configured)
    }

    /// Whether others can reach us, our confirmed external addresses and relay slots.
    pub fn reach_status(&self) -> ReachStatus {
        self.reach.status()
    }

    /// The connected peers of this network (strangers and unidentified connections left out).
    pub fn connected_peers(&self) -> Vec<PeerId> {
        self.admission.members().copied().collect()
    }

    /// The gossipsub score of a peer, if it is known.
    #[cfg(feature = "test-util")]
    pub fn peer_score(&self, peer: &PeerId) -> Option<f64> {
        self.swarm.behaviour().gossipsub.peer_score(peer)
    }

    /// Cuts a banned peer off, both ways, until [`Network::unban`].
    pub fn ban(&mut self, peer: PeerId) {
        self.banned.insert(peer);
        self.apply_block(peer);
    }

    pub fn unban(&mut self, peer: PeerId) {
        self.banned.remove(&peer);
        self.apply_block(peer);
    }

    /// Cuts us off from `peer` (or lets it back): a test's partition. A ban in force stays.
    #[cfg(feature = "test-util")]
    pub fn set_cut(&mut self, peer: PeerId, cut: bool) {
        if cut {
            self.cut.insert(peer);
        } else {
            self.cut.remove(&peer);
        }
        self.apply_block(peer);
    }

    fn is_blocked(&self, peer: &PeerId) -> bool {
        #[cfg(feature = "test-util")]
        if self.cut.contains(peer) {
            return true;
        }
        self.banned.contains(peer)
    }

    /// Makes the swarm's block list agree with the reasons held here.
    fn apply_block(&mut self, peer: PeerId) {
        if self.is_blocked(&peer) {
            self.swarm.behaviour_mut().blocked.block_peer(peer);
        } else {
            self.swarm.behaviour_mut().blocked.unblock_peer(peer);
        }
    }

    /// Publishes a delta to every subscribed peer. No peers yet is normal, not an error.
    pub fn publish(&mut self, data: Vec<u8>) {
        let topic = self.protocols.topic.clone();
        match self.swarm.behaviour_mut().gossipsub.publish(topic, data) {
            Ok(_) => self.stats.gossip_published += 1,
            Err(PublishError::NoPeersSubscribedToTopic | PublishError::Duplicate) => {
                self.stats.gossip_no_peers += 1
            }
            Err(e) => tracing::warn!(error = %e, "gossip publish failed"),
        }
    }

    pub fn report_gossip(&mut self, id: GossipId, verdict: Verdict) {
        let acceptance = match verdict {
            Verdict::Accept => MessageAcceptance::Accept,
            Verdict::Ignore => MessageAcceptance::Ignore,
            Verdict::Reject => {
                self.stats.gossip_rejected += 1;
                MessageAcceptance::Reject
            }
        };
        let _ = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&id.id, &id.source, acceptance);
    }

    /// Sends a sync request; its response or failure comes back as an event carrying `id`.
    pub fn request_sync(&mut self, peer: &PeerId, id: RequestId, request: SyncRequest) {
        self.stats.sync_requests_sent += 1;
        let libp2p_id = self.swarm.behaviour_mut().sync.send_request(peer, Inbound::Valid(request));
        self.outbound.insert(libp2p_id, (id, *peer));
    }

    pub fn respond_sync(&mut self, responder: Responder, reply: SyncReply) {
        // Fails only if the peer is gone or timed out; nothing to do then.
        self.stats.sync_responses_sent += 1;
        let _ = self.swarm.behaviour_mut().sync.send_response(responder.0, reply);
    }

    pub fn probe_stats(&self) -> ProbeStats {
        self.probes.stats
    }

    /// Sends a liveness probe, dialling `addrs` if the peer is not connected. A banned peer or a
    /// stranger is not dialled: the probe fails at once (`false`), as an unreachable one would.
    pub fn send_probe(
        &mut self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        id: u64,
        request: ProbeRequest<PeerId>,
    ) -> bool {
        if peer == self.local_peer_id()
            || self.is_blocked(&peer)
            || self.admission.is_stranger(&peer, Instant::now())
        {
            return false;
        }
        let addrs = if self.swarm.is_connected(&peer) { Vec::new() } else { addrs };
        let libp2p_id = self.swarm.behaviour_mut().probe.send_request_with_addresses(
            &peer,
            ProbeWire::Probe(request),
            addrs,
        );
        self.probes.sent(libp2p_id, id, peer);
        true
    }

    pub fn respond_probe(&mut self, responder: ProbeResponder, ack: ProbeAck<PeerId>) {
        // Fails only if the peer is gone or timed out: its own deadline then decides.
        let _ = self.swarm.behaviour_mut().probe.send_response(responder.0, ack);
    }

    /// The next event the node task should see; everything else is handled here.
    /// Cancel-safe: an event is either returned or fully handled before the next await.
    pub async fn next_event(&mut self) -> NetEvent {
        loop {
            if std::mem::take(&mut self.reach_changed) {
                return NetEvent::ListenAddrsChanged;
            }
            let event = self.swarm.select_next_some().await;
            if let Some(metrics) = &self.metrics {
                metrics.record(&event);
            }
            self.reach_changed |= self.reach.observe(&event);
            if let Some(e) = self.handle(event) {
                return e;
            }
        }
    }

    fn handle(&mut self, event: SwarmEvent<BehaviourEvent>) -> Option<NetEvent> {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                if !self.listen_addrs.contains(&address) {
                    self.listen_addrs.push(address);
                }
                Some(NetEvent::ListenAddrsChanged)
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen_addrs.retain(|a| a != &address);
                Some(NetEvent::ListenAddrsChanged)
            }
            SwarmEvent::ConnectionEstablished { peer_id, endpoint, .. } => {
                self.stats.connections_opened += 1;
                if let ConnectedPoint::Dialer { address, .. } = &endpoint {
                    let bare: Multiaddr = address.iter().filter(|p| !matches!(p, Protocol::P2p(_))).collect();
                    if self.config.bootstrap.contains(&bare) || self.config.bootstrap.contains(address) {
                        self.bootstrap_peers.insert(bare, peer_id);
                    }
                }
                // Not a peer of ours until identify says so (see `identified`).
                self.admission.connected(peer_id, Instant::now());
                None
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                let parted = self.conns.disconnected(&peer_id, Instant::now());
                self.admission
                    .disconnected(&peer_id)
                    .then_some(NetEvent::PeerDisconnected { peer: peer_id, parted })
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => {
                self.stats.gossip_received += 1;
                Some(NetEvent::Gossip {
                    from: propagation_source,
                    id: GossipId { id: message_id, source: propagation_source },
                    data: message.data,
                })
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(event)) => self.handle_identify(event),
            SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                result: kad::QueryResult::GetClosestPeers(Ok(ok)),
                ..
            })) => {
                let connected = self.admission.member_count();
                let wanted = self.config.target_peers.saturating_sub(connected);
                let now = Instant::now();
                for info in ok.peers.into_iter().take(wanted) {
                    let fresh = self
                        .last_dial
                        .get(&info.peer_id)
                        .is_none_or(|t| now.duration_since(*t) >= REDIAL_BACKOFF);
                    if info.peer_id != self.local_peer_id()
                        && !self.swarm.is_connected(&info.peer_id)
                        && !self.is_blocked(&info.peer_id)
                        && !self.admission.is_stranger(&info.peer_id, now)
                        && !self.conns.recently_parted(&info.peer_id, now)
                        && fresh
                    {
                        self.dial_peer(info.peer_id, info.addrs);
                    }
                }
                None
            }
            // Kademlia's own bootstraps are cut at every maintenance round (see
            // `Network::cut_bootstraps`); one that reports before that is cut here.
            SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                id,
                result: kad::QueryResult::Bootstrap(_),
                step,
                ..
            })) => {
                if !step.last {
                    if let Some(mut query) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                        query.finish();
                    }
                }
                None
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(event)) => self.handle_sync(event),
            SwarmEvent::Behaviour(BehaviourEvent::Probe(event)) => match self.probes.handle(event)? {
                Handled::Event(event) => Some(NetEvent::Probe(event)),
                Handled::PartingFrom { peer, responder } => {
                    tracing::debug!(%peer, "the peer is parting from us");
                    self.stats.peers_parted_from_us += 1;
                    self.conns.parting_from(peer, Instant::now());
                    // The ack's content is not read: the notice needs no answer but the close.
                    self.respond_probe(
                        responder,
                        ProbeAck { acked: true, incarnation: 0, updates: Vec::new() },
                    );
                    None
                }
                Handled::PartedFrom(peer) => {
                    let _ = self.swarm.disconnect_peer_id(peer);
                    None
                }
            },
            // A peer without ping (`Unsupported`) is not dead; a timeout or a broken stream is.
            SwarmEvent::Behaviour(BehaviourEvent::Ping(libp2p::ping::Event {
                peer,
                connection,
                result: Err(error @ (libp2p::ping::Failure::Timeout | libp2p::ping::Failure::Other { .. })),
            })) => {
                // libp2p keeps a connection whose pings fail; a dead link must go, so that
                // `maintain` re-dials (over another route if there is one).
                tracing::info!(%peer, %error, "ping failed; closing the connection");
                self.stats.dead_connections_closed += 1;
                self.swarm.close_connection(connection);
                None
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(?peer_id, %error, "outgoing connection failed");
                None
            }
            _ => None,
        }
    }

    fn handle_sync(&mut self, event: request_response::Event<Inbound, SyncReply>) -> Option<NetEvent> {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request: Inbound::Valid(request), channel, .. } => {
                    Some(NetEvent::SyncRequest { peer, request, responder: Responder(channel) })
                }
                request_response::Message::Request {
                    request: Inbound::Malformed(reason), channel, ..
                } => Some(NetEvent::MalformedSyncRequest { peer, reason, responder: Responder(channel) }),
                request_response::Message::Response { request_id, response } => {
                    let (id, _) = self.outbound.remove(&request_id)?;
                    Some(NetEvent::SyncResponse { peer, id, reply: response })
                }
            },
            request_response::Event::OutboundFailure { request_id, error, .. } => {
                self.stats.sync_outbound_failures += 1;
                let (id, _) = self.outbound.remove(&request_id)?;
                Some(NetEvent::SyncFailed { id, error: error.to_string() })
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                // Timeouts and streams that broke; unreadable requests come as `Malformed`.
                self.stats.sync_inbound_failures += 1;
                tracing::debug!(%peer, %error, "inbound sync request failed");
                None
            }
            request_response::Event::ResponseSent { .. } => None,
        }
    }

    /// Identify decides whether a connected peer is of this network. Our identify protocol's
    /// name carries the network id too, so a peer of another network fails to negotiate it.
    fn handle_identify(&mut self, event: identify::Event) -> Option<NetEvent> {
        let now = Instant::now();
        let (peer, judged) = match event {
            identify::Event::Received { peer_id, info, .. } => {
                let speaks_ours = info.protocols.contains(&self.protocols.sync);
                let judged = self.admission.identified(peer_id, speaks_ours, now);
                if speaks_ours {
                    self.learn_addresses(peer_id, info);
                }
                (peer_id, judged)
            }
            identify::Event::Error { peer_id, error: StreamUpgradeError::NegotiationFailed, .. } => {
                (peer_id, self.admission.identified(peer_id, false, now))
            }
            // A peer whose protocols changed, e.g. a Kademlia client that became a server when
            // AutoNAT confirmed its address: Kademlia learns it only from us.
            identify::Event::Pushed { peer_id, info, .. } => {
                if info.protocols.contains(&self.protocols.sync) {
                    self.learn_addresses(peer_id, info);
                }
                return None;
            }
            // Timeouts and broken streams say nothing about the peer's protocols; a candidate
            // that never identifies itself is closed by `maintain` after the deadline.
            _ => return None,
        };
        match judged {
            Judged::NewMember => {
                self.conns.connected(peer, now);
                self.joined(peer);
                Some(NetEvent::PeerConnected(peer))
            }
            Judged::Stranger => {
                // Closed by `maintain` after a short grace (see `admission::CLOSE_GRACE`).
                tracing::info!(%peer, "closing a connection to a peer of another network");
                self.stranger(peer);
                None
            }
            Judged::Unchanged => None,
        }
    }

    /// A peer of this network is connected: a bootstrap peer seeds Kademlia (added only now, so
    /// that a stranger at a bootstrap address never enters the routing table), and on the first
    /// meeting (or while the routing table is small) a walk towards our own id fills the table
    /// with our neighbours. Not on every reconnection to a bootstrap peer: a walk dials a few
    /// dozen peers, and with bounded connections a node meets its bootstrap peers again and
    /// again (measured at N=50: such walks opened most of the ~18 connections per second that
    /// the trims then closed).
    fn joined(&mut self, peer: PeerId) {
        let bootstrap: Vec<Multiaddr> =
            self.bootstrap_peers.iter().filter(|(_, p)| **p == peer).map(|(a, _)| a.clone()).collect();
        if bootstrap.is_empty() {
            return;
        }
        for addr in bootstrap {
            self.swarm.behaviour_mut().kad.add_address(&peer, addr);
        }
        if !self.bootstrapped || self.routing_table_size() < self.config.target_peers {
            self.bootstrapped = true;
            let me = self.local_peer_id();
            self.walk(me);
        }
    }

    /// A Kademlia walk towards `target`, asking for the WALK_RESULTS closest peers rather than
    /// Kademlia's 20: every peer a walk asks is a connection opened (and soon trimmed), and the
    /// few closest are what the routing table needs.
    pub(super) fn walk(&mut self, target: PeerId) {
        self.last_walk = Some(Instant::now());
        self.swarm.behaviour_mut().kad.get_n_closest_peers(target, WALK_RESULTS);
    }

    /// Peers in Kademlia's routing table.
    fn routing_table_size(&mut self) -> usize {
        self.swarm.behaviour_mut().kad.kbuckets().map(|b| b.num_entries()).sum()
    }

    /// Counts a stranger and keeps it out of Kademlia (Kademlia adds only peers that speak its
    /// protocol, whose name carries the network id; this is for certainty).
    fn stranger(&mut self, peer: PeerId) {
        self.stats.strangers_closed += 1;
        self.swarm.behaviour_mut().kad.remove_peer(&peer);
    }

    /// Adds an identified udht peer's addresses to Kademlia (inbound peers are not added by kad
    /// itself), leaving out addresses nobody else could dial.
    fn learn_addresses(&mut self, peer: PeerId, info: identify::Info) {
        if !info.protocols.contains(&self.protocols.kad) {
            return;
        }
        let remote_is_loopback = is_loopback(&info.observed_addr);
        for addr in info.listen_addrs {
            if dialable(&addr, remote_is_loopback) {
                self.swarm.behaviour_mut().kad.add_address(&peer, addr);
            }
        }
    }
}
