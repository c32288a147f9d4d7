//! Change-feed watchers (type 11) that read everything the node streams while a case runs, so
//! the add case can be measured with them attached; each counts the changes it saw.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Result};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// How a change line and the `ready` line begin.
const CHANGED: &[u8] = br#"{"action": "peer changed", "#;
const READY: &[u8] = br#"{"action": "watch", "result": "ready"}"#;

/// Watchers attached to the node; [`Watchers::finish`] collects what each saw.
pub struct Watchers {
    tasks: Vec<JoinHandle<Result<u64>>>,
    /// Changes each watcher has seen so far, for the report when one falls behind.
    counts: Vec<Arc<AtomicU64>>,
    stop: tokio::sync::watch::Sender<u64>,
}

impl Watchers {
    /// Connects `n` watchers and waits until each is `ready`.
    pub async fn start(addr: SocketAddr, n: usize) -> Result<Watchers> {
        let (stop, stop_rx) = tokio::sync::watch::channel(u64::MAX);
        let mut tasks = Vec::with_capacity(n);
        let mut counts = Vec::with_capacity(n);
        for _ in 0..n {
            let mut stream = TcpStream::connect(addr).await?;
            stream.write_all(br#"{"message_type": 11, "data": {"snapshot": false}}"#).await?;
            let mut reader = BufReader::new(stream);
            let mut line = Vec::with_capacity(512);
            reader.read_until(b'\n', &mut line).await?;
            ensure!(line.starts_with(READY), "not ready: {}", String::from_utf8_lossy(&line));
            let mut stop_rx = stop_rx.clone();
            let seen = Arc::new(AtomicU64::new(0));
            counts.push(seen.clone());
            tasks.push(tokio::spawn(async move {
                line.clear();
                loop {
                    // Reads until it has seen as many changes as it is told to expect.
                    if seen.load(Relaxed) >= *stop_rx.borrow() {
                        return Ok(seen.load(Relaxed));
                    }
                    // `read_until` keeps what it read so far in `line` when the stop signal
                    // interrupts it; the next call goes on with the same line.
                    let n = tokio::select! {
                        n = reader.read_until(b'\n', &mut line) => n?,
                        _ = stop_rx.changed() => continue,
                    };
                    if n == 0 {
                        bail!("the node closed a watcher after {} changes", seen.load(Relaxed));
                    }
                    // Each line checked, as a service would, but without building a String.
                    if line.starts_with(CHANGED) && line.ends_with(b"}\n") {
                        seen.fetch_add(1, Relaxed);
                    } else {
                        bail!("a watcher got {}", String::from_utf8_lossy(&line));
                    }
                    line.clear();
                }
            }));
        }
        Ok(Watchers { tasks, counts, stop })
    }

    /// Waits (at most `within`) until every watcher has seen `expected` changes; their counts.
    pub async fn finish(self, expected: u64, within: Duration) -> Result<Vec<u64>> {
        let _ = self.stop.send(expected);
        let deadline = tokio::time::Instant::now() + within;
        let mut seen = Vec::with_capacity(self.tasks.len());
        for task in self.tasks {
            match tokio::time::timeout_at(deadline, task).await {
                Ok(done) => seen.push(done??),
                Err(_) => {
                    let counts: Vec<u64> = self.counts.iter().map(|c| c.load(Relaxed)).collect();
                    bail!("a watcher fell behind: after {within:?}, the watchers had seen {counts:?} of {expected} changes");
                }
            }
        }
        Ok(seen)
    }
}
