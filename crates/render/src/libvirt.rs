//! libvirt's text for guests: a guest's domain XML, and the two configuration files of a libvirt
//! daemon that keeps its sockets, state and guests' files where it is told (`libvirtd.conf`,
//! `qemu.conf`).
//!
//! A guest has one virtio NIC on a Linux bridge of the host (a guest network's VLAN bridge
//! `br<trunk>-<vlan>`), with the MAC the management server gave it, so the network's router
//! recognises it for DHCP. It boots a kernel directly or a disk (a per-guest overlay of a
//! template's image); its serial console goes to a file; it has no graphics. Pure: the caller
//! writes the text and hands it to libvirt.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use router_config::MacAddr;

/// How the guest's CPU runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// QEMU's own emulation (TCG): slow, runs anywhere, also in a host that is itself a guest
    /// whose nested virtualisation does not work.
    Tcg,
    /// The host's KVM, with the host's CPU model passed through.
    Kvm,
}

/// What the guest boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// A kernel (and initial RAM disk) booted directly, with a command line.
    Kernel {
        /// The kernel image.
        kernel: PathBuf,
        /// The initial RAM disk, if any.
        initrd: Option<PathBuf>,
        /// The kernel's command line.
        cmdline: String,
    },
    /// A disk image booted by the firmware, attached as a virtio disk.
    Disk {
        /// The image (the guest's own overlay, not a template's shared image).
        path: PathBuf,
        /// `qcow2` or `raw`.
        format: String,
    },
}

/// One guest, as libvirt defines it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    /// The domain's name: letters, digits, `-`, `_` and `.`, 1 to 64 of them.
    pub name: String,
    /// Memory in MiB (at least 16).
    pub memory_mib: u32,
    /// Virtual CPUs (1 to 256).
    pub vcpus: u32,
    /// TCG or KVM.
    pub accel: Accel,
    /// What it boots.
    pub boot: Boot,
    /// The bridge its NIC is plugged into (a Linux interface name).
    pub bridge: String,
    /// Its NIC's MAC address (unicast).
    pub mac: MacAddr,
    /// The file its serial console (`ttyS0`) writes to.
    pub serial_log: PathBuf,
}

/// Why a domain cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The name is empty, too long or has other characters than letters, digits, `-`, `_`, `.`.
    #[error("domain name {0:?}: use 1 to 64 letters, digits, '-', '_' or '.'")]
    Name(String),
    /// Too little memory, or too many or no CPUs.
    #[error("domain {name}: {what}")]
    Size {
        /// The domain.
        name: String,
        /// What is wrong.
        what: String,
    },
    /// The bridge's name is not a Linux interface name.
    #[error("bridge name {0:?}: use 1 to 15 characters, none of them '/', ':' or white space")]
    Bridge(String),
    /// The MAC is a group or all-zero address, which no NIC may have.
    #[error("MAC {0} is not a unicast address")]
    Mac(MacAddr),
    /// A path is not UTF-8 or not absolute (libvirt reads it from another working directory).
    #[error("{what} path {path:?} must be absolute and UTF-8")]
    Path {
        /// Which path (`kernel`, `initrd`, `disk`, `serial log`).
        what: &'static str,
        /// The path.
        path: PathBuf,
    },
    /// A disk format other than `qcow2` or `raw`.
    #[error("disk format {0:?}: use qcow2 or raw")]
    Format(String),
}

/// Escapes text for an XML attribute value or element content.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

fn path_text<'a>(what: &'static str, path: &'a Path) -> Result<&'a str, DomainError> {
    match path.to_str() {
        Some(s) if path.is_absolute() => Ok(s),
        _ => Err(DomainError::Path {
            what,
            path: path.to_path_buf(),
        }),
    }
}

/// Whether `name` can name a Linux network interface.
pub fn is_interface_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
}

/// Whether `name` is a domain name [`domain_xml`] accepts.
pub fn is_domain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The domain XML of `d`, for `virsh define`.
///
/// # Errors
/// [`DomainError`] naming the first field that libvirt would refuse or misread.
pub fn domain_xml(d: &Domain) -> Result<String, DomainError> {
    if !is_domain_name(&d.name) {
        return Err(DomainError::Name(d.name.clone()));
    }
    let size = |what: String| DomainError::Size {
        name: d.name.clone(),
        what,
    };
    if d.memory_mib < 16 {
        return Err(size(format!(
            "{} MiB of memory is too little (at least 16)",
            d.memory_mib
        )));
    }
    if d.vcpus == 0 || d.vcpus > 256 {
        return Err(size(format!("{} virtual CPUs (use 1 to 256)", d.vcpus)));
    }
    if !is_interface_name(&d.bridge) {
        return Err(DomainError::Bridge(d.bridge.clone()));
    }
    if !d.mac.is_unicast() {
        return Err(DomainError::Mac(d.mac));
    }
    let serial = path_text("serial log", &d.serial_log)?;

    let mut x = String::new();
    let kind = match d.accel {
        Accel::Tcg => "qemu",
        Accel::Kvm => "kvm",
    };
    // `write!` into a String cannot fail.
    let _ = writeln!(x, "<domain type='{kind}'>");
    let _ = writeln!(x, "  <name>{}</name>", esc(&d.name));
    let _ = writeln!(x, "  <memory unit='MiB'>{}</memory>", d.memory_mib);
    let _ = writeln!(x, "  <vcpu>{}</vcpu>", d.vcpus);
    x.push_str("  <os>\n    <type arch='x86_64'>hvm</type>\n");
    let disk = match &d.boot {
        Boot::Kernel {
            kernel,
            initrd,
            cmdline,
        } => {
            let _ = writeln!(
                x,
                "    <kernel>{}</kernel>",
                esc(path_text("kernel", kernel)?)
            );
            if let Some(initrd) = initrd {
                let _ = writeln!(
                    x,
                    "    <initrd>{}</initrd>",
                    esc(path_text("initrd", initrd)?)
                );
            }
            let _ = writeln!(x, "    <cmdline>{}</cmdline>", esc(cmdline));
            None
        }
        Boot::Disk { path, format } => {
            if format != "qcow2" && format != "raw" {
                return Err(DomainError::Format(format.clone()));
            }
            x.push_str("    <boot dev='hd'/>\n");
            Some((path_text("disk", path)?, format))
        }
    };
    x.push_str("  </os>\n");
    x.push_str("  <features>\n    <acpi/>\n  </features>\n");
    if d.accel == Accel::Kvm {
        x.push_str("  <cpu mode='host-passthrough'/>\n");
    }
    x.push_str("  <clock offset='utc'/>\n");
    x.push_str("  <on_poweroff>destroy</on_poweroff>\n");
    x.push_str("  <on_reboot>restart</on_reboot>\n");
    x.push_str("  <on_crash>destroy</on_crash>\n");
    x.push_str("  <devices>\n");
    if let Some((path, format)) = disk {
        x.push_str("    <disk type='file' device='disk'>\n");
        let _ = writeln!(x, "      <driver name='qemu' type='{}'/>", esc(format));
        let _ = writeln!(x, "      <source file='{}'/>", esc(path));
        x.push_str("      <target dev='vda' bus='virtio'/>\n");
        x.push_str("    </disk>\n");
    }
    x.push_str("    <interface type='bridge'>\n");
    let _ = writeln!(x, "      <source bridge='{}'/>", esc(&d.bridge));
    let _ = writeln!(x, "      <mac address='{}'/>", d.mac);
    x.push_str("      <model type='virtio'/>\n");
    x.push_str("    </interface>\n");
    x.push_str("    <serial type='file'>\n");
    let _ = writeln!(x, "      <source path='{}'/>", esc(serial));
    x.push_str("      <target port='0'/>\n");
    x.push_str("    </serial>\n");
    x.push_str("    <memballoon model='none'/>\n");
    x.push_str("  </devices>\n");
    x.push_str("</domain>\n");
    Ok(x)
}

/// `libvirtd.conf` for a daemon whose sockets are in `socket_dir` (reached by
/// `qemu:///system?socket=<socket_dir>/libvirt-sock`), open to root only, without TCP or TLS,
/// logging to `log_file`.
///
/// # Errors
/// [`DomainError::Path`] if a path is not absolute UTF-8.
pub fn daemon_conf(socket_dir: &Path, log_file: &Path) -> Result<String, DomainError> {
    let sockets = path_text("socket directory", socket_dir)?;
    let log = path_text("log", log_file)?;
    Ok(format!(
        "# A libvirt daemon of guestnet's: its own sockets, root only.\n\
         unix_sock_dir = \"{}\"\n\
         unix_sock_group = \"root\"\n\
         unix_sock_ro_perms = \"0700\"\n\
         unix_sock_rw_perms = \"0700\"\n\
         auth_unix_ro = \"none\"\n\
         auth_unix_rw = \"none\"\n\
         listen_tls = 0\n\
         listen_tcp = 0\n\
         log_outputs = \"3:file:{}\"\n",
        conf_string(sockets),
        conf_string(log),
    ))
}

/// `qemu.conf` for a daemon whose guests run as root and leave the files they are given as they
/// are (no relabelling, no per-guest cgroups or mount namespaces), each guest's output going to
/// a plain file: what a daemon running inside a test's network namespace can do.
pub fn qemu_conf() -> String {
    "# Guests run as root; files keep their owners; no cgroups, no private /dev.\n\
     user = \"root\"\n\
     group = \"root\"\n\
     dynamic_ownership = 0\n\
     remember_owner = 0\n\
     security_driver = \"none\"\n\
     cgroup_controllers = [ ]\n\
     namespaces = [ ]\n\
     stdio_handler = \"file\"\n"
        .to_string()
}

/// A string in libvirt's configuration syntax (double-quoted, `\` escapes).
fn conf_string(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn guest() -> Domain {
        Domain {
            name: "guestnet-vm1".into(),
            memory_mib: 256,
            vcpus: 1,
            accel: Accel::Tcg,
            boot: Boot::Kernel {
                kernel: "/var/lib/guestnet/images/vmlinuz".into(),
                initrd: Some("/var/lib/guestnet/images/initrd.gz".into()),
                cmdline: "console=ttyS0 quiet".into(),
            },
            bridge: "br0-100".into(),
            mac: "52:54:00:12:34:56".parse().unwrap(),
            serial_log: "/var/lib/guestnet-agent/guests/vm1/serial.log".into(),
        }
    }

    #[test]
    fn refuses_what_libvirt_would_misread() {
        let mut d = guest();
        d.name = "a b".into();
        assert_eq!(domain_xml(&d), Err(DomainError::Name("a b".into())));
        let mut d = guest();
        d.bridge = "a-bridge-name-too-long".into();
        assert!(matches!(domain_xml(&d), Err(DomainError::Bridge(_))));
        let mut d = guest();
        d.mac = "01:00:5e:00:00:01".parse().unwrap();
        assert!(matches!(domain_xml(&d), Err(DomainError::Mac(_))));
        let mut d = guest();
        d.vcpus = 0;
        assert!(matches!(domain_xml(&d), Err(DomainError::Size { .. })));
        let mut d = guest();
        d.memory_mib = 8;
        assert!(matches!(domain_xml(&d), Err(DomainError::Size { .. })));
        let mut d = guest();
        d.serial_log = "relative/serial.log".into();
        assert!(matches!(
            domain_xml(&d),
            Err(DomainError::Path {
                what: "serial log",
                ..
            })
        ));
        let mut d = guest();
        d.boot = Boot::Disk {
            path: "/x.img".into(),
            format: "vmdk".into(),
        };
        assert_eq!(domain_xml(&d), Err(DomainError::Format("vmdk".into())));
    }

    #[test]
    fn escapes_text() {
        let mut d = guest();
        d.boot = Boot::Kernel {
            kernel: "/k".into(),
            initrd: None,
            cmdline: "a='<b>' & \"c\"".into(),
        };
        let xml = domain_xml(&d).unwrap();
        assert!(
            xml.contains("<cmdline>a=&apos;&lt;b&gt;&apos; &amp; &quot;c&quot;</cmdline>"),
            "{xml}"
        );
        assert!(!xml.contains("<initrd>"), "{xml}");
    }

    /// Compares `got` with `tests/data/libvirt/<file>`; `GUESTNET_BLESS=1` rewrites it.
    fn check(file: &str, got: &str) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/libvirt")
            .join(file);
        if std::env::var_os("GUESTNET_BLESS").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, got).unwrap();
            return;
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|_| panic!("{} is missing: run `cargo xtask bless`", path.display()));
        assert!(
            got == want,
            "{file} changed; review and run `cargo xtask bless`\n--- got ---\n{got}"
        );
    }

    #[test]
    fn snapshot_libvirt_kernel_guest() {
        check("kernel-tcg.xml", &domain_xml(&guest()).unwrap());
    }

    #[test]
    fn snapshot_libvirt_disk_guest() {
        let mut d = guest();
        d.accel = Accel::Kvm;
        d.vcpus = 2;
        d.memory_mib = 1024;
        d.boot = Boot::Disk {
            path: "/var/lib/guestnet-agent/guests/vm1/disk.qcow2".into(),
            format: "qcow2".into(),
        };
        check("disk-kvm.xml", &domain_xml(&d).unwrap());
    }

    #[test]
    fn snapshot_libvirt_daemon_conf() {
        let conf = daemon_conf(
            Path::new("/run/guestnet/libvirt"),
            Path::new("/run/guestnet/libvirt/libvirtd.log"),
        )
        .unwrap();
        check("libvirtd.conf", &conf);
        check("qemu.conf", &qemu_conf());
    }
}
