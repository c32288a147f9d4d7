//! Counters of the manager socket, reported by `message_type 9`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use serde::Serialize;

/// A request's labels in the latency histogram: its type and how it ended.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `get`, `add`, `update`, `remove`, `table`, `identity`, `status` or `bad`.
    pub kind: &'static str,
    /// `completed`, `failed` (the protocol's "no": exists, missing) or `error`.
    pub result: &'static str,
}

/// 16 buckets from 10 µs doubling to about 0.3 s: a get takes microseconds, a durable write an
/// fsync (milliseconds), a large table a good part of a second.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(10e-6, 2.0, 16))
}

type LatencyFamily = Family<RequestLabels, Histogram, fn() -> Histogram>;

/// Every request kind and result the handler reports: their histograms are made once, so a
/// request records its latency without the family's lock and hashing (a get takes microseconds).
const KINDS: [&str; 8] = ["get", "add", "update", "remove", "table", "identity", "status", "watch"];
const RESULTS: [&str; 3] = ["completed", "failed", "error"];

/// Counters of the manager socket, reported by `message_type 9` and `/metrics`.
#[derive(Debug)]
pub struct ManagerStats {
    pub accepted: AtomicU64,
    pub refused_busy: AtomicU64,
    pub refused_not_loopback: AtomicU64,
    pub requests: AtomicU64,
    pub bad_requests: AtomicU64,
    pub timed_out: AtomicU64,
    /// Connections watching the change feed now.
    pub watchers: AtomicU64,
    /// Watches refused (too many watchers).
    pub watchers_refused: AtomicU64,
    /// Watchers cut off because they fell behind.
    pub watchers_lagged: AtomicU64,
    /// Time from a request's parse to its reply, by type and result.
    latency: LatencyFamily,
    /// The family's histograms, by `KINDS` index * 3 + `RESULTS` index (shared with the family).
    by_kind: Vec<Histogram>,
}

impl Default for ManagerStats {
    fn default() -> Self {
        let latency: LatencyFamily = Family::new_with_constructor(latency_histogram);
        let by_kind = KINDS
            .iter()
            .flat_map(|kind| RESULTS.iter().map(move |result| RequestLabels { kind, result }))
            .map(|labels| latency.get_or_create(&labels).clone())
            .collect();
        ManagerStats {
            accepted: AtomicU64::new(0),
            refused_busy: AtomicU64::new(0),
            refused_not_loopback: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            bad_requests: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
            watchers: AtomicU64::new(0),
            watchers_refused: AtomicU64::new(0),
            watchers_lagged: AtomicU64::new(0),
            latency,
            by_kind,
        }
    }
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
    pub watchers: u64,
    pub watchers_refused: u64,
    pub watchers_lagged: u64,
}

impl ManagerStats {
    /// Registers the latency histogram (as `udht_manager_request_duration_seconds`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "udht_manager_request_duration_seconds",
            "Time from a manager request to its reply, by type and result.",
            self.latency.clone(),
        );
    }

    pub fn observe(&self, kind: &'static str, result: &'static str, took: Duration) {
        let k = KINDS.iter().position(|k| *k == kind);
        let r = RESULTS.iter().position(|r| *r == result);
        match (k, r) {
            (Some(k), Some(r)) => self.by_kind[k * RESULTS.len() + r].observe(took.as_secs_f64()),
            _ => self.latency.get_or_create(&RequestLabels { kind, result }).observe(took.as_secs_f64()),
        }
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            accepted: self.accepted.load(Relaxed),
            refused_busy: self.refused_busy.load(Relaxed),
            refused_not_loopback: self.refused_not_loopback.load(Relaxed),
            requests: self.requests.load(Relaxed),
            bad_requests: self.bad_requests.load(Relaxed),
            timed_out: self.timed_out.load(Relaxed),
            watchers: self.watchers.load(Relaxed),
            watchers_refused: self.watchers_refused.load(Relaxed),
            watchers_lagged: self.watchers_lagged.load(Relaxed),
        }
    }
}
