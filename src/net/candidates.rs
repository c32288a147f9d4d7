//! A behaviour that offers our listen addresses to AutoNAT as candidates, and the other
//! transport's twin of an observed address.

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::task::{Context, Poll, Waker};

use libp2p::core::transport::PortUse;
use libp2p::core::Endpoint;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{
    dummy, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};

use super::addr::{is_circuit, is_loopback, is_unspecified};

/// A behaviour that offers our listen addresses to AutoNAT as candidates (by default it tests
/// only the addresses peers observed us at, which behind a NAT are the router's): on a LAN or a
/// docker network, or a public host, the listen address is the one that works. Loopback
/// addresses only for a node listening only on loopback.
///
/// It also offers, for an address observed on TCP, the same IP and port on QUIC (and the other
/// way round) when we listen on both with that port: a port-preserving NAT maps both alike, and a
/// peer connected to us over one transport only would otherwise never learn the other, which
/// DCUtR needs (a QUIC hole punch succeeds where TCP's simultaneous open loses to the router's
/// reset).
pub struct Candidates {
    loopback_only: bool,
    tcp_ports: HashSet<u16>,
    quic_ports: HashSet<u16>,
    /// Twins already offered (bounded by [`MAX_TWINS`]).
    twins: HashSet<Multiaddr>,
    pending: VecDeque<Multiaddr>,
    waker: Option<Waker>,
}

/// Most twin addresses offered: one per observed IP in practice.
const MAX_TWINS: usize = 64;

impl Candidates {
    pub(super) fn new(loopback_only: bool) -> Self {
        Candidates {
            loopback_only,
            tcp_ports: HashSet::new(),
            quic_ports: HashSet::new(),
            twins: HashSet::new(),
            pending: VecDeque::new(),
            waker: None,
        }
    }

    fn offer(&mut self, addr: Multiaddr) {
        self.pending.push_back(addr);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    /// The same IP and port on the other transport, if we listen on it with that port.
    fn twin(&self, addr: &Multiaddr) -> Option<Multiaddr> {
        let mut parts = addr.iter();
        let ip = parts.next().filter(|p| matches!(p, Protocol::Ip4(_) | Protocol::Ip6(_)))?;
        match (parts.next()?, parts.next()) {
            (Protocol::Tcp(port), _) if self.quic_ports.contains(&port) => {
                Some(Multiaddr::empty().with(ip).with(Protocol::Udp(port)).with(Protocol::QuicV1))
            }
            (Protocol::Udp(port), Some(Protocol::QuicV1)) if self.tcp_ports.contains(&port) => {
                Some(Multiaddr::empty().with(ip).with(Protocol::Tcp(port)))
            }
            _ => None,
        }
    }
}

/// The port of a `/ip*/.../tcp/P` or `/ip*/.../udp/P/quic-v1` listen address, and whether it is QUIC.
fn listen_port(addr: &Multiaddr) -> Option<(u16, bool)> {
    let mut parts = addr.iter().skip(1);
    match (parts.next()?, parts.next()) {
        (Protocol::Tcp(port), _) => Some((port, false)),
        (Protocol::Udp(port), Some(Protocol::QuicV1)) => Some((port, true)),
        _ => None,
    }
}

impl NetworkBehaviour for Candidates {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::NewListenAddr(new) => {
                let addr = new.addr;
                if is_circuit(addr) {
                    return;
                }
                match listen_port(addr) {
                    Some((port, true)) => self.quic_ports.insert(port),
                    Some((port, false)) => self.tcp_ports.insert(port),
                    None => false,
                };
                if !is_unspecified(addr) && (self.loopback_only || !is_loopback(addr)) {
                    self.offer(addr.clone());
                }
            }
            FromSwarm::NewExternalAddrCandidate(candidate) => {
                let Some(twin) = self.twin(candidate.addr) else { return };
                if self.twins.len() < MAX_TWINS && self.twins.insert(twin.clone()) {
                    self.offer(twin);
                }
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(&mut self, _: PeerId, _: ConnectionId, event: THandlerOutEvent<Self>) {
        libp2p::core::util::unreachable(event)
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ToSwarm<Infallible, THandlerInEvent<Self>>> {
        match self.pending.pop_front() {
            Some(addr) => Poll::Ready(ToSwarm::NewExternalAddrCandidate(addr)),
            None => {
                self.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_observed_address_has_a_twin_on_the_other_transport_only_on_our_listen_port() {
        let mut c = Candidates::new(false);
        c.tcp_ports.insert(4001);
        c.quic_ports.insert(4001);
        let a = |s: &str| s.parse::<Multiaddr>().unwrap();
        assert_eq!(c.twin(&a("/ip4/198.18.0.11/tcp/4001")), Some(a("/ip4/198.18.0.11/udp/4001/quic-v1")));
        assert_eq!(c.twin(&a("/ip4/198.18.0.11/udp/4001/quic-v1")), Some(a("/ip4/198.18.0.11/tcp/4001")));
        assert_eq!(c.twin(&a("/ip4/198.18.0.11/tcp/53122")), None, "a NAT that changed the port");
        assert_eq!(c.twin(&a("/dns4/x/tcp/4001")), None);
    }
}
