//! Unit tests of the lab that need no privileges: targets, ids, specs, slots and names, and the
//! checks that run before a lab changes.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use ipnet::Ipv4Net;

use super::*;

#[test]
fn target_parses_outside_router_and_vm() {
    assert_eq!("outside".parse::<Target>().unwrap(), Target::Outside);
    assert_eq!(
        "router:net1".parse::<Target>().unwrap(),
        Target::Router("net1".to_string())
    );
    assert_eq!(
        "vm:web1".parse::<Target>().unwrap(),
        Target::Vm("web1".to_string())
    );
}

#[test]
fn target_rejects_unknown_kinds_and_empty_names() {
    for bad in ["", "inside", "vm:", "router:", "vm", "host:web1", "Outside"] {
        let err = bad.parse::<Target>().unwrap_err();
        assert_eq!(err.input, bad);
        assert!(err
            .to_string()
            .contains("expected `outside`, `router:NAME` or `vm:NAME`"));
    }
}

#[test]
fn target_display_round_trips() {
    for t in ["outside", "router:net1", "vm:web-2"] {
        assert_eq!(t.parse::<Target>().unwrap().to_string(), t);
    }
}

#[test]
fn lab_id_is_a_stable_fnv1a_hash_of_the_path() {
    assert_eq!(lab_id(Path::new("/tmp/x")), "gnff28930c");
    assert_eq!(lab_id(Path::new("/tmp/x")), lab_id(Path::new("/tmp/x")));
    assert_ne!(lab_id(Path::new("/tmp/x")), lab_id(Path::new("/tmp/y")));
    assert_eq!(lab_id(Path::new("/tmp/x")).len(), 10);
}

#[test]
fn namespaces_follow_the_naming_scheme() {
    let ns = Namespaces::for_spec("gn00000001", &LabSpec::default_demo());
    assert_eq!(
        ns.all(),
        [
            "gn00000001-vm-web1",
            "gn00000001-vm-web2",
            "gn00000001-r-net1",
            "gn00000001-outside",
            "gn00000001-sw"
        ]
    );
}

#[test]
fn spec_reads_from_json() {
    let spec = LabSpec::from_json(
        r#"{"networks": [{"router": "net1", "guest_cidr": "10.1.1.0/24", "gateway": "10.1.1.1",
            "vms": [{"name": "web1", "ip": "10.1.1.11"}, {"name": "web2", "ip": "10.1.1.12"}]}]}"#,
    )
    .unwrap();
    assert_eq!(spec, LabSpec::default_demo());
    let back = LabSpec::from_json(&serde_json::to_string(&spec).unwrap()).unwrap();
    assert_eq!(back, spec);
}

#[test]
fn spec_rejects_unknown_fields() {
    let err = LabSpec::from_json(
        r#"{"networks": [{"router": "r", "guest_cidr": "10.1.1.0/24", "gateway": "10.1.1.1", "colour": 1}]}"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("colour"), "{err}");
}

#[test]
fn default_demo_is_valid() {
    LabSpec::default_demo().validate().unwrap();
}

#[test]
fn validation_reports_every_problem() {
    let mut spec = LabSpec::default_demo();
    let mut net2 = spec.networks[0].clone();
    net2.gateway = Ipv4Addr::new(10, 2, 2, 1);
    net2.vms[1].name = "bad name".to_string();
    net2.vms.push(VmSpec {
        name: "web3".to_string(),
        ip: Ipv4Addr::new(10, 1, 1, 255),
        label: None,
    });
    net2.vms.push(VmSpec {
        name: "web4".to_string(),
        ip: Ipv4Addr::new(10, 1, 1, 11),
        label: None,
    });
    spec.networks.push(net2);
    let problems = spec.validate().unwrap_err();
    assert_eq!(
        problems,
        [
            SpecProblem::DuplicateName {
                kind: "router",
                name: "net1".to_string()
            },
            SpecProblem::GatewayOutside {
                router: "net1".to_string(),
                gateway: Ipv4Addr::new(10, 2, 2, 1),
                cidr: "10.1.1.0/24".parse().unwrap(),
            },
            SpecProblem::DuplicateName {
                kind: "vm",
                name: "web1".to_string()
            },
            SpecProblem::BadName {
                kind: "vm",
                name: "bad name".to_string()
            },
            SpecProblem::VmOutside {
                vm: "web3".to_string(),
                ip: Ipv4Addr::new(10, 1, 1, 255),
                cidr: "10.1.1.0/24".parse().unwrap(),
            },
            SpecProblem::DuplicateAddress {
                vm: "web4".to_string(),
                ip: Ipv4Addr::new(10, 1, 1, 11)
            },
        ]
    );
}

#[test]
fn empty_spec_is_invalid() {
    assert_eq!(
        LabSpec { networks: vec![] }.validate().unwrap_err(),
        [SpecProblem::NoNetworks]
    );
}

#[test]
fn an_empty_spec_passes_the_check_for_a_growing_lab() {
    assert_eq!(LabSpec { networks: vec![] }.check(false), Ok(()));
    assert_eq!(LabSpec::default_demo().check(false), Ok(()));
}

fn network(router: &str, third_octet: u8, vms: &[&str]) -> NetworkSpec {
    NetworkSpec {
        router: router.to_string(),
        guest_cidr: Ipv4Net::new(Ipv4Addr::new(10, 1, third_octet, 0), 24).unwrap(),
        gateway: Ipv4Addr::new(10, 1, third_octet, 1),
        vms: vms
            .iter()
            .zip(11..)
            .map(|(name, host)| VmSpec {
                name: (*name).to_string(),
                ip: Ipv4Addr::new(10, 1, third_octet, host),
                label: None,
            })
            .collect(),
    }
}

#[test]
fn the_limits_are_checked() {
    let spec = LabSpec {
        networks: (0..=MAX_NETWORKS)
            .map(|i| NetworkSpec {
                router: format!("r{i}"),
                guest_cidr: "10.0.0.0/24".parse().unwrap(),
                gateway: Ipv4Addr::new(10, 0, 0, 1),
                vms: vec![],
            })
            .collect(),
    };
    assert_eq!(
        spec.check(false).unwrap_err(),
        [SpecProblem::TooManyNetworks {
            count: MAX_NETWORKS + 1
        }]
    );

    let mut net = network("big", 0, &[]);
    net.guest_cidr = "10.0.0.0/16".parse().unwrap();
    net.gateway = Ipv4Addr::new(10, 0, 0, 1);
    net.vms = (0..=MAX_VMS)
        .map(|i| VmSpec {
            name: format!("vm{i}"),
            ip: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 1, 0)) + u32::try_from(i).unwrap()),
            label: None,
        })
        .collect();
    assert_eq!(
        LabSpec {
            networks: vec![net]
        }
        .check(false)
        .unwrap_err(),
        [SpecProblem::TooManyVms {
            router: "big".to_string(),
            count: MAX_VMS + 1
        }]
    );
}

#[test]
fn lowest_free_fills_gaps_first_and_stops_at_the_limit() {
    assert_eq!(switch::lowest_free([], 3), Some(0));
    assert_eq!(switch::lowest_free([0, 1, 3], 5), Some(2));
    assert_eq!(switch::lowest_free([1, 0], 5), Some(2));
    assert_eq!(switch::lowest_free([0, 1, 2], 3), None);
    assert_eq!(switch::lowest_free([], 0), None);
    let all: Vec<u16> = (0..u16::try_from(MAX_NETWORKS).unwrap()).collect();
    assert_eq!(switch::lowest_free(all, MAX_NETWORKS), None);
}

#[test]
fn slots_of_a_spec_are_its_indices() {
    let spec = LabSpec {
        networks: vec![
            network("a", 1, &["a1", "a2"]),
            network("b", 2, &["b1", "b2", "b3"]),
        ],
    };
    let mut slots = Slots::default();
    slots.fill(&spec);
    assert_eq!(
        slots.networks,
        BTreeMap::from([("a".to_string(), 0), ("b".to_string(), 1)])
    );
    assert_eq!(
        slots.vms,
        BTreeMap::from([
            ("a1".to_string(), 0),
            ("a2".to_string(), 1),
            ("b1".to_string(), 0),
            ("b2".to_string(), 1),
            ("b3".to_string(), 2),
        ])
    );
}

#[test]
fn slots_stay_put_when_others_go_and_freed_slots_are_reused() {
    let mut spec = LabSpec {
        networks: vec![
            network("a", 1, &["a1", "a2"]),
            network("b", 2, &["b1"]),
            network("c", 3, &[]),
        ],
    };
    let mut slots = Slots::default();
    slots.fill(&spec);

    // Remove network a (with its vms) and b's only vm; the others keep their slots.
    spec.networks.remove(0);
    spec.networks[0].vms.clear();
    slots.fill(&spec);
    assert_eq!(
        slots.networks,
        BTreeMap::from([("b".to_string(), 1), ("c".to_string(), 2)])
    );
    assert!(slots.vms.is_empty());

    // A new network takes the lowest free slot, 0; a new vm on b takes 0 again.
    spec.networks.push(network("d", 4, &["d1"]));
    spec.networks.push(network("e", 5, &[]));
    spec.networks[0].vms = network("b", 2, &["b2", "b3"]).vms;
    slots.fill(&spec);
    assert_eq!(
        slots.networks,
        BTreeMap::from([
            ("b".to_string(), 1),
            ("c".to_string(), 2),
            ("d".to_string(), 0),
            ("e".to_string(), 3),
        ])
    );
    assert_eq!(
        slots.vms,
        BTreeMap::from([
            ("b2".to_string(), 0),
            ("b3".to_string(), 1),
            ("d1".to_string(), 0),
        ])
    );

    // Removing b2 leaves b3 at 1; the next vm on b gets 0.
    spec.networks[0].vms.remove(0);
    spec.networks[0].vms.push(VmSpec {
        name: "b4".to_string(),
        ip: Ipv4Addr::new(10, 1, 2, 20),
        label: None,
    });
    slots.fill(&spec);
    assert_eq!(slots.vms.get("b3"), Some(&1));
    assert_eq!(slots.vms.get("b4"), Some(&0));
}

/// `IFNAMSIZ` less the terminating NUL.
const MAX_IFNAME_LEN: usize = 15;

#[test]
fn switch_names_fit_the_kernel_up_to_the_limits() {
    let net = u16::try_from(MAX_NETWORKS - 1).unwrap();
    let vm = u16::try_from(MAX_VMS - 1).unwrap();
    let names = [
        switch::guest_bridge(net),
        switch::router_public_port(net),
        switch::router_guest_port(net),
        switch::vm_port(net, vm),
    ];
    assert_eq!(names, ["brg999", "r999p", "r999g", "v999-999"]);
    for n in names {
        assert!(n.len() <= MAX_IFNAME_LEN, "{n}");
    }
    // The names of different slots never collide (no separator ambiguity).
    assert_ne!(switch::vm_port(1, 11), switch::vm_port(11, 1));
    assert_eq!(switch::vm_port(0, 0), "v0-0");
    assert_eq!(switch::guest_bridge(0), "brg0");
}

#[test]
fn a_state_file_without_slots_gets_the_index_slots() {
    let old = serde_json::json!({
        "id": "gn00000001",
        "namespaces": Namespaces::for_spec("gn00000001", &LabSpec::default_demo()),
        "spec": LabSpec::default_demo(),
    });
    let mut state: LabState = serde_json::from_value(old).unwrap();
    assert_eq!(state.slots, Slots::default());
    state.slots.fill(&state.spec);
    assert_eq!(
        state.slots,
        LabState::new("gn00000001".to_string(), &LabSpec::default_demo()).slots
    );
    assert_eq!(state.slots.networks.get("net1"), Some(&0));
    assert_eq!(state.slots.vms.get("web2"), Some(&1));
}

/// A lab held only in memory (nothing built), with its data directory.
fn paper_lab(spec: &LabSpec) -> (TempDir, Lab) {
    let dir = TempDir::new().unwrap();
    let lab = Lab {
        data_dir: dir.path().to_path_buf(),
        state: LabState::new("gn00000001".to_string(), spec),
    };
    (dir, lab)
}

#[test]
fn add_network_refuses_what_would_make_the_lab_invalid_and_records_nothing() {
    let (dir, mut lab) = paper_lab(&LabSpec::default_demo());
    let before = lab.state.clone();

    let err = lab.add_network(&network("net1", 2, &[])).unwrap_err();
    assert!(
        matches!(&err, LabError::InvalidSpec { problems } if problems == &[SpecProblem::DuplicateName {
            kind: "router",
            name: "net1".to_string()
        }]),
        "{err:?}"
    );

    let mut outside = network("net2", 2, &["web1"]);
    outside.gateway = Ipv4Addr::new(10, 9, 9, 1);
    let err = lab.add_network(&outside).unwrap_err();
    let LabError::InvalidSpec { problems } = err else {
        panic!("{err:?}")
    };
    assert_eq!(
        problems,
        [
            SpecProblem::GatewayOutside {
                router: "net2".to_string(),
                gateway: Ipv4Addr::new(10, 9, 9, 1),
                cidr: "10.1.2.0/24".parse().unwrap(),
            },
            SpecProblem::DuplicateName {
                kind: "vm",
                name: "web1".to_string()
            },
        ]
    );

    assert_eq!(lab.state.spec, before.spec);
    assert_eq!(lab.state.namespaces, before.namespaces);
    assert_eq!(lab.state.slots, before.slots);
    assert!(!dir.path().join(STATE_FILE).exists());
}

#[test]
fn add_vm_refuses_unknown_routers_and_bad_vms_and_records_nothing() {
    let (dir, mut lab) = paper_lab(&LabSpec::default_demo());
    let vm = |name: &str, ip: [u8; 4]| VmSpec {
        name: name.to_string(),
        ip: Ipv4Addr::from(ip),
        label: None,
    };

    let err = lab.add_vm("nope", &vm("web3", [10, 1, 1, 13])).unwrap_err();
    assert!(
        matches!(&err, LabError::UnknownRouter { name } if name == "nope"),
        "{err:?}"
    );

    let err = lab.add_vm("net1", &vm("web1", [10, 1, 1, 13])).unwrap_err();
    assert!(
        matches!(&err, LabError::InvalidSpec { problems } if problems == &[SpecProblem::DuplicateName {
            kind: "vm",
            name: "web1".to_string()
        }]),
        "{err:?}"
    );
    for ip in [[10, 1, 1, 1], [10, 1, 1, 12]] {
        let err = lab.add_vm("net1", &vm("web3", ip)).unwrap_err();
        assert!(
            matches!(&err, LabError::InvalidSpec { problems }
                if matches!(problems[..], [SpecProblem::DuplicateAddress { .. }])),
            "{err:?}"
        );
    }
    let err = lab.add_vm("net1", &vm("web3", [10, 1, 2, 13])).unwrap_err();
    assert!(
        matches!(&err, LabError::InvalidSpec { problems }
            if matches!(problems[..], [SpecProblem::VmOutside { .. }])),
        "{err:?}"
    );

    assert_eq!(lab.spec(), &LabSpec::default_demo());
    assert!(!dir.path().join(STATE_FILE).exists());
}

#[test]
fn removing_what_the_lab_does_not_know_is_ok_and_changes_nothing() {
    let (dir, mut lab) = paper_lab(&LabSpec::default_demo());
    lab.remove_vm("nope").unwrap();
    lab.remove_network("nope").unwrap();
    assert_eq!(lab.spec(), &LabSpec::default_demo());
    assert!(!dir.path().join(STATE_FILE).exists());
}

#[test]
fn guest_bridges_follow_the_slots() {
    let spec = LabSpec {
        networks: vec![network("a", 1, &[]), network("b", 2, &[])],
    };
    let (_dir, mut lab) = paper_lab(&spec);
    assert_eq!(lab.guest_bridge("b").unwrap(), "brg1");
    lab.state.spec.networks.remove(0);
    lab.state.slots.fill(&lab.state.spec);
    assert_eq!(lab.guest_bridge("b").unwrap(), "brg1");
    assert!(matches!(
        lab.guest_bridge("a"),
        Err(LabError::UnknownRouter { .. })
    ));
}

#[test]
fn vms_of_several_accounts_are_found_by_name_and_qualifier() {
    let labelled = |key: &str, name: &str, account: &str, network: &str, host: u8| VmSpec {
        name: key.to_string(),
        ip: Ipv4Addr::new(10, 1, 1, host),
        label: Some(VmLabel {
            name: name.to_string(),
            account: account.to_string(),
            network: network.to_string(),
        }),
    };
    let mut spec = LabSpec::default_demo();
    spec.networks[0]
        .vms
        .push(labelled("0a1b", "app", "alice", "net-a", 21));
    spec.networks[0]
        .vms
        .push(labelled("2c3d", "app", "bob", "net-b", 22));
    spec.networks[0]
        .vms
        .push(labelled("4e5f", "db", "bob", "net-b", 23));

    assert_eq!(vm_called(&spec, "db").unwrap(), "4e5f");
    assert_eq!(vm_called(&spec, "app@alice").unwrap(), "0a1b");
    assert_eq!(vm_called(&spec, "app@net-b").unwrap(), "2c3d");
    let err = vm_called(&spec, "app").unwrap_err();
    assert_eq!(
        err.to_string(),
        "vm name `app` is ambiguous; name one of: vm:app@alice (network net-a; or vm:0a1b), \
         vm:app@bob (network net-b; or vm:2c3d)"
    );
    assert!(matches!(
        vm_called(&spec, "app@carol"),
        Err(LabError::UnknownVm { .. })
    ));
    // An unlabelled VM (the demo's) answers only to its key, which Lab::vm_netns looks up
    // first.
    assert!(matches!(
        vm_called(&spec, "web1"),
        Err(LabError::UnknownVm { .. })
    ));
}
