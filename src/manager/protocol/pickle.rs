//! A small writer of Python pickles, protocol 4, for the table reply (`message_type 2`).
//!
//! The original's clients read the whole table with ONE `recv(4024)` (the blockchain) or
//! `recv(1024)` (DHTSync), so every byte per record counts. This writes what Python's own
//! `pickle.dumps(obj, protocol=4)` writes (1-byte string lengths, the smallest integer opcodes)
//! minus what a one-shot reply does not need: no `FRAME` (optional in protocol 4; it only helps
//! a reader of a file), and a memo entry only for a string that repeats often enough to pay for
//! it (field names, port names, equal timestamps), where Python memoizes every string and dict.
//! So for the same value it is never longer than Python's pickle.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A multiply-rotate hasher (as rustc's FxHash) for the string maps below: a 100k-record table
/// hashes over a million short strings, where SipHash's cost shows; nothing here is adversarial
/// beyond a slower reply (the strings are the table's own).
#[derive(Default)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let word = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

// Opcodes (Python's Lib/pickle.py).
const PROTO: u8 = 0x80;
const STOP: u8 = b'.';
const BININT1: u8 = b'K';
const BININT2: u8 = b'M';
const BININT: u8 = b'J';
const LONG1: u8 = 0x8a;
const SHORT_BINUNICODE: u8 = 0x8c;
const BINUNICODE: u8 = b'X';
const BINUNICODE8: u8 = 0x8d;
const EMPTY_LIST: u8 = b']';
const APPEND: u8 = b'a';
const APPENDS: u8 = b'e';
const EMPTY_DICT: u8 = b'}';
const SETITEM: u8 = b's';
const SETITEMS: u8 = b'u';
const MARK: u8 = b'(';
const MEMOIZE: u8 = 0x94;
const BINGET: u8 = b'h';
const LONG_BINGET: u8 = b'j';

/// A Python value of the shapes the manager sends (records hold strings, ints, lists and dicts;
/// never None, bools or floats): what `pickle.loads` gives back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Py<'a> {
    Int(i64),
    Str(Cow<'a, str>),
    List(Vec<Py<'a>>),
    /// Items in order; keys are expected to be distinct (a repeated key keeps the last value).
    Dict(Vec<(Py<'a>, Py<'a>)>),
}

impl<'a> Py<'a> {
    pub fn str(s: &'a str) -> Py<'a> {
        Py::Str(Cow::Borrowed(s))
    }
}

/// `pickle.dumps(value, protocol=4)`, without a frame and with memo entries only where they save
/// bytes.
pub fn dumps(value: &Py<'_>) -> Vec<u8> {
    let mut counts = FastMap::default();
    count_strings(value, &mut counts);
    let mut w = Writer { out: Vec::with_capacity(64 * 1024), counts, memo: FastMap::default() };
    w.out.extend_from_slice(&[PROTO, 4]);
    w.value(value);
    w.out.push(STOP);
    w.out
}

/// How often each string occurs in `value`: a string seen once is never memoized.
fn count_strings<'t>(value: &'t Py<'_>, counts: &mut FastMap<&'t str, usize>) {
    match value {
        Py::Str(s) => *counts.entry(&**s).or_default() += 1,
        Py::List(items) => items.iter().for_each(|v| count_strings(v, counts)),
        Py::Dict(items) => items.iter().for_each(|(k, v)| {
            count_strings(k, counts);
            count_strings(v, counts);
        }),
        Py::Int(_) => {}
    }
}

struct Writer<'t> {
    out: Vec<u8>,
    /// Occurrences not yet written, per string.
    counts: FastMap<&'t str, usize>,
    /// Memoized strings and their memo index.
    memo: FastMap<&'t str, u32>,
}

impl<'t> Writer<'t> {
    fn value(&mut self, value: &'t Py<'_>) {
        match value {
            Py::Int(n) => self.int(*n),
            Py::Str(s) => self.string(s),
            Py::List(items) => {
                self.out.push(EMPTY_LIST);
                match items.as_slice() {
                    [] => {}
                    [one] => {
                        self.value(one);
                        self.out.push(APPEND);
                    }
                    _ => {
                        self.out.push(MARK);
                        items.iter().for_each(|v| self.value(v));
                        self.out.push(APPENDS);
                    }
                }
            }
            Py::Dict(items) => {
                self.out.push(EMPTY_DICT);
                match items.as_slice() {
                    [] => {}
                    [(k, v)] => {
                        self.value(k);
                        self.value(v);
                        self.out.push(SETITEM);
                    }
                    _ => {
                        self.out.push(MARK);
                        for (k, v) in items {
                            self.value(k);
                            self.value(v);
                        }
                        self.out.push(SETITEMS);
                    }
                }
            }
        }
    }

    /// Python's choice: the shortest of BININT1, BININT2, BININT, else LONG1.
    fn int(&mut self, n: i64) {
        if let Ok(b) = u8::try_from(n) {
            self.out.extend_from_slice(&[BININT1, b]);
        } else if let Ok(h) = u16::try_from(n) {
            self.out.push(BININT2);
            self.out.extend_from_slice(&h.to_le_bytes());
        } else if let Ok(i) = i32::try_from(n) {
            self.out.push(BININT);
            self.out.extend_from_slice(&i.to_le_bytes());
        } else {
            // Little-endian two's complement, as short as keeps the sign.
            let bytes = n.to_le_bytes();
            let mut len = bytes.len();
            while len > 1 {
                let (last, prev) = (bytes[len - 1], bytes[len - 2]);
                let redundant = (last == 0x00 && prev & 0x80 == 0) || (last == 0xff && prev & 0x80 != 0);
                if !redundant {
                    break;
                }
                len -= 1;
            }
            self.out.extend_from_slice(&[LONG1, len as u8]);
            self.out.extend_from_slice(&bytes[..len]);
        }
    }

    fn string(&mut self, s: &'t str) {
        if let Some(&index) = self.memo.get(s) {
            self.get(index);
            return;
        }
        let left = self.counts.get_mut(s).map(|c| {
            *c -= 1;
            *c
        });
        let bytes = s.as_bytes();
        if let Ok(len) = u8::try_from(bytes.len()) {
            self.out.extend_from_slice(&[SHORT_BINUNICODE, len]);
        } else if let Ok(len) = u32::try_from(bytes.len()) {
            self.out.push(BINUNICODE);
            self.out.extend_from_slice(&len.to_le_bytes());
        } else {
            self.out.push(BINUNICODE8);
            self.out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        }
        self.out.extend_from_slice(bytes);
        let index = u32::try_from(self.memo.len()).expect("fewer than 2^32 distinct strings");
        if worth_memoizing(bytes.len(), left.unwrap_or(0), index) {
            self.out.push(MEMOIZE);
            self.memo.insert(s, index);
        }
    }

    fn get(&mut self, index: u32) {
        match u8::try_from(index) {
            Ok(i) => self.out.extend_from_slice(&[BINGET, i]),
            Err(_) => {
                self.out.push(LONG_BINGET);
                self.out.extend_from_slice(&index.to_le_bytes());
            }
        }
    }
}

/// Whether one MEMOIZE now and a GET for each of the `left` later occurrences is shorter than
/// writing the string out each time.
fn worth_memoizing(len: usize, left: usize, index: u32) -> bool {
    let written = if len < 256 { 2 + len } else { 5 + len };
    let get = if index < 256 { 2 } else { 5 };
    left * written > 1 + left * get
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    use super::*;

    /// Runs `script` under `python3` with `input` on stdin and returns its stdout.
    pub(crate) fn python(script: &str, input: &[u8]) -> Vec<u8> {
        let mut child = Command::new("python3")
            .args(["-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 is needed to check pickles (.ci/run installs it)");
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "python3 failed: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }

    /// What Python's `pickle.loads` makes of `pickle`, as JSON (with the type of every leaf, so
    /// that an int that came back as a string is seen).
    pub(crate) fn python_loads(pickle: &[u8]) -> serde_json::Value {
        const SCRIPT: &str = r#"
import pickle, sys, json
def typed(v):
    if isinstance(v, dict):
        return {"dict": [[typed(k), typed(x)] for k, x in v.items()]}
    if isinstance(v, list):
        return {"list": [typed(x) for x in v]}
    return {type(v).__name__: v}
print(json.dumps(typed(pickle.loads(sys.stdin.buffer.read()))))
"#;
        serde_json::from_slice(&python(SCRIPT, pickle)).unwrap()
    }

    /// The same typed JSON, from our side.
    pub(crate) fn typed(v: &Py<'_>) -> serde_json::Value {
        use serde_json::json;
        match v {
            Py::Int(n) => json!({"int": n}),
            Py::Str(s) => json!({"str": s}),
            Py::List(items) => json!({"list": items.iter().map(typed).collect::<Vec<_>>()}),
            Py::Dict(items) => {
                json!({"dict": items.iter().map(|(k, v)| json!([typed(k), typed(v)])).collect::<Vec<_>>()})
            }
        }
    }

    /// Python's own `pickle.dumps(pickle.loads(ours), protocol=4)`: its size for the same value.
    pub(crate) fn python_redumped_len(pickle: &[u8]) -> usize {
        let script =
            "import pickle, sys; print(len(pickle.dumps(pickle.loads(sys.stdin.buffer.read()), protocol=4)))";
        String::from_utf8(python(script, pickle)).unwrap().trim().parse().unwrap()
    }

    fn s(text: &str) -> Py<'_> {
        Py::str(text)
    }

    #[test]
    fn every_shape_loads_in_python_as_the_same_value() {
        let long = "x".repeat(300);
        let value = Py::Dict(vec![
            (
                s("ints"),
                Py::List(
                    [
                        0,
                        255,
                        256,
                        65535,
                        65536,
                        -1,
                        -129,
                        i32::MAX as i64,
                        i32::MIN as i64,
                        1 << 31,
                        -(1 << 31) - 1,
                        1 << 40,
                        i64::MAX,
                        i64::MIN,
                    ]
                    .into_iter()
                    .map(Py::Int)
                    .collect(),
                ),
            ),
            (s("empty"), s("")),
            (s("unicode"), s("nœud ☃ 🦀")),
            (s("long"), Py::str(&long)),
            (s("long again"), Py::str(&long)),
            (s("one"), Py::List(vec![s("only")])),
            (s("none at all"), Py::List(vec![])),
            (s("single"), Py::Dict(vec![(s("k"), Py::Int(1))])),
            (s("nothing"), Py::Dict(vec![])),
            (s("repeats"), Py::List(vec![s("again"), s("again"), s("again"), s("k")])),
        ]);
        let pickle = dumps(&value);
        assert_eq!(&pickle[..2], &[PROTO, 4]);
        assert_eq!(python_loads(&pickle), typed(&value));
        assert!(pickle.len() <= python_redumped_len(&pickle), "never longer than Python's own");
    }

    #[test]
    fn a_string_is_memoized_only_when_it_repeats_enough_to_pay() {
        // Once: no memo.
        assert_eq!(dumps(&s("ab")), [PROTO, 4, SHORT_BINUNICODE, 2, b'a', b'b', STOP]);
        // Twice: memo and a 2-byte get beat writing it again.
        let twice = dumps(&Py::List(vec![s("abc"), s("abc")]));
        assert_eq!(
            twice,
            [
                PROTO,
                4,
                EMPTY_LIST,
                MARK,
                SHORT_BINUNICODE,
                3,
                b'a',
                b'b',
                b'c',
                MEMOIZE,
                BINGET,
                0,
                APPENDS,
                STOP
            ]
        );
        // A one-character string twice: 3 bytes each, a memo would cost as much.
        let short = dumps(&Py::List(vec![s("a"), s("a")]));
        assert!(!short.contains(&MEMOIZE), "{short:?}");
        assert!(worth_memoizing(26, 2, 300), "equal timestamps pay even with 5-byte gets");
        assert!(!worth_memoizing(3, 1, 300), "a short string once more does not");
    }

    #[test]
    fn many_memoized_strings_use_long_gets_and_still_load() {
        let names: Vec<String> = (0..300).map(|i| format!("name-{i}")).collect();
        let value = Py::List(names.iter().chain(&names).map(|n| Py::str(n)).collect());
        let pickle = dumps(&value);
        assert!(pickle.contains(&LONG_BINGET));
        assert_eq!(python_loads(&pickle), typed(&value));
        assert!(pickle.len() <= python_redumped_len(&pickle));
    }
}
