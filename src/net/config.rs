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
    /// A private network's key: only peers holding the same key can connect at all.
    pub psk: Option<Psk>,
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
