//! The in-memory model of the router's nftables table, and how a config becomes one.
//!
//! The model is split in two:
//! - the *skeleton*: base chains, the ICMP and egress chains, and the public IP set; small,
//!   rebuilt from the config on every plan;
//! - *partitions*, one per (kind, public IP, protocol) for ingress tcp/udp rules and port
//!   forwards: set and map elements plus per-bucket chains for port ranges. A whole document
//!   re-plans the partitions whose rules changed; a change re-plans only the source CIDRs and
//!   ports it touches (`change.rs`).

use ipnet::Ipv4Net;
use router_config::{
    EgressMatch, EgressPolicy, IcmpMatch, IngressMatch, IngressRule, L4Proto, PortForward,
    PortRange, RuleId, ValidConfig,
};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use crate::change::PartAtoms;
use crate::owners::{self, Seg};

/// Every prefix length, most specific first: the order of the tuple-space lookups.
pub(crate) const PREFIX_LENGTHS: std::ops::RangeInclusive<u8> = 0..=32;

/// Which family of rules a partition holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PartKind {
    /// Ingress firewall rules (tcp and udp).
    Ingress,
    /// Port forwards.
    Forward,
}

impl PartKind {
    pub(crate) fn prefix(self) -> &'static str {
        match self {
            PartKind::Ingress => "in",
            PartKind::Forward => "pf",
        }
    }
}

/// A partition: all rules of one kind for one public IP and protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartKey {
    /// Rule family.
    pub kind: PartKind,
    /// Public IP.
    pub ip: Ipv4Addr,
    /// Protocol.
    pub proto: L4Proto,
}

/// What a map element maps to (nothing for sets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElemValue {
    /// A set element.
    None,
    /// A DNAT target address (port-range forwards keep the port).
    Addr(Ipv4Addr),
    /// A DNAT target address and port.
    AddrPort(Ipv4Addr, u16),
}

/// One set or map element: what it maps to and the rule it counts for. Its key is the map key
/// it is stored under; text is made only when a script is rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Element {
    /// The value for maps.
    pub value: ElemValue,
    /// The rule whose counter this element is.
    pub owner: RuleId,
}

/// The key of an exact element within a partition: source CIDR (its prefix length picks the
/// set `<kind>_x_<len>`) and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExactKey {
    /// Source CIDR (`0.0.0.0/0` for everyone).
    pub net: Ipv4Net,
    /// Destination port.
    pub port: u16,
}

/// A port-range bucket: a chain and an interval set or map for one (partition, source CIDR).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// The source CIDR.
    pub net: Ipv4Net,
    /// Port range → element.
    pub elements: BTreeMap<PortRange, Element>,
}

/// The elements and buckets of one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fragment {
    /// Exact elements of the sets/maps `<kind>_x_<len>`.
    pub exact: BTreeMap<ExactKey, Element>,
    /// Bucket name → bucket.
    pub buckets: BTreeMap<String, Bucket>,
}

/// The text of an element's value, as nft reads it (empty for sets).
pub(crate) fn value_text(v: ElemValue) -> String {
    match v {
        ElemValue::None => String::new(),
        ElemValue::Addr(a) => a.to_string(),
        ElemValue::AddrPort(a, p) => format!("{a} . {p}"),
    }
}

/// A chain: its base-chain header (if it is one) and its rules, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// `type … hook … priority …; policy …;` for base chains.
    pub header: Option<String>,
    /// Rule lines.
    pub rules: Vec<String>,
}

/// The small, always-rebuilt part of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skeleton {
    /// Elements of `public_ips`.
    pub public_ips: BTreeSet<Ipv4Addr>,
    /// Every static chain by name.
    pub chains: BTreeMap<String, Chain>,
}

/// The complete model of the router's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    /// Static chains and the public IP set.
    pub skeleton: Skeleton,
    /// Partitions by key; an absent key has no rules.
    pub parts: BTreeMap<PartKey, Fragment>,
    /// The ingress partitions' rules by source CIDR, so a change re-plans the CIDRs it touches
    /// without scanning the config.
    pub(crate) atoms: BTreeMap<PartKey, PartAtoms>,
}

/// Plans the complete model of a config.
pub fn plan(cfg: &ValidConfig) -> Ruleset {
    let mut groups: BTreeMap<PartKey, Members<'_>> = BTreeMap::new();
    for r in &cfg.ingress {
        if let Some(key) = ingress_key(r) {
            groups.entry(key).or_default().ingress.push(r);
        }
    }
    for f in &cfg.port_forwards {
        groups.entry(forward_key(f)).or_default().forwards.push(f);
    }
    let mut atoms = BTreeMap::new();
    let parts = groups
        .into_iter()
        .map(|(key, members)| {
            if key.kind == PartKind::Ingress {
                atoms.insert(key, PartAtoms::of(&members.ingress));
            }
            (key, plan_partition(key, &members))
        })
        .collect();
    Ruleset {
        skeleton: plan_skeleton(cfg),
        parts,
        atoms,
    }
}

/// Partitions whose rules differ between two configs.
pub(crate) fn dirty_partitions(old: &ValidConfig, new: &ValidConfig) -> BTreeSet<PartKey> {
    let mut dirty = BTreeSet::new();
    merge_walk(
        &old.ingress,
        &new.ingress,
        |r| r.id,
        |r| {
            if let Some(k) = ingress_key(r) {
                dirty.insert(k);
            }
        },
    );
    merge_walk(
        &old.port_forwards,
        &new.port_forwards,
        |r| r.id,
        |r| {
            dirty.insert(forward_key(r));
        },
    );
    dirty
}

/// Calls `mark` for every rule that is in only one of two id-sorted lists or differs between
/// them (for a changed rule, both versions).
fn merge_walk<T: PartialEq>(a: &[T], b: &[T], id: impl Fn(&T) -> RuleId, mut mark: impl FnMut(&T)) {
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if id(x) == id(y) => {
                if x != y {
                    mark(x);
                    mark(y);
                }
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) if id(x) < id(y) => {
                mark(x);
                i += 1;
            }
            (Some(_), Some(y)) => {
                mark(y);
                j += 1;
            }
            (Some(x), None) => {
                mark(x);
                i += 1;
            }
            (None, Some(y)) => {
                mark(y);
                j += 1;
            }
            (None, None) => break,
        }
    }
}

/// Re-plans the given partitions of `cfg` (all of them that still have rules), with the atoms
/// of the ingress ones.
pub(crate) fn plan_partitions(
    cfg: &ValidConfig,
    keys: &BTreeSet<PartKey>,
) -> BTreeMap<PartKey, (Fragment, Option<PartAtoms>)> {
    let mut groups: BTreeMap<PartKey, Members<'_>> = BTreeMap::new();
    if keys.iter().any(|k| k.kind == PartKind::Ingress) {
        for r in &cfg.ingress {
            if let Some(k) = ingress_key(r).filter(|k| keys.contains(k)) {
                groups.entry(k).or_default().ingress.push(r);
            }
        }
    }
    if keys.iter().any(|k| k.kind == PartKind::Forward) {
        for f in &cfg.port_forwards {
            let k = forward_key(f);
            if keys.contains(&k) {
                groups.entry(k).or_default().forwards.push(f);
            }
        }
    }
    groups
        .into_iter()
        .map(|(k, m)| {
            let atoms = (k.kind == PartKind::Ingress).then(|| PartAtoms::of(&m.ingress));
            (k, (plan_partition(k, &m), atoms))
        })
        .collect()
}

#[derive(Default)]
struct Members<'a> {
    ingress: Vec<&'a IngressRule>,
    forwards: Vec<&'a PortForward>,
}

pub(crate) fn ingress_key(r: &IngressRule) -> Option<PartKey> {
    match r.matcher {
        IngressMatch::Ports { proto, .. } => Some(PartKey {
            kind: PartKind::Ingress,
            ip: r.public_ip,
            proto,
        }),
        IngressMatch::Icmp(_) => None,
    }
}

pub(crate) fn forward_key(f: &PortForward) -> PartKey {
    PartKey {
        kind: PartKind::Forward,
        ip: f.public_ip,
        proto: f.proto,
    }
}

fn mask(len: u8) -> Ipv4Addr {
    Ipv4Net::new(Ipv4Addr::UNSPECIFIED, len)
        .map(|n| n.netmask())
        .unwrap_or(Ipv4Addr::BROADCAST)
}

fn hex(ip: Ipv4Addr) -> String {
    format!("{:08x}", u32::from(ip))
}

/// The key of an exact element: `ip . proto . port [. net]`.
pub(crate) fn exact_key(key: PartKey, port: u16, net: Ipv4Net) -> String {
    if net.prefix_len() == 0 {
        format!("{} . {} . {}", key.ip, key.proto.name(), port)
    } else {
        format!(
            "{} . {} . {} . {}",
            key.ip,
            key.proto.name(),
            port,
            net.network()
        )
    }
}

pub(crate) fn vmap_key(key: PartKey, net: Ipv4Net) -> String {
    if net.prefix_len() == 0 {
        format!("{} . {}", key.ip, key.proto.name())
    } else {
        format!("{} . {} . {}", key.ip, key.proto.name(), net.network())
    }
}

/// Chain name of a bucket; its set is the same name with `s` after the kind prefix.
pub(crate) fn bucket_name(key: PartKey, net: Ipv4Net) -> String {
    let k = match key.kind {
        PartKind::Ingress => "ib",
        PartKind::Forward => "pb",
    };
    format!(
        "{k}_{}_{}_{}_{}",
        hex(key.ip),
        key.proto.name(),
        hex(net.network()),
        net.prefix_len()
    )
}

/// The set (or map) that holds a bucket's ports.
pub(crate) fn bucket_set_name(chain: &str) -> String {
    format!("{}s{}", &chain[..2], &chain[2..])
}

pub(crate) fn port_text(r: PortRange) -> String {
    r.to_string()
}

fn plan_partition(key: PartKey, m: &Members<'_>) -> Fragment {
    match key.kind {
        PartKind::Ingress => plan_ingress(key, &m.ingress),
        PartKind::Forward => plan_forwards(key, &m.forwards),
    }
}

/// Lowest-id attribution across nested source CIDRs: a CIDR's elements carry the lowest id
/// among its own atoms and those of every CIDR containing it, so the tuple-space lookup (most
/// specific prefix first) always lands on the element of the lowest matching rule.
fn plan_ingress(key: PartKey, rules: &[&IngressRule]) -> Fragment {
    // Atoms per source CIDR.
    let mut atoms: BTreeMap<Ipv4Net, Vec<(PortRange, RuleId)>> = BTreeMap::new();
    for r in rules {
        let IngressMatch::Ports { ports, .. } = r.matcher else {
            continue;
        };
        for net in &r.sources {
            atoms.entry(*net).or_default().push((ports, r.id));
        }
    }
    let parents = parent_map(atoms.keys().copied());
    let has_children: HashSet<Ipv4Net> = parents.values().flatten().copied().collect();
    // Process from short prefixes to long ones, so a parent's effective segments exist first.
    let mut order: Vec<Ipv4Net> = atoms.keys().copied().collect();
    order.sort_by_key(|n| (n.prefix_len(), n.network()));
    let mut effective: HashMap<Ipv4Net, Vec<Seg>> = HashMap::new();
    let mut frag = Fragment::default();
    let full = [PortRange::ALL];
    for net in order {
        let own = &atoms[&net];
        let base: &[Seg] = parents
            .get(&net)
            .and_then(|p| p.as_ref())
            .and_then(|p| effective.get(p))
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        // Exact single ports.
        let singles: BTreeSet<u16> = own
            .iter()
            .filter(|(r, _)| r.is_single())
            .map(|(r, _)| r.start)
            .collect();
        if !singles.is_empty() {
            let windows = owners::union(singles.iter().map(|p| PortRange { start: *p, end: *p }));
            let segs = owners::overlay(base, own, &windows);
            for p in &singles {
                if let Some(owner) = owners::owner_at(&segs, *p) {
                    frag.exact.insert(
                        ExactKey { net, port: *p },
                        Element {
                            value: ElemValue::None,
                            owner,
                        },
                    );
                }
            }
        }
        // Port ranges: a bucket.
        let ranges: Vec<PortRange> = own
            .iter()
            .filter(|(r, _)| !r.is_single())
            .map(|(r, _)| *r)
            .collect();
        if !ranges.is_empty() {
            let windows = owners::union(ranges);
            let segs = owners::overlay(base, own, &windows);
            let elements = segs
                .iter()
                .map(|s| {
                    (
                        PortRange {
                            start: s.start,
                            end: s.end,
                        },
                        Element {
                            value: ElemValue::None,
                            owner: s.owner,
                        },
                    )
                })
                .collect();
            frag.buckets
                .insert(bucket_name(key, net), Bucket { net, elements });
        }
        if has_children.contains(&net) {
            effective.insert(net, owners::overlay(base, own, &full));
        }
    }
    frag
}

/// Port forwards never overlap (validation refuses it), so no attribution is needed.
fn plan_forwards(key: PartKey, forwards: &[&PortForward]) -> Fragment {
    let mut frag = Fragment::default();
    for f in forwards {
        for net in &f.sources {
            if f.public_ports.is_single() {
                frag.exact.insert(
                    ExactKey {
                        net: *net,
                        port: f.public_ports.start,
                    },
                    Element {
                        value: ElemValue::AddrPort(f.vm_ip, f.private_ports.start),
                        owner: f.id,
                    },
                );
            } else {
                let name = bucket_name(key, *net);
                let bucket = frag.buckets.entry(name).or_insert_with(|| Bucket {
                    net: *net,
                    elements: BTreeMap::new(),
                });
                bucket.elements.insert(
                    f.public_ports,
                    Element {
                        value: ElemValue::Addr(f.vm_ip),
                        owner: f.id,
                    },
                );
            }
        }
    }
    frag
}

/// For each CIDR, the closest other CIDR of the list that contains it.
fn parent_map(nets: impl Iterator<Item = Ipv4Net>) -> HashMap<Ipv4Net, Option<Ipv4Net>> {
    let nets: Vec<Ipv4Net> = nets.collect();
    let present: HashSet<Ipv4Net> = nets.iter().copied().collect();
    let lengths: BTreeSet<u8> = nets.iter().map(|n| n.prefix_len()).collect();
    nets.iter()
        .map(|n| {
            let parent = lengths
                .iter()
                .rev()
                .filter(|l| **l < n.prefix_len())
                .filter_map(|l| Ipv4Net::new(n.network(), *l).ok().map(|p| p.trunc()))
                .find(|p| present.contains(p));
            (*n, parent)
        })
        .collect()
}

/// Removes CIDRs contained in another of the list: the union is unchanged, and nft interval
/// sets refuse overlapping elements.
fn minimal_cover(nets: &[Ipv4Net]) -> Vec<Ipv4Net> {
    let mut v: Vec<Ipv4Net> = nets.to_vec();
    v.sort_by_key(|n| (n.prefix_len(), n.network()));
    let mut out: Vec<Ipv4Net> = Vec::new();
    for n in v {
        if !out.iter().any(|o| o.contains(&n)) {
            out.push(n);
        }
    }
    out.sort();
    out
}

fn addr_match(dir: &str, nets: &[Ipv4Net]) -> String {
    let cover = minimal_cover(nets);
    if cover.iter().any(|n| n.prefix_len() == 0) {
        return String::new();
    }
    let list: Vec<String> = cover
        .iter()
        .map(|n| {
            if n.prefix_len() == 32 {
                n.addr().to_string()
            } else {
                n.to_string()
            }
        })
        .collect();
    format!("ip {dir} {{ {} }} ", list.join(", "))
}

fn icmp_match(m: IcmpMatch) -> String {
    match (m.icmp_type, m.code) {
        (None, _) => "meta l4proto icmp ".to_string(),
        (Some(t), None) => format!("icmp type {t} "),
        (Some(t), Some(c)) => format!("icmp type {t} icmp code {c} "),
    }
}

/// A rule comment that ties a chain rule to its rule id, read back by status.
pub(crate) fn rule_comment(id: RuleId) -> String {
    format!("comment \"rule {id}\"")
}

pub(crate) fn plan_skeleton(cfg: &ValidConfig) -> Skeleton {
    let mut chains = BTreeMap::new();
    let pub_if = &cfg.public_interface;
    let guest_if = &cfg.guest_interface;
    let guest = cfg.guest_cidr;

    // Ingress firewall: before DNAT, so rules see the public IP and port the client used.
    let mut ingress = vec![
        "ip daddr != @public_ips accept".to_string(),
        "ct state established,related accept".to_string(),
        "meta l4proto icmp jump in_icmp".to_string(),
    ];
    for len in PREFIX_LENGTHS.rev() {
        ingress.extend(lookup_lines("in", len, "accept"));
    }
    ingress.push("counter drop".to_string());
    chains.insert(
        "ingress".to_string(),
        Chain {
            header: Some("type filter hook prerouting priority -150; policy accept;".into()),
            rules: ingress,
        },
    );

    let mut icmp = Vec::new();
    for r in &cfg.ingress {
        if let IngressMatch::Icmp(m) = r.matcher {
            icmp.push(format!(
                "ip daddr {} {}{}counter accept {}",
                r.public_ip,
                addr_match("saddr", &r.sources),
                icmp_match(m),
                rule_comment(r.id)
            ));
        }
    }
    chains.insert(
        "in_icmp".to_string(),
        Chain {
            header: None,
            rules: icmp,
        },
    );

    // Port forwarding: DNAT for traffic arriving from anywhere, and from the router itself.
    let mut pf = Vec::new();
    for len in PREFIX_LENGTHS.rev() {
        pf.extend(lookup_lines("pf", len, ""));
    }
    chains.insert(
        "pf_lookup".to_string(),
        Chain {
            header: None,
            rules: pf,
        },
    );
    // Static NAT first: a static-NAT IP carries no forward, so its whole traffic goes to its VM
    // (the ingress chain, at an earlier priority, has already admitted or dropped it). One rule
    // with a map, whatever the number of static NATs.
    let (nat_in, nat_out) = static_nat_rules(cfg);
    let mut dnat = nat_in.iter().cloned().collect::<Vec<_>>();
    dnat.push("ip daddr @public_ips jump pf_lookup".into());
    chains.insert(
        "dnat_pre".to_string(),
        Chain {
            header: Some("type nat hook prerouting priority -100; policy accept;".into()),
            rules: dnat.clone(),
        },
    );
    chains.insert(
        "dnat_out".to_string(),
        Chain {
            header: Some("type nat hook output priority -100; policy accept;".into()),
            rules: dnat,
        },
    );
    // Source NAT, and hairpin: a VM reaching a forwarded public port of its own network sees the
    // reply come back through the router. A VM with a static NAT leaves from its own public IP.
    let mut snat = vec![format!(
        "ct status dnat ip saddr {guest} ip daddr {guest} oifname \"{guest_if}\" snat ip to {}",
        cfg.guest_gateway
    )];
    snat.extend(nat_out);
    snat.push(format!(
        "ip saddr {guest} oifname \"{pub_if}\" snat ip to {}",
        cfg.source_nat_ip
    ));
    chains.insert(
        "snat_post".to_string(),
        Chain {
            header: Some("type nat hook postrouting priority 100; policy accept;".into()),
            rules: snat,
        },
    );
    chains.insert(
        "forward".to_string(),
        Chain {
            header: Some("type filter hook forward priority 0; policy drop;".into()),
            rules: vec![
                "ct state established,related accept".into(),
                "ct state invalid drop".into(),
                "ct status dnat accept".into(),
                format!("iifname \"{guest_if}\" oifname \"{pub_if}\" ip saddr {guest} jump egress"),
            ],
        },
    );

    // The router's own DNS and DHCP (dnsmasq, on the guest address) are for the guests only:
    // nothing arriving on the public interface reaches them. Traffic to a public IP is left to
    // the ingress chain (a load balancer may listen on port 53 of one). Guests reach them
    // whatever the egress policy: traffic to the router is input, never forwarded, so the
    // egress rules (forward hook) never see it.
    chains.insert(
        "local_in".to_string(),
        Chain {
            header: Some("type filter hook input priority 0; policy accept;".into()),
            rules: vec![format!(
                "iifname \"{pub_if}\" ip daddr != @public_ips meta l4proto {{ tcp, udp }} th dport {{ 53, 67 }} counter drop comment \"guest services\""
            )],
        },
    );

    // Egress: rules in id order, first match counts; their verdict is the opposite of the default.
    let (rule_verdict, default_verdict) = match cfg.egress_default {
        EgressPolicy::Deny => ("accept", "drop"),
        EgressPolicy::Allow => ("drop", "accept"),
    };
    let mut egress = Vec::new();
    for r in &cfg.egress {
        let what = match r.matcher {
            EgressMatch::All => String::new(),
            EgressMatch::Ports { proto, ports } if ports == PortRange::ALL => {
                format!("meta l4proto {} ", proto.name())
            }
            EgressMatch::Ports { proto, ports } => format!("{} dport {} ", proto.name(), ports),
            EgressMatch::Icmp(m) => icmp_match(m),
        };
        egress.push(format!(
            "{}{}{}counter {rule_verdict} {}",
            addr_match("saddr", &r.sources),
            addr_match("daddr", &r.destinations),
            what,
            rule_comment(r.id)
        ));
    }
    egress.push(format!(
        "counter {default_verdict} comment \"egress default\""
    ));
    chains.insert(
        "egress".to_string(),
        Chain {
            header: None,
            rules: egress,
        },
    );

    Skeleton {
        public_ips: cfg.public_ips().collect(),
        chains,
    }
}

/// The static NATs' two rules, when there are any: DNAT of every new connection to a
/// static-NAT IP to its VM, and SNAT of the VMs' own connections to their public IPs.
fn static_nat_rules(cfg: &ValidConfig) -> (Option<String>, Option<String>) {
    if cfg.static_nats.is_empty() {
        return (None, None);
    }
    let join = |f: &dyn Fn(&router_config::StaticNat) -> String| {
        cfg.static_nats.iter().map(f).collect::<Vec<_>>().join(", ")
    };
    let publics = join(&|n| n.public_ip.to_string());
    let to_vm = join(&|n| format!("{} : {}", n.public_ip, n.vm_ip));
    let mut by_vm: Vec<_> = cfg.static_nats.iter().collect();
    by_vm.sort_by_key(|n| n.vm_ip);
    let vms = by_vm
        .iter()
        .map(|n| n.vm_ip.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let to_public = by_vm
        .iter()
        .map(|n| format!("{} : {}", n.vm_ip, n.public_ip))
        .collect::<Vec<_>>()
        .join(", ");
    let pub_if = &cfg.public_interface;
    (
        Some(format!(
            "ip daddr {{ {publics} }} counter dnat ip to ip daddr map {{ {to_vm} }} comment \"static nat\""
        )),
        Some(format!(
            "ip saddr {{ {vms} }} oifname \"{pub_if}\" counter snat ip to ip saddr map {{ {to_public} }} comment \"static nat\""
        )),
    )
}

/// The two lookups of one prefix length: exact ports, then port-range buckets.
fn lookup_lines(kind: &str, len: u8, verdict: &str) -> Vec<String> {
    let src = if len == 0 {
        String::new()
    } else {
        format!(" . ip saddr & {}", mask(len))
    };
    let exact = if kind == "pf" {
        // nft's parser needs the masked field parenthesised inside a NAT statement.
        let src = if len == 0 {
            String::new()
        } else {
            format!(" . (ip saddr & {})", mask(len))
        };
        format!("dnat ip to ip daddr . meta l4proto . th dport{src} map @pf_x_{len}")
    } else {
        format!("ip daddr . meta l4proto . th dport{src} @{kind}_x_{len} {verdict}")
    };
    vec![
        exact,
        format!("ip daddr . meta l4proto{src} vmap @{kind}_r_{len}"),
    ]
}

/// Declarations of the static sets and maps, by name.
pub(crate) fn static_sets() -> Vec<(String, String)> {
    let mut out = vec![(
        "public_ips".to_string(),
        "set public_ips { type ipv4_addr; }".to_string(),
    )];
    for len in PREFIX_LENGTHS {
        let src = if len == 0 { "" } else { " . ipv4_addr" };
        out.push((
            format!("in_x_{len}"),
            format!(
                "set in_x_{len} {{ type ipv4_addr . inet_proto . inet_service{src}; counter; }}"
            ),
        ));
        out.push((
            format!("in_r_{len}"),
            format!("map in_r_{len} {{ type ipv4_addr . inet_proto{src} : verdict; }}"),
        ));
        out.push((
            format!("pf_x_{len}"),
            format!("map pf_x_{len} {{ type ipv4_addr . inet_proto . inet_service{src} : ipv4_addr . inet_service; counter; }}"),
        ));
        out.push((
            format!("pf_r_{len}"),
            format!("map pf_r_{len} {{ type ipv4_addr . inet_proto{src} : verdict; }}"),
        ));
    }
    out
}

/// Declaration, body rule and set declaration of a bucket.
pub(crate) fn bucket_decl(name: &str) -> (String, String) {
    let set = bucket_set_name(name);
    if name.starts_with("ib") {
        (
            format!("set {set} {{ type inet_service; flags interval; counter; }}"),
            format!("th dport @{set} accept"),
        )
    } else {
        (
            format!("map {set} {{ type inet_service : ipv4_addr; flags interval; counter; }}"),
            format!("dnat ip to th dport map @{set}"),
        )
    }
}

/// The name of the exact set of a partition kind and prefix length.
pub(crate) fn exact_set(kind: PartKind, len: u8) -> String {
    let mut s = String::new();
    let _ = write!(s, "{}_x_{len}", kind.prefix());
    s
}

/// The name of the range vmap of a partition kind and prefix length.
pub(crate) fn range_vmap(kind: PartKind, len: u8) -> String {
    format!("{}_r_{len}", kind.prefix())
}
