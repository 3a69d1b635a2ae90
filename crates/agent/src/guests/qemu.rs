//! The `qemu` VM driver: guestnet runs each guest's `qemu-system-x86_64` itself, for a host
//! without libvirt.
//!
//! A guest has a tap (`gq` and 12 hex digits of a hash of its key, within Linux's 15
//! characters) plugged into its network's bridge, and QEMU runs as a daemon opening that tap
//! (`-netdev tap,…,script=no`), its pid in `<data dir>/guests/<key>/qemu.pid`: an agent that
//! restarts finds its guests again through those files (a process counts only if it is alive
//! and carries the guest's `-name`). Both are made in the namespace that holds the bridges,
//! the agent's own unless configured otherwise.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use render::libvirt::{is_interface_name, Accel, DomainError};
use router_config::MacAddr;

use super::{absolute, check_image, check_key, kvm_usable, remove_dir, GuestError, DOMAIN_PREFIX};
use crate::proto::{GuestImage, GuestSpec};

/// How long a guest's QEMU gets after SIGTERM (and again after SIGKILL).
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How the qemu VM driver is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuConfig {
    /// Use KVM when `/dev/kvm` can be opened (otherwise, and by default, TCG).
    pub kvm: bool,
    /// The agent's data directory; guests' files go under `guests/` in it.
    pub data_dir: PathBuf,
    /// The network namespace that holds the bridges, where taps are made and QEMU runs;
    /// `None`: the agent's own.
    pub netns: Option<String>,
}

/// The qemu VM driver.
#[derive(Debug)]
pub struct Qemu {
    accel: Accel,
    data_dir: PathBuf,
    netns: Option<String>,
    /// One change at a time: ensure and remove look, then act.
    lock: Mutex<()>,
}

/// A path as one value of a QEMU option list (its commas doubled).
fn opt_path(path: &Path) -> OsString {
    let text = path.to_string_lossy().replace(',', ",,");
    OsString::from(text)
}

impl Qemu {
    /// The driver for `config`.
    pub fn new(config: &QemuConfig) -> Qemu {
        let accel = if config.kvm && kvm_usable() {
            Accel::Kvm
        } else {
            Accel::Tcg
        };
        Qemu {
            accel,
            data_dir: absolute(&config.data_dir),
            netns: config.netns.clone(),
            lock: Mutex::new(()),
        }
    }

    /// TCG or KVM, as decided when the driver was made.
    pub fn accel(&self) -> Accel {
        self.accel
    }

    /// The directory of guest `key`'s files.
    pub fn guest_dir(&self, key: &str) -> PathBuf {
        self.data_dir.join("guests").join(key)
    }

    /// The file guest `key`'s serial console writes to.
    pub fn serial_log(&self, key: &str) -> PathBuf {
        self.guest_dir(key).join("serial.log")
    }

    fn pid_file(&self, key: &str) -> PathBuf {
        self.guest_dir(key).join("qemu.pid")
    }

    /// Guest `key`'s tap.
    pub fn tap_name(key: &str) -> String {
        // FNV-1a, 64 bits: stable across versions and machines, unlike std's hasher.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in key.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        format!("gq{:012x}", h >> 16)
    }

    /// The process of guest `key`'s QEMU, if it runs.
    pub fn pid(&self, key: &str) -> Option<i32> {
        sys::qemu::running(&self.pid_file(key), &format!("{DOMAIN_PREFIX}{key}"))
    }

    fn netns(&self) -> Option<&str> {
        self.netns.as_deref()
    }

    /// Makes sure guest `key` runs `spec` with one virtio NIC of MAC `mac` on bridge `bridge`:
    /// starts it, or finds it running (a running guest keeps what it was started with).
    ///
    /// A guest that cannot be made leaves nothing behind: no process, no tap, no files.
    ///
    /// # Errors
    /// [`GuestError`] naming what failed: a missing image file, a bad definition, `ip`'s,
    /// qemu-img's or QEMU's reason.
    pub fn ensure(
        &self,
        key: &str,
        spec: &GuestSpec,
        mac: MacAddr,
        bridge: &str,
    ) -> Result<(), GuestError> {
        check_key(key)?;
        let definition = |source| GuestError::Definition {
            key: key.to_string(),
            source,
        };
        check_image(key, &spec.image)?;
        if !is_interface_name(bridge) {
            return Err(definition(DomainError::Bridge(bridge.to_string())));
        }
        if !mac.is_unicast() {
            return Err(definition(DomainError::Mac(mac)));
        }
        if spec.cpus == 0 || spec.cpus > 256 || spec.memory_mib < 16 {
            return Err(definition(DomainError::Size {
                name: key.to_string(),
                what: format!(
                    "{} virtual CPUs and {} MiB (use 1 to 256 CPUs and at least 16 MiB)",
                    spec.cpus, spec.memory_mib
                ),
            }));
        }
        let _held = self.lock.lock().map_err(|_| GuestError::Poisoned)?;
        if self.pid(key).is_some() {
            return Ok(());
        }
        let made = self.start(key, spec, mac, bridge);
        if made.is_err() {
            let _ = self.clear(key);
        }
        made
    }

    fn start(
        &self,
        key: &str,
        spec: &GuestSpec,
        mac: MacAddr,
        bridge: &str,
    ) -> Result<(), GuestError> {
        // Whatever is left from a guest that is not running goes first.
        self.clear(key)?;
        let dir = self.guest_dir(key);
        std::fs::create_dir_all(&dir).map_err(|source| GuestError::Io {
            action: "create",
            path: dir.clone(),
            source,
        })?;
        let tap = Self::tap_name(key);
        let mut args: Vec<OsString> = Vec::new();
        let mut push = |a: &str| args.push(a.into());
        push("-name");
        push(&format!("{DOMAIN_PREFIX}{key}"));
        push("-nodefaults");
        push("-no-user-config");
        push("-display");
        push("none");
        push("-monitor");
        push("none");
        match self.accel {
            Accel::Tcg => {
                push("-accel");
                push("tcg");
            }
            Accel::Kvm => {
                push("-accel");
                push("kvm");
                push("-cpu");
                push("host");
            }
        }
        push("-m");
        push(&spec.memory_mib.to_string());
        push("-smp");
        push(&spec.cpus.to_string());
        push("-netdev");
        push(&format!("tap,id=n0,ifname={tap},script=no,downscript=no"));
        push("-device");
        push(&format!("virtio-net-pci,netdev=n0,mac={mac}"));
        let mut serial = OsString::from("file,id=s0,path=");
        serial.push(opt_path(&self.serial_log(key)));
        args.push("-chardev".into());
        args.push(serial);
        args.push("-serial".into());
        args.push("chardev:s0".into());
        match &spec.image {
            GuestImage::Kernel {
                kernel,
                initrd,
                cmdline,
            } => {
                args.push("-kernel".into());
                args.push(absolute(kernel).into());
                if let Some(initrd) = initrd {
                    args.push("-initrd".into());
                    args.push(absolute(initrd).into());
                }
                args.push("-append".into());
                args.push(cmdline.into());
            }
            GuestImage::Disk { path, format } => {
                let overlay = dir.join("disk.qcow2");
                let base = absolute(path);
                sys::qemu::create_overlay(&base, format, &overlay).map_err(|source| {
                    GuestError::Overlay {
                        key: key.to_string(),
                        base,
                        source: Box::new(source),
                    }
                })?;
                let mut drive = OsString::from("file=");
                drive.push(opt_path(&overlay));
                drive.push(",format=qcow2,if=virtio");
                args.push("-drive".into());
                args.push(drive);
            }
        }
        args.push("-pidfile".into());
        args.push(self.pid_file(key).into());
        args.push("-daemonize".into());
        sys::qemu::add_tap(self.netns(), &tap, bridge).map_err(|source| GuestError::Tap {
            key: key.to_string(),
            action: "make",
            tap: tap.clone(),
            bridge: bridge.to_string(),
            source: Box::new(source),
        })?;
        sys::qemu::start_daemon(self.netns(), &args).map_err(|source| GuestError::Qemu {
            key: key.to_string(),
            source: Box::new(source),
        })?;
        match self.pid(key) {
            Some(_) => Ok(()),
            None => Err(GuestError::NotRunning {
                key: key.to_string(),
                state: None,
            }),
        }
    }

    /// Stops guest `key`'s QEMU if it runs, deletes its tap and its files.
    fn clear(&self, key: &str) -> Result<(), GuestError> {
        if let Some(pid) = self.pid(key) {
            sys::qemu::stop(pid, STOP_GRACE).map_err(|source| GuestError::Stop {
                key: key.to_string(),
                pid,
                source,
            })?;
        }
        let tap = Self::tap_name(key);
        sys::qemu::delete_link(self.netns(), &tap).map_err(|source| GuestError::Tap {
            key: key.to_string(),
            action: "remove",
            tap,
            bridge: "*".into(),
            source: Box::new(source),
        })?;
        remove_dir(&self.guest_dir(key))
    }

    /// Stops guest `key` (SIGTERM, then SIGKILL), deletes its tap and its files. A guest that
    /// does not exist is fine.
    ///
    /// # Errors
    /// [`GuestError::Stop`], [`GuestError::Tap`] or [`GuestError::Io`].
    pub fn remove(&self, key: &str) -> Result<(), GuestError> {
        check_key(key)?;
        let _held = self.lock.lock().map_err(|_| GuestError::Poisoned)?;
        self.clear(key)
    }

    /// The keys of the guests whose QEMU runs, sorted.
    ///
    /// # Errors
    /// [`GuestError::Io`] if the guests' directory cannot be read.
    pub fn list(&self) -> Result<Vec<String>, GuestError> {
        let dir = self.data_dir.join("guests");
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(GuestError::Io {
                    action: "read",
                    path: dir,
                    source,
                })
            }
        };
        let mut keys: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|k| check_key(k).is_ok() && self.pid(k).is_some())
            .collect();
        keys.sort();
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_names_are_short_stable_and_distinct() {
        let a = Qemu::tap_name("vm-1");
        assert_eq!(a, Qemu::tap_name("vm-1"));
        assert_ne!(a, Qemu::tap_name("vm-2"));
        assert!(is_interface_name(&a) && a.len() == 14, "{a}");
        assert_eq!(opt_path(Path::new("/a,b/c")), OsString::from("/a,,b/c"));
    }
}
