//! The node task: the one owner of the replica, the store and the swarm. Its loop turns what
//! happens (commands, network events, store answers, timers) into replica inputs and executes
//! the outputs; it decides nothing about replication itself.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::MissedTickBehavior;

use crate::core::now_micros;
use crate::core::replica::{Input, Output, Replica, Types, WriteError};
use crate::core::sync::SyncReply;
use crate::core::PeerRecord;
use crate::net::{GossipId, NetEvent, Network, PeerId, Responder};
use crate::store::{Job, Store, StoreError, StoreEvent};

#[cfg(feature = "test-util")]
use super::api::TestCommand;
use super::api::{Command, NodeError, Parts};
use super::feed::Feed;
use super::liveness::{self, Driver, MembersView};
use super::timers::Timers;
use super::view::{Summary, View};

/// How often connectivity is checked (re-dial bootstrap peers when cut off, find more peers).
const MAINTAIN_INTERVAL: Duration = Duration::from_secs(1);
/// Queued commands served in one turn, before the swarm and the timers get theirs: a turn polls
/// the swarm, which costs more than a write, so busy clients are served in batches.
const COMMAND_BURST: usize = 256;

/// The replica's handles in the live node.
pub(super) struct Live;

impl Types for Live {
    type Peer = PeerId;
    type Reply = oneshot::Sender<Result<bool, WriteError>>;
    type Gossip = GossipId;
    type Responder = Responder;
}

pub(super) struct NodeTask {
    replica: Replica<Live>,
    net: Network,
    store: Store,
    view: Arc<View>,
    timers: Timers,
    /// Record changes not yet in the view.
    changed: Vec<(String, Option<Arc<PeerRecord>>)>,
    /// Whether the view's addresses and peers are out of date.
    network_changed: bool,
    /// Local services watching the table's changes.
    feed: Feed,
    /// Which node records' nodes are up (SWIM probes), shown to readers apart from the view.
    liveness: Driver,
    /// Outputs being executed (kept to reuse the allocation).
    outputs: Vec<Output<Live>>,
    /// Why the node must stop: the store's writer is gone. (A failed commit is not fatal: the
    /// replica goes read-only and probes the store until it commits again.)
    fatal: Option<NodeError>,
    #[cfg(feature = "test-util")]
    waiters: test_hooks::Waiters,
}

impl NodeTask {
    /// The task, and the channel its store answers on. The replica has started by the time this
    /// returns: the own record is in the view before anyone can ask for it, unless it waits to
    /// compare clocks with a bootstrap peer first (see `ReplicaConfig::clock_wait_ms`).
    pub fn new(
        parts: Parts,
        view: Arc<View>,
        members: Arc<MembersView>,
    ) -> (Self, mpsc::Receiver<StoreEvent>) {
        let liveness = Driver::new(parts.net.local_peer_id(), &parts.table, members);
        let mut task = NodeTask {
            replica: Replica::new(parts.replica, parts.table),
            net: parts.net,
            store: parts.store,
            view,
            timers: Timers::new(),
            changed: Vec::new(),
            network_changed: true,
            feed: Feed::default(),
            liveness,
            outputs: Vec::new(),
            fatal: None,
            #[cfg(feature = "test-util")]
            waiters: test_hooks::Waiters::default(),
        };
        task.input(Input::Start);
        task.input(Input::OwnAddress(task.net.own_address()));
        task.publish_view();
        (task, parts.store_events)
    }

    pub async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut store_events: mpsc::Receiver<StoreEvent>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(), NodeError> {
        // Made once: a `changed()` future per turn would register and deregister each time.
        let mut stop = std::pin::pin!(async move {
            let mut shutdown = shutdown;
            let _ = shutdown.changed().await;
        });
        let mut maintain = tokio::time::interval(MAINTAIN_INTERVAL);
        maintain.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut liveness_tick = tokio::time::interval(liveness::TICK);
        liveness_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let result = loop {
            // While the store has `max_in_flight` commits to answer, nothing that may write is
            // taken in: clients wait in the command queue, peers in their TCP windows.
            let accepting = self.replica.can_accept();
            tokio::select! {
                _ = &mut stop => break Ok(()),
                Some(event) = store_events.recv() => {
                    self.store_event(event);
                    // A group commit answers many jobs at once: take all of them this turn.
                    while let Ok(event) = store_events.try_recv() {
                        self.store_event(event);
                    }
                }
                Some(command) = commands.recv(), if accepting => {
                    self.command(command);
                    for _ in 1..COMMAND_BURST {
                        if !self.replica.can_accept() {
                            break;
                        }
                        match commands.try_recv() {
                            Ok(command) => self.command(command),
                            Err(_) => break,
                        }
                    }
                }
                event = self.net.next_event(), if accepting => self.net_event(event),
                timer = self.timers.next() => self.input(Input::TimerFired(timer)),
                _ = maintain.tick() => self.liveness.maintain(&mut self.net, self.replica.table()),
                _ = liveness_tick.tick() => {
                    self.liveness.input(liveness::Input::Tick, &mut self.net, self.replica.table())
                }
            }
            self.publish_view();
            // What became durable this turn goes to the watchers as one batch each.
            self.feed.flush();
            if let Some(e) = self.fatal.take() {
                tracing::error!(error = %e, "stopping so that no write is acknowledged without being durable");
                break Err(e);
            }
        };
        drop(commands);
        self.finish(store_events).await;
        tracing::info!("node stopped; store flushed");
        result
    }
}

impl NodeTask {
    /// Feeds one input to the replica and executes its outputs, in order.
    fn input(&mut self, input: Input<Live>) {
        let mut outputs = std::mem::take(&mut self.outputs);
        outputs.extend(self.replica.handle(input, now_micros()));
        let mut answers = Vec::new();
        let mut refused: Option<String> = None;
        for output in outputs.drain(..) {
            // Once a commit was refused, every later one is too, so that what failed is a clean
            // cut the replica can roll back (as the store's writer does after a failed commit).
            if let (Output::Persist { seq, .. }, Some(error)) = (&output, &refused) {
                answers.push(Input::CommitFailed { seq: *seq, error: error.clone() });
                continue;
            }
            if let Some(answer) = self.execute(output) {
                if let Input::CommitFailed { error, .. } = &answer {
                    refused = Some(error.clone());
                }
                answers.push(answer);
            }
        }
        self.outputs = outputs;
        // A commit (or probe) the store would not take is answered as failed, like one that failed.
        for answer in answers {
            if let Input::CommitFailed { seq, .. } = &answer {
                self.feed.failed(*seq);
            }
            self.input(answer);
        }
    }

    /// Executes one output; returns the answer to a commit or probe the store refused.
    fn execute(&mut self, output: Output<Live>) -> Option<Input<Live>> {
        match output {
            Output::Persist { seq, puts, deletes, origin, removals } => {
                let removed = if removals { deletes.as_slice() } else { &[] };
                self.feed.persisting(seq, &puts, removed, origin);
                if let Err(e) = self.store.submit(Job { seq, puts, deletes }) {
                    tracing::error!(error = %e, "the store refused a commit");
                    let error = e.to_string();
                    if matches!(e, StoreError::Closed) {
                        self.fatal.get_or_insert(NodeError::Store(e));
                    }
                    return Some(Input::CommitFailed { seq, error });
                }
            }
            Output::Probe => {
                if let Err(e) = self.store.probe() {
                    if matches!(e, StoreError::Closed) {
                        self.fatal.get_or_insert(NodeError::Store(e));
                        return None;
                    }
                    return Some(Input::ProbeFailed { error: e.to_string() });
                }
            }
            Output::Applied { key, record } => {
                #[cfg(feature = "test-util")]
                if record.is_some() {
                    self.waiters.wake(&key);
                }
                self.liveness.record_changed(&key, record.as_ref(), &mut self.net, self.replica.table());
                self.changed.push((key, record));
            }
            Output::Reply { to, result } => {
                // Read-your-writes: the view shows the write before its client hears of it.
                if !self.changed.is_empty() {
                    self.publish_view();
                }
                // A client that went away no longer waits for its answer.
                let _ = to.send(result);
            }
            Output::Publish(delta) => self.net.publish(delta),
            Output::GossipVerdict { id, verdict } => self.net.report_gossip(id, verdict),
            Output::SendSync { to, id, request } => self.net.request_sync(&to, id, request),
            Output::RespondSync { to, response, clock_us } => {
                self.net.respond_sync(to, SyncReply { clock_us, response })
            }
            Output::Ban(peer) => self.net.ban(peer),
            Output::Unban(peer) => self.net.unban(peer),
            Output::Schedule { after_ms, timer } => self.timers.arm(Duration::from_millis(after_ms), timer),
        }
        None
    }

    fn store_event(&mut self, event: StoreEvent) {
        match event {
            StoreEvent::Committed(seq) => {
                self.feed.committed(seq);
                self.input(Input::Committed(seq));
            }
            StoreEvent::Failed(seq, e) => {
                self.feed.failed(seq);
                self.input(Input::CommitFailed { seq, error: e.to_string() });
            }
            StoreEvent::ProbeOk => self.input(Input::ProbeOk),
            StoreEvent::ProbeFailed(e) => self.input(Input::ProbeFailed { error: e.to_string() }),
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Write { op, reply } => self.input(Input::Write { op, reply }),
            Command::Leave { reply } => self.input(Input::Leave { reply }),
            Command::Watch { snapshot, reply } => {
                let _ = reply.send(self.feed.subscribe(self.replica.table(), snapshot));
            }
            #[cfg(feature = "test-util")]
            Command::Test(test) => self.test_command(test),
        }
    }

    fn net_event(&mut self, event: NetEvent) {
        if let Some(input) = liveness::evidence(&event) {
            self.liveness.input(input, &mut self.net, self.replica.table());
        }
        let input = match event {
            NetEvent::PeerConnected(peer) => {
                tracing::debug!(%peer, "connected");
                self.network_changed = true;
                Input::PeerConnected(peer)
            }
            NetEvent::PeerDisconnected { peer, .. } => {
                tracing::debug!(%peer, "disconnected");
                self.network_changed = true;
                Input::PeerDisconnected(peer)
            }
            NetEvent::Gossip { from, id, data } => Input::Gossip { from, id, data },
            NetEvent::SyncRequest { peer, request, responder } => {
                Input::SyncRequest { from: peer, request, responder }
            }
            NetEvent::MalformedSyncRequest { peer, reason, responder } => {
                tracing::debug!(%peer, %reason, "refused an unreadable sync request");
                Input::MalformedSyncRequest { from: peer, reason, responder }
            }
            NetEvent::SyncResponse { peer, id, reply } => {
                Input::SyncResponse { from: peer, id, response: reply.response, clock_us: reply.clock_us }
            }
            NetEvent::SyncFailed { id, error } => Input::SyncFailed { id, error },
            NetEvent::ListenAddrsChanged => {
                self.network_changed = true;
                Input::OwnAddress(self.net.own_address())
            }
            NetEvent::Probe(event) => {
                return self.liveness.probe_event(event, &mut self.net, self.replica.table());
            }
        };
        self.input(input);
    }

    /// Shows readers what changed this turn.
    fn publish_view(&mut self) {
        let table = self.replica.table();
        let summary = Summary {
            root: table.root(),
            table_size: table.len(),
            tombstones: table.len_with_tombstones() - table.len(),
            table_stats: table.stats(),
            sync_stats: self.replica.stats(),
            net_stats: self.net.stats(),
            read_only: self.replica.read_only().cloned(),
            clock: self.replica.clock_report(),
        };
        let network = std::mem::take(&mut self.network_changed).then(|| {
            let listen = self.net.listen_addrs().iter().map(|a| a.to_string()).collect();
            let peers = self.net.connected_peers().iter().map(|p| p.to_string()).collect();
            (listen, peers, self.net.reach_status())
        });
        self.view.publish(&mut self.changed, summary, network);
        self.liveness.publish(&self.net);
    }

    /// After the loop: no new commits; answer those the store still completes, then close it.
    async fn finish(&mut self, mut store_events: mpsc::Receiver<StoreEvent>) {
        self.store.stop_accepting();
        while let Some(event) = store_events.recv().await {
            self.store_event(event);
        }
        self.publish_view();
        self.feed.flush();
        self.store.close().await;
    }
}

#[cfg(feature = "test-util")]
mod test_hooks {
    use std::collections::HashMap;

    use tokio::sync::oneshot;

    /// Most pending `wait_for_key` calls; more are refused (their reply is dropped, which the
    /// caller sees as an error).
    const MAX_WAITERS: usize = 65_536;

    /// Callers waiting for a key to appear.
    #[derive(Default)]
    pub(super) struct Waiters {
        by_key: HashMap<String, Vec<oneshot::Sender<()>>>,
        count: usize,
    }

    impl Waiters {
        pub fn add(&mut self, key: String, reply: oneshot::Sender<()>) {
            if self.count < MAX_WAITERS {
                self.count += 1;
                self.by_key.entry(key).or_default().push(reply);
            }
        }

        pub fn wake(&mut self, key: &str) {
            if self.by_key.is_empty() {
                return;
            }
            for w in self.by_key.remove(key).unwrap_or_default() {
                self.count -= 1;
                let _ = w.send(());
            }
        }
    }
}

#[cfg(feature = "test-util")]
impl NodeTask {
    fn test_command(&mut self, command: TestCommand) {
        match command {
            TestCommand::Cut { peer, cut, reply } => {
                let result = peer
                    .parse::<PeerId>()
                    .map_err(|e| format!("bad peer id {peer:?}: {e}"))
                    .map(|p| self.net.set_cut(p, cut));
                let _ = reply.send(result);
            }
            TestCommand::WaitForKey { key, reply } => {
                if self.replica.table().get(&key).is_some() {
                    let _ = reply.send(());
                } else {
                    self.waiters.add(key, reply);
                }
            }
            TestCommand::PeerScore { peer, reply } => {
                let _ = reply.send(peer.parse::<PeerId>().ok().and_then(|p| self.net.peer_score(&p)));
            }
        }
    }
}
