//! The switch's side of a lab: a stable slot number for every network and VM, and the names of
//! the bridges and veths in the switch namespace, which derive from those slots.
//!
//! A network or VM gets the lowest free slot when it is added and keeps it until it is removed,
//! so the switch's interface names of the others never change as networks and VMs come and go.
//! Network slots are unique in the lab, VM slots unique on their network. A lab built at once
//! from a spec gives the slots in spec order, so they equal the indices.
//!
//! Names, for network slot `N` and VM slot `M`: the guest bridge `brg<N>`, the router's ports
//! `r<N>p` (on `brpub`) and `r<N>g` (on `brg<N>`), and the VM's port `v<N>-<M>`. With slots
//! below [`MAX_NETWORKS`] and [`MAX_VMS`] the longest is `v999-999`, well within the kernel's
//! 15 characters.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::spec::{LabSpec, MAX_NETWORKS, MAX_VMS};

/// The slot of every network (by router name) and every VM (by VM name) of a lab.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Slots {
    /// Router name to the slot of its network, unique in the lab.
    pub(crate) networks: BTreeMap<String, u16>,
    /// VM name to its slot, unique on its network.
    pub(crate) vms: BTreeMap<String, u16>,
}

impl Slots {
    /// Forgets the slots of networks and VMs that are not in `spec`, then gives the lowest free
    /// slot to each one that has none, in spec order. Slots already given are kept.
    ///
    /// A network or VM beyond the limits (which a checked spec never has) gets no slot.
    pub(crate) fn fill(&mut self, spec: &LabSpec) {
        let routers: BTreeSet<&str> = spec.networks.iter().map(|n| n.router.as_str()).collect();
        let vms: BTreeSet<&str> = spec
            .networks
            .iter()
            .flat_map(|n| &n.vms)
            .map(|v| v.name.as_str())
            .collect();
        self.networks.retain(|r, _| routers.contains(r.as_str()));
        self.vms.retain(|v, _| vms.contains(v.as_str()));

        for net in &spec.networks {
            if !self.networks.contains_key(&net.router) {
                if let Some(slot) = lowest_free(self.networks.values().copied(), MAX_NETWORKS) {
                    self.networks.insert(net.router.clone(), slot);
                }
            }
            for vm in &net.vms {
                if self.vms.contains_key(&vm.name) {
                    continue;
                }
                let used: Vec<u16> = net
                    .vms
                    .iter()
                    .filter_map(|v| self.vms.get(&v.name).copied())
                    .collect();
                if let Some(slot) = lowest_free(used, MAX_VMS) {
                    self.vms.insert(vm.name.clone(), slot);
                }
            }
        }
    }
}

/// The lowest slot below `limit` that is not in `used`.
pub(crate) fn lowest_free(used: impl IntoIterator<Item = u16>, limit: usize) -> Option<u16> {
    let used: BTreeSet<u16> = used.into_iter().collect();
    (0..=u16::MAX).take(limit).find(|slot| !used.contains(slot))
}

/// The guest bridge of network slot `net`, in the switch.
pub(crate) fn guest_bridge(net: u16) -> String {
    format!("brg{net}")
}

/// The switch's end of the veth to the router's `pub0`, on `brpub`.
pub(crate) fn router_public_port(net: u16) -> String {
    format!("r{net}p")
}

/// The switch's end of the veth to the router's `guest0`, on the guest bridge.
pub(crate) fn router_guest_port(net: u16) -> String {
    format!("r{net}g")
}

/// The switch's end of the veth to a VM's `eth0`, on the guest bridge.
pub(crate) fn vm_port(net: u16, vm: u16) -> String {
    format!("v{net}-{vm}")
}
