//! The gossip delta: a few entries with their stamps, versioned, in a compact binary form.

use super::table::Entry;

/// First byte of every delta; a node drops deltas of versions it does not know.
/// Version 2: entries carry their writer's signature.
pub const DELTA_VERSION: u8 = 2;
/// Most entries in one delta: writes are batched over a few milliseconds, up to this.
pub const MAX_DELTA_ENTRIES: usize = 256;
/// Most bytes in one encoded delta (gossipsub's transmit limit is set above this).
pub const MAX_DELTA_BYTES: usize = 60 * 1024;

/// Why a delta was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeltaError {
    #[error("empty message")]
    Empty,
    #[error("unknown delta version {0}")]
    Version(u8),
    #[error("delta of {0} bytes is over the limit")]
    TooLarge(usize),
    #[error("delta has {0} entries, over the limit")]
    TooManyEntries(usize),
    #[error("undecodable delta: {0}")]
    Decode(String),
}

/// Encodes entries as a delta.
pub fn encode_delta(entries: &[Entry]) -> Vec<u8> {
    let mut out = vec![DELTA_VERSION];
    out.extend(postcard::to_stdvec(entries).expect("entries always serialize"));
    out
}

/// Decodes a delta from the network, checking version and limits before trusting anything.
pub fn decode_delta(bytes: &[u8]) -> Result<Vec<Entry>, DeltaError> {
    if bytes.len() > MAX_DELTA_BYTES {
        return Err(DeltaError::TooLarge(bytes.len()));
    }
    let (&version, body) = bytes.split_first().ok_or(DeltaError::Empty)?;
    if version != DELTA_VERSION {
        return Err(DeltaError::Version(version));
    }
    let (entries, rest): (Vec<Entry>, _) =
        postcard::take_from_bytes(body).map_err(|e| DeltaError::Decode(e.to_string()))?;
    if !rest.is_empty() {
        // Trailing bytes would let a peer mint new message ids for the same delta.
        return Err(DeltaError::Decode(format!("{} trailing bytes", rest.len())));
    }
    if entries.len() > MAX_DELTA_ENTRIES {
        return Err(DeltaError::TooManyEntries(entries.len()));
    }
    Ok(entries)
}

/// Rough encoded size of an entry, for filling messages up to a byte budget.
pub fn entry_size(e: &Entry) -> usize {
    let record = e.record.as_ref().map_or(0, |r| {
        r.name.len()
            + r.ip.len()
            + r.port.len()
            + r.peer_id.as_ref().map_or(0, String::len)
            + r.ports.keys().map(|k| k.len() + 4).sum::<usize>()
            + r.addrs.iter().map(|a| a.len() + 2).sum::<usize>()
            + 40
    });
    // Key, stamp (about 50 bytes) and signature (64).
    e.key.len() + 124 + record
}

/// Splits entries into deltas that each respect the entry and byte limits.
pub fn batch_deltas(entries: Vec<Entry>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut batch: Vec<Entry> = Vec::new();
    let mut bytes = 0;
    for e in entries {
        let size = entry_size(&e);
        if !batch.is_empty() && (batch.len() >= MAX_DELTA_ENTRIES || bytes + size > MAX_DELTA_BYTES / 2) {
            out.push(encode_delta(&batch));
            batch.clear();
            bytes = 0;
        }
        bytes += size;
        batch.push(e);
    }
    if !batch.is_empty() {
        out.push(encode_delta(&batch));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{PeerFields, PeerRecord, Table};

    #[test]
    fn deltas_round_trip_and_garbage_is_refused() {
        let mut t = Table::for_tests(3);
        let rec = PeerRecord::create(PeerFields { name: Some("a".into()), ..Default::default() }, 5);
        let entries: Vec<_> = (0..600).map(|i| t.put(format!("k{i}"), rec.clone(), 1000)).collect();
        let deltas = batch_deltas(entries.clone());
        assert!(deltas.len() >= 3);
        let decoded: Vec<Entry> = deltas.iter().flat_map(|d| decode_delta(d).unwrap()).collect();
        assert_eq!(decoded, entries);
        assert_eq!(decode_delta(&[]), Err(DeltaError::Empty));
        assert_eq!(decode_delta(&[9, 1, 2]), Err(DeltaError::Version(9)));
        assert!(matches!(decode_delta(&[DELTA_VERSION, 0xff, 0xff, 0xff]), Err(DeltaError::Decode(_))));
        assert!(
            matches!(decode_delta(&[DELTA_VERSION, 0, 0xde, 0xad]), Err(DeltaError::Decode(_))),
            "trailing bytes"
        );
        assert!(matches!(decode_delta(&vec![1; MAX_DELTA_BYTES + 1]), Err(DeltaError::TooLarge(_))));
    }
}
