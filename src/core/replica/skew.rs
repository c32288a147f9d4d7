//! This node's clock offset against its peers, estimated NTP-style from the anti-entropy exchanges
//! it already runs (on every connection and every sync interval), as CockroachDB does over its
//! heartbeats: the requester remembers when it sent a request (t0), the responder puts its wall
//! clock into the answer (t1), and the requester, at t2, takes `(t0 + t2) / 2 - t1` as one sample
//! of how far its clock is ahead of that peer's; the error is at most half the round trip.
//!
//! The latest sample of each peer counts; the offset is their median, so one peer with a wrong
//! clock moves nobody else's estimate. Pure: every time is a parameter.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;

/// A sample whose round trip took longer is dropped: its error (half the round trip) would be
/// more than 1/20 of the smallest threshold judged here (half the default 60 s max skew).
pub const MAX_SAMPLE_RTT_US: i64 = 3_000_000;
/// A sample older than this no longer counts: clocks drift, and peers come and go.
pub const SAMPLE_TTL_US: i64 = 10 * 60 * 1_000_000;
/// Samples of peers that disconnected are kept (up to their TTL) in case no connected peer is
/// left to compare with, so a node that loses its peers keeps its verdict; at most this many.
const MAX_DISCONNECTED: usize = 64;

/// Leaving a worse state takes an offset this far inside its threshold, so that an offset
/// hovering at a threshold does not flip the state (and the log) with every sample's noise.
pub const HYSTERESIS_MS: u64 = 1_000;

/// How this node's clock compares with its peers', from the best to the worst.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum ClockState {
    /// Not compared with any peer (yet, or for a while).
    #[default]
    Unknown,
    /// Within half the max skew.
    Ok,
    /// Beyond half the max skew: said in status and the log.
    Warn,
    /// Beyond the max skew: the node refuses client writes and stops refreshing its own record,
    /// since peers would refuse (if ahead) or outvote (if behind) what it stamps.
    Refuse,
}

/// Which way this node's clock is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Ahead,
    Behind,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Ahead => "ahead of",
            Direction::Behind => "behind",
        })
    }
}

/// The estimate, as status shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClockReport {
    /// How far this node's clock is ahead of its peers' (negative: behind), in milliseconds.
    pub offset_ms: Option<i64>,
    /// How many peers' samples the estimate is the median of.
    pub peers: usize,
    pub state: ClockState,
    pub max_skew_ms: u64,
}

impl ClockReport {
    pub fn direction(&self) -> Direction {
        if self.offset_ms.unwrap_or(0) >= 0 {
            Direction::Ahead
        } else {
            Direction::Behind
        }
    }

    /// Whole seconds off, rounded.
    pub fn offset_secs(&self) -> u64 {
        (self.offset_ms.unwrap_or(0).unsigned_abs() + 500) / 1000
    }

    /// What status and the log say when the clock is off; `None` while it is fine or unknown.
    pub fn warning(&self) -> Option<String> {
        let (secs, dir, max) = (self.offset_secs(), self.direction(), self.max_skew_ms / 1000);
        match self.state {
            ClockState::Unknown | ClockState::Ok => None,
            ClockState::Warn => Some(format!(
                "this node's clock is {secs} s {dir} its peers (median of {} peers); \
                 beyond {max} s it will refuse writes",
                self.peers
            )),
            ClockState::Refuse => Some(format!(
                "this node's clock is {secs} s {dir} its peers (median of {} peers), more than the \
                 {max} s allowed: writes are refused until it is corrected",
                self.peers
            )),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    /// This node's clock minus the peer's, in microseconds.
    offset_us: i64,
    /// Local wall time it was taken.
    at_us: i64,
    connected: bool,
}

/// The latest clock sample of each peer, and the judgement made of them.
#[derive(Debug)]
pub struct ClockOffsets<P> {
    samples: HashMap<P, Sample>,
    max_skew_ms: u64,
    report: ClockReport,
    /// Whether any sample was ever taken (the own record waits for one at start).
    compared: bool,
}

impl<P: Copy + Eq + Hash> ClockOffsets<P> {
    pub fn new(max_skew_ms: u64) -> Self {
        ClockOffsets {
            samples: HashMap::new(),
            max_skew_ms,
            report: ClockReport { max_skew_ms, ..ClockReport::default() },
            compared: false,
        }
    }

    /// One exchange with `peer`: sent at `sent_us` and answered at `received_us` (local clock),
    /// the peer's clock reading `remote_us` in between. Returns whether the sample was kept
    /// (not when the round trip was negative or too long to say much).
    pub fn sample(&mut self, peer: P, sent_us: i64, remote_us: i64, received_us: i64) -> bool {
        let rtt = received_us.saturating_sub(sent_us);
        if !(0..=MAX_SAMPLE_RTT_US).contains(&rtt) {
            return false;
        }
        let offset_us = (sent_us / 2 + received_us / 2).saturating_sub(remote_us);
        self.samples.insert(peer, Sample { offset_us, at_us: received_us, connected: true });
        self.compared = true;
        true
    }

    /// `peer` disconnected: its sample counts only while no connected peer has one.
    pub fn forget(&mut self, peer: &P) {
        if let Some(s) = self.samples.get_mut(peer) {
            s.connected = false;
        }
        let gone = self.samples.values().filter(|s| !s.connected).count();
        if gone > MAX_DISCONNECTED {
            let oldest = self.samples.iter().filter(|(_, s)| !s.connected).min_by_key(|(_, s)| s.at_us);
            if let Some((&p, _)) = oldest {
                self.samples.remove(&p);
            }
        }
    }

    /// Whether a sample was ever taken.
    pub fn compared(&self) -> bool {
        self.compared
    }

    pub fn report(&self) -> ClockReport {
        self.report
    }

    /// Drops samples past their TTL and judges the rest at `now_us`; returns the new report when
    /// the state changed (to be said once in the log).
    pub fn update(&mut self, now_us: i64) -> Option<ClockReport> {
        // Either way: a sample "from the future" means the clock went back since; still counted
        // until replaced, which a clock off the mark speeds up (see `Replica::sync_round`).
        self.samples.retain(|_, s| now_us.saturating_sub(s.at_us).abs() <= SAMPLE_TTL_US);
        let any_connected = self.samples.values().any(|s| s.connected);
        let offsets: Vec<i64> =
            self.samples.values().filter(|s| s.connected || !any_connected).map(|s| s.offset_us).collect();
        let offset_us = median_toward_zero(offsets.clone());
        let offset_ms = offset_us.map(|us| us / 1000);
        let before = self.report.state;
        let state = match offset_ms.map(i64::unsigned_abs) {
            None => ClockState::Unknown,
            Some(off) => match self.classify(off) {
                better if better < before && before > ClockState::Ok => self.classify(off + HYSTERESIS_MS),
                state => state,
            },
        };
        self.report = ClockReport { offset_ms, peers: offsets.len(), state, max_skew_ms: self.max_skew_ms };
        (state != before).then_some(self.report)
    }
}

impl<P> ClockOffsets<P> {
    fn classify(&self, off_ms: u64) -> ClockState {
        if off_ms > self.max_skew_ms {
            ClockState::Refuse
        } else if off_ms > self.max_skew_ms / 2 {
            ClockState::Warn
        } else {
            ClockState::Ok
        }
    }
}

/// The median; of an even count, the middle value nearer zero, so that this node is called off
/// by an amount only when at least half its peers see it off by that much: with two peers, one
/// of them wrong, the node keeps trusting its own clock.
fn median_toward_zero(mut values: Vec<i64>) -> Option<i64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let n = values.len();
    if n % 2 == 1 {
        return Some(values[n / 2]);
    }
    let (a, b) = (values[n / 2 - 1], values[n / 2]);
    Some(if a.unsigned_abs() <= b.unsigned_abs() { a } else { b })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_800_000_000_000_000;
    const MIN: i64 = 60_000_000;

    fn offsets() -> ClockOffsets<u32> {
        ClockOffsets::new(60_000)
    }

    /// A sample from a peer whose clock is `peer_behind_us` behind ours, over a round trip of `rtt_us`.
    fn exchange(c: &mut ClockOffsets<u32>, peer: u32, peer_behind_us: i64, rtt_us: i64) -> bool {
        c.sample(peer, T, T + rtt_us / 2 - peer_behind_us, T + rtt_us)
    }

    #[test]
    fn a_sample_measures_the_offset_from_the_middle_of_the_round_trip() {
        let mut c = offsets();
        // Sent at 0, the peer read 1_000 (its clock 4_000 behind: it answered at our 5_000),
        // received at 10_000: we are 4_000 us ahead.
        assert!(c.sample(7, T, T + 1_000, T + 10_000));
        c.update(T + 10_000);
        assert_eq!(c.report().offset_ms, Some(4));
        assert_eq!((c.report().peers, c.report().state), (1, ClockState::Ok));
        assert!(c.compared());
    }

    #[test]
    fn the_offset_is_the_median_of_the_peers_so_one_wrong_peer_moves_nothing() {
        let mut c = offsets();
        exchange(&mut c, 1, 0, 2_000);
        exchange(&mut c, 2, 1_000, 2_000);
        exchange(&mut c, 3, 5 * MIN, 2_000); // one peer 5 minutes behind
        c.update(T);
        assert_eq!(c.report().offset_ms, Some(1));
        assert_eq!(c.report().state, ClockState::Ok);
    }

    #[test]
    fn of_two_peers_one_wrong_the_node_trusts_its_clock_and_both_wrong_says_so() {
        let mut c = offsets();
        exchange(&mut c, 1, 0, 2_000);
        exchange(&mut c, 2, -5 * MIN, 2_000);
        c.update(T);
        assert_eq!(c.report().offset_ms, Some(0));
        exchange(&mut c, 1, -5 * MIN, 2_000);
        let changed = c.update(T).expect("the state changed");
        assert_eq!(changed.state, ClockState::Refuse);
        assert_eq!(changed.offset_ms, Some(-5 * 60_000));
        assert_eq!(changed.direction(), Direction::Behind);
        assert_eq!(changed.offset_secs(), 300);
    }

    #[test]
    fn samples_with_a_long_or_negative_round_trip_are_dropped() {
        let mut c = offsets();
        exchange(&mut c, 1, 0, 1_000);
        assert!(!exchange(&mut c, 1, 5 * MIN, MAX_SAMPLE_RTT_US + 1), "too long to say much");
        assert!(!c.sample(1, T, T, T - 1), "answered before it was sent: the clock went back");
        c.update(T);
        assert_eq!(c.report().offset_ms, Some(0), "the earlier good sample stands");
    }

    #[test]
    fn the_latest_sample_of_a_peer_replaces_its_earlier_one() {
        let mut c = offsets();
        exchange(&mut c, 1, -5 * MIN, 1_000);
        assert_eq!(c.update(T).map(|r| r.state), Some(ClockState::Refuse));
        exchange(&mut c, 1, 0, 1_000);
        assert_eq!(c.update(T).map(|r| r.state), Some(ClockState::Ok), "corrected");
        assert_eq!(c.update(T), None, "no change, nothing to say");
    }

    #[test]
    fn beyond_half_the_max_skew_warns_and_beyond_it_refuses() {
        let mut c = offsets();
        exchange(&mut c, 1, 31_000_000, 1_000);
        assert_eq!(c.update(T).map(|r| r.state), Some(ClockState::Warn));
        let warning = c.report().warning().unwrap();
        assert!(warning.starts_with("this node's clock is 31 s ahead of its peers"), "{warning}");
        exchange(&mut c, 1, 61_000_000, 1_000);
        assert_eq!(c.update(T).map(|r| r.state), Some(ClockState::Refuse));
        assert!(c.report().warning().unwrap().contains("writes are refused"));
    }

    #[test]
    fn an_offset_hovering_at_a_threshold_does_not_flip_the_state_with_each_sample() {
        let mut c = offsets();
        exchange(&mut c, 1, 60_500_000, 1_000);
        assert_eq!(c.update(T).map(|r| r.state), Some(ClockState::Refuse));
        exchange(&mut c, 1, 59_500_000, 1_000);
        assert_eq!(c.update(T), None, "within the margin: still refusing");
        exchange(&mut c, 1, 61_000_000, 1_000);
        assert_eq!(c.update(T), None);
        exchange(&mut c, 1, 58_900_000, 1_000);
        assert_eq!(c.update(T).map(|r| r.state), Some(ClockState::Warn), "clearly inside");
        exchange(&mut c, 1, 29_500_000, 1_000);
        assert_eq!(c.update(T), None);
        exchange(&mut c, 1, 0, 1_000);
        assert_eq!(c.update(T).map(|r| r.state), Some(ClockState::Ok));
    }

    #[test]
    fn disconnected_peers_count_only_while_no_connected_peer_has_a_sample() {
        let mut c = offsets();
        exchange(&mut c, 1, -5 * MIN, 1_000);
        c.forget(&1);
        c.update(T);
        assert_eq!(c.report().state, ClockState::Refuse, "alone, the node keeps its verdict");
        exchange(&mut c, 2, 0, 1_000);
        c.update(T);
        assert_eq!((c.report().state, c.report().peers), (ClockState::Ok, 1));
    }

    #[test]
    fn samples_expire() {
        let mut c = offsets();
        exchange(&mut c, 1, 0, 1_000);
        c.update(T + SAMPLE_TTL_US);
        assert_eq!(c.report().state, ClockState::Ok);
        c.update(T + SAMPLE_TTL_US + 2_000);
        assert_eq!(c.report().state, ClockState::Unknown);
        assert!(c.compared(), "compared once, even if not lately");
    }

    #[test]
    fn disconnected_samples_are_bounded() {
        let mut c = offsets();
        for p in 0..200 {
            exchange(&mut c, p, 0, 1_000);
            c.forget(&p);
        }
        assert_eq!(c.samples.len(), MAX_DISCONNECTED);
    }
}
