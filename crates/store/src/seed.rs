//! What a first start writes into an empty database (its public range through
//! [`crate::ranges::insert`], as createVlanIpRange adds one).

use domain::ids::{VlanRangeId, ZoneId};
use sqlx::Row;

use crate::db::{now_ms, Db};
use crate::error::StoreError;

pub use crate::ranges::PublicRange;

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
    let (range_id, _) = crate::ranges::insert(change.conn(), zone_id, &s.range).await?;
    let range_id = range_id.get();
    let _receipt = change.commit().await?;
    Ok(VlanRangeId::from(range_id))
}
