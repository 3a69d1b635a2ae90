//! The jobs table: a job written with its change, its end, its record as read back, and the
//! undoing of what a refused job wrote.

use domain::actor::Caller;
use domain::ids::{AccountId, JobId, NetworkId, VmId};
use domain::job::{JobStatus, NewJob, Undo};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::db::{now_ms, Db};
use crate::error::StoreError;

/// Inserts a pending job with a new uuid; returns its id and uuid.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn insert(
    tx: &mut Transaction<'_, Any>,
    caller: &Caller,
    job: NewJob<'_>,
) -> Result<(JobId, String), StoreError> {
    let uuid = uuid::Uuid::new_v4().to_string();
    let payload = serde_json::to_string(&job.payload).unwrap_or_else(|_| "{}".into());
    let id: i64 = sqlx::query(
        "INSERT INTO jobs (uuid, account_id, user_id, cmd, kind, network_id, payload, status, \
         result_code, instance_type, instance_uuid, created) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 0, $8, $9, $10) RETURNING id",
    )
    .bind(&uuid)
    .bind(caller.account_id)
    .bind(caller.user_id)
    .bind(job.command)
    .bind(job.kind.as_str())
    .bind(job.network_id.map(|n| n.get()))
    .bind(payload)
    .bind(job.instance_type)
    .bind(job.instance_uuid)
    .bind(now_ms())
    .fetch_one(&mut **tx)
    .await
    .and_then(|r| r.try_get("id"))
    .map_err(StoreError::db("inserting a job"))?;
    Ok((JobId::from(id), uuid))
}

/// Inserts pending jobs, each with a new uuid, in as few statements as
/// [`crate::db::ROWS_PER_STATEMENT`] allows; returns their ids and uuids in the order given.
///
/// # Errors
/// [`StoreError::Db`]; [`StoreError::Corrupt`] when the database does not return a row
/// written.
pub async fn insert_many(
    tx: &mut Transaction<'_, Any>,
    jobs: &[(&Caller, NewJob<'_>)],
) -> Result<Vec<(JobId, String)>, StoreError> {
    let mut out = Vec::with_capacity(jobs.len());
    for chunk in jobs.chunks(crate::db::ROWS_PER_STATEMENT) {
        let uuids: Vec<String> = chunk
            .iter()
            .map(|_| uuid::Uuid::new_v4().to_string())
            .collect();
        let sql = format!(
            "INSERT INTO jobs (uuid, account_id, user_id, cmd, kind, network_id, payload, status, \
             result_code, instance_type, instance_uuid, created) VALUES {} RETURNING id, uuid",
            crate::db::values_rows("(?, ?, ?, ?, ?, ?, ?, 0, 0, ?, ?, ?)", chunk.len())
        );
        let now = now_ms();
        let mut query = sqlx::query(&sql);
        for ((caller, job), uuid) in chunk.iter().zip(&uuids) {
            let payload = serde_json::to_string(&job.payload).unwrap_or_else(|_| "{}".into());
            query = query
                .bind(uuid.clone())
                .bind(caller.account_id)
                .bind(caller.user_id)
                .bind(job.command)
                .bind(job.kind.as_str())
                .bind(job.network_id.map(|n| n.get()))
                .bind(payload)
                .bind(job.instance_type)
                .bind(job.instance_uuid)
                .bind(now);
        }
        let rows = query
            .fetch_all(&mut **tx)
            .await
            .map_err(StoreError::db("inserting jobs"))?;
        let mut ids = std::collections::HashMap::with_capacity(rows.len());
        for row in &rows {
            let id: i64 = row
                .try_get("id")
                .map_err(StoreError::db("inserting jobs"))?;
            let uuid: String = row
                .try_get("uuid")
                .map_err(StoreError::db("inserting jobs"))?;
            ids.insert(uuid, id);
        }
        for uuid in uuids {
            let id = ids.get(&uuid).copied().ok_or_else(|| StoreError::Corrupt {
                table: "jobs",
                column: "uuid",
                value: uuid.clone(),
            })?;
            out.push((JobId::from(id), uuid));
        }
    }
    Ok(out)
}

/// Ends a pending job, in the caller's transaction; whether it was still pending (false: it
/// had ended already, e.g. on another server). Everything outside the store ends jobs through
/// [`crate::ChangeTx::finish_job`], whose commit tells [`PendingJobs`].
///
/// # Errors
/// [`StoreError::Db`].
pub(crate) async fn finish(
    tx: &mut Transaction<'_, Any>,
    job_id: JobId,
    status: JobStatus,
    code: i64,
    result: &serde_json::Value,
) -> Result<bool, StoreError> {
    sqlx::query(
        "UPDATE jobs SET status = $1, result_code = $2, result = $3, completed = $4 \
         WHERE id = $5 AND status = 0",
    )
    .bind(status.code())
    .bind(code)
    .bind(result.to_string())
    .bind(now_ms())
    .bind(job_id.get())
    .execute(&mut **tx)
    .await
    .map(|r| r.rows_affected() == 1)
    .map_err(StoreError::db("ending a job"))
}

/// A job's end, for [`crate::ChangeTx::finish_jobs`].
#[derive(Debug, Clone, Copy)]
pub struct Ending<'a> {
    /// The job.
    pub job: JobId,
    /// How it ended.
    pub status: JobStatus,
    /// CloudStack's result code (0, or the error code).
    pub code: i64,
    /// Its result.
    pub result: &'a serde_json::Value,
}

/// Ends several pending jobs in one statement, in the caller's transaction; returns those
/// that were still pending (the others had ended already, e.g. on another server, and are
/// left as they are). Everything outside the store ends jobs through
/// [`crate::ChangeTx::finish_jobs`], whose commit tells [`PendingJobs`].
///
/// # Errors
/// [`StoreError::Db`].
pub(crate) async fn finish_all(
    tx: &mut Transaction<'_, Any>,
    endings: &[Ending<'_>],
) -> Result<Vec<JobId>, StoreError> {
    let mut ended = Vec::with_capacity(endings.len());
    // Four parameters a job and three shared: well inside both back ends' limits.
    for chunk in endings.chunks(200) {
        let mut status = String::from("CASE id");
        let mut code = String::from("CASE id");
        let mut result = String::from("CASE id");
        let mut ids = Vec::with_capacity(chunk.len());
        for i in 0..chunk.len() {
            let n = 2 + 4 * i;
            status.push_str(&format!(" WHEN ${n} THEN ${}", n + 1));
            code.push_str(&format!(" WHEN ${n} THEN ${}", n + 2));
            result.push_str(&format!(" WHEN ${n} THEN ${}", n + 3));
            ids.push(format!("${n}"));
        }
        let sql = format!(
            "UPDATE jobs SET status = {status} END, result_code = {code} END, \
             result = {result} END, completed = $1 WHERE id IN ({}) AND status = 0 RETURNING id",
            ids.join(", ")
        );
        let mut q = sqlx::query(&sql).bind(now_ms());
        for e in chunk {
            q = q
                .bind(e.job.get())
                .bind(e.status.code())
                .bind(e.code)
                .bind(e.result.to_string());
        }
        let rows = q
            .fetch_all(&mut **tx)
            .await
            .map_err(StoreError::db("ending jobs"))?;
        for r in rows {
            let id: i64 = r.try_get("id").map_err(StoreError::db("ending jobs"))?;
            ended.push(JobId::from(id));
        }
    }
    Ok(ended)
}

/// A job as queryAsyncJobResult and listAsyncJobs show it, with its owner's names.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    /// Internal id.
    pub id: JobId,
    /// API id.
    pub uuid: String,
    /// The API command that made it.
    pub command: String,
    /// Its status.
    pub status: JobStatus,
    /// CloudStack's result code (0, or the error code).
    pub result_code: i64,
    /// The result's JSON text, once it ended.
    pub result: Option<String>,
    /// `jobinstancetype`.
    pub instance_type: Option<String>,
    /// `jobinstanceid`.
    pub instance_uuid: Option<String>,
    /// Creation time (unix ms).
    pub created: i64,
    /// End time (unix ms).
    pub completed: Option<i64>,
    /// The owner account.
    pub account_id: AccountId,
    /// Its uuid.
    pub account_uuid: String,
    /// Its name.
    pub account_name: String,
    /// Its domain's uuid.
    pub domain_uuid: String,
    /// Its domain's path.
    pub domain_path: String,
    /// The user's uuid.
    pub user_uuid: String,
}

/// Columns [`record`] reads, from [`JOB_FROM`].
pub const JOB_COLUMNS: &str = "j.id, j.uuid, j.cmd, j.status, j.result_code, j.result, \
     j.instance_type, j.instance_uuid, j.created, j.completed, j.account_id, \
     a.uuid AS account_uuid, a.name AS account_name, d.uuid AS domain_uuid, \
     d.path AS domain_path, u.uuid AS user_uuid";

/// The `FROM` clause for [`JOB_COLUMNS`].
pub const JOB_FROM: &str = "jobs j JOIN accounts a ON a.id = j.account_id \
     JOIN domains d ON d.id = a.domain_id JOIN users u ON u.id = j.user_id";

/// Reads a row selected with [`JOB_COLUMNS`].
///
/// # Errors
/// [`StoreError::Db`] for a missing column; [`StoreError::Corrupt`] for an unknown status.
pub fn record(row: &AnyRow) -> Result<JobRecord, StoreError> {
    let e = StoreError::db("reading a job");
    let read = || -> Result<(JobRecord, i64), sqlx::Error> {
        let status: i64 = row.try_get("status")?;
        Ok((
            JobRecord {
                id: JobId::from(row.try_get::<i64, _>("id")?),
                uuid: row.try_get("uuid")?,
                command: row.try_get("cmd")?,
                status: JobStatus::Pending,
                result_code: row.try_get("result_code")?,
                result: row.try_get("result")?,
                instance_type: row.try_get("instance_type")?,
                instance_uuid: row.try_get("instance_uuid")?,
                created: row.try_get("created")?,
                completed: row.try_get("completed")?,
                account_id: AccountId::from(row.try_get::<i64, _>("account_id")?),
                account_uuid: row.try_get("account_uuid")?,
                account_name: row.try_get("account_name")?,
                domain_uuid: row.try_get("domain_uuid")?,
                domain_path: row.try_get("domain_path")?,
                user_uuid: row.try_get("user_uuid")?,
            },
            status,
        ))
    };
    let (mut job, status) = read().map_err(e)?;
    job.status = JobStatus::try_from(status).map_err(StoreError::corrupt("jobs", "status"))?;
    Ok(job)
}

/// The job `uuid`, if there is one.
///
/// # Errors
/// As [`record`].
pub async fn by_uuid(db: &Db, uuid: &str) -> Result<Option<JobRecord>, StoreError> {
    sqlx::query(&format!(
        "SELECT {JOB_COLUMNS} FROM {JOB_FROM} WHERE j.uuid = $1"
    ))
    .bind(uuid)
    .fetch_optional(db.pool())
    .await
    .map_err(StoreError::db("reading a job"))?
    .as_ref()
    .map(record)
    .transpose()
}

/// How long a job read as pending is answered as pending from memory
/// ([`poll`]). A job ended by this process is forgotten when its change commits; one ended by
/// another server (or by a database restored under the server) can be shown pending for at
/// most this long after its end. A job is never shown ended before the database says so.
pub const PENDING_MEMORY: std::time::Duration = std::time::Duration::from_millis(100);

/// At most so many jobs are remembered; past it, the memory starts empty again.
const PENDING_MEMORY_JOBS: usize = 10_000;

/// Jobs this process read as pending, with when they were read (see [`poll`]).
#[derive(Default)]
pub struct PendingJobs {
    seen: std::sync::Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    by_uuid: std::collections::HashMap<String, (JobRecord, std::time::Instant)>,
    by_id: std::collections::HashMap<JobId, String>,
    /// Counts the commits that ended jobs: a read that began before one of them may have seen
    /// a job pending that has ended since, and is not remembered.
    ends: u64,
}

impl PendingJobs {
    fn get(&self, uuid: &str) -> Option<JobRecord> {
        let seen = self.seen.lock().ok()?;
        let (job, at) = seen.by_uuid.get(uuid)?;
        (at.elapsed() < PENDING_MEMORY).then(|| job.clone())
    }

    fn ends(&self) -> Option<u64> {
        self.seen.lock().ok().map(|s| s.ends)
    }

    /// Remembers a job read pending by a read that began when `ends` commits had ended jobs.
    fn remember(&self, ends: u64, job: &JobRecord, at: std::time::Instant) {
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        if seen.ends != ends {
            return;
        }
        if seen.by_uuid.len() >= PENDING_MEMORY_JOBS {
            seen.by_uuid.clear();
            seen.by_id.clear();
        }
        seen.by_id.insert(job.id, job.uuid.clone());
        seen.by_uuid.insert(job.uuid.clone(), (job.clone(), at));
    }

    /// Forgets jobs a committed change ended.
    pub(crate) fn ended(&self, jobs: &[JobId]) {
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        seen.ends += 1;
        for id in jobs {
            if let Some(uuid) = seen.by_id.remove(id) {
                seen.by_uuid.remove(&uuid);
            }
        }
    }
}

/// The job `uuid` as queryAsyncJobResult shows it: a job this process read as pending less
/// than [`PENDING_MEMORY`] ago and has not ended since is answered from memory, anything else
/// is read (and remembered when pending).
///
/// # Errors
/// As [`by_uuid`].
pub async fn poll(db: &Db, uuid: &str) -> Result<Option<JobRecord>, StoreError> {
    if let Some(job) = db.pending.get(uuid) {
        return Ok(Some(job));
    }
    let ends = db.pending.ends();
    let at = std::time::Instant::now();
    let job = by_uuid(db, uuid).await?;
    if let (Some(job), Some(ends)) = (&job, ends) {
        if job.status == JobStatus::Pending {
            db.pending.remember(ends, job, at);
        }
    }
    Ok(job)
}

/// Undoes what a job the router refused had written: new rows go, rewritten rows get their old
/// values back; revoked rows stay revoked (shown as Deleting, as CloudStack leaves them).
///
/// # Errors
/// [`StoreError::Db`].
pub async fn rollback_job(
    tx: &mut Transaction<'_, Any>,
    job_id: JobId,
    undo: Option<&Undo>,
) -> Result<(), StoreError> {
    let e = StoreError::db("undoing a refused job");
    if let Some(u) = undo {
        sqlx::query(
            "UPDATE rules SET algorithm = $1, source_cidrs = $2, vm_id = $3, vm_ip = $4, \
             private_start = $5, private_end = $6, job_id = NULL WHERE id = $7",
        )
        .bind(u.algorithm.clone())
        .bind(u.source_cidrs.clone())
        .bind(u.vm_id.map(VmId::get))
        .bind(u.vm_ip.clone())
        .bind(u.private_start)
        .bind(u.private_end)
        .bind(u.rule_id.get())
        .execute(&mut **tx)
        .await
        .map_err(e)?;
    }
    sqlx::query("DELETE FROM lb_members WHERE job_id = $1 AND state = 'Add'")
        .bind(job_id.get())
        .execute(&mut **tx)
        .await
        .map_err(e)?;
    sqlx::query("DELETE FROM lb_policies WHERE job_id = $1 AND state = 'Add'")
        .bind(job_id.get())
        .execute(&mut **tx)
        .await
        .map_err(e)?;
    // Tags of what goes (a rule or an address being made may be tagged already).
    sqlx::query(
        "DELETE FROM resource_tags WHERE (resource_type IN ('FirewallRule', \
         'PortForwardingRule', 'LoadBalancer') AND resource_id IN \
         (SELECT id FROM rules WHERE job_id = $1 AND state = 'Add')) \
         OR (resource_type = 'PublicIpAddress' AND resource_id IN \
         (SELECT id FROM public_ips WHERE job_id = $1 AND state = 'Allocating'))",
    )
    .bind(job_id.get())
    .execute(&mut **tx)
    .await
    .map_err(e)?;
    // Opened firewall rules first (they point at their parent), then the parents.
    sqlx::query("DELETE FROM rules WHERE job_id = $1 AND state = 'Add' AND related_id IS NOT NULL")
        .bind(job_id.get())
        .execute(&mut **tx)
        .await
        .map_err(e)?;
    sqlx::query(
        "DELETE FROM lb_members WHERE lb_id IN (SELECT id FROM rules WHERE job_id = $1 AND state = 'Add')",
    )
    .bind(job_id.get())
    .execute(&mut **tx)
    .await
        .map_err(e)?;
    sqlx::query(
        "DELETE FROM lb_policies WHERE lb_id IN (SELECT id FROM rules WHERE job_id = $1 AND state = 'Add')",
    )
    .bind(job_id.get())
    .execute(&mut **tx)
    .await
        .map_err(e)?;
    sqlx::query("DELETE FROM rules WHERE job_id = $1 AND state = 'Add'")
        .bind(job_id.get())
        .execute(&mut **tx)
        .await
        .map_err(e)?;
    // A static NAT being enabled goes; one being disabled stays disabled.
    sqlx::query(
        "UPDATE public_ips SET nat_vm_id = NULL, nat_vm_ip = NULL, nat_state = NULL, \
         nat_applied = 0 WHERE job_id = $1 AND nat_state = 'Add'",
    )
    .bind(job_id.get())
    .execute(&mut **tx)
    .await
    .map_err(e)?;
    sqlx::query(
        "UPDATE public_ips SET state = 'Free', applied = 0, account_id = NULL, network_id = NULL, \
         job_id = NULL, allocated = NULL WHERE job_id = $1 AND state = 'Allocating'",
    )
    .bind(job_id.get())
    .execute(&mut **tx)
    .await
    .map_err(e)?;
    Ok(())
}

// ------------------------------------------------------------------------------------------
// Listing: what listAsyncJobs shows.

/// Which jobs a listing selects; every condition given must hold.
#[derive(Debug, Clone, Default)]
pub struct JobFilter<'a> {
    /// Jobs of this account.
    pub account: Option<AccountId>,
    /// Jobs of accounts in one of these domains.
    pub domains: Option<&'a [domain::ids::DomainId]>,
    /// Jobs made at or after this time (unix ms).
    pub from_ms: Option<i64>,
    /// Jobs whose command holds this text, in any case.
    pub keyword: Option<&'a str>,
}

impl JobFilter<'_> {
    fn build(&self) -> crate::filter::Filter {
        let mut f = crate::filter::Filter::new();
        if let Some(a) = self.account {
            f.and("j.account_id = $?", [a.get()]);
        }
        if let Some(d) = self.domains {
            let ids: Vec<i64> = d.iter().map(|d| d.get()).collect();
            f.and_in("a.domain_id", &ids);
        }
        if let Some(t) = self.from_ms {
            f.and("j.created >= $?", [t]);
        }
        if let Some(k) = self.keyword {
            f.and("LOWER(j.cmd) LIKE $?", [format!("%{}%", k.to_lowercase())]);
        }
        f
    }
}

/// How many jobs `filter` selects.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn count(db: &Db, filter: &JobFilter<'_>) -> Result<u64, StoreError> {
    crate::filter::count(db, JOB_FROM, &filter.build()).await
}

/// One page of the jobs `filter` selects, oldest first: `limit` of them (all with `None`)
/// after skipping `offset`.
///
/// # Errors
/// As [`record`].
pub async fn page(
    db: &Db,
    filter: &JobFilter<'_>,
    limit: Option<u64>,
    offset: u64,
) -> Result<Vec<JobRecord>, StoreError> {
    crate::filter::page(
        db,
        JOB_COLUMNS,
        JOB_FROM,
        &filter.build(),
        "j.id ASC",
        limit,
        offset,
    )
    .await?
    .iter()
    .map(record)
    .collect()
}

/// A pending job as the job runner carries it.
#[derive(Debug, Clone)]
pub struct PendingJob {
    /// Its id.
    pub id: JobId,
    /// The API command that made it.
    pub command: String,
    /// What the runner does with it.
    pub kind: domain::job::Kind,
    /// What it changes and how it ends.
    pub payload: domain::job::Payload,
    /// Creation time (unix ms).
    pub created: i64,
    /// The owner account.
    pub account_id: AccountId,
    /// The user who asked.
    pub user_id: i64,
}

const PENDING_COLUMNS: &str = "j.id, j.cmd, j.kind, j.payload, j.created, j.account_id, j.user_id";

fn pending_job(r: &AnyRow) -> Result<PendingJob, StoreError> {
    let e = StoreError::db("reading a pending job");
    let payload: String = r.try_get("payload").map_err(e)?;
    Ok(PendingJob {
        id: JobId::from(r.try_get::<i64, _>("id").map_err(e)?),
        command: r.try_get("cmd").map_err(e)?,
        kind: r
            .try_get::<String, _>("kind")
            .map_err(e)?
            .parse()
            .map_err(StoreError::corrupt("jobs", "kind"))?,
        payload: serde_json::from_str(&payload).map_err(|_| StoreError::Corrupt {
            table: "jobs",
            column: "payload",
            value: payload.clone(),
        })?,
        created: r.try_get("created").map_err(e)?,
        account_id: AccountId::from(r.try_get::<i64, _>("account_id").map_err(e)?),
        user_id: r.try_get("user_id").map_err(e)?,
    })
}

/// The pending jobs of a network, oldest first.
///
/// # Errors
/// [`StoreError::Db`]; [`StoreError::Corrupt`] for an unknown kind or a payload that is not
/// one.
pub async fn pending(db: &Db, network: NetworkId) -> Result<Vec<PendingJob>, StoreError> {
    sqlx::query(&format!(
        "SELECT {PENDING_COLUMNS} FROM jobs j WHERE j.network_id = $1 AND j.status = 0 \
         ORDER BY j.id"
    ))
    .bind(network.get())
    .fetch_all(db.pool())
    .await
    .map_err(StoreError::db("reading pending jobs"))?
    .iter()
    .map(pending_job)
    .collect()
}

/// A pending job whose host has had no agent anywhere for a while, with the host and the
/// epoch it was seen at.
#[derive(Debug, Clone)]
pub struct ForsakenJob {
    /// The job.
    pub job: PendingJob,
    /// Its router's host.
    pub host: String,
    /// The host's epoch as read.
    pub epoch: i64,
}

/// Up to 200 pending jobs created before `before` (unix ms) on hosts disconnected everywhere
/// and not seen since `before`.
///
/// # Errors
/// As [`pending`].
pub async fn forsaken(db: &Db, before: i64) -> Result<Vec<ForsakenJob>, StoreError> {
    let e = StoreError::db("reading forsaken jobs");
    sqlx::query(&format!(
        "SELECT {PENDING_COLUMNS}, h.name AS host, h.epoch FROM jobs j \
         JOIN routers r ON r.network_id = j.network_id JOIN hosts h ON h.name = r.host \
         WHERE j.status = 0 AND h.connected = 0 AND j.created < $1 \
         AND (h.seen IS NULL OR h.seen < $1) ORDER BY j.id LIMIT 200"
    ))
    .bind(before)
    .fetch_all(db.pool())
    .await
    .map_err(e)?
    .iter()
    .map(|r| {
        Ok(ForsakenJob {
            job: pending_job(r)?,
            host: r.try_get("host").map_err(e)?,
            epoch: r.try_get("epoch").map_err(e)?,
        })
    })
    .collect()
}
