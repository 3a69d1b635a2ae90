//! `guestnet serve --driver lab` end to end: rules made through the signed CloudStack API, and
//! checked with real packets in the server's lab. Covers every rule kind and the nine
//! operations of the pipeline: egress add/delete, ingress add/delete, load-balancer member
//! add/remove and update, port-forwarding add/delete.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use lab::TempDir;
use mgmt::client::Client;
use serde_json::Value;

const KEY: &str = "lab-test-api-key";
const SECRET: &str = "lab-test-secret-key";
/// A generous bound for things that normally take milliseconds.
const DEADLINE: Duration = Duration::from_secs(15);
/// An address of the lab's outside host beyond the router (egress target).
const INTERNET: &str = "198.51.100.1";

fn guestnet() -> std::process::Command {
    sys::cmd::command(env!("CARGO_BIN_EXE_guestnet"))
}

/// A running server with its lab; stopped and cleaned up on drop, also when a test fails.
struct Server {
    child: Child,
    dir: TempDir,
    endpoint: String,
    rt: tokio::runtime::Runtime,
    client: Client,
    background: Vec<Child>,
}

impl Server {
    fn start() -> Server {
        let dir = TempDir::new().expect("temp dir");
        let (child, endpoint) = spawn_server(dir.path());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let client = Client::new(&endpoint, KEY, SECRET);
        Server {
            child,
            dir,
            endpoint,
            rt,
            client,
            background: Vec::new(),
        }
    }

    fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    fn call(&self, cmd: &str, params: &[(&str, &str)]) -> Value {
        self.rt
            .block_on(self.client.call(cmd, params))
            .unwrap_or_else(|e| panic!("{cmd} {params:?}: {e}"))
    }

    fn run(&self, cmd: &str, params: &[(&str, &str)]) -> Value {
        self.rt
            .block_on(self.client.run(cmd, params))
            .unwrap_or_else(|e| panic!("{cmd} {params:?}: {e}"))
    }

    /// `guestnet lab exec --data-dir DIR TARGET -- curl …`: the body, or None when refused.
    fn get(&self, target: &str, ip: &str, port: u16, timeout: &str) -> Option<String> {
        let out = guestnet()
            .args(["lab", "exec", "--data-dir"])
            .arg(self.data_dir())
            .args([target, "--", "curl", "-s", "--max-time", timeout])
            .arg(format!("http://{ip}:{port}/"))
            .stdin(Stdio::null())
            .output()
            .expect("run curl in the lab");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Waits until `target` gets an answer from ip:port whose first word is in `names`.
    fn admitted(&self, target: &str, ip: &str, port: u16) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(body) = self.get(target, ip, port, "3") {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "{target} never reached {ip}:{port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Checks that `target` cannot reach ip:port (one probe; only used right after a probe
    /// of the same path that shows the lab works).
    fn refused(&self, target: &str, ip: &str, port: u16) {
        assert_eq!(
            self.get(target, ip, port, "1"),
            None,
            "{target} reached {ip}:{port}, which the rules refuse"
        );
    }

    /// Starts the whoami server in a lab host.
    fn whoami(&mut self, target: &str, ip: &str, port: u16, name: &str) {
        let child = guestnet()
            .args(["lab", "exec", "--data-dir"])
            .arg(self.data_dir())
            .args([target, "--", "python3", "-c", lab::WHOAMI_HTTP_SERVER, ip])
            .arg(port.to_string())
            .arg(name)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start whoami");
        self.background.push(child);
        // Ready once its own host can reach it.
        let deadline = Instant::now() + DEADLINE;
        while self.get(target, ip, port, "1").is_none() {
            assert!(
                Instant::now() < deadline,
                "whoami on {target} never came up"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
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
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("startup line");
    let endpoint = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .map(|w| w.trim_end_matches(';').to_string())
        .unwrap_or_else(|| panic!("no endpoint in the startup line: {line:?}"));
    assert!(line.contains("driver lab"), "{line}");
    (child, endpoint)
}

impl Drop for Server {
    fn drop(&mut self) {
        for c in &mut self.background {
            let _ = sys::cmd::run("kill", &["-TERM", &c.id().to_string()], None);
            let _ = c.wait();
        }
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
        let out = guestnet()
            .args(["lab", "down", "--data-dir"])
            .arg(self.dir.path())
            .output();
        if let Ok(o) = out {
            if !o.status.success() {
                eprintln!("lab down: {}", String::from_utf8_lossy(&o.stderr));
            }
        }
        let _ = &self.endpoint;
    }
}

fn offering(s: &Server, allow: bool) -> String {
    let r = s.call("listNetworkOfferings", &[]);
    r["networkoffering"]
        .as_array()
        .expect("offerings")
        .iter()
        .find(|o| o["egressdefaultpolicy"].as_bool() == Some(allow))
        .and_then(|o| o["id"].as_str())
        .expect("an offering with that egress policy")
        .to_string()
}

struct Net {
    id: String,
    ip: String,
    ip_id: String,
}

/// A network with its source-NAT address, and VMs with whoami servers on port 80.
fn network(s: &mut Server, name: &str, third: u8, allow: bool, vms: &[(&str, u8)]) -> Net {
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
    let gw = format!("10.1.{third}.1");
    let off = offering(s, allow);
    let n = s.call(
        "createNetwork",
        &[
            ("name", name),
            ("displaytext", name),
            ("networkofferingid", &off),
            ("zoneid", &zone),
            ("gateway", &gw),
            ("netmask", "255.255.255.0"),
        ],
    );
    let id = n["network"]["id"].as_str().expect("network id").to_string();
    let ips = s.call("listPublicIpAddresses", &[("associatednetworkid", &id)]);
    let ip = ips["publicipaddress"][0]["ipaddress"]
        .as_str()
        .expect("source nat ip")
        .to_string();
    let ip_id = ips["publicipaddress"][0]["id"]
        .as_str()
        .expect("source nat ip id")
        .to_string();
    for (vm, host) in vms {
        let addr = format!("10.1.{third}.{host}");
        s.run(
            "deployVirtualMachine",
            &[
                ("zoneid", &zone),
                ("serviceofferingid", &so),
                ("templateid", &tpl),
                ("networkids", &id),
                ("ipaddress", &addr),
                ("name", vm),
            ],
        );
        s.whoami(&format!("vm:{vm}"), &addr, 80, vm);
    }
    Net { id, ip, ip_id }
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
    // Stop the server only (the lab stays), then start a new one on the same data directory.
    let _ = sys::cmd::run("kill", &["-KILL", &s.child.id().to_string()], None);
    let _ = s.child.wait();
    s.admitted("outside", &net.ip, 8081);
    let (child, endpoint) = spawn_server(&dir);
    s.child = child;
    s.client = Client::new(&endpoint, KEY, SECRET);
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
