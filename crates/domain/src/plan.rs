//! Pure planning: a network's rows and a set of pending jobs in, the router's complete config
//! and the bookkeeping to do once the router has applied it out.
//!
//! Every row remembers the job that last changed it. For a batch `S` of pending jobs, a row is
//! in the config when:
//! - Active: always;
//! - Add: its job is in `S`, or is no longer pending (a balancer without members waits in Add);
//! - Revoke: it was applied before, and its job is not in `S` (its delete is not part of this
//!   generation yet).
//!
//! So the config for `S` is exactly "what the router holds, plus the changes of `S`", and a
//! batch the router refuses can be retried with fewer jobs.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use router_config::{
    DhcpLease, DhcpService, EgressPolicy, GuestSide, PublicAddress, PublicSide, RouterConfig,
    WireEgressRule, WireFirewallRule, WireHealthCheck, WireIcmp, WireLoadBalancer, WireMember,
    WirePortForward, WirePorts, WireStickiness, SCHEMA_VERSION,
};

use crate::ids::{AccountId, IpId, JobId, MemberId, NetworkId, PolicyId, RuleId, VmId, ZoneId};
use crate::model::{
    IpRow, MemberRow, NetworkRow, PolicyKind, PolicyRow, Purpose, Rule, State, Traffic, VmNic,
};

mod incremental;
#[cfg(test)]
mod tests;

pub use incremental::{delta, Planned, Touched};

/// Name of the router's public interface.
pub const PUBLIC_INTERFACE: &str = "pub0";
/// Name of the router's guest interface.
pub const GUEST_INTERFACE: &str = "guest0";

/// What the public segment looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicSegment {
    /// Prefix length of public addresses.
    pub prefix_len: u8,
    /// Next hop.
    pub gateway: Option<Ipv4Addr>,
}

/// Everything about one network that its router config is built from.
#[derive(Debug, Clone, Default)]
pub struct NetworkState {
    /// The network (None only in `Default`).
    pub network: Option<NetworkRow>,
    /// Public segment facts.
    pub segment: Option<PublicSegment>,
    /// Its public IPs.
    pub ips: Vec<IpRow>,
    /// Its rules.
    pub rules: Vec<Rule>,
    /// Balancer members.
    pub members: Vec<MemberRow>,
    /// Balancer policies.
    pub policies: Vec<PolicyRow>,
    /// The network's VM NICs, by VM id.
    pub vms: Vec<VmNic>,
    /// The zone's DNS servers (`dns1`, `dns2`), handed to guests through the router.
    pub dns: Vec<Ipv4Addr>,
}

/// The jobs a config is built for.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// Jobs of the network still pending.
    pub pending: BTreeSet<JobId>,
    /// The jobs whose changes this generation carries (a subset of `pending`).
    pub included: BTreeSet<JobId>,
}

impl Batch {
    fn present(&self, state: State, applied: bool, job: Option<JobId>) -> bool {
        let in_batch = job.is_some_and(|j| self.included.contains(&j));
        let pending = job.is_some_and(|j| self.pending.contains(&j));
        match state {
            State::Active => true,
            State::Add => in_batch || !pending,
            State::Revoke => applied && !in_batch,
        }
    }

    fn ip_present(&self, ip: &IpRow) -> bool {
        let in_batch = ip.job_id.is_some_and(|j| self.included.contains(&j));
        let pending = ip.job_id.is_some_and(|j| self.pending.contains(&j));
        match ip.state.as_str() {
            "Allocated" => true,
            "Allocating" => in_batch || !pending,
            "Releasing" => !in_batch,
            _ => false,
        }
    }

    /// Whether a VM's NIC has its lease in the config: a VM being deployed once its deploy is
    /// carried (its lease reaches the router before the VM starts), a running one always, one
    /// being destroyed until its destruction is carried.
    fn vm_present(&self, vm: &VmNic) -> bool {
        let in_batch = vm.job_id.is_some_and(|j| self.included.contains(&j));
        let pending = vm.job_id.is_some_and(|j| self.pending.contains(&j));
        match vm.state.as_str() {
            "Starting" => in_batch || !pending,
            "Running" => true,
            "Expunging" => !in_batch,
            _ => false,
        }
    }
}

/// What to record once the router applied the config of a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Commit {
    /// Rules now held by the router: set Active, applied.
    pub activate_rules: Vec<RuleId>,
    /// Revoked rules the router no longer holds: delete.
    pub delete_rules: Vec<RuleId>,
    /// Balancers left without members: back to Add, not applied.
    pub demote_rules: Vec<RuleId>,
    /// Members now held: Active, applied.
    pub activate_members: Vec<MemberId>,
    /// Revoked members gone: delete.
    pub delete_members: Vec<MemberId>,
    /// Policies now held: Active, applied.
    pub activate_policies: Vec<PolicyId>,
    /// Revoked policies gone: delete.
    pub delete_policies: Vec<PolicyId>,
    /// IPs now on the router: Allocated, applied.
    pub allocate_ips: Vec<IpId>,
    /// IPs released: back to Free.
    pub free_ips: Vec<IpId>,
    /// IPs whose static NAT the router now holds: Active, applied.
    pub activate_nats: Vec<IpId>,
    /// IPs whose disabled static NAT the router no longer holds: no static NAT.
    pub clear_nats: Vec<IpId>,
    /// VMs whose destruction the router took: their leases are gone (the rows go once the
    /// host removed the VMs).
    pub gone_vms: Vec<VmId>,
}

/// A stickiness policy's params, as stored.
pub type StickinessParams = BTreeMap<String, String>;

/// A health check policy's numbers, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HealthNumbers {
    /// Seconds to wait for an answer.
    pub response_time: u32,
    /// Seconds between checks.
    pub interval: u32,
    /// Successes to become healthy.
    pub healthy: u32,
    /// Failures to become unhealthy.
    pub unhealthy: u32,
}

fn ports(start: Option<i64>, end: Option<i64>) -> Option<WirePorts> {
    let start = u32::try_from(start?).ok()?;
    let end = end.and_then(|e| u32::try_from(e).ok()).unwrap_or(start);
    Some(WirePorts { start, end })
}

fn icmp(rule: &Rule) -> Option<WireIcmp> {
    (rule.protocol == "icmp").then(|| WireIcmp {
        icmp_type: rule
            .icmp_type
            .and_then(|t| i32::try_from(t).ok())
            .unwrap_or(-1),
        code: rule
            .icmp_code
            .and_then(|c| i32::try_from(c).ok())
            .unwrap_or(-1),
    })
}

fn or_everyone(cidrs: &[String]) -> Vec<String> {
    if cidrs.is_empty() {
        vec!["0.0.0.0/0".to_string()]
    } else {
        cidrs.to_vec()
    }
}

/// The network row `desired` plans from (an empty one when the state has none).
fn network_of(state: &NetworkState) -> NetworkRow {
    state.network.clone().unwrap_or_else(|| NetworkRow {
        id: NetworkId::from(0),
        uuid: String::new(),
        name: String::new(),
        display_text: String::new(),
        account_id: AccountId::from(0),
        zone_id: ZoneId::from(0),
        offering_id: 0,
        cidr: ipnet::Ipv4Net::default(),
        gateway: Ipv4Addr::UNSPECIFIED,
        state: String::new(),
        egress_allow: false,
        created: 0,
        vlan: None,
        network_domain: String::new(),
    })
}

/// The public side for `batch`, with the ids of the IPs on it; records the IPs it allocates
/// or frees.
fn public_side(
    state: &NetworkState,
    batch: &Batch,
    commit: &mut Commit,
) -> (PublicSide, BTreeSet<IpId>) {
    let segment = state.segment.unwrap_or(PublicSegment {
        prefix_len: 24,
        gateway: None,
    });
    let mut addresses = Vec::new();
    let mut present_ips = BTreeSet::new();
    for ip in &state.ips {
        let in_batch = ip.job_id.is_some_and(|j| batch.included.contains(&j));
        if batch.ip_present(ip) {
            addresses.push(PublicAddress {
                ip: ip.address,
                prefix_len: segment.prefix_len,
                source_nat: ip.source_nat,
                static_nat: static_nat(ip, batch, commit),
            });
            present_ips.insert(ip.id);
            if ip.state == "Allocating" && in_batch {
                commit.allocate_ips.push(ip.id);
            }
        } else if ip.state == "Releasing" && in_batch {
            commit.free_ips.push(ip.id);
        }
    }
    addresses.sort_by_key(|a| a.ip);
    let side = PublicSide {
        interface: PUBLIC_INTERFACE.to_string(),
        addresses,
        gateway: segment.gateway,
    };
    (side, present_ips)
}

/// The guest address a present IP is 1:1 NAT to for `batch`, if any; records the static NAT's
/// activation or removal. It follows its IP's job as a rule follows its own.
fn static_nat(ip: &IpRow, batch: &Batch, commit: &mut Commit) -> Option<Ipv4Addr> {
    let nat = ip.nat.as_ref()?;
    let in_batch = ip.job_id.is_some_and(|j| batch.included.contains(&j));
    let present = batch.present(nat.state, nat.applied, ip.job_id);
    if present && nat.state == State::Add {
        commit.activate_nats.push(ip.id);
    }
    if !present && nat.state == State::Revoke && in_batch {
        commit.clear_nats.push(ip.id);
    }
    present.then_some(nat.vm_ip)
}

fn guest_side(network: &NetworkRow) -> GuestSide {
    GuestSide {
        interface: GUEST_INTERFACE.to_string(),
        cidr: network.cidr.to_string(),
        gateway: network.gateway,
    }
}

fn egress_default(network: &NetworkRow) -> EgressPolicy {
    if network.egress_allow {
        EgressPolicy::Allow
    } else {
        EgressPolicy::Deny
    }
}

/// The DHCP service for `batch` (none without a network); records the VMs whose leases go.
fn dhcp(state: &NetworkState, batch: &Batch, commit: &mut Commit) -> Option<DhcpService> {
    let network = state.network.as_ref()?;
    let mut leases = Vec::new();
    for vm in &state.vms {
        if batch.vm_present(vm) {
            leases.push(DhcpLease {
                mac: vm.mac,
                ip: vm.ip,
                hostname: vm.name.clone(),
            });
        } else if vm.state == "Expunging" {
            commit.gone_vms.push(vm.vm_id);
        }
    }
    leases.sort();
    Some(DhcpService {
        dns_servers: state.dns.clone(),
        domain: Some(network.network_domain.clone()).filter(|d| !d.is_empty()),
        leases,
    })
}

/// One rule as the router gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Wire {
    Firewall(WireFirewallRule),
    Egress(WireEgressRule),
    Forward(WirePortForward),
    Balancer(WireLoadBalancer),
}

/// A rule's wire form for `batch`, or `None` when the config leaves it out; records what its
/// row (and, for a balancer, its members' rows) become once a router holds the config.
/// `members` and `policies` are the balancer's own rows.
fn plan_rule(
    rule: &Rule,
    batch: &Batch,
    present_ips: &BTreeSet<IpId>,
    members: &[&MemberRow],
    policies: &[&PolicyRow],
    commit: &mut Commit,
) -> Option<Wire> {
    let id = |i: RuleId| u64::try_from(i.get()).unwrap_or(0);
    let in_batch = rule.job_id.is_some_and(|j| batch.included.contains(&j));
    let on_present_ip = rule.ip_id.is_none_or(|i| present_ips.contains(&i));
    let mut present = batch.present(rule.state, rule.applied, rule.job_id) && on_present_ip;
    let mut wire = None;
    match (rule.purpose, rule.traffic) {
        (Purpose::Firewall, Some(Traffic::Egress)) if present => {
            wire = Some(Wire::Egress(WireEgressRule {
                id: id(rule.id),
                protocol: rule.protocol.clone(),
                ports: ports(rule.start_port, rule.end_port),
                icmp: icmp(rule),
                source_cidrs: rule.source_cidrs.clone(),
                destination_cidrs: rule.dest_cidrs.clone(),
            }));
        }
        (Purpose::Firewall, _) if present => {
            if let Some(ip) = rule.ip {
                wire = Some(Wire::Firewall(WireFirewallRule {
                    id: id(rule.id),
                    public_ip: ip,
                    protocol: rule.protocol.clone(),
                    ports: ports(rule.start_port, rule.end_port),
                    icmp: icmp(rule),
                    source_cidrs: or_everyone(&rule.source_cidrs),
                }));
            }
        }
        (Purpose::PortForwarding, _) if present => {
            if let (Some(ip), Some(vm_ip), Some(public_ports), Some(private_ports)) = (
                rule.ip,
                rule.vm_ip,
                ports(rule.start_port, rule.end_port),
                ports(rule.private_start, rule.private_end),
            ) {
                wire = Some(Wire::Forward(WirePortForward {
                    id: id(rule.id),
                    public_ip: ip,
                    protocol: rule.protocol.clone(),
                    public_ports,
                    private_ports,
                    vm_ip,
                    source_cidrs: or_everyone(&rule.source_cidrs),
                }));
            }
        }
        (Purpose::LoadBalancing, _) if present => {
            match (
                load_balancer(rule, members, policies, batch, commit),
                rule.ip,
            ) {
                (Some(mut lb), Some(ip)) => {
                    lb.public_ip = ip;
                    wire = Some(Wire::Balancer(lb));
                }
                _ => {
                    // No members: not on the router, and waiting in Add (as CloudStack).
                    present = false;
                    if rule.state == State::Active {
                        commit.demote_rules.push(rule.id);
                    }
                }
            }
        }
        _ => {}
    }
    if present && rule.state == State::Add {
        commit.activate_rules.push(rule.id);
    }
    if !present && rule.state == State::Revoke && in_batch {
        commit.delete_rules.push(rule.id);
    }
    wire
}

/// What a member or policy row becomes once a router holds the config of `batch`, apart from
/// a member's activation (its balancer's planning records that).
fn plan_member(m: &MemberRow, batch: &Batch, commit: &mut Commit) {
    let in_batch = m.job_id.is_some_and(|j| batch.included.contains(&j));
    if m.state == State::Revoke && in_batch {
        commit.delete_members.push(m.id);
    }
}

fn plan_policy(p: &PolicyRow, batch: &Batch, commit: &mut Commit) {
    let in_batch = p.job_id.is_some_and(|j| batch.included.contains(&j));
    if p.state == State::Revoke && in_batch {
        commit.delete_policies.push(p.id);
    } else if p.state == State::Add && in_batch {
        commit.activate_policies.push(p.id);
    }
}

/// The router config of `state` carrying the changes of `batch`, with the bookkeeping to do
/// once a router has applied it. `generation` is stamped into the config.
pub fn desired(state: &NetworkState, batch: &Batch, generation: u64) -> (RouterConfig, Commit) {
    let mut commit = Commit::default();
    let network = network_of(state);
    let (public, present_ips) = public_side(state, batch, &mut commit);

    let members_of: BTreeMap<RuleId, Vec<&MemberRow>> =
        state.members.iter().fold(BTreeMap::new(), |mut m, r| {
            m.entry(r.lb_id).or_default().push(r);
            m
        });
    let policies_of: BTreeMap<RuleId, Vec<&PolicyRow>> =
        state.policies.iter().fold(BTreeMap::new(), |mut m, p| {
            m.entry(p.lb_id).or_default().push(p);
            m
        });

    let mut cfg = RouterConfig {
        schema: SCHEMA_VERSION,
        generation,
        public,
        guest: guest_side(&network),
        egress_default: egress_default(&network),
        firewall_rules: Vec::new(),
        egress_rules: Vec::new(),
        port_forwards: Vec::new(),
        load_balancers: Vec::new(),
        dhcp: dhcp(state, batch, &mut commit),
    };

    for rule in &state.rules {
        let members = members_of.get(&rule.id).map_or(&[][..], Vec::as_slice);
        let policies = policies_of.get(&rule.id).map_or(&[][..], Vec::as_slice);
        match plan_rule(rule, batch, &present_ips, members, policies, &mut commit) {
            Some(Wire::Firewall(r)) => cfg.firewall_rules.push(r),
            Some(Wire::Egress(r)) => cfg.egress_rules.push(r),
            Some(Wire::Forward(r)) => cfg.port_forwards.push(r),
            Some(Wire::Balancer(r)) => cfg.load_balancers.push(r),
            None => {}
        }
    }
    for m in &state.members {
        plan_member(m, batch, &mut commit);
    }
    for p in &state.policies {
        plan_policy(p, batch, &mut commit);
    }
    (cfg, commit)
}

fn load_balancer(
    rule: &Rule,
    members_of: &[&MemberRow],
    policies_of: &[&PolicyRow],
    batch: &Batch,
    commit: &mut Commit,
) -> Option<WireLoadBalancer> {
    let port = rule
        .private_start
        .and_then(|p| u32::try_from(p).ok())
        .unwrap_or(0);
    let mut members: Vec<WireMember> = Vec::new();
    for m in members_of {
        if batch.present(m.state, m.applied, m.job_id) {
            members.push(WireMember {
                vm_ip: m.vm_ip,
                port,
            });
            if m.state == State::Add {
                commit.activate_members.push(m.id);
            }
        }
    }
    if members.is_empty() {
        return None;
    }
    members.sort();
    members.dedup();
    let mut stickiness = None;
    let mut health_check = None;
    for p in policies_of {
        if !batch.present(p.state, p.applied, p.job_id) {
            continue;
        }
        if p.kind == PolicyKind::Stickiness && stickiness.is_none() {
            let params: StickinessParams = serde_json::from_str(&p.params).unwrap_or_default();
            stickiness = Some(WireStickiness {
                method: p.method.clone(),
                params,
            });
        } else if p.kind == PolicyKind::HealthCheck && health_check.is_none() {
            if let Ok(n) = serde_json::from_str::<HealthNumbers>(&p.params) {
                health_check = Some(WireHealthCheck {
                    ping_path: Some(p.method.clone()),
                    interval_s: n.interval,
                    response_timeout_s: n.response_time,
                    healthy_threshold: n.healthy,
                    unhealthy_threshold: n.unhealthy,
                });
            }
        }
    }
    let public_port = rule
        .start_port
        .and_then(|p| u32::try_from(p).ok())
        .unwrap_or(0);
    let proxied = rule.lb_protocol.as_deref() == Some("tcp-proxy");
    Some(WireLoadBalancer {
        id: u64::try_from(rule.id.get()).unwrap_or(0),
        public_ip: Ipv4Addr::UNSPECIFIED,
        public_port,
        // As CloudStack's router: a balancer on port 80 speaks HTTP, so that its members see
        // each client's address (X-Forwarded-For); one with the PROXY protocol tells them in
        // its header instead, and stays TCP.
        protocol: if public_port == 80 && !proxied {
            "http"
        } else {
            "tcp"
        }
        .to_string(),
        // tcp-proxy: version 2, the binary header (haproxy's send-proxy-v2).
        proxy_protocol: proxied.then_some(2),
        algorithm: rule
            .algorithm
            .clone()
            .unwrap_or_else(|| "roundrobin".into()),
        members,
        source_cidrs: or_everyone(&rule.source_cidrs),
        stickiness,
        health_check,
    })
}

/// Applies to `state` what [`Commit`] records in the database, so that a worker's copy of its
/// network's rows stays what the database holds.
///
/// Rows are found by binary search (the store reads them in id order, and a worker's copy
/// keeps that order), so a commit that only activates rows costs what it names, not what the
/// network holds; deletions take a pass over the rows they can concern.
pub fn apply_commit(state: &mut NetworkState, c: &Commit) {
    fn set<T: Ord + Copy>(v: &[T]) -> BTreeSet<T> {
        v.iter().copied().collect()
    }
    for id in &c.activate_rules {
        if let Some(r) = find_mut(&mut state.rules, *id, |r| r.id) {
            if r.state == State::Add {
                r.state = State::Active;
                r.applied = true;
            }
        }
    }
    for id in &c.demote_rules {
        if let Some(r) = find_mut(&mut state.rules, *id, |r| r.id) {
            if r.state == State::Active {
                r.state = State::Add;
                r.applied = false;
            }
        }
    }
    let delete = set(&c.delete_rules);
    if !delete.is_empty() {
        for r in &mut state.rules {
            if r.related_id.is_some_and(|x| delete.contains(&x)) {
                r.related_id = None;
            }
        }
        state.rules.retain(|r| !delete.contains(&r.id));
    }
    let m_off = set(&c.delete_members);
    if !delete.is_empty() || !m_off.is_empty() {
        state
            .members
            .retain(|m| !delete.contains(&m.lb_id) && !m_off.contains(&m.id));
    }
    for id in &c.activate_members {
        if let Some(m) = find_mut(&mut state.members, *id, |m| m.id) {
            if m.state == State::Add {
                m.state = State::Active;
                m.applied = true;
            }
        }
    }
    let p_off = set(&c.delete_policies);
    if !delete.is_empty() || !p_off.is_empty() {
        state
            .policies
            .retain(|p| !delete.contains(&p.lb_id) && !p_off.contains(&p.id));
    }
    for id in &c.activate_policies {
        if let Some(p) = find_mut(&mut state.policies, *id, |p| p.id) {
            if p.state == State::Add {
                p.state = State::Active;
                p.applied = true;
            }
        }
    }
    if !c.gone_vms.is_empty() {
        let gone = set(&c.gone_vms);
        state.vms.retain(|vm| !gone.contains(&vm.vm_id));
    }
    let (ip_on, ip_off) = (set(&c.allocate_ips), set(&c.free_ips));
    let (nat_on, nat_off) = (set(&c.activate_nats), set(&c.clear_nats));
    state.ips.retain(|ip| !ip_off.contains(&ip.id));
    for ip in &mut state.ips {
        if ip_on.contains(&ip.id) && ip.state == "Allocating" {
            ip.state = "Allocated".to_string();
            ip.applied = true;
        }
        if nat_off.contains(&ip.id) && ip.nat.as_ref().is_some_and(|n| n.state == State::Revoke) {
            ip.nat = None;
        }
        if let Some(n) = ip.nat.as_mut().filter(|_| nat_on.contains(&ip.id)) {
            if n.state == State::Add {
                n.state = State::Active;
                n.applied = true;
            }
        }
    }
}

/// The row with id `id`: by binary search when `rows` are in id order, by a scan otherwise.
fn find_mut<T, K: Ord + Copy>(rows: &mut [T], id: K, key: impl Fn(&T) -> K) -> Option<&mut T> {
    let at = match rows.binary_search_by_key(&id, &key) {
        Ok(i) => Some(i),
        Err(_) => rows.iter().position(|r| key(r) == id),
    };
    at.map(move |i| &mut rows[i])
}

/// The row with id `id`, found as [`find_mut`] finds it.
fn find<T, K: Ord + Copy>(rows: &[T], id: K, key: impl Fn(&T) -> K) -> Option<&T> {
    match rows.binary_search_by_key(&id, &key) {
        Ok(i) => rows.get(i),
        Err(_) => rows.iter().find(|r| key(r) == id),
    }
}
