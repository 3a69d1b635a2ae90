//! `guestnet serve --driver lab` end to end: rules made through the signed CloudStack API, and
//! checked with real packets in the server's lab. Covers every rule kind and the nine
//! operations of the pipeline: egress add/delete, ingress add/delete, load-balancer member
//! add/remove and update, port-forwarding add/delete.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lab::TempDir;
use serde_json::Value;
use sys::cmd::{Child, Stdio};

use crate::procs::{self, Admin, HostLab, TestNet, DEADLINE, KEY, SECRET};

/// An address of the lab's outside host beyond the router (egress target).
const INTERNET: &str = "198.51.100.1";

fn guestnet() -> sys::cmd::Program {
    sys::cmd::Program::new(env!("CARGO_BIN_EXE_guestnet"))
}

/// A running server with its lab; stopped and cleaned up on drop, also when a test fails (the
/// server first, then the lab, then the directory).
struct Server {
    child: Child,
    admin: Admin,
    lab: HostLab,
    dir: TempDir,
}

impl Server {
    fn start() -> Server {
        let dir = TempDir::new().expect("temp dir");
        let (child, endpoint) = spawn_server(dir.path());
        Server {
            child,
            admin: Admin::new(&endpoint),
            lab: HostLab::new(dir.path()),
            dir,
        }
    }

    fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    fn call(&self, cmd: &str, params: &[(&str, &str)]) -> Value {
        self.admin.call(cmd, params)
    }

    fn run(&self, cmd: &str, params: &[(&str, &str)]) -> Value {
        self.admin.run(cmd, params)
    }

    fn admitted(&self, target: &str, ip: &str, port: u16) -> String {
        self.lab.admitted(target, ip, port)
    }

    fn refused(&self, target: &str, ip: &str, port: u16) {
        self.lab.refused(target, ip, port);
    }

    fn whoami(&mut self, target: &str, ip: &str, port: u16, name: &str) {
        self.lab.whoami(target, ip, port, name);
    }

    fn router_generation(&self, network: &str) -> i64 {
        let r = self.call("listRouters", &[("networkid", network)]);
        r["router"][0]["appliedgeneration"]
            .as_i64()
            .unwrap_or_else(|| panic!("no applied generation in {r}"))
    }
}

/// Starts `guestnet serve --driver lab` on `dir`; returns it and its endpoint, read from the
/// startup line (which must name the lab driver).
fn spawn_server(dir: &Path) -> (Child, String) {
    let mut child = guestnet()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--driver",
            "lab",
            "--data-dir",
        ])
        .arg(dir)
        .env("GUESTNET_ADMIN_API_KEY", KEY)
        .env("GUESTNET_ADMIN_SECRET_KEY", SECRET)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start guestnet serve");
    let (line, endpoint) = procs::startup_line(&mut child, procs::DEADLINE);
    let endpoint = endpoint.unwrap_or_else(|| panic!("no endpoint in the startup line {line:?}"));
    assert!(line.contains("driver lab"), "{line}");
    (child, endpoint)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = sys::cmd::run("kill", &["-TERM", &self.child.id().to_string()], None);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
            }
        }
    }
}

/// The data directory is 0700 and the database's files in it are 0600.
fn assert_private(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| {
        std::fs::metadata(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(dir), 0o700, "{}", dir.display());
    for name in ["guestnet.db", "guestnet.db-wal", "guestnet.db-shm"] {
        let path = dir.join(name);
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
}

/// A network with its source-NAT address, and VMs with whoami servers on port 80.
fn network(s: &mut Server, name: &str, third: u8, allow: bool, vms: &[(&str, u8)]) -> TestNet {
    let net = procs::network_with(&s.admin, name, third, allow, vms);
    for (vm, host) in vms {
        s.whoami(&format!("vm:{vm}"), &format!("10.1.{third}.{host}"), 80, vm);
    }
    net
}

fn vm_id(s: &Server, name: &str) -> String {
    s.call("listVirtualMachines", &[("name", name)])["virtualmachine"][0]["id"]
        .as_str()
        .expect("vm id")
        .to_string()
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn firewall_and_port_forwarding_are_enforced() {
    let mut s = Server::start();
    let net = network(&mut s, "fwnet", 11, false, &[("fw-web1", 11)]);
    let web1 = vm_id(&s, "fw-web1");

    // 8: a forward without a firewall rule: the router forwards nothing yet (ingress is an
    // allow-list).
    let pf = s.run(
        "createPortForwardingRule",
        &[
            ("ipaddressid", &net.ip_id),
            ("protocol", "tcp"),
            ("publicport", "8080"),
            ("privateport", "80"),
            ("virtualmachineid", &web1),
            ("openfirewall", "false"),
        ],
    );
    let pf_id = pf["portforwardingrule"]["id"]
        .as_str()
        .expect("pf id")
        .to_string();
    assert_eq!(pf["portforwardingrule"]["state"], "Active", "{pf}");
    s.refused("outside", &net.ip, 8080);

    // 3: an ingress rule opens it; the reply comes from the VM and sees the client's address.
    let fw = s.run(
        "createFirewallRule",
        &[
            ("ipaddressid", &net.ip_id),
            ("protocol", "tcp"),
            ("startport", "8080"),
            ("endport", "8080"),
            ("cidrlist", "203.0.113.0/24"),
        ],
    );
    let fw_id = fw["firewallrule"]["id"]
        .as_str()
        .expect("fw id")
        .to_string();
    let body = s.admitted("outside", &net.ip, 8080);
    assert!(body.starts_with("fw-web1 203.0.113."), "{body}");

    // 4: deleting the ingress rule closes it again.
    s.run("deleteFirewallRule", &[("id", &fw_id)]);
    s.refused("outside", &net.ip, 8080);
    assert!(s
        .call("listFirewallRules", &[("ipaddressid", &net.ip_id)])
        .get("firewallrule")
        .is_none());

    // openfirewall (the default) opens the forward's port with a related firewall rule…
    let pf2 = s.run(
        "createPortForwardingRule",
        &[
            ("ipaddressid", &net.ip_id),
            ("protocol", "tcp"),
            ("publicport", "2222"),
            ("privateport", "80"),
            ("virtualmachineid", &web1),
        ],
    );
    let pf2_id = pf2["portforwardingrule"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let body = s.admitted("outside", &net.ip, 2222);
    assert!(body.starts_with("fw-web1 "), "{body}");
    let fws = s.call("listFirewallRules", &[("ipaddressid", &net.ip_id)]);
    assert_eq!(fws["count"], 1, "{fws}");
    assert_eq!(fws["firewallrule"][0]["startport"], 2222);

    // 9: …and deleting the forward removes both.
    s.run("deletePortForwardingRule", &[("id", &pf2_id)]);
    s.refused("outside", &net.ip, 2222);
    assert!(s
        .call("listFirewallRules", &[("ipaddressid", &net.ip_id)])
        .get("firewallrule")
        .is_none());
    s.run("deletePortForwardingRule", &[("id", &pf_id)]);
    assert!(s
        .call("listPortForwardingRules", &[("ipaddressid", &net.ip_id)])
        .get("portforwardingrule")
        .is_none());
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn egress_rules_are_enforced() {
    let mut s = Server::start();
    let net = network(&mut s, "egnet", 12, false, &[("eg-web1", 11)]);
    s.whoami("outside", INTERNET, 80, "internet");

    // The offering denies egress by default.
    s.refused("vm:eg-web1", INTERNET, 80);
    // 1: an egress rule lets tcp/80 out.
    let eg = s.run(
        "createEgressFirewallRule",
        &[
            ("networkid", &net.id),
            ("protocol", "tcp"),
            ("startport", "80"),
            ("endport", "80"),
            ("destcidrlist", "198.51.100.0/24"),
        ],
    );
    assert_eq!(eg["firewallrule"]["traffictype"], "Egress", "{eg}");
    let body = s.admitted("vm:eg-web1", INTERNET, 80);
    // Source NAT: the outside host sees the network's public address.
    assert_eq!(body, format!("internet {}", net.ip));
    // 2: deleting it denies again.
    let id = eg["firewallrule"]["id"].as_str().expect("id").to_string();
    s.run("deleteEgressFirewallRule", &[("id", &id)]);
    s.refused("vm:eg-web1", INTERNET, 80);
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn load_balancer_members_and_updates_are_enforced() {
    let mut s = Server::start();
    let net = network(
        &mut s,
        "lbnet",
        13,
        true,
        &[("lb-web1", 11), ("lb-web2", 12)],
    );
    let (w1, w2) = (vm_id(&s, "lb-web1"), vm_id(&s, "lb-web2"));
    let lb = s.run(
        "createLoadBalancerRule",
        &[
            ("publicipid", &net.ip_id),
            ("name", "web"),
            ("algorithm", "roundrobin"),
            ("publicport", "80"),
            ("privateport", "80"),
        ],
    );
    let lb_id = lb["loadbalancer"]["id"]
        .as_str()
        .expect("lb id")
        .to_string();
    // No members: the rule waits in Add, as CloudStack's does.
    assert_eq!(lb["loadbalancer"]["state"], "Add", "{lb}");
    s.refused("outside", &net.ip, 80);

    // 5: members in; both answer.
    s.run(
        "assignToLoadBalancerRule",
        &[("id", &lb_id), ("virtualmachineids", &format!("{w1},{w2}"))],
    );
    let listed = s.call("listLoadBalancerRules", &[("id", &lb_id)]);
    assert_eq!(listed["loadbalancerrule"][0]["state"], "Active", "{listed}");
    let mut seen = std::collections::BTreeSet::new();
    let deadline = Instant::now() + DEADLINE;
    while seen.len() < 2 {
        let body = s.admitted("outside", &net.ip, 80);
        seen.insert(body.split(' ').next().unwrap_or_default().to_string());
        assert!(Instant::now() < deadline, "only {seen:?} answered");
    }

    // 7: a new name makes no generation; a new algorithm does.
    let before = s.router_generation(&net.id);
    s.run(
        "updateLoadBalancerRule",
        &[("id", &lb_id), ("name", "web-renamed")],
    );
    assert_eq!(s.router_generation(&net.id), before);
    s.run(
        "updateLoadBalancerRule",
        &[("id", &lb_id), ("algorithm", "leastconn")],
    );
    assert!(s.router_generation(&net.id) > before);
    s.admitted("outside", &net.ip, 80);

    // 6: one member out: only the other answers.
    s.run(
        "removeFromLoadBalancerRule",
        &[("id", &lb_id), ("virtualmachineids", &w2)],
    );
    for _ in 0..6 {
        let body = s.admitted("outside", &net.ip, 80);
        assert!(body.starts_with("lb-web1 "), "{body}");
    }
    let inst = s.call("listLoadBalancerRuleInstances", &[("id", &lb_id)]);
    assert_eq!(inst["count"], 1, "{inst}");

    s.run("deleteLoadBalancerRule", &[("id", &lb_id)]);
    s.refused("outside", &net.ip, 80);
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn a_restarted_server_keeps_enforcing_and_takes_up_its_lab() {
    let mut s = Server::start();
    let net = network(&mut s, "rsnet", 14, false, &[("rs-web1", 11)]);
    let web1 = vm_id(&s, "rs-web1");
    s.run(
        "createPortForwardingRule",
        &[
            ("ipaddressid", &net.ip_id),
            ("protocol", "tcp"),
            ("publicport", "8081"),
            ("privateport", "80"),
            ("virtualmachineid", &web1),
        ],
    );
    s.admitted("outside", &net.ip, 8081);
    let dir: PathBuf = s.data_dir().to_path_buf();
    // The database holds every user's secret key: the owner's alone, from the first start.
    assert_private(&dir);
    // Stop the server only (the lab stays), then start a new one on the same data directory.
    let _ = sys::cmd::run("kill", &["-KILL", &s.child.id().to_string()], None);
    let _ = s.child.wait();
    s.admitted("outside", &net.ip, 8081);
    // As a data directory from before that rule was: readable by everyone.
    for (path, mode) in [
        (dir.clone(), 0o755),
        (dir.join("guestnet.db"), 0o644),
        (dir.join("guestnet.db-wal"), 0o644),
        (dir.join("guestnet.db-shm"), 0o644),
    ] {
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    let (child, endpoint) = spawn_server(&dir);
    assert_private(&dir);
    s.child = child;
    s.admin = Admin::new(&endpoint);
    // The rules are still listed Active and still enforced; new changes still work.
    let pfs = s.call("listPortForwardingRules", &[("ipaddressid", &net.ip_id)]);
    assert_eq!(pfs["portforwardingrule"][0]["state"], "Active", "{pfs}");
    s.admitted("outside", &net.ip, 8081);
    s.run(
        "createPortForwardingRule",
        &[
            ("ipaddressid", &net.ip_id),
            ("protocol", "tcp"),
            ("publicport", "8082"),
            ("privateport", "80"),
            ("virtualmachineid", &web1),
        ],
    );
    s.admitted("outside", &net.ip, 8082);
}

/// A network of account `account` (made by the admin acting for it) with one VM `vm` at
/// 10.1.`third`.11; the VM's id.
fn network_of(s: &Server, account: &str, third: u8, vm: &str) -> String {
    let zone = s.call("listZones", &[])["zone"][0]["id"]
        .as_str()
        .expect("zone")
        .to_string();
    let so = s.call("listServiceOfferings", &[])["serviceoffering"][0]["id"]
        .as_str()
        .expect("service offering")
        .to_string();
    let tpl = s.call("listTemplates", &[("templatefilter", "featured")])["template"][0]["id"]
        .as_str()
        .expect("template")
        .to_string();
    let off = s.call("listNetworkOfferings", &[])["networkoffering"][0]["id"]
        .as_str()
        .expect("offering")
        .to_string();
    let name = format!("{account}-net");
    let gw = format!("10.1.{third}.1");
    let n = s.call(
        "createNetwork",
        &[
            ("name", &name),
            ("displaytext", &name),
            ("networkofferingid", &off),
            ("zoneid", &zone),
            ("gateway", &gw),
            ("netmask", "255.255.255.0"),
            ("account", account),
        ],
    );
    let net = n["network"]["id"].as_str().expect("network id").to_string();
    let addr = format!("10.1.{third}.11");
    let vm = s.run(
        "deployVirtualMachine",
        &[
            ("zoneid", &zone),
            ("serviceofferingid", &so),
            ("templateid", &tpl),
            ("networkids", &net),
            ("ipaddress", &addr),
            ("name", vm),
        ],
    );
    vm["virtualmachine"]["id"]
        .as_str()
        .expect("vm id")
        .to_string()
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn vms_of_two_accounts_may_share_a_name_and_each_is_reachable() {
    let s = Server::start();
    for account in ["alice", "bob"] {
        s.call(
            "createAccount",
            &[
                ("account", account),
                ("username", account),
                ("password", "Lab-Passw0rd!"),
                ("email", &format!("{account}@example.org")),
                ("firstname", account),
                ("lastname", "lab"),
                ("accounttype", "0"),
            ],
        );
    }
    let alice_vm = network_of(&s, "alice", 21, "web1");
    let bob_vm = network_of(&s, "bob", 22, "web1");
    assert_ne!(alice_vm, bob_vm);

    // The bare name is ambiguous: the error lists both and how to name each.
    let (ok, out) = s.lab.exec("vm:web1", &["true"]);
    assert!(!ok, "{out}");
    assert!(out.contains("vm name `web1` is ambiguous"), "{out}");
    for (account, id) in [("alice", &alice_vm), ("bob", &bob_vm)] {
        assert!(
            out.contains(&format!("vm:web1@{account} (network {account}-net")),
            "{out}"
        );
        assert!(
            out.contains(&format!("vm:{}", id.replace('-', ""))),
            "{out}"
        );
    }

    // Each is its own namespace with its own address, by account, network or id.
    for (target, addr, gateway) in [
        ("vm:web1@alice".to_string(), "10.1.21.11", "10.1.21.1"),
        ("vm:web1@bob-net".to_string(), "10.1.22.11", "10.1.22.1"),
        (
            format!("vm:{}", bob_vm.replace('-', "")),
            "10.1.22.11",
            "10.1.22.1",
        ),
    ] {
        let (ok, out) = s
            .lab
            .exec(&target, &["ip", "-4", "-o", "addr", "show", "eth0"]);
        assert!(
            ok && out.contains(&format!("inet {addr}/24")),
            "{target}: {out}"
        );
        // And it reaches its own router's guest address.
        let (ok, out) = s.lab.exec(&target, &["ping", "-c1", "-W2", gateway]);
        assert!(ok, "{target} cannot reach {gateway}: {out}");
    }
}

/// A balancer tells its members each client's address: one on port 80 speaks HTTP and adds
/// X-Forwarded-For (as CloudStack's router does), and a `tcp-proxy` one sends version 2 of the
/// PROXY protocol, which a member expecting it reads before the request.
#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn a_balancer_tells_its_members_each_clients_address() {
    let mut s = Server::start();
    let net = network(&mut s, "xffnet", 24, false, &[("xff-web1", 11)]);
    let web1 = vm_id(&s, "xff-web1");
    s.lab.serve(
        lab::PROXY_WHOAMI_SERVER,
        "vm:xff-web1",
        "10.1.24.11",
        8081,
        "xff-proxied",
    );
    let outside = lab::OUTSIDE_GATEWAY.to_string();
    for (name, protocol, public, private) in [
        ("http", "tcp", "80", "80"),
        ("proxied", "tcp-proxy", "8090", "8081"),
    ] {
        let lb = s.run(
            "createLoadBalancerRule",
            &[
                ("publicipid", &net.ip_id),
                ("name", name),
                ("algorithm", "roundrobin"),
                ("protocol", protocol),
                ("publicport", public),
                ("privateport", private),
            ],
        );
        assert_eq!(lb["loadbalancer"]["protocol"], protocol, "{lb}");
        let id = lb["loadbalancer"]["id"]
            .as_str()
            .expect("lb id")
            .to_string();
        s.run(
            "assignToLoadBalancerRule",
            &[("id", &id), ("virtualmachineids", &web1)],
        );
    }
    // HTTP: the member sees the router, and the client in X-Forwarded-For.
    let body = s.admitted("outside", &net.ip, 80);
    assert!(
        body.starts_with("xff-web1 ") && body.ends_with(&format!(" xff={outside}")),
        "{body}"
    );
    // PROXY protocol: the member reads the client's address from the header.
    let body = s.admitted("outside", &net.ip, 8090);
    assert_eq!(body, format!("xff-proxied proxied={outside}"));
}

/// addIpToNic reserves a secondary address for a VM, which configures it itself (as a
/// CloudStack user does in the guest); a forward with `vmguestip` then sends to that address
/// and not to the VM's own: a server listening on the secondary address alone answers.
#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn a_forward_reaches_a_secondary_address_of_the_vm() {
    let mut s = Server::start();
    let net = network(&mut s, "secnet", 23, false, &[("sec-web1", 11)]);
    let web1 = vm_id(&s, "sec-web1");
    let nics = s.call("listNics", &[("virtualmachineid", &web1)]);
    let nic = nics["nic"][0]["id"].as_str().expect("nic id").to_string();
    let r = s.run(
        "addIpToNic",
        &[("nicid", &nic), ("ipaddress", "10.1.23.50")],
    );
    assert_eq!(r["nicsecondaryip"]["ipaddress"], "10.1.23.50", "{r}");
    let (added, out) = s.lab.exec(
        "vm:sec-web1",
        &["ip", "addr", "add", "10.1.23.50/24", "dev", "eth0"],
    );
    assert!(added, "{out}");
    s.whoami("vm:sec-web1", "10.1.23.50", 80, "sec-second");
    s.run(
        "createPortForwardingRule",
        &[
            ("ipaddressid", &net.ip_id),
            ("protocol", "tcp"),
            ("publicport", "8080"),
            ("privateport", "80"),
            ("virtualmachineid", &web1),
            ("vmguestip", "10.1.23.50"),
        ],
    );
    s.run(
        "createPortForwardingRule",
        &[
            ("ipaddressid", &net.ip_id),
            ("protocol", "tcp"),
            ("publicport", "8081"),
            ("privateport", "80"),
            ("virtualmachineid", &web1),
        ],
    );
    let body = s.admitted("outside", &net.ip, 8080);
    assert!(body.starts_with("sec-second "), "{body}");
    let body = s.admitted("outside", &net.ip, 8081);
    assert!(body.starts_with("sec-web1 "), "{body}");
    // In use: the address stays.
    let id = r["nicsecondaryip"]["id"].as_str().expect("secondary id");
    let e = s
        .admin
        .try_call("removeIpFromNic", &[("id", id)])
        .expect_err("an address a forward sends to stays");
    assert!(e.to_string().contains("sends to it"), "{e}");
}

/// stopRouter takes the router off its host: its namespace goes, and nothing reaches the
/// network's VMs from outside, while the VMs stay. A forward made while it is stopped ends
/// Active without it; startRouter makes the router again, and when its job ends the router
/// enforces both forwards.
#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn a_stopped_router_enforces_nothing_and_gets_everything_when_it_starts() {
    let mut s = Server::start();
    let net = network(&mut s, "ssnet", 22, false, &[("ss-web1", 11)]);
    let web1 = vm_id(&s, "ss-web1");
    let forward = |s: &Server, public: &str| {
        s.run(
            "createPortForwardingRule",
            &[
                ("ipaddressid", &net.ip_id),
                ("protocol", "tcp"),
                ("publicport", public),
                ("privateport", "80"),
                ("virtualmachineid", &web1),
            ],
        )
    };
    forward(&s, "8080");
    let body = s.admitted("outside", &net.ip, 8080);
    assert!(body.starts_with("ss-web1 "), "{body}");
    let listed = s.call("listRouters", &[("networkid", &net.id)]);
    let router_id = listed["router"][0]["id"].as_str().expect("router id");
    let router = format!("router:{}", net.router);

    let r = s.run("stopRouter", &[("id", router_id)]);
    assert_eq!(r["router"]["state"], "Stopped", "{r}");
    let (ran, out) = s.lab.exec(&router, &["true"]);
    assert!(!ran, "the stopped router's namespace is still there: {out}");
    s.refused("outside", &net.ip, 8080);
    let (ran, out) = s.lab.exec("vm:ss-web1", &["true"]);
    assert!(ran, "the VM went with its router: {out}");

    // Made while the router is stopped: Active, though no router holds it yet.
    let r = forward(&s, "8081");
    assert_eq!(r["portforwardingrule"]["state"], "Active", "{r}");
    s.refused("outside", &net.ip, 8081);
    let e = s
        .admin
        .try_call("rebootRouter", &[("id", router_id)])
        .expect_err("a stopped router is not rebooted");
    assert!(e.to_string().contains("Stopped"), "{e}");

    let r = s.run("startRouter", &[("id", router_id)]);
    assert_eq!(r["router"]["state"], "Running", "{r}");
    for port in [8080, 8081] {
        let body = s
            .lab
            .get("outside", &net.ip, port, "2")
            .unwrap_or_else(|| panic!("port {port} is not enforced when the start's job ends"));
        assert!(body.starts_with("ss-web1 "), "{body}");
    }
    s.refused("outside", &net.ip, 8082);
}

/// restartNetwork sends the router its whole config again; with cleanup=true (and rebootRouter)
/// it first makes the router again from nothing (a table the test leaves in the router's
/// namespace goes with it), and the job ends with every rule enforced again while the VM,
/// whose server kept running, is untouched.
#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn restart_network_rebuilds_the_router_and_restores_its_rules() {
    let mut s = Server::start();
    let net = network(&mut s, "rsnet", 21, false, &[("rs-web1", 11)]);
    let web1 = vm_id(&s, "rs-web1");
    s.run(
        "createPortForwardingRule",
        &[
            ("ipaddressid", &net.ip_id),
            ("protocol", "tcp"),
            ("publicport", "8080"),
            ("privateport", "80"),
            ("virtualmachineid", &web1),
        ],
    );
    let body = s.admitted("outside", &net.ip, 8080);
    assert!(body.starts_with("rs-web1 "), "{body}");
    let router = format!("router:{}", net.router);
    let (made, out) = s
        .lab
        .exec(&router, &["nft", "add", "table", "inet", "restart_marker"]);
    assert!(made, "{out}");
    let marker = |s: &Server| {
        s.lab
            .exec(&router, &["nft", "list", "table", "inet", "restart_marker"])
            .0
    };

    // Without clean-up: a new generation of the whole config, the router as it was.
    let before = s.router_generation(&net.id);
    let r = s.run("restartNetwork", &[("id", &net.id)]);
    assert_eq!(r["success"], true, "{r}");
    assert!(s.router_generation(&net.id) > before);
    assert!(marker(&s), "a restart without clean-up rebuilt the router");
    let body = s.admitted("outside", &net.ip, 8080);
    assert!(body.starts_with("rs-web1 "), "{body}");

    // With clean-up: the router is made again, and enforces the forward and its firewall
    // rule (and nothing more) when the job ends.
    let before = s.router_generation(&net.id);
    let r = s.run("restartNetwork", &[("id", &net.id), ("cleanup", "true")]);
    assert_eq!(r["success"], true, "{r}");
    assert!(s.router_generation(&net.id) > before);
    assert!(
        !marker(&s),
        "the router kept what it held before the clean-up"
    );
    let body = s
        .lab
        .get("outside", &net.ip, 8080, "2")
        .expect("the forward is enforced when the restart's job ends");
    assert!(body.starts_with("rs-web1 "), "{body}");
    s.refused("outside", &net.ip, 8081);
    let listed = s.call("listRouters", &[("networkid", &net.id)]);
    assert_eq!(listed["router"][0]["state"], "Running", "{listed}");

    // rebootRouter (admins) makes it again the same way, and answers with the router.
    let (made, out) = s
        .lab
        .exec(&router, &["nft", "add", "table", "inet", "restart_marker"]);
    assert!(made, "{out}");
    let router_id = listed["router"][0]["id"].as_str().expect("router id");
    let r = s.run("rebootRouter", &[("id", router_id)]);
    assert_eq!(r["router"]["id"], router_id, "{r}");
    assert_eq!(r["router"]["state"], "Running", "{r}");
    assert!(!marker(&s), "the reboot kept what the router held");
    let body = s
        .lab
        .get("outside", &net.ip, 8080, "2")
        .expect("the forward is enforced when the reboot's job ends");
    assert!(body.starts_with("rs-web1 "), "{body}");

    // Refused: what a network with one router cannot do.
    let e = s
        .admin
        .try_call(
            "restartNetwork",
            &[("id", &net.id), ("makeredundant", "true")],
        )
        .expect_err("makeredundant is refused");
    assert!(e.to_string().contains("makeredundant"), "{e}");
}

/// Static NAT with real packets: the address goes 1:1 to its VM (inbound, behind the ingress
/// firewall, and back to it from inside the network), the VM's own traffic leaves from it
/// while the others' still leaves from the source-NAT address, and disabling it ends all of
/// that.
#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn static_nat_is_one_to_one_behind_the_firewall() {
    let mut s = Server::start();
    let net = network(
        &mut s,
        "snnet",
        23,
        true,
        &[("sn-web1", 11), ("sn-web2", 12)],
    );
    s.whoami("outside", INTERNET, 80, "internet");
    let web1 = vm_id(&s, "sn-web1");
    let assoc = s.run("associateIpAddress", &[("networkid", &net.id)]);
    let ip_id = assoc["ipaddress"]["id"]
        .as_str()
        .expect("ip id")
        .to_string();
    let ip = assoc["ipaddress"]["ipaddress"]
        .as_str()
        .expect("ip")
        .to_string();
    let before = s.admitted("vm:sn-web1", INTERNET, 80);
    assert_eq!(before, format!("internet {}", net.ip));

    // Synchronous: when it answers, the router enforces it.
    let r = s.call(
        "enableStaticNat",
        &[("ipaddressid", &ip_id), ("virtualmachineid", &web1)],
    );
    assert_eq!(r["success"], true, "{r}");
    // The VM's own connections leave from its static-NAT address; another VM's do not.
    assert_eq!(
        s.admitted("vm:sn-web1", INTERNET, 80),
        format!("internet {ip}")
    );
    assert_eq!(
        s.admitted("vm:sn-web2", INTERNET, 80),
        format!("internet {}", net.ip)
    );
    // Inbound stays behind the ingress firewall: nothing is admitted before a rule opens it.
    s.refused("outside", &ip, 80);
    let fw = s.run(
        "createFirewallRule",
        &[
            ("ipaddressid", &ip_id),
            ("protocol", "tcp"),
            ("startport", "80"),
        ],
    );
    assert_eq!(fw["firewallrule"]["ipaddress"], ip.as_str(), "{fw}");
    let body = s.admitted("outside", &ip, 80);
    assert!(body.starts_with("sn-web1 "), "{body}");
    assert!(
        !body.contains(" 10.1."),
        "the VM sees the client's own address: {body}"
    );
    // Any port of the address goes to the VM, once the firewall opens it.
    s.whoami("vm:sn-web1", "10.1.23.11", 8081, "sn-web1-8081");
    s.refused("outside", &ip, 8081);
    s.run(
        "createFirewallRule",
        &[
            ("ipaddressid", &ip_id),
            ("protocol", "tcp"),
            ("startport", "8081"),
        ],
    );
    let body = s.admitted("outside", &ip, 8081);
    assert!(body.starts_with("sn-web1-8081 "), "{body}");
    // From inside the network the address reaches the VM too, the reply coming back through
    // the router (hairpin).
    let body = s.admitted("vm:sn-web2", &ip, 80);
    assert_eq!(body, "sn-web1 10.1.23.1");

    // Disabled: no 1:1 any more, though the firewall rule stays; the VM leaves from the
    // source-NAT address again.
    let r = s.run("disableStaticNat", &[("ipaddressid", &ip_id)]);
    assert_eq!(r["success"], true, "{r}");
    s.refused("outside", &ip, 80);
    assert_eq!(
        s.admitted("vm:sn-web1", INTERNET, 80),
        format!("internet {}", net.ip)
    );
}
