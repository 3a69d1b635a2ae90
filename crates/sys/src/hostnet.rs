//! Links in this process's own network namespace: the bridges, VLAN interfaces and veths a host
//! agent makes beside the host's own interfaces.
//!
//! Everything else in `sys` names the namespace it works in; these functions work where the
//! process runs (the host, or a namespace the process was started in). Each one changes only
//! the link it names: no address, route or sysctl of the namespace is touched. The links made
//! here get no IPv6 link-local address (`addrgenmode none`): they carry guests' and routers'
//! traffic, not the host's.

use crate::cmd::{self, CommandError};

/// A link operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum HostnetError {
    /// An `ip` command about a link failed.
    #[error("cannot {action} link {link}")]
    Ip {
        /// What was being done (`create`, `delete`, `attach`, `show`, …).
        action: &'static str,
        /// The link.
        link: String,
        /// The failed command.
        #[source]
        source: CommandError,
    },
    /// `ip -j` printed something that is not the expected JSON.
    #[error("cannot read what `ip` says about {link}")]
    Parse {
        /// The link (or bridge) asked about.
        link: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// What a link is, as far as the host agent cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// Its name.
    pub name: String,
    /// Its kind (`bridge`, `vlan`, `veth`, `dummy`, …); `None` for a physical NIC.
    pub kind: Option<String>,
    /// The bridge it is a port of, if any.
    pub master: Option<String>,
    /// Whether it is administratively up.
    pub up: bool,
}

fn ip(action: &'static str, link: &str, args: &[&str]) -> Result<(), HostnetError> {
    cmd::run("ip", args, None)
        .map(drop)
        .map_err(|source| HostnetError::Ip {
            action,
            link: link.to_string(),
            source,
        })
}

fn parse_links(link: &str, stdout: &[u8]) -> Result<Vec<LinkInfo>, HostnetError> {
    let v: serde_json::Value =
        serde_json::from_slice(stdout).map_err(|source| HostnetError::Parse {
            link: link.to_string(),
            source,
        })?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| {
            let name = l.get("ifname")?.as_str()?.to_string();
            let kind = l
                .get("linkinfo")
                .and_then(|i| i.get("info_kind"))
                .and_then(|k| k.as_str())
                .map(str::to_string);
            let master = l.get("master").and_then(|m| m.as_str()).map(str::to_string);
            let up = l
                .get("flags")
                .and_then(|f| f.as_array())
                .is_some_and(|f| f.iter().any(|x| x.as_str() == Some("UP")));
            Some(LinkInfo {
                name,
                kind,
                master,
                up,
            })
        })
        .collect())
}

/// What `link` is, or `None` when there is no such link.
///
/// # Errors
/// [`HostnetError::Parse`] when `ip` prints something unexpected.
pub fn info(link: &str) -> Result<Option<LinkInfo>, HostnetError> {
    // `ip link show` fails for a missing link; that is the answer, not an error.
    let Ok(out) = cmd::run("ip", &["-j", "-d", "link", "show", "dev", link], None) else {
        return Ok(None);
    };
    Ok(parse_links(link, &out.stdout)?.into_iter().next())
}

/// Whether `link` exists.
pub fn exists(link: &str) -> bool {
    matches!(info(link), Ok(Some(_)))
}

/// The ports of `bridge` (the links whose master it is).
///
/// # Errors
/// [`HostnetError`] when `ip` fails or prints something unexpected.
pub fn ports(bridge: &str) -> Result<Vec<String>, HostnetError> {
    let out =
        cmd::run("ip", &["-j", "link", "show", "master", bridge], None).map_err(|source| {
            HostnetError::Ip {
                action: "list the ports of",
                link: bridge.to_string(),
                source,
            }
        })?;
    Ok(parse_links(bridge, &out.stdout)?
        .into_iter()
        .map(|l| l.name)
        .collect())
}

/// Creates VLAN interface `link` for VLAN `id` on `trunk`, without IPv6 link-local address,
/// and brings it up.
///
/// # Errors
/// [`HostnetError::Ip`] when `ip` refuses (no trunk, no VLAN support, the name or the VLAN on
/// that trunk taken).
pub fn add_vlan(trunk: &str, link: &str, id: u16) -> Result<(), HostnetError> {
    let id = id.to_string();
    ip(
        "create",
        link,
        &[
            "link", "add", "link", trunk, "name", link, "type", "vlan", "id", &id,
        ],
    )?;
    quiet_up(link)
}

/// Creates bridge `link`, without IPv6 link-local address, and brings it up.
///
/// # Errors
/// [`HostnetError::Ip`] when `ip` refuses.
pub fn add_bridge(link: &str) -> Result<(), HostnetError> {
    ip("create", link, &["link", "add", link, "type", "bridge"])?;
    quiet_up(link)
}

/// Creates a veth pair: `link` here (no IPv6 link-local address, up) and `peer` inside the
/// named namespace `netns` (down).
///
/// # Errors
/// [`HostnetError::Ip`] when `ip` refuses.
pub fn add_veth_into(link: &str, netns: &str, peer: &str) -> Result<(), HostnetError> {
    ip(
        "create",
        link,
        &[
            "link", "add", link, "type", "veth", "peer", "name", peer, "netns", netns,
        ],
    )?;
    quiet_up(link)
}

/// Turns off IPv6 address generation on `link` and brings it up.
fn quiet_up(link: &str) -> Result<(), HostnetError> {
    ip(
        "configure",
        link,
        &["link", "set", "dev", link, "addrgenmode", "none"],
    )?;
    set_up(link)
}

/// Brings `link` up.
///
/// # Errors
/// [`HostnetError::Ip`] when `ip` refuses.
pub fn set_up(link: &str) -> Result<(), HostnetError> {
    ip("bring up", link, &["link", "set", "dev", link, "up"])
}

/// Makes `link` a port of `bridge` and brings it up.
///
/// # Errors
/// [`HostnetError::Ip`] when `ip` refuses.
pub fn attach(link: &str, bridge: &str) -> Result<(), HostnetError> {
    ip(
        "attach",
        link,
        &["link", "set", "dev", link, "master", bridge, "up"],
    )
}

/// Deletes `link` (a veth takes its peer with it); one that does not exist is fine.
///
/// # Errors
/// [`HostnetError::Ip`] when `ip` refuses and the link is still there.
pub fn delete(link: &str) -> Result<(), HostnetError> {
    match ip("delete", link, &["link", "delete", "dev", link]) {
        Err(_) if !exists(link) => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn links_are_read_from_ip_json() {
        let json = br#"[
            {"ifindex":5,"ifname":"brtrunk0-100","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],
             "linkinfo":{"info_kind":"bridge"}},
            {"ifindex":6,"ifname":"trunk0.100","flags":["BROADCAST"],"master":"brtrunk0-100",
             "linkinfo":{"info_kind":"vlan","info_data":{"id":100}}},
            {"ifindex":2,"ifname":"eth0","flags":["UP"]}
        ]"#;
        let links = parse_links("x", json).unwrap();
        assert_eq!(
            links,
            vec![
                LinkInfo {
                    name: "brtrunk0-100".into(),
                    kind: Some("bridge".into()),
                    master: None,
                    up: true
                },
                LinkInfo {
                    name: "trunk0.100".into(),
                    kind: Some("vlan".into()),
                    master: Some("brtrunk0-100".into()),
                    up: false
                },
                LinkInfo {
                    name: "eth0".into(),
                    kind: None,
                    master: None,
                    up: true
                },
            ]
        );
        assert!(parse_links("x", b"not json").is_err());
    }
}
