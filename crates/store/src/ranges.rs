//! Public ranges (`vlan_ranges`): reading them, and adding one with a Free address row for
//! each of its addresses.

use std::net::Ipv4Addr;

use domain::ids::VlanRangeId;
use sqlx::any::AnyRow;
use sqlx::{Any, Transaction};

use crate::db::{now_ms, Db};
use crate::error::StoreError;
use crate::rows::{get, parsed};

/// A public range to add to a zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicRange {
    /// The VLAN tag, or `untagged`.
    pub vlan: String,
    /// The segment's gateway.
    pub gateway: Ipv4Addr,
    /// The segment's netmask.
    pub netmask: Ipv4Addr,
    /// First address handed out.
    pub start: Ipv4Addr,
    /// Last address handed out.
    pub end: Ipv4Addr,
}

/// A stored public range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeRecord {
    /// Internal id.
    pub id: VlanRangeId,
    /// API id.
    pub uuid: String,
    /// Its zone.
    pub zone_id: i64,
    /// The range itself.
    pub range: PublicRange,
}

const RANGE_COLUMNS: &str = "id, uuid, zone_id, vlan, gateway, netmask, start_ip, end_ip";

fn record(r: &AnyRow) -> Result<RangeRecord, StoreError> {
    const W: &str = "reading a public range";
    const T: &str = "vlan_ranges";
    Ok(RangeRecord {
        id: VlanRangeId::from(get::<i64>(r, "id", W)?),
        uuid: get(r, "uuid", W)?,
        zone_id: get(r, "zone_id", W)?,
        range: PublicRange {
            vlan: get(r, "vlan", W)?,
            gateway: parsed(r, T, "gateway", W)?,
            netmask: parsed(r, T, "netmask", W)?,
            start: parsed(r, T, "start_ip", W)?,
            end: parsed(r, T, "end_ip", W)?,
        },
    })
}

/// Every public range, oldest first.
///
/// # Errors
/// [`StoreError::Db`]; [`StoreError::Corrupt`] for an address that does not parse.
pub async fn list(db: &Db) -> Result<Vec<RangeRecord>, StoreError> {
    sqlx::query(&format!(
        "SELECT {RANGE_COLUMNS} FROM vlan_ranges ORDER BY id"
    ))
    .fetch_all(db.pool())
    .await
    .map_err(StoreError::db("reading public ranges"))?
    .iter()
    .map(record)
    .collect()
}

/// A public range by id.
///
/// # Errors
/// As [`list`].
pub async fn by_id(db: &Db, id: VlanRangeId) -> Result<Option<RangeRecord>, StoreError> {
    sqlx::query(&format!(
        "SELECT {RANGE_COLUMNS} FROM vlan_ranges WHERE id = $1"
    ))
    .bind(id.get())
    .fetch_optional(db.pool())
    .await
    .map_err(StoreError::db("reading a public range"))?
    .as_ref()
    .map(record)
    .transpose()
}

/// The zone's first range, whose gateway and netmask a new range takes when it names none.
///
/// # Errors
/// As [`list`].
pub async fn first_of_zone(db: &Db, zone_id: i64) -> Result<Option<RangeRecord>, StoreError> {
    sqlx::query(&format!(
        "SELECT {RANGE_COLUMNS} FROM vlan_ranges WHERE zone_id = $1 ORDER BY id LIMIT 1"
    ))
    .bind(zone_id)
    .fetch_optional(db.pool())
    .await
    .map_err(StoreError::db("reading a public range"))?
    .as_ref()
    .map(record)
    .transpose()
}

/// The first and last address of every range.
///
/// # Errors
/// As [`list`].
pub async fn bounds(
    tx: &mut Transaction<'_, Any>,
) -> Result<Vec<(Ipv4Addr, Ipv4Addr)>, StoreError> {
    const W: &str = "reading public ranges";
    sqlx::query("SELECT start_ip, end_ip FROM vlan_ranges")
        .fetch_all(&mut **tx)
        .await
        .map_err(StoreError::db(W))?
        .iter()
        .map(|r| {
            Ok((
                parsed(r, "vlan_ranges", "start_ip", W)?,
                parsed(r, "vlan_ranges", "end_ip", W)?,
            ))
        })
        .collect()
}

/// Rows per multi-row insert of public addresses.
const IP_CHUNK: u32 = 500;

/// Inserts a range and one Free `public_ips` row per address of it; returns the range's id
/// and uuid. The caller has checked the range.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn insert(
    tx: &mut Transaction<'_, Any>,
    zone_id: i64,
    range: &PublicRange,
) -> Result<(VlanRangeId, String), StoreError> {
    const W: &str = "inserting a public range";
    let uuid = uuid::Uuid::new_v4().to_string();
    let row = sqlx::query(
        "INSERT INTO vlan_ranges (uuid, zone_id, vlan, gateway, netmask, start_ip, end_ip, \
         created) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
    )
    .bind(&uuid)
    .bind(zone_id)
    .bind(&range.vlan)
    .bind(range.gateway.to_string())
    .bind(range.netmask.to_string())
    .bind(range.start.to_string())
    .bind(range.end.to_string())
    .bind(now_ms())
    .fetch_one(&mut **tx)
    .await
    .map_err(StoreError::db(W))?;
    let range_id: i64 = get(&row, "id", W)?;
    let (first, last) = (u32::from(range.start), u32::from(range.end));
    let mut next = first;
    while next <= last {
        let stop = next.saturating_add(IP_CHUNK - 1).min(last);
        // Every value is made here (uuids, dotted quads, numbers), so they are written as
        // literals: one statement per chunk, whatever the back end's limit on bound values.
        let values: Vec<String> = (next..=stop)
            .map(|n| {
                format!(
                    "('{}', '{}', {}, {range_id}, {zone_id}, 'Free', 0, 0)",
                    uuid::Uuid::new_v4(),
                    Ipv4Addr::from(n),
                    i64::from(n)
                )
            })
            .collect();
        sqlx::query(&format!(
            "INSERT INTO public_ips (uuid, address, address_num, vlan_range_id, zone_id, state, \
             source_nat, applied) VALUES {}",
            values.join(", ")
        ))
        .execute(&mut **tx)
        .await
        .map_err(StoreError::db("inserting a range's addresses"))?;
        match stop.checked_add(1) {
            Some(n) => next = n,
            None => break,
        }
    }
    Ok((VlanRangeId::from(range_id), uuid))
}

#[cfg(test)]
mod tests;
