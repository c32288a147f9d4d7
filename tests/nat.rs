//! NAT traversal, honest addresses and rejoining, on a small internet of network namespaces
//! (`common::netns`: two public nodes, three home routers, two port-preserving NATs and one
//! symmetric). Real `udht-node` processes, reached only through their manager sockets.
//!
//! Every wait is bounded and fails the test. The figures of issue 8's targets are printed on
//! lines starting with `NAT TARGET` (run with `--nocapture` to see them). Without network
//! namespaces (not root, no `ip`/iptables) every test prints a `SKIP` line and returns.
//!
//! The tests run one at a time ([`SERIAL`]): each builds its own network and starts six or more
//! nodes, and the machine running them may be small.

mod common;
#[path = "nat/propagation.rs"]
mod propagation;
#[path = "nat/world.rs"]
mod world;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::netns::{in_ns, Internet};
use common::process::{run_to_exit_in, NodeProcess, NETNS_P2P_PORT};
use common::{eventually, try_eventually};
use propagation::{propagation, report, ARRIVAL_BOUND};
use serde_json::{json, Value};
use world::{addrs_of, bad_addresses, direct_flow, name, percent, reach_summary, table, World};

/// One network (and its nodes) at a time in this test binary.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The targets' bound: home nodes reachable, port-preserving pairs direct, within this of start.
const TARGET_WAIT: Duration = Duration::from_secs(30);
/// How long a fresh node may take to connect through one address.
const FRESH_CONNECT: Duration = Duration::from_secs(20);
/// How long a node restarted with every bootstrap node down may take to catch up.
const REJOIN: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// The network itself.

/// The harness's own check, with no node: home routers translate as configured (r1 keeps the
/// source port for every destination, r3 changes it per destination), and drop what comes
/// unasked from the public side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netns_the_network_translates_and_filters_like_home_routers() {
    let _serial = SERIAL.lock().await;
    let Some(net) = Internet::build_or_skip("netns_the_network_translates_and_filters_like_home_routers")
    else {
        return;
    };
    // Two public UDP sockets; each home sends from one local port to both.
    let mut seen = Vec::new();
    for public in &net.public[..2] {
        let at = SocketAddr::new(IpAddr::V4(public.ip), 7000);
        let sock = in_ns(&public.ns, move || std::net::UdpSocket::bind(at)).await.unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        seen.push((at, sock));
    }
    for home in [&net.homes[0], &net.homes[2]] {
        let targets: Vec<SocketAddr> = seen.iter().map(|(a, _)| *a).collect();
        let local = SocketAddr::new(IpAddr::V4(home.node.ip), 7001);
        in_ns(&home.node.ns, move || {
            let s = std::net::UdpSocket::bind(local)?;
            targets.iter().try_for_each(|t| s.send_to(b"hello", t).map(drop))
        })
        .await
        .unwrap();
        let mut ports = Vec::new();
        for (_, sock) in &seen {
            let (_, from) = sock.recv_from(&mut [0u8; 16]).expect("a datagram through the router");
            assert_eq!(from.ip(), IpAddr::V4(home.router.ip), "the router's public address as source");
            ports.push(from.port());
        }
        match home.nat {
            common::netns::Nat::PortPreserving => assert_eq!(ports, [7001, 7001], "{home:?}"),
            common::netns::Nat::Symmetric => assert_ne!(ports[0], ports[1], "one port per flow: {home:?}"),
        }
    }
    // Unasked traffic from the public side is dropped: a TCP connection from pub1 straight to
    // home1's LAN address (routed through r1) never completes, although home1 listens.
    let home = net.homes[0].clone();
    let listen = SocketAddr::new(IpAddr::V4(home.node.ip), 7002);
    let _listener = in_ns(&home.node.ns, move || std::net::TcpListener::bind(listen)).await.unwrap();
    let (public, router) = (net.public[0].ns.clone(), home.router.ip.to_string());
    let routed = std::process::Command::new("ip")
        .args(["-n", &public, "route", "add", "10.1.0.0/24", "via", &router])
        .status()
        .unwrap();
    assert!(routed.success(), "adding a route in {public}");
    let unasked =
        in_ns(&public, move || std::net::TcpStream::connect_timeout(&listen, Duration::from_secs(2))).await;
    assert!(unasked.is_err(), "a connection from the public side reached a home node: {unasked:?}");
    let pub2_port_9 = SocketAddr::new(IpAddr::V4(net.public[1].ip), 9);
    let asked = in_ns(&home.node.ns, move || {
        std::net::TcpStream::connect_timeout(&pub2_port_9, Duration::from_secs(2))
    })
    .await;
    // pub2 refuses port 9 (no listener): the reply came back through r1.
    assert!(
        asked.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused),
        "home1 -> pub2: expected a refusal coming back, got {asked:?}"
    );
    udp_hole_punch(&net).await;
    println!("netns: NAT mappings, filtering and a UDP hole punch between home1 and home2 as expected");
}

/// The network lets home1 and home2 punch a UDP hole by hand (so when nodes do not, the nodes
/// are at fault): home1 sends first (dropped at r2, but it opens r1), home2 answers (through r1's
/// hole, opening r2's), and home1's second datagram passes r2.
async fn udp_hole_punch(net: &Internet) {
    let (a, b) = (net.homes[0].clone(), net.homes[1].clone());
    let local = |h: &common::netns::Home| SocketAddr::new(IpAddr::V4(h.node.ip), 7010);
    let public = |h: &common::netns::Home| SocketAddr::new(IpAddr::V4(h.router.ip), 7010);
    let (la, lb) = (local(&a), local(&b));
    let sa = in_ns(&a.node.ns, move || std::net::UdpSocket::bind(la)).await.unwrap();
    let sb = in_ns(&b.node.ns, move || std::net::UdpSocket::bind(lb)).await.unwrap();
    for s in [&sa, &sb] {
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    }
    sa.send_to(b"first", public(&b)).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    sb.send_to(b"second", public(&a)).unwrap();
    let (_, from) = sa.recv_from(&mut [0u8; 16]).expect("home2's datagram through r1's hole");
    assert_eq!(from, public(&b), "home2's port kept by r2");
    sa.send_to(b"third", public(&b)).unwrap();
    let (n, from) = sb.recv_from(&mut [0u8; 16]).expect("home1's datagram through r2's hole");
    assert_eq!((n, from), (5, public(&a)), "home1's second datagram, from its kept port");
}

// ---------------------------------------------------------------------------------------------
// Honest records.

/// Starts a fresh node in the spare public namespace, bootstrapped only from `addr`, and waits
/// until it is connected to `target`.
async fn fresh_node_connects(w: &World, n: usize, target: &str, addr: &str) -> Result<(), String> {
    let ns = &w.net.public[3].ns;
    let dir: PathBuf = w.dir.path().join(format!("fresh{n}"));
    let flags = [name(&format!("fresh{n}")), vec!["--bootstrap".into(), addr.to_owned()]].concat();
    let node = NodeProcess::try_start_in(ns, &dir, &flags).await?;
    let found = try_eventually(format!("a connection to {target}"), FRESH_CONNECT, async || {
        node.connected_peers().await.iter().any(|p| p == target)
    })
    .await;
    drop(node);
    found
}

/// Every node's record, as pub1 holds it: its key, its addresses.
async fn node_records(w: &World) -> BTreeMap<String, Vec<String>> {
    let t = table(&w.pubs[0]).await;
    w.ids().into_iter().map(|id| (id.clone(), t.get(&id).map(addrs_of).unwrap_or_default())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netns_every_record_carries_only_addresses_a_fresh_node_connects_through() {
    let _serial = SERIAL.lock().await;
    let test = "netns_every_record_carries_only_addresses_a_fresh_node_connects_through";
    let Some(net) = Internet::build_or_skip(test) else { return };
    let w = World::start(net, 0).await;
    // Records change as nodes learn their reachability: wait (bounded) until pub1 holds every
    // node's record with addresses and none of them unusable; judge what is there at the end.
    let settled =
        try_eventually("every node's record on pub1, with usable addresses only", TARGET_WAIT, async || {
            let records = node_records(&w).await;
            let bad = bad_addresses(&table(&w.pubs[0]).await);
            if records.values().all(|a| !a.is_empty()) && bad.is_empty() {
                Ok(())
            } else {
                Err((records, bad))
            }
        })
        .await;
    let mut bad = Vec::new();
    for p in &w.pubs {
        bad.extend(bad_addresses(&table(p).await));
    }
    println!(
        "NAT TARGET loopback/unconfirmed-private addresses in the public nodes' tables: {} (target 0)",
        bad.len()
    );
    for node in w.all() {
        let status = node.status().await;
        let who = w.name_of(status["peer_id"].as_str().unwrap_or_default());
        println!("netns: {who} reachability: {}", reach_summary(&status));
    }
    let mut failures = Vec::new();
    let mut n = 0;
    for (id, addrs) in node_records(&w).await {
        for addr in addrs {
            n += 1;
            let result = fresh_node_connects(&w, n, &id, &addr).await;
            let verdict = if result.is_ok() { "connected" } else { "FAILED" };
            println!("netns: fresh node via {addr} ({}): {verdict}", w.name_of(&id));
            if let Err(e) = result {
                failures.push(format!("{addr}: {e}"));
            }
        }
    }
    assert!(settled.is_ok(), "{}", settled.unwrap_err());
    assert!(bad.is_empty(), "unusable addresses in the public nodes' tables: {bad:#?}");
    assert!(failures.is_empty(), "addresses a fresh node could not connect through: {failures:#?}");
}

// ---------------------------------------------------------------------------------------------
// Hole punching and relays.

/// Home `a` and home `b` are connected (as `a` reports) over a direct flow.
async fn direct(w: &World, a: usize, b: usize) -> bool {
    w.homes[a].connected_peers().await.contains(&w.home_ids[b]) && direct_flow(&w.net, a, b)
}

/// Home `h` is reachable: every other home node is connected to it (which, from behind their
/// NATs, only a relay or a punched hole allows).
async fn reachable(w: &World, h: usize) -> bool {
    for (k, other) in w.homes.iter().enumerate() {
        if k != h && !other.connected_peers().await.contains(&w.home_ids[h]) {
            return false;
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netns_port_preserving_homes_connect_directly_and_the_symmetric_one_through_a_relay() {
    let _serial = SERIAL.lock().await;
    let test = "netns_port_preserving_homes_connect_directly_and_the_symmetric_one_through_a_relay";
    let Some(net) = Internet::build_or_skip(test) else { return };
    let w = World::start(net, 0).await;
    let deadline = w.started + TARGET_WAIT;
    let homes = w.homes.len();
    let mut reached: Vec<Option<Duration>> = vec![None; homes];
    let mut punched: Option<Duration> = None;
    while Instant::now() < deadline && (reached.iter().any(Option::is_none) || punched.is_none()) {
        for (h, at) in reached.iter_mut().enumerate() {
            if at.is_none() && reachable(&w, h).await {
                *at = Some(w.started.elapsed());
            }
        }
        if punched.is_none() && direct(&w, 0, 1).await && direct(&w, 1, 0).await {
            punched = Some(w.started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let n = reached.iter().flatten().count();
    println!("netns: home nodes reachable at {reached:?}; home1-home2 direct at {punched:?}");
    println!(
        "NAT TARGET home nodes reachable (direct or relayed) within 30 s: {n}/{homes} ({:.0}%)",
        percent(n, homes)
    );
    println!(
        "NAT TARGET port-preserving home pairs direct within 30 s: {}/1 ({:.0}%)",
        punched.is_some() as usize,
        percent(punched.is_some() as usize, 1)
    );
    let symmetric_direct = direct_flow(&w.net, 2, 0) || direct_flow(&w.net, 2, 1);
    println!("netns: home3 (symmetric NAT) has a direct flow to another home: {symmetric_direct}");
    for (k, home) in w.homes.iter().enumerate() {
        println!("netns: home{} reachability: {}", k + 1, reach_summary(&home.status().await));
    }
    if punched.is_none() {
        let (r1, r2) = (&w.net.homes[0].router, &w.net.homes[1].router);
        let flows = w.net.conntrack(&r1.ns);
        let between: Vec<&str> = flows.lines().filter(|l| l.contains(&r2.ip.to_string())).collect();
        println!("netns: r1's flows to r2 ({}): {between:#?}", r2.ip);
        let log = w.homes[0].log();
        let punching: Vec<&str> =
            log.lines().filter(|l| l.contains("dcutr") || l.contains("punch")).collect();
        println!("netns: home1's log lines on hole punching: {punching:#?}");
    }
    assert!(punched.is_some(), "home1 and home2 (port-preserving NATs) not directly connected within 30 s");
    assert_eq!(n, homes, "home nodes not reachable by the other homes within 30 s: {reached:?}");
}

// ---------------------------------------------------------------------------------------------
// Write propagation.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netns_a_write_at_a_home_node_reaches_every_other_node() {
    let _serial = SERIAL.lock().await;
    let test = "netns_a_write_at_a_home_node_reaches_every_other_node";
    let Some(net) = Internet::build_or_skip(test) else { return };
    let w = World::start(net, 0).await;
    w.converged(TARGET_WAIT).await;
    // Receivers: pub1, pub2, home2, home3.
    let receivers: Vec<&NodeProcess> =
        w.all().into_iter().filter(|n| !std::ptr::eq(*n, &w.homes[0])).collect();
    let lags = propagation(&w.homes[0], &receivers, "home").await;
    let missing = report("from home1 to every node", &lags, &[0, 1, 2, 3]);
    report("from home1 to the other home nodes", &lags, &[2, 3]);
    for (r, who) in ["pub1", "pub2", "home2", "home3"].iter().enumerate() {
        if let Some((p50, p99, _)) = propagation::percentiles(&lags, &[r]) {
            println!("netns: from home1 to {who}: p50 {p50:.1} ms, p99 {p99:.1} ms");
        }
    }
    // Same-run baseline: between the two public nodes, directly connected, no NAT in between.
    let baseline = propagation(&w.pubs[0], &[&w.pubs[1]], "baseline").await;
    report("baseline, pub1 to pub2 (no NAT)", &baseline, &[0]);
    let cpu: Vec<String> = w.all().iter().map(|n| format!("{:.2}", n.cpu_time().as_secs_f64())).collect();
    println!("netns: CPU seconds used by pub1, pub2, home1, home2, home3: {}", cpu.join(", "));
    assert_eq!(missing, 0, "{missing} (write, node) arrivals missing {ARRIVAL_BOUND:?} after the last write");
}

// ---------------------------------------------------------------------------------------------
// Rejoining without the bootstrap nodes.

async fn get(node: &NodeProcess, key: &str) -> Value {
    node.request(json!({"message_type": 7, "data": {"peer_id": key}})).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netns_a_home_node_restarted_with_the_bootstrap_nodes_down_rejoins_from_its_table() {
    let _serial = SERIAL.lock().await;
    let test = "netns_a_home_node_restarted_with_the_bootstrap_nodes_down_rejoins_from_its_table";
    let Some(net) = Internet::build_or_skip(test) else { return };
    // pub3: a public node that is no one's bootstrap node; home1 knows it only from its table.
    let mut w = World::start(net, 1).await;
    w.converged(TARGET_WAIT).await;
    let pub3 = w.pub_ids[2].clone();
    // A record lists addresses once they are confirmed, some time after the node joined.
    eventually("an address of pub3 in home1's table", TARGET_WAIT, async || {
        let record = table(&w.homes[0]).await.get(&pub3).cloned();
        if record.as_ref().is_some_and(|r| !addrs_of(r).is_empty()) {
            Ok(())
        } else {
            Err(record)
        }
    })
    .await;
    // home1 stops; a write it misses reaches pub3; then both bootstrap nodes die.
    w.homes[0].terminate();
    let missed = json!({"message_type": 3, "data": {"peer_id": "nat-missed", "name": "m", "ip": "198.18.0.201", "port": "1"}});
    assert_eq!(w.homes[1].request(missed).await["result"], "completed");
    eventually("the write at home2 on pub3", TARGET_WAIT, async || {
        get(&w.pubs[2], "nat-missed").await["result"] == "completed"
    })
    .await;
    w.pubs[0].kill9();
    w.pubs[1].kill9();
    // Otherwise pub3 gets back in through the NAT mapping of home1's last connection to it, and
    // the test would not show that home1 dials from its table.
    w.net.forget_flows(&w.net.homes[0].router.ns).unwrap_or_else(|e| panic!("flushing r1's flows: {e}"));
    let home1 = w.homes.remove(0).restart().await;
    let t0 = Instant::now();
    let caught_up = try_eventually("home1 to catch up with the write it missed", REJOIN, async || {
        let peers = home1.connected_peers().await;
        let got = get(&home1, "nat-missed").await["result"] == "completed";
        if got {
            Ok(())
        } else {
            Err(peers)
        }
    })
    .await;
    println!(
        "netns: home1 restarted with pub1, pub2 down: caught up: {} after {:?}",
        caught_up.is_ok(),
        t0.elapsed()
    );
    caught_up.unwrap_or_else(|e| panic!("{e}; log of home1:\n{}", home1.log()));
    // Then it is back among the remaining nodes: connected to pub3, holding pub3's table, where
    // the other homes' records list addresses and none through a dead relay. (Whether it also
    // connects to the other homes is up to its peer discovery: only printed.)
    let dead = w.pub_ids[..2].to_vec();
    let others = [w.home_ids[1].clone(), w.home_ids[2].clone()];
    let back = try_eventually("home1 back among the remaining nodes", TARGET_WAIT, async || {
        let peers = home1.connected_peers().await;
        let same = common::process::digests(&[&home1, &w.pubs[2]]).await;
        let t = table(&home1).await;
        let addrs: Vec<Vec<String>> =
            others.iter().map(|o| t.get(o).map(addrs_of).unwrap_or_default()).collect();
        let stale: Vec<&String> =
            addrs.iter().flatten().filter(|a| dead.iter().any(|d| a.contains(d))).collect();
        if peers.contains(&pub3)
            && same[0] == same[1]
            && stale.is_empty()
            && addrs.iter().all(|a| !a.is_empty())
        {
            Ok(())
        } else {
            Err((peers.iter().map(|p| w.name_of(p)).collect::<Vec<_>>(), addrs))
        }
    })
    .await;
    let peers: Vec<String> = home1.connected_peers().await.iter().map(|p| w.name_of(p)).collect();
    println!(
        "netns: home1 back among the remaining nodes: {back:?} after {:?}; connected to {peers:?}",
        t0.elapsed()
    );
    if back.is_err() {
        for (k, home) in w.homes.iter().enumerate() {
            let status = home.status().await;
            let peers: Vec<String> = home.connected_peers().await.iter().map(|p| w.name_of(p)).collect();
            println!("netns: home{} connected to {peers:?}; {}", k + 2, reach_summary(&status));
        }
    }
    back.unwrap_or_else(|e| panic!("{e}"));
}

// ---------------------------------------------------------------------------------------------
// Port conflicts.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netns_a_second_node_on_an_occupied_p2p_port_is_refused_with_a_clear_error() {
    let _serial = SERIAL.lock().await;
    let test = "netns_a_second_node_on_an_occupied_p2p_port_is_refused_with_a_clear_error";
    let Some(net) = Internet::build_or_skip(test) else { return };
    let dir = tempfile::tempdir().unwrap();
    let ns = net.public[0].ns.clone();
    let first = NodeProcess::start_in(&ns, &dir.path().join("first"), &name("first")).await;
    let first_id = first.status().await["peer_id"].clone();
    // Same namespace, same default p2p port, another manager port and data dir.
    let second = dir.path().join("second").display().to_string();
    let args = ["--data-dir", &second, "--manager", "127.0.0.1:3003", "--name", "second"].map(String::from);
    let out = run_to_exit_in(Some(&ns), &args, Duration::from_secs(15));
    assert_refused("a second node", &out);
    assert_eq!(first.status().await["peer_id"], first_id, "the first node still answers");
    // Another program holding only the UDP port (QUIC's): refused as well.
    let ns = net.public[1].ns.clone();
    let udp = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), NETNS_P2P_PORT);
    let _holder = in_ns(&ns, move || std::net::UdpSocket::bind(udp)).await.unwrap();
    let third = dir.path().join("third").display().to_string();
    let args = ["--data-dir", &third, "--manager", "127.0.0.1:3002", "--name", "third"].map(String::from);
    assert_refused(
        "a node whose UDP port another program holds",
        &run_to_exit_in(Some(&ns), &args, Duration::from_secs(15)),
    );
}

/// The node exited by itself with an error naming the p2p port.
fn assert_refused(what: &str, out: &std::process::Output) {
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code().is_some_and(|c| c != 0),
        "{what} on port {NETNS_P2P_PORT} did not exit with an error within 15 s ({}); log:\n{log}",
        out.status
    );
    assert!(log.contains(&NETNS_P2P_PORT.to_string()), "{what}: the error does not name the port:\n{log}");
    println!("netns: {what}: refused: {}", log.lines().last().unwrap_or_default());
}
