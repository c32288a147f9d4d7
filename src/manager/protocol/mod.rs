//! The manager protocol: requests parsed from JSON frames, replies encoded as the original did
//! (JSON with Python's `", "`/`": "` separators and a trailing newline, or a pickle for the table).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;

use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

mod client_side;
mod record_json;
mod watch;

pub use client_side::{ClientRequest, PeerData};
pub use record_json::completed_record;
pub use watch::{change_line, lagged_line, ready_line, snapshot_line, ACTION_WATCH};

use super::timestamp::{format_micros_into, TIMESTAMP_LEN};
use crate::core::record::{MAX_PORTS, MAX_STRING_BYTES};
use crate::core::{validate_key, PeerFields, PeerRecord};
use pickle::Py;

/// A well-formed frame: a request to answer, or type 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Type 1: close the connection, no reply.
    Close,
    Request(Request),
}

/// A well-formed request that gets a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Type 2: the whole table, as a pickle or (with `"format": "json"`) as JSON.
    Table { json: bool },
    /// Type 3.
    Add { key: String, fields: PeerFields },
    /// Type 4.
    Remove { key: String },
    /// Type 6.
    Update { key: String, fields: PeerFields },
    /// Type 7.
    Get { key: String },
    /// Type 8: this node's own record.
    Identity,
    /// Type 9: node status.
    Status,
    /// Type 10: the node records' liveness as this node sees it.
    Members,
    /// Type 11: turn the connection into a stream of changes, after a snapshot if asked.
    Watch { snapshot: bool },
}

/// The `data` of an error reply: `false` for add/update (as the original), `null` otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorData {
    Null,
    False,
}

/// A request that cannot be served, with everything needed to answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest {
    pub action: &'static str,
    pub data: ErrorData,
    pub error: String,
    /// Malformed JSON: the stream cannot be resynchronised, so the connection is closed after the reply.
    pub fatal: bool,
}

impl BadRequest {
    fn new(action: &'static str, error: impl Into<String>) -> Self {
        let data =
            if matches!(action, ACTION_ADD | ACTION_UPDATE) { ErrorData::False } else { ErrorData::Null };
        BadRequest { action, data, error: error.into(), fatal: false }
    }

    pub fn encode(&self) -> Vec<u8> {
        match self.data {
            ErrorData::Null => error_reply(self.action, &(), &self.error),
            ErrorData::False => error_reply(self.action, &false, &self.error),
        }
    }
}

pub const ACTION_TABLE: &str = "hashtable get";
pub const ACTION_ADD: &str = "peer add";
pub const ACTION_REMOVE: &str = "peer remove";
pub const ACTION_UPDATE: &str = "peer update";
pub const ACTION_GET: &str = "peer get";
pub const ACTION_ID: &str = "peer id";
pub const ACTION_STATUS: &str = "node status";
pub const ACTION_MEMBERS: &str = "members";
/// The action named in replies to requests whose type is unknown or unreadable.
pub const ACTION_REQUEST: &str = "request";
/// The action named when a connection is refused.
pub const ACTION_CONNECT: &str = "connect";

/// Parses one complete JSON frame into a request.
pub fn parse(frame: &[u8]) -> Result<Frame, BadRequest> {
    match parse_plain(frame).or_else(|| parse_get_fast(frame)) {
        Some(get) => Ok(Frame::Request(get)),
        None => parse_tree(frame),
    }
}

/// The full parse: through a JSON tree, with a worded error for every way a frame can be wrong.
fn parse_tree(frame: &[u8]) -> Result<Frame, BadRequest> {
    let value: Value = serde_json::from_slice(frame).map_err(|e| BadRequest {
        fatal: true,
        ..BadRequest::new(ACTION_REQUEST, format!("malformed JSON: {e}"))
    })?;
    let Value::Object(obj) = value else {
        return Err(BadRequest::new(ACTION_REQUEST, "a request must be a JSON object"));
    };
    let kind = match obj.get("message_type") {
        None => return Err(BadRequest::new(ACTION_REQUEST, "missing field `message_type`")),
        Some(v) => message_type(v).ok_or_else(|| {
            BadRequest::new(ACTION_REQUEST, format!("`message_type` must be an integer, got {v}"))
        })?,
    };
    parse_request(kind, &obj).map(|r| r.map_or(Frame::Close, Frame::Request))
}

/// The request of type `kind`; `None` for type 1 (close).
fn parse_request(kind: i128, obj: &Map<String, Value>) -> Result<Option<Request>, BadRequest> {
    let request = match kind {
        1 => return Ok(None),
        2 => parse_table(obj),
        3 => {
            let (data, key) = data_and_key(obj, ACTION_ADD)?;
            // Like the original, a name left out is stored as "".
            let fields = fields(data, &key).map_err(|e| BadRequest::new(ACTION_ADD, e))?;
            if fields.ip.is_none() {
                return Err(BadRequest::new(ACTION_ADD, "missing field `peer_ip` (or `ip`)"));
            }
            Ok(Request::Add { key, fields })
        }
        4 => Ok(Request::Remove { key: data_and_key(obj, ACTION_REMOVE)?.1 }),
        6 => {
            let (data, key) = data_and_key(obj, ACTION_UPDATE)?;
            let fields = fields(data, &key).map_err(|e| BadRequest::new(ACTION_UPDATE, e))?;
            Ok(Request::Update { key, fields })
        }
        7 => Ok(Request::Get { key: data_and_key(obj, ACTION_GET)?.1 }),
        8 => Ok(Request::Identity),
        9 => Ok(Request::Status),
        10 => Ok(Request::Members),
        11 => watch::parse(obj),
        5 => Err(BadRequest::new(ACTION_REQUEST, "message_type 5 is reserved and not implemented")),
        n => Err(BadRequest::new(ACTION_REQUEST, format!("unknown message_type {n}"))),
    };
    request.map(Some)
}

/// A well-formed `get` (type 7), read without building a JSON tree: the request a serial client
/// repeats most. Anything else, and anything this does not accept as it is (a float type, a
/// duplicate field, a wrong type, an over-long or invalid key), returns `None` and goes through
/// the full parse, which also words the errors; so both paths give the same answer.
fn parse_get_fast(frame: &[u8]) -> Option<Request> {
    #[derive(Deserialize)]
    struct Get<'a> {
        message_type: u64,
        #[serde(borrow)]
        data: Keys<'a>,
    }
    #[derive(Deserialize)]
    struct Keys<'a> {
        #[serde(borrow)]
        peer_id: Option<Cow<'a, str>>,
        #[serde(borrow)]
        peer_ip: Option<Cow<'a, str>>,
        #[serde(borrow)]
        ip: Option<Cow<'a, str>>,
    }
    let get: Get<'_> = serde_json::from_slice(frame).ok()?;
    let Keys { peer_id, peer_ip, ip } = get.data;
    let fits = |f: &Option<Cow<'_, str>>| f.as_ref().is_none_or(|s| s.len() <= MAX_STRING_BYTES);
    if get.message_type != 7 || !(fits(&peer_id) && fits(&peer_ip) && fits(&ip)) {
        return None;
    }
    let key = peer_id.or(peer_ip).or(ip)?;
    validate_key(&key).ok()?;
    Some(Request::Get { key: key.into_owned() })
}

/// A `get`, `add` or `update` in the shape clients send them (`{"message_type": 7, "data":
/// {"peer_ip": "..."}}`, any whitespace, either order; in `data`, the key and record fields as
/// plain ASCII strings, or `null` where the full parse skips a null), read byte by byte without
/// serde: a JSON tree costs a get a third of its own CPU time, and an add a microsecond. Anything
/// else (an escape, a non-ASCII byte, a number, another field, a repeated one) returns `None` and
/// goes on to the serde parses, which take every well-formed request; what this accepts, they
/// read the same (a test holds them equal).
fn parse_plain(frame: &[u8]) -> Option<Request> {
    let mut p = Plain { s: frame, at: 0 };
    p.expect(b'{')?;
    let (mut kind, mut data) = (None, None);
    loop {
        let name = p.string()?;
        p.expect(b':')?;
        match name {
            // One digit: the next byte must end the value, or the loop gives up below.
            b"message_type" if kind.is_none() => kind = Some(p.next()?),
            b"data" if data.is_none() => data = Some(p.fields()?),
            _ => return None,
        }
        if p.next()? == b'}' {
            break;
        }
        p.back_to(b',')?;
    }
    p.end()?;
    let [peer_id, peer_ip, ip, peer_port, port, peer_name, name] = data?;
    fn text(f: Option<Option<&[u8]>>) -> Option<&str> {
        f.flatten().and_then(|b| std::str::from_utf8(b).ok())
    }
    // The full parse's rule: the first of the aliases given, and a null counts as not given.
    let ip_field = text(peer_ip).or(text(ip));
    let key = text(peer_id).or(ip_field)?;
    validate_key(key).ok()?;
    let kind = kind?;
    if kind == b'7' {
        // A get names only its key.
        return [peer_port, port, peer_name, name]
            .iter()
            .all(Option::is_none)
            .then(|| Request::Get { key: key.to_owned() });
    }
    // The full parse takes `peer_port` whenever it is there, even as null: left to it.
    if matches!(peer_port, Some(None)) || matches!(port, Some(None)) {
        return None;
    }
    let fields = PeerFields {
        name: text(peer_name).or(text(name)).map(str::to_owned),
        ip: ip_field.map(str::to_owned),
        port: text(peer_port).or(text(port)).map(str::to_owned),
        peer_id: text(peer_id).map(str::to_owned),
        ports: None,
        addrs: None,
    };
    let key = key.to_owned();
    match kind {
        b'3' if fields.ip.is_some() => Some(Request::Add { key, fields }),
        b'6' => Some(Request::Update { key, fields }),
        _ => None,
    }
}

/// The fields [`parse_plain`] reads from `data`, in the order [`Plain::fields`] returns them.
const PLAIN_FIELDS: [&[u8]; 7] =
    [b"peer_id", b"peer_ip", b"ip", b"peer_port", b"port", b"peer_name", b"name"];

/// A cursor over a frame for [`parse_plain`]; every method returns `None` where the frame
/// leaves the plain shape.
struct Plain<'a> {
    s: &'a [u8],
    at: usize,
}

impl<'a> Plain<'a> {
    /// The next byte after JSON whitespace, consumed.
    fn next(&mut self) -> Option<u8> {
        while let Some(&b) = self.s.get(self.at) {
            self.at += 1;
            if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                return Some(b);
            }
        }
        None
    }

    fn expect(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    /// After [`Plain::next`] returned a byte that was not `}`: it must have been `want`.
    fn back_to(&self, want: u8) -> Option<()> {
        (self.s[self.at - 1] == want).then_some(())
    }

    /// Only whitespace is left.
    fn end(&mut self) -> Option<()> {
        self.next().is_none().then_some(())
    }

    /// A string of printable ASCII without escapes, at most [`MAX_STRING_BYTES`] long, as bytes
    /// (which are valid UTF-8).
    fn string(&mut self) -> Option<&'a [u8]> {
        self.expect(b'"')?;
        let start = self.at;
        loop {
            match *self.s.get(self.at)? {
                b'"' => break,
                b'\\' | 0..0x20 | 0x7f.. => return None,
                _ => self.at += 1,
            }
        }
        let text = &self.s[start..self.at];
        self.at += 1;
        (text.len() <= MAX_STRING_BYTES).then_some(text)
    }

    /// `data`: each of [`PLAIN_FIELDS`] once at most (`None`: absent), a string or `null`
    /// (`Some(None)`).
    fn fields(&mut self) -> Option<[Option<Option<&'a [u8]>>; 7]> {
        self.expect(b'{')?;
        let mut fields = [None; 7];
        loop {
            let name = self.string()?;
            let i = PLAIN_FIELDS.iter().position(|f| *f == name)?;
            if fields[i].is_some() {
                return None;
            }
            self.expect(b':')?;
            fields[i] = Some(match self.next()? {
                b'"' => {
                    self.at -= 1;
                    Some(self.string()?)
                }
                b'n' if self.s[self.at..].starts_with(b"ull") => {
                    self.at += 3;
                    None
                }
                _ => return None,
            });
            if self.next()? == b'}' {
                return Some(fields);
            }
            self.back_to(b',')?;
        }
    }
}

/// The message type as an integer; like the Python original, `3.0` counts as 3.
fn message_type(v: &Value) -> Option<i128> {
    let n = v.as_number()?;
    if let Some(i) = n.as_i64() {
        return Some(i.into());
    }
    if let Some(u) = n.as_u64() {
        return Some(u.into());
    }
    n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 1e18).map(|f| f as i128)
}

fn parse_table(obj: &Map<String, Value>) -> Result<Request, BadRequest> {
    let format = obj.get("format").or_else(|| obj.get("data").and_then(|d| d.get("format")));
    match format {
        None | Some(Value::Null) => Ok(Request::Table { json: false }),
        Some(Value::String(f)) if f == "pickle" => Ok(Request::Table { json: false }),
        Some(Value::String(f)) if f == "json" => Ok(Request::Table { json: true }),
        Some(other) => Err(BadRequest::new(
            ACTION_TABLE,
            format!("`format` must be \"json\" or \"pickle\", got {other}"),
        )),
    }
}

/// The `data` object and the record key: `peer_id` if given, else `peer_ip` (alias `ip`).
fn data_and_key<'a>(
    obj: &'a Map<String, Value>,
    action: &'static str,
) -> Result<(&'a Map<String, Value>, String), BadRequest> {
    let data = match obj.get("data") {
        Some(Value::Object(d)) => d,
        None => return Err(BadRequest::new(action, "missing field `data`")),
        Some(_) => return Err(BadRequest::new(action, "`data` must be a JSON object")),
    };
    let bad = |e: String| BadRequest::new(action, e);
    let key = match string_field(data, &["peer_id"]).map_err(bad)? {
        Some(id) => id,
        None => string_field(data, &["peer_ip", "ip"]).map_err(bad)?.ok_or_else(|| {
            BadRequest::new(action, "missing field `peer_id` or `peer_ip` (the record key)")
        })?,
    };
    validate_key(&key).map_err(|e| BadRequest::new(action, e.to_string()))?;
    Ok((data, key))
}

/// The first present field of `names` as a string; `null` counts as absent.
fn string_field(data: &Map<String, Value>, names: &[&str]) -> Result<Option<String>, String> {
    for name in names {
        match data.get(*name) {
            None | Some(Value::Null) => continue,
            Some(Value::String(s)) if s.len() > MAX_STRING_BYTES => {
                return Err(format!("field `{name}` is longer than {MAX_STRING_BYTES} bytes"))
            }
            Some(Value::String(s)) => return Ok(Some(s.clone())),
            Some(v) => return Err(format!("field `{name}` must be a string, got {}", type_name(v))),
        }
    }
    Ok(None)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn port_value(name: &str, v: &Value) -> Result<u16, String> {
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse::<u64>().ok(),
        _ => None,
    };
    n.and_then(|n| u16::try_from(n).ok())
        .ok_or_else(|| format!("field `{name}` must be a port number (0-65535), got {v}"))
}

/// The client-settable fields of both revisions.
fn fields(data: &Map<String, Value>, key: &str) -> Result<PeerFields, String> {
    let port = match data.get("peer_port").or_else(|| data.get("port")) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.len() > MAX_STRING_BYTES => {
            return Err(format!("field `peer_port` is longer than {MAX_STRING_BYTES} bytes"))
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(v @ Value::Number(_)) => Some(port_value("peer_port", v)?.to_string()),
        Some(v) => return Err(format!("field `peer_port` must be a string, got {}", type_name(v))),
    };
    let ports = match data.get("ports") {
        // `""` is what the original stored when a client sent no ports; it comes back on re-adds.
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::Object(m)) if m.len() > MAX_PORTS => {
            return Err(format!("field `ports` has more than {MAX_PORTS} entries"))
        }
        Some(Value::Object(m)) => {
            let mut ports = BTreeMap::new();
            for (name, v) in m {
                if name.len() > MAX_STRING_BYTES {
                    return Err(format!("a name in `ports` is longer than {MAX_STRING_BYTES} bytes"));
                }
                ports.insert(name.clone(), port_value(&format!("ports.{name}"), v)?);
            }
            Some(ports)
        }
        Some(v) => return Err(format!("field `ports` must be an object, got {}", type_name(v))),
    };
    let peer_id = string_field(data, &["peer_id"])?;
    let mut ip = string_field(data, &["peer_ip", "ip"])?;
    if ip.is_none() && peer_id.is_none() {
        ip = Some(key.to_owned());
    }
    Ok(PeerFields {
        name: string_field(data, &["peer_name", "name"])?,
        ip,
        port,
        peer_id,
        ports,
        addrs: None,
    })
}

/// Python's `json.dumps` layout: `", "` between items and `": "` after keys.
struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }
    fn begin_object_key<W: ?Sized + io::Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }
    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }
    /// Non-ASCII as `\uXXXX` (UTF-16, lowercase hex), as `json.dumps` does by default.
    fn write_string_fragment<W: ?Sized + io::Write>(&mut self, w: &mut W, fragment: &str) -> io::Result<()> {
        if fragment.is_ascii() {
            return w.write_all(fragment.as_bytes());
        }
        let mut units = [0u16; 2];
        for c in fragment.chars() {
            if c.is_ascii() {
                w.write_all(&[c as u8])?;
            } else {
                for unit in c.encode_utf16(&mut units) {
                    write!(w, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

#[derive(Serialize)]
struct Reply<'a, T: Serialize> {
    action: &'a str,
    result: &'a str,
    data: T,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

fn encode<T: Serialize>(reply: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    reply.serialize(&mut ser).expect("replies always serialize");
    out.push(b'\n');
    out
}

/// `{"action": A, "result": "completed", "data": D}` and a newline.
pub fn completed<T: Serialize>(action: &str, data: &T) -> Vec<u8> {
    encode(&Reply { action, result: "completed", data, error: None })
}

/// The original's failure reply (no `error` field), e.g. "key exists" for an add.
pub fn failed<T: Serialize>(action: &str, data: &T) -> Vec<u8> {
    encode(&Reply { action, result: "error", data, error: None })
}

/// A failure reply that says what was wrong.
pub fn error_reply<T: Serialize>(action: &str, data: &T, error: &str) -> Vec<u8> {
    encode(&Reply { action, result: "error", data, error: Some(error) })
}

/// A record as clients see it: the original's field names, timestamps as strings.
pub struct RecordView<'a>(pub &'a PeerRecord);

impl Serialize for RecordView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut m = s.serialize_map(None)?;
        if let Some(id) = &r.peer_id {
            m.serialize_entry("peer_id", id)?;
        }
        m.serialize_entry("name", &r.name)?;
        m.serialize_entry("ip", &r.ip)?;
        m.serialize_entry("port", &r.port)?;
        if shows_ports(r) {
            m.serialize_entry("ports", &r.ports)?;
        }
        if !r.addrs.is_empty() {
            m.serialize_entry("addrs", &r.addrs)?;
        }
        let mut buf = [0u8; TIMESTAMP_LEN];
        for (name, us) in [
            ("createdAt", r.created_at),
            ("updatedAt", r.updated_at),
            ("lastConnectionOn", r.last_connection_on),
        ] {
            let text = std::str::from_utf8(format_micros_into(us, &mut buf)).expect("digits and punctuation");
            m.serialize_entry(name, text)?;
        }
        m.end()
    }
}

/// Whether a record shows `ports`: always on records with a peer id (the later revision's
/// records, nodes' own records among them, always carried it: clients read
/// `peer["ports"]["networkLayer"]`), and on any record that has some.
fn shows_ports(r: &PeerRecord) -> bool {
    r.peer_id.is_some() || !r.ports.is_empty()
}

/// A record as the Python value clients unpickle: the same fields as [`RecordView`] (a test
/// holds them equal).
fn record_py(r: &PeerRecord) -> Py<'_> {
    let mut items = Vec::with_capacity(10);
    if let Some(id) = &r.peer_id {
        items.push((Py::str("peer_id"), Py::str(id)));
    }
    items.push((Py::str("name"), Py::str(&r.name)));
    items.push((Py::str("ip"), Py::str(&r.ip)));
    items.push((Py::str("port"), Py::str(&r.port)));
    if shows_ports(r) {
        let ports = r.ports.iter().map(|(name, port)| (Py::str(name), Py::Int(i64::from(*port))));
        items.push((Py::str("ports"), Py::Dict(ports.collect())));
    }
    if !r.addrs.is_empty() {
        items.push((Py::str("addrs"), Py::List(r.addrs.iter().map(|a| Py::str(a)).collect())));
    }
    let mut buf = [0u8; TIMESTAMP_LEN];
    for (name, us) in
        [("createdAt", r.created_at), ("updatedAt", r.updated_at), ("lastConnectionOn", r.last_connection_on)]
    {
        let text = String::from_utf8_lossy(format_micros_into(us, &mut buf)).into_owned();
        items.push((Py::str(name), Py::Str(Cow::Owned(text))));
    }
    Py::Dict(items)
}

/// One node record's liveness, as `message_type 10` lists it.
pub struct MemberRow<'a> {
    pub peer_id: &'a str,
    pub name: &'a str,
    pub state: &'a str,
    /// Microseconds since the epoch.
    pub last_seen_us: i64,
    pub connected: bool,
}

impl Serialize for MemberRow<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(5))?;
        m.serialize_entry("peer_id", self.peer_id)?;
        m.serialize_entry("name", self.name)?;
        m.serialize_entry("state", self.state)?;
        let mut buf = [0u8; TIMESTAMP_LEN];
        let text = std::str::from_utf8(format_micros_into(self.last_seen_us, &mut buf))
            .expect("digits and punctuation");
        m.serialize_entry("last_seen", text)?;
        m.serialize_entry("connected", &self.connected)?;
        m.end()
    }
}

/// The whole table as a map key -> record.
pub struct TableView<'a>(pub &'a [(Arc<str>, Arc<PeerRecord>)]);

impl Serialize for TableView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, r) in self.0 {
            m.serialize_entry(&**k, &RecordView(r))?;
        }
        m.end()
    }
}

/// The table as the original sent it: a bare pickle (protocol 4) of a dict, no framing.
pub fn table_pickle(table: &[(Arc<str>, Arc<PeerRecord>)]) -> Vec<u8> {
    let items = table.iter().map(|(k, r)| (Py::str(k), record_py(r))).collect();
    pickle::dumps(&Py::Dict(items))
}

pub(crate) mod pickle;
#[cfg(test)]
mod tests;
