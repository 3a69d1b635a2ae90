//! `guestnet serve`: opens the database (migrating it), picks the agent, seeds the first start,
//! brings the job runner up, and serves the API until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agent::driver::Driver;
use agent::Agent;

use crate::app::App;
use crate::bootstrap::{self, KeySource};
use crate::db::Db;
use crate::hosts::{self, Hosts};
use crate::metrics::Metrics;
use crate::runner::{self, Doorbell};

/// Which agent drives the routers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverChoice {
    /// The in-process agent with lab namespaces, enforced.
    Lab,
    /// The in-process agent, rendering and writing configs, enforcing nothing.
    DryRun,
    /// The in-process agent: lab when it can run here, dry-run otherwise.
    Auto,
    /// No agent in process: `guestnet agent` processes connect and drive their hosts.
    Agents,
}

/// What `guestnet serve` was asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The data directory.
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; SQLite in the data directory when `None`.
    pub database_url: Option<String>,
    /// The agent.
    pub driver: DriverChoice,
    /// How long a router may take to apply a config.
    pub apply_timeout: Duration,
    /// This server's name among the servers of its database.
    pub server_name: String,
    /// The URL other servers and `guestnet verify` reach this server at; default from the
    /// listening address.
    pub advertise: Option<String>,
    /// The host name of the in-process agent.
    pub host_name: String,
    /// Whether network workers compare their copy of the rows with a full read after every
    /// generation (always in debug builds).
    pub check_copy: bool,
}

/// The host name of the in-process agent unless told otherwise.
pub const EMBEDDED_HOST: &str = "local";

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The data directory could not be made.
    #[error("cannot create the data directory {path}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The database could not be opened or migrated.
    #[error("database")]
    Db(#[from] crate::db::DbError),
    /// The lab driver was asked for and cannot run.
    #[error("the lab driver cannot run: {0}")]
    Lab(String),
    /// First-start seeding failed.
    #[error("first start: {0}")]
    Bootstrap(String),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The server stopped with an error.
    #[error("serving failed")]
    Serve(#[source] std::io::Error),
}

fn pick_driver(
    choice: DriverChoice,
    data_dir: &Path,
) -> Result<(Option<Driver>, String), ServeError> {
    match choice {
        DriverChoice::Agents => Ok((
            None,
            "agents (no agent in process; hosts' agents connect to /agent/v1)".into(),
        )),
        DriverChoice::DryRun => Ok((
            Some(Driver::dry_run(data_dir)),
            "dry-run (configs are validated and written, nothing is enforced)".into(),
        )),
        DriverChoice::Lab => {
            Driver::lab_possible().map_err(ServeError::Lab)?;
            let d = Driver::lab(data_dir).map_err(ServeError::Lab)?;
            let what = d.describe();
            Ok((Some(d), what))
        }
        DriverChoice::Auto => match Driver::lab_possible() {
            Ok(()) => {
                let d = Driver::lab(data_dir).map_err(ServeError::Lab)?;
                let what = format!("{}; chosen because it can run here", d.describe());
                Ok((Some(d), what))
            }
            Err(why) => Ok((
                Some(Driver::dry_run(data_dir)),
                format!(
                    "dry-run (chosen because the lab cannot run here: {why}; nothing is enforced)"
                ),
            )),
        },
    }
}

/// Runs the server until a shutdown signal. `ready` is called with the startup line once the
/// listener is bound.
///
/// # Errors
/// [`ServeError`].
pub async fn serve(opts: Options, ready: impl FnOnce(&str)) -> Result<(), ServeError> {
    std::fs::create_dir_all(&opts.data_dir).map_err(|source| ServeError::DataDir {
        path: opts.data_dir.clone(),
        source,
    })?;
    let data_dir = opts
        .data_dir
        .canonicalize()
        .unwrap_or_else(|_| opts.data_dir.clone());
    let url = opts
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("guestnet.db").display()));
    let db = Db::connect(&url).await?;
    let (driver, driver_line) = pick_driver(opts.driver, &data_dir)?;
    let (site, keys) = bootstrap::first_start(&db, &data_dir)
        .await
        .map_err(ServeError::Bootstrap)?;
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: opts.listen,
            source,
        })?;
    let addr = listener.local_addr().unwrap_or(opts.listen);
    let advertise = opts
        .advertise
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let server_id = hosts::register_server(&db, &opts.server_name, &advertise)
        .await
        .map_err(ServeError::Bootstrap)?;
    let embedded = driver.as_ref().map(|_| opts.host_name.clone());
    let hosts = Arc::new(Hosts::new(
        server_id,
        &opts.server_name,
        opts.apply_timeout,
        embedded,
    ));
    if let Some(driver) = driver {
        let agent = Agent::new(driver, opts.apply_timeout);
        hosts::attach_embedded(&db, &hosts, &opts.host_name, agent.clone())
            .await
            .map_err(ServeError::Bootstrap)?;
        tokio::spawn(agent::run::drift_timer(agent, DRIFT_INTERVAL));
    }
    let app = App {
        db: db.clone(),
        hosts,
        doorbell: Doorbell::default(),
        metrics: Arc::new(Metrics::new()),
        data_dir: data_dir.clone(),
        site: Arc::new(site),
        keys: Arc::default(),
    };
    if opts.check_copy {
        app.doorbell.check_copy(true);
    }
    tokio::spawn(hosts::housekeeping(app.clone()));
    if let Err(e) = runner::start(&app).await {
        tracing::warn!(error = %e, "starting the job runner");
    }
    let keys_line = match &keys.source {
        KeySource::Environment => "admin keys from the environment".to_string(),
        KeySource::File(path) => format!("admin keys in {}", path.display()),
    };
    let db_line = match db.dialect() {
        crate::db::Dialect::Sqlite => format!("database sqlite ({url})"),
        crate::db::Dialect::Postgres => "database postgres".to_string(),
    };
    ready(&format!(
        "guestnet serve: listening on http://{addr}/client/api; server {} (id {server_id}); \
         driver {driver_line}; {db_line}; {keys_line}",
        opts.server_name
    ));
    let router = crate::http::router(app);
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown())
    .await
    .map_err(ServeError::Serve)
}

/// How often the in-process agent looks for routers whose kernel lost their rules.
const DRIFT_INTERVAL: Duration = Duration::from_secs(1);

async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
    tracing::info!("shutting down");
}
