use std::net::Ipv4Addr;
use std::path::Path;

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
    });
    net2.vms.push(VmSpec {
        name: "web4".to_string(),
        ip: Ipv4Addr::new(10, 1, 1, 11),
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
