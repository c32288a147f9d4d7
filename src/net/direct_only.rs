//! [`DirectOnly`]: a behaviour that runs on direct connections only. AutoNAT's server sends and
//! takes 30 to 100 KB per test, which over a relayed connection would use up the relay's circuit
//! limit (128 KiB) and close it before a hole punch could upgrade it; a dial-back over a relay
//! would prove nothing either.

use std::task::{Context, Poll};

use either::Either;
use libp2p::core::transport::PortUse;
use libp2p::core::Endpoint;
use libp2p::swarm::{
    dummy, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};

use super::addr::is_circuit;

/// `B` on direct connections; nothing (a dummy handler: its protocols are not offered) on
/// relayed ones.
pub struct DirectOnly<B>(pub B);

impl<B: NetworkBehaviour> NetworkBehaviour for DirectOnly<B> {
    type ConnectionHandler = Either<THandler<B>, dummy::ConnectionHandler>;
    type ToSwarm = B::ToSwarm;

    fn handle_pending_inbound_connection(
        &mut self,
        id: ConnectionId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.0.handle_pending_inbound_connection(id, local, remote)
    }

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        if is_circuit(local) || is_circuit(remote) {
            return Ok(Either::Right(dummy::ConnectionHandler));
        }
        self.0.handle_established_inbound_connection(id, peer, local, remote).map(Either::Left)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: Option<PeerId>,
        addresses: &[Multiaddr],
        effective_role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.0.handle_pending_outbound_connection(id, peer, addresses, effective_role)
    }

    fn handle_established_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role_override: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        if is_circuit(addr) {
            return Ok(Either::Right(dummy::ConnectionHandler));
        }
        self.0
            .handle_established_outbound_connection(id, peer, addr, role_override, port_use)
            .map(Either::Left)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        self.0.on_swarm_event(event)
    }

    fn on_connection_handler_event(&mut self, peer: PeerId, id: ConnectionId, event: THandlerOutEvent<Self>) {
        match event {
            Either::Left(event) => self.0.on_connection_handler_event(peer, id, event),
            Either::Right(never) => libp2p::core::util::unreachable(never),
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        self.0.poll(cx).map(|action| action.map_in(Either::Left))
    }
}
