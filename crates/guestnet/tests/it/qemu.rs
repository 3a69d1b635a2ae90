//! A real QEMU guest through the whole of guestnet: a template registered from the guest image
//! (a kernel and an initramfs built from Debian packages), a network on its VLAN, a VM deployed
//! through the API and booted by the host agent's VM driver (libvirt, through a private daemon
//! inside the hypervisor, or QEMU run by the agent itself), its address leased by the router's
//! dnsmasq, its page served from outside through a port forward and a load balancer behind the
//! firewall; the agent killed with -9 and started again finds the same guest running (the server
//! ensures the VM again on the agent's return); destroying the VM and deleting the network leave
//! nothing behind. Each test prints how long after deployVirtualMachine the guest had its lease
//! and first answered through the port forward.
//!
//! Everything runs inside a [`Hypervisor`]'s namespace: the server, the agent (`--driver host`),
//! the libvirt daemon, and so the guest's tap beside the network's bridge.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agent::host::{bridge_name, port_names, vlan_link_name, VmDriver};
use lab::TempDir;
use sys::cmd::Stdio;
use test_support::hypervisor::{in_netns, links_in, Hypervisor, PUBLIC_BRIDGE, TRUNK};
use test_support::libvirtd::Libvirtd;
use test_support::{guest_image, wait_until};

use crate::procs::{Admin, Proc, DEADLINE};

/// How long a guest may take from deployVirtualMachine to its lease (TCG on a loaded machine).
const LEASE_DEADLINE: Duration = Duration::from_secs(120);

/// How long its page may take to answer through the router once it has its lease.
const HTTP_DEADLINE: Duration = Duration::from_secs(60);

/// The network's VLAN.
const VLAN: u16 = 100;

/// The guest's address and MAC.
const GUEST_IP: &str = "10.1.1.11";
const GUEST_MAC: &str = "02:00:5e:10:01:2b";

/// The one source the firewall admits, and one it does not (both addresses of `outside`).
const ADMITTED: &str = "198.51.100.1";
const REFUSED: &str = "192.0.2.1";

/// Starts `guestnet serve --driver agents` inside the hypervisor with the network's VLAN; the
/// process and its endpoint.
fn server(hv: &Hypervisor, dir: &Path) -> (Proc, String) {
    let mut cmd = sys::netns::command_in(
        &hv.netns(),
        env!("CARGO_BIN_EXE_guestnet"),
        Vec::<&str>::new(),
    );
    cmd.args(["serve", "--driver", "agents", "--listen", "127.0.0.1:0"])
        .args(["--guest-vlans", &format!("{VLAN}-{VLAN}")])
        .args(["--apply-timeout", "30"])
        .arg("--data-dir")
        .arg(dir.join("server"))
        .env("GUESTNET_ADMIN_API_KEY", crate::procs::KEY)
        .env("GUESTNET_ADMIN_SECRET_KEY", crate::procs::SECRET)
        .env("RUST_LOG", "info,mgmt=debug")
        .stdout(Stdio::piped());
    let mut proc =
        Proc::spawn("server", &mut cmd, &dir.join("server.log")).unwrap_or_else(|e| panic!("{e}"));
    let line = match proc.child_mut() {
        Some(child) => crate::procs::startup_line(child, DEADLINE).0,
        None => String::new(),
    };
    let endpoint = test_support::process::endpoint_in(&line)
        .unwrap_or_else(|| panic!("no endpoint in {line:?}: {}", proc.log()));
    (proc, endpoint)
}

/// Starts `guestnet agent --driver host --vm-driver <vm>` inside the hypervisor (with the
/// libvirt daemon's URI when there is one).
fn agent(
    hv: &Hypervisor,
    dir: &Path,
    name: &str,
    server: &str,
    token_file: &Path,
    vm: VmDriver,
    libvirt_uri: Option<&str>,
) -> Proc {
    let mut cmd = sys::netns::command_in(
        &hv.netns(),
        env!("CARGO_BIN_EXE_guestnet"),
        Vec::<&str>::new(),
    );
    cmd.args(["agent", "--driver", "host"])
        .args(["--public-bridge", PUBLIC_BRIDGE, "--guest-interface", TRUNK])
        .args(["--namespace-prefix", &hv.router_prefix()])
        // The hypervisor provides `trunk0.N`: this kernel may lack 802.1Q.
        .args(["--vlan-interfaces", "existing"])
        .args(["--vm-driver", vm.name()])
        .args(["--apply-timeout", "30", "--drift-interval", "0.5"])
        .args(["--server", server])
        .arg("--token-file")
        .arg(token_file)
        .arg("--data-dir")
        .arg(agent_data(dir))
        .env("RUST_LOG", "info,agent=debug")
        .stdout(Stdio::null());
    if let Some(uri) = libvirt_uri {
        cmd.args(["--libvirt-uri", uri]);
    }
    Proc::spawn(name, &mut cmd, &dir.join(format!("{name}.log"))).unwrap_or_else(|e| panic!("{e}"))
}

fn agent_data(dir: &Path) -> PathBuf {
    dir.join("agent-data")
}

/// The serial logs of the guests the agent's VM driver runs.
fn serial_logs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(agent_data(dir).join("guests"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path().join("serial.log"))
                .filter(|p| p.exists())
                .collect()
        })
        .unwrap_or_default()
}

fn serial_text(dir: &Path) -> String {
    serial_logs(dir)
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect()
}

/// The guest's page at `ip:port` from `ns`, from source address `source`.
fn page(ns: &str, ip: &str, port: u16, source: &str) -> Option<String> {
    let url = format!("http://{ip}:{port}/");
    let out = Hypervisor::output(
        ns,
        &["curl", "-s", "-f", "-m", "2", "--interface", source, &url],
    );
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The ports of `bridge` in the hypervisor.
fn bridge_ports(hv: &Hypervisor, bridge: &str) -> Vec<String> {
    let out = Hypervisor::output(&hv.netns(), &["ip", "-o", "link", "show", "master", bridge]);
    let mut ports: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
        .collect();
    ports.sort();
    ports
}

/// The QEMU processes in the hypervisor.
fn qemus(hv: &Hypervisor) -> Vec<i32> {
    sys::netns::pids(&hv.netns())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm"))
                .is_ok_and(|c| c.trim().starts_with("qemu-system"))
        })
        .collect()
}

/// `text` without its terminal colours (`ESC [ … m`).
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn id_of(v: &serde_json::Value, field: &str) -> String {
    v[field]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no {field}.id in {v}"))
        .to_string()
}

fn eventually(what: &str, within: Duration, cond: impl FnMut() -> bool) {
    assert!(wait_until(Instant::now() + within, cond), "never: {what}");
}

/// The scenario, with the agent's VM driver `vm`.
fn guest_through_guestnet(vm: VmDriver) {
    let image = guest_image::build().expect("build the guest image");
    let dir = TempDir::new().expect("temp dir");
    let hv = Hypervisor::new();
    hv.provide_vlan(VLAN);
    // Inside the hypervisor, so its guests' taps are made there; dropped before it.
    let libvirtd = (vm == VmDriver::Libvirt)
        .then(|| Libvirtd::start(&hv.netns()).expect("start a private libvirtd"));
    let (server_proc, endpoint) = server(&hv, dir.path());
    let base = crate::procs::base(&endpoint);
    let admin = Admin::new(&endpoint);
    let hv_ns = hv.netns();
    let api = |cmd: &str, params: &[(&str, &str)]| in_netns(&hv_ns, || admin.call(cmd, params));
    let job = |cmd: &str, params: &[(&str, &str)]| in_netns(&hv_ns, || admin.run(cmd, params));
    let token_file = dir.path().join("token");
    in_netns(&hv_ns, || admin.token("hv1", &token_file));
    let mut agent_proc = agent(
        &hv,
        dir.path(),
        "agent",
        &base,
        &token_file,
        vm,
        libvirtd.as_ref().map(Libvirtd::uri),
    );
    in_netns(&hv_ns, || {
        admin.until("host hv1 is Up", |a| a.host_up("hv1"))
    });
    let report = |what: &str| {
        let log = |name: &str| {
            std::fs::read_to_string(dir.path().join(format!("{name}.log"))).unwrap_or_default()
        };
        format!(
            "{what}\n--- serial console\n{}\n--- agent\n{}\n--- restarted agent\n{}\n\
             --- server\n{}\n--- libvirtd\n{}",
            serial_text(dir.path()),
            log("agent"),
            log("agent2"),
            log("server"),
            libvirtd.as_ref().map(Libvirtd::log).unwrap_or_default()
        )
    };

    let first = |cmd: &str, list: &str, params: &[(&str, &str)]| {
        api(cmd, params)[list][0]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no {list}"))
            .to_string()
    };
    let zone = first("listZones", "zone", &[]);

    // The guest image as a template: its kernel, its initramfs and its command line.
    let kernel = format!("file://{}", image.kernel.display());
    let initrd = format!("file://{}", image.initrd.display());
    let template = api(
        "registerTemplate",
        &[
            ("name", "busybox-kernel"),
            ("displaytext", "a busybox guest"),
            ("zoneid", &zone),
            ("format", "RAW"),
            ("hypervisor", "KVM"),
            ("url", &kernel),
            ("details[0].initrd", &initrd),
            ("details[0].cmdline", &image.cmdline),
        ],
    );
    let template_id = template["template"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no template id in {template}"))
        .to_string();

    // createNetwork: its router, on VLAN 100, whose bridge appears in the hypervisor.
    let offering = first("listNetworkOfferings", "networkoffering", &[]);
    let net = api(
        "createNetwork",
        &[
            ("name", "web"),
            ("displaytext", "web"),
            ("networkofferingid", &offering),
            ("zoneid", &zone),
            ("gateway", "10.1.1.1"),
            ("netmask", "255.255.255.0"),
        ],
    );
    assert_eq!(net["network"]["vlan"], VLAN.to_string(), "{net}");
    let net_id = id_of(&net, "network");
    let bridge = bridge_name(TRUNK, VLAN);
    assert!(hv.links().contains(&bridge), "{:?}", hv.links());
    let router = api("listRouters", &[("networkid", &net_id)])["router"][0]["name"]
        .as_str()
        .expect("router name")
        .to_string();
    let ips = api("listPublicIpAddresses", &[("associatednetworkid", &net_id)]);
    let public = ips["publicipaddress"][0]["ipaddress"]
        .as_str()
        .expect("source NAT address")
        .to_string();
    let public_id = ips["publicipaddress"][0]["id"]
        .as_str()
        .expect("its id")
        .to_string();
    let ports_before = bridge_ports(&hv, &bridge);

    // deployVirtualMachine: the agent boots the guest, which takes its lease from the router.
    let service = first("listServiceOfferings", "serviceoffering", &[]);
    let deployed = Instant::now();
    let deployed_vm = job(
        "deployVirtualMachine",
        &[
            ("zoneid", &zone),
            ("serviceofferingid", &service),
            ("templateid", &template_id),
            ("networkids", &net_id),
            ("ipaddress", GUEST_IP),
            ("macaddress", GUEST_MAC),
            ("name", "web1"),
        ],
    );
    let vm_id = id_of(&deployed_vm, "virtualmachine");
    let marker = format!("{}{GUEST_IP}", guest_image::MARKER);
    let leased = wait_until(Instant::now() + LEASE_DEADLINE, || {
        serial_text(dir.path()).contains(&marker)
    });
    assert!(
        leased,
        "{}",
        report(&format!("no {marker:?} within {LEASE_DEADLINE:?}"))
    );
    let lease_after = deployed.elapsed();
    assert_eq!(serial_logs(dir.path()).len(), 1, "one guest");
    if let Some(d) = &libvirtd {
        assert_eq!(
            d.virsh().list_all().expect("list domains").len(),
            1,
            "one domain"
        );
    }
    assert_eq!(qemus(&hv).len(), 1, "one QEMU");
    let guest_port: Vec<String> = bridge_ports(&hv, &bridge)
        .into_iter()
        .filter(|p| !ports_before.contains(p))
        .collect();
    assert_eq!(guest_port.len(), 1, "the guest's tap: {guest_port:?}");

    // A port forward admitting one source, and a load balancer open to all.
    let out = hv.outside();
    let fw = job(
        "createFirewallRule",
        &[
            ("ipaddressid", &public_id),
            ("protocol", "tcp"),
            ("startport", "8080"),
            ("endport", "8080"),
            ("cidrlist", &format!("{ADMITTED}/32")),
        ],
    );
    let pf = job(
        "createPortForwardingRule",
        &[
            ("ipaddressid", &public_id),
            ("protocol", "tcp"),
            ("publicport", "8080"),
            ("privateport", "80"),
            ("virtualmachineid", &vm_id),
            ("openfirewall", "false"),
        ],
    );
    let mut got = None;
    let answered = wait_until(Instant::now() + HTTP_DEADLINE, || {
        got = page(&out, &public, 8080, ADMITTED);
        got.is_some()
    });
    assert!(
        answered,
        "{}",
        report("the guest's page never came through the port forward")
    );
    let http_after = deployed.elapsed();
    let got = got.unwrap_or_default();
    assert!(
        got.contains("web1") && got.contains(&format!("({GUEST_IP})")),
        "the page names the guest and its leased address: {got:?}"
    );
    assert_eq!(
        page(&out, &public, 8080, REFUSED),
        None,
        "a source the firewall does not admit got through"
    );
    println!(
        "{} guest ({}): lease {lease_after:.2?}, first HTTP answer through the port forward \
         {http_after:.2?} after deployVirtualMachine was called",
        vm.name(),
        image.versions
    );

    let fw80 = job(
        "createFirewallRule",
        &[
            ("ipaddressid", &public_id),
            ("protocol", "tcp"),
            ("startport", "80"),
            ("endport", "80"),
            ("cidrlist", "0.0.0.0/0"),
        ],
    );
    let lb = job(
        "createLoadBalancerRule",
        &[
            ("publicipid", &public_id),
            ("name", "web"),
            ("algorithm", "roundrobin"),
            ("publicport", "80"),
            ("privateport", "80"),
            ("openfirewall", "false"),
        ],
    );
    let lb_id = id_of(&lb, "loadbalancer");
    job(
        "assignToLoadBalancerRule",
        &[("id", &lb_id), ("virtualmachineids", &vm_id)],
    );
    eventually(
        "the guest's page comes through the load balancer",
        HTTP_DEADLINE,
        || page(&out, &public, 80, REFUSED).is_some_and(|p| p.contains(GUEST_IP)),
    );

    // The agent killed with -9 and started again: the guest runs on, and the VM the server
    // ensures again on the agent's return is the same guest, not a second one.
    let qemu_before = qemus(&hv);
    agent_proc.kill9();
    assert!(
        page(&out, &public, 8080, ADMITTED).is_some_and(|p| p.contains(GUEST_IP)),
        "{}",
        report("the guest stopped serving when its agent ended")
    );
    drop(agent_proc);
    agent_proc = agent(
        &hv,
        dir.path(),
        "agent2",
        &base,
        &token_file,
        vm,
        libvirtd.as_ref().map(Libvirtd::uri),
    );
    let asked = wait_until(Instant::now() + DEADLINE, || {
        plain(&agent_proc.log()).lines().any(|l| {
            l.contains("request done") && l.contains("\"ensure_vm\"") && l.contains("ok=true")
        })
    });
    assert!(
        asked,
        "{}",
        report("the restarted agent was never asked for the VM again")
    );
    assert_eq!(
        qemus(&hv),
        qemu_before,
        "{}",
        report("the guest's QEMU changed with the agent's restart")
    );
    if let Some(d) = &libvirtd {
        assert_eq!(d.virsh().list_all().expect("list domains").len(), 1);
    }
    assert!(
        page(&out, &public, 8080, ADMITTED).is_some_and(|p| p.contains(GUEST_IP)),
        "{}",
        report("the guest stopped serving after its agent's restart")
    );

    // destroyVirtualMachine: the guest stops and goes, with its tap, its files and its lease.
    let router_state = agent_data(dir.path()).join("routers").join(&router);
    let dnsmasq = sys::dnsmasq::DnsmasqFiles::new(router_state.join("dnsmasq"));
    let dhcp_holds_mac = || {
        std::fs::read_to_string(dnsmasq.dhcp_hosts())
            .map(|t| t.to_lowercase().contains(GUEST_MAC))
            .unwrap_or(false)
    };
    assert!(dhcp_holds_mac(), "the router's DHCP never knew {GUEST_MAC}");
    job("deleteLoadBalancerRule", &[("id", &lb_id)]);
    job(
        "deletePortForwardingRule",
        &[("id", &id_of(&pf, "portforwardingrule"))],
    );
    job("deleteFirewallRule", &[("id", &id_of(&fw, "firewallrule"))]);
    job(
        "deleteFirewallRule",
        &[("id", &id_of(&fw80, "firewallrule"))],
    );
    job(
        "destroyVirtualMachine",
        &[("id", &vm_id), ("expunge", "true")],
    );
    eventually("the guest's QEMU ends", DEADLINE, || qemus(&hv).is_empty());
    if let Some(d) = &libvirtd {
        assert_eq!(
            d.virsh().list_all().expect("list domains"),
            Vec::<String>::new(),
            "a domain is left"
        );
    }
    eventually("the guest's tap leaves the bridge", DEADLINE, || {
        bridge_ports(&hv, &bridge) == ports_before
    });
    assert!(
        !hv.links().contains(&guest_port[0]),
        "the guest's tap {} is left",
        guest_port[0]
    );
    let left: Vec<PathBuf> = std::fs::read_dir(agent_data(dir.path()).join("guests"))
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert_eq!(left, Vec::<PathBuf>::new(), "the guest's files are left");
    eventually(
        "the router's DHCP forgets the destroyed VM",
        DEADLINE,
        || !dhcp_holds_mac(),
    );

    // deleteNetwork: the router, its bridge and its ports go; the host's VLAN interface stays,
    // in no bridge (the host provides it).
    job("deleteNetwork", &[("id", &net_id)]);
    eventually("the router's namespace goes", DEADLINE, || {
        hv.router_namespaces().is_empty()
    });
    eventually("the network's bridge goes", DEADLINE, || {
        !hv.links().contains(&bridge)
    });
    let vlan_link = Hypervisor::output(
        &hv.netns(),
        &["ip", "-o", "link", "show", &vlan_link_name(TRUNK, VLAN)],
    );
    let vlan_link = String::from_utf8_lossy(&vlan_link.stdout);
    assert!(
        !vlan_link.is_empty() && !vlan_link.contains("master"),
        "{vlan_link}"
    );
    assert!(!router_state.exists(), "the router's state stayed");
    assert!(
        !agent_proc.log().contains("ERROR"),
        "{}",
        report("the agent logged an error")
    );

    // Teardown: nothing of the test's is left in the test's own namespace, nor anywhere else.
    let (p, g) = port_names(&hv.router_prefix(), &router);
    let ours = [
        p,
        g,
        bridge,
        vlan_link_name(TRUNK, VLAN),
        guest_port[0].clone(),
    ];
    drop(agent_proc);
    drop(server_proc);
    drop(libvirtd);
    let prefix = hv.router_prefix();
    let hv_ns = hv.netns();
    drop(hv);
    let here = links_in(None);
    for name in &ours {
        assert!(
            !here.contains(name),
            "{name} is in the test's own namespace"
        );
    }
    let left: Vec<String> = sys::netns::list()
        .expect("list namespaces")
        .into_iter()
        .filter(|n| n.starts_with(&prefix) || *n == hv_ns)
        .collect();
    assert_eq!(left, Vec::<String>::new(), "namespaces outlived the test");
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn a_qemu_guest_booted_by_libvirt_gets_its_lease_and_serves_through_a_port_forward_and_a_load_balancer(
) {
    guest_through_guestnet(VmDriver::Libvirt);
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn a_qemu_guest_run_by_the_agent_gets_its_lease_and_serves_through_a_port_forward_and_a_load_balancer(
) {
    guest_through_guestnet(VmDriver::Qemu);
}
