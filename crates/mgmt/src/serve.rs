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
    /// A file or directory of the data directory could not be made private.
    #[error("cannot make {path} private to its owner")]
    Private {
        /// The file or directory.
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
    private_data_dir(&opts.data_dir)?;
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

/// Makes the data directory the owner's alone: the database in it holds every user's secret key
/// and the servers' shared secret. The directory is created 0700, an existing one (and every
/// directory below it) is set to 0700 and every file in it loses its group and other bits (a
/// data directory from before this rule was 0755 with a 0644 database), and the process's umask
/// becomes 077 so that whatever is created later (the database's `-wal` and `-shm` files, the
/// dry-run configs, the lab's files) is 0600 or 0700 from the start. Symbolic links are left
/// alone.
fn private_data_dir(dir: &Path) -> Result<(), ServeError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| ServeError::DataDir {
            path: dir.to_path_buf(),
            source,
        })?;
    let private = |path: &Path, source| ServeError::Private {
        path: path.to_path_buf(),
        source,
    };
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let meta = std::fs::symlink_metadata(&path).map_err(|e| private(&path, e))?;
        if meta.file_type().is_symlink() {
            continue;
        }
        let mode = meta.permissions().mode() & 0o7777;
        let wanted = if meta.is_dir() { 0o700 } else { mode & !0o077 };
        if mode != wanted {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(wanted))
                .map_err(|e| private(&path, e))?;
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).map_err(|e| private(&path, e))? {
                pending.push(entry.map_err(|e| private(&path, e))?.path());
            }
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &std::path::Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }

    /// A data directory from before the rule (0755, files 0644, a nested 0755 directory) and a
    /// new one both end up private to their owner.
    #[test]
    fn data_directory_becomes_private() {
        let top = tempfile::tempdir().unwrap();
        let old = top.path().join("old");
        let nested = old.join("dry-run").join("r-1");
        std::fs::create_dir_all(&nested).unwrap();
        for d in [&old, &old.join("dry-run"), &nested] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let files = [
            old.join("guestnet.db"),
            old.join("guestnet.db-wal"),
            old.join("guestnet.db-shm"),
            nested.join("config.json"),
        ];
        for f in &files {
            std::fs::write(f, b"x").unwrap();
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let outside = top.path().join("outside");
        std::fs::write(&outside, b"x").unwrap();
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&outside, old.join("link")).unwrap();

        super::private_data_dir(&old).unwrap();
        for d in [&old, &old.join("dry-run"), &nested] {
            assert_eq!(mode(d), 0o700, "{}", d.display());
        }
        for f in &files {
            assert_eq!(mode(f), 0o600, "{}", f.display());
        }
        assert_eq!(mode(&outside), 0o644, "a link's target outside was changed");

        let new = top.path().join("new").join("data");
        super::private_data_dir(&new).unwrap();
        assert_eq!(mode(&new), 0o700);
        // The umask now keeps what is created later private as well.
        let later = new.join("later");
        std::fs::write(&later, b"x").unwrap();
        assert_eq!(mode(&later), 0o600);
    }
}
