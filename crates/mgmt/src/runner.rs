//! The job runner: one worker per network, level-triggered.
//!
//! A worker wakes when a request rings its network's doorbell (and every few seconds anyway),
//! reads the network's pending jobs, and carries as many as it can in one router generation:
//! it builds the network's complete config with their changes ([`crate::plan`]), has the agent
//! apply it, and only then records the outcome (rules Active, revoked rows removed, jobs
//! succeeded) in one transaction. If the router refuses a batch, it retries without the newest
//! job, down to a single job, so that each job gets its own outcome; a job the router refuses
//! on its own is undone and fails with 530 and the router's reason. Jobs survive a restart:
//! they stay pending in the database and the worker takes them up again.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api_types::error::ApiError;
use serde_json::{json, Value};
use sqlx::Row;
use tokio::sync::Notify;

use crate::app::App;
use crate::db::now_ms;
use crate::driver::Applied;
use crate::jobs::{self, Kind, Outcome, Payload};
use crate::metrics::{ApplyLabels, JobLabels, RouterLabels};
use crate::model::{
    IpRow, MemberRow, NetworkRow, PolicyRow, Rule, IP_COLUMNS, NETWORK_COLUMNS, POLICY_COLUMNS,
    RULE_COLUMNS, RULE_FROM,
};
use crate::plan::{self, Batch, NetworkState, PublicSegment};
use crate::store;

/// Most jobs carried by one generation (bounds the retries when a batch is refused).
const MAX_BATCH: usize = 64;

/// How often a worker looks at its network even when nobody rang.
const IDLE_CHECK: Duration = Duration::from_secs(5);

/// Wakes network workers; starts them on first use.
#[derive(Clone, Default)]
pub struct Doorbell {
    bells: Arc<Mutex<HashMap<i64, Arc<Notify>>>>,
    /// While set, workers take no jobs (jobs wait, pending, in the database).
    held: Arc<std::sync::atomic::AtomicBool>,
}

impl Doorbell {
    /// Rings `network_id`'s worker, starting it if needed.
    pub fn ring(&self, app: &App, network_id: i64) {
        let (bell, new) = {
            let Ok(mut bells) = self.bells.lock() else {
                return;
            };
            match bells.get(&network_id) {
                Some(b) => (b.clone(), false),
                None => {
                    let b = Arc::new(Notify::new());
                    bells.insert(network_id, b.clone());
                    (b, true)
                }
            }
        };
        if new {
            let app = app.clone();
            let b = bell.clone();
            tokio::spawn(async move { worker(app, network_id, b).await });
        }
        bell.notify_one();
    }

    /// Holds every worker: requests are still accepted and their jobs wait, pending.
    pub fn hold(&self) {
        self.held.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Lets workers take jobs again, and rings every network's worker.
    pub fn release(&self, app: &App) {
        self.held.store(false, std::sync::atomic::Ordering::SeqCst);
        let networks: Vec<i64> = self
            .bells
            .lock()
            .map(|b| b.keys().copied().collect())
            .unwrap_or_default();
        for n in networks {
            self.ring(app, n);
        }
    }

    fn is_held(&self) -> bool {
        self.held.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn forget(&self, network_id: i64) {
        if let Ok(mut bells) = self.bells.lock() {
            bells.remove(&network_id);
        }
    }
}

/// A pending job as the runner sees it.
#[derive(Debug, Clone)]
struct PendingJob {
    id: i64,
    command: String,
    kind: Kind,
    payload: Payload,
    created: i64,
    account_id: i64,
    user_id: i64,
}

async fn worker(app: App, network_id: i64, bell: Arc<Notify>) {
    // First pass: make sure the router holds the latest config (a restart of either side).
    let mut resync = true;
    let mut cache = Cache::default();
    loop {
        match step(&app, network_id, resync, &mut cache).await {
            Ok(Continue::Idle) => resync = false,
            Ok(Continue::Held) => {}
            Ok(Continue::More) => {
                // Jobs went to the router with the network's complete config: that re-syncs it.
                resync = false;
                continue;
            }
            Ok(Continue::Gone) => {
                app.doorbell.forget(network_id);
                return;
            }
            Err(e) => {
                cache.drop_copy();
                tracing::warn!(network = network_id, error = %e, "job runner step failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        }
        let _ = tokio::time::timeout(IDLE_CHECK, bell.notified()).await;
    }
}

enum Continue {
    /// Nothing to do until rung.
    Idle,
    /// Held: nothing done, the first-pass re-sync still to come.
    Held,
    /// Look again at once.
    More,
    /// The network is gone.
    Gone,
}

async fn step(
    app: &App,
    network_id: i64,
    resync: bool,
    cache: &mut Cache,
) -> Result<Continue, String> {
    if app.doorbell.is_held() {
        return Ok(Continue::Held);
    }
    let pending = pending_jobs(app, network_id).await?;
    let Some(first) = pending.first() else {
        let holds_latest = match store::router_applied(&app.db, network_id).await? {
            Some((router, applied)) => app
                .driver
                .held(&router)
                .await
                .is_some_and(|g| i64::try_from(g).is_ok_and(|g| g == applied)),
            None => false,
        };
        if resync && !holds_latest && store::network_exists(&app.db, network_id).await? {
            cache.drop_copy();
            let state = cache.current(app, network_id, &[]).await?;
            match push(app, state, &Batch::default()).await {
                Ok(commit) => record(app, &commit, cache).await?,
                Err(e) => {
                    tracing::warn!(network = network_id, error = %e, "re-sync of the router failed");
                }
            }
        }
        return Ok(if store::network_exists(&app.db, network_id).await? {
            Continue::Idle
        } else {
            Continue::Gone
        });
    };
    let all = pending.clone();
    match first.kind {
        Kind::Change => {
            let batch: Vec<PendingJob> = pending
                .iter()
                .take_while(|j| j.kind == Kind::Change)
                .take(MAX_BATCH)
                .cloned()
                .collect();
            run_changes(app, network_id, &all, batch, cache).await?;
        }
        Kind::Update | Kind::DestroyVm | Kind::DeleteNetwork => {
            let job = first.clone();
            run_changes(app, network_id, &all, vec![job], cache).await?;
        }
        Kind::DeployVm => {
            let job = first.clone();
            deploy_vm(app, network_id, job).await?;
        }
    }
    Ok(Continue::More)
}

async fn pending_jobs(app: &App, network_id: i64) -> Result<Vec<PendingJob>, String> {
    let rows = sqlx::query(
        "SELECT id, cmd, kind, payload, created, account_id, user_id FROM jobs \
         WHERE network_id = $1 AND status = 0 ORDER BY id",
    )
    .bind(network_id)
    .fetch_all(app.db.pool())
    .await
    .map_err(|e| e.to_string())?;
    rows.iter()
        .map(|r| {
            let payload: String = r.try_get("payload").map_err(|e| e.to_string())?;
            Ok(PendingJob {
                id: r.try_get("id").map_err(|e| e.to_string())?,
                command: r.try_get("cmd").map_err(|e| e.to_string())?,
                kind: jobs::parse_kind(&r.try_get::<String, _>("kind").map_err(|e| e.to_string())?),
                payload: serde_json::from_str(&payload).map_err(|e| e.to_string())?,
                created: r.try_get("created").map_err(|e| e.to_string())?,
                account_id: r.try_get("account_id").map_err(|e| e.to_string())?,
                user_id: r.try_get("user_id").map_err(|e| e.to_string())?,
            })
        })
        .collect()
}

/// Reads everything the network's router config is built from.
///
/// # Errors
/// The database's error, as text.
pub async fn load_state(app: &App, network_id: i64) -> Result<NetworkState, String> {
    let e = |e: sqlx::Error| e.to_string();
    let network = sqlx::query(&format!(
        "SELECT {NETWORK_COLUMNS} FROM networks n JOIN network_offerings o ON o.id = n.offering_id \
         WHERE n.id = $1"
    ))
    .bind(network_id)
    .fetch_optional(app.db.pool())
    .await
    .map_err(e)?
    .map(|r| NetworkRow::from_row(&r))
    .transpose()
    .map_err(e)?;
    let rows = load_rows(app, network_id, None).await?;
    let segment = match rows.ips.first() {
        Some(ip) => store::segment(&app.db, ip.vlan_range_id).await?,
        None => None,
    };
    Ok(NetworkState {
        network,
        segment: segment.or(Some(PublicSegment {
            prefix_len: 24,
            gateway: None,
        })),
        ips: rows.ips,
        rules: rows.rules,
        members: rows.members,
        policies: rows.policies,
    })
}

/// Rows of a network: all of them, or those last changed by some jobs (and some rules by id).
#[derive(Default)]
struct Rows {
    ips: Vec<IpRow>,
    rules: Vec<Rule>,
    members: Vec<MemberRow>,
    policies: Vec<PolicyRow>,
}

/// Which rows to read: `None` for all of the network's, or those whose `job_id` is one of the
/// jobs, plus the rules with the given ids.
type Filter<'a> = Option<(&'a [i64], &'a [i64])>;

async fn load_rows(app: &App, network_id: i64, filter: Filter<'_>) -> Result<Rows, String> {
    let e = |e: sqlx::Error| e.to_string();
    let pool = app.db.pool();
    // The texts stay the same whatever the jobs, so the databases reuse their plans: the rows
    // of a range of job ids (by the job-id indexes), kept when their job is one of ours. Rows
    // of our jobs are our network's rows.
    let (ips_where, rules_where, members_where, policies_where, binds) = match filter {
        None => (
            "network_id = $1",
            "r.network_id = $1",
            "r.network_id = $1",
            "r.network_id = $1",
            vec![network_id],
        ),
        Some((jobs, _)) => (
            "job_id BETWEEN $1 AND $2",
            "r.job_id BETWEEN $1 AND $2",
            "m.job_id BETWEEN $1 AND $2",
            "p.job_id BETWEEN $1 AND $2",
            vec![
                jobs.iter().copied().min().unwrap_or(0),
                jobs.iter().copied().max().unwrap_or(-1),
            ],
        ),
    };
    let ours = |job: Option<i64>| match filter {
        None => true,
        Some((jobs, _)) => job.is_some_and(|j| jobs.contains(&j)),
    };
    let fetch = |sql: String| {
        let binds = binds.clone();
        async move {
            let mut q = sqlx::query(&sql);
            for b in binds {
                q = q.bind(b);
            }
            q.fetch_all(pool).await
        }
    };
    let mut ips: Vec<IpRow> = fetch(format!(
        "SELECT {IP_COLUMNS} FROM public_ips WHERE {ips_where} ORDER BY id"
    ))
    .await
    .map_err(e)?
    .iter()
    .map(IpRow::from_row)
    .collect::<Result<_, _>>()
    .map_err(e)?;
    ips.retain(|r| ours(r.job_id));
    let mut rules: Vec<Rule> = fetch(format!(
        "SELECT {RULE_COLUMNS} FROM {RULE_FROM} WHERE {rules_where} ORDER BY r.id"
    ))
    .await
    .map_err(e)?
    .iter()
    .map(Rule::from_row)
    .collect::<Result<_, _>>()
    .map_err(e)?;
    rules.retain(|r| ours(r.job_id));
    if let Some((_, updated)) = filter {
        for id in updated {
            let row = sqlx::query(&format!(
                "SELECT {RULE_COLUMNS} FROM {RULE_FROM} WHERE r.id = $1"
            ))
            .bind(*id)
            .fetch_optional(pool)
            .await
            .map_err(e)?;
            if let Some(row) = row {
                let rule = Rule::from_row(&row).map_err(e)?;
                rules.retain(|r| r.id != rule.id);
                rules.push(rule);
            }
        }
        rules.sort_by_key(|r| r.id);
    }
    let mut members: Vec<MemberRow> = fetch(format!(
        "SELECT m.id, m.lb_id, m.vm_id, m.vm_ip, m.state, m.applied, m.job_id \
         FROM lb_members m JOIN rules r ON r.id = m.lb_id WHERE {members_where} ORDER BY m.id"
    ))
    .await
    .map_err(e)?
    .iter()
    .map(MemberRow::from_row)
    .collect::<Result<_, _>>()
    .map_err(e)?;
    members.retain(|r| ours(r.job_id));
    let cols = POLICY_COLUMNS
        .split(", ")
        .map(|c| format!("p.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut policies: Vec<PolicyRow> = fetch(format!(
        "SELECT {cols} FROM lb_policies p JOIN rules r ON r.id = p.lb_id \
         WHERE {policies_where} ORDER BY p.id"
    ))
    .await
    .map_err(e)?
    .iter()
    .map(PolicyRow::from_row)
    .collect::<Result<_, _>>()
    .map_err(e)?;
    policies.retain(|r| ours(r.job_id));
    Ok(Rows {
        ips,
        rules,
        members,
        policies,
    })
}

/// A worker's copy of its network's rows, kept current without reading every row for every
/// generation: only the rows the pending jobs changed are read again, and what the worker
/// itself records is applied to the copy as it is written.
///
/// The rows every change carries its job in `job_id` (rule, member, policy and IP writes all
/// set it); updates rewrite a rule in place, so their rule is read again by id. Anything
/// unexpected (a refused job, an error) drops the copy, and the next step reads everything.
#[derive(Default)]
struct Cache {
    state: Option<NetworkState>,
}

impl Cache {
    async fn current(
        &mut self,
        app: &App,
        network_id: i64,
        pending: &[PendingJob],
    ) -> Result<&NetworkState, String> {
        match self.state.take() {
            None => self.state = Some(load_state(app, network_id).await?),
            Some(mut state) => {
                let jobs: Vec<i64> = pending.iter().map(|j| j.id).collect();
                let updated: Vec<i64> = pending
                    .iter()
                    .filter_map(|j| j.payload.undo.as_ref().map(|u| u.rule_id))
                    .collect();
                let fresh = load_rows(app, network_id, Some((&jobs, &updated))).await?;
                merge(&mut state.ips, fresh.ips, |r| r.id);
                merge(&mut state.rules, fresh.rules, |r| r.id);
                merge(&mut state.members, fresh.members, |r| r.id);
                merge(&mut state.policies, fresh.policies, |r| r.id);
                self.state = Some(state);
            }
        }
        self.state.as_ref().ok_or_else(|| "no state".to_string())
    }

    fn committed(&mut self, commit: &plan::Commit) {
        if let Some(state) = &mut self.state {
            plan::apply_commit(state, commit);
        }
    }

    fn drop_copy(&mut self) {
        self.state = None;
    }
}

/// In debug builds (the tests), compares the worker's copy with a fresh read of every row: the
/// configs planned from both must be equal, leaving out rows of jobs still pending (which the
/// copy reads when it takes them up).
#[cfg(debug_assertions)]
async fn check_copy(app: &App, network_id: i64, cache: &Cache) -> Result<(), String> {
    let Some(copy) = &cache.state else {
        return Ok(());
    };
    let full = load_state(app, network_id).await?;
    if full.network.is_none() {
        // Deleted with this batch: the worker ends.
        return Ok(());
    }
    let pending: BTreeSet<i64> = pending_jobs(app, network_id)
        .await?
        .iter()
        .map(|j| j.id)
        .collect();
    let busy = |job: Option<i64>| job.is_some_and(|j| pending.contains(&j));
    let skip_rules: BTreeSet<i64> = full
        .rules
        .iter()
        .filter(|r| busy(r.job_id))
        .map(|r| r.id)
        .collect();
    let skip_members: BTreeSet<i64> = full
        .members
        .iter()
        .filter(|r| busy(r.job_id))
        .map(|r| r.id)
        .collect();
    let skip_policies: BTreeSet<i64> = full
        .policies
        .iter()
        .filter(|r| busy(r.job_id))
        .map(|r| r.id)
        .collect();
    let skip_ips: BTreeSet<i64> = full
        .ips
        .iter()
        .filter(|r| busy(r.job_id))
        .map(|r| r.id)
        .collect();
    let settled = |s: &NetworkState| {
        let mut s = s.clone();
        s.rules
            .retain(|r| !skip_rules.contains(&r.id) && !busy(r.job_id));
        s.members
            .retain(|r| !skip_members.contains(&r.id) && !busy(r.job_id));
        s.policies
            .retain(|r| !skip_policies.contains(&r.id) && !busy(r.job_id));
        s.ips
            .retain(|r| !skip_ips.contains(&r.id) && !busy(r.job_id));
        plan::desired(&s, &Batch::default(), 0).0
    };
    let (mine, theirs) = (settled(copy), settled(&full));
    if mine != theirs {
        tracing::error!(network = network_id, copy = ?mine, database = ?theirs,
            "the worker's copy of the network differs from the database");
        debug_assert!(
            false,
            "the worker's copy of network {network_id} differs from the database"
        );
    }
    Ok(())
}

/// Replaces rows of `old` by id with `fresh` ones (adding new ones), keeping id order; each
/// row is found by binary search, so a step costs what changed, not what the network holds.
fn merge<T>(old: &mut Vec<T>, fresh: Vec<T>, id: impl Fn(&T) -> i64) {
    for r in fresh {
        let key = id(&r);
        match old.binary_search_by_key(&key, &id) {
            Ok(i) => old[i] = r,
            Err(i) => old.insert(i, r),
        }
    }
}

/// Builds the config of `batch`, has the router apply it, and returns the bookkeeping.
async fn push(app: &App, state: &NetworkState, batch: &Batch) -> Result<plan::Commit, String> {
    let network = state.network.as_ref().ok_or("the network is gone")?;
    let t0 = Instant::now();
    let (router, generation) = store::next_generation(&app.db, network.id).await?;
    let t1 = Instant::now();
    let (config, commit) = plan::desired(state, batch, generation);
    let started = Instant::now();
    let outcome = app.driver.apply(&router, config).await;
    let applied = started.elapsed();
    app.metrics.apply_seconds.observe(applied.as_secs_f64());
    tracing::debug!(
        %router,
        generation,
        jobs = batch.included.len(),
        rules = state.rules.len(),
        counter_us = (t1 - t0).as_micros() as u64,
        plan_us = (started - t1).as_micros() as u64,
        apply_us = applied.as_micros() as u64,
        "pushed a generation"
    );
    let label = match &outcome {
        Ok(Applied::Generation(_)) => "applied",
        Ok(Applied::Superseded(_)) => "superseded",
        Err(_) => "refused",
    };
    app.metrics
        .applies
        .get_or_create(&ApplyLabels {
            result: label.into(),
        })
        .inc();
    match outcome {
        Ok(Applied::Generation(g)) => {
            store::record_applied(&app.db, network.id, g, None).await?;
            app.metrics
                .generations_behind
                .get_or_create(&RouterLabels { router })
                .set(0);
            Ok(commit)
        }
        Ok(Applied::Superseded(held)) => {
            // The router holds a newer generation than this database knows of (e.g. a data
            // directory restored from backup): move the counter past it and try again later.
            store::bump_generation(&app.db, network.id, held).await?;
            Err(format!(
                "router {router} holds generation {held}, newer than {generation}; will re-send"
            ))
        }
        Err(reason) => {
            store::record_applied(&app.db, network.id, 0, Some(&reason)).await?;
            app.metrics
                .generations_behind
                .get_or_create(&RouterLabels { router })
                .inc();
            Err(reason)
        }
    }
}

async fn run_changes(
    app: &App,
    network_id: i64,
    pending: &[PendingJob],
    jobs: Vec<PendingJob>,
    cache: &mut Cache,
) -> Result<(), String> {
    let mut remaining = jobs;
    let mut pending: Vec<PendingJob> = pending.to_vec();
    let mut resync = false;
    while !remaining.is_empty() {
        let t = Instant::now();
        let state = cache.current(app, network_id, &pending).await?;
        tracing::debug!(
            network = network_id,
            read_us = t.elapsed().as_micros() as u64,
            "read the network's changed rows"
        );
        let pending_ids: BTreeSet<i64> = pending.iter().map(|j| j.id).collect();
        let mut done = false;
        for m in (1..=remaining.len()).rev() {
            let batch = Batch {
                pending: pending_ids.clone(),
                included: remaining[..m].iter().map(|j| j.id).collect(),
            };
            match push(app, state, &batch).await {
                Ok(commit) => {
                    let carried: Vec<PendingJob> = remaining.drain(..m).collect();
                    let t = Instant::now();
                    succeed(app, network_id, &commit, &carried).await?;
                    tracing::debug!(
                        network = network_id,
                        jobs = carried.len(),
                        record_us = t.elapsed().as_micros() as u64,
                        "recorded a generation"
                    );
                    cache.committed(&commit);
                    #[cfg(debug_assertions)]
                    check_copy(app, network_id, cache).await?;
                    pending.retain(|p| !carried.iter().any(|c| c.id == p.id));
                    done = true;
                    break;
                }
                Err(reason) if m == 1 => {
                    let job = remaining.remove(0);
                    pending.retain(|p| p.id != job.id);
                    fail(app, &job, &reason).await?;
                    cache.drop_copy();
                    // An update writes its values in place, so a generation made for an
                    // earlier job may already carry them; after the undo, the router gets the
                    // old values back.
                    resync |= job.kind == Kind::Update;
                    done = true;
                    break;
                }
                Err(reason) => {
                    tracing::info!(network = network_id, jobs = m, %reason,
                        "router refused a coalesced generation; retrying without the newest job");
                }
            }
        }
        if !done {
            break;
        }
    }
    if resync {
        let state = cache.current(app, network_id, &pending).await?;
        let batch = Batch {
            pending: pending.iter().map(|j| j.id).collect(),
            included: BTreeSet::new(),
        };
        match push(app, state, &batch).await {
            Ok(commit) => record(app, &commit, cache).await?,
            Err(reason) => {
                tracing::warn!(network = network_id, %reason, "re-sync after a refused update failed");
            }
        }
    }
    Ok(())
}

/// Records a commit that carried no job (a re-sync).
async fn record(app: &App, commit: &plan::Commit, cache: &mut Cache) -> Result<(), String> {
    let e = |e: sqlx::Error| e.to_string();
    {
        let _w = app.db.write_lock().await;
        let mut tx = app.db.pool().begin().await.map_err(e)?;
        store::apply_commit(&mut tx, commit).await.map_err(e)?;
        tx.commit().await.map_err(e)?;
    }
    cache.committed(commit);
    Ok(())
}

async fn succeed(
    app: &App,
    network_id: i64,
    commit: &plan::Commit,
    carried: &[PendingJob],
) -> Result<(), String> {
    let e = |e: sqlx::Error| e.to_string();
    let _w = app.db.write_lock().await;
    let mut tx = app.db.pool().begin().await.map_err(e)?;
    store::apply_commit(&mut tx, commit).await.map_err(e)?;
    let deleting_network = carried.iter().any(|j| j.kind == Kind::DeleteNetwork);
    let doomed_vms = if deleting_network {
        store::network_vms(&mut tx, network_id).await.map_err(e)?
    } else {
        Vec::new()
    };
    tx.commit().await.map_err(e)?;
    drop(_w);
    let router = if deleting_network {
        store::router_name_of(&app.db, network_id).await?
    } else {
        None
    };
    for job in carried {
        match (job.kind, job.payload.target) {
            (Kind::DestroyVm, Some(vm_id)) => {
                if let Some(name) = store::vm_name(&app.db, vm_id).await? {
                    if let Err(err) = app.driver.remove_vm(&name).await {
                        tracing::warn!(vm = %name, error = %err, "removing the VM failed");
                    }
                }
                store::delete_vm(&app.db, vm_id).await?;
            }
            (Kind::DeleteNetwork, _) => {
                for (_, name) in &doomed_vms {
                    if let Err(err) = app.driver.remove_vm(name).await {
                        tracing::warn!(vm = %name, error = %err, "removing the VM failed");
                    }
                }
                if let Some(router) = &router {
                    if let Err(err) = app.driver.remove_router(router).await {
                        tracing::warn!(%router, error = %err, "removing the router failed");
                    }
                }
                store::delete_network(&app.db, network_id).await?;
            }
            _ => {}
        }
        let result = crate::cmd::job_result(app, &job.payload.outcome)
            .await
            .unwrap_or_else(|err| err.job_result());
        finish(app, job, jobs::SUCCEEDED, 0, &result).await?;
    }
    Ok(())
}

async fn fail(app: &App, job: &PendingJob, reason: &str) -> Result<(), String> {
    let e = |e: sqlx::Error| e.to_string();
    {
        let _w = app.db.write_lock().await;
        let mut tx = app.db.pool().begin().await.map_err(e)?;
        store::rollback_job(&mut tx, job.id, job.payload.undo.as_ref())
            .await
            .map_err(e)?;
        if let Some(undo) = &job.payload.undo {
            crate::cmd::firewall::store_json(&mut *tx, app.db.dialect(), undo.rule_id)
                .await
                .map_err(e)?;
        }
        tx.commit().await.map_err(e)?;
    }
    let err = ApiError::internal(format!("{}: {reason}", job.payload.failure));
    finish(app, job, jobs::FAILED, 530, &err.job_result()).await
}

async fn finish(
    app: &App,
    job: &PendingJob,
    status: i64,
    code: i64,
    result: &Value,
) -> Result<(), String> {
    let e = |e: sqlx::Error| e.to_string();
    {
        let _w = app.db.write_lock().await;
        let mut tx = app.db.pool().begin().await.map_err(e)?;
        jobs::finish(&mut tx, job.id, status, code, result)
            .await
            .map_err(e)?;
        let ok = status == jobs::SUCCEEDED;
        store::event(
            &mut tx,
            job.account_id,
            job.user_id,
            &job.payload.event,
            if ok { "INFO" } else { "ERROR" },
            "Completed",
            &if ok {
                format!("Successfully completed {}", job.payload.what)
            } else {
                format!(
                    "Error while {}: {}",
                    job.payload.what,
                    result["errortext"].as_str().unwrap_or("")
                )
            },
            None,
            None,
        )
        .await
        .map_err(e)?;
        tx.commit().await.map_err(e)?;
    }
    let secs = (now_ms() - job.created).max(0) as f64 / 1000.0;
    app.metrics
        .job_seconds
        .get_or_create(&JobLabels {
            command: job.command.clone(),
            result: if status == jobs::SUCCEEDED {
                "succeeded".into()
            } else {
                "failed".into()
            },
        })
        .observe(secs);
    Ok(())
}

async fn deploy_vm(app: &App, network_id: i64, job: PendingJob) -> Result<(), String> {
    let Outcome::Vm { id } = job.payload.outcome else {
        return finish(app, &job, jobs::SUCCEEDED, 0, &json!({"success": true})).await;
    };
    let vm = store::vm_for_deploy(&app.db, id).await?;
    let result = match vm {
        None => Err("the VM is gone".to_string()),
        Some((name, ip)) => {
            let router = store::router_name_of(&app.db, network_id)
                .await?
                .ok_or("the network has no router")?;
            let net = crate::cmd::network_by_id(app, network_id)
                .await
                .map_err(|e| e.text)?;
            match app
                .driver
                .ensure_router(&router, net.cidr, net.gateway)
                .await
            {
                Ok(()) => app.driver.ensure_vm(&router, &name, ip).await,
                Err(e) => Err(e),
            }
        }
    };
    match result {
        Ok(()) => {
            store::set_vm_state(&app.db, id, "Running").await?;
            let result = crate::cmd::job_result(app, &job.payload.outcome)
                .await
                .unwrap_or_else(|err| err.job_result());
            finish(app, &job, jobs::SUCCEEDED, 0, &result).await
        }
        Err(reason) => {
            store::delete_vm(&app.db, id).await?;
            let err = ApiError::internal(format!("{}: {reason}", job.payload.failure));
            finish(app, &job, jobs::FAILED, 530, &err.job_result()).await
        }
    }
}

/// Starts workers for every network (they re-sync their routers), and brings back the VMs and
/// routers of the lab after a restart.
///
/// # Errors
/// The database's error, as text.
pub async fn start(app: &App) -> Result<(), String> {
    let networks = store::all_networks(&app.db).await?;
    for (id, router, cidr, gateway) in &networks {
        if let Err(e) = app.driver.ensure_router(router, *cidr, *gateway).await {
            tracing::warn!(%router, error = %e, "cannot bring the router back");
        }
        for (name, ip) in store::running_vms(&app.db, *id).await? {
            if let Err(e) = app.driver.ensure_vm(router, &name, ip).await {
                tracing::warn!(vm = %name, error = %e, "cannot bring the VM back");
            }
        }
        app.doorbell.ring(app, *id);
    }
    Ok(())
}

/// Brings a new network's router up and gives it its first config; returns when it holds it.
///
/// # Errors
/// The agent's or the database's reason.
pub async fn implement(app: &App, network_id: i64) -> Result<(), String> {
    let state = load_state(app, network_id).await?;
    let net = state.network.clone().ok_or("the network is gone")?;
    let router = store::router_name_of(&app.db, network_id)
        .await?
        .ok_or("the network has no router")?;
    app.driver
        .ensure_router(&router, net.cidr, net.gateway)
        .await?;
    let commit = push(app, &state, &Batch::default()).await?;
    let e = |e: sqlx::Error| e.to_string();
    let _w = app.db.write_lock().await;
    let mut tx = app.db.pool().begin().await.map_err(e)?;
    store::apply_commit(&mut tx, &commit).await.map_err(e)?;
    tx.commit().await.map_err(e)
}
