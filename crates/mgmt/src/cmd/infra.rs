//! Zones, offerings, templates, networks, public IPs and ranges, VMs and routers: what the rules
//! stand on.
//!
//! Choices where CloudStack's behaviour does not carry over:
//! - One zone (the server's [`crate::app::Site`]); any other `zoneid` is an unknown id.
//! - createNetwork implements the network at once (router up, first generation applied) and
//!   answers with state `Implemented`. If the router cannot be brought up, everything the call
//!   wrote is removed again and the answer is 530 with the reason, so a failed create leaves
//!   nothing behind for the client to clean up.
//! - Guest CIDRs are RFC 1918 networks of prefix /8 to /30, never overlapping a public range
//!   (the router refuses that). Any two networks may share a CIDR, also two of one account, as
//!   on CloudStack: each has its own router, VLAN and bridge. Without gateway/netmask the
//!   lowest /24 of 10.1.0.0/16 that no network uses is taken (CloudStack gives every network
//!   the zone's guest CIDR, 10.1.1.0/24 by default), so that an operator tells networks
//!   apart by address.
//! - A VM has one NIC and a name of 1–32 characters of `[A-Za-z0-9_-]`, unique among its
//!   account's VMs (another account may use the same name). Its lab namespace is named after
//!   its id, and `guestnet lab exec vm:NAME[@ACCOUNT]` finds it by name. The default name is
//!   `VM-` followed by the first 29 hex digits of the VM's id. VMs are always expunged:
//!   destroyVirtualMachine removes them.
//! - deleteNetwork refuses a network that VMs still use, unless a root admin passes
//!   `forced=true` (then the VMs are destroyed with it).
//! - Admin-only commands (createVlanIpRange, listVlanIpRanges) answer users with 432, as
//!   CloudStack does for commands not available to the caller. listRouters shows users the
//!   routers of their own networks (CloudStack shows them to admins only).
//! - listTemplates follows CloudStack's filters: the built-in template is featured, public and
//!   the admin's, so `featured`, `executable` and `all` show it, `self`/`selfexecutable` only to
//!   the admin, and `community` (public but not featured) and `sharedexecutable` never; `all` is
//!   for admins only.
//! - Projects and tags do not exist here: a `projectid` (other than -1) is an unknown id, and
//!   a `tags` filter matches nothing.

use std::collections::HashMap;

use api_types::error::{ApiError, ApiErrorCode, CsErrorCode};
use api_types::params::Params;
use domain::actor::Caller;
use domain::ids::{AccountId, NetworkId};
use domain::job::{Outcome, Payload};
use domain::model::NetworkRow;
use store::owners::{self, Owners};

use super::{owner, scope, unknown};
use crate::app::{store_error, ApiResult, App};
use crate::resp::infra::Zone;
use crate::resp::Owner;

mod addresses;
mod catalogue;
mod networks;
mod nics;
mod ranges;
mod routers;
mod vms;
mod zones;

pub(crate) use addresses::{associate_ip, disassociate_ip, list_ips};
pub(crate) use catalogue::{
    list_network_offerings, list_service_offerings, list_templates, register_template,
};
pub(crate) use networks::{
    create_network, delete_network, list_networks, restart_network, update_network,
};
pub(crate) use nics::{
    add_ip_to_nic, gone as secondary_gone, list_nics, remove_ip_from_nic, secondary_address,
    still_held,
};
pub(crate) use ranges::{create_vlan_range, list_vlan_ranges};
pub(crate) use routers::{list_routers, reboot_router, start_router, stop_router};
pub(crate) use vms::{deploy_vm, destroy_vm, list_vms};
pub(crate) use zones::{list_physical_networks, list_zones, update_physical_network, update_zone};

/// A parameter's value, trimmed, when the command takes it and it is not empty.
pub(crate) fn given<'a>(p: &'a Params, name: &str) -> Option<&'a str> {
    p.spec().param(name)?;
    p.str(name).map(str::trim).filter(|v| !v.is_empty())
}

/// The ownership filter of a list: `None` when nothing can match (projects match nothing);
/// a root admin may name a domain (optionally with its subdomains) or an account; otherwise
/// [`scope`] decides.
async fn owners(app: &App, caller: &Caller, p: &Params) -> ApiResult<Option<Owners>> {
    if given(p, "projectid").is_some_and(|v| v != "-1") {
        return Ok(None);
    }
    if caller.admin {
        if let Some(domain_uuid) = given(p, "domainid") {
            let (domain_id, path) = owners::domain_by_uuid(&app.db, domain_uuid)
                .await
                .map_err(store_error)?
                .ok_or_else(|| unknown(p, "domainid"))?;
            if let Some(name) = given(p, "account") {
                let id = owners::account_in_domain(&app.db, name, domain_id)
                    .await
                    .map_err(store_error)?
                    .ok_or_else(|| {
                        ApiError::invalid_parameter(format!(
                            "Unable to find account {name} in domain {domain_uuid}"
                        ))
                    })?;
                return Ok(Some(Owners::Account(id)));
            }
            let recursive =
                p.spec().param("isrecursive").is_some() && p.bool("isrecursive") == Some(true);
            return Ok(Some(if recursive {
                Owners::DomainTree(domain_id, path)
            } else {
                Owners::Domain(domain_id)
            }));
        }
    }
    Ok(Some(match scope(app, caller, p).await? {
        Some(account) => Owners::Account(AccountId::from(account)),
        None => Owners::Everyone,
    }))
}

/// A `zoneid` (list filter or argument) must be the server's zone.
pub(crate) fn zone_param(app: &App, p: &Params, name: &str) -> ApiResult<()> {
    match given(p, name) {
        Some(z) if z != app.site.zone_uuid => Err(unknown(p, name)),
        _ => Ok(()),
    }
}

/// The server's zone: uuid and name.
fn zone(app: &App) -> Zone<'_> {
    (app.site.zone_uuid.as_str(), app.site.zone_name.as_str())
}

/// Admin-only commands answer everyone else as CloudStack answers a command the caller may not
/// use.
pub(crate) fn admin_only(caller: &Caller) -> ApiResult<()> {
    if caller.admin {
        Ok(())
    } else {
        Err(ApiError::new(
            ApiErrorCode::UnsupportedAction,
            Some(CsErrorCode::UnavailableCommand),
            "The given command does not exist or it is not available for user",
        ))
    }
}

/// A guest address in `net` for a VM or a NIC's secondary address, in the caller's change
/// (under the network's lock): `wanted`, unless a VM or a secondary address of the network
/// holds it (431), else the network's lowest free address (533 when none is left).
pub(crate) async fn guest_address(
    change: &mut store::ChangeTx,
    net: &NetworkRow,
    wanted: Option<std::net::Ipv4Addr>,
) -> ApiResult<std::net::Ipv4Addr> {
    let used = store::vms::guest_ips(change.conn(), net.id)
        .await
        .map_err(store_error)?;
    match wanted {
        Some(ip) if used.contains(&ip) => Err(ApiError::invalid_parameter(format!(
            "Invalid ipaddress {ip}: it is already in use in network {}",
            net.name
        ))),
        Some(ip) => Ok(ip),
        None => domain::addressing::lowest_free(net.cidr, net.gateway, &used).ok_or_else(|| {
            ApiError::insufficient_address_capacity(format!(
                "Insufficient address capacity: network {} ({}) has no free address",
                net.name, net.cidr
            ))
        }),
    }
}

/// The `keyword` filter, lower-cased.
pub(crate) fn keyword(p: &Params) -> Option<String> {
    given(p, "keyword").map(str::to_lowercase)
}

/// Whether `hay` contains the lower-cased `needle`, ignoring case.
pub(crate) fn contains(hay: &str, needle: &str) -> bool {
    hay.to_lowercase().contains(needle)
}

/// An account's owner fields, read once per listing.
async fn owner_of(
    app: &App,
    cache: &mut HashMap<AccountId, Owner>,
    account_id: AccountId,
) -> ApiResult<Owner> {
    if let Some(o) = cache.get(&account_id) {
        return Ok(o.clone());
    }
    let o = owner(app, account_id).await?;
    cache.insert(account_id, o.clone());
    Ok(o)
}

fn payload(outcome: Outcome, event: &str, what: String, failure: &str) -> Payload {
    Payload::new(outcome, event, what, failure)
}

/// The account a create acts for: the caller's, or (root admins) the account named by
/// `account` (and `domainid`). Users may only name themselves.
async fn acting_for(app: &App, caller: &Caller, p: &Params) -> ApiResult<i64> {
    let Some(name) = given(p, "account") else {
        return Ok(caller.account_id);
    };
    let domain = given(p, "domainid");
    if !caller.admin {
        if name == caller.account_name && domain.is_none_or(|d| d == caller.domain_uuid) {
            return Ok(caller.account_id);
        }
        return Err(ApiError::permission_denied(format!(
            "Account {} may not act for account {name}",
            caller.account_name
        )));
    }
    let found = match domain {
        Some(d) => owners::account_in_domain_uuid(&app.db, name, d).await,
        None => owners::first_account_named(&app.db, name).await,
    }
    .map_err(store_error)?;
    found.map(AccountId::get).ok_or_else(|| {
        ApiError::invalid_parameter(match domain {
            Some(d) => format!("Unable to find account {name} in domain {d}"),
            None => format!("Unable to find account {name}"),
        })
    })
}

/// A network with a deleteNetwork job pending takes no new work.
async fn usable_network(app: &App, net: &NetworkRow) -> ApiResult<()> {
    if store::networks::being_deleted(&app.db, net.id)
        .await
        .map_err(store_error)?
    {
        return Err(ApiError::invalid_parameter(format!(
            "Network {} is being deleted",
            net.uuid
        )));
    }
    Ok(())
}

/// A network filter of a list: visible to the caller, or 431.
async fn network_filter(
    app: &App,
    caller: &Caller,
    p: &Params,
    name: &str,
) -> ApiResult<Option<NetworkId>> {
    if given(p, name).is_none() {
        return Ok(None);
    }
    let net = super::network_param(app, caller, p, name).await?;
    Ok(Some(net.id))
}

#[cfg(test)]
mod tests;
