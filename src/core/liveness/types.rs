//! The liveness protocol's vocabulary: states, the updates gossiped about them, the messages on
//! the wire and the settings. Generic over the peer type, so tests use small integers.

use serde::{Deserialize, Serialize};

/// What a node believes about another node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum State {
    Alive,
    Suspect,
    Dead,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Alive => "alive",
            State::Suspect => "suspect",
            State::Dead => "dead",
        }
    }
}

/// A claim about a node, ordered by its incarnation (only the node itself raises it, to refute).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Update<P> {
    pub peer: P,
    pub state: State,
    pub incarnation: u64,
}

/// A probe: "are you there?" (`target: None`), or, to a helper, "ask `target` for me" (SWIM's
/// ping-req). Every message carries the sender's incarnation and a few piggybacked updates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeRequest<P> {
    pub target: Option<P>,
    pub incarnation: u64,
    pub updates: Vec<Update<P>>,
}

/// The answer to a probe: `acked` is false when a helper could not reach the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeAck<P> {
    pub acked: bool,
    pub incarnation: u64,
    pub updates: Vec<Update<P>>,
}

/// Most updates piggybacked on one message: bounds the message size whatever N is.
pub const MAX_PIGGYBACK: usize = 8;

/// Timings and fan-outs (memberlist's LAN defaults, scaled for a loaded test host).
#[derive(Debug, Clone)]
pub struct LivenessConfig {
    /// One connected member is probed per period: the probe load per node does not depend on
    /// N, and costs no connection.
    pub probe_interval_ms: u64,
    /// Once per this, a member we have no connection to is probed too (which dials it): how a
    /// node that no one is connected to any more (it died while apart, or the table was loaded
    /// with it) is found dead. Across the network each member is still probed about once per
    /// this, and a node opens one connection per this for it, whatever N is.
    pub far_probe_interval_ms: u64,
    /// A direct probe unanswered for this long turns indirect.
    pub probe_timeout_ms: u64,
    /// The indirect probes' time, after which the target is suspected.
    pub indirect_timeout_ms: u64,
    /// Helpers asked to probe a target that did not answer directly.
    pub indirect_k: usize,
    /// A suspicion not refuted within this (times log10 of the member count, at least once)
    /// turns the member dead.
    pub suspicion_timeout_ms: u64,
    /// Each update is piggybacked this many times × log10(N + 1) (rounded up), then dropped.
    pub retransmit_mult: u32,
    /// Most indirect probes run for others at once; more are answered "not reached" at once.
    pub max_relays: usize,
    /// Lifeguard's local health: the highest score, whose probe period and timeouts are this
    /// many times plus one the configured ones (0 turns the stretching off). See
    /// [`super::Liveness::health`].
    pub max_health: u32,
    pub seed: u64,
}

impl Default for LivenessConfig {
    fn default() -> Self {
        LivenessConfig {
            probe_interval_ms: 1000,
            far_probe_interval_ms: 30_000,
            probe_timeout_ms: 800,
            indirect_timeout_ms: 1500,
            indirect_k: 3,
            suspicion_timeout_ms: 5000,
            retransmit_mult: 4,
            max_relays: 16,
            // memberlist's awareness multiplier: a node that cannot keep up probes up to 9
            // times slower, with up to 9 times longer timeouts.
            max_health: 8,
            seed: 0,
        }
    }
}

/// What the node task tells the state machine.
#[derive(Debug)]
pub enum Input<P, R> {
    /// A node record appeared (or is there at start) / was removed.
    MemberAdded(P),
    MemberRemoved(P),
    /// A connection of this network opened / its last connection closed. An open connection is
    /// itself evidence: libp2p pings it and closes it when pings fail.
    Connected(P),
    Disconnected(P),
    /// Its last connection closed on purpose (a connection manager's trim, ours or its own):
    /// no sign of failure, so nothing to look into.
    Parted(P),
    /// Any message from the peer (gossip, anti-entropy): it is up.
    Heard(P),
    /// Advances the timers; the task sends it every few hundred milliseconds.
    Tick,
    /// A probe from `from`; answer it through `reply`.
    Request {
        from: P,
        request: ProbeRequest<P>,
        reply: R,
    },
    /// The answer to our message `id`.
    Response {
        from: P,
        id: u64,
        ack: ProbeAck<P>,
    },
    /// Our message `id` could not be delivered (dial failure, timeout, refusal).
    Failed {
        id: u64,
    },
}

/// What the state machine asks the node task to do.
#[derive(Debug)]
pub enum Output<P, R> {
    /// Send a probe to `to` (dial it if need be); answer with `Response` or `Failed` for `id`.
    Send {
        to: P,
        id: u64,
        request: ProbeRequest<P>,
    },
    Reply {
        to: R,
        ack: ProbeAck<P>,
    },
    /// A member's state as shown to readers changed.
    Changed {
        peer: P,
        state: State,
    },
}

/// A member as readers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView<P> {
    pub peer: P,
    pub state: State,
    /// When we last had direct evidence of it (ms since the epoch), if ever.
    pub last_seen_ms: Option<u64>,
    pub connected: bool,
}
