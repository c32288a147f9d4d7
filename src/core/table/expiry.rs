//! Node records' expiry: a record keyed by a peer id that its node did not refresh within the
//! node TTL leaves every replica, decided by its stamp alone (see [`Table::collect_expired_nodes`]).

use super::{Stamp, Table};
use crate::core::sign::owner_of_key;

impl Table {
    /// Whether a live record under `key` stamped `stamp` is a node record past the node TTL.
    /// Tombstones and keys that are not peer ids never expire this way.
    pub(super) fn is_expired_node(&self, key: &str, live: bool, stamp: &Stamp, now_ms: u64) -> bool {
        live && stamp.millis.saturating_add(self.node_ttl_ms) < now_ms && owner_of_key(key).is_some()
    }

    /// Drops node records not refreshed within the node TTL, except `keep` (the running node's
    /// own, which it refreshes long before); returns their keys (to delete from disk and from
    /// readers' view).
    ///
    /// Removed outright, as an expired tombstone is, rather than turned into a tombstone: the
    /// expiry follows from the stamp alone, so every replica reaches the same verdict on the same
    /// entry without anyone writing (a tombstone would need a writer and a signature, and only
    /// the dead node may sign its key). `apply` refuses an expired node record from a replica
    /// that has not collected it yet, so it cannot come back and the digests agree. Anything older
    /// under the key is expired too, except a tombstone still within its grace, which is valid
    /// and spreads as usual.
    pub fn collect_expired_nodes(&mut self, now_ms: u64, keep: &str) -> Vec<String> {
        let expired: Vec<String> = self
            .entries
            .iter()
            .filter(|(k, r)| {
                ***k != *keep && self.is_expired_node(k, r.val.record.is_some(), &r.marker, now_ms)
            })
            .map(|(k, _)| k.to_string())
            .collect();
        for k in &expired {
            self.uninstall(k);
        }
        self.stats.nodes_expired += expired.len() as u64;
        expired
    }

    /// Live node records (keys that are peer ids): how many nodes the table knows.
    pub fn node_records(&self) -> usize {
        self.iter_live().filter(|(k, _)| owner_of_key(k).is_some()).count()
    }

    /// How long a node record lives without a refresh.
    pub fn node_ttl_ms(&self) -> u64 {
        self.node_ttl_ms
    }
}
