//! The router daemon: what runs on (or next to) a virtual router.
//!
//! It owns the router's ledger (last good config as a snapshot plus a journal of changes,
//! highest generation seen, kernel mark), applies configs by delta against the model of what it committed or by full atomic
//! replace, finds drift with one netlink request and repairs it, and serves all of that on a
//! control endpoint (HTTP/1.1 over a Unix socket today; the same routes can later be served on
//! a network address with authentication, for the host agent).
//!
//! Entry points: [`Router`] (one router, synchronous), [`serve`] (the control endpoint and the
//! drift timer), [`client`] (talks to a running `serve`).
//!
//! The router reaches its kernel only through [`sys::kernel::Kernel`]: a namespace's
//! ([`sys::kernel::NetnsKernel`], what [`Router::open`] uses) or any other, such as the recording
//! kernel the dry-run agent and the no-root tests (`tests/kernel.rs`) run it over.
//!
//! It also drives the router's haproxy for load-balancer rules (`balancer`): checked before a
//! commit, moved through the runtime API or a seamless reload after it; and the router's
//! dnsmasq for the guests' DHCP and DNS (`dhcp`): checked before a commit, moved by SIGHUP (new
//! leases) or a restart (new servers, domain or network) after it.
//!
//! It never renders nftables text itself (that is `render`) and never runs a command itself
//! (that is `sys`).

mod balancer;
pub mod client;
mod dhcp;
pub mod journal;
pub mod ledger;
mod router;
pub mod serve;
pub mod status;

pub use balancer::{BalancerError, LbStatus, MemberStatus, HARD_STOP_AFTER};
pub use dhcp::{DhcpError, DhcpStatus};
pub use router::{
    chain, element_batches, ApplyError, ApplyMode, ApplyOutcome, CommitPath, Drift, Router,
};
pub use status::{Count, Counters};

/// The control socket's file name inside a router's state directory.
pub const CONTROL_SOCKET: &str = "control.sock";
