//! The pure core: hybrid logical clock, peer records, and the replicated table (CRDT).
//! No I/O, no async runtime; every function that needs the time takes it as a parameter.

pub mod clock;
pub mod delta;
pub mod record;
pub mod sync;
pub mod table;

pub use clock::{now_micros, now_millis, ClockError, Hlc, NodeId, Stamp};
pub use record::{validate_key, PeerFields, PeerRecord, RecordError};
pub use table::{
    bucket_of, digest_hex, Digest, Entry, MergeError, Register, Table, TableConfig, TableStats, BUCKETS,
};
