//! The change feed (type 11): every change once, in apply order, with its origin; a snapshot
//! without a gap; a watcher that stalls is cut off with a `lagged` line and never slows writers.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{start_cluster, start_node_with, Conn};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

fn watch(snapshot: bool) -> Vec<u8> {
    json!({"message_type": 11, "data": {"snapshot": snapshot}}).to_string().into_bytes()
}

fn add(key: &str, name: &str) -> Vec<u8> {
    json!({"message_type": 3, "data": {"peer_id": key, "name": name, "ip": "198.18.0.9", "port": "1"}})
        .to_string()
        .into_bytes()
}

fn update(key: &str, name: &str) -> Vec<u8> {
    json!({"message_type": 6, "data": {"peer_id": key, "name": name}}).to_string().into_bytes()
}

async fn write(addr: SocketAddr, request: &[u8]) {
    let reply = Conn::connect(addr).await.request_json(request).await;
    assert_eq!(reply["result"], "completed", "{reply}");
}

/// A watcher's lines until `done` says it has seen enough (own records' refreshes are left out).
async fn collect(conn: &mut Conn, mut done: impl FnMut(&[Value]) -> bool) -> Vec<Value> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + WAIT;
    while !done(&seen) {
        assert!(Instant::now() < deadline, "the watcher saw only {seen:#?}");
        let line = conn.read_json().await;
        assert_eq!(line["action"], "peer changed", "{line}");
        if !line["key"].as_str().unwrap().starts_with("12D3") {
            seen.push(line);
        }
    }
    seen
}

#[tokio::test]
async fn a_watcher_sees_local_gossip_and_anti_entropy_changes_once_each_in_apply_order() {
    let (cluster, _dir) = start_cluster(3, |c| c.sync_interval = Duration::from_millis(300)).await;
    cluster.wait_converged(WAIT).await.unwrap();
    let mut watcher = Conn::connect(cluster.manager_addr(0)).await;
    watcher.send(&watch(false)).await;
    assert_eq!(watcher.read_json().await, json!({"action": "watch", "result": "ready"}));

    write(cluster.manager_addr(0), &add("local-1", "l1")).await;
    write(cluster.manager_addr(1), &add("gossip-1", "g1")).await;
    cluster.wait_key_everywhere("gossip-1", WAIT).await.unwrap();
    // Cut off, node 0 misses these; anti-entropy brings them after the heal.
    cluster.partition(&[&[0], &[1, 2]]).await.unwrap();
    write(cluster.manager_addr(1), &add("ae-1", "a1")).await;
    write(cluster.manager_addr(2), &update("gossip-1", "g2")).await;
    cluster.heal(&[&[0], &[1, 2]]).await.unwrap();
    cluster.wait_converged(WAIT).await.unwrap();

    let seen = collect(&mut watcher, |s| s.len() >= 4).await;
    let summary: Vec<(String, String, String)> = seen
        .iter()
        .map(|l| {
            (
                l["key"].as_str().unwrap().into(),
                l["data"]["name"].as_str().unwrap().into(),
                l["origin"].as_str().unwrap().into(),
            )
        })
        .collect();
    let pos = |key: &str, name: &str| summary.iter().position(|(k, n, _)| k == key && n == name);
    assert_eq!(summary.len(), 4, "each change once: {summary:?}");
    for (key, name, origin) in [
        ("local-1", "l1", "local"),
        ("gossip-1", "g1", "remote"),
        ("ae-1", "a1", "remote"),
        ("gossip-1", "g2", "remote"),
    ] {
        let i = pos(key, name).unwrap_or_else(|| panic!("{key}={name} missing from {summary:?}"));
        assert_eq!(summary[i].2, origin, "{summary:?}");
    }
    assert!(pos("local-1", "l1") < pos("gossip-1", "g1"), "apply order: {summary:?}");
    assert!(pos("gossip-1", "g1") < pos("gossip-1", "g2"), "a key's versions in order: {summary:?}");
    cluster.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_snapshot_and_the_stream_after_it_have_no_gap_under_concurrent_writes() {
    let (node, _dir) = start_node_with(|_| {}).await;
    let addr = node.manager_addr;
    const N: usize = 3000;
    let writers: Vec<_> = (0..4)
        .map(|w| {
            tokio::spawn(async move {
                let mut conn = Conn::connect(addr).await;
                for i in (w..N).step_by(4) {
                    let reply = conn.request_json(&add(&format!("k{i:05}"), "x")).await;
                    assert_eq!(reply["result"], "completed", "{reply}");
                }
            })
        })
        .collect();
    // Start watching in the middle of the writes.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut watcher = Conn::connect(addr).await;
    watcher.send(&watch(true)).await;
    let mut snapshot = HashSet::new();
    loop {
        let line = watcher.read_json().await;
        if line["action"] == "watch" {
            assert_eq!(line["result"], "ready");
            break;
        }
        assert_eq!(line["origin"], "snapshot", "{line}");
        snapshot.insert(line["key"].as_str().unwrap().to_owned());
    }
    for w in writers {
        w.await.unwrap();
    }
    let wanted = |k: &String| k.starts_with('k');
    let in_snapshot = snapshot.iter().filter(|k| wanted(k)).count();
    assert!(
        in_snapshot > 0 && in_snapshot < N,
        "the watch began mid-writes ({in_snapshot} of {N} in the snapshot)"
    );
    let mut streamed: HashMap<String, usize> = HashMap::new();
    let stream = collect(&mut watcher, |s| s.len() >= N - in_snapshot).await;
    for line in stream {
        *streamed.entry(line["key"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    for i in 0..N {
        let key = format!("k{i:05}");
        let times = usize::from(snapshot.contains(&key)) + streamed.get(&key).copied().unwrap_or(0);
        assert_eq!(times, 1, "{key} seen {times} times (snapshot or stream, exactly once)");
    }
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_stalled_watcher_is_cut_off_with_a_lagged_line_and_writers_go_on() {
    let (node, _dir) = start_node_with(|_| {}).await;
    let addr = node.manager_addr;
    let mut stalled = Conn::connect(addr).await;
    stalled.send(&watch(false)).await;
    assert_eq!(stalled.read_json().await["result"], "ready");

    // Far more changes than the watcher's queue and both sockets' buffers hold, while it reads nothing.
    const WRITES: usize = 60_000;
    const BATCH: usize = 64;
    let started = Instant::now();
    let writers: Vec<_> = (0..8)
        .map(|w| {
            tokio::spawn(async move {
                let mut conn = Conn::connect(addr).await;
                for batch in (w * BATCH..WRITES).step_by(8 * BATCH).map(|s| s..(s + BATCH).min(WRITES)) {
                    let requests: Vec<u8> = batch.clone().flat_map(|i| add(&format!("w{i}"), "n")).collect();
                    conn.send(&requests).await;
                    for _ in batch {
                        assert_eq!(conn.read_json().await["result"], "completed");
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let took = started.elapsed();
    println!(
        "{WRITES} durable adds with a stalled watcher: {:.2} s ({:.0}/s)",
        took.as_secs_f64(),
        WRITES as f64 / took.as_secs_f64()
    );

    // Now it reads: what it was sent, then the lagged line, then the close.
    let mut changes = 0;
    let last = loop {
        let line = stalled.read_json().await;
        if line["action"] != "peer changed" {
            break line;
        }
        changes += 1;
    };
    assert_eq!(last["action"], "watch", "{last}");
    assert_eq!(last["result"], "error", "{last}");
    let error = last["error"].as_str().unwrap();
    let dropped: usize = error
        .strip_prefix("lagged: ")
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a lagged line: {error}"));
    assert!(dropped > 0 && error.ends_with("changes dropped; reconnect"), "{error}");
    assert!(changes + dropped <= WRITES + 16, "{changes} sent + {dropped} dropped");
    stalled.expect_eof().await;
    println!("the stalled watcher got {changes} changes, then lagged ({dropped} dropped)");

    let status = Conn::connect(addr).await.request_json(br#"{"message_type": 9}"#).await;
    assert_eq!(status["data"]["manager"]["watchers_lagged"], 1, "{status}");
    assert_eq!(status["data"]["manager"]["watchers"], 0, "{status}");
    node.shutdown().await.unwrap();
}

/// A watcher far behind (many of the node's turns, one batch each, queued for it) but within its
/// queue gets every change, once and in order, and no `lagged` line. (One write to a watcher
/// takes at most 64 batches; the batch after those was lost before, one in 65.)
#[tokio::test]
async fn a_watcher_far_behind_within_its_queue_gets_every_change() {
    let (node, _dir) = start_node_with(|_| {}).await;
    let addr = node.manager_addr;
    // Its socket fills after a few changes: the rest waits in the node, one batch per commit.
    let mut slow = Conn::connect_with_small_window(addr, 4096).await;
    slow.send(&watch(false)).await;
    assert_eq!(slow.read_json().await["result"], "ready");

    // Serial writes: each is its own commit and its own turn, so its own batch. Long names: the
    // changes (over 6 MB) overflow what the node's socket buffers for the watcher (at most 4 MiB
    // by default, `tcp_wmem`), and the rest waits in its queue (16,384 changes before it lags).
    const WRITES: usize = 6000;
    let name = "n".repeat(1000);
    let mut writer = Conn::connect(addr).await;
    for i in 0..WRITES {
        assert_eq!(writer.request_json(&add(&format!("s{i:05}"), &name)).await["result"], "completed");
    }
    println!("{WRITES} serial adds written while the watcher read nothing");

    let seen = collect(&mut slow, |seen| seen.len() == WRITES).await;
    let keys: Vec<&str> = seen.iter().map(|l| l["key"].as_str().unwrap()).collect();
    let expected: Vec<String> = (0..WRITES).map(|i| format!("s{i:05}")).collect();
    assert_eq!(keys, expected, "every change once, in order");
    // Asked only now: a watcher is counted as lagged when its `lagged` line is written, which
    // happens only once it has read what was queued before.
    let status = Conn::connect(addr).await.request_json(br#"{"message_type": 9}"#).await;
    assert_eq!(status["data"]["manager"]["watchers_lagged"], 0, "{status}");
    assert_eq!(status["data"]["manager"]["watchers"], 1, "{status}");
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn type_1_ends_a_watch_and_other_requests_are_refused_while_watching() {
    let (node, _dir) = start_node_with(|_| {}).await;
    let mut watcher = Conn::connect(node.manager_addr).await;
    watcher.send(&watch(true)).await;
    let own = watcher.read_json().await;
    assert_eq!(own["origin"], "snapshot", "the own record first: {own}");
    assert_eq!(watcher.read_json().await["result"], "ready");
    let refused = watcher.request_json(br#"{"message_type": 7, "data": {"peer_id": "x"}}"#).await;
    assert_eq!(refused["action"], "watch");
    assert!(refused["error"].as_str().unwrap().contains("message_type 1"), "{refused}");
    watcher.send(br#"{"message_type": 1}"#).await;
    watcher.expect_eof().await;
    let bad = Conn::connect(node.manager_addr)
        .await
        .request_json(br#"{"message_type": 11, "data": {"snapshot": 3}}"#)
        .await;
    assert!(bad["error"].as_str().unwrap().contains("snapshot"), "{bad}");
    node.shutdown().await.unwrap();
}

/// `udht-node ctl watch --snapshot` prints the stream line by line as the node sends it.
/// (Multi-threaded: the test blocks on the ctl's output while the in-process node serves it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_watch_prints_the_snapshot_ready_and_each_change() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let (node, _dir) = start_node_with(|_| {}).await;
    let mut ctl = Command::new(env!("CARGO_BIN_EXE_udht-node"))
        .args(["ctl", "--manager", &node.manager_addr.to_string(), "watch", "--snapshot"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = BufReader::new(ctl.stdout.take().unwrap());
    std::thread::spawn(move || stdout.lines().map_while(Result::ok).for_each(|l| drop(tx.send(l))));
    let next =
        || -> Value { serde_json::from_str(&rx.recv_timeout(WAIT).expect("a line from ctl watch")).unwrap() };
    assert_eq!(next()["origin"], "snapshot", "the own record");
    assert_eq!(next(), json!({"action": "watch", "result": "ready"}));
    write(node.manager_addr, &add("seen-by-ctl", "c")).await;
    let change = next();
    assert_eq!((change["key"].as_str(), change["origin"].as_str()), (Some("seen-by-ctl"), Some("local")));
    ctl.kill().unwrap();
    ctl.wait().unwrap();
    node.shutdown().await.unwrap();
}
