//! Durable storage: the table in a redb file, written by one thread that commits in groups, and the
//! node's identity key file. The only module that touches disk.
//!
//! A commit appends its writes to a journal file (`journal.rs`: one or two contiguous pages per
//! fsync) instead of inserting them by key into redb (a copy-on-write B-tree: about six scattered
//! pages per fsync, and an fsync costs more the more pages it flushes). The writer folds the
//! journal into the keyed table in large batches, one redb transaction each. Loading reads both,
//! merging by stamp.

mod contain;
mod datadir;
mod error;
mod format;
mod identity;
mod journal;
mod load;
mod metrics;
mod writer;

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use redb::Database;
use tokio::sync::mpsc;

use crate::core::Entry;

pub use datadir::{check_data_dir, DirCheck, StartMode, TABLE_FILE};
use error::ensure_dir;
pub use error::StoreError;
pub use format::Loaded;
use format::{decode_log, encode, encode_log, ENTRIES, LOG};
pub use identity::{create_key_file, load_or_create_identity, read_key_file, IDENTITY_FILE};
pub use journal::JOURNAL_FILE;
pub use load::{OpenReport, Owner};
pub use metrics::StoreMetrics;
use writer::{Start, Work, Writer};

/// At most this many jobs share one transaction and one fsync.
pub const MAX_GROUP: usize = 1024;
/// redb's page cache: the whole table also lives in memory, so the cache only serves writes.
const CACHE_BYTES: usize = 16 << 20;

/// One commit for the writer: entries to write and keys to delete, in one transaction.
#[derive(Debug)]
pub struct Job {
    /// The caller's number for this commit; the answer carries it back.
    pub seq: u64,
    pub puts: Vec<Entry>,
    pub deletes: Vec<String>,
}

/// The writer's answer to a [`Job`].
#[derive(Debug)]
pub enum StoreEvent {
    /// Job `seq` is durable (fsynced).
    Committed(u64),
    /// Job `seq` could not be made durable. Every later job fails too, until a probe succeeds.
    Failed(u64, Arc<StoreError>),
    /// The probe ([`Store::probe`]) committed: jobs are taken again.
    ProbeOk,
    /// The probe failed: jobs still fail.
    ProbeFailed(Arc<StoreError>),
}

/// Handle to the store. Dropping it (or [`Store::close`]) lets the writer finish its queue and stop.
pub struct Store {
    /// `None` once closing: dropping the sender is what tells the writer to finish.
    jobs: Option<mpsc::Sender<Work>>,
    writer: Option<JoinHandle<()>>,
    metrics: StoreMetrics,
}

impl Store {
    /// Opens (or creates) the table in `dir`, handing every stored entry to `load` (streamed, so
    /// the table is never held twice in memory). Returns the store and the channel its answers
    /// come on. `capacity` bounds both the job queue and the answers: a caller that keeps at most
    /// `capacity` jobs unanswered never finds either full, and the writer never waits for it.
    pub fn open(
        dir: &Path,
        capacity: usize,
        load: impl FnMut(Loaded),
    ) -> Result<(Store, mpsc::Receiver<StoreEvent>), StoreError> {
        Self::open_as(dir, capacity, &Owner::default(), load).map(|(store, events, _)| (store, events))
    }

    /// [`Store::open`], checking (and recording) whose table it is, and reporting what was
    /// dropped. A damaged file is an error naming it (redb's panics on damaged pages included),
    /// never a crash; a value that does not decode is dropped and deleted, not an error.
    pub fn open_as(
        dir: &Path,
        capacity: usize,
        owner: &Owner,
        mut load: impl FnMut(Loaded),
    ) -> Result<(Store, mpsc::Receiver<StoreEvent>, OpenReport), StoreError> {
        ensure_dir(dir)?;
        let path = dir.join(TABLE_FILE);
        let opened = contain::contained(|| {
            let db = Database::builder().set_cache_size(CACHE_BYTES).create(&path).map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Open {
                    path: path.clone(),
                    reason: format!("{e} (is another udht-node using this data dir?)"),
                },
                e => load::classify(&path, e),
            })?;
            let read = load::read_all(&db, &path, owner, &mut load)?;
            Ok::<_, StoreError>((db, read))
        });
        let (db, read) = opened.map_err(|reason| StoreError::Damaged { path: path.clone(), reason })??;
        let capacity = capacity.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        let (events, events_rx) = mpsc::channel(capacity);
        let start = Start {
            db,
            path,
            journal: read.journal,
            unfolded: read.unfolded,
            logged: read.logged,
            fold_first: read.skipped_frames,
        };
        let metrics = StoreMetrics::default();
        // Made here, not on the thread: a fold it owes (see `Start::fold_first`) is done before
        // the store is handed out.
        let writer = Writer::new(start, metrics.clone());
        let writer = std::thread::Builder::new()
            .name("udht-store".into())
            .spawn(move || {
                // Dropping the database at the end reads it too: contained like every commit.
                if let Err(e) = contain::contained(|| writer.run(rx, events)) {
                    tracing::error!(error = %e, "the store's writer stopped");
                }
            })
            .map_err(|e| StoreError::DataDir { path: dir.to_owned(), source: e })?;
        Ok((Store { jobs: Some(tx), writer: Some(writer), metrics }, events_rx, read.report))
    }

    /// The commit histograms, to register for `/metrics`.
    pub fn metrics(&self) -> &StoreMetrics {
        &self.metrics
    }

    /// Queues a job without waiting. A full queue is an error, not a wait: the caller bounds
    /// what it has in flight (see [`Store::open`]), so this only happens if that bound is broken.
    pub fn submit(&self, job: Job) -> Result<(), StoreError> {
        self.send(Work::Commit(job))
    }

    /// Asks for a probe commit after the jobs queued so far: after a failure, the only way back
    /// to taking jobs. Answered with [`StoreEvent::ProbeOk`] or [`StoreEvent::ProbeFailed`].
    pub fn probe(&self) -> Result<(), StoreError> {
        self.send(Work::Probe)
    }

    fn send(&self, work: Work) -> Result<(), StoreError> {
        let jobs = self.jobs.as_ref().ok_or(StoreError::Closed)?;
        jobs.try_send(work).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => StoreError::QueueFull,
            mpsc::error::TrySendError::Closed(_) => StoreError::Closed,
        })
    }

    /// Takes no more jobs; the writer commits what is queued, answers it, and stops.
    pub fn stop_accepting(&mut self) {
        self.jobs = None;
    }

    /// Stops accepting jobs, commits what is queued, and waits for the writer to finish. The
    /// answers must be drained meanwhile (or their receiver dropped), or the writer waits.
    pub async fn close(&mut self) {
        self.jobs = None;
        if let Some(w) = self.writer.take() {
            let _ = tokio::task::spawn_blocking(move || w.join()).await;
        }
    }
}

impl Drop for Store {
    /// Closing the channel lets the writer commit what is queued and exit; wait for it, so the
    /// database file is released before anyone reopens it.
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// A redb call that may panic on a damaged file (see `contain`), its panic as an error.
fn contained_db<T>(f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    contain::contained(f).unwrap_or_else(|reason| Err(StoreError::Db(reason)))
}

#[cfg(test)]
mod tests {
    use redb::ReadableDatabase;
    use serde::Serialize;

    use super::format::{decode, FORMAT_V1};
    use super::*;
    use crate::core::sign::{Signature, Signer};
    use crate::core::{PeerRecord, Stamp, Table, TableConfig};

    fn signed(e: Loaded) -> Entry {
        match e {
            Loaded::Signed(e) | Loaded::Checked(e) => e,
            Loaded::Unsigned(e) => panic!("this version stores entries signed: {e:?}"),
        }
    }

    fn record() -> PeerRecord {
        PeerRecord {
            name: "n".into(),
            ip: "1.2.3.4".into(),
            port: "1".into(),
            peer_id: Some("12D3".into()),
            ports: [("userSync".to_string(), 3003)].into(),
            addrs: vec!["/ip4/1.2.3.4/tcp/4001".into()],
            created_at: 1,
            updated_at: 2,
            last_connection_on: 3,
        }
    }

    #[tokio::test]
    async fn committed_entries_and_deletes_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = Table::for_tests(1);
        let a = t.put("a".into(), record(), 1000);
        let b = t.put("b".into(), record(), 1000);
        let tomb = t.remove("b", 1001).unwrap();
        {
            let (mut store, mut events) =
                Store::open(dir.path(), 8, |e| panic!("a new store holds nothing, got {e:?}")).unwrap();
            store.submit(Job { seq: 1, puts: vec![a.clone(), b], deletes: vec![] }).unwrap();
            store.submit(Job { seq: 2, puts: vec![tomb.clone()], deletes: vec!["zzz".into()] }).unwrap();
            for want in [1, 2] {
                match events.recv().await {
                    Some(StoreEvent::Committed(seq)) => assert_eq!(seq, want, "answers come in order"),
                    other => panic!("expected commit {want}, got {other:?}"),
                }
            }
            store.close().await;
        }
        let mut loaded = Vec::new();
        let _store = Store::open(dir.path(), 8, |e| match e {
            Loaded::Signed(e) | Loaded::Checked(e) => loaded.push(e),
            Loaded::Unsigned(e) => panic!("this version stores entries signed: {e:?}"),
        })
        .unwrap();
        loaded.sort_by(|x, y| x.key.cmp(&y.key));
        assert_eq!(loaded, vec![a, tomb]);
        let reloaded = Table::load(Signer::from_secret([1; 32]), "test", TableConfig::default(), loaded);
        assert_eq!(reloaded.root(), t.root());
    }

    /// Writes go to the journal and are folded into the keyed table; either way a reopen sees
    /// the newest write of every key, and a delete is not undone by an older journaled write.
    #[tokio::test]
    async fn journaled_and_folded_writes_reload_as_the_newest_per_key() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = Table::for_tests(1);
        // Enough to fold more than once (a fold is due at 3/4 of the journal), leaving some behind.
        let per_write = encode_log(&Table::for_tests(1).put("k0".into(), record(), 999)).len() + 12;
        let total = journal::JOURNAL_BYTES as usize / per_write * 2;
        // The files as a crash would leave them, taken once every write is acknowledged.
        let crashed = tempfile::tempdir().unwrap();
        {
            let (mut store, mut events) = Store::open(dir.path(), 64, |_| {}).unwrap();
            let mut seq = 0;
            let mut submit = |puts: Vec<Entry>, deletes: Vec<String>| {
                seq += 1;
                store.submit(Job { seq, puts, deletes }).unwrap();
            };
            for i in 0..total {
                submit(vec![t.put(format!("k{}", i % 1000), record(), 1000 + i as u64)], vec![]);
                if i % 32 == 31 {
                    // Keep under the capacity, as the node does.
                    for _ in 0..32 {
                        assert!(matches!(events.recv().await, Some(StoreEvent::Committed(_))));
                    }
                }
            }
            submit(vec![t.remove("k7", 50_000).unwrap()], vec![]);
            // A tombstone collection deletes k7 while its tombstone may still be logged.
            t.collect_tombstones(u64::MAX);
            submit(vec![], vec!["k7".into()]);
            submit(vec![t.put("after-delete".into(), record(), 60_000)], vec![]);
            for _ in 0..(total % 32 + 3) {
                assert!(matches!(events.recv().await, Some(StoreEvent::Committed(_))));
            }
            // Newer writes of keys the table holds: in groups of their own (the delete's group
            // went straight into the table), so they are only in the journal.
            for i in 100..132 {
                submit(vec![t.put(format!("k{i}"), record(), 70_000 + i)], vec![]);
            }
            for _ in 0..32 {
                assert!(matches!(events.recv().await, Some(StoreEvent::Committed(_))));
            }
            for file in [TABLE_FILE, JOURNAL_FILE] {
                std::fs::copy(dir.path().join(file), crashed.path().join(file)).unwrap();
            }
            let mut registry = prometheus_client::registry::Registry::default();
            store.metrics().register(&mut registry);
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
            let folds = text.lines().find(|l| l.starts_with("udht_store_fold_duration_seconds_count"));
            let folds: u64 = folds.and_then(|l| l.split(' ').nth(1)).unwrap().parse().unwrap();
            // One to record the first generation, two when it was 3/4 full, one before the delete.
            assert!(folds >= 3, "{text}");
            store.close().await;
        }
        // After a crash the journal holds the newest writes; after a clean close it is folded in.
        for (dir, how) in [(crashed.path(), "after a crash"), (dir.path(), "after a clean close")] {
            let journaled = journaled(dir);
            let mut loaded = Table::for_tests(1);
            let _store = Store::open(dir, 8, |e| loaded.load_entry(signed(e))).unwrap();
            eprintln!("{how}: {journaled} entries replayed from the journal");
            assert_eq!(journaled >= 32, how == "after a crash");
            assert_eq!(loaded.len_with_tombstones(), t.len_with_tombstones(), "{how}");
            assert_eq!(loaded.root(), t.root(), "same keys and stamps as the live table {how}");
            assert!(loaded.entry("k7").is_none(), "the delete was not undone by the journal {how}");
        }
    }

    /// How many frames the journal in `dir` holds for the table's current generation.
    fn journaled(dir: &Path) -> usize {
        let generation = {
            let db = Database::create(dir.join(TABLE_FILE)).unwrap();
            load::read_generation(&db.begin_read().unwrap(), dir).unwrap()
        };
        journal::Journal::open(dir, generation).unwrap().1.frames.len()
    }

    /// A data dir written before entries were signed (format 1, in the table and in the log)
    /// still loads: its entries come back as unsigned, for the node to re-sign or drop.
    #[test]
    fn entries_of_the_unsigned_format_load_as_unsigned() {
        #[derive(Serialize)]
        struct V1<'a> {
            stamp: Stamp,
            record: &'a Option<Arc<PeerRecord>>,
        }
        #[derive(Serialize)]
        struct LogV1<'a> {
            key: &'a str,
            stamp: Stamp,
            record: &'a Option<Arc<PeerRecord>>,
        }
        let dir = tempfile::tempdir().unwrap();
        let mut t = Table::for_tests(1);
        let (a, b) = (t.put("a".into(), record(), 1000), t.put("b".into(), record(), 1001));
        {
            let db = Database::create(dir.path().join(TABLE_FILE)).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut entries = txn.open_table(ENTRIES).unwrap();
                let mut bytes = vec![FORMAT_V1];
                bytes.extend(postcard::to_stdvec(&V1 { stamp: a.stamp, record: &a.record }).unwrap());
                entries.insert("a", bytes.as_slice()).unwrap();
                let mut log = txn.open_table(LOG).unwrap();
                let mut bytes = vec![FORMAT_V1];
                bytes.extend(
                    postcard::to_stdvec(&LogV1 { key: "b", stamp: b.stamp, record: &b.record }).unwrap(),
                );
                log.insert(0, bytes.as_slice()).unwrap();
            }
            txn.commit().unwrap();
        }
        let mut loaded = Vec::new();
        let _store = Store::open(dir.path(), 8, |e| loaded.push(e)).unwrap();
        let unsigned = |e: &Entry| Loaded::Unsigned(Entry { sig: Signature([0; 64]), ..e.clone() });
        assert_eq!(loaded, vec![unsigned(&a), unsigned(&b)]);
    }

    #[test]
    fn a_data_dir_in_use_or_not_a_directory_is_refused_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(dir.path(), 8, |_| {}).unwrap();
        let again = Store::open(dir.path(), 8, |_| {}).err().expect("a second open is refused").to_string();
        assert!(again.contains(&dir.path().join(TABLE_FILE).display().to_string()), "{again}");
        assert!(again.contains("another udht-node"), "{again}");
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"x").unwrap();
        let not_dir = Store::open(&file, 8, |_| {}).err().expect("a file is not a data dir").to_string();
        assert!(not_dir.contains("a-file") && not_dir.contains("not a directory"), "{not_dir}");
    }

    #[test]
    fn unknown_formats_are_reported_not_guessed() {
        assert!(matches!(decode("k", &[9, 1, 2]), Err(StoreError::Corrupt { .. })));
        assert!(matches!(decode("k", &[]), Err(StoreError::Corrupt { .. })));
    }
}

#[cfg(test)]
mod bounds {
    use super::*;

    #[tokio::test]
    async fn a_job_beyond_the_capacity_is_refused_not_queued() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _events) = Store::open(dir.path(), 1, |_| {}).unwrap();
        // The writer may take the first job at once; keep submitting until the queue is full.
        let refused = (0..1000)
            .map(|seq| store.submit(Job { seq, puts: vec![], deletes: vec![] }))
            .find(Result::is_err);
        assert!(matches!(refused, Some(Err(StoreError::QueueFull))), "{refused:?}");
    }
}
