//! `guestnet serve`: opens the database (migrating it), picks the agent, seeds the first start,
//! brings the job runner up, and serves the API until SIGINT or SIGTERM.
//!
//! Connections are bounded ([`ConnLimits`], [`serve_http`]): a request head must arrive within
//! [`ConnLimits::HEADER_READ_TIMEOUT`] of the connection opening or of its previous answer (so
//! neither a silent connection, an idle keep-alive one nor one trickling bytes is held longer),
//! one address holds at most [`ConnLimits::PER_ADDRESS`] connections, and all together stay
//! below the process's file-descriptor limit.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agent::driver::Driver;
use agent::Agent;

use crate::app::App;
use crate::bootstrap::{self, KeySource};
use crate::hosts::{self, Hosts};
use crate::metrics::Metrics;
use crate::runner::{self, Doorbell};
use store::db::Db;

/// Which agent drives the routers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverChoice {
    /// The in-process agent with the host driver: routers on this machine's public bridge and
    /// guest VLANs, enforced.
    Host(agent::host::HostConfig),
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
    /// The most connections one client address may hold ([`ConnLimits::PER_ADDRESS`] unless
    /// told otherwise; raise it when a load balancer's one address carries every client).
    pub per_address: usize,
    /// The zone's guest VLANs and DNS servers, when a start makes them.
    pub guest: bootstrap::GuestDefaults,
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
    Db(#[from] store::db::DbError),
    /// The lab driver was asked for and cannot run.
    #[error("the lab driver cannot run")]
    Lab(#[source] agent::driver::DriverError),
    /// First-start seeding failed.
    #[error("first start: {0}")]
    Bootstrap(String),
    /// This server or its own host could not be recorded.
    #[error("recording this server and its host")]
    Hosts(#[source] crate::hosts::HostsError),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The host driver cannot run here.
    #[error("the host driver cannot run here: {}", lacks.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    HostLacks {
        /// Every missing piece.
        lacks: Vec<agent::host::Lack>,
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
        DriverChoice::Host(config) => {
            let lacks = agent::host::preflight(&config);
            if !lacks.is_empty() {
                return Err(ServeError::HostLacks { lacks });
            }
            let d = Driver::host(data_dir, config).map_err(ServeError::Lab)?;
            let what = d.describe();
            Ok((Some(d), what))
        }
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
                    "dry-run (chosen because the lab cannot run here: {}; nothing is enforced)",
                    why.chain()
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
    let (driver, driver_line) = pick_driver(opts.driver.clone(), &data_dir)?;
    let (site, keys) = bootstrap::first_start_with(&db, &data_dir, &opts.guest)
        .await
        .map_err(|e| ServeError::Bootstrap(crate::app::chain(&e)))?;
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
        .map_err(ServeError::Hosts)?;
    let embedded = driver.as_ref().map(|_| opts.host_name.clone());
    let (host_events, runner_events) = runner::host_channel();
    let hosts = Arc::new(Hosts::new(
        server_id,
        &opts.server_name,
        opts.apply_timeout,
        embedded,
        host_events,
    ));
    if let Some(driver) = driver {
        let agent = Agent::new(driver, opts.apply_timeout);
        hosts::attach_embedded(&db, &hosts, &opts.host_name, agent.clone())
            .await
            .map_err(ServeError::Hosts)?;
        tokio::spawn(agent::run::drift_timer(agent, DRIFT_INTERVAL));
    }
    let metrics = Arc::new(Metrics::new());
    let site = Arc::new(site);
    let doorbell = Doorbell::new(db.clone(), hosts.clone(), metrics.clone(), site.clone());
    let app = App {
        db: db.clone(),
        hosts,
        doorbell,
        metrics,
        data_dir: data_dir.clone(),
        site,
        keys: Arc::default(),
        creations: Arc::default(),
    };
    if opts.check_copy {
        app.doorbell.check_copy(true);
    }
    tokio::spawn(hosts::housekeeping(app.db.clone(), app.hosts.clone()));
    runner::start(&app.doorbell, runner_events).await;
    let keys_line = match &keys.source {
        KeySource::Environment => "admin keys from the environment".to_string(),
        KeySource::File(path) => format!("admin keys in {}", path.display()),
    };
    let db_line = match db.dialect() {
        store::db::Dialect::Sqlite => format!("database sqlite ({url})"),
        store::db::Dialect::Postgres => "database postgres".to_string(),
    };
    ready(&format!(
        "guestnet serve: listening on http://{addr}/client/api; server {} (id {server_id}); \
         driver {driver_line}; {db_line}; {keys_line}",
        opts.server_name
    ));
    let router = crate::http::router(app);
    let limits = ConnLimits {
        per_address: opts.per_address,
        ..ConnLimits::for_fd_limit(raise_fd_limit())
    };
    tracing::info!(
        per_address = limits.per_address,
        total = limits.total,
        header_read_timeout_s = limits.header_read_timeout.as_secs(),
        "connection limits"
    );
    serve_http(listener, router, limits, shutdown())
        .await
        .map_err(ServeError::Serve)
}

/// Bounds on the connections the API's listener holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// A complete request head must arrive within this of the connection opening or of its
    /// previous answer, or the connection is closed.
    pub header_read_timeout: Duration,
    /// The most connections one address holds at once; more are answered 429 and closed.
    pub per_address: usize,
    /// The most connections held at once; more are answered 503 and closed.
    pub total: usize,
}

impl ConnLimits {
    /// The default [`header_read_timeout`](Self::header_read_timeout): CloudStack's HTTP
    /// connector closes a connection idle for 30 s.
    pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
    /// The default [`per_address`](Self::per_address).
    pub const PER_ADDRESS: usize = 128;
    /// File descriptors kept for everything but API connections: the database pool, agents'
    /// and routers' sockets, files.
    pub const RESERVED_FDS: u64 = 256;

    /// The limits for a process that may hold `fds` file descriptors.
    pub fn for_fd_limit(fds: u64) -> ConnLimits {
        let total = fds.saturating_sub(Self::RESERVED_FDS).clamp(32, 65_536);
        ConnLimits {
            header_read_timeout: Self::HEADER_READ_TIMEOUT,
            per_address: Self::PER_ADDRESS,
            total: usize::try_from(total).unwrap_or(65_536),
        }
    }
}

/// Raises this process's soft limit of open files to its hard limit; returns the soft limit
/// now in force.
pub fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(_) => soft,
        },
        Ok((soft, _)) => soft,
        Err(_) => 1024,
    }
}

/// The largest request head (request line and headers) a connection may send.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// How long a shutdown waits for open connections to finish their requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections held, by address.
#[derive(Default)]
struct Held {
    by_address: std::sync::Mutex<HashMap<IpAddr, usize>>,
    all: std::sync::atomic::AtomicUsize,
    emptied: tokio::sync::Notify,
}

/// One held connection; dropping it lets it go.
struct Admission {
    held: Arc<Held>,
    address: IpAddr,
}

/// Why a connection was not taken.
enum Refusal {
    Address,
    Total,
}

impl Held {
    fn admit(self: &Arc<Self>, address: IpAddr, limits: &ConnLimits) -> Result<Admission, Refusal> {
        let mut by_address = self
            .by_address
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let all = self.all.load(std::sync::atomic::Ordering::SeqCst);
        if all >= limits.total {
            return Err(Refusal::Total);
        }
        let n = by_address.entry(address).or_insert(0);
        if *n >= limits.per_address {
            return Err(Refusal::Address);
        }
        *n += 1;
        self.all.store(all + 1, std::sync::atomic::Ordering::SeqCst);
        Ok(Admission {
            held: Arc::clone(self),
            address,
        })
    }

    fn count(&self) -> usize {
        self.all.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut by_address = self
            .held
            .by_address
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = by_address.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                by_address.remove(&self.address);
            }
        }
        let before = self
            .held
            .all
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        if before == 1 {
            self.held.emptied.notify_waiters();
        }
    }
}

/// Answers a connection that is not taken, as far as the socket accepts it at once, and
/// closes it.
fn refuse(stream: &tokio::net::TcpStream, refusal: &Refusal, limits: &ConnLimits) {
    let (status, error) = match refusal {
        Refusal::Address => (
            "429 Too Many Requests",
            api_types::error::ApiError::api_limit_exceeded(format!(
                "this address already holds {} connections, the most one address may hold",
                limits.per_address
            )),
        ),
        Refusal::Total => (
            "503 Service Unavailable",
            api_types::error::ApiError::new(
                api_types::error::ApiErrorCode::ServiceUnavailable,
                None,
                format!(
                    "the server already holds {} connections, the most it takes",
                    limits.total
                ),
            ),
        ),
    };
    let body = error.envelope(None).to_string();
    let answer = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json; charset=UTF-8\r\n\
         x-description: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        error.text,
        body.len()
    );
    // Best effort: a client that cannot take these few bytes at once just sees the close.
    let _ = stream.try_write(answer.as_bytes());
}

/// Serves `router` on `listener` within `limits` until `shutdown` completes, then lets open
/// requests finish (for up to [`DRAIN_TIMEOUT`]).
///
/// # Errors
/// Never, today; the signature leaves room for a listener that can fail for good.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()>,
) -> Result<(), std::io::Error> {
    let held = Arc::new(Held::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset
                ) => continue,
                Err(e) => {
                    // Out of file descriptors, most likely: let some connections close.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let admission = match held.admit(peer.ip(), &limits) {
            Ok(a) => a,
            Err(refusal) => {
                refuse(&stream, &refusal, &limits);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(
            router
                .clone()
                .layer(axum::Extension(axum::extract::ConnectInfo(peer))),
        );
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let _admission = admission;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .max_buf_size(MAX_HEAD_BYTES)
                .keep_alive(true);
            let conn = builder
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(conn);
            let outcome = tokio::select! {
                r = conn.as_mut() => r,
                () = async {
                    let _ = stop.wait_for(|s| *s).await;
                } => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = outcome {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
        });
    }
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
        loop {
            let emptied = held.emptied.notified();
            if held.count() == 0 {
                break;
            }
            emptied.await;
        }
    })
    .await;
    Ok(())
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
