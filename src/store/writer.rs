//! The writer thread: commits jobs in groups, in order, and after a failure fails every later job
//! until a probe commit succeeds, so that failures form a clean cut (every job before the first
//! failed one is durable, none after it is) which the replica can roll back exactly.
//!
//! A group is made durable by appending it to the journal; the journal is folded into the keyed
//! table (one redb transaction) when it is three quarters full, after the group's answers. A
//! group with deletes, or one that does not fit in the journal, goes into the table itself, in
//! a transaction of its own after the journal was folded.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::mpsc;

use super::error::db_err;
use super::format::{JOURNAL_GENERATION, META};
use super::journal::{Journal, JOURNAL_BYTES, JOURNAL_FILE};
use super::{contained_db, StoreMetrics, CACHE_BYTES, ENTRIES, LOG, MAX_GROUP};
use super::{decode_log, encode, encode_log, Job, Loaded, StoreError, StoreEvent};
use crate::core::Entry;

/// A legacy log this long is folded even if the journal is not due.
const LEGACY_FOLD_AT: u64 = 8192;
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
    journal: Journal,
    /// The journal's entries, in order: what the next fold writes into the keyed table.
    unfolded: Vec<Entry>,
    /// Rows in the legacy log table (written by versions before the journal), folded with it.
    logged: u64,
    /// Set by a failed commit (or fold): every job fails with it until a probe succeeds.
    failed: Option<Arc<StoreError>>,
    metrics: StoreMetrics,
}

/// What the writer starts from: the open database and what opening read.
pub(super) struct Start {
    pub db: Database,
    pub path: PathBuf,
    pub journal: Journal,
    pub unfolded: Vec<Entry>,
    pub logged: u64,
    /// Fold before taking jobs: opening left frames out that must not be read again.
    pub fold_first: bool,
}

impl Writer {
    pub fn new(start: Start, metrics: StoreMetrics) -> Self {
        let Start { db, path, journal, unfolded, logged, fold_first } = start;
        let mut writer = Writer { db: Some(db), path, journal, unfolded, logged, failed: None, metrics };
        if fold_first {
            if let Err(e) = contained_db(|| writer.fold(&[], &[])) {
                // Jobs fail until a probe folds: no frame after the skipped ones may count.
                tracing::warn!(error = %e, "folding the journal at start failed; failing every commit until a probe succeeds");
                writer.failed = Some(Arc::new(e));
            }
        }
        writer
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
        // A clean stop leaves the table file whole: the journal is folded in (if the disk
        // allows; if not, the next start replays it).
        if self.failed.is_none() && !self.unfolded.is_empty() {
            if let Err(e) = contained_db(|| self.fold(&[], &[])) {
                tracing::warn!(error = %e, "folding the journal at stop failed; the next start replays it");
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
        if result.is_ok() && self.fold_due() {
            if let Err(e) = contained_db(|| self.fold(&[], &[])) {
                // redb fails every later transaction after an I/O error: say why now, once.
                tracing::error!(error = %e, "folding the store's journal failed; failing every commit until a probe succeeds");
                self.failed = Some(Arc::new(e));
            }
        }
    }

    /// Whether the journal (or a legacy log) should be folded now, before it fills.
    fn fold_due(&self) -> bool {
        let journal_due = self.journal.used() >= self.journal.capacity() / 4 * 3;
        (journal_due && !self.unfolded.is_empty()) || self.logged >= LEGACY_FOLD_AT
    }

    fn db(&self) -> Result<&Database, StoreError> {
        self.db.as_ref().ok_or_else(|| StoreError::Db("the database is closed after a failure".into()))
    }

    /// Makes the group durable: appended to the journal if it can be, else written into the
    /// table. The journal's entries are folded in first, by themselves: a transaction that fails
    /// may still have reached the disk in part, and then it must hold only acknowledged writes.
    fn commit(&mut self, group: &[Job]) -> Result<(), StoreError> {
        let puts: Vec<&Entry> = group.iter().flat_map(|job| &job.puts).collect();
        let deletes: Vec<&str> = group.iter().flat_map(|job| &job.deletes).map(String::as_str).collect();
        if deletes.is_empty() {
            let payloads: Vec<Vec<u8>> = puts.iter().map(|e| encode_log(e)).collect();
            let mut frames = self.journal.frames(payloads.iter().map(Vec::as_slice));
            if !self.journal.fits(frames.len()) && self.journal.used() > 0 {
                self.fold(&[], &[])?;
                // The frames' checksums name the generation and offset: made again.
                frames = self.journal.frames(payloads.iter().map(Vec::as_slice));
            }
            if self.journal.fits(frames.len()) {
                self.journal.append(&frames).map_err(|e| self.journal.error(e))?;
                self.unfolded.extend(puts.into_iter().cloned());
                return Ok(());
            }
        }
        // A delete must not be undone by an older write still in the journal: that is folded
        // in first. (A group larger than the whole journal goes straight in too.)
        if !self.unfolded.is_empty() || self.logged > 0 {
            self.fold(&[], &[])?;
        }
        self.fold(&puts, &deletes)
    }

    /// One durable transaction: the legacy log, the journal's entries, then `puts` and `deletes`
    /// go into the keyed table, and a new journal generation is recorded, which retires every
    /// frame in the journal. Only then is the journal restarted.
    fn fold(&mut self, puts: &[&Entry], deletes: &[&str]) -> Result<(), StoreError> {
        let started = Instant::now();
        let txn = self.db()?.begin_write().map_err(db_err)?;
        if self.logged > 0 {
            fold_log(&txn)?;
        }
        {
            let mut table = txn.open_table(ENTRIES).map_err(db_err)?;
            for e in self.unfolded.iter().chain(puts.iter().copied()) {
                table.insert(e.key.as_str(), encode(e).as_slice()).map_err(db_err)?;
            }
            for k in deletes {
                table.remove(*k).map_err(db_err)?;
            }
        }
        // The first generation is random: frames a journal kept from another table (one moved
        // aside with --reset-table) never validate as this one's.
        let next = self.journal.generation().map_or_else(rand::random::<u64>, |g| g.wrapping_add(1));
        txn.open_table(META)
            .map_err(db_err)?
            .insert(JOURNAL_GENERATION, next.to_string().as_str())
            .map_err(db_err)?;
        txn.commit().map_err(db_err)?;
        self.journal.restart(next);
        self.unfolded.clear();
        self.logged = 0;
        self.metrics.folded(started.elapsed());
        Ok(())
    }

    /// After a failure, reopens the database (redb fails every transaction after an I/O error
    /// until it is reopened; the reopen repairs it if needed) and the journal, then commits a
    /// real-sized write and removes it again, and folds the journal, which also retires any
    /// frame a failed append may have left. Only then are commits taken again.
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
        self.fold(&[], &[])?;
        if self.failed.is_some() || self.journal.capacity() < JOURNAL_BYTES {
            // A fresh handle (an I/O error may have spoiled the old one), and the full size if
            // the disk was too full for it before. Nothing in it counts any more after the fold.
            let dir = self.path.parent().unwrap_or(&self.path);
            let (journal, _) = Journal::open(dir, self.journal.generation())
                .map_err(|source| StoreError::Journal { path: dir.join(JOURNAL_FILE), source })?;
            self.journal = journal;
        }
        if let Some(e) = self.failed.take() {
            tracing::debug!(was = %e, "store probe commit succeeded; taking commits again");
        }
        Ok(())
    }

    /// Reads the legacy log's size back after a reopen: what is durable is what the file says.
    fn recount(&mut self) -> Result<(), StoreError> {
        let read = self.db()?.begin_read().map_err(db_err)?;
        self.logged = read.open_table(LOG).map_err(db_err)?.len().map_err(db_err)?;
        Ok(())
    }
}

/// Moves every row of the legacy log into the keyed table, in log order: a key's writes reach
/// the store in stamp order (only writes that changed the table are persisted), so the last wins.
fn fold_log(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
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
