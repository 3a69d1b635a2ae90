//! What the client compatibility suite needs before it runs: a Python virtual environment with
//! the pinned clients (the CloudStack client `cs`, Ansible with its bundled CloudStack
//! collection, Apache Libcloud) and pytest, and a PostgreSQL server it may create databases on.
//!
//! The venv lives in `target/compat-venv` and is rebuilt only when the pinned requirements
//! change. For PostgreSQL, a server already answering on 127.0.0.1:5432 is used as it is;
//! otherwise a private cluster is initialised under `target/compat-pg` (trust auth, loopback
//! only) and stopped again when the returned guard is dropped, whatever the tests did.

use anyhow::{bail, Context, Result};
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{has_program, is_root, path_with_sbin, run};

/// The requirements file of the suite, relative to the workspace root.
const REQUIREMENTS: &str = "tests/compat/requirements.txt";
/// The venv directory, relative to the target directory.
const VENV: &str = "compat-venv";
/// The stamp inside the venv: the requirements it was last installed from.
const STAMP: &str = ".guestnet-requirements";
/// Where a private cluster lives, relative to the target directory.
const CLUSTER: &str = "compat-pg";
/// The port PostgreSQL normally answers on.
const DEFAULT_PORT: u16 = 5432;

/// The workspace root (xtask sits directly below it).
pub(crate) fn workspace() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// The cargo target directory: `CARGO_TARGET_DIR` or `<workspace>/target`.
pub(crate) fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                workspace().join(d)
            }
        }
        _ => workspace().join("target"),
    }
}

/// Makes sure `target/compat-venv` holds exactly the pinned requirements; returns its python.
///
/// Idempotent and safe to run concurrently (a file lock serialises installers): when the venv's
/// stamp matches the requirements file, nothing is run at all.
pub(crate) fn ensure_venv() -> Result<PathBuf> {
    let requirements_path = workspace().join(REQUIREMENTS);
    let requirements = std::fs::read_to_string(&requirements_path)
        .with_context(|| format!("cannot read {}", requirements_path.display()))?;
    let target = target_dir();
    std::fs::create_dir_all(&target)
        .with_context(|| format!("cannot create {}", target.display()))?;
    let lock = std::fs::File::create(target.join(format!("{VENV}.lock")))
        .context("cannot create the venv lock file")?;
    lock.lock().context("cannot lock the venv lock file")?;

    let venv = target.join(VENV);
    let python = venv.join("bin").join("python");
    let stamp = venv.join(STAMP);
    if python.is_file() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(&requirements) {
        eprintln!("xtask: {} is up to date", venv.display());
        return Ok(python);
    }
    if !python.is_file() {
        let base = if Path::new("/usr/bin/python3").is_file() {
            "/usr/bin/python3"
        } else {
            "python3"
        };
        run(Command::new(base)
            .args(["-m", "venv", "--clear"])
            .arg(&venv))
        .context("cannot create the compatibility venv (Debian needs the python3-venv package)")?;
    }
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .arg("-r")
        .arg(&requirements_path))
    .context("cannot install the compatibility suite's Python packages from PyPI")?;
    std::fs::write(&stamp, &requirements)
        .with_context(|| format!("cannot write {}", stamp.display()))?;
    Ok(python)
}

/// The PostgreSQL server the tests use; stops the private cluster (if one was started) on drop.
pub(crate) struct Postgres {
    /// A URL naming the server's `postgres` database as the `postgres` superuser.
    pub(crate) url: String,
    cluster: Option<Cluster>,
}

impl Postgres {
    /// Whether the server is a private cluster started by this process.
    pub(crate) fn is_private(&self) -> bool {
        self.cluster.is_some()
    }
}

/// A cluster this process started.
struct Cluster {
    pg_ctl: PathBuf,
    data: PathBuf,
    as_postgres: bool,
    /// Removed after stopping (set when the cluster had to live outside the target directory).
    remove: Option<PathBuf>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        eprintln!("xtask: stopping the private PostgreSQL cluster");
        if let Err(e) = stop_cluster(&self.pg_ctl, &self.data, self.as_postgres) {
            eprintln!("xtask: {e:#}");
        }
        if let Some(dir) = &self.remove {
            if let Err(e) = std::fs::remove_dir_all(dir) {
                eprintln!("xtask: cannot remove {}: {e}", dir.display());
            }
        }
    }
}

fn url_for(port: u16) -> String {
    format!("postgres://postgres@127.0.0.1:{port}/postgres")
}

fn answers(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
}

/// A command run as the `postgres` user when we are root (initdb refuses to run as root).
fn pg_command(program: &Path, as_postgres: bool) -> Command {
    if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn stop_cluster(pg_ctl: &Path, data: &Path, as_postgres: bool) -> Result<()> {
    run(pg_command(pg_ctl, as_postgres)
        .arg("-D")
        .arg(data)
        .args(["-m", "fast", "-w", "-t", "60", "stop"])
        .stdout(Stdio::null()))
}

/// PostgreSQL's server programs: the newest `/usr/lib/postgresql/<ver>/bin`, else `PATH`.
fn server_bin_dir() -> Option<PathBuf> {
    let mut best: Option<(u32, PathBuf)> = None;
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        for e in entries.flatten() {
            let bin = e.path().join("bin");
            let version = e
                .file_name()
                .to_string_lossy()
                .split('.')
                .next()
                .and_then(|v| v.parse::<u32>().ok());
            if let Some(v) = version {
                if bin.join("initdb").is_file()
                    && bin.join("pg_ctl").is_file()
                    && best.as_ref().is_none_or(|(b, _)| v > *b)
                {
                    best = Some((v, bin));
                }
            }
        }
    }
    if let Some((_, bin)) = best {
        return Some(bin);
    }
    path_with_sbin()
        .split(':')
        .map(PathBuf::from)
        .find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
}

/// Checks that user `postgres` gets in without a password (what the tests rely on).
fn check_trust(url: &str) -> Result<()> {
    if !has_program("psql") {
        return Ok(());
    }
    let out = Command::new("psql")
        .args(["-X", "-q", "-w", "-t", "-c", "select 1"])
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .context("cannot run psql")?;
    if !out.status.success() {
        bail!(
            "a PostgreSQL server answers at {url} but does not let user postgres in \
             without a password: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Finds or starts the PostgreSQL server the tests use.
pub(crate) fn ensure_postgres() -> Result<Postgres> {
    let root = is_root();
    let target = target_dir();
    let home = target.join(CLUSTER);
    let data = home.join("data");

    // A cluster left running by an interrupted run is ours: stop it before looking around.
    if data.join("postmaster.pid").is_file() {
        if let Some(bin) = server_bin_dir() {
            eprintln!("xtask: stopping a private PostgreSQL cluster left by an earlier run");
            if let Err(e) = stop_cluster(&bin.join("pg_ctl"), &data, root) {
                eprintln!("xtask: {e:#}");
            }
        }
    }

    if answers(DEFAULT_PORT) {
        let url = url_for(DEFAULT_PORT);
        check_trust(&url)?;
        eprintln!("xtask: using the PostgreSQL server answering on 127.0.0.1:{DEFAULT_PORT}");
        return Ok(Postgres { url, cluster: None });
    }

    let bin = match server_bin_dir() {
        Some(bin) => bin,
        None if root => {
            eprintln!("xtask: installing postgresql");
            run(Command::new("apt-get").args(["update", "-qq"]))?;
            run(Command::new("apt-get")
                .args([
                    "install",
                    "-y",
                    "-qq",
                    "--no-install-recommends",
                    "postgresql",
                ])
                .env("DEBIAN_FRONTEND", "noninteractive"))?;
            // The package may have started its own cluster; that one does as well as ours.
            if answers(DEFAULT_PORT) {
                let url = url_for(DEFAULT_PORT);
                if check_trust(&url).is_ok() {
                    eprintln!("xtask: using the cluster the postgresql package started");
                    return Ok(Postgres { url, cluster: None });
                }
            }
            server_bin_dir().context("postgresql is installed but initdb/pg_ctl are missing")?
        }
        None => bail!(
            "no PostgreSQL server answers on 127.0.0.1:{DEFAULT_PORT} and initdb is missing: \
             run `cargo xtask test` as root (it installs postgresql) or start a server"
        ),
    };

    let port = free_port()?;
    let (home, remove) = cluster_home(home, root)?;
    let data = home.join("data");
    let log = home.join("postgres.log");
    let initdb = bin.join("initdb");
    let pg_ctl = bin.join("pg_ctl");
    eprintln!(
        "xtask: starting a private PostgreSQL cluster in {} on port {port}",
        home.display()
    );
    run(pg_command(&initdb, root)
        .arg("-D")
        .arg(&data)
        .args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ])
        .stdout(Stdio::null()))?;
    let mut conf = std::fs::OpenOptions::new()
        .append(true)
        .open(data.join("postgresql.conf"))
        .context("cannot open the cluster's postgresql.conf")?;
    writeln!(
        conf,
        "\n# set by cargo xtask for the test run\n\
         listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = ''\n\
         fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 200"
    )
    .context("cannot write the cluster's postgresql.conf")?;
    drop(conf);
    let cluster = Cluster {
        pg_ctl: pg_ctl.clone(),
        data: data.clone(),
        as_postgres: root,
        remove,
    };
    let started = run(pg_command(&pg_ctl, root)
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(&log)
        .args(["-w", "-t", "60", "start"])
        .stdout(Stdio::null()));
    if let Err(e) = started {
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        // Dropping `cluster` stops whatever did start.
        drop(cluster);
        return Err(e.context(format!("PostgreSQL did not start; its log:\n{log}")));
    }
    Ok(Postgres {
        url: url_for(port),
        cluster: Some(cluster),
    })
}

/// 5432 when nothing holds it, else any free loopback port.
fn free_port() -> Result<u16> {
    if TcpListener::bind(("127.0.0.1", DEFAULT_PORT)).is_ok() {
        return Ok(DEFAULT_PORT);
    }
    let listener = TcpListener::bind(("127.0.0.1", 0)).context("cannot find a free port")?;
    Ok(listener.local_addr()?.port())
}

/// A fresh, empty directory the cluster's owner can write: `target/compat-pg`, or (when user
/// `postgres` cannot reach the target directory) a private directory under the system's
/// temporary directory, returned as the second value so it is removed afterwards.
fn cluster_home(home: PathBuf, root: bool) -> Result<(PathBuf, Option<PathBuf>)> {
    if home.exists() {
        std::fs::remove_dir_all(&home)
            .with_context(|| format!("cannot remove {}", home.display()))?;
    }
    std::fs::create_dir_all(&home).with_context(|| format!("cannot create {}", home.display()))?;
    if !root {
        return Ok((home, None));
    }
    run(Command::new("chown").arg("postgres:postgres").arg(&home))?;
    let reachable = Command::new("runuser")
        .args(["-u", "postgres", "--", "test", "-w"])
        .arg(&home)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if reachable {
        return Ok((home, None));
    }
    let tmp = std::env::temp_dir().join(format!("guestnet-compat-pg-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    run(Command::new("chown").arg("postgres:postgres").arg(&tmp))?;
    Ok((tmp.clone(), Some(tmp)))
}
