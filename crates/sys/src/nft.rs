//! nftables transactions, listings, and the kernel's ruleset generation.
//!
//! A script is submitted with `nft -f -` inside the router's namespace, so the kernel commits it
//! as one transaction or not at all. The ruleset generation (a per-namespace counter the kernel
//! bumps on every commit) is read over netlink with one small request: it tells cheaply whether
//! anything committed since we did, without listing a single rule.
//!
//! Element changes of a delta skip `nft` altogether: [`netlink`] builds them into one batch of
//! netlink messages and [`NftSocket`] commits it, pinned to the generation it was built against.

use std::path::PathBuf;

use crate::cmd::{self, CommandError};

pub mod netlink;

pub use netlink::{ElementBatch, EncodeError, Field, NftSocket};

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

    /// Moves the calling thread (only it) into this namespace; nothing to do for
    /// [`Netns::Host`]. Sockets the thread creates afterwards belong to the namespace, wherever
    /// they are used later; a thread that entered one should end rather than return to a pool.
    ///
    /// # Errors
    /// The namespace's file cannot be opened, or `setns` fails.
    pub fn enter_this_thread(&self) -> Result<(), std::io::Error> {
        if let Some(path) = self.path() {
            let file = std::fs::File::open(&path)?;
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)?;
        }
        Ok(())
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
    /// The namespace's nftables netlink socket could not be made or used (the generation, a
    /// table's presence, an element batch).
    #[error("nftables netlink request failed in {netns}: {what}")]
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
    /// The ruleset changed since the generation a batch was built against; nothing was applied.
    #[error("the ruleset in {netns} is no longer at generation {expected}")]
    Stale {
        /// Where.
        netns: Netns,
        /// The generation the batch expected.
        expected: u32,
    },
    /// A batch could not be put into netlink messages (a length would not fit its field);
    /// nothing was sent.
    #[error("cannot encode the netlink batch for {netns}")]
    Encode {
        /// Where.
        netns: Netns,
        /// What would not fit.
        #[source]
        source: EncodeError,
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
