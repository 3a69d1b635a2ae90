//! listRouters: admins see every router, users those of their own networks; rebootRouter.

use std::collections::HashMap;

use api_types::params::Params;
use domain::actor::Caller;
use domain::ids::AccountId;
use domain::job::{Kind, NewJob, Outcome, Payload};
use serde_json::Value;
use store::router_views::RouterQuery;
use store::Scheduled;

use super::{contains, given, keyword, network_filter, owner_of, owners, zone, zone_param};
use crate::app::{store_error, ApiResult, App};
use crate::cmd::page;
use crate::resp::infra as infra_resp;

/// listRouters.
pub(crate) async fn list_routers(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    zone_param(app, p, "zoneid")?;
    let network = network_filter(app, caller, p, "networkid").await?;
    let Some(who) = owners(app, caller, p).await? else {
        return Ok(page("router", Vec::new(), p.paging()));
    };
    let q = RouterQuery {
        uuid: given(p, "id"),
        name: given(p, "name"),
        network,
        owners: who,
    };
    let routers = store::router_views::list(&app.db, &q)
        .await
        .map_err(store_error)?;
    let kw = keyword(p);
    let state = given(p, "state");
    let mut cache = HashMap::new();
    let mut items = Vec::new();
    for r in &routers {
        if state.is_some_and(|s| !s.eq_ignore_ascii_case(r.state.as_str()))
            || kw.as_deref().is_some_and(|k| !contains(&r.name, k))
        {
            continue;
        }
        let own = owner_of(app, &mut cache, AccountId::from(r.account_id)).await?;
        items.push(infra_resp::router(r, &own, zone(app)));
    }
    Ok(page("router", items, p.paging()))
}

/// rebootRouter (async, admins only): the router is made again from nothing on its host, as
/// restartNetwork with `cleanup=true` does, and the job ends when it enforces every rule of
/// its network again; the result is the router. `forced` changes nothing: a rebuild never
/// waits for the old router to stop by itself.
pub(crate) async fn reboot_router(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let uuid = crate::cmd::required(p, "id")?;
    let q = RouterQuery {
        uuid: Some(uuid),
        name: None,
        network: None,
        owners: store::owners::Owners::Everyone,
    };
    let router = store::router_views::list(&app.db, &q)
        .await
        .map_err(store_error)?
        .into_iter()
        .next()
        .ok_or_else(|| crate::cmd::unknown(p, "id"))?;
    let net = store::lookups::network_by_uuid(&app.db, &router.net_uuid)
        .await
        .map_err(store_error)?
        .ok_or_else(|| crate::cmd::unknown(p, "id"))?;
    super::usable_network(app, &net).await?;
    let mut change = app.db.change(Some(net.id)).await.map_err(store_error)?;
    change.lock_network().await.map_err(store_error)?;
    let mut payload = Payload::new(
        Outcome::Router { network: net.id },
        "ROUTER.REBOOT",
        format!("rebooting router {}", router.name),
        "Failed to reboot router",
    );
    payload.rebuild = true;
    let (_, job_uuid) = change
        .job(
            caller,
            NewJob {
                command: "rebootRouter",
                kind: Kind::RestartNetwork,
                network_id: Some(net.id),
                payload,
                instance_type: Some("DomainRouter"),
                instance_uuid: Some(&router.uuid),
            },
            Some(Scheduled {
                event_type: "ROUTER.REBOOT",
                description: &format!("rebooting router {} ({})", router.name, router.uuid),
                resource_uuid: Some(&router.uuid),
            }),
        )
        .await
        .map_err(store_error)?;
    let receipt = change.commit().await.map_err(store_error)?;
    app.doorbell.ring(receipt);
    Ok(crate::cmd::queued(&job_uuid))
}
