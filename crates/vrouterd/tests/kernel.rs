//! The router's rules around the kernel, checked exactly over a recording kernel: generations,
//! the ledger, delta or full replace, refusals and drift. These tests need no root and no
//! namespace: the router is a `Router<RecordingKernel>` (no haproxy), its state directory a
//! temporary one. What the kernel then does with packets is the lab tests' part (`tests/it`).

use std::path::Path;

use router_config::{validate, RouterConfig, RouterDelta};
use serde_json::{json, Value};
use sys::kernel::{Batch, Call, Commit, RecordingKernel};
use vrouterd::serve::status_of;
use vrouterd::{chain, element_batches, ApplyError, ApplyMode, ApplyOutcome, CommitPath, Drift};

type Router = vrouterd::Router<RecordingKernel>;

const PUBLIC_IP: &str = "203.0.113.11";

/// A config with two public IPs, guest 10.1.1.0/24 and the given ingress rules, each
/// `(id, ports, sources)` on tcp to [`PUBLIC_IP`].
fn config(generation: u64, rules: &[(u64, &str, &str)]) -> RouterConfig {
    let rules: Vec<Value> = rules
        .iter()
        .map(|(id, ports, source)| {
            let (start, end) = ports.split_once('-').unwrap_or((ports, ports));
            let n = |s: &str| -> u32 { s.parse().expect("ports are numbers in tests") };
            json!({ "id": id, "public_ip": PUBLIC_IP, "protocol": "tcp",
                    "ports": { "start": n(start), "end": n(end) }, "source_cidrs": [source] })
        })
        .collect();
    serde_json::from_value(json!({
        "schema": 1,
        "generation": generation,
        "public": {
            "interface": "pub0",
            "addresses": [
                { "ip": "203.0.113.10", "prefix_len": 24, "source_nat": true },
                { "ip": PUBLIC_IP, "prefix_len": 24 }
            ],
            "gateway": "203.0.113.1"
        },
        "guest": { "interface": "guest0", "cidr": "10.1.1.0/24", "gateway": "10.1.1.1" },
        "egress_default": "deny",
        "firewall_rules": rules,
        "egress_rules": [],
        "port_forwards": []
    }))
    .expect("tests build well-formed documents")
}

/// Port 80 from anywhere, port 22 from one network.
fn serving(generation: u64) -> RouterConfig {
    config(
        generation,
        &[(1, "80", "0.0.0.0/0"), (2, "22", "198.51.100.0/24")],
    )
}

struct Fixture {
    kernel: RecordingKernel,
    router: Router,
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let kernel = RecordingKernel::new();
        let router = Router::with_kernel(kernel.clone(), dir.path())
            .unwrap_or_else(|e| panic!("open: {}", chain(&e)));
        Fixture {
            kernel,
            router,
            dir,
        }
    }

    fn apply(&mut self, doc: RouterConfig) -> ApplyOutcome {
        self.router
            .apply_document(doc)
            .unwrap_or_else(|e| panic!("apply refused: {}", chain(&e)))
    }

    /// The generation of the config the ledger holds.
    fn ledger_generation(&self) -> Option<u64> {
        ledger_generation(self.dir.path())
    }

    fn journal_len(&self) -> usize {
        self.kernel.journal().len()
    }
}

fn ledger_generation(dir: &Path) -> Option<u64> {
    ledger_config(dir).map(|c| c.generation)
}

fn ledger_config(dir: &Path) -> Option<RouterConfig> {
    vrouterd::journal::read_state(dir)
        .expect("the ledger reads back")
        .1
}

fn seen_generation(dir: &Path) -> u64 {
    vrouterd::journal::read_state(dir)
        .expect("the ledger reads back")
        .0
}

fn scripts(journal: &[Commit]) -> usize {
    journal
        .iter()
        .filter(|c| matches!(c.call, Call::Script(_)))
        .count()
}

#[test]
fn first_apply_is_a_staged_load_after_the_interfaces_and_is_recorded_in_the_ledger() {
    let mut f = Fixture::new();
    let g0 = f.kernel.current_generation();
    let outcome = f.apply(serving(5));
    assert!(
        matches!(
            outcome,
            ApplyOutcome::Applied {
                generation: 5,
                mode: ApplyMode::Full,
                via: CommitPath::Staged,
                ..
            }
        ),
        "{outcome:?}"
    );
    let journal = f.kernel.journal();
    assert_eq!(journal.len(), 3, "{journal:?}");
    let Call::Interfaces(i) = &journal[0].call else {
        panic!("interfaces first: {journal:?}");
    };
    assert_eq!(i.public, "pub0");
    assert_eq!(i.public_addresses.len(), 2);
    assert_eq!(i.guest_address, ("10.1.1.1".parse().unwrap(), 24));
    // The kernel held no table: the skeleton, then every element in one batch pinned to the
    // generation the skeleton left.
    let staged =
        render::render_staged(&render::plan(&validate(serving(5)).unwrap())).expect("a typed form");
    assert_eq!(journal[1].call, Call::Script(staged.skeleton.clone()));
    let Call::Batch(batch) = &journal[2].call else {
        panic!("the elements second: {journal:?}");
    };
    assert_eq!(batch.expected_generation, g0 + 1);
    assert!(batch.remove.is_empty());
    assert_eq!(batch.elements.len(), staged.elements.len());
    assert!(batch.elements.iter().all(|b| !b.delete));
    assert!(journal.iter().all(|c| c.accepted));
    assert_eq!(f.kernel.current_generation(), g0 + 2);
    assert_eq!(f.router.generation(), Some(5));
    assert_eq!(f.ledger_generation(), Some(5));
    assert_eq!(seen_generation(f.dir.path()), 5);
    assert_eq!(f.router.drift().unwrap(), Drift::InSync);
}

#[test]
fn a_kernel_that_holds_the_table_is_replaced_in_one_script_and_one_that_lost_it_is_staged() {
    let mut f = Fixture::new();
    f.apply(serving(5));
    let full = render::render_full(&render::plan(&validate(serving(5)).unwrap()));

    // The nftables calls of a repair (a repair sets the interfaces again too).
    let repair = |f: &mut Fixture| -> Vec<Call> {
        let before = f.journal_len();
        assert_eq!(f.router.repair().unwrap(), Some(5));
        f.kernel.journal()[before..]
            .iter()
            .map(|c| c.call.clone())
            .filter(|c| !matches!(c, Call::Interfaces(_)))
            .collect()
    };

    // Someone else committed; the table is still there: one transaction, as always.
    f.kernel.commit_by_someone_else();
    assert_eq!(repair(&mut f), [Call::Script(full)]);

    // The ruleset was flushed: nothing is enforced, so the load is staged.
    f.kernel.lose_ruleset();
    let calls = repair(&mut f);
    assert!(
        matches!(&calls[..], [Call::Script(_), Call::Batch(_)]),
        "{calls:?}"
    );
    assert_eq!(f.router.drift().unwrap(), Drift::InSync);
}

#[test]
fn a_staged_load_whose_elements_are_refused_is_replaced_whole_in_the_same_apply() {
    let mut f = Fixture::new();
    f.kernel.refuse_next_batch("no room");
    let outcome = f.apply(serving(5));
    assert!(
        matches!(
            outcome,
            ApplyOutcome::Applied {
                generation: 5,
                mode: ApplyMode::Full,
                via: CommitPath::Nft,
                ..
            }
        ),
        "{outcome:?}"
    );
    let journal = f.kernel.journal();
    let accepted: Vec<bool> = journal.iter().skip(1).map(|c| c.accepted).collect();
    assert_eq!(accepted, [true, false, true], "{journal:?}");
    let full = render::render_full(&render::plan(&validate(serving(5)).unwrap()));
    assert_eq!(journal[3].call, Call::Script(full));
    assert_eq!(f.router.drift().unwrap(), Drift::InSync);
    assert_eq!(f.ledger_generation(), Some(5));
}

#[test]
fn an_older_generation_is_answered_superseded_and_reaches_no_kernel() {
    let mut f = Fixture::new();
    f.apply(serving(5));
    let before = f.kernel.journal();
    let older = config(4, &[(1, "443", "0.0.0.0/0")]);
    assert_eq!(
        f.apply(older.clone()),
        ApplyOutcome::Superseded {
            applied_generation: 5
        }
    );
    // A delta to an older generation too.
    let delta = RouterDelta::between(&serving(5), &older);
    assert_eq!(
        f.router.apply_delta(&delta).unwrap(),
        ApplyOutcome::Superseded {
            applied_generation: 5
        }
    );
    assert_eq!(f.kernel.journal(), before);
    assert_eq!(f.router.generation(), Some(5));
    assert_eq!(f.ledger_generation(), Some(5));
    assert_eq!(seen_generation(f.dir.path()), 5);
}

#[test]
fn the_same_generation_with_the_same_content_is_a_no_op_with_no_kernel_call() {
    let mut f = Fixture::new();
    f.apply(serving(5));
    let before = f.kernel.journal();
    let generation = f.kernel.current_generation();
    assert_eq!(
        f.apply(serving(5)),
        ApplyOutcome::Unchanged { generation: 5 }
    );
    // Another rule order is the same content.
    let mut reordered = serving(5);
    reordered.firewall_rules.reverse();
    assert_eq!(
        f.apply(reordered),
        ApplyOutcome::Unchanged { generation: 5 }
    );
    assert_eq!(f.kernel.journal(), before);
    assert_eq!(f.kernel.current_generation(), generation);
}

#[test]
fn the_same_number_with_other_content_is_refused_and_changes_nothing() {
    let mut f = Fixture::new();
    f.apply(serving(5));
    let before = f.kernel.journal();
    let err = f
        .router
        .apply_document(config(5, &[(1, "80", "0.0.0.0/0")]))
        .unwrap_err();
    assert!(
        matches!(
            err,
            ApplyError::GenerationReused {
                generation: 5,
                applied: 5
            }
        ),
        "{}",
        chain(&err)
    );
    assert_eq!(f.kernel.journal(), before);
    assert_eq!(f.router.generation(), Some(5));
    assert_eq!(f.ledger_generation(), Some(5));
    assert!(f
        .router
        .config()
        .unwrap()
        .same_content(&validate(serving(5)).unwrap()));
}

#[test]
fn an_invalid_config_burns_its_generation_without_reaching_the_kernel() {
    let mut f = Fixture::new();
    f.apply(serving(5));
    let before = f.kernel.journal();
    let err = f
        .router
        .apply_document(config(6, &[(1, "1-70000", "0.0.0.0/0")]))
        .unwrap_err();
    assert!(
        matches!(err, ApplyError::Invalid { generation: 6, .. }),
        "{}",
        chain(&err)
    );
    assert_eq!(seen_generation(f.dir.path()), 6);
    // The number is never accepted again, even with a valid config.
    let err = f.router.apply_document(serving(6)).unwrap_err();
    assert!(
        matches!(
            err,
            ApplyError::GenerationReused {
                generation: 6,
                applied: 5
            }
        ),
        "{}",
        chain(&err)
    );
    assert_eq!(f.kernel.journal(), before);
    assert_eq!(f.router.generation(), Some(5));
    assert!(matches!(
        f.apply(serving(7)),
        ApplyOutcome::Applied { generation: 7, .. }
    ));
}

#[test]
fn a_refused_commit_leaves_the_ledger_the_model_and_the_kernel_unchanged() {
    let mut f = Fixture::new();
    f.apply(serving(5));
    let kernel_generation = f.kernel.current_generation();
    let ledger_before = ledger_config(f.dir.path()).unwrap();
    let mark_before = std::fs::read(f.dir.path().join("kernel.json")).unwrap();

    f.kernel.refuse_commits("no room");
    let err = f
        .router
        .apply_document(config(6, &[(1, "443", "0.0.0.0/0")]))
        .unwrap_err();
    let ApplyError::Kernel { generation: 6, .. } = &err else {
        panic!("expected a kernel refusal: {}", chain(&err));
    };
    assert!(
        chain(&err) == "kernel refused generation 6: no room",
        "{}",
        chain(&err)
    );
    // The delta was tried, then the full replace: both refused.
    let refused: Vec<Commit> = f
        .kernel
        .journal()
        .into_iter()
        .filter(|c| !c.accepted)
        .collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(matches!(refused[0].call, Call::Batch(_)), "{refused:?}");
    assert!(matches!(refused[1].call, Call::Script(_)), "{refused:?}");

    assert_eq!(f.kernel.current_generation(), kernel_generation);
    assert_eq!(ledger_config(f.dir.path()).unwrap(), ledger_before);
    assert_eq!(
        std::fs::read(f.dir.path().join("kernel.json")).unwrap(),
        mark_before
    );
    assert_eq!(seen_generation(f.dir.path()), 6);
    assert_eq!(f.router.generation(), Some(5));
    assert_eq!(f.router.drift().unwrap(), Drift::InSync);

    // Taken again, the next generation goes as a delta against what the kernel still holds.
    f.kernel.accept_commits();
    assert!(matches!(
        f.apply(config(7, &[(1, "443", "0.0.0.0/0")])),
        ApplyOutcome::Applied {
            generation: 7,
            mode: ApplyMode::Delta,
            ..
        }
    ));
    assert_eq!(f.ledger_generation(), Some(7));
}

#[test]
fn a_delta_the_kernel_refuses_leaves_config_and_model_as_the_kernel_holds_them() {
    let mut f = Fixture::new();
    f.apply(serving(5));
    let held = f.router.config().unwrap().clone();
    let held_model = f.router.model().unwrap().clone();
    let ledger_before = ledger_config(f.dir.path()).unwrap();

    f.kernel.refuse_commits("no room");
    let next = config(
        6,
        &[(1, "8000-8100", "0.0.0.0/0"), (3, "22", "198.51.100.0/25")],
    );
    let delta = RouterDelta::between(&serving(5), &next);
    let err = f.router.apply_delta(&delta).unwrap_err();
    assert!(
        matches!(err, ApplyError::Kernel { generation: 6, .. }),
        "{}",
        chain(&err)
    );
    // The config moved in place is moved back, and so is the model.
    assert_eq!(f.router.config(), Some(&held));
    assert_eq!(f.router.model(), Some(&held_model));
    assert_eq!(f.router.model(), Some(&render::plan(&held)));
    assert_eq!(ledger_config(f.dir.path()).unwrap(), ledger_before);
    assert_eq!(f.router.drift().unwrap(), Drift::InSync);

    // The next generation goes as a delta against what the kernel still holds.
    f.kernel.accept_commits();
    let next = config(7, &[(1, "8000-8100", "0.0.0.0/0")]);
    let delta = RouterDelta::between(&serving(5), &next);
    assert!(matches!(
        f.router.apply_delta(&delta).unwrap(),
        ApplyOutcome::Applied {
            generation: 7,
            mode: ApplyMode::Delta,
            ..
        }
    ));
    let want = validate(next).unwrap();
    assert_eq!(f.router.config(), Some(&want));
    assert_eq!(f.router.model(), Some(&render::plan(&want)));
    assert_eq!(f.ledger_generation(), Some(7));
}

#[test]
fn a_delta_with_a_problem_is_refused_whole_and_changes_nothing() {
    let mut f = Fixture::new();
    f.apply(serving(5));
    let held = f.router.config().unwrap().clone();
    let before = f.kernel.journal();
    let next = config(6, &[(1, "0", "0.0.0.0/0")]);
    let delta = RouterDelta::between(&serving(5), &next);
    let err = f.router.apply_delta(&delta).unwrap_err();
    let ApplyError::Invalid {
        generation: 6,
        problems,
    } = &err
    else {
        panic!("expected the delta's problems: {}", chain(&err));
    };
    assert_eq!(
        problems.to_string(),
        "firewall rule 1: field `ports.start`: 0 is not a port (1-65535); firewall rule 1: field `ports.end`: 0 is not a port (1-65535)"
    );
    assert_eq!(f.router.config(), Some(&held));
    assert_eq!(f.kernel.journal(), before);
    assert_eq!(seen_generation(f.dir.path()), 6);
}

#[test]
fn a_refused_delta_falls_back_to_a_full_replace_in_the_same_apply() {
    let mut f = Fixture::new();
    f.apply(serving(5));
    f.kernel.refuse_next_commit("once");
    let outcome = f.apply(config(6, &[(1, "443", "0.0.0.0/0")]));
    assert!(
        matches!(
            outcome,
            ApplyOutcome::Applied {
                generation: 6,
                mode: ApplyMode::Full,
                via: CommitPath::Nft,
                ..
            }
        ),
        "{outcome:?}"
    );
    let journal = f.kernel.journal();
    let last = &journal[journal.len() - 2..];
    assert!(
        matches!(
            last[0],
            Commit {
                call: Call::Batch(_),
                accepted: false
            }
        ),
        "{last:?}"
    );
    let full = render::render_full(&render::plan(
        &validate(config(6, &[(1, "443", "0.0.0.0/0")])).unwrap(),
    ));
    assert_eq!(
        last[1],
        Commit {
            call: Call::Script(full),
            accepted: true
        }
    );
    assert_eq!(f.router.drift().unwrap(), Drift::InSync);
}

#[test]
fn a_single_port_change_is_one_netlink_batch_pinned_to_the_kernels_generation() {
    let mut f = Fixture::new();
    f.apply(serving(5));
    let pinned = f.kernel.current_generation();
    let before = f.journal_len();
    let next = config(6, &[(1, "80", "0.0.0.0/0"), (3, "8443", "0.0.0.0/0")]);
    let outcome = f.apply(next.clone());
    assert!(
        matches!(
            outcome,
            ApplyOutcome::Applied {
                generation: 6,
                mode: ApplyMode::Delta,
                via: CommitPath::Netlink,
                ..
            }
        ),
        "{outcome:?}"
    );
    let old = validate(serving(5)).unwrap();
    let new = validate(next).unwrap();
    let update = render::plan(&old).update(&old, &new);
    let fast = update.fast.expect("a fast update");
    assert!(fast.create.is_empty());
    let journal = f.kernel.journal();
    assert_eq!(
        journal[before..],
        [Commit {
            call: Call::Batch(Batch {
                table: render::TABLE.to_string(),
                expected_generation: pinned,
                elements: element_batches(&fast),
                remove: fast.remove.clone(),
            }),
            accepted: true,
        }],
        "no interfaces and no script for a rule change"
    );
    assert_eq!(f.kernel.current_generation(), pinned + 1);
    assert_eq!(f.router.drift().unwrap(), Drift::InSync);
}

#[test]
fn a_new_port_range_creates_its_bucket_by_script_then_batches_its_elements() {
    let mut f = Fixture::new();
    f.apply(serving(5));
    let before = f.journal_len();
    let g = f.kernel.current_generation();
    let outcome = f.apply(config(
        6,
        &[
            (1, "80", "0.0.0.0/0"),
            (2, "22", "198.51.100.0/24"),
            (4, "9000-9010", "192.0.2.0/24"),
        ],
    ));
    assert!(
        matches!(
            outcome,
            ApplyOutcome::Applied {
                mode: ApplyMode::Delta,
                via: CommitPath::Netlink,
                ..
            }
        ),
        "{outcome:?}"
    );
    let journal = &f.kernel.journal()[before..];
    assert_eq!(journal.len(), 2, "{journal:?}");
    assert!(
        matches!(&journal[0].call, Call::Script(s) if !s.is_empty()),
        "{journal:?}"
    );
    // The batch is pinned to the generation the bucket's script left.
    assert!(
        matches!(&journal[1].call, Call::Batch(b) if b.expected_generation == g + 1),
        "{journal:?}"
    );
    assert_eq!(f.kernel.current_generation(), g + 2);

    // Removing it again deletes the bucket in the batch.
    let outcome = f.apply(serving(7));
    assert!(
        matches!(
            outcome,
            ApplyOutcome::Applied {
                mode: ApplyMode::Delta,
                ..
            }
        ),
        "{outcome:?}"
    );
    let Some(Commit {
        call: Call::Batch(b),
        accepted: true,
    }) = f.kernel.journal().last().cloned()
    else {
        panic!("a batch last: {:?}", f.kernel.journal());
    };
    assert_eq!(b.remove.len(), 1, "{b:?}");
}

#[test]
fn a_generation_that_changes_no_rule_commits_nothing() {
    let mut f = Fixture::new();
    f.apply(serving(5));
    let before = f.kernel.journal();
    let outcome = f.apply(serving(6));
    assert!(
        matches!(
            outcome,
            ApplyOutcome::Applied {
                generation: 6,
                mode: ApplyMode::Delta,
                via: CommitPath::Nothing,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(f.kernel.journal(), before);
    assert_eq!(f.ledger_generation(), Some(6));
}

#[test]
fn an_address_change_sets_the_interfaces_again() {
    let mut f = Fixture::new();
    f.apply(serving(5));
    let mut next = serving(6);
    next.public.gateway = Some("203.0.113.254".parse().unwrap());
    let before = f.journal_len();
    f.apply(next);
    let journal = &f.kernel.journal()[before..];
    assert!(
        matches!(&journal[0].call, Call::Interfaces(i) if i.public_gateway == Some("203.0.113.254".parse().unwrap())),
        "{journal:?}"
    );
}

#[test]
fn drift_is_found_when_the_kernels_generation_moves_and_repair_replaces_the_table() {
    let mut f = Fixture::new();
    f.apply(serving(5));
    let left = f.kernel.current_generation();
    assert_eq!(f.router.drift().unwrap(), Drift::InSync);

    f.kernel.commit_by_someone_else();
    let drift = f.router.drift().unwrap();
    assert_eq!(
        drift,
        Drift::Drifted {
            expected: left,
            found: left + 1
        }
    );
    let report = status_of(&mut f.router, false).unwrap_or_else(|e| panic!("{}", chain(&e)));
    assert_eq!(report.drift, drift);
    assert_eq!(report.repaired, None);
    assert_eq!(report.netns, f.kernel.to_string());

    let scripts_before = scripts(&f.kernel.journal());
    let report = status_of(&mut f.router, true).unwrap_or_else(|e| panic!("{}", chain(&e)));
    assert_eq!(report.repaired, Some(5));
    assert_eq!(report.drift, Drift::InSync);
    assert_eq!(scripts(&f.kernel.journal()), scripts_before + 1);
    let full = render::render_full(&render::plan(&validate(serving(5)).unwrap()));
    assert_eq!(
        f.kernel.journal().last().map(|c| &c.call),
        Some(&Call::Script(full))
    );

    // A delta is never built on a kernel that moved: the next apply replaces the table.
    f.kernel.commit_by_someone_else();
    let outcome = f.apply(config(6, &[(1, "443", "0.0.0.0/0")]));
    assert!(
        matches!(
            outcome,
            ApplyOutcome::Applied {
                mode: ApplyMode::Full,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(f.router.drift().unwrap(), Drift::InSync);
}

#[test]
fn the_same_generation_sent_again_to_a_drifted_router_repairs_it() {
    let mut f = Fixture::new();
    f.apply(serving(5));
    f.kernel.commit_by_someone_else();
    let before = scripts(&f.kernel.journal());
    assert_eq!(
        f.apply(serving(5)),
        ApplyOutcome::Unchanged { generation: 5 }
    );
    assert_eq!(scripts(&f.kernel.journal()), before + 1);
    assert_eq!(f.router.drift().unwrap(), Drift::InSync);
}

#[test]
fn a_failed_repair_keeps_reporting_drift_until_a_commit_succeeds() {
    let mut f = Fixture::new();
    f.apply(serving(5));
    f.kernel.commit_by_someone_else();
    f.kernel.refuse_commits("busy");
    let err = f.router.repair().unwrap_err();
    assert!(
        matches!(err, ApplyError::Kernel { generation: 5, .. }),
        "{}",
        chain(&err)
    );
    assert!(matches!(f.router.drift().unwrap(), Drift::Drifted { .. }));
    assert!(!f.dir.path().join("kernel.json").exists());
    f.kernel.accept_commits();
    assert_eq!(f.router.repair().unwrap(), Some(5));
    assert_eq!(f.router.drift().unwrap(), Drift::InSync);
}

#[test]
fn a_reopened_router_resumes_from_its_ledger_when_the_kernel_still_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = RecordingKernel::new();
    let mut router = Router::with_kernel(kernel.clone(), dir.path()).unwrap();
    router.apply_document(serving(5)).unwrap();
    // The ledger is locked while a router holds it.
    let err = Router::with_kernel(RecordingKernel::new(), dir.path()).unwrap_err();
    assert!(matches!(err, ApplyError::Ledger(_)), "{}", chain(&err));
    drop(router);

    // Same kernel, nothing committed since: the model is rebuilt, the next apply is a delta.
    let mut router = Router::with_kernel(kernel.clone(), dir.path()).unwrap();
    assert_eq!(router.generation(), Some(5));
    assert_eq!(router.drift().unwrap(), Drift::InSync);
    let outcome = router
        .apply_document(config(6, &[(1, "80", "0.0.0.0/0")]))
        .unwrap();
    assert!(
        matches!(
            outcome,
            ApplyOutcome::Applied {
                mode: ApplyMode::Delta,
                ..
            }
        ),
        "{outcome:?}"
    );
    drop(router);

    // Another kernel (a namespace made again): drift until the ledger is restored.
    let fresh = RecordingKernel::new();
    let mut router = Router::with_kernel(fresh.clone(), dir.path()).unwrap();
    assert_eq!(router.generation(), None);
    assert!(matches!(router.drift().unwrap(), Drift::Drifted { .. }));
    assert_eq!(
        router
            .apply_document(config(6, &[(1, "80", "0.0.0.0/0")]))
            .unwrap(),
        ApplyOutcome::Unchanged { generation: 6 }
    );
    assert_eq!(scripts(&fresh.journal()), 1);
    assert_eq!(router.generation(), Some(6));
    assert_eq!(router.drift().unwrap(), Drift::InSync);
}

#[test]
fn a_delta_applies_only_to_the_generation_the_router_holds() {
    let mut f = Fixture::new();
    f.apply(serving(5));
    let next = config(6, &[(1, "80", "0.0.0.0/0")]);
    let stale = RouterDelta::between(&serving(4), &next);
    let err = f.router.apply_delta(&stale).unwrap_err();
    assert!(matches!(err, ApplyError::Delta(_)), "{}", chain(&err));
    assert_eq!(f.router.generation(), Some(5));

    let delta = RouterDelta::between(&serving(5), &next);
    assert!(matches!(
        f.router.apply_delta(&delta).unwrap(),
        ApplyOutcome::Applied {
            generation: 6,
            mode: ApplyMode::Delta,
            ..
        }
    ));
    assert!(f
        .router
        .config()
        .unwrap()
        .same_content(&validate(next).unwrap()));
}

#[test]
fn load_balancer_rules_are_taken_without_haproxy() {
    let mut f = Fixture::new();
    let mut doc = serde_json::to_value(serving(5)).unwrap();
    doc["load_balancers"] = json!([{ "id": 30, "public_ip": PUBLIC_IP, "public_port": 8080,
        "algorithm": "roundrobin", "members": [{ "vm_ip": "10.1.1.11", "port": 80 }],
        "source_cidrs": ["0.0.0.0/0"] }]);
    let doc: RouterConfig = serde_json::from_value(doc).unwrap();
    assert!(matches!(
        f.apply(doc),
        ApplyOutcome::Applied { generation: 5, .. }
    ));
    assert_eq!(f.router.config().unwrap().load_balancers.len(), 1);
    assert!(f.router.load_balancers().unwrap().is_empty());
    assert!(f.router.draining_members().is_empty());
    f.router.tend_balancer().unwrap();
    assert!(!f.dir.path().join("haproxy").exists());
}
