//! What tests of the management server share: an app on a fresh database with the dry-run
//! agent, the admin caller, calls through the real dispatcher, and waiting for jobs.

use std::sync::Arc;
use std::time::Duration;

use api_types::catalogue;
use api_types::params::check_and_normalize;
use serde_json::Value;
use sqlx::Row;

use crate::app::App;
use agent::driver::Driver;
use agent::Agent;
use domain::actor::Caller;
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
pub(crate) struct PgDatabase {
    /// Its URL.
    pub(crate) url: String,
    name: String,
    admin: sqlx::AnyPool,
}

pub(crate) async fn postgres_database(prefix: &str) -> PgDatabase {
    let base = std::env::var("GUESTNET_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(&base).await.unwrap();
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    let (server, _) = base.rsplit_once('/').unwrap();
    PgDatabase {
        url: format!("{server}/{name}"),
        name,
        admin,
    }
}

impl PgDatabase {
    /// Drops the database (its users' connections closed first by the caller, or forced).
    pub(crate) async fn drop(self) {
        sqlx::query(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .execute(&self.admin)
            .await
            .unwrap();
    }
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
    let r = sqlx::query(
        "SELECT u.id AS uid, u.uuid AS uuuid, a.id AS aid, a.uuid AS auuid, \
         d.id AS did, d.uuid AS duuid FROM users u JOIN accounts a ON a.id = u.account_id \
         JOIN domains d ON d.id = a.domain_id WHERE u.username = 'admin'",
    )
    .fetch_one(app.db.pool())
    .await
    .unwrap();
    Caller {
        user_id: r.try_get("uid").unwrap(),
        user_uuid: r.try_get("uuuid").unwrap(),
        account_id: r.try_get("aid").unwrap(),
        account_uuid: r.try_get("auuid").unwrap(),
        account_name: "admin".into(),
        domain_id: r.try_get("did").unwrap(),
        domain_uuid: r.try_get("duuid").unwrap(),
        domain_name: "ROOT".into(),
        domain_path: "ROOT".into(),
        admin: true,
    }
}

/// An ordinary account `name` with one user, made directly in the database.
pub(crate) async fn user(app: &App, root: &Caller, name: &str) -> Caller {
    let account_uuid = uuid::Uuid::new_v4().to_string();
    let user_uuid = uuid::Uuid::new_v4().to_string();
    let aid: i64 = sqlx::query(
        "INSERT INTO accounts (uuid, name, domain_id, account_type, state, created) \
         VALUES ($1, $2, $3, 0, 'enabled', 0) RETURNING id",
    )
    .bind(&account_uuid)
    .bind(name)
    .bind(root.domain_id)
    .fetch_one(app.db.pool())
    .await
    .unwrap()
    .try_get("id")
    .unwrap();
    let uid: i64 = sqlx::query(
        "INSERT INTO users (uuid, account_id, username, password_hash, email, firstname, \
         lastname, state, created) VALUES ($1, $2, $3, 'x', 'a@example.org', 'A', 'L', \
         'enabled', 0) RETURNING id",
    )
    .bind(&user_uuid)
    .bind(aid)
    .bind(name)
    .fetch_one(app.db.pool())
    .await
    .unwrap()
    .try_get("id")
    .unwrap();
    Caller {
        user_id: uid,
        user_uuid,
        account_id: aid,
        account_uuid,
        account_name: name.into(),
        admin: false,
        ..root.clone()
    }
}

/// Waits until no job is pending, at most `within`.
pub(crate) async fn settle(app: &App, within: Duration) {
    let deadline = std::time::Instant::now() + within;
    loop {
        let pending: i64 = sqlx::query("SELECT COUNT(*) AS c FROM jobs WHERE status = 0")
            .fetch_one(app.db.pool())
            .await
            .unwrap()
            .try_get("c")
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
        let r = sqlx::query("SELECT status, result FROM jobs WHERE uuid = $1")
            .bind(&uuid)
            .fetch_one(app.db.pool())
            .await
            .unwrap();
        let status: i64 = r.try_get("status").unwrap();
        if status != 0 {
            let result: String = r.try_get("result").unwrap();
            return (status, serde_json::from_str(&result).unwrap());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("job {uuid} did not end");
}
