//! The read view: what readers see of the table and of the node, written only by the node task.
//! Reads take the read lock for a lookup and never wait for the task; the task takes the write
//! lock once per turn to apply what changed. A write's reply is sent only after the view shows it,
//! so a client reads its own writes.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::core::{digest_hex, PeerRecord, Table, TableStats};
use crate::net::{NetStats, ReachStatus};

use crate::core::replica::{ClockReport, ReadOnly, SyncStats};

use super::api::Status;

#[derive(Debug)]
pub(super) struct View {
    state: RwLock<State>,
}

/// The node's figures, as the task last published them.
#[derive(Debug, Clone, Default)]
pub(super) struct Summary {
    pub root: u128,
    pub table_size: usize,
    pub tombstones: usize,
    pub table_stats: TableStats,
    pub sync_stats: SyncStats,
    pub net_stats: NetStats,
    pub read_only: Option<ReadOnly>,
    pub clock: ClockReport,
}

#[derive(Debug)]
struct State {
    /// Live records by key.
    records: HashMap<Arc<str>, Arc<PeerRecord>>,
    /// The own record's key: the peer id.
    peer_id: String,
    summary: Summary,
    listen_addrs: Vec<String>,
    connected_peers: Vec<String>,
    reach: ReachStatus,
    /// Fixed at start.
    scrubbed_at_start: usize,
}

impl View {
    /// A view of the table as loaded, before the task starts.
    pub fn new(peer_id: String, table: &Table, scrubbed_at_start: usize) -> Self {
        let records = table.iter_live().map(|(k, v)| (k.clone(), v.clone())).collect();
        View {
            state: RwLock::new(State {
                records,
                peer_id,
                summary: Summary::default(),
                listen_addrs: Vec::new(),
                connected_peers: Vec::new(),
                reach: ReachStatus::default(),
                scrubbed_at_start,
            }),
        }
    }

    /// A panic while the task held the lock cannot leave the map half-changed in a way a reader
    /// could trip on (each change is one insert or remove), so a poisoned lock is still read.
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, key: &str) -> Option<Arc<PeerRecord>> {
        self.read().records.get(key).cloned()
    }

    pub fn snapshot(&self) -> Vec<(Arc<str>, Arc<PeerRecord>)> {
        self.read().records.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    pub fn own_record(&self) -> Option<Arc<PeerRecord>> {
        let state = self.read();
        state.records.get(state.peer_id.as_str()).cloned()
    }

    pub fn status(&self) -> Status {
        let s = self.read();
        Status {
            peer_id: s.peer_id.clone(),
            listen_addrs: s.listen_addrs.clone(),
            connected_peers: s.connected_peers.clone(),
            reach: s.reach.clone(),
            table_size: s.summary.table_size,
            digest: digest_hex(s.summary.root),
            tombstones: s.summary.tombstones,
            table_stats: s.summary.table_stats,
            net_stats: s.summary.net_stats,
            sync_stats: s.summary.sync_stats,
            read_only: s.summary.read_only.clone(),
            clock: s.summary.clock,
            scrubbed_at_start: s.scrubbed_at_start,
            // Filled in by the handle from the liveness view.
            liveness: Default::default(),
        }
    }

    /// Applies the task's changes: records (drained from `changed`), figures, and, when given,
    /// the network's addresses, peers and reachability.
    pub fn publish(
        &self,
        changed: &mut Vec<(String, Option<Arc<PeerRecord>>)>,
        summary: Summary,
        network: Option<(Vec<String>, Vec<String>, ReachStatus)>,
    ) {
        let mut state = self.write();
        for (key, record) in changed.drain(..) {
            match record {
                Some(r) => {
                    state.records.insert(Arc::from(key), r);
                }
                None => {
                    state.records.remove(key.as_str());
                }
            }
        }
        state.summary = summary;
        if let Some((listen_addrs, connected_peers, reach)) = network {
            state.listen_addrs = listen_addrs;
            state.connected_peers = connected_peers;
            state.reach = reach;
        }
    }
}
