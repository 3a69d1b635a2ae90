//! nftables transactions, listings, and the kernel's ruleset generation.
//!
//! A script is submitted with `nft -f -` inside the router's namespace, so the kernel commits it
//! as one transaction or not at all. The ruleset generation (a per-namespace counter the kernel
//! bumps on every commit) is read over netlink with one small request: it tells cheaply whether
//! anything committed since we did, without listing a single rule.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

use nix::sys::socket::{
    recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};

use crate::cmd::{self, CommandError};

/// Where a router's ruleset lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Netns {
    /// A named namespace under `/run/netns`.
    Named(String),
    /// The namespace this process runs in (only when explicitly asked for).
    Host,
}

impl Netns {
    /// The namespace's file, if it is a named one.
    pub fn path(&self) -> Option<PathBuf> {
        match self {
            Netns::Named(n) => Some(PathBuf::from("/run/netns").join(n)),
            Netns::Host => None,
        }
    }

    /// A stable identity of the namespace (device and inode of its file), so a namespace that was
    /// deleted and made again under the same name is recognised as new.
    ///
    /// # Errors
    /// The namespace file cannot be read.
    pub fn identity(&self) -> Result<(u64, u64), std::io::Error> {
        use std::os::unix::fs::MetadataExt;
        let path = self
            .path()
            .unwrap_or_else(|| PathBuf::from("/proc/self/ns/net"));
        let m = std::fs::metadata(path)?;
        Ok((m.dev(), m.ino()))
    }

    fn argv<'a>(&'a self, program: &'a str, args: &[&'a str]) -> (String, Vec<String>) {
        match self {
            Netns::Named(n) => {
                let mut v = vec![
                    format!("--net=/run/netns/{n}"),
                    "--".to_string(),
                    program.to_string(),
                ];
                v.extend(args.iter().map(|a| a.to_string()));
                ("nsenter".to_string(), v)
            }
            Netns::Host => (
                program.to_string(),
                args.iter().map(|a| a.to_string()).collect(),
            ),
        }
    }

    /// Runs `program args…` inside this namespace.
    ///
    /// # Errors
    /// [`CommandError`] when it cannot start or fails.
    pub fn run(
        &self,
        program: &str,
        args: &[&str],
        stdin: Option<&[u8]>,
    ) -> Result<std::process::Output, CommandError> {
        let (prog, argv) = self.argv(program, args);
        let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
        cmd::run(&prog, &refs, stdin)
    }
}

impl std::fmt::Display for Netns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Netns::Named(n) => write!(f, "netns {n}"),
            Netns::Host => f.write_str("the host namespace"),
        }
    }
}

/// An nftables operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// The kernel (or nft) refused the transaction; nothing was changed.
    #[error("nft refused the transaction in {netns}")]
    Refused {
        /// Where.
        netns: Netns,
        /// nft's complaint.
        #[source]
        source: CommandError,
    },
    /// A listing failed.
    #[error("cannot list the ruleset in {netns}")]
    List {
        /// Where.
        netns: Netns,
        /// Why.
        #[source]
        source: CommandError,
    },
    /// The netlink socket for the generation could not be made or used.
    #[error("netlink request for the ruleset generation failed in {netns}: {what}")]
    Netlink {
        /// Where.
        netns: Netns,
        /// Which step.
        what: &'static str,
        /// The errno.
        #[source]
        source: nix::errno::Errno,
    },
    /// Entering the namespace failed.
    #[error("cannot enter {netns}")]
    Enter {
        /// Where.
        netns: Netns,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The kernel's answer was not the expected shape.
    #[error("unexpected netlink answer in {netns}: {detail}")]
    Protocol {
        /// Where.
        netns: Netns,
        /// What was wrong.
        detail: &'static str,
    },
}

/// Submits `script` to `nft -f -` inside `netns`: one transaction.
///
/// # Errors
/// [`NftError::Refused`] with nft's message; the kernel then changed nothing.
pub fn apply(netns: &Netns, script: &str) -> Result<(), NftError> {
    netns
        .run("nft", &["-f", "-"], Some(script.as_bytes()))
        .map(|_| ())
        .map_err(|source| NftError::Refused {
            netns: netns.clone(),
            source,
        })
}

/// Checks `script` with `nft -c -f -` (nothing is committed).
///
/// # Errors
/// [`NftError::Refused`] with nft's message.
pub fn check(netns: &Netns, script: &str) -> Result<(), NftError> {
    netns
        .run("nft", &["-c", "-f", "-"], Some(script.as_bytes()))
        .map(|_| ())
        .map_err(|source| NftError::Refused {
            netns: netns.clone(),
            source,
        })
}

/// Lists one table as JSON (`nft -j list table ip NAME`), counters included. Costs time in
/// proportion to the number of elements: for status, never for the change path.
///
/// # Errors
/// [`NftError::List`], e.g. when the table does not exist.
pub fn list_table_json(netns: &Netns, table: &str) -> Result<Vec<u8>, NftError> {
    netns
        .run("nft", &["-j", "list", "table", "ip", table], None)
        .map(|o| o.stdout)
        .map_err(|source| NftError::List {
            netns: netns.clone(),
            source,
        })
}

/// A netlink socket inside a namespace that reads the nftables ruleset generation.
#[derive(Debug)]
pub struct GenerationProbe {
    netns: Netns,
    fd: OwnedFd,
    seq: u32,
}

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_GETGEN: u16 = 16;
const NFT_MSG_NEWGEN: u16 = 15;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NFTA_GEN_ID: u16 = 1;

impl GenerationProbe {
    /// Opens the probe's socket inside `netns` (a thread enters the namespace only to create it).
    ///
    /// # Errors
    /// [`NftError::Enter`] or [`NftError::Netlink`].
    pub fn open(netns: &Netns) -> Result<Self, NftError> {
        let make = || {
            socket(
                AddressFamily::Netlink,
                SockType::Raw,
                SockFlag::SOCK_CLOEXEC,
                SockProtocol::NetlinkNetFilter,
            )
        };
        let fd = match netns.path() {
            None => make().map_err(|source| NftError::Netlink {
                netns: netns.clone(),
                what: "socket",
                source,
            })?,
            Some(path) => {
                let target = netns.clone();
                std::thread::scope(|s| {
                    s.spawn(move || -> Result<OwnedFd, NftError> {
                        let file =
                            std::fs::File::open(&path).map_err(|source| NftError::Enter {
                                netns: target.clone(),
                                source,
                            })?;
                        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(
                            |e| NftError::Enter {
                                netns: target.clone(),
                                source: std::io::Error::from(e),
                            },
                        )?;
                        make().map_err(|source| NftError::Netlink {
                            netns: target,
                            what: "socket",
                            source,
                        })
                    })
                    .join()
                    .unwrap_or_else(|_| {
                        Err(NftError::Protocol {
                            netns: netns.clone(),
                            detail: "probe thread panicked",
                        })
                    })
                })?
            }
        };
        Ok(GenerationProbe {
            netns: netns.clone(),
            fd,
            seq: 0,
        })
    }

    /// The namespace's current nftables ruleset generation.
    ///
    /// # Errors
    /// [`NftError::Netlink`] or [`NftError::Protocol`].
    pub fn generation(&mut self) -> Result<u32, NftError> {
        self.seq = self.seq.wrapping_add(1);
        let mut req = Vec::with_capacity(20);
        req.extend_from_slice(&20u32.to_ne_bytes());
        req.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN).to_ne_bytes());
        req.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
        req.extend_from_slice(&self.seq.to_ne_bytes());
        req.extend_from_slice(&0u32.to_ne_bytes());
        req.extend_from_slice(&[0, 0, 0, 0]); // nfgenmsg: AF_UNSPEC, version 0, res_id 0
        let err = |what, source| NftError::Netlink {
            netns: self.netns.clone(),
            what,
            source,
        };
        sendto(
            self.fd.as_raw_fd(),
            &req,
            &NetlinkAddr::new(0, 0),
            MsgFlags::empty(),
        )
        .map_err(|e| err("send", e))?;
        let mut buf = [0u8; 512];
        loop {
            let n = recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty())
                .map_err(|e| err("recv", e))?;
            let msg = &buf[..n];
            if msg.len() < 20 {
                return Err(self.protocol("short message"));
            }
            let kind = u16::from_ne_bytes([msg[4], msg[5]]);
            let seq = u32::from_ne_bytes([msg[8], msg[9], msg[10], msg[11]]);
            if seq != self.seq {
                continue; // a stale answer to an earlier request
            }
            if kind == NLMSG_ERROR {
                let code = i32::from_ne_bytes([msg[16], msg[17], msg[18], msg[19]]);
                return Err(err("answer", nix::errno::Errno::from_raw(-code)));
            }
            if kind != ((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN) {
                return Err(self.protocol("not a NEWGEN message"));
            }
            let len =
                (u32::from_ne_bytes([msg[0], msg[1], msg[2], msg[3]]) as usize).min(msg.len());
            let mut at = 20; // header (16) + nfgenmsg (4)
            while at + 4 <= len {
                let alen = usize::from(u16::from_ne_bytes([msg[at], msg[at + 1]]));
                let atype = u16::from_ne_bytes([msg[at + 2], msg[at + 3]]) & 0x3fff;
                if alen < 4 || at + alen > len {
                    break;
                }
                if atype == NFTA_GEN_ID && alen >= 8 {
                    return Ok(u32::from_be_bytes([
                        msg[at + 4],
                        msg[at + 5],
                        msg[at + 6],
                        msg[at + 7],
                    ]));
                }
                at += (alen + 3) & !3;
            }
            return Err(self.protocol("no generation attribute"));
        }
    }

    fn protocol(&self, detail: &'static str) -> NftError {
        NftError::Protocol {
            netns: self.netns.clone(),
            detail,
        }
    }
}
