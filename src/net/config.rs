//! Settings of the network.

use std::fmt;
use std::str::FromStr;

use libp2p::pnet::PreSharedKey;
use libp2p::Multiaddr;

use super::addr::NetError;

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
    /// A private network's key: only peers holding the same key can connect at all. QUIC is off
    /// then (pnet only wraps TCP).
    pub psk: Option<Psk>,
    /// Offer circuit relay v2 to others while publicly reachable (`--no-relay-server`: never).
    pub relay_server: bool,
    /// Ask the router for port mappings (UPnP IGD), `--upnp`.
    pub upnp: bool,
    /// Addresses (with `/p2p/<id>`) of peers from the stored table, dialled at start besides
    /// `bootstrap` so that a node rejoins when every bootstrap node is down.
    pub rejoin: Vec<Multiaddr>,
}

impl NetConfig {
    /// Whether the node listens only on loopback (tests, nodes of one host): then its loopback
    /// addresses are the ones to advertise, and it serves Kademlia without waiting for AutoNAT.
    pub fn loopback_only(&self) -> bool {
        !self.listen.is_empty() && self.listen.iter().all(super::addr::is_loopback)
    }
}

/// A private network's pre-shared key (libp2p `pnet`), in the swarm-key file format
/// (`/key/swarm/psk/1.0.0/`, `/base16/`, 64 hex digits).
#[derive(Clone, PartialEq, Eq)]
pub struct Psk(pub(super) PreSharedKey);

impl Psk {
    /// A fresh random key.
    pub fn generate() -> Psk {
        Psk(PreSharedKey::new(rand::random()))
    }

    /// The key file's contents.
    pub fn to_key_file(&self) -> String {
        self.0.to_key_file()
    }

    /// A short fingerprint that is safe to log: tells two keys apart without revealing them.
    pub fn fingerprint(&self) -> String {
        self.0.fingerprint().to_string()
    }
}

impl FromStr for Psk {
    type Err = NetError;

    fn from_str(text: &str) -> Result<Psk, NetError> {
        text.parse::<PreSharedKey>()
            .map(Psk)
            .map_err(|e| NetError::Config(format!("not a swarm key file (/key/swarm/psk/1.0.0/): {e}")))
    }
}

impl fmt::Debug for Psk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Psk(fingerprint {})", self.fingerprint())
    }
}
