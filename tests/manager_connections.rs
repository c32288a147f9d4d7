//! Connection management on the manager socket: a stalled or trickling client, idle and request
//! timeouts, the max-clients limit, loopback-only binding and clients, and concurrent clients
//! (spec: manager-protocol.md).

mod common;

use std::time::Duration;

use common::{
    add_req, assert_still_serving, completed_data, eventually, request_once, start_node, start_node_with,
    status_of, try_start_node, Conn, ADD_EXISTS, ADD_OK, CLOSE, FELIPE_ADD, FELIPE_GET, GET_MISSING,
    MISSING_GET, PEER_ID, STATUS, TABLE_JSON,
};
use serde_json::{json, Value};
use tokio::time::Instant;

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
    let reply = eventually("the closed client's slot to be released", Duration::from_secs(1), async || {
        let mut c = Conn::connect(node.manager_addr).await;
        c.send(MISSING_GET).await;
        let reply = c.read_json().await;
        if reply["action"] == "peer get" {
            return Ok(reply);
        }
        assert!(reply["error"].as_str().unwrap_or_default().contains("too many"), "{reply}");
        Err(reply)
    })
    .await;
    assert_eq!(reply, json!({"action": "peer get", "result": "error", "data": null}));
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
        let reply = eventually(
            "the server to give up on the trickling client",
            Duration::from_millis(1500),
            async || {
                // The poll interval, plus this read's timeout if it is shorter, is the pause.
                let pause = Duration::from_millis(50).saturating_sub(common::POLL);
                let _ = c.try_send(b" ").await;
                c.poll_line(pause).await
            },
        )
        .await;
        let reply = String::from_utf8(reply).unwrap();
        assert!(reply.contains("not completed within"), "told why before the close: {reply}");
        c.expect_closed_within(Duration::from_secs(3)).await;
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
async fn a_request_left_incomplete_gets_an_error_reply_before_the_close() {
    let timeout = Duration::from_millis(300);
    let (node, _dir) = start_node_with(|cfg| cfg.manager.request_timeout = timeout).await;
    let mut c = Conn::connect(node.manager_addr).await;
    let started = Instant::now();
    c.send(br#"{"message_type": 7, "data": {"peer_ip": "#).await;
    let reply = c.read_json().await;
    assert!(started.elapsed() >= Duration::from_millis(250), "answered after {:?}", started.elapsed());
    assert_eq!(
        (reply["action"].as_str(), reply["result"].as_str()),
        (Some("request"), Some("error")),
        "{reply}"
    );
    assert!(reply["error"].as_str().unwrap().contains("not completed within"), "{reply}");
    c.expect_eof().await;
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
        // CI's machines have one (docker's bridge at least): there, a skip would hide a regression.
        assert!(std::env::var_os("CI").is_none(), "no non-loopback IPv4 address to connect from");
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
    let (node, _dir) = match try_start_node(|cfg| cfg.manager_addr = "[::1]:0".parse().unwrap()).await {
        Ok(started) => started,
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
        match try_start_node(|cfg| cfg.manager_addr = addr.parse().unwrap()).await {
            Ok((node, _dir)) => {
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
