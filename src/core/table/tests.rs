//! The table's unit tests.

use std::collections::BTreeMap;

use super::*;

pub(crate) fn rec(name: &str) -> PeerRecord {
    PeerRecord {
        name: name.into(),
        ip: "10.0.0.1".into(),
        port: "8001".into(),
        peer_id: None,
        ports: BTreeMap::new(),
        addrs: vec![],
        created_at: 1,
        updated_at: 1,
        last_connection_on: 1,
    }
}

fn table(id: u8) -> Table {
    Table::for_tests(id)
}

const NOW: u64 = 1_800_000_000_000;

#[test]
fn put_get_remove_and_tombstone() {
    let mut t = table(1);
    t.put("a".into(), rec("A"), NOW);
    assert_eq!(t.get("a").unwrap().name, "A");
    assert_eq!(t.len(), 1);
    let tomb = t.remove("a", NOW).unwrap();
    assert!(tomb.record.is_none());
    assert!(t.get("a").is_none());
    assert_eq!((t.len(), t.len_with_tombstones()), (0, 1));
    assert!(t.remove("a", NOW).is_none(), "removing a tombstone is not a write");
}

#[test]
fn a_stale_replica_cannot_resurrect_a_removed_record() {
    let mut a = table(1);
    let mut b = table(2);
    let put = a.put("k".into(), rec("A"), NOW);
    b.merge(put.clone(), NOW).unwrap();
    let tomb = a.remove("k", NOW + 1).unwrap();
    b.merge(tomb, NOW + 1).unwrap();
    assert_eq!(b.merge(put, NOW + 2), Ok(false));
    assert!(b.get("k").is_none());
    assert_eq!(a.root(), b.root());
}

#[test]
fn an_add_after_a_remove_wins_over_the_tombstone() {
    let mut t = table(1);
    t.put("k".into(), rec("A"), NOW);
    t.remove("k", NOW);
    t.put("k".into(), rec("B"), NOW);
    assert_eq!(t.get("k").unwrap().name, "B");
}

#[test]
fn future_stamps_are_refused_and_counted() {
    let mut t = table(1);
    let mut far = table(2);
    let e = far.put("k".into(), rec("X"), NOW + 61_000);
    assert!(matches!(t.merge(e, NOW), Err(MergeError::Clock(_))));
    assert!(t.get("k").is_none());
    assert_eq!(t.stats().rejected_future, 1);
    assert_eq!(t.root(), 0);
}

#[test]
fn invalid_remote_entries_are_refused() {
    let mut t = table(1);
    let mut other = table(2);
    let mut e = other.put("k".into(), rec("X"), NOW);
    e.key = String::new();
    assert!(matches!(t.merge(e.clone(), NOW), Err(MergeError::Record(_))));
    e.key = "k".into();
    e.record = Some(Arc::new(rec(&"x".repeat(2000))));
    assert!(matches!(t.merge(e, NOW), Err(MergeError::Record(_))));
    assert_eq!(t.stats().rejected_invalid, 2);
}

#[test]
fn a_stamp_reused_with_another_value_resolves_the_same_everywhere_and_blames_no_relay() {
    let mut writer = table(2);
    let e = writer.put("k".into(), rec("X"), NOW);
    // Anyone but the writer putting another value under its stamp fails the signature ...
    let forged = Entry { record: Some(Arc::new(rec("Y"))), ..e.clone() };
    assert_eq!(table(1).merge(forged.clone(), NOW), Err(MergeError::BadSignature));
    // ... but the writer itself may sign two values under one stamp. Replicas that receive them
    // in either order keep the same one, and a relay passing either on is not at fault.
    let resigned = writer.resign(forged);
    let (mut a, mut b) = (table(1), table(3));
    assert_eq!(a.merge(e.clone(), NOW), Ok(true));
    let a_second = a.merge(resigned.clone(), NOW);
    assert_eq!(b.merge(resigned.clone(), NOW), Ok(true));
    let b_second = b.merge(e.clone(), NOW);
    assert_eq!(a.root(), b.root(), "both replicas keep the same value");
    assert_eq!(a.get("k"), b.get("k"));
    let winner = if resigned.sig > e.sig { &resigned } else { &e };
    assert_eq!(a.entry("k").as_ref(), Some(winner));
    // Exactly one of the two replicas replaced what it had, and counted the conflict.
    assert_ne!(a_second, b_second);
    assert_eq!(a.stats().conflicting_stamps + b.stats().conflicting_stamps, 1);
}

#[test]
fn digests_cover_values_not_just_keys_and_stamps() {
    let mut t = table(1);
    let e = t.put("k".into(), rec("X"), NOW);
    // The same key and stamp with a value changed on disk (loading trusts what it reads).
    let damaged = Entry { record: Some(Arc::new(rec("Z"))), ..e.clone() };
    let clean = Table::load(Signer::from_secret([1; 32]), "test", TableConfig::default(), vec![e.clone()]);
    let bad = Table::load(Signer::from_secret([1; 32]), "test", TableConfig::default(), vec![damaged]);
    assert_eq!(clean.root(), t.root());
    assert_ne!(bad.root(), clean.root(), "a different value is a different digest");
    assert_ne!(bad.bucket_hash(bucket_of("k")), clean.bucket_hash(bucket_of("k")));
    // Anti-entropy's pull of the clean entry repairs the damaged copy: same write, the value its
    // signature fits.
    let mut bad = bad;
    assert_eq!(bad.merge(e.clone(), NOW), Ok(true));
    assert_eq!(bad.root(), clean.root());
    // A tombstone differs from the record it replaced even under one stamp.
    let tomb = Entry { record: None, ..e };
    let tombed = Table::load(Signer::from_secret([1; 32]), "test", TableConfig::default(), vec![tomb]);
    assert_ne!(tombed.root(), clean.root());
}

#[test]
fn tombstones_are_collected_after_the_grace_period() {
    let mut t = table(1);
    t.put("k".into(), rec("A"), NOW);
    let tomb = t.remove("k", NOW).unwrap();
    let grace = DEFAULT_TOMBSTONE_GRACE.as_millis() as u64;
    assert!(t.collect_tombstones(NOW + grace).is_empty());
    assert_eq!(t.collect_tombstones(NOW + grace + 1), vec!["k".to_string()]);
    assert_eq!(t.len_with_tombstones(), 0);
    assert_eq!(t.root(), 0);
    // The expired tombstone arriving again from a slower replica is not re-installed.
    assert_eq!(t.merge(tomb, NOW + grace + 2), Ok(false));
    assert_eq!(t.len_with_tombstones(), 0);
}

#[test]
fn digest_buckets_point_at_the_differing_keys() {
    let mut a = table(1);
    let mut b = table(2);
    for i in 0..200 {
        let e = a.put(format!("key{i}"), rec("A"), NOW);
        b.merge(e, NOW).unwrap();
    }
    assert_eq!(a.digest(), b.digest());
    a.put("key7".into(), rec("changed"), NOW + 5);
    let diff = a.digest().differing_buckets(&b.digest().buckets);
    assert_eq!(diff, vec![bucket_of("key7")]);
    let repair: Vec<Entry> = diff.iter().flat_map(|&b| a.bucket_entries(b)).collect();
    assert!(repair.iter().any(|e| e.key == "key7"));
    let (changed, refused) = b.merge_all(repair, NOW + 5);
    assert_eq!((changed.len(), refused), (1, 0));
    assert_eq!(a.digest(), b.digest());
}

#[test]
fn load_restores_digest_and_keeps_the_clock_ahead_of_stored_stamps() {
    let mut t = table(1);
    let e1 = t.put("a".into(), rec("A"), NOW + 10_000);
    let e2 = t.put("b".into(), rec("B"), NOW);
    let loaded =
        Table::load(Signer::from_secret([1; 32]), "test", TableConfig::default(), vec![e1.clone(), e2]);
    assert_eq!(loaded.root(), t.root());
    let mut loaded = loaded;
    // Wall clock went back 10 s across the restart: the next write still wins.
    let next = loaded.put("a".into(), rec("A2"), NOW);
    assert!(next.stamp > e1.stamp);
}

/// A stamp from the future is not the sender's fault: a delta carrying one is not rejected, its
/// other entries merge, and the future entry merges later, once it is no longer in the future
/// (nothing remembers the refusal).
#[test]
fn future_entries_are_skipped_not_blamed_and_merge_once_no_longer_in_the_future() {
    let mut t = table(1);
    let mut other = table(2);
    let now_entry = other.put("now".into(), rec("N"), NOW);
    let future = other.put("later".into(), rec("L"), NOW + 300_000);
    assert!(!MergeError::Clock(ClockError::TooFarAhead { ahead_ms: 1, max_skew_ms: 0 }).is_senders_fault());
    let changed = t.merge_delta(vec![now_entry, future.clone()], NOW).expect("not rejected as a whole");
    assert_eq!(changed.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(), ["now"]);
    assert_eq!(t.stats().rejected_future, 1);
    let (changed, refused) = t.merge_all(vec![future.clone()], NOW);
    assert_eq!((changed.len(), refused), (0, 0), "refused, but not held against the sender");
    assert_eq!(t.stats().rejected_future, 2);
    let (changed, _) = t.merge_all(vec![future], NOW + 240_000);
    assert_eq!(changed.len(), 1, "merged once within the allowed skew");
    assert_eq!(t.get("later").unwrap().name, "L");
}
