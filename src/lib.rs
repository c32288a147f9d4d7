//! udht: the user table of a Files-for-Peers node, replicated as a CRDT and served over the
//! original manager socket.
//!
//! Layout:
//! - [`core`]: the pure part. Hybrid logical clock stamps, peer records, and the last-writer-wins
//!   map with tombstones, digests and deltas. No I/O, no runtime; time is a parameter.
//! - [`store`]: the table on disk (redb, group commit on one writer thread) and the identity key
//!   file. The only module that touches disk.
//! - [`net`]: libp2p: identity, addresses and the swarm. The only module that imports libp2p.
//! - [`manager`]: the localhost JSON socket of the original services (framing, requests,
//!   replies, a client). The only module that knows that protocol.
//! - [`node`]: the one task that owns the table, the store and the swarm, and the cloneable
//!   [`node::NodeHandle`] everything else uses to reach it.
//! - [`cli`]: the `udht-node` command line (node and `ctl` client).
//! - [`cluster`]: N real nodes in one process on loopback, for tests and simulations.

pub mod app;
pub mod cli;
#[cfg(any(test, feature = "test-util"))]
pub mod cluster;
pub mod core;
pub mod manager;
pub mod net;
pub mod node;
pub mod store;

pub use app::{NodeConfig, RunningNode, StartError};
pub use node::NodeHandle;
