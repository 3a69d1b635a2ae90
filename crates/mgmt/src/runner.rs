//! The job runner: one worker per network, level-triggered.
//!
//! A worker runs on the server that holds the connection of its router's host (see
//! [`crate::hosts`]). It wakes when a request rings its network's doorbell — here, or through
//! the database from another server — and every few seconds anyway, reads the network's
//! pending jobs, and carries as many as it can in one router generation: it builds the
//! network's complete config with their changes ([`domain::plan`]), has the host's agent apply
//! it, and only then records the outcome (rules Active, revoked rows removed, jobs succeeded,
//! the generation the router confirmed) in one transaction, fenced by the host's epoch. If the
//! router refuses a batch, it retries without the newest job, down to a single job, so that
//! each job gets its own outcome; a job the router refuses on its own is undone and fails with
//! 530 and the router's reason. A router that does not answer within the apply timeout fails
//! the batch's jobs with that reason; a lost connection fails nothing — the jobs wait for the
//! agent to come back, here or on another server.
//!
//! Level-triggered: whenever a worker starts (a server start, an agent connecting) and
//! whenever it is idle, it compares the generation the router holds with the one the database
//! says it confirmed, and re-sends the complete config when they differ or the last apply
//! failed. Jobs survive any restart: they stay pending in the database.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent::proto::{Answer, Applied, Op};
use api_types::error::ApiError;
use router_config::{RouterConfig, RouterDelta};
use serde_json::{json, Value};
use sqlx::Row;
use tokio::sync::Notify;

use crate::app::App;
use crate::hosts::CallError;
use crate::metrics::{ApplyLabels, JobLabels, RouterLabels};
use domain::job::JobStatus;
use domain::job::{Kind, Outcome, Payload};
use domain::model::{IpRow, MemberRow, PolicyRow, Rule};
use domain::plan::{self, Batch, NetworkState, PublicSegment};
use store::db::now_ms;
use store::hosts::Fence;
use store::routers::RouterRow;
use store::rules::{IP_COLUMNS, NETWORK_COLUMNS, POLICY_COLUMNS, RULE_COLUMNS, RULE_FROM};
use store::{Receipt, StoreError};

/// A store or database error as the text a job's failure and the logs carry.
fn text(e: impl std::error::Error) -> String {
    crate::app::chain(&e)
}

/// Most jobs carried by one generation (bounds the retries when a batch is refused).
const MAX_BATCH: usize = 64;

/// How often a worker looks at its network even when nobody rang.
const IDLE_CHECK: Duration = Duration::from_secs(5);

/// Wakes network workers; starts them on first use.
#[derive(Clone, Default)]
pub struct Doorbell {
    bells: Arc<Mutex<HashMap<i64, Arc<Notify>>>>,
    /// Each network's router's host (fixed when the network is made).
    hosts: Arc<Mutex<HashMap<i64, String>>>,
    /// While set, workers take no jobs (jobs wait, pending, in the database).
    held: Arc<std::sync::atomic::AtomicBool>,
    /// Whether workers compare their copy with a full read after every generation.
    copy_check: CopyCheck,
}

/// Whether workers check their copy of the network's rows against a full read after each
/// generation they record: on in debug builds (the tests), off in release builds unless asked
/// for (`guestnet serve --check-copy`), because the full read is what the copy saves.
#[derive(Clone)]
struct CopyCheck(Arc<std::sync::atomic::AtomicBool>);

impl Default for CopyCheck {
    fn default() -> Self {
        CopyCheck(Arc::new(std::sync::atomic::AtomicBool::new(cfg!(
            debug_assertions
        ))))
    }
}

impl Doorbell {
    /// Rings the workers of the networks a committed change names (its [`Receipt`]).
    pub fn ring(&self, app: &App, receipt: Receipt) {
        for network in receipt.networks {
            self.ring_network(app, network.get());
        }
    }

    /// Rings `network_id`'s worker: here when this server holds the router's host, otherwise
    /// through the database for the server that does. Handlers that commit through a
    /// [`store::ChangeTx`] ring with its receipt ([`Doorbell::ring`]) instead.
    pub fn ring_network(&self, app: &App, network_id: i64) {
        let known = self
            .hosts
            .lock()
            .ok()
            .and_then(|h| h.get(&network_id).cloned());
        if let Some(host) = &known {
            if app.hosts.epoch(host).is_some() {
                self.ring_here(app, network_id);
                return;
            }
        }
        let app = app.clone();
        tokio::spawn(async move {
            let host = match known {
                Some(h) => Some(h),
                None => app.doorbell.host_of(&app, network_id).await,
            };
            match host {
                Some(h) if app.hosts.epoch(&h).is_some() => {
                    app.doorbell.ring_here(&app, network_id)
                }
                _ => {
                    if let Err(e) = app.db.ring_others(network_id).await {
                        tracing::warn!(network = network_id, error = %e,
                            "cannot ring the other servers; their runners look again within seconds");
                    }
                }
            }
        });
    }

    async fn host_of(&self, app: &App, network_id: i64) -> Option<String> {
        let host = store::routers::router_of(&app.db, network_id)
            .await
            .ok()??
            .host;
        if let Ok(mut h) = self.hosts.lock() {
            h.insert(network_id, host.clone());
        }
        Some(host)
    }

    /// Rings the worker of `network_id` on this server, starting it if needed (it ends at once
    /// when the router's host is not connected here).
    pub fn ring_here(&self, app: &App, network_id: i64) {
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
            self.ring_here(app, n);
        }
    }

    fn is_held(&self) -> bool {
        self.held.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Turns the workers' copy check on or off (see [`Doorbell::checks_copy`]).
    pub fn check_copy(&self, on: bool) {
        self.copy_check
            .0
            .store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether workers compare their copy of the network's rows with a full read after every
    /// generation they record; a difference is counted (`worker_copy_mismatches`), logged, the
    /// copy dropped and the router sent the config of a full read. On by default in debug
    /// builds.
    pub fn checks_copy(&self) -> bool {
        self.copy_check.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn forget(&self, network_id: i64) {
        if let Ok(mut bells) = self.bells.lock() {
            bells.remove(&network_id);
        }
    }
}

/// Rings the workers of every network whose router runs on `host` (its agent just connected).
pub async fn ring_host(app: &App, host: &str) {
    match store::routers::networks_on(&app.db, host).await {
        Ok(networks) => {
            for n in networks {
                if let Ok(mut h) = app.doorbell.hosts.lock() {
                    h.insert(n, host.to_string());
                }
                app.doorbell.ring_here(app, n);
            }
        }
        Err(e) => tracing::warn!(%host, error = %e, "cannot list the host's networks"),
    }
}

/// Rings this server's workers when another server rings through the database (PostgreSQL);
/// runs for the server's life.
pub async fn listen(app: App) {
    loop {
        let mut listener = match app.db.listen().await {
            Ok(Some(l)) => l,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for other servers' rings; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        loop {
            match listener.recv().await {
                Ok(n) => {
                    if let Ok(network_id) = n.payload().parse::<i64>() {
                        let host = app.doorbell.host_of(&app, network_id).await;
                        if host.is_some_and(|h| app.hosts.epoch(&h).is_some()) {
                            app.doorbell.ring_here(&app, network_id);
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "lost the listener's connection; reconnecting");
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
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
    // A fresh worker makes sure its router and VMs exist and that the router holds the latest
    // config (a restart of either side, an agent that connected again).
    let mut fresh = true;
    let mut cache = Cache::default();
    let mut sent = Sent::default();
    loop {
        if fresh {
            sent.forget();
        }
        match step(&app, network_id, fresh, &mut cache, &mut sent).await {
            Ok(Continue::Idle) => fresh = false,
            Ok(Continue::Held) => {}
            Ok(Continue::More) => {
                fresh = false;
                continue;
            }
            Ok(Continue::Again) => {
                // The agent went away mid-step: look again soon, from the start.
                fresh = true;
                cache.drop_copy();
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Ok(Continue::Gone) => {
                app.doorbell.forget(network_id);
                return;
            }
            Err(e) => {
                cache.drop_copy();
                fresh = true;
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
    /// The agent was lost or left: start over shortly.
    Again,
    /// The network is gone, or its host is not connected here: the worker ends.
    Gone,
}

/// Why a generation was not applied.
#[derive(Debug)]
enum PushError {
    /// The router refused the config.
    Refused(String),
    /// The router did not answer in time.
    TimedOut(String),
    /// The agent is not connected (any more), or the router holds something newer: nothing is
    /// known about this generation, and it is sent again later.
    Unavailable(String),
}

impl std::fmt::Display for PushError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PushError::Refused(r) | PushError::TimedOut(r) | PushError::Unavailable(r) => {
                f.write_str(r)
            }
        }
    }
}

fn unavailable(e: CallError) -> Result<Continue, String> {
    tracing::info!(error = %e, "the router's agent is not reachable from here now");
    Ok(Continue::Again)
}

/// The config the router confirmed last, as far as this worker knows: the base of the next
/// generation's delta. Forgotten whenever what the router holds is in doubt.
#[derive(Default)]
struct Sent(Option<RouterConfig>);

impl Sent {
    fn forget(&mut self) {
        self.0 = None;
    }
}

async fn step(
    app: &App,
    network_id: i64,
    fresh: bool,
    cache: &mut Cache,
    sent: &mut Sent,
) -> Result<Continue, String> {
    if app.doorbell.is_held() {
        return Ok(Continue::Held);
    }
    let Some(router) = store::routers::router_of(&app.db, network_id)
        .await
        .map_err(text)?
    else {
        return Ok(Continue::Gone);
    };
    let Some(epoch) = app.hosts.epoch(&router.host) else {
        return Ok(Continue::Gone);
    };
    let fence = Fence::Owner {
        host: router.host.clone(),
        epoch,
        server_id: app.hosts.server_id(),
    };
    match router.state.as_str() {
        "Starting" => {
            implement(app, network_id, &router, &fence, sent).await?;
            return Ok(Continue::More);
        }
        // A router that could not start: createNetwork removes its network; nothing to do.
        "Error" => return Ok(Continue::Idle),
        _ => {}
    }
    if fresh {
        if let Err(e) = ensure_host_objects(app, network_id, &router).await {
            return match e {
                CallError::NotConnected(_) | CallError::Lost(_) => unavailable(e),
                e => Err(e.to_string()),
            };
        }
    }
    let pending = pending_jobs(app, network_id).await?;
    let Some(first) = pending.first() else {
        let held = match app
            .hosts
            .call(
                &router.host,
                Op::Held {
                    router: router.name.clone(),
                },
            )
            .await
        {
            Ok(Answer::Held { generation }) => generation,
            Ok(other) => return Err(format!("the agent answered {other:?} to held")),
            Err(e @ (CallError::NotConnected(_) | CallError::Lost(_))) => return unavailable(e),
            Err(e) => return Err(e.to_string()),
        };
        let holds_latest =
            held.is_some_and(|g| i64::try_from(g).is_ok_and(|g| g == router.applied));
        if !holds_latest || router.last_error.is_some() {
            tracing::info!(network = network_id, router = %router.name, ?held,
                applied = router.applied, last_error = ?router.last_error,
                "the router lacks the latest config; sending it again");
            cache.drop_copy();
            let state = cache.current(app, network_id, &[]).await?;
            sent.forget();
            match push(app, state, &Batch::default(), sent).await {
                Ok(pushed) => record(app, &pushed, &fence, cache).await?,
                Err(PushError::Unavailable(r)) => {
                    tracing::info!(network = network_id, reason = %r, "re-sync postponed");
                    return Ok(Continue::Again);
                }
                Err(e) => {
                    tracing::warn!(network = network_id, error = %e, "re-sync of the router failed");
                }
            }
        }
        return Ok(Continue::Idle);
    };
    let all = pending.clone();
    let outcome = match first.kind {
        Kind::Change => {
            let batch: Vec<PendingJob> = pending
                .iter()
                .take_while(|j| j.kind == Kind::Change)
                .take(MAX_BATCH)
                .cloned()
                .collect();
            run_changes(app, network_id, &all, batch, &fence, cache, sent).await?
        }
        Kind::Update | Kind::DestroyVm | Kind::DeleteNetwork => {
            let job = first.clone();
            run_changes(app, network_id, &all, vec![job], &fence, cache, sent).await?
        }
        Kind::DeployVm => {
            let job = first.clone();
            deploy_vm(app, network_id, &router, job, &fence).await?
        }
    };
    Ok(outcome)
}

/// Makes sure the router and the network's running VMs exist on the host (after a restart of
/// the host or the server).
async fn ensure_host_objects(
    app: &App,
    network_id: i64,
    router: &RouterRow,
) -> Result<(), CallError> {
    let net = crate::cmd::network_by_id(app, network_id)
        .await
        .map_err(|e| CallError::Refused(e.text))?;
    app.hosts
        .call(
            &router.host,
            Op::EnsureRouter {
                router: router.name.clone(),
                cidr: net.cidr,
                gateway: net.gateway,
            },
        )
        .await?;
    let vms = store::vms::running_vms(&app.db, network_id)
        .await
        .map_err(|e| CallError::Refused(text(e)))?;
    for vm in vms {
        app.hosts
            .call(
                &router.host,
                Op::EnsureVm {
                    router: router.name.clone(),
                    vm: vm.key,
                    ip: vm.ip,
                    label: Some(lab::VmLabel {
                        name: vm.name,
                        account: vm.account,
                        network: vm.network,
                    }),
                },
            )
            .await?;
    }
    Ok(())
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
    rows.iter().map(pending_from_row).collect()
}

fn pending_from_row(r: &sqlx::any::AnyRow) -> Result<PendingJob, String> {
    let payload: String = r.try_get("payload").map_err(|e| e.to_string())?;
    Ok(PendingJob {
        id: r.try_get("id").map_err(|e| e.to_string())?,
        command: r.try_get("cmd").map_err(|e| e.to_string())?,
        kind: r
            .try_get::<String, _>("kind")
            .map_err(|e| e.to_string())?
            .parse()
            .map_err(|e: domain::UnknownValue| e.to_string())?,
        payload: serde_json::from_str(&payload).map_err(|e| e.to_string())?,
        created: r.try_get("created").map_err(|e| e.to_string())?,
        account_id: r.try_get("account_id").map_err(|e| e.to_string())?,
        user_id: r.try_get("user_id").map_err(|e| e.to_string())?,
    })
}

/// Reads everything the network's router config is built from.
///
/// # Errors
/// The database's error, as text.
pub async fn load_state(app: &App, network_id: i64) -> Result<NetworkState, String> {
    read_state(&app.db, network_id).await
}

/// [`load_state`] from a database handle alone (`guestnet verify`).
///
/// # Errors
/// The database's error, as text.
pub async fn read_state(db: &store::db::Db, network_id: i64) -> Result<NetworkState, String> {
    let network = sqlx::query(&format!(
        "SELECT {NETWORK_COLUMNS} FROM networks n JOIN network_offerings o ON o.id = n.offering_id \
         WHERE n.id = $1"
    ))
    .bind(network_id)
    .fetch_optional(db.pool())
    .await
    .map_err(text)?
    .map(|r| store::rules::network(&r))
    .transpose()
    .map_err(text)?;
    let rows = load_rows(db, network_id, None).await?;
    let segment = match rows.ips.first() {
        Some(ip) => store::addresses::segment(db, ip.vlan_range_id)
            .await
            .map_err(text)?,
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
/// jobs.
type Filter<'a> = Option<&'a [i64]>;

async fn load_rows(
    db: &store::db::Db,
    network_id: i64,
    filter: Filter<'_>,
) -> Result<Rows, String> {
    let pool = db.pool();
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
        Some(jobs) => (
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
        Some(jobs) => job.is_some_and(|j| jobs.contains(&j)),
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
    .map_err(text)?
    .iter()
    .map(store::rules::ip)
    .collect::<Result<_, _>>()
    .map_err(text)?;
    ips.retain(|r| ours(r.job_id));
    let mut rules: Vec<Rule> = fetch(format!(
        "SELECT {RULE_COLUMNS} FROM {RULE_FROM} WHERE {rules_where} ORDER BY r.id"
    ))
    .await
    .map_err(text)?
    .iter()
    .map(store::rules::rule)
    .collect::<Result<_, _>>()
    .map_err(text)?;
    rules.retain(|r| ours(r.job_id));
    let mut members: Vec<MemberRow> = fetch(format!(
        "SELECT m.id, m.lb_id, m.vm_id, m.vm_ip, m.state, m.applied, m.job_id \
         FROM lb_members m JOIN rules r ON r.id = m.lb_id WHERE {members_where} ORDER BY m.id"
    ))
    .await
    .map_err(text)?
    .iter()
    .map(store::rules::member)
    .collect::<Result<_, _>>()
    .map_err(text)?;
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
    .map_err(text)?
    .iter()
    .map(store::rules::policy)
    .collect::<Result<_, _>>()
    .map_err(text)?;
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
/// Every write a router sees carries its job in the row's `job_id`: rule, member, policy and IP
/// rows written by creations, deletions and updates alike (an update marks the rule it
/// rewrites). So the rows of the pending jobs are all a step needs to read. Writes that are
/// not marked change nothing a config is planned from (names, descriptions, display flags).
/// Anything unexpected (a refused job, an error, a copy check that found a difference) drops
/// the copy, and the next step reads everything.
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
                let fresh = load_rows(&app.db, network_id, Some(&jobs)).await?;
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

/// Compares the worker's copy with a full read of every row: the configs planned from both
/// must be equal, leaving out rows of jobs still pending (which the copy reads when it takes
/// them up). Returns both configs when they differ.
async fn copy_differs(
    app: &App,
    network_id: i64,
    cache: &Cache,
) -> Result<Option<(RouterConfig, RouterConfig)>, String> {
    let Some(copy) = &cache.state else {
        return Ok(None);
    };
    let full = load_state(app, network_id).await?;
    if full.network.is_none() {
        // Deleted with this batch: the worker ends.
        return Ok(None);
    }
    let pending: BTreeSet<i64> = pending_jobs(app, network_id)
        .await?
        .iter()
        .map(|j| j.id)
        .collect();
    let busy = |job: Option<i64>| job.is_some_and(|j| pending.contains(&j));
    // Rows a pending job wrote, by id as the database has them now: the copy may still hold
    // their earlier version, which the check leaves out too.
    fn busy_ids<T>(
        rows: &[T],
        key: fn(&T) -> (i64, Option<i64>),
        busy: &dyn Fn(Option<i64>) -> bool,
    ) -> BTreeSet<i64> {
        rows.iter()
            .map(key)
            .filter(|(_, job)| busy(*job))
            .map(|(id, _)| id)
            .collect()
    }
    fn settle<T>(
        rows: &mut Vec<T>,
        skip: &BTreeSet<i64>,
        key: fn(&T) -> (i64, Option<i64>),
        busy: &dyn Fn(Option<i64>) -> bool,
    ) {
        rows.retain(|r| {
            let (id, job) = key(r);
            !skip.contains(&id) && !busy(job)
        });
    }
    let rule_key: fn(&Rule) -> (i64, Option<i64>) = |r| (r.id, r.job_id);
    let member_key: fn(&MemberRow) -> (i64, Option<i64>) = |r| (r.id, r.job_id);
    let policy_key: fn(&PolicyRow) -> (i64, Option<i64>) = |r| (r.id, r.job_id);
    let ip_key: fn(&IpRow) -> (i64, Option<i64>) = |r| (r.id, r.job_id);
    let skip_rules = busy_ids(&full.rules, rule_key, &busy);
    let skip_members = busy_ids(&full.members, member_key, &busy);
    let skip_policies = busy_ids(&full.policies, policy_key, &busy);
    let skip_ips = busy_ids(&full.ips, ip_key, &busy);
    let settled = |s: &NetworkState| {
        let mut s = s.clone();
        settle(&mut s.rules, &skip_rules, rule_key, &busy);
        settle(&mut s.members, &skip_members, member_key, &busy);
        settle(&mut s.policies, &skip_policies, policy_key, &busy);
        settle(&mut s.ips, &skip_ips, ip_key, &busy);
        plan::desired(&s, &Batch::default(), 0).0
    };
    let (mine, theirs) = (settled(copy), settled(&full));
    Ok((mine != theirs).then_some((mine, theirs)))
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

/// A generation the router confirmed, and what recording it changes.
struct Pushed {
    commit: plan::Commit,
    network_id: i64,
    generation: u64,
}

/// Builds the config of `batch`, has the router's agent apply it — as a delta against the
/// config the router confirmed last when that is known, complete otherwise — and returns what
/// to record.
async fn push(
    app: &App,
    state: &NetworkState,
    batch: &Batch,
    sent: &mut Sent,
) -> Result<Pushed, PushError> {
    let network = state
        .network
        .as_ref()
        .ok_or_else(|| PushError::Unavailable("the network is gone".into()))?;
    let t0 = Instant::now();
    let (router, host, generation) = store::routers::next_generation(&app.db, network.id)
        .await
        .map_err(|e| PushError::Unavailable(text(e)))?;
    let t1 = Instant::now();
    let (config, commit) = plan::desired(state, batch, generation);
    let started = Instant::now();
    let base = sent.0.take();
    let mut delta_rules = None;
    let mut outcome = match &base {
        Some(base) => {
            let delta = RouterDelta::between(base, &config);
            delta_rules = Some(delta.size());
            let op = Op::ApplyDelta {
                router: router.clone(),
                delta: Box::new(delta),
            };
            app.hosts.call(&host, op).await
        }
        None => Err(CallError::Stale(String::new())),
    };
    if let Err(CallError::Stale(why)) = &outcome {
        if base.is_some() {
            tracing::info!(%router, reason = %why, "the router lacks the delta's base; sending the whole config");
        }
        delta_rules = None;
        let op = Op::Apply {
            router: router.clone(),
            config: Box::new(config.clone()),
        };
        outcome = app.hosts.call(&host, op).await;
    }
    let applied = started.elapsed();
    app.metrics.apply_seconds.observe(applied.as_secs_f64());
    tracing::debug!(
        %router,
        generation,
        jobs = batch.included.len(),
        rules = state.rules.len(),
        delta = ?delta_rules,
        counter_us = (t1 - t0).as_micros() as u64,
        plan_us = (started - t1).as_micros() as u64,
        apply_us = applied.as_micros() as u64,
        "pushed a generation"
    );
    let label = match &outcome {
        Ok(Answer::Applied {
            outcome: Applied::Generation(_),
        }) => "applied",
        Ok(Answer::Applied {
            outcome: Applied::Superseded(_),
        }) => "superseded",
        Err(CallError::Refused(_)) => "refused",
        Err(CallError::TimedOut(_)) => "timed_out",
        _ => "unavailable",
    };
    app.metrics
        .applies
        .get_or_create(&ApplyLabels {
            result: label.into(),
        })
        .inc();
    let behind = app
        .metrics
        .generations_behind
        .get_or_create(&RouterLabels {
            router: router.clone(),
        })
        .clone();
    match outcome {
        Ok(Answer::Applied {
            outcome: Applied::Generation(g),
        }) => {
            behind.set(0);
            if g == config.generation {
                sent.0 = Some(config);
            }
            Ok(Pushed {
                commit,
                network_id: network.id,
                generation: g,
            })
        }
        Ok(Answer::Applied {
            outcome: Applied::Superseded(held),
        }) => {
            // The router holds a newer generation than this one: another server's, or one this
            // database forgot (a data directory restored from backup). Move the counter past
            // it; the next generation carries everything again.
            store::routers::bump_generation(&app.db, network.id, held)
                .await
                .map_err(|e| PushError::Unavailable(text(e)))?;
            Err(PushError::Unavailable(format!(
                "router {router} holds generation {held}, newer than {generation}; will re-send"
            )))
        }
        Ok(other) => Err(PushError::Unavailable(format!(
            "the agent answered {other:?} to an apply"
        ))),
        Err(CallError::Refused(reason)) => {
            // The router keeps what it held: the base stays.
            sent.0 = base;
            store::routers::record_failure(&app.db, network.id, &reason)
                .await
                .map_err(|e| PushError::Unavailable(text(e)))?;
            behind.inc();
            Err(PushError::Refused(reason))
        }
        Err(CallError::TimedOut(reason)) => {
            store::routers::record_failure(&app.db, network.id, &reason)
                .await
                .map_err(|e| PushError::Unavailable(text(e)))?;
            behind.inc();
            Err(PushError::TimedOut(reason))
        }
        Err(e @ (CallError::NotConnected(_) | CallError::Lost(_) | CallError::Stale(_))) => {
            Err(PushError::Unavailable(e.to_string()))
        }
    }
}

async fn run_changes(
    app: &App,
    network_id: i64,
    pending: &[PendingJob],
    jobs: Vec<PendingJob>,
    fence: &Fence,
    cache: &mut Cache,
    sent: &mut Sent,
) -> Result<Continue, String> {
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
            match push(app, state, &batch, sent).await {
                Ok(pushed) => {
                    let carried: Vec<PendingJob> = remaining.drain(..m).collect();
                    let t = Instant::now();
                    succeed(app, network_id, &pushed, &carried, fence).await?;
                    tracing::debug!(
                        network = network_id,
                        jobs = carried.len(),
                        record_us = t.elapsed().as_micros() as u64,
                        "recorded a generation"
                    );
                    cache.committed(&pushed.commit);
                    if app.doorbell.checks_copy() {
                        if let Some((copy, database)) = copy_differs(app, network_id, cache).await?
                        {
                            // Never a panic, and never another config planned from a wrong
                            // copy: count it, drop the copy, and send the router the config
                            // of a full read. The router's last error says so until then, so
                            // that an idle look re-sends it should this step end early.
                            app.metrics.copy_mismatches.inc();
                            store::routers::record_failure(
                                &app.db,
                                network_id,
                                "the worker's copy of the network differed from the database",
                            )
                            .await
                            .map_err(text)?;
                            tracing::error!(
                                network = network_id,
                                ?copy,
                                ?database,
                                "the worker's copy of the network differed from the database; \
                                 reading everything again and re-sending the router's config"
                            );
                            cache.drop_copy();
                            resync = true;
                        }
                    }
                    pending.retain(|p| !carried.iter().any(|c| c.id == p.id));
                    done = true;
                    break;
                }
                Err(PushError::Unavailable(reason)) => {
                    // Nothing known: the jobs stay pending for whoever reaches the router next.
                    tracing::info!(network = network_id, %reason, "generation not applied; jobs wait");
                    return Ok(Continue::Again);
                }
                Err(PushError::TimedOut(reason)) => {
                    // The router did not answer: the batch's jobs fail with that reason, and
                    // the next apply (after the undo) brings the router in line.
                    let carried: Vec<PendingJob> = remaining.drain(..m).collect();
                    for job in &carried {
                        fail(app, job, &reason, fence).await?;
                    }
                    cache.drop_copy();
                    return Ok(Continue::More);
                }
                Err(PushError::Refused(reason)) if m == 1 => {
                    let job = remaining.remove(0);
                    pending.retain(|p| p.id != job.id);
                    fail(app, &job, &reason, fence).await?;
                    cache.drop_copy();
                    // An update writes its values in place, so a generation made for an
                    // earlier job may already carry them; after the undo, the router gets the
                    // old values back.
                    resync |= job.kind == Kind::Update;
                    done = true;
                    break;
                }
                Err(PushError::Refused(reason)) => {
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
        match push(app, state, &batch, sent).await {
            Ok(pushed) => record(app, &pushed, fence, cache).await?,
            Err(reason) => {
                tracing::warn!(network = network_id, %reason, "re-sync after a refused update failed");
            }
        }
    }
    Ok(Continue::More)
}

/// Records a generation that carried no job (a re-sync).
async fn record(
    app: &App,
    pushed: &Pushed,
    fence: &Fence,
    cache: &mut Cache,
) -> Result<(), String> {
    {
        // Fenced: written only while this server still holds the host. The receipt is
        // empty: the worker writing is the one a ring would wake.
        let mut change = app.db.fenced(fence, None).await.map_err(text)?;
        let tx = change.conn();
        store::routers::apply_commit(tx, &pushed.commit)
            .await
            .map_err(text)?;
        store::routers::set_applied(tx, pushed.network_id, pushed.generation)
            .await
            .map_err(text)?;
        let _ = change.commit().await.map_err(text)?;
    }
    cache.committed(&pushed.commit);
    Ok(())
}

async fn succeed(
    app: &App,
    network_id: i64,
    pushed: &Pushed,
    carried: &[PendingJob],
    fence: &Fence,
) -> Result<(), String> {
    let Fence::Owner { host, .. } = fence else {
        return Err("only the host's owner records what its router applied".into());
    };
    // Fenced: written only while this server still holds the host. The receipt is
    // empty: the worker writing is the one a ring would wake.
    let mut change = app.db.fenced(fence, None).await.map_err(text)?;
    let tx = change.conn();
    store::routers::apply_commit(tx, &pushed.commit)
        .await
        .map_err(text)?;
    store::routers::set_applied(tx, network_id, pushed.generation)
        .await
        .map_err(text)?;
    let deleting_network = carried.iter().any(|j| j.kind == Kind::DeleteNetwork);
    let doomed_vms = if deleting_network {
        store::vms::network_vms(tx, network_id)
            .await
            .map_err(text)?
    } else {
        Vec::new()
    };
    // Jobs with nothing to do after the commit and a result the transaction can render end in
    // it: one commit for the generation and its jobs.
    let mut ended = Vec::new();
    for job in carried.iter().filter(|j| j.kind == Kind::Change) {
        if let Some(result) = result_in(tx, app.db.dialect(), &job.payload.outcome)
            .await
            .map_err(text)?
        {
            finish_in(tx, job, JobStatus::Succeeded, 0, &result)
                .await
                .map_err(text)?;
            ended.push(job.id);
        }
    }
    let _ = change.commit().await.map_err(text)?;
    for job in carried.iter().filter(|j| ended.contains(&j.id)) {
        observe_end(app, job, JobStatus::Succeeded);
    }
    let router = if deleting_network {
        store::routers::router_name_of(&app.db, network_id)
            .await
            .map_err(text)?
    } else {
        None
    };
    for job in carried.iter().filter(|j| !ended.contains(&j.id)) {
        match (job.kind, job.payload.target) {
            (Kind::DestroyVm, Some(vm_id)) => {
                if let Some(name) = store::vms::vm_lab_key(&app.db, vm_id).await.map_err(text)? {
                    if let Err(err) = app
                        .hosts
                        .call(host, Op::RemoveVm { vm: name.clone() })
                        .await
                    {
                        tracing::warn!(vm = %name, error = %err, "removing the VM failed");
                    }
                }
                store::vms::delete_vm(&app.db, vm_id).await.map_err(text)?;
            }
            (Kind::DeleteNetwork, _) => {
                for (_, name) in &doomed_vms {
                    if let Err(err) = app
                        .hosts
                        .call(host, Op::RemoveVm { vm: name.clone() })
                        .await
                    {
                        tracing::warn!(vm = %name, error = %err, "removing the VM failed");
                    }
                }
                if let Some(router) = &router {
                    let op = Op::RemoveRouter {
                        router: router.clone(),
                    };
                    if let Err(err) = app.hosts.call(host, op).await {
                        tracing::warn!(%router, error = %err, "removing the router failed");
                    }
                }
                store::networks::delete_network(&app.db, network_id)
                    .await
                    .map_err(text)?;
            }
            _ => {}
        }
        let result = crate::cmd::job_result(app, &job.payload.outcome)
            .await
            .unwrap_or_else(|err| err.job_result());
        finish(app, job, JobStatus::Succeeded, 0, &result).await?;
    }
    Ok(())
}

/// Undoes a job and fails it with 530 and `reason`.
async fn fail(app: &App, job: &PendingJob, reason: &str, fence: &Fence) -> Result<(), String> {
    {
        // Fenced: written only while this server still holds the host. The receipt is
        // empty: the worker writing is the one a ring would wake.
        let mut change = app.db.fenced(fence, None).await.map_err(text)?;
        let tx = change.conn();
        if let (Kind::DeployVm, Outcome::Vm { id }) = (job.kind, &job.payload.outcome) {
            store::vms::delete_vm_in(tx, *id).await.map_err(text)?;
        } else {
            store::jobs::rollback_job(tx, job.id.into(), job.payload.undo.as_ref())
                .await
                .map_err(text)?;
            if let Some(undo) = &job.payload.undo {
                crate::cmd::firewall::store_json(&mut **tx, app.db.dialect(), undo.rule_id)
                    .await
                    .map_err(text)?;
            }
        }
        let _ = change.commit().await.map_err(text)?;
    }
    let err = ApiError::internal(format!("{}: {reason}", job.payload.failure));
    finish(app, job, JobStatus::Failed, 530, &err.job_result()).await
}

async fn finish(
    app: &App,
    job: &PendingJob,
    status: JobStatus,
    code: i64,
    result: &Value,
) -> Result<(), String> {
    let ended = {
        let mut change = app.db.change(None).await.map_err(text)?;
        let ended = finish_in(change.conn(), job, status, code, result)
            .await
            .map_err(text)?;
        // A job's end wakes nobody: its network's worker is the one ending it.
        let _ = change.commit().await.map_err(text)?;
        ended
    };
    if ended {
        observe_end(app, job, status);
    }
    Ok(())
}

/// Ends a pending job and records its end event, in the caller's transaction; false when it
/// had ended already (housekeeping on two servers), and then nothing is written.
async fn finish_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    job: &PendingJob,
    status: JobStatus,
    code: i64,
    result: &Value,
) -> Result<bool, StoreError> {
    if !store::jobs::finish(tx, job.id.into(), status, code, result).await? {
        return Ok(false);
    }
    let ok = status == JobStatus::Succeeded;
    store::events::event(
        tx,
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
    .await?;
    Ok(true)
}

/// The job-duration metric of a job that ended.
fn observe_end(app: &App, job: &PendingJob, status: JobStatus) {
    let secs = (now_ms() - job.created).max(0) as f64 / 1000.0;
    app.metrics
        .job_seconds
        .get_or_create(&JobLabels {
            command: job.command.clone(),
            result: if status == JobStatus::Succeeded {
                "succeeded".into()
            } else {
                "failed".into()
            },
        })
        .observe(secs);
}

/// A job's result when the recording transaction can render it (a success, a fixed object, a
/// firewall or forwarding rule, read as the transaction now sees it); `None` for the others,
/// rendered after the commit.
async fn result_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    dialect: store::db::Dialect,
    outcome: &Outcome,
) -> Result<Option<Value>, sqlx::Error> {
    let (row, object) = match outcome {
        Outcome::Success => return Ok(Some(json!({"success": true}))),
        Outcome::Fixed { value } => return Ok(Some(value.clone())),
        Outcome::Rule { id, object } => (
            sqlx::query("SELECT id, purpose FROM rules WHERE id = $1")
                .bind(*id)
                .fetch_optional(&mut **tx)
                .await?,
            object,
        ),
        Outcome::Created { uuid, object } => (
            sqlx::query("SELECT id, purpose FROM rules WHERE uuid = $1")
                .bind(uuid)
                .fetch_optional(&mut **tx)
                .await?,
            object,
        ),
        Outcome::Policy { .. } | Outcome::Ip { .. } | Outcome::Vm { .. } => return Ok(None),
    };
    let Some(row) = row else {
        return Ok(None);
    };
    let purpose: domain::model::Purpose = row
        .try_get::<String, _>("purpose")?
        .parse()
        .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    if purpose == domain::model::Purpose::LoadBalancing {
        return Ok(None);
    }
    let id: i64 = row.try_get("id")?;
    let inner = crate::cmd::firewall::rule_value_in(&mut **tx, dialect, id, purpose).await?;
    Ok(Some(crate::resp::wrap(object, inner)))
}

async fn deploy_vm(
    app: &App,
    network_id: i64,
    router: &RouterRow,
    job: PendingJob,
    fence: &Fence,
) -> Result<Continue, String> {
    let Outcome::Vm { id } = job.payload.outcome else {
        finish(
            app,
            &job,
            JobStatus::Succeeded,
            0,
            &json!({"success": true}),
        )
        .await?;
        return Ok(Continue::More);
    };
    let result = match store::vms::vm_for_deploy(&app.db, id).await.map_err(text)? {
        None => Err(CallError::Refused("the VM is gone".to_string())),
        Some(vm) => {
            let net = crate::cmd::network_by_id(app, network_id)
                .await
                .map_err(|e| e.text)?;
            let router_op = Op::EnsureRouter {
                router: router.name.clone(),
                cidr: net.cidr,
                gateway: net.gateway,
            };
            let vm_op = Op::EnsureVm {
                router: router.name.clone(),
                vm: vm.key,
                ip: vm.ip,
                label: Some(lab::VmLabel {
                    name: vm.name,
                    account: vm.account,
                    network: vm.network,
                }),
            };
            match app.hosts.call(&router.host, router_op).await {
                Ok(_) => app.hosts.call(&router.host, vm_op).await.map(|_| ()),
                Err(e) => Err(e),
            }
        }
    };
    match result {
        Ok(()) => {
            store::vms::set_vm_state(&app.db, id, "Running")
                .await
                .map_err(text)?;
            let result = crate::cmd::job_result(app, &job.payload.outcome)
                .await
                .unwrap_or_else(|err| err.job_result());
            finish(app, &job, JobStatus::Succeeded, 0, &result).await?;
            Ok(Continue::More)
        }
        Err(e @ (CallError::NotConnected(_) | CallError::Lost(_))) => unavailable(e),
        Err(
            CallError::Refused(reason) | CallError::TimedOut(reason) | CallError::Stale(reason),
        ) => {
            fail(app, &job, &reason, fence).await?;
            Ok(Continue::More)
        }
    }
}

/// Starts the listener for other servers' rings and rings every network's worker: those whose
/// host is connected here start, make sure their router and VMs exist, and re-send what the
/// router lacks.
///
/// # Errors
/// The database's error, as text.
pub async fn start(app: &App) -> Result<(), String> {
    tokio::spawn(listen(app.clone()));
    for host in app.hosts.connected() {
        ring_host(app, &host).await;
    }
    Ok(())
}

/// Brings a new network's router up and gives it its first config; the router becomes Running,
/// or Error with the reason (createNetwork, waiting for either, then removes the network).
async fn implement(
    app: &App,
    network_id: i64,
    router: &RouterRow,
    fence: &Fence,
    sent: &mut Sent,
) -> Result<(), String> {
    let ensured = ensure_host_objects(app, network_id, router).await;
    let outcome = match ensured {
        Err(e @ (CallError::NotConnected(_) | CallError::Lost(_))) => {
            // Not known either way: try again when the agent is back.
            return Err(e.to_string());
        }
        Err(e) => Err(e.to_string()),
        Ok(()) => {
            let state = load_state(app, network_id).await?;
            sent.forget();
            match push(app, &state, &Batch::default(), sent).await {
                Ok(pushed) => Ok(pushed),
                Err(PushError::Unavailable(r)) => return Err(r),
                Err(e) => Err(e.to_string()),
            }
        }
    };
    match outcome {
        Ok(pushed) => {
            // Fenced: written only while this server still holds the host. The receipt is
            // empty: the worker writing is the one a ring would wake.
            let mut change = app.db.fenced(fence, None).await.map_err(text)?;
            let tx = change.conn();
            store::routers::apply_commit(tx, &pushed.commit)
                .await
                .map_err(text)?;
            store::routers::set_applied(tx, network_id, pushed.generation)
                .await
                .map_err(text)?;
            change.commit().await.map(|_| ()).map_err(text)
        }
        Err(reason) => {
            let op = Op::RemoveRouter {
                router: router.name.clone(),
            };
            if let Err(err) = app.hosts.call(&router.host, op).await {
                tracing::warn!(router = %router.name, error = %err, "removing a router that failed to start");
            }
            store::routers::set_router_error(&app.db, network_id, &reason)
                .await
                .map_err(text)
        }
    }
}

/// Fails the jobs left pending on hosts that have had no agent anywhere since `before`
/// (housekeeping), each undone and failed with that reason, fenced so that an agent connecting
/// meanwhile keeps them.
///
/// # Errors
/// The database's error, as text.
pub async fn fail_forsaken(app: &App, before: i64) -> Result<(), String> {
    let rows = sqlx::query(
        "SELECT j.id, j.cmd, j.kind, j.payload, j.created, j.account_id, j.user_id, \
         h.name AS host, h.epoch, h.seen FROM jobs j \
         JOIN routers r ON r.network_id = j.network_id JOIN hosts h ON h.name = r.host \
         WHERE j.status = 0 AND h.connected = 0 AND j.created < $1 \
         AND (h.seen IS NULL OR h.seen < $1) ORDER BY j.id LIMIT 200",
    )
    .bind(before)
    .fetch_all(app.db.pool())
    .await
    .map_err(|e| e.to_string())?;
    for r in rows {
        let job = pending_from_row(&r)?;
        let host: String = r.try_get("host").map_err(|e| e.to_string())?;
        let epoch: i64 = r.try_get("epoch").map_err(|e| e.to_string())?;
        let reason = format!(
            "host {host} has had no connected agent for {} s",
            app.hosts.apply_timeout().as_secs()
        );
        tracing::warn!(job = job.id, %host, "failing a job its host's agent never took");
        match fail(app, &job, &reason, &Fence::Forsaken { host, epoch }).await {
            Ok(()) => {}
            // An agent connected meanwhile: the job is its server's now.
            Err(e) => tracing::info!(job = job.id, error = %e, "left the job to its host"),
        }
    }
    Ok(())
}
