//! A change of ten thousand set elements in one generation goes through the netlink batch, not
//! a full replace, and the kernel ends up holding every element; a first load of thousands of
//! buckets is staged, its elements in one batch.

use serde_json::Value;
use vrouterd::{ApplyMode, ApplyOutcome, CommitPath, Drift};

use crate::support::*;

const SOURCES: &[&str] = &["198.51.100.0/24"];

/// How many elements the kernel holds in set `set` of the router's table.
fn kernel_elements(net: &Net, set: &str) -> usize {
    kernel_listed(net, "set", set)
}

/// How many elements the kernel holds in the set or map (`kind`) `name` of the router's table.
fn kernel_listed(net: &Net, kind: &str, name: &str) -> usize {
    let out = net.in_router(&["nft", "-j", "list", kind, "ip", render::TABLE, name]);
    let listing: Value = serde_json::from_slice(&out.stdout).expect("nft prints JSON");
    listing["nftables"]
        .as_array()
        .expect("a list of objects")
        .iter()
        .find_map(|o| o.get(kind))
        .expect("the set")
        .get("elem")
        .and_then(Value::as_array)
        .map_or(0, Vec::len)
}

fn assert_netlink_delta(outcome: &ApplyOutcome, generation: u64) {
    assert!(
        matches!(
            outcome,
            ApplyOutcome::Applied {
                generation: g,
                mode: ApplyMode::Delta,
                via: CommitPath::Netlink,
                ..
            } if *g == generation
        ),
        "generation {generation} fell back from the netlink batch: {outcome:?}"
    );
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn ten_thousand_elements_in_one_generation_go_as_one_netlink_batch() {
    let mut net = Net::up();
    let base = Config::new(1).firewall(1, PUBLIC_IP, "tcp", "8080", SOURCES);
    net.apply(&base);
    assert_eq!(kernel_elements(&net, "in_x_24"), 1);

    // Ten thousand single-port rules from the same sources: ten thousand new elements of the
    // existing set, far more than one netlink attribute can hold (about 2,300).
    let grown = (0..10_000u64).fold(base.clone().generation(2), |cfg, i| {
        let port = (10_000 + i).to_string();
        cfg.firewall(1_000 + i, PUBLIC_IP, "tcp", &port, SOURCES)
    });
    let outcome = net.apply(&grown);
    assert_netlink_delta(&outcome, 2);
    assert_eq!(kernel_elements(&net, "in_x_24"), 10_001);
    assert_eq!(net.router.drift().expect("drift"), Drift::InSync);

    // And all of them go again in one generation.
    let outcome = net.apply(&base.generation(3));
    assert_netlink_delta(&outcome, 3);
    assert_eq!(kernel_elements(&net, "in_x_24"), 1);
    assert_eq!(net.router.drift().expect("drift"), Drift::InSync);
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn a_first_load_of_thousands_of_buckets_is_staged_in_one_batch() {
    let mut net = Net::up();
    // Three thousand port ranges, each from a /24 of its own: three thousand buckets, each a
    // chain with an interval set, so the elements' batch is thousands of messages, each
    // acknowledged.
    let cfg = (0..3_000u64).fold(Config::new(1), |cfg, i| {
        let source = format!("100.{}.{}.0/24", 64 + i / 256, i % 256);
        cfg.firewall(1 + i, PUBLIC_IP, "tcp", "1000-2000", &[source.as_str()])
    });
    let outcome = net.apply(&cfg);
    assert!(
        matches!(
            outcome,
            ApplyOutcome::Applied {
                generation: 1,
                mode: ApplyMode::Full,
                via: CommitPath::Staged,
                ..
            }
        ),
        "the load into an empty namespace was not staged: {outcome:?}"
    );
    assert_eq!(kernel_listed(&net, "map", "in_r_24"), 3_000);
    assert_eq!(net.router.drift().expect("drift"), Drift::InSync);
}
