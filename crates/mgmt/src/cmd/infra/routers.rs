//! listRouters: admins see every router, users those of their own networks.

use std::collections::HashMap;

use api_types::params::Params;
use domain::actor::Caller;
use domain::ids::AccountId;
use serde_json::Value;
use store::router_views::RouterQuery;

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
