//! The own record's life in the replica: jittered refresh, leaving, and other nodes' expiry.

use std::time::Duration;

use super::tests::{handle, persisted_seq, replica, NOW_US};
use super::*;
use crate::core::sign::{peer_id_of, Signer};
use crate::core::table::DEFAULT_NODE_TTL;
use crate::core::TableConfig;

fn refresh_waits(seed: u64) -> Vec<u64> {
    let mut r = replica(1);
    r.config.seed = seed;
    r.rng = StdRng::seed_from_u64(seed);
    let mut waits = Vec::new();
    let mut out = handle(&mut r, Input::Start);
    for _ in 0..20 {
        let wait = out
            .iter()
            .find_map(|o| match o {
                Output::Schedule { after_ms, timer: Timer::Refresh } => Some(*after_ms),
                _ => None,
            })
            .expect("the next refresh is armed");
        waits.push(wait);
        out = handle(&mut r, Input::TimerFired(Timer::Refresh));
    }
    waits
}

#[test]
fn refreshes_are_jittered_within_a_fifth_of_the_interval_and_replay_from_the_seed() {
    let interval = replica(1).config.refresh_interval_ms;
    let waits = refresh_waits(7);
    assert!(waits.iter().all(|w| (interval * 4 / 5..=interval * 6 / 5).contains(w)), "{waits:?}");
    let distinct: BTreeSet<_> = waits.iter().collect();
    assert!(distinct.len() > 10, "jittered, not fixed: {waits:?}");
    assert_eq!(waits, refresh_waits(7), "the same seed draws the same waits");
    assert_ne!(waits, refresh_waits(8));
}

#[test]
fn the_refresh_stretches_to_a_second_per_known_node_but_stays_within_a_quarter_of_the_ttl() {
    // 200 other nodes' records: the 60 s interval stretches to 200 s.
    let now_ms = (NOW_US / 1000) as u64;
    let node_records: Vec<_> = (0..200u16)
        .map(|i| {
            let mut secret = [7u8; 32];
            secret[..2].copy_from_slice(&i.to_be_bytes());
            let mut other = Table::new(Signer::from_secret(secret), "test", TableConfig::default());
            let key = peer_id_of(&other.writer());
            let fields = PeerFields { name: Some(format!("n{i}")), ..Default::default() };
            other.put(key, PeerRecord::create(fields, 1), now_ms)
        })
        .collect();
    let waits_with = |ttl: Duration| {
        let config = TableConfig { node_ttl: ttl, ..TableConfig::default() };
        let mut r = Replica::new(replica(1).config, Table::new(Signer::from_secret([1; 32]), "test", config));
        for e in &node_records {
            r.table.merge(e.clone(), now_ms).unwrap();
        }
        let mut out = handle(&mut r, Input::Start);
        let mut waits = Vec::new();
        for _ in 0..10 {
            waits.extend(out.iter().filter_map(|o| match o {
                Output::Schedule { after_ms, timer: Timer::Refresh } => Some(*after_ms),
                _ => None,
            }));
            out = handle(&mut r, Input::TimerFired(Timer::Refresh));
        }
        waits
    };
    let waits = waits_with(DEFAULT_NODE_TTL);
    assert!(!waits.is_empty() && waits.iter().all(|w| (160_000..=240_000).contains(w)), "{waits:?}");
    // With a node TTL of 400 s, a quarter of it (100 s) is the most: records never expire.
    let waits = waits_with(Duration::from_secs(400));
    assert!(!waits.is_empty() && waits.iter().all(|w| (80_000..=120_000).contains(w)), "{waits:?}");
}

#[test]
fn leaving_tombstones_the_own_record_durably_and_publishes_it_and_nothing_rewrites_it() {
    let mut r = replica(1);
    handle(&mut r, Input::Start);
    assert!(r.table().get("own").is_some());
    let out = handle(&mut r, Input::Leave { reply: 5 });
    assert!(matches!(&out[0], Output::Applied { key, record: None } if key == "own"), "{out:?}");
    assert!(!out.iter().any(|o| matches!(o, Output::Reply { .. })), "not before durable: {out:?}");
    let out = handle(&mut r, Input::Committed(persisted_seq(&out)));
    assert!(matches!(out[0], Output::Reply { to: 5, result: Ok(true) }), "{out:?}");
    let out = handle(&mut r, Input::TimerFired(Timer::FlushGossip));
    let [Output::Publish(delta)] = &out[..] else { panic!("{out:?}") };
    let published = crate::core::delta::decode_delta(delta).unwrap();
    assert!(published.len() == 1 && published[0].key == "own" && published[0].record.is_none());
    // Neither a refresh nor an address change brings the record back before the node stops.
    let out = handle(&mut r, Input::TimerFired(Timer::Refresh));
    assert!(!out.iter().any(|o| matches!(o, Output::Persist { .. })), "{out:?}");
    let address = OwnAddress { ip: "10.1.1.1".into(), port: "4001".into(), addrs: vec![] };
    assert!(handle(&mut r, Input::OwnAddress(address)).is_empty());
    assert!(r.table().get("own").is_none());
    // Leaving twice is not a write.
    let out = handle(&mut r, Input::Leave { reply: 6 });
    assert!(matches!(&out[..], [Output::Reply { to: 6, result: Ok(false) }]), "{out:?}");
}

#[test]
fn the_collection_drops_expired_node_records_from_table_view_and_disk() {
    let ttl_ms = DEFAULT_NODE_TTL.as_millis() as u64;
    let now_ms = (NOW_US / 1000) as u64;
    // A node that wrote its record just over a TTL ago, and a plain key written then too.
    let mut dead = Table::new(Signer::from_secret([9; 32]), "test", TableConfig::default());
    let key = peer_id_of(&dead.writer());
    let old = now_ms - ttl_ms - 1;
    let fields = PeerFields { name: Some("dead".into()), ..Default::default() };
    let record = dead.put(key.clone(), PeerRecord::create(fields.clone(), 1), old);
    let plain = dead.put("10.0.0.9".into(), PeerRecord::create(fields, 1), old);
    let mut r = replica(1);
    let table = &mut r.table;
    table.merge(record, old).unwrap();
    table.merge(plain, old).unwrap();
    let out = handle(&mut r, Input::TimerFired(Timer::CollectTombstones));
    assert!(matches!(&out[0], Output::Applied { key: k, record: None } if *k == key), "{out:?}");
    let Output::Persist { deletes, puts, .. } = &out[1] else { panic!("{out:?}") };
    assert_eq!((deletes, puts.len()), (&vec![key.clone()], 0));
    assert!(r.table().get(&key).is_none() && r.table().get("10.0.0.9").is_some());
    assert_eq!(r.table().stats().nodes_expired, 1);
}
