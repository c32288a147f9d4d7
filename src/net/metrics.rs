//! libp2p's own metrics for `/metrics`: connections, gossipsub, Kademlia, identify, ping, hole
//! punches (DCUtR) and the relay server, as `libp2p-metrics` records them from the swarm's events.

use libp2p::metrics::{Metrics, Recorder};
use libp2p::swarm::SwarmEvent;
use prometheus_client::registry::Registry;

use super::behaviour::BehaviourEvent;

/// Records every swarm event (and the protocol events inside it) into the registry it was made
/// with, under the `libp2p_` prefix.
pub(super) struct SwarmMetrics(Metrics);

impl SwarmMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        SwarmMetrics(Metrics::new(registry))
    }

    pub fn record(&self, event: &SwarmEvent<BehaviourEvent>) {
        self.0.record(event);
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(e)) => self.0.record(e),
            SwarmEvent::Behaviour(BehaviourEvent::Kad(e)) => self.0.record(e),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(e)) => self.0.record(e),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(e)) => self.0.record(e),
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(e)) => self.0.record(e),
            SwarmEvent::Behaviour(BehaviourEvent::Relay(e)) => self.0.record(e),
            _ => {}
        }
    }
}
