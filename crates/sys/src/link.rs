//! Interface addresses and routes of a router, made to match what its config says.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use std::os::fd::AsRawFd;

use nix::sys::socket::{sendto, socket, AddressFamily, LinkAddr, MsgFlags, SockFlag, SockType};

use crate::cmd::CommandError;
use crate::nft::Netns;

/// An address or route change that failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// An `ip` command failed.
    #[error("cannot configure {dev} in {netns}")]
    Ip {
        /// Where.
        netns: Netns,
        /// Which interface.
        dev: String,
        /// The failed command.
        #[source]
        source: CommandError,
    },
    /// `ip -j` printed something that is not the expected JSON.
    #[error("cannot read the addresses or local routes of {dev} in {netns}")]
    Parse {
        /// Where.
        netns: Netns,
        /// Which interface.
        dev: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// The IPv4 addresses (with prefix lengths) configured on `dev`.
///
/// # Errors
/// [`LinkError`] when `ip` fails or prints something unexpected.
pub fn addresses(netns: &Netns, dev: &str) -> Result<BTreeSet<(Ipv4Addr, u8)>, LinkError> {
    let v = ip_json(netns, dev, &["-j", "-4", "addr", "show", "dev", dev])?;
    let mut set = BTreeSet::new();
    for link in v.as_array().into_iter().flatten() {
        for a in link
            .get("addr_info")
            .and_then(|x| x.as_array())
            .into_iter()
            .flatten()
        {
            let ip = a
                .get("local")
                .and_then(|x| x.as_str())
                .and_then(|s| s.parse().ok());
            let len = a
                .get("prefixlen")
                .and_then(|x| x.as_u64())
                .and_then(|l| u8::try_from(l).ok());
            if let (Some(ip), Some(len)) = (ip, len) {
                set.insert((ip, len));
            }
        }
    }
    Ok(set)
}

/// What `ip -j args` prints about `dev`, parsed.
fn ip_json(netns: &Netns, dev: &str, args: &[&str]) -> Result<serde_json::Value, LinkError> {
    let out = netns
        .run("ip", args, None)
        .map_err(|source| LinkError::Ip {
            netns: netns.clone(),
            dev: dev.into(),
            source,
        })?;
    serde_json::from_slice(&out.stdout).map_err(|source| LinkError::Parse {
        netns: netns.clone(),
        dev: dev.into(),
        source,
    })
}

fn ip(netns: &Netns, dev: &str, args: &[&str]) -> Result<(), LinkError> {
    run_tool(netns, dev, "ip", args)
}

fn run_tool(netns: &Netns, dev: &str, program: &str, args: &[&str]) -> Result<(), LinkError> {
    netns
        .run(program, args, None)
        .map(|_| ())
        .map_err(|source| LinkError::Ip {
            netns: netns.clone(),
            dev: dev.into(),
            source,
        })
}

/// The routing protocol number that marks the local routes this module adds, so reading them
/// back lists ours only (iproute2 leaves this number unnamed).
pub const ROUTE_PROTOCOL: u8 = 167;

/// How an interface holds a set of IPv4 addresses: a few as interface addresses, the rest as
/// local routes.
///
/// The kernel adds an interface address by walking the interface's whole address list, so
/// 100,000 addresses on one interface take minutes to add; a local route (`ip route add local
/// A/32 dev D table local`) goes into the routing trie instead, and the kernel answers ARP for
/// it, delivers packets to it and lets a socket bind to it exactly as for an address. So one
/// address per distinct network gives that network its prefix route and the interface a
/// source address, and every other address is a local route.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPlan {
    /// Interface addresses, with their prefix lengths.
    pub addresses: BTreeSet<(Ipv4Addr, u8)>,
    /// Addresses held as local /32 routes.
    pub local_routes: BTreeSet<Ipv4Addr>,
}

impl AddressPlan {
    /// The plan for `desired`: the lowest address of each distinct network shorter than /32
    /// is an interface address (when there is none, the lowest /32 is), every other one a
    /// local route.
    pub fn of(desired: &BTreeSet<(Ipv4Addr, u8)>) -> AddressPlan {
        let mut plan = AddressPlan::default();
        let mut networks = BTreeSet::new();
        // The set is ordered by address, so the first address seen of a network is its lowest.
        for &(ip, len) in desired {
            let len = len.min(32);
            let network = u32::from(ip) & u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            if len < 32 && networks.insert((network, len)) {
                plan.addresses.insert((ip, len));
            }
        }
        if plan.addresses.is_empty() {
            if let Some(&first) = desired.first() {
                plan.addresses.insert(first);
            }
        }
        for &(ip, len) in desired {
            if !plan.addresses.contains(&(ip, len)) {
                plan.local_routes.insert(ip);
            }
        }
        plan
    }

    /// Every address the plan makes the interface answer for.
    pub fn answers_for(&self) -> BTreeSet<Ipv4Addr> {
        self.addresses
            .iter()
            .map(|(ip, _)| *ip)
            .chain(self.local_routes.iter().copied())
            .collect()
    }
}

/// The local routes on `dev` marked with [`ROUTE_PROTOCOL`].
///
/// # Errors
/// [`LinkError`] when `ip` fails or prints something unexpected.
pub fn local_routes(netns: &Netns, dev: &str) -> Result<BTreeSet<Ipv4Addr>, LinkError> {
    let protocol = ROUTE_PROTOCOL.to_string();
    let v = ip_json(
        netns,
        dev,
        &[
            "-j", "-4", "route", "show", "table", "local", "type", "local", "proto", &protocol,
            "dev", dev,
        ],
    )?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("dst").and_then(|d| d.as_str()))
        .filter_map(|d| d.trim_end_matches("/32").parse().ok())
        .collect())
}

/// Makes `dev` up and answering for exactly `desired` (IPv4), held as [`AddressPlan::of`]
/// says, and announces every address it did not answer for before ([`announce`]). Returns
/// whether anything changed.
///
/// # Errors
/// [`LinkError`] from the first `ip` command that fails.
pub fn sync_addresses(
    netns: &Netns,
    dev: &str,
    desired: &BTreeSet<(Ipv4Addr, u8)>,
) -> Result<bool, LinkError> {
    use std::fmt::Write as _;
    let want = AddressPlan::of(desired);
    let have = AddressPlan {
        addresses: addresses(netns, dev)?,
        local_routes: local_routes(netns, dev)?,
    };
    if want == have {
        // Up, in case something took it down.
        ip(netns, dev, &["link", "set", "dev", dev, "up"])?;
        return Ok(false);
    }
    let protocol = ROUTE_PROTOCOL;
    if have.addresses.difference(&want.addresses).next().is_some() {
        // An address about to leave may be the primary of a network that just got its next
        // address (added first, below, as its secondary): keep that one when it goes.
        // Slashes, not dots: an interface name may hold a dot (a VLAN interface).
        let promote = format!("net/ipv4/conf/{dev}/promote_secondaries=1");
        run_tool(netns, dev, "sysctl", &["-q", "-w", &promote])?;
    }
    // One `ip -batch` process for every change: a router may hold 100,000 public IPs. The new
    // addresses go first and the old ones after, so the interface never loses its last
    // address on the way (the kernel then drops every route through it, ours too).
    let mut batch = format!("link set dev {dev} up\n");
    for (a, l) in want.addresses.difference(&have.addresses) {
        let _ = writeln!(batch, "addr replace {a}/{l} dev {dev}");
    }
    for a in have.local_routes.difference(&want.local_routes) {
        let _ = writeln!(
            batch,
            "route del local {a}/32 dev {dev} table local proto {protocol}"
        );
    }
    for (a, l) in have.addresses.difference(&want.addresses) {
        let _ = writeln!(batch, "addr del {a}/{l} dev {dev}");
    }
    for a in want.local_routes.difference(&have.local_routes) {
        let _ = writeln!(
            batch,
            "route replace local {a}/32 dev {dev} table local proto {protocol}"
        );
    }
    netns
        .run("ip", &["-batch", "-"], Some(batch.as_bytes()))
        .map_err(|source| LinkError::Ip {
            netns: netns.clone(),
            dev: dev.into(),
            source,
        })?;
    let before = have.answers_for();
    let added: Vec<Ipv4Addr> = want.answers_for().difference(&before).copied().collect();
    announce(netns, dev, &added);
    Ok(true)
}

/// The bytes of a gratuitous ARP for `ip` from `mac`: an Ethernet broadcast carrying an ARP
/// request whose sender and target address are both `ip` (as `arping -U` sends it), so every
/// neighbour with an entry for `ip` replaces its hardware address with `mac`.
pub fn gratuitous_arp(mac: [u8; 6], ip: Ipv4Addr) -> [u8; 42] {
    const BROADCAST: [u8; 6] = [0xff; 6];
    let mut f = [0u8; 42];
    f[0..6].copy_from_slice(&BROADCAST);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&0x0806u16.to_be_bytes()); // ARP
    f[14..16].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    f[16..18].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    f[18] = 6;
    f[19] = 4;
    f[20..22].copy_from_slice(&1u16.to_be_bytes()); // request
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&ip.octets());
    f[32..38].copy_from_slice(&BROADCAST);
    f[38..42].copy_from_slice(&ip.octets());
    f
}

/// Why an announcement could not be sent.
#[derive(Debug, thiserror::Error)]
#[error("cannot announce addresses on {dev} in {netns}: {what}")]
pub struct AnnounceError {
    /// Where.
    pub netns: Netns,
    /// Which interface.
    pub dev: String,
    /// The step that failed.
    pub what: &'static str,
    /// The system's error.
    #[source]
    pub source: std::io::Error,
}

/// Announces `ips`, just added to `dev`, with one gratuitous ARP each ([`gratuitous_arp`]), so
/// neighbours holding a stale entry for one of them (another host had it) update it at once.
/// The frames go out of one packet socket opened inside the namespace, from a thread of their
/// own: nothing waits for them, and no process is started (one `sendto` per address). A failure is logged: neighbours then learn the address at their next ARP request.
pub fn announce(netns: &Netns, dev: &str, ips: &[Ipv4Addr]) {
    if ips.is_empty() {
        return;
    }
    let (netns, dev, ips) = (netns.clone(), dev.to_string(), ips.to_vec());
    let spawned = std::thread::Builder::new()
        .name("announce".into())
        .spawn(move || {
            if let Err(e) = send_announcements(&netns, &dev, &ips) {
                tracing::warn!(error = %e, source = %e.source, "gratuitous ARP not sent");
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the gratuitous ARP sender");
    }
}

/// Enters the namespace (this thread only), then sends one frame per address.
fn send_announcements(netns: &Netns, dev: &str, ips: &[Ipv4Addr]) -> Result<(), AnnounceError> {
    let fail = |what, source| AnnounceError {
        netns: netns.clone(),
        dev: dev.to_string(),
        what,
        source,
    };
    netns
        .enter_this_thread()
        .map_err(|e| fail("enter the namespace", e))?;
    // The interface's own link-layer address names it to the packet socket (its index) and
    // gives the frames' sender; the frames carry their whole header, so the kernel reads their
    // destination and protocol from them.
    let link = link_address(dev).map_err(|e| fail("find the interface", e))?;
    let mac = link.addr().ok_or_else(|| {
        fail(
            "read its hardware address",
            std::io::ErrorKind::NotFound.into(),
        )
    })?;
    let fd = socket(
        AddressFamily::Packet,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| fail("open a packet socket", e.into()))?;
    for ip in ips {
        let frame = gratuitous_arp(mac, *ip);
        sendto(fd.as_raw_fd(), &frame, &link, MsgFlags::empty())
            .map_err(|e| fail("send", e.into()))?;
    }
    Ok(())
}

/// The link-layer address of `dev` in this thread's namespace.
fn link_address(dev: &str) -> Result<LinkAddr, std::io::Error> {
    nix::ifaddrs::getifaddrs()?
        .filter(|a| a.interface_name == dev)
        .find_map(|a| a.address.as_ref().and_then(|s| s.as_link_addr()).copied())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such interface with a link-layer address",
            )
        })
}

/// Sets (or removes, with `None`) the default route through `dev`.
///
/// # Errors
/// [`LinkError`] when `ip` fails.
pub fn sync_default_route(
    netns: &Netns,
    dev: &str,
    gateway: Option<Ipv4Addr>,
) -> Result<(), LinkError> {
    match gateway {
        Some(gw) => ip(
            netns,
            dev,
            &[
                "route",
                "replace",
                "default",
                "via",
                &gw.to_string(),
                "dev",
                dev,
            ],
        ),
        None => {
            // Absent already is fine.
            let _ = netns.run("ip", &["route", "del", "default", "dev", dev], None);
            Ok(())
        }
    }
}

/// Enables IPv4 forwarding in the namespace.
///
/// # Errors
/// [`LinkError`] when sysctl fails.
pub fn enable_forwarding(netns: &Netns) -> Result<(), LinkError> {
    run_tool(
        netns,
        "all",
        "sysctl",
        &["-q", "-w", "net.ipv4.ip_forward=1"],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("an address")
    }

    #[test]
    fn each_network_gets_one_address_and_every_other_ip_a_local_route() {
        let desired = BTreeSet::from([
            (ip("203.0.113.11"), 24),
            (ip("203.0.113.10"), 24),
            (ip("203.0.113.200"), 24),
            (ip("198.51.100.9"), 25),
            (ip("198.51.100.200"), 25),
            (ip("100.64.0.1"), 32),
            (ip("100.64.0.2"), 32),
        ]);
        let plan = AddressPlan::of(&desired);
        assert_eq!(
            plan.addresses,
            BTreeSet::from([
                (ip("203.0.113.10"), 24),
                (ip("198.51.100.9"), 25),
                (ip("198.51.100.200"), 25),
            ])
        );
        assert_eq!(
            plan.local_routes,
            BTreeSet::from([
                ip("203.0.113.11"),
                ip("203.0.113.200"),
                ip("100.64.0.1"),
                ip("100.64.0.2")
            ])
        );
        let all: BTreeSet<Ipv4Addr> = desired.iter().map(|(a, _)| *a).collect();
        assert_eq!(plan.answers_for(), all);
    }

    #[test]
    fn an_interface_of_only_host_addresses_keeps_its_lowest_as_its_address() {
        let desired = BTreeSet::from([(ip("100.64.0.2"), 32), (ip("100.64.0.1"), 32)]);
        let plan = AddressPlan::of(&desired);
        assert_eq!(plan.addresses, BTreeSet::from([(ip("100.64.0.1"), 32)]));
        assert_eq!(plan.local_routes, BTreeSet::from([ip("100.64.0.2")]));
        assert_eq!(AddressPlan::of(&BTreeSet::new()), AddressPlan::default());
    }

    #[test]
    fn a_gratuitous_arp_is_a_broadcast_request_for_the_address_itself() {
        let mac = [0x02, 0, 0, 0, 0, 0x0a];
        let f = gratuitous_arp(mac, Ipv4Addr::new(203, 0, 113, 20));
        let expected: [u8; 42] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // to everyone
            0x02, 0, 0, 0, 0, 0x0a, // from the interface
            0x08, 0x06, // ARP
            0, 1, 0x08, 0, 6, 4, // Ethernet, IPv4, their lengths
            0, 1, // request
            0x02, 0, 0, 0, 0, 0x0a, 203, 0, 113, 20, // sender: the interface, the address
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 203, 0, 113, 20, // target: the address again
        ];
        assert_eq!(f, expected);
    }
}
