//! The wire document. Field names are the contract with the control plane and the ledger on disk.

use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

use crate::Generation;

/// The schema version this crate writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// The complete desired state of one router (schema 1).
///
/// Every list is complete: a rule that is not listed is not enforced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterConfig {
    /// Schema version of this document; must be [`SCHEMA_VERSION`].
    pub schema: u32,
    /// Version of the desired state; a router never applies an older one.
    pub generation: Generation,
    /// The public side: interface and public IPs.
    pub public: PublicSide,
    /// The guest network behind the router.
    pub guest: GuestSide,
    /// What egress traffic that no egress rule matches gets; see [`EgressPolicy`].
    pub egress_default: EgressPolicy,
    /// Ingress firewall rules on public IPs.
    #[serde(default)]
    pub firewall_rules: Vec<WireFirewallRule>,
    /// Egress firewall rules for traffic from the guest network to the public side.
    #[serde(default)]
    pub egress_rules: Vec<WireEgressRule>,
    /// Port-forwarding (DNAT) rules.
    #[serde(default)]
    pub port_forwards: Vec<WirePortForward>,
    /// Load-balancer rules (haproxy on the router).
    #[serde(default)]
    pub load_balancers: Vec<WireLoadBalancer>,
    /// DHCP and DNS for the guest network, served by the router; absent: neither is served
    /// (a ledger written before the router served them reads so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dhcp: Option<DhcpService>,
}

/// DHCP (static leases only) and DNS for the guest network, served on the router's guest
/// address, which is the guests' gateway and DNS server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DhcpService {
    /// Where the router forwards guests' DNS queries it cannot answer itself (the zone's
    /// `dns1` and `dns2`); empty: it answers only for the guests' own names.
    #[serde(default)]
    pub dns_servers: Vec<Ipv4Addr>,
    /// The guest network's DNS domain (CloudStack's `networkdomain`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// One static lease per VM NIC on the guest network; nothing else gets an address.
    #[serde(default)]
    pub leases: Vec<DhcpLease>,
}

/// A static lease: the NIC with this MAC gets this address and host name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DhcpLease {
    /// The NIC's MAC address.
    pub mac: MacAddr,
    /// The address it gets, inside the guest network.
    pub ip: Ipv4Addr,
    /// The guest's host name (a DNS label), also answered by the router's DNS.
    pub hostname: String,
}

/// An Ethernet MAC address, written `02:00:5e:10:00:01` (lower-case hex, colons).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// Whether it is a unicast address (the group bit of its first byte clear) other than
    /// all zeros: the only kind a NIC may have.
    pub fn is_unicast(&self) -> bool {
        self.0[0] & 1 == 0 && self.0 != [0; 6]
    }
}

impl std::fmt::Display for MacAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// Why a text is not a MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a MAC address (six hex bytes separated by colons, e.g. 02:00:5e:10:00:01)")]
pub struct BadMac(pub String);

impl std::str::FromStr for MacAddr {
    type Err = BadMac;
    fn from_str(s: &str) -> Result<Self, BadMac> {
        let bad = || BadMac(s.to_string());
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in &mut out {
            let part = parts.next().ok_or_else(bad)?;
            if part.len() != 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(MacAddr(out))
    }
}

impl Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The router's public interface and its addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicSide {
    /// Interface name inside the router's network namespace.
    pub interface: String,
    /// Public IPs held by the router; exactly one is the source-NAT IP.
    pub addresses: Vec<PublicAddress>,
    /// Next hop for traffic leaving through the public side, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
}

/// One public IP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicAddress {
    /// The address.
    pub ip: Ipv4Addr,
    /// Prefix length of the public segment it lives on.
    pub prefix_len: u8,
    /// Whether guest traffic leaves through this address.
    #[serde(default)]
    pub source_nat: bool,
    /// Static NAT: the guest address this public IP is 1:1 NAT to. Everything arriving for the
    /// IP (once the ingress firewall admits it) goes to that VM, and the VM's own traffic
    /// leaves from this IP instead of the source-NAT IP. Such an IP carries no port forward or
    /// load balancer, and is never the source-NAT IP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub static_nat: Option<Ipv4Addr>,
}

/// The guest network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestSide {
    /// Interface name inside the router's network namespace.
    pub interface: String,
    /// The guest network's CIDR, e.g. `10.1.1.0/24`.
    pub cidr: String,
    /// The router's own address on the guest network, the VMs' gateway.
    pub gateway: Ipv4Addr,
}

/// The network's default egress policy, with CloudStack's meaning.
///
/// - `deny`: guest traffic to the public side is dropped unless an egress rule matches it;
///   egress rules *allow*.
/// - `allow`: guest traffic to the public side is accepted unless an egress rule matches it;
///   egress rules *block*.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EgressPolicy {
    /// Everything leaves unless a rule blocks it.
    Allow,
    /// Nothing leaves unless a rule allows it.
    Deny,
}

/// A port range as written on the wire; `start == end` is a single port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WirePorts {
    /// First port, 1–65535.
    pub start: u32,
    /// Last port, `start`–65535.
    pub end: u32,
}

/// An ICMP match; -1 means any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireIcmp {
    /// ICMP type, 0–255, or -1 for any.
    #[serde(rename = "type")]
    pub icmp_type: i32,
    /// ICMP code, 0–255, or -1 for any.
    pub code: i32,
}

/// An ingress firewall rule: opens traffic to one public IP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireFirewallRule {
    /// The rule's id, unique across all rule kinds of the router.
    pub id: u64,
    /// The public IP the rule opens.
    pub public_ip: Ipv4Addr,
    /// `tcp`, `udp` or `icmp`.
    pub protocol: String,
    /// Ports for tcp and udp; absent means every port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<WirePorts>,
    /// Type and code for icmp; absent means any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp: Option<WireIcmp>,
    /// Sources admitted; at least one CIDR.
    pub source_cidrs: Vec<String>,
}

/// An egress firewall rule; its meaning depends on [`EgressPolicy`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireEgressRule {
    /// The rule's id, unique across all rule kinds of the router.
    pub id: u64,
    /// `tcp`, `udp`, `icmp` or `all`.
    pub protocol: String,
    /// Destination ports for tcp and udp; absent means every port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<WirePorts>,
    /// Type and code for icmp; absent means any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp: Option<WireIcmp>,
    /// Guest sources; empty means the whole guest network.
    #[serde(default)]
    pub source_cidrs: Vec<String>,
    /// Destinations; empty means anywhere.
    #[serde(default)]
    pub destination_cidrs: Vec<String>,
}

/// A port-forwarding rule: DNAT from a public IP and port(s) to a VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WirePortForward {
    /// The rule's id, unique across all rule kinds of the router.
    pub id: u64,
    /// The public IP traffic arrives on.
    pub public_ip: Ipv4Addr,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// Public port or range.
    pub public_ports: WirePorts,
    /// Private port or range: a single port for a single public port, or the very same range.
    pub private_ports: WirePorts,
    /// The VM's guest IP.
    pub vm_ip: Ipv4Addr,
    /// Sources the forward applies to; at least one CIDR.
    pub source_cidrs: Vec<String>,
}

/// A load-balancer rule: connections to a public IP and port spread over members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireLoadBalancer {
    /// The rule's id, unique across all rule kinds of the router.
    pub id: u64,
    /// The public IP the balancer listens on.
    pub public_ip: Ipv4Addr,
    /// The public port.
    pub public_port: u32,
    /// `tcp`, or `http` (needed by cookie stickiness, which implies it).
    #[serde(default = "default_lb_protocol")]
    pub protocol: String,
    /// The PROXY protocol version (1 or 2) the balancer speaks to its members, which then
    /// learn each client's address from it; absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<u8>,
    /// `roundrobin`, `leastconn` or `source`.
    pub algorithm: String,
    /// Where connections go; may be empty (then the rule listens and refuses).
    #[serde(default)]
    pub members: Vec<WireMember>,
    /// Sources the balancer accepts; at least one CIDR.
    pub source_cidrs: Vec<String>,
    /// At most one stickiness policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stickiness: Option<WireStickiness>,
    /// An optional health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<WireHealthCheck>,
}

fn default_lb_protocol() -> String {
    "tcp".to_string()
}

/// One member of a load-balancer rule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireMember {
    /// The VM's guest IP.
    pub vm_ip: Ipv4Addr,
    /// The port on the VM.
    pub port: u32,
}

/// A stickiness policy, with CloudStack's method names and parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireStickiness {
    /// `LbCookie`, `AppCookie` or `SourceBased`.
    pub method: String,
    /// The method's parameters, as CloudStack names them (`cookie-name`, `expire`, …).
    #[serde(default)]
    pub params: std::collections::BTreeMap<String, String>,
}

/// A health check; absent fields take CloudStack's defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireHealthCheck {
    /// HTTP path to request; absent means a TCP connect check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping_path: Option<String>,
    /// Seconds between checks (default 5).
    #[serde(default = "default_interval")]
    pub interval_s: u32,
    /// Seconds a check may take (default 2).
    #[serde(default = "default_timeout")]
    pub response_timeout_s: u32,
    /// Successes before a member counts as healthy again (default 2).
    #[serde(default = "default_healthy")]
    pub healthy_threshold: u32,
    /// Failures before a member counts as unhealthy (default 1).
    #[serde(default = "default_unhealthy")]
    pub unhealthy_threshold: u32,
}

fn default_interval() -> u32 {
    5
}
fn default_timeout() -> u32 {
    2
}
fn default_healthy() -> u32 {
    2
}
fn default_unhealthy() -> u32 {
    1
}
