//! Port forwarding: createPortForwardingRule, deletePortForwardingRule,
//! listPortForwardingRules and updatePortForwardingRule.

use std::net::Ipv4Addr;

use api_types::error::ApiError;
use api_types::params::Params;
use domain::actor::Caller;
use domain::checks::{self, Candidate};
use domain::ids::{NetworkId, RuleId, VmId};
use domain::job::{Kind, NewJob, Outcome, Payload, Undo};
use domain::model::{NewRule, Purpose, Rule, State};
use ipnet::Ipv4Net;
use serde_json::Value;
use store::rules::forwards::ForwardChange;

use super::super::{network_by_id, queued, required, rule_param, unknown};
use super::list::list_rules;
use super::params::{PortRange, Protocol, RuleIp};
use super::write::{metadata_update, refuse_if_in_flight, revoke};
use crate::app::{store_error, ApiResult, App};

/// The VM a forward sends to, and the address it sends to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ForwardTarget {
    /// The VM.
    pub vm_id: VmId,
    /// Its guest address, or the secondary one `vmguestip` names.
    pub vm_ip: String,
    /// Whether that is a secondary address of the VM's NIC (checked again under the
    /// network's lock when the rule is written, since one may be removed meanwhile).
    pub secondary: Option<(VmId, Ipv4Addr)>,
}

/// createPortForwardingRule's parameters, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CreatePortForwardingRule {
    /// The public IP the forward listens on.
    pub ip: RuleIp,
    /// tcp or udp.
    pub protocol: Protocol,
    /// The public ports.
    pub public: PortRange,
    /// The private ports, as many as the public ones.
    pub private: PortRange,
    /// Where to.
    pub target: ForwardTarget,
    /// Who may come in; anyone when none is given.
    pub sources: Vec<Ipv4Net>,
    /// `fordisplay`.
    pub display: bool,
    /// Open a firewall rule for the public ports too (`openfirewall`).
    pub open_firewall: bool,
}

impl CreatePortForwardingRule {
    /// Every parameter check of the command, in CloudStack's order: the IP, the network if
    /// named, the protocol, the public then the private ports, the ranges together, the
    /// target VM and its address, the sources.
    ///
    /// # Errors
    /// 431 for a parameter CloudStack refuses; 530 when the database fails.
    pub(crate) async fn parse(
        app: &App,
        caller: &Caller,
        p: &Params,
    ) -> ApiResult<CreatePortForwardingRule> {
        let ip = RuleIp::parse(app, caller, p, "ipaddressid").await?;
        // Every address here is associated already, so `networkid` adds nothing; an id naming
        // no network the caller may see is still refused as CloudStack refuses an unknown id.
        if p.str("networkid").is_some_and(|s| !s.is_empty()) {
            super::super::network_param(app, caller, p, "networkid").await?;
        }
        let protocol = Protocol::parse(p, &[Protocol::Tcp, Protocol::Udp], &app.site.zone_name)?;
        let public = PortRange::parse(p, "publicport", "publicendport")?
            .ok_or_else(|| ApiError::missing_parameter(p.spec().name, "publicport"))?;
        let private = PortRange::parse(p, "privateport", "privateendport")?
            .ok_or_else(|| ApiError::missing_parameter(p.spec().name, "privateport"))?;
        check_forward_ranges(public.pair(), private.pair())?;
        let target = forward_target(app, caller, p, ip.network, &ip.network_uuid).await?;
        let sources = checks::cidr_list("cidrlist", &p.list("cidrlist").unwrap_or_default())?;
        Ok(CreatePortForwardingRule {
            ip,
            protocol,
            public,
            private,
            target,
            sources,
            display: p.bool("fordisplay").unwrap_or(true),
            open_firewall: p.bool("openfirewall").unwrap_or(true),
        })
    }

    /// The rule to write.
    fn rule(&self) -> NewRule {
        NewRule {
            uuid: uuid::Uuid::new_v4().to_string(),
            purpose: Purpose::PortForwarding,
            traffic: None,
            network_id: self.ip.network,
            ip_id: Some(self.ip.ip),
            account_id: self.ip.account,
            protocol: self.protocol.as_str().to_string(),
            ports: Some(self.public.pair()),
            icmp: None,
            sources: self.sources.clone(),
            dests: Vec::new(),
            related_id: None,
            display: self.display,
            vm_id: Some(self.target.vm_id),
            vm_ip: Some(self.target.vm_ip.clone()),
            private: Some(self.private.pair()),
            name: None,
            description: None,
            algorithm: None,
            lb_protocol: None,
        }
    }
}

/// createPortForwardingRule.
pub(crate) async fn create_forward(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let create = CreatePortForwardingRule::parse(app, caller, p).await?;
    let payload = Payload::new(
        Outcome::Rule {
            id: RuleId::from(0),
            object: "portforwardingrule".into(),
        },
        "NET.RULEADD",
        format!("creating port forwarding rule on {}", create.ip.address),
        "Failed to apply port forwarding rule",
    );
    super::group::submit(
        app,
        super::group::Creation {
            caller: caller.clone(),
            command: "createPortForwardingRule",
            rule: create.rule(),
            open_firewall: create.open_firewall,
            payload,
            secondary: create.target.secondary,
        },
    )
    .await
}

/// CloudStack's range rules: private start ≤ end (checked by the parser), both ranges the same
/// size, and a real range is not shifted (public equals private).
pub(crate) fn check_forward_ranges(public: (i64, i64), private: (i64, i64)) -> ApiResult<()> {
    if public.1 - public.0 != private.1 - private.0 {
        return Err(ApiError::invalid_parameter(
            "Private port range and public port range must be of the same size",
        ));
    }
    if public.0 != public.1 && public != private {
        return Err(ApiError::invalid_parameter(
            "Port ranges can only be forwarded to the same ports: public start must equal private start and public end must equal private end",
        ));
    }
    Ok(())
}

/// The VM and address a forward sends to: a VM of the rule's network, and its address
/// (`vmguestip`, when given, must be that address or a secondary address of its NIC).
async fn forward_target(
    app: &App,
    caller: &Caller,
    p: &Params,
    network: NetworkId,
    network_uuid: &str,
) -> ApiResult<ForwardTarget> {
    let vm_uuid = required(p, "virtualmachineid")?;
    let vm = store::rules::forwards::forward_vm(&app.db, vm_uuid)
        .await
        .map_err(store_error)?
        .ok_or_else(|| unknown(p, "virtualmachineid"))?;
    if !caller.may_touch(vm.account_id) {
        return Err(unknown(p, "virtualmachineid"));
    }
    if vm.network_id != network.get() {
        return Err(ApiError::invalid_parameter(format!(
            "Unable to create port forwarding rule: vm {vm_uuid} has no nic in network \
             {network_uuid}"
        )));
    }
    let vm_id = VmId::from(vm.id);
    let guest_ip = p.str("vmguestip").filter(|g| !g.is_empty() && *g != vm.ip);
    let Some(g) = guest_ip else {
        return Ok(ForwardTarget {
            vm_id,
            vm_ip: vm.ip,
            secondary: None,
        });
    };
    let secondary = crate::cmd::infra::secondary_address(app, vm_id, g)
        .await?
        .ok_or_else(|| {
            ApiError::invalid_parameter(format!(
                "Invalid vm guest ip {g}: it is neither the address of vm {vm_uuid} ({}) nor \
                 a secondary address of its nic",
                vm.ip
            ))
        })?;
    Ok(ForwardTarget {
        vm_id,
        vm_ip: secondary.to_string(),
        secondary: Some((vm_id, secondary)),
    })
}

/// deletePortForwardingRule.
pub(crate) async fn delete_forward(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let rule = rule_param(app, caller, p, "id").await?;
    if rule.purpose != Purpose::PortForwarding {
        return Err(unknown(p, "id"));
    }
    revoke(
        app,
        caller,
        "deletePortForwardingRule",
        &rule,
        "Failed to delete port forwarding rule",
    )
    .await
}

/// listPortForwardingRules.
pub(crate) async fn list_forwards(app: &App, caller: &Caller, p: &Params) -> ApiResult<String> {
    list_rules(
        app,
        caller,
        p,
        Purpose::PortForwarding,
        None,
        "portforwardingrule",
    )
    .await
}

/// updatePortForwardingRule's parameters, checked against the rule they change: what the
/// rule becomes.
#[derive(Debug, Clone)]
pub(crate) struct UpdatePortForwardingRule {
    /// The rule as it is.
    pub rule: Rule,
    /// Its public ports.
    pub public: (i64, i64),
    /// Its private ports as they are.
    pub old_private: (i64, i64),
    /// Its new values.
    pub change: ForwardChange,
    /// The secondary address of the new target's NIC it is to send to, if it is one.
    pub secondary: Option<(VmId, Ipv4Addr)>,
}

impl UpdatePortForwardingRule {
    /// Every parameter check of the command, in CloudStack's order: the rule (found, a
    /// forward, not being deleted), the private ports and the ranges together, the target VM
    /// and its address, the sources.
    ///
    /// # Errors
    /// 431 for a parameter CloudStack refuses; 530 when the database fails.
    pub(crate) async fn parse(
        app: &App,
        caller: &Caller,
        p: &Params,
    ) -> ApiResult<UpdatePortForwardingRule> {
        let rule = rule_param(app, caller, p, "id").await?;
        if rule.purpose != Purpose::PortForwarding {
            return Err(unknown(p, "id"));
        }
        super::super::refuse_custom_id(p, &rule.uuid)?;
        if rule.state == State::Revoke {
            return Err(ApiError::invalid_parameter(format!(
                "Unable to update the rule {}: it is being deleted",
                rule.uuid
            )));
        }
        let net = network_by_id(app, rule.network_id).await?;
        let public = (
            rule.start_port.unwrap_or(0),
            rule.end_port.unwrap_or(rule.start_port.unwrap_or(0)),
        );
        let old_private = (
            rule.private_start.unwrap_or(0),
            rule.private_end.unwrap_or(0),
        );
        let private = match (p.int("privateport"), p.int("privateendport")) {
            (None, None) => old_private,
            (Some(s), e) => checks::port_range("privateport", Some(s), "privateendport", e)?
                .unwrap_or(old_private),
            (None, Some(_)) => {
                return Err(ApiError::invalid_parameter(
                    "privateendport needs privateport",
                ))
            }
        };
        check_forward_ranges(public, private)?;
        let mut secondary = None;
        let (vm_id, vm_ip) = if p.str("virtualmachineid").is_some() {
            let target = forward_target(app, caller, p, net.id, &net.uuid).await?;
            secondary = target.secondary;
            (Some(target.vm_id), Some(target.vm_ip))
        } else {
            if p.str("vmguestip").is_some() {
                return Err(ApiError::invalid_parameter(
                    "vmguestip needs virtualmachineid",
                ));
            }
            (rule.vm_id, rule.vm_ip.map(|ip| ip.to_string()))
        };
        let sources = match p.list("cidrlist") {
            Some(l) => checks::cidr_list("cidrlist", &l)?,
            None => rule
                .source_cidrs
                .iter()
                .filter_map(|s| s.parse().ok())
                .collect(),
        };
        let display = p.bool("fordisplay").unwrap_or(rule.display);
        Ok(UpdatePortForwardingRule {
            rule,
            public,
            old_private,
            change: ForwardChange {
                private,
                vm_id,
                vm_ip,
                sources,
                display,
            },
            secondary,
        })
    }

    /// Whether anything a router holds changes (else only what the rule shows does).
    fn changes_router_state(&self) -> bool {
        let (rule, c) = (&self.rule, &self.change);
        c.private != self.old_private
            || c.vm_id != rule.vm_id
            || c.vm_ip != rule.vm_ip.map(|ip| ip.to_string())
            || checks::join_cidrs(&c.sources) != rule.source_cidrs.join(",")
    }
}

/// updatePortForwardingRule: a new target or private ports go to the router on their own
/// generation; if the router refuses, the old values come back.
pub(crate) async fn update_forward(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let update = UpdatePortForwardingRule::parse(app, caller, p).await?;
    let rule = &update.rule;
    if !update.changes_router_state() {
        return metadata_update(
            app,
            caller,
            p,
            "updatePortForwardingRule",
            rule,
            "portforwardingrule",
            None,
        )
        .await;
    }
    // The new values must not clash with the other forwards of the IP.
    let network = rule.network_id;
    let mut change = app.db.change(Some(network)).await.map_err(store_error)?;
    change.lock_network().await.map_err(store_error)?;
    refuse_if_in_flight(change.conn(), rule).await?;
    if let Some((vm, ip)) = update.secondary {
        crate::cmd::infra::still_held(&mut change, vm, ip).await?;
    }
    if let Some(ip_id) = rule.ip_id {
        let mut me = Candidate::of(rule);
        me.sources = update.change.sources.clone();
        let others = store::rules::ip_neighbours(change.conn(), ip_id, Some(update.public))
            .await
            .map_err(store_error)?;
        let others: Vec<Candidate> = others.into_iter().filter(|c| c.uuid != rule.uuid).collect();
        checks::conflicts(&me, &others)?;
    }
    let undo = Undo {
        rule_id: rule.id,
        algorithm: rule.algorithm.clone(),
        source_cidrs: rule.source_cidrs.join(","),
        vm_id: rule.vm_id,
        vm_ip: rule.vm_ip.map(|ip| ip.to_string()),
        private_start: rule.private_start,
        private_end: rule.private_end,
    };
    let mut pl = Payload::new(
        Outcome::Rule {
            id: rule.id,
            object: "portforwardingrule".into(),
        },
        "NET.RULEMODIFY",
        format!("updating port forwarding rule {}", rule.uuid),
        "Failed to apply the new port forwarding rule",
    );
    pl.undo = Some(undo);
    // CloudStack records no scheduled event for this command.
    let (job_id, job_uuid) = change
        .job(
            caller,
            NewJob {
                command: "updatePortForwardingRule",
                kind: Kind::Update,
                network_id: Some(network),
                payload: pl,
                instance_type: Some("FirewallRule"),
                instance_uuid: Some(&rule.uuid),
            },
            None,
        )
        .await
        .map_err(store_error)?;
    // The row carries the update's job, as every write a router sees does.
    let dialect = change.dialect();
    store::rules::forwards::set_forward(change.conn(), dialect, rule.id, &update.change, job_id)
        .await
        .map_err(store_error)?;
    let receipt = change.commit().await.map_err(store_error)?;
    app.doorbell.ring(receipt);
    Ok(queued(&job_uuid))
}

#[cfg(test)]
mod tests;
