//! What differs between the config a control plane wants a router to enforce and the config the
//! router says it enforces, described in plain words for an operator.
//!
//! The comparison is made on the wire documents, field by field, without validating either side:
//! a router may hold something the control plane would refuse, and that is worth seeing too.
//!
//! What is compared and how:
//! - `schema` and `generation` are left out; the caller compares generations itself.
//! - The public side, the guest side and `egress_default` are compared field by field. Public
//!   addresses are matched by IP, so their order does not matter.
//! - Rules are matched by id within their section; the order of a section does not matter.
//! - Source and destination CIDRs and load-balancer members are compared as sets: validation
//!   sorts them and drops duplicate CIDRs (and refuses duplicate members), so neither their order
//!   nor a repeated entry changes what a router enforces. Every other list is compared in order.
//!
//! - The DHCP section: its DNS servers in order, its domain, and its leases matched by MAC (their
//!   order does not matter).
//!
//! The result is ordered by section (public, guest, egress default, firewall rules, egress rules,
//! port forwards, load balancers, DHCP) and then by IP or rule id, and holds at most
//! [`MAX_DIFFERENCES`] entries plus one that says how many more there are.

use std::fmt;
use std::net::Ipv4Addr;

use crate::wire::*;
use crate::RuleKind;

/// How many differences [`differences`] describes before it only counts the rest.
pub const MAX_DIFFERENCES: usize = 50;

/// How many entries of a list a description shows before it only counts the rest.
const LIST_SHOWN: usize = 10;

/// One difference between the config a control plane wants and the one a router holds, in plain
/// words, e.g. `port forward 9 differs: public_ports wanted 22, held 2222`.
///
/// "Missing" means wanted but not held; "extra" means held but not wanted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Difference {
    /// The description.
    pub what: String,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what)
    }
}

/// Every difference between `wanted` (what the control plane says the router must enforce) and
/// `held` (what the router reports it enforces), generation and schema aside.
///
/// Empty when the two configs enforce the same thing. The order is deterministic: by section,
/// then by public IP or rule id. When there are more than [`MAX_DIFFERENCES`], the first
/// [`MAX_DIFFERENCES`] are returned followed by one saying how many were left out.
///
/// Runs in O(n log n) in the number of rules (each section is sorted by id, then walked once).
pub fn differences(wanted: &RouterConfig, held: &RouterConfig) -> Vec<Difference> {
    let mut out = Collector::default();
    public_side(&mut out, &wanted.public, &held.public);
    guest_side(&mut out, &wanted.guest, &held.guest);
    if wanted.egress_default != held.egress_default {
        out.add(|| {
            format!(
                "egress_default wanted {}, held {}",
                policy(wanted.egress_default),
                policy(held.egress_default)
            )
        });
    }
    matched(
        &mut out,
        RuleKind::Firewall,
        &wanted.firewall_rules,
        &held.firewall_rules,
        |r| r.id,
        firewall_rule,
    );
    matched(
        &mut out,
        RuleKind::Egress,
        &wanted.egress_rules,
        &held.egress_rules,
        |r| r.id,
        egress_rule,
    );
    matched(
        &mut out,
        RuleKind::PortForward,
        &wanted.port_forwards,
        &held.port_forwards,
        |r| r.id,
        port_forward,
    );
    matched(
        &mut out,
        RuleKind::LoadBalancer,
        &wanted.load_balancers,
        &held.load_balancers,
        |r| r.id,
        load_balancer,
    );
    dhcp(&mut out, wanted.dhcp.as_ref(), held.dhcp.as_ref());
    out.finish()
}

fn dhcp(out: &mut Collector, wanted: Option<&DhcpService>, held: Option<&DhcpService>) {
    let (w, h) = match (wanted, held) {
        (None, None) => return,
        (Some(_), None) => return out.add(|| "dhcp is missing (DHCP and DNS not served)".into()),
        (None, Some(_)) => return out.add(|| "dhcp is extra (DHCP and DNS served)".into()),
        (Some(w), Some(h)) => (w, h),
    };
    if w.dns_servers != h.dns_servers {
        out.add(|| {
            format!(
                "dhcp.dns_servers wanted {}, held {}",
                List(&w.dns_servers),
                List(&h.dns_servers)
            )
        });
    }
    out.value(
        "dhcp.domain",
        Opt(w.domain.as_deref().map(Text)),
        Opt(h.domain.as_deref().map(Text)),
    );
    matched(
        out,
        "dhcp lease",
        &w.leases,
        &h.leases,
        |l| l.mac,
        |w, h, f| {
            f.value("ip", w.ip, h.ip);
            f.value("hostname", Text(&w.hostname), Text(&h.hostname));
        },
    );
}

/// Keeps the first [`MAX_DIFFERENCES`] descriptions and counts the rest without writing them.
#[derive(Default)]
struct Collector {
    kept: Vec<Difference>,
    total: usize,
}

impl Collector {
    /// Whether the next difference will be kept, and so is worth describing.
    fn describing(&self) -> bool {
        self.kept.len() < MAX_DIFFERENCES
    }

    fn add(&mut self, what: impl FnOnce() -> String) {
        if self.describing() {
            self.kept.push(Difference { what: what() });
        }
        self.total += 1;
    }

    /// One field of a side of the config, when the two differ.
    fn value<T: PartialEq + fmt::Display>(&mut self, name: &str, wanted: T, held: T) {
        if wanted != held {
            self.add(|| format!("{name} wanted {wanted}, held {held}"));
        }
    }

    fn finish(mut self) -> Vec<Difference> {
        let left_out = self.total - self.kept.len();
        if left_out > 0 {
            self.kept.push(Difference {
                what: format!("… and {left_out} more"),
            });
        }
        self.kept
    }
}

/// The differing fields of one item (a rule, a public address), gathered into one description.
struct Fields {
    /// Whether to write descriptions, or only to note that something differs.
    describe: bool,
    differs: bool,
    notes: Vec<String>,
}

impl Fields {
    fn new(describe: bool) -> Self {
        Fields {
            describe,
            differs: false,
            notes: Vec::new(),
        }
    }

    fn note(&mut self, what: impl FnOnce() -> String) {
        self.differs = true;
        if self.describe {
            self.notes.push(what());
        }
    }

    /// A field compared as one value.
    fn value<T: PartialEq + fmt::Display>(&mut self, name: impl fmt::Display, wanted: T, held: T) {
        if wanted != held {
            self.note(|| format!("{name} wanted {wanted}, held {held}"));
        }
    }

    /// A list whose order and repeated entries have no meaning.
    fn set<T: Ord + fmt::Display>(&mut self, name: &str, mut wanted: Vec<T>, mut held: Vec<T>) {
        for list in [&mut wanted, &mut held] {
            list.sort_unstable();
            list.dedup();
        }
        if wanted == held {
            return;
        }
        self.note(|| {
            let (missing, extra) = set_difference(&wanted, &held);
            let mut parts = Vec::new();
            if !missing.is_empty() {
                parts.push(format!("missing {}", List(&missing)));
            }
            if !extra.is_empty() {
                parts.push(format!("extra {}", List(&extra)));
            }
            format!("{name} {}", parts.join(", "))
        });
    }

    /// The joined description.
    fn text(&self) -> String {
        self.notes.join("; ")
    }
}

/// What only `wanted` holds and what only `held` holds, both sorted and without duplicates.
fn set_difference<'a, T: Ord>(wanted: &'a [T], held: &'a [T]) -> (Vec<&'a T>, Vec<&'a T>) {
    let (mut missing, mut extra) = (Vec::new(), Vec::new());
    let (mut w, mut h) = (wanted.iter().peekable(), held.iter().peekable());
    loop {
        match (w.peek(), h.peek()) {
            (Some(a), Some(b)) if a < b => missing.extend(w.next()),
            (Some(a), Some(b)) if a > b => extra.extend(h.next()),
            (Some(_), Some(_)) => {
                w.next();
                h.next();
            }
            (Some(_), None) => missing.extend(w.next()),
            (None, Some(_)) => extra.extend(h.next()),
            (None, None) => break,
        }
    }
    (missing, extra)
}

/// Walks two lists in key order, calling `on` once per key with every item of each list that has
/// it (either may be empty, both may hold several).
fn join<'a, T, K: Ord + Copy>(
    wanted: &'a [T],
    held: &'a [T],
    key: impl Fn(&T) -> K,
    mut on: impl FnMut(K, &[&'a T], &[&'a T]),
) {
    let sorted = |list: &'a [T]| {
        let mut refs: Vec<&'a T> = list.iter().collect();
        // Stable, so repeated keys keep their document order.
        refs.sort_by_key(|r| key(r));
        refs
    };
    let (w, h) = (sorted(wanted), sorted(held));
    let (mut i, mut j) = (0, 0);
    loop {
        let k = match (w.get(i), h.get(j)) {
            (Some(a), Some(b)) => key(a).min(key(b)),
            (Some(a), None) => key(a),
            (None, Some(b)) => key(b),
            (None, None) => break,
        };
        let i_end = i + w[i..].iter().take_while(|r| key(r) == k).count();
        let j_end = j + h[j..].iter().take_while(|r| key(r) == k).count();
        on(k, &w[i..i_end], &h[j..j_end]);
        (i, j) = (i_end, j_end);
    }
}

/// Reports the items of two lists matched by key: missing, extra, listed more than once, or
/// differing in content as `compare` tells.
fn matched<T: PartialEq, K: Ord + Copy + fmt::Display>(
    out: &mut Collector,
    label: impl fmt::Display,
    wanted: &[T],
    held: &[T],
    key: impl Fn(&T) -> K,
    compare: impl Fn(&T, &T, &mut Fields),
) {
    join(wanted, held, key, |k, w, h| match (w, h) {
        ([], _) => out.add(|| format!("{label} {k} is extra")),
        (_, []) => out.add(|| format!("{label} {k} is missing")),
        ([w], [h]) => {
            if w == h {
                return;
            }
            let mut fields = Fields::new(out.describing());
            compare(w, h, &mut fields);
            if fields.differs {
                out.add(|| format!("{label} {k} differs: {}", fields.text()));
            }
        }
        _ => {
            if w.len() != h.len() || w.iter().zip(h).any(|(a, b)| a != b) {
                out.add(|| {
                    format!(
                        "{label} {k} is listed {} in the wanted config and {} in the held one",
                        times(w.len()),
                        times(h.len())
                    )
                });
            }
        }
    });
}

fn public_side(out: &mut Collector, wanted: &PublicSide, held: &PublicSide) {
    out.value(
        "public.interface",
        Text(&wanted.interface),
        Text(&held.interface),
    );
    matched(
        out,
        "public address",
        &wanted.addresses,
        &held.addresses,
        |a| a.ip,
        |w, h, f| {
            f.value("prefix_len", w.prefix_len, h.prefix_len);
            f.value("source_nat", w.source_nat, h.source_nat);
            f.value("static_nat", Opt(w.static_nat), Opt(h.static_nat));
        },
    );
    out.value("public.gateway", Opt(wanted.gateway), Opt(held.gateway));
}

fn guest_side(out: &mut Collector, wanted: &GuestSide, held: &GuestSide) {
    out.value(
        "guest.interface",
        Text(&wanted.interface),
        Text(&held.interface),
    );
    out.value("guest.cidr", Text(&wanted.cidr), Text(&held.cidr));
    out.value("guest.gateway", wanted.gateway, held.gateway);
}

fn firewall_rule(w: &WireFirewallRule, h: &WireFirewallRule, f: &mut Fields) {
    f.value("public_ip", w.public_ip, h.public_ip);
    f.value("protocol", Text(&w.protocol), Text(&h.protocol));
    f.value("ports", Opt(w.ports.map(Ports)), Opt(h.ports.map(Ports)));
    f.value("icmp", Opt(w.icmp.map(Icmp)), Opt(h.icmp.map(Icmp)));
    f.set(
        "source_cidrs",
        texts(&w.source_cidrs),
        texts(&h.source_cidrs),
    );
}

fn egress_rule(w: &WireEgressRule, h: &WireEgressRule, f: &mut Fields) {
    f.value("protocol", Text(&w.protocol), Text(&h.protocol));
    f.value("ports", Opt(w.ports.map(Ports)), Opt(h.ports.map(Ports)));
    f.value("icmp", Opt(w.icmp.map(Icmp)), Opt(h.icmp.map(Icmp)));
    f.set(
        "source_cidrs",
        texts(&w.source_cidrs),
        texts(&h.source_cidrs),
    );
    f.set(
        "destination_cidrs",
        texts(&w.destination_cidrs),
        texts(&h.destination_cidrs),
    );
}

fn port_forward(w: &WirePortForward, h: &WirePortForward, f: &mut Fields) {
    f.value("public_ip", w.public_ip, h.public_ip);
    f.value("protocol", Text(&w.protocol), Text(&h.protocol));
    f.value("public_ports", Ports(w.public_ports), Ports(h.public_ports));
    f.value(
        "private_ports",
        Ports(w.private_ports),
        Ports(h.private_ports),
    );
    f.value("vm_ip", w.vm_ip, h.vm_ip);
    f.set(
        "source_cidrs",
        texts(&w.source_cidrs),
        texts(&h.source_cidrs),
    );
}

fn load_balancer(w: &WireLoadBalancer, h: &WireLoadBalancer, f: &mut Fields) {
    f.value("public_ip", w.public_ip, h.public_ip);
    f.value("public_port", w.public_port, h.public_port);
    f.value("protocol", Text(&w.protocol), Text(&h.protocol));
    f.value("algorithm", Text(&w.algorithm), Text(&h.algorithm));
    f.set("members", members(&w.members), members(&h.members));
    f.set(
        "source_cidrs",
        texts(&w.source_cidrs),
        texts(&h.source_cidrs),
    );
    match (&w.stickiness, &h.stickiness) {
        (Some(ws), Some(hs)) => {
            f.value("stickiness.method", Text(&ws.method), Text(&hs.method));
            // Both maps are sorted by name: one merged walk finds every differing parameter.
            let names: std::collections::BTreeSet<&String> =
                ws.params.keys().chain(hs.params.keys()).collect();
            for name in names {
                let (a, b) = (ws.params.get(name), hs.params.get(name));
                f.value(
                    format_args!("stickiness.params.{name}"),
                    Opt(a.map(|s| Text(s))),
                    Opt(b.map(|s| Text(s))),
                );
            }
        }
        (a, b) => f.value(
            "stickiness",
            Opt(a.as_ref().map(Stick)),
            Opt(b.as_ref().map(Stick)),
        ),
    }
    match (&w.health_check, &h.health_check) {
        (Some(wc), Some(hc)) => {
            f.value(
                "health_check.ping_path",
                Opt(wc.ping_path.as_deref().map(Text)),
                Opt(hc.ping_path.as_deref().map(Text)),
            );
            f.value("health_check.interval_s", wc.interval_s, hc.interval_s);
            f.value(
                "health_check.response_timeout_s",
                wc.response_timeout_s,
                hc.response_timeout_s,
            );
            f.value(
                "health_check.healthy_threshold",
                wc.healthy_threshold,
                hc.healthy_threshold,
            );
            f.value(
                "health_check.unhealthy_threshold",
                wc.unhealthy_threshold,
                hc.unhealthy_threshold,
            );
        }
        (a, b) => f.value(
            "health_check",
            Opt(a.as_ref().map(Check)),
            Opt(b.as_ref().map(Check)),
        ),
    }
}

fn texts(list: &[String]) -> Vec<&str> {
    list.iter().map(String::as_str).collect()
}

fn members(list: &[WireMember]) -> Vec<MemberText> {
    list.iter().map(|m| MemberText(m.vm_ip, m.port)).collect()
}

fn policy(p: EgressPolicy) -> &'static str {
    match p {
        EgressPolicy::Allow => "allow",
        EgressPolicy::Deny => "deny",
    }
}

/// `1 time`, `2 times`.
fn times(n: usize) -> String {
    if n == 1 {
        "1 time".to_string()
    } else {
        format!("{n} times")
    }
}

/// Free text as written, or `""` when empty so that it stays visible.
#[derive(PartialEq)]
struct Text<'a>(&'a str);

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str(self.0)
        }
    }
}

/// An optional field: its value, or `absent`.
#[derive(PartialEq)]
struct Opt<T>(Option<T>);

impl<T: fmt::Display> fmt::Display for Opt<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("absent"),
        }
    }
}

/// `22`, or `8000-8010`.
#[derive(PartialEq)]
struct Ports(WirePorts);

impl fmt::Display for Ports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.start == self.0.end {
            write!(f, "{}", self.0.start)
        } else {
            write!(f, "{}-{}", self.0.start, self.0.end)
        }
    }
}

/// `type 8 code -1`.
#[derive(PartialEq)]
struct Icmp(WireIcmp);

impl fmt::Display for Icmp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "type {} code {}", self.0.icmp_type, self.0.code)
    }
}

/// `10.1.1.11:8080`.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct MemberText(Ipv4Addr, u32);

impl fmt::Display for MemberText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.0, self.1)
    }
}

/// `LbCookie {cookie-name=srv, nocache=true}`.
#[derive(PartialEq)]
struct Stick<'a>(&'a WireStickiness);

impl fmt::Display for Stick<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {{", Text(&self.0.method))?;
        for (i, (k, v)) in self.0.params.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{k}={v}")?;
        }
        f.write_str("}")
    }
}

/// `{ping_path=/health, interval_s=5, …}`.
#[derive(PartialEq)]
struct Check<'a>(&'a WireHealthCheck);

impl fmt::Display for Check<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.0;
        write!(
            f,
            "{{ping_path={}, interval_s={}, response_timeout_s={}, healthy_threshold={}, \
             unhealthy_threshold={}}}",
            Opt(c.ping_path.as_deref().map(Text)),
            c.interval_s,
            c.response_timeout_s,
            c.healthy_threshold,
            c.unhealthy_threshold
        )
    }
}

/// `[a, b, c]`, cut after [`LIST_SHOWN`] entries with a count of the rest.
struct List<'a, T>(&'a [T]);

impl<T: fmt::Display> fmt::Display for List<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, v) in self.0.iter().take(LIST_SHOWN).enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{v}")?;
        }
        if self.0.len() > LIST_SHOWN {
            write!(f, ", … and {} more", self.0.len() - LIST_SHOWN)?;
        }
        f.write_str("]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    const EXAMPLE: &str = include_str!("../../../examples/router.json");

    fn example() -> RouterConfig {
        parse(EXAMPLE.as_bytes()).unwrap()
    }

    fn said(wanted: &RouterConfig, held: &RouterConfig) -> Vec<String> {
        differences(wanted, held)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn firewall(id: u64, port: u32) -> WireFirewallRule {
        WireFirewallRule {
            id,
            public_ip: "203.0.113.10".parse().unwrap(),
            protocol: "tcp".into(),
            ports: Some(WirePorts {
                start: port,
                end: port,
            }),
            icmp: None,
            source_cidrs: vec!["0.0.0.0/0".into()],
        }
    }

    #[test]
    fn same_content_at_another_generation_differs_in_nothing() {
        let wanted = example();
        let mut held = example();
        held.generation = 7;
        held.schema = 2;
        assert!(differences(&wanted, &held).is_empty());
    }

    #[test]
    fn order_of_rules_addresses_cidrs_and_members_does_not_matter() {
        let wanted = example();
        let mut held = example();
        held.firewall_rules.reverse();
        held.egress_rules.reverse();
        held.port_forwards.reverse();
        held.load_balancers.reverse();
        held.public.addresses.reverse();
        held.load_balancers[0].members.reverse();
        held.firewall_rules[0].source_cidrs = vec!["192.0.2.0/24".into(), "0.0.0.0/0".into()];
        let mut wanted2 = wanted.clone();
        let last = wanted2.firewall_rules.len() - 1;
        // The same set, listed in another order and with a repeated entry.
        wanted2.firewall_rules[last].source_cidrs = vec![
            "0.0.0.0/0".into(),
            "192.0.2.0/24".into(),
            "0.0.0.0/0".into(),
        ];
        assert_eq!(said(&wanted2, &held), Vec::<String>::new());
        assert_eq!(
            said(&wanted, &held),
            vec!["firewall rule 4 differs: source_cidrs extra [192.0.2.0/24]"]
        );
    }

    #[test]
    fn missing_extra_and_changed_rules_of_every_kind() {
        let wanted = example();
        let mut held = example();
        // Firewall: 1 gone, 2 changed, 5 added.
        held.firewall_rules.retain(|r| r.id != 1);
        held.firewall_rules[0].ports = Some(WirePorts {
            start: 8000,
            end: 8010,
        });
        held.firewall_rules[0].source_cidrs = vec!["10.0.0.0/8".into()];
        held.firewall_rules.push(firewall(5, 443));
        // Egress: 10 gone, 11 changed, 12 added.
        held.egress_rules.retain(|r| r.id != 10);
        held.egress_rules[0].icmp = Some(WireIcmp {
            icmp_type: 8,
            code: -1,
        });
        held.egress_rules[0].destination_cidrs = vec!["198.51.100.0/24".into()];
        let mut e12 = held.egress_rules[0].clone();
        e12.id = 12;
        held.egress_rules.push(e12);
        // Port forwards: 20 gone, 21 changed, 22 added.
        let mut pf22 = held.port_forwards[0].clone();
        pf22.id = 22;
        held.port_forwards.retain(|r| r.id != 20);
        held.port_forwards[0].public_ports = WirePorts {
            start: 2222,
            end: 2222,
        };
        held.port_forwards[0].vm_ip = "10.1.1.13".parse().unwrap();
        held.port_forwards.push(pf22);
        // Load balancers: 31 changed, 32 wanted only, 33 held only.
        let mut wanted = wanted;
        let mut lb32 = wanted.load_balancers[0].clone();
        lb32.id = 32;
        wanted.load_balancers.push(lb32);
        let mut lb33 = held.load_balancers[0].clone();
        lb33.id = 33;
        let lb = &mut held.load_balancers[0];
        lb.members[1].port = 9090;
        lb.algorithm = "leastconn".into();
        if let Some(c) = lb.health_check.as_mut() {
            c.interval_s = 5;
        }
        lb.stickiness = Some(WireStickiness {
            method: "SourceBased".into(),
            params: [("expire".to_string(), "30m".to_string())].into(),
        });
        held.load_balancers.push(lb33);

        assert_eq!(
            said(&wanted, &held),
            vec![
                "firewall rule 1 is missing",
                "firewall rule 2 differs: ports wanted 80, held 8000-8010; \
                 source_cidrs missing [0.0.0.0/0], extra [10.0.0.0/8]",
                "firewall rule 5 is extra",
                "egress rule 10 is missing",
                "egress rule 11 differs: icmp wanted absent, held type 8 code -1; \
                 destination_cidrs extra [198.51.100.0/24]",
                "egress rule 12 is extra",
                "port forward 20 is missing",
                "port forward 21 differs: public_ports wanted 80, held 2222; \
                 vm_ip wanted 10.1.1.12, held 10.1.1.13",
                "port forward 22 is extra",
                "load balancer 31 differs: algorithm wanted roundrobin, held leastconn; \
                 members missing [10.1.1.12:8080], extra [10.1.1.12:9090]; \
                 stickiness wanted absent, held SourceBased {expire=30m}; \
                 health_check.interval_s wanted 2, held 5",
                "load balancer 32 is missing",
                "load balancer 33 is extra",
            ]
        );
    }

    #[test]
    fn stickiness_and_health_check_name_the_parameter_that_differs() {
        let mut wanted = example();
        wanted.load_balancers[0].stickiness = Some(WireStickiness {
            method: "LbCookie".into(),
            params: [
                ("cookie-name".to_string(), "srv".to_string()),
                ("nocache".to_string(), "true".to_string()),
            ]
            .into(),
        });
        let mut held = wanted.clone();
        if let Some(s) = held.load_balancers[0].stickiness.as_mut() {
            s.params.remove("nocache");
            s.params.insert("cookie-name".into(), "app".into());
        }
        held.load_balancers[0].health_check = None;
        assert_eq!(
            said(&wanted, &held),
            vec![
                "load balancer 31 differs: stickiness.params.cookie-name wanted srv, held app; \
                 stickiness.params.nocache wanted true, held absent; \
                 health_check wanted {ping_path=absent, interval_s=2, response_timeout_s=2, \
                 healthy_threshold=2, unhealthy_threshold=1}, held absent"
            ]
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
    fn dhcp_differences_in_plain_words() {
        let mut wanted = example();
        let mut held = example();
        let service = DhcpService {
            dns_servers: vec!["192.0.2.53".parse().unwrap()],
            domain: Some("guests.example".into()),
            leases: vec![
                lease("02:00:00:00:00:01", "10.1.1.11", "web1"),
                lease("02:00:00:00:00:02", "10.1.1.12", "web2"),
                lease("02:00:00:00:00:03", "10.1.1.13", "web3"),
            ],
        };
        wanted.dhcp = Some(service.clone());
        assert_eq!(
            said(&wanted, &held),
            vec!["dhcp is missing (DHCP and DNS not served)"]
        );
        assert_eq!(
            said(&held, &wanted),
            vec!["dhcp is extra (DHCP and DNS served)"]
        );
        let mut other = service.clone();
        other.leases.reverse();
        held.dhcp = Some(other.clone());
        assert!(
            said(&wanted, &held).is_empty(),
            "lease order does not matter"
        );
        other.dns_servers = vec![];
        other.domain = None;
        other.leases.retain(|l| l.hostname != "web1");
        other.leases[0].hostname = "db3".into();
        other
            .leases
            .push(lease("02:00:00:00:00:04", "10.1.1.14", "web4"));
        held.dhcp = Some(other);
        assert_eq!(
            said(&wanted, &held),
            vec![
                "dhcp.dns_servers wanted [192.0.2.53], held []",
                "dhcp.domain wanted guests.example, held absent",
                "dhcp lease 02:00:00:00:00:01 is missing",
                "dhcp lease 02:00:00:00:00:03 differs: hostname wanted web3, held db3",
                "dhcp lease 02:00:00:00:00:04 is extra",
            ]
        );
    }

    #[test]
    fn public_guest_and_egress_default_differences() {
        let wanted = example();
        let mut held = example();
        held.public.interface = "eth1".into();
        held.public.addresses[0].prefix_len = 25;
        held.public.addresses[0].source_nat = false;
        held.public.addresses.remove(1);
        held.public.addresses.push(PublicAddress {
            ip: "203.0.113.12".parse().unwrap(),
            prefix_len: 24,
            source_nat: true,
            static_nat: None,
        });
        held.public.gateway = None;
        held.guest.interface = String::new();
        held.guest.cidr = "10.1.2.0/24".into();
        held.guest.gateway = "10.1.2.1".parse().unwrap();
        held.egress_default = EgressPolicy::Allow;
        assert_eq!(
            said(&wanted, &held),
            vec![
                "public.interface wanted pub0, held eth1",
                "public address 203.0.113.10 differs: prefix_len wanted 24, held 25; \
                 source_nat wanted true, held false",
                "public address 203.0.113.11 is missing",
                "public address 203.0.113.12 is extra",
                "public.gateway wanted 203.0.113.1, held absent",
                "guest.interface wanted guest0, held \"\"",
                "guest.cidr wanted 10.1.1.0/24, held 10.1.2.0/24",
                "guest.gateway wanted 10.1.1.1, held 10.1.2.1",
                "egress_default wanted deny, held allow",
            ]
        );
    }

    #[test]
    fn a_rule_listed_twice_is_reported_once() {
        let wanted = example();
        let mut held = example();
        let copy = held.firewall_rules[2].clone();
        held.firewall_rules.push(copy);
        assert_eq!(
            said(&wanted, &held),
            vec![
                "firewall rule 3 is listed 1 time in the wanted config and 2 times in the held one"
            ]
        );
        assert!(differences(&held, &held).is_empty());
    }

    #[test]
    fn long_lists_are_cut_in_descriptions() {
        let mut wanted = example();
        wanted.firewall_rules[0].source_cidrs = (0..25).map(|i| format!("10.{i}.0.0/16")).collect();
        let mut held = wanted.clone();
        held.firewall_rules[0].source_cidrs.clear();
        let d = said(&wanted, &held);
        assert_eq!(d.len(), 1);
        assert!(
            d[0].ends_with("10.16.0.0/16, 10.17.0.0/16, … and 15 more]"),
            "{d:?}"
        );
    }

    #[test]
    fn more_than_fifty_differences_end_with_a_count() {
        let mut wanted = example();
        wanted.firewall_rules = (100..160).map(|id| firewall(id, 22)).collect();
        let mut held = example();
        held.firewall_rules.clear();
        held.egress_default = EgressPolicy::Allow;
        let d = said(&wanted, &held);
        assert_eq!(d.len(), MAX_DIFFERENCES + 1);
        assert_eq!(d[0], "egress_default wanted deny, held allow");
        assert_eq!(d[1], "firewall rule 100 is missing");
        assert_eq!(d[49], "firewall rule 148 is missing");
        // 61 in all: egress default, 60 firewall rules.
        assert_eq!(d[50], "… and 11 more");

        // Exactly fifty: no count.
        wanted.firewall_rules.truncate(49);
        assert_eq!(said(&wanted, &held).len(), MAX_DIFFERENCES);
    }

    #[test]
    fn a_hundred_thousand_rules_in_any_order() {
        let mut wanted = example();
        wanted.firewall_rules = (0..100_000u64).map(|id| firewall(id, 22)).collect();
        let mut held = wanted.clone();
        held.firewall_rules.reverse();
        assert!(differences(&wanted, &held).is_empty());
        for r in &mut held.firewall_rules {
            if r.id % 2 == 0 {
                r.source_cidrs = vec!["10.0.0.0/8".into()];
            }
        }
        held.firewall_rules.retain(|r| r.id != 1);
        let d = said(&wanted, &held);
        assert_eq!(d.len(), MAX_DIFFERENCES + 1);
        assert_eq!(
            d[0],
            "firewall rule 0 differs: source_cidrs missing [0.0.0.0/0], extra [10.0.0.0/8]"
        );
        assert_eq!(d[1], "firewall rule 1 is missing");
        assert_eq!(
            d[2],
            "firewall rule 2 differs: source_cidrs missing [0.0.0.0/0], extra [10.0.0.0/8]"
        );
        assert_eq!(
            d[50],
            format!("… and {} more", 50_000 + 1 - MAX_DIFFERENCES)
        );
    }
}
