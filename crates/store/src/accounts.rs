//! Accounts, their users and keys, and the domains they live in.

use domain::ids::{AccountId, DomainId, UserId};
use domain::limits::Domain;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Row, Transaction};

use crate::db::{opt_str, Db};
use crate::error::StoreError;
use crate::filter::Filter;

// ------------------------------------------------------------------------------------------
// Domains.

/// Every domain, oldest first (there are few).
///
/// # Errors
/// [`StoreError::Db`].
pub async fn domains(conn: &mut AnyConnection) -> Result<Vec<Domain>, StoreError> {
    let e = StoreError::db("reading the domains");
    let rows = sqlx::query("SELECT id, uuid, name, path, parent_id FROM domains ORDER BY id")
        .fetch_all(conn)
        .await
        .map_err(e)?;
    rows.iter()
        .map(|r| {
            Ok(Domain {
                id: DomainId::from(r.try_get::<i64, _>("id")?),
                uuid: r.try_get("uuid")?,
                name: r.try_get("name")?,
                path: r.try_get("path")?,
                parent: r
                    .try_get::<Option<i64>, _>("parent_id")?
                    .map(DomainId::from),
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(e)
}

/// Every domain, read on a connection of the pool.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn all_domains(db: &Db) -> Result<Vec<Domain>, StoreError> {
    let mut conn = db
        .pool()
        .acquire()
        .await
        .map_err(StoreError::db("reading the domains"))?;
    domains(&mut conn).await
}

/// The domain `uuid`, if there is one.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn domain_by_uuid(db: &Db, uuid: &str) -> Result<Option<DomainId>, StoreError> {
    sqlx::query("SELECT id FROM domains WHERE uuid = $1")
        .bind(uuid)
        .fetch_optional(db.pool())
        .await
        .and_then(|r| r.map(|r| r.try_get::<i64, _>("id")).transpose())
        .map(|id| id.map(DomainId::from))
        .map_err(StoreError::db("reading a domain"))
}

/// The ROOT domain, if the database was seeded.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn root_domain(db: &Db) -> Result<Option<DomainId>, StoreError> {
    sqlx::query("SELECT id FROM domains WHERE parent_id IS NULL ORDER BY id")
        .fetch_optional(db.pool())
        .await
        .and_then(|r| r.map(|r| r.try_get::<i64, _>("id")).transpose())
        .map(|id| id.map(DomainId::from))
        .map_err(StoreError::db("reading the ROOT domain"))
}

// ------------------------------------------------------------------------------------------
// Accounts.

/// An account as listAccounts shows it, with its domain's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRecord {
    /// Internal id.
    pub id: AccountId,
    /// API id.
    pub uuid: String,
    /// Name, unique in its domain.
    pub name: String,
    /// CloudStack's account type: 0 user, 1 root admin, 2 domain admin.
    pub account_type: i64,
    /// `enabled`…
    pub state: String,
    /// Creation time (unix ms).
    pub created: i64,
    /// Its domain's uuid.
    pub domain_uuid: String,
    /// Its domain's name.
    pub domain_name: String,
    /// Its domain's path.
    pub domain_path: String,
}

const ACCOUNT_COLUMNS: &str = "a.id, a.uuid, a.name, a.account_type, a.state, a.created, \
     d.uuid AS domain_uuid, d.name AS domain_name, d.path AS domain_path";

const ACCOUNT_FROM: &str = "accounts a JOIN domains d ON d.id = a.domain_id";

fn account_record(r: &AnyRow) -> Result<AccountRecord, sqlx::Error> {
    Ok(AccountRecord {
        id: AccountId::from(r.try_get::<i64, _>("id")?),
        uuid: r.try_get("uuid")?,
        name: r.try_get("name")?,
        account_type: r.try_get("account_type")?,
        state: r.try_get("state")?,
        created: r.try_get("created")?,
        domain_uuid: r.try_get("domain_uuid")?,
        domain_name: r.try_get("domain_name")?,
        domain_path: r.try_get("domain_path")?,
    })
}

/// Which accounts a listing selects; every condition given must hold.
#[derive(Debug, Clone, Default)]
pub struct AccountFilter<'a> {
    /// The account with this uuid.
    pub uuid: Option<&'a str>,
    /// Accounts with this name.
    pub name: Option<&'a str>,
    /// Accounts in one of these domains.
    pub domains: Option<&'a [DomainId]>,
    /// Only this account.
    pub account: Option<AccountId>,
    /// Accounts of this domain.
    pub domain: Option<DomainId>,
}

fn ids<T: Into<i64> + Copy>(v: &[T]) -> Vec<i64> {
    v.iter().map(|&i| i.into()).collect()
}

/// The accounts `filter` selects, oldest first.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn list_accounts(
    db: &Db,
    filter: &AccountFilter<'_>,
) -> Result<Vec<AccountRecord>, StoreError> {
    let mut f = Filter::new();
    if let Some(v) = filter.uuid {
        f.and("a.uuid = $?", [v]);
    }
    if let Some(v) = filter.name {
        f.and("a.name = $?", [v]);
    }
    if let Some(d) = filter.domains {
        f.and_in("a.domain_id", &ids(d));
    }
    if let Some(a) = filter.account {
        f.and("a.id = $?", [a.get()]);
    }
    if let Some(d) = filter.domain {
        f.and("a.domain_id = $?", [d.get()]);
    }
    let e = StoreError::db("listing accounts");
    crate::filter::page(db, ACCOUNT_COLUMNS, ACCOUNT_FROM, &f, "a.id", None, 0)
        .await?
        .iter()
        .map(account_record)
        .collect::<Result<Vec<_>, _>>()
        .map_err(e)
}

/// The account `uuid`, if there is one.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn account_by_uuid(db: &Db, uuid: &str) -> Result<Option<AccountRecord>, StoreError> {
    Ok(list_accounts(
        db,
        &AccountFilter {
            uuid: Some(uuid),
            ..AccountFilter::default()
        },
    )
    .await?
    .into_iter()
    .next())
}

/// The first account named `name` (in any domain), if there is one.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn account_id_by_name(db: &Db, name: &str) -> Result<Option<AccountId>, StoreError> {
    sqlx::query("SELECT id FROM accounts WHERE name = $1")
        .bind(name)
        .fetch_optional(db.pool())
        .await
        .and_then(|r| r.map(|r| r.try_get::<i64, _>("id")).transpose())
        .map(|id| id.map(AccountId::from))
        .map_err(StoreError::db("reading an account"))
}

/// Who owns what an account owns, as many responses name it.
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

/// The names of account `account` and of its domain.
///
/// # Errors
/// [`StoreError::NotFound`] when there is no such account; [`StoreError::Db`].
pub async fn owner_names(db: &Db, account: AccountId) -> Result<OwnerNames, StoreError> {
    let e = StoreError::db("reading an account's owner names");
    let row = sqlx::query(
        "SELECT a.name, d.uuid AS domain_uuid, d.name AS domain_name, d.path \
         FROM accounts a JOIN domains d ON d.id = a.domain_id WHERE a.id = $1",
    )
    .bind(account.get())
    .fetch_optional(db.pool())
    .await
    .map_err(e)?
    .ok_or(StoreError::NotFound {
        what: "account",
        id: account.get(),
    })?;
    Ok(OwnerNames {
        account: row.try_get("name").map_err(e)?,
        domain_uuid: row.try_get("domain_uuid").map_err(e)?,
        domain_name: row.try_get("domain_name").map_err(e)?,
        domain_path: row.try_get("path").map_err(e)?,
    })
}

/// Whether domain `domain` has an account named `name`.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn account_exists(
    tx: &mut Transaction<'_, Any>,
    domain: DomainId,
    name: &str,
) -> Result<bool, StoreError> {
    sqlx::query("SELECT id FROM accounts WHERE domain_id = $1 AND name = $2")
        .bind(domain.get())
        .bind(name)
        .fetch_optional(&mut **tx)
        .await
        .map(|r| r.is_some())
        .map_err(StoreError::db("reading an account"))
}

/// A new account.
#[derive(Debug, Clone, Copy)]
pub struct NewAccount<'a> {
    /// API id.
    pub uuid: &'a str,
    /// Name.
    pub name: &'a str,
    /// Its domain.
    pub domain: DomainId,
    /// CloudStack's account type.
    pub account_type: i64,
    /// Creation time (unix ms).
    pub created: i64,
}

/// Inserts an enabled account; its id.
///
/// # Errors
/// [`StoreError::Db`]; [`is_duplicate`] tells a taken name.
pub async fn insert_account(
    tx: &mut Transaction<'_, Any>,
    a: NewAccount<'_>,
) -> Result<AccountId, StoreError> {
    sqlx::query(
        "INSERT INTO accounts (uuid, name, domain_id, account_type, state, created) \
         VALUES ($1, $2, $3, $4, 'enabled', $5) RETURNING id",
    )
    .bind(a.uuid)
    .bind(a.name)
    .bind(a.domain.get())
    .bind(a.account_type)
    .bind(a.created)
    .fetch_one(&mut **tx)
    .await
    .and_then(|r| r.try_get::<i64, _>("id"))
    .map(AccountId::from)
    .map_err(StoreError::db("inserting an account"))
}

/// Whether a failed insert failed on a unique key (two requests racing for one name).
pub fn is_duplicate(e: &StoreError) -> bool {
    let StoreError::Db { source, .. } = e else {
        return false;
    };
    if let sqlx::Error::Database(d) = source {
        if d.is_unique_violation() {
            return true;
        }
    }
    let text = source.to_string().to_lowercase();
    text.contains("unique") || text.contains("duplicate key")
}

// ------------------------------------------------------------------------------------------
// Users.

/// A user as listUsers shows it, with its account's and domain's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Internal id.
    pub id: UserId,
    /// API id.
    pub uuid: String,
    /// Login name, unique.
    pub username: String,
    /// First name.
    pub firstname: String,
    /// Last name.
    pub lastname: String,
    /// E-mail address.
    pub email: String,
    /// The API key, once one was registered (never the secret key).
    pub api_key: Option<String>,
    /// `enabled`…
    pub state: String,
    /// Creation time (unix ms).
    pub created: i64,
    /// Its account.
    pub account_id: AccountId,
    /// Its account's uuid.
    pub account_uuid: String,
    /// Its account's name.
    pub account_name: String,
    /// Its account's type.
    pub account_type: i64,
    /// Its domain's uuid.
    pub domain_uuid: String,
    /// Its domain's name.
    pub domain_name: String,
}

const USER_COLUMNS: &str = "u.id, u.uuid, u.username, u.firstname, u.lastname, u.email, \
     u.api_key, u.state, u.created, u.account_id, a.uuid AS account_uuid, a.name AS account_name, \
     a.account_type, d.uuid AS domain_uuid, d.name AS domain_name";

const USER_FROM: &str =
    "users u JOIN accounts a ON a.id = u.account_id JOIN domains d ON d.id = a.domain_id";

fn user_record(r: &AnyRow) -> Result<UserRecord, sqlx::Error> {
    Ok(UserRecord {
        id: UserId::from(r.try_get::<i64, _>("id")?),
        uuid: r.try_get("uuid")?,
        username: r.try_get("username")?,
        firstname: r.try_get("firstname")?,
        lastname: r.try_get("lastname")?,
        email: r.try_get("email")?,
        api_key: opt_str(r, "api_key")?,
        state: r.try_get("state")?,
        created: r.try_get("created")?,
        account_id: AccountId::from(r.try_get::<i64, _>("account_id")?),
        account_uuid: r.try_get("account_uuid")?,
        account_name: r.try_get("account_name")?,
        account_type: r.try_get("account_type")?,
        domain_uuid: r.try_get("domain_uuid")?,
        domain_name: r.try_get("domain_name")?,
    })
}

/// Which users a listing selects; every condition given must hold.
#[derive(Debug, Clone, Default)]
pub struct UserFilter<'a> {
    /// The user with this uuid.
    pub uuid: Option<&'a str>,
    /// The user with this login name.
    pub username: Option<&'a str>,
    /// Users of accounts with this name.
    pub account_name: Option<&'a str>,
    /// Users of accounts in one of these domains.
    pub domains: Option<&'a [DomainId]>,
    /// Users of these accounts.
    pub accounts: Option<&'a [AccountId]>,
    /// Users of accounts of this domain.
    pub domain: Option<DomainId>,
}

/// The users `filter` selects, oldest first.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn list_users(db: &Db, filter: &UserFilter<'_>) -> Result<Vec<UserRecord>, StoreError> {
    let mut f = Filter::new();
    if let Some(v) = filter.uuid {
        f.and("u.uuid = $?", [v]);
    }
    if let Some(v) = filter.username {
        f.and("u.username = $?", [v]);
    }
    if let Some(v) = filter.account_name {
        f.and("a.name = $?", [v]);
    }
    if let Some(d) = filter.domains {
        f.and_in("a.domain_id", &ids(d));
    }
    if let Some(a) = filter.accounts {
        f.and_in("u.account_id", &ids(a));
    }
    if let Some(d) = filter.domain {
        f.and("a.domain_id = $?", [d.get()]);
    }
    let e = StoreError::db("listing users");
    crate::filter::page(db, USER_COLUMNS, USER_FROM, &f, "u.id", None, 0)
        .await?
        .iter()
        .map(user_record)
        .collect::<Result<Vec<_>, _>>()
        .map_err(e)
}

/// The users of these accounts, oldest first, read 500 accounts at a time.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn users_of(db: &Db, accounts: &[AccountId]) -> Result<Vec<UserRecord>, StoreError> {
    let mut out = Vec::new();
    for chunk in accounts.chunks(500) {
        out.extend(
            list_users(
                db,
                &UserFilter {
                    accounts: Some(chunk),
                    ..UserFilter::default()
                },
            )
            .await?,
        );
    }
    Ok(out)
}

/// The first user (the one made at first start), shown as `isdefault`.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn first_user(db: &Db) -> Result<Option<UserId>, StoreError> {
    sqlx::query("SELECT MIN(id) AS id FROM users")
        .fetch_one(db.pool())
        .await
        .and_then(|r| r.try_get::<Option<i64>, _>("id"))
        .map(|id| id.map(UserId::from))
        .map_err(StoreError::db("reading the first user"))
}

/// The user `uuid`, if there is one.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn user_by_uuid(db: &Db, uuid: &str) -> Result<Option<UserId>, StoreError> {
    sqlx::query("SELECT id FROM users WHERE uuid = $1")
        .bind(uuid)
        .fetch_optional(db.pool())
        .await
        .and_then(|r| r.map(|r| r.try_get::<i64, _>("id")).transpose())
        .map(|id| id.map(UserId::from))
        .map_err(StoreError::db("reading a user"))
}

/// Whether a user is called `username`.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn username_taken(
    tx: &mut Transaction<'_, Any>,
    username: &str,
) -> Result<bool, StoreError> {
    sqlx::query("SELECT id FROM users WHERE username = $1")
        .bind(username)
        .fetch_optional(&mut **tx)
        .await
        .map(|r| r.is_some())
        .map_err(StoreError::db("reading a user"))
}

/// A new user.
#[derive(Debug, Clone, Copy)]
pub struct NewUser<'a> {
    /// API id.
    pub uuid: &'a str,
    /// Its account.
    pub account: AccountId,
    /// Login name.
    pub username: &'a str,
    /// The password's PHC string.
    pub password_hash: &'a str,
    /// E-mail address.
    pub email: &'a str,
    /// First name.
    pub firstname: &'a str,
    /// Last name.
    pub lastname: &'a str,
    /// Creation time (unix ms).
    pub created: i64,
}

/// Inserts an enabled user.
///
/// # Errors
/// [`StoreError::Db`]; [`is_duplicate`] tells a taken name.
pub async fn insert_user(tx: &mut Transaction<'_, Any>, u: NewUser<'_>) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO users (uuid, account_id, username, password_hash, email, firstname, \
         lastname, state, created) VALUES ($1, $2, $3, $4, $5, $6, $7, 'enabled', $8)",
    )
    .bind(u.uuid)
    .bind(u.account.get())
    .bind(u.username)
    .bind(u.password_hash)
    .bind(u.email)
    .bind(u.firstname)
    .bind(u.lastname)
    .bind(u.created)
    .execute(&mut **tx)
    .await
    .map(|_| ())
    .map_err(StoreError::db("inserting a user"))
}

// ------------------------------------------------------------------------------------------
// Keys.

/// Gives user `user` a new API key and secret key.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn set_keys(
    tx: &mut Transaction<'_, Any>,
    user: UserId,
    api_key: &str,
    secret_key: &str,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE users SET api_key = $1, secret_key = $2 WHERE id = $3")
        .bind(api_key)
        .bind(secret_key)
        .bind(user.get())
        .execute(&mut **tx)
        .await
        .map(|_| ())
        .map_err(StoreError::db("storing a user's keys"))
}

/// A user's keys, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserKeys {
    /// The user.
    pub user: UserId,
    /// Its API key, if it has one.
    pub api_key: Option<String>,
    /// Its secret key, if it has one.
    pub secret_key: Option<String>,
}

/// The keys of the user called `username`, if there is one.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn keys_of(db: &Db, username: &str) -> Result<Option<UserKeys>, StoreError> {
    let row = sqlx::query("SELECT id, api_key, secret_key FROM users WHERE username = $1")
        .bind(username)
        .fetch_optional(db.pool())
        .await
        .map_err(StoreError::db("reading a user's keys"))?;
    row.map(|r| {
        Ok(UserKeys {
            user: UserId::from(r.try_get::<i64, _>("id")?),
            api_key: r.try_get("api_key")?,
            secret_key: r.try_get("secret_key")?,
        })
    })
    .transpose()
    .map_err(StoreError::db("reading a user's keys"))
}

#[cfg(test)]
mod tests;
