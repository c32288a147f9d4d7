//! Errors of the network edge and what it knows about addresses.

use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;

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
