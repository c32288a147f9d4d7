//! udht's own metrics, read from the node's status and the manager's counters at each scrape:
//! the node task keeps these figures anyway, so nothing is counted twice or kept in step.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use crate::manager::ManagerStats;
use crate::node::NodeHandle;

/// Encodes the node's figures on every scrape.
#[derive(Debug)]
pub struct NodeCollector {
    node: NodeHandle,
    manager: Arc<ManagerStats>,
}

impl NodeCollector {
    pub fn new(node: NodeHandle, manager: Arc<ManagerStats>) -> Self {
        NodeCollector { node, manager }
    }
}

/// One metric family at a time; names get `udht_` in front (and `_total` for counters, added by
/// the encoder).
struct Out<'a> {
    enc: DescriptorEncoder<'a>,
}

impl Out<'_> {
    fn gauge(&mut self, name: &str, help: &str, value: i64) -> fmt::Result {
        let metric = ConstGauge::new(value);
        let name = format!("udht_{name}");
        metric.encode(self.enc.encode_descriptor(&name, help, None, metric.metric_type())?)
    }

    /// A gauge family with one label.
    fn gauges(&mut self, name: &str, help: &str, label: &str, values: &[(&str, i64)]) -> fmt::Result {
        let name = format!("udht_{name}");
        let mut family = self.enc.encode_descriptor(&name, help, None, MetricType::Gauge)?;
        for (value_label, value) in values {
            let labels = [(label, *value_label)];
            ConstGauge::new(*value).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) -> fmt::Result {
        self.counters(name, help, "", &[("", value)])
    }

    /// A counter family with one label (`label` empty: a single unlabelled counter).
    fn counters(&mut self, name: &str, help: &str, label: &str, values: &[(&str, u64)]) -> fmt::Result {
        let name = format!("udht_{name}");
        let mut family = self.enc.encode_descriptor(&name, help, None, MetricType::Counter)?;
        for (value_label, value) in values {
            let metric = ConstCounter::new(*value);
            if label.is_empty() {
                metric.encode(family)?;
                return Ok(());
            }
            let labels = [(label, *value_label)];
            metric.encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

impl Collector for NodeCollector {
    fn encode(&self, enc: DescriptorEncoder) -> fmt::Result {
        let s = self.node.status();
        let (t, y, n, m) = (s.table_stats, s.sync_stats, s.net_stats, self.manager.snapshot());
        let mut out = Out { enc };
        out.gauge("table_records", "Live records in the table.", s.table_size as i64)?;
        out.gauge(
            "table_tombstones",
            "Removed records kept as tombstones until collected.",
            s.tombstones as i64,
        )?;
        out.gauge("connected_peers", "Peers this node is connected to.", s.connected_peers.len() as i64)?;
        out.counters(
            "writes",
            "Writes that changed the table, by origin: local clients or remote peers.",
            "origin",
            &[("local", y.local_writes), ("remote", t.merged)],
        )?;
        out.counter("entries_stale", "Remote entries older than what the table held.", t.stale)?;
        out.counters(
            "entries_refused",
            "Remote entries refused, by reason.",
            "reason",
            &[
                ("future", t.rejected_future),
                ("invalid", t.rejected_invalid),
                ("signature", t.rejected_signature),
                ("owner", t.rejected_owner),
                ("writer_cap", t.rejected_writer_cap),
                ("rate_limited", y.rate_limited),
            ],
        )?;
        out.counter(
            "conflicting_stamps",
            "Entries whose writer signed two values under one stamp (resolved alike everywhere).",
            t.conflicting_stamps,
        )?;
        out.counter(
            "tombstones_collected",
            "Tombstones dropped after their grace period.",
            t.tombstones_collected,
        )?;
        out.counter(
            "node_records_expired",
            "Node records dropped because their node did not refresh them within the node TTL.",
            t.nodes_expired,
        )?;
        out.counters(
            "antientropy_sessions",
            "Anti-entropy sessions this node started, by result.",
            "result",
            &[("completed", y.sessions_completed), ("failed", y.sessions_failed)],
        )?;
        out.counter(
            "antientropy_entries_repaired",
            "Entries anti-entropy changed here.",
            y.entries_repaired,
        )?;
        out.counters(
            "sync_messages",
            "Anti-entropy requests and responses, by kind.",
            "kind",
            &[
                ("request_sent", n.sync_requests_sent),
                ("response_sent", n.sync_responses_sent),
                ("inbound_failure", n.sync_inbound_failures),
                ("outbound_failure", n.sync_outbound_failures),
                ("request_refused", y.requests_refused),
                ("stale_answer", y.stale_answers),
            ],
        )?;
        out.counters(
            "gossip_messages",
            "Gossip messages, by event.",
            "event",
            &[
                ("published", n.gossip_published),
                ("published_without_peers", n.gossip_no_peers),
                ("received", n.gossip_received),
                ("rejected", n.gossip_rejected),
            ],
        )?;
        out.counter("peers_banned", "Peers banned for repeated bad messages.", y.peers_banned)?;
        out.counter("dials", "Outbound dials.", n.dials)?;
        out.counters(
            "hole_punches",
            "DCUtR upgrades of relayed connections, by result.",
            "result",
            &[
                ("succeeded", n.hole_punches_succeeded),
                ("failed", n.hole_punches_tried.saturating_sub(n.hole_punches_succeeded)),
            ],
        )?;
        out.counter(
            "relay_reservations",
            "Slots relays granted this node (it is not reachable directly).",
            n.relay_reservations_accepted,
        )?;
        out.counter(
            "relayed_circuits_served",
            "Circuits this node relayed for others.",
            n.relayed_circuits_served,
        )?;
        out.gauge("connections_direct", "Direct connections open now.", n.direct_connections as i64)?;
        out.gauge(
            "connections_relayed",
            "Connections through a relay open now.",
            n.relayed_connections as i64,
        )?;
        out.gauge(
            "reachable",
            "1 when a peer confirmed one of this node's addresses, 0 when none worked, -1 untested.",
            match s.reach.reachability {
                crate::net::Reachability::Public => 1,
                crate::net::Reachability::Private => 0,
                crate::net::Reachability::Unknown => -1,
            },
        )?;
        out.counter(
            "dead_connections_closed",
            "Connections closed because pings failed.",
            n.dead_connections_closed,
        )?;
        out.counter("commits_failed", "Store commits that could not be made durable.", y.commits_failed)?;
        out.counter(
            "own_record_refused",
            "Own-record writes skipped for breaking a limit.",
            y.own_record_refused,
        )?;
        out.counters(
            "manager_connections",
            "Manager socket connections, by outcome.",
            "outcome",
            &[
                ("accepted", m.accepted),
                ("refused_busy", m.refused_busy),
                ("refused_not_loopback", m.refused_not_loopback),
            ],
        )?;
        let l = &s.liveness;
        out.gauges(
            "members",
            "Node records by liveness state, as this node sees them.",
            "state",
            &[("alive", l.alive as i64), ("suspect", l.suspect as i64), ("dead", l.dead as i64)],
        )?;
        out.gauge(
            "liveness_local_health",
            "Lifeguard's local health score: 0 when this node's own probes are answered; each point stretches its probe period and timeouts once more.",
            i64::from(l.local_health),
        )?;
        out.counters(
            "liveness_probes",
            "Liveness probes, by event.",
            "event",
            &[
                ("sent", l.probes.probes_sent),
                ("received", l.probes.probes_received),
                ("failed", l.probes.probe_failures),
            ],
        )?;
        out.gauge("watchers", "Manager connections watching the change feed.", m.watchers as i64)?;
        out.counters(
            "watches_ended",
            "Watches refused (too many watchers) or cut off for falling behind.",
            "reason",
            &[("refused", m.watchers_refused), ("lagged", m.watchers_lagged)],
        )?;
        out.counter("manager_bad_requests", "Manager requests refused as malformed.", m.bad_requests)?;
        out.counter("manager_timeouts", "Manager clients closed for idling or trickling.", m.timed_out)?;
        Ok(())
    }
}
