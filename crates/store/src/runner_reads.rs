//! Reads the job runner and the rendering of a job's result need: a network by id, a rule and
//! its object as the database renders it, a balancer's policies, an address and a VM with
//! what their responses show, an account's names.
//!
//! Some of these overlap the reads the API's handlers are moving into the store by aggregate
//! (`rules`, `networks`, `addresses`, `vms`); they live here, apart, until the two are folded.

use domain::ids::{IpId, RuleId};
use domain::model::{IpRow, Purpose, Rule};
use sqlx::{Any, Row, Transaction};

use crate::db::Db;
use crate::error::StoreError;
use crate::rules::{IP_COLUMNS, RULE_COLUMNS, RULE_FROM};

/// A rule by internal id.
///
/// # Errors
/// [`StoreError::Db`]; [`StoreError::Corrupt`].
pub async fn rule(db: &Db, id: RuleId) -> Result<Option<Rule>, StoreError> {
    sqlx::query(&format!(
        "SELECT {RULE_COLUMNS} FROM {RULE_FROM} WHERE r.id = $1"
    ))
    .bind(id.get())
    .fetch_optional(db.pool())
    .await
    .map_err(StoreError::db("reading a rule"))?
    .map(|r| crate::rules::rule(&r))
    .transpose()
}

/// How a rule is named: by internal id, or by uuid (a rule whose id the job did not know yet).
#[derive(Debug, Clone, Copy)]
pub enum RuleKey<'a> {
    /// The internal id.
    Id(RuleId),
    /// The API id.
    Uuid(&'a str),
}

/// The id and purpose of a rule, if it exists.
///
/// # Errors
/// [`StoreError::Db`]; [`StoreError::Corrupt`] for an unknown purpose.
pub async fn rule_purpose(
    db: &Db,
    key: RuleKey<'_>,
) -> Result<Option<(RuleId, Purpose)>, StoreError> {
    let mut conn = db
        .pool()
        .acquire()
        .await
        .map_err(StoreError::db("reading a rule"))?;
    rule_purpose_on(&mut conn, key).await
}

/// [`rule_purpose`] as the change `tx` sees it.
///
/// # Errors
/// As [`rule_purpose`].
pub async fn rule_purpose_in(
    tx: &mut Transaction<'_, Any>,
    key: RuleKey<'_>,
) -> Result<Option<(RuleId, Purpose)>, StoreError> {
    rule_purpose_on(tx, key).await
}

async fn rule_purpose_on(
    conn: &mut sqlx::AnyConnection,
    key: RuleKey<'_>,
) -> Result<Option<(RuleId, Purpose)>, StoreError> {
    let e = StoreError::db("reading a rule");
    let row = match key {
        RuleKey::Id(id) => {
            sqlx::query("SELECT id, purpose FROM rules WHERE id = $1")
                .bind(id.get())
                .fetch_optional(&mut *conn)
                .await
        }
        RuleKey::Uuid(uuid) => {
            sqlx::query("SELECT id, purpose FROM rules WHERE uuid = $1")
                .bind(uuid)
                .fetch_optional(&mut *conn)
                .await
        }
    }
    .map_err(e)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let purpose: Purpose = row
        .try_get::<String, _>("purpose")
        .map_err(e)?
        .parse()
        .map_err(StoreError::corrupt("rules", "purpose"))?;
    Ok(Some((
        RuleId::from(row.try_get::<i64, _>("id").map_err(e)?),
        purpose,
    )))
}

/// A public address with what its response shows besides the row.
#[derive(Debug, Clone)]
pub struct IpView {
    /// The row.
    pub ip: IpRow,
    /// Its public range's uuid.
    pub vlan_uuid: String,
    /// Its public range's VLAN.
    pub vlan_name: String,
    /// The uuid and name of the network it is associated with.
    pub network: Option<(String, String)>,
    /// Whether live rules use it.
    pub has_rules: bool,
}

/// A public address by internal id.
///
/// # Errors
/// [`StoreError::Db`]; [`StoreError::Corrupt`].
pub async fn ip_view(db: &Db, id: IpId) -> Result<Option<IpView>, StoreError> {
    let e = StoreError::db("reading a public address");
    let cols = IP_COLUMNS
        .split(", ")
        .map(|c| format!("p.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let Some(r) = sqlx::query(&format!(
        "SELECT {cols}, v.uuid AS vlan_uuid, v.vlan AS vlan_name, n.uuid AS net_uuid, \
         n.name AS net_name, (SELECT COUNT(*) FROM rules r WHERE r.ip_id = p.id \
         AND r.state <> 'Revoke') AS rule_count \
         FROM public_ips p JOIN vlan_ranges v ON v.id = p.vlan_range_id \
         LEFT JOIN networks n ON n.id = p.network_id WHERE p.id = $1"
    ))
    .bind(id.get())
    .fetch_optional(db.pool())
    .await
    .map_err(e)?
    else {
        return Ok(None);
    };
    let net_uuid: Option<String> = r.try_get("net_uuid").map_err(e)?;
    let net_name: Option<String> = r.try_get("net_name").map_err(e)?;
    Ok(Some(IpView {
        ip: crate::rules::ip(&r)?,
        vlan_uuid: r.try_get("vlan_uuid").map_err(e)?,
        vlan_name: r.try_get("vlan_name").map_err(e)?,
        network: net_uuid.zip(net_name),
        has_rules: r.try_get::<i64, _>("rule_count").map_err(e)? > 0,
    }))
}
