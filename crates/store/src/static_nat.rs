//! Static NAT: a public IP 1:1 NAT to a VM, kept on the IP's row (see `010_static_nat.sql`).
//!
//! Enabling and disabling mark the IP with the job that brings the change to the router, as a
//! rule row is marked; the IP forwarding rules of the IP (purpose `StaticNat`) and the firewall
//! rules they opened are revoked with the static NAT.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use domain::ids::{IpId, JobId, VmId};
use domain::model::IpRow;

use crate::error::StoreError;
use crate::rules::{Tx, IP_COLUMNS};

/// Enables `ip`'s static NAT to `vm` at `vm_ip`, carried by `job`.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn enable(
    tx: &mut Tx<'_>,
    ip: IpId,
    vm: VmId,
    vm_ip: Ipv4Addr,
    job: JobId,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE public_ips SET nat_vm_id = $1, nat_vm_ip = $2, nat_state = 'Add', \
         nat_applied = 0, job_id = $3 WHERE id = $4",
    )
    .bind(vm.get())
    .bind(vm_ip.to_string())
    .bind(job.get())
    .bind(ip.get())
    .execute(&mut **tx)
    .await
    .map_err(StoreError::db("enabling static NAT"))?;
    Ok(())
}

/// Disables the static NAT of `ip` with `job`: its IP forwarding rules and the firewall rules
/// they opened are revoked, and the static NAT marked Revoke.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn disable(tx: &mut Tx<'_>, ip: IpId, job: JobId) -> Result<(), StoreError> {
    for sql in [
        "UPDATE rules SET state = 'Revoke', job_id = $1 WHERE related_id IN \
         (SELECT id FROM rules WHERE purpose = 'StaticNat' AND ip_id = $2)",
        "UPDATE rules SET state = 'Revoke', job_id = $1 WHERE purpose = 'StaticNat' AND ip_id = $2",
        "UPDATE public_ips SET nat_state = 'Revoke', job_id = $1 WHERE id = $2 \
         AND nat_state IS NOT NULL",
    ] {
        sqlx::query(sql)
            .bind(job.get())
            .bind(ip.get())
            .execute(&mut **tx)
            .await
            .map_err(StoreError::db("disabling static NAT"))?;
    }
    Ok(())
}

/// Disables, with `job`, every static NAT to `vm` (it is being destroyed).
///
/// # Errors
/// [`StoreError::Db`].
pub async fn disable_for_vm(tx: &mut Tx<'_>, vm: VmId, job: JobId) -> Result<(), StoreError> {
    let ips: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM public_ips WHERE nat_vm_id = $1 AND nat_state <> 'Revoke' ORDER BY id",
    )
    .bind(vm.get())
    .fetch_all(&mut **tx)
    .await
    .map_err(StoreError::db("reading a VM's static NATs"))?;
    for ip in ips {
        disable(tx, IpId::from(ip), job).await?;
    }
    Ok(())
}

/// The public address of the live static NAT to `vm_ip` of `vm`, if there is one.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn of_vm(
    tx: &mut Tx<'_>,
    vm: VmId,
    vm_ip: Ipv4Addr,
) -> Result<Option<String>, StoreError> {
    sqlx::query_scalar(
        "SELECT address FROM public_ips WHERE nat_vm_id = $1 AND nat_vm_ip = $2 \
         AND nat_state <> 'Revoke' ORDER BY id LIMIT 1",
    )
    .bind(vm.get())
    .bind(vm_ip.to_string())
    .fetch_optional(&mut **tx)
    .await
    .map_err(StoreError::db("reading a VM's static NAT"))
}

/// Each of `ips` with its address and whether it has a live static NAT (enabled or being
/// enabled).
///
/// # Errors
/// [`StoreError::Db`].
pub async fn among(
    tx: &mut Tx<'_>,
    ips: &[IpId],
) -> Result<BTreeMap<IpId, (String, bool)>, StoreError> {
    let mut out = BTreeMap::new();
    if ips.is_empty() {
        return Ok(out);
    }
    let list = ips
        .iter()
        .map(|i| i.get().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let rows: Vec<(i64, String, Option<String>)> = sqlx::query_as(&format!(
        "SELECT id, address, nat_state FROM public_ips WHERE id IN ({list})"
    ))
    .fetch_all(&mut **tx)
    .await
    .map_err(StoreError::db("reading static NATs"))?;
    for (id, address, state) in rows {
        let live = state.is_some_and(|s| s != "Revoke");
        out.insert(IpId::from(id), (address, live));
    }
    Ok(out)
}

/// The IP `ip` as the transaction sees it (under the network's lock: as it stays until the
/// commit).
///
/// # Errors
/// [`StoreError::Db`]; [`StoreError::Corrupt`].
pub async fn ip_in(tx: &mut Tx<'_>, ip: IpId) -> Result<Option<IpRow>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {IP_COLUMNS} FROM public_ips WHERE id = $1"
    ))
    .bind(ip.get())
    .fetch_optional(&mut **tx)
    .await
    .map_err(StoreError::db("reading a public IP"))?;
    row.as_ref().map(crate::rules::ip).transpose()
}

/// How many live (not revoked) port forwards and load balancers `ip` carries.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn forwards_and_balancers(tx: &mut Tx<'_>, ip: IpId) -> Result<(i64, i64), StoreError> {
    let row: (i64, i64) = sqlx::query_as(
        "SELECT \
         COALESCE(SUM(CASE WHEN purpose = 'PortForwarding' THEN 1 ELSE 0 END), 0), \
         COALESCE(SUM(CASE WHEN purpose = 'LoadBalancing' THEN 1 ELSE 0 END), 0) \
         FROM rules WHERE ip_id = $1 AND state <> 'Revoke'",
    )
    .bind(ip.get())
    .fetch_one(&mut **tx)
    .await
    .map_err(StoreError::db("reading an IP's rules"))?;
    Ok(row)
}
