//! The writer thread: commits jobs in groups, in order, and after a failure fails every later job
//! until a probe commit succeeds, so that failures form a clean cut (every job before the first
//! failed one is durable, none after it is) which the replica can roll back exactly.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::mpsc;

use super::error::db_err;
use super::{contained_db, StoreMetrics, CACHE_BYTES, ENTRIES, LOG, LOG_FOLD_AT, MAX_GROUP};
use super::{decode_log, encode, encode_log, Job, Loaded, StoreError, StoreEvent};

/// Scratch space of the probe: written and emptied again, never read.
const PROBE: TableDefinition<u64, &[u8]> = TableDefinition::new("probe");
/// What a probe writes: far more than a typical commit, so that a disk with just enough room
/// for the probe does not take writes only to fail again at once (flapping in and out).
const PROBE_BYTES: usize = 64 * 1024;

/// What the writer is asked to do, in order.
#[derive(Debug)]
pub(super) enum Work {
    Commit(Job),
    /// Try a commit of real size, reopening the database if an earlier commit failed; answered
    /// with [`StoreEvent::ProbeOk`] or [`StoreEvent::ProbeFailed`].
    Probe,
}

/// The writer thread's state.
pub(super) struct Writer {
    /// `None` after a reopen failed; the next probe tries again.
    db: Option<Database>,
    path: PathBuf,
    /// Key of the next log entry.
    next_seq: u64,
    /// Writes in the log, not yet folded into the keyed table.
    logged: u64,
    /// Set by a failed commit (or fold): every job fails with it until a probe succeeds.
    failed: Option<Arc<StoreError>>,
    metrics: StoreMetrics,
}

impl Writer {
    pub fn new(db: Database, path: PathBuf, next_seq: u64, logged: u64, metrics: StoreMetrics) -> Self {
        Writer { db: Some(db), path, next_seq, logged, failed: None, metrics }
    }

    /// Takes every queued job (up to [`MAX_GROUP`], up to a probe), commits them in one durable
    /// transaction, then reports to each. While it commits, new jobs queue up for the next group.
    pub fn run(mut self, mut rx: mpsc::Receiver<Work>, events: mpsc::Sender<StoreEvent>) {
        let mut group = Vec::with_capacity(MAX_GROUP);
        while let Some(first) = rx.blocking_recv() {
            let mut probe = false;
            match first {
                Work::Commit(job) => group.push(job),
                Work::Probe => probe = true,
            }
            while !probe && group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(Work::Commit(job)) => group.push(job),
                    Ok(Work::Probe) => probe = true,
                    Err(_) => break,
                }
            }
            if !group.is_empty() {
                self.commit_group(&mut group, &events);
            }
            if probe {
                let event = match contained_db(|| self.probe()) {
                    Ok(()) => StoreEvent::ProbeOk,
                    Err(e) => StoreEvent::ProbeFailed(Arc::new(e)),
                };
                send(&events, event);
            }
        }
        tracing::debug!("store writer stopped");
    }

    fn commit_group(&mut self, group: &mut Vec<Job>, events: &mpsc::Sender<StoreEvent>) {
        let result = match &self.failed {
            // Not even tried: this job must fail like those before it, or the cut is not clean.
            Some(e) => Err(e.clone()),
            None => {
                let started = Instant::now();
                let result = contained_db(|| self.commit(group)).map_err(Arc::new);
                if result.is_ok() {
                    let entries = group.iter().map(|j| j.puts.len() + j.deletes.len()).sum();
                    self.metrics.committed(entries, started.elapsed());
                }
                result
            }
        };
        if let (Err(e), None) = (&result, &self.failed) {
            // The replica says so (once, going read-only): here only the detail.
            tracing::debug!(error = %e, jobs = group.len(), "store commit failed; failing every commit until a probe succeeds");
            self.failed = Some(e.clone());
        }
        for job in group.drain(..) {
            let event = match &result {
                Ok(()) => StoreEvent::Committed(job.seq),
                Err(e) => StoreEvent::Failed(job.seq, e.clone()),
            };
            send(events, event);
        }
        // After the replies: folding takes a while, and nobody waits for it.
        if result.is_ok() && self.logged >= LOG_FOLD_AT {
            if let Err(e) = contained_db(|| self.fold_alone()) {
                // redb fails every later transaction after an I/O error: say why now, once.
                tracing::error!(error = %e, "folding the store's log failed; failing every commit until a probe succeeds");
                self.failed = Some(Arc::new(e));
            }
        }
    }

    fn db(&self) -> Result<&Database, StoreError> {
        self.db.as_ref().ok_or_else(|| StoreError::Db("the database is closed after a failure".into()))
    }

    fn commit(&mut self, group: &[Job]) -> Result<(), StoreError> {
        let txn = self.db()?.begin_write().map_err(db_err)?;
        let mut seq = self.next_seq;
        {
            let mut log = txn.open_table(LOG).map_err(db_err)?;
            for e in group.iter().flat_map(|job| &job.puts) {
                log.insert(seq, encode_log(e).as_slice()).map_err(db_err)?;
                seq += 1;
            }
        }
        let mut folded = false;
        if group.iter().any(|job| !job.deletes.is_empty()) {
            // A delete must not be undone by an older write still in the log.
            fold(&txn)?;
            folded = true;
            let mut table = txn.open_table(ENTRIES).map_err(db_err)?;
            for k in group.iter().flat_map(|job| &job.deletes) {
                table.remove(k.as_str()).map_err(db_err)?;
            }
        }
        txn.commit().map_err(db_err)?;
        self.logged = if folded { 0 } else { self.logged + (seq - self.next_seq) };
        self.next_seq = seq;
        Ok(())
    }

    fn fold_alone(&mut self) -> Result<(), StoreError> {
        let txn = self.db()?.begin_write().map_err(db_err)?;
        fold(&txn)?;
        txn.commit().map_err(db_err)?;
        self.logged = 0;
        Ok(())
    }

    /// After a failure, reopens the database (redb fails every transaction after an I/O error
    /// until it is reopened; the reopen repairs it if needed), then commits a real-sized write
    /// and removes it again, and folds the log if that is due (a fold that cannot succeed would
    /// fail the next commit at once). Only then are commits taken again.
    fn probe(&mut self) -> Result<(), StoreError> {
        if self.failed.is_some() || self.db.is_none() {
            // Dropped first: the file is locked while it is open.
            self.db = None;
            let db = Database::builder()
                .set_cache_size(CACHE_BYTES)
                .create(&self.path)
                .map_err(|e| StoreError::Open { path: self.path.clone(), reason: e.to_string() })?;
            self.db = Some(db);
            self.recount()?;
        }
        let db = self.db()?;
        let txn = db.begin_write().map_err(db_err)?;
        txn.open_table(PROBE)
            .map_err(db_err)?
            .insert(0, vec![0xa5; PROBE_BYTES].as_slice())
            .map_err(db_err)?;
        txn.commit().map_err(db_err)?;
        let txn = db.begin_write().map_err(db_err)?;
        txn.delete_table(PROBE).map_err(db_err)?;
        txn.commit().map_err(db_err)?;
        if self.logged >= LOG_FOLD_AT {
            self.fold_alone()?;
        }
        if let Some(e) = self.failed.take() {
            tracing::debug!(was = %e, "store probe commit succeeded; taking commits again");
        }
        Ok(())
    }

    /// Reads the log's position back after a reopen: what is durable is what the file says.
    fn recount(&mut self) -> Result<(), StoreError> {
        let read = self.db()?.begin_read().map_err(db_err)?;
        let log = read.open_table(LOG).map_err(db_err)?;
        self.logged = log.len().map_err(db_err)?;
        if let Some((last, _)) = log.last().map_err(db_err)? {
            self.next_seq = self.next_seq.max(last.value() + 1);
        }
        Ok(())
    }
}

/// Moves every logged write into the keyed table, in log order: a key's writes reach the
/// store in stamp order (only writes that changed the table are persisted), so the last wins.
fn fold(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    let mut log = txn.open_table(LOG).map_err(db_err)?;
    let mut table = txn.open_table(ENTRIES).map_err(db_err)?;
    for row in log.iter().map_err(db_err)? {
        let (k, v) = row.map_err(db_err)?;
        match decode_log(k.value(), v.value())? {
            Loaded::Signed(e) | Loaded::Checked(e) => {
                table.insert(e.key.as_str(), encode(&e).as_slice()).map_err(db_err)?;
            }
            // Left to the node's start-up migration, which rewrites or deletes it.
            Loaded::Unsigned(_) => {}
        }
    }
    log.retain(|_, _| false).map_err(db_err)?;
    Ok(())
}

/// Waits only if the caller broke its bound (see `Store::open`); fails only once the caller is
/// gone, when nobody is left to tell.
fn send(events: &mpsc::Sender<StoreEvent>, event: StoreEvent) {
    if events.blocking_send(event).is_err() {
        tracing::debug!("store answers have no receiver any more");
    }
}
