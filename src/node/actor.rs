//! The node task: owns the table and the store, and serves commands and timers from one loop.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;

use crate::core::{digest_hex, now_micros, now_millis, Entry, PeerFields, Table};
use crate::net::{self, Keypair, PeerId};
use crate::store::{Store, StoreError, WriteJob};

use super::{Command, NodeConfig, NodeError, Status};

/// Durable entries waiting to be propagated. Sent with `try_send` from the store's thread, so it
/// never blocks a commit; it holds more than the store queue can have in flight, and anything
/// dropped anyway is repaired by anti-entropy.
const DURABLE_QUEUE: usize = 2 * crate::store::WRITE_QUEUE + crate::store::MAX_GROUP;

/// Something the store's thread tells the node task.
enum StoreEvent {
    /// These entries are on disk and may be propagated.
    Durable(Vec<Entry>),
    /// A commit failed: durability can no longer be promised.
    Failed(Arc<StoreError>),
}

pub(super) struct Actor {
    config: NodeConfig,
    peer_id: PeerId,
    table: Table,
    store: Store,
    store_events: mpsc::Sender<StoreEvent>,
    store_events_rx: mpsc::Receiver<StoreEvent>,
}

impl Actor {
    pub(super) fn new(
        config: NodeConfig,
        keypair: Keypair,
        store: Store,
        entries: Vec<Entry>,
    ) -> Result<Self, NodeError> {
        let node_id = net::node_id_of(&keypair)?;
        let table = Table::load(node_id, config.table, entries);
        let (store_events, store_events_rx) = mpsc::channel(DURABLE_QUEUE);
        Ok(Actor {
            config,
            peer_id: keypair.public().to_peer_id(),
            table,
            store,
            store_events,
            store_events_rx,
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
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), NodeError> {
        self.write_own_record().await;
        let mut refresh = interval(self.config.refresh_interval);
        let mut gc = interval(self.config.gc_interval);
        let result = loop {
            tokio::select! {
                _ = shutdown.changed() => break Ok(()),
                Some(cmd) = commands.recv() => self.handle(cmd).await,
                Some(event) = self.store_events_rx.recv() => match event {
                    StoreEvent::Durable(_entries) => {} // propagated by the network (part 2)
                    StoreEvent::Failed(e) => {
                        tracing::error!(error = %e, "storage failed; stopping so no write is acknowledged without being durable");
                        break Err(NodeError::NotDurable(e));
                    }
                },
                _ = refresh.tick() => self.write_own_record().await,
                _ = gc.tick() => self.collect_tombstones().await,
            }
        };
        drop(commands);
        self.store.close().await;
        tracing::info!("node stopped; store flushed");
        result
    }

    async fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Add { key, fields, reply } => {
                if self.table.get(&key).is_some() {
                    let _ = reply.send(Ok(false));
                    return;
                }
                let record = crate::core::PeerRecord::create(fields, now_micros());
                let entry = self.table.put(key, record, now_millis());
                self.persist(vec![entry], move |r| {
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
                self.persist(vec![entry], move |r| {
                    let _ = reply.send(r.map(|_| true));
                })
                .await;
            }
            Command::Remove { key, reply } => match self.table.remove(&key, now_millis()) {
                None => {
                    let _ = reply.send(Ok(false));
                }
                Some(entry) => {
                    self.persist(vec![entry], move |r| {
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
                let _ = reply.send(self.table.get(&self.peer_id.to_string()).cloned());
            }
            Command::Status { reply } => {
                let _ = reply.send(self.status());
            }
        }
    }

    fn status(&self) -> Status {
        Status {
            peer_id: self.peer_id.to_string(),
            listen_addrs: self.config.listen.iter().map(|a| a.to_string()).collect(),
            connected_peers: Vec::new(),
            table_size: self.table.len(),
            digest: digest_hex(self.table.root()),
            tombstones: self.table.len_with_tombstones() - self.table.len(),
            table_stats: self.table.stats(),
        }
    }

    /// Hands entries to the store; `ack` runs once they are durable (or the commit failed).
    async fn persist(
        &mut self,
        entries: Vec<Entry>,
        ack: impl FnOnce(Result<(), NodeError>) + Send + 'static,
    ) {
        let events = self.store_events.clone();
        let durable = entries.clone();
        let job = WriteJob {
            puts: entries,
            deletes: Vec::new(),
            on_durable: Some(Box::new(move |result| match result {
                Ok(()) => {
                    ack(Ok(()));
                    let _ = events.try_send(StoreEvent::Durable(durable));
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

    /// Puts (or refreshes) this node's own record: key = peer id, `lastConnectionOn` = now.
    async fn write_own_record(&mut self) {
        let key = self.peer_id.to_string();
        let addrs: Vec<_> = self.config.announce.iter().chain(&self.config.listen).collect();
        let (ip, port) = addrs.iter().find_map(|a| net::host_and_port(a)).unwrap_or_default();
        let fields = PeerFields {
            name: Some(self.config.name.clone().unwrap_or_else(|| default_name(&key))),
            ip: Some(ip),
            port: Some(if port == 0 { String::new() } else { port.to_string() }),
            peer_id: Some(key.clone()),
            ports: None,
            addrs: Some(self.config.announce.iter().map(|a| a.to_string()).collect()),
        };
        let now_us = now_micros();
        let record = match self.table.get(&key) {
            Some(current) => current.updated(fields, now_us),
            None => crate::core::PeerRecord::create(fields, now_us),
        };
        if let Err(e) = record.validate() {
            tracing::warn!(error = %e, "own record is invalid; not written");
            return;
        }
        let entry = self.table.put(key, record, now_millis());
        self.persist(vec![entry], |_| {}).await;
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
    let mut i = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    i.set_missed_tick_behavior(MissedTickBehavior::Delay);
    i
}
