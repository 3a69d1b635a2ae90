//! What a first start writes into an empty database, and public address ranges (which the
//! seed and createVlanIpRange both add).

use std::net::Ipv4Addr;

use domain::ids::{VlanRangeId, ZoneId};
use sqlx::{Any, Row, Transaction};

use crate::db::{now_ms, Db};
use crate::error::StoreError;

/// A public address range to add to a zone.
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

/// Rows per multi-row insert of public addresses.
const IP_CHUNK: u32 = 500;

/// Inserts a range and one Free `public_ips` row per address of it, in the caller's
/// transaction; returns the range's id and uuid. The caller has checked the range.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn insert_public_range(
    tx: &mut Transaction<'_, Any>,
    zone_id: i64,
    range: &PublicRange,
) -> Result<(i64, String), StoreError> {
    let e = StoreError::db("inserting a public range");
    let uuid = uuid::Uuid::new_v4().to_string();
    let range_id: i64 = sqlx::query(
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
    .and_then(|r| r.try_get("id"))
    .map_err(e)?;
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
        .map_err(StoreError::db("inserting a range's public addresses"))?;
        match stop.checked_add(1) {
            Some(n) => next = n,
            None => break,
        }
    }
    Ok((range_id, uuid))
}

/// Whether the database was seeded (its ROOT domain exists).
///
/// # Errors
/// [`StoreError::Db`].
pub async fn seeded(db: &Db) -> Result<bool, StoreError> {
    sqlx::query("SELECT id FROM domains WHERE path = 'ROOT'")
        .fetch_optional(db.pool())
        .await
        .map(|r| r.is_some())
        .map_err(StoreError::db("reading the ROOT domain"))
}

/// The zone a first start made: its id, uuid and name.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn first_zone(db: &Db) -> Result<Option<(ZoneId, String, String)>, StoreError> {
    let e = StoreError::db("reading the zone");
    let row = sqlx::query("SELECT id, uuid, name FROM zones ORDER BY id LIMIT 1")
        .fetch_optional(db.pool())
        .await
        .map_err(e)?;
    row.map(|r| {
        Ok((
            ZoneId::from(r.try_get::<i64, _>("id")?),
            r.try_get("uuid")?,
            r.try_get("name")?,
        ))
    })
    .transpose()
    .map_err(e)
}

/// A network offering the seed writes.
#[derive(Debug, Clone, Copy)]
pub struct SeedOffering<'a> {
    /// Name.
    pub name: &'a str,
    /// Words for it.
    pub display_text: &'a str,
    /// Whether outbound traffic is open unless egress rules restrict it.
    pub egress_default_allow: bool,
    /// Whether it is the offering used when none is named.
    pub is_default: bool,
}

/// Everything a first start writes, but the uuids and times this module makes.
#[derive(Debug, Clone)]
pub struct Seed<'a> {
    /// The admin's password, as its PHC string.
    pub admin_password_hash: &'a str,
    /// The zone's name.
    pub zone_name: &'a str,
    /// The network offerings.
    pub offerings: &'a [SeedOffering<'a>],
    /// The service offering's name and words.
    pub service_offering: (&'a str, &'a str),
    /// The template's name and words.
    pub template: (&'a str, &'a str),
    /// The zone's public range.
    pub range: PublicRange,
}

fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Seeds an empty database in one change: the ROOT domain, the `admin` account and user, the
/// zone, the offerings, the template and the public range; the public range's id.
///
/// # Errors
/// [`StoreError::Db`], also when another server seeded the database meanwhile (a unique key).
pub async fn seed(db: &Db, s: &Seed<'_>) -> Result<VlanRangeId, StoreError> {
    let e = StoreError::db("seeding the database");
    let mut change = db.change(None).await?;
    let tx = change.conn();
    let now = now_ms();
    let domain_id: i64 = sqlx::query(
        "INSERT INTO domains (uuid, name, path, parent_id, created) \
         VALUES ($1, 'ROOT', 'ROOT', NULL, $2) RETURNING id",
    )
    .bind(new_uuid())
    .bind(now)
    .fetch_one(&mut **tx)
    .await
    .and_then(|r| r.try_get("id"))
    .map_err(e)?;
    let account_id: i64 = sqlx::query(
        "INSERT INTO accounts (uuid, name, domain_id, account_type, state, created) \
         VALUES ($1, 'admin', $2, 1, 'enabled', $3) RETURNING id",
    )
    .bind(new_uuid())
    .bind(domain_id)
    .bind(now)
    .fetch_one(&mut **tx)
    .await
    .and_then(|r| r.try_get("id"))
    .map_err(e)?;
    sqlx::query(
        "INSERT INTO users (uuid, account_id, username, password_hash, email, firstname, \
         lastname, state, created) \
         VALUES ($1, $2, 'admin', $3, 'admin@localhost', 'Admin', 'User', 'enabled', $4)",
    )
    .bind(new_uuid())
    .bind(account_id)
    .bind(s.admin_password_hash)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(e)?;
    let zone_id: i64 =
        sqlx::query("INSERT INTO zones (uuid, name, created) VALUES ($1, $2, $3) RETURNING id")
            .bind(new_uuid())
            .bind(s.zone_name)
            .bind(now)
            .fetch_one(&mut **tx)
            .await
            .and_then(|r| r.try_get("id"))
            .map_err(e)?;
    for o in s.offerings {
        sqlx::query(
            "INSERT INTO network_offerings (uuid, name, display_text, egress_default_allow, \
             is_default, created) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(new_uuid())
        .bind(o.name)
        .bind(o.display_text)
        .bind(i64::from(o.egress_default_allow))
        .bind(i64::from(o.is_default))
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(e)?;
    }
    sqlx::query(
        "INSERT INTO service_offerings (uuid, name, display_text, cpu_number, cpu_speed, memory, \
         created) VALUES ($1, $2, $3, 1, 500, 512, $4)",
    )
    .bind(new_uuid())
    .bind(s.service_offering.0)
    .bind(s.service_offering.1)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(e)?;
    sqlx::query(
        "INSERT INTO templates (uuid, name, display_text, os_type, created) \
         VALUES ($1, $2, $3, 'Other Linux', $4)",
    )
    .bind(new_uuid())
    .bind(s.template.0)
    .bind(s.template.1)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(e)?;
    let (range_id, _) = insert_public_range(change.conn(), zone_id, &s.range).await?;
    let _receipt = change.commit().await?;
    Ok(VlanRangeId::from(range_id))
}
