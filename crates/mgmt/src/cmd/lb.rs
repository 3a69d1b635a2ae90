//! Load-balancer rules, their members and their stickiness and health-check policies.
//!
//! A balancer is a rule row (purpose LoadBalancing) like any other, created, revoked and listed
//! through the same machinery as forwards ([`super::firewall`]). Its members live in
//! `lb_members` and its policies in `lb_policies`, each row carrying the job that last changed
//! it; [`domain::plan`] puts a balancer on the router only while it has members, and applies only
//! the first stickiness and the first health-check policy of each balancer.
//!
//! Whatever the router would refuse is refused here first, with 431: the policy checks end by
//! running the router's own validation ([`router_config::validate`]) over a one-balancer config
//! that carries the new policy, so the API cannot accept a policy the router rejects.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use api_types::error::ApiError;
use api_types::params::Params;
use ipnet::Ipv4Net;
use router_config::{
    EgressPolicy, GuestSide, PublicAddress, PublicSide, RouterConfig, WireHealthCheck,
    WireLoadBalancer, WireMember, WireStickiness, SCHEMA_VERSION,
};
use serde_json::{json, Map, Value};
use sqlx::Row;

use super::firewall;
use super::{accepted, begin, network_by_id, queued, required, rule_by_id, rule_param, unknown};
use crate::app::{internal, ApiResult, App};
use crate::resp::{self, Owner};
use domain::actor::Caller;
use domain::checks;
use domain::job::{Kind, NewJob, Outcome, Payload, Undo};
use domain::model::NewRule;
use domain::model::{PolicyRow, Purpose, Rule, State};
use domain::plan::{HealthNumbers, StickinessParams, GUEST_INTERFACE, PUBLIC_INTERFACE};
use store::db::now_ms;
use store::rules::{POLICY_COLUMNS, RULE_COLUMNS, RULE_FROM};

/// The kind of a stickiness policy row.
const STICKINESS: &str = "stickiness";
/// The kind of a health-check policy row.
const HEALTH_CHECK: &str = "healthcheck";

/// The balancer named by uuid parameter `param`, if the caller may see it (anything else,
/// another kind of rule included, is an unknown id).
async fn lb_param(app: &App, caller: &Caller, p: &Params, param: &str) -> ApiResult<Rule> {
    let rule = rule_param(app, caller, p, param).await?;
    if rule.purpose != Purpose::LoadBalancing {
        return Err(unknown(p, param));
    }
    Ok(rule)
}

/// 431 for a change to a balancer that is being deleted.
fn not_revoked(lb: &Rule) -> ApiResult<()> {
    if lb.state == State::Revoke {
        return Err(ApiError::invalid_parameter(format!(
            "Load balancer rule {} is being deleted",
            lb.uuid
        )));
    }
    Ok(())
}

fn zone(app: &App) -> (&str, &str) {
    (app.site.zone_uuid.as_str(), app.site.zone_name.as_str())
}

/// The owner of `account_id`, read once per account.
async fn cached_owner<'a>(
    app: &App,
    cache: &'a mut HashMap<i64, Owner>,
    account_id: i64,
) -> ApiResult<&'a Owner> {
    if let std::collections::hash_map::Entry::Vacant(e) = cache.entry(account_id) {
        e.insert(super::owner(app, account_id).await?);
    }
    cache
        .get(&account_id)
        .ok_or_else(|| ApiError::internal(format!("account {account_id} is gone")))
}

// ------------------------------------------------------------------------------------------
// Rules.

/// createLoadBalancerRule: the rule (and the firewall rule it opens) in state Add, with a job
/// that pushes the firewall rule; the balancer itself reaches the router with its first member.
pub(crate) async fn create(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let command = p.spec().name;
    let name = required(p, "name")?.to_string();
    let algorithm = checks::algorithm(required(p, "algorithm")?)?;
    let private = checks::port(
        "privateport",
        p.int("privateport")
            .ok_or_else(|| ApiError::missing_parameter(command, "privateport"))?,
    )?;
    let public = checks::port(
        "publicport",
        p.int("publicport")
            .ok_or_else(|| ApiError::missing_parameter(command, "publicport"))?,
    )?;
    // CloudStack lets a balancer go without an address on providers that pick one; the router
    // of a guestnet network balances on a public IP, so it is required.
    if p.str("publicipid").is_none_or(str::is_empty) {
        return Err(ApiError::missing_parameter(command, "publicipid"));
    }
    let (ip, net) = firewall::rule_ip(app, caller, p, "publicipid").await?;
    if p.str("networkid").is_some_and(|s| !s.is_empty()) {
        let named = super::network_param(app, caller, p, "networkid").await?;
        if named.id != net.id {
            return Err(ApiError::invalid_parameter(format!(
                "Network {} is not the network of public IP {} (which is associated with \
                 network {})",
                named.uuid, ip.address, net.uuid
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
    let rule = NewRule {
        uuid: uuid::Uuid::new_v4().to_string(),
        purpose: Purpose::LoadBalancing,
        traffic: None,
        network_id: net.id,
        ip_id: Some(ip.id),
        account_id: ip.account_id.unwrap_or(net.account_id),
        protocol: "tcp".into(),
        ports: Some((public, public)),
        icmp: None,
        sources,
        dests: Vec::new(),
        related_id: None,
        display: p.bool("fordisplay").unwrap_or(true),
        vm_id: None,
        vm_ip: None,
        private: Some((private, private)),
        name: Some(name),
        description: p.str("description").map(str::to_string),
        algorithm: Some(algorithm),
        lb_protocol: Some(lb_protocol),
    };
    let payload = Payload::new(
        Outcome::Rule {
            id: 0,
            object: "loadbalancer".into(),
        },
        "LB.CREATE",
        format!("creating load balancer rule on {}", ip.address),
        "Failed to create load balancer rule",
    );
    let open = p.bool("openfirewall").unwrap_or(true);
    firewall::create_rule(app, caller, command, rule, open, payload).await
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

/// Appends ` AND <cond>` where `$?` in `cond` stands for the next bind.
fn bind_cond(sql: &mut String, binds: &mut Vec<String>, cond: &str, value: &str) {
    binds.push(value.to_string());
    sql.push_str(" AND ");
    sql.push_str(&cond.replace("$?", &format!("${}", binds.len())));
}

/// listLoadBalancerRules, oldest first as CloudStack lists balancers.
pub(crate) async fn list(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    const KEY: &str = "loadbalancerrule";
    super::visible_filter(app, caller, p, "id", "rules").await?;
    super::visible_filter(app, caller, p, "publicipid", "public_ips").await?;
    super::visible_filter(app, caller, p, "virtualmachineid", "vms").await?;
    // Rules carry no tags, so a tag filter matches nothing.
    if !p.map("tags").is_empty() {
        return Ok(resp::list(KEY, 0, Vec::new()));
    }
    let mut sql = format!(
        "SELECT {RULE_COLUMNS} FROM {RULE_FROM} WHERE r.purpose = '{}'",
        Purpose::LoadBalancing.as_str()
    );
    let mut binds: Vec<String> = Vec::new();
    if let Some(v) = p.str("id").filter(|s| !s.is_empty()) {
        bind_cond(&mut sql, &mut binds, "r.uuid = $?", v);
    }
    if let Some(v) = p.str("name").filter(|s| !s.is_empty()) {
        bind_cond(&mut sql, &mut binds, "r.name = $?", v);
    }
    if let Some(v) = p.str("publicipid").filter(|s| !s.is_empty()) {
        bind_cond(&mut sql, &mut binds, "p.uuid = $?", v);
    }
    if let Some(v) = p.str("networkid").filter(|s| !s.is_empty()) {
        bind_cond(&mut sql, &mut binds, "n.uuid = $?", v);
    }
    if let Some(v) = p.str("zoneid").filter(|s| !s.is_empty()) {
        bind_cond(
            &mut sql,
            &mut binds,
            "n.zone_id IN (SELECT z.id FROM zones z WHERE z.uuid = $?)",
            v,
        );
    }
    if let Some(v) = p.str("virtualmachineid").filter(|s| !s.is_empty()) {
        bind_cond(
            &mut sql,
            &mut binds,
            "EXISTS (SELECT 1 FROM lb_members m JOIN vms mv ON mv.id = m.vm_id \
             WHERE m.lb_id = r.id AND m.state <> 'Revoke' AND mv.uuid = $?)",
            v,
        );
    }
    if let Some(d) = p.bool("fordisplay") {
        sql.push_str(&format!(" AND r.display = {}", i64::from(d)));
    }
    if let Some(account) = super::scope(app, caller, p).await? {
        sql.push_str(&format!(" AND r.account_id = {account}"));
    }
    if let Some(ids) = super::accounts::domain_ids(app, p).await? {
        sql.push_str(&format!(
            " AND r.account_id IN (SELECT a.id FROM accounts a WHERE a.domain_id IN ({}))",
            id_list(&ids)
        ));
    }
    sql.push_str(" ORDER BY r.id ASC");
    let mut q = sqlx::query(&sql);
    for b in &binds {
        q = q.bind(b.as_str());
    }
    let rows = q.fetch_all(app.db.pool()).await.map_err(internal)?;
    let mut rules = Vec::with_capacity(rows.len());
    for row in &rows {
        rules.push(store::rules::rule(row).map_err(internal)?);
    }
    if let Some(k) = p.str("keyword").filter(|k| !k.is_empty()) {
        let k = k.to_lowercase();
        rules.retain(|r| {
            r.name
                .as_deref()
                .is_some_and(|n| n.to_lowercase().contains(&k))
                || r.description
                    .as_deref()
                    .is_some_and(|d| d.to_lowercase().contains(&k))
        });
    }
    let range = p.paging().range(rules.len());
    let mut owners = HashMap::new();
    let mut items = Vec::with_capacity(range.len());
    for r in &rules[range] {
        let owner = cached_owner(app, &mut owners, r.account_id).await?;
        items.push(resp::load_balancer(r, owner, zone(app), caller.admin));
    }
    Ok(resp::list(KEY, rules.len(), items))
}

fn id_list(ids: &[i64]) -> String {
    if ids.is_empty() {
        return "NULL".into();
    }
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

/// updateLoadBalancerRule. A new name, description or display flag changes nothing on the
/// router: the job ends at once. A new algorithm, protocol or source list goes to the router on
/// its own generation, and comes back out if the router refuses it.
pub(crate) async fn update(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    const COMMAND: &str = "updateLoadBalancerRule";
    let lb = lb_param(app, caller, p, "id").await?;
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
    let job_uuid = {
        let _w = app.db.write_lock().await;
        let mut tx = begin(app).await?;
        app.db
            .lock_network(&mut tx, lb.network_id)
            .await
            .map_err(internal)?;
        firewall::refuse_if_in_flight(&mut tx, &lb).await?;
        let mut payload = Payload::new(
            Outcome::Rule {
                id: lb.id,
                object: "loadbalancer".into(),
            },
            firewall::event_type(COMMAND),
            format!("updating load balancer rule {}", lb.uuid),
            "Failed to update load balancer rule",
        );
        // The name and description stay as given even if the router refuses the rest: they
        // are not router state.
        payload.undo = Some(Undo {
            rule_id: lb.id,
            algorithm: lb.algorithm.clone(),
            source_cidrs: lb.source_cidrs.join(","),
            vm_id: lb.vm_id,
            vm_ip: lb.vm_ip.map(|ip| ip.to_string()),
            private_start: lb.private_start,
            private_end: lb.private_end,
        });
        let (job_id, job_uuid) = store::jobs::insert(
            &mut tx,
            caller,
            NewJob {
                command: COMMAND,
                kind: Kind::Update,
                network_id: Some(lb.network_id.into()),
                payload,
                instance_type: Some("FirewallRule"),
                instance_uuid: Some(&lb.uuid),
            },
        )
        .await
        .map_err(internal)?;
        let job_id = job_id.get();
        // Marked with the update's job, so that the network's worker reads the new values.
        sqlx::query(
            "UPDATE rules SET algorithm = $1, lb_protocol = $2, source_cidrs = $3, name = $4, \
             description = $5, display = $6, job_id = $7 WHERE id = $8",
        )
        .bind(algorithm)
        .bind(lb_protocol)
        .bind(sources)
        .bind(name.map(str::to_string).or_else(|| lb.name.clone()))
        .bind(
            description
                .map(str::to_string)
                .or_else(|| lb.description.clone()),
        )
        .bind(i64::from(p.bool("fordisplay").unwrap_or(lb.display)))
        .bind(job_id)
        .bind(lb.id)
        .execute(&mut *tx)
        .await
        .map_err(internal)?;
        store::events::scheduled(
            &mut tx,
            caller,
            firewall::event_type(COMMAND),
            &format!("{COMMAND} for rule {}", lb.uuid),
            Some(&lb.uuid),
            &job_uuid,
        )
        .await
        .map_err(internal)?;
        tx.commit().await.map_err(internal)?;
        job_uuid
    };
    app.doorbell.ring_network(lb.network_id);
    Ok(queued(&job_uuid))
}

// ------------------------------------------------------------------------------------------
// Members.

/// A VM (and optionally one of its addresses) named by assign or remove.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    /// The VM's uuid, lowercased.
    vm: String,
    /// The address, when the request gave one.
    ip: Option<Ipv4Addr>,
    /// The parameter it came from, for error texts.
    param: &'static str,
}

/// The targets of assign/remove, from `virtualmachineids` and `vmidipmap`.
fn targets(
    command: &str,
    ids: Option<Vec<String>>,
    map: &[BTreeMap<String, String>],
) -> ApiResult<Vec<Target>> {
    let mut out: Vec<Target> = Vec::new();
    let mut push = |t: Target| {
        if !out.contains(&t) {
            out.push(t);
        }
    };
    for vm in ids.unwrap_or_default() {
        push(Target {
            vm,
            ip: None,
            param: "virtualmachineids",
        });
    }
    for entry in map {
        let field = |name: &str| {
            entry
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim())
                .filter(|v| !v.is_empty())
        };
        let vm = field("vmid").ok_or_else(|| {
            ApiError::invalid_parameter("Each vmidipmap entry needs a vmid (vmidipmap[i].vmid)")
        })?;
        if !is_uuid(vm) {
            return Err(ApiError::unknown_uuid(command, "vmidipmap", vm));
        }
        let ip = match field("vmip") {
            None => None,
            Some(s) => Some(s.parse::<Ipv4Addr>().map_err(|_| {
                ApiError::invalid_parameter(format!("Invalid vm ip address {s} in vmidipmap"))
            })?),
        };
        push(Target {
            vm: vm.to_ascii_lowercase(),
            ip,
            param: "vmidipmap",
        });
    }
    if out.is_empty() {
        return Err(ApiError::invalid_parameter(
            "Both instanceids and vmidipmap  can't be null",
        ));
    }
    Ok(out)
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// A VM as the balancer commands see it.
#[derive(Debug, Clone)]
struct Vm {
    id: i64,
    uuid: String,
    name: String,
    display_name: String,
    account_id: i64,
    network_id: i64,
    ip: String,
    state: String,
    nic_uuid: String,
    created: i64,
}

const VM_COLUMNS: &str = "v.id, v.uuid, v.name, v.display_name, v.account_id, v.network_id, \
     v.ip, v.state, v.nic_uuid, v.created";

impl Vm {
    fn from_row(row: &sqlx::any::AnyRow) -> Result<Vm, sqlx::Error> {
        Ok(Vm {
            id: row.try_get("id")?,
            uuid: row.try_get("uuid")?,
            name: row.try_get("name")?,
            display_name: row.try_get("display_name")?,
            account_id: row.try_get("account_id")?,
            network_id: row.try_get("network_id")?,
            ip: row.try_get("ip")?,
            state: row.try_get("state")?,
            nic_uuid: row.try_get("nic_uuid")?,
            created: row.try_get("created")?,
        })
    }

    fn gone(&self) -> bool {
        matches!(
            self.state.as_str(),
            "Destroyed" | "Expunging" | "Error" | "Unknown"
        )
    }
}

/// The VM a target names, if the caller may see it (431 unknown id otherwise).
async fn target_vm(app: &App, caller: &Caller, command: &str, t: &Target) -> ApiResult<Vm> {
    let row = sqlx::query(&format!("SELECT {VM_COLUMNS} FROM vms v WHERE v.uuid = $1"))
        .bind(t.vm.as_str())
        .fetch_optional(app.db.pool())
        .await
        .map_err(internal)?;
    let vm = row
        .map(|r| Vm::from_row(&r))
        .transpose()
        .map_err(internal)?
        .filter(|vm| caller.may_touch(vm.account_id));
    vm.ok_or_else(|| ApiError::unknown_uuid(command, t.param, &t.vm))
}

/// assignToLoadBalancerRule (`add`) / removeFromLoadBalancerRule: member rows written (Add) or
/// revoked, with one job that carries them to the router.
pub(crate) async fn assign(app: &App, caller: &Caller, p: &Params, add: bool) -> ApiResult<Value> {
    let (command, failure, what) = if add {
        (
            "assignToLoadBalancerRule",
            "Failed to assign load balancer rule",
            "assigning instances to load balancer",
        )
    } else {
        (
            "removeFromLoadBalancerRule",
            "Failed to remove load balancer rule",
            "removing instances from load balancer",
        )
    };
    let lb = lb_param(app, caller, p, "id").await?;
    let targets = targets(command, p.list("virtualmachineids"), &p.map("vmidipmap"))?;
    not_revoked(&lb)?;
    let mut resolved: Vec<(Vm, Option<Ipv4Addr>)> = Vec::with_capacity(targets.len());
    for t in &targets {
        let vm = target_vm(app, caller, command, t).await?;
        if add {
            if vm.gone() {
                return Err(ApiError::invalid_parameter(format!(
                    "Invalid instance id specified: VM {} is {}",
                    vm.uuid, vm.state
                )));
            }
            if vm.network_id != lb.network_id {
                return Err(ApiError::invalid_parameter(format!(
                    "VM {} has no NIC in network {}, the network of load balancer rule {}",
                    vm.uuid, lb.network_uuid, lb.uuid
                )));
            }
            if let Some(ip) = t.ip {
                if ip.to_string() != vm.ip {
                    return Err(ApiError::invalid_parameter(format!(
                        "VM ip {ip} specified does not belong to the NIC of VM {} in network {}",
                        vm.uuid, lb.network_uuid
                    )));
                }
            }
        }
        resolved.push((vm, t.ip));
    }
    let job_uuid = {
        let _w = app.db.write_lock().await;
        let mut tx = begin(app).await?;
        app.db
            .lock_network(&mut tx, lb.network_id)
            .await
            .map_err(internal)?;
        let (job_id, job_uuid) = store::jobs::insert(
            &mut tx,
            caller,
            NewJob {
                command,
                kind: Kind::Change,
                network_id: Some(lb.network_id.into()),
                payload: Payload::new(
                    Outcome::Success,
                    firewall::event_type(command),
                    format!("{what} {}", lb.uuid),
                    failure,
                ),
                instance_type: None,
                instance_uuid: None,
            },
        )
        .await
        .map_err(internal)?;
        let job_id = job_id.get();
        for (vm, ip) in &resolved {
            if add {
                let ip = ip.map_or_else(|| vm.ip.clone(), |ip| ip.to_string());
                let existing = sqlx::query(
                    "SELECT id, state FROM lb_members WHERE lb_id = $1 AND vm_id = $2 AND vm_ip = $3",
                )
                .bind(lb.id)
                .bind(vm.id)
                .bind(ip.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(internal)?;
                match existing {
                    Some(row) => {
                        let state: String = row.try_get("state").map_err(internal)?;
                        if state != State::Revoke.as_str() {
                            return Err(ApiError::invalid_parameter(format!(
                                "VM {} with {ip} is already mapped to load balancer.",
                                vm.uuid
                            )));
                        }
                        // Its removal is still pending: the same row comes back.
                        let id: i64 = row.try_get("id").map_err(internal)?;
                        sqlx::query(
                            "UPDATE lb_members SET state = 'Add', job_id = $1 WHERE id = $2",
                        )
                        .bind(job_id)
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .map_err(internal)?;
                    }
                    None => {
                        sqlx::query(
                            "INSERT INTO lb_members (lb_id, vm_id, vm_ip, state, applied, job_id) \
                             VALUES ($1, $2, $3, 'Add', 0, $4)",
                        )
                        .bind(lb.id)
                        .bind(vm.id)
                        .bind(ip.as_str())
                        .bind(job_id)
                        .execute(&mut *tx)
                        .await
                        .map_err(internal)?;
                    }
                }
            } else {
                let done = match ip {
                    Some(ip) => sqlx::query(
                        "UPDATE lb_members SET state = 'Revoke', job_id = $1 WHERE lb_id = $2 \
                         AND vm_id = $3 AND vm_ip = $4 AND state <> 'Revoke'",
                    )
                    .bind(job_id)
                    .bind(lb.id)
                    .bind(vm.id)
                    .bind(ip.to_string()),
                    None => sqlx::query(
                        "UPDATE lb_members SET state = 'Revoke', job_id = $1 WHERE lb_id = $2 \
                         AND vm_id = $3 AND state <> 'Revoke'",
                    )
                    .bind(job_id)
                    .bind(lb.id)
                    .bind(vm.id),
                }
                .execute(&mut *tx)
                .await
                .map_err(internal)?;
                if done.rows_affected() == 0 {
                    let with = ip.map(|ip| format!(" with {ip}")).unwrap_or_default();
                    return Err(ApiError::invalid_parameter(format!(
                        "VM {}{with} is not mapped to load balancer rule {}",
                        vm.uuid, lb.uuid
                    )));
                }
            }
        }
        store::events::scheduled(
            &mut tx,
            caller,
            firewall::event_type(command),
            &format!("{command} for rule {}", lb.uuid),
            Some(&lb.uuid),
            &job_uuid,
        )
        .await
        .map_err(internal)?;
        tx.commit().await.map_err(internal)?;
        job_uuid
    };
    app.doorbell.ring_network(lb.network_id);
    Ok(queued(&job_uuid))
}

/// A member VM in the shape of CloudStack's UserVmResponse, reduced to what balancer listings
/// need, with `servicestate` (the member's state: Add until the router holds it, then Active).
fn vm_json(vm: &Vm, owner: &Owner, network_uuid: &str, zone: (&str, &str), service: &str) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(vm.uuid));
    m.insert("name".into(), json!(vm.name));
    m.insert("displayname".into(), json!(vm.display_name));
    m.insert("account".into(), json!(owner.account));
    m.insert("domainid".into(), json!(owner.domain_id));
    m.insert("domain".into(), json!(owner.domain));
    m.insert("created".into(), json!(resp::date(vm.created)));
    m.insert("state".into(), json!(vm.state));
    m.insert("zoneid".into(), json!(zone.0));
    m.insert("zonename".into(), json!(zone.1));
    m.insert(
        "nic".into(),
        json!([{
            "id": vm.nic_uuid,
            "networkid": network_uuid,
            "ipaddress": vm.ip,
            "isdefault": true,
            "traffictype": "Guest",
            "type": "Isolated",
        }]),
    );
    m.insert("tags".into(), json!([]));
    m.insert("servicestate".into(), json!(service));
    Value::Object(m)
}

/// listLoadBalancerRuleInstances: the VMs mapped to the balancer (removals pending excluded,
/// VMs being destroyed skipped). `applied=false` lists nothing, as in CloudStack: only mapped
/// VMs are ever listed. With `lbvmips=true` each VM comes with the addresses balanced to.
pub(crate) async fn instances(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let lb = lb_param(app, caller, p, "id").await?;
    let lbvmips = p.bool("lbvmips").unwrap_or(false);
    let key = if lbvmips {
        "lbrulevmidip"
    } else {
        "loadbalancerruleinstance"
    };
    if !p.bool("applied").unwrap_or(true) {
        return Ok(resp::list(key, 0, Vec::new()));
    }
    let rows = sqlx::query(&format!(
        "SELECT {VM_COLUMNS}, m.vm_ip AS member_ip, m.state AS member_state \
         FROM lb_members m JOIN vms v ON v.id = m.vm_id \
         WHERE m.lb_id = $1 AND m.state <> 'Revoke' ORDER BY v.id, m.id"
    ))
    .bind(lb.id)
    .fetch_all(app.db.pool())
    .await
    .map_err(internal)?;
    // One entry per VM, with its member addresses; Active once any of them is.
    let mut vms: Vec<(Vm, Vec<String>, bool)> = Vec::new();
    for row in &rows {
        let vm = Vm::from_row(row).map_err(internal)?;
        let ip: String = row.try_get("member_ip").map_err(internal)?;
        let active =
            row.try_get::<String, _>("member_state").map_err(internal)? == State::Active.as_str();
        if vm.gone() {
            continue;
        }
        match vms.last_mut() {
            Some((last, ips, act)) if last.id == vm.id => {
                ips.push(ip);
                *act |= active;
            }
            _ => vms.push((vm, vec![ip], active)),
        }
    }
    if let Some(k) = p.str("keyword").filter(|k| !k.is_empty()) {
        let k = k.to_lowercase();
        vms.retain(|(vm, _, _)| {
            vm.name.to_lowercase().contains(&k) || vm.display_name.to_lowercase().contains(&k)
        });
    }
    let range = p.paging().range(vms.len());
    let mut owners = HashMap::new();
    let mut items = Vec::with_capacity(range.len());
    for (vm, ips, active) in &vms[range] {
        let owner = cached_owner(app, &mut owners, vm.account_id).await?;
        let service = if *active {
            State::Active.api()
        } else {
            State::Add.api()
        };
        let obj = vm_json(vm, owner, &lb.network_uuid, zone(app), service);
        items.push(if lbvmips {
            json!({"loadbalancerruleinstance": obj, "lbvmipaddresses": ips})
        } else {
            obj
        });
    }
    Ok(resp::list(key, vms.len(), items))
}

// ------------------------------------------------------------------------------------------
// Policies.

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
fn stickiness_method(s: &str) -> ApiResult<&'static str> {
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
fn stickiness_params(
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
struct Probe {
    lb_id: u64,
    public_ip: Ipv4Addr,
    public_port: u32,
    private_port: u32,
    cidr: Ipv4Net,
    gateway: Ipv4Addr,
}

impl Probe {
    fn of(lb: &Rule, cidr: Ipv4Net, gateway: Ipv4Addr) -> Probe {
        let port = |v: Option<i64>| v.and_then(|v| u32::try_from(v).ok()).unwrap_or(80);
        Probe {
            lb_id: u64::try_from(lb.id).unwrap_or(1).max(1),
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
fn router_objections(
    probe: Probe,
    stickiness: Option<WireStickiness>,
    health_check: Option<WireHealthCheck>,
) -> Vec<String> {
    let member = probe
        .cidr
        .hosts()
        .find(|h| *h != probe.gateway)
        .unwrap_or(probe.gateway);
    let config = RouterConfig {
        schema: SCHEMA_VERSION,
        generation: 1,
        public: PublicSide {
            interface: PUBLIC_INTERFACE.into(),
            addresses: vec![PublicAddress {
                ip: probe.public_ip,
                prefix_len: 24,
                source_nat: true,
            }],
            gateway: None,
        },
        guest: GuestSide {
            interface: GUEST_INTERFACE.into(),
            cidr: probe.cidr.to_string(),
            gateway: probe.gateway,
        },
        egress_default: EgressPolicy::Deny,
        firewall_rules: Vec::new(),
        egress_rules: Vec::new(),
        port_forwards: Vec::new(),
        load_balancers: vec![WireLoadBalancer {
            id: probe.lb_id,
            public_ip: probe.public_ip,
            public_port: probe.public_port,
            protocol: "tcp".into(),
            algorithm: "roundrobin".into(),
            members: vec![WireMember {
                vm_ip: member,
                port: probe.private_port,
            }],
            source_cidrs: vec!["0.0.0.0/0".into()],
            stickiness,
            health_check,
        }],
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

/// A new policy row, written with its job.
struct NewPolicy<'a> {
    lb: &'a Rule,
    kind: &'static str,
    name: String,
    description: String,
    method: String,
    params: String,
    display: bool,
}

/// Writes a policy in state Add with its job (after checking, under the network's lock, how
/// many the balancer already has), and rings the runner. Answers `{"id", "jobid"}`.
async fn insert_policy(
    app: &App,
    caller: &Caller,
    command: &str,
    policy: NewPolicy<'_>,
    max_live: i64,
    too_many: String,
    failure: &str,
) -> ApiResult<Value> {
    let lb = policy.lb;
    let uuid = uuid::Uuid::new_v4().to_string();
    let job_uuid = {
        let _w = app.db.write_lock().await;
        let mut tx = begin(app).await?;
        app.db
            .lock_network(&mut tx, lb.network_id)
            .await
            .map_err(internal)?;
        let live: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM lb_policies WHERE lb_id = $1 AND kind = $2 \
             AND state <> 'Revoke'",
        )
        .bind(lb.id)
        .bind(policy.kind)
        .fetch_one(&mut *tx)
        .await
        .map_err(internal)?
        .try_get("n")
        .map_err(internal)?;
        if live >= max_live {
            return Err(ApiError::invalid_parameter(too_many));
        }
        let (job_id, job_uuid) = store::jobs::insert(
            &mut tx,
            caller,
            NewJob {
                command,
                kind: Kind::Change,
                network_id: Some(lb.network_id.into()),
                payload: Payload::new(
                    Outcome::Policy {
                        lb_id: lb.id,
                        kind: policy.kind.into(),
                    },
                    firewall::event_type(command),
                    format!(
                        "creating a {} policy for load balancer {}",
                        policy.kind, lb.uuid
                    ),
                    failure,
                ),
                instance_type: None,
                instance_uuid: None,
            },
        )
        .await
        .map_err(internal)?;
        let job_id = job_id.get();
        sqlx::query(
            "INSERT INTO lb_policies (uuid, lb_id, kind, name, description, method, params, \
             state, applied, job_id, display, created) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'Add', 0, $8, $9, $10)",
        )
        .bind(uuid.as_str())
        .bind(lb.id)
        .bind(policy.kind)
        .bind(policy.name)
        .bind(policy.description)
        .bind(policy.method)
        .bind(policy.params)
        .bind(job_id)
        .bind(i64::from(policy.display))
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(internal)?;
        store::events::scheduled(
            &mut tx,
            caller,
            firewall::event_type(command),
            &format!("{command} for rule {}", lb.uuid),
            Some(&uuid),
            &job_uuid,
        )
        .await
        .map_err(internal)?;
        tx.commit().await.map_err(internal)?;
        job_uuid
    };
    app.doorbell.ring_network(lb.network_id);
    Ok(accepted(&uuid, &job_uuid))
}

/// createLBStickinessPolicy. At most two live policies per balancer, as CloudStack; the router
/// applies only the first.
pub(crate) async fn create_stickiness(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    const COMMAND: &str = "createLBStickinessPolicy";
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
        router_objections(Probe::of(&lb, net.cidr, net.gateway), Some(wire), None),
    )?;
    let policy = NewPolicy {
        lb: &lb,
        kind: STICKINESS,
        name,
        description: p.str("description").unwrap_or_default().to_string(),
        method: method.to_string(),
        params: serde_json::to_string(&params).map_err(internal)?,
        display: p.bool("fordisplay").unwrap_or(true),
    };
    insert_policy(
        app,
        caller,
        COMMAND,
        policy,
        2,
        "Failed to create Stickiness policy: Already two policies attached".into(),
        "Failed to create stickiness policy",
    )
    .await
}

/// The health-check numbers of a request: 0 or absent takes CloudStack's default; a timeout
/// longer than the interval (both given) is refused.
fn health_numbers(
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

/// createLBHealthCheckPolicy. guestnet's router runs health checks (the Lb service advertises
/// HealthCheckPolicy), unlike CloudStack's virtual router; one live policy per balancer.
pub(crate) async fn create_health_check(
    app: &App,
    caller: &Caller,
    p: &Params,
) -> ApiResult<Value> {
    const COMMAND: &str = "createLBHealthCheckPolicy";
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
        router_objections(Probe::of(&lb, net.cidr, net.gateway), None, Some(wire)),
    )?;
    let policy = NewPolicy {
        lb: &lb,
        kind: HEALTH_CHECK,
        name: String::new(),
        description: p.str("description").unwrap_or_default().to_string(),
        method: ping_path,
        params: serde_json::to_string(&numbers).map_err(internal)?,
        display: p.bool("fordisplay").unwrap_or(true),
    };
    insert_policy(
        app,
        caller,
        COMMAND,
        policy,
        1,
        format!(
            "Failed to create HealthCheck policy: load balancer rule {} already has one",
            lb.uuid
        ),
        "Failed to create healthcheck policy",
    )
    .await
}

/// The policy of `kind` named by uuid parameter `param`, and its balancer, if the caller may
/// see them.
async fn policy_param(
    app: &App,
    caller: &Caller,
    p: &Params,
    param: &str,
    kind: &str,
) -> ApiResult<(PolicyRow, Rule)> {
    let uuid = required(p, param)?;
    let row = sqlx::query(&format!(
        "SELECT {POLICY_COLUMNS} FROM lb_policies WHERE uuid = $1 AND kind = $2"
    ))
    .bind(uuid)
    .bind(kind)
    .fetch_optional(app.db.pool())
    .await
    .map_err(internal)?
    .ok_or_else(|| unknown(p, param))?;
    let policy = store::rules::policy(&row).map_err(internal)?;
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
    kind: &str,
) -> ApiResult<Value> {
    let (command, failure) = if kind == STICKINESS {
        (
            "deleteLBStickinessPolicy",
            "Failed to delete load balancer stickiness policy",
        )
    } else {
        (
            "deleteLBHealthCheckPolicy",
            "Failed to delete load balancer healthcheck policy",
        )
    };
    let (policy, lb) = policy_param(app, caller, p, "id", kind).await?;
    let job_uuid = {
        let _w = app.db.write_lock().await;
        let mut tx = begin(app).await?;
        app.db
            .lock_network(&mut tx, lb.network_id)
            .await
            .map_err(internal)?;
        let (job_id, job_uuid) = store::jobs::insert(
            &mut tx,
            caller,
            NewJob {
                command,
                kind: Kind::Change,
                network_id: Some(lb.network_id.into()),
                payload: Payload::new(
                    Outcome::Success,
                    firewall::event_type(command),
                    format!("deleting {kind} policy {}", policy.uuid),
                    failure,
                ),
                instance_type: None,
                instance_uuid: None,
            },
        )
        .await
        .map_err(internal)?;
        let job_id = job_id.get();
        sqlx::query("UPDATE lb_policies SET state = 'Revoke', job_id = $1 WHERE id = $2")
            .bind(job_id)
            .bind(policy.id)
            .execute(&mut *tx)
            .await
            .map_err(internal)?;
        store::events::scheduled(
            &mut tx,
            caller,
            firewall::event_type(command),
            &format!("{command} for policy {}", policy.uuid),
            Some(&policy.uuid),
            &job_uuid,
        )
        .await
        .map_err(internal)?;
        tx.commit().await.map_err(internal)?;
        job_uuid
    };
    app.doorbell.ring_network(lb.network_id);
    Ok(queued(&job_uuid))
}

async fn policies_of(app: &App, lb_id: i64, kind: &str) -> ApiResult<Vec<PolicyRow>> {
    let rows = sqlx::query(&format!(
        "SELECT {POLICY_COLUMNS} FROM lb_policies WHERE lb_id = $1 AND kind = $2 ORDER BY id"
    ))
    .bind(lb_id)
    .bind(kind)
    .fetch_all(app.db.pool())
    .await
    .map_err(internal)?;
    rows.iter()
        .map(store::rules::policy)
        .collect::<Result<_, _>>()
        .map_err(internal)
}

fn policies_key(kind: &str) -> &'static str {
    if kind == STICKINESS {
        "stickinesspolicies"
    } else {
        "healthcheckpolicies"
    }
}

/// listLBStickinessPolicies / listLBHealthCheckPolicies: one item, the balancer's policies of
/// that kind (as CloudStack answers: one item per balancer, even with no policy). Without
/// `lbruleid` and `id` the list is empty.
pub(crate) async fn list_policies(
    app: &App,
    caller: &Caller,
    p: &Params,
    kind: &str,
) -> ApiResult<Value> {
    let key = policies_key(kind);
    let by_id = if p.str("id").is_some_and(|s| !s.is_empty()) {
        Some(policy_param(app, caller, p, "id", kind).await?)
    } else {
        None
    };
    let lb = if p.str("lbruleid").is_some_and(|s| !s.is_empty()) {
        let lb = lb_param(app, caller, p, "lbruleid").await?;
        if by_id.as_ref().is_some_and(|(_, other)| other.id != lb.id) {
            return Ok(resp::list(key, 0, Vec::new()));
        }
        lb
    } else {
        match &by_id {
            Some((_, lb)) => lb.clone(),
            None => return Ok(resp::list(key, 0, Vec::new())),
        }
    };
    let mut rows = policies_of(app, lb.id, kind).await?;
    if let Some((policy, _)) = &by_id {
        rows.retain(|r| r.id == policy.id);
    }
    if let Some(d) = p.bool("fordisplay") {
        rows.retain(|r| r.display == d);
    }
    let owner = super::owner(app, lb.account_id).await?;
    let item = resp::policies(&lb, kind, &rows, &owner, &app.site.zone_uuid, caller.admin);
    Ok(super::page(key, vec![item], p.paging()))
}

/// The `jobresult` of a policy job: the balancer's live policies of `kind`, wrapped as
/// `{"stickinesspolicies": {...}}` or `{"healthcheckpolicies": {...}}`.
///
/// # Errors
/// 530 when the balancer cannot be read back.
pub(crate) async fn policy_result(app: &App, lb_id: i64, kind: &str) -> ApiResult<Value> {
    let lb = rule_by_id(app, lb_id).await?;
    let mut rows = policies_of(app, lb_id, kind).await?;
    rows.retain(|r| r.state != State::Revoke);
    let owner = super::owner(app, lb.account_id).await?;
    let item = resp::policies(&lb, kind, &rows, &owner, &app.site.zone_uuid, true);
    Ok(resp::wrap(policies_key(kind), item))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn probe() -> Probe {
        Probe {
            lb_id: 7,
            public_ip: Ipv4Addr::new(203, 0, 113, 10),
            public_port: 80,
            private_port: 8080,
            cidr: "10.1.1.0/24".parse().unwrap(),
            gateway: Ipv4Addr::new(10, 1, 1, 1),
        }
    }

    fn sticky(method: &str, pairs: &[(&str, &str)]) -> Vec<String> {
        let params = stickiness_params(method, &[]).unwrap();
        let mut params = params;
        for (k, v) in pairs {
            params.insert(k.to_string(), v.to_string());
        }
        router_objections(
            probe(),
            Some(WireStickiness {
                method: method.into(),
                params,
            }),
            None,
        )
    }

    #[test]
    fn methods_are_matched_case_insensitively() {
        assert_eq!(stickiness_method("lbcookie").unwrap(), "LbCookie");
        assert_eq!(stickiness_method("SOURCEBASED").unwrap(), "SourceBased");
        assert!(stickiness_method("Cookie").is_err());
    }

    #[test]
    fn params_follow_the_method() {
        let p = stickiness_params(
            "LbCookie",
            &[
                entry(&[("name", "cookie-name"), ("value", "sid")]),
                entry(&[("name", "nocache"), ("value", "")]),
            ],
        )
        .unwrap();
        assert_eq!(p.get("cookie-name").map(String::as_str), Some("sid"));
        assert_eq!(p.get("nocache").map(String::as_str), Some(""));
        // Not a parameter of the method.
        assert!(stickiness_params(
            "SourceBased",
            &[entry(&[("name", "length"), ("value", "5")])]
        )
        .is_err());
        // A non-flag needs a value.
        assert!(stickiness_params("AppCookie", &[entry(&[("name", "length")])]).is_err());
        // A name is needed.
        assert!(stickiness_params("AppCookie", &[entry(&[("value", "5")])]).is_err());
    }

    #[test]
    fn repeated_params_are_joined() {
        let p = stickiness_params(
            "LbCookie",
            &[
                entry(&[("name", "domain"), ("value", "a.example")]),
                entry(&[("name", "Domain"), ("value", "b.example")]),
                entry(&[("name", "mode"), ("value", "insert")]),
                entry(&[("name", "mode"), ("value", "rewrite")]),
            ],
        )
        .unwrap();
        assert_eq!(
            p.get("domain").map(String::as_str),
            Some("a.example,b.example")
        );
        assert_eq!(p.get("mode").map(String::as_str), Some("insert:rewrite"));
        // The router accepts the domains and refuses the joined mode.
        let mut ok = p.clone();
        ok.remove("mode");
        assert!(router_objections(
            probe(),
            Some(WireStickiness {
                method: "LbCookie".into(),
                params: ok
            }),
            None
        )
        .is_empty());
        assert!(!sticky("LbCookie", &[("mode", "insert:rewrite")]).is_empty());
    }

    #[test]
    fn the_router_decides_what_values_pass() {
        assert!(sticky("LbCookie", &[]).is_empty());
        assert!(sticky("LbCookie", &[("cookie-name", "SERVERID")]).is_empty());
        assert!(!sticky("LbCookie", &[("cookie-name", "bad name")]).is_empty());
        assert!(!sticky("LbCookie", &[("nocache", "maybe")]).is_empty());
        assert!(sticky("AppCookie", &[("length", "4096"), ("holdtime", "24d")]).is_empty());
        assert!(!sticky("AppCookie", &[("length", "4097")]).is_empty());
        assert!(!sticky("AppCookie", &[("length", "0")]).is_empty());
        assert!(!sticky("AppCookie", &[("holdtime", "30d")]).is_empty());
        assert!(!sticky("AppCookie", &[("prefix", "")]).is_empty());
        assert!(!sticky("AppCookie", &[("mode", "")]).is_empty());
        assert!(sticky("SourceBased", &[("tablesize", "3g"), ("expire", "3h")]).is_empty());
        // 4g is 2^32 entries, one more than haproxy counts.
        assert!(!sticky("SourceBased", &[("tablesize", "4g")]).is_empty());
        assert!(sticky("SourceBased", &[("tablesize", "4194303k")]).is_empty());
        assert!(!sticky("SourceBased", &[("tablesize", "200x")]).is_empty());
        assert!(!sticky("SourceBased", &[("expire", "25d")]).is_empty());
        let texts = sticky("AppCookie", &[("length", "abc")]);
        assert!(texts[0].starts_with("param length:"), "{texts:?}");
    }

    #[test]
    fn health_defaults_and_limits() {
        let n = health_numbers(None, Some(0), None, None).unwrap();
        assert_eq!(
            n,
            HealthNumbers {
                response_time: 2,
                interval: 5,
                healthy: 2,
                unhealthy: 1
            }
        );
        assert!(health_numbers(Some(10), Some(5), None, None).is_err());
        assert!(health_numbers(Some(5), Some(5), None, None).is_ok());
        assert!(health_numbers(Some(-1), None, None, None).is_err());
        let check = |n: HealthNumbers, path: &str| {
            router_objections(
                probe(),
                None,
                Some(WireHealthCheck {
                    ping_path: Some(path.into()),
                    interval_s: n.interval,
                    response_timeout_s: n.response_time,
                    healthy_threshold: n.healthy,
                    unhealthy_threshold: n.unhealthy,
                }),
            )
        };
        assert!(check(n, "/").is_empty());
        assert!(!check(n, "health").is_empty());
        assert!(!check(n, "/a b").is_empty());
        let slow = health_numbers(Some(61), Some(100), Some(11), None).unwrap();
        let texts = check(slow, "/");
        assert_eq!(texts.len(), 2, "{texts:?}");
        assert!(texts.iter().any(|t| t.starts_with("responsetimeout:")));
        assert!(texts.iter().any(|t| t.starts_with("healthythreshold:")));
    }

    #[test]
    fn targets_need_one_of_the_two_params() {
        let err = targets("assignToLoadBalancerRule", None, &[]).unwrap_err();
        assert_eq!(err.text, "Both instanceids and vmidipmap  can't be null");
        assert!(targets("assignToLoadBalancerRule", Some(Vec::new()), &[]).is_err());
        let vm = "0b7f3c1e-6a55-4d5e-9d8e-2c1f0a9b8c7d";
        let t = targets(
            "assignToLoadBalancerRule",
            Some(vec![vm.into()]),
            &[entry(&[("vmid", vm), ("vmip", "10.1.1.5")])],
        )
        .unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[1].ip, Some(Ipv4Addr::new(10, 1, 1, 5)));
        assert!(targets(
            "assignToLoadBalancerRule",
            None,
            &[entry(&[("vmid", vm), ("vmip", "10.1.1")])]
        )
        .is_err());
        assert!(targets(
            "assignToLoadBalancerRule",
            None,
            &[entry(&[("vmip", "10.1.1.5")])]
        )
        .is_err());
    }
}
