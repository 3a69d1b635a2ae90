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
