//! A balancer's members: assignToLoadBalancerRule and removeFromLoadBalancerRule.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use api_types::error::ApiError;
use api_types::params::Params;
use serde_json::Value;

use super::super::{firewall, queued};
use super::{lb_param, not_revoked};
use crate::app::{store_error, ApiResult, App};
use domain::actor::Caller;
use domain::job::{Kind, NewJob, Outcome, Payload};
use store::balancers::MemberVm;
use store::Scheduled;

/// A VM (and optionally one of its addresses) named by assign or remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    /// The VM's uuid, lowercased.
    pub(super) vm: String,
    /// The address, when the request gave one.
    pub(super) ip: Option<Ipv4Addr>,
    /// The parameter it came from, for error texts.
    pub(super) param: &'static str,
}

/// The targets of assign/remove, from `virtualmachineids` and `vmidipmap`.
pub(super) fn targets(
    command: &str,
    ids: Option<Vec<String>>,
    map: &[BTreeMap<String, String>],
) -> ApiResult<Vec<Target>> {
    let mut out: Vec<Target> = Vec::new();
    let mut push = |t: Target| {
        if !out.contains(&t) {
            out.push(t);
        }
    };
    for vm in ids.unwrap_or_default() {
        push(Target {
            vm,
            ip: None,
            param: "virtualmachineids",
        });
    }
    for entry in map {
        let field = |name: &str| {
            entry
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim())
                .filter(|v| !v.is_empty())
        };
        let vm = field("vmid").ok_or_else(|| {
            ApiError::invalid_parameter("Each vmidipmap entry needs a vmid (vmidipmap[i].vmid)")
        })?;
        if !is_uuid(vm) {
            return Err(ApiError::unknown_uuid(command, "vmidipmap", vm));
        }
        let ip = match field("vmip") {
            None => None,
            Some(s) => Some(s.parse::<Ipv4Addr>().map_err(|_| {
                ApiError::invalid_parameter(format!("Invalid vm ip address {s} in vmidipmap"))
            })?),
        };
        push(Target {
            vm: vm.to_ascii_lowercase(),
            ip,
            param: "vmidipmap",
        });
    }
    if out.is_empty() {
        return Err(ApiError::invalid_parameter(
            "Both instanceids and vmidipmap  can't be null",
        ));
    }
    Ok(out)
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// The VM a target names, if the caller may see it (431 unknown id otherwise).
async fn target_vm(app: &App, caller: &Caller, command: &str, t: &Target) -> ApiResult<MemberVm> {
    store::balancers::vm_by_uuid(&app.db, &t.vm)
        .await
        .map_err(store_error)?
        .filter(|vm| caller.may_touch(vm.account_id))
        .ok_or_else(|| ApiError::unknown_uuid(command, t.param, &t.vm))
}

/// assignToLoadBalancerRule (`add`) / removeFromLoadBalancerRule: member rows written (Add) or
/// revoked, with one job that carries them to the router.
pub(crate) async fn assign(app: &App, caller: &Caller, p: &Params, add: bool) -> ApiResult<Value> {
    let (command, failure, what) = if add {
        (
            "assignToLoadBalancerRule",
            "Failed to assign load balancer rule",
            "assigning instances to load balancer",
        )
    } else {
        (
            "removeFromLoadBalancerRule",
            "Failed to remove load balancer rule",
            "removing instances from load balancer",
        )
    };
    let lb = lb_param(app, caller, p, "id").await?;
    let targets = targets(command, p.list("virtualmachineids"), &p.map("vmidipmap"))?;
    not_revoked(&lb)?;
    let mut resolved: Vec<(MemberVm, Option<Ipv4Addr>)> = Vec::with_capacity(targets.len());
    // Secondary addresses of the members' NICs, checked again under the network's lock.
    let mut secondary = Vec::new();
    for t in &targets {
        let vm = target_vm(app, caller, command, t).await?;
        if add {
            if vm.is_gone() {
                return Err(ApiError::invalid_parameter(format!(
                    "Invalid instance id specified: VM {} is {}",
                    vm.uuid, vm.state
                )));
            }
            if vm.network_id != lb.network_id {
                return Err(ApiError::invalid_parameter(format!(
                    "VM {} has no NIC in network {}, the network of load balancer rule {}",
                    vm.uuid, lb.network_uuid, lb.uuid
                )));
            }
            if let Some(ip) = t.ip.filter(|ip| ip.to_string() != vm.ip) {
                let vm_id = vm.id;
                if crate::cmd::infra::secondary_address(app, vm_id, &ip.to_string())
                    .await?
                    .is_none()
                {
                    return Err(ApiError::invalid_parameter(format!(
                        "VM ip {ip} specified does not belong to the NIC of VM {} in network {}",
                        vm.uuid, lb.network_uuid
                    )));
                }
                secondary.push((vm_id, ip));
            }
        }
        resolved.push((vm, t.ip));
    }
    let network = lb.network_id;
    let lb_id = lb.id;
    let mut change = app.db.change(Some(network)).await.map_err(store_error)?;
    let description = format!("{command} for rule {}", lb.uuid);
    let (job_id, job_uuid) = change
        .job(
            caller,
            NewJob {
                command,
                kind: Kind::Change,
                network_id: Some(network),
                payload: Payload::new(
                    Outcome::Success,
                    firewall::event_type(command),
                    format!("{what} {}", lb.uuid),
                    failure,
                ),
                instance_type: None,
                instance_uuid: None,
            },
            Some(Scheduled {
                event_type: firewall::event_type(command),
                description: &description,
                resource_uuid: Some(&lb.uuid),
            }),
        )
        .await
        .map_err(store_error)?;
    change.lock_network().await.map_err(store_error)?;
    for (vm, ip) in &secondary {
        crate::cmd::infra::still_held(&mut change, *vm, *ip).await?;
    }
    for (vm, ip) in &resolved {
        if add {
            let ip = ip.map_or_else(|| vm.ip.clone(), |ip| ip.to_string());
            let added = store::balancers::add_member(change.conn(), lb_id, vm.id, &ip, job_id)
                .await
                .map_err(store_error)?;
            if !added {
                return Err(ApiError::invalid_parameter(format!(
                    "VM {} with {ip} is already mapped to load balancer.",
                    vm.uuid
                )));
            }
        } else {
            let removed =
                store::balancers::remove_members(change.conn(), lb_id, vm.id, *ip, job_id)
                    .await
                    .map_err(store_error)?;
            if removed == 0 {
                let with = ip.map(|ip| format!(" with {ip}")).unwrap_or_default();
                return Err(ApiError::invalid_parameter(format!(
                    "VM {}{with} is not mapped to load balancer rule {}",
                    vm.uuid, lb.uuid
                )));
            }
        }
    }
    let receipt = change.commit().await.map_err(store_error)?;
    app.doorbell.ring(receipt);
    Ok(queued(&job_uuid))
}
