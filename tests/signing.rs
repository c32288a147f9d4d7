//! Signed entries: every entry carries its writer's signature over (network id, key, value, stamp),
//! any changed byte fails it, and a peer id's key belongs to that peer alone.

use std::sync::Arc;

use proptest::prelude::*;
use udht::core::sign::{owner_of_key, peer_id_of, Signer};
use udht::core::table::MergeError;
use udht::core::{Entry, PeerFields, PeerRecord, Table, TableConfig};

const NOW: u64 = 1_800_000_000_000;

fn record(name: &str, ip: &str) -> PeerRecord {
    PeerRecord::create(PeerFields { name: Some(name.into()), ip: Some(ip.into()), ..Default::default() }, 1)
}

fn table(id: u8) -> Table {
    Table::for_tests(id)
}

/// Flips one bit of the entry's key, value or stamp, chosen by `which` and `at`.
fn tamper(mut e: Entry, which: u8, at: usize) -> Entry {
    match which % 4 {
        0 => {
            let mut key = e.key.into_bytes();
            let i = at % key.len();
            key[i] = if key[i] == b'a' { b'b' } else { b'a' };
            e.key = String::from_utf8(key).unwrap();
        }
        1 => {
            let mut r = (**e.record.as_ref().unwrap()).clone();
            r.name.push('x');
            e.record = Some(Arc::new(r));
        }
        // Low bits only: a stamp moved past the allowed skew fails on the clock first.
        2 => e.stamp.millis ^= 1 << (at % 15),
        _ => e.stamp.counter ^= 1,
    }
    e
}

proptest! {
    #[test]
    fn a_signed_entry_verifies_and_any_changed_part_does_not(
        key in "[a-z0-9.]{1,40}", name in "[ -~]{0,60}", which in 0u8..4, at in 0usize..64,
    ) {
        let mut writer = table(1);
        let e = writer.put(key, record(&name, "198.18.0.1"), NOW);
        let mut reader = table(2);
        prop_assert_eq!(reader.check(&e, NOW), Ok(()));
        let bad = tamper(e.clone(), which, at);
        prop_assume!(bad != e);
        prop_assert_eq!(reader.check(&bad, NOW), Err(MergeError::BadSignature));
        prop_assert!(reader.merge(bad, NOW).is_err());
        prop_assert_eq!(reader.len_with_tombstones(), 0);
    }

    #[test]
    fn a_batch_with_one_bad_signature_refuses_just_that_one(n in 2usize..40, bad in 0usize..40) {
        let mut writer = table(1);
        let mut entries: Vec<Entry> =
            (0..n).map(|i| writer.put(format!("k{i}"), record("n", "198.18.0.1"), NOW)).collect();
        let bad = bad % n;
        entries[bad] = tamper(entries[bad].clone(), 1, 0);
        let mut reader = table(2);
        let (changed, refused) = reader.merge_all(entries, NOW);
        prop_assert_eq!((changed.len(), refused), (n - 1, 1));
        let tampered = format!("k{bad}");
        prop_assert!(reader.get(&tampered).is_none());
    }
}

#[test]
fn a_signature_is_bound_to_its_network() {
    let mut writer = Table::new(Signer::from_secret([1; 32]), "network-a", TableConfig::default());
    let e = writer.put("k".into(), record("n", "198.18.0.1"), NOW);
    let mut same = Table::new(Signer::from_secret([2; 32]), "network-a", TableConfig::default());
    let mut other = Table::new(Signer::from_secret([3; 32]), "network-b", TableConfig::default());
    assert_eq!(same.merge(e.clone(), NOW), Ok(true));
    assert_eq!(other.merge(e, NOW), Err(MergeError::BadSignature));
}

#[test]
fn a_peer_ids_key_is_written_only_by_that_peer() {
    let mut owner = table(1);
    let mut stranger = table(9);
    let key = peer_id_of(&Signer::from_secret([1; 32]).node());
    assert_eq!(owner_of_key(&key), Some(Signer::from_secret([1; 32]).node()));
    let mine = owner.put(key.clone(), record("owner", "198.18.0.1"), NOW);
    // Correctly signed by its writer, but the writer is not the peer the key names.
    let forged = stranger.put(key.clone(), record("forged", "198.18.0.66"), NOW + 1);
    let removal = stranger.remove(&key, NOW + 2).unwrap();
    let mut reader = table(2);
    assert_eq!(reader.merge(mine, NOW), Ok(true));
    assert_eq!(reader.merge(forged, NOW), Err(MergeError::NotOwner(key.clone())));
    assert_eq!(reader.merge(removal, NOW), Err(MergeError::NotOwner(key.clone())));
    assert_eq!(reader.get(&key).unwrap().name, "owner");
    assert_eq!(reader.stats().rejected_owner, 2);
    // Keys that are not peer ids stay multi-writer.
    let shared = stranger.put("198.18.0.5".into(), record("anyone", "198.18.0.5"), NOW);
    assert_eq!(reader.merge(shared, NOW), Ok(true));
}

#[test]
fn entries_stored_unsigned_are_resigned_if_ours_and_dropped_if_not() {
    let mut old_self = table(1);
    let mut old_other = table(2);
    let unsigned = |mut e: Entry| {
        e.sig = udht::core::sign::Signature([0; 64]);
        e
    };
    let mine = unsigned(old_self.put("mine".into(), record("m", "198.18.0.1"), NOW));
    let theirs = unsigned(old_other.put("theirs".into(), record("t", "198.18.0.2"), NOW));
    let mut t = table(1);
    let (rewrite, dropped) = t.adopt_unsigned(vec![mine, theirs]);
    assert_eq!((rewrite.len(), dropped), (1, vec!["theirs".to_string()]));
    assert!(t.get("theirs").is_none());
    // The re-signed entry now verifies anywhere.
    let mut reader = table(3);
    assert_eq!(reader.merge(rewrite[0].clone(), NOW), Ok(true));
}

#[test]
fn a_writer_at_its_key_cap_takes_no_new_keys_and_its_relay_is_not_blamed() {
    let config = TableConfig { max_keys_per_writer: 3, ..TableConfig::default() };
    let mut flooder = Table::new(Signer::from_secret([5; 32]), "test", TableConfig::default());
    let mut reader = Table::new(Signer::from_secret([6; 32]), "test", config);
    let entries: Vec<Entry> =
        (0..5).map(|i| flooder.put(format!("f{i}"), record("f", "198.18.0.5"), NOW)).collect();
    let (changed, refused) = reader.merge_all(entries.clone(), NOW);
    assert_eq!((changed.len(), refused), (3, 0), "capped, and not held against the sender");
    assert_eq!(reader.stats().rejected_writer_cap, 2);
    // A newer write of a key the writer already holds still goes through.
    let update = flooder.put("f0".into(), record("f2", "198.18.0.5"), NOW + 1);
    assert_eq!(reader.merge(update, NOW), Ok(true));
    // Other writers are not affected.
    let mut other = table(7);
    assert_eq!(reader.merge(other.put("o".into(), record("o", "198.18.0.7"), NOW), NOW), Ok(true));
    // The cap counts per writer: the full one has no room for a new key, only for keys it holds;
    // others still have room.
    let full = Signer::from_secret([5; 32]).node();
    assert!(!reader.has_room(&full, "f9") && reader.has_room(&full, "f1"));
    assert!(reader.has_room(&reader.writer(), "new"));
}
