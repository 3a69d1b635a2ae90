//! One dnsmasq per router, serving its guests DHCP and DNS: check a configuration, start it in
//! the router's namespace, adopt it after a restart of the router daemon, make it re-read its
//! hosts files, stop it.
//!
//! dnsmasq daemonizes, so it keeps serving while the router daemon restarts, as nftables rules
//! and haproxy do. Every file it reads or writes lives in one directory the caller owns (see
//! [`DnsmasqFiles`]): the caller writes the configuration and the two hosts files, rendered by the
//! `render` crate, whose configuration names this directory's lease, pid and log files; nothing
//! outside the directory is read or written (no `/etc/hosts`, no `resolv.conf`, no lease file in
//! `/var/lib/misc`, no pid file in `/run`).
//!
//! Facts about dnsmasq 2.90 this module relies on (measured):
//! - `dnsmasq --conf-file=F` in the foreground checks its options and binds its sockets before
//!   it forks; a refusal or an address it cannot bind ends it with a non-zero status and a
//!   message on stderr, so a start either fails there or leaves a daemon that serves.
//! - SIGHUP re-reads `dhcp-hostsfile` and `addn-hosts` (and clears the cache) without dropping
//!   a lease; the configuration file itself is read only at start.
//! - `dnsmasq --test` checks the syntax of a configuration without binding anything.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::cmd::{self, CommandError};
use crate::nft::Netns;
use crate::proc;

/// The dnsmasq program.
const DNSMASQ: &str = "/usr/sbin/dnsmasq";
/// How long a started dnsmasq may take to write its pid file.
const START_DEADLINE: Duration = Duration::from_secs(10);
/// How long a stopped dnsmasq may take to exit before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How often a wait looks again.
const POLL_INTERVAL: Duration = Duration::from_millis(5);

/// A dnsmasq operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum DnsmasqError {
    /// `dnsmasq --test` could not be run.
    #[error("cannot check dnsmasq configuration {path}")]
    Check {
        /// The configuration file.
        path: PathBuf,
        /// Why.
        #[source]
        source: CommandError,
    },
    /// dnsmasq refused the configuration.
    #[error("dnsmasq refused configuration {path}: {message}")]
    ConfigInvalid {
        /// The configuration file.
        path: PathBuf,
        /// dnsmasq's own words, trimmed.
        message: String,
    },
    /// dnsmasq could not be started (its message is in the source).
    #[error("cannot start dnsmasq with {config} in {netns}")]
    Start {
        /// Where.
        netns: Netns,
        /// The configuration file.
        config: PathBuf,
        /// Why.
        #[source]
        source: CommandError,
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
    /// A wait ran past its deadline.
    #[error("dnsmasq in {netns} did not {what} within {waited:?}")]
    Timeout {
        /// Where.
        netns: Netns,
        /// What was awaited.
        what: &'static str,
        /// How long it was awaited.
        waited: Duration,
    },
    /// A process could not be signalled.
    #[error("cannot send {signal} to dnsmasq process {pid} in {netns}")]
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

/// The files of one router's dnsmasq, all in one directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsmasqFiles {
    dir: PathBuf,
}

impl DnsmasqFiles {
    /// The files in `dir` (for example `<state>/dnsmasq`).
    ///
    /// # Assumptions
    /// The path has no line break (it is written into the configuration).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `dnsmasq.conf`, written by the caller.
    pub fn config(&self) -> PathBuf {
        self.dir.join("dnsmasq.conf")
    }

    /// `dhcp-hosts`, the static leases (`dhcp-hostsfile`), written by the caller.
    pub fn dhcp_hosts(&self) -> PathBuf {
        self.dir.join("dhcp-hosts")
    }

    /// `dns-hosts`, the guests' names (`addn-hosts`), written by the caller.
    pub fn dns_hosts(&self) -> PathBuf {
        self.dir.join("dns-hosts")
    }

    /// `leases`, dnsmasq's lease database.
    pub fn leases(&self) -> PathBuf {
        self.dir.join("leases")
    }

    /// `dnsmasq.pid`.
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("dnsmasq.pid")
    }

    /// `dnsmasq.log`.
    pub fn log(&self) -> PathBuf {
        self.dir.join("dnsmasq.log")
    }
}

/// Checks a configuration with `dnsmasq --test --conf-file=PATH` (syntax and values; nothing is
/// bound). It runs in the host namespace; `netns` is the router's, for the record only.
///
/// # Errors
/// [`DnsmasqError::ConfigInvalid`] with dnsmasq's message when it refuses the file,
/// [`DnsmasqError::Check`] when dnsmasq cannot be run.
pub fn check(netns: &Netns, config: &Path) -> Result<(), DnsmasqError> {
    let arg = format!("--conf-file={}", config.display());
    match cmd::run(DNSMASQ, &["--test", &arg], None) {
        Ok(_) => Ok(()),
        Err(CommandError::Failed { stderr, .. }) => {
            tracing::debug!(%netns, path = %config.display(), "dnsmasq refused configuration");
            Err(DnsmasqError::ConfigInvalid {
                path: config.to_path_buf(),
                message: stderr.trim().to_string(),
            })
        }
        Err(source) => Err(DnsmasqError::Check {
            path: config.to_path_buf(),
            source,
        }),
    }
}

/// The number of leases in a dnsmasq lease database (one line each).
pub fn count_leases(files: &DnsmasqFiles) -> usize {
    std::fs::read_to_string(files.leases())
        .map(|t| t.lines().filter(|l| !l.trim().is_empty()).count())
        .unwrap_or(0)
}

/// A running dnsmasq of one router, started or adopted.
#[derive(Debug, Clone)]
pub struct Dnsmasq {
    netns: Netns,
    files: DnsmasqFiles,
    pid: i32,
}

impl Dnsmasq {
    /// Adopts the router's dnsmasq if one runs, and otherwise starts one (see [`Dnsmasq::start`]).
    /// A dnsmasq of these files that lives in another namespace (the router's namespace was made
    /// anew) is stopped and replaced.
    ///
    /// # Errors
    /// As [`Dnsmasq::adopt`], [`Dnsmasq::start`] and [`Dnsmasq::stop`].
    pub fn ensure_running(netns: &Netns, files: DnsmasqFiles) -> Result<Self, DnsmasqError> {
        if let Some(found) = Self::adopt(netns, files.clone())? {
            return Ok(found);
        }
        Self::start(netns, files)
    }

    /// The dnsmasq named in the pid file, if that process is alive, is dnsmasq, was started with
    /// this directory's configuration and lives in `netns`. One of these files living in another
    /// namespace is stopped (it serves a namespace that is gone or made anew).
    ///
    /// # Errors
    /// [`DnsmasqError::PidFile`] when the pid file exists but cannot be read; the errors of
    /// [`Dnsmasq::stop`].
    pub fn adopt(netns: &Netns, files: DnsmasqFiles) -> Result<Option<Self>, DnsmasqError> {
        let Some(pid) = read_pid(&files.pid_file())? else {
            return Ok(None);
        };
        let found = Self {
            netns: netns.clone(),
            files,
            pid,
        };
        if !found.is_ours() {
            return Ok(None);
        }
        let here = netns.identity().ok();
        let theirs = proc::net_namespace(pid);
        match (here, theirs) {
            (Some(a), Some(b)) if a != b => {
                tracing::warn!(%netns, pid, "dnsmasq lives in another namespace; stopping it");
                found.stop()?;
                Ok(None)
            }
            _ => Ok(Some(found)),
        }
    }

    /// Whether the process is alive, runs dnsmasq and was started with our configuration file
    /// (a pid file may name a pid since reused by another process).
    fn is_ours(&self) -> bool {
        let config = format!("--conf-file={}", self.files.config().display());
        proc::is_alive(self.pid)
            && proc::comm(self.pid).as_deref() == Some("dnsmasq")
            && proc::cmdline(self.pid).is_some_and(|c| c.contains(&config))
    }

    /// Starts dnsmasq inside `netns`: `dnsmasq --conf-file=<dnsmasq.conf>`, which daemonizes and
    /// writes its pid file; returns once the pid file names a live dnsmasq.
    ///
    /// # Assumptions
    /// No dnsmasq of these files runs (see [`Dnsmasq::ensure_running`]).
    ///
    /// # Errors
    /// [`DnsmasqError::Start`] with dnsmasq's message when it refuses to start (a bad
    /// configuration, an address it cannot bind), [`DnsmasqError::Timeout`].
    pub fn start(netns: &Netns, files: DnsmasqFiles) -> Result<Self, DnsmasqError> {
        let config = format!("--conf-file={}", files.config().display());
        // A stale pid file would let the wait below see a dead process.
        let _ = std::fs::remove_file(files.pid_file());
        netns
            .run(DNSMASQ, &[&config], None)
            .map_err(|source| DnsmasqError::Start {
                netns: netns.clone(),
                config: files.config(),
                source,
            })?;
        let started = Instant::now();
        loop {
            if let Some(pid) = read_pid(&files.pid_file())? {
                let d = Self {
                    netns: netns.clone(),
                    files: files.clone(),
                    pid,
                };
                if d.is_ours() {
                    tracing::debug!(%netns, pid, took = ?started.elapsed(), "started dnsmasq");
                    return Ok(d);
                }
            }
            if started.elapsed() >= START_DEADLINE {
                return Err(DnsmasqError::Timeout {
                    netns: netns.clone(),
                    what: "write its pid file after start",
                    waited: started.elapsed(),
                });
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Its pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Its files.
    pub fn files(&self) -> &DnsmasqFiles {
        &self.files
    }

    /// Its namespace.
    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    /// Whether it still runs.
    pub fn is_running(&self) -> bool {
        self.is_ours()
    }

    /// Makes it re-read its hosts files (SIGHUP): leases added, changed or removed there take
    /// effect for the next DHCP exchange, names for the next query; no lease is dropped.
    ///
    /// # Errors
    /// [`DnsmasqError::Signal`].
    pub fn reload(&self) -> Result<(), DnsmasqError> {
        self.signal(Signal::SIGHUP)
    }

    /// Stops it: SIGTERM, then SIGKILL if it is still there after a few seconds; returns once
    /// it is gone.
    ///
    /// # Errors
    /// [`DnsmasqError::Signal`], [`DnsmasqError::Timeout`].
    pub fn stop(&self) -> Result<(), DnsmasqError> {
        if !proc::is_alive(self.pid) {
            return Ok(());
        }
        self.signal(Signal::SIGTERM)?;
        if self.wait_gone(STOP_GRACE) {
            return Ok(());
        }
        self.signal(Signal::SIGKILL)?;
        if self.wait_gone(STOP_GRACE) {
            return Ok(());
        }
        Err(DnsmasqError::Timeout {
            netns: self.netns.clone(),
            what: "exit after SIGKILL",
            waited: STOP_GRACE * 2,
        })
    }

    fn wait_gone(&self, within: Duration) -> bool {
        let started = Instant::now();
        while proc::is_alive(self.pid) {
            if started.elapsed() >= within {
                return false;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        true
    }

    fn signal(&self, signal: Signal) -> Result<(), DnsmasqError> {
        match kill(Pid::from_raw(self.pid), signal) {
            Ok(()) => Ok(()),
            // Gone already: nothing to signal.
            Err(nix::errno::Errno::ESRCH) if signal != Signal::SIGHUP => Ok(()),
            Err(source) => Err(DnsmasqError::Signal {
                netns: self.netns.clone(),
                pid: self.pid,
                signal,
                source,
            }),
        }
    }
}

fn read_pid(path: &Path) -> Result<Option<i32>, DnsmasqError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text.trim().parse().ok()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(DnsmasqError::PidFile {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_live_in_one_directory() {
        let f = DnsmasqFiles::new("/state/r1/dnsmasq");
        for p in [
            f.config(),
            f.dhcp_hosts(),
            f.dns_hosts(),
            f.leases(),
            f.pid_file(),
            f.log(),
        ] {
            assert_eq!(p.parent(), Some(Path::new("/state/r1/dnsmasq")));
        }
    }

    #[test]
    fn a_refused_configuration_comes_back_with_dnsmasq_words() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dnsmasq.conf");
        std::fs::write(&path, "no-resolv\nlisten-address=not-an-address\n").unwrap();
        let err = check(&Netns::Host, &path).unwrap_err();
        match err {
            DnsmasqError::ConfigInvalid { message, .. } => {
                assert!(message.contains("error at line 2"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        std::fs::write(&path, "no-resolv\nlisten-address=10.1.1.1\n").unwrap();
        check(&Netns::Host, &path).unwrap();
    }

    #[test]
    fn a_pid_file_naming_another_program_is_not_adopted() {
        let dir = tempfile::tempdir().unwrap();
        let files = DnsmasqFiles::new(dir.path());
        assert!(Dnsmasq::adopt(&Netns::Host, files.clone())
            .unwrap()
            .is_none());
        // This test's own process: alive, but not dnsmasq.
        std::fs::write(files.pid_file(), std::process::id().to_string()).unwrap();
        assert!(Dnsmasq::adopt(&Netns::Host, files).unwrap().is_none());
    }
}
