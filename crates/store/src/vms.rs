//! The VMs table as the job runner and the hosts' labs need it.

use std::net::Ipv4Addr;

use sqlx::{Any, Row, Transaction};

use crate::db::Db;
use crate::error::StoreError;

/// The VMs of a network: id and lab key.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn network_vms(
    tx: &mut Transaction<'_, Any>,
    network_id: i64,
) -> Result<Vec<(i64, String)>, StoreError> {
    sqlx::query("SELECT id, uuid FROM vms WHERE network_id = $1")
        .bind(network_id)
        .fetch_all(&mut **tx)
        .await
        .and_then(|rows| {
            rows.iter()
                .map(|r| Ok((r.try_get("id")?, lab_key(&r.try_get::<String, _>("uuid")?))))
                .collect()
        })
        .map_err(StoreError::db("reading a network's VMs"))
}

/// The key of a VM in its host's lab: the 32 hex digits of its id. Names are unique only in an
/// account, so they cannot name namespaces; the lab finds a VM by its label
/// ([`LabVm`]'s name, account and network).
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
    /// Its name, by which (with its account and network) `guestnet lab exec vm:…` finds it.
    pub name: String,
    /// Its account's name.
    pub account: String,
    /// Its network's name.
    pub network: String,
}

const LAB_VM_SELECT: &str = "SELECT v.uuid, v.name, v.ip, a.name AS account, n.name AS network \
     FROM vms v JOIN accounts a ON a.id = v.account_id JOIN networks n ON n.id = v.network_id";

fn lab_vm(r: &sqlx::any::AnyRow) -> Result<LabVm, StoreError> {
    let uuid: String = r.try_get("uuid").map_err(StoreError::db("reading a VM"))?;
    let ip: String = r.try_get("ip").map_err(StoreError::db("reading a VM"))?;
    Ok(LabVm {
        key: lab_key(&uuid),
        ip: ip.parse().map_err(|_| StoreError::Corrupt {
            table: "vms",
            column: "ip",
            value: ip.clone(),
        })?,
        name: r.try_get("name").map_err(StoreError::db("reading a VM"))?,
        account: r
            .try_get("account")
            .map_err(StoreError::db("reading a VM"))?,
        network: r
            .try_get("network")
            .map_err(StoreError::db("reading a VM"))?,
    })
}

/// A VM's lab key.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn vm_lab_key(db: &Db, vm_id: i64) -> Result<Option<String>, StoreError> {
    let row = sqlx::query("SELECT uuid FROM vms WHERE id = $1")
        .bind(vm_id)
        .fetch_optional(db.pool())
        .await
        .map_err(StoreError::db("reading a VM"))?;
    row.map(|r| {
        r.try_get::<String, _>("uuid")
            .map(|u| lab_key(&u))
            .map_err(StoreError::db("reading a VM"))
    })
    .transpose()
}

/// A VM to deploy, as its host's lab is to know it.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn vm_for_deploy(db: &Db, vm_id: i64) -> Result<Option<LabVm>, StoreError> {
    let row = sqlx::query(&format!("{LAB_VM_SELECT} WHERE v.id = $1"))
        .bind(vm_id)
        .fetch_optional(db.pool())
        .await
        .map_err(StoreError::db("reading a VM"))?;
    row.as_ref().map(lab_vm).transpose()
}

/// Sets a VM's state.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn set_vm_state(db: &Db, vm_id: i64, state: &str) -> Result<(), StoreError> {
    let _writer = db.writer().await;
    sqlx::query("UPDATE vms SET state = $1 WHERE id = $2")
        .bind(state)
        .bind(vm_id)
        .execute(db.pool())
        .await
        .map_err(StoreError::db("setting a VM's state"))?;
    Ok(())
}

/// Removes a VM's row (its rules and memberships are gone by then).
///
/// # Errors
/// [`StoreError::Db`].
pub async fn delete_vm(db: &Db, vm_id: i64) -> Result<(), StoreError> {
    let _writer = db.writer().await;
    let mut tx = db
        .begin_write()
        .await
        .map_err(StoreError::db("removing a VM"))?;
    delete_vm_in(&mut tx, vm_id).await?;
    tx.commit().await.map_err(StoreError::db("removing a VM"))
}

/// Removes a VM's row inside a transaction.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn delete_vm_in(tx: &mut Transaction<'_, Any>, vm_id: i64) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM lb_members WHERE vm_id = $1")
        .bind(vm_id)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::db("removing a VM"))?;
    sqlx::query("UPDATE rules SET vm_id = NULL WHERE vm_id = $1")
        .bind(vm_id)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::db("removing a VM"))?;
    sqlx::query("DELETE FROM vms WHERE id = $1")
        .bind(vm_id)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::db("removing a VM"))?;
    Ok(())
}

/// The running VMs of a network, as their host's lab is to know them.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn running_vms(db: &Db, network_id: i64) -> Result<Vec<LabVm>, StoreError> {
    sqlx::query(&format!(
        "{LAB_VM_SELECT} WHERE v.network_id = $1 AND v.state = 'Running'"
    ))
    .bind(network_id)
    .fetch_all(db.pool())
    .await
    .map_err(StoreError::db("reading a network's VMs"))?
    .iter()
    .map(lab_vm)
    .collect()
}
