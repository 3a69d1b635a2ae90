//! Ingress firewall rules: who may open connections to a public IP, and which rule counts them.

use crate::support::*;

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn ingress_rule_admits_its_source_cidr_and_nothing_else() {
    let mut net = Net::up();
    net.apply(
        &Config::new(1)
            .firewall(1, SNAT_IP, "tcp", "80", &["198.51.100.0/24"])
            .forward(20, SNAT_IP, "tcp", "80", "8080", WEB1, &["0.0.0.0/0"]),
    );
    net.http_server(&vm("web1"), WEB1, 8080, "web1");

    // Admitted: the VM sees the real client address (port forwards do not hide it).
    for src in [NET_A1, NET_A2] {
        assert_eq!(
            net.http_get(&outside(), Some(src), SNAT_IP, 80),
            answer("web1", src),
            "from {src}"
        );
    }
    // Not admitted: dropped, not even refused.
    for src in [NET_C, SEGMENT_B] {
        assert_eq!(
            net.http_get_short(&outside(), Some(src), SNAT_IP, 80),
            Reply::TimedOut,
            "from {src}"
        );
    }

    let c = net.counters();
    assert_eq!(c.rules[&1].packets, 2, "{c:?}");
    assert_eq!(c.rules[&20].packets, 2, "{c:?}");
    assert!(
        c.ingress_refused.packets >= 2,
        "each refused attempt sent at least one SYN: {c:?}"
    );
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn ingress_icmp_rule_answers_pings_from_its_sources_only() {
    let mut net = Net::up();
    net.apply(&Config::new(1).firewall_ping(3, PUBLIC_IP, &["198.51.100.0/24"]));

    assert!(net.pings(&outside(), Some(NET_A1), PUBLIC_IP));
    assert!(net.pings(&outside(), Some(NET_A2), PUBLIC_IP));
    assert!(!net.pings_short(&outside(), Some(NET_C), PUBLIC_IP));
    assert!(!net.pings_short(&outside(), Some(SEGMENT_B), PUBLIC_IP));
    // The rule is for one public IP: the router's other IP does not answer anyone.
    assert!(!net.pings_short(&outside(), Some(NET_A1), SNAT_IP));

    let c = net.counters();
    assert_eq!(c.rules[&3].packets, 2, "{c:?}");
    assert!(c.ingress_refused.packets >= 3, "{c:?}");
}

/// Every new connection is counted once, by the lowest-id rule that matches it, whether the
/// rules overlap by source CIDR (nested prefixes), by port (a port inside a range), or both.
#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn overlapping_ingress_rules_count_each_connection_once_to_the_lowest_matching_id() {
    let mut net = Net::up();
    net.apply(
        &Config::new(1)
            .firewall(2, SNAT_IP, "tcp", "8080", &["198.51.100.1/32"])
            .firewall(3, SNAT_IP, "tcp", "8000-8100", &["0.0.0.0/0"])
            .firewall(4, SNAT_IP, "tcp", "8200-8300", &["198.51.100.0/24"])
            .firewall(5, SNAT_IP, "tcp", "8080", &["198.51.100.0/24"])
            .firewall(6, SNAT_IP, "tcp", "8250", &["0.0.0.0/0"])
            .firewall(7, SNAT_IP, "tcp", "8080", &["198.51.100.0/25"])
            .forward(
                30,
                SNAT_IP,
                "tcp",
                "8000-8300",
                "8000-8300",
                WEB1,
                &["0.0.0.0/0"],
            ),
    );
    for port in [8080, 8090, 8150, 8210, 8250] {
        net.http_server(&vm("web1"), WEB1, port, "web1");
    }
    let before = net.counters();
    assert!(before.rules.values().all(|c| c.packets == 0), "{before:?}");

    // (source, port, connections, rule expected to count them)
    let admitted = [
        (NET_A1, 8080, 2, 2), // 2: /32 beats everything, and has the lowest id
        (NET_A2, 8080, 2, 3), // 3 (0.0.0.0/0 range) beats 5 (/24) and 7 (/25)
        (SEGMENT_B, 8080, 1, 3),
        (NET_C, 8090, 1, 3),
        (NET_A2, 8250, 2, 4), // 4 (/24 range) beats 6 (single port, 0.0.0.0/0)
        (NET_A1, 8250, 1, 4), // 4 beats 6, though 198.51.100.1/32 has rule 2 on another port
        (NET_C, 8250, 1, 6),
        (SEGMENT_C, 8250, 1, 6),
    ];
    for (src, port, times, _) in admitted {
        for _ in 0..times {
            assert_eq!(
                net.http_get(&outside(), Some(src), SNAT_IP, port),
                answer("web1", src),
                "{src} to port {port}"
            );
        }
    }
    // No rule covers 8101-8199, and 8200-8300 is only for 198.51.100.0/24.
    for (src, port) in [(NET_C, 8150), (SEGMENT_B, 8210), (NET_A1, 8150)] {
        assert_eq!(
            net.http_get_short(&outside(), Some(src), SNAT_IP, port),
            Reply::TimedOut,
            "{src} to port {port}"
        );
    }

    let c = net.counters();
    for rule in [2, 3, 4, 5, 6, 7] {
        let expected: u64 = admitted
            .iter()
            .filter(|(_, _, _, counted_by)| *counted_by == rule)
            .map(|(_, _, times, _)| times)
            .sum();
        let got = c.rules[&rule];
        assert_eq!(got.packets, expected, "rule {rule}: {c:?}");
        assert_eq!(got.bytes > 0, expected > 0, "rule {rule}: {c:?}");
    }
    // Rules 5 and 7 are shadowed for every source and port: they never count.
    assert_eq!(c.rules[&5].packets + c.rules[&7].packets, 0, "{c:?}");
    let connections: u64 = admitted.iter().map(|(_, _, times, _)| times).sum();
    let counted: u64 = [2, 3, 4, 5, 6, 7].iter().map(|r| c.rules[r].packets).sum();
    assert_eq!(counted, connections, "{c:?}");
    // The forward saw exactly the connections the firewall admitted.
    assert_eq!(c.rules[&30].packets, connections, "{c:?}");
    assert!(c.ingress_refused.packets >= 3, "{c:?}");
}
