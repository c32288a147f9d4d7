//! Bounded connections: above the high watermark, the node parts from its least useful
//! connections (see `connmgr`). What a connection is needed for, and so kept whatever the count:
//! - the gossipsub mesh (writes travel over it);
//! - a request of ours in flight (an anti-entropy round, a liveness probe);
//! - reachability (the relays holding our slots, relayed connections, circuits we relay);
//! - one peer per Kademlia bucket, so that routing keeps a live contact at every distance.

use std::collections::HashSet;
use std::time::Instant;

use libp2p::PeerId;

use super::super::probe::ProbeWire;
use super::Network;

impl Network {
    /// Parts from the connections above the high watermark: each peer is told first (a probe
    /// protocol notice), and its connections close when it answers or fails to.
    pub(super) fn trim(&mut self, now: Instant) {
        if self.conns.open() <= self.conns.marks().high {
            return;
        }
        let protected = self.needed_peers();
        for peer in self.conns.trim(&protected, now) {
            tracing::debug!(%peer, "parting from a peer above the connection high watermark");
            self.stats.peers_trimmed += 1;
            let id = self.swarm.behaviour_mut().probe.send_request(&peer, ProbeWire::Parting);
            self.probes.parting_sent(id, peer);
        }
    }

    fn needed_peers(&mut self) -> HashSet<PeerId> {
        let mut needed: HashSet<PeerId> =
            self.swarm.behaviour().gossipsub.all_mesh_peers().copied().collect();
        needed.extend(self.outbound.values().map(|(_, peer)| *peer));
        needed.extend(self.probes.awaited().copied());
        needed.extend(self.reach.needed_peers());
        let members: HashSet<PeerId> = self.admission.members().copied().collect();
        for bucket in self.swarm.behaviour_mut().kad.kbuckets() {
            if let Some(peer) =
                bucket.iter().map(|e| *e.node.key.preimage()).filter(|p| members.contains(p)).min()
            {
                needed.insert(peer);
            }
        }
        needed
    }
}
