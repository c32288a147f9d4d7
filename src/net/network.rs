//! [`Network`]: the swarm and everything purely about connectivity (listening, bootstrap,
//! discovery, keeping enough connections). It hands the node task a few app-level events.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use futures::task::AtomicWaker;
use futures::StreamExt;
use libp2p::core::ConnectedPoint;
use libp2p::gossipsub::{self, MessageAcceptance, MessageId, PublishError};
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, ResponseChannel};
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::SwarmEvent;
use libp2p::{identify, kad, Multiaddr, PeerId, Swarm};
use rand::seq::IteratorRandom;
use serde::Serialize;

use crate::core::sync::{SyncRequest, SyncResponse};

use super::behaviour::{build_swarm, Behaviour, BehaviourEvent, Protocols};
use super::codec::Inbound;
use super::NetError;

/// A peer is not re-dialled sooner than this after a dial attempt.
const REDIAL_BACKOFF: Duration = Duration::from_secs(3);
/// Most new dials per maintenance round, so a large routing table cannot flood the node.
const MAX_DIALS_PER_ROUND: usize = 8;

/// Settings of the network.
#[derive(Debug, Clone)]
pub struct NetConfig {
    pub listen: Vec<Multiaddr>,
    /// Peers to join through; with or without `/p2p/<id>`.
    pub bootstrap: Vec<Multiaddr>,
    /// Addresses others should dial; when given, only these are advertised.
    pub announce: Vec<Multiaddr>,
    /// Goes into every protocol name, so separate networks never merge.
    pub network_id: String,
    /// Keep dialling known peers until this many are connected.
    pub target_peers: usize,
}

/// A received gossip message, to be judged with [`Network::report_gossip`].
#[derive(Debug)]
pub struct GossipId {
    id: MessageId,
    source: PeerId,
}

/// Where an anti-entropy response goes.
#[derive(Debug)]
pub struct Responder(ResponseChannel<SyncResponse>);

/// The verdict on a gossip message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Valid and new: forward it.
    Accept,
    /// Valid but nothing new: do not forward, no penalty.
    Ignore,
    /// Invalid: drop it and lower the sender's score.
    Reject,
}

/// What the network tells the node task.
#[derive(Debug)]
pub enum NetEvent {
    /// The first connection to a peer opened.
    PeerConnected(PeerId),
    PeerDisconnected(PeerId),
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
    SyncResponse {
        peer: PeerId,
        response: SyncResponse,
    },
    SyncFailed {
        peer: PeerId,
        error: String,
    },
    /// Our listen addresses changed (e.g. the real port of `tcp/0` became known).
    ListenAddrsChanged,
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
    /// Connections closed because their pings failed.
    pub dead_connections_closed: u64,
}

/// Tells the node task that the swarm has something to do (see [`Network::next_event`]).
#[derive(Default)]
struct SwarmWake {
    ready: AtomicBool,
    task: AtomicWaker,
}

impl Wake for SwarmWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.ready.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// The swarm and its connectivity state.
pub struct Network {
    swarm: Swarm<Behaviour>,
    wake: Arc<SwarmWake>,
    /// The waker the swarm is polled with: it sets `wake.ready`, then wakes the node task.
    swarm_waker: Waker,
    protocols: Protocols,
    config: NetConfig,
    listen_addrs: Vec<Multiaddr>,
    /// Bootstrap addresses without `/p2p/`, with the peer we found there.
    bootstrap_peers: HashMap<Multiaddr, PeerId>,
    last_dial: HashMap<PeerId, Instant>,
    blocked: HashSet<PeerId>,
    stats: NetStats,
}

impl Network {
    /// Builds the swarm, starts listening and dials the bootstrap peers.
    pub fn start(key: Keypair, config: NetConfig) -> Result<Network, NetError> {
        let protocols = Protocols::new(&config.network_id)?;
        let mut swarm = build_swarm(key, &config, &protocols)?;
        for addr in &config.listen {
            swarm
                .listen_on(addr.clone())
                .map_err(|e| NetError::Listen { addr: addr.to_string(), reason: e.to_string() })?;
        }
        for addr in &config.announce {
            swarm.add_external_address(addr.clone());
        }
        let wake = Arc::new(SwarmWake { ready: AtomicBool::new(true), task: AtomicWaker::new() });
        let mut net = Network {
            swarm,
            swarm_waker: Waker::from(wake.clone()),
            wake,
            protocols,
            config,
            listen_addrs: Vec::new(),
            bootstrap_peers: HashMap::new(),
            last_dial: HashMap::new(),
            blocked: HashSet::new(),
            stats: NetStats::default(),
        };
        net.dial_bootstrap();
        Ok(net)
    }

    pub fn local_peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    pub fn stats(&self) -> NetStats {
        self.stats
    }

    /// Addresses we listen on (the unspecified ones expanded to real interfaces).
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.listen_addrs.clone()
    }

    /// What we advertise: `--announce` if given, else our listen addresses.
    pub fn advertised_addrs(&self) -> Vec<Multiaddr> {
        if self.config.announce.is_empty() {
            self.listen_addrs.clone()
        } else {
            self.config.announce.clone()
        }
    }

    pub fn connected_peers(&self) -> Vec<PeerId> {
        self.swarm.connected_peers().copied().collect()
    }

    pub fn random_connected_peer(&self) -> Option<PeerId> {
        self.swarm.connected_peers().copied().choose(&mut rand::thread_rng())
    }

    pub fn peer_score(&self, peer: &PeerId) -> Option<f64> {
        self.swarm.behaviour().gossipsub.peer_score(peer)
    }

    /// Cuts a peer off (both ways) until [`Network::unblock`]: used to make partitions in tests.
    pub fn block(&mut self, peer: PeerId) {
        self.needs_poll();
        self.blocked.insert(peer);
        self.swarm.behaviour_mut().blocked.block_peer(peer);
    }

    pub fn unblock(&mut self, peer: PeerId) {
        self.needs_poll();
        self.blocked.remove(&peer);
        self.swarm.behaviour_mut().blocked.unblock_peer(peer);
    }

    /// Publishes a delta to every subscribed peer. No peers yet is normal, not an error.
    pub fn publish(&mut self, data: Vec<u8>) {
        self.needs_poll();
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
        self.needs_poll();
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

    pub fn request_sync(&mut self, peer: &PeerId, request: SyncRequest) {
        self.needs_poll();
        self.stats.sync_requests_sent += 1;
        self.swarm.behaviour_mut().sync.send_request(peer, Inbound::Valid(request));
    }

    pub fn respond_sync(&mut self, responder: Responder, response: SyncResponse) {
        self.needs_poll();
        // Fails only if the peer is gone or timed out; nothing to do then.
        self.stats.sync_responses_sent += 1;
        let _ = self.swarm.behaviour_mut().sync.send_response(responder.0, response);
    }

    /// Keeps the node connected: re-dials the bootstrap peers when none of them is connected (a
    /// healed partition re-merges by itself) and dials known peers while below the target.
    pub fn maintain(&mut self) {
        self.needs_poll();
        let connected: HashSet<PeerId> = self.swarm.connected_peers().copied().collect();
        let bootstrap_connected =
            self.bootstrap_peers.values().any(|p| connected.contains(p)) || self.config.bootstrap.is_empty();
        if connected.is_empty() || !bootstrap_connected {
            self.dial_bootstrap();
        }
        if connected.len() >= self.config.target_peers {
            return;
        }
        let mut candidates: Vec<(PeerId, Vec<Multiaddr>)> = Vec::new();
        for bucket in self.swarm.behaviour_mut().kad.kbuckets() {
            for entry in bucket.iter() {
                let peer = *entry.node.key.preimage();
                if !connected.contains(&peer) {
                    candidates.push((peer, entry.node.value.iter().cloned().collect()));
                }
            }
        }
        let now = Instant::now();
        self.last_dial.retain(|_, t| now.duration_since(*t) < REDIAL_BACKOFF);
        let mut dials = 0;
        for (peer, addrs) in candidates {
            if dials >= MAX_DIALS_PER_ROUND || connected.len() + dials >= self.config.target_peers {
                break;
            }
            if self.blocked.contains(&peer) || self.last_dial.contains_key(&peer) {
                continue;
            }
            self.dial_peer(peer, addrs);
            dials += 1;
        }
        if connected.len() + dials < self.config.target_peers && !connected.is_empty() {
            // Look further: a random walk finds peers our table does not hold yet.
            self.swarm.behaviour_mut().kad.get_closest_peers(PeerId::random());
        }
    }

    fn dial_peer(&mut self, peer: PeerId, addrs: Vec<Multiaddr>) {
        self.last_dial.insert(peer, Instant::now());
        self.stats.dials += 1;
        let opts = DialOpts::peer_id(peer).addresses(addrs).build();
        if let Err(e) = self.swarm.dial(opts) {
            tracing::debug!(%peer, error = %e, "dial failed");
        }
    }

    fn dial_bootstrap(&mut self) {
        for addr in self.config.bootstrap.clone() {
            match peer_of(&addr) {
                Some(peer) if peer == self.local_peer_id() => continue,
                Some(peer) => {
                    if self.swarm.is_connected(&peer) || self.blocked.contains(&peer) {
                        continue;
                    }
                    self.swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
                }
                None => {
                    if let Some(peer) = self.bootstrap_peers.get(&addr) {
                        if self.swarm.is_connected(peer) || self.blocked.contains(peer) {
                            continue;
                        }
                    }
                }
            }
            self.stats.dials += 1;
            if let Err(e) = self.swarm.dial(addr.clone()) {
                tracing::debug!(%addr, error = %e, "bootstrap dial failed");
            }
        }
    }

    /// The swarm has work queued by a call from the node task: poll it on the next turn.
    fn needs_poll(&self) {
        self.wake.ready.store(true, Ordering::Release);
    }

    /// The next event the node task should see; everything else is handled here.
    /// Cancel-safe: nothing is held across polls.
    pub async fn next_event(&mut self) -> NetEvent {
        std::future::poll_fn(|cx| self.poll_event(cx)).await
    }

    /// Polls the swarm only if something woke it (or we called into it) since it last returned
    /// `Pending`: polling an idle swarm costs more than serving a get, and the node task is woken
    /// for every manager command.
    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<NetEvent> {
        self.wake.task.register(cx.waker());
        let waker = self.swarm_waker.clone();
        while self.wake.ready.swap(false, Ordering::AcqRel) {
            let mut inner = Context::from_waker(&waker);
            while let Poll::Ready(Some(event)) = self.swarm.poll_next_unpin(&mut inner) {
                if let Some(e) = self.handle(event) {
                    self.needs_poll(); // more may be queued
                    return Poll::Ready(e);
                }
            }
        }
        Poll::Pending
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
            SwarmEvent::ConnectionEstablished { peer_id, endpoint, num_established, .. } => {
                if let ConnectedPoint::Dialer { address, .. } = &endpoint {
                    let bare: Multiaddr = address.iter().filter(|p| !matches!(p, Protocol::P2p(_))).collect();
                    if self.config.bootstrap.contains(&bare) || self.config.bootstrap.contains(address) {
                        self.bootstrap_peers.insert(bare.clone(), peer_id);
                        self.swarm.behaviour_mut().kad.add_address(&peer_id, bare);
                        let _ = self.swarm.behaviour_mut().kad.bootstrap();
                    }
                }
                (num_established.get() == 1).then_some(NetEvent::PeerConnected(peer_id))
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                Some(NetEvent::PeerDisconnected(peer_id))
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
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                self.learn_addresses(peer_id, info);
                None
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                result: kad::QueryResult::GetClosestPeers(Ok(ok)),
                ..
            })) => {
                let connected = self.swarm.connected_peers().count();
                let wanted = self.config.target_peers.saturating_sub(connected);
                let now = Instant::now();
                for info in ok.peers.into_iter().take(wanted) {
                    let fresh = self
                        .last_dial
                        .get(&info.peer_id)
                        .is_none_or(|t| now.duration_since(*t) >= REDIAL_BACKOFF);
                    if info.peer_id != self.local_peer_id()
                        && !self.swarm.is_connected(&info.peer_id)
                        && !self.blocked.contains(&info.peer_id)
                        && fresh
                    {
                        self.dial_peer(info.peer_id, info.addrs);
                    }
                }
                None
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(event)) => self.handle_sync(event),
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

    fn handle_sync(&mut self, event: request_response::Event<Inbound, SyncResponse>) -> Option<NetEvent> {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request: Inbound::Valid(request), channel, .. } => {
                    Some(NetEvent::SyncRequest { peer, request, responder: Responder(channel) })
                }
                request_response::Message::Request {
                    request: Inbound::Malformed(reason), channel, ..
                } => Some(NetEvent::MalformedSyncRequest { peer, reason, responder: Responder(channel) }),
                request_response::Message::Response { response, .. } => {
                    Some(NetEvent::SyncResponse { peer, response })
                }
            },
            request_response::Event::OutboundFailure { peer, error, .. } => {
                self.stats.sync_outbound_failures += 1;
                Some(NetEvent::SyncFailed { peer, error: error.to_string() })
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

    /// Adds an identified udht peer's addresses to Kademlia (inbound peers are not added by kad
    /// itself), leaving out addresses nobody else could dial.
    fn learn_addresses(&mut self, peer: PeerId, info: identify::Info) {
        if !info.protocols.contains(&self.protocols.kad) {
            return;
        }
        let remote_is_loopback = super::is_loopback(&info.observed_addr);
        for addr in info.listen_addrs {
            if dialable(&addr, remote_is_loopback) {
                self.swarm.behaviour_mut().kad.add_address(&peer, addr);
            }
        }
    }
}

/// The peer id at the end of a `/p2p/<id>` address.
fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        Protocol::P2p(id) => Some(id),
        _ => None,
    })
}

/// An address worth putting in the DHT: not unspecified, not a relay circuit, and loopback only
/// between nodes on one host.
fn dialable(addr: &Multiaddr, loopback_ok: bool) -> bool {
    addr.iter().all(|p| match p {
        Protocol::Ip4(ip) => !ip.is_unspecified() && (loopback_ok || !ip.is_loopback()),
        Protocol::Ip6(ip) => !ip.is_unspecified() && (loopback_ok || !ip.is_loopback()),
        Protocol::P2pCircuit => false,
        _ => true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dialable_addresses_reach_the_dht() {
        let a = |s: &str| s.parse::<Multiaddr>().unwrap();
        assert!(dialable(&a("/ip4/10.1.2.3/tcp/4001"), false));
        assert!(dialable(&a("/dns4/node1/tcp/4001"), false));
        assert!(!dialable(&a("/ip4/0.0.0.0/tcp/4001"), true));
        assert!(!dialable(&a("/ip4/127.0.0.1/tcp/4001"), false));
        assert!(dialable(&a("/ip4/127.0.0.1/tcp/4001"), true));
    }
}
