//! The node task as the executor of the replica: the durability handshake and the replica's own
//! validation, seen through the public API of real nodes on loopback.

use std::time::Duration;

use futures::future::join_all;
use udht::cluster::Cluster;
use udht::core::replica::WriteError;
use udht::core::PeerFields;
use udht::node::NodeError;

fn peer(name: &str) -> PeerFields {
    PeerFields { name: Some(name.into()), ip: Some("198.18.0.7".into()), ..Default::default() }
}

/// Review point 3: the entries of a durable write used to travel back to the node task through a
/// channel that dropped them when full, so the write was never gossiped. Now the replica keeps
/// them until the store answers. With room for a single commit in flight (the tightest bound),
/// 300 concurrent writes at one node all reach the other by gossip alone: anti-entropy runs
/// hourly here, and its repair counter must not move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_commit_in_flight_every_durable_write_is_still_gossiped() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 2, |c| {
        c.max_in_flight = 1;
        c.sync_interval = Duration::from_secs(3600);
        c.refresh_interval = Duration::from_secs(3600);
    })
    .await
    .unwrap();
    let (a, b) = (cluster.handle(0).unwrap().clone(), cluster.handle(1).unwrap().clone());
    assert!(a.add("warm-up".into(), peer("w")).await.unwrap());
    cluster.wait_key_everywhere("warm-up", Duration::from_secs(15)).await.unwrap();
    // The anti-entropy sessions started on connecting are over once the tables agree.
    cluster.wait_converged(Duration::from_secs(15)).await.unwrap();
    let repaired_before = b.status().sync_stats.entries_repaired;

    let writes = (0..300).map(|i| a.add(format!("burst-{i}"), peer("b")));
    assert!(join_all(writes).await.into_iter().all(|r| r.unwrap()), "every write acknowledged");
    for i in 0..300 {
        cluster.wait_key_everywhere(&format!("burst-{i}"), Duration::from_secs(15)).await.unwrap();
    }
    assert_eq!(b.status().sync_stats.entries_repaired, repaired_before, "gossip carried them, not repair");
    cluster.shutdown().await.unwrap();
}

/// Review point 6: `NodeHandle::add` (the API the cluster harness and the simulator use) used to
/// commit an invalid record, which every peer then refused. The replica refuses it itself.
#[tokio::test]
async fn an_invalid_record_through_the_node_handle_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 1, |_| {}).await.unwrap();
    let node = cluster.handle(0).unwrap();
    let before = node.status().digest;
    let too_long = peer(&"n".repeat(2000));
    match node.add("k".into(), too_long).await {
        Err(NodeError::Write(WriteError::Invalid(e))) => assert!(e.to_string().contains("name"), "{e}"),
        other => panic!("an over-long name was not refused: {other:?}"),
    }
    match node.add("k".repeat(300), peer("ok")).await {
        Err(NodeError::Write(WriteError::Invalid(_))) => {}
        other => panic!("an over-long key was not refused: {other:?}"),
    }
    assert!(node.get("k").is_none());
    assert_eq!(node.status().digest, before, "nothing was written");
    cluster.shutdown().await.unwrap();
}
