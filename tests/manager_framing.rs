//! Framing on the manager socket: requests with or without a trailing newline, several in one
//! write, one split over several writes, braces and escapes inside strings, deep pipelining, and a
//! big request under the size cap (spec: manager-protocol.md).

mod common;

use std::time::Duration;

use common::{
    add_req, completed_data, expected_rev1_get, get_req, start_node, Conn, ADD_EXISTS, ADD_OK, FELIPE_ADD,
    FELIPE_GET, FELIPE_REMOVE, GET_MISSING, MISSING_GET, MISSING_REMOVE, PEER_ID, REMOVE_MISSING, REMOVE_OK,
};

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
    c.expect_no_more_replies().await;
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
    c.expect_no_more_replies().await;
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
    c.expect_no_more_replies().await;
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
    c.expect_no_more_replies().await;
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
    c.expect_no_more_replies().await;
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
