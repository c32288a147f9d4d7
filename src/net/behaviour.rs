//! The libp2p behaviour of a udht node, and the swarm built around the node's identity.

use std::sync::Arc;
use std::time::Duration;

use either::Either;
use libp2p::core::transport::OptionalTransport;
use libp2p::core::upgrade::Version;
use libp2p::core::Transport as _;
use libp2p::gossipsub::{
    self, IdentTopic, MessageAuthenticity, PeerScoreParams, PeerScoreThresholds, TopicScoreParams,
    ValidationMode,
};
use libp2p::identity::Keypair;
use libp2p::kad::{self, store::MemoryStore};
use libp2p::pnet::PnetConfig;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    allow_block_list, autonat, connection_limits, dcutr, identify, noise, ping, quic, relay, tcp, upnp,
    yamux, StreamProtocol, Swarm, SwarmBuilder,
};
use xxhash_rust::xxh3::xxh3_128;

use super::addr::NetError;
use super::candidates::Candidates;
use super::codec::{SyncBytes, SyncCodec};
use super::config::{NetConfig, Psk};
use super::direct_only::DirectOnly;
use super::probe::{ProbeBehaviour, ProbeCodec};
use crate::core::delta::MAX_DELTA_BYTES;

/// Connections stay open this long without traffic: long, since gossip needs standing
/// connections and re-dialling costs a handshake.
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(3600);
/// Gossipsub heartbeat: mesh upkeep and lazy gossip. Faster than the default 1 s, as meshes are
/// small; a heartbeat sends nothing unless the mesh changes or a message is to be announced.
const HEARTBEAT: Duration = Duration::from_millis(500);
/// First heartbeat soon after start (default 5 s), so a new node joins the mesh quickly.
const HEARTBEAT_INITIAL_DELAY: Duration = Duration::from_millis(100);
/// Mesh sizes. Every node forwards each message to its mesh peers but the one it came from, so a
/// write costs each node about MESH_N - 1 copies of a few hundred bytes, whatever N is (the
/// libp2p default of 6 cost 5; measured in the simulator's idle scenario). 3 (2 copies) cost
/// 1,257 bytes per write per node at N=50 against 1,664 with 4, and took spread p99 from 35 to
/// 59 ms (a hop more): a mesh of 3 is still connected (a node below MESH_N_LOW grafts at the
/// next heartbeat), IHAVE heals a hole within a heartbeat, and anti-entropy repairs what a lost
/// copy misses. Checked: outbound_min <= low <= n <= high, 2 × outbound_min <= n.
const MESH_N: usize = 3;
const MESH_N_LOW: usize = 2;
const MESH_N_HIGH: usize = 6;
const MESH_OUTBOUND_MIN: usize = 1;
/// Lazy gossip (IHAVE): to how many peers outside the mesh each heartbeat announces the ids of
/// messages seen, and for how many heartbeats an id is announced. An IHAVE is a packet of its
/// own (~170 bytes on the wire with headers), and the defaults (6 peers, or a quarter of all
/// peers when more, for 3 heartbeats) made announcements cost more than the messages. One
/// announcement to GOSSIP_LAZY peers still heals a mesh hole within a heartbeat; anti-entropy
/// heals the rest. No factor of the peer count: the cost must not grow with the connections.
const GOSSIP_LAZY: usize = 1;
const HISTORY_GOSSIP: usize = 1;
const GOSSIP_FACTOR: f64 = 0.0;
/// Anti-entropy requests that take longer than this fail, and the session is dropped.
const SYNC_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Concurrent anti-entropy streams per connection.
const SYNC_MAX_STREAMS: usize = 4;
/// Connection limits: bounded file descriptors and memory whatever peers do.
const MAX_ESTABLISHED_INCOMING: u32 = 256;
const MAX_PENDING_INCOMING: u32 = 64;
/// A relayed connection, the direct one a hole punch makes beside it, and AutoNAT dial-backs both
/// ways (a node tests all its candidates at once, each with a dial-back on a new connection; one
/// refused by this limit would count as "not reachable" for good).
const MAX_ESTABLISHED_PER_PEER: u32 = 8;
/// Pings find dead connections (a cut cable, a paused container): a connection whose pings fail
/// is closed (see `Network::handle`), so the node notices and re-dials, and the liveness view
/// stops counting the connection as proof of life. Every connection pays for them (~140 B/s per
/// connection at the former 2 s, measured), so not more often than the liveness bounds need: a
/// paused peer's connection closes within interval + timeout = 7 s, and its probes then suspect
/// it within the 10 s the liveness tests allow.
const PING_INTERVAL: Duration = Duration::from_secs(4);
const PING_TIMEOUT: Duration = Duration::from_secs(3);
const KAD_QUERY_TIMEOUT: Duration = Duration::from_secs(30);
/// A liveness probe unanswered for this long fails (the state machine has its own, shorter
/// deadlines; this one frees the stream).
const PROBE_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Concurrent probe streams per connection: a probe round uses one or two.
const PROBE_MAX_STREAMS: usize = 8;
/// How often AutoNAT asks a peer to dial one untested candidate address back (default 5 s): a
/// node should know within seconds whether it is reachable.
const AUTONAT_PROBE_INTERVAL: Duration = Duration::from_secs(2);

/// The anti-entropy protocol's request-response behaviour.
pub type SyncBehaviour = request_response::Behaviour<SyncCodec>;

#[derive(NetworkBehaviour)]
pub struct Behaviour {
    pub blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    pub limits: connection_limits::Behaviour,
    pub gossipsub: gossipsub::Behaviour,
    pub kad: kad::Behaviour<MemoryStore>,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub sync: SyncBehaviour,
    pub probe: ProbeBehaviour,
    /// Reachability (see `reach`): which addresses others can dial, relays, hole punching.
    pub candidates: Candidates,
    pub autonat_client: DirectOnly<autonat::v2::client::Behaviour>,
    pub autonat_server: DirectOnly<autonat::v2::server::Behaviour>,
    pub relay: relay::Behaviour,
    pub relay_client: relay::client::Behaviour,
    pub dcutr: dcutr::Behaviour,
    pub upnp: Toggle<upnp::tokio::Behaviour>,
}

/// Protocol names, all carrying the network id so separate networks never merge.
pub struct Protocols {
    pub kad: StreamProtocol,
    pub sync: StreamProtocol,
    pub probe: StreamProtocol,
    pub identify: String,
    pub topic: IdentTopic,
}

impl Protocols {
    pub fn new(network_id: &str) -> Result<Self, NetError> {
        let proto = |name: &str, version: &str| {
            StreamProtocol::try_from_owned(format!("/{network_id}/{name}/{version}"))
                .map_err(|e| NetError::Config(format!("network id {network_id:?}: {e}")))
        };
        // Sync 2 and topic 2 carry signed entries: a node of the unsigned version neither answers
        // nor hears a signed one (its requests fail as unsupported), so nothing unsigned merges.
        // Sync 3 adds the responder's clock to every answer (clock offset estimation). Topic 3
        // carries anonymous messages (no gossipsub signature): a node of topic 2 rejects them.
        Ok(Protocols {
            kad: proto("kad", "1.0.0")?,
            sync: proto("sync", "3.0.0")?,
            probe: proto("probe", "1.0.0")?,
            identify: format!("/{network_id}/id/1.0.0"),
            topic: IdentTopic::new(format!("{network_id}/peers/3")),
        })
    }
}

/// Peer scoring: invalid messages cost a lot, nothing else is penalised (quiet networks deliver
/// few messages, so delivery-rate penalties would punish honest peers).
fn score_params(topic: &IdentTopic) -> PeerScoreParams {
    let topic_params = TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 100.0,
        first_message_deliveries_weight: 0.5,
        first_message_deliveries_decay: 0.9,
        first_message_deliveries_cap: 20.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: -10.0,
        invalid_message_deliveries_decay: 0.9,
        ..TopicScoreParams::default()
    };
    let mut params = PeerScoreParams {
        // Nodes on one host or one docker network share an IP: that is not an attack here.
        ip_colocation_factor_weight: 0.0,
        ..PeerScoreParams::default()
    };
    params.topics.insert(topic.hash(), topic_params);
    params
}

fn gossipsub(protocols: &Protocols) -> Result<gossipsub::Behaviour, NetError> {
    let config = gossipsub::ConfigBuilder::default()
        .heartbeat_interval(HEARTBEAT)
        .heartbeat_initial_delay(HEARTBEAT_INITIAL_DELAY)
        .mesh_n(MESH_N)
        .mesh_n_low(MESH_N_LOW)
        .mesh_n_high(MESH_N_HIGH)
        .mesh_outbound_min(MESH_OUTBOUND_MIN)
        .gossip_lazy(GOSSIP_LAZY)
        .history_gossip(HISTORY_GOSSIP)
        .gossip_factor(GOSSIP_FACTOR)
        // A write goes to the mesh only, not to every connected peer: flooding cost each node
        // one more copy per write per connection of the writer, for a hop less of latency.
        .flood_publish(false)
        .max_transmit_size(MAX_DELTA_BYTES + 4096)
        // Unsigned, without author or sequence number (~120 bytes less per copy): every entry of
        // a delta is signed by its writer and checked before it merges (see `core::sign`), and
        // message ids are content hashes, so the envelope's signature proved nothing more.
        .validation_mode(ValidationMode::Anonymous)
        .validate_messages()
        // Content-addressed ids: the same delta from two paths is one message. Deltas carry stamps,
        // so two different writes never share an id.
        .message_id_fn(|m: &gossipsub::Message| {
            gossipsub::MessageId::from(xxh3_128(&m.data).to_be_bytes().to_vec())
        })
        .build()
        .map_err(|e| NetError::Config(format!("gossipsub: {e}")))?;
    let mut behaviour = gossipsub::Behaviour::new(MessageAuthenticity::Anonymous, config)
        .map_err(|e| NetError::Config(format!("gossipsub: {e}")))?;
    behaviour
        .with_peer_score(score_params(&protocols.topic), PeerScoreThresholds::default())
        .map_err(|e| NetError::Config(format!("gossipsub scoring: {e}")))?;
    behaviour.subscribe(&protocols.topic).map_err(|e| NetError::Config(format!("gossipsub: {e}")))?;
    Ok(behaviour)
}

/// Builds the swarm: TCP + noise + yamux, QUIC (not in a private network: pnet only covers TCP),
/// circuit relay v2 (client transport), and DNS for `/dns4/...` bootstrap addresses.
pub fn build_swarm(
    key: Keypair,
    config: &NetConfig,
    protocols: &Protocols,
    sync_bytes: Arc<SyncBytes>,
) -> Result<Swarm<Behaviour>, NetError> {
    let hide_listen_addrs = !config.announce.is_empty();
    let psk = config.psk.clone();
    let quic_on = config.psk.is_none();
    let swarm = SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_other_transport(|key| {
            // With a pre-shared key, every connection first proves it (libp2p pnet), before noise:
            // a peer without the key learns nothing and sends nothing that is read.
            let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true));
            let base = match psk {
                Some(Psk(psk)) => {
                    Either::Left(tcp.and_then(move |socket, _| PnetConfig::new(psk).handshake(socket)))
                }
                None => Either::Right(tcp),
            };
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                base.upgrade(Version::V1Lazy)
                    .authenticate(noise::Config::new(key)?)
                    .multiplex(yamux::Config::default()),
            )
        })
        .map_err(|e| NetError::Config(format!("transport: {e}")))?
        .with_other_transport(|key| {
            // Absent, not just unused, in a private network: a QUIC dial would reach peers
            // without the key.
            if quic_on {
                OptionalTransport::some(quic::tokio::Transport::new(quic::Config::new(key)))
            } else {
                OptionalTransport::none()
            }
        })
        .map_err(|e| NetError::Config(format!("quic: {e}")))?
        .with_dns()
        .map_err(|e| NetError::Config(format!("dns: {e}")))?
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| NetError::Config(format!("relay client: {e}")))?
        .with_behaviour(|key, relay_client| {
            let peer_id = key.public().to_peer_id();
            let mut kad_config = kad::Config::new(protocols.kad.clone());
            // No Kademlia bootstrap of its own: a bootstrap walks towards every bucket, a few
            // dozen dials each, and with bounded connections every dial is a connection opened
            // and later trimmed (measured at N=100: most of the connections opened). `Network`
            // walks once towards itself on joining and at random every KAD_WALK_INTERVAL.
            kad_config.set_periodic_bootstrap_interval(None);
            kad_config.set_query_timeout(KAD_QUERY_TIMEOUT);
            let mut kad = kad::Behaviour::with_config(peer_id, MemoryStore::new(peer_id), kad_config);
            // Client or server by confirmed external addresses (AutoNAT, relays, UPnP, --announce).
            // Nodes listening only on loopback (tests, one host) serve each other at once.
            if config.loopback_only() {
                kad.set_mode(Some(kad::Mode::Server));
            }
            let sync = SyncBehaviour::with_codec(
                SyncCodec::new(sync_bytes),
                [(protocols.sync.clone(), ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(SYNC_REQUEST_TIMEOUT)
                    .with_max_concurrent_streams(SYNC_MAX_STREAMS),
            );
            let probe = ProbeBehaviour::with_codec(
                ProbeCodec,
                [(protocols.probe.clone(), ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(PROBE_REQUEST_TIMEOUT)
                    .with_max_concurrent_streams(PROBE_MAX_STREAMS),
            );
            let identify = identify::Behaviour::new(
                identify::Config::new(protocols.identify.clone(), key.public())
                    .with_agent_version(format!("udht/{}", env!("CARGO_PKG_VERSION")))
                    .with_hide_listen_addrs(hide_listen_addrs)
                    // Peers hear of a new relay circuit address at once, not at the next
                    // periodic identify (minutes).
                    .with_push_listen_addr_updates(true),
            );
            let limits = connection_limits::ConnectionLimits::default()
                .with_max_established_incoming(Some(MAX_ESTABLISHED_INCOMING))
                .with_max_pending_incoming(Some(MAX_PENDING_INCOMING))
                .with_max_established_per_peer(Some(MAX_ESTABLISHED_PER_PEER));
            Ok(Behaviour {
                blocked: allow_block_list::Behaviour::default(),
                limits: connection_limits::Behaviour::new(limits),
                gossipsub: gossipsub(protocols).map_err(Box::new)?,
                kad,
                identify,
                ping: ping::Behaviour::new(
                    ping::Config::new().with_interval(PING_INTERVAL).with_timeout(PING_TIMEOUT),
                ),
                sync,
                probe,
                candidates: Candidates::new(config.loopback_only()),
                autonat_client: DirectOnly(autonat::v2::client::Behaviour::new(
                    rand_autonat::make_rng::<rand_autonat::rngs::StdRng>(),
                    autonat::v2::client::Config::default().with_probe_interval(AUTONAT_PROBE_INTERVAL),
                )),
                autonat_server: DirectOnly(autonat::v2::server::Behaviour::default()),
                relay: relay(peer_id, config.relay_server),
                relay_client,
                dcutr: dcutr::Behaviour::new(peer_id),
                upnp: Toggle::from(config.upnp.then(upnp::tokio::Behaviour::default)),
            })
        })
        .map_err(|e| NetError::Config(format!("behaviour: {e}")))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT))
        .build();
    Ok(swarm)
}

/// The relay server with the crate's resource limits. Off until `reach` finds the node publicly
/// reachable (a relay behind a NAT helps nobody), and for good with `--no-relay-server`.
fn relay(peer_id: libp2p::PeerId, allowed: bool) -> relay::Behaviour {
    let mut relay = relay::Behaviour::new(peer_id, relay::Config::default());
    relay.set_status(Some(relay::Status::Disable));
    if !allowed {
        tracing::info!("relay server off (--no-relay-server)");
    }
    relay
}
