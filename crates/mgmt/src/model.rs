//! The rows the server reasons about, as plain values, and how they are read from the database.
//!
//! Rule, member and policy rows carry a `state` (Add, Active, Revoke as CloudStack), an
//! `applied` flag (whether some router generation held them) and the id of the job that last
//! changed them. [`crate::plan`] turns them into a router config for any subset of pending jobs.

use std::net::Ipv4Addr;

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::db::{flag, opt_str};

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

    fn parse(s: &str) -> State {
        match s {
            "Active" => State::Active,
            "Revoke" => State::Revoke,
            _ => State::Add,
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
}

impl Purpose {
    /// Its database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Firewall => "Firewall",
            Purpose::PortForwarding => "PortForwarding",
            Purpose::LoadBalancing => "LoadBalancing",
        }
    }

    /// From its database spelling.
    pub fn parse(s: &str) -> Purpose {
        match s {
            "PortForwarding" => Purpose::PortForwarding,
            "LoadBalancing" => Purpose::LoadBalancing,
            _ => Purpose::Firewall,
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

/// One rule row, whatever its purpose (the purpose-specific fields are `None` elsewhere).
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Internal id; also the rule's id in router configs.
    pub id: i64,
    /// API id.
    pub uuid: String,
    /// What it does.
    pub purpose: Purpose,
    /// For firewall rules.
    pub traffic: Option<Traffic>,
    /// Its network.
    pub network_id: i64,
    /// Its public IP (not for egress).
    pub ip_id: Option<i64>,
    /// That IP's address.
    pub ip: Option<Ipv4Addr>,
    /// Owner.
    pub account_id: i64,
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
    pub job_id: Option<i64>,
    /// For a firewall rule opened by a forward or balancer: that rule's id.
    pub related_id: Option<i64>,
    /// Shown or hidden (`fordisplay`).
    pub display: bool,
    /// Forward target VM.
    pub vm_id: Option<i64>,
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

/// The columns [`Rule::from_row`] reads, from [`RULE_FROM`].
pub const RULE_COLUMNS: &str = "r.id, r.uuid, r.purpose, r.traffic_type, r.network_id, r.ip_id, \
     p.address AS ip_address, r.account_id, r.protocol, r.start_port, r.end_port, r.icmp_type, \
     r.icmp_code, r.source_cidrs, r.dest_cidrs, r.state, r.applied, r.job_id, r.related_id, \
     r.display, r.vm_id, r.vm_ip, r.private_start, r.private_end, r.name, r.description, \
     r.algorithm, r.lb_protocol, r.created, n.uuid AS network_uuid, p.uuid AS ip_uuid, \
     v.uuid AS vm_uuid, v.name AS vm_name, v.display_name AS vm_display";

/// The `FROM` clause for [`RULE_COLUMNS`].
pub const RULE_FROM: &str = "rules r JOIN networks n ON n.id = r.network_id \
     LEFT JOIN public_ips p ON p.id = r.ip_id LEFT JOIN vms v ON v.id = r.vm_id";

/// Splits a stored comma list.
pub fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

impl Rule {
    /// Reads a row selected with [`RULE_COLUMNS`].
    ///
    /// # Errors
    /// A column that is missing or of the wrong type.
    pub fn from_row(row: &AnyRow) -> Result<Rule, sqlx::Error> {
        let traffic = opt_str(row, "traffic_type")?.map(|t| {
            if t == "Egress" {
                Traffic::Egress
            } else {
                Traffic::Ingress
            }
        });
        Ok(Rule {
            id: row.try_get("id")?,
            uuid: row.try_get("uuid")?,
            purpose: Purpose::parse(&row.try_get::<String, _>("purpose")?),
            traffic,
            network_id: row.try_get("network_id")?,
            ip_id: row.try_get("ip_id")?,
            ip: opt_str(row, "ip_address")?.and_then(|s| s.parse().ok()),
            account_id: row.try_get("account_id")?,
            protocol: row.try_get("protocol")?,
            start_port: row.try_get("start_port")?,
            end_port: row.try_get("end_port")?,
            icmp_type: row.try_get("icmp_type")?,
            icmp_code: row.try_get("icmp_code")?,
            source_cidrs: split_list(&row.try_get::<String, _>("source_cidrs")?),
            dest_cidrs: split_list(&row.try_get::<String, _>("dest_cidrs")?),
            state: State::parse(&row.try_get::<String, _>("state")?),
            applied: flag(row, "applied")?,
            job_id: row.try_get("job_id")?,
            related_id: row.try_get("related_id")?,
            display: flag(row, "display")?,
            vm_id: row.try_get("vm_id")?,
            vm_ip: opt_str(row, "vm_ip")?.and_then(|s| s.parse().ok()),
            private_start: row.try_get("private_start")?,
            private_end: row.try_get("private_end")?,
            name: opt_str(row, "name")?,
            description: opt_str(row, "description")?,
            algorithm: opt_str(row, "algorithm")?,
            lb_protocol: opt_str(row, "lb_protocol")?,
            created: row.try_get("created")?,
            network_uuid: row.try_get("network_uuid")?,
            ip_uuid: opt_str(row, "ip_uuid")?,
            vm_uuid: opt_str(row, "vm_uuid")?,
            vm_name: opt_str(row, "vm_name")?,
            vm_display: opt_str(row, "vm_display")?,
        })
    }
}

/// A balancer's member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRow {
    /// Internal id.
    pub id: i64,
    /// The balancer rule.
    pub lb_id: i64,
    /// The VM.
    pub vm_id: i64,
    /// The address balanced to.
    pub vm_ip: Ipv4Addr,
    /// Lifecycle state.
    pub state: State,
    /// Whether an applied generation held it.
    pub applied: bool,
    /// The job that last changed it.
    pub job_id: Option<i64>,
}

impl MemberRow {
    /// Reads `SELECT id, lb_id, vm_id, vm_ip, state, applied, job_id FROM lb_members`.
    ///
    /// # Errors
    /// A column that is missing or of the wrong type.
    pub fn from_row(row: &AnyRow) -> Result<MemberRow, sqlx::Error> {
        Ok(MemberRow {
            id: row.try_get("id")?,
            lb_id: row.try_get("lb_id")?,
            vm_id: row.try_get("vm_id")?,
            vm_ip: row
                .try_get::<String, _>("vm_ip")?
                .parse()
                .unwrap_or(Ipv4Addr::UNSPECIFIED),
            state: State::parse(&row.try_get::<String, _>("state")?),
            applied: flag(row, "applied")?,
            job_id: row.try_get("job_id")?,
        })
    }
}

/// A balancer's stickiness or health-check policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRow {
    /// Internal id.
    pub id: i64,
    /// API id.
    pub uuid: String,
    /// The balancer rule.
    pub lb_id: i64,
    /// `stickiness` or `healthcheck`.
    pub kind: String,
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
    pub job_id: Option<i64>,
    /// `fordisplay`.
    pub display: bool,
}

/// Columns for [`PolicyRow::from_row`].
pub const POLICY_COLUMNS: &str =
    "id, uuid, lb_id, kind, name, description, method, params, state, applied, job_id, display";

impl PolicyRow {
    /// Reads a row selected with [`POLICY_COLUMNS`].
    ///
    /// # Errors
    /// A column that is missing or of the wrong type.
    pub fn from_row(row: &AnyRow) -> Result<PolicyRow, sqlx::Error> {
        Ok(PolicyRow {
            id: row.try_get("id")?,
            uuid: row.try_get("uuid")?,
            lb_id: row.try_get("lb_id")?,
            kind: row.try_get("kind")?,
            name: row.try_get("name")?,
            description: row.try_get("description")?,
            method: row.try_get("method")?,
            params: row.try_get("params")?,
            state: State::parse(&row.try_get::<String, _>("state")?),
            applied: flag(row, "applied")?,
            job_id: row.try_get("job_id")?,
            display: flag(row, "display")?,
        })
    }
}

/// A public IP as the router sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpRow {
    /// Internal id.
    pub id: i64,
    /// API id.
    pub uuid: String,
    /// The address.
    pub address: Ipv4Addr,
    /// Free, Allocating, Allocated or Releasing.
    pub state: String,
    /// Owner, when allocated.
    pub account_id: Option<i64>,
    /// Network, when associated.
    pub network_id: Option<i64>,
    /// The network's source-NAT address.
    pub source_nat: bool,
    /// The job that last changed it.
    pub job_id: Option<i64>,
    /// Whether an applied generation held it.
    pub applied: bool,
    /// When it was allocated.
    pub allocated: Option<i64>,
    /// Its range.
    pub vlan_range_id: i64,
    /// Its zone.
    pub zone_id: i64,
}

/// Columns for [`IpRow::from_row`].
pub const IP_COLUMNS: &str = "id, uuid, address, state, account_id, network_id, source_nat, \
     job_id, applied, allocated, vlan_range_id, zone_id";

impl IpRow {
    /// Reads a row selected with [`IP_COLUMNS`].
    ///
    /// # Errors
    /// A column that is missing or of the wrong type.
    pub fn from_row(row: &AnyRow) -> Result<IpRow, sqlx::Error> {
        Ok(IpRow {
            id: row.try_get("id")?,
            uuid: row.try_get("uuid")?,
            address: row
                .try_get::<String, _>("address")?
                .parse()
                .unwrap_or(Ipv4Addr::UNSPECIFIED),
            state: row.try_get("state")?,
            account_id: row.try_get("account_id")?,
            network_id: row.try_get("network_id")?,
            source_nat: flag(row, "source_nat")?,
            job_id: row.try_get("job_id")?,
            applied: flag(row, "applied")?,
            allocated: row.try_get("allocated")?,
            vlan_range_id: row.try_get("vlan_range_id")?,
            zone_id: row.try_get("zone_id")?,
        })
    }
}

/// A guest network with what its router needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRow {
    /// Internal id.
    pub id: i64,
    /// API id.
    pub uuid: String,
    /// Name.
    pub name: String,
    /// Display text.
    pub display_text: String,
    /// Owner.
    pub account_id: i64,
    /// Zone.
    pub zone_id: i64,
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
}

/// Columns for [`NetworkRow::from_row`], for `networks n JOIN network_offerings o`.
pub const NETWORK_COLUMNS: &str = "n.id, n.uuid, n.name, n.display_text, n.account_id, \
     n.zone_id, n.offering_id, n.cidr, n.gateway, n.state, o.egress_default_allow, n.created";

impl NetworkRow {
    /// Reads a row selected with [`NETWORK_COLUMNS`].
    ///
    /// # Errors
    /// A column that is missing or of the wrong type.
    pub fn from_row(row: &AnyRow) -> Result<NetworkRow, sqlx::Error> {
        Ok(NetworkRow {
            id: row.try_get("id")?,
            uuid: row.try_get("uuid")?,
            name: row.try_get("name")?,
            display_text: row.try_get("display_text")?,
            account_id: row.try_get("account_id")?,
            zone_id: row.try_get("zone_id")?,
            offering_id: row.try_get("offering_id")?,
            cidr: row
                .try_get::<String, _>("cidr")?
                .parse()
                .unwrap_or_default(),
            gateway: row
                .try_get::<String, _>("gateway")?
                .parse()
                .unwrap_or(Ipv4Addr::UNSPECIFIED),
            state: row.try_get("state")?,
            egress_allow: flag(row, "egress_default_allow")?,
            created: row.try_get("created")?,
        })
    }
}
