//! A node's own record at the end of its life (issue 10, part B, point 3), with real processes:
//! a node stopped with `--leave` tombstones its record everywhere; a node that just stops has its
//! record dropped by every other node once `--node-ttl` has passed, and the digests agree.

mod common;

use std::time::{Duration, Instant};

use common::eventually;
use common::process::{digests, run_to_exit, NodeProcess};
use serde_json::json;

const CONVERGE: Duration = Duration::from_secs(30);

/// Until every node's digest is the same and each holds `records` live records.
async fn wait_converged(nodes: &[&NodeProcess], records: u64) {
    eventually(format!("equal digests and {records} records"), CONVERGE, async || {
        let d = digests(nodes).await;
        let mut sizes = Vec::new();
        for n in nodes {
            sizes.push(n.status().await["table_size"].as_u64().unwrap());
        }
        let done = d.windows(2).all(|w| w[0] == w[1]) && sizes.iter().all(|s| *s == records);
        if done {
            Ok(())
        } else {
            Err(format!("digests {d:?}, sizes {sizes:?}"))
        }
    })
    .await
}

async fn holds_record(node: &NodeProcess, peer_id: &str) -> bool {
    let got = node.request(json!({"message_type": 7, "data": {"peer_id": peer_id}})).await;
    got["result"] == "completed"
}

/// Three nodes, the seed first; `extra` for every node, `last` for the third only.
async fn three_nodes(dir: &std::path::Path, extra: &[&str], last: &[&str]) -> [NodeProcess; 3] {
    let flags = |more: &[&str]| extra.iter().chain(more).map(|s| s.to_string()).collect::<Vec<_>>();
    let a = NodeProcess::start(&dir.join("a"), &flags(&[])).await;
    let bootstrap = format!("/ip4/127.0.0.1/tcp/{}", a.p2p_port);
    let b = NodeProcess::start(&dir.join("b"), &flags(&["--bootstrap", &bootstrap])).await;
    let mut third = vec!["--bootstrap", bootstrap.as_str()];
    third.extend_from_slice(last);
    let c = NodeProcess::start(&dir.join("c"), &flags(&third)).await;
    [a, b, c]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stopped_with_leave_has_its_record_tombstoned_on_every_other_node() {
    let dir = tempfile::tempdir().unwrap();
    let [a, b, mut c] = three_nodes(dir.path(), &[], &["--leave"]).await;
    wait_converged(&[&a, &b, &c], 3).await;
    let leaver = c.status().await["peer_id"].as_str().unwrap().to_owned();

    let stopped = Instant::now();
    assert!(c.terminate().success(), "a clean exit; log: {}", c.log());
    let took = stopped.elapsed();
    assert!(c.log().contains("left the network"), "{}", c.log());
    // Gone from the others by the time it exited (or moments after), as a tombstone.
    wait_converged(&[&a, &b], 2).await;
    let gone = stopped.elapsed();
    for n in [&a, &b] {
        assert!(!holds_record(n, &leaver).await);
        assert_eq!(n.status().await["tombstones"], 1, "the own record's tombstone");
    }
    eprintln!("--leave: exited {took:?} after SIGTERM; record gone everywhere after {gone:?}");
    // Started again, the node announces itself anew: its fresh record beats the tombstone.
    let c = c.restart().await;
    wait_converged(&[&a, &b, &c], 3).await;
    assert!(holds_record(&a, &leaver).await && holds_record(&b, &leaver).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_nodes_record_expires_on_every_other_node_and_the_digests_agree() {
    const TTL: Duration = Duration::from_secs(4);
    let dir = tempfile::tempdir().unwrap();
    // Every live node refreshes its own record well within the TTL (1.5 s, jittered to at most
    // 1.8 s, against 4 s), so only the stopped node's record may expire.
    let flags = ["--node-ttl", "4s", "--refresh-interval", "1500ms"];
    let [a, b, mut c] = three_nodes(dir.path(), &flags, &[]).await;
    wait_converged(&[&a, &b, &c], 3).await;
    let dead = c.status().await["peer_id"].as_str().unwrap().to_owned();
    let survivors = [
        a.status().await["peer_id"].as_str().unwrap().to_owned(),
        b.status().await["peer_id"].as_str().unwrap().to_owned(),
    ];

    c.kill9();
    let killed = Instant::now();
    assert!(holds_record(&a, &dead).await && holds_record(&b, &dead).await, "not expired yet");
    // Its last refresh was at most 1.8 s before the kill; a collection runs every TTL / 4.
    eventually("the dead node's record to expire on both others", TTL * 3, async || {
        !holds_record(&a, &dead).await && !holds_record(&b, &dead).await
    })
    .await;
    let gone = killed.elapsed();
    assert!(gone > Duration::from_millis(1500), "not before the TTL: gone after {gone:?}");
    wait_converged(&[&a, &b], 2).await;
    for n in [&a, &b] {
        let s = n.status().await;
        assert_eq!(s["table_stats"]["nodes_expired"], 1, "{s}");
        assert_eq!(s["tombstones"], 0, "removed outright, no tombstone: {s}");
        for id in &survivors {
            assert!(holds_record(n, id).await, "live nodes' records never expire");
        }
    }
    // Through several more refreshes and anti-entropy rounds nothing brings it back.
    tokio::time::sleep(TTL).await;
    wait_converged(&[&a, &b], 2).await;
    assert!(!holds_record(&a, &dead).await && !holds_record(&b, &dead).await);
    eprintln!("--node-ttl 4s: record gone everywhere {gone:?} after SIGKILL");
}

#[test]
fn a_node_ttl_within_two_refresh_intervals_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let args: Vec<String> = ["--data-dir", dir.path().to_str().unwrap(), "--node-ttl", "2s"]
        .into_iter()
        .chain(["--refresh-interval", "1s", "--listen", "/ip4/127.0.0.1/tcp/0", "--manager", "127.0.0.1:0"])
        .map(String::from)
        .collect();
    let out = run_to_exit(&args, Duration::from_secs(10));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("must be more than 2 times the refresh interval"), "{stderr}");
}
