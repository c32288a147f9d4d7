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

/// The IP and TCP port a multiaddr names, if it is `/ip4|ip6|dns*/<host>/tcp/<port>/...`.
pub fn host_and_port(addr: &Multiaddr) -> Option<(String, u16)> {
    let mut host = None;
    for p in addr.iter() {
        match p {
            Protocol::Ip4(ip) => host = Some(ip.to_string()),
            Protocol::Ip6(ip) => host = Some(ip.to_string()),
            Protocol::Dns(h) | Protocol::Dns4(h) | Protocol::Dns6(h) => host = Some(h.to_string()),
            Protocol::Tcp(port) => return host.map(|h| (h, port)),
            _ => {}
        }
    }
    None
}

/// The addresses the own record lists: each once, and loopback ones only when there is nothing
/// else (the record goes to every node, and every byte of it to clients reading the whole table
/// with one small `recv`; nobody elsewhere can dial our loopback address).
pub(super) fn record_addrs(advertised: &[Multiaddr]) -> Vec<&Multiaddr> {
    let any_reachable = advertised.iter().any(|a| !is_loopback(a));
    let mut out: Vec<&Multiaddr> = Vec::new();
    for a in advertised {
        if (any_reachable && is_loopback(a)) || out.contains(&a) {
            continue;
        }
        out.push(a);
    }
    out
}

/// The peer id at the end of a `/p2p/<id>` address.
pub(super) fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        Protocol::P2p(id) => Some(id),
        _ => None,
    })
}

/// An address worth putting in the DHT: not unspecified, not a relay circuit, and loopback only
/// between nodes on one host.
pub(super) fn dialable(addr: &Multiaddr, loopback_ok: bool) -> bool {
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
    fn the_own_record_lists_each_address_once_and_loopback_only_when_alone() {
        let a = |s: &str| s.parse::<Multiaddr>().unwrap();
        let both =
            [a("/ip4/127.0.0.1/tcp/4001"), a("/ip4/172.17.0.2/tcp/4001"), a("/ip4/172.17.0.2/tcp/4001")];
        assert_eq!(record_addrs(&both), vec![&both[1]]);
        let only_loopback = [a("/ip4/127.0.0.1/tcp/4001"), a("/ip6/::1/tcp/4001")];
        assert_eq!(record_addrs(&only_loopback), vec![&only_loopback[0], &only_loopback[1]]);
        assert!(record_addrs(&[]).is_empty());
    }

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
