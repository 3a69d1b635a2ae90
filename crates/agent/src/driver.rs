//! What an agent does on its host: how routers and VMs come to exist and how a router is given
//! its config.
//!
//! `lab` makes every router and VM a namespace of the host's lab and applies configs with the
//! router data plane itself (nftables, haproxy). `dry-run` runs the same [`Router`] over a
//! [`RecordingKernel`] and without haproxy, so it supersedes, repeats and refuses exactly as a
//! real router does, and writes each config it takes, with what it renders to, under the data
//! directory: nothing is enforced, and whoever runs it says so. `host` makes every router a
//! namespace of a real host plugged into the host's public bridge and its network's VLAN bridge
//! ([`crate::host`]), and leaves the guests to the host's VM driver.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ipnet::Ipv4Net;
use lab::{Lab, NetworkSpec, VmLabel, VmSpec};
use router_config::{Generation, RouterConfig, RouterDelta};
use sys::kernel::{Kernel, RecordingKernel};
use sys::nft::Netns;
use vrouterd::{ApplyError, ApplyOutcome, Drift, Router};

use crate::host::{Host, HostConfig, HostError};
pub use crate::proto::Applied;
use crate::proto::RouterStatus;

/// Which driver, as the startup line and listRouters say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverKind {
    /// Lab namespaces, enforced for real.
    Lab,
    /// Rendered and validated, written to disk, not enforced.
    DryRun,
    /// Namespaces of a real host on its public bridge and guest VLANs, enforced for real.
    Host,
}

impl DriverKind {
    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            DriverKind::Lab => "lab",
            DriverKind::DryRun => "dry-run",
            DriverKind::Host => "host",
        }
    }
}

/// The agent.
#[derive(Clone)]
pub struct Driver {
    kind: DriverKind,
    inner: Arc<Inner>,
}

struct Inner {
    data_dir: PathBuf,
    lab: Mutex<Option<Lab>>,
    /// The host driver's links and namespaces (host driver only).
    host: Option<Host>,
    routers: Mutex<HashMap<String, Arc<Mutex<RouterSlot>>>>,
    /// Configs whose commits a dry-run router's kernel refuses, as a kernel refusing a config
    /// would (for tests of refusal handling: a router refusing what the API accepted cannot be
    /// provoked otherwise, the API checks everything first). The router itself answers first:
    /// an older generation is still superseded and a repeat still a no-op.
    fault: Option<Fault>,
}

/// Why a dry-run router's kernel refuses to commit a config, if it does.
pub type Fault = fn(&RouterConfig) -> Option<String>;

enum RouterSlot {
    /// A router over its namespace (lab and host drivers).
    Netns(Box<Router>),
    /// Its ledger is in `data_dir/dry-run/<router>/state`.
    DryRun(Box<Router<RecordingKernel>>),
}

/// A router's answer to a config, as the agent reports it.
fn answer(outcome: Result<ApplyOutcome, ApplyError>) -> Result<Applied, ApplyError> {
    match outcome? {
        ApplyOutcome::Applied { generation, .. } | ApplyOutcome::Unchanged { generation } => {
            Ok(Applied::Generation(generation))
        }
        ApplyOutcome::Superseded { applied_generation } => {
            Ok(Applied::Superseded(applied_generation))
        }
    }
}

/// A router's answer to a delta, as the agent reports it.
fn delta_answer(
    outcome: Result<ApplyOutcome, ApplyError>,
    base: Generation,
) -> Result<Applied, DeltaFailure> {
    answer(outcome).map_err(|e| match e {
        ApplyError::Delta(source) => DeltaFailure::Stale { base, source },
        e => DeltaFailure::Refused(e.into()),
    })
}

/// What a router holds and whether its kernel still enforces it.
fn status_of<K: Kernel>(r: &mut Router<K>) -> Result<RouterStatus, ApplyError> {
    let drift = match r.drift()? {
        Drift::InSync | Drift::NothingApplied => None,
        Drift::Drifted { expected, found } => Some(format!(
            "the kernel's ruleset generation is {found}, the router left {expected}"
        )),
    };
    Ok(RouterStatus {
        generation: r.generation(),
        drift,
        config: r.config().map(|c| c.document().clone()),
    })
}

/// Why the driver could not do what it was asked.
///
/// Each variant keeps its source; [`DriverError::chain`] is the whole chain as one line, the
/// text an agent sends its server.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The host's lab refused (a router or VM it does not have, a namespace it cannot make or
    /// remove, its state on disk).
    #[error(transparent)]
    Lab(#[from] lab::LabError),
    /// The router refused a config, or cannot be opened or asked.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// The host driver refused (no VLAN, a link it cannot make, its state on disk).
    #[error(transparent)]
    Host(#[from] HostError),
    /// The host driver was asked about a router it does not have.
    #[error("router {0} is not on this host")]
    NotOnHost(String),
    /// A dry-run router's ledger cannot be read.
    #[error(transparent)]
    Ledger(#[from] vrouterd::ledger::LedgerError),
    /// A router's directory cannot be made or removed.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What was being done (`create`, `remove`).
        action: &'static str,
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A thread panicked holding the named state (`lab`, `agent`, `router`).
    #[error("{0} state poisoned")]
    Poisoned(&'static str),
    /// A lab operation was asked of a driver that has no lab (dry-run).
    #[error("no lab")]
    NoLab,
    /// A host-driver operation was asked of another driver.
    #[error("not the host driver")]
    NoHost,
    /// The blocking task carrying the work did not finish.
    #[error("agent task failed")]
    Task(#[source] tokio::task::JoinError),
    /// The lab driver cannot run here: the agent is not root.
    #[error("not root")]
    NotRoot,
    /// The lab driver cannot run here: a tool it uses is not installed.
    #[error("`{tool}` is not installed")]
    ToolMissing {
        /// The tool.
        tool: &'static str,
    },
}

impl DriverError {
    /// The error and every source under it, `: `-separated, as one line.
    pub fn chain(&self) -> String {
        vrouterd::chain(self)
    }

    fn io(action: &'static str, path: PathBuf) -> impl FnOnce(std::io::Error) -> DriverError {
        move |source| DriverError::Io {
            action,
            path,
            source,
        }
    }
}

/// Why a delta was not applied.
#[derive(Debug, thiserror::Error)]
pub enum DeltaFailure {
    /// The router does not hold the delta's base: the complete config is needed.
    #[error("router holds another generation than the delta's base {base}")]
    Stale {
        /// The delta's base.
        base: Generation,
        /// What the router found.
        #[source]
        source: router_config::DeltaError,
    },
    /// The router refused the config the delta makes, or could not be asked.
    #[error(transparent)]
    Refused(#[from] DriverError),
}

/// Runs blocking work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DriverError> + Send + 'static,
) -> Result<T, DriverError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(DriverError::Task)?
}

impl Inner {
    /// Runs `f` on the lab (the lab driver's; an error for dry-run).
    fn with_lab<T>(
        &self,
        f: impl FnOnce(&mut Lab) -> Result<T, DriverError>,
    ) -> Result<T, DriverError> {
        let mut lab = self.lab.lock().map_err(|_| DriverError::Poisoned("lab"))?;
        f(lab.as_mut().ok_or(DriverError::NoLab)?)
    }
}

impl Driver {
    /// The dry-run driver, writing under `data_dir/dry-run`.
    pub fn dry_run(data_dir: &Path) -> Driver {
        Driver {
            kind: DriverKind::DryRun,
            inner: Arc::new(Inner {
                data_dir: data_dir.to_path_buf(),
                lab: Mutex::new(None),
                host: None,
                routers: Mutex::new(HashMap::new()),
                fault: None,
            }),
        }
    }

    /// The dry-run driver with routers whose kernels refuse to commit what `fault` names (tests
    /// of how refusals are handled upstream); the refused generation is spent, as on a real
    /// router.
    pub fn dry_run_refusing(data_dir: &Path, fault: Fault) -> Driver {
        Driver {
            kind: DriverKind::DryRun,
            inner: Arc::new(Inner {
                data_dir: data_dir.to_path_buf(),
                lab: Mutex::new(None),
                host: None,
                routers: Mutex::new(HashMap::new()),
                fault: Some(fault),
            }),
        }
    }

    /// The lab driver: opens the data directory's lab, or builds an empty one.
    ///
    /// # Errors
    /// Why the lab cannot be opened or built.
    pub fn lab(data_dir: &Path) -> Result<Driver, DriverError> {
        let lab = match Lab::open(data_dir) {
            Ok(lab) => lab,
            Err(lab::LabError::NotUp { .. }) => Lab::up_empty(data_dir)?,
            Err(e) => return Err(e.into()),
        };
        Ok(Driver {
            kind: DriverKind::Lab,
            inner: Arc::new(Inner {
                data_dir: data_dir.to_path_buf(),
                lab: Mutex::new(Some(lab)),
                host: None,
                routers: Mutex::new(HashMap::new()),
                fault: None,
            }),
        })
    }

    /// The host driver over `data_dir`, re-adopting what its state file records (call
    /// [`Driver::open_all`] to open those routers).
    ///
    /// # Errors
    /// A bad configuration or an unreadable state file.
    pub fn host(data_dir: &Path, config: HostConfig) -> Result<Driver, DriverError> {
        let host = Host::open(data_dir, config)?;
        Ok(Driver {
            kind: DriverKind::Host,
            inner: Arc::new(Inner {
                data_dir: data_dir.to_path_buf(),
                lab: Mutex::new(None),
                host: Some(host),
                routers: Mutex::new(HashMap::new()),
                fault: None,
            }),
        })
    }

    /// The host driver's state (`None` for the other drivers).
    pub fn host_state(&self) -> Option<crate::host::HostState> {
        self.inner.host.as_ref().and_then(|h| h.state().ok())
    }

    /// Whether the lab driver can run here: root, and the tools it uses.
    ///
    /// # Errors
    /// [`DriverError::NotRoot`] or [`DriverError::ToolMissing`].
    pub fn lab_possible() -> Result<(), DriverError> {
        if !nix::unistd::Uid::effective().is_root() {
            return Err(DriverError::NotRoot);
        }
        for tool in ["ip", "nft", "haproxy", "nsenter"] {
            if !sys::cmd::is_on_path(tool) {
                return Err(DriverError::ToolMissing { tool });
            }
        }
        Ok(())
    }

    /// Which driver this is.
    pub fn kind(&self) -> DriverKind {
        self.kind
    }

    /// What the driver is, for a startup line: `lab <id> (enforced)` or `dry-run`.
    pub fn describe(&self) -> String {
        match self.kind {
            DriverKind::Lab => {
                let id = self
                    .inner
                    .lab
                    .lock()
                    .ok()
                    .and_then(|l| l.as_ref().map(|l| l.id().to_string()))
                    .unwrap_or_default();
                format!("lab {id} (enforced)")
            }
            DriverKind::DryRun => "dry-run (configs validated and written, not enforced)".into(),
            DriverKind::Host => match &self.inner.host {
                Some(h) => format!("{} (enforced)", crate::host::describe(h.config())),
                None => "host".into(),
            },
        }
    }

    fn host_driver(&self) -> Result<&Host, DriverError> {
        self.inner.host.as_ref().ok_or(DriverError::NoHost)
    }

    fn slot(&self, router: &str) -> Result<Arc<Mutex<RouterSlot>>, DriverError> {
        let mut routers = self
            .inner
            .routers
            .lock()
            .map_err(|_| DriverError::Poisoned("agent"))?;
        if let Some(s) = routers.get(router) {
            return Ok(s.clone());
        }
        let slot = match self.kind {
            DriverKind::DryRun => {
                let dir = dry_run_state(&self.inner.data_dir, router);
                // The recording kernel stands for what dry-run writes to disk, which outlives
                // the agent: it resumes where the router's ledger says it was left.
                let kernel = match vrouterd::ledger::read_kernel_mark(&dir)? {
                    Some(mark) => RecordingKernel::resuming(mark.netns, mark.nft_generation),
                    None => RecordingKernel::new(),
                }
                .without_journal();
                let r = Router::with_kernel(kernel, &dir)?;
                RouterSlot::DryRun(Box::new(r))
            }
            DriverKind::Lab => {
                let ns = self.inner.with_lab(|lab| Ok(lab.router_netns(router)?))?;
                let dir = self.inner.data_dir.join("routers").join(router);
                std::fs::create_dir_all(&dir).map_err(DriverError::io("create", dir.clone()))?;
                let r = Router::open(Netns::Named(ns), &dir)?;
                RouterSlot::Netns(Box::new(r))
            }
            DriverKind::Host => {
                let ns = self
                    .host_driver()?
                    .router_netns(router)
                    .ok_or_else(|| DriverError::NotOnHost(router.to_string()))?;
                let dir = self.inner.data_dir.join("routers").join(router);
                std::fs::create_dir_all(&dir).map_err(DriverError::io("create", dir.clone()))?;
                let r = Router::open(Netns::Named(ns), &dir)?;
                RouterSlot::Netns(Box::new(r))
            }
        };
        let slot = Arc::new(Mutex::new(slot));
        routers.insert(router.to_string(), slot.clone());
        Ok(slot)
    }

    /// Makes sure a network's router exists and is wired (lab: its namespace; dry-run: its
    /// directory; host: its namespace on the public bridge and on VLAN `vlan`'s bridge, which
    /// the host driver needs).
    ///
    /// # Errors
    /// Why it cannot be made.
    pub async fn ensure_router(
        &self,
        router: &str,
        cidr: Ipv4Net,
        gateway: Ipv4Addr,
        vlan: Option<u16>,
    ) -> Result<(), DriverError> {
        let this = self.clone();
        let router = router.to_string();
        blocking(move || match this.kind {
            DriverKind::Host => {
                this.host_driver()?.ensure_router(&router, vlan)?;
                Ok(())
            }
            DriverKind::DryRun => {
                let dir = this.inner.data_dir.join("dry-run").join(&router);
                std::fs::create_dir_all(&dir).map_err(DriverError::io("create", dir.clone()))
            }
            DriverKind::Lab => this.inner.with_lab(|lab| {
                if lab.namespaces().routers.contains_key(&router) {
                    // Recorded: made again if it was stopped.
                    return Ok(lab.start_router(&router)?);
                }
                lab.add_network(&NetworkSpec {
                    router: router.clone(),
                    guest_cidr: cidr,
                    gateway,
                    vms: Vec::new(),
                })?;
                Ok(())
            }),
        })
        .await
    }

    /// Makes a network's router again from nothing: what [`Driver::stop_router`] removes
    /// goes, and an empty router is made as [`Driver::ensure_router`] makes one; the network's
    /// guest bridge and VMs stay.
    ///
    /// # Errors
    /// Why it cannot be rebuilt.
    pub async fn rebuild_router(
        &self,
        router: &str,
        cidr: Ipv4Net,
        gateway: Ipv4Addr,
        vlan: Option<u16>,
    ) -> Result<(), DriverError> {
        self.stop_router(router).await?;
        self.ensure_router(router, cidr, gateway, vlan).await
    }

    /// Stops a network's router: its slot, its recorded state and its namespace (lab, host)
    /// or ledger (dry-run) go, and nothing takes their place; the network's guest bridge and
    /// VMs stay. A router already stopped is fine.
    ///
    /// # Errors
    /// Why it cannot be stopped; what is left of it goes with the next stop or rebuild.
    pub async fn stop_router(&self, router: &str) -> Result<(), DriverError> {
        let this = self.clone();
        let name = router.to_string();
        blocking(move || {
            let slot = this
                .inner
                .routers
                .lock()
                .map_err(|_| DriverError::Poisoned("agent"))?
                .remove(&name);
            // Dropped before the namespace goes, as for a removal.
            drop(slot);
            let state = match this.kind {
                DriverKind::DryRun => dry_run_state(&this.inner.data_dir, &name),
                DriverKind::Lab | DriverKind::Host => {
                    this.inner.data_dir.join("routers").join(&name)
                }
            };
            match std::fs::remove_dir_all(&state) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(DriverError::io("remove", state)(e))
                }
                _ => {}
            }
            match this.kind {
                DriverKind::DryRun => Ok(()),
                DriverKind::Lab => this.inner.with_lab(|lab| {
                    if lab.namespaces().routers.contains_key(&name) {
                        lab.stop_router(&name)?;
                    }
                    Ok(())
                }),
                DriverKind::Host => {
                    this.host_driver()?.remove_router(&name)?;
                    Ok(())
                }
            }
        })
        .await
    }

    /// Removes a network's router.
    ///
    /// # Errors
    /// Why it cannot be removed.
    pub async fn remove_router(&self, router: &str) -> Result<(), DriverError> {
        let this = self.clone();
        let router = router.to_string();
        blocking(move || {
            let slot = this
                .inner
                .routers
                .lock()
                .map_err(|_| DriverError::Poisoned("agent"))?
                .remove(&router);
            // Dropped before the namespace goes: the router's netlink socket lives in it and
            // would keep it alive. haproxy ends with the namespace's processes.
            drop(slot);
            match this.kind {
                DriverKind::DryRun => {
                    // The ledger goes with the router, as a lab router's does; what dry-run
                    // wrote beside it stays.
                    let dir = dry_run_state(&this.inner.data_dir, &router);
                    match std::fs::remove_dir_all(&dir) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                            Err(DriverError::io("remove", dir)(e))
                        }
                        _ => Ok(()),
                    }
                }
                DriverKind::Lab => {
                    this.inner
                        .with_lab(|lab| Ok(lab.remove_network(&router)?))?;
                    let dir = this.inner.data_dir.join("routers").join(&router);
                    let _ = std::fs::remove_dir_all(dir);
                    Ok(())
                }
                DriverKind::Host => {
                    this.host_driver()?.remove_router(&router)?;
                    let dir = this.inner.data_dir.join("routers").join(&router);
                    let _ = std::fs::remove_dir_all(dir);
                    Ok(())
                }
            }
        })
        .await
    }

    /// Makes a VM (lab: a namespace on its network's bridge, keyed `vm`, found by `label`).
    ///
    /// The host driver records the VM (its MAC and VLAN) as a user of its network's bridge and
    /// leaves starting it to its VM driver.
    ///
    /// A labelled VM replaces an unlabelled one of the same router and address: that is the
    /// same VM made by a server that still keyed VMs by their names.
    ///
    /// # Errors
    /// Why it cannot be made.
    pub async fn ensure_vm(
        &self,
        router: &str,
        vm: &str,
        ip: Ipv4Addr,
        label: Option<VmLabel>,
        nic: VmNic,
    ) -> Result<(), DriverError> {
        if self.kind == DriverKind::DryRun {
            return Ok(());
        }
        let this = self.clone();
        let (router, vm) = (router.to_string(), vm.to_string());
        if self.kind == DriverKind::Host {
            return blocking(move || {
                Ok(this.host_driver()?.ensure_vm(
                    &vm,
                    &router,
                    nic.vlan,
                    nic.mac,
                    nic.guest.as_ref(),
                )?)
            })
            .await;
        }
        blocking(move || {
            this.inner.with_lab(|lab| {
                if lab.namespaces().vms.contains_key(&vm) {
                    return Ok(());
                }
                if label.is_some() {
                    let old: Option<String> = lab
                        .spec()
                        .networks
                        .iter()
                        .filter(|n| n.router == router)
                        .flat_map(|n| &n.vms)
                        .find(|v| v.ip == ip && v.label.is_none())
                        .map(|v| v.name.clone());
                    if let Some(old) = old {
                        lab.remove_vm(&old)?;
                    }
                }
                lab.add_vm(
                    &router,
                    &VmSpec {
                        name: vm,
                        ip,
                        label,
                    },
                )?;
                Ok(())
            })
        })
        .await
    }

    /// Removes a VM.
    ///
    /// # Errors
    /// Why it cannot be removed.
    pub async fn remove_vm(&self, vm: &str) -> Result<(), DriverError> {
        if self.kind == DriverKind::DryRun {
            return Ok(());
        }
        let this = self.clone();
        let vm = vm.to_string();
        if self.kind == DriverKind::Host {
            return blocking(move || Ok(this.host_driver()?.remove_vm(&vm)?)).await;
        }
        blocking(move || this.inner.with_lab(|lab| Ok(lab.remove_vm(&vm)?))).await
    }

    /// The generation a router holds, as far as the agent knows (`None`: nothing, or unknown).
    pub async fn held(&self, router: &str) -> Option<Generation> {
        let slot = self.slot(router).ok()?;
        blocking(move || {
            let slot = slot.lock().map_err(|_| DriverError::Poisoned("router"))?;
            Ok(match &*slot {
                RouterSlot::Netns(r) => r.generation(),
                RouterSlot::DryRun(r) => r.generation(),
            })
        })
        .await
        .ok()
        .flatten()
    }

    /// Gives a router its complete config.
    ///
    /// # Errors
    /// The router's reason for refusing it; the router keeps what it had.
    pub async fn apply(&self, router: &str, config: RouterConfig) -> Result<Applied, DriverError> {
        let slot = self.slot(router)?;
        let this = self.clone();
        let router = router.to_string();
        blocking(move || {
            let mut slot = slot.lock().map_err(|_| DriverError::Poisoned("router"))?;
            match &mut *slot {
                RouterSlot::Netns(r) => Ok(answer(r.apply_document(config))?),
                RouterSlot::DryRun(r) => {
                    let fault = this.inner.fault.and_then(|f| f(&config));
                    Ok(answer(this.dry_run_apply(&router, r, fault, |r| {
                        r.apply_document(config)
                    }))?)
                }
            }
        })
        .await
    }

    /// Applies through a dry-run router: a fault makes its kernel refuse every commit of this
    /// apply, as a real kernel refuses a config; a config taken is written out.
    fn dry_run_apply(
        &self,
        router: &str,
        r: &mut Router<RecordingKernel>,
        fault: Option<String>,
        apply: impl FnOnce(&mut Router<RecordingKernel>) -> Result<ApplyOutcome, ApplyError>,
    ) -> Result<ApplyOutcome, ApplyError> {
        let kernel = r.kernel().clone();
        if let Some(reason) = fault {
            kernel.refuse_commits(reason);
        }
        let outcome = apply(r);
        kernel.accept_commits();
        if let Ok(ApplyOutcome::Applied { generation, .. }) = &outcome {
            if let Err(e) = dry_run_write(&self.inner.data_dir, router, r) {
                tracing::error!(router, generation, error = %e, "cannot write what dry-run applied");
                return Err(ApplyError::Ledger(e));
            }
        }
        outcome
    }
}

impl Driver {
    /// Gives a router the config `delta` makes of the generation it holds.
    ///
    /// # Errors
    /// [`DeltaFailure::Stale`] when the router holds another generation than the delta's base;
    /// otherwise the router's reason for refusing the result.
    pub async fn apply_delta(
        &self,
        router: &str,
        delta: RouterDelta,
    ) -> Result<Applied, DeltaFailure> {
        let slot = self.slot(router)?;
        let this = self.clone();
        let router = router.to_string();
        tokio::task::spawn_blocking(move || {
            let mut slot = slot.lock().map_err(|_| DriverError::Poisoned("router"))?;
            let base = delta.base_generation;
            match &mut *slot {
                RouterSlot::Netns(r) => delta_answer(r.apply_delta(&delta), base),
                RouterSlot::DryRun(r) => {
                    // The fault sees the config the delta makes, as the router will.
                    let fault = this.inner.fault.and_then(|f| {
                        let held = r.config()?.document();
                        delta.apply_to(held).ok().and_then(|c| f(&c))
                    });
                    let outcome = this.dry_run_apply(&router, r, fault, |r| r.apply_delta(&delta));
                    delta_answer(outcome, base)
                }
            }
        })
        .await
        .map_err(DriverError::Task)?
    }

    /// What a router holds and whether the kernel still enforces it.
    ///
    /// # Errors
    /// Why the router cannot be asked.
    pub async fn status(&self, router: &str) -> Result<RouterStatus, DriverError> {
        let slot = self.slot(router)?;
        blocking(move || {
            let mut slot = slot.lock().map_err(|_| DriverError::Poisoned("router"))?;
            match &mut *slot {
                RouterSlot::Netns(r) => status_of(r.as_mut()),
                RouterSlot::DryRun(r) => status_of(r.as_mut()),
            }
            .map_err(DriverError::from)
        })
        .await
    }

    /// Opens every router of the lab or the host (after the agent starts), so that the drift
    /// timer looks at each of them and each reports the generation its ledger holds. A host
    /// router's namespace and links are made again first if they are gone (a reboot).
    pub async fn open_all(&self) {
        let names: Vec<String> = match self.kind {
            DriverKind::DryRun => return,
            DriverKind::Host => self.host_driver().map(Host::routers).unwrap_or_default(),
            DriverKind::Lab => self
                .inner
                .lab
                .lock()
                .ok()
                .and_then(|l| {
                    l.as_ref()
                        .map(|l| l.namespaces().routers.keys().cloned().collect())
                })
                .unwrap_or_default(),
        };
        for name in names {
            if self.kind == DriverKind::Host {
                // What exists is kept; what a reboot took (the namespace, a veth) is made again,
                // and the router then restores its rules from its ledger.
                let this = self.clone();
                let router = name.clone();
                let restored = blocking(move || Ok(this.host_driver()?.restore(&router)?)).await;
                if let Err(e) = restored {
                    tracing::warn!(router = %name, error = %e.chain(), "cannot restore the router's wiring");
                    continue;
                }
            }
            if let Err(e) = self.slot(&name) {
                tracing::warn!(router = %name, error = %e.chain(), "cannot open the router");
            }
        }
    }

    /// The drift timer's tick: every lab or host router whose kernel no longer holds what it
    /// committed (a flushed or edited table, a restart that lost it) gets its last good config
    /// back in one transaction, and haproxy's chores are done. Returns the routers repaired.
    ///
    /// The host driver also removes the bridges and VLAN interfaces whose last user has gone
    /// meanwhile (a hypervisor's port unplugged after the network's router went).
    pub async fn tend(&self) -> Vec<(String, Generation)> {
        if self.kind == DriverKind::DryRun {
            return Vec::new();
        }
        if self.kind == DriverKind::Host {
            let this = self.clone();
            if let Err(e) = blocking(move || Ok(this.host_driver()?.sweep()?)).await {
                tracing::warn!(error = %e.chain(), "cannot remove unused guest bridges");
            }
        }
        let slots: Vec<(String, Arc<Mutex<RouterSlot>>)> = match self.inner.routers.lock() {
            Ok(r) => r.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            Err(_) => return Vec::new(),
        };
        // One blocking task walks every router: a task per router costs a hand-off between the
        // runtime and the blocking pool each, which at a tick a second over hundreds of routers
        // was most of the timer's idle cost.
        let done = blocking(move || {
            Ok(slots
                .into_iter()
                .map(|(name, slot)| {
                    let fixed = tend_router(&slot);
                    (name, fixed)
                })
                .collect::<Vec<_>>())
        })
        .await;
        let done = match done {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e.chain(), "the drift timer's pass failed");
                return Vec::new();
            }
        };
        let mut repaired = Vec::new();
        for (name, fixed) in done {
            match fixed {
                Ok(Some(g)) => repaired.push((name, g)),
                Ok(None) => {}
                Err(e) => tracing::warn!(router = %name, error = %e.chain(), "drift repair failed"),
            }
        }
        repaired
    }
}

/// One router's turn of the drift timer: its kernel's commit checked (and restored from the
/// ledger when lost), haproxy's chores, dnsmasq restarted if it died. Returns the generation
/// restored, if any.
fn tend_router(slot: &Mutex<RouterSlot>) -> Result<Option<Generation>, DriverError> {
    let mut slot = slot.lock().map_err(|_| DriverError::Poisoned("router"))?;
    let RouterSlot::Netns(r) = &mut *slot else {
        return Ok(None);
    };
    let fixed = match r.drift()? {
        Drift::Drifted { .. } => r.repair()?,
        Drift::InSync | Drift::NothingApplied => None,
    };
    if let Err(e) = r.tend_balancer() {
        tracing::warn!(error = %vrouterd::chain(&e), "haproxy chores failed");
    }
    if let Err(e) = r.tend_dhcp() {
        tracing::warn!(error = %vrouterd::chain(&e), "cannot restart dnsmasq");
    }
    Ok(fixed)
}

/// A VM's NIC and guest as the server describes them (each part absent from a server that
/// predates it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VmNic {
    /// Its MAC address.
    pub mac: Option<router_config::MacAddr>,
    /// Its network's VLAN.
    pub vlan: Option<u16>,
    /// What a VM driver that boots guests boots.
    pub guest: Option<crate::proto::GuestSpec>,
}

/// Where a dry-run router keeps its ledger.
fn dry_run_state(data_dir: &Path, router: &str) -> PathBuf {
    data_dir.join("dry-run").join(router).join("state")
}

/// Writes the config a dry-run router now holds, with what it renders to, under
/// `data_dir/dry-run/<router>/`.
fn dry_run_write(
    data_dir: &Path,
    router: &str,
    r: &Router<RecordingKernel>,
) -> Result<(), vrouterd::ledger::LedgerError> {
    use vrouterd::ledger::LedgerError;
    let (Some(valid), Some(model)) = (r.config(), r.model()) else {
        return Ok(());
    };
    let dir = data_dir.join("dry-run").join(router);
    let io = |action: &'static str, path: PathBuf| {
        move |source| LedgerError::Io {
            action,
            path,
            source,
        }
    };
    std::fs::create_dir_all(&dir).map_err(io("create", dir.clone()))?;
    let json =
        serde_json::to_vec_pretty(valid.document()).map_err(|source| LedgerError::Corrupt {
            path: dir.join("config.json"),
            source,
        })?;
    let nft = render::render_full(model);
    let global = render::haproxy::Global {
        stats_socket: sys::haproxy::HaproxyFiles::new(&dir).stats_socket(),
        hard_stop_after: vrouterd::HARD_STOP_AFTER,
    };
    let haproxy = render::haproxy::render_haproxy(valid, &global);
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        let file = path.file_name().unwrap_or_default().to_string_lossy();
        let tmp = path.with_file_name(format!(".{file}.tmp"));
        std::fs::write(&tmp, bytes).map_err(io("write", tmp.clone()))?;
        std::fs::rename(&tmp, &path).map_err(io("rename", tmp))
    };
    write("ruleset.nft", nft.as_bytes())?;
    match haproxy {
        Some(h) => write("haproxy.cfg", h.as_bytes())?,
        None => {
            let _ = std::fs::remove_file(dir.join("haproxy.cfg"));
        }
    }
    // dnsmasq's three files, as a router would put them in `<state>/dnsmasq/`.
    let files = sys::dnsmasq::DnsmasqFiles::new(dir.join("dnsmasq"));
    let paths = render::dnsmasq::Paths {
        dhcp_hosts: files.dhcp_hosts(),
        dns_hosts: files.dns_hosts(),
        leases: files.leases(),
        pid: files.pid_file(),
        log: files.log(),
    };
    match render::dnsmasq::render(valid, &paths) {
        Some(d) => {
            std::fs::create_dir_all(files.dir()).map_err(io("create", files.dir().into()))?;
            write("dnsmasq/dnsmasq.conf", d.config.as_bytes())?;
            write("dnsmasq/dhcp-hosts", d.dhcp_hosts.as_bytes())?;
            write("dnsmasq/dns-hosts", d.dns_hosts.as_bytes())?;
        }
        None => {
            let _ = std::fs::remove_dir_all(files.dir());
        }
    }
    // The config last: its generation says the renders beside it are complete.
    write("config.json", &json)
}
