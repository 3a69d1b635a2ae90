//! Egress rules under both default policies: VMs reaching the outside, source-NATed.

use lab::Target;

use crate::support::*;

/// Outside servers: HTTP on 8081 and 8082 on every outside address, and UDP on 5300 on the
/// addresses the tests use. A UDP server bound to 0.0.0.0 would answer from the address its
/// route picks, not the one asked, and conntrack would rightly not take that for a reply.
fn outside_servers(net: &mut Net) {
    net.http_server(&outside(), "0.0.0.0", 8081, "outside");
    net.http_server(&outside(), "0.0.0.0", 8082, "outside");
    for ip in [OUTSIDE, NET_A1, NET_A2, NET_C] {
        net.udp_server(&outside(), ip, 5300, "outside");
    }
}

fn web1() -> Target {
    vm("web1")
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn egress_deny_lets_out_only_what_a_rule_allows() {
    let mut net = Net::up();
    net.apply(
        &Config::new(1)
            .egress_default("deny")
            .egress(10, "tcp", "8081", &[], &[])
            .egress(11, "icmp", "", &[], &[])
            .egress(12, "all", "", &[], &["198.51.100.0/24"])
            .egress(13, "udp", "5300", &["10.1.1.12/32"], &[]),
    );
    outside_servers(&mut net);

    // tcp 8081 anywhere; the outside sees the source-NAT IP.
    assert_eq!(
        net.http_get(&web1(), None, OUTSIDE, 8081),
        answer("outside", SNAT_IP)
    );
    assert_eq!(
        net.http_get_short(&web1(), None, OUTSIDE, 8082),
        Reply::TimedOut
    );
    // icmp anywhere.
    assert!(net.pings(&web1(), None, OUTSIDE));
    // all protocols to 198.51.100.0/24 only.
    assert_eq!(
        net.http_get(&web1(), None, NET_A1, 8082),
        answer("outside", SNAT_IP)
    );
    assert_eq!(
        net.udp_ask(&web1(), None, NET_A1, 5300),
        answer("outside", SNAT_IP)
    );
    assert_eq!(
        net.http_get_short(&web1(), None, NET_C, 8082),
        Reply::TimedOut
    );
    // udp 5300 from web2 only.
    assert_eq!(
        net.udp_ask(&vm("web2"), None, OUTSIDE, 5300),
        answer("outside", SNAT_IP)
    );
    assert_eq!(
        net.udp_ask_short(&web1(), None, OUTSIDE, 5300),
        Reply::TimedOut
    );

    let c = net.counters();
    for (rule, packets) in [(10, 1), (11, 1), (12, 2), (13, 1)] {
        assert_eq!(c.rules[&rule].packets, packets, "rule {rule}: {c:?}");
    }
    assert!(c.egress_default.packets >= 3, "{c:?}");
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn egress_allow_lets_out_everything_a_rule_does_not_block() {
    let mut net = Net::up();
    net.apply(
        &Config::new(1)
            .egress_default("allow")
            .egress(10, "tcp", "8082", &[], &[])
            .egress(11, "icmp", "", &["10.1.1.11/32"], &[])
            .egress(12, "all", "", &[], &["198.51.100.0/24"])
            .egress(13, "udp", "5300", &[], &["203.0.113.1/32"]),
    );
    outside_servers(&mut net);

    assert_eq!(
        net.http_get(&web1(), None, OUTSIDE, 8081),
        answer("outside", SNAT_IP)
    );
    assert_eq!(
        net.http_get_short(&web1(), None, OUTSIDE, 8082),
        Reply::TimedOut
    );
    // icmp blocked for web1 only.
    assert!(net.pings(&vm("web2"), None, OUTSIDE));
    assert!(!net.pings_short(&web1(), None, OUTSIDE));
    // all protocols blocked to 198.51.100.0/24 only.
    assert_eq!(
        net.http_get(&web1(), None, NET_C, 8081),
        answer("outside", SNAT_IP)
    );
    assert_eq!(
        net.http_get_short(&web1(), None, NET_A1, 8081),
        Reply::TimedOut
    );
    assert_eq!(
        net.udp_ask_short(&web1(), None, NET_A2, 5300),
        Reply::TimedOut
    );
    // udp 5300 blocked to 203.0.113.1 only.
    assert_eq!(
        net.udp_ask(&web1(), None, NET_C, 5300),
        answer("outside", SNAT_IP)
    );
    assert_eq!(
        net.udp_ask_short(&web1(), None, OUTSIDE, 5300),
        Reply::TimedOut
    );

    let c = net.counters();
    for rule in [10, 11, 12, 13] {
        assert!(c.rules[&rule].packets >= 1, "rule {rule}: {c:?}");
    }
    assert!(c.rules[&12].packets >= 2, "{c:?}");
    // What passed: tcp to 203.0.113.1:8081 and 192.0.2.1:8081, web2's ping, udp to 192.0.2.1.
    assert_eq!(c.egress_default.packets, 4, "{c:?}");
}
