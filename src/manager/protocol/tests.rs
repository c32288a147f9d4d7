//! The protocol's unit tests.

use super::*;

/// The request in a frame that must hold one.
fn request(frame: &[u8]) -> Result<Request, BadRequest> {
    parse(frame).map(|f| match f {
        Frame::Request(r) => r,
        Frame::Close => panic!("a close frame"),
    })
}

fn bad(frame: &str) -> BadRequest {
    request(frame.as_bytes()).unwrap_err()
}

#[test]
fn both_revisions_parse_to_the_same_fields() {
    let r1 =
        request(br#"{"message_type":3,"data":{"peer_ip":"1.2.3.4","peer_port":"8001","peer_name":"F"}}"#)
            .unwrap();
    assert_eq!(
        r1,
        Request::Add {
            key: "1.2.3.4".into(),
            fields: PeerFields {
                name: Some("F".into()),
                ip: Some("1.2.3.4".into()),
                port: Some("8001".into()),
                ..Default::default()
            }
        }
    );
    let r2 = request(
        br#"{"message_type":3,"data":{"peer_id":"Qm1","name":"F","ip":"1.2.3.4","ports":{"userSync":3003}}}"#,
    )
    .unwrap();
    let Request::Add { key, fields } = r2 else { panic!() };
    assert_eq!(key, "Qm1");
    assert_eq!(fields.ports.unwrap()["userSync"], 3003);
    assert_eq!(fields.peer_id.as_deref(), Some("Qm1"));
}

#[test]
fn each_bad_input_names_what_was_wrong() {
    assert!(bad("{").fatal);
    assert!(bad("{").error.starts_with("malformed JSON"));
    assert_eq!(bad("[1]").error, "a request must be a JSON object");
    assert_eq!(bad("{}").error, "missing field `message_type`");
    assert!(bad(r#"{"message_type":"3"}"#).error.contains("must be an integer"));
    assert_eq!(bad(r#"{"message_type":5}"#).error, "message_type 5 is reserved and not implemented");
    assert_eq!(bad(r#"{"message_type":42}"#).error, "unknown message_type 42");
    // A name left out is stored as "" (as the original did); a name of the wrong type is refused.
    let e = bad(r#"{"message_type":3,"data":{"peer_ip":"1.2.3.4","peer_port":"1","peer_name":5}}"#);
    assert_eq!((e.action, e.data), (ACTION_ADD, ErrorData::False));
    assert!(e.error.contains("peer_name"));
    assert!(bad(r#"{"message_type":7,"data":{"peer_ip":7}}"#).error.contains("must be a string"));
    assert_eq!(bad(r#"{"message_type":7,"data":{"peer_ip":""}}"#).error, "key is empty");
    assert!(bad(r#"{"message_type":7}"#).error.contains("missing field `data`"));
    let long = format!(r#"{{"message_type":6,"data":{{"peer_ip":"1","peer_name":"{}"}}}}"#, "x".repeat(1025));
    assert!(bad(&long).error.contains("longer than 1024"));
    assert!(!bad(&long).fatal);
}

#[test]
fn non_ascii_is_escaped_like_json_dumps() {
    assert_eq!(
        completed(ACTION_GET, &"é😀"),
        b"{\"action\": \"peer get\", \"result\": \"completed\", \"data\": \"\\u00e9\\ud83d\\ude00\"}\n"
    );
    assert_eq!(
        request(br#"{"message_type":7.0,"data":{"peer_ip":"1"}}"#),
        Ok(Request::Get { key: "1".into() })
    );
    assert_eq!(
        bad(r#"{"message_type":9223372036854775808}"#).error,
        "unknown message_type 9223372036854775808"
    );
}

fn sent(request: ClientRequest<'_>) -> String {
    String::from_utf8(request.encode()).unwrap()
}

#[test]
fn typed_requests_are_sent_as_the_hand_built_ones_were() {
    // Each expected string is what `ctl` sent before the requests were typed.
    let add = PeerData {
        ip: Some("1.2.3.4".into()),
        port: Some("8001".into()),
        name: Some("Felipe Nunes".into()),
        ports: Some([("userSync".to_string(), 3003), ("fileSync".to_string(), 3004)].into()),
        ..Default::default()
    };
    assert_eq!(
        sent(ClientRequest::Add(&add)),
        r#"{"data":{"peer_ip":"1.2.3.4","peer_name":"Felipe Nunes","peer_port":"8001","ports":{"fileSync":3004,"userSync":3003}},"message_type":3}"#
    );
    let update =
        PeerData { peer_id: Some("12D3KooWX".into()), name: Some("Ana".into()), ..Default::default() };
    assert_eq!(
        sent(ClientRequest::Update(&update)),
        r#"{"data":{"peer_id":"12D3KooWX","peer_name":"Ana"},"message_type":6}"#
    );
    assert_eq!(sent(ClientRequest::Add(&PeerData::default())), r#"{"data":{},"message_type":3}"#);
    let both = PeerData {
        peer_id: Some("Qm1".into()),
        ip: Some("1.2.3.4".into()),
        ports: Some([("a".to_string(), 2)].into()),
        ..Default::default()
    };
    assert_eq!(
        sent(ClientRequest::Update(&both)),
        r#"{"data":{"peer_id":"Qm1","peer_ip":"1.2.3.4","ports":{"a":2}},"message_type":6}"#
    );
    assert_eq!(sent(ClientRequest::Get("101.3.4.2")), r#"{"data":{"peer_id":"101.3.4.2"},"message_type":7}"#);
    assert_eq!(
        sent(ClientRequest::Remove("12D3KooWX")),
        r#"{"data":{"peer_id":"12D3KooWX"},"message_type":4}"#
    );
    assert_eq!(sent(ClientRequest::Table { json: true }), r#"{"format":"json","message_type":2}"#);
    assert_eq!(sent(ClientRequest::Table { json: false }), r#"{"message_type":2}"#);
    assert_eq!(sent(ClientRequest::Identity), r#"{"message_type":8}"#);
    assert_eq!(sent(ClientRequest::Status), r#"{"message_type":9}"#);
    assert_eq!(sent(ClientRequest::Members), r#"{"message_type":10}"#);
    assert_eq!(sent(ClientRequest::Close), r#"{"message_type":1}"#);
}

#[test]
fn typed_requests_parse_back_to_what_they_say() {
    let peer = PeerData {
        ip: Some("1.2.3.4".into()),
        port: Some("8001".into()),
        name: Some("F".into()),
        ports: Some([("userSync".to_string(), 3003)].into()),
        ..Default::default()
    };
    let fields = PeerFields {
        name: Some("F".into()),
        ip: Some("1.2.3.4".into()),
        port: Some("8001".into()),
        peer_id: None,
        ports: Some([("userSync".to_string(), 3003)].into()),
        addrs: None,
    };
    let key = "1.2.3.4".to_string();
    let back = |r: ClientRequest<'_>| request(&r.encode());
    assert_eq!(
        back(ClientRequest::Add(&peer)),
        Ok(Request::Add { key: key.clone(), fields: fields.clone() })
    );
    assert_eq!(back(ClientRequest::Update(&peer)), Ok(Request::Update { key, fields }));
    let by_id = PeerData { peer_id: Some("Qm1".into()), name: Some("A".into()), ..Default::default() };
    let Ok(Request::Update { key, fields }) = back(ClientRequest::Update(&by_id)) else { panic!() };
    assert_eq!((key.as_str(), fields.peer_id.as_deref(), fields.ip), ("Qm1", Some("Qm1"), None));
    assert_eq!(back(ClientRequest::Get("k")), Ok(Request::Get { key: "k".into() }));
    assert_eq!(back(ClientRequest::Remove("k")), Ok(Request::Remove { key: "k".into() }));
    assert_eq!(back(ClientRequest::Table { json: true }), Ok(Request::Table { json: true }));
    assert_eq!(back(ClientRequest::Table { json: false }), Ok(Request::Table { json: false }));
    assert_eq!(back(ClientRequest::Identity), Ok(Request::Identity));
    assert_eq!(back(ClientRequest::Status), Ok(Request::Status));
    assert_eq!(back(ClientRequest::Members), Ok(Request::Members));
    assert_eq!(parse(&ClientRequest::Close.encode()), Ok(Frame::Close));
}

#[test]
fn the_fast_get_parse_agrees_with_the_full_parse_or_leaves_the_frame_to_it() {
    let long = "k".repeat(MAX_STRING_BYTES + 1);
    let frames = [
        r#"{"message_type": 7, "data": {"peer_ip": "1.2.3.4"}}"#.to_owned(),
        r#"{"message_type":7,"data":{"peer_id":"Qm1","peer_ip":"1.2.3.4"}}"#.to_owned(),
        r#"{"data": {"ip": "1.2.3.4", "x": [1, {"y": 2}]}, "message_type": 7, "z": null}"#.to_owned(),
        r#"{"message_type": 7, "data": {"peer_id": null, "peer_ip": "a\"b\u00e9"}}"#.to_owned(),
        r#"{"message_type": 7.0, "data": {"peer_ip": "1"}}"#.to_owned(),
        r#"{"message_type": 7, "data": {"peer_ip": "1", "peer_ip": "2"}}"#.to_owned(),
        r#"{"message_type": 7, "data": {"peer_ip": 5}}"#.to_owned(),
        r#"{"message_type": 7, "data": {"peer_ip": ""}}"#.to_owned(),
        r#"{"message_type": 7, "data": {}}"#.to_owned(),
        r#"{"message_type": 7, "data": "x"}"#.to_owned(),
        r#"{"message_type": 3, "data": {"peer_ip": "1", "peer_name": "n"}}"#.to_owned(),
        format!(r#"{{"message_type": 7, "data": {{"peer_id": "Qm1", "peer_ip": "{long}"}}}}"#),
        format!(r#"{{"message_type": 7, "data": {{"peer_ip": "{}"}}}}"#, "k".repeat(300)),
    ];
    let mut fast = 0;
    for f in &frames {
        let full = parse_tree(f.as_bytes());
        if let Some(get) = parse_get_fast(f.as_bytes()) {
            fast += 1;
            assert_eq!(Ok(Frame::Request(get)), full, "{f}");
        }
        assert_eq!(parse(f.as_bytes()), full, "{f}");
    }
    assert_eq!(fast, 4, "the well-formed gets take the fast path");
}

#[test]
fn the_plain_parse_agrees_with_the_serde_ones_or_leaves_the_frame_to_them() {
    let long = "k".repeat(MAX_STRING_BYTES + 1);
    let frames = [
        // Taken by the plain parse.
        r#"{"message_type": 7, "data": {"peer_ip": "1.2.3.4"}}"#.to_owned(),
        r#"{"message_type":7,"data":{"peer_id":"Qm1","peer_ip":"1.2.3.4"}}"#.to_owned(),
        " \r\n{ \"data\" :\t{ \"ip\" : \"h\" , \"peer_id\" : null } , \"message_type\" : 7 }\n ".to_owned(),
        r#"{"message_type": 7, "data": {"peer_id": null, "peer_ip": "x", "ip": "y"}}"#.to_owned(),
        r#"{"message_type": 3, "data": {"peer_ip": "10.0.0.1", "peer_port": "8001", "peer_name": "p"}}"#
            .to_owned(),
        r#"{"message_type": 3, "data": {"ip": "h", "port": "1", "name": "n", "peer_name": null}}"#.to_owned(),
        r#"{"data": {"peer_id": "Qm1", "ip": "h", "peer_ip": "i", "name": "n", "peer_name": "m"}, "message_type": 3}"#
            .to_owned(),
        r#"{"message_type": 6, "data": {"peer_ip": "h", "peer_name": "renamed"}}"#.to_owned(),
        r#"{"message_type": 6, "data": {"peer_id": "Qm1", "port": "9"}}"#.to_owned(),
        // Left to the serde parses (some of them the typed get takes, some go to the tree).
        r#"{"data": {"ip": "1.2.3.4", "x": [1, {"y": 2}]}, "message_type": 7, "z": null}"#.to_owned(),
        r#"{"message_type": 7, "data": {"peer_id": null, "peer_ip": "a\"b\u00e9"}}"#.to_owned(),
        "{\"message_type\": 7, \"data\": {\"peer_ip\": \"caf\u{e9}\"}}".to_owned(),
        r#"{"message_type": 7, "data": {"peer_ip": "1", "peer_name": "n"}}"#.to_owned(),
        r#"{"message_type": 7.0, "data": {"peer_ip": "1"}}"#.to_owned(),
        r#"{"message_type": 70, "data": {"peer_ip": "1"}}"#.to_owned(),
        r#"{"message_type": 7, "message_type": 7, "data": {"peer_ip": "1"}}"#.to_owned(),
        r#"{"message_type": 7, "data": {"peer_ip": "1", "peer_ip": "2"}}"#.to_owned(),
        r#"{"message_type": 7, "data": {"peer_ip": nul}}"#.to_owned(),
        r#"{"message_type": 7, "data": {"peer_ip": null}}"#.to_owned(),
        r#"{"message_type": 7, "data": {"peer_ip": 5}}"#.to_owned(),
        r#"{"message_type": 7, "data": {"peer_ip": ""}}"#.to_owned(),
        r#"{"message_type": 7, "data": {}}"#.to_owned(),
        r#"{"message_type": 7, "data": "x"}"#.to_owned(),
        r#"{"message_type": 7}"#.to_owned(),
        r#"{"data": {"peer_ip": "1"}}"#.to_owned(),
        r#"{"message_type": 7, "data": {"peer_ip": "1"}} x"#.to_owned(),
        r#"{"message_type": 7, "data": {"peer_ip": "1"},}"#.to_owned(),
        r#"{"message_type": 7, "data": {"peer_ip": "1"}"#.to_owned(),
        r#"{"message_type": 3, "data": {"peer_ip": "1", "peer_port": null, "port": "2"}}"#.to_owned(),
        r#"{"message_type": 3, "data": {"peer_ip": "1", "peer_port": 8001}}"#.to_owned(),
        r#"{"message_type": 3, "data": {"peer_ip": "1", "ports": {"a": 1}}}"#.to_owned(),
        r#"{"message_type": 3, "data": {"peer_id": "Qm1", "peer_name": "n"}}"#.to_owned(),
        r#"{"message_type": 4, "data": {"peer_ip": "1"}}"#.to_owned(),
        r#"{"message_type": 2, "data": {"peer_ip": "1"}}"#.to_owned(),
        format!(r#"{{"message_type": 7, "data": {{"peer_id": "Qm1", "peer_ip": "{long}"}}}}"#),
        format!(r#"{{"message_type": 7, "data": {{"peer_ip": "{}"}}}}"#, "k".repeat(300)),
        format!(r#"{{"message_type": 3, "data": {{"peer_ip": "1", "peer_name": "{long}"}}}}"#),
    ];
    let mut plain = 0;
    for f in &frames {
        let full = parse_tree(f.as_bytes());
        if let Some(request) = parse_plain(f.as_bytes()) {
            plain += 1;
            assert_eq!(Ok(Frame::Request(request.clone())), full, "{f}");
            if matches!(request, Request::Get { .. }) {
                assert_eq!(Some(request), parse_get_fast(f.as_bytes()), "{f}");
            }
        }
        assert_eq!(parse(f.as_bytes()), full, "{f}");
    }
    assert_eq!(plain, 9, "the plain requests take the plain path");
}

#[test]
fn replies_are_laid_out_like_the_original() {
    assert_eq!(
        completed(ACTION_ADD, &true),
        b"{\"action\": \"peer add\", \"result\": \"completed\", \"data\": true}\n"
    );
    assert_eq!(
        failed(ACTION_GET, &()),
        b"{\"action\": \"peer get\", \"result\": \"error\", \"data\": null}\n"
    );
}

fn sample_table() -> Vec<(Arc<str>, Arc<PeerRecord>)> {
    let node = |i: u8, ports: &[(&str, u16)]| PeerRecord {
        name: format!("node-{i}"),
        ip: format!("172.17.0.{i}"),
        port: "4001".into(),
        peer_id: Some(format!("12D3KooWGzBgh8VYfqPWZ1oUkxYTo3Fc6DqbmBz1kLJk3yBr2N{i:02}")),
        ports: ports.iter().map(|(n, p)| (n.to_string(), *p)).collect(),
        addrs: vec![format!(
            "/ip4/172.17.0.{i}/tcp/4001/p2p/12D3KooWGzBgh8VYfqPWZ1oUkxYTo3Fc6DqbmBz1kLJk3yBr2N{i:02}"
        )],
        created_at: 1_764_170_698_123_456,
        updated_at: 1_764_170_698_123_456 + i64::from(i),
        last_connection_on: 1_764_170_698_123_456 + i64::from(i),
    };
    let first_revision = PeerRecord {
        name: "Felipe Nunes".into(),
        ip: "101.3.4.2".into(),
        port: "8002".into(),
        peer_id: None,
        ports: Default::default(),
        addrs: vec![],
        created_at: 0,
        updated_at: 1,
        last_connection_on: 2,
    };
    let three = [("networkLayer", 6002), ("userSync", 3003), ("fileSync", 3001)];
    let mut table: Vec<(Arc<str>, Arc<PeerRecord>)> = (1..=3)
        .map(|i| node(i, &three))
        .chain([node(9, &[])])
        .map(|r| (Arc::from(r.peer_id.clone().unwrap().as_str()), Arc::new(r)))
        .collect();
    table.push((Arc::from("101.3.4.2"), Arc::new(first_revision)));
    // A later-revision record as the original's services add them: three ports, no addresses.
    let service = PeerRecord {
        name: "userSync".into(),
        ip: "198.18.0.7".into(),
        port: String::new(),
        peer_id: Some("QmService".into()),
        ports: three.iter().map(|(n, p)| (n.to_string(), *p)).collect(),
        addrs: vec![],
        created_at: 1_764_170_698_123_456,
        updated_at: 1_764_170_698_123_456,
        last_connection_on: 1_764_170_698_123_456,
    };
    table.push((Arc::from("QmService"), Arc::new(service)));
    table
}

/// The JSON table as Python's `json.loads` would see it, typed like `pickle::tests::typed`.
fn typed_json(v: &Value) -> Value {
    match v {
        Value::Null => serde_json::json!({"NoneType": null}),
        Value::Bool(b) => serde_json::json!({"bool": b}),
        Value::Number(n) => serde_json::json!({"int": n}),
        Value::String(s) => serde_json::json!({"str": s}),
        Value::Array(items) => serde_json::json!({"list": items.iter().map(typed_json).collect::<Vec<_>>()}),
        Value::Object(m) => serde_json::json!({"dict": m
            .iter()
            .map(|(k, v)| serde_json::json!([{"str": k}, typed_json(v)]))
            .collect::<Vec<_>>()}),
    }
}

/// Dict items in a canonical order (JSON objects here are sorted; the pickle keeps field order).
fn sorted_dicts(v: &mut Value) {
    if let Some(items) = v.get_mut("dict").and_then(Value::as_array_mut) {
        for item in items.iter_mut() {
            sorted_dicts(&mut item[1]);
        }
        items.sort_by_key(|item| item[0].to_string());
    } else if let Some(items) = v.get_mut("list").and_then(Value::as_array_mut) {
        items.iter_mut().for_each(sorted_dicts);
    }
}

#[test]
fn the_table_pickle_loads_in_python_as_the_json_table_and_is_no_longer_than_pythons() {
    let table = sample_table();
    let pickle = table_pickle(&table);
    assert_eq!(&pickle[..2], &[0x80, 4], "protocol 4");
    let mut from_python = pickle::tests::python_loads(&pickle);
    let mut from_json = typed_json(&serde_json::to_value(TableView(&table)).unwrap());
    sorted_dicts(&mut from_python);
    sorted_dicts(&mut from_json);
    assert_eq!(from_python, from_json);
    let python = pickle::tests::python_redumped_len(&pickle);
    println!("table of {} records: ours {} bytes, Python's protocol 4 {python}", table.len(), pickle.len());
    assert!(pickle.len() <= python, "ours {} > Python's {python}", pickle.len());
    // Each record alone, against serde-pickle's protocol 3 (what was sent before) and Python's
    // protocol 4 of the same dict.
    for one in table.chunks(1) {
        let ours = table_pickle(one).len();
        let python = pickle::tests::python_redumped_len(&table_pickle(one));
        let before = serde_pickle::to_vec(&TableView(one), serde_pickle::SerOptions::new()).unwrap().len();
        println!(
            "record {}: before (protocol 3) {before}, Python protocol 4 {python}, ours {ours}",
            one[0].0
        );
        assert!(ours <= python && ours < before);
    }
}

#[test]
fn records_with_a_peer_id_always_show_ports() {
    for (_, r) in sample_table() {
        let json = serde_json::to_value(RecordView(&r)).unwrap();
        let expect_ports = r.peer_id.is_some() || !r.ports.is_empty();
        assert_eq!(json.get("ports").is_some(), expect_ports, "{json}");
        if r.peer_id.is_some() && r.ports.is_empty() {
            assert_eq!(json["ports"], serde_json::json!({}));
        }
    }
}

#[test]
fn a_member_row_is_laid_out_like_the_records() {
    let row = MemberRow {
        peer_id: "12D3KooWabc",
        name: "n1",
        state: "suspect",
        last_seen_us: 1_700_000_000_123_456,
        connected: false,
    };
    let reply = String::from_utf8(completed(ACTION_MEMBERS, &[row])).unwrap();
    assert_eq!(
        reply,
        "{\"action\": \"members\", \"result\": \"completed\", \"data\": [{\"peer_id\": \"12D3KooWabc\", \"name\": \"n1\", \"state\": \"suspect\", \"last_seen\": \"2023-11-14 22:13:20.123456\", \"connected\": false}]}\n"
    );
}
