//! Response objects in CloudStack's shapes: field names, types (ports of forwards and balancers
//! are strings, of firewall rules numbers), dates, and the list envelope.

use serde_json::{json, Map, Value};

pub mod accounts;

use std::net::Ipv4Addr;

use domain::guest::vlan_uri;
use domain::job::{cmd_class, JobStatus};
use domain::model::{IpRow, NetworkRow};
use store::jobs::JobRecord;

pub mod error;
pub mod infra;
pub mod job;
pub mod lb;
pub mod rules;
mod site;

pub use site::Site;

/// A date as CloudStack writes it: `2025-10-30T19:21:39+0000`.
pub fn date(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => {
            let f = time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second]+0000"
            );
            t.format(&f).unwrap_or_default()
        }
        Err(_) => String::new(),
    }
}

/// A list response: `{"count": total, "<key>": [...]}`, or `{}` when nothing matches.
pub fn list(key: &str, total: usize, items: Vec<Value>) -> Value {
    if total == 0 {
        return json!({});
    }
    let mut m = Map::new();
    m.insert("count".into(), json!(total));
    m.insert(key.into(), Value::Array(items));
    Value::Object(m)
}

/// Wraps an object under its name: `{"firewallrule": {...}}`.
pub fn wrap(key: &str, v: Value) -> Value {
    let mut m = Map::new();
    m.insert(key.into(), v);
    Value::Object(m)
}

fn insert_opt(m: &mut Map<String, Value>, k: &str, v: Option<Value>) {
    if let Some(v) = v {
        if !v.is_null() {
            m.insert(k.into(), v);
        }
    }
}

/// Who owns something, as several responses carry it.
#[derive(Debug, Clone)]
pub struct Owner {
    /// Account name.
    pub account: String,
    /// Domain uuid.
    pub domain_id: String,
    /// Domain name.
    pub domain: String,
    /// Domain path.
    pub domain_path: String,
}

/// Facts about a public IP's surroundings that its response carries.
#[derive(Debug, Clone, Default)]
pub struct IpContext {
    /// Zone uuid and name.
    pub zone: (String, String),
    /// Owner, when allocated.
    pub owner: Option<Owner>,
    /// The VLAN range's uuid.
    pub vlan_uuid: String,
    /// The VLAN range's name.
    pub vlan_name: String,
    /// The associated network's uuid and name.
    pub network: Option<(String, String)>,
    /// Whether rules use it.
    pub has_rules: bool,
    /// The VM of its static NAT (uuid, name, display name), when it has one.
    pub nat_vm: Option<(String, String, String)>,
}

/// A public IP: IPAddressResponse.
pub fn ip_address(ip: &IpRow, cx: &IpContext, admin: bool) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(ip.uuid));
    m.insert("ipaddress".into(), json!(ip.address.to_string()));
    insert_opt(&mut m, "allocated", ip.allocated.map(|a| json!(date(a))));
    m.insert("zoneid".into(), json!(cx.zone.0));
    m.insert("zonename".into(), json!(cx.zone.1));
    m.insert("issourcenat".into(), json!(ip.source_nat));
    if let Some(o) = &cx.owner {
        m.insert("account".into(), json!(o.account));
        m.insert("domainid".into(), json!(o.domain_id));
        m.insert("domain".into(), json!(o.domain));
        m.insert("domainpath".into(), json!(o.domain_path));
    }
    m.insert("forvirtualnetwork".into(), json!(true));
    m.insert("vlanid".into(), json!(cx.vlan_uuid));
    m.insert("vlanname".into(), json!(cx.vlan_name));
    let nat = ip
        .nat
        .as_ref()
        .filter(|n| n.state != domain::model::State::Revoke);
    m.insert("isstaticnat".into(), json!(nat.is_some()));
    if let (Some(n), Some((uuid, name, display))) = (nat, &cx.nat_vm) {
        m.insert("virtualmachineid".into(), json!(uuid));
        m.insert("virtualmachinename".into(), json!(name));
        m.insert("virtualmachinedisplayname".into(), json!(display));
        m.insert("virtualmachinetype".into(), json!("User"));
        m.insert("vmipaddress".into(), json!(n.vm_ip.to_string()));
    }
    m.insert("issystem".into(), json!(false));
    if let Some((uuid, name)) = &cx.network {
        m.insert("associatednetworkid".into(), json!(uuid));
        m.insert("associatednetworkname".into(), json!(name));
        m.insert("networkid".into(), json!(uuid));
    }
    let state = match ip.state.as_str() {
        "Allocating" => "Allocating",
        "Allocated" => "Allocated",
        "Releasing" => "Releasing",
        _ => "Free",
    };
    m.insert("state".into(), json!(state));
    m.insert("tags".into(), json!([]));
    m.insert("isportable".into(), json!(false));
    if admin {
        m.insert("fordisplay".into(), json!(true));
    }
    m.insert("hasrules".into(), json!(cx.has_rules));
    m.insert("forsystemvms".into(), json!(false));
    Value::Object(m)
}

/// The names of the services every network provides (what [`services`] lists).
pub fn service_names() -> Vec<String> {
    services()
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The services both offerings provide, with the capabilities clients look for.
pub fn services() -> Value {
    let vr = json!([{"name": "VirtualRouter"}]);
    json!([
        {"name": "SourceNat", "provider": vr, "capability": [
            {"name": "SupportedSourceNatTypes", "value": "peraccount", "canchooseservicecapability": false}]},
        {"name": "Firewall", "provider": vr, "capability": [
            {"name": "SupportedProtocols", "value": "tcp,udp,icmp", "canchooseservicecapability": false},
            {"name": "SupportedEgressProtocols", "value": "tcp,udp,icmp,all", "canchooseservicecapability": false},
            {"name": "SupportedTrafficDirection", "value": "ingress, egress", "canchooseservicecapability": false}]},
        {"name": "PortForwarding", "provider": vr, "capability": [
            {"name": "SupportedProtocols", "value": "tcp,udp", "canchooseservicecapability": false}]},
        {"name": "StaticNat", "provider": vr, "capability": []},
        {"name": "Lb", "provider": vr, "capability": [
            {"name": "SupportedLBAlgorithms", "value": "roundrobin,leastconn,source", "canchooseservicecapability": false},
            {"name": "SupportedLBIsolation", "value": "dedicated", "canchooseservicecapability": false},
            {"name": "SupportedProtocols", "value": "tcp", "canchooseservicecapability": false},
            {"name": "SupportedStickinessMethods", "value": stickiness_capability(), "canchooseservicecapability": false},
            {"name": "HealthCheckPolicy", "value": "true", "canchooseservicecapability": false},
            {"name": "LbSchemes", "value": "Public", "canchooseservicecapability": false}]},
        // Every router serves its guests DHCP (static leases) and DNS (their names, and
        // forwarding to the zone's servers).
        {"name": "Dhcp", "provider": vr, "capability": []},
        {"name": "Dns", "provider": vr, "capability": []}
    ])
}

fn stickiness_capability() -> String {
    json!([
        {"methodname": "LbCookie", "paramlist": [
            {"paramname": "cookie-name", "required": false, "isflag": false},
            {"paramname": "mode", "required": false, "isflag": false},
            {"paramname": "nocache", "required": false, "isflag": true},
            {"paramname": "indirect", "required": false, "isflag": true},
            {"paramname": "postonly", "required": false, "isflag": true},
            {"paramname": "domain", "required": false, "isflag": false}]},
        {"methodname": "AppCookie", "paramlist": [
            {"paramname": "cookie-name", "required": false, "isflag": false},
            {"paramname": "length", "required": false, "isflag": false},
            {"paramname": "holdtime", "required": false, "isflag": false},
            {"paramname": "request-learn", "required": false, "isflag": true}]},
        {"methodname": "SourceBased", "paramlist": [
            {"paramname": "tablesize", "required": false, "isflag": false},
            {"paramname": "expire", "required": false, "isflag": false}]}
    ])
    .to_string()
}

/// A network: NetworkResponse's essentials.
pub fn network(
    n: &NetworkRow,
    owner: &Owner,
    offering: (&str, &str),
    zone: (&str, &str),
    dns: &[Ipv4Addr],
    admin: bool,
) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(n.uuid));
    m.insert("name".into(), json!(n.name));
    m.insert("displaytext".into(), json!(n.display_text));
    m.insert("broadcastdomaintype".into(), json!("Vlan"));
    m.insert("traffictype".into(), json!("Guest"));
    m.insert("gateway".into(), json!(n.gateway.to_string()));
    m.insert("netmask".into(), json!(n.cidr.netmask().to_string()));
    m.insert("cidr".into(), json!(n.cidr.to_string()));
    m.insert("zoneid".into(), json!(zone.0));
    m.insert("zonename".into(), json!(zone.1));
    m.insert("networkofferingid".into(), json!(offering.0));
    m.insert("networkofferingname".into(), json!(offering.1));
    m.insert("networkofferingdisplaytext".into(), json!(offering.1));
    m.insert("networkofferingavailability".into(), json!("Optional"));
    m.insert("issystem".into(), json!(false));
    m.insert("state".into(), json!(n.state));
    m.insert("related".into(), json!(n.uuid));
    m.insert(
        "dns1".into(),
        json!(dns.first().map(|a| a.to_string()).unwrap_or_default()),
    );
    if let Some(dns2) = dns.get(1) {
        m.insert("dns2".into(), json!(dns2.to_string()));
    }
    m.insert("networkdomain".into(), json!(n.network_domain));
    m.insert("type".into(), json!("Isolated"));
    m.insert("acltype".into(), json!("Account"));
    m.insert("account".into(), json!(owner.account));
    m.insert("domainid".into(), json!(owner.domain_id));
    m.insert("domain".into(), json!(owner.domain));
    m.insert("domainpath".into(), json!(owner.domain_path));
    m.insert("service".into(), services());
    m.insert("canusefordeploy".into(), json!(true));
    m.insert("ispersistent".into(), json!(false));
    m.insert("tags".into(), json!([]));
    m.insert("restartrequired".into(), json!(false));
    m.insert("specifyipranges".into(), json!(false));
    m.insert("redundantrouter".into(), json!(false));
    m.insert("egressdefaultpolicy".into(), json!(n.egress_allow));
    if admin {
        m.insert("fordisplay".into(), json!(true));
        // CloudStack shows a network's VLAN to root admins only.
        if let Some(vlan) = n.vlan {
            m.insert("vlan".into(), json!(vlan.to_string()));
            m.insert("broadcasturi".into(), json!(vlan_uri(vlan)));
        }
        m.insert("isolationmethods".into(), json!("VLAN"));
    }
    m.insert("created".into(), json!(date(n.created)));
    Value::Object(m)
}

/// A job as queryAsyncJobResult and listAsyncJobs show it.
pub fn job(job: &JobRecord) -> Value {
    let mut o = Map::new();
    o.insert("accountid".into(), json!(job.account_uuid));
    o.insert("account".into(), json!(job.account_name));
    o.insert("domainid".into(), json!(job.domain_uuid));
    o.insert("domainpath".into(), json!(job.domain_path));
    o.insert("userid".into(), json!(job.user_uuid));
    o.insert("cmd".into(), json!(cmd_class(&job.command)));
    o.insert("jobprocstatus".into(), json!(0));
    o.insert("jobresultcode".into(), json!(job.result_code));
    if job.status != JobStatus::Pending {
        o.insert("jobresulttype".into(), json!("object"));
        let value = job
            .result
            .as_deref()
            .and_then(|r| serde_json::from_str::<Value>(r).ok())
            .unwrap_or_else(|| json!({}));
        o.insert("jobresult".into(), value);
    }
    if let (Some(t), Some(i)) = (&job.instance_type, &job.instance_uuid) {
        o.insert("jobinstancetype".into(), json!(t));
        o.insert("jobinstanceid".into(), json!(i));
    }
    o.insert("created".into(), json!(date(job.created)));
    if let Some(c) = job.completed {
        o.insert("completed".into(), json!(date(c)));
    }
    o.insert("jobid".into(), json!(job.uuid));
    o.insert("jobstatus".into(), json!(job.status.code()));
    Value::Object(o)
}
