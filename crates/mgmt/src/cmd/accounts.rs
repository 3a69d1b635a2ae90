//! Accounts, users and their keys, events, jobs and API discovery.
//!
//! Tenancy as everywhere else: a user sees its own account's jobs, events and users; what
//! belongs to another account is answered exactly like what does not exist.

use api_types::error::ApiError;
use api_types::params::{Paging, Params};
use base64::Engine;
use serde_json::{json, Map, Value};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{begin, required, scope, unknown};
use crate::app::{internal, store_error, ApiResult, App};
use crate::resp::{self, date};
use domain::actor::Caller;
use store::db::{now_ms, opt_str};
use store::filter::{self, Filter};
use store::jobs::{JOB_COLUMNS, JOB_FROM};

// ------------------------------------------------------------------------------------------
// Shared pieces.

/// The domains a `domainid` filter (with `isrecursive`, the subdomains too) selects, or `None`
/// when the request has no such filter.
///
/// # Errors
/// 431 unknown id for a domain that does not exist.
pub(crate) async fn domain_ids(app: &App, p: &Params) -> ApiResult<Option<Vec<i64>>> {
    if p.spec().param("domainid").is_none() {
        return Ok(None);
    }
    let Some(uuid) = p.str("domainid").filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let rows = sqlx::query("SELECT id, uuid, path FROM domains")
        .fetch_all(app.db.pool())
        .await
        .map_err(internal)?;
    let mut domains: Vec<(i64, String, String)> = Vec::with_capacity(rows.len());
    for r in &rows {
        domains.push((
            r.try_get("id").map_err(internal)?,
            r.try_get("uuid").map_err(internal)?,
            r.try_get("path").map_err(internal)?,
        ));
    }
    let Some((root_id, _, root_path)) = domains.iter().find(|d| d.1 == uuid).cloned() else {
        return Err(unknown(p, "domainid"));
    };
    let recursive = p.spec().param("isrecursive").is_some() && p.bool("isrecursive") == Some(true);
    let below = format!("{root_path}/");
    Ok(Some(
        domains
            .iter()
            .filter(|(id, _, path)| *id == root_id || (recursive && path.starts_with(&below)))
            .map(|(id, _, _)| *id)
            .collect(),
    ))
}

fn id_list(ids: &[i64]) -> String {
    if ids.is_empty() {
        return "NULL".into();
    }
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

/// Appends ` AND <cond>` where `$?` in `cond` stands for the next bind.
fn bind_cond(sql: &mut String, binds: &mut Vec<String>, cond: &str, value: &str) {
    binds.push(value.to_string());
    sql.push_str(" AND ");
    sql.push_str(&cond.replace("$?", &format!("${}", binds.len())));
}

/// `LIMIT`/`OFFSET` for a page (nothing for "everything").
fn limit(paging: Paging) -> String {
    match paging.size {
        Some(n) => format!(" LIMIT {n} OFFSET {}", paging.start),
        None if paging.start > 0 => format!(" OFFSET {}", paging.start),
        None => String::new(),
    }
}

/// Runs `SELECT COUNT(*)` over `from_where` and then the page of `SELECT columns`, for lists
/// that may be long (jobs, events).
async fn counted_page(
    app: &App,
    columns: &str,
    from_where: &str,
    order: &str,
    binds: &[String],
    paging: Paging,
) -> ApiResult<(usize, Vec<AnyRow>)> {
    let count_sql = format!("SELECT COUNT(*) AS n {from_where}");
    let mut q = sqlx::query(&count_sql);
    for b in binds {
        q = q.bind(b.as_str());
    }
    let total: i64 = q
        .fetch_one(app.db.pool())
        .await
        .map_err(internal)?
        .try_get("n")
        .map_err(internal)?;
    let total = usize::try_from(total).unwrap_or(0);
    if total == 0 || paging.range(total).is_empty() {
        return Ok((total, Vec::new()));
    }
    let sql = format!(
        "SELECT {columns} {from_where} ORDER BY {order}{}",
        limit(paging)
    );
    let mut q = sqlx::query(&sql);
    for b in binds {
        q = q.bind(b.as_str());
    }
    let rows = q.fetch_all(app.db.pool()).await.map_err(internal)?;
    Ok((total, rows))
}

fn contains_ci(haystack: &str, needle: &str) -> bool {
    haystack.to_lowercase().contains(&needle.to_lowercase())
}

// ------------------------------------------------------------------------------------------
// Jobs and discovery.

/// queryAsyncJobResult. An unknown job and another account's job get the same 431 (CloudStack
/// answers the latter with a permission error; answering it like an unknown id tells nothing
/// about other accounts' jobs).
pub(crate) async fn query_job(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let uuid = required(p, "jobid")?;
    let not_found = || ApiError::invalid_parameter(format!("Unable to find a job by id {uuid}"));
    let job = store::jobs::by_uuid(&app.db, uuid)
        .await
        .map_err(store_error)?
        .ok_or_else(not_found)?;
    if !caller.may_touch(job.account_id.get()) {
        return Err(not_found());
    }
    Ok(resp::job(&job))
}

/// listAsyncJobs: the caller's jobs (a root admin's: anyone's with `listall` or `account`),
/// oldest first.
pub(crate) async fn list_jobs(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let mut filter = Filter::new();
    if let Some(account) = scope(app, caller, p).await? {
        filter.and("j.account_id = $?", [account]);
    }
    if let Some(ids) = domain_ids(app, p).await? {
        filter.and_in("a.domain_id", &ids);
    }
    if let Some(since) = p.date("startdate") {
        filter.and("j.created >= $?", [since.saturating_mul(1000)]);
    }
    if let Some(k) = p.str("keyword").filter(|k| !k.is_empty()) {
        filter.and("LOWER(j.cmd) LIKE $?", [format!("%{}%", k.to_lowercase())]);
    }
    let total = filter::count(&app.db, JOB_FROM, &filter)
        .await
        .map_err(store_error)?;
    let total = usize::try_from(total).unwrap_or(usize::MAX);
    let paging = p.paging();
    if total == 0 || paging.range(total).is_empty() {
        return Ok(resp::list("asyncjobs", total, Vec::new()));
    }
    let rows = filter::page(
        &app.db,
        JOB_COLUMNS,
        JOB_FROM,
        &filter,
        "j.id ASC",
        paging.size.map(|n| n as u64),
        paging.start as u64,
    )
    .await
    .map_err(store_error)?;
    let items = rows
        .iter()
        .map(|r| store::jobs::record(r).map(|j| resp::job(&j)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(store_error)?;
    Ok(resp::list("asyncjobs", total, items))
}

/// listApis: the catalogue, as cmk and cloudmonkey read it.
pub(crate) fn list_apis(p: &Params) -> ApiResult<Value> {
    api_types::catalogue::list_apis_response(p.str("name").filter(|s| !s.is_empty()))
}

// ------------------------------------------------------------------------------------------
// Events.

const EVENT_COLUMNS: &str = "e.id, e.uuid, e.event_type, e.level, e.state, e.description, \
     e.resource_uuid, e.created, u.username, a.name AS account_name, d.uuid AS domain_uuid, \
     d.name AS domain_name";

const EVENT_FROM: &str = "FROM events e LEFT JOIN users u ON u.id = e.user_id \
     LEFT JOIN accounts a ON a.id = e.account_id LEFT JOIN domains d ON d.id = a.domain_id";

fn event_json(row: &AnyRow) -> Result<Value, sqlx::Error> {
    let mut m = Map::new();
    m.insert("id".into(), json!(row.try_get::<String, _>("uuid")?));
    if let Some(u) = opt_str(row, "username")? {
        m.insert("username".into(), json!(u));
    }
    m.insert(
        "type".into(),
        json!(row.try_get::<String, _>("event_type")?),
    );
    m.insert("level".into(), json!(row.try_get::<String, _>("level")?));
    m.insert(
        "description".into(),
        json!(row.try_get::<String, _>("description")?),
    );
    if let Some(a) = opt_str(row, "account_name")? {
        m.insert("account".into(), json!(a));
    }
    if let Some(d) = opt_str(row, "domain_uuid")? {
        m.insert("domainid".into(), json!(d));
    }
    if let Some(d) = opt_str(row, "domain_name")? {
        m.insert("domain".into(), json!(d));
    }
    m.insert("created".into(), json!(date(row.try_get("created")?)));
    m.insert("state".into(), json!(row.try_get::<String, _>("state")?));
    if let Some(r) = opt_str(row, "resource_uuid")? {
        m.insert("resourceid".into(), json!(r));
    }
    Ok(Value::Object(m))
}

/// listEvents, newest first as CloudStack lists them.
pub(crate) async fn list_events(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let mut from_where = format!("{EVENT_FROM} WHERE 1 = 1");
    let mut binds = Vec::new();
    if let Some(account) = scope(app, caller, p).await? {
        from_where.push_str(&format!(" AND e.account_id = {account}"));
    }
    if let Some(ids) = domain_ids(app, p).await? {
        from_where.push_str(&format!(" AND a.domain_id IN ({})", id_list(&ids)));
    }
    if let Some(v) = p.str("id").filter(|s| !s.is_empty()) {
        bind_cond(&mut from_where, &mut binds, "e.uuid = $?", v);
    }
    if let Some(v) = p.str("type").filter(|s| !s.is_empty()) {
        bind_cond(&mut from_where, &mut binds, "e.event_type = $?", v);
    }
    if let Some(v) = p.str("level").filter(|s| !s.is_empty()) {
        bind_cond(
            &mut from_where,
            &mut binds,
            "e.level = $?",
            &v.to_ascii_uppercase(),
        );
    }
    if let Some(s) = p.date("startdate") {
        from_where.push_str(&format!(" AND e.created >= {}", s.saturating_mul(1000)));
    }
    if let Some(s) = p.date("enddate") {
        // The whole last second counts.
        from_where.push_str(&format!(
            " AND e.created <= {}",
            s.saturating_mul(1000).saturating_add(999)
        ));
    }
    if let Some(k) = p.str("keyword").filter(|k| !k.is_empty()) {
        let pattern = format!("%{}%", k.to_lowercase());
        binds.push(pattern);
        let n = binds.len();
        from_where.push_str(&format!(
            " AND (LOWER(e.description) LIKE ${n} OR LOWER(e.event_type) LIKE ${n})"
        ));
    }
    let (total, rows) = counted_page(
        app,
        EVENT_COLUMNS,
        &from_where,
        "e.id DESC",
        &binds,
        p.paging(),
    )
    .await?;
    let items = rows
        .iter()
        .map(event_json)
        .collect::<Result<Vec<_>, _>>()
        .map_err(internal)?;
    Ok(resp::list("event", total, items))
}

// ------------------------------------------------------------------------------------------
// Accounts and users.

fn role_type(account_type: i64) -> &'static str {
    match account_type {
        1 => "Admin",
        2 => "DomainAdmin",
        _ => "User",
    }
}

fn role_name(account_type: i64) -> &'static str {
    match account_type {
        1 => "Root Admin",
        2 => "Domain Admin",
        _ => "User",
    }
}

const ACCOUNT_COLUMNS: &str = "a.id, a.uuid, a.name, a.account_type, a.state, a.created, \
     d.uuid AS domain_uuid, d.name AS domain_name, d.path AS domain_path";

const ACCOUNT_FROM: &str = "FROM accounts a JOIN domains d ON d.id = a.domain_id";

const USER_COLUMNS: &str = "u.id, u.uuid, u.username, u.firstname, u.lastname, u.email, \
     u.api_key, u.state, u.created, u.account_id, a.uuid AS account_uuid, a.name AS account_name, \
     a.account_type, d.uuid AS domain_uuid, d.name AS domain_name";

const USER_FROM: &str =
    "FROM users u JOIN accounts a ON a.id = u.account_id JOIN domains d ON d.id = a.domain_id";

/// A user: UserResponse. The API key is shown; the secret key never is.
fn user_json(row: &AnyRow, first_user: i64) -> Result<Value, sqlx::Error> {
    let account_type: i64 = row.try_get("account_type")?;
    let mut m = Map::new();
    m.insert("id".into(), json!(row.try_get::<String, _>("uuid")?));
    m.insert(
        "username".into(),
        json!(row.try_get::<String, _>("username")?),
    );
    m.insert(
        "firstname".into(),
        json!(row.try_get::<String, _>("firstname")?),
    );
    m.insert(
        "lastname".into(),
        json!(row.try_get::<String, _>("lastname")?),
    );
    m.insert("email".into(), json!(row.try_get::<String, _>("email")?));
    m.insert("created".into(), json!(date(row.try_get("created")?)));
    m.insert("state".into(), json!(row.try_get::<String, _>("state")?));
    m.insert(
        "account".into(),
        json!(row.try_get::<String, _>("account_name")?),
    );
    m.insert(
        "accountid".into(),
        json!(row.try_get::<String, _>("account_uuid")?),
    );
    m.insert("accounttype".into(), json!(account_type));
    m.insert("roletype".into(), json!(role_type(account_type)));
    m.insert("rolename".into(), json!(role_name(account_type)));
    m.insert(
        "domainid".into(),
        json!(row.try_get::<String, _>("domain_uuid")?),
    );
    m.insert(
        "domain".into(),
        json!(row.try_get::<String, _>("domain_name")?),
    );
    if let Some(k) = opt_str(row, "api_key")? {
        m.insert("apikey".into(), json!(k));
    }
    m.insert(
        "isdefault".into(),
        json!(row.try_get::<i64, _>("id")? == first_user),
    );
    Ok(Value::Object(m))
}

/// An account: AccountResponse, with its users.
fn account_json(row: &AnyRow, users: Vec<Value>) -> Result<Value, sqlx::Error> {
    let account_type: i64 = row.try_get("account_type")?;
    let mut m = Map::new();
    m.insert("id".into(), json!(row.try_get::<String, _>("uuid")?));
    m.insert("name".into(), json!(row.try_get::<String, _>("name")?));
    m.insert("accounttype".into(), json!(account_type));
    m.insert("roletype".into(), json!(role_type(account_type)));
    m.insert("rolename".into(), json!(role_name(account_type)));
    m.insert(
        "domainid".into(),
        json!(row.try_get::<String, _>("domain_uuid")?),
    );
    m.insert(
        "domain".into(),
        json!(row.try_get::<String, _>("domain_name")?),
    );
    m.insert(
        "domainpath".into(),
        json!(row.try_get::<String, _>("domain_path")?),
    );
    m.insert("state".into(), json!(row.try_get::<String, _>("state")?));
    m.insert("created".into(), json!(date(row.try_get("created")?)));
    m.insert("user".into(), Value::Array(users));
    Ok(Value::Object(m))
}

/// The id of the first user (the one made at first start), shown as `isdefault`.
async fn first_user(app: &App) -> ApiResult<i64> {
    let row = sqlx::query("SELECT MIN(id) AS id FROM users")
        .fetch_one(app.db.pool())
        .await
        .map_err(internal)?;
    Ok(row
        .try_get::<Option<i64>, _>("id")
        .map_err(internal)?
        .unwrap_or(0))
}

/// The users of these accounts, as objects, grouped by account id.
async fn users_of(
    app: &App,
    account_ids: &[i64],
) -> ApiResult<std::collections::HashMap<i64, Vec<Value>>> {
    let mut out: std::collections::HashMap<i64, Vec<Value>> = std::collections::HashMap::new();
    if account_ids.is_empty() {
        return Ok(out);
    }
    let first = first_user(app).await?;
    for chunk in account_ids.chunks(500) {
        let rows = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} {USER_FROM} WHERE u.account_id IN ({}) ORDER BY u.id",
            id_list(chunk)
        ))
        .fetch_all(app.db.pool())
        .await
        .map_err(internal)?;
        for r in &rows {
            let account: i64 = r.try_get("account_id").map_err(internal)?;
            out.entry(account)
                .or_default()
                .push(user_json(r, first).map_err(internal)?);
        }
    }
    Ok(out)
}

/// Whether a database error is a unique-key violation (two requests racing for one name).
fn is_duplicate(e: &sqlx::Error) -> bool {
    let text = e.to_string().to_lowercase();
    text.contains("unique") || text.contains("duplicate key")
}

/// createAccount (root admins only): an account with its first user.
///
/// Anyone else gets 531: CloudStack refuses a command the caller's role lacks before it runs
/// (with its own wording); guestnet answers with a permission error that names the account.
pub(crate) async fn create_account(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    if !caller.admin {
        return Err(ApiError::permission_denied(format!(
            "Account {} does not have permission to create accounts",
            caller.account_name
        )));
    }
    let username = required(p, "username")?.trim().to_string();
    let password = required(p, "password")?;
    let email = required(p, "email")?.trim().to_string();
    let firstname = required(p, "firstname")?.trim().to_string();
    let lastname = required(p, "lastname")?.trim().to_string();
    if username.is_empty() {
        return Err(ApiError::missing_parameter(p.spec().name, "username"));
    }
    let account_type = p.int("accounttype").unwrap_or(0);
    if !matches!(account_type, 0 | 1) {
        return Err(ApiError::invalid_parameter(format!(
            "Invalid account type {account_type}: guestnet has user (0) and root admin (1) \
             accounts"
        )));
    }
    let name = p
        .str("account")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or(&username)
        .to_string();
    let domain_row = match p.str("domainid").filter(|s| !s.is_empty()) {
        Some(uuid) => sqlx::query("SELECT id FROM domains WHERE uuid = $1")
            .bind(uuid)
            .fetch_optional(app.db.pool())
            .await
            .map_err(internal)?
            .ok_or_else(|| unknown(p, "domainid"))?,
        None => sqlx::query("SELECT id FROM domains WHERE parent_id IS NULL ORDER BY id")
            .fetch_optional(app.db.pool())
            .await
            .map_err(internal)?
            .ok_or_else(|| ApiError::internal("the ROOT domain is missing"))?,
    };
    let domain_id: i64 = domain_row.try_get("id").map_err(internal)?;
    let hash = crate::password::hash_blocking(password.to_string())
        .await
        .map_err(internal)?;
    let account_uuid = uuid::Uuid::new_v4().to_string();
    let user_uuid = uuid::Uuid::new_v4().to_string();
    let taken_user = || ApiError::invalid_parameter(format!("The user {username} already exists"));
    let taken_account =
        || ApiError::invalid_parameter(format!("The specified account: {name} already exists"));
    {
        let _w = app.db.write_lock().await;
        let mut tx = begin(app).await?;
        if sqlx::query("SELECT id FROM users WHERE username = $1")
            .bind(username.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(internal)?
            .is_some()
        {
            return Err(taken_user());
        }
        if sqlx::query("SELECT id FROM accounts WHERE domain_id = $1 AND name = $2")
            .bind(domain_id)
            .bind(name.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(internal)?
            .is_some()
        {
            return Err(taken_account());
        }
        let now = now_ms();
        let account_id: i64 = sqlx::query(
            "INSERT INTO accounts (uuid, name, domain_id, account_type, state, created) \
             VALUES ($1, $2, $3, $4, 'enabled', $5) RETURNING id",
        )
        .bind(account_uuid.as_str())
        .bind(name.as_str())
        .bind(domain_id)
        .bind(account_type)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| {
            if is_duplicate(&e) {
                taken_account()
            } else {
                internal(e)
            }
        })?
        .try_get("id")
        .map_err(internal)?;
        sqlx::query(
            "INSERT INTO users (uuid, account_id, username, password_hash, email, firstname, \
             lastname, state, created) VALUES ($1, $2, $3, $4, $5, $6, $7, 'enabled', $8)",
        )
        .bind(user_uuid.as_str())
        .bind(account_id)
        .bind(username.as_str())
        .bind(hash)
        .bind(email)
        .bind(firstname)
        .bind(lastname)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if is_duplicate(&e) {
                taken_user()
            } else {
                internal(e)
            }
        })?;
        store::events::event(
            &mut tx,
            caller.account_id,
            caller.user_id,
            "ACCOUNT.CREATE",
            "INFO",
            "Completed",
            &format!("Successfully created account {name} with user {username}"),
            Some(&account_uuid),
            None,
        )
        .await
        .map_err(internal)?;
        tx.commit().await.map_err(internal)?;
    }
    let row = sqlx::query(&format!(
        "SELECT {ACCOUNT_COLUMNS} {ACCOUNT_FROM} WHERE a.uuid = $1"
    ))
    .bind(account_uuid.as_str())
    .fetch_one(app.db.pool())
    .await
    .map_err(internal)?;
    let account_id: i64 = row.try_get("id").map_err(internal)?;
    let users = users_of(app, &[account_id])
        .await?
        .remove(&account_id)
        .unwrap_or_default();
    Ok(resp::wrap(
        "account",
        account_json(&row, users).map_err(internal)?,
    ))
}

/// listAccounts. A user sees its own account; a root admin the accounts of its domain, all of
/// them with `listall=true`, or those named by `id`, `name` or `domainid`.
pub(crate) async fn list_accounts(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let mut sql = format!("SELECT {ACCOUNT_COLUMNS} {ACCOUNT_FROM} WHERE 1 = 1");
    let mut binds = Vec::new();
    let id = p.str("id").filter(|s| !s.is_empty());
    let name = p.str("name").filter(|s| !s.is_empty());
    if let Some(v) = id {
        bind_cond(&mut sql, &mut binds, "a.uuid = $?", v);
    }
    if let Some(v) = name {
        bind_cond(&mut sql, &mut binds, "a.name = $?", v);
    }
    let domains = domain_ids(app, p).await?;
    if let Some(ids) = &domains {
        sql.push_str(&format!(" AND a.domain_id IN ({})", id_list(ids)));
    }
    if !caller.admin {
        sql.push_str(&format!(" AND a.id = {}", caller.account_id));
    } else if id.is_none() && name.is_none() && domains.is_none() && p.bool("listall") != Some(true)
    {
        sql.push_str(&format!(" AND a.domain_id = {}", caller.domain_id));
    }
    sql.push_str(" ORDER BY a.id");
    let mut q = sqlx::query(&sql);
    for b in &binds {
        q = q.bind(b.as_str());
    }
    let mut rows = q.fetch_all(app.db.pool()).await.map_err(internal)?;
    if let Some(k) = p.str("keyword").filter(|k| !k.is_empty()) {
        rows.retain(|r| {
            r.try_get::<String, _>("name")
                .is_ok_and(|n| contains_ci(&n, k))
        });
    }
    let range = p.paging().range(rows.len());
    let page = &rows[range];
    let ids = page
        .iter()
        .map(|r| r.try_get::<i64, _>("id"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(internal)?;
    let mut users = users_of(app, &ids).await?;
    let mut items = Vec::with_capacity(page.len());
    for (row, id) in page.iter().zip(&ids) {
        let u = users.remove(id).unwrap_or_default();
        items.push(account_json(row, u).map_err(internal)?);
    }
    Ok(resp::list("account", rows.len(), items))
}

/// listUsers. A user sees the users of its own account; a root admin those of its domain, all
/// of them with `listall=true`, or those named by the filters.
pub(crate) async fn list_users(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let mut sql = format!("SELECT {USER_COLUMNS} {USER_FROM} WHERE 1 = 1");
    let mut binds = Vec::new();
    let id = p.str("id").filter(|s| !s.is_empty());
    let username = p.str("username").filter(|s| !s.is_empty());
    let account = p.str("account").filter(|s| !s.is_empty());
    if let Some(v) = id {
        bind_cond(&mut sql, &mut binds, "u.uuid = $?", v);
    }
    if let Some(v) = username {
        bind_cond(&mut sql, &mut binds, "u.username = $?", v);
    }
    if let Some(v) = account {
        bind_cond(&mut sql, &mut binds, "a.name = $?", v);
    }
    let domains = domain_ids(app, p).await?;
    if let Some(ids) = &domains {
        sql.push_str(&format!(" AND a.domain_id IN ({})", id_list(ids)));
    }
    if !caller.admin {
        sql.push_str(&format!(" AND u.account_id = {}", caller.account_id));
    } else if id.is_none()
        && username.is_none()
        && account.is_none()
        && domains.is_none()
        && p.bool("listall") != Some(true)
    {
        sql.push_str(&format!(" AND a.domain_id = {}", caller.domain_id));
    }
    sql.push_str(" ORDER BY u.id");
    let mut q = sqlx::query(&sql);
    for b in &binds {
        q = q.bind(b.as_str());
    }
    let mut rows = q.fetch_all(app.db.pool()).await.map_err(internal)?;
    if let Some(k) = p.str("keyword").filter(|k| !k.is_empty()) {
        rows.retain(|r| {
            ["username", "firstname", "lastname", "email"]
                .iter()
                .any(|c| r.try_get::<String, _>(*c).is_ok_and(|v| contains_ci(&v, k)))
        });
    }
    let first = first_user(app).await?;
    let range = p.paging().range(rows.len());
    let items = rows[range]
        .iter()
        .map(|r| user_json(r, first))
        .collect::<Result<Vec<_>, _>>()
        .map_err(internal)?;
    Ok(resp::list("user", rows.len(), items))
}

/// A new key: 32 random bytes, URL-safe base64 without padding.
fn new_key() -> ApiResult<String> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(internal)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// registerUserKeys: a new API key and secret key for a user, replacing the old pair. A user
/// may do it for itself, a root admin for anyone; another user's id is an unknown id. The keys
/// appear only in the answer, never in a log or an event.
pub(crate) async fn register_keys(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let uuid = required(p, "id")?;
    let row = sqlx::query("SELECT id, uuid FROM users WHERE uuid = $1")
        .bind(uuid)
        .fetch_optional(app.db.pool())
        .await
        .map_err(internal)?
        .ok_or_else(|| unknown(p, "id"))?;
    let user_id: i64 = row.try_get("id").map_err(internal)?;
    if !caller.admin && user_id != caller.user_id {
        return Err(unknown(p, "id"));
    }
    let api_key = new_key()?;
    let secret_key = new_key()?;
    {
        let _w = app.db.write_lock().await;
        let mut tx = begin(app).await?;
        sqlx::query("UPDATE users SET api_key = $1, secret_key = $2 WHERE id = $3")
            .bind(api_key.as_str())
            .bind(secret_key.as_str())
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(internal)?;
        store::events::event(
            &mut tx,
            caller.account_id,
            caller.user_id,
            "REGISTER.USER.KEY",
            "INFO",
            "Completed",
            &format!("Registered new API keys for user {uuid}"),
            Some(uuid),
            None,
        )
        .await
        .map_err(internal)?;
        tx.commit().await.map_err(internal)?;
    }
    // The old key stops working at once on this server.
    app.keys.clear();
    Ok(json!({"userkeys": {"apikey": api_key, "secretkey": secret_key}}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_become_limits() {
        assert_eq!(limit(Paging::ALL), "");
        assert_eq!(limit(Paging::DEFAULT), " LIMIT 500 OFFSET 0");
        assert_eq!(
            limit(Paging {
                start: 20,
                size: Some(10)
            }),
            " LIMIT 10 OFFSET 20"
        );
    }

    #[test]
    fn keys_are_url_safe() {
        let k = new_key().unwrap();
        assert_eq!(k.len(), 43);
        assert!(k
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }

    /// Every stored password is Argon2id, the admin's seeded one and createAccount's alike.
    #[tokio::test]
    async fn passwords_are_stored_as_argon2id() {
        let dir = tempfile::tempdir().unwrap();
        let app = crate::testkit::app(dir.path()).await;
        let root = crate::testkit::admin(&app).await;
        crate::testkit::call(
            &app,
            &root,
            "createAccount",
            &[
                ("username", "carol"),
                ("password", "Not-the-admin-1"),
                ("email", "carol@example.org"),
                ("firstname", "Carol"),
                ("lastname", "User"),
            ],
        )
        .await;
        let rows = sqlx::query("SELECT username, password_hash FROM users ORDER BY id")
            .fetch_all(app.db.pool())
            .await
            .unwrap();
        assert_eq!(rows.len(), 2);
        for r in &rows {
            let user: String = r.try_get("username").unwrap();
            let stored: String = r.try_get("password_hash").unwrap();
            assert!(
                stored.starts_with("$argon2id$v=19$"),
                "{user}'s password is not stored as Argon2id: {stored}"
            );
        }
        let carol: String = rows[1].try_get("password_hash").unwrap();
        assert!(crate::password::verify("Not-the-admin-1", &carol));
        assert!(!crate::password::verify("Not-the-admin-2", &carol));
    }
}
