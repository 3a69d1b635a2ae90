//! The networks table and what hangs off a network: reading networks (one, or a listing),
//! creating one with its router, scheduling its deletion, and removing its rows.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use domain::ids::{AccountId, JobId, NetworkId};
use domain::job::{JobStatus, Kind};
use domain::model::NetworkRow;
use ipnet::Ipv4Net;
use sqlx::{Any, Transaction};

use crate::db::Db;
use crate::error::StoreError;
use crate::filter::Filter;
use crate::owners::Owners;
use crate::rows::{get, parsed};
use crate::rules::NETWORK_COLUMNS;
use crate::work::ChangeTx;

/// The `FROM` clause of [`NETWORK_COLUMNS`].
const NETWORK_FROM: &str = "networks n JOIN network_offerings o ON o.id = n.offering_id";

/// Removes a deleted network's rows: its rules, VMs, router; its IPs go back to Free.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn delete_network(db: &Db, network_id: i64) -> Result<(), StoreError> {
    let _writer = db.writer().await;
    let mut tx = db
        .begin_write()
        .await
        .map_err(StoreError::db("removing a network"))?;
    for sql in [
        "DELETE FROM resource_tags WHERE (resource_type IN ('FirewallRule', \
         'PortForwardingRule', 'LoadBalancer') AND resource_id IN \
         (SELECT id FROM rules WHERE network_id = $1)) \
         OR (resource_type = 'UserVm' AND resource_id IN \
         (SELECT id FROM vms WHERE network_id = $1)) \
         OR (resource_type = 'PublicIpAddress' AND resource_id IN \
         (SELECT id FROM public_ips WHERE network_id = $1)) \
         OR (resource_type = 'Network' AND resource_id = $1)",
        "DELETE FROM lb_members WHERE lb_id IN (SELECT id FROM rules WHERE network_id = $1)",
        "DELETE FROM lb_policies WHERE lb_id IN (SELECT id FROM rules WHERE network_id = $1)",
        "UPDATE rules SET related_id = NULL WHERE network_id = $1",
        "DELETE FROM rules WHERE network_id = $1",
        "DELETE FROM lb_members WHERE vm_id IN (SELECT id FROM vms WHERE network_id = $1)",
        "DELETE FROM nic_secondary_ips WHERE network_id = $1",
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
            .map_err(StoreError::db("removing a network"))?;
    }
    tx.commit()
        .await
        .map_err(StoreError::db("removing a network"))
}

async fn one(
    db: &Db,
    cond: &str,
    arg: crate::filter::Arg,
) -> Result<Option<NetworkRow>, StoreError> {
    let mut f = Filter::new();
    f.and(cond, [arg]);
    let sql = format!(
        "SELECT {NETWORK_COLUMNS} FROM {NETWORK_FROM} {}",
        f.where_clause()
    );
    f.bind(sqlx::query(&sql))
        .fetch_optional(db.pool())
        .await
        .map_err(StoreError::db("reading a network"))?
        .as_ref()
        .map(crate::rules::network)
        .transpose()
}

/// A network by internal id.
///
/// # Errors
/// [`StoreError::Db`]; [`StoreError::Corrupt`] for a stored address that does not parse.
pub async fn by_id(db: &Db, id: NetworkId) -> Result<Option<NetworkRow>, StoreError> {
    one(db, "n.id = $?", id.get().into()).await
}

/// A network by uuid.
///
/// # Errors
/// As [`by_id`].
pub async fn by_uuid(db: &Db, uuid: &str) -> Result<Option<NetworkRow>, StoreError> {
    one(db, "n.uuid = $?", uuid.into()).await
}

/// What listNetworks asks for.
#[derive(Debug, Clone)]
pub struct NetworkQuery<'a> {
    /// The network's uuid.
    pub uuid: Option<&'a str>,
    /// Its name.
    pub name: Option<&'a str>,
    /// Whose networks.
    pub owners: Owners,
}

/// A network as listNetworks shows it: with its offering's uuid and name.
#[derive(Debug, Clone)]
pub struct NetworkListing {
    /// The network.
    pub network: NetworkRow,
    /// Its offering's uuid.
    pub offering_uuid: String,
    /// Its offering's name.
    pub offering_name: String,
}

/// The networks matching `q`, oldest first.
///
/// # Errors
/// As [`by_id`].
pub async fn list(db: &Db, q: &NetworkQuery<'_>) -> Result<Vec<NetworkListing>, StoreError> {
    const W: &str = "reading a network";
    let mut f = Filter::new();
    if let Some(uuid) = q.uuid {
        f.and("n.uuid = $?", [uuid]);
    }
    if let Some(name) = q.name {
        f.and("n.name = $?", [name]);
    }
    q.owners.restrict(&mut f, "n.account_id");
    crate::filter::page(
        db,
        &format!("{NETWORK_COLUMNS}, o.uuid AS offering_uuid, o.name AS offering_name"),
        NETWORK_FROM,
        &f,
        "n.id",
        None,
        0,
    )
    .await?
    .iter()
    .map(|r| {
        Ok(NetworkListing {
            network: crate::rules::network(r)?,
            offering_uuid: get(r, "offering_uuid", W)?,
            offering_name: get(r, "offering_name", W)?,
        })
    })
    .collect()
}

/// Whether the network has a deleteNetwork job pending.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn being_deleted(db: &Db, network: NetworkId) -> Result<bool, StoreError> {
    Ok(sqlx::query(
        "SELECT id FROM jobs WHERE network_id = $1 AND kind = $2 AND status = $3 LIMIT 1",
    )
    .bind(network.get())
    .bind(Kind::DeleteNetwork.as_str())
    .bind(JobStatus::Pending.code())
    .fetch_optional(db.pool())
    .await
    .map_err(StoreError::db("reading a network's pending delete"))?
    .is_some())
}

/// Every network's guest CIDR.
///
/// # Errors
/// [`StoreError::Db`]; [`StoreError::Corrupt`] for a CIDR that does not parse.
pub async fn guest_cidrs(tx: &mut Transaction<'_, Any>) -> Result<Vec<Ipv4Net>, StoreError> {
    const W: &str = "reading guest networks";
    sqlx::query("SELECT cidr FROM networks")
        .fetch_all(&mut **tx)
        .await
        .map_err(StoreError::db(W))?
        .iter()
        .map(|r| parsed(r, "networks", "cidr", W))
        .collect()
}

/// Renames network `id` and sets its description (updateNetwork).
///
/// # Errors
/// [`StoreError::Db`].
pub async fn set_names(
    tx: &mut Transaction<'_, Any>,
    id: NetworkId,
    name: &str,
    display_text: &str,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE networks SET name = $1, display_text = $2 WHERE id = $3")
        .bind(name)
        .bind(display_text)
        .bind(id.get())
        .execute(&mut **tx)
        .await
        .map_err(StoreError::db("renaming a network"))?;
    Ok(())
}

/// A network to create.
#[derive(Debug, Clone)]
pub struct NewNetwork<'a> {
    /// Its API id.
    pub uuid: &'a str,
    /// Its name.
    pub name: &'a str,
    /// Its display text.
    pub display_text: &'a str,
    /// Its owner.
    pub account: AccountId,
    /// Its zone.
    pub zone_id: i64,
    /// Its offering.
    pub offering_id: i64,
    /// Its guest CIDR.
    pub cidr: Ipv4Net,
    /// Its gateway.
    pub gateway: Ipv4Addr,
    /// Its VLAN (see [`free_vlan`]).
    pub vlan: u16,
    /// Its DNS domain.
    pub network_domain: &'a str,
    /// Creation time (unix ms).
    pub created: i64,
}

/// Writes an Implemented network and its router (Starting on `host`, no generation yet);
/// returns the network's id.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn insert(
    tx: &mut Transaction<'_, Any>,
    n: &NewNetwork<'_>,
    host: &str,
) -> Result<NetworkId, StoreError> {
    const W: &str = "inserting a network";
    let row = sqlx::query(
        "INSERT INTO networks (uuid, name, display_text, account_id, zone_id, offering_id, \
         cidr, gateway, state, created, vlan, network_domain) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'Implemented', $9, $10, $11) RETURNING id",
    )
    .bind(n.uuid)
    .bind(n.name)
    .bind(n.display_text)
    .bind(n.account.get())
    .bind(n.zone_id)
    .bind(n.offering_id)
    .bind(n.cidr.to_string())
    .bind(n.gateway.to_string())
    .bind(n.created)
    .bind(i64::from(n.vlan))
    .bind(n.network_domain)
    .fetch_one(&mut **tx)
    .await
    .map_err(StoreError::db(W))?;
    let id: i64 = get(&row, "id", W)?;
    sqlx::query(
        "INSERT INTO routers (uuid, name, network_id, host, state, desired_generation, \
         applied_generation, created) VALUES ($1, $2, $3, $4, 'Starting', 0, 0, $5)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(format!("r-{id}-VM"))
    .bind(id)
    .bind(host)
    .bind(n.created)
    .execute(&mut **tx)
    .await
    .map_err(StoreError::db("inserting a router"))?;
    Ok(NetworkId::from(id))
}

/// The lowest VLAN of the zone's guest ranges that no network of the zone has, taken under
/// the zone's lock: the zone's physical-network row is locked on PostgreSQL (SQLite has one
/// writer), so concurrent creates take VLANs one after the other; the unique index on
/// (zone, VLAN) stands behind it. `Ok(None)` when every VLAN is taken.
///
/// # Errors
/// [`StoreError::Db`]; [`StoreError::Corrupt`] for a stored range that does not parse.
pub async fn free_vlan(change: &mut ChangeTx, zone_id: i64) -> Result<Option<u16>, StoreError> {
    let pn = crate::zones::lock_physical_network(change, zone_id).await?;
    let used = crate::zones::used_vlans(change.conn(), zone_id).await?;
    let used: BTreeSet<u16> = used.into_iter().map(|(v, _)| v).collect();
    Ok(pn.vlans.lowest_free(&used))
}

/// The names of the network's VMs, oldest first.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn vm_names(
    tx: &mut Transaction<'_, Any>,
    network: NetworkId,
) -> Result<Vec<String>, StoreError> {
    const W: &str = "reading a network's VMs";
    sqlx::query("SELECT name FROM vms WHERE network_id = $1 ORDER BY id")
        .bind(network.get())
        .fetch_all(&mut **tx)
        .await
        .map_err(StoreError::db(W))?
        .iter()
        .map(|r| get(r, "name", W))
        .collect()
}

/// Schedules a network's deletion by `job`: its rules, members and policies are revoked, its
/// addresses other than the source-NAT one released (that one stays until the end: a router
/// config needs one; it is freed with the network's rows once the router dropped the rest),
/// and the network set Destroy.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn schedule_delete(
    tx: &mut Transaction<'_, Any>,
    network: NetworkId,
    job: JobId,
) -> Result<(), StoreError> {
    for sql in [
        "UPDATE lb_members SET state = 'Revoke', job_id = $1 \
         WHERE lb_id IN (SELECT id FROM rules WHERE network_id = $2)",
        "UPDATE lb_policies SET state = 'Revoke', job_id = $1 \
         WHERE lb_id IN (SELECT id FROM rules WHERE network_id = $2)",
        "UPDATE rules SET state = 'Revoke', job_id = $1 WHERE network_id = $2",
        "UPDATE public_ips SET state = 'Releasing', job_id = $1 \
         WHERE network_id = $2 AND source_nat = 0",
    ] {
        sqlx::query(sql)
            .bind(job.get())
            .bind(network.get())
            .execute(&mut **tx)
            .await
            .map_err(StoreError::db("scheduling a network's deletion"))?;
    }
    sqlx::query("UPDATE networks SET state = 'Destroy' WHERE id = $1")
        .bind(network.get())
        .execute(&mut **tx)
        .await
        .map_err(StoreError::db("scheduling a network's deletion"))?;
    Ok(())
}
