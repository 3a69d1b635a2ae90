//! Async jobs: the row written with the change it carries, its completion, and how
//! queryAsyncJobResult shows it.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::app::Caller;
use crate::db::now_ms;
use crate::resp::date;

/// Job status as CloudStack numbers it.
pub const PENDING: i64 = 0;
/// Succeeded.
pub const SUCCEEDED: i64 = 1;
/// Failed.
pub const FAILED: i64 = 2;

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
        id: i64,
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
        lb_id: i64,
        /// `stickiness` or `healthcheck`.
        kind: String,
    },
    /// A public IP.
    Ip {
        /// Its id.
        id: i64,
    },
    /// A VM.
    Vm {
        /// Its id.
        id: i64,
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
    pub target: Option<i64>,
    /// For [`Kind::Update`]: SQL column values to restore if the router refuses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo: Option<Undo>,
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
        }
    }
}

/// Values to put back into one rule row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Undo {
    /// The rule.
    pub rule_id: i64,
    /// Algorithm before.
    pub algorithm: Option<String>,
    /// Source CIDRs before.
    pub source_cidrs: String,
    /// Forward target before.
    pub vm_id: Option<i64>,
    /// Forward target address before.
    pub vm_ip: Option<String>,
    /// Private range before.
    pub private_start: Option<i64>,
    /// Private range end before.
    pub private_end: Option<i64>,
}

/// The full Java class name CloudStack reports as a job's `cmd`.
pub fn cmd_class(command: &str) -> String {
    let pkg = match command {
        c if c.contains("EgressFirewall") || c.contains("FirewallRule") => "user.firewall",
        c if c.contains("PortForwarding") => "user.firewall",
        c if c.contains("LoadBalancer") || c.contains("LBStickiness") || c.contains("LBHealth") => {
            "user.loadbalancer"
        }
        "associateIpAddress" | "disassociateIpAddress" => "user.address",
        "deployVirtualMachine" | "destroyVirtualMachine" => "user.vm",
        "deleteNetwork" => "user.network",
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
    pub network_id: Option<i64>,
    /// Payload.
    pub payload: Payload,
    /// `jobinstancetype`, e.g. `FirewallRule`.
    pub instance_type: Option<&'a str>,
    /// `jobinstanceid`.
    pub instance_uuid: Option<&'a str>,
}

/// Inserts a pending job; returns its id and uuid.
///
/// # Errors
/// The query's error.
pub async fn insert(
    tx: &mut Transaction<'_, Any>,
    caller: &Caller,
    job: NewJob<'_>,
) -> Result<(i64, String), sqlx::Error> {
    let uuid = uuid::Uuid::new_v4().to_string();
    let payload = serde_json::to_string(&job.payload).unwrap_or_else(|_| "{}".into());
    let id: i64 = sqlx::query(
        "INSERT INTO jobs (uuid, account_id, user_id, cmd, kind, network_id, payload, status, \
         result_code, instance_type, instance_uuid, created) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 0, $8, $9, $10) RETURNING id",
    )
    .bind(&uuid)
    .bind(caller.account_id)
    .bind(caller.user_id)
    .bind(job.command)
    .bind(kind_str(job.kind))
    .bind(job.network_id)
    .bind(payload)
    .bind(job.instance_type)
    .bind(job.instance_uuid)
    .bind(now_ms())
    .fetch_one(&mut **tx)
    .await?
    .try_get("id")?;
    Ok((id, uuid))
}

/// The kind's database spelling.
pub fn kind_str(k: Kind) -> &'static str {
    match k {
        Kind::Change => "change",
        Kind::Update => "update",
        Kind::DeployVm => "deploy_vm",
        Kind::DestroyVm => "destroy_vm",
        Kind::DeleteNetwork => "delete_network",
    }
}

/// Parses a kind.
pub fn parse_kind(s: &str) -> Kind {
    match s {
        "update" => Kind::Update,
        "deploy_vm" => Kind::DeployVm,
        "destroy_vm" => Kind::DestroyVm,
        "delete_network" => Kind::DeleteNetwork,
        _ => Kind::Change,
    }
}

/// Ends a pending job, in the caller's transaction; whether it was still pending (false: it
/// had ended already, e.g. on another server).
///
/// # Errors
/// The query's error.
pub async fn finish(
    tx: &mut Transaction<'_, Any>,
    job_id: i64,
    status: i64,
    code: i64,
    result: &Value,
) -> Result<bool, sqlx::Error> {
    sqlx::query(
        "UPDATE jobs SET status = $1, result_code = $2, result = $3, completed = $4 \
         WHERE id = $5 AND status = 0",
    )
    .bind(status)
    .bind(code)
    .bind(result.to_string())
    .bind(now_ms())
    .bind(job_id)
    .execute(&mut **tx)
    .await
    .map(|r| r.rows_affected() == 1)
}

/// Columns [`response`] reads: `jobs j JOIN accounts a JOIN domains d JOIN users u`.
pub const JOB_COLUMNS: &str = "j.id, j.uuid, j.cmd, j.status, j.result_code, j.result, \
     j.instance_type, j.instance_uuid, j.created, j.completed, a.uuid AS account_uuid, \
     a.name AS account_name, d.uuid AS domain_uuid, d.path AS domain_path, u.uuid AS user_uuid";

/// The `FROM` clause for [`JOB_COLUMNS`].
pub const JOB_FROM: &str = "jobs j JOIN accounts a ON a.id = j.account_id \
     JOIN domains d ON d.id = a.domain_id JOIN users u ON u.id = j.user_id";

/// A job as queryAsyncJobResult and listAsyncJobs show it.
///
/// # Errors
/// A column that is missing or of the wrong type.
pub fn response(row: &AnyRow) -> Result<Value, sqlx::Error> {
    let status: i64 = row.try_get("status")?;
    let mut o = serde_json::Map::new();
    o.insert(
        "accountid".into(),
        json!(row.try_get::<String, _>("account_uuid")?),
    );
    o.insert(
        "account".into(),
        json!(row.try_get::<String, _>("account_name")?),
    );
    o.insert(
        "domainid".into(),
        json!(row.try_get::<String, _>("domain_uuid")?),
    );
    o.insert(
        "domainpath".into(),
        json!(row.try_get::<String, _>("domain_path")?),
    );
    o.insert(
        "userid".into(),
        json!(row.try_get::<String, _>("user_uuid")?),
    );
    o.insert(
        "cmd".into(),
        json!(cmd_class(&row.try_get::<String, _>("cmd")?)),
    );
    o.insert("jobprocstatus".into(), json!(0));
    o.insert(
        "jobresultcode".into(),
        json!(row.try_get::<i64, _>("result_code")?),
    );
    if status != PENDING {
        o.insert("jobresulttype".into(), json!("object"));
        let result: Option<String> = row.try_get("result")?;
        let value = result
            .and_then(|r| serde_json::from_str::<Value>(&r).ok())
            .unwrap_or_else(|| json!({}));
        o.insert("jobresult".into(), value);
    }
    let it: Option<String> = row.try_get("instance_type")?;
    let iid: Option<String> = row.try_get("instance_uuid")?;
    if let (Some(t), Some(i)) = (it, iid) {
        o.insert("jobinstancetype".into(), json!(t));
        o.insert("jobinstanceid".into(), json!(i));
    }
    o.insert("created".into(), json!(date(row.try_get("created")?)));
    if let Some(c) = row.try_get::<Option<i64>, _>("completed")? {
        o.insert("completed".into(), json!(date(c)));
    }
    o.insert("jobid".into(), json!(row.try_get::<String, _>("uuid")?));
    o.insert("jobstatus".into(), json!(status));
    Ok(Value::Object(o))
}
