//! Public IPs: one interface address per network, every other IP a local route, and the router
//! answering for exactly the IPs of its config while they move between the two.

use std::collections::BTreeSet;

use crate::support::*;

const THIRD: &str = "203.0.113.12";
const LONE: &str = "198.51.100.77";
const EVERYONE: &[&str] = &["0.0.0.0/0"];

/// `ips` (with prefix lengths), each open to pings from everyone.
fn answering(generation: u64, ips: &[(&str, u8)]) -> Config {
    let mut cfg = Config::new(generation).public_addresses(ips);
    for (i, (ip, _)) in ips.iter().enumerate() {
        cfg = cfg.firewall_ping(100 + i as u64, ip, EVERYONE);
    }
    cfg
}

/// The interface addresses and our local routes on `pub0`.
fn held(net: &Net) -> (BTreeSet<String>, BTreeSet<String>) {
    let text = |argv: &[&str]| String::from_utf8_lossy(&net.in_router(argv).stdout).into_owned();
    let addresses = text(&["ip", "-4", "-o", "addr", "show", "dev", "pub0"])
        .lines()
        .filter_map(|l| l.split_whitespace().skip_while(|w| *w != "inet").nth(1))
        .map(str::to_string)
        .collect();
    let protocol = sys::link::ROUTE_PROTOCOL.to_string();
    let routes = text(&[
        "ip", "-4", "route", "show", "table", "local", "type", "local", "proto", &protocol, "dev",
        "pub0",
    ])
    .lines()
    .filter_map(|l| l.split_whitespace().nth(1))
    .map(str::to_string)
    .collect();
    (addresses, routes)
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_string()).collect()
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn public_ips_are_answered_for_as_addresses_and_local_routes_as_they_come_and_go() {
    let mut net = Net::up();
    // The outside reaches the lone IP on its segment: by ARP, which the router answers.
    let on_link = format!("{LONE}/32");
    let out = net
        .lab()
        .exec_capture(&outside(), &["ip", "route", "add", &on_link, "dev", "eth0"])
        .expect("route the lone IP");
    assert!(out.status.success(), "{out:?}");
    // The lowest IP of the /24 is its address; the rest of the /24 and the lone /32 (outside
    // every other network) are local routes.
    let all = [(SNAT_IP, 24), (PUBLIC_IP, 24), (THIRD, 24), (LONE, 32)];
    let answers = |net: &Net, ips: &[(&str, u8)]| {
        for (ip, _) in ips {
            assert!(net.pings(&outside(), Some(NET_C), ip), "{ip} answers");
        }
    };
    net.apply(&answering(1, &all));
    assert_eq!(
        held(&net),
        (set(&["203.0.113.10/24"]), set(&[PUBLIC_IP, THIRD, LONE]))
    );
    answers(&net, &all);

    // The address leaves: the next IP of its network takes its place as the address (its
    // local route goes), and the router stops answering for the one that left.
    net.apply(&answering(2, &all[1..]));
    assert_eq!(held(&net), (set(&["203.0.113.11/24"]), set(&[THIRD, LONE])));
    answers(&net, &all[1..]);
    assert!(
        !net.pings_short(&outside(), Some(NET_C), SNAT_IP),
        "{SNAT_IP} left the router"
    );

    // It comes back: it is the address again, and the one that stood in is a route again.
    net.apply(&answering(3, &all));
    assert_eq!(
        held(&net),
        (set(&["203.0.113.10/24"]), set(&[PUBLIC_IP, THIRD, LONE]))
    );
    answers(&net, &all);
}
