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
    /// The ruleset changed since the generation a batch was built against; nothing was applied.
    #[error("the ruleset in {netns} is no longer at generation {expected}")]
    Stale {
        /// Where.
        netns: Netns,
        /// The generation the batch expected.
        expected: u32,
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

/// One field of a set element's key or data, as the kernel stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// An IPv4 address.
    Ipv4(std::net::Ipv4Addr),
    /// An IP protocol number (`inet_proto`).
    Proto(u8),
    /// A port (`inet_service`).
    Port(u16),
    /// A port range, in a one-field interval set.
    PortRange(u16, u16),
    /// A jump to a chain, as a verdict map's data.
    Jump(String),
}

impl Field {
    /// The field's bytes; inside a concatenation each field takes a multiple of 4 bytes.
    fn encode(&self, padded: bool, out: &mut Vec<u8>) {
        let start = out.len();
        match self {
            Field::Ipv4(ip) => out.extend_from_slice(&ip.octets()),
            Field::Proto(p) => out.push(*p),
            Field::Port(p) | Field::PortRange(p, _) => out.extend_from_slice(&p.to_be_bytes()),
            Field::Jump(_) => {}
        }
        if padded {
            let len = out.len() - start;
            out.resize(start + len.div_ceil(4) * 4, 0);
        }
    }
}

/// Adding or deleting elements of one set or map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementBatch {
    /// The set or map.
    pub set: String,
    /// Whether it is a one-field interval set (elements are ranges).
    pub interval: bool,
    /// Delete (true) or add (false).
    pub delete: bool,
    /// Each element: its key fields and, for maps, its data fields.
    pub elements: Vec<(Vec<Field>, Option<Vec<Field>>)>,
}

fn encode_fields(fields: &[Field]) -> Vec<u8> {
    let mut bytes = Vec::new();
    let padded = fields.len() > 1;
    fields.iter().for_each(|f| f.encode(padded, &mut bytes));
    bytes
}

/// Writes one element's data attribute: a value, or a verdict for a jump.
fn put_data(elem: &mut Vec<u8>, data: &[Field]) {
    put_nested(elem, NFTA_SET_ELEM_DATA, |d| match data {
        [Field::Jump(chain)] => put_nested(d, NFTA_DATA_VERDICT, |v| {
            put_attr(v, NFTA_VERDICT_CODE, &NFT_JUMP.to_be_bytes());
            put_attr(v, NFTA_VERDICT_CHAIN, &strz(chain));
        }),
        fields => put_attr(d, NFTA_DATA_VALUE, &encode_fields(fields)),
    });
}

/// Writes the elements of a batch; an interval `[a, b]` is a start element at `a` and an end
/// element at `b + 1` (none when `b` is the last port), as the kernel's interval sets expect.
fn put_elements(list: &mut Vec<u8>, batch: &ElementBatch) {
    for (key, data) in &batch.elements {
        let range = match key.as_slice() {
            [Field::PortRange(a, b)] if batch.interval => Some((*a, *b)),
            [Field::Port(a)] if batch.interval => Some((*a, *a)),
            _ => None,
        };
        let start_key = match range {
            Some((a, _)) => a.to_be_bytes().to_vec(),
            None => encode_fields(key),
        };
        put_nested(list, NFTA_LIST_ELEM, |elem| {
            put_nested(elem, NFTA_SET_ELEM_KEY, |k| {
                put_attr(k, NFTA_DATA_VALUE, &start_key)
            });
            if let Some(data) = data {
                put_data(elem, data);
            }
        });
        if let Some((_, b)) = range {
            if let Some(end) = b.checked_add(1) {
                put_nested(list, NFTA_LIST_ELEM, |elem| {
                    put_attr(
                        elem,
                        NFTA_SET_ELEM_FLAGS,
                        &NFT_SET_ELEM_INTERVAL_END.to_be_bytes(),
                    );
                    put_nested(elem, NFTA_SET_ELEM_KEY, |k| {
                        put_attr(k, NFTA_DATA_VALUE, &end.to_be_bytes())
                    });
                });
            }
        }
    }
}

/// A netlink socket inside a namespace: reads the nftables ruleset generation and commits
/// element changes as one batch, without a process and without reading anything back.
#[derive(Debug)]
pub struct NftSocket {
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
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFNL_BATCH_GENID: u16 = 1;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NLM_F_ACK: u16 = 4;
const NLM_F_CREATE: u16 = 0x400;
const NLA_F_NESTED: u16 = 0x8000;
const NFPROTO_IPV4: u8 = 2;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;
const NFT_JUMP: i32 = -3;
const NFTA_SET_ELEM_FLAGS: u16 = 3;
const NFT_SET_ELEM_INTERVAL_END: u32 = 1;
const NFT_MSG_DELCHAIN: u16 = 5;
const NFT_MSG_DELRULE: u16 = 8;
const NFT_MSG_DELSET: u16 = 11;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;
const ERESTART: i32 = 85;

/// Appends a netlink attribute (header, payload, padding).
fn put_attr(out: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    out.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(out.len() + ((4 - len % 4) % 4), 0);
}

/// Appends a nested attribute built by `body`.
fn put_nested(out: &mut Vec<u8>, kind: u16, body: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    body(&mut inner);
    put_attr(out, kind | NLA_F_NESTED, &inner);
}

fn strz(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// Appends one netlink message: header, nfgenmsg, attributes.
fn put_message(
    out: &mut Vec<u8>,
    kind: u16,
    flags: u16,
    seq: u32,
    family: u8,
    res_id: u16,
    attrs: &[u8],
) {
    let len = 16 + 4 + attrs.len();
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.push(family);
    out.push(0);
    out.extend_from_slice(&res_id.to_be_bytes());
    out.extend_from_slice(attrs);
}

impl NftSocket {
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
        Ok(NftSocket {
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
        let getgen = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN;
        put_message(&mut req, getgen, 0, self.seq, 0, 0, &[]);
        self.send(&req, "send")?;
        let err = |what, source| NftError::Netlink {
            netns: self.netns.clone(),
            what,
            source,
        };
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

    /// Commits element additions and deletions in `table` as one transaction, only if the
    /// namespace's ruleset generation is still `expected_generation` (so a change nobody told us
    /// about makes the batch fail instead of being built upon).
    ///
    /// # Errors
    /// [`NftError::Stale`] when the generation moved; [`NftError::Netlink`] with the kernel's
    /// errno when it refused the batch (nothing was changed either way).
    ///
    /// After the elements, `remove` lists `(chain, set)` pairs to delete: each chain is flushed
    /// and deleted, then its set; nothing may reference them any more.
    pub fn commit_batch(
        &mut self,
        table: &str,
        expected_generation: u32,
        batches: &[ElementBatch],
        remove: &[(String, String)],
    ) -> Result<(), NftError> {
        let mut msg = Vec::with_capacity(256);
        let first_seq = self.seq.wrapping_add(1);
        let mut seq = first_seq;
        let mut genid = Vec::new();
        put_attr(
            &mut genid,
            NFNL_BATCH_GENID,
            &expected_generation.to_be_bytes(),
        );
        put_message(
            &mut msg,
            NFNL_MSG_BATCH_BEGIN,
            0,
            seq,
            0,
            NFNL_SUBSYS_NFTABLES,
            &genid,
        );
        let mut acked: Vec<u32> = Vec::new();
        for b in batches {
            if b.elements.is_empty() {
                continue;
            }
            seq = seq.wrapping_add(1);
            let mut attrs = Vec::new();
            put_attr(&mut attrs, NFTA_SET_ELEM_LIST_TABLE, &strz(table));
            put_attr(&mut attrs, NFTA_SET_ELEM_LIST_SET, &strz(&b.set));
            put_nested(&mut attrs, NFTA_SET_ELEM_LIST_ELEMENTS, |list| {
                put_elements(list, b)
            });
            let (kind, flags) = if b.delete {
                (NFT_MSG_DELSETELEM, NLM_F_ACK)
            } else {
                (NFT_MSG_NEWSETELEM, NLM_F_ACK | NLM_F_CREATE)
            };
            put_message(
                &mut msg,
                (NFNL_SUBSYS_NFTABLES << 8) | kind,
                flags,
                seq,
                NFPROTO_IPV4,
                0,
                &attrs,
            );
            acked.push(seq);
        }
        for (chain, set) in remove {
            let table_attr = strz(table);
            let mut flush = Vec::new();
            put_attr(&mut flush, NFTA_RULE_TABLE, &table_attr);
            put_attr(&mut flush, NFTA_RULE_CHAIN, &strz(chain));
            let mut del_chain = Vec::new();
            put_attr(&mut del_chain, NFTA_CHAIN_TABLE, &table_attr);
            put_attr(&mut del_chain, NFTA_CHAIN_NAME, &strz(chain));
            let mut del_set = Vec::new();
            put_attr(&mut del_set, NFTA_SET_TABLE, &table_attr);
            put_attr(&mut del_set, NFTA_SET_NAME, &strz(set));
            for (kind, attrs) in [
                (NFT_MSG_DELRULE, flush),
                (NFT_MSG_DELCHAIN, del_chain),
                (NFT_MSG_DELSET, del_set),
            ] {
                seq = seq.wrapping_add(1);
                put_message(
                    &mut msg,
                    (NFNL_SUBSYS_NFTABLES << 8) | kind,
                    NLM_F_ACK,
                    seq,
                    NFPROTO_IPV4,
                    0,
                    &attrs,
                );
                acked.push(seq);
            }
        }
        seq = seq.wrapping_add(1);
        put_message(
            &mut msg,
            NFNL_MSG_BATCH_END,
            0,
            seq,
            0,
            NFNL_SUBSYS_NFTABLES,
            &[],
        );
        self.seq = seq;
        if acked.is_empty() && remove.is_empty() {
            return Ok(());
        }
        self.send(&msg, "send batch")?;
        let err = |what, source| NftError::Netlink {
            netns: self.netns.clone(),
            what,
            source,
        };
        // Every message asked for an acknowledgement; the first error aborts the batch.
        let mut pending = acked.len();
        let mut buf = vec![0u8; 64 * 1024];
        while pending > 0 {
            let n = recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty())
                .map_err(|e| err("recv ack", e))?;
            let mut at = 0;
            while at + 16 <= n {
                let len =
                    u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
                let kind = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
                let mseq =
                    u32::from_ne_bytes([buf[at + 8], buf[at + 9], buf[at + 10], buf[at + 11]]);
                if len < 16 || at + len > n {
                    return Err(self.protocol("truncated acknowledgement"));
                }
                let in_batch = mseq.wrapping_sub(first_seq) <= seq.wrapping_sub(first_seq);
                if kind == NLMSG_ERROR && in_batch && len >= 20 {
                    let code = i32::from_ne_bytes([
                        buf[at + 16],
                        buf[at + 17],
                        buf[at + 18],
                        buf[at + 19],
                    ]);
                    if code == -ERESTART && mseq == first_seq {
                        return Err(NftError::Stale {
                            netns: self.netns.clone(),
                            expected: expected_generation,
                        });
                    }
                    if code != 0 {
                        return Err(err("batch refused", nix::errno::Errno::from_raw(-code)));
                    }
                    pending = pending.saturating_sub(1);
                }
                at += (len + 3) & !3;
            }
        }
        Ok(())
    }

    /// Sends one datagram to the kernel.
    fn send(&self, bytes: &[u8], what: &'static str) -> Result<(), NftError> {
        sendto(
            self.fd.as_raw_fd(),
            bytes,
            &NetlinkAddr::new(0, 0),
            MsgFlags::empty(),
        )
        .map(|_| ())
        .map_err(|source| NftError::Netlink {
            netns: self.netns.clone(),
            what,
            source,
        })
    }

    fn protocol(&self, detail: &'static str) -> NftError {
        NftError::Protocol {
            netns: self.netns.clone(),
            detail,
        }
    }
}
