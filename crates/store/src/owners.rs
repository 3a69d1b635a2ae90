//! Whose rows a listing shows, and the lookups of accounts and domains that listings and
//! creates name by parameter.

use domain::ids::{AccountId, DomainId};
use sqlx::{Any, Transaction};

use crate::db::{Db, Dialect};
use crate::error::StoreError;
use crate::filter::Filter;
use crate::rows::get;

/// Whose rows a listing shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owners {
    /// Everyone's.
    Everyone,
    /// One account's.
    Account(AccountId),
    /// The accounts of one domain.
    Domain(DomainId),
    /// The accounts of a domain (its id and path) and of its subdomains.
    DomainTree(DomainId, String),
}

impl Owners {
    /// The condition on the account id column `col`, to add to a filter; `None` for everyone.
    pub(crate) fn condition(&self, col: &str) -> Option<(String, Vec<crate::filter::Arg>)> {
        match self {
            Owners::Everyone => None,
            Owners::Account(a) => Some((format!("{col} = $?"), vec![a.get().into()])),
            Owners::Domain(d) => Some((
                format!("{col} IN (SELECT id FROM accounts WHERE domain_id = $?)"),
                vec![d.get().into()],
            )),
            Owners::DomainTree(d, path) => Some((
                format!(
                    "{col} IN (SELECT a.id FROM accounts a JOIN domains d ON d.id = a.domain_id \
                     WHERE d.id = $? OR d.path LIKE $?)"
                ),
                vec![d.get().into(), format!("{path}/%").into()],
            )),
        }
    }

    /// Adds the condition on `col` to `filter`.
    pub(crate) fn restrict(&self, filter: &mut Filter, col: &str) {
        if let Some((cond, args)) = self.condition(col) {
            filter.and(&cond, args);
        }
    }
}

/// A domain by uuid: its id and path.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn domain_by_uuid(db: &Db, uuid: &str) -> Result<Option<(DomainId, String)>, StoreError> {
    const W: &str = "reading a domain";
    let row = sqlx::query("SELECT id, path FROM domains WHERE uuid = $1")
        .bind(uuid)
        .fetch_optional(db.pool())
        .await
        .map_err(StoreError::db(W))?;
    row.map(|r| {
        Ok((
            DomainId::from(get::<i64>(&r, "id", W)?),
            get(&r, "path", W)?,
        ))
    })
    .transpose()
}

/// The account named `name` in the domain `domain`.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn account_in_domain(
    db: &Db,
    name: &str,
    domain: DomainId,
) -> Result<Option<AccountId>, StoreError> {
    const W: &str = "reading an account";
    let row = sqlx::query("SELECT id FROM accounts WHERE name = $1 AND domain_id = $2")
        .bind(name)
        .bind(domain.get())
        .fetch_optional(db.pool())
        .await
        .map_err(StoreError::db(W))?;
    row.map(|r| get::<i64>(&r, "id", W).map(AccountId::from))
        .transpose()
}

/// The account named `name` in the domain of uuid `domain_uuid`.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn account_in_domain_uuid(
    db: &Db,
    name: &str,
    domain_uuid: &str,
) -> Result<Option<AccountId>, StoreError> {
    const W: &str = "reading an account";
    let row = sqlx::query(
        "SELECT a.id FROM accounts a JOIN domains d ON d.id = a.domain_id \
         WHERE a.name = $1 AND d.uuid = $2",
    )
    .bind(name)
    .bind(domain_uuid)
    .fetch_optional(db.pool())
    .await
    .map_err(StoreError::db(W))?;
    row.map(|r| get::<i64>(&r, "id", W).map(AccountId::from))
        .transpose()
}

/// The oldest account named `name`, in any domain.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn first_account_named(db: &Db, name: &str) -> Result<Option<AccountId>, StoreError> {
    const W: &str = "reading an account";
    let row = sqlx::query("SELECT id FROM accounts WHERE name = $1 ORDER BY id LIMIT 1")
        .bind(name)
        .fetch_optional(db.pool())
        .await
        .map_err(StoreError::db(W))?;
    row.map(|r| get::<i64>(&r, "id", W).map(AccountId::from))
        .transpose()
}

/// The first root-admin account (the owner of the built-in template).
///
/// # Errors
/// [`StoreError::Db`]; [`StoreError::NotFound`] when there is none.
pub async fn first_root_admin(db: &Db) -> Result<AccountId, StoreError> {
    const W: &str = "reading the root admin account";
    let row = sqlx::query("SELECT id FROM accounts WHERE account_type = 1 ORDER BY id LIMIT 1")
        .fetch_optional(db.pool())
        .await
        .map_err(StoreError::db(W))?
        .ok_or(StoreError::NotFound {
            what: "root admin account",
            id: 0,
        })?;
    get::<i64>(&row, "id", W).map(AccountId::from)
}

/// Locks an account's row until the transaction ends (PostgreSQL; SQLite's one writer
/// already serialises), so that two changes of one account's names are made one at a time.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn lock_account(
    tx: &mut Transaction<'_, Any>,
    dialect: Dialect,
    account: AccountId,
) -> Result<(), StoreError> {
    if dialect == Dialect::Postgres {
        sqlx::query("SELECT id FROM accounts WHERE id = $1 FOR UPDATE")
            .bind(account.get())
            .fetch_optional(&mut **tx)
            .await
            .map_err(StoreError::db("locking an account"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
