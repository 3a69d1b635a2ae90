//! Reads the job runner and the rendering of a job's result need: a network by id, a rule and
//! its object as the database renders it, a balancer's policies, an address and a VM with
//! what their responses show, an account's names.
//!
//! Some of these overlap the reads the API's handlers are moving into the store by aggregate
//! (`rules`, `networks`, `addresses`, `vms`); they live here, apart, until the two are folded.

use domain::ids::{AccountId, RuleId};
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

/// An account's names, as responses show an owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerNames {
    /// The account's name.
    pub account: String,
    /// Its domain's uuid.
    pub domain_uuid: String,
    /// Its domain's name.
    pub domain_name: String,
    /// Its domain's path.
    pub domain_path: String,
}

/// The names of account `id`.
///
/// # Errors
/// [`StoreError::Db`]; [`StoreError::NotFound`].
pub async fn owner(db: &Db, id: AccountId) -> Result<OwnerNames, StoreError> {
    let e = StoreError::db("reading an account");
    let row = sqlx::query(
        "SELECT a.name, d.uuid AS domain_uuid, d.name AS domain_name, d.path \
         FROM accounts a JOIN domains d ON d.id = a.domain_id WHERE a.id = $1",
    )
    .bind(id.get())
    .fetch_optional(db.pool())
    .await
    .map_err(e)?
    .ok_or(StoreError::NotFound {
        what: "account",
        id: id.get(),
    })?;
    Ok(OwnerNames {
        account: row.try_get("name").map_err(e)?,
        domain_uuid: row.try_get("domain_uuid").map_err(e)?,
        domain_name: row.try_get("domain_name").map_err(e)?,
        domain_path: row.try_get("path").map_err(e)?,
    })
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
pub async fn ip_view(db: &Db, id: i64) -> Result<Option<IpView>, StoreError> {
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
    .bind(id)
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

/// A VM with what its response shows.
#[derive(Debug, Clone)]
pub struct VmView {
    /// API id.
    pub uuid: String,
    /// Name.
    pub name: String,
    /// Display name.
    pub display_name: String,
    /// The owner.
    pub account_id: AccountId,
    /// Its NIC's uuid.
    pub nic_uuid: String,
    /// Its guest address.
    pub ip: String,
    /// Its state.
    pub state: String,
    /// Creation time (unix ms).
    pub created: i64,
    /// Its network's uuid.
    pub net_uuid: String,
    /// Its network's name.
    pub net_name: String,
    /// Its network's CIDR.
    pub cidr: String,
    /// Its network's gateway.
    pub gateway: String,
    /// Its service offering's uuid.
    pub so_uuid: String,
    /// Its service offering's name.
    pub so_name: String,
    /// CPUs.
    pub cpu_number: i64,
    /// CPU speed (MHz).
    pub cpu_speed: i64,
    /// Memory (MiB).
    pub memory: i64,
    /// Its template's uuid.
    pub t_uuid: String,
    /// Its template's name.
    pub t_name: String,
    /// Its template's display text.
    pub t_display: String,
}

/// A VM by internal id.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn vm_view(db: &Db, id: i64) -> Result<Option<VmView>, StoreError> {
    let e = StoreError::db("reading a VM");
    let Some(r) = sqlx::query(
        "SELECT v.uuid, v.name, v.display_name, v.account_id, v.nic_uuid, v.ip, v.state, \
         v.created, n.uuid AS net_uuid, n.name AS net_name, n.cidr, n.gateway, \
         s.uuid AS so_uuid, s.name AS so_name, s.cpu_number, s.cpu_speed, s.memory, \
         t.uuid AS t_uuid, t.name AS t_name, t.display_text AS t_display \
         FROM vms v JOIN networks n ON n.id = v.network_id \
         JOIN service_offerings s ON s.id = v.service_offering_id \
         JOIN templates t ON t.id = v.template_id WHERE v.id = $1",
    )
    .bind(id)
    .fetch_optional(db.pool())
    .await
    .map_err(e)?
    else {
        return Ok(None);
    };
    let read = || -> Result<VmView, sqlx::Error> {
        Ok(VmView {
            uuid: r.try_get("uuid")?,
            name: r.try_get("name")?,
            display_name: r.try_get("display_name")?,
            account_id: AccountId::from(r.try_get::<i64, _>("account_id")?),
            nic_uuid: r.try_get("nic_uuid")?,
            ip: r.try_get("ip")?,
            state: r.try_get("state")?,
            created: r.try_get("created")?,
            net_uuid: r.try_get("net_uuid")?,
            net_name: r.try_get("net_name")?,
            cidr: r.try_get("cidr")?,
            gateway: r.try_get("gateway")?,
            so_uuid: r.try_get("so_uuid")?,
            so_name: r.try_get("so_name")?,
            cpu_number: r.try_get("cpu_number")?,
            cpu_speed: r.try_get("cpu_speed")?,
            memory: r.try_get("memory")?,
            t_uuid: r.try_get("t_uuid")?,
            t_name: r.try_get("t_name")?,
            t_display: r.try_get("t_display")?,
        })
    };
    read().map(Some).map_err(e)
}
