//! `cargo xtask deb`: the Debian package of guestnet, assembled from the release binary and
//! `packaging/` and built with `dpkg-deb` (no packaging tool beyond Debian's own).
//!
//! It installs `/usr/bin/guestnet`, the systemd units `guestnet.service` (the management server)
//! and `guestnet-agent.service` (a host's agent), their configuration under `/etc/guestnet`
//! (conffiles: an upgrade keeps the operator's edits), and the README and ARCHITECTURE as
//! documentation (the binary stripped of its debug information, as Debian ships binaries); it
//! depends on what the routers run (nftables, haproxy, dnsmasq, iproute2,
//! nsenter). The units are not enabled by the package: each needs its configuration
//! first.

use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The package's name.
pub(crate) const NAME: &str = "guestnet";

/// What the routers and the agent run, as Debian packages.
pub(crate) const DEPENDS: &[&str] = &[
    "nftables",
    "haproxy",
    "dnsmasq-base",
    "iproute2",
    "util-linux",
];

/// What the `libvirt` VM driver and guests' disk images need, recommended.
pub(crate) const RECOMMENDS: &[&str] = &["libvirt-clients", "qemu-system-x86", "qemu-utils"];

/// One file of the package: where it comes from (relative to the workspace), where it goes,
/// its mode, and whether it is configuration the operator edits.
struct Entry {
    from: PathBuf,
    to: &'static str,
    mode: u32,
    conffile: bool,
}

fn entries(binary: &Path) -> Vec<Entry> {
    let e = |from: &str, to, mode, conffile| Entry {
        from: PathBuf::from(from),
        to,
        mode,
        conffile,
    };
    vec![
        Entry {
            from: binary.to_path_buf(),
            to: "usr/bin/guestnet",
            mode: 0o755,
            conffile: false,
        },
        e(
            "packaging/systemd/guestnet.service",
            "lib/systemd/system/guestnet.service",
            0o644,
            false,
        ),
        e(
            "packaging/systemd/guestnet-agent.service",
            "lib/systemd/system/guestnet-agent.service",
            0o644,
            false,
        ),
        // It may hold the admin's keys and the database's password.
        e(
            "packaging/etc/serve.env",
            "etc/guestnet/serve.env",
            0o600,
            true,
        ),
        e(
            "packaging/etc/agent.toml",
            "etc/guestnet/agent.toml",
            0o644,
            true,
        ),
        e(
            "README.md",
            "usr/share/doc/guestnet/README.md",
            0o644,
            false,
        ),
        e(
            "ARCHITECTURE.md",
            "usr/share/doc/guestnet/ARCHITECTURE.md",
            0o644,
            false,
        ),
        e(
            "packaging/copyright",
            "usr/share/doc/guestnet/copyright",
            0o644,
            false,
        ),
    ]
}

const POSTINST: &str = "#!/bin/sh
set -e
# The units are installed, not enabled: each needs its configuration in /etc/guestnet first.
if [ \"$1\" = configure ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
fi
";

const POSTRM: &str = "#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
fi
";

/// Builds `guestnet_<version>_<arch>.deb` in `out_dir` from `binary`; returns its path.
///
/// # Errors
/// A file of `packaging/` missing, the binary's C library needs unreadable, or `dpkg-deb`
/// failing.
pub(crate) fn build(
    workspace: &Path,
    binary: &Path,
    version: &str,
    out_dir: &Path,
) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let arch = output(Command::new("dpkg").arg("--print-architecture"))?;
    let root = out_dir.join(format!("{NAME}-root"));
    if root.exists() {
        std::fs::remove_dir_all(&root).with_context(|| format!("removing {}", root.display()))?;
    }
    let mut conffiles = String::new();
    let mut md5sums = String::new();
    let mut installed_bytes = 0u64;
    for entry in entries(binary) {
        let from = if entry.from.is_absolute() {
            entry.from.clone()
        } else {
            workspace.join(&entry.from)
        };
        let to = root.join(entry.to);
        std::fs::create_dir_all(to.parent().context("a packaged file has a directory")?)?;
        if entry.to == "usr/bin/guestnet" {
            // Shipped without its debug information, as Debian's binaries are: the release
            // profile's line tables make it about five times larger (and slow to compress).
            let status = Command::new("strip")
                .arg("--strip-debug")
                .arg("-o")
                .arg(&to)
                .arg(&from)
                .status()
                .context("running strip")?;
            if !status.success() {
                bail!(
                    "strip --strip-debug {} failed with {status}",
                    from.display()
                );
            }
        } else {
            std::fs::copy(&from, &to)
                .with_context(|| format!("copying {} into the package", from.display()))?;
        }
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(entry.mode))?;
        installed_bytes += std::fs::metadata(&to)?.len();
        if entry.conffile {
            writeln!(conffiles, "/{}", entry.to)?;
        } else {
            let sum = output(Command::new("md5sum").arg(&to))?;
            let sum = sum
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
            writeln!(md5sums, "{sum}  {}", entry.to)?;
        }
    }
    let libc = libc_needed(binary)?;
    let mut depends = vec![format!("libc6 (>= {libc})")];
    depends.extend(DEPENDS.iter().map(|d| d.to_string()));
    let control = format!(
        "Package: {NAME}\n\
         Version: {version}\n\
         Architecture: {arch}\n\
         Maintainer: guestnet <guestnet@example.org>\n\
         Installed-Size: {}\n\
         Depends: {}\n\
         Recommends: {}\n\
         Section: net\n\
         Priority: optional\n\
         Description: guest-network firewall, port forwarding and load balancing for IaaS clouds\n \
         A management server speaking CloudStack's API for ingress and egress firewall rules,\n \
         port forwarding and load balancing, and a host agent running each guest network's\n \
         virtual router as a network namespace enforcing its rules atomically with nftables,\n \
         haproxy and dnsmasq.\n",
        installed_bytes.div_ceil(1024),
        depends.join(", "),
        RECOMMENDS.join(", "),
    );
    let debian = root.join("DEBIAN");
    std::fs::create_dir_all(&debian)?;
    let write = |name: &str, text: &str, mode: u32| -> Result<()> {
        let path = debian.join(name);
        std::fs::write(&path, text)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
        Ok(())
    };
    write("control", &control, 0o644)?;
    write("conffiles", &conffiles, 0o644)?;
    write("md5sums", &md5sums, 0o644)?;
    write("postinst", POSTINST, 0o755)?;
    write("postrm", POSTRM, 0o755)?;
    let deb = out_dir.join(format!("{NAME}_{version}_{arch}.deb"));
    let status = Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&root)
        .arg(&deb)
        .status()
        .context("running dpkg-deb")?;
    if !status.success() {
        bail!("dpkg-deb --build failed with {status}");
    }
    Ok(deb)
}

/// The newest glibc symbol version `binary` needs, e.g. `2.34`, read from its dynamic symbols.
fn libc_needed(binary: &Path) -> Result<String> {
    let symbols = output(Command::new("objdump").arg("-T").arg(binary))?;
    let mut newest: Option<Vec<u32>> = None;
    for token in symbols.split_whitespace() {
        let Some(v) = token
            .strip_prefix("(GLIBC_")
            .or_else(|| token.strip_prefix("GLIBC_"))
        else {
            continue;
        };
        let v = v.trim_end_matches(')');
        let Ok(parts) = v
            .split('.')
            .map(str::parse::<u32>)
            .collect::<Result<Vec<_>, _>>()
        else {
            continue;
        };
        if newest.as_ref().is_none_or(|n| parts > *n) {
            newest = Some(parts);
        }
    }
    let Some(newest) = newest else {
        bail!("{} names no glibc symbol version", binary.display());
    };
    Ok(newest
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join("."))
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn workspace() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the workspace holds xtask")
            .to_path_buf()
    }

    /// Builds the package from the release binary (built first if the test command has not
    /// built it yet) and checks what dpkg reads of it and what it unpacks to.
    #[test]
    fn the_package_holds_the_binary_its_units_and_configuration() {
        let ws = workspace();
        let status = Command::new(env!("CARGO"))
            .args(["build", "--release", "-p", "guestnet", "--bin", "guestnet"])
            .current_dir(&ws)
            .status()
            .unwrap();
        assert!(status.success(), "the release build failed");
        let binary = ws.join("target/release/guestnet");
        let out = tempfile::tempdir().unwrap();
        let deb = build(&ws, &binary, "0.0.0-test", out.path()).unwrap();

        let field =
            |name: &str| output(Command::new("dpkg-deb").arg("-f").arg(&deb).arg(name)).unwrap();
        assert_eq!(field("Package"), "guestnet");
        assert_eq!(field("Version"), "0.0.0-test");
        let depends = field("Depends");
        for d in DEPENDS {
            assert!(depends.contains(d), "Depends lacks {d}: {depends}");
        }
        assert!(depends.starts_with("libc6 (>= 2."), "{depends}");

        let listing = output(Command::new("dpkg-deb").arg("-c").arg(&deb)).unwrap();
        for (path, mode) in [
            ("./usr/bin/guestnet", "-rwxr-xr-x root/root"),
            (
                "./lib/systemd/system/guestnet.service",
                "-rw-r--r-- root/root",
            ),
            (
                "./lib/systemd/system/guestnet-agent.service",
                "-rw-r--r-- root/root",
            ),
            ("./etc/guestnet/agent.toml", "-rw-r--r-- root/root"),
            ("./etc/guestnet/serve.env", "-rw------- root/root"),
            ("./usr/share/doc/guestnet/README.md", "-rw-r--r-- root/root"),
        ] {
            let line = listing
                .lines()
                .find(|l| l.ends_with(path))
                .unwrap_or_else(|| panic!("{path} is not in the package:\n{listing}"));
            assert!(line.starts_with(mode), "{path}: {line}");
        }
        let conffiles = output(Command::new("dpkg-deb").arg("--ctrl-tarfile").arg(&deb));
        assert!(conffiles.is_ok());

        // Unpacked, the binary runs, and dpkg's own view of the control files agrees.
        let root = out.path().join("unpacked");
        output(Command::new("dpkg-deb").arg("-R").arg(&deb).arg(&root)).unwrap();
        let conf = std::fs::read_to_string(root.join("DEBIAN/conffiles")).unwrap();
        assert_eq!(conf, "/etc/guestnet/serve.env\n/etc/guestnet/agent.toml\n");
        let version = output(Command::new(root.join("usr/bin/guestnet")).arg("--version")).unwrap();
        assert!(version.starts_with("guestnet "), "{version}");
        let sums = std::fs::read_to_string(root.join("DEBIAN/md5sums")).unwrap();
        let check = Command::new("md5sum")
            .args(["--check", "--quiet", "-"])
            .current_dir(&root)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(sums.as_bytes())?;
                c.wait()
            })
            .unwrap();
        assert!(check.success(), "md5sums do not match the files:\n{sums}");

        // systemd reads both units without a complaint (the binary they start is the one
        // unpacked here).
        for unit in ["guestnet.service", "guestnet-agent.service"] {
            let text = std::fs::read_to_string(root.join("lib/systemd/system").join(unit)).unwrap();
            let local = out.path().join(unit);
            std::fs::write(
                &local,
                text.replace(
                    "/usr/bin/guestnet",
                    &root.join("usr/bin/guestnet").display().to_string(),
                )
                .replace(
                    "/etc/guestnet/",
                    &format!("{}/", root.join("etc/guestnet").display()),
                ),
            )
            .unwrap();
            let verify = Command::new("systemd-analyze")
                .args(["verify", "--man=no"])
                .arg(&local)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&verify.stderr);
            assert!(verify.status.success(), "{unit}: {stderr}");
        }
    }
}
