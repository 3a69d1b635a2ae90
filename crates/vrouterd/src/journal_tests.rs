//! The journal's format, replay and recovery, every crash point of a snapshot, and the adoption
//! of the whole-config ledger.

use super::*;
use serde_json::json;

/// A config with ingress rules `ids`, each opening its id as a port.
fn config(generation: u64, ids: &[u64]) -> RouterConfig {
    let rules: Vec<serde_json::Value> = ids
        .iter()
        .map(|id| {
            json!({ "id": id, "public_ip": "203.0.113.11", "protocol": "tcp",
                    "ports": { "start": 1000 + id, "end": 1000 + id },
                    "source_cidrs": ["0.0.0.0/0"] })
        })
        .collect();
    serde_json::from_value(json!({
        "schema": 1,
        "generation": generation,
        "public": {
            "interface": "pub0",
            "addresses": [{ "ip": "203.0.113.11", "prefix_len": 24, "source_nat": true }],
            "gateway": "203.0.113.1"
        },
        "guest": { "interface": "guest0", "cidr": "10.1.1.0/24", "gateway": "10.1.1.1" },
        "egress_default": "deny",
        "firewall_rules": rules
    }))
    .expect("tests build well-formed documents")
}

/// Records `cfg` as the next change: its seen record, then its record.
fn apply(j: &mut Journal, previous: Option<&RouterConfig>, cfg: &RouterConfig) {
    j.record_seen(cfg.generation).expect("seen");
    let p = j.prepare(previous, cfg, None).expect("prepare");
    j.commit(p.expect("a new generation is recorded"))
        .expect("commit");
}

fn open(dir: &Path) -> (Journal, Option<RouterConfig>) {
    Journal::open(dir).unwrap_or_else(|e| panic!("open: {}", crate::chain(&e)))
}

fn only_segment(dir: &Path) -> PathBuf {
    let list = segments(dir).expect("list");
    assert_eq!(list.len(), 1, "{list:?}");
    list[0].1.clone()
}

/// Two generations: 1 as a whole config, 2 as a delta. Returns the segment, the offset of
/// the last record and the two configs.
fn two_generations(dir: &Path) -> (PathBuf, u64, RouterConfig, RouterConfig) {
    let c1 = config(1, &[1, 2, 3]);
    let c2 = config(2, &[1, 3, 4]);
    let (mut j, none) = open(dir);
    assert!(none.is_none());
    apply(&mut j, None, &c1);
    j.record_seen(2).expect("seen");
    let before = std::fs::metadata(only_segment(dir)).unwrap().len();
    let p = j.prepare(Some(&c1), &c2, None).unwrap().unwrap();
    j.commit(p).unwrap();
    drop(j);
    (only_segment(dir), before, c1, c2)
}

#[test]
fn a_record_round_trips_and_every_header_field_is_checked() {
    let r = encode(DELTA, 7, 8, b"{}");
    let (d, len) = decode(&r).unwrap();
    assert_eq!(
        (d.kind, d.base, d.generation, d.payload, len),
        (DELTA, 7, 8, &b"{}"[..], r.len())
    );
    assert!(matches!(
        decode(&r[..HEADER - 1]),
        Err(RecordFault::ShortHeader { have: 24 })
    ));
    assert!(matches!(
        decode(&r[..HEADER + 1]),
        Err(RecordFault::ShortPayload { len: 2, have: 1 })
    ));
    for i in 4..r.len() {
        let mut bad = r.clone();
        bad[i] ^= 0x40;
        assert!(
            matches!(decode(&bad), Err(RecordFault::Checksum { .. })),
            "byte {i}"
        );
    }
}

#[test]
fn a_reopened_journal_holds_the_last_config_and_the_highest_generation_seen() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, _, c2) = two_generations(dir.path());
    let (mut j, cfg) = open(dir.path());
    assert_eq!(cfg.as_ref(), Some(&c2));
    assert_eq!((j.head(), j.seen()), (2, 2));
    // A refused generation: seen, never recorded as applied.
    j.record_seen(3).unwrap();
    drop(j);
    let (j, cfg) = open(dir.path());
    assert_eq!(cfg.as_ref(), Some(&c2));
    assert_eq!((j.head(), j.seen()), (2, 3));
}

#[test]
fn a_journal_cut_at_every_byte_of_its_last_record_restores_the_record_before() {
    let dir = tempfile::tempdir().unwrap();
    let (segment, last, c1, c2) = two_generations(dir.path());
    let whole = std::fs::read(&segment).unwrap();
    for cut in last..whole.len() as u64 {
        std::fs::write(&segment, &whole[..cut as usize]).unwrap();
        let (j, cfg) = open(dir.path());
        assert_eq!(cfg.as_ref(), Some(&c1), "cut at {cut}");
        assert_eq!((j.head(), j.seen()), (1, 2), "cut at {cut}");
        drop(j);
        assert_eq!(
            std::fs::metadata(&segment).unwrap().len(),
            last,
            "cut at {cut}"
        );
    }
    std::fs::write(&segment, &whole).unwrap();
    let (_, cfg) = open(dir.path());
    assert_eq!(cfg.as_ref(), Some(&c2));
}

#[test]
fn a_flipped_byte_anywhere_in_the_last_record_drops_only_that_record() {
    let dir = tempfile::tempdir().unwrap();
    let (segment, last, c1, _) = two_generations(dir.path());
    let whole = std::fs::read(&segment).unwrap();
    for i in last as usize..whole.len() {
        let mut bad = whole.clone();
        bad[i] ^= 0xff;
        std::fs::write(&segment, &bad).unwrap();
        let (j, cfg) = open(dir.path());
        assert_eq!(cfg.as_ref(), Some(&c1), "byte {i}");
        assert_eq!(j.head(), 1, "byte {i}");
        drop(j);
        assert_eq!(std::fs::metadata(&segment).unwrap().len(), last, "byte {i}");
    }
}

#[test]
fn garbage_and_records_that_do_not_chain_are_cut_and_later_segments_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let (segment, _, _, c2) = two_generations(dir.path());
    let good = std::fs::metadata(&segment).unwrap().len();

    // A well-formed delta whose base is not the generation held.
    let stray = RouterDelta::between(&config(5, &[1]), &config(6, &[1, 2]));
    let seen = encode(SEEN, 0, 6, &[]);
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes.extend_from_slice(&seen);
    bytes.extend_from_slice(&encode(DELTA, 5, 6, &serde_json::to_vec(&stray).unwrap()));
    std::fs::write(&segment, &bytes).unwrap();
    // And a later segment, which cannot follow a cut.
    let later = dir.path().join(segment_name(2));
    std::fs::write(&later, encode(SEEN, 0, 7, &[])).unwrap();

    let (j, cfg) = open(dir.path());
    assert_eq!(cfg.as_ref(), Some(&c2));
    assert_eq!((j.head(), j.seen()), (2, 6));
    drop(j);
    assert_eq!(
        std::fs::metadata(&segment).unwrap().len(),
        good + seen.len() as u64
    );
    assert!(!later.exists());
    assert!(dir
        .path()
        .join(format!("{}.dropped", segment_name(2)))
        .exists());

    // Garbage: dropped likewise.
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes.extend_from_slice(b"\x05\x00\x00\x00not a record at all");
    std::fs::write(&segment, &bytes).unwrap();
    let (j, cfg) = open(dir.path());
    assert_eq!(cfg.as_ref(), Some(&c2));
    assert_eq!(j.seen(), 6);
}

/// A journal of three segments (generations 1..=6) and the config it ends with.
fn three_segments(dir: &Path) -> RouterConfig {
    let (mut j, _) = open(dir);
    let mut prev: Option<RouterConfig> = None;
    for g in 1..=6u64 {
        let ids: Vec<u64> = (1..=g).collect();
        let c = config(g, &ids);
        apply(&mut j, prev.as_ref(), &c);
        if g % 2 == 0 {
            // What the apply path does at a segment's limit, without the background thread.
            let next = j.seq + 1;
            j.file = create_segment(dir, next).unwrap();
            j.seq = next;
            j.records = 0;
            j.bytes = 0;
        }
        prev = Some(c);
    }
    prev.unwrap()
}

#[test]
fn a_snapshot_interrupted_at_any_step_restores_the_same_state() {
    // The steps of `compact`, stopped after each one, as a crash would stop them.
    for steps in 0..=3 {
        let dir = tempfile::tempdir().unwrap();
        let last = three_segments(dir.path());
        let upto = 3;
        let (mut state, _) = read_snapshot(dir.path()).unwrap().unwrap_or_default();
        let list: Vec<_> = segments(dir.path())
            .unwrap()
            .into_iter()
            .filter(|(s, _)| *s < upto)
            .collect();
        assert!(replay_segments(&mut state, &list).unwrap().1.is_none());
        let seen = state.seen;
        let cfg = state.into_config();
        if steps >= 1 {
            write_snapshot_tmp(dir.path(), seen, cfg.as_ref(), upto).unwrap();
        }
        if steps >= 2 {
            install_snapshot(dir.path()).unwrap();
        }
        if steps >= 3 {
            drop_covered(dir.path(), upto).unwrap();
        }
        let (mut j, got) = open(dir.path());
        assert_eq!(got.as_ref(), Some(&last), "stopped after {steps} steps");
        assert_eq!((j.head(), j.seen()), (6, 6), "stopped after {steps} steps");
        assert!(!dir.path().join(SNAPSHOT_TMP).exists());
        let kept: Vec<u64> = segments(dir.path()).unwrap().iter().map(|s| s.0).collect();
        assert_eq!(
            kept,
            if steps >= 2 {
                vec![3, 4]
            } else {
                vec![1, 2, 3, 4]
            }
        );
        // And it goes on from there.
        let next = config(7, &[1, 7]);
        apply(&mut j, Some(&last), &next);
        drop(j);
        let (_, got) = open(dir.path());
        assert_eq!(got, Some(next), "stopped after {steps} steps");
    }
}

#[test]
fn a_full_segment_is_folded_into_a_snapshot_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, _) = open(dir.path());
    let c1 = config(1, &[1]);
    apply(&mut j, None, &c1);
    let mut prev = c1;
    let mut g = 1;
    while j.seq == 1 {
        g += 1;
        let c = config(g, &[1, g]);
        apply(&mut j, Some(&prev), &c);
        prev = c;
    }
    j.settle();
    assert!(dir.path().join(SNAPSHOT).exists());
    let kept: Vec<u64> = segments(dir.path()).unwrap().iter().map(|s| s.0).collect();
    assert_eq!(kept, vec![2]);
    assert_eq!(
        read_all(dir.path()).unwrap().into_config().as_ref(),
        Some(&prev)
    );
    drop(j);
    let (j, got) = open(dir.path());
    assert_eq!(got, Some(prev));
    assert_eq!((j.head(), j.seen()), (g, g));
}

#[test]
fn the_whole_config_ledger_is_adopted_even_when_its_adoption_was_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(4, &[1, 2]);
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::to_vec(&c).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.path().join("seen-generation"), "5\n").unwrap();
    std::fs::write(
        dir.path().join("candidate.json"),
        serde_json::to_vec(&config(5, &[9])).unwrap(),
    )
    .unwrap();
    let (j, got) = open(dir.path());
    assert_eq!(got.as_ref(), Some(&c));
    assert_eq!((j.head(), j.seen()), (4, 5));
    drop(j);
    for name in LEGACY {
        assert!(!dir.path().join(name).exists(), "{name}");
    }
    // Interrupted after the snapshot: the old files are stale and go.
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::to_vec(&config(3, &[])).unwrap(),
    )
    .unwrap();
    let (j, got) = open(dir.path());
    assert_eq!(got, Some(c));
    assert_eq!(j.seen(), 5);
    assert!(!dir.path().join("config.json").exists());
}

#[test]
fn a_difference_recorded_as_a_delta_replays_to_the_next_config() {
    let base = config(1, &[1, 2, 3, 5, 8]);
    let mut next = config(2, &[2, 3, 4, 8, 9]);
    next.firewall_rules[1].source_cidrs = vec!["10.0.0.0/8".parse().unwrap()];
    next.egress_default = router_config::EgressPolicy::Allow;
    let d = RouterDelta::between(&base, &next);
    assert_eq!(d.remove, vec![1, 5]);
    let upserted: Vec<u64> = d.upsert_firewall_rules.iter().map(|r| r.id).collect();
    assert_eq!(upserted, vec![3, 4, 9]);
    let mut parts = Parts::new(base.clone());
    parts.apply(&d).unwrap();
    assert_eq!(parts.into_config(), next);
}
