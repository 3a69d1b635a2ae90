//! Guests run by QEMU itself: a tap on a bridge, `qemu-system-x86_64` started as a daemon with a
//! pid file, found again through that file after a restart, stopped by signal; and `qemu-img`
//! to give a guest its own copy-on-write overlay of a disk image.
//!
//! Every function takes the network namespace to work in (`None`: the caller's own), since a
//! guest's tap must be made where its bridge is, and QEMU must run there to open it.

use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::cmd::{CommandError, Program, Stdio};
use crate::proc;

/// How often [`stop`] looks whether the process is gone.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

fn program(netns: Option<&str>, name: &str) -> Program {
    let mut p = match netns {
        Some(ns) => Program::in_netns(ns, name),
        None => Program::new(name),
    };
    p.stdin(Stdio::null()).env("LC_ALL", "C");
    p
}

fn ip(netns: Option<&str>, args: &[&str]) -> Result<String, CommandError> {
    let out = program(netns, "ip").args(args).run()?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether interface `dev` exists.
///
/// # Errors
/// [`CommandError`] if `ip` cannot be run or fails otherwise than for a missing device.
pub fn link_exists(netns: Option<&str>, dev: &str) -> Result<bool, CommandError> {
    match ip(netns, &["-o", "link", "show", "dev", dev]) {
        Ok(_) => Ok(true),
        Err(CommandError::Failed { stderr, .. }) if stderr.contains("does not exist") => Ok(false),
        Err(e) => Err(e),
    }
}

/// Makes tap `tap` and plugs it into bridge `bridge`, up. A tap left from before is replaced.
///
/// # Errors
/// [`CommandError`] with `ip`'s reason (for example a bridge that does not exist); no tap is
/// left then.
pub fn add_tap(netns: Option<&str>, tap: &str, bridge: &str) -> Result<(), CommandError> {
    delete_link(netns, tap)?;
    ip(netns, &["tuntap", "add", "dev", tap, "mode", "tap"])?;
    if let Err(e) = ip(netns, &["link", "set", tap, "master", bridge, "up"]) {
        let _ = delete_link(netns, tap);
        return Err(e);
    }
    Ok(())
}

/// Deletes interface `dev`; whether it existed.
///
/// # Errors
/// [`CommandError`] with `ip`'s reason.
pub fn delete_link(netns: Option<&str>, dev: &str) -> Result<bool, CommandError> {
    if !link_exists(netns, dev)? {
        return Ok(false);
    }
    ip(netns, &["link", "delete", dev]).map(|_| true)
}

/// Runs `qemu-system-x86_64 args…`, which must include `-daemonize` and `-pidfile`: returns
/// once QEMU has set the guest up and gone into the background, or with QEMU's reason when it
/// could not.
///
/// # Errors
/// [`CommandError`] with QEMU's standard error.
pub fn start_daemon(netns: Option<&str>, args: &[OsString]) -> Result<(), CommandError> {
    program(netns, "qemu-system-x86_64")
        .args(args)
        .stdout(Stdio::null())
        .run()
        .map(drop)
}

/// The process in pid file `pid_file` if it is alive and one of its arguments is `name`
/// (QEMU's `-name`), so a reused process id is not taken for the guest.
pub fn running(pid_file: &Path, name: &str) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (proc::is_alive(pid) && proc::cmdline(pid)?.iter().any(|a| a == name)).then_some(pid)
}

/// Ends process `pid`: SIGTERM, then SIGKILL after `grace`; returns once it is gone (a process
/// that is gone already is fine).
///
/// # Errors
/// The errno of `kill(2)`, or `EBUSY` if it is still there after SIGKILL and another `grace`.
pub fn stop(pid: i32, grace: Duration) -> Result<(), nix::errno::Errno> {
    for signal in [Signal::SIGTERM, Signal::SIGKILL] {
        match kill(Pid::from_raw(pid), signal) {
            Ok(()) => {}
            Err(nix::errno::Errno::ESRCH) => return Ok(()),
            Err(e) => return Err(e),
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !proc::is_alive(pid) {
                return Ok(());
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }
    if proc::is_alive(pid) {
        Err(nix::errno::Errno::EBUSY)
    } else {
        Ok(())
    }
}

/// Makes `overlay` a new qcow2 image whose reads fall through to `base` (of format
/// `base_format`, `qcow2` or `raw`) and whose writes stay in it: a guest's own disk over a
/// template's shared image. qemu-img opens `base` to learn its size, so a base that is not an
/// image of that format is refused here.
///
/// # Errors
/// [`CommandError`] with qemu-img's reason.
pub fn create_overlay(base: &Path, base_format: &str, overlay: &Path) -> Result<(), CommandError> {
    program(None, "qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", base_format, "-b"])
        .arg(base)
        .arg(overlay)
        .run()
        .map(drop)
}
