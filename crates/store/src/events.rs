//! The events table: what listEvents shows.

use domain::actor::Caller;
use sqlx::{Any, Transaction};

use crate::db::now_ms;
use crate::error::StoreError;

/// Records an event.
///
/// # Errors
/// [`StoreError::Db`].
#[allow(clippy::too_many_arguments)]
pub async fn event(
    tx: &mut Transaction<'_, Any>,
    account_id: i64,
    user_id: i64,
    event_type: &str,
    level: &str,
    state: &str,
    description: &str,
    resource_uuid: Option<&str>,
    job_uuid: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO events (uuid, account_id, user_id, event_type, level, state, description, \
         resource_uuid, job_uuid, created) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(account_id)
    .bind(user_id)
    .bind(event_type)
    .bind(level)
    .bind(state)
    .bind(description)
    .bind(resource_uuid)
    .bind(job_uuid)
    .bind(now_ms())
    .execute(&mut **tx)
    .await
    .map_err(StoreError::db("recording an event"))?;
    Ok(())
}

/// Records that the caller's request scheduled job `job_uuid` (the event listEvents shows until
/// the job's own completion event).
///
/// # Errors
/// [`StoreError::Db`].
pub async fn scheduled(
    tx: &mut Transaction<'_, Any>,
    caller: &Caller,
    event_type: &str,
    description: &str,
    resource_uuid: Option<&str>,
    job_uuid: &str,
) -> Result<(), StoreError> {
    event(
        tx,
        caller.account_id,
        caller.user_id,
        event_type,
        "INFO",
        "Scheduled",
        description,
        resource_uuid,
        Some(job_uuid),
    )
    .await
}
