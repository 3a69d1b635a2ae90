//! Root tests: labs built from real network namespaces.

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use lab::{Lab, LabError, LabGuard, LabSpec, Target, TempDir};

mod grow;

/// A generous bound for things that normally take milliseconds.
const DEADLINE: Duration = Duration::from_secs(10);

/// Polls `f` until it holds, panicking with `what` after [`DEADLINE`].
fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn up(spec: &LabSpec) -> LabGuard {
    LabGuard::up_in(TempDir::new().expect("temp dir"), spec).expect("lab up")
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn present(id: &str) -> Vec<String> {
    sorted(lab::present_namespaces(id).expect("list namespaces"))
}

fn pings(lab: &Lab, from: &Target, to: &str) -> bool {
    lab.exec_capture(from, &["ping", "-c1", "-W1", to])
        .expect("run ping")
        .status
        .success()
}

fn vm(name: &str) -> Target {
    Target::Vm(name.to_string())
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn up_builds_every_namespace_and_vms_on_one_network_reach_each_other() {
    let guard = up(&LabSpec::default_demo());
    let lab = guard.lab();
    assert_eq!(present(lab.id()), sorted(lab.namespaces().all()));
    assert!(guard.data_dir().join(lab::STATE_FILE).exists());

    wait_for("web1 to ping web2", || pings(lab, &vm("web1"), "10.1.1.12"));

    let router = Target::Router("net1".to_string());
    let forwarding = lab
        .exec_capture(&router, &["sysctl", "-n", "net.ipv4.ip_forward"])
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&forwarding.stdout), "1\n");
    let links = lab.exec_capture(&router, &["ip", "-br", "link"]).unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(
        links.contains("pub0@") && links.contains("guest0@"),
        "{links}"
    );

    let outside = lab
        .exec_capture(&Target::Outside, &["ip", "-br", "addr"])
        .unwrap();
    let outside = String::from_utf8_lossy(&outside.stdout);
    for a in [
        "203.0.113.1/24",
        "203.0.113.2/24",
        "203.0.113.3/24",
        "198.51.100.1",
        "192.0.2.1",
    ] {
        assert!(outside.contains(a), "{a} missing from outside: {outside}");
    }
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn up_refuses_a_second_lab_for_the_same_data_dir() {
    let guard = up(&LabSpec::default_demo());
    let err = Lab::up(guard.data_dir(), &LabSpec::default_demo()).unwrap_err();
    assert!(matches!(err, LabError::AlreadyUp { .. }), "{err:?}");
    assert!(err.to_string().contains("lab down"), "{err}");
    assert_eq!(present(guard.id()), sorted(guard.namespaces().all()));
}

#[test]
fn up_with_an_invalid_spec_reports_every_problem() {
    let dir = TempDir::new().unwrap();
    let spec = LabSpec { networks: vec![] };
    let err = Lab::up(dir.path(), &spec).unwrap_err();
    assert!(
        matches!(err, LabError::InvalidSpec { ref problems } if problems.len() == 1),
        "{err:?}"
    );
    assert!(!dir.path().join(lab::STATE_FILE).exists());
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn down_is_idempotent_removes_every_namespace_and_ends_processes() {
    let guard = up(&LabSpec::default_demo());
    let id = guard.id().to_string();
    let web1 = guard.vm_netns("web1").unwrap();
    let mut child = guard.spawn(&vm("web1"), &["sleep", "300"]).unwrap();
    let pid = i32::try_from(child.id()).unwrap();
    wait_for("sleep to enter the namespace", || {
        sys::netns::pids(&web1).unwrap().contains(&pid)
    });

    let report = lab::down(guard.data_dir()).unwrap();
    assert_eq!(report.processes_ended.get(&web1), Some(&vec![pid]));
    assert_eq!(
        sorted(report.namespaces_removed.clone()),
        sorted(guard.namespaces().all())
    );
    assert!(report.state_removed);
    assert_eq!(present(&id), Vec::<String>::new());
    assert!(!guard.data_dir().join(lab::STATE_FILE).exists());
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(15), "{status:?}");

    let again = lab::down(guard.data_dir()).unwrap();
    assert!(again.is_empty(), "{again:?}");
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn down_finds_namespaces_by_prefix_when_the_state_file_is_gone() {
    let guard = up(&LabSpec::default_demo());
    std::fs::remove_file(guard.data_dir().join(lab::STATE_FILE)).unwrap();
    let report = lab::down(guard.data_dir()).unwrap();
    assert_eq!(
        sorted(report.namespaces_removed),
        sorted(guard.namespaces().all())
    );
    assert!(!report.state_removed);
    assert_eq!(present(guard.id()), Vec::<String>::new());
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn down_works_with_a_malformed_state_file() {
    let guard = up(&LabSpec::default_demo());
    std::fs::write(guard.data_dir().join(lab::STATE_FILE), "{\"id\": \"gn").unwrap();
    let report = lab::down(guard.data_dir()).unwrap();
    assert_eq!(
        sorted(report.namespaces_removed),
        sorted(guard.namespaces().all())
    );
    assert!(report.state_removed);
    assert_eq!(present(guard.id()), Vec::<String>::new());
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn two_labs_with_different_data_dirs_coexist() {
    let first = up(&LabSpec::default_demo());
    let second = up(&LabSpec::default_demo());
    assert_ne!(first.id(), second.id());
    assert_eq!(present(first.id()), sorted(first.namespaces().all()));
    assert_eq!(present(second.id()), sorted(second.namespaces().all()));
    for lab in [first.lab(), second.lab()] {
        wait_for("web1 to ping web2", || pings(lab, &vm("web1"), "10.1.1.12"));
    }

    let second_id = second.id().to_string();
    let first_id = first.id().to_string();
    drop(first);
    assert_eq!(present(&first_id), Vec::<String>::new());
    assert_eq!(present(&second_id), sorted(second.namespaces().all()));
    assert!(pings(second.lab(), &vm("web2"), "10.1.1.11"));
}
