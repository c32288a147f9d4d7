//! Counters of the manager socket, reported by `message_type 9`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

/// Counters of the manager socket, reported by `message_type 9`.
#[derive(Debug, Default)]
pub struct ManagerStats {
    pub accepted: AtomicU64,
    pub refused_busy: AtomicU64,
    pub refused_not_loopback: AtomicU64,
    pub requests: AtomicU64,
    pub bad_requests: AtomicU64,
    pub timed_out: AtomicU64,
}

/// A copy of [`ManagerStats`] at one moment.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct StatsSnapshot {
    pub accepted: u64,
    pub refused_busy: u64,
    pub refused_not_loopback: u64,
    pub requests: u64,
    pub bad_requests: u64,
    pub timed_out: u64,
}

impl ManagerStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            accepted: self.accepted.load(Relaxed),
            refused_busy: self.refused_busy.load(Relaxed),
            refused_not_loopback: self.refused_not_loopback.load(Relaxed),
            requests: self.requests.load(Relaxed),
            bad_requests: self.bad_requests.load(Relaxed),
            timed_out: self.timed_out.load(Relaxed),
        }
    }
}
