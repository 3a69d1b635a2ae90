//! Load-balancer rules, their members and their stickiness and health-check policies.
//!
//! A balancer is a rule row (purpose LoadBalancing) like any other, created, revoked and listed
//! through the same machinery as forwards ([`super::firewall`]). Its members live in
//! `lb_members` and its policies in `lb_policies`, each row carrying the job that last changed
//! it; [`domain::plan`] puts a balancer on the router only while it has members, and applies only
//! the first stickiness and the first health-check policy of each balancer.
//!
//! Whatever the router would refuse is refused here first, with 431: the policy checks end by
//! running the router's own validation ([`router_config::validate`]) over a one-balancer config
//! that carries the new policy, so the API cannot accept a policy the router rejects.
//!
//! The commands that create something (a balancer, a stickiness or a health-check policy)
//! first parse their parameters into a typed request ([`rules::CreateBalancer`],
//! [`policies::CreateStickiness`], [`policies::CreateHealthCheck`]), whose one parse function
//! makes every check; the handler then works with the request alone. Every statement is in
//! [`store::balancers`]; every response shape in [`crate::resp::lb`].

use std::collections::HashMap;

use api_types::error::ApiError;
use api_types::params::Params;

use super::{rule_param, unknown};
use crate::app::{ApiResult, App};
use crate::resp::Owner;
use domain::actor::Caller;
use domain::ids::AccountId;
use domain::model::{Purpose, Rule, State};

mod listing;
mod members;
mod policies;
mod rules;
#[cfg(test)]
mod tests;

pub(crate) use listing::{instances, list, list_policies};
pub(crate) use members::assign;
pub(crate) use policies::{create_health_check, create_stickiness, delete_policy, update_policy};
pub(crate) use rules::{create, delete, update};

/// The balancer named by uuid parameter `param`, if the caller may see it (anything else,
/// another kind of rule included, is an unknown id).
async fn lb_param(app: &App, caller: &Caller, p: &Params, param: &str) -> ApiResult<Rule> {
    let rule = rule_param(app, caller, p, param).await?;
    if rule.purpose != Purpose::LoadBalancing {
        return Err(unknown(p, param));
    }
    Ok(rule)
}

/// 431 for a change to a balancer that is being deleted.
fn not_revoked(lb: &Rule) -> ApiResult<()> {
    if lb.state == State::Revoke {
        return Err(ApiError::invalid_parameter(format!(
            "Load balancer rule {} is being deleted",
            lb.uuid
        )));
    }
    Ok(())
}

/// The zone's uuid and name, as responses carry them.
fn zone(app: &App) -> (&str, &str) {
    (app.site.zone_uuid.as_str(), app.site.zone_name.as_str())
}

/// The owner of `account_id`, read once per account.
async fn cached_owner<'a>(
    app: &App,
    cache: &'a mut HashMap<AccountId, Owner>,
    account_id: AccountId,
) -> ApiResult<&'a Owner> {
    if let std::collections::hash_map::Entry::Vacant(e) = cache.entry(account_id) {
        e.insert(super::owner(app, account_id).await?);
    }
    cache
        .get(&account_id)
        .ok_or_else(|| ApiError::internal(format!("account {account_id} is gone")))
}
