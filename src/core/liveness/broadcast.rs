//! The queue of updates to piggyback, as memberlist keeps it: one entry per member (a newer
//! claim replaces an older one), sent least-sent first, dropped after a bounded number of sends.
//! So an update reaches everyone in O(log N) probe periods, and nothing unchanged is resent.

use std::collections::HashMap;
use std::hash::Hash;

use super::types::Update;

#[derive(Debug)]
struct Entry<P> {
    update: Update<P>,
    sent: u32,
    /// Insertion order, so that equal send counts favour the newest claim.
    order: u64,
}

#[derive(Debug)]
pub(super) struct Broadcasts<P> {
    entries: HashMap<P, Entry<P>>,
    next_order: u64,
}

impl<P: Clone + Eq + Hash> Broadcasts<P> {
    pub fn new() -> Self {
        Broadcasts { entries: HashMap::new(), next_order: 0 }
    }

    /// Queues a claim about `update.peer`, replacing any older one about the same peer.
    pub fn push(&mut self, update: Update<P>) {
        self.next_order += 1;
        let order = self.next_order;
        self.entries.insert(update.peer.clone(), Entry { update, sent: 0, order });
    }

    pub fn remove(&mut self, peer: &P) {
        self.entries.remove(peer);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Up to `max` updates for a message to `to`: a claim about `to` itself first (so that a
    /// suspected node hears it and can refute), then the least-sent. Each counts as one send;
    /// those sent `limit` times leave the queue.
    pub fn take(&mut self, to: &P, max: usize, limit: u32) -> Vec<Update<P>> {
        let mut chosen: Vec<P> = Vec::with_capacity(max);
        if self.entries.contains_key(to) {
            chosen.push(to.clone());
        }
        if self.entries.len() > chosen.len() {
            let mut rest: Vec<(&P, u32, u64)> =
                self.entries.iter().filter(|(p, _)| *p != to).map(|(p, e)| (p, e.sent, e.order)).collect();
            rest.sort_by_key(|&(_, sent, order)| (sent, std::cmp::Reverse(order)));
            chosen.extend(rest.into_iter().take(max - chosen.len()).map(|(p, _, _)| p.clone()));
        }
        let mut out = Vec::with_capacity(chosen.len());
        for peer in chosen {
            let entry = self.entries.get_mut(&peer).expect("chosen from the map");
            entry.sent += 1;
            out.push(entry.update.clone());
            if entry.sent >= limit {
                self.entries.remove(&peer);
            }
        }
        out
    }
}
