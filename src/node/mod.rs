//! The node: one task owns the table, the store (and, in part 2, the swarm). Everything else talks
//! to it through a cloneable [`NodeHandle`] that sends a [`Command`] with a oneshot reply.

mod actor;
mod replication;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::core::{PeerFields, PeerRecord, Table, TableConfig, TableStats};
use crate::manager::{self, ManagerConfig, ManagerError};
use crate::net::{self, Multiaddr, NetError, NetStats};
use crate::store::{self, StoreError};

/// Commands waiting for the node task; a full queue makes callers wait rather than grow memory.
pub const COMMAND_QUEUE: usize = 1024;
/// How often the node rewrites its own record's `lastConnectionOn`: slow, since every refresh is
/// a write that every replica stores.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(60);
/// How often expired tombstones are looked for; they expire after days, so hourly is plenty.
pub const DEFAULT_GC_INTERVAL: Duration = Duration::from_secs(3600);
/// How often anti-entropy runs with a random connected peer (besides on every new connection).
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(10);
/// The network id in protocol names and the gossip topic.
pub const DEFAULT_NETWORK_ID: &str = "udht";
/// Connections the node keeps dialling towards: enough for a healthy gossipsub mesh (6).
pub const DEFAULT_TARGET_PEERS: usize = 8;

/// Everything a node needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Holds `table.redb` and `identity.key`.
    pub data_dir: PathBuf,
    /// The manager socket's address; must be loopback.
    pub manager_addr: SocketAddr,
    pub listen: Vec<Multiaddr>,
    pub bootstrap: Vec<Multiaddr>,
    /// Addresses others should dial; the first one also gives the own record's ip and port.
    pub announce: Vec<Multiaddr>,
    /// The own record's `name`; defaults to `udht-` and the peer id's tail.
    pub name: Option<String>,
    pub table: TableConfig,
    pub manager: ManagerConfig,
    pub refresh_interval: Duration,
    pub gc_interval: Duration,
    pub sync_interval: Duration,
    pub network_id: String,
    pub target_peers: usize,
}

impl NodeConfig {
    /// A config with every default, for a data dir and manager address.
    pub fn new(data_dir: impl Into<PathBuf>, manager_addr: SocketAddr) -> Self {
        NodeConfig {
            data_dir: data_dir.into(),
            manager_addr,
            listen: Vec::new(),
            bootstrap: Vec::new(),
            announce: Vec::new(),
            name: None,
            table: TableConfig::default(),
            manager: ManagerConfig::default(),
            refresh_interval: DEFAULT_REFRESH_INTERVAL,
            gc_interval: DEFAULT_GC_INTERVAL,
            sync_interval: DEFAULT_SYNC_INTERVAL,
            network_id: DEFAULT_NETWORK_ID.to_owned(),
            target_peers: DEFAULT_TARGET_PEERS,
        }
    }
}

/// Why a node could not start, or a request could not be served.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Manager(#[from] ManagerError),
    #[error("the write could not be made durable: {0}")]
    NotDurable(Arc<StoreError>),
    #[error("the node is shutting down")]
    ShuttingDown,
    #[error("the node's own record is managed by the node itself")]
    OwnRecord,
}

/// What the node reports about itself (`message_type 9`).
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub peer_id: String,
    pub listen_addrs: Vec<String>,
    pub connected_peers: Vec<String>,
    /// Live records (tombstones not counted).
    pub table_size: usize,
    /// Root digest, 32 hex digits: equal on two nodes means equal tables.
    pub digest: String,
    pub tombstones: usize,
    pub table_stats: TableStats,
    pub net_stats: NetStats,
    pub sync_stats: SyncStats,
}

/// Counters of anti-entropy, reported in status.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct SyncStats {
    /// Sessions this node started and finished.
    pub sessions_completed: u64,
    /// Sessions that failed (timeouts, protocol errors).
    pub sessions_failed: u64,
    /// Entries that anti-entropy changed here (pulled, or pushed to us).
    pub entries_repaired: u64,
    /// Requests refused as malformed.
    pub requests_refused: u64,
    /// Peers banned for repeated bad messages.
    pub peers_banned: u64,
}

/// One request to the node task.
#[derive(Debug)]
pub enum Command {
    /// Adds a record unless a live one exists; replies `false` if it exists. Replies after durability.
    Add {
        key: String,
        fields: PeerFields,
        reply: oneshot::Sender<Result<bool, NodeError>>,
    },
    /// Changes a live record; replies `false` if missing. Replies after durability.
    Update {
        key: String,
        fields: PeerFields,
        reply: oneshot::Sender<Result<bool, NodeError>>,
    },
    /// Removes a live record (tombstone); replies `false` if missing. Replies after durability.
    Remove {
        key: String,
        reply: oneshot::Sender<Result<bool, NodeError>>,
    },
    Get {
        key: String,
        reply: oneshot::Sender<Option<Arc<PeerRecord>>>,
    },
    /// Every live record; cheap (the records are shared, not copied).
    Snapshot {
        reply: oneshot::Sender<Vec<(Arc<str>, Arc<PeerRecord>)>>,
    },
    OwnRecord {
        reply: oneshot::Sender<Option<Arc<PeerRecord>>>,
    },
    Status {
        reply: oneshot::Sender<Status>,
    },
    /// Cuts a peer off (both ways) or lets it back: partitions in tests and simulations.
    SetBlocked {
        peer: String,
        blocked: bool,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Replies once a live record exists under `key` (at once if it already does): lets
    /// simulations time propagation without polling.
    WaitForKey {
        key: String,
        reply: oneshot::Sender<()>,
    },
    /// The gossipsub score of a peer, if it is known.
    PeerScore {
        peer: String,
        reply: oneshot::Sender<Option<f64>>,
    },
}

/// A cloneable handle to a running node.
#[derive(Debug, Clone)]
pub struct NodeHandle {
    commands: mpsc::Sender<Command>,
}

impl NodeHandle {
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, NodeError> {
        let (tx, rx) = oneshot::channel();
        // The queue is rarely full: try without waiting first, wait only if it is.
        match self.commands.try_send(make(tx)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(cmd)) => {
                self.commands.send(cmd).await.map_err(|_| NodeError::ShuttingDown)?
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(NodeError::ShuttingDown),
        }
        rx.await.map_err(|_| NodeError::ShuttingDown)
    }

    pub async fn add(&self, key: String, fields: PeerFields) -> Result<bool, NodeError> {
        self.ask(|reply| Command::Add { key, fields, reply }).await?
    }

    pub async fn update(&self, key: String, fields: PeerFields) -> Result<bool, NodeError> {
        self.ask(|reply| Command::Update { key, fields, reply }).await?
    }

    pub async fn remove(&self, key: String) -> Result<bool, NodeError> {
        self.ask(|reply| Command::Remove { key, reply }).await?
    }

    pub async fn get(&self, key: String) -> Result<Option<Arc<PeerRecord>>, NodeError> {
        self.ask(|reply| Command::Get { key, reply }).await
    }

    pub async fn snapshot(&self) -> Result<Vec<(Arc<str>, Arc<PeerRecord>)>, NodeError> {
        self.ask(|reply| Command::Snapshot { reply }).await
    }

    pub async fn own_record(&self) -> Result<Option<Arc<PeerRecord>>, NodeError> {
        self.ask(|reply| Command::OwnRecord { reply }).await
    }

    pub async fn status(&self) -> Result<Status, NodeError> {
        self.ask(|reply| Command::Status { reply }).await
    }

    /// Blocks (or unblocks) a peer by peer id: its connections close and are refused both ways.
    pub async fn set_blocked(&self, peer: String, blocked: bool) -> Result<Result<(), String>, NodeError> {
        self.ask(|reply| Command::SetBlocked { peer, blocked, reply }).await
    }

    /// Waits until this node holds a live record under `key`.
    pub async fn wait_for_key(&self, key: String) -> Result<(), NodeError> {
        self.ask(|reply| Command::WaitForKey { key, reply }).await
    }

    pub async fn peer_score(&self, peer: String) -> Result<Option<f64>, NodeError> {
        self.ask(|reply| Command::PeerScore { peer, reply }).await
    }
}

/// A started node: its handle, addresses, and the means to stop it.
pub struct RunningNode {
    pub handle: NodeHandle,
    /// Where the manager socket actually listens (the port is real even if 0 was asked).
    pub manager_addr: SocketAddr,
    pub peer_id: String,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<Result<(), NodeError>>,
    manager: JoinHandle<()>,
}

impl RunningNode {
    /// Starts a node: loads identity and table, binds the manager socket, and spawns the tasks.
    pub async fn start(config: NodeConfig) -> Result<RunningNode, NodeError> {
        manager::check_loopback(config.manager_addr)?;
        let dir = config.data_dir.clone();
        let table_config = config.table;
        let (keypair, store, table) = tokio::task::spawn_blocking(move || {
            let key_bytes = store::load_or_create_identity(&dir, net::generate_identity)?;
            let keypair = net::decode_identity(&key_bytes)?;
            let mut table = Table::new(net::node_id_of(&keypair)?, table_config);
            let store = store::Store::open(&dir, |e| table.load_entry(e))?;
            Ok::<_, NodeError>((keypair, store, table))
        })
        .await
        .expect("start-up task panicked")?;
        let listener = manager::bind(config.manager_addr).await?;
        let manager_addr = listener.local_addr().map_err(ManagerError::from)?;

        let (commands, command_rx) = mpsc::channel(COMMAND_QUEUE);
        let handle = NodeHandle { commands };
        let (shutdown, shutdown_rx) = watch::channel(false);
        let actor = actor::Actor::new(config.clone(), keypair, store, table)?;
        let peer_id = actor.peer_id().to_string();
        tracing::info!(%peer_id, manager = %manager_addr, records = actor.table_len(), "node started");
        let task = tokio::spawn(actor.run(command_rx, shutdown_rx.clone()));
        let manager = tokio::spawn(manager::serve(listener, handle.clone(), config.manager, shutdown_rx));
        Ok(RunningNode { handle, manager_addr, peer_id, shutdown, task, manager })
    }

    /// Stops the node: the manager stops accepting, the node task ends, the store commits its
    /// queue and closes.
    pub async fn shutdown(self) -> Result<(), NodeError> {
        let _ = self.shutdown.send(true);
        let _ = self.manager.await;
        self.task.await.unwrap_or(Err(NodeError::ShuttingDown))
    }

    /// Runs until `stop` completes (then shuts down cleanly) or the node task ends by itself
    /// (a fatal storage error, returned).
    pub async fn run_until(mut self, stop: impl std::future::Future<Output = ()>) -> Result<(), NodeError> {
        tokio::select! {
            _ = stop => self.shutdown().await,
            ended = &mut self.task => {
                let _ = self.shutdown.send(true);
                let _ = self.manager.await;
                ended.unwrap_or(Err(NodeError::ShuttingDown))
            }
        }
    }
}
