//! Snapshot tests of rendered rulesets and property tests of the planner.

use super::*;
use ipnet::Ipv4Net;
use proptest::prelude::*;
use router_config::{
    parse, validate, EgressPolicy, GuestSide, PublicAddress, PublicSide, RouterConfig, RuleId,
    ValidConfig, WireFirewallRule, WirePortForward, WirePorts,
};
use std::net::Ipv4Addr;
use std::path::Path;

/// Renders `tests/data/<case>/input.json` with `render` and compares it with `expected` there.
/// `GUESTNET_BLESS=1` rewrites the expectation instead (`cargo xtask bless`).
fn check_snapshot(case: &str, expected: &str, render: impl Fn(&ValidConfig) -> String) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(case);
    let input = std::fs::read(dir.join("input.json")).unwrap();
    let cfg = validate(parse::<RouterConfig>(&input).unwrap()).unwrap();
    let got = render(&cfg);
    let expected_path = dir.join(expected);
    if std::env::var_os("GUESTNET_BLESS").is_some() {
        std::fs::write(&expected_path, &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&expected_path).unwrap_or_else(|_| {
        panic!(
            "{} is missing: run `cargo xtask bless`",
            expected_path.display()
        )
    });
    assert!(
        got == want,
        "{expected} of {case} changed; review and run `cargo xtask bless`\n--- got ---\n{got}"
    );
}

/// The nftables script that replaces the table.
fn check(case: &str) {
    check_snapshot(case, "expected.nft", |cfg| render_full(&plan(cfg)));
}

#[test]
fn snapshot_example() {
    check("example");
}

#[test]
fn snapshot_overlapping_ingress() {
    check("overlapping-ingress");
}

#[test]
fn snapshot_egress_allow_and_ranges() {
    check("egress-allow-ranges");
}

#[test]
fn snapshot_static_nat() {
    check("static-nat");
}

#[test]
fn a_static_nat_change_rewrites_only_the_nat_chains() {
    let a = validate(base_config()).unwrap();
    let mut doc = a.document().clone();
    doc.generation = 2;
    doc.public.addresses[1].static_nat = Some("10.1.1.20".parse().unwrap());
    let b = validate(doc).unwrap();
    let mut model = plan(&a);
    let update = model.update(&a, &b);
    // Not an element-only change: the NAT chains' rules change.
    assert!(update.fast.is_none());
    let flushed: Vec<&str> = update
        .script
        .lines()
        .filter_map(|l| l.strip_prefix("flush chain ip guestnet "))
        .collect();
    assert_eq!(flushed, vec!["dnat_out", "dnat_pre", "snat_post"]);
    assert!(update.script.contains(
        "add rule ip guestnet dnat_pre ip daddr { 203.0.113.11 } counter dnat ip to ip daddr map { 203.0.113.11 : 10.1.1.20 } comment \"static nat\""
    ), "{}", update.script);
    assert!(update.script.contains(
        "add rule ip guestnet snat_post ip saddr { 10.1.1.20 } oifname \"pub0\" counter snat ip to ip saddr map { 10.1.1.20 : 203.0.113.11 } comment \"static nat\""
    ), "{}", update.script);
    assert_eq!(model, plan(&b));
    // And back: the static NAT's rules go.
    let back = model.update(&b, &a);
    assert!(!back.script.contains("static nat"), "{}", back.script);
    assert!(back.script.contains("flush chain ip guestnet snat_post"));
}

// ---- generators ----

const PUBLIC: [&str; 2] = ["203.0.113.10", "203.0.113.11"];

fn base_config() -> RouterConfig {
    RouterConfig {
        schema: 1,
        generation: 1,
        public: PublicSide {
            interface: "pub0".into(),
            addresses: vec![
                PublicAddress {
                    ip: PUBLIC[0].parse().unwrap(),
                    prefix_len: 24,
                    source_nat: true,
                    static_nat: None,
                },
                PublicAddress {
                    ip: PUBLIC[1].parse().unwrap(),
                    prefix_len: 24,
                    source_nat: false,
                    static_nat: None,
                },
            ],
            gateway: None,
        },
        guest: GuestSide {
            interface: "guest0".into(),
            cidr: "10.1.1.0/24".into(),
            gateway: "10.1.1.1".parse().unwrap(),
        },
        egress_default: EgressPolicy::Deny,
        firewall_rules: vec![],
        egress_rules: vec![],
        port_forwards: vec![],
        load_balancers: vec![],
        dhcp: None,
    }
}

/// Source CIDRs drawn from a small nested family, so overlaps are frequent.
fn arb_cidr() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0.0.0.0/0".to_string()),
        Just("198.51.100.0/24".to_string()),
        Just("198.51.100.0/25".to_string()),
        Just("198.51.100.128/26".to_string()),
        Just("198.51.100.7/32".to_string()),
        Just("198.0.0.0/8".to_string()),
        Just("192.0.2.0/24".to_string()),
    ]
}

fn arb_ports() -> impl Strategy<Value = Option<WirePorts>> {
    prop_oneof![
        1 => Just(None),
        3 => (20u32..40).prop_map(|p| Some(WirePorts { start: p, end: p })),
        2 => (20u32..40, 0u32..10).prop_map(|(s, w)| Some(WirePorts { start: s, end: s + w })),
    ]
}

fn arb_rule() -> impl Strategy<Value = (usize, bool, Option<WirePorts>, Vec<String>)> {
    (
        0usize..2,
        any::<bool>(),
        arb_ports(),
        proptest::collection::vec(arb_cidr(), 1..3),
    )
}

fn config_from(rules: &[(usize, bool, Option<WirePorts>, Vec<String>)]) -> RouterConfig {
    let mut cfg = base_config();
    for (i, (ip, udp, ports, sources)) in rules.iter().enumerate() {
        cfg.firewall_rules.push(WireFirewallRule {
            id: (i as u64) * 3 + 1,
            public_ip: PUBLIC[*ip].parse().unwrap(),
            protocol: if *udp { "udp" } else { "tcp" }.into(),
            ports: *ports,
            icmp: None,
            source_cidrs: sources.clone(),
        });
    }
    // A few port forwards with disjoint ports so they never conflict.
    for (i, (ip, _, _, _)) in rules.iter().enumerate().take(5) {
        let p = 1000 + (i as u32) * 20;
        let (public_ports, private_ports) = if i % 2 == 0 {
            (
                WirePorts { start: p, end: p },
                WirePorts { start: 22, end: 22 },
            )
        } else {
            (
                WirePorts {
                    start: p,
                    end: p + 9,
                },
                WirePorts {
                    start: p,
                    end: p + 9,
                },
            )
        };
        cfg.port_forwards.push(WirePortForward {
            id: 10_000 + i as u64,
            public_ip: PUBLIC[*ip].parse().unwrap(),
            protocol: "tcp".into(),
            public_ports,
            private_ports,
            vm_ip: "10.1.1.20".parse().unwrap(),
            source_cidrs: vec!["0.0.0.0/0".into()],
        });
    }
    cfg
}

/// What the kernel would count a packet to, following the table's lookup order.
fn simulate_ingress(
    rs: &Ruleset,
    daddr: Ipv4Addr,
    udp: bool,
    dport: u16,
    saddr: Ipv4Addr,
) -> Option<RuleId> {
    let proto = if udp {
        router_config::L4Proto::Udp
    } else {
        router_config::L4Proto::Tcp
    };
    let frag = rs.parts.get(&PartKey {
        kind: PartKind::Ingress,
        ip: daddr,
        proto,
    })?;
    for len in (0..=32u8).rev() {
        let net = Ipv4Net::new(saddr, len).unwrap().trunc();
        if let Some(e) = frag.exact.get(&ExactKey { net, port: dport }) {
            return Some(e.owner);
        }
        if let Some(b) = frag.buckets.values().find(|b| b.net == net) {
            for (k, e) in &b.elements {
                if k.contains(dport) {
                    return Some(e.owner);
                }
            }
        }
    }
    None
}

/// The lowest id among the rules that match a packet, by brute force.
fn brute_force(
    cfg: &ValidConfig,
    daddr: Ipv4Addr,
    udp: bool,
    dport: u16,
    saddr: Ipv4Addr,
) -> Option<RuleId> {
    let proto = if udp {
        router_config::L4Proto::Udp
    } else {
        router_config::L4Proto::Tcp
    };
    cfg.ingress
        .iter()
        .filter(|r| r.public_ip == daddr)
        .filter(|r| match r.matcher {
            router_config::IngressMatch::Ports { proto: p, ports } => {
                p == proto && ports.contains(dport)
            }
            router_config::IngressMatch::Icmp(_) => false,
        })
        .filter(|r| r.sources.iter().any(|n| n.contains(&saddr)))
        .map(|r| r.id)
        .min()
}

fn arb_source() -> impl Strategy<Value = Ipv4Addr> {
    prop_oneof![
        Just(Ipv4Addr::new(198, 51, 100, 7)),
        Just(Ipv4Addr::new(198, 51, 100, 100)),
        Just(Ipv4Addr::new(198, 51, 100, 150)),
        Just(Ipv4Addr::new(198, 51, 100, 200)),
        Just(Ipv4Addr::new(198, 1, 2, 3)),
        Just(Ipv4Addr::new(192, 0, 2, 9)),
        Just(Ipv4Addr::new(203, 0, 113, 77)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_packet_counts_to_the_lowest_matching_rule(
        rules in proptest::collection::vec(arb_rule(), 1..25),
        packets in proptest::collection::vec((0usize..2, any::<bool>(), 18u16..52, arb_source()), 40),
    ) {
        let cfg = validate(config_from(&rules)).unwrap();
        let rs = plan(&cfg);
        for (ip, udp, port, src) in packets {
            let daddr: Ipv4Addr = PUBLIC[ip].parse().unwrap();
            prop_assert_eq!(simulate_ingress(&rs, daddr, udp, port, src), brute_force(&cfg, daddr, udp, port, src),
                "packet {} {} {} from {}", daddr, if udp {"udp"} else {"tcp"}, port, src);
        }
    }

    #[test]
    fn rendering_does_not_depend_on_rule_order(
        rules in proptest::collection::vec(arb_rule(), 1..25),
        seed in any::<u64>(),
    ) {
        let a = config_from(&rules);
        let mut b = a.clone();
        // A deterministic shuffle driven by the seed.
        let n = b.firewall_rules.len();
        for i in (1..n).rev() {
            let j = (seed.wrapping_mul(6364136223846793005).wrapping_add(i as u64) % (i as u64 + 1)) as usize;
            b.firewall_rules.swap(i, j);
        }
        b.port_forwards.reverse();
        let ra = render_full(&plan(&validate(a).unwrap()));
        let rb = render_full(&plan(&validate(b).unwrap()));
        prop_assert_eq!(ra, rb);
    }

    #[test]
    fn an_update_gives_exactly_the_model_of_the_new_config(
        a_rules in proptest::collection::vec(arb_rule(), 1..20),
        b_rules in proptest::collection::vec(arb_rule(), 1..20),
    ) {
        let a = validate(config_from(&a_rules)).unwrap();
        let mut b_doc = config_from(&b_rules);
        b_doc.generation = 2;
        let b = validate(b_doc).unwrap();
        let mut rs = plan(&a);
        let update = rs.update(&a, &b);
        prop_assert_eq!(&rs, &plan(&b));
        if let Some(fast) = &update.fast {
            // The fast form says exactly what the script says.
            prop_assert_eq!(fast_as_script(fast), update.script.clone());
        }
        if a.same_content(&b) {
            prop_assert!(update.script.is_empty());
        }
    }

    #[test]
    fn a_staged_load_is_the_full_script_split_in_two(
        rules in proptest::collection::vec(arb_rule(), 1..25),
    ) {
        let rs = plan(&validate(config_from(&rules)).unwrap());
        let staged = render_staged(&rs).expect("every element has a typed form");
        prop_assert!(staged.elements.iter().all(|c| !c.delete));
        prop_assert!(staged.elements.iter().all(|c| c.set != nft::FILLED_BY_SKELETON));
        prop_assert!(
            !staged.skeleton.lines().any(|l| l.starts_with("add element")
                && !l.contains(&format!(" {} ", nft::FILLED_BY_SKELETON))),
            "the skeleton fills no set but the public IPs'"
        );
        // Together they are the full load, line for line (only the order of sets differs).
        let mut both: Vec<String> = staged.skeleton.lines().map(str::to_string).collect();
        both.extend(typed_as_script(&staged.elements).lines().map(str::to_string));
        let mut full: Vec<String> = render_full(&rs).lines().map(str::to_string).collect();
        both.sort();
        full.sort();
        prop_assert_eq!(both, full);
    }

    #[test]
    fn the_only_set_a_rule_matches_negatively_is_the_one_the_skeleton_fills(
        rules in proptest::collection::vec(arb_rule(), 1..25),
    ) {
        // What keeps a staged load closed between its two transactions (see StagedLoad).
        let text = render_full(&plan(&validate(config_from(&rules)).unwrap()));
        for line in text.lines() {
            for (at, _) in line.match_indices("!= @") {
                let set = line[at + 4..].split_whitespace().next().unwrap_or("");
                prop_assert_eq!(set, nft::FILLED_BY_SKELETON, "in {}", line);
            }
        }
    }

    #[test]
    fn removed_rules_leave_nothing_behind(
        rules in proptest::collection::vec(arb_rule(), 2..20),
        victim in any::<prop::sample::Index>(),
    ) {
        let a = validate(config_from(&rules)).unwrap();
        let mut doc = a.document().clone();
        let idx = victim.index(doc.firewall_rules.len());
        let gone = doc.firewall_rules.remove(idx).id;
        doc.generation = 2;
        let b = validate(doc).unwrap();
        let mut rs = plan(&a);
        rs.update(&a, &b);
        prop_assert!(rs.element_owners().all(|(_, _, owner)| owner.0 != gone));
        let text = render_full(&rs);
        let needle = format!("\"rule {gone}\"");
        prop_assert!(!text.contains(&needle));
    }

    #[test]
    fn every_rule_that_can_match_a_packet_has_an_element(
        rules in proptest::collection::vec(arb_rule(), 1..25),
    ) {
        // A rule owns at least one element unless lower-id rules shadow it completely.
        let cfg = validate(config_from(&rules)).unwrap();
        let rs = plan(&cfg);
        let owners: std::collections::BTreeSet<RuleId> = rs.element_owners().map(|(_, _, o)| o).collect();
        for r in &cfg.ingress {
            let router_config::IngressMatch::Ports { proto, ports } = r.matcher else { continue };
            let udp = proto == router_config::L4Proto::Udp;
            // Probe each source's network address over the rule's ports near the generator's range.
            let mut wins = false;
            for net in &r.sources {
                for port in ports.start.max(18)..=ports.end.min(52) {
                    if brute_force(&cfg, r.public_ip, udp, port, net.network()) == Some(r.id) {
                        wins = true;
                    }
                }
            }
            if wins {
                prop_assert!(owners.contains(&r.id), "rule {} wins packets but owns no element", r.id);
            }
        }
        for f in &cfg.port_forwards {
            prop_assert!(owners.contains(&f.id));
        }
    }
}

fn fast_as_script(fast: &FastUpdate) -> String {
    let mut out = fast.create.clone();
    out.push_str(&typed_as_script(&fast.elements));
    for (chain, set) in &fast.remove {
        let kind = if chain.starts_with("ib") {
            "set"
        } else {
            "map"
        };
        out.push_str(&format!(
            "flush chain ip guestnet {chain}\ndelete chain ip guestnet {chain}\ndelete {kind} ip guestnet {set}\n"
        ));
    }
    out
}

fn typed_as_script(changes: &[ElementChange]) -> String {
    let text = |fields: &[KeyField]| -> String {
        fields
            .iter()
            .map(|f| match f {
                KeyField::Ipv4(ip) => ip.to_string(),
                KeyField::Proto(6) => "tcp".to_string(),
                KeyField::Proto(17) => "udp".to_string(),
                KeyField::Proto(p) => p.to_string(),
                KeyField::Port(p) => p.to_string(),
                KeyField::PortRange(a, b) => format!("{a}-{b}"),
                KeyField::Jump(c) => format!("jump {c}"),
            })
            .collect::<Vec<_>>()
            .join(" . ")
    };
    let mut out = String::new();
    for c in changes {
        let elems: Vec<String> = c
            .elements
            .iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{} : {}", text(k), text(v)),
                None => text(k),
            })
            .collect();
        let verb = if c.delete { "delete" } else { "add" };
        out.push_str(&format!(
            "{verb} element ip guestnet {} {{ {} }}\n",
            c.set,
            elems.join(", ")
        ));
    }
    out
}

#[test]
fn a_single_port_change_is_an_element_only_update() {
    let rules: Vec<_> = (0..50u32)
        .map(|i| {
            (
                0usize,
                false,
                Some(WirePorts {
                    start: 1000 + i,
                    end: 1000 + i,
                }),
                vec!["0.0.0.0/0".to_string()],
            )
        })
        .collect();
    let a = validate(config_from(&rules)).unwrap();
    let mut doc = a.document().clone();
    doc.generation = 2;
    doc.firewall_rules[3].ports = Some(WirePorts {
        start: 7000,
        end: 7000,
    });
    let b = validate(doc).unwrap();
    let update = plan(&a).update(&a, &b);
    let fast = update.fast.clone().expect("a fast update");
    assert_eq!(fast.create, "");
    assert!(fast.remove.is_empty());
    assert_eq!(fast.elements.len(), 2);
    assert!(fast.elements[0].delete && !fast.elements[1].delete);
    assert_eq!(typed_as_script(&fast.elements), update.script);
}

#[test]
fn no_change_renders_an_empty_delta() {
    let cfg = validate(config_from(&[(
        0,
        false,
        Some(WirePorts { start: 22, end: 22 }),
        vec!["0.0.0.0/0".into()],
    )]))
    .unwrap();
    let mut rs = plan(&cfg);
    assert_eq!(rs.update(&cfg, &cfg).script, "");
}

#[test]
fn one_changed_rule_touches_one_element_pair() {
    let rules: Vec<_> = (0..200u32)
        .map(|i| {
            (
                0usize,
                false,
                Some(WirePorts {
                    start: 1000 + i,
                    end: 1000 + i,
                }),
                vec!["0.0.0.0/0".to_string()],
            )
        })
        .collect();
    let a = validate(config_from(&rules)).unwrap();
    let mut doc = a.document().clone();
    doc.generation = 2;
    doc.firewall_rules[7].ports = Some(WirePorts {
        start: 5000,
        end: 5000,
    });
    let b = validate(doc).unwrap();
    let mut rs = plan(&a);
    let update = rs.update(&a, &b);
    assert_eq!(
        update.script,
        "delete element ip guestnet in_x_0 { 203.0.113.10 . tcp . 1007 }\nadd element ip guestnet in_x_0 { 203.0.113.10 . tcp . 5000 }\n"
    );
}

/// The `global` inputs of a router whose haproxy files are in `/var/lib/guestnet/r1/haproxy`.
fn lb_global() -> haproxy::Global {
    haproxy::Global {
        stats_socket: "/var/lib/guestnet/r1/haproxy/stats.sock".into(),
        hard_stop_after: std::time::Duration::from_secs(30),
    }
}

/// The whole haproxy.cfg, `global` section included.
fn check_haproxy(case: &str) {
    check_snapshot(case, "expected.haproxy.cfg", |cfg| {
        haproxy::render_haproxy(cfg, &lb_global()).expect("load balancers")
    });
}

#[test]
fn global_section_declares_master_worker_and_the_admin_socket() {
    assert_eq!(
        haproxy::render_global(&lb_global()),
        "    master-worker\n    stats socket /var/lib/guestnet/r1/haproxy/stats.sock mode 600 level admin expose-fd listeners\n    maxconn 4096\n    hard-stop-after 30000ms\n"
    );
}

#[test]
fn hard_stop_after_is_at_least_one_millisecond() {
    let global = haproxy::Global {
        hard_stop_after: std::time::Duration::from_micros(10),
        ..lb_global()
    };
    assert!(haproxy::render_global(&global).ends_with("    hard-stop-after 1ms\n"));
}

#[test]
fn snapshot_haproxy_all_kinds() {
    check_haproxy("lb-all-kinds");
}

fn lb_doc() -> RouterConfig {
    let input = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/lb-all-kinds/input.json"),
    )
    .unwrap();
    parse::<RouterConfig>(&input).unwrap()
}

#[test]
fn member_changes_go_through_the_runtime_api_and_structure_reloads() {
    use haproxy::{plan_lb_change, LbChange};
    let a = validate(lb_doc()).unwrap();
    // Add a member to the roundrobin rule and remove one from the source rule.
    let mut doc = lb_doc();
    doc.generation = 6;
    doc.load_balancers[0]
        .members
        .push(router_config::WireMember {
            vm_ip: "10.1.1.13".parse().unwrap(),
            port: 8080,
        });
    doc.load_balancers[1].members.clear();
    let b = validate(doc.clone()).unwrap();
    let LbChange::Members(changes) = plan_lb_change(&a, &b) else {
        panic!("expected member changes")
    };
    assert_eq!(changes.len(), 2);
    let added = changes.iter().find(|c| c.add.is_some()).unwrap();
    assert_eq!(added.backend, "lb_30");
    assert_eq!(added.server, "m_10_1_1_13_8080");
    assert_eq!(
        added.add.as_ref().unwrap().1,
        " check inter 1s fall 2 rise 2"
    );
    assert!(added.checked);
    let removed = changes.iter().find(|c| c.add.is_none()).unwrap();
    assert_eq!(
        (removed.backend.as_str(), removed.server.as_str()),
        ("lb_31", "m_10_1_1_11_9090")
    );

    // A member of a cookie rule cannot be added at run time; a new algorithm is structural.
    let mut cookie = lb_doc();
    cookie.load_balancers[2].members.pop();
    assert_eq!(
        plan_lb_change(&a, &validate(cookie).unwrap()),
        LbChange::Reload
    );
    let mut algo = lb_doc();
    algo.load_balancers[0].algorithm = "leastconn".into();
    assert_eq!(
        plan_lb_change(&a, &validate(algo).unwrap()),
        LbChange::Reload
    );
    assert_eq!(plan_lb_change(&a, &a), LbChange::None);
    let mut none = lb_doc();
    none.load_balancers.clear();
    assert_eq!(plan_lb_change(&a, &validate(none).unwrap()), LbChange::Stop);
}

// ---- dnsmasq ----

fn dns_paths() -> dnsmasq::Paths {
    let dir = Path::new("/var/lib/guestnet/r1/dnsmasq");
    dnsmasq::Paths {
        dhcp_hosts: dir.join("dhcp-hosts"),
        dns_hosts: dir.join("dns-hosts"),
        leases: dir.join("leases"),
        pid: dir.join("dnsmasq.pid"),
        log: dir.join("dnsmasq.log"),
    }
}

fn dns_files(cfg: &ValidConfig) -> dnsmasq::DnsmasqFiles {
    dnsmasq::render(cfg, &dns_paths()).expect("a DHCP section")
}

#[test]
fn snapshot_dnsmasq() {
    check_snapshot("dhcp", "expected.dnsmasq.conf", |c| dns_files(c).config);
    check_snapshot("dhcp", "expected.dhcp-hosts", |c| dns_files(c).dhcp_hosts);
    check_snapshot("dhcp", "expected.dns-hosts", |c| dns_files(c).dns_hosts);
}

fn dhcp_doc() -> RouterConfig {
    let input =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/dhcp/input.json"))
            .unwrap();
    parse::<RouterConfig>(&input).unwrap()
}

#[test]
fn dnsmasq_files_do_not_depend_on_the_order_of_leases() {
    let a = validate(dhcp_doc()).unwrap();
    let mut doc = dhcp_doc();
    doc.dhcp.as_mut().unwrap().leases.reverse();
    let b = validate(doc).unwrap();
    assert_eq!(dns_files(&a), dns_files(&b));
}

#[test]
fn a_lease_change_leaves_dnsmasq_conf_alone_and_no_domain_writes_plain_names() {
    let a = validate(dhcp_doc()).unwrap();
    let mut doc = dhcp_doc();
    doc.dhcp.as_mut().unwrap().leases.pop();
    let b = validate(doc.clone()).unwrap();
    assert_eq!(dns_files(&a).config, dns_files(&b).config);
    assert_ne!(dns_files(&a).dhcp_hosts, dns_files(&b).dhcp_hosts);
    doc.dhcp.as_mut().unwrap().domain = None;
    let c = validate(doc.clone()).unwrap();
    let files = dns_files(&c);
    assert!(!files.config.contains("domain="), "{}", files.config);
    assert_eq!(files.dns_hosts, "10.1.1.11 web1\n10.1.1.12 web2\n");
    doc.dhcp = None;
    assert!(dnsmasq::render(&validate(doc).unwrap(), &dns_paths()).is_none());
}

/// The base chain of `hook` in a rendered table, with its rules.
fn hooked<'a>(rs: &'a Ruleset, hook: &str) -> Vec<(&'a String, &'a Chain)> {
    rs.skeleton
        .chains
        .iter()
        .filter(|(_, c)| {
            c.header
                .as_deref()
                .is_some_and(|h| h.contains(&format!("hook {hook} ")))
        })
        .collect()
}

#[test]
fn guest_dns_and_dhcp_are_input_so_egress_rules_never_see_them() {
    // Egress deny with no egress rule at all: the tightest policy.
    let mut doc = dhcp_doc();
    doc.egress_default = EgressPolicy::Deny;
    doc.egress_rules.clear();
    let rs = plan(&validate(doc).unwrap());
    // The egress chain is reached only from the forward hook, which sees only traffic routed
    // through the router, never traffic to the router's own addresses.
    let jumpers: Vec<&String> = rs
        .skeleton
        .chains
        .iter()
        .filter(|(_, c)| c.rules.iter().any(|r| r.contains("jump egress")))
        .map(|(n, _)| n)
        .collect();
    assert_eq!(jumpers, ["forward"]);
    assert_eq!(hooked(&rs, "forward").len(), 1);
    // The input hook drops DNS and DHCP only when they arrive on the public interface.
    let input = hooked(&rs, "input");
    assert_eq!(input.len(), 1, "one input chain");
    let (_, chain) = input[0];
    assert!(chain.header.as_deref().unwrap().contains("policy accept"));
    assert_eq!(
        chain.rules,
        ["iifname \"pub0\" ip daddr != @public_ips meta l4proto { tcp, udp } th dport { 53, 67 } counter drop comment \"guest services\""]
    );
    let script = render_full(&rs);
    assert!(script.contains(
        "add chain ip guestnet local_in { type filter hook input priority 0; policy accept; }"
    ));
}

// ---- a model moved by a config change ----

/// A script's lines with element lists split into one element each, sorted: two scripts that
/// make the same change in one transaction compare equal whatever their order.
fn normalized(script: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in script.lines() {
        match line.split_once(" { ") {
            Some((head, rest)) if head.contains(" element ") => {
                for e in rest.trim_end_matches(" }").split(", ") {
                    out.push(format!("{head} {e}"));
                }
            }
            _ => out.push(line.to_string()),
        }
    }
    out.sort();
    out
}

/// One step of changes: firewall rules upserted (by slot, so ids repeat), rules removed, and
/// now and then an ICMP rule, an egress rule or a port forward.
/// A drawn firewall rule: public IP index, udp, ports, sources.
type DrawnRule = (usize, bool, Option<WirePorts>, Vec<String>);

#[derive(Debug, Clone)]
struct Step {
    upserts: Vec<(usize, DrawnRule)>,
    removes: Vec<prop::sample::Index>,
    icmp: bool,
    egress: bool,
    forward: Option<(u32, bool)>,
}

fn arb_step() -> impl Strategy<Value = Step> {
    (
        proptest::collection::vec((0usize..30, arb_rule()), 0..4),
        proptest::collection::vec(any::<prop::sample::Index>(), 0..2),
        proptest::bool::weighted(0.1),
        proptest::bool::weighted(0.1),
        proptest::option::weighted(0.2, (0u32..6, any::<bool>())),
    )
        .prop_map(|(upserts, removes, icmp, egress, forward)| Step {
            upserts,
            removes,
            icmp,
            egress,
            forward,
        })
}

fn delta_of(cfg: &ValidConfig, step: &Step) -> router_config::RouterDelta {
    let doc = cfg.document();
    let mut d = router_config::RouterDelta::between(doc, doc);
    d.generation = cfg.generation() + 1;
    let mut slots = std::collections::BTreeSet::new();
    for (slot, (ip, udp, ports, sources)) in &step.upserts {
        if !slots.insert(*slot) {
            continue;
        }
        d.upsert_firewall_rules.push(WireFirewallRule {
            id: (*slot as u64) * 3 + 1,
            public_ip: PUBLIC[*ip].parse().unwrap(),
            protocol: if *udp { "udp" } else { "tcp" }.into(),
            ports: *ports,
            icmp: None,
            source_cidrs: sources.clone(),
        });
    }
    let held: Vec<u64> = doc
        .firewall_rules
        .iter()
        .map(|r| r.id)
        .chain(doc.egress_rules.iter().map(|r| r.id))
        .chain(doc.port_forwards.iter().map(|r| r.id))
        .filter(|id| !d.upsert_firewall_rules.iter().any(|r| r.id == *id))
        .collect();
    if !held.is_empty() {
        d.remove = step
            .removes
            .iter()
            .map(|i| held[i.index(held.len())])
            .collect();
        d.remove.sort_unstable();
        d.remove.dedup();
    }
    if step.icmp {
        d.upsert_firewall_rules.push(WireFirewallRule {
            id: 5000 + cfg.generation(),
            public_ip: PUBLIC[0].parse().unwrap(),
            protocol: "icmp".into(),
            ports: None,
            icmp: None,
            source_cidrs: vec!["0.0.0.0/0".into()],
        });
    }
    if step.egress {
        d.upsert_egress_rules.push(router_config::WireEgressRule {
            id: 6000 + cfg.generation(),
            protocol: "tcp".into(),
            ports: Some(WirePorts {
                start: 443,
                end: 443,
            }),
            icmp: None,
            source_cidrs: Vec::new(),
            destination_cidrs: Vec::new(),
        });
    }
    if let Some((slot, range)) = step.forward {
        // Forwards of slots far apart never conflict; a slot's forward is replaced in place.
        let p = 2000 + slot * 20;
        let public_ports = if range {
            WirePorts {
                start: p,
                end: p + 5,
            }
        } else {
            WirePorts { start: p, end: p }
        };
        let private_ports = if range {
            public_ports
        } else {
            WirePorts { start: 22, end: 22 }
        };
        d.upsert_port_forwards.push(WirePortForward {
            id: 7000 + u64::from(slot),
            public_ip: PUBLIC[(slot % 2) as usize].parse().unwrap(),
            protocol: "tcp".into(),
            public_ports,
            private_ports,
            vm_ip: "10.1.1.20".parse().unwrap(),
            source_cidrs: vec![if range {
                "198.51.100.0/24"
            } else {
                "0.0.0.0/0"
            }
            .into()],
        });
        d.remove.retain(|id| *id != 7000 + u64::from(slot));
    }
    d
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_change_moves_the_model_as_the_reference_does(
        rules in proptest::collection::vec(arb_rule(), 0..20),
        steps in proptest::collection::vec(arb_step(), 1..6),
    ) {
        let mut cfg = validate(config_from(&rules)).unwrap();
        let mut rs = plan(&cfg);
        for step in &steps {
            let delta = delta_of(&cfg, step);
            let old = cfg.clone();
            let Ok(change) = cfg.apply_delta(&delta) else {
                // A refused delta changes nothing; the generated ones are valid by construction.
                prop_assert!(false, "delta refused: {:?}", delta);
                return Ok(());
            };
            let before = rs.clone();
            let update = rs.apply_change(&cfg, &change);
            prop_assert_eq!(&rs, &plan(&cfg));
            let mut reference = before.clone();
            let want = reference.update(&old, &cfg);
            prop_assert_eq!(normalized(&update.script), normalized(&want.script));
            prop_assert_eq!(update.fast.is_some(), want.fast.is_some());
            if let (Some(fast), Some(w)) = (&update.fast, &want.fast) {
                prop_assert_eq!(normalized(&fast_as_script(fast)), normalized(&fast_as_script(w)));
                prop_assert_eq!(fast_as_script(fast), update.script.clone());
            }
            // The inverse change puts the model back.
            let inverse = change.inverse().unwrap();
            let mut back = rs.clone();
            back.apply_change(&old, &inverse);
            prop_assert_eq!(&back, &before);
        }
    }
}
