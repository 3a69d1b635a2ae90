//! createVlanIpRange and listVlanIpRanges: the zone's public ranges (root admins only).

use api_types::error::ApiError;
use api_types::params::Params;
use domain::actor::Caller;
use domain::addressing::{is_host, meets_range, netmask_prefix, parse_ip, segment};
use serde_json::Value;
use store::ranges::PublicRange;

use super::{admin_only, contains, given, keyword, network_filter, zone_param};
use crate::app::{store_error, ApiResult, App};
use crate::cmd::{page, required};
use crate::resp::{self, infra as infra_resp};

/// The most addresses one range may hold.
const MAX_RANGE: u32 = 65_536;

/// createVlanIpRange (root admins): a public range and one Free row per address.
pub(crate) async fn create_vlan_range(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    admin_only(caller)?;
    zone_param(app, p, "zoneid")?;
    if ["networkid", "account", "domainid"]
        .iter()
        .any(|n| given(p, n).is_some())
    {
        return Err(ApiError::invalid_parameter(
            "Public ranges here serve every guest network of the zone; they cannot be \
             dedicated to a network, an account or a domain",
        ));
    }
    if p.bool("forvirtualnetwork") == Some(false) {
        return Err(ApiError::invalid_parameter(
            "Public ranges here are for routed guest networks: forvirtualnetwork must be true",
        ));
    }
    let start = parse_ip("startip", required(p, "startip")?)?;
    let end = match given(p, "endip") {
        Some(e) => parse_ip("endip", e)?,
        None => start,
    };
    let first = store::ranges::first_of_zone(&app.db, app.site.zone_id)
        .await
        .map_err(store_error)?;
    let gateway_s = given(p, "gateway")
        .map(str::to_string)
        .or_else(|| first.as_ref().map(|f| f.range.gateway.to_string()))
        .ok_or_else(|| ApiError::missing_parameter(p.spec().name, "gateway"))?;
    let netmask_s = given(p, "netmask")
        .map(str::to_string)
        .or_else(|| first.as_ref().map(|f| f.range.netmask.to_string()))
        .ok_or_else(|| ApiError::missing_parameter(p.spec().name, "netmask"))?;
    let gateway = parse_ip("gateway", &gateway_s)?;
    let prefix = netmask_prefix(&netmask_s)?;
    let netmask = parse_ip("netmask", &netmask_s)?;
    if !(8..=30).contains(&prefix) {
        return Err(ApiError::invalid_parameter(format!(
            "Invalid netmask {netmask_s}: a public segment is a /8 to a /30"
        )));
    }
    let subnet = segment(gateway, prefix);
    if !is_host(gateway, subnet) {
        return Err(ApiError::invalid_parameter(format!(
            "Invalid gateway {gateway}: not a host address of {subnet}"
        )));
    }
    let (s, e) = (u32::from(start), u32::from(end));
    if s > e {
        return Err(ApiError::invalid_parameter(format!(
            "startip {start} is greater than endip {end}"
        )));
    }
    if e - s >= MAX_RANGE {
        return Err(ApiError::invalid_parameter(format!(
            "The range {start}-{end} holds {} addresses; at most {MAX_RANGE} are allowed",
            u64::from(e - s) + 1
        )));
    }
    for ip in [start, end] {
        if !is_host(ip, subnet) {
            return Err(ApiError::invalid_parameter(format!(
                "The range {start}-{end} is not inside the segment {subnet} of gateway {gateway}"
            )));
        }
    }
    if (start..=end).contains(&gateway) {
        return Err(ApiError::invalid_parameter(format!(
            "The range {start}-{end} contains its gateway {gateway}"
        )));
    }
    let vlan = given(p, "vlan").unwrap_or("untagged").to_string();
    let mut change = app.db.change(None).await.map_err(store_error)?;
    for (os, oe) in store::ranges::bounds(change.conn())
        .await
        .map_err(store_error)?
    {
        if start <= oe && os <= end {
            return Err(ApiError::invalid_parameter(format!(
                "The range {start}-{end} overlaps the existing range {os}-{oe}"
            )));
        }
    }
    for net in store::networks::guest_cidrs(change.conn())
        .await
        .map_err(store_error)?
    {
        if meets_range(&net, start, end) {
            return Err(ApiError::invalid_parameter(format!(
                "The range {start}-{end} overlaps the guest network {net}"
            )));
        }
    }
    let range = PublicRange {
        vlan,
        gateway,
        netmask,
        start,
        end,
    };
    let (range_id, range_uuid) = store::ranges::insert(change.conn(), app.site.zone_id, &range)
        .await
        .map_err(store_error)?;
    store::events::event(
        change.conn(),
        caller.account_id,
        caller.user_id,
        "VLAN.IP.RANGE.CREATE",
        "INFO",
        "Completed",
        &format!("Created public range {start}-{end}"),
        Some(&range_uuid),
        None,
    )
    .await
    .map_err(store_error)?;
    let receipt = change.commit().await.map_err(store_error)?;
    app.doorbell.ring(receipt);
    let created = store::ranges::by_id(&app.db, range_id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::internal(format!("public range {range_id} is gone")))?;
    Ok(resp::wrap(
        "vlan",
        infra_resp::range(&created, &app.site.zone_uuid),
    ))
}

/// listVlanIpRanges (root admins).
pub(crate) async fn list_vlan_ranges(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    admin_only(caller)?;
    zone_param(app, p, "zoneid")?;
    // No range is dedicated to a network: a (visible) network filter matches nothing.
    if network_filter(app, caller, p, "networkid").await?.is_some() {
        return Ok(page("vlaniprange", Vec::new(), p.paging()));
    }
    let ranges = store::ranges::list(&app.db).await.map_err(store_error)?;
    let kw = keyword(p);
    let mut items = Vec::new();
    for r in &ranges {
        let item = infra_resp::range(r, &app.site.zone_uuid);
        if given(p, "id").is_some_and(|id| item["id"] != id) {
            continue;
        }
        if let Some(k) = kw.as_deref() {
            let hay = format!("{} {}", item["vlan"], item["description"]);
            if !contains(&hay, k) {
                continue;
            }
        }
        items.push(item);
    }
    Ok(page("vlaniprange", items, p.paging()))
}
