//! The router's state on disk: the last config the kernel accepted, the highest generation ever
//! received, and what the kernel held after our last commit.
//!
//! Files in the state directory:
//! - `snapshot` and `journal-<N>` segments (see [`crate::journal`]): the last config the kernel
//!   accepted, as a snapshot plus the changes committed since, each appended and synced only
//!   after the kernel accepted it, so a restart never re-applies a config the kernel refused;
//!   and the highest generation ever received, refused ones included (a `seen` record synced
//!   before the config is looked at), so a generation number is never reused;
//! - `kernel.json`: the namespace identity and nftables ruleset generation right after our last
//!   commit, which tells a later process whether the kernel still holds the ledger.
//! - `lock`: held (flock) by whoever operates the router, so two processes never interleave.
//!
//! A directory holding the earlier whole-config files (`config.json`, `seen-generation`, a
//! stale `candidate.json`) is adopted on open: a snapshot is made of them and they are removed.

use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use router_config::{Generation, RouterConfig, RouterDelta};

use crate::journal::{Journal, Pending};

/// A state-directory operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// A file could not be read, written or renamed.
    #[error("cannot {action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// Which file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file's content is not what this program writes.
    #[error("{path} is corrupt")]
    Corrupt {
        /// Which file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A record of the snapshot or the journal cannot be read back (after the open, which cuts
    /// a damaged journal tail, this means the disk changed under the router).
    #[error("{path} is damaged at offset {offset}")]
    Damaged {
        /// Which file.
        path: PathBuf,
        /// Where.
        offset: u64,
        /// What is wrong there.
        #[source]
        fault: crate::journal::RecordFault,
    },
    /// Another process operates this router.
    #[error("router state {path} is locked by another process (is `guestnet router serve` running? use its control socket)")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
}

/// What the kernel held right after our last commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelMark {
    /// Generation of the config committed.
    pub generation: Generation,
    /// Device and inode of the namespace file.
    pub netns: (u64, u64),
    /// nftables ruleset generation after the commit.
    pub nft_generation: u32,
}

/// An open, locked state directory.
#[derive(Debug)]
pub struct Ledger {
    dir: PathBuf,
    journal: Journal,
    /// The config replayed at open, until someone takes it.
    recovered: Option<RouterConfig>,
    _lock: File,
}

/// A change prepared before the kernel commit and recorded after it.
#[derive(Debug)]
pub struct PendingRecord(Option<Pending>);

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> LedgerError + 'a {
    move |source| LedgerError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

impl Ledger {
    /// Opens (creating it if needed) and locks a state directory, and replays its journal (a
    /// torn or damaged tail is cut off with a warning naming it).
    ///
    /// # Errors
    /// [`LedgerError::Locked`] when another process holds it; [`LedgerError::Damaged`] when the
    /// snapshot cannot be read; [`LedgerError::Io`] otherwise.
    pub fn open(dir: &Path) -> Result<Ledger, LedgerError> {
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        let path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io("open", &path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(LedgerError::Locked { path }),
            Err(std::fs::TryLockError::Error(e)) => return Err(io("lock", &path)(e)),
        }
        let (journal, recovered) = Journal::open(dir)?;
        Ok(Ledger {
            dir: dir.to_path_buf(),
            journal,
            recovered,
            _lock: lock,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The last good config, if any: the one replayed at open the first time (moved out, not
    /// copied), read back from disk afterwards.
    ///
    /// # Errors
    /// [`LedgerError`] when it cannot be read back.
    pub fn config(&mut self) -> Result<Option<RouterConfig>, LedgerError> {
        let head = self.journal.head();
        if let Some(c) = self.recovered.take() {
            if c.generation == head {
                return Ok(Some(c));
            }
        }
        if head == 0 {
            return Ok(None);
        }
        Ok(self.journal.read_back()?.into_config())
    }

    /// Gives back a config taken with [`Ledger::config`] and not used, so the next call does
    /// not read it from disk.
    pub fn keep(&mut self, config: RouterConfig) {
        if config.generation == self.journal.head() {
            self.recovered = Some(config);
        }
    }

    /// The generation of the last good config, if any.
    pub fn generation(&self) -> Option<Generation> {
        Some(self.journal.head()).filter(|g| *g != 0)
    }

    /// The kernel mark, if any.
    ///
    /// # Errors
    /// [`LedgerError`] when it exists but cannot be read.
    pub fn kernel_mark(&self) -> Result<Option<KernelMark>, LedgerError> {
        read_json(&self.path("kernel.json"))
    }

    /// The highest generation ever received (0 when none).
    ///
    /// # Errors
    /// None today; kept fallible for the callers.
    pub fn seen_generation(&self) -> Result<Generation, LedgerError> {
        Ok(self.journal.seen())
    }

    /// Records a newly received generation (one record appended) before anything is validated
    /// or applied. It becomes durable with the change record that follows it (one fdatasync for
    /// both), or through [`Ledger::sync`] when the router answers without one. A generation not
    /// above the highest seen records nothing.
    ///
    /// # Errors
    /// [`LedgerError::Io`].
    pub fn record_seen(&mut self, generation: Generation) -> Result<(), LedgerError> {
        self.journal.record_seen(generation)
    }

    /// Makes a generation recorded as seen durable when no change record synced it since (the
    /// router calls it before any answer).
    ///
    /// # Errors
    /// [`LedgerError::Io`].
    pub fn sync(&mut self) -> Result<(), LedgerError> {
        self.journal.sync()
    }

    /// Prepares the record of `next` before its commit: nothing when the ledger holds it
    /// already, `delta` when it was received as one against the generation held, the
    /// difference from `previous` (the config held, rule lists sorted by id) otherwise, or the
    /// whole config when no base is at hand.
    ///
    /// # Errors
    /// [`LedgerError::Corrupt`] when it cannot be serialized.
    pub fn prepare(
        &self,
        previous: Option<&RouterConfig>,
        next: &RouterConfig,
        delta: Option<&RouterDelta>,
    ) -> Result<PendingRecord, LedgerError> {
        self.journal
            .prepare(previous, next, delta)
            .map(PendingRecord)
    }

    /// Records a change the kernel accepted: appended to the journal and synced.
    ///
    /// # Errors
    /// [`LedgerError::Io`]; the ledger then still holds the previous config.
    pub fn record(&mut self, pending: PendingRecord) -> Result<(), LedgerError> {
        match pending.0 {
            Some(p) => self.journal.commit(p),
            None => Ok(()),
        }
    }

    /// Waits for a snapshot being written in the background.
    pub fn settle(&mut self) {
        self.journal.settle();
    }

    /// Records what the kernel holds after a commit.
    ///
    /// # Errors
    /// [`LedgerError::Io`].
    pub fn write_kernel_mark(&self, mark: &KernelMark) -> Result<(), LedgerError> {
        let bytes = serde_json::to_vec(mark).map_err(|source| LedgerError::Corrupt {
            path: self.path("kernel.json"),
            source,
        })?;
        // Not synced: after a crash the mark is only a hint, and a wrong one costs a full replace.
        let path = self.path("kernel.json");
        let tmp = self.path("kernel.json.tmp");
        std::fs::write(&tmp, bytes).map_err(io("write", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io("rename", &tmp))
    }

    /// Forgets the kernel mark (after a failed commit, or when drift was found).
    pub fn clear_kernel_mark(&self) {
        let _ = std::fs::remove_file(self.path("kernel.json"));
    }
}

/// The kernel mark a state directory holds, read without taking the directory's lock: for
/// whoever chooses the kernel a router is opened over (a dry-run router's recording kernel
/// resumes where the router left it).
///
/// # Errors
/// [`LedgerError`] when it exists but cannot be read.
pub fn read_kernel_mark(dir: &Path) -> Result<Option<KernelMark>, LedgerError> {
    read_json(&dir.join("kernel.json"))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, LedgerError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| LedgerError::Corrupt {
                    path: path.to_path_buf(),
                    source,
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("read", path)(e)),
    }
}
