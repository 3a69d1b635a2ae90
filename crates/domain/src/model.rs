//! The rows the server reasons about, as plain values (the store reads them from the database).
//!
//! Rule, member and policy rows carry a `state` (Add, Active, Revoke as CloudStack), an
//! `applied` flag (whether some router generation held them) and the id of the job that last
//! changed them. [`crate::plan`] turns them into a router config for any subset of pending jobs.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::ids::{
    AccountId, IpId, JobId, MemberId, NetworkId, PolicyId, RuleId, VlanRangeId, VmId, ZoneId,
};
use crate::UnknownValue;

/// Lifecycle state of a rule, member or policy row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Written, waiting for a router generation that holds it.
    Add,
    /// Held by the router's applied generation.
    Active,
    /// Delete requested; removed once a generation without it is applied.
    Revoke,
}

impl State {
    /// Its database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Add => "Add",
            State::Active => "Active",
            State::Revoke => "Revoke",
        }
    }

    /// As the API shows it (Revoke is shown as Deleting, as CloudStack does).
    pub fn api(self) -> &'static str {
        match self {
            State::Add => "Add",
            State::Active => "Active",
            State::Revoke => "Deleting",
        }
    }
}

impl std::str::FromStr for State {
    type Err = UnknownValue;

    /// From its database spelling.
    fn from_str(s: &str) -> Result<State, UnknownValue> {
        match s {
            "Add" => Ok(State::Add),
            "Active" => Ok(State::Active),
            "Revoke" => Ok(State::Revoke),
            _ => Err(UnknownValue::new("rule state", s)),
        }
    }
}

/// What a rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// An ingress or egress firewall rule.
    Firewall,
    /// Port forwarding.
    PortForwarding,
    /// Load balancing.
    LoadBalancing,
    /// An IP forwarding rule of a static-NAT IP (createIpForwardingRule). The router holds
    /// nothing for it: the IP's static NAT already sends every port to the VM, and what the
    /// rule opens is its related firewall rule.
    StaticNat,
}

impl Purpose {
    /// Its database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Firewall => "Firewall",
            Purpose::PortForwarding => "PortForwarding",
            Purpose::LoadBalancing => "LoadBalancing",
            Purpose::StaticNat => "StaticNat",
        }
    }
}

impl std::str::FromStr for Purpose {
    type Err = UnknownValue;

    /// From its database spelling.
    fn from_str(s: &str) -> Result<Purpose, UnknownValue> {
        match s {
            "Firewall" => Ok(Purpose::Firewall),
            "PortForwarding" => Ok(Purpose::PortForwarding),
            "LoadBalancing" => Ok(Purpose::LoadBalancing),
            "StaticNat" => Ok(Purpose::StaticNat),
            _ => Err(UnknownValue::new("rule purpose", s)),
        }
    }
}

/// Direction of a firewall rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traffic {
    /// To a public IP.
    Ingress,
    /// From the guest network.
    Egress,
}

impl Traffic {
    /// Its database and API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Traffic::Ingress => "Ingress",
            Traffic::Egress => "Egress",
        }
    }
}

impl std::str::FromStr for Traffic {
    type Err = UnknownValue;

    /// From its database spelling.
    fn from_str(s: &str) -> Result<Traffic, UnknownValue> {
        match s {
            "Ingress" => Ok(Traffic::Ingress),
            "Egress" => Ok(Traffic::Egress),
            _ => Err(UnknownValue::new("traffic type", s)),
        }
    }
}

/// The kind of a balancer's policy row; serialized (in a job's payload) as its database
/// spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PolicyKind {
    /// A stickiness policy.
    #[serde(rename = "stickiness")]
    Stickiness,
    /// A health-check policy.
    #[serde(rename = "healthcheck")]
    HealthCheck,
}

impl PolicyKind {
    /// Its database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::Stickiness => "stickiness",
            PolicyKind::HealthCheck => "healthcheck",
        }
    }
}

impl std::str::FromStr for PolicyKind {
    type Err = UnknownValue;

    /// From its database spelling.
    fn from_str(s: &str) -> Result<PolicyKind, UnknownValue> {
        match s {
            "stickiness" => Ok(PolicyKind::Stickiness),
            "healthcheck" => Ok(PolicyKind::HealthCheck),
            _ => Err(UnknownValue::new("policy kind", s)),
        }
    }
}

/// A network's router, as the server tracks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouterState {
    /// Made, not yet confirmed a generation.
    Starting,
    /// Confirmed a generation.
    Running,
    /// Could not start.
    Error,
    /// Stopped by an admin (stopRouter): nothing of it runs on its host, and its network's
    /// jobs end in the database alone until it starts again with the whole config.
    Stopped,
}

impl RouterState {
    /// Its database and API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RouterState::Starting => "Starting",
            RouterState::Running => "Running",
            RouterState::Error => "Error",
            RouterState::Stopped => "Stopped",
        }
    }
}

impl std::str::FromStr for RouterState {
    type Err = UnknownValue;

    /// From its database spelling.
    fn from_str(s: &str) -> Result<RouterState, UnknownValue> {
        match s {
            "Starting" => Ok(RouterState::Starting),
            "Running" => Ok(RouterState::Running),
            "Error" => Ok(RouterState::Error),
            "Stopped" => Ok(RouterState::Stopped),
            _ => Err(UnknownValue::new("router state", s)),
        }
    }
}

/// One rule row, whatever its purpose (the purpose-specific fields are `None` elsewhere).
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Internal id; also the rule's id in router configs.
    pub id: RuleId,
    /// API id.
    pub uuid: String,
    /// What it does.
    pub purpose: Purpose,
    /// For firewall rules.
    pub traffic: Option<Traffic>,
    /// Its network.
    pub network_id: NetworkId,
    /// Its public IP (not for egress).
    pub ip_id: Option<IpId>,
    /// That IP's address.
    pub ip: Option<Ipv4Addr>,
    /// Owner.
    pub account_id: AccountId,
    /// tcp, udp, icmp or all (load balancers: tcp).
    pub protocol: String,
    /// Public (or, for egress, destination) port range; `None` means all ports.
    pub start_port: Option<i64>,
    /// End of that range.
    pub end_port: Option<i64>,
    /// ICMP type, -1 for any.
    pub icmp_type: Option<i64>,
    /// ICMP code, -1 for any.
    pub icmp_code: Option<i64>,
    /// Source CIDRs.
    pub source_cidrs: Vec<String>,
    /// Destination CIDRs (egress).
    pub dest_cidrs: Vec<String>,
    /// Lifecycle state.
    pub state: State,
    /// Whether an applied router generation held it.
    pub applied: bool,
    /// The job that last changed it.
    pub job_id: Option<JobId>,
    /// For a firewall rule opened by a forward or balancer: that rule's id.
    pub related_id: Option<RuleId>,
    /// Shown or hidden (`fordisplay`).
    pub display: bool,
    /// Forward target VM.
    pub vm_id: Option<VmId>,
    /// Forward target address.
    pub vm_ip: Option<Ipv4Addr>,
    /// Private port range (forwards), private port (balancers).
    pub private_start: Option<i64>,
    /// End of the private range.
    pub private_end: Option<i64>,
    /// Balancer name.
    pub name: Option<String>,
    /// Balancer description.
    pub description: Option<String>,
    /// Balancer algorithm.
    pub algorithm: Option<String>,
    /// Balancer protocol as the API gave it (tcp).
    pub lb_protocol: Option<String>,
    /// Creation time (unix ms).
    pub created: i64,
    /// The network's uuid.
    pub network_uuid: String,
    /// The IP's uuid.
    pub ip_uuid: Option<String>,
    /// The target VM's uuid.
    pub vm_uuid: Option<String>,
    /// The target VM's name.
    pub vm_name: Option<String>,
    /// The target VM's display name.
    pub vm_display: Option<String>,
}

/// Splits a stored comma list.
pub fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

/// A balancer's member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRow {
    /// Internal id.
    pub id: MemberId,
    /// The balancer rule.
    pub lb_id: RuleId,
    /// The VM.
    pub vm_id: VmId,
    /// The address balanced to.
    pub vm_ip: Ipv4Addr,
    /// Lifecycle state.
    pub state: State,
    /// Whether an applied generation held it.
    pub applied: bool,
    /// The job that last changed it.
    pub job_id: Option<JobId>,
}

/// A balancer's stickiness or health-check policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRow {
    /// Internal id.
    pub id: PolicyId,
    /// API id.
    pub uuid: String,
    /// The balancer rule.
    pub lb_id: RuleId,
    /// `stickiness` or `healthcheck`.
    pub kind: PolicyKind,
    /// Name (stickiness).
    pub name: String,
    /// Description.
    pub description: String,
    /// Stickiness method, or the health check's ping path.
    pub method: String,
    /// JSON: stickiness params, or the health check's numbers.
    pub params: String,
    /// Lifecycle state.
    pub state: State,
    /// Whether an applied generation held it.
    pub applied: bool,
    /// The job that last changed it.
    pub job_id: Option<JobId>,
    /// `fordisplay`.
    pub display: bool,
}

/// A public IP as the router sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpRow {
    /// Internal id.
    pub id: IpId,
    /// API id.
    pub uuid: String,
    /// The address.
    pub address: Ipv4Addr,
    /// Free, Allocating, Allocated or Releasing.
    pub state: String,
    /// Owner, when allocated.
    pub account_id: Option<AccountId>,
    /// Network, when associated.
    pub network_id: Option<NetworkId>,
    /// The network's source-NAT address.
    pub source_nat: bool,
    /// The job that last changed it.
    pub job_id: Option<JobId>,
    /// Whether an applied generation held it.
    pub applied: bool,
    /// When it was allocated.
    pub allocated: Option<i64>,
    /// Its range.
    pub vlan_range_id: VlanRangeId,
    /// Its zone.
    pub zone_id: ZoneId,
    /// Its static NAT (1:1 to a VM), if it has or is getting one.
    pub nat: Option<IpNat>,
}

/// A public IP's static NAT: the VM it is 1:1 NAT to, with the lifecycle of a rule. It is
/// carried by the IP's row, and the job that enables or disables it is the IP's `job_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpNat {
    /// The VM.
    pub vm_id: VmId,
    /// Its guest address.
    pub vm_ip: Ipv4Addr,
    /// Add (being enabled), Active, or Revoke (being disabled).
    pub state: State,
    /// Whether an applied generation held it.
    pub applied: bool,
}

/// A guest network with what its router needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRow {
    /// Internal id.
    pub id: NetworkId,
    /// API id.
    pub uuid: String,
    /// Name.
    pub name: String,
    /// Display text.
    pub display_text: String,
    /// Owner.
    pub account_id: AccountId,
    /// Zone.
    pub zone_id: ZoneId,
    /// Offering.
    pub offering_id: i64,
    /// Guest CIDR.
    pub cidr: ipnet::Ipv4Net,
    /// Guest gateway (the router's guest address).
    pub gateway: Ipv4Addr,
    /// Implemented, Destroy…
    pub state: String,
    /// Whether egress is allowed by default (from the offering).
    pub egress_allow: bool,
    /// Creation time.
    pub created: i64,
    /// Its VLAN in the zone's guest range (none for a network made before VLANs).
    pub vlan: Option<u16>,
    /// Its DNS domain (CloudStack's `networkdomain`).
    pub network_domain: String,
}

/// A VM's NIC on a guest network, as the router's DHCP and DNS serve it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmNic {
    /// The VM.
    pub vm_id: VmId,
    /// Its host name (the VM's name).
    pub name: String,
    /// Its guest address.
    pub ip: Ipv4Addr,
    /// Its NIC's MAC.
    pub mac: router_config::MacAddr,
    /// Starting (deploy pending), Running, or Expunging (destruction pending).
    pub state: String,
    /// The job that last changed it: its deploy or its destruction.
    pub job_id: Option<JobId>,
}

/// A rule about to be written.
#[derive(Debug, Clone)]
pub struct NewRule {
    /// API id, chosen by the caller.
    pub uuid: String,
    /// What it does.
    pub purpose: Purpose,
    /// For firewall rules.
    pub traffic: Option<Traffic>,
    /// Its network.
    pub network_id: NetworkId,
    /// Its public IP (not for egress).
    pub ip_id: Option<IpId>,
    /// Owner.
    pub account_id: AccountId,
    /// tcp, udp, icmp or all.
    pub protocol: String,
    /// Public (or, for egress, destination) port range; `None` means all ports.
    pub ports: Option<(i64, i64)>,
    /// ICMP type and code.
    pub icmp: Option<(i64, i64)>,
    /// Source CIDRs.
    pub sources: Vec<Ipv4Net>,
    /// Destination CIDRs (egress).
    pub dests: Vec<Ipv4Net>,
    /// For a firewall rule opened by a forward or balancer: that rule's id.
    pub related_id: Option<RuleId>,
    /// Shown or hidden (`fordisplay`).
    pub display: bool,
    /// Forward target VM.
    pub vm_id: Option<VmId>,
    /// Forward target address.
    pub vm_ip: Option<String>,
    /// Private port range (forwards), private port (balancers).
    pub private: Option<(i64, i64)>,
    /// Balancer name.
    pub name: Option<String>,
    /// Balancer description.
    pub description: Option<String>,
    /// Balancer algorithm.
    pub algorithm: Option<String>,
    /// Balancer protocol as the API gave it.
    pub lb_protocol: Option<String>,
}

impl NewRule {
    /// The rule as the conflict checks see it.
    pub fn candidate(&self) -> crate::checks::Candidate {
        crate::checks::Candidate {
            uuid: self.uuid.clone(),
            purpose: self.purpose,
            traffic: self.traffic,
            protocol: self.protocol.clone(),
            ports: self.ports,
            icmp: self.icmp,
            sources: self.sources.clone(),
            dests: self.dests.clone(),
        }
    }
}
