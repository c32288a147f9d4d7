//! The network edge: libp2p identity, addresses and the swarm. The only module that imports libp2p.

mod addr;
mod admission;
mod behaviour;
mod candidates;
mod codec;
mod config;
mod connmgr;
mod direct_only;
mod identity;
mod metrics;
mod network;
mod probe;
mod reach;
mod startup;

pub use addr::{host_and_port, is_loopback, parse_multiaddr, NetError};
pub use config::{NetConfig, Psk};
pub use identity::{decode_identity, generate_identity, node_id_of, signer_of};
pub use libp2p::{Multiaddr, PeerId};
pub use network::{GossipId, NetEvent, NetStats, Network, Responder};
pub use probe::{ProbeEvent, ProbeResponder, ProbeStats};
pub use reach::{ReachStatus, Reachability};
