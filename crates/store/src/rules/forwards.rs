//! What a change of an existing rule reads and writes: the job still carrying a rule, the VM
//! a forward sends to, and a forward's new target.

use domain::checks;
use domain::ids::{JobId, RuleId, VmId};
use ipnet::Ipv4Net;
use sqlx::{Any, Row, Transaction};

use crate::db::Db;
use crate::error::StoreError;

/// The uuid of the pending job that still carries `rule` (its creation, or an earlier
/// change), if there is one.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn pending_job(
    tx: &mut Transaction<'_, Any>,
    rule: RuleId,
) -> Result<Option<String>, StoreError> {
    const W: &str = "reading a rule's pending job";
    let row = sqlx::query(
        "SELECT j.uuid FROM rules r JOIN jobs j ON j.id = r.job_id \
         WHERE r.id = $1 AND j.status = 0",
    )
    .bind(rule.get())
    .fetch_optional(&mut **tx)
    .await
    .map_err(StoreError::db(W))?;
    row.map(|r| r.try_get("uuid").map_err(StoreError::db(W)))
        .transpose()
}

/// A VM as a forward's target sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardVm {
    /// The VM's id.
    pub id: i64,
    /// Its guest address, as stored.
    pub ip: String,
    /// Its network.
    pub network_id: i64,
    /// Its owner.
    pub account_id: i64,
}

/// The VM with this uuid, if there is one.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn forward_vm(db: &Db, uuid: &str) -> Result<Option<ForwardVm>, StoreError> {
    const W: &str = "reading a forward's VM";
    let Some(row) = sqlx::query("SELECT id, ip, network_id, account_id FROM vms WHERE uuid = $1")
        .bind(uuid)
        .fetch_optional(db.pool())
        .await
        .map_err(StoreError::db(W))?
    else {
        return Ok(None);
    };
    let get = |col: &str| row.try_get::<i64, _>(col).map_err(StoreError::db(W));
    Ok(Some(ForwardVm {
        id: get("id")?,
        ip: row.try_get("ip").map_err(StoreError::db(W))?,
        network_id: get("network_id")?,
        account_id: get("account_id")?,
    }))
}

/// A forward's new values: what updatePortForwardingRule may change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardChange {
    /// Private port range.
    pub private: (i64, i64),
    /// Target VM.
    pub vm_id: Option<VmId>,
    /// Target address.
    pub vm_ip: Option<String>,
    /// Source CIDRs.
    pub sources: Vec<Ipv4Net>,
    /// Shown or hidden.
    pub display: bool,
}

/// Writes a forward's new values, carried by `job` (the network's worker reads the rows of
/// the jobs it takes, so its copy gets the new values), and renders its object again.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn set_forward(
    tx: &mut Transaction<'_, Any>,
    dialect: crate::db::Dialect,
    rule: RuleId,
    change: &ForwardChange,
    job: JobId,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE rules SET private_start = $1, private_end = $2, vm_id = $3, vm_ip = $4, \
         source_cidrs = $5, display = $6, job_id = $7 WHERE id = $8",
    )
    .bind(change.private.0)
    .bind(change.private.1)
    .bind(change.vm_id.map(VmId::get))
    .bind(change.vm_ip.clone())
    .bind(checks::join_cidrs(&change.sources))
    .bind(i64::from(change.display))
    .bind(job.get())
    .bind(rule.get())
    .execute(&mut **tx)
    .await
    .map_err(StoreError::db("updating a forward"))?;
    super::json::store_json(&mut **tx, dialect, rule).await
}
