//! Drives every message type of the manager socket, with both field revisions, against a running
//! node, printing each request and its reply.
//!
//!     cargo run --example manager_client -- [127.0.0.1:3002]
//!
//! The records it adds are removed again at the end, so it can be run repeatedly against the same
//! node. It exits non-zero if a reply is not the one the protocol specifies.
//!
//! Requests that show a field revision (`peer_ip`/`peer_port`/`peer_name`, or `peer_id`/`name`/
//! `ip`/`ports`) are written out as JSON; the others are built with the typed
//! [`ClientRequest`], as `udht-node ctl` does. Replies are printed exactly as the node sent them.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use udht::manager::client::{Client, ClientError};
use udht::manager::protocol::ClientRequest;

/// How long to wait to connect and for each reply.
const TIMEOUT: Duration = Duration::from_secs(10);
/// How many records of the pickled table to print.
const SHOW_RECORDS: usize = 20;

/// The first revision's record: keyed by `peer_ip`.
const REV1_IP: &str = "101.3.4.2";
/// The later revision's record: keyed by `peer_id`.
const REV2_ID: &str = "12D3KooWManagerClientExamplePeer";

struct Session {
    client: Client,
    step: usize,
    unexpected: Vec<String>,
}

impl Session {
    /// Sends one request, prints it and its JSON reply, and checks the reply's `result`.
    async fn call(&mut self, what: &str, request: Value, want_result: &str) -> Result<Value> {
        self.step += 1;
        println!("\n[{}] {what}", self.step);
        println!("  -> {request}");
        let reply = self
            .client
            .request_line(&request)
            .await
            .with_context(|| format!("step {}: {what}", self.step))?;
        println!("  <- {}", reply.line);
        let reply = reply.value;
        if reply["result"] != want_result {
            let msg = format!(
                "step {} ({what}): expected result {want_result:?}, got {}",
                self.step, reply["result"]
            );
            println!("  !! {msg}");
            self.unexpected.push(msg);
        }
        Ok(reply)
    }

    fn check(&mut self, ok: bool, what: &str) {
        if ok {
            println!("  ok: {what}");
        } else {
            println!("  !! not so: {what}");
            self.unexpected.push(format!("step {}: {what}", self.step));
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let addr: SocketAddr = match std::env::args().nth(1) {
        Some(a) => a.parse().with_context(|| format!("{a:?} is not an address like 127.0.0.1:3002"))?,
        None => SocketAddr::from(([127, 0, 0, 1], udht::manager::DEFAULT_PORT)),
    };
    println!("manager socket: {addr}");
    let client = Client::connect(addr, TIMEOUT).await?;
    let mut s = Session { client, step: 0, unexpected: Vec::new() };

    // Type 3, add: both revisions, then the same keys again.
    let add_rev1 = json!({"message_type": 3,
        "data": {"peer_ip": REV1_IP, "peer_port": "8001", "peer_name": "Felipe Nunes"}});
    let add_rev2 = json!({"message_type": 3,
        "data": {"peer_id": REV2_ID, "name": "Ana Lima", "ip": "101.3.4.3",
                 "ports": {"userSync": 3003, "fileSync": 3004, "blockchain": 3005}}});
    let r =
        s.call("add, first revision (peer_ip/peer_port/peer_name)", add_rev1.clone(), "completed").await?;
    s.check(r["data"] == true, "data is true");
    let r = s.call("add, later revision (peer_id/name/ip/ports)", add_rev2.clone(), "completed").await?;
    s.check(r["data"] == true, "data is true");
    let r = s.call("add again, first revision: the key exists", add_rev1, "error").await?;
    s.check(r["data"] == false, "data is false");
    let r = s.call("add again, later revision: the key exists", add_rev2, "error").await?;
    s.check(r["data"] == false, "data is false");

    // Type 7, get.
    let get_rev1 = json!({"message_type": 7, "data": {"peer_ip": REV1_IP}});
    let before = s.call("get by peer_ip", get_rev1.clone(), "completed").await?;
    s.check(before["data"]["port"] == "8001", "port is \"8001\"");
    let r = s.call("get by peer_id", ClientRequest::Get(REV2_ID).to_json(), "completed").await?;
    s.check(r["data"]["ports"]["userSync"] == 3003, "ports.userSync is 3003");
    let r = s
        .call("get a missing key", json!({"message_type": 7, "data": {"peer_ip": "9.9.9.9"}}), "error")
        .await?;
    s.check(r["data"].is_null(), "data is null");

    // Type 6, update.
    let update_rev1 = json!({"message_type": 6,
        "data": {"peer_ip": REV1_IP, "peer_port": "8002", "peer_name": "F"}});
    let r = s.call("update, first revision", update_rev1, "completed").await?;
    s.check(r["data"] == true, "data is true");
    let update_rev2 = json!({"message_type": 6,
        "data": {"peer_id": REV2_ID, "name": "Ana L.", "ports": {"userSync": 4003}}});
    let r = s.call("update, later revision", update_rev2, "completed").await?;
    s.check(r["data"] == true, "data is true");
    let update_missing = json!({"message_type": 6,
        "data": {"peer_ip": "9.9.9.9", "peer_port": "8002", "peer_name": "F"}});
    let r = s.call("update a missing key", update_missing, "error").await?;
    s.check(r["data"] == false, "data is false");
    let after = s.call("get after the update", get_rev1, "completed").await?;
    s.check(after["data"]["port"] == "8002" && after["data"]["name"] == "F", "port and name changed");
    s.check(after["data"]["createdAt"] == before["data"]["createdAt"], "createdAt kept");

    // Type 2, the whole table: as the original's bare pickle, then as JSON.
    s.step += 1;
    let request = ClientRequest::Table { json: false }.to_json();
    println!("\n[{}] whole table as a pickle (the original's reply)", s.step);
    println!("  -> {request}");
    let bytes = s.client.table_pickle().await.context("table as a pickle")?;
    let table = serde_pickle::value_from_slice(&bytes, serde_pickle::DeOptions::new())
        .context("the table reply is not a pickle")?;
    println!("  <- {} bytes of pickle, decoded:", bytes.len());
    print_pickled_table(&table);
    let has = |k: &str| match &table {
        serde_pickle::Value::Dict(d) => d.contains_key(&serde_pickle::HashableValue::String(k.into())),
        _ => false,
    };
    s.check(has(REV1_IP) && has(REV2_ID), "both records are in the pickled table");

    let r = s.call("whole table as JSON", ClientRequest::Table { json: true }.to_json(), "completed").await?;
    s.check(r["data"][REV1_IP]["name"] == "F" && r["data"][REV2_ID].is_object(), "both records are in it");

    // Type 8, this node's own record; type 9, status.
    let own = s.call("this node's own record", ClientRequest::Identity.to_json(), "completed").await?;
    let status = s.call("node status", ClientRequest::Status.to_json(), "completed").await?;
    s.check(own["data"]["peer_id"] == status["data"]["peer_id"], "own record's peer_id is the node's");

    // Type 4, remove: once, then again.
    let remove_rev1 = json!({"message_type": 4, "data": {"peer_ip": REV1_IP}});
    let r = s.call("remove", remove_rev1.clone(), "completed").await?;
    s.check(r["data"].is_null(), "data is null");
    let r = s.call("remove again: the key is missing", remove_rev1, "error").await?;
    s.check(r["data"].is_null(), "data is null");
    s.call("remove by peer_id", ClientRequest::Remove(REV2_ID).to_json(), "completed").await?;

    // Type 1, close: no reply, the node closes the connection.
    s.step += 1;
    println!("\n[{}] close", s.step);
    println!("  -> {}", ClientRequest::Close.to_json());
    s.client.send(&ClientRequest::Close).await?;
    match s.client.read_reply_line().await {
        Err(ClientError::Closed) => println!("  <- (no reply; the node closed the connection)"),
        Err(ClientError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
            println!("  <- (no reply; the node reset the connection)")
        }
        Err(e) => bail!("after close: {e}"),
        Ok(reply) => {
            println!("  <- {}", reply.line);
            s.check(false, "no reply to a close");
        }
    }

    println!();
    if s.unexpected.is_empty() {
        println!("all {} steps answered as the protocol specifies", s.step);
        Ok(())
    } else {
        for u in &s.unexpected {
            println!("unexpected: {u}");
        }
        bail!("{} unexpected replies", s.unexpected.len())
    }
}

/// Prints a decoded table, one record a line, at most [`SHOW_RECORDS`] of them.
fn print_pickled_table(table: &serde_pickle::Value) {
    let serde_pickle::Value::Dict(records) = table else {
        println!("     (not a dict!) {table}");
        return;
    };
    println!("     a dict of {} records", records.len());
    for (key, record) in records.iter().take(SHOW_RECORDS) {
        println!("     {key}: {record}");
    }
    if records.len() > SHOW_RECORDS {
        println!("     ... and {} more", records.len() - SHOW_RECORDS);
    }
}
