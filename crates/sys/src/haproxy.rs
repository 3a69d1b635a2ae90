//! One haproxy per router: start it in the router's namespace, adopt it after a restart of the
//! router daemon, reload it seamlessly, drive its runtime API and read its server states.
//!
//! haproxy runs in master-worker mode, daemonized (`-W -D`), so it keeps serving while the router
//! daemon restarts, as nftables rules do. Its files live in one directory that the caller owns
//! (see [`HaproxyFiles`]); the caller writes `haproxy.cfg`, rendered whole (its `global` section
//! included) by the `render` crate, whose `global` section must name
//! [`HaproxyFiles::stats_socket`] as the admin socket with `expose-fd listeners` and run haproxy
//! in master-worker mode.
//!
//! Facts about haproxy 2.6.12 this module relies on (measured):
//! - The master CLI (`-S`) keeps a connection open until the client shuts down its writing side;
//!   the stats socket closes after one request. Every request here shuts its writing side down.
//! - `reload` on the master CLI re-executes the master, which passes the listening sockets to the
//!   new worker (`expose-fd listeners`): established connections stay with the old worker, which
//!   is listed under `# old workers` in `show proc` until they end. The master CLI refuses
//!   connections for a few milliseconds meanwhile. A reload with a bad configuration keeps the
//!   old worker and counts up `[failed: N]` in `show proc`.
//! - Commands separated by `;` are answered in one stream, but `del server` answers ("Server
//!   deleted.", "No such server.", …) lack the blank line that ends every other answer, so that
//!   stream cannot be split reliably. [`Haproxy::runtime`] uses the CLI's `prompt` mode instead,
//!   where every answer ends with a `> ` prompt on a line of its own.
//! - haproxy binds its listeners with `SO_REUSEPORT`: a second haproxy in the same namespace binds
//!   the same addresses without error and shares the traffic. [`Haproxy::ensure_running`]
//!   therefore never starts a second master beside a live one.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::cmd::{self, CommandError};
use crate::nft::Netns;

#[cfg(test)]
mod tests;

/// The haproxy program.
const HAPROXY: &str = "/usr/sbin/haproxy";
/// How long to wait for a new master and worker to answer.
const START_DEADLINE: Duration = Duration::from_secs(30);
/// How long to wait for a reloaded worker to answer.
const RELOAD_DEADLINE: Duration = Duration::from_secs(30);
/// How long killed processes may take to disappear.
const KILL_DEADLINE: Duration = Duration::from_secs(5);
/// How long one socket request may wait for haproxy.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a wait looks again.
const POLL_INTERVAL: Duration = Duration::from_millis(5);

/// Answers of the runtime API that report a refusal (prefixes, as haproxy 2.6 words them).
const ERROR_PREFIXES: &[&str] = &[
    "No such backend",
    "No such server",
    "Unknown command",
    "Server still has connections attached to it",
    "Only servers in maintenance mode can be deleted",
    "'cookie' option is not accepted",
    "Require 'backend/server'",
    "Already exists a server with the same name",
    "Backend must use a dynamic load balancing",
    "Backend is using a static LB algorithm",
    "Permission denied",
    "Server is still tracked",
    "Server has tracking servers",
    "Invalid",
    "Missing",
    "Unknown",
    "Failed",
    "Cannot",
    "Can't",
    "Out of memory",
    "Require ",
    "Unsupported",
    "Error",
];

/// A haproxy operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum HaproxyError {
    /// `haproxy -c` could not be run.
    #[error("cannot check haproxy configuration {path}")]
    Check {
        /// The configuration file.
        path: PathBuf,
        /// Why.
        #[source]
        source: CommandError,
    },
    /// haproxy refused the configuration.
    #[error("haproxy refused configuration {path}: {message}")]
    ConfigInvalid {
        /// The configuration file.
        path: PathBuf,
        /// haproxy's own words (its alerts), trimmed.
        message: String,
    },
    /// The master could not be started (haproxy's message is in the source).
    #[error("cannot start haproxy with {config} in {netns}")]
    Start {
        /// Where.
        netns: Netns,
        /// The configuration file.
        config: PathBuf,
        /// Why.
        #[source]
        source: CommandError,
    },
    /// A socket request failed.
    #[error("request `{command}` on {socket} failed")]
    Socket {
        /// The socket.
        socket: PathBuf,
        /// The request (its first command when there are several).
        command: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A runtime command cannot be sent as one line.
    #[error("runtime command {command:?} contains a line break or `;`")]
    InvalidCommand {
        /// The command.
        command: String,
    },
    /// The answers to a request could not be told apart.
    #[error("expected {expected} answers on {socket}, got {got}")]
    Framing {
        /// The socket.
        socket: PathBuf,
        /// How many commands were sent.
        expected: usize,
        /// How many answers came back.
        got: usize,
    },
    /// An answer did not have the expected shape.
    #[error("cannot parse the answer to `{command}`: {detail}")]
    Parse {
        /// The command.
        command: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The pid file could not be read.
    #[error("cannot read pid file {path}")]
    PidFile {
        /// The pid file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The master refused the new configuration and kept the old worker.
    #[error("haproxy master {pid} in {netns} failed to reload {config}; the old worker serves on")]
    ReloadFailed {
        /// Where.
        netns: Netns,
        /// The master.
        pid: i32,
        /// The configuration file.
        config: PathBuf,
    },
    /// A wait ran past its deadline.
    #[error("haproxy in {netns} did not {what} within {waited:?}")]
    Timeout {
        /// Where.
        netns: Netns,
        /// What was awaited.
        what: &'static str,
        /// How long it was awaited.
        waited: Duration,
    },
    /// A process could not be signalled.
    #[error("cannot send {signal} to haproxy process {pid} in {netns}")]
    Signal {
        /// Where.
        netns: Netns,
        /// The process.
        pid: i32,
        /// The signal.
        signal: Signal,
        /// Why.
        #[source]
        source: nix::errno::Errno,
    },
}

/// The files of one router's haproxy, all in one directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaproxyFiles {
    dir: PathBuf,
}

impl HaproxyFiles {
    /// The files in `dir` (for example `<state>/haproxy`).
    ///
    /// # Assumptions
    /// The path has no whitespace or `,` (it is written into the configuration and the `-S`
    /// argument) and is short enough for a UNIX socket path (about 100 bytes with the file name).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `haproxy.cfg`, written by the caller.
    pub fn config(&self) -> PathBuf {
        self.dir.join("haproxy.cfg")
    }

    /// `master.sock`, the master CLI.
    pub fn master_socket(&self) -> PathBuf {
        self.dir.join("master.sock")
    }

    /// `stats.sock`, the runtime API of the current worker.
    pub fn stats_socket(&self) -> PathBuf {
        self.dir.join("stats.sock")
    }

    /// `haproxy.pid`, the master's pid.
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("haproxy.pid")
    }
}

/// Checks a configuration with `haproxy -c -f PATH`. It runs in the host namespace: a check
/// neither binds nor connects. `netns` is the router's, for the record only.
///
/// # Errors
/// [`HaproxyError::ConfigInvalid`] with haproxy's message when it refuses the file,
/// [`HaproxyError::Check`] when haproxy cannot be run.
pub fn check(netns: &Netns, config: &Path) -> Result<(), HaproxyError> {
    let path = config.display().to_string();
    match cmd::run(HAPROXY, &["-c", "-f", &path], None) {
        Ok(_) => Ok(()),
        Err(CommandError::Failed { stderr, .. }) => {
            tracing::debug!(%netns, path, "haproxy refused configuration");
            Err(HaproxyError::ConfigInvalid {
                path: config.to_path_buf(),
                message: alerts(&stderr),
            })
        }
        Err(source) => Err(HaproxyError::Check {
            path: config.to_path_buf(),
            source,
        }),
    }
}

/// haproxy's complaints without its `[NOTICE]` lines (version and executable path).
fn alerts(stderr: &str) -> String {
    stderr
        .lines()
        .filter(|l| !l.starts_with("[NOTICE]"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether a runtime API answer reports a refusal ("No such server.", "Server still has
/// connections attached to it, cannot remove it.", "Unknown command…", …). An empty answer is a
/// success.
pub fn is_error(answer: &str) -> bool {
    let answer = answer.trim_start();
    ERROR_PREFIXES.iter().any(|p| answer.starts_with(p))
}

/// The processes of a master, as `show proc` on the master CLI lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Processes {
    /// The master.
    pub master: i32,
    /// How many times the master reloaded.
    pub reloads: u32,
    /// How many of those reloads failed.
    pub failed_reloads: u32,
    /// The current workers (one in our configuration).
    pub workers: Vec<i32>,
    /// Workers of earlier generations still draining connections.
    pub old_workers: Vec<i32>,
}

/// What a successful reload changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// The workers before the reload (now old, or gone).
    pub previous_workers: Vec<i32>,
    /// The worker that now answers the runtime API.
    pub worker: i32,
    /// How long the reload took, until the new worker answered.
    pub took: Duration,
}

/// A server's operational state (`srv_op_state` of `show servers state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpState {
    /// Down.
    Stopped,
    /// Coming up (slowstart).
    Starting,
    /// Up.
    Running,
    /// Going down (soft stop).
    Stopping,
    /// A value haproxy 2.6 does not document.
    Other(u8),
}

impl From<u8> for OpState {
    fn from(v: u8) -> Self {
        match v {
            0 => OpState::Stopped,
            1 => OpState::Starting,
            2 => OpState::Running,
            3 => OpState::Stopping,
            other => OpState::Other(other),
        }
    }
}

/// One server of one backend, from `show servers state` and `show stat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerState {
    /// The backend (or `listen` section).
    pub backend: String,
    /// The server's name.
    pub server: String,
    /// Its address.
    pub address: String,
    /// Its port (0 when it has none).
    pub port: u16,
    /// Its operational state.
    pub op_state: OpState,
    /// Its administrative state bits (`srv_admin_state`): 0x01 forced maintenance, 0x08 forced
    /// drain, others inherited or from resolution; see [`ServerState::is_maintenance`].
    pub admin_state: u8,
    /// The status column of `show stat`: "UP", "DOWN", "MAINT", "no check", "UP 1/3", …
    pub status: String,
    /// The last health check's status ("L4OK", "L4CON", …), empty without checks.
    pub check_status: String,
    /// Connections now open to it (`scur`).
    pub current_sessions: u64,
    /// Connections it has had (`stot`).
    pub total_sessions: u64,
}

impl ServerState {
    /// Whether it is in maintenance (forced, inherited or from resolution).
    pub fn is_maintenance(&self) -> bool {
        self.admin_state & 0x67 != 0
    }
}

/// The operations a router daemon needs on its running haproxy; object-safe, so a fake can stand
/// in for [`Haproxy`].
pub trait Balancer: Send + Sync {
    /// See [`Haproxy::reload`].
    ///
    /// # Errors
    /// See [`Haproxy::reload`].
    fn reload(&self) -> Result<Reloaded, HaproxyError>;
    /// See [`Haproxy::runtime`].
    ///
    /// # Errors
    /// See [`Haproxy::runtime`].
    fn runtime(&self, commands: &[String]) -> Result<Vec<String>, HaproxyError>;
    /// See [`Haproxy::server_states`].
    ///
    /// # Errors
    /// See [`Haproxy::server_states`].
    fn server_states(&self) -> Result<Vec<ServerState>, HaproxyError>;
}

/// A running haproxy master of one router, started or adopted by [`Haproxy::ensure_running`].
#[derive(Debug, Clone)]
pub struct Haproxy {
    netns: Netns,
    files: HaproxyFiles,
    master: i32,
}

impl Haproxy {
    /// Adopts the router's haproxy if its master is alive and answers on `master.sock`, and
    /// otherwise starts one: `haproxy -W -D -S <master.sock>,mode,600 -f <haproxy.cfg> -p
    /// <haproxy.pid>` inside `netns`, then waits until the runtime API answers `show info`.
    ///
    /// # Guarantees
    /// A master that answers and lives in `netns` is never replaced, so two masters never share
    /// the listeners. A master that answers but lives in another namespace (the router's namespace
    /// was made anew) is killed and replaced.
    ///
    /// # Errors
    /// [`HaproxyError::Start`] with haproxy's message when it refuses to start (a bad
    /// configuration, an address that is not there), [`HaproxyError::Timeout`] when it does not
    /// answer in time, and the errors of reading the pid file.
    pub fn ensure_running(netns: &Netns, files: HaproxyFiles) -> Result<Self, HaproxyError> {
        if let Some(found) = Self::adopt(netns, files.clone())? {
            if found.is_in_namespace() {
                tracing::debug!(%netns, master = found.master, "adopted haproxy");
                return Ok(found);
            }
            tracing::warn!(%netns, master = found.master, "haproxy master lives in another namespace; replacing it");
            found.kill()?;
        }
        Self::start(netns, files)
    }

    /// The master named in the pid file, if it is alive and answers `show proc` on `master.sock`
    /// as that pid. A live process started with our master socket that does not answer yet (it
    /// is reloading) is waited for.
    ///
    /// # Errors
    /// [`HaproxyError::PidFile`] when the pid file exists but cannot be read,
    /// [`HaproxyError::Timeout`] when our master lives but does not answer in time.
    pub fn adopt(netns: &Netns, files: HaproxyFiles) -> Result<Option<Self>, HaproxyError> {
        let Some(pid) = read_pid(&files.pid_file())? else {
            return Ok(None);
        };
        if !is_alive(pid) {
            return Ok(None);
        }
        let found = Self {
            netns: netns.clone(),
            files,
            master: pid,
        };
        // A process started with our master socket is ours even while it does not answer (the
        // master CLI refuses connections for a few milliseconds during a reload): wait for it
        // rather than start a second master beside it. Any other process reuses a stale pid.
        let ours = std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
            let socket = found.files.master_socket();
            let socket = socket.as_os_str().as_encoded_bytes();
            c.windows(socket.len()).any(|w| w == socket)
        });
        let started = Instant::now();
        loop {
            match found.processes() {
                Ok(p) if p.master == pid => return Ok(Some(found)),
                _ if !ours || !is_alive(pid) => return Ok(None),
                _ if started.elapsed() >= START_DEADLINE => {
                    return Err(HaproxyError::Timeout {
                        netns: netns.clone(),
                        what: "answer on the master socket",
                        waited: started.elapsed(),
                    })
                }
                _ => std::thread::sleep(POLL_INTERVAL),
            }
        }
    }

    fn start(netns: &Netns, files: HaproxyFiles) -> Result<Self, HaproxyError> {
        let master_arg = format!("{},mode,600", files.master_socket().display());
        let config = files.config().display().to_string();
        let pid_file = files.pid_file().display().to_string();
        // A stale pid file would let the wait below see a dead master.
        let _ = std::fs::remove_file(files.pid_file());
        netns
            .run(
                HAPROXY,
                &[
                    "-W",
                    "-D",
                    "-S",
                    &master_arg,
                    "-f",
                    &config,
                    "-p",
                    &pid_file,
                ],
                None,
            )
            .map_err(|source| HaproxyError::Start {
                netns: netns.clone(),
                config: files.config(),
                source,
            })?;
        let started = Instant::now();
        loop {
            if let Some(pid) = read_pid(&files.pid_file())? {
                let h = Self {
                    netns: netns.clone(),
                    files: files.clone(),
                    master: pid,
                };
                let ready = h.processes().is_ok_and(|p| p.master == pid)
                    && h.request_stats(&["show info".to_string()]).is_ok();
                if ready {
                    tracing::debug!(%netns, master = pid, took = ?started.elapsed(), "started haproxy");
                    return Ok(h);
                }
            }
            if started.elapsed() >= START_DEADLINE {
                return Err(HaproxyError::Timeout {
                    netns: netns.clone(),
                    what: "answer after start",
                    waited: started.elapsed(),
                });
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// The master's pid.
    pub fn master_pid(&self) -> i32 {
        self.master
    }

    /// Its files.
    pub fn files(&self) -> &HaproxyFiles {
        &self.files
    }

    /// Its namespace.
    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    fn is_in_namespace(&self) -> bool {
        let ours = self.netns.identity();
        let theirs = std::fs::metadata(format!("/proc/{}/ns/net", self.master));
        match (ours, theirs) {
            (Ok(ours), Ok(m)) => {
                use std::os::unix::fs::MetadataExt;
                ours == (m.dev(), m.ino())
            }
            // Unknown: leave it running rather than start a second master beside it.
            _ => true,
        }
    }

    /// The master's processes (`show proc` on the master CLI).
    ///
    /// # Errors
    /// [`HaproxyError::Socket`] when the master does not answer, [`HaproxyError::Parse`].
    pub fn processes(&self) -> Result<Processes, HaproxyError> {
        let answer = request(&self.files.master_socket(), "show proc")?;
        parse_show_proc(&answer)
    }

    /// Reloads seamlessly: `reload` on the master CLI. The master re-executes itself with the
    /// configuration file as it is now and hands the listening sockets to a new worker; the old
    /// worker finishes its connections (at most `hard-stop-after`). Waits until the master lists a
    /// new worker and that worker answers the runtime API.
    ///
    /// # Assumptions
    /// The caller checked the file with [`check`] first: a refused reload can only be detected,
    /// not explained (haproxy 2.6's master CLI does not show the startup messages).
    ///
    /// # Errors
    /// [`HaproxyError::ReloadFailed`] when the master refused the configuration (the old worker
    /// keeps serving), [`HaproxyError::Timeout`], [`HaproxyError::Socket`].
    pub fn reload(&self) -> Result<Reloaded, HaproxyError> {
        let before = self.processes()?;
        let started = Instant::now();
        // The master re-executes at once and the connection ends without an answer, sometimes
        // with a reset; whether the reload happened shows in `show proc` below.
        match request(&self.files.master_socket(), "reload") {
            Err(HaproxyError::Socket { source, .. })
                if source.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => drop(other?),
        }
        loop {
            if let Ok(now) = self.processes() {
                if now.failed_reloads > before.failed_reloads {
                    return Err(HaproxyError::ReloadFailed {
                        netns: self.netns.clone(),
                        pid: self.master,
                        config: self.files.config(),
                    });
                }
                let new_worker = now
                    .workers
                    .iter()
                    .copied()
                    .find(|w| !before.workers.contains(w));
                if let (true, Some(worker)) = (now.reloads > before.reloads, new_worker) {
                    if self.worker_pid().is_ok_and(|p| p == worker) {
                        let took = started.elapsed();
                        tracing::debug!(netns = %self.netns, worker, ?took, "reloaded haproxy");
                        return Ok(Reloaded {
                            previous_workers: before.workers,
                            worker,
                            took,
                        });
                    }
                }
            }
            if started.elapsed() >= RELOAD_DEADLINE {
                return Err(HaproxyError::Timeout {
                    netns: self.netns.clone(),
                    what: "serve with a new worker after reload",
                    waited: started.elapsed(),
                });
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// The pid of the worker that answers the runtime API (`Pid:` of `show info`).
    fn worker_pid(&self) -> Result<i32, HaproxyError> {
        let answers = self.request_stats(&["show info".to_string()])?;
        answers
            .first()
            .and_then(|a| a.lines().find_map(|l| l.strip_prefix("Pid: ")))
            .and_then(|p| p.trim().parse().ok())
            .ok_or_else(|| HaproxyError::Parse {
                command: "show info",
                detail: "no `Pid:` line".to_string(),
            })
    }

    /// Sends `commands` to the runtime API (`stats.sock`) in one connection and returns one
    /// answer per command, without its trailing line breaks. Refusals come back as answers (see
    /// [`is_error`]); the caller decides. Successful `enable server`, `disable server` and `set
    /// server … weight` answer with an empty string.
    ///
    /// # Errors
    /// [`HaproxyError::InvalidCommand`] for a command with a line break or `;` (nothing is sent),
    /// [`HaproxyError::Socket`], [`HaproxyError::Framing`] when the answers cannot be matched to
    /// the commands.
    pub fn runtime(&self, commands: &[String]) -> Result<Vec<String>, HaproxyError> {
        if let Some(bad) = commands.iter().find(|c| c.contains(['\n', '\r', ';'])) {
            return Err(HaproxyError::InvalidCommand {
                command: bad.clone(),
            });
        }
        self.request_stats(commands)
    }

    fn request_stats(&self, commands: &[String]) -> Result<Vec<String>, HaproxyError> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        let socket = self.files.stats_socket();
        let mut text = String::from("prompt\n");
        for c in commands {
            text.push_str(c);
            text.push('\n');
        }
        let raw = exchange(&socket, &text).map_err(|source| HaproxyError::Socket {
            socket: socket.clone(),
            command: commands[0].clone(),
            source,
        })?;
        split_prompted(&raw)
            .filter(|a| a.len() == commands.len())
            .ok_or_else(|| HaproxyError::Framing {
                socket,
                expected: commands.len(),
                got: split_prompted(&raw).map_or(0, |a| a.len()),
            })
    }

    /// Every server of every backend with its address, states and connection counts, from `show
    /// servers state` and `show stat` in one request.
    ///
    /// # Errors
    /// [`HaproxyError::Socket`], [`HaproxyError::Framing`], [`HaproxyError::Parse`].
    pub fn server_states(&self) -> Result<Vec<ServerState>, HaproxyError> {
        let answers =
            self.request_stats(&["show servers state".to_string(), "show stat".to_string()])?;
        match answers.as_slice() {
            [state, stat] => merge_server_states(state, stat),
            _ => Err(HaproxyError::Parse {
                command: "show servers state",
                detail: "answers missing".to_string(),
            }),
        }
    }

    /// Stops gracefully: SIGUSR1 to the master, which lets the workers finish their connections
    /// (at most `hard-stop-after`), then waits up to `grace` for the master to exit.
    ///
    /// # Errors
    /// [`HaproxyError::Signal`], [`HaproxyError::Timeout`] when the master is still there after
    /// `grace` (then [`Haproxy::kill`] ends it).
    pub fn stop(&self, grace: Duration) -> Result<(), HaproxyError> {
        self.signal(self.master, Signal::SIGUSR1)?;
        self.wait_gone(&[self.master], grace, "stop")
    }

    /// Ends the master and its workers at once with SIGKILL.
    ///
    /// # Errors
    /// [`HaproxyError::Signal`], [`HaproxyError::Timeout`] when they are still there after a few
    /// seconds.
    pub fn kill(&self) -> Result<(), HaproxyError> {
        let mut pids = children_of(self.master);
        pids.push(self.master);
        for &pid in &pids {
            self.signal(pid, Signal::SIGKILL)?;
        }
        self.wait_gone(&pids, KILL_DEADLINE, "exit after SIGKILL")
    }

    fn signal(&self, pid: i32, signal: Signal) -> Result<(), HaproxyError> {
        match kill(Pid::from_raw(pid), signal) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(source) => Err(HaproxyError::Signal {
                netns: self.netns.clone(),
                pid,
                signal,
                source,
            }),
        }
    }

    fn wait_gone(
        &self,
        pids: &[i32],
        grace: Duration,
        what: &'static str,
    ) -> Result<(), HaproxyError> {
        let started = Instant::now();
        while pids.iter().any(|&p| is_alive(p)) {
            if started.elapsed() >= grace {
                return Err(HaproxyError::Timeout {
                    netns: self.netns.clone(),
                    what,
                    waited: started.elapsed(),
                });
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        Ok(())
    }
}

impl Balancer for Haproxy {
    fn reload(&self) -> Result<Reloaded, HaproxyError> {
        Haproxy::reload(self)
    }

    fn runtime(&self, commands: &[String]) -> Result<Vec<String>, HaproxyError> {
        Haproxy::runtime(self, commands)
    }

    fn server_states(&self) -> Result<Vec<ServerState>, HaproxyError> {
        Haproxy::server_states(self)
    }
}

/// The pid in `path`, or `None` when there is no file or no number in it.
fn read_pid(path: &Path) -> Result<Option<i32>, HaproxyError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text.trim().parse().ok().filter(|&p: &i32| p > 0)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(HaproxyError::PidFile {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Whether process `pid` exists and is not a zombie.
fn is_alive(pid: i32) -> bool {
    crate::proc::is_alive(pid)
}

/// The processes whose parent is `parent`.
fn children_of(parent: i32) -> Vec<i32> {
    crate::proc::children_of(parent)
}

/// Sends one command to a CLI socket and returns the whole answer.
fn request(socket: &Path, command: &str) -> Result<String, HaproxyError> {
    exchange(socket, &format!("{command}\n")).map_err(|source| HaproxyError::Socket {
        socket: socket.to_path_buf(),
        command: command.to_string(),
        source,
    })
}

/// Writes `text`, shuts the writing side down (the master CLI waits for that) and reads until
/// haproxy closes. The writing happens on its own thread, so a long request cannot deadlock
/// against a long answer.
fn exchange(socket: &Path, text: &str) -> Result<String, std::io::Error> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(SOCKET_TIMEOUT))?;
    stream.set_write_timeout(Some(SOCKET_TIMEOUT))?;
    let mut writer = stream.try_clone()?;
    let mut raw = Vec::new();
    std::thread::scope(|s| {
        let w = s.spawn(move || -> std::io::Result<()> {
            writer.write_all(text.as_bytes())?;
            writer.shutdown(std::net::Shutdown::Write)
        });
        let read = stream.read_to_end(&mut raw);
        let written = w
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("writer thread panicked")));
        read.and(written)
    })?;
    Ok(String::from_utf8_lossy(&raw).into_owned())
}

/// Splits the output of a `prompt`-mode session (`prompt` first, then one command a line) into
/// one answer per command. Every answer, the empty one of `prompt` included, ends with a line
/// that starts with `> `; answers lose their trailing line breaks. `None` when the output does
/// not end with a prompt (haproxy closed early).
fn split_prompted(raw: &str) -> Option<Vec<String>> {
    let mut pieces: Vec<&str> = raw.split("\n> ").collect();
    // What follows the last prompt must be nothing; what precedes the first is `prompt`'s answer.
    if pieces.len() < 2 || !pieces.pop()?.is_empty() {
        return None;
    }
    Some(
        pieces
            .into_iter()
            .skip(1)
            .map(|a| a.trim_end_matches('\n').to_string())
            .collect(),
    )
}

fn parse_show_proc(answer: &str) -> Result<Processes, HaproxyError> {
    let bad = |detail: &str| HaproxyError::Parse {
        command: "show proc",
        detail: detail.to_string(),
    };
    #[derive(PartialEq)]
    enum Section {
        Master,
        Workers,
        OldWorkers,
        Other,
    }
    let mut section = Section::Master;
    let mut master = None;
    let mut reloads = 0;
    let mut failed_reloads = 0;
    let mut workers = Vec::new();
    let mut old_workers = Vec::new();
    for line in answer.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with("#<") {
            continue;
        }
        if let Some(name) = line.strip_prefix('#') {
            section = match name.trim() {
                "workers" => Section::Workers,
                "old workers" => Section::OldWorkers,
                _ => Section::Other,
            };
            continue;
        }
        let mut fields = line.split_whitespace();
        let pid: Option<i32> = fields.next().and_then(|p| p.parse().ok());
        let kind = fields.next();
        match (&section, pid, kind) {
            (Section::Master, Some(pid), Some("master")) => {
                master = Some(pid);
                reloads = fields
                    .next()
                    .and_then(|r| r.parse().ok())
                    .ok_or_else(|| bad("no reload count"))?;
                // `[failed: N]`
                failed_reloads = fields
                    .nth(1)
                    .and_then(|f| f.trim_end_matches(']').parse().ok())
                    .ok_or_else(|| bad("no failed reload count"))?;
            }
            (Section::Workers, Some(pid), Some("worker")) => workers.push(pid),
            (Section::OldWorkers, Some(pid), Some("worker")) => old_workers.push(pid),
            (Section::Other, _, _) => {}
            _ => return Err(bad(&format!("unexpected line {line:?}"))),
        }
    }
    Ok(Processes {
        master: master.ok_or_else(|| bad("no master line"))?,
        reloads,
        failed_reloads,
        workers,
        old_workers,
    })
}

/// The column index of each name in a header line.
fn columns<'a>(names: impl Iterator<Item = &'a str>) -> std::collections::HashMap<&'a str, usize> {
    names.enumerate().map(|(i, n)| (n, i)).collect()
}

fn field<'a>(
    row: &[&'a str],
    cols: &std::collections::HashMap<&str, usize>,
    name: &str,
) -> Option<&'a str> {
    cols.get(name).and_then(|&i| row.get(i)).copied()
}

/// Joins `show servers state` (addresses, states) with `show stat` (status text, sessions).
fn merge_server_states(state: &str, stat: &str) -> Result<Vec<ServerState>, HaproxyError> {
    let bad = |command: &'static str, detail: String| HaproxyError::Parse { command, detail };
    // `show servers state`: a version line, a `# name name …` header, then one row a server.
    let mut lines = state.lines().filter(|l| !l.trim().is_empty());
    match lines.next() {
        Some("1") => {}
        other => {
            return Err(bad(
                "show servers state",
                format!("unknown format version {other:?}"),
            ))
        }
    }
    let header = lines
        .next()
        .and_then(|h| h.strip_prefix('#'))
        .ok_or_else(|| bad("show servers state", "no header".to_string()))?;
    let scols = columns(header.split_whitespace());
    // `show stat`: a `# name,name,…` header, then one row a proxy or server.
    let mut stat_lines = stat.lines().filter(|l| !l.trim().is_empty());
    let stat_header = stat_lines
        .next()
        .and_then(|h| h.strip_prefix("# "))
        .ok_or_else(|| bad("show stat", "no header".to_string()))?;
    let tcols = columns(stat_header.split(','));
    let stats: Vec<Vec<&str>> = stat_lines.map(|l| l.split(',').collect()).collect();

    let mut out = Vec::new();
    for line in lines {
        let row: Vec<&str> = line.split_whitespace().collect();
        let get = |name: &str| {
            field(&row, &scols, name)
                .ok_or_else(|| bad("show servers state", format!("no {name} in {line:?}")))
        };
        let number = |name: &str| -> Result<u64, HaproxyError> {
            get(name)?
                .parse()
                .map_err(|_| bad("show servers state", format!("bad {name} in {line:?}")))
        };
        let backend = get("be_name")?.to_string();
        let server = get("srv_name")?.to_string();
        let stat_row = stats.iter().find(|r| {
            field(r, &tcols, "pxname") == Some(backend.as_str())
                && field(r, &tcols, "svname") == Some(server.as_str())
        });
        let stat_text = |name: &str| {
            stat_row
                .and_then(|r| field(r, &tcols, name))
                .unwrap_or_default()
                .to_string()
        };
        let stat_number = |name: &str| stat_text(name).parse().unwrap_or(0);
        out.push(ServerState {
            address: get("srv_addr")?.to_string(),
            port: u16::try_from(number("srv_port")?)
                .map_err(|_| bad("show servers state", format!("bad srv_port in {line:?}")))?,
            op_state: OpState::from(u8::try_from(number("srv_op_state")?).unwrap_or(u8::MAX)),
            admin_state: u8::try_from(number("srv_admin_state")?).unwrap_or(u8::MAX),
            status: stat_text("status"),
            check_status: stat_text("check_status"),
            current_sessions: stat_number("scur"),
            total_sessions: stat_number("stot"),
            backend,
            server,
        });
    }
    Ok(out)
}
