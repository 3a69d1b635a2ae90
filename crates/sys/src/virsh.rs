//! Guests through libvirt: `virsh -c <uri>` to define, start, stop, undefine and look at
//! domains.
//!
//! Every failure keeps virsh's standard error. Nothing here decides anything:
//! the domain XML comes rendered (`render::libvirt`), the caller chooses names and paths.

use std::path::Path;

use crate::cmd::{CommandError, Program, Stdio};

/// A virsh command that failed.
#[derive(Debug, thiserror::Error)]
pub enum VirshError {
    /// virsh could not be run, or libvirt refused.
    #[error("libvirt ({uri}) cannot {action} domain {domain}")]
    Command {
        /// The connection URI.
        uri: String,
        /// What was asked: `define`, `start`, `destroy`, `undefine`, `read the state of`, `list`.
        action: &'static str,
        /// The domain (or `*` for a listing).
        domain: String,
        /// virsh's failure, with its standard error.
        #[source]
        source: CommandError,
    },
}

/// A domain's state as `virsh domstate` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainState {
    /// `running`.
    Running,
    /// `shut off`.
    ShutOff,
    /// `paused`.
    Paused,
    /// Anything else (`in shutdown`, `crashed`, `pmsuspended`, …), as virsh said it.
    Other(String),
}

/// A connection to one libvirt daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Virsh {
    uri: String,
}

/// Whether virsh's failure says the domain does not exist.
fn no_such_domain(e: &CommandError) -> bool {
    matches!(e, CommandError::Failed { stderr, .. } if stderr.contains("Domain not found")
        || stderr.contains("failed to get domain"))
}

/// Whether virsh's failure says the domain is not running (destroying a stopped domain).
fn not_running(e: &CommandError) -> bool {
    matches!(e, CommandError::Failed { stderr, .. } if stderr.contains("domain is not running"))
}

impl Virsh {
    /// A connection to the daemon at `uri` (`qemu:///system`, or
    /// `qemu:///system?socket=/path/libvirt-sock` for a daemon with its own sockets).
    pub fn new(uri: impl Into<String>) -> Virsh {
        Virsh { uri: uri.into() }
    }

    /// The connection URI.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    fn run(&self, args: &[&str]) -> Result<String, CommandError> {
        let mut p = Program::new("virsh");
        p.args(["-q", "-c", &self.uri])
            .args(args)
            .stdin(Stdio::null())
            .env("LC_ALL", "C");
        let out = p.run()?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn error(&self, action: &'static str, domain: &str, source: CommandError) -> VirshError {
        VirshError::Command {
            uri: self.uri.clone(),
            action,
            domain: domain.to_string(),
            source,
        }
    }

    /// Defines (or redefines) the domain `name` whose XML is in file `xml`.
    ///
    /// # Errors
    /// [`VirshError`] with libvirt's reason.
    pub fn define(&self, name: &str, xml: &Path) -> Result<(), VirshError> {
        let file = xml.to_string_lossy();
        self.run(&["define", &file])
            .map(drop)
            .map_err(|e| self.error("define", name, e))
    }

    /// Starts the defined domain `name`.
    ///
    /// # Errors
    /// [`VirshError`] with libvirt's reason (for example QEMU's own, when it cannot start).
    pub fn start(&self, name: &str) -> Result<(), VirshError> {
        self.run(&["start", name])
            .map(drop)
            .map_err(|e| self.error("start", name, e))
    }

    /// Stops domain `name` at once (its QEMU is killed); whether it was running. A domain that
    /// is not running or does not exist is fine.
    ///
    /// # Errors
    /// [`VirshError`] with libvirt's reason.
    pub fn destroy(&self, name: &str) -> Result<bool, VirshError> {
        match self.run(&["destroy", name]) {
            Ok(_) => Ok(true),
            Err(e) if no_such_domain(&e) || not_running(&e) => Ok(false),
            Err(e) => Err(self.error("destroy", name, e)),
        }
    }

    /// Removes the definition of the (stopped) domain `name`; whether it existed.
    ///
    /// # Errors
    /// [`VirshError`] with libvirt's reason.
    pub fn undefine(&self, name: &str) -> Result<bool, VirshError> {
        match self.run(&["undefine", name]) {
            Ok(_) => Ok(true),
            Err(e) if no_such_domain(&e) => Ok(false),
            Err(e) => Err(self.error("undefine", name, e)),
        }
    }

    /// Domain `name`'s state, `None` when it does not exist.
    ///
    /// # Errors
    /// [`VirshError`] with libvirt's reason.
    pub fn state(&self, name: &str) -> Result<Option<DomainState>, VirshError> {
        match self.run(&["domstate", name]) {
            Ok(text) => Ok(Some(match text.trim() {
                "running" => DomainState::Running,
                "shut off" => DomainState::ShutOff,
                "paused" => DomainState::Paused,
                other => DomainState::Other(other.to_string()),
            })),
            Err(e) if no_such_domain(&e) => Ok(None),
            Err(e) => Err(self.error("read the state of", name, e)),
        }
    }

    /// The names of every domain the daemon knows, defined or running.
    ///
    /// # Errors
    /// [`VirshError`] with libvirt's reason.
    pub fn list_all(&self) -> Result<Vec<String>, VirshError> {
        let text = self
            .run(&["list", "--all", "--name"])
            .map_err(|e| self.error("list", "*", e))?;
        Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(stderr: &str) -> CommandError {
        use std::os::unix::process::ExitStatusExt;
        CommandError::Failed {
            command: "virsh".into(),
            status: std::process::ExitStatus::from_raw(256),
            stderr: stderr.into(),
        }
    }

    #[test]
    fn tells_a_missing_or_stopped_domain_from_a_failure() {
        assert!(no_such_domain(&failed(
            "error: failed to get domain 'x'\nerror: Domain not found: no domain with matching name 'x'"
        )));
        assert!(not_running(&failed(
            "error: Failed to destroy domain 'x'\nerror: Requested operation is not valid: domain is not running"
        )));
        assert!(!no_such_domain(&failed(
            "error: failed to connect to the hypervisor"
        )));
    }
}
