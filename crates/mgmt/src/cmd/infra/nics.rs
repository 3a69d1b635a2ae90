//! A VM's NIC: listNics, and its secondary addresses (addIpToNic, removeIpFromNic).
//!
//! A secondary address is reserved in the VM's network for the VM, which configures it itself
//! (as on CloudStack: nothing is sent to the router or the host). A forward, a balancer member
//! or a static NAT may then name it as the VM's address (`vmguestip`); while one does, the
//! address cannot be removed. Both commands are jobs that end with their change.

use std::net::Ipv4Addr;

use api_types::error::ApiError;
use api_types::params::Params;
use domain::actor::Caller;
use domain::addressing::{is_host, parse_ip};
use domain::ids::{AccountId, VmId};
use serde_json::{json, Value};
use store::db::now_ms;
use store::secondary_ips::{NewSecondaryIp, SecondaryIp};
use store::vms::VmRecord;

use super::{contains, given, keyword, usable_network};
use crate::app::{store_error, ApiResult, App};
use crate::cmd::{page, required, unknown};
use crate::resp::infra as infra_resp;

/// CloudStack's `vm.network.nic.max.secondary.ipaddresses`: at most this many secondary
/// addresses per NIC.
pub(crate) const MAX_SECONDARY_IPS: usize = 256;

/// What a failed job of either command says.
const FAILURE: &str = "Failed to change the nic's secondary ips";

/// listNics: the interfaces of a machine the caller may see (a guestnet machine has one, its
/// default, on its network), with the machine's id added as listNics answers it, and its
/// secondary addresses. The dispatcher has checked the ids (the machine, a network, a NIC the
/// caller may see); a `nicid` that is not this machine's is refused as unknown too;
/// `fordisplay=false` finds none (every interface is shown).
pub(crate) async fn list_nics(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let uuid = required(p, "virtualmachineid")?;
    let vm = store::vms::by_uuid(&app.db, uuid)
        .await
        .map_err(store_error)?
        .filter(|vm| caller.may_touch(vm.account_id))
        .ok_or_else(|| unknown(p, "virtualmachineid"))?;
    if given(p, "nicid").is_some_and(|id| id != vm.nic_uuid) {
        return Err(unknown(p, "nicid"));
    }
    let kw = keyword(p);
    let shown = given(p, "networkid").is_none_or(|id| id == vm.net_uuid)
        && p.bool("fordisplay") != Some(false)
        && kw.as_deref().is_none_or(|k| {
            contains(&vm.ip.to_string(), k)
                || contains(&vm.mac.to_string(), k)
                || contains(&vm.net_name, k)
        });
    let mut items = Vec::new();
    if shown {
        let mut nic = infra_resp::nic(&vm, caller.admin);
        nic["virtualmachineid"] = json!(vm.uuid);
        items.push(nic);
        let vm_id = vm.id;
        let mut secondary = store::secondary_ips::of_vms(&app.db, &[vm_id])
            .await
            .map_err(store_error)?;
        attach(&mut items[0], secondary.remove(&vm_id).unwrap_or_default());
    }
    Ok(page("nic", items, p.paging()))
}

/// Adds the `secondaryip` list of a NIC object, when it has any.
fn attach(nic: &mut Value, secondary: Vec<SecondaryIp>) {
    if secondary.is_empty() {
        return;
    }
    nic["secondaryip"] = secondary
        .iter()
        .map(|s| json!({"id": s.uuid, "ipaddress": s.ip.to_string()}))
        .collect();
}

/// Adds the secondary addresses of the listed VMs to their `nic` objects (listVirtualMachines).
pub(crate) async fn attach_to_vms(
    app: &App,
    vms: &[&VmRecord],
    items: &mut [Value],
) -> ApiResult<()> {
    let ids: Vec<VmId> = vms.iter().map(|vm| vm.id).collect();
    let mut secondary = store::secondary_ips::of_vms(&app.db, &ids)
        .await
        .map_err(store_error)?;
    for (vm, item) in vms.iter().zip(items.iter_mut()) {
        if let Some(ips) = secondary.remove(&vm.id) {
            if let Some(nic) = item.get_mut("nic").and_then(|n| n.get_mut(0)) {
                attach(nic, ips);
            }
        }
    }
    Ok(())
}

/// The secondary address object (NicSecondaryIpResponse).
fn object(uuid: &str, ip: Ipv4Addr, vm: &VmRecord) -> Value {
    json!({
        "id": uuid,
        "ipaddress": ip.to_string(),
        "nicid": vm.nic_uuid,
        "networkid": vm.net_uuid,
        "virtualmachineid": vm.uuid,
    })
}

/// addIpToNic (async): reserves `ipaddress`, or the lowest free address of the VM's network,
/// for the NIC's VM. Refused: an address outside the network or the network's gateway (431),
/// one a VM or another secondary address of the network holds (431), more than
/// [`MAX_SECONDARY_IPS`] on one NIC (431), a full network (533).
pub(crate) async fn add_ip_to_nic(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let nic_uuid = required(p, "nicid")?;
    let vm_uuid = store::vms::vm_of_nic(&app.db, nic_uuid)
        .await
        .map_err(store_error)?
        .ok_or_else(|| unknown(p, "nicid"))?;
    let vm = store::vms::by_uuid(&app.db, &vm_uuid)
        .await
        .map_err(store_error)?
        .filter(|vm| caller.may_touch(vm.account_id))
        .ok_or_else(|| unknown(p, "nicid"))?;
    if vm.state == "Expunging" || vm.state == "Destroyed" {
        return Err(ApiError::invalid_parameter(format!(
            "Unable to add a secondary ip to nic {nic_uuid}: its vm {} is being destroyed",
            vm.uuid
        )));
    }
    let wanted = given(p, "ipaddress")
        .map(|text| parse_ip("ipaddress", text))
        .transpose()?;
    let net = crate::cmd::network_by_id(app, vm.network_id).await?;
    if let Some(ip) = wanted {
        if !is_host(ip, net.cidr) || ip == net.gateway {
            return Err(ApiError::invalid_parameter(format!(
                "Invalid ip address {ip}: it is not a guest address of network {} ({})",
                net.name, net.cidr
            )));
        }
    }
    let mut change = app.db.change(Some(net.id)).await.map_err(store_error)?;
    change.lock_network().await.map_err(store_error)?;
    usable_network(app, &net).await?;
    let vm_id = vm.id;
    let held = store::secondary_ips::of_vms(&app.db, &[vm_id])
        .await
        .map_err(store_error)?
        .remove(&vm_id)
        .map_or(0, |v| v.len());
    if held >= MAX_SECONDARY_IPS {
        return Err(ApiError::invalid_parameter(format!(
            "Unable to add a secondary ip to nic {nic_uuid}: it has the most a nic may have \
             ({MAX_SECONDARY_IPS})"
        )));
    }
    let ip = super::guest_address(&mut change, &net, wanted).await?;
    let uuid = uuid::Uuid::new_v4().to_string();
    store::secondary_ips::insert(
        change.conn(),
        &NewSecondaryIp {
            uuid: &uuid,
            vm: vm_id,
            network: net.id,
            account: vm.account_id,
            ip,
            created: now_ms(),
        },
    )
    .await
    .map_err(store_error)?;
    let result = json!({"nicsecondaryip": object(&uuid, ip, &vm)});
    let description = format!("adding secondary ip {ip} to nic {nic_uuid}");
    crate::cmd::commit_ended(
        app,
        change,
        caller,
        crate::cmd::EndedJob {
            command: "addIpToNic",
            event: "NIC.SECONDARY.IP.ASSIGN",
            description: &description,
            resource_uuid: Some(&uuid),
            failure: FAILURE,
        },
        &result,
    )
    .await
}

/// removeIpFromNic (async): frees a secondary address, unless a forward, a balancer member or
/// a static NAT still sends to it (431, naming it). Another account's address is answered as
/// an unknown id.
pub(crate) async fn remove_ip_from_nic(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let uuid = required(p, "id")?;
    let secondary = store::secondary_ips::by_uuid(&app.db, uuid)
        .await
        .map_err(store_error)?
        .filter(|s| caller.may_touch(AccountId::from(s.account_id)))
        .ok_or_else(|| unknown(p, "id"))?;
    let mut change = app
        .db
        .change(Some(secondary.network_id))
        .await
        .map_err(store_error)?;
    change.lock_network().await.map_err(store_error)?;
    if let Some(user) = store::secondary_ips::user_of(change.conn(), secondary.vm_id, secondary.ip)
        .await
        .map_err(store_error)?
    {
        return Err(ApiError::invalid_parameter(format!(
            "Can't remove the secondary ip {}: {user} sends to it",
            secondary.ip
        )));
    }
    store::secondary_ips::delete(change.conn(), secondary.id)
        .await
        .map_err(store_error)?;
    let description = format!("removing secondary ip {}", secondary.ip);
    crate::cmd::commit_ended(
        app,
        change,
        caller,
        crate::cmd::EndedJob {
            command: "removeIpFromNic",
            event: "NIC.SECONDARY.IP.UNASSIGN",
            description: &description,
            resource_uuid: Some(&secondary.uuid),
            failure: FAILURE,
        },
        &json!({"success": true}),
    )
    .await
}

/// `address` as a secondary address of `vm`'s NIC, if it is one (`vmguestip` of a forward,
/// a balancer member or a static NAT; the caller checks it again under the network's lock).
pub(crate) async fn secondary_address(
    app: &App,
    vm: VmId,
    address: &str,
) -> ApiResult<Option<Ipv4Addr>> {
    let Ok(ip) = address.trim().parse::<Ipv4Addr>() else {
        return Ok(None);
    };
    let held = store::secondary_ips::of_vms(&app.db, &[vm])
        .await
        .map_err(store_error)?;
    Ok(held.values().flatten().any(|s| s.ip == ip).then_some(ip))
}

/// Refuses a rule that sends to a secondary address its VM no longer has (removed after the
/// request's checks); run in the transaction that writes the rule, under the network's lock.
pub(crate) async fn still_held(
    change: &mut store::ChangeTx,
    vm: VmId,
    ip: Ipv4Addr,
) -> ApiResult<()> {
    let held = store::secondary_ips::held(change.conn(), &[(vm, ip)])
        .await
        .map_err(store_error)?;
    if held.contains(&(vm, ip)) {
        Ok(())
    } else {
        Err(gone(ip))
    }
}

/// The answer for a rule whose secondary address went before it was written.
pub(crate) fn gone(ip: Ipv4Addr) -> ApiError {
    ApiError::invalid_parameter(format!(
        "Invalid vm guest ip {ip}: it is no longer a secondary address of the vm's nic"
    ))
}
