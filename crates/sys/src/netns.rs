//! Network namespaces, veth pairs, bridges and the processes inside a namespace.
//!
//! Every function names the namespace it works in; nothing here touches the caller's own
//! namespace except to list namespaces and their processes. Namespaces are the named ones under
//! `/run/netns` that `ip netns` manages.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::cmd::{self, CommandError, Program};
use crate::proc;

/// How often [`end_processes`] looks again whether the processes are gone.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// A namespace operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// A command working on a namespace failed.
    #[error("command for namespace {namespace} failed")]
    Command {
        /// The namespace.
        namespace: String,
        /// The failed command.
        #[source]
        source: CommandError,
    },
    /// The namespaces could not be listed.
    #[error("cannot list network namespaces")]
    List {
        /// The failed command.
        #[source]
        source: CommandError,
    },
    /// A process in the namespace could not be signalled.
    #[error("cannot send {signal} to process {pid} in namespace {namespace}")]
    Signal {
        /// The namespace.
        namespace: String,
        /// The process id.
        pid: i32,
        /// The signal.
        signal: Signal,
        /// Why.
        #[source]
        source: nix::errno::Errno,
    },
    /// Processes were still running in the namespace after SIGKILL and the deadline.
    #[error("processes {pids:?} in namespace {namespace} survived SIGKILL")]
    Survivors {
        /// The namespace.
        namespace: String,
        /// The processes still there.
        pids: Vec<i32>,
    },
}

/// The file that names namespace `name`, for `nsenter --net=…`.
pub fn path(name: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(name)
}

/// Whether the named namespace exists.
pub fn exists(name: &str) -> bool {
    path(name).exists()
}

fn ip(namespace: &str, args: &[&str]) -> Result<(), NetnsError> {
    cmd::run("ip", args, None)
        .map(drop)
        .map_err(|source| NetnsError::Command {
            namespace: namespace.to_string(),
            source,
        })
}

/// Lists the names of all named network namespaces.
///
/// # Errors
/// [`NetnsError::List`] if `ip netns list` fails.
pub fn list() -> Result<Vec<String>, NetnsError> {
    let out =
        cmd::run("ip", &["netns", "list"], None).map_err(|source| NetnsError::List { source })?;
    // Lines look like `name (id: 3)` or just `name`.
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect())
}

/// Creates namespace `name` and brings its loopback interface up.
///
/// # Errors
/// [`NetnsError::Command`] if it exists already or cannot be made.
pub fn add(name: &str) -> Result<(), NetnsError> {
    ip(name, &["netns", "add", name])?;
    set_up(name, "lo")
}

/// Deletes namespace `name`. The kernel frees it, with its interfaces, once no process is left
/// in it; see [`end_processes`].
///
/// # Errors
/// [`NetnsError::Command`] if `ip netns delete` fails (also when it does not exist).
pub fn delete(name: &str) -> Result<(), NetnsError> {
    ip(name, &["netns", "delete", name])
}

/// Creates a veth pair: `dev_a` inside `ns_a` and `dev_b` inside `ns_b`, both down.
///
/// # Errors
/// [`NetnsError::Command`] if `ip` refuses.
pub fn add_veth(ns_a: &str, dev_a: &str, ns_b: &str, dev_b: &str) -> Result<(), NetnsError> {
    ip(
        ns_a,
        &[
            "-n", ns_a, "link", "add", dev_a, "type", "veth", "peer", "name", dev_b, "netns", ns_b,
        ],
    )
}

/// Creates bridge `bridge` in `namespace` and brings it up.
///
/// # Errors
/// [`NetnsError::Command`] if `ip` refuses.
pub fn add_bridge(namespace: &str, bridge: &str) -> Result<(), NetnsError> {
    ip(
        namespace,
        &["-n", namespace, "link", "add", bridge, "type", "bridge"],
    )?;
    set_up(namespace, bridge)
}

/// Attaches `dev` to `bridge` (both in `namespace`) and brings `dev` up.
///
/// # Errors
/// [`NetnsError::Command`] if `ip` refuses.
pub fn attach(namespace: &str, dev: &str, bridge: &str) -> Result<(), NetnsError> {
    ip(
        namespace,
        &["-n", namespace, "link", "set", dev, "master", bridge, "up"],
    )
}

/// Brings `dev` in `namespace` up.
///
/// # Errors
/// [`NetnsError::Command`] if `ip` refuses.
pub fn set_up(namespace: &str, dev: &str) -> Result<(), NetnsError> {
    ip(namespace, &["-n", namespace, "link", "set", dev, "up"])
}

/// Adds address `cidr` (for example `10.1.1.11/24`) to `dev` in `namespace`.
///
/// # Errors
/// [`NetnsError::Command`] if `ip` refuses.
pub fn add_address(namespace: &str, dev: &str, cidr: &str) -> Result<(), NetnsError> {
    ip(
        namespace,
        &["-n", namespace, "address", "add", cidr, "dev", dev],
    )
}

/// Adds a default route via `gateway` in `namespace`.
///
/// # Errors
/// [`NetnsError::Command`] if `ip` refuses (for example when the gateway is not on a link).
pub fn add_default_route(namespace: &str, gateway: &str) -> Result<(), NetnsError> {
    ip(
        namespace,
        &["-n", namespace, "route", "add", "default", "via", gateway],
    )
}

/// Sets sysctl `key` (for example `net.ipv4.ip_forward`) to `value` inside `namespace`.
///
/// # Errors
/// [`NetnsError::Command`] if `sysctl` fails.
pub fn set_sysctl(namespace: &str, key: &str, value: &str) -> Result<(), NetnsError> {
    let net = format!("--net={}", path(namespace).display());
    let setting = format!("{key}={value}");
    cmd::run(
        "nsenter",
        &[&net, "--", "sysctl", "-q", "-w", &setting],
        None,
    )
    .map(drop)
    .map_err(|source| NetnsError::Command {
        namespace: namespace.to_string(),
        source,
    })
}

/// A program that runs `program args…` inside `namespace` (through `nsenter --net=…`), with
/// everything else (stdio, environment, working directory) inherited unless the caller changes it.
pub fn command_in<I, S>(namespace: &str, program: impl AsRef<OsStr>, args: I) -> Program
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut p = Program::in_netns(namespace, program);
    p.args(args);
    p
}

/// The processes whose network namespace is `namespace` (zombies excluded).
///
/// # Errors
/// [`NetnsError::Command`] if `ip netns pids` fails.
pub fn pids(namespace: &str) -> Result<Vec<i32>, NetnsError> {
    let out = cmd::run("ip", &["netns", "pids", namespace], None).map_err(|source| {
        NetnsError::Command {
            namespace: namespace.to_string(),
            source,
        }
    })?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect())
}

/// Sends `signal` to process `pid` of `namespace`; one that is gone already is fine.
fn send(namespace: &str, pid: i32, signal: Signal) -> Result<(), NetnsError> {
    match kill(Pid::from_raw(pid), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(source) => Err(NetnsError::Signal {
            namespace: namespace.to_string(),
            pid,
            signal,
            source,
        }),
    }
}

/// Ends every process in `namespace`: SIGTERM, then, for those still there after `grace`,
/// SIGKILL. Returns the processes that were running.
///
/// # Errors
/// [`NetnsError::Survivors`] if processes remain after SIGKILL and another `grace`; a process
/// that disappears between listing and signalling is not an error.
pub fn end_processes(namespace: &str, grace: Duration) -> Result<Vec<i32>, NetnsError> {
    let found = pids(namespace)?;
    if found.is_empty() {
        return Ok(found);
    }
    for signal in [Signal::SIGTERM, Signal::SIGKILL] {
        for &pid in &pids(namespace)? {
            send(namespace, pid, signal)?;
        }
        let deadline = Instant::now() + grace;
        loop {
            if pids(namespace)?.is_empty() {
                return Ok(found);
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }
    Err(NetnsError::Survivors {
        namespace: namespace.to_string(),
        pids: pids(namespace)?,
    })
}

/// Ends every process in `namespace` and deletes it, closing the race with a process that is
/// entering it meanwhile; returns the processes that were signalled. A namespace that does not
/// exist is fine (nothing is done).
///
/// The name is deleted first, so from then on nobody can open the namespace any more. Then, until
/// none is left: every process whose network namespace it is, and every single-threaded process
/// that holds it open in a descriptor, gets SIGTERM, and those still there after `grace`
/// SIGKILL. The second kind is a process on its way in (`nsenter` between opening the namespace
/// and switching to it, or a child between fork and exec), which would otherwise enter the
/// deleted namespace and live on there unseen (a child of this process that has not exec'd yet
/// only holds copies of this process's descriptors, and is left alone). A multi-threaded process holding it open is a
/// daemon working in it from outside (say, opening a netlink socket there) and is left alone;
/// stop such processes first. This process itself is never signalled.
///
/// # Errors
/// [`NetnsError::Command`] if the namespace cannot be deleted, [`NetnsError::Signal`] if a
/// process cannot be signalled, [`NetnsError::Survivors`] if processes remain after SIGKILL and
/// another `grace`.
///
/// The namespace is held open meanwhile (this process is never counted), so its identity cannot
/// pass to a namespace made during the sweep.
pub fn remove(namespace: &str, grace: Duration) -> Result<Vec<i32>, NetnsError> {
    // Held open until every process is gone, so the namespace (and with it its inode number,
    // which identifies it below) stays alive: a namespace made meanwhile cannot take the number
    // over and have its processes mistaken for these.
    let Ok(held) = std::fs::File::open(path(namespace)) else {
        return Ok(Vec::new());
    };
    let Some(id) = proc::file_id(&path(namespace)) else {
        return Ok(Vec::new());
    };
    if let Err(e) = delete(namespace) {
        if exists(namespace) {
            return Err(e);
        }
    }
    let me = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
    let my_program = proc::exe(me);
    // A child of this process between fork and exec holds copies of its descriptors (`held`
    // among them) until exec closes them; it still runs this program, and is not on its way in.
    let on_its_way_in = |pid: i32| {
        proc::thread_count(pid) == Some(1)
            && proc::holds_open(pid, id)
            && proc::exe(pid) != my_program
    };
    let inside = || -> Vec<i32> {
        proc::pids()
            .into_iter()
            .filter(|&pid| pid != me)
            .filter(|&pid| proc::net_namespace(pid) == Some(id) || on_its_way_in(pid))
            .filter(|&pid| proc::is_alive(pid))
            .collect()
    };
    let mut signalled: Vec<i32> = Vec::new();
    for signal in [Signal::SIGTERM, Signal::SIGKILL] {
        let deadline = Instant::now() + grace;
        loop {
            let left = inside();
            if left.is_empty() {
                drop(held);
                signalled.sort_unstable();
                signalled.dedup();
                return Ok(signalled);
            }
            if Instant::now() >= deadline {
                break;
            }
            for pid in left {
                if signalled.contains(&pid) && signal == Signal::SIGTERM {
                    continue;
                }
                send(namespace, pid, signal)?;
                signalled.push(pid);
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }
    Err(NetnsError::Survivors {
        namespace: namespace.to_string(),
        pids: inside(),
    })
}
