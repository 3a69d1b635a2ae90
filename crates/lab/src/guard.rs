//! A lab that tears itself down when dropped, for tests.

use std::path::Path;

use crate::{chain, down, Lab, LabError, LabSpec, TempDir};

/// Owns a [`Lab`] and its temporary data directory; dropping it (also while a test panics) runs
/// [`down`], then removes the directory.
#[derive(Debug)]
pub struct LabGuard {
    lab: Lab,
    // Dropped after `Drop::drop` has run `down`.
    dir: TempDir,
}

impl LabGuard {
    /// Builds `spec` in a fresh temporary data directory.
    ///
    /// # Errors
    /// [`LabError::DataDir`] if no temporary directory can be made, otherwise as [`Lab::up`].
    pub fn up(spec: &LabSpec) -> Result<Self, LabError> {
        Self::up_in(temp_dir()?, spec)
    }

    /// Builds `spec` with `dir` as the data directory.
    ///
    /// # Errors
    /// As [`Lab::up`] (which cleans up after itself on failure).
    pub fn up_in(dir: TempDir, spec: &LabSpec) -> Result<Self, LabError> {
        let lab = Lab::up(dir.path(), spec)?;
        Ok(LabGuard { lab, dir })
    }

    /// Builds an empty lab (see [`Lab::up_empty`]) in a fresh temporary data directory; grow it
    /// through [`LabGuard::lab_mut`].
    ///
    /// # Errors
    /// [`LabError::DataDir`] if no temporary directory can be made, otherwise as
    /// [`Lab::up_empty`].
    pub fn up_empty() -> Result<Self, LabError> {
        let dir = temp_dir()?;
        let lab = Lab::up_empty(dir.path())?;
        Ok(LabGuard { lab, dir })
    }

    /// The lab.
    pub fn lab(&self) -> &Lab {
        &self.lab
    }

    /// The lab, to add or remove networks and VMs; the guard still tears down whatever the lab
    /// holds when it is dropped.
    pub fn lab_mut(&mut self) -> &mut Lab {
        &mut self.lab
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A fresh temporary data directory.
fn temp_dir() -> Result<TempDir, LabError> {
    tempfile::Builder::new()
        .prefix("guestnet-lab-")
        .tempdir()
        .map_err(|source| LabError::DataDir {
            path: std::env::temp_dir(),
            source,
        })
}

impl std::ops::Deref for LabGuard {
    type Target = Lab;

    fn deref(&self) -> &Lab {
        &self.lab
    }
}

impl std::ops::DerefMut for LabGuard {
    fn deref_mut(&mut self) -> &mut Lab {
        &mut self.lab
    }
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        if let Err(errors) = down(self.dir.path()) {
            for e in errors {
                tracing::error!(lab = %self.lab.id(), error = %chain(&e), "lab teardown failed");
                eprintln!("lab {}: teardown failed: {}", self.lab.id(), chain(&e));
            }
        }
    }
}
