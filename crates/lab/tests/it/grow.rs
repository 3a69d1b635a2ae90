//! Root tests of a lab that starts empty and gains and loses networks and VMs while it runs.

use std::net::Ipv4Addr;

use lab::{Lab, LabError, LabGuard, NetworkSpec, Target, VmSpec};

use super::{pings, present, sorted, vm, wait_for};

fn network(router: &str, third_octet: u8, vms: &[(&str, u8)]) -> NetworkSpec {
    NetworkSpec {
        router: router.to_string(),
        guest_cidr: format!("10.{third_octet}.{third_octet}.0/24")
            .parse()
            .expect("cidr"),
        gateway: Ipv4Addr::new(10, third_octet, third_octet, 1),
        vms: vms
            .iter()
            .map(|&(name, host)| vm_spec(name, third_octet, host))
            .collect(),
    }
}

fn vm_spec(name: &str, third_octet: u8, host: u8) -> VmSpec {
    VmSpec {
        name: name.to_string(),
        ip: Ipv4Addr::new(10, third_octet, third_octet, host),
        label: None,
    }
}

fn router(name: &str) -> Target {
    Target::Router(name.to_string())
}

/// Gives router `name`'s `guest0` the gateway address by hand (the router daemon does this in
/// real use), so VMs have something to ping.
fn add_gateway(lab: &Lab, name: &str, cidr: &str) {
    let out = lab
        .exec_capture(&router(name), &["ip", "addr", "add", cidr, "dev", "guest0"])
        .expect("run ip");
    assert!(out.status.success(), "{out:?}");
}

/// The interfaces in the switch namespace, sorted, without the `@peer` suffix.
fn switch_links(lab: &Lab) -> Vec<String> {
    let sw = &lab.namespaces().switch;
    let out = sys::cmd::run("ip", &["-n", sw, "-br", "link"], None).expect("list switch links");
    sorted(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .collect(),
    )
}

/// Starts a shell that opens namespace `ns` at once but enters it (and sleeps there for five
/// minutes) only after a second; returns once it holds the namespace open.
fn enters_late(ns: &str) -> sys::cmd::Child {
    let path = sys::netns::path(ns);
    let script = format!(
        "exec 3<{}; sleep 1; exec nsenter --net=/proc/self/fd/3 -- sleep 300",
        path.display()
    );
    let child = sys::cmd::Program::new("sh")
        .args(["-c", &script])
        .stdin(sys::cmd::Stdio::null())
        .spawn()
        .expect("start sh");
    let pid = i32::try_from(child.id()).expect("a pid fits i32");
    let id = sys::proc::file_id(&path).expect("the namespace's identity");
    wait_for("the shell to open the namespace", || {
        sys::proc::holds_open(pid, id)
    });
    child
}

fn strings(v: &[&str]) -> Vec<String> {
    sorted(v.iter().map(|s| (*s).to_string()).collect())
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn an_empty_lab_grows_and_shrinks_and_down_removes_everything() {
    let mut guard = LabGuard::up_empty().expect("empty lab up");
    let id = guard.id().to_string();
    let ns = guard.namespaces().clone();
    assert!(guard.spec().networks.is_empty());
    assert_eq!(present(&id), sorted(vec![ns.outside, ns.switch]));
    assert_eq!(switch_links(&guard), strings(&["brpub", "lo", "vout"]));

    let lab = guard.lab_mut();
    lab.add_network(&network("net1", 1, &[("web1", 11)]))
        .expect("add net1");
    lab.add_network(&network("net2", 2, &[])).expect("add net2");
    lab.add_vm("net2", &vm_spec("web2", 2, 11))
        .expect("add web2");
    lab.add_vm("net1", &vm_spec("web3", 1, 12))
        .expect("add web3");
    assert_eq!(present(&id), sorted(lab.namespaces().all()));
    assert_eq!(lab.namespaces().all().len(), 7);
    assert_eq!(lab.guest_bridge("net2").unwrap(), "brg1");
    assert_eq!(
        switch_links(lab),
        strings(&[
            "brg0", "brg1", "brpub", "lo", "r0g", "r0p", "r1g", "r1p", "v0-0", "v0-1", "v1-0",
            "vout"
        ])
    );

    // Another process opening the data directory (as `guestnet lab exec` does) sees it all.
    let other = Lab::open(lab.data_dir()).expect("open");
    assert_eq!(other.spec(), lab.spec());
    assert_eq!(other.namespaces(), lab.namespaces());
    let forwarding = other
        .exec_capture(&router("net2"), &["sysctl", "-n", "net.ipv4.ip_forward"])
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&forwarding.stdout), "1\n");

    add_gateway(lab, "net1", "10.1.1.1/24");
    add_gateway(lab, "net2", "10.2.2.1/24");
    wait_for("web1 to ping its gateway", || {
        pings(lab, &vm("web1"), "10.1.1.1")
    });
    wait_for("web3 to ping web1", || pings(lab, &vm("web3"), "10.1.1.11"));
    wait_for("web2 to ping its gateway", || {
        pings(lab, &vm("web2"), "10.2.2.1")
    });
    // The networks are separate segments: net2's router has no address on net1.
    assert!(!pings(lab, &vm("web2"), "10.1.1.1"));

    // Removing a vm deletes its namespace and its switch port; its neighbour keeps working.
    let web1 = lab.vm_netns("web1").unwrap();
    // Every process in its namespace is ended, also one started just before, and one that
    // holds the namespace open but enters it only after the removal (as `nsenter` does between
    // opening the namespace and switching to it).
    let mut sleeper = lab.spawn(&vm("web1"), &["sleep", "300"]).unwrap();
    let mut late = enters_late(&web1);
    lab.remove_vm("web1").expect("remove web1");
    assert!(!sys::netns::exists(&web1));
    wait_for(
        "the process started in web1 just before its removal to be ended",
        || sleeper.try_wait().expect("check on the process").is_some(),
    );
    wait_for(
        "the process entering web1 after its removal to be ended",
        || late.try_wait().expect("check on the process").is_some(),
    );
    assert!(matches!(
        lab.vm_netns("web1"),
        Err(LabError::UnknownVm { .. })
    ));
    assert!(!switch_links(lab).contains(&"v0-0".to_string()));
    assert!(pings(lab, &vm("web3"), "10.1.1.1"));
    lab.remove_vm("web1").expect("removing again is fine");

    // A new vm takes the freed slot, and the names of the others have not moved.
    lab.add_vm("net1", &vm_spec("web4", 1, 13))
        .expect("add web4");
    assert!(switch_links(lab).contains(&"v0-0".to_string()));
    wait_for("web4 to ping web3", || pings(lab, &vm("web4"), "10.1.1.12"));

    // Removing a network removes its vms with it; the other network keeps working.
    let gone: Vec<String> = ["net1"]
        .iter()
        .map(|r| lab.router_netns(r).unwrap())
        .chain(["web3", "web4"].iter().map(|v| lab.vm_netns(v).unwrap()))
        .collect();
    lab.remove_network("net1").expect("remove net1");
    for n in &gone {
        assert!(!sys::netns::exists(n), "{n} is still there");
    }
    assert_eq!(present(&id), sorted(lab.namespaces().all()));
    assert_eq!(
        switch_links(lab),
        strings(&["brg1", "brpub", "lo", "r1g", "r1p", "v1-0", "vout"])
    );
    assert_eq!(lab.spec().networks.len(), 1);
    assert!(lab.namespaces().vms.keys().eq(["web2"]));
    assert!(pings(lab, &vm("web2"), "10.2.2.1"));
    lab.remove_network("net1").expect("removing again is fine");

    // A new network takes slot 0 again.
    lab.add_network(&network("net3", 3, &[("web5", 11)]))
        .expect("add net3");
    assert_eq!(lab.guest_bridge("net3").unwrap(), "brg0");
    add_gateway(lab, "net3", "10.3.3.1/24");
    wait_for("web5 to ping its gateway", || {
        pings(lab, &vm("web5"), "10.3.3.1")
    });
    let reopened = Lab::open(lab.data_dir()).unwrap();
    assert_eq!(reopened.spec(), lab.spec());
    assert_eq!(reopened.guest_bridge("net3").unwrap(), "brg0");

    // `down` removes what was added at run time, and also an unrecorded namespace of the lab.
    let stray = format!("{id}-stray");
    sys::netns::add(&stray).expect("make a stray namespace");
    let report = lab::down(guard.data_dir()).expect("down");
    assert!(report.namespaces_removed.contains(&stray));
    assert!(report
        .namespaces_removed
        .contains(&guard.router_netns("net3").unwrap()));
    assert!(report.state_removed);
    assert_eq!(present(&id), Vec::<String>::new());
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn a_failed_add_removes_what_it_made_and_forgets_it() {
    let mut guard = LabGuard::up_empty().expect("empty lab up");
    let id = guard.id().to_string();
    let lab = guard.lab_mut();
    lab.add_network(&network("net1", 1, &[("web1", 11)]))
        .expect("add net1");
    let before = lab.namespaces().clone();
    let links = switch_links(lab);

    // A namespace already in the way makes creating the router's namespace fail after the
    // guest bridge was made.
    let blocker = format!("{id}-r-net2");
    sys::netns::add(&blocker).expect("make the blocking namespace");
    let err = lab.add_network(&network("net2", 2, &[])).unwrap_err();
    assert!(matches!(err, LabError::Build { .. }), "{err:?}");
    assert!(err.to_string().contains(&blocker), "{err}");
    assert_eq!(lab.namespaces(), &before);
    assert_eq!(lab.spec().networks.len(), 1);
    assert_eq!(switch_links(lab), links);
    assert_eq!(Lab::open(lab.data_dir()).unwrap().namespaces(), &before);
    assert_eq!(present(&id), sorted(before.all()));

    // The same for a vm.
    let blocker = format!("{id}-vm-web2");
    sys::netns::add(&blocker).expect("make the blocking namespace");
    let err = lab.add_vm("net1", &vm_spec("web2", 1, 12)).unwrap_err();
    assert!(matches!(err, LabError::Build { .. }), "{err:?}");
    assert_eq!(lab.namespaces(), &before);
    assert_eq!(switch_links(lab), links);
    assert_eq!(Lab::open(lab.data_dir()).unwrap().namespaces(), &before);
    assert_eq!(present(&id), sorted(before.all()));

    // Both can be added once the way is clear.
    lab.add_network(&network("net2", 2, &[])).expect("add net2");
    lab.add_vm("net1", &vm_spec("web2", 1, 12))
        .expect("add web2");
    wait_for("web2 to ping web1", || pings(lab, &vm("web2"), "10.1.1.11"));
    drop(guard);
    assert_eq!(present(&id), Vec::<String>::new());
}
