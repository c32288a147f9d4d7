//! Node records' expiry: dropped everywhere once their stamp is older than the node TTL, never
//! brought back by a slower replica, and no other key touched.

use std::time::Duration;

use super::tests::rec;
use super::*;
use crate::core::sign::peer_id_of;

const NOW: u64 = 1_800_000_000_000;
const TTL_MS: u64 = 10_000;

fn table(id: u8) -> Table {
    let config = TableConfig { node_ttl: Duration::from_millis(TTL_MS), ..TableConfig::default() };
    Table::new(Signer::from_secret([id; 32]), "test", config)
}

/// A node (`id`) writing its own record at `at`; returns its key and the entry.
fn own_record(node: &mut Table, at: u64) -> (String, Entry) {
    let key = peer_id_of(&node.writer());
    let e = node.put(key.clone(), rec("node"), at);
    (key, e)
}

#[test]
fn a_node_record_expires_only_past_the_ttl_and_other_keys_never() {
    let mut node = table(9);
    let (key, e) = own_record(&mut node, NOW);
    let mut t = table(1);
    t.merge(e, NOW).unwrap();
    let plain = t.put("10.0.0.1".into(), rec("plain"), NOW);
    let tomb = t.remove("10.0.0.1", NOW).unwrap();
    assert!(tomb.record.is_none() && plain.record.is_some());
    t.put("10.0.0.2".into(), rec("plain"), NOW);
    assert!(t.collect_expired_nodes(NOW + TTL_MS, "").is_empty(), "exactly the TTL is not past it");
    assert_eq!(t.collect_expired_nodes(NOW + TTL_MS + 1, ""), vec![key.clone()]);
    assert!(t.get(&key).is_none() && t.entry(&key).is_none(), "removed outright, no tombstone left");
    assert_eq!(t.stats().nodes_expired, 1);
    // Keys that are not peer ids, live or tombstoned, never expire this way (a day later).
    assert!(t.collect_expired_nodes(NOW + 86_400_000, "").is_empty());
    assert!(t.get("10.0.0.2").is_some());
    assert!(t.entry("10.0.0.1").is_some_and(|e| e.record.is_none()));
}

#[test]
fn the_running_nodes_own_record_is_kept() {
    let mut node = table(9);
    let (key, _) = own_record(&mut node, NOW);
    assert!(node.collect_expired_nodes(NOW + 2 * TTL_MS, &key).is_empty());
    assert!(node.get(&key).is_some());
}

#[test]
fn an_expired_record_from_a_slower_replica_is_not_reinstalled_and_digests_agree() {
    let mut node = table(9);
    let (key, e) = own_record(&mut node, NOW);
    let (mut fast, mut slow) = (table(1), table(2));
    fast.merge(e.clone(), NOW).unwrap();
    slow.merge(e.clone(), NOW).unwrap();
    let later = NOW + TTL_MS + 1;
    assert_eq!(fast.collect_expired_nodes(later, ""), vec![key.clone()]);
    // The slower replica has not collected yet and offers the record, by gossip or anti-entropy.
    assert_eq!(fast.merge(e.clone(), later), Ok(false), "stale: expired by its stamp");
    let (changed, refused) = fast.merge_all(slow.all_entries(), later);
    assert!(changed.is_empty() && refused == 0, "not the sender's fault");
    assert_eq!(fast.merge_delta(vec![e.clone()], later), Ok(vec![]));
    assert!(fast.get(&key).is_none());
    // A replica that never had it does not take it either.
    let mut fresh = table(3);
    assert_eq!(fresh.merge(e, later), Ok(false));
    assert_eq!(fresh.len_with_tombstones(), 0);
    // Once the slow replica collects, all agree.
    assert_eq!(slow.collect_expired_nodes(later, ""), vec![key]);
    assert_eq!((fast.root(), slow.root(), fresh.root()), (0, 0, 0));
}

#[test]
fn a_refreshed_record_replaces_an_expired_one() {
    let mut node = table(9);
    let (key, old) = own_record(&mut node, NOW);
    let mut t = table(1);
    t.merge(old, NOW).unwrap();
    let later = NOW + TTL_MS + 1;
    // The node came back after the TTL: its new record is fresh and goes in, replacing the old.
    let (_, new) = own_record(&mut node, later);
    assert_eq!(t.merge(new.clone(), later), Ok(true));
    assert!(t.collect_expired_nodes(later, "").is_empty());
    assert_eq!(t.entry(&key), Some(new));
}

#[test]
fn a_nodes_tombstone_keeps_its_own_grace_and_an_expired_record_does_not_replace_it() {
    let mut node = table(9);
    let (key, _) = own_record(&mut node, NOW);
    let tomb = node.remove(&key, NOW + 1).unwrap();
    let mut t = table(1);
    t.merge(tomb.clone(), NOW + 1).unwrap();
    // A tombstone is not a node record: the node TTL does not collect it, its grace does.
    assert!(t.collect_expired_nodes(NOW + 2 * TTL_MS, "").is_empty());
    assert_eq!(t.entry(&key), Some(tomb.clone()));
    // A record written after the tombstone but delivered only once expired does not replace it.
    let (_, newer) = own_record(&mut node, NOW + 2);
    assert_eq!(t.merge(newer, NOW + 2 * TTL_MS), Ok(false));
    assert_eq!(t.entry(&key), Some(tomb));
    // And a replica that held that record and collected it takes the (valid) tombstone later.
    let mut other = table(2);
    assert_eq!(other.merge(t.entry(&key).unwrap(), NOW + 2 * TTL_MS), Ok(true));
    assert_eq!(other.root(), t.root());
}
