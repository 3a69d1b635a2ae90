//! Ingress and egress firewall rules and port forwarding: one file per resource, the
//! parameters each rule-creating command parses into a typed value before anything is
//! written ([`params`], and each command's own struct), the writes every rule command shares
//! ([`write`]) and the listings ([`list`]). Deleting and updating a firewall rule is the same
//! for both directions and lives here.

mod egress;
mod forwards;
pub(crate) mod group;
mod ingress;
mod list;
mod params;
mod static_nat;
mod write;

use api_types::params::Params;
use serde_json::Value;

use super::{rule_param, unknown};
use crate::app::{store_error, ApiResult, App};
use domain::actor::Caller;
use domain::ids::RuleId;
use domain::model::{Purpose, Rule, Traffic};

pub(crate) use egress::create_egress;
pub(crate) use forwards::{create_forward, delete_forward, list_forwards, update_forward};
pub(crate) use ingress::create_ingress;
pub(crate) use list::list;
pub(crate) use params::rule_ip;
pub(crate) use static_nat::{
    create_forwarding as create_ip_forwarding, delete_forwarding as delete_ip_forwarding,
    disable as disable_static_nat, enable as enable_static_nat,
    list_forwarding as list_ip_forwarding,
};
// The pure checks, for the property tests.
#[cfg(test)]
pub(crate) use egress::egress_sources;
#[cfg(test)]
pub(crate) use forwards::check_forward_ranges;
#[cfg(test)]
pub(crate) use params::{l4_of, protocol_of};
pub(crate) use write::{create_rule, metadata_update, refuse_if_in_flight, revoke};

/// CloudStack's event type for a command.
pub(crate) fn event_type(command: &str) -> &'static str {
    super::table::event_type(command)
}

fn is_egress(r: &Rule) -> bool {
    r.traffic == Some(Traffic::Egress)
}

/// deleteFirewallRule / deleteEgressFirewallRule.
pub(crate) async fn delete(
    app: &App,
    caller: &Caller,
    p: &Params,
    egress: bool,
) -> ApiResult<Value> {
    let rule = rule_param(app, caller, p, "id").await?;
    if rule.purpose != Purpose::Firewall || is_egress(&rule) != egress {
        return Err(unknown(p, "id"));
    }
    let (command, failure) = if egress {
        (
            "deleteEgressFirewallRule",
            "Failed to delete egress firewall rule",
        )
    } else {
        ("deleteFirewallRule", "Failed to delete firewall rule")
    };
    revoke(app, caller, command, &rule, failure).await
}

/// updateFirewallRule / updateEgressFirewallRule: only `fordisplay` changes (a `customid` other
/// than the rule's own id is refused); nothing goes to the router, so the job ends at once.
pub(crate) async fn update_display(
    app: &App,
    caller: &Caller,
    p: &Params,
    egress: bool,
) -> ApiResult<Value> {
    let rule = rule_param(app, caller, p, "id").await?;
    if rule.purpose != Purpose::Firewall || is_egress(&rule) != egress {
        return Err(unknown(p, "id"));
    }
    super::refuse_custom_id(p, &rule.uuid)?;
    let command = if egress {
        "updateEgressFirewallRule"
    } else {
        "updateFirewallRule"
    };
    metadata_update(app, caller, p, command, &rule, "firewallrule", None).await
}

/// One firewall or forwarding rule as the API shows it (with the administrators' fields).
pub(crate) async fn rule_value(app: &App, id: RuleId, purpose: Purpose) -> ApiResult<Value> {
    store::rules::object_json(app.db.pool(), app.db.dialect(), id, purpose)
        .await
        .map_err(store_error)
}
