//! The two rule mixes, drawn deterministically, and the one-rule changes applied on top of them.
//!
//! Every config holds, besides its N counted ingress rules, the probe: an ingress rule opening
//! [`PROBE_IP`] tcp [`PROBE_PORT`] to everyone and a port forward from there to the probe server
//! on the VM. No counted rule ever covers the probe port, so the probe's SYN is accepted by the
//! probe rule only; its source is `0.0.0.0/0`, the least specific prefix length, which the
//! tuple-space lookup tries last: the worst case for our layout.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use router_config::{
    EgressPolicy, GuestSide, PublicAddress, PublicSide, RouterConfig, WireFirewallRule,
    WirePortForward, WirePorts, SCHEMA_VERSION,
};

use crate::rng::{self, Rng};

/// The public IP of the probe (the source-NAT IP, on the lab's public segment).
pub(crate) const PROBE_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// The public port of the probe.
pub(crate) const PROBE_PORT: u16 = 80;
/// The VM that runs the probe server.
pub(crate) const VM_IP: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 11);
/// The port the probe server listens on.
pub(crate) const VM_PORT: u16 = 8080;
/// The guest network.
pub(crate) const GUEST_CIDR: &str = "10.1.1.0/24";
/// The router's guest address.
pub(crate) const GUEST_GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 1);

const PROBE_RULE_ID: u64 = 1;
const PROBE_FORWARD_ID: u64 = 2;
const FIRST_RULE_ID: u64 = 3;
/// How many source prefixes each mix draws from.
const POOL_SIZE: usize = 1_000;
/// Where the extra public IPs of mix A live (each as a /32 on `pub0`).
const EXTRA_IPS_BASE: u32 = u32::from_be_bytes([100, 64, 0, 0]);

/// A rule mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub(crate) enum Mix {
    /// Realistic at scale: single ports over N/10 public IPs, 80% open to everyone.
    A,
    /// Adversarial: overlapping port ranges from nested CIDRs, all on one public IP.
    B,
}

impl Mix {
    /// Its name in tables.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Mix::A => "A",
            Mix::B => "B",
        }
    }

    fn tag(self) -> u64 {
        match self {
            Mix::A => 0xa,
            Mix::B => 0xb,
        }
    }
}

/// Which rule a change touched and its new ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Change {
    /// Index in `firewall_rules`.
    pub(crate) index: usize,
    /// The rule's new ports.
    pub(crate) ports: WirePorts,
}

/// The seed of the changes made in one run on one (mix, size).
pub(crate) fn change_seed(mix: Mix, n: usize, run: usize) -> u64 {
    rng::seed(&[mix.tag(), n as u64, run as u64, 0xc4a9])
}

/// The config of `mix` with `n` counted rules, generation 1.
pub(crate) fn config(mix: Mix, n: usize) -> RouterConfig {
    let mut rng = Rng::new(rng::seed(&[mix.tag(), n as u64]));
    let mut cfg = probe_config(match mix {
        Mix::A => n.div_ceil(10).max(1),
        Mix::B => 1,
    });
    let ips: Vec<Ipv4Addr> = cfg.public.addresses.iter().map(|a| a.ip).collect();
    let pool = match mix {
        Mix::A => realistic_pool(),
        Mix::B => nested_pool(),
    };
    for i in 0..n {
        let id = FIRST_RULE_ID + i as u64;
        let rule = match mix {
            Mix::A => {
                let sources = if rng.percent(80) {
                    vec!["0.0.0.0/0".to_string()]
                } else {
                    pick(&mut rng, &pool, 3)
                };
                firewall_rule(
                    id,
                    ips[rng.index(ips.len())],
                    protocol(&mut rng),
                    single_port(&mut rng, None),
                    sources,
                )
            }
            Mix::B => {
                let sources = if rng.percent(10) {
                    vec!["0.0.0.0/0".to_string()]
                } else {
                    pick(&mut rng, &pool, 2)
                };
                firewall_rule(
                    id,
                    PROBE_IP,
                    protocol(&mut rng),
                    port_range(&mut rng, None),
                    sources,
                )
            }
        };
        cfg.firewall_rules.push(rule);
    }
    cfg
}

/// The config holding only the probe (its rule and its port forward), with `ips` public IPs.
pub(crate) fn probe_config(ips: usize) -> RouterConfig {
    let mut addresses = vec![PublicAddress {
        ip: PROBE_IP,
        prefix_len: lab::PUBLIC_PREFIX_LEN,
        source_nat: true,
        static_nat: None,
    }];
    for i in 1..ips {
        addresses.push(PublicAddress {
            ip: Ipv4Addr::from(EXTRA_IPS_BASE + i as u32),
            prefix_len: 32,
            source_nat: false,
            static_nat: None,
        });
    }
    RouterConfig {
        schema: SCHEMA_VERSION,
        generation: 1,
        public: PublicSide {
            interface: "pub0".to_string(),
            addresses,
            gateway: Some(lab::OUTSIDE_GATEWAY),
        },
        guest: GuestSide {
            interface: "guest0".to_string(),
            cidr: GUEST_CIDR.to_string(),
            gateway: GUEST_GATEWAY,
        },
        egress_default: EgressPolicy::Allow,
        firewall_rules: vec![firewall_rule(
            PROBE_RULE_ID,
            PROBE_IP,
            "tcp",
            WirePorts {
                start: u32::from(PROBE_PORT),
                end: u32::from(PROBE_PORT),
            },
            vec!["0.0.0.0/0".to_string()],
        )],
        egress_rules: Vec::new(),
        port_forwards: vec![WirePortForward {
            id: PROBE_FORWARD_ID,
            public_ip: PROBE_IP,
            protocol: "tcp".to_string(),
            public_ports: WirePorts {
                start: u32::from(PROBE_PORT),
                end: u32::from(PROBE_PORT),
            },
            private_ports: WirePorts {
                start: u32::from(VM_PORT),
                end: u32::from(VM_PORT),
            },
            vm_ip: VM_IP,
            source_cidrs: vec!["0.0.0.0/0".to_string()],
        }],
        load_balancers: Vec::new(),
        dhcp: None,
    }
}

/// Moves `cfg` to its next generation with one counted rule changed: for mix A its port, for
/// mix B its range. The rule is one not in `used` and (for mix B, so the linear baseline changes
/// exactly one chain rule) with a single source CIDR; it is added to `used`. `None` when no such
/// rule is left.
pub(crate) fn change(
    cfg: &RouterConfig,
    mix: Mix,
    rng: &mut Rng,
    used: &mut BTreeSet<usize>,
) -> Option<(RouterConfig, Change)> {
    let candidates: Vec<usize> = (1..cfg.firewall_rules.len())
        .filter(|i| !used.contains(i))
        .filter(|i| mix == Mix::A || cfg.firewall_rules[*i].source_cidrs.len() == 1)
        .collect();
    if candidates.is_empty() {
        return None;
    }
    let index = candidates[rng.index(candidates.len())];
    used.insert(index);
    let old = cfg.firewall_rules[index].ports;
    let ports = match mix {
        Mix::A => single_port(rng, old),
        Mix::B => port_range(rng, old),
    };
    let mut next = cfg.clone();
    next.generation += 1;
    next.firewall_rules[index].ports = Some(ports);
    Some((next, Change { index, ports }))
}

fn firewall_rule(
    id: u64,
    public_ip: Ipv4Addr,
    protocol: &str,
    ports: WirePorts,
    source_cidrs: Vec<String>,
) -> WireFirewallRule {
    WireFirewallRule {
        id,
        public_ip,
        protocol: protocol.to_string(),
        ports: Some(ports),
        icmp: None,
        source_cidrs,
    }
}

/// tcp mostly, udp one time in ten.
fn protocol(rng: &mut Rng) -> &'static str {
    if rng.percent(90) {
        "tcp"
    } else {
        "udp"
    }
}

/// One to `max` distinct prefixes of the pool.
fn pick(rng: &mut Rng, pool: &[Ipv4Net], max: u32) -> Vec<String> {
    let count = rng.between(1, max) as usize;
    let mut chosen = BTreeSet::new();
    while chosen.len() < count {
        chosen.insert(pool[rng.index(pool.len())]);
    }
    chosen.iter().map(ToString::to_string).collect()
}

/// A port in 1–65535 other than the probe port and `old`.
fn single_port(rng: &mut Rng, old: Option<WirePorts>) -> WirePorts {
    loop {
        let p = rng.between(1, 65_535);
        if p != u32::from(PROBE_PORT) && old.is_none_or(|o| o.start != p) {
            return WirePorts { start: p, end: p };
        }
    }
}

/// A range with a random start and a width of 1–500, not covering the probe port and not `old`.
fn port_range(rng: &mut Rng, old: Option<WirePorts>) -> WirePorts {
    loop {
        let start = rng.between(1, 65_535);
        let end = (start + rng.between(1, 500) - 1).min(65_535);
        let probe = u32::from(PROBE_PORT);
        let r = WirePorts { start, end };
        if !(start..=end).contains(&probe) && Some(r) != old {
            return r;
        }
    }
}

fn net(addr: u32, len: u8) -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::from(addr), len)
        .expect("invariant: prefix lengths are at most 32")
        .trunc()
}

/// Mix A's sources: 1,000 unrelated prefixes, mostly hosts and /24s.
fn realistic_pool() -> Vec<Ipv4Net> {
    const LENGTHS: [u8; 10] = [32, 32, 32, 32, 24, 24, 24, 16, 28, 20];
    let mut rng = Rng::new(rng::seed(&[0xa, 0x9001]));
    let mut pool = BTreeSet::new();
    while pool.len() < POOL_SIZE {
        let len = LENGTHS[rng.index(LENGTHS.len())];
        pool.insert(net(rng.next_u64() as u32, len));
    }
    pool.into_iter().collect()
}

/// Mix B's sources: 1,000 prefixes from /8 to /28 grown as trees under eight /8 roots, so many
/// contain each other; one branch nests all the way down around the probe client's address.
fn nested_pool() -> Vec<Ipv4Net> {
    let mut rng = Rng::new(rng::seed(&[0xb, 0x9001]));
    let client = u32::from(lab::OUTSIDE_GATEWAY);
    let mut pool: BTreeSet<Ipv4Net> = (8..=28).map(|len| net(client, len)).collect();
    while pool.len() < 21 + 7 {
        let first = rng.between(1, 223);
        if first != 10 && first != 127 && first != 203 {
            pool.insert(net(first << 24, 8));
        }
    }
    let mut list: Vec<Ipv4Net> = pool.iter().copied().collect();
    while pool.len() < POOL_SIZE {
        let parent = list[rng.index(list.len())];
        if parent.prefix_len() >= 28 {
            continue;
        }
        let room = u32::from(28 - parent.prefix_len()).min(4);
        let len = parent.prefix_len() + rng.between(1, room) as u8;
        let host_bits = u32::MAX >> parent.prefix_len();
        let child = net(
            u32::from(parent.network()) | (rng.next_u64() as u32 & host_bits),
            len,
        );
        if pool.insert(child) {
            list.push(child);
        }
    }
    list.sort();
    list
}
