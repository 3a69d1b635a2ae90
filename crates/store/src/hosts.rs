//! The hosts table: the fence that keeps a server's writes about a host's routers valid only
//! while it still holds the host.

use sqlx::{Any, Transaction};

use crate::db::now_ms;
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
