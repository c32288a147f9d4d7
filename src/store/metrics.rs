//! The store's histograms for `/metrics`: how many entries each durable commit carried and how
//! long it took (the fsync dominates), and how long each fold of the journal into the table took
//! (commits wait meanwhile). Recorded by the writer thread, read at each scrape.

use std::time::Duration;

use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Shared by the writer (which records) and the registry (which reads); cheap to clone.
#[derive(Debug, Clone)]
pub struct StoreMetrics {
    commit_seconds: Histogram,
    commit_entries: Histogram,
    fold_seconds: Histogram,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        StoreMetrics {
            // 100 µs doubling to about 3 s: a tmpfs commit, an SSD's fsync, a stalled disk.
            commit_seconds: Histogram::new(exponential_buckets(100e-6, 2.0, 16)),
            // 1 doubling to 1024 (`MAX_GROUP` jobs; a job holds one write, or a repair's many).
            commit_entries: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            // 1 ms doubling to about 16 s: a fold writes up to a journal's worth of entries.
            fold_seconds: Histogram::new(exponential_buckets(1e-3, 2.0, 15)),
        }
    }
}

impl StoreMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "udht_store_commit_duration_seconds",
            "Time to make one group of writes durable (a journal append and its fsync, or a transaction).",
            self.commit_seconds.clone(),
        );
        registry.register(
            "udht_store_commit_entries",
            "Entries written (puts and deletes) by one durable commit.",
            self.commit_entries.clone(),
        );
        registry.register(
            "udht_store_fold_duration_seconds",
            "Time to fold the journal into the table (one transaction and its fsync); commits wait meanwhile.",
            self.fold_seconds.clone(),
        );
    }

    pub(super) fn committed(&self, entries: usize, took: Duration) {
        self.commit_seconds.observe(took.as_secs_f64());
        self.commit_entries.observe(entries as f64);
    }

    pub(super) fn folded(&self, took: Duration) {
        self.fold_seconds.observe(took.as_secs_f64());
    }
}
