//! Agent tokens: the digests hosts' agents connect with, and the hosts they belong to as the
//! token commands make them.

use domain::ids::HostId;
use sqlx::{Any, Row, Transaction};

use crate::db::Db;
use crate::error::StoreError;
use crate::filter::Filter;

/// Makes sure host `name` has a row (a new one is disconnected, at epoch 0); its id and uuid.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn ensure_host(
    tx: &mut Transaction<'_, Any>,
    name: &str,
    now: i64,
) -> Result<(HostId, String), StoreError> {
    let e = StoreError::db("making a host's row");
    sqlx::query(
        "INSERT INTO hosts (uuid, name, epoch, connected, created) VALUES ($1, $2, 0, 0, $3) \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(name)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(e)?;
    let row = sqlx::query("SELECT id, uuid FROM hosts WHERE name = $1")
        .bind(name)
        .fetch_one(&mut **tx)
        .await
        .map_err(e)?;
    Ok((
        HostId::from(row.try_get::<i64, _>("id").map_err(e)?),
        row.try_get("uuid").map_err(e)?,
    ))
}

/// Stores a token of `host` by its digest (never the token).
///
/// # Errors
/// [`StoreError::Db`].
pub async fn insert(
    tx: &mut Transaction<'_, Any>,
    uuid: &str,
    host: HostId,
    digest: &str,
    created: i64,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO agent_tokens (uuid, host_id, digest, created) VALUES ($1, $2, $3, $4)")
        .bind(uuid)
        .bind(host.get())
        .bind(digest)
        .bind(created)
        .execute(&mut **tx)
        .await
        .map(|_| ())
        .map_err(StoreError::db("storing an agent token"))
}

/// A token's row as listAgentTokens shows it: never the token or its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// API id.
    pub uuid: String,
    /// Creation time (unix ms).
    pub created: i64,
    /// When it was revoked (unix ms), if it was.
    pub revoked: Option<i64>,
    /// When an agent last connected with it (unix ms).
    pub last_used: Option<i64>,
    /// Its host's name.
    pub host_name: String,
    /// Its host's uuid.
    pub host_uuid: String,
}

/// The tokens, oldest first: the one with uuid `uuid` and of host `host`, when given.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn list(
    db: &Db,
    uuid: Option<&str>,
    host: Option<&str>,
) -> Result<Vec<TokenRecord>, StoreError> {
    let mut f = Filter::new();
    if let Some(v) = uuid {
        f.and("t.uuid = $?", [v]);
    }
    if let Some(v) = host {
        f.and("h.name = $?", [v]);
    }
    let rows = crate::filter::page(
        db,
        "t.uuid, t.created, t.revoked, t.last_used, h.name AS host_name, h.uuid AS host_uuid",
        "agent_tokens t JOIN hosts h ON h.id = t.host_id",
        &f,
        "t.id",
        None,
        0,
    )
    .await?;
    rows.iter()
        .map(|r| {
            Ok(TokenRecord {
                uuid: r.try_get("uuid")?,
                created: r.try_get("created")?,
                revoked: r.try_get("revoked")?,
                last_used: r.try_get("last_used")?,
                host_name: r.try_get("host_name")?,
                host_uuid: r.try_get("host_uuid")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(StoreError::db("reading agent tokens"))
}

/// The token `uuid`'s internal id and its host's name, if there is such a token.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn by_uuid(
    tx: &mut Transaction<'_, Any>,
    uuid: &str,
) -> Result<Option<(i64, String)>, StoreError> {
    let e = StoreError::db("reading an agent token");
    let row = sqlx::query(
        "SELECT t.id, h.name FROM agent_tokens t JOIN hosts h ON h.id = t.host_id \
         WHERE t.uuid = $1",
    )
    .bind(uuid)
    .fetch_optional(&mut **tx)
    .await
    .map_err(e)?;
    row.map(|r| Ok((r.try_get("id")?, r.try_get("name")?)))
        .transpose()
        .map_err(e)
}

/// Revokes token `id` at `at`, unless it was revoked already; whether it was revoked now.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn revoke(tx: &mut Transaction<'_, Any>, id: i64, at: i64) -> Result<bool, StoreError> {
    sqlx::query("UPDATE agent_tokens SET revoked = $1 WHERE id = $2 AND revoked IS NULL")
        .bind(at)
        .bind(id)
        .execute(&mut **tx)
        .await
        .map(|r| r.rows_affected() > 0)
        .map_err(StoreError::db("revoking an agent token"))
}

// ------------------------------------------------------------------------------------------
// Hosts as listHosts shows them.

/// A host with its agent's connection and the server holding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRecord {
    /// API id.
    pub uuid: String,
    /// Name.
    pub name: String,
    /// The driver its agent last connected with.
    pub driver: Option<String>,
    /// The connection's epoch.
    pub epoch: i64,
    /// Whether an agent is connected to a server.
    pub connected: bool,
    /// When the server last saw it (unix ms).
    pub seen: Option<i64>,
    /// Creation time (unix ms).
    pub created: i64,
    /// The name of the server holding it.
    pub server_name: Option<String>,
    /// That server's address.
    pub server_address: Option<String>,
    /// That server's last heartbeat (unix ms).
    pub heartbeat: Option<i64>,
    /// How many routers it runs.
    pub routers: i64,
}

/// The hosts, oldest first: the one with uuid `uuid` and the one called `name`, when given.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn hosts(
    db: &Db,
    uuid: Option<&str>,
    name: Option<&str>,
) -> Result<Vec<HostRecord>, StoreError> {
    let mut f = Filter::new();
    if let Some(v) = uuid {
        f.and("h.uuid = $?", [v]);
    }
    if let Some(v) = name {
        f.and("h.name = $?", [v]);
    }
    let rows = crate::filter::page(
        db,
        "h.uuid, h.name, h.driver, h.epoch, h.connected, h.seen, h.created, \
         s.name AS server_name, s.address AS server_address, s.heartbeat, \
         (SELECT COUNT(*) FROM routers r WHERE r.host = h.name) AS routers",
        "hosts h LEFT JOIN servers s ON s.id = h.server_id",
        &f,
        "h.id",
        None,
        0,
    )
    .await?;
    rows.iter()
        .map(|r| {
            Ok(HostRecord {
                uuid: r.try_get("uuid")?,
                name: r.try_get("name")?,
                driver: r.try_get("driver")?,
                epoch: r.try_get("epoch")?,
                connected: r.try_get::<i64, _>("connected")? == 1,
                seen: r.try_get("seen")?,
                created: r.try_get("created")?,
                server_name: r.try_get("server_name")?,
                server_address: r.try_get("server_address")?,
                heartbeat: r.try_get("heartbeat")?,
                routers: r.try_get("routers")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(StoreError::db("reading hosts"))
}
