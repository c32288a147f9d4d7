//! A connection in watch mode (type 11): the snapshot, `ready`, then the node's changes as they
//! become durable, until the client sends type 1 or closes, the node stops, or the watcher falls
//! so far behind that changes were dropped (then a last `lagged` line says how many).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::node::{Changes, NodeHandle, Watch};

use super::config::ManagerConfig;
use super::connection::{Connection, FrameError};
use super::protocol::{self as p, Frame};
use super::stats::ManagerStats;

/// A watcher may stay silent as long as it likes: it is there to listen.
const WATCH_IDLE: Duration = Duration::from_secs(365 * 24 * 3600);
/// The shortest time between two writes of changes to a watcher (see `stream`).
const COALESCE: Duration = Duration::from_millis(1);
/// Batches written per flush when many are queued: one write for several, not one each.
const FLUSH_EVERY: usize = 64;

/// Serves the watch until it ends; the caller closes the connection after.
pub(super) async fn serve(
    conn: &mut Connection,
    node: &NodeHandle,
    snapshot: bool,
    config: &ManagerConfig,
    stats: &ManagerStats,
    mut stop: Pin<&mut impl Future<Output = ()>>,
) {
    let wt = config.write_timeout;
    let watch = match node.watch(snapshot).await {
        Ok(watch) => watch,
        Err(e) => {
            stats.watchers_refused.fetch_add(1, Relaxed);
            let _ = conn.queue(&p::error_reply(p::ACTION_WATCH, &(), &e.to_string()), wt).await;
            let _ = conn.flush(wt).await;
            return;
        }
    };
    stats.watchers.fetch_add(1, Relaxed);
    let _ = stream(conn, watch, config, stats, stop.as_mut()).await;
    stats.watchers.fetch_sub(1, Relaxed);
}

/// `Err` when the client is gone or too slow to take what is written.
async fn stream(
    conn: &mut Connection,
    watch: Watch,
    config: &ManagerConfig,
    stats: &ManagerStats,
    mut stop: Pin<&mut impl Future<Output = ()>>,
) -> std::io::Result<()> {
    let wt = config.write_timeout;
    let Watch { snapshot, mut changes, dropped } = watch;
    for (key, record) in &snapshot {
        conn.queue(&p::snapshot_line(key, record), wt).await?;
    }
    drop(snapshot);
    conn.queue(&p::ready_line(), wt).await?;
    conn.flush(wt).await?;
    let mut last_flush = Instant::now() - COALESCE;
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => return conn.flush(wt).await,
            batch = changes.recv() => {
                // `None`: the node is shutting down.
                let Some(batch) = batch else { return conn.flush(wt).await };
                // A busy feed is written at most once per COALESCE: the batches of that time go
                // out in one write, so a watcher costs the node a few writes per millisecond at
                // most, not one per group commit. A quiet feed's first change goes out at once.
                let since = last_flush.elapsed();
                if since < COALESCE {
                    tokio::time::sleep(COALESCE - since).await;
                }
                for batch in take_queued(batch, || changes.try_recv()) {
                    let missed = dropped.load(Relaxed);
                    if missed > 0 {
                        stats.watchers_lagged.fetch_add(1, Relaxed);
                        conn.queue(&p::lagged_line(missed), wt).await?;
                        return conn.flush(wt).await;
                    }
                    // Rendered by the first watcher to get here, reused by the others.
                    conn.queue(batch.rendered.get_or_init(|| render(&batch)), wt).await?;
                }
                conn.flush(wt).await?;
                last_flush = Instant::now();
            }
            frame = conn.read_frame(WATCH_IDLE, config.request_timeout) => match frame {
                Ok(Some(frame)) => match p::parse(frame) {
                    Ok(Frame::Close) => return conn.flush(wt).await,
                    _ => {
                        let msg = "this connection is watching: only message_type 1 (or closing it) ends the watch";
                        conn.queue(&p::error_reply(p::ACTION_WATCH, &(), msg), wt).await?;
                        conn.flush(wt).await?;
                    }
                },
                Ok(None) | Err(FrameError::Idle) => return Ok(()),
                Err(_) => return conn.flush(wt).await,
            },
        }
    }
}

/// The batches of one write: `first`, then those already queued, [`FLUSH_EVERY`] at most. Only
/// what is taken from the queue is returned, and everything taken is returned: a batch left
/// behind is taken by the next pass of the loop, none is lost between the two.
fn take_queued(first: Arc<Changes>, mut queued: impl FnMut() -> Option<Arc<Changes>>) -> Vec<Arc<Changes>> {
    let mut batches = vec![first];
    while batches.len() < FLUSH_EVERY {
        match queued() {
            Some(next) => batches.push(next),
            None => break,
        }
    }
    batches
}

/// A batch's change lines, one after another.
fn render(batch: &Changes) -> Vec<u8> {
    let mut out = Vec::with_capacity(batch.changes.len() * 256);
    for change in &batch.changes {
        out.extend_from_slice(&p::change_line(&change.key, change.record.as_deref(), change.origin));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::OnceLock;

    use super::*;
    use crate::core::replica::Origin;
    use crate::node::Change;

    fn batch(n: usize) -> Arc<Changes> {
        let change = Change { key: format!("k{n}"), record: None, origin: Origin::Local };
        Arc::new(Changes { changes: vec![change], rendered: OnceLock::new() })
    }

    /// A watcher far behind (more batches queued than one write takes) gets every batch, in
    /// order: each write takes at most FLUSH_EVERY, and what it leaves stays queued. (Before,
    /// the batch taken by the last `try_recv` of a full write was dropped: one in 65 lost.)
    #[test]
    fn a_watcher_far_behind_loses_no_batch_between_writes() {
        let mut queue: VecDeque<_> = (1..3 * FLUSH_EVERY + 7).map(batch).collect();
        let mut written = Vec::new();
        let mut first = Some(batch(0));
        while let Some(b) = first.take() {
            let taken = take_queued(b, || queue.pop_front());
            assert!(taken.len() <= FLUSH_EVERY);
            written.extend(taken.iter().map(|b| b.changes[0].key.clone()));
            first = queue.pop_front();
        }
        let expected: Vec<_> = (0..3 * FLUSH_EVERY + 7).map(|n| format!("k{n}")).collect();
        assert_eq!(written, expected);
    }
}
