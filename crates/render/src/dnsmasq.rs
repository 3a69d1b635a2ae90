//! RouterConfig → the three files of the router's dnsmasq, which serves the guests DHCP (static
//! leases only) and DNS on the router's guest address.
//!
//! - [`render_config`]: `dnsmasq.conf`, what needs a restart to change: where dnsmasq listens
//!   (the router's guest address only, `bind-interfaces`), the guest network's static DHCP range,
//!   the router as the guests' gateway and DNS server, the domain, the upstream DNS servers
//!   (`no-resolv`: never the host's `resolv.conf`; `no-hosts`: never `/etc/hosts`), and where
//!   its lease, pid and log files are (the router's state directory, nothing elsewhere).
//! - [`render_dhcp_hosts`]: the `dhcp-hostsfile`, one `MAC,IP,hostname` line per lease.
//! - [`render_dns_hosts`]: the `addn-hosts` file, one `IP hostname.domain hostname` line per
//!   lease.
//!
//! dnsmasq re-reads both hosts files on SIGHUP, so a lease added, changed or removed needs no
//! restart and drops no other guest's lease. The same config always renders to the same bytes,
//! whatever the order of its leases (validation sorts them by MAC).

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use router_config::{Dhcp, ValidConfig};

/// How long a lease lasts before the guest renews it.
pub const LEASE_TIME: &str = "1h";

/// Where dnsmasq's files are; every path lives in the router's state directory.
///
/// # Assumptions
/// No line break in any path (each is one line of the configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// The `dhcp-hostsfile` ([`render_dhcp_hosts`]).
    pub dhcp_hosts: PathBuf,
    /// The `addn-hosts` file ([`render_dns_hosts`]).
    pub dns_hosts: PathBuf,
    /// The lease database dnsmasq keeps.
    pub leases: PathBuf,
    /// The pid file dnsmasq writes.
    pub pid: PathBuf,
    /// Its log.
    pub log: PathBuf,
}

/// The three files of one router's dnsmasq.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsmasqFiles {
    /// `dnsmasq.conf`.
    pub config: String,
    /// The DHCP hosts file.
    pub dhcp_hosts: String,
    /// The DNS hosts file.
    pub dns_hosts: String,
}

/// Renders every file, or `None` when the config serves no DHCP.
pub fn render(cfg: &ValidConfig, paths: &Paths) -> Option<DnsmasqFiles> {
    let dhcp = cfg.dhcp.as_ref()?;
    Some(DnsmasqFiles {
        config: render_config(cfg, dhcp, paths),
        dhcp_hosts: render_dhcp_hosts(dhcp),
        dns_hosts: render_dns_hosts(dhcp),
    })
}

/// The netmask of a prefix length.
fn netmask(prefix_len: u8) -> Ipv4Addr {
    let bits = u32::MAX
        .checked_shl(32 - u32::from(prefix_len))
        .unwrap_or(0);
    Ipv4Addr::from(bits)
}

/// `dnsmasq.conf`: everything but the leases.
pub fn render_config(cfg: &ValidConfig, dhcp: &Dhcp, paths: &Paths) -> String {
    let gw = cfg.guest_gateway;
    let net = cfg.guest_cidr;
    let mut out = String::new();
    out.push_str(
        "# Rendered by guestnet from the router's config; changes here are overwritten.\n",
    );
    // Sources of names and servers: only what is written here.
    out.push_str("no-resolv\nno-hosts\n");
    // DNS: only on the router's guest address.
    let _ = writeln!(out, "listen-address={gw}");
    out.push_str("bind-interfaces\n");
    // Plain names and private reverse lookups never leave the router.
    out.push_str("domain-needed\nbogus-priv\n");
    for server in &dhcp.dns_servers {
        let _ = writeln!(out, "server={server}");
    }
    if let Some(domain) = &dhcp.domain {
        let _ = writeln!(out, "domain={domain}");
        // Names of the guests' domain are answered here, never forwarded.
        let _ = writeln!(out, "local=/{domain}/");
    }
    // DHCP: static leases only, on the guest network; the router is gateway and DNS server.
    let _ = writeln!(
        out,
        "dhcp-range={},static,{},{LEASE_TIME}",
        net.network(),
        netmask(net.prefix_len())
    );
    out.push_str("dhcp-authoritative\n");
    let _ = writeln!(out, "dhcp-option=option:router,{gw}");
    let _ = writeln!(out, "dhcp-option=option:dns-server,{gw}");
    let _ = writeln!(out, "dhcp-hostsfile={}", paths.dhcp_hosts.display());
    let _ = writeln!(out, "addn-hosts={}", paths.dns_hosts.display());
    let _ = writeln!(out, "dhcp-leasefile={}", paths.leases.display());
    let _ = writeln!(out, "pid-file={}", paths.pid.display());
    let _ = writeln!(out, "log-facility={}", paths.log.display());
    // Only dnsmasq's own warnings: a line per DHCP exchange would grow the log without end.
    out.push_str("quiet-dhcp\n");
    // The hosts files are re-read on SIGHUP from the router's private state directory, which
    // only root may read.
    out.push_str("user=root\n");
    out
}

/// The DHCP hosts file: `MAC,IP,hostname` per lease, sorted by MAC.
pub fn render_dhcp_hosts(dhcp: &Dhcp) -> String {
    let mut out = String::new();
    for l in &dhcp.leases {
        let _ = writeln!(out, "{},{},{}", l.mac, l.ip, l.hostname);
    }
    out
}

/// The DNS hosts file: `IP hostname.domain hostname` per lease (only `IP hostname` without a
/// domain), sorted by MAC.
pub fn render_dns_hosts(dhcp: &Dhcp) -> String {
    let mut out = String::new();
    for l in &dhcp.leases {
        match &dhcp.domain {
            Some(d) => {
                let _ = writeln!(out, "{} {}.{d} {}", l.ip, l.hostname, l.hostname);
            }
            None => {
                let _ = writeln!(out, "{} {}", l.ip, l.hostname);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netmasks() {
        assert_eq!(netmask(24), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(netmask(32), Ipv4Addr::new(255, 255, 255, 255));
        assert_eq!(netmask(0), Ipv4Addr::new(0, 0, 0, 0));
        assert_eq!(netmask(20), Ipv4Addr::new(255, 255, 240, 0));
    }
}
