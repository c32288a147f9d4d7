//! Hybrid logical clock stamps: wall-clock milliseconds, a logical counter, and the writer's id.
//!
//! A stamp orders writes first by physical time, then by the counter (several writes in one
//! millisecond, or a remote clock slightly ahead), then by writer id, so two distinct writes never
//! compare equal and every replica picks the same winner.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The identity of a writer: the 32 bytes of its ed25519 public key, unique per node.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct NodeId(pub [u8; 32]);

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0[..6] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// One write's position in the global last-writer-wins order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Stamp {
    /// Physical time of the write, milliseconds since the Unix epoch (or a little later, see [`Hlc`]).
    pub millis: u64,
    /// Orders writes that share `millis`.
    pub counter: u32,
    /// The writer, so that stamps from different nodes never tie.
    pub node: NodeId,
}

impl Stamp {
    /// A fixed-size byte form, used for hashing in digests (independent of serde formats).
    pub fn to_bytes(&self) -> [u8; 44] {
        let mut out = [0u8; 44];
        out[..8].copy_from_slice(&self.millis.to_be_bytes());
        out[8..12].copy_from_slice(&self.counter.to_be_bytes());
        out[12..].copy_from_slice(&self.node.0);
        out
    }
}

/// A remote stamp was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClockError {
    /// The stamp is further ahead of our wall clock than the allowed skew: applying it would drag
    /// our clock (and every later local write) into the future.
    #[error("stamp is {ahead_ms} ms ahead of the local clock (allowed skew {max_skew_ms} ms)")]
    TooFarAhead { ahead_ms: u64, max_skew_ms: u64 },
}

/// A hybrid logical clock (Kulkarni et al.): monotonic, close to wall time, and never behind any
/// stamp it has seen. Pure: the caller passes `now_ms`.
#[derive(Debug, Clone)]
pub struct Hlc {
    node: NodeId,
    /// The greatest (millis, counter) issued or observed.
    last: (u64, u32),
    /// How far a remote stamp may be ahead of our wall clock before we reject it.
    max_skew_ms: u64,
}

impl Hlc {
    pub fn new(node: NodeId, max_skew: Duration) -> Self {
        Hlc { node, last: (0, 0), max_skew_ms: max_skew.as_millis() as u64 }
    }

    /// A fresh stamp for a local write, greater than every stamp issued or observed so far.
    pub fn tick(&mut self, now_ms: u64) -> Stamp {
        self.last = if now_ms > self.last.0 {
            (now_ms, 0)
        } else if self.last.1 == u32::MAX {
            (self.last.0 + 1, 0)
        } else {
            (self.last.0, self.last.1 + 1)
        };
        Stamp { millis: self.last.0, counter: self.last.1, node: self.node }
    }

    /// Checks a remote stamp against the allowed skew, without observing it.
    pub fn check(&self, remote: &Stamp, now_ms: u64) -> Result<(), ClockError> {
        let limit = now_ms.saturating_add(self.max_skew_ms);
        if remote.millis > limit {
            return Err(ClockError::TooFarAhead {
                ahead_ms: remote.millis - now_ms,
                max_skew_ms: self.max_skew_ms,
            });
        }
        Ok(())
    }

    /// How far a remote stamp may be ahead of our wall clock.
    pub fn max_skew_ms(&self) -> u64 {
        self.max_skew_ms
    }

    /// How far the greatest stamp issued or observed is ahead of `now_ms` (0 if not ahead): above
    /// the max skew only if this node stamped writes while its clock was ahead and it has since
    /// been set back, since remote stamps that far ahead are never observed.
    pub fn lead_ms(&self, now_ms: u64) -> u64 {
        self.last.0.saturating_sub(now_ms)
    }

    /// Moves the clock past a stamp we accepted, so our next write is ordered after it.
    pub fn observe(&mut self, remote: &Stamp) {
        if (remote.millis, remote.counter) > self.last {
            self.last = (remote.millis, remote.counter);
        }
    }
}

/// Wall-clock milliseconds since the Unix epoch; the only place the core reads the clock is its callers.
pub fn now_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Wall-clock microseconds since the Unix epoch, for the record timestamps shown to clients.
pub fn now_micros() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hlc(id: u8) -> Hlc {
        Hlc::new(NodeId([id; 32]), Duration::from_secs(60))
    }

    #[test]
    fn ticks_are_strictly_increasing_even_when_the_wall_clock_stalls_or_goes_back() {
        let mut c = hlc(1);
        let a = c.tick(1000);
        let b = c.tick(1000);
        let d = c.tick(900);
        assert!(a < b && b < d);
        assert_eq!(d.millis, 1000);
    }

    #[test]
    fn observing_a_remote_stamp_orders_later_local_writes_after_it() {
        let mut c = hlc(1);
        let remote = Stamp { millis: 5000, counter: 7, node: NodeId([2; 32]) };
        c.check(&remote, 4990).unwrap();
        c.observe(&remote);
        let next = c.tick(4990);
        assert!(next > remote);
    }

    #[test]
    fn stamps_beyond_the_skew_are_refused() {
        let c = hlc(1);
        let remote = Stamp { millis: 100_000, counter: 0, node: NodeId([2; 32]) };
        assert!(c.check(&remote, 100_000 - 60_000).is_ok());
        assert_eq!(
            c.check(&remote, 100_000 - 60_001),
            Err(ClockError::TooFarAhead { ahead_ms: 60_001, max_skew_ms: 60_000 })
        );
    }

    #[test]
    fn the_lead_is_how_far_the_last_stamp_is_ahead_of_the_wall_clock() {
        let mut c = hlc(1);
        c.tick(400_000);
        assert_eq!(c.lead_ms(100_000), 300_000, "stamped with a clock 5 min ahead, then set back");
        assert_eq!(c.lead_ms(400_000), 0);
        assert_eq!(c.lead_ms(500_000), 0);
    }

    #[test]
    fn equal_times_are_broken_by_the_writer() {
        let a = hlc(1).tick(10);
        let b = hlc(2).tick(10);
        assert_ne!(a, b);
        assert!(a < b);
    }
}
