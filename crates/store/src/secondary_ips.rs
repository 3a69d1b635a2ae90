//! Secondary addresses of VMs' NICs (addIpToNic), see `012_nic_secondary_ips.sql`.
//!
//! A secondary address is reserved in its VM's network for that VM: no VM is deployed on it,
//! and a forward, a balancer member or a static NAT may send to it. Rules keep the address they
//! send to, so [`user_of`] tells whether one still does before the address goes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use domain::ids::{NetworkId, VmId};
use sqlx::any::AnyRow;

use crate::db::Db;
use crate::error::StoreError;
use crate::rows::{get, parsed};
use crate::rules::Tx;

/// A secondary address of a VM's NIC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecondaryIp {
    /// Its row id.
    pub id: i64,
    /// Its API id.
    pub uuid: String,
    /// Its VM.
    pub vm_id: VmId,
    /// The VM's network.
    pub network_id: NetworkId,
    /// The VM's owner.
    pub account_id: i64,
    /// The address.
    pub ip: Ipv4Addr,
}

/// A secondary address to write.
#[derive(Debug, Clone)]
pub struct NewSecondaryIp<'a> {
    /// Its API id.
    pub uuid: &'a str,
    /// Its VM.
    pub vm: VmId,
    /// The VM's network.
    pub network: NetworkId,
    /// The VM's owner.
    pub account: i64,
    /// The address.
    pub ip: Ipv4Addr,
    /// When (unix ms).
    pub created: i64,
}

const COLUMNS: &str = "id, uuid, vm_id, network_id, account_id, ip";

fn row(r: &AnyRow, what: &'static str) -> Result<SecondaryIp, StoreError> {
    Ok(SecondaryIp {
        id: get(r, "id", what)?,
        uuid: get(r, "uuid", what)?,
        vm_id: VmId::from(get::<i64>(r, "vm_id", what)?),
        network_id: NetworkId::from(get::<i64>(r, "network_id", what)?),
        account_id: get(r, "account_id", what)?,
        ip: parsed(r, "nic_secondary_ips", "ip", what)?,
    })
}

/// Writes a secondary address; the caller holds the network's lock and has checked that no
/// VM or other secondary address of the network has it.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn insert(tx: &mut Tx<'_>, new: &NewSecondaryIp<'_>) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO nic_secondary_ips (uuid, vm_id, network_id, account_id, ip, created) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(new.uuid)
    .bind(new.vm.get())
    .bind(new.network.get())
    .bind(new.account)
    .bind(new.ip.to_string())
    .bind(new.created)
    .execute(&mut **tx)
    .await
    .map_err(StoreError::db("adding a secondary address"))?;
    Ok(())
}

/// The secondary address with this API id.
///
/// # Errors
/// [`StoreError::Db`]; [`StoreError::Corrupt`] for an address that does not parse.
pub async fn by_uuid(db: &Db, uuid: &str) -> Result<Option<SecondaryIp>, StoreError> {
    const W: &str = "reading a secondary address";
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM nic_secondary_ips WHERE uuid = $1"
    ))
    .bind(uuid)
    .fetch_optional(db.pool())
    .await
    .map_err(StoreError::db(W))?
    .map(|r| row(&r, W))
    .transpose()
}

/// The secondary addresses of these VMs, by VM, each VM's in the order they were added.
///
/// # Errors
/// [`StoreError::Db`]; [`StoreError::Corrupt`].
pub async fn of_vms(db: &Db, vms: &[VmId]) -> Result<BTreeMap<VmId, Vec<SecondaryIp>>, StoreError> {
    const W: &str = "reading VMs' secondary addresses";
    let mut out: BTreeMap<VmId, Vec<SecondaryIp>> = BTreeMap::new();
    for chunk in vms.chunks(500) {
        let list = chunk
            .iter()
            .map(|v| v.get().to_string())
            .collect::<Vec<_>>()
            .join(",");
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM nic_secondary_ips WHERE vm_id IN ({list}) ORDER BY id"
        ))
        .fetch_all(db.pool())
        .await
        .map_err(StoreError::db(W))?;
        for r in &rows {
            let ip = row(r, W)?;
            out.entry(ip.vm_id).or_default().push(ip);
        }
    }
    Ok(out)
}

/// Which of these (VM, address) pairs are secondary addresses, read in the caller's
/// transaction (under the network's lock, so that none goes before the rule naming it is
/// written).
///
/// # Errors
/// [`StoreError::Db`]; [`StoreError::Corrupt`].
pub async fn held(
    tx: &mut Tx<'_>,
    pairs: &[(VmId, Ipv4Addr)],
) -> Result<BTreeSet<(VmId, Ipv4Addr)>, StoreError> {
    const W: &str = "reading secondary addresses";
    let vms: BTreeSet<i64> = pairs.iter().map(|(v, _)| v.get()).collect();
    let mut out = BTreeSet::new();
    if vms.is_empty() {
        return Ok(out);
    }
    let list = vms.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM nic_secondary_ips WHERE vm_id IN ({list})"
    ))
    .fetch_all(&mut **tx)
    .await
    .map_err(StoreError::db(W))?;
    for r in &rows {
        let ip = row(r, W)?;
        if pairs.contains(&(ip.vm_id, ip.ip)) {
            out.insert((ip.vm_id, ip.ip));
        }
    }
    Ok(out)
}

/// What still sends to `ip` of `vm`, in words, if anything: a forward or balancer member
/// (in any state: one being deleted still sends to it until its job ends) or a static NAT.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn user_of(
    tx: &mut Tx<'_>,
    vm: VmId,
    ip: Ipv4Addr,
) -> Result<Option<String>, StoreError> {
    const W: &str = "reading what uses a secondary address";
    let ip = ip.to_string();
    let forward = sqlx::query(
        "SELECT uuid FROM rules WHERE purpose = 'PortForwarding' AND vm_id = $1 AND vm_ip = $2",
    )
    .bind(vm.get())
    .bind(&ip)
    .fetch_optional(&mut **tx)
    .await
    .map_err(StoreError::db(W))?;
    if let Some(r) = forward {
        let uuid: String = get(&r, "uuid", W)?;
        return Ok(Some(format!("port forwarding rule {uuid}")));
    }
    let member = sqlx::query(
        "SELECT r.uuid FROM lb_members m JOIN rules r ON r.id = m.lb_id \
         WHERE m.vm_id = $1 AND m.vm_ip = $2",
    )
    .bind(vm.get())
    .bind(&ip)
    .fetch_optional(&mut **tx)
    .await
    .map_err(StoreError::db(W))?;
    if let Some(r) = member {
        let uuid: String = get(&r, "uuid", W)?;
        return Ok(Some(format!("load balancer rule {uuid}")));
    }
    let nat = sqlx::query("SELECT address FROM public_ips WHERE nat_vm_id = $1 AND nat_vm_ip = $2")
        .bind(vm.get())
        .bind(&ip)
        .fetch_optional(&mut **tx)
        .await
        .map_err(StoreError::db(W))?;
    if let Some(r) = nat {
        let address: String = get(&r, "address", W)?;
        return Ok(Some(format!("the static nat of ip address {address}")));
    }
    Ok(None)
}

/// Removes a secondary address.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn delete(tx: &mut Tx<'_>, id: i64) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM nic_secondary_ips WHERE id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::db("removing a secondary address"))?;
    Ok(())
}
