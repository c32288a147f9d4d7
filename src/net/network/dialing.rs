//! Keeping the node connected: re-dialling the bootstrap peers, dialling the stored table's peers
//! when cut off, and dialling known peers while below the target.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use libp2p::swarm::dial_opts::DialOpts;
use libp2p::{kad, Multiaddr, PeerId};

use super::super::addr::peer_of;
use super::{Network, REDIAL_BACKOFF};

/// Most new dials per maintenance round, so a large routing table cannot flood the node.
const MAX_DIALS_PER_ROUND: usize = 8;
/// Least time between two walks of the maintenance round while the table holds fewer peers
/// than the target. In a network larger than the target that is rare (a table holds dozens);
/// in a smaller one it is always so, but then a walk asks only peers already connected and
/// opens no connection. Frequent, because a walk is how a node learns the relay addresses of
/// peers behind NATs and of peers that joined after it.
const WALK_BACKOFF: Duration = Duration::from_secs(2);
/// A random walk at least this often, to refresh the routing table. A walk asks a few dozen
/// peers, each answering with up to 20 peers and their addresses (~5.7 KB/s per node at N=20
/// at the former 60 s, half the idle traffic then), and with bounded connections each peer asked
/// is a connection opened; the table's node records and identify keep the table fresh between.
const KAD_WALK_INTERVAL: Duration = Duration::from_secs(600);

impl Network {
    /// Keeps the node connected: re-dials the bootstrap peers when none of them is connected (a
    /// healed partition re-merges by itself) and dials known peers while below the target; and
    /// parts from the excess above the high watermark (see `trimming`).
    /// `members`: node records of the table not connected, with their addresses (dialled like
    /// the routing table's peers while below the target).
    pub fn maintain(&mut self, members: Vec<(PeerId, Vec<Multiaddr>)>) {
        let now = Instant::now();
        for peer in self.admission.overdue(now) {
            tracing::info!(%peer, "closing a connection that never identified itself");
            self.stranger(peer);
            let _ = self.swarm.disconnect_peer_id(peer);
        }
        for peer in self.admission.due_to_close(now) {
            let _ = self.swarm.disconnect_peer_id(peer);
        }
        self.cut_bootstraps();
        self.trim(now);
        // Only members count toward the target: strangers must not crowd real peers out.
        let connected: HashSet<PeerId> = self.admission.members().copied().collect();
        let bootstrap_connected =
            self.bootstrap_peers.values().any(|p| connected.contains(p)) || self.config.bootstrap.is_empty();
        if connected.is_empty() || !bootstrap_connected {
            self.dial_bootstrap();
        }
        if connected.is_empty() {
            self.dial_rejoin();
        }
        self.reach.maintain(&mut self.swarm);
        let known = if connected.len() < self.config.target_peers {
            self.dial_known(&connected, members, now)
        } else {
            usize::MAX
        };
        // Look further when the table holds too few peers to reach the target (not when the
        // ones it holds are connected, parted from or just dialled): a random walk finds peers
        // it does not hold yet, at the price of dialling a few (see WALK_BACKOFF); and every
        // KAD_WALK_INTERVAL anyway, so the table learns of new nodes.
        let since_walk = self.last_walk.map(|t| now.duration_since(t));
        let wanted = known < self.config.target_peers && since_walk.is_none_or(|d| d >= WALK_BACKOFF);
        let routine = since_walk.is_none_or(|d| d >= KAD_WALK_INTERVAL);
        if (wanted || routine) && !connected.is_empty() {
            self.walk(PeerId::random());
        }
    }

    /// Dials peers of the routing table, then members of the table (not connected, strangers,
    /// parted from, or dialled just now) while
    /// below the target; returns how many peers the table holds besides strangers, connected
    /// ones included: whether a walk could find more.
    fn dial_known(
        &mut self,
        connected: &HashSet<PeerId>,
        members: Vec<(PeerId, Vec<Multiaddr>)>,
        now: Instant,
    ) -> usize {
        let mut candidates: Vec<(PeerId, Vec<Multiaddr>)> = Vec::new();
        for bucket in self.swarm.behaviour_mut().kad.kbuckets() {
            for entry in bucket.iter() {
                let peer = *entry.node.key.preimage();
                if !connected.contains(&peer) && !self.admission.is_stranger(&peer, now) {
                    candidates.push((peer, entry.node.value.iter().cloned().collect()));
                }
            }
        }
        let known = connected.len() + candidates.len();
        // Then the table's members the routing table does not hold (Kademlia clients: nodes
        // behind NATs, reachable through the relay circuits their records list).
        for (peer, addrs) in members {
            let listed = candidates.iter().any(|(p, _)| *p == peer);
            if !addrs.is_empty()
                && !connected.contains(&peer)
                && !listed
                && !self.admission.is_stranger(&peer, now)
            {
                candidates.push((peer, addrs));
            }
        }
        candidates.retain(|(peer, _)| !self.conns.recently_parted(peer, now));
        // A connection still being identified is not dialled twice.
        candidates.retain(|(peer, _)| !self.swarm.is_connected(peer));
        self.last_dial.retain(|_, t| now.duration_since(*t) < REDIAL_BACKOFF);
        let mut dials = 0;
        for (peer, addrs) in candidates {
            if dials >= MAX_DIALS_PER_ROUND || connected.len() + dials >= self.config.target_peers {
                break;
            }
            if self.is_blocked(&peer) || self.last_dial.contains_key(&peer) {
                continue;
            }
            self.dial_peer(peer, addrs);
            dials += 1;
        }
        known
    }

    /// Finishes Kademlia's own bootstrap queries. Kademlia starts them by itself (after a new
    /// peer enters a routing table of fewer than 20, a setting it does not expose, and, as
    /// measured, often enough at N=100 with tables of ~60: 77 in 95 s): a walk towards our own
    /// id, then one towards every bucket, each asking a few dozen peers. With bounded
    /// connections every peer asked is a connection opened and soon trimmed: in those 95 s they
    /// opened 908 of the 1,299 connections the idle cluster dialled. The node's own walks
    /// (`Network::walk`: on first meeting a bootstrap peer, while the table lacks peers, and
    /// every `KAD_WALK_INTERVAL`) are `GetClosestPeers` queries and are not touched.
    fn cut_bootstraps(&mut self) {
        for mut query in self.swarm.behaviour_mut().kad.iter_queries_mut() {
            if matches!(query.info(), kad::QueryInfo::Bootstrap { .. }) {
                query.finish();
            }
        }
    }

    pub(super) fn dial_peer(&mut self, peer: PeerId, addrs: Vec<Multiaddr>) {
        self.last_dial.insert(peer, Instant::now());
        self.stats.dials += 1;
        let opts = DialOpts::peer_id(peer).addresses(addrs).build();
        if let Err(e) = self.swarm.dial(opts) {
            tracing::debug!(%peer, error = %e, "dial failed");
        }
    }

    /// Dials the stored table's peers (not the connected, blocked or recently dialled ones).
    pub(super) fn dial_rejoin(&mut self) {
        let now = Instant::now();
        for (peer, addrs) in self.rejoin.clone() {
            let recent = self.last_dial.get(&peer).is_some_and(|t| now.duration_since(*t) < REDIAL_BACKOFF);
            if recent
                || self.swarm.is_connected(&peer)
                || self.is_blocked(&peer)
                || self.admission.is_stranger(&peer, now)
            {
                continue;
            }
            tracing::debug!(%peer, "dialling a peer of the stored table");
            self.dial_peer(peer, addrs);
        }
    }

    pub(super) fn dial_bootstrap(&mut self) {
        let now = Instant::now();
        for addr in self.config.bootstrap.clone() {
            let peer = peer_of(&addr).or_else(|| self.bootstrap_peers.get(&addr).copied());
            if let Some(peer) = peer {
                // A bootstrap peer we parted from (one that trims its many inbound connections,
                // above all) is not dialled again at once: the other peers keep us connected.
                if peer == self.local_peer_id()
                    || self.swarm.is_connected(&peer)
                    || self.is_blocked(&peer)
                    || self.admission.is_stranger(&peer, now)
                    || self.conns.recently_parted(&peer, now)
                {
                    continue;
                }
            }
            self.stats.dials += 1;
            if let Err(e) = self.swarm.dial(addr.clone()) {
                tracing::debug!(%addr, error = %e, "bootstrap dial failed");
            }
        }
    }
}
