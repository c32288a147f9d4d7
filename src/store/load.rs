//! Reading the table at open: every stored entry handed to the caller, a value that does not
//! decode dropped (and deleted, so anti-entropy fetches the key again) instead of failing the
//! whole start, and the table's owner (the peer id whose node wrote it) checked against the
//! identity in use. redb's own failures are sorted into "cannot read" and "damaged".

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable};

use super::error::StoreError;
use super::format::{decode, decode_frame, decode_log, frame_name, log_key_hint, Loaded, ENTRIES, LOG};
use super::format::{JOURNAL_GENERATION, META, OWNER};
use super::journal::{Journal, JOURNAL_FILE};
use crate::core::Entry;

/// Keys of dropped entries named in the log line; the rest are counted.
const NAMED: usize = 5;

/// Whose table the node opens, and whether it may take over another node's.
#[derive(Debug, Clone, Default)]
pub struct Owner {
    /// This node's peer id; `None` (the offline `scrub`) neither checks nor records one.
    pub peer_id: Option<String>,
    /// `--init`: a table written by another peer id is taken over (it becomes this node's).
    pub adopt: bool,
}

/// What open found besides the entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Stored values that did not decode: dropped and deleted (keys, or `log #N`).
    pub undecodable: Vec<String>,
    /// The peer id that wrote the table, when it was another one's (taken over with `--init`).
    pub previous_owner: Option<String>,
}

pub(super) struct Read {
    /// Rows in the legacy log table, to fold.
    pub logged: u64,
    /// Opened with the generation recorded in the table, if it has one yet.
    pub journal: Journal,
    /// The journal's entries, in order: not yet in the keyed table.
    pub unfolded: Vec<Entry>,
    /// Frames were left out (damaged, or the old owner's record after `--init`): the writer
    /// folds at once, retiring them, so a later start (which may not know to leave them out)
    /// never reads them.
    pub skipped_frames: bool,
    pub report: OpenReport,
}

/// A redb failure while opening: an I/O error (permissions, a full disk) says so; anything
/// else means the file's contents are not what redb wrote.
pub(super) fn classify(path: &Path, e: impl Into<redb::Error>) -> StoreError {
    match e.into() {
        redb::Error::Io(e) if e.kind() != std::io::ErrorKind::InvalidData => {
            StoreError::Open { path: path.to_owned(), reason: e.to_string() }
        }
        e => StoreError::Damaged { path: path.to_owned(), reason: e.to_string() },
    }
}

/// [`classify`] as a `map_err` argument, for any of redb's error types.
fn at<E: Into<redb::Error>>(path: &Path) -> impl Fn(E) -> StoreError + '_ {
    move |e| classify(path, e)
}

/// Creates the tables on a first start, checks the owner, streams every entry to `load` (the
/// keyed table first, then the legacy log, then the journal: each newer than the one before),
/// and deletes what did not decode (a journal frame is retired by the next fold instead).
pub(super) fn read_all(
    db: &Database,
    path: &Path,
    owner: &Owner,
    load: &mut dyn FnMut(Loaded),
) -> Result<Read, StoreError> {
    let previous_owner = check_owner(db, path, owner)?;
    // A table taken over with `--init` holds the old node's own record, keyed by its peer id.
    // It cannot be tombstoned (only its owner may write that key, and its key is lost), so it is
    // dropped here like a damaged entry: this node no longer serves it as anyone's. Peers that
    // hold it keep it, as they keep the record of any node that left for good. (A table written
    // before owners were recorded names no previous owner: its old own record stays.)
    let orphan = previous_owner.as_deref();
    let mut drop = Dropped::default();
    let mut logged = 0;
    let generation;
    {
        let read = db.begin_read().map_err(at(path))?;
        let table = read.open_table(ENTRIES).map_err(at(path))?;
        for row in table.iter().map_err(at(path))? {
            let (k, v) = row.map_err(at(path))?;
            match decode(k.value(), v.value()) {
                Ok(e) if Some(entry_key(&e)) == orphan => drop.keys.push(k.value().to_owned()),
                Ok(e) => load(e),
                Err(_) => drop.undecodable_key(k.value()),
            }
        }
        let log = read.open_table(LOG).map_err(at(path))?;
        for row in log.iter().map_err(at(path))? {
            let (k, v) = row.map_err(at(path))?;
            match decode_log(k.value(), v.value()) {
                Ok(e) if Some(entry_key(&e)) == orphan => drop.seqs.push(k.value()),
                Ok(e) => load(e),
                Err(_) => drop.undecodable_seq(k.value(), log_key_hint(v.value())),
            }
            logged += 1;
        }
        generation = read_generation(&read, path)?;
    }
    let dir = path.parent().unwrap_or(path);
    let (journal, replayed) = Journal::open(dir, generation)
        .map_err(|source| StoreError::Journal { path: dir.join(JOURNAL_FILE), source })?;
    let mut unfolded = Vec::with_capacity(replayed.frames.len());
    let mut skipped_frames = !replayed.damaged.is_empty();
    for (at, payload) in &replayed.frames {
        match decode_frame(*at, payload) {
            Ok(e) if Some(entry_key(&e)) == orphan => skipped_frames = true,
            Ok(e) => {
                unfolded.push(e.entry().clone());
                load(e);
            }
            Err(_) => {
                skipped_frames = true;
                drop.undecodable.push(frame_name(*at));
            }
        }
    }
    drop.undecodable.extend(replayed.damaged.iter().map(|&at| frame_name(at)));
    if !drop.keys.is_empty() || !drop.seqs.is_empty() {
        drop.delete(db, path)?;
        logged -= drop.seqs.len() as u64;
    }
    if !drop.undecodable.is_empty() {
        tracing::warn!(
            path = %path.display(),
            dropped = drop.undecodable.len(),
            keys = ?&drop.undecodable[..drop.undecodable.len().min(NAMED)],
            "stored entries that do not decode were dropped; anti-entropy fetches them again"
        );
    }
    let report = OpenReport { undecodable: drop.undecodable, previous_owner };
    Ok(Read { logged, journal, unfolded, skipped_frames, report })
}

/// The journal generation recorded in the table, if any.
pub(super) fn read_generation(read: &redb::ReadTransaction, path: &Path) -> Result<Option<u64>, StoreError> {
    let meta = match read.open_table(META) {
        Ok(meta) => meta,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(classify(path, e)),
    };
    let Some(text) = meta.get(JOURNAL_GENERATION).map_err(at(path))? else { return Ok(None) };
    text.value().parse().map(Some).map_err(|_| StoreError::Damaged {
        path: path.to_owned(),
        reason: format!("its journal generation is {:?}, not a number", text.value()),
    })
}

fn entry_key(e: &Loaded) -> &str {
    match e {
        Loaded::Signed(e) | Loaded::Checked(e) | Loaded::Unsigned(e) => &e.key,
    }
}

/// Rows to delete at open.
#[derive(Default)]
struct Dropped {
    /// Keys in the keyed table.
    keys: Vec<String>,
    /// Sequence numbers in the log.
    seqs: Vec<u64>,
    /// The ones that did not decode, as reported.
    undecodable: Vec<String>,
}

impl Dropped {
    fn undecodable_key(&mut self, key: &str) {
        self.keys.push(key.to_owned());
        self.undecodable.push(key.to_owned());
    }

    /// A log row that did not decode, reported by the key it names if that can still be read.
    fn undecodable_seq(&mut self, seq: u64, key: Option<String>) {
        self.seqs.push(seq);
        self.undecodable.push(key.unwrap_or_else(|| format!("log #{seq}")));
    }

    /// Deletes the rows in one transaction, before the writer starts.
    fn delete(&self, db: &Database, path: &Path) -> Result<(), StoreError> {
        let txn = db.begin_write().map_err(at(path))?;
        {
            let mut table = txn.open_table(ENTRIES).map_err(at(path))?;
            for k in &self.keys {
                table.remove(k.as_str()).map_err(at(path))?;
            }
            let mut log = txn.open_table(LOG).map_err(at(path))?;
            for s in &self.seqs {
                log.remove(s).map_err(at(path))?;
            }
        }
        txn.commit().map_err(at(path))
    }
}

/// Creates the tables if new; compares the recorded owner with `owner`, refusing another's
/// table unless adopting it, and records `owner` (a table from before owners were recorded is
/// taken as this node's). Returns the previous owner if it was another.
fn check_owner(db: &Database, path: &Path, owner: &Owner) -> Result<Option<String>, StoreError> {
    // Read first: a table that has its tables and this owner already needs no write, so a start
    // on a full disk is not refused (the node starts read-only-ready instead).
    if already_owned(db, owner) {
        return Ok(None);
    }
    let txn = db.begin_write().map_err(at(path))?;
    txn.open_table(ENTRIES).map_err(at(path))?;
    txn.open_table(LOG).map_err(at(path))?;
    let mut previous = None;
    {
        let mut meta = txn.open_table(META).map_err(at(path))?;
        let stored = meta.get(OWNER).map_err(at(path))?.map(|v| v.value().to_owned());
        if let Some(ours) = &owner.peer_id {
            if let Some(stored) = stored.filter(|s| s != ours) {
                if !owner.adopt {
                    // Dropping the transaction leaves the file as it was.
                    let dir = path.parent().unwrap_or(path).to_owned();
                    return Err(StoreError::Refused {
                        dir,
                        problem: format!(
                            "identity.key is peer {ours} but table.redb was written by peer {stored}: the \
                             identity file was replaced. Restore {stored}'s identity.key, or start with \
                             --init to start as the new node with this table."
                        ),
                    });
                }
                previous = Some(stored);
            }
            meta.insert(OWNER, ours.as_str()).map_err(at(path))?;
        }
    }
    txn.commit().map_err(at(path))?;
    Ok(previous)
}

/// Whether the tables exist and the stored owner is `owner` (or no owner is asked for).
fn already_owned(db: &Database, owner: &Owner) -> bool {
    let Ok(read) = db.begin_read() else { return false };
    if read.open_table(ENTRIES).is_err() || read.open_table(LOG).is_err() {
        return false;
    }
    let Ok(meta) = read.open_table(META) else { return false };
    let stored = meta.get(OWNER).ok().flatten().map(|v| v.value().to_owned());
    match &owner.peer_id {
        Some(ours) => stored.as_deref() == Some(ours.as_str()),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;

    use super::*;
    use crate::core::sign::peer_id_of;
    use crate::core::{Entry, PeerFields, PeerRecord, Table};
    use crate::store::{Job, Store, StoreEvent, JOURNAL_FILE, TABLE_FILE};

    fn record() -> PeerRecord {
        PeerRecord::create(PeerFields { name: Some("n".into()), ..Default::default() }, 1)
    }

    async fn commit(store: &Store, events: &mut mpsc::Receiver<StoreEvent>, puts: Vec<Entry>) {
        store.submit(Job { seq: 1, puts, deletes: vec![] }).unwrap();
        assert!(matches!(events.recv().await, Some(StoreEvent::Committed(1))));
    }

    fn keys(dir: &Path, owner: &Owner) -> Result<(Vec<String>, OpenReport), StoreError> {
        let mut keys = Vec::new();
        let (_store, _events, report) = Store::open_as(dir, 8, owner, |l| match l {
            Loaded::Signed(e) | Loaded::Checked(e) | Loaded::Unsigned(e) => keys.push(e.key),
        })?;
        keys.sort();
        Ok((keys, report))
    }

    #[tokio::test]
    async fn values_that_do_not_decode_are_dropped_deleted_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = Table::for_tests(1);
        {
            let (mut store, mut events) = Store::open(dir.path(), 8, |_| {}).unwrap();
            commit(&store, &mut events, vec![t.put("a".into(), record(), 1000)]).await;
            store.close().await;
        }
        {
            let db = Database::create(dir.path().join(TABLE_FILE)).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(ENTRIES).unwrap().insert("bad", [2u8, 0xff, 0xff].as_slice()).unwrap();
            txn.open_table(LOG).unwrap().insert(99, [7u8].as_slice()).unwrap();
            txn.commit().unwrap();
        }
        let (loaded, report) = keys(dir.path(), &Owner::default()).unwrap();
        assert_eq!(loaded, vec!["a"]);
        assert_eq!(report.undecodable, vec!["bad", "log #99"]);
        let (loaded, report) = keys(dir.path(), &Owner::default()).unwrap();
        assert_eq!((loaded, report.undecodable), (vec!["a".to_string()], vec![]), "they were deleted");
    }

    /// The old owner's record only in the journal (the old node crashed): taking the table over
    /// drops it, and retires its frame at once, so a crash right after does not bring it back.
    #[tokio::test]
    async fn an_adopted_tables_old_own_record_in_the_journal_stays_dropped_after_a_crash() {
        let (old_dir, adopted) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let crashed = tempfile::tempdir().unwrap();
        let copy = |from: &Path, to: &Path| {
            for file in [TABLE_FILE, JOURNAL_FILE] {
                std::fs::copy(from.join(file), to.join(file)).unwrap();
            }
        };
        let mut t = Table::for_tests(1);
        let (old, new) = (peer_id_of(&t.writer()), peer_id_of(&Table::for_tests(2).writer()));
        let as_old = Owner { peer_id: Some(old.clone()), adopt: false };
        {
            let (_store, mut events, _) = Store::open_as(old_dir.path(), 8, &as_old, |_| {}).unwrap();
            // The first commit records the journal's generation; the next ones are journaled.
            commit(&_store, &mut events, vec![t.put("x".into(), record(), 1000)]).await;
            commit(&_store, &mut events, vec![t.put(old.clone(), record(), 1000)]).await;
            copy(old_dir.path(), adopted.path());
        }
        let as_new = Owner { peer_id: Some(new.clone()), adopt: false };
        {
            let adopt = Owner { adopt: true, ..as_new.clone() };
            let mut keys = Vec::new();
            let (_store, _events, report) =
                Store::open_as(adopted.path(), 8, &adopt, |l| keys.push(l.entry().key.clone())).unwrap();
            assert_eq!((keys, report.previous_owner), (vec!["x".to_string()], Some(old.clone())));
            // The writer folded at start; the node dies before any clean stop.
            copy(adopted.path(), crashed.path());
        }
        assert_eq!(keys(crashed.path(), &as_new).unwrap().0, vec!["x"], "the old own record stays dropped");
    }

    #[tokio::test]
    async fn another_nodes_table_is_refused_unless_adopted_which_drops_its_own_record() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = Table::for_tests(1);
        let (old, new) = (peer_id_of(&t.writer()), peer_id_of(&Table::for_tests(2).writer()));
        let as_old = Owner { peer_id: Some(old.clone()), adopt: false };
        {
            let (mut store, mut events, _) = Store::open_as(dir.path(), 8, &as_old, |_| {}).unwrap();
            let own = t.put(old.clone(), record(), 1000);
            commit(&store, &mut events, vec![own, t.put("x".into(), record(), 1000)]).await;
            store.close().await;
        }
        assert_eq!(keys(dir.path(), &as_old).unwrap().0, vec![old.clone(), "x".into()]);
        let as_new = Owner { peer_id: Some(new.clone()), adopt: false };
        let refused = keys(dir.path(), &as_new).unwrap_err().to_string();
        assert!(
            refused.contains(&format!("written by peer {old}")) && refused.contains("--init"),
            "{refused}"
        );
        assert_eq!(keys(dir.path(), &as_old).unwrap().0.len(), 2, "a refusal changes nothing");

        let (loaded, report) = keys(dir.path(), &Owner { adopt: true, ..as_new.clone() }).unwrap();
        assert_eq!(loaded, vec!["x"], "the old own record is dropped");
        assert_eq!(report.previous_owner, Some(old.clone()));
        let (loaded, report) = keys(dir.path(), &as_new).unwrap();
        assert_eq!(
            (loaded, report.previous_owner),
            (vec!["x".to_string()], None),
            "the table is the new node's"
        );
        assert!(keys(dir.path(), &as_old).is_err(), "and no longer the old one's");
    }
}
