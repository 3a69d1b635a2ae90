//! Guest and public addressing: parsing addresses and netmasks, the CIDR arithmetic ipnet does
//! not provide, picking a guest network, and choosing a VM's address.
//!
//! Everything here decides from its inputs; the rows it decides about are read by the store.

use std::net::Ipv4Addr;

use api_types::error::ApiError;
use ipnet::Ipv4Net;

/// An IPv4 address given as parameter `name`.
///
/// # Errors
/// 431 naming the parameter.
pub fn parse_ip(name: &str, s: &str) -> Result<Ipv4Addr, ApiError> {
    s.trim().parse().map_err(|_| {
        ApiError::invalid_parameter(format!("Invalid {name} {s}: not an IPv4 address"))
    })
}

/// A netmask's prefix length; the mask's bits must be contiguous.
///
/// # Errors
/// 431 for a text that is no address, or a mask whose one bits are not contiguous.
pub fn netmask_prefix(s: &str) -> Result<u8, ApiError> {
    let mask = parse_ip("netmask", s)?;
    ipnet::ipv4_mask_to_prefix(mask).map_err(|_| {
        ApiError::invalid_parameter(format!(
            "Invalid netmask {s}: its one bits must be contiguous"
        ))
    })
}

/// Whether `ip` is a host address of `net`: inside it, and neither its network nor its
/// broadcast address (a /31 or /32 has no such addresses to avoid).
pub fn is_host(ip: Ipv4Addr, net: Ipv4Net) -> bool {
    net.contains(&ip) && (net.prefix_len() >= 31 || (ip != net.network() && ip != net.broadcast()))
}

/// Whether two networks share an address: one of them holds the other.
pub fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(b) || b.contains(a)
}

/// Whether `net` shares an address with the range `start`–`end`.
pub fn meets_range(net: &Ipv4Net, start: Ipv4Addr, end: Ipv4Addr) -> bool {
    net.network() <= end && start <= net.broadcast()
}

/// Whether the whole of `net` lies in the private space of RFC 1918 (10/8, 172.16/12,
/// 192.168/16). A CIDR's first and last addresses are in one of those blocks only if all of
/// it is, since each block is itself aligned.
pub fn is_private(net: &Ipv4Net) -> bool {
    net.network().is_private() && net.broadcast().is_private()
}

/// A guest network from the `gateway` and `netmask` parameters: an RFC 1918 network of /8 to
/// /30 of which the gateway is a host address.
///
/// # Errors
/// 431 naming what is wrong.
pub fn guest_network(gateway: &str, netmask: &str) -> Result<(Ipv4Net, Ipv4Addr), ApiError> {
    let gw = parse_ip("gateway", gateway)?;
    let prefix = netmask_prefix(netmask)?;
    if !(8..=30).contains(&prefix) {
        return Err(ApiError::invalid_parameter(format!(
            "Invalid netmask {netmask}: a guest network is a /8 to a /30"
        )));
    }
    let cidr = segment(gw, prefix);
    if !is_host(gw, cidr) {
        return Err(ApiError::invalid_parameter(format!(
            "Invalid gateway {gateway}: not a host address of {cidr}"
        )));
    }
    if !is_private(&cidr) {
        return Err(ApiError::invalid_parameter(format!(
            "Invalid guest network {cidr}: it must be inside 10.0.0.0/8, 172.16.0.0/12 \
             or 192.168.0.0/16"
        )));
    }
    Ok((cidr, gw))
}

/// The network of prefix `prefix` (at most 32, as [`netmask_prefix`] gives) holding `ip`.
pub fn segment(ip: Ipv4Addr, prefix: u8) -> Ipv4Net {
    Ipv4Net::new(ip, prefix.min(32))
        .unwrap_or_else(|_| Ipv4Net::from(ip))
        .trunc()
}

/// The lowest /24 of 10.1.0.0/16 that meets none of `networks` and none of the public
/// `ranges`, with its first host as gateway.
pub fn pick_cidr(
    networks: &[Ipv4Net],
    ranges: &[(Ipv4Addr, Ipv4Addr)],
) -> Option<(Ipv4Net, Ipv4Addr)> {
    (0..=255u8).find_map(|third| {
        let cidr = segment(Ipv4Addr::new(10, 1, third, 0), 24);
        let free = !networks.iter().any(|n| overlaps(n, &cidr))
            && !ranges.iter().any(|(s, e)| meets_range(&cidr, *s, *e));
        free.then_some((cidr, Ipv4Addr::new(10, 1, third, 1)))
    })
}

/// The lowest host address of `cidr` that is neither the gateway nor in `used`.
pub fn lowest_free(cidr: Ipv4Net, gateway: Ipv4Addr, used: &[Ipv4Addr]) -> Option<Ipv4Addr> {
    cidr.hosts()
        .find(|ip| *ip != gateway && !used.contains(ip) && is_host(*ip, cidr))
}

#[cfg(test)]
mod tests;
