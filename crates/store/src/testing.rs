//! Test support: databases of a test's own, and the few facts tests set up or read straight
//! from the tables (a row no command shows, or a state no command reaches quickly).
//!
//! Built for this crate's tests and, with the `testing` feature, for other crates' tests
//! (the management server enables it only among its dev-dependencies). Each function names
//! what it does; there is no way to run any other statement.

use std::collections::BTreeSet;

use domain::job::JobStatus;
use sqlx::any::AnyRow;
use sqlx::{Column, Row};

use crate::db::Db;
use crate::error::StoreError;

/// A database of its own on the PostgreSQL server the test command names
/// (`GUESTNET_TEST_POSTGRES_URL`), or the one on 127.0.0.1:5432; no server is a failure.
pub struct PgDatabase {
    /// Its URL.
    pub url: String,
    name: String,
    admin: sqlx::AnyPool,
}

impl PgDatabase {
    /// Creates a database whose name starts with `prefix`.
    ///
    /// # Panics
    /// When the server cannot be reached or refuses to create it: the test cannot run.
    pub async fn create(prefix: &str) -> PgDatabase {
        let base = std::env::var("GUESTNET_TEST_POSTGRES_URL")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
        sqlx::any::install_default_drivers();
        let admin = sqlx::AnyPool::connect(&base)
            .await
            .expect("the test PostgreSQL server answers");
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .expect("the test PostgreSQL server creates a database");
        let (server, _) = base
            .rsplit_once('/')
            .expect("the test PostgreSQL URL names a database");
        PgDatabase {
            url: format!("{server}/{name}"),
            name,
            admin,
        }
    }

    /// Drops the database, closing whatever still uses it.
    ///
    /// # Panics
    /// When the server refuses.
    pub async fn drop(self) {
        sqlx::query(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .execute(&self.admin)
            .await
            .expect("the test PostgreSQL server drops the database");
    }
}

/// A user's ids and those of its account and domain.
#[derive(Debug, Clone)]
pub struct UserIds {
    /// The user's internal id.
    pub user_id: i64,
    /// The user's API id.
    pub user_uuid: String,
    /// Its account's internal id.
    pub account_id: i64,
    /// Its account's API id.
    pub account_uuid: String,
    /// Its account's domain's internal id.
    pub domain_id: i64,
    /// Its account's domain's API id.
    pub domain_uuid: String,
}

/// The ids of the user called `username`.
///
/// # Errors
/// [`StoreError::Db`], also when there is no such user.
pub async fn user_ids(db: &Db, username: &str) -> Result<UserIds, StoreError> {
    let doing = "reading a user's ids";
    let r = sqlx::query(
        "SELECT u.id AS uid, u.uuid AS uuuid, a.id AS aid, a.uuid AS auuid, \
         d.id AS did, d.uuid AS duuid FROM users u JOIN accounts a ON a.id = u.account_id \
         JOIN domains d ON d.id = a.domain_id WHERE u.username = $1",
    )
    .bind(username)
    .fetch_one(db.pool())
    .await
    .map_err(StoreError::db(doing))?;
    let ids = || -> Result<UserIds, sqlx::Error> {
        Ok(UserIds {
            user_id: r.try_get("uid")?,
            user_uuid: r.try_get("uuuid")?,
            account_id: r.try_get("aid")?,
            account_uuid: r.try_get("auuid")?,
            domain_id: r.try_get("did")?,
            domain_uuid: r.try_get("duuid")?,
        })
    };
    ids().map_err(StoreError::db(doing))
}

/// Makes an ordinary account `name` in the domain `domain_id` with one user of the same
/// name, directly (no command, no event); returns their ids.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn add_account_with_user(
    db: &Db,
    name: &str,
    domain_id: i64,
) -> Result<UserIds, StoreError> {
    let doing = "adding an account and its user";
    let account_uuid = uuid::Uuid::new_v4().to_string();
    let user_uuid = uuid::Uuid::new_v4().to_string();
    let account_id: i64 = sqlx::query(
        "INSERT INTO accounts (uuid, name, domain_id, account_type, state, created) \
         VALUES ($1, $2, $3, 0, 'enabled', 0) RETURNING id",
    )
    .bind(&account_uuid)
    .bind(name)
    .bind(domain_id)
    .fetch_one(db.pool())
    .await
    .and_then(|r| r.try_get("id"))
    .map_err(StoreError::db(doing))?;
    let user_id: i64 = sqlx::query(
        "INSERT INTO users (uuid, account_id, username, password_hash, email, firstname, \
         lastname, state, created) VALUES ($1, $2, $3, 'x', 'a@example.org', 'A', 'L', \
         'enabled', 0) RETURNING id",
    )
    .bind(&user_uuid)
    .bind(account_id)
    .bind(name)
    .fetch_one(db.pool())
    .await
    .and_then(|r| r.try_get("id"))
    .map_err(StoreError::db(doing))?;
    let domain_uuid: String = sqlx::query("SELECT uuid FROM domains WHERE id = $1")
        .bind(domain_id)
        .fetch_one(db.pool())
        .await
        .and_then(|r| r.try_get("uuid"))
        .map_err(StoreError::db(doing))?;
    Ok(UserIds {
        user_id,
        user_uuid,
        account_id,
        account_uuid,
        domain_id,
        domain_uuid,
    })
}

/// Makes the domain `name` at `path` under `parent_id`, directly; returns its id and API id.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn add_subdomain(
    db: &Db,
    parent_id: i64,
    name: &str,
    path: &str,
) -> Result<(i64, String), StoreError> {
    let uuid = uuid::Uuid::new_v4().to_string();
    let id: i64 = sqlx::query(
        "INSERT INTO domains (uuid, name, path, parent_id, created) \
         VALUES ($1, $2, $3, $4, 0) RETURNING id",
    )
    .bind(&uuid)
    .bind(name)
    .bind(path)
    .bind(parent_id)
    .fetch_one(db.pool())
    .await
    .and_then(|r| r.try_get("id"))
    .map_err(StoreError::db("adding a domain"))?;
    Ok((id, uuid))
}

/// Every user's name and stored password hash, in the order they were made.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn password_hashes(db: &Db) -> Result<Vec<(String, String)>, StoreError> {
    sqlx::query_as("SELECT username, password_hash FROM users ORDER BY id")
        .fetch_all(db.pool())
        .await
        .map_err(StoreError::db("reading the password hashes"))
}

/// How many jobs have `status`.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn job_count(db: &Db, status: JobStatus) -> Result<i64, StoreError> {
    count(
        db,
        "SELECT COUNT(*) AS n FROM jobs WHERE status = $1",
        Some(status.code()),
        "counting jobs",
    )
    .await
}

/// How many public addresses there are, whatever their state.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn public_ip_count(db: &Db) -> Result<i64, StoreError> {
    count(
        db,
        "SELECT COUNT(*) AS n FROM public_ips",
        None,
        "counting public addresses",
    )
    .await
}

/// How many public addresses the account holds (being allocated or allocated).
///
/// # Errors
/// [`StoreError::Db`].
pub async fn public_ips_held(db: &Db, account_id: i64) -> Result<i64, StoreError> {
    count(
        db,
        "SELECT COUNT(*) AS n FROM public_ips WHERE account_id = $1 \
         AND state IN ('Allocating', 'Allocated')",
        Some(account_id),
        "counting an account's public addresses",
    )
    .await
}

/// Marks every public address allocated, so that the next allocation finds none free.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn allocate_every_public_ip(db: &Db) -> Result<(), StoreError> {
    sqlx::query("UPDATE public_ips SET state = 'Allocated'")
        .execute(db.pool())
        .await
        .map_err(StoreError::db("allocating every public address"))?;
    Ok(())
}

/// How many network offerings there are.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn network_offering_count(db: &Db) -> Result<i64, StoreError> {
    count(
        db,
        "SELECT COUNT(*) AS n FROM network_offerings",
        None,
        "counting network offerings",
    )
    .await
}

/// How many resource limits are stored (explicit ones; defaults are not rows).
///
/// # Errors
/// [`StoreError::Db`].
pub async fn resource_limit_count(db: &Db) -> Result<i64, StoreError> {
    count(
        db,
        "SELECT COUNT(*) AS n FROM resource_limits",
        None,
        "counting resource limits",
    )
    .await
}

/// The internal id of the network `network_uuid` and its router's name.
///
/// # Errors
/// [`StoreError::Db`], also when the network has no router.
pub async fn network_router(db: &Db, network_uuid: &str) -> Result<(i64, String), StoreError> {
    let doing = "reading a network's router";
    let r = sqlx::query(
        "SELECT n.id, r.name FROM routers r JOIN networks n ON n.id = r.network_id \
         WHERE n.uuid = $1",
    )
    .bind(network_uuid)
    .fetch_one(db.pool())
    .await
    .map_err(StoreError::db(doing))?;
    Ok((
        r.try_get("id").map_err(StoreError::db(doing))?,
        r.try_get("name").map_err(StoreError::db(doing))?,
    ))
}

/// The desired and applied generations of the router of the network `network_uuid`.
///
/// # Errors
/// [`StoreError::Db`], also when the network has no router.
pub async fn router_generations(db: &Db, network_uuid: &str) -> Result<(i64, i64), StoreError> {
    let doing = "reading a router's generations";
    let r = sqlx::query(
        "SELECT r.desired_generation, r.applied_generation FROM routers r \
         JOIN networks n ON n.id = r.network_id WHERE n.uuid = $1",
    )
    .bind(network_uuid)
    .fetch_one(db.pool())
    .await
    .map_err(StoreError::db(doing))?;
    Ok((
        r.try_get("desired_generation")
            .map_err(StoreError::db(doing))?,
        r.try_get("applied_generation")
            .map_err(StoreError::db(doing))?,
    ))
}

/// The last error recorded for the router called `router`.
///
/// # Errors
/// [`StoreError::Db`], also when there is no such router.
pub async fn router_last_error(db: &Db, router: &str) -> Result<Option<String>, StoreError> {
    sqlx::query("SELECT last_error FROM routers WHERE name = $1")
        .bind(router)
        .fetch_one(db.pool())
        .await
        .and_then(|r| r.try_get("last_error"))
        .map_err(StoreError::db("reading a router's last error"))
}

/// Sets the algorithm of the balancer `uuid` behind the server's back: a write that records
/// no job and rings no router, as an older server's updates did.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn set_balancer_algorithm_without_a_job(
    db: &Db,
    uuid: &str,
    algorithm: &str,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE rules SET algorithm = $1 WHERE uuid = $2")
        .bind(algorithm)
        .bind(uuid)
        .execute(db.pool())
        .await
        .map_err(StoreError::db("setting a balancer's algorithm"))?;
    Ok(())
}

/// How many events of `event_type` were recorded.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn event_count(db: &Db, event_type: &str) -> Result<i64, StoreError> {
    sqlx::query("SELECT COUNT(*) AS n FROM events WHERE event_type = $1")
        .bind(event_type)
        .fetch_one(db.pool())
        .await
        .and_then(|r| r.try_get("n"))
        .map_err(StoreError::db("counting events"))
}

/// How many events mention `text`: in their description, or as their resource's id.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn events_mentioning(db: &Db, text: &str) -> Result<i64, StoreError> {
    sqlx::query("SELECT COUNT(*) AS n FROM events WHERE description LIKE $1 OR resource_uuid = $2")
        .bind(format!("%{text}%"))
        .bind(text)
        .fetch_one(db.pool())
        .await
        .and_then(|r| r.try_get("n"))
        .map_err(StoreError::db("counting events that mention a text"))
}

/// Sets every server's heartbeat to `at` (milliseconds), as housekeeping would keep them.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn set_server_heartbeats(db: &Db, at: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE servers SET heartbeat = $1")
        .bind(at)
        .execute(db.pool())
        .await
        .map_err(StoreError::db("setting the servers' heartbeats"))?;
    Ok(())
}

/// How many hosts are called `name`.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn host_count(db: &Db, name: &str) -> Result<i64, StoreError> {
    sqlx::query("SELECT COUNT(*) AS n FROM hosts WHERE name = $1")
        .bind(name)
        .fetch_one(db.pool())
        .await
        .and_then(|r| r.try_get("n"))
        .map_err(StoreError::db("counting hosts"))
}

/// The API id of the host called `name`.
///
/// # Errors
/// [`StoreError::Db`], also when there is no such host.
pub async fn host_uuid(db: &Db, name: &str) -> Result<String, StoreError> {
    sqlx::query("SELECT uuid FROM hosts WHERE name = $1")
        .bind(name)
        .fetch_one(db.pool())
        .await
        .and_then(|r| r.try_get("uuid"))
        .map_err(StoreError::db("reading a host's id"))
}

/// An agent token's row, every column of it.
#[derive(Debug, Clone)]
pub struct TokenRow {
    /// API id.
    pub uuid: String,
    /// The host it admits.
    pub host_id: i64,
    /// The token's digest.
    pub digest: String,
    /// When it was made (milliseconds).
    pub created: i64,
    /// When it was revoked, if it was.
    pub revoked: Option<i64>,
    /// When it was last used, if it was.
    pub last_used: Option<i64>,
}

/// Every agent token's row, in the order they were made.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn agent_tokens(db: &Db) -> Result<Vec<TokenRow>, StoreError> {
    let doing = "reading the agent tokens";
    let rows = sqlx::query(
        "SELECT uuid, host_id, digest, created, revoked, last_used FROM agent_tokens \
         ORDER BY id",
    )
    .fetch_all(db.pool())
    .await
    .map_err(StoreError::db(doing))?;
    rows.iter()
        .map(|r| {
            Ok(TokenRow {
                uuid: r.try_get("uuid")?,
                host_id: r.try_get("host_id")?,
                digest: r.try_get("digest")?,
                created: r.try_get("created")?,
                revoked: r.try_get("revoked")?,
                last_used: r.try_get("last_used")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(StoreError::db(doing))
}

/// Everything the account `account_id` owns, row by row: each row as `table: column=value
/// ...`, every column whatever its type, from the account itself, its users, networks and
/// their routers, addresses, VMs, rules and their balancers' members and policies, jobs and
/// events.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn account_snapshot(db: &Db, account_id: i64) -> Result<BTreeSet<String>, StoreError> {
    let own = "account_id = $1";
    let of_rules = "lb_id IN (SELECT id FROM rules WHERE account_id = $1)";
    let tables = [
        ("accounts", "id = $1"),
        ("users", own),
        ("networks", own),
        (
            "routers",
            "network_id IN (SELECT id FROM networks WHERE account_id = $1)",
        ),
        ("public_ips", own),
        ("vms", own),
        ("rules", own),
        ("lb_members", of_rules),
        ("lb_policies", of_rules),
        ("jobs", own),
        ("events", own),
    ];
    let mut rows = BTreeSet::new();
    for (table, cond) in tables {
        for r in sqlx::query(&format!("SELECT * FROM {table} WHERE {cond}"))
            .bind(account_id)
            .fetch_all(db.pool())
            .await
            .map_err(StoreError::db("reading what an account owns"))?
        {
            rows.insert(format!("{table}: {}", row_text(&r)));
        }
    }
    Ok(rows)
}

/// One row as text, every column whatever its type.
fn row_text(row: &AnyRow) -> String {
    row.columns()
        .iter()
        .map(|c| {
            let i = c.ordinal();
            let v = if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
                format!("{v:?}")
            } else if let Ok(v) = row.try_get::<Option<String>, _>(i) {
                format!("{v:?}")
            } else if let Ok(v) = row.try_get::<Option<f64>, _>(i) {
                format!("{v:?}")
            } else {
                "?".to_string()
            };
            format!("{}={v}", c.name())
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A count whose statement binds at most one integer.
async fn count(
    db: &Db,
    statement: &'static str,
    arg: Option<i64>,
    doing: &'static str,
) -> Result<i64, StoreError> {
    let mut q = sqlx::query(statement);
    if let Some(a) = arg {
        q = q.bind(a);
    }
    q.fetch_one(db.pool())
        .await
        .and_then(|r| r.try_get("n"))
        .map_err(StoreError::db(doing))
}
