use super::*;

const EXAMPLE: &str = include_str!("../../../examples/router.json");

fn example() -> RouterConfig {
    parse(EXAMPLE.as_bytes()).unwrap()
}

fn problems(raw: RouterConfig) -> Vec<String> {
    validate(raw)
        .unwrap_err()
        .0
        .iter()
        .map(|p| p.to_string())
        .collect()
}

#[test]
fn example_config_is_valid_and_sorted() {
    let mut raw = example();
    raw.firewall_rules.reverse();
    let v = validate(raw).unwrap();
    let ids: Vec<u64> = v.ingress.iter().map(|r| r.id.0).collect();
    assert_eq!(ids, vec![1, 2, 3, 4]);
    assert!(v.same_content(&validate(example()).unwrap()));
}

#[test]
fn unknown_field_is_refused_with_its_path() {
    let text = EXAMPLE.replace(
        "\"protocol\": \"icmp\", \"icmp\"",
        "\"protocol\": \"icmp\", \"icnp\"",
    );
    let err = parse::<RouterConfig>(text.as_bytes()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "malformed document at `firewall_rules[2].icnp` (firewall rule 3)"
    );
    let ParseError::Malformed { path, source, .. } = err;
    assert_eq!(path, "firewall_rules[2].icnp");
    assert!(
        source.to_string().contains("unknown field `icnp`"),
        "{source}"
    );
}

#[test]
fn bad_ports_and_cidrs_name_rule_and_field() {
    let mut raw = example();
    raw.firewall_rules[0].ports = Some(WirePorts {
        start: 0,
        end: 70000,
    });
    raw.firewall_rules[1].source_cidrs = vec!["10.0.0.0/33".into(), "10.1.1.5/24".into()];
    let p = problems(raw);
    assert!(
        p.contains(&"firewall rule 1: field `ports.start`: 0 is not a port (1-65535)".to_string()),
        "{p:?}"
    );
    assert!(
        p.contains(
            &"firewall rule 1: field `ports.end`: 70000 is not a port (1-65535)".to_string()
        ),
        "{p:?}"
    );
    assert!(
        p.contains(
            &"firewall rule 2: field `source_cidrs[0]`: `10.0.0.0/33` is not an IPv4 CIDR"
                .to_string()
        ),
        "{p:?}"
    );
    assert!(
        p.iter().any(|s| s.starts_with(
            "firewall rule 2: field `source_cidrs[1]`: `10.1.1.5/24` has host bits set"
        )),
        "{p:?}"
    );
}

#[test]
fn overlapping_port_forwards_conflict_only_when_sources_intersect() {
    let mut raw = example();
    let mut dup = raw.port_forwards[0].clone();
    dup.id = 30;
    dup.public_ports = WirePorts { start: 20, end: 30 };
    dup.private_ports = dup.public_ports;
    dup.source_cidrs = vec!["10.9.0.0/16".into()];
    raw.port_forwards.push(dup.clone());
    let p = problems(raw.clone());
    assert_eq!(p, vec!["port forward 30: field `public_ports`: 203.0.113.10 tcp port 20-30 from overlapping sources is already forwarded by port forward 20".to_string()]);

    // Disjoint sources: legal.
    raw.port_forwards[0].source_cidrs = vec!["192.0.2.0/24".into()];
    assert!(validate(raw.clone()).is_ok());
    // Other protocol: legal.
    raw.port_forwards[0].source_cidrs = vec!["0.0.0.0/0".into()];
    raw.port_forwards[2].protocol = "udp".into();
    assert!(validate(raw).is_ok());
}

#[test]
fn vm_outside_guest_network_is_refused() {
    let mut raw = example();
    raw.port_forwards[0].vm_ip = "10.2.0.5".parse().unwrap();
    assert_eq!(problems(raw), vec!["port forward 20: field `vm_ip`: 10.2.0.5 is not a VM address in the guest network 10.1.1.0/24".to_string()]);
}

#[test]
fn remapped_range_is_refused() {
    let mut raw = example();
    raw.port_forwards[0].public_ports = WirePorts {
        start: 8000,
        end: 8010,
    };
    raw.port_forwards[0].private_ports = WirePorts {
        start: 9000,
        end: 9010,
    };
    let p = problems(raw);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("port forward 20: field `private_ports`"),
        "{p:?}"
    );
}

#[test]
fn duplicate_ids_across_kinds_are_refused() {
    let mut raw = example();
    raw.egress_rules[0].id = 1;
    assert_eq!(
        problems(raw),
        vec!["egress rule 1: field `id`: id 1 is also used by a firewall rule".to_string()]
    );
}

#[test]
fn egress_defaults_fill_guest_and_anywhere() {
    let v = validate(example()).unwrap();
    assert_eq!(v.egress[0].sources, vec!["10.1.1.0/24".parse().unwrap()]);
    assert_eq!(v.egress[0].destinations, vec!["0.0.0.0/0".parse().unwrap()]);
    let mut raw = example();
    raw.egress_rules[0].source_cidrs = vec!["10.2.0.0/24".into()];
    assert_eq!(problems(raw), vec!["egress rule 10: field `source_cidrs[0]`: 10.2.0.0/24 is not inside the guest network 10.1.1.0/24".to_string()]);
}

/// The example with a third public IP, 203.0.113.12, 1:1 NAT to `vm`.
fn with_static_nat(vm: &str) -> RouterConfig {
    let mut raw = example();
    raw.public.addresses.push(PublicAddress {
        ip: "203.0.113.12".parse().unwrap(),
        prefix_len: 24,
        source_nat: false,
        static_nat: Some(vm.parse().unwrap()),
    });
    raw
}

#[test]
fn a_static_nat_is_validated_and_kept_by_public_ip() {
    let v = validate(with_static_nat("10.1.1.20")).unwrap();
    let nat = StaticNat {
        public_ip: "203.0.113.12".parse().unwrap(),
        vm_ip: "10.1.1.20".parse().unwrap(),
    };
    assert_eq!(v.static_nats, vec![nat]);
    assert_eq!(v.static_nat_of(nat.public_ip), Some(&nat));
    assert_eq!(v.static_nat_of("203.0.113.10".parse().unwrap()), None);
}

#[test]
fn static_nats_the_router_cannot_hold_are_refused() {
    // On the source-NAT IP, to the router's own address, outside the guest network.
    let mut raw = with_static_nat("10.1.1.1");
    raw.public.addresses[0].static_nat = Some("10.9.9.9".parse().unwrap());
    let p = problems(raw);
    assert!(
        p.contains(&"field `public.addresses[0].static_nat`: 203.0.113.10 is the source-NAT IP: it cannot be 1:1 NAT to a VM".to_string()),
        "{p:?}"
    );
    assert!(
        p.contains(&"field `public.addresses[2].static_nat`: 10.1.1.1 is not a VM address in the guest network 10.1.1.0/24".to_string()),
        "{p:?}"
    );
    // Two public IPs to one VM address.
    let mut raw = with_static_nat("10.1.1.20");
    raw.public.addresses[1].static_nat = Some("10.1.1.20".parse().unwrap());
    raw.port_forwards
        .retain(|f| f.public_ip != raw.public.addresses[1].ip);
    raw.load_balancers
        .retain(|l| l.public_ip != raw.public.addresses[1].ip);
    let p = problems(raw);
    assert!(
        p.iter()
            .any(|m| m.contains("10.1.1.20 is already the static NAT of 203.0.113.11")),
        "{p:?}"
    );
}

#[test]
fn a_static_nat_ip_carries_no_forward_or_balancer_whole_or_by_delta() {
    // 203.0.113.11 carries forward 21: making it static NAT is refused, naming the forward.
    let mut raw = example();
    raw.public.addresses[1].static_nat = Some("10.1.1.20".parse().unwrap());
    let p = problems(raw);
    assert!(
        p.contains(&"port forward 21: field `public_ip`: 203.0.113.11 is 1:1 NAT to 10.1.1.20: it carries no port forward".to_string()),
        "{p:?}"
    );
    // A delta that adds a forward and a balancer to a static-NAT IP is refused as a whole
    // validation refuses it, and the config stays as it was.
    let mut cfg = validate(with_static_nat("10.1.1.20")).unwrap();
    let before = cfg.clone();
    let mut next = cfg.document().clone();
    next.generation += 1;
    let mut pf = next.port_forwards[0].clone();
    pf.id = 90;
    pf.public_ip = "203.0.113.12".parse().unwrap();
    next.port_forwards.push(pf);
    let mut lb = next.load_balancers[0].clone();
    lb.id = 91;
    lb.public_ip = "203.0.113.12".parse().unwrap();
    lb.public_port = 8443;
    next.load_balancers.push(lb);
    let delta = RouterDelta::between(cfg.document(), &next);
    let ApplyDeltaError::Invalid { problems: p, .. } = cfg.apply_delta(&delta).unwrap_err() else {
        panic!("not refused as invalid");
    };
    let p: Vec<String> = p.0.iter().map(ToString::to_string).collect();
    assert!(
        p.contains(&"port forward 90: field `public_ip`: 203.0.113.12 is 1:1 NAT to 10.1.1.20: it carries no port forward".to_string()),
        "{p:?}"
    );
    assert!(
        p.contains(&"load balancer 91: field `public_ip`: 203.0.113.12 is 1:1 NAT to 10.1.1.20: it carries no load balancer".to_string()),
        "{p:?}"
    );
    assert_eq!(cfg, before);
}

#[test]
fn a_static_nat_difference_is_described() {
    let wanted = with_static_nat("10.1.1.20");
    let held = with_static_nat("10.1.1.21");
    let d: Vec<String> = differences(&wanted, &held)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        d,
        vec!["public address 203.0.113.12 differs: static_nat wanted 10.1.1.20, held 10.1.1.21"]
    );
}

#[test]
fn delta_rebuilds_the_complete_config() {
    let base = example();
    let delta = RouterDelta {
        schema: 1,
        base_generation: 1,
        generation: 2,
        public: None,
        guest: None,
        egress_default: Some(EgressPolicy::Allow),
        upsert_firewall_rules: vec![WireFirewallRule {
            id: 40,
            public_ip: "203.0.113.10".parse().unwrap(),
            protocol: "udp".into(),
            ports: Some(WirePorts { start: 53, end: 53 }),
            icmp: None,
            source_cidrs: vec!["0.0.0.0/0".into()],
        }],
        upsert_egress_rules: vec![],
        upsert_port_forwards: vec![],
        upsert_load_balancers: vec![],
        remove: vec![2, 20],
        dhcp: None,
        dhcp_off: false,
    };
    let next = delta.apply_to(&base).unwrap();
    assert_eq!(next.generation, 2);
    assert_eq!(next.egress_default, EgressPolicy::Allow);
    let ids: Vec<u64> = next.firewall_rules.iter().map(|r| r.id).collect();
    assert_eq!(ids, vec![1, 3, 4, 40]);
    assert_eq!(next.port_forwards.len(), 1);
    let mut wrong = delta.clone();
    wrong.base_generation = 5;
    assert_eq!(
        wrong.apply_to(&base),
        Err(DeltaError::BaseMismatch { base: 5, held: 1 })
    );
    let mut unknown = delta;
    unknown.remove = vec![999];
    assert_eq!(unknown.apply_to(&base), Err(DeltaError::UnknownRule(999)));
}

/// Every schema version ever written keeps deserializing: a frozen document per version.
#[test]
fn every_frozen_schema_version_still_reads() {
    let v1 = include_str!("../tests/data/v1-router-config.json");
    let cfg = parse_and_validate(v1.as_bytes()).unwrap();
    assert_eq!(cfg.document().schema, 1);
    assert_eq!(
        cfg.ingress.len() + cfg.egress.len() + cfg.port_forwards.len(),
        7
    );
}

fn with_lb(lb: serde_json::Value) -> RouterConfig {
    let mut doc: serde_json::Value = serde_json::from_str(EXAMPLE).unwrap();
    doc["load_balancers"] = serde_json::json!([lb]);
    serde_json::from_value(doc).unwrap()
}

fn lb(extra: serde_json::Value) -> serde_json::Value {
    let mut base = serde_json::json!({
        "id": 40, "public_ip": "203.0.113.11", "public_port": 8080, "algorithm": "roundrobin",
        "members": [ { "vm_ip": "10.1.1.12", "port": 80 }, { "vm_ip": "10.1.1.11", "port": 80 } ],
        "source_cidrs": ["0.0.0.0/0"]
    });
    for (k, v) in extra.as_object().unwrap() {
        base[k] = v.clone();
    }
    base
}

#[test]
fn load_balancer_is_validated_with_defaults_and_sorted_members() {
    let v = validate(with_lb(lb(serde_json::json!({
        "health_check": { "ping_path": "/health" },
        "stickiness": { "method": "LbCookie", "params": { "cookie-name": "srv", "nocache": "true" } }
    }))))
    .unwrap();
    let lb = &v.load_balancers[0];
    assert_eq!(lb.members[0].vm_ip.to_string(), "10.1.1.11");
    // Cookie stickiness lives in HTTP.
    assert_eq!(lb.mode, LbMode::Http);
    let h = lb.health_check.as_ref().unwrap();
    assert_eq!(
        (h.interval_s, h.timeout_s, h.healthy, h.unhealthy),
        (5, 2, 2, 1)
    );
    assert!(
        matches!(&lb.stickiness, Some(Stickiness::LbCookie { name, nocache: true, .. }) if name == "srv")
    );
}

#[test]
fn bad_load_balancers_name_rule_and_field() {
    let p = problems(with_lb(lb(serde_json::json!({
        "algorithm": "random",
        "public_port": 70000,
        "members": [ { "vm_ip": "10.9.9.9", "port": 80 } ],
        "stickiness": { "method": "AppCookie", "params": { "mode": "path-parameters" } }
    }))));
    for expected in [
        "load balancer 40: field `algorithm`: `random` is not one of roundrobin, leastconn, source",
        "load balancer 40: field `public_port`: 70000 is not a port (1-65535)",
        "load balancer 40: field `members[0].vm_ip`: 10.9.9.9 is not a VM address in the guest network 10.1.1.0/24",
    ] {
        assert!(p.contains(&expected.to_string()), "{expected} not in {p:?}");
    }
    assert!(
        p.iter().any(|s| s.starts_with(
            "load balancer 40: field `stickiness.params.mode`: haproxy 2.6 cannot honour it"
        )),
        "{p:?}"
    );
    let p = problems(with_lb(lb(
        serde_json::json!({ "stickiness": { "method": "Magic" } }),
    )));
    assert_eq!(p, vec!["load balancer 40: field `stickiness.method`: `Magic` is not one of LbCookie, AppCookie, SourceBased".to_string()]);
}

#[test]
fn load_balancer_conflicts_with_a_port_forward_of_any_protocol() {
    // Port forward 21 forwards 203.0.113.11 tcp 80.
    let p = problems(with_lb(lb(serde_json::json!({ "public_port": 80 }))));
    assert_eq!(p, vec!["load balancer 40: field `public_port`: 203.0.113.11 port 80 is already forwarded by port forward 21".to_string()]);
}

#[test]
fn stickiness_values_haproxy_cannot_hold_are_refused() {
    let p = problems(with_lb(lb(serde_json::json!({
        "stickiness": { "method": "SourceBased", "params": { "expire": "30d", "tablesize": "4194304k" } }
    }))));
    assert_eq!(
        p,
        vec![
            "load balancer 40: field `stickiness.params.tablesize`: `4194304k` is more entries than haproxy can hold (4294967295)".to_string(),
            "load balancer 40: field `stickiness.params.expire`: `30d` is longer than haproxy's longest timer (24 days)".to_string(),
        ]
    );
    assert!(validate(with_lb(lb(serde_json::json!({
        "stickiness": { "method": "SourceBased", "params": { "expire": "24d", "tablesize": "4194303k" } }
    }))))
    .is_ok());
}

#[test]
fn a_delta_between_two_configs_rebuilds_the_second() {
    let base = example();
    let mut next = example();
    next.generation = base.generation + 1;
    next.firewall_rules.retain(|r| r.id != 2);
    next.firewall_rules[0].source_cidrs = vec!["198.51.100.0/24".into()];
    let mut added = next.firewall_rules[0].clone();
    added.id = 99;
    added.ports = Some(WirePorts { start: 9, end: 9 });
    next.firewall_rules.push(added);
    next.egress_default = EgressPolicy::Allow;
    let delta = RouterDelta::between(&base, &next);
    assert_eq!(delta.remove, vec![2]);
    assert_eq!(delta.upsert_firewall_rules.len(), 2);
    assert!(delta.public.is_none() && delta.guest.is_none());
    assert_eq!(delta.size(), 3);
    let mut rebuilt = delta.apply_to(&base).unwrap();
    rebuilt.firewall_rules.sort_by_key(|r| r.id);
    next.firewall_rules.sort_by_key(|r| r.id);
    assert_eq!(rebuilt, next);
    // Nothing changed: an empty delta.
    let same = RouterDelta::between(&next, &next);
    assert_eq!(same.size(), 0);
    assert!(same.egress_default.is_none());
}

#[test]
fn a_delta_between_id_sorted_lists_is_the_same_as_between_unsorted_ones() {
    let base = example();
    let mut next = example();
    next.generation = base.generation + 1;
    next.firewall_rules.retain(|r| r.id != 2);
    let mut added = next.firewall_rules[0].clone();
    added.id = 99;
    next.firewall_rules.push(added);
    next.firewall_rules[0].source_cidrs = vec!["198.51.100.0/24".into()];
    next.firewall_rules.sort_by_key(|r| r.id);
    let mut base_sorted = base.clone();
    base_sorted.firewall_rules.sort_by_key(|r| r.id);
    // Sorted by id on both sides: the merge walk.
    let walked = RouterDelta::between(&base_sorted, &next);
    // Out of order: the hash map. Upserts come in `next`'s order, so compare them by id.
    let mut shuffled = next.clone();
    shuffled.firewall_rules.reverse();
    let mut hashed = RouterDelta::between(&base_sorted, &shuffled);
    hashed.upsert_firewall_rules.sort_by_key(|r| r.id);
    assert!(shuffled.firewall_rules.len() > 1);
    assert_eq!(walked, hashed);
    assert_eq!(walked.remove, vec![2]);
    assert_eq!(
        walked
            .upsert_firewall_rules
            .iter()
            .map(|r| r.id)
            .collect::<Vec<_>>(),
        vec![next.firewall_rules[0].id, 99]
    );
}

fn lease(mac: &str, ip: &str, hostname: &str) -> DhcpLease {
    DhcpLease {
        mac: mac.parse().unwrap(),
        ip: ip.parse().unwrap(),
        hostname: hostname.into(),
    }
}

#[test]
fn dhcp_section_is_validated_and_sorted_by_mac() {
    let mut raw = example();
    raw.dhcp = Some(DhcpService {
        dns_servers: vec!["192.0.2.53".parse().unwrap(), "192.0.2.54".parse().unwrap()],
        domain: Some("Guests.example".into()),
        leases: vec![
            lease("02:00:00:00:00:02", "10.1.1.12", "web2"),
            lease("02:00:00:00:00:01", "10.1.1.11", "Web1"),
        ],
    });
    let v = validate(raw.clone()).unwrap();
    let d = v.dhcp.as_ref().unwrap();
    let macs: Vec<String> = d.leases.iter().map(|l| l.mac.to_string()).collect();
    assert_eq!(macs, ["02:00:00:00:00:01", "02:00:00:00:00:02"]);
    assert_eq!(d.dns_servers.len(), 2);
    // The document is normalized too, so the order leases arrive in changes nothing.
    let mut reversed = raw;
    reversed.dhcp.as_mut().unwrap().leases.reverse();
    assert!(validate(reversed).unwrap().same_content(&v));
    assert_eq!(v.document().dhcp.as_ref().unwrap().leases, d.leases);
}

#[test]
fn dhcp_problems_name_their_field() {
    let mut raw = example();
    raw.dhcp = Some(DhcpService {
        dns_servers: vec![
            "224.0.0.1".parse().unwrap(),
            "127.0.0.53".parse().unwrap(),
            "192.0.2.53".parse().unwrap(),
            "192.0.2.53".parse().unwrap(),
        ],
        domain: Some("bad_domain.example".into()),
        leases: vec![
            lease("01:00:5e:00:00:01", "10.1.1.11", "web1"),
            lease("02:00:00:00:00:02", "10.1.1.1", "web2"),
            lease("02:00:00:00:00:02", "10.1.2.3", "-web3"),
            lease("02:00:00:00:00:04", "10.1.1.255", "WEB1"),
            lease("02:00:00:00:00:05", "10.1.1.11", &"x".repeat(64)),
            lease("00:00:00:00:00:00", "10.1.1.0", "ok"),
        ],
    });
    let p = problems(raw);
    let expected = [
        "field `dhcp.dns_servers[0]`: 224.0.0.1 is not a unicast address a DNS server can have",
        "field `dhcp.dns_servers[1]`: 127.0.0.53 is not a unicast address a DNS server can have",
        "field `dhcp.dns_servers[3]`: 192.0.2.53 is listed twice",
        "field `dhcp.domain`: `bad_domain.example` is not a DNS name (labels of 1-63 of a-z 0-9 -, not starting or ending with -, joined by dots)",
        "field `dhcp.leases[0].mac`: 01:00:5e:00:00:01 is not a unicast MAC address",
        "field `dhcp.leases[1].ip`: 10.1.1.1 is not a VM address in the guest network 10.1.1.0/24 (the router has 10.1.1.1)",
        "field `dhcp.leases[2].mac`: 02:00:00:00:00:02 already has lease 1",
        "field `dhcp.leases[2].ip`: 10.1.2.3 is not a VM address in the guest network 10.1.1.0/24 (the router has 10.1.1.1)",
        "field `dhcp.leases[2].hostname`: `-web3` is not a host name (1-63 of a-z 0-9 -, not starting or ending with -)",
        "field `dhcp.leases[3].ip`: 10.1.1.255 is not a VM address in the guest network 10.1.1.0/24 (the router has 10.1.1.1)",
        "field `dhcp.leases[3].hostname`: `WEB1` is already the name of lease 0",
        "field `dhcp.leases[4].ip`: 10.1.1.11 is already leased by lease 0",
        "field `dhcp.leases[5].mac`: 00:00:00:00:00:00 is not a unicast MAC address",
        "field `dhcp.leases[5].ip`: 10.1.1.0 is not a VM address in the guest network 10.1.1.0/24 (the router has 10.1.1.1)",
    ];
    for e in expected {
        assert!(p.contains(&e.to_string()), "missing {e:?} in {p:?}");
    }
    assert!(
        p.iter()
            .any(|x| x.starts_with("field `dhcp.leases[4].hostname`")),
        "{p:?}"
    );
    assert_eq!(p.len(), expected.len() + 1, "{p:?}");
}

#[test]
fn dns_names_and_labels() {
    assert!(is_dns_label("web-1"));
    assert!(is_dns_label(&"a".repeat(63)));
    assert!(!is_dns_label(&"a".repeat(64)));
    assert!(!is_dns_label(""));
    assert!(!is_dns_label("web-"));
    assert!(!is_dns_label("we.b"));
    assert!(is_dns_name("guests.example.org"));
    assert!(!is_dns_name("guests..example"));
    assert!(!is_dns_name("guests.example."));
    assert!(!is_dns_name(&format!(
        "{}.{}",
        "a".repeat(63),
        "b".repeat(190)
    )));
}

// ---- a delta applied in place equals a whole validation of its result ----

mod in_place {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    const IPS: [&str; 3] = ["203.0.113.10", "203.0.113.11", "192.0.2.1"];
    const CIDRS: [&str; 6] = [
        "0.0.0.0/0",
        "198.51.100.0/24",
        "198.51.100.0/25",
        "198.51.100.7/32",
        "192.0.2.0/24",
        "10.1.1.0/25",
    ];

    /// A rule of any kind with an id from a small range, valid most of the time.
    #[derive(Debug, Clone)]
    enum AnyRule {
        Firewall(WireFirewallRule),
        Egress(WireEgressRule),
        Forward(WirePortForward),
        Balancer(WireLoadBalancer),
    }

    fn arb_ip() -> impl Strategy<Value = Ipv4Addr> {
        prop_oneof![6 => 0usize..2, 1 => Just(2usize)].prop_map(|i| IPS[i].parse().unwrap())
    }

    fn arb_ports() -> impl Strategy<Value = WirePorts> {
        prop_oneof![
            8 => (20u32..40, 0u32..6).prop_map(|(s, w)| WirePorts { start: s, end: s + w }),
            1 => Just(WirePorts { start: 0, end: 5 }),
            1 => Just(WirePorts { start: 30, end: 25 }),
        ]
    }

    fn arb_sources() -> impl Strategy<Value = Vec<String>> {
        prop_oneof![
            10 => proptest::collection::vec(
                (0..CIDRS.len()).prop_map(|i| CIDRS[i].to_string()),
                1..3
            ),
            1 => Just(Vec::new()),
            1 => Just(vec!["198.51.100.5/24".to_string()]),
        ]
    }

    fn arb_proto() -> impl Strategy<Value = String> {
        prop_oneof![
            6 => Just("tcp".to_string()),
            3 => Just("udp".to_string()),
            1 => Just("icmp".to_string()),
            1 => Just("sctp".to_string()),
        ]
    }

    fn arb_rule() -> impl Strategy<Value = AnyRule> {
        let id = prop_oneof![20 => 1u64..40, 1 => Just(0u64)];
        prop_oneof![
            4 => (id.clone(), arb_ip(), arb_proto(), proptest::option::of(arb_ports()), arb_sources())
                .prop_map(|(id, public_ip, protocol, ports, source_cidrs)| {
                    let ports = if protocol == "icmp" { None } else { ports };
                    AnyRule::Firewall(WireFirewallRule { id, public_ip, protocol, ports, icmp: None, source_cidrs })
                }),
            1 => (id.clone(), prop_oneof![Just("tcp"), Just("all"), Just("icmp")], proptest::option::of(arb_ports()), any::<bool>())
                .prop_map(|(id, protocol, ports, outside)| {
                    let ports = if protocol == "tcp" { ports } else { None };
                    let source_cidrs = if outside { vec!["10.2.0.0/24".to_string()] } else { Vec::new() };
                    AnyRule::Egress(WireEgressRule { id, protocol: protocol.into(), ports, icmp: None, source_cidrs, destination_cidrs: Vec::new() })
                }),
            3 => (id.clone(), arb_ip(), prop_oneof![Just("tcp"), Just("udp")], arb_ports(), any::<bool>(), prop_oneof![8 => 11u8..14, 1 => Just(1u8)], arb_sources())
                .prop_map(|(id, public_ip, protocol, public_ports, single, vm, source_cidrs)| {
                    let (public_ports, private_ports) = if single {
                        let p = WirePorts { start: public_ports.start, end: public_ports.start };
                        (p, WirePorts { start: 8080, end: 8080 })
                    } else {
                        (public_ports, public_ports)
                    };
                    AnyRule::Forward(WirePortForward {
                        id, public_ip, protocol: protocol.into(), public_ports, private_ports,
                        vm_ip: Ipv4Addr::new(10, 1, 1, vm), source_cidrs,
                    })
                }),
            2 => (id, arb_ip(), prop_oneof![8 => 20u32..40, 1 => Just(0u32)], proptest::collection::vec((11u8..14, 80u32..82), 0..3))
                .prop_map(|(id, public_ip, public_port, members)| {
                    AnyRule::Balancer(WireLoadBalancer {
                        id, public_ip, public_port, protocol: "tcp".into(), algorithm: "roundrobin".into(),
            proxy_protocol: None,
                        members: members.into_iter().map(|(vm, port)| WireMember { vm_ip: Ipv4Addr::new(10, 1, 1, vm), port }).collect(),
                        source_cidrs: vec!["0.0.0.0/0".into()], stickiness: None, health_check: None,
                    })
                }),
        ]
    }

    fn empty() -> RouterConfig {
        let mut c = example();
        c.firewall_rules.clear();
        c.egress_rules.clear();
        c.port_forwards.clear();
        c.load_balancers.clear();
        c
    }

    fn push(c: &mut RouterConfig, r: &AnyRule) {
        match r.clone() {
            AnyRule::Firewall(r) => c.firewall_rules.push(r),
            AnyRule::Egress(r) => c.egress_rules.push(r),
            AnyRule::Forward(r) => c.port_forwards.push(r),
            AnyRule::Balancer(r) => c.load_balancers.push(r),
        }
    }

    /// A valid base: each drawn rule is kept when the config stays valid with it.
    fn base_of(rules: &[AnyRule]) -> ValidConfig {
        let mut c = empty();
        for r in rules {
            let mut next = c.clone();
            push(&mut next, r);
            if validate(next.clone()).is_ok() {
                c = next;
            }
        }
        validate(c).unwrap()
    }

    fn delta_of(
        base: &ValidConfig,
        upserts: &[AnyRule],
        removes: &[prop::sample::Index],
        unknown: bool,
        policy: bool,
    ) -> RouterDelta {
        let mut d = RouterDelta::between(base.document(), base.document());
        d.generation = base.generation() + 1;
        let mut held: Vec<u64> = Vec::new();
        let doc = base.document();
        held.extend(doc.firewall_rules.iter().map(|r| r.id));
        held.extend(doc.egress_rules.iter().map(|r| r.id));
        held.extend(doc.port_forwards.iter().map(|r| r.id));
        held.extend(doc.load_balancers.iter().map(|r| r.id));
        if !held.is_empty() {
            d.remove = removes.iter().map(|i| held[i.index(held.len())]).collect();
        }
        if unknown {
            d.remove.push(1000);
        }
        for r in upserts {
            match r.clone() {
                AnyRule::Firewall(r) => d.upsert_firewall_rules.push(r),
                AnyRule::Egress(r) => d.upsert_egress_rules.push(r),
                AnyRule::Forward(r) => d.upsert_port_forwards.push(r),
                AnyRule::Balancer(r) => d.upsert_load_balancers.push(r),
            }
        }
        if policy {
            d.egress_default = Some(EgressPolicy::Allow);
        }
        d
    }

    fn problem_set(p: &ConfigProblems) -> Vec<String> {
        let mut v: Vec<String> = p.0.iter().map(ToString::to_string).collect();
        v.sort();
        v
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn in_place_equals_a_whole_validation_of_the_result(
            rules in proptest::collection::vec(arb_rule(), 0..16),
            upserts in proptest::collection::vec(arb_rule(), 0..4),
            removes in proptest::collection::vec(any::<prop::sample::Index>(), 0..3),
            unknown in proptest::bool::weighted(0.05),
            policy in proptest::bool::weighted(0.05),
        ) {
            let base = base_of(&rules);
            let delta = delta_of(&base, &upserts, &removes, unknown, policy);
            let whole = delta
                .apply_to(base.document())
                .map_err(ApplyDeltaError::Delta)
                .and_then(|doc| validate(doc).map_err(|problems| ApplyDeltaError::Invalid {
                    generation: delta.generation,
                    problems,
                }));
            let mut cfg = base.clone();
            match (cfg.apply_delta(&delta), whole) {
                (Ok(change), Ok(want)) => {
                    prop_assert_eq!(&cfg, &want);
                    prop_assert_eq!(change.balancers_before(&cfg), base.load_balancers.clone());
                    cfg.undo(change);
                    prop_assert_eq!(&cfg, &base);
                }
                (Err(ApplyDeltaError::Invalid { generation, problems }), Err(ApplyDeltaError::Invalid { generation: g, problems: want })) => {
                    prop_assert_eq!(generation, g);
                    prop_assert_eq!(problem_set(&problems), problem_set(&want));
                    prop_assert_eq!(&cfg, &base);
                }
                (Err(ApplyDeltaError::Delta(e)), Err(ApplyDeltaError::Delta(want))) => {
                    prop_assert_eq!(e, want);
                    prop_assert_eq!(&cfg, &base);
                }
                (got, want) => prop_assert!(false, "in place: {:?}\nwhole: {:?}", got.map(|_| ()), want.map(|_| ())),
            }
        }
    }
}
