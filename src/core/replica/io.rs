//! What goes into the replica and what comes out: the whole contract between the protocol and the
//! runtime that executes it.

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use crate::core::record::{PeerFields, PeerRecord, RecordError};
use crate::core::sync::{SyncRequest, SyncResponse};
use crate::core::Entry;

use super::skew::Direction;

/// The runtime's opaque handles, carried through the replica untouched: the replica decides what
/// happens to them, the runtime knows what they are (a oneshot sender, a gossipsub message id, a
/// libp2p response channel; in the simulation, plain numbers).
pub trait Types {
    /// A remote replica.
    type Peer: Copy + Eq + Hash + Ord + Debug;
    /// Where the answer to a local write goes.
    type Reply;
    /// A received gossip message, to be judged with a [`Verdict`].
    type Gossip;
    /// Where the response to a received anti-entropy request goes.
    type Responder;
}

/// Identifies one outbound anti-entropy request; the runtime hands it back with the response or
/// the failure, so a late answer can never be mistaken for a newer request's.
pub type RequestId = u64;

/// Identifies one commit handed to the store; the store answers with the same number.
pub type Seq = u64;

/// Where a change to the table came from: what the change feed tells its watchers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A local client's write, or the node's own record.
    Local,
    /// A peer's entry, by gossip or anti-entropy.
    Remote,
}

/// A write asked for by a local client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    /// Adds a record unless a live one exists under the key (then the answer is `false`).
    Add { key: String, fields: PeerFields },
    /// Changes a live record (`false` if there is none).
    Update { key: String, fields: PeerFields },
    /// Removes a live record, leaving a tombstone (`false` if there is none).
    Remove { key: String },
}

impl WriteOp {
    pub fn key(&self) -> &str {
        match self {
            WriteOp::Add { key, .. } | WriteOp::Update { key, .. } | WriteOp::Remove { key } => key,
        }
    }
}

/// Why a local write was refused or not made durable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error("invalid record: {0}")]
    Invalid(#[from] RecordError),
    #[error("the node's own record is managed by the node itself")]
    OwnRecord,
    #[error("key {0:?} is another node's peer id: only that node may write its record")]
    NotOwner(String),
    #[error("this node already holds the most keys one writer may ({0}); remove some first")]
    WriterFull(usize),
    #[error("the write could not be made durable: {0}")]
    NotDurable(String),
    /// A commit failed (e.g. the disk is full): the node takes no writes until a probe commit
    /// succeeds again. Reads keep working.
    #[error(
        "this node is read-only: its disk refused a write ({0}); writes are refused until space \
         is freed (the node retries by itself); reads still work"
    )]
    ReadOnly(String),
    /// Beyond the max skew from its peers' clocks, what this node stamps would be refused by
    /// them (ahead) or lose to older writes (behind).
    #[error("this node's clock is {secs} s {direction} its peers (more than the {max_skew_secs} s allowed); writes are refused until its clock is corrected")]
    ClockSkew { secs: u64, direction: Direction, max_skew_secs: u64 },
    /// The node stamped writes while its clock was ahead, and the clock was set back since:
    /// anything it stamps now is still that far ahead, so it waits for the clock to catch up.
    #[error("this node stamped writes {secs} s ahead of its clock (the clock was set back since); writes are refused until the clock catches up")]
    StampsAhead { secs: u64 },
}

/// What the node advertises about itself in its own record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnAddress {
    /// The best direct address's host and port (empty when none is known).
    pub ip: String,
    pub port: String,
    /// Full multiaddrs, `/p2p/<id>` included.
    pub addrs: Vec<String>,
}

/// The verdict on a received gossip message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Valid, new, and durable here: forward it.
    Accept,
    /// Valid but nothing new: do not forward, no penalty.
    Ignore,
    /// Invalid: drop it and lower the sender's score.
    Reject,
}

/// The replica's timers. Each is armed at most once at a time, so the runtime's timer queue holds
/// at most one entry per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// Publish the batched local writes.
    FlushGossip,
    /// Anti-entropy with a random connected peer.
    Sync,
    /// Rewrite the own record's `lastConnectionOn`.
    Refresh,
    /// Collect expired tombstones and expired node records.
    CollectTombstones,
    /// Lift bans that ran out.
    Bans,
    /// Read-only: time to try a probe commit ([`Output::Probe`]).
    Probe,
    /// The start's wait for a clock comparison is over: the own record is written even if no
    /// peer answered.
    ClockWait,
}

/// An event for the replica.
#[derive(Debug)]
pub enum Input<T: Types> {
    /// The node started: arm the timers and write the own record.
    Start,
    /// A local client's write.
    Write {
        op: WriteOp,
        reply: T::Reply,
    },
    /// The node's addresses changed: rewrite the own record.
    OwnAddress(OwnAddress),
    /// The node is about to stop and leave the network: tombstone the own record (answered
    /// through `reply` once durable, like a write) and never write it again.
    Leave {
        reply: T::Reply,
    },
    PeerConnected(T::Peer),
    PeerDisconnected(T::Peer),
    /// A gossip message (a delta) from `from`, who may only be relaying it.
    Gossip {
        from: T::Peer,
        id: T::Gossip,
        data: Vec<u8>,
    },
    /// An anti-entropy request to answer.
    SyncRequest {
        from: T::Peer,
        request: SyncRequest,
        responder: T::Responder,
    },
    /// An anti-entropy request that could not be read: refuse it and hold it against the sender.
    MalformedSyncRequest {
        from: T::Peer,
        reason: String,
        responder: T::Responder,
    },
    /// The answer to our request `id`, and the responder's clock when it answered.
    SyncResponse {
        from: T::Peer,
        id: RequestId,
        response: SyncResponse,
        /// Microseconds since the Unix epoch, by the responder's clock.
        clock_us: i64,
    },
    /// Our request `id` failed (timeout, connection closed, unsupported).
    SyncFailed {
        id: RequestId,
        error: String,
    },
    /// The store made commit `seq` durable.
    Committed(Seq),
    /// The store could not make commit `seq` durable.
    CommitFailed {
        seq: Seq,
        error: String,
    },
    TimerFired(Timer),
    /// The probe commit asked for by [`Output::Probe`] succeeded: the store takes writes again.
    ProbeOk,
    /// The probe commit failed: the node stays read-only.
    ProbeFailed {
        error: String,
    },
}

/// Something the runtime must do.
#[derive(Debug)]
pub enum Output<T: Types> {
    /// Make these writes durable (one transaction), then answer with `Committed(seq)` or
    /// `CommitFailed`. Deletes are tombstones past their grace period.
    Persist {
        seq: Seq,
        puts: Vec<Entry>,
        deletes: Vec<String>,
        /// Where `puts` came from, for the change feed once they are durable.
        origin: Origin,
        /// Whether `deletes` remove live records (expired node records), which the change feed
        /// reports as removals; otherwise they are collected tombstones, already reported.
        removals: bool,
    },
    /// The live record under `key` is now `record` (`None`: gone). Reads see it from now on.
    Applied {
        key: String,
        record: Option<Arc<PeerRecord>>,
    },
    /// Answer a local write: `true` done, `false` refused by the protocol (exists / missing).
    Reply {
        to: T::Reply,
        result: Result<bool, WriteError>,
    },
    /// Publish an encoded delta to every subscribed peer.
    Publish(Vec<u8>),
    GossipVerdict {
        id: T::Gossip,
        verdict: Verdict,
    },
    SendSync {
        to: T::Peer,
        id: RequestId,
        request: SyncRequest,
    },
    RespondSync {
        to: T::Responder,
        response: SyncResponse,
        /// This node's clock when it answered (sent along, see `skew`).
        clock_us: i64,
    },
    /// Cut this peer off (it kept sending bad messages) until [`Output::Unban`].
    Ban(T::Peer),
    Unban(T::Peer),
    /// Fire `timer` after this many milliseconds.
    Schedule {
        after_ms: u64,
        timer: Timer,
    },
    /// Read-only: try a probe commit (after every commit queued before it), then answer with
    /// [`Input::ProbeOk`] or [`Input::ProbeFailed`].
    Probe,
}
