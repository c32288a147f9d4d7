//! Type 11, the change feed: `{"message_type": 11, "data": {"snapshot": true|false}}` turns the
//! connection into a stream of JSON lines: the snapshot's records (if asked for), a `ready` line,
//! then one line per change as it becomes durable on this node.

use serde::Serialize;
use serde_json::{Map, Value};

use super::{encode, BadRequest, RecordView, Request};
use crate::core::replica::Origin;
use crate::core::PeerRecord;

pub const ACTION_WATCH: &str = "watch";
/// The action of a change line (and of a snapshot line, whose origin is `snapshot`).
const ACTION_CHANGED: &str = "peer changed";

pub(super) fn parse(obj: &Map<String, Value>) -> Result<Request, BadRequest> {
    let snapshot = match obj.get("data") {
        None | Some(Value::Null) => false,
        Some(Value::Object(data)) => match data.get("snapshot") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(BadRequest::new(
                    ACTION_WATCH,
                    format!("`snapshot` must be true or false, got {other}"),
                ))
            }
        },
        Some(other) => {
            return Err(BadRequest::new(ACTION_WATCH, format!("`data` must be an object, got {other}")))
        }
    };
    Ok(Request::Watch { snapshot })
}

#[derive(Serialize)]
struct ChangeLine<'a> {
    action: &'a str,
    key: &'a str,
    data: Option<RecordView<'a>>,
    origin: &'a str,
}

/// One record of the snapshot: a change line whose origin is `snapshot`.
pub fn snapshot_line(key: &str, record: &PeerRecord) -> Vec<u8> {
    encode(&ChangeLine { action: ACTION_CHANGED, key, data: Some(RecordView(record)), origin: "snapshot" })
}

/// `{"action": "peer changed", "key": K, "data": record | null, "origin": "local" | "remote"}`.
pub fn change_line(key: &str, record: Option<&PeerRecord>, origin: Origin) -> Vec<u8> {
    let origin = match origin {
        Origin::Local => "local",
        Origin::Remote => "remote",
    };
    encode(&ChangeLine { action: ACTION_CHANGED, key, data: record.map(RecordView), origin })
}

#[derive(Serialize)]
struct WatchLine<'a> {
    action: &'a str,
    result: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

/// `{"action": "watch", "result": "ready"}`: the snapshot is complete, changes follow.
pub fn ready_line() -> Vec<u8> {
    encode(&WatchLine { action: ACTION_WATCH, result: "ready", error: None })
}

/// The last line to a watcher that fell behind: it must reconnect (and take a new snapshot).
pub fn lagged_line(dropped: u64) -> Vec<u8> {
    let error = format!("lagged: {dropped} changes dropped; reconnect");
    encode(&WatchLine { action: ACTION_WATCH, result: "error", error: Some(&error) })
}
