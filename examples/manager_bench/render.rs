//! Encoding one `get` reply: the generic serde path (the protocol's definition) against the
//! hand-written one the node uses, in CPU time of this thread, in the same run.

use std::hint::black_box;
use std::time::Duration;

use udht::core::PeerRecord;
use udht::manager::protocol::{self as p, RecordView};

/// Replies encoded per path: enough for a stable per-reply figure, well under a second.
const REPLIES: u32 = 1_000_000;

/// CPU time used by this thread so far.
fn thread_cpu() -> Duration {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime only writes the struct it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// CPU per reply of `encode`, and the bytes it wrote (to check both paths write the same).
fn per_reply(encode: impl Fn() -> Vec<u8>) -> (Duration, Vec<u8>) {
    let reply = encode();
    let start = thread_cpu();
    for _ in 0..REPLIES {
        black_box(encode());
    }
    ((thread_cpu() - start) / REPLIES, reply)
}

/// Prints both paths' CPU per reply for a record like the `get` cases' (two ports, three
/// timestamps), and their ratio.
pub fn reply_encoding() {
    let t0 = 1_790_000_000_000_000;
    let record = PeerRecord {
        name: "n199".into(),
        ip: "10.0.0.199".into(),
        port: "3003".into(),
        peer_id: None,
        ports: [("networkLayer".to_string(), 6002u16), ("userSync".to_string(), 3003)].into_iter().collect(),
        addrs: Vec::new(),
        created_at: t0,
        updated_at: t0 + 1_234,
        last_connection_on: t0 + 1_234,
    };
    let (serde, a) = per_reply(|| p::completed(p::ACTION_GET, &RecordView(black_box(&record))));
    let (by_hand, b) = per_reply(|| p::completed_record(p::ACTION_GET, black_box(&record)));
    assert_eq!(a, b, "both paths must write the same reply");
    println!();
    println!(
        "get reply encoding ({} bytes), CPU per reply: serde {:.0} ns, hand-written {:.0} ns ({:.2}x)",
        a.len(),
        serde.as_nanos(),
        by_hand.as_nanos(),
        by_hand.as_secs_f64() / serde.as_secs_f64()
    );
}
