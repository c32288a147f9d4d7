//! The manager socket's messages over real TCP against an in-process node: add/get/update/remove in
//! both field revisions, the whole table as pickle and JSON, the node's own record, status, and
//! close (spec: manager-protocol.md).

mod common;

use common::{
    add_req, assert_still_serving, assert_timestamp, completed_data, expected_rev1_get, get_req, keys_of,
    python_unpickle, set, start_node, start_node_with, status_of, Conn, ADD_EXISTS, ADD_OK, CLOSE,
    FELIPE_ADD, FELIPE_GET, FELIPE_REMOVE, FELIPE_UPDATE, GET_MISSING, MISSING_GET, MISSING_REMOVE,
    MISSING_UPDATE, PEER_ID, REMOVE_MISSING, REMOVE_OK, STATUS, TABLE_JSON, TABLE_PICKLE, UPDATE_MISSING,
    UPDATE_OK,
};
use serde_json::{json, Value};

// The second revision, as Python's json.dumps writes it (", " and ": " separators).
const REV2_ID: &str = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N";
const REV2_ADD: &[u8] = br#"{"message_type": 3, "data": {"peer_id": "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N", "name": "Ana Lima", "ip": "10.20.30.40", "ports": {"userSync": 3003}}}"#;
const REV2_GET: &[u8] =
    br#"{"message_type": 7, "data": {"peer_id": "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"}}"#;
const REV2_UPDATE: &[u8] = br#"{"message_type": 6, "data": {"peer_id": "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N", "name": "Ana L.", "ip": "10.20.30.41", "ports": {"userSync": 3004, "blockchain": 3005}}}"#;
const REV2_REMOVE: &[u8] =
    br#"{"message_type": 4, "data": {"peer_id": "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"}}"#;
const REV2_MISSING_GET: &[u8] = br#"{"message_type": 7, "data": {"peer_id": "12D3KooWMissing"}}"#;
const REV2_MISSING_UPDATE: &[u8] =
    br#"{"message_type": 6, "data": {"peer_id": "12D3KooWMissing", "name": "X", "ip": "1.1.1.1", "ports": {"userSync": 1}}}"#;
const REV2_MISSING_REMOVE: &[u8] = br#"{"message_type": 4, "data": {"peer_id": "12D3KooWMissing"}}"#;

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

/// As the original did: an add without a name stores `""`, and `"ports": ""` (what the original
/// stored for a client that sent no ports, and so what comes back when a record is re-added from
/// a table dump) is taken as no ports.
#[tokio::test]
async fn an_add_without_a_name_or_with_empty_string_ports_is_taken_as_the_original_took_it() {
    let (node, _dir) = start_node().await;
    let mut c = Conn::connect(node.manager_addr).await;
    let nameless = json!({"message_type": 3, "data": {"peer_ip": "101.3.4.9", "peer_port": "8001"}});
    assert_eq!(c.request_string(nameless.to_string().as_bytes()).await, ADD_OK);
    let record = completed_data(&c.request_json(&get_req("101.3.4.9")).await, "peer get");
    assert_eq!(record["name"], "");
    let re_add = json!({"message_type": 3, "data": {"peer_id": "QmReAdded", "name": "r", "ip": "5.6.7.8", "ports": ""}});
    assert_eq!(c.request_string(re_add.to_string().as_bytes()).await, ADD_OK);
    let get = json!({"message_type": 7, "data": {"peer_id": "QmReAdded"}});
    let record = completed_data(&c.request_json(get.to_string().as_bytes()).await, "peer get");
    assert_eq!(record["name"], "r");
    // A record of the later revision always shows `ports` (as the original's did): empty here.
    assert_eq!(record["ports"], json!({}), "no ports: {record}");
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
    // The whole table came in that one line.
    let reply: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("one JSON line: {e}"));
    assert_eq!(reply["data"], table);
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
    assert_eq!(record["ports"], json!({}), "a node started without --ports shows empty ports");
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

/// A key that is an ed25519 libp2p peer id names a node's own record, which only that node may
/// write: a client adding, changing or removing one gets a clear error and nothing is written.
#[tokio::test]
async fn another_nodes_peer_id_key_is_refused_with_a_clear_error() {
    let (node, _dir) = start_node().await;
    let mut c = Conn::connect(node.manager_addr).await;
    let other = "12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo";
    let add = json!({"message_type": 3, "data": {"peer_id": other, "name": "Ana Lima", "ip": "10.20.30.40"}});
    let reply = c.request_json(add.to_string().as_bytes()).await;
    assert_eq!(
        (reply["action"].as_str(), reply["result"].as_str()),
        (Some("peer add"), Some("error")),
        "{reply}"
    );
    assert_eq!(reply["data"], false);
    let error = reply["error"].as_str().unwrap();
    assert!(error.contains(other) && error.contains("only that node may write"), "{error}");
    let get = json!({"message_type": 7, "data": {"peer_id": other}});
    assert_eq!(c.request_json(get.to_string().as_bytes()).await["result"], "error", "nothing was written");
    node.shutdown().await.unwrap();
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
