//! A balancer's stickiness and health-check policies: their creation (typed requests whose
//! checks end with the router's own validation), deletion and the job result of a policy
//! change. Their listing is in [`super::listing`].

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use api_types::error::ApiError;
use api_types::params::Params;
use ipnet::Ipv4Net;
use router_config::{
    EgressPolicy, GuestSide, PublicAddress, PublicSide, RouterConfig, WireHealthCheck,
    WireLoadBalancer, WireMember, WireStickiness, SCHEMA_VERSION,
};
use serde_json::Value;

use super::super::{
    accepted, firewall, network_by_id, queued, refuse_custom_id, required, rule_by_id, unknown,
};
use super::{lb_param, not_revoked};
use crate::app::{store_error, ApiResult, App};
use domain::actor::Caller;
use domain::job::{Kind, NewJob, Outcome, Payload};
use domain::model::{PolicyKind, PolicyRow, Rule};
use domain::plan::{HealthNumbers, StickinessParams, GUEST_INTERFACE, PUBLIC_INTERFACE};
use store::balancers::NewPolicy;
use store::Scheduled;

/// The stickiness parameters each method takes, as CloudStack's router advertises them, and
/// which of them are flags (no value needed).
fn method_params(method: &str) -> &'static [(&'static str, bool)] {
    match method {
        "LbCookie" => &[
            ("cookie-name", false),
            ("mode", false),
            ("nocache", true),
            ("indirect", true),
            ("postonly", true),
            ("domain", false),
        ],
        "AppCookie" => &[
            ("cookie-name", false),
            ("length", false),
            ("holdtime", false),
            ("request-learn", true),
            ("prefix", true),
            ("mode", true),
        ],
        _ => &[("tablesize", false), ("expire", false)],
    }
}

/// The method name in its canonical spelling (the request's is matched case-insensitively).
pub(super) fn stickiness_method(s: &str) -> ApiResult<&'static str> {
    ["LbCookie", "AppCookie", "SourceBased"]
        .into_iter()
        .find(|m| m.eq_ignore_ascii_case(s.trim()))
        .ok_or_else(|| {
            ApiError::invalid_parameter(format!(
                "Failed to create Stickiness policy: method {s} is not supported \
                 (supported: LbCookie, AppCookie, SourceBased)"
            ))
        })
}

/// The stickiness params of `param[i].name` / `param[i].value` entries, checked against the
/// method's list. A repeated name has its values joined with `:` as CloudStack stores them,
/// except `domain`, whose values are joined with `,`, the router's list separator, so that a
/// repeated `domain` means several domains.
pub(super) fn stickiness_params(
    method: &str,
    entries: &[BTreeMap<String, String>],
) -> ApiResult<StickinessParams> {
    let allowed = method_params(method);
    let mut out = StickinessParams::new();
    for entry in entries {
        let field = |name: &str| {
            entry
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_string())
        };
        let name = field("name")
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                ApiError::invalid_parameter(
                    "Failed to create Stickiness policy: each param needs a name (param[i].name)",
                )
            })?
            .to_ascii_lowercase();
        let value = field("value").unwrap_or_default();
        let Some((_, is_flag)) = allowed.iter().find(|(n, _)| *n == name) else {
            return Err(ApiError::invalid_parameter(format!(
                "Failed to create Stickiness policy: method {method} takes no parameter {name} \
                 (it takes: {})",
                allowed
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        if !is_flag && value.is_empty() {
            return Err(ApiError::invalid_parameter(format!(
                "Failed to create Stickiness policy: parameter {name} of method {method} needs a value"
            )));
        }
        match out.get_mut(&name) {
            Some(old) => {
                old.push(if name == "domain" { ',' } else { ':' });
                old.push_str(&value);
            }
            None => {
                out.insert(name, value);
            }
        }
    }
    Ok(out)
}

/// What a one-balancer config needs to know about the balancer and its network.
#[derive(Debug, Clone, Copy)]
pub(super) struct Trial {
    /// The balancer's id in the config.
    pub(super) lb_id: u64,
    /// Its public address.
    pub(super) public_ip: Ipv4Addr,
    /// Its public port.
    pub(super) public_port: u32,
    /// Its members' port.
    pub(super) private_port: u32,
    /// The network's CIDR.
    pub(super) cidr: Ipv4Net,
    /// The network's gateway.
    pub(super) gateway: Ipv4Addr,
}

impl Trial {
    fn of(lb: &Rule, cidr: Ipv4Net, gateway: Ipv4Addr) -> Trial {
        let port = |v: Option<i64>| v.and_then(|v| u32::try_from(v).ok()).unwrap_or(80);
        Trial {
            lb_id: u64::try_from(lb.id.get()).unwrap_or(1).max(1),
            public_ip: lb.ip.unwrap_or(Ipv4Addr::new(192, 0, 2, 1)),
            public_port: port(lb.start_port),
            private_port: port(lb.private_start),
            cidr,
            gateway,
        }
    }
}

/// The router's objections to a balancer carrying these policies, as API texts: only those
/// about the policies (the rest of the one-balancer config is made up and not the caller's).
pub(super) fn router_objections(
    trial: Trial,
    stickiness: Option<WireStickiness>,
    health_check: Option<WireHealthCheck>,
) -> Vec<String> {
    let member = trial
        .cidr
        .hosts()
        .find(|h| *h != trial.gateway)
        .unwrap_or(trial.gateway);
    let config = RouterConfig {
        schema: SCHEMA_VERSION,
        generation: 1,
        public: PublicSide {
            interface: PUBLIC_INTERFACE.into(),
            addresses: vec![PublicAddress {
                ip: trial.public_ip,
                prefix_len: 24,
                source_nat: true,
                static_nat: None,
            }],
            gateway: None,
        },
        guest: GuestSide {
            interface: GUEST_INTERFACE.into(),
            cidr: trial.cidr.to_string(),
            gateway: trial.gateway,
        },
        egress_default: EgressPolicy::Deny,
        firewall_rules: Vec::new(),
        egress_rules: Vec::new(),
        port_forwards: Vec::new(),
        load_balancers: vec![WireLoadBalancer {
            id: trial.lb_id,
            public_ip: trial.public_ip,
            public_port: trial.public_port,
            protocol: "tcp".into(),
            proxy_protocol: None,
            algorithm: "roundrobin".into(),
            members: vec![WireMember {
                vm_ip: member,
                port: trial.private_port,
            }],
            source_cidrs: vec!["0.0.0.0/0".into()],
            stickiness,
            health_check,
        }],
        dhcp: None,
    };
    match router_config::validate(config) {
        Ok(_) => Vec::new(),
        Err(problems) => problems
            .0
            .into_iter()
            .filter_map(|pr| {
                let field = pr.field.as_str();
                let name = if let Some(param) = field.strip_prefix("stickiness.params.") {
                    format!("param {param}")
                } else if field == "stickiness.method" {
                    "methodname".to_string()
                } else if let Some(h) = field.strip_prefix("health_check.") {
                    match h {
                        "interval_s" => "intervaltime",
                        "response_timeout_s" => "responsetimeout",
                        "healthy_threshold" => "healthythreshold",
                        "unhealthy_threshold" => "unhealthythreshold",
                        "ping_path" => "pingpath",
                        other => other,
                    }
                    .to_string()
                } else if field.starts_with("stickiness") {
                    field.to_string()
                } else {
                    return None;
                };
                Some(format!("{name}: {}", pr.message))
            })
            .collect(),
    }
}

/// 431 with the router's objections, if it has any.
fn refuse_objections(prefix: &str, objections: Vec<String>) -> ApiResult<()> {
    if objections.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid_parameter(format!(
            "{prefix}: the router cannot apply it: {}",
            objections.join("; ")
        )))
    }
}

/// The health-check numbers of a request: 0 or absent takes CloudStack's default; a timeout
/// longer than the interval (both given) is refused.
pub(super) fn health_numbers(
    timeout: Option<i64>,
    interval: Option<i64>,
    healthy: Option<i64>,
    unhealthy: Option<i64>,
) -> ApiResult<HealthNumbers> {
    let value = |name: &str, v: Option<i64>, default: u32| -> ApiResult<u32> {
        match v {
            None | Some(0) => Ok(default),
            Some(n) => u32::try_from(n).map_err(|_| {
                ApiError::invalid_parameter(format!(
                    "Failed to create HealthCheck policy: {name} must be a positive number, not {n}"
                ))
            }),
        }
    };
    let numbers = HealthNumbers {
        response_time: value("responsetimeout", timeout, 2)?,
        interval: value("intervaltime", interval, 5)?,
        healthy: value("healthythreshold", healthy, 2)?,
        unhealthy: value("unhealthythreshold", unhealthy, 1)?,
    };
    if timeout.is_some() && interval.is_some() && numbers.response_time > numbers.interval {
        return Err(ApiError::invalid_parameter(format!(
            "Failed to create HealthCheck policy: Invalid Argument: the response timeout ({}s) \
             must not be longer than the interval time ({}s)",
            numbers.response_time, numbers.interval
        )));
    }
    Ok(numbers)
}

/// The stored form of a stickiness policy's params: a JSON object of strings, keys in order.
pub(super) fn stickiness_json(params: &StickinessParams) -> String {
    Value::Object(
        params
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
    .to_string()
}

/// The stored form of a health check's numbers, as [`HealthNumbers`] serializes.
pub(super) fn health_json(n: &HealthNumbers) -> String {
    format!(
        r#"{{"response_time":{},"interval":{},"healthy":{},"unhealthy":{}}}"#,
        n.response_time, n.interval, n.healthy, n.unhealthy
    )
}

/// A createLBStickinessPolicy request, checked, the router's validation included.
#[derive(Debug, Clone)]
pub(crate) struct CreateStickiness {
    /// The balancer.
    pub(crate) lb: Rule,
    /// The policy's name.
    pub(crate) name: String,
    /// The method, in canonical spelling.
    pub(crate) method: &'static str,
    /// Its params.
    pub(crate) params: StickinessParams,
    /// Its description.
    pub(crate) description: String,
    /// Shown or hidden.
    pub(crate) display: bool,
}

impl CreateStickiness {
    /// Reads and checks every parameter, in order (the first problem is the answer): the
    /// balancer as the caller sees it and not being deleted, the name, the method, its params,
    /// and last what the router would say of a balancer carrying them.
    ///
    /// # Errors
    /// 431 for a missing or invalid parameter, an unknown id or the router's objection; 530
    /// when a read fails.
    pub(crate) async fn parse(
        app: &App,
        caller: &Caller,
        p: &Params,
    ) -> ApiResult<CreateStickiness> {
        let lb = lb_param(app, caller, p, "lbruleid").await?;
        not_revoked(&lb)?;
        let name = required(p, "name")?.to_string();
        let method = stickiness_method(required(p, "methodname")?)?;
        let params = stickiness_params(method, &p.map("param"))?;
        let net = network_by_id(app, lb.network_id).await?;
        let wire = WireStickiness {
            method: method.to_string(),
            params: params.clone(),
        };
        refuse_objections(
            "Failed to create Stickiness policy",
            router_objections(Trial::of(&lb, net.cidr, net.gateway), Some(wire), None),
        )?;
        Ok(CreateStickiness {
            lb,
            name,
            method,
            params,
            description: p.str("description").unwrap_or_default().to_string(),
            display: p.bool("fordisplay").unwrap_or(true),
        })
    }
}

/// A createLBHealthCheckPolicy request, checked, the router's validation included.
#[derive(Debug, Clone)]
pub(crate) struct CreateHealthCheck {
    /// The balancer.
    pub(crate) lb: Rule,
    /// The path the check requests.
    pub(crate) ping_path: String,
    /// Timeout, interval and thresholds.
    pub(crate) numbers: HealthNumbers,
    /// Its description.
    pub(crate) description: String,
    /// Shown or hidden.
    pub(crate) display: bool,
}

impl CreateHealthCheck {
    /// Reads and checks every parameter, in order (the first problem is the answer): the
    /// balancer as the caller sees it and not being deleted, the numbers, and last what the
    /// router would say of a balancer carrying the check.
    ///
    /// # Errors
    /// 431 for an invalid parameter, an unknown id or the router's objection; 530 when a read
    /// fails.
    pub(crate) async fn parse(
        app: &App,
        caller: &Caller,
        p: &Params,
    ) -> ApiResult<CreateHealthCheck> {
        let lb = lb_param(app, caller, p, "lbruleid").await?;
        not_revoked(&lb)?;
        let ping_path = p
            .str("pingpath")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .unwrap_or("/")
            .to_string();
        let numbers = health_numbers(
            p.int("responsetimeout"),
            p.int("intervaltime"),
            p.int("healthythreshold"),
            p.int("unhealthythreshold"),
        )?;
        let net = network_by_id(app, lb.network_id).await?;
        let wire = WireHealthCheck {
            ping_path: Some(ping_path.clone()),
            interval_s: numbers.interval,
            response_timeout_s: numbers.response_time,
            healthy_threshold: numbers.healthy,
            unhealthy_threshold: numbers.unhealthy,
        };
        refuse_objections(
            "Failed to create HealthCheck policy",
            router_objections(Trial::of(&lb, net.cidr, net.gateway), None, Some(wire)),
        )?;
        Ok(CreateHealthCheck {
            lb,
            ping_path,
            numbers,
            description: p.str("description").unwrap_or_default().to_string(),
            display: p.bool("fordisplay").unwrap_or(true),
        })
    }
}

/// How a policy of one kind is created: the command, the most live policies a balancer may
/// have, and the texts of refusal and failure.
struct PolicyLimits<'a> {
    command: &'a str,
    max_live: i64,
    too_many: String,
    failure: &'a str,
}

/// Writes a policy in state Add with its job (after checking, under the network's lock, how
/// many the balancer already has), and rings the runner. Answers `{"id", "jobid"}`.
async fn insert_policy(
    app: &App,
    caller: &Caller,
    lb: &Rule,
    policy: NewPolicy<'_>,
    limits: PolicyLimits<'_>,
) -> ApiResult<Value> {
    let PolicyLimits {
        command,
        max_live,
        too_many,
        failure,
    } = limits;
    let network = lb.network_id;
    let mut change = app.db.change(Some(network)).await.map_err(store_error)?;
    change.lock_network().await.map_err(store_error)?;
    let live = store::balancers::live_policies(change.conn(), policy.lb, policy.kind)
        .await
        .map_err(store_error)?;
    if live >= max_live {
        return Err(ApiError::invalid_parameter(too_many));
    }
    let description = format!("{command} for rule {}", lb.uuid);
    let (job_id, job_uuid) = change
        .job(
            caller,
            NewJob {
                command,
                kind: Kind::Change,
                network_id: Some(network),
                payload: Payload::new(
                    Outcome::Policy {
                        lb_id: lb.id,
                        kind: policy.kind,
                    },
                    firewall::event_type(command),
                    format!(
                        "creating a {} policy for load balancer {}",
                        policy.kind.as_str(),
                        lb.uuid
                    ),
                    failure,
                ),
                instance_type: None,
                instance_uuid: None,
            },
            Some(Scheduled {
                event_type: firewall::event_type(command),
                description: &description,
                resource_uuid: Some(policy.uuid),
            }),
        )
        .await
        .map_err(store_error)?;
    store::balancers::insert_policy(change.conn(), &policy, job_id)
        .await
        .map_err(store_error)?;
    let receipt = change.commit().await.map_err(store_error)?;
    app.doorbell.ring(receipt);
    Ok(accepted(policy.uuid, &job_uuid))
}

/// createLBStickinessPolicy. At most two live policies per balancer, as CloudStack; the router
/// applies only the first.
pub(crate) async fn create_stickiness(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let request = CreateStickiness::parse(app, caller, p).await?;
    add_stickiness(app, caller, request).await
}

/// Writes a checked createLBStickinessPolicy request.
async fn add_stickiness(app: &App, caller: &Caller, request: CreateStickiness) -> ApiResult<Value> {
    let uuid = uuid::Uuid::new_v4().to_string();
    let params = stickiness_json(&request.params);
    let policy = NewPolicy {
        uuid: &uuid,
        lb: request.lb.id,
        kind: PolicyKind::Stickiness,
        name: &request.name,
        description: &request.description,
        method: request.method,
        params: &params,
        display: request.display,
    };
    let limits = PolicyLimits {
        command: "createLBStickinessPolicy",
        max_live: 2,
        too_many: "Failed to create Stickiness policy: Already two policies attached".into(),
        failure: "Failed to create stickiness policy",
    };
    insert_policy(app, caller, &request.lb, policy, limits).await
}

/// createLBHealthCheckPolicy. guestnet's router runs health checks (the Lb service advertises
/// HealthCheckPolicy), unlike CloudStack's virtual router; one live policy per balancer.
pub(crate) async fn create_health_check(
    app: &App,
    caller: &Caller,
    p: &Params,
) -> ApiResult<Value> {
    let request = CreateHealthCheck::parse(app, caller, p).await?;
    add_health_check(app, caller, request).await
}

/// Writes a checked createLBHealthCheckPolicy request.
async fn add_health_check(
    app: &App,
    caller: &Caller,
    request: CreateHealthCheck,
) -> ApiResult<Value> {
    let uuid = uuid::Uuid::new_v4().to_string();
    let params = health_json(&request.numbers);
    let policy = NewPolicy {
        uuid: &uuid,
        lb: request.lb.id,
        kind: PolicyKind::HealthCheck,
        name: "",
        description: &request.description,
        method: &request.ping_path,
        params: &params,
        display: request.display,
    };
    let limits = PolicyLimits {
        command: "createLBHealthCheckPolicy",
        max_live: 1,
        too_many: format!(
            "Failed to create HealthCheck policy: load balancer rule {} already has one",
            request.lb.uuid
        ),
        failure: "Failed to create healthcheck policy",
    };
    insert_policy(app, caller, &request.lb, policy, limits).await
}

/// The policy of `kind` named by uuid parameter `param`, and its balancer, if the caller may
/// see them.
pub(super) async fn policy_param(
    app: &App,
    caller: &Caller,
    p: &Params,
    param: &str,
    kind: PolicyKind,
) -> ApiResult<(PolicyRow, Rule)> {
    let uuid = required(p, param)?;
    let policy = store::balancers::policy_by_uuid(&app.db, uuid, kind)
        .await
        .map_err(store_error)?
        .ok_or_else(|| unknown(p, param))?;
    let lb = rule_by_id(app, policy.lb_id).await?;
    if !caller.may_touch(lb.account_id) {
        return Err(unknown(p, param));
    }
    Ok((policy, lb))
}

/// deleteLBStickinessPolicy / deleteLBHealthCheckPolicy: the policy goes to Revoke with a job.
pub(crate) async fn delete_policy(
    app: &App,
    caller: &Caller,
    p: &Params,
    kind: PolicyKind,
) -> ApiResult<Value> {
    let (command, failure) = match kind {
        PolicyKind::Stickiness => (
            "deleteLBStickinessPolicy",
            "Failed to delete load balancer stickiness policy",
        ),
        PolicyKind::HealthCheck => (
            "deleteLBHealthCheckPolicy",
            "Failed to delete load balancer healthcheck policy",
        ),
    };
    let (policy, lb) = policy_param(app, caller, p, "id", kind).await?;
    let network = lb.network_id;
    let mut change = app.db.change(Some(network)).await.map_err(store_error)?;
    let description = format!("{command} for policy {}", policy.uuid);
    let (job_id, job_uuid) = change
        .job(
            caller,
            NewJob {
                command,
                kind: Kind::Change,
                network_id: Some(network),
                payload: Payload::new(
                    Outcome::Success,
                    firewall::event_type(command),
                    format!("deleting {} policy {}", kind.as_str(), policy.uuid),
                    failure,
                ),
                instance_type: None,
                instance_uuid: None,
            },
            Some(Scheduled {
                event_type: firewall::event_type(command),
                description: &description,
                resource_uuid: Some(&policy.uuid),
            }),
        )
        .await
        .map_err(store_error)?;
    change.lock_network().await.map_err(store_error)?;
    store::balancers::revoke_policy(change.conn(), policy.id, job_id)
        .await
        .map_err(store_error)?;
    let receipt = change.commit().await.map_err(store_error)?;
    app.doorbell.ring(receipt);
    Ok(queued(&job_uuid))
}

/// updateLBStickinessPolicy / updateLBHealthCheckPolicy (async): what CloudStack lets them
/// change is the policy's display flag and its uuid (`customid`, refused here: guestnet keeps
/// its ids). Nothing reaches the router, so the job ends in the transaction that makes the
/// change, with the policy as its result.
pub(crate) async fn update_policy(
    app: &App,
    caller: &Caller,
    p: &Params,
    kind: PolicyKind,
) -> ApiResult<Value> {
    let (command, event) = match kind {
        PolicyKind::Stickiness => ("updateLBStickinessPolicy", "LB.STICKINESSPOLICY.UPDATE"),
        PolicyKind::HealthCheck => ("updateLBHealthCheckPolicy", "LB.HEALTHCHECKPOLICY.UPDATE"),
    };
    let (mut policy, lb) = policy_param(app, caller, p, "id", kind).await?;
    refuse_custom_id(p, &policy.uuid)?;
    if policy.state == domain::model::State::Revoke {
        return Err(ApiError::invalid_parameter(format!(
            "Unable to update the policy {}: it is being deleted",
            policy.uuid
        )));
    }
    if let Some(display) = p.bool("fordisplay") {
        policy.display = display;
    }
    let owner = super::super::owner(app, lb.account_id).await?;
    let result = crate::resp::wrap(
        crate::resp::lb::policies_key(kind),
        crate::resp::lb::policies(
            &lb,
            kind,
            std::slice::from_ref(&policy),
            &owner,
            &app.site.zone_uuid,
            caller.admin,
        ),
    );
    let mut change = app.db.change(None).await.map_err(store_error)?;
    store::balancers::set_policy_display(change.conn(), policy.id, policy.display)
        .await
        .map_err(store_error)?;
    let description = format!("updating {} policy {}", kind.as_str(), policy.uuid);
    let scheduled = Scheduled {
        event_type: event,
        description: &description,
        resource_uuid: Some(&policy.uuid),
    };
    let (job_id, job_uuid) = change
        .job(
            caller,
            NewJob {
                command,
                kind: Kind::Change,
                network_id: None,
                payload: Payload::new(
                    Outcome::Success,
                    event,
                    description.clone(),
                    "Failed to update load balancer policy",
                ),
                instance_type: None,
                instance_uuid: None,
            },
            Some(scheduled),
        )
        .await
        .map_err(store_error)?;
    change
        .complete_job(caller, (job_id, &job_uuid), &scheduled, &result)
        .await
        .map_err(store_error)?;
    let receipt = change.commit().await.map_err(store_error)?;
    app.doorbell.ring(receipt);
    Ok(queued(&job_uuid))
}
