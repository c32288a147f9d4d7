//! Replication, on the node task: gossip push (batched deltas, validated on receipt) and
//! anti-entropy pull (sessions of the pure protocol in `core::sync`), plus strikes and bans for
//! peers that send garbage.

use std::time::Duration;

use tokio::time::Instant;

use crate::core::delta::{batch_deltas, decode_delta};
use crate::core::sync::{respond, Session, Step, SyncResponse};
use crate::core::{now_millis, Entry};
use crate::net::{GossipId, NetEvent, PeerId, Verdict};

use super::actor::{Actor, Origin};

/// Local writes are collected this long before they are published as one delta.
const GOSSIP_BATCH_DELAY: Duration = Duration::from_millis(2);
/// At most this many anti-entropy sessions run at once (each is a few round trips).
const MAX_SYNC_SESSIONS: usize = 8;
/// A repair this small is also gossiped, so a healed partition spreads at gossip speed; larger
/// repairs (a join) are left to each node's own anti-entropy rather than flooding the mesh.
pub(super) const MAX_REGOSSIP_ENTRIES: usize = 256;
/// Bad messages tolerated from one peer before it is banned.
const MAX_STRIKES: u32 = 16;
/// How long a ban lasts.
const BAN_DURATION: Duration = Duration::from_secs(600);

impl Actor {
    pub(super) async fn on_net_event(&mut self, event: NetEvent) {
        match event {
            NetEvent::PeerConnected(peer) => {
                tracing::debug!(%peer, "connected");
                self.start_sync(peer);
            }
            NetEvent::PeerDisconnected(peer) => {
                tracing::debug!(%peer, "disconnected");
                self.sessions.remove(&peer);
                // Strikes are kept only for connected (or banned) peers, so the map stays bounded.
                if !self.bans.contains_key(&peer) {
                    self.strikes.remove(&peer);
                }
            }
            NetEvent::Gossip { from, id, data } => self.on_gossip(from, id, &data).await,
            NetEvent::MalformedSyncRequest { peer, reason, responder } => {
                tracing::debug!(%peer, %reason, "refused an unreadable sync request");
                self.sync_stats.requests_refused += 1;
                self.net.respond_sync(responder, SyncResponse::Refused { reason });
                self.strike(peer);
            }
            NetEvent::SyncRequest { peer, request, responder } => {
                match respond(&mut self.table, request, now_millis()) {
                    Ok((response, changed, refused)) => {
                        self.net.respond_sync(responder, response);
                        self.repaired(changed).await;
                        if refused > 0 {
                            self.strike(peer);
                        }
                    }
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "refused a sync request");
                        self.sync_stats.requests_refused += 1;
                        self.net.respond_sync(responder, SyncResponse::Refused { reason: e.to_string() });
                        self.strike(peer);
                    }
                }
            }
            NetEvent::SyncResponse { peer, response } => {
                let Some(mut session) = self.sessions.remove(&peer) else { return };
                match session.on_response(&mut self.table, response, now_millis()) {
                    Ok((step, changed, refused)) => {
                        self.repaired(changed).await;
                        if refused > 0 {
                            self.strike(peer);
                        }
                        match step {
                            Step::Send(request) => {
                                self.net.request_sync(&peer, request);
                                self.sessions.insert(peer, session);
                            }
                            Step::Done => {
                                self.sync_stats.sessions_completed += 1;
                                if session.stats.differing_buckets > 0 {
                                    tracing::debug!(%peer, stats = ?session.stats, "anti-entropy repaired");
                                }
                            }
                        }
                    }
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "sync session failed");
                        self.sync_stats.sessions_failed += 1;
                        self.strike(peer);
                    }
                }
            }
            NetEvent::SyncFailed { peer, error } => {
                if self.sessions.remove(&peer).is_some() {
                    tracing::debug!(%peer, %error, "sync request failed");
                    self.sync_stats.sessions_failed += 1;
                }
            }
            NetEvent::ListenAddrsChanged => self.write_own_record().await,
        }
    }

    /// Judges a gossip message as a whole: every entry must be valid before any is merged.
    async fn on_gossip(&mut self, from: PeerId, id: GossipId, data: &[u8]) {
        let entries = match decode_delta(data) {
            Ok(entries) => entries,
            Err(e) => {
                tracing::debug!(%from, error = %e, "rejected a gossip message");
                self.net.report_gossip(id, Verdict::Reject);
                self.strike(from);
                return;
            }
        };
        let now = now_millis();
        for e in &entries {
            if let Err(err) = self.table.check(e, now) {
                tracing::debug!(%from, key = %e.key, error = %err, "rejected a gossip message");
                self.net.report_gossip(id, Verdict::Reject);
                self.strike(from);
                return;
            }
        }
        let (changed, _) = self.table.merge_all(entries, now);
        if changed.is_empty() {
            self.net.report_gossip(id, Verdict::Ignore);
        } else {
            // Forwarded (Accept) once durable, in `on_durable`.
            self.persist(changed, Origin::Gossip(id), |_| {}).await;
        }
    }

    /// Persists entries that anti-entropy changed.
    async fn repaired(&mut self, changed: Vec<Entry>) {
        self.sync_stats.entries_repaired += changed.len() as u64;
        self.persist(changed, Origin::Repair, |_| {}).await;
    }

    /// Adds durable entries to the next delta; the first one arms the batch timer.
    pub(super) fn queue_gossip(&mut self, entries: Vec<Entry>) {
        if entries.is_empty() {
            return;
        }
        self.outbox.extend(entries);
        if self.flush_at.is_none() {
            self.flush_at = Some(Instant::now() + GOSSIP_BATCH_DELAY);
        }
    }

    pub(super) fn flush_outbox(&mut self) {
        self.flush_at = None;
        for delta in batch_deltas(std::mem::take(&mut self.outbox)) {
            self.net.publish(delta);
        }
    }

    pub(super) fn start_sync(&mut self, peer: PeerId) {
        if self.sessions.len() >= MAX_SYNC_SESSIONS
            || self.sessions.contains_key(&peer)
            || self.bans.contains_key(&peer)
        {
            return;
        }
        let (session, request) = Session::start(&self.table, rand::random());
        self.sessions.insert(peer, session);
        self.net.request_sync(&peer, request);
    }

    pub(super) fn sync_with_random_peer(&mut self) {
        if let Some(peer) = self.net.random_connected_peer() {
            self.start_sync(peer);
        }
    }

    /// Connectivity upkeep, and lifting bans that ran out.
    pub(super) fn maintain(&mut self) {
        let now = Instant::now();
        let expired: Vec<PeerId> =
            self.bans.iter().filter(|(_, until)| **until <= now).map(|(p, _)| *p).collect();
        for peer in expired {
            self.bans.remove(&peer);
            self.strikes.remove(&peer);
            self.net.unblock(peer);
        }
        self.net.maintain();
    }

    /// Counts a bad message from a peer; too many and the peer is banned for a while.
    fn strike(&mut self, peer: PeerId) {
        let strikes = self.strikes.entry(peer).or_default();
        *strikes += 1;
        if *strikes >= MAX_STRIKES && !self.bans.contains_key(&peer) {
            tracing::warn!(%peer, "banning a peer that keeps sending bad messages");
            self.sync_stats.peers_banned += 1;
            self.bans.insert(peer, Instant::now() + BAN_DURATION);
            self.sessions.remove(&peer);
            self.net.block(peer);
        }
    }
}
