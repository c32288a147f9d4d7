//! Settings of the network.

use libp2p::Multiaddr;

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
