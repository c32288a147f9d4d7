//! The change feed: local services subscribe and get every change to the table as it becomes
//! durable here, local or remote, once each and in the order this node applied them.
//!
//! The node task owns the feed. A commit's changes are kept from the moment it goes to the store
//! (only while someone watches) and released when the store answers that it is durable; commits
//! are answered in order, so watchers see changes in apply order. What a turn of the node task
//! released goes out at its end as one shared batch: one queue push and one wake-up per watcher
//! per turn, not per change, and the edge renders a batch once for all its watchers. A watcher
//! starts from the next commit after its snapshot, which already holds everything before: no gap,
//! no repeat. Sending never waits: a watcher whose queue is full misses the batch, which is
//! counted, and its reader ends the watch with that count (it must reconnect and take a new
//! snapshot).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};

use tokio::sync::mpsc;

use crate::core::replica::{Origin, Seq};
use crate::core::{Entry, PeerRecord, Table};

/// Changes queued for one watcher before it counts as lagging: a few seconds of a busy node's
/// writes, so a reader that keeps up never drops one.
pub const WATCH_QUEUE: usize = 16 * 1024;
/// Most watchers at once: each batch is pushed to each, so their number bounds the cost.
pub const MAX_WATCHERS: usize = 64;

/// One change, as a watcher receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub key: String,
    /// The record now under `key`; `None` when it was removed.
    pub record: Option<Arc<PeerRecord>>,
    pub origin: Origin,
}

/// Changes that became durable in one turn of the node task, in apply order, shared by the
/// watchers that get all of them.
#[derive(Debug, Default)]
pub struct Changes {
    pub changes: Vec<Change>,
    /// The edge's wire form of `changes`, made by the first watcher that sends them and reused by
    /// the others: ten watchers cost one encoding, not ten. The node never reads it.
    pub rendered: OnceLock<Vec<u8>>,
}

/// A subscription: the table when it began (if asked for), then every later change.
#[derive(Debug)]
pub struct Watch {
    /// Live records at the start, sorted by key; empty unless a snapshot was asked for.
    pub snapshot: Vec<(Arc<str>, Arc<PeerRecord>)>,
    pub changes: ChangeReceiver,
    /// Changes this watcher missed because its queue was full; once non-zero the watch is over.
    pub dropped: Arc<AtomicU64>,
}

/// The watcher's end of its queue, which counts the changes it holds against [`WATCH_QUEUE`].
#[derive(Debug)]
pub struct ChangeReceiver {
    rx: mpsc::Receiver<Arc<Changes>>,
    queued: Arc<AtomicUsize>,
}

impl ChangeReceiver {
    /// The next batch; `None` once the node has stopped.
    pub async fn recv(&mut self) -> Option<Arc<Changes>> {
        let batch = self.rx.recv().await?;
        self.queued.fetch_sub(batch.changes.len(), Relaxed);
        Some(batch)
    }

    /// The next batch if one is queued.
    pub fn try_recv(&mut self) -> Option<Arc<Changes>> {
        let batch = self.rx.try_recv().ok()?;
        self.queued.fetch_sub(batch.changes.len(), Relaxed);
        Some(batch)
    }
}

/// Why a watch could not begin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WatchError {
    #[error("too many watchers (at most {MAX_WATCHERS}); try again later")]
    TooMany,
}

struct Watcher {
    /// Bounded twice: in batches by the channel, in changes by `queued`.
    tx: mpsc::Sender<Arc<Changes>>,
    /// Changes pushed and not yet taken by the reader.
    queued: Arc<AtomicUsize>,
    /// The first commit this watcher gets: its snapshot holds everything before.
    from: Seq,
    dropped: Arc<AtomicU64>,
}

/// The watchers and the changes of commits not yet durable.
#[derive(Default)]
pub(super) struct Feed {
    watchers: Vec<Watcher>,
    /// Changes of commits handed to the store while someone watched, by commit.
    pending: HashMap<Seq, Vec<Change>>,
    /// Changes made durable this turn, in order, each with its commit; sent by [`Feed::flush`].
    ready: Vec<(Seq, Change)>,
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
        self.flush();
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
        // Each batch holds at least one change, so this many batches never bind before `queued`.
        let (tx, rx) = mpsc::channel(WATCH_QUEUE);
        let queued = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicU64::new(0));
        self.watchers.push(Watcher {
            tx,
            queued: queued.clone(),
            from: self.next_seq,
            dropped: dropped.clone(),
        });
        Ok(Watch { snapshot, changes: ChangeReceiver { rx, queued }, dropped })
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
        self.pending.insert(seq, changes);
    }

    /// A commit is durable: its changes go out with this turn's batch.
    pub fn committed(&mut self, seq: Seq) {
        if let Some(changes) = self.pending.remove(&seq) {
            self.ready.extend(changes.into_iter().map(|c| (seq, c)));
        }
    }

    /// A commit failed: its changes never happened here.
    pub fn failed(&mut self, seq: Seq) {
        self.pending.remove(&seq);
    }

    /// Sends what became durable since the last flush to every watcher, as one batch each.
    pub fn flush(&mut self) {
        if self.ready.is_empty() {
            return;
        }
        let ready = std::mem::take(&mut self.ready);
        let first = ready[0].0;
        let mut whole: Option<Arc<Changes>> = None;
        self.watchers.retain(|w| {
            let batch = if w.from <= first {
                whole.get_or_insert_with(|| batch_of(ready.iter().map(|(_, c)| c))).clone()
            } else {
                // Subscribed while some of these were in flight: its snapshot holds those.
                let own = batch_of(ready.iter().filter(|(seq, _)| *seq >= w.from).map(|(_, c)| c));
                if own.changes.is_empty() {
                    return true;
                }
                own
            };
            let n = batch.changes.len();
            if w.queued.load(Relaxed) + n > WATCH_QUEUE {
                w.dropped.fetch_add(n as u64, Relaxed);
                return !w.tx.is_closed();
            }
            // Counted before the push: the reader may take the batch (and subtract) at once.
            w.queued.fetch_add(n, Relaxed);
            match w.tx.try_send(batch) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    w.queued.fetch_sub(n, Relaxed);
                    w.dropped.fetch_add(n as u64, Relaxed);
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
    }
}

fn batch_of<'a>(changes: impl Iterator<Item = &'a Change>) -> Arc<Changes> {
    Arc::new(Changes { changes: changes.cloned().collect(), rendered: OnceLock::new() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::record::PeerFields;

    fn put(t: &mut Table, key: &str, now: u64) -> Entry {
        let fields = PeerFields { name: Some(key.into()), ..Default::default() };
        t.put(key.into(), PeerRecord::create(fields, 1), now)
    }

    /// Every change queued for `w`, flattened out of its batches.
    fn taken(w: &mut Watch) -> Vec<Change> {
        std::iter::from_fn(|| w.changes.try_recv()).flat_map(|b| b.changes.clone()).collect()
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
        assert!(taken(&mut w).is_empty(), "nothing goes out before the turn ends");
        feed.flush();
        let got: Vec<_> = taken(&mut w).into_iter().map(|c| (c.key, c.origin)).collect();
        assert_eq!(got, [("a".to_string(), Origin::Local), ("b".to_string(), Origin::Remote)]);
        // A live record dropped outright (an expired node record) reaches it as a removal.
        feed.persisting(3, &[], &["gone".to_string()], Origin::Local);
        feed.committed(3);
        feed.flush();
        let removed = taken(&mut w);
        assert_eq!((removed[0].key.as_str(), removed[0].record.clone()), ("gone", None));
        // A failed commit never reaches a watcher.
        feed.persisting(30, &[put(&mut t, "lost", 4)], &[], Origin::Local);
        feed.failed(30);
        feed.committed(30);
        feed.flush();
        assert!(taken(&mut w).is_empty());
        // A watcher that does not read loses what overflows its queue, counted, whether the
        // changes come in many small batches or few large ones.
        for i in 0..WATCH_QUEUE + 5 {
            let seq = 40 + i as u64;
            feed.persisting(seq, &[put(&mut t, "k", 10 + i as u64)], &[], Origin::Local);
            feed.committed(seq);
            if i % 3 == 0 || i >= WATCH_QUEUE - 10 {
                feed.flush();
            }
        }
        feed.flush();
        assert_eq!(w.dropped.load(Relaxed), 5);
        assert_eq!(taken(&mut w).len(), WATCH_QUEUE, "a full queue, and not one change more");
        drop(w);
        feed.persisting(u64::MAX - 1, &[put(&mut t, "x", 1 << 40)], &[], Origin::Local);
        feed.committed(u64::MAX - 1);
        feed.flush();
        assert_eq!(feed.watchers(), 0, "a closed watch is forgotten");
    }

    #[test]
    fn one_batch_per_turn_is_shared_and_a_late_watcher_skips_what_its_snapshot_holds() {
        let mut t = Table::for_tests(1);
        let mut feed = Feed::default();
        let mut early = feed.subscribe(&t, false).unwrap();
        feed.persisting(1, &[put(&mut t, "a", 1)], &[], Origin::Local);
        // Subscribed while commit 1 is in flight: its snapshot already shows `a`.
        let mut late = feed.subscribe(&t, true).unwrap();
        assert_eq!(late.snapshot.len(), 1);
        feed.persisting(2, &[put(&mut t, "b", 2)], &[], Origin::Local);
        feed.committed(1);
        feed.committed(2);
        feed.flush();
        let e = early.changes.try_recv().expect("one batch");
        assert!(early.changes.try_recv().is_none(), "two commits of one turn are one batch");
        assert_eq!(e.changes.iter().map(|c| c.key.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        let l = late.changes.try_recv().expect("its own batch");
        assert_eq!(l.changes.iter().map(|c| c.key.as_str()).collect::<Vec<_>>(), ["b"]);
        // From then on both get the very same batch (rendered once at the edge).
        feed.persisting(3, &[put(&mut t, "c", 3)], &[], Origin::Local);
        feed.committed(3);
        feed.flush();
        let (e, l) = (early.changes.try_recv().unwrap(), late.changes.try_recv().unwrap());
        assert!(Arc::ptr_eq(&e, &l));
    }
}
