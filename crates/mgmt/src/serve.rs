//! `guestnet serve`: opens the database (migrating it), picks the agent, seeds the first start,
//! brings the job runner up, and serves the API until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::app::App;
use crate::bootstrap::{self, KeySource};
use crate::db::Db;
use crate::driver::Driver;
use crate::metrics::Metrics;
use crate::runner::{self, Doorbell};

/// Which agent to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverChoice {
    /// Lab namespaces, enforced.
    Lab,
    /// Rendered and written, not enforced.
    DryRun,
    /// Lab when it can run here, dry-run otherwise.
    Auto,
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
}

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

fn pick_driver(choice: DriverChoice, data_dir: &Path) -> Result<(Driver, String), ServeError> {
    match choice {
        DriverChoice::DryRun => Ok((
            Driver::dry_run(data_dir),
            "dry-run (configs are validated and written, nothing is enforced)".into(),
        )),
        DriverChoice::Lab => {
            Driver::lab_possible().map_err(ServeError::Lab)?;
            let d = Driver::lab(data_dir).map_err(ServeError::Lab)?;
            let host = d.host();
            Ok((d, format!("lab ({host}, enforced)")))
        }
        DriverChoice::Auto => match Driver::lab_possible() {
            Ok(()) => {
                let d = Driver::lab(data_dir).map_err(ServeError::Lab)?;
                let host = d.host();
                Ok((
                    d,
                    format!("lab ({host}, enforced; chosen because it can run here)"),
                ))
            }
            Err(why) => Ok((
                Driver::dry_run(data_dir),
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
    let (site, keys) = bootstrap::first_start(&db, &data_dir, driver.kind())
        .await
        .map_err(ServeError::Bootstrap)?;
    let app = App {
        db: db.clone(),
        driver,
        doorbell: Doorbell::default(),
        metrics: Arc::new(Metrics::new()),
        data_dir: data_dir.clone(),
        site: Arc::new(site),
        keys: Arc::default(),
    };
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: opts.listen,
            source,
        })?;
    let addr = listener.local_addr().unwrap_or(opts.listen);
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
        "guestnet serve: listening on http://{addr}/client/api; driver {driver_line}; {db_line}; {keys_line}"
    ));
    let router = crate::http::router(app);
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown())
        .await
        .map_err(ServeError::Serve)
}

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
