//! The table read back at start, checked before it is served, and the same check offline
//! (`udht-node scrub`). At start an entry stored with a checksum is trusted when the checksum
//! matches (the store checks it as it reads), and the others' signatures are verified (see
//! [`crate::core::scrub`]); the scrub verifies every signature too. An entry that fails, like one whose value did not decode (dropped by the store), is dropped
//! and deleted from disk, so the node never serves it and anti-entropy fetches the key again.
//! Entries stored before entries were signed are migrated here too.

use std::path::Path;

use tokio::sync::mpsc;

use crate::core::scrub::Scrub;
use crate::core::sign::Signer;
use crate::core::{Entry, Table, TableConfig};
use crate::store::{self, Job, Loaded, OpenReport, Owner, Store, StoreError, StoreEvent};

/// The start-up repairs' commit number; the replica's own start at 0 once it runs.
const MIGRATION_SEQ: u64 = u64::MAX;
/// Keys named in a log line or the scrub summary; the rest are counted.
const NAMED: usize = 20;

/// Why the table could not be opened or repaired.
#[derive(Debug, thiserror::Error)]
pub enum IntegrityError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("rewriting entries at start failed: {0}")]
    Migration(String),
    #[error("no table to scrub in {0}: {1} is missing or empty")]
    NoTable(String, &'static str),
}

/// A table opened, checked and repaired, ready for the node.
pub struct Opened {
    pub table: Table,
    pub store: Store,
    pub events: mpsc::Receiver<StoreEvent>,
    /// Stored entries dropped at start: damaged (signature) or undecodable.
    pub scrubbed: usize,
}

/// What a check found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScrubSummary {
    /// Stored entries read (a key may be stored twice, in the table and in its log).
    pub checked: usize,
    /// Keys of the entries dropped (damaged or undecodable), sorted.
    pub dropped: Vec<String>,
    /// Entries stored before entries were signed: the node's start migrates them.
    pub unsigned: usize,
}

impl std::fmt::Display for ScrubSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "checked {} entries, dropped {} damaged", self.checked, self.dropped.len())?;
        if !self.dropped.is_empty() {
            let named = &self.dropped[..self.dropped.len().min(NAMED)];
            write!(f, ": {}", named.join(", "))?;
            if self.dropped.len() > NAMED {
                write!(f, " and {} more", self.dropped.len() - NAMED)?;
            }
        }
        if self.unsigned > 0 {
            write!(f, " ({} unsigned entries left for the node's start-up migration)", self.unsigned)?;
        }
        Ok(())
    }
}

/// Opens the table in `dir` for the node whose key is `signer`, loading only intact entries;
/// deletes the damaged ones and migrates unsigned ones before returning. With `adopt`
/// (`--init`), a table written by another identity is taken over.
pub fn open(
    dir: &Path,
    signer: Signer,
    network_id: &str,
    config: TableConfig,
    capacity: usize,
    adopt: bool,
) -> Result<Opened, IntegrityError> {
    let peer_id = crate::core::sign::peer_id_of(&signer.node());
    let owner = Owner { peer_id: Some(peer_id), adopt };
    let table = Table::new(signer, network_id, config);
    let (mut checked, store, mut events, report) =
        load(dir, &owner, table, network_id, capacity, Signatures::WithoutChecksum)?;
    if let Some(old) = &report.previous_owner {
        tracing::warn!(
            previous = %old,
            "this table was written by another identity; starting as a new node with it (--init). \
             The old own record was dropped here; peers keep it, as any departed node's record"
        );
    }
    let summary = checked.summary(&report);
    if !summary.dropped.is_empty() {
        tracing::warn!(
            dropped = summary.dropped.len(),
            keys = ?&summary.dropped[..summary.dropped.len().min(5)],
            "stored entries failed their check at start and were dropped; anti-entropy fetches them again"
        );
    }
    checked.repair(&store, &mut events)?;
    Ok(Opened { table: checked.table, store, events, scrubbed: summary.dropped.len() })
}

/// Checks every entry of the table in `dir` with no node running: deletes the damaged ones and
/// says what it found.
pub fn scrub(dir: &Path, network_id: &str) -> Result<ScrubSummary, IntegrityError> {
    let file = dir.join(store::TABLE_FILE);
    if std::fs::metadata(&file).map_or(true, |m| m.len() == 0) {
        return Err(IntegrityError::NoTable(dir.display().to_string(), store::TABLE_FILE));
    }
    // The entries' own writers' keys are checked; this table's signer is never used.
    let table = Table::new(Signer::from_secret(rand::random()), network_id, TableConfig::default());
    let (mut checked, store, mut events, report) =
        load(dir, &Owner::default(), table, network_id, 1, Signatures::All)?;
    let summary = checked.summary(&report);
    // Unsigned entries are left as they are: re-signing needs the node's key.
    checked.unsigned.clear();
    checked.repair(&store, &mut events)?;
    Ok(summary)
}

/// A table loaded through the check, with what failed it.
struct Checked {
    table: Table,
    scrub: Scrub,
    /// Entries whose checksum matched and whose signature was not checked again.
    checksummed: usize,
    unsigned: Vec<Entry>,
}

/// Which entries' signatures are verified: at start only those stored without a checksum
/// (verifying 100k signatures takes over a second, checksums milliseconds); in a scrub, all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signatures {
    WithoutChecksum,
    All,
}

fn load(
    dir: &Path,
    owner: &Owner,
    mut table: Table,
    network_id: &str,
    capacity: usize,
    signatures: Signatures,
) -> Result<(Checked, Store, mpsc::Receiver<StoreEvent>, OpenReport), IntegrityError> {
    let mut scrub = Scrub::new(network_id);
    let (mut unsigned, mut checksummed) = (Vec::new(), 0);
    let (store, events, report) = Store::open_as(dir, capacity, owner, |loaded| match loaded {
        Loaded::Checked(e) if signatures == Signatures::WithoutChecksum => {
            checksummed += 1;
            table.load_entry(e)
        }
        Loaded::Signed(e) | Loaded::Checked(e) => scrub.push(e).into_iter().for_each(|e| table.load_entry(e)),
        Loaded::Unsigned(e) => unsigned.push(e),
    })?;
    scrub.flush().into_iter().for_each(|e| table.load_entry(e));
    Ok((Checked { table, scrub, checksummed, unsigned }, store, events, report))
}

impl Checked {
    fn summary(&self, report: &OpenReport) -> ScrubSummary {
        let mut dropped = self.scrub.damaged_keys();
        dropped.extend(report.undecodable.iter().cloned());
        dropped.sort();
        dropped.dedup();
        ScrubSummary {
            checked: self.scrub.checked() + self.checksummed + report.undecodable.len() + self.unsigned.len(),
            dropped,
            unsigned: self.unsigned.len(),
        }
    }

    /// Commits the repairs before the node starts: first the deletes (damaged keys, and others'
    /// unsigned entries), then the rewrites (our re-signed entries, and the intact copy of a
    /// damaged key when one was loaded: the table and the log may each hold one). Two commits,
    /// since a commit's deletes come after its writes.
    fn repair(
        &mut self,
        store: &Store,
        events: &mut mpsc::Receiver<StoreEvent>,
    ) -> Result<(), IntegrityError> {
        let damaged = self.scrub.damaged_keys();
        let (resigned, mut deletes) = if self.unsigned.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            let found = self.unsigned.len();
            let (puts, deletes) = self.table.adopt_unsigned(std::mem::take(&mut self.unsigned));
            tracing::info!(
                found,
                resigned = puts.len(),
                dropped = deletes.len(),
                "migrated entries stored unsigned"
            );
            (puts, deletes)
        };
        let mut puts: Vec<Entry> =
            resigned.into_iter().filter(|e| damaged.binary_search(&e.key).is_err()).collect();
        puts.extend(damaged.iter().filter_map(|k| self.table.entry(k)));
        deletes.extend(damaged);
        commit(store, events, Job { seq: MIGRATION_SEQ, puts: Vec::new(), deletes })?;
        commit(store, events, Job { seq: MIGRATION_SEQ, puts, deletes: Vec::new() })
    }
}

fn commit(store: &Store, events: &mut mpsc::Receiver<StoreEvent>, job: Job) -> Result<(), IntegrityError> {
    if job.puts.is_empty() && job.deletes.is_empty() {
        return Ok(());
    }
    store.submit(job)?;
    match events.blocking_recv() {
        Some(StoreEvent::Committed(MIGRATION_SEQ)) => Ok(()),
        Some(StoreEvent::Failed(_, e)) => Err(IntegrityError::Migration(e.to_string())),
        other => Err(IntegrityError::Migration(format!("unexpected store answer {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{PeerFields, PeerRecord};

    fn record(name: &str) -> PeerRecord {
        PeerRecord::create(PeerFields { name: Some(name.into()), ..Default::default() }, 1)
    }

    fn commit_now(
        store: &Store,
        events: &mut mpsc::Receiver<StoreEvent>,
        puts: Vec<Entry>,
        deletes: Vec<String>,
    ) {
        store.submit(Job { seq: 7, puts, deletes }).unwrap();
        assert!(matches!(events.blocking_recv(), Some(StoreEvent::Committed(7))));
    }

    fn flip_all(file: &Path, needle: &[u8]) -> usize {
        let mut bytes = std::fs::read(file).unwrap();
        let hits: Vec<usize> =
            bytes.windows(needle.len()).enumerate().filter(|(_, w)| *w == needle).map(|(i, _)| i).collect();
        for &i in &hits {
            bytes[i + needle.len() - 1] ^= 1;
        }
        std::fs::write(file, bytes).unwrap();
        hits.len()
    }

    fn open_at(dir: &Path) -> Opened {
        let signer = Signer::from_secret([1; 32]);
        open(dir, signer, "test", TableConfig::default(), 8, false).unwrap()
    }

    /// Entries written before values carried a checksum (format 2) are checked by their
    /// signature at start: a changed byte there is caught too.
    #[test]
    fn entries_stored_without_a_checksum_are_checked_by_signature_at_start() {
        let dir = tempfile::tempdir().unwrap();
        drop(open_at(dir.path())); // a data dir of this node, with its tables
        let mut t = Table::new(Signer::from_secret([1; 32]), "test", TableConfig::default());
        let good = t.put("v2-good".into(), record("g"), 1000);
        let mut bad = t.put("v2-bad".into(), record("b"), 1000);
        bad.record = Some(std::sync::Arc::new(record("changed on disk")));
        {
            let db = redb::Database::create(dir.path().join(store::TABLE_FILE)).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let def: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("entries");
                let mut entries = txn.open_table(def).unwrap();
                for e in [&good, &bad] {
                    // Format 2: the version byte, then (stamp, record, signature); no checksum.
                    let mut v = vec![2u8];
                    v.extend(postcard::to_stdvec(&(e.stamp, &e.record, e.sig)).unwrap());
                    entries.insert(e.key.as_str(), v.as_slice()).unwrap();
                }
            }
            txn.commit().unwrap();
        }
        let opened = open_at(dir.path());
        assert_eq!(opened.scrubbed, 1);
        assert_eq!(opened.table.entry("v2-good"), Some(good));
        assert!(opened.table.entry("v2-bad").is_none(), "its signature does not fit the changed value");
    }

    /// The damaged newest write of a key (in the journal, as a crash leaves it) is dropped; the
    /// intact older one (in the keyed table) is served and rewritten, so the next start finds
    /// nothing damaged and a later fold cannot bring the damaged one back over it.
    #[test]
    fn a_damaged_newest_write_falls_back_to_the_intact_older_one_for_good() {
        let running = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut t = Table::new(Signer::from_secret([1; 32]), "test", TableConfig::default());
        {
            let opened = open_at(running.path());
            let (store, mut events) = (opened.store, opened.events);
            commit_now(&store, &mut events, vec![t.put("k".into(), record("first"), 1000)], vec![]);
            // A delete folds the journal into the keyed table: "first" moves there.
            commit_now(
                &store,
                &mut events,
                vec![t.put("other".into(), record("o"), 1000)],
                vec!["none".into()],
            );
            commit_now(&store, &mut events, vec![t.put("k".into(), record("second-QQQ"), 2000)], vec![]);
            // A later write: the damaged one is not the journal's last (which could be torn).
            commit_now(&store, &mut events, vec![t.put("later".into(), record("l"), 3000)], vec![]);
            // The files as a crash leaves them: a clean stop would fold the journal in.
            for file in [store::TABLE_FILE, store::JOURNAL_FILE] {
                std::fs::copy(running.path().join(file), dir.path().join(file)).unwrap();
            }
        }
        assert_eq!(flip_all(&dir.path().join(store::JOURNAL_FILE), b"second-QQQ"), 1);

        let opened = open_at(dir.path());
        assert_eq!(opened.scrubbed, 1);
        assert_eq!(opened.table.get("k").unwrap().name, "first");
        assert_eq!(opened.table.get("other").unwrap().name, "o");
        drop(opened);
        let opened = open_at(dir.path());
        assert_eq!(opened.scrubbed, 0, "repaired on disk");
        assert_eq!(opened.table.get("k").unwrap().name, "first");
        drop(opened);
        assert_eq!(scrub(dir.path(), "test").unwrap().dropped, Vec::<String>::new());
    }

    #[test]
    fn scrub_reports_and_deletes_damaged_entries_and_refuses_a_missing_table() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(scrub(dir.path(), "test"), Err(IntegrityError::NoTable(..))));
        let mut t = Table::new(Signer::from_secret([1; 32]), "test", TableConfig::default());
        {
            let opened = open_at(dir.path());
            let (store, mut events) = (opened.store, opened.events);
            let puts =
                (0..5).map(|i| t.put(format!("k{i}"), record(&format!("name-{i}-QQQ")), 1000)).collect();
            commit_now(&store, &mut events, puts, vec![]);
        }
        flip_all(&dir.path().join(store::TABLE_FILE), b"name-3-QQQ");
        let found = scrub(dir.path(), "test").unwrap();
        assert_eq!(found.to_string(), "checked 5 entries, dropped 1 damaged: k3");
        assert_eq!(scrub(dir.path(), "test").unwrap().to_string(), "checked 4 entries, dropped 0 damaged");
        let other_network = scrub(dir.path(), "other").unwrap();
        assert_eq!(other_network.dropped.len(), 4, "signatures are per network");
    }
}
