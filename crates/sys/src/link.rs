//! Interface addresses and routes of a router, made to match what its config says.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

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
    if !added.is_empty() {
        if let Err(e) = announce(netns, dev, &added) {
            // Neighbours learn the address at their next ARP request instead.
            tracing::warn!(%netns, dev, error = %e, "cannot announce new addresses");
        }
    }
    Ok(current != *desired)
}

/// How many gratuitous ARP senders run at once.
const ANNOUNCERS: &str = "32";

/// Announces `ips`, just added to `dev`, with one gratuitous ARP each (`arping -U -c 1`, from
/// iputils-arping), so neighbours holding a stale entry for one of them (another host had it)
/// update it at once. Runs in the background: `arping` waits a second after its one packet, and
/// nothing needs to wait for it; a thread reaps it.
///
/// # Errors
/// [`LinkError::Ip`] when the senders cannot be started.
pub fn announce(netns: &Netns, dev: &str, ips: &[Ipv4Addr]) -> Result<(), LinkError> {
    use std::io::Write as _;
    let args = [
        "-P", ANNOUNCERS, "-n", "1", "arping", "-q", "-U", "-c", "1", "-I", dev,
    ];
    let mut program = match netns {
        Netns::Named(n) => crate::netns::command_in(n, "xargs", args),
        Netns::Host => {
            let mut p = crate::cmd::Program::new("xargs");
            p.args(args);
            p
        }
    };
    program
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = program.spawn().map_err(|source| LinkError::Ip {
        netns: netns.clone(),
        dev: dev.into(),
        source,
    })?;
    let list: String = ips.iter().map(|ip| format!("{ip}\n")).collect();
    let stdin = child.take_stdin();
    // The list is written from the thread too: xargs reads it only as fast as its senders end
    // (32 a second), so a long list fills the pipe, and writing it here would hold the apply
    // for minutes (10,000 new addresses: about 170 s).
    std::thread::spawn(move || {
        if let Some(mut stdin) = stdin {
            // A failed write only means fewer announcements; the child is reaped either way.
            let _ = stdin.write_all(list.as_bytes());
        }
        let _ = child.wait();
    });
    Ok(())
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
