//! The JSON the status page polls: the node's status, and one page of the table.

use std::sync::Arc;

use serde::Serialize;

use crate::core::{PeerRecord, TableStats};
use crate::net::NetStats;
use crate::node::{NodeHandle, SyncStats};

/// Records per page when the page does not say.
const DEFAULT_LIMIT: usize = 50;
/// Most records in one answer: a page of a 100k-record table stays a small response.
pub const MAX_LIMIT: usize = 1000;
/// Longest search string: a search is a substring scan over every record.
const MAX_QUERY_BYTES: usize = 256;

/// `/api/status`: what `message_type 9` shows, for the page.
#[derive(Serialize)]
struct StatusJson<'a> {
    peer_id: &'a str,
    listen_addrs: &'a [String],
    connected_peers: &'a [String],
    reachability: &'static str,
    external_addrs: &'a [String],
    relay_reservations: &'a [String],
    table_size: usize,
    tombstones: usize,
    digest: &'a str,
    table_stats: &'a TableStats,
    net_stats: &'a NetStats,
    sync_stats: &'a SyncStats,
}

pub fn status(node: &NodeHandle) -> Vec<u8> {
    let s = node.status();
    let view = StatusJson {
        peer_id: &s.peer_id,
        listen_addrs: &s.listen_addrs,
        connected_peers: &s.connected_peers,
        reachability: s.reach.reachability.as_str(),
        external_addrs: &s.reach.external_addrs,
        relay_reservations: &s.reach.relay_reservations,
        table_size: s.table_size,
        tombstones: s.tombstones,
        digest: &s.digest,
        table_stats: &s.table_stats,
        net_stats: &s.net_stats,
        sync_stats: &s.sync_stats,
    };
    serde_json::to_vec(&view).expect("serializing to a Vec cannot fail")
}

/// `/api/table?offset=&limit=&q=`: records sorted by key, filtered by a case-insensitive
/// substring of the key, name, ip or peer id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableQuery {
    pub offset: usize,
    pub limit: usize,
    pub q: String,
}

/// A query string the table endpoint cannot use.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("`{name}` must be a whole number, got {value:?}")]
    NotANumber { name: &'static str, value: String },
    #[error("`q` is longer than {MAX_QUERY_BYTES} bytes")]
    QueryTooLong,
}

impl TableQuery {
    pub fn parse(query: &str) -> Result<TableQuery, QueryError> {
        let mut out = TableQuery { offset: 0, limit: DEFAULT_LIMIT, q: String::new() };
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            let number = |name: &'static str| {
                value.parse::<usize>().map_err(|_| QueryError::NotANumber { name, value: value.to_string() })
            };
            match name.as_ref() {
                "offset" => out.offset = number("offset")?,
                "limit" => out.limit = number("limit")?.clamp(1, MAX_LIMIT),
                "q" if value.len() > MAX_QUERY_BYTES => return Err(QueryError::QueryTooLong),
                "q" => out.q = value.to_lowercase(),
                _ => {} // Unknown parameters are ignored, as browsers and proxies add their own.
            }
        }
        Ok(out)
    }
}

#[derive(Serialize)]
struct TablePage<'a> {
    /// Records matching the search (all of them when there is none).
    total: usize,
    offset: usize,
    limit: usize,
    records: Vec<Row<'a>>,
}

#[derive(Serialize)]
struct Row<'a> {
    key: &'a str,
    #[serde(flatten)]
    record: &'a PeerRecord,
}

fn matches(q: &str, key: &str, r: &PeerRecord) -> bool {
    let has = |s: &str| s.to_lowercase().contains(q);
    q.is_empty() || has(key) || has(&r.name) || has(&r.ip) || r.peer_id.as_deref().is_some_and(has)
}

pub fn table(node: &NodeHandle, query: &TableQuery) -> Vec<u8> {
    let mut records: Vec<(Arc<str>, Arc<PeerRecord>)> =
        node.snapshot().into_iter().filter(|(k, r)| matches(&query.q, k, r)).collect();
    let total = records.len();
    // Sorted for stable pages; only the keys are compared, the records are shared.
    records.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let page =
        records.iter().skip(query.offset).take(query.limit).map(|(k, r)| Row { key: k, record: r }).collect();
    let page = TablePage { total, offset: query.offset, limit: query.limit, records: page };
    serde_json::to_vec(&page).expect("serializing to a Vec cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_parse_with_defaults_limits_and_clear_errors() {
        assert_eq!(
            TableQuery::parse("").unwrap(),
            TableQuery { offset: 0, limit: DEFAULT_LIMIT, q: "".into() }
        );
        let q = TableQuery::parse("offset=20&limit=5000&q=Alice%20B&x=1").unwrap();
        assert_eq!(q, TableQuery { offset: 20, limit: MAX_LIMIT, q: "alice b".into() });
        let err = TableQuery::parse("offset=-1").unwrap_err().to_string();
        assert!(err.contains("offset") && err.contains("-1"), "{err}");
        assert!(TableQuery::parse(&format!("q={}", "x".repeat(300))).is_err());
    }
}
