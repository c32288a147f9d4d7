//! The HTTP edge (`--metrics`): Prometheus metrics that parse and move with traffic, the JSON the
//! status page polls, and the page itself.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{eventually, http_get, listen_addr, start_node_with, Conn};
use serde_json::{json, Value};
use udht::web::{self, WebError};

const WAIT: Duration = Duration::from_secs(10);

/// Every sample of a scrape, parsed as Prometheus parses it: `name{labels}` -> value.
async fn scrape(addr: std::net::SocketAddr) -> HashMap<String, f64> {
    let (status, body) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).unwrap_or_else(|e| panic!("unparsable: {e}\n{body}"));
    assert!(!scrape.samples.is_empty(), "no samples in {body}");
    let mut out = HashMap::new();
    for s in scrape.samples {
        let mut labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.sort();
        let value = match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => v,
            prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            prometheus_parse::Value::Summary(_) => continue,
        };
        out.insert(format!("{}{{{}}}", s.metric, labels.join(",")), value);
    }
    out
}

fn add(key: &str, name: &str) -> Vec<u8> {
    json!({"message_type": 3, "data": {"peer_id": key, "name": name, "ip": "198.18.0.9", "port": "1"}})
        .to_string()
        .into_bytes()
}

#[tokio::test]
async fn metrics_parse_and_their_counters_move_with_traffic() {
    let (node, _dir) = start_node_with(|c| c.metrics_addr = Some("127.0.0.1:0".parse().unwrap())).await;
    let addr = node.metrics_addr.expect("a metrics address");
    let before = scrape(addr).await;
    let local = "udht_writes_total{origin=local}";
    assert_eq!(before.get(local), Some(&0.0), "{before:?}");
    assert_eq!(before.get("udht_table_records{}"), Some(&1.0), "the own record: {before:?}");

    let mut conn = Conn::connect(node.manager_addr).await;
    for i in 0..5 {
        let reply = conn.request_json(&add(&format!("Qm{i}"), &format!("n{i}"))).await;
        assert_eq!(reply["result"], "completed", "{reply}");
    }
    let get = json!({"message_type": 7, "data": {"peer_id": "Qm3"}}).to_string();
    assert_eq!(conn.request_json(get.as_bytes()).await["result"], "completed");

    let after = eventually("the writes in the metrics", WAIT, async || {
        let m = scrape(addr).await;
        (m.get(local) == Some(&5.0)).then_some(m)
    })
    .await;
    assert_eq!(after.get("udht_table_records{}"), Some(&6.0));
    let adds = "udht_manager_request_duration_seconds_count{kind=add,result=completed}";
    let gets = "udht_manager_request_duration_seconds_count{kind=get,result=completed}";
    assert_eq!(after.get(adds), Some(&5.0), "{after:?}");
    assert_eq!(after.get(gets), Some(&1.0), "{after:?}");
    // Five durable commits at least (writes on one connection, one at a time), holding the five
    // records and the own record (which may share a group commit with the first add).
    let commits = after.get("udht_store_commit_duration_seconds_count{}").copied().unwrap_or(0.0);
    let entries = after.get("udht_store_commit_entries_sum{}").copied().unwrap_or(0.0);
    assert!(commits >= 5.0 && entries >= 6.0, "{after:?}");
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn libp2p_metrics_come_with_the_nodes_own() {
    let metrics = |c: &mut udht::NodeConfig| {
        c.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
        c.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
    };
    let (a, _da) = start_node_with(metrics).await;
    let seed = listen_addr(&a).await;
    let (b, _db) = start_node_with(move |c| {
        metrics(c);
        c.bootstrap = vec![seed];
    })
    .await;
    let addr = a.metrics_addr.unwrap();
    let m = eventually("libp2p's connection and identify metrics", WAIT, async || {
        let m = scrape(addr).await;
        let has = |prefix: &str| m.iter().any(|(k, v)| k.starts_with(prefix) && *v > 0.0);
        (has("libp2p_swarm_connections_established") && has("libp2p_identify_")).then_some(m)
    })
    .await;
    assert_eq!(m.get("udht_connected_peers{}"), Some(&1.0), "{m:?}");
    let alive = eventually("the peer alive in the liveness view", WAIT, async || {
        let m = scrape(addr).await;
        m.get("udht_members{state=alive}").copied().filter(|n| *n >= 1.0)
    })
    .await;
    assert!(alive >= 1.0);
    b.shutdown().await.unwrap();
    a.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_page_and_its_json_show_the_node_and_a_searchable_paged_table() {
    let (node, _dir) = start_node_with(|c| c.metrics_addr = Some("127.0.0.1:0".parse().unwrap())).await;
    let addr = node.metrics_addr.unwrap();
    let mut conn = Conn::connect(node.manager_addr).await;
    for i in 0..120 {
        let reply = conn.request_json(&add(&format!("Qm{i:03}"), &format!("peer-{i}"))).await;
        assert_eq!(reply["result"], "completed", "{reply}");
    }

    let (status, page) = http_get(addr, "/").await;
    assert_eq!(status, 200);
    assert!(page.contains("<title>udht node</title>") && page.contains("/api/table"), "{page}");
    assert!(!page.contains("http://") && !page.contains("https://"), "the page loads nothing external");

    let (status, body) = http_get(addr, "/api/status").await;
    assert_eq!(status, 200);
    let s: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(s["peer_id"], node.peer_id.as_str());
    assert_eq!(s["table_size"], 121);

    // The own record's key (12D3Koo...) sorts before the Qm keys.
    let (_, body) = http_get(addr, "/api/table?offset=101&limit=50").await;
    let t: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(t["total"], 121);
    let keys: Vec<&str> =
        t["records"].as_array().unwrap().iter().map(|r| r["key"].as_str().unwrap()).collect();
    assert_eq!(keys.len(), 20, "the last page: {keys:?}");
    assert_eq!(keys[0], "Qm100", "sorted by key");

    let (_, body) = http_get(addr, "/api/table?q=PEER-11").await;
    let t: Value = serde_json::from_str(&body).unwrap();
    let names: Vec<&str> =
        t["records"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "peer-11", "peer-110", "peer-111", "peer-112", "peer-113", "peer-114", "peer-115", "peer-116",
            "peer-117", "peer-118", "peer-119"
        ]
    );

    let (status, body) = http_get(addr, "/api/table?limit=many").await;
    assert_eq!(status, 400);
    assert!(body.contains("limit") && body.contains("many"), "{body}");
    assert_eq!(http_get(addr, "/nope").await.0, 404);
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_http_server_stays_on_loopback_unless_told_otherwise() {
    let refused = web::bind("0.0.0.0:0".parse().unwrap(), false).await.unwrap_err();
    assert!(matches!(refused, WebError::NotLoopback(_)));
    assert!(refused.to_string().contains("--metrics-public"), "{refused}");
    assert!(web::bind("0.0.0.0:0".parse().unwrap(), true).await.is_ok());
}
