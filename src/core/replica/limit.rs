//! How many unsolicited entries (gossip, pushes) each peer may send per second: a token bucket
//! per peer, so one flooding member costs the others little.

use std::collections::HashMap;
use std::hash::Hash;

/// A bucket holds this many seconds' worth of tokens: a burst after a quiet spell passes.
const BURST_SECONDS: f64 = 2.0;

#[derive(Debug)]
pub struct RateLimit<P> {
    per_second: f64,
    /// Tokens left and when they were last counted (ms), by peer.
    buckets: HashMap<P, (f64, u64)>,
}

impl<P: Copy + Eq + Hash> RateLimit<P> {
    pub fn new(per_second: u32) -> Self {
        RateLimit { per_second: f64::from(per_second), buckets: HashMap::new() }
    }

    /// Takes `n` tokens from `peer`'s bucket; `false` (and nothing taken) if it has fewer.
    pub fn take(&mut self, peer: P, n: usize, now_ms: u64) -> bool {
        let full = self.per_second * BURST_SECONDS;
        let (tokens, last) = self.buckets.entry(peer).or_insert((full, now_ms));
        let elapsed = now_ms.saturating_sub(*last) as f64 / 1000.0;
        *tokens = (*tokens + elapsed * self.per_second).min(full);
        *last = now_ms;
        if *tokens < n as f64 {
            return false;
        }
        *tokens -= n as f64;
        true
    }

    /// A peer left: its bucket goes (the map holds connected peers only).
    pub fn forget(&mut self, peer: &P) {
        self.buckets.remove(peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let mut r = RateLimit::new(100);
        assert!(r.take(1u8, 200, 0), "two seconds' worth at once");
        assert!(!r.take(1, 1, 0), "then nothing");
        assert!(r.take(2, 200, 0), "other peers have their own");
        assert!(!r.take(1, 60, 500), "half a second refills 50");
        assert!(r.take(1, 50, 500));
    }
}
