//! Port forwarding: single, remapped and ranged ports, for tcp and udp, from listed sources
//! only; and hairpin, a VM reaching a forward of its own network.

use crate::support::*;

/// The sources the forwards apply to; the lab's other addresses are not in the list.
const LISTED: [&str; 2] = ["198.51.100.0/24", "203.0.113.2/32"];

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn tcp_port_forwards_single_remapped_and_ranged_ports_for_listed_sources_only() {
    let mut net = Net::up();
    net.apply(
        &Config::new(1)
            .firewall(1, PUBLIC_IP, "tcp", "80", &["0.0.0.0/0"])
            .firewall(2, PUBLIC_IP, "tcp", "2222", &["0.0.0.0/0"])
            .firewall(3, PUBLIC_IP, "tcp", "9000-9011", &["0.0.0.0/0"])
            .forward(21, PUBLIC_IP, "tcp", "80", "80", WEB1, &LISTED)
            .forward(22, PUBLIC_IP, "tcp", "2222", "8080", WEB2, &LISTED)
            .forward(
                23,
                PUBLIC_IP,
                "tcp",
                "9000-9010",
                "9000-9010",
                WEB1,
                &LISTED,
            ),
    );
    net.http_server(&vm("web1"), WEB1, 80, "web1");
    net.http_server(&vm("web2"), WEB2, 8080, "web2");
    for port in [9000, 9007, 9010, 9011] {
        net.http_server(&vm("web1"), WEB1, port, "web1");
    }

    for src in [NET_A1, SEGMENT_B] {
        let get = |port| net.http_get(&outside(), Some(src), PUBLIC_IP, port);
        assert_eq!(get(80), answer("web1", src), "single port from {src}");
        assert_eq!(get(2222), answer("web2", src), "remapped port from {src}");
        for port in [9000, 9007, 9010] {
            assert_eq!(get(port), answer("web1", src), "port {port} from {src}");
        }
        // Just past the range: the firewall admits it, nothing forwards it, the router resets.
        assert_eq!(
            net.http_get_short(&outside(), Some(src), PUBLIC_IP, 9011),
            Reply::Refused,
            "port 9011 from {src}"
        );
    }
    // Sources not in the list: admitted by the firewall but not forwarded, so the router
    // itself answers with a reset.
    for src in [NET_C, SEGMENT_C] {
        for port in [80, 2222, 9000, 9010] {
            assert_eq!(
                net.http_get_short(&outside(), Some(src), PUBLIC_IP, port),
                Reply::Refused,
                "port {port} from {src}"
            );
        }
    }

    let c = net.counters();
    for (rule, packets) in [(21, 2), (22, 2), (23, 6)] {
        assert_eq!(c.rules[&rule].packets, packets, "rule {rule}: {c:?}");
    }
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn udp_port_forwards_single_remapped_and_ranged_ports_for_listed_sources_only() {
    let mut net = Net::up();
    net.apply(
        &Config::new(1)
            .firewall(1, PUBLIC_IP, "udp", "5300", &["0.0.0.0/0"])
            .firewall(2, PUBLIC_IP, "udp", "6000", &["0.0.0.0/0"])
            .firewall(3, PUBLIC_IP, "udp", "9000-9010", &["0.0.0.0/0"])
            .forward(21, PUBLIC_IP, "udp", "5300", "5300", WEB1, &LISTED)
            .forward(22, PUBLIC_IP, "udp", "6000", "7000", WEB2, &LISTED)
            .forward(
                23,
                PUBLIC_IP,
                "udp",
                "9000-9010",
                "9000-9010",
                WEB2,
                &LISTED,
            ),
    );
    net.udp_server(&vm("web1"), WEB1, 5300, "web1");
    net.udp_server(&vm("web2"), WEB2, 7000, "web2");
    for port in [9003, 9010] {
        net.udp_server(&vm("web2"), WEB2, port, "web2");
    }

    for src in [NET_A1, SEGMENT_B] {
        let ask = |port| net.udp_ask(&outside(), Some(src), PUBLIC_IP, port);
        assert_eq!(ask(5300), answer("web1", src), "single port from {src}");
        assert_eq!(ask(6000), answer("web2", src), "remapped port from {src}");
        for port in [9003, 9010] {
            assert_eq!(ask(port), answer("web2", src), "port {port} from {src}");
        }
    }
    // Not in the list: not forwarded; the router answers port unreachable itself.
    for src in [NET_C, SEGMENT_C] {
        for port in [5300, 6000, 9003] {
            assert_eq!(
                net.udp_ask_short(&outside(), Some(src), PUBLIC_IP, port),
                Reply::Refused,
                "port {port} from {src}"
            );
        }
    }

    let c = net.counters();
    for (rule, packets) in [(21, 2), (22, 2), (23, 4)] {
        assert_eq!(c.rules[&rule].packets, packets, "rule {rule}: {c:?}");
    }
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn vm_reaches_forwards_of_its_own_network_through_the_public_ip() {
    let mut net = Net::up();
    net.apply(
        &Config::new(1)
            .firewall(1, PUBLIC_IP, "tcp", "80-81", &["0.0.0.0/0"])
            .firewall(2, PUBLIC_IP, "udp", "5300", &["0.0.0.0/0"])
            .forward(21, PUBLIC_IP, "tcp", "80", "8080", WEB2, &["0.0.0.0/0"])
            .forward(22, PUBLIC_IP, "tcp", "81", "8080", WEB1, &["0.0.0.0/0"])
            .forward(23, PUBLIC_IP, "udp", "5300", "5300", WEB2, &["0.0.0.0/0"]),
    );
    net.http_server(&vm("web1"), WEB1, 8080, "web1");
    net.http_server(&vm("web2"), WEB2, 8080, "web2");
    net.udp_server(&vm("web2"), WEB2, 5300, "web2");

    // The reply must come back through the router, so the VM behind the forward sees the
    // router's guest address as the client.
    assert_eq!(
        net.http_get(&vm("web1"), None, PUBLIC_IP, 80),
        answer("web2", GUEST_GATEWAY),
        "web1 to web2"
    );
    assert_eq!(
        net.http_get(&vm("web1"), None, PUBLIC_IP, 81),
        answer("web1", GUEST_GATEWAY),
        "web1 to itself"
    );
    assert_eq!(
        net.http_get(&vm("web2"), None, PUBLIC_IP, 80),
        answer("web2", GUEST_GATEWAY),
        "web2 to itself"
    );
    assert_eq!(
        net.udp_ask(&vm("web1"), None, PUBLIC_IP, 5300),
        answer("web2", GUEST_GATEWAY),
        "web1 to web2 over udp"
    );
    // From the outside the same forward keeps the client's address.
    assert_eq!(
        net.http_get(&outside(), Some(NET_A1), PUBLIC_IP, 80),
        answer("web2", NET_A1)
    );

    let c = net.counters();
    for (rule, packets) in [(21, 3), (22, 1), (23, 1)] {
        assert_eq!(c.rules[&rule].packets, packets, "rule {rule}: {c:?}");
    }
}
