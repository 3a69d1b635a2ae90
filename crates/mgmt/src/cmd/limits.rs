//! Resource limits, as CloudStack keeps them: how many user VMs, public IPs, networks and
//! network rules an account may hold, bounded by the account's own limit and by the limit of
//! every domain above it (ROOT excepted). `listResourceLimits` and `updateResourceLimit` show
//! and set them; [`take`] enforces them wherever a resource is taken.
//!
//! Limits bound what one tenant can take of what everyone shares (the zone's public
//! addresses, the hosts' routers): a root admin's account is never limited, and a tenant that
//! reached its limit leaves the rest to the others.
//!
//! Defaults are CloudStack's (`max.account.*` 20 and `max.domain.*` 40 for user VMs, public IPs
//! and networks); network rules are guestnet's own type (1000, `network_rule`: CloudStack has
//! no limit on rules), 1000 per account and 2000 per domain by default. -1 means no limit.

use api_types::error::ApiError;
use api_types::params::Params;
use serde_json::Value;

use super::infra::{admin_only, given};
use super::unknown;
use crate::app::{store_error, ApiResult, App};
use crate::resp::{self, accounts as shape};
use domain::actor::Caller;
use domain::ids::{AccountId, DomainId};
use domain::limits::{chain, domain_by_id, subtree, Domain, LimitOwner, TreeError};
use store::limits::{Conn, Holders, LimitedAccount};
use store::{ChangeTx, Dialect};

pub(crate) use domain::limits::Resource;

#[cfg(test)]
mod tests;

/// A domain tree that is not one: the database is not trusted (530).
fn tree_error(e: TreeError) -> ApiError {
    crate::app::internal(e)
}

/// An account's limit: none for a root admin, else its own or the default.
async fn account_limit(conn: &mut Conn, a: &LimitedAccount, r: Resource) -> ApiResult<i64> {
    if a.root_admin {
        return Ok(-1);
    }
    Ok(store::limits::explicit(conn, LimitOwner::Account(a.id), r)
        .await
        .map_err(store_error)?
        .unwrap_or(r.account_default()))
}

/// A domain's limit: none for ROOT; else its own, or that of the nearest domain above it
/// (ROOT excepted) that has one, or the default.
async fn domain_limit(
    conn: &mut Conn,
    domains: &[Domain],
    d: &Domain,
    r: Resource,
) -> ApiResult<i64> {
    for up in chain(domains, d.id).map_err(tree_error)? {
        if let Some(max) = store::limits::explicit(conn, LimitOwner::Domain(up.id), r)
            .await
            .map_err(store_error)?
        {
            return Ok(max);
        }
    }
    Ok(if d.is_root() { -1 } else { r.domain_default() })
}

/// A domain's limit and what the accounts of it and of the domains below it hold, for each
/// type CloudStack's DomainResponse shows (user VMs, public IPs, networks): listDomains.
///
/// # Errors
/// 530 when the database fails or the domain tree is broken.
pub(crate) async fn domain_usage(
    conn: &mut Conn,
    domains: &[Domain],
    d: &Domain,
) -> ApiResult<Vec<(Resource, i64, i64)>> {
    let below: Vec<DomainId> = subtree(domains, d).iter().map(|d| d.id).collect();
    let mut out = Vec::with_capacity(3);
    for r in [Resource::UserVm, Resource::PublicIp, Resource::Network] {
        let max = domain_limit(conn, domains, d, r).await?;
        let held = store::limits::held(conn, r, Holders::Domains(&below))
            .await
            .map_err(store_error)?;
        out.push((r, max, held));
    }
    Ok(out)
}

/// Checks that account `account` may take `wanted` (so many of each type) without passing
/// its own limit or that of a domain above it; CloudStack's 535 naming the first limit that
/// would be passed otherwise. A root admin's account is never limited.
///
/// # Assumptions
/// The caller writes what it takes in `change` before committing.
///
/// # Guarantees
/// Race-free: on PostgreSQL the account's row and those of the domains above it (ROOT
/// excepted) are locked (`FOR NO KEY UPDATE`, which foreign-key checks of concurrent inserts
/// do not wait for) until the commit, so two takers for the same account or domain, on any
/// server, count one after the other; on SQLite the change's write lock serializes them.
/// Rows are locked account first, then domains from the deepest up, and always after any
/// network row, so takers cannot deadlock.
///
/// # Errors
/// 535 when a limit would be passed; 530 when the database fails.
pub(crate) async fn take(
    change: &mut ChangeTx,
    account: AccountId,
    wanted: &[(Resource, i64)],
) -> ApiResult<()> {
    let dialect = change.dialect();
    take_on(change.conn(), dialect, account, wanted).await
}

/// Locks, on PostgreSQL, the rows of every account of `accounts` that limits apply to and of
/// the domains above them, in the one order all takers follow (accounts by id, then domains
/// deepest first and by id), before a group of requests takes resources one after the other
/// in `change`: each [`take`] then finds its rows locked already, and two groups locking
/// several accounts cannot deadlock.
///
/// # Errors
/// 530 when the database fails.
pub(crate) async fn lock_takers(change: &mut ChangeTx, accounts: &[AccountId]) -> ApiResult<()> {
    let dialect = change.dialect();
    if dialect != Dialect::Postgres {
        return Ok(());
    }
    let conn = change.conn();
    let mut ids: Vec<AccountId> = accounts.to_vec();
    ids.sort_by_key(|a| a.get());
    ids.dedup();
    if ids.len() < 2 {
        // One taker locks its own rows in that order.
        return Ok(());
    }
    let domains = store::accounts::domains(conn).await.map_err(store_error)?;
    let mut takers = Vec::new();
    let mut above: Vec<&Domain> = Vec::new();
    for id in ids {
        let account = store::limits::account(conn, id)
            .await
            .map_err(store_error)?;
        if account.root_admin {
            continue;
        }
        takers.push(account.id);
        for d in chain(&domains, account.domain_id).map_err(tree_error)? {
            if !above.iter().any(|a| a.id == d.id) {
                above.push(d);
            }
        }
    }
    above.sort_by_key(|d| (std::cmp::Reverse(d.path.matches('/').count()), d.id.get()));
    let above: Vec<DomainId> = above.iter().map(|d| d.id).collect();
    store::limits::lock_takers(conn, dialect, &takers, &above)
        .await
        .map_err(store_error)
}

async fn take_on(
    conn: &mut Conn,
    dialect: Dialect,
    account_id: AccountId,
    wanted: &[(Resource, i64)],
) -> ApiResult<()> {
    let account = store::limits::account(conn, account_id)
        .await
        .map_err(store_error)?;
    if account.root_admin {
        return Ok(());
    }
    let domains = store::accounts::domains(conn).await.map_err(store_error)?;
    let above = chain(&domains, account.domain_id).map_err(tree_error)?;
    let above_ids: Vec<DomainId> = above.iter().map(|d| d.id).collect();
    store::limits::lock_taker(conn, dialect, account.id, &above_ids)
        .await
        .map_err(store_error)?;
    let own_domain = domain_by_id(&domains, account.domain_id).map_err(tree_error)?;
    for &(r, n) in wanted {
        let max = account_limit(conn, &account, r).await?;
        if max >= 0
            && store::limits::held(conn, r, Holders::Account(account.id))
                .await
                .map_err(store_error)?
                + n
                > max
        {
            return Err(ApiError::resource_allocation(format!(
                "Maximum number of resources of type '{}' for account name={} in domain id={} \
                 has been exceeded.",
                r.name(),
                account.name,
                own_domain.uuid
            )));
        }
        for d in &above {
            let max = domain_limit(conn, &domains, d, r).await?;
            if max < 0 {
                continue;
            }
            let below: Vec<DomainId> = subtree(&domains, d).iter().map(|d| d.id).collect();
            if store::limits::held(conn, r, Holders::Domains(&below))
                .await
                .map_err(store_error)?
                + n
                > max
            {
                return Err(ApiError::resource_allocation(format!(
                    "Maximum number of resources of type '{}' for domain id={} has been \
                     exceeded.",
                    r.name(),
                    d.uuid
                )));
            }
        }
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// The commands.

/// Whose limits a request is about.
enum Owner {
    Account(LimitedAccount),
    Domain(Domain),
}

impl Owner {
    fn limit_owner(&self) -> LimitOwner {
        match self {
            Owner::Account(a) => LimitOwner::Account(a.id),
            Owner::Domain(d) => LimitOwner::Domain(d.id),
        }
    }
}

/// The types a list asks for: `resourcetypename` wins over `resourcetype`; neither means all.
fn types_asked(p: &Params) -> ApiResult<Vec<Resource>> {
    if let Some(name) = given(p, "resourcetypename") {
        return Resource::from_name(name).map(|r| vec![r]).ok_or_else(|| {
            ApiError::invalid_parameter(format!(
                "Please specify a valid resource type name: resourcetypename {} is none of {}",
                name,
                type_names()
            ))
        });
    }
    match p.int("resourcetype") {
        None => Ok(Resource::ALL.to_vec()),
        Some(n) => Resource::from_number(n)
            .map(|r| vec![r])
            .ok_or_else(|| bad_type(n)),
    }
}

fn type_names() -> String {
    Resource::ALL
        .iter()
        .map(|r| format!("{} {}", r.number(), r.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn bad_type(n: i64) -> ApiError {
    ApiError::invalid_parameter(format!(
        "Please specify a valid resource type: resourcetype {n} is none of {}",
        type_names()
    ))
}

/// The account named by `account` (and `domainid`, when given).
async fn named_account(
    conn: &mut Conn,
    p: &Params,
    domains: &[Domain],
    name: &str,
) -> ApiResult<LimitedAccount> {
    let domain = match given(p, "domainid") {
        Some(uuid) => Some(
            domains
                .iter()
                .find(|d| d.uuid == uuid)
                .ok_or_else(|| unknown(p, "domainid"))?,
        ),
        None => None,
    };
    store::limits::account_named(conn, name, domain.map(|d| d.id))
        .await
        .map_err(store_error)?
        .ok_or_else(|| {
            ApiError::invalid_parameter(match domain {
                Some(d) => format!("Unable to find account {name} in domain {}", d.uuid),
                None => format!("Unable to find account {name}"),
            })
        })
}

/// Whose limits a request names: `account` (with `domainid`) an account, `domainid` alone a
/// domain, neither the caller's own account. A user may name only its own account.
async fn owner_asked(
    conn: &mut Conn,
    caller: &Caller,
    p: &Params,
    domains: &[Domain],
) -> ApiResult<Option<Owner>> {
    if given(p, "projectid").is_some() {
        // guestnet has no projects: every project id is unknown.
        return Err(unknown(p, "projectid"));
    }
    if let Some(name) = given(p, "account") {
        if !caller.admin
            && (name != caller.account_name
                || given(p, "domainid").is_some_and(|d| d != caller.domain_uuid))
        {
            return Err(ApiError::permission_denied(format!(
                "Account {} may not see the resource limits of account {name}",
                caller.account_name
            )));
        }
        return Ok(Some(Owner::Account(
            named_account(conn, p, domains, name).await?,
        )));
    }
    if caller.admin {
        if let Some(uuid) = given(p, "domainid") {
            let d = domains
                .iter()
                .find(|d| d.uuid == uuid)
                .ok_or_else(|| unknown(p, "domainid"))?;
            return Ok(Some(Owner::Domain(d.clone())));
        }
    }
    Ok(None)
}

/// One limit as CloudStack answers it (ResourceLimitResponse).
fn limit_json(owner: &Owner, domains: &[Domain], r: Resource, max: i64) -> ApiResult<Value> {
    let (account, domain) = match owner {
        Owner::Account(a) => (
            Some(a.name.as_str()),
            domain_by_id(domains, a.domain_id).map_err(tree_error)?,
        ),
        Owner::Domain(d) => (None, d),
    };
    Ok(shape::limit(account, (&domain.uuid, &domain.name), r, max))
}

async fn owner_limit(
    conn: &mut Conn,
    owner: &Owner,
    domains: &[Domain],
    r: Resource,
) -> ApiResult<i64> {
    match owner {
        Owner::Account(a) => account_limit(conn, a, r).await,
        Owner::Domain(d) => domain_limit(conn, domains, d, r).await,
    }
}

/// listResourceLimits: the limits of one owner, one row per type guestnet limits (the
/// owner's own limit, or the default it has without one).
pub(crate) async fn list_limits(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let mut conn = store::limits::connection(&app.db)
        .await
        .map_err(store_error)?;
    let domains = store::accounts::domains(&mut conn)
        .await
        .map_err(store_error)?;
    let mut types = types_asked(p)?;
    // The keyword: in the type's name (user_vm, public_ip, network, network_rule).
    if let Some(k) = super::infra::keyword(p) {
        types.retain(|r| super::infra::contains(r.name(), &k));
    }
    let owners = match owner_asked(&mut conn, caller, p, &domains).await? {
        Some(o) => vec![o],
        // An admin's listall: the limits of every account it may see (CloudStack answers the
        // caller's own whatever listall says; listall's own meaning is what guestnet applies).
        None if caller.admin && p.bool("listall") == Some(true) => {
            let every = store::accounts::list_accounts(&app.db, &Default::default())
                .await
                .map_err(store_error)?;
            let mut owners = Vec::with_capacity(every.len());
            for a in every {
                owners.push(Owner::Account(
                    store::limits::account(&mut conn, a.id)
                        .await
                        .map_err(store_error)?,
                ));
            }
            owners
        }
        None => vec![Owner::Account(
            store::limits::account(&mut conn, AccountId::from(caller.account_id))
                .await
                .map_err(store_error)?,
        )],
    };
    let by_id = match p.int("id") {
        Some(id) => Some(
            store::limits::row(&mut conn, id)
                .await
                .map_err(store_error)?,
        ),
        None => None,
    };
    let mut items = Vec::with_capacity(types.len() * owners.len());
    for owner in &owners {
        for &r in &types {
            // A limit row by its id: shown when it belongs to an owner asked about.
            if let Some(found) = &by_id {
                if found.as_ref() != Some(&(owner.limit_owner(), r)) {
                    continue;
                }
            }
            let max = owner_limit(&mut conn, owner, &domains, r).await?;
            items.push(limit_json(owner, &domains, r, max)?);
        }
    }
    Ok(super::page("resourcelimit", items, p.paging()))
}

/// updateResourceLimit (admins only): sets an account's limit (`account` and `domainid`) or a
/// domain's (`domainid` alone) for one type; `max` -1 or absent means no limit.
pub(crate) async fn update_limit(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    admin_only(caller)?;
    let n = p
        .int("resourcetype")
        .ok_or_else(|| ApiError::missing_parameter(p.spec().name, "resourcetype"))?;
    let r = Resource::from_number(n).ok_or_else(|| bad_type(n))?;
    let max = p.int("max").unwrap_or(-1);
    if max < -1 {
        return Err(ApiError::invalid_parameter(
            "Please specify either '-1' for an infinite limit, or a limit that is at least '0'.",
        ));
    }
    let mut conn = store::limits::connection(&app.db)
        .await
        .map_err(store_error)?;
    let domains = store::accounts::domains(&mut conn)
        .await
        .map_err(store_error)?;
    let owner = owner_asked(&mut conn, caller, p, &domains)
        .await?
        .ok_or_else(|| {
            ApiError::invalid_parameter(
                "AccountId or domainId have to be specified in order to update resource limit",
            )
        })?;
    match &owner {
        Owner::Account(a) => {
            if a.root_admin && max != -1 {
                return Err(ApiError::invalid_parameter(
                    "Only -1 limit is supported for Root Admin accounts",
                ));
            }
        }
        Owner::Domain(d) => {
            if d.is_root() {
                return Err(ApiError::permission_denied(format!(
                    "Cannot update resource limit for ROOT domain {}, permission denied",
                    d.uuid
                )));
            }
            if let Some(parent) = d.parent {
                let parent = domain_by_id(&domains, parent).map_err(tree_error)?;
                let parent_max = domain_limit(&mut conn, &domains, parent, r).await?;
                if parent_max >= 0 && max > parent_max {
                    return Err(ApiError::invalid_parameter(format!(
                        "Domain {} has maximum allowed resource limit {parent_max} for {}, \
                         please specify a value less than or equal to {parent_max}",
                        parent.name,
                        r.name()
                    )));
                }
            }
        }
    }
    drop(conn);
    let mut change = app.db.change(None).await.map_err(store_error)?;
    store::limits::set(change.conn(), owner.limit_owner(), r, max)
        .await
        .map_err(store_error)?;
    let receipt = change.commit().await.map_err(store_error)?;
    app.doorbell.ring(receipt);
    Ok(resp::wrap(
        "resourcelimit",
        limit_json(&owner, &domains, r, max)?,
    ))
}

// ------------------------------------------------------------------------------------------
// Taking for a group of requests.

/// What a group of requests in one change has taken so far, with what the rows held when the
/// group first looked, so that each request of the group is checked as [`take`] would check it
/// alone, after the group's earlier requests, while the rows are read once per group: an
/// account, its domains, its limits and what it and its domains hold are read the first time a
/// request of the group takes for that account, and every later take adds to the counts in
/// memory. The rows are locked by the first read (as [`take`] locks them), so nothing outside
/// the change moves them meanwhile.
#[derive(Default)]
pub(crate) struct GroupTakings {
    domains: Option<Vec<Domain>>,
    /// Per account: the account, and the uuid of its own domain (for texts).
    accounts: Vec<(LimitedAccount, String)>,
    account_limits: Vec<((AccountId, i64), i64)>,
    domain_limits: Vec<((DomainId, i64), i64)>,
    /// What an account holds, the group's takes included.
    account_held: Vec<((AccountId, i64), i64)>,
    /// What a domain and every domain below it hold, the group's takes included.
    domain_held: Vec<((DomainId, i64), i64)>,
}

fn lookup<K: PartialEq, V: Copy>(list: &[(K, V)], key: &K) -> Option<V> {
    list.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
}

fn add<K: PartialEq>(list: &mut [(K, i64)], key: &K, n: i64) {
    if let Some((_, v)) = list.iter_mut().find(|(k, _)| k == key) {
        *v += n;
    }
}

impl GroupTakings {
    /// Takes `wanted` for `account` after everything the group took before, with the answer
    /// [`take`] gives; a refused take counts nothing.
    ///
    /// # Errors
    /// 535 when a limit would be passed; 530 when the database fails.
    pub(crate) async fn take(
        &mut self,
        change: &mut ChangeTx,
        account_id: AccountId,
        wanted: &[(Resource, i64)],
    ) -> ApiResult<()> {
        let dialect = change.dialect();
        let conn = change.conn();
        let (account, own_uuid) = match self.accounts.iter().find(|(a, _)| a.id == account_id) {
            Some(found) => found.clone(),
            None => {
                let account = store::limits::account(conn, account_id)
                    .await
                    .map_err(store_error)?;
                let mut own_uuid = String::new();
                if !account.root_admin {
                    if self.domains.is_none() {
                        self.domains =
                            Some(store::accounts::domains(conn).await.map_err(store_error)?);
                    }
                    let domains = self.domains.as_deref().unwrap_or_default();
                    let above: Vec<DomainId> = chain(domains, account.domain_id)
                        .map_err(tree_error)?
                        .iter()
                        .map(|d| d.id)
                        .collect();
                    store::limits::lock_taker(conn, dialect, account.id, &above)
                        .await
                        .map_err(store_error)?;
                    own_uuid = domain_by_id(domains, account.domain_id)
                        .map_err(tree_error)?
                        .uuid
                        .clone();
                }
                self.accounts.push((account.clone(), own_uuid.clone()));
                (account, own_uuid)
            }
        };
        if account.root_admin {
            return Ok(());
        }
        let domains = self.domains.clone().unwrap_or_default();
        let above = chain(&domains, account.domain_id).map_err(tree_error)?;
        for &(r, n) in wanted {
            let key = (account.id, r.number());
            let max = match lookup(&self.account_limits, &key) {
                Some(max) => max,
                None => {
                    let max = account_limit(conn, &account, r).await?;
                    self.account_limits.push((key, max));
                    max
                }
            };
            if max >= 0 {
                let held = match lookup(&self.account_held, &key) {
                    Some(held) => held,
                    None => {
                        let held = store::limits::held(conn, r, Holders::Account(account.id))
                            .await
                            .map_err(store_error)?;
                        self.account_held.push((key, held));
                        held
                    }
                };
                if held + n > max {
                    return Err(ApiError::resource_allocation(format!(
                        "Maximum number of resources of type '{}' for account name={} in domain \
                         id={} has been exceeded.",
                        r.name(),
                        account.name,
                        own_uuid
                    )));
                }
            }
            for d in &above {
                let key = (d.id, r.number());
                let max = match lookup(&self.domain_limits, &key) {
                    Some(max) => max,
                    None => {
                        let max = domain_limit(conn, &domains, d, r).await?;
                        self.domain_limits.push((key, max));
                        max
                    }
                };
                if max < 0 {
                    continue;
                }
                let held = match lookup(&self.domain_held, &key) {
                    Some(held) => held,
                    None => {
                        let below: Vec<DomainId> =
                            subtree(&domains, d).iter().map(|d| d.id).collect();
                        let held = store::limits::held(conn, r, Holders::Domains(&below))
                            .await
                            .map_err(store_error)?;
                        self.domain_held.push((key, held));
                        held
                    }
                };
                if held + n > max {
                    return Err(ApiError::resource_allocation(format!(
                        "Maximum number of resources of type '{}' for domain id={} has been \
                         exceeded.",
                        r.name(),
                        d.uuid
                    )));
                }
            }
        }
        // Every check passed: the take counts for the account and for each domain above it. A
        // count not read by now belongs to an unlimited holder (every limited one was read
        // above), and the limits do not change within the change, so it is never read later.
        for &(r, n) in wanted {
            add(&mut self.account_held, &(account.id, r.number()), n);
            for d in &above {
                add(&mut self.domain_held, &(d.id, r.number()), n);
            }
        }
        Ok(())
    }
}
