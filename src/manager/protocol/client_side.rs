//! The client side of the protocol: requests as a client sends them (the typed client, `ctl`
//! and the tests use these), read back by [`super::parse`].

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// The peer fields a client sends with an add or update, under the first revision's names
/// (`peer_ip`, `peer_port`, `peer_name`) plus `peer_id` and `ports`. A `None` is left out of the
/// request (an update then keeps the field as it was).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerData {
    /// Keys the record when given (later revision); otherwise `ip` is the key.
    pub peer_id: Option<String>,
    pub ip: Option<String>,
    pub port: Option<String>,
    pub name: Option<String>,
    /// Named service ports, e.g. `userSync -> 3003`.
    pub ports: Option<BTreeMap<String, u16>>,
}

/// A request as a client sends it. [`ClientRequest::to_json`] is its wire form (which [`parse`]
/// reads back): the one place the client side of the protocol names its fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientRequest<'a> {
    /// Type 1: the node closes the connection without replying.
    Close,
    /// Type 2: the whole table, as JSON (`"format": "json"`) or as the original's bare pickle.
    Table { json: bool },
    /// Type 3.
    Add(&'a PeerData),
    /// Type 4, by key (a peer id or an IP address, sent as `peer_id`).
    Remove(&'a str),
    /// Type 6.
    Update(&'a PeerData),
    /// Type 7, by key (a peer id or an IP address, sent as `peer_id`).
    Get(&'a str),
    /// Type 8: the node's own record.
    Identity,
    /// Type 9: node status.
    Status,
    /// Type 10: the node records' liveness.
    Members,
    /// Type 11: turn the connection into a stream of changes, after a snapshot if asked.
    Watch { snapshot: bool },
}

impl ClientRequest<'_> {
    /// The request object, e.g. `{"message_type": 7, "data": {"peer_id": "101.3.4.2"}}`.
    pub fn to_json(&self) -> Value {
        let mut obj = Map::new();
        let message_type = match *self {
            ClientRequest::Close => 1,
            ClientRequest::Table { json } => {
                if json {
                    obj.insert("format".into(), "json".into());
                }
                2
            }
            ClientRequest::Add(peer) => {
                obj.insert("data".into(), peer_data_json(peer));
                3
            }
            ClientRequest::Remove(key) => {
                obj.insert("data".into(), key_data_json(key));
                4
            }
            ClientRequest::Update(peer) => {
                obj.insert("data".into(), peer_data_json(peer));
                6
            }
            ClientRequest::Get(key) => {
                obj.insert("data".into(), key_data_json(key));
                7
            }
            ClientRequest::Identity => 8,
            ClientRequest::Status => 9,
            ClientRequest::Members => 10,
            ClientRequest::Watch { snapshot } => {
                let mut data = Map::new();
                data.insert("snapshot".into(), snapshot.into());
                obj.insert("data".into(), Value::Object(data));
                11
            }
        };
        obj.insert("message_type".into(), message_type.into());
        Value::Object(obj)
    }

    /// The bytes a client sends: compact JSON, no trailing newline.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(&self.to_json()).expect("a Value always serializes")
    }
}

fn key_data_json(key: &str) -> Value {
    let mut data = Map::new();
    data.insert("peer_id".into(), key.into());
    Value::Object(data)
}

fn peer_data_json(peer: &PeerData) -> Value {
    let mut data = Map::new();
    for (name, value) in [
        ("peer_id", &peer.peer_id),
        ("peer_ip", &peer.ip),
        ("peer_port", &peer.port),
        ("peer_name", &peer.name),
    ] {
        if let Some(v) = value {
            data.insert(name.into(), v.as_str().into());
        }
    }
    if let Some(ports) = &peer.ports {
        let ports = ports.iter().map(|(name, &port)| (name.clone(), Value::from(port))).collect();
        data.insert("ports".into(), Value::Object(ports));
    }
    Value::Object(data)
}
