//! The data dir's files checked against each other before anything is created: a table without
//! its identity, or an identity without its table, means something was lost, and starting anyway
//! would silently become another node or forget everything. The operator says which, with
//! `--init` or `--reset-table`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::error::{ensure_dir, StoreError};
use super::identity::IDENTITY_FILE;
use super::journal::JOURNAL_FILE;

/// The table's file inside the data dir.
pub const TABLE_FILE: &str = "table.redb";

/// What the operator allowed for this start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StartMode {
    /// `--init`: the node may start as a new node: a missing (or empty) identity is created
    /// anew, and a missing or empty table too.
    pub init: bool,
    /// `--reset-table`: start with an empty table, keeping the identity; an existing table is
    /// moved aside, never deleted.
    pub reset_table: bool,
}

/// What [`check_data_dir`] found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirCheck {
    /// Neither file existed: a first start.
    pub first_start: bool,
    /// There is no usable identity: the node starts as a new one (first start or `--init`).
    pub new_identity: bool,
    /// Files moved aside (the old table with `--reset-table`, an empty file with `--init`).
    pub moved_aside: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileState {
    Missing,
    /// Zero bytes: created, never written (or truncated).
    Empty,
    Present,
}

fn state_of(path: &Path) -> Result<FileState, StoreError> {
    match std::fs::metadata(path) {
        Ok(m) if m.len() == 0 => Ok(FileState::Empty),
        Ok(_) => Ok(FileState::Present),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(FileState::Missing),
        Err(e) => Err(StoreError::DataDir { path: path.to_owned(), source: e }),
    }
}

/// Checks that `dir`'s identity and table belong together, refusing with a message that names
/// the file and the way out unless `mode` allows what is missing; then moves aside what `mode`
/// replaces. A dir holding neither file is a first start.
pub fn check_data_dir(dir: &Path, mode: StartMode) -> Result<DirCheck, StoreError> {
    ensure_dir(dir)?;
    let identity = state_of(&dir.join(IDENTITY_FILE))?;
    let table = state_of(&dir.join(TABLE_FILE))?;
    let refuse = |problem: String| Err(StoreError::Refused { dir: dir.to_owned(), problem });
    let first_start = identity == FileState::Missing && table == FileState::Missing;
    if identity != FileState::Present && !first_start && !mode.init {
        return refuse(match (identity, table) {
            (FileState::Empty, _) => format!(
                "{IDENTITY_FILE} is empty (0 bytes): the node's identity was lost. Restore it from a \
                 backup, or start with --init to start as a new node (a new peer id)."
            ),
            (_, FileState::Empty) => format!(
                "{IDENTITY_FILE} is missing and {TABLE_FILE} is empty (0 bytes): both were lost. Restore \
                 them from a backup, or start with --init to start as a new node with an empty table."
            ),
            _ => format!(
                "{TABLE_FILE} exists but {IDENTITY_FILE} is missing: the table belongs to another \
                 identity (its own record is keyed by that identity's peer id). Restore {IDENTITY_FILE} \
                 from a backup, or start with --init to start as a new node (a new peer id) with this table."
            ),
        });
    }
    let table_lost = table == FileState::Empty || (table == FileState::Missing && !first_start);
    if table_lost && !mode.init && !mode.reset_table {
        let how = if table == FileState::Empty { "is empty (0 bytes)" } else { "is missing" };
        return refuse(format!(
            "{IDENTITY_FILE} exists but {TABLE_FILE} {how}: the table was lost or truncated. Restore it \
             from a backup, or start with --reset-table to start with an empty table (it refills from peers)."
        ));
    }
    let mut moved_aside = Vec::new();
    if identity == FileState::Empty {
        moved_aside.push(move_aside(dir, IDENTITY_FILE)?);
    }
    if table == FileState::Empty || (table == FileState::Present && mode.reset_table) {
        moved_aside.push(move_aside(dir, TABLE_FILE)?);
        // Its journal goes with it: unfolded writes of that table, meaningless to a new one.
        if dir.join(JOURNAL_FILE).exists() {
            moved_aside.push(move_aside(dir, JOURNAL_FILE)?);
        }
    }
    Ok(DirCheck { first_start, new_identity: identity != FileState::Present, moved_aside })
}

/// Renames `dir/name` to `name.bad-<unix time>` (with a counter if that exists), durably.
fn move_aside(dir: &Path, name: &str) -> Result<PathBuf, StoreError> {
    let from = dir.join(name);
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut to = dir.join(format!("{name}.bad-{secs}"));
    for n in 1.. {
        if !to.exists() {
            break;
        }
        to = dir.join(format!("{name}.bad-{secs}.{n}"));
    }
    let err = |e: std::io::Error| StoreError::DataDir { path: from.clone(), source: e };
    std::fs::rename(&from, &to).map_err(err)?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(err)?;
    tracing::warn!(from = %from.display(), to = %to.display(), "moved aside");
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NORMAL: StartMode = StartMode { init: false, reset_table: false };
    const INIT: StartMode = StartMode { init: true, reset_table: false };
    const RESET: StartMode = StartMode { init: false, reset_table: true };

    fn dir_with(identity: Option<&[u8]>, table: Option<&[u8]>) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        if let Some(bytes) = identity {
            std::fs::write(dir.path().join(IDENTITY_FILE), bytes).unwrap();
        }
        if let Some(bytes) = table {
            std::fs::write(dir.path().join(TABLE_FILE), bytes).unwrap();
        }
        dir
    }

    fn refusal(dir: &tempfile::TempDir, mode: StartMode) -> String {
        let e = check_data_dir(dir.path(), mode).expect_err("refused").to_string();
        assert!(e.contains(&dir.path().display().to_string()), "names the dir: {e}");
        e
    }

    #[test]
    fn a_new_dir_and_a_whole_dir_start_without_flags() {
        let fresh = dir_with(None, None);
        let found = check_data_dir(fresh.path(), NORMAL).unwrap();
        assert!(found.first_start && found.new_identity && found.moved_aside.is_empty());
        let whole = dir_with(Some(b"key"), Some(b"table"));
        assert_eq!(check_data_dir(whole.path(), NORMAL).unwrap(), DirCheck::default());
        let missing = tempfile::tempdir().unwrap().path().join("not-yet");
        assert!(check_data_dir(&missing, NORMAL).unwrap().first_start, "the dir is created");
    }

    #[test]
    fn a_lost_table_is_refused_unless_reset_which_moves_it_aside() {
        let empty = dir_with(Some(b"key"), Some(b""));
        let e = refusal(&empty, NORMAL);
        assert!(e.contains("table.redb is empty (0 bytes)") && e.contains("--reset-table"), "{e}");
        let missing = dir_with(Some(b"key"), None);
        assert!(refusal(&missing, NORMAL).contains("table.redb is missing"));

        let found = check_data_dir(empty.path(), RESET).unwrap();
        assert!(!found.new_identity);
        assert_eq!(found.moved_aside.len(), 1);
        assert!(found.moved_aside[0].file_name().unwrap().to_str().unwrap().starts_with("table.redb.bad-"));
        assert!(!empty.path().join(TABLE_FILE).exists() && empty.path().join(IDENTITY_FILE).exists());
        assert!(check_data_dir(missing.path(), RESET).unwrap().moved_aside.is_empty());

        // A whole table is moved aside too when a reset is asked for; twice in a second is fine.
        let whole = dir_with(Some(b"key"), Some(b"table"));
        let first = check_data_dir(whole.path(), RESET).unwrap().moved_aside;
        std::fs::write(whole.path().join(TABLE_FILE), b"again").unwrap();
        let second = check_data_dir(whole.path(), RESET).unwrap().moved_aside;
        assert_ne!(first, second);
        assert_eq!(std::fs::read(&first[0]).unwrap(), b"table");
        assert_eq!(std::fs::read(&second[0]).unwrap(), b"again");

        // The table's journal is moved aside with it.
        std::fs::write(whole.path().join(TABLE_FILE), b"third").unwrap();
        std::fs::write(whole.path().join(JOURNAL_FILE), b"frames").unwrap();
        let third = check_data_dir(whole.path(), RESET).unwrap().moved_aside;
        assert_eq!(third.len(), 2);
        assert!(third[1].file_name().unwrap().to_str().unwrap().starts_with("table.journal.bad-"));
        assert_eq!(std::fs::read(&third[1]).unwrap(), b"frames");
        assert!(!whole.path().join(JOURNAL_FILE).exists());
    }

    #[test]
    fn a_lost_identity_is_refused_unless_init() {
        let orphan = dir_with(None, Some(b"table"));
        let e = refusal(&orphan, NORMAL);
        assert!(e.contains("identity.key is missing") && e.contains("another identity"), "{e}");
        assert!(e.contains("--init"), "{e}");
        assert!(refusal(&orphan, RESET).contains("--init"), "--reset-table keeps an identity: it needs one");
        let found = check_data_dir(orphan.path(), INIT).unwrap();
        assert!(found.new_identity && !found.first_start && found.moved_aside.is_empty());

        let empty_key = dir_with(Some(b""), Some(b"table"));
        assert!(refusal(&empty_key, NORMAL).contains("identity.key is empty"));
        let found = check_data_dir(empty_key.path(), INIT).unwrap();
        assert!(found.new_identity && found.moved_aside.len() == 1);
        assert!(!empty_key.path().join(IDENTITY_FILE).exists());

        let both = dir_with(None, Some(b""));
        assert!(refusal(&both, NORMAL).contains("both were lost"));
        assert_eq!(check_data_dir(both.path(), INIT).unwrap().moved_aside.len(), 1);
    }
}
