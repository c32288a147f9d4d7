//! A data dir written by the version before signed entries still loads: the node re-signs its own
//! entries and drops others' (anti-entropy fetches those again, signed).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{eventually, start_node_with};
use redb::{Database, TableDefinition};
use serde::Serialize;
use udht::core::sign::owner_of_key;
use udht::core::{NodeId, PeerFields, PeerRecord, Stamp};

const WAIT: Duration = Duration::from_secs(15);
const ENTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("entries");
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");

/// A stored value as the unsigned version wrote it: format byte 1, then (stamp, record).
#[derive(Serialize)]
struct V1 {
    stamp: Stamp,
    record: Option<Arc<PeerRecord>>,
}

fn v1(node: NodeId, millis: u64, name: &str) -> Vec<u8> {
    let fields = PeerFields { name: Some(name.into()), ip: Some("198.18.0.4".into()), ..Default::default() };
    let value = V1 {
        stamp: Stamp { millis, counter: 0, node },
        record: Some(Arc::new(PeerRecord::create(fields, 1))),
    };
    let mut bytes = vec![1];
    bytes.extend(postcard::to_stdvec(&value).unwrap());
    bytes
}

#[tokio::test]
async fn an_unsigned_data_dir_loads_with_our_entries_resigned_and_others_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    let (node, _unused) = start_node_with(|c| c.data_dir = data.clone()).await;
    let me = owner_of_key(&node.peer_id).expect("an ed25519 peer id");
    node.shutdown().await.unwrap();

    // Rewrite the table as the unsigned version would have left it.
    {
        let db = Database::create(dir.path().join("table.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            txn.open_table(LOG).unwrap().retain(|_, _| false).unwrap();
            let mut entries = txn.open_table(ENTRIES).unwrap();
            entries.retain(|_, _| false).unwrap();
            let now = udht::core::now_millis();
            entries.insert("mine", v1(me, now - 1000, "written by this node").as_slice()).unwrap();
            entries
                .insert("theirs", v1(NodeId([9; 32]), now - 1000, "written by another").as_slice())
                .unwrap();
        }
        txn.commit().unwrap();
    }

    for start in ["first start after the upgrade", "second start"] {
        let data = dir.path().to_owned();
        let (node, _unused) = start_node_with(|c| {
            c.data_dir = data;
            c.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
        })
        .await;
        let mine = node.handle.get("mine").unwrap_or_else(|| panic!("{start}: our own entry is kept"));
        assert_eq!(mine.name, "written by this node");
        assert!(node.handle.get("theirs").is_none(), "{start}: another writer's unsigned entry is dropped");
        // Re-signed for real: a peer verifies it and takes it.
        let addr = common::listen_addr(&node).await;
        let (peer, _d) = start_node_with(|c| {
            c.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
            c.bootstrap = vec![addr];
        })
        .await;
        eventually(format!("{start}: the re-signed entry to reach a peer"), WAIT, async || {
            peer.handle.get("mine")
        })
        .await;
        peer.shutdown().await.unwrap();
        node.shutdown().await.unwrap();
    }
}
