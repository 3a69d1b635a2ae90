//! The kernel as a router sees it: the few operations a router performs on its namespace's
//! nftables ruleset and interfaces, behind one small trait.
//!
//! [`NetnsKernel`] is the real one: a router's namespace, reached through [`crate::nft`] and
//! [`crate::link`]. [`RecordingKernel`] enforces nothing: it keeps what it was given and moves a
//! ruleset generation on every commit the way the kernel does, so that everything a router
//! decides around the kernel (generations, the ledger, delta or full replace, drift) runs and
//! can be checked without root and without a namespace. It can be told to refuse commits and
//! to see a commit by someone else (drift).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::link::{self, LinkError};
use crate::nft::{self, ElementBatch, Netns, NftError, NftSocket};

/// A kernel operation that failed. The kernel changed nothing in every case.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// nftables refused a transaction, or the generation could not be read.
    #[error(transparent)]
    Nft(#[from] NftError),
    /// Addresses, routes or forwarding could not be set.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// A recording kernel refused a commit, as it was told to. The text is the reason alone,
    /// as a real kernel's refusal is nft's message: it reaches API callers in a failed job's
    /// result, where a test kernel's name means nothing.
    #[error("{reason}")]
    Refused {
        /// Which kernel.
        kernel: String,
        /// The reason it was given.
        reason: String,
    },
    /// A recording kernel's ruleset moved since the generation a batch was built against.
    #[error("the ruleset of {kernel} is no longer at generation {expected}")]
    Stale {
        /// Which kernel.
        kernel: String,
        /// The generation the batch expected.
        expected: u32,
    },
}

/// What a router's interfaces hold: its addresses, its default route, forwarding on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interfaces {
    /// The public interface.
    pub public: String,
    /// Exactly the addresses (with prefix lengths) the public interface holds.
    pub public_addresses: BTreeSet<(Ipv4Addr, u8)>,
    /// The default route's gateway through the public interface, if any.
    pub public_gateway: Option<Ipv4Addr>,
    /// The guest interface.
    pub guest: String,
    /// The guest interface's one address and prefix length.
    pub guest_address: (Ipv4Addr, u8),
}

/// Element changes committed as one batch, pinned to a ruleset generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The table.
    pub table: String,
    /// The ruleset generation the batch was built against.
    pub expected_generation: u32,
    /// Element additions and deletions, in order.
    pub elements: Vec<ElementBatch>,
    /// `(chain, set)` pairs deleted after the elements.
    pub remove: Vec<(String, String)>,
}

/// What a router needs from the kernel of its namespace.
///
/// Every commit is one transaction: it is applied whole or not at all, and each one that is
/// applied moves the namespace's ruleset generation.
pub trait Kernel: Send + std::fmt::Debug + std::fmt::Display {
    /// A stable identity of the namespace, so a namespace made again under the same name is
    /// recognised as new; `None` when it cannot be read.
    fn identity(&self) -> Option<(u64, u64)>;

    /// The current nftables ruleset generation (one small request; nothing is listed).
    ///
    /// # Errors
    /// [`KernelError`] when it cannot be read.
    fn generation(&mut self) -> Result<u32, KernelError>;

    /// Whether the namespace holds a table named `table` of family `ip` (one small request;
    /// nothing of it is listed).
    ///
    /// # Errors
    /// [`KernelError`] when it cannot be asked.
    fn has_table(&mut self, table: &str) -> Result<bool, KernelError>;

    /// Commits an nftables script as one transaction.
    ///
    /// # Errors
    /// [`KernelError`] when it is refused; nothing changed.
    fn apply_script(&mut self, script: &str) -> Result<(), KernelError>;

    /// Commits element changes of `table` and deletes `remove`'s chains and sets as one
    /// transaction, only if the ruleset generation is still `expected_generation`.
    ///
    /// # Errors
    /// [`KernelError`] when the generation moved or the batch is refused; nothing changed.
    fn commit_batch(
        &mut self,
        table: &str,
        expected_generation: u32,
        batches: &[ElementBatch],
        remove: &[(String, String)],
    ) -> Result<(), KernelError>;

    /// Brings the interfaces up holding exactly `interfaces`' addresses and default route, with
    /// forwarding on.
    ///
    /// # Errors
    /// [`KernelError`] from the first step that fails.
    fn sync_interfaces(&mut self, interfaces: &Interfaces) -> Result<(), KernelError>;

    /// The table as `nft -j list table` prints it (for counters: proportional to its size).
    ///
    /// # Errors
    /// [`KernelError`] when it cannot be listed.
    fn list_table(&self, table: &str) -> Result<Vec<u8>, KernelError>;
}

/// The kernel of a network namespace: scripts through `nft -f -`, the generation and element
/// batches over the namespace's own netlink socket, interfaces through `ip`.
#[derive(Debug)]
pub struct NetnsKernel {
    netns: Netns,
    socket: NftSocket,
}

impl NetnsKernel {
    /// Opens the netlink socket inside `netns`.
    ///
    /// # Errors
    /// [`KernelError::Nft`] when the namespace cannot be entered or the socket made.
    pub fn open(netns: Netns) -> Result<NetnsKernel, KernelError> {
        let socket = NftSocket::open(&netns)?;
        Ok(NetnsKernel { netns, socket })
    }

    /// The namespace.
    pub fn netns(&self) -> &Netns {
        &self.netns
    }
}

impl std::fmt::Display for NetnsKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.netns.fmt(f)
    }
}

impl Kernel for NetnsKernel {
    fn identity(&self) -> Option<(u64, u64)> {
        self.netns.identity().ok()
    }

    fn generation(&mut self) -> Result<u32, KernelError> {
        Ok(self.socket.generation()?)
    }

    fn has_table(&mut self, table: &str) -> Result<bool, KernelError> {
        Ok(self.socket.has_table(table)?)
    }

    fn apply_script(&mut self, script: &str) -> Result<(), KernelError> {
        Ok(nft::apply(&self.netns, script)?)
    }

    fn commit_batch(
        &mut self,
        table: &str,
        expected_generation: u32,
        batches: &[ElementBatch],
        remove: &[(String, String)],
    ) -> Result<(), KernelError> {
        Ok(self
            .socket
            .commit_batch(table, expected_generation, batches, remove)?)
    }

    fn sync_interfaces(&mut self, interfaces: &Interfaces) -> Result<(), KernelError> {
        let netns = &self.netns;
        link::sync_addresses(netns, &interfaces.public, &interfaces.public_addresses)?;
        let guest = BTreeSet::from([interfaces.guest_address]);
        link::sync_addresses(netns, &interfaces.guest, &guest)?;
        link::sync_default_route(netns, &interfaces.public, interfaces.public_gateway)?;
        link::enable_forwarding(netns)?;
        Ok(())
    }

    fn list_table(&self, table: &str) -> Result<Vec<u8>, KernelError> {
        Ok(nft::list_table_json(&self.netns, table)?)
    }
}

/// One change a [`RecordingKernel`] was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// An nftables script.
    Script(String),
    /// An element batch.
    Batch(Batch),
    /// Interfaces set.
    Interfaces(Interfaces),
}

/// A change given to a [`RecordingKernel`] and what it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// What it was given.
    pub call: Call,
    /// Whether it took it (a refused commit changed nothing).
    pub accepted: bool,
}

/// When a [`RecordingKernel`] refuses.
#[derive(Debug, Clone)]
struct Refusal {
    reason: String,
    /// Only the next commit, or every commit until told otherwise.
    once: bool,
    /// Only element batches: scripts pass.
    batches_only: bool,
}

#[derive(Debug)]
struct Recorded {
    generation: u32,
    journal: Option<Vec<Commit>>,
    commits: u64,
    refusal: Option<Refusal>,
    interfaces: Option<Interfaces>,
    /// Whether it holds a table: from the first script it accepts until the ruleset is lost.
    table: bool,
}

/// A kernel that enforces nothing and keeps what it is given. Clones share one kernel, so a
/// test keeps a handle to the kernel a router owns.
///
/// Like the kernel, it moves its ruleset generation by one on every commit it accepts (a
/// script or a batch; interfaces are not nftables and leave it), refuses a batch built against
/// another generation, and changes nothing when it refuses. It holds a table (whatever its
/// name) once it accepted a script, until [`RecordingKernel::lose_ruleset`].
#[derive(Debug, Clone)]
pub struct RecordingKernel {
    id: u64,
    identity: (u64, u64),
    state: Arc<Mutex<Recorded>>,
}

/// Numbers the recording kernels of this process, for their identities and names.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The first ruleset generation of a new recording kernel (any number would do; a real
/// namespace starts wherever its kernel's counter stands).
const FIRST_GENERATION: u32 = 1;

impl Default for RecordingKernel {
    fn default() -> Self {
        RecordingKernel::new()
    }
}

impl RecordingKernel {
    /// A new, empty kernel with an identity of its own that keeps every change it is given.
    pub fn new() -> RecordingKernel {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        RecordingKernel::empty((0, id), FIRST_GENERATION)
    }

    /// The kernel a router left earlier: `identity` and ruleset `generation` as a router
    /// recorded them after its last commit, so the router finds its ledger still held.
    pub fn resuming(identity: (u64, u64), generation: u32) -> RecordingKernel {
        let k = RecordingKernel::empty(identity, generation);
        k.lock().table = true;
        k
    }

    fn empty(identity: (u64, u64), generation: u32) -> RecordingKernel {
        RecordingKernel {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            identity,
            state: Arc::new(Mutex::new(Recorded {
                generation,
                journal: Some(Vec::new()),
                commits: 0,
                refusal: None,
                interfaces: None,
                table: false,
            })),
        }
    }

    /// Keeps no journal from now on (only the count of commits): for a kernel that lives as
    /// long as a process, such as a dry-run router's.
    pub fn without_journal(self) -> RecordingKernel {
        self.lock().journal = None;
        self
    }

    fn lock(&self) -> MutexGuard<'_, Recorded> {
        // A panic while holding the lock leaves plain data behind; it stays usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every change given so far, accepted or refused, in order (empty without a journal).
    pub fn journal(&self) -> Vec<Commit> {
        self.lock().journal.clone().unwrap_or_default()
    }

    /// How many commits (scripts and batches) it accepted.
    pub fn commits(&self) -> u64 {
        self.lock().commits
    }

    /// The current ruleset generation, without counting as a request.
    pub fn current_generation(&self) -> u32 {
        self.lock().generation
    }

    /// The interfaces as last set, if they were.
    pub fn interfaces(&self) -> Option<Interfaces> {
        self.lock().interfaces.clone()
    }

    /// Refuses the next commit (script or batch) with `reason`; later ones are taken again.
    pub fn refuse_next_commit(&self, reason: impl Into<String>) {
        self.lock().refusal = Some(Refusal {
            reason: reason.into(),
            once: true,
            batches_only: false,
        });
    }

    /// Refuses the next element batch with `reason`, letting scripts through until then.
    pub fn refuse_next_batch(&self, reason: impl Into<String>) {
        self.lock().refusal = Some(Refusal {
            reason: reason.into(),
            once: true,
            batches_only: true,
        });
    }

    /// Refuses every commit with `reason` until [`RecordingKernel::accept_commits`].
    pub fn refuse_commits(&self, reason: impl Into<String>) {
        self.lock().refusal = Some(Refusal {
            reason: reason.into(),
            once: false,
            batches_only: false,
        });
    }

    /// Takes commits again.
    pub fn accept_commits(&self) {
        self.lock().refusal = None;
    }

    /// Someone else committed in the namespace (a flush, an edit): the generation moves and
    /// nothing is recorded, as a router would see it.
    pub fn commit_by_someone_else(&self) {
        let mut s = self.lock();
        s.generation = s.generation.wrapping_add(1);
    }

    /// Someone flushed the ruleset (`nft flush ruleset`, a namespace's rules lost): the table is
    /// gone and the generation moves, with nothing recorded.
    pub fn lose_ruleset(&self) {
        let mut s = self.lock();
        s.generation = s.generation.wrapping_add(1);
        s.table = false;
    }

    fn record(
        &self,
        call: Call,
        check: impl FnOnce(&Recorded) -> Result<(), KernelError>,
    ) -> Result<(), KernelError> {
        let mut s = self.lock();
        let mut verdict = check(&s);
        let is_batch = matches!(call, Call::Batch(_));
        if verdict.is_ok() {
            if let Some(r) = s.refusal.clone().filter(|r| is_batch || !r.batches_only) {
                if r.once {
                    s.refusal = None;
                }
                verdict = Err(KernelError::Refused {
                    kernel: self.to_string(),
                    reason: r.reason,
                });
            }
        }
        if verdict.is_ok() {
            s.generation = s.generation.wrapping_add(1);
            s.commits += 1;
        }
        let accepted = verdict.is_ok();
        if let Some(journal) = s.journal.as_mut() {
            journal.push(Commit { call, accepted });
        }
        verdict
    }
}

impl std::fmt::Display for RecordingKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "recording kernel {}", self.id)
    }
}

impl Kernel for RecordingKernel {
    fn identity(&self) -> Option<(u64, u64)> {
        Some(self.identity)
    }

    fn generation(&mut self) -> Result<u32, KernelError> {
        Ok(self.lock().generation)
    }

    fn has_table(&mut self, table: &str) -> Result<bool, KernelError> {
        let _ = table;
        Ok(self.lock().table)
    }

    fn apply_script(&mut self, script: &str) -> Result<(), KernelError> {
        let r = self.record(Call::Script(script.to_string()), |_| Ok(()));
        if r.is_ok() {
            self.lock().table = true;
        }
        r
    }

    fn commit_batch(
        &mut self,
        table: &str,
        expected_generation: u32,
        batches: &[ElementBatch],
        remove: &[(String, String)],
    ) -> Result<(), KernelError> {
        let batch = Batch {
            table: table.to_string(),
            expected_generation,
            elements: batches.to_vec(),
            remove: remove.to_vec(),
        };
        let name = self.to_string();
        self.record(Call::Batch(batch), |s| {
            if s.generation == expected_generation {
                Ok(())
            } else {
                Err(KernelError::Stale {
                    kernel: name,
                    expected: expected_generation,
                })
            }
        })
    }

    fn sync_interfaces(&mut self, interfaces: &Interfaces) -> Result<(), KernelError> {
        let mut s = self.lock();
        s.interfaces = Some(interfaces.clone());
        if let Some(journal) = s.journal.as_mut() {
            journal.push(Commit {
                call: Call::Interfaces(interfaces.clone()),
                accepted: true,
            });
        }
        Ok(())
    }

    fn list_table(&self, table: &str) -> Result<Vec<u8>, KernelError> {
        // Nothing passes through a recording kernel, so nothing is counted: an empty listing.
        let _ = table;
        Ok(br#"{"nftables": []}"#.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(set: &str) -> ElementBatch {
        ElementBatch {
            set: set.to_string(),
            interval: false,
            delete: false,
            elements: vec![(vec![nft::Field::Port(80)], None)],
        }
    }

    #[test]
    fn each_accepted_commit_moves_the_generation_by_one_and_is_journaled() {
        let mut k = RecordingKernel::new();
        let g0 = k.generation().unwrap();
        k.apply_script("add table ip t\n").unwrap();
        assert_eq!(k.generation().unwrap(), g0 + 1);
        k.commit_batch("t", g0 + 1, &[batch("s")], &[]).unwrap();
        assert_eq!(k.generation().unwrap(), g0 + 2);
        assert_eq!(k.commits(), 2);
        let journal = k.journal();
        assert_eq!(journal.len(), 2);
        assert!(journal.iter().all(|c| c.accepted));
        assert_eq!(journal[0].call, Call::Script("add table ip t\n".into()));
        assert!(matches!(&journal[1].call, Call::Batch(b) if b.expected_generation == g0 + 1));
    }

    #[test]
    fn a_batch_against_another_generation_is_refused_and_changes_nothing() {
        let mut k = RecordingKernel::new();
        let g0 = k.generation().unwrap();
        k.commit_by_someone_else();
        let err = k.commit_batch("t", g0, &[batch("s")], &[]).unwrap_err();
        assert!(
            matches!(err, KernelError::Stale { expected, .. } if expected == g0),
            "{err}"
        );
        assert_eq!(k.generation().unwrap(), g0 + 1);
        assert_eq!(k.commits(), 0);
        assert!(!k.journal()[0].accepted);
    }

    #[test]
    fn refusals_once_or_until_told_otherwise() {
        let mut k = RecordingKernel::new();
        let g0 = k.generation().unwrap();
        k.refuse_next_commit("bad");
        let err = k.apply_script("x").unwrap_err();
        assert!(
            matches!(&err, KernelError::Refused { reason, .. } if reason == "bad"),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "bad");
        assert_eq!(k.generation().unwrap(), g0);
        k.apply_script("x").unwrap();
        k.refuse_commits("down");
        assert!(k.apply_script("y").is_err());
        assert!(k.apply_script("y").is_err());
        k.accept_commits();
        k.apply_script("y").unwrap();
        assert_eq!(k.generation().unwrap(), g0 + 2);
        let accepted: Vec<bool> = k.journal().iter().map(|c| c.accepted).collect();
        assert_eq!(accepted, [false, true, false, false, true]);
    }

    #[test]
    fn a_table_is_held_from_the_first_script_until_the_ruleset_is_lost() {
        let mut k = RecordingKernel::new();
        assert!(!k.has_table("t").unwrap());
        k.refuse_next_commit("no");
        assert!(k.apply_script("add table ip t\n").is_err());
        assert!(!k.has_table("t").unwrap(), "a refused script makes nothing");
        k.apply_script("add table ip t\n").unwrap();
        assert!(k.has_table("t").unwrap());
        let g = k.generation().unwrap();
        k.lose_ruleset();
        assert!(!k.has_table("t").unwrap());
        assert_eq!(k.generation().unwrap(), g + 1);
        assert!(RecordingKernel::resuming((1, 2), 3).has_table("t").unwrap());
    }

    #[test]
    fn the_trait_is_object_safe() {
        let mut k: Box<dyn Kernel> = Box::new(RecordingKernel::new());
        let g0 = k.generation().unwrap();
        k.apply_script("x").unwrap();
        assert_eq!(k.generation().unwrap(), g0 + 1);
        assert!(k.to_string().starts_with("recording kernel "));
    }

    #[test]
    fn clones_share_one_kernel_and_a_resumed_one_keeps_its_identity() {
        let mut k = RecordingKernel::new().without_journal();
        let handle = k.clone();
        k.apply_script("x").unwrap();
        assert_eq!(handle.commits(), 1);
        assert!(handle.journal().is_empty());
        assert_ne!(RecordingKernel::new().identity(), k.identity());
        let mut again = RecordingKernel::resuming((7, 9), 41);
        assert_eq!(again.identity(), Some((7, 9)));
        assert_eq!(again.generation().unwrap(), 41);
    }
}
