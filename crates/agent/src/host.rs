//! The host driver: routers as namespaces of a real host, plugged into the host's public bridge
//! and into one bridge per guest VLAN on the host's trunk, as a KVM host of CloudStack has them.
//!
//! For a router on VLAN `N` of trunk `IFACE`, in the agent's own namespace:
//! - `IFACE.N`, the VLAN interface, a port of the network's bridge `brIFACE-N` (both made if
//!   missing, reused if present; see [`vlan_link_name`] and [`bridge_name`] for names that would
//!   not fit in 15 characters);
//! - two veths from the router: `vp<hash>` on the public bridge with `pub0` in the router's
//!   namespace, and `vg<hash>` on the network's bridge with `guest0` inside, the hash being of
//!   the namespace prefix and the router's name, so a restarted agent finds them again;
//! - the router's namespace `<prefix>-<router>`, IPv4 forwarding on inside it. The router
//!   software ([`vrouterd::Router`]) gives `pub0` and `guest0` their addresses and the default
//!   route from its config, as on the lab.
//!
//! Nothing else of the host is touched: no address, route, sysctl or nftables rule outside the
//! routers' namespaces, and no bridge but those named above. A network's bridge and VLAN
//! interface go when their last user goes (a router, a VM recorded by `EnsureVm`, or any port
//! someone else plugged into the bridge, such as a hypervisor's tap), and only when the agent made
//! them; one still in use is left and looked at again by [`Host::sweep`], which the drift timer
//! calls.
//!
//! What the driver made is recorded in `host.json` in the data directory (written to a temporary
//! file and renamed over it), before it is made and after it is removed, so a restarted agent
//! re-adopts every router, its namespace and its links, and rebuilds nothing that exists.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use router_config::MacAddr;

use crate::proto::GuestSpec;
use serde::{Deserialize, Serialize};
use sys::hostnet::{self, HostnetError, LinkInfo};
use sys::netns::{self, NetnsError};

/// The namespace prefix when none is configured: a router `r-7-VM` lives in `gnr-r-7-VM`.
pub const DEFAULT_NAMESPACE_PREFIX: &str = "gnr";

/// The file in the data directory holding what the driver made.
pub const STATE_FILE: &str = "host.json";

/// The router's side of its public veth.
pub const PUBLIC_DEV: &str = "pub0";

/// The router's side of its guest veth.
pub const GUEST_DEV: &str = "guest0";

/// The longest name Linux gives an interface.
const IFNAMSIZ: usize = 15;

/// How long a router's processes get after SIGTERM (and again after SIGKILL) when it goes.
const GRACE: Duration = Duration::from_secs(3);

/// How the guests of this host are started, as configured. [`Guests::new`] is the one place
/// where the configured driver becomes the running one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VmDriver {
    /// Nothing is started: the operator's hypervisor plugs each guest into its network's
    /// bridge. The agent records the VM as a user of that bridge and makes sure the bridge is
    /// there.
    #[default]
    External,
    /// Guests booted through the host's libvirt daemon ([`crate::guests::Libvirt`]), their NIC
    /// on the network's bridge with the MAC the server gave.
    Libvirt,
    /// Guests run by QEMU itself on a tap of the network's bridge ([`crate::guests::Qemu`]).
    Qemu,
}

impl VmDriver {
    /// Its name in flags and configuration files.
    pub fn name(self) -> &'static str {
        match self {
            VmDriver::External => "external",
            VmDriver::Libvirt => "libvirt",
            VmDriver::Qemu => "qemu",
        }
    }
}

impl std::str::FromStr for VmDriver {
    type Err = String;
    fn from_str(s: &str) -> Result<VmDriver, String> {
        match s {
            "external" => Ok(VmDriver::External),
            "libvirt" => Ok(VmDriver::Libvirt),
            "qemu" => Ok(VmDriver::Qemu),
            other => Err(format!(
                "unknown VM driver `{other}` (known: external, libvirt, qemu)"
            )),
        }
    }
}

/// The running VM driver.
#[derive(Debug)]
pub enum Guests {
    /// See [`VmDriver::External`].
    External,
    /// A driver that boots guests.
    Booting(crate::guests::VmDriver),
}

impl Guests {
    /// The driver `config` names, its guests' files under `data_dir/guests/`.
    pub fn new(config: &HostConfig, data_dir: &Path) -> Guests {
        use crate::guests::{VmConfig, VmDriverName};
        let name = match config.vm_driver {
            VmDriver::External => return Guests::External,
            VmDriver::Libvirt => VmDriverName::Libvirt,
            VmDriver::Qemu => VmDriverName::Qemu,
        };
        Guests::Booting(crate::guests::VmDriver::new(&VmConfig {
            driver: name,
            uri: config.libvirt_uri.clone(),
            kvm: config.kvm,
            data_dir: data_dir.to_path_buf(),
            netns: None,
        }))
    }
}

/// Where the VLAN interfaces `IFACE.N` come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VlanInterfaces {
    /// The agent makes `IFACE.N` (kernel 802.1Q, the `8021q` module) when it is missing, and
    /// removes what it made with the network's last user.
    #[default]
    Create,
    /// The host's own network configuration provides `IFACE.N` for every guest VLAN; the agent
    /// plugs it into the network's bridge, never makes or removes one, and does not need VLAN
    /// support in the kernel.
    Existing,
}

impl VlanInterfaces {
    /// Its name in flags and configuration files.
    pub fn name(self) -> &'static str {
        match self {
            VlanInterfaces::Create => "create",
            VlanInterfaces::Existing => "existing",
        }
    }
}

impl std::str::FromStr for VlanInterfaces {
    type Err = String;
    fn from_str(s: &str) -> Result<VlanInterfaces, String> {
        match s {
            "create" => Ok(VlanInterfaces::Create),
            "existing" => Ok(VlanInterfaces::Existing),
            other => Err(format!(
                "unknown VLAN interface mode `{other}` (known: create, existing)"
            )),
        }
    }
}

/// What the host driver is configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConfig {
    /// An existing Linux bridge carrying the public network.
    pub public_bridge: String,
    /// The trunk carrying the guest VLANs.
    pub guest_interface: String,
    /// Every router's namespace is `<prefix>-<router>`.
    pub namespace_prefix: String,
    /// How guests are started.
    pub vm_driver: VmDriver,
    /// Where the VLAN interfaces come from.
    pub vlan_interfaces: VlanInterfaces,
    /// The libvirt daemon's URI (`libvirt` VM driver).
    pub libvirt_uri: String,
    /// Whether guests may use KVM when `/dev/kvm` opens (`libvirt` and `qemu`).
    pub kvm: bool,
}

/// Why the host driver could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The server named no VLAN for the network.
    #[error("router {router}: the host driver needs the network's VLAN, and the server sent none")]
    NoVlan {
        /// The router.
        router: String,
    },
    /// A VM's network has no VLAN the agent knows of.
    #[error("VM {vm}: no VLAN given and its router {router} is not on this host")]
    VmWithoutVlan {
        /// The VM.
        vm: String,
        /// Its router.
        router: String,
    },
    /// A router already on this host was asked for on another VLAN.
    #[error("router {router} is on VLAN {held}, asked for VLAN {asked}")]
    VlanChanged {
        /// The router.
        router: String,
        /// Its VLAN here.
        held: u16,
        /// The VLAN asked for.
        asked: u16,
    },
    /// A VLAN id outside 1..=4094.
    #[error("VLAN {0} is outside 1..=4094")]
    BadVlan(u16),
    /// A name that cannot become a namespace name.
    #[error("{what} `{name}`: use 1 to {max} letters, digits, '-', '_' or '.'")]
    BadName {
        /// What it names (`router`, `namespace prefix`).
        what: &'static str,
        /// The name.
        name: String,
        /// The longest allowed.
        max: usize,
    },
    /// A link the driver would make exists as something else.
    #[error("{link} exists but is a {found}, not a {wanted}")]
    WrongKind {
        /// The link.
        link: String,
        /// What it is.
        found: String,
        /// What the driver needs there.
        wanted: &'static str,
    },
    /// A VLAN interface the driver would plug into a network's bridge is a port of another.
    #[error("{link} is a port of bridge {bridge}, not of the network's bridge")]
    Elsewhere {
        /// The VLAN interface.
        link: String,
        /// The bridge it is on.
        bridge: String,
    },
    /// A link the driver needs is missing (the public bridge, the trunk).
    #[error("{what} {link} does not exist")]
    Missing {
        /// What it is (`public bridge`, `guest trunk`).
        what: &'static str,
        /// The link.
        link: String,
    },
    /// A link operation failed.
    #[error(transparent)]
    Link(#[from] HostnetError),
    /// A namespace operation failed.
    #[error("router namespace {namespace}")]
    Netns {
        /// The namespace.
        namespace: String,
        /// Why.
        #[source]
        source: NetnsError,
    },
    /// The state file cannot be read or written.
    #[error("cannot {action} {}", path.display())]
    State {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The state file is not what the driver writes.
    #[error("cannot parse {}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A VM driver that boots guests was asked for a VM without what it boots.
    #[error("VM {vm}: the {driver} VM driver needs {what}, and the server sent none")]
    GuestIncomplete {
        /// The VM.
        vm: String,
        /// The driver.
        driver: &'static str,
        /// What is missing (`its MAC`, `a bootable image`).
        what: &'static str,
    },
    /// The VM driver could not start or stop a guest.
    #[error(transparent)]
    Guest(#[from] crate::guests::GuestError),
    /// A thread panicked holding the driver's state.
    #[error("host driver state poisoned")]
    Poisoned,
}

/// A router on this host, with the names of what was made for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRouter {
    /// Its network's VLAN.
    pub vlan: u16,
    /// Its namespace.
    pub namespace: String,
    /// The host side of its public veth (a port of the public bridge).
    pub public_port: String,
    /// The host side of its guest veth (a port of the network's bridge).
    pub guest_port: String,
}

/// A VM recorded as a user of its network's bridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostVm {
    /// Its network's router.
    pub router: String,
    /// Its network's VLAN.
    pub vlan: u16,
    /// Its NIC's MAC address, when the server sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<MacAddr>,
}

/// A guest VLAN's links on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VlanNet {
    /// The network's bridge.
    pub bridge: String,
    /// The VLAN interface on the trunk, a port of the bridge.
    pub vlan_link: String,
    /// Whether the agent made the bridge (and so removes it).
    pub made_bridge: bool,
    /// Whether the agent made the VLAN interface (and so removes it).
    pub made_vlan_link: bool,
}

/// Everything the driver made, as `host.json` holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostState {
    /// Routers by name.
    pub routers: BTreeMap<String, HostRouter>,
    /// VMs by key.
    pub vms: BTreeMap<String, HostVm>,
    /// Guest VLANs' links by VLAN.
    pub networks: BTreeMap<u16, VlanNet>,
}

/// The host driver.
#[derive(Debug)]
pub struct Host {
    config: HostConfig,
    guests: Guests,
    path: PathBuf,
    state: Mutex<HostState>,
}

/// FNV-1a, 32 bits: a short stable hash for names that must fit in 15 characters.
fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The VLAN interface of VLAN `vlan` on `trunk`: `trunk.vlan`, or, when that exceeds 15
/// characters, `vl` and 4 hex digits of a hash of the trunk's name, then `.vlan`.
pub fn vlan_link_name(trunk: &str, vlan: u16) -> String {
    let name = format!("{trunk}.{vlan}");
    if name.len() <= IFNAMSIZ {
        return name;
    }
    format!("vl{:04x}.{vlan}", fnv1a32(trunk.as_bytes()) & 0xffff)
}

/// The bridge of VLAN `vlan` on `trunk`: `brtrunk-vlan` (CloudStack's KVM naming), or, when that
/// exceeds 15 characters, `brv` and 4 hex digits of a hash of the trunk's name, then `-vlan`.
pub fn bridge_name(trunk: &str, vlan: u16) -> String {
    let name = format!("br{trunk}-{vlan}");
    if name.len() <= IFNAMSIZ {
        return name;
    }
    format!("brv{:04x}-{vlan}", fnv1a32(trunk.as_bytes()) & 0xffff)
}

/// The host sides of a router's veths, public and guest: `vp` and `vg` followed by 8 hex digits
/// of a hash of the namespace prefix and the router's name.
pub fn port_names(prefix: &str, router: &str) -> (String, String) {
    let h = fnv1a32(format!("{prefix}/{router}").as_bytes());
    (format!("vp{h:08x}"), format!("vg{h:08x}"))
}

/// Checks a name that becomes part of a namespace's name.
fn check_name(what: &'static str, name: &str, max: usize) -> Result<(), HostError> {
    let ok = !name.is_empty()
        && name.len() <= max
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name != "."
        && name != "..";
    if ok {
        Ok(())
    } else {
        Err(HostError::BadName {
            what,
            name: name.to_string(),
            max,
        })
    }
}

/// The longest namespace prefix.
pub const MAX_PREFIX: usize = 32;

/// The longest router name (the namespace's name stays well below the file-name limit).
const MAX_ROUTER: usize = 200;

impl HostConfig {
    /// Checks the names it holds.
    ///
    /// # Errors
    /// [`HostError::BadName`] for a prefix that cannot start a namespace's name, or an empty
    /// bridge or trunk name.
    pub fn check(&self) -> Result<(), HostError> {
        check_name("namespace prefix", &self.namespace_prefix, MAX_PREFIX)?;
        check_name("public bridge", &self.public_bridge, IFNAMSIZ)?;
        check_name("guest interface", &self.guest_interface, IFNAMSIZ)
    }

    /// The namespace of router `router`.
    pub fn namespace(&self, router: &str) -> String {
        format!("{}-{router}", self.namespace_prefix)
    }
}

fn netns_error(namespace: &str) -> impl FnOnce(NetnsError) -> HostError + '_ {
    move |source| HostError::Netns {
        namespace: namespace.to_string(),
        source,
    }
}

impl Host {
    /// The driver over `data_dir`, taking up what its state file records.
    ///
    /// # Errors
    /// A bad configuration, or a state file that cannot be read.
    pub fn open(data_dir: &Path, config: HostConfig) -> Result<Host, HostError> {
        config.check()?;
        std::fs::create_dir_all(data_dir).map_err(|source| HostError::State {
            action: "create",
            path: data_dir.to_path_buf(),
            source,
        })?;
        let path = data_dir.join(STATE_FILE);
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| HostError::Corrupt {
                path: path.clone(),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HostState::default(),
            Err(source) => {
                return Err(HostError::State {
                    action: "read",
                    path,
                    source,
                })
            }
        };
        Ok(Host {
            guests: Guests::new(&config, data_dir),
            config,
            path,
            state: Mutex::new(state),
        })
    }

    /// Its configuration.
    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    /// What it has made, as recorded.
    ///
    /// # Errors
    /// [`HostError::Poisoned`].
    pub fn state(&self) -> Result<HostState, HostError> {
        Ok(self.lock()?.clone())
    }

    /// The namespace of router `router`, if it is on this host.
    pub fn router_netns(&self, router: &str) -> Option<String> {
        self.lock()
            .ok()?
            .routers
            .get(router)
            .map(|r| r.namespace.clone())
    }

    /// The routers on this host.
    pub fn routers(&self) -> Vec<String> {
        self.lock()
            .map(|s| s.routers.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, HostState>, HostError> {
        self.state.lock().map_err(|_| HostError::Poisoned)
    }

    /// Writes `next` to the state file (temporary file, renamed over it).
    fn write(&self, next: &HostState) -> Result<(), HostError> {
        let bytes = serde_json::to_vec_pretty(next).map_err(|source| HostError::Corrupt {
            path: self.path.clone(),
            source,
        })?;
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, bytes).map_err(|source| HostError::State {
            action: "write",
            path: tmp.clone(),
            source,
        })?;
        std::fs::rename(&tmp, &self.path).map_err(|source| HostError::State {
            action: "rename",
            path: tmp,
            source,
        })
    }

    /// Records `next` and makes it the state.
    fn commit(&self, state: &mut HostState, next: HostState) -> Result<(), HostError> {
        self.write(&next)?;
        *state = next;
        Ok(())
    }

    /// Makes sure router `router` exists on VLAN `vlan`: the VLAN's links, the router's
    /// namespace with forwarding on, and its two veths, each made if missing and kept if there.
    /// Returns the router's namespace.
    ///
    /// # Errors
    /// [`HostError::NoVlan`] without a VLAN, [`HostError::VlanChanged`] for a router already
    /// on another one, otherwise the step that failed (what was made so far stays recorded, and
    /// asking again goes on from there).
    pub fn ensure_router(&self, router: &str, vlan: Option<u16>) -> Result<String, HostError> {
        let vlan = vlan.ok_or_else(|| HostError::NoVlan {
            router: router.to_string(),
        })?;
        check_vlan(vlan)?;
        check_name("router", router, MAX_ROUTER)?;
        let mut state = self.lock()?;
        if let Some(r) = state.routers.get(router) {
            if r.vlan != vlan {
                return Err(HostError::VlanChanged {
                    router: router.to_string(),
                    held: r.vlan,
                    asked: vlan,
                });
            }
        }
        self.check_public_bridge()?;
        let net = self.ensure_network(&mut state, vlan)?;
        let namespace = self.config.namespace(router);
        let (public_port, guest_port) = port_names(&self.config.namespace_prefix, router);
        let entry = HostRouter {
            vlan,
            namespace: namespace.clone(),
            public_port,
            guest_port,
        };
        if state.routers.get(router) != Some(&entry) {
            let mut next = state.clone();
            next.routers.insert(router.to_string(), entry.clone());
            self.commit(&mut state, next)?;
        }
        if !netns::exists(&namespace) {
            netns::add(&namespace).map_err(netns_error(&namespace))?;
        }
        netns::set_sysctl(&namespace, "net.ipv4.ip_forward", "1")
            .map_err(netns_error(&namespace))?;
        plug(
            &namespace,
            &entry.public_port,
            PUBLIC_DEV,
            &self.config.public_bridge,
        )?;
        plug(&namespace, &entry.guest_port, GUEST_DEV, &net.bridge)?;
        Ok(namespace)
    }

    /// Makes sure router `router`, as recorded, is wired: [`Host::ensure_router`] on its VLAN.
    /// A router not recorded is fine.
    ///
    /// # Errors
    /// As [`Host::ensure_router`].
    pub fn restore(&self, router: &str) -> Result<(), HostError> {
        let vlan = self.lock()?.routers.get(router).map(|r| r.vlan);
        match vlan {
            Some(vlan) => self.ensure_router(router, Some(vlan)).map(drop),
            None => Ok(()),
        }
    }

    fn check_public_bridge(&self) -> Result<(), HostError> {
        let br = &self.config.public_bridge;
        match hostnet::info(br)? {
            None => Err(HostError::Missing {
                what: "public bridge",
                link: br.clone(),
            }),
            Some(i) if i.kind.as_deref() != Some("bridge") => Err(HostError::WrongKind {
                link: br.clone(),
                found: i.kind.unwrap_or_else(|| "device".into()),
                wanted: "bridge",
            }),
            Some(_) => Ok(()),
        }
    }

    /// Makes sure VLAN `vlan` has its VLAN interface on the trunk and its bridge, the one a port
    /// of the other, both up; records what it made.
    fn ensure_network(&self, state: &mut HostState, vlan: u16) -> Result<VlanNet, HostError> {
        let trunk = &self.config.guest_interface;
        let net = match state.networks.get(&vlan) {
            Some(n) => n.clone(),
            None => {
                let vlan_link = vlan_link_name(trunk, vlan);
                let bridge = bridge_name(trunk, vlan);
                let made_vlan_link = self.config.vlan_interfaces == VlanInterfaces::Create
                    && !hostnet::exists(&vlan_link);
                let made_bridge = !hostnet::exists(&bridge);
                let n = VlanNet {
                    bridge,
                    vlan_link,
                    made_bridge,
                    made_vlan_link,
                };
                let mut next = state.clone();
                next.networks.insert(vlan, n.clone());
                self.commit(state, next)?;
                n
            }
        };
        match hostnet::info(&net.bridge)? {
            None => hostnet::add_bridge(&net.bridge)?,
            Some(i) if i.kind.as_deref() != Some("bridge") => {
                return Err(HostError::WrongKind {
                    link: net.bridge.clone(),
                    found: i.kind.unwrap_or_else(|| "device".into()),
                    wanted: "bridge",
                })
            }
            Some(i) if !i.up => hostnet::set_up(&net.bridge)?,
            Some(_) => {}
        }
        match hostnet::info(&net.vlan_link)? {
            None if self.config.vlan_interfaces == VlanInterfaces::Existing => {
                return Err(HostError::Missing {
                    what: "VLAN interface (the host provides them)",
                    link: net.vlan_link.clone(),
                });
            }
            None => {
                if !hostnet::exists(trunk) {
                    return Err(HostError::Missing {
                        what: "guest trunk",
                        link: trunk.clone(),
                    });
                }
                hostnet::add_vlan(trunk, &net.vlan_link, vlan)?;
                hostnet::attach(&net.vlan_link, &net.bridge)?;
            }
            // The host's own VLAN interface may be of any kind it chose.
            Some(i)
                if self.config.vlan_interfaces == VlanInterfaces::Create
                    && i.kind.as_deref() != Some("vlan") =>
            {
                return Err(HostError::WrongKind {
                    link: net.vlan_link.clone(),
                    found: i.kind.unwrap_or_else(|| "device".into()),
                    wanted: "VLAN interface",
                })
            }
            // A port of another bridge is someone else's: never moved.
            Some(LinkInfo {
                master: Some(other),
                ..
            }) if other != net.bridge => {
                return Err(HostError::Elsewhere {
                    link: net.vlan_link.clone(),
                    bridge: other,
                })
            }
            Some(i) if i.master.is_none() || !i.up => {
                hostnet::attach(&net.vlan_link, &net.bridge)?;
            }
            Some(_) => {}
        }
        Ok(net)
    }

    /// Removes router `router`: its namespace (every process in it ended first) and its
    /// veths, then its VLAN's links if nothing else uses them. A router not on this host is
    /// fine.
    ///
    /// # Errors
    /// The step that failed; the router stays recorded and removing it again retries.
    pub fn remove_router(&self, router: &str) -> Result<(), HostError> {
        let mut state = self.lock()?;
        let Some(r) = state.routers.get(router).cloned() else {
            return Ok(());
        };
        netns::remove(&r.namespace, GRACE).map_err(netns_error(&r.namespace))?;
        // The namespace's end takes the veths with it; a half-made one may be left here.
        hostnet::delete(&r.public_port)?;
        hostnet::delete(&r.guest_port)?;
        let mut next = state.clone();
        next.routers.remove(router);
        self.commit(&mut state, next)?;
        self.sweep_locked(&mut state)?;
        Ok(())
    }

    /// Makes sure VM `vm` of router `router`'s network can run here: records it as a user of
    /// its VLAN's bridge and makes sure that bridge is there; then the VM driver starts it
    /// (`guest` is what a booting driver boots).
    ///
    /// # Errors
    /// [`HostError::VmWithoutVlan`] when neither the request nor the router give the VLAN,
    /// [`HostError::GuestIncomplete`] for a booting driver without a MAC or a bootable image,
    /// otherwise the step that failed.
    pub fn ensure_vm(
        &self,
        vm: &str,
        router: &str,
        vlan: Option<u16>,
        mac: Option<MacAddr>,
        guest: Option<&GuestSpec>,
    ) -> Result<(), HostError> {
        let mut state = self.lock()?;
        let vlan = match vlan.or_else(|| state.routers.get(router).map(|r| r.vlan)) {
            Some(v) => v,
            None => {
                return Err(HostError::VmWithoutVlan {
                    vm: vm.to_string(),
                    router: router.to_string(),
                })
            }
        };
        check_vlan(vlan)?;
        let entry = HostVm {
            router: router.to_string(),
            vlan,
            mac,
        };
        if state.vms.get(vm) != Some(&entry) {
            let mut next = state.clone();
            next.vms.insert(vm.to_string(), entry);
            self.commit(&mut state, next)?;
        }
        let net = self.ensure_network(&mut state, vlan)?;
        match &self.guests {
            // The hypervisor plugs the guest into the bridge made above.
            Guests::External => Ok(()),
            Guests::Booting(d) => {
                let incomplete = |what| HostError::GuestIncomplete {
                    vm: vm.to_string(),
                    driver: self.config.vm_driver.name(),
                    what,
                };
                let mac = mac.ok_or_else(|| incomplete("its MAC"))?;
                let spec = guest.ok_or_else(|| incomplete("a bootable image"))?;
                Ok(d.ensure(vm, spec, mac, &net.bridge)?)
            }
        }
    }

    /// Removes VM `vm`: what the VM driver does to stop it, then its record; its VLAN's links
    /// go if nothing else uses them. A VM not recorded here is fine.
    ///
    /// # Errors
    /// The step that failed.
    pub fn remove_vm(&self, vm: &str) -> Result<(), HostError> {
        let mut state = self.lock()?;
        if !state.vms.contains_key(vm) {
            return Ok(());
        }
        match &self.guests {
            Guests::External => {}
            Guests::Booting(d) => d.remove(vm)?,
        }
        let mut next = state.clone();
        next.vms.remove(vm);
        self.commit(&mut state, next)?;
        self.sweep_locked(&mut state)?;
        Ok(())
    }

    /// Removes the links of every VLAN that no router, no recorded VM and no foreign port of its
    /// bridge uses any more (only what the agent made); returns the VLANs whose links went.
    /// Called after each removal and by the drift timer.
    ///
    /// # Errors
    /// The first link that cannot be removed; the VLAN stays recorded.
    pub fn sweep(&self) -> Result<Vec<u16>, HostError> {
        let mut state = self.lock()?;
        self.sweep_locked(&mut state)
    }

    fn sweep_locked(&self, state: &mut HostState) -> Result<Vec<u16>, HostError> {
        let mut gone = Vec::new();
        let unused: Vec<(u16, VlanNet)> = state
            .networks
            .iter()
            .filter(|(v, _)| {
                !state.routers.values().any(|r| r.vlan == **v)
                    && !state.vms.values().any(|m| m.vlan == **v)
            })
            .map(|(v, n)| (*v, n.clone()))
            .collect();
        for (vlan, net) in unused {
            let foreign: Vec<String> = if hostnet::exists(&net.bridge) {
                hostnet::ports(&net.bridge)?
                    .into_iter()
                    .filter(|p| *p != net.vlan_link)
                    .collect()
            } else {
                Vec::new()
            };
            if !foreign.is_empty() {
                tracing::debug!(vlan, bridge = %net.bridge, ports = ?foreign,
                    "the network's bridge still has ports; kept");
                continue;
            }
            if net.made_vlan_link {
                hostnet::delete(&net.vlan_link)?;
            }
            if net.made_bridge {
                hostnet::delete(&net.bridge)?;
            }
            let mut next = state.clone();
            next.networks.remove(&vlan);
            self.commit(state, next)?;
            tracing::info!(vlan, bridge = %net.bridge, "the network's bridge had no user left; removed");
            gone.push(vlan);
        }
        Ok(gone)
    }
}

fn check_vlan(vlan: u16) -> Result<(), HostError> {
    if (1..=4094).contains(&vlan) {
        Ok(())
    } else {
        Err(HostError::BadVlan(vlan))
    }
}

/// Makes sure the veth `port` (here) / `dev` (in `namespace`) exists with `port` on `bridge`,
/// both sides up.
fn plug(namespace: &str, port: &str, dev: &str, bridge: &str) -> Result<(), HostError> {
    match hostnet::info(port)? {
        None => hostnet::add_veth_into(port, namespace, dev)?,
        Some(i) if i.kind.as_deref() != Some("veth") => {
            return Err(HostError::WrongKind {
                link: port.to_string(),
                found: i.kind.unwrap_or_else(|| "device".into()),
                wanted: "veth",
            })
        }
        Some(_) => {}
    }
    match hostnet::info(port)? {
        Some(i) if i.master.as_deref() == Some(bridge) && i.up => {}
        _ => hostnet::attach(port, bridge)?,
    }
    netns::set_up(namespace, dev).map_err(netns_error(namespace))
}

/// Something the host driver needs that this host lacks, as `guestnet agent --check` reports
/// it (one line each).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Lack {
    /// The agent is not root.
    #[error("not root: the host driver makes namespaces, bridges and VLAN interfaces")]
    NotRoot,
    /// A configured name is not usable.
    #[error("{0}")]
    BadConfig(String),
    /// The public bridge is missing.
    #[error("public bridge {0} does not exist")]
    NoPublicBridge(String),
    /// The public bridge is something else.
    #[error("public bridge {name} is a {kind}, not a bridge")]
    NotABridge {
        /// The link.
        name: String,
        /// What it is.
        kind: String,
    },
    /// The trunk is missing.
    #[error("guest interface (trunk) {0} does not exist")]
    NoTrunk(String),
    /// A program is not on `PATH`.
    #[error("`{0}` is not on PATH")]
    Tool(&'static str),
    /// A namespace with forwarding on cannot be made.
    #[error("cannot make a network namespace with IPv4 forwarding on: {0}")]
    Namespace(String),
    /// VLAN interfaces cannot be made.
    #[error("no VLAN support: {0}")]
    Vlan(String),
}

/// The programs the host driver and its routers run.
pub const TOOLS: [&str; 5] = ["nft", "haproxy", "dnsmasq", "ip", "nsenter"];

/// Checks that this host has everything the host driver needs: root; the public bridge, a
/// bridge; the trunk; every program of [`TOOLS`] on `PATH`, and those of the VM driver
/// (`virsh` and `qemu-img` for libvirt, `qemu-system-x86_64` and `qemu-img` for qemu); a network namespace with IPv4
/// forwarding on (a throwaway one is made, checked and removed); unless the host provides the
/// VLAN interfaces itself, VLAN support (the 8021q module's `/proc/net/vlan/config`, or else a
/// throwaway VLAN interface made on the trunk and removed). Returns every lack, none when all
/// is there.
pub fn preflight(config: &HostConfig) -> Vec<Lack> {
    let mut lacks = Vec::new();
    if let Err(e) = config.check() {
        lacks.push(Lack::BadConfig(e.to_string()));
    }
    let root = nix::unistd::Uid::effective().is_root();
    if !root {
        lacks.push(Lack::NotRoot);
    }
    match hostnet::info(&config.public_bridge) {
        Ok(None) | Err(_) => lacks.push(Lack::NoPublicBridge(config.public_bridge.clone())),
        Ok(Some(i)) if i.kind.as_deref() != Some("bridge") => lacks.push(Lack::NotABridge {
            name: config.public_bridge.clone(),
            kind: i.kind.unwrap_or_else(|| "device".into()),
        }),
        Ok(Some(_)) => {}
    }
    let trunk = hostnet::exists(&config.guest_interface);
    if !trunk {
        lacks.push(Lack::NoTrunk(config.guest_interface.clone()));
    }
    let guests: &[&'static str] = match config.vm_driver {
        VmDriver::External => &[],
        VmDriver::Libvirt => &["virsh", "qemu-img"],
        VmDriver::Qemu => &["qemu-system-x86_64", "qemu-img"],
    };
    for &tool in TOOLS.iter().chain(guests) {
        if !sys::cmd::is_on_path(tool) {
            lacks.push(Lack::Tool(tool));
        }
    }
    if root && sys::cmd::is_on_path("ip") && sys::cmd::is_on_path("nsenter") {
        if let Err(why) = try_namespace(&config.namespace_prefix) {
            lacks.push(Lack::Namespace(why));
        }
        if trunk && config.vlan_interfaces == VlanInterfaces::Create {
            if let Err(why) = try_vlan(&config.guest_interface) {
                lacks.push(Lack::Vlan(why));
            }
        }
    }
    lacks
}

/// Makes a throwaway namespace, turns forwarding on in it and reads it back; removes it.
fn try_namespace(prefix: &str) -> Result<(), String> {
    let ns = format!("{prefix}-check-{}", std::process::id());
    netns::add(&ns).map_err(|e| vrouterd::chain(&e))?;
    let result = (|| {
        netns::set_sysctl(&ns, "net.ipv4.ip_forward", "1").map_err(|e| vrouterd::chain(&e))?;
        let out = netns::command_in(&ns, "sysctl", ["-n", "net.ipv4.ip_forward"])
            .output()
            .map_err(|e| vrouterd::chain(&e))?;
        match String::from_utf8_lossy(&out.stdout).trim() {
            "1" => Ok(()),
            other => Err(format!("forwarding reads {other:?} after it was set")),
        }
    })();
    let removed = netns::remove(&ns, GRACE).map_err(|e| vrouterd::chain(&e));
    result.and(removed.map(drop))
}

/// Whether VLAN interfaces can be made on `trunk`: the 8021q module is loaded (its
/// `/proc/net/vlan/config`), or else a throwaway VLAN interface (VLAN 4094) can be made on the
/// trunk; it is removed at once.
fn try_vlan(trunk: &str) -> Result<(), String> {
    if Path::new("/proc/net/vlan/config").exists() {
        return Ok(());
    }
    let link = format!("gnchk{}", std::process::id() % 100_000);
    hostnet::add_vlan(trunk, &link, 4094).map_err(|e| vrouterd::chain(&e))?;
    hostnet::delete(&link).map_err(|e| vrouterd::chain(&e))
}

/// What the driver is, for a startup line.
pub fn describe(config: &HostConfig) -> String {
    format!(
        "host (public bridge {}, guest trunk {}, VLAN interfaces: {}, namespaces {}-<router>, VMs: {})",
        config.public_bridge,
        config.guest_interface,
        config.vlan_interfaces.name(),
        config.namespace_prefix,
        config.vm_driver.name()
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_fit_in_fifteen_characters_and_stay_stable() {
        assert_eq!(vlan_link_name("eth1", 100), "eth1.100");
        assert_eq!(bridge_name("eth1", 100), "breth1-100");
        assert_eq!(bridge_name("bond0", 4094), "brbond0-4094");
        let long = "enp0s31f6trunk";
        for vlan in [1, 100, 4094] {
            let b = bridge_name(long, vlan);
            let v = vlan_link_name(long, vlan);
            assert!(b.len() <= 15 && b.starts_with("brv"), "{b}");
            assert!(v.len() <= 15 && v.starts_with("vl"), "{v}");
            assert!(b.ends_with(&format!("-{vlan}")), "{b}");
            assert_eq!(bridge_name(long, vlan), b);
        }
        let (p, g) = port_names("gnr", "r-1-VM");
        assert_eq!((p.len(), g.len()), (10, 10));
        assert_eq!(port_names("gnr", "r-1-VM"), (p.clone(), g));
        assert_ne!(port_names("gnr", "r-2-VM").0, p);
        assert_ne!(port_names("other", "r-1-VM").0, p);
    }

    #[test]
    fn bad_names_and_vlans_are_refused_by_name() {
        let config = HostConfig {
            public_bridge: "br-pub".into(),
            guest_interface: "eth1".into(),
            namespace_prefix: "gnr".into(),
            vm_driver: VmDriver::External,
            vlan_interfaces: VlanInterfaces::Create,
            libvirt_uri: crate::guests::DEFAULT_URI.into(),
            kvm: false,
        };
        assert!(config.check().is_ok());
        let bad = HostConfig {
            namespace_prefix: "a/b".into(),
            ..config.clone()
        };
        let e = bad.check().unwrap_err().to_string();
        assert!(e.contains("namespace prefix `a/b`"), "{e}");
        let dir = tempfile::TempDir::new().unwrap();
        let host = Host::open(dir.path(), config).unwrap();
        let e = host.ensure_router("r-1", None).unwrap_err().to_string();
        assert!(e.contains("r-1") && e.contains("VLAN"), "{e}");
        let e = host
            .ensure_router("r-1", Some(4095))
            .unwrap_err()
            .to_string();
        assert!(e.contains("4095"), "{e}");
        let e = host
            .ensure_vm("vm-1", "r-9", None, None, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("vm-1") && e.contains("r-9"), "{e}");
        assert_eq!("external".parse::<VmDriver>(), Ok(VmDriver::External));
        assert!("libvirt?"
            .parse::<VmDriver>()
            .unwrap_err()
            .contains("libvirt?"));
    }

    #[test]
    fn state_survives_the_file() {
        let mut s = HostState::default();
        s.routers.insert(
            "r-1".into(),
            HostRouter {
                vlan: 100,
                namespace: "gnr-r-1".into(),
                public_port: "vp00000001".into(),
                guest_port: "vg00000001".into(),
            },
        );
        s.vms.insert(
            "vm-1".into(),
            HostVm {
                router: "r-1".into(),
                vlan: 100,
                mac: Some("02:00:5e:10:00:01".parse().unwrap()),
            },
        );
        s.networks.insert(
            100,
            VlanNet {
                bridge: "breth1-100".into(),
                vlan_link: "eth1.100".into(),
                made_bridge: true,
                made_vlan_link: false,
            },
        );
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<HostState>(&text).unwrap(), s);
    }
}
