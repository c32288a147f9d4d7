//! The pure core: hybrid logical clock, peer records, the replicated table (CRDT), anti-entropy,
//! and the replication protocol as a state machine ([`replica`]).
//! No I/O, no async runtime; every function that needs the time takes it as a parameter.

pub mod clock;
pub mod delta;
pub mod liveness;
pub mod record;
pub mod replica;
pub mod scrub;
pub mod sign;
pub mod sync;
pub mod table;

pub use clock::{now_micros, now_millis, NodeId, Stamp};
pub use record::{validate_key, PeerFields, PeerRecord};
pub use table::{digest_hex, Entry, Table, TableConfig, TableStats};
