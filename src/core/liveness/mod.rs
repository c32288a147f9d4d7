//! Liveness: which nodes of the table are up, as each node sees it (not stored in the table).
//! A pure state machine, SWIM with memberlist's dissemination: each period one connected member
//! is probed (round robin over a shuffled list); an unanswered probe is retried through
//! `indirect_k` other connected members (ping-req); only then is the target suspected.
//!
//! Probes ride on the connections a node keeps (a bounded number), so they open none: a member
//! is watched by the nodes connected to it (a ping-req helper, too, answers only for a target it
//! is connected to), and the others hear of its fate through the claims they pass on. Connections are only opened for a member whose connection just broke (it may
//! have died) and, once per `far_probe_interval_ms`, for one member we are not connected to (it
//! may have died while no one was connected to it). A suspicion not refuted within the
//! suspicion timeout makes it dead. Claims (suspect, dead, and a node's own refutation with a
//! higher incarnation) are piggybacked on probes and acks a bounded number of times, and only
//! when they change. So each node sends about one probe and one ack per period whatever N is.
//!
//! A node that cannot keep up (its event loop starved, its network slow) would time its own
//! probes out and suspect healthy members by the dozen, and the refutations then cost everyone
//! more. So, as memberlist's Lifeguard does, it keeps a local health score (`health`): raised
//! when its probe round fails with helpers that never answered either (they are alive or they
//! would not be helpers: the fault is likely ours), when the target fails with no helper to ask,
//! and when it must refute a suspicion of itself; lowered by each probe answered within the
//! unstretched timeout. Its probe period and timeouts are stretched by the score plus one, so a
//! slow node probes less and waits longer instead of accusing others.
//!
//! Direct evidence beats rumour: an open connection (libp2p pings it and closes it when pings
//! fail), any message from a node, or its answer to a probe show it alive here, and a node heard
//! from while we hold a claim against it is told of the claim so that it refutes it everywhere.

mod broadcast;
mod health;
mod rounds;
mod types;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;

use rand::rngs::StdRng;
use rand::SeedableRng;

use broadcast::Broadcasts;
use health::LocalHealth;
pub use types::{
    Input, LivenessConfig, MemberView, Output, ProbeAck, ProbeRequest, State, Update, MAX_PIGGYBACK,
};

#[derive(Debug)]
struct Member {
    /// The latest claim about it (SWIM's precedence: a higher incarnation wins; at the same
    /// incarnation dead beats suspect beats alive).
    state: State,
    incarnation: u64,
    suspected_at_ms: u64,
    last_seen_ms: Option<u64>,
    /// Our own probe round (direct, then indirect) went unanswered since the last sign of life:
    /// an open connection then proves nothing (a paused process keeps its sockets until the
    /// connection's pings give up, ~17 s).
    unanswered: bool,
    /// The state readers were last told of.
    shown: State,
}

impl Member {
    fn new() -> Self {
        Member {
            state: State::Alive,
            incarnation: 0,
            suspected_at_ms: 0,
            last_seen_ms: None,
            unanswered: false,
            shown: State::Alive,
        }
    }

    /// What readers see: an open connection is direct evidence of life, unless our own probes
    /// over it went unanswered.
    fn shown_state(&self, connected: bool) -> State {
        if connected && !self.unanswered {
            State::Alive
        } else {
            self.state
        }
    }
}

/// What one of our outstanding messages was for.
#[derive(Debug)]
enum Pending<P, R> {
    /// Our own probe of `target` (direct, or through a helper).
    Probe { target: P },
    /// A probe we run for someone else's ping-req: its answer goes to `reply`.
    Relay { reply: R, deadline_ms: u64 },
}

/// A probe round of ours, by target.
#[derive(Debug)]
struct Round {
    indirect: bool,
    deadline_ms: u64,
    started_ms: u64,
    /// Whether its outcome says anything of our own health (not for a member already dead,
    /// which is expected not to answer).
    counts: bool,
    /// Helpers asked for the indirect probes, and how many answered (acked or not).
    helpers: usize,
    answered: usize,
}

pub struct Liveness<P, R> {
    config: LivenessConfig,
    me: P,
    incarnation: u64,
    members: HashMap<P, Member>,
    /// Peers with an open connection, members or not (a connection often opens before the
    /// peer's node record arrives): the one record of who is connected, as many as the node
    /// has connections.
    connected: HashSet<P>,
    /// Probe order: the members, shuffled each time round.
    order: Vec<P>,
    /// Where the far probes (members not connected) stand in `order`, and when the next is due
    /// (0: not scheduled yet).
    far_next: usize,
    next_far_probe_ms: u64,
    /// Members whose connection just closed: probed before the round robin resumes (a closed
    /// connection is often the first sign of a failure). Each member at most once.
    hints: VecDeque<P>,
    next: usize,
    next_probe_ms: u64,
    rounds: HashMap<P, Round>,
    pending: HashMap<u64, Pending<P, R>>,
    relays: usize,
    next_id: u64,
    broadcasts: Broadcasts<P>,
    rng: StdRng,
    /// Whether anything readers see changed since [`Liveness::take_dirty`].
    dirty: bool,
    health: LocalHealth,
    /// Probe messages sent (requests of ours), for the traffic figures.
    pub sent: u64,
}

impl<P: Clone + Eq + Hash + Ord, R> Liveness<P, R> {
    pub fn new(me: P, config: LivenessConfig) -> Self {
        let rng = StdRng::seed_from_u64(config.seed);
        let health = LocalHealth::new(config.max_health);
        Liveness {
            config,
            me,
            connected: HashSet::new(),
            incarnation: 0,
            members: HashMap::new(),
            order: Vec::new(),
            far_next: 0,
            next_far_probe_ms: 0,
            hints: VecDeque::new(),
            next: 0,
            next_probe_ms: 0,
            rounds: HashMap::new(),
            pending: HashMap::new(),
            relays: 0,
            next_id: 0,
            broadcasts: Broadcasts::new(),
            rng,
            dirty: true,
            health,
            sent: 0,
        }
    }

    /// Lifeguard's local health score: 0 when this node's probes are answered in time; each
    /// point stretches its probe period and timeouts once more (see the module doc).
    pub fn health(&self) -> u32 {
        self.health.score()
    }

    /// Up to `n` members not connected and not shown dead, in the probe order (shuffled): peers
    /// worth a connection when the node has fewer than it wants.
    pub fn unconnected(&self, n: usize) -> Vec<P> {
        self.order
            .iter()
            .filter(|p| !self.connected.contains(*p))
            .filter(|p| self.members.get(*p).is_some_and(|m| m.state != State::Dead))
            .take(n)
            .cloned()
            .collect()
    }

    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// The members as readers see them, sorted by peer.
    pub fn view(&self) -> Vec<MemberView<P>> {
        let mut v: Vec<MemberView<P>> = self
            .members
            .iter()
            .map(|(p, m)| MemberView {
                peer: p.clone(),
                state: m.shown_state(self.connected.contains(p)),
                last_seen_ms: m.last_seen_ms,
                connected: self.connected.contains(p),
            })
            .collect();
        v.sort_by(|a, b| a.peer.cmp(&b.peer));
        v
    }

    pub fn state_of(&self, peer: &P) -> Option<State> {
        self.members.get(peer).map(|m| m.shown_state(self.connected.contains(peer)))
    }

    /// Whether readers' view is out of date; clears the flag.
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// Updates waiting to be piggybacked (bounded by the member count).
    pub fn queued_updates(&self) -> usize {
        self.broadcasts.len()
    }

    pub fn handle(&mut self, input: Input<P, R>, now_ms: u64) -> Vec<Output<P, R>> {
        let mut out = Vec::new();
        match input {
            Input::MemberAdded(p) => {
                if p != self.me && !self.members.contains_key(&p) {
                    self.members.insert(p.clone(), Member::new());
                    // Probed in the next pass of the shuffled order.
                    self.order.push(p);
                    self.dirty = true;
                }
            }
            Input::MemberRemoved(p) => {
                if self.members.remove(&p).is_some() {
                    self.order.retain(|q| q != &p);
                    self.hints.retain(|q| q != &p);
                    self.rounds.remove(&p);
                    self.broadcasts.remove(&p);
                    self.dirty = true;
                }
            }
            Input::Connected(p) => {
                // Readers see whether a member is connected.
                self.dirty |= self.connected.insert(p.clone()) && self.members.contains_key(&p);
                self.evidence(&p, None, now_ms, &mut out);
            }
            Input::Disconnected(p) => {
                self.dirty |= self.connected.remove(&p) && self.members.contains_key(&p);
                if let Some(m) = self.members.get_mut(&p) {
                    m.last_seen_ms = Some(now_ms);
                    if !self.hints.contains(&p) {
                        self.hints.push_back(p.clone());
                    }
                }
                self.show(&p, &mut out);
            }
            Input::Parted(p) => {
                self.dirty |= self.connected.remove(&p) && self.members.contains_key(&p);
                if let Some(m) = self.members.get_mut(&p) {
                    m.last_seen_ms = Some(now_ms);
                }
                self.show(&p, &mut out);
            }
            Input::Heard(p) => self.evidence(&p, None, now_ms, &mut out),
            Input::Tick => self.tick(now_ms, &mut out),
            Input::Request { from, request, reply } => self.request(from, request, reply, now_ms, &mut out),
            Input::Response { from, id, ack } => self.response(from, id, ack, now_ms, &mut out),
            Input::Failed { id } => self.failed(id, now_ms, &mut out),
        }
        out
    }

    fn retransmit_limit(&self) -> u32 {
        let n = (self.members.len() + 2) as f64;
        self.config.retransmit_mult * (n.log10().ceil() as u32).max(1)
    }

    fn suspicion_timeout_ms(&self) -> u64 {
        let n = (self.members.len() + 1) as f64;
        (self.config.suspicion_timeout_ms as f64 * n.log10().max(1.0)) as u64
    }

    fn message(&mut self, to: &P, target: Option<P>) -> ProbeRequest<P> {
        let limit = self.retransmit_limit();
        ProbeRequest {
            target,
            incarnation: self.incarnation,
            updates: self.broadcasts.take(to, MAX_PIGGYBACK, limit),
        }
    }

    fn ack(&mut self, to: &P, acked: bool) -> ProbeAck<P> {
        let limit = self.retransmit_limit();
        ProbeAck {
            acked,
            incarnation: self.incarnation,
            updates: self.broadcasts.take(to, MAX_PIGGYBACK, limit),
        }
    }

    fn send(&mut self, to: P, target: Option<P>, pending: Pending<P, R>, out: &mut Vec<Output<P, R>>) {
        self.next_id += 1;
        let id = self.next_id;
        let request = self.message(&to, target);
        self.pending.insert(id, pending);
        self.sent += 1;
        out.push(Output::Send { to, id, request });
    }

    /// Emits a change of what readers see of `p`, if any. Only a change of state makes the
    /// view dirty at once: `last_seen` moves with every message, and rebuilding the view for
    /// each (N members, at every node) cost a 200-node simulation a fifth of its CPU; it is
    /// shown once per probe period instead.
    fn show(&mut self, p: &P, out: &mut Vec<Output<P, R>>) {
        if let Some(m) = self.members.get_mut(p) {
            let now = m.shown_state(self.connected.contains(p));
            if now != m.shown {
                m.shown = now;
                out.push(Output::Changed { peer: p.clone(), state: now });
                self.dirty = true;
            }
        }
    }

    /// Direct evidence that `p` is up, at its own incarnation when the message carried one.
    fn evidence(&mut self, p: &P, incarnation: Option<u64>, now_ms: u64, out: &mut Vec<Output<P, R>>) {
        if let Some(inc) = incarnation {
            self.apply(Update { peer: p.clone(), state: State::Alive, incarnation: inc }, now_ms, out);
        }
        let Some(m) = self.members.get_mut(p) else { return };
        m.last_seen_ms = Some(now_ms);
        m.unanswered = false;
        if m.state != State::Alive {
            // It is up but has not refuted the claim yet: show it alive here, and make sure the
            // claim reaches it (piggybacked first on our next message to it) so that it does.
            let claim = Update { peer: p.clone(), state: m.state, incarnation: m.incarnation };
            m.state = State::Alive;
            self.broadcasts.push(claim);
        }
        self.show(p, out);
    }

    /// Applies a claim with SWIM's precedence; a claim that changes something is passed on.
    fn apply(&mut self, u: Update<P>, now_ms: u64, out: &mut Vec<Output<P, R>>) {
        if u.peer == self.me {
            if u.state != State::Alive && u.incarnation >= self.incarnation {
                // Refute: only we raise our incarnation, so this claim beats every older one.
                // Saturating: a peer's absurd claim must not overflow (nor crash) us.
                self.incarnation = u.incarnation.saturating_add(1);
                // Others could not reach us in time: we may be the slow one.
                self.health.worse(1);
                let me = self.me.clone();
                self.broadcasts.push(Update { peer: me, state: State::Alive, incarnation: self.incarnation });
            }
            return;
        }
        let Some(m) = self.members.get_mut(&u.peer) else { return };
        let newer = u.incarnation > m.incarnation;
        let same = u.incarnation == m.incarnation;
        let wins = match u.state {
            State::Alive => newer,
            // A suspicion at the same incarnation does not revive the dead.
            State::Suspect => newer || (same && m.state == State::Alive),
            State::Dead => newer || (same && m.state != State::Dead),
        };
        if !wins {
            return;
        }
        if u.state == State::Suspect && (m.state != State::Suspect || newer) {
            m.suspected_at_ms = now_ms;
        }
        m.state = u.state;
        m.incarnation = u.incarnation;
        let peer = u.peer.clone();
        self.broadcasts.push(u);
        self.show(&peer, out);
    }

    fn request(
        &mut self,
        from: P,
        request: ProbeRequest<P>,
        reply: R,
        now_ms: u64,
        out: &mut Vec<Output<P, R>>,
    ) {
        self.evidence(&from, Some(request.incarnation), now_ms, out);
        for u in request.updates {
            self.apply(u, now_ms, out);
        }
        match request.target {
            Some(target) if target != self.me => {
                // A helper probes only over a connection it holds: dialling for someone else's
                // doubt would open a connection per ping-req, and a loaded network (where
                // probes time out) would then open them by the hundred. The asker has other
                // helpers, and the nodes connected to the target watch it anyway.
                if self.relays >= self.config.max_relays || !self.connected.contains(&target) {
                    let ack = self.ack(&from, false);
                    out.push(Output::Reply { to: reply, ack });
                    return;
                }
                self.relays += 1;
                let deadline_ms = now_ms + self.health.stretch(self.config.probe_timeout_ms);
                self.send(target, None, Pending::Relay { reply, deadline_ms }, out);
            }
            _ => {
                let ack = self.ack(&from, true);
                out.push(Output::Reply { to: reply, ack });
            }
        }
    }

    fn response(&mut self, from: P, id: u64, ack: ProbeAck<P>, now_ms: u64, out: &mut Vec<Output<P, R>>) {
        self.evidence(&from, Some(ack.incarnation), now_ms, out);
        for u in ack.updates {
            self.apply(u, now_ms, out);
        }
        match self.pending.remove(&id) {
            // A helper's "not reached" is no answer about the target (the round's deadline
            // decides), but it is an answer: the helper, and our path to it, work.
            Some(Pending::Probe { target }) if !ack.acked => {
                if let Some(round) = self.rounds.get_mut(&target) {
                    round.answered += 1;
                }
            }
            Some(Pending::Probe { target }) => {
                if target != from {
                    self.evidence(&target, None, now_ms, out);
                }
                // Only an answer within the unstretched timeout shows we keep up again: one that
                // needed the stretch leaves the score where it is (lowering it would bring the
                // timeouts back that failed, and a false suspicion with them).
                let base = self.config.probe_timeout_ms;
                if self
                    .rounds
                    .remove(&target)
                    .is_some_and(|r| r.counts && now_ms.saturating_sub(r.started_ms) <= base)
                {
                    self.health.better();
                }
            }
            Some(Pending::Relay { reply, .. }) => {
                self.relays -= 1;
                let ack = self.ack(&from, ack.acked);
                out.push(Output::Reply { to: reply, ack });
            }
            None => {}
        }
    }

    fn failed(&mut self, id: u64, _now_ms: u64, out: &mut Vec<Output<P, R>>) {
        // A failed probe of ours waits for its round's deadline (another path may still answer).
        if let Some(Pending::Relay { reply, .. }) = self.pending.remove(&id) {
            self.relays -= 1;
            out.push(Output::Reply {
                to: reply,
                ack: ProbeAck { acked: false, incarnation: self.incarnation, updates: Vec::new() },
            });
        }
    }
}
