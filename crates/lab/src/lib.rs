//! Test hosts made of Linux network namespaces: an outside host playing the internet, one
//! virtual router per guest network and the guest VMs, wired together by bridges.
//!
//! A lab belongs to a data directory; its id (`gn` and eight hex digits) is a hash of that
//! directory's canonical path, and every namespace it makes is named `<id>-…`:
//! - `<id>-sw`, the switch: bridge `brpub` (the public segment) and `brg<N>` per guest network,
//!   where `N` is the network's slot (see below);
//! - `<id>-outside`: `eth0` on `brpub` with [`OUTSIDE_GATEWAY`] and the other
//!   [`OUTSIDE_PUBLIC_ADDRESSES`], plus [`OUTSIDE_INTERNET_ADDRESSES`] on `lo`;
//! - `<id>-r-<router>`: `pub0` on `brpub` and `guest0` on its guest bridge, forwarding on and no
//!   addresses (the router software configures those itself);
//! - `<id>-vm-<vm>`: `eth0` on its guest bridge with its address and a default route via the
//!   network's gateway.
//!
//! Entry points: [`Lab::up`], [`Lab::open`], [`down`], and [`LabGuard`] for tests.
//! The state is kept in `<data-dir>/lab.json`, written before anything is built, so [`down`] can
//! always clean up; it also finds namespaces by their `<id>-` prefix.
//!
//! A lab can also grow and shrink while it runs: [`Lab::up_empty`] builds just the switch and
//! the outside host, then [`Lab::add_network`], [`Lab::add_vm`], [`Lab::remove_vm`] and
//! [`Lab::remove_network`] change it one network or VM at a time. Each records the change in
//! `lab.json` (written to a temporary file and renamed over it, so a reader such as
//! `guestnet lab exec` always sees a whole file) before making anything and after removing it,
//! so [`down`] still removes everything. They expect one caller at a time: the lab does not lock
//! its data directory against a second writer.
//!
//! Every network and VM holds a slot, a small number given when it is added (the lowest free
//! one) and kept until it is removed; the switch's interface names derive from it, because they
//! must fit in 15 characters and must not change when other networks come and go: for network
//! slot `N` and VM slot `M`, the guest bridge `brg<N>`, the router's ports `r<N>p` and `r<N>g`,
//! the VM's port `v<N>-<M>`. A lab built at once from a spec gives the slots in spec order. At
//! most [`MAX_NETWORKS`] networks and [`MAX_VMS`] VMs per network are supported.
//!
//! Architecture Invariant: nothing is ever created in, or connected to, the caller's own network
//! namespace. All commands run through `sys`.

mod guard;
mod spec;
mod switch;
mod target;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sys::cmd::{Child, CommandError, Output, Program, Stdio};
use sys::netns::{self, NetnsError};

use switch::Slots;

pub use guard::LabGuard;
pub use spec::{LabSpec, NetworkSpec, SpecProblem, VmLabel, VmSpec, MAX_NETWORKS, MAX_VMS};
pub use target::{Target, TargetParseError};
pub use tempfile::TempDir;

/// The outside host's address on the public segment; routers use it as their default gateway.
pub const OUTSIDE_GATEWAY: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);

/// The prefix length of the public segment (203.0.113.0/24).
pub const PUBLIC_PREFIX_LEN: u8 = 24;

/// All of the outside host's addresses on the public segment (its `eth0`), gateway first.
pub const OUTSIDE_PUBLIC_ADDRESSES: [Ipv4Addr; 3] = [
    OUTSIDE_GATEWAY,
    Ipv4Addr::new(203, 0, 113, 2),
    Ipv4Addr::new(203, 0, 113, 3),
];

/// "Internet" addresses owned by the outside host (as /32 on its `lo`), for sending from
/// sources that are not on the public segment; routers reach them via [`OUTSIDE_GATEWAY`].
pub const OUTSIDE_INTERNET_ADDRESSES: [Ipv4Addr; 3] = [
    Ipv4Addr::new(198, 51, 100, 1),
    Ipv4Addr::new(198, 51, 100, 2),
    Ipv4Addr::new(192, 0, 2, 1),
];

/// The name of the state file inside the data directory.
pub const STATE_FILE: &str = "lab.json";

/// How long processes get to exit after SIGTERM (and again after SIGKILL) during [`down`].
const GRACE: Duration = Duration::from_secs(3);

/// Something the lab could not do.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The data directory could not be created or resolved.
    #[error("cannot use data directory {}", path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A lab already exists for this data directory.
    #[error(
        "a lab ({id}) already exists for data directory {}: run `guestnet lab down --data-dir {}` first",
        data_dir.display(),
        data_dir.display()
    )]
    AlreadyUp {
        /// The data directory.
        data_dir: PathBuf,
        /// The lab's id.
        id: String,
    },
    /// No lab exists for this data directory.
    #[error(
        "no lab for data directory {}: run `guestnet lab up --data-dir {}` first",
        data_dir.display(),
        data_dir.display()
    )]
    NotUp {
        /// The data directory.
        data_dir: PathBuf,
    },
    /// The state file could not be read.
    #[error("cannot read lab state {}", path.display())]
    ReadState {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The state file is malformed.
    #[error("cannot parse lab state {}", path.display())]
    ParseState {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The state file could not be written.
    #[error("cannot write lab state {}", path.display())]
    WriteState {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The state file could not be removed.
    #[error("cannot remove lab state {}", path.display())]
    RemoveState {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A spec file could not be read.
    #[error("cannot read lab spec {}", path.display())]
    ReadSpec {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A spec file is malformed.
    #[error("cannot parse lab spec {}", path.display())]
    ParseSpec {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The spec is inconsistent.
    #[error("invalid lab spec: {}", join(problems))]
    InvalidSpec {
        /// Every problem found.
        problems: Vec<SpecProblem>,
    },
    /// A step of building the lab failed.
    #[error("cannot {step}")]
    Build {
        /// What was being done, naming the namespace.
        step: String,
        /// Why.
        #[source]
        source: NetnsError,
    },
    /// The namespaces on the machine could not be listed.
    #[error("cannot list the namespaces of lab {id}")]
    ListNamespaces {
        /// The lab's id.
        id: String,
        /// Why.
        #[source]
        source: NetnsError,
    },
    /// The processes in a namespace could not be ended.
    #[error("cannot end the processes in namespace {namespace}")]
    EndProcesses {
        /// The namespace.
        namespace: String,
        /// Why.
        #[source]
        source: NetnsError,
    },
    /// A namespace could not be deleted.
    #[error("cannot delete namespace {namespace}")]
    DeleteNamespace {
        /// The namespace.
        namespace: String,
        /// Why.
        #[source]
        source: NetnsError,
    },
    /// An interface (a veth or a bridge) of the switch could not be deleted.
    #[error("cannot delete interface {link} in namespace {namespace}")]
    DeleteLink {
        /// The switch's namespace.
        namespace: String,
        /// The interface.
        link: String,
        /// Why.
        #[source]
        source: sys::cmd::CommandError,
    },
    /// The lab has no router of that name.
    #[error("the lab has no router named `{name}`")]
    UnknownRouter {
        /// The name asked for.
        name: String,
    },
    /// The lab has no VM of that name.
    #[error("the lab has no vm named `{name}`")]
    UnknownVm {
        /// The name asked for.
        name: String,
    },
    /// Several VMs answer to that name (VMs of different accounts may share a name).
    #[error("vm name `{name}` is ambiguous; name one of: {}", candidates.join(", "))]
    AmbiguousVm {
        /// The name asked for.
        name: String,
        /// How to name each of them: `vm:NAME@ACCOUNT (network NETWORK; or vm:KEY)`.
        candidates: Vec<String>,
    },
    /// A namespace of the lab is missing from the machine.
    #[error(
        "namespace {namespace} does not exist: run `guestnet lab down` and `guestnet lab up` again"
    )]
    MissingNamespace {
        /// The namespace.
        namespace: String,
    },
    /// An empty command line was given.
    #[error("no command given to run in namespace {namespace}")]
    EmptyCommand {
        /// The namespace.
        namespace: String,
    },
    /// A command could not be run inside a namespace.
    #[error("cannot run `{command}` in namespace {namespace}")]
    Run {
        /// The namespace.
        namespace: String,
        /// The command line.
        command: String,
        /// Why.
        #[source]
        source: CommandError,
    },
}

fn join(problems: &[SpecProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The namespaces of a lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Namespaces {
    /// The switch (`<id>-sw`) holding the bridges.
    pub switch: String,
    /// The outside host (`<id>-outside`).
    pub outside: String,
    /// Router name to namespace (`<id>-r-<router>`).
    pub routers: BTreeMap<String, String>,
    /// VM name to namespace (`<id>-vm-<vm>`).
    pub vms: BTreeMap<String, String>,
}

impl Namespaces {
    fn for_spec(id: &str, spec: &LabSpec) -> Self {
        Namespaces {
            switch: format!("{id}-sw"),
            outside: format!("{id}-outside"),
            routers: spec
                .networks
                .iter()
                .map(|n| (n.router.clone(), router_namespace(id, &n.router)))
                .collect(),
            vms: spec
                .networks
                .iter()
                .flat_map(|n| &n.vms)
                .map(|v| (v.name.clone(), vm_namespace(id, &v.name)))
                .collect(),
        }
    }

    /// Every namespace: VMs, routers, the outside host, then the switch.
    pub fn all(&self) -> Vec<String> {
        let mut all: Vec<String> = self.vms.values().cloned().collect();
        all.extend(self.routers.values().cloned());
        all.push(self.outside.clone());
        all.push(self.switch.clone());
        all
    }
}

/// The namespace of router `router` in lab `id`.
fn router_namespace(id: &str, router: &str) -> String {
    format!("{id}-r-{router}")
}

/// The key of the one VM of `spec` whose owner calls it `name` (see [`VmSpec::is_called`]).
fn vm_called(spec: &LabSpec, name: &str) -> Result<String, LabError> {
    let called: Vec<&VmSpec> = spec
        .networks
        .iter()
        .flat_map(|n| &n.vms)
        .filter(|v| v.is_called(name))
        .collect();
    match called.as_slice() {
        [] => Err(LabError::UnknownVm {
            name: name.to_string(),
        }),
        [one] => Ok(one.name.clone()),
        many => Err(LabError::AmbiguousVm {
            name: name.to_string(),
            candidates: many
                .iter()
                .filter_map(|v| {
                    let l = v.label.as_ref()?;
                    Some(format!(
                        "vm:{}@{} (network {}; or vm:{})",
                        l.name, l.account, l.network, v.name
                    ))
                })
                .collect(),
        }),
    }
}

/// The namespace of VM `vm` in lab `id`.
fn vm_namespace(id: &str, vm: &str) -> String {
    format!("{id}-vm-{vm}")
}

/// What `lab.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LabState {
    id: String,
    namespaces: Namespaces,
    spec: LabSpec,
    /// The slots of the networks and VMs. Missing from a file written before labs could change
    /// at run time; such a lab named its interfaces by index, which is what filling the slots in
    /// spec order gives back.
    #[serde(default)]
    slots: Slots,
}

impl LabState {
    fn new(id: String, spec: &LabSpec) -> Self {
        let mut slots = Slots::default();
        slots.fill(spec);
        LabState {
            namespaces: Namespaces::for_spec(&id, spec),
            id,
            spec: spec.clone(),
            slots,
        }
    }
}

/// A lab that has been built (or at least recorded in its data directory).
#[derive(Debug, Clone)]
pub struct Lab {
    data_dir: PathBuf,
    state: LabState,
}

/// The 32-bit FNV-1a hash.
fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The id of the lab for a data directory given as an already resolved (canonical) path.
pub fn lab_id(resolved_data_dir: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    format!(
        "gn{:08x}",
        fnv1a32(resolved_data_dir.as_os_str().as_bytes())
    )
}

/// The canonical path of `data_dir`, or, when it does not exist, its absolute path.
fn resolve(data_dir: &Path) -> Result<PathBuf, LabError> {
    let err = |source| LabError::DataDir {
        path: data_dir.to_path_buf(),
        source,
    };
    match data_dir.canonicalize() {
        Ok(p) => Ok(p),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::path::absolute(data_dir).map_err(err)
        }
        Err(e) => Err(err(e)),
    }
}

/// The id of the lab belonging to `data_dir`, whether or not that lab exists.
///
/// # Errors
/// [`LabError::DataDir`] if the path cannot be resolved.
pub fn id_for(data_dir: &Path) -> Result<String, LabError> {
    Ok(lab_id(&resolve(data_dir)?))
}

/// The namespaces on the machine whose names start with `<id>-`, recorded or not.
///
/// # Errors
/// [`LabError::ListNamespaces`] if they cannot be listed.
pub fn present_namespaces(id: &str) -> Result<Vec<String>, LabError> {
    let prefix = format!("{id}-");
    let all = netns::list().map_err(|source| LabError::ListNamespaces {
        id: id.to_string(),
        source,
    })?;
    Ok(all.into_iter().filter(|n| n.starts_with(&prefix)).collect())
}

fn read_state(path: &Path) -> Result<LabState, LabError> {
    let text = std::fs::read_to_string(path).map_err(|source| LabError::ReadState {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| LabError::ParseState {
        path: path.to_path_buf(),
        source,
    })
}

fn write_state(path: &Path, state: &LabState) -> Result<(), LabError> {
    let err = |source| LabError::WriteState {
        path: path.to_path_buf(),
        source,
    };
    let mut text =
        serde_json::to_string_pretty(state).expect("invariant: the lab state serializes to json");
    text.push('\n');
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Maps a failed step to [`LabError::Build`], naming the step.
fn step(what: impl std::fmt::Display) -> impl FnOnce(NetnsError) -> LabError {
    let step = what.to_string();
    move |source| LabError::Build { step, source }
}

impl Lab {
    /// Builds the lab described by `spec` for `data_dir` (created if needed). The spec must
    /// have at least one network; see [`Lab::up_empty`] for a lab that starts without any.
    ///
    /// # Errors
    /// [`LabError::InvalidSpec`] for a bad spec, [`LabError::AlreadyUp`] if a lab exists for
    /// this data directory, otherwise the first step that failed.
    ///
    /// # Guarantees
    /// `lab.json` is written before any namespace is made; if a step fails, everything made so
    /// far is torn down (problems while tearing down are logged) and `lab.json` removed.
    pub fn up(data_dir: &Path, spec: &LabSpec) -> Result<Lab, LabError> {
        spec.validate()
            .map_err(|problems| LabError::InvalidSpec { problems })?;
        Self::create(data_dir, spec)
    }

    /// Builds a lab with no guest network for `data_dir` (created if needed): just the switch
    /// with `brpub` and the outside host. Networks and VMs are added later with
    /// [`Lab::add_network`] and [`Lab::add_vm`].
    ///
    /// # Errors
    /// [`LabError::AlreadyUp`] if a lab exists for this data directory, otherwise the first step
    /// that failed.
    ///
    /// # Guarantees
    /// As [`Lab::up`].
    pub fn up_empty(data_dir: &Path) -> Result<Lab, LabError> {
        Self::create(data_dir, &LabSpec { networks: vec![] })
    }

    /// Records and builds `spec`, which has been checked.
    fn create(data_dir: &Path, spec: &LabSpec) -> Result<Lab, LabError> {
        std::fs::create_dir_all(data_dir).map_err(|source| LabError::DataDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let resolved = resolve(data_dir)?;
        let id = lab_id(&resolved);
        let state_path = resolved.join(STATE_FILE);
        if state_path.exists() || !present_namespaces(&id)?.is_empty() {
            return Err(LabError::AlreadyUp {
                data_dir: data_dir.to_path_buf(),
                id,
            });
        }
        let state = LabState::new(id, spec);
        write_state(&state_path, &state)?;
        let lab = Lab {
            data_dir: resolved,
            state,
        };
        if let Err(e) = lab.build() {
            tracing::warn!(lab = %lab.id(), "building the lab failed; tearing down what was made");
            if let Err(errors) = down(&lab.data_dir) {
                for cleanup in errors {
                    tracing::warn!(error = %chain(&cleanup), "teardown after a failed build");
                }
            }
            return Err(e);
        }
        Ok(lab)
    }

    fn build(&self) -> Result<(), LabError> {
        let ns = &self.state.namespaces;
        let sw = ns.switch.as_str();
        netns::add(sw).map_err(step(format_args!("create namespace {sw}")))?;
        netns::add_bridge(sw, "brpub")
            .map_err(step(format_args!("create bridge brpub in {sw}")))?;

        let out = ns.outside.as_str();
        netns::add(out).map_err(step(format_args!("create namespace {out}")))?;
        connect(sw, "vout", "brpub", out, "eth0")?;
        for a in OUTSIDE_PUBLIC_ADDRESSES {
            let cidr = format!("{a}/{PUBLIC_PREFIX_LEN}");
            netns::add_address(out, "eth0", &cidr)
                .map_err(step(format_args!("add {cidr} to eth0 in {out}")))?;
        }
        // On `lo` as /32 (the dummy driver may be missing where modules cannot be loaded, and a
        // prefix on `lo` would make the whole prefix local).
        for a in OUTSIDE_INTERNET_ADDRESSES {
            let cidr = format!("{a}/32");
            netns::add_address(out, "lo", &cidr)
                .map_err(step(format_args!("add {cidr} to lo in {out}")))?;
        }

        for net in &self.state.spec.networks {
            self.build_network(net)?;
        }
        Ok(())
    }

    /// Makes the guest bridge, the router and the VMs of `net`, which is recorded.
    fn build_network(&self, net: &NetworkSpec) -> Result<(), LabError> {
        let sw = self.state.namespaces.switch.as_str();
        let slot = self.network_slot(&net.router)?;
        let bridge = switch::guest_bridge(slot);
        netns::add_bridge(sw, &bridge)
            .map_err(step(format_args!("create bridge {bridge} in {sw}")))?;
        self.build_router(&net.router, slot)?;
        for vm in &net.vms {
            self.build_vm(net, vm)?;
        }
        Ok(())
    }

    /// Makes router `router`'s namespace, with `pub0` on `brpub` and `guest0` on its network's
    /// guest bridge (which exists), and forwarding on.
    fn build_router(&self, router: &str, slot: u16) -> Result<(), LabError> {
        let sw = self.state.namespaces.switch.as_str();
        let r = self.router_netns(router)?;
        netns::add(&r).map_err(step(format_args!("create namespace {r}")))?;
        connect(sw, &switch::router_public_port(slot), "brpub", &r, "pub0")?;
        let bridge = switch::guest_bridge(slot);
        connect(sw, &switch::router_guest_port(slot), &bridge, &r, "guest0")?;
        netns::set_sysctl(&r, "net.ipv4.ip_forward", "1")
            .map_err(step(format_args!("enable forwarding in {r}")))
    }

    /// Makes router `router` again from nothing, as a restart with clean-up does: what
    /// [`Lab::stop_router`] removes goes, and an empty router is made in its place. The
    /// network's guest bridge and its VMs stay as they are.
    ///
    /// # Errors
    /// [`LabError::UnknownRouter`], otherwise the first step that failed; a router left half
    /// made is made again by the next rebuild.
    pub fn rebuild_router(&self, router: &str) -> Result<(), LabError> {
        self.stop_router(router)?;
        self.build_router(router, self.network_slot(router)?)
    }

    /// Starts router `router` again after [`Lab::stop_router`]: its namespace is made as
    /// [`Lab::rebuild_router`] makes it, unless it exists.
    ///
    /// # Errors
    /// [`LabError::UnknownRouter`], otherwise the first step that failed.
    pub fn start_router(&self, router: &str) -> Result<(), LabError> {
        match self.state.namespaces.routers.get(router) {
            Some(namespace) if netns::exists(namespace) => Ok(()),
            _ => self.rebuild_router(router),
        }
    }

    /// Stops router `router`: its namespace goes, every process in it ended, with its switch
    /// ports; nothing is made in its place, so its network's VMs reach nothing beyond their
    /// own bridge until [`Lab::rebuild_router`] makes it again. The network's guest bridge
    /// and its VMs stay, and so does the lab's record of the network. A stopped router is
    /// fine.
    ///
    /// # Errors
    /// [`LabError::UnknownRouter`], otherwise the first step that failed.
    pub fn stop_router(&self, router: &str) -> Result<(), LabError> {
        let slot = self.network_slot(router)?;
        if let Some(namespace) = self.state.namespaces.routers.get(router) {
            remove_namespace(namespace)?;
        }
        let sw = self.state.namespaces.switch.clone();
        for link in [
            switch::router_public_port(slot),
            switch::router_guest_port(slot),
        ] {
            delete_link(&sw, &link)?;
        }
        Ok(())
    }

    /// Makes VM `vm` on the bridge of `net`; both are recorded.
    fn build_vm(&self, net: &NetworkSpec, vm: &VmSpec) -> Result<(), LabError> {
        let sw = self.state.namespaces.switch.as_str();
        let slot = self.network_slot(&net.router)?;
        let v = self.vm_netns(&vm.name)?;
        let port = switch::vm_port(slot, self.vm_slot(&vm.name)?);
        netns::add(&v).map_err(step(format_args!("create namespace {v}")))?;
        connect(sw, &port, &switch::guest_bridge(slot), &v, "eth0")?;
        let cidr = format!("{}/{}", vm.ip, net.guest_cidr.prefix_len());
        netns::add_address(&v, "eth0", &cidr)
            .map_err(step(format_args!("add {cidr} to eth0 in {v}")))?;
        netns::add_default_route(&v, &net.gateway.to_string()).map_err(step(format_args!(
            "add a default route via {} in {v}",
            net.gateway
        )))
    }

    /// Adds guest network `net` (and the VMs it lists) to the running lab: a guest bridge
    /// `brg<N>` in the switch, the router's namespace with `pub0` on `brpub` and `guest0` on
    /// that bridge and forwarding on, and each VM as [`Lab::add_vm`] makes it.
    ///
    /// # Errors
    /// [`LabError::InvalidSpec`] if the lab with `net` added would not be valid (a name used
    /// already, a gateway or VM address outside the CIDR, too many networks or VMs; an empty lab
    /// is fine), [`LabError::WriteState`], otherwise the first step that failed.
    ///
    /// # Guarantees
    /// The network is recorded in `lab.json` before anything is made. If a step fails, what was
    /// made for it is removed again as [`Lab::remove_network`] does and the record dropped (a
    /// leftover namespace of this lab under the same name goes too); if even that fails (it is
    /// logged), the network stays recorded, so `remove_network` or [`down`] can finish the job.
    pub fn add_network(&mut self, net: &NetworkSpec) -> Result<(), LabError> {
        let mut next = self.state.clone();
        next.spec.networks.push(net.clone());
        next.spec
            .check(false)
            .map_err(|problems| LabError::InvalidSpec { problems })?;
        next.namespaces
            .routers
            .insert(net.router.clone(), router_namespace(&next.id, &net.router));
        for vm in &net.vms {
            next.namespaces
                .vms
                .insert(vm.name.clone(), vm_namespace(&next.id, &vm.name));
        }
        next.slots.fill(&next.spec);
        self.commit(next)?;
        if let Err(e) = self.build_network(net) {
            tracing::warn!(
                lab = %self.id(), router = %net.router, error = %chain(&e),
                "adding the network failed; removing what was made"
            );
            if let Err(undo) = self.remove_network(&net.router) {
                tracing::warn!(
                    lab = %self.id(), router = %net.router, error = %chain(&undo),
                    "cannot remove the half-made network; it stays recorded"
                );
            }
            return Err(e);
        }
        Ok(())
    }

    /// Adds VM `vm` to the network of router `router`: its namespace with `eth0` on the
    /// network's bridge (switch port `v<N>-<M>`), its address with the network's prefix length
    /// and a default route via the network's gateway.
    ///
    /// # Errors
    /// [`LabError::UnknownRouter`], [`LabError::InvalidSpec`] if the lab with `vm` added would
    /// not be valid (its name used already, its address outside the CIDR or taken, too many
    /// VMs), [`LabError::WriteState`], otherwise the first step that failed.
    ///
    /// # Guarantees
    /// As [`Lab::add_network`]: recorded before anything is made, removed again on failure.
    pub fn add_vm(&mut self, router: &str, vm: &VmSpec) -> Result<(), LabError> {
        let mut next = self.state.clone();
        let Some(net) = next.spec.networks.iter_mut().find(|n| n.router == router) else {
            return Err(LabError::UnknownRouter {
                name: router.to_string(),
            });
        };
        net.vms.push(vm.clone());
        let net = net.clone();
        next.spec
            .check(false)
            .map_err(|problems| LabError::InvalidSpec { problems })?;
        next.namespaces
            .vms
            .insert(vm.name.clone(), vm_namespace(&next.id, &vm.name));
        next.slots.fill(&next.spec);
        self.commit(next)?;
        if let Err(e) = self.build_vm(&net, vm) {
            tracing::warn!(
                lab = %self.id(), vm = %vm.name, error = %chain(&e),
                "adding the vm failed; removing what was made"
            );
            if let Err(undo) = self.remove_vm(&vm.name) {
                tracing::warn!(
                    lab = %self.id(), vm = %vm.name, error = %chain(&undo),
                    "cannot remove the half-made vm; it stays recorded"
                );
            }
            return Err(e);
        }
        Ok(())
    }

    /// Removes VM `name`: deletes its namespace and ends every process in it (also one started
    /// just before that had not entered it yet), deletes its port on the switch, and drops it
    /// from `lab.json`.
    ///
    /// # Errors
    /// [`LabError::EndProcesses`], [`LabError::DeleteNamespace`], [`LabError::DeleteLink`] or
    /// [`LabError::WriteState`]; the VM then stays recorded, and calling again retries.
    ///
    /// # Guarantees
    /// Idempotent: a VM the lab does not know (never added, or removed already) is `Ok` and
    /// nothing is done; a part already gone is skipped.
    pub fn remove_vm(&mut self, name: &str) -> Result<(), LabError> {
        let Some(net) = self
            .state
            .spec
            .networks
            .iter()
            .find(|n| n.vms.iter().any(|v| v.name == name))
        else {
            return Ok(());
        };
        let port = match (
            self.state.slots.networks.get(&net.router),
            self.state.slots.vms.get(name),
        ) {
            (Some(&n), Some(&m)) => Some(switch::vm_port(n, m)),
            _ => None,
        };
        if let Some(namespace) = self.state.namespaces.vms.get(name) {
            remove_namespace(namespace)?;
        }
        if let Some(port) = port {
            delete_link(&self.state.namespaces.switch, &port)?;
        }
        let mut next = self.state.clone();
        for n in &mut next.spec.networks {
            n.vms.retain(|v| v.name != name);
        }
        next.namespaces.vms.remove(name);
        next.slots.fill(&next.spec);
        self.commit(next)
    }

    /// Removes the network of router `router` with all its VMs: each VM as [`Lab::remove_vm`]
    /// does, then the router's namespace (its processes ended first), its two ports and the
    /// guest bridge on the switch, and finally its record in `lab.json`.
    ///
    /// # Errors
    /// As [`Lab::remove_vm`]; whatever was not removed yet stays recorded, and calling again
    /// retries.
    ///
    /// # Guarantees
    /// Idempotent: a router the lab does not know is `Ok` and nothing is done.
    ///
    /// The processes inside the namespaces are ended, and so is a single-threaded process
    /// holding one open on its way in (see [`netns::remove`]). A multi-threaded process
    /// elsewhere that holds one of them (say a router daemon's socket in the router's namespace)
    /// keeps that namespace alive until it lets go, but the network is cut off from the switch
    /// all the same, since its ports there are deleted; stop such processes first.
    pub fn remove_network(&mut self, router: &str) -> Result<(), LabError> {
        let Some(net) = self
            .state
            .spec
            .networks
            .iter()
            .find(|n| n.router == router)
            .cloned()
        else {
            return Ok(());
        };
        for vm in &net.vms {
            self.remove_vm(&vm.name)?;
        }
        if let Some(namespace) = self.state.namespaces.routers.get(router) {
            remove_namespace(namespace)?;
        }
        if let Some(&slot) = self.state.slots.networks.get(router) {
            let sw = &self.state.namespaces.switch;
            for link in [
                switch::router_public_port(slot),
                switch::router_guest_port(slot),
                switch::guest_bridge(slot),
            ] {
                delete_link(sw, &link)?;
            }
        }
        let mut next = self.state.clone();
        next.spec.networks.retain(|n| n.router != router);
        next.namespaces.routers.remove(router);
        next.slots.fill(&next.spec);
        self.commit(next)
    }

    /// Writes `next` to `lab.json`, then makes it the lab's state.
    fn commit(&mut self, next: LabState) -> Result<(), LabError> {
        write_state(&self.data_dir.join(STATE_FILE), &next)?;
        self.state = next;
        Ok(())
    }

    /// The slot of the network of router `router`.
    fn network_slot(&self, router: &str) -> Result<u16, LabError> {
        self.state
            .slots
            .networks
            .get(router)
            .copied()
            .ok_or_else(|| LabError::UnknownRouter {
                name: router.to_string(),
            })
    }

    /// The slot of VM `name` on its network.
    fn vm_slot(&self, name: &str) -> Result<u16, LabError> {
        self.state
            .slots
            .vms
            .get(name)
            .copied()
            .ok_or_else(|| LabError::UnknownVm {
                name: name.to_string(),
            })
    }

    /// The guest bridge of router `router`'s network in the switch (`brg<N>`).
    ///
    /// # Errors
    /// [`LabError::UnknownRouter`].
    pub fn guest_bridge(&self, router: &str) -> Result<String, LabError> {
        self.network_slot(router).map(switch::guest_bridge)
    }

    /// Opens the lab recorded in `data_dir`.
    ///
    /// # Errors
    /// [`LabError::NotUp`] if there is no `lab.json`, or why it cannot be read.
    pub fn open(data_dir: &Path) -> Result<Lab, LabError> {
        let resolved = resolve(data_dir)?;
        let state_path = resolved.join(STATE_FILE);
        if !state_path.exists() {
            return Err(LabError::NotUp {
                data_dir: data_dir.to_path_buf(),
            });
        }
        let mut state = read_state(&state_path)?;
        state.slots.fill(&state.spec);
        Ok(Lab {
            state,
            data_dir: resolved,
        })
    }

    /// The lab's id, the prefix of all its namespaces.
    pub fn id(&self) -> &str {
        &self.state.id
    }

    /// The (canonical) data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// What the lab is made of now: the spec it was built from, with the networks and VMs added
    /// and removed since.
    pub fn spec(&self) -> &LabSpec {
        &self.state.spec
    }

    /// The lab's namespaces.
    pub fn namespaces(&self) -> &Namespaces {
        &self.state.namespaces
    }

    /// The namespace of `target`.
    ///
    /// # Errors
    /// [`LabError::UnknownRouter`] or [`LabError::UnknownVm`].
    pub fn netns(&self, target: &Target) -> Result<String, LabError> {
        match target {
            Target::Outside => Ok(self.state.namespaces.outside.clone()),
            Target::Router(name) => self.router_netns(name),
            Target::Vm(name) => self.vm_netns(name),
        }
    }

    /// The namespace of router `name`.
    ///
    /// # Errors
    /// [`LabError::UnknownRouter`].
    pub fn router_netns(&self, name: &str) -> Result<String, LabError> {
        self.state
            .namespaces
            .routers
            .get(name)
            .cloned()
            .ok_or_else(|| LabError::UnknownRouter {
                name: name.to_string(),
            })
    }

    /// The namespace of VM `name`: the VM keyed `name`, or else the one VM whose owner calls it
    /// `name` (`NAME`, or `NAME@ACCOUNT` / `NAME@NETWORK` when VMs of several accounts or
    /// networks share the name).
    ///
    /// # Errors
    /// [`LabError::UnknownVm`], or [`LabError::AmbiguousVm`] listing how to name each VM that
    /// answers to `name`.
    pub fn vm_netns(&self, name: &str) -> Result<String, LabError> {
        if let Some(ns) = self.state.namespaces.vms.get(name) {
            return Ok(ns.clone());
        }
        let key = vm_called(&self.state.spec, name)?;
        self.state
            .namespaces
            .vms
            .get(&key)
            .cloned()
            .ok_or(LabError::UnknownVm { name: key })
    }

    /// A command running `argv` inside the namespace of `target` (through `nsenter`), with
    /// stdio inherited unless the caller sets it.
    ///
    /// # Errors
    /// An unknown target, [`LabError::MissingNamespace`] or [`LabError::EmptyCommand`].
    pub fn command<S: AsRef<OsStr>>(
        &self,
        target: &Target,
        argv: &[S],
    ) -> Result<Program, LabError> {
        let namespace = self.netns(target)?;
        if !netns::exists(&namespace) {
            return Err(LabError::MissingNamespace { namespace });
        }
        let Some((program, args)) = argv.split_first() else {
            return Err(LabError::EmptyCommand { namespace });
        };
        Ok(netns::command_in(&namespace, program, args))
    }

    /// Runs `argv` inside the namespace of `target` and returns its output, whatever its exit
    /// status (check `output.status`). Stdin is empty.
    ///
    /// # Errors
    /// As [`Lab::command`], or [`LabError::Run`] if it cannot be started.
    pub fn exec_capture<S: AsRef<OsStr>>(
        &self,
        target: &Target,
        argv: &[S],
    ) -> Result<Output, LabError> {
        let mut c = self.command(target, argv)?;
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .map_err(|source| self.run_error(target, argv, source))
    }

    /// Starts `argv` in the background inside the namespace of `target`, with stdin and stdout
    /// closed and stderr inherited. The caller owns the child and must kill and wait for it;
    /// [`down`] also ends anything left running in the lab.
    ///
    /// # Errors
    /// As [`Lab::command`], or [`LabError::Run`] if it cannot be started.
    pub fn spawn<S: AsRef<OsStr>>(&self, target: &Target, argv: &[S]) -> Result<Child, LabError> {
        let mut c = self.command(target, argv)?;
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|source| self.run_error(target, argv, source))
    }

    fn run_error<S: AsRef<OsStr>>(
        &self,
        target: &Target,
        argv: &[S],
        source: CommandError,
    ) -> LabError {
        LabError::Run {
            namespace: self.netns(target).unwrap_or_else(|_| target.to_string()),
            command: argv
                .iter()
                .map(|a| a.as_ref().to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
            source,
        }
    }
}

/// Connects namespace `ns` to `bridge` in the switch with a veth pair: `sw_dev` on the bridge,
/// `dev` inside `ns`, both up.
fn connect(sw: &str, sw_dev: &str, bridge: &str, ns: &str, dev: &str) -> Result<(), LabError> {
    netns::add_veth(sw, sw_dev, ns, dev).map_err(step(format_args!(
        "create veth {sw_dev} in {sw} with peer {dev} in {ns}"
    )))?;
    netns::attach(sw, sw_dev, bridge)
        .map_err(step(format_args!("attach {sw_dev} to {bridge} in {sw}")))?;
    netns::set_up(ns, dev).map_err(step(format_args!("bring up {dev} in {ns}")))
}

/// Ends the processes in `namespace` and deletes it; a namespace that does not exist (or is
/// gone by the time it is deleted) is fine. Returns the processes ended.
///
/// A process on its way into the namespace (started just before, holding it open but not yet
/// in it) is ended too: see [`netns::remove`].
fn remove_namespace(namespace: &str) -> Result<Vec<i32>, LabError> {
    let ended = netns::remove(namespace, GRACE).map_err(|source| match source {
        NetnsError::Command { .. } => LabError::DeleteNamespace {
            namespace: namespace.to_string(),
            source,
        },
        source => LabError::EndProcesses {
            namespace: namespace.to_string(),
            source,
        },
    })?;
    if !ended.is_empty() {
        tracing::info!(%namespace, pids = ?ended, "ended processes");
    }
    Ok(ended)
}

/// Deletes interface `link` (a veth, whose peer goes with it, or a bridge) in the switch
/// namespace `sw`; one that does not exist, or a switch that does not exist, is fine.
fn delete_link(sw: &str, link: &str) -> Result<(), LabError> {
    if !netns::exists(sw) {
        return Ok(());
    }
    match sys::cmd::run("ip", &["-n", sw, "link", "delete", "dev", link], None) {
        Ok(_) => Ok(()),
        Err(_) if !link_exists(sw, link) => Ok(()),
        Err(source) => Err(LabError::DeleteLink {
            namespace: sw.to_string(),
            link: link.to_string(),
            source,
        }),
    }
}

/// Whether interface `link` exists in namespace `ns`.
fn link_exists(ns: &str, link: &str) -> bool {
    sys::cmd::run("ip", &["-n", ns, "link", "show", "dev", link], None).is_ok()
}

/// What [`down`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DownReport {
    /// The lab's id.
    pub id: String,
    /// The processes ended, by namespace.
    pub processes_ended: BTreeMap<String, Vec<i32>>,
    /// The namespaces deleted.
    pub namespaces_removed: Vec<String>,
    /// Whether `lab.json` was removed.
    pub state_removed: bool,
}

impl DownReport {
    /// Whether nothing was left to remove.
    pub fn is_empty(&self) -> bool {
        self.processes_ended.is_empty() && self.namespaces_removed.is_empty() && !self.state_removed
    }
}

/// Tears down the lab of `data_dir`: ends every process in its namespaces, deletes the
/// namespaces and removes `lab.json`.
///
/// # Errors
/// Every problem met; cleanup goes on past each one.
///
/// # Guarantees
/// Works from the data directory alone, also when `lab.json` is missing or malformed (the
/// namespaces are also found by their `<id>-` prefix). Idempotent: a second call removes nothing
/// and succeeds. `lab.json` is kept if a namespace could not be deleted, so a later call retries.
pub fn down(data_dir: &Path) -> Result<DownReport, Vec<LabError>> {
    let resolved = resolve(data_dir).map_err(|e| vec![e])?;
    let id = lab_id(&resolved);
    let state_path = resolved.join(STATE_FILE);
    let mut errors = Vec::new();
    let mut report = DownReport {
        id: id.clone(),
        ..DownReport::default()
    };

    let mut namespaces = Vec::new();
    if state_path.exists() {
        match read_state(&state_path) {
            Ok(state) => namespaces = state.namespaces.all(),
            Err(e) => {
                tracing::warn!(error = %chain(&e), "finding the lab's namespaces by prefix only")
            }
        }
    }
    match present_namespaces(&id) {
        Ok(found) => {
            namespaces.retain(|n| found.contains(n));
            for n in found {
                if !namespaces.contains(&n) {
                    namespaces.push(n);
                }
            }
        }
        Err(e) => {
            errors.push(e);
            namespaces.retain(|n| netns::exists(n));
        }
    }

    let mut all_deleted = true;
    for n in namespaces {
        match remove_namespace(&n) {
            Ok(pids) => {
                if !pids.is_empty() {
                    report.processes_ended.insert(n.clone(), pids);
                }
                report.namespaces_removed.push(n);
            }
            Err(e) => {
                all_deleted = false;
                errors.push(e);
            }
        }
    }
    if all_deleted && state_path.exists() {
        match std::fs::remove_file(&state_path) {
            Ok(()) => report.state_removed = true,
            Err(source) => errors.push(LabError::RemoveState {
                path: state_path,
                source,
            }),
        }
    }
    if errors.is_empty() {
        Ok(report)
    } else {
        Err(errors)
    }
}

/// An error and its sources, joined by `: `.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

/// A server that expects the PROXY protocol (version 1 or 2) before an HTTP request, run as
/// `python3 -c PROXY_WHOAMI_SERVER IP PORT NAME`: it answers `NAME proxied=SOURCE` with the
/// client address the header carried, or `NAME no-proxy` to a connection without one (as a
/// balancer's member behind `send-proxy` would see them).
pub const PROXY_WHOAMI_SERVER: &str = r#"
import socket, socketserver, struct, sys
ip, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
V2 = b"\r\n\r\n\x00\r\nQUIT\n"
class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        s = self.request
        data = b""
        while len(data) < 16:
            chunk = s.recv(4096)
            if not chunk:
                return
            data += chunk
        source = None
        if data.startswith(V2):
            length = struct.unpack("!H", data[14:16])[0]
            while len(data) < 16 + length:
                data += s.recv(4096)
            if data[13] >> 4 == 1:
                source = socket.inet_ntoa(data[16:20])
            data = data[16 + length:]
        elif data.startswith(b"PROXY "):
            while b"\r\n" not in data:
                data += s.recv(4096)
            line, data = data.split(b"\r\n", 1)
            source = line.split()[2].decode()
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        body = (f"{name} proxied={source}" if source else f"{name} no-proxy").encode()
        s.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
Server((ip, port), Handler).serve_forever()
"#;

/// A small HTTP server for test hosts, run as `python3 -c WHOAMI_HTTP_SERVER IP PORT NAME`: it
/// answers every GET with `NAME CLIENT-IP`, and ` xff=ADDRESSES` after it when the request
/// carries an `X-Forwarded-For` header, so a test sees which host answered and which source
/// address it saw. It binds without resolving its own name (python's `http.server` does that at
/// start, which hangs in a lab whose egress is denied).
pub const WHOAMI_HTTP_SERVER: &str = r#"
import http.server, socketserver, sys
ip, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
class Whoami(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        xff = self.headers.get("X-Forwarded-For")
        body = f"{name} {self.client_address[0]}" + (f" xff={xff}" if xff else "")
        body = body.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
class Server(http.server.ThreadingHTTPServer):
    def server_bind(self):
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = ip, port
Server((ip, port), Whoami).serve_forever()
"#;
