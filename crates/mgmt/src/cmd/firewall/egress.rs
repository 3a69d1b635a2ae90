//! createEgressFirewallRule: what a network's guests may reach.

use api_types::error::ApiError;
use api_types::params::Params;
use domain::actor::Caller;
use domain::checks;
use domain::ids::{AccountId, NetworkId, RuleId};
use domain::job::{Outcome, Payload};
use domain::model::{NewRule, Purpose, Traffic};
use ipnet::Ipv4Net;
use serde_json::Value;

use super::params::{L4Match, Protocol};
use super::write::create_rule;
use crate::app::{ApiResult, App};

/// createEgressFirewallRule's parameters, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CreateEgressFirewallRule {
    /// The network whose guests the rule lets out.
    pub network: NetworkId,
    /// The network's uuid.
    pub network_uuid: String,
    /// The network's owner, who owns the rule.
    pub account: AccountId,
    /// tcp, udp, icmp or all.
    pub protocol: Protocol,
    /// Ports or ICMP match.
    pub l4: L4Match,
    /// Which guests: inside the guest CIDR (all of it when none is given).
    pub sources: Vec<Ipv4Net>,
    /// Where to (anywhere when none is given).
    pub dests: Vec<Ipv4Net>,
    /// `fordisplay`.
    pub display: bool,
}

impl CreateEgressFirewallRule {
    /// Every parameter check of the command, in CloudStack's order: the network, the
    /// protocol, the ports or ICMP match, the sources, the destinations.
    ///
    /// # Errors
    /// 431 for a parameter CloudStack refuses; 530 when the database fails.
    pub(crate) async fn parse(
        app: &App,
        caller: &Caller,
        p: &Params,
    ) -> ApiResult<CreateEgressFirewallRule> {
        let net = super::super::network_param(app, caller, p, "networkid").await?;
        let protocol = Protocol::parse(
            p,
            &[Protocol::Tcp, Protocol::Udp, Protocol::Icmp, Protocol::All],
            &app.site.zone_name,
        )?;
        let l4 = L4Match::parse(p, protocol)?;
        let sources = egress_sources(&p.list("cidrlist").unwrap_or_default(), net.cidr)?;
        let dests = checks::cidr_list("destcidrlist", &p.list("destcidrlist").unwrap_or_default())?;
        Ok(CreateEgressFirewallRule {
            network: net.id,
            network_uuid: net.uuid,
            account: net.account_id,
            protocol,
            l4,
            sources,
            dests,
            display: p.bool("fordisplay").unwrap_or(true),
        })
    }

    /// The rule to write.
    fn rule(&self) -> NewRule {
        NewRule {
            uuid: uuid::Uuid::new_v4().to_string(),
            purpose: Purpose::Firewall,
            traffic: Some(Traffic::Egress),
            network_id: self.network,
            ip_id: None,
            account_id: self.account,
            protocol: self.protocol.as_str().to_string(),
            ports: self.l4.ports(),
            icmp: self.l4.icmp(),
            sources: self.sources.clone(),
            dests: self.dests.clone(),
            related_id: None,
            display: self.display,
            vm_id: None,
            vm_ip: None,
            private: None,
            name: None,
            description: None,
            algorithm: None,
            lb_protocol: None,
        }
    }
}

/// An egress rule's sources: inside the guest CIDR, `0.0.0.0/0` meaning the guest CIDR (as
/// CloudStack rewrites it), none meaning the guest CIDR.
pub(crate) fn egress_sources(list: &[String], guest: Ipv4Net) -> ApiResult<Vec<Ipv4Net>> {
    let mut sources = Vec::new();
    for s in checks::cidr_list("cidrlist", list)? {
        let s = if s == Ipv4Net::default() { guest } else { s };
        if !guest.contains(&s) {
            return Err(ApiError::invalid_parameter(format!(
                "Source cidr {s} is not within the guest CIDR {guest}"
            )));
        }
        if !sources.contains(&s) {
            sources.push(s);
        }
    }
    if sources.is_empty() {
        sources.push(guest);
    }
    Ok(sources)
}

/// createEgressFirewallRule.
pub(crate) async fn create_egress(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let create = CreateEgressFirewallRule::parse(app, caller, p).await?;
    let payload = Payload::new(
        Outcome::Rule {
            id: RuleId::from(0),
            object: "firewallrule".into(),
        },
        "FIREWALL.EGRESS.OPEN",
        format!(
            "creating egress firewall rule on network {}",
            create.network_uuid
        ),
        "Failed to create firewall rule",
    );
    create_rule(
        app,
        caller,
        "createEgressFirewallRule",
        create.rule(),
        false,
        payload,
    )
    .await
}
