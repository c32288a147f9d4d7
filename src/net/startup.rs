//! What the network checks and prepares before it starts: the listen addresses it can use, that
//! their ports are free, and the stored table's peers to rejoin through.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

use super::addr::{peer_of, NetError};
use super::config::NetConfig;

/// Most stored peers dialled to rejoin: a few are enough to find the rest.
pub(super) const MAX_REJOIN_PEERS: usize = 8;

/// The listen addresses to use: QUIC ones left out in a private network (pnet only wraps TCP
/// streams; a QUIC connection would bypass the key), with a log line saying so.
pub(super) fn usable_listen_addrs(config: &NetConfig) -> Vec<Multiaddr> {
    let (quic, other): (Vec<Multiaddr>, Vec<Multiaddr>) =
        config.listen.iter().cloned().partition(|a| a.iter().any(|p| matches!(p, Protocol::QuicV1)));
    if config.psk.is_none() {
        return config.listen.clone();
    }
    if !quic.is_empty() {
        let skipped: Vec<String> = quic.iter().map(|a| a.to_string()).collect();
        tracing::info!(?skipped, "QUIC is off: a private network's key (--psk) only protects TCP");
    }
    other
}

/// Fails when a listen address's port is already taken by another process. libp2p listens with
/// SO_REUSEPORT (to dial from its listen port), so without this check a second node on the same
/// port would start and share it, each getting part of the incoming connections.
pub(super) fn check_port_free(addr: &Multiaddr) -> Result<(), NetError> {
    let mut ip: Option<IpAddr> = None;
    for p in addr.iter() {
        match p {
            Protocol::Ip4(a) => ip = Some(a.into()),
            Protocol::Ip6(a) => ip = Some(a.into()),
            Protocol::Tcp(port) | Protocol::Udp(port) if port != 0 => {
                let Some(ip) = ip else { return Ok(()) };
                let at = SocketAddr::new(ip, port);
                let (result, proto) = if matches!(p, Protocol::Tcp(_)) {
                    (TcpListener::bind(at).map(drop), "tcp")
                } else {
                    (UdpSocket::bind(at).map(drop), "udp")
                };
                return match result {
                    Err(e) if e.kind() == ErrorKind::AddrInUse => {
                        Err(NetError::PortInUse { addr: addr.to_string(), port: format!("{port}/{proto}") })
                    }
                    // Anything else (no such address, no permission) the real listen reports.
                    _ => Ok(()),
                };
            }
            _ => {}
        }
    }
    Ok(())
}

/// The stored peers' addresses grouped by peer (each must end with `/p2p/<id>`), ourselves left
/// out, at most [`MAX_REJOIN_PEERS`] peers in the order given.
pub(super) fn rejoin_peers(addrs: &[Multiaddr], me: PeerId) -> Vec<(PeerId, Vec<Multiaddr>)> {
    let mut order: Vec<PeerId> = Vec::new();
    let mut by_peer: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
    for addr in addrs {
        let Some(peer) = peer_of(addr) else { continue };
        if peer == me {
            continue;
        }
        if !by_peer.contains_key(&peer) {
            if order.len() == MAX_REJOIN_PEERS {
                continue;
            }
            order.push(peer);
        }
        by_peer.entry(peer).or_default().push(addr.clone());
    }
    order.into_iter().map(|p| (p, by_peer.remove(&p).unwrap_or_default())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_held_by_another_socket_is_refused_with_its_number() {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap();
        let err = check_port_free(&addr).unwrap_err();
        assert!(err.to_string().contains(&format!("{port}/tcp")), "{err}");
        drop(held);
        assert!(check_port_free(&addr).is_ok());
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        let addr: Multiaddr = format!("/ip4/127.0.0.1/udp/{port}/quic-v1").parse().unwrap();
        assert!(check_port_free(&addr).unwrap_err().to_string().contains(&format!("{port}/udp")));
        assert!(check_port_free(&"/ip4/127.0.0.1/tcp/0".parse().unwrap()).is_ok());
    }

    #[test]
    fn rejoin_groups_addresses_by_peer_and_leaves_us_out() {
        let (me, p, q) = (PeerId::random(), PeerId::random(), PeerId::random());
        let a = |s: String| s.parse::<Multiaddr>().unwrap();
        let addrs = [
            a(format!("/ip4/198.18.0.1/tcp/4001/p2p/{p}")),
            a(format!("/ip4/198.18.0.9/tcp/4001/p2p/{me}")),
            a(format!("/ip4/198.18.0.2/tcp/4001/p2p/{q}")),
            a(format!("/ip4/198.18.0.1/udp/4001/quic-v1/p2p/{p}")),
            a("/ip4/198.18.0.3/tcp/4001".to_owned()),
        ];
        let peers = rejoin_peers(&addrs, me);
        assert_eq!(peers.len(), 2);
        assert_eq!(peers[0], (p, vec![addrs[0].clone(), addrs[3].clone()]));
        assert_eq!(peers[1].0, q);
    }
}
