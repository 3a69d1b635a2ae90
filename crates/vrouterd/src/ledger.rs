//! The router's state on disk: the last good config, the candidate being applied, the highest
//! generation ever received, and what the kernel held after our last commit.
//!
//! Files in the state directory:
//! - `config.json`: the last config the kernel accepted (the ledger);
//! - `candidate.json`: a config being applied; renamed over `config.json` only once the kernel
//!   accepted it, so a restart never re-applies a config the kernel refused;
//! - `seen-generation`: the highest generation ever received, refused ones included, so a
//!   generation number is never reused;
//! - `kernel.json`: the namespace identity and nftables ruleset generation right after our last
//!   commit, which tells a later process whether the kernel still holds the ledger.
//! - `lock`: held (flock) by whoever operates the router, so two processes never interleave.

use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use router_config::{Generation, RouterConfig};

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
    _lock: File,
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> LedgerError + 'a {
    move |source| LedgerError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

impl Ledger {
    /// Opens (creating it if needed) and locks a state directory.
    ///
    /// # Errors
    /// [`LedgerError::Locked`] when another process holds it; [`LedgerError::Io`] otherwise.
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
        Ok(Ledger {
            dir: dir.to_path_buf(),
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

    /// The last good config, if any.
    ///
    /// # Errors
    /// [`LedgerError`] when it exists but cannot be read.
    pub fn config(&self) -> Result<Option<RouterConfig>, LedgerError> {
        self.read_json("config.json")
    }

    /// The kernel mark, if any.
    ///
    /// # Errors
    /// [`LedgerError`] when it exists but cannot be read.
    pub fn kernel_mark(&self) -> Result<Option<KernelMark>, LedgerError> {
        self.read_json("kernel.json")
    }

    /// The highest generation ever received (0 when none).
    ///
    /// # Errors
    /// [`LedgerError`] when it exists but cannot be read.
    pub fn seen_generation(&self) -> Result<Generation, LedgerError> {
        let path = self.path("seen-generation");
        match std::fs::read_to_string(&path) {
            Ok(s) => s.trim().parse().map_err(|_| LedgerError::Io {
                action: "parse",
                path,
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not a number"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(io("read", &path)(e)),
        }
    }

    /// Records a newly received generation (durably, before anything is applied).
    ///
    /// # Errors
    /// [`LedgerError::Io`].
    pub fn record_seen(&self, generation: Generation) -> Result<(), LedgerError> {
        self.write_atomic("seen-generation", format!("{generation}\n").as_bytes())
    }

    /// Writes the candidate config beside the ledger.
    ///
    /// # Errors
    /// [`LedgerError::Io`].
    pub fn write_candidate(&self, cfg: &RouterConfig) -> Result<(), LedgerError> {
        let bytes = serde_json::to_vec(cfg).map_err(|source| LedgerError::Corrupt {
            path: self.path("candidate.json"),
            source,
        })?;
        write_synced(&self.path("candidate.json"), &bytes)
    }

    /// Makes the candidate the ledger (after the kernel accepted it).
    ///
    /// # Errors
    /// [`LedgerError::Io`].
    pub fn promote_candidate(&self) -> Result<(), LedgerError> {
        let from = self.path("candidate.json");
        let to = self.path("config.json");
        std::fs::rename(&from, &to).map_err(io("rename", &from))?;
        sync_dir(&self.dir)
    }

    /// Drops a candidate the kernel refused.
    pub fn discard_candidate(&self) {
        let _ = std::fs::remove_file(self.path("candidate.json"));
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

    fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<Option<T>, LedgerError> {
        read_json(&self.path(name))
    }

    fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<(), LedgerError> {
        let path = self.path(name);
        let tmp = self.path(&format!("{name}.tmp"));
        write_synced(&tmp, bytes)?;
        std::fs::rename(&tmp, &path).map_err(io("rename", &tmp))?;
        sync_dir(&self.dir)
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

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), LedgerError> {
    let mut f = File::create(path).map_err(io("create", path))?;
    f.write_all(bytes).map_err(io("write", path))?;
    f.sync_all().map_err(io("sync", path))
}

fn sync_dir(dir: &Path) -> Result<(), LedgerError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync", dir))
}
