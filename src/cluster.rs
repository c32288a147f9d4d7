//! An in-process cluster of real nodes on loopback, for tests and simulations: start N nodes that
//! join through node 0, stop and restart them from their data dirs, cut the cluster into groups
//! and heal it, and wait until every replica holds the same table.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

use crate::app::{NodeConfig, RunningNode, StartError};
use crate::net::{host_and_port, parse_multiaddr, Multiaddr};
use crate::node::{NodeError, NodeHandle, Status};

/// How often convergence and readiness are polled.
const POLL: Duration = Duration::from_millis(20);
/// How long a node may take to start listening.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);

/// What can go wrong with a cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("timed out after {0:?}: {1}")]
    Timeout(Duration, String),
    #[error("node {0} is not running")]
    NotRunning(usize),
}

struct Slot {
    dir: PathBuf,
    /// 0 until the first start, then the port the node got: kept, so a restarted node (node 0
    /// above all, everyone's bootstrap address) is found where it was.
    manager_port: u16,
    p2p_port: u16,
    peer_id: String,
    running: Option<RunningNode>,
}

/// N nodes in this process. Node 0 is the seed the others bootstrap from (no `/p2p/` suffix).
pub struct Cluster {
    base: PathBuf,
    slots: Vec<Slot>,
    configure: Box<dyn Fn(&mut NodeConfig) + Send + Sync>,
}

impl Cluster {
    /// Starts `n` nodes under `base` (one data dir each); `configure` adjusts every node's config.
    pub async fn start(
        base: &Path,
        n: usize,
        configure: impl Fn(&mut NodeConfig) + Send + Sync + 'static,
    ) -> Result<Cluster, ClusterError> {
        let mut cluster =
            Cluster { base: base.to_owned(), slots: Vec::new(), configure: Box::new(configure) };
        for _ in 0..n {
            cluster.add_node().await?;
        }
        Ok(cluster)
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The address every node bootstraps from: node 0's, without `/p2p/`.
    pub fn seed_addr(&self) -> Option<Multiaddr> {
        self.slots.first().map(|s| p2p_addr(s.p2p_port))
    }

    /// Starts one more node, joining through node 0; returns its index.
    pub async fn add_node(&mut self) -> Result<usize, ClusterError> {
        let i = self.slots.len();
        let slot = Slot {
            dir: self.base.join(format!("node{i}")),
            manager_port: 0,
            p2p_port: 0,
            peer_id: String::new(),
            running: None,
        };
        self.slots.push(slot);
        self.start_node(i).await?;
        Ok(i)
    }

    fn config(&self, i: usize) -> NodeConfig {
        let s = &self.slots[i];
        let mut c = NodeConfig::new(&s.dir, SocketAddr::from(([127, 0, 0, 1], s.manager_port)));
        c.listen = vec![p2p_addr(s.p2p_port)];
        if i != 0 {
            c.bootstrap = self.seed_addr().into_iter().collect();
        }
        c.name = Some(format!("node{i}"));
        (self.configure)(&mut c);
        c
    }

    /// Starts node `i` (again) from its data dir, on the same ports, and waits until it listens.
    /// The first start binds port 0, so no other socket can take a port chosen in advance.
    pub async fn start_node(&mut self, i: usize) -> Result<(), ClusterError> {
        let running = RunningNode::start(self.config(i)).await?;
        let deadline = Instant::now() + LISTEN_TIMEOUT;
        let p2p_port = loop {
            let listening = running.handle.status().listen_addrs;
            if let Some(port) = listening.iter().find_map(|a| host_and_port(&parse_multiaddr(a).ok()?)) {
                break port.1;
            }
            if Instant::now() > deadline {
                return Err(ClusterError::Timeout(LISTEN_TIMEOUT, format!("node {i} is not listening")));
            }
            tokio::time::sleep(POLL).await;
        };
        let slot = &mut self.slots[i];
        slot.manager_port = running.manager_addr.port();
        slot.p2p_port = p2p_port;
        slot.peer_id = running.peer_id.clone();
        slot.running = Some(running);
        Ok(())
    }

    /// Stops node `i` cleanly (its store is flushed); its data dir stays.
    pub async fn stop_node(&mut self, i: usize) -> Result<(), ClusterError> {
        let running = self.slots[i].running.take().ok_or(ClusterError::NotRunning(i))?;
        running.shutdown().await?;
        Ok(())
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.slots[i].running.is_some()
    }

    pub fn handle(&self, i: usize) -> Result<&NodeHandle, ClusterError> {
        self.slots[i].running.as_ref().map(|r| &r.handle).ok_or(ClusterError::NotRunning(i))
    }

    pub fn peer_id(&self, i: usize) -> &str {
        &self.slots[i].peer_id
    }

    pub fn manager_addr(&self, i: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.slots[i].manager_port))
    }

    /// Indexes of running nodes.
    pub fn running(&self) -> Vec<usize> {
        (0..self.slots.len()).filter(|&i| self.is_running(i)).collect()
    }

    pub fn status(&self, i: usize) -> Result<Status, ClusterError> {
        Ok(self.handle(i)?.status())
    }

    /// Cuts the cluster into groups: every node blocks every node of the other groups. Returns
    /// once no connection crosses the cut.
    pub async fn partition(&self, groups: &[&[usize]]) -> Result<(), ClusterError> {
        self.set_cut(groups, true).await?;
        let start = Instant::now();
        for (gi, g) in groups.iter().enumerate() {
            let others: Vec<&str> = groups
                .iter()
                .enumerate()
                .filter(|(hi, _)| *hi != gi)
                .flat_map(|(_, h)| h.iter().map(|&j| self.peer_id(j)))
                .collect();
            for &a in g.iter().filter(|&&a| self.is_running(a)) {
                while self.status(a)?.connected_peers.iter().any(|p| others.contains(&p.as_str())) {
                    if start.elapsed() > LISTEN_TIMEOUT {
                        return Err(ClusterError::Timeout(
                            LISTEN_TIMEOUT,
                            format!("node {a} still connected across the cut"),
                        ));
                    }
                    tokio::time::sleep(POLL).await;
                }
            }
        }
        Ok(())
    }

    /// Lets the groups of [`Cluster::partition`] reach each other again.
    pub async fn heal(&self, groups: &[&[usize]]) -> Result<(), ClusterError> {
        self.set_cut(groups, false).await
    }

    async fn set_cut(&self, groups: &[&[usize]], blocked: bool) -> Result<(), ClusterError> {
        for (gi, g) in groups.iter().enumerate() {
            for (hi, h) in groups.iter().enumerate() {
                if gi == hi {
                    continue;
                }
                for &a in g.iter() {
                    for &b in h.iter() {
                        if let Ok(handle) = self.handle(a) {
                            let _ = handle.set_cut(self.peer_id(b).to_owned(), blocked).await?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The digests of the given nodes.
    pub async fn digests(&self, nodes: &[usize]) -> Result<Vec<String>, ClusterError> {
        let mut out = Vec::with_capacity(nodes.len());
        for &i in nodes {
            out.push(self.status(i)?.digest);
        }
        Ok(out)
    }

    /// Waits until the given nodes all report the same digest; returns how long it took.
    pub async fn wait_converged_among(
        &self,
        nodes: &[usize],
        timeout: Duration,
    ) -> Result<Duration, ClusterError> {
        let start = Instant::now();
        loop {
            let digests = self.digests(nodes).await?;
            if digests.windows(2).all(|w| w[0] == w[1]) {
                return Ok(start.elapsed());
            }
            if start.elapsed() > timeout {
                let distinct: std::collections::BTreeSet<_> = digests.iter().collect();
                return Err(ClusterError::Timeout(
                    timeout,
                    format!("{} distinct digests among {nodes:?}", distinct.len()),
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until every running node holds the same table.
    pub async fn wait_converged(&self, timeout: Duration) -> Result<Duration, ClusterError> {
        self.wait_converged_among(&self.running(), timeout).await
    }

    /// Waits until every running node has a live record under `key` (any value).
    pub async fn wait_key_everywhere(&self, key: &str, timeout: Duration) -> Result<Duration, ClusterError> {
        let start = Instant::now();
        for i in self.running() {
            while self.handle(i)?.get(key).is_none() {
                if start.elapsed() > timeout {
                    return Err(ClusterError::Timeout(timeout, format!("node {i} lacks {key:?}")));
                }
                tokio::time::sleep(POLL).await;
            }
        }
        Ok(start.elapsed())
    }

    /// Stops every node cleanly.
    pub async fn shutdown(mut self) -> Result<(), ClusterError> {
        for i in 0..self.slots.len() {
            if self.is_running(i) {
                self.stop_node(i).await?;
            }
        }
        Ok(())
    }
}

fn p2p_addr(port: u16) -> Multiaddr {
    parse_multiaddr(&format!("/ip4/127.0.0.1/tcp/{port}")).expect("a valid multiaddr")
}
