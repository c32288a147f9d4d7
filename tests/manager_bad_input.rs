//! Bad input on the manager socket: malformed JSON, non-objects, missing or mistyped
//! `message_type`, `data` and fields, empty and oversized keys and strings, requests over the size
//! cap, and unknown message types: each gets a clear error reply and the node keeps serving
//! (spec: manager-protocol.md).

mod common;

use common::{
    add_req, assert_still_serving, completed_data, get_req, keys_of, request_once, set, start_node, Conn,
    ADD_OK, FELIPE_ADD, GET_MISSING, TABLE_JSON,
};
use serde_json::{json, Value};

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

fn lower(s: &str) -> String {
    s.to_lowercase()
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
        (br#"{"message_type": 12}"#, "12"),
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
    // Closed (a reset is acceptable: the server may close with part of the request unread).
    c.expect_closed_within(common::REPLY_TIMEOUT).await;
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
