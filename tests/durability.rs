//! Durability of the real binary: every acknowledged write survives SIGKILL, and the node's
//! identity (peer id) survives restarts.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::process::NodeProcess;
use serde_json::json;
use udht::manager::client::Client;

/// Writers running when the node is killed.
const WRITERS: usize = 8;
/// The node is killed once this many writes were acknowledged (while writers keep going): past
/// at least one fold of the store's journal (due about every 2,500 writes), so acknowledged
/// writes are both in the table file and in the journal when it dies.
const KILL_AFTER_ACKS: usize = 5000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start(dir.path(), &[]).await;
    let acked = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (acked, count, killed, addr) = (acked.clone(), count.clone(), killed.clone(), node.manager);
        writers.push(tokio::spawn(async move {
            let mut c = Client::connect(addr, Duration::from_secs(5)).await.unwrap();
            for i in 0.. {
                let key = format!("10.{w}.{}.{}", i / 256, i % 256);
                let name = format!("writer{w}-{i}");
                let req = json!({"message_type": 3, "data": {"peer_ip": key, "peer_port": "8001", "peer_name": name}});
                match c.request(&req).await {
                    Ok(r) if r["result"] == "completed" => {
                        acked.lock().unwrap().push((key, name));
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(r) => panic!("unexpected reply {r}"),
                    // The node died under us: this write was never acknowledged.
                    Err(_) if killed.load(Ordering::SeqCst) => return,
                    Err(e) => panic!("writer {w} failed before the kill: {e}"),
                }
            }
        }));
    }
    let what = format!("{KILL_AFTER_ACKS} acknowledged writes");
    let acks = async || match count.load(Ordering::SeqCst) {
        n if n >= KILL_AFTER_ACKS => Ok(()),
        n => Err(n),
    };
    if let Err(e) = common::try_eventually(what, Duration::from_secs(60), acks).await {
        panic!("writers stalled: {e}; log: {}", node.log());
    }
    killed.store(true, Ordering::SeqCst);
    node.kill9();
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= KILL_AFTER_ACKS);
    let folded = folded_entries(dir.path());
    assert!(
        folded > 0 && folded < acked.len(),
        "some of the {} acknowledged writes were folded into the table file, not all: {folded}",
        acked.len()
    );

    let node = node.restart().await;
    let mut c = Client::connect(node.manager, Duration::from_secs(5)).await.unwrap();
    let mut missing = Vec::new();
    for (key, name) in &acked {
        let r = c.request(&json!({"message_type": 7, "data": {"peer_ip": key}})).await.unwrap();
        if r["result"] != "completed" || r["data"]["name"] != *name {
            missing.push(key.clone());
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged writes lost: {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(10)]
    );
    let size = node.status().await["table_size"].as_u64().unwrap() as usize;
    // Acknowledged writes, plus the node's own record, plus writes that were durable but whose
    // replies were cut off by the kill (at most one per writer).
    assert!(
        size > acked.len() && size <= acked.len() + 1 + WRITERS,
        "table_size {size}, acked {}",
        acked.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_id_survives_restarts_and_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start(dir.path(), &["--name".into(), "keeper".into()]).await;
    let first = node.status().await["peer_id"].as_str().unwrap().to_owned();
    assert!(first.starts_with("12D3KooW"), "an ed25519 libp2p peer id, got {first}");
    let own = node.request(json!({"message_type": 8})).await;
    assert_eq!(own["data"]["peer_id"], first.as_str());
    assert_eq!(own["data"]["name"], "keeper");

    assert!(node.terminate().success(), "SIGTERM is a clean shutdown");
    let mut node = node.restart().await;
    assert_eq!(node.status().await["peer_id"], first.as_str());
    node.kill9();
    let node = node.restart().await;
    assert_eq!(node.status().await["peer_id"], first.as_str());
    let own_again = node.request(json!({"message_type": 8})).await;
    assert_eq!(own_again["data"]["createdAt"], own["data"]["createdAt"], "the own record keeps createdAt");

    let key_file = dir.path().join("identity.key");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(key_file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
}

/// Rows in the keyed table of the data dir `dir`, read from a copy (opening a table that was not
/// closed cleanly repairs it, and the node must find it as the kill left it).
fn folded_entries(dir: &std::path::Path) -> usize {
    use redb::{ReadableDatabase, ReadableTableMetadata};
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(dir.join(udht::store::TABLE_FILE), copy.path().join("t")).unwrap();
    let db = redb::Database::open(copy.path().join("t")).unwrap();
    let entries: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("entries");
    db.begin_read().unwrap().open_table(entries).unwrap().len().unwrap() as usize
}
