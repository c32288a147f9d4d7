//! The nodes of a NAT test on an [`Internet`], and what the scenarios read from them: tables,
//! addresses that cannot be used, reachability fields, direct flows on the routers.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;
use serde_json::{json, Map, Value};
use tempfile::TempDir;

use crate::common::eventually;
use crate::common::netns::Internet;
use crate::common::process::{NodeProcess, NETNS_P2P_PORT};

/// The nodes of one test on one [`Internet`]. Field order matters: the processes are dropped
/// (killed) before the namespaces they run in are deleted.
pub(crate) struct World {
    pub(crate) pubs: Vec<NodeProcess>,
    pub(crate) homes: Vec<NodeProcess>,
    pub(crate) pub_ids: Vec<String>,
    pub(crate) home_ids: Vec<String>,
    /// When the first home node was started.
    pub(crate) started: Instant,
    pub(crate) dir: TempDir,
    pub(crate) net: Internet,
}

/// `--bootstrap` flags naming the first `n` public nodes by bare TCP address.
pub(crate) fn bootstrap(net: &Internet, n: usize) -> Vec<String> {
    net.public[..n]
        .iter()
        .flat_map(|h| ["--bootstrap".to_string(), format!("/ip4/{}/tcp/{NETNS_P2P_PORT}", h.ip)])
        .collect()
}

pub(crate) fn name(n: &str) -> Vec<String> {
    vec!["--name".into(), n.into()]
}

impl World {
    /// pub1, then pub2 (bootstrapped from pub1), then `extra_pubs` more public nodes (from
    /// pub1), then one node in each home (bootstrapped from pub1 and pub2).
    pub(crate) async fn start(net: Internet, extra_pubs: usize) -> World {
        let dir = tempfile::tempdir().unwrap();
        let mut pubs = Vec::new();
        for k in 0..2 + extra_pubs {
            let flags = [name(&format!("pub{}", k + 1)), bootstrap(&net, k.min(1))].concat();
            let path = dir.path().join(format!("pub{}", k + 1));
            pubs.push(NodeProcess::start_in(&net.public[k].ns, &path, &flags).await);
        }
        let started = Instant::now();
        let mut homes = Vec::new();
        for (k, home) in net.homes.iter().enumerate() {
            let flags = [name(&format!("home{}", k + 1)), bootstrap(&net, 2)].concat();
            let path = dir.path().join(format!("home{}", k + 1));
            homes.push(NodeProcess::start_in(&home.node.ns, &path, &flags).await);
        }
        let pub_ids = peer_ids(&pubs).await;
        let home_ids = peer_ids(&homes).await;
        World { pubs, homes, pub_ids, home_ids, started, dir, net }
    }

    pub(crate) fn ids(&self) -> Vec<String> {
        [self.pub_ids.clone(), self.home_ids.clone()].concat()
    }

    /// `pub1`, `home2`...: a peer id's node, for messages.
    pub(crate) fn name_of(&self, id: &str) -> String {
        let pubs = self.pub_ids.iter().enumerate().map(|(k, p)| (p, format!("pub{}", k + 1)));
        let homes = self.home_ids.iter().enumerate().map(|(k, p)| (p, format!("home{}", k + 1)));
        pubs.chain(homes).find(|(p, _)| *p == id).map_or_else(|| id.to_owned(), |(_, n)| n)
    }

    pub(crate) fn all(&self) -> Vec<&NodeProcess> {
        self.pubs.iter().chain(&self.homes).collect()
    }

    /// Waits until every node holds the same table (every own record everywhere).
    pub(crate) async fn converged(&self, within: Duration) {
        let nodes = self.all();
        eventually("every node's table equal (same digest)", within, async || {
            let d = crate::common::process::digests(&nodes).await;
            if d.windows(2).all(|w| w[0] == w[1]) {
                Ok(())
            } else {
                Err(d)
            }
        })
        .await;
    }
}

pub(crate) async fn peer_ids(nodes: &[NodeProcess]) -> Vec<String> {
    let mut out = Vec::new();
    for n in nodes {
        out.push(n.status().await["peer_id"].as_str().expect("a peer id in status").to_owned());
    }
    out
}

/// The node's whole table, as JSON records by key.
pub(crate) async fn table(node: &NodeProcess) -> Map<String, Value> {
    let reply = node.request(json!({"message_type": 2, "format": "json"})).await;
    assert_eq!(reply["result"], "completed", "{reply}");
    reply["data"].as_object().cloned().unwrap_or_default()
}

pub(crate) fn addrs_of(record: &Value) -> Vec<String> {
    let addrs = record["addrs"].as_array().cloned().unwrap_or_default();
    addrs.iter().filter_map(|a| a.as_str().map(str::to_owned)).collect()
}

/// Why an IP is not one anyone outside this host or its LAN can use, if it is not.
pub(crate) fn unusable(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) if v4.is_loopback() => Some("loopback"),
        IpAddr::V4(v4) if v4.is_unspecified() => Some("unspecified"),
        IpAddr::V4(v4) if v4.is_private() || v4.is_link_local() => Some("private"),
        // 100.64.0.0/10, carrier-grade NAT's shared space.
        IpAddr::V4(v4) if v4.octets()[0] == 100 && v4.octets()[1] & 0xc0 == 64 => Some("private"),
        IpAddr::V6(v6) if v6.is_loopback() => Some("loopback"),
        IpAddr::V6(v6) if v6.is_unspecified() => Some("unspecified"),
        IpAddr::V6(v6) if (v6.segments()[0] & 0xfe00) == 0xfc00 => Some("private"),
        IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80 => Some("private"),
        _ => None,
    }
}

/// Every loopback, unspecified or private address in a table's records (`addrs` and `ip`). No
/// LAN of this network holds two nodes, so no private address can have been confirmed.
pub(crate) fn bad_addresses(table: &Map<String, Value>) -> Vec<String> {
    let mut bad = Vec::new();
    for (key, record) in table {
        for addr in addrs_of(record) {
            let Ok(ma) = addr.parse::<Multiaddr>() else {
                bad.push(format!("{key}: {addr} (not a multiaddr)"));
                continue;
            };
            for p in ma.iter() {
                let ip = match p {
                    Protocol::Ip4(ip) => IpAddr::V4(ip),
                    Protocol::Ip6(ip) => IpAddr::V6(ip),
                    _ => continue,
                };
                if let Some(why) = unusable(ip) {
                    bad.push(format!("{key}: {addr} ({why})"));
                }
            }
        }
        let ip = record["ip"].as_str().and_then(|s| s.parse::<IpAddr>().ok());
        if let Some(why) = ip.and_then(unusable) {
            bad.push(format!("{key}: ip {} ({why})", record["ip"]));
        }
    }
    bad
}

/// The `p`th percentile (0..=100) of sorted durations, in milliseconds.
pub(crate) fn percentile(sorted: &[Duration], p: usize) -> f64 {
    let i = ((sorted.len() * p).div_ceil(100)).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

pub(crate) fn percent(n: usize, of: usize) -> f64 {
    if of == 0 {
        0.0
    } else {
        100.0 * n as f64 / of as f64
    }
}

/// The reachability fields of a status (wherever they sit), for messages: reachability,
/// external addresses, relay reservations, and counters of relays and hole punches.
pub(crate) fn reach_summary(status: &Value) -> String {
    fn walk(v: &Value, path: &str, out: &mut Vec<String>) {
        let Some(map) = v.as_object() else { return };
        for (k, x) in map {
            let wanted = ["reachability", "external_addrs", "relay", "punch", "direct"];
            if wanted.iter().any(|w| k.contains(w)) {
                out.push(format!("{path}{k}={x}"));
            } else {
                walk(x, &format!("{path}{k}."), out);
            }
        }
    }
    let mut out = Vec::new();
    walk(status, "", &mut out);
    out.join(", ")
}

/// Whether a direct flow between home `a` and home `b` carries traffic now, as router `a`'s
/// connection tracking shows it: a TCP connection ESTABLISHED, or a UDP (QUIC) flow that got
/// replies and saw packets in the last 30 s (of the 120 s a replied UDP flow is kept).
pub(crate) fn direct_flow(net: &Internet, a: usize, b: usize) -> bool {
    let (from, to) = (net.homes[a].node.ip, net.homes[b].router.ip);
    let flows = net.conntrack(&net.homes[a].router.ns);
    flows.lines().any(|l| {
        // `[ipv4 2] proto number seconds-left [tcp state] src=...`
        let f: Vec<&str> = l.split_whitespace().collect();
        let Some(p) = f.iter().position(|t| *t == "tcp" || *t == "udp") else { return false };
        let ends = l.contains(&format!("src={from} dst={to} "));
        let live = match f[p] {
            "tcp" => f.get(p + 3) == Some(&"ESTABLISHED"),
            _ => l.contains("[ASSURED]") && f.get(p + 2).and_then(|t| t.parse::<u32>().ok()) >= Some(90),
        };
        ends && live
    })
}
