//! Async jobs: what a job does when the runner takes it, what it answers once it ends, what
//! it undoes if the router refuses it, and its status.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::{IpId, NetworkId, RuleId, VmId};
use crate::model::PolicyKind;
use crate::UnknownValue;

/// A job's status, as CloudStack numbers it (0, 1, 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    /// Waiting for the runner or the router.
    Pending,
    /// Ended well.
    Succeeded,
    /// Ended badly.
    Failed,
}

impl JobStatus {
    /// Its stored and API number.
    pub fn code(self) -> i64 {
        match self {
            JobStatus::Pending => 0,
            JobStatus::Succeeded => 1,
            JobStatus::Failed => 2,
        }
    }
}

impl TryFrom<i64> for JobStatus {
    type Error = UnknownValue;

    fn try_from(n: i64) -> Result<JobStatus, UnknownValue> {
        match n {
            0 => Ok(JobStatus::Pending),
            1 => Ok(JobStatus::Succeeded),
            2 => Ok(JobStatus::Failed),
            _ => Err(UnknownValue::new("job status", &n.to_string())),
        }
    }
}

/// What a job does when the runner takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Rows changed by the request (rules, members, policies, IPs) go to the router together
    /// with other jobs of the network.
    Change,
    /// A change that rewrites rows in place: goes to the router on its own, and is undone from
    /// the payload if the router refuses it.
    Update,
    /// Make a VM (lab namespace) and wire it.
    DeployVm,
    /// Revoke a VM's rules and memberships, then remove it.
    DestroyVm,
    /// Revoke everything of a network, then remove its router.
    DeleteNetwork,
    /// Send the router its whole config again (restartNetwork), first making it again from
    /// nothing when the payload says `rebuild`.
    RestartNetwork,
    /// Stop the network's router (stopRouter); startRouter is a [`Kind::RestartNetwork`] that
    /// rebuilds it.
    StopRouter,
}

/// What the job's result is built from once it succeeds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Outcome {
    /// `{"success": true}`.
    Success,
    /// A rule, shown under `object` (`firewallrule`, `portforwardingrule`, `loadbalancer`).
    Rule {
        /// The rule's id.
        id: RuleId,
        /// The object name.
        object: String,
    },
    /// A rule a create command wrote, by uuid (the job is written before the rule).
    Created {
        /// The rule's uuid.
        uuid: String,
        /// The object name.
        object: String,
    },
    /// A stickiness or health-check policy set of a balancer.
    Policy {
        /// The balancer's id.
        lb_id: RuleId,
        /// Which of its policies.
        kind: PolicyKind,
    },
    /// A public IP.
    Ip {
        /// Its id.
        id: IpId,
    },
    /// A VM.
    Vm {
        /// Its id.
        id: VmId,
    },
    /// A network's router, as listRouters shows it once the job ended.
    Router {
        /// The router's network.
        network: NetworkId,
    },
    /// A fixed object, e.g. a destroyed VM as it was.
    Fixed {
        /// The result.
        value: Value,
    },
}

/// The job's payload column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    /// What to answer on success.
    pub outcome: Outcome,
    /// The event type recorded on completion.
    pub event: String,
    /// Words for the event.
    pub what: String,
    /// CloudStack's failure text for this command (`Failed to create firewall rule`).
    pub failure: String,
    /// The VM a [`Kind::DestroyVm`] job removes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<VmId>,
    /// For [`Kind::Update`]: SQL column values to restore if the router refuses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo: Option<Undo>,
    /// For [`Kind::RestartNetwork`]: make the router again from nothing first.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rebuild: bool,
}

impl Payload {
    /// A payload with no VM to remove and nothing to undo.
    pub fn new(outcome: Outcome, event: &str, what: String, failure: &str) -> Payload {
        Payload {
            outcome,
            event: event.to_string(),
            what,
            failure: failure.to_string(),
            target: None,
            undo: None,
            rebuild: false,
        }
    }
}

/// Values to put back into one rule row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Undo {
    /// The rule.
    pub rule_id: RuleId,
    /// Algorithm before.
    pub algorithm: Option<String>,
    /// Source CIDRs before.
    pub source_cidrs: String,
    /// Forward target before.
    pub vm_id: Option<VmId>,
    /// Forward target address before.
    pub vm_ip: Option<String>,
    /// Private range before.
    pub private_start: Option<i64>,
    /// Private range end before.
    pub private_end: Option<i64>,
}

/// The full Java class name CloudStack reports as a job's `cmd`.
pub fn cmd_class(command: &str) -> String {
    // Classes whose names are not the command's.
    match command {
        "addIpToNic" => return "org.apache.cloudstack.api.command.user.vm.AddIpToVmNicCmd".into(),
        "removeIpFromNic" => {
            return "org.apache.cloudstack.api.command.user.vm.RemoveIpFromVmNicCmd".into()
        }
        _ => {}
    }
    let pkg = match command {
        c if c.contains("EgressFirewall") || c.contains("FirewallRule") => "user.firewall",
        c if c.contains("PortForwarding") => "user.firewall",
        c if c.contains("LoadBalancer") || c.contains("LBStickiness") || c.contains("LBHealth") => {
            "user.loadbalancer"
        }
        "associateIpAddress" | "disassociateIpAddress" => "user.address",
        "deployVirtualMachine" | "destroyVirtualMachine" => "user.vm",
        "deleteNetwork" | "restartNetwork" | "updateNetwork" => "user.network",
        "enableStaticNat"
        | "disableStaticNat"
        | "createIpForwardingRule"
        | "deleteIpForwardingRule" => "user.nat",
        "createTags" | "deleteTags" => "user.tag",
        "rebootRouter" | "startRouter" | "stopRouter" => "admin.router",
        _ => "user",
    };
    let mut class = String::new();
    let mut chars = command.chars();
    if let Some(c) = chars.next() {
        class.extend(c.to_uppercase());
    }
    class.extend(chars);
    let class = class.replace("IpAddress", "IPAddr");
    format!("org.apache.cloudstack.api.command.{pkg}.{class}Cmd")
}

/// A new job, written in the caller's transaction.
pub struct NewJob<'a> {
    /// The API command.
    pub command: &'a str,
    /// What the runner does with it.
    pub kind: Kind,
    /// The network whose router it changes.
    pub network_id: Option<NetworkId>,
    /// Payload.
    pub payload: Payload,
    /// `jobinstancetype`, e.g. `FirewallRule`.
    pub instance_type: Option<&'a str>,
    /// `jobinstanceid`.
    pub instance_uuid: Option<&'a str>,
}

impl Kind {
    /// Its database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Change => "change",
            Kind::Update => "update",
            Kind::DeployVm => "deploy_vm",
            Kind::DestroyVm => "destroy_vm",
            Kind::DeleteNetwork => "delete_network",
            Kind::RestartNetwork => "restart_network",
            Kind::StopRouter => "stop_router",
        }
    }
}

impl std::str::FromStr for Kind {
    type Err = UnknownValue;

    /// From its database spelling.
    fn from_str(s: &str) -> Result<Kind, UnknownValue> {
        match s {
            "change" => Ok(Kind::Change),
            "update" => Ok(Kind::Update),
            "deploy_vm" => Ok(Kind::DeployVm),
            "destroy_vm" => Ok(Kind::DestroyVm),
            "delete_network" => Ok(Kind::DeleteNetwork),
            "restart_network" => Ok(Kind::RestartNetwork),
            "stop_router" => Ok(Kind::StopRouter),
            _ => Err(UnknownValue::new("job kind", s)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_kind_or_status_is_an_error_not_a_default() {
        for k in [
            Kind::Change,
            Kind::Update,
            Kind::DeployVm,
            Kind::DestroyVm,
            Kind::DeleteNetwork,
            Kind::RestartNetwork,
            Kind::StopRouter,
        ] {
            assert_eq!(k.as_str().parse::<Kind>(), Ok(k));
        }
        assert!("chnage".parse::<Kind>().is_err());
        for s in [JobStatus::Pending, JobStatus::Succeeded, JobStatus::Failed] {
            assert_eq!(JobStatus::try_from(s.code()), Ok(s));
        }
        assert!(JobStatus::try_from(3).is_err());
    }

    #[test]
    fn a_stored_payload_reads_and_writes_back_byte_for_byte() {
        // Payloads written when the ids were bare integers: the typed ids keep that text.
        let stored = [
            r#"{"outcome":{"type":"rule","id":7,"object":"firewallrule"},"event":"NET.RULEADD","what":"rule 7","failure":"Failed to create firewall rule"}"#,
            r#"{"outcome":{"type":"policy","lb_id":3,"kind":"stickiness"},"event":"LB.STICKINESSPOLICY.CREATE","what":"lb 3","failure":"Failed"}"#,
            r#"{"outcome":{"type":"ip","id":12},"event":"NET.IPASSIGN","what":"ip 12","failure":"Failed"}"#,
            r#"{"outcome":{"type":"vm","id":5},"event":"VM.DESTROY","what":"vm 5","failure":"Failed","target":5}"#,
            r#"{"outcome":{"type":"rule","id":9,"object":"portforwardingrule"},"event":"NET.RULEMODIFY","what":"rule 9","failure":"Failed","undo":{"rule_id":9,"algorithm":null,"source_cidrs":"0.0.0.0/0","vm_id":4,"vm_ip":"10.1.1.4","private_start":22,"private_end":22}}"#,
        ];
        for text in stored {
            let payload: Payload = serde_json::from_str(text).unwrap();
            assert_eq!(serde_json::to_string(&payload).unwrap(), text);
        }
        let payload: Payload = serde_json::from_str(stored[4]).unwrap();
        assert_eq!(
            payload.outcome,
            Outcome::Rule {
                id: RuleId::from(9),
                object: "portforwardingrule".into()
            }
        );
        assert_eq!(payload.undo.map(|u| u.vm_id), Some(Some(VmId::from(4))));
    }
}
