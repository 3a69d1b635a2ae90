//! Client compatibility: the real `guestnet serve` (dry-run driver) driven by the pinned Python
//! CloudStack client `cs` through the pytest suite in `tests/compat/`, once per database backend.
//!
//! `cargo xtask test` provides the Python venv (`GUESTNET_TEST_PYTHON`) and a PostgreSQL server
//! (`GUESTNET_TEST_POSTGRES_URL`). Run on its own, the suite builds the same venv under the
//! target directory and expects PostgreSQL on 127.0.0.1:5432 (user `postgres`, trust auth).
//! Extra pytest arguments, e.g. `-k firewall`, go in `GUESTNET_COMPAT_PYTEST_ARGS` (one a
//! line, or separated by whitespace).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lab::TempDir;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use sys::cmd::{Child, ExitStatus, Stdio};

/// The admin credentials the server is started with.
const ADMIN_KEY: &str = "compat-admin-api-key";
const ADMIN_SECRET: &str = "compat-admin-secret-key";
/// Where PostgreSQL is expected when the test command did not say.
const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// The first line `guestnet serve` prints starts with this, followed by the endpoint.
const LISTENING: &str = "guestnet serve: listening on ";

const STARTUP_DEADLINE: Duration = Duration::from_secs(60);
const SUITE_DEADLINE: Duration = Duration::from_secs(900);
const STOP_DEADLINE: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(50);

const HOW_TO_RUN: &str = "run the suite through `cargo xtask test` (or `cargo xtask compat`), \
                          which provides the venv and a PostgreSQL server";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root exists")
}

fn suite_dir() -> PathBuf {
    workspace().join("tests").join("compat")
}

fn target_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).to_path_buf()
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The python to run pytest with: `GUESTNET_TEST_PYTHON`, else the venv built here.
fn python() -> PathBuf {
    if let Some(p) = env_nonempty("GUESTNET_TEST_PYTHON") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "GUESTNET_TEST_PYTHON={} does not exist; {HOW_TO_RUN}",
            p.display()
        );
        return p;
    }
    ensure_venv()
}

/// Builds `target/compat-venv` from `tests/compat/requirements.txt` unless its stamp says it
/// already holds exactly those (the same venv and stamp `cargo xtask` uses).
fn ensure_venv() -> PathBuf {
    let requirements_path = suite_dir().join("requirements.txt");
    let requirements =
        std::fs::read_to_string(&requirements_path).expect("read tests/compat/requirements.txt");
    let target = target_dir();
    let lock = File::create(target.join("compat-venv.lock")).expect("create the venv lock");
    lock.lock().expect("lock the venv lock");
    let venv = target.join("compat-venv");
    let python = venv.join("bin").join("python");
    let stamp = venv.join(".guestnet-requirements");
    if python.is_file() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(&requirements) {
        return python;
    }
    if !python.is_file() {
        let base = if Path::new("/usr/bin/python3").is_file() {
            "/usr/bin/python3"
        } else {
            "python3"
        };
        let venv_arg = venv.to_string_lossy();
        if let Err(e) = sys::cmd::run(base, &["-m", "venv", "--clear", &venv_arg], None) {
            panic!("cannot create {}: {e}; {HOW_TO_RUN}", venv.display());
        }
    }
    let python_arg = python.to_string_lossy();
    let req_arg = requirements_path.to_string_lossy();
    let pip = [
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "-r",
        &req_arg,
    ];
    if let Err(e) = sys::cmd::run(&python_arg, &pip, None) {
        panic!("cannot install the suite's Python packages: {e}; {HOW_TO_RUN}");
    }
    std::fs::write(&stamp, &requirements).expect("write the venv stamp");
    python
}

/// Waits until `child` exits or `deadline` passes; `None` on timeout.
fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        if let Some(status) = child.try_wait().expect("poll a child process") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

fn read_file(path: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = File::open(path) {
        // Whatever could be read is what there is to show.
        let _ = f.read_to_string(&mut s);
    }
    s
}

/// The last `max` characters of `s`.
fn tail(s: &str, max: usize) -> &str {
    let start = s.len().saturating_sub(max);
    let start = (start..=s.len())
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(s.len());
    &s[start..]
}

/// A running `guestnet serve`; stopped (SIGTERM, then SIGKILL) when dropped.
struct Server {
    child: Child,
    endpoint: String,
    stdout: Arc<Mutex<String>>,
    stderr_path: PathBuf,
}

impl Server {
    fn start(data_dir: &Path, database_url: Option<&str>, logs: &Path) -> Server {
        let stderr_path = logs.join("server.stderr");
        let stderr = File::create(&stderr_path).expect("create the server's stderr file");
        let mut c = sys::cmd::Program::new(env!("CARGO_BIN_EXE_guestnet"));
        c.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--driver",
            "dry-run",
            "--data-dir",
        ])
        .arg(data_dir);
        if let Some(url) = database_url {
            c.arg("--database-url").arg(url);
        }
        // Only the arguments above choose the database.
        c.env_remove("GUESTNET_DATABASE_URL")
            .env("NO_COLOR", "1")
            .env("GUESTNET_ADMIN_API_KEY", ADMIN_KEY)
            .env("GUESTNET_ADMIN_SECRET_KEY", ADMIN_SECRET)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        let mut child = c.spawn().expect("start guestnet serve");
        let out = child.take_stdout().expect("the server's stdout is piped");
        let stdout = Arc::new(Mutex::new(String::new()));
        let (first_tx, first_rx) = mpsc::channel();
        let collected = Arc::clone(&stdout);
        std::thread::spawn(move || {
            let mut first = Some(first_tx);
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if let Some(tx) = first.take() {
                    // The receiver may have given up already; the line is kept below anyway.
                    let _ = tx.send(line.clone());
                }
                if let Ok(mut s) = collected.lock() {
                    s.push_str(&line);
                    s.push('\n');
                }
            }
        });
        let mut server = Server {
            child,
            endpoint: String::new(),
            stdout,
            stderr_path,
        };
        let line = match first_rx.recv_timeout(STARTUP_DEADLINE) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                "guestnet serve printed no line within {STARTUP_DEADLINE:?}\n{}",
                server.logs()
            ),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = wait_until(&mut server.child, Instant::now() + STOP_DEADLINE);
                panic!(
                    "guestnet serve closed its stdout before printing its endpoint \
                     (exit: {status:?})\n{}",
                    server.logs()
                )
            }
        };
        server.endpoint = parse_endpoint(&line).unwrap_or_else(|| {
            panic!(
                "the first line of guestnet serve does not name its endpoint: {line:?}\n{}",
                server.logs()
            )
        });
        server
    }

    /// What the server wrote so far, for failure messages.
    fn logs(&self) -> String {
        let stdout = self.stdout.lock().map(|s| s.clone()).unwrap_or_default();
        let stderr = read_file(&self.stderr_path);
        format!(
            "--- server stdout (tail) ---\n{}\n--- server stderr (tail) ---\n{}",
            tail(&stdout, 4000),
            tail(&stderr, 20000)
        )
    }

    fn signal(&self, signal: Signal) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // It may have exited already, which is what we want anyway.
            let _ = kill(Pid::from_raw(pid), signal);
        }
    }

    /// SIGTERM, then the exit status, or `None` if it is still running after the deadline.
    fn terminate(&mut self) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        self.signal(Signal::SIGTERM);
        wait_until(&mut self.child, Instant::now() + STOP_DEADLINE)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.terminate().is_none() {
            self.signal(Signal::SIGKILL);
            // Reap it; the kill cannot be refused.
            let _ = self.child.wait();
        }
    }
}

/// The endpoint in `guestnet serve: listening on http://127.0.0.1:PORT/client/api; ...`.
fn parse_endpoint(line: &str) -> Option<String> {
    let rest = line.strip_prefix(LISTENING)?;
    let url: &str = rest.split(|c: char| c == ';' || c.is_whitespace()).next()?;
    let port = url
        .strip_prefix("http://127.0.0.1:")?
        .strip_suffix("/client/api")?
        .parse::<u16>()
        .ok()?;
    (port != 0).then(|| url.to_string())
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let prefix = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    format!("{prefix}/{name}{query}")
}

/// `host:port` of a `postgres://user@host:port/db` URL.
fn postgres_address(url: &str) -> Option<SocketAddr> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let host_port = authority.rsplit('@').next()?;
    let host_port = if host_port.contains(':') {
        host_port.to_string()
    } else {
        format!("{host_port}:5432")
    };
    host_port.to_socket_addrs().ok()?.next()
}

fn psql(url: &str, sql: &str) -> Result<(), sys::cmd::CommandError> {
    sys::cmd::run(
        "psql",
        &["-X", "-q", "-w", "-v", "ON_ERROR_STOP=1", "-c", sql, url],
        None,
    )
    .map(|_| ())
}

/// A database made for one run; dropped (connections and all) when this is dropped.
struct Database {
    server_url: String,
    name: String,
}

impl Database {
    fn create(server_url: &str) -> Database {
        let reachable = postgres_address(server_url)
            .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(3)).is_ok());
        assert!(
            reachable,
            "no PostgreSQL server answers at {server_url}; {HOW_TO_RUN}"
        );
        assert!(
            sys::cmd::is_on_path("psql"),
            "psql (Debian package postgresql-client) is needed to create the test database; \
             {HOW_TO_RUN}"
        );
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!("guestnet_compat_{}_{nanos}", std::process::id());
        if let Err(e) = psql(server_url, &format!("CREATE DATABASE {name}")) {
            panic!("cannot create database {name} at {server_url}: {e}; {HOW_TO_RUN}");
        }
        Database {
            server_url: server_url.to_string(),
            name,
        }
    }

    fn url(&self) -> String {
        with_database(&self.server_url, &self.name)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(e) = psql(&self.server_url, &sql) {
            eprintln!("cannot drop the test database {}: {e}", self.name);
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Extra pytest arguments from `GUESTNET_COMPAT_PYTEST_ARGS`: one a line when it has several
/// lines (as `cargo xtask compat` passes them), else separated by whitespace.
fn pytest_args() -> Vec<String> {
    let raw = env_nonempty("GUESTNET_COMPAT_PYTEST_ARGS").unwrap_or_default();
    if raw.contains('\n') {
        raw.lines()
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect()
    } else {
        raw.split_whitespace().map(str::to_string).collect()
    }
}

/// Starts a server on `backend`, runs the pytest suite against it, and stops the server.
fn run_suite(backend: Backend) {
    let python = python();
    let dir = TempDir::new().expect("a temporary directory");
    let data_dir = dir.path().join("data");
    std::fs::create_dir_all(&data_dir).expect("create the data directory");

    // Declared before the server so that it is dropped after the server has stopped.
    let database = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => {
            let url = env_nonempty("GUESTNET_TEST_POSTGRES_URL")
                .unwrap_or_else(|| DEFAULT_POSTGRES_URL.to_string());
            Some(Database::create(&url))
        }
    };
    // SQLite is what the server uses without --database-url; that default is exercised here.
    let database_url = database.as_ref().map(Database::url);
    let mut server = Server::start(&data_dir, database_url.as_deref(), dir.path());

    let out_path = dir.path().join("pytest.out");
    let out = File::create(&out_path).expect("create the pytest output file");
    let err = out.try_clone().expect("clone the pytest output file");
    let mut pytest = sys::cmd::Program::new(&python);
    pytest
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfEs"])
        .args(pytest_args())
        .arg(suite_dir())
        .current_dir(suite_dir())
        .env("CLOUDSTACK_ENDPOINT", &server.endpoint)
        .env("CLOUDSTACK_KEY", ADMIN_KEY)
        .env("CLOUDSTACK_SECRET", ADMIN_SECRET)
        .env("GUESTNET_COMPAT_BACKEND", backend.name())
        .env("GUESTNET_COMPAT_DATA_DIR", &data_dir)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err));
    let mut child = pytest.spawn().expect("start pytest");
    let status = wait_until(&mut child, Instant::now() + SUITE_DEADLINE);
    if status.is_none() {
        // Timed out: stop it before reporting.
        let _ = child.kill();
        let _ = child.wait();
    }
    let output = read_file(&out_path);
    match status {
        Some(s) if s.success() => println!("{output}"),
        Some(s) => panic!(
            "the compatibility suite failed against {} ({s}):\n{output}\n{}",
            backend.name(),
            server.logs()
        ),
        None => panic!(
            "the compatibility suite did not finish within {SUITE_DEADLINE:?} against {}:\n\
             {output}\n{}",
            backend.name(),
            server.logs()
        ),
    }

    let stopped = server.terminate();
    assert!(
        stopped.is_some(),
        "guestnet serve did not exit within {STOP_DEADLINE:?} of SIGTERM\n{}",
        server.logs()
    );
    drop(server);
    drop(database);
}

#[test]
fn cs_client_suite_against_sqlite() {
    run_suite(Backend::Sqlite);
}

#[test]
fn cs_client_suite_against_postgres() {
    run_suite(Backend::Postgres);
}

#[test]
fn endpoint_is_read_from_the_startup_line() {
    assert_eq!(
        parse_endpoint(
            "guestnet serve: listening on http://127.0.0.1:41234/client/api; database sqlite"
        )
        .as_deref(),
        Some("http://127.0.0.1:41234/client/api")
    );
    assert_eq!(
        parse_endpoint("guestnet serve: listening on http://127.0.0.1:0/client/api; x"),
        None
    );
    assert_eq!(parse_endpoint("starting"), None);
}

#[test]
fn database_urls_get_the_run_database() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/postgres", "db1"),
        "postgres://postgres@127.0.0.1:5432/db1"
    );
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5433", "db1"),
        "postgres://postgres@127.0.0.1:5433/db1"
    );
    assert_eq!(
        with_database("postgres://u@h:1/postgres?sslmode=disable", "db1"),
        "postgres://u@h:1/db1?sslmode=disable"
    );
    assert_eq!(
        postgres_address("postgres://postgres@127.0.0.1:5499/postgres"),
        Some(SocketAddr::from(([127, 0, 0, 1], 5499)))
    );
}
