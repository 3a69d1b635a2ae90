//! Lookups by API id that the API edge makes before a command runs: a rule, an address or a
//! network by uuid, an account by name, and who owns what a uuid names.

use domain::model::{IpRow, NetworkRow, Rule};
use sqlx::Row;

use crate::db::Db;
use crate::error::StoreError;
use crate::rules::{IP_COLUMNS, NETWORK_COLUMNS, RULE_COLUMNS, RULE_FROM};

/// A rule by uuid.
///
/// # Errors
/// [`StoreError::Db`]; [`StoreError::Corrupt`].
pub async fn rule_by_uuid(db: &Db, uuid: &str) -> Result<Option<Rule>, StoreError> {
    sqlx::query(&format!(
        "SELECT {RULE_COLUMNS} FROM {RULE_FROM} WHERE r.uuid = $1"
    ))
    .bind(uuid)
    .fetch_optional(db.pool())
    .await
    .map_err(StoreError::db("reading a rule"))?
    .map(|r| crate::rules::rule(&r))
    .transpose()
}

/// A public address by uuid.
///
/// # Errors
/// [`StoreError::Db`]; [`StoreError::Corrupt`].
pub async fn ip_by_uuid(db: &Db, uuid: &str) -> Result<Option<IpRow>, StoreError> {
    sqlx::query(&format!(
        "SELECT {IP_COLUMNS} FROM public_ips WHERE uuid = $1"
    ))
    .bind(uuid)
    .fetch_optional(db.pool())
    .await
    .map_err(StoreError::db("reading a public address"))?
    .map(|r| crate::rules::ip(&r))
    .transpose()
}

/// A network by uuid.
///
/// # Errors
/// [`StoreError::Db`]; [`StoreError::Corrupt`].
pub async fn network_by_uuid(db: &Db, uuid: &str) -> Result<Option<NetworkRow>, StoreError> {
    sqlx::query(&format!(
        "SELECT {NETWORK_COLUMNS} FROM networks n JOIN network_offerings o ON o.id = n.offering_id \
         WHERE n.uuid = $1"
    ))
    .bind(uuid)
    .fetch_optional(db.pool())
    .await
    .map_err(StoreError::db("reading a network"))?
    .map(|r| crate::rules::network(&r))
    .transpose()
}

/// The id of the account called `name`.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn account_by_name(db: &Db, name: &str) -> Result<Option<i64>, StoreError> {
    let e = StoreError::db("reading an account");
    sqlx::query("SELECT id FROM accounts WHERE name = $1")
        .bind(name)
        .fetch_optional(db.pool())
        .await
        .map_err(e)?
        .map(|r| r.try_get("id"))
        .transpose()
        .map_err(e)
}

/// What an account may own, named by uuid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owned {
    /// A guest network.
    Network,
    /// A public address.
    Ip,
    /// A VM.
    Vm,
    /// A VM's NIC (owned with its VM).
    Nic,
    /// A secondary address of a VM's NIC.
    SecondaryIp,
    /// A rule.
    Rule,
    /// A balancer's policy (owned with its balancer).
    Policy,
    /// A router (owned with its network).
    Router,
    /// An event.
    Event,
    /// An async job.
    Job,
    /// An account (owns itself).
    Account,
    /// A user.
    User,
    /// A public range (no account owns one).
    Vlan,
    /// An agent token (no account owns one).
    AgentToken,
    /// A host (no account owns one).
    Host,
}

impl Owned {
    fn query(self) -> &'static str {
        match self {
            Owned::Network => "SELECT account_id FROM networks WHERE uuid = $1",
            Owned::Ip => "SELECT account_id FROM public_ips WHERE uuid = $1",
            Owned::Vm => "SELECT account_id FROM vms WHERE uuid = $1",
            Owned::Nic => "SELECT account_id FROM vms WHERE nic_uuid = $1",
            Owned::SecondaryIp => "SELECT account_id FROM nic_secondary_ips WHERE uuid = $1",
            Owned::Rule => "SELECT account_id FROM rules WHERE uuid = $1",
            Owned::Policy => {
                "SELECT r.account_id FROM lb_policies p JOIN rules r ON r.id = p.lb_id \
                 WHERE p.uuid = $1"
            }
            Owned::Router => {
                "SELECT n.account_id FROM routers r JOIN networks n ON n.id = r.network_id \
                 WHERE r.uuid = $1"
            }
            Owned::Event => "SELECT account_id FROM events WHERE uuid = $1",
            Owned::Job => "SELECT account_id FROM jobs WHERE uuid = $1",
            Owned::Account => "SELECT id AS account_id FROM accounts WHERE uuid = $1",
            Owned::User => "SELECT account_id FROM users WHERE uuid = $1",
            Owned::Vlan => "SELECT NULL AS account_id FROM vlan_ranges WHERE uuid = $1",
            Owned::AgentToken => "SELECT NULL AS account_id FROM agent_tokens WHERE uuid = $1",
            Owned::Host => "SELECT NULL AS account_id FROM hosts WHERE uuid = $1",
        }
    }
}

/// Who owns what `uuid` names: `None` when it does not exist, `Some(None)` when it exists and
/// no account owns it.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn owner_of(db: &Db, what: Owned, uuid: &str) -> Result<Option<Option<i64>>, StoreError> {
    let e = StoreError::db("reading an owner");
    sqlx::query(what.query())
        .bind(uuid)
        .fetch_optional(db.pool())
        .await
        .map_err(e)?
        .map(|r| r.try_get::<Option<i64>, _>("account_id"))
        .transpose()
        .map_err(e)
}

/// What everyone shares, named by uuid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shared {
    /// A network offering.
    NetworkOffering,
    /// A service offering.
    ServiceOffering,
    /// A template.
    Template,
    /// A domain.
    Domain,
    /// A zone's physical network.
    PhysicalNetwork,
}

/// Whether what `uuid` names exists.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn exists(db: &Db, what: Shared, uuid: &str) -> Result<bool, StoreError> {
    let sql = match what {
        Shared::NetworkOffering => "SELECT id FROM network_offerings WHERE uuid = $1",
        Shared::ServiceOffering => "SELECT id FROM service_offerings WHERE uuid = $1",
        Shared::Template => "SELECT id FROM templates WHERE uuid = $1",
        Shared::Domain => "SELECT id FROM domains WHERE uuid = $1",
        Shared::PhysicalNetwork => "SELECT id FROM physical_networks WHERE uuid = $1",
    };
    Ok(sqlx::query(sql)
        .bind(uuid)
        .fetch_optional(db.pool())
        .await
        .map_err(StoreError::db("looking an id up"))?
        .is_some())
}

/// A user found by API key, with its account and domain, as a request's signature is checked.
#[derive(Debug, Clone)]
pub struct KeyHolder {
    /// The user's id.
    pub user_id: i64,
    /// The user's uuid.
    pub user_uuid: String,
    /// The user's secret key, if it has one.
    pub secret: Option<String>,
    /// Whether the user is enabled.
    pub user_enabled: bool,
    /// The account's id.
    pub account_id: i64,
    /// The account's uuid.
    pub account_uuid: String,
    /// The account's name.
    pub account_name: String,
    /// Whether the account is a root admin's.
    pub admin: bool,
    /// Whether the account is enabled.
    pub account_enabled: bool,
    /// The domain's id.
    pub domain_id: i64,
    /// The domain's uuid.
    pub domain_uuid: String,
    /// The domain's name.
    pub domain_name: String,
    /// The domain's path.
    pub domain_path: String,
}

/// The user whose API key is `key`.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn key_holder(db: &Db, key: &str) -> Result<Option<KeyHolder>, StoreError> {
    let e = StoreError::db("finding an API key");
    let Some(row) = sqlx::query(
        "SELECT u.id AS user_id, u.uuid AS user_uuid, u.secret_key, u.state AS user_state, \
         a.id AS account_id, a.uuid AS account_uuid, a.name AS account_name, \
         a.account_type, a.state AS account_state, d.id AS domain_id, d.uuid AS domain_uuid, \
         d.name AS domain_name, d.path AS domain_path \
         FROM users u JOIN accounts a ON a.id = u.account_id JOIN domains d ON d.id = a.domain_id \
         WHERE u.api_key = $1",
    )
    .bind(key)
    .fetch_optional(db.pool())
    .await
    .map_err(e)?
    else {
        return Ok(None);
    };
    let read = || -> Result<KeyHolder, sqlx::Error> {
        Ok(KeyHolder {
            user_id: row.try_get("user_id")?,
            user_uuid: row.try_get("user_uuid")?,
            secret: row.try_get("secret_key")?,
            user_enabled: row.try_get::<String, _>("user_state")? == "enabled",
            account_id: row.try_get("account_id")?,
            account_uuid: row.try_get("account_uuid")?,
            account_name: row.try_get("account_name")?,
            admin: row.try_get::<i64, _>("account_type")? == 1,
            account_enabled: row.try_get::<String, _>("account_state")? == "enabled",
            domain_id: row.try_get("domain_id")?,
            domain_uuid: row.try_get("domain_uuid")?,
            domain_name: row.try_get("domain_name")?,
            domain_path: row.try_get("domain_path")?,
        })
    };
    read().map(Some).map_err(e)
}
