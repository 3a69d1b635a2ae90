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

/// An event for [`events`].
#[derive(Debug, Clone, Copy)]
pub struct NewEvent<'a> {
    /// The account it is about.
    pub account_id: i64,
    /// The user who caused it.
    pub user_id: i64,
    /// Its type, e.g. `NET.RULEADD`.
    pub event_type: &'a str,
    /// `INFO` or `ERROR`.
    pub level: &'a str,
    /// `Scheduled`, `Completed`…
    pub state: &'a str,
    /// Words for it.
    pub description: &'a str,
}

/// Records several events in one statement.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn events(tx: &mut Transaction<'_, Any>, new: &[NewEvent<'_>]) -> Result<(), StoreError> {
    const COLUMNS: usize = 8;
    for chunk in new.chunks(100) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| {
                let n = 1 + COLUMNS * i;
                let cells: Vec<String> = (n..n + COLUMNS).map(|k| format!("${k}")).collect();
                format!("({}, NULL, NULL)", cells.join(", "))
            })
            .collect();
        let sql = format!(
            "INSERT INTO events (uuid, account_id, user_id, event_type, level, state, \
             description, created, resource_uuid, job_uuid) VALUES {}",
            rows.join(", ")
        );
        let mut q = sqlx::query(&sql);
        let now = now_ms();
        for e in chunk {
            q = q
                .bind(uuid::Uuid::new_v4().to_string())
                .bind(e.account_id)
                .bind(e.user_id)
                .bind(e.event_type)
                .bind(e.level)
                .bind(e.state)
                .bind(e.description)
                .bind(now);
        }
        q.execute(&mut **tx)
            .await
            .map_err(StoreError::db("recording events"))?;
    }
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

/// An event that a request scheduled a job, as [`scheduled`] records one.
pub struct ScheduledEvent<'a> {
    /// Who asked.
    pub caller: &'a Caller,
    /// The event type, e.g. `NET.RULEADD`.
    pub event_type: &'a str,
    /// Words for the event.
    pub description: &'a str,
    /// The resource the request is about.
    pub resource_uuid: Option<&'a str>,
    /// The job's uuid.
    pub job_uuid: &'a str,
}

/// Records several [`scheduled`] events, in the order given, in as few statements as
/// [`crate::db::ROWS_PER_STATEMENT`] allows.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn scheduled_many(
    tx: &mut Transaction<'_, Any>,
    events: &[ScheduledEvent<'_>],
) -> Result<(), StoreError> {
    for chunk in events.chunks(crate::db::ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO events (uuid, account_id, user_id, event_type, level, state, \
             description, resource_uuid, job_uuid, created) VALUES {}",
            crate::db::values_rows("(?, ?, ?, ?, 'INFO', 'Scheduled', ?, ?, ?, ?)", chunk.len())
        );
        let now = now_ms();
        let mut query = sqlx::query(&sql);
        for e in chunk {
            query = query
                .bind(uuid::Uuid::new_v4().to_string())
                .bind(e.caller.account_id)
                .bind(e.caller.user_id)
                .bind(e.event_type)
                .bind(e.description)
                .bind(e.resource_uuid)
                .bind(e.job_uuid)
                .bind(now);
        }
        query
            .execute(&mut **tx)
            .await
            .map_err(StoreError::db("recording events"))?;
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// Listing: what listEvents shows.

/// An event as listEvents shows it, with its user's, account's and domain's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    /// API id.
    pub uuid: String,
    /// The user who caused it, if it still exists.
    pub username: Option<String>,
    /// The event type, e.g. `NET.RULEADD`.
    pub event_type: String,
    /// `INFO` or `ERROR`.
    pub level: String,
    /// `Scheduled`, `Completed`…
    pub state: String,
    /// Words for the event.
    pub description: String,
    /// The resource it is about.
    pub resource_uuid: Option<String>,
    /// When (unix ms).
    pub created: i64,
    /// The account's name.
    pub account_name: Option<String>,
    /// Its domain's uuid.
    pub domain_uuid: Option<String>,
    /// Its domain's name.
    pub domain_name: Option<String>,
}

const EVENT_COLUMNS: &str = "e.id, e.uuid, e.event_type, e.level, e.state, e.description, \
     e.resource_uuid, e.created, u.username, a.name AS account_name, d.uuid AS domain_uuid, \
     d.name AS domain_name";

const EVENT_FROM: &str = "events e LEFT JOIN users u ON u.id = e.user_id \
     LEFT JOIN accounts a ON a.id = e.account_id LEFT JOIN domains d ON d.id = a.domain_id";

/// Which events a listing selects; every condition given must hold.
#[derive(Debug, Clone, Default)]
pub struct EventFilter<'a> {
    /// Events of this account.
    pub account: Option<domain::ids::AccountId>,
    /// Events of accounts in one of these domains.
    pub domains: Option<&'a [domain::ids::DomainId]>,
    /// The event with this uuid.
    pub uuid: Option<&'a str>,
    /// Events of this type.
    pub event_type: Option<&'a str>,
    /// Events of this level (as stored: upper case).
    pub level: Option<&'a str>,
    /// Events at or after this time (unix ms).
    pub from_ms: Option<i64>,
    /// Events at or before this time (unix ms).
    pub until_ms: Option<i64>,
    /// Events whose description or type holds this text, in any case.
    pub keyword: Option<&'a str>,
}

impl EventFilter<'_> {
    fn build(&self) -> crate::filter::Filter {
        let mut f = crate::filter::Filter::new();
        if let Some(a) = self.account {
            f.and("e.account_id = $?", [a.get()]);
        }
        if let Some(d) = self.domains {
            let ids: Vec<i64> = d.iter().map(|d| d.get()).collect();
            f.and_in("a.domain_id", &ids);
        }
        if let Some(v) = self.uuid {
            f.and("e.uuid = $?", [v]);
        }
        if let Some(v) = self.event_type {
            f.and("e.event_type = $?", [v]);
        }
        if let Some(v) = self.level {
            f.and("e.level = $?", [v]);
        }
        if let Some(t) = self.from_ms {
            f.and("e.created >= $?", [t]);
        }
        if let Some(t) = self.until_ms {
            f.and("e.created <= $?", [t]);
        }
        if let Some(k) = self.keyword {
            let pattern = format!("%{}%", k.to_lowercase());
            f.and(
                "LOWER(e.description) LIKE $? OR LOWER(e.event_type) LIKE $?",
                [pattern.clone(), pattern],
            );
        }
        f
    }
}

/// How many events `filter` selects.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn count(db: &crate::db::Db, filter: &EventFilter<'_>) -> Result<u64, StoreError> {
    crate::filter::count(db, EVENT_FROM, &filter.build()).await
}

/// One page of the events `filter` selects, newest first: `limit` of them (all with `None`)
/// after skipping `offset`.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn page(
    db: &crate::db::Db,
    filter: &EventFilter<'_>,
    limit: Option<u64>,
    offset: u64,
) -> Result<Vec<EventRecord>, StoreError> {
    use sqlx::Row;
    let rows = crate::filter::page(
        db,
        EVENT_COLUMNS,
        EVENT_FROM,
        &filter.build(),
        "e.id DESC",
        limit,
        offset,
    )
    .await?;
    rows.iter()
        .map(|r| {
            Ok(EventRecord {
                uuid: r.try_get("uuid")?,
                username: r.try_get("username")?,
                event_type: r.try_get("event_type")?,
                level: r.try_get("level")?,
                state: r.try_get("state")?,
                description: r.try_get("description")?,
                resource_uuid: r.try_get("resource_uuid")?,
                created: r.try_get("created")?,
                account_name: r.try_get("account_name")?,
                domain_uuid: r.try_get("domain_uuid")?,
                domain_name: r.try_get("domain_name")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(StoreError::db("reading events"))
}
