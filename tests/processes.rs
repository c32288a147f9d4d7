//! Separate `udht-node` processes joined by `--bootstrap /ip4/127.0.0.1/tcp/PORT` (no `/p2p/`),
//! checked only through their manager sockets, as a user would.

mod common;

use std::time::Duration;

use common::eventually;
use common::process::{digests, NodeProcess};
use serde_json::{json, Value};

const CONVERGE: Duration = Duration::from_secs(30);

/// Until every node's digest is the same.
async fn wait_converged(nodes: &[&NodeProcess]) {
    eventually("convergence (equal digests)", CONVERGE, async || {
        let d = digests(nodes).await;
        if d.windows(2).all(|w| w[0] == w[1]) {
            Ok(())
        } else {
            Err(d)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_joined_by_a_bare_bootstrap_address_converge() {
    let dir = tempfile::tempdir().unwrap();
    let seed = NodeProcess::start(&dir.path().join("a"), &["--name".into(), "a".into()]).await;
    let bootstrap = vec!["--bootstrap".to_string(), format!("/ip4/127.0.0.1/tcp/{}", seed.p2p_port)];
    let b = NodeProcess::start(&dir.path().join("b"), &bootstrap).await;
    let mut c = NodeProcess::start(&dir.path().join("c"), &bootstrap).await;

    let add = json!({"message_type": 3, "data": {"peer_ip": "101.3.4.2", "peer_port": "8001", "peer_name": "Felipe Nunes"}});
    assert_eq!(b.request(add).await["result"], "completed");
    wait_converged(&[&seed, &b, &c]).await;
    let got = c.request(json!({"message_type": 7, "data": {"peer_ip": "101.3.4.2"}})).await;
    assert_eq!(got["data"]["name"], "Felipe Nunes");
    for n in [&seed, &b, &c] {
        let s = n.status().await;
        assert_eq!(s["table_size"], 4, "three own records and one peer");
        assert_eq!(s["connected_peers"].as_array().unwrap().len(), 2, "c found b through the DHT");
    }

    // c is killed, misses writes, and catches up after restart without any new write.
    c.kill9();
    let rm = json!({"message_type": 4, "data": {"peer_ip": "101.3.4.2"}});
    assert_eq!(seed.request(rm).await["result"], "completed");
    let rev2 = json!({"message_type": 3, "data": {"peer_id": "QmLate", "name": "late", "ip": "5.6.7.8", "ports": {"userSync": 3003}}});
    assert_eq!(b.request(rev2).await["result"], "completed");
    let c = c.restart().await;
    wait_converged(&[&seed, &b, &c]).await;
    let late = c.request(json!({"message_type": 7, "data": {"peer_id": "QmLate"}})).await;
    assert_eq!(late["data"]["ports"]["userSync"], 3003);
    let gone = c.request(json!({"message_type": 7, "data": {"peer_ip": "101.3.4.2"}})).await;
    assert_eq!(gone["result"], "error");
}

/// A rogue that is just a standard `udht-node` joined to the network cannot change or delete
/// another node's record through its own manager socket (a peer id's key belongs to that peer),
/// while its writes of multi-writer keys (records keyed by ip) still spread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rogue_node_cannot_write_another_nodes_record_but_its_shared_writes_spread() {
    let dir = tempfile::tempdir().unwrap();
    let victim = NodeProcess::start(&dir.path().join("victim"), &["--name".into(), "victim".into()]).await;
    let bootstrap = vec!["--bootstrap".to_string(), format!("/ip4/127.0.0.1/tcp/{}", victim.p2p_port)];
    let rogue = NodeProcess::start(&dir.path().join("rogue"), &bootstrap).await;
    let victim_id = victim.status().await["peer_id"].as_str().unwrap().to_owned();
    wait_converged(&[&victim, &rogue]).await;

    let forge =
        json!({"message_type": 6, "data": {"peer_id": victim_id, "name": "forged", "ip": "198.18.6.6"}});
    let reply = rogue.request(forge).await;
    assert_eq!(reply["result"], "error", "{reply}");
    assert!(reply["error"].as_str().unwrap().contains("only that node may write"), "{reply}");
    let delete = rogue.request(json!({"message_type": 4, "data": {"peer_id": victim_id}})).await;
    assert_eq!(delete["result"], "error", "{delete}");

    let shared = json!({"message_type": 3, "data": {"peer_ip": "198.18.0.9", "peer_port": "8001", "peer_name": "svc"}});
    assert_eq!(rogue.request(shared).await["result"], "completed");
    wait_converged(&[&victim, &rogue]).await;
    let got = victim.request(json!({"message_type": 7, "data": {"peer_ip": "198.18.0.9"}})).await;
    assert_eq!(got["data"]["name"], "svc");
    for n in [&victim, &rogue] {
        let record = n.request(json!({"message_type": 7, "data": {"peer_id": victim_id}})).await;
        assert_eq!(record["data"]["name"], "victim", "the victim's record is its own on every node");
    }
}

/// `ctl --wait` keeps trying until the node listens, so a script can start a node and talk to it
/// at once; without it, a node that is not there yet is exit 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_with_wait_reaches_a_node_that_starts_after_it() {
    let port = common::process::free_port();
    let manager = format!("127.0.0.1:{port}");
    let ctl = |wait: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_udht-node"))
            .args(["ctl", "--manager", manager.as_str(), "status"])
            .args(wait)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    assert_eq!(ctl(&[]).wait_with_output().unwrap().status.code(), Some(2), "nothing listens yet");
    let waiting = ctl(&["--wait", "20s"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (node, _dir) = common::start_node_with(|c| c.manager_addr = manager.parse().unwrap()).await;
    let out = tokio::task::spawn_blocking(move || waiting.wait_with_output().unwrap()).await.unwrap();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let reply: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reply["data"]["peer_id"], node.peer_id.as_str());
    node.shutdown().await.unwrap();
}
