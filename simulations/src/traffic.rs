//! Traffic counting: what the loopback interface carried, read from `/proc/self/net/dev`.
//!
//! Every node of the cluster runs in this process and talks over 127.0.0.1, so every byte one node
//! sends appears once in loopback's transmit counter: the counter divided by N is the bytes each
//! node sent (and, by symmetry, received). It counts the whole wire: TCP and QUIC alike (the
//! cluster listens on TCP only), IP/TCP headers, TCP acknowledgements, noise and yamux framing,
//! and every protocol (gossipsub, anti-entropy, liveness probes, Kademlia, identify, ping,
//! AutoNAT). libp2p's own counters would miss the headers and acknowledgements, which for
//! messages of a few hundred bytes are a large share.
//!
//! `/proc/self/net/dev` shows this process's network namespace (`/sys/class/net` shows the one
//! sysfs was mounted in). Other programs in the namespace add to the counter, so for figures that
//! hold on a shared machine run the simulator in a namespace of its own:
//! `unshare -rn sh -c 'ip link set lo up && exec udht-simulations ...'`.

use std::time::Instant;

use serde_json::{json, Value};

/// Loopback's transmit counters at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Counters {
    pub bytes: u64,
    pub packets: u64,
    pub at: Instant,
}

/// Reads loopback's transmit counters; `None` where the file cannot be read or parsed.
pub fn loopback() -> Option<Counters> {
    let text = std::fs::read_to_string("/proc/self/net/dev").ok()?;
    let at = Instant::now();
    let line = text.lines().find_map(|l| l.trim_start().strip_prefix("lo:"))?;
    let fields: Vec<u64> = line.split_whitespace().map(str::parse).collect::<Result<_, _>>().ok()?;
    // Receive has 8 fields (bytes, packets, errs, drop, fifo, frame, compressed, multicast),
    // then transmit: bytes, packets, ...
    Some(Counters { bytes: *fields.get(8)?, packets: *fields.get(9)?, at })
}

/// Bytes and packets sent per node, in total and per second, between two readings.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub secs: f64,
    pub bytes_per_node: f64,
    pub packets_per_node: f64,
}

impl Rate {
    pub fn between(a: Counters, b: Counters, nodes: usize) -> Rate {
        let n = nodes.max(1) as f64;
        Rate {
            secs: b.at.duration_since(a.at).as_secs_f64().max(1e-9),
            bytes_per_node: b.bytes.saturating_sub(a.bytes) as f64 / n,
            packets_per_node: b.packets.saturating_sub(a.packets) as f64 / n,
        }
    }

    pub fn bytes_per_node_per_sec(&self) -> f64 {
        self.bytes_per_node / self.secs
    }

    pub fn packets_per_node_per_sec(&self) -> f64 {
        self.packets_per_node / self.secs
    }

    pub fn to_json(self) -> Value {
        json!({
            "secs": self.secs,
            "bytes_per_node_per_sec": self.bytes_per_node_per_sec(),
            "packets_per_node_per_sec": self.packets_per_node_per_sec(),
        })
    }
}
