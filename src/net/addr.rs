//! Errors of the network edge and what it knows about addresses.

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

/// What can go wrong at the network edge.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("identity: {0}")]
    Identity(String),
    #[error("network setup: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
    #[error("p2p port {port} is already in use by another process (listen address {addr}); stop it or choose another port with --listen")]
    PortInUse { addr: String, port: String },
    #[error("invalid multiaddr {addr:?}: {reason}")]
    BadAddr { addr: String, reason: String },
}

/// Parses a multiaddr given on the command line.
pub fn parse_multiaddr(s: &str) -> Result<Multiaddr, NetError> {
    s.parse::<Multiaddr>().map_err(|e| NetError::BadAddr { addr: s.to_owned(), reason: e.to_string() })
}

/// Whether a multiaddr names a loopback IP address.
pub fn is_loopback(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_loopback(),
        Protocol::Ip6(ip) => ip.is_loopback(),
        _ => false,
    })
}

/// Whether a multiaddr is a relay circuit (`.../p2p/<relay>/p2p-circuit/...`).
pub(super) fn is_circuit(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

/// Whether a multiaddr names the unspecified IP address (0.0.0.0, ::).
pub(super) fn is_unspecified(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_unspecified(),
        Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}

/// The IP and port a multiaddr names, if it is `/ip4|ip6|dns*/<host>/tcp|udp/<port>/...`.
pub fn host_and_port(addr: &Multiaddr) -> Option<(String, u16)> {
    let mut host = None;
    for p in addr.iter() {
        match p {
            Protocol::Ip4(ip) => host = Some(ip.to_string()),
            Protocol::Ip6(ip) => host = Some(ip.to_string()),
            Protocol::Dns(h) | Protocol::Dns4(h) | Protocol::Dns6(h) => host = Some(h.to_string()),
            Protocol::Tcp(port) | Protocol::Udp(port) => return host.map(|h| (h, port)),
            _ => {}
        }
    }
    None
}

/// The peer id at the end of a `/p2p/<id>` address: the last one, as a relay circuit address
/// (`.../p2p/<relay>/p2p-circuit/p2p/<id>`) names the relay first.
pub(super) fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter()
        .filter_map(|p| match p {
            Protocol::P2p(id) => Some(id),
            _ => None,
        })
        .last()
}

/// An address worth putting in the DHT: not unspecified, and loopback only between nodes on one
/// host. Relay circuits are kept: they are how a node behind a NAT is reached.
pub(super) fn dialable(addr: &Multiaddr, loopback_ok: bool) -> bool {
    addr.iter().all(|p| match p {
        Protocol::Ip4(ip) => !ip.is_unspecified() && (loopback_ok || !ip.is_loopback()),
        Protocol::Ip6(ip) => !ip.is_unspecified() && (loopback_ok || !ip.is_loopback()),
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
        let relay = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";
        let node = "12D3KooWHAJbUiGeaE4ve7D2GYPQo4pgaYXBTwUFCAcs7D2ddCAd";
        let circuit = a(&format!("/ip4/198.18.0.1/tcp/4001/p2p/{relay}/p2p-circuit/p2p/{node}"));
        assert_eq!(peer_of(&circuit).unwrap().to_string(), node, "the node, not its relay");
        assert!(dialable(&a(&format!("/ip4/198.18.0.1/tcp/4001/p2p/{relay}/p2p-circuit")), false));
    }
}
