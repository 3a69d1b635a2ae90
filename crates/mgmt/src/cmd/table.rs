//! The command table: one row per API command, with its handler, the event type CloudStack
//! records for it, the kind of job it writes, and who may call it. Dispatching a request, an
//! event's type and the admins-only check all read this table; adding a command is adding a
//! row (see `docs/adding-a-command.md`).

use std::future::Future;
use std::pin::Pin;

use api_types::params::Params;
use domain::actor::Caller;
use domain::job::Kind;
use domain::model::PolicyKind;

use super::{about, accounts, firewall, hosts, infra, lb, limits, Reply};
use crate::app::{ApiResult, App};

/// A handler's future.
pub type Running<'a> = Pin<Box<dyn Future<Output = ApiResult<Reply>> + Send + 'a>>;

/// A command's handler: the caller's request, checked against the catalogue, to its answer.
pub type Handler = for<'a> fn(&'a App, &'a Caller, &'a Params) -> Running<'a>;

/// One API command.
#[derive(Clone, Copy)]
pub struct Command {
    /// Its name, as the catalogue spells it.
    pub name: &'static str,
    /// What runs it.
    pub handler: Handler,
    /// CloudStack's event type for it (`API.CALL` for commands that record no event of their
    /// own).
    pub event_type: &'static str,
    /// The kind of job it writes: `Some` exactly for the async commands.
    pub job: Option<Kind>,
    /// Whether only root admins may call it: anyone else is refused (432) before any of their
    /// parameters is looked at.
    pub admin_only: bool,
}

impl Command {
    /// Whether the command answers with a job to poll.
    pub fn is_async(&self) -> bool {
        self.job.is_some()
    }
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Command")
            .field("name", &self.name)
            .field("event_type", &self.event_type)
            .field("job", &self.job)
            .field("admin_only", &self.admin_only)
            .finish_non_exhaustive()
    }
}

/// A [`Handler`] from the body of an async closure over `app`, `caller` and the parameters.
macro_rules! handler {
    (|$app:ident, $caller:ident, $p:ident| $body:expr) => {{
        fn run<'a>($app: &'a App, $caller: &'a Caller, $p: &'a Params) -> Running<'a> {
            Box::pin(async move { $body })
        }
        run as Handler
    }};
}

/// The command called `name`, if there is one.
pub fn find(name: &str) -> Option<&'static Command> {
    COMMANDS.iter().find(|c| c.name == name)
}

/// Every command.
pub fn all() -> &'static [Command] {
    COMMANDS
}

/// CloudStack's event type of `command` (`API.CALL` for what the table does not know).
pub fn event_type(command: &str) -> &'static str {
    find(command).map_or("API.CALL", |c| c.event_type)
}

static COMMANDS: &[Command] = &[
    Command {
        name: "createFirewallRule",
        handler: handler!(|app, caller, p| firewall::create_ingress(app, caller, p)
            .await
            .map(Reply::Json)),
        event_type: "FIREWALL.OPEN",
        job: Some(Kind::Change),
        admin_only: false,
    },
    Command {
        name: "createEgressFirewallRule",
        handler: handler!(|app, caller, p| firewall::create_egress(app, caller, p)
            .await
            .map(Reply::Json)),
        event_type: "FIREWALL.EGRESS.OPEN",
        job: Some(Kind::Change),
        admin_only: false,
    },
    Command {
        name: "deleteFirewallRule",
        handler: handler!(|app, caller, p| firewall::delete(app, caller, p, false)
            .await
            .map(Reply::Json)),
        event_type: "FIREWALL.CLOSE",
        job: Some(Kind::Change),
        admin_only: false,
    },
    Command {
        name: "deleteEgressFirewallRule",
        handler: handler!(|app, caller, p| firewall::delete(app, caller, p, true)
            .await
            .map(Reply::Json)),
        event_type: "FIREWALL.EGRESS.CLOSE",
        job: Some(Kind::Change),
        admin_only: false,
    },
    Command {
        name: "listFirewallRules",
        handler: handler!(|app, caller, p| firewall::list(app, caller, p, false)
            .await
            .map(Reply::Text)),
        event_type: "API.CALL",
        job: None,
        admin_only: false,
    },
    Command {
        name: "listEgressFirewallRules",
        handler: handler!(|app, caller, p| firewall::list(app, caller, p, true)
            .await
            .map(Reply::Text)),
        event_type: "API.CALL",
        job: None,
        admin_only: false,
    },
    Command {
        name: "updateFirewallRule",
        handler: handler!(
            |app, caller, p| firewall::update_display(app, caller, p, false)
                .await
                .map(Reply::Json)
        ),
        event_type: "FIREWALL.UPDATE",
        job: Some(Kind::Change),
        admin_only: false,
    },
    Command {
        name: "updateEgressFirewallRule",
        handler: handler!(
            |app, caller, p| firewall::update_display(app, caller, p, true)
                .await
                .map(Reply::Json)
        ),
        event_type: "FIREWALL.UPDATE",
        job: Some(Kind::Change),
        admin_only: false,
    },
    Command {
        name: "createPortForwardingRule",
        handler: handler!(|app, caller, p| firewall::create_forward(app, caller, p)
            .await
            .map(Reply::Json)),
        event_type: "NET.RULEADD",
        job: Some(Kind::Change),
        admin_only: false,
    },
    Command {
        name: "deletePortForwardingRule",
        handler: handler!(|app, caller, p| firewall::delete_forward(app, caller, p)
            .await
            .map(Reply::Json)),
        event_type: "NET.RULEDELETE",
        job: Some(Kind::Change),
        admin_only: false,
    },
    Command {
        name: "enableStaticNat",
        handler: handler!(|app, caller, p| firewall::enable_static_nat(app, caller, p)
            .await
            .map(Reply::Json)),
        event_type: "STATICNAT.ENABLE",
        job: None,
        admin_only: false,
    },
    Command {
        name: "disableStaticNat",
        handler: handler!(
            |app, caller, p| firewall::disable_static_nat(app, caller, p)
                .await
                .map(Reply::Json)
        ),
        event_type: "STATICNAT.DISABLE",
        job: Some(Kind::Change),
        admin_only: false,
    },
    Command {
        name: "createIpForwardingRule",
        handler: handler!(
            |app, caller, p| firewall::create_ip_forwarding(app, caller, p)
                .await
                .map(Reply::Json)
        ),
        event_type: "NET.RULEADD",
        job: Some(Kind::Change),
        admin_only: false,
    },
    Command {
        name: "deleteIpForwardingRule",
        handler: handler!(
            |app, caller, p| firewall::delete_ip_forwarding(app, caller, p)
                .await
                .map(Reply::Json)
        ),
        event_type: "NET.RULEDELETE",
        job: Some(Kind::Change),
        admin_only: false,
    },
    Command {
        name: "listIpForwardingRules",
        handler: handler!(
            |app, caller, p| firewall::list_ip_forwarding(app, caller, p)
                .await
                .map(Reply::Text)
        ),
        event_type: "API.CALL",
        job: None,
        admin_only: false,
    },
    Command {
        name: "createTags",
        handler: handler!(|app, caller, p| super::tags::create(app, caller, p)
            .await
            .map(Reply::Json)),
        event_type: "CREATE_TAGS",
        job: Some(Kind::Change),
        admin_only: false,
    },
    Command {
        name: "deleteTags",
        handler: handler!(|app, caller, p| super::tags::delete(app, caller, p)
            .await
            .map(Reply::Json)),
        event_type: "DELETE_TAGS",
        job: Some(Kind::Change),
        admin_only: false,
    },
    Command {
        name: "listTags",
        handler: handler!(|app, caller, p| super::tags::list(app, caller, p)
            .await
            .map(Reply::Json)),
        event_type: "API.CALL",
        job: None,
        admin_only: false,
    },
    Command {
        name: "listAutoScaleVmGroups",
        handler: handler!(
            |app, caller, p| super::list_absent(app, caller, p, "autoscalevmgroup")
                .await
                .map(Reply::Json)
        ),
        event_type: "API.CALL",
        job: None,
        admin_only: false,
    },
    Command {
        name: "listAutoScalePolicies",
        handler: handler!(
            |app, caller, p| super::list_absent(app, caller, p, "autoscalepolicy")
                .await
                .map(Reply::Json)
        ),
        event_type: "API.CALL",
        job: None,
        admin_only: false,
    },
    Command {
        name: "listPortForwardingRules",
        handler: handler!(|app, caller, p| firewall::list_forwards(app, caller, p)
            .await
            .map(Reply::Text)),
        event_type: "API.CALL",
        job: None,
        admin_only: false,
    },
    Command {
        name: "updatePortForwardingRule",
        handler: handler!(|app, caller, p| firewall::update_forward(app, caller, p)
            .await
            .map(Reply::Json)),
        event_type: "NET.RULEMODIFY",
        job: Some(Kind::Update),
        admin_only: false,
    },
    Command {
        name: "createLoadBalancerRule",
        handler: handler!(|app, caller, p| lb::create(app, caller, p).await.map(Reply::Json)),
        event_type: "LB.CREATE",
        job: Some(Kind::Change),
        admin_only: false,
    },
    Command {
        name: "deleteLoadBalancerRule",
        handler: handler!(|app, caller, p| lb::delete(app, caller, p).await.map(Reply::Json)),
        event_type: "LB.DELETE",
        job: Some(Kind::Change),
        admin_only: false,
    },
    Command {
        name: "listLoadBalancerRules",
        handler: handler!(|app, caller, p| lb::list(app, caller, p).await.map(Reply::Json)),
        event_type: "API.CALL",
        job: None,
        admin_only: false,
    },
    Command {
        name: "updateLoadBalancerRule",
        handler: handler!(|app, caller, p| lb::update(app, caller, p).await.map(Reply::Json)),
        event_type: "LB.UPDATE",
        job: Some(Kind::Update),
        admin_only: false,
    },
    Command {
        name: "assignToLoadBalancerRule",
        handler: handler!(|app, caller, p| lb::assign(app, caller, p, true).await.map(Reply::Json)),
        event_type: "LB.ASSIGN.TO.RULE",
        job: Some(Kind::Change),
        admin_only: false,
    },
    Command {
        name: "removeFromLoadBalancerRule",
        handler: handler!(|app, caller, p| lb::assign(app, caller, p, false)
            .await
            .map(Reply::Json)),
        event_type: "LB.REMOVE.FROM.RULE",
        job: Some(Kind::Change),
        admin_only: false,
    },
    Command {
        name: "listLoadBalancerRuleInstances",
        handler: handler!(|app, caller, p| lb::instances(app, caller, p).await.map(Reply::Json)),
        event_type: "API.CALL",
        job: None,
        admin_only: false,
    },
    Command {
        name: "createLBStickinessPolicy",
        handler: handler!(|app, caller, p| lb::create_stickiness(app, caller, p)
            .await
            .map(Reply::Json)),
        event_type: "LB.STICKINESSPOLICY.CREATE",
        job: Some(Kind::Change),
        admin_only: false,
    },
    Command {
        name: "deleteLBStickinessPolicy",
        handler: handler!(|app, caller, p| lb::delete_policy(
            app,
            caller,
            p,
            PolicyKind::Stickiness
        )
        .await
        .map(Reply::Json)),
        event_type: "LB.STICKINESSPOLICY.DELETE",
        job: Some(Kind::Change),
        admin_only: false,
    },
    Command {
        name: "listLBStickinessPolicies",
        handler: handler!(|app, caller, p| lb::list_policies(
            app,
            caller,
            p,
            PolicyKind::Stickiness
        )
        .await
        .map(Reply::Json)),
        event_type: "API.CALL",
        job: None,
        admin_only: false,
    },
    Command {
        name: "createLBHealthCheckPolicy",
        handler: handler!(|app, caller, p| lb::create_health_check(app, caller, p)
            .await
            .map(Reply::Json)),
        event_type: "LB.HEALTHCHECKPOLICY.CREATE",
        job: Some(Kind::Change),
        admin_only: false,
    },
    Command {
        name: "updateLBStickinessPolicy",
        handler: handler!(|app, caller, p| lb::update_policy(
            app,
            caller,
            p,
            PolicyKind::Stickiness
        )
        .await
        .map(Reply::Json)),
        event_type: "LB.STICKINESSPOLICY.UPDATE",
        job: Some(Kind::Change),
        admin_only: false,
    },
    Command {
        name: "updateLBHealthCheckPolicy",
        handler: handler!(|app, caller, p| lb::update_policy(
            app,
            caller,
            p,
            PolicyKind::HealthCheck
        )
        .await
        .map(Reply::Json)),
        event_type: "LB.HEALTHCHECKPOLICY.UPDATE",
        job: Some(Kind::Change),
        admin_only: false,
    },
    Command {
        name: "deleteLBHealthCheckPolicy",
        handler: handler!(|app, caller, p| lb::delete_policy(
            app,
            caller,
            p,
            PolicyKind::HealthCheck
        )
        .await
        .map(Reply::Json)),
        event_type: "LB.HEALTHCHECKPOLICY.DELETE",
        job: Some(Kind::Change),
        admin_only: false,
    },
    Command {
        name: "listLBHealthCheckPolicies",
        handler: handler!(|app, caller, p| lb::list_policies(
            app,
            caller,
            p,
            PolicyKind::HealthCheck
        )
        .await
        .map(Reply::Json)),
        event_type: "API.CALL",
        job: None,
        admin_only: false,
    },
    Command {
        name: "queryAsyncJobResult",
        handler: handler!(|app, caller, p| accounts::query_job(app, caller, p)
            .await
            .map(Reply::Json)),
        event_type: "API.CALL",
        job: None,
        admin_only: false,
    },
    Command {
        name: "listAsyncJobs",
        handler: handler!(|app, caller, p| accounts::list_jobs(app, caller, p)
            .await
            .map(Reply::Json)),
        event_type: "API.CALL",
        job: None,
        admin_only: false,
    },
    Command {
        name: "listApis",
        handler: handler!(|_app, _caller, p| accounts::list_apis(p).map(Reply::Json)),
        event_type: "API.CALL",
        job: None,
        admin_only: false,
    },
    Command {
        name: "listZones",
        handler: handler!(|app, caller, p| infra::list_zones(app, caller, p)
            .await
            .map(Reply::Json)),
        event_type: "API.CALL",
        job: None,
        admin_only: false,
    },
    Command {
        name: "listNetworkOfferings",
        handler: handler!(
            |app, caller, p| infra::list_network_offerings(app, caller, p)
                .await
                .map(Reply::Json)
        ),
        event_type: "API.CALL",
        job: None,
        admin_only: false,
    },
    Command {
        name: "createNetwork",
        handler: handler!(|app, caller, p| infra::create_network(app, caller, p)
            .await
            .map(Reply::Json)),
        event_type: "NETWORK.CREATE",
        job: None,
        admin_only: false,
    },
    Command {
        name: "updateZone",
        handler: handler!(|app, caller, p| infra::update_zone(app, caller, p)
            .await
            .map(Reply::Json)),
        event_type: "ZONE.EDIT",
        job: None,
        admin_only: true,
    },
    Command {
        name: "listPhysicalNetworks",
        handler: handler!(
            |app, caller, p| infra::list_physical_networks(app, caller, p)
                .await
                .map(Reply::Json)
        ),
        event_type: "API.CALL",
        job: None,
        admin_only: true,
    },
    Command {
        name: "updatePhysicalNetwork",
        handler: handler!(
            |app, caller, p| infra::update_physical_network(app, caller, p)
                .await
                .map(Reply::Json)
        ),
        event_type: "PHYSICAL.NETWORK.UPDATE",
        job: Some(Kind::Change),
        admin_only: true,
    },
    Command {
        name: "listNetworks",
        handler: handler!(|app, caller, p| infra::list_networks(app, caller, p)
            .await
            .map(Reply::Json)),
        event_type: "API.CALL",
        job: None,
        admin_only: false,
    },
    Command {
        name: "deleteNetwork",
        handler: handler!(|app, caller, p| infra::delete_network(app, caller, p)
            .await
            .map(Reply::Json)),
        event_type: "NETWORK.DELETE",
        job: Some(Kind::DeleteNetwork),
        admin_only: false,
    },
    Command {
        name: "updateNetwork",
        handler: handler!(|app, caller, p| infra::update_network(app, caller, p)
            .await
            .map(Reply::Json)),
        event_type: "NETWORK.UPDATE",
        job: Some(Kind::Change),
        admin_only: false,
    },
    Command {
        name: "restartNetwork",
        handler: handler!(|app, caller, p| infra::restart_network(app, caller, p)
            .await
            .map(Reply::Json)),
        event_type: "NETWORK.RESTART",
        job: Some(Kind::RestartNetwork),
        admin_only: false,
    },
    Command {
        name: "associateIpAddress",
        handler: handler!(|app, caller, p| infra::associate_ip(app, caller, p)
            .await
            .map(Reply::Json)),
        event_type: "NET.IPASSIGN",
        job: Some(Kind::Change),
        admin_only: false,
    },
    Command {
        name: "disassociateIpAddress",
        handler: handler!(|app, caller, p| infra::disassociate_ip(app, caller, p)
            .await
            .map(Reply::Json)),
        event_type: "NET.IPRELEASE",
        job: Some(Kind::Change),
        admin_only: false,
    },
    Command {
        name: "listPublicIpAddresses",
        handler: handler!(|app, caller, p| infra::list_ips(app, caller, p).await.map(Reply::Json)),
        event_type: "API.CALL",
        job: None,
        admin_only: false,
    },
    Command {
        name: "createVlanIpRange",
        handler: handler!(|app, caller, p| infra::create_vlan_range(app, caller, p)
            .await
            .map(Reply::Json)),
        event_type: "API.CALL",
        job: None,
        admin_only: true,
    },
    Command {
        name: "listVlanIpRanges",
        handler: handler!(|app, caller, p| infra::list_vlan_ranges(app, caller, p)
            .await
            .map(Reply::Json)),
        event_type: "API.CALL",
        job: None,
        admin_only: true,
    },
    Command {
        name: "deployVirtualMachine",
        handler: handler!(|app, caller, p| infra::deploy_vm(app, caller, p).await.map(Reply::Json)),
        event_type: "VM.CREATE",
        job: Some(Kind::DeployVm),
        admin_only: false,
    },
    Command {
        name: "listVirtualMachines",
        handler: handler!(|app, caller, p| infra::list_vms(app, caller, p).await.map(Reply::Json)),
        event_type: "API.CALL",
        job: None,
        admin_only: false,
    },
    Command {
        name: "listNics",
        handler: handler!(|app, caller, p| infra::list_nics(app, caller, p).await.map(Reply::Json)),
        event_type: "API.CALL",
        job: None,
        admin_only: false,
    },
    Command {
        name: "addIpToNic",
        handler: handler!(|app, caller, p| infra::add_ip_to_nic(app, caller, p)
            .await
            .map(Reply::Json)),
        event_type: "NIC.SECONDARY.IP.ASSIGN",
        job: Some(Kind::Change),
        admin_only: false,
    },
    Command {
        name: "removeIpFromNic",
        handler: handler!(|app, caller, p| infra::remove_ip_from_nic(app, caller, p)
            .await
            .map(Reply::Json)),
        event_type: "NIC.SECONDARY.IP.UNASSIGN",
        job: Some(Kind::Change),
        admin_only: false,
    },
    Command {
        name: "destroyVirtualMachine",
        handler: handler!(|app, caller, p| infra::destroy_vm(app, caller, p)
            .await
            .map(Reply::Json)),
        event_type: "VM.DESTROY",
        job: Some(Kind::DestroyVm),
        admin_only: false,
    },
    Command {
        name: "listServiceOfferings",
        handler: handler!(
            |app, caller, p| infra::list_service_offerings(app, caller, p)
                .await
                .map(Reply::Json)
        ),
        event_type: "API.CALL",
        job: None,
        admin_only: false,
    },
    Command {
        name: "registerTemplate",
        handler: handler!(|app, caller, p| infra::register_template(app, caller, p)
            .await
            .map(Reply::Json)),
        event_type: "TEMPLATE.CREATE",
        job: None,
        admin_only: true,
    },
    Command {
        name: "listTemplates",
        handler: handler!(|app, caller, p| infra::list_templates(app, caller, p)
            .await
            .map(Reply::Json)),
        event_type: "API.CALL",
        job: None,
        admin_only: false,
    },
    Command {
        name: "rebootRouter",
        handler: handler!(|app, caller, p| infra::reboot_router(app, caller, p)
            .await
            .map(Reply::Json)),
        event_type: "ROUTER.REBOOT",
        job: Some(Kind::RestartNetwork),
        admin_only: true,
    },
    Command {
        name: "startRouter",
        handler: handler!(|app, caller, p| infra::start_router(app, caller, p)
            .await
            .map(Reply::Json)),
        event_type: "ROUTER.START",
        job: Some(Kind::RestartNetwork),
        admin_only: true,
    },
    Command {
        name: "stopRouter",
        handler: handler!(|app, caller, p| infra::stop_router(app, caller, p)
            .await
            .map(Reply::Json)),
        event_type: "ROUTER.STOP",
        job: Some(Kind::StopRouter),
        admin_only: true,
    },
    Command {
        name: "listRouters",
        handler: handler!(|app, caller, p| infra::list_routers(app, caller, p)
            .await
            .map(Reply::Json)),
        event_type: "API.CALL",
        job: None,
        admin_only: false,
    },
    Command {
        name: "listEvents",
        handler: handler!(|app, caller, p| accounts::list_events(app, caller, p)
            .await
            .map(Reply::Json)),
        event_type: "API.CALL",
        job: None,
        admin_only: false,
    },
    Command {
        name: "createAccount",
        handler: handler!(|app, caller, p| accounts::create_account(app, caller, p)
            .await
            .map(Reply::Json)),
        event_type: "ACCOUNT.CREATE",
        job: None,
        admin_only: false,
    },
    Command {
        name: "listDomains",
        handler: handler!(|app, caller, p| accounts::list_domains(app, caller, p)
            .await
            .map(Reply::Json)),
        event_type: "API.CALL",
        job: None,
        admin_only: false,
    },
    Command {
        name: "listProjects",
        handler: handler!(
            |app, caller, p| super::list_absent(app, caller, p, "project")
                .await
                .map(Reply::Json)
        ),
        event_type: "API.CALL",
        job: None,
        admin_only: false,
    },
    Command {
        name: "listCapabilities",
        handler: handler!(|_app, _caller, _p| Ok(Reply::Json(about::list_capabilities()))),
        event_type: "API.CALL",
        job: None,
        admin_only: false,
    },
    Command {
        name: "listNetworkProtocols",
        handler: handler!(|_app, _caller, p| about::list_network_protocols(p).map(Reply::Json)),
        event_type: "API.CALL",
        job: None,
        admin_only: false,
    },
    Command {
        name: "listAccounts",
        handler: handler!(|app, caller, p| accounts::list_accounts(app, caller, p)
            .await
            .map(Reply::Json)),
        event_type: "API.CALL",
        job: None,
        admin_only: false,
    },
    Command {
        name: "listUsers",
        handler: handler!(|app, caller, p| accounts::list_users(app, caller, p)
            .await
            .map(Reply::Json)),
        event_type: "API.CALL",
        job: None,
        admin_only: false,
    },
    Command {
        name: "registerUserKeys",
        handler: handler!(|app, caller, p| accounts::register_keys(app, caller, p)
            .await
            .map(Reply::Json)),
        event_type: "REGISTER.USER.KEY",
        job: None,
        admin_only: false,
    },
    Command {
        name: "listResourceLimits",
        handler: handler!(|app, caller, p| limits::list_limits(app, caller, p)
            .await
            .map(Reply::Json)),
        event_type: "API.CALL",
        job: None,
        admin_only: false,
    },
    Command {
        name: "updateResourceLimit",
        handler: handler!(|app, caller, p| limits::update_limit(app, caller, p)
            .await
            .map(Reply::Json)),
        event_type: "API.CALL",
        job: None,
        admin_only: false,
    },
    Command {
        name: "createAgentToken",
        handler: handler!(|app, caller, p| hosts::create_token(app, caller, p)
            .await
            .map(Reply::Json)),
        event_type: "API.CALL",
        job: None,
        admin_only: true,
    },
    Command {
        name: "listAgentTokens",
        handler: handler!(|app, caller, p| hosts::list_tokens(app, caller, p)
            .await
            .map(Reply::Json)),
        event_type: "API.CALL",
        job: None,
        admin_only: true,
    },
    Command {
        name: "revokeAgentToken",
        handler: handler!(|app, caller, p| hosts::revoke_token(app, caller, p)
            .await
            .map(Reply::Json)),
        event_type: "API.CALL",
        job: None,
        admin_only: true,
    },
    Command {
        name: "listHosts",
        handler: handler!(|app, caller, p| hosts::list_hosts(app, caller, p)
            .await
            .map(Reply::Json)),
        event_type: "API.CALL",
        job: None,
        admin_only: true,
    },
];

#[cfg(test)]
mod tests;
