//! The router's haproxy: render and check its configuration before a commit, and after the
//! commit move the running haproxy to it, through the runtime API when only members changed and
//! by a seamless reload otherwise.
//!
//! Its files live in `<state dir>/haproxy/` ([`HaproxyFiles`]). The order of an apply is:
//! [`Balancer::prepare`] (pure planning, then writing `haproxy.cfg.new` and `haproxy -c` when the
//! change is structural; a refusal refuses the whole config), the nft commit, then
//! [`Balancer::enact`]. After a reload or a start, `haproxy.cfg` describes what runs; after a
//! member-only change through the runtime API it is rewritten later, off the apply path, by the
//! drift timer's [`Balancer::tend`] or when the router is dropped, and always before anything
//! reloads or starts haproxy (a reload or start renames a freshly written file into place).
//!
//! A removed member that still has connections cannot be deleted: it stays disabled (no new
//! connections) in a draining list that [`Balancer::tend`] retries on every drift tick.

use std::path::PathBuf;
use std::time::Duration;

use render::haproxy::{
    listen_name, plan_balancers_change, render_haproxy, server_name, Global, LbChange, MemberChange,
};
use router_config::{LoadBalancer, ValidConfig};
use serde::Serialize;
use sys::haproxy::{self, Haproxy, HaproxyError, HaproxyFiles};
use sys::nft::Netns;

/// How long an old worker may keep serving its connections after a reload or a stop before
/// haproxy ends them: longer than any connection the lab tests keep open (about 20 s), and short
/// enough that old workers do not pile up on a router reloaded often.
pub const HARD_STOP_AFTER: Duration = Duration::from_secs(10 * 60);

/// How long a stop waits for the master to exit before leaving it to finish its connections.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Why the router's haproxy could not be prepared or moved.
#[derive(Debug, thiserror::Error)]
pub enum BalancerError {
    /// A file in the haproxy directory could not be written.
    #[error("cannot {action} {path}")]
    Io {
        /// What was attempted.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// haproxy failed (refused the file, could not start, reload, or answer).
    #[error("haproxy failed")]
    Haproxy(#[source] HaproxyError),
    /// A runtime command was refused in a way that is not part of the plan.
    #[error("haproxy refused `{command}`: {answer}")]
    Runtime {
        /// The command.
        command: String,
        /// haproxy's answer.
        answer: String,
    },
}

/// What to do with haproxy once the nft commit succeeded; made by [`Balancer::prepare`].
#[derive(Debug)]
pub(crate) enum LbPlan {
    /// Nothing changes for haproxy.
    Nothing,
    /// Only members change: the runtime API, with `haproxy.cfg` rewritten later.
    Members {
        /// The member changes.
        changes: Vec<MemberChange>,
    },
    /// `haproxy.cfg.new` is written and checked: rename it into place, start or reload.
    Reload,
    /// No load-balancer rule is left: stop haproxy.
    Stop,
}

/// One member of one load-balancer rule as haproxy sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberStatus {
    /// The VM's address.
    pub vm_ip: String,
    /// The VM's port.
    pub port: u16,
    /// haproxy's server name.
    pub server: String,
    /// Health as haproxy reports it: `UP`, `DOWN`, `MAINT`, `no check`, `UP 1/3`…, or `unknown`
    /// when haproxy does not list the server.
    pub status: String,
    /// The last health check's result (`L4OK`, `L4CON`…), empty without checks.
    pub check_status: String,
    /// Connections open now.
    pub current_connections: u64,
    /// Connections since the worker started.
    pub total_connections: u64,
}

/// One load-balancer rule as haproxy sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LbStatus {
    /// The rule's id.
    pub id: u64,
    /// Its members, in the config's order.
    pub members: Vec<MemberStatus>,
}

/// The router's haproxy and what this process knows of it.
#[derive(Debug)]
pub(crate) struct Balancer {
    netns: Netns,
    files: HaproxyFiles,
    running: Option<Haproxy>,
    /// Removed members still holding connections: `(backend, server)`, disabled, not deleted.
    draining: Vec<(String, String)>,
    /// Set when moving haproxy failed after a commit: the next tick restores it.
    stale: bool,
    /// Set when members changed through the runtime API and `haproxy.cfg` still describes the
    /// membership before: [`Balancer::tend`] or [`Balancer::write_file`] rewrites it.
    file_behind: bool,
}

impl Balancer {
    /// The balancer of a router whose state is in `state_dir`; adopts a haproxy left running by
    /// an earlier process (best effort: a failure only means it will be started or adopted later).
    pub(crate) fn open(netns: Netns, state_dir: &std::path::Path) -> Balancer {
        let files = HaproxyFiles::new(state_dir.join("haproxy"));
        let running = match Haproxy::adopt(&netns, files.clone()) {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(%netns, error = %crate::chain(&e), "cannot adopt haproxy");
                None
            }
        };
        Balancer {
            netns,
            files,
            running,
            draining: Vec::new(),
            stale: false,
            file_behind: false,
        }
    }

    fn render(&self, config: &ValidConfig) -> Option<String> {
        let global = Global {
            stats_socket: self.files.stats_socket(),
            hard_stop_after: HARD_STOP_AFTER,
        };
        render_haproxy(config, &global)
    }

    fn new_path(&self) -> PathBuf {
        self.files.dir().join("haproxy.cfg.new")
    }

    /// Plans the move from `old` (what runs, if known) to `new`; with `full`, or when haproxy is
    /// not known to run, a config with rules is started or reloaded. For a start or reload the
    /// new file is written and checked here, before anything is committed.
    ///
    /// # Errors
    /// [`BalancerError::Haproxy`] with [`HaproxyError::ConfigInvalid`] when haproxy refuses the
    /// file; [`BalancerError::Io`].
    pub(crate) fn prepare(
        &mut self,
        old: Option<&[LoadBalancer]>,
        new: &ValidConfig,
        full: bool,
    ) -> Result<LbPlan, BalancerError> {
        let change = match old {
            _ if new.load_balancers.is_empty() => {
                if self.running.is_some() || old.is_some_and(|o| !o.is_empty()) {
                    LbChange::Stop
                } else {
                    LbChange::None
                }
            }
            Some(_) if full || self.running.is_none() || self.stale => LbChange::Reload,
            None => LbChange::Reload,
            Some(old) => plan_balancers_change(old, &new.load_balancers),
        };
        Ok(match change {
            LbChange::None => LbPlan::Nothing,
            LbChange::Stop => LbPlan::Stop,
            LbChange::Members(changes) => LbPlan::Members { changes },
            LbChange::Reload => match self.render(new) {
                Some(text) => {
                    self.write_checked(&text)?;
                    LbPlan::Reload
                }
                None => LbPlan::Stop,
            },
        })
    }

    fn write(&self, path: &std::path::Path, text: &str) -> Result<(), BalancerError> {
        let io = |action| {
            move |source| BalancerError::Io {
                action,
                path: path.to_path_buf(),
                source,
            }
        };
        std::fs::create_dir_all(self.files.dir()).map_err(io("create the directory of"))?;
        std::fs::write(path, text).map_err(io("write"))
    }

    fn write_checked(&self, text: &str) -> Result<(), BalancerError> {
        let path = self.new_path();
        self.write(&path, text)?;
        haproxy::check(&self.netns, &path).map_err(BalancerError::Haproxy)
    }

    /// Marks haproxy as not holding the config: the next [`Balancer::tend`] restores it.
    pub(crate) fn mark_stale(&mut self) {
        self.stale = true;
    }

    /// Carries out a plan after the nft commit. On failure the next [`Balancer::tend`] restores
    /// haproxy from `config`.
    ///
    /// # Errors
    /// [`BalancerError`].
    pub(crate) fn enact(
        &mut self,
        plan: LbPlan,
        config: &ValidConfig,
    ) -> Result<(), BalancerError> {
        let r = match plan {
            LbPlan::Nothing => Ok(()),
            LbPlan::Stop => self.stop(),
            LbPlan::Reload => self.install_and_reload(),
            LbPlan::Members { changes } => match self.change_members(&changes) {
                Ok(()) => {
                    self.file_behind = true;
                    Ok(())
                }
                Err(e) => {
                    tracing::warn!(netns = %self.netns, error = %crate::chain(&e), "runtime change failed; reloading haproxy");
                    match self.render(config) {
                        Some(text) => self
                            .write_checked(&text)
                            .and_then(|()| self.install_and_reload()),
                        None => self.stop(),
                    }
                }
            },
        };
        self.stale = r.is_err();
        if r.is_err() {
            // Keep the last file that describes a config, so a restart serves the right one.
            if let Some(text) = self.render(config) {
                if self.write(&self.files.config(), &text).is_ok() {
                    self.file_behind = false;
                }
            }
        }
        r
    }

    /// Rewrites `haproxy.cfg` for `config` when members changed through the runtime API since
    /// it was written.
    ///
    /// # Errors
    /// [`BalancerError::Io`]; the file stays marked as behind.
    pub(crate) fn write_file(&mut self, config: Option<&ValidConfig>) -> Result<(), BalancerError> {
        if !self.file_behind {
            return Ok(());
        }
        if let Some(text) = config.and_then(|c| self.render(c)) {
            self.write(&self.files.config(), &text)?;
        }
        self.file_behind = false;
        Ok(())
    }

    fn install_and_reload(&mut self) -> Result<(), BalancerError> {
        let path = self.files.config();
        std::fs::rename(self.new_path(), &path).map_err(|source| BalancerError::Io {
            action: "rename into place",
            path,
            source,
        })?;
        self.file_behind = false;
        let before = match &self.running {
            Some(h) => Some(h.master_pid()),
            None => Haproxy::adopt(&self.netns, self.files.clone())
                .map_err(BalancerError::Haproxy)?
                .map(|h| h.master_pid()),
        };
        let h = Haproxy::ensure_running(&self.netns, self.files.clone())
            .map_err(BalancerError::Haproxy)?;
        self.draining.clear();
        if before == Some(h.master_pid()) {
            // An adopted master runs an older file: reload it. A new one read this file.
            let reloaded = h.reload();
            self.running = Some(h);
            reloaded.map_err(BalancerError::Haproxy)?;
        } else {
            self.running = Some(h);
        }
        Ok(())
    }

    fn stop(&mut self) -> Result<(), BalancerError> {
        let running = match self.running.take() {
            Some(h) => Some(h),
            None => {
                Haproxy::adopt(&self.netns, self.files.clone()).map_err(BalancerError::Haproxy)?
            }
        };
        self.draining.clear();
        if let Some(h) = running {
            match h.stop(STOP_GRACE) {
                Ok(()) => {}
                Err(HaproxyError::Timeout { .. }) => {
                    tracing::info!(netns = %self.netns, master = h.master_pid(), "haproxy stopping: its workers finish their connections");
                }
                Err(e) => return Err(BalancerError::Haproxy(e)),
            }
        }
        Ok(())
    }

    fn haproxy(&self) -> Result<&Haproxy, BalancerError> {
        self.running.as_ref().ok_or_else(|| BalancerError::Runtime {
            command: "show info".to_string(),
            answer: "haproxy is not running".to_string(),
        })
    }

    fn run(&self, commands: Vec<String>) -> Result<Vec<String>, BalancerError> {
        self.haproxy()?
            .runtime(&commands)
            .map_err(BalancerError::Haproxy)
    }

    fn change_members(&mut self, changes: &[MemberChange]) -> Result<(), BalancerError> {
        for c in changes {
            let id = format!("{}/{}", c.backend, c.server);
            let key = (c.backend.clone(), c.server.clone());
            let mut commands = Vec::new();
            match &c.add {
                Some((addr, options)) => {
                    if let Some(i) = self.draining.iter().position(|d| *d == key) {
                        // Back before it drained: it is still there, disabled.
                        self.draining.remove(i);
                    } else {
                        commands.push(format!("add server {id} {addr}{options}"));
                    }
                    commands.push(format!("enable server {id}"));
                    if c.checked {
                        commands.push(format!("enable health {id}"));
                    }
                    let answers = self.run(commands.clone())?;
                    for (command, answer) in commands.into_iter().zip(answers) {
                        if haproxy::is_error(&answer) {
                            return Err(BalancerError::Runtime { command, answer });
                        }
                    }
                }
                None => {
                    commands.push(format!("disable server {id}"));
                    commands.push(format!("del server {id}"));
                    let answers = self.run(commands.clone())?;
                    if let Some(a) = answers.first().filter(|a| haproxy::is_error(a)) {
                        if !a.starts_with("No such server") {
                            return Err(BalancerError::Runtime {
                                command: commands[0].clone(),
                                answer: a.clone(),
                            });
                        }
                    }
                    match answers.get(1).map(String::as_str) {
                        Some(a) if !haproxy::is_error(a) || a.starts_with("No such server") => {}
                        Some(a) if a.starts_with("Server still has connections") => {
                            tracing::info!(netns = %self.netns, server = %id, "member removed but still connected: draining");
                            self.draining.push(key);
                        }
                        other => {
                            return Err(BalancerError::Runtime {
                                command: commands[1].clone(),
                                answer: other.unwrap_or_default().to_string(),
                            })
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The periodic chore: deletes drained members, and restores haproxy from `config` when an
    /// earlier move failed.
    ///
    /// # Errors
    /// [`BalancerError`]; retried on the next tick.
    pub(crate) fn tend(&mut self, config: Option<&ValidConfig>) -> Result<(), BalancerError> {
        self.write_file(config)?;
        if self.stale {
            if let Some(config) = config {
                let plan = self.prepare(None, config, true)?;
                self.enact(plan, config)?;
            }
        }
        if self.draining.is_empty() {
            return Ok(());
        }
        let commands: Vec<String> = self
            .draining
            .iter()
            .map(|(b, s)| format!("del server {b}/{s}"))
            .collect();
        let answers = self.run(commands)?;
        let mut still = Vec::new();
        for (key, answer) in self.draining.drain(..).zip(answers) {
            if answer.starts_with("Server still has connections") {
                still.push(key);
            } else if haproxy::is_error(&answer) && !answer.starts_with("No such server") {
                tracing::warn!(server = %format!("{}/{}", key.0, key.1), answer, "cannot delete a drained member");
                still.push(key);
            } else {
                tracing::info!(server = %format!("{}/{}", key.0, key.1), "drained member deleted");
            }
        }
        self.draining = still;
        Ok(())
    }

    /// Members removed from the config that haproxy still keeps for their connections.
    pub(crate) fn draining(&self) -> &[(String, String)] {
        &self.draining
    }

    /// Every rule's members with haproxy's view of them.
    ///
    /// # Errors
    /// [`BalancerError::Haproxy`] when haproxy does not answer.
    pub(crate) fn status(&self, config: &ValidConfig) -> Result<Vec<LbStatus>, BalancerError> {
        if config.load_balancers.is_empty() {
            return Ok(Vec::new());
        }
        let states = match &self.running {
            Some(h) => h.server_states().map_err(BalancerError::Haproxy)?,
            None => Vec::new(),
        };
        Ok(config
            .load_balancers
            .iter()
            .map(|lb| {
                let backend = listen_name(lb.id);
                LbStatus {
                    id: lb.id.0,
                    members: lb
                        .members
                        .iter()
                        .map(|m| {
                            let server = server_name(m);
                            let s = states
                                .iter()
                                .find(|s| s.backend == backend && s.server == server);
                            MemberStatus {
                                vm_ip: m.vm_ip.to_string(),
                                port: m.port,
                                status: s
                                    .map_or_else(|| "unknown".to_string(), |s| s.status.clone()),
                                check_status: s.map(|s| s.check_status.clone()).unwrap_or_default(),
                                current_connections: s.map_or(0, |s| s.current_sessions),
                                total_connections: s.map_or(0, |s| s.total_sessions),
                                server,
                            }
                        })
                        .collect(),
                }
            })
            .collect())
    }
}
