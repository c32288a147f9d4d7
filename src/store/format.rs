//! How entries are laid out in the table file: its two redb tables and the versioned encoding
//! of their values (format 1: unsigned, as the first version wrote them; format 2: signed;
//! format 3: signed, with a checksum).
//!
//! Why a checksum beside the signature: a byte changed on disk breaks both, but checking 100k
//! signatures at start takes over a second on two cores, a checksum a few milliseconds. So the
//! start-up check reads checksums (format 3) and verifies signatures only where there is none
//! (format 2, written before); `udht-node scrub` verifies every signature as well.

use std::sync::Arc;

use redb::TableDefinition;
use serde::{Deserialize, Serialize};

use crate::core::sign::Signature;
use crate::core::{Entry, PeerRecord, Stamp};

use super::error::StoreError;

/// Key -> versioned postcard of (stamp, record or tombstone).
pub(super) const ENTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("entries");
/// Writes in commit order: sequence number -> versioned postcard of the whole entry. Written by
/// versions before the journal (`journal.rs`); still read, and folded into `ENTRIES`.
pub(super) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
/// Facts about the table itself: its owner, and the journal's generation.
pub(super) const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
/// The peer id of the node that writes the table.
pub(super) const OWNER: &str = "owner";
/// The generation whose journal frames are not yet folded in (decimal). Missing until the first
/// fold: the journal is used only once it is recorded.
pub(super) const JOURNAL_GENERATION: &str = "journal generation";
/// First byte of every stored value, so a future format can be told apart.
pub(super) const FORMAT_V1: u8 = 1;
/// Entries carry their writer's signature.
pub(super) const FORMAT_V2: u8 = 2;
/// The current format: format 2's bytes, then a checksum of the key and those bytes.
pub(super) const FORMAT_V3: u8 = 3;
/// Bytes of the checksum at the end of a format 3 value.
const CHECKSUM_BYTES: usize = 8;

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
    /// Signed, with no checksum (format 2): its signature is what shows it intact.
    Signed(Entry),
    /// Signed, and its checksum matched (format 3): read back as it was written.
    Checked(Entry),
    /// Written before entries were signed (format 1): its `sig` is all zeros. The node re-signs
    /// its own and drops the others (anti-entropy fetches them again, signed).
    Unsigned(Entry),
}

impl Loaded {
    pub fn entry(&self) -> &Entry {
        match self {
            Loaded::Signed(e) | Loaded::Checked(e) | Loaded::Unsigned(e) => e,
        }
    }
}

/// The checksum of a format 3 value: over the key (a value moved to another key is damage too)
/// and the body.
fn checksum(key: &[u8], body: &[u8]) -> [u8; CHECKSUM_BYTES] {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&(key.len() as u64).to_le_bytes());
    h.update(key);
    h.update(body);
    h.digest().to_le_bytes()
}

/// `[3] body checksum`.
fn seal(key: &[u8], body: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + body.len() + CHECKSUM_BYTES);
    out.push(FORMAT_V3);
    out.extend_from_slice(&body);
    out.extend_from_slice(&checksum(key, &body));
    out
}

/// A format 3 value's body, if its checksum matches.
fn unseal<'a>(key: &[u8], rest: &'a [u8]) -> Result<&'a [u8], String> {
    let Some(split) = rest.len().checked_sub(CHECKSUM_BYTES) else {
        return Err("value shorter than its checksum".into());
    };
    let (body, sum) = rest.split_at(split);
    if sum != checksum(key, body) {
        return Err("checksum mismatch: the value changed on disk".into());
    }
    Ok(body)
}

pub(super) fn encode(e: &Entry) -> Vec<u8> {
    let v = StoredValue { stamp: e.stamp, record: e.record.clone(), sig: e.sig };
    seal(e.key.as_bytes(), postcard::to_stdvec(&v).expect("serializing to a Vec cannot fail"))
}

pub(super) fn decode(key: &str, bytes: &[u8]) -> Result<Loaded, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt { key: key.to_owned(), reason };
    let key = key.to_owned();
    match bytes.split_first() {
        Some((&FORMAT_V3, rest)) => {
            let body = unseal(key.as_bytes(), rest).map_err(corrupt)?;
            let v: StoredValue = postcard::from_bytes(body).map_err(|e| corrupt(e.to_string()))?;
            Ok(Loaded::Checked(Entry { key, stamp: v.stamp, record: v.record, sig: v.sig }))
        }
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

/// The key a log value that failed to decode names, if its body still reads as an entry (the
/// damage was inside a string, say): only to say which key was dropped.
pub(super) fn log_key_hint(bytes: &[u8]) -> Option<String> {
    let (&version, rest) = bytes.split_first()?;
    let body = match version {
        FORMAT_V3 => rest.get(..rest.len().checked_sub(CHECKSUM_BYTES)?)?,
        FORMAT_V2 => rest,
        _ => return None,
    };
    postcard::from_bytes::<Entry>(body).ok().map(|e| e.key)
}

/// A log value holds its key, so its checksum covers no separate one.
pub(super) fn encode_log(e: &Entry) -> Vec<u8> {
    seal(b"", postcard::to_stdvec(e).expect("serializing to a Vec cannot fail"))
}

pub(super) fn decode_log(seq: u64, bytes: &[u8]) -> Result<Loaded, StoreError> {
    decode_logged(bytes, || format!("log #{seq}"))
}

/// A journal frame's payload: a log value (see [`encode_log`]), named by its offset if it fails.
pub(super) fn decode_frame(at: u64, bytes: &[u8]) -> Result<Loaded, StoreError> {
    decode_logged(bytes, || frame_name(at))
}

/// How a journal frame is named in errors and reports: by its offset in the file.
pub(super) fn frame_name(at: u64) -> String {
    format!("journal @{at}")
}

fn decode_logged(bytes: &[u8], name: impl Fn() -> String) -> Result<Loaded, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt { key: name(), reason };
    match bytes.split_first() {
        Some((&FORMAT_V3, rest)) => {
            let body = unseal(b"", rest).map_err(corrupt)?;
            postcard::from_bytes(body).map(Loaded::Checked).map_err(|e| corrupt(e.to_string()))
        }
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
