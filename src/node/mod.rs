//! The node: one task owns the replica (the table and its replication state), the store and the
//! swarm, and executes what the replica decides (see `task.rs`). Everything else reaches it
//! through a cloneable [`NodeHandle`]: writes go to the task as commands, reads are served from a
//! view that only the task writes.

mod api;
mod feed;
mod liveness;
mod task;
mod timers;
mod view;

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::core::replica::WriteOp;
use crate::core::{PeerFields, PeerRecord};

pub use crate::core::liveness::State as LivenessState;
pub use crate::core::replica::SyncStats;
pub use api::{NodeError, Parts, Status};
pub use feed::{Change, ChangeReceiver, Changes, Watch, WatchError, MAX_WATCHERS, WATCH_QUEUE};
pub use liveness::{LivenessCounts, Member};

use api::Command;
#[cfg(feature = "test-util")]
use api::TestCommand;
use liveness::MembersView;
use view::View;

/// Commands waiting for the node task; a full queue makes callers wait rather than grow memory.
pub const COMMAND_QUEUE: usize = 1024;

/// A cloneable handle to a running node.
#[derive(Debug, Clone)]
pub struct NodeHandle {
    commands: mpsc::Sender<Command>,
    view: Arc<View>,
    members: Arc<MembersView>,
}

impl NodeHandle {
    async fn send(&self, command: Command) -> Result<(), NodeError> {
        // The queue is rarely full: try without waiting first, wait only if it is.
        match self.commands.try_send(command) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(cmd)) => {
                self.commands.send(cmd).await.map_err(|_| NodeError::ShuttingDown)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(NodeError::ShuttingDown),
        }
    }

    /// Writes; answers once the write is durable (`false`: refused by the protocol, e.g. an add
    /// of a key that exists).
    async fn write(&self, op: WriteOp) -> Result<bool, NodeError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Write { op, reply }).await?;
        Ok(answer.await.map_err(|_| NodeError::ShuttingDown)??)
    }

    /// Adds a record unless a live one exists (then `false`).
    pub async fn add(&self, key: String, fields: PeerFields) -> Result<bool, NodeError> {
        self.write(WriteOp::Add { key, fields }).await
    }

    /// Changes a live record (`false` if there is none).
    pub async fn update(&self, key: String, fields: PeerFields) -> Result<bool, NodeError> {
        self.write(WriteOp::Update { key, fields }).await
    }

    /// Removes a live record, leaving a tombstone (`false` if there is none).
    pub async fn remove(&self, key: String) -> Result<bool, NodeError> {
        self.write(WriteOp::Remove { key }).await
    }

    /// Leaves the network: tombstones this node's own record and never rewrites it; answers once
    /// the tombstone is durable (it is gossiped at the next batch, milliseconds later). `false`:
    /// there was no own record. For a node about to stop (`--leave`).
    pub async fn leave(&self) -> Result<bool, NodeError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Leave { reply }).await?;
        Ok(answer.await.map_err(|_| NodeError::ShuttingDown)??)
    }

    /// Starts a watch: the table now (if `snapshot`), then every change as it becomes durable.
    pub async fn watch(&self, snapshot: bool) -> Result<Watch, NodeError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Watch { snapshot, reply }).await?;
        Ok(answer.await.map_err(|_| NodeError::ShuttingDown)??)
    }

    /// The live record under `key`. Sees every write this handle's caller was answered for.
    pub fn get(&self, key: &str) -> Option<Arc<PeerRecord>> {
        self.view.get(key)
    }

    /// Every live record; cheap (the records are shared, not copied).
    pub fn snapshot(&self) -> Vec<(Arc<str>, Arc<PeerRecord>)> {
        self.view.snapshot()
    }

    /// This node's own record (absent only before the first write at start).
    pub fn own_record(&self) -> Option<Arc<PeerRecord>> {
        self.view.own_record()
    }

    pub fn status(&self) -> Status {
        Status { liveness: self.members.counts(), ..self.view.status() }
    }

    /// The node records' liveness as this node sees it, sorted by peer id.
    pub fn members(&self) -> Arc<Vec<Member>> {
        self.members.members()
    }
}

/// Test hooks: partitions, waiting for a key, gossip scores. Not in the production node.
#[cfg(feature = "test-util")]
impl NodeHandle {
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> TestCommand) -> Result<T, NodeError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Test(make(reply))).await?;
        answer.await.map_err(|_| NodeError::ShuttingDown)
    }

    /// Cuts this node off from `peer` (both ways), or lets it back; a ban in force stays.
    pub async fn set_cut(&self, peer: String, cut: bool) -> Result<Result<(), String>, NodeError> {
        self.ask(|reply| TestCommand::Cut { peer, cut, reply }).await
    }

    /// Waits until this node holds a live record under `key`.
    pub async fn wait_for_key(&self, key: String) -> Result<(), NodeError> {
        self.ask(|reply| TestCommand::WaitForKey { key, reply }).await
    }

    /// The gossipsub score of a peer, if it is known.
    pub async fn peer_score(&self, peer: String) -> Result<Option<f64>, NodeError> {
        self.ask(|reply| TestCommand::PeerScore { peer, reply }).await
    }
}

/// Starts the node task. It runs until `shutdown` changes (then commits what is queued and
/// answers its clients) or the store's writer stops (then it returns the error). A failed commit
/// does not stop it: the node turns read-only until the store commits again.
pub fn spawn(
    parts: Parts,
    shutdown: watch::Receiver<bool>,
) -> (NodeHandle, JoinHandle<Result<(), NodeError>>) {
    let (commands, command_rx) = mpsc::channel(COMMAND_QUEUE);
    let view =
        Arc::new(View::new(parts.net.local_peer_id().to_string(), &parts.table, parts.scrubbed_at_start));
    let members = Arc::new(MembersView::default());
    let handle = NodeHandle { commands, view: view.clone(), members: members.clone() };
    let (node, store_events) = task::NodeTask::new(parts, view, members);
    let task = tokio::spawn(node.run(command_rx, store_events, shutdown));
    (handle, task)
}
