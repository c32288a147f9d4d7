//! `--psk`: a private network. Nodes holding the same pre-shared key converge; a node with another
//! key, or none, cannot connect to them, whichever side dials.

mod common;

use std::time::Duration;

use common::{eventually, listen_addr, start_cluster, start_node_with};
use udht::core::PeerFields;
use udht::net::{Multiaddr, Psk};
use udht::NodeConfig;

const WAIT: Duration = Duration::from_secs(15);
/// Long enough for several bootstrap re-dials (one a second while nothing is connected).
const STRANGER_TRIES: Duration = Duration::from_secs(3);

fn on_loopback(psk: Option<Psk>, bootstrap: Option<Multiaddr>) -> impl FnOnce(&mut NodeConfig) {
    move |c| {
        c.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
        c.bootstrap = bootstrap.into_iter().collect();
        c.psk = psk;
        // These nodes never meet a peer to compare clocks with: their own record is written at
        // once instead of after the wait, so "only its own record" is checked at once too.
        c.clock_wait = Duration::ZERO;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_nodes_holding_the_same_key_connect_whichever_side_dials() {
    let key = Psk::generate();
    let members_key = key.clone();
    let (cluster, _dir) = start_cluster(2, move |c| c.psk = Some(members_key.clone())).await;
    let member = cluster.handle(0).unwrap().clone();
    let fields =
        PeerFields { name: Some("private".into()), ip: Some("198.18.0.3".into()), ..Default::default() };
    assert!(member.add("198.18.0.3".into(), fields).await.unwrap());
    cluster.wait_key_everywhere("198.18.0.3", WAIT).await.unwrap();
    let seed = cluster.seed_addr().unwrap();

    for stranger_key in [Some(Psk::generate()), None] {
        let what = if stranger_key.is_some() { "another key" } else { "no key" };
        // The stranger dials a member ...
        let (stranger, _d1) = start_node_with(on_loopback(stranger_key, Some(seed.clone()))).await;
        // ... and a member (with the right key) dials the stranger.
        let stranger_addr = listen_addr(&stranger).await;
        let (dialer, _d2) = start_node_with(on_loopback(Some(key.clone()), Some(stranger_addr))).await;
        tokio::time::sleep(STRANGER_TRIES).await;
        let s = stranger.handle.status();
        let d = dialer.handle.status();
        assert!(s.net_stats.dials > 0 && d.net_stats.dials > 0, "both sides tried ({what})");
        assert!(s.connected_peers.is_empty(), "a node with {what} connected: {:?}", s.connected_peers);
        assert!(!d.connected_peers.contains(&stranger.peer_id), "a member connected to a node with {what}");
        assert_eq!(s.table_size, 1, "the node with {what} holds only its own record");
        assert!(stranger.handle.get("198.18.0.3").is_none());
        // That member's only bootstrap was the stranger, so it stays alone: nothing crossed.
        assert!(dialer.handle.get("198.18.0.3").is_none(), "nothing crossed to the dialling member");
        stranger.shutdown().await.unwrap();
        dialer.shutdown().await.unwrap();
    }
    // The members themselves are still connected and converged.
    eventually("members still converged", WAIT, async || {
        let (a, b) = (cluster.status(0).unwrap(), cluster.status(1).unwrap());
        (a.digest == b.digest && !a.connected_peers.is_empty()).then_some(())
    })
    .await;
    cluster.shutdown().await.unwrap();
}

#[test]
fn a_key_file_round_trips_and_garbage_is_refused() {
    let key = Psk::generate();
    let text = key.to_key_file();
    assert!(text.starts_with("/key/swarm/psk/1.0.0/"), "{text}");
    assert_eq!(text.parse::<Psk>().unwrap(), key);
    assert!("/key/swarm/psk/1.0.0/\n/base16/\nnot-hex".parse::<Psk>().is_err());
}
