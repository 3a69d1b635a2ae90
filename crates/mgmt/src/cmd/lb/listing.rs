//! The balancers' listings: listLoadBalancerRules, listLoadBalancerRuleInstances and the
//! policy lists.

use std::collections::HashMap;

use api_types::params::Params;
use serde_json::Value;

use super::super::tags::ResourceType;
use super::policies::policy_param;
use super::{cached_owner, lb_param, zone};
use crate::app::{store_error, ApiResult, App};
use crate::resp;
use domain::actor::Caller;
use domain::ids::{AccountId, DomainId};
use domain::model::{PolicyKind, State};
use store::balancers::{BalancerFilter, MemberVm};

/// listLoadBalancerRules, oldest first as CloudStack lists balancers.
pub(crate) async fn list(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    const KEY: &str = "loadbalancerrule";
    super::super::visible_filter(app, caller, p, "id", "rules").await?;
    super::super::visible_filter(app, caller, p, "publicipid", "public_ips").await?;
    super::super::visible_filter(app, caller, p, "virtualmachineid", "vms").await?;
    let tagged = super::super::tags::filter(app, p, ResourceType::LoadBalancer).await?;
    let given = |name: &str| p.str(name).filter(|s| !s.is_empty());
    let account = super::super::scope(app, caller, p).await?;
    let domains: Option<Vec<DomainId>> = super::super::accounts::domain_ids(app, p)
        .await?
        .map(|ids| ids.into_iter().map(DomainId::from).collect());
    let filter = BalancerFilter {
        uuid: given("id"),
        name: given("name"),
        ip_uuid: given("publicipid"),
        network_uuid: given("networkid"),
        zone_uuid: given("zoneid"),
        vm_uuid: given("virtualmachineid"),
        display: p.bool("fordisplay"),
        account: account.map(AccountId::from),
        domains: domains.as_deref(),
    };
    let mut rules = store::balancers::list(&app.db, &filter)
        .await
        .map_err(store_error)?;
    if let Some(k) = given("keyword") {
        let k = k.to_lowercase();
        rules.retain(|r| {
            r.name
                .as_deref()
                .is_some_and(|n| n.to_lowercase().contains(&k))
                || r.description
                    .as_deref()
                    .is_some_and(|d| d.to_lowercase().contains(&k))
        });
    }
    if let Some(tagged) = &tagged {
        rules.retain(|r| tagged.contains(&r.uuid));
    }
    let range = p.paging().range(rules.len());
    let mut owners = HashMap::new();
    let mut items = Vec::with_capacity(range.len());
    for r in &rules[range] {
        let owner = cached_owner(app, &mut owners, r.account_id).await?;
        items.push(resp::lb::load_balancer(r, owner, zone(app), caller.admin));
    }
    super::super::tags::attach(app, ResourceType::LoadBalancer, &mut items).await?;
    Ok(resp::list(KEY, rules.len(), items))
}

/// listLoadBalancerRuleInstances: the VMs mapped to the balancer (removals pending excluded,
/// VMs being destroyed skipped). `applied=false` lists nothing, as in CloudStack: only mapped
/// VMs are ever listed. With `lbvmips=true` each VM comes with the addresses balanced to.
pub(crate) async fn instances(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let lb = lb_param(app, caller, p, "id").await?;
    let lbvmips = p.bool("lbvmips").unwrap_or(false);
    let key = if lbvmips {
        "lbrulevmidip"
    } else {
        "loadbalancerruleinstance"
    };
    if !p.bool("applied").unwrap_or(true) {
        return Ok(resp::list(key, 0, Vec::new()));
    }
    let members = store::balancers::members(&app.db, lb.id)
        .await
        .map_err(store_error)?;
    // One entry per VM, with its member addresses; Active once any of them is.
    let mut vms: Vec<(MemberVm, Vec<String>, bool)> = Vec::new();
    for m in members {
        if m.vm.is_gone() {
            continue;
        }
        let active = m.state == State::Active;
        match vms.last_mut() {
            Some((last, ips, act)) if last.id == m.vm.id => {
                ips.push(m.ip);
                *act |= active;
            }
            _ => vms.push((m.vm, vec![m.ip], active)),
        }
    }
    if let Some(k) = p.str("keyword").filter(|k| !k.is_empty()) {
        let k = k.to_lowercase();
        vms.retain(|(vm, _, _)| {
            vm.name.to_lowercase().contains(&k) || vm.display_name.to_lowercase().contains(&k)
        });
    }
    let range = p.paging().range(vms.len());
    let mut owners = HashMap::new();
    let mut items = Vec::with_capacity(range.len());
    for (vm, ips, active) in &vms[range] {
        let owner = cached_owner(app, &mut owners, vm.account_id).await?;
        let service = if *active {
            State::Active.api()
        } else {
            State::Add.api()
        };
        let obj = resp::lb::member_vm(vm, owner, &lb.network_uuid, zone(app), service);
        items.push(if lbvmips {
            resp::lb::member_vm_ips(obj, ips)
        } else {
            obj
        });
    }
    Ok(resp::list(key, vms.len(), items))
}

/// listLBStickinessPolicies / listLBHealthCheckPolicies: one item, the balancer's policies of
/// that kind (as CloudStack answers: one item per balancer, even with no policy). Without
/// `lbruleid` and `id` the list is empty.
pub(crate) async fn list_policies(
    app: &App,
    caller: &Caller,
    p: &Params,
    kind: PolicyKind,
) -> ApiResult<Value> {
    let key = resp::lb::policies_key(kind);
    let by_id = if p.str("id").is_some_and(|s| !s.is_empty()) {
        Some(policy_param(app, caller, p, "id", kind).await?)
    } else {
        None
    };
    let lb = if p.str("lbruleid").is_some_and(|s| !s.is_empty()) {
        let lb = lb_param(app, caller, p, "lbruleid").await?;
        if by_id.as_ref().is_some_and(|(_, other)| other.id != lb.id) {
            return Ok(resp::list(key, 0, Vec::new()));
        }
        lb
    } else {
        match &by_id {
            Some((_, lb)) => lb.clone(),
            None => return Ok(resp::list(key, 0, Vec::new())),
        }
    };
    let mut rows = store::balancers::policies(&app.db, lb.id, kind)
        .await
        .map_err(store_error)?;
    if let Some((policy, _)) = &by_id {
        rows.retain(|r| r.id == policy.id);
    }
    if let Some(d) = p.bool("fordisplay") {
        rows.retain(|r| r.display == d);
    }
    // The keyword: in a policy's name, description, method or parameters.
    if let Some(k) = super::super::infra::keyword(p) {
        rows.retain(|r| {
            [&r.name, &r.description, &r.method, &r.params]
                .into_iter()
                .any(|text| super::super::infra::contains(text, &k))
        });
    }
    let owner = super::super::owner(app, lb.account_id).await?;
    let item = resp::lb::policies(&lb, kind, &rows, &owner, &app.site.zone_uuid, caller.admin);
    Ok(super::super::page(key, vec![item], p.paging()))
}
