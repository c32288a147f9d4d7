//! The replicated peer table: a map of last-writer-wins registers with tombstones, a digest for
//! anti-entropy, and tombstone collection. Pure and synchronous; every time is a parameter.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crdts::LWWReg;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::{xxh3_128, xxh3_64};

use super::clock::{ClockError, Hlc, NodeId, Stamp};
use super::record::{validate_key, PeerRecord, RecordError};
use super::sign::{entry_message, owner_of_key, verify, verify_all, Signature, Signer};

/// Number of hash buckets in a digest: anti-entropy compares these to find which keys differ.
/// 1024 × 16 bytes = 16 KiB per exchange, and about 100 keys per bucket at 100,000 records.
pub const BUCKETS: usize = 1024;

/// How long a tombstone is kept before it is collected: longer than any partition we expect to heal.
pub const DEFAULT_TOMBSTONE_GRACE: Duration = Duration::from_secs(7 * 24 * 3600);

/// How long a node record (a key that is a peer id) lives without being refreshed before every
/// replica drops it: far longer than any node's refresh interval, so only dead nodes' go.
pub const DEFAULT_NODE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// How far ahead of our clock a remote stamp may be before it is refused.
pub const DEFAULT_MAX_SKEW: Duration = Duration::from_secs(60);

/// What a register holds: the record (`None` is a tombstone) and its writer's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    pub record: Option<Arc<PeerRecord>>,
    pub sig: Signature,
}

/// A register of the table: the value and the stamp of the write that set it.
pub type Register = LWWReg<Value, Stamp>;

/// One key's state as it travels between replicas and to disk: the unit of deltas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub key: String,
    pub stamp: Stamp,
    /// `None` marks a removal (a tombstone).
    pub record: Option<Arc<PeerRecord>>,
    /// The writer's (`stamp.node`'s) signature over the entry; see [`super::sign`].
    pub sig: Signature,
}

impl Entry {
    fn register(&self) -> Register {
        LWWReg { val: Value { record: self.record.clone(), sig: self.sig }, marker: self.stamp }
    }

    fn from_register(key: &str, r: &Register) -> Entry {
        Entry { key: key.to_owned(), stamp: r.marker, record: r.val.record.clone(), sig: r.val.sig }
    }

    /// The bytes its writer signed, for this network.
    pub fn message(&self, network_id: &str) -> Vec<u8> {
        entry_message(network_id, &self.key, self.record.as_deref(), &self.stamp)
    }
}

/// Settings of the table.
#[derive(Debug, Clone, Copy)]
pub struct TableConfig {
    pub tombstone_grace: Duration,
    pub max_skew: Duration,
    /// Most keys (records and tombstones) whose newest entry one writer may hold: a member
    /// flooding new keys cannot grow every table and disk without bound.
    pub max_keys_per_writer: usize,
    /// How long a node record lives past its stamp; see [`Table::collect_expired_nodes`].
    pub node_ttl: Duration,
}

/// Generous: a hundred times a large network's node count, and ten times the 100k-record tables
/// the benchmarks load from one writer.
pub const DEFAULT_MAX_KEYS_PER_WRITER: usize = 1_000_000;

impl Default for TableConfig {
    fn default() -> Self {
        TableConfig {
            tombstone_grace: DEFAULT_TOMBSTONE_GRACE,
            max_skew: DEFAULT_MAX_SKEW,
            max_keys_per_writer: DEFAULT_MAX_KEYS_PER_WRITER,
            node_ttl: DEFAULT_NODE_TTL,
        }
    }
}

/// Why a remote entry was not merged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    #[error(transparent)]
    Clock(#[from] ClockError),
    #[error("invalid entry: {0}")]
    Record(#[from] RecordError),
    #[error("the signature does not match the entry and its writer")]
    BadSignature,
    #[error("key {0:?} is a peer id: only that peer may write it")]
    NotOwner(String),
    #[error("its writer already holds the most keys one writer may ({0})")]
    WriterFull(usize),
}

impl MergeError {
    /// Whether the peer that sent the entry is to blame: a full writer is not the relay's fault,
    /// nor is a stamp from the future (the sender may only relay it, and the clock that is off
    /// may be ours: a node running behind would otherwise strike and ban every honest peer).
    pub fn is_senders_fault(&self) -> bool {
        !matches!(self, MergeError::WriterFull(_) | MergeError::Clock(_))
    }
}

/// Counters of what merges did, for status and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TableStats {
    /// Remote entries that changed the table.
    pub merged: u64,
    /// Remote entries older than what we had (or expired tombstones).
    pub stale: u64,
    /// Remote entries stamped too far in the future.
    pub rejected_future: u64,
    /// Remote entries that broke a limit.
    pub rejected_invalid: u64,
    /// Remote entries whose writer had signed another value under the same stamp: resolved the
    /// same way on every replica (the greater signature wins), and a sign of a misbehaving writer.
    pub conflicting_stamps: u64,
    /// Remote entries whose signature did not verify.
    pub rejected_signature: u64,
    /// Remote entries that wrote a peer id's key without being that peer.
    pub rejected_owner: u64,
    /// Remote entries refused because their writer holds `max_keys_per_writer` keys already.
    pub rejected_writer_cap: u64,
    /// Tombstones collected after the grace period.
    pub tombstones_collected: u64,
    /// Node records dropped because their node did not refresh them within the node TTL.
    pub nodes_expired: u64,
}

/// The digest of a table: equal digests mean equal tables (up to hash collisions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    /// XOR of all bucket hashes.
    pub root: u128,
    /// XOR of the hashes of the entries (key, stamp, value, signature) in each bucket.
    pub buckets: Vec<u128>,
}

impl Digest {
    /// Indexes of buckets whose hashes differ from `others` (another replica's bucket hashes).
    pub fn differing_buckets(&self, others: &[u128]) -> Vec<u16> {
        self.buckets
            .iter()
            .zip(others.iter())
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .map(|(i, _)| i as u16)
            .collect()
    }
}

/// Formats a root digest as 32 hex digits, as `message_type 9` reports it.
pub fn digest_hex(root: u128) -> String {
    format!("{root:032x}")
}

/// The bucket a key falls in.
pub fn bucket_of(key: &str) -> u16 {
    (xxh3_64(key.as_bytes()) % BUCKETS as u64) as u16
}

/// An entry's hash in the digest. It covers the value as well as the key and stamp, so equal
/// digests mean equal data: a value damaged on one replica (or a writer that signed two values
/// under one stamp) shows as a differing bucket, and anti-entropy repairs it.
fn entry_hash(key: &str, reg: &Register) -> u128 {
    let mut buf = entry_message("", key, reg.val.record.as_deref(), &reg.marker);
    buf.extend_from_slice(&reg.val.sig.0);
    xxh3_128(&buf)
}

/// Whether `(stamp, sig)` wins over the register `current`: the later stamp, and for one stamp
/// carrying two values (only its writer can sign both) the greater signature, so every replica
/// keeps the same one whatever the order they arrive in.
fn wins(current: &Register, stamp: &Stamp, sig: &Signature) -> bool {
    (stamp, sig) > (&current.marker, &current.val.sig)
}

/// Whether a verified remote entry replaces `current`: it wins, or it is the same write with a
/// different value, which only a damaged copy of ours can be (the signature fits one value).
fn replaces(current: &Register, e: &Entry) -> bool {
    wins(current, &e.stamp, &e.sig)
        || (current.marker == e.stamp && current.val.sig == e.sig && current.val.record != e.record)
}

/// The replica: registers by key, with incrementally maintained bucket hashes.
#[derive(Debug, Clone)]
pub struct Table {
    /// Keys are shared with `members` (one allocation per key).
    entries: HashMap<Arc<str>, Register>,
    /// XOR of entry hashes per bucket, updated on every change so a digest costs nothing.
    buckets: Vec<u128>,
    /// The keys in each bucket, so anti-entropy reads a bucket without scanning the table.
    members: Vec<HashSet<Arc<str>>>,
    /// Number of entries holding a record (not tombstones).
    live: usize,
    /// How many keys' newest entry each writer holds: what its cap counts.
    writer_keys: HashMap<NodeId, usize>,
    max_keys_per_writer: usize,
    hlc: Hlc,
    /// Signs this replica's own writes; its public key is the writer id in their stamps.
    signer: Signer,
    /// Part of every signed message, so an entry of one network means nothing in another.
    network_id: Arc<str>,
    grace_ms: u64,
    node_ttl_ms: u64,
    stats: TableStats,
}

impl Table {
    /// An empty replica that signs its writes with `signer`, for the network `network_id`.
    pub fn new(signer: Signer, network_id: &str, config: TableConfig) -> Self {
        Table {
            entries: HashMap::new(),
            buckets: vec![0; BUCKETS],
            members: vec![HashSet::new(); BUCKETS],
            live: 0,
            writer_keys: HashMap::new(),
            max_keys_per_writer: config.max_keys_per_writer,
            hlc: Hlc::new(signer.node(), config.max_skew),
            signer,
            network_id: Arc::from(network_id),
            grace_ms: config.tombstone_grace.as_millis() as u64,
            node_ttl_ms: config.node_ttl.as_millis() as u64,
            stats: TableStats::default(),
        }
    }

    /// A replica whose writer key is derived from `id`, for tests and simulations.
    #[cfg(any(test, feature = "test-util"))]
    pub fn for_tests(id: u8) -> Table {
        Table::new(Signer::from_secret([id; 32]), "test", TableConfig::default())
    }

    /// Rebuilds a table from stored entries, trusting them (they were validated when written) and
    /// moving the clock past every stored stamp, so a wall clock that went back cannot reorder writes.
    pub fn load(
        signer: Signer,
        network_id: &str,
        config: TableConfig,
        stored: impl IntoIterator<Item = Entry>,
    ) -> Self {
        let mut t = Table::new(signer, network_id, config);
        for e in stored {
            t.load_entry(e);
        }
        t
    }

    /// Adds one stored entry (see [`Table::load`]).
    /// An entry older than the one held is ignored, so stored entries may come in any order.
    pub fn load_entry(&mut self, e: Entry) {
        self.hlc.observe(&e.stamp);
        if self.entries.get(e.key.as_str()).is_some_and(|r| !wins(r, &e.stamp, &e.sig)) {
            return;
        }
        let reg = e.register();
        self.install(e.key, reg);
    }

    /// Takes in entries stored before entries were signed, after every signed one was loaded:
    /// this replica's own are re-signed and kept, others' are dropped (anti-entropy fetches them
    /// again, signed). Returns what the store must rewrite and which keys it must delete: only
    /// entries that are still the newest of their key, so older writes never overwrite newer.
    pub fn adopt_unsigned(&mut self, entries: Vec<Entry>) -> (Vec<Entry>, Vec<String>) {
        let me = self.signer.node();
        let (mine, theirs): (Vec<Entry>, Vec<Entry>) = entries.into_iter().partition(|e| e.stamp.node == me);
        let mut rewrite = Vec::new();
        for e in mine {
            let e = self.resign(e);
            self.load_entry(e.clone());
            rewrite.push(e);
        }
        rewrite.retain(|e| self.entries.get(e.key.as_str()).is_some_and(|r| r.marker == e.stamp));
        let mut dropped: Vec<String> =
            theirs.into_iter().map(|e| e.key).filter(|k| !self.entries.contains_key(k.as_str())).collect();
        dropped.sort();
        dropped.dedup();
        (rewrite, dropped)
    }

    /// The live record under `key` (tombstones read as absent).
    pub fn get(&self, key: &str) -> Option<&Arc<PeerRecord>> {
        self.entries.get(key).and_then(|r| r.val.record.as_ref())
    }

    /// The full entry under `key`, tombstones included.
    pub fn entry(&self, key: &str) -> Option<Entry> {
        self.entries.get(key).map(|r| Entry::from_register(key, r))
    }

    /// Signs an entry of this replica's own (e.g. one stored before entries were signed).
    pub fn resign(&self, mut e: Entry) -> Entry {
        e.sig = self.signer.sign(&e.message(&self.network_id));
        e
    }

    /// Live records.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Entries including tombstones.
    pub fn len_with_tombstones(&self) -> usize {
        self.entries.len()
    }

    pub fn stats(&self) -> TableStats {
        self.stats
    }

    /// Live records, in no particular order.
    pub fn iter_live(&self) -> impl Iterator<Item = (&Arc<str>, &Arc<PeerRecord>)> {
        self.entries.iter().filter_map(|(k, r)| r.val.record.as_ref().map(|v| (k, v)))
    }

    /// Writes a record locally under a fresh stamp; returns the entry to persist and propagate.
    pub fn put(&mut self, key: String, record: PeerRecord, now_ms: u64) -> Entry {
        self.write(key, Some(Arc::new(record)), now_ms)
    }

    /// Removes a live record locally, leaving a tombstone; `None` if there was no live record.
    pub fn remove(&mut self, key: &str, now_ms: u64) -> Option<Entry> {
        self.get(key)?;
        Some(self.write(key.to_owned(), None, now_ms))
    }

    /// A local write: stamped, signed, installed.
    fn write(&mut self, key: String, record: Option<Arc<PeerRecord>>, now_ms: u64) -> Entry {
        let stamp = self.hlc.tick(now_ms);
        let sig = self.signer.sign(&entry_message(&self.network_id, &key, record.as_deref(), &stamp));
        let e = Entry { key, stamp, record, sig };
        self.install(e.key.clone(), e.register());
        e
    }

    /// Merges one remote entry. `Ok(true)` if it changed the table, `Ok(false)` if it was stale.
    pub fn merge(&mut self, entry: Entry, now_ms: u64) -> Result<bool, MergeError> {
        let signed = verify(&entry.stamp.node, &entry.message(&self.network_id), &entry.sig);
        self.merge_with(entry, signed, now_ms)
    }

    fn merge_with(&mut self, entry: Entry, signed: bool, now_ms: u64) -> Result<bool, MergeError> {
        let result = self.validate(&entry, signed, now_ms).map(|()| self.apply(entry, now_ms));
        match &result {
            Ok(true) => self.stats.merged += 1,
            Ok(false) => self.stats.stale += 1,
            Err(e) => self.count(e),
        }
        result
    }

    fn count(&mut self, e: &MergeError) {
        match e {
            MergeError::Clock(_) => self.stats.rejected_future += 1,
            MergeError::BadSignature => self.stats.rejected_signature += 1,
            MergeError::NotOwner(_) => self.stats.rejected_owner += 1,
            MergeError::WriterFull(_) => self.stats.rejected_writer_cap += 1,
            MergeError::Record(_) => self.stats.rejected_invalid += 1,
        }
    }

    /// Checks a remote entry without merging it (counted like a refused merge if it fails).
    pub fn check(&mut self, entry: &Entry, now_ms: u64) -> Result<(), MergeError> {
        let signed = verify(&entry.stamp.node, &entry.message(&self.network_id), &entry.sig);
        let result = self.validate(entry, signed, now_ms);
        if let Err(e) = &result {
            self.count(e);
        }
        result
    }

    /// Which of `entries` carry a valid signature, verified as one batch.
    /// Entries that would not replace what is held (older, or identical) are never applied, so their
    /// signatures are not checked (a joiner syncing with several peers pulls many buckets twice);
    /// they read as valid here and are counted stale when merged.
    fn signatures(&self, entries: &[Entry]) -> Vec<bool> {
        let older = |e: &Entry| self.entries.get(e.key.as_str()).is_some_and(|c| !replaces(c, e));
        let checked: Vec<usize> = (0..entries.len()).filter(|&i| !older(&entries[i])).collect();
        let items: Vec<_> = checked
            .iter()
            .map(|&i| (entries[i].stamp.node, entries[i].message(&self.network_id), entries[i].sig))
            .collect();
        let mut valid = vec![true; entries.len()];
        for (i, ok) in checked.into_iter().zip(verify_all(&items)) {
            valid[i] = ok;
        }
        valid
    }

    fn validate(&self, entry: &Entry, signed: bool, now_ms: u64) -> Result<(), MergeError> {
        validate_key(&entry.key)?;
        if let Some(r) = &entry.record {
            r.validate()?;
        }
        self.hlc.check(&entry.stamp, now_ms)?;
        if owner_of_key(&entry.key).is_some_and(|owner| owner != entry.stamp.node) {
            return Err(MergeError::NotOwner(entry.key.clone()));
        }
        if !signed {
            return Err(MergeError::BadSignature);
        }
        let newer = self.entries.get(entry.key.as_str()).is_none_or(|c| replaces(c, entry));
        if newer && !self.has_room(&entry.stamp.node, &entry.key) {
            return Err(MergeError::WriterFull(self.max_keys_per_writer));
        }
        Ok(())
    }

    /// Whether `writer` may take `key`: it holds it already, or holds fewer keys than its cap.
    pub fn has_room(&self, writer: &NodeId, key: &str) -> bool {
        let holds = self.entries.get(key).is_some_and(|c| c.marker.node == *writer);
        holds || self.writer_keys.get(writer).copied().unwrap_or(0) < self.max_keys_per_writer
    }

    pub fn max_keys_per_writer(&self) -> usize {
        self.max_keys_per_writer
    }

    /// This replica's own writer id.
    pub fn writer(&self) -> NodeId {
        self.signer.node()
    }

    /// The clock that stamps this replica's writes.
    pub fn clock(&self) -> &Hlc {
        &self.hlc
    }

    /// Installs a valid (verified) remote entry if it replaces ours; whether it changed the table.
    fn apply(&mut self, entry: Entry, now_ms: u64) -> bool {
        let expired_tombstone =
            entry.record.is_none() && entry.stamp.millis.saturating_add(self.grace_ms) < now_ms;
        if self.is_expired_node(&entry.key, entry.record.is_some(), &entry.stamp, now_ms) {
            // See `collect_expired_nodes`: never installed. What we hold under the key is older,
            // so expired as well, and goes at our next collection (which also tells the view).
            return false;
        }
        match self.entries.get(entry.key.as_str()) {
            Some(current) if !replaces(current, &entry) => return false,
            Some(current) if current.marker == entry.stamp => self.stats.conflicting_stamps += 1,
            // A tombstone past its grace period for a key we do not hold carries no information.
            None if expired_tombstone => return false,
            _ => {}
        }
        self.hlc.observe(&entry.stamp);
        if expired_tombstone {
            self.uninstall(&entry.key);
        } else {
            let reg = entry.register();
            self.install(entry.key, reg);
        }
        true
    }

    /// Merges many remote entries, their signatures verified as one batch; returns those that
    /// changed the table and the number refused through the sender's fault.
    pub fn merge_all(&mut self, entries: Vec<Entry>, now_ms: u64) -> (Vec<Entry>, usize) {
        let signed = self.signatures(&entries);
        let mut changed = Vec::new();
        let mut refused = 0;
        for (e, ok) in entries.into_iter().zip(signed) {
            let keep = e.clone();
            match self.merge_with(e, ok, now_ms) {
                Ok(true) => changed.push(keep),
                Ok(false) => {}
                Err(e) if e.is_senders_fault() => refused += 1,
                Err(_) => {}
            }
        }
        (changed, refused)
    }

    /// Merges a gossip delta as a whole: if any entry is refused through the sender's fault,
    /// nothing is merged and that refusal is returned (the message is rejected). Entries whose
    /// writer is at its key cap or stamped too far in the future are skipped (counted; nothing
    /// remembers the refusal, so anti-entropy fetches them again later), the others merged;
    /// returns those that changed the table.
    pub fn merge_delta(&mut self, entries: Vec<Entry>, now_ms: u64) -> Result<Vec<Entry>, MergeError> {
        let signed = self.signatures(&entries);
        let mut valid = Vec::with_capacity(entries.len());
        for (e, ok) in entries.iter().zip(&signed) {
            match self.validate(e, *ok, now_ms) {
                Ok(()) => valid.push(true),
                Err(err) if !err.is_senders_fault() => {
                    self.count(&err);
                    valid.push(false);
                }
                Err(err) => {
                    self.count(&err);
                    return Err(err);
                }
            }
        }
        let mut changed = Vec::new();
        for (e, ok) in entries.into_iter().zip(valid) {
            // Checked again as entries go in: the delta's own new keys count towards the cap.
            if !ok || !self.has_room(&e.stamp.node, &e.key) {
                self.stats.rejected_writer_cap += u64::from(ok);
                continue;
            }
            let keep = e.clone();
            if self.apply(e, now_ms) {
                self.stats.merged += 1;
                changed.push(keep);
            } else {
                self.stats.stale += 1;
            }
        }
        Ok(changed)
    }

    /// Sets a register, keeping the bucket hashes and live count in step.
    fn install(&mut self, key: String, reg: Register) {
        let b = bucket_of(&key) as usize;
        let h_new = entry_hash(&key, &reg);
        let live_new = reg.val.record.is_some();
        match self.entries.get_mut(key.as_str()) {
            Some(old) => {
                self.buckets[b] ^= entry_hash(&key, old) ^ h_new;
                self.live = self.live - usize::from(old.val.record.is_some()) + usize::from(live_new);
                let (was, now) = (old.marker.node, reg.marker.node);
                // Callers install only winners (see `wins`), which may share the stamp.
                *old = reg;
                if was != now {
                    self.count_writer(was, false);
                    self.count_writer(now, true);
                }
            }
            None => {
                self.count_writer(reg.marker.node, true);
                self.buckets[b] ^= h_new;
                self.live += usize::from(live_new);
                let key: Arc<str> = Arc::from(key);
                self.members[b].insert(key.clone());
                self.entries.insert(key, reg);
            }
        }
    }

    fn uninstall(&mut self, key: &str) {
        if let Some(old) = self.entries.remove(key) {
            let b = bucket_of(key) as usize;
            self.buckets[b] ^= entry_hash(key, &old);
            self.members[b].remove(key);
            self.live -= usize::from(old.val.record.is_some());
            self.count_writer(old.marker.node, false);
        }
    }

    fn count_writer(&mut self, writer: NodeId, add: bool) {
        let n = self.writer_keys.entry(writer).or_default();
        if add {
            *n += 1;
        } else {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.writer_keys.remove(&writer);
            }
        }
    }

    /// The root digest alone.
    pub fn root(&self) -> u128 {
        self.buckets.iter().fold(0, |acc, b| acc ^ b)
    }

    pub fn digest(&self) -> Digest {
        Digest { root: self.root(), buckets: self.buckets.clone() }
    }

    /// The hash of one bucket.
    pub fn bucket_hash(&self, bucket: u16) -> u128 {
        self.buckets.get(bucket as usize).copied().unwrap_or(0)
    }

    /// All entries (tombstones included) of one bucket; empty for an out-of-range bucket.
    pub fn bucket_entries(&self, bucket: u16) -> impl Iterator<Item = Entry> + '_ {
        self.members
            .get(bucket as usize)
            .into_iter()
            .flatten()
            .filter_map(|k| self.entries.get(k).map(|r| Entry::from_register(k, r)))
    }

    /// Every entry, tombstones included: the full state, for merging into another replica.
    pub fn all_entries(&self) -> Vec<Entry> {
        self.entries.iter().map(|(k, r)| Entry::from_register(k, r)).collect()
    }

    /// Drops tombstones older than the grace period; returns their keys (to delete from disk).
    pub fn collect_tombstones(&mut self, now_ms: u64) -> Vec<String> {
        let cutoff = now_ms.saturating_sub(self.grace_ms);
        let expired: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, r)| r.val.record.is_none() && r.marker.millis < cutoff)
            .map(|(k, _)| k.to_string())
            .collect();
        for k in &expired {
            self.uninstall(k);
        }
        self.stats.tombstones_collected += expired.len() as u64;
        expired
    }

    /// Undoes a local change that could not be made durable: if `key` still holds what that
    /// change wrote (`written`: its stamp, `None` when it removed the key), it is set back to
    /// `previous` (`None`: absent), bypassing last-writer-wins, which would keep the newer stamp.
    /// Returns whether anything changed. Used only to roll back failed commits (read-only mode).
    pub fn restore(&mut self, key: &str, written: Option<Stamp>, previous: Option<Entry>) -> bool {
        if self.entries.get(key).map(|r| r.marker) != written {
            return false;
        }
        self.uninstall(key);
        if let Some(e) = previous {
            let reg = e.register();
            self.install(e.key, reg);
        }
        true
    }
}

mod expiry;
#[cfg(test)]
mod expiry_tests;
#[cfg(test)]
mod tests;
