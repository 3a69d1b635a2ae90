//! The ledger's storage: a snapshot of the whole config plus an append-only journal of what
//! changed since, in segment files.
//!
//! Every record is framed the same way (little-endian):
//!
//! ```text
//! 0   u32  payload length
//! 4   u32  CRC-32C of bytes 8.. (header rest and payload)
//! 8   u8   kind: 1 seen, 2 delta, 3 config, 4 snapshot
//! 9   u64  base generation (the config generation the record applies to; 0 for none)
//! 17  u64  generation
//! 25  …    payload: nothing (seen), a RouterDelta (delta), a RouterConfig (config), or the
//!          snapshot body, as JSON
//! ```
//!
//! A segment (`journal-<20 digits>`) is a sequence of records. `snapshot` is one snapshot record:
//! the config, the highest generation seen and the first segment it does not cover. Replay
//! starts from the snapshot and applies the segments it does not cover, in order; records chain:
//! a delta or config names the generation it was applied to, which must be the one held, and a
//! seen record must raise the highest generation seen. The first record that is short, fails
//! its checksum, does not chain or does not parse ends the replay: the segment is cut there and
//! any later segment set aside as `<name>.dropped`, each with a warning.
//!
//! A snapshot is written off the apply path: the apply path only starts a new segment (one file
//! created, the directory synced) once the current one holds [`SEGMENT_RECORDS`] records or
//! [`SEGMENT_BYTES`] bytes, and a background thread folds the sealed segments into a new snapshot
//! read back from disk (`snapshot.tmp`, synced, renamed over `snapshot`, the directory synced),
//! then deletes the segments it covers. A crash at any point leaves either the old snapshot with
//! every segment, or the new snapshot with segments it covers (ignored and deleted on open).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use router_config::{
    DeltaError, Generation, RouterConfig, RouterDelta, WireEgressRule, WireFirewallRule,
    WireLoadBalancer, WirePortForward,
};
use serde::{Deserialize, Serialize};

use crate::ledger::LedgerError;

/// Records a segment takes before the apply path starts the next one (and a snapshot is made of
/// the sealed ones in the background).
pub const SEGMENT_RECORDS: u64 = 1024;
/// Bytes a segment takes before the apply path starts the next one: full-config records (a
/// change applied without a base in memory) are as large as the config.
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// The bytes of a record's header.
pub(crate) const HEADER: usize = 25;
pub(crate) const SNAPSHOT: &str = "snapshot";
const SNAPSHOT_TMP: &str = "snapshot.tmp";
const SEGMENT_PREFIX: &str = "journal-";
/// Files of the state directory written by the ledger that kept whole configs.
pub(crate) const LEGACY: [&str; 5] = [
    "config.json",
    "seen-generation",
    "candidate.json",
    "seen-generation.tmp",
    "config.json.tmp",
];

const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

const SEEN: u8 = 1;
const DELTA: u8 = 2;
const CONFIG: u8 = 3;
const SNAP: u8 = 4;

/// Why a record cannot be replayed.
#[derive(Debug, thiserror::Error)]
pub enum RecordFault {
    /// Fewer bytes left than a header takes.
    #[error("{have} bytes left, a record header takes {HEADER}")]
    ShortHeader {
        /// Bytes left.
        have: usize,
    },
    /// Fewer bytes left than the header announces.
    #[error("the header announces {len} bytes of payload, {have} are left")]
    ShortPayload {
        /// Announced.
        len: u32,
        /// Left.
        have: usize,
    },
    /// The checksum does not match.
    #[error("checksum {found:#010x}, the bytes sum to {computed:#010x}")]
    Checksum {
        /// Stored.
        found: u32,
        /// Computed.
        computed: u32,
    },
    /// A kind this program does not write (or not in this place).
    #[error("record kind {0} is not expected here")]
    Kind(u8),
    /// A change not applied to the config held.
    #[error("generation {generation} is based on generation {base}, the journal holds {held}")]
    Chain {
        /// The record's base.
        base: Generation,
        /// The record's generation.
        generation: Generation,
        /// The generation held before it.
        held: Generation,
    },
    /// A seen record that does not raise the highest generation seen, or a change of a
    /// generation never recorded as seen.
    #[error("generation {generation} out of order (highest seen: {seen})")]
    Seen {
        /// The record's generation.
        generation: Generation,
        /// The highest generation seen before it.
        seen: Generation,
    },
    /// The header and the payload disagree on the generations.
    #[error("the header says {base}→{generation}, the payload says otherwise")]
    Header {
        /// The header's base.
        base: Generation,
        /// The header's generation.
        generation: Generation,
    },
    /// The payload is not JSON of the expected shape.
    #[error("the payload does not parse")]
    Payload(#[source] serde_json::Error),
    /// The delta does not apply to the config held.
    #[error("the delta does not apply")]
    Delta(#[source] DeltaError),
}

/// One decoded record, borrowing its payload.
#[derive(Debug)]
pub(crate) struct Record<'a> {
    kind: u8,
    base: Generation,
    generation: Generation,
    payload: &'a [u8],
}

/// Frames a record.
pub(crate) fn encode(
    kind: u8,
    base: Generation,
    generation: Generation,
    payload: &[u8],
) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(kind);
    out.extend_from_slice(&base.to_le_bytes());
    out.extend_from_slice(&generation.to_le_bytes());
    out.extend_from_slice(payload);
    let sum = CRC.checksum(&out[8..]);
    out[4..8].copy_from_slice(&sum.to_le_bytes());
    out
}

/// Decodes the record at the start of `buf`; returns it and its length.
pub(crate) fn decode(buf: &[u8]) -> Result<(Record<'_>, usize), RecordFault> {
    if buf.len() < HEADER {
        return Err(RecordFault::ShortHeader { have: buf.len() });
    }
    let u32_at = |i: usize| u32::from_le_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
    let u64_at = |i: usize| {
        let mut b = [0; 8];
        b.copy_from_slice(&buf[i..i + 8]);
        u64::from_le_bytes(b)
    };
    let len = u32_at(0);
    let total = HEADER.saturating_add(len as usize);
    if buf.len() < total {
        return Err(RecordFault::ShortPayload {
            len,
            have: buf.len() - HEADER,
        });
    }
    let found = u32_at(4);
    let computed = CRC.checksum(&buf[8..total]);
    if found != computed {
        return Err(RecordFault::Checksum { found, computed });
    }
    Ok((
        Record {
            kind: buf[8],
            base: u64_at(9),
            generation: u64_at(17),
            payload: &buf[HEADER..total],
        },
        total,
    ))
}

/// A config held as maps keyed by rule id, so a delta applies in place in O(changes · log n).
#[derive(Debug)]
pub(crate) struct Parts {
    /// Everything but the rules.
    head: RouterConfig,
    firewall: BTreeMap<u64, WireFirewallRule>,
    egress: BTreeMap<u64, WireEgressRule>,
    forwards: BTreeMap<u64, WirePortForward>,
    balancers: BTreeMap<u64, WireLoadBalancer>,
}

impl Parts {
    fn new(mut c: RouterConfig) -> Parts {
        let firewall = std::mem::take(&mut c.firewall_rules)
            .into_iter()
            .map(|r| (r.id, r))
            .collect();
        let egress = std::mem::take(&mut c.egress_rules)
            .into_iter()
            .map(|r| (r.id, r))
            .collect();
        let forwards = std::mem::take(&mut c.port_forwards)
            .into_iter()
            .map(|r| (r.id, r))
            .collect();
        let balancers = std::mem::take(&mut c.load_balancers)
            .into_iter()
            .map(|r| (r.id, r))
            .collect();
        Parts {
            head: c,
            firewall,
            egress,
            forwards,
            balancers,
        }
    }

    fn generation(&self) -> Generation {
        self.head.generation
    }

    fn into_config(self) -> RouterConfig {
        let mut c = self.head;
        c.firewall_rules = self.firewall.into_values().collect();
        c.egress_rules = self.egress.into_values().collect();
        c.port_forwards = self.forwards.into_values().collect();
        c.load_balancers = self.balancers.into_values().collect();
        c
    }

    /// Applies a delta as [`RouterDelta::apply_to`] does; checks everything before changing
    /// anything.
    fn apply(&mut self, d: &RouterDelta) -> Result<(), DeltaError> {
        if d.schema != router_config::SCHEMA_VERSION {
            return Err(DeltaError::Schema(d.schema));
        }
        if d.base_generation != self.head.generation {
            return Err(DeltaError::BaseMismatch {
                base: d.base_generation,
                held: self.head.generation,
            });
        }
        let known = |id: &u64| {
            self.firewall.contains_key(id)
                || self.egress.contains_key(id)
                || self.forwards.contains_key(id)
                || self.balancers.contains_key(id)
        };
        if let Some(id) = d.remove.iter().find(|id| !known(id)) {
            return Err(DeltaError::UnknownRule(*id));
        }
        let h = &mut self.head;
        h.generation = d.generation;
        if let Some(p) = &d.public {
            h.public = p.clone();
        }
        if let Some(g) = &d.guest {
            h.guest = g.clone();
        }
        if let Some(e) = d.egress_default {
            h.egress_default = e;
        }
        if d.dhcp_off {
            h.dhcp = None;
        }
        if let Some(s) = &d.dhcp {
            h.dhcp = Some(s.clone());
        }
        for id in &d.remove {
            self.firewall.remove(id);
            self.egress.remove(id);
            self.forwards.remove(id);
            self.balancers.remove(id);
        }
        for r in &d.upsert_firewall_rules {
            self.firewall.insert(r.id, r.clone());
        }
        for r in &d.upsert_egress_rules {
            self.egress.insert(r.id, r.clone());
        }
        for r in &d.upsert_port_forwards {
            self.forwards.insert(r.id, r.clone());
        }
        for r in &d.upsert_load_balancers {
            self.balancers.insert(r.id, r.clone());
        }
        Ok(())
    }
}

/// What a replay holds.
#[derive(Debug, Default)]
pub(crate) struct Replayed {
    /// The highest generation ever received.
    pub(crate) seen: Generation,
    /// The last config the kernel accepted.
    pub(crate) config: Option<Parts>,
}

impl Replayed {
    /// The generation of the config held, 0 for none.
    pub(crate) fn head(&self) -> Generation {
        self.config.as_ref().map_or(0, Parts::generation)
    }

    pub(crate) fn into_config(self) -> Option<RouterConfig> {
        self.config.map(Parts::into_config)
    }

    /// Applies one journal record; on error nothing changed.
    fn apply(&mut self, r: &Record<'_>) -> Result<(), RecordFault> {
        let held = self.head();
        let chain = || RecordFault::Chain {
            base: r.base,
            generation: r.generation,
            held,
        };
        match r.kind {
            SEEN => {
                if r.generation <= self.seen {
                    return Err(RecordFault::Seen {
                        generation: r.generation,
                        seen: self.seen,
                    });
                }
                self.seen = r.generation;
            }
            DELTA | CONFIG => {
                if r.base != held || r.generation <= held {
                    return Err(chain());
                }
                if r.generation > self.seen {
                    return Err(RecordFault::Seen {
                        generation: r.generation,
                        seen: self.seen,
                    });
                }
                let header = || RecordFault::Header {
                    base: r.base,
                    generation: r.generation,
                };
                if r.kind == DELTA {
                    let d: RouterDelta =
                        serde_json::from_slice(r.payload).map_err(RecordFault::Payload)?;
                    if d.base_generation != r.base || d.generation != r.generation {
                        return Err(header());
                    }
                    let parts = self.config.as_mut().ok_or_else(chain)?;
                    parts.apply(&d).map_err(RecordFault::Delta)?;
                } else {
                    let c: RouterConfig =
                        serde_json::from_slice(r.payload).map_err(RecordFault::Payload)?;
                    if c.generation != r.generation {
                        return Err(header());
                    }
                    self.config = Some(Parts::new(c));
                }
            }
            other => return Err(RecordFault::Kind(other)),
        }
        Ok(())
    }
}

/// The snapshot file's body.
#[derive(Debug, Deserialize)]
struct SnapshotBody {
    /// The first segment the snapshot does not cover.
    next_segment: u64,
    /// The highest generation seen.
    seen: Generation,
    /// The config held.
    config: Option<RouterConfig>,
}

#[derive(Serialize)]
struct SnapshotOut<'a> {
    next_segment: u64,
    seen: Generation,
    config: Option<&'a RouterConfig>,
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> LedgerError + 'a {
    move |source| LedgerError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), LedgerError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync", dir))
}

fn segment_name(seq: u64) -> String {
    format!("{SEGMENT_PREFIX}{seq:020}")
}

/// The journal's segments in `dir`, by sequence number.
fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, LedgerError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io("list", dir))? {
        let entry = entry.map_err(io("list", dir))?;
        let name = entry.file_name();
        let Some(seq) = name
            .to_str()
            .and_then(|n| n.strip_prefix(SEGMENT_PREFIX))
            .filter(|n| n.len() == 20 && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        out.push((seq, entry.path()));
    }
    out.sort_unstable();
    Ok(out)
}

fn damaged(path: &Path, offset: u64, fault: RecordFault) -> LedgerError {
    LedgerError::Damaged {
        path: path.to_path_buf(),
        offset,
        fault,
    }
}

/// Reads the snapshot: what it holds and the first segment it does not cover.
fn read_snapshot(dir: &Path) -> Result<Option<(Replayed, u64)>, LedgerError> {
    let path = dir.join(SNAPSHOT);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("read", &path)(e)),
    };
    let (record, len) = decode(&bytes).map_err(|f| damaged(&path, 0, f))?;
    if record.kind != SNAP {
        return Err(damaged(&path, 0, RecordFault::Kind(record.kind)));
    }
    if len != bytes.len() {
        let have = bytes.len() - len;
        return Err(damaged(
            &path,
            len as u64,
            RecordFault::ShortHeader { have },
        ));
    }
    let body: SnapshotBody = serde_json::from_slice(record.payload)
        .map_err(|e| damaged(&path, 0, RecordFault::Payload(e)))?;
    let replayed = Replayed {
        seen: body.seen,
        config: body.config.map(Parts::new),
    };
    Ok(Some((replayed, body.next_segment)))
}

/// Writes `snapshot.tmp` (synced): the first step of making a snapshot.
pub(crate) fn write_snapshot_tmp(
    dir: &Path,
    seen: Generation,
    config: Option<&RouterConfig>,
    next_segment: u64,
) -> Result<(), LedgerError> {
    let path = dir.join(SNAPSHOT_TMP);
    let body = serde_json::to_vec(&SnapshotOut {
        next_segment,
        seen,
        config,
    })
    .map_err(|source| LedgerError::Corrupt {
        path: path.clone(),
        source,
    })?;
    let record = encode(SNAP, 0, config.map_or(0, |c| c.generation), &body);
    let mut f = File::create(&path).map_err(io("create", &path))?;
    f.write_all(&record).map_err(io("write", &path))?;
    f.sync_all().map_err(io("sync", &path))
}

/// Renames `snapshot.tmp` over `snapshot` and syncs the directory: the snapshot's commit point.
pub(crate) fn install_snapshot(dir: &Path) -> Result<(), LedgerError> {
    let tmp = dir.join(SNAPSHOT_TMP);
    std::fs::rename(&tmp, dir.join(SNAPSHOT)).map_err(io("rename", &tmp))?;
    sync_dir(dir)
}

/// Deletes the segments below `next_segment` (covered by the snapshot).
pub(crate) fn drop_covered(dir: &Path, next_segment: u64) -> Result<(), LedgerError> {
    for (seq, path) in segments(dir)? {
        if seq < next_segment {
            std::fs::remove_file(&path).map_err(io("remove", &path))?;
        }
    }
    Ok(())
}

/// Where a replay of the segments stopped early.
#[derive(Debug)]
struct Tail {
    /// Index (in the list replayed) of the segment with the bad record.
    index: usize,
    /// Offset of the bad record.
    offset: u64,
    /// Bytes from there to the segment's end.
    dropped: u64,
    fault: RecordFault,
}

/// Replays `list` into `state`; returns the records and bytes of the last segment read whole,
/// and where it stopped early, if it did.
fn replay_segments(
    state: &mut Replayed,
    list: &[(u64, PathBuf)],
) -> Result<((u64, u64), Option<Tail>), LedgerError> {
    let mut last = (0, 0);
    for (index, (_, path)) in list.iter().enumerate() {
        let bytes = std::fs::read(path).map_err(io("read", path))?;
        let mut offset = 0usize;
        let mut records = 0u64;
        while offset < bytes.len() {
            let step = decode(&bytes[offset..]).and_then(|(r, len)| state.apply(&r).map(|()| len));
            match step {
                Ok(len) => {
                    offset += len;
                    records += 1;
                }
                Err(fault) => {
                    return Ok((
                        (records, offset as u64),
                        Some(Tail {
                            index,
                            offset: offset as u64,
                            dropped: (bytes.len() - offset) as u64,
                            fault,
                        }),
                    ))
                }
            }
        }
        last = (records, offset as u64);
    }
    Ok((last, None))
}

/// Reads everything the state directory holds without changing it (the caller holds the lock
/// and the compaction guard): for a config asked for after the open.
pub(crate) fn read_all(dir: &Path) -> Result<Replayed, LedgerError> {
    let (mut state, next) = read_snapshot(dir)?.unwrap_or_default();
    let list: Vec<_> = segments(dir)?
        .into_iter()
        .filter(|(seq, _)| *seq >= next)
        .collect();
    let (_, tail) = replay_segments(&mut state, &list)?;
    match tail {
        None => Ok(state),
        Some(t) => Err(damaged(&list[t.index].1, t.offset, t.fault)),
    }
}

/// The writing end of the journal.
#[derive(Debug)]
pub(crate) struct Journal {
    dir: PathBuf,
    seen: Generation,
    /// The generation of the config held (0: none).
    head: Generation,
    seq: u64,
    file: File,
    records: u64,
    bytes: u64,
    /// Set when a failed append could not be cut back: nothing more is appended.
    broken: bool,
    /// Set when a `seen` record was written and not yet made durable: the next change record's
    /// fdatasync covers it, and [`Journal::sync`] does when none follows.
    unsynced: bool,
    /// Held while the snapshot is swapped and covered segments deleted, and while the whole
    /// state is read back.
    guard: Arc<Mutex<()>>,
    compaction: Option<std::thread::JoinHandle<()>>,
}

/// A record prepared before the kernel commit, appended after it.
#[derive(Debug)]
pub(crate) struct Pending {
    generation: Generation,
    bytes: Vec<u8>,
}

impl Journal {
    /// Opens the journal of a locked state directory: adopts the whole-config files of the
    /// earlier ledger, finishes an interrupted snapshot, replays, and cuts a damaged tail.
    pub(crate) fn open(dir: &Path) -> Result<(Journal, Option<RouterConfig>), LedgerError> {
        let tmp = dir.join(SNAPSHOT_TMP);
        if tmp.exists() {
            std::fs::remove_file(&tmp).map_err(io("remove", &tmp))?;
        }
        let snapshot = match read_snapshot(dir)? {
            Some(s) => Some(s),
            None => adopt_legacy(dir)?,
        };
        // Left over from an adoption interrupted after its snapshot.
        for name in LEGACY {
            let path = dir.join(name);
            if path.exists() {
                std::fs::remove_file(&path).map_err(io("remove", &path))?;
            }
        }
        let (mut state, next) = snapshot.unwrap_or_default();
        let mut list = segments(dir)?;
        let covered: Vec<_> = list.iter().filter(|(s, _)| *s < next).cloned().collect();
        for (_, path) in &covered {
            std::fs::remove_file(path).map_err(io("remove", path))?;
        }
        list.retain(|(s, _)| *s >= next);
        let ((mut records, mut bytes), tail) = replay_segments(&mut state, &list)?;
        if let Some(t) = tail {
            let (seq, path) = list[t.index].clone();
            let path = &path;
            tracing::warn!(
                segment = %path.display(),
                offset = t.offset,
                bytes = t.dropped,
                reason = %crate::chain(&t.fault),
                "journal: dropping a damaged or torn tail; the state is the last whole record's"
            );
            let f = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(io("open", path))?;
            f.set_len(t.offset).map_err(io("truncate", path))?;
            f.sync_all().map_err(io("sync", path))?;
            for (_, later) in &list[t.index + 1..] {
                let aside = later.with_file_name(format!(
                    "{}.dropped",
                    later.file_name().unwrap_or_default().to_string_lossy()
                ));
                tracing::warn!(segment = %later.display(), to = %aside.display(), "journal: setting aside a segment after a damaged one");
                std::fs::rename(later, &aside).map_err(io("rename", later))?;
            }
            list.retain(|(s, _)| *s <= seq);
            // The cut segment is the last one now; what the loop counted is its whole records.
            let (r, b) = count(path)?;
            records = r;
            bytes = b;
        }
        let (seq, file) = match list.last() {
            Some((seq, path)) => (*seq, open_append(path)?),
            None => {
                let seq = next.max(1);
                (seq, create_segment(dir, seq)?)
            }
        };
        if list.is_empty() {
            records = 0;
            bytes = 0;
        }
        let journal = Journal {
            dir: dir.to_path_buf(),
            seen: state.seen,
            head: state.head(),
            seq,
            file,
            records,
            bytes,
            broken: false,
            unsynced: false,
            guard: Arc::new(Mutex::new(())),
            compaction: None,
        };
        Ok((journal, state.into_config()))
    }

    pub(crate) fn seen(&self) -> Generation {
        self.seen
    }

    pub(crate) fn head(&self) -> Generation {
        self.head
    }

    /// Reads the whole state back from disk.
    pub(crate) fn read_back(&self) -> Result<Replayed, LedgerError> {
        let _held = self
            .guard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        read_all(&self.dir)
    }

    /// Records a newly received generation. It is written at once and made durable by the next
    /// change record's fdatasync, or by [`Journal::sync`] before the router answers without one.
    pub(crate) fn record_seen(&mut self, generation: Generation) -> Result<(), LedgerError> {
        if generation <= self.seen {
            return Ok(());
        }
        self.append(&encode(SEEN, 0, generation, &[]), false)?;
        self.seen = generation;
        Ok(())
    }

    /// Makes every record written so far durable (a no-op when the last append synced).
    pub(crate) fn sync(&mut self) -> Result<(), LedgerError> {
        if !self.unsynced {
            return Ok(());
        }
        let path = self.dir.join(segment_name(self.seq));
        self.file.sync_data().map_err(io("sync", &path))?;
        self.unsynced = false;
        Ok(())
    }

    /// Prepares the record of `next`, about to be committed: nothing when the journal holds it
    /// already (a restore), `delta` when it was received as one against the generation held, the
    /// difference from `previous` when that is the config held, and otherwise the whole config.
    pub(crate) fn prepare(
        &self,
        previous: Option<&RouterConfig>,
        next: &RouterConfig,
        delta: Option<&RouterDelta>,
    ) -> Result<Option<Pending>, LedgerError> {
        let generation = next.generation;
        if generation == self.head {
            return Ok(None);
        }
        let corrupt = |source| LedgerError::Corrupt {
            path: self.dir.join(segment_name(self.seq)),
            source,
        };
        let head = self.head;
        let bytes = match (delta, previous) {
            (Some(d), _)
                if d.base_generation == head && d.generation == generation && head != 0 =>
            {
                encode(
                    DELTA,
                    head,
                    generation,
                    &serde_json::to_vec(d).map_err(corrupt)?,
                )
            }
            (_, Some(p)) if p.generation == head && head != 0 => {
                let d = RouterDelta::between(p, next);
                encode(
                    DELTA,
                    head,
                    generation,
                    &serde_json::to_vec(&d).map_err(corrupt)?,
                )
            }
            _ => encode(
                CONFIG,
                head,
                generation,
                &serde_json::to_vec(next).map_err(corrupt)?,
            ),
        };
        Ok(Some(Pending { generation, bytes }))
    }

    /// Appends a prepared record, durably, after the kernel committed it.
    pub(crate) fn commit(&mut self, pending: Pending) -> Result<(), LedgerError> {
        self.append(&pending.bytes, true)?;
        self.head = pending.generation;
        Ok(())
    }

    fn append(&mut self, record: &[u8], durable: bool) -> Result<(), LedgerError> {
        let path = self.dir.join(segment_name(self.seq));
        if self.broken {
            return Err(LedgerError::Io {
                action: "append to",
                path,
                source: std::io::Error::other(
                    "an earlier append could not be cut back; reopen the router",
                ),
            });
        }
        let written = self.file.write_all(record).and_then(|()| {
            if durable {
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(e) = written {
            // A partial record would hide every later one from a replay: cut it off.
            if self
                .file
                .set_len(self.bytes)
                .and_then(|()| self.file.sync_data())
                .is_err()
            {
                self.broken = true;
            }
            return Err(io("append to", &path)(e));
        }
        self.unsynced = !durable;
        self.records += 1;
        self.bytes += record.len() as u64;
        if self.records >= SEGMENT_RECORDS || self.bytes >= SEGMENT_BYTES {
            self.rotate();
        }
        Ok(())
    }

    /// Starts the next segment and folds the sealed ones into a snapshot in the background. A
    /// failure leaves the journal appending to the current segment.
    fn rotate(&mut self) {
        // What the current segment holds is made durable before appends move on.
        if let Err(e) = self.sync() {
            tracing::warn!(error = %crate::chain(&e), "journal: cannot sync the current segment; appending to it");
            return;
        }
        let next = self.seq + 1;
        match create_segment(&self.dir, next) {
            Ok(file) => {
                self.file = file;
                self.seq = next;
                self.records = 0;
                self.bytes = 0;
            }
            Err(e) => {
                tracing::warn!(error = %crate::chain(&e), "journal: cannot start a new segment; appending to the current one");
                return;
            }
        }
        if self.compaction.as_ref().is_some_and(|h| !h.is_finished()) {
            // The running one leaves the rest to the next rotation.
            return;
        }
        if let Some(h) = self.compaction.take() {
            let _ = h.join();
        }
        let dir = self.dir.clone();
        let guard = Arc::clone(&self.guard);
        let spawned = std::thread::Builder::new()
            .name("journal-snapshot".into())
            .spawn(move || {
                let started = std::time::Instant::now();
                match compact(&dir, next, &guard) {
                    Ok(()) => tracing::debug!(
                        dir = %dir.display(),
                        upto = next,
                        millis = started.elapsed().as_millis() as u64,
                        "journal: snapshot written"
                    ),
                    Err(e) => {
                        tracing::warn!(dir = %dir.display(), error = %crate::chain(&e), "journal: cannot write a snapshot (retried at the next segment)");
                    }
                }
            });
        match spawned {
            Ok(h) => self.compaction = Some(h),
            Err(e) => tracing::warn!(error = %e, "journal: cannot start the snapshot thread"),
        }
    }

    /// Waits for a snapshot being written.
    pub(crate) fn settle(&mut self) {
        if let Some(h) = self.compaction.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        // The directory's lock goes with the ledger: nothing may still write in it then.
        self.settle();
    }
}

/// Folds the snapshot and the segments below `upto` into a new snapshot, read from disk.
pub(crate) fn compact(dir: &Path, upto: u64, guard: &Mutex<()>) -> Result<(), LedgerError> {
    let (mut state, next) = read_snapshot(dir)?.unwrap_or_default();
    let list: Vec<_> = segments(dir)?
        .into_iter()
        .filter(|(seq, _)| *seq >= next && *seq < upto)
        .collect();
    let (_, tail) = replay_segments(&mut state, &list)?;
    if let Some(t) = tail {
        return Err(damaged(&list[t.index].1, t.offset, t.fault));
    }
    let seen = state.seen;
    let config = state.into_config();
    write_snapshot_tmp(dir, seen, config.as_ref(), upto)?;
    drop(config);
    let _held = guard
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    install_snapshot(dir)?;
    drop_covered(dir, upto)
}

fn open_append(path: &Path) -> Result<File, LedgerError> {
    OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io("open", path))
}

fn create_segment(dir: &Path, seq: u64) -> Result<File, LedgerError> {
    let path = dir.join(segment_name(seq));
    let f = OpenOptions::new()
        .append(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io("create", &path))?;
    sync_dir(dir)?;
    Ok(f)
}

/// Records and bytes of a segment known to hold only whole records.
fn count(path: &Path) -> Result<(u64, u64), LedgerError> {
    let bytes = std::fs::read(path).map_err(io("read", path))?;
    let mut offset = 0;
    let mut records = 0;
    while let Ok((_, len)) = decode(&bytes[offset..]) {
        offset += len;
        records += 1;
    }
    Ok((records, offset as u64))
}

/// Adopts a state directory of the ledger that kept whole configs (`config.json`,
/// `seen-generation`): writes a snapshot of it. The old files are removed by the caller.
fn adopt_legacy(dir: &Path) -> Result<Option<(Replayed, u64)>, LedgerError> {
    let config_path = dir.join("config.json");
    let config: Option<RouterConfig> = match std::fs::read(&config_path) {
        Ok(b) => Some(
            serde_json::from_slice(&b).map_err(|source| LedgerError::Corrupt {
                path: config_path.clone(),
                source,
            })?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io("read", &config_path)(e)),
    };
    let seen_path = dir.join("seen-generation");
    let seen: Option<Generation> = match std::fs::read_to_string(&seen_path) {
        Ok(s) => Some(s.trim().parse().map_err(|_| LedgerError::Io {
            action: "parse",
            path: seen_path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not a number"),
        })?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io("read", &seen_path)(e)),
    };
    if config.is_none() && seen.is_none() {
        return Ok(None);
    }
    let seen = seen
        .unwrap_or(0)
        .max(config.as_ref().map_or(0, |c| c.generation));
    // The first segment is numbered after every segment present (none, normally).
    let next = segments(dir)?.last().map_or(1, |(s, _)| s + 1);
    write_snapshot_tmp(dir, seen, config.as_ref(), next)?;
    install_snapshot(dir)?;
    tracing::info!(dir = %dir.display(), generation = config.as_ref().map_or(0, |c| c.generation), seen, "journal: adopted the state of the whole-config ledger");
    Ok(Some((
        Replayed {
            seen,
            config: config.map(Parts::new),
        },
        next,
    )))
}

/// What a state directory holds: the highest generation seen and the last config the kernel
/// accepted, read without taking the directory's lock and without changing anything (a damaged
/// tail is an error here, cut only by an open). For inspection and tests; a snapshot being
/// swapped by a running router at that moment can make it fail.
///
/// # Errors
/// [`LedgerError`] when something cannot be read or replayed.
pub fn read_state(dir: &Path) -> Result<(Generation, Option<RouterConfig>), LedgerError> {
    let state = read_all(dir)?;
    Ok((state.seen, state.into_config()))
}

#[cfg(test)]
#[path = "journal_tests.rs"]
mod tests;
