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
}

#[derive(Debug)]
pub struct AntiEntropy<P> {
    /// Running sessions by the id of the request they wait on.
    sessions: HashMap<RequestId, (P, Session)>,
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
        self.sessions.values().any(|(p, _)| p == peer)
    }

    fn fresh_id(&mut self) -> RequestId {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Starts a session with `peer` unless one runs with it already or too many run.
    /// `offset` (random) picks where in the differing buckets pulling begins.
    pub fn start(&mut self, peer: P, table: &Table, offset: usize) -> Option<(RequestId, SyncRequest)> {
        if self.sessions.len() >= MAX_SYNC_SESSIONS || self.running_with(&peer) {
            return None;
        }
        let (session, request) = Session::start(table, offset);
        let id = self.fresh_id();
        self.sessions.insert(id, (peer, session));
        Some((id, request))
    }

    /// Feeds the response to request `id` into its session; `None` if no session waits on `id`.
    pub fn on_response(
        &mut self,
        id: RequestId,
        table: &mut Table,
        response: SyncResponse,
        now_ms: u64,
    ) -> Option<Answered<P>> {
        let (peer, mut session) = self.sessions.remove(&id)?;
        let answered = match session.on_response(table, response, now_ms) {
            Ok((Step::Send(request), changed, refused)) => {
                let id = self.fresh_id();
                self.sessions.insert(id, (peer, session));
                Answered { peer, changed, refused, advance: Advance::Continue { id, request } }
            }
            Ok((Step::Done, changed, refused)) => {
                Answered { peer, changed, refused, advance: Advance::Done(session.stats) }
            }
            Err(e) => Answered { peer, changed: Vec::new(), refused: 0, advance: Advance::Failed(e) },
        };
        Some(answered)
    }

    /// Request `id` failed: ends its session and returns the peer, or `None` if it was stale.
    pub fn on_failure(&mut self, id: RequestId) -> Option<P> {
        self.sessions.remove(&id).map(|(peer, _)| peer)
    }

    /// Ends every session (the replica became read-only).
    pub fn clear(&mut self) {
        self.sessions.clear();
    }

    /// Ends any session with `peer` (it left, or was banned).
    pub fn forget(&mut self, peer: &P) {
        self.sessions.retain(|_, (p, _)| p != peer);
    }
}
