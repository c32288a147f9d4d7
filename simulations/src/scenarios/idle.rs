//! The idle scenario: what a node costs the network when nothing is written, and what one write
//! costs each node.
//!
//! 1. After a settling wait (start-up traffic: first identify exchanges, Kademlia's bootstrap, the
//!    nodes' first own-record writes), loopback's counters are read over a window of nothing but
//!    background work: liveness probes, pings, Kademlia's periodic walks, gossipsub heartbeats,
//!    identify, AutoNAT, anti-entropy rounds. The window's two halves are also shown, as a
//!    measure of how steady the rate is.
//! 2. Then isolated writes: one at a random node, wait until every node has it, then nothing
//!    until `gap` has passed since the write, so each write's gossip (mesh copies, then IHAVE
//!    for `history_gossip` heartbeats) is over before the next. The phase's bytes minus the idle
//!    rate times its length, over the writes and N, are one write's cost per node. This is the
//!    pattern of own-record refreshes, which come alone.
//! 3. The refreshes, amortised: N nodes each rewrite their record once per refresh interval, so
//!    each node carries N / interval writes per second at the measured cost per write. The
//!    window of step 1 holds none of them (the interval is 30 minutes), so idle traffic is the
//!    window's rate plus this.

use std::time::{Duration, Instant};

use serde_json::json;
use udht::core::PeerFields;

use super::{Outcome, Sim};
use crate::traffic::{self, Rate};

/// What the idle scenario was asked for.
#[derive(Debug, Clone)]
pub struct IdleOptions {
    /// Wait before measuring, after the cluster converged.
    pub settle: Duration,
    /// The idle window.
    pub window: Duration,
    /// Isolated writes after the window.
    pub writes: usize,
    /// From one isolated write to the next.
    pub gap: Duration,
    /// The nodes' own-record refresh interval, for the amortised refresh cost.
    pub refresh_interval: Duration,
}

/// A record the size of a node's own record (name, loopback ip and port, a peer id, one listen
/// address; its key, above, is as long as a peer id), so that an isolated write costs what an
/// own-record refresh does. Its key is not a real peer id: only a node may write its own.
fn refresh_like(w: usize) -> PeerFields {
    PeerFields {
        name: Some(format!("node{}", w % 100)),
        ip: Some("127.0.0.1".into()),
        port: Some(format!("{}", 40_000 + w % 10_000)),
        peer_id: Some(format!("12D3KooW{w:0>44}")),
        addrs: Some(vec![format!("/ip4/127.0.0.1/tcp/{}", 40_000 + w % 10_000)]),
        ..Default::default()
    }
}

/// Counters of the connection set, summed over the nodes.
#[derive(Debug, Default)]
struct Churn {
    /// Connections closed because their pings failed.
    dead_closed: u64,
    /// Dials the nodes' own maintenance made (not Kademlia's or probes').
    dials: u64,
    /// Connections established, both ways, all causes.
    opened: u64,
    /// Partings of the connection manager.
    trimmed: u64,
    /// Members seen suspect or dead now.
    not_alive: usize,
}

impl Sim<'_> {
    pub async fn idle(&mut self, o: &IdleOptions) -> anyhow::Result<Outcome> {
        let n = self.cluster.running().len();
        eprintln!(
            "  idle: settling {:.0}s, then measuring {:.0}s",
            o.settle.as_secs_f64(),
            o.window.as_secs_f64()
        );
        tokio::time::sleep(o.settle).await;
        let connections = self.mean_connections();
        let churn_start = self.link_churn();
        let Some(start) = traffic::loopback() else {
            anyhow::bail!("loopback counters unreadable (/proc/self/net/dev): the idle scenario needs them");
        };
        tokio::time::sleep(o.window / 2).await;
        let middle = traffic::loopback().unwrap_or(start);
        tokio::time::sleep(o.window / 2).await;
        let end = traffic::loopback().unwrap_or(middle);
        let connections_end = self.mean_connections();
        let churn_end = self.link_churn();
        // Pings that time out on a starved host close connections, and re-dialling them costs
        // handshakes: shown so that such a window is recognised. Likewise connections opened
        // and partings: the connection set's churn, each opening costing handshakes.
        let dead_closed = churn_end.dead_closed.saturating_sub(churn_start.dead_closed);
        let dials = churn_end.dials.saturating_sub(churn_start.dials);
        let opened = churn_end.opened.saturating_sub(churn_start.opened);
        let trimmed = churn_end.trimmed.saturating_sub(churn_start.trimmed);
        let idle = Rate::between(start, end, n);
        let halves = [Rate::between(start, middle, n), Rate::between(middle, end, n)];
        self.idle_rate = Some(idle.bytes_per_node_per_sec());

        eprintln!("  idle: {} isolated writes, one every {:.1}s", o.writes, o.gap.as_secs_f64());
        let mut missed = 0;
        let before = traffic::loopback().unwrap_or(end);
        for w in 0..o.writes {
            let t0 = Instant::now();
            let writer = self.random_running();
            if self.write_and_wait(writer, format!("idle-{w:0>47}"), refresh_like(w)).await?.is_none() {
                missed += 1;
            }
            tokio::time::sleep(o.gap.saturating_sub(t0.elapsed())).await;
        }
        let after = traffic::loopback().unwrap_or(before);
        let phase = Rate::between(before, after, n);
        let per_write =
            (phase.bytes_per_node - idle.bytes_per_node_per_sec() * phase.secs) / o.writes.max(1) as f64;
        let refresh_secs = o.refresh_interval.as_secs_f64().max(1e-9);
        let refresh_amortised = n as f64 / refresh_secs * per_write;
        let total = idle.bytes_per_node_per_sec() + refresh_amortised;
        let figures = json!({
            "nodes": n,
            "mean_connections_per_node": (connections + connections_end) / 2.0,
            "connections_per_node_at_start_and_end": [connections, connections_end],
            "window_dead_connections_closed": dead_closed,
            "window_dials": dials,
            "window_connections_opened": opened,
            "window_partings": trimmed,
            "window_end_members_not_alive": churn_end.not_alive,
            "settle_secs": o.settle.as_secs_f64(),
            "window": idle.to_json(),
            "window_halves": [halves[0].to_json(), halves[1].to_json()],
            "isolated_writes": o.writes,
            "isolated_writes_missed": missed,
            "write_gap_secs": o.gap.as_secs_f64(),
            "write_phase": phase.to_json(),
            "bytes_per_write_per_node": per_write,
            "refresh_interval_secs": refresh_secs,
            "refresh_amortised_bytes_per_node_per_sec": refresh_amortised,
            "idle_bytes_per_node_per_sec": idle.bytes_per_node_per_sec(),
            "idle_with_refresh_bytes_per_node_per_sec": total,
        });
        println!(
            "idle      N={n}: {:.0} B/s/node idle over {:.0}s (halves {:.0} / {:.0}; {:.1} packets/s/node; \
             {connections:.1} -> {connections_end:.1} connections/node, \
             {dead_closed} dead connections closed, {dials} dials, {opened} connections opened, {trimmed} partings, \
             {} members not alive at the end); {per_write:.0} B/write/node ({} isolated writes); \
             refresh every {:.0}s adds {refresh_amortised:.1} B/s/node: {total:.0} B/s/node in all",
            idle.bytes_per_node_per_sec(),
            idle.secs,
            halves[0].bytes_per_node_per_sec(),
            halves[1].bytes_per_node_per_sec(),
            idle.packets_per_node_per_sec(),
            churn_end.not_alive,
            o.writes,
            refresh_secs,
        );
        let converged = missed == 0 && self.cluster.wait_converged(self.timeout).await.is_ok();
        Ok(Outcome {
            name: "idle".into(),
            converged,
            figures,
            latencies_ms: Vec::new(),
            timeline: Vec::new(),
        })
    }

    /// Summed over the running nodes.
    fn link_churn(&self) -> Churn {
        let mut out = Churn::default();
        for i in self.cluster.running() {
            if let Ok(s) = self.cluster.status(i) {
                out.dead_closed += s.net_stats.dead_connections_closed;
                out.dials += s.net_stats.dials;
                out.opened += s.net_stats.connections_opened;
                out.trimmed += s.net_stats.peers_trimmed;
                out.not_alive += s.liveness.suspect + s.liveness.dead;
            }
        }
        out
    }

    /// Open connections per running node, on average.
    fn mean_connections(&self) -> f64 {
        let running = self.cluster.running();
        let total: u64 = running
            .iter()
            .filter_map(|&i| self.cluster.status(i).ok())
            .map(|s| s.net_stats.open_connections)
            .sum();
        total as f64 / running.len().max(1) as f64
    }
}
