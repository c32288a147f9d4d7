//! Anti-entropy, pure: the messages two replicas exchange to find and repair differences, the
//! initiator's session state machine, and the responder's answers. No I/O; time is a parameter.
//!
//! Exchange (initiator A, responder B):
//! 1. A sends its root digest; B answers with its own. Equal roots: done.
//! 2. A sends its bucket hashes; B answers with the buckets that differ.
//! 3. A pulls B's entries of those buckets, in chunks of bounded size, and merges them.
//! 4. A pushes its own entries of those buckets that B did not just send, in bounded chunks.
//!
//! Afterwards both hold the union of the two replicas in the differing buckets.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::delta::entry_size;
use super::table::{Entry, Table, BUCKETS};
use super::Stamp;

/// Target size of one chunk of entries (a pull response or a push request), by the estimate of
/// `entry_size`; encoded it comes to about 1.4 times this. Larger chunks mean fewer round trips:
/// 100,000 records move in about ten.
pub const MAX_CHUNK_BYTES: usize = 1536 * 1024;
/// Most entries in one chunk.
pub const MAX_CHUNK_ENTRIES: usize = 16384;
/// Largest encoded sync message accepted from a peer (chunks plus the worst single record).
pub const MAX_SYNC_MESSAGE_BYTES: u64 = 4 * 1024 * 1024;

/// A request from the initiator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncRequest {
    /// My root digest (16 bytes, big-endian).
    Root { root: ByteBuf },
    /// My bucket hashes (`BUCKETS` × 16 bytes).
    Buckets { hashes: ByteBuf },
    /// Send me your entries of these buckets, as many whole buckets as fit in a chunk.
    Pull { buckets: Vec<u16> },
    /// Entries of mine you may lack.
    Push { entries: Vec<Entry> },
}

/// A response from the responder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncResponse {
    Root {
        root: ByteBuf,
    },
    /// The buckets that differ, and the responder's hash of each (16 bytes apiece, same order).
    Diff {
        buckets: Vec<u16>,
        hashes: ByteBuf,
    },
    /// Entries of the first `covered` requested buckets.
    Entries {
        entries: Vec<Entry>,
        covered: u32,
    },
    Ack {
        merged: u32,
    },
    Refused {
        reason: String,
    },
}

/// A response as it travels: the answer and the responder's wall clock when it answered, from
/// which the requester estimates its clock offset (see `replica::skew`). Added in sync protocol
/// 3.0.0: a node of 2.0.0 and one of 3.0.0 do not sync (their requests fail as unsupported).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncReply {
    /// Microseconds since the Unix epoch, by the responder's clock.
    pub clock_us: i64,
    pub response: SyncResponse,
}

/// A peer broke the sync protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    #[error("malformed digest")]
    BadDigest,
    #[error("bucket {0} out of range")]
    BadBucket(u16),
    #[error("too many entries in one message ({0})")]
    TooManyEntries(usize),
    #[error("unexpected response {0}")]
    Unexpected(&'static str),
    #[error("a pull response made no progress")]
    NoProgress,
    #[error("peer refused: {0}")]
    Refused(String),
}

fn hash_bytes(h: u128) -> ByteBuf {
    ByteBuf::from(h.to_be_bytes().to_vec())
}

fn hashes_bytes(hs: &[u128]) -> ByteBuf {
    ByteBuf::from(hs.iter().flat_map(|h| h.to_be_bytes()).collect::<Vec<u8>>())
}

fn parse_hashes(b: &[u8]) -> Result<Vec<u128>, SyncError> {
    if b.len() != BUCKETS * 16 {
        return Err(SyncError::BadDigest);
    }
    Ok(b.chunks_exact(16).map(|c| u128::from_be_bytes(c.try_into().expect("16 bytes"))).collect())
}

fn parse_root(b: &[u8]) -> Result<u128, SyncError> {
    Ok(u128::from_be_bytes(b.try_into().map_err(|_| SyncError::BadDigest)?))
}

fn check_buckets(buckets: &[u16]) -> Result<(), SyncError> {
    if buckets.len() > BUCKETS {
        return Err(SyncError::TooManyEntries(buckets.len()));
    }
    match buckets.iter().find(|&&b| b as usize >= BUCKETS) {
        Some(&b) => Err(SyncError::BadBucket(b)),
        None => Ok(()),
    }
}

/// Entries of as many leading `buckets` as fit in one chunk (always at least one bucket, so every
/// exchange makes progress), leaving out entries `skip` says the other side already has.
/// Returns the entries and how many buckets they cover.
fn gather(table: &Table, buckets: &[u16], skip: &HashMap<String, Stamp>) -> (Vec<Entry>, usize) {
    let (mut out, mut bytes, mut covered) = (Vec::new(), 0, 0);
    for &b in buckets {
        let mut these: Vec<Entry> =
            table.bucket_entries(b).filter(|e| skip.get(&e.key) != Some(&e.stamp)).collect();
        let size: usize = these.iter().map(entry_size).sum();
        if covered > 0 && (bytes + size > MAX_CHUNK_BYTES || out.len() + these.len() > MAX_CHUNK_ENTRIES) {
            break;
        }
        bytes += size;
        covered += 1;
        out.append(&mut these);
    }
    (out, covered)
}

/// Answers one request. Returns the response, the entries a push changed (to persist) and how
/// many pushed entries were refused (invalid or stamped in the future: held against the sender).
pub fn respond(
    table: &mut Table,
    request: SyncRequest,
    now_ms: u64,
) -> Result<(SyncResponse, Vec<Entry>, usize), SyncError> {
    match request {
        SyncRequest::Root { root } => {
            parse_root(&root)?;
            Ok((SyncResponse::Root { root: hash_bytes(table.root()) }, Vec::new(), 0))
        }
        SyncRequest::Buckets { hashes } => {
            let theirs = parse_hashes(&hashes)?;
            let ours = table.digest();
            let buckets = ours.differing_buckets(&theirs);
            let hashes = hashes_bytes(&buckets.iter().map(|&b| ours.buckets[b as usize]).collect::<Vec<_>>());
            Ok((SyncResponse::Diff { buckets, hashes }, Vec::new(), 0))
        }
        SyncRequest::Pull { buckets } => {
            check_buckets(&buckets)?;
            let (entries, covered) = gather(table, &buckets, &HashMap::new());
            Ok((SyncResponse::Entries { entries, covered: covered as u32 }, Vec::new(), 0))
        }
        SyncRequest::Push { entries } => {
            if entries.len() > MAX_CHUNK_ENTRIES {
                return Err(SyncError::TooManyEntries(entries.len()));
            }
            let (changed, refused) = table.merge_all(entries, now_ms);
            Ok((SyncResponse::Ack { merged: changed.len() as u32 }, changed, refused))
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitRoot,
    AwaitDiff,
    Pulling,
    Pushing,
    Done,
}

/// What the initiator does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Send(SyncRequest),
    Done,
}

/// Counters of one session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    pub differing_buckets: usize,
    pub pulled: usize,
    pub merged: usize,
    pub pushed: usize,
}

/// The initiator's side of one anti-entropy exchange.
#[derive(Debug)]
pub struct Session {
    phase: Phase,
    /// Buckets still to pull.
    to_pull: VecDeque<u16>,
    /// Buckets still to push.
    to_push: VecDeque<u16>,
    /// What the responder sent us, so we do not send it back.
    pulled: HashMap<String, Stamp>,
    /// The responder's hash of each differing bucket: a bucket that already matches it (another
    /// session repaired it meanwhile) is not pulled again.
    theirs: HashMap<u16, u128>,
    /// Where in the differing buckets this session starts, so concurrent sessions (a joiner syncs
    /// with every peer it connects to) pull different buckets first.
    offset: usize,
    pub stats: SessionStats,
}

impl Session {
    /// Starts a session: the first request carries our root. `offset` (any number, e.g. random)
    /// picks where in the differing buckets pulling begins.
    pub fn start(table: &Table, offset: usize) -> (Session, SyncRequest) {
        let s = Session {
            phase: Phase::AwaitRoot,
            to_pull: VecDeque::new(),
            to_push: VecDeque::new(),
            pulled: HashMap::new(),
            theirs: HashMap::new(),
            offset,
            stats: SessionStats::default(),
        };
        (s, SyncRequest::Root { root: hash_bytes(table.root()) })
    }

    /// Handles a response: returns the next step, the entries a pull changed (to persist) and how
    /// many pulled entries were refused.
    pub fn on_response(
        &mut self,
        table: &mut Table,
        response: SyncResponse,
        now_ms: u64,
    ) -> Result<(Step, Vec<Entry>, usize), SyncError> {
        let mut changed = Vec::new();
        let mut refused = 0;
        let step = match (self.phase, response) {
            (_, SyncResponse::Refused { reason }) => return Err(SyncError::Refused(reason)),
            (Phase::AwaitRoot, SyncResponse::Root { root }) => {
                if parse_root(&root)? == table.root() {
                    self.finish()
                } else {
                    self.phase = Phase::AwaitDiff;
                    Step::Send(SyncRequest::Buckets { hashes: hashes_bytes(&table.digest().buckets) })
                }
            }
            (Phase::AwaitDiff, SyncResponse::Diff { buckets, hashes }) => {
                check_buckets(&buckets)?;
                if hashes.len() != buckets.len() * 16 {
                    return Err(SyncError::BadDigest);
                }
                self.theirs = buckets
                    .iter()
                    .zip(hashes.chunks_exact(16))
                    .map(|(&b, h)| (b, u128::from_be_bytes(h.try_into().expect("16 bytes"))))
                    .collect();
                self.stats.differing_buckets = buckets.len();
                let mut order: VecDeque<u16> = buckets.into_iter().collect();
                if !order.is_empty() {
                    order.rotate_left(self.offset % order.len());
                }
                self.to_pull = order.clone();
                self.to_push = order;
                self.phase = Phase::Pulling;
                self.next_pull(table)
            }
            (Phase::Pulling, SyncResponse::Entries { entries, covered }) => {
                let covered = covered as usize;
                if covered == 0 || covered > self.to_pull.len() {
                    return Err(SyncError::NoProgress);
                }
                if entries.len() > MAX_CHUNK_ENTRIES {
                    return Err(SyncError::TooManyEntries(entries.len()));
                }
                self.stats.pulled += entries.len();
                for e in &entries {
                    self.pulled.insert(e.key.clone(), e.stamp);
                }
                let (merged, bad) = table.merge_all(entries, now_ms);
                self.stats.merged += merged.len();
                changed = merged;
                refused = bad;
                self.to_pull.drain(..covered);
                self.next_pull(table)
            }
            (Phase::Pushing, SyncResponse::Ack { .. }) => self.next_push(table),
            (_, other) => {
                return Err(SyncError::Unexpected(match other {
                    SyncResponse::Root { .. } => "Root",
                    SyncResponse::Diff { .. } => "Diff",
                    SyncResponse::Entries { .. } => "Entries",
                    SyncResponse::Ack { .. } => "Ack",
                    SyncResponse::Refused { .. } => "Refused",
                }))
            }
        };
        Ok((step, changed, refused))
    }

    fn finish(&mut self) -> Step {
        self.phase = Phase::Done;
        Step::Done
    }

    fn next_pull(&mut self, table: &Table) -> Step {
        let theirs = &self.theirs;
        self.to_pull.retain(|b| theirs.get(b) != Some(&table.bucket_hash(*b)));
        if self.to_pull.is_empty() {
            self.phase = Phase::Pushing;
            return self.next_push(table);
        }
        Step::Send(SyncRequest::Pull { buckets: self.to_pull.iter().copied().collect() })
    }

    fn next_push(&mut self, table: &Table) -> Step {
        while !self.to_push.is_empty() {
            let buckets: Vec<u16> = self.to_push.iter().copied().collect();
            let (entries, covered) = gather(table, &buckets, &self.pulled);
            self.to_push.drain(..covered);
            if !entries.is_empty() {
                self.stats.pushed += entries.len();
                return Step::Send(SyncRequest::Push { entries });
            }
        }
        self.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{PeerFields, PeerRecord};

    const NOW: u64 = 1_800_000_000_000;

    fn table(id: u8) -> Table {
        Table::for_tests(id)
    }

    fn rec(name: &str) -> PeerRecord {
        PeerRecord::create(
            PeerFields { name: Some(name.into()), ip: Some("1.1.1.1".into()), ..Default::default() },
            1,
        )
    }

    /// Runs a whole session between two in-memory tables; returns (round trips, stats).
    fn run(a: &mut Table, b: &mut Table) -> (usize, SessionStats) {
        let (mut s, mut req) = Session::start(a, 0);
        let mut trips = 0;
        loop {
            trips += 1;
            assert!(trips < 10_000, "session does not end");
            let (resp, _, _) = respond(b, req, NOW).unwrap();
            if let SyncResponse::Entries { entries, .. } = &resp {
                assert!(entries.len() <= MAX_CHUNK_ENTRIES, "chunk of {} entries", entries.len());
                let bytes: usize = entries.iter().map(entry_size).sum();
                // One bucket may overshoot the budget (so every exchange makes progress).
                assert!(bytes <= MAX_CHUNK_BYTES + 64 * 1024, "chunk of {bytes} bytes");
            }
            match s.on_response(a, resp, NOW).unwrap().0 {
                Step::Send(next) => req = next,
                Step::Done => return (trips, s.stats),
            }
        }
    }

    #[test]
    fn equal_tables_finish_after_one_round_trip() {
        let mut a = table(1);
        let mut b = table(2);
        let e = a.put("k".into(), rec("x"), NOW);
        b.merge(e, NOW).unwrap();
        assert_eq!(run(&mut a, &mut b).0, 1);
    }

    #[test]
    fn both_sides_get_what_they_missed() {
        let mut a = table(1);
        let mut b = table(2);
        for i in 0..300 {
            a.put(format!("a{i}"), rec("a"), NOW);
            b.put(format!("b{i}"), rec("b"), NOW);
        }
        let shared = a.put("both".into(), rec("old"), NOW);
        b.merge(shared, NOW).unwrap();
        b.put("both".into(), rec("new"), NOW + 1);
        b.remove("b7", NOW + 2);
        let (_, stats) = run(&mut a, &mut b);
        assert_eq!(a.digest(), b.digest());
        assert_eq!(a.len(), 600);
        assert_eq!(a.get("both").unwrap().name, "new");
        assert!(a.get("b7").is_none());
        // Only what differed travelled: b's 300 keys (one removed, one changed) one way, a's 300 the other.
        assert_eq!(stats.pulled, 301);
        assert_eq!(stats.pushed, 300);
    }

    #[test]
    fn a_large_table_moves_in_bounded_chunks() {
        let mut a = table(1);
        let mut b = table(2);
        for i in 0..20_000 {
            b.put(format!("key-{i}"), rec("some name long enough to weigh a little"), NOW);
        }
        let (trips, stats) = run(&mut a, &mut b);
        assert_eq!(a.digest(), b.digest());
        assert_eq!(stats.pulled, 20_000);
        assert!(trips > 3, "chunks were bounded ({trips} round trips)");
    }

    #[test]
    fn malformed_requests_and_responses_are_errors_not_panics() {
        let mut t = table(1);
        let short = SyncRequest::Buckets { hashes: ByteBuf::from(vec![0; 7]) };
        assert_eq!(respond(&mut t, short, NOW), Err(SyncError::BadDigest));
        assert_eq!(
            respond(&mut t, SyncRequest::Pull { buckets: vec![5000] }, NOW),
            Err(SyncError::BadBucket(5000))
        );
        let (mut s, _) = Session::start(&t, 0);
        let bad = SyncResponse::Entries { entries: vec![], covered: 3 };
        assert!(matches!(s.on_response(&mut t, bad, NOW), Err(SyncError::Unexpected(_))));
        let (mut s, _) = Session::start(&t, 0);
        let diff = SyncResponse::Root { root: ByteBuf::from(vec![1; 16]) };
        s.on_response(&mut t, diff, NOW).unwrap();
        let diff = SyncResponse::Diff { buckets: vec![1, 2], hashes: ByteBuf::from(vec![9; 32]) };
        s.on_response(&mut t, diff, NOW).unwrap();
        let stalled = SyncResponse::Entries { entries: vec![], covered: 0 };
        assert_eq!(s.on_response(&mut t, stalled, NOW), Err(SyncError::NoProgress));
    }
}
