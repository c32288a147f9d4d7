//! The manager socket, byte for byte, over real TCP against an in-process node: every message of
//! both field revisions, framing, bad input, connection limits, and concurrent clients
//! (spec: manager-protocol.md).

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{assert_timestamp, python_unpickle, request_once, start_node, start_node_with, Closed, Conn};
use serde_json::{json, Value};
use tokio::time::Instant;

// ---------------------------------------------------------------------------------------------
// Exact replies the spec's transcript gives.

const ADD_OK: &str = "{\"action\": \"peer add\", \"result\": \"completed\", \"data\": true}\n";
const ADD_EXISTS: &str = "{\"action\": \"peer add\", \"result\": \"error\", \"data\": false}\n";
const GET_MISSING: &str = "{\"action\": \"peer get\", \"result\": \"error\", \"data\": null}\n";
const UPDATE_OK: &str = "{\"action\": \"peer update\", \"result\": \"completed\", \"data\": true}\n";
const UPDATE_MISSING: &str = "{\"action\": \"peer update\", \"result\": \"error\", \"data\": false}\n";
const REMOVE_OK: &str = "{\"action\": \"peer remove\", \"result\": \"completed\", \"data\": null}\n";
const REMOVE_MISSING: &str = "{\"action\": \"peer remove\", \"result\": \"error\", \"data\": null}\n";

// Requests of the first revision, exactly as in the transcript (compact, no trailing newline).
const FELIPE_ADD: &[u8] =
    br#"{"message_type":3,"data":{"peer_ip":"101.3.4.2","peer_port":"8001","peer_name":"Felipe Nunes"}}"#;
const FELIPE_GET: &[u8] = br#"{"message_type":7,"data":{"peer_ip":"101.3.4.2"}}"#;
const FELIPE_UPDATE: &[u8] =
    br#"{"message_type":6,"data":{"peer_ip":"101.3.4.2","peer_port":"8002","peer_name":"F"}}"#;
const FELIPE_REMOVE: &[u8] = br#"{"message_type":4,"data":{"peer_ip":"101.3.4.2"}}"#;
const MISSING_GET: &[u8] = br#"{"message_type":7,"data":{"peer_ip":"9.9.9.9"}}"#;
const MISSING_UPDATE: &[u8] =
    br#"{"message_type":6,"data":{"peer_ip":"9.9.9.9","peer_port":"8002","peer_name":"F"}}"#;
const MISSING_REMOVE: &[u8] = br#"{"message_type":4,"data":{"peer_ip":"9.9.9.9"}}"#;
const CLOSE: &[u8] = br#"{"message_type":1}"#;
const TABLE_PICKLE: &[u8] = br#"{"message_type":2}"#;
const TABLE_JSON: &[u8] = br#"{"message_type": 2, "format": "json"}"#;
const PEER_ID: &[u8] = br#"{"message_type":8}"#;
const STATUS: &[u8] = br#"{"message_type":9}"#;

// The second revision, as Python's json.dumps writes it (", " and ": " separators).
const REV2_ID: &str = "12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo";
const REV2_ADD: &[u8] = br#"{"message_type": 3, "data": {"peer_id": "12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo", "name": "Ana Lima", "ip": "10.20.30.40", "ports": {"userSync": 3003}}}"#;
const REV2_GET: &[u8] =
    br#"{"message_type": 7, "data": {"peer_id": "12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo"}}"#;
const REV2_UPDATE: &[u8] = br#"{"message_type": 6, "data": {"peer_id": "12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo", "name": "Ana L.", "ip": "10.20.30.41", "ports": {"userSync": 3004, "blockchain": 3005}}}"#;
const REV2_REMOVE: &[u8] =
    br#"{"message_type": 4, "data": {"peer_id": "12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo"}}"#;
const REV2_MISSING_GET: &[u8] = br#"{"message_type": 7, "data": {"peer_id": "12D3KooWMissing"}}"#;
const REV2_MISSING_UPDATE: &[u8] =
    br#"{"message_type": 6, "data": {"peer_id": "12D3KooWMissing", "name": "X", "ip": "1.1.1.1", "ports": {"userSync": 1}}}"#;
const REV2_MISSING_REMOVE: &[u8] = br#"{"message_type": 4, "data": {"peer_id": "12D3KooWMissing"}}"#;

/// A first-revision add.
fn add_req(ip: &str, port: &str, name: &str) -> Vec<u8> {
    json!({"message_type": 3, "data": {"peer_ip": ip, "peer_port": port, "peer_name": name}})
        .to_string()
        .into_bytes()
}

/// A first-revision get.
fn get_req(ip: &str) -> Vec<u8> {
    json!({"message_type": 7, "data": {"peer_ip": ip}}).to_string().into_bytes()
}

/// The `data` of a reply line, after checking it is a completed reply of `action`.
fn completed_data(reply: &Value, action: &str) -> Value {
    assert_eq!(reply["action"], action, "reply: {reply}");
    assert_eq!(reply["result"], "completed", "reply: {reply}");
    reply["data"].clone()
}

/// The exact first-revision `peer get` reply, for the timestamps the record actually has.
fn expected_rev1_get(name: &str, ip: &str, port: &str, record: &Value) -> String {
    let ts =
        |f: &str| record[f].as_str().unwrap_or_else(|| panic!("`{f}` is not a string: {record}")).to_owned();
    format!(
        "{{\"action\": \"peer get\", \"result\": \"completed\", \"data\": {{\"name\": \"{name}\", \"ip\": \"{ip}\", \
         \"port\": \"{port}\", \"createdAt\": \"{}\", \"updatedAt\": \"{}\", \"lastConnectionOn\": \"{}\"}}}}\n",
        ts("createdAt"),
        ts("updatedAt"),
        ts("lastConnectionOn")
    )
}

fn assert_record_timestamps(record: &Value) {
    for f in ["createdAt", "updatedAt", "lastConnectionOn"] {
        let s = record[f].as_str().unwrap_or_else(|| panic!("`{f}` missing or not a string: {record}"));
        assert_timestamp(s);
    }
    assert!(
        record["createdAt"].as_str() <= record["updatedAt"].as_str(),
        "createdAt after updatedAt: {record}"
    );
}

fn keys_of(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap_or_else(|| panic!("not an object: {v}")).keys().cloned().collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Sends a bad request and checks the reply: one line, `"result": "error"`, the expected `data`,
/// the action (when given), and a non-empty `"error"` string; returns that string.
async fn assert_rejected(conn: &mut Conn, request: &[u8], action: Option<&str>, data: Value) -> String {
    let line = conn.request_string(request).await;
    let reply: Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("reply {line:?} is not JSON: {e}"));
    let shown_action = reply["action"].as_str().unwrap_or_else(|| panic!("no action in {line:?}"));
    if let Some(action) = action {
        assert_eq!(shown_action, action, "request {:?}", String::from_utf8_lossy(request));
    }
    let prefix =
        format!("{{\"action\": \"{shown_action}\", \"result\": \"error\", \"data\": {data}, \"error\": \"");
    assert!(
        line.starts_with(&prefix) && line.ends_with("\"}\n"),
        "request {:?}: reply {line:?} is not laid out as {prefix}...\"}}\\n",
        String::from_utf8_lossy(request)
    );
    let error = reply["error"].as_str().unwrap().to_owned();
    assert!(!error.trim().is_empty(), "empty error string in {line:?}");
    error
}

/// The node still answers: on `conn` (if given) and on a fresh connection.
async fn assert_still_serving(conn: Option<&mut Conn>, node: &udht::RunningNode) {
    if let Some(conn) = conn {
        let reply = conn.request_json(PEER_ID).await;
        assert_eq!(completed_data(&reply, "peer id")["peer_id"], node.peer_id.as_str());
    }
    let reply = request_once(node.manager_addr, PEER_ID).await;
    assert_eq!(completed_data(&reply, "peer id")["peer_id"], node.peer_id.as_str());
}

fn lower(s: &str) -> String {
    s.to_lowercase()
}

// ---------------------------------------------------------------------------------------------
// Messages, first revision (peer_ip / peer_port / peer_name).

#[tokio::test]
async fn rev1_add_replies_completed_true_and_a_second_add_of_the_same_ip_replies_error_false() {
    let (node, _dir) = start_node().await;
    // One fresh connection per request, as in the transcript.
    assert_eq!(Conn::connect(node.manager_addr).await.request_string(FELIPE_ADD).await, ADD_OK);
    assert_eq!(Conn::connect(node.manager_addr).await.request_string(FELIPE_ADD).await, ADD_EXISTS);
    // And on one connection.
    let mut c = Conn::connect(node.manager_addr).await;
    assert_eq!(c.request_string(&add_req("101.3.4.3", "8001", "Other")).await, ADD_OK);
    assert_eq!(c.request_string(&add_req("101.3.4.3", "9999", "Changed")).await, ADD_EXISTS);
    // The refused duplicate changed nothing.
    let record = completed_data(&c.request_json(&get_req("101.3.4.3")).await, "peer get");
    assert_eq!((record["name"].as_str(), record["port"].as_str()), (Some("Other"), Some("8001")));
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn rev1_get_returns_the_record_laid_out_exactly_as_the_original() {
    let (node, _dir) = start_node().await;
    let mut c = Conn::connect(node.manager_addr).await;
    assert_eq!(c.request_string(FELIPE_ADD).await, ADD_OK);
    let line = c.request_string(FELIPE_GET).await;
    let record = completed_data(&serde_json::from_str(&line).unwrap(), "peer get");
    assert_eq!(keys_of(&record), set(&["name", "ip", "port", "createdAt", "updatedAt", "lastConnectionOn"]));
    assert_record_timestamps(&record);
    assert_eq!(line, expected_rev1_get("Felipe Nunes", "101.3.4.2", "8001", &record));
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn get_of_a_missing_key_replies_error_null_in_both_revisions() {
    let (node, _dir) = start_node().await;
    assert_eq!(Conn::connect(node.manager_addr).await.request_string(MISSING_GET).await, GET_MISSING);
    assert_eq!(Conn::connect(node.manager_addr).await.request_string(REV2_MISSING_GET).await, GET_MISSING);
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn rev1_update_changes_the_fields_keeps_created_at_and_moves_updated_at() {
    let (node, _dir) = start_node().await;
    let mut c = Conn::connect(node.manager_addr).await;
    assert_eq!(c.request_string(FELIPE_ADD).await, ADD_OK);
    let before = completed_data(&c.request_json(FELIPE_GET).await, "peer get");
    assert_eq!(c.request_string(FELIPE_UPDATE).await, UPDATE_OK);
    let line = c.request_string(FELIPE_GET).await;
    let after = completed_data(&serde_json::from_str(&line).unwrap(), "peer get");
    assert_eq!(line, expected_rev1_get("F", "101.3.4.2", "8002", &after));
    assert_record_timestamps(&after);
    assert_eq!(after["createdAt"], before["createdAt"], "an update must keep createdAt");
    assert!(
        after["updatedAt"].as_str() > before["updatedAt"].as_str(),
        "updatedAt did not move forward: before {before}, after {after}"
    );
    assert!(after["lastConnectionOn"].as_str() >= before["lastConnectionOn"].as_str());
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn update_of_a_missing_key_replies_error_false_and_creates_nothing() {
    let (node, _dir) = start_node().await;
    let mut c = Conn::connect(node.manager_addr).await;
    assert_eq!(c.request_string(MISSING_UPDATE).await, UPDATE_MISSING);
    assert_eq!(c.request_string(REV2_MISSING_UPDATE).await, UPDATE_MISSING);
    assert_eq!(c.request_string(MISSING_GET).await, GET_MISSING);
    assert_eq!(c.request_string(REV2_MISSING_GET).await, GET_MISSING);
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn remove_replies_completed_null_then_a_second_remove_replies_error_null() {
    let (node, _dir) = start_node().await;
    let mut c = Conn::connect(node.manager_addr).await;
    assert_eq!(c.request_string(FELIPE_ADD).await, ADD_OK);
    assert_eq!(c.request_string(FELIPE_REMOVE).await, REMOVE_OK);
    assert_eq!(Conn::connect(node.manager_addr).await.request_string(FELIPE_REMOVE).await, REMOVE_MISSING);
    // Gone for every other message too.
    assert_eq!(c.request_string(FELIPE_GET).await, GET_MISSING);
    assert_eq!(c.request_string(FELIPE_UPDATE).await, UPDATE_MISSING);
    assert_eq!(c.request_string(MISSING_REMOVE).await, REMOVE_MISSING);
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn add_after_remove_succeeds_with_a_fresh_record() {
    let (node, _dir) = start_node().await;
    let mut c = Conn::connect(node.manager_addr).await;
    assert_eq!(c.request_string(FELIPE_ADD).await, ADD_OK);
    let first = completed_data(&c.request_json(FELIPE_GET).await, "peer get");
    assert_eq!(c.request_string(FELIPE_REMOVE).await, REMOVE_OK);
    assert_eq!(c.request_string(&add_req("101.3.4.2", "7000", "Back Again")).await, ADD_OK);
    let line = c.request_string(FELIPE_GET).await;
    let again = completed_data(&serde_json::from_str(&line).unwrap(), "peer get");
    assert_eq!(line, expected_rev1_get("Back Again", "101.3.4.2", "7000", &again));
    assert!(again["createdAt"].as_str() > first["createdAt"].as_str(), "the re-added record is a new one");
    // And it is a live record again: a duplicate add is refused.
    assert_eq!(c.request_string(FELIPE_ADD).await, ADD_EXISTS);
    node.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Messages, second revision (peer_id / name / ip / ports).

#[tokio::test]
async fn rev2_add_then_get_returns_peer_id_ports_and_the_original_fields() {
    let (node, _dir) = start_node().await;
    let mut c = Conn::connect(node.manager_addr).await;
    assert_eq!(c.request_string(REV2_ADD).await, ADD_OK);
    assert_eq!(c.request_string(REV2_ADD).await, ADD_EXISTS);
    let record = completed_data(&c.request_json(REV2_GET).await, "peer get");
    let keys = keys_of(&record);
    for k in ["peer_id", "name", "ip", "port", "ports", "createdAt", "updatedAt", "lastConnectionOn"] {
        assert!(keys.contains(k), "record lacks `{k}`: {record}");
    }
    assert_eq!(record["peer_id"], REV2_ID);
    assert_eq!(record["name"], "Ana Lima");
    assert_eq!(record["ip"], "10.20.30.40");
    assert!(record["port"].is_string(), "`port` must be a string: {record}");
    assert_eq!(record["ports"], json!({"userSync": 3003}));
    assert_record_timestamps(&record);
    // The record is keyed by peer_id, not by its ip.
    assert_eq!(c.request_string(&get_req("10.20.30.40")).await, GET_MISSING);
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn rev2_update_changes_name_ip_and_ports_and_keeps_created_at() {
    let (node, _dir) = start_node().await;
    let mut c = Conn::connect(node.manager_addr).await;
    assert_eq!(c.request_string(REV2_ADD).await, ADD_OK);
    let before = completed_data(&c.request_json(REV2_GET).await, "peer get");
    assert_eq!(c.request_string(REV2_UPDATE).await, UPDATE_OK);
    let after = completed_data(&c.request_json(REV2_GET).await, "peer get");
    assert_eq!(after["peer_id"], REV2_ID);
    assert_eq!(after["name"], "Ana L.");
    assert_eq!(after["ip"], "10.20.30.41");
    assert_eq!(after["ports"], json!({"userSync": 3004, "blockchain": 3005}));
    assert_record_timestamps(&after);
    assert_eq!(after["createdAt"], before["createdAt"]);
    assert!(after["updatedAt"].as_str() > before["updatedAt"].as_str(), "before {before}, after {after}");
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn rev2_remove_then_remove_again_then_add_again() {
    let (node, _dir) = start_node().await;
    let mut c = Conn::connect(node.manager_addr).await;
    assert_eq!(c.request_string(REV2_ADD).await, ADD_OK);
    assert_eq!(c.request_string(REV2_REMOVE).await, REMOVE_OK);
    assert_eq!(c.request_string(REV2_REMOVE).await, REMOVE_MISSING);
    assert_eq!(c.request_string(REV2_MISSING_REMOVE).await, REMOVE_MISSING);
    assert_eq!(c.request_string(REV2_GET).await, GET_MISSING);
    assert_eq!(c.request_string(REV2_UPDATE).await, UPDATE_MISSING);
    assert_eq!(c.request_string(REV2_ADD).await, ADD_OK);
    let record = completed_data(&c.request_json(REV2_GET).await, "peer get");
    assert_eq!((record["name"].as_str(), &record["ports"]), (Some("Ana Lima"), &json!({"userSync": 3003})));
    node.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// The whole table (type 2), the node's own record (8) and status (9), close (1).

/// Fills the table with a first-revision record that was updated (the original then pickled a
/// datetime), a second-revision record, and a removed one; returns the JSON table afterwards.
async fn populate_table(c: &mut Conn) -> Value {
    assert_eq!(c.request_string(FELIPE_ADD).await, ADD_OK);
    assert_eq!(c.request_string(FELIPE_UPDATE).await, UPDATE_OK);
    assert_eq!(c.request_string(REV2_ADD).await, ADD_OK);
    assert_eq!(c.request_string(&add_req("10.0.0.99", "1", "Gone")).await, ADD_OK);
    assert_eq!(
        c.request_string(
            &json!({"message_type": 4, "data": {"peer_ip": "10.0.0.99"}}).to_string().into_bytes()
        )
        .await,
        REMOVE_OK
    );
    let table = c.request_json(TABLE_JSON).await;
    completed_data(&table, "hashtable get")
}

#[tokio::test]
async fn table_as_json_lists_every_live_record_under_hashtable_get() {
    let (node, _dir) = start_node().await;
    let mut c = Conn::connect(node.manager_addr).await;
    let before = completed_data(&c.request_json(TABLE_JSON).await, "hashtable get");
    assert_eq!(keys_of(&before), set(&[&node.peer_id]), "a fresh table holds only the node's own record");
    let table = populate_table(&mut c).await;
    assert_eq!(keys_of(&table), set(&["101.3.4.2", REV2_ID, &node.peer_id]), "table: {table}");
    let felipe = &table["101.3.4.2"];
    assert_eq!(
        (felipe["name"].as_str(), felipe["ip"].as_str(), felipe["port"].as_str()),
        (Some("F"), Some("101.3.4.2"), Some("8002"))
    );
    assert_eq!(table[REV2_ID]["ports"], json!({"userSync": 3003}));
    for (_, record) in table.as_object().unwrap() {
        assert_record_timestamps(record);
    }
    // The same records as a get returns.
    assert_eq!(&completed_data(&c.request_json(FELIPE_GET).await, "peer get"), felipe);
    // Laid out as the original's replies, one line.
    c.send(TABLE_JSON).await;
    let line = c.read_line_string().await;
    assert!(
        line.starts_with("{\"action\": \"hashtable get\", \"result\": \"completed\", \"data\": {"),
        "{line:?}"
    );
    assert_eq!(line.matches('\n').count(), 1);
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn table_as_pickle_loads_in_python_as_a_dict_of_plain_strings_lists_and_dicts() {
    let (node, _dir) = start_node().await;
    let mut c = Conn::connect(node.manager_addr).await;
    let json_table = populate_table(&mut c).await;
    c.send(TABLE_PICKLE).await;
    let pickle = c.read_pickle().await;
    assert_eq!(pickle.first(), Some(&0x80), "a pickle starts with the PROTO opcode");
    let decoded = python_unpickle(&pickle);
    assert_eq!(decoded["top"], "dict");
    // The same content as the JSON table: every key, every field, every timestamp string.
    assert_eq!(decoded["value"], json_table);
    // Types: top-level record values are str, or list/dict (of plain values) for addrs/ports;
    // never a datetime (the original pickled `updatedAt` as one after an update).
    for (key, record) in decoded["types"].as_object().unwrap() {
        for (field, kind) in record.as_object().unwrap_or_else(|| panic!("record {key} is not a dict")) {
            match (field.as_str(), kind) {
                ("ports", Value::Object(ports)) => {
                    assert!(ports.values().all(|t| t == "int"), "ports of {key}: {kind}")
                }
                ("addrs", Value::Array(addrs)) => {
                    assert!(addrs.iter().all(|t| t == "str"), "addrs of {key}: {kind}")
                }
                (_, t) => assert_eq!(t, "str", "field `{field}` of {key} is a Python {t}"),
            }
        }
    }
    assert_eq!(decoded["types"]["101.3.4.2"]["updatedAt"], "str");
    // The connection stays usable after a pickle reply.
    assert_eq!(c.request_string(FELIPE_ADD).await, ADD_EXISTS);
    node.shutdown().await.unwrap();
}

/// A pickle value as JSON, refusing anything but dicts with str keys, lists, str and int.
fn plain_pickle_to_json(v: &serde_pickle::Value) -> Value {
    use serde_pickle::{HashableValue, Value as P};
    match v {
        P::String(s) => Value::String(s.clone()),
        P::I64(n) => json!(n),
        P::List(items) => Value::Array(items.iter().map(plain_pickle_to_json).collect()),
        P::Dict(m) => Value::Object(
            m.iter()
                .map(|(k, v)| match k {
                    HashableValue::String(k) => (k.clone(), plain_pickle_to_json(v)),
                    other => panic!("dict key {other:?} is not a str"),
                })
                .collect(),
        ),
        other => panic!("pickle holds a {other:?}, expected only str/int/list/dict"),
    }
}

#[tokio::test]
async fn table_as_pickle_decodes_with_serde_pickle_to_the_json_table() {
    let (node, _dir) = start_node().await;
    let mut c = Conn::connect(node.manager_addr).await;
    let json_table = populate_table(&mut c).await;
    c.send(TABLE_PICKLE).await;
    let pickle = c.read_pickle().await;
    let value = serde_pickle::value_from_slice(&pickle, serde_pickle::DeOptions::new()).unwrap();
    assert!(matches!(value, serde_pickle::Value::Dict(_)), "top-level is {value:?}");
    let as_json = plain_pickle_to_json(&value);
    assert_eq!(as_json, json_table);
    for record in as_json.as_object().unwrap().values() {
        for f in ["name", "ip", "port", "createdAt", "updatedAt", "lastConnectionOn"] {
            assert!(record[f].is_string(), "`{f}` is not a str: {record}");
        }
    }
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_fresh_node_pickles_a_table_holding_only_its_own_record() {
    let (node, _dir) = start_node().await;
    let mut c = Conn::connect(node.manager_addr).await;
    c.send(TABLE_PICKLE).await;
    let decoded = python_unpickle(&c.read_pickle().await);
    assert_eq!(keys_of(&decoded["value"]), set(&[&node.peer_id]));
    assert_eq!(decoded["value"][&node.peer_id]["peer_id"], node.peer_id.as_str());
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn peer_id_request_returns_this_nodes_own_record() {
    let (node, _dir) = start_node_with(|cfg| cfg.name = Some("manager-test-node".into())).await;
    let mut c = Conn::connect(node.manager_addr).await;
    let line = c.request_string(PEER_ID).await;
    assert!(line.starts_with("{\"action\": \"peer id\", \"result\": \"completed\", \"data\": {"), "{line:?}");
    let record = completed_data(&serde_json::from_str(&line).unwrap(), "peer id");
    assert_eq!(record["peer_id"], node.peer_id.as_str());
    assert_eq!(record["name"], "manager-test-node");
    for f in ["ip", "port"] {
        assert!(record[f].is_string(), "`{f}` is not a string: {record}");
    }
    assert_record_timestamps(&record);
    // The same record is in the table under the peer id, and a get by peer_id finds it.
    let get = json!({"message_type": 7, "data": {"peer_id": node.peer_id}}).to_string();
    assert_eq!(completed_data(&c.request_json(get.as_bytes()).await, "peer get"), record);
    node.shutdown().await.unwrap();
}

/// Spec: type 8 always returns this node's own record (its failure column is "-"), so a manager
/// client may not remove or overwrite the record keyed by the node's peer id.
#[tokio::test]
async fn the_nodes_own_record_cannot_be_removed_or_forged_through_the_manager_socket() {
    let (node, _dir) = start_node().await;
    let mut c = Conn::connect(node.manager_addr).await;
    let remove = json!({"message_type": 4, "data": {"peer_id": node.peer_id}}).to_string();
    let reply = c.request_json(remove.as_bytes()).await;
    assert_eq!(reply["result"], "error", "removing the node's own record was accepted: {reply}");
    let forge =
        json!({"message_type": 6, "data": {"peer_id": node.peer_id, "name": "impostor", "ip": "6.6.6.6"}})
            .to_string();
    let reply = c.request_json(forge.as_bytes()).await;
    assert_eq!(reply["result"], "error", "overwriting the node's own record was accepted: {reply}");
    let own = completed_data(&c.request_json(PEER_ID).await, "peer id");
    assert_eq!(own["peer_id"], node.peer_id.as_str());
    assert_ne!(own["name"], "impostor");
    node.shutdown().await.unwrap();
}

fn status_of(reply: &Value) -> Value {
    let data = completed_data(reply, "node status");
    let digest = data["digest"].as_str().unwrap_or_else(|| panic!("no digest: {data}"));
    assert_eq!(digest.len(), 32, "digest {digest:?} is not 32 hex digits");
    assert!(digest.bytes().all(|b| b.is_ascii_hexdigit()), "digest {digest:?} is not hex");
    assert!(data["listen_addrs"].is_array() && data["connected_peers"].is_array(), "{data}");
    assert!(data["table_size"].is_u64(), "{data}");
    data
}

#[tokio::test]
async fn node_status_reports_identity_size_and_a_digest_that_changes_with_every_write() {
    let (node, _dir) = start_node().await;
    let mut c = Conn::connect(node.manager_addr).await;
    let s0 = status_of(&c.request_json(STATUS).await);
    assert_eq!(s0["peer_id"], node.peer_id.as_str());
    assert_eq!(s0["table_size"], 1, "only the own record: {s0}");
    assert_eq!(s0["connected_peers"], json!([]));
    // A read changes nothing.
    assert_eq!(c.request_string(MISSING_GET).await, GET_MISSING);
    assert_eq!(status_of(&c.request_json(STATUS).await)["digest"], s0["digest"]);

    assert_eq!(c.request_string(FELIPE_ADD).await, ADD_OK);
    let s1 = status_of(&c.request_json(STATUS).await);
    assert_eq!(s1["table_size"], 2);
    assert_ne!(s1["digest"], s0["digest"], "digest unchanged by an add");

    assert_eq!(c.request_string(FELIPE_UPDATE).await, UPDATE_OK);
    let s2 = status_of(&c.request_json(STATUS).await);
    assert_eq!(s2["table_size"], 2);
    assert_ne!(s2["digest"], s1["digest"], "digest unchanged by an update");

    assert_eq!(c.request_string(FELIPE_REMOVE).await, REMOVE_OK);
    let s3 = status_of(&c.request_json(STATUS).await);
    assert_eq!(s3["table_size"], 1, "a tombstone is not a live record");
    assert_ne!(s3["digest"], s2["digest"], "digest unchanged by a remove");
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn close_request_gets_no_reply_and_the_server_closes_the_connection() {
    let (node, _dir) = start_node().await;
    let mut c = Conn::connect(node.manager_addr).await;
    assert_eq!(c.request_string(MISSING_GET).await, GET_MISSING);
    c.send(CLOSE).await;
    c.expect_eof().await;
    // Also as the very first request, in Python's spacing.
    let mut c = Conn::connect(node.manager_addr).await;
    c.send(br#"{"message_type": 1}"#).await;
    c.expect_eof().await;
    assert_still_serving(None, &node).await;
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn requests_before_a_close_in_the_same_write_are_answered_first() {
    let (node, _dir) = start_node().await;
    let mut c = Conn::connect(node.manager_addr).await;
    let mut batch = FELIPE_ADD.to_vec();
    batch.extend_from_slice(FELIPE_GET);
    batch.extend_from_slice(CLOSE);
    c.send(&batch).await;
    assert_eq!(c.read_line_string().await, ADD_OK);
    completed_data(&c.read_json().await, "peer get");
    c.expect_eof().await;
    node.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Framing.

#[tokio::test]
async fn a_request_without_a_trailing_newline_is_answered() {
    let (node, _dir) = start_node().await;
    let mut c = Conn::connect(node.manager_addr).await;
    assert_eq!(FELIPE_ADD.last(), Some(&b'}'));
    assert_eq!(c.request_string(FELIPE_ADD).await, ADD_OK);
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn requests_ending_in_a_newline_or_crlf_are_answered_once_each() {
    let (node, _dir) = start_node().await;
    let mut c = Conn::connect(node.manager_addr).await;
    assert_eq!(c.request_string(&[FELIPE_ADD, b"\n"].concat()).await, ADD_OK);
    assert_eq!(c.request_string(&[MISSING_GET, b"\r\n"].concat()).await, GET_MISSING);
    // Blank lines between requests are not requests.
    assert_eq!(
        c.request_string(&[b"\n\n  \n".as_slice(), MISSING_REMOVE, b"\n\n"].concat()).await,
        REMOVE_MISSING
    );
    c.expect_silence(Duration::from_millis(50)).await;
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn several_requests_in_one_write_get_one_reply_each_in_order() {
    let (node, _dir) = start_node().await;
    let mut c = Conn::connect(node.manager_addr).await;
    // Back to back, separated by a newline, and by spaces.
    let batch =
        [FELIPE_ADD, FELIPE_GET, b"\n", MISSING_GET, b"  ", FELIPE_ADD, PEER_ID, b"\n", FELIPE_REMOVE]
            .concat();
    c.send(&batch).await;
    assert_eq!(c.read_line_string().await, ADD_OK);
    assert_eq!(completed_data(&c.read_json().await, "peer get")["name"], "Felipe Nunes");
    assert_eq!(c.read_line_string().await, GET_MISSING);
    assert_eq!(c.read_line_string().await, ADD_EXISTS);
    assert_eq!(completed_data(&c.read_json().await, "peer id")["peer_id"], node.peer_id.as_str());
    assert_eq!(c.read_line_string().await, REMOVE_OK);
    c.expect_silence(Duration::from_millis(50)).await;
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_request_split_across_three_writes_is_answered_once_it_is_complete() {
    let (node, _dir) = start_node().await;
    let mut c = Conn::connect(node.manager_addr).await;
    let pieces: [&[u8]; 3] = [
        br#"{"message_type":3,"data":{"peer_ip":"#,
        br#""10.1.1.1","peer_port":"8001","peer_na"#,
        br#"me":"Split Up"}}"#,
    ];
    for piece in &pieces[..2] {
        c.send(piece).await;
        // The pause between writes doubles as the check that no reply came for a partial request.
        c.expect_silence(Duration::from_millis(50)).await;
    }
    c.send(pieces[2]).await;
    assert_eq!(c.read_line_string().await, ADD_OK);
    let record = completed_data(&c.request_json(&get_req("10.1.1.1")).await, "peer get");
    assert_eq!(record["name"], "Split Up");
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_request_split_byte_by_byte_is_answered_once() {
    let (node, _dir) = start_node().await;
    let mut c = Conn::connect(node.manager_addr).await;
    let request = br#"{"message_type": 7, "data": {"peer_ip": "9.9.9.9"}}"#;
    for b in request.iter() {
        c.send(&[*b]).await;
    }
    assert_eq!(c.read_line_string().await, GET_MISSING);
    c.expect_silence(Duration::from_millis(50)).await;
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn braces_brackets_and_escaped_quotes_inside_strings_do_not_end_a_request() {
    let (node, _dir) = start_node().await;
    let mut c = Conn::connect(node.manager_addr).await;
    // JSON text of the name: "}{\"][\\\"{ \\" -> the characters }{"][\"{ \
    let tricky = r#"}{\"][\\\"{ \\"#;
    let add = format!(
        r#"{{"message_type":3,"data":{{"peer_ip":"10.7.7.7","peer_port":"1","peer_name":"{tricky}"}}}}"#
    );
    let expected_name = r#"}{"][\"{ \"#;
    // Split right after a backslash, then a second request in the same write as the rest.
    let cut = add.find(r"\\").unwrap() + 1;
    c.send(&add.as_bytes()[..cut]).await;
    c.expect_silence(Duration::from_millis(50)).await;
    c.send(&[&add.as_bytes()[cut..], get_req("10.7.7.7").as_slice()].concat()).await;
    assert_eq!(c.read_line_string().await, ADD_OK);
    let line = c.read_line_string().await;
    let record = completed_data(&serde_json::from_str(&line).unwrap(), "peer get");
    assert_eq!(record["name"], expected_name);
    // serde_json and Python escape the name the same way it was sent.
    assert_eq!(line, expected_rev1_get(tricky, "10.7.7.7", "1", &record));
    c.expect_silence(Duration::from_millis(50)).await;
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn one_hundred_pipelined_requests_in_one_write_get_one_hundred_replies_in_order() {
    let (node, _dir) = start_node().await;
    let mut c = Conn::connect(node.manager_addr).await;
    let mut batch = Vec::new();
    for i in 0..50 {
        batch.extend_from_slice(&add_req(&format!("10.2.0.{i}"), "8001", &format!("peer-{i}")));
        batch.extend_from_slice(&get_req(&format!("10.2.0.{i}")));
        if i % 2 == 0 {
            batch.push(b'\n');
        }
    }
    c.send(&batch).await;
    for i in 0..50 {
        assert_eq!(c.read_line_string().await, ADD_OK, "reply to add #{i}");
        let record = completed_data(&c.read_json().await, "peer get");
        assert_eq!(record["name"], format!("peer-{i}"), "reply to get #{i} out of order");
    }
    c.expect_silence(Duration::from_millis(50)).await;
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_big_request_under_the_size_cap_is_served() {
    let (node, _dir) = start_node().await;
    let mut c = Conn::connect(node.manager_addr).await;
    // 60 KiB of whitespace inside one object: far over the original's 1 KiB, under the 64 KiB cap.
    let request = format!("{{\"message_type\": 8,{}\"data\": {{}}}}", " ".repeat(60 * 1024));
    let reply = c.request_json(request.as_bytes()).await;
    assert_eq!(completed_data(&reply, "peer id")["peer_id"], node.peer_id.as_str());
    node.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Bad input: a clear error reply, and the node keeps serving (the same connection too, except
// after malformed JSON or an oversized request).

#[tokio::test]
async fn malformed_json_gets_an_error_reply_and_then_the_connection_is_closed() {
    let (node, _dir) = start_node().await;
    for bad in
        [&br#"{"message_type": 3, "data": {peer_ip: "1.2.3.4"}}"#[..], b"{\"message_type\": 3,}", b"hello"]
    {
        let mut c = Conn::connect(node.manager_addr).await;
        let error = assert_rejected(&mut c, bad, None, Value::Null).await;
        assert!(lower(&error).contains("json"), "error {error:?} does not say the JSON is malformed");
        c.expect_eof().await;
    }
    assert_still_serving(None, &node).await;
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_request_that_is_not_an_object_gets_an_error_and_the_connection_stays_open() {
    let (node, _dir) = start_node().await;
    let mut c = Conn::connect(node.manager_addr).await;
    for bad in [&b"[1,2]"[..], b"42", b"\"message_type\"", b"null", b"[]"] {
        let error = assert_rejected(&mut c, bad, None, Value::Null).await;
        assert!(lower(&error).contains("object"), "error {error:?} for {:?}", String::from_utf8_lossy(bad));
        assert_still_serving(Some(&mut c), &node).await;
    }
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_request_without_message_type_gets_an_error_and_the_connection_stays_open() {
    let (node, _dir) = start_node().await;
    let mut c = Conn::connect(node.manager_addr).await;
    for bad in [&b"{}"[..], br#"{"data": {"peer_ip": "9.9.9.9"}}"#, br#"{"type": 7}"#] {
        let error = assert_rejected(&mut c, bad, None, Value::Null).await;
        assert!(error.contains("message_type"), "error {error:?}");
        assert_still_serving(Some(&mut c), &node).await;
    }
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_non_integer_message_type_gets_an_error_and_the_connection_stays_open() {
    let (node, _dir) = start_node().await;
    let mut c = Conn::connect(node.manager_addr).await;
    for bad in [
        &br#"{"message_type": "3", "data": {"peer_ip": "1.2.3.4", "peer_port": "1", "peer_name": "x"}}"#[..],
        br#"{"message_type": 3.5}"#,
        br#"{"message_type": null}"#,
        br#"{"message_type": true}"#,
        br#"{"message_type": [7]}"#,
    ] {
        let error = assert_rejected(&mut c, bad, None, Value::Null).await;
        assert!(error.contains("message_type"), "error {error:?}");
        assert_still_serving(Some(&mut c), &node).await;
    }
    // Nothing was added by the string-typed "3".
    assert_eq!(c.request_string(&get_req("1.2.3.4")).await, GET_MISSING);
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn unknown_and_reserved_message_types_get_an_error_and_the_connection_stays_open() {
    let (node, _dir) = start_node().await;
    let mut c = Conn::connect(node.manager_addr).await;
    for (bad, shown) in [
        (&br#"{"message_type": 42}"#[..], "42"),
        (br#"{"message_type": 5, "data": {"peer_ip": "1.2.3.4"}}"#, "5"),
        (br#"{"message_type": 0}"#, "0"),
        (br#"{"message_type": -3}"#, "-3"),
        (br#"{"message_type": 10}"#, "10"),
    ] {
        let error = assert_rejected(&mut c, bad, None, Value::Null).await;
        assert!(error.contains(shown), "error {error:?} does not name the type {shown}");
        assert_still_serving(Some(&mut c), &node).await;
    }
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn fifty_unknown_type_messages_do_not_stop_the_server_answering_anyone() {
    let (node, _dir) = start_node().await;
    // The original lost a worker thread per unknown type and went deaf after a few.
    for _ in 0..50 {
        let mut c = Conn::connect(node.manager_addr).await;
        assert_rejected(&mut c, br#"{"message_type": 42}"#, None, Value::Null).await;
    }
    let mut c = Conn::connect(node.manager_addr).await;
    c.send(&br#"{"message_type": 42}"#.repeat(50)).await;
    for _ in 0..50 {
        assert_eq!(c.read_json().await["result"], "error");
    }
    assert_eq!(c.request_string(FELIPE_ADD).await, ADD_OK);
    assert_eq!(
        request_once(node.manager_addr, FELIPE_ADD).await,
        json!({"action": "peer add", "result": "error", "data": false})
    );
    assert_still_serving(Some(&mut c), &node).await;
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_request_without_data_gets_an_error_of_its_action_and_the_connection_stays_open() {
    let (node, _dir) = start_node().await;
    let mut c = Conn::connect(node.manager_addr).await;
    for (bad, action, data) in [
        (&br#"{"message_type": 3}"#[..], "peer add", json!(false)),
        (br#"{"message_type": 4}"#, "peer remove", Value::Null),
        (br#"{"message_type": 6}"#, "peer update", json!(false)),
        (br#"{"message_type": 7}"#, "peer get", Value::Null),
        (br#"{"message_type": 7, "data": null}"#, "peer get", Value::Null),
        (br#"{"message_type": 3, "data": "101.3.4.2"}"#, "peer add", json!(false)),
        (br#"{"message_type": 7, "data": {}}"#, "peer get", Value::Null),
    ] {
        let error = assert_rejected(&mut c, bad, Some(action), data).await;
        assert!(error.contains("data") || error.contains("peer_ip"), "error {error:?}");
        assert_still_serving(Some(&mut c), &node).await;
    }
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_wrongly_typed_field_gets_an_error_naming_it_and_the_connection_stays_open() {
    let (node, _dir) = start_node().await;
    let mut c = Conn::connect(node.manager_addr).await;
    for (bad, action, data, field) in [
        (&br#"{"message_type": 3, "data": {"peer_ip": 7, "peer_port": "1", "peer_name": "x"}}"#[..], "peer add", json!(false), "peer_ip"),
        (br#"{"message_type": 7, "data": {"peer_ip": 7}}"#, "peer get", Value::Null, "peer_ip"),
        (br#"{"message_type": 4, "data": {"peer_ip": ["1.2.3.4"]}}"#, "peer remove", Value::Null, "peer_ip"),
        (br#"{"message_type": 3, "data": {"peer_ip": "1.2.3.4", "peer_port": "1", "peer_name": {"n": 1}}}"#, "peer add", json!(false), "peer_name"),
        (br#"{"message_type": 6, "data": {"peer_ip": "1.2.3.4", "peer_port": true}}"#, "peer update", json!(false), "peer_port"),
        (br#"{"message_type": 3, "data": {"peer_id": 12, "name": "x", "ip": "1.2.3.4"}}"#, "peer add", json!(false), "peer_id"),
        (br#"{"message_type": 3, "data": {"peer_id": "Qm1", "name": "x", "ip": "1.2.3.4", "ports": "3003"}}"#, "peer add", json!(false), "ports"),
        (br#"{"message_type": 3, "data": {"peer_id": "Qm1", "name": "x", "ip": "1.2.3.4", "ports": {"userSync": "abc"}}}"#, "peer add", json!(false), "userSync"),
        (br#"{"message_type": 3, "data": {"peer_id": "Qm1", "name": "x", "ip": "1.2.3.4", "ports": {"userSync": 70000}}}"#, "peer add", json!(false), "userSync"),
    ] {
        let error = assert_rejected(&mut c, bad, Some(action), data).await;
        assert!(error.contains(field), "error {error:?} does not name `{field}`");
        assert_still_serving(Some(&mut c), &node).await;
    }
    // None of the rejected adds wrote anything.
    let table = completed_data(&c.request_json(TABLE_JSON).await, "hashtable get");
    assert_eq!(keys_of(&table), set(&[&node.peer_id]));
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_empty_key_gets_an_error_and_the_connection_stays_open() {
    let (node, _dir) = start_node().await;
    let mut c = Conn::connect(node.manager_addr).await;
    for (bad, action, data) in [
        (
            &br#"{"message_type": 3, "data": {"peer_ip": "", "peer_port": "1", "peer_name": "x"}}"#[..],
            "peer add",
            json!(false),
        ),
        (br#"{"message_type": 7, "data": {"peer_ip": ""}}"#, "peer get", Value::Null),
        (br#"{"message_type": 4, "data": {"peer_id": ""}}"#, "peer remove", Value::Null),
        (
            br#"{"message_type": 6, "data": {"peer_id": "", "name": "x", "ip": "1.2.3.4"}}"#,
            "peer update",
            json!(false),
        ),
    ] {
        let error = assert_rejected(&mut c, bad, Some(action), data).await;
        assert!(lower(&error).contains("empty"), "error {error:?}");
        assert_still_serving(Some(&mut c), &node).await;
    }
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_key_of_256_bytes_is_refused_and_one_of_255_bytes_is_accepted() {
    let (node, _dir) = start_node().await;
    let mut c = Conn::connect(node.manager_addr).await;
    let long = "k".repeat(256);
    let error = assert_rejected(&mut c, &add_req(&long, "1", "x"), Some("peer add"), json!(false)).await;
    assert!(error.contains("256") || error.contains("255"), "error {error:?}");
    assert_still_serving(Some(&mut c), &node).await;
    assert_rejected(&mut c, &get_req(&long), Some("peer get"), Value::Null).await;
    let rev2 =
        json!({"message_type": 3, "data": {"peer_id": long, "name": "x", "ip": "1.2.3.4"}}).to_string();
    assert_rejected(&mut c, rev2.as_bytes(), Some("peer add"), json!(false)).await;
    assert_still_serving(Some(&mut c), &node).await;

    let fits = "k".repeat(255);
    assert_eq!(c.request_string(&add_req(&fits, "1", "x")).await, ADD_OK);
    assert_eq!(completed_data(&c.request_json(&get_req(&fits)).await, "peer get")["ip"], fits.as_str());
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_string_field_over_1024_bytes_is_refused_and_one_of_1024_bytes_is_accepted() {
    let (node, _dir) = start_node().await;
    let mut c = Conn::connect(node.manager_addr).await;
    let long = "n".repeat(1025);
    for (bad, action, field) in [
        (add_req("10.3.3.3", "1", &long), "peer add", "peer_name"),
        (add_req("10.3.3.3", &long, "x"), "peer add", "peer_port"),
        (
            json!({"message_type": 3, "data": {"peer_id": "Qm1", "name": long, "ip": "1.2.3.4"}})
                .to_string()
                .into_bytes(),
            "peer add",
            "name",
        ),
        (
            json!({"message_type": 6, "data": {"peer_ip": "10.3.3.3", "peer_port": "1", "peer_name": long}})
                .to_string()
                .into_bytes(),
            "peer update",
            "peer_name",
        ),
    ] {
        let error = assert_rejected(&mut c, &bad, Some(action), json!(false)).await;
        assert!(error.contains(field) && error.contains("1024"), "error {error:?} for `{field}`");
        assert_still_serving(Some(&mut c), &node).await;
    }
    assert_eq!(c.request_string(&get_req("10.3.3.3")).await, GET_MISSING);
    let fits = "n".repeat(1024);
    assert_eq!(c.request_string(&add_req("10.3.3.3", "1", &fits)).await, ADD_OK);
    assert_eq!(
        completed_data(&c.request_json(&get_req("10.3.3.3")).await, "peer get")["name"],
        fits.as_str()
    );
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_request_over_64_kib_gets_an_error_reply_and_then_the_connection_is_closed() {
    let (node, _dir) = start_node().await;
    let mut c = Conn::connect(node.manager_addr).await;
    let huge = add_req("10.4.4.4", "1", &"x".repeat(64 * 1024 + 100));
    assert!(huge.len() > 64 * 1024);
    let error = assert_rejected(&mut c, &huge, None, Value::Null).await;
    assert!(lower(&error).contains("large"), "error {error:?}");
    // Closed; a reset is acceptable (the server may close with part of the request unread).
    let closed = c.expect_closed_within(common::REPLY_TIMEOUT).await;
    assert!(matches!(closed, Closed::Eof | Closed::Reset));
    assert_still_serving(None, &node).await;

    // Far over the cap (1 MiB in one write): the server stops reading, yet the error reply still
    // reaches the client. The write itself may fail once the server has closed.
    let mut c = Conn::connect(node.manager_addr).await;
    let _ = c.try_send(&add_req("10.4.4.4", "1", &"y".repeat(1 << 20))).await;
    let reply = c.read_json().await;
    assert_eq!((reply["result"].as_str(), reply["data"].is_null()), (Some("error"), true), "{reply}");
    assert!(lower(reply["error"].as_str().unwrap_or_default()).contains("large"), "{reply}");
    c.expect_closed_within(common::REPLY_TIMEOUT).await;

    assert_still_serving(None, &node).await;
    assert_eq!(request_once(node.manager_addr, &get_req("10.4.4.4")).await["data"], Value::Null);
    node.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Connection management.

#[tokio::test]
async fn a_client_stalled_in_the_middle_of_a_request_does_not_block_other_clients() {
    let (node, _dir) = start_node().await;
    let mut stalled = Conn::connect(node.manager_addr).await;
    stalled.send(br#"{"message_type": 7, "data": {"peer_ip": "#).await;
    // Others are answered meanwhile, on new connections and on one opened before the stall.
    for i in 0..5 {
        let mut other = Conn::connect(node.manager_addr).await;
        assert_eq!(other.request_string(&add_req(&format!("10.5.0.{i}"), "1", "x")).await, ADD_OK);
    }
    assert_eq!(status_of(&request_once(node.manager_addr, STATUS).await)["table_size"], 6);
    stalled.expect_silence(Duration::from_millis(20)).await;
    // The stalled request is still whole once finished.
    stalled.send(br#""10.5.0.3"}}"#).await;
    assert_eq!(completed_data(&stalled.read_json().await, "peer get")["ip"], "10.5.0.3");
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_client_beyond_max_clients_is_told_too_many_connections_and_the_others_keep_working() {
    let (node, _dir) = start_node_with(|cfg| cfg.manager.max_clients = 2).await;
    let mut first = Conn::connect(node.manager_addr).await;
    let mut second = Conn::connect(node.manager_addr).await;
    // Both are being served before the third arrives.
    assert_eq!(first.request_string(FELIPE_ADD).await, ADD_OK);
    assert_eq!(second.request_string(FELIPE_ADD).await, ADD_EXISTS);

    let mut third = Conn::connect(node.manager_addr).await;
    let line = third.read_line_string().await;
    let reply: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(reply["result"], "error", "{line:?}");
    assert!(reply["error"].as_str().unwrap_or_default().contains("too many connections"), "{line:?}");
    third.expect_closed_within(common::REPLY_TIMEOUT).await;

    assert_eq!(completed_data(&first.request_json(FELIPE_GET).await, "peer get")["name"], "Felipe Nunes");
    assert_eq!(second.request_string(MISSING_GET).await, GET_MISSING);

    // A slot is given back when a client leaves: after `first` closes, a new client is served.
    // (The slot is released just after the server closes the socket, so allow a few attempts.)
    first.send(CLOSE).await;
    first.expect_eof().await;
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let mut c = Conn::connect(node.manager_addr).await;
        c.send(MISSING_GET).await;
        let reply = c.read_json().await;
        if reply["action"] == "peer get" {
            assert_eq!(reply, json!({"action": "peer get", "result": "error", "data": null}));
            break;
        }
        assert!(reply["error"].as_str().unwrap_or_default().contains("too many"), "{reply}");
        assert!(Instant::now() < deadline, "the closed client's slot was never released");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_client_trickling_a_request_is_closed_after_the_request_timeout_while_an_idle_one_is_not() {
    let timeout = Duration::from_millis(300);
    let (node, _dir) = start_node_with(|cfg| cfg.manager.request_timeout = timeout).await;
    let addr = node.manager_addr;

    let trickle = async {
        let mut c = Conn::connect(addr).await;
        let started = Instant::now();
        c.send(br#"{"message_type": 7, "data": {"peer_ip": "#).await;
        // One byte of padding every 50 ms: the connection is never idle, the request never ends.
        loop {
            assert!(
                started.elapsed() < Duration::from_millis(1500),
                "trickling client still open after 1.5 s"
            );
            if c.try_send(b" ").await.is_err() {
                break;
            }
            // The read with a timeout is the pause.
            if c.poll_closed(Duration::from_millis(50)).await.is_some() {
                break;
            }
        }
        started.elapsed()
    };
    let idle = async {
        let mut c = Conn::connect(addr).await;
        // Silent between requests for longer than the request timeout: that is not a slow request.
        c.expect_silence(timeout + Duration::from_millis(200)).await;
        assert_eq!(c.request_string(MISSING_GET).await, GET_MISSING);
    };
    let (closed_after, ()) = tokio::join!(trickle, idle);
    assert!(closed_after >= Duration::from_millis(250), "closed after {closed_after:?}, before the timeout");
    assert_still_serving(None, &node).await;
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_silent_client_is_closed_after_the_idle_timeout() {
    let (node, _dir) = start_node_with(|cfg| cfg.manager.idle_timeout = Duration::from_millis(200)).await;
    let mut c = Conn::connect(node.manager_addr).await;
    assert_eq!(c.request_string(MISSING_GET).await, GET_MISSING);
    let started = Instant::now();
    c.expect_eof().await;
    assert!(started.elapsed() >= Duration::from_millis(150), "closed after {:?}", started.elapsed());
    assert_still_serving(None, &node).await;
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_client_connecting_from_a_non_loopback_address_is_closed_at_once() {
    let (node, _dir) = start_node().await;
    // The address this host would use towards the outside (no packet is sent by a UDP connect).
    let probe = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    let local = probe.connect("192.0.2.200:9").ok().and_then(|()| probe.local_addr().ok()).map(|a| a.ip());
    let Some(local) = local.filter(|ip| !ip.is_loopback() && !ip.is_unspecified()) else {
        eprintln!("skipped: this host has no non-loopback IPv4 address to connect from");
        return;
    };
    let mut outsider = Conn::connect_from(local, node.manager_addr).await;
    assert_eq!(outsider.local_addr().ip(), local);
    // Closed without a single byte, before it even sends a request.
    outsider.expect_closed_within(common::REPLY_TIMEOUT).await;
    // A loopback client is still served, including from another loopback address.
    let mut insider = Conn::connect_from("127.0.0.2".parse().unwrap(), node.manager_addr).await;
    assert_eq!(
        completed_data(&insider.request_json(PEER_ID).await, "peer id")["peer_id"],
        node.peer_id.as_str()
    );
    assert_still_serving(None, &node).await;
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_ipv6_loopback_manager_address_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = udht::NodeConfig::new(dir.path(), "[::1]:0".parse().unwrap());
    let node = match udht::RunningNode::start(cfg).await {
        Ok(node) => node,
        Err(e) if std::net::TcpListener::bind("[::1]:0").is_err() => {
            eprintln!("skipped: this host has no IPv6 loopback ({e})");
            return;
        }
        Err(e) => panic!("a node on [::1] failed to start: {e}"),
    };
    assert!(node.manager_addr.ip().is_loopback() && node.manager_addr.is_ipv6(), "{}", node.manager_addr);
    assert_eq!(Conn::connect(node.manager_addr).await.request_string(FELIPE_ADD).await, ADD_OK);
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_non_loopback_manager_address_is_refused_at_start_up() {
    for addr in ["0.0.0.0:0", "192.0.2.1:0", "10.1.2.3:3002", "[::]:0", "[2001:db8::1]:0"] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = udht::NodeConfig::new(dir.path(), addr.parse().unwrap());
        match udht::RunningNode::start(cfg).await {
            Ok(node) => {
                let at = node.manager_addr;
                node.shutdown().await.unwrap();
                panic!("a node started with its manager socket on {addr} (listening at {at})");
            }
            Err(e) => {
                assert!(e.to_string().contains("loopback"), "error for {addr} does not mention loopback: {e}")
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Concurrency.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_connections_adding_distinct_keys_at_once_all_succeed_and_all_are_in_the_table() {
    const CLIENTS: usize = 16;
    const PER_CLIENT: usize = 8;
    let (node, _dir) = start_node().await;
    let addr = node.manager_addr;
    let mut conns = Vec::new();
    for _ in 0..CLIENTS {
        conns.push(Conn::connect(addr).await);
    }
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(w, mut c)| {
            tokio::spawn(async move {
                for i in 0..PER_CLIENT {
                    let key = format!("10.6.{w}.{i}");
                    assert_eq!(
                        c.request_string(&add_req(&key, "8001", &format!("w{w}-{i}"))).await,
                        ADD_OK,
                        "{key}"
                    );
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let table = completed_data(&request_once(addr, TABLE_JSON).await, "hashtable get");
    assert_eq!(table.as_object().unwrap().len(), CLIENTS * PER_CLIENT + 1, "plus the own record");
    for w in 0..CLIENTS {
        for i in 0..PER_CLIENT {
            assert_eq!(table[format!("10.6.{w}.{i}")]["name"], format!("w{w}-{i}"));
        }
    }
    node.shutdown().await.unwrap();
}
