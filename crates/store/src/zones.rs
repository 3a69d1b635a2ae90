//! A zone's guest side: its physical network (the guest VLANs its networks are given) and the
//! DNS servers its guests are handed.

use std::net::Ipv4Addr;

use domain::guest::VlanRanges;
use domain::ids::NetworkId;
use sqlx::any::AnyRow;
use sqlx::{Any, Transaction};

use crate::db::{now_ms, Db, Dialect};
use crate::error::StoreError;
use crate::rows::get;
use crate::work::ChangeTx;

/// A zone's physical network: PhysicalNetworkResponse's facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhysicalNetwork {
    /// Internal id.
    pub id: i64,
    /// API id.
    pub uuid: String,
    /// Name.
    pub name: String,
    /// Its zone.
    pub zone_id: i64,
    /// The guest VLANs.
    pub vlans: VlanRanges,
}

const PN_COLUMNS: &str = "id, uuid, name, zone_id, vlan";

fn physical_network(r: &AnyRow) -> Result<PhysicalNetwork, StoreError> {
    const W: &str = "reading a physical network";
    let text: String = get(r, "vlan", W)?;
    Ok(PhysicalNetwork {
        id: get(r, "id", W)?,
        uuid: get(r, "uuid", W)?,
        name: get(r, "name", W)?,
        zone_id: get(r, "zone_id", W)?,
        vlans: VlanRanges::parse(&text).map_err(|_| StoreError::Corrupt {
            table: "physical_networks",
            column: "vlan",
            value: text,
        })?,
    })
}

/// Makes the zone's physical network with `vlans` unless it has one (a first start, or a
/// database made before physical networks); true when it made it.
///
/// # Errors
/// [`StoreError::Db`], also when another server made it meanwhile (a unique key).
pub async fn ensure_physical_network(
    db: &Db,
    zone_id: i64,
    name: &str,
    vlans: &VlanRanges,
) -> Result<bool, StoreError> {
    const W: &str = "making the zone's physical network";
    if physical_network_of(db, zone_id).await?.is_some() {
        return Ok(false);
    }
    let mut change = db.change(None).await?;
    sqlx::query(
        "INSERT INTO physical_networks (uuid, name, zone_id, vlan, created) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(name)
    .bind(zone_id)
    .bind(vlans.to_string())
    .bind(now_ms())
    .execute(&mut **change.conn())
    .await
    .map_err(StoreError::db(W))?;
    let _nobody_to_wake = change.commit().await?;
    Ok(true)
}

/// The zone's physical network.
///
/// # Errors
/// [`StoreError::Db`]; [`StoreError::Corrupt`] for a stored range that does not parse.
pub async fn physical_network_of(
    db: &Db,
    zone_id: i64,
) -> Result<Option<PhysicalNetwork>, StoreError> {
    sqlx::query(&format!(
        "SELECT {PN_COLUMNS} FROM physical_networks WHERE zone_id = $1"
    ))
    .bind(zone_id)
    .fetch_optional(db.pool())
    .await
    .map_err(StoreError::db("reading a physical network"))?
    .as_ref()
    .map(physical_network)
    .transpose()
}

/// Every physical network, oldest first.
///
/// # Errors
/// As [`physical_network_of`].
pub async fn physical_networks(db: &Db) -> Result<Vec<PhysicalNetwork>, StoreError> {
    sqlx::query(&format!(
        "SELECT {PN_COLUMNS} FROM physical_networks ORDER BY id"
    ))
    .fetch_all(db.pool())
    .await
    .map_err(StoreError::db("reading physical networks"))?
    .iter()
    .map(physical_network)
    .collect()
}

/// The zone's physical network, locked until the change commits (on PostgreSQL; SQLite's
/// change holds the one write lock anyway): whoever allocates or withdraws the zone's VLANs
/// takes it first.
///
/// # Errors
/// [`StoreError::Db`]; [`StoreError::NotFound`] when the zone has none (its id named).
pub async fn lock_physical_network(
    change: &mut ChangeTx,
    zone_id: i64,
) -> Result<PhysicalNetwork, StoreError> {
    let lock = match change.dialect() {
        Dialect::Postgres => " FOR UPDATE",
        Dialect::Sqlite => "",
    };
    sqlx::query(&format!(
        "SELECT {PN_COLUMNS} FROM physical_networks WHERE zone_id = $1{lock}"
    ))
    .bind(zone_id)
    .fetch_optional(&mut **change.conn())
    .await
    .map_err(StoreError::db("locking the zone's physical network"))?
    .as_ref()
    .map(physical_network)
    .transpose()?
    .ok_or(StoreError::NotFound {
        what: "physical network of the zone",
        id: zone_id,
    })
}

/// The VLANs the zone's networks hold, with the network's name, by VLAN.
///
/// # Errors
/// [`StoreError::Db`]; [`StoreError::Corrupt`] for a stored VLAN outside 0–65535.
pub async fn used_vlans(
    tx: &mut Transaction<'_, Any>,
    zone_id: i64,
) -> Result<Vec<(u16, String)>, StoreError> {
    const W: &str = "reading the zone's VLANs";
    sqlx::query(
        "SELECT vlan, name FROM networks WHERE zone_id = $1 AND vlan IS NOT NULL ORDER BY vlan",
    )
    .bind(zone_id)
    .fetch_all(&mut **tx)
    .await
    .map_err(StoreError::db(W))?
    .iter()
    .map(|r| {
        let v: i64 = get(r, "vlan", W)?;
        let v = u16::try_from(v).map_err(|_| StoreError::Corrupt {
            table: "networks",
            column: "vlan",
            value: v.to_string(),
        })?;
        Ok((v, get(r, "name", W)?))
    })
    .collect()
}

/// Sets a physical network's guest VLANs (its row locked by [`lock_physical_network`]).
///
/// # Errors
/// [`StoreError::Db`].
pub async fn set_vlans(
    tx: &mut Transaction<'_, Any>,
    physical_network: i64,
    vlans: &VlanRanges,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE physical_networks SET vlan = $1 WHERE id = $2")
        .bind(vlans.to_string())
        .bind(physical_network)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::db("setting the guest VLANs"))?;
    Ok(())
}

/// The zone's DNS servers, `dns1` then `dns2`, as written (absent ones left out).
///
/// # Errors
/// [`StoreError::Db`]; [`StoreError::Corrupt`] for a stored address that does not parse.
pub async fn dns(db: &Db, zone_id: i64) -> Result<Vec<Ipv4Addr>, StoreError> {
    const W: &str = "reading the zone's DNS servers";
    let Some(row) = sqlx::query("SELECT dns1, dns2 FROM zones WHERE id = $1")
        .bind(zone_id)
        .fetch_optional(db.pool())
        .await
        .map_err(StoreError::db(W))?
    else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for col in ["dns1", "dns2"] {
        if let Some(text) = get::<Option<String>>(&row, col, W)?.filter(|t| !t.is_empty()) {
            out.push(text.parse().map_err(|_| StoreError::Corrupt {
                table: "zones",
                column: col,
                value: text,
            })?);
        }
    }
    Ok(out)
}

/// Sets the zone's DNS servers, and marks every router of the zone as lacking its latest
/// config (its last error says why) so that its worker's next idle look sends it, DNS
/// included; returns the zone's networks, whose workers to ring.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn set_dns(
    change: &mut ChangeTx,
    zone_id: i64,
    dns1: Option<Ipv4Addr>,
    dns2: Option<Ipv4Addr>,
) -> Result<Vec<NetworkId>, StoreError> {
    const W: &str = "setting the zone's DNS servers";
    let tx = change.conn();
    sqlx::query("UPDATE zones SET dns1 = $1, dns2 = $2 WHERE id = $3")
        .bind(dns1.map(|a| a.to_string()))
        .bind(dns2.map(|a| a.to_string()))
        .bind(zone_id)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::db(W))?;
    sqlx::query(
        "UPDATE routers SET last_error = 'the zone''s DNS servers changed; sending them' \
         WHERE network_id IN (SELECT id FROM networks WHERE zone_id = $1) AND state = 'Running'",
    )
    .bind(zone_id)
    .execute(&mut **tx)
    .await
    .map_err(StoreError::db(W))?;
    sqlx::query("SELECT id FROM networks WHERE zone_id = $1 ORDER BY id")
        .bind(zone_id)
        .fetch_all(&mut **tx)
        .await
        .map_err(StoreError::db(W))?
        .iter()
        .map(|r| get::<i64>(r, "id", W).map(NetworkId::from))
        .collect()
}
