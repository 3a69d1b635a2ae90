//! The router's dnsmasq, which serves its guests DHCP (static leases) and DNS: render and check
//! its files before a commit, and after the commit move the running dnsmasq to them, by SIGHUP
//! when only the hosts files changed (leases, names) and by a restart when `dnsmasq.conf` did
//! (DNS servers, domain, the guest network).
//!
//! Its files live in `<state dir>/dnsmasq/` ([`DnsmasqFiles`]). The order of an apply is:
//! [`DhcpServer::prepare`] (render; write the changed files as `*.new` and check a new
//! `dnsmasq.conf.new` with `dnsmasq --test`; a refusal refuses the whole config), the nft
//! commit, then [`DhcpServer::enact`] (rename into place, then SIGHUP, restart, start or stop).
//! After `enact` the files in place always describe what runs, so a process that opens the
//! router again compares the files it renders with them and leaves an adopted dnsmasq alone when
//! nothing differs.
//!
//! When dnsmasq cannot be moved after the commit (it refuses to start, dies), the apply reports
//! it ([`crate::ApplyError::Dhcp`]): the firewall enforces the new generation and the ledger
//! records it, and [`DhcpServer::tend`], on every drift tick, starts dnsmasq again from the
//! files in place.

use std::path::{Path, PathBuf};

use render::dnsmasq::{render, DnsmasqFiles as Rendered, Paths};
use router_config::ValidConfig;
use serde::Serialize;
use sys::dnsmasq::{self, Dnsmasq, DnsmasqError, DnsmasqFiles};
use sys::nft::Netns;

/// Why the router's dnsmasq could not be prepared or moved.
#[derive(Debug, thiserror::Error)]
pub enum DhcpError {
    /// A file in the dnsmasq directory could not be written.
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
    /// dnsmasq failed (refused the file, could not start, be signalled or stopped).
    #[error("dnsmasq failed")]
    Dnsmasq(#[source] DnsmasqError),
}

/// The DHCP and DNS service as `status` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DhcpStatus {
    /// Whether dnsmasq runs.
    pub running: bool,
    /// Its pid, when it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// Static leases configured.
    pub leases: usize,
    /// Leases dnsmasq has handed out and still holds (its lease database).
    pub active_leases: usize,
}

/// What to do with dnsmasq once the nft commit succeeded; made by [`DhcpServer::prepare`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DhcpPlan {
    /// Nothing changes for dnsmasq.
    Nothing,
    /// Only the hosts files change: rename them into place and SIGHUP.
    Reload,
    /// `dnsmasq.conf` changes, or dnsmasq does not run: rename the new files into place and
    /// (re)start it.
    Restart,
    /// The config serves no DHCP: stop dnsmasq.
    Stop,
}

/// The router's dnsmasq and what this process knows of it.
#[derive(Debug)]
pub(crate) struct DhcpServer {
    netns: Netns,
    files: DnsmasqFiles,
    running: Option<Dnsmasq>,
    /// Set when moving dnsmasq failed after a commit: the next tick restarts it.
    stale: bool,
}

fn new_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".new");
    path.with_file_name(name)
}

impl DhcpServer {
    /// The DHCP server of a router whose state is in `state_dir`; adopts a dnsmasq left running
    /// by an earlier process (best effort: a failure only means it will be started later).
    pub(crate) fn open(netns: Netns, state_dir: &Path) -> DhcpServer {
        let files = DnsmasqFiles::new(state_dir.join("dnsmasq"));
        let running = match Dnsmasq::adopt(&netns, files.clone()) {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(%netns, error = %crate::chain(&e), "cannot adopt dnsmasq");
                None
            }
        };
        DhcpServer {
            netns,
            files,
            running,
            stale: false,
        }
    }

    fn paths(&self) -> Paths {
        Paths {
            dhcp_hosts: self.files.dhcp_hosts(),
            dns_hosts: self.files.dns_hosts(),
            leases: self.files.leases(),
            pid: self.files.pid_file(),
            log: self.files.log(),
        }
    }

    fn is_running(&mut self) -> bool {
        if self.running.as_ref().is_some_and(|d| !d.is_running()) {
            self.running = None;
        }
        self.running.is_some()
    }

    /// The rendered files and where each goes.
    fn targets(&self, r: &Rendered) -> [(PathBuf, String); 3] {
        [
            (self.files.config(), r.config.clone()),
            (self.files.dhcp_hosts(), r.dhcp_hosts.clone()),
            (self.files.dns_hosts(), r.dns_hosts.clone()),
        ]
    }

    /// Plans the move to `new`. The rendered files are compared with those in place (which
    /// describe what runs): a new `dnsmasq.conf`, or no dnsmasq running, means a (re)start, new
    /// hosts files only a SIGHUP. Every changed file is written beside its place as `*.new`; a
    /// new `dnsmasq.conf.new` is checked here, before anything is committed.
    ///
    /// # Errors
    /// [`DhcpError::Dnsmasq`] with [`DnsmasqError::ConfigInvalid`] when dnsmasq refuses the
    /// file; [`DhcpError::Io`].
    pub(crate) fn prepare(&mut self, new: &ValidConfig) -> Result<DhcpPlan, DhcpError> {
        // Files staged for a config that was then not committed are not what runs.
        for path in [
            self.files.config(),
            self.files.dhcp_hosts(),
            self.files.dns_hosts(),
        ] {
            let _ = std::fs::remove_file(new_path(&path));
        }
        let Some(rendered) = render(new, &self.paths()) else {
            let any = self.is_running()
                || Dnsmasq::adopt(&self.netns, self.files.clone())
                    .map_err(DhcpError::Dnsmasq)?
                    .is_some();
            return Ok(if any {
                DhcpPlan::Stop
            } else {
                DhcpPlan::Nothing
            });
        };
        let running = self.is_running() && !self.stale;
        let mut plan = if running {
            DhcpPlan::Nothing
        } else {
            DhcpPlan::Restart
        };
        for (i, (path, text)) in self.targets(&rendered).into_iter().enumerate() {
            let same = std::fs::read_to_string(&path).is_ok_and(|t| t == text);
            if same {
                continue;
            }
            let staged = new_path(&path);
            self.write(&staged, &text)?;
            if i == 0 {
                dnsmasq::check(&self.netns, &staged).map_err(DhcpError::Dnsmasq)?;
                plan = DhcpPlan::Restart;
            } else if plan == DhcpPlan::Nothing {
                plan = DhcpPlan::Reload;
            }
        }
        Ok(plan)
    }

    fn write(&self, path: &Path, text: &str) -> Result<(), DhcpError> {
        let io = |action| {
            move |source| DhcpError::Io {
                action,
                path: path.to_path_buf(),
                source,
            }
        };
        std::fs::create_dir_all(self.files.dir()).map_err(io("create the directory of"))?;
        std::fs::write(path, text).map_err(io("write"))
    }

    /// Moves every staged `*.new` file into its place.
    fn install(&self) -> Result<(), DhcpError> {
        for path in [
            self.files.config(),
            self.files.dhcp_hosts(),
            self.files.dns_hosts(),
        ] {
            let staged = new_path(&path);
            if staged.exists() {
                std::fs::rename(&staged, &path).map_err(|source| DhcpError::Io {
                    action: "rename into place",
                    path: path.clone(),
                    source,
                })?;
            }
        }
        Ok(())
    }

    /// Carries out a plan after the nft commit. On failure the next [`DhcpServer::tend`] starts
    /// dnsmasq again from `config`.
    ///
    /// # Errors
    /// [`DhcpError`].
    pub(crate) fn enact(&mut self, plan: DhcpPlan, config: &ValidConfig) -> Result<(), DhcpError> {
        let r = match plan {
            DhcpPlan::Nothing => Ok(()),
            DhcpPlan::Stop => self.stop(),
            DhcpPlan::Reload => self.install().and_then(|()| self.reload()),
            DhcpPlan::Restart => self.install().and_then(|()| self.restart()),
        };
        self.stale = r.is_err();
        if r.is_err() {
            // Put the files of `config` in place, so a later start serves the right leases.
            if let Some(rendered) = render(config, &self.paths()) {
                for (path, text) in self.targets(&rendered) {
                    let _ = self.write(&path, &text);
                }
            }
        }
        r
    }

    /// Whether dnsmasq is known to serve the config this process moved it to last (for a config
    /// that `serves` DHCP: started or adopted, and no move failed since).
    pub(crate) fn settled(&self, serves: bool) -> bool {
        !self.stale && (self.running.is_some() || !serves)
    }

    /// Marks dnsmasq as not serving the config: the next [`DhcpServer::tend`] restarts it.
    pub(crate) fn mark_stale(&mut self) {
        self.stale = true;
    }

    fn reload(&mut self) -> Result<(), DhcpError> {
        match &self.running {
            Some(d) if d.is_running() => d.reload().map_err(DhcpError::Dnsmasq),
            _ => self.restart(),
        }
    }

    fn restart(&mut self) -> Result<(), DhcpError> {
        self.stop()?;
        let d = Dnsmasq::start(&self.netns, self.files.clone()).map_err(DhcpError::Dnsmasq)?;
        self.running = Some(d);
        Ok(())
    }

    fn stop(&mut self) -> Result<(), DhcpError> {
        let running = match self.running.take() {
            Some(d) => Some(d),
            None => Dnsmasq::adopt(&self.netns, self.files.clone()).map_err(DhcpError::Dnsmasq)?,
        };
        if let Some(d) = running {
            d.stop().map_err(DhcpError::Dnsmasq)?;
        }
        Ok(())
    }

    /// The periodic chore: when `config` serves DHCP and dnsmasq is not running (it died, or an
    /// earlier move failed), starts it again. Returns whether it did.
    ///
    /// # Errors
    /// [`DhcpError`]; retried on the next tick.
    pub(crate) fn tend(&mut self, config: Option<&ValidConfig>) -> Result<bool, DhcpError> {
        let Some(config) = config.filter(|c| c.dhcp.is_some()) else {
            return Ok(false);
        };
        if self.is_running() && !self.stale {
            return Ok(false);
        }
        let plan = self.prepare(config)?;
        self.enact(plan, config)?;
        Ok(true)
    }

    /// The service as `status` reports it, or `None` when `config` serves no DHCP.
    pub(crate) fn status(&mut self, config: Option<&ValidConfig>) -> Option<DhcpStatus> {
        let dhcp = config?.dhcp.as_ref()?;
        let running = self.is_running();
        Some(DhcpStatus {
            running,
            pid: self.running.as_ref().map(Dnsmasq::pid),
            leases: dhcp.leases.len(),
            active_leases: dnsmasq::count_leases(&self.files),
        })
    }

    /// The pid of the running dnsmasq, if any.
    pub(crate) fn pid(&mut self) -> Option<i32> {
        self.is_running();
        self.running.as_ref().map(Dnsmasq::pid)
    }
}
