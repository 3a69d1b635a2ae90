//! deployVirtualMachine, listVirtualMachines and destroyVirtualMachine.

use std::collections::HashMap;

use api_types::error::ApiError;
use api_types::params::Params;
use domain::actor::Caller;
use domain::addressing::{is_host, parse_ip};
use domain::guest::MacAddr;
use domain::ids::AccountId;
use domain::job::{Kind, NewJob, Outcome};
use serde_json::Value;
use store::db::now_ms;
use store::vms::{NewVm, VmQuery};
use store::Scheduled;

use super::{
    acting_for, contains, given, keyword, network_filter, owner_of, owners, payload,
    usable_network, zone, zone_param,
};
use crate::app::{store_error, ApiResult, App};
use crate::cmd::limits::{self, Resource};
use crate::cmd::{accepted, owner, page, queued, required, unknown};
use crate::resp::{self, infra as infra_resp};

/// Whether a name is a VM name.
///
/// The name is the guest's host name (its DHCP lease and DNS name on the router), so it follows
/// CloudStack's rule for one: a DNS label (1 to 63 letters, digits and '-', neither starting nor
/// ending with '-') that does not start with a digit.
fn good_vm_name(name: &str) -> bool {
    router_config::is_dns_label(name) && !name.starts_with(|c: char| c.is_ascii_digit())
}

/// The VM's default name: `VM-` and the first 29 hex digits of its id (32 characters).
fn default_vm_name(uuid: &uuid::Uuid) -> String {
    let simple = uuid.simple().to_string();
    format!("VM-{}", simple.get(..29).unwrap_or(&simple))
}

/// deployVirtualMachine (async create): the VM row now (Starting); the runner makes its lab
/// namespace and sets it Running.
pub(crate) async fn deploy_vm(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    zone_param(app, p, "zoneid")?;
    let so_uuid = required(p, "serviceofferingid")?;
    let so_id = store::catalogue::service_offering_id(&app.db, so_uuid)
        .await
        .map_err(store_error)?
        .ok_or_else(|| {
            // The dispatcher found the id, so it names the routers' system offering.
            ApiError::invalid_parameter(format!(
                "Unable to deploy a virtual machine with the system offering {so_uuid}: it is \
                 for routers; give a service offering listServiceOfferings shows"
            ))
        })?;
    let template_id = store::catalogue::template_id(&app.db, required(p, "templateid")?)
        .await
        .map_err(store_error)?
        .ok_or_else(|| unknown(p, "templateid"))?;
    let ids = p.list("networkids").unwrap_or_default();
    let net_uuid = match ids.as_slice() {
        [one] => one.clone(),
        [] => {
            return Err(ApiError::invalid_parameter(
                "networkids is required: give the guest network the VM is to sit on",
            ))
        }
        _ => {
            return Err(ApiError::invalid_parameter(
                "guestnet VMs have one NIC: give one network id",
            ))
        }
    };
    let net = store::networks::by_uuid(&app.db, &net_uuid)
        .await
        .map_err(store_error)?
        .filter(|n| caller.may_touch(n.account_id))
        .ok_or_else(|| unknown(p, "networkids"))?;
    usable_network(app, &net).await?;
    if given(p, "account").is_some() && acting_for(app, caller, p).await? != net.account_id.get() {
        return Err(ApiError::invalid_parameter(format!(
            "Network {} does not belong to account {}",
            net.uuid,
            given(p, "account").unwrap_or_default()
        )));
    }
    let vm_uuid = uuid::Uuid::new_v4();
    let name = match given(p, "name") {
        Some(n) if good_vm_name(n) => n.to_string(),
        Some(n) => {
            return Err(ApiError::invalid_parameter(format!(
                "Invalid name {n}. Vm name can contain ASCII letters 'a' through 'z', the digits \
                 '0' through '9', and the hyphen ('-'), must be between 1 and 63 characters long, \
                 and can't start or end with \"-\" and can't start with digit"
            )))
        }
        None => default_vm_name(&vm_uuid),
    };
    let display = given(p, "displayname").unwrap_or(&name).to_string();
    let wanted = match given(p, "ipaddress") {
        Some(s) => {
            let ip = parse_ip("ipaddress", s)?;
            if !is_host(ip, net.cidr) || ip == net.gateway {
                return Err(ApiError::invalid_parameter(format!(
                    "Invalid ipaddress {ip}: not a free host address of network {} ({}, \
                     gateway {})",
                    net.name, net.cidr, net.gateway
                )));
            }
            Some(ip)
        }
        None => None,
    };
    let wanted_mac = given(p, "macaddress")
        .map(|m| {
            domain::guest::parse_nic_mac(m).map_err(|e| {
                ApiError::invalid_parameter(format!("Mac address is not valid: macaddress {e}"))
            })
        })
        .transpose()?;
    let vm_uuid = vm_uuid.to_string();
    let network = net.id;
    let account = net.account_id;
    let mut change = app.db.change(Some(network)).await.map_err(store_error)?;
    change.lock_network().await.map_err(store_error)?;
    // A deleteNetwork that committed while this call waited for the lock wins.
    usable_network(app, &net).await?;
    // A VM's name is unique among its account's VMs (CloudStack keeps host names unique in a
    // network domain, which is the account's by default); other accounts' names are never
    // looked at, so the answer tells nothing about them. The account's row is locked so that
    // two deploys on two of its networks cannot both take one name.
    let dialect = change.dialect();
    store::owners::lock_account(change.conn(), dialect, account)
        .await
        .map_err(store_error)?;
    if store::vms::name_taken(change.conn(), account, &name)
        .await
        .map_err(store_error)?
    {
        return Err(ApiError::invalid_parameter(format!(
            "The name {name} is already used by another VM of this account"
        )));
    }
    let ip = super::guest_address(&mut change, &net, wanted).await?;
    limits::take(&mut change, net.account_id, &[(Resource::UserVm, 1)]).await?;
    let mac = nic_mac(app, &mut change, wanted_mac).await?;
    let nic_uuid = uuid::Uuid::new_v4().to_string();
    let vm_id = store::vms::insert(
        change.conn(),
        &NewVm {
            uuid: &vm_uuid,
            name: &name,
            display_name: &display,
            account,
            zone_id: app.site.zone_id,
            network,
            service_offering_id: so_id,
            template_id,
            nic_uuid: &nic_uuid,
            ip,
            mac,
            created: now_ms(),
        },
    )
    .await
    .map_err(store_error)?;
    let (job_id, job_uuid) = change
        .job(
            caller,
            NewJob {
                command: "deployVirtualMachine",
                kind: Kind::DeployVm,
                network_id: Some(network),
                payload: payload(
                    Outcome::Vm { id: vm_id },
                    "VM.CREATE",
                    format!("deploying VM {name}"),
                    "Failed to deploy VM",
                ),
                instance_type: Some("VirtualMachine"),
                instance_uuid: Some(&vm_uuid),
            },
            Some(Scheduled {
                event_type: "VM.CREATE",
                description: &format!("deploying VM {name} ({ip}) on network {}", net.uuid),
                resource_uuid: Some(&vm_uuid),
            }),
        )
        .await
        .map_err(store_error)?;
    // The deploy's generation carries the VM's lease: the row names its job.
    store::vms::set_job(change.conn(), vm_id, job_id)
        .await
        .map_err(store_error)?;
    let receipt = change.commit().await.map_err(store_error)?;
    app.doorbell.ring(receipt);
    Ok(accepted(&vm_uuid, &job_uuid))
}

/// The new NIC's MAC: the one asked for, unless a VM NIC of the zone has it (431), or a new one
/// in CloudStack's style (`02:00:` and four random bytes) that no VM NIC of the zone has. The
/// unique index on (zone, MAC) refuses what a concurrent deploy took meanwhile.
async fn nic_mac(
    app: &App,
    change: &mut store::ChangeTx,
    wanted: Option<MacAddr>,
) -> ApiResult<MacAddr> {
    const TRIES: usize = 16;
    let zone_id = app.site.zone_id;
    if let Some(mac) = wanted {
        if store::vms::mac_taken(change.conn(), zone_id, mac)
            .await
            .map_err(store_error)?
        {
            return Err(ApiError::invalid_parameter(format!(
                "The MAC address {mac} (macaddress) is already in use by a NIC in zone {}",
                app.site.zone_name
            )));
        }
        return Ok(mac);
    }
    for _ in 0..TRIES {
        let mut random = [0u8; 4];
        getrandom::getrandom(&mut random)
            .map_err(|e| ApiError::internal(format!("Unable to make a MAC address: {e}")))?;
        let mac = domain::guest::generated_mac(random);
        if !store::vms::mac_taken(change.conn(), zone_id, mac)
            .await
            .map_err(store_error)?
        {
            return Ok(mac);
        }
    }
    Err(ApiError::insufficient_address_capacity(format!(
        "Unable to find a free MAC address in zone {} after {TRIES} tries",
        app.site.zone_name
    )))
}

/// listVirtualMachines.
pub(crate) async fn list_vms(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    zone_param(app, p, "zoneid")?;
    crate::cmd::visible_filter(app, caller, p, "id", "vms").await?;
    let network = network_filter(app, caller, p, "networkid").await?;
    let Some(who) = owners(app, caller, p).await? else {
        return Ok(page("virtualmachine", Vec::new(), p.paging()));
    };
    let q = VmQuery {
        id: None,
        uuid: given(p, "id"),
        name: given(p, "name"),
        network,
        owners: who,
    };
    let vms = store::vms::list(&app.db, &q).await.map_err(store_error)?;
    let tagged = crate::cmd::tags::filter(app, p, crate::cmd::tags::ResourceType::UserVm).await?;
    let kw = keyword(p);
    let state = given(p, "state");
    let mut cache = HashMap::new();
    let mut items = Vec::new();
    let mut listed = Vec::new();
    for vm in &vms {
        if state.is_some_and(|s| !s.eq_ignore_ascii_case(&vm.state))
            || kw
                .as_deref()
                .is_some_and(|k| !contains(&vm.name, k) && !contains(&vm.display_name, k))
            || tagged.as_ref().is_some_and(|t| !t.contains(&vm.uuid))
        {
            continue;
        }
        let own = owner_of(app, &mut cache, AccountId::from(vm.account_id)).await?;
        items.push(infra_resp::vm(vm, &own, zone(app), &vm.state, caller.admin));
        listed.push(vm);
    }
    super::nics::attach_to_vms(app, &listed, &mut items).await?;
    crate::cmd::tags::attach(app, crate::cmd::tags::ResourceType::UserVm, &mut items).await?;
    Ok(page("virtualmachine", items, p.paging()))
}

/// destroyVirtualMachine (async): its forwards (with their opened firewall rules) and balancer
/// memberships are revoked by one job; the runner then removes the VM.
pub(crate) async fn destroy_vm(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let uuid = required(p, "id")?;
    let vm = store::vms::by_uuid(&app.db, uuid)
        .await
        .map_err(store_error)?
        .filter(|vm| caller.may_touch(vm.account_id))
        .ok_or_else(|| unknown(p, "id"))?;
    match vm.state.as_str() {
        "Starting" => {
            return Err(ApiError::invalid_parameter(format!(
                "VM {} is still being deployed; destroy it once its deploy job has ended",
                vm.uuid
            )))
        }
        "Expunging" => {
            return Err(ApiError::invalid_parameter(format!(
                "VM {} is already being destroyed",
                vm.uuid
            )))
        }
        _ => {}
    }
    let own = owner(app, AccountId::from(vm.account_id)).await?;
    let gone = resp::wrap(
        "virtualmachine",
        infra_resp::vm(&vm, &own, zone(app), "Destroyed", false),
    );
    let mut change = app
        .db
        .change(Some(vm.network_id))
        .await
        .map_err(store_error)?;
    change.lock_network().await.map_err(store_error)?;
    let mut pl = payload(
        Outcome::Fixed { value: gone },
        "VM.DESTROY",
        format!("destroying VM {}", vm.name),
        "Failed to destroy vm",
    );
    pl.target = Some(vm.id);
    let (job_id, job_uuid) = change
        .job(
            caller,
            NewJob {
                command: "destroyVirtualMachine",
                kind: Kind::DestroyVm,
                network_id: Some(vm.network_id),
                payload: pl,
                instance_type: Some("VirtualMachine"),
                instance_uuid: Some(&vm.uuid),
            },
            Some(Scheduled {
                event_type: "VM.DESTROY",
                description: &format!("destroying VM {} ({})", vm.name, vm.uuid),
                resource_uuid: Some(&vm.uuid),
            }),
        )
        .await
        .map_err(store_error)?;
    store::vms::schedule_destroy(change.conn(), vm.id, job_id)
        .await
        .map_err(store_error)?;
    let receipt = change.commit().await.map_err(store_error)?;
    app.doorbell.ring(receipt);
    Ok(queued(&job_uuid))
}

#[cfg(test)]
mod tests;
