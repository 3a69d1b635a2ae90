//! The encoder's messages, byte for byte, and how it splits long element lists. The literal
//! byte strings are for a little-endian host (netlink headers are in native order).

use std::net::Ipv4Addr;

use super::*;

const PUBLIC: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 11);

/// One message as the kernel reads it.
#[derive(Debug)]
struct Msg<'a> {
    kind: u16,
    flags: u16,
    seq: u32,
    family: u8,
    res_id: u16,
    attrs: &'a [u8],
}

/// Splits a batch into its messages, checking every length on the way.
fn messages(bytes: &[u8]) -> Vec<Msg<'_>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let len = u32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        assert!(len >= HEADER_LEN, "message at {at} is {len} bytes");
        assert_eq!(len % 4, 0, "message at {at} is not aligned");
        assert!(at + len <= bytes.len(), "message at {at} runs past the end");
        let m = &bytes[at..at + len];
        out.push(Msg {
            kind: u16::from_ne_bytes([m[4], m[5]]),
            flags: u16::from_ne_bytes([m[6], m[7]]),
            seq: u32::from_ne_bytes(m[8..12].try_into().unwrap()),
            family: m[16],
            res_id: u16::from_be_bytes([m[18], m[19]]),
            attrs: &m[HEADER_LEN..],
        });
        at += len;
    }
    out
}

/// Splits attributes into `(type, payload)`, checking every length and padding.
fn attrs(bytes: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let len = usize::from(u16::from_ne_bytes([bytes[at], bytes[at + 1]]));
        let kind = u16::from_ne_bytes([bytes[at + 2], bytes[at + 3]]);
        assert!(len >= 4 && at + len <= bytes.len(), "attribute at {at}");
        out.push((kind, &bytes[at + 4..at + len]));
        at += len.div_ceil(4) * 4;
    }
    assert_eq!(at, bytes.len(), "padding past the last attribute");
    out
}

fn one(set: &str, delete: bool, key: Vec<Field>, data: Option<Vec<Field>>) -> ElementBatch {
    ElementBatch {
        set: set.to_string(),
        interval: false,
        delete,
        elements: vec![(key, data)],
    }
}

fn encode(batches: &[ElementBatch], remove: &[(String, String)]) -> Batch {
    encode_batch("t", 7, 100, batches, remove).expect("encodes")
}

/// Batch begin (generation 7, sequence 100) and batch end (sequence `end_seq`).
fn begin_end(end_seq: u8) -> (Vec<u8>, Vec<u8>) {
    let begin = [
        &[28, 0, 0, 0, 0x10, 0, 1, 0, 100, 0, 0, 0, 0, 0, 0, 0][..], // nlmsghdr
        &[0, 0, 0, 10],                                              // nfgenmsg: nftables
        &[8, 0, 1, 0, 0, 0, 0, 7],                                   // NFNL_BATCH_GENID
    ]
    .concat();
    let end = [
        &[20, 0, 0, 0, 0x11, 0, 1, 0, end_seq, 0, 0, 0, 0, 0, 0, 0][..],
        &[0, 0, 0, 10],
    ]
    .concat();
    (begin, end)
}

#[cfg(target_endian = "little")]
#[test]
fn generation_request_is_a_bare_getgen_header() {
    assert_eq!(
        getgen_request(5).expect("encodes"),
        [20, 0, 0, 0, 0x10, 0x0a, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    );
}

#[cfg(target_endian = "little")]
#[test]
fn table_request_names_the_table_in_family_ip() {
    // nlmsghdr: 28 bytes in all, NFT_MSG_GETTABLE (10 << 8 | 1), NLM_F_REQUEST, seq 7; nfgenmsg:
    // NFPROTO_IPV4; NFTA_TABLE_NAME "gn\0", padded to 4 bytes.
    assert_eq!(
        gettable_request(7, "gn").expect("encodes"),
        [
            28, 0, 0, 0, 0x01, 0x0a, 1, 0, 7, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 7, 0, 1, 0, b'g',
            b'n', 0, 0
        ]
    );
}

#[cfg(target_endian = "little")]
#[test]
fn empty_batch_is_begin_with_the_generation_then_end() {
    let batch = encode(&[], &[]);
    let (begin, end) = begin_end(101);
    assert_eq!(batch.bytes, [begin, end].concat());
    assert!(batch.acked.is_empty());
    assert_eq!(batch.last_seq, 101);
}

#[cfg(target_endian = "little")]
#[test]
fn new_element_of_a_concatenated_set_is_byte_exact() {
    let batch = encode(
        &[one(
            "in_x_0",
            false,
            vec![Field::Ipv4(PUBLIC), Field::Proto(6), Field::Port(80)],
            None,
        )],
        &[],
    );
    let (begin, end) = begin_end(102);
    let newsetelem = [
        // nlmsghdr: 68 bytes, NFT_MSG_NEWSETELEM, REQUEST|ACK|CREATE, seq 101
        &[
            68, 0, 0, 0, 0x0c, 0x0a, 0x05, 0x04, 101, 0, 0, 0, 0, 0, 0, 0,
        ][..],
        &[2, 0, 0, 0], // nfgenmsg: ipv4
        &[6, 0, 1, 0, b't', 0, 0, 0],
        &[11, 0, 2, 0, b'i', b'n', b'_', b'x', b'_', b'0', 0, 0],
        &[28, 0, 0x03, 0x80], // NFTA_SET_ELEM_LIST_ELEMENTS, nested
        &[24, 0, 0x01, 0x80], // NFTA_LIST_ELEM, nested
        &[20, 0, 0x01, 0x80], // NFTA_SET_ELEM_KEY, nested
        &[16, 0, 1, 0],       // NFTA_DATA_VALUE: each field padded to 4 bytes
        &[203, 0, 113, 11, 6, 0, 0, 0, 0, 80, 0, 0],
    ]
    .concat();
    assert_eq!(batch.bytes, [begin, newsetelem, end].concat());
    assert_eq!(batch.acked, [101]);
}

#[cfg(target_endian = "little")]
#[test]
fn deleted_jump_of_a_verdict_map_is_byte_exact() {
    let batch = encode(
        &[one(
            "in_r_0",
            true,
            vec![Field::Ipv4(PUBLIC), Field::Proto(17)],
            Some(vec![Field::Jump("b1".to_string())]),
        )],
        &[],
    );
    let (begin, end) = begin_end(102);
    let delsetelem = [
        // nlmsghdr: 88 bytes, NFT_MSG_DELSETELEM, REQUEST|ACK, seq 101
        &[
            88, 0, 0, 0, 0x0e, 0x0a, 0x05, 0x00, 101, 0, 0, 0, 0, 0, 0, 0,
        ][..],
        &[2, 0, 0, 0],
        &[6, 0, 1, 0, b't', 0, 0, 0],
        &[11, 0, 2, 0, b'i', b'n', b'_', b'r', b'_', b'0', 0, 0],
        &[48, 0, 0x03, 0x80],                         // element list
        &[44, 0, 0x01, 0x80],                         // the element
        &[16, 0, 0x01, 0x80],                         // its key
        &[12, 0, 1, 0, 203, 0, 113, 11, 17, 0, 0, 0], // address . protocol
        &[24, 0, 0x02, 0x80],                         // NFTA_SET_ELEM_DATA
        &[20, 0, 0x02, 0x80],                         // NFTA_DATA_VERDICT
        &[8, 0, 1, 0, 0xff, 0xff, 0xff, 0xfd],        // NFTA_VERDICT_CODE: NFT_JUMP
        &[7, 0, 2, 0, b'b', b'1', 0, 0],              // NFTA_VERDICT_CHAIN, padded
    ]
    .concat();
    assert_eq!(batch.bytes, [begin, delsetelem, end].concat());
}

#[cfg(target_endian = "little")]
#[test]
fn port_range_is_a_start_and_an_end_element_after_its_last_port() {
    let ranges = ElementBatch {
        set: "b".to_string(),
        interval: true,
        delete: false,
        elements: vec![
            (vec![Field::PortRange(8000, 8100)], None),
            (vec![Field::PortRange(9000, 65535)], None),
        ],
    };
    let batch = encode(&[ranges], &[]);
    let msgs = messages(&batch.bytes);
    assert_eq!(msgs.len(), 3);
    let list = [
        &[60, 0, 0x03, 0x80][..],
        // 8000: start
        &[
            16, 0, 0x01, 0x80, 12, 0, 0x01, 0x80, 6, 0, 1, 0, 0x1f, 0x40, 0, 0,
        ],
        // 8101: end (NFTA_SET_ELEM_FLAGS = NFT_SET_ELEM_INTERVAL_END)
        &[24, 0, 0x01, 0x80, 8, 0, 3, 0, 0, 0, 0, 1],
        &[12, 0, 0x01, 0x80, 6, 0, 1, 0, 0x1f, 0xa5, 0, 0],
        // 9000: start, and no end past the last port
        &[
            16, 0, 0x01, 0x80, 12, 0, 0x01, 0x80, 6, 0, 1, 0, 0x23, 0x28, 0, 0,
        ],
    ]
    .concat();
    let set = [&[6, 0, 2, 0, b'b', 0, 0, 0][..]].concat();
    assert_eq!(
        msgs[1].attrs,
        [&[6, 0, 1, 0, b't', 0, 0, 0][..], &set, &list].concat()
    );
}

#[cfg(target_endian = "little")]
#[test]
fn removed_bucket_flushes_and_deletes_its_chain_then_its_set() {
    let batch = encode(&[], &[("b1".to_string(), "s1".to_string())]);
    let msgs = messages(&batch.bytes);
    let kinds: Vec<(u16, u16, u32)> = msgs.iter().map(|m| (m.kind, m.flags, m.seq)).collect();
    assert_eq!(
        kinds,
        [
            (0x10, 0x01, 100),   // batch begin
            (0x0a08, 0x05, 101), // NFT_MSG_DELRULE: flush the chain
            (0x0a05, 0x05, 102), // NFT_MSG_DELCHAIN
            (0x0a0b, 0x05, 103), // NFT_MSG_DELSET
            (0x11, 0x01, 104),   // batch end
        ]
    );
    let table = &[6, 0, 1, 0, b't', 0, 0, 0][..];
    assert_eq!(
        msgs[1].attrs,
        [table, &[7, 0, 2, 0, b'b', b'1', 0, 0]].concat()
    );
    assert_eq!(
        msgs[2].attrs,
        [table, &[7, 0, 3, 0, b'b', b'1', 0, 0]].concat()
    );
    assert_eq!(
        msgs[3].attrs,
        [table, &[7, 0, 2, 0, b's', b'1', 0, 0]].concat()
    );
    assert_eq!(batch.acked, [101, 102, 103]);
}

#[test]
fn attribute_over_its_length_field_is_an_error_and_writes_nothing() {
    let mut out = vec![1, 2, 3, 4];
    let too_long = vec![0u8; MAX_ATTR_PAYLOAD + 1];
    assert_eq!(
        put_attr(&mut out, 3, &too_long),
        Err(EncodeError::AttributeTooLong {
            kind: 3,
            len: 65536
        })
    );
    assert_eq!(out, [1, 2, 3, 4]);

    let longest = vec![0u8; MAX_ATTR_PAYLOAD];
    put_attr(&mut out, 3, &longest).expect("fits");
    assert_eq!(u16::from_ne_bytes([out[4], out[5]]), u16::MAX);
    assert_eq!(out.len(), 4 + 65536, "padded to 4 bytes");
}

#[test]
fn element_too_long_for_any_message_is_an_error() {
    let chain = "c".repeat(70_000);
    let result = encode_batch(
        "t",
        7,
        100,
        &[one(
            "m",
            false,
            vec![Field::Ipv4(PUBLIC), Field::Proto(6)],
            Some(vec![Field::Jump(chain)]),
        )],
        &[],
    );
    assert!(
        matches!(result, Err(EncodeError::AttributeTooLong { len, .. }) if len > 65535),
        "{result:?}"
    );
}

/// Port-forward elements (address . protocol . port : address . port), one per port.
fn forwards(count: u16, delete: bool) -> ElementBatch {
    ElementBatch {
        set: "pf_x_0".to_string(),
        interval: false,
        delete,
        elements: (0..count)
            .map(|i| {
                (
                    vec![
                        Field::Ipv4(PUBLIC),
                        Field::Proto(6),
                        Field::Port(10_000 + i),
                    ],
                    Some(vec![
                        Field::Ipv4(Ipv4Addr::new(10, 1, 1, 11)),
                        Field::Port(20_000 + i),
                    ]),
                )
            })
            .collect(),
    }
}

/// The ports of every element of `msgs`' element lists, in order, with the message each is in.
fn listed_ports(msgs: &[Msg<'_>]) -> Vec<(u32, u16)> {
    let mut out = Vec::new();
    for m in msgs {
        for (kind, list) in attrs(m.attrs) {
            if kind != NFTA_SET_ELEM_LIST_ELEMENTS | NLA_F_NESTED {
                continue;
            }
            for (_, elem) in attrs(list) {
                let (_, key) = attrs(elem)[0];
                let (_, value) = attrs(key)[0];
                out.push((m.seq, u16::from_be_bytes([value[8], value[9]])));
            }
        }
    }
    out
}

#[test]
fn ten_thousand_elements_split_over_messages_of_one_batch() {
    let batch = encode(&[forwards(10_000, false), forwards(3, true)], &[]);
    let msgs = messages(&batch.bytes);
    assert_eq!(msgs.first().map(|m| m.kind), Some(NFNL_MSG_BATCH_BEGIN));
    assert_eq!(msgs.last().map(|m| m.kind), Some(NFNL_MSG_BATCH_END));
    let seqs: Vec<u32> = msgs.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (100..100 + msgs.len() as u32).collect::<Vec<_>>());
    let body = &msgs[1..msgs.len() - 1];
    let adds = body.iter().filter(|m| m.kind == nft(NFT_MSG_NEWSETELEM));
    assert!(adds.count() > 1, "10,000 elements need several messages");
    assert_eq!(body.last().map(|m| m.kind), Some(nft(NFT_MSG_DELSETELEM)));
    for m in body {
        assert_eq!((m.family, m.res_id), (NFPROTO_IPV4, 0));
        assert_ne!(m.flags & NLM_F_ACK, 0);
        let list = attrs(m.attrs)
            .into_iter()
            .find(|(k, _)| *k == NFTA_SET_ELEM_LIST_ELEMENTS | NLA_F_NESTED)
            .expect("an element list");
        assert!(list.1.len() <= MAX_ATTR_PAYLOAD);
    }
    assert_eq!(batch.acked, seqs[1..seqs.len() - 1]);
    let ports: Vec<u16> = listed_ports(body).into_iter().map(|(_, p)| p).collect();
    let expected: Vec<u16> = (10_000..20_000).chain(10_000..10_003).collect();
    assert_eq!(ports, expected, "every element once, in order");
}

#[test]
fn change_that_fits_one_message_stays_one_message() {
    // A port forward's element takes 40 bytes: 1,638 of them fill one element list.
    let batch = encode(&[forwards(1_638, false)], &[]);
    assert_eq!(messages(&batch.bytes).len(), 3);
    let batch = encode(&[forwards(1_639, false)], &[]);
    assert_eq!(messages(&batch.bytes).len(), 4);
}

#[test]
fn split_never_separates_a_range_from_its_end() {
    let ranges = ElementBatch {
        set: "b".to_string(),
        interval: true,
        delete: true,
        elements: (0..5u16)
            .map(|i| (vec![Field::PortRange(i * 100, i * 100 + 10)], None))
            .collect(),
    };
    // One range (start and end) takes 40 bytes; a 50-byte limit fits one range a message.
    let batch = encode_batch_split("t", 7, 100, &[ranges], &[], 50).expect("encodes");
    let msgs = messages(&batch.bytes);
    assert_eq!(msgs.len(), 7);
    for m in &msgs[1..6] {
        let (_, list) = attrs(m.attrs)[2];
        assert_eq!(attrs(list).len(), 2, "a start and its end");
        assert_eq!(m.kind, nft(NFT_MSG_DELSETELEM));
    }
}
