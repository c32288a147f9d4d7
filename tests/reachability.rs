//! Reachability at the loopback level, with real `udht-node` processes: QUIC beside TCP, AutoNAT
//! confirming addresses (status), a taken p2p port refused at start, and rejoining from the
//! stored table when every bootstrap node is down. NATs, relays and hole punches need namespaces
//! (tests/nat.rs).

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::process::{free_port, NodeProcess};
use common::{eventually, http_get};
use serde_json::{json, Value};

/// AutoNAT asks every 2 s; a few rounds are plenty.
const CONFIRM: Duration = Duration::from_secs(30);
const JOIN: Duration = Duration::from_secs(30);

fn bootstrap(addr: String) -> Vec<String> {
    vec!["--bootstrap".into(), addr]
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect()).unwrap_or_default()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn peer_id(node: &NodeProcess) -> String {
    node.status().await["peer_id"].as_str().unwrap().to_owned()
}

/// Waits until `node` lists `peer` among its connected peers.
async fn wait_connected(node: &NodeProcess, peer: &str) {
    eventually(format!("a connection to {peer}"), JOIN, async || {
        let peers = node.connected_peers().await;
        if peers.iter().any(|p| p == peer) {
            Ok(())
        } else {
            Err(peers)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joins_through_a_quic_address_and_autonat_confirms_its_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let quic = format!("/ip4/127.0.0.1/udp/{}/quic-v1", free_udp_port());
    let metrics: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let a_args = ["--listen".into(), quic.clone(), "--metrics".into(), metrics.to_string()];
    let a = NodeProcess::start(&dir.path().join("a"), &a_args).await;
    let alone = eventually("listening on QUIC", JOIN, async || {
        let s = a.status().await;
        if strings(&s["listen_addrs"]).contains(&quic) {
            Ok(s)
        } else {
            Err(s)
        }
    })
    .await;
    assert_eq!(alone["reachability"], "unknown", "nobody to test it yet: {alone}");
    let a_id = peer_id(&a).await;
    // The only address b knows is a's QUIC address.
    let b = NodeProcess::start(&dir.path().join("b"), &bootstrap(format!("{quic}/p2p/{a_id}"))).await;
    wait_connected(&b, &a_id).await;

    // Each tests the other's addresses: both public (on loopback, which these nodes listen on
    // only, so loopback addresses are the ones to confirm and advertise).
    for node in [&a, &b] {
        let status = eventually("reachability public", CONFIRM, async || {
            let s = node.status().await;
            if s["reachability"] == "public" {
                Ok(s)
            } else {
                Err(s)
            }
        })
        .await;
        let external = strings(&status["external_addrs"]);
        assert!(
            !external.is_empty() && external.iter().all(|a| a.starts_with("/ip4/127.0.0.1/")),
            "{status}"
        );
        assert_eq!(status["relay_reservations"], json!([]), "a public node reserves no relay: {status}");
        let n = &status["net_stats"];
        assert!(n["direct_connections"].as_u64().unwrap() >= 1, "{status}");
        assert_eq!(n["relayed_connections"], 0, "{status}");
        assert_eq!(n["hole_punches_tried"], 0, "nothing to punch on loopback: {status}");
        assert_eq!(n["hole_punches_succeeded"], 0, "{status}");
    }
    // The same on the status page's JSON and in /metrics.
    let (code, body) = http_get(metrics, "/api/status").await;
    assert_eq!(code, 200);
    let page: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["reachability"], "public", "{page}");
    assert!(!strings(&page["external_addrs"]).is_empty(), "{page}");
    let (_, text) = http_get(metrics, "/metrics").await;
    assert!(text.lines().any(|l| l == "udht_reachable 1"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("udht_hole_punches_total{result=\"succeeded\"} 0")), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_on_a_taken_p2p_port_fails_to_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let udp = free_udp_port();
    let quic = format!("/ip4/127.0.0.1/udp/{udp}/quic-v1");
    let first = NodeProcess::start(&dir.path().join("first"), &["--listen".into(), quic.clone()]).await;
    let first_id = peer_id(&first).await;

    let taken_tcp = format!("/ip4/127.0.0.1/tcp/{}", first.p2p_port);
    for (taken, port) in [(taken_tcp, format!("{}/tcp", first.p2p_port)), (quic, format!("{udp}/udp"))] {
        let second = dir.path().join(format!("second-{}", port.replace('/', "-")));
        let within = Duration::from_secs(15);
        let exited = match NodeProcess::start_once(&second, &["--listen".into(), taken.clone()], within).await
        {
            Ok(_) => panic!("a second node started on {taken}, which the first node holds"),
            Err(exited) => exited,
        };
        assert!(exited.status.is_some_and(|s| !s.success()), "it must exit with an error: {exited:?}");
        let wanted = format!("p2p port {port} is already in use by another process");
        assert!(exited.log.contains(&wanted), "wanted {wanted:?} in the log: {}", exited.log);
    }
    // The first node still owns its port and serves.
    assert_eq!(peer_id(&first).await, first_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_while_every_bootstrap_node_is_down_rejoins_from_its_stored_table() {
    let dir = tempfile::tempdir().unwrap();
    let mut seed = NodeProcess::start(&dir.path().join("seed"), &[]).await;
    let via_seed = bootstrap(format!("/ip4/127.0.0.1/tcp/{}", seed.p2p_port));
    let b_dir = dir.path().join("b");
    let mut b = NodeProcess::start(&b_dir, &via_seed).await;
    let c = NodeProcess::start(&dir.path().join("c"), &via_seed).await;
    let c_id = peer_id(&c).await;
    // b stores c's record (and with it c's addresses).
    eventually("c's record at b", JOIN, async || {
        let got = b.request(json!({"message_type": 7, "data": {"peer_id": c_id}})).await;
        (got["result"] == "completed").then_some(())
    })
    .await;

    seed.kill9();
    b.kill9();
    drop(b);
    // On new ports: c's routing table has b's old address only, so c cannot find b; b's only
    // bootstrap node is dead. Only b's stored table leads it back to c.
    let b = NodeProcess::start(&b_dir, &via_seed).await;
    wait_connected(&b, &c_id).await;
    // (Liveness probes of stored records would dial c too, later; this is the start-up dial.)
    assert!(b.log().contains("dialling peers of the stored table"), "{}", b.log());

    let add = json!({"message_type": 3, "data": {"peer_ip": "198.18.0.77", "peer_port": "8001", "peer_name": "after"}});
    assert_eq!(c.request(add).await["result"], "completed");
    eventually("c's write at b", JOIN, async || {
        let got = b.request(json!({"message_type": 7, "data": {"peer_ip": "198.18.0.77"}})).await;
        (got["result"] == "completed").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_private_network_quic_is_off_and_the_log_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("swarm.key");
    std::fs::write(&key, udht::net::Psk::generate().to_key_file()).unwrap();
    let quic = format!("/ip4/127.0.0.1/udp/{}/quic-v1", free_udp_port());
    let args = ["--psk".into(), key.display().to_string(), "--listen".into(), quic];
    let node = NodeProcess::start(&dir.path().join("a"), &args).await;
    let status = eventually("listening", JOIN, async || {
        let s = node.status().await;
        if strings(&s["listen_addrs"]).is_empty() {
            Err(s)
        } else {
            Ok(s)
        }
    })
    .await;
    let listening = strings(&status["listen_addrs"]);
    assert!(listening.iter().all(|a| !a.contains("quic")), "{status}");
    assert!(node.log().contains("QUIC is off"), "{}", node.log());
}
