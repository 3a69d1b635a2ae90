//! The edge of the system: the only crate that runs external commands (`nft`, `ip`, `nsenter`,
//! `haproxy`, `dnsmasq`), enters network namespaces, speaks netlink or sends raw frames.
//!
//! Entry points:
//! - [`cmd`]: the process gateway: run a program and capture its output, or start a
//!   long-lived child (in a network namespace if asked) and signal, wait for or kill it;
//! - [`haproxy`]: start, adopt, reload and stop a router's haproxy in its namespace, and drive
//!   its runtime API;
//! - [`dnsmasq`]: start, adopt, reload (SIGHUP) and stop a router's dnsmasq, its DHCP and DNS
//!   service, in its namespace;
//! - [`hostnet`]: bridges, VLAN interfaces and veths in the process's own namespace (the host
//!   driver's links beside the host's interfaces);
//! - [`kernel`]: what a router needs from its namespace's kernel, as a trait, with the real
//!   namespace behind it and a recording kernel that enforces nothing;
//! - [`netns`]: create, list and delete network namespaces, veth pairs and bridges, and end
//!   the processes inside a namespace;
//! - [`proc`]: read `/proc`: a process's state, parent, CPU time and namespace;
//! - [`virsh`]: define, start, stop and undefine libvirt guests;
//! - [`qemu`]: a guest's tap on a bridge, QEMU started as a daemon, found by its pid file and
//!   stopped, and a guest's own qcow2 overlay of a disk image;
//! - [`nft`]: submit an nftables script as one transaction inside a namespace; [`nft::netlink`]
//!   reads the kernel's ruleset generation and whether a table exists cheaply, and commits
//!   element changes as one batch;
//! - [`link`]: a router's addresses and default route, and gratuitous ARP for the addresses
//!   it takes.
//!
//! It never decides anything: callers render what to do, this crate does it and reports.

pub mod cmd;
pub mod dnsmasq;
pub mod haproxy;
pub mod hostnet;
pub mod kernel;
pub mod link;
pub mod netns;
pub mod nft;
pub mod proc;
pub mod qemu;
pub mod virsh;
