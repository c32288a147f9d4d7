//! Our probe rounds, driven by the timer: each period one member is probed; an unanswered
//! direct probe turns indirect (ping-req through helpers), an unanswered indirect one suspects
//! the target, and a suspicion not refuted in time makes it dead.

use std::hash::Hash;

use rand::seq::SliceRandom;
use rand::Rng;

use super::{Liveness, Output, Pending, Round, State, Update};

impl<P: Clone + Eq + Hash + Ord, R> Liveness<P, R> {
    pub(super) fn tick(&mut self, now_ms: u64, out: &mut Vec<Output<P, R>>) {
        // Connections are continuous evidence (pinged every few seconds by libp2p).
        for (_, m) in self.members.iter_mut().filter(|(p, _)| self.connected.contains(*p)) {
            m.last_seen_ms = Some(now_ms);
        }
        self.expire_relays(now_ms, out);
        self.advance_rounds(now_ms, out);
        self.expire_suspicions(now_ms, out);
        if now_ms >= self.next_probe_ms {
            // On schedule (a late tick does not stretch the period), but never a burst after a stall.
            let interval = self.health.stretch(self.config.probe_interval_ms);
            self.next_probe_ms = (self.next_probe_ms + interval).max(now_ms + interval / 2);
            // Readers' `last_seen` of connected members moves on once a period.
            self.dirty = true;
            self.probe_next(now_ms, out);
        }
        if self.next_far_probe_ms == 0 {
            // A random phase, so that nodes started together do not dial in step.
            let interval = self.config.far_probe_interval_ms.max(1);
            self.next_far_probe_ms = now_ms + self.rng.gen_range(0..interval);
        } else if now_ms >= self.next_far_probe_ms {
            self.next_far_probe_ms = now_ms + self.config.far_probe_interval_ms;
            self.probe_far(now_ms, out);
        }
    }

    fn expire_relays(&mut self, now_ms: u64, out: &mut Vec<Output<P, R>>) {
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| matches!(p, Pending::Relay { deadline_ms, .. } if *deadline_ms <= now_ms))
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.failed(id, now_ms, out);
        }
    }

    /// Direct probes past their deadline turn indirect; indirect ones past theirs suspect.
    fn advance_rounds(&mut self, now_ms: u64, out: &mut Vec<Output<P, R>>) {
        let due: Vec<P> =
            self.rounds.iter().filter(|(_, r)| r.deadline_ms <= now_ms).map(|(p, _)| p.clone()).collect();
        for target in due {
            let Some(round) = self.rounds.get(&target) else { continue };
            let helpers = if round.indirect { Vec::new() } else { self.helpers(&target) };
            if helpers.is_empty() {
                let round = self.rounds.remove(&target).expect("just looked at");
                if round.counts {
                    // Helpers that did not even say "not reached" point at us (Lifeguard's
                    // missed nacks); with none to ask, the failure itself counts.
                    let missed =
                        if round.helpers > 0 { round.helpers.saturating_sub(round.answered) } else { 1 };
                    self.health.worse(missed);
                }
                self.probe_failed(&target, now_ms, out);
                continue;
            }
            let deadline_ms = now_ms + self.health.stretch(self.config.indirect_timeout_ms);
            let round = self.rounds.get_mut(&target).expect("just looked at");
            round.indirect = true;
            round.deadline_ms = deadline_ms;
            round.helpers = helpers.len();
            for helper in helpers {
                self.send(helper, Some(target.clone()), Pending::Probe { target: target.clone() }, out);
            }
        }
        // Our own probes' ids outlive their rounds only until the round is decided.
        let rounds = &self.rounds;
        self.pending.retain(|_, p| match p {
            Pending::Probe { target } => rounds.contains_key(target),
            Pending::Relay { .. } => true,
        });
    }

    /// Up to `indirect_k` random connected members shown alive, other than `target` (asking one
    /// we are not connected to would cost a connection, and it is less likely to reach the target).
    fn helpers(&mut self, target: &P) -> Vec<P> {
        let mut candidates: Vec<&P> = self
            .members
            .iter()
            .filter(|(p, m)| {
                *p != target && self.connected.contains(*p) && m.shown_state(true) == State::Alive
            })
            .map(|(p, _)| p)
            .collect();
        candidates.sort();
        candidates.shuffle(&mut self.rng);
        candidates.into_iter().take(self.config.indirect_k).cloned().collect()
    }

    fn probe_failed(&mut self, target: &P, now_ms: u64, out: &mut Vec<Output<P, R>>) {
        let Some(m) = self.members.get_mut(target) else { return };
        // Suspected even over an open connection: a paused process keeps its sockets until the
        // connection's pings time out, so readers see the suspicion at once (and it refutes it,
        // or answers a probe, as soon as it is up).
        m.unanswered = true;
        if m.state != State::Alive {
            self.show(target, out);
            return;
        }
        let u = Update { peer: target.clone(), state: State::Suspect, incarnation: m.incarnation };
        self.apply(u, now_ms, out);
    }

    fn expire_suspicions(&mut self, now_ms: u64, out: &mut Vec<Output<P, R>>) {
        let timeout = self.suspicion_timeout_ms();
        let expired: Vec<Update<P>> = self
            .members
            .iter()
            .filter(|(p, m)| {
                m.state == State::Suspect
                    && !self.connected.contains(*p)
                    && m.suspected_at_ms + timeout <= now_ms
            })
            .map(|(p, m)| Update { peer: p.clone(), state: State::Dead, incarnation: m.incarnation })
            .collect();
        for u in expired {
            self.apply(u, now_ms, out);
        }
    }

    /// Starts a round on the next connected member in the shuffled order (skipping ones in a
    /// round). One probe per period whatever N is: a hinted member first (its connection just
    /// broke: the probe dials it), else the round robin's next.
    fn probe_next(&mut self, now_ms: u64, out: &mut Vec<Output<P, R>>) {
        while let Some(target) = self.hints.pop_front() {
            if self.members.contains_key(&target) && !self.rounds.contains_key(&target) {
                return self.start_round(target, now_ms, out);
            }
        }
        for _ in 0..self.order.len() {
            if self.next >= self.order.len() {
                self.next = 0;
                self.order.sort();
                self.order.shuffle(&mut self.rng);
            }
            let target = self.order[self.next].clone();
            self.next += 1;
            if self.rounds.contains_key(&target) || !self.connected.contains(&target) {
                continue;
            }
            return self.start_round(target, now_ms, out);
        }
    }

    /// Starts a round on the next member we are not connected to (the probe dials it).
    fn probe_far(&mut self, now_ms: u64, out: &mut Vec<Output<P, R>>) {
        for _ in 0..self.order.len() {
            self.far_next = if self.far_next + 1 >= self.order.len() { 0 } else { self.far_next + 1 };
            let target = self.order[self.far_next].clone();
            if self.rounds.contains_key(&target) || self.connected.contains(&target) {
                continue;
            }
            return self.start_round(target, now_ms, out);
        }
    }

    fn start_round(&mut self, target: P, now_ms: u64, out: &mut Vec<Output<P, R>>) {
        let deadline_ms = now_ms + self.health.stretch(self.config.probe_timeout_ms);
        // The dead are probed too (so a node that comes back is seen), but never indirectly.
        let dead = self.members.get(&target).is_some_and(|m| m.state == State::Dead);
        let round =
            Round { indirect: dead, deadline_ms, started_ms: now_ms, counts: !dead, helpers: 0, answered: 0 };
        self.rounds.insert(target.clone(), round);
        self.send(target.clone(), None, Pending::Probe { target }, out);
    }
}
