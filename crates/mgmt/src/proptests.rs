//! The API accepts only what the router accepts: random rule requests (good and bad values
//! mixed) go through the same checks the handlers run, the accepted ones become rows, and the
//! router's own validation must take the config planned from them.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use proptest::prelude::*;

use crate::cmd::firewall::{check_forward_ranges, egress_sources, l4_of, protocol_of};
use domain::checks::{self, Candidate};
use domain::ids::{AccountId, IpId, MemberId, NetworkId, RuleId, VlanRangeId, VmId, ZoneId};
use domain::model::{IpRow, MemberRow, NetworkRow, Purpose, Rule, State, Traffic};
use domain::plan::{self, Batch, NetworkState, PublicSegment};

const GUEST: &str = "10.1.1.0/24";
const IPS: [Ipv4Addr; 2] = [
    Ipv4Addr::new(203, 0, 113, 10),
    Ipv4Addr::new(203, 0, 113, 11),
];
const VMS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(10, 1, 1, 11),
    Ipv4Addr::new(10, 1, 1, 12),
    Ipv4Addr::new(10, 1, 1, 13),
];

/// A request as a client could send it.
#[derive(Debug, Clone)]
enum Req {
    Ingress {
        ip: usize,
        proto: String,
        start: Option<i64>,
        end: Option<i64>,
        icmp: (Option<i64>, Option<i64>),
        cidrs: Vec<String>,
    },
    Egress {
        proto: String,
        start: Option<i64>,
        end: Option<i64>,
        icmp: (Option<i64>, Option<i64>),
        cidrs: Vec<String>,
        dests: Vec<String>,
    },
    Forward {
        ip: usize,
        proto: String,
        public: (i64, Option<i64>),
        private: (i64, Option<i64>),
        vm: usize,
        cidrs: Vec<String>,
    },
    Balancer {
        ip: usize,
        public: i64,
        private: i64,
        algorithm: String,
        cidrs: Vec<String>,
        members: Vec<usize>,
    },
}

fn port() -> impl Strategy<Value = i64> {
    prop_oneof![
        20 => 1i64..200,
        1 => Just(0i64),
        1 => Just(65535i64),
        1 => Just(65536i64),
        1 => -3i64..0,
    ]
}

fn cidr() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just("0.0.0.0/0".to_string()),
        3 => Just("203.0.113.0/24".to_string()),
        3 => Just("198.51.100.7".to_string()),
        3 => Just("10.1.1.0/25".to_string()),
        3 => Just("10.1.1.128/25".to_string()),
        1 => Just("10.1.1.5/24".to_string()),
        2 => Just("10.9.0.0/16".to_string()),
        1 => Just("300.1.1.0/24".to_string()),
        1 => Just("not-a-cidr".to_string()),
        1 => Just(String::new()),
    ]
}

fn proto() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just("tcp".to_string()),
        3 => Just("udp".to_string()),
        2 => Just("icmp".to_string()),
        2 => Just("all".to_string()),
        1 => Just(" TCP ".to_string()),
        1 => Just("gre".to_string()),
    ]
}

fn icmp() -> impl Strategy<Value = (Option<i64>, Option<i64>)> {
    (
        proptest::option::of(prop_oneof![Just(-1i64), 0i64..20, Just(256i64)]),
        proptest::option::of(prop_oneof![Just(-1i64), 0i64..5, Just(300i64)]),
    )
}

fn req() -> impl Strategy<Value = Req> {
    prop_oneof![
        (
            0..IPS.len(),
            proto(),
            proptest::option::of(port()),
            proptest::option::of(port()),
            icmp(),
            proptest::collection::vec(cidr(), 0..3)
        )
            .prop_map(|(ip, proto, start, end, icmp, cidrs)| Req::Ingress {
                ip,
                proto,
                start,
                end,
                icmp,
                cidrs
            }),
        (
            proto(),
            proptest::option::of(port()),
            proptest::option::of(port()),
            icmp(),
            proptest::collection::vec(cidr(), 0..3),
            proptest::collection::vec(cidr(), 0..3)
        )
            .prop_map(|(proto, start, end, icmp, cidrs, dests)| Req::Egress {
                proto,
                start,
                end,
                icmp,
                cidrs,
                dests
            }),
        (
            0..IPS.len(),
            proto(),
            (port(), proptest::option::of(port())),
            (port(), proptest::option::of(port())),
            0..VMS.len(),
            proptest::collection::vec(cidr(), 0..3)
        )
            .prop_map(|(ip, proto, public, private, vm, cidrs)| Req::Forward {
                ip,
                proto,
                public,
                private,
                vm,
                cidrs
            }),
        (
            0..IPS.len(),
            port(),
            port(),
            prop_oneof![
                Just("roundrobin".to_string()),
                Just("LeastConn".to_string()),
                Just("source".to_string()),
                Just("random".to_string())
            ],
            proptest::collection::vec(cidr(), 0..3),
            proptest::collection::vec(0..VMS.len(), 0..3)
        )
            .prop_map(
                |(ip, public, private, algorithm, cidrs, members)| Req::Balancer {
                    ip,
                    public,
                    private,
                    algorithm,
                    cidrs,
                    members
                }
            ),
    ]
}

fn base_rule(id: i64) -> Rule {
    Rule {
        id: RuleId::from(id),
        uuid: format!("rule-{id}"),
        purpose: Purpose::Firewall,
        traffic: None,
        network_id: NetworkId::from(1),
        ip_id: None,
        ip: None,
        account_id: AccountId::from(1),
        protocol: String::new(),
        start_port: None,
        end_port: None,
        icmp_type: None,
        icmp_code: None,
        source_cidrs: Vec::new(),
        dest_cidrs: Vec::new(),
        state: State::Active,
        applied: true,
        job_id: None,
        related_id: None,
        display: true,
        vm_id: None,
        vm_ip: None,
        private_start: None,
        private_end: None,
        name: None,
        description: None,
        algorithm: None,
        lb_protocol: None,
        created: 0,
        network_uuid: "net".into(),
        ip_uuid: None,
        vm_uuid: None,
        vm_name: None,
        vm_display: None,
    }
}

fn strings(nets: &[Ipv4Net]) -> Vec<String> {
    nets.iter().map(ToString::to_string).collect()
}

/// Runs a request through the handlers' checks; the rule it would write, or None if refused.
fn accept(req: &Req, id: i64, live: &[Rule]) -> Option<Rule> {
    let guest: Ipv4Net = GUEST.parse().ok()?;
    let mut r = base_rule(id);
    match req {
        Req::Ingress {
            ip,
            proto,
            start,
            end,
            icmp,
            cidrs,
        } => {
            let proto = protocol_of(proto, &["tcp", "udp", "icmp"], "z").ok()?;
            let (ports, icmp) = l4_of(&proto, *start, *end, icmp.0, icmp.1).ok()?;
            let mut sources = checks::cidr_list("cidrlist", cidrs).ok()?;
            if sources.is_empty() {
                sources.push(Ipv4Net::default());
            }
            r.traffic = Some(Traffic::Ingress);
            r.ip_id = Some(IpId::from(*ip as i64 + 1));
            r.ip = Some(IPS[*ip]);
            r.protocol = proto;
            r.start_port = ports.map(|p| p.0);
            r.end_port = ports.map(|p| p.1);
            r.icmp_type = icmp.map(|i| i.0);
            r.icmp_code = icmp.map(|i| i.1);
            r.source_cidrs = strings(&sources);
        }
        Req::Egress {
            proto,
            start,
            end,
            icmp,
            cidrs,
            dests,
        } => {
            let proto = protocol_of(proto, &["tcp", "udp", "icmp", "all"], "z").ok()?;
            let (ports, icmp) = l4_of(&proto, *start, *end, icmp.0, icmp.1).ok()?;
            let sources = egress_sources(cidrs, guest).ok()?;
            let dests = checks::cidr_list("destcidrlist", dests).ok()?;
            r.traffic = Some(Traffic::Egress);
            r.protocol = proto;
            r.start_port = ports.map(|p| p.0);
            r.end_port = ports.map(|p| p.1);
            r.icmp_type = icmp.map(|i| i.0);
            r.icmp_code = icmp.map(|i| i.1);
            r.source_cidrs = strings(&sources);
            r.dest_cidrs = strings(&dests);
        }
        Req::Forward {
            ip,
            proto,
            public,
            private,
            vm,
            cidrs,
        } => {
            let proto = protocol_of(proto, &["tcp", "udp"], "z").ok()?;
            let public =
                checks::port_range("publicport", Some(public.0), "publicendport", public.1)
                    .ok()??;
            let private =
                checks::port_range("privateport", Some(private.0), "privateendport", private.1)
                    .ok()??;
            check_forward_ranges(public, private).ok()?;
            let sources = checks::cidr_list("cidrlist", cidrs).ok()?;
            r.purpose = Purpose::PortForwarding;
            r.ip_id = Some(IpId::from(*ip as i64 + 1));
            r.ip = Some(IPS[*ip]);
            r.protocol = proto;
            r.start_port = Some(public.0);
            r.end_port = Some(public.1);
            r.private_start = Some(private.0);
            r.private_end = Some(private.1);
            r.vm_id = Some(VmId::from(*vm as i64 + 1));
            r.vm_ip = Some(VMS[*vm]);
            r.source_cidrs = strings(&sources);
        }
        Req::Balancer {
            ip,
            public,
            private,
            algorithm,
            cidrs,
            ..
        } => {
            let algorithm = checks::algorithm(algorithm).ok()?;
            let public = checks::port("publicport", *public).ok()?;
            let private = checks::port("privateport", *private).ok()?;
            let sources = checks::cidr_list("cidrlist", cidrs).ok()?;
            r.purpose = Purpose::LoadBalancing;
            r.ip_id = Some(IpId::from(*ip as i64 + 1));
            r.ip = Some(IPS[*ip]);
            r.protocol = "tcp".into();
            r.start_port = Some(public);
            r.end_port = Some(public);
            r.private_start = Some(private);
            r.private_end = Some(private);
            r.algorithm = Some(algorithm);
            r.lb_protocol = Some("tcp".into());
            r.source_cidrs = strings(&sources);
        }
    }
    let me = Candidate::of(&r);
    let neighbours: Vec<Candidate> = live
        .iter()
        .filter(|o| match r.traffic {
            Some(Traffic::Egress) => o.traffic == Some(Traffic::Egress),
            _ => o.ip_id == r.ip_id && o.ip_id.is_some(),
        })
        .map(Candidate::of)
        .collect();
    checks::conflicts(&me, &neighbours).ok()?;
    Some(r)
}

fn state(rules: Vec<Rule>, members: Vec<MemberRow>, egress_allow: bool) -> NetworkState {
    let cidr: Ipv4Net = GUEST.parse().unwrap_or_default();
    NetworkState {
        network: Some(NetworkRow {
            id: NetworkId::from(1),
            uuid: "net".into(),
            name: "net".into(),
            display_text: "net".into(),
            account_id: AccountId::from(1),
            zone_id: ZoneId::from(1),
            offering_id: 1,
            cidr,
            gateway: Ipv4Addr::new(10, 1, 1, 1),
            state: "Implemented".into(),
            egress_allow,
            created: 0,
            vlan: Some(100),
            network_domain: "cs1cloud.internal".into(),
        }),
        segment: Some(PublicSegment {
            prefix_len: 24,
            gateway: Some(Ipv4Addr::new(203, 0, 113, 1)),
        }),
        ips: IPS
            .iter()
            .enumerate()
            .map(|(i, a)| IpRow {
                id: IpId::from(i as i64 + 1),
                uuid: format!("ip-{i}"),
                address: *a,
                state: "Allocated".into(),
                account_id: Some(AccountId::from(1)),
                network_id: Some(NetworkId::from(1)),
                source_nat: i == 0,
                job_id: None,
                applied: true,
                allocated: Some(0),
                vlan_range_id: VlanRangeId::from(1),
                zone_id: ZoneId::from(1),
                nat: None,
            })
            .collect(),
        rules,
        members,
        policies: Vec::new(),
        vms: Vec::new(),
        dns: Vec::new(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_rule_the_api_accepts_the_router_accepts(
        reqs in proptest::collection::vec(req(), 1..40),
        egress_allow in any::<bool>(),
    ) {
        let mut rules: Vec<Rule> = Vec::new();
        let mut members: Vec<MemberRow> = Vec::new();
        for (i, req) in reqs.iter().enumerate() {
            let id = i as i64 + 1;
            if let Some(rule) = accept(req, id, &rules) {
                if let Req::Balancer { members: m, .. } = req {
                    let unique: BTreeSet<usize> = m.iter().copied().collect();
                    for (k, vm) in unique.into_iter().enumerate() {
                        members.push(MemberRow {
                            id: MemberId::from(id * 10 + k as i64),
                            lb_id: RuleId::from(id),
                            vm_id: VmId::from(vm as i64 + 1),
                            vm_ip: VMS[vm],
                            state: State::Active,
                            applied: true,
                            job_id: None,
                        });
                    }
                }
                rules.push(rule);
            }
        }
        let accepted = rules.len();
        let (config, _) = plan::desired(&state(rules, members, egress_allow), &Batch::default(), 7);
        let validated = router_config::validate(config.clone());
        prop_assert!(
            validated.is_ok(),
            "the router refused what the API accepted ({accepted} rules): {}\n{}",
            validated.err().map(|p| p.to_string()).unwrap_or_default(),
            serde_json::to_string_pretty(&config).unwrap_or_default()
        );
    }
}

#[test]
fn the_generator_makes_both_accepted_and_refused_requests() {
    // Guards the property above against a generator that only makes refused requests.
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut yes, mut no) = (0, 0);
    for i in 0..500 {
        let r = req().new_tree(&mut runner).expect("value").current();
        match accept(&r, i, &[]) {
            Some(_) => yes += 1,
            None => no += 1,
        }
    }
    assert!(yes > 50 && no > 50, "accepted {yes}, refused {no}");
}
