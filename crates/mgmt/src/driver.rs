//! The in-process agent: how routers and VMs come to exist and how a router is given its config.
//!
//! `lab` makes every router and VM a namespace of the server's lab and applies configs with the
//! router data plane itself (nftables, haproxy). `dry-run` validates and renders each config and
//! writes it under the data directory: nothing is enforced, and the server says so.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ipnet::Ipv4Net;
use lab::{Lab, NetworkSpec, VmSpec};
use router_config::{Generation, RouterConfig};
use sys::nft::Netns;
use vrouterd::{ApplyOutcome, Router};

/// Which driver, as the startup line and listRouters say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverKind {
    /// Lab namespaces, enforced for real.
    Lab,
    /// Rendered and validated, written to disk, not enforced.
    DryRun,
}

impl DriverKind {
    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            DriverKind::Lab => "lab",
            DriverKind::DryRun => "dry-run",
        }
    }
}

/// What an apply came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The router now holds this generation.
    Generation(Generation),
    /// The router already holds a newer generation.
    Superseded(Generation),
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
    routers: Mutex<HashMap<String, Arc<Mutex<RouterSlot>>>>,
    /// Tests only: a dry-run router that refuses the configs this names (a router refusing
    /// what the API accepted cannot be provoked otherwise: the API checks everything first).
    #[cfg(test)]
    fault: Option<Fault>,
}

/// Why a test's dry-run router refuses a config, if it does.
#[cfg(test)]
pub(crate) type Fault = fn(&RouterConfig) -> Option<String>;

enum RouterSlot {
    Lab(Box<Router>),
    DryRun { generation: Option<Generation> },
}

/// Runs blocking work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("agent task failed: {e}"))?
}

fn lab_err(e: &lab::LabError) -> String {
    lab::chain(e)
}

impl Driver {
    /// The dry-run driver, writing under `data_dir/dry-run`.
    pub fn dry_run(data_dir: &Path) -> Driver {
        Driver {
            kind: DriverKind::DryRun,
            inner: Arc::new(Inner {
                data_dir: data_dir.to_path_buf(),
                lab: Mutex::new(None),
                routers: Mutex::new(HashMap::new()),
                #[cfg(test)]
                fault: None,
            }),
        }
    }

    /// Tests only: the dry-run driver with routers that refuse what `fault` names.
    #[cfg(test)]
    pub(crate) fn dry_run_with_fault(data_dir: &Path, fault: Fault) -> Driver {
        Driver {
            kind: DriverKind::DryRun,
            inner: Arc::new(Inner {
                data_dir: data_dir.to_path_buf(),
                lab: Mutex::new(None),
                routers: Mutex::new(HashMap::new()),
                fault: Some(fault),
            }),
        }
    }

    /// The lab driver: opens the data directory's lab, or builds an empty one.
    ///
    /// # Errors
    /// Why the lab cannot be opened or built.
    pub fn lab(data_dir: &Path) -> Result<Driver, String> {
        let lab = match Lab::open(data_dir) {
            Ok(lab) => lab,
            Err(lab::LabError::NotUp { .. }) => Lab::up_empty(data_dir).map_err(|e| lab_err(&e))?,
            Err(e) => return Err(lab_err(&e)),
        };
        Ok(Driver {
            kind: DriverKind::Lab,
            inner: Arc::new(Inner {
                data_dir: data_dir.to_path_buf(),
                lab: Mutex::new(Some(lab)),
                routers: Mutex::new(HashMap::new()),
                #[cfg(test)]
                fault: None,
            }),
        })
    }

    /// Whether the lab driver can run here: root, and the tools it uses.
    pub fn lab_possible() -> Result<(), String> {
        if !nix::unistd::Uid::effective().is_root() {
            return Err("not root".into());
        }
        for tool in ["ip", "nft", "haproxy", "nsenter"] {
            if !sys::cmd::is_on_path(tool) {
                return Err(format!("`{tool}` is not installed"));
            }
        }
        Ok(())
    }

    /// Which driver this is.
    pub fn kind(&self) -> DriverKind {
        self.kind
    }

    /// The host a router runs on, as listRouters shows it.
    pub fn host(&self) -> String {
        match self.kind {
            DriverKind::Lab => {
                let id = self
                    .inner
                    .lab
                    .lock()
                    .ok()
                    .and_then(|l| l.as_ref().map(|l| l.id().to_string()))
                    .unwrap_or_default();
                format!("lab {id}")
            }
            DriverKind::DryRun => "dry-run (not enforced)".to_string(),
        }
    }

    fn slot(&self, router: &str) -> Result<Arc<Mutex<RouterSlot>>, String> {
        let mut routers = self
            .inner
            .routers
            .lock()
            .map_err(|_| "agent state poisoned".to_string())?;
        if let Some(s) = routers.get(router) {
            return Ok(s.clone());
        }
        let slot = match self.kind {
            DriverKind::DryRun => RouterSlot::DryRun { generation: None },
            DriverKind::Lab => {
                let ns = {
                    let lab = self
                        .inner
                        .lab
                        .lock()
                        .map_err(|_| "lab state poisoned".to_string())?;
                    let lab = lab.as_ref().ok_or("no lab")?;
                    lab.router_netns(router).map_err(|e| lab_err(&e))?
                };
                let dir = self.inner.data_dir.join("routers").join(router);
                std::fs::create_dir_all(&dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                let r = Router::open(Netns::Named(ns), &dir).map_err(|e| vrouterd::chain(&e))?;
                RouterSlot::Lab(Box::new(r))
            }
        };
        let slot = Arc::new(Mutex::new(slot));
        routers.insert(router.to_string(), slot.clone());
        Ok(slot)
    }

    /// Makes sure a network's router exists and is wired (lab: its namespace; dry-run: its
    /// directory).
    ///
    /// # Errors
    /// Why it cannot be made.
    pub async fn ensure_router(
        &self,
        router: &str,
        cidr: Ipv4Net,
        gateway: Ipv4Addr,
    ) -> Result<(), String> {
        let this = self.clone();
        let router = router.to_string();
        blocking(move || match this.kind {
            DriverKind::DryRun => {
                let dir = this.inner.data_dir.join("dry-run").join(&router);
                std::fs::create_dir_all(&dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))
            }
            DriverKind::Lab => {
                let mut lab = this
                    .inner
                    .lab
                    .lock()
                    .map_err(|_| "lab state poisoned".to_string())?;
                let lab = lab.as_mut().ok_or("no lab")?;
                if lab.namespaces().routers.contains_key(&router) {
                    return Ok(());
                }
                lab.add_network(&NetworkSpec {
                    router: router.clone(),
                    guest_cidr: cidr,
                    gateway,
                    vms: Vec::new(),
                })
                .map_err(|e| lab_err(&e))
            }
        })
        .await
    }

    /// Removes a network's router.
    ///
    /// # Errors
    /// Why it cannot be removed.
    pub async fn remove_router(&self, router: &str) -> Result<(), String> {
        let this = self.clone();
        let router = router.to_string();
        blocking(move || {
            let slot = this
                .inner
                .routers
                .lock()
                .map_err(|_| "agent state poisoned".to_string())?
                .remove(&router);
            // Dropped before the namespace goes: the router's netlink socket lives in it and
            // would keep it alive. haproxy ends with the namespace's processes.
            drop(slot);
            match this.kind {
                DriverKind::DryRun => Ok(()),
                DriverKind::Lab => {
                    let mut lab = this
                        .inner
                        .lab
                        .lock()
                        .map_err(|_| "lab state poisoned".to_string())?;
                    let lab = lab.as_mut().ok_or("no lab")?;
                    lab.remove_network(&router).map_err(|e| lab_err(&e))?;
                    let dir = this.inner.data_dir.join("routers").join(&router);
                    let _ = std::fs::remove_dir_all(dir);
                    Ok(())
                }
            }
        })
        .await
    }

    /// Makes a VM (lab: a namespace on its network's bridge).
    ///
    /// # Errors
    /// Why it cannot be made.
    pub async fn ensure_vm(&self, router: &str, vm: &str, ip: Ipv4Addr) -> Result<(), String> {
        if self.kind == DriverKind::DryRun {
            return Ok(());
        }
        let this = self.clone();
        let (router, vm) = (router.to_string(), vm.to_string());
        blocking(move || {
            let mut lab = this
                .inner
                .lab
                .lock()
                .map_err(|_| "lab state poisoned".to_string())?;
            let lab = lab.as_mut().ok_or("no lab")?;
            if lab.namespaces().vms.contains_key(&vm) {
                return Ok(());
            }
            lab.add_vm(&router, &VmSpec { name: vm, ip })
                .map_err(|e| lab_err(&e))
        })
        .await
    }

    /// Removes a VM.
    ///
    /// # Errors
    /// Why it cannot be removed.
    pub async fn remove_vm(&self, vm: &str) -> Result<(), String> {
        if self.kind == DriverKind::DryRun {
            return Ok(());
        }
        let this = self.clone();
        let vm = vm.to_string();
        blocking(move || {
            let mut lab = this
                .inner
                .lab
                .lock()
                .map_err(|_| "lab state poisoned".to_string())?;
            let lab = lab.as_mut().ok_or("no lab")?;
            lab.remove_vm(&vm).map_err(|e| lab_err(&e))
        })
        .await
    }

    /// The generation a router holds, as far as the agent knows (`None`: nothing, or unknown).
    pub async fn held(&self, router: &str) -> Option<Generation> {
        let slot = self.slot(router).ok()?;
        blocking(move || {
            let slot = slot
                .lock()
                .map_err(|_| "router state poisoned".to_string())?;
            Ok(match &*slot {
                RouterSlot::Lab(r) => r.generation(),
                RouterSlot::DryRun { generation } => *generation,
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
    pub async fn apply(&self, router: &str, config: RouterConfig) -> Result<Applied, String> {
        let slot = self.slot(router)?;
        let this = self.clone();
        let router = router.to_string();
        blocking(move || {
            let mut slot = slot
                .lock()
                .map_err(|_| "router state poisoned".to_string())?;
            match &mut *slot {
                RouterSlot::Lab(r) => match r.apply_document(config) {
                    Ok(ApplyOutcome::Applied { generation, .. })
                    | Ok(ApplyOutcome::Unchanged { generation }) => {
                        Ok(Applied::Generation(generation))
                    }
                    Ok(ApplyOutcome::Superseded { applied_generation }) => {
                        Ok(Applied::Superseded(applied_generation))
                    }
                    Err(e) => Err(vrouterd::chain(&e)),
                },
                RouterSlot::DryRun { generation } => {
                    let g = config.generation;
                    #[cfg(test)]
                    if let Some(reason) = this.inner.fault.and_then(|f| f(&config)) {
                        return Err(reason);
                    }
                    if let Some(held) = *generation {
                        if g < held {
                            return Ok(Applied::Superseded(held));
                        }
                    }
                    dry_run_write(&this.inner.data_dir, &router, config)?;
                    *generation = Some(g);
                    Ok(Applied::Generation(g))
                }
            }
        })
        .await
    }
}

/// Validates and renders a config and writes it, with what it renders to, under
/// `data_dir/dry-run/<router>/`.
fn dry_run_write(data_dir: &Path, router: &str, config: RouterConfig) -> Result<(), String> {
    let dir = data_dir.join("dry-run").join(router);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let json = serde_json::to_vec_pretty(&config).map_err(|e| e.to_string())?;
    let generation = config.generation;
    let valid = router_config::validate(config)
        .map_err(|problems| format!("config of generation {generation} refused: {problems}"))?;
    let nft = render::render_full(&render::plan(&valid));
    let haproxy = render::haproxy::render_haproxy(
        &valid,
        &sys::haproxy::global_section(&dir, vrouterd::HARD_STOP_AFTER),
    );
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    write("ruleset.nft", nft.as_bytes())?;
    match haproxy {
        Some(h) => write("haproxy.cfg", h.as_bytes())?,
        None => {
            let _ = std::fs::remove_file(dir.join("haproxy.cfg"));
        }
    }
    // The config last: its generation says the renders beside it are complete.
    write("config.json", &json)
}
