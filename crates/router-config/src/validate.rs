//! Wire document → [`ValidConfig`], collecting every problem.

use ipnet::Ipv4Net;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

use crate::incremental::Neighbours;
use crate::valid::*;
use crate::wire::*;

/// One thing wrong with a config, naming the rule (when there is one) and the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The rule the problem is in, if any.
    pub rule: Option<(RuleKind, u64)>,
    /// The field, as a path inside the rule or the document, e.g. `ports.end`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.rule {
            Some((kind, id)) => write!(f, "{kind} {id}: field `{}`: {}", self.field, self.message),
            None => write!(f, "field `{}`: {}", self.field, self.message),
        }
    }
}

/// Every problem found in one config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblems(pub Vec<ConfigProblem>);

impl fmt::Display for ConfigProblems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigProblems {}

pub(crate) struct Problems(pub(crate) Vec<ConfigProblem>);

impl Problems {
    fn doc(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigProblem {
            rule: None,
            field: field.into(),
            message: message.into(),
        });
    }
    fn rule(
        &mut self,
        kind: RuleKind,
        id: u64,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.0.push(ConfigProblem {
            rule: Some((kind, id)),
            field: field.into(),
            message: message.into(),
        });
    }
}

/// The router's public IPs, as a rule's `public_ip` is checked against them.
pub(crate) trait PublicIps {
    /// Whether `ip` is one of them.
    fn holds(&self, ip: Ipv4Addr) -> bool;
}

impl PublicIps for BTreeSet<Ipv4Addr> {
    fn holds(&self, ip: Ipv4Addr) -> bool {
        self.contains(&ip)
    }
}

/// A validated config's `public_addresses`, sorted by address.
impl PublicIps for [(Ipv4Addr, u8)] {
    fn holds(&self, ip: Ipv4Addr) -> bool {
        self.binary_search_by_key(&ip, |(a, _)| *a).is_ok()
    }
}

/// Validates a wire document.
///
/// # Errors
/// Every problem found, each naming the rule and field; nothing is partially accepted.
pub fn validate(raw: RouterConfig) -> Result<ValidConfig, ConfigProblems> {
    let mut p = Problems(Vec::new());
    if raw.schema != SCHEMA_VERSION {
        p.doc(
            "schema",
            format!(
                "schema {} is not supported (expected {SCHEMA_VERSION})",
                raw.schema
            ),
        );
    }
    check_ifname(&mut p, "public.interface", &raw.public.interface);
    check_ifname(&mut p, "guest.interface", &raw.guest.interface);
    if raw.public.interface == raw.guest.interface {
        p.doc(
            "guest.interface",
            "the guest and public interfaces must differ",
        );
    }

    // Public addresses.
    let mut addresses = Vec::new();
    let mut seen_ips = BTreeSet::new();
    let mut snat = Vec::new();
    for (i, a) in raw.public.addresses.iter().enumerate() {
        if a.prefix_len == 0 || a.prefix_len > 32 {
            p.doc(
                format!("public.addresses[{i}].prefix_len"),
                format!("{} is not a prefix length (1-32)", a.prefix_len),
            );
        }
        if !seen_ips.insert(a.ip) {
            p.doc(
                format!("public.addresses[{i}].ip"),
                format!("{} is listed twice", a.ip),
            );
        }
        if a.source_nat {
            snat.push(a.ip);
            if a.static_nat.is_some() {
                p.doc(
                    format!("public.addresses[{i}].static_nat"),
                    format!(
                        "{} is the source-NAT IP: it cannot be 1:1 NAT to a VM",
                        a.ip
                    ),
                );
            }
        }
        addresses.push((a.ip, a.prefix_len));
    }
    addresses.sort();
    if raw.public.addresses.is_empty() {
        p.doc("public.addresses", "at least one public IP is required");
    } else if snat.len() != 1 {
        p.doc(
            "public.addresses",
            format!(
                "exactly one address must be the source-NAT IP, found {}",
                snat.len()
            ),
        );
    }

    // Guest network.
    let guest_cidr = match parse_cidr(&raw.guest.cidr) {
        Ok(c) => Some(c),
        Err(e) => {
            p.doc("guest.cidr", e);
            None
        }
    };
    if let Some(g) = guest_cidr {
        if !is_host_in(g, raw.guest.gateway) {
            p.doc(
                "guest.gateway",
                format!("{} is not a host address of {g}", raw.guest.gateway),
            );
        }
        for ip in &seen_ips {
            if g.contains(ip) {
                p.doc(
                    "public.addresses",
                    format!("public IP {ip} lies inside the guest network {g}"),
                );
            }
        }
    }
    let static_nats =
        validate_static_nats(&mut p, &raw.public.addresses, guest_cidr, raw.guest.gateway);

    // Rule ids are unique across kinds.
    let mut ids: BTreeMap<u64, RuleKind> = BTreeMap::new();
    let mut claim = |p: &mut Problems, kind: RuleKind, id: u64| {
        if id == 0 {
            p.rule(kind, id, "id", "rule ids start at 1");
        }
        if let Some(prev) = ids.insert(id, kind) {
            p.rule(kind, id, "id", format!("id {id} is also used by a {prev}"));
        }
    };

    let mut ingress = Vec::new();
    for r in &raw.firewall_rules {
        claim(&mut p, RuleKind::Firewall, r.id);
        if let Some(v) = validate_ingress(&mut p, r, &seen_ips) {
            ingress.push(v);
        }
    }
    let mut egress = Vec::new();
    for r in &raw.egress_rules {
        claim(&mut p, RuleKind::Egress, r.id);
        if let Some(v) = validate_egress(&mut p, r, guest_cidr) {
            egress.push(v);
        }
    }
    let mut forwards = Vec::new();
    for r in &raw.port_forwards {
        claim(&mut p, RuleKind::PortForward, r.id);
        if let Some(v) = validate_forward(&mut p, r, &seen_ips, guest_cidr, raw.guest.gateway) {
            forwards.push(v);
        }
    }
    let mut lbs = Vec::new();
    for r in &raw.load_balancers {
        claim(&mut p, RuleKind::LoadBalancer, r.id);
        if let Some(v) = validate_lb(&mut p, r, &seen_ips, guest_cidr, raw.guest.gateway) {
            lbs.push(v);
        }
    }
    ingress.sort_by_key(|r| r.id);
    egress.sort_by_key(|r| r.id);
    forwards.sort_by_key(|r| r.id);
    lbs.sort_by_key(|r| r.id);
    check_forward_conflicts(&mut p, &forwards);
    check_lb_conflicts(&mut p, &lbs, &forwards);
    check_static_nat_conflicts(&mut p, &static_nats, &forwards, &lbs);
    let dhcp = raw
        .dhcp
        .as_ref()
        .and_then(|d| validate_dhcp(&mut p, d, guest_cidr, raw.guest.gateway));

    let (Some(guest_cidr), [source_nat_ip], true) = (guest_cidr, snat.as_slice(), p.0.is_empty())
    else {
        return Err(ConfigProblems(p.0));
    };

    let mut document = raw;
    document.firewall_rules.sort_by_key(|r| r.id);
    document.egress_rules.sort_by_key(|r| r.id);
    document.port_forwards.sort_by_key(|r| r.id);
    document.load_balancers.sort_by_key(|r| r.id);
    for lb in &mut document.load_balancers {
        lb.members.sort();
    }
    document.public.addresses.sort_by_key(|a| a.ip);
    if let (Some(doc), Some(valid)) = (document.dhcp.as_mut(), dhcp.as_ref()) {
        doc.leases.clone_from(&valid.leases);
    }
    let neighbours = Neighbours::of(&forwards, &lbs);
    Ok(ValidConfig {
        neighbours,
        public_interface: document.public.interface.clone(),
        public_addresses: addresses,
        source_nat_ip: *source_nat_ip,
        static_nats,
        public_gateway: document.public.gateway,
        guest_interface: document.guest.interface.clone(),
        guest_cidr,
        guest_gateway: document.guest.gateway,
        egress_default: document.egress_default,
        ingress,
        egress,
        port_forwards: forwards,
        load_balancers: lbs,
        dhcp,
        document,
    })
}

/// The static NATs of the public addresses, sorted by public IP: each to a VM address of the
/// guest network, no two to the same one.
fn validate_static_nats(
    p: &mut Problems,
    addresses: &[PublicAddress],
    guest: Option<Ipv4Net>,
    guest_gateway: Ipv4Addr,
) -> Vec<StaticNat> {
    let mut out = Vec::new();
    let mut by_vm: BTreeMap<Ipv4Addr, Ipv4Addr> = BTreeMap::new();
    for (i, a) in addresses.iter().enumerate() {
        let Some(vm_ip) = a.static_nat else { continue };
        let field = format!("public.addresses[{i}].static_nat");
        if let Some(g) = guest {
            if !is_host_in(g, vm_ip) || vm_ip == guest_gateway {
                p.doc(
                    &field,
                    format!("{vm_ip} is not a VM address in the guest network {g}"),
                );
                continue;
            }
        }
        if let Some(other) = by_vm.insert(vm_ip, a.ip) {
            p.doc(
                &field,
                format!(
                    "{vm_ip} is already the static NAT of {other}; a VM address has at most one"
                ),
            );
            continue;
        }
        out.push(StaticNat {
            public_ip: a.ip,
            vm_ip,
        });
    }
    out.sort();
    out
}

/// Refuses forwards and balancers on a static-NAT IP: all of its traffic goes to one VM.
pub(crate) fn check_static_nat_conflicts(
    p: &mut Problems,
    nats: &[StaticNat],
    forwards: &[PortForward],
    lbs: &[LoadBalancer],
) {
    if nats.is_empty() {
        return;
    }
    let nat_of = |ip: Ipv4Addr| {
        nats.binary_search_by_key(&ip, |s| s.public_ip)
            .ok()
            .map(|i| nats[i])
    };
    for f in forwards {
        if let Some(n) = nat_of(f.public_ip) {
            p.rule(
                RuleKind::PortForward,
                f.id.0,
                "public_ip",
                format!(
                    "{} is 1:1 NAT to {}: it carries no port forward",
                    n.public_ip, n.vm_ip
                ),
            );
        }
    }
    for l in lbs {
        if let Some(n) = nat_of(l.public_ip) {
            p.rule(
                RuleKind::LoadBalancer,
                l.id.0,
                "public_ip",
                format!(
                    "{} is 1:1 NAT to {}: it carries no load balancer",
                    n.public_ip, n.vm_ip
                ),
            );
        }
    }
}

/// Whether `s` is a DNS label as a host name may be: 1-63 of a-z, A-Z, 0-9 and `-`, neither
/// first nor last a `-`.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Whether `s` is a DNS name: labels ([`is_dns_label`]) joined by `.`, at most 253 characters,
/// without a trailing dot.
pub fn is_dns_name(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// Whether `ip` can be a DNS server the router forwards to: unicast, and neither this network's
/// "any" address nor loopback (which, inside the router, would be its own DNS).
fn is_unicast_server(ip: Ipv4Addr) -> bool {
    !(ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip.is_loopback())
        && ip.octets()[0] < 240
}

fn validate_dhcp(
    p: &mut Problems,
    d: &DhcpService,
    guest: Option<Ipv4Net>,
    guest_gateway: Ipv4Addr,
) -> Option<Dhcp> {
    let before = p.0.len();
    let mut servers = BTreeSet::new();
    for (i, ip) in d.dns_servers.iter().enumerate() {
        let field = format!("dhcp.dns_servers[{i}]");
        if !is_unicast_server(*ip) {
            p.doc(
                field,
                format!("{ip} is not a unicast address a DNS server can have"),
            );
        } else if !servers.insert(*ip) {
            p.doc(field, format!("{ip} is listed twice"));
        }
    }
    if let Some(dom) = &d.domain {
        if !is_dns_name(dom) {
            p.doc(
                "dhcp.domain",
                format!(
                    "`{dom}` is not a DNS name (labels of 1-63 of a-z 0-9 -, not starting or ending with -, joined by dots)"
                ),
            );
        }
    }
    let mut macs = BTreeMap::new();
    let mut ips = BTreeMap::new();
    let mut names = BTreeMap::new();
    for (i, l) in d.leases.iter().enumerate() {
        if !l.mac.is_unicast() {
            p.doc(
                format!("dhcp.leases[{i}].mac"),
                format!("{} is not a unicast MAC address", l.mac),
            );
        } else if let Some(first) = macs.insert(l.mac, i) {
            p.doc(
                format!("dhcp.leases[{i}].mac"),
                format!("{} already has lease {first}", l.mac),
            );
        }
        if let Some(g) = guest {
            if !is_host_in(g, l.ip) || l.ip == guest_gateway {
                p.doc(
                    format!("dhcp.leases[{i}].ip"),
                    format!(
                        "{} is not a VM address in the guest network {g} (the router has {guest_gateway})",
                        l.ip
                    ),
                );
            }
        }
        if let Some(first) = ips.insert(l.ip, i) {
            p.doc(
                format!("dhcp.leases[{i}].ip"),
                format!("{} is already leased by lease {first}", l.ip),
            );
        }
        if !is_dns_label(&l.hostname) {
            p.doc(
                format!("dhcp.leases[{i}].hostname"),
                format!(
                    "`{}` is not a host name (1-63 of a-z 0-9 -, not starting or ending with -)",
                    l.hostname
                ),
            );
        } else if let Some(first) = names.insert(l.hostname.to_ascii_lowercase(), i) {
            p.doc(
                format!("dhcp.leases[{i}].hostname"),
                format!("`{}` is already the name of lease {first}", l.hostname),
            );
        }
    }
    let mut leases = d.leases.clone();
    leases.sort();
    (p.0.len() == before).then_some(Dhcp {
        dns_servers: d.dns_servers.clone(),
        domain: d.domain.clone(),
        leases,
    })
}

fn check_ifname(p: &mut Problems, field: &str, name: &str) {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !ok {
        p.doc(
            field,
            format!("`{name}` is not an interface name (1-15 of a-z A-Z 0-9 - _ .)"),
        );
    }
}

/// Parses a CIDR strictly: the address must be the network address.
fn parse_cidr(s: &str) -> Result<Ipv4Net, String> {
    let net: Ipv4Net = s
        .parse()
        .map_err(|_| format!("`{s}` is not an IPv4 CIDR"))?;
    if net.trunc() != net {
        return Err(format!(
            "`{s}` has host bits set (the network is {})",
            net.trunc()
        ));
    }
    Ok(net)
}

/// Whether `ip` is a host address of `net`: inside it, and neither its network nor its broadcast
/// address when the prefix is shorter than /31 (a /31 or /32 has no such addresses to avoid).
/// ipnet has `contains`, `network` and `broadcast`, but no test for this.
pub fn is_host_in(net: Ipv4Net, ip: Ipv4Addr) -> bool {
    net.contains(&ip) && (net.prefix_len() >= 31 || (ip != net.network() && ip != net.broadcast()))
}

fn parse_cidrs(
    p: &mut Problems,
    kind: RuleKind,
    id: u64,
    field: &str,
    list: &[String],
) -> Option<Vec<Ipv4Net>> {
    let mut out = Vec::new();
    let mut ok = true;
    for (i, s) in list.iter().enumerate() {
        match parse_cidr(s) {
            Ok(n) => out.push(n),
            Err(e) => {
                p.rule(kind, id, format!("{field}[{i}]"), e);
                ok = false;
            }
        }
    }
    out.sort();
    out.dedup();
    ok.then_some(out)
}

fn port_range(
    p: &mut Problems,
    kind: RuleKind,
    id: u64,
    field: &str,
    w: WirePorts,
) -> Option<PortRange> {
    let mut ok = true;
    for (name, v) in [("start", w.start), ("end", w.end)] {
        if !(1..=65535).contains(&v) {
            p.rule(
                kind,
                id,
                format!("{field}.{name}"),
                format!("{v} is not a port (1-65535)"),
            );
            ok = false;
        }
    }
    if ok && w.start > w.end {
        p.rule(
            kind,
            id,
            format!("{field}.start"),
            format!("start port {} is bigger than end port {}", w.start, w.end),
        );
        ok = false;
    }
    // Both values are in 1..=65535 here, so the conversions cannot fail.
    let start = u16::try_from(w.start).ok()?;
    let end = u16::try_from(w.end).ok()?;
    ok.then_some(PortRange { start, end })
}

fn icmp_match(p: &mut Problems, kind: RuleKind, id: u64, w: Option<WireIcmp>) -> Option<IcmpMatch> {
    let Some(w) = w else {
        return Some(IcmpMatch {
            icmp_type: None,
            code: None,
        });
    };
    let mut conv = |field: &str, v: i32| -> Result<Option<u8>, ()> {
        match v {
            -1 => Ok(None),
            0..=255 => Ok(u8::try_from(v).ok()),
            _ => {
                p.rule(
                    kind,
                    id,
                    field,
                    format!("{v} is not an ICMP value (0-255, or -1 for any)"),
                );
                Err(())
            }
        }
    };
    let t = conv("icmp.type", w.icmp_type);
    let c = conv("icmp.code", w.code);
    let (Ok(icmp_type), Ok(code)) = (t, c) else {
        return None;
    };
    if icmp_type.is_none() && code.is_some() {
        p.rule(kind, id, "icmp.code", "a code needs a type (type is -1)");
        return None;
    }
    Some(IcmpMatch { icmp_type, code })
}

fn l4(
    p: &mut Problems,
    kind: RuleKind,
    id: u64,
    proto: &str,
    allowed: &str,
) -> Option<Option<L4Proto>> {
    match proto {
        "tcp" => Some(Some(L4Proto::Tcp)),
        "udp" => Some(Some(L4Proto::Udp)),
        "icmp" if allowed.contains("icmp") => Some(None),
        "all" if allowed.contains("all") => Some(None),
        other => {
            p.rule(
                kind,
                id,
                "protocol",
                format!("`{other}` is not one of {allowed}"),
            );
            None
        }
    }
}

pub(crate) fn validate_ingress(
    p: &mut Problems,
    r: &WireFirewallRule,
    ips: &(impl PublicIps + ?Sized),
) -> Option<IngressRule> {
    let k = RuleKind::Firewall;
    let mut ok = true;
    if !ips.holds(r.public_ip) {
        p.rule(
            k,
            r.id,
            "public_ip",
            format!("{} is not one of the router's public IPs", r.public_ip),
        );
        ok = false;
    }
    let proto = l4(p, k, r.id, &r.protocol, "tcp, udp, icmp");
    let matcher = match proto {
        None => None,
        Some(Some(proto)) => {
            if r.icmp.is_some() {
                p.rule(
                    k,
                    r.id,
                    "icmp",
                    format!("an icmp match does not go with protocol {}", proto.name()),
                );
            }
            match r.ports {
                None => Some(IngressMatch::Ports {
                    proto,
                    ports: PortRange::ALL,
                }),
                Some(w) => port_range(p, k, r.id, "ports", w)
                    .map(|ports| IngressMatch::Ports { proto, ports }),
            }
        }
        Some(None) => {
            if r.ports.is_some() {
                p.rule(k, r.id, "ports", "ports do not go with protocol icmp");
            }
            icmp_match(p, k, r.id, r.icmp).map(IngressMatch::Icmp)
        }
    };
    if r.source_cidrs.is_empty() {
        p.rule(
            k,
            r.id,
            "source_cidrs",
            "at least one source CIDR is required (0.0.0.0/0 for everyone)",
        );
        ok = false;
    }
    let sources = parse_cidrs(p, k, r.id, "source_cidrs", &r.source_cidrs);
    let (true, Some(matcher), Some(sources)) = (ok, matcher, sources) else {
        return None;
    };
    Some(IngressRule {
        id: RuleId(r.id),
        public_ip: r.public_ip,
        matcher,
        sources,
    })
}

pub(crate) fn validate_egress(
    p: &mut Problems,
    r: &WireEgressRule,
    guest: Option<Ipv4Net>,
) -> Option<EgressRule> {
    let k = RuleKind::Egress;
    let proto = l4(p, k, r.id, &r.protocol, "tcp, udp, icmp, all");
    let matcher = match (proto, r.protocol.as_str()) {
        (None, _) => None,
        (Some(Some(proto)), _) => {
            if r.icmp.is_some() {
                p.rule(
                    k,
                    r.id,
                    "icmp",
                    format!("an icmp match does not go with protocol {}", proto.name()),
                );
            }
            match r.ports {
                None => Some(EgressMatch::Ports {
                    proto,
                    ports: PortRange::ALL,
                }),
                Some(w) => port_range(p, k, r.id, "ports", w)
                    .map(|ports| EgressMatch::Ports { proto, ports }),
            }
        }
        (Some(None), "icmp") => {
            if r.ports.is_some() {
                p.rule(k, r.id, "ports", "ports do not go with protocol icmp");
            }
            icmp_match(p, k, r.id, r.icmp).map(EgressMatch::Icmp)
        }
        (Some(None), _) => {
            if r.ports.is_some() || r.icmp.is_some() {
                p.rule(
                    k,
                    r.id,
                    "protocol",
                    "protocol all takes neither ports nor an icmp match",
                );
                None
            } else {
                Some(EgressMatch::All)
            }
        }
    };
    let sources = parse_cidrs(p, k, r.id, "source_cidrs", &r.source_cidrs);
    let destinations = parse_cidrs(p, k, r.id, "destination_cidrs", &r.destination_cidrs);
    let (Some(matcher), Some(mut sources), Some(mut destinations), Some(guest)) =
        (matcher, sources, destinations, guest)
    else {
        return None;
    };
    let mut ok = true;
    for (i, s) in r.source_cidrs.iter().enumerate() {
        if let Ok(net) = parse_cidr(s) {
            if !guest.contains(&net) {
                p.rule(
                    k,
                    r.id,
                    format!("source_cidrs[{i}]"),
                    format!("{net} is not inside the guest network {guest}"),
                );
                ok = false;
            }
        }
    }
    if sources.is_empty() {
        sources.push(guest);
    }
    if destinations.is_empty() {
        destinations.push(Ipv4Net::default());
    }
    ok.then_some(EgressRule {
        id: RuleId(r.id),
        matcher,
        sources,
        destinations,
    })
}

pub(crate) fn validate_forward(
    p: &mut Problems,
    r: &WirePortForward,
    ips: &(impl PublicIps + ?Sized),
    guest: Option<Ipv4Net>,
    guest_gateway: Ipv4Addr,
) -> Option<PortForward> {
    let k = RuleKind::PortForward;
    let mut ok = true;
    if !ips.holds(r.public_ip) {
        p.rule(
            k,
            r.id,
            "public_ip",
            format!("{} is not one of the router's public IPs", r.public_ip),
        );
        ok = false;
    }
    let proto = match l4(p, k, r.id, &r.protocol, "tcp, udp") {
        Some(Some(proto)) => Some(proto),
        _ => None,
    };
    let public_ports = port_range(p, k, r.id, "public_ports", r.public_ports);
    let private_ports = port_range(p, k, r.id, "private_ports", r.private_ports);
    if let (Some(a), Some(b)) = (public_ports, private_ports) {
        let fits = (a.is_single() && b.is_single()) || a == b;
        if !fits {
            p.rule(
                k,
                r.id,
                "private_ports",
                format!("private ports {b} must be a single port for a single public port, or equal the public range {a}"),
            );
            ok = false;
        }
    }
    if let Some(g) = guest {
        if !is_host_in(g, r.vm_ip) || r.vm_ip == guest_gateway {
            p.rule(
                k,
                r.id,
                "vm_ip",
                format!("{} is not a VM address in the guest network {g}", r.vm_ip),
            );
            ok = false;
        }
    }
    if r.source_cidrs.is_empty() {
        p.rule(
            k,
            r.id,
            "source_cidrs",
            "at least one source CIDR is required (0.0.0.0/0 for everyone)",
        );
        ok = false;
    }
    let sources = parse_cidrs(p, k, r.id, "source_cidrs", &r.source_cidrs);
    let (true, Some(proto), Some(public_ports), Some(private_ports), Some(sources)) =
        (ok, proto, public_ports, private_ports, sources)
    else {
        return None;
    };
    Some(PortForward {
        id: RuleId(r.id),
        public_ip: r.public_ip,
        proto,
        public_ports,
        private_ports,
        vm_ip: r.vm_ip,
        sources,
    })
}

/// Whether two CIDR lists share an address (real address math).
pub(crate) fn cidrs_intersect(a: &[Ipv4Net], b: &[Ipv4Net]) -> bool {
    a.iter()
        .any(|x| b.iter().any(|y| x.contains(y) || y.contains(x)))
}

/// Two forwards conflict when public IP and protocol match, public ports intersect and source
/// sets intersect: a packet could then be sent to two places.
pub(crate) fn check_forward_conflicts(p: &mut Problems, forwards: &[PortForward]) {
    let mut groups: BTreeMap<(Ipv4Addr, L4Proto), Vec<&PortForward>> = BTreeMap::new();
    for f in forwards {
        groups.entry((f.public_ip, f.proto)).or_default().push(f);
    }
    for group in groups.values() {
        let mut by_start: Vec<&PortForward> = group.clone();
        by_start.sort_by_key(|f| (f.public_ports.start, f.id));
        // Sweep over port ranges: only ranges that are still open can intersect.
        let mut open: Vec<&PortForward> = Vec::new();
        for f in by_start {
            open.retain(|o| o.public_ports.end >= f.public_ports.start);
            for o in &open {
                if cidrs_intersect(&o.sources, &f.sources) {
                    let (first, second) = if o.id < f.id { (*o, f) } else { (f, *o) };
                    p.rule(
                        RuleKind::PortForward,
                        second.id.0,
                        "public_ports",
                        format!(
                            "{} {} port {} from overlapping sources is already forwarded by port forward {}",
                            second.public_ip,
                            second.proto.name(),
                            second.public_ports,
                            first.id
                        ),
                    );
                }
            }
            open.push(f);
        }
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// The longest timer haproxy accepts, in milliseconds (about 24.8 days).
const MAX_TIMER_MS: u64 = 2_147_483_647;

/// A haproxy time (`digits` then `d`, `h`, `m`, `s` or `ms`) in milliseconds, if it is one.
fn timer_ms(s: &str) -> Option<u64> {
    let (digits, unit) = match s.strip_suffix("ms") {
        Some(d) => (d, 1),
        None => {
            let unit = match s.chars().last()? {
                'd' => 86_400_000,
                'h' => 3_600_000,
                'm' => 60_000,
                's' => 1_000,
                _ => return None,
            };
            (&s[..s.len() - 1], unit)
        }
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(unit)
}

/// Checks a haproxy timer: syntax and haproxy's own limit.
fn check_timer(p: &mut Problems, id: u64, field: &str, value: &str) {
    match timer_ms(value) {
        Some(ms) if ms <= MAX_TIMER_MS => {}
        Some(_) => p.rule(
            RuleKind::LoadBalancer,
            id,
            field,
            format!("`{value}` is longer than haproxy's longest timer (24 days)"),
        ),
        None => p.rule(
            RuleKind::LoadBalancer,
            id,
            field,
            format!("`{value}` is not a time (digits, then d, h, m, s or ms)"),
        ),
    }
}

/// A stick-table size (`digits`, optionally then `k`, `m` or `g`, powers of 1024 as haproxy
/// reads them) in entries, if it is one.
fn table_size_entries(s: &str) -> Option<u64> {
    let (digits, unit) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1 << 10),
        'm' => (&s[..s.len() - 1], 1 << 20),
        'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(unit)
}

fn flag(p: &mut Problems, id: u64, params: &BTreeMap<String, String>, name: &str) -> bool {
    match params.get(name).map(String::as_str) {
        None | Some("false") => false,
        Some("true") | Some("") => true,
        Some(other) => {
            p.rule(
                RuleKind::LoadBalancer,
                id,
                format!("stickiness.params.{name}"),
                format!("`{other}` is not true or false"),
            );
            false
        }
    }
}

fn validate_stickiness(p: &mut Problems, id: u64, s: &WireStickiness) -> Option<Stickiness> {
    let k = RuleKind::LoadBalancer;
    let allowed: &[&str] = match s.method.as_str() {
        "LbCookie" => &[
            "cookie-name",
            "mode",
            "nocache",
            "indirect",
            "postonly",
            "domain",
        ],
        "AppCookie" => &[
            "cookie-name",
            "length",
            "holdtime",
            "request-learn",
            "prefix",
            "mode",
        ],
        "SourceBased" => &["tablesize", "expire"],
        other => {
            p.rule(
                k,
                id,
                "stickiness.method",
                format!("`{other}` is not one of LbCookie, AppCookie, SourceBased"),
            );
            return None;
        }
    };
    let before = p.0.len();
    for name in s.params.keys() {
        if !allowed.contains(&name.as_str()) {
            p.rule(
                k,
                id,
                format!("stickiness.params.{name}"),
                format!("{} takes no parameter `{name}`", s.method),
            );
        }
    }
    let get = |name: &str| s.params.get(name).cloned();
    let default_name = format!("gn_{id}");
    let out = match s.method.as_str() {
        "LbCookie" => {
            let name = get("cookie-name").unwrap_or(default_name);
            if !is_token(&name) {
                p.rule(
                    k,
                    id,
                    "stickiness.params.cookie-name",
                    format!("`{name}` is not a cookie name"),
                );
            }
            let mode = match get("mode").as_deref() {
                None | Some("insert") => CookieMode::Insert,
                Some("rewrite") => CookieMode::Rewrite,
                Some("prefix") => CookieMode::Prefix,
                Some(other) => {
                    p.rule(
                        k,
                        id,
                        "stickiness.params.mode",
                        format!("`{other}` is not insert, rewrite or prefix"),
                    );
                    CookieMode::Insert
                }
            };
            let domains: Vec<String> = get("domain")
                .map(|d| {
                    d.split(',')
                        .map(|x| x.trim().to_string())
                        .filter(|x| !x.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            for d in &domains {
                if !is_token(d) {
                    p.rule(
                        k,
                        id,
                        "stickiness.params.domain",
                        format!("`{d}` is not a domain"),
                    );
                }
            }
            Stickiness::LbCookie {
                name,
                mode,
                nocache: flag(p, id, &s.params, "nocache"),
                indirect: flag(p, id, &s.params, "indirect"),
                postonly: flag(p, id, &s.params, "postonly"),
                domains,
            }
        }
        "AppCookie" => {
            for unsupported in ["prefix", "mode"] {
                if s.params.contains_key(unsupported) {
                    p.rule(
                        k,
                        id,
                        format!("stickiness.params.{unsupported}"),
                        "haproxy 2.6 cannot honour it (appsession was removed; AppCookie is a stick table on the cookie)",
                    );
                }
            }
            let name = get("cookie-name").unwrap_or(default_name);
            if !is_token(&name) {
                p.rule(
                    k,
                    id,
                    "stickiness.params.cookie-name",
                    format!("`{name}` is not a cookie name"),
                );
            }
            let length = match get("length") {
                None => 52,
                Some(l) => match l.parse::<u32>() {
                    Ok(n) if (1..=4096).contains(&n) => n,
                    _ => {
                        p.rule(
                            k,
                            id,
                            "stickiness.params.length",
                            format!("`{l}` is not a length (1-4096)"),
                        );
                        52
                    }
                },
            };
            let holdtime = get("holdtime").unwrap_or_else(|| "3h".into());
            let holdtime = if holdtime.bytes().all(|b| b.is_ascii_digit()) && !holdtime.is_empty() {
                format!("{holdtime}ms")
            } else {
                holdtime
            };
            check_timer(p, id, "stickiness.params.holdtime", &holdtime);
            Stickiness::AppCookie {
                name,
                length,
                holdtime,
                request_learn: flag(p, id, &s.params, "request-learn"),
            }
        }
        _ => {
            let table_size = get("tablesize").unwrap_or_else(|| "200k".into());
            // haproxy counts table entries in 32 bits.
            let entries = table_size_entries(&table_size);
            match entries {
                Some(n) if n <= u64::from(u32::MAX) => {}
                Some(_) => p.rule(
                    k,
                    id,
                    "stickiness.params.tablesize",
                    format!("`{table_size}` is more entries than haproxy can hold (4294967295)"),
                ),
                None => p.rule(
                    k,
                    id,
                    "stickiness.params.tablesize",
                    format!("`{table_size}` is not a size (digits, then k, m or g)"),
                ),
            }
            let expire = get("expire").unwrap_or_else(|| "30m".into());
            check_timer(p, id, "stickiness.params.expire", &expire);
            Stickiness::SourceBased { table_size, expire }
        }
    };
    (p.0.len() == before).then_some(out)
}

pub(crate) fn validate_lb(
    p: &mut Problems,
    r: &WireLoadBalancer,
    ips: &(impl PublicIps + ?Sized),
    guest: Option<Ipv4Net>,
    guest_gateway: Ipv4Addr,
) -> Option<LoadBalancer> {
    let k = RuleKind::LoadBalancer;
    let before = p.0.len();
    if !ips.holds(r.public_ip) {
        p.rule(
            k,
            r.id,
            "public_ip",
            format!("{} is not one of the router's public IPs", r.public_ip),
        );
    }
    let public_port = match u16::try_from(r.public_port) {
        Ok(port) if port >= 1 => port,
        _ => {
            p.rule(
                k,
                r.id,
                "public_port",
                format!("{} is not a port (1-65535)", r.public_port),
            );
            1
        }
    };
    let algorithm = match r.algorithm.as_str() {
        "roundrobin" => Algorithm::RoundRobin,
        "leastconn" => Algorithm::LeastConn,
        "source" => Algorithm::Source,
        other => {
            p.rule(
                k,
                r.id,
                "algorithm",
                format!("`{other}` is not one of roundrobin, leastconn, source"),
            );
            Algorithm::RoundRobin
        }
    };
    let mut mode = match r.protocol.as_str() {
        "tcp" => LbMode::Tcp,
        "http" => LbMode::Http,
        other => {
            p.rule(
                k,
                r.id,
                "protocol",
                format!("`{other}` is not one of tcp, http"),
            );
            LbMode::Tcp
        }
    };
    let mut members = Vec::new();
    for (i, m) in r.members.iter().enumerate() {
        let port = match u16::try_from(m.port) {
            Ok(port) if port >= 1 => port,
            _ => {
                p.rule(
                    k,
                    r.id,
                    format!("members[{i}].port"),
                    format!("{} is not a port (1-65535)", m.port),
                );
                continue;
            }
        };
        if let Some(g) = guest {
            if !is_host_in(g, m.vm_ip) || m.vm_ip == guest_gateway {
                p.rule(
                    k,
                    r.id,
                    format!("members[{i}].vm_ip"),
                    format!("{} is not a VM address in the guest network {g}", m.vm_ip),
                );
                continue;
            }
        }
        let member = Member {
            vm_ip: m.vm_ip,
            port,
        };
        if members.contains(&member) {
            p.rule(
                k,
                r.id,
                format!("members[{i}]"),
                format!("{}:{} is listed twice", m.vm_ip, port),
            );
        }
        members.push(member);
    }
    members.sort();
    if r.source_cidrs.is_empty() {
        p.rule(
            k,
            r.id,
            "source_cidrs",
            "at least one source CIDR is required (0.0.0.0/0 for everyone)",
        );
    }
    let sources = parse_cidrs(p, k, r.id, "source_cidrs", &r.source_cidrs);
    let stickiness = r
        .stickiness
        .as_ref()
        .and_then(|s| validate_stickiness(p, r.id, s));
    if matches!(
        stickiness,
        Some(Stickiness::LbCookie { .. } | Stickiness::AppCookie { .. })
    ) {
        // Cookies live in HTTP: CloudStack's router switches such rules to HTTP mode too.
        mode = LbMode::Http;
    }
    let health_check = r.health_check.as_ref().map(|h| {
        for (field, v, range) in [
            ("health_check.interval_s", h.interval_s, 1..=600),
            (
                "health_check.response_timeout_s",
                h.response_timeout_s,
                1..=60,
            ),
            (
                "health_check.healthy_threshold",
                h.healthy_threshold,
                1..=10,
            ),
            (
                "health_check.unhealthy_threshold",
                h.unhealthy_threshold,
                1..=10,
            ),
        ] {
            if !range.contains(&v) {
                p.rule(
                    k,
                    r.id,
                    field,
                    format!("{v} is out of range ({}-{})", range.start(), range.end()),
                );
            }
        }
        if let Some(path) = &h.ping_path {
            let ok = path.starts_with('/')
                && path.len() <= 1024
                && path.bytes().all(|b| b.is_ascii_graphic());
            if !ok {
                p.rule(
                    k,
                    r.id,
                    "health_check.ping_path",
                    format!("`{path}` is not a URL path (starts with /, no spaces)"),
                );
            }
        }
        HealthCheck {
            ping_path: h.ping_path.clone(),
            interval_s: h.interval_s,
            timeout_s: h.response_timeout_s,
            healthy: h.healthy_threshold,
            unhealthy: h.unhealthy_threshold,
        }
    });
    let proxy = match r.proxy_protocol {
        None => None,
        Some(1) => Some(ProxyProtocol::V1),
        Some(2) => Some(ProxyProtocol::V2),
        Some(other) => {
            p.rule(
                k,
                r.id,
                "proxy_protocol",
                format!("{other} is not a PROXY protocol version (1 or 2)"),
            );
            None
        }
    };
    let sources = sources?;
    (p.0.len() == before).then_some(LoadBalancer {
        id: RuleId(r.id),
        public_ip: r.public_ip,
        public_port,
        mode,
        proxy,
        algorithm,
        members,
        sources,
        stickiness,
        health_check,
    })
}

/// Load balancers conflict with each other on the same public IP and port, and with a port
/// forward of that IP whose public ports include it, whatever the forward's protocol (as
/// CloudStack): the router would not know whether to forward or to balance.
fn check_lb_conflicts(p: &mut Problems, lbs: &[LoadBalancer], forwards: &[PortForward]) {
    let mut seen: BTreeMap<(Ipv4Addr, u16), RuleId> = BTreeMap::new();
    for lb in lbs {
        if let Some(first) = seen.insert((lb.public_ip, lb.public_port), lb.id) {
            p.rule(
                RuleKind::LoadBalancer,
                lb.id.0,
                "public_port",
                format!(
                    "{} port {} is already balanced by load balancer {first}",
                    lb.public_ip, lb.public_port
                ),
            );
        }
        for f in forwards {
            if f.public_ip == lb.public_ip && f.public_ports.contains(lb.public_port) {
                p.rule(
                    RuleKind::LoadBalancer,
                    lb.id.0,
                    "public_port",
                    format!(
                        "{} port {} is already forwarded by port forward {}",
                        lb.public_ip, lb.public_port, f.id
                    ),
                );
            }
        }
    }
}
