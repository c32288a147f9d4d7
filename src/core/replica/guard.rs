//! Strikes and bans: a peer that keeps sending bad messages is cut off for a while.

use std::collections::HashMap;
use std::hash::Hash;

/// Bad messages tolerated from one peer before it is banned.
pub const MAX_STRIKES: u32 = 16;
/// How long a ban lasts: long enough that a misbehaving peer costs us little, short enough that
/// a peer fixed (or a false alarm) rejoins by itself.
pub const BAN_MS: u64 = 600_000;

/// What a strike led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Struck {
    /// Counted; the peer stays.
    Counted,
    /// That was one too many: ban the peer now.
    Banned,
}

/// Strike counts and bans, by peer.
#[derive(Debug)]
pub struct Guard<P> {
    /// Bad messages per peer. Kept only for connected or banned peers, so it stays bounded.
    strikes: HashMap<P, u32>,
    /// Banned peers and when (wall-clock ms) the ban ends.
    bans: HashMap<P, u64>,
}

impl<P: Copy + Eq + Hash> Default for Guard<P> {
    fn default() -> Self {
        Guard { strikes: HashMap::new(), bans: HashMap::new() }
    }
}

impl<P: Copy + Eq + Hash> Guard<P> {
    pub fn is_banned(&self, peer: &P) -> bool {
        self.bans.contains_key(peer)
    }

    /// Counts a bad message from `peer`.
    pub fn strike(&mut self, peer: P, now_ms: u64) -> Struck {
        if self.bans.contains_key(&peer) {
            return Struck::Counted;
        }
        let strikes = self.strikes.entry(peer).or_default();
        *strikes += 1;
        if *strikes < MAX_STRIKES {
            return Struck::Counted;
        }
        self.bans.insert(peer, now_ms.saturating_add(BAN_MS));
        Struck::Banned
    }

    /// A peer left: forget its strikes unless it is banned (the ban keeps them until it ends).
    pub fn disconnected(&mut self, peer: &P) {
        if !self.bans.contains_key(peer) {
            self.strikes.remove(peer);
        }
    }

    /// Ends the bans that ran out; returns the peers let back in.
    pub fn expire(&mut self, now_ms: u64) -> Vec<P> {
        let ended: Vec<P> =
            self.bans.iter().filter(|(_, until)| **until <= now_ms).map(|(p, _)| *p).collect();
        for p in &ended {
            self.bans.remove(p);
            self.strikes.remove(p);
        }
        ended
    }

    /// When the next ban ends, if any is in force.
    pub fn next_expiry(&self) -> Option<u64> {
        self.bans.values().copied().min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sixteenth_strike_bans_and_the_ban_ends_after_its_time() {
        let mut g = Guard::default();
        for _ in 1..MAX_STRIKES {
            assert_eq!(g.strike(7u8, 0), Struck::Counted);
        }
        assert_eq!(g.strike(7, 0), Struck::Banned);
        assert!(g.is_banned(&7));
        assert_eq!(g.strike(7, 0), Struck::Counted, "a banned peer is not banned twice");
        g.disconnected(&7);
        assert_eq!(g.expire(BAN_MS - 1), Vec::<u8>::new());
        assert_eq!(g.expire(BAN_MS), vec![7]);
        assert!(!g.is_banned(&7));
        assert_eq!(g.strike(7, BAN_MS), Struck::Counted, "strikes start again from zero");
    }
}
