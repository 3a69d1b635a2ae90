//! Static NAT: enableStaticNat, disableStaticNat, and the IP forwarding rules of a static-NAT
//! address (createIpForwardingRule, deleteIpForwardingRule, listIpForwardingRules).
//!
//! A static NAT lives on its public IP's row and reaches the router as part of the public
//! side: the router sends every new connection to the address (once the ingress firewall
//! admits it) to the VM, and the VM's own traffic leaves from the address. An IP forwarding
//! rule changes nothing on the router by itself (every port goes to the VM already); what it
//! opens is its related firewall rule, as on CloudStack.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use api_types::error::{ApiError, ApiErrorCode};
use api_types::params::Params;
use domain::actor::Caller;
use domain::ids::{RuleId, VmId};
use domain::job::{JobStatus, Kind, NewJob, Outcome, Payload};
use domain::model::{NewRule, Purpose, State};
use serde_json::{json, Value};
use store::Scheduled;

use super::super::{network_param, queued, required, rule_param, unknown};
use super::list::list_rules;
use super::params::{PortRange, Protocol, RuleIp};
use super::write::{create_rule, revoke};
use crate::app::{store_error, ApiResult, App};

/// How long enableStaticNat, a synchronous command, waits for the router to enforce the
/// static NAT before it answers that the job goes on without it.
const ENABLE_WAIT: Duration = Duration::from_secs(60);

/// enableStaticNat's parameters, checked (what can be checked before the network's lock).
#[derive(Debug, Clone)]
struct EnableStaticNat {
    ip: RuleIp,
    vm_id: VmId,
    vm_uuid: String,
    vm_ip: Ipv4Addr,
    /// Whether `vm_ip` is a secondary address of the VM's NIC (checked again under the lock).
    secondary: bool,
}

impl EnableStaticNat {
    async fn parse(app: &App, caller: &Caller, p: &Params) -> ApiResult<EnableStaticNat> {
        let ip = RuleIp::parse(app, caller, p, "ipaddressid").await?;
        if p.str("networkid").is_some_and(|s| !s.is_empty()) {
            let net = network_param(app, caller, p, "networkid").await?;
            if net.id != ip.network {
                return Err(ApiError::invalid_parameter(format!(
                    "Invalid network id {}: ip address {} is associated with network {}",
                    net.uuid, ip.address, ip.network_uuid
                )));
            }
        }
        let vm_uuid = required(p, "virtualmachineid")?;
        let vm = store::vms::by_uuid(&app.db, vm_uuid)
            .await
            .map_err(store_error)?
            .ok_or_else(|| unknown(p, "virtualmachineid"))?;
        if !caller.may_touch(domain::ids::AccountId::from(vm.account_id)) {
            return Err(unknown(p, "virtualmachineid"));
        }
        if vm.state == "Expunging" || vm.state == "Destroyed" {
            return Err(ApiError::invalid_parameter(format!(
                "Invalid user vm {vm_uuid}: it is being destroyed"
            )));
        }
        if ip.account.get() != vm.account_id {
            return Err(ApiError::invalid_parameter(format!(
                "Unable to enable static nat: ip address {} and vm {vm_uuid} belong to \
                 different accounts",
                ip.address
            )));
        }
        if vm.network_id != ip.network {
            return Err(ApiError::invalid_parameter(format!(
                "Vm {vm_uuid} doesn't belong to network {} of ip address {}",
                ip.network_uuid, ip.address
            )));
        }
        let mut vm_ip = vm.ip;
        let mut secondary = false;
        if let Some(g) = p.str("vmguestip").filter(|g| !g.is_empty()) {
            if g.parse::<Ipv4Addr>().ok() != Some(vm.ip) {
                vm_ip = crate::cmd::infra::secondary_address(app, vm.id, g)
                    .await?
                    .ok_or_else(|| {
                        ApiError::invalid_parameter(format!(
                            "VM ip {g} address not belongs to the vm {vm_uuid} (its address \
                             is {}, and its nic has no such secondary address)",
                            vm.ip
                        ))
                    })?;
                secondary = true;
            }
        }
        Ok(EnableStaticNat {
            ip,
            vm_id: vm.id,
            vm_uuid: vm_uuid.to_string(),
            vm_ip,
            secondary,
        })
    }
}

/// enableStaticNat: synchronous, as on CloudStack. The static NAT is written with a job under
/// the network's lock, after CloudStack's checks against what the lock holds still; the answer
/// comes once the router enforces it (or the job failed, and nothing of it stays).
pub(crate) async fn enable(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let req = EnableStaticNat::parse(app, caller, p).await?;
    let network = req.ip.network;
    let mut change = app.db.change(Some(network)).await.map_err(store_error)?;
    change.lock_network().await.map_err(store_error)?;
    if req.secondary {
        crate::cmd::infra::still_held(&mut change, req.vm_id, req.vm_ip).await?;
    }
    let ip = store::static_nat::ip_in(change.conn(), req.ip.ip)
        .await
        .map_err(store_error)?
        .ok_or_else(|| unknown(p, "ipaddressid"))?;
    let address = ip.address;
    if ip.source_nat {
        return Err(ApiError::invalid_parameter(format!(
            "Can't enable static nat, ip address {address} is a sourceNat ip address"
        )));
    }
    if ip.state != "Allocated" || ip.network_id != Some(network) {
        return Err(ApiError::invalid_parameter(format!(
            "Ip address {address} is not ready for static nat yet: it is {}",
            ip.state
        )));
    }
    if let Some(nat) = &ip.nat {
        return Err(match nat.state {
            State::Revoke => ApiError::invalid_parameter(format!(
                "Unable to enable static nat for ip address {address}: its static nat is \
                 still being disabled; try again when that job ends"
            )),
            _ if nat.vm_id == req.vm_id => ApiError::rule_conflict(format!(
                "Static nat is already enabled for ip address {address} and vm {}",
                req.vm_uuid
            )),
            _ => ApiError::rule_conflict(format!(
                "Failed to enable static nat for the ip address {address} and vm {} as it's \
                 already assigned to another vm",
                req.vm_uuid
            )),
        });
    }
    let (forwards, balancers) = store::static_nat::forwards_and_balancers(change.conn(), ip.id)
        .await
        .map_err(store_error)?;
    if forwards > 0 {
        return Err(ApiError::rule_conflict(format!(
            "Failed to enable static nat for the ip address {address} as it already has \
             PortForwarding rules assigned"
        )));
    }
    if balancers > 0 {
        return Err(ApiError::rule_conflict(format!(
            "Failed to enable static nat for the ip address {address} as it already has \
             LoadBalancing rules assigned"
        )));
    }
    if let Some(other) = store::static_nat::of_vm(change.conn(), req.vm_id, req.vm_ip)
        .await
        .map_err(store_error)?
    {
        return Err(ApiError::invalid_parameter(format!(
            "Failed to enable static nat for the ip address {address} as vm {} is already \
             associated with ip address {other}",
            req.vm_uuid
        )));
    }
    let (job_id, job_uuid) = ip_job(
        &mut change,
        caller,
        "enableStaticNat",
        (network, &ip.uuid),
        &format!("enabling static nat for {address} to vm {}", req.vm_uuid),
        "Failed to enable static nat",
    )
    .await?;
    store::static_nat::enable(change.conn(), ip.id, req.vm_id, req.vm_ip, job_id)
        .await
        .map_err(store_error)?;
    let receipt = change.commit().await.map_err(store_error)?;
    app.doorbell.ring(receipt);
    wait_for(app, &job_uuid).await?;
    Ok(json!({"success": true}))
}

/// Writes the job (and its scheduled event) of a static NAT command on the IP `ip`
/// (network, IP uuid), in `change`.
async fn ip_job(
    change: &mut store::ChangeTx,
    caller: &Caller,
    command: &'static str,
    ip: (domain::ids::NetworkId, &str),
    description: &str,
    failure: &str,
) -> ApiResult<(domain::ids::JobId, String)> {
    let (network, ip_uuid) = ip;
    change
        .job(
            caller,
            NewJob {
                command,
                kind: Kind::Change,
                network_id: Some(network),
                payload: Payload::new(
                    Outcome::Success,
                    super::event_type(command),
                    description.to_string(),
                    failure,
                ),
                instance_type: Some("IpAddress"),
                instance_uuid: Some(ip_uuid),
            },
            Some(Scheduled {
                event_type: super::event_type(command),
                description,
                resource_uuid: Some(ip_uuid),
            }),
        )
        .await
        .map_err(store_error)
}

/// Waits for a job to end, polling the database (the job may end on another server of the
/// cluster), the interval growing from 10 ms to 200 ms.
///
/// # Errors
/// The job's own error when it failed; 530 naming the job when it has not ended within
/// [`ENABLE_WAIT`] (it goes on; queryAsyncJobResult follows it).
async fn wait_for(app: &App, job_uuid: &str) -> ApiResult<()> {
    let deadline = Instant::now() + ENABLE_WAIT;
    let mut pause = Duration::from_millis(10);
    loop {
        let job = store::jobs::poll(&app.db, job_uuid)
            .await
            .map_err(store_error)?;
        match job {
            Some(j) if j.status == JobStatus::Succeeded => return Ok(()),
            Some(j) if j.status == JobStatus::Failed => return Err(job_error(&j)),
            Some(_) => {}
            None => {
                return Err(ApiError::internal(format!(
                    "job {job_uuid} disappeared before it ended"
                )))
            }
        }
        if Instant::now() >= deadline {
            return Err(ApiError::new(
                ApiErrorCode::InternalError,
                None,
                format!(
                    "The router has not confirmed the change within {} s; job {job_uuid} \
                     goes on (queryAsyncJobResult follows it)",
                    ENABLE_WAIT.as_secs()
                ),
            ));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// The error a failed job recorded, as the synchronous answer gives it.
fn job_error(job: &store::jobs::JobRecord) -> ApiError {
    let result: Value = job
        .result
        .as_deref()
        .and_then(|r| serde_json::from_str(r).ok())
        .unwrap_or(Value::Null);
    let code = u16::try_from(job.result_code)
        .ok()
        .and_then(ApiErrorCode::from_code)
        .unwrap_or(ApiErrorCode::InternalError);
    let text = result["errortext"]
        .as_str()
        .unwrap_or("Failed to enable static nat")
        .to_string();
    ApiError::new(code, None, text)
}

/// disableStaticNat (async): revokes the static NAT, the address's IP forwarding rules and
/// the firewall rules they opened, with one job.
pub(crate) async fn disable(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let ip = RuleIp::parse(app, caller, p, "ipaddressid").await?;
    let network = ip.network;
    let mut change = app.db.change(Some(network)).await.map_err(store_error)?;
    change.lock_network().await.map_err(store_error)?;
    let row = store::static_nat::ip_in(change.conn(), ip.ip)
        .await
        .map_err(store_error)?
        .ok_or_else(|| unknown(p, "ipaddressid"))?;
    match row.nat.as_ref().map(|n| n.state) {
        None => {
            return Err(ApiError::invalid_parameter(format!(
                "Specified IP address {} is not associated with any vm: it has no static nat",
                ip.address
            )))
        }
        Some(State::Revoke) => {
            return Err(ApiError::invalid_parameter(format!(
                "The static nat of ip address {} is already being disabled",
                ip.address
            )))
        }
        Some(_) => {}
    }
    let (job_id, job_uuid) = ip_job(
        &mut change,
        caller,
        "disableStaticNat",
        (network, &row.uuid),
        &format!("disabling static nat for {}", ip.address),
        "Failed to disable static nat",
    )
    .await?;
    store::static_nat::disable(change.conn(), row.id, job_id)
        .await
        .map_err(store_error)?;
    let receipt = change.commit().await.map_err(store_error)?;
    app.doorbell.ring(receipt);
    Ok(queued(&job_uuid))
}

/// createIpForwardingRule (async create): a rule with purpose StaticNat on a static-NAT
/// address, and, with `openfirewall` (true by default), the firewall rule it opens. Checked
/// under the network's lock with the other rule creations: the address must have a static
/// NAT, and a rule of the same protocol must not share a port.
pub(crate) async fn create_forwarding(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    if p.str("cidrlist").is_some() {
        return Err(ApiError::invalid_parameter(
            "Parameter cidrList is deprecated; if you need to open firewall rule for the \
             specific CIDR, please refer to createFirewallRule command",
        ));
    }
    let ip = RuleIp::parse(app, caller, p, "ipaddressid").await?;
    let protocol = Protocol::parse(p, &[Protocol::Tcp, Protocol::Udp], &app.site.zone_name)?;
    let ports = PortRange::parse(p, "startport", "endport")?
        .ok_or_else(|| ApiError::missing_parameter(p.spec().name, "startport"))?;
    // The VM the address is NAT to, as the rule shows it; the group checks again under the
    // lock that the static NAT is there.
    let row = store::lookups::ip_by_uuid(&app.db, required(p, "ipaddressid")?)
        .await
        .map_err(store_error)?
        .ok_or_else(|| unknown(p, "ipaddressid"))?;
    let nat = row
        .nat
        .filter(|n| n.state != State::Revoke)
        .ok_or_else(|| {
            ApiError::rule_conflict(format!(
                "Can't do static nat on ip address: {}: static nat is not enabled on it",
                ip.address
            ))
        })?;
    let rule = NewRule {
        uuid: uuid::Uuid::new_v4().to_string(),
        purpose: Purpose::StaticNat,
        traffic: None,
        network_id: ip.network,
        ip_id: Some(ip.ip),
        account_id: ip.account,
        protocol: protocol.as_str().to_string(),
        ports: Some(ports.pair()),
        icmp: None,
        sources: Vec::new(),
        dests: Vec::new(),
        related_id: None,
        display: true,
        vm_id: Some(nat.vm_id),
        vm_ip: Some(nat.vm_ip.to_string()),
        private: None,
        name: None,
        description: None,
        algorithm: None,
        lb_protocol: None,
    };
    let payload = Payload::new(
        Outcome::Rule {
            id: RuleId::from(0),
            object: "ipforwardingrule".into(),
        },
        "NET.RULEADD",
        format!("creating ip forwarding rule on {}", ip.address),
        "Error in creating IP forwarding rule on the domr",
    );
    create_rule(
        app,
        caller,
        "createIpForwardingRule",
        rule,
        p.bool("openfirewall").unwrap_or(true),
        payload,
    )
    .await
}

/// deleteIpForwardingRule.
pub(crate) async fn delete_forwarding(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let rule = rule_param(app, caller, p, "id").await?;
    if rule.purpose != Purpose::StaticNat {
        return Err(unknown(p, "id"));
    }
    revoke(
        app,
        caller,
        "deleteIpForwardingRule",
        &rule,
        "Failed to delete ip forwarding rule",
    )
    .await
}

/// listIpForwardingRules.
pub(crate) async fn list_forwarding(app: &App, caller: &Caller, p: &Params) -> ApiResult<String> {
    list_rules(app, caller, p, Purpose::StaticNat, None, "ipforwardingrule").await
}
