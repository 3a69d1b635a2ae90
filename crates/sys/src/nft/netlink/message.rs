//! The bytes of the netlink messages that [`NftSocket`](super::NftSocket) sends.
//!
//! Pure: nothing here opens a socket, so every message can be checked byte for byte without
//! root. A message is a `nlmsghdr` (length, type, flags, sequence number, port id; native byte
//! order), a `nfgenmsg` (family, version, resource id; the resource id big-endian), then
//! attributes, each a 4-byte header (length, type) and a payload padded to 4 bytes. A length that
//! does not fit its field is an [`EncodeError`], never a wrong number.
//!
//! A set's element changes are split over as many NEWSETELEM or DELSETELEM messages as needed so
//! that no element list outgrows the 16-bit length of its attribute; the messages all go in the
//! same batch, so the kernel still commits them as one transaction.

pub(crate) const NFNL_SUBSYS_NFTABLES: u16 = 10;
pub(crate) const NFT_MSG_GETGEN: u16 = 16;
pub(crate) const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_GETTABLE: u16 = 1;
const NFTA_TABLE_NAME: u16 = 1;
pub(crate) const NFT_MSG_NEWGEN: u16 = 15;
pub(crate) const NLMSG_ERROR: u16 = 2;
pub(crate) const NFTA_GEN_ID: u16 = 1;
pub(crate) const ERESTART: i32 = 85;
const NLM_F_REQUEST: u16 = 1;
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
const NFTA_SET_ELEM_FLAGS: u16 = 3;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;
const NFT_JUMP: i32 = -3;
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

/// The size of a `nlmsghdr` followed by a `nfgenmsg`.
pub(crate) const HEADER_LEN: usize = 16 + 4;

/// The most bytes an attribute's payload may take: its length field is 16 bits and counts the
/// 4-byte header too.
pub(crate) const MAX_ATTR_PAYLOAD: usize = u16::MAX as usize - 4;

/// A length that does not fit the field that has to hold it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// An attribute would be longer than its 16-bit length can say.
    #[error("netlink attribute of type {kind:#06x} would take {len} bytes, over the 65535 its length can say")]
    AttributeTooLong {
        /// The attribute's type (with the nested flag when it has one).
        kind: u16,
        /// The length it would have, header included.
        len: usize,
    },
    /// A message would be longer than its 32-bit length can say.
    #[error(
        "netlink message of type {kind:#06x} would take {len} bytes, over what its length can say"
    )]
    MessageTooLong {
        /// The message's type.
        kind: u16,
        /// The length it would have, headers included.
        len: usize,
    },
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

/// The messages of one batch, ready to send as one datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Batch {
    /// Batch begin, the messages, batch end.
    pub(crate) bytes: Vec<u8>,
    /// The sequence numbers of the messages that ask for an acknowledgement, in order.
    pub(crate) acked: Vec<u32>,
    /// The sequence number of the batch end, the last one used.
    pub(crate) last_seq: u32,
}

/// Appends a netlink attribute: header, payload, padding to 4 bytes.
///
/// # Errors
/// [`EncodeError::AttributeTooLong`] when the payload is over [`MAX_ATTR_PAYLOAD`]; `out` is then
/// unchanged.
pub(crate) fn put_attr(out: &mut Vec<u8>, kind: u16, payload: &[u8]) -> Result<(), EncodeError> {
    let len = 4 + payload.len();
    let field = u16::try_from(len).map_err(|_| EncodeError::AttributeTooLong { kind, len })?;
    out.extend_from_slice(&field.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(out.len() + (4 - len % 4) % 4, 0);
    Ok(())
}

/// Appends a nested attribute whose payload `body` writes.
fn put_nested(
    out: &mut Vec<u8>,
    kind: u16,
    body: impl FnOnce(&mut Vec<u8>) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    let mut inner = Vec::new();
    body(&mut inner)?;
    put_attr(out, kind | NLA_F_NESTED, &inner)
}

/// A string as netlink carries it, with its terminating zero.
fn strz(s: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(s.len() + 1);
    v.extend_from_slice(s.as_bytes());
    v.push(0);
    v
}

/// The header fields of one message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    /// `nlmsg_type`: subsystem in the high byte, message in the low one.
    pub(crate) kind: u16,
    /// Flags besides `NLM_F_REQUEST`, which every message here carries.
    pub(crate) flags: u16,
    /// The sequence number.
    pub(crate) seq: u32,
    /// `nfgen_family`.
    pub(crate) family: u8,
    /// `res_id`: the subsystem, for batch begin and end.
    pub(crate) res_id: u16,
}

/// Appends one message: `nlmsghdr`, `nfgenmsg`, then `attrs` (already padded).
///
/// # Errors
/// [`EncodeError::MessageTooLong`] when the length does not fit 32 bits.
pub(crate) fn put_message(out: &mut Vec<u8>, h: Header, attrs: &[u8]) -> Result<(), EncodeError> {
    let len = HEADER_LEN + attrs.len();
    let field =
        u32::try_from(len).map_err(|_| EncodeError::MessageTooLong { kind: h.kind, len })?;
    out.extend_from_slice(&field.to_ne_bytes());
    out.extend_from_slice(&h.kind.to_ne_bytes());
    out.extend_from_slice(&(NLM_F_REQUEST | h.flags).to_ne_bytes());
    out.extend_from_slice(&h.seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.push(h.family);
    out.push(0);
    out.extend_from_slice(&h.res_id.to_be_bytes());
    out.extend_from_slice(attrs);
    Ok(())
}

/// The type of an nftables message.
const fn nft(msg: u16) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | msg
}

/// The request for the ruleset generation (`NFT_MSG_GETGEN`).
///
/// # Errors
/// None in practice: the message has no attribute.
pub(crate) fn getgen_request(seq: u32) -> Result<Vec<u8>, EncodeError> {
    let mut req = Vec::with_capacity(HEADER_LEN);
    let h = Header {
        kind: nft(NFT_MSG_GETGEN),
        flags: 0,
        seq,
        family: 0,
        res_id: 0,
    };
    put_message(&mut req, h, &[])?;
    Ok(req)
}

/// The request for one table of family `ip` (`NFT_MSG_GETTABLE` with its name): the kernel
/// answers with the table (`NFT_MSG_NEWTABLE`) or with an error, `ENOENT` when there is none.
///
/// # Errors
/// [`EncodeError::AttributeTooLong`] for a name too long for an attribute.
pub(crate) fn gettable_request(seq: u32, table: &str) -> Result<Vec<u8>, EncodeError> {
    let mut attrs = Vec::new();
    put_attr(&mut attrs, NFTA_TABLE_NAME, &strz(table))?;
    let mut req = Vec::with_capacity(HEADER_LEN + attrs.len());
    let h = Header {
        kind: nft(NFT_MSG_GETTABLE),
        flags: 0,
        seq,
        family: NFPROTO_IPV4,
        res_id: 0,
    };
    put_message(&mut req, h, &attrs)?;
    Ok(req)
}

fn encode_fields(fields: &[Field]) -> Vec<u8> {
    let mut bytes = Vec::new();
    let padded = fields.len() > 1;
    fields.iter().for_each(|f| f.encode(padded, &mut bytes));
    bytes
}

/// Writes one element's data attribute: a value, or a verdict for a jump.
fn put_data(elem: &mut Vec<u8>, data: &[Field]) -> Result<(), EncodeError> {
    put_nested(elem, NFTA_SET_ELEM_DATA, |d| match data {
        [Field::Jump(chain)] => put_nested(d, NFTA_DATA_VERDICT, |v| {
            put_attr(v, NFTA_VERDICT_CODE, &NFT_JUMP.to_be_bytes())?;
            put_attr(v, NFTA_VERDICT_CHAIN, &strz(chain))
        }),
        fields => put_attr(d, NFTA_DATA_VALUE, &encode_fields(fields)),
    })
}

/// Writes one element into an element list. In an interval set, `[a, b]` is a start element at
/// `a` and an end element at `b + 1` (none when `b` is the last port), as the kernel's interval
/// sets expect; both are written together, so a list never splits a range.
fn put_element(
    list: &mut Vec<u8>,
    key: &[Field],
    data: Option<&[Field]>,
    interval: bool,
) -> Result<(), EncodeError> {
    let range = match key {
        [Field::PortRange(a, b)] if interval => Some((*a, *b)),
        [Field::Port(a)] if interval => Some((*a, *a)),
        _ => None,
    };
    let start_key = match range {
        Some((a, _)) => a.to_be_bytes().to_vec(),
        None => encode_fields(key),
    };
    put_nested(list, NFTA_LIST_ELEM, |elem| {
        put_nested(elem, NFTA_SET_ELEM_KEY, |k| {
            put_attr(k, NFTA_DATA_VALUE, &start_key)
        })?;
        match data {
            Some(data) => put_data(elem, data),
            None => Ok(()),
        }
    })?;
    if let Some(end) = range.and_then(|(_, b)| b.checked_add(1)) {
        put_nested(list, NFTA_LIST_ELEM, |elem| {
            put_attr(
                elem,
                NFTA_SET_ELEM_FLAGS,
                &NFT_SET_ELEM_INTERVAL_END.to_be_bytes(),
            )?;
            put_nested(elem, NFTA_SET_ELEM_KEY, |k| {
                put_attr(k, NFTA_DATA_VALUE, &end.to_be_bytes())
            })
        })?;
    }
    Ok(())
}

/// Builds the batch that adds and deletes `batches`' elements in `table` and then removes each
/// `(chain, set)` of `remove` (flush the chain, delete it, delete the set), pinned to the
/// ruleset generation `expected_generation`. Sequence numbers start at `first_seq` (the batch
/// begin) and go up by one a message.
///
/// # Guarantees
/// No element list is longer than an attribute can say: a set's changes take as many messages
/// as needed, each holding whole elements (a range's start and end stay together).
///
/// # Errors
/// [`EncodeError`] when one element alone, or a name, is too long for its attribute.
pub(crate) fn encode_batch(
    table: &str,
    expected_generation: u32,
    first_seq: u32,
    batches: &[ElementBatch],
    remove: &[(String, String)],
) -> Result<Batch, EncodeError> {
    encode_batch_split(
        table,
        expected_generation,
        first_seq,
        batches,
        remove,
        MAX_ATTR_PAYLOAD,
    )
}

/// [`encode_batch`] with the most bytes an element list may take (so tests can make it split
/// small lists).
pub(crate) fn encode_batch_split(
    table: &str,
    expected_generation: u32,
    first_seq: u32,
    batches: &[ElementBatch],
    remove: &[(String, String)],
    max_list: usize,
) -> Result<Batch, EncodeError> {
    let mut out = Vec::with_capacity(256);
    let mut seq = first_seq;
    let mut genid = Vec::with_capacity(8);
    put_attr(
        &mut genid,
        NFNL_BATCH_GENID,
        &expected_generation.to_be_bytes(),
    )?;
    let begin = Header {
        kind: NFNL_MSG_BATCH_BEGIN,
        flags: 0,
        seq,
        family: 0,
        res_id: NFNL_SUBSYS_NFTABLES,
    };
    put_message(&mut out, begin, &genid)?;
    let table_attr = strz(table);
    let mut acked: Vec<u32> = Vec::new();
    for b in batches.iter().filter(|b| !b.elements.is_empty()) {
        let (kind, flags) = if b.delete {
            (NFT_MSG_DELSETELEM, NLM_F_ACK)
        } else {
            (NFT_MSG_NEWSETELEM, NLM_F_ACK | NLM_F_CREATE)
        };
        let set_attr = strz(&b.set);
        let mut put_list = |out: &mut Vec<u8>, list: &[u8]| -> Result<(), EncodeError> {
            seq = seq.wrapping_add(1);
            let mut attrs = Vec::with_capacity(list.len() + 64);
            put_attr(&mut attrs, NFTA_SET_ELEM_LIST_TABLE, &table_attr)?;
            put_attr(&mut attrs, NFTA_SET_ELEM_LIST_SET, &set_attr)?;
            put_attr(&mut attrs, NFTA_SET_ELEM_LIST_ELEMENTS | NLA_F_NESTED, list)?;
            let h = Header {
                kind: nft(kind),
                flags,
                seq,
                family: NFPROTO_IPV4,
                res_id: 0,
            };
            put_message(out, h, &attrs)?;
            acked.push(seq);
            Ok(())
        };
        let mut list = Vec::new();
        for (key, data) in &b.elements {
            let mark = list.len();
            put_element(&mut list, key, data.as_deref(), b.interval)?;
            if list.len() > max_list && mark > 0 {
                // This element starts the next message.
                let next = list.split_off(mark);
                put_list(&mut out, &list)?;
                list = next;
            }
        }
        put_list(&mut out, &list)?;
    }
    for (chain, set) in remove {
        let mut flush = Vec::new();
        put_attr(&mut flush, NFTA_RULE_TABLE, &table_attr)?;
        put_attr(&mut flush, NFTA_RULE_CHAIN, &strz(chain))?;
        let mut del_chain = Vec::new();
        put_attr(&mut del_chain, NFTA_CHAIN_TABLE, &table_attr)?;
        put_attr(&mut del_chain, NFTA_CHAIN_NAME, &strz(chain))?;
        let mut del_set = Vec::new();
        put_attr(&mut del_set, NFTA_SET_TABLE, &table_attr)?;
        put_attr(&mut del_set, NFTA_SET_NAME, &strz(set))?;
        for (kind, attrs) in [
            (NFT_MSG_DELRULE, flush),
            (NFT_MSG_DELCHAIN, del_chain),
            (NFT_MSG_DELSET, del_set),
        ] {
            seq = seq.wrapping_add(1);
            let h = Header {
                kind: nft(kind),
                flags: NLM_F_ACK,
                seq,
                family: NFPROTO_IPV4,
                res_id: 0,
            };
            put_message(&mut out, h, &attrs)?;
            acked.push(seq);
        }
    }
    seq = seq.wrapping_add(1);
    let end = Header {
        kind: NFNL_MSG_BATCH_END,
        flags: 0,
        seq,
        family: 0,
        res_id: NFNL_SUBSYS_NFTABLES,
    };
    put_message(&mut out, end, &[])?;
    Ok(Batch {
        bytes: out,
        acked,
        last_seq: seq,
    })
}

#[cfg(test)]
mod tests;
