//! Database writes and lookups the job runner and the handlers share.

use std::net::Ipv4Addr;

use sqlx::{Any, Row, Transaction};

use crate::db::{now_ms, Db};
use crate::jobs::Undo;
use crate::plan::{Commit, PublicSegment};

fn s(e: sqlx::Error) -> String {
    e.to_string()
}

/// Prefix length and gateway of a public range.
///
/// # Errors
/// The database's error, as text.
pub async fn segment(db: &Db, vlan_range_id: i64) -> Result<Option<PublicSegment>, String> {
    let row = sqlx::query("SELECT gateway, netmask FROM vlan_ranges WHERE id = $1")
        .bind(vlan_range_id)
        .fetch_optional(db.pool())
        .await
        .map_err(s)?;
    Ok(row.and_then(|r| {
        let gateway: String = r.try_get("gateway").ok()?;
        let netmask: String = r.try_get("netmask").ok()?;
        let mask: Ipv4Addr = netmask.parse().ok()?;
        let prefix_len = u8::try_from(u32::from(mask).count_ones()).ok()?;
        Some(PublicSegment {
            prefix_len,
            gateway: gateway.parse().ok(),
        })
    }))
}

/// Takes the router's next generation number; returns the router's name, its host, and the
/// number.
///
/// # Errors
/// The database's error, as text, or a network without a router.
pub async fn next_generation(db: &Db, network_id: i64) -> Result<(String, String, u64), String> {
    let _w = db.write_lock().await;
    let row = sqlx::query(
        "UPDATE routers SET desired_generation = desired_generation + 1 WHERE network_id = $1 \
         RETURNING name, host, desired_generation",
    )
    .bind(network_id)
    .fetch_optional(db.pool())
    .await
    .map_err(s)?
    .ok_or("the network has no router")?;
    let name: String = row.try_get("name").map_err(s)?;
    let host: String = row.try_get("host").map_err(s)?;
    let g: i64 = row.try_get("desired_generation").map_err(s)?;
    Ok((name, host, u64::try_from(g).unwrap_or(0)))
}

/// Records the generation the router confirmed (never moving backwards), in the transaction
/// that records what it carried.
///
/// # Errors
/// The query's error.
pub async fn set_applied(
    tx: &mut Transaction<'_, Any>,
    network_id: i64,
    generation: u64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE routers SET applied_generation = $1, applied_at = $2, last_error = NULL, \
         state = 'Running' WHERE network_id = $3 AND applied_generation <= $1",
    )
    .bind(i64::try_from(generation).unwrap_or(i64::MAX))
    .bind(now_ms())
    .bind(network_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Records why the router did not take its last config.
///
/// # Errors
/// The database's error, as text.
pub async fn record_failure(db: &Db, network_id: i64, reason: &str) -> Result<(), String> {
    let _w = db.write_lock().await;
    sqlx::query("UPDATE routers SET last_error = $1 WHERE network_id = $2")
        .bind(reason)
        .bind(network_id)
        .execute(db.pool())
        .await
        .map_err(s)?;
    Ok(())
}

/// Marks a router that could not start (createNetwork then removes its network).
///
/// # Errors
/// The database's error, as text.
pub async fn set_router_error(db: &Db, network_id: i64, reason: &str) -> Result<(), String> {
    let _w = db.write_lock().await;
    sqlx::query("UPDATE routers SET state = 'Error', last_error = $1 WHERE network_id = $2")
        .bind(reason)
        .bind(network_id)
        .execute(db.pool())
        .await
        .map_err(s)?;
    Ok(())
}

/// Moves the generation counter past what a router already holds.
///
/// # Errors
/// The database's error, as text.
pub async fn bump_generation(db: &Db, network_id: i64, held: u64) -> Result<(), String> {
    let _w = db.write_lock().await;
    sqlx::query(
        "UPDATE routers SET desired_generation = $1 WHERE network_id = $2 AND desired_generation < $1",
    )
    .bind(i64::try_from(held).unwrap_or(i64::MAX))
    .bind(network_id)
    .execute(db.pool())
    .await
    .map_err(s)?;
    Ok(())
}

async fn each(tx: &mut Transaction<'_, Any>, sql: &str, ids: &[i64]) -> Result<(), sqlx::Error> {
    for chunk in ids.chunks(500) {
        if chunk.is_empty() {
            continue;
        }
        let list = chunk
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        sqlx::query(&sql.replace("{ids}", &list))
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Records what a router generation now holds.
///
/// # Errors
/// The query's error.
pub async fn apply_commit(tx: &mut Transaction<'_, Any>, c: &Commit) -> Result<(), sqlx::Error> {
    each(
        tx,
        "UPDATE rules SET state = 'Active', applied = 1 WHERE id IN ({ids}) AND state = 'Add'",
        &c.activate_rules,
    )
    .await?;
    each(
        tx,
        "UPDATE rules SET state = 'Add', applied = 0 WHERE id IN ({ids}) AND state = 'Active'",
        &c.demote_rules,
    )
    .await?;
    each(
        tx,
        "DELETE FROM lb_members WHERE lb_id IN ({ids})",
        &c.delete_rules,
    )
    .await?;
    each(
        tx,
        "DELETE FROM lb_policies WHERE lb_id IN ({ids})",
        &c.delete_rules,
    )
    .await?;
    each(
        tx,
        "UPDATE rules SET related_id = NULL WHERE related_id IN ({ids})",
        &c.delete_rules,
    )
    .await?;
    each(tx, "DELETE FROM rules WHERE id IN ({ids})", &c.delete_rules).await?;
    each(
        tx,
        "UPDATE lb_members SET state = 'Active', applied = 1 WHERE id IN ({ids}) AND state = 'Add'",
        &c.activate_members,
    )
    .await?;
    each(
        tx,
        "DELETE FROM lb_members WHERE id IN ({ids})",
        &c.delete_members,
    )
    .await?;
    each(
        tx,
        "UPDATE lb_policies SET state = 'Active', applied = 1 WHERE id IN ({ids}) AND state = 'Add'",
        &c.activate_policies,
    )
    .await?;
    each(
        tx,
        "DELETE FROM lb_policies WHERE id IN ({ids})",
        &c.delete_policies,
    )
    .await?;
    each(
        tx,
        "UPDATE public_ips SET state = 'Allocated', applied = 1 WHERE id IN ({ids}) AND state = 'Allocating'",
        &c.allocate_ips,
    )
    .await?;
    each(
        tx,
        "UPDATE public_ips SET state = 'Free', applied = 0, account_id = NULL, network_id = NULL, \
         source_nat = 0, job_id = NULL, allocated = NULL WHERE id IN ({ids}) AND state = 'Releasing'",
        &c.free_ips,
    )
    .await?;
    Ok(())
}

/// Undoes what a job the router refused had written: new rows go, rewritten rows get their old
/// values back; revoked rows stay revoked (shown as Deleting, as CloudStack leaves them).
///
/// # Errors
/// The query's error.
pub async fn rollback_job(
    tx: &mut Transaction<'_, Any>,
    job_id: i64,
    undo: Option<&Undo>,
) -> Result<(), sqlx::Error> {
    if let Some(u) = undo {
        sqlx::query(
            "UPDATE rules SET algorithm = $1, source_cidrs = $2, vm_id = $3, vm_ip = $4, \
             private_start = $5, private_end = $6, job_id = NULL WHERE id = $7",
        )
        .bind(u.algorithm.clone())
        .bind(u.source_cidrs.clone())
        .bind(u.vm_id)
        .bind(u.vm_ip.clone())
        .bind(u.private_start)
        .bind(u.private_end)
        .bind(u.rule_id)
        .execute(&mut **tx)
        .await?;
    }
    sqlx::query("DELETE FROM lb_members WHERE job_id = $1 AND state = 'Add'")
        .bind(job_id)
        .execute(&mut **tx)
        .await?;
    sqlx::query("DELETE FROM lb_policies WHERE job_id = $1 AND state = 'Add'")
        .bind(job_id)
        .execute(&mut **tx)
        .await?;
    // Opened firewall rules first (they point at their parent), then the parents.
    sqlx::query("DELETE FROM rules WHERE job_id = $1 AND state = 'Add' AND related_id IS NOT NULL")
        .bind(job_id)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "DELETE FROM lb_members WHERE lb_id IN (SELECT id FROM rules WHERE job_id = $1 AND state = 'Add')",
    )
    .bind(job_id)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "DELETE FROM lb_policies WHERE lb_id IN (SELECT id FROM rules WHERE job_id = $1 AND state = 'Add')",
    )
    .bind(job_id)
    .execute(&mut **tx)
    .await?;
    sqlx::query("DELETE FROM rules WHERE job_id = $1 AND state = 'Add'")
        .bind(job_id)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "UPDATE public_ips SET state = 'Free', applied = 0, account_id = NULL, network_id = NULL, \
         job_id = NULL, allocated = NULL WHERE job_id = $1 AND state = 'Allocating'",
    )
    .bind(job_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Records an event.
///
/// # Errors
/// The query's error.
#[allow(clippy::too_many_arguments)]
pub async fn event(
    tx: &mut Transaction<'_, Any>,
    account_id: i64,
    user_id: i64,
    event_type: &str,
    level: &str,
    state: &str,
    description: &str,
    resource_uuid: Option<&str>,
    job_uuid: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO events (uuid, account_id, user_id, event_type, level, state, description, \
         resource_uuid, job_uuid, created) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(account_id)
    .bind(user_id)
    .bind(event_type)
    .bind(level)
    .bind(state)
    .bind(description)
    .bind(resource_uuid)
    .bind(job_uuid)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Records that the caller's request scheduled job `job_uuid` (the event listEvents shows until
/// the job's own completion event).
///
/// # Errors
/// The query's error.
pub async fn scheduled(
    tx: &mut Transaction<'_, Any>,
    caller: &crate::app::Caller,
    event_type: &str,
    description: &str,
    resource_uuid: Option<&str>,
    job_uuid: &str,
) -> Result<(), sqlx::Error> {
    event(
        tx,
        caller.account_id,
        caller.user_id,
        event_type,
        "INFO",
        "Scheduled",
        description,
        resource_uuid,
        Some(job_uuid),
    )
    .await
}

/// The name of the network's router.
///
/// # Errors
/// The database's error, as text.
pub async fn router_name_of(db: &Db, network_id: i64) -> Result<Option<String>, String> {
    let row = sqlx::query("SELECT name FROM routers WHERE network_id = $1")
        .bind(network_id)
        .fetch_optional(db.pool())
        .await
        .map_err(s)?;
    row.map(|r| r.try_get::<String, _>("name").map_err(s))
        .transpose()
}

/// The VMs of a network: id and lab key.
///
/// # Errors
/// The query's error.
pub async fn network_vms(
    tx: &mut Transaction<'_, Any>,
    network_id: i64,
) -> Result<Vec<(i64, String)>, sqlx::Error> {
    sqlx::query("SELECT id, uuid FROM vms WHERE network_id = $1")
        .bind(network_id)
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("id")?, lab_key(&r.try_get::<String, _>("uuid")?))))
        .collect()
}

/// The key of a VM in its host's lab: the 32 hex digits of its id. Names are unique only in an
/// account, so they cannot name namespaces; the lab finds a VM by its [`lab::VmLabel`].
pub fn lab_key(vm_uuid: &str) -> String {
    vm_uuid.replace('-', "")
}

/// A VM as its host's lab knows it.
#[derive(Debug, Clone)]
pub struct LabVm {
    /// Its key ([`lab_key`]).
    pub key: String,
    /// Its guest address.
    pub ip: Ipv4Addr,
    /// Its name, account and network, by which `guestnet lab exec vm:…` finds it.
    pub label: lab::VmLabel,
}

const LAB_VM_SELECT: &str = "SELECT v.uuid, v.name, v.ip, a.name AS account, n.name AS network \
     FROM vms v JOIN accounts a ON a.id = v.account_id JOIN networks n ON n.id = v.network_id";

fn lab_vm(r: &sqlx::any::AnyRow) -> Result<LabVm, String> {
    let uuid: String = r.try_get("uuid").map_err(s)?;
    let ip: String = r.try_get("ip").map_err(s)?;
    Ok(LabVm {
        key: lab_key(&uuid),
        ip: ip
            .parse()
            .map_err(|e| format!("VM {uuid} has address {ip}: {e}"))?,
        label: lab::VmLabel {
            name: r.try_get("name").map_err(s)?,
            account: r.try_get("account").map_err(s)?,
            network: r.try_get("network").map_err(s)?,
        },
    })
}

/// A VM's lab key.
///
/// # Errors
/// The database's error, as text.
pub async fn vm_lab_key(db: &Db, vm_id: i64) -> Result<Option<String>, String> {
    let row = sqlx::query("SELECT uuid FROM vms WHERE id = $1")
        .bind(vm_id)
        .fetch_optional(db.pool())
        .await
        .map_err(s)?;
    row.map(|r| {
        r.try_get::<String, _>("uuid")
            .map(|u| lab_key(&u))
            .map_err(s)
    })
    .transpose()
}

/// A VM to deploy, as its host's lab is to know it.
///
/// # Errors
/// The database's error, as text.
pub async fn vm_for_deploy(db: &Db, vm_id: i64) -> Result<Option<LabVm>, String> {
    let row = sqlx::query(&format!("{LAB_VM_SELECT} WHERE v.id = $1"))
        .bind(vm_id)
        .fetch_optional(db.pool())
        .await
        .map_err(s)?;
    row.as_ref().map(lab_vm).transpose()
}

/// Sets a VM's state.
///
/// # Errors
/// The database's error, as text.
pub async fn set_vm_state(db: &Db, vm_id: i64, state: &str) -> Result<(), String> {
    let _w = db.write_lock().await;
    sqlx::query("UPDATE vms SET state = $1 WHERE id = $2")
        .bind(state)
        .bind(vm_id)
        .execute(db.pool())
        .await
        .map_err(s)?;
    Ok(())
}

/// Removes a VM's row (its rules and memberships are gone by then).
///
/// # Errors
/// The database's error, as text.
pub async fn delete_vm(db: &Db, vm_id: i64) -> Result<(), String> {
    let _w = db.write_lock().await;
    let mut tx = db.begin_write().await.map_err(s)?;
    delete_vm_in(&mut tx, vm_id).await.map_err(s)?;
    tx.commit().await.map_err(s)
}

/// Removes a VM's row inside a transaction.
///
/// # Errors
/// The query's error.
pub async fn delete_vm_in(tx: &mut Transaction<'_, Any>, vm_id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM lb_members WHERE vm_id = $1")
        .bind(vm_id)
        .execute(&mut **tx)
        .await?;
    sqlx::query("UPDATE rules SET vm_id = NULL WHERE vm_id = $1")
        .bind(vm_id)
        .execute(&mut **tx)
        .await?;
    sqlx::query("DELETE FROM vms WHERE id = $1")
        .bind(vm_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Removes a deleted network's rows: its rules, VMs, router; its IPs go back to Free.
///
/// # Errors
/// The database's error, as text.
pub async fn delete_network(db: &Db, network_id: i64) -> Result<(), String> {
    let _w = db.write_lock().await;
    let mut tx = db.begin_write().await.map_err(s)?;
    for sql in [
        "DELETE FROM lb_members WHERE lb_id IN (SELECT id FROM rules WHERE network_id = $1)",
        "DELETE FROM lb_policies WHERE lb_id IN (SELECT id FROM rules WHERE network_id = $1)",
        "UPDATE rules SET related_id = NULL WHERE network_id = $1",
        "DELETE FROM rules WHERE network_id = $1",
        "DELETE FROM lb_members WHERE vm_id IN (SELECT id FROM vms WHERE network_id = $1)",
        "DELETE FROM vms WHERE network_id = $1",
        "UPDATE public_ips SET state = 'Free', applied = 0, account_id = NULL, network_id = NULL, \
         source_nat = 0, job_id = NULL, allocated = NULL WHERE network_id = $1",
        "DELETE FROM routers WHERE network_id = $1",
        "DELETE FROM networks WHERE id = $1",
    ] {
        sqlx::query(sql)
            .bind(network_id)
            .execute(&mut *tx)
            .await
            .map_err(s)?;
    }
    tx.commit().await.map_err(s)
}

/// The running VMs of a network, as their host's lab is to know them.
///
/// # Errors
/// The database's error, as text.
pub async fn running_vms(db: &Db, network_id: i64) -> Result<Vec<LabVm>, String> {
    sqlx::query(&format!(
        "{LAB_VM_SELECT} WHERE v.network_id = $1 AND v.state = 'Running'"
    ))
    .bind(network_id)
    .fetch_all(db.pool())
    .await
    .map_err(s)?
    .iter()
    .map(lab_vm)
    .collect()
}

/// A network's router as the job runner sees it.
#[derive(Debug, Clone)]
pub struct RouterRow {
    /// Its name.
    pub name: String,
    /// The host it runs on.
    pub host: String,
    /// `Starting`, `Running` or `Error`.
    pub state: String,
    /// The generation it last confirmed.
    pub applied: i64,
    /// Why its last apply failed, if it did.
    pub last_error: Option<String>,
}

/// A network's router.
///
/// # Errors
/// The database's error, as text.
pub async fn router_of(db: &Db, network_id: i64) -> Result<Option<RouterRow>, String> {
    let row = sqlx::query(
        "SELECT name, host, state, applied_generation, last_error FROM routers \
         WHERE network_id = $1",
    )
    .bind(network_id)
    .fetch_optional(db.pool())
    .await
    .map_err(s)?;
    row.map(|r| {
        Ok(RouterRow {
            name: r.try_get("name").map_err(s)?,
            host: r.try_get("host").map_err(s)?,
            state: r.try_get("state").map_err(s)?,
            applied: r.try_get("applied_generation").map_err(s)?,
            last_error: r.try_get("last_error").map_err(s)?,
        })
    })
    .transpose()
}

/// The networks whose routers run on `host`.
///
/// # Errors
/// The database's error, as text.
pub async fn networks_on(db: &Db, host: &str) -> Result<Vec<i64>, String> {
    sqlx::query("SELECT network_id FROM routers WHERE host = $1 ORDER BY network_id")
        .bind(host)
        .fetch_all(db.pool())
        .await
        .map_err(s)?
        .iter()
        .map(|r| r.try_get("network_id").map_err(s))
        .collect()
}
