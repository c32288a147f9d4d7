//! The anti-entropy sessions this replica started, keyed by the id of their outstanding request:
//! an answer (or failure) for any other id is stale and changes nothing.

use std::collections::HashMap;
use std::hash::Hash;

use crate::core::sync::{Session, SessionStats, Step, SyncError, SyncRequest, SyncResponse};
use crate::core::{Entry, Table};

use super::io::RequestId;

/// At most this many anti-entropy sessions run at once (each is a few round trips).
pub const MAX_SYNC_SESSIONS: usize = 8;

/// How a session goes on after a response.
#[derive(Debug)]
pub enum Advance {
    /// Send the next request, under a fresh id.
    Continue {
        id: RequestId,
        request: SyncRequest,
    },
    Done(SessionStats),
    /// The peer broke the protocol (or refused): the session is over.
    Failed(SyncError),
}

/// What one response did.
#[derive(Debug)]
pub struct Answered<P> {
    pub peer: P,
    /// Entries the response changed here (to persist).
    pub changed: Vec<Entry>,
    /// Entries it carried that were refused (held against the peer).
    pub refused: usize,
    pub advance: Advance,
    /// When the request it answers was sent (local clock, microseconds): the clock sample's t0.
    pub sent_us: i64,
}

#[derive(Debug)]
pub struct AntiEntropy<P> {
    /// Running sessions by the id of the request they wait on, and when that request was sent.
    sessions: HashMap<RequestId, (P, Session, i64)>,
    /// Ids are never reused, so a late answer to a finished request finds nothing.
    next_id: RequestId,
}

impl<P> Default for AntiEntropy<P> {
    fn default() -> Self {
        AntiEntropy { sessions: HashMap::new(), next_id: 1 }
    }
}

impl<P: Copy + Eq + Hash> AntiEntropy<P> {
    fn running_with(&self, peer: &P) -> bool {
        self.sessions.values().any(|(p, _, _)| p == peer)
    }

    fn fresh_id(&mut self) -> RequestId {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Starts a session with `peer` unless one runs with it already or too many run.
    /// `offset` (random) picks where in the differing buckets pulling begins; the request goes
    /// out at `now_us`.
    pub fn start(
        &mut self,
        peer: P,
        table: &Table,
        offset: usize,
        now_us: i64,
    ) -> Option<(RequestId, SyncRequest)> {
        if self.sessions.len() >= MAX_SYNC_SESSIONS || self.running_with(&peer) {
            return None;
        }
        let (session, request) = Session::start(table, offset);
        let id = self.fresh_id();
        self.sessions.insert(id, (peer, session, now_us));
        Some((id, request))
    }

    /// Feeds the response to request `id`, received at `now_us`, into its session; `None` if no
    /// session waits on `id`. A next request goes out at `now_us`.
    pub fn on_response(
        &mut self,
        id: RequestId,
        table: &mut Table,
        response: SyncResponse,
        now_us: i64,
    ) -> Option<Answered<P>> {
        let now_ms = u64::try_from(now_us / 1000).unwrap_or(0);
        let (peer, mut session, sent_us) = self.sessions.remove(&id)?;
        let answered = match session.on_response(table, response, now_ms) {
            Ok((Step::Send(request), changed, refused)) => {
                let id = self.fresh_id();
                self.sessions.insert(id, (peer, session, now_us));
                Answered { peer, changed, refused, advance: Advance::Continue { id, request }, sent_us }
            }
            Ok((Step::Done, changed, refused)) => {
                Answered { peer, changed, refused, advance: Advance::Done(session.stats), sent_us }
            }
            Err(e) => {
                Answered { peer, changed: Vec::new(), refused: 0, advance: Advance::Failed(e), sent_us }
            }
        };
        Some(answered)
    }

    /// Request `id` failed: ends its session and returns the peer, or `None` if it was stale.
    pub fn on_failure(&mut self, id: RequestId) -> Option<P> {
        self.sessions.remove(&id).map(|(peer, _, _)| peer)
    }

    /// Ends every session (the replica became read-only).
    pub fn clear(&mut self) {
        self.sessions.clear();
    }

    /// Ends any session with `peer` (it left, or was banned).
    pub fn forget(&mut self, peer: &P) {
        self.sessions.retain(|_, (p, _, _)| p != peer);
    }
}
