//! The replication protocol as a pure state machine: `handle(input, now) -> outputs`.
//!
//! The replica owns the table and every decision about it: local writes (validated here, so no
//! caller can commit an invalid record), gossip deltas (judged whole, merged, made durable, then
//! forwarded), anti-entropy sessions (keyed by request id), strikes and bans, timers, and the
//! durability handshake: every change goes out as [`Output::Persist`] with a sequence number and
//! waits in `pending` until the store answers [`Input::Committed`]; only then is the client
//! answered and the change published. No I/O, no clock, no runtime: the node task executes the
//! outputs over the swarm, the store and the manager, and the simulation (`sim`) over a model.

mod antientropy;
mod clockgate;
mod guard;
mod io;
mod lifecycle;
#[cfg(test)]
mod lifecycle_tests;
mod limit;
mod readonly;
#[cfg(test)]
mod readonly_tests;
#[cfg(any(test, feature = "test-util"))]
pub mod sim;
pub mod skew;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::core::delta::{batch_deltas, decode_delta};
use crate::core::record::{validate_key, PeerFields, PeerRecord, MAX_ADDRS};
use crate::core::sign::owner_of_key;
use crate::core::sync::{respond, SyncError, SyncRequest, SyncResponse};
use crate::core::{Entry, Table};

pub use antientropy::MAX_SYNC_SESSIONS;
pub use guard::{BAN_MS, MAX_STRIKES};
pub use io::{Input, Origin, Output, OwnAddress, RequestId, Seq, Timer, Types, Verdict, WriteError, WriteOp};
pub use lifecycle::REFRESH_MS_PER_NODE;
pub use readonly::{ReadOnly, DEFAULT_PROBE_INTERVAL_MS};
pub use skew::{ClockReport, ClockState};

use antientropy::{Advance, AntiEntropy};
use guard::{Guard, Struck};
use limit::RateLimit;
use readonly::{before, undo_of, Undo};
use skew::ClockOffsets;

/// Local writes are collected this long before they are published as one delta.
pub const GOSSIP_BATCH_MS: u64 = 2;
/// A repair this small is also gossiped, so a healed partition spreads at gossip speed; larger
/// repairs (a join) are left to each node's own anti-entropy rather than flooding the mesh.
pub const MAX_REGOSSIP_ENTRIES: usize = 256;
/// Unsolicited entries (gossip, pushes) one peer may send per second, by default; twice as many
/// in a burst. Generous: a whole busy network's writes, far above any honest relay's share.
pub const DEFAULT_PEER_ENTRY_RATE: u32 = 10_000;
/// Commits waiting for the store, by default. The runtime stops feeding writes while this many
/// are pending, which bounds the store's queues and, through them, memory.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 4096;

/// Settings of a replica.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// The own record's key: this node's peer id. Clients may not write it.
    pub own_key: String,
    /// The own record's `name`.
    pub name: String,
    /// The own record's `ports` (the node's service ports; `{}` when none).
    pub ports: BTreeMap<String, u16>,
    pub sync_interval_ms: u64,
    /// How often the own record is rewritten (each wait jittered, 0.8 to 1.2 times this).
    pub refresh_interval_ms: u64,
    pub gc_interval_ms: u64,
    /// Most commits pending at once; see [`DEFAULT_MAX_IN_FLIGHT`].
    pub max_in_flight: usize,
    /// See [`DEFAULT_PEER_ENTRY_RATE`].
    pub peer_entry_rate: u32,
    /// While read-only, how often a probe commit is tried.
    pub probe_interval_ms: u64,
    /// Seeds the replica's choices (which peer to sync with, jitter), so a simulation replays.
    pub seed: u64,
    /// At start, the own record waits this long for a clock comparison with a peer (0: it does
    /// not wait); see [`DEFAULT_CLOCK_WAIT_MS`].
    pub clock_wait_ms: u64,
}

/// How long a starting node waits to compare clocks with a peer before it writes its own record
/// anyway: a first anti-entropy answer usually comes within milliseconds of a connection.
pub const DEFAULT_CLOCK_WAIT_MS: u64 = 5_000;

/// Counters of replication, reported in status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SyncStats {
    /// Local clients' writes that changed the table.
    pub local_writes: u64,
    /// Sessions this node started and finished.
    pub sessions_completed: u64,
    /// Sessions that failed (timeouts, protocol errors).
    pub sessions_failed: u64,
    /// Answers to requests no session waits on any more (the session ended meanwhile).
    pub stale_answers: u64,
    /// Entries that anti-entropy changed here (pulled, or pushed to us).
    pub entries_repaired: u64,
    /// Requests refused as malformed.
    pub requests_refused: u64,
    /// Peers banned for repeated bad messages.
    pub peers_banned: u64,
    /// Own-record writes skipped because the record broke a limit (e.g. an over-long name).
    pub own_record_refused: u64,
    /// Commits the store could not make durable (or would not take).
    pub commits_failed: u64,
    /// Entries refused because their sender was over its rate (dropped gossip, refused pushes).
    pub rate_limited: u64,
    /// Times the node became read-only (a commit failed).
    pub read_only_entered: u64,
    /// Local writes refused while read-only.
    pub writes_refused_read_only: u64,
    /// Gossip messages ignored while read-only.
    pub gossip_ignored_read_only: u64,
    /// Anti-entropy pushes refused while read-only.
    pub pushes_refused_read_only: u64,
    /// Probe commits that failed (the node stayed read-only).
    pub probes_failed: u64,
    /// Keys set back to their durable value because the commit that changed them failed.
    pub keys_rolled_back: u64,
}

/// Where a commit's entries come from, and whether they are published once durable.
#[derive(Debug, Clone, Copy)]
struct Source {
    origin: Origin,
    publish: bool,
    /// The deletes remove live records (see [`Output::Persist`]).
    removals: bool,
}

impl Source {
    fn local(publish: bool) -> Source {
        Source { origin: Origin::Local, publish, removals: false }
    }

    fn remote(publish: bool) -> Source {
        Source { origin: Origin::Remote, publish, removals: false }
    }

    /// Live records dropped here (expired node records): the feed reports their removal.
    fn removals() -> Source {
        Source { origin: Origin::Local, publish: false, removals: true }
    }
}

/// What happens when a commit becomes durable.
struct Pending<T: Types> {
    /// The local client waiting for it.
    reply: Option<T::Reply>,
    /// The gossip message it came from: forwarded (Accept) only once durable here.
    gossip: Option<T::Gossip>,
    /// Entries to publish once durable (local writes and small repairs).
    publish: Vec<Entry>,
    /// How to take the change back from the table if the commit fails.
    undo: Vec<Undo>,
}

/// One replica of the table and its replication state.
pub struct Replica<T: Types> {
    config: ReplicaConfig,
    table: Table,
    /// What the own record advertises; rewritten when it changes.
    own_address: OwnAddress,
    rng: StdRng,
    next_seq: Seq,
    /// Commits handed to the store and not yet answered.
    pending: HashMap<Seq, Pending<T>>,
    /// Durable entries waiting for the next delta.
    outbox: Vec<Entry>,
    /// Whether [`Timer::FlushGossip`] is armed.
    flush_armed: bool,
    /// Whether [`Timer::Bans`] is armed.
    bans_armed: bool,
    /// Ordered, so that a seeded choice among them replays.
    connected: BTreeSet<T::Peer>,
    sessions: AntiEntropy<T::Peer>,
    guard: Guard<T::Peer>,
    limit: RateLimit<T::Peer>,
    /// This node's clock offset against its peers.
    clock: ClockOffsets<T::Peer>,
    /// The own record waits to be written: for a clock comparison at start, or while the clock is
    /// off (see `clockgate`).
    own_record_due: bool,
    /// The start's wait for a clock comparison is over.
    clock_wait_over: bool,
    /// The wall clock of the input being handled, microseconds.
    now_us: i64,
    stats: SyncStats,
    /// Set while commits fail (see `readonly`): no writes are taken.
    read_only: Option<ReadOnly>,
    /// The node leaves the network (see `lifecycle`): the own record is never written again.
    left: bool,
    out: Vec<Output<T>>,
}

impl<T: Types> Replica<T> {
    /// A replica over `table` (loaded from the store, or empty).
    pub fn new(config: ReplicaConfig, table: Table) -> Self {
        Replica {
            rng: StdRng::seed_from_u64(config.seed),
            limit: RateLimit::new(config.peer_entry_rate),
            clock: ClockOffsets::new(table.clock().max_skew_ms()),
            own_record_due: false,
            clock_wait_over: false,
            now_us: 0,
            config,
            table,
            own_address: OwnAddress::default(),
            next_seq: 0,
            pending: HashMap::new(),
            outbox: Vec::new(),
            flush_armed: false,
            bans_armed: false,
            connected: BTreeSet::new(),
            sessions: AntiEntropy::default(),
            guard: Guard::default(),
            stats: SyncStats::default(),
            read_only: None,
            left: false,
            out: Vec::new(),
        }
    }

    pub fn table(&self) -> &Table {
        &self.table
    }

    pub fn stats(&self) -> SyncStats {
        self.stats
    }

    /// Whether another write may be fed in: fewer than `max_in_flight` commits are pending.
    /// Timers may still add a commit or two beyond it.
    pub fn can_accept(&self) -> bool {
        self.pending.len() < self.config.max_in_flight
    }

    /// Commits waiting for the store.
    pub fn pending_commits(&self) -> usize {
        self.pending.len()
    }

    /// Handles one input at wall-clock time `now_us` (microseconds since the Unix epoch) and
    /// returns what the runtime must do, in order.
    pub fn handle(&mut self, input: Input<T>, now_us: i64) -> std::vec::Drain<'_, Output<T>> {
        let now_ms = u64::try_from(now_us / 1000).unwrap_or(0);
        self.now_us = now_us;
        match input {
            Input::Start => self.start(now_us),
            Input::Write { op: _, reply } if self.read_only.is_some() => self.refuse_write(reply),
            Input::Write { op, reply } => self.write(op, reply, now_us),
            Input::Leave { reply } => self.leave(reply, now_us),
            Input::OwnAddress(address) => {
                // While read-only the own record is rewritten on leaving.
                if address != self.own_address && self.read_only.is_none() {
                    self.own_address = address;
                    self.write_own_record(now_us);
                }
            }
            Input::PeerConnected(peer) => {
                self.connected.insert(peer);
                self.start_sync(peer);
            }
            Input::PeerDisconnected(peer) => {
                self.connected.remove(&peer);
                self.sessions.forget(&peer);
                self.guard.disconnected(&peer);
                self.limit.forget(&peer);
                self.clock.forget(&peer);
                self.clock_changed(now_us);
            }
            Input::Gossip { id, .. } if self.read_only.is_some() => self.ignore_gossip(id),
            Input::Gossip { from, id, data } => self.on_gossip(from, id, &data, now_ms),
            Input::SyncRequest { request: SyncRequest::Push { .. }, responder, .. }
                if self.read_only.is_some() =>
            {
                self.refuse_push(responder)
            }
            Input::SyncRequest { from, request: SyncRequest::Push { entries }, responder }
                if !self.limit.take(from, entries.len(), now_ms) =>
            {
                // Not a fault: the pusher's session ends, and what it carried comes by a pull later.
                self.stats.rate_limited += entries.len() as u64;
                let reason = "rate limited: too many entries from this peer; try later".to_owned();
                self.respond(responder, SyncResponse::Refused { reason });
            }
            Input::SyncRequest { from, request, responder } => {
                let before = match &request {
                    SyncRequest::Push { entries } => {
                        before(&self.table, entries.iter().map(|e| e.key.as_str()))
                    }
                    _ => HashMap::new(),
                };
                match respond(&mut self.table, request, now_ms) {
                    Ok((response, changed, refused)) => {
                        self.respond(responder, response);
                        self.repaired(changed, before);
                        if refused > 0 {
                            self.strike(from, now_ms);
                        }
                    }
                    Err(e) => self.refuse_request(from, responder, e.to_string(), now_ms),
                }
            }
            Input::MalformedSyncRequest { from, reason, responder } => {
                self.refuse_request(from, responder, reason, now_ms)
            }
            Input::SyncResponse { from: _, id, response, clock_us } => {
                self.on_sync_response(id, response, clock_us, now_us)
            }
            Input::SyncFailed { id, error: _ } => match self.sessions.on_failure(id) {
                Some(_) => self.stats.sessions_failed += 1,
                None => self.stats.stale_answers += 1,
            },
            Input::Committed(seq) => self.committed(seq),
            Input::CommitFailed { seq, error } => self.commit_failed(seq, error, now_us),
            Input::TimerFired(timer) => self.timer(timer, now_us),
            Input::ProbeOk => self.probe_ok(now_us),
            Input::ProbeFailed { error } => self.probe_failed(error),
        }
        self.out.drain(..)
    }

    fn start(&mut self, now_us: i64) {
        let first_refresh = self.next_refresh_ms();
        self.schedule(first_refresh, Timer::Refresh);
        self.schedule(self.config.sync_interval_ms, Timer::Sync);
        self.schedule(self.config.gc_interval_ms, Timer::CollectTombstones);
        if self.config.clock_wait_ms > 0 {
            self.schedule(self.config.clock_wait_ms, Timer::ClockWait);
        } else {
            self.clock_wait_over = true;
        }
        self.write_own_record(now_us);
    }

    fn schedule(&mut self, after_ms: u64, timer: Timer) {
        self.out.push(Output::Schedule { after_ms, timer });
    }

    fn timer(&mut self, timer: Timer, now_us: i64) {
        let now_ms = u64::try_from(now_us / 1000).unwrap_or(0);
        match timer {
            Timer::FlushGossip => {
                self.flush_armed = false;
                for delta in batch_deltas(std::mem::take(&mut self.outbox)) {
                    self.out.push(Output::Publish(delta));
                }
            }
            Timer::Sync => {
                self.sync_round(now_us);
                self.schedule(self.config.sync_interval_ms, Timer::Sync);
            }
            Timer::Refresh => {
                // Skipped while read-only: leaving writes it.
                if self.read_only.is_none() {
                    self.write_own_record(now_us);
                }
                let next = self.next_refresh_ms();
                self.schedule(next, Timer::Refresh);
            }
            Timer::CollectTombstones => {
                self.collect(now_ms);
                self.schedule(self.config.gc_interval_ms, Timer::CollectTombstones);
            }
            Timer::Bans => {
                self.bans_armed = false;
                for peer in self.guard.expire(now_ms) {
                    self.out.push(Output::Unban(peer));
                }
                self.arm_bans(now_ms);
            }
            Timer::Probe => self.probe_timer(),
            Timer::ClockWait => {
                self.clock_wait_over = true;
                self.write_own_record_if_due(now_us);
            }
        }
    }

    /// A local client's write: checked here (the table's limits, the own record), applied, and
    /// handed to the store; the client is answered once it is durable.
    fn write(&mut self, op: WriteOp, reply: T::Reply, now_us: i64) {
        let before = before(&self.table, [op.key()]);
        match self.apply_write(op, now_us) {
            Ok(Some(entry)) => {
                self.stats.local_writes += 1;
                let undo = undo_of(&self.table, before, std::slice::from_ref(&entry));
                self.persist(vec![entry], Vec::new(), Some(reply), None, Source::local(true), undo)
            }
            Ok(None) => self.out.push(Output::Reply { to: reply, result: Ok(false) }),
            Err(e) => self.out.push(Output::Reply { to: reply, result: Err(e) }),
        }
    }

    /// Applies a local write to the table; `None` when the protocol says no (exists / missing).
    fn apply_write(&mut self, op: WriteOp, now_us: i64) -> Result<Option<Entry>, WriteError> {
        let now_ms = u64::try_from(now_us / 1000).unwrap_or(0);
        validate_key(op.key())?;
        if op.key() == self.config.own_key {
            return Err(WriteError::OwnRecord);
        }
        if owner_of_key(op.key()).is_some() {
            // Another node's own record: only that node may write it.
            return Err(WriteError::NotOwner(op.key().to_owned()));
        }
        if !self.table.has_room(&self.table.writer(), op.key()) {
            return Err(WriteError::WriterFull(self.table.max_keys_per_writer()));
        }
        self.may_stamp(now_us)?;
        let entry = match op {
            WriteOp::Add { key, fields } => {
                if self.table.get(&key).is_some() {
                    return Ok(None);
                }
                let record = PeerRecord::create(fields, now_us);
                record.validate()?;
                self.table.put(key, record, now_ms)
            }
            WriteOp::Update { key, fields } => {
                let Some(current) = self.table.get(&key) else { return Ok(None) };
                let record = current.updated(fields, now_us);
                record.validate()?;
                self.table.put(key, record, now_ms)
            }
            WriteOp::Remove { key } => match self.table.remove(&key, now_ms) {
                Some(tombstone) => tombstone,
                None => return Ok(None),
            },
        };
        self.applied(&entry);
        Ok(Some(entry))
    }

    /// Puts (or refreshes) this node's own record: key = peer id, `lastConnectionOn` = now; or
    /// leaves it due while the clock is not to be trusted (see `clockgate`).
    fn write_own_record(&mut self, now_us: i64) {
        if self.left {
            return;
        }
        if !self.own_record_allowed(now_us) {
            self.own_record_due = true;
            return;
        }
        self.own_record_due = false;
        let key = self.config.own_key.clone();
        let address = &self.own_address;
        let fields = PeerFields {
            name: Some(self.config.name.clone()),
            ip: Some(address.ip.clone()),
            port: Some(address.port.clone()),
            peer_id: Some(key.clone()),
            ports: Some(self.config.ports.clone()),
            addrs: Some(address.addrs.iter().take(MAX_ADDRS).cloned().collect()),
        };
        let record = match self.table.get(&key) {
            Some(current) => current.updated(fields, now_us),
            None => PeerRecord::create(fields, now_us),
        };
        if record.validate().is_err() {
            self.stats.own_record_refused += 1;
            return;
        }
        let before = before(&self.table, [key.as_str()]);
        let entry = self.table.put(key, record, u64::try_from(now_us / 1000).unwrap_or(0));
        self.applied(&entry);
        let undo = undo_of(&self.table, before, std::slice::from_ref(&entry));
        self.persist(vec![entry], Vec::new(), None, None, Source::local(true), undo);
    }

    fn applied(&mut self, e: &Entry) {
        self.out.push(Output::Applied { key: e.key.clone(), record: e.record.clone() });
    }

    /// Hands a commit to the store and remembers what to do once it is durable.
    fn persist(
        &mut self,
        puts: Vec<Entry>,
        deletes: Vec<String>,
        reply: Option<T::Reply>,
        gossip: Option<T::Gossip>,
        source: Source,
        undo: Vec<Undo>,
    ) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let publish = if source.publish { puts.clone() } else { Vec::new() };
        self.pending.insert(seq, Pending { reply, gossip, publish, undo });
        let (origin, removals) = (source.origin, source.removals);
        self.out.push(Output::Persist { seq, puts, deletes, origin, removals });
    }

    fn committed(&mut self, seq: Seq) {
        let Some(done) = self.pending.remove(&seq) else { return };
        if let Some(to) = done.reply {
            self.out.push(Output::Reply { to, result: Ok(true) });
        }
        if let Some(id) = done.gossip {
            self.out.push(Output::GossipVerdict { id, verdict: Verdict::Accept });
        }
        if !done.publish.is_empty() {
            self.outbox.extend(done.publish);
            if !self.flush_armed {
                self.flush_armed = true;
                self.schedule(GOSSIP_BATCH_MS, Timer::FlushGossip);
            }
        }
    }

    /// Judges a gossip message as a whole: every entry must be valid (signed by its writer, the
    /// writer owning the key if it is a peer id, within limits and skew) before any is merged.
    fn on_gossip(&mut self, from: T::Peer, id: T::Gossip, data: &[u8], now_ms: u64) {
        let entries = match decode_delta(data) {
            Ok(entries) if !self.limit.take(from, entries.len(), now_ms) => {
                // Over its rate: not forwarded, no penalty (it may be relaying a flood); anti-entropy
                // fetches what is missing later.
                self.stats.rate_limited += entries.len() as u64;
                self.out.push(Output::GossipVerdict { id, verdict: Verdict::Ignore });
                return;
            }
            Ok(entries) => Some(entries),
            Err(_) => None,
        };
        let before = entries.as_ref().map(|es| before(&self.table, es.iter().map(|e| e.key.as_str())));
        let merged = entries.and_then(|entries| self.table.merge_delta(entries, now_ms).ok());
        let Some(changed) = merged else {
            self.out.push(Output::GossipVerdict { id, verdict: Verdict::Reject });
            self.strike(from, now_ms);
            return;
        };
        if changed.is_empty() {
            self.out.push(Output::GossipVerdict { id, verdict: Verdict::Ignore });
            return;
        }
        for e in &changed {
            self.applied(e);
        }
        let undo = undo_of(&self.table, before.unwrap_or_default(), &changed);
        // Forwarded (Accept) once durable, in `committed`.
        self.persist(changed, Vec::new(), None, Some(id), Source::remote(false), undo);
    }

    fn on_sync_response(&mut self, id: RequestId, response: SyncResponse, clock_us: i64, now_us: i64) {
        let now_ms = u64::try_from(now_us / 1000).unwrap_or(0);
        let before = match &response {
            SyncResponse::Entries { entries, .. } => {
                before(&self.table, entries.iter().map(|e| e.key.as_str()))
            }
            _ => HashMap::new(),
        };
        let Some(answered) = self.sessions.on_response(id, &mut self.table, response, now_us) else {
            self.stats.stale_answers += 1;
            return;
        };
        let peer = answered.peer;
        self.clock_sample(peer, answered.sent_us, clock_us, now_us);
        self.repaired(answered.changed, before);
        if answered.refused > 0 {
            self.strike(peer, now_ms);
        }
        match answered.advance {
            Advance::Continue { id, mut request } => {
                if let SyncRequest::Push { entries } = &mut request {
                    self.durable_only(entries);
                }
                self.out.push(Output::SendSync { to: peer, id, request })
            }
            Advance::Done(session) => {
                self.stats.sessions_completed += 1;
                if session.differing_buckets > 0 {
                    tracing::debug!(?peer, ?session, "anti-entropy repaired");
                }
            }
            Advance::Failed(error) => {
                tracing::debug!(?peer, %error, "anti-entropy session failed");
                self.stats.sessions_failed += 1;
                // A refusal (e.g. over its rate limit) is the peer's right, not a fault.
                if !matches!(error, SyncError::Refused(_)) {
                    self.strike(peer, now_ms);
                }
            }
        }
    }

    fn refuse_request(&mut self, from: T::Peer, to: T::Responder, reason: String, now_ms: u64) {
        self.stats.requests_refused += 1;
        self.respond(to, SyncResponse::Refused { reason });
        self.strike(from, now_ms);
    }

    /// Persists what anti-entropy changed; a small repair is also regossiped.
    fn repaired(&mut self, changed: Vec<Entry>, before: HashMap<String, Option<Entry>>) {
        if changed.is_empty() {
            return;
        }
        self.stats.entries_repaired += changed.len() as u64;
        for e in &changed {
            self.applied(e);
        }
        let undo = undo_of(&self.table, before, &changed);
        let publish = changed.len() <= MAX_REGOSSIP_ENTRIES;
        self.persist(changed, Vec::new(), None, None, Source::remote(publish), undo);
    }

    fn start_sync(&mut self, peer: T::Peer) {
        // A read-only node would have to drop what it pulls.
        if self.guard.is_banned(&peer) || self.read_only.is_some() {
            return;
        }
        let offset = self.rng.gen();
        if let Some((id, request)) = self.sessions.start(peer, &self.table, offset, self.now_us) {
            self.out.push(Output::SendSync { to: peer, id, request });
        }
    }

    /// Counts a bad message from a peer; too many and the peer is banned for a while.
    fn strike(&mut self, peer: T::Peer, now_ms: u64) {
        if self.guard.strike(peer, now_ms) == Struck::Banned {
            tracing::warn!(?peer, "banning a peer that keeps sending bad messages");
            self.stats.peers_banned += 1;
            self.sessions.forget(&peer);
            self.out.push(Output::Ban(peer));
            self.arm_bans(now_ms);
        }
    }

    fn arm_bans(&mut self, now_ms: u64) {
        if self.bans_armed {
            return;
        }
        if let Some(until) = self.guard.next_expiry() {
            self.bans_armed = true;
            self.schedule(until.saturating_sub(now_ms), Timer::Bans);
        }
    }
}
