//! Bounded connections (go-libp2p's connection manager, in small): a node keeps about
//! `--target-peers` connections. Kademlia walks, other nodes' queries and probe dials open more
//! than that; above the high mark the least useful ones are closed until the low mark is
//! reached. Closing is a parting, not a failure: the peer is told first (see `Network::trim`),
//! so neither side takes the close for a sign of death, and neither dials the other again for
//! [`PARTED_MEMORY`].
//!
//! Pure bookkeeping, generic over the peer type; `Network` says which peers are protected (the
//! gossipsub mesh, relays and relayed connections, in-flight requests, one per Kademlia bucket)
//! and executes the closes.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// A connection younger than this is never closed: identify, the first anti-entropy round and
/// gossipsub's grafting take a few round trips (a heartbeat is 0.5 s), and a node that just
/// joined needs its first peers to stay while it looks for others. Not longer: the connections
/// a Kademlia walk opens count against the limit until then.
pub const GRACE: Duration = Duration::from_secs(10);
/// A peer parted from (either side closed on purpose) is not dialled again for this long, so
/// that a trim is not undone by the next maintenance round's dials.
pub const PARTED_MEMORY: Duration = Duration::from_secs(180);
/// Most parted peers remembered: past it the oldest is forgotten (it may then be dialled once
/// more, which costs a connection, nothing else).
pub const MAX_PARTED: usize = 4096;

/// The watermarks: trimming starts above `high` and stops at `low`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermarks {
    pub low: usize,
    pub high: usize,
}

impl Watermarks {
    /// `low` is the target; `high` half as much again (at least one more), so that a few extra
    /// connections (a probe's dial, a walk) do not cause a trim each time.
    pub fn for_target(target: usize) -> Self {
        let low = target.max(1);
        Watermarks { low, high: low + (low / 2).max(1) }
    }
}

#[derive(Debug)]
pub struct ConnManager<P> {
    marks: Watermarks,
    /// Connected members, since when (the oldest connection counts).
    since: HashMap<P, Instant>,
    /// Peers being parted from: told, closed when they answer (or fail to).
    closing: HashSet<P>,
    /// Connected peers that told us they are closing their connections to us.
    told: HashSet<P>,
    /// Peers parted from recently, when.
    parted: HashMap<P, Instant>,
}

impl<P: Copy + Eq + Hash + Ord> ConnManager<P> {
    pub fn new(marks: Watermarks) -> Self {
        ConnManager {
            marks,
            since: HashMap::new(),
            closing: HashSet::new(),
            told: HashSet::new(),
            parted: HashMap::new(),
        }
    }

    pub fn marks(&self) -> Watermarks {
        self.marks
    }

    /// A member is connected (identified as one of this network).
    pub fn connected(&mut self, peer: P, now: Instant) {
        self.since.entry(peer).or_insert(now);
    }

    /// Every connection to `peer` closed. True if this close was a parting: we chose it, the
    /// peer told us, or either side parted from the other within [`PARTED_MEMORY`] (a notice
    /// can be lost: the other side closed first, or a loaded node answered too late). Such a
    /// close says nothing about the peer's health, and looking into it would dial the peer
    /// back. Anything else is a failure, a crash or a ban.
    pub fn disconnected(&mut self, peer: &P, now: Instant) -> bool {
        self.since.remove(peer);
        let ours = self.closing.remove(peer);
        let told = self.told.remove(peer);
        ours || told || self.recently_parted(peer, now)
    }

    /// The peer told us it is closing its connections to us on purpose.
    pub fn parting_from(&mut self, peer: P, now: Instant) {
        if self.since.contains_key(&peer) {
            self.told.insert(peer);
        }
        self.remember_parted(peer, now);
    }

    /// Whether `peer` was parted from recently (not to be dialled).
    pub fn recently_parted(&self, peer: &P, now: Instant) -> bool {
        self.parted.get(peer).is_some_and(|t| now.duration_since(*t) < PARTED_MEMORY)
    }

    /// Connected members not being closed.
    pub fn open(&self) -> usize {
        self.since.len() - self.closing.iter().filter(|p| self.since.contains_key(p)).count()
    }

    /// The peers to part from now: none while at most `high` are open; else enough of the
    /// unprotected ones past their grace to come down to `low`, the newest connections first
    /// (long-standing ones are the stable part of the topology: other nodes' meshes and routes
    /// run over them). They are marked closing; the caller tells them and closes.
    pub fn trim(&mut self, protected: &HashSet<P>, now: Instant) -> Vec<P> {
        let open = self.open();
        if open <= self.marks.high {
            return Vec::new();
        }
        let mut candidates: Vec<(Instant, P)> = self
            .since
            .iter()
            .filter(|(p, since)| {
                !protected.contains(*p) && !self.closing.contains(*p) && now.duration_since(**since) >= GRACE
            })
            .map(|(p, since)| (*since, *p))
            .collect();
        // Newest first; ties by peer, so the choice is deterministic.
        candidates.sort_by(|a, b| b.cmp(a));
        let excess = open - self.marks.low;
        let chosen: Vec<P> = candidates.into_iter().take(excess).map(|(_, p)| p).collect();
        for p in &chosen {
            self.closing.insert(*p);
            self.remember_parted(*p, now);
        }
        chosen
    }

    fn remember_parted(&mut self, peer: P, now: Instant) {
        self.parted.retain(|_, t| now.duration_since(*t) < PARTED_MEMORY);
        if self.parted.len() >= MAX_PARTED && !self.parted.contains_key(&peer) {
            if let Some(oldest) = self.parted.iter().min_by_key(|(p, t)| (**t, **p)).map(|(p, _)| *p) {
                self.parted.remove(&oldest);
            }
        }
        self.parted.insert(peer, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manager(target: usize) -> ConnManager<u32> {
        ConnManager::new(Watermarks::for_target(target))
    }

    #[test]
    fn watermarks_leave_room_above_the_target() {
        assert_eq!(Watermarks::for_target(8), Watermarks { low: 8, high: 12 });
        assert_eq!(Watermarks::for_target(1), Watermarks { low: 1, high: 2 });
        assert_eq!(Watermarks::for_target(0), Watermarks { low: 1, high: 2 });
    }

    #[test]
    fn nothing_is_trimmed_up_to_the_high_mark() {
        let t0 = Instant::now();
        let mut m = manager(8);
        for p in 0..12 {
            m.connected(p, t0);
        }
        assert!(m.trim(&HashSet::new(), t0 + GRACE).is_empty());
    }

    #[test]
    fn above_the_high_mark_the_newest_unprotected_go_down_to_the_low_mark() {
        let t0 = Instant::now();
        let mut m = manager(8);
        for p in 0..13u32 {
            m.connected(p, t0 + Duration::from_secs(u64::from(p)));
        }
        let now = t0 + Duration::from_secs(100);
        let protected: HashSet<u32> = [12, 11].into();
        let closed = m.trim(&protected, now);
        assert_eq!(closed, vec![10, 9, 8, 7, 6], "13 open, down to 8, the newest unprotected first");
        assert_eq!(m.open(), 8);
        assert!(m.trim(&protected, now).is_empty(), "those being closed are not chosen twice");
        for p in &closed {
            assert!(m.recently_parted(p, now));
            assert!(m.disconnected(p, now), "their close is a parting");
        }
        assert!(!m.disconnected(&0, now), "a close we did not choose is not");
    }

    #[test]
    fn connections_in_their_grace_are_kept_even_above_the_high_mark() {
        let t0 = Instant::now();
        let mut m = manager(2);
        for p in 0..6 {
            m.connected(p, t0);
        }
        assert!(m.trim(&HashSet::new(), t0 + GRACE / 2).is_empty());
        assert_eq!(m.trim(&HashSet::new(), t0 + GRACE).len(), 4);
    }

    #[test]
    fn a_peer_that_parted_from_us_is_not_dialled_for_a_while() {
        let t0 = Instant::now();
        let mut m = manager(8);
        m.connected(7, t0);
        m.parting_from(7, t0);
        assert!(m.disconnected(&7, t0), "its close is a parting");
        assert!(m.recently_parted(&7, t0 + PARTED_MEMORY - Duration::from_secs(1)));
        assert!(!m.recently_parted(&7, t0 + PARTED_MEMORY));
        let later = t0 + PARTED_MEMORY / 2;
        m.connected(7, later);
        assert!(m.disconnected(&7, later), "a connection that closes soon after a parting is one too");
        m.connected(7, t0 + PARTED_MEMORY);
        assert!(!m.disconnected(&7, t0 + PARTED_MEMORY), "one that breaks later is no parting");
    }

    #[test]
    fn the_parted_memory_is_bounded() {
        let t0 = Instant::now();
        let mut m = manager(8);
        for p in 0..(MAX_PARTED as u32 + 10) {
            m.parting_from(p, t0 + Duration::from_millis(u64::from(p)));
        }
        assert_eq!(m.parted.len(), MAX_PARTED);
        assert!(!m.parted.contains_key(&0), "the oldest went first");
    }
}
