//! The hosts table: the fence that keeps a server's writes about a host's routers valid only
//! while it still holds the host.

use sqlx::{Any, Transaction};

use sqlx::Row;

use crate::db::{now_ms, Db};
use crate::error::StoreError;

/// What a job runner's write about a host's routers is conditioned on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fence {
    /// This server, holding the host's connection of this epoch.
    Owner {
        /// The host.
        host: String,
        /// The epoch the runner started with.
        epoch: i64,
        /// This server.
        server_id: i64,
    },
    /// Nobody holds the host (no agent anywhere), as seen at this epoch: used to fail the jobs
    /// such a host leaves behind.
    Forsaken {
        /// The host.
        host: String,
        /// The epoch seen.
        epoch: i64,
    },
}

impl Fence {
    /// The host and epoch it names.
    pub fn host_epoch(&self) -> (&str, i64) {
        match self {
            Fence::Owner { host, epoch, .. } | Fence::Forsaken { host, epoch } => (host, *epoch),
        }
    }
}

/// Checks a [`Fence`] inside a transaction, locking the host's row until the transaction ends
/// (PostgreSQL), so that a takeover waits for it or it sees the takeover. Whether it holds.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn fence(tx: &mut Transaction<'_, Any>, fence: &Fence) -> Result<bool, StoreError> {
    let done = match fence {
        Fence::Owner {
            host,
            epoch,
            server_id,
        } => {
            sqlx::query(
                "UPDATE hosts SET seen = $1 WHERE name = $2 AND epoch = $3 AND server_id = $4 \
                 AND connected = 1",
            )
            .bind(now_ms())
            .bind(host)
            .bind(epoch)
            .bind(server_id)
            .execute(&mut **tx)
            .await
        }
        Fence::Forsaken { host, epoch } => {
            sqlx::query(
                "UPDATE hosts SET seen = $1 WHERE name = $2 AND epoch = $3 AND connected = 0",
            )
            .bind(now_ms())
            .bind(host)
            .bind(epoch)
            .execute(&mut **tx)
            .await
        }
    }
    .map_err(StoreError::db("checking a host's fence"))?;
    Ok(done.rows_affected() == 1)
}

/// Takes `host` for server `server_id`: connected there, with a new epoch, which it returns.
///
/// # Errors
/// [`StoreError::Db`], also for a host without a row.
pub async fn claim(db: &Db, host: &str, server_id: i64, driver: &str) -> Result<i64, StoreError> {
    let _writer = db.writer().await;
    sqlx::query(
        "UPDATE hosts SET server_id = $1, epoch = epoch + 1, connected = 1, seen = $2, \
         driver = $3 WHERE name = $4 RETURNING epoch",
    )
    .bind(server_id)
    .bind(now_ms())
    .bind(driver)
    .bind(host)
    .fetch_one(db.pool())
    .await
    .and_then(|r| r.try_get("epoch"))
    .map_err(StoreError::db("claiming a host"))
}

/// Records that `host`'s connection of `epoch` ended (unless a newer one took its place).
///
/// # Errors
/// [`StoreError::Db`].
pub async fn release(db: &Db, host: &str, epoch: i64) -> Result<(), StoreError> {
    let _writer = db.writer().await;
    sqlx::query("UPDATE hosts SET connected = 0, seen = $1 WHERE name = $2 AND epoch = $3")
        .bind(now_ms())
        .bind(host)
        .bind(epoch)
        .execute(db.pool())
        .await
        .map(|_| ())
        .map_err(StoreError::db("releasing a host"))
}

/// Registers a server process in `servers` (forgetting servers dead for a day); returns its id.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn register_server(db: &Db, name: &str, address: &str) -> Result<i64, StoreError> {
    let now = now_ms();
    let mut change = db.change(None).await?;
    let e = StoreError::db("registering a server");
    // Rows of servers dead for a day are only history.
    sqlx::query("DELETE FROM servers WHERE heartbeat < $1")
        .bind(now - 86_400_000)
        .execute(&mut **change.conn())
        .await
        .map_err(e)?;
    let id: i64 = sqlx::query(
        "INSERT INTO servers (name, address, started, heartbeat) VALUES ($1, $2, $3, $3) \
         RETURNING id",
    )
    .bind(name)
    .bind(address)
    .bind(now)
    .fetch_one(&mut **change.conn())
    .await
    .and_then(|r| r.try_get("id"))
    .map_err(e)?;
    let _nobody_to_wake = change.commit().await?;
    Ok(id)
}

/// Makes sure a host row exists; returns its id.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn ensure_host(db: &Db, name: &str, uuid: &str) -> Result<i64, StoreError> {
    let e = StoreError::db("recording a host");
    let mut change = db.change(None).await?;
    sqlx::query(
        "INSERT INTO hosts (uuid, name, epoch, connected, created) VALUES ($1, $2, 0, 0, $3) \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(uuid)
    .bind(name)
    .bind(now_ms())
    .execute(&mut **change.conn())
    .await
    .map_err(e)?;
    let id: i64 = sqlx::query("SELECT id FROM hosts WHERE name = $1")
        .bind(name)
        .fetch_one(&mut **change.conn())
        .await
        .and_then(|r| r.try_get("id"))
        .map_err(e)?;
    let _nobody_to_wake = change.commit().await?;
    Ok(id)
}

/// The host whose live token has this digest, if any; records the token's use.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn authenticate(db: &Db, digest: &str) -> Result<Option<String>, StoreError> {
    let e = StoreError::db("checking an agent token");
    let row = sqlx::query(
        "SELECT h.name, t.id FROM agent_tokens t JOIN hosts h ON h.id = t.host_id \
         WHERE t.digest = $1 AND t.revoked IS NULL",
    )
    .bind(digest)
    .fetch_optional(db.pool())
    .await
    .map_err(e)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let id: i64 = row.try_get("id").map_err(e)?;
    let mut change = db.change(None).await?;
    sqlx::query("UPDATE agent_tokens SET last_used = $1 WHERE id = $2")
        .bind(now_ms())
        .bind(id)
        .execute(&mut **change.conn())
        .await
        .map_err(e)?;
    let _nobody_to_wake = change.commit().await?;
    row.try_get("name").map(Some).map_err(e)
}

/// The connected host, on a server heard of since `alive_since` (unix ms), with the fewest
/// routers.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn least_loaded(db: &Db, alive_since: i64) -> Result<Option<String>, StoreError> {
    let e = StoreError::db("placing a router");
    sqlx::query(
        "SELECT h.name, (SELECT COUNT(*) FROM routers r WHERE r.host = h.name) AS n \
         FROM hosts h JOIN servers s ON s.id = h.server_id \
         WHERE h.connected = 1 AND s.heartbeat > $1 ORDER BY n, h.id LIMIT 1",
    )
    .bind(alive_since)
    .fetch_optional(db.pool())
    .await
    .map_err(e)?
    .map(|r| r.try_get("name"))
    .transpose()
    .map_err(e)
}

/// The secret the servers of one database present to each other: `fresh` when none was
/// stored yet.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn cluster_secret(db: &Db, fresh: &str) -> Result<String, StoreError> {
    let e = StoreError::db("reading the cluster's secret");
    let mut change = db.change(None).await?;
    sqlx::query(
        "INSERT INTO cluster_settings (name, value) VALUES ('secret', $1) \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(fresh)
    .execute(&mut **change.conn())
    .await
    .map_err(e)?;
    let _nobody_to_wake = change.commit().await?;
    sqlx::query("SELECT value FROM cluster_settings WHERE name = 'secret'")
        .fetch_one(db.pool())
        .await
        .and_then(|r| r.try_get("value"))
        .map_err(e)
}

/// Heartbeats for `server_id` and takes over the hosts of servers not heard of since `dead`
/// (unix ms): disconnected until their agents connect again, anywhere. Returns how many hosts
/// were taken over.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn heartbeat(db: &Db, server_id: i64, dead: i64) -> Result<u64, StoreError> {
    let e = StoreError::db("heartbeating");
    let now = now_ms();
    let mut change = db.change(None).await?;
    sqlx::query("UPDATE servers SET heartbeat = $1 WHERE id = $2")
        .bind(now)
        .bind(server_id)
        .execute(&mut **change.conn())
        .await
        .map_err(e)?;
    let released = sqlx::query(
        "UPDATE hosts SET connected = 0, epoch = epoch + 1, seen = $2, server_id = $3 \
         WHERE connected = 1 AND (server_id IS NULL OR server_id NOT IN \
         (SELECT id FROM servers WHERE heartbeat > $1))",
    )
    .bind(dead)
    .bind(now)
    .bind(server_id)
    .execute(&mut **change.conn())
    .await
    .map_err(e)?
    .rows_affected();
    let _nobody_to_wake = change.commit().await?;
    Ok(released)
}
