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
    #[error("cannot read the addresses of {dev} in {netns}")]
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
    let out = netns
        .run("ip", &["-j", "-4", "addr", "show", "dev", dev], None)
        .map_err(|source| LinkError::Ip {
            netns: netns.clone(),
            dev: dev.into(),
            source,
        })?;
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|source| LinkError::Parse {
            netns: netns.clone(),
            dev: dev.into(),
            source,
        })?;
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

fn ip(netns: &Netns, dev: &str, args: &[&str]) -> Result<(), LinkError> {
    netns
        .run("ip", args, None)
        .map(|_| ())
        .map_err(|source| LinkError::Ip {
            netns: netns.clone(),
            dev: dev.into(),
            source,
        })
}

/// Makes `dev` up and holding exactly `desired` (IPv4), and announces every address it adds
/// ([`announce`]). Returns whether anything changed.
///
/// # Errors
/// [`LinkError`] from the first `ip` command that fails.
pub fn sync_addresses(
    netns: &Netns,
    dev: &str,
    desired: &BTreeSet<(Ipv4Addr, u8)>,
) -> Result<bool, LinkError> {
    use std::fmt::Write as _;
    let current = addresses(netns, dev)?;
    // One `ip -batch` process for every change: a router may hold thousands of public IPs.
    let mut batch = format!("link set dev {dev} up\n");
    for (a, l) in current.difference(desired) {
        let _ = writeln!(batch, "addr del {a}/{l} dev {dev}");
    }
    for (a, l) in desired.difference(&current) {
        let _ = writeln!(batch, "addr replace {a}/{l} dev {dev}");
    }
    netns
        .run("ip", &["-batch", "-"], Some(batch.as_bytes()))
        .map_err(|source| LinkError::Ip {
            netns: netns.clone(),
            dev: dev.into(),
            source,
        })?;
    let added: Vec<Ipv4Addr> = desired.difference(&current).map(|(a, _)| *a).collect();
    announce(netns, dev, &added);
    Ok(current != *desired)
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
    netns
        .run("sysctl", &["-q", "-w", "net.ipv4.ip_forward=1"], None)
        .map(|_| ())
        .map_err(|source| LinkError::Ip {
            netns: netns.clone(),
            dev: "all".into(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

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
