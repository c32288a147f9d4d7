//! What can go wrong with storage.

use std::path::{Path, PathBuf};

/// What can go wrong with storage.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot use data dir {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("identity file {path}: {reason}")]
    Identity { path: PathBuf, reason: String },
    #[error("cannot open {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    /// The data dir's files do not belong together (or are lost): what and what to do.
    #[error("data dir {}: {problem}", dir.display())]
    Refused { dir: PathBuf, problem: String },
    /// The table file's contents are not what redb wrote.
    #[error(
        "table {} is damaged: {reason}. Restore it from a backup, or start with --reset-table to move \
         it aside and start with an empty table (it refills from peers)",
        path.display()
    )]
    Damaged { path: PathBuf, reason: String },
    #[error("database: {0}")]
    Db(String),
    /// The journal (`table.journal`) could not be read or written.
    #[error("journal {}: {source}", path.display())]
    Journal { path: PathBuf, source: std::io::Error },
    #[error("stored entry {key:?} is unreadable: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("the store's writer has stopped")]
    Closed,
    #[error("the store's queue is full")]
    QueueFull,
}

pub(super) fn db_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Db(e.to_string())
}

/// Creates the data dir if it does not exist.
pub(super) fn ensure_dir(dir: &Path) -> Result<(), StoreError> {
    if dir.exists() && !dir.is_dir() {
        let source = std::io::Error::other("it exists and is not a directory");
        return Err(StoreError::DataDir { path: dir.to_owned(), source });
    }
    std::fs::create_dir_all(dir).map_err(|e| StoreError::DataDir { path: dir.to_owned(), source: e })
}
