//! The original Files-for-Peers clients' exact exchanges, in Python, against `udht-node`
//! processes started with `--ports`: one JSON object without a newline, ONE `recv(4024)` (the
//! ledger's network layer) or `recv(1024)` (DHTSync), `pickle.loads`, then
//! `peer["ports"]["networkLayer"]` and `peer["ip"]` / `int(peer["port"])` on every record, own
//! records included. And the size of the table pickle against Python's own protocol 4.

mod common;

use std::time::Duration;

use common::eventually;
use common::process::NodeProcess;
use serde_json::{json, Value};
use udht::manager::client::Client;

const CONVERGE: Duration = Duration::from_secs(30);
const PORTS: [(&str, u16); 3] = [("networkLayer", 6002), ("userSync", 3003), ("fileSync", 3001)];

/// The ledger's network layer and DHTSync, as their source does it (`size` is their recv size).
const ORIGINAL_CLIENT: &str = r#"
import socket, json, pickle, sys
port, size = int(sys.argv[1]), int(sys.argv[2])
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.connect(("127.0.0.1", port))
sock.sendall(json.dumps({"message_type": 2}).encode())
bin = sock.recv(size)
table = pickle.loads(bin)
layers = {key: int(peer["ports"]["networkLayer"]) for key, peer in table.items()}
hosts = [[peer["ip"], int(peer["port"])] for peer in table.values()]
sock.close()
print(json.dumps({"bytes": len(bin), "networkLayer": layers, "hosts": hosts}))
"#;

/// Python's own protocol-4 pickle of the same table: as the JSON reply loads (`json.loads`
/// shares equal keys, as the original's tables did), and as our pickle loads. Also checks that
/// our pickle loads to exactly the JSON table.
const PYTHON_SIZES: &str = r#"
import json, pickle, sys
ours = sys.stdin.buffer.read()
from_json = json.loads(sys.argv[1])["data"]
from_ours = pickle.loads(ours)
assert from_ours == from_json, (from_ours, from_json)
print(json.dumps({
    "records": len(from_json),
    "python_of_json": len(pickle.dumps(from_json, protocol=4)),
    "python_of_ours": len(pickle.dumps(from_ours, protocol=4)),
}))
"#;

fn ports_arg(ports: &[(&str, u16)]) -> Vec<String> {
    let list: Vec<String> = ports.iter().map(|(n, p)| format!("{n}={p}")).collect();
    vec!["--ports".into(), list.join(",")]
}

/// Three nodes, each with its service ports (the third on other port numbers), joined and
/// converged: every table holds three own records.
async fn three_nodes(dir: &std::path::Path) -> Vec<NodeProcess> {
    let a = NodeProcess::start(&dir.join("a"), &ports_arg(&PORTS)).await;
    let mut join = ports_arg(&PORTS);
    join.extend(["--bootstrap".into(), format!("/ip4/127.0.0.1/tcp/{}", a.p2p_port)]);
    let b = NodeProcess::start(&dir.join("b"), &join).await;
    let mut join_c = ports_arg(&[("networkLayer", 7002), ("userSync", 4003)]);
    join_c.extend(["--bootstrap".into(), format!("/ip4/127.0.0.1/tcp/{}", a.p2p_port)]);
    let c = NodeProcess::start(&dir.join("c"), &join_c).await;
    let nodes = vec![a, b, c];
    eventually("three own records on every node, equal digests", CONVERGE, async || {
        let mut seen = Vec::new();
        for n in &nodes {
            let s = n.status().await;
            seen.push((s["table_size"].clone(), s["digest"].clone()));
        }
        if seen.iter().all(|s| s.0 == 3 && s.1 == seen[0].1) {
            Ok(())
        } else {
            Err(seen)
        }
    })
    .await;
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_clients_read_networklayer_from_every_record_in_one_recv() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = three_nodes(dir.path()).await;
    let ids: Vec<String> =
        futures::future::join_all(nodes.iter().map(|n| n.status())).await.iter().map(peer_id).collect();
    for n in &nodes {
        // The own record says what --ports said, and `ports` is a dict of ints.
        let own = n.request(json!({"message_type": 8})).await;
        let want = if n.data_dir.ends_with("c") {
            json!({"networkLayer": 7002, "userSync": 4003})
        } else {
            ports_json()
        };
        assert_eq!(own["data"]["ports"], want, "{own}");
        for size in ["4024", "1024"] {
            let manager_port = n.manager.port().to_string();
            let out = common::python3(ORIGINAL_CLIENT, &[&manager_port, size], b"");
            let seen: Value = serde_json::from_slice(&out).unwrap();
            println!("recv({size}) on {}: {} bytes for 3 records", n.manager, seen["bytes"]);
            let layers = seen["networkLayer"].as_object().unwrap();
            assert_eq!(layers.len(), 3, "every record, in one recv({size}): {seen}");
            assert_eq!(layers[&ids[0]], 6002);
            assert_eq!(layers[&ids[1]], 6002);
            assert_eq!(layers[&ids[2]], 7002);
            for host in seen["hosts"].as_array().unwrap() {
                assert_eq!(host[0], "127.0.0.1", "{seen}");
            }
        }
    }
}

fn peer_id(status: &Value) -> String {
    status["peer_id"].as_str().unwrap().to_owned()
}

fn ports_json() -> Value {
    Value::Object(PORTS.iter().map(|(n, p)| (n.to_string(), json!(p))).collect())
}

/// Our table pickle is no longer per record than Python's `pickle.dumps(..., protocol=4)` of the
/// same table, and much shorter than serde-pickle's protocol 3 (what was sent before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_table_pickle_is_no_longer_per_record_than_pythons_protocol_4() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = three_nodes(dir.path()).await;
    let node = &nodes[0];
    // A client record of the later revision too, as the original's services add them.
    let add = json!({"message_type": 3, "data": {"peer_id": "QmService", "name": "svc", "ip": "198.18.0.7",
        "ports": {"networkLayer": 6002, "userSync": 3003, "fileSync": 3001}}});
    assert_eq!(node.request(add).await["result"], "completed");
    let mut client = Client::connect(node.manager, Duration::from_secs(5)).await.unwrap();
    let ours = client.table_pickle().await.unwrap();
    let table = node.request(json!({"message_type": 2, "format": "json"})).await;
    let sizes: Value =
        serde_json::from_slice(&common::python3(PYTHON_SIZES, &[&table.to_string()], &ours)).unwrap();
    let records = sizes["records"].as_u64().unwrap() as usize;
    assert_eq!(records, 4);
    let before = serde_pickle::to_vec(&table["data"], serde_pickle::SerOptions::new()).unwrap().len();
    let python = sizes["python_of_json"].as_u64().unwrap() as usize;
    let python_of_ours = sizes["python_of_ours"].as_u64().unwrap() as usize;
    let per = |n: usize| n as f64 / records as f64;
    println!(
        "table of {records} records (3 own with 3 or 2 ports, 1 client record with 3 ports): \
         ours {} bytes ({:.1}/record); Python protocol 4 of the JSON table {python} ({:.1}/record), \
         of our pickle's value {python_of_ours} ({:.1}/record); serde-pickle protocol 3 (before) {before} ({:.1}/record)",
        ours.len(),
        per(ours.len()),
        per(python),
        per(python_of_ours),
        per(before)
    );
    assert!(ours.len() <= python, "ours {} > Python's {python}", ours.len());
    assert!(ours.len() <= python_of_ours, "ours {} > Python's {python_of_ours}", ours.len());
    assert!(ours.len() < before, "ours {} >= serde-pickle's {before}", ours.len());
}
