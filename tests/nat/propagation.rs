//! Write propagation: writes at one node, arrival times at others through their change feeds.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::process::NodeProcess;
use crate::world::percentile;

/// Writes per measurement.
pub(crate) const WRITES: usize = 100;
/// How long after the last write every arrival must have happened.
pub(crate) const ARRIVAL_BOUND: Duration = Duration::from_secs(15);

/// Watches a node's change feed; sends (node index, key, arrival) for each change.
pub(crate) async fn watch(
    node: &NodeProcess,
    index: usize,
    tx: tokio::sync::mpsc::Sender<(usize, String, Instant)>,
) {
    let mut client = node.client(Duration::from_secs(10)).await.expect("a watch connection");
    client.watch(false).await.unwrap();
    let ready = client.read_reply().await.unwrap();
    assert_eq!(ready["result"], "ready", "{ready}");
    tokio::spawn(async move {
        while let Ok(Some(line)) = client.next_watch_line().await {
            let key = line.value["key"].as_str().unwrap_or_default().to_owned();
            if tx.send((index, key, Instant::now())).await.is_err() {
                return;
            }
        }
    });
}

/// Makes [`WRITES`] writes at `writer`, 20 ms apart, and gives for each write its delay until it
/// reached each receiver (`None`: not within [`ARRIVAL_BOUND`] after the last write). Prints the
/// writer's own reply times (the part of the delay spent before the write leaves the writer).
pub(crate) async fn propagation(
    writer: &NodeProcess,
    receivers: &[&NodeProcess],
    tag: &str,
) -> Vec<Vec<Option<Duration>>> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(4 * WRITES * receivers.len());
    for (i, node) in receivers.iter().enumerate() {
        watch(node, i, tx.clone()).await;
    }
    let mut client = writer.client(Duration::from_secs(10)).await.unwrap();
    let mut sent = Vec::new();
    let mut replies = Vec::new();
    for i in 0..WRITES {
        let key = format!("nat-{tag}-{i}");
        let add = json!({"message_type": 3, "data": {"peer_id": key, "name": "w", "ip": "198.18.0.200", "port": "1"}});
        sent.push((key, Instant::now()));
        assert_eq!(client.request(&add).await.unwrap()["result"], "completed");
        replies.push(sent[i].1.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    replies.sort();
    println!(
        "netns: {tag} writes: the writer's reply p50 {:.1} ms, p99 {:.1} ms",
        percentile(&replies, 50),
        percentile(&replies, 99)
    );
    let index: HashMap<String, usize> = sent.iter().enumerate().map(|(i, (k, _))| (k.clone(), i)).collect();
    let mut lags = vec![vec![None; receivers.len()]; WRITES];
    let mut missing = WRITES * receivers.len();
    let deadline = tokio::time::Instant::now() + ARRIVAL_BOUND;
    while missing > 0 {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some((r, key, at))) => {
                if let Some(&w) = index.get(&key) {
                    if lags[w][r].is_none() {
                        lags[w][r] = Some(at.duration_since(sent[w].1));
                        missing -= 1;
                    }
                }
            }
            _ => break,
        }
    }
    lags
}

/// p50 and p99 (ms) over the writes of the delay until a write reached all of `receivers`
/// (indexes into each write's lags), and over how many writes (those that reached them all).
pub(crate) fn percentiles(lags: &[Vec<Option<Duration>>], receivers: &[usize]) -> Option<(f64, f64, usize)> {
    let mut all: Vec<Duration> = lags
        .iter()
        .filter_map(|w| receivers.iter().map(|&r| w[r]).collect::<Option<Vec<_>>>()?.into_iter().max())
        .collect();
    all.sort();
    (!all.is_empty()).then(|| (percentile(&all, 50), percentile(&all, 99), all.len()))
}

/// Prints the target line of [`percentiles`]; gives how many (write, receiver) arrivals are
/// missing.
pub(crate) fn report(what: &str, lags: &[Vec<Option<Duration>>], receivers: &[usize]) -> usize {
    match percentiles(lags, receivers) {
        None => println!("NAT TARGET write propagation {what}: no write arrived everywhere"),
        Some((p50, p99, n)) => println!(
            "NAT TARGET write propagation {what} ({n} writes): p50 {p50:.1} ms, p99 {p99:.1} ms (target p99 <= 250 ms)"
        ),
    }
    lags.iter().map(|w| receivers.iter().filter(|&&r| w[r].is_none()).count()).sum()
}
