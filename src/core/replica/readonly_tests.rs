//! Read-only mode, driven by hand: a failed commit rolls back what was not durable, refuses
//! writes (local and remote) without blaming anyone, and ends when a probe commit succeeds.

use super::sim::{run, Sim, SimConfig};
use super::*;
use crate::core::delta::encode_delta;
use crate::core::sync::{SyncRequest, SyncResponse};

const NOW_US: i64 = 1_800_000_000_000_000;
const NOW_MS: u64 = 1_800_000_000_000;

fn replica(id: u8) -> Replica<Sim> {
    let config = ReplicaConfig {
        own_key: format!("own-{id}"),
        name: "me".into(),
        sync_interval_ms: 10_000,
        refresh_interval_ms: 60_000,
        gc_interval_ms: 3_600_000,
        max_in_flight: 64,
        peer_entry_rate: 100_000,
        probe_interval_ms: 2_000,
        seed: 1,
        clock_wait_ms: 0,
        ports: Default::default(),
    };
    Replica::new(config, Table::for_tests(id))
}

fn fields(name: &str) -> PeerFields {
    PeerFields { name: Some(name.into()), ..Default::default() }
}

fn handle(r: &mut Replica<Sim>, input: Input<Sim>) -> Vec<Output<Sim>> {
    r.handle(input, NOW_US).collect()
}

fn write(r: &mut Replica<Sim>, op: WriteOp, reply: u64) -> Vec<Output<Sim>> {
    handle(r, Input::Write { op, reply })
}

fn persisted(outputs: &[Output<Sim>]) -> Option<Seq> {
    outputs.iter().find_map(|o| match o {
        Output::Persist { seq, .. } => Some(*seq),
        _ => None,
    })
}

/// A replica made read-only by a failed write of `key`.
fn read_only_replica(id: u8) -> Replica<Sim> {
    let mut r = replica(id);
    let seq = persisted(&write(&mut r, WriteOp::Add { key: "doomed".into(), fields: fields("x") }, 99));
    handle(&mut r, Input::CommitFailed { seq: seq.unwrap(), error: "No space left on device".into() });
    assert!(r.read_only().is_some());
    r
}

#[test]
fn a_failed_commit_rolls_back_it_and_every_later_pending_commit_newest_first() {
    let mut r = replica(1);
    let first = persisted(&write(&mut r, WriteOp::Add { key: "k".into(), fields: fields("v1") }, 1)).unwrap();
    handle(&mut r, Input::Committed(first));
    let durable_root = r.table().root();
    let durable_k = r.table().entry("k");
    // Two changes of the same key and a new key, none durable yet.
    let s1 = persisted(&write(&mut r, WriteOp::Update { key: "k".into(), fields: fields("v2") }, 2)).unwrap();
    let s2 = persisted(&write(&mut r, WriteOp::Remove { key: "k".into() }, 3)).unwrap();
    let s3 = persisted(&write(&mut r, WriteOp::Add { key: "new".into(), fields: fields("n") }, 4)).unwrap();
    assert!(r.table().get("k").is_none() && r.table().get("new").is_some());

    let out = handle(&mut r, Input::CommitFailed { seq: s1, error: "No space left on device".into() });
    assert_eq!(r.table().entry("k"), durable_k, "k is back to its durable value");
    assert!(r.table().entry("new").is_none(), "a key only the failed commits wrote is gone");
    assert_eq!(r.table().root(), durable_root, "the table equals what is on disk");
    // Readers see the restored values, and each waiting client hears its write was not kept.
    let applied: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::Applied { key, record } => Some((key.clone(), record.as_ref().map(|r| r.name.clone()))),
            _ => None,
        })
        .collect();
    assert!(applied.contains(&("new".into(), None)), "{applied:?}");
    assert_eq!(applied.iter().rev().find(|(k, _)| k == "k"), Some(&("k".into(), Some("v1".into()))));
    let mut refused: Vec<u64> = out
        .iter()
        .filter_map(|o| match o {
            Output::Reply { to, result: Err(WriteError::NotDurable(e)) } if e.contains("No space") => {
                Some(*to)
            }
            _ => None,
        })
        .collect();
    refused.sort();
    assert_eq!(refused, vec![2, 3, 4]);
    assert_eq!(r.pending_commits(), 0);
    assert_eq!(r.stats().commits_failed, 3);
    assert_eq!(r.read_only().map(|ro| ro.reason.as_str()), Some("No space left on device"));
    // The store fails the later ones too: already rolled back, they change nothing.
    for seq in [s2, s3] {
        assert!(handle(&mut r, Input::CommitFailed { seq, error: "x".into() }).is_empty());
    }
    assert_eq!(r.table().root(), durable_root);
}

#[test]
fn pending_gossip_of_a_failed_commit_is_ignored_and_rolled_back_not_blamed() {
    let mut writer = replica(2);
    let entry = writer.table.put("g".into(), PeerRecord::create(fields("g"), NOW_US), NOW_MS);
    let mut r = replica(1);
    let out = handle(&mut r, Input::Gossip { from: 2, id: (1, 2), data: encode_delta(&[entry]) });
    let seq = persisted(&out).unwrap();
    let out = handle(&mut r, Input::CommitFailed { seq, error: "disk full".into() });
    assert!(
        out.iter().any(|o| matches!(o, Output::GossipVerdict { verdict: Verdict::Ignore, .. })),
        "{out:?}"
    );
    assert!(!out.iter().any(|o| matches!(o, Output::Ban(_))));
    assert!(r.table().entry("g").is_none(), "not durable here, so not held");
}

#[test]
fn a_read_only_replica_refuses_writes_and_pushes_but_serves_reads_and_digests_and_strikes_no_one() {
    let mut r = read_only_replica(1);
    let out = write(&mut r, WriteOp::Add { key: "k".into(), fields: fields("a") }, 1);
    match &out[..] {
        [Output::Reply { to: 1, result: Err(e @ WriteError::ReadOnly(_)) }] => {
            let msg = e.to_string();
            assert!(msg.contains("read-only") && msg.contains("No space left on device"), "{msg}");
        }
        other => panic!("expected a read-only refusal, got {other:?}"),
    }
    assert_eq!(r.stats().writes_refused_read_only, 1);

    // Gossip, far more than the strikes that ban: ignored, counted, never merged, no ban.
    let mut writer = replica(2);
    for i in 0..(MAX_STRIKES as u64 * 2) {
        let e = writer.table.put(format!("w{i}"), PeerRecord::create(fields("w"), NOW_US), NOW_MS);
        let out = handle(&mut r, Input::Gossip { from: 2, id: (i, 2), data: encode_delta(&[e]) });
        assert!(matches!(&out[..], [Output::GossipVerdict { verdict: Verdict::Ignore, .. }]), "{out:?}");
    }
    assert_eq!(r.stats().gossip_ignored_read_only, MAX_STRIKES as u64 * 2);
    assert!(r.table().get("w0").is_none());

    // Digests are still answered; a push is refused (the pusher does not blame a refusal).
    let root = serde_bytes::ByteBuf::from(0u128.to_be_bytes().to_vec());
    let out = handle(
        &mut r,
        Input::SyncRequest { from: 2, request: SyncRequest::Root { root }, responder: (2, 1) },
    );
    assert!(matches!(&out[..], [Output::RespondSync { response: SyncResponse::Root { .. }, .. }]), "{out:?}");
    let push = SyncRequest::Push { entries: writer.table.all_entries() };
    let out = handle(&mut r, Input::SyncRequest { from: 2, request: push, responder: (2, 2) });
    assert!(
        matches!(&out[..], [Output::RespondSync { response: SyncResponse::Refused { reason }, .. }] if reason.contains("read-only")),
        "{out:?}"
    );
    assert_eq!(r.stats().pushes_refused_read_only, 1);

    // No own-record refresh, no tombstone collection, no session of its own (it would merge).
    for timer in [Timer::Refresh, Timer::CollectTombstones, Timer::Sync] {
        let out = handle(&mut r, Input::TimerFired(timer));
        assert!(
            persisted(&out).is_none() && !out.iter().any(|o| matches!(o, Output::SendSync { .. })),
            "{out:?}"
        );
    }
    let out = handle(&mut r, Input::PeerConnected(2));
    assert!(!out.iter().any(|o| matches!(o, Output::SendSync { .. })), "{out:?}");
    assert_eq!(r.stats().peers_banned, 0);
}

/// Another replica's sessions with a read-only one end at the refused push, and however many
/// there are, it bans no one.
#[test]
fn sessions_with_a_read_only_replica_fail_without_strikes() {
    let mut full = read_only_replica(1);
    let mut other = replica(2);
    for i in 0..20 {
        let seq =
            persisted(&write(&mut other, WriteOp::Add { key: format!("o{i}"), fields: fields("o") }, i));
        handle(&mut other, Input::Committed(seq.unwrap()));
    }
    for _ in 0..MAX_STRIKES * 2 {
        let mut out = handle(&mut other, Input::PeerConnected(1));
        while let Some((id, request)) = out.iter().find_map(|o| match o {
            Output::SendSync { id, request, .. } => Some((*id, request.clone())),
            _ => None,
        }) {
            let answer = handle(&mut full, Input::SyncRequest { from: 2, request, responder: (2, id) });
            let Some(Output::RespondSync { response, clock_us, .. }) = answer.into_iter().next() else {
                panic!("every request is answered")
            };
            out = handle(&mut other, Input::SyncResponse { from: 1, id, response, clock_us });
            assert!(!out.iter().any(|o| matches!(o, Output::Ban(_))), "{out:?}");
        }
        handle(&mut other, Input::PeerDisconnected(1));
    }
    assert_eq!(other.stats().sessions_failed, MAX_STRIKES as u64 * 2, "each ended at the refused push");
    assert_eq!(other.stats().peers_banned, 0);
    assert_eq!(full.stats().pushes_refused_read_only, MAX_STRIKES as u64 * 2);
}

#[test]
fn a_read_only_replica_probes_until_a_probe_commit_succeeds_then_takes_writes_again() {
    let mut r = replica(1);
    // Started (its clock wait over, `clock_wait_ms` being 0), so its own record may be written.
    handle(&mut r, Input::Start);
    let seq = persisted(&write(&mut r, WriteOp::Add { key: "k".into(), fields: fields("a") }, 1)).unwrap();
    let out = handle(&mut r, Input::CommitFailed { seq, error: "No space left on device".into() });
    assert!(
        out.iter().any(|o| matches!(o, Output::Schedule { timer: Timer::Probe, after_ms: 2_000 })),
        "{out:?}"
    );
    assert_eq!(r.stats().read_only_entered, 1);

    let out = handle(&mut r, Input::TimerFired(Timer::Probe));
    assert!(matches!(&out[..], [Output::Probe]), "{out:?}");
    let out = handle(&mut r, Input::ProbeFailed { error: "still full".into() });
    assert!(matches!(&out[..], [Output::Schedule { timer: Timer::Probe, .. }]), "{out:?}");
    assert!(r.read_only().is_some());
    assert_eq!(r.stats().probes_failed, 1);

    let out = handle(&mut r, Input::TimerFired(Timer::Probe));
    assert!(matches!(&out[..], [Output::Probe]), "{out:?}");
    let out = handle(&mut r, Input::ProbeOk);
    assert!(r.read_only().is_none());
    assert!(persisted(&out).is_some(), "the skipped own-record refresh is written: {out:?}");
    let out = write(&mut r, WriteOp::Add { key: "k".into(), fields: fields("b") }, 2);
    assert!(persisted(&out).is_some(), "writes are taken again: {out:?}");
    // A late probe answer or timer changes nothing.
    assert!(handle(&mut r, Input::ProbeOk).is_empty());
    assert!(handle(&mut r, Input::TimerFired(Timer::Probe)).is_empty());
    assert_eq!(r.stats().read_only_entered, 1);
}

/// The simulation with full disks alone (no other fault): replicas go read-only, recover, and
/// converge without losing an acknowledged write; the check can see a read-only episode.
#[test]
fn simulated_full_disks_recover_and_converge_without_losing_an_acknowledged_write() {
    let mut episodes = 0;
    for seed in 0..40u64 {
        let mut config = SimConfig::faulty(6 + (seed as usize % 5), 1000 + seed);
        (config.partitions, config.crashes, config.loss) = (false, false, 0.0);
        config.writes = 150;
        let report = run(&config).unwrap_or_else(|e| panic!("{e}"));
        episodes += report.store_outages;
    }
    assert!(episodes > 10, "full disks made replicas read-only ({episodes} times)");
}

/// Anti-entropy shows peers only what is durable here: a write whose commit is pending goes out
/// as the key was before it, so a commit that fails has not spread a write its client was told
/// failed (found by `tests/full_disk.rs`: the peer had pulled them, and gave them back).
#[test]
fn anti_entropy_answers_show_a_pending_write_only_once_it_is_durable() {
    use crate::core::table::bucket_of;
    let mut r = replica(1);
    let first = persisted(&write(&mut r, WriteOp::Add { key: "k".into(), fields: fields("v1") }, 1)).unwrap();
    handle(&mut r, Input::Committed(first));
    let durable_k = r.table().entry("k").unwrap();
    let s1 = persisted(&write(&mut r, WriteOp::Update { key: "k".into(), fields: fields("v2") }, 2)).unwrap();
    let s2 = persisted(&write(&mut r, WriteOp::Add { key: "fresh".into(), fields: fields("f") }, 3)).unwrap();
    let mut pulls = 0;
    let mut pull = |r: &mut Replica<Sim>| {
        pulls += 1;
        let buckets = vec![bucket_of("k"), bucket_of("fresh")];
        let request = SyncRequest::Pull { buckets };
        let out = handle(r, Input::SyncRequest { from: 2, request, responder: (2, pulls) });
        let Some(Output::RespondSync { response: SyncResponse::Entries { entries, .. }, .. }) =
            out.into_iter().next()
        else {
            panic!("a pull is answered with entries")
        };
        let mut keys: Vec<(String, crate::core::Stamp)> =
            entries.into_iter().map(|e| (e.key, e.stamp)).collect();
        keys.sort();
        keys
    };
    assert_eq!(pull(&mut r), vec![("k".to_string(), durable_k.stamp)], "only the durable k");
    handle(&mut r, Input::Committed(s1));
    handle(&mut r, Input::Committed(s2));
    let now = pull(&mut r);
    let (k, fresh) = (r.table().entry("k").unwrap(), r.table().entry("fresh").unwrap());
    assert_eq!(now, vec![("fresh".to_string(), fresh.stamp), ("k".to_string(), k.stamp)]);
    assert_ne!(k.stamp, durable_k.stamp);
}
