//! Root tests of the `guestnet` binary.

mod agents;
mod faults;
mod host;
mod load;
mod procs;
mod qemu;
mod race;
mod router;
mod secrets;
mod serve;
mod signals;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};

use lab::{LabGuard, LabSpec, TempDir};
use sys::cmd::{ExitStatus, Output, Program, Stdio};

fn guestnet() -> Program {
    sys::cmd::Program::new(env!("CARGO_BIN_EXE_guestnet"))
}

fn lab_exec(data_dir: &Path, target: &str, argv: &[&str]) -> Program {
    let mut c = guestnet();
    c.args(["lab", "exec", "--data-dir"])
        .arg(data_dir)
        .arg(target)
        .arg("--")
        .args(argv);
    c
}

fn output(mut c: Program) -> Output {
    c.stdin(Stdio::null()).output().expect("run guestnet")
}

/// The status as a shell reports it: the exit code, or 128 + the signal that ended it.
fn shell_status(status: ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().expect("an exit code or a signal"))
}

fn demo() -> LabGuard {
    LabGuard::up_in(TempDir::new().expect("temp dir"), &LabSpec::default_demo()).expect("lab up")
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn lab_exec_passes_stdout_through_exactly() {
    let guard = demo();
    let out = output(lab_exec(guard.data_dir(), "vm:web1", &["echo", "hi"]));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"hi\n");
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn lab_exec_runs_inside_the_target_namespace() {
    let guard = demo();
    let out = output(lab_exec(
        guard.data_dir(),
        "vm:web2",
        &["ip", "-br", "-4", "addr", "show", "eth0"],
    ));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("10.1.1.12/24"),
        "{out:?}"
    );
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn lab_exec_exits_with_the_command_status() {
    let guard = demo();
    let out = output(lab_exec(
        guard.data_dir(),
        "vm:web1",
        &["sh", "-c", "exit 7"],
    ));
    assert_eq!(shell_status(out.status), 7);
    assert!(out.stdout.is_empty());
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn lab_exec_reports_a_signal_as_128_plus_signal() {
    let guard = demo();
    let out = output(lab_exec(
        guard.data_dir(),
        "outside",
        &["sh", "-c", "kill -TERM $$"],
    ));
    // lab exec itself exits with 128 + SIGTERM; it is not killed by the signal.
    assert_eq!(out.status.code(), Some(143), "{out:?}");
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn lab_exec_delivers_signals_to_the_command() {
    let guard = demo();
    let script = "trap 'echo got-term; exit 3' TERM; echo ready; while :; do sleep 0.05; done";
    let mut c = lab_exec(guard.data_dir(), "vm:web1", &["sh", "-c", script]);
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.take_stdout().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    sys::cmd::run("kill", &["-TERM", &child.id().to_string()], None).unwrap();
    line.clear();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "got-term\n");
    assert_eq!(shell_status(child.wait().unwrap()), 3);
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn lab_exec_passes_stdin_through() {
    let guard = demo();
    let mut c = lab_exec(guard.data_dir(), "router:net1", &["cat"]);
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .take_stdin()
        .unwrap()
        .write_all(b"line one\nline two\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"line one\nline two\n");
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn lab_exec_rejects_unknown_targets_on_stderr() {
    let guard = demo();
    for target in ["nowhere", "vm:nope", "router:nope"] {
        let out = output(lab_exec(guard.data_dir(), target, &["true"]));
        assert_eq!(out.status.code(), Some(2), "{target}: {out:?}");
        assert!(out.stdout.is_empty());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("nope") || stderr.contains("unknown target"),
            "{stderr}"
        );
    }
}

/// Runs `lab down` for a data directory when dropped, for labs built through the CLI.
struct DownOnDrop(PathBuf);

impl Drop for DownOnDrop {
    fn drop(&mut self) {
        if let Err(errors) = lab::down(&self.0) {
            for e in errors {
                eprintln!("teardown: {}", lab::chain(&e));
            }
        }
    }
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn lab_up_status_and_down_through_the_cli() {
    let dir = TempDir::new().unwrap();
    let _down = DownOnDrop(dir.path().to_path_buf());
    let spec = dir.path().join("spec.json");
    std::fs::write(
        &spec,
        r#"{"networks": [{"router": "r1", "guest_cidr": "10.9.0.0/24", "gateway": "10.9.0.1",
            "vms": [{"name": "a", "ip": "10.9.0.5"}]}]}"#,
    )
    .unwrap();
    let data_dir = dir.path().join("data");

    let mut up = guestnet();
    up.args(["lab", "up", "--data-dir"])
        .arg(&data_dir)
        .arg("--spec")
        .arg(&spec);
    let out = output(up);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.is_empty());
    let id = lab::id_for(&data_dir).unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains(&id));

    let mut status = guestnet();
    status.args(["lab", "status", "--data-dir"]).arg(&data_dir);
    let out = output(status);
    assert!(out.status.success(), "{out:?}");
    let listing = String::from_utf8_lossy(&out.stdout);
    for ns in ["sw", "outside", "r-r1", "vm-a"] {
        assert!(listing.contains(&format!("{id}-{ns}")), "{listing}");
    }

    for _ in 0..2 {
        let mut down = guestnet();
        down.args(["lab", "down", "--data-dir"]).arg(&data_dir);
        let out = output(down);
        assert!(out.status.success(), "{out:?}");
    }
    assert_eq!(lab::present_namespaces(&id).unwrap(), Vec::<String>::new());
}
