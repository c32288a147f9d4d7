//! Property tests of the table's CRDT laws over random histories that include removes: merge is
//! commutative, associative and idempotent, and any delivery order of the same writes gives the
//! same table and digest.

use std::collections::BTreeMap;

use proptest::prelude::*;
use udht::core::{Entry, PeerFields, PeerRecord, Table};

const NOW: u64 = 1_800_000_000_000;

#[derive(Debug, Clone)]
enum Op {
    Put { writer: usize, key: u8, name: u8, at: u64 },
    Remove { writer: usize, key: u8, at: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..3usize, 0..6u8, any::<u8>(), 0..50u64)
            .prop_map(|(writer, key, name, at)| Op::Put { writer, key, name, at }),
        1 => (0..3usize, 0..6u8, 0..50u64).prop_map(|(writer, key, at)| Op::Remove { writer, key, at }),
    ]
}

fn table(writer: usize) -> Table {
    Table::for_tests(writer as u8 + 1)
}

fn record(name: u8) -> PeerRecord {
    PeerRecord::create(
        PeerFields { name: Some(format!("n{name}")), ip: Some("10.0.0.1".into()), ..Default::default() },
        0,
    )
}

/// Runs a history on three writers (each sees only its own writes, so concurrent writes to one
/// key really conflict) and returns the three replicas.
fn replicas(ops: &[Op]) -> Vec<Table> {
    let mut ts: Vec<Table> = (0..3).map(table).collect();
    for op in ops {
        match *op {
            Op::Put { writer, key, name, at } => {
                ts[writer].put(format!("k{key}"), record(name), NOW + at);
            }
            Op::Remove { writer, key, at } => {
                ts[writer].remove(&format!("k{key}"), NOW + at);
            }
        }
    }
    ts
}

/// `a` merged with `b`: a copy of `a` that received every entry of `b`.
fn merged(a: &Table, b: &Table) -> Table {
    let mut out = a.clone();
    let (_, refused) = out.merge_all(b.all_entries(), NOW + 1000);
    assert_eq!(refused, 0, "every replicated write is valid");
    out
}

/// The full observable state: every key's stamp and record, tombstones included.
fn state(t: &Table) -> BTreeMap<String, Entry> {
    t.all_entries().into_iter().map(|e| (e.key.clone(), e)).collect()
}

fn same(a: &Table, b: &Table) -> bool {
    a.root() == b.root() && a.digest() == b.digest() && state(a) == state(b) && a.len() == b.len()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn merge_is_commutative(ops in prop::collection::vec(op(), 0..40)) {
        let r = replicas(&ops);
        prop_assert!(same(&merged(&r[0], &r[1]), &merged(&r[1], &r[0])));
    }

    #[test]
    fn merge_is_associative(ops in prop::collection::vec(op(), 0..40)) {
        let r = replicas(&ops);
        let left = merged(&merged(&r[0], &r[1]), &r[2]);
        let right = merged(&r[0], &merged(&r[1], &r[2]));
        prop_assert!(same(&left, &right));
    }

    #[test]
    fn merge_is_idempotent(ops in prop::collection::vec(op(), 0..40)) {
        let r = replicas(&ops);
        prop_assert!(same(&merged(&r[0], &r[0]), &r[0]));
        let ab = merged(&r[0], &r[1]);
        prop_assert!(same(&merged(&ab, &r[1]), &ab));
    }

    #[test]
    fn any_delivery_order_gives_the_same_table(
        ops in prop::collection::vec(op(), 1..40),
        seed in any::<u64>(),
    ) {
        let r = replicas(&ops);
        let writes: Vec<Entry> = r.iter().flat_map(|t| t.all_entries()).collect();
        let mut shuffled = writes.clone();
        // A deterministic shuffle from the seed (Fisher-Yates with an LCG), plus redeliveries.
        let mut x = seed | 1;
        for i in (1..shuffled.len()).rev() {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (x >> 33) as usize % (i + 1));
        }
        shuffled.extend(writes.iter().take(3).cloned());
        let mut in_order = table(9);
        prop_assert_eq!(in_order.merge_all(writes, NOW + 1000).1, 0);
        let mut any_order = table(9);
        prop_assert_eq!(any_order.merge_all(shuffled, NOW + 1000).1, 0);
        prop_assert!(same(&in_order, &any_order));
        // And equal to merging the replicas as whole states.
        let whole = merged(&merged(&merged(&table(9), &r[0]), &r[1]), &r[2]);
        prop_assert!(same(&whole, &in_order));
    }
}

#[test]
fn concurrent_writes_to_one_key_resolve_to_the_later_stamp_everywhere() {
    let mut a = table(0);
    let mut b = table(1);
    let ea = a.put("k".into(), record(1), NOW);
    let eb = b.put("k".into(), record(2), NOW + 5);
    a.merge(eb.clone(), NOW + 10).unwrap();
    b.merge(ea, NOW + 10).unwrap();
    assert!(same(&a, &b));
    assert_eq!(a.get("k").unwrap().name, "n2");
}
