//! Pure checks of rule parameters and of conflicts between rules, in CloudStack's terms and
//! texts, tightened wherever the router would refuse what CloudStack lets through (so that every
//! rule the API accepts is one the router accepts).

use std::net::Ipv4Addr;

use api_types::error::ApiError;
use ipnet::Ipv4Net;

use crate::model::{Purpose, Rule, State, Traffic};

/// A port, 1–65535. (CloudStack takes 0; no router can match port 0, so it is refused.)
///
/// # Errors
/// 431 naming the parameter.
pub fn port(name: &str, v: i64) -> Result<i64, ApiError> {
    if (1..=65535).contains(&v) {
        Ok(v)
    } else {
        Err(ApiError::invalid_parameter(format!(
            "{name} is an invalid value: {v} (ports are 1-65535)"
        )))
    }
}

/// A port range from optional start and end (end defaults to start).
///
/// # Errors
/// 431 for a bad port, an end without a start, or start after end.
pub fn port_range(
    start_name: &str,
    start: Option<i64>,
    end_name: &str,
    end: Option<i64>,
) -> Result<Option<(i64, i64)>, ApiError> {
    match (start, end) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(ApiError::invalid_parameter(format!(
            "{end_name} needs {start_name}"
        ))),
        (Some(s), e) => {
            let s = port(start_name, s)?;
            let e = port(end_name, e.unwrap_or(s))?;
            if s > e {
                return Err(ApiError::invalid_parameter(
                    "Start port can't be bigger than end port",
                ));
            }
            Ok(Some((s, e)))
        }
    }
}

/// Parses one CIDR as the router reads it: IPv4, prefix 0–32, no host bits. A bare address is
/// taken as a /32.
///
/// # Errors
/// 431 naming the entry.
pub fn cidr(list_name: &str, s: &str) -> Result<Ipv4Net, ApiError> {
    let s = s.trim();
    let net: Ipv4Net = match s.parse::<Ipv4Net>() {
        Ok(n) => n,
        Err(_) => match s.parse::<Ipv4Addr>() {
            Ok(a) => Ipv4Net::from(a),
            Err(_) => {
                return Err(ApiError::invalid_parameter(format!(
                    "Source CIDRs formatting error {s}"
                ))
                .with_list(list_name))
            }
        },
    };
    if net.trunc() != net {
        return Err(ApiError::invalid_parameter(format!(
            "CIDR {s} in {list_name} has host bits set (the network is {})",
            net.trunc()
        )));
    }
    Ok(net)
}

trait WithList {
    fn with_list(self, list: &str) -> Self;
}

impl WithList for ApiError {
    fn with_list(mut self, list: &str) -> Self {
        if list != "cidrlist" {
            self.text = self
                .text
                .replace("Source CIDRs", &format!("{list} entries"));
        }
        self
    }
}

/// A CIDR list; empty entries are dropped, duplicates kept once, order kept. Linear in the
/// list's length.
///
/// # Errors
/// 431 for the first bad entry.
pub fn cidr_list(list_name: &str, list: &[String]) -> Result<Vec<Ipv4Net>, ApiError> {
    let mut out: Vec<Ipv4Net> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for s in list.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let n = cidr(list_name, s)?;
        if seen.insert(n) {
            out.push(n);
        }
    }
    Ok(out)
}

/// A CIDR list as rows store it: comma-joined.
pub fn join_cidrs(nets: &[Ipv4Net]) -> String {
    nets.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// ICMP type and code: -1 (any) or 0–255, and a code only with a type.
///
/// # Errors
/// 431.
pub fn icmp(icmp_type: Option<i64>, icmp_code: Option<i64>) -> Result<(i64, i64), ApiError> {
    let t = icmp_type.unwrap_or(-1);
    let c = icmp_code.unwrap_or(-1);
    for (name, v) in [("icmptype", t), ("icmpcode", c)] {
        if !(-1..=255).contains(&v) {
            return Err(ApiError::invalid_parameter(format!(
                "{name} is an invalid value: {v} (-1 for any, or 0-255)"
            )));
        }
    }
    if t == -1 && c != -1 {
        return Err(ApiError::invalid_parameter(
            "icmpcode needs an icmptype (icmptype is -1, any type)",
        ));
    }
    Ok((t, c))
}

/// What conflict detection compares.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The rule's uuid (for texts), or empty for the new rule.
    pub uuid: String,
    /// Purpose.
    pub purpose: Purpose,
    /// For firewall rules.
    pub traffic: Option<Traffic>,
    /// tcp, udp, icmp, all.
    pub protocol: String,
    /// Public ports (egress: destination ports).
    pub ports: Option<(i64, i64)>,
    /// ICMP type and code.
    pub icmp: Option<(i64, i64)>,
    /// Source CIDRs (empty: everyone).
    pub sources: Vec<Ipv4Net>,
    /// Destination CIDRs (egress).
    pub dests: Vec<Ipv4Net>,
}

impl Candidate {
    /// The candidate of a stored rule.
    pub fn of(r: &Rule) -> Candidate {
        let nets = |l: &[String]| -> Vec<Ipv4Net> {
            l.iter().filter_map(|s| s.parse::<Ipv4Net>().ok()).collect()
        };
        Candidate {
            uuid: r.uuid.clone(),
            purpose: r.purpose,
            traffic: r.traffic,
            protocol: r.protocol.clone(),
            ports: r.start_port.map(|s| (s, r.end_port.unwrap_or(s))),
            icmp: (r.protocol == "icmp")
                .then(|| (r.icmp_type.unwrap_or(-1), r.icmp_code.unwrap_or(-1))),
            sources: nets(&r.source_cidrs),
            dests: nets(&r.dest_cidrs),
        }
    }
}

fn same_set(a: &[Ipv4Net], b: &[Ipv4Net]) -> bool {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort();
    a.dedup();
    b.sort();
    b.dedup();
    a == b
}

/// Whether two source sets share an address; an empty set is everyone. Sorts both sets'
/// address ranges and walks them together: O((n + m) log(n + m)), not n × m.
pub fn sources_intersect(a: &[Ipv4Net], b: &[Ipv4Net]) -> bool {
    let everyone = [Ipv4Net::default()];
    let a = if a.is_empty() { &everyone[..] } else { a };
    let b = if b.is_empty() { &everyone[..] } else { b };
    let ranges = |nets: &[Ipv4Net]| {
        let mut r: Vec<(u32, u32)> = nets
            .iter()
            .map(|n| (u32::from(n.network()), u32::from(n.broadcast())))
            .collect();
        r.sort_unstable();
        r
    };
    let (a, b) = (ranges(a), ranges(b));
    let (mut i, mut j) = (0, 0);
    // Each side is sorted by first address: a range that ends before the other side's current
    // range begins cannot meet any later range of the other side either.
    while let (Some(x), Some(y)) = (a.get(i), b.get(j)) {
        if x.1 < y.0 {
            i += 1;
        } else if y.1 < x.0 {
            j += 1;
        } else {
            return true;
        }
    }
    false
}

fn ranges_meet(a: (i64, i64), b: (i64, i64)) -> bool {
    a.0 <= b.1 && b.0 <= a.1
}

fn range_conflict(new: (i64, i64), old: &Candidate, old_range: (i64, i64)) -> ApiError {
    ApiError::rule_conflict(format!(
        "The range specified, {}-{}, conflicts with rule {} which has {}-{}",
        new.0, new.1, old.uuid, old_range.0, old_range.1
    ))
}

/// Checks a new rule against the live (not revoked) rules it could clash with: those on the
/// same public IP (ingress, forwards, balancers) or of the same network (egress).
///
/// Firewall rules are an allow-list, so overlaps are legal except an exact duplicate: the same
/// protocol with intersecting ports and an identical source list (and, egress, destination list)
/// is a 537; the same ICMP match is a 431; two port-less rules of one protocol are a 537.
/// Forwards conflict with forwards of the same protocol whose ports and sources intersect (real
/// address math); balancers conflict with balancers and forwards whose ports intersect, whatever
/// the protocol and sources (the router serves a public port either by haproxy or by DNAT).
///
/// # Errors
/// 537 with CloudStack's text, or 431 for a duplicate ICMP rule.
pub fn conflicts<'a>(
    new: &Candidate,
    existing: impl IntoIterator<Item = &'a Candidate>,
) -> Result<(), ApiError> {
    for old in existing {
        match (new.purpose, old.purpose) {
            (Purpose::Firewall, Purpose::Firewall) => {
                if new.traffic != old.traffic || new.protocol != old.protocol {
                    continue;
                }
                let dup = same_set(&new.sources, &old.sources) && same_set(&new.dests, &old.dests);
                if !dup {
                    continue;
                }
                if new.protocol == "icmp" {
                    if new.icmp == old.icmp {
                        return Err(ApiError::invalid_parameter(format!(
                            "New rule conflicts with existing rule: {}",
                            old.uuid
                        )));
                    }
                    continue;
                }
                match (new.ports, old.ports) {
                    (None, None) => {
                        return Err(ApiError::rule_conflict(format!(
                            "There is already a firewall rule specified with protocol = {} and no ports",
                            new.protocol
                        )))
                    }
                    (Some(a), Some(b)) if ranges_meet(a, b) => {
                        return Err(range_conflict(a, old, b));
                    }
                    _ => {}
                }
            }
            (Purpose::Firewall, _) | (_, Purpose::Firewall) => {}
            (Purpose::PortForwarding, Purpose::PortForwarding) => {
                if let (Some(a), Some(b)) = (new.ports, old.ports) {
                    if new.protocol == old.protocol
                        && ranges_meet(a, b)
                        && sources_intersect(&new.sources, &old.sources)
                    {
                        return Err(range_conflict(a, old, b));
                    }
                }
            }
            (Purpose::StaticNat, Purpose::StaticNat) => {
                if let (Some(a), Some(b)) = (new.ports, old.ports) {
                    if new.protocol == old.protocol && ranges_meet(a, b) {
                        return Err(range_conflict(a, old, b));
                    }
                }
            }
            _ => {
                // A balancer against a balancer or a forward.
                if let (Some(a), Some(b)) = (new.ports, old.ports) {
                    if ranges_meet(a, b) {
                        return Err(range_conflict(a, old, b));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Whether a rule of `purpose` may be made on the public IP `address`, which has a static NAT
/// (`nat`) or not, as CloudStack decides: a static-NAT IP sends every port to its VM, so it
/// carries no forward or balancer, and an IP forwarding rule needs one.
///
/// # Errors
/// 431 for a forward on a static-NAT IP; 537 for a balancer on one, or an IP forwarding rule
/// on an IP without.
pub fn static_nat_fits(purpose: Purpose, address: &str, nat: bool) -> Result<(), ApiError> {
    match (purpose, nat) {
        (Purpose::PortForwarding, true) => Err(ApiError::invalid_parameter(format!(
            "Unable to create port forwarding rule; ip {address} has static nat enabled"
        ))),
        (Purpose::LoadBalancing, true) => Err(ApiError::rule_conflict(format!(
            "Can't do load balance on ip address: {address}: it has static nat enabled"
        ))),
        (Purpose::StaticNat, false) => Err(ApiError::rule_conflict(format!(
            "Can't do static nat on ip address: {address}: static nat is not enabled on it"
        ))),
        _ => Ok(()),
    }
}

/// Whether a stored rule takes part in conflict detection.
pub fn live(r: &Rule) -> bool {
    r.state != State::Revoke
}

/// An LB algorithm, case-insensitive, as the router names it.
///
/// # Errors
/// 431.
pub fn algorithm(s: &str) -> Result<String, ApiError> {
    let a = s.trim().to_ascii_lowercase();
    match a.as_str() {
        "roundrobin" | "leastconn" | "source" => Ok(a),
        _ => Err(ApiError::invalid_parameter(format!(
            "Invalid algorithm: {s} (supported: roundrobin, leastconn, source)"
        ))),
    }
}

/// An LB protocol: tcp (the default) or tcp-proxy (the PROXY protocol to the members) is
/// served by the router's haproxy.
///
/// # Errors
/// 431, naming what the router cannot do.
pub fn lb_protocol(s: Option<&str>) -> Result<String, ApiError> {
    let p = s.map(|p| p.trim().to_ascii_lowercase());
    match p.as_deref() {
        None | Some("") | Some("tcp") => Ok("tcp".into()),
        Some("tcp-proxy") => Ok("tcp-proxy".into()),
        Some("udp") | Some("ssl") => Err(ApiError::invalid_parameter(format!(
            "LB service provider cannot support this rule: protocol {} is not supported \
             (tcp, tcp-proxy)",
            p.as_deref().unwrap_or_default()
        ))),
        Some(other) => Err(ApiError::invalid_parameter(format!(
            "Invalid protocol {other} (supported: tcp, tcp-proxy)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api_types::error::ApiErrorCode;

    fn c(purpose: Purpose, proto: &str, ports: Option<(i64, i64)>, sources: &[&str]) -> Candidate {
        Candidate {
            uuid: "old".into(),
            purpose,
            traffic: (purpose == Purpose::Firewall).then_some(Traffic::Ingress),
            protocol: proto.into(),
            ports,
            icmp: (proto == "icmp").then_some((-1, -1)),
            sources: sources.iter().filter_map(|s| s.parse().ok()).collect(),
            dests: Vec::new(),
        }
    }

    fn code(r: Result<(), ApiError>) -> Option<u16> {
        r.err().map(|e| e.code.code())
    }

    #[test]
    fn firewall_duplicates_conflict_and_other_overlaps_are_a_union() {
        let old = c(Purpose::Firewall, "tcp", Some((20, 30)), &["0.0.0.0/0"]);
        let same_cidrs = c(Purpose::Firewall, "tcp", Some((25, 40)), &["0.0.0.0/0"]);
        let e = conflicts(&same_cidrs, [&old]).expect_err("a conflict");
        assert_eq!(e.code, ApiErrorCode::NetworkRuleConflict);
        assert!(
            e.text
                .contains("25-40, conflicts with rule old which has 20-30"),
            "{}",
            e.text
        );
        // Other sources, other protocol, other ports: legal.
        let other_src = c(Purpose::Firewall, "tcp", Some((25, 40)), &["10.0.0.0/8"]);
        assert_eq!(code(conflicts(&other_src, [&old])), None);
        let udp = c(Purpose::Firewall, "udp", Some((20, 30)), &["0.0.0.0/0"]);
        assert_eq!(code(conflicts(&udp, [&old])), None);
        let apart = c(Purpose::Firewall, "tcp", Some((31, 40)), &["0.0.0.0/0"]);
        assert_eq!(code(conflicts(&apart, [&old])), None);
        // Port-less rules of one protocol with the same sources: 537; the same ICMP: 431.
        let all1 = c(Purpose::Firewall, "tcp", None, &["0.0.0.0/0"]);
        assert_eq!(code(conflicts(&all1, [&all1.clone()])), Some(537));
        let icmp = c(Purpose::Firewall, "icmp", None, &["0.0.0.0/0"]);
        assert_eq!(code(conflicts(&icmp, [&icmp.clone()])), Some(431));
    }

    #[test]
    fn forwards_conflict_by_address_math_not_strings() {
        let old = c(
            Purpose::PortForwarding,
            "tcp",
            Some((2222, 2222)),
            &["10.0.0.0/8"],
        );
        // A narrower network inside the old one intersects although the strings differ.
        let inside = c(
            Purpose::PortForwarding,
            "tcp",
            Some((2222, 2222)),
            &["10.1.0.0/16"],
        );
        assert_eq!(code(conflicts(&inside, [&old])), Some(537));
        let disjoint = c(
            Purpose::PortForwarding,
            "tcp",
            Some((2222, 2222)),
            &["192.0.2.0/24"],
        );
        assert_eq!(code(conflicts(&disjoint, [&old])), None);
        let udp = c(
            Purpose::PortForwarding,
            "udp",
            Some((2222, 2222)),
            &["10.0.0.0/8"],
        );
        assert_eq!(code(conflicts(&udp, [&old])), None);
        // No sources means everyone.
        let everyone = c(Purpose::PortForwarding, "tcp", Some((2200, 2300)), &[]);
        assert_eq!(code(conflicts(&everyone, [&old])), Some(537));
        // A firewall rule never conflicts with a forward.
        let fw = c(
            Purpose::Firewall,
            "tcp",
            Some((2222, 2222)),
            &["10.0.0.0/8"],
        );
        assert_eq!(code(conflicts(&fw, [&old])), None);
    }

    #[test]
    fn balancers_conflict_with_balancers_and_forwards_whatever_the_protocol() {
        let pf = c(
            Purpose::PortForwarding,
            "udp",
            Some((80, 90)),
            &["192.0.2.0/24"],
        );
        let lb = c(
            Purpose::LoadBalancing,
            "tcp",
            Some((85, 85)),
            &["198.51.100.0/24"],
        );
        assert_eq!(code(conflicts(&lb, [&pf])), Some(537));
        let lb2 = c(
            Purpose::LoadBalancing,
            "tcp",
            Some((85, 85)),
            &["203.0.113.0/24"],
        );
        assert_eq!(code(conflicts(&lb2, [&lb])), Some(537));
        let lb3 = c(Purpose::LoadBalancing, "tcp", Some((91, 91)), &[]);
        assert_eq!(code(conflicts(&lb3, [&pf, &lb])), None);
    }

    #[test]
    fn values_the_router_refuses_are_refused_with_431() {
        assert!(port("publicport", 0).is_err());
        assert!(port("publicport", 65536).is_err());
        assert!(port("publicport", 65535).is_ok());
        assert_eq!(
            port_range("startport", Some(30), "endport", Some(20))
                .err()
                .map(|e| e.text),
            Some("Start port can't be bigger than end port".to_string())
        );
        assert_eq!(
            port_range("startport", Some(22), "endport", None).ok(),
            Some(Some((22, 22)))
        );
        assert!(cidr("cidrlist", "10.1.1.5/24").is_err());
        assert_eq!(
            cidr("cidrlist", "198.51.100.7").ok(),
            "198.51.100.7/32".parse().ok()
        );
        assert!(cidr("cidrlist", "2001:db8::/32").is_err());
        assert!(icmp(Some(-1), Some(3)).is_err());
        assert!(icmp(Some(256), None).is_err());
        assert_eq!(icmp(Some(8), None).ok(), Some((8, -1)));
        assert_eq!(algorithm("LeastConn").ok().as_deref(), Some("leastconn"));
        assert!(algorithm("random").is_err());
        assert!(lb_protocol(Some("udp")).is_err());
        assert_eq!(lb_protocol(None).ok().as_deref(), Some("tcp"));
    }

    proptest::proptest! {
        /// The sorted walk answers as comparing every pair of CIDRs does, and a list keeps its
        /// first occurrences in order.
        #[test]
        fn source_sets_meet_exactly_when_two_of_their_cidrs_do(
            a in proptest::collection::vec((0u32..64, 22u8..=32), 0..12),
            b in proptest::collection::vec((0u32..64, 22u8..=32), 0..12),
        ) {
            let nets = |l: &[(u32, u8)]| -> Vec<Ipv4Net> {
                l.iter()
                    .map(|(x, len)| {
                        Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 | (x << 6)), *len)
                            .unwrap()
                            .trunc()
                    })
                    .collect()
            };
            let (a, b) = (nets(&a), nets(&b));
            let everyone = [Ipv4Net::default()];
            let (wa, wb) = (
                if a.is_empty() { &everyone[..] } else { &a[..] },
                if b.is_empty() { &everyone[..] } else { &b[..] },
            );
            let pairwise = wa
                .iter()
                .any(|x| wb.iter().any(|y| x.contains(y) || y.contains(x)));
            proptest::prop_assert_eq!(sources_intersect(&a, &b), pairwise);
            let texts: Vec<String> = a.iter().map(ToString::to_string).collect();
            let mut firsts: Vec<Ipv4Net> = Vec::new();
            for n in &a {
                if !firsts.contains(n) {
                    firsts.push(*n);
                }
            }
            proptest::prop_assert_eq!(cidr_list("cidrlist", &texts).unwrap(), firsts);
        }
    }
}
