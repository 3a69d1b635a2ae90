//! A private libvirt daemon for a test, running inside the test's network namespace, so the
//! taps of the guests it starts are made there, beside the test's bridges.
//!
//! The daemon is the machine's `libvirtd` in a mount namespace of its own, in which the
//! directories a privileged daemon uses (`/run`, `/var/lib`, `/var/cache`, `/var/log`,
//! `/etc/libvirt`) are the test's own directories, bound over the real ones: the machine's
//! libvirt, whether it runs or not, is never touched, and several tests run daemons at once.
//! Its socket is in the test's directory, reached with [`Libvirtd::uri`]; its configuration
//! (`render::libvirt::daemon_conf` and `qemu_conf`) runs guests as root, leaves files' owners
//! alone and puts each guest's output in a plain file. When the machine has no `libvirt-qemu`
//! user (it comes with `libvirt-daemon-system`, which a test machine need not have), the mount
//! namespace also gets a `/etc/passwd` and `/etc/group` with one, since the daemon looks that
//! user up before reading its configuration.
//!
//! Dropping it destroys and undefines every domain it has, then ends the daemon.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use sys::cmd::{Child, Program, Stdio};
use sys::virsh::Virsh;

/// How long the daemon may take to answer after it starts.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// How long the daemon gets after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The user (and group) the daemon looks up when it starts.
const QEMU_USER: &str = "libvirt-qemu";

/// Mounts the test's directories over the daemon's and runs it (`$1`: the test's directory).
const START_SCRIPT: &str = r#"set -e
d=$1
mount --bind "$d/run" /run
mount --bind "$d/var-lib" /var/lib
mount --bind "$d/var-cache" /var/cache
mount --bind "$d/var-log" /var/log
mount --bind "$d/etc" /etc/libvirt
if [ -f "$d/passwd" ]; then mount --bind "$d/passwd" /etc/passwd; fi
if [ -f "$d/group" ]; then mount --bind "$d/group" /etc/group; fi
exec libvirtd --config "$d/etc/libvirtd.conf" --pid-file "$d/libvirtd.pid"
"#;

/// Why the daemon cannot be started.
#[derive(Debug, thiserror::Error)]
pub enum LibvirtdError {
    /// Its directories or configuration cannot be written.
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
    /// Its configuration cannot be rendered.
    #[error(transparent)]
    Render(#[from] render::libvirt::DomainError),
    /// It cannot be started.
    #[error("cannot start libvirtd")]
    Spawn(#[source] sys::cmd::CommandError),
    /// It exited, or did not answer in time; its log says why.
    #[error("libvirtd {what}; its log:\n{log}")]
    NotUp {
        /// `exited (status)` or `did not answer within 30 s`.
        what: String,
        /// Its output and log.
        log: String,
    },
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> LibvirtdError {
    let path = path.to_path_buf();
    move |source| LibvirtdError::Io {
        action,
        path,
        source,
    }
}

/// A private libvirt daemon inside a network namespace, ended on drop.
#[derive(Debug)]
pub struct Libvirtd {
    dir: tempfile::TempDir,
    child: Option<Child>,
    virsh: Virsh,
}

/// Whether `file` (`/etc/passwd` or `/etc/group`) has an entry named `name`.
fn has_entry(file: &str, name: &str) -> bool {
    std::fs::read_to_string(file)
        .map(|t| t.lines().any(|l| l.split(':').next() == Some(name)))
        .unwrap_or(false)
}

impl Libvirtd {
    /// Starts a daemon inside network namespace `netns` and waits until it answers.
    ///
    /// # Errors
    /// [`LibvirtdError`]; nothing is left running.
    pub fn start(netns: &str) -> Result<Libvirtd, LibvirtdError> {
        let dir = tempfile::Builder::new()
            .prefix("guestnet-libvirtd-")
            .tempdir()
            .map_err(io("create", Path::new("a temporary directory")))?;
        let d = dir.path();
        for sub in ["run", "var-lib", "var-cache", "var-log", "etc", "sock"] {
            let p = d.join(sub);
            std::fs::create_dir_all(&p).map_err(io("create", &p))?;
        }
        let conf = render::libvirt::daemon_conf(&d.join("sock"), &d.join("libvirtd.log"))?;
        let write = |name: &str, text: &str| {
            let p = d.join(name);
            std::fs::write(&p, text).map_err(io("write", &p))
        };
        write("etc/libvirtd.conf", &conf)?;
        write("etc/qemu.conf", &render::libvirt::qemu_conf())?;
        for (file, line) in [
            (
                "passwd",
                format!(
                    "{QEMU_USER}:x:64055:64055:libvirt guests:/var/lib/libvirt:/usr/sbin/nologin"
                ),
            ),
            ("group", format!("{QEMU_USER}:x:64055:")),
        ] {
            let system = format!("/etc/{file}");
            if !has_entry(&system, QEMU_USER) {
                let mut text =
                    std::fs::read_to_string(&system).map_err(io("read", Path::new(&system)))?;
                if !text.ends_with('\n') {
                    text.push('\n');
                }
                text.push_str(&line);
                text.push('\n');
                write(file, &text)?;
            }
        }
        let out_path = d.join("daemon.out");
        let out = File::create(&out_path).map_err(io("create", &out_path))?;
        let err = out.try_clone().map_err(io("open", &out_path))?;
        let child = Program::in_netns(netns, "unshare")
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(START_SCRIPT)
            .arg("sh")
            .arg(d)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(LibvirtdError::Spawn)?;
        let uri = format!(
            "qemu:///system?socket={}",
            d.join("sock/libvirt-sock").display()
        );
        let mut daemon = Libvirtd {
            dir,
            child: Some(child),
            virsh: Virsh::new(uri),
        };
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Some(child) = daemon.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    daemon.child = None;
                    return Err(LibvirtdError::NotUp {
                        what: format!("exited ({status})"),
                        log: daemon.log(),
                    });
                }
            }
            if daemon.virsh.list_all().is_ok() {
                return Ok(daemon);
            }
            if Instant::now() >= deadline {
                return Err(LibvirtdError::NotUp {
                    what: format!("did not answer within {} s", START_DEADLINE.as_secs()),
                    log: daemon.log(),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The URI that reaches it (`qemu:///system?socket=…`).
    pub fn uri(&self) -> &str {
        self.virsh.uri()
    }

    /// A connection to it.
    pub fn virsh(&self) -> &Virsh {
        &self.virsh
    }

    /// Its process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Its directory (its sockets, state, configuration and logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What it wrote: its standard output and error, its log, and each guest's QEMU log.
    pub fn log(&self) -> String {
        let d = self.dir.path();
        let mut text = String::new();
        for f in ["daemon.out", "libvirtd.log"] {
            if let Ok(t) = std::fs::read_to_string(d.join(f)) {
                text.push_str(&format!("--- {f}\n{t}"));
            }
        }
        if let Ok(entries) = std::fs::read_dir(d.join("var-log/libvirt/qemu")) {
            for e in entries.flatten() {
                if let Ok(t) = std::fs::read_to_string(e.path()) {
                    text.push_str(&format!("--- {}\n{t}", e.path().display()));
                }
            }
        }
        text
    }
}

impl Drop for Libvirtd {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(domains) = self.virsh.list_all() {
            for d in domains {
                let _ = self.virsh.destroy(&d);
                let _ = self.virsh.undefine(&d);
            }
        }
        let _ = child.signal(Signal::SIGTERM);
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill_and_wait();
    }
}
