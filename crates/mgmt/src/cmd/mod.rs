//! The commands: each handler checks its parameters, the caller's rights and conflicts, writes
//! rows (and, for async commands, the job) in one transaction, rings the network's job runner,
//! and answers as CloudStack does.

use api_types::catalogue::{ParamKind, ParamSpec};
use api_types::error::ApiError;
use api_types::params::{Paging, Params};
use serde_json::{json, Value};
use store::lookups::{Owned, Shared};

use crate::app::{store_error, ApiResult, App};
use crate::resp::Owner;
use domain::actor::Caller;
use domain::ids::{AccountId, NetworkId, RuleId};
use domain::model::{IpRow, NetworkRow, Rule};

mod about;
mod accounts;
pub(crate) mod firewall;
mod hosts;
mod infra;
mod lb;
mod limits;
pub mod table;
pub(crate) mod tags;

/// A command's answer: a JSON value, or JSON text the database built (large lists).
#[derive(Debug)]
pub enum Reply {
    /// A value.
    Json(Value),
    /// JSON text of one object.
    Text(String),
}

impl Reply {
    /// The answer as a value (parsing text the database built).
    pub fn into_value(self) -> Value {
        match self {
            Reply::Json(v) => v,
            Reply::Text(t) => serde_json::from_str(&t).unwrap_or(Value::Null),
        }
    }
}

/// Runs a command for a caller whose request has been checked against the catalogue: looks
/// its row up in the [command table](table), refuses admins-only commands to others, checks
/// the ids it is given, and runs its handler.
///
/// # Errors
/// The command's error, as CloudStack would answer it.
pub async fn dispatch(app: &App, caller: &Caller, name: &str, p: &Params) -> ApiResult<Reply> {
    let Some(command) = table::find(name) else {
        return Err(ApiError::unknown_command());
    };
    if command.admin_only {
        infra::admin_only(caller)?;
    }
    check_ids(app, caller, p).await?;
    (command.handler)(app, caller, p).await
}

/// A rule wrapped under `object` (`{"firewallrule": {...}}`), as a job result shows it to its
/// owner (fields for administrators included, as CloudStack's job results are serialized).
///
/// # Errors
/// 530 when the rule cannot be read.
pub async fn rule_object(app: &App, id: RuleId, object: &str) -> ApiResult<Value> {
    let rule = rule_by_id(app, id).await?;
    let inner = match rule.purpose {
        domain::model::Purpose::LoadBalancing => {
            let owner = owner(app, rule.account_id).await?;
            let zone = (app.site.zone_uuid.as_str(), app.site.zone_name.as_str());
            crate::resp::lb::load_balancer(&rule, &owner, zone, true)
        }
        purpose => firewall::rule_value(app, id, purpose).await?,
    };
    Ok(crate::resp::wrap(object, inner))
}

/// `customid`: CloudStack lets root admins replace an item's uuid with one of their choosing.
/// guestnet keeps the ids it gives, so a `customid` other than the item's own id is refused
/// (431, naming it), never ignored; the item's own id changes nothing.
///
/// # Errors
/// 431.
pub fn refuse_custom_id(p: &Params, uuid: &str) -> ApiResult<()> {
    if p.spec().param("customid").is_none() {
        return Ok(());
    }
    match p.str("customid").map(str::trim).filter(|v| !v.is_empty()) {
        Some(v) if v != uuid => Err(ApiError::invalid_parameter(format!(
            "Unable to set customid {v} on {uuid}: guestnet keeps the ids it gives"
        ))),
        _ => Ok(()),
    }
}

/// The 431 CloudStack sends for an id that does not exist (or that the caller may not see:
/// the answer is the same, so nothing leaks).
pub fn unknown(p: &Params, param: &str) -> ApiError {
    ApiError::unknown_uuid(p.spec().name, param, p.str(param).unwrap_or_default())
}

/// A required parameter's value (the catalogue marks it required, so it is present).
///
/// # Errors
/// 431 missing parameter, should the catalogue and the handler disagree.
pub fn required<'a>(p: &'a Params, name: &str) -> ApiResult<&'a str> {
    p.str(name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::missing_parameter(p.spec().name, name))
}

/// Who owns what `account_id` owns, for responses.
///
/// # Errors
/// 530 when the account cannot be read.
pub async fn owner(app: &App, account_id: AccountId) -> ApiResult<Owner> {
    let o = store::accounts::owner_names(&app.db, account_id)
        .await
        .map_err(store_error)?;
    Ok(Owner {
        account: o.account,
        domain_id: o.domain_uuid,
        domain: o.domain_name,
        domain_path: o.domain_path,
    })
}

/// A rule by internal id.
///
/// # Errors
/// 530 when it cannot be read.
pub async fn rule_by_id(app: &App, id: RuleId) -> ApiResult<Rule> {
    store::runner_reads::rule(&app.db, id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::internal(format!("rule {id} is gone")))
}

/// The rule named by uuid parameter `param`, if the caller may see it.
///
/// # Errors
/// 431 unknown id (also for another account's rule).
pub async fn rule_param(app: &App, caller: &Caller, p: &Params, param: &str) -> ApiResult<Rule> {
    let uuid = required(p, param)?;
    let rule = store::lookups::rule_by_uuid(&app.db, uuid)
        .await
        .map_err(store_error)?
        .ok_or_else(|| unknown(p, param))?;
    if !caller.may_touch(rule.account_id) {
        return Err(unknown(p, param));
    }
    Ok(rule)
}

/// The public IP named by uuid parameter `param`, if the caller may see it.
///
/// # Errors
/// 431 unknown id.
pub async fn ip_param(app: &App, caller: &Caller, p: &Params, param: &str) -> ApiResult<IpRow> {
    let uuid = required(p, param)?;
    let ip = store::lookups::ip_by_uuid(&app.db, uuid)
        .await
        .map_err(store_error)?
        .ok_or_else(|| unknown(p, param))?;
    match ip.account_id {
        Some(a) if caller.may_touch(a) => Ok(ip),
        None if caller.admin => Ok(ip),
        _ => Err(unknown(p, param)),
    }
}

/// The network named by uuid parameter `param`, if the caller may see it.
///
/// # Errors
/// 431 unknown id.
pub async fn network_param(
    app: &App,
    caller: &Caller,
    p: &Params,
    param: &str,
) -> ApiResult<NetworkRow> {
    let uuid = required(p, param)?;
    network_by_uuid(app, uuid)
        .await?
        .filter(|n| caller.may_touch(n.account_id))
        .ok_or_else(|| unknown(p, param))
}

/// A network by uuid.
///
/// # Errors
/// 530 when the query fails.
pub async fn network_by_uuid(app: &App, uuid: &str) -> ApiResult<Option<NetworkRow>> {
    store::lookups::network_by_uuid(&app.db, uuid)
        .await
        .map_err(store_error)
}

/// A network by internal id.
///
/// # Errors
/// 530 when it cannot be read.
pub async fn network_by_id(app: &App, id: NetworkId) -> ApiResult<NetworkRow> {
    store::networks::by_id(&app.db, id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::internal(format!("network {id} is gone")))
}

/// Which accounts a list shows: `None` for all (root admin with `listall=true`), or one.
///
/// A root admin may name an account with `account` (and `domainid`); everyone else sees their
/// own account.
///
/// # Errors
/// 431 for an unknown account name.
pub async fn scope(app: &App, caller: &Caller, p: &Params) -> ApiResult<Option<i64>> {
    if !caller.admin {
        return Ok(Some(caller.account_id));
    }
    let has = |n: &str| p.spec().param(n).is_some();
    if has("account") {
        if let Some(name) = p.str("account").filter(|s| !s.is_empty()) {
            let id = store::lookups::account_by_name(&app.db, name)
                .await
                .map_err(store_error)?
                .ok_or_else(|| {
                    ApiError::invalid_parameter(format!("Unable to find account {name}"))
                })?;
            return Ok(Some(id));
        }
    }
    if has("listall") && p.bool("listall") == Some(true) {
        return Ok(None);
    }
    Ok(Some(caller.account_id))
}

/// A listing of objects guestnet does not have yet (static-NAT forwarding rules; tags: no
/// command makes one; autoscale groups and policies), under `key`: CloudStack's empty list. The dispatcher has checked the
/// id filters as for every listing (an id of such an object is always unknown); the account
/// filter is checked here.
pub async fn list_absent(app: &App, caller: &Caller, p: &Params, key: &str) -> ApiResult<Value> {
    scope(app, caller, p).await?;
    Ok(page(key, Vec::new(), p.paging()))
}

/// A page of items and the total, as a list response.
pub fn page(key: &str, items: Vec<Value>, paging: Paging) -> Value {
    let total = items.len();
    let range = paging.range(total);
    let slice: Vec<Value> = items
        .into_iter()
        .skip(range.start)
        .take(range.len())
        .collect();
    crate::resp::list(key, total, slice)
}

/// The immediate answer of an async create command: `{"id": ..., "jobid": ...}`.
pub fn accepted(id: &str, job: &str) -> Value {
    json!({"id": id, "jobid": job})
}

/// The immediate answer of another async command: `{"jobid": ...}`.
pub fn queued(job: &str) -> Value {
    json!({"jobid": job})
}

/// Checks that the uuid in filter `param` (if given) names something in `table` the caller may
/// see: a list filtered by an unknown id, or by another account's, is answered as CloudStack
/// answers an unknown id (431), not with an empty list.
///
/// # Errors
/// 431 unknown id; 530 when the query fails.
pub async fn visible_filter(
    app: &App,
    caller: &Caller,
    p: &Params,
    param: &str,
    table: &str,
) -> ApiResult<()> {
    if p.spec().param(param).is_none() {
        return Ok(());
    }
    let Some(uuid) = p.str(param).filter(|v| !v.is_empty()) else {
        return Ok(());
    };
    let owned = match table {
        "networks" => Owned::Network,
        "public_ips" => Owned::Ip,
        "vms" => Owned::Vm,
        "rules" => Owned::Rule,
        other => {
            return Err(ApiError::internal(format!(
                "no visibility check for table {other}"
            )))
        }
    };
    let account = store::lookups::owner_of(&app.db, owned, uuid)
        .await
        .map_err(store_error)?
        .ok_or_else(|| unknown(p, param))?;
    let visible = match account {
        Some(a) => caller.may_touch(a),
        None => caller.admin,
    };
    if visible {
        Ok(())
    } else {
        Err(unknown(p, param))
    }
}

/// What a uuid parameter names, as its catalogue entry says (the commands that produce its
/// values, or its name for domains, projects and roles).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Entity {
    /// The zone.
    Zone,
    /// A network offering (shared by everyone).
    NetworkOffering,
    /// A service offering (shared by everyone).
    ServiceOffering,
    /// A template (shared by everyone).
    Template,
    /// A guest network.
    Network,
    /// A public address.
    Ip,
    /// A VM.
    Vm,
    /// A VM's NIC.
    Nic,
    /// A secondary address of a VM's NIC.
    SecondaryIp,
    /// An object of a kind guestnet does not have (static-NAT forwarding rules, autoscale
    /// groups, policies, profiles and conditions): every id is unknown.
    Absent,
    /// A firewall, egress, port-forwarding or load-balancer rule.
    Rule,
    /// A stickiness or health-check policy.
    Policy,
    /// A virtual router.
    Router,
    /// A public range (root admins only).
    Vlan,
    /// A zone's physical network (root admins only).
    PhysicalNetwork,
    /// An event.
    Event,
    /// An async job.
    Job,
    /// An account.
    Account,
    /// A user.
    User,
    /// An agent token (root admins only).
    AgentToken,
    /// A host (root admins only).
    Host,
    /// A domain.
    Domain,
    /// A project (none exist here).
    Project,
    /// A role.
    Role,
}

impl Entity {
    /// What `param` names, if it is a uuid parameter.
    pub fn of(param: &ParamSpec) -> Option<Entity> {
        if !matches!(param.kind, ParamKind::Uuid | ParamKind::ListOfUuid) {
            return None;
        }
        let first = param.related.split(',').next().unwrap_or_default();
        Some(match first {
            "listZones" => Entity::Zone,
            "listPhysicalNetworks" => Entity::PhysicalNetwork,
            "listNetworkOfferings" => Entity::NetworkOffering,
            "listServiceOfferings" => Entity::ServiceOffering,
            "listTemplates" => Entity::Template,
            "createNetwork" => Entity::Network,
            "associateIpAddress" => Entity::Ip,
            "deployVirtualMachine" => Entity::Vm,
            "listNics" => Entity::Nic,
            "addIpToNic" => Entity::SecondaryIp,
            "listAutoScaleVmGroups" | "listAutoScalePolicies" => Entity::Absent,
            "createFirewallRule"
            | "createIpForwardingRule"
            | "createEgressFirewallRule"
            | "createPortForwardingRule"
            | "createLoadBalancerRule" => Entity::Rule,
            "createLBStickinessPolicy" | "createLBHealthCheckPolicy" => Entity::Policy,
            "listRouters" => Entity::Router,
            "createVlanIpRange" => Entity::Vlan,
            "listEvents" => Entity::Event,
            "queryAsyncJobResult" => Entity::Job,
            "createAccount" => Entity::Account,
            "listUsers" => Entity::User,
            "createAgentToken" => Entity::AgentToken,
            "listHosts" => Entity::Host,
            "listDomains" => Entity::Domain,
            "listProjects" => Entity::Project,
            _ => match param.name {
                "domainid" => Entity::Domain,
                "projectid" => Entity::Project,
                "roleid" => Entity::Role,
                // Autoscale profiles and conditions, and VPCs: no command of guestnet lists
                // them.
                "vmprofileid" | "conditionid" | "vpcid" => Entity::Absent,
                _ => return None,
            },
        })
    }

    /// What an account may own, for entities whose owner decides who sees them; `None` for
    /// entities checked otherwise.
    fn owned(self) -> Option<Owned> {
        Some(match self {
            Entity::Network => Owned::Network,
            Entity::Ip => Owned::Ip,
            Entity::Vm => Owned::Vm,
            Entity::Nic => Owned::Nic,
            Entity::SecondaryIp => Owned::SecondaryIp,
            Entity::Rule => Owned::Rule,
            Entity::Policy => Owned::Policy,
            Entity::Router => Owned::Router,
            Entity::Event => Owned::Event,
            Entity::Job => Owned::Job,
            Entity::Account => Owned::Account,
            Entity::User => Owned::User,
            Entity::Vlan => Owned::Vlan,
            Entity::AgentToken => Owned::AgentToken,
            Entity::Host => Owned::Host,
            Entity::Zone
            | Entity::PhysicalNetwork
            | Entity::NetworkOffering
            | Entity::ServiceOffering
            | Entity::Template
            | Entity::Domain
            | Entity::Absent
            | Entity::Project
            | Entity::Role => return None,
        })
    }
}

/// Whether the caller may see the entity named by `uuid`: false when it does not exist or
/// belongs to an account the caller may not see (the two are answered alike).
///
/// # Errors
/// 530 when the query fails.
pub async fn is_visible(app: &App, caller: &Caller, entity: Entity, uuid: &str) -> ApiResult<bool> {
    let exists = |what: Shared| async move {
        store::lookups::exists(&app.db, what, uuid)
            .await
            .map_err(store_error)
    };
    if let Some(owned) = entity.owned() {
        let Some(account) = store::lookups::owner_of(&app.db, owned, uuid)
            .await
            .map_err(store_error)?
        else {
            return Ok(false);
        };
        return Ok(match account {
            Some(a) => caller.may_touch(a),
            None => caller.admin,
        });
    }
    match entity {
        Entity::Zone => Ok(uuid == app.site.zone_uuid),
        Entity::NetworkOffering => exists(Shared::NetworkOffering).await,
        Entity::ServiceOffering => exists(Shared::ServiceOffering).await,
        Entity::Template => exists(Shared::Template).await,
        Entity::PhysicalNetwork => Ok(caller.admin && exists(Shared::PhysicalNetwork).await?),
        Entity::Domain => Ok(if caller.admin {
            exists(Shared::Domain).await?
        } else {
            uuid == caller.domain_uuid
        }),
        // No projects exist; `-1` is CloudStack's "every project", which matches nothing here.
        Entity::Project => Ok(uuid == "-1"),
        _ => Ok(false),
    }
}

/// Checks the ids a command is given before it runs: every id filter of a list command, and
/// every id of what no account owns (zone, offerings, template, domain, project, role) for any
/// command. An id that names nothing the caller may see is answered 431 with CloudStack's text
/// for an unknown id, never with an empty list or by being ignored, and another account's id
/// gets exactly that answer. Other commands look up the ids of accounts' objects themselves.
///
/// # Errors
/// 431 for the first such id; 530 when a query fails.
pub async fn check_ids(app: &App, caller: &Caller, p: &Params) -> ApiResult<()> {
    let every_id = p.spec().is_list();
    for param in p.spec().params {
        let Some(entity) = Entity::of(param) else {
            continue;
        };
        if !every_id && entity.owned().is_some() {
            continue;
        }
        let values = match param.kind {
            ParamKind::ListOfUuid => p.list(param.name).unwrap_or_default(),
            _ => p
                .str(param.name)
                .filter(|v| !v.is_empty())
                .map(|v| vec![v.to_string()])
                .unwrap_or_default(),
        };
        for value in &values {
            if !is_visible(app, caller, entity, value).await? {
                return Err(ApiError::unknown_uuid(p.spec().name, param.name, value));
            }
        }
    }
    Ok(())
}

/// A job whose write is all the command does (nothing for a router): it ends in the change
/// that writes it.
pub(crate) struct EndedJob<'a> {
    /// The API command.
    pub command: &'static str,
    /// Its event type.
    pub event: &'static str,
    /// Words for its events.
    pub description: &'a str,
    /// The resource its scheduled event names, if one.
    pub resource_uuid: Option<&'a str>,
    /// CloudStack's failure text for the command.
    pub failure: &'a str,
}

/// Writes `job`, already ended with `result`, in `change`, commits it and answers with the
/// job, as an async command answers.
pub(crate) async fn commit_ended(
    app: &App,
    mut change: store::ChangeTx,
    caller: &Caller,
    job: EndedJob<'_>,
    result: &Value,
) -> ApiResult<Value> {
    let scheduled = store::Scheduled {
        event_type: job.event,
        description: job.description,
        resource_uuid: job.resource_uuid,
    };
    let (job_id, job_uuid) = change
        .job(
            caller,
            domain::job::NewJob {
                command: job.command,
                kind: domain::job::Kind::Change,
                network_id: None,
                payload: domain::job::Payload::new(
                    domain::job::Outcome::Success,
                    job.event,
                    job.description.to_string(),
                    job.failure,
                ),
                instance_type: None,
                instance_uuid: None,
            },
            Some(scheduled),
        )
        .await
        .map_err(store_error)?;
    change
        .complete_job(caller, (job_id, &job_uuid), &scheduled, result)
        .await
        .map_err(store_error)?;
    let receipt = change.commit().await.map_err(store_error)?;
    app.doorbell.ring(receipt);
    Ok(queued(&job_uuid))
}
