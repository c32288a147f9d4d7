//! The node task: owns the table, the store and the network, and serves commands, network events
//! and timers from one `select!` loop. Replication (gossip and anti-entropy) is in `replication.rs`.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior, Sleep};

use crate::core::sync::Session;
use crate::core::{digest_hex, now_micros, now_millis, Entry, PeerFields, PeerRecord, Table};
use crate::net::{self, GossipId, Keypair, NetConfig, Network, PeerId, Verdict};
use crate::store::{Store, StoreError, WriteJob};

use super::replication::MAX_REGOSSIP_ENTRIES;
use super::{Command, NodeConfig, NodeError, Status, SyncStats};

/// Durable entries waiting to be propagated. Sent with `try_send` from the store's thread, so it
/// never blocks a commit; it holds more than the store queue can have in flight, and anything
/// dropped anyway is repaired by anti-entropy.
const STORE_EVENTS: usize = 2 * crate::store::WRITE_QUEUE + crate::store::MAX_GROUP;
/// Most pending [`Command::WaitForKey`] calls; more are refused (their reply is dropped).
const MAX_WAITERS: usize = 65_536;
/// Commands served in a row before the network, the store's events and the timers get a turn.
const COMMAND_BURST: usize = 64;
/// How often connectivity is checked (re-dial bootstrap peers when cut off, find more peers).
const MAINTAIN_INTERVAL: Duration = Duration::from_secs(1);

/// Where durable entries came from, which decides what happens next.
pub(super) enum Origin {
    /// A local write: publish it.
    Local,
    /// A valid gossip message: now durable, so let gossipsub forward it.
    Gossip(GossipId),
    /// Repaired by anti-entropy: re-publish only if it is a small repair (see replication.rs).
    Repair,
}

/// Something the store's thread tells the node task.
pub(super) enum StoreEvent {
    Durable(Vec<Entry>, Origin),
    /// A commit failed: durability can no longer be promised.
    Failed(Arc<StoreError>),
}

pub(super) struct Actor {
    pub(super) config: NodeConfig,
    pub(super) peer_id: PeerId,
    /// The peer id as text: the own record's key (kept, as encoding it costs more than a get).
    own_key: String,
    pub(super) table: Table,
    store: Store,
    pub(super) net: Network,
    store_events: mpsc::Sender<StoreEvent>,
    store_events_rx: mpsc::Receiver<StoreEvent>,
    /// Entries waiting to be published in the next delta.
    pub(super) outbox: Vec<Entry>,
    /// When the outbox is published; armed by the first entry of a batch.
    pub(super) flush_at: Option<Instant>,
    /// Anti-entropy sessions this node started, one per peer at most.
    pub(super) sessions: HashMap<PeerId, Session>,
    /// Bad messages per peer; enough of them gets the peer banned.
    pub(super) strikes: HashMap<PeerId, u32>,
    /// Banned peers and when the ban ends.
    pub(super) bans: HashMap<PeerId, Instant>,
    pub(super) sync_stats: SyncStats,
    /// Callers waiting for a key to appear, and how many there are.
    waiters: HashMap<String, Vec<tokio::sync::oneshot::Sender<()>>>,
    waiter_count: usize,
}

impl Actor {
    pub(super) fn new(
        config: NodeConfig,
        keypair: Keypair,
        store: Store,
        table: Table,
    ) -> Result<Self, NodeError> {
        let net = Network::start(
            keypair,
            NetConfig {
                listen: config.listen.clone(),
                bootstrap: config.bootstrap.clone(),
                announce: config.announce.clone(),
                network_id: config.network_id.clone(),
                target_peers: config.target_peers,
            },
        )?;
        let (store_events, store_events_rx) = mpsc::channel(STORE_EVENTS);
        Ok(Actor {
            peer_id: net.local_peer_id(),
            own_key: net.local_peer_id().to_string(),
            config,
            table,
            store,
            net,
            store_events,
            store_events_rx,
            outbox: Vec::new(),
            flush_at: None,
            sessions: HashMap::new(),
            strikes: HashMap::new(),
            bans: HashMap::new(),
            sync_stats: SyncStats::default(),
            waiters: HashMap::new(),
            waiter_count: 0,
        })
    }

    pub(super) fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    pub(super) fn table_len(&self) -> usize {
        self.table.len()
    }

    pub(super) async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(), NodeError> {
        self.write_own_record().await;
        // Jittered: nodes started together must not all rewrite their records at the same moment.
        let mut refresh = interval_from(
            Instant::now() + self.config.refresh_interval.mul_f64(rand::random::<f64>()),
            self.config.refresh_interval,
        );
        let mut gc = interval(self.config.gc_interval);
        let mut sync = interval(self.config.sync_interval);
        let mut maintain = interval(MAINTAIN_INTERVAL);
        let flush: Pin<&mut Sleep> = std::pin::pin!(tokio::time::sleep(Duration::ZERO));
        let mut flush = flush;
        // Made once: a `changed()` future per turn would register and deregister each time.
        let mut stop = std::pin::pin!(async move {
            let mut shutdown = shutdown;
            let _ = shutdown.changed().await;
        });
        let mut burst = 0;
        let result = loop {
            if let Some(at) = self.flush_at {
                flush.as_mut().reset(at);
            }
            // Biased: a waiting client's command comes first (polling the swarm costs more than a
            // get), but after COMMAND_BURST commands in a row every other source gets a turn.
            tokio::select! {
                biased;
                Some(cmd) = commands.recv(), if burst < COMMAND_BURST => {
                    burst += 1;
                    self.handle(cmd).await;
                    continue;
                }
                _ = &mut stop => break Ok(()),
                Some(event) = self.store_events_rx.recv() => match event {
                    StoreEvent::Durable(entries, origin) => self.on_durable(entries, origin),
                    StoreEvent::Failed(e) => {
                        tracing::error!(error = %e, "storage failed; stopping so no write is acknowledged without being durable");
                        break Err(NodeError::NotDurable(e));
                    }
                },
                event = self.net.next_event() => self.on_net_event(event).await,
                _ = &mut flush, if self.flush_at.is_some() => self.flush_outbox(),
                _ = sync.tick() => self.sync_with_random_peer(),
                _ = maintain.tick() => self.maintain(),
                _ = refresh.tick() => self.write_own_record().await,
                _ = gc.tick() => self.collect_tombstones().await,
                // Nothing else was ready: commands may go first again.
                _ = std::future::ready(()), if burst >= COMMAND_BURST => {}
            }
            burst = 0;
        };
        drop(commands);
        self.store.close().await;
        tracing::info!("node stopped; store flushed");
        result
    }

    async fn handle(&mut self, cmd: Command) {
        // Clients may not add, change or remove the node's own record: type 8 must always answer,
        // and a forged record would be published to the whole network.
        let own = self.peer_id.to_string();
        let cmd = match cmd {
            Command::Add { key, reply, .. }
            | Command::Update { key, reply, .. }
            | Command::Remove { key, reply }
                if key == own =>
            {
                let _ = reply.send(Err(NodeError::OwnRecord));
                return;
            }
            cmd => cmd,
        };
        match cmd {
            Command::Add { key, fields, reply } => {
                if self.table.get(&key).is_some() {
                    let _ = reply.send(Ok(false));
                    return;
                }
                let record = PeerRecord::create(fields, now_micros());
                let entry = self.table.put(key, record, now_millis());
                self.persist(vec![entry], Origin::Local, move |r| {
                    let _ = reply.send(r.map(|_| true));
                })
                .await;
            }
            Command::Update { key, fields, reply } => {
                let Some(current) = self.table.get(&key) else {
                    let _ = reply.send(Ok(false));
                    return;
                };
                let record = current.updated(fields, now_micros());
                let entry = self.table.put(key, record, now_millis());
                self.persist(vec![entry], Origin::Local, move |r| {
                    let _ = reply.send(r.map(|_| true));
                })
                .await;
            }
            Command::Remove { key, reply } => match self.table.remove(&key, now_millis()) {
                None => {
                    let _ = reply.send(Ok(false));
                }
                Some(entry) => {
                    self.persist(vec![entry], Origin::Local, move |r| {
                        let _ = reply.send(r.map(|_| true));
                    })
                    .await
                }
            },
            Command::Get { key, reply } => {
                let _ = reply.send(self.table.get(&key).cloned());
            }
            Command::Snapshot { reply } => {
                let all = self.table.iter_live().map(|(k, v)| (k.clone(), v.clone())).collect();
                let _ = reply.send(all);
            }
            Command::OwnRecord { reply } => {
                let _ = reply.send(self.table.get(&self.own_key).cloned());
            }
            Command::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Command::SetBlocked { peer, blocked, reply } => {
                let result =
                    peer.parse::<PeerId>().map_err(|e| format!("bad peer id {peer:?}: {e}")).map(|p| {
                        if blocked {
                            self.net.block(p);
                            self.sessions.remove(&p);
                        } else {
                            self.net.unblock(p);
                        }
                    });
                let _ = reply.send(result);
            }
            Command::WaitForKey { key, reply } => {
                if self.table.get(&key).is_some() {
                    let _ = reply.send(());
                } else if self.waiter_count < MAX_WAITERS {
                    self.waiter_count += 1;
                    self.waiters.entry(key).or_default().push(reply);
                }
            }
            Command::PeerScore { peer, reply } => {
                let _ = reply.send(peer.parse::<PeerId>().ok().and_then(|p| self.net.peer_score(&p)));
            }
        }
    }

    fn status(&self) -> Status {
        Status {
            peer_id: self.peer_id.to_string(),
            listen_addrs: self.net.listen_addrs().iter().map(|a| a.to_string()).collect(),
            connected_peers: self.net.connected_peers().iter().map(|p| p.to_string()).collect(),
            table_size: self.table.len(),
            digest: digest_hex(self.table.root()),
            tombstones: self.table.len_with_tombstones() - self.table.len(),
            table_stats: self.table.stats(),
            net_stats: self.net.stats(),
            sync_stats: self.sync_stats,
        }
    }

    /// Hands entries to the store; `ack` runs once they are durable (or the commit failed), then
    /// the node task hears of them (to propagate them).
    pub(super) async fn persist(
        &mut self,
        entries: Vec<Entry>,
        origin: Origin,
        ack: impl FnOnce(Result<(), NodeError>) + Send + 'static,
    ) {
        if entries.is_empty() {
            return;
        }
        if !self.waiters.is_empty() {
            for e in entries.iter().filter(|e| e.record.is_some()) {
                for w in self.waiters.remove(&e.key).unwrap_or_default() {
                    self.waiter_count -= 1;
                    let _ = w.send(());
                }
            }
        }
        let events = self.store_events.clone();
        // Kept for after the commit only if they will be published (see `on_durable`).
        let publish = match origin {
            Origin::Local => true,
            Origin::Repair => entries.len() <= MAX_REGOSSIP_ENTRIES,
            Origin::Gossip(_) => false,
        };
        let durable = if publish { entries.clone() } else { Vec::new() };
        let job = WriteJob {
            puts: entries,
            deletes: Vec::new(),
            on_durable: Some(Box::new(move |result| match result {
                Ok(()) => {
                    ack(Ok(()));
                    let _ = events.try_send(StoreEvent::Durable(durable, origin));
                }
                Err(e) => {
                    ack(Err(NodeError::NotDurable(e.clone())));
                    let _ = events.try_send(StoreEvent::Failed(e));
                }
            })),
        };
        if self.store.write(job).await.is_err() {
            tracing::error!("store writer is gone");
        }
    }

    fn on_durable(&mut self, entries: Vec<Entry>, origin: Origin) {
        match origin {
            // Large repairs arrive here empty (see `persist`), so they are not regossiped.
            Origin::Local | Origin::Repair => self.queue_gossip(entries),
            Origin::Gossip(id) => self.net.report_gossip(id, Verdict::Accept),
        }
    }

    /// Puts (or refreshes) this node's own record: key = peer id, `lastConnectionOn` = now.
    pub(super) async fn write_own_record(&mut self) {
        let key = self.own_key.clone();
        let advertised = self.net.advertised_addrs();
        let configured = self.config.announce.iter().chain(&self.config.listen);
        // Prefer an address others can reach: announced, then non-loopback listen addresses.
        let (ip, port) = advertised
            .iter()
            .filter(|a| !net::is_loopback(a))
            .chain(advertised.iter())
            .chain(configured)
            .find_map(net::host_and_port)
            .unwrap_or_default();
        let addrs = advertised
            .iter()
            .take(crate::core::record::MAX_ADDRS)
            .map(|a| format!("{a}/p2p/{}", self.peer_id))
            .collect();
        let fields = PeerFields {
            name: Some(self.config.name.clone().unwrap_or_else(|| default_name(&key))),
            ip: Some(ip),
            port: Some(if port == 0 { String::new() } else { port.to_string() }),
            peer_id: Some(key.clone()),
            ports: None,
            addrs: Some(addrs),
        };
        let now_us = now_micros();
        let record = match self.table.get(&key) {
            Some(current) => current.updated(fields, now_us),
            None => PeerRecord::create(fields, now_us),
        };
        if let Err(e) = record.validate() {
            tracing::warn!(error = %e, "own record is invalid; not written");
            return;
        }
        let entry = self.table.put(key, record, now_millis());
        self.persist(vec![entry], Origin::Local, |_| {}).await;
    }

    async fn collect_tombstones(&mut self) {
        let expired = self.table.collect_tombstones(now_millis());
        if expired.is_empty() {
            return;
        }
        tracing::debug!(count = expired.len(), "collected tombstones");
        let job = WriteJob { puts: Vec::new(), deletes: expired, on_durable: None };
        let _ = self.store.write(job).await;
    }
}

/// `udht-` and the last 8 characters of the peer id: short, and unique in practice.
fn default_name(peer_id: &str) -> String {
    format!("udht-{}", &peer_id[peer_id.len().saturating_sub(8)..])
}

fn interval(period: Duration) -> tokio::time::Interval {
    interval_from(Instant::now() + period, period)
}

fn interval_from(first: Instant, period: Duration) -> tokio::time::Interval {
    let mut i = tokio::time::interval_at(first, period);
    i.set_missed_tick_behavior(MissedTickBehavior::Delay);
    i
}
