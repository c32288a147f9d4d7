//! The composition root: wires the store, the network, the node task and the manager socket
//! together (and is the only module that knows all four). `udht-node` calls [`RunningNode::start`];
//! so do the tests, the cluster harness and the benchmarks.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::core::replica::{
    ReplicaConfig, DEFAULT_CLOCK_WAIT_MS, DEFAULT_MAX_IN_FLIGHT, DEFAULT_PEER_ENTRY_RATE,
    DEFAULT_PROBE_INTERVAL_MS,
};
use crate::core::{PeerRecord, Table, TableConfig};
use crate::integrity::{self, IntegrityError};
use crate::manager::{self, ManagerConfig, ManagerError, ManagerStats};
use crate::net::{self, Multiaddr, NetConfig, NetError, Network, Psk};
use crate::node::{self, NodeError, NodeHandle, Parts};
use crate::store::{self, StartMode, StoreError};
use crate::web::{self, WebError, WebState};

/// How often the node rewrites its own record's `lastConnectionOn` (each wait jittered, 0.8 to
/// 1.2 times this; and at once when its addresses or ports change): rare, since every refresh is
/// a write that every replica stores and liveness does not depend on it. It only has to come
/// well within the node TTL, so that a running node's record never expires.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(30 * 60);
/// The node TTL must be more than this many refresh intervals: a refresh may come 1.2 intervals
/// after the last, and one lost to a full disk or an off clock must not expire a running node.
pub const MIN_TTL_REFRESHES: u32 = 2;
/// The shortest refresh interval taken (tests use a second or two; production, minutes).
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_millis(100);
/// Expired entries are looked for at least this many times per node TTL, so a dead node's
/// record goes within 1.25 TTLs of its last refresh on every replica.
const COLLECTIONS_PER_TTL: u32 = 4;
/// With `--leave`, how long a stopping node waits for its own record's tombstone to be durable.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Then how long it keeps running so the tombstone's gossip (batched for a few milliseconds,
/// then written by the swarm) leaves before the connections close.
const LEAVE_LINGER: Duration = Duration::from_millis(500);
/// How often expired tombstones are looked for; they expire after days, so hourly is plenty.
pub const DEFAULT_GC_INTERVAL: Duration = Duration::from_secs(3600);
/// How often anti-entropy runs with a random connected peer (besides on every new connection).
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(10);
/// The network id in protocol names and the gossip topic.
pub const DEFAULT_NETWORK_ID: &str = "udht";
/// Connections the node keeps (the connection manager's low watermark; it trims above 12): room
/// for the gossipsub mesh (4, up to 8) and a few more routes.
pub const DEFAULT_TARGET_PEERS: usize = 8;
/// Commits the store may be asked for beyond `max_in_flight`: the replica's timers (own-record
/// refresh, tombstone collection) may each add one while writes are paused.
const STORE_SLACK: usize = 8;

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
    /// The own record's `ports`: this node's service ports (`--ports`).
    pub ports: BTreeMap<String, u16>,
    pub table: TableConfig,
    pub manager: ManagerConfig,
    pub refresh_interval: Duration,
    pub gc_interval: Duration,
    pub sync_interval: Duration,
    pub network_id: String,
    pub target_peers: usize,
    /// Commits waiting for the store at most; writes (local and remote) pause beyond it.
    pub max_in_flight: usize,
    /// A private network's key (`--psk`): only nodes holding it can connect.
    pub psk: Option<Psk>,
    /// Unsolicited entries (gossip, pushes) one peer may send per second.
    pub peer_entry_rate: u32,
    /// Where to serve `/metrics` and the status page (`--metrics`); off when `None`.
    pub metrics_addr: Option<SocketAddr>,
    /// Whether the metrics address may be other than loopback (`--metrics-public`).
    pub metrics_public: bool,
    /// While read-only (a commit failed), how often the store is probed.
    pub probe_interval: Duration,
    /// At start, the own record waits this long for a clock comparison with a peer; only when
    /// bootstrap peers are given (without, there is nobody to find at start).
    pub clock_wait: Duration,
    /// What `--init` / `--reset-table` allow when the data dir's files do not belong together.
    pub start_mode: StartMode,
    /// At shutdown, tombstone the own record first (`--leave`): the node leaves the network.
    pub leave: bool,
    /// Offer circuit relay v2 to nodes behind NATs while publicly reachable (`--no-relay-server`
    /// turns it off).
    pub relay_server: bool,
    /// Ask the router for port mappings (UPnP, `--upnp`).
    pub upnp: bool,
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
            ports: BTreeMap::new(),
            table: TableConfig::default(),
            manager: ManagerConfig::default(),
            refresh_interval: DEFAULT_REFRESH_INTERVAL,
            gc_interval: DEFAULT_GC_INTERVAL,
            sync_interval: DEFAULT_SYNC_INTERVAL,
            network_id: DEFAULT_NETWORK_ID.to_owned(),
            target_peers: DEFAULT_TARGET_PEERS,
            metrics_addr: None,
            metrics_public: false,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            psk: None,
            peer_entry_rate: DEFAULT_PEER_ENTRY_RATE,
            probe_interval: Duration::from_millis(DEFAULT_PROBE_INTERVAL_MS),
            clock_wait: Duration::from_millis(DEFAULT_CLOCK_WAIT_MS),
            start_mode: StartMode::default(),
            leave: false,
            relay_server: true,
            upnp: false,
        }
    }

    /// Refuses settings that cannot work together.
    pub fn check(&self) -> Result<(), ConfigError> {
        let (ttl, refresh) = (self.table.node_ttl, self.refresh_interval);
        if refresh < MIN_REFRESH_INTERVAL {
            return Err(ConfigError::RefreshTooShort(refresh));
        }
        if ttl <= refresh * MIN_TTL_REFRESHES {
            return Err(ConfigError::NodeTtlTooShort { ttl, refresh });
        }
        Ok(())
    }
}

/// Settings that cannot work together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "the node TTL ({ttl:?}) must be more than {MIN_TTL_REFRESHES} times the refresh interval \
         ({refresh:?}): a running node's own record would expire between two refreshes"
    )]
    NodeTtlTooShort { ttl: Duration, refresh: Duration },
    #[error("the refresh interval ({0:?}) must be at least {MIN_REFRESH_INTERVAL:?}: every refresh is a write every node stores")]
    RefreshTooShort(Duration),
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Manager(#[from] ManagerError),
    #[error(transparent)]
    Web(#[from] WebError),
    #[error(transparent)]
    Integrity(#[from] IntegrityError),
}

/// A started node: its handle, addresses, and the means to stop it.
pub struct RunningNode {
    pub handle: NodeHandle,
    /// Where the manager socket actually listens (the port is real even if 0 was asked).
    pub manager_addr: SocketAddr,
    pub peer_id: String,
    /// Where `/metrics` and the status page are served, if they are (`--metrics`).
    pub metrics_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<Result<(), NodeError>>,
    manager: JoinHandle<()>,
    web: Option<JoinHandle<()>>,
    /// Whether shutting down leaves the network first (`--leave`).
    leave: bool,
}

impl RunningNode {
    /// Starts a node: binds the manager socket, loads identity and table, joins the network, and
    /// spawns the node task and the manager.
    pub async fn start(config: NodeConfig) -> Result<RunningNode, StartError> {
        config.check()?;
        // First, so that a bad or busy manager address fails before anything else is touched.
        let listener = manager::bind(config.manager_addr).await?;
        let manager_addr = listener.local_addr().map_err(ManagerError::from)?;
        let web_listener = match config.metrics_addr {
            Some(addr) => Some(web::bind(addr, config.metrics_public).await?),
            None => None,
        };
        let metrics_addr = web_listener.as_ref().and_then(|l| l.local_addr().ok());
        let (dir, table_config) = (config.data_dir.clone(), config.table);
        let network_id = config.network_id.clone();
        let capacity = config.max_in_flight.max(1) + STORE_SLACK;
        let mode = config.start_mode;
        let (keypair, opened) = tokio::task::spawn_blocking(move || {
            // Before the identity is created: a table without its identity must not get a new one.
            store::check_data_dir(&dir, mode)?;
            let key_bytes = store::load_or_create_identity(&dir, net::generate_identity)?;
            let keypair = net::decode_identity(&key_bytes)?;
            let signer = net::signer_of(&keypair)?;
            let opened = integrity::open(&dir, signer, &network_id, table_config, capacity, mode.init)?;
            Ok::<_, StartError>((keypair, opened))
        })
        .await
        .expect("start-up task panicked")?;
        let integrity::Opened { table, store, events: store_events, scrubbed } = opened;
        let records = table.len();
        let rejoin = stored_peer_addrs(&table);
        let mut net = Network::start(keypair, net_config(&config, rejoin))?;
        // What `/metrics` serves besides the node's own figures, when it is served.
        let mut registry = web_listener.as_ref().map(|_| Registry::default());
        if let Some(registry) = registry.as_mut() {
            net.register_metrics(registry);
            store.metrics().register(registry);
        }
        let peer_id = net.local_peer_id().to_string();
        let replica = replica_config(&config, &peer_id);
        let parts = Parts { replica, table, store, store_events, net, scrubbed_at_start: scrubbed };
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (handle, task) = node::spawn(parts, shutdown_rx.clone());
        let manager_stats = Arc::new(ManagerStats::default());
        let web = web_listener.zip(registry).map(|(listener, mut registry)| {
            manager_stats.register(&mut registry);
            let state = Arc::new(WebState::new(handle.clone(), manager_stats.clone(), registry));
            tokio::spawn(web::serve(listener, state, shutdown_rx.clone()))
        });
        let manager = tokio::spawn(manager::serve(
            listener,
            handle.clone(),
            config.manager,
            manager_stats,
            shutdown_rx,
        ));
        let private = config.psk.as_ref().map(Psk::fingerprint);
        tracing::info!(%peer_id, manager = %manager_addr, metrics = ?metrics_addr, records, scrubbed, ?private, "node started");
        let leave = config.leave;
        Ok(RunningNode { handle, manager_addr, peer_id, metrics_addr, shutdown, task, manager, web, leave })
    }

    /// Stops the node: the manager stops accepting, the node task ends, the store commits its
    /// queue and closes. With `--leave`, the own record is tombstoned first.
    pub async fn shutdown(self) -> Result<(), NodeError> {
        if self.leave {
            self.leave_network().await;
        }
        let _ = self.shutdown.send(true);
        let _ = self.manager.await;
        if let Some(web) = self.web {
            let _ = web.await;
        }
        self.task.await.unwrap_or(Err(NodeError::ShuttingDown))
    }

    /// Runs until `stop` completes (then shuts down cleanly) or the node task ends by itself
    /// (the store's writer gone, returned).
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

impl RunningNode {
    /// Tombstones the own record, waits (bounded) until it is durable, and lingers while it is
    /// gossiped. A failure is logged, not fatal: the node stops anyway, and its record then goes
    /// when the node TTL runs out.
    async fn leave_network(&self) {
        let started = tokio::time::Instant::now();
        match tokio::time::timeout(LEAVE_TIMEOUT, self.handle.leave()).await {
            Ok(Ok(_)) => {
                tokio::time::sleep(LEAVE_LINGER).await;
                tracing::info!(took = ?started.elapsed(), "left the network: own record tombstoned and gossiped");
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "could not leave the network; the own record stays until it expires")
            }
            Err(_) => tracing::warn!(
                timeout = ?LEAVE_TIMEOUT,
                "leaving the network timed out; the own record stays until it expires"
            ),
        }
    }
}

/// Most node records whose addresses are handed to the network for rejoining (it dials a few).
const REJOIN_RECORDS: usize = 32;

/// The stored node records' addresses, the most recently refreshed records first: at start the
/// node dials a few of them besides `--bootstrap`, so that it rejoins when every bootstrap node
/// is down.
fn stored_peer_addrs(table: &Table) -> Vec<Multiaddr> {
    let mut records: Vec<&PeerRecord> = table
        .iter_live()
        .map(|(_, r)| r.as_ref())
        .filter(|r| r.peer_id.is_some() && !r.addrs.is_empty())
        .collect();
    records.sort_unstable_by_key(|r| std::cmp::Reverse(r.last_connection_on));
    records.iter().take(REJOIN_RECORDS).flat_map(|r| r.addrs.iter().filter_map(|a| a.parse().ok())).collect()
}

fn net_config(config: &NodeConfig, rejoin: Vec<Multiaddr>) -> NetConfig {
    NetConfig {
        listen: config.listen.clone(),
        bootstrap: config.bootstrap.clone(),
        announce: config.announce.clone(),
        network_id: config.network_id.clone(),
        target_peers: config.target_peers,
        psk: config.psk.clone(),
        relay_server: config.relay_server,
        upnp: config.upnp,
        rejoin,
    }
}

fn replica_config(config: &NodeConfig, peer_id: &str) -> ReplicaConfig {
    ReplicaConfig {
        own_key: peer_id.to_owned(),
        name: config.name.clone().unwrap_or_else(|| default_name(peer_id)),
        ports: config.ports.clone(),
        sync_interval_ms: config.sync_interval.as_millis() as u64,
        refresh_interval_ms: config.refresh_interval.as_millis() as u64,
        gc_interval_ms: config.gc_interval.min(config.table.node_ttl / COLLECTIONS_PER_TTL).as_millis()
            as u64,
        max_in_flight: config.max_in_flight.max(1),
        peer_entry_rate: config.peer_entry_rate,
        probe_interval_ms: config.probe_interval.as_millis() as u64,
        seed: rand::random(),
        clock_wait_ms: if config.bootstrap.is_empty() { 0 } else { config.clock_wait.as_millis() as u64 },
    }
}

/// `udht-` and the last 8 characters of the peer id: short, and unique in practice.
fn default_name(peer_id: &str) -> String {
    format!("udht-{}", &peer_id[peer_id.len().saturating_sub(8)..])
}
