//! Listings of firewall and forwarding rules: the parameters into a store query, the page
//! into CloudStack's list answer.

use api_types::params::Params;
use domain::actor::Caller;
use domain::ids::AccountId;
use domain::model::{Purpose, Traffic};
use store::rules::list::RuleQuery;

use super::super::{scope, visible_filter};
use crate::app::{store_error, ApiResult, App};

/// Lists rules of one purpose (and direction) as CloudStack's list answer under `key`, built
/// as JSON text by the database: a 10k-rule listing is one text column per row, not thirty
/// values. CloudStack lists firewall and forwarding rules newest first.
pub(crate) async fn list_rules(
    app: &App,
    caller: &Caller,
    p: &Params,
    purpose: Purpose,
    traffic: Option<Traffic>,
    key: &str,
) -> ApiResult<String> {
    visible_filter(app, caller, p, "id", "rules").await?;
    visible_filter(app, caller, p, "ipaddressid", "public_ips").await?;
    visible_filter(app, caller, p, "networkid", "networks").await?;
    visible_filter(app, caller, p, "virtualmachineid", "vms").await?;
    // A parameter the command does not take is not a filter (and is not asked for).
    let given = |param: &str| {
        p.spec()
            .param(param)
            .is_some()
            .then(|| p.str(param))
            .flatten()
    };
    let tag_type = match (purpose, traffic) {
        (Purpose::PortForwarding, _) => "PortForwardingRule",
        (Purpose::LoadBalancing, _) => "LoadBalancer",
        _ => "FirewallRule",
    };
    let tags = super::super::tags::filter_pairs(p)?;
    let account = scope(app, caller, p).await?.map(AccountId::from);
    let paging = p.paging();
    let query = RuleQuery {
        purpose,
        traffic,
        uuid: p.str("id"),
        ip_uuid: given("ipaddressid"),
        network_uuid: given("networkid"),
        vm_uuid: given("virtualmachineid"),
        tags: tags.as_deref().map(|t| (tag_type, t)),
        account,
        display: p
            .spec()
            .param("fordisplay")
            .is_some()
            .then(|| p.bool("fordisplay"))
            .flatten(),
        keyword: p.str("keyword"),
        admin: caller.admin,
        limit: paging.size.map(|n| u64::try_from(n).unwrap_or(u64::MAX)),
        offset: u64::try_from(paging.start).unwrap_or(u64::MAX),
    };
    let page = store::rules::list::list(&app.db, &query)
        .await
        .map_err(store_error)?;
    Ok(crate::resp::rules::list_text(key, page.total, &page.items))
}

/// listFirewallRules / listEgressFirewallRules, as JSON text.
pub(crate) async fn list(
    app: &App,
    caller: &Caller,
    p: &Params,
    egress: bool,
) -> ApiResult<String> {
    let traffic = if egress {
        Traffic::Egress
    } else {
        Traffic::Ingress
    };
    list_rules(
        app,
        caller,
        p,
        Purpose::Firewall,
        Some(traffic),
        "firewallrule",
    )
    .await
}
