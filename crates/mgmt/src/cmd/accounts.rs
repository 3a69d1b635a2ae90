//! Accounts, users and their keys, events, jobs and API discovery.
//!
//! Tenancy as everywhere else: a user sees its own account's jobs, events and users; what
//! belongs to another account is answered exactly like what does not exist.

use std::collections::HashMap;

use api_types::error::ApiError;
use api_types::params::{Paging, Params};
use serde_json::Value;

use super::{required, scope, unknown};
use crate::app::{internal, store_error, ApiResult, App};
use crate::resp::{self, accounts as shape};
use domain::actor::Caller;
use domain::ids::{AccountId, DomainId, UserId};
use store::accounts::{AccountFilter, NewAccount, NewUser, UserFilter};
use store::db::now_ms;
use store::events::EventFilter;
use store::jobs::JobFilter;

// ------------------------------------------------------------------------------------------
// Shared pieces.

/// The domains a `domainid` filter (with `isrecursive`, the subdomains too) selects, or `None`
/// when the request has no such filter.
///
/// # Errors
/// 431 unknown id for a domain that does not exist.
pub(crate) async fn domains_asked(app: &App, p: &Params) -> ApiResult<Option<Vec<DomainId>>> {
    if p.spec().param("domainid").is_none() {
        return Ok(None);
    }
    let Some(uuid) = p.str("domainid").filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let domains = store::accounts::all_domains(&app.db)
        .await
        .map_err(store_error)?;
    let Some(root) = domains.iter().find(|d| d.uuid == uuid) else {
        return Err(unknown(p, "domainid"));
    };
    let recursive = p.spec().param("isrecursive").is_some() && p.bool("isrecursive") == Some(true);
    let below = format!("{}/", root.path);
    Ok(Some(
        domains
            .iter()
            .filter(|d| d.id == root.id || (recursive && d.path.starts_with(&below)))
            .map(|d| d.id)
            .collect(),
    ))
}

/// [`domains_asked`], as the bare ids other listings still filter on.
///
/// # Errors
/// As [`domains_asked`].
pub(crate) async fn domain_ids(app: &App, p: &Params) -> ApiResult<Option<Vec<i64>>> {
    Ok(domains_asked(app, p)
        .await?
        .map(|ids| ids.into_iter().map(DomainId::get).collect()))
}

/// The account a listing is scoped to, typed.
async fn scoped(app: &App, caller: &Caller, p: &Params) -> ApiResult<Option<AccountId>> {
    Ok(scope(app, caller, p).await?.map(AccountId::from))
}

/// A page as the store reads it: `LIMIT` (none for "everything") and `OFFSET`.
fn window(paging: Paging) -> (Option<u64>, u64) {
    (paging.size.map(|n| n as u64), paging.start as u64)
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
    // A job this server saw pending a moment ago is answered from memory (see
    // `store::jobs::poll`).
    let job = store::jobs::poll(&app.db, uuid)
        .await
        .map_err(store_error)?
        .ok_or_else(not_found)?;
    if !caller.may_touch(job.account_id) {
        return Err(not_found());
    }
    Ok(resp::job(&job))
}

/// listAsyncJobs: the caller's jobs (a root admin's: anyone's with `listall` or `account`),
/// oldest first.
pub(crate) async fn list_jobs(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let account = scoped(app, caller, p).await?;
    let domains = domains_asked(app, p).await?;
    let keyword = p.str("keyword").filter(|k| !k.is_empty());
    let filter = JobFilter {
        account,
        domains: domains.as_deref(),
        from_ms: p.date("startdate").map(|s| s.saturating_mul(1000)),
        keyword,
    };
    let total = store::jobs::count(&app.db, &filter)
        .await
        .map_err(store_error)?;
    let total = usize::try_from(total).unwrap_or(usize::MAX);
    let paging = p.paging();
    if total == 0 || paging.range(total).is_empty() {
        return Ok(resp::list("asyncjobs", total, Vec::new()));
    }
    let (limit, offset) = window(paging);
    let jobs = store::jobs::page(&app.db, &filter, limit, offset)
        .await
        .map_err(store_error)?;
    Ok(resp::list(
        "asyncjobs",
        total,
        jobs.iter().map(resp::job).collect(),
    ))
}

/// listApis: the catalogue, as cmk and cloudmonkey read it.
pub(crate) fn list_apis(p: &Params) -> ApiResult<Value> {
    api_types::catalogue::list_apis_response(p.str("name").filter(|s| !s.is_empty()))
}

// ------------------------------------------------------------------------------------------
// Events.

/// listEvents, newest first as CloudStack lists them.
pub(crate) async fn list_events(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let account = scoped(app, caller, p).await?;
    let domains = domains_asked(app, p).await?;
    let level = p
        .str("level")
        .filter(|s| !s.is_empty())
        .map(str::to_ascii_uppercase);
    let filter = EventFilter {
        account,
        domains: domains.as_deref(),
        uuid: p.str("id").filter(|s| !s.is_empty()),
        event_type: p.str("type").filter(|s| !s.is_empty()),
        level: level.as_deref(),
        from_ms: p.date("startdate").map(|s| s.saturating_mul(1000)),
        // The whole last second counts.
        until_ms: p
            .date("enddate")
            .map(|s| s.saturating_mul(1000).saturating_add(999)),
        keyword: p.str("keyword").filter(|k| !k.is_empty()),
    };
    let total = store::events::count(&app.db, &filter)
        .await
        .map_err(store_error)?;
    let total = usize::try_from(total).unwrap_or(0);
    let paging = p.paging();
    if total == 0 || paging.range(total).is_empty() {
        return Ok(resp::list("event", total, Vec::new()));
    }
    let (limit, offset) = window(paging);
    let events = store::events::page(&app.db, &filter, limit, offset)
        .await
        .map_err(store_error)?;
    Ok(resp::list(
        "event",
        total,
        events.iter().map(shape::event).collect(),
    ))
}

// ------------------------------------------------------------------------------------------
// Accounts and users.

/// The users of these accounts, as objects, grouped by account.
async fn users_of(app: &App, accounts: &[AccountId]) -> ApiResult<HashMap<AccountId, Vec<Value>>> {
    let mut out: HashMap<AccountId, Vec<Value>> = HashMap::new();
    if accounts.is_empty() {
        return Ok(out);
    }
    let first = store::accounts::first_user(&app.db)
        .await
        .map_err(store_error)?;
    for u in store::accounts::users_of(&app.db, accounts)
        .await
        .map_err(store_error)?
    {
        out.entry(u.account_id)
            .or_default()
            .push(shape::user(&u, first));
    }
    Ok(out)
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
    let domain = match p.str("domainid").filter(|s| !s.is_empty()) {
        Some(uuid) => store::accounts::domain_by_uuid(&app.db, uuid)
            .await
            .map_err(store_error)?
            .ok_or_else(|| unknown(p, "domainid"))?,
        None => store::accounts::root_domain(&app.db)
            .await
            .map_err(store_error)?
            .ok_or_else(|| ApiError::internal("the ROOT domain is missing"))?,
    };
    let hash = crate::password::hash_blocking(password.to_string())
        .await
        .map_err(internal)?;
    let account_uuid = uuid::Uuid::new_v4().to_string();
    let user_uuid = uuid::Uuid::new_v4().to_string();
    let taken_user = || ApiError::invalid_parameter(format!("The user {username} already exists"));
    let taken_account =
        || ApiError::invalid_parameter(format!("The specified account: {name} already exists"));
    let taken = |e: store::StoreError, taken: &dyn Fn() -> ApiError| {
        if store::accounts::is_duplicate(&e) {
            taken()
        } else {
            store_error(e)
        }
    };
    let mut change = app.db.change(None).await.map_err(store_error)?;
    if store::accounts::username_taken(change.conn(), &username)
        .await
        .map_err(store_error)?
    {
        return Err(taken_user());
    }
    if store::accounts::account_exists(change.conn(), domain, &name)
        .await
        .map_err(store_error)?
    {
        return Err(taken_account());
    }
    let now = now_ms();
    let account_id = store::accounts::insert_account(
        change.conn(),
        NewAccount {
            uuid: &account_uuid,
            name: &name,
            domain,
            account_type,
            created: now,
        },
    )
    .await
    .map_err(|e| taken(e, &taken_account))?;
    store::accounts::insert_user(
        change.conn(),
        NewUser {
            uuid: &user_uuid,
            account: account_id,
            username: &username,
            password_hash: &hash,
            email: &email,
            firstname: &firstname,
            lastname: &lastname,
            created: now,
        },
    )
    .await
    .map_err(|e| taken(e, &taken_user))?;
    store::events::event(
        change.conn(),
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
    .map_err(store_error)?;
    let receipt = change.commit().await.map_err(store_error)?;
    app.doorbell.ring(receipt);
    let account = store::accounts::account_by_uuid(&app.db, &account_uuid)
        .await
        .map_err(store_error)?
        .ok_or_else(|| {
            store_error(store::StoreError::NotFound {
                what: "account",
                id: account_id.get(),
            })
        })?;
    let users = users_of(app, &[account.id])
        .await?
        .remove(&account.id)
        .unwrap_or_default();
    Ok(resp::wrap("account", shape::account(&account, users)))
}

/// listAccounts. A user sees its own account; a root admin the accounts of its domain, all of
/// them with `listall=true`, or those named by `id`, `name` or `domainid`.
pub(crate) async fn list_accounts(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let id = p.str("id").filter(|s| !s.is_empty());
    let name = p.str("name").filter(|s| !s.is_empty());
    let domains = domains_asked(app, p).await?;
    let mut filter = AccountFilter {
        uuid: id,
        name,
        domains: domains.as_deref(),
        ..AccountFilter::default()
    };
    if !caller.admin {
        filter.account = Some(AccountId::from(caller.account_id));
    } else if id.is_none() && name.is_none() && domains.is_none() && p.bool("listall") != Some(true)
    {
        filter.domain = Some(DomainId::from(caller.domain_id));
    }
    let mut accounts = store::accounts::list_accounts(&app.db, &filter)
        .await
        .map_err(store_error)?;
    if let Some(k) = p.str("keyword").filter(|k| !k.is_empty()) {
        accounts.retain(|a| contains_ci(&a.name, k));
    }
    let range = p.paging().range(accounts.len());
    let page = &accounts[range];
    let ids: Vec<AccountId> = page.iter().map(|a| a.id).collect();
    let mut users = users_of(app, &ids).await?;
    let items = page
        .iter()
        .map(|a| shape::account(a, users.remove(&a.id).unwrap_or_default()))
        .collect();
    Ok(resp::list("account", accounts.len(), items))
}

/// listDomains. A user sees its own domain; a root admin its own, or with `listall=true`,
/// `id`, `name` or `level` every domain below it (ROOT: all of them). `details` all (the
/// default) or resource adds each domain's limits and what its accounts hold; min leaves them
/// out.
pub(crate) async fn list_domains(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let mut with_usage = true;
    for d in p.list("details").unwrap_or_default() {
        match d.to_ascii_lowercase().as_str() {
            "all" | "resource" => {}
            "min" => with_usage = false,
            other => {
                return Err(ApiError::invalid_parameter(format!(
                    "Invalid details {other}: the allowed values are all, resource and min"
                )))
            }
        }
    }
    let mut conn = store::limits::connection(&app.db)
        .await
        .map_err(store_error)?;
    let domains = store::accounts::domains(&mut conn)
        .await
        .map_err(store_error)?;
    let tree = |e| internal(e);
    let own = domain::limits::domain_by_id(&domains, caller.domain()).map_err(tree)?;
    let id = p.str("id").filter(|s| !s.is_empty());
    let name = p.str("name").filter(|s| !s.is_empty());
    let level = p.int("level");
    let wide = caller.admin
        && (p.bool("listall") == Some(true) || id.is_some() || name.is_some() || level.is_some());
    let seen = if wide {
        domain::limits::subtree(&domains, own)
    } else {
        vec![own]
    };
    let keyword = p.str("keyword").filter(|k| !k.is_empty());
    let mut shown = Vec::new();
    for d in seen {
        // The chain up stops below ROOT: its length is the depth.
        let depth = domain::limits::chain(&domains, d.id).map_err(tree)?.len();
        if id.is_some_and(|id| id != d.uuid)
            || name.is_some_and(|n| n != d.name)
            || level.is_some_and(|l| usize::try_from(l).ok() != Some(depth))
            || keyword.is_some_and(|k| !contains_ci(&d.name, k))
        {
            continue;
        }
        shown.push((d, depth));
    }
    let range = p.paging().range(shown.len());
    let mut items = Vec::with_capacity(range.len());
    for (d, depth) in &shown[range] {
        let parent = match d.parent {
            Some(up) => Some(domain::limits::domain_by_id(&domains, up).map_err(tree)?),
            None => None,
        };
        let has_child = domains.iter().any(|o| o.parent == Some(d.id));
        let usage = if with_usage {
            super::limits::domain_usage(&mut conn, &domains, d).await?
        } else {
            Vec::new()
        };
        items.push(shape::domain(d, *depth, parent, has_child, &usage));
    }
    Ok(resp::list("domain", shown.len(), items))
}

/// listUsers. A user sees the users of its own account; a root admin those of its domain, all
/// of them with `listall=true`, or those named by the filters.
pub(crate) async fn list_users(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let id = p.str("id").filter(|s| !s.is_empty());
    let username = p.str("username").filter(|s| !s.is_empty());
    let account = p.str("account").filter(|s| !s.is_empty());
    let domains = domains_asked(app, p).await?;
    let own = [AccountId::from(caller.account_id)];
    let mut filter = UserFilter {
        uuid: id,
        username,
        account_name: account,
        domains: domains.as_deref(),
        ..UserFilter::default()
    };
    if !caller.admin {
        filter.accounts = Some(&own);
    } else if id.is_none()
        && username.is_none()
        && account.is_none()
        && domains.is_none()
        && p.bool("listall") != Some(true)
    {
        filter.domain = Some(DomainId::from(caller.domain_id));
    }
    let mut users = store::accounts::list_users(&app.db, &filter)
        .await
        .map_err(store_error)?;
    if let Some(k) = p.str("keyword").filter(|k| !k.is_empty()) {
        users.retain(|u| {
            [&u.username, &u.firstname, &u.lastname, &u.email]
                .iter()
                .any(|v| contains_ci(v, k))
        });
    }
    let first = store::accounts::first_user(&app.db)
        .await
        .map_err(store_error)?;
    let range = p.paging().range(users.len());
    let items = users[range].iter().map(|u| shape::user(u, first)).collect();
    Ok(resp::list("user", users.len(), items))
}

/// registerUserKeys: a new API key and secret key for a user, replacing the old pair. A user
/// may do it for itself, a root admin for anyone; another user's id is an unknown id. The keys
/// appear only in the answer, never in a log or an event.
pub(crate) async fn register_keys(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let uuid = required(p, "id")?;
    let user: UserId = store::accounts::user_by_uuid(&app.db, uuid)
        .await
        .map_err(store_error)?
        .ok_or_else(|| unknown(p, "id"))?;
    if !caller.admin && user != caller.user() {
        return Err(unknown(p, "id"));
    }
    let api_key = crate::password::new_key().map_err(internal)?;
    let secret_key = crate::password::new_key().map_err(internal)?;
    let mut change = app.db.change(None).await.map_err(store_error)?;
    store::accounts::set_keys(change.conn(), user, &api_key, &secret_key)
        .await
        .map_err(store_error)?;
    store::events::event(
        change.conn(),
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
    .map_err(store_error)?;
    let receipt = change.commit().await.map_err(store_error)?;
    app.doorbell.ring(receipt);
    // The old key stops working at once on this server.
    app.keys.clear();
    Ok(shape::user_keys(&api_key, &secret_key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_become_windows() {
        assert_eq!(window(Paging::ALL), (None, 0));
        assert_eq!(window(Paging::DEFAULT), (Some(500), 0));
        assert_eq!(
            window(Paging {
                start: 20,
                size: Some(10)
            }),
            (Some(10), 20)
        );
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
        // Read straight from the table: no command ever shows a password's hash.
        let hashes = store::testing::password_hashes(&app.db).await.unwrap();
        assert_eq!(hashes.len(), 2);
        for (user, stored) in &hashes {
            assert!(
                stored.starts_with("$argon2id$v=19$"),
                "{user}'s password is not stored as Argon2id: {stored}"
            );
        }
        let carol = &hashes[1].1;
        assert!(crate::password::verify("Not-the-admin-1", carol));
        assert!(!crate::password::verify("Not-the-admin-2", carol));
    }
}
