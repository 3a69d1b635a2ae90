//! What tests of the management server share: an app on a fresh database with the dry-run
//! agent, the admin caller, calls through the real dispatcher, and waiting for jobs.

use std::sync::Arc;
use std::time::Duration;

use api_types::catalogue;
use api_types::params::check_and_normalize;
use serde_json::Value;

use crate::app::App;
use agent::driver::Driver;
use agent::Agent;
use domain::actor::Caller;
use domain::job::JobStatus;
use store::db::Db;

use crate::hosts::{self, Hosts};
use crate::metrics::Metrics;
use crate::runner::Doorbell;

pub(crate) async fn app(dir: &std::path::Path) -> App {
    app_on(dir, &format!("sqlite://{}", dir.join("t.db").display())).await
}

pub(crate) async fn app_on(dir: &std::path::Path, url: &str) -> App {
    let db = Db::connect(url).await.unwrap();
    let (site, _) = crate::bootstrap::first_start(&db, dir).await.unwrap();
    let hosts = embedded(&db, Driver::dry_run(dir)).await;
    assemble(db, hosts, Arc::new(site), dir)
}

/// An app of these parts, with a job runner of its own.
fn assemble(db: Db, hosts: Arc<Hosts>, site: Arc<crate::app::Site>, dir: &std::path::Path) -> App {
    let metrics = Arc::new(Metrics::new());
    let doorbell = Doorbell::new(db.clone(), hosts.clone(), metrics.clone(), site.clone());
    App {
        db,
        hosts,
        doorbell,
        metrics,
        data_dir: dir.to_path_buf(),
        site,
        keys: Arc::default(),
        creations: Arc::default(),
    }
}

/// An app on the database `url` names, with the in-process agent over `driver`.
pub(crate) async fn app_on_with(dir: &std::path::Path, url: &str, driver: Driver) -> App {
    let db = Db::connect(url).await.unwrap();
    let (site, _) = crate::bootstrap::first_start(&db, dir).await.unwrap();
    let hosts = embedded(&db, driver).await;
    assemble(db, hosts, Arc::new(site), dir)
}

/// A database of its own on the PostgreSQL server the test command names
/// (`GUESTNET_TEST_POSTGRES_URL`), or the one on 127.0.0.1:5432; no server is a failure.
pub(crate) use store::testing::PgDatabase;

pub(crate) async fn postgres_database(prefix: &str) -> PgDatabase {
    PgDatabase::create(prefix).await
}

/// Runs `f` on an app over a database of its own on the test PostgreSQL server (see
/// [`postgres_database`]; its name starts with `prefix`), then closes the app's pool and drops
/// the database.
pub(crate) async fn on_postgres(prefix: &str, f: impl AsyncFnOnce(&App)) {
    let pg = postgres_database(prefix).await;
    let dir = tempfile::tempdir().unwrap();
    let app = app_on(dir.path(), &pg.url).await;
    f(&app).await;
    app.db.pool().close().await;
    pg.drop().await;
}

pub(crate) async fn admin(app: &App) -> Caller {
    let ids = store::testing::user_ids(&app.db, "admin").await.unwrap();
    Caller {
        user_id: ids.user_id,
        user_uuid: ids.user_uuid,
        account_id: ids.account_id,
        account_uuid: ids.account_uuid,
        account_name: "admin".into(),
        domain_id: ids.domain_id,
        domain_uuid: ids.domain_uuid,
        domain_name: "ROOT".into(),
        domain_path: "ROOT".into(),
        admin: true,
    }
}

/// An ordinary account `name` with one user, made directly in the database.
pub(crate) async fn user(app: &App, root: &Caller, name: &str) -> Caller {
    let ids = store::testing::add_account_with_user(&app.db, name, root.domain_id)
        .await
        .unwrap();
    Caller {
        user_id: ids.user_id,
        user_uuid: ids.user_uuid,
        account_id: ids.account_id,
        account_uuid: ids.account_uuid,
        account_name: name.into(),
        admin: false,
        ..root.clone()
    }
}

/// Waits until no job is pending, at most `within`.
pub(crate) async fn settle(app: &App, within: Duration) {
    let deadline = std::time::Instant::now() + within;
    loop {
        let pending = store::testing::job_count(&app.db, JobStatus::Pending)
            .await
            .unwrap();
        if pending == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{pending} jobs still pending after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// This process as a server of `db`, with the in-process agent over `driver` as host `local`.
async fn embedded(db: &Db, driver: Driver) -> Arc<Hosts> {
    embedded_with(db, driver, agent::DEFAULT_APPLY_TIMEOUT).await
}

async fn embedded_with(db: &Db, driver: Driver, apply_timeout: Duration) -> Arc<Hosts> {
    let id = hosts::register_server(db, "test", "http://127.0.0.1:0")
        .await
        .unwrap();
    // No runner listens to this registry's events: tests ring their networks themselves
    // or start a runner with a channel of their own.
    let (events, _) = crate::runner::host_channel();
    let hosts = Arc::new(Hosts::new(
        id,
        "test",
        apply_timeout,
        Some(crate::serve::EMBEDDED_HOST.into()),
        events,
    ));
    let agent = Agent::new(driver, apply_timeout);
    hosts::attach_embedded(db, &hosts, crate::serve::EMBEDDED_HOST, agent)
        .await
        .unwrap();
    hosts
}

/// An app on SQLite in `dir` with the given agent.
pub(crate) async fn app_with(dir: &std::path::Path, driver: Driver) -> App {
    app_with_timeout(dir, driver, agent::DEFAULT_APPLY_TIMEOUT).await
}

/// An app on SQLite in `dir` with the given agent, whose routers get `apply_timeout`.
pub(crate) async fn app_with_timeout(
    dir: &std::path::Path,
    driver: Driver,
    apply_timeout: Duration,
) -> App {
    let db = Db::connect(&format!("sqlite://{}", dir.join("t.db").display()))
        .await
        .unwrap();
    let (site, _) = crate::bootstrap::first_start(&db, dir).await.unwrap();
    let hosts = embedded_with(&db, driver, apply_timeout).await;
    assemble(db, hosts, Arc::new(site), dir)
}

pub(crate) async fn call(app: &App, c: &Caller, cmd: &str, args: &[(&str, &str)]) -> Value {
    try_call(app, c, cmd, args)
        .await
        .unwrap_or_else(|e| panic!("{cmd}: {} {}", e.code.code(), e.text))
}

pub(crate) async fn try_call(
    app: &App,
    c: &Caller,
    cmd: &str,
    args: &[(&str, &str)],
) -> Result<Value, api_types::error::ApiError> {
    let spec = catalogue::find(cmd).unwrap();
    let raw: Vec<(String, String)> = args
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let p = check_and_normalize(spec, &raw)?;
    crate::cmd::dispatch(app, c, cmd, &p)
        .await
        .map(crate::cmd::Reply::into_value)
}

pub(crate) async fn wait(app: &App, job: &Value) -> (i64, Value) {
    let uuid = job["jobid"].as_str().unwrap().to_string();
    for _ in 0..200 {
        let job = store::jobs::by_uuid(&app.db, &uuid).await.unwrap().unwrap();
        if job.status != JobStatus::Pending {
            let result = job.result.unwrap();
            return (job.status.code(), serde_json::from_str(&result).unwrap());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("job {uuid} did not end");
}
