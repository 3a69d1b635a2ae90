//! nftables over netlink: the ruleset generation, and element changes committed as one batch,
//! without a process and without reading anything back.
//!
//! [`NftSocket`] does the I/O; the messages themselves are built by a pure encoder (see
//! [`ElementBatch`] and [`EncodeError`]) whose output the unit tests check byte for byte.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{
    getsockopt, recv, sendto, setsockopt, socket, sockopt, AddressFamily, MsgFlags, NetlinkAddr,
    SockFlag, SockProtocol, SockType,
};

use super::{Netns, NftError};

mod message;

pub use message::{ElementBatch, EncodeError, Field};
use message::{NFNL_SUBSYS_NFTABLES, NFTA_GEN_ID, NFT_MSG_NEWGEN, NFT_MSG_NEWTABLE, NLMSG_ERROR};

/// The receive buffer for acknowledgements. An error acknowledgement carries the message it
/// refuses, and a message is at most a little over 64 KiB (its element list is at most one
/// attribute), so one always fits.
const ACK_BUFFER: usize = 128 * 1024;

/// Receive-buffer room per acknowledgement of a batch: the kernel queues every one before we
/// read any (it processes the whole batch inside our send), and charges each its socket
/// buffer's true size (about 1 KiB for a small message), not its 36 bytes. A queue that
/// overflows drops acknowledgements (`ENOBUFS`).
const ROOM_PER_ACK: usize = 2048;

/// One of a socket's two buffers.
#[derive(Debug, Clone, Copy)]
enum Buffer {
    Send,
    Receive,
}

/// Room the kernel keeps in a socket's send buffer besides the datagram (`netlink_sendmsg`
/// refuses a datagram longer than the buffer less 32 bytes).
const SEND_SLACK: usize = 32;

/// A netlink socket inside a namespace: reads the nftables ruleset generation and commits
/// element changes as one batch, without a process and without reading anything back.
#[derive(Debug)]
pub struct NftSocket {
    netns: Netns,
    fd: OwnedFd,
    seq: u32,
    /// The longest datagram the send buffer is known to take (0 until the first send).
    send_room: usize,
    /// The receive buffer's size as last set or read (0 until a batch needed it).
    receive_room: usize,
    /// The buffer acknowledgements are read into, kept between batches.
    acks: Vec<u8>,
}

impl NftSocket {
    /// Opens the socket inside `netns` (a thread enters the namespace only to create it).
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
        let fd = match netns {
            Netns::Host => make().map_err(|source| NftError::Netlink {
                netns: netns.clone(),
                what: "socket",
                source,
            })?,
            Netns::Named(_) => {
                let target = netns.clone();
                std::thread::scope(|s| {
                    s.spawn(move || -> Result<OwnedFd, NftError> {
                        target
                            .enter_this_thread()
                            .map_err(|source| NftError::Enter {
                                netns: target.clone(),
                                source,
                            })?;
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
                            detail: "the thread that entered the namespace panicked",
                        })
                    })
                })?
            }
        };
        Ok(NftSocket {
            netns: netns.clone(),
            fd,
            seq: 0,
            send_room: 0,
            receive_room: 0,
            acks: Vec::new(),
        })
    }

    /// Sends the request `encode` makes with the next sequence number and hands the kernel's
    /// answer to `read`: the first message carrying that number (an earlier request's late
    /// answer is skipped), as its type and bytes, an error message included. The answers asked
    /// for here (a generation, a table's header) are small: a stack buffer takes them, so the
    /// drift timer's probe allocates nothing.
    fn ask<T>(
        &mut self,
        encode: impl FnOnce(u32) -> Result<Vec<u8>, EncodeError>,
        read: impl FnOnce(&Self, u16, &[u8]) -> Result<T, NftError>,
    ) -> Result<T, NftError> {
        self.seq = self.seq.wrapping_add(1);
        let req = encode(self.seq).map_err(|source| self.encode(source))?;
        self.send(&req, "send")?;
        let mut buf = [0u8; 1024];
        loop {
            let n = recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty()).map_err(|source| {
                NftError::Netlink {
                    netns: self.netns.clone(),
                    what: "recv",
                    source,
                }
            })?;
            let msg = &buf[..n];
            if msg.len() < message::HEADER_LEN {
                return Err(self.protocol("short message"));
            }
            let kind = u16::from_ne_bytes([msg[4], msg[5]]);
            let seq = u32::from_ne_bytes([msg[8], msg[9], msg[10], msg[11]]);
            if seq == self.seq {
                return read(self, kind, msg);
            }
        }
    }

    /// The errno of an error message (its first four bytes after the header; 0 is an
    /// acknowledgement).
    fn errno(&self, msg: &[u8]) -> nix::errno::Errno {
        let code = i32::from_ne_bytes([msg[16], msg[17], msg[18], msg[19]]);
        nix::errno::Errno::from_raw(-code)
    }

    /// The namespace's current nftables ruleset generation.
    ///
    /// # Errors
    /// [`NftError::Netlink`] or [`NftError::Protocol`].
    pub fn generation(&mut self) -> Result<u32, NftError> {
        self.ask(message::getgen_request, Self::read_generation)
    }

    fn read_generation(&self, kind: u16, msg: &[u8]) -> Result<u32, NftError> {
        if kind == NLMSG_ERROR {
            return Err(NftError::Netlink {
                netns: self.netns.clone(),
                what: "answer",
                source: self.errno(msg),
            });
        }
        if kind != ((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN) {
            return Err(self.protocol("not a NEWGEN message"));
        }
        let len = (u32::from_ne_bytes([msg[0], msg[1], msg[2], msg[3]]) as usize).min(msg.len());
        let mut at = message::HEADER_LEN;
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
        Err(self.protocol("no generation attribute"))
    }

    /// Whether the namespace holds a table named `table` of family `ip` (one small request;
    /// nothing of the table is listed).
    ///
    /// # Errors
    /// [`NftError::Netlink`] (the kernel's errno for anything but "no such table"),
    /// [`NftError::Protocol`] or [`NftError::Encode`].
    pub fn has_table(&mut self, table: &str) -> Result<bool, NftError> {
        self.ask(
            |seq| message::gettable_request(seq, table),
            Self::read_table,
        )
    }

    fn read_table(&self, kind: u16, msg: &[u8]) -> Result<bool, NftError> {
        if kind == NLMSG_ERROR {
            return match self.errno(msg) {
                nix::errno::Errno::ENOENT => Ok(false),
                source => Err(NftError::Netlink {
                    netns: self.netns.clone(),
                    what: "answer",
                    source,
                }),
            };
        }
        if kind != ((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWTABLE) {
            return Err(self.protocol("not a NEWTABLE message"));
        }
        Ok(true)
    }

    /// Commits element additions and deletions in `table` as one transaction, only if the
    /// namespace's ruleset generation is still `expected_generation` (so a change nobody told us
    /// about makes the batch fail instead of being built upon).
    ///
    /// After the elements, `remove` lists `(chain, set)` pairs to delete: each chain is flushed
    /// and deleted, then its set; nothing may reference them any more.
    ///
    /// # Guarantees
    /// However many elements change, the batch is one transaction: a set's changes that do not
    /// fit one message's element list go in several messages of the same batch.
    ///
    /// # Errors
    /// [`NftError::Stale`] when the generation moved; [`NftError::Netlink`] with the kernel's
    /// errno when it refused the batch; [`NftError::Encode`] when a single element or name is
    /// too long for a netlink attribute (nothing is sent). Nothing was changed in any case.
    pub fn commit_batch(
        &mut self,
        table: &str,
        expected_generation: u32,
        batches: &[ElementBatch],
        remove: &[(String, String)],
    ) -> Result<(), NftError> {
        let first_seq = self.seq.wrapping_add(1);
        let batch = message::encode_batch(table, expected_generation, first_seq, batches, remove)
            .map_err(|source| self.encode(source))?;
        let last_seq = batch.last_seq;
        self.seq = last_seq;
        if batch.acked.is_empty() {
            return Ok(());
        }
        self.fit_receive_buffer(batch.acked.len().saturating_mul(ROOM_PER_ACK))?;
        self.send(&batch.bytes, "send batch")?;
        let mut buf = std::mem::take(&mut self.acks);
        buf.resize(ACK_BUFFER, 0);
        let result = self.read_acks(&mut buf, &batch, first_seq, expected_generation);
        self.acks = buf;
        result
    }

    /// Reads the acknowledgements of `batch`, sent with sequence numbers from `first_seq`.
    fn read_acks(
        &self,
        buf: &mut [u8],
        batch: &message::Batch,
        first_seq: u32,
        expected_generation: u32,
    ) -> Result<(), NftError> {
        let last_seq = batch.last_seq;
        let err = |what, source| NftError::Netlink {
            netns: self.netns.clone(),
            what,
            source,
        };
        // Every message asked for an acknowledgement; the first error aborts the batch.
        let mut pending = batch.acked.len();
        while pending > 0 {
            let n = recv(self.fd.as_raw_fd(), buf, MsgFlags::empty())
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
                let in_batch = mseq.wrapping_sub(first_seq) <= last_seq.wrapping_sub(first_seq);
                if kind == NLMSG_ERROR && in_batch && len >= 20 {
                    let code = i32::from_ne_bytes([
                        buf[at + 16],
                        buf[at + 17],
                        buf[at + 18],
                        buf[at + 19],
                    ]);
                    if code == -message::ERESTART && mseq == first_seq {
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

    /// Sends one datagram to the kernel, first growing the socket's send buffer when the
    /// datagram would not fit it (as `nft` does for a large batch).
    fn send(&mut self, bytes: &[u8], what: &'static str) -> Result<(), NftError> {
        self.fit_send_buffer(bytes.len())?;
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

    /// Makes the send buffer hold a datagram of `len` bytes. `SO_SNDBUFFORCE` (which needs
    /// `CAP_NET_ADMIN`, as committing does) passes the system's limit; without it, `SO_SNDBUF`
    /// gets what the limit allows and an oversized datagram fails with `EMSGSIZE`.
    fn fit_send_buffer(&mut self, len: usize) -> Result<(), NftError> {
        if len <= self.send_room {
            return Ok(());
        }
        let have = self.grow_buffer(Buffer::Send, len.saturating_add(SEND_SLACK))?;
        self.send_room = have.saturating_sub(SEND_SLACK);
        Ok(())
    }

    /// Makes the receive buffer hold `need` bytes of acknowledgements.
    fn fit_receive_buffer(&mut self, need: usize) -> Result<(), NftError> {
        if need <= self.receive_room {
            return Ok(());
        }
        self.receive_room = self.grow_buffer(Buffer::Receive, need)?;
        Ok(())
    }

    /// Grows a socket buffer to at least `need` bytes, if it is smaller, and returns its size.
    /// The forced option (which needs `CAP_NET_ADMIN`, as committing does) passes the system's
    /// limit; without it, the plain one gets what the limit allows.
    fn grow_buffer(&self, which: Buffer, need: usize) -> Result<usize, NftError> {
        let err = |what, source| NftError::Netlink {
            netns: self.netns.clone(),
            what,
            source,
        };
        let get = || match which {
            Buffer::Send => {
                getsockopt(&self.fd, sockopt::SndBuf).map_err(|e| err("get SO_SNDBUF", e))
            }
            Buffer::Receive => {
                getsockopt(&self.fd, sockopt::RcvBuf).map_err(|e| err("get SO_RCVBUF", e))
            }
        };
        if get()? < need {
            // The kernel doubles what it is given, for its own bookkeeping.
            let forced = match which {
                Buffer::Send => setsockopt(&self.fd, sockopt::SndBufForce, &need),
                Buffer::Receive => setsockopt(&self.fd, sockopt::RcvBufForce, &need),
            };
            match (forced, which) {
                (Ok(()), _) => {}
                (Err(nix::errno::Errno::EPERM), Buffer::Send) => {
                    setsockopt(&self.fd, sockopt::SndBuf, &need)
                        .map_err(|e| err("set SO_SNDBUF", e))?;
                }
                (Err(nix::errno::Errno::EPERM), Buffer::Receive) => {
                    setsockopt(&self.fd, sockopt::RcvBuf, &need)
                        .map_err(|e| err("set SO_RCVBUF", e))?;
                }
                (Err(e), Buffer::Send) => return Err(err("set SO_SNDBUFFORCE", e)),
                (Err(e), Buffer::Receive) => return Err(err("set SO_RCVBUFFORCE", e)),
            }
        }
        get()
    }

    fn encode(&self, source: EncodeError) -> NftError {
        NftError::Encode {
            netns: self.netns.clone(),
            source,
        }
    }

    fn protocol(&self, detail: &'static str) -> NftError {
        NftError::Protocol {
            netns: self.netns.clone(),
            detail,
        }
    }
}
