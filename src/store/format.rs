//! How entries are laid out in the table file: its two redb tables and the versioned encoding
//! of their values (format 1: unsigned, as the first version wrote them; format 2: signed).

use std::sync::Arc;

use redb::TableDefinition;
use serde::{Deserialize, Serialize};

use crate::core::sign::Signature;
use crate::core::{Entry, PeerRecord, Stamp};

use super::error::StoreError;

/// Key -> versioned postcard of (stamp, record or tombstone).
pub(super) const ENTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("entries");
/// Writes in commit order: sequence number -> versioned postcard of the whole entry.
pub(super) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
/// First byte of every stored value, so a future format can be told apart.
pub(super) const FORMAT_V1: u8 = 1;
/// The current format: entries carry their writer's signature.
pub(super) const FORMAT_V2: u8 = 2;

/// A stored entry as the first version wrote it: no signature.
#[derive(Deserialize)]
struct StoredValueV1 {
    stamp: Stamp,
    record: Option<Arc<PeerRecord>>,
}

#[derive(Serialize, Deserialize)]
struct StoredValue {
    stamp: Stamp,
    record: Option<Arc<PeerRecord>>,
    sig: Signature,
}

/// An entry read back from disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loaded {
    /// Written by this version: signed.
    Signed(Entry),
    /// Written before entries were signed (format 1): its `sig` is all zeros. The node re-signs
    /// its own and drops the others (anti-entropy fetches them again, signed).
    Unsigned(Entry),
}

pub(super) fn encode(e: &Entry) -> Vec<u8> {
    let mut out = vec![FORMAT_V2];
    let v = StoredValue { stamp: e.stamp, record: e.record.clone(), sig: e.sig };
    out.extend(postcard::to_stdvec(&v).expect("serializing to a Vec cannot fail"));
    out
}

pub(super) fn decode(key: &str, bytes: &[u8]) -> Result<Loaded, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt { key: key.to_owned(), reason };
    let key = key.to_owned();
    match bytes.split_first() {
        Some((&FORMAT_V2, rest)) => {
            let v: StoredValue = postcard::from_bytes(rest).map_err(|e| corrupt(e.to_string()))?;
            Ok(Loaded::Signed(Entry { key, stamp: v.stamp, record: v.record, sig: v.sig }))
        }
        Some((&FORMAT_V1, rest)) => {
            let v: StoredValueV1 = postcard::from_bytes(rest).map_err(|e| corrupt(e.to_string()))?;
            Ok(Loaded::Unsigned(Entry { key, stamp: v.stamp, record: v.record, sig: Signature([0; 64]) }))
        }
        Some((v, _)) => Err(corrupt(format!("unknown format {v}"))),
        None => Err(corrupt("empty value".into())),
    }
}

/// A logged entry as the first version wrote it.
#[derive(Deserialize)]
struct LoggedV1 {
    key: String,
    stamp: Stamp,
    record: Option<Arc<PeerRecord>>,
}

pub(super) fn encode_log(e: &Entry) -> Vec<u8> {
    let mut out = vec![FORMAT_V2];
    out.extend(postcard::to_stdvec(e).expect("serializing to a Vec cannot fail"));
    out
}

pub(super) fn decode_log(seq: u64, bytes: &[u8]) -> Result<Loaded, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt { key: format!("log #{seq}"), reason };
    match bytes.split_first() {
        Some((&FORMAT_V2, rest)) => {
            postcard::from_bytes(rest).map(Loaded::Signed).map_err(|e| corrupt(e.to_string()))
        }
        Some((&FORMAT_V1, rest)) => {
            let v: LoggedV1 = postcard::from_bytes(rest).map_err(|e| corrupt(e.to_string()))?;
            Ok(Loaded::Unsigned(Entry {
                key: v.key,
                stamp: v.stamp,
                record: v.record,
                sig: Signature([0; 64]),
            }))
        }
        Some((v, _)) => Err(corrupt(format!("unknown format {v}"))),
        None => Err(corrupt("empty value".into())),
    }
}
