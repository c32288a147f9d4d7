//! The one-record replies (`get`, `identity`) written by hand. They are the hottest replies of the
//! socket, and serde's generic path spends ~350 ns of CPU on each (field by field, every string
//! through the formatter) against ~130 ns here (`manager_bench` measures both). The bytes
//! are exactly what [`completed`](super::completed) with [`RecordView`](super::RecordView) writes;
//! a property test holds the two equal, so the serde path stays the definition.

use super::{shows_ports, PythonFormatter};
use crate::core::PeerRecord;
use crate::manager::timestamp::{format_micros_into, TIMESTAMP_LEN};

/// `{"action": A, "result": "completed", "data": RECORD}` and a newline.
pub fn completed_record(action: &str, r: &PeerRecord) -> Vec<u8> {
    // Enough for a typical record with a few ports and addresses, so it is written in one go.
    let mut out = Vec::with_capacity(384);
    out.extend_from_slice(b"{\"action\": ");
    write_str(&mut out, action);
    out.extend_from_slice(b", \"result\": \"completed\", \"data\": ");
    write_record(&mut out, r);
    out.extend_from_slice(b"}\n");
    out
}

/// A record as [`RecordView`](super::RecordView) lays it out: the same fields, in the same order.
fn write_record(out: &mut Vec<u8>, r: &PeerRecord) {
    out.push(b'{');
    if let Some(id) = &r.peer_id {
        out.extend_from_slice(b"\"peer_id\": ");
        write_str(out, id);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(b"\"name\": ");
    write_str(out, &r.name);
    out.extend_from_slice(b", \"ip\": ");
    write_str(out, &r.ip);
    out.extend_from_slice(b", \"port\": ");
    write_str(out, &r.port);
    if shows_ports(r) {
        out.extend_from_slice(b", \"ports\": {");
        for (i, (name, port)) in r.ports.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            write_str(out, name);
            out.extend_from_slice(b": ");
            write_u16(out, *port);
        }
        out.push(b'}');
    }
    if !r.addrs.is_empty() {
        out.extend_from_slice(b", \"addrs\": [");
        for (i, addr) in r.addrs.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            write_str(out, addr);
        }
        out.push(b']');
    }
    // The three are often equal (a record never updated): each distinct value is formatted once.
    let mut buf = [0u8; TIMESTAMP_LEN];
    let mut formatted = None;
    for (name, us) in [
        (&b", \"createdAt\": \""[..], r.created_at),
        (b", \"updatedAt\": \"", r.updated_at),
        (b", \"lastConnectionOn\": \"", r.last_connection_on),
    ] {
        if formatted != Some(us) {
            format_micros_into(us, &mut buf);
            formatted = Some(us);
        }
        out.extend_from_slice(name);
        out.extend_from_slice(&buf);
        out.push(b'"');
    }
    out.push(b'}');
}

/// A JSON string. Printable ASCII without quotes or backslashes (nearly every name, address and
/// key) is copied as it is; anything else goes through serde_json with the Python formatter, so
/// escapes and `\uXXXX` are exactly `json.dumps`'s.
fn write_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        let mut ser = serde_json::Serializer::with_formatter(&mut *out, PythonFormatter);
        serde::Serialize::serialize(s, &mut ser).expect("writing to a Vec cannot fail");
    }
}

fn write_u16(out: &mut Vec<u8>, n: u16) {
    let mut digits = [0u8; 5];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

#[cfg(test)]
mod tests {
    use super::super::{completed, RecordView, ACTION_GET, ACTION_ID};
    use super::*;
    use proptest::prelude::*;

    fn any_text() -> impl Strategy<Value = String> {
        // Plain ASCII most of the time (the fast path), and quotes, backslashes, control
        // characters, DEL, accents and astral characters (the escaped path).
        prop_oneof!["[a-zA-Z0-9 ./:_-]{0,24}", "[a-z\"\\\\\u{0}-\u{1f}\u{7f}é€😀 ]{0,12}",]
    }

    fn any_record() -> impl Strategy<Value = PeerRecord> {
        (
            (any_text(), any_text(), any_text(), proptest::option::of(any_text())),
            proptest::collection::btree_map(any_text(), any::<u16>(), 0..4),
            proptest::collection::vec(any_text(), 0..3),
            (any::<i64>(), any::<i64>(), any::<i64>()),
        )
            .prop_map(|((name, ip, port, peer_id), ports, addrs, (c, u, l))| PeerRecord {
                name,
                ip,
                port,
                peer_id,
                ports,
                addrs,
                created_at: c,
                updated_at: u,
                last_connection_on: l,
            })
    }

    proptest! {
        #[test]
        fn writes_exactly_what_the_serde_path_writes(r in any_record()) {
            for action in [ACTION_GET, ACTION_ID] {
                let fast = completed_record(action, &r);
                let serde = completed(action, &RecordView(&r));
                prop_assert_eq!(String::from_utf8_lossy(&fast), String::from_utf8_lossy(&serde));
            }
        }
    }

    #[test]
    fn u16_digits() {
        for n in [0u16, 7, 10, 99, 100, 6002, 65535] {
            let mut out = Vec::new();
            write_u16(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
    }
}
