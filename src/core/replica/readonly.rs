//! Read-only mode (after etcd's and PostgreSQL's `ENOSPC` handling): a failed commit does not stop
//! the node. It stops taking writes, local and remote, keeps serving reads, gossip and
//! anti-entropy answers, and probes the store every few seconds until a commit succeeds again.
//!
//! Nothing acknowledged is lost, nothing unacknowledged is half-applied: the store fails every
//! commit queued after a failed one until a probe succeeds (a clean cut: commits before `s` are
//! durable, `s` and later are not), and the replica, on the first failure `s`, rolls back the
//! in-memory effects of every pending commit from `s` on, newest first, so the table again equals
//! what is on disk.

use std::collections::HashMap;

use serde::Serialize;

use crate::core::sync::SyncResponse;
use crate::core::{Entry, Stamp, Table};

use super::io::{Output, Seq, Timer, Types, Verdict, WriteError};
use super::Replica;

/// By default, a read-only node probes its store this often.
pub const DEFAULT_PROBE_INTERVAL_MS: u64 = 2_000;

/// Why and since when the node is read-only (shown in status).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReadOnly {
    /// Wall-clock time it became read-only, microseconds since the Unix epoch.
    pub since_us: i64,
    /// The store's error that put it there.
    pub reason: String,
}

/// How to take back one key's change if its commit fails.
#[derive(Debug, Clone)]
pub(super) struct Undo {
    key: String,
    /// The stamp the change left under the key (`None`: it left the key absent).
    written: Option<Stamp>,
    /// What the key held before (`None`: absent).
    previous: Option<Entry>,
}

/// What `table` holds under each of `keys`, taken before a change, for [`undo_of`].
pub(super) fn before<'a>(
    table: &Table,
    keys: impl IntoIterator<Item = &'a str>,
) -> HashMap<String, Option<Entry>> {
    keys.into_iter().map(|k| (k.to_owned(), table.entry(k))).collect()
}

/// The undo of a change just made to `table`: one per key in `changed`.
pub(super) fn undo_of(
    table: &Table,
    mut before: HashMap<String, Option<Entry>>,
    changed: &[Entry],
) -> Vec<Undo> {
    changed
        .iter()
        .filter_map(|e| {
            let previous = before.remove(&e.key)?;
            Some(Undo { key: e.key.clone(), written: table.entry(&e.key).map(|c| c.stamp), previous })
        })
        .collect()
}

impl<T: Types> Replica<T> {
    /// Makes entries about to be sent to a peer (an anti-entropy answer or push) show only what
    /// is durable here: a key whose change is still being committed goes as it was before that
    /// change, or not at all if it was absent. Otherwise a commit that then fails would already
    /// have spread a write whose client is told it failed, and anti-entropy would bring it back.
    pub(super) fn durable_only(&self, entries: &mut Vec<Entry>) {
        if self.pending.is_empty() {
            return;
        }
        let mut seqs: Vec<Seq> = self.pending.keys().copied().collect();
        seqs.sort_unstable();
        // The oldest pending change of a key knows its durable value.
        let mut durable: HashMap<&str, Option<&Entry>> = HashMap::new();
        for seq in &seqs {
            for undo in &self.pending[seq].undo {
                durable.entry(undo.key.as_str()).or_insert(undo.previous.as_ref());
            }
        }
        entries.retain_mut(|e| match durable.get(e.key.as_str()) {
            None => true,
            Some(Some(before)) => {
                *e = (*before).clone();
                true
            }
            Some(None) => false,
        });
    }

    /// Whether the node is read-only, and why.
    pub fn read_only(&self) -> Option<&ReadOnly> {
        self.read_only.as_ref()
    }

    /// Commit `seq` failed: the node becomes read-only and every pending commit from `seq` on is
    /// rolled back (the store fails all of them too, see the module doc).
    pub(super) fn commit_failed(&mut self, seq: Seq, error: String, now_us: i64) {
        if !self.pending.contains_key(&seq) {
            // Rolled back already, when an earlier commit failed.
            return;
        }
        self.enter_read_only(&error, now_us);
        let mut failed: Vec<Seq> = self.pending.keys().copied().filter(|&s| s >= seq).collect();
        failed.sort_unstable_by(|a, b| b.cmp(a));
        let mut restored = 0;
        for s in failed {
            let done = self.pending.remove(&s).expect("listed from pending");
            self.stats.commits_failed += 1;
            for undo in done.undo.into_iter().rev() {
                let Undo { key, written, previous } = undo;
                let record = previous.as_ref().and_then(|e| e.record.clone());
                if self.table.restore(&key, written, previous) {
                    restored += 1;
                    self.out.push(Output::Applied { key, record });
                }
            }
            if let Some(to) = done.reply {
                self.out.push(Output::Reply { to, result: Err(WriteError::NotDurable(error.clone())) });
            }
            // Not durable here, so not forwarded; not the sender's fault, so no strike.
            if let Some(id) = done.gossip {
                self.out.push(Output::GossipVerdict { id, verdict: Verdict::Ignore });
            }
        }
        self.stats.keys_rolled_back += restored;
    }

    fn enter_read_only(&mut self, error: &str, now_us: i64) {
        if self.read_only.is_some() {
            return;
        }
        tracing::warn!(
            reason = %error,
            "a commit failed: the node is read-only (reads still work, writes are refused) until a \
             probe commit succeeds; free disk space if it is full"
        );
        self.read_only = Some(ReadOnly { since_us: now_us, reason: error.to_owned() });
        self.stats.read_only_entered += 1;
        // A running session would merge what it pulls: end them all (late answers are stale).
        self.sessions.clear();
        self.schedule(self.config.probe_interval_ms, Timer::Probe);
    }

    /// The refusal a local write gets while read-only.
    pub(super) fn refuse_write(&mut self, reply: T::Reply) {
        let reason = self.read_only.as_ref().map(|r| r.reason.clone()).unwrap_or_default();
        self.stats.writes_refused_read_only += 1;
        self.out.push(Output::Reply { to: reply, result: Err(WriteError::ReadOnly(reason)) });
    }

    /// Gossip while read-only: not merged, not forwarded, no strike; anti-entropy brings it in
    /// once the node takes writes again.
    pub(super) fn ignore_gossip(&mut self, id: T::Gossip) {
        self.stats.gossip_ignored_read_only += 1;
        self.out.push(Output::GossipVerdict { id, verdict: Verdict::Ignore });
    }

    /// A push while read-only: refused, which the pusher does not hold against us.
    pub(super) fn refuse_push(&mut self, to: T::Responder) {
        self.stats.pushes_refused_read_only += 1;
        let reason = "read-only: this node cannot store writes now; try later".to_owned();
        self.respond(to, SyncResponse::Refused { reason });
    }

    pub(super) fn probe_timer(&mut self) {
        if self.read_only.is_some() {
            self.out.push(Output::Probe);
        }
    }

    pub(super) fn probe_failed(&mut self, error: String) {
        if self.read_only.is_some() {
            self.stats.probes_failed += 1;
            tracing::debug!(%error, "probe commit failed; still read-only");
            self.schedule(self.config.probe_interval_ms, Timer::Probe);
        }
    }

    /// The store commits again: take writes, refresh the own record (refreshes were skipped),
    /// and catch up on what was refused through anti-entropy.
    pub(super) fn probe_ok(&mut self, now_us: i64) {
        let Some(was) = self.read_only.take() else { return };
        let secs = (now_us - was.since_us).max(0) as f64 / 1e6;
        tracing::info!(read_only_for_s = secs, "a probe commit succeeded: the node takes writes again");
        self.write_own_record(now_us);
        let peers: Vec<T::Peer> = self.connected.iter().copied().collect();
        for peer in peers {
            self.start_sync(peer);
        }
    }
}
