//! Guests booted for real on this host: VM drivers that start a VM's guest with its one NIC on
//! the bridge of its network's VLAN and the MAC the server gave it, so the network's router
//! serves it its address by DHCP. [`VmDriver`] is the one chosen by name ([`VmDriverName`]):
//! `libvirt` ([`Libvirt`]) or `qemu` ([`Qemu`]: guestnet runs QEMU itself, on a tap it makes,
//! for a host without libvirt).
//!
//! [`Libvirt`] keeps each guest's files under `<data dir>/guests/<key>/`: its domain XML
//! (rendered by `render::libvirt`), its serial console's log and, for a disk image, its own qcow2
//! overlay over the template's image (`qemu-img create -b`). A guest is the libvirt domain
//! `guestnet-<key>`; [`Libvirt::ensure`] defines and starts it (or starts it again, or finds
//! it running), [`Libvirt::remove`] destroys and undefines it and deletes its files,
//! [`Libvirt::list`] names the guests the daemon has. Every libvirt call goes through
//! `sys::virsh`; its calls block, so async callers run them on blocking threads.
//!
//! Guests run under QEMU's emulation (TCG) unless the driver is configured with `kvm = true`
//! and `/dev/kvm` can be opened: KVM is the fast choice on a host with hardware
//! virtualisation, but a host that is itself a guest may offer a `/dev/kvm` whose nested guests
//! never finish booting, so KVM is asked for, never assumed.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use render::libvirt::{Accel, Boot, Domain, DomainError};
use router_config::MacAddr;
use sys::cmd::CommandError;
use sys::virsh::{DomainState, Virsh, VirshError};

use crate::proto::{GuestImage, GuestSpec};

mod qemu;

pub use qemu::{Qemu, QemuConfig};

/// The libvirt URI of the host's system daemon.
pub const DEFAULT_URI: &str = "qemu:///system";

/// What every guest's domain name starts with; the rest is its key.
pub const DOMAIN_PREFIX: &str = "guestnet-";

/// The VM drivers that boot guests, by the name an operator gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmDriverName {
    /// Guests through a libvirt daemon ([`Libvirt`]).
    Libvirt,
    /// Guests run by QEMU itself ([`Qemu`]).
    Qemu,
}

impl std::str::FromStr for VmDriverName {
    type Err = GuestError;
    fn from_str(s: &str) -> Result<Self, GuestError> {
        match s {
            "libvirt" => Ok(VmDriverName::Libvirt),
            "qemu" => Ok(VmDriverName::Qemu),
            other => Err(GuestError::UnknownDriver(other.to_string())),
        }
    }
}

impl VmDriverName {
    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            VmDriverName::Libvirt => "libvirt",
            VmDriverName::Qemu => "qemu",
        }
    }
}

/// How the libvirt VM driver is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibvirtConfig {
    /// The daemon's URI ([`DEFAULT_URI`] on a libvirt host).
    pub uri: String,
    /// Use KVM when `/dev/kvm` can be opened (otherwise, and by default, TCG).
    pub kvm: bool,
    /// The agent's data directory; guests' files go under `guests/` in it.
    pub data_dir: PathBuf,
}

/// Why a guest could not be made, found or removed.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    /// No VM driver has this name.
    #[error("no VM driver is named {0:?} (there are: libvirt, qemu)")]
    UnknownDriver(String),
    /// A guest's key is not usable as (part of) a domain name.
    #[error("guest key {0:?}: use 1 to 48 letters, digits, '-', '_' or '.'")]
    Key(String),
    /// A file of the guest's image is not there.
    #[error("guest {key}: its {what} {} does not exist or is not a file", path.display())]
    ImageMissing {
        /// The guest.
        key: String,
        /// `kernel`, `initrd` or `disk image`.
        what: &'static str,
        /// The path given.
        path: PathBuf,
    },
    /// The guest's domain cannot be rendered (a bad name, size, bridge, MAC, format or path).
    #[error("guest {key}: bad definition")]
    Definition {
        /// The guest.
        key: String,
        /// What is wrong.
        #[source]
        source: DomainError,
    },
    /// The guest's overlay of its disk image cannot be made (qemu-img's reason: often a base
    /// that is not an image of the format given).
    #[error("guest {key}: cannot make its overlay of {}", base.display())]
    Overlay {
        /// The guest.
        key: String,
        /// The template's image.
        base: PathBuf,
        /// qemu-img's failure.
        #[source]
        source: Box<CommandError>,
    },
    /// libvirt refused (virsh's standard error says why).
    #[error("guest {key}")]
    Libvirt {
        /// The guest (`*` for a listing).
        key: String,
        /// What virsh said.
        #[source]
        source: Box<VirshError>,
    },
    /// The guest's tap cannot be made on its bridge (`ip`'s reason: often a bridge that does not
    /// exist), or removed.
    #[error("guest {key}: cannot {action} tap {tap} on bridge {bridge}")]
    Tap {
        /// The guest.
        key: String,
        /// `make` or `remove`.
        action: &'static str,
        /// The tap.
        tap: String,
        /// The bridge.
        bridge: String,
        /// `ip`'s failure.
        #[source]
        source: Box<CommandError>,
    },
    /// QEMU did not start (its own reason).
    #[error("guest {key}: QEMU did not start")]
    Qemu {
        /// The guest.
        key: String,
        /// QEMU's failure, with its standard error.
        #[source]
        source: Box<CommandError>,
    },
    /// The guest's QEMU cannot be stopped.
    #[error("guest {key}: cannot stop its QEMU (process {pid})")]
    Stop {
        /// The guest.
        key: String,
        /// QEMU's process.
        pid: i32,
        /// Why.
        #[source]
        source: nix::errno::Errno,
    },
    /// The domain was started but is not running.
    #[error("guest {key} was started but is {state:?}")]
    NotRunning {
        /// The guest.
        key: String,
        /// Its state.
        state: Option<DomainState>,
    },
    /// A guest's file or directory cannot be written or removed.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A thread panicked while it held the driver's lock.
    #[error("VM driver state poisoned")]
    Poisoned,
}

/// Whether `/dev/kvm` can be opened for reading and writing.
pub fn kvm_usable() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

fn check_key(key: &str) -> Result<(), GuestError> {
    if key.len() <= 48 && render::libvirt::is_domain_name(key) && key != "." && key != ".." {
        Ok(())
    } else {
        Err(GuestError::Key(key.to_string()))
    }
}

/// Checks that the files of `image` are there and a disk's format is one QEMU is given here.
fn check_image(key: &str, image: &GuestImage) -> Result<(), GuestError> {
    let missing = |what: &'static str, path: &Path| GuestError::ImageMissing {
        key: key.to_string(),
        what,
        path: path.to_path_buf(),
    };
    match image {
        GuestImage::Kernel { kernel, initrd, .. } => {
            if !kernel.is_file() {
                return Err(missing("kernel", kernel));
            }
            if let Some(initrd) = initrd {
                if !initrd.is_file() {
                    return Err(missing("initrd", initrd));
                }
            }
        }
        GuestImage::Disk { path, format } => {
            if !path.is_file() {
                return Err(missing("disk image", path));
            }
            if format != "qcow2" && format != "raw" {
                return Err(GuestError::Definition {
                    key: key.to_string(),
                    source: DomainError::Format(format.clone()),
                });
            }
        }
    }
    Ok(())
}

/// Removes directory `dir` and everything in it; one that is not there is fine.
fn remove_dir(dir: &Path) -> Result<(), GuestError> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(GuestError::Io {
            action: "remove",
            path: dir.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// An absolute form of `path` (libvirt reads paths from another working directory).
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The libvirt VM driver.
#[derive(Debug)]
pub struct Libvirt {
    virsh: Virsh,
    accel: Accel,
    data_dir: PathBuf,
    /// One change at a time: ensure and remove look, then act.
    lock: Mutex<()>,
}

impl Libvirt {
    /// The driver for `config`; it reaches the daemon only when asked to do something.
    pub fn new(config: &LibvirtConfig) -> Libvirt {
        let accel = if config.kvm && kvm_usable() {
            Accel::Kvm
        } else {
            Accel::Tcg
        };
        Libvirt {
            virsh: Virsh::new(config.uri.clone()),
            accel,
            data_dir: absolute(&config.data_dir),
            lock: Mutex::new(()),
        }
    }

    /// TCG or KVM, as decided when the driver was made.
    pub fn accel(&self) -> Accel {
        self.accel
    }

    /// The libvirt domain of guest `key`.
    pub fn domain_name(key: &str) -> String {
        format!("{DOMAIN_PREFIX}{key}")
    }

    /// The directory of guest `key`'s files.
    pub fn guest_dir(&self, key: &str) -> PathBuf {
        self.data_dir.join("guests").join(key)
    }

    /// The file guest `key`'s serial console writes to.
    pub fn serial_log(&self, key: &str) -> PathBuf {
        self.guest_dir(key).join("serial.log")
    }

    fn libvirt(key: &str) -> impl FnOnce(VirshError) -> GuestError + '_ {
        move |source| GuestError::Libvirt {
            key: key.to_string(),
            source: Box::new(source),
        }
    }

    /// Guest `key`'s state, `None` when it has no domain.
    ///
    /// # Errors
    /// [`GuestError::Key`] or [`GuestError::Libvirt`].
    pub fn state(&self, key: &str) -> Result<Option<DomainState>, GuestError> {
        check_key(key)?;
        self.virsh
            .state(&Self::domain_name(key))
            .map_err(Self::libvirt(key))
    }

    /// Makes sure guest `key` runs `spec` with one virtio NIC of MAC `mac` on bridge `bridge`:
    /// defines and starts it, starts it again if it is defined but stopped, and does nothing if
    /// it runs (a running guest keeps the definition it was started with).
    ///
    /// A guest that cannot be made leaves nothing behind: no domain, no files.
    ///
    /// # Errors
    /// [`GuestError`] naming what failed: a missing image file, a bad definition, qemu-img's or
    /// libvirt's reason.
    pub fn ensure(
        &self,
        key: &str,
        spec: &GuestSpec,
        mac: MacAddr,
        bridge: &str,
    ) -> Result<(), GuestError> {
        check_key(key)?;
        let _held = self.lock.lock().map_err(|_| GuestError::Poisoned)?;
        let name = Self::domain_name(key);
        // Checked before libvirt is asked anything: a bad request fails the same way always.
        let domain = self.plan(key, spec, mac, bridge)?;
        match self.virsh.state(&name).map_err(Self::libvirt(key))? {
            Some(DomainState::Running) => return Ok(()),
            Some(_) => {
                self.virsh.start(&name).map_err(Self::libvirt(key))?;
                return self.check_running(key);
            }
            None => {}
        }
        let made = self.make(key, spec, &domain);
        if made.is_err() {
            // Nothing half-made stays: the domain (if defined) and the guest's files go.
            let _ = self.virsh.destroy(&name);
            let _ = self.virsh.undefine(&name);
            let _ = std::fs::remove_dir_all(self.guest_dir(key));
        }
        made
    }

    /// Checks the image and the definition: the domain guest `key` will be.
    fn plan(
        &self,
        key: &str,
        spec: &GuestSpec,
        mac: MacAddr,
        bridge: &str,
    ) -> Result<Domain, GuestError> {
        check_image(key, &spec.image)?;
        let boot = match &spec.image {
            GuestImage::Kernel {
                kernel,
                initrd,
                cmdline,
            } => Boot::Kernel {
                kernel: absolute(kernel),
                initrd: initrd.as_deref().map(absolute),
                cmdline: cmdline.clone(),
            },
            GuestImage::Disk { .. } => Boot::Disk {
                path: self.guest_dir(key).join("disk.qcow2"),
                format: "qcow2".into(),
            },
        };
        let domain = Domain {
            name: Self::domain_name(key),
            memory_mib: spec.memory_mib,
            vcpus: spec.cpus,
            accel: self.accel,
            boot,
            bridge: bridge.to_string(),
            mac,
            serial_log: self.serial_log(key),
        };
        // Rendered once here so a bad definition fails before anything is made.
        render::libvirt::domain_xml(&domain).map_err(|source| GuestError::Definition {
            key: key.to_string(),
            source,
        })?;
        Ok(domain)
    }

    /// Makes guest `key`'s files, defines its domain and starts it.
    fn make(&self, key: &str, spec: &GuestSpec, domain: &Domain) -> Result<(), GuestError> {
        let dir = self.guest_dir(key);
        let io = |action: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| GuestError::Io {
                action,
                path,
                source,
            }
        };
        // A directory without a domain is left from a guest that was never completed.
        remove_dir(&dir)?;
        std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        if let (GuestImage::Disk { path, format }, Boot::Disk { path: overlay, .. }) =
            (&spec.image, &domain.boot)
        {
            let base = absolute(path);
            sys::qemu::create_overlay(&base, format, overlay).map_err(|source| {
                GuestError::Overlay {
                    key: key.to_string(),
                    base,
                    source: Box::new(source),
                }
            })?;
        }
        let xml = render::libvirt::domain_xml(domain).map_err(|source| GuestError::Definition {
            key: key.to_string(),
            source,
        })?;
        let file = dir.join("domain.xml");
        std::fs::write(&file, xml).map_err(io("write", &file))?;
        self.virsh
            .define(&domain.name, &file)
            .map_err(Self::libvirt(key))?;
        self.virsh.start(&domain.name).map_err(Self::libvirt(key))?;
        self.check_running(key)
    }

    fn check_running(&self, key: &str) -> Result<(), GuestError> {
        match self
            .virsh
            .state(&Self::domain_name(key))
            .map_err(Self::libvirt(key))?
        {
            Some(DomainState::Running) => Ok(()),
            state => Err(GuestError::NotRunning {
                key: key.to_string(),
                state,
            }),
        }
    }

    /// Stops guest `key` at once, removes its domain and deletes its files. A guest that does
    /// not exist is fine.
    ///
    /// # Errors
    /// [`GuestError::Libvirt`] or [`GuestError::Io`].
    pub fn remove(&self, key: &str) -> Result<(), GuestError> {
        check_key(key)?;
        let _held = self.lock.lock().map_err(|_| GuestError::Poisoned)?;
        let name = Self::domain_name(key);
        self.virsh.destroy(&name).map_err(Self::libvirt(key))?;
        self.virsh.undefine(&name).map_err(Self::libvirt(key))?;
        remove_dir(&self.guest_dir(key))
    }

    /// The keys of the guests the daemon has (domains named `guestnet-<key>`), sorted.
    ///
    /// # Errors
    /// [`GuestError::Libvirt`].
    pub fn list(&self) -> Result<Vec<String>, GuestError> {
        let mut keys: Vec<String> = self
            .virsh
            .list_all()
            .map_err(Self::libvirt("*"))?
            .into_iter()
            .filter_map(|d| d.strip_prefix(DOMAIN_PREFIX).map(str::to_string))
            .collect();
        keys.sort();
        Ok(keys)
    }
}

/// What selects and sets up a VM driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    /// Which driver.
    pub driver: VmDriverName,
    /// libvirt's URI (for `libvirt`; [`DEFAULT_URI`] by default).
    pub uri: String,
    /// Use KVM when `/dev/kvm` can be opened (otherwise, and by default, TCG).
    pub kvm: bool,
    /// The agent's data directory; guests' files go under `guests/` in it.
    pub data_dir: PathBuf,
    /// For `qemu`: the network namespace holding the bridges (`None`: the agent's own). A
    /// libvirt daemon makes taps in its own namespace.
    pub netns: Option<String>,
}

/// A VM driver that boots guests, chosen by name.
#[derive(Debug)]
pub enum VmDriver {
    /// Through libvirt.
    Libvirt(Libvirt),
    /// QEMU run by guestnet.
    Qemu(Qemu),
}

impl VmDriver {
    /// The driver `config` names.
    pub fn new(config: &VmConfig) -> VmDriver {
        match config.driver {
            VmDriverName::Libvirt => VmDriver::Libvirt(Libvirt::new(&LibvirtConfig {
                uri: config.uri.clone(),
                kvm: config.kvm,
                data_dir: config.data_dir.clone(),
            })),
            VmDriverName::Qemu => VmDriver::Qemu(Qemu::new(&QemuConfig {
                kvm: config.kvm,
                data_dir: config.data_dir.clone(),
                netns: config.netns.clone(),
            })),
        }
    }

    /// Its name.
    pub fn name(&self) -> VmDriverName {
        match self {
            VmDriver::Libvirt(_) => VmDriverName::Libvirt,
            VmDriver::Qemu(_) => VmDriverName::Qemu,
        }
    }

    /// See [`Libvirt::ensure`] and [`Qemu::ensure`].
    ///
    /// # Errors
    /// [`GuestError`] naming what failed.
    pub fn ensure(
        &self,
        key: &str,
        spec: &GuestSpec,
        mac: MacAddr,
        bridge: &str,
    ) -> Result<(), GuestError> {
        match self {
            VmDriver::Libvirt(d) => d.ensure(key, spec, mac, bridge),
            VmDriver::Qemu(d) => d.ensure(key, spec, mac, bridge),
        }
    }

    /// See [`Libvirt::remove`] and [`Qemu::remove`].
    ///
    /// # Errors
    /// [`GuestError`] naming what failed.
    pub fn remove(&self, key: &str) -> Result<(), GuestError> {
        match self {
            VmDriver::Libvirt(d) => d.remove(key),
            VmDriver::Qemu(d) => d.remove(key),
        }
    }

    /// See [`Libvirt::list`] and [`Qemu::list`].
    ///
    /// # Errors
    /// [`GuestError`] naming what failed.
    pub fn list(&self) -> Result<Vec<String>, GuestError> {
        match self {
            VmDriver::Libvirt(d) => d.list(),
            VmDriver::Qemu(d) => d.list(),
        }
    }

    /// The file guest `key`'s serial console writes to.
    pub fn serial_log(&self, key: &str) -> PathBuf {
        match self {
            VmDriver::Libvirt(d) => d.serial_log(key),
            VmDriver::Qemu(d) => d.serial_log(key),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn driver(dir: &Path) -> Libvirt {
        Libvirt::new(&LibvirtConfig {
            // Never reached: these tests fail before libvirt is asked.
            uri: "qemu:///system?socket=/nonexistent/libvirt-sock".into(),
            kvm: false,
            data_dir: dir.to_path_buf(),
        })
    }

    #[test]
    fn names_parse_and_keys_are_checked() {
        assert_eq!(
            "libvirt".parse::<VmDriverName>().unwrap(),
            VmDriverName::Libvirt
        );
        assert_eq!("qemu".parse::<VmDriverName>().unwrap(), VmDriverName::Qemu);
        let e = "xen".parse::<VmDriverName>().unwrap_err();
        assert!(e.to_string().contains("\"xen\""), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let d = driver(dir.path());
        for bad in ["", "a/b", "..", "a b", &"x".repeat(49)] {
            assert!(matches!(d.remove(bad), Err(GuestError::Key(_))), "{bad:?}");
        }
        assert_eq!(d.accel(), Accel::Tcg);
    }
}
