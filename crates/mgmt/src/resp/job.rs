//! A job's result (`jobresult`): what queryAsyncJobResult shows once a job succeeded, rendered
//! from the job's [`Outcome`] and the rows as they are now. The job runner renders it when it
//! ends a job; nothing here knows about requests.

use api_types::error::ApiError;
use domain::ids::{AccountId, IpId, NetworkId, RuleId, VmId};
use domain::job::Outcome;
use domain::model::PolicyKind;
use domain::model::{Purpose, State};
use serde_json::{json, Value};
use store::runner_reads::{self, RuleKey};
use store::{ChangeTx, Db, StoreError};

use super::error::store_error;
use super::{Owner, Site};

/// The `jobresult` of a job that succeeded with `outcome`.
///
/// # Errors
/// 530 when what the job made cannot be read back (it is gone, or the database failed).
pub async fn job_result(db: &Db, site: &Site, outcome: &Outcome) -> Result<Value, ApiError> {
    match outcome {
        Outcome::Success => Ok(json!({"success": true})),
        Outcome::Fixed { value } => Ok(value.clone()),
        Outcome::Rule { id, object } => rule_result(db, site, RuleKey::Id(*id), object).await,
        Outcome::Created { uuid, object } => {
            rule_result(db, site, RuleKey::Uuid(uuid), object).await
        }
        Outcome::Policy { lb_id, kind } => policy_result(db, site, *lb_id, *kind).await,
        Outcome::Ip { id } => ip_result(db, site, *id).await,
        Outcome::Vm { id } => vm_result(db, site, *id).await,
        Outcome::Router { network } => router_result(db, site, *network).await,
    }
}

/// A job's result when the change `tx` that ends the job can render it — a success, a fixed
/// object, a firewall or forwarding rule, read as the change sees it — so that the job ends in
/// that change; `None` for the others, rendered after the commit with [`job_result`].
///
/// # Errors
/// [`StoreError`].
pub async fn job_result_in(
    change: &mut ChangeTx,
    outcome: &Outcome,
) -> Result<Option<Value>, StoreError> {
    let (key, object) = match outcome {
        Outcome::Success => return Ok(Some(json!({"success": true}))),
        Outcome::Fixed { value } => return Ok(Some(value.clone())),
        Outcome::Rule { id, object } => (RuleKey::Id(*id), object),
        Outcome::Created { uuid, object } => (RuleKey::Uuid(uuid), object),
        Outcome::Policy { .. }
        | Outcome::Ip { .. }
        | Outcome::Vm { .. }
        | Outcome::Router { .. } => return Ok(None),
    };
    let dialect = change.dialect();
    let Some((id, purpose)) = runner_reads::rule_purpose_in(change.conn(), key).await? else {
        return Ok(None);
    };
    if purpose == Purpose::LoadBalancing {
        return Ok(None);
    }
    let inner = store::rules::json::object_json(&mut **change.conn(), dialect, id, purpose).await?;
    Ok(Some(super::wrap(object, inner)))
}

async fn owner(db: &Db, account: AccountId) -> Result<Owner, ApiError> {
    let o = store::accounts::owner_names(db, account)
        .await
        .map_err(store_error)?;
    Ok(Owner {
        account: o.account,
        domain_id: o.domain_uuid,
        domain: o.domain_name,
        domain_path: o.domain_path,
    })
}

fn gone(what: &str, id: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("{what} {id} is gone"))
}

/// A rule wrapped under `object` (`{"firewallrule": {...}}`), as a job result shows it to its
/// owner (fields for administrators included, as CloudStack's job results are serialized).
async fn rule_result(
    db: &Db,
    site: &Site,
    key: RuleKey<'_>,
    object: &str,
) -> Result<Value, ApiError> {
    let (id, purpose) = runner_reads::rule_purpose(db, key)
        .await
        .map_err(store_error)?
        .ok_or_else(|| match key {
            RuleKey::Id(id) => gone("rule", id),
            RuleKey::Uuid(uuid) => gone("rule", uuid),
        })?;
    let inner = match purpose {
        Purpose::LoadBalancing => {
            let rule = runner_reads::rule(db, id)
                .await
                .map_err(store_error)?
                .ok_or_else(|| gone("rule", id))?;
            let owner = owner(db, rule.account_id).await?;
            let zone = (site.zone_uuid.as_str(), site.zone_name.as_str());
            super::lb::load_balancer(&rule, &owner, zone, true)
        }
        purpose => store::rules::json::object_json(db.pool(), db.dialect(), id, purpose)
            .await
            .map_err(store_error)?,
    };
    Ok(super::wrap(object, inner))
}

/// The `jobresult` of a policy's creation: the balancer's live policies of that kind.
async fn policy_result(
    db: &Db,
    site: &Site,
    lb_id: RuleId,
    kind: PolicyKind,
) -> Result<Value, ApiError> {
    let lb = runner_reads::rule(db, lb_id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| gone("rule", lb_id))?;
    let mut rows = store::balancers::policies(db, lb_id, kind)
        .await
        .map_err(store_error)?;
    rows.retain(|r| r.state != State::Revoke);
    let owner = owner(db, lb.account_id).await?;
    let item = super::lb::policies(&lb, kind, &rows, &owner, &site.zone_uuid, true);
    let key = super::lb::policies_key(kind);
    Ok(super::wrap(key, item))
}

/// The `jobresult` of associateIpAddress: `{"ipaddress": {...}}`.
async fn ip_result(db: &Db, site: &Site, id: IpId) -> Result<Value, ApiError> {
    let view = runner_reads::ip_view(db, id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| gone("ip address", id))?;
    let owner = match view.ip.account_id {
        Some(a) => Some(owner(db, a).await?),
        None => None,
    };
    let cx = super::IpContext {
        zone: (site.zone_uuid.clone(), site.zone_name.clone()),
        owner,
        vlan_uuid: view.vlan_uuid,
        vlan_name: view.vlan_name,
        network: view.network,
        has_rules: view.has_rules,
        nat_vm: nat_vm(db, &view.ip).await?,
    };
    Ok(super::wrap(
        "ipaddress",
        super::ip_address(&view.ip, &cx, true),
    ))
}

/// The VM of an IP's static NAT (uuid, name, display name), when it has one.
pub(crate) async fn nat_vm(
    db: &Db,
    ip: &domain::model::IpRow,
) -> Result<Option<(String, String, String)>, ApiError> {
    let Some(n) = &ip.nat else {
        return Ok(None);
    };
    let vm = store::vms::by_id(db, n.vm_id).await.map_err(store_error)?;
    Ok(vm.map(|v| (v.uuid, v.name, v.display_name)))
}

/// The `jobresult` of rebootRouter: `{"router": {...}}`, as listRouters shows it.
async fn router_result(db: &Db, site: &Site, network: NetworkId) -> Result<Value, ApiError> {
    let q = store::router_views::RouterQuery {
        uuid: None,
        name: None,
        network: Some(network),
        owners: store::owners::Owners::Everyone,
    };
    let r = store::router_views::list(db, &q)
        .await
        .map_err(store_error)?
        .into_iter()
        .next()
        .ok_or_else(|| gone("router of network", network))?;
    let owner = owner(db, AccountId::from(r.account_id)).await?;
    let zone = (site.zone_uuid.as_str(), site.zone_name.as_str());
    Ok(super::wrap(
        "router",
        super::infra::router(&r, &owner, zone),
    ))
}

/// The `jobresult` of deployVirtualMachine: `{"virtualmachine": {...}}`.
async fn vm_result(db: &Db, site: &Site, id: VmId) -> Result<Value, ApiError> {
    let vm = store::vms::by_id(db, id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| gone("virtual machine", id))?;
    let owner = owner(db, vm.account_id.into()).await?;
    let zone = (site.zone_uuid.as_str(), site.zone_name.as_str());
    Ok(super::wrap(
        "virtualmachine",
        super::infra::vm(&vm, &owner, zone, &vm.state, false),
    ))
}
