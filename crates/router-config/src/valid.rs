//! The validated form of a config: parsed, normalized, sorted by rule id.

use ipnet::Ipv4Net;
use std::fmt;
use std::net::Ipv4Addr;

use crate::{DhcpLease, EgressPolicy, Generation, RouterConfig};

/// A rule id, unique across all rule kinds of one router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleId(pub u64);

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The kinds of rules a router holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RuleKind {
    /// Ingress firewall rule.
    Firewall,
    /// Egress firewall rule.
    Egress,
    /// Port-forwarding rule.
    PortForward,
    /// Load-balancer rule.
    LoadBalancer,
}

impl fmt::Display for RuleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RuleKind::Firewall => "firewall rule",
            RuleKind::Egress => "egress rule",
            RuleKind::PortForward => "port forward",
            RuleKind::LoadBalancer => "load balancer",
        })
    }
}

/// An inclusive port range; `start == end` is a single port. `0..=65535` means every port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    /// First port.
    pub start: u16,
    /// Last port.
    pub end: u16,
}

impl PortRange {
    /// Every port, as used for a tcp or udp rule without ports.
    pub const ALL: PortRange = PortRange {
        start: 0,
        end: u16::MAX,
    };

    /// Whether this range is one port.
    pub fn is_single(&self) -> bool {
        self.start == self.end
    }

    /// Whether the two ranges share a port.
    pub fn intersects(&self, other: &PortRange) -> bool {
        self.start <= other.end && other.start <= self.end
    }

    /// Whether `port` is in the range.
    pub fn contains(&self, port: u16) -> bool {
        self.start <= port && port <= self.end
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_single() {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// tcp or udp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum L4Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl L4Proto {
    /// The protocol's name as nftables and CloudStack spell it.
    pub fn name(self) -> &'static str {
        match self {
            L4Proto::Tcp => "tcp",
            L4Proto::Udp => "udp",
        }
    }
}

/// An ICMP type and code; `None` means any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IcmpMatch {
    /// ICMP type, or any.
    pub icmp_type: Option<u8>,
    /// ICMP code, or any.
    pub code: Option<u8>,
}

/// What an ingress rule matches besides the public IP and source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IngressMatch {
    /// tcp or udp with a port range.
    Ports {
        /// Protocol.
        proto: L4Proto,
        /// Destination ports.
        ports: PortRange,
    },
    /// icmp with type and code.
    Icmp(IcmpMatch),
}

/// A validated ingress firewall rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressRule {
    /// The rule's id.
    pub id: RuleId,
    /// The public IP it opens.
    pub public_ip: Ipv4Addr,
    /// Protocol and ports or ICMP type.
    pub matcher: IngressMatch,
    /// Admitted sources, sorted and without duplicates.
    pub sources: Vec<Ipv4Net>,
}

/// What an egress rule matches besides addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EgressMatch {
    /// Every protocol.
    All,
    /// tcp or udp with destination ports.
    Ports {
        /// Protocol.
        proto: L4Proto,
        /// Destination ports.
        ports: PortRange,
    },
    /// icmp with type and code.
    Icmp(IcmpMatch),
}

/// A validated egress firewall rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressRule {
    /// The rule's id.
    pub id: RuleId,
    /// Protocol and ports or ICMP type.
    pub matcher: EgressMatch,
    /// Guest sources (the guest CIDR when the wire list was empty), sorted, no duplicates.
    pub sources: Vec<Ipv4Net>,
    /// Destinations (`0.0.0.0/0` when the wire list was empty), sorted, no duplicates.
    pub destinations: Vec<Ipv4Net>,
}

/// A validated port-forwarding rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortForward {
    /// The rule's id.
    pub id: RuleId,
    /// The public IP traffic arrives on.
    pub public_ip: Ipv4Addr,
    /// Protocol.
    pub proto: L4Proto,
    /// Public ports.
    pub public_ports: PortRange,
    /// Private ports: one port, or equal to `public_ports`.
    pub private_ports: PortRange,
    /// The VM's guest IP.
    pub vm_ip: Ipv4Addr,
    /// Sources the forward applies to, sorted, no duplicates.
    pub sources: Vec<Ipv4Net>,
}

/// A config that passed validation. Its rule lists are sorted by id, and `document()` is the
/// normalized wire form (also sorted), so two configs with the same content compare equal
/// whatever the order their rules arrived in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidConfig {
    pub(crate) document: RouterConfig,
    /// Port forwards and load balancers by what they may conflict on, so a changed rule is
    /// checked against its neighbours only.
    pub(crate) neighbours: crate::incremental::Neighbours,
    /// The public interface's name.
    pub public_interface: String,
    /// Public IPs with their prefix lengths, sorted.
    pub public_addresses: Vec<(Ipv4Addr, u8)>,
    /// The source-NAT IP.
    pub source_nat_ip: Ipv4Addr,
    /// Static NATs (public IP 1:1 to a VM), sorted by public IP.
    pub static_nats: Vec<StaticNat>,
    /// Next hop on the public side.
    pub public_gateway: Option<Ipv4Addr>,
    /// The guest interface's name.
    pub guest_interface: String,
    /// The guest network.
    pub guest_cidr: Ipv4Net,
    /// The router's guest address.
    pub guest_gateway: Ipv4Addr,
    /// Default egress policy.
    pub egress_default: EgressPolicy,
    /// Ingress rules, sorted by id.
    pub ingress: Vec<IngressRule>,
    /// Egress rules, sorted by id.
    pub egress: Vec<EgressRule>,
    /// Port forwards, sorted by id.
    pub port_forwards: Vec<PortForward>,
    /// Load balancers, sorted by id.
    pub load_balancers: Vec<LoadBalancer>,
    /// DHCP and DNS for the guests, if the router serves them.
    pub dhcp: Option<Dhcp>,
}

/// A public IP that is 1:1 NAT to a guest address: a public IP of the router other than the
/// source-NAT IP, without forwards or balancers; the guest address a VM address of the guest
/// network that no other static NAT uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StaticNat {
    /// The public IP.
    pub public_ip: Ipv4Addr,
    /// The VM's guest address.
    pub vm_ip: Ipv4Addr,
}

/// A validated DHCP and DNS service: every lease a host address of the guest network other than
/// the router's, MACs unicast and unique, addresses unique, host names DNS labels unique
/// whatever their case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dhcp {
    /// Upstream DNS servers, in the order given (unique, unicast).
    pub dns_servers: Vec<Ipv4Addr>,
    /// The guests' DNS domain (a valid DNS name), if any.
    pub domain: Option<String>,
    /// Static leases, sorted by MAC.
    pub leases: Vec<DhcpLease>,
}

impl ValidConfig {
    /// The config's generation.
    pub fn generation(&self) -> Generation {
        self.document.generation
    }

    /// The normalized wire document (rules sorted by id).
    pub fn document(&self) -> &RouterConfig {
        &self.document
    }

    /// Consumes the config, returning its normalized wire document.
    pub fn into_document(self) -> RouterConfig {
        self.document
    }

    /// Whether two configs hold the same desired state, generation aside.
    pub fn same_content(&self, other: &ValidConfig) -> bool {
        let mut a = self.document.clone();
        a.generation = 0;
        let mut b = other.document.clone();
        b.generation = 0;
        a == b
    }

    /// The static NAT of `ip`, if it has one.
    pub fn static_nat_of(&self, ip: Ipv4Addr) -> Option<&StaticNat> {
        self.static_nats
            .binary_search_by_key(&ip, |s| s.public_ip)
            .ok()
            .map(|i| &self.static_nats[i])
    }

    /// Every public IP.
    pub fn public_ips(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.public_addresses.iter().map(|(ip, _)| *ip)
    }
}

/// How a load balancer picks a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Algorithm {
    /// In turn.
    RoundRobin,
    /// The member with the fewest connections.
    LeastConn,
    /// By a hash of the client's address (consistent hashing, so members can change at run time).
    Source,
}

impl Algorithm {
    /// CloudStack's (and haproxy's) name.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RoundRobin => "roundrobin",
            Algorithm::LeastConn => "leastconn",
            Algorithm::Source => "source",
        }
    }
}

/// The protocol haproxy speaks on a load balancer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LbMode {
    /// Plain TCP.
    Tcp,
    /// HTTP (needed to insert or read cookies).
    Http,
}

/// The PROXY protocol a load balancer speaks to its members (haproxy's `send-proxy` and
/// `send-proxy-v2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProxyProtocol {
    /// The text header.
    V1,
    /// The binary header.
    V2,
}

/// How a cookie is set by `LbCookie` stickiness (haproxy's `cookie … insert|rewrite|prefix`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CookieMode {
    /// haproxy adds its own cookie.
    Insert,
    /// haproxy rewrites the server's cookie.
    Rewrite,
    /// haproxy prefixes the server's cookie.
    Prefix,
}

/// A stickiness policy, in the terms haproxy 2.6 can honour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stickiness {
    /// A cookie that names the member (`LbCookie`).
    LbCookie {
        /// Cookie name.
        name: String,
        /// insert, rewrite or prefix.
        mode: CookieMode,
        /// `nocache`.
        nocache: bool,
        /// `indirect`.
        indirect: bool,
        /// `postonly`.
        postonly: bool,
        /// `domain` values.
        domains: Vec<String>,
    },
    /// The application's own cookie, learned into a stick table (`AppCookie`).
    AppCookie {
        /// The application's cookie name.
        name: String,
        /// How many characters of its value are kept (`length`).
        length: u32,
        /// How long an entry lives (`holdtime`), haproxy time syntax.
        holdtime: String,
        /// Also learn the cookie from requests (`request-learn`).
        request_learn: bool,
    },
    /// The client's address, in a stick table (`SourceBased`).
    SourceBased {
        /// Table size (`tablesize`), e.g. `200k`.
        table_size: String,
        /// Entry lifetime (`expire`), e.g. `30m`.
        expire: String,
    },
}

/// A validated health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// HTTP path, or a TCP connect check.
    pub ping_path: Option<String>,
    /// Seconds between checks.
    pub interval_s: u32,
    /// Seconds a check may take.
    pub timeout_s: u32,
    /// Successes to come back.
    pub healthy: u32,
    /// Failures to be taken out.
    pub unhealthy: u32,
}

/// One member of a load balancer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Member {
    /// The VM's guest IP.
    pub vm_ip: Ipv4Addr,
    /// Its port.
    pub port: u16,
}

/// A validated load-balancer rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadBalancer {
    /// The rule's id.
    pub id: RuleId,
    /// Public IP.
    pub public_ip: Ipv4Addr,
    /// Public port.
    pub public_port: u16,
    /// tcp or http (http whenever cookie stickiness needs it).
    pub mode: LbMode,
    /// The PROXY protocol spoken to the members, if any.
    pub proxy: Option<ProxyProtocol>,
    /// Algorithm.
    pub algorithm: Algorithm,
    /// Members, sorted, without duplicates.
    pub members: Vec<Member>,
    /// Accepted sources, sorted.
    pub sources: Vec<Ipv4Net>,
    /// Stickiness, if any.
    pub stickiness: Option<Stickiness>,
    /// Health check, if any.
    pub health_check: Option<HealthCheck>,
}
