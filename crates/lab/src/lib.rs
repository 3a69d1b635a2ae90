//! Test hosts made of Linux network namespaces: an outside host playing the internet, one
//! virtual router per guest network and the guest VMs, wired together by bridges.
//!
//! A lab belongs to a data directory; its id (`gn` and eight hex digits) is a hash of that
//! directory's canonical path, and every namespace it makes is named `<id>-…`:
//! - `<id>-sw`, the switch: bridge `brpub` (the public segment) and `brg<N>` per guest network;
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
//! Architecture Invariant: nothing is ever created in, or connected to, the caller's own network
//! namespace. All commands run through `sys`.

mod guard;
mod spec;
mod target;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sys::netns::{self, NetnsError};

pub use guard::LabGuard;
pub use spec::{LabSpec, NetworkSpec, SpecProblem, VmSpec};
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
        source: std::io::Error,
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
                .map(|n| (n.router.clone(), format!("{id}-r-{}", n.router)))
                .collect(),
            vms: spec
                .networks
                .iter()
                .flat_map(|n| &n.vms)
                .map(|v| (v.name.clone(), format!("{id}-vm-{}", v.name)))
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

/// What `lab.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LabState {
    id: String,
    namespaces: Namespaces,
    spec: LabSpec,
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
    /// Builds the lab described by `spec` for `data_dir` (created if needed).
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
        let state = LabState {
            namespaces: Namespaces::for_spec(&id, spec),
            id,
            spec: spec.clone(),
        };
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

        for (i, net) in self.state.spec.networks.iter().enumerate() {
            let bridge = format!("brg{i}");
            netns::add_bridge(sw, &bridge)
                .map_err(step(format_args!("create bridge {bridge} in {sw}")))?;
            let r = self.router_netns(&net.router)?;
            netns::add(&r).map_err(step(format_args!("create namespace {r}")))?;
            connect(sw, &format!("r{i}p"), "brpub", &r, "pub0")?;
            connect(sw, &format!("r{i}g"), &bridge, &r, "guest0")?;
            netns::set_sysctl(&r, "net.ipv4.ip_forward", "1")
                .map_err(step(format_args!("enable forwarding in {r}")))?;
            for (j, vm) in net.vms.iter().enumerate() {
                let v = self.vm_netns(&vm.name)?;
                netns::add(&v).map_err(step(format_args!("create namespace {v}")))?;
                connect(sw, &format!("v{i}-{j}"), &bridge, &v, "eth0")?;
                let cidr = format!("{}/{}", vm.ip, net.guest_cidr.prefix_len());
                netns::add_address(&v, "eth0", &cidr)
                    .map_err(step(format_args!("add {cidr} to eth0 in {v}")))?;
                netns::add_default_route(&v, &net.gateway.to_string()).map_err(step(
                    format_args!("add a default route via {} in {v}", net.gateway),
                ))?;
            }
        }
        Ok(())
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
        Ok(Lab {
            state: read_state(&state_path)?,
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

    /// What the lab was built from.
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

    /// The namespace of VM `name`.
    ///
    /// # Errors
    /// [`LabError::UnknownVm`].
    pub fn vm_netns(&self, name: &str) -> Result<String, LabError> {
        self.state
            .namespaces
            .vms
            .get(name)
            .cloned()
            .ok_or_else(|| LabError::UnknownVm {
                name: name.to_string(),
            })
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
    ) -> Result<Command, LabError> {
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
        source: std::io::Error,
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

    for n in &namespaces {
        match netns::end_processes(n, GRACE) {
            Ok(pids) if pids.is_empty() => {}
            Ok(pids) => {
                report.processes_ended.insert(n.clone(), pids);
            }
            Err(source) => errors.push(LabError::EndProcesses {
                namespace: n.clone(),
                source,
            }),
        }
    }
    let mut all_deleted = true;
    for n in namespaces {
        match netns::delete(&n) {
            Ok(()) => report.namespaces_removed.push(n),
            Err(source) => {
                all_deleted = false;
                errors.push(LabError::DeleteNamespace {
                    namespace: n,
                    source,
                });
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

/// A small HTTP server for test hosts, run as `python3 -c WHOAMI_HTTP_SERVER IP PORT NAME`: it
/// answers every GET with `NAME CLIENT-IP`, so a test sees which host answered and which source
/// address it saw. It binds without resolving its own name (python's `http.server` does that at
/// start, which hangs in a lab whose egress is denied).
pub const WHOAMI_HTTP_SERVER: &str = r#"
import http.server, socketserver, sys
ip, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
class Whoami(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"{name} {self.client_address[0]}".encode()
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
