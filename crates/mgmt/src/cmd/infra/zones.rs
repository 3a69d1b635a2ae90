//! listZones and updateZone (the DNS servers a zone's guests are given), listPhysicalNetworks
//! and updatePhysicalNetwork (the guest VLANs a zone's networks are given).

use std::net::Ipv4Addr;

use api_types::error::ApiError;
use api_types::params::Params;
use domain::actor::Caller;
use domain::guest::VlanRanges;
use domain::job::{Kind, NewJob, Outcome};
use serde_json::Value;
use store::zones::PhysicalNetwork;
use store::Scheduled;

use super::{contains, given, keyword, payload, zone, zone_param};
use crate::app::{store_error, ApiResult, App};
use crate::cmd::{page, queued, required, unknown};
use crate::resp::{self, infra as infra_resp};

/// listZones: the server's one zone.
pub(crate) async fn list_zones(app: &App, _caller: &Caller, p: &Params) -> ApiResult<Value> {
    let site = &app.site;
    let kw = keyword(p);
    let matches = given(p, "id").is_none_or(|id| id == site.zone_uuid)
        && given(p, "name").is_none_or(|n| n == site.zone_name)
        && kw.as_deref().is_none_or(|k| contains(&site.zone_name, k));
    let items = if matches {
        let dns = store::zones::dns(&app.db, site.zone_id)
            .await
            .map_err(store_error)?;
        vec![infra_resp::zone(zone(app), &dns)]
    } else {
        Vec::new()
    };
    Ok(page("zone", items, p.paging()))
}

/// A DNS server parameter: an IPv4 address, or empty to clear it.
fn dns_param(p: &Params, name: &str) -> ApiResult<Option<Option<Ipv4Addr>>> {
    match p.str(name) {
        None => Ok(None),
        Some(v) if v.trim().is_empty() => Ok(Some(None)),
        Some(v) => v
            .trim()
            .parse::<Ipv4Addr>()
            .map(|a| Some(Some(a)))
            .map_err(|_| {
                ApiError::invalid_parameter(format!(
                    "Please enter a valid IP address for {name}: {v} is not an IPv4 address"
                ))
            }),
    }
}

/// updateZone (root admins): sets the zone's `dns1` and `dns2`, the DNS servers its routers
/// hand to guests. A parameter left out keeps its value; an empty one clears it. Every router
/// of the zone is sent its config again with the new servers.
pub(crate) async fn update_zone(app: &App, _caller: &Caller, p: &Params) -> ApiResult<Value> {
    let id = required(p, "id")?;
    if id != app.site.zone_uuid {
        return Err(unknown(p, "id"));
    }
    let (dns1, dns2) = (dns_param(p, "dns1")?, dns_param(p, "dns2")?);
    let zone_id = app.site.zone_id;
    let now = store::zones::dns(&app.db, zone_id)
        .await
        .map_err(store_error)?;
    let dns1 = dns1.unwrap_or_else(|| now.first().copied());
    let dns2 = dns2.unwrap_or_else(|| now.get(1).copied());
    let (dns1, dns2) = match (dns1, dns2) {
        (None, Some(_)) => {
            return Err(ApiError::invalid_parameter(
                "dns2 cannot be set without dns1",
            ))
        }
        pair => pair,
    };
    let mut change = app.db.change(None).await.map_err(store_error)?;
    let networks = store::zones::set_dns(&mut change, zone_id, dns1, dns2)
        .await
        .map_err(store_error)?;
    for n in networks {
        change.ring(n);
    }
    let receipt = change.commit().await.map_err(store_error)?;
    app.doorbell.ring(receipt);
    let dns: Vec<Ipv4Addr> = [dns1, dns2].into_iter().flatten().collect();
    Ok(resp::wrap("zone", infra_resp::zone(zone(app), &dns)))
}

/// listPhysicalNetworks (root admins): the zone's one physical network.
pub(crate) async fn list_physical_networks(
    app: &App,
    _caller: &Caller,
    p: &Params,
) -> ApiResult<Value> {
    zone_param(app, p, "zoneid")?;
    let kw = keyword(p);
    let items = store::zones::physical_networks(&app.db)
        .await
        .map_err(store_error)?
        .into_iter()
        .filter(|pn| {
            pn.zone_id == app.site.zone_id
                && given(p, "id").is_none_or(|id| id == pn.uuid)
                && given(p, "name").is_none_or(|n| n == pn.name)
                && kw.as_deref().is_none_or(|k| contains(&pn.name, k))
        })
        .map(|pn| infra_resp::physical_network(&pn, zone(app)))
        .collect();
    Ok(page("physicalnetwork", items, p.paging()))
}

/// The refusal of a new range that leaves out VLANs networks hold.
fn vlans_in_use(new: &VlanRanges, in_use: &[(u16, String)]) -> ApiError {
    const SHOWN: usize = 10;
    let mut shown: Vec<String> = in_use
        .iter()
        .take(SHOWN)
        .map(|(v, n)| format!("{v} (network {n})"))
        .collect();
    if in_use.len() > SHOWN {
        shown.push(format!("and {} more", in_use.len() - SHOWN));
    }
    ApiError::invalid_parameter(format!(
        "Unable to set the guest VLAN range to {new}: some VLANs outside it are in use: {}; \
         delete those networks first",
        shown.join(", ")
    ))
}

/// updatePhysicalNetwork (root admins, async): replaces the guest VLAN ranges. A VLAN that a
/// network holds must stay inside them (431 naming the networks otherwise). The change is made
/// under the physical network's lock, which every VLAN allocation takes, and its job ends in
/// the same transaction.
pub(crate) async fn update_physical_network(
    app: &App,
    caller: &Caller,
    p: &Params,
) -> ApiResult<Value> {
    let id = required(p, "id")?;
    let vlan = given(p, "vlan");
    let mut change = app.db.change(None).await.map_err(store_error)?;
    let mut pn: PhysicalNetwork =
        store::zones::lock_physical_network(&mut change, app.site.zone_id)
            .await
            .map_err(store_error)?;
    if pn.uuid != id {
        return Err(unknown(p, "id"));
    }
    if let Some(text) = vlan {
        let new = VlanRanges::parse(text)
            .map_err(|e| ApiError::invalid_parameter(format!("Invalid vlan {text}: {e}")))?;
        let outside: Vec<(u16, String)> = store::zones::used_vlans(change.conn(), app.site.zone_id)
            .await
            .map_err(store_error)?
            .into_iter()
            .filter(|(v, _)| !new.contains(*v))
            .collect();
        if !outside.is_empty() {
            return Err(vlans_in_use(&new, &outside));
        }
        store::zones::set_vlans(change.conn(), pn.id, &new)
            .await
            .map_err(store_error)?;
        pn.vlans = new;
    }
    let description = format!("updating physical network {} ({})", pn.name, pn.uuid);
    let scheduled = Scheduled {
        event_type: "PHYSICAL.NETWORK.UPDATE",
        description: &description,
        resource_uuid: Some(&pn.uuid),
    };
    let (job_id, job_uuid) = change
        .job(
            caller,
            NewJob {
                command: "updatePhysicalNetwork",
                kind: Kind::Change,
                network_id: None,
                payload: payload(
                    Outcome::Success,
                    "PHYSICAL.NETWORK.UPDATE",
                    description.clone(),
                    "Failed to update physical network",
                ),
                instance_type: Some("PhysicalNetwork"),
                instance_uuid: Some(&pn.uuid),
            },
            Some(scheduled),
        )
        .await
        .map_err(store_error)?;
    // Nothing for a router: the job ends with the change that made it.
    let result = resp::wrap(
        "physicalnetwork",
        infra_resp::physical_network(&pn, zone(app)),
    );
    change
        .complete_job(caller, (job_id, &job_uuid), &scheduled, &result)
        .await
        .map_err(store_error)?;
    let receipt = change.commit().await.map_err(store_error)?;
    app.doorbell.ring(receipt);
    Ok(queued(&job_uuid))
}
