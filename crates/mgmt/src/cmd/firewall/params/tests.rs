//! The shared rule parameters parse into typed values with CloudStack's texts.

use api_types::catalogue::find;
use api_types::params::{check_and_normalize, Params};

use super::{Icmp, L4Match, PortRange, Protocol};

const ID: &str = "6f1c5b8e-3a2d-4c1e-9b7a-1234567890ab";

/// The command's parameters: `pairs` and the ids it requires.
fn params(command: &str, pairs: &[(&str, &str)]) -> Params {
    let id_param = match command {
        "createEgressFirewallRule" => "networkid",
        _ => "ipaddressid",
    };
    let raw: Vec<(String, String)> = pairs
        .iter()
        .chain(&[(id_param, ID)])
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    check_and_normalize(find(command).unwrap(), &raw).unwrap()
}

const INGRESS: [Protocol; 3] = [Protocol::Tcp, Protocol::Udp, Protocol::Icmp];

#[test]
fn a_protocol_is_trimmed_lowercased_and_one_of_the_allowed() {
    let p = params("createFirewallRule", &[("protocol", " TCP ")]);
    assert_eq!(Protocol::parse(&p, &INGRESS, "z").unwrap(), Protocol::Tcp);
    let p = params("createFirewallRule", &[("protocol", "all")]);
    let e = Protocol::parse(&p, &INGRESS, "z").unwrap_err();
    assert_eq!(
        e.text,
        "Protocol all is not supported in zone z (supported: tcp, udp, icmp)"
    );
}

#[test]
fn ports_and_icmp_parse_by_protocol() {
    let p = params(
        "createFirewallRule",
        &[("protocol", "tcp"), ("startport", "80"), ("endport", "90")],
    );
    let l4 = L4Match::parse(&p, Protocol::Tcp).unwrap();
    assert_eq!(
        l4,
        L4Match {
            ports: Some(PortRange { start: 80, end: 90 }),
            icmp: None
        }
    );
    assert_eq!((l4.ports(), l4.icmp()), (Some((80, 90)), None));

    let p = params(
        "createFirewallRule",
        &[("protocol", "icmp"), ("icmptype", "8"), ("icmpcode", "0")],
    );
    let l4 = L4Match::parse(&p, Protocol::Icmp).unwrap();
    assert_eq!(l4.icmp, Some(Icmp { kind: 8, code: 0 }));
    assert_eq!(l4.ports, None);

    let p = params(
        "createFirewallRule",
        &[("protocol", "icmp"), ("startport", "22")],
    );
    assert_eq!(
        L4Match::parse(&p, Protocol::Icmp).unwrap_err().text,
        "Can't specify start/end port when protocol is ICMP"
    );
    let p = params(
        "createFirewallRule",
        &[("protocol", "udp"), ("icmptype", "8")],
    );
    assert_eq!(
        L4Match::parse(&p, Protocol::Udp).unwrap_err().text,
        "Can specify icmpCode and icmpType for ICMP protocol only"
    );
}

#[test]
fn a_port_range_is_none_without_its_parameters() {
    let p = params(
        "createEgressFirewallRule",
        &[("protocol", "tcp"), ("startport", "2222")],
    );
    assert_eq!(
        PortRange::parse(&p, "startport", "endport").unwrap(),
        Some(PortRange {
            start: 2222,
            end: 2222
        })
    );
    let p = params("createEgressFirewallRule", &[("protocol", "all")]);
    assert_eq!(PortRange::parse(&p, "startport", "endport").unwrap(), None);
}
