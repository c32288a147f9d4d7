//! Reachability: which of our addresses others can dial, and what to do when none can.
//!
//! - Candidates: our listen addresses (this module's [`Candidates`] behaviour), the addresses
//!   peers observe us at (identify) and UPnP mappings (`--upnp`). AutoNAT v2 asks peers to dial
//!   each candidate back; a successful dial-back confirms it as an external address.
//! - A node with a confirmed direct address is public: it offers circuit relay v2 (unless
//!   `--no-relay-server`). One without is private once AutoNAT has failed for it (or after a
//!   grace): it reserves a slot on one or two connected relays and advertises the `/p2p-circuit`
//!   addresses; DCUtR upgrades relayed connections to direct ones where the NATs allow it.
//! - `candidates` adds the listen addresses to AutoNAT's candidates.
//! - The own record lists only what works: see [`own_address`].

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use libp2p::core::transport::ListenerId;
use libp2p::core::ConnectedPoint;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{autonat, dcutr, identify, relay, upnp, Multiaddr, PeerId, Swarm};
use serde::Serialize;

use super::addr::{host_and_port, is_circuit, is_loopback, is_unspecified};
use super::behaviour::{Behaviour, BehaviourEvent};
use crate::core::replica::OwnAddress;

/// Relays a private node reserves a slot on.
const MAX_RELAYS: usize = 2;
/// A node that AutoNAT has not judged by then (no peer tested it) looks for relays anyway.
const UNKNOWN_GRACE: Duration = Duration::from_secs(15);
/// A relay whose reservation failed is not asked again sooner.
const RELAY_RETRY: Duration = Duration::from_secs(30);

/// Whether others can dial this node directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reachability {
    /// A peer dialled one of our addresses back (or `--announce` says so).
    Public,
    /// Dial-backs failed and nothing is confirmed: reachable through relays only.
    Private,
    /// Not tested yet.
    #[default]
    Unknown,
}

impl Reachability {
    pub fn as_str(self) -> &'static str {
        match self {
            Reachability::Public => "public",
            Reachability::Private => "private",
            Reachability::Unknown => "unknown",
        }
    }
}

/// What `message_type 9` shows of reachability (the counters are in `NetStats`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReachStatus {
    pub reachability: Reachability,
    /// Confirmed external addresses (direct ones and relay circuits).
    pub external_addrs: Vec<String>,
    /// The relays holding a slot for us, as our circuit addresses through them.
    pub relay_reservations: Vec<String>,
}

/// Counters of reachability, part of `NetStats`.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct ReachCounters {
    pub hole_punches_tried: u64,
    pub hole_punches_succeeded: u64,
    pub relay_reservations_accepted: u64,
    pub relayed_circuits_served: u64,
}

/// The reachability state of a node.
pub(super) struct Reach {
    loopback_only: bool,
    relay_server_allowed: bool,
    relay_server_on: bool,
    announce: Vec<Multiaddr>,
    /// Confirmed external addresses, in the order they were confirmed.
    confirmed: Vec<Multiaddr>,
    autonat_failures: u64,
    started: Instant,
    /// Connected peers that offer a relay, with an address to reach them at.
    relays: HashMap<PeerId, Option<Multiaddr>>,
    /// The address we dialled each connected peer at (directly): the best one to name a relay by.
    dialed: HashMap<PeerId, Multiaddr>,
    /// Our relay listeners: the relay each asks for a slot.
    reservations: HashMap<ListenerId, PeerId>,
    /// Relays that refused us recently, or dropped our slot.
    relay_failed: HashMap<PeerId, Instant>,
    /// Open connections: to whom, and whether each is relayed.
    connections: HashMap<ConnectionId, (PeerId, bool)>,
    /// Circuits we relay now, by the peers at their ends (closing either end's connection would
    /// cut the circuit).
    circuits: HashMap<PeerId, usize>,
    pub counters: ReachCounters,
}

impl Reach {
    pub fn new(loopback_only: bool, relay_server_allowed: bool, announce: Vec<Multiaddr>) -> Self {
        Reach {
            loopback_only,
            relay_server_allowed,
            relay_server_on: false,
            announce,
            confirmed: Vec::new(),
            autonat_failures: 0,
            started: Instant::now(),
            relays: HashMap::new(),
            dialed: HashMap::new(),
            reservations: HashMap::new(),
            relay_failed: HashMap::new(),
            connections: HashMap::new(),
            circuits: HashMap::new(),
            counters: ReachCounters::default(),
        }
    }

    /// Whether an address may be advertised at all (and counts toward being public).
    fn advertisable(&self, addr: &Multiaddr) -> bool {
        !is_unspecified(addr) && (self.loopback_only || !is_loopback(addr))
    }

    /// Confirmed direct addresses we may advertise, `--announce` first.
    fn direct(&self) -> Vec<&Multiaddr> {
        let mut out: Vec<&Multiaddr> = Vec::new();
        for a in self.announce.iter().chain(&self.confirmed) {
            if !is_circuit(a) && self.advertisable(a) && !out.contains(&a) {
                out.push(a);
            }
        }
        out
    }

    pub fn reachability(&self) -> Reachability {
        if !self.direct().is_empty() {
            Reachability::Public
        } else if self.autonat_failures > 0 {
            Reachability::Private
        } else {
            Reachability::Unknown
        }
    }

    pub fn status(&self) -> ReachStatus {
        ReachStatus {
            reachability: self.reachability(),
            external_addrs: self.confirmed.iter().map(|a| a.to_string()).collect(),
            // The addresses the relay client confirmed end with our id (a peer may also observe
            // us at a circuit address, without it).
            relay_reservations: self
                .confirmed
                .iter()
                .filter(|a| is_circuit(a) && matches!(a.iter().last(), Some(Protocol::P2p(_))))
                .map(|a| a.to_string())
                .collect(),
        }
    }

    /// (direct, relayed) connections open now.
    pub fn connection_counts(&self) -> (u64, u64) {
        let relayed = self.connections.values().filter(|(_, r)| *r).count() as u64;
        (self.connections.len() as u64 - relayed, relayed)
    }

    /// What the own record advertises (see [`own_address`]).
    pub fn own_address(&self, me: PeerId, listen: &[Multiaddr], configured: &[Multiaddr]) -> OwnAddress {
        own_address(me, self.loopback_only, listen, &self.confirmed, &self.announce, configured)
    }

    /// Peers whose connections reachability needs: the relays holding our slots, peers we reach
    /// (or who reach us) through a relay, and the ends of circuits we relay. The connection
    /// manager keeps them.
    pub fn needed_peers(&self) -> impl Iterator<Item = PeerId> + '_ {
        let relayed = self.connections.values().filter(|(_, r)| *r).map(|(p, _)| *p);
        self.reservations.values().copied().chain(relayed).chain(self.circuits.keys().copied())
    }

    /// Takes note of a swarm event; true when the own record's addresses or the reachability
    /// may have changed.
    pub fn observe(&mut self, event: &SwarmEvent<BehaviourEvent>) -> bool {
        match event {
            SwarmEvent::ExternalAddrConfirmed { address } => {
                tracing::info!(%address, "external address confirmed");
                if !self.confirmed.contains(address) {
                    self.confirmed.push(address.clone());
                }
                true
            }
            SwarmEvent::ExternalAddrExpired { address } => {
                tracing::info!(%address, "external address expired");
                self.confirmed.retain(|a| a != address);
                true
            }
            SwarmEvent::ConnectionEstablished { peer_id, connection_id, endpoint, .. } => {
                self.connections.insert(*connection_id, (*peer_id, endpoint.is_relayed()));
                if let ConnectedPoint::Dialer { address, .. } = endpoint {
                    if !endpoint.is_relayed() {
                        self.dialed.entry(*peer_id).or_insert_with(|| without_p2p(address));
                    }
                }
                false
            }
            SwarmEvent::ConnectionClosed { peer_id, connection_id, num_established, .. } => {
                self.connections.remove(connection_id);
                if *num_established == 0 {
                    self.relays.remove(peer_id);
                    self.dialed.remove(peer_id);
                }
                false
            }
            SwarmEvent::ListenerClosed { listener_id, reason, .. } => {
                if let Some(relay) = self.reservations.remove(listener_id) {
                    tracing::info!(%relay, ?reason, "relay reservation ended");
                    self.relay_failed.insert(relay, Instant::now());
                }
                false
            }
            SwarmEvent::Behaviour(event) => self.observe_behaviour(event),
            _ => false,
        }
    }

    fn observe_behaviour(&mut self, event: &BehaviourEvent) -> bool {
        match event {
            BehaviourEvent::AutonatClient(autonat::v2::client::Event {
                tested_addr, server, result, ..
            }) => {
                match result {
                    Ok(()) => tracing::debug!(%tested_addr, %server, "AutoNAT: dialled back"),
                    Err(error) => {
                        tracing::info!(%tested_addr, %server, %error, "AutoNAT: not reachable at this address");
                        self.autonat_failures += 1;
                    }
                }
                true
            }
            BehaviourEvent::Dcutr(dcutr::Event { remote_peer_id, result }) => {
                self.counters.hole_punches_tried += 1;
                match result {
                    Ok(_) => {
                        self.counters.hole_punches_succeeded += 1;
                        tracing::info!(peer = %remote_peer_id, "hole punch: direct connection");
                    }
                    Err(error) => tracing::info!(peer = %remote_peer_id, %error, "hole punch failed"),
                }
                false
            }
            BehaviourEvent::RelayClient(relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                renewal: false,
                ..
            }) => {
                tracing::info!(relay = %relay_peer_id, "relay reservation accepted");
                self.counters.relay_reservations_accepted += 1;
                false
            }
            BehaviourEvent::Relay(relay::Event::CircuitReqAccepted { src_peer_id, dst_peer_id }) => {
                self.counters.relayed_circuits_served += 1;
                for end in [src_peer_id, dst_peer_id] {
                    *self.circuits.entry(*end).or_default() += 1;
                }
                false
            }
            BehaviourEvent::Relay(relay::Event::CircuitClosed { src_peer_id, dst_peer_id, error }) => {
                if let Some(error) = error {
                    tracing::debug!(src = %src_peer_id, dst = %dst_peer_id, %error, "relayed circuit closed");
                }
                for end in [src_peer_id, dst_peer_id] {
                    if let Some(n) = self.circuits.get_mut(end) {
                        *n -= 1;
                        if *n == 0 {
                            self.circuits.remove(end);
                        }
                    }
                }
                false
            }
            BehaviourEvent::Upnp(event) => {
                match event {
                    upnp::Event::NewExternalAddr { external_addr, .. } => {
                        tracing::info!(address = %external_addr, "UPnP: the router maps a port to us")
                    }
                    upnp::Event::ExpiredExternalAddr { external_addr, .. } => {
                        tracing::info!(address = %external_addr, "UPnP: the port mapping expired")
                    }
                    upnp::Event::GatewayNotFound => tracing::info!("UPnP: no gateway found"),
                    upnp::Event::NonRoutableGateway => {
                        tracing::info!("UPnP: the gateway is not on the public internet itself")
                    }
                }
                false
            }
            BehaviourEvent::Identify(
                identify::Event::Received { peer_id, info, .. }
                | identify::Event::Pushed { peer_id, info, .. },
            ) => {
                self.identified(*peer_id, info);
                false
            }
            _ => false,
        }
    }

    /// Notes whether a peer offers a relay, and an address of it for the reservation.
    fn identified(&mut self, peer: PeerId, info: &identify::Info) {
        if !info.protocols.contains(&relay::HOP_PROTOCOL_NAME) {
            self.relays.remove(&peer);
            return;
        }
        let listed = info.listen_addrs.iter().find(|a| !is_circuit(a) && self.advertisable(a));
        let addr = self.dialed.get(&peer).or(listed).cloned();
        self.relays.insert(peer, addr);
    }

    /// Runs every maintenance round: the relay server on while public, relay slots while not.
    pub fn maintain(&mut self, swarm: &mut Swarm<Behaviour>) {
        let reachability = self.reachability();
        let serve = self.relay_server_allowed && reachability == Reachability::Public;
        if serve != self.relay_server_on {
            self.relay_server_on = serve;
            tracing::info!(on = serve, "relay server");
            let status = if serve { relay::Status::Enable } else { relay::Status::Disable };
            swarm.behaviour_mut().relay.set_status(Some(status));
        }
        let wanted = match reachability {
            _ if self.loopback_only => 0,
            Reachability::Public => 0,
            Reachability::Private => MAX_RELAYS,
            Reachability::Unknown if self.started.elapsed() >= UNKNOWN_GRACE => MAX_RELAYS,
            Reachability::Unknown => 0,
        };
        if wanted == 0 {
            for (listener, relay) in self.reservations.drain() {
                tracing::info!(%relay, "publicly reachable: giving the relay slot up");
                swarm.remove_listener(listener);
            }
            return;
        }
        let now = Instant::now();
        self.relay_failed.retain(|_, t| now.duration_since(*t) < RELAY_RETRY);
        while self.reservations.len() < wanted {
            let taken: HashSet<&PeerId> = self.reservations.values().collect();
            let Some((relay, addr)) = self
                .relays
                .iter()
                .filter(|(p, _)| !taken.contains(p) && !self.relay_failed.contains_key(p))
                .find_map(|(p, a)| a.clone().map(|a| (*p, a)))
            else {
                return;
            };
            let circuit = addr.with(Protocol::P2p(relay)).with(Protocol::P2pCircuit);
            match swarm.listen_on(circuit.clone()) {
                Ok(listener) => {
                    tracing::info!(%circuit, "asking a relay for a slot");
                    self.reservations.insert(listener, relay);
                }
                Err(error) => {
                    tracing::info!(%circuit, %error, "cannot ask the relay for a slot");
                    self.relay_failed.insert(relay, now);
                }
            }
        }
    }
}

/// What the own record advertises:
/// - a node listening only on loopback (tests, one host): its listen addresses, as before;
/// - otherwise the confirmed external addresses (or, while none is confirmed, the relay circuit
///   addresses), plus `--announce`; never loopback or unspecified addresses. Private addresses
///   appear only when a peer confirmed them (a LAN, a docker network).
///
/// `ip`/`port` are the best direct address's (TCP preferred); every address gets `/p2p/<me>`.
pub(super) fn own_address(
    me: PeerId,
    loopback_only: bool,
    listen: &[Multiaddr],
    confirmed: &[Multiaddr],
    announce: &[Multiaddr],
    configured: &[Multiaddr],
) -> OwnAddress {
    let ok = |a: &&Multiaddr| !is_unspecified(a) && (loopback_only || !is_loopback(a));
    // Without `/p2p/` at the end, so that a circuit confirmed with and without our id is one.
    let mut direct: Vec<Multiaddr> = Vec::new();
    let mut circuits: Vec<Multiaddr> = Vec::new();
    let sources: Vec<&Multiaddr> = if loopback_only {
        announce.iter().chain(listen).chain(confirmed.iter().filter(|a| is_circuit(a))).collect()
    } else {
        announce.iter().chain(confirmed).collect()
    };
    for a in sources.into_iter().filter(ok).map(without_p2p_tail) {
        let list = if is_circuit(&a) { &mut circuits } else { &mut direct };
        if !list.contains(&a) {
            list.push(a);
        }
    }
    let chosen = if direct.is_empty() { &circuits } else { &direct };
    let tcp_first = direct.iter().filter(|a| is_tcp(a)).chain(direct.iter());
    let (ip, port) = tcp_first
        .chain(if loopback_only { configured } else { &[] })
        .find_map(host_and_port)
        .unwrap_or_default();
    OwnAddress {
        ip,
        port: if port == 0 { String::new() } else { port.to_string() },
        addrs: chosen.iter().map(|a| a.clone().with(Protocol::P2p(me)).to_string()).collect(),
    }
}

fn is_tcp(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::Tcp(_)))
}

/// The address without any `/p2p/<id>` (a relay's address to put in a circuit address).
fn without_p2p(addr: &Multiaddr) -> Multiaddr {
    addr.iter().filter(|p| !matches!(p, Protocol::P2p(_))).collect()
}

/// The address without a trailing `/p2p/<id>` (circuit addresses end with ours already).
fn without_p2p_tail(addr: &Multiaddr) -> Multiaddr {
    let mut a = addr.clone();
    if matches!(a.iter().last(), Some(Protocol::P2p(_))) {
        a.pop();
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_record_lists_confirmed_addresses_and_never_loopback_or_unconfirmed_ones() {
        let me = PeerId::random();
        let listen = [a("/ip4/127.0.0.1/tcp/4001"), a("/ip4/192.168.1.2/tcp/4001")];
        let confirmed = [
            a("/ip4/127.0.0.1/tcp/4001"),
            a("/ip4/198.18.0.5/udp/4001/quic-v1"),
            a("/ip4/198.18.0.5/tcp/4001"),
        ];
        let own = own_address(me, false, &listen, &confirmed, &[], &[]);
        assert_eq!(own.ip, "198.18.0.5", "the TCP address fills ip/port");
        assert_eq!(own.port, "4001");
        assert_eq!(
            own.addrs,
            vec![
                format!("/ip4/198.18.0.5/udp/4001/quic-v1/p2p/{me}"),
                format!("/ip4/198.18.0.5/tcp/4001/p2p/{me}")
            ]
        );
        // Nothing confirmed: nothing advertised, not the private listen address.
        let own = own_address(me, false, &listen, &[], &[], &[]);
        assert!(own.addrs.is_empty() && own.ip.is_empty(), "{own:?}");
    }

    #[test]
    fn a_private_node_advertises_its_relay_circuits_until_a_direct_address_is_confirmed() {
        let me = PeerId::random();
        let relay = PeerId::random();
        let circuit = a(&format!("/ip4/198.18.0.1/tcp/4001/p2p/{relay}/p2p-circuit/p2p/{me}"));
        let observed = a(&format!("/ip4/198.18.0.1/tcp/4001/p2p/{relay}/p2p-circuit"));
        let own = own_address(me, false, &[], &[circuit.clone(), observed], &[], &[]);
        assert_eq!(own.addrs, vec![circuit.to_string()], "one /p2p/<me>, not two, and once");
        assert!(own.ip.is_empty(), "a circuit is not a direct address");
        let direct = a("/ip4/192.168.1.2/tcp/4001");
        let own = own_address(me, false, &[], &[circuit, direct], &[], &[]);
        assert_eq!(
            own.addrs,
            vec![format!("/ip4/192.168.1.2/tcp/4001/p2p/{me}")],
            "confirmed on a LAN: kept"
        );
    }

    #[test]
    fn announced_addresses_come_first_and_loopback_only_nodes_advertise_their_listen_addresses() {
        let me = PeerId::random();
        let announce = [a("/dns4/node.example/tcp/4001")];
        let own = own_address(me, false, &[], &[a("/ip4/198.18.0.7/tcp/4001")], &announce, &[]);
        assert_eq!(own.ip, "node.example");
        assert_eq!(own.addrs.len(), 2);
        let listen = [a("/ip4/127.0.0.1/tcp/4100")];
        let own = own_address(me, true, &listen, &[], &[], &listen);
        assert_eq!((own.ip.as_str(), own.port.as_str()), ("127.0.0.1", "4100"));
        assert_eq!(own.addrs, vec![format!("/ip4/127.0.0.1/tcp/4100/p2p/{me}")]);
    }
}
