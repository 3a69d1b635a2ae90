//! A bootable test guest made from Debian packages: Debian's cloud kernel and an initial RAM
//! disk holding a static busybox, the kernel modules of a virtio NIC and an `/init` that takes
//! an address by DHCP and serves an HTTP page naming the guest.
//!
//! [`build`] downloads `linux-image-cloud-amd64`'s versioned kernel package and
//! `busybox-static` with `apt-get download`, unpacks them with `dpkg-deb -x` and writes the
//! initial RAM disk (a newc cpio archive, gzipped) itself. The result is kept under
//! `target/guest-image/<package versions>/`, built once per pair of versions; a build happens in a
//! temporary directory renamed into place, so two tests building at once both end with one
//! complete image.
//!
//! The guest, booted with [`CMDLINE`], loads its NIC's modules, brings `eth0` up, asks for an
//! address with busybox's `udhcpc` (whose event script applies the address, the default route
//! and the name servers), prints [`MARKER`] followed by its address on its serial console once
//! it has a lease, and serves `guestnet guest <name> (<address>)` on port 80 (busybox
//! `httpd`), where the name is the host name DHCP gave it, or else its MAC.

use std::collections::{BTreeSet, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use sys::cmd::{CommandError, Program, Stdio};

/// The kernel command line the guest boots with: its console on the first serial port.
pub const CMDLINE: &str = "console=ttyS0 quiet";

/// What the guest prints on its serial console, followed by its address, once it has a lease.
pub const MARKER: &str = "guestnet-guest: up ";

/// The package whose dependency names the current cloud kernel package.
const KERNEL_META: &str = "linux-image-cloud-amd64";

/// The static busybox.
const BUSYBOX: &str = "busybox-static";

/// The modules the guest loads, with their dependencies: the virtio PCI transport and the NIC.
const NIC_MODULES: &[&str] = &["virtio_pci", "virtio_net"];

/// A built guest image: what `GuestImage::Kernel` boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestImage {
    /// The kernel.
    pub kernel: PathBuf,
    /// The initial RAM disk.
    pub initrd: PathBuf,
    /// The kernel command line ([`CMDLINE`]).
    pub cmdline: String,
    /// The kernel package and busybox versions it was made of.
    pub versions: String,
}

/// Why the image cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum GuestImageError {
    /// A command (`apt-cache`, `apt-get download`, `dpkg-deb`, `gzip`) failed.
    #[error("cannot {what}")]
    Command {
        /// What was being done.
        what: String,
        /// The failed command with its standard error.
        #[source]
        source: CommandError,
    },
    /// A file or directory cannot be read or written.
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
    /// apt's answer does not say what was asked (a package's dependency or version).
    #[error("apt does not say {0}")]
    Apt(String),
    /// An unpacked package lacks something the image needs.
    #[error("{what} not found under {}", dir.display())]
    Missing {
        /// What: the kernel, its modules, busybox, a module.
        what: String,
        /// Where it was looked for.
        dir: PathBuf,
    },
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> GuestImageError {
    let path = path.to_path_buf();
    move |source| GuestImageError::Io {
        action,
        path,
        source,
    }
}

/// The workspace's target directory: `CARGO_TARGET_DIR` when set, else `target/` beside the
/// workspace's manifest.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
    }
}

/// Builds the image under `target/guest-image/` (or finds it built), see the module's docs.
///
/// # Errors
/// [`GuestImageError`] naming the step that failed.
pub fn build() -> Result<GuestImage, GuestImageError> {
    build_in(&target_dir().join("guest-image"))
}

fn run(what: impl Into<String>, p: &mut Program) -> Result<String, GuestImageError> {
    p.stdin(Stdio::null()).env("LC_ALL", "C");
    let out = p.run().map_err(|source| GuestImageError::Command {
        what: what.into(),
        source,
    })?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The versioned package `linux-image-cloud-amd64` depends on.
fn kernel_package() -> Result<String, GuestImageError> {
    let text = run(
        format!("resolve {KERNEL_META}"),
        Program::new("apt-cache").args(["depends", "--important", KERNEL_META]),
    )?;
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|p| p.starts_with("linux-image-"))
        .map(str::to_string)
        .ok_or_else(|| GuestImageError::Apt(format!("which kernel {KERNEL_META} depends on")))
}

/// The version apt would install of `package`.
fn candidate_version(package: &str) -> Result<String, GuestImageError> {
    let text = run(
        format!("look up {package}"),
        Program::new("apt-cache").args(["show", "--no-all-versions", package]),
    )?;
    text.lines()
        .find_map(|l| l.strip_prefix("Version:"))
        .map(|v| v.trim().to_string())
        .ok_or_else(|| GuestImageError::Apt(format!("the version of {package}")))
}

/// A directory name made of `text`: characters other than letters, digits, `.`, `+`, `-`
/// become `_`.
fn dir_name(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Builds the image in `cache` (or finds it there).
///
/// # Errors
/// [`GuestImageError`] naming the step that failed.
pub fn build_in(cache: &Path) -> Result<GuestImage, GuestImageError> {
    let kernel_pkg = kernel_package()?;
    let kernel_version = candidate_version(&kernel_pkg)?;
    let busybox_version = candidate_version(BUSYBOX)?;
    let versions = format!("{kernel_pkg}={kernel_version} {BUSYBOX}={busybox_version}");
    let dir = cache.join(dir_name(&format!(
        "{kernel_pkg}_{kernel_version}_{BUSYBOX}_{busybox_version}"
    )));
    let image = GuestImage {
        kernel: dir.join("vmlinuz"),
        initrd: dir.join("initrd.gz"),
        cmdline: CMDLINE.to_string(),
        versions,
    };
    if image.kernel.is_file() && image.initrd.is_file() {
        return Ok(image);
    }
    std::fs::create_dir_all(cache).map_err(io("create", cache))?;
    let work = tempfile::Builder::new()
        .prefix(".build-")
        .tempdir_in(cache)
        .map_err(io("create a directory in", cache))?;
    let debs = work.path().join("debs");
    let root = work.path().join("root");
    let out = work.path().join("out");
    for d in [&debs, &root, &out] {
        std::fs::create_dir_all(d).map_err(io("create", d))?;
    }
    run(
        format!("download {kernel_pkg} and {BUSYBOX}"),
        Program::new("apt-get")
            // As root, apt would otherwise try to download as `_apt`, who cannot write here.
            .args(["-q", "-o", "APT::Sandbox::User=root", "download"])
            .arg(format!("{kernel_pkg}={kernel_version}"))
            .arg(format!("{BUSYBOX}={busybox_version}"))
            .current_dir(&debs),
    )?;
    let entries = std::fs::read_dir(&debs).map_err(io("read", &debs))?;
    for e in entries {
        let deb = e.map_err(io("read", &debs))?.path();
        run(
            format!("unpack {}", deb.display()),
            Program::new("dpkg-deb").arg("-x").arg(&deb).arg(&root),
        )?;
    }
    let (kernel, modules_dir) = find_kernel(&root)?;
    let busybox = root.join("bin/busybox");
    if !busybox.is_file() {
        return Err(GuestImageError::Missing {
            what: "bin/busybox".into(),
            dir: root,
        });
    }
    let modules = nic_modules(&modules_dir)?;
    let cpio = out.join("initrd");
    write_initramfs(&cpio, &busybox, &modules)?;
    run(
        "compress the initial RAM disk",
        Program::new("gzip").args(["-n", "-9"]).arg(&cpio),
    )?;
    let gz = out.join("initrd.gz");
    if !gz.is_file() {
        return Err(GuestImageError::Missing {
            what: "initrd.gz".into(),
            dir: out,
        });
    }
    let vmlinuz = out.join("vmlinuz");
    std::fs::copy(&kernel, &vmlinuz).map_err(io("copy", &kernel))?;
    // Into place; when another build got there first its image is as good as this one.
    if let Err(e) = std::fs::rename(&out, &dir) {
        if !(image.kernel.is_file() && image.initrd.is_file()) {
            return Err(io("rename into", &dir)(e));
        }
    }
    Ok(image)
}

/// The unpacked kernel image and its modules' directory (`lib/modules/<release>`).
fn find_kernel(root: &Path) -> Result<(PathBuf, PathBuf), GuestImageError> {
    let boot = root.join("boot");
    let entries = std::fs::read_dir(&boot).map_err(io("read", &boot))?;
    for e in entries {
        let path = e.map_err(io("read", &boot))?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(release) = name.strip_prefix("vmlinuz-") {
            for base in ["lib/modules", "usr/lib/modules"] {
                let modules = root.join(base).join(release);
                if modules.is_dir() {
                    return Ok((path, modules));
                }
            }
            return Err(GuestImageError::Missing {
                what: format!("the modules of kernel {release}"),
                dir: root.to_path_buf(),
            });
        }
    }
    Err(GuestImageError::Missing {
        what: "boot/vmlinuz-*".into(),
        dir: root.to_path_buf(),
    })
}

/// Every `.ko` under `dir`, by module name (`-` read as `_`).
fn index_modules(dir: &Path, found: &mut HashMap<String, PathBuf>) -> Result<(), GuestImageError> {
    let entries = std::fs::read_dir(dir).map_err(io("read", dir))?;
    for e in entries {
        let path = e.map_err(io("read", dir))?.path();
        if path.is_dir() {
            index_modules(&path, found)?;
        } else if let Some(stem) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".ko"))
        {
            found.insert(stem.replace('-', "_"), path);
        }
    }
    Ok(())
}

/// The modules a module needs, from the `depends=` entry of its `.modinfo`.
pub fn module_depends(ko: &[u8]) -> Vec<String> {
    ko.split(|&b| b == 0)
        .find_map(|field| field.strip_prefix(b"depends="))
        .map(|list| {
            String::from_utf8_lossy(list)
                .split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(|m| m.replace('-', "_"))
                .collect()
        })
        .unwrap_or_default()
}

/// The NIC's modules and what they need, each after its dependencies: `(name, file)`. A module
/// built into the kernel (`modules.builtin`) needs no file.
fn nic_modules(modules_dir: &Path) -> Result<Vec<(String, PathBuf)>, GuestImageError> {
    let mut files = HashMap::new();
    index_modules(&modules_dir.join("kernel"), &mut files)?;
    let builtin_file = modules_dir.join("modules.builtin");
    let builtin: BTreeSet<String> = std::fs::read_to_string(&builtin_file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.rsplit('/').next())
        .filter_map(|n| n.strip_suffix(".ko"))
        .map(|n| n.replace('-', "_"))
        .collect();
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    for m in NIC_MODULES {
        visit(m, &files, &builtin, modules_dir, &mut seen, &mut order)?;
    }
    Ok(order)
}

fn visit(
    name: &str,
    files: &HashMap<String, PathBuf>,
    builtin: &BTreeSet<String>,
    dir: &Path,
    seen: &mut BTreeSet<String>,
    order: &mut Vec<(String, PathBuf)>,
) -> Result<(), GuestImageError> {
    if !seen.insert(name.to_string()) {
        return Ok(());
    }
    let Some(path) = files.get(name) else {
        if builtin.contains(name) {
            return Ok(());
        }
        return Err(GuestImageError::Missing {
            what: format!("kernel module {name}"),
            dir: dir.to_path_buf(),
        });
    };
    let bytes = std::fs::read(path).map_err(io("read", path))?;
    for dep in module_depends(&bytes) {
        visit(&dep, files, builtin, dir, seen, order)?;
    }
    order.push((name.to_string(), path.clone()));
    Ok(())
}

/// The guest's `/init`, loading `modules` in order.
fn init_script(modules: &[(String, PathBuf)]) -> String {
    let names: Vec<&str> = modules.iter().map(|(n, _)| n.as_str()).collect();
    format!(
        r#"#!/bin/busybox sh
# guestnet's test guest: an address by DHCP on eth0, then an HTTP page naming the guest.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in {modules}; do
    insmod /lib/modules/$m.ko || echo "guestnet-guest: cannot load $m"
done
ip link set lo up
ip link set eth0 up || echo "guestnet-guest: no eth0"
echo "guestnet guest $(cat /sys/class/net/eth0/address) (no address yet)" > /www/index.html
httpd -p 80 -h /www
# In the foreground until the first lease, then in the background renewing it.
udhcpc -i eth0 -s /etc/udhcpc.script -b -t 30 -T 2 -A 2
while true; do sleep 3600; done
"#,
        modules = names.join(" ")
    )
}

/// udhcpc's event script: applies a lease, names the guest, prints the marker.
const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
case "$1" in
deconfig)
    ip -4 addr flush dev "$interface"
    ip link set "$interface" up
    ;;
bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    if [ -n "$router" ]; then
        ip route replace default via "${router%% *}" dev "$interface"
    fi
    : > /etc/resolv.conf
    for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done
    if [ -n "$domain" ]; then echo "search $domain" >> /etc/resolv.conf; fi
    name=$(cat /sys/class/net/$interface/address)
    if [ -n "$hostname" ]; then hostname "$hostname"; name=$hostname; fi
    echo "guestnet guest $name ($ip)" > /www/index.html
    if [ "$1" = bound ]; then echo "guestnet-guest: up $ip" > /dev/console; fi
    ;;
esac
"#;

/// Writes the initial RAM disk, uncompressed, to `path`.
fn write_initramfs(
    path: &Path,
    busybox: &Path,
    modules: &[(String, PathBuf)],
) -> Result<(), GuestImageError> {
    let mut cpio = Cpio::default();
    for d in [
        "bin",
        "dev",
        "etc",
        "lib",
        "lib/modules",
        "proc",
        "run",
        "sys",
        "tmp",
        "www",
    ] {
        cpio.dir(d);
    }
    cpio.char_device("dev/console", 5, 1);
    cpio.file("init", 0o755, init_script(modules).as_bytes());
    cpio.file("etc/udhcpc.script", 0o755, UDHCPC_SCRIPT.as_bytes());
    let bytes = std::fs::read(busybox).map_err(io("read", busybox))?;
    cpio.file("bin/busybox", 0o755, &bytes);
    for (name, file) in modules {
        let bytes = std::fs::read(file).map_err(io("read", file))?;
        cpio.file(&format!("lib/modules/{name}.ko"), 0o644, &bytes);
    }
    let mut f = std::fs::File::create(path).map_err(io("create", path))?;
    f.write_all(&cpio.finish()).map_err(io("write", path))
}

/// A newc ("070701") cpio archive, as the kernel unpacks an initial RAM disk: every entry owned
/// by root, time 0.
#[derive(Debug, Default)]
pub struct Cpio {
    out: Vec<u8>,
    next_inode: u32,
}

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFCHR: u32 = 0o020_000;

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        self.next_inode += 1;
        let nlink = if mode & S_IFDIR != 0 { 2 } else { 1 };
        let size = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let name_size = u32::try_from(name.len() + 1).unwrap_or(u32::MAX);
        let fields = [
            self.next_inode,
            mode,
            0,
            0,
            nlink,
            0,
            size,
            0,
            0,
            rdev.0,
            rdev.1,
            name_size,
            0,
        ];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    /// A directory.
    pub fn dir(&mut self, name: &str) {
        self.entry(name, S_IFDIR | 0o755, (0, 0), &[]);
    }

    /// A regular file with permissions `perm`.
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, S_IFREG | (perm & 0o7777), (0, 0), data);
    }

    /// A character device node.
    pub fn char_device(&mut self, name: &str, major: u32, minor: u32) {
        self.entry(name, S_IFCHR | 0o600, (major, minor), &[]);
    }

    /// The archive, closed by its trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        self.out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_a_modules_dependencies() {
        let modinfo =
            b"\x7fELF...\0license=GPL\0depends=virtio_ring,virtio,net-failover\0name=virtio_net\0";
        assert_eq!(
            module_depends(modinfo),
            ["virtio_ring", "virtio", "net_failover"]
        );
        assert!(module_depends(b"\0depends=\0name=failover\0").is_empty());
    }

    #[test]
    fn cpio_entries_are_aligned_and_closed_by_the_trailer() {
        let mut c = Cpio::default();
        c.dir("bin");
        c.file("init", 0o755, b"#!/bin/sh\n");
        let out = c.finish();
        assert!(out.len().is_multiple_of(4));
        assert!(out.starts_with(b"070701"));
        // The directory's header: inode 1, mode 040755.
        assert_eq!(&out[6..22], b"00000001000041ed");
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("init\0"));
        assert!(text.contains("TRAILER!!!\0"));
    }
}
