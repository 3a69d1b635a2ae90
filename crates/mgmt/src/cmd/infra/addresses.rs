//! associateIpAddress, disassociateIpAddress and listPublicIpAddresses: the public addresses
//! of guest networks.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use api_types::error::ApiError;
use api_types::params::Params;
use domain::actor::Caller;
use domain::addressing::parse_ip;
use domain::ids::AccountId;
use domain::job::{Kind, NewJob, Outcome};
use domain::model::IpRow;
use serde_json::Value;
use store::addresses::{Allocation, IpListing, IpQuery};
use store::{ChangeTx, Scheduled};

use super::{
    acting_for, contains, given, keyword, network_filter, owner_of, owners, payload,
    usable_network, zone_param,
};
use crate::app::{store_error, ApiResult, App};
use crate::cmd::limits::{self, Resource};
use crate::cmd::tags::ResourceType;
use crate::cmd::{accepted, page, queued};
use crate::resp::{self, IpContext, Owner};

/// The answer when the zone has no Free address left.
pub(super) fn no_free_ip(app: &App) -> ApiError {
    ApiError::insufficient_address_capacity(format!(
        "Insufficient address capacity: no free public ip address in zone {}",
        app.site.zone_name
    ))
}

/// A Free address of the zone for the change: `wanted`, or the lowest. `Ok(None)` when none is
/// free.
async fn free_ip(
    app: &App,
    change: &mut ChangeTx,
    wanted: Option<Ipv4Addr>,
) -> ApiResult<Option<IpRow>> {
    let Some(ip) = wanted else {
        return store::addresses::lowest_free(change, app.site.zone_id)
            .await
            .map_err(store_error);
    };
    let row = store::addresses::for_taking(change, app.site.zone_id, ip)
        .await
        .map_err(store_error)?
        .ok_or_else(|| {
            ApiError::invalid_parameter(format!(
                "Unable to use ip address {ip}: it is in no public range of zone {}",
                app.site.zone_name
            ))
        })?;
    if row.state != "Free" {
        return Err(ApiError::invalid_parameter(format!(
            "Unable to use ip address {ip}: it is already in use"
        )));
    }
    Ok(Some(row))
}

/// Takes a Free address found in this change.
pub(super) async fn take_ip(change: &mut ChangeTx, ip: &IpRow, a: &Allocation) -> ApiResult<()> {
    let taken = store::addresses::allocate(change.conn(), ip.id, a)
        .await
        .map_err(store_error)?;
    if !taken {
        return Err(ApiError::internal(format!(
            "ip address {} was taken by a concurrent request; try again",
            ip.address
        )));
    }
    Ok(())
}

/// An address as its response shows it.
/// Whether an IP has a static NAT (enabled, or being enabled), as `isstaticnat` shows it.
fn has_static_nat(ip: &domain::model::IpRow) -> bool {
    ip.nat
        .as_ref()
        .is_some_and(|n| n.state != domain::model::State::Revoke)
}

async fn ip_item(
    app: &App,
    cache: &mut HashMap<AccountId, Owner>,
    l: &IpListing,
    admin: bool,
) -> ApiResult<Value> {
    let owner = match l.ip.account_id {
        Some(a) => Some(owner_of(app, cache, a).await?),
        None => None,
    };
    let cx = IpContext {
        zone: (app.site.zone_uuid.clone(), app.site.zone_name.clone()),
        owner,
        vlan_uuid: l.vlan_uuid.clone(),
        vlan_name: l.vlan_name.clone(),
        network: l.network.clone(),
        has_rules: l.has_rules,
        nat_vm: crate::resp::job::nat_vm(&app.db, &l.ip).await?,
    };
    Ok(resp::ip_address(&l.ip, &cx, admin))
}

/// associateIpAddress (async create): the address is taken now (Allocating) and reaches the
/// router with the job.
pub(crate) async fn associate_ip(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    if given(p, "networkid").is_none() {
        return Err(ApiError::invalid_parameter(
            "networkid is required: every public ip address here belongs to a guest network",
        ));
    }
    zone_param(app, p, "zoneid")?;
    let net = crate::cmd::network_param(app, caller, p, "networkid").await?;
    usable_network(app, &net).await?;
    if given(p, "account").is_some() {
        let acting = acting_for(app, caller, p).await?;
        if acting != net.account_id.get() {
            return Err(ApiError::invalid_parameter(format!(
                "Network {} does not belong to account {}",
                net.uuid,
                given(p, "account").unwrap_or_default()
            )));
        }
    }
    let wanted = given(p, "ipaddress")
        .map(|s| parse_ip("ipaddress", s))
        .transpose()?;
    let network = net.id;
    let mut change = app.db.change(Some(network)).await.map_err(store_error)?;
    change.lock_network().await.map_err(store_error)?;
    limits::take(&mut change, net.account_id, &[(Resource::PublicIp, 1)]).await?;
    let ip = free_ip(app, &mut change, wanted)
        .await?
        .ok_or_else(|| no_free_ip(app))?;
    let (job_id, job_uuid) = change
        .job(
            caller,
            NewJob {
                command: "associateIpAddress",
                kind: Kind::Change,
                network_id: Some(network),
                payload: payload(
                    Outcome::Ip { id: ip.id },
                    "NET.IPASSIGN",
                    format!(
                        "associating ip address {} with network {}",
                        ip.address, net.name
                    ),
                    "Failed to associate ip address",
                ),
                instance_type: Some("IpAddress"),
                instance_uuid: Some(&ip.uuid),
            },
            Some(Scheduled {
                event_type: "NET.IPASSIGN",
                description: &format!(
                    "associating ip address {} with network {}",
                    ip.address, net.uuid
                ),
                resource_uuid: Some(&ip.uuid),
            }),
        )
        .await
        .map_err(store_error)?;
    take_ip(
        &mut change,
        &ip,
        &Allocation {
            state: "Allocating",
            account: net.account_id,
            network,
            source_nat: false,
            job: Some(job_id),
        },
    )
    .await?;
    let receipt = change.commit().await.map_err(store_error)?;
    app.doorbell.ring(receipt);
    Ok(accepted(&ip.uuid, &job_uuid))
}

/// The address disassociateIpAddress names, by `id` or by `ipaddress`, if the caller may see
/// it.
async fn named_ip(app: &App, caller: &Caller, p: &Params) -> ApiResult<IpRow> {
    if given(p, "id").is_some() {
        return crate::cmd::ip_param(app, caller, p, "id").await;
    }
    let Some(addr) = given(p, "ipaddress") else {
        return Err(ApiError::invalid_parameter(
            "Either id or ipaddress must be given",
        ));
    };
    let not_found = || ApiError::invalid_parameter(format!("Unable to find ip address {addr}"));
    let ip = store::addresses::by_address(&app.db, addr)
        .await
        .map_err(store_error)?
        .ok_or_else(not_found)?;
    match ip.account_id {
        Some(a) if caller.may_touch(a) => Ok(ip),
        None if caller.admin => Ok(ip),
        _ => Err(not_found()),
    }
}

/// disassociateIpAddress (async): the rules on the address are revoked and the address is
/// released by one job.
pub(crate) async fn disassociate_ip(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let ip = named_ip(app, caller, p).await?;
    let Some(network_id) = ip.network_id.filter(|_| ip.state != "Free") else {
        return Err(ApiError::invalid_parameter(format!(
            "ip address {} is not allocated",
            ip.address
        )));
    };
    if ip.source_nat {
        return Err(ApiError::invalid_parameter(format!(
            "Can't release source nat ip address {}",
            ip.address
        )));
    }
    if ip.state == "Releasing" {
        return Err(ApiError::invalid_parameter(format!(
            "ip address {} is already being released",
            ip.address
        )));
    }
    let network = network_id;
    let mut change = app.db.change(Some(network)).await.map_err(store_error)?;
    change.lock_network().await.map_err(store_error)?;
    let (job_id, job_uuid) = change
        .job(
            caller,
            NewJob {
                command: "disassociateIpAddress",
                kind: Kind::Change,
                network_id: Some(network),
                payload: payload(
                    Outcome::Success,
                    "NET.IPRELEASE",
                    format!("releasing ip address {}", ip.address),
                    "Failed to disassociate ip address",
                ),
                instance_type: Some("IpAddress"),
                instance_uuid: Some(&ip.uuid),
            },
            Some(Scheduled {
                event_type: "NET.IPRELEASE",
                description: &format!("releasing ip address {}", ip.address),
                resource_uuid: Some(&ip.uuid),
            }),
        )
        .await
        .map_err(store_error)?;
    store::addresses::schedule_release(change.conn(), ip.id, job_id)
        .await
        .map_err(store_error)?;
    let receipt = change.commit().await.map_err(store_error)?;
    app.doorbell.ring(receipt);
    Ok(queued(&job_uuid))
}

/// The states an address may be listed by, as stored.
const IP_STATES: [&str; 4] = ["Free", "Allocating", "Allocated", "Releasing"];

/// listPublicIpAddresses.
pub(crate) async fn list_ips(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    zone_param(app, p, "zoneid")?;
    crate::cmd::visible_filter(app, caller, p, "id", "public_ips").await?;
    let mut networks = Vec::new();
    for name in ["associatednetworkid", "networkid"] {
        if let Some(n) = network_filter(app, caller, p, name).await? {
            networks.push(n);
        }
    }
    let allocated_only = p.bool("allocatedonly").unwrap_or(true);
    let tagged = crate::cmd::tags::filter(app, p, ResourceType::PublicIpAddress).await?;
    let mut nothing = false;
    let state = match given(p, "state") {
        Some(s) => {
            let known = IP_STATES.into_iter().find(|k| k.eq_ignore_ascii_case(s));
            nothing |= known.is_none();
            known
        }
        None => None,
    };
    // What guestnet has none of: direct ranges, ranges for system VMs, hidden addresses. (A
    // `vpcid` names nothing, and the dispatcher refuses it; the zone has one physical network,
    // which the dispatcher checks.)
    nothing |= p.bool("forvirtualnetwork") == Some(false)
        || p.bool("forsystemvms") == Some(true)
        || p.bool("fordisplay") == Some(false);
    let who = owners(app, caller, p).await?;
    let Some(who) = who.filter(|_| !nothing) else {
        return Ok(page("publicipaddress", Vec::new(), p.paging()));
    };
    let balanced = if p.bool("forloadbalancing") == Some(true) {
        Some(
            store::addresses::balanced(&app.db)
                .await
                .map_err(store_error)?,
        )
    } else {
        None
    };
    let q = IpQuery {
        id: None,
        uuid: given(p, "id"),
        address: given(p, "ipaddress"),
        networks,
        allocated_only,
        source_nat: p.bool("issourcenat"),
        vlan_uuid: given(p, "vlanid"),
        state,
        owners: Some(who),
        or_free: caller.admin && !allocated_only,
    };
    let listed = store::addresses::list(&app.db, &q)
        .await
        .map_err(store_error)?;
    let kw = keyword(p);
    let mut cache = HashMap::new();
    let mut items = Vec::new();
    for l in &listed {
        if kw
            .as_deref()
            .is_some_and(|k| !contains(&l.ip.address.to_string(), k))
            || balanced.as_ref().is_some_and(|b| !b.contains(&l.ip.id))
            || p.bool("isstaticnat")
                .is_some_and(|want| want != has_static_nat(&l.ip))
            || tagged.as_ref().is_some_and(|t| !t.contains(&l.ip.uuid))
        {
            continue;
        }
        items.push(ip_item(app, &mut cache, l, caller.admin).await?);
    }
    crate::cmd::tags::attach(app, ResourceType::PublicIpAddress, &mut items).await?;
    Ok(page("publicipaddress", items, p.paging()))
}
