//! Issue 12, point 1, with a real full disk: a `udht-node` whose data dir is a small tmpfs fills it.
//! It must turn read-only (reads and status keep working, writes fail with a clear error, the
//! process lives, a peer's writes do not crash it), come back by itself once space is freed, and
//! lose nothing it acknowledged, also across a restart.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::process::NodeProcess;
use serde_json::{json, Value};
use udht::manager::client::Client;

/// The tmpfs: small, so that filling it takes a few thousand writes.
const DISK_SIZE: &str = "8m";
/// Room left beside the ballast when the writes start.
const HEADROOM: u64 = 768 * 1024;
/// Most writes tried (per client) before the disk must have been found full.
const MAX_WRITES: usize = 60_000;
/// Clients writing at once.
const WRITERS: usize = 4;
/// The node must take writes again this soon after space is freed (it probes every 2 s).
const RECOVERY_LIMIT: Duration = Duration::from_secs(15);

/// A tmpfs mounted for the test, unmounted when dropped (also when the test fails).
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(Tmpfs { path: path.to_owned() })
    }

    fn free_bytes(&self) -> u64 {
        let c = std::ffi::CString::new(self.path.as_os_str().as_encoded_bytes()).unwrap();
        let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut s) }, 0);
        s.f_bavail as u64 * s.f_frsize as u64
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a node still holding a file open must not keep the mount behind.
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Fills what is left of the disk with `path`, to the last block it takes.
fn fill_up(path: &Path) {
    use std::io::Write as _;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0x5a; 4096];
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling the disk: {e}"),
        }
    }
    let _ = f.sync_all();
}

fn add(key: &str, name: &str) -> Value {
    json!({"message_type": 3, "data": {"peer_ip": key, "peer_port": "8001", "peer_name": name}})
}

async fn table_keys(node: &NodeProcess) -> BTreeSet<String> {
    let r = node.request(json!({"message_type": 2, "format": "json"})).await;
    assert_eq!(r["result"], "completed", "{r}");
    common::keys_of(&r["data"])
}

fn missing(acked: &[String], keys: &BTreeSet<String>) -> Vec<String> {
    acked.iter().filter(|k| !keys.contains(*k)).cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_makes_the_node_read_only_and_it_recovers_once_space_is_freed() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = match Tmpfs::mount(&tmp.path().join("disk"), DISK_SIZE) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("skipped: cannot mount tmpfs (not root?): {e}");
            return;
        }
    };
    let data = disk.path.join("data");
    let log = tmp.path().join("full.log");
    let sync = ["--sync-interval".to_string(), "1s".into()];
    let peer = NodeProcess::start(&tmp.path().join("peer"), &sync).await;
    let mut args = sync.to_vec();
    args.extend(["--bootstrap".into(), format!("/ip4/127.0.0.1/tcp/{}", peer.p2p_port)]);
    let mut node = NodeProcess::start_logging_to(&data, &log, &args).await;

    // Fill the disk but for a little room.
    let ballast = disk.path.join("ballast");
    let size = disk.free_bytes().saturating_sub(HEADROOM);
    std::fs::write(&ballast, vec![0x5a; size as usize]).unwrap();

    // Several clients write until each has a write fail: commits are queued behind the one that
    // fails, so the failure must cut cleanly through a group of pending writes.
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let addr = node.manager;
            tokio::spawn(async move {
                let mut c = Client::connect(addr, Duration::from_secs(5)).await.unwrap();
                let mut acked = Vec::new();
                for i in 0..MAX_WRITES {
                    let key = format!("10.{w}.{}.{}", i / 256, i % 256);
                    let r = c.request(&add(&key, &format!("n{i}"))).await.unwrap();
                    if r["result"] != "completed" {
                        return (acked, key, r);
                    }
                    acked.push(key);
                }
                panic!("{MAX_WRITES} writes and the disk is not full");
            })
        })
        .collect();
    let (mut acked, mut unacked) = (Vec::new(), Vec::new());
    for w in writers {
        let (done, failed_key, failure) = w.await.unwrap();
        let error = failure["error"].as_str().unwrap_or_default();
        assert_eq!(failure["result"], "error", "{failure}");
        assert!(error.contains("No space left on device"), "the error says why: {failure}");
        acked.extend(done);
        unacked.push(failed_key);
    }
    let full_at = acked.len();
    assert!(full_at > 100, "the disk had room for some writes first ({full_at})");
    let mut c = Client::connect(node.manager, Duration::from_secs(5)).await.unwrap();

    // Read-only: the process lives, reads and status work, a further write fails clearly.
    assert!(node.is_running(), "the node must not exit on a full disk; log: {}", node.log());
    let r = c.request(&json!({"message_type": 7, "data": {"peer_ip": acked[0]}})).await.unwrap();
    assert_eq!(r["result"], "completed", "reads still work: {r}");
    assert!(missing(&acked, &table_keys(&node).await).is_empty(), "every acknowledged key is served");
    let half_applied = |keys: &BTreeSet<String>| unacked.iter().filter(|k| keys.contains(*k)).count();
    assert_eq!(half_applied(&table_keys(&node).await), 0, "a failed write is not served: {unacked:?}");
    let r = c.request(&add("10.250.0.1", "refused")).await.unwrap();
    let refused = r["error"].as_str().unwrap_or_default();
    assert!(
        r["result"] == "error" && refused.contains("read-only") && refused.contains("reads still work"),
        "a write while read-only is refused clearly: {r}"
    );
    let status = node.status().await;
    assert!(
        status["read_only"]["reason"].as_str().is_some_and(|s| s.contains("No space left")),
        "status shows the read-only state: {status}"
    );
    assert!(status["sync_stats"]["writes_refused_read_only"].as_u64() >= Some(1), "{status}");

    // A peer's writes arrive meanwhile: not taken, and no crash.
    let mut pc = Client::connect(peer.manager, Duration::from_secs(5)).await.unwrap();
    let remote: Vec<String> = (0..20).map(|i| format!("10.251.0.{i}")).collect();
    for k in &remote {
        let r = pc.request(&add(k, "remote")).await.unwrap();
        assert_eq!(r["result"], "completed", "{r}");
    }
    let refused_remote = async || {
        let s = node.status().await["sync_stats"].clone();
        let n = s["gossip_ignored_read_only"].as_u64().unwrap_or(0)
            + s["pushes_refused_read_only"].as_u64().unwrap_or(0);
        (n > 0).then_some(()).ok_or(s)
    };
    common::eventually(
        "the peer's writes to reach the read-only node",
        Duration::from_secs(10),
        refused_remote,
    )
    .await;
    assert!(node.is_running(), "remote writes did not crash it; log: {}", node.log());
    let status = node.status().await;
    assert!(!status["read_only"].is_null(), "still read-only while the disk is full: {status}");
    let r = c.request(&json!({"message_type": 7, "data": {"peer_ip": remote[0]}})).await.unwrap();
    assert_eq!(r["result"], "error", "a remote write is not taken while read-only: {r}");

    // Stopped while read-only, then restarted with the disk full to the last byte: it starts,
    // serves every acknowledged write, and turns read-only again at its first write.
    assert!(node.terminate().success(), "a clean exit while read-only; log: {}", node.log());
    let topup = disk.path.join("topup");
    fill_up(&topup);
    let mut node = node.restart().await;
    let mut c = Client::connect(node.manager, Duration::from_secs(5)).await.unwrap();
    assert!(
        missing(&acked, &table_keys(&node).await).is_empty(),
        "all served after a restart on a full disk"
    );
    let mut refused_again = None;
    for i in 0..MAX_WRITES {
        let key = format!("10.253.{}.{}", i / 256, i % 256);
        let r = c.request(&add(&key, "again")).await.unwrap();
        if r["result"] != "completed" {
            refused_again = Some(r);
            break;
        }
        acked.push(key);
    }
    let r = refused_again.expect("the full disk refuses a write");
    assert!(r["error"].as_str().is_some_and(|e| e.contains("No space left on device")), "{r}");
    assert!(!node.status().await["read_only"].is_null());

    // Free the space: writes work again, by themselves, soon.
    std::fs::remove_file(&ballast).unwrap();
    std::fs::remove_file(&topup).unwrap();
    let freed = Instant::now();
    let mut n = 0;
    let recovered = common::try_eventually("a write to succeed again", RECOVERY_LIMIT, async || {
        n += 1;
        let key = format!("10.252.{}.{}", n / 256, n % 256);
        let r = c.request(&add(&key, "after")).await.unwrap();
        (r["result"] == "completed").then_some(key).ok_or(r)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; log: {}", node.log()));
    let recovery = freed.elapsed();
    acked.push(recovered);
    let status = node.status().await;
    assert!(status["read_only"].is_null(), "status shows writable again: {status}");
    assert!(missing(&acked, &table_keys(&node).await).is_empty(), "nothing acknowledged was lost");
    // Anti-entropy brings in what the peer wrote meanwhile.
    common::eventually(
        "the peer's writes to reach the recovered node",
        Duration::from_secs(20),
        async || {
            let lacking = missing(&remote, &table_keys(&node).await);
            if lacking.is_empty() {
                Ok(())
            } else {
                Err(lacking)
            }
        },
    )
    .await;
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    // Once on entering, in each of the two runs, and once on leaving.
    assert_eq!(log_text.matches("the node is read-only").count(), 2, "logged once on entering: {log_text}");
    assert_eq!(log_text.matches("the node takes writes again").count(), 1, "and once on leaving");

    // A clean stop and a restart on the same disk keep every acknowledged write.
    assert!(node.terminate().success(), "a clean exit; log: {}", node.log());
    let node = node.restart().await;
    let keys = table_keys(&node).await;
    assert!(missing(&acked, &keys).is_empty(), "lost after restart: {:?}", missing(&acked, &keys));
    assert!(missing(&remote, &keys).is_empty(), "the peer's writes were stored too");
    assert_eq!(half_applied(&keys), 0, "no failed write came back from disk: {unacked:?}");

    let summary = format!(
        "full disk ({DISK_SIZE} tmpfs, {} KiB free at the start): {full_at} writes acknowledged before \
         it was full; writable again {:.1} s after the space was freed\n",
        HEADROOM / 1024,
        recovery.as_secs_f64()
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr(), summary.as_bytes());
    drop(node);
}

/// The store alone, on a real full disk: after a failed commit it fails every later job, even
/// once space is back, until a probe succeeds; so what failed is a clean cut, and a reopen finds
/// exactly the jobs that were answered as committed.
#[tokio::test]
async fn the_store_fails_every_commit_after_a_failed_one_until_a_probe_succeeds() {
    use udht::core::{PeerFields, PeerRecord, Table};
    use udht::store::{Job, Loaded, Store, StoreEvent};

    let tmp = tempfile::tempdir().unwrap();
    let disk = match Tmpfs::mount(&tmp.path().join("disk"), "4m") {
        Ok(d) => d,
        Err(e) => {
            eprintln!("skipped: cannot mount tmpfs (not root?): {e}");
            return;
        }
    };
    let dir = disk.path.join("data");
    let mut table = Table::for_tests(1);
    let mut put = |i: u64| {
        let fields =
            PeerFields { name: Some(format!("record {i} {}", "x".repeat(200))), ..Default::default() };
        table.put(format!("k{i}"), PeerRecord::create(fields, 1_800_000_000_000_000), 1_800_000_000_000 + i)
    };
    let (mut store, mut events) = Store::open(&dir, 64, |_| {}).unwrap();
    let ballast = disk.path.join("ballast");
    std::fs::write(&ballast, vec![0x5a; disk.free_bytes().saturating_sub(256 * 1024) as usize]).unwrap();

    let mut committed = BTreeSet::new();
    let mut seq = 0;
    let error = loop {
        seq += 1;
        assert!(seq < 100_000, "the disk never filled");
        let e = put(seq);
        store.submit(Job { seq, puts: vec![e.clone()], deletes: vec![] }).unwrap();
        match events.recv().await.unwrap() {
            StoreEvent::Committed(s) if s == seq => committed.insert(e.key),
            StoreEvent::Failed(s, error) if s == seq => break error.to_string(),
            other => panic!("unexpected answer to job {seq}: {other:?}"),
        };
    };
    assert!(error.contains("No space left on device"), "{error}");
    assert!(committed.len() > 10, "some commits fit first ({})", committed.len());

    // Space is back, but the jobs queued after the failure fail too: only a probe ends that.
    std::fs::remove_file(&ballast).unwrap();
    for _ in 0..3 {
        seq += 1;
        store.submit(Job { seq, puts: vec![put(seq)], deletes: vec![] }).unwrap();
    }
    for s in seq - 2..=seq {
        assert!(matches!(events.recv().await, Some(StoreEvent::Failed(f, _)) if f == s), "job {s} fails");
    }
    store.probe().unwrap();
    let answer = events.recv().await;
    assert!(matches!(answer, Some(StoreEvent::ProbeOk)), "{answer:?}");
    seq += 1;
    let e = put(seq);
    store.submit(Job { seq, puts: vec![e.clone()], deletes: vec![] }).unwrap();
    assert!(matches!(events.recv().await, Some(StoreEvent::Committed(s)) if s == seq));
    committed.insert(e.key);
    store.close().await;
    drop(events);

    let mut loaded = BTreeSet::new();
    let _store = Store::open(&dir, 8, |l| match l {
        Loaded::Signed(e) | Loaded::Checked(e) => {
            loaded.insert(e.key);
        }
        Loaded::Unsigned(e) => panic!("stored unsigned: {e:?}"),
    })
    .unwrap();
    assert_eq!(loaded, committed, "exactly the committed jobs are on disk");
}
