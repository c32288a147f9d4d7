//! What the replica does about its clock: it stamps every anti-entropy answer with its clock,
//! samples its peers' clocks from their answers (see `skew`), says when the verdict changes, and
//! stamps nothing the network would refuse: beyond the max skew it refuses client writes and
//! leaves its own record unrefreshed; at start the own record waits for a first comparison.
//!
//! Why this also guards the hybrid logical clock: a stamp, once made, is never taken back, and
//! the HLC never runs behind a stamp it issued. A node that stamped anything with a clock five
//! minutes ahead would, after its clock is corrected, keep stamping five minutes ahead (and that
//! entry would later beat honest writes made in between). So nothing is stamped while the clock
//! is judged off, nor while the HLC is still beyond the max skew ahead of the wall clock.

use super::io::{Output, Types, WriteError};
use super::skew::{ClockReport, ClockState};
use super::Replica;

use crate::core::sync::SyncResponse;

impl<T: Types> Replica<T> {
    /// The clock offset estimate, as status shows it.
    pub fn clock_report(&self) -> ClockReport {
        self.clock.report()
    }

    /// Answers an anti-entropy request, with this node's clock for the requester's estimate.
    pub(super) fn respond(&mut self, to: T::Responder, mut response: SyncResponse) {
        if let SyncResponse::Entries { entries, .. } = &mut response {
            self.durable_only(entries);
        }
        self.out.push(Output::RespondSync { to, response, clock_us: self.now_us });
    }

    /// A peer answered a request sent at `sent_us` with its clock reading `remote_us`.
    pub(super) fn clock_sample(&mut self, peer: T::Peer, sent_us: i64, remote_us: i64, now_us: i64) {
        if self.clock.sample(peer, sent_us, remote_us, now_us) {
            self.clock_changed(now_us);
        }
    }

    /// Judges the samples again; says so (once) when the verdict changed, and writes the own
    /// record if it was waiting and may be written now.
    pub(super) fn clock_changed(&mut self, now_us: i64) {
        if let Some(report) = self.clock.update(now_us) {
            let (offset_ms, peers) = (report.offset_ms, report.peers);
            match (report.state, report.warning()) {
                (ClockState::Warn | ClockState::Refuse, Some(warning)) => {
                    tracing::warn!(?offset_ms, peers, "{warning}")
                }
                (ClockState::Ok, _) => {
                    tracing::info!(?offset_ms, peers, "clock compared with peers: within bounds")
                }
                _ => tracing::info!("no recent clock comparison with any peer"),
            }
        }
        self.write_own_record_if_due(now_us);
    }

    pub(super) fn write_own_record_if_due(&mut self, now_us: i64) {
        if self.own_record_due && self.own_record_allowed(now_us) {
            self.write_own_record(now_us);
        }
    }

    /// Whether this node may stamp a write at `now_us`; if not, the client's error.
    pub(super) fn may_stamp(&self, now_us: i64) -> Result<(), WriteError> {
        let report = self.clock.report();
        if report.state == ClockState::Refuse {
            return Err(WriteError::ClockSkew {
                secs: report.offset_secs(),
                direction: report.direction(),
                max_skew_secs: report.max_skew_ms / 1000,
            });
        }
        let hlc = self.table.clock();
        let lead_ms = hlc.lead_ms(u64::try_from(now_us / 1000).unwrap_or(0));
        if lead_ms > hlc.max_skew_ms() {
            return Err(WriteError::StampsAhead { secs: lead_ms.div_ceil(1000) });
        }
        Ok(())
    }

    /// Whether the own record may be written: not at start before a clock comparison (or the end
    /// of the wait for one), and never when [`Self::may_stamp`] says no.
    pub(super) fn own_record_allowed(&self, now_us: i64) -> bool {
        (self.clock_wait_over || self.clock.compared()) && self.may_stamp(now_us).is_ok()
    }

    /// The periodic anti-entropy: with one random peer while the clock is fine; with every
    /// connected peer (up to the session limit) while it is off or unknown, so that a corrected
    /// clock is noticed within one sync interval instead of one round over all the peers.
    pub(super) fn sync_round(&mut self, now_us: i64) {
        // Samples expire here too, when no answer came for a while.
        self.clock_changed(now_us);
        if self.connected.is_empty() {
            return;
        }
        if self.clock.report().state == ClockState::Ok {
            let i = rand::Rng::gen_range(&mut self.rng, 0..self.connected.len());
            let peer = *self.connected.iter().nth(i).expect("index below len");
            self.start_sync(peer);
        } else {
            let peers: Vec<T::Peer> = self.connected.iter().copied().collect();
            for peer in peers {
                self.start_sync(peer);
            }
        }
    }
}
