//! createNetwork, listNetworks and deleteNetwork.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use api_types::error::{ApiError, ApiErrorCode, CsErrorCode};
use api_types::params::Params;
use domain::actor::Caller;
use domain::addressing::{self, meets_range};
use domain::ids::{AccountId, NetworkId};
use domain::job::{Kind, NewJob, Outcome};
use domain::model::{NetworkRow, RouterState};
use ipnet::Ipv4Net;
use serde_json::Value;
use store::addresses::Allocation;
use store::db::now_ms;
use store::networks::{NetworkQuery, NewNetwork};
use store::{Scheduled, StoreError};

use super::addresses::{no_free_ip, take_ip};
use super::{
    acting_for, contains, given, keyword, owner_of, owners, payload, usable_network, zone,
    zone_param,
};
use crate::app::{chain, internal, store_error, ApiResult, App};
use crate::cmd::limits::{self, Resource};
use crate::cmd::tags::ResourceType;
use crate::cmd::{network_by_id, owner, page, queued, required, unknown};
use crate::resp;

/// Gateway and CIDR from `gateway` and `netmask`, when given.
fn requested_cidr(p: &Params) -> ApiResult<Option<(Ipv4Net, Ipv4Addr)>> {
    match (given(p, "gateway"), given(p, "netmask")) {
        (None, None) => Ok(None),
        (Some(_), None) | (None, Some(_)) => Err(ApiError::invalid_parameter(
            "gateway and netmask must be given together",
        )),
        (Some(g), Some(m)) => addressing::guest_network(g, m).map(Some),
    }
}

/// The offering named by `networkofferingid`.
async fn offering_param(app: &App, p: &Params) -> ApiResult<store::catalogue::NetworkOffering> {
    let uuid = required(p, "networkofferingid")?;
    store::catalogue::network_offering(&app.db, uuid)
        .await
        .map_err(store_error)?
        .ok_or_else(|| unknown(p, "networkofferingid"))
}

/// createNetwork (sync): the network, its router (placed on a host) and its source-NAT address
/// in one transaction; then the router is brought up and given its first generation by the
/// server holding its host, and the call returns when it is Running (or removes the network
/// again and fails with the reason).
pub(crate) async fn create_network(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let name = required(p, "name")?.to_string();
    let display = given(p, "displaytext").unwrap_or(&name).to_string();
    required(p, "zoneid")?;
    zone_param(app, p, "zoneid")?;
    let offering = offering_param(app, p).await?;
    let account_id = acting_for(app, caller, p).await?;
    let requested = requested_cidr(p)?;
    let network_domain = match given(p, "networkdomain") {
        Some(d) => {
            domain::guest::check_network_domain(d)
                .map_err(|e| ApiError::invalid_parameter(e.to_string()))?;
            d.to_ascii_lowercase()
        }
        None => domain::guest::default_network_domain(account_id),
    };
    let network_uuid = uuid::Uuid::new_v4().to_string();
    let host = crate::hosts::place(&app.db, &app.hosts)
        .await
        .map_err(internal)?
        .ok_or_else(|| {
            ApiError::new(
                ApiErrorCode::InsufficientCapacity,
                Some(CsErrorCode::InsufficientCapacity),
                "Unable to create a deployment for the network: no host has a connected agent",
            )
        })?;
    let mut change = app.db.change(None).await.map_err(store_error)?;
    limits::take(
        &mut change,
        domain::ids::AccountId::from(account_id),
        &[(Resource::Network, 1), (Resource::PublicIp, 1)],
    )
    .await?;
    let networks = store::networks::guest_cidrs(change.conn())
        .await
        .map_err(store_error)?;
    let ranges = store::ranges::bounds(change.conn())
        .await
        .map_err(store_error)?;
    let (cidr, gateway) = match requested {
        Some((cidr, gateway)) => {
            if let Some((s, e)) = ranges.iter().find(|(s, e)| meets_range(&cidr, *s, *e)) {
                return Err(ApiError::invalid_parameter(format!(
                    "Invalid guest network {cidr}: it overlaps the public range {s}-{e}"
                )));
            }
            (cidr, gateway)
        }
        None => addressing::pick_cidr(&networks, &ranges).ok_or_else(|| {
            ApiError::insufficient_address_capacity(
                "Insufficient address capacity: every /24 of 10.1.0.0/16 is in use; give \
                     gateway and netmask",
            )
        })?,
    };
    // The zone's physical network stays locked to the commit: concurrent creates take VLANs
    // one after the other.
    let vlan = store::networks::free_vlan(&mut change, app.site.zone_id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| {
            ApiError::new(
                ApiErrorCode::InsufficientCapacity,
                Some(CsErrorCode::InsufficientCapacity),
                format!(
                    "Unable to allocate vnet as a part of network {name} implement: every \
                     guest VLAN of the zone's physical network is in use (listPhysicalNetworks \
                     shows the range; updatePhysicalNetwork vlan= widens it)"
                ),
            )
        })?;
    let ip = store::addresses::lowest_free(&mut change, app.site.zone_id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| no_free_ip(app))?;
    let network = store::networks::insert(
        change.conn(),
        &NewNetwork {
            uuid: &network_uuid,
            name: &name,
            display_text: &display,
            account: AccountId::from(account_id),
            zone_id: app.site.zone_id,
            offering_id: offering.id,
            cidr,
            gateway,
            vlan,
            network_domain: &network_domain,
            created: now_ms(),
        },
        &host,
    )
    .await
    .map_err(store_error)?;
    take_ip(
        &mut change,
        &ip,
        &Allocation {
            state: "Allocated",
            account: AccountId::from(account_id),
            network,
            source_nat: true,
            job: None,
        },
    )
    .await?;
    store::events::event(
        change.conn(),
        caller.account_id,
        caller.user_id,
        "NETWORK.CREATE",
        "INFO",
        "Completed",
        &format!(
            "Created network {name} ({cidr}) with source NAT address {}",
            ip.address
        ),
        Some(&network_uuid),
        None,
    )
    .await
    .map_err(store_error)?;
    change.ring(network);
    let receipt = change.commit().await.map_err(store_error)?;
    app.doorbell.ring(receipt);
    if let Err(reason) = router_started(app, network).await {
        let reason = chain(&reason);
        // Take back what was written: a failed create leaves nothing behind.
        if let Err(e) = store::networks::delete_network(&app.db, network.get()).await {
            tracing::warn!(network = network.get(), error = %chain(&e), "removing a network that failed to start");
        }
        let mut change = app.db.change(None).await.map_err(store_error)?;
        store::events::event(
            change.conn(),
            caller.account_id,
            caller.user_id,
            "NETWORK.CREATE",
            "ERROR",
            "Completed",
            &format!("Network {name} was removed again: its router could not start: {reason}"),
            Some(&network_uuid),
            None,
        )
        .await
        .map_err(store_error)?;
        let receipt = change.commit().await.map_err(store_error)?;
        app.doorbell.ring(receipt);
        return Err(ApiError::internal(format!(
            "Unable to implement network {name}: {reason}"
        )));
    }
    let net = network_by_id(app, network).await?;
    let own = owner(app, net.account_id).await?;
    let dns = store::zones::dns(&app.db, app.site.zone_id)
        .await
        .map_err(store_error)?;
    Ok(resp::wrap(
        "network",
        resp::network(
            &net,
            &own,
            (&offering.uuid, &offering.name),
            zone(app),
            &dns,
            caller.admin,
        ),
    ))
}

/// Why a new network's router did not start.
#[derive(Debug, thiserror::Error)]
enum NotStarted {
    /// Its row is gone.
    #[error("the router is gone")]
    Gone,
    /// It ended in Error.
    #[error("{reason}")]
    Failed {
        /// The router's last error, or words saying it did not start.
        reason: String,
    },
    /// It was still starting at the deadline.
    #[error("router {name} on host {host} did not start within {secs} s")]
    Late {
        /// The router.
        name: String,
        /// Its host.
        host: String,
        /// How long it was given.
        secs: u64,
    },
    /// Its row could not be read.
    #[error("reading the router failed")]
    Store(#[source] StoreError),
}

/// Waits until a new network's router is Running; why not when it ends in Error or does not
/// start within the apply timeout (and a little more).
async fn router_started(app: &App, network: NetworkId) -> Result<(), NotStarted> {
    let limit = app.hosts.apply_timeout() + Duration::from_secs(10);
    let deadline = std::time::Instant::now() + limit;
    let mut wait = Duration::from_millis(1);
    loop {
        match store::routers::router_of(&app.db, network)
            .await
            .map_err(NotStarted::Store)?
        {
            None => return Err(NotStarted::Gone),
            Some(r) if r.state == RouterState::Running => return Ok(()),
            Some(r) if r.state == RouterState::Error => {
                return Err(NotStarted::Failed {
                    reason: r
                        .last_error
                        .unwrap_or_else(|| "the router did not start".into()),
                })
            }
            Some(r) => {
                if std::time::Instant::now() > deadline {
                    return Err(NotStarted::Late {
                        name: r.name,
                        host: r.host,
                        secs: limit.as_secs(),
                    });
                }
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_millis(20));
    }
}

/// listNetworks.
pub(crate) async fn list_networks(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    zone_param(app, p, "zoneid")?;
    crate::cmd::visible_filter(app, caller, p, "id", "networks").await?;
    let type_ok = given(p, "type")
        .is_none_or(|t| t.eq_ignore_ascii_case("isolated") || t.eq_ignore_ascii_case("all"));
    let matches = type_ok && network_filters_match(p)?;
    let who = owners(app, caller, p).await?;
    let Some(owners) = who.filter(|_| matches) else {
        return Ok(page("network", Vec::new(), p.paging()));
    };
    let q = NetworkQuery {
        uuid: given(p, "id"),
        name: given(p, "name"),
        owners,
    };
    let listed = store::networks::list(&app.db, &q)
        .await
        .map_err(store_error)?;
    let kw = keyword(p);
    let offering = given(p, "networkofferingid");
    let tagged = crate::cmd::tags::filter(app, p, ResourceType::Network).await?;
    let dns = store::zones::dns(&app.db, app.site.zone_id)
        .await
        .map_err(store_error)?;
    let mut cache = HashMap::new();
    let mut items = Vec::new();
    for l in &listed {
        let n = &l.network;
        if kw
            .as_deref()
            .is_some_and(|k| !contains(&n.name, k) && !contains(&n.display_text, k))
            || offering.is_some_and(|o| o != l.offering_uuid)
            || tagged.as_ref().is_some_and(|t| !t.contains(&n.uuid))
        {
            continue;
        }
        let own = owner_of(app, &mut cache, n.account_id).await?;
        items.push(resp::network(
            n,
            &own,
            (&l.offering_uuid, &l.offering_name),
            zone(app),
            &dns,
            caller.admin,
        ));
    }
    crate::cmd::tags::attach(app, ResourceType::Network, &mut items).await?;
    Ok(page("network", items, p.paging()))
}

/// The traffic types CloudStack's listNetworks takes; guestnet's networks are all Guest.
const TRAFFIC_TYPES: [&str; 7] = [
    "None",
    "Public",
    "Guest",
    "Storage",
    "Management",
    "Control",
    "Vpn",
];

/// Whether guestnet's networks (all isolated guest networks of an account, on the zone's one
/// physical network, shown, usable and up to date) can pass listNetworks' filters of what
/// every network here is alike in; 431 for a traffic type or ACL type CloudStack does not
/// know. `networkofferingid` and the ids are applied per network.
fn network_filters_match(p: &Params) -> ApiResult<bool> {
    let mut ok = true;
    if let Some(t) = given(p, "traffictype") {
        if !TRAFFIC_TYPES.iter().any(|k| k.eq_ignore_ascii_case(t)) {
            return Err(ApiError::invalid_parameter(format!(
                "Invalid traffictype {t}: use one of {}",
                TRAFFIC_TYPES.join(", ")
            )));
        }
        ok &= t.eq_ignore_ascii_case("Guest");
    }
    if let Some(a) = given(p, "acltype") {
        if !a.eq_ignore_ascii_case("Account") && !a.eq_ignore_ascii_case("Domain") {
            return Err(ApiError::invalid_parameter(format!(
                "Invalid acltype {a}: use Account or Domain"
            )));
        }
        ok &= a.eq_ignore_ascii_case("Account");
    }
    let provided = resp::service_names();
    ok &= p
        .list("supportedservices")
        .unwrap_or_default()
        .iter()
        .all(|s| provided.iter().any(|n| n.eq_ignore_ascii_case(s)));
    // What no network here is: a system network, a VPC tier, one with ranges of its own, one
    // waiting for a restart, one hidden from users, or one that VMs cannot use.
    for (flag, every_network) in [
        ("issystem", false),
        ("forvpc", false),
        ("specifyipranges", false),
        ("restartrequired", false),
        ("displaynetwork", true),
        ("canusefordeploy", true),
    ] {
        if let Some(v) = p.bool(flag) {
            ok &= v == every_network;
        }
    }
    Ok(ok)
}

/// The refusal of deleteNetwork while VMs sit on the network (CloudStack's network
/// orchestrator refuses to destroy a network with user VMs that are not expunged, and the job
/// fails with 530 "Failed to delete network").
fn network_in_use(net: &NetworkRow, vms: &[String]) -> ApiError {
    const SHOWN: usize = 10;
    let mut names = vms
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if vms.len() > SHOWN {
        names.push_str(&format!(" and {} more", vms.len() - SHOWN));
    }
    ApiError::internal(format!(
        "Failed to delete network {} ({}): {} virtual machine(s) still use it ({names}); destroy \
         them first, or (root admins) delete with forced=true to destroy them with the network",
        net.name,
        net.uuid,
        vms.len()
    ))
}

/// deleteNetwork (async): everything of the network is revoked by one job; the runner removes
/// the rows, the VMs and the router once the router has dropped them.
///
/// A network that VMs still use is refused (530, nothing written), as CloudStack refuses it,
/// unless a root admin passes `forced=true`: then its VMs are destroyed with it. For anyone
/// else `forced` is ignored, as CloudStack ignores an admins-only parameter.
pub(crate) async fn delete_network(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let net = crate::cmd::network_param(app, caller, p, "id").await?;
    usable_network(app, &net).await?;
    let forced = caller.admin && p.bool("forced") == Some(true);
    let network = net.id;
    let mut change = app.db.change(Some(network)).await.map_err(store_error)?;
    change.lock_network().await.map_err(store_error)?;
    // Under the network's lock: a deployVirtualMachine on it waits for this commit, and then
    // finds the network being deleted.
    if !forced {
        let vms = store::networks::vm_names(change.conn(), network)
            .await
            .map_err(store_error)?;
        if !vms.is_empty() {
            return Err(network_in_use(&net, &vms));
        }
    }
    let (job_id, job_uuid) = change
        .job(
            caller,
            NewJob {
                command: "deleteNetwork",
                kind: Kind::DeleteNetwork,
                network_id: Some(network),
                payload: payload(
                    Outcome::Success,
                    "NETWORK.DELETE",
                    format!("deleting network {}", net.name),
                    "Failed to delete network",
                ),
                instance_type: Some("Network"),
                instance_uuid: Some(&net.uuid),
            },
            Some(Scheduled {
                event_type: "NETWORK.DELETE",
                description: &format!("deleting network {} ({})", net.name, net.uuid),
                resource_uuid: Some(&net.uuid),
            }),
        )
        .await
        .map_err(store_error)?;
    store::networks::schedule_delete(change.conn(), network, job_id)
        .await
        .map_err(store_error)?;
    let receipt = change.commit().await.map_err(store_error)?;
    app.doorbell.ring(receipt);
    Ok(queued(&job_uuid))
}

/// The parameters of updateNetwork guestnet does not apply, each with why: given with a value
/// that would change the network, they are refused (431) naming themselves, never ignored.
const FIXED_NETWORK_PARAMS: &[(&str, &str)] = &[
    ("networkofferingid", "guestnet keeps a network's offering"),
    (
        "networkdomain",
        "a network's DNS domain is set when it is created",
    ),
    ("guestvmcidr", "guestnet keeps a network's CIDR"),
    ("changecidr", "guestnet keeps a network's CIDR"),
    ("displaynetwork", "every network is shown to its owner"),
    ("customid", "guestnet keeps the ids it gives"),
    ("forced", "guestnet keeps a network's offering"),
    ("updateinsequence", "a network has one router"),
];

/// Whether `param` of updateNetwork, as given, would change what guestnet keeps of `net`
/// (whose offering's id is `offering`). A client that sends what the network already has (as
/// Ansible's cs_network sends the offering with every update) changes nothing.
fn changes_fixed(p: &Params, param: &str, net: &NetworkRow, offering: &str) -> bool {
    let Some(v) = p.str(param).map(str::trim).filter(|v| !v.is_empty()) else {
        return false;
    };
    match param {
        "networkofferingid" => !v.eq_ignore_ascii_case(offering),
        "networkdomain" => !v.eq_ignore_ascii_case(&net.network_domain),
        "guestvmcidr" => v.parse::<Ipv4Net>().map(|c| c.trunc()) != Ok(net.cidr),
        "customid" => v != net.uuid,
        "displaynetwork" => p.bool(param) != Some(true),
        _ => p.bool(param) == Some(true),
    }
}

/// updateNetwork (async): a new name or description. Nothing reaches the router, so the job
/// ends in the transaction that makes the change; the answer is the network as it now is.
pub(crate) async fn update_network(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let net = crate::cmd::network_param(app, caller, p, "id").await?;
    let offering = store::catalogue::network_offerings(&app.db)
        .await
        .map_err(store_error)?
        .into_iter()
        .find(|o| o.id == net.offering_id)
        .map(|o| o.uuid)
        .ok_or_else(|| internal(format!("network {} has no offering", net.uuid)))?;
    if let Some((param, why)) = FIXED_NETWORK_PARAMS
        .iter()
        .find(|(param, _)| changes_fixed(p, param, &net, &offering))
    {
        return Err(ApiError::invalid_parameter(format!(
            "Unable to update network {} with {param}: {why}",
            net.uuid
        )));
    }
    usable_network(app, &net).await?;
    let listed = store::networks::list(
        &app.db,
        &NetworkQuery {
            uuid: Some(&net.uuid),
            name: None,
            owners: store::owners::Owners::Everyone,
        },
    )
    .await
    .map_err(store_error)?
    .into_iter()
    .next()
    .ok_or_else(|| unknown(p, "id"))?;
    let mut updated = listed.network;
    if let Some(name) = given(p, "name") {
        updated.name = name.to_string();
    }
    if let Some(text) = given(p, "displaytext") {
        updated.display_text = text.to_string();
    }
    let own = owner(app, updated.account_id).await?;
    let dns = store::zones::dns(&app.db, app.site.zone_id)
        .await
        .map_err(store_error)?;
    let mut change = app.db.change(Some(net.id)).await.map_err(store_error)?;
    change.lock_network().await.map_err(store_error)?;
    store::networks::set_names(change.conn(), net.id, &updated.name, &updated.display_text)
        .await
        .map_err(store_error)?;
    let description = format!("updating network {} ({})", updated.name, net.uuid);
    let scheduled = Scheduled {
        event_type: "NETWORK.UPDATE",
        description: &description,
        resource_uuid: Some(&net.uuid),
    };
    let (job_id, job_uuid) = change
        .job(
            caller,
            NewJob {
                command: "updateNetwork",
                kind: Kind::Change,
                network_id: None,
                payload: payload(
                    Outcome::Success,
                    "NETWORK.UPDATE",
                    description.clone(),
                    "Failed to update network",
                ),
                instance_type: Some("Network"),
                instance_uuid: Some(&net.uuid),
            },
            Some(scheduled),
        )
        .await
        .map_err(store_error)?;
    // Nothing for the router: the job ends with the change that made it.
    let result = resp::wrap(
        "network",
        resp::network(
            &updated,
            &own,
            (&listed.offering_uuid, &listed.offering_name),
            zone(app),
            &dns,
            caller.admin,
        ),
    );
    change
        .complete_job(caller, (job_id, &job_uuid), &scheduled, &result)
        .await
        .map_err(store_error)?;
    let receipt = change.commit().await.map_err(store_error)?;
    app.doorbell.ring(receipt);
    Ok(queued(&job_uuid))
}

/// restartNetwork (async): the network's worker sends the router its whole config again, with
/// `cleanup=true` after making the router again from nothing (its VMs stay); the job ends when
/// the router enforces the config. Redundant routers and live patches are refused (431).
pub(crate) async fn restart_network(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let net = crate::cmd::network_param(app, caller, p, "id").await?;
    for (param, why) in [
        ("makeredundant", "a network has one router"),
        (
            "livepatch",
            "the router runs the host's own software, which the host's packages update",
        ),
    ] {
        if p.bool(param) == Some(true) {
            return Err(ApiError::invalid_parameter(format!(
                "Unable to restart network {} with {param}=true: {why}",
                net.uuid
            )));
        }
    }
    usable_network(app, &net).await?;
    let rebuild = p.bool("cleanup") == Some(true);
    let network = net.id;
    let mut change = app.db.change(Some(network)).await.map_err(store_error)?;
    change.lock_network().await.map_err(store_error)?;
    let mut payload = payload(
        Outcome::Success,
        "NETWORK.RESTART",
        format!("restarting network {}", net.name),
        "Failed to restart network",
    );
    payload.rebuild = rebuild;
    let (_, job_uuid) = change
        .job(
            caller,
            NewJob {
                command: "restartNetwork",
                kind: Kind::RestartNetwork,
                network_id: Some(network),
                payload,
                instance_type: Some("Network"),
                instance_uuid: Some(&net.uuid),
            },
            Some(Scheduled {
                event_type: "NETWORK.RESTART",
                description: &format!("restarting network {} ({})", net.name, net.uuid),
                resource_uuid: Some(&net.uuid),
            }),
        )
        .await
        .map_err(store_error)?;
    let receipt = change.commit().await.map_err(store_error)?;
    app.doorbell.ring(receipt);
    Ok(queued(&job_uuid))
}
