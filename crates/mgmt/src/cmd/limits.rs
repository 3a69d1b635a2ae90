//! Resource limits, as CloudStack keeps them: how many user VMs, public IPs, networks and
//! network rules an account may hold, bounded by the account's own limit and by the limit of
//! every domain above it (ROOT excepted). `listResourceLimits` and `updateResourceLimit` show
//! and set them; [`take`] enforces them wherever a resource is taken.
//!
//! Limits bound what one tenant can take of what everyone shares (the zone's public
//! addresses, the hosts' routers): a root admin's account is never limited, and a tenant that
//! reached its limit leaves the rest to the others.
//!
//! Defaults are CloudStack's (`max.account.*` 20 and `max.domain.*` 40 for user VMs, public IPs
//! and networks); network rules are guestnet's own type (1000, `network_rule`: CloudStack has
//! no limit on rules), 1000 per account and 2000 per domain by default. -1 means no limit.

use api_types::error::ApiError;
use api_types::params::Params;
use serde_json::{json, Map, Value};
use sqlx::{Any, AnyConnection, Row, Transaction};

use super::infra::{admin_only, given};
use super::{begin, unknown};
use crate::app::{internal, ApiResult, App};
use crate::resp;
use domain::actor::Caller;
use store::db::Dialect;

#[cfg(test)]
mod tests;

/// A kind of resource an account holds and a limit bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resource {
    /// User VMs that are not being expunged (CloudStack's `user_vm`, 0).
    UserVm,
    /// Public IPs allocated to the account, source-NAT addresses included (`public_ip`, 1).
    PublicIp,
    /// Networks that are not being deleted (`network`, 6).
    Network,
    /// Firewall, egress, port-forwarding and load-balancing rules that are not being deleted,
    /// the firewall rules that forwards and balancers open included (guestnet's own type,
    /// `network_rule`, 1000).
    NetworkRule,
}

impl Resource {
    /// Every type guestnet limits, in the order lists show them.
    pub(crate) const ALL: [Resource; 4] = [
        Resource::UserVm,
        Resource::PublicIp,
        Resource::Network,
        Resource::NetworkRule,
    ];

    /// The type's number (`resourcetype`). 1000 is far above CloudStack's own numbers, which
    /// count up from 0 without gaps, so it cannot meet one of theirs.
    pub(crate) const fn number(self) -> i64 {
        match self {
            Resource::UserVm => 0,
            Resource::PublicIp => 1,
            Resource::Network => 6,
            Resource::NetworkRule => 1000,
        }
    }

    /// The type's name (`resourcetypename`).
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Resource::UserVm => "user_vm",
            Resource::PublicIp => "public_ip",
            Resource::Network => "network",
            Resource::NetworkRule => "network_rule",
        }
    }

    /// The type with this number.
    pub(crate) fn from_number(n: i64) -> Option<Resource> {
        Resource::ALL.into_iter().find(|r| r.number() == n)
    }

    /// The type with this name.
    pub(crate) fn from_name(name: &str) -> Option<Resource> {
        Resource::ALL.into_iter().find(|r| r.name() == name)
    }

    /// The limit of an account that has none of its own (CloudStack's `max.account.*`).
    pub(crate) const fn account_default(self) -> i64 {
        match self {
            Resource::UserVm | Resource::PublicIp | Resource::Network => 20,
            Resource::NetworkRule => 1000,
        }
    }

    /// The limit of a domain (other than ROOT) for which neither it nor a domain above it
    /// has one (CloudStack's `max.domain.*`).
    pub(crate) const fn domain_default(self) -> i64 {
        match self {
            Resource::UserVm | Resource::PublicIp | Resource::Network => 40,
            Resource::NetworkRule => 2000,
        }
    }

    /// The start of a query counting what accounts hold, to be completed with the list of
    /// accounts (`account_id IN (…)`).
    const fn count_from(self) -> &'static str {
        match self {
            Resource::UserVm => {
                "SELECT COUNT(*) AS n FROM vms \
                 WHERE state NOT IN ('Expunging', 'Destroyed', 'Error') AND account_id IN "
            }
            Resource::PublicIp => {
                "SELECT COUNT(*) AS n FROM public_ips \
                 WHERE state IN ('Allocating', 'Allocated') AND account_id IN "
            }
            Resource::Network => {
                "SELECT COUNT(*) AS n FROM networks WHERE state <> 'Destroy' AND account_id IN "
            }
            Resource::NetworkRule => {
                "SELECT COUNT(*) AS n FROM rules WHERE state <> 'Revoke' AND account_id IN "
            }
        }
    }
}

/// Who owns a limit row.
const ACCOUNT: &str = "account";
const DOMAIN: &str = "domain";

/// An account, as limits see it.
#[derive(Debug, Clone)]
struct Account {
    id: i64,
    name: String,
    domain_id: i64,
    root_admin: bool,
}

/// A domain, as limits see it.
#[derive(Debug, Clone)]
struct Domain {
    id: i64,
    uuid: String,
    name: String,
    path: String,
    parent: Option<i64>,
}

impl Domain {
    fn is_root(&self) -> bool {
        self.parent.is_none()
    }
}

/// Every domain (there are few).
async fn domains(conn: &mut AnyConnection) -> ApiResult<Vec<Domain>> {
    let rows = sqlx::query("SELECT id, uuid, name, path, parent_id FROM domains ORDER BY id")
        .fetch_all(conn)
        .await
        .map_err(internal)?;
    rows.iter()
        .map(|r| {
            Ok(Domain {
                id: r.try_get("id")?,
                uuid: r.try_get("uuid")?,
                name: r.try_get("name")?,
                path: r.try_get("path")?,
                parent: r.try_get("parent_id")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(internal)
}

fn domain_by_id(domains: &[Domain], id: i64) -> ApiResult<&Domain> {
    domains
        .iter()
        .find(|d| d.id == id)
        .ok_or_else(|| ApiError::internal(format!("domain {id} is gone")))
}

/// The domains from `id` up to, but not including, ROOT (whose limits are always none).
fn chain(domains: &[Domain], id: i64) -> ApiResult<Vec<&Domain>> {
    let mut out = Vec::new();
    let mut next = Some(id);
    while let Some(id) = next {
        let d = domain_by_id(domains, id)?;
        if d.is_root() {
            break;
        }
        if out.iter().any(|o: &&Domain| o.id == d.id) {
            return Err(ApiError::internal(format!(
                "domain {} is its own ancestor",
                d.id
            )));
        }
        out.push(d);
        next = d.parent;
    }
    Ok(out)
}

/// `d` and every domain below it.
fn subtree<'a>(domains: &'a [Domain], d: &Domain) -> Vec<&'a Domain> {
    let below = format!("{}/", d.path);
    domains
        .iter()
        .filter(|o| o.id == d.id || o.path.starts_with(&below))
        .collect()
}

async fn account_by_id(conn: &mut AnyConnection, id: i64) -> ApiResult<Account> {
    let row = sqlx::query("SELECT id, name, domain_id, account_type FROM accounts WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
        .map_err(internal)?
        .ok_or_else(|| ApiError::internal(format!("account {id} is gone")))?;
    account_from(&row)
}

fn account_from(row: &sqlx::any::AnyRow) -> ApiResult<Account> {
    Ok(Account {
        id: row.try_get("id").map_err(internal)?,
        name: row.try_get("name").map_err(internal)?,
        domain_id: row.try_get("domain_id").map_err(internal)?,
        root_admin: row.try_get::<i64, _>("account_type").map_err(internal)? == 1,
    })
}

/// The limit set for an owner, if one was.
async fn explicit(
    conn: &mut AnyConnection,
    kind: &str,
    owner: i64,
    r: Resource,
) -> ApiResult<Option<i64>> {
    let row = sqlx::query(
        "SELECT max_value FROM resource_limits \
         WHERE owner_kind = $1 AND owner_id = $2 AND resource_type = $3",
    )
    .bind(kind)
    .bind(owner)
    .bind(r.number())
    .fetch_optional(conn)
    .await
    .map_err(internal)?;
    row.map(|r| r.try_get("max_value"))
        .transpose()
        .map_err(internal)
}

/// An account's limit: none for a root admin, else its own or the default.
async fn account_limit(conn: &mut AnyConnection, a: &Account, r: Resource) -> ApiResult<i64> {
    if a.root_admin {
        return Ok(-1);
    }
    Ok(explicit(conn, ACCOUNT, a.id, r)
        .await?
        .unwrap_or(r.account_default()))
}

/// A domain's limit: none for ROOT; else its own, or that of the nearest domain above it
/// (ROOT excepted) that has one, or the default.
async fn domain_limit(
    conn: &mut AnyConnection,
    domains: &[Domain],
    d: &Domain,
    r: Resource,
) -> ApiResult<i64> {
    for up in chain(domains, d.id)? {
        if let Some(max) = explicit(conn, DOMAIN, up.id, r).await? {
            return Ok(max);
        }
    }
    Ok(if d.is_root() { -1 } else { r.domain_default() })
}

/// How much of `r` the accounts selected by `accounts` (an SQL list or subquery) hold.
async fn held(conn: &mut AnyConnection, r: Resource, accounts: &str) -> ApiResult<i64> {
    sqlx::query(&format!("{}({accounts})", r.count_from()))
        .fetch_one(conn)
        .await
        .map_err(internal)?
        .try_get("n")
        .map_err(internal)
}

fn id_list<'a>(ids: impl Iterator<Item = &'a i64>) -> String {
    ids.map(i64::to_string).collect::<Vec<_>>().join(",")
}

/// Checks that account `account_id` may take `wanted` (so many of each type) without passing
/// its own limit or that of a domain above it; CloudStack's 535 naming the first limit that
/// would be passed otherwise. A root admin's account is never limited.
///
/// # Assumptions
/// The caller is inside its write transaction `tx`, holds [`store::db::Db::write_lock`] (on
/// SQLite the one writer), and writes what it takes in `tx` before committing.
///
/// # Guarantees
/// Race-free: on PostgreSQL the account's row and those of the domains above it (ROOT
/// excepted) are locked (`FOR NO KEY UPDATE`, which foreign-key checks of concurrent inserts
/// do not wait for) until the commit, so two takers for the same account or domain, on any
/// server, count one after the other; on SQLite the write lock serializes them. Rows are locked account first, then
/// domains from the deepest up, and always after any network row, so takers cannot deadlock.
///
/// # Errors
/// 535 when a limit would be passed; 530 when the database fails.
pub(crate) async fn take(
    app: &App,
    tx: &mut Transaction<'_, Any>,
    account_id: i64,
    wanted: &[(Resource, i64)],
) -> ApiResult<()> {
    let conn: &mut AnyConnection = tx;
    let account = account_by_id(conn, account_id).await?;
    if account.root_admin {
        return Ok(());
    }
    let domains = domains(conn).await?;
    let above = chain(&domains, account.domain_id)?;
    if app.db.dialect() == Dialect::Postgres {
        sqlx::query("SELECT id FROM accounts WHERE id = $1 FOR NO KEY UPDATE")
            .bind(account.id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(internal)?;
        for d in &above {
            sqlx::query("SELECT id FROM domains WHERE id = $1 FOR NO KEY UPDATE")
                .bind(d.id)
                .fetch_optional(&mut *conn)
                .await
                .map_err(internal)?;
        }
    }
    let own_domain = domain_by_id(&domains, account.domain_id)?;
    for &(r, n) in wanted {
        let max = account_limit(conn, &account, r).await?;
        if max >= 0 && held(conn, r, &account.id.to_string()).await? + n > max {
            return Err(ApiError::resource_allocation(format!(
                "Maximum number of resources of type '{}' for account name={} in domain id={} \
                 has been exceeded.",
                r.name(),
                account.name,
                own_domain.uuid
            )));
        }
        for d in &above {
            let max = domain_limit(conn, &domains, d, r).await?;
            if max < 0 {
                continue;
            }
            let accounts = format!(
                "SELECT id FROM accounts WHERE domain_id IN ({})",
                id_list(subtree(&domains, d).iter().map(|d| &d.id))
            );
            if held(conn, r, &accounts).await? + n > max {
                return Err(ApiError::resource_allocation(format!(
                    "Maximum number of resources of type '{}' for domain id={} has been \
                     exceeded.",
                    r.name(),
                    d.uuid
                )));
            }
        }
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// The commands.

/// Whose limits a request is about.
enum Owner {
    Account(Account),
    Domain(Domain),
}

/// The types a list asks for: `resourcetypename` wins over `resourcetype`; neither means all.
fn types_asked(p: &Params) -> ApiResult<Vec<Resource>> {
    if let Some(name) = given(p, "resourcetypename") {
        return Resource::from_name(name).map(|r| vec![r]).ok_or_else(|| {
            ApiError::invalid_parameter(format!(
                "Please specify a valid resource type name: {} (guestnet limits {})",
                name,
                type_names()
            ))
        });
    }
    match p.int("resourcetype") {
        None => Ok(Resource::ALL.to_vec()),
        Some(n) => Resource::from_number(n)
            .map(|r| vec![r])
            .ok_or_else(|| bad_type(n)),
    }
}

fn type_names() -> String {
    Resource::ALL
        .iter()
        .map(|r| format!("{} {}", r.number(), r.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn bad_type(n: i64) -> ApiError {
    ApiError::invalid_parameter(format!(
        "Please specify a valid resource type: {n} is none of {}",
        type_names()
    ))
}

/// The account named by `account` (and `domainid`, when given).
async fn named_account(
    conn: &mut AnyConnection,
    p: &Params,
    domains: &[Domain],
    name: &str,
) -> ApiResult<Account> {
    let domain = match given(p, "domainid") {
        Some(uuid) => Some(
            domains
                .iter()
                .find(|d| d.uuid == uuid)
                .ok_or_else(|| unknown(p, "domainid"))?,
        ),
        None => None,
    };
    let row = match domain {
        Some(d) => {
            sqlx::query(
                "SELECT id, name, domain_id, account_type FROM accounts \
                 WHERE name = $1 AND domain_id = $2",
            )
            .bind(name)
            .bind(d.id)
            .fetch_optional(conn)
            .await
        }
        None => {
            sqlx::query(
                "SELECT id, name, domain_id, account_type FROM accounts WHERE name = $1 \
                 ORDER BY id LIMIT 1",
            )
            .bind(name)
            .fetch_optional(conn)
            .await
        }
    }
    .map_err(internal)?
    .ok_or_else(|| {
        ApiError::invalid_parameter(match domain {
            Some(d) => format!("Unable to find account {name} in domain {}", d.uuid),
            None => format!("Unable to find account {name}"),
        })
    })?;
    account_from(&row)
}

/// Whose limits a request names: `account` (with `domainid`) an account, `domainid` alone a
/// domain, neither the caller's own account. A user may name only its own account.
async fn owner_asked(
    conn: &mut AnyConnection,
    caller: &Caller,
    p: &Params,
    domains: &[Domain],
) -> ApiResult<Option<Owner>> {
    if given(p, "projectid").is_some() {
        // guestnet has no projects: every project id is unknown.
        return Err(unknown(p, "projectid"));
    }
    if let Some(name) = given(p, "account") {
        if !caller.admin
            && (name != caller.account_name
                || given(p, "domainid").is_some_and(|d| d != caller.domain_uuid))
        {
            return Err(ApiError::permission_denied(format!(
                "Account {} may not see the resource limits of account {name}",
                caller.account_name
            )));
        }
        return Ok(Some(Owner::Account(
            named_account(conn, p, domains, name).await?,
        )));
    }
    if caller.admin {
        if let Some(uuid) = given(p, "domainid") {
            let d = domains
                .iter()
                .find(|d| d.uuid == uuid)
                .ok_or_else(|| unknown(p, "domainid"))?;
            return Ok(Some(Owner::Domain(d.clone())));
        }
    }
    Ok(None)
}

/// One limit as CloudStack answers it (ResourceLimitResponse).
fn limit_json(owner: &Owner, domains: &[Domain], r: Resource, max: i64) -> ApiResult<Value> {
    let mut m = Map::new();
    let domain = match owner {
        Owner::Account(a) => {
            m.insert("account".into(), json!(a.name));
            domain_by_id(domains, a.domain_id)?
        }
        Owner::Domain(d) => d,
    };
    m.insert("domainid".into(), json!(domain.uuid));
    m.insert("domain".into(), json!(domain.name));
    m.insert("resourcetype".into(), json!(r.number().to_string()));
    m.insert("resourcetypename".into(), json!(r.name()));
    m.insert("max".into(), json!(max));
    Ok(Value::Object(m))
}

async fn owner_limit(
    conn: &mut AnyConnection,
    owner: &Owner,
    domains: &[Domain],
    r: Resource,
) -> ApiResult<i64> {
    match owner {
        Owner::Account(a) => account_limit(conn, a, r).await,
        Owner::Domain(d) => domain_limit(conn, domains, d, r).await,
    }
}

/// listResourceLimits: the limits of one owner, one row per type guestnet limits (the
/// owner's own limit, or the default it has without one).
pub(crate) async fn list_limits(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let mut conn = app.db.pool().acquire().await.map_err(internal)?;
    let domains = domains(&mut conn).await?;
    let mut types = types_asked(p)?;
    let owner = match owner_asked(&mut conn, caller, p, &domains).await? {
        Some(o) => o,
        None => Owner::Account(account_by_id(&mut conn, caller.account_id).await?),
    };
    if let Some(id) = p.int("id") {
        // A limit row by its id: shown when it belongs to the owner asked about.
        let row = sqlx::query(
            "SELECT owner_kind, owner_id, resource_type FROM resource_limits WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(internal)?;
        let mut found = None;
        if let Some(row) = row {
            let kind: String = row.try_get("owner_kind").map_err(internal)?;
            let owner_id: i64 = row.try_get("owner_id").map_err(internal)?;
            let number: i64 = row.try_get("resource_type").map_err(internal)?;
            let same = match &owner {
                Owner::Account(a) => kind == ACCOUNT && owner_id == a.id,
                Owner::Domain(d) => kind == DOMAIN && owner_id == d.id,
            };
            if same {
                found = Resource::from_number(number);
            }
        }
        types.retain(|r| Some(*r) == found);
    }
    let mut items = Vec::with_capacity(types.len());
    for r in types {
        let max = owner_limit(&mut conn, &owner, &domains, r).await?;
        items.push(limit_json(&owner, &domains, r, max)?);
    }
    Ok(super::page("resourcelimit", items, p.paging()))
}

/// updateResourceLimit (admins only): sets an account's limit (`account` and `domainid`) or a
/// domain's (`domainid` alone) for one type; `max` -1 or absent means no limit.
pub(crate) async fn update_limit(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    admin_only(caller)?;
    let n = p
        .int("resourcetype")
        .ok_or_else(|| ApiError::missing_parameter(p.spec().name, "resourcetype"))?;
    let r = Resource::from_number(n).ok_or_else(|| bad_type(n))?;
    let max = p.int("max").unwrap_or(-1);
    if max < -1 {
        return Err(ApiError::invalid_parameter(
            "Please specify either '-1' for an infinite limit, or a limit that is at least '0'.",
        ));
    }
    let mut conn = app.db.pool().acquire().await.map_err(internal)?;
    let domains = domains(&mut conn).await?;
    let owner = owner_asked(&mut conn, caller, p, &domains)
        .await?
        .ok_or_else(|| {
            ApiError::invalid_parameter(
                "AccountId or domainId have to be specified in order to update resource limit",
            )
        })?;
    let (kind, owner_id) = match &owner {
        Owner::Account(a) => {
            if a.root_admin && max != -1 {
                return Err(ApiError::invalid_parameter(
                    "Only -1 limit is supported for Root Admin accounts",
                ));
            }
            (ACCOUNT, a.id)
        }
        Owner::Domain(d) => {
            if d.is_root() {
                return Err(ApiError::permission_denied(format!(
                    "Cannot update resource limit for ROOT domain {}, permission denied",
                    d.uuid
                )));
            }
            if let Some(parent) = d.parent {
                let parent = domain_by_id(&domains, parent)?;
                let parent_max = domain_limit(&mut conn, &domains, parent, r).await?;
                if parent_max >= 0 && max > parent_max {
                    return Err(ApiError::invalid_parameter(format!(
                        "Domain {} has maximum allowed resource limit {parent_max} for {}, \
                         please specify a value less than or equal to {parent_max}",
                        parent.name,
                        r.name()
                    )));
                }
            }
            (DOMAIN, d.id)
        }
    };
    drop(conn);
    {
        let _w = app.db.write_lock().await;
        let mut tx = begin(app).await?;
        sqlx::query(
            "INSERT INTO resource_limits (owner_kind, owner_id, resource_type, max_value) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (owner_kind, owner_id, resource_type) \
             DO UPDATE SET max_value = excluded.max_value",
        )
        .bind(kind)
        .bind(owner_id)
        .bind(r.number())
        .bind(max)
        .execute(&mut *tx)
        .await
        .map_err(internal)?;
        tx.commit().await.map_err(internal)?;
    }
    Ok(resp::wrap(
        "resourcelimit",
        limit_json(&owner, &domains, r, max)?,
    ))
}
