//! udht: the user table of a Files-for-Peers node, replicated as a CRDT and served over the
//! original manager socket.
//!
//! Layout (each module depends only on those above it, and `app` wires them):
//! - [`core`]: the pure part. Hybrid logical clock stamps, peer records, the last-writer-wins
//!   map with tombstones, digests and deltas, anti-entropy, and [`core::replica`]: the
//!   replication protocol as a state machine, `handle(input, now) -> outputs`, with its seeded
//!   simulation; [`core::liveness`]: SWIM with Lifeguard's local health, which node records are
//!   alive, as a state machine too. No I/O, no runtime; time is a parameter.
//! - [`store`]: the table on disk (redb, group commit on one writer thread, commits answered by
//!   sequence number) and the identity key file. The only module that touches disk.
//! - [`net`]: libp2p: identity, addresses and the swarm (TCP, QUIC, relayed connections), and
//!   reachability (`net::reach`: AutoNAT, relay slots and serving, hole punching, the addresses
//!   the own record may list). The only module that imports libp2p.
//! - [`node`]: the one task that owns the replica, the store and the swarm and executes the
//!   replica's outputs; the cloneable [`node::NodeHandle`] sends it writes and reads a view it
//!   alone writes.
//! - [`manager`]: the localhost JSON socket of the original services (framing, requests,
//!   replies, a typed client). The only module that knows that protocol. Depends on `node`.
//! - [`web`]: the HTTP edge (`--metrics`): Prometheus metrics, the status page and its JSON.
//!   Reads the node's view and the manager's counters; loopback only by default.
//! - [`integrity`]: the table read back at start and checked before it is served (checksums,
//!   signatures where there is none, undecodable values, unsigned entries migrated), and the offline `udht-node scrub`.
//! - [`app`]: the composition root: binds the manager, opens the store, starts the network,
//!   spawns the node task and the manager ([`RunningNode`]).
//! - [`cli`]: the `udht-node` command line (node and `ctl` client).
//! - `cluster` (feature `test-util`): N real nodes in one process on loopback, for tests and
//!   simulations.

pub mod app;
pub mod cli;
#[cfg(any(test, feature = "test-util"))]
pub mod cluster;
pub mod core;
pub mod integrity;
pub mod manager;
pub mod net;
pub mod node;
pub mod store;
pub mod web;

pub use app::{NodeConfig, RunningNode, StartError};
pub use node::NodeHandle;
