//! The balancer rules themselves: createLoadBalancerRule, deleteLoadBalancerRule and
//! updateLoadBalancerRule.

use api_types::error::ApiError;
use api_types::params::Params;
use ipnet::Ipv4Net;
use serde_json::Value;

use super::super::firewall;
use super::super::{queued, required, unknown};
use super::{lb_param, not_revoked};
use crate::app::{store_error, ApiResult, App};
use domain::actor::Caller;
use domain::checks;
use domain::ids::RuleId;
use domain::job::{Kind, NewJob, Outcome, Payload, Undo};
use domain::model::{IpRow, NetworkRow, NewRule, Purpose};
use store::balancers::BalancerUpdate;
use store::Scheduled;

/// A createLoadBalancerRule request, checked: what the rule is, on which address.
#[derive(Debug, Clone)]
pub(crate) struct CreateBalancer {
    /// The balancer's name.
    pub(crate) name: String,
    /// Its algorithm, in canonical spelling.
    pub(crate) algorithm: String,
    /// The port balanced to on the members.
    pub(crate) private_port: i64,
    /// The public port.
    pub(crate) public_port: i64,
    /// The public IP it balances on.
    pub(crate) ip: IpRow,
    /// That IP's network.
    pub(crate) network: NetworkRow,
    /// The protocol as the API gave it.
    pub(crate) lb_protocol: String,
    /// The sources allowed.
    pub(crate) sources: Vec<Ipv4Net>,
    /// Its description.
    pub(crate) description: Option<String>,
    /// Shown or hidden.
    pub(crate) display: bool,
    /// Whether to open the firewall for it.
    pub(crate) open_firewall: bool,
}

impl CreateBalancer {
    /// Reads and checks every parameter, in CloudStack's order: the first problem is the
    /// answer. The public IP (and the network, when named) are looked up as the caller sees
    /// them.
    ///
    /// # Errors
    /// 431 for a missing or invalid parameter or an unknown id; 530 when a read fails.
    pub(crate) async fn parse(app: &App, caller: &Caller, p: &Params) -> ApiResult<CreateBalancer> {
        let command = p.spec().name;
        let name = required(p, "name")?.to_string();
        let algorithm = checks::algorithm(required(p, "algorithm")?)?;
        let private_port = checks::port(
            "privateport",
            p.int("privateport")
                .ok_or_else(|| ApiError::missing_parameter(command, "privateport"))?,
        )?;
        let public_port = checks::port(
            "publicport",
            p.int("publicport")
                .ok_or_else(|| ApiError::missing_parameter(command, "publicport"))?,
        )?;
        // CloudStack lets a balancer go without an address on providers that pick one; the
        // router of a guestnet network balances on a public IP, so it is required.
        if p.str("publicipid").is_none_or(str::is_empty) {
            return Err(ApiError::missing_parameter(command, "publicipid"));
        }
        let (ip, network) = firewall::rule_ip(app, caller, p, "publicipid").await?;
        if p.str("networkid").is_some_and(|s| !s.is_empty()) {
            let named = super::super::network_param(app, caller, p, "networkid").await?;
            if named.id != network.id {
                return Err(ApiError::invalid_parameter(format!(
                    "Network {} is not the network of public IP {} (which is associated with \
                     network {})",
                    named.uuid, ip.address, network.uuid
                )));
            }
        }
        if let Some(z) = p.str("zoneid").filter(|z| !z.is_empty()) {
            if z != app.site.zone_uuid {
                return Err(unknown(p, "zoneid"));
            }
        }
        let lb_protocol = checks::lb_protocol(p.str("protocol"))?;
        let sources = checks::cidr_list("cidrlist", &p.list("cidrlist").unwrap_or_default())?;
        Ok(CreateBalancer {
            name,
            algorithm,
            private_port,
            public_port,
            ip,
            network,
            lb_protocol,
            sources,
            description: p.str("description").map(str::to_string),
            display: p.bool("fordisplay").unwrap_or(true),
            open_firewall: p.bool("openfirewall").unwrap_or(true),
        })
    }

    /// The rule row it writes, under a new uuid.
    fn rule(self) -> NewRule {
        NewRule {
            uuid: uuid::Uuid::new_v4().to_string(),
            purpose: Purpose::LoadBalancing,
            traffic: None,
            network_id: self.network.id,
            ip_id: Some(self.ip.id),
            account_id: self.ip.account_id.unwrap_or(self.network.account_id),
            protocol: "tcp".into(),
            ports: Some((self.public_port, self.public_port)),
            icmp: None,
            sources: self.sources,
            dests: Vec::new(),
            related_id: None,
            display: self.display,
            vm_id: None,
            vm_ip: None,
            private: Some((self.private_port, self.private_port)),
            name: Some(self.name),
            description: self.description,
            algorithm: Some(self.algorithm),
            lb_protocol: Some(self.lb_protocol),
        }
    }
}

/// createLoadBalancerRule: the rule (and the firewall rule it opens) in state Add, with a job
/// that pushes the firewall rule; the balancer itself reaches the router with its first member.
pub(crate) async fn create(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let request = CreateBalancer::parse(app, caller, p).await?;
    create_balancer(app, caller, request).await
}

/// Writes a checked createLoadBalancerRule request.
async fn create_balancer(app: &App, caller: &Caller, request: CreateBalancer) -> ApiResult<Value> {
    const COMMAND: &str = "createLoadBalancerRule";
    let payload = Payload::new(
        Outcome::Rule {
            id: RuleId::from(0),
            object: "loadbalancer".into(),
        },
        "LB.CREATE",
        format!("creating load balancer rule on {}", request.ip.address),
        "Failed to create load balancer rule",
    );
    let open = request.open_firewall;
    firewall::create_rule(app, caller, COMMAND, request.rule(), open, payload).await
}

/// deleteLoadBalancerRule: the rule, its members, its policies and the firewall rule it opened
/// go to Revoke together.
pub(crate) async fn delete(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let lb = lb_param(app, caller, p, "id").await?;
    firewall::revoke(
        app,
        caller,
        "deleteLoadBalancerRule",
        &lb,
        "Failed to delete load balancer",
    )
    .await
}

/// updateLoadBalancerRule. A new name, description or display flag changes nothing on the
/// router: the job ends at once. A new algorithm, protocol or source list goes to the router on
/// its own generation, and comes back out if the router refuses it.
pub(crate) async fn update(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    const COMMAND: &str = "updateLoadBalancerRule";
    let lb = lb_param(app, caller, p, "id").await?;
    super::super::refuse_custom_id(p, &lb.uuid)?;
    not_revoked(&lb)?;
    let name = p.str("name").filter(|s| !s.is_empty());
    let description = p.str("description");
    let algorithm = match p.str("algorithm").filter(|s| !s.is_empty()) {
        Some(a) => checks::algorithm(a)?,
        None => lb.algorithm.clone().unwrap_or_else(|| "roundrobin".into()),
    };
    let lb_protocol = match p.str("protocol").filter(|s| !s.is_empty()) {
        Some(proto) => checks::lb_protocol(Some(proto))?,
        None => lb.lb_protocol.clone().unwrap_or_else(|| "tcp".into()),
    };
    let sources = match p.list("cidrlist") {
        Some(l) => checks::join_cidrs(&checks::cidr_list("cidrlist", &l)?),
        None => lb.source_cidrs.join(","),
    };
    let changed = Some(&algorithm) != lb.algorithm.as_ref()
        || Some(&lb_protocol) != lb.lb_protocol.as_ref()
        || sources != lb.source_cidrs.join(",");
    if !changed {
        return firewall::metadata_update(
            app,
            caller,
            p,
            COMMAND,
            &lb,
            "loadbalancer",
            Some((name, description)),
        )
        .await;
    }
    let network = lb.network_id;
    let mut change = app.db.change(Some(network)).await.map_err(store_error)?;
    change.lock_network().await.map_err(store_error)?;
    firewall::refuse_if_in_flight(change.conn(), &lb).await?;
    let mut payload = Payload::new(
        Outcome::Rule {
            id: lb.id,
            object: "loadbalancer".into(),
        },
        firewall::event_type(COMMAND),
        format!("updating load balancer rule {}", lb.uuid),
        "Failed to update load balancer rule",
    );
    // The name and description stay as given even if the router refuses the rest: they are
    // not router state.
    payload.undo = Some(Undo {
        rule_id: lb.id,
        algorithm: lb.algorithm.clone(),
        source_cidrs: lb.source_cidrs.join(","),
        vm_id: lb.vm_id,
        vm_ip: lb.vm_ip.map(|ip| ip.to_string()),
        private_start: lb.private_start,
        private_end: lb.private_end,
    });
    let description_text = format!("{COMMAND} for rule {}", lb.uuid);
    let (job_id, job_uuid) = change
        .job(
            caller,
            NewJob {
                command: COMMAND,
                kind: Kind::Update,
                network_id: Some(network),
                payload,
                instance_type: Some("FirewallRule"),
                instance_uuid: Some(&lb.uuid),
            },
            Some(Scheduled {
                event_type: firewall::event_type(COMMAND),
                description: &description_text,
                resource_uuid: Some(&lb.uuid),
            }),
        )
        .await
        .map_err(store_error)?;
    // Marked with the update's job, so that the network's worker reads the new values.
    store::balancers::update(
        change.conn(),
        lb.id,
        &BalancerUpdate {
            algorithm: &algorithm,
            lb_protocol: &lb_protocol,
            sources: &sources,
            name: name.or(lb.name.as_deref()),
            description: description.or(lb.description.as_deref()),
            display: p.bool("fordisplay").unwrap_or(lb.display),
        },
        job_id,
    )
    .await
    .map_err(store_error)?;
    let receipt = change.commit().await.map_err(store_error)?;
    app.doorbell.ring(receipt);
    Ok(queued(&job_uuid))
}
