//! The own record's life: its jittered refresh, the expiry of other nodes' records, and leaving
//! the network (the own record tombstoned before the node stops).

use rand::Rng;

use super::readonly::{before, undo_of};
use super::{ClockState, Output, Replica, Source, Types};

/// Every refresh is a write that reaches every node (~1.7 KB of traffic per node at N=50, measured
/// in the simulator's idle scenario), so N nodes refreshing every 30 minutes cost each node
/// N/1800 writes a second: 9.4 KB/s at 10,000 nodes. Waiting at least this long per known node
/// keeps the whole network to about one refresh a second, ~1.7 KB/s per node at any N (at 10,000
/// nodes each refreshes every 2.8 hours; liveness does not depend on it).
pub const REFRESH_MS_PER_NODE: u64 = 1_000;

impl<T: Types> Replica<T> {
    /// The wait until the next own-record refresh: the refresh interval, or longer in a large
    /// network ([`REFRESH_MS_PER_NODE`] per node the table knows, but at most a quarter of the
    /// node TTL, so that a live node's record never expires), times 0.8 to 1.2, drawn from the
    /// replica's seeded rng (a simulation replays), so that nodes started together do not all
    /// rewrite their records at the same moment, then or ever after.
    pub(super) fn next_refresh_ms(&mut self) -> u64 {
        let stretched = (self.table.node_records() as u64)
            .saturating_mul(REFRESH_MS_PER_NODE)
            .min(self.table.node_ttl_ms() / 4);
        let interval = self.config.refresh_interval_ms.max(stretched).max(1);
        let (low, high) = (interval - interval / 5, interval + interval / 5);
        self.rng.gen_range(low..=high)
    }

    /// The periodic collection: tombstones past their grace and node records past the node TTL
    /// leave the table and the disk (and expired records the readers' view). Skipped while
    /// read-only (a collection whose commit fails is not undone: the disk then still holds what
    /// expired, which the next start loads and the next collection drops), and with a clock far
    /// ahead: entries would go before their time, and a stale replica could bring back what a
    /// tombstone removed.
    pub(super) fn collect(&mut self, now_ms: u64) {
        if self.read_only.is_some() || self.clock.report().state == ClockState::Refuse {
            return;
        }
        let expired = self.table.collect_expired_nodes(now_ms, &self.config.own_key);
        for key in &expired {
            tracing::info!(%key, "a node record expired: its node did not refresh it within the node TTL");
            self.out.push(Output::Applied { key: key.clone(), record: None });
        }
        if !expired.is_empty() {
            self.persist(Vec::new(), expired, None, None, Source::removals(), Vec::new());
        }
        let tombstones = self.table.collect_tombstones(now_ms);
        if !tombstones.is_empty() {
            self.persist(Vec::new(), tombstones, None, None, Source::local(false), Vec::new());
        }
    }

    /// Leaves the network: tombstones the own record (a signed local write, made durable and
    /// gossiped like a client's; `reply` is answered once it is durable) and never writes the own
    /// record again, whatever refresh or address change comes before the node stops. `false`:
    /// there was no live own record to remove.
    pub(super) fn leave(&mut self, reply: T::Reply, now_us: i64) {
        // Set first: even if the tombstone cannot be written, a refresh must not announce a node
        // that is about to stop.
        self.left = true;
        if self.read_only.is_some() {
            return self.refuse_write(reply);
        }
        if let Err(e) = self.may_stamp(now_us) {
            return self.out.push(Output::Reply { to: reply, result: Err(e) });
        }
        let key = self.config.own_key.clone();
        let before = before(&self.table, [key.as_str()]);
        let now_ms = u64::try_from(now_us / 1000).unwrap_or(0);
        let Some(tombstone) = self.table.remove(&key, now_ms) else {
            return self.out.push(Output::Reply { to: reply, result: Ok(false) });
        };
        self.applied(&tombstone);
        let undo = undo_of(&self.table, before, std::slice::from_ref(&tombstone));
        self.persist(vec![tombstone], Vec::new(), Some(reply), None, Source::local(true), undo);
    }
}
