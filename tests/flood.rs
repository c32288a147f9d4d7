//! A member floods new keys: every other table stops at the writer's key cap, per-peer rate
//! limits drop the excess without banning anyone, and honest writes still spread.

mod common;

use std::time::{Duration, Instant};

use common::{eventually, listen_addr, start_node_with};
use futures::future::join_all;
use udht::core::PeerFields;
use udht::net::Multiaddr;
use udht::NodeConfig;

const WAIT: Duration = Duration::from_secs(20);
const CAP: usize = 500;
const FLOOD: usize = 3_000;

fn node(bootstrap: Option<Multiaddr>, cap: Option<usize>) -> impl FnOnce(&mut NodeConfig) {
    move |c| {
        c.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
        c.bootstrap = bootstrap.into_iter().collect();
        c.sync_interval = Duration::from_secs(1);
        c.peer_entry_rate = 2_000;
        if let Some(cap) = cap {
            c.table.max_keys_per_writer = cap;
        }
    }
}

/// Serial gets on one manager connection for `for_how_long`; the latencies, sorted.
async fn get_latencies(manager: std::net::SocketAddr, for_how_long: Duration) -> Vec<Duration> {
    let mut c = common::Conn::connect(manager).await;
    let request = br#"{"message_type": 7, "data": {"peer_ip": "198.18.0.1"}}"#;
    let (start, mut out) = (Instant::now(), Vec::new());
    while start.elapsed() < for_how_long {
        let t = Instant::now();
        let reply = c.request_json(request).await;
        out.push(t.elapsed());
        assert_eq!(reply["result"], "completed", "{reply}");
    }
    out.sort();
    out
}

fn fields(name: &str) -> PeerFields {
    PeerFields { name: Some(name.into()), ip: Some("198.18.0.8".into()), ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_writer_is_capped_everywhere_and_honest_writes_still_spread() {
    let (victim, _d1) = start_node_with(node(None, Some(CAP))).await;
    let seed = listen_addr(&victim).await;
    let (flooder, _d2) = start_node_with(node(Some(seed.clone()), None)).await;
    let (honest, _d3) = start_node_with(node(Some(seed), Some(CAP))).await;
    eventually("all three connected", WAIT, async || {
        (victim.handle.status().connected_peers.len() == 2).then_some(())
    })
    .await;

    // Another client's gets on the victim, idle and then during the flood (figures, not a bound:
    // timing belongs in benchmarks; the test prints them).
    assert!(victim.handle.add("198.18.0.1".into(), fields("local")).await.unwrap());
    let idle = get_latencies(victim.manager_addr, Duration::from_millis(500)).await;
    let reader = tokio::spawn(get_latencies(victim.manager_addr, Duration::from_millis(700)));

    // As fast as the flooder's node takes them, in concurrent waves of 100 (about 3,500 new keys
    // a second here, each made durable and signed).
    let started = Instant::now();
    for wave in 0..FLOOD / 100 {
        let adds = (0..100).map(|i| flooder.handle.add(format!("flood-{wave}-{i}"), fields("flood")));
        assert!(join_all(adds).await.into_iter().all(|r| r.unwrap()), "the flooder's own node takes them");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let flood_secs = started.elapsed().as_secs_f64();
    let flooded = reader.await.unwrap();
    let percentiles = |v: &[Duration]| (v[v.len() / 2], v[v.len() * 99 / 100]);
    let ((i50, i99), (f50, f99)) = (percentiles(&idle), percentiles(&flooded));
    println!(
        "victim get latency: idle p50 {i50:?} p99 {i99:?} ({} gets); during the flood p50 {f50:?} p99 {f99:?} ({} gets); p50 ratio {:.2}",
        idle.len(),
        flooded.len(),
        f50.as_secs_f64() / i50.as_secs_f64()
    );
    assert!(honest.handle.add("honest-during-flood".into(), fields("honest")).await.unwrap());
    eventually("the honest write to reach the victim", WAIT, async || {
        victim.handle.get("honest-during-flood")
    })
    .await;

    // Anti-entropy keeps offering the rest; the cap holds on every pass.
    let s = eventually("the cap to be hit", WAIT, async || {
        let s = victim.handle.status();
        (s.table_stats.rejected_writer_cap > 0).then_some(s)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (who, n) in [("victim", &victim), ("honest", &honest)] {
        let flood_keys = n.handle.snapshot().iter().filter(|(k, _)| k.starts_with("flood-")).count();
        assert!(flood_keys <= CAP, "{who} holds {flood_keys} flood keys, over the cap of {CAP}");
        assert!(n.handle.status().table_size <= CAP + 4, "{who}'s table stayed bounded");
        assert_eq!(
            n.handle.status().sync_stats.peers_banned,
            0,
            "{who} banned nobody: a flood is not garbage"
        );
    }
    println!(
        "flooded {FLOOD} keys in {flood_secs:.2} s; victim: {} rejected at the cap, {} rate-limited, table {}",
        s.table_stats.rejected_writer_cap,
        s.sync_stats.rate_limited,
        victim.handle.status().table_size
    );
    for n in [victim, flooder, honest] {
        n.shutdown().await.unwrap();
    }
}
