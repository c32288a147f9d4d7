//! Checking stored entries: a byte changed on disk inside a value, a key or a stamp breaks the
//! writer's signature over the entry, so entries read back without a checksum (at start) or all
//! of them (`udht-node scrub`) are verified before they are served. What fails is dropped: anti-entropy fetches
//! the key again from a peer that holds it intact.

use super::sign::{owner_of_key, verify_all};
use super::table::Entry;

/// Entries verified per batch: large enough for [`verify_all`] to use every core, small enough
/// that a scrub streaming a large table holds little beyond the table itself.
pub const SCRUB_BATCH: usize = 4096;

/// The indexes of `entries` that are damaged: their signature does not verify for `network_id`,
/// or their key is a peer id other than their writer's (no valid write can hold that).
pub fn damaged(entries: &[Entry], network_id: &str) -> Vec<usize> {
    let items: Vec<_> = entries.iter().map(|e| (e.stamp.node, e.message(network_id), e.sig)).collect();
    let valid = verify_all(&items);
    entries
        .iter()
        .zip(valid)
        .enumerate()
        .filter(|(_, (e, ok))| !ok || owner_of_key(&e.key).is_some_and(|owner| owner != e.stamp.node))
        .map(|(i, _)| i)
        .collect()
}

/// Streams entries through [`damaged`] in batches: good ones come back to be loaded, damaged
/// ones are kept to be reported and deleted.
#[derive(Debug)]
pub struct Scrub {
    network_id: String,
    pending: Vec<Entry>,
    damaged: Vec<Entry>,
    checked: usize,
}

impl Scrub {
    pub fn new(network_id: &str) -> Self {
        Scrub { network_id: network_id.to_owned(), pending: Vec::new(), damaged: Vec::new(), checked: 0 }
    }

    /// Adds an entry; once a batch is full, returns its intact entries (else nothing).
    pub fn push(&mut self, e: Entry) -> Vec<Entry> {
        self.pending.push(e);
        if self.pending.len() >= SCRUB_BATCH {
            self.flush()
        } else {
            Vec::new()
        }
    }

    /// Checks what is pending and returns its intact entries.
    pub fn flush(&mut self) -> Vec<Entry> {
        let batch = std::mem::take(&mut self.pending);
        self.checked += batch.len();
        let bad = damaged(&batch, &self.network_id);
        let mut good = Vec::with_capacity(batch.len() - bad.len());
        let mut bad = bad.into_iter().peekable();
        for (i, e) in batch.into_iter().enumerate() {
            if bad.next_if_eq(&i).is_some() {
                self.damaged.push(e);
            } else {
                good.push(e);
            }
        }
        good
    }

    /// Entries checked so far (flushed batches).
    pub fn checked(&self) -> usize {
        self.checked
    }

    /// The damaged entries found so far.
    pub fn damaged(&self) -> &[Entry] {
        &self.damaged
    }

    /// Their keys, sorted, each once (a key may be stored twice: in the table and in the log).
    pub fn damaged_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.damaged.iter().map(|e| e.key.clone()).collect();
        keys.sort();
        keys.dedup();
        keys
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::core::sign::peer_id_of;
    use crate::core::{PeerFields, PeerRecord, Table};

    fn record(name: &str) -> PeerRecord {
        PeerRecord::create(PeerFields { name: Some(name.into()), ..Default::default() }, 1)
    }

    #[test]
    fn a_changed_value_key_or_stamp_is_damaged_and_the_rest_is_intact() {
        let mut t = Table::for_tests(1);
        let entries: Vec<Entry> = (0..10).map(|i| t.put(format!("k{i}"), record("name"), 1000 + i)).collect();
        assert!(damaged(&entries, "test").is_empty());
        assert_eq!(damaged(&entries, "other-network"), (0..10).collect::<Vec<_>>(), "signed for one network");

        let mut bad = entries.clone();
        bad[2].record = Some(Arc::new(record("namf")));
        bad[5].key = "k5x".into();
        bad[7].stamp.millis += 1;
        bad[8].sig.0[3] ^= 1;
        assert_eq!(damaged(&bad, "test"), vec![2, 5, 7, 8]);

        // A tombstone is checked as well.
        let mut tomb = t.remove("k1", 5000).unwrap();
        assert!(damaged(std::slice::from_ref(&tomb), "test").is_empty());
        tomb.stamp.counter += 1;
        assert_eq!(damaged(&[tomb], "test"), vec![0]);
    }

    #[test]
    fn a_peer_id_key_written_by_another_is_damaged_even_if_signed() {
        let mut t = Table::for_tests(1);
        let other = Table::for_tests(2).writer();
        let e = t.put(peer_id_of(&other), record("not mine"), 1000);
        assert_eq!(damaged(&[e], "test"), vec![0]);
    }

    #[test]
    fn a_scrub_streams_in_batches_and_keeps_what_failed() {
        let mut t = Table::for_tests(1);
        let mut scrub = Scrub::new("test");
        let mut good = Vec::new();
        let total = SCRUB_BATCH + 10;
        for i in 0..total {
            let mut e = t.put(format!("k{i}"), record("n"), 1000);
            if i % 1000 == 3 {
                e.sig.0[0] ^= 0x80;
            }
            good.extend(scrub.push(e));
        }
        assert_eq!(good.len(), SCRUB_BATCH - 5, "the first batch came back when full");
        good.extend(scrub.flush());
        assert_eq!(scrub.checked(), total);
        assert_eq!(good.len() + scrub.damaged().len(), total);
        assert_eq!(scrub.damaged_keys(), vec!["k1003", "k2003", "k3", "k3003", "k4003"]);
    }
}
