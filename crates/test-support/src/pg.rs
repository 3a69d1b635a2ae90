//! A private PostgreSQL cluster for one test, reachable only through its own Unix socket.
//!
//! The cluster lives in a fresh directory under `/tmp` owned by the `postgres` user (initdb
//! refuses to run as root, so every server program runs through `runuser -u postgres --`). It
//! listens on no TCP address at all, so a server already running on the machine (for example on
//! 127.0.0.1:5432) is never disturbed; the port number only names the socket file
//! `<home>/sock/.s.PGSQL.<port>`. Unix sockets with a path are not tied to a network namespace,
//! so processes inside the test's namespaces reach the cluster through the same URL.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sys::cmd::{Program, Stdio};

/// The database every cluster gets, named in [`PgCluster::url`].
pub const DATABASE: &str = "guestnet";

/// Seconds `pg_ctl` waits for the server to start or stop.
const PG_CTL_WAIT: &str = "60";

/// Tells clusters made by one test process apart.
static CLUSTERS: AtomicU32 = AtomicU32::new(0);

/// A PostgreSQL server program that failed, with what it said.
#[derive(Debug, thiserror::Error)]
#[error("`{command}` ({status}): {said}")]
pub struct PgError {
    /// The command line (through `runuser`).
    pub command: String,
    /// Its exit status.
    pub status: sys::cmd::ExitStatus,
    /// What it wrote to standard output and error, trimmed.
    pub said: String,
}

/// A PostgreSQL cluster of one test: started by [`PgCluster::start`], stopped (immediately) and
/// removed with its files on drop, also when the test panics.
#[derive(Debug)]
pub struct PgCluster {
    bin: PathBuf,
    home: PathBuf,
    port: u16,
}

impl PgCluster {
    /// Makes, configures and starts a fresh cluster with a database `guestnet`, trusting every
    /// local connection.
    ///
    /// # Panics
    /// If PostgreSQL's server programs are missing or the cluster cannot be made or started;
    /// the message carries what the programs said.
    pub fn start() -> PgCluster {
        let bin = server_bin_dir().expect(
            "PostgreSQL's server programs (initdb, pg_ctl): install the `postgresql` package",
        );
        let home = fresh_home();
        // From here on, a panic drops the cluster, which removes `home`.
        let cluster = PgCluster {
            bin,
            home,
            port: pick_port(),
        };
        let sock = cluster.socket_dir();
        std::fs::create_dir(&sock).expect("create the socket directory");
        give_to_postgres(&sock, 0o755);

        let data = cluster.data_dir();
        let data_arg = data.to_str().expect("a UTF-8 data directory");
        cluster
            .as_postgres(
                "initdb",
                &[
                    "-D",
                    data_arg,
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                    "--no-locale",
                    "--no-sync",
                ],
            )
            .unwrap_or_else(|e| panic!("initdb failed: {e}"));

        let settings = format!(
            "\n# Written by the guestnet test support.\n\
             listen_addresses = ''\n\
             unix_socket_directories = '{sock}'\n\
             port = {port}\n\
             max_connections = 200\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n",
            sock = sock.display(),
            port = cluster.port,
        );
        let conf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).expect("read postgresql.conf");
        text.push_str(&settings);
        std::fs::write(&conf, text).expect("write postgresql.conf");

        cluster.start_again();
        let port = cluster.port.to_string();
        let sock_arg = sock.to_str().expect("a UTF-8 socket directory");
        cluster
            .as_postgres(
                "createdb",
                &["-h", sock_arg, "-p", &port, "-U", "postgres", DATABASE],
            )
            .unwrap_or_else(|e| panic!("createdb failed: {e}\nserver log:\n{}", cluster.log()));
        cluster
    }

    /// A URL (libpq's form, which the management server's database driver and `psql` both
    /// read) that connects as `postgres` to database `guestnet` through the cluster's Unix
    /// socket.
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres@localhost/{DATABASE}?host={}&port={}",
            self.socket_dir().display(),
            self.port
        )
    }

    /// The directory holding the socket file `.s.PGSQL.<port>`.
    pub fn socket_dir(&self) -> PathBuf {
        self.home.join("sock")
    }

    /// The port number; it names the socket file, nothing listens on TCP.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Restarts the server (fast shutdown: open connections are cut), waiting until it accepts
    /// connections again.
    ///
    /// # Panics
    /// If `pg_ctl restart` fails.
    pub fn restart(&self) {
        self.pg_ctl(&["-l", &self.log_arg(), "-m", "fast", "restart"])
            .unwrap_or_else(|e| panic!("pg_ctl restart failed: {e}\nserver log:\n{}", self.log()));
    }

    /// Stops the server (fast shutdown) and leaves it down until [`PgCluster::start_again`].
    ///
    /// # Panics
    /// If `pg_ctl stop` fails.
    pub fn stop(&self) {
        self.pg_ctl(&["-m", "fast", "stop"])
            .unwrap_or_else(|e| panic!("pg_ctl stop failed: {e}\nserver log:\n{}", self.log()));
    }

    /// Starts the stopped server again, waiting until it accepts connections.
    ///
    /// # Panics
    /// If `pg_ctl start` fails.
    pub fn start_again(&self) {
        self.pg_ctl(&["-l", &self.log_arg(), "start"])
            .unwrap_or_else(|e| panic!("pg_ctl start failed: {e}\nserver log:\n{}", self.log()));
    }

    /// The server's log so far (empty if there is none yet), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn data_dir(&self) -> PathBuf {
        self.home.join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.home.join("log")
    }

    fn log_arg(&self) -> String {
        self.log_path()
            .to_str()
            .expect("a UTF-8 log path")
            .to_string()
    }

    /// Runs `pg_ctl -D <data> -w -t 60 args…` as user `postgres`.
    fn pg_ctl(&self, args: &[&str]) -> Result<(), PgError> {
        let data = self.data_dir();
        let mut all = vec!["-D", data.to_str().expect("a UTF-8 data directory")];
        all.extend(["-w", "-t", PG_CTL_WAIT]);
        all.extend(args);
        self.as_postgres("pg_ctl", &all)
    }

    /// Runs PostgreSQL program `program` (from the server's bin directory, else `PATH`) as user
    /// `postgres` in the cluster's home. Its output goes to a file rather than a pipe, so a
    /// server it starts can never hold our end open; on failure the error carries that output.
    fn as_postgres(&self, program: &str, args: &[&str]) -> Result<(), PgError> {
        self.as_postgres_said(program, args).map(|_| ())
    }

    /// Runs one of the cluster's programs as `postgres`; what it wrote, trimmed, on success.
    fn as_postgres_said(&self, program: &str, args: &[&str]) -> Result<String, PgError> {
        let path = self.bin.join(program);
        let program_path = if path.is_file() {
            path
        } else {
            PathBuf::from(program)
        };
        let out_path = self.home.join("command.out");
        let out = File::create(&out_path).expect("create the command output file");
        let mut c = runuser_postgres();
        c.arg(&program_path)
            .args(args)
            .current_dir(&self.home)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("duplicate the output file"))
            .stderr(out);
        let status = c
            .status()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program_path.display()));
        let said = std::fs::read_to_string(&out_path).unwrap_or_default();
        if status.success() {
            Ok(said.trim().to_string())
        } else {
            Err(PgError {
                command: c.line().to_string(),
                status,
                said: said.trim().to_string(),
            })
        }
    }

    /// The postmaster's process id, from `postmaster.pid`, while it runs.
    fn postmaster_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.data_dir().join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if let Some(pid) = self.postmaster_pid() {
            if let Err(e) = self.pg_ctl(&["-m", "immediate", "stop"]) {
                eprintln!(
                    "PgCluster: stopping the cluster in {}: {e}",
                    self.home.display()
                );
                // Last resort, so no server outlives the test; its children follow it.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&self.home) {
            eprintln!("PgCluster: cannot remove {}: {e}", self.home.display());
        }
    }
}

/// `runuser -u postgres --`, ready for the program and its arguments.
fn runuser_postgres() -> Program {
    let runuser = ["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .unwrap_or("runuser");
    let mut c = Program::new(runuser);
    c.args(["-u", "postgres", "--"]);
    c
}

/// PostgreSQL's server programs: the newest `/usr/lib/postgresql/<version>/bin` holding
/// `initdb` and `pg_ctl`, else the first such directory on `PATH`.
fn server_bin_dir() -> Option<PathBuf> {
    let has_both = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.split('.').next()?.parse().ok()?;
            let bin = e.path().join("bin");
            has_both(&bin).then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version)
        .map(|(_, bin)| bin);
    newest.or_else(|| {
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .find(|d| has_both(d))
    })
}

/// A new, empty directory under `/tmp` (which user `postgres` can reach, unlike a home under
/// `/root`), owned by `postgres`. Mode 0711: only `postgres` may list it, but other users may
/// pass through to the socket directory inside.
fn fresh_home() -> PathBuf {
    let n = CLUSTERS.fetch_add(1, Ordering::Relaxed);
    let home = PathBuf::from(format!("/tmp/gnt-pg-{}-{n}", std::process::id()));
    if home.exists() {
        // Left by an earlier process that had our pid and died before its drop ran.
        std::fs::remove_dir_all(&home)
            .unwrap_or_else(|e| panic!("cannot remove the stale {}: {e}", home.display()));
    }
    std::fs::create_dir(&home).unwrap_or_else(|e| panic!("cannot create {}: {e}", home.display()));
    give_to_postgres(&home, 0o711);
    home
}

/// Makes user `postgres` own `dir` and sets its mode.
fn give_to_postgres(dir: &Path, mode: u32) {
    let user = nix::unistd::User::from_name("postgres")
        .expect("look up user postgres")
        .expect("a user named postgres (the postgresql package makes it)");
    nix::unistd::chown(dir, Some(user.uid), Some(user.gid))
        .unwrap_or_else(|e| panic!("cannot give {} to postgres: {e}", dir.display()));
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("cannot set the mode of {}: {e}", dir.display()));
}

/// A port number in 20000–60000 that no other PostgreSQL server on the machine seems to use:
/// no socket file of that number in the usual socket directories, and nothing answering on
/// 127.0.0.1 at it. (Our cluster listens on no TCP address, and its socket file lives in its own
/// directory, so even a clash would not disturb anyone; this just keeps things unambiguous.)
fn pick_port() -> u16 {
    const LOW: u32 = 20_000;
    const SPAN: u32 = 40_001;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let seed = std::process::id()
        .wrapping_mul(7_919)
        .wrapping_add(nanos)
        .wrapping_add(CLUSTERS.load(Ordering::Relaxed).wrapping_mul(104_729));
    (0..SPAN)
        .map(|i| LOW + (seed.wrapping_add(i.wrapping_mul(7_907)) % SPAN))
        .map(|p| u16::try_from(p).expect("a port below 65536"))
        .find(|&port| port_looks_free(port))
        .expect("a free port number between 20000 and 60000")
}

fn port_looks_free(port: u16) -> bool {
    let socket = format!(".s.PGSQL.{port}");
    let taken_by_socket = ["/tmp", "/var/run/postgresql", "/run/postgresql"]
        .iter()
        .any(|d| Path::new(d).join(&socket).exists());
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    !taken_by_socket && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err()
}

#[cfg(test)]
mod self_tests {
    use std::time::Instant;

    use super::*;

    /// `statement`'s answer, unaligned and without headers, from `psql` connecting by `url`.
    fn psql(pg: &PgCluster, url: &str, statement: &str) -> Result<String, PgError> {
        pg.as_postgres_said(
            "psql",
            &["-X", "-q", "-A", "-t", "-d", url, "-c", statement],
        )
    }

    fn select_one(pg: &PgCluster, url: &str) -> Result<String, PgError> {
        psql(pg, url, "SELECT 1")
    }

    #[test]
    #[ignore = "needs root and network namespaces: run by cargo xtask test"]
    fn cluster_answers_over_its_socket_restarts_and_is_removed_on_drop() {
        let pg = PgCluster::start();
        let url = pg.url();
        let sock = pg.socket_dir();
        assert!(
            sock.join(format!(".s.PGSQL.{}", pg.port())).exists(),
            "no socket file in {}",
            sock.display()
        );
        assert!(
            pg.log().contains("ready to accept connections"),
            "{}",
            pg.log()
        );

        assert_eq!(select_one(&pg, &url).expect("SELECT 1"), "1");
        let db = psql(&pg, &url, "SELECT current_database()::text").expect("current_database()");
        assert_eq!(db, DATABASE);
        let listen = psql(&pg, &url, "SHOW listen_addresses").expect("SHOW listen_addresses");
        assert_eq!(listen, "", "the cluster must not listen on TCP");

        pg.restart();
        assert_eq!(select_one(&pg, &url).expect("SELECT 1 after restart"), "1");

        pg.stop();
        assert!(select_one(&pg, &url).is_err(), "a stopped cluster answered");
        pg.start_again();
        assert_eq!(
            select_one(&pg, &url).expect("SELECT 1 after starting again"),
            "1"
        );

        let postmaster = pg
            .postmaster_pid()
            .expect("postmaster.pid of a running cluster");
        let home = pg.home.clone();
        drop(pg);
        assert!(!sock.exists(), "{} outlived the cluster", sock.display());
        assert!(!home.exists(), "{} outlived the cluster", home.display());
        let deadline = Instant::now() + Duration::from_secs(5);
        while sys::proc::is_alive(postmaster) {
            assert!(
                Instant::now() < deadline,
                "postmaster {postmaster} still runs"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
