//! What a management server asks of an agent, and what the agent answers.
//!
//! In process these are plain values; between processes each message is one JSON text frame of
//! the WebSocket the agent opens to a server (`GET /agent/v1`, the agent's token as a bearer
//! credential). The server speaks first ([`ServerMsg::Welcome`]), then sends requests, each with
//! an id the agent's reply carries back; requests run concurrently on the agent, in order per
//! router. Either side drops a connection on which it has heard nothing for
//! [`SILENCE_LIMIT`]; the server pings every [`PING_EVERY`].

use std::net::Ipv4Addr;
use std::time::Duration;

use ipnet::Ipv4Net;
use router_config::{Generation, RouterConfig, RouterDelta};
use serde::{Deserialize, Serialize};

/// The path of the agents' WebSocket on a management server.
pub const AGENT_PATH: &str = "/agent/v1";

/// The header in which an agent names its driver (`lab`, `dry-run`) when it connects.
pub const DRIVER_HEADER: &str = "x-guestnet-driver";

/// How often the server pings a connected agent.
pub const PING_EVERY: Duration = Duration::from_secs(1);

/// How long either side waits without hearing anything before it drops the connection.
pub const SILENCE_LIMIT: Duration = Duration::from_secs(3);

/// One thing a server asks of the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Make sure a network's router exists and is wired to its guest network.
    EnsureRouter {
        /// The router's name.
        router: String,
        /// The guest network.
        cidr: Ipv4Net,
        /// The guest gateway (the router's guest address).
        gateway: Ipv4Addr,
        /// The network's VLAN on the host's guest trunk (the host driver plugs the router into
        /// that VLAN's bridge); absent from a server that allocates none, which the host driver
        /// refuses and the lab ignores (it makes a bridge of its own per network).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        vlan: Option<u16>,
    },
    /// Make a network's router again from nothing (restartNetwork with clean-up): whatever it
    /// held goes (its namespace, processes, kernel state and the config it recorded), an
    /// empty router is made in its place, wired as [`Op::EnsureRouter`] wires it; the
    /// network's VMs stay. The next config it gets is applied to the empty router.
    RebuildRouter {
        /// The router's name.
        router: String,
        /// The guest network.
        cidr: Ipv4Net,
        /// The guest gateway.
        gateway: Ipv4Addr,
        /// The network's VLAN on the host's guest trunk (see [`Op::EnsureRouter`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        vlan: Option<u16>,
    },
    /// Stop a network's router (stopRouter): whatever it held goes (its namespace, processes,
    /// kernel state and the config it recorded), and nothing is made in its place; the
    /// network's guest bridge and VMs stay. [`Op::RebuildRouter`] starts it again.
    StopRouter {
        /// The router's name.
        router: String,
    },
    /// Remove a router and its namespace.
    RemoveRouter {
        /// The router's name.
        router: String,
    },
    /// Make sure a VM exists on a router's guest network.
    EnsureVm {
        /// Its network's router.
        router: String,
        /// The VM's key in the host's lab (unique: made from the VM's id).
        vm: String,
        /// Its guest address.
        ip: Ipv4Addr,
        /// How its owner names it (absent from a server that predates names per account).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        label: Option<lab::VmLabel>,
        /// Its NIC's MAC address (absent from a server that predates MACs).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mac: Option<router_config::MacAddr>,
        /// Its network's VLAN on the host's guest trunk (see [`Op::EnsureRouter`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        vlan: Option<u16>,
        /// What a VM driver that starts guests (libvirt) boots; absent when the server knows
        /// no bootable image for the VM's template.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        guest: Option<GuestSpec>,
    },
    /// Remove a VM.
    RemoveVm {
        /// The VM's key in the host's lab.
        vm: String,
    },
    /// Enforce a complete config.
    Apply {
        /// The router's name.
        router: String,
        /// The config; the router ignores one older than what it holds.
        config: Box<RouterConfig>,
    },
    /// Enforce the config a delta makes of the generation the router confirmed last; answered
    /// with [`Failure::Stale`] when the router holds another generation.
    ApplyDelta {
        /// The router's name.
        router: String,
        /// The change.
        delta: Box<RouterDelta>,
    },
    /// Which generation the router holds.
    Held {
        /// The router's name.
        router: String,
    },
    /// What the router holds and whether the kernel still enforces it.
    Status {
        /// The router's name.
        router: String,
    },
}

impl Op {
    /// The router (or VM) the request is about, for logs.
    pub fn subject(&self) -> &str {
        match self {
            Op::EnsureRouter { router, .. }
            | Op::RebuildRouter { router, .. }
            | Op::StopRouter { router }
            | Op::RemoveRouter { router }
            | Op::Apply { router, .. }
            | Op::ApplyDelta { router, .. }
            | Op::Held { router }
            | Op::Status { router } => router,
            Op::EnsureVm { vm, .. } | Op::RemoveVm { vm } => vm,
        }
    }

    /// The request's name, for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Op::EnsureRouter { .. } => "ensure_router",
            Op::RebuildRouter { .. } => "rebuild_router",
            Op::StopRouter { .. } => "stop_router",
            Op::RemoveRouter { .. } => "remove_router",
            Op::EnsureVm { .. } => "ensure_vm",
            Op::RemoveVm { .. } => "remove_vm",
            Op::Apply { .. } => "apply",
            Op::ApplyDelta { .. } => "apply_delta",
            Op::Held { .. } => "held",
            Op::Status { .. } => "status",
        }
    }
}

/// What a VM driver that starts guests boots, and with what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestSpec {
    /// Virtual CPUs (the service offering's `cpunumber`).
    pub cpus: u32,
    /// Memory in MiB (the service offering's `memory`).
    pub memory_mib: u32,
    /// What it boots (the template's files on the host).
    pub image: GuestImage,
}

/// A template's bootable files, as paths on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GuestImage {
    /// A disk image, booted by the guest's firmware; each VM boots a copy-on-write overlay.
    Disk {
        /// The image.
        path: std::path::PathBuf,
        /// `qcow2` or `raw`.
        format: String,
    },
    /// A kernel and an initial RAM disk, booted directly.
    Kernel {
        /// The kernel.
        kernel: std::path::PathBuf,
        /// The initial RAM disk, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        initrd: Option<std::path::PathBuf>,
        /// The kernel's command line.
        #[serde(default)]
        cmdline: String,
    },
}

/// What an apply came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", content = "generation", rename_all = "snake_case")]
pub enum Applied {
    /// The router now holds this generation.
    Generation(Generation),
    /// The router already holds this newer generation and kept it.
    Superseded(Generation),
}

/// What a router holds, as the agent reports it for `guestnet verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterStatus {
    /// The generation it holds, if any.
    pub generation: Option<Generation>,
    /// `None` when the kernel holds exactly what the router last committed; otherwise what was
    /// found instead (a flushed or edited table).
    pub drift: Option<String>,
    /// The config it enforces.
    pub config: Option<RouterConfig>,
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum Answer {
    /// Done (ensure and remove requests).
    Done,
    /// The outcome of an apply.
    Applied {
        /// What the router did.
        outcome: Applied,
    },
    /// The generation held.
    Held {
        /// `None`: nothing, or the router is not known here.
        generation: Option<Generation>,
    },
    /// The router's status.
    Status {
        /// The status.
        status: Box<RouterStatus>,
    },
}

/// Why a request did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "failure", content = "reason", rename_all = "snake_case")]
pub enum Failure {
    /// The router (or the host) refused: the same request would be refused again.
    #[error("{0}")]
    Refused(String),
    /// The router did not answer within the agent's apply timeout.
    #[error("{0}")]
    TimedOut(String),
    /// A delta's base is not what the router holds: send the complete config.
    #[error("{0}")]
    Stale(String),
}

/// A message from a server to an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// The first message: the connection is accepted for this host.
    Welcome {
        /// The host the token names.
        host: String,
        /// The server's name.
        server: String,
    },
    /// A request.
    Request {
        /// Its id on this connection.
        id: u64,
        /// What to do.
        op: Op,
    },
}

/// A message from an agent to a server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentMsg {
    /// The answer to a request.
    Reply {
        /// The request's id.
        id: u64,
        /// The answer.
        result: Result<Answer, Failure>,
    },
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn messages_survive_the_wire() {
        let msgs = [
            ServerMsg::Welcome {
                host: "h1".into(),
                server: "a".into(),
            },
            ServerMsg::Request {
                id: 7,
                op: Op::EnsureRouter {
                    router: "r-1-VM".into(),
                    cidr: "10.1.1.0/24".parse().unwrap(),
                    gateway: Ipv4Addr::new(10, 1, 1, 1),
                    vlan: Some(100),
                },
            },
        ];
        for m in msgs {
            let text = serde_json::to_string(&m).unwrap();
            assert_eq!(
                serde_json::from_str::<ServerMsg>(&text).unwrap(),
                m,
                "{text}"
            );
        }
        let replies = [
            AgentMsg::Reply {
                id: 1,
                result: Ok(Answer::Applied {
                    outcome: Applied::Superseded(9),
                }),
            },
            AgentMsg::Reply {
                id: 2,
                result: Err(Failure::TimedOut("router r-1-VM did not answer".into())),
            },
            AgentMsg::Reply {
                id: 3,
                result: Ok(Answer::Held { generation: None }),
            },
        ];
        for m in replies {
            let text = serde_json::to_string(&m).unwrap();
            assert_eq!(
                serde_json::from_str::<AgentMsg>(&text).unwrap(),
                m,
                "{text}"
            );
        }
    }
}
