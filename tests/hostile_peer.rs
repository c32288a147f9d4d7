//! A hostile peer, built here from raw libp2p parts, sends garbage gossip and malformed
//! anti-entropy requests to a victim node. The victim must reject all of it, merge none of it,
//! score the sender down, and keep converging with an honest node.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::eventually;
use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, cbor, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{identify, noise, tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm, SwarmBuilder};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use tempfile::TempDir;
use tokio::sync::oneshot;
use udht::core::delta::{encode_delta, DELTA_VERSION};
use udht::core::replica::MAX_STRIKES;
use udht::core::sign::{entry_message, owner_of_key, Signer};
use udht::core::sync::{SyncReply, SyncRequest, SyncResponse};
use udht::core::{now_micros, now_millis, Entry, PeerFields, PeerRecord, Stamp, Table, TableConfig};
use udht::node::Status;
use udht::{NodeConfig, NodeHandle, RunningNode};

const TOPIC: &str = "udht/peers/3";
const SYNC_PROTOCOL: &str = "/udht/sync/3.0.0";
/// The rogue identifies itself as a udht peer: a peer that does not is closed as a stranger.
const IDENTIFY_PROTOCOL: &str = "/udht/id/1.0.0";
const WAIT: Duration = Duration::from_secs(10);
const TEN_MINUTES_MS: u64 = 10 * 60 * 1000;

/// Either a well-formed `SyncRequest` or a CBOR byte string the victim cannot decode as one.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum RogueRequest {
    Sync(SyncRequest),
    Raw(ByteBuf),
}

#[derive(NetworkBehaviour)]
struct Rogue {
    identify: identify::Behaviour,
    gossipsub: gossipsub::Behaviour,
    sync: cbor::Behaviour<RogueRequest, SyncReply>,
}

/// What the rogue sends once the victim has subscribed to the topic.
struct Attack {
    gossip: Vec<Vec<u8>>,
    requests: Vec<RogueRequest>,
}

#[derive(Debug, Default)]
struct RogueLog {
    publish_errors: Vec<String>,
    responses: Vec<SyncResponse>,
    request_failures: Vec<String>,
    victim_requests_answered: usize,
}

fn rogue_swarm() -> Swarm<Rogue> {
    SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
        .expect("tcp transport")
        .with_behaviour(|key| {
            // 1 MiB: the rogue may publish far more than the victim accepts. Anonymous messages,
            // as udht's own (its topic refuses signed ones), so ids must come from the content:
            // the default id (author and sequence number) would be one id for all of them.
            let config = gossipsub::ConfigBuilder::default()
                .max_transmit_size(1 << 20)
                .validation_mode(gossipsub::ValidationMode::Anonymous)
                .message_id_fn(|m: &gossipsub::Message| {
                    let mut h = std::hash::DefaultHasher::new();
                    std::hash::Hash::hash(&m.data, &mut h);
                    gossipsub::MessageId::from(std::hash::Hasher::finish(&h).to_be_bytes().to_vec())
                })
                .build()
                .unwrap();
            let mut gossipsub = gossipsub::Behaviour::new(MessageAuthenticity::Anonymous, config).unwrap();
            gossipsub.subscribe(&IdentTopic::new(TOPIC)).unwrap();
            let codec = cbor::codec::Codec::default().set_response_size_maximum(8 << 20);
            let protocols = [(StreamProtocol::new(SYNC_PROTOCOL), ProtocolSupport::Full)];
            let sync = cbor::Behaviour::with_codec(codec, protocols, request_response::Config::default());
            let identify =
                identify::Behaviour::new(identify::Config::new(IDENTIFY_PROTOCOL.into(), key.public()));
            Ok(Rogue { identify, gossipsub, sync })
        })
        .expect("rogue behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}

/// Dials the victim, fires the attack once the victim has subscribed, answers every request the
/// victim makes with a garbage response, and runs until `stop`.
async fn run_rogue(
    mut swarm: Swarm<Rogue>,
    victim: PeerId,
    addr: Multiaddr,
    attack: Attack,
    log: Arc<Mutex<RogueLog>>,
    mut stop: oneshot::Receiver<()>,
) {
    swarm.dial(addr.with(Protocol::P2p(victim))).expect("rogue dials the victim");
    let mut attack = Some(attack);
    // Requests go one at a time, the next when the previous has an outcome: the victim serves a
    // few streams per connection at once, and each refusal is to be seen.
    let mut queued: std::collections::VecDeque<RogueRequest> = Default::default();
    loop {
        let event = tokio::select! {
            _ = &mut stop => return,
            event = swarm.select_next_some() => event,
        };
        let SwarmEvent::Behaviour(event) = event else { continue };
        let mut log = log.lock().unwrap();
        match event {
            RogueEvent::Gossipsub(gossipsub::Event::Subscribed { peer_id, .. }) if peer_id == victim => {
                let Some(attack) = attack.take() else { continue };
                for data in attack.gossip {
                    if let Err(e) = swarm.behaviour_mut().gossipsub.publish(IdentTopic::new(TOPIC), data) {
                        log.publish_errors.push(e.to_string());
                    }
                }
                queued.extend(attack.requests);
                if let Some(first) = queued.pop_front() {
                    swarm.behaviour_mut().sync.send_request(&victim, first);
                }
            }
            RogueEvent::Sync(request_response::Event::Message { message, .. }) => match message {
                request_response::Message::Request { channel, .. } => {
                    // Entries where a root digest belongs, one of them stamped in the future.
                    let entries = vec![entry("rogue-response", now_millis() + TEN_MINUTES_MS, "x")];
                    let garbage = SyncReply {
                        clock_us: now_micros(),
                        response: SyncResponse::Entries { entries, covered: 9 },
                    };
                    let _ = swarm.behaviour_mut().sync.send_response(channel, garbage);
                    log.victim_requests_answered += 1;
                }
                request_response::Message::Response { response, .. } => {
                    log.responses.push(response.response);
                    if let Some(next) = queued.pop_front() {
                        swarm.behaviour_mut().sync.send_request(&victim, next);
                    }
                }
            },
            RogueEvent::Sync(request_response::Event::OutboundFailure { error, .. }) => {
                log.request_failures.push(error.to_string());
                if let Some(next) = queued.pop_front() {
                    swarm.behaviour_mut().sync.send_request(&victim, next);
                }
            }
            _ => {}
        }
    }
}

/// An entry correctly signed by the rogue's own writer key (so what is wrong with it is what the
/// test put there: a stamp in the future, an empty key, an oversized value).
fn entry(key: &str, millis: u64, name: &str) -> Entry {
    let fields = PeerFields { name: Some(name.into()), ip: Some("10.6.6.6".into()), ..Default::default() };
    let record = PeerRecord::create(fields, millis as i64 * 1000);
    let signer = Signer::from_secret([0x66; 32]);
    let stamp = Stamp { millis, counter: 0, node: signer.node() };
    let sig = signer.sign(&entry_message("udht", key, Some(&record), &stamp));
    Entry { key: key.into(), stamp, record: Some(Arc::new(record)), sig }
}

fn random_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|_| rand::random::<u8>()).collect()
}

async fn status(handle: &NodeHandle) -> Status {
    handle.status()
}

/// The config of a node listening on an ephemeral loopback port, bootstrapping from `bootstrap`.
fn on_loopback(bootstrap: Option<Multiaddr>) -> impl FnOnce(&mut NodeConfig) {
    move |cfg| {
        cfg.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
        cfg.bootstrap = bootstrap.into_iter().collect();
        cfg.sync_interval = Duration::from_secs(2);
    }
}

/// A victim, an honest node bootstrapped to it, and a rogue attacking the victim.
struct Scene {
    victim: RunningNode,
    honest: RunningNode,
    rogue_id: PeerId,
    stop_rogue: oneshot::Sender<()>,
    rogue: tokio::task::JoinHandle<()>,
    rogue_log: Arc<Mutex<RogueLog>>,
    _dirs: (TempDir, TempDir),
}

async fn scene(attack: Attack) -> Scene {
    let (victim, victim_dir) = common::start_node_with(on_loopback(None)).await;
    scene_with(victim, victim_dir, attack).await
}

/// The scene around a victim already started (an attack may need to know its peer id).
async fn scene_with(victim: RunningNode, victim_dir: TempDir, attack: Attack) -> Scene {
    let victim_addr = common::listen_addr(&victim).await;
    let (honest, honest_dir) = common::start_node_with(on_loopback(Some(victim_addr.clone()))).await;
    common::listen_addr(&honest).await;
    eventually("the honest node to connect", WAIT, async || {
        let s = status(&victim.handle).await;
        s.connected_peers.contains(&honest.peer_id).then_some(())
    })
    .await;
    let swarm = rogue_swarm();
    let rogue_id = *swarm.local_peer_id();
    let victim_id: PeerId = victim.peer_id.parse().unwrap();
    let (stop_rogue, stop) = oneshot::channel();
    let rogue_log = Arc::new(Mutex::new(RogueLog::default()));
    let rogue = tokio::spawn(run_rogue(swarm, victim_id, victim_addr, attack, rogue_log.clone(), stop));
    Scene { victim, honest, rogue_id, stop_rogue, rogue, rogue_log, _dirs: (victim_dir, honest_dir) }
}

impl Scene {
    /// No key the rogue sent (all start with `rogue`, or are empty) is live on either node.
    async fn assert_nothing_of_the_rogue_merged(&self) {
        for node in [&self.victim, &self.honest] {
            let snapshot = node.handle.snapshot();
            let leaked: Vec<&std::sync::Arc<str>> =
                snapshot.iter().map(|(k, _)| k).filter(|k| k.is_empty() || k.starts_with("rogue")).collect();
            assert!(leaked.is_empty(), "rogue keys merged on {}: {leaked:?}", node.peer_id);
        }
    }

    /// An honest write still reaches the victim, and the two tables end up identical.
    async fn assert_network_still_converges(&self, key: &str) {
        let fields =
            PeerFields { name: Some("honest".into()), ip: Some("10.0.0.9".into()), ..Default::default() };
        assert!(self.honest.handle.add(key.into(), fields).await.unwrap(), "honest write accepted");
        eventually("the honest write to reach the victim", WAIT, async || self.victim.handle.get(key)).await;
        eventually("equal digests", WAIT, async || {
            let (v, h) = (status(&self.victim.handle).await, status(&self.honest.handle).await);
            if v.digest == h.digest {
                Ok(())
            } else {
                Err((v.digest, h.digest))
            }
        })
        .await;
    }

    async fn finish(self) -> RogueLog {
        let _ = self.stop_rogue.send(());
        self.rogue.await.expect("rogue task");
        let log = std::mem::take(&mut *self.rogue_log.lock().unwrap());
        self.honest.shutdown().await.expect("honest node stops cleanly");
        self.victim.shutdown().await.expect("victim stops cleanly");
        log
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_gossip_is_rejected_scored_down_and_never_merged() {
    let now = now_millis();
    let mut garbage = random_bytes(1024);
    garbage[0] = DELTA_VERSION; // passes the version check; then an over-long length varint
    garbage[1..11].fill(0xff);
    let mut wrong_version = encode_delta(&[entry("rogue-version", now, "v")]);
    wrong_version[0] = DELTA_VERSION.wrapping_add(0x41);
    // A stamp from the future is not the sender's fault (it may be relaying, or the clock that
    // is off may be the victim's): that entry is refused and counted, its valid companion merges.
    let future = encode_delta(&[
        entry("companion-of-future", now, "ok"),
        entry("rogue-future", now + TEN_MINUTES_MS, "f"),
    ]);
    let empty_key = encode_delta(&[entry("", now, "e")]);
    let oversized = encode_delta(&[entry("rogue-oversized", now, &"x".repeat(200 * 1024))]);
    // Order matters: after three rejections the rogue's score is below the graylist threshold and
    // the victim's gossipsub may drop everything else it sends before the application sees it.
    let attack =
        Attack { gossip: vec![future, empty_key, garbage, wrong_version, oversized], requests: vec![] };
    let scene = scene(attack).await;
    let rogue = scene.rogue_id.to_string();

    let s = eventually("gossip rejections", WAIT, async || {
        let s = status(&scene.victim.handle).await;
        if s.net_stats.gossip_rejected >= 3 && s.table_stats.rejected_future >= 1 {
            Ok(s)
        } else {
            Err((s.net_stats, s.table_stats))
        }
    })
    .await;
    let score = eventually("a negative score or a ban", WAIT, async || {
        let score = scene.victim.handle.peer_score(rogue.clone()).await.unwrap();
        let banned = status(&scene.victim.handle).await.sync_stats.peers_banned >= 1;
        if banned || score.is_some_and(|s| s < 0.0) {
            Ok(score)
        } else {
            Err(score)
        }
    })
    .await;
    println!("victim after garbage gossip: score {score:?} net {:?} table {:?}", s.net_stats, s.table_stats);

    // After a later write has travelled victim <-> honest, anything forwarded would have arrived.
    scene.assert_network_still_converges("honest-after-garbage-gossip").await;
    scene.assert_nothing_of_the_rogue_merged().await;
    assert!(scene.victim.handle.get("companion-of-future").is_some(), "the valid companion merged");
    let honest = status(&scene.honest.handle).await;
    assert_eq!(honest.net_stats.gossip_rejected, 0, "no garbage was forwarded to the honest node");
    let log = scene.finish().await;
    assert!(log.publish_errors.is_empty(), "the rogue published everything: {:?}", log.publish_errors);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_sync_requests_are_refused_and_the_victim_keeps_serving() {
    let now = now_millis();
    let sync = RogueRequest::Sync;
    let requests = vec![
        RogueRequest::Raw(ByteBuf::from(random_bytes(4096))),
        // Over the victim's 4 MiB request limit.
        RogueRequest::Raw(ByteBuf::from(random_bytes(5 << 20))),
        sync(SyncRequest::Root { root: ByteBuf::from(vec![1; 3]) }),
        sync(SyncRequest::Buckets { hashes: ByteBuf::from(vec![7; 7]) }),
        sync(SyncRequest::Pull { buckets: vec![60000] }),
        sync(SyncRequest::Push {
            entries: vec![entry("rogue-push-future", now + TEN_MINUTES_MS, "p"), entry("", now, "e")],
        }),
    ];
    let sent = requests.len();
    let scene = scene(Attack { gossip: vec![], requests }).await;
    eventually("an outcome for every rogue request", WAIT, async || {
        let log = scene.rogue_log.lock().unwrap();
        let outcomes = log.responses.len() + log.request_failures.len();
        if outcomes >= sent {
            Ok(())
        } else {
            Err(format!("{outcomes} of {sent}"))
        }
    })
    .await;

    let s = eventually("the garbage requests to be counted", WAIT, async || {
        let s = status(&scene.victim.handle).await;
        // Two undecodable requests and three invalid ones, all refused and counted.
        let counted = s.sync_stats.requests_refused >= 5
            && s.table_stats.rejected_future >= 1
            && s.table_stats.rejected_invalid >= 1
            && s.sync_stats.sessions_failed >= 1;
        if counted {
            Ok(s)
        } else {
            Err((s.sync_stats, s.table_stats))
        }
    })
    .await;
    println!("victim after malformed sync: {:?} {:?} {:?}", s.net_stats, s.sync_stats, s.table_stats);

    scene.assert_network_still_converges("honest-after-malformed-sync").await;
    scene.assert_nothing_of_the_rogue_merged().await;
    let log = scene.finish().await;
    println!("rogue saw: {log:?}");
    let refused = log.responses.iter().filter(|r| matches!(r, SyncResponse::Refused { .. })).count();
    assert_eq!(
        refused, 5,
        "both undecodable requests, Root, Buckets and Pull were refused: {:?}",
        log.responses
    );
    assert!(log.responses.contains(&SyncResponse::Ack { merged: 0 }), "the push merged nothing");
    assert!(log.request_failures.is_empty(), "every request was answered: {:?}", log.request_failures);
    assert!(log.victim_requests_answered >= 1, "the victim asked the rogue and got garbage back");
}

/// Entries forged three ways, each sent by gossip and by anti-entropy: another writer's id in the
/// stamp under the rogue's signature, a correctly signed value changed afterwards, and a correctly
/// signed write of the victim's own record (a peer id's key, writable only by that peer). All are
/// refused, nothing merges anywhere, the victim's record is unchanged on both nodes, and the
/// rogue is struck until it is banned.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_entries_are_refused_everywhere_and_their_sender_is_banned() {
    let (victim, victim_dir) = common::start_node_with(on_loopback(None)).await;
    let now = now_millis();
    let mut rogue_writer = Table::new(Signer::from_secret(rand::random()), "udht", TableConfig::default());
    let fields =
        PeerFields { name: Some("forged".into()), ip: Some("198.18.6.6".into()), ..Default::default() };
    let honest_writer = owner_of_key(&victim.peer_id).expect("a node's peer id names its key");
    let mut other_writer =
        rogue_writer.put("rogue-other-writer".into(), PeerRecord::create(fields.clone(), 1), now);
    other_writer.stamp.node = honest_writer;
    let mut changed =
        rogue_writer.put("rogue-changed-value".into(), PeerRecord::create(fields.clone(), 1), now);
    changed.record =
        Some(Arc::new(PeerRecord::create(PeerFields { name: Some("changed".into()), ..fields.clone() }, 1)));
    let not_owner = rogue_writer.put(victim.peer_id.clone(), PeerRecord::create(fields, 1), now);
    let forged = [other_writer, changed, not_owner];
    let gossip = forged.iter().map(|e| encode_delta(std::slice::from_ref(e))).collect();
    // Enough bad pushes to be banned (each refused push is one strike).
    let requests = (0..MAX_STRIKES as usize)
        .map(|i| RogueRequest::Sync(SyncRequest::Push { entries: vec![forged[i % 3].clone()] }))
        .collect();
    let scene = scene_with(victim, victim_dir, Attack { gossip, requests }).await;
    let own_before = scene.victim.handle.own_record().expect("the victim's own record");

    let s = eventually("the forger banned", WAIT, async || {
        let s = status(&scene.victim.handle).await;
        let seen = s.table_stats.rejected_signature >= 2 && s.table_stats.rejected_owner >= 1;
        if seen && s.sync_stats.peers_banned >= 1 {
            Ok(s)
        } else {
            Err((s.table_stats, s.sync_stats))
        }
    })
    .await;
    println!("victim after forged entries: {:?} {:?}", s.table_stats, s.sync_stats);
    scene.assert_network_still_converges("honest-after-forgeries").await;
    scene.assert_nothing_of_the_rogue_merged().await;
    for node in [&scene.victim, &scene.honest] {
        let record = node.handle.get(&scene.victim.peer_id).expect("the victim's record everywhere");
        assert_eq!(record.name, own_before.name, "on {}", node.peer_id);
        assert_ne!(record.ip, "198.18.6.6", "the forged address reached {}", node.peer_id);
    }
    let honest = status(&scene.honest.handle).await;
    assert_eq!(
        honest.table_stats.rejected_signature + honest.table_stats.rejected_owner,
        0,
        "nothing forged was forwarded"
    );
    scene.finish().await;
}
