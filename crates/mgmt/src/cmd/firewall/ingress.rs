//! createFirewallRule: an ingress rule on a public IP.

use api_types::params::Params;
use domain::actor::Caller;
use domain::checks;
use domain::ids::RuleId;
use domain::job::{Outcome, Payload};
use domain::model::{NewRule, Purpose, Traffic};
use ipnet::Ipv4Net;
use serde_json::Value;

use super::params::{L4Match, Protocol, RuleIp};
use super::write::create_rule;
use crate::app::{ApiResult, App};

/// createFirewallRule's parameters, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CreateFirewallRule {
    /// The public IP the rule opens.
    pub ip: RuleIp,
    /// tcp, udp or icmp.
    pub protocol: Protocol,
    /// Ports or ICMP match.
    pub l4: L4Match,
    /// Who may come in; `0.0.0.0/0` when none is given.
    pub sources: Vec<Ipv4Net>,
    /// `fordisplay`.
    pub display: bool,
}

impl CreateFirewallRule {
    /// Every parameter check of the command, in CloudStack's order: the IP (found, the
    /// caller's, associated), the protocol, the ports or ICMP match, the sources.
    ///
    /// # Errors
    /// 431 for a parameter CloudStack refuses; 530 when the database fails.
    pub(crate) async fn parse(
        app: &App,
        caller: &Caller,
        p: &Params,
    ) -> ApiResult<CreateFirewallRule> {
        let ip = RuleIp::parse(app, caller, p, "ipaddressid").await?;
        let protocol = Protocol::parse(
            p,
            &[Protocol::Tcp, Protocol::Udp, Protocol::Icmp],
            &app.site.zone_name,
        )?;
        let l4 = L4Match::parse(p, protocol)?;
        let mut sources = checks::cidr_list("cidrlist", &p.list("cidrlist").unwrap_or_default())?;
        if sources.is_empty() {
            sources.push(Ipv4Net::default());
        }
        Ok(CreateFirewallRule {
            ip,
            protocol,
            l4,
            sources,
            display: p.bool("fordisplay").unwrap_or(true),
        })
    }

    /// The rule to write.
    fn rule(&self) -> NewRule {
        NewRule {
            uuid: uuid::Uuid::new_v4().to_string(),
            purpose: Purpose::Firewall,
            traffic: Some(Traffic::Ingress),
            network_id: self.ip.network,
            ip_id: Some(self.ip.ip),
            account_id: self.ip.account,
            protocol: self.protocol.as_str().to_string(),
            ports: self.l4.ports(),
            icmp: self.l4.icmp(),
            sources: self.sources.clone(),
            dests: Vec::new(),
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

/// createFirewallRule.
pub(crate) async fn create_ingress(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let create = CreateFirewallRule::parse(app, caller, p).await?;
    let payload = Payload::new(
        Outcome::Rule {
            id: RuleId::from(0),
            object: "firewallrule".into(),
        },
        "FIREWALL.OPEN",
        format!("creating firewall rule on {}", create.ip.address),
        "Failed to create firewall rule",
    );
    create_rule(
        app,
        caller,
        "createFirewallRule",
        create.rule(),
        false,
        payload,
    )
    .await
}
