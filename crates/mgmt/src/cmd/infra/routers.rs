//! listRouters: admins see every router, users those of their own networks; rebootRouter,
//! startRouter and stopRouter.

use std::collections::HashMap;

use api_types::error::{ApiError, ApiErrorCode, CsErrorCode};
use api_types::params::Params;
use domain::actor::Caller;
use domain::ids::AccountId;
use domain::job::{Kind, NewJob, Outcome, Payload};
use domain::model::RouterState;
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

/// What an admin asks of a router.
#[derive(Clone, Copy)]
enum RouterAction {
    Reboot,
    Start,
    Stop,
}

impl RouterAction {
    fn command(self) -> &'static str {
        match self {
            RouterAction::Reboot => "rebootRouter",
            RouterAction::Start => "startRouter",
            RouterAction::Stop => "stopRouter",
        }
    }

    fn event(self) -> &'static str {
        match self {
            RouterAction::Reboot => "ROUTER.REBOOT",
            RouterAction::Start => "ROUTER.START",
            RouterAction::Stop => "ROUTER.STOP",
        }
    }

    fn doing(self) -> &'static str {
        match self {
            RouterAction::Reboot => "rebooting",
            RouterAction::Start => "starting",
            RouterAction::Stop => "stopping",
        }
    }

    fn verb(self) -> &'static str {
        match self {
            RouterAction::Reboot => "reboot",
            RouterAction::Start => "start",
            RouterAction::Stop => "stop",
        }
    }
}

/// rebootRouter (async, admins only): the router is made again from nothing on its host, as
/// restartNetwork with `cleanup=true` does, and the job ends when it enforces every rule of
/// its network again; the result is the router. `forced` changes nothing: a rebuild never
/// waits for the old router to stop by itself. A stopped router is not rebooted (534, as
/// CloudStack answers): startRouter starts it.
pub(crate) async fn reboot_router(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    router_job(app, caller, p, RouterAction::Reboot).await
}

/// startRouter (async, admins only): a stopped router is made again from nothing on its host
/// and gets its network's whole config; the job ends when it enforces every rule, and its
/// result is the router. A running router is sent its whole config again, as restartNetwork
/// without clean-up does.
pub(crate) async fn start_router(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    router_job(app, caller, p, RouterAction::Start).await
}

/// stopRouter (async, admins only): the router goes from its host, and its network's rules
/// are enforced nowhere until it starts (the network's VMs reach nothing beyond their own
/// segment). Meanwhile rule changes end in the database alone, as CloudStack's router
/// elements end them for a stopped router; the router gets them all when it starts. A stopped
/// router's stop ends at once. `forced` changes nothing: a stop never waits for the router.
pub(crate) async fn stop_router(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    router_job(app, caller, p, RouterAction::Stop).await
}

async fn router_job(
    app: &App,
    caller: &Caller,
    p: &Params,
    action: RouterAction,
) -> ApiResult<Value> {
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
    if let RouterAction::Reboot = action {
        // Read again under the network's lock, which a stop's job does not need to take, so
        // this is what the request sees; a stop still pending is the admin's own race.
        let state = store::routers::router_of(&app.db, net.id)
            .await
            .map_err(store_error)?
            .map(|r| r.state);
        if state == Some(RouterState::Stopped) {
            return Err(ApiError::new(
                ApiErrorCode::ResourceUnavailable,
                Some(CsErrorCode::ResourceUnavailable),
                format!(
                    "Unable to reboot router {}: it is Stopped, not Running (startRouter starts it)",
                    router.name
                ),
            ));
        }
    }
    let kind = match action {
        RouterAction::Stop => Kind::StopRouter,
        RouterAction::Reboot | RouterAction::Start => Kind::RestartNetwork,
    };
    let mut payload = Payload::new(
        Outcome::Router { network: net.id },
        action.event(),
        format!("{} router {}", action.doing(), router.name),
        &format!("Failed to {} router", action.verb()),
    );
    payload.rebuild = matches!(action, RouterAction::Reboot);
    let (_, job_uuid) = change
        .job(
            caller,
            NewJob {
                command: action.command(),
                kind,
                network_id: Some(net.id),
                payload,
                instance_type: Some("DomainRouter"),
                instance_uuid: Some(&router.uuid),
            },
            Some(Scheduled {
                event_type: action.event(),
                description: &format!(
                    "{} router {} ({})",
                    action.doing(),
                    router.name,
                    router.uuid
                ),
                resource_uuid: Some(&router.uuid),
            }),
        )
        .await
        .map_err(store_error)?;
    let receipt = change.commit().await.map_err(store_error)?;
    app.doorbell.ring(receipt);
    Ok(crate::cmd::queued(&job_uuid))
}
