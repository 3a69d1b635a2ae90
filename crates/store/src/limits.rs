//! Resource limits: the `resource_limits` rows, the accounts they bound, and the counts of
//! what accounts hold.
//!
//! Functions take a connection (`&mut AnyConnection`): a change's transaction (a
//! `&mut Transaction` coerces to one) when limits are checked before a resource is taken, or a
//! pooled one from [`connection`] for listings.

use domain::ids::{AccountId, DomainId};
use domain::limits::{LimitOwner, Resource};
use sqlx::any::AnyRow;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, Row};

use crate::db::{Db, Dialect};
use crate::error::StoreError;

/// A connection: a change's transaction (`change.conn()` coerces to it) or a pooled one.
pub type Conn = AnyConnection;

/// A connection of the pool, for reads that take several statements.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn connection(db: &Db) -> Result<PoolConnection<Any>, StoreError> {
    db.pool()
        .acquire()
        .await
        .map_err(StoreError::db("taking a connection"))
}

/// An account, as limits see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitedAccount {
    /// Internal id.
    pub id: AccountId,
    /// Name.
    pub name: String,
    /// Its domain.
    pub domain_id: DomainId,
    /// A root admin's account, which no limit bounds.
    pub root_admin: bool,
}

fn limited(row: &AnyRow) -> Result<LimitedAccount, sqlx::Error> {
    Ok(LimitedAccount {
        id: AccountId::from(row.try_get::<i64, _>("id")?),
        name: row.try_get("name")?,
        domain_id: DomainId::from(row.try_get::<i64, _>("domain_id")?),
        root_admin: row.try_get::<i64, _>("account_type")? == 1,
    })
}

/// The account `id`.
///
/// # Errors
/// [`StoreError::NotFound`] when it is gone; [`StoreError::Db`].
pub async fn account(
    conn: &mut AnyConnection,
    id: AccountId,
) -> Result<LimitedAccount, StoreError> {
    let e = StoreError::db("reading an account");
    sqlx::query("SELECT id, name, domain_id, account_type FROM accounts WHERE id = $1")
        .bind(id.get())
        .fetch_optional(conn)
        .await
        .map_err(e)?
        .ok_or(StoreError::NotFound {
            what: "account",
            id: id.get(),
        })
        .and_then(|r| limited(&r).map_err(e))
}

/// The account called `name`: in `domain` when given, else the oldest of that name.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn account_named(
    conn: &mut AnyConnection,
    name: &str,
    domain: Option<DomainId>,
) -> Result<Option<LimitedAccount>, StoreError> {
    let e = StoreError::db("reading an account");
    let row = match domain {
        Some(d) => {
            sqlx::query(
                "SELECT id, name, domain_id, account_type FROM accounts \
                 WHERE name = $1 AND domain_id = $2",
            )
            .bind(name)
            .bind(d.get())
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
    .map_err(e)?;
    row.map(|r| limited(&r)).transpose().map_err(e)
}

/// The limit set for `owner` on `r`, if one was.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn explicit(
    conn: &mut AnyConnection,
    owner: LimitOwner,
    r: Resource,
) -> Result<Option<i64>, StoreError> {
    let e = StoreError::db("reading a resource limit");
    let row = sqlx::query(
        "SELECT max_value FROM resource_limits \
         WHERE owner_kind = $1 AND owner_id = $2 AND resource_type = $3",
    )
    .bind(owner.kind())
    .bind(owner.id())
    .bind(r.number())
    .fetch_optional(conn)
    .await
    .map_err(e)?;
    row.map(|r| r.try_get("max_value")).transpose().map_err(e)
}

/// Whose holdings a count adds up.
#[derive(Debug, Clone, Copy)]
pub enum Holders<'a> {
    /// One account.
    Account(AccountId),
    /// Every account of these domains.
    Domains(&'a [DomainId]),
}

/// The start of a query counting what accounts hold, to be completed with the accounts.
const fn count_from(r: Resource) -> &'static str {
    match r {
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

/// How much of `r` the `holders` hold.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn held(
    conn: &mut AnyConnection,
    r: Resource,
    holders: Holders<'_>,
) -> Result<i64, StoreError> {
    // The ids are integers written here, so they go as literals, as many as there are.
    let accounts = match holders {
        Holders::Account(a) => a.get().to_string(),
        Holders::Domains(ds) => format!(
            "SELECT id FROM accounts WHERE domain_id IN ({})",
            ds.iter()
                .map(|d| d.get().to_string())
                .collect::<Vec<_>>()
                .join(",")
        ),
    };
    sqlx::query(&format!("{}({accounts})", count_from(r)))
        .fetch_one(conn)
        .await
        .and_then(|r| r.try_get("n"))
        .map_err(StoreError::db("counting what an account holds"))
}

/// Locks, until the transaction ends, the rows of an account about to take resources and of
/// the domains above it (PostgreSQL; SQLite's write lock already serialises takers): account
/// first, then domains in the order given (deepest first), so takers cannot deadlock.
/// `FOR NO KEY UPDATE` does not hold up foreign-key checks of concurrent inserts.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn lock_taker(
    conn: &mut AnyConnection,
    dialect: Dialect,
    account: AccountId,
    above: &[DomainId],
) -> Result<(), StoreError> {
    lock_takers(conn, dialect, &[account], above).await
}

/// Locks, until the transaction ends, the rows of several accounts about to take resources in
/// one transaction and of the domains above them (PostgreSQL; see [`lock_taker`]): the
/// accounts in the order given, then the domains in the order given. Callers give the
/// accounts by id and the domains deepest first (by id among domains of one depth), the order
/// every taker follows, so takers cannot deadlock.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn lock_takers(
    conn: &mut AnyConnection,
    dialect: Dialect,
    accounts: &[AccountId],
    above: &[DomainId],
) -> Result<(), StoreError> {
    if dialect != Dialect::Postgres {
        return Ok(());
    }
    let e = StoreError::db("locking an account and its domains");
    for a in accounts {
        sqlx::query("SELECT id FROM accounts WHERE id = $1 FOR NO KEY UPDATE")
            .bind(a.get())
            .fetch_optional(&mut *conn)
            .await
            .map_err(e)?;
    }
    for d in above {
        sqlx::query("SELECT id FROM domains WHERE id = $1 FOR NO KEY UPDATE")
            .bind(d.get())
            .fetch_optional(&mut *conn)
            .await
            .map_err(e)?;
    }
    Ok(())
}

/// A limit row, by its id: whose it is and of which type.
///
/// # Errors
/// [`StoreError::Corrupt`] for an unknown owner kind or type; [`StoreError::Db`].
pub async fn row(
    conn: &mut AnyConnection,
    id: i64,
) -> Result<Option<(LimitOwner, Resource)>, StoreError> {
    let e = StoreError::db("reading a resource limit");
    let Some(row) = sqlx::query(
        "SELECT owner_kind, owner_id, resource_type FROM resource_limits WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await
    .map_err(e)?
    else {
        return Ok(None);
    };
    let kind: String = row.try_get("owner_kind").map_err(e)?;
    let owner_id: i64 = row.try_get("owner_id").map_err(e)?;
    let number: i64 = row.try_get("resource_type").map_err(e)?;
    let owner = match kind.as_str() {
        "account" => LimitOwner::Account(AccountId::from(owner_id)),
        "domain" => LimitOwner::Domain(DomainId::from(owner_id)),
        _ => {
            return Err(StoreError::Corrupt {
                table: "resource_limits",
                column: "owner_kind",
                value: kind,
            })
        }
    };
    let r = Resource::from_number(number).ok_or_else(|| StoreError::Corrupt {
        table: "resource_limits",
        column: "resource_type",
        value: number.to_string(),
    })?;
    Ok(Some((owner, r)))
}

/// Sets `owner`'s limit on `r` to `max` (-1: none).
///
/// # Errors
/// [`StoreError::Db`].
pub async fn set(
    conn: &mut AnyConnection,
    owner: LimitOwner,
    r: Resource,
    max: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO resource_limits (owner_kind, owner_id, resource_type, max_value) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (owner_kind, owner_id, resource_type) \
         DO UPDATE SET max_value = excluded.max_value",
    )
    .bind(owner.kind())
    .bind(owner.id())
    .bind(r.number())
    .bind(max)
    .execute(conn)
    .await
    .map(|_| ())
    .map_err(StoreError::db("setting a resource limit"))
}
