//! Lifeguard's local health (memberlist's "awareness"): how far this node trusts its own
//! timing. A node that cannot keep up (its event loop starved, its network slow) would time its
//! own probes out and accuse healthy members; instead its score rises on signs that the fault is
//! its own, and stretches its probe period and timeouts by the score plus one.

/// The score, 0 (healthy) to `max`.
#[derive(Debug, Clone, Copy)]
pub(super) struct LocalHealth {
    score: u32,
    max: u32,
}

impl LocalHealth {
    pub fn new(max: u32) -> Self {
        LocalHealth { score: 0, max }
    }

    pub fn score(&self) -> u32 {
        self.score
    }

    /// Signs that we are the slow one: helpers that did not answer at all, a failed target
    /// with no helper to ask, a suspicion of ourselves to refute.
    pub fn worse(&mut self, by: usize) {
        let by = u32::try_from(by).unwrap_or(u32::MAX);
        self.score = self.score.saturating_add(by).min(self.max);
    }

    /// A probe answered within the unstretched timeout: we keep up again.
    pub fn better(&mut self) {
        self.score = self.score.saturating_sub(1);
    }

    /// A configured period or timeout, stretched by the score.
    pub fn stretch(&self, ms: u64) -> u64 {
        ms.saturating_mul(u64::from(self.score) + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_score_stays_within_its_bounds_and_stretches_by_itself_plus_one() {
        let mut h = LocalHealth::new(8);
        assert_eq!(h.stretch(800), 800);
        h.better();
        assert_eq!(h.score(), 0, "never below 0");
        h.worse(3);
        assert_eq!((h.score(), h.stretch(800)), (3, 3_200));
        h.worse(usize::MAX);
        assert_eq!(h.score(), 8, "never above the max");
        h.better();
        assert_eq!(h.stretch(1_000), 8_000);
        let mut off = LocalHealth::new(0);
        off.worse(5);
        assert_eq!(off.stretch(800), 800, "a max of 0 turns the stretching off");
    }
}
