//! Cluster scenarios: real nodes in one process on 127.0.0.1, joined through node 0's address,
//! exercised through their handles; convergence means equal digests everywhere.

mod common;

use std::time::Duration;

use udht::cluster::Cluster;
use udht::core::PeerFields;
use udht::NodeConfig;

/// Generous: convergence normally takes milliseconds (gossip) to a second or two (anti-entropy).
const CONVERGE: Duration = Duration::from_secs(30);

fn peer(name: &str, ip: &str) -> PeerFields {
    PeerFields {
        name: Some(name.into()),
        ip: Some(ip.into()),
        port: Some("8001".into()),
        ..Default::default()
    }
}

fn test_config(c: &mut NodeConfig) {
    c.sync_interval = Duration::from_secs(2);
}

async fn cluster(n: usize) -> (Cluster, tempfile::TempDir) {
    common::start_cluster(n, test_config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_update_and_remove_spread_to_every_node() {
    let (c, _dir) = cluster(5).await;
    c.wait_converged(CONVERGE).await.unwrap();

    assert!(c.handle(2).unwrap().add("10.0.0.7".into(), peer("seven", "10.0.0.7")).await.unwrap());
    c.wait_key_everywhere("10.0.0.7", CONVERGE).await.unwrap();

    let rename = PeerFields { name: Some("SEVEN".into()), ..Default::default() };
    assert!(c.handle(4).unwrap().update("10.0.0.7".into(), rename).await.unwrap());
    c.wait_converged(CONVERGE).await.unwrap();
    for i in 0..5 {
        let r = c.handle(i).unwrap().get("10.0.0.7").unwrap();
        assert_eq!(r.name, "SEVEN", "node {i}");
    }

    assert!(c.handle(0).unwrap().remove("10.0.0.7".into()).await.unwrap());
    c.wait_converged(CONVERGE).await.unwrap();
    for i in 0..5 {
        assert!(c.handle(i).unwrap().get("10.0.0.7").is_none(), "node {i}");
    }
    c.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_nodes_own_record_reaches_every_node() {
    let (c, _dir) = cluster(4).await;
    c.wait_converged(CONVERGE).await.unwrap();
    for i in 0..4 {
        for j in 0..4 {
            let r = c.handle(i).unwrap().get(c.peer_id(j));
            let r = r.unwrap_or_else(|| panic!("node {i} lacks node {j}'s record"));
            assert_eq!(r.name, format!("node{j}"));
            assert_eq!(r.ip, "127.0.0.1");
            assert!(r.addrs.iter().any(|a| a.ends_with(c.peer_id(j))), "addrs carry /p2p/: {:?}", r.addrs);
        }
        // Records spread through any path; direct connections follow as Kademlia finds peers
        // and identify admits them, which may take a moment longer.
        let what = format!("node {i} connected to every other node");
        common::eventually(what, CONVERGE, async || c.status(i).unwrap().connected_peers.len() == 3).await;
    }
    c.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_conflicting_writes_end_identical_everywhere() {
    let (c, _dir) = cluster(3).await;
    c.wait_converged(CONVERGE).await.unwrap();
    let (a, b) = (c.handle(1).unwrap().clone(), c.handle(2).unwrap().clone());
    let (ra, rb) = tokio::join!(
        a.add("k".into(), peer("from-1", "1.1.1.1")),
        b.add("k".into(), peer("from-2", "2.2.2.2"))
    );
    assert!(ra.unwrap() && rb.unwrap(), "both adds succeed locally");
    c.wait_converged(CONVERGE).await.unwrap();
    let mut names = Vec::new();
    for i in 0..3 {
        names.push(c.handle(i).unwrap().get("k").unwrap().name.clone());
    }
    assert!(names.windows(2).all(|w| w[0] == w[1]), "{names:?}");
    assert!(names[0] == "from-1" || names[0] == "from-2");
    c.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_gets_the_whole_table() {
    let (mut c, _dir) = cluster(3).await;
    for i in 0..600 {
        let node = c.handle(i % 3).unwrap();
        assert!(node.add(format!("peer-{i}"), peer("p", "10.1.1.1")).await.unwrap());
    }
    c.wait_converged(CONVERGE).await.unwrap();
    // Past gossipsub's message cache (5 heartbeats of 0.5 s): a peer that joins sooner may get
    // the latest writes as gossip (IHAVE, IWANT) rather than by anti-entropy.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let late = c.add_node().await.unwrap();
    c.wait_converged(CONVERGE).await.unwrap();
    let status = c.status(late).unwrap();
    assert_eq!(status.table_size, 600 + 4, "600 peers and 4 nodes' own records");
    assert!(
        status.sync_stats.entries_repaired >= 600,
        "the table came by anti-entropy: {:?}",
        status.sync_stats
    );
    c.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healed_partition_converges_with_writes_from_both_sides() {
    let (c, _dir) = cluster(4).await;
    c.wait_converged(CONVERGE).await.unwrap();
    let (left, right): (&[usize], &[usize]) = (&[0, 1], &[2, 3]);
    c.partition(&[left, right]).await.unwrap();
    for i in 0..4 {
        let connected = c.status(i).unwrap().connected_peers.len();
        assert_eq!(connected, 1, "node {i} sees only its own half");
    }
    for n in 0..20 {
        c.handle(n % 2).unwrap().add(format!("left-{n}"), peer("l", "10.0.0.1")).await.unwrap();
        c.handle(2 + n % 2).unwrap().add(format!("right-{n}"), peer("r", "10.0.0.2")).await.unwrap();
    }
    c.handle(1).unwrap().add("both".into(), peer("left wrote", "10.0.0.1")).await.unwrap();
    c.handle(3).unwrap().add("both".into(), peer("right wrote", "10.0.0.2")).await.unwrap();
    c.wait_converged_among(left, CONVERGE).await.unwrap();
    c.wait_converged_among(right, CONVERGE).await.unwrap();
    let split = c.digests(&[0, 2]).await.unwrap();
    assert_ne!(split[0], split[1], "the halves diverged while cut off");
    assert!(c.handle(0).unwrap().get("right-0").is_none());

    c.heal(&[left, right]).await.unwrap();
    let took = c.wait_converged(CONVERGE).await.unwrap();
    eprintln!("healed partition converged in {took:?}");
    for i in 0..4 {
        let s = c.status(i).unwrap();
        assert_eq!(s.table_size, 4 + 40 + 1, "node {i}");
    }
    c.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_from_its_data_dir_catches_up() {
    let (mut c, _dir) = cluster(3).await;
    c.handle(2).unwrap().add("before".into(), peer("b", "10.0.0.9")).await.unwrap();
    c.wait_converged(CONVERGE).await.unwrap();
    let peer_id = c.peer_id(2).to_owned();
    c.stop_node(2).await.unwrap();
    for n in 0..50 {
        c.handle(n % 2).unwrap().add(format!("while-down-{n}"), peer("w", "10.0.0.8")).await.unwrap();
    }
    c.handle(0).unwrap().remove("before".into()).await.unwrap();
    c.start_node(2).await.unwrap();
    assert_eq!(c.peer_id(2), peer_id, "same identity after restart");
    c.wait_converged(CONVERGE).await.unwrap();
    let restarted = c.handle(2).unwrap();
    assert!(restarted.get("while-down-49").is_some());
    assert!(restarted.get("before").is_none(), "the remove reached it too");
    c.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_stay_bounded_partings_raise_no_suspicion_and_writes_still_reach_everyone() {
    // Everyone bootstraps from node 0, which so starts with 13 connections: above the high
    // watermark (5 + 2), it parts from the newest after their grace. Unbounded, every node
    // would end connected to the 13 others (probes and walks dial them all).
    const N: usize = 14;
    const TARGET: usize = 5;
    let (c, _dir) = common::start_cluster(N, |config: &mut NodeConfig| {
        test_config(config);
        config.target_peers = TARGET;
    })
    .await;
    c.wait_converged(CONVERGE).await.unwrap();
    let trimmed = || (0..N).map(|i| c.status(i).unwrap().net_stats.peers_trimmed).sum::<u64>();
    common::eventually("a node parted from connections above its high watermark", CONVERGE, async || {
        trimmed() > 0
    })
    .await;
    // The grace (10 s) lets a trimmed node's new connections settle before they are judged.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let open: Vec<u64> = (0..N).map(|i| c.status(i).unwrap().net_stats.open_connections).collect();
    let mean = open.iter().sum::<u64>() as f64 / N as f64;
    eprintln!(
        "open connections per node with target {TARGET}: {open:?} (mean {mean:.1}); {} partings",
        trimmed()
    );
    assert!(mean <= 2.0 * TARGET as f64, "at most twice the target on average: {open:?}");
    for i in 0..N {
        let l = c.status(i).unwrap().liveness;
        assert_eq!((l.suspect, l.dead), (0, 0), "node {i}: a parting is no failure: {l:?}");
        assert_eq!(l.alive, N - 1, "node {i} knows every other node alive: {l:?}");
    }
    for n in 0..5 {
        let key = format!("after-trim-{n}");
        c.handle(n * 2).unwrap().add(key.clone(), peer("t", "10.0.0.3")).await.unwrap();
        c.wait_key_everywhere(&key, CONVERGE).await.unwrap();
    }
    c.shutdown().await.unwrap();
}
