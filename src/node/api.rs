//! What the node's parts share: its errors, its status, the commands its task serves, and the
//! parts the app hands it.

use tokio::sync::{mpsc, oneshot};

use crate::core::replica::{ClockReport, ReadOnly, ReplicaConfig, SyncStats, WriteError, WriteOp};
use crate::core::{Table, TableStats};
use crate::net::{NetError, NetStats, Network, ReachStatus};
use crate::store::{Store, StoreError, StoreEvent};

use super::feed::{Watch, WatchError};
use super::liveness::LivenessCounts;

/// Why the node stopped, or a request could not be served.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Net(#[from] NetError),
    /// The replica refused the write, or it could not be made durable.
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    Watch(#[from] WatchError),
    #[error("the node is shutting down")]
    ShuttingDown,
}

/// What the node reports about itself (`message_type 9` shows it).
#[derive(Debug, Clone)]
pub struct Status {
    pub peer_id: String,
    pub listen_addrs: Vec<String>,
    pub connected_peers: Vec<String>,
    /// Whether others can dial this node, its confirmed external addresses and relay slots.
    pub reach: ReachStatus,
    /// Live records (tombstones not counted).
    pub table_size: usize,
    /// Root digest, 32 hex digits: equal on two nodes means equal tables.
    pub digest: String,
    pub tombstones: usize,
    pub table_stats: TableStats,
    pub net_stats: NetStats,
    pub sync_stats: SyncStats,
    /// Set while a failed commit keeps the node read-only.
    pub read_only: Option<ReadOnly>,
    /// This node's clock offset against its peers.
    pub clock: ClockReport,
    /// Stored entries dropped at start as damaged (failed signature, or undecodable).
    pub scrubbed_at_start: usize,
    /// Node records by liveness state, and the probe traffic.
    pub liveness: LivenessCounts,
}

/// One request to the node task. Reads never are: they use the view.
#[derive(Debug)]
pub enum Command {
    Write {
        op: WriteOp,
        reply: oneshot::Sender<Result<bool, WriteError>>,
    },
    /// Tombstone the own record and never write it again: the node leaves (`--leave`).
    Leave {
        reply: oneshot::Sender<Result<bool, WriteError>>,
    },
    /// Start a watch of the table's changes (see [`super::feed`]).
    Watch {
        snapshot: bool,
        reply: oneshot::Sender<Result<Watch, WatchError>>,
    },
    #[cfg(feature = "test-util")]
    Test(TestCommand),
}

/// Test hooks (see `NodeHandle`'s test-util methods).
#[cfg(feature = "test-util")]
#[derive(Debug)]
pub enum TestCommand {
    Cut { peer: String, cut: bool, reply: oneshot::Sender<Result<(), String>> },
    WaitForKey { key: String, reply: oneshot::Sender<()> },
    PeerScore { peer: String, reply: oneshot::Sender<Option<f64>> },
}

/// What the node task is made of; the app wires them together.
pub struct Parts {
    pub replica: ReplicaConfig,
    pub table: Table,
    pub store: Store,
    pub store_events: mpsc::Receiver<StoreEvent>,
    pub net: Network,
    /// Stored entries dropped at start as damaged, for the status.
    pub scrubbed_at_start: usize,
}
