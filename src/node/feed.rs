//! The change feed: local services subscribe and get every change to the table as it becomes
//! durable here, local or remote, once each and in the order this node applied them.
//!
//! The node task owns the feed. A commit's changes are kept from the moment it goes to the store
//! (only while someone watches) and sent when the store answers that it is durable; commits are
//! answered in order, so watchers see changes in apply order. A watcher starts from the next
//! commit after its snapshot, which already holds everything before: no gap, no repeat. Sending
//! never waits: a watcher whose queue is full misses the change, which is counted, and its reader
//! ends the watch with that count (it must reconnect and take a new snapshot).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::core::replica::{Origin, Seq};
use crate::core::{Entry, PeerRecord, Table};

/// Changes queued for one watcher before it counts as lagging: a few seconds of a busy node's
/// writes, so a reader that keeps up never drops one.
pub const WATCH_QUEUE: usize = 16 * 1024;
/// Most watchers at once: each change is copied to each, so their number bounds the cost.
pub const MAX_WATCHERS: usize = 64;

/// One change, as a watcher receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub key: String,
    /// The record now under `key`; `None` when it was removed.
    pub record: Option<Arc<PeerRecord>>,
    pub origin: Origin,
}

/// A subscription: the table when it began (if asked for), then every later change.
#[derive(Debug)]
pub struct Watch {
    /// Live records at the start, sorted by key; empty unless a snapshot was asked for.
    pub snapshot: Vec<(Arc<str>, Arc<PeerRecord>)>,
    pub changes: mpsc::Receiver<Change>,
    /// Changes this watcher missed because its queue was full; once non-zero the watch is over.
    pub dropped: Arc<AtomicU64>,
}

/// Why a watch could not begin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WatchError {
    #[error("too many watchers (at most {MAX_WATCHERS}); try again later")]
    TooMany,
}

struct Watcher {
    tx: mpsc::Sender<Change>,
    /// The first commit this watcher gets: its snapshot holds everything before.
    from: Seq,
    dropped: Arc<AtomicU64>,
}

/// The watchers and the changes of commits not yet durable.
#[derive(Default)]
pub(super) struct Feed {
    watchers: Vec<Watcher>,
    /// Changes of commits handed to the store while someone watched, by commit.
    pending: HashMap<Seq, (Vec<Change>, Origin)>,
    /// The next commit's number.
    next_seq: Seq,
}

impl Feed {
    #[cfg(test)]
    pub fn watchers(&self) -> usize {
        self.watchers.len()
    }

    /// Starts a watch at this point of the table.
    pub fn subscribe(&mut self, table: &Table, snapshot: bool) -> Result<Watch, WatchError> {
        self.watchers.retain(|w| !w.tx.is_closed());
        if self.watchers.len() >= MAX_WATCHERS {
            return Err(WatchError::TooMany);
        }
        let snapshot = if snapshot {
            let mut records: Vec<_> = table.iter_live().map(|(k, r)| (k.clone(), r.clone())).collect();
            records.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            records
        } else {
            Vec::new()
        };
        let (tx, changes) = mpsc::channel(WATCH_QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        self.watchers.push(Watcher { tx, from: self.next_seq, dropped: dropped.clone() });
        Ok(Watch { snapshot, changes, dropped })
    }

    /// A commit goes to the store: keep its changes if anyone watches. `removed`: keys whose
    /// live record it deletes outright (expired node records), reported as removals.
    pub fn persisting(&mut self, seq: Seq, puts: &[Entry], removed: &[String], origin: Origin) {
        self.next_seq = self.next_seq.max(seq.wrapping_add(1));
        if self.watchers.is_empty() || (puts.is_empty() && removed.is_empty()) {
            return;
        }
        let changes = puts
            .iter()
            .map(|e| Change { key: e.key.clone(), record: e.record.clone(), origin })
            .chain(removed.iter().map(|k| Change { key: k.clone(), record: None, origin }))
            .collect();
        self.pending.insert(seq, (changes, origin));
    }

    /// A commit is durable: its changes go to every watcher that began before it.
    pub fn committed(&mut self, seq: Seq) {
        let Some((changes, _)) = self.pending.remove(&seq) else { return };
        self.watchers.retain(|w| {
            if w.from > seq {
                return true;
            }
            for change in &changes {
                match w.tx.try_send(change.clone()) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        w.dropped.fetch_add(1, Relaxed);
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return false,
                }
            }
            true
        });
    }

    /// A commit failed: its changes never happened here.
    pub fn failed(&mut self, seq: Seq) {
        self.pending.remove(&seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::record::PeerFields;

    fn put(t: &mut Table, key: &str, now: u64) -> Entry {
        let fields = PeerFields { name: Some(key.into()), ..Default::default() };
        t.put(key.into(), PeerRecord::create(fields, 1), now)
    }

    #[test]
    fn watchers_get_the_commits_after_their_snapshot_once_in_order_and_laggards_are_counted() {
        let mut t = Table::for_tests(1);
        let mut feed = Feed::default();
        let before = put(&mut t, "before", 1);
        feed.persisting(0, std::slice::from_ref(&before), &[], Origin::Local); // nobody watches yet
        let mut w = feed.subscribe(&t, true).unwrap();
        assert_eq!(w.snapshot.len(), 1, "the pending write is in the snapshot");
        feed.committed(0);
        let (a, b) = (put(&mut t, "a", 2), put(&mut t, "b", 3));
        feed.persisting(1, std::slice::from_ref(&a), &[], Origin::Local);
        feed.persisting(2, std::slice::from_ref(&b), &[], Origin::Remote);
        feed.committed(1);
        feed.committed(2);
        let got: Vec<_> =
            std::iter::from_fn(|| w.changes.try_recv().ok()).map(|c| (c.key, c.origin)).collect();
        assert_eq!(got, [("a".to_string(), Origin::Local), ("b".to_string(), Origin::Remote)]);
        // A live record dropped outright (an expired node record) reaches it as a removal.
        feed.persisting(3, &[], &["gone".to_string()], Origin::Local);
        feed.committed(3);
        let removed = w.changes.try_recv().unwrap();
        assert_eq!((removed.key.as_str(), removed.record), ("gone", None));
        // A failed commit never reaches a watcher.
        feed.persisting(30, &[put(&mut t, "lost", 4)], &[], Origin::Local);
        feed.failed(30);
        feed.committed(30);
        assert!(w.changes.try_recv().is_err());
        // A watcher that does not read loses what overflows its queue, counted.
        for i in 0..WATCH_QUEUE + 5 {
            let seq = 40 + i as u64;
            feed.persisting(seq, &[put(&mut t, "k", 10 + i as u64)], &[], Origin::Local);
            feed.committed(seq);
        }
        assert_eq!(w.dropped.load(Relaxed), 5);
        drop(w);
        feed.persisting(u64::MAX - 1, &[put(&mut t, "x", 1 << 40)], &[], Origin::Local);
        feed.committed(u64::MAX - 1);
        assert_eq!(feed.watchers(), 0, "a closed watch is forgotten");
    }
}
