//! Balancers' responses: LoadBalancerResponse, the stickiness and health-check policy sets,
//! and the member VMs of listLoadBalancerRuleInstances.

use serde_json::{json, Map, Value};

use super::{date, insert_opt, Owner};
use domain::model::{PolicyKind, PolicyRow, Rule};
use domain::plan::HealthNumbers;
use store::balancers::MemberVm;

/// A load-balancer rule: LoadBalancerResponse (ports as strings).
pub fn load_balancer(r: &Rule, owner: &Owner, zone: (&str, &str), admin: bool) -> Value {
    let s = |v: Option<i64>| json!(v.map(|p| p.to_string()).unwrap_or_default());
    let mut m = Map::new();
    m.insert("id".into(), json!(r.uuid));
    m.insert("name".into(), json!(r.name.clone().unwrap_or_default()));
    insert_opt(
        &mut m,
        "description",
        r.description.as_ref().map(|d| json!(d)),
    );
    insert_opt(&mut m, "publicipid", r.ip_uuid.as_ref().map(|u| json!(u)));
    insert_opt(
        &mut m,
        "publicip",
        Some(r.ip.map_or(Value::Null, |ip| json!(ip.to_string()))),
    );
    m.insert("publicport".into(), s(r.start_port));
    m.insert("privateport".into(), s(r.private_start));
    m.insert(
        "algorithm".into(),
        json!(r.algorithm.clone().unwrap_or_default()),
    );
    m.insert("networkid".into(), json!(r.network_uuid));
    m.insert("cidrlist".into(), json!(r.source_cidrs.join(",")));
    m.insert("account".into(), json!(owner.account));
    m.insert("domainid".into(), json!(owner.domain_id));
    m.insert("domain".into(), json!(owner.domain));
    m.insert("domainpath".into(), json!(owner.domain_path));
    m.insert("state".into(), json!(r.state.api()));
    m.insert("zoneid".into(), json!(zone.0));
    m.insert("zonename".into(), json!(zone.1));
    insert_opt(&mut m, "protocol", r.lb_protocol.as_ref().map(|p| json!(p)));
    m.insert("tags".into(), json!([]));
    if admin {
        m.insert("fordisplay".into(), json!(r.display));
    }
    Value::Object(m)
}

/// The key of a list or job result of policies of `kind`.
pub fn policies_key(kind: PolicyKind) -> &'static str {
    match kind {
        PolicyKind::Stickiness => "stickinesspolicies",
        PolicyKind::HealthCheck => "healthcheckpolicies",
    }
}

/// A balancer's policies of one kind, in CloudStack's `stickinesspolicies` /
/// `healthcheckpolicies` shape.
pub fn policies(
    lb: &Rule,
    kind: PolicyKind,
    list: &[PolicyRow],
    owner: &Owner,
    zone_id: &str,
    admin: bool,
) -> Value {
    let mut m = Map::new();
    m.insert("lbruleid".into(), json!(lb.uuid));
    if kind == PolicyKind::Stickiness {
        m.insert("name".into(), json!(lb.name.clone().unwrap_or_default()));
        m.insert(
            "description".into(),
            json!(lb.description.clone().unwrap_or_default()),
        );
    }
    m.insert("account".into(), json!(owner.account));
    m.insert("domainid".into(), json!(owner.domain_id));
    m.insert("domain".into(), json!(owner.domain));
    m.insert("zoneid".into(), json!(zone_id));
    let items: Vec<Value> = list
        .iter()
        .filter(|p| p.kind == kind)
        .map(|p| policy(p, admin))
        .collect();
    let key = match kind {
        PolicyKind::Stickiness => "stickinesspolicy",
        PolicyKind::HealthCheck => "healthcheckpolicy",
    };
    m.insert(key.into(), Value::Array(items));
    Value::Object(m)
}

fn policy(p: &PolicyRow, admin: bool) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(p.uuid));
    match p.kind {
        PolicyKind::Stickiness => {
            m.insert("name".into(), json!(p.name));
            m.insert("methodname".into(), json!(p.method));
            m.insert("description".into(), json!(p.description));
            m.insert("state".into(), json!(p.state.api()));
            let params: Value = serde_json::from_str(&p.params).unwrap_or_else(|_| json!({}));
            m.insert("params".into(), params);
        }
        PolicyKind::HealthCheck => {
            let n: Option<HealthNumbers> = serde_json::from_str(&p.params).ok();
            m.insert("pingpath".into(), json!(p.method));
            m.insert("description".into(), json!(p.description));
            m.insert("state".into(), json!(p.state.api()));
            if let Some(n) = n {
                m.insert("responsetime".into(), json!(n.response_time));
                m.insert("healthcheckinterval".into(), json!(n.interval));
                m.insert("healthcheckthresshold".into(), json!(n.healthy));
                m.insert("unhealthcheckthresshold".into(), json!(n.unhealthy));
            }
        }
    }
    if admin {
        m.insert("fordisplay".into(), json!(p.display));
    }
    Value::Object(m)
}

/// A member VM in the shape of CloudStack's UserVmResponse, reduced to what balancer listings
/// need, with `servicestate` (the member's state: Add until the router holds it, then Active).
pub fn member_vm(
    vm: &MemberVm,
    owner: &Owner,
    network_uuid: &str,
    zone: (&str, &str),
    service: &str,
) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(vm.uuid));
    m.insert("name".into(), json!(vm.name));
    m.insert("displayname".into(), json!(vm.display_name));
    m.insert("account".into(), json!(owner.account));
    m.insert("domainid".into(), json!(owner.domain_id));
    m.insert("domain".into(), json!(owner.domain));
    m.insert("created".into(), json!(date(vm.created)));
    m.insert("state".into(), json!(vm.state));
    m.insert("zoneid".into(), json!(zone.0));
    m.insert("zonename".into(), json!(zone.1));
    m.insert(
        "nic".into(),
        json!([{
            "id": vm.nic_uuid,
            "networkid": network_uuid,
            "ipaddress": vm.ip,
            "isdefault": true,
            "traffictype": "Guest",
            "type": "Isolated",
        }]),
    );
    m.insert("tags".into(), json!([]));
    m.insert("servicestate".into(), json!(service));
    Value::Object(m)
}

/// A member VM with the addresses balanced to, as `lbvmips=true` lists it.
pub fn member_vm_ips(vm: Value, ips: &[String]) -> Value {
    json!({"loadbalancerruleinstance": vm, "lbvmipaddresses": ips})
}
