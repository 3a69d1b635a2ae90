//! guestnet processes started by tests and benchmarks: a [`Proc`] with its log, killed when
//! dropped, and the startup line a `guestnet serve` prints first.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sys::cmd::{Child, CommandError, Program, Stdio};

/// How often [`Proc::wait_log`] reads the log again.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Lines of the log that [`Proc::tail`] shows.
const TAIL_LINES: usize = 25;

/// Starting or watching a [`Proc`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    /// The log file could not be opened.
    #[error("cannot open the log {}", path.display())]
    Log {
        /// The log file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The program could not be started.
    #[error("cannot start {name}")]
    Start {
        /// The process's name.
        name: String,
        /// Why.
        #[source]
        source: CommandError,
    },
    /// The log did not come to hold the text in time.
    #[error("{name} never logged {text:?}; its log:\n{tail}")]
    NeverLogged {
        /// The process's name.
        name: String,
        /// What was awaited.
        text: String,
        /// The last lines of its log.
        tail: String,
    },
}

/// A running process with a name and a log file (its standard error, appended to); killed with
/// SIGKILL and reaped when dropped.
///
/// SIGKILL straight away: whatever a test or benchmark process leaves behind (directories, labs,
/// databases) is removed by its owner after the process is gone.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    /// Starts `program` as `name`, with standard input from `/dev/null` and standard error
    /// appended to `log` (created if missing); standard output is as `program` says.
    ///
    /// # Errors
    /// [`ProcError::Log`] or [`ProcError::Start`].
    pub fn spawn(name: &str, program: &mut Program, log: &Path) -> Result<Proc, ProcError> {
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|source| ProcError::Log {
                path: log.to_path_buf(),
                source,
            })?;
        let child = program
            .stdin(Stdio::null())
            .stderr(err)
            .spawn()
            .map_err(|source| ProcError::Start {
                name: name.to_string(),
                source,
            })?;
        Ok(Proc {
            name: name.to_string(),
            child: Some(child),
            log: log.to_path_buf(),
        })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its process id, while it has not been killed through [`Proc::kill9`].
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The child itself (for its pipes), while it has not been killed through [`Proc::kill9`].
    pub fn child_mut(&mut self) -> Option<&mut Child> {
        self.child.as_mut()
    }

    /// Its log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Its log so far (empty if unreadable).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last lines of its log under a heading naming it, for error messages.
    pub fn tail(&self) -> String {
        let text = self.log();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "--- {} ({}) ---\n{}",
            self.name,
            self.log.display(),
            lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
        )
    }

    /// Waits until its log holds `text`.
    ///
    /// # Errors
    /// [`ProcError::NeverLogged`] after `within`.
    pub fn wait_log(&self, text: &str, within: Duration) -> Result<(), ProcError> {
        let deadline = Instant::now() + within;
        while !self.log().contains(text) {
            if Instant::now() >= deadline {
                return Err(ProcError::NeverLogged {
                    name: self.name.clone(),
                    text: text.to_string(),
                    tail: self.tail(),
                });
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        Ok(())
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills it with SIGKILL and reaps it (once; later calls do nothing).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill_and_wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// What a starting `guestnet serve` printed first on its piped standard output: the line, and
/// the API endpoint it names (`None` when it names none, or when nothing came within `within`).
///
/// The line is read on a thread that goes on reading (and dropping) whatever follows, so the
/// server never writes into a closed pipe.
pub fn startup_line(child: &mut Child, within: Duration) -> (String, Option<String>) {
    let Some(stdout) = child.take_stdout() else {
        return (String::new(), None);
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        let _ = tx.send(first);
        for _ in lines {}
    });
    let line = rx.recv_timeout(within).unwrap_or_default();
    let endpoint = endpoint_in(&line);
    (line, endpoint)
}

/// The API endpoint (`http://…/client/api`) a startup line names, if any.
pub fn endpoint_in(line: &str) -> Option<String> {
    line.split_whitespace()
        .find(|w| w.starts_with("http://"))
        .map(|w| w.trim_end_matches(';').to_string())
}

/// A server's base URL (`http://host:port`) from its API endpoint.
pub fn base_url(endpoint: &str) -> String {
    endpoint.trim_end_matches("/client/api").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_is_read_from_a_startup_line() {
        let line = "guestnet serve: listening on http://127.0.0.1:4242/client/api; driver lab";
        let endpoint = endpoint_in(line);
        assert_eq!(
            endpoint.as_deref(),
            Some("http://127.0.0.1:4242/client/api")
        );
        assert_eq!(
            base_url(endpoint.as_deref().unwrap_or_default()),
            "http://127.0.0.1:4242"
        );
        assert_eq!(endpoint_in("no address here"), None);
    }

    #[test]
    fn a_proc_logs_its_stderr_is_waited_for_and_is_killed_on_drop() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let log = dir.path().join("p.log");
        let mut program = Program::new("sh");
        program
            .args(["-c", "echo ready >&2; exec sleep 600"])
            .stdout(Stdio::null());
        let mut p = Proc::spawn("sleeper", &mut program, &log).expect("start sh");
        p.wait_log("ready", Duration::from_secs(10))
            .expect("the log says ready");
        assert!(p.running());
        let pid = i32::try_from(p.pid().expect("a pid")).expect("fits");
        let err = p
            .wait_log("never", Duration::from_millis(100))
            .expect_err("nothing says never");
        assert!(err.to_string().contains("ready"), "{err}");
        drop(p);
        assert!(!sys::proc::is_alive(pid), "drop left {pid} running");
    }

    #[test]
    fn the_startup_line_is_read_and_the_rest_drained() {
        let mut program = Program::new("sh");
        program
            .args([
                "-c",
                "echo 'serving http://127.0.0.1:1/client/api; ok'; seq 1 100000",
            ])
            .stdout(Stdio::piped());
        let mut child = program.spawn().expect("start sh");
        let (line, endpoint) = startup_line(&mut child, Duration::from_secs(10));
        assert!(line.starts_with("serving"), "{line}");
        assert_eq!(endpoint.as_deref(), Some("http://127.0.0.1:1/client/api"));
        // The rest is read away, so the writer ends instead of blocking on a full pipe.
        assert!(child.wait().expect("wait").success());
    }
}
