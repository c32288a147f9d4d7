//! Which connected peers belong to this network. A connection is only a candidate until identify
//! shows that the peer speaks this network's protocols (their names carry the network id); until
//! then it is not listed, not counted toward the target number of peers and not handed to the
//! replica. A peer that turns out to speak something else (another network id, another libp2p
//! application) is a stranger: its connections are closed and it is not dialled again for a while.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// A connection whose peer has not identified itself by then is closed: it holds a slot and
/// says nothing (identify answers within a round trip; this leaves room for slow links).
pub const IDENTIFY_DEADLINE: Duration = Duration::from_secs(20);
/// A stranger's connections are closed this long after it was judged (at the next maintenance
/// round past it): a udht node of another network judges us in the same round trip, and it
/// must get to, or it would not know to stop dialling us and would come back every second.
pub const CLOSE_GRACE: Duration = Duration::from_millis(500);
/// A stranger is not dialled again for this long (its own dials are still judged afresh, so a
/// peer restarted with the right network id is accepted at once).
pub const STRANGER_MEMORY: Duration = Duration::from_secs(300);
/// Most strangers remembered: a flood of peer ids cannot grow the map without bound (past it,
/// the oldest is forgotten, which only means it may be dialled once more).
pub const MAX_STRANGERS: usize = 1024;

/// What identify said about a connected peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judged {
    /// It speaks our protocols and was not a member yet: tell the node it is connected.
    NewMember,
    /// Nothing new (already a member, or already judged a stranger).
    Unchanged,
    /// It does not speak our protocols: close its connections.
    Stranger,
}

/// The connected peers, sorted into members and candidates, and the strangers met recently.
#[derive(Debug)]
pub struct Admission<P> {
    members: HashSet<P>,
    /// Connected, not identified yet, since when.
    candidates: HashMap<P, Instant>,
    /// Judged strangers, when.
    strangers: HashMap<P, Instant>,
    /// Strangers still connected, to be closed after [`CLOSE_GRACE`]: since when.
    closing: HashMap<P, Instant>,
}

impl<P: Copy + Eq + Hash> Admission<P> {
    pub fn new() -> Self {
        Admission {
            members: HashSet::new(),
            candidates: HashMap::new(),
            strangers: HashMap::new(),
            closing: HashMap::new(),
        }
    }

    /// A connection to `peer` opened.
    pub fn connected(&mut self, peer: P, now: Instant) {
        if !self.members.contains(&peer) {
            self.candidates.entry(peer).or_insert(now);
        }
    }

    /// Identify reports whether `peer` speaks our protocols. Once a member, always a member
    /// while connected: protocols do not change under a live connection.
    pub fn identified(&mut self, peer: P, speaks_ours: bool, now: Instant) -> Judged {
        if self.members.contains(&peer) {
            return Judged::Unchanged;
        }
        if speaks_ours {
            self.candidates.remove(&peer);
            self.strangers.remove(&peer);
            self.members.insert(peer);
            return Judged::NewMember;
        }
        // Only a candidate becomes a stranger: later reports about connections already being
        // closed are not counted twice.
        if self.candidates.remove(&peer).is_none() {
            return Judged::Unchanged;
        }
        self.remember_stranger(peer, now);
        self.closing.insert(peer, now);
        Judged::Stranger
    }

    /// Strangers whose grace is over: close their connections now.
    pub fn due_to_close(&mut self, now: Instant) -> Vec<P> {
        let due: Vec<P> = self
            .closing
            .iter()
            .filter(|(_, since)| now.duration_since(**since) >= CLOSE_GRACE)
            .map(|(p, _)| *p)
            .collect();
        for p in &due {
            self.closing.remove(p);
        }
        due
    }

    /// Every connection to `peer` closed. True if it was a member (the node was told of it).
    pub fn disconnected(&mut self, peer: &P) -> bool {
        self.candidates.remove(peer);
        self.closing.remove(peer);
        self.members.remove(peer)
    }

    /// Candidates that did not identify themselves within [`IDENTIFY_DEADLINE`]; they are
    /// remembered as strangers.
    pub fn overdue(&mut self, now: Instant) -> Vec<P> {
        let late: Vec<P> = self
            .candidates
            .iter()
            .filter(|(_, since)| now.duration_since(**since) >= IDENTIFY_DEADLINE)
            .map(|(p, _)| *p)
            .collect();
        for p in &late {
            self.candidates.remove(p);
            self.remember_stranger(*p, now);
        }
        late
    }

    /// Whether `peer` was judged a stranger within [`STRANGER_MEMORY`]: do not dial it.
    pub fn is_stranger(&self, peer: &P, now: Instant) -> bool {
        self.strangers.get(peer).is_some_and(|t| now.duration_since(*t) < STRANGER_MEMORY)
    }

    #[cfg(test)]
    pub fn is_member(&self, peer: &P) -> bool {
        self.members.contains(peer)
    }

    pub fn members(&self) -> impl Iterator<Item = &P> {
        self.members.iter()
    }

    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    fn remember_stranger(&mut self, peer: P, now: Instant) {
        self.strangers.retain(|_, t| now.duration_since(*t) < STRANGER_MEMORY);
        if self.strangers.len() >= MAX_STRANGERS {
            if let Some(oldest) = self.strangers.iter().min_by_key(|(_, t)| **t).map(|(p, _)| *p) {
                self.strangers.remove(&oldest);
            }
        }
        self.strangers.insert(peer, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_a_member_only_once_identify_shows_our_protocols() {
        let now = Instant::now();
        let mut a = Admission::new();
        a.connected(1u8, now);
        assert!(!a.is_member(&1), "a fresh connection is only a candidate");
        assert_eq!(a.member_count(), 0);
        assert_eq!(a.identified(1, true, now), Judged::NewMember);
        assert_eq!(a.identified(1, true, now), Judged::Unchanged, "told once");
        a.connected(1, now); // a second connection of a member
        assert_eq!(a.identified(1, false, now), Judged::Unchanged, "a member is not demoted");
        assert!(a.disconnected(&1));
        assert!(!a.disconnected(&1), "told once of the disconnection too");
    }

    #[test]
    fn a_stranger_is_judged_once_not_dialled_for_a_while_and_accepted_if_it_changes() {
        let now = Instant::now();
        let mut a = Admission::new();
        a.connected(2u8, now);
        assert_eq!(a.identified(2, false, now), Judged::Stranger);
        assert_eq!(a.identified(2, false, now), Judged::Unchanged, "a second report is not counted");
        assert!(a.due_to_close(now + CLOSE_GRACE - Duration::from_millis(1)).is_empty(), "its grace");
        assert_eq!(a.due_to_close(now + CLOSE_GRACE), vec![2]);
        assert!(a.due_to_close(now + CLOSE_GRACE).is_empty(), "closed once");
        assert!(!a.disconnected(&2), "the node never heard of it");
        assert!(a.is_stranger(&2, now + STRANGER_MEMORY - Duration::from_secs(1)));
        assert!(!a.is_stranger(&2, now + STRANGER_MEMORY));
        a.connected(2, now);
        assert_eq!(a.identified(2, true, now), Judged::NewMember, "restarted with our network id");
        assert!(!a.is_stranger(&2, now));
    }

    #[test]
    fn a_silent_candidate_is_overdue_after_the_deadline() {
        let now = Instant::now();
        let mut a = Admission::new();
        a.connected(3u8, now);
        a.connected(4u8, now + Duration::from_secs(5));
        assert!(a.overdue(now + IDENTIFY_DEADLINE - Duration::from_millis(1)).is_empty());
        assert_eq!(a.overdue(now + IDENTIFY_DEADLINE), vec![3]);
        assert!(a.is_stranger(&3, now + IDENTIFY_DEADLINE));
        assert!(a.overdue(now + IDENTIFY_DEADLINE).is_empty(), "judged once");
    }

    #[test]
    fn the_strangers_remembered_are_bounded() {
        let now = Instant::now();
        let mut a = Admission::new();
        for p in 0..(MAX_STRANGERS as u32 + 10) {
            a.connected(p, now + Duration::from_millis(p.into()));
            a.identified(p, false, now + Duration::from_millis(p.into()));
        }
        assert_eq!(a.strangers.len(), MAX_STRANGERS);
        assert!(!a.is_stranger(&0, now + Duration::from_secs(2)), "the oldest went first");
    }
}
