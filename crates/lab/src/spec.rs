//! What a lab is made of: guest networks, each with one router and some VMs.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::LabError;

/// Longest router or VM name accepted.
const MAX_NAME_LEN: usize = 32;

/// Most guest networks in one lab.
///
/// The public bridge `brpub` has a port for the outside host and one per router, and a Linux
/// bridge numbers its ports with 10 bits (at most 1023 ports), which is the real ceiling; the
/// switch's interface names (see [`crate::Lab`]) fit in 15 characters up to this many networks.
pub const MAX_NETWORKS: usize = 1000;

/// Most VMs on one guest network.
///
/// A guest bridge has a port for the router and one per VM, within the same 1023 ports as the
/// public bridge.
pub const MAX_VMS: usize = 1000;

/// The whole lab: its guest networks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabSpec {
    /// The guest networks, each with its own router and bridge.
    pub networks: Vec<NetworkSpec>,
}

/// One guest network: a bridge, the router serving it and the VMs on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// The router's name, unique in the lab; its namespace is `<id>-r-<router>`.
    pub router: String,
    /// The guest network's CIDR; VMs get its prefix length.
    pub guest_cidr: Ipv4Net,
    /// The VMs' default gateway (the router configures this address itself).
    pub gateway: Ipv4Addr,
    /// The VMs on this network.
    #[serde(default)]
    pub vms: Vec<VmSpec>,
}

/// One VM: a namespace with `eth0` on its network's bridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmSpec {
    /// The VM's key, unique in the lab; its namespace is `<id>-vm-<name>`. A management
    /// server's VM is keyed by its id (its owner's name for it is in `label`).
    pub name: String,
    /// Its address inside the guest CIDR.
    pub ip: Ipv4Addr,
    /// How the VM's owner knows it, for a VM a management server made; `vm:NAME` and
    /// `vm:NAME@ACCOUNT` find it by that (see [`crate::Lab::vm_netns`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<VmLabel>,
}

/// The names of a management server's VM: several accounts may each have a VM of one name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmLabel {
    /// The name given to deployVirtualMachine (unique in its account).
    pub name: String,
    /// Its account's name.
    pub account: String,
    /// Its network's name.
    pub network: String,
}

impl VmSpec {
    /// Whether `vm:query` names this VM by its label: `NAME`, `NAME@ACCOUNT` or
    /// `NAME@NETWORK`.
    pub fn is_called(&self, query: &str) -> bool {
        let Some(label) = &self.label else {
            return false;
        };
        match query.split_once('@') {
            None => label.name == query,
            Some((name, qualifier)) => {
                label.name == name && (label.account == qualifier || label.network == qualifier)
            }
        }
    }
}

/// Something wrong with a [`LabSpec`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecProblem {
    /// The lab has no network.
    #[error("the lab has no network")]
    NoNetworks,
    /// The lab has more networks than supported.
    #[error("the lab has {count} networks, at most {MAX_NETWORKS} are supported")]
    TooManyNetworks {
        /// How many there are.
        count: usize,
    },
    /// A network has more VMs than supported.
    #[error("network of router {router} has {count} vms, at most {MAX_VMS} are supported")]
    TooManyVms {
        /// The network's router.
        router: String,
        /// How many there are.
        count: usize,
    },
    /// A router or VM name is empty, too long or has characters other than `[A-Za-z0-9_-]`.
    #[error("{kind} name `{name}` must be 1 to {MAX_NAME_LEN} characters of [A-Za-z0-9_-]")]
    BadName {
        /// `router` or `vm`.
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// Two routers or two VMs share a name.
    #[error("{kind} name `{name}` is used twice")]
    DuplicateName {
        /// `router` or `vm`.
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// The gateway is not a host address of the guest CIDR.
    #[error("gateway {gateway} of router {router} is not a host address of {cidr}")]
    GatewayOutside {
        /// The network's router.
        router: String,
        /// The gateway.
        gateway: Ipv4Addr,
        /// The guest CIDR.
        cidr: Ipv4Net,
    },
    /// A VM's address is not a host address of its guest CIDR.
    #[error("address {ip} of vm {vm} is not a host address of {cidr}")]
    VmOutside {
        /// The VM.
        vm: String,
        /// Its address.
        ip: Ipv4Addr,
        /// The guest CIDR.
        cidr: Ipv4Net,
    },
    /// Two VMs of a network, or a VM and the gateway, share an address.
    #[error("address {ip} of vm {vm} is already used on its network")]
    DuplicateAddress {
        /// The VM.
        vm: String,
        /// The address.
        ip: Ipv4Addr,
    },
}

impl LabSpec {
    /// The demo lab: router `net1` serving 10.1.1.0/24 (gateway 10.1.1.1) with VMs `web1`
    /// (10.1.1.11) and `web2` (10.1.1.12).
    pub fn default_demo() -> Self {
        LabSpec {
            networks: vec![NetworkSpec {
                router: "net1".to_string(),
                guest_cidr: Ipv4Net::new(Ipv4Addr::new(10, 1, 1, 0), 24)
                    .expect("invariant: 24 is a valid prefix length"),
                gateway: Ipv4Addr::new(10, 1, 1, 1),
                vms: vec![
                    VmSpec {
                        name: "web1".to_string(),
                        ip: Ipv4Addr::new(10, 1, 1, 11),
                        label: None,
                    },
                    VmSpec {
                        name: "web2".to_string(),
                        ip: Ipv4Addr::new(10, 1, 1, 12),
                        label: None,
                    },
                ],
            }],
        }
    }

    /// Parses a spec from JSON text.
    ///
    /// # Errors
    /// The parser's error for malformed JSON or unknown fields.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Reads a spec from a JSON file.
    ///
    /// # Errors
    /// [`LabError::ReadSpec`] or [`LabError::ParseSpec`].
    pub fn from_json_file(path: &Path) -> Result<Self, LabError> {
        let text = std::fs::read_to_string(path).map_err(|source| LabError::ReadSpec {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json(&text).map_err(|source| LabError::ParseSpec {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Checks the spec and returns every problem at once. A spec to build a lab from must have
    /// at least one network; an empty lab comes only from [`crate::Lab::up_empty`].
    ///
    /// # Errors
    /// All the [`SpecProblem`]s found.
    pub fn validate(&self) -> Result<(), Vec<SpecProblem>> {
        self.check(true)
    }

    /// Checks the spec as [`LabSpec::validate`] does; an empty spec passes unless
    /// `require_network` (a lab that grows at run time starts empty and may shrink to nothing).
    pub(crate) fn check(&self, require_network: bool) -> Result<(), Vec<SpecProblem>> {
        let mut problems = Vec::new();
        if require_network && self.networks.is_empty() {
            problems.push(SpecProblem::NoNetworks);
        }
        if self.networks.len() > MAX_NETWORKS {
            problems.push(SpecProblem::TooManyNetworks {
                count: self.networks.len(),
            });
        }
        let mut routers = BTreeSet::new();
        let mut vms = BTreeSet::new();
        for net in &self.networks {
            check_name("router", &net.router, &mut routers, &mut problems);
            if net.vms.len() > MAX_VMS {
                problems.push(SpecProblem::TooManyVms {
                    router: net.router.clone(),
                    count: net.vms.len(),
                });
            }
            let cidr = net.guest_cidr.trunc();
            if !router_config::is_host_in(cidr, net.gateway) {
                problems.push(SpecProblem::GatewayOutside {
                    router: net.router.clone(),
                    gateway: net.gateway,
                    cidr,
                });
            }
            let mut addresses = BTreeSet::from([net.gateway]);
            for vm in &net.vms {
                check_name("vm", &vm.name, &mut vms, &mut problems);
                if !router_config::is_host_in(cidr, vm.ip) {
                    problems.push(SpecProblem::VmOutside {
                        vm: vm.name.clone(),
                        ip: vm.ip,
                        cidr,
                    });
                }
                if !addresses.insert(vm.ip) {
                    problems.push(SpecProblem::DuplicateAddress {
                        vm: vm.name.clone(),
                        ip: vm.ip,
                    });
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

fn check_name(
    kind: &'static str,
    name: &str,
    seen: &mut BTreeSet<String>,
    problems: &mut Vec<SpecProblem>,
) {
    let well_formed = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !well_formed {
        problems.push(SpecProblem::BadName {
            kind,
            name: name.to_string(),
        });
    }
    if !seen.insert(name.to_string()) {
        problems.push(SpecProblem::DuplicateName {
            kind,
            name: name.to_string(),
        });
    }
}
