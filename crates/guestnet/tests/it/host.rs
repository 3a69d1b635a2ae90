//! The host driver inside a hypervisor host made of namespaces
//! ([`test_support::hypervisor::Hypervisor`]): routers plugged into the public bridge and their
//! networks' VLAN bridges, reached from outside with real packets; bridges that stay while a
//! guest uses them; restarts (of the driver, and kill -9 of the agent process) that re-adopt
//! everything without dropping a connection; `guestnet agent --check`; `guestnet serve --driver
//! host`; and the whole path through the API: a network on its VLAN, a guest with its MAC
//! leased by the router's DHCP (a namespace plugged in as a hypervisor would, or a real guest
//! booted by the agent's `qemu` VM driver), port forwards, a load balancer, firewall and egress
//! rules, and nothing left once the VM and the network are gone.
//!
//! The driver runs inside the hypervisor's namespace (a thread that entered it, or the
//! `guestnet` binary started there), never in the test's own.

use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use agent::driver::{Driver, VmNic};
use agent::host::{bridge_name, port_names, vlan_link_name, HostConfig, VlanInterfaces, VmDriver};
use lab::TempDir;
use router_config::RouterConfig;
use serde_json::json;
use sys::cmd::Stdio;
use test_support::hypervisor::{in_netns, links_in, Hypervisor, PUBLIC_BRIDGE, TRUNK};
use test_support::wait_until;

use crate::procs::DEADLINE;

fn config(hv: &Hypervisor) -> HostConfig {
    HostConfig {
        public_bridge: PUBLIC_BRIDGE.into(),
        guest_interface: TRUNK.into(),
        namespace_prefix: hv.router_prefix(),
        vm_driver: VmDriver::External,
        // The hypervisor provides `trunk0.N` (see test_support::hypervisor).
        vlan_interfaces: VlanInterfaces::Existing,
        libvirt_uri: agent::guests::DEFAULT_URI.into(),
        kvm: false,
    }
}

/// A router's config: public address `public`, guest network `10.1.<net>.0/24`, TCP `8080` of
/// the public address forwarded to `10.1.<net>.11:80` and open to `sources`, ICMP echo open.
fn router_config(generation: u64, public: &str, net: u8, sources: &[&str]) -> RouterConfig {
    serde_json::from_value(router_json(generation, public, net, sources))
        .expect("a well-formed config")
}

/// [`router_config`] with a load balancer too: TCP 80 of the public address over
/// `10.1.<net>.11:80` (haproxy), open to all.
fn balanced_config(generation: u64, public: &str, net: u8) -> RouterConfig {
    let mut doc = router_json(generation, public, net, &["0.0.0.0/0"]);
    doc["firewall_rules"]
        .as_array_mut()
        .expect("rules")
        .push(json!(
            { "id": 4, "public_ip": public, "protocol": "tcp",
              "ports": { "start": 80, "end": 80 }, "source_cidrs": ["0.0.0.0/0"] }
        ));
    doc["load_balancers"] = json!([
        { "id": 31, "public_ip": public, "public_port": 80, "algorithm": "roundrobin",
          "members": [{ "vm_ip": format!("10.1.{net}.11"), "port": 80 }],
          "source_cidrs": ["0.0.0.0/0"] }
    ]);
    serde_json::from_value(doc).expect("a well-formed config")
}

fn router_json(generation: u64, public: &str, net: u8, sources: &[&str]) -> serde_json::Value {
    json!({
        "schema": 1,
        "generation": generation,
        "public": {
            "interface": "pub0",
            "addresses": [{ "ip": public, "prefix_len": 24, "source_nat": true }],
            "gateway": "203.0.113.1"
        },
        "guest": {
            "interface": "guest0",
            "cidr": format!("10.1.{net}.0/24"),
            "gateway": format!("10.1.{net}.1")
        },
        "egress_default": "allow",
        "firewall_rules": [
            { "id": 1, "public_ip": public, "protocol": "tcp",
              "ports": { "start": 8080, "end": 8080 }, "source_cidrs": sources },
            { "id": 2, "public_ip": public, "protocol": "icmp",
              "icmp": { "type": 8, "code": -1 }, "source_cidrs": ["0.0.0.0/0"] }
        ],
        "port_forwards": [
            { "id": 3, "public_ip": public, "protocol": "tcp",
              "public_ports": { "start": 8080, "end": 8080 },
              "private_ports": { "start": 80, "end": 80 },
              "vm_ip": format!("10.1.{net}.11"), "source_cidrs": ["0.0.0.0/0"] }
        ]
    })
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Whether `ns` can ping `to` (one echo request).
fn ping(ns: &str, to: &str) -> bool {
    Hypervisor::output(ns, &["ping", "-c1", "-W1", to])
        .status
        .success()
}

/// What `ns` gets from `ip:port` (TCP, one connection), if it connects.
fn fetch(ns: &str, ip: &str, port: u16, bind: Option<&str>) -> Option<String> {
    let target = match bind {
        Some(b) => format!("TCP:{ip}:{port},connect-timeout=1,bind={b}"),
        None => format!("TCP:{ip}:{port},connect-timeout=1"),
    };
    let out = Hypervisor::output(ns, &["socat", "-T2", "-t2", "-", &target]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Starts a TCP server on port 80 of `ns` answering its name to every connection.
fn whoami(ns: &str, name: &str) -> sys::cmd::Child {
    Hypervisor::spawn(
        ns,
        &[
            "socat",
            "TCP-LISTEN:80,reuseaddr,fork",
            &format!("SYSTEM:echo {name}"),
        ],
    )
}

fn eventually(what: &str, cond: impl FnMut() -> bool) {
    assert!(wait_until(Instant::now() + DEADLINE, cond), "never: {what}");
}

/// The names a test's agent could make in the test's own namespace: none may ever be there.
fn assert_nothing_here(hv: &Hypervisor, routers: &[&str], vlans: &[u16]) {
    let here = links_in(None);
    let mut ours: Vec<String> = Vec::new();
    for r in routers {
        let (p, g) = port_names(&hv.router_prefix(), r);
        ours.extend([p, g]);
    }
    for v in vlans {
        ours.extend([bridge_name(TRUNK, *v), vlan_link_name(TRUNK, *v)]);
    }
    for name in ours {
        assert!(
            !here.contains(&name),
            "{name} is in the test's own namespace"
        );
    }
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn host_routers_sit_on_the_public_bridge_and_their_vlans() {
    let dir = TempDir::new().expect("temp dir");
    let mut hv = Hypervisor::new();
    hv.provide_vlan(100);
    hv.provide_vlan(200);
    // VLAN 300's interface is a port of some other bridge of the host's.
    let other = hv.provide_vlan(300);
    sys::netns::add_bridge(&hv.netns(), "brother").expect("another bridge");
    sys::netns::attach(&hv.netns(), &other, "brother").expect("on it");
    let driver = hv.in_netns(|| {
        let rt = rt();
        let d = Driver::host(dir.path(), config(&hv)).expect("the host driver");
        rt.block_on(async {
            let e = d
                .ensure_router(
                    "r0",
                    "10.1.9.0/24".parse().expect("parses"),
                    Ipv4Addr::new(10, 1, 9, 1),
                    None,
                )
                .await
                .expect_err("no VLAN: refused");
            assert!(e.chain().contains("VLAN"), "{}", e.chain());
            let e = d
                .ensure_router(
                    "r3",
                    "10.1.3.0/24".parse().expect("parses"),
                    Ipv4Addr::new(10, 1, 3, 1),
                    Some(300),
                )
                .await
                .expect_err("another bridge's port: refused");
            assert!(
                e.chain().contains("trunk0.300 is a port of bridge brother"),
                "{}",
                e.chain()
            );
            for (r, net, vlan, public) in [
                ("r1", 1u8, 100u16, "203.0.113.10"),
                ("r2", 2, 200, "203.0.113.20"),
            ] {
                d.ensure_router(
                    r,
                    format!("10.1.{net}.0/24").parse().expect("parses"),
                    Ipv4Addr::new(10, 1, net, 1),
                    Some(vlan),
                )
                .await
                .unwrap_or_else(|e| panic!("{r}: {}", e.chain()));
                // Asked again: nothing changes, nothing fails.
                d.ensure_router(
                    r,
                    format!("10.1.{net}.0/24").parse().expect("parses"),
                    Ipv4Addr::new(10, 1, net, 1),
                    Some(vlan),
                )
                .await
                .unwrap_or_else(|e| panic!("{r} again: {}", e.chain()));
                d.apply(r, router_config(1, public, net, &["203.0.113.0/24"]))
                    .await
                    .unwrap_or_else(|e| panic!("{r} apply: {}", e.chain()));
            }
        });
        (rt, d)
    });
    let (rt, d) = driver;

    // The links: in the hypervisor, none in the test's own namespace.
    let links = hv.links();
    for v in [100, 200] {
        assert!(links.contains(&bridge_name(TRUNK, v)), "{links:?}");
        assert!(links.contains(&vlan_link_name(TRUNK, v)), "{links:?}");
    }
    assert_eq!(bridge_name(TRUNK, 100), "brtrunk0-100");
    let other_info = Hypervisor::output(&hv.netns(), &["ip", "-o", "link", "show", "trunk0.300"]);
    assert!(
        String::from_utf8_lossy(&other_info.stdout).contains("master brother"),
        "{other_info:?}"
    );
    assert_nothing_here(&hv, &["r1", "r2"], &[100, 200]);
    let routers = hv.router_namespaces();
    assert_eq!(routers.len(), 2, "{routers:?}");
    let r1 = format!("{}-r1", hv.router_prefix());
    let fwd = Hypervisor::output(&r1, &["sysctl", "-n", "net.ipv4.ip_forward"]);
    assert_eq!(String::from_utf8_lossy(&fwd.stdout).trim(), "1");

    // Guests plugged in by "the hypervisor" (their ports are foreign to the agent).
    let g1 = hv.guest(
        "g1",
        "tap1",
        &bridge_name(TRUNK, 100),
        "02:00:5e:10:01:0b",
        Some("10.1.1.11/24"),
        Some("10.1.1.1"),
    );
    let g2 = hv.guest(
        "g2",
        "tap2",
        &bridge_name(TRUNK, 200),
        "02:00:5e:10:02:0b",
        Some("10.1.2.11/24"),
        Some("10.1.2.1"),
    );
    // On VLAN 200, an address of VLAN 100's network: the VLANs are separate segments.
    let g3 = hv.guest(
        "g3",
        "tap3",
        &bridge_name(TRUNK, 200),
        "02:00:5e:10:02:0c",
        Some("10.1.1.12/24"),
        None,
    );
    let _w1 = whoami(&g1, "g1");
    let _w2 = whoami(&g2, "g2");
    let out = hv.outside();
    eventually("outside reaches g1 through r1's port forward", || {
        fetch(&out, "203.0.113.10", 8080, None).as_deref() == Some("g1")
    });
    eventually("outside reaches g2 through r2's port forward", || {
        fetch(&out, "203.0.113.20", 8080, None).as_deref() == Some("g2")
    });
    assert!(ping(&out, "203.0.113.10"), "r1's public address answers");
    assert!(ping(&g1, "10.1.1.1"), "g1 reaches its router");
    assert!(
        ping(&g1, "203.0.113.1"),
        "g1 reaches outside (egress allowed)"
    );
    // The firewall admits the public segment only: a source from beyond it is refused.
    assert_eq!(
        fetch(&out, "203.0.113.10", 8080, Some("198.51.100.1")),
        None
    );
    // Two networks on two VLANs cannot reach each other.
    assert!(!ping(&g1, "10.1.2.11"), "g1 reached the other network");
    assert!(!ping(&g2, "10.1.1.11"), "g2 reached the other network");
    assert!(
        !ping(&g3, "10.1.1.11"),
        "VLAN 200 reached VLAN 100 at layer 2"
    );
    assert!(!ping(&g3, "10.1.1.1"), "VLAN 200 reached r1 at layer 2");

    // A rebuild (restartNetwork with clean-up) makes r1 again from nothing: a table left in its
    // namespace goes, the guest on its VLAN stays, and the config applied afresh is enforced.
    let marked = Hypervisor::output(&r1, &["nft", "add", "table", "inet", "marker"]);
    assert!(marked.status.success(), "{marked:?}");
    hv.in_netns(|| {
        rt.block_on(async {
            d.rebuild_router(
                "r1",
                "10.1.1.0/24".parse().expect("parses"),
                Ipv4Addr::new(10, 1, 1, 1),
                Some(100),
            )
            .await
            .unwrap_or_else(|e| panic!("rebuild r1: {}", e.chain()));
        })
    });
    let listed = Hypervisor::output(&r1, &["nft", "list", "table", "inet", "marker"]);
    assert!(!listed.status.success(), "r1 kept its table: {listed:?}");
    assert_eq!(
        fetch(&out, "203.0.113.10", 8080, None),
        None,
        "the rebuilt router forwards before it has a config"
    );
    hv.in_netns(|| {
        rt.block_on(async {
            d.apply(
                "r1",
                router_config(1, "203.0.113.10", 1, &["203.0.113.0/24"]),
            )
            .await
            .unwrap_or_else(|e| panic!("r1 apply after the rebuild: {}", e.chain()));
        })
    });
    eventually("outside reaches g1 through the rebuilt r1", || {
        fetch(&out, "203.0.113.10", 8080, None).as_deref() == Some("g1")
    });
    assert!(ping(&g1, "10.1.1.1"), "g1 reaches its rebuilt router");

    // A VM recorded on r1's network keeps its bridge when r1 goes; so does the hypervisor's
    // port; the bridge goes with its last user.
    let bridge1 = bridge_name(TRUNK, 100);
    let vlan1 = vlan_link_name(TRUNK, 100);
    hv.in_netns(|| {
        rt.block_on(async {
            d.ensure_vm(
                "r1",
                "vm-1",
                Ipv4Addr::new(10, 1, 1, 11),
                None,
                VmNic {
                    mac: Some("02:00:5e:10:01:0b".parse().expect("parses")),
                    vlan: Some(100),
                    guest: None,
                },
            )
            .await
            .unwrap_or_else(|e| panic!("{}", e.chain()));
            d.remove_router("r1")
                .await
                .unwrap_or_else(|e| panic!("{}", e.chain()));
        })
    });
    assert!(!sys::netns::exists(&r1), "r1's namespace is left");
    let links = hv.links();
    let (p1, g1port) = port_names(&hv.router_prefix(), "r1");
    assert!(
        !links.contains(&p1) && !links.contains(&g1port),
        "{links:?}"
    );
    assert!(links.contains(&bridge1), "the VM's bridge went: {links:?}");
    let state = d.host_state().expect("host state");
    assert_eq!(state.vms["vm-1"].vlan, 100);
    assert!(state.networks.contains_key(&100));
    hv.in_netns(|| {
        rt.block_on(async {
            d.remove_vm("vm-1")
                .await
                .unwrap_or_else(|e| panic!("{}", e.chain()));
            d.tend().await;
        })
    });
    assert!(
        hv.links().contains(&bridge1),
        "the bridge went while the hypervisor's port tap1 is on it"
    );
    hv.unplug("g1");
    hv.in_netns(|| rt.block_on(d.tend()));
    let links = hv.links();
    assert!(!links.contains(&bridge1), "{links:?}");
    // The host's own VLAN interface stays, out of the bridge that went.
    assert!(links.contains(&vlan1), "{links:?}");
    assert!(!d.host_state().expect("state").networks.contains_key(&100));
    // VLAN 200 and r2 are untouched.
    assert_eq!(
        fetch(&out, "203.0.113.20", 8080, None).as_deref(),
        Some("g2")
    );

    hv.in_netns(|| {
        rt.block_on(async { d.remove_router("r2").await.expect("remove r2") });
    });
    drop(rt);
    assert_eq!(hv.router_namespaces(), Vec::<String>::new());
    assert!(
        hv.links().contains(&bridge_name(TRUNK, 200)),
        "VLAN 200's bridge went while guests are on it"
    );
    assert_nothing_here(&hv, &["r1", "r2"], &[100, 200]);
    let prefix = hv.router_prefix();
    drop(hv);
    assert!(
        !sys::netns::list()
            .expect("list")
            .iter()
            .any(|n| n.starts_with(&prefix)),
        "a router namespace outlived the hypervisor"
    );
}

/// A long-lived TCP session from outside through a router: lines written come back.
struct Session {
    child: sys::cmd::Child,
    stdin: sys::cmd::ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Session {
    fn open(ns: &str, ip: &str, port: u16) -> Session {
        let mut child = Hypervisor::command(
            ns,
            "socat",
            [
                "-".to_string(),
                format!("TCP:{ip}:{port},connect-timeout=2"),
            ],
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start socat");
        let stdin = child.take_stdin().expect("stdin");
        let stdout = child.take_stdout().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Session {
            child,
            stdin,
            lines,
        }
    }

    /// Sends `text` and waits for it to come back.
    fn echo(&mut self, text: &str) -> Result<(), String> {
        writeln!(self.stdin, "{text}").map_err(|e| format!("write: {e}"))?;
        self.stdin.flush().map_err(|e| format!("flush: {e}"))?;
        match self.lines.recv_timeout(Duration::from_secs(5)) {
            Ok(line) if line == text => Ok(()),
            Ok(line) => Err(format!("sent {text:?}, got {line:?}")),
            Err(e) => Err(format!("nothing came back for {text:?}: {e}")),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill_and_wait();
    }
}

/// Makes router `r1` on VLAN 100 with a port forward (8080) and a load balancer (80) to an echo
/// server on guest g1.
fn echo_network(hv: &mut Hypervisor, data_dir: &Path) -> String {
    hv.provide_vlan(100);
    hv.in_netns(|| {
        let rt = rt();
        let d = Driver::host(data_dir, config(hv)).expect("the host driver");
        rt.block_on(async {
            d.ensure_router(
                "r1",
                "10.1.1.0/24".parse().expect("parses"),
                Ipv4Addr::new(10, 1, 1, 1),
                Some(100),
            )
            .await
            .unwrap_or_else(|e| panic!("{}", e.chain()));
            d.apply("r1", balanced_config(1, "203.0.113.10", 1))
                .await
                .unwrap_or_else(|e| panic!("{}", e.chain()));
        });
    });
    let g1 = hv.guest(
        "g1",
        "tap1",
        &bridge_name(TRUNK, 100),
        "02:00:5e:10:01:0b",
        Some("10.1.1.11/24"),
        Some("10.1.1.1"),
    );
    Hypervisor::spawn(&g1, &["socat", "TCP-LISTEN:80,reuseaddr,fork", "EXEC:cat"]);
    g1
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn a_restarted_host_driver_adopts_its_routers_without_dropping_a_connection() {
    let dir = TempDir::new().expect("temp dir");
    let mut hv = Hypervisor::new();
    let _g1 = echo_network(&mut hv, dir.path());
    let out = hv.outside();
    eventually("the echo server answers through the port forward", || {
        let mut s = Session::open(&out, "203.0.113.10", 8080);
        s.echo("hello").is_ok()
    });
    eventually("the echo server answers through haproxy", || {
        let mut s = Session::open(&out, "203.0.113.10", 80);
        s.echo("hello").is_ok()
    });
    let mut session = Session::open(&out, "203.0.113.10", 8080);
    session.echo("before").expect("the session works");
    let mut balanced = Session::open(&out, "203.0.113.10", 80);
    balanced.echo("before").expect("the balanced session works");
    let namespaces = hv.router_namespaces();
    let ns_id = sys::proc::file_id(&sys::netns::path(&namespaces[0])).expect("router namespace");
    let links_before = hv.links();

    // The driver of a restarted agent: from its state file alone.
    hv.in_netns(|| {
        let rt = rt();
        let d = Driver::host(dir.path(), config(&hv)).expect("the host driver again");
        rt.block_on(async {
            d.open_all().await;
            assert_eq!(
                d.held("r1").await,
                Some(1),
                "the ledger's generation is adopted"
            );
            assert!(
                d.tend().await.is_empty(),
                "nothing was lost, nothing repaired"
            );
            d.ensure_router(
                "r1",
                "10.1.1.0/24".parse().expect("parses"),
                Ipv4Addr::new(10, 1, 1, 1),
                Some(100),
            )
            .await
            .unwrap_or_else(|e| panic!("{}", e.chain()));
            let again = d
                .apply("r1", balanced_config(1, "203.0.113.10", 1))
                .await
                .unwrap_or_else(|e| panic!("{}", e.chain()));
            assert_eq!(again, agent::driver::Applied::Generation(1));
        });
    });
    session
        .echo("after")
        .expect("the session survived the restart");
    balanced
        .echo("after")
        .expect("the balanced session survived the restart");
    assert_eq!(hv.router_namespaces(), namespaces);
    assert_eq!(
        sys::proc::file_id(&sys::netns::path(&namespaces[0])),
        Some(ns_id),
        "the router's namespace was rebuilt"
    );
    assert_eq!(hv.links(), links_before, "links were rebuilt");
}

/// `guestnet agent --check …` run inside `ns`: exit status and stdout.
fn check(ns: &str, args: &[&str]) -> (Option<i32>, String) {
    let mut argv = vec!["agent", "--check"];
    argv.extend_from_slice(args);
    let out = sys::netns::command_in(ns, env!("CARGO_BIN_EXE_guestnet"), argv)
        .stdin(Stdio::null())
        .output()
        .expect("run guestnet agent --check");
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn agent_check_reports_every_missing_piece() {
    let hv = Hypervisor::new();
    let ns = hv.netns();
    let prefix = hv.router_prefix();
    let (code, text) = check(
        &ns,
        &[
            "--driver",
            "host",
            "--public-bridge",
            "nobridge",
            "--guest-interface",
            "notrunk",
            "--namespace-prefix",
            &prefix,
        ],
    );
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("public bridge nobridge does not exist"),
        "{text}"
    );
    assert!(text.contains("trunk) notrunk does not exist"), "{text}");
    // The trunk is not a bridge.
    let (code, text) = check(
        &ns,
        &[
            "--driver",
            "host",
            "--public-bridge",
            TRUNK,
            "--guest-interface",
            TRUNK,
            "--namespace-prefix",
            &prefix,
        ],
    );
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("is a veth, not a bridge"), "{text}");

    // All there, given through a config file with a flag over it.
    let dir = TempDir::new().expect("temp dir");
    let file = dir.path().join("agent.toml");
    std::fs::write(
        &file,
        format!(
            "driver = \"host\"\npublic_bridge = \"nobridge\"\nguest_interface = \"{TRUNK}\"\n\
             namespace_prefix = \"{prefix}\"\nvm_driver = \"external\"\n\
             vlan_interfaces = \"existing\"\n"
        ),
    )
    .expect("write the config");
    let file = file.to_string_lossy().into_owned();
    let (code, text) = check(&ns, &["--config", &file, "--public-bridge", PUBLIC_BRIDGE]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.starts_with("ok: "), "{text}");
    assert_eq!(text.lines().count(), 1, "{text}");
    // Making the VLAN interfaces needs the kernel's 802.1Q support, which the check looks for.
    let (code, text) = check(
        &ns,
        &[
            "--config",
            &file,
            "--public-bridge",
            PUBLIC_BRIDGE,
            "--vlan-interfaces",
            "create",
        ],
    );
    if Path::new("/proc/net/vlan/config").exists() {
        assert_eq!(code, Some(0), "{text}");
    } else {
        assert_eq!(code, Some(1), "{text}");
        assert!(text.contains("missing: no VLAN support"), "{text}");
        assert_eq!(text.lines().count(), 1, "{text}");
    }
    // The check's throwaway namespace is gone.
    assert_eq!(hv.router_namespaces(), Vec::<String>::new());
    assert!(!hv.links().iter().any(|l| l.starts_with("gnchk")));

    // A key the agent does not know is refused, naming it.
    std::fs::write(dir.path().join("bad.toml"), "public_brige = \"x\"\n").expect("write");
    let bad = dir.path().join("bad.toml").to_string_lossy().into_owned();
    let (code, text) = check(&ns, &["--config", &bad]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("public_brige"), "{text}");
}

/// Starts `guestnet agent` with the host driver inside the hypervisor, configured by a file
/// (flags for the server, token and data directory).
fn host_agent(
    hv: &Hypervisor,
    dir: &Path,
    name: &str,
    server: &str,
    token_file: &Path,
    public_bridge: &str,
) -> crate::procs::Proc {
    host_agent_with(hv, dir, name, server, token_file, public_bridge, &[])
}

/// [`host_agent`] with more flags.
fn host_agent_with(
    hv: &Hypervisor,
    dir: &Path,
    name: &str,
    server: &str,
    token_file: &Path,
    public_bridge: &str,
    flags: &[&str],
) -> crate::procs::Proc {
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(
        &file,
        format!(
            "driver = \"host\"\npublic_bridge = \"{public_bridge}\"\nguest_interface = \"{TRUNK}\"\n\
             namespace_prefix = \"{}\"\nvlan_interfaces = \"existing\"\ndrift_interval = 0.5\n\
             apply_timeout = 10\n",
            hv.router_prefix()
        ),
    )
    .expect("write the agent's config");
    let mut cmd = sys::netns::command_in(
        &hv.netns(),
        env!("CARGO_BIN_EXE_guestnet"),
        Vec::<&str>::new(),
    );
    cmd.arg("agent")
        .arg("--config")
        .arg(&file)
        .args(["--server", server])
        .arg("--token-file")
        .arg(token_file)
        .arg("--data-dir")
        .arg(dir.join(format!("{name}-data")))
        .args(flags)
        .env("RUST_LOG", "info,agent=debug")
        .stdout(Stdio::null());
    crate::procs::Proc::spawn(name, &mut cmd, &dir.join(format!("{name}.log")))
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn an_agent_process_runs_the_host_driver_inside_the_hypervisor() {
    let dir = TempDir::new().expect("temp dir");
    let hv = Hypervisor::new();
    let (_server, endpoint) = crate::procs::server(&crate::procs::ServerSpec {
        name: "server".into(),
        data_dir: dir.path().join("server"),
        database_url: None,
        listen: "127.0.0.1:0".into(),
        netns: Some(hv.netns()),
        apply_timeout: "10".into(),
        log: dir.path().join("server.log"),
    });
    let server = crate::procs::base(&endpoint);
    let admin = crate::procs::Admin::new(&endpoint);
    let token_file = dir.path().join("token");
    hv.in_netns(|| admin.token("hv1", &token_file));

    // A host that lacks a piece: the agent says which and does not start.
    let mut refused = host_agent(&hv, dir.path(), "refused", &server, &token_file, "nobridge");
    refused
        .wait_log("the host driver cannot run here", DEADLINE)
        .unwrap_or_else(|e| panic!("{e}"));
    eventually("the agent that cannot run exits", || !refused.running());
    let log = refused.log();
    assert!(
        log.contains("public bridge nobridge does not exist"),
        "{log}"
    );

    // With the pieces there, it connects and its host comes Up.
    let agent = host_agent(
        &hv,
        dir.path(),
        "agent",
        &server,
        &token_file,
        PUBLIC_BRIDGE,
    );
    hv.in_netns(|| admin.until("host hv1 is Up", |a| a.host_up("hv1")));
    agent
        .wait_log("guestnet agent starting", DEADLINE)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        agent.log().contains("host (public bridge brpub"),
        "{}",
        agent.log()
    );
    assert!(hv.router_namespaces().is_empty());

    // A network on a VLAN whose interface this host lacks: the host driver's refusal, naming
    // it, reaches the API.
    let refusal = hv.in_netns(|| {
        let zone = admin.call("listZones", &[])["zone"][0]["id"]
            .as_str()
            .expect("zone")
            .to_string();
        let off = admin.call("listNetworkOfferings", &[])["networkoffering"][0]["id"]
            .as_str()
            .expect("offering")
            .to_string();
        admin.try_call(
            "createNetwork",
            &[
                ("name", "n1"),
                ("displaytext", "n1"),
                ("networkofferingid", &off),
                ("zoneid", &zone),
                ("gateway", "10.1.1.1"),
                ("netmask", "255.255.255.0"),
            ],
        )
    });
    let text = refusal.expect_err("no VLAN interface: refused").to_string();
    assert!(
        text.contains("n1") && text.contains("trunk0.100 does not exist"),
        "{text}"
    );
    assert!(hv.router_namespaces().is_empty());
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn a_killed_agent_process_comes_back_to_its_routers_without_dropping_a_connection() {
    let dir = TempDir::new().expect("temp dir");
    let mut hv = Hypervisor::new();
    // The router as an earlier agent left it in the data directory the process uses.
    echo_network(&mut hv, &dir.path().join("agent-data"));
    let out = hv.outside();
    eventually("the echo server answers through the port forward", || {
        Session::open(&out, "203.0.113.10", 8080)
            .echo("hello")
            .is_ok()
    });
    eventually("the echo server answers through haproxy", || {
        Session::open(&out, "203.0.113.10", 80)
            .echo("hello")
            .is_ok()
    });
    let mut session = Session::open(&out, "203.0.113.10", 8080);
    let mut balanced = Session::open(&out, "203.0.113.10", 80);
    session.echo("before").expect("the session works");
    balanced.echo("before").expect("the balanced session works");
    let r1 = format!("{}-r1", hv.router_prefix());
    let ns_id = sys::proc::file_id(&sys::netns::path(&r1)).expect("r1's namespace");

    let (_server, endpoint) = crate::procs::server(&crate::procs::ServerSpec {
        name: "server".into(),
        data_dir: dir.path().join("server"),
        database_url: None,
        listen: "127.0.0.1:0".into(),
        netns: Some(hv.netns()),
        apply_timeout: "10".into(),
        log: dir.path().join("server.log"),
    });
    let server = crate::procs::base(&endpoint);
    let admin = crate::procs::Admin::new(&endpoint);
    let token_file = dir.path().join("token");
    hv.in_netns(|| admin.token("hv1", &token_file));
    let repairs = |agent: &crate::procs::Proc| {
        agent
            .log()
            .matches("enforced again from its ledger")
            .count()
    };
    let drift_and_wait = |agent: &crate::procs::Proc| {
        let before = repairs(agent);
        // Any change of the namespace's ruleset moves its generation: drift, though the
        // router's own table (and so every connection through it) is left as it is.
        let table = format!("ip drift{before}");
        let changed = Hypervisor::output(&r1, &["nft", "add", "table", &table]);
        assert!(changed.status.success(), "{changed:?}");
        eventually("the agent's drift timer sees r1's drift", || {
            repairs(agent) > before
        });
    };

    // The agent process takes the router up: its drift timer repairs it.
    let mut agent = host_agent(
        &hv,
        dir.path(),
        "agent",
        &server,
        &token_file,
        PUBLIC_BRIDGE,
    );
    hv.in_netns(|| admin.until("host hv1 is Up", |a| a.host_up("hv1")));
    drift_and_wait(&agent);
    session.echo("adopted").expect("the session survives");

    // kill -9 and a new process: the connections go on, the router is taken up again as it is.
    agent.kill9();
    session
        .echo("no agent")
        .expect("the session survives the agent's end");
    balanced
        .echo("no agent")
        .expect("the balanced session survives the agent's end");
    let agent = host_agent(
        &hv,
        dir.path(),
        "agent",
        &server,
        &token_file,
        PUBLIC_BRIDGE,
    );
    hv.in_netns(|| admin.until("host hv1 is Up again", |a| a.host_up("hv1")));
    drift_and_wait(&agent);
    session
        .echo("after")
        .expect("the session survives the restart");
    balanced
        .echo("after")
        .expect("the balanced session survives the restart");
    assert_eq!(
        sys::proc::file_id(&sys::netns::path(&r1)),
        Some(ns_id),
        "r1's namespace was rebuilt"
    );
    assert!(
        !agent.log().contains("cannot open the router") && !agent.log().contains("cannot restore"),
        "{}",
        agent.log()
    );
    Session::open(&out, "203.0.113.10", 8080)
        .echo("new")
        .expect("a new connection is forwarded");
}

/// Starts `guestnet serve --driver host` inside the hypervisor with `public_bridge`; the
/// process and its startup line.
fn host_server(hv: &Hypervisor, dir: &Path, public_bridge: &str) -> (crate::procs::Proc, String) {
    let mut cmd = sys::netns::command_in(
        &hv.netns(),
        env!("CARGO_BIN_EXE_guestnet"),
        Vec::<&str>::new(),
    );
    cmd.args(["serve", "--driver", "host", "--listen", "127.0.0.1:0"])
        .args(["--public-bridge", public_bridge, "--guest-interface", TRUNK])
        .args(["--namespace-prefix", &hv.router_prefix()])
        .args(["--vlan-interfaces", "existing", "--apply-timeout", "10"])
        .arg("--data-dir")
        .arg(dir.join("serve-data"))
        .env("GUESTNET_ADMIN_API_KEY", crate::procs::KEY)
        .env("GUESTNET_ADMIN_SECRET_KEY", crate::procs::SECRET)
        .stdout(Stdio::piped());
    let mut proc = crate::procs::Proc::spawn("serve", &mut cmd, &dir.join("serve.log"))
        .unwrap_or_else(|e| panic!("{e}"));
    let line = match proc.child_mut() {
        Some(child) => crate::procs::startup_line(child, DEADLINE).0,
        None => String::new(),
    };
    (proc, line)
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn serve_runs_its_own_agent_with_the_host_driver() {
    let dir = TempDir::new().expect("temp dir");
    let hv = Hypervisor::new();

    // A missing public bridge: the server names it and does not start.
    let (mut refused, line) = host_server(&hv, dir.path(), "nobridge");
    assert_eq!(line, "", "{}", refused.log());
    eventually("the server that cannot run exits", || !refused.running());
    let log = refused.log();
    assert!(
        log.contains("the host driver cannot run here: public bridge nobridge does not exist"),
        "{log}"
    );

    let (_server, line) = host_server(&hv, dir.path(), PUBLIC_BRIDGE);
    assert!(
        line.contains("host (public bridge brpub, guest trunk trunk0"),
        "{line}"
    );
    let endpoint = test_support::process::endpoint_in(&line).expect("an endpoint");
    let admin = crate::procs::Admin::new(&endpoint);
    let zones = hv.in_netns(|| admin.call("listZones", &[]));
    assert!(zones["zone"][0]["id"].is_string(), "{zones}");
}

/// Starts `guestnet serve --driver agents` inside the hypervisor with guest VLANs `vlans`.
fn vlan_server(hv: &Hypervisor, dir: &Path, vlans: &str) -> (crate::procs::Proc, String) {
    let mut cmd = sys::netns::command_in(
        &hv.netns(),
        env!("CARGO_BIN_EXE_guestnet"),
        Vec::<&str>::new(),
    );
    cmd.args(["serve", "--driver", "agents", "--listen", "127.0.0.1:0"])
        .args(["--guest-vlans", vlans, "--apply-timeout", "10"])
        .arg("--data-dir")
        .arg(dir.join("server"))
        .env("GUESTNET_ADMIN_API_KEY", crate::procs::KEY)
        .env("GUESTNET_ADMIN_SECRET_KEY", crate::procs::SECRET)
        .stdout(Stdio::piped());
    let mut proc = crate::procs::Proc::spawn("server", &mut cmd, &dir.join("server.log"))
        .unwrap_or_else(|e| panic!("{e}"));
    let line = match proc.child_mut() {
        Some(child) => crate::procs::startup_line(child, DEADLINE).0,
        None => String::new(),
    };
    let endpoint = test_support::process::endpoint_in(&line)
        .unwrap_or_else(|| panic!("no endpoint in {line:?}: {}", proc.log()));
    (proc, endpoint)
}

/// The script busybox's `udhcpc` runs with a lease: the address and the default route on the
/// interface.
const UDHCPC_SCRIPT: &str = "#!/bin/sh\n\
case \"$1\" in\n\
  bound|renew)\n\
    ip -4 addr flush dev \"$interface\"\n\
    ip addr add \"$ip/$mask\" dev \"$interface\"\n\
    for r in $router; do ip route replace default via \"$r\" dev \"$interface\"; break; done\n\
    ;;\n\
esac\n\
exit 0\n";

/// The first id of `field` in an answer.
fn id_of(v: &serde_json::Value, field: &str) -> String {
    v[field]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no {field}.id in {v}"))
        .to_string()
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn a_network_through_the_api_reaches_a_guest_on_its_vlan() {
    let dir = TempDir::new().expect("temp dir");
    let mut hv = Hypervisor::new();
    hv.provide_vlan(100);
    let (_server, endpoint) = vlan_server(&hv, dir.path(), "100-101");
    let server = crate::procs::base(&endpoint);
    let admin = crate::procs::Admin::new(&endpoint);
    let token_file = dir.path().join("token");
    hv.in_netns(|| admin.token("hv1", &token_file));
    let agent = host_agent(
        &hv,
        dir.path(),
        "agent",
        &server,
        &token_file,
        PUBLIC_BRIDGE,
    );
    hv.in_netns(|| admin.until("host hv1 is Up", |a| a.host_up("hv1")));
    let hv_ns = hv.netns();
    let api = |cmd: &str, params: &[(&str, &str)]| in_netns(&hv_ns, || admin.call(cmd, params));
    let job = |cmd: &str, params: &[(&str, &str)]| in_netns(&hv_ns, || admin.run(cmd, params));

    // createNetwork: the router on the zone's first free VLAN, 100.
    let first = |cmd: &str, list: &str, params: &[(&str, &str)]| {
        api(cmd, params)[list][0]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no {list}"))
            .to_string()
    };
    let zone = first("listZones", "zone", &[]);
    let deny = api("listNetworkOfferings", &[])["networkoffering"]
        .as_array()
        .expect("offerings")
        .iter()
        .find(|o| o["egressdefaultpolicy"].as_bool() == Some(false))
        .and_then(|o| o["id"].as_str())
        .expect("an offering denying egress")
        .to_string();
    let net = api(
        "createNetwork",
        &[
            ("name", "web"),
            ("displaytext", "web"),
            ("networkofferingid", &deny),
            ("zoneid", &zone),
            ("gateway", "10.1.1.1"),
            ("netmask", "255.255.255.0"),
        ],
    );
    assert_eq!(net["network"]["vlan"], "100", "{net}");
    let net_id = id_of(&net, "network");
    let bridge = bridge_name(TRUNK, 100);
    assert!(hv.links().contains(&bridge), "{:?}", hv.links());
    let router = api("listRouters", &[("networkid", &net_id)])["router"][0]["name"]
        .as_str()
        .expect("router name")
        .to_string();
    let router_ns = format!("{}-{router}", hv.router_prefix());
    assert_eq!(hv.router_namespaces(), vec![router_ns.clone()]);
    let ips = api("listPublicIpAddresses", &[("associatednetworkid", &net_id)]);
    let public = ips["publicipaddress"][0]["ipaddress"]
        .as_str()
        .expect("source NAT address")
        .to_string();
    let public_id = ips["publicipaddress"][0]["id"]
        .as_str()
        .expect("its id")
        .to_string();

    // deployVirtualMachine with a MAC: the guest the hypervisor plugs in gets its address by
    // DHCP from the router.
    let mac = "02:00:5e:10:01:0b";
    let vm = job(
        "deployVirtualMachine",
        &[
            ("zoneid", &zone),
            (
                "serviceofferingid",
                &first("listServiceOfferings", "serviceoffering", &[]),
            ),
            (
                "templateid",
                &first(
                    "listTemplates",
                    "template",
                    &[("templatefilter", "featured")],
                ),
            ),
            ("networkids", &net_id),
            ("ipaddress", "10.1.1.11"),
            ("macaddress", mac),
            ("name", "web1"),
        ],
    );
    let vm_id = id_of(&vm, "virtualmachine");
    let g1 = hv.guest("g1", "tap1", &bridge, mac, None, None);
    let script = dir.path().join("udhcpc.script");
    std::fs::write(&script, UDHCPC_SCRIPT).expect("write the udhcpc script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("make the script executable");
    let script = script.to_string_lossy().into_owned();
    let lease = Hypervisor::output(
        &g1,
        &[
            "busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-t", "10", "-T", "1", "-s", &script,
        ],
    );
    assert!(lease.status.success(), "udhcpc: {lease:?}");
    let addr = Hypervisor::output(&g1, &["ip", "-4", "-o", "addr", "show", "eth0"]);
    assert!(
        String::from_utf8_lossy(&addr.stdout).contains("10.1.1.11/24"),
        "{addr:?}"
    );
    let _web = whoami(&g1, "web1");

    // A port forward and a load balancer reach it from outside; the firewall admits one source
    // and refuses another.
    let out = hv.outside();
    let fw = job(
        "createFirewallRule",
        &[
            ("ipaddressid", &public_id),
            ("protocol", "tcp"),
            ("startport", "8080"),
            ("endport", "8080"),
            ("cidrlist", "198.51.100.1/32"),
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
    eventually("198.51.100.1 reaches web1 through the port forward", || {
        fetch(&out, &public, 8080, Some("198.51.100.1")).as_deref() == Some("web1")
    });
    assert_eq!(fetch(&out, &public, 8080, Some("203.0.113.2")), None);
    // The guest's service is raw TCP, not HTTP: the balancer listens on port 81, since one on
    // port 80 speaks HTTP to its members (as CloudStack's router does).
    let fw81 = job(
        "createFirewallRule",
        &[
            ("ipaddressid", &public_id),
            ("protocol", "tcp"),
            ("startport", "81"),
            ("endport", "81"),
            ("cidrlist", "0.0.0.0/0"),
        ],
    );
    let lb = job(
        "createLoadBalancerRule",
        &[
            ("publicipid", &public_id),
            ("name", "web"),
            ("algorithm", "roundrobin"),
            ("publicport", "81"),
            ("privateport", "80"),
            ("openfirewall", "false"),
        ],
    );
    let lb_id = id_of(&lb, "loadbalancer");
    job(
        "assignToLoadBalancerRule",
        &[("id", &lb_id), ("virtualmachineids", &vm_id)],
    );
    eventually("outside reaches web1 through the load balancer", || {
        fetch(&out, &public, 81, Some("203.0.113.2")).as_deref() == Some("web1")
    });

    // Egress follows the offering's policy (deny) and the egress rules.
    let _outside = Hypervisor::spawn(
        &out,
        &[
            "socat",
            "TCP-LISTEN:9000,reuseaddr,fork",
            "SYSTEM:echo outside",
        ],
    );
    assert_eq!(fetch(&g1, "203.0.113.1", 9000, None), None, "egress denied");
    let egress = job(
        "createEgressFirewallRule",
        &[
            ("networkid", &net_id),
            ("protocol", "tcp"),
            ("startport", "9000"),
            ("endport", "9000"),
        ],
    );
    eventually("web1 reaches outside once egress allows it", || {
        fetch(&g1, "203.0.113.1", 9000, None).as_deref() == Some("outside")
    });

    // Rules deleted: refused again.
    job(
        "deleteEgressFirewallRule",
        &[("id", &id_of(&egress, "firewallrule"))],
    );
    job(
        "deletePortForwardingRule",
        &[("id", &id_of(&pf, "portforwardingrule"))],
    );
    job("deleteLoadBalancerRule", &[("id", &lb_id)]);
    job("deleteFirewallRule", &[("id", &id_of(&fw, "firewallrule"))]);
    job(
        "deleteFirewallRule",
        &[("id", &id_of(&fw81, "firewallrule"))],
    );
    assert_eq!(fetch(&out, &public, 8080, Some("198.51.100.1")), None);
    assert_eq!(fetch(&out, &public, 81, Some("203.0.113.2")), None);
    assert_eq!(fetch(&g1, "203.0.113.1", 9000, None), None);

    // destroyVirtualMachine: the router's DHCP drops the guest's static lease; the network's
    // deletion then takes the router's DHCP state (its lease database too) with it.
    let router_state = dir.path().join("agent-data").join("routers").join(&router);
    let dnsmasq = sys::dnsmasq::DnsmasqFiles::new(router_state.join("dnsmasq"));
    let leases_hold_mac = || {
        std::fs::read_to_string(dnsmasq.dhcp_hosts())
            .map(|t| t.to_lowercase().contains(mac))
            .unwrap_or(false)
    };
    assert!(leases_hold_mac(), "the router's DHCP never knew {mac}");
    let granted = std::fs::read_to_string(dnsmasq.leases()).unwrap_or_default();
    assert!(
        granted.contains(mac),
        "no lease granted to {mac}: {granted:?}"
    );
    job(
        "destroyVirtualMachine",
        &[("id", &vm_id), ("expunge", "true")],
    );
    eventually("the router's DHCP forgets the destroyed VM", || {
        !leases_hold_mac()
    });
    // The hypervisor unplugs the destroyed guest; deleteNetwork then leaves no router,
    // bridge or VLAN port behind.
    hv.unplug("g1");
    job("deleteNetwork", &[("id", &net_id)]);
    eventually("the router's namespace goes", || {
        hv.router_namespaces().is_empty()
    });
    eventually("the network's bridge goes", || {
        !hv.links().contains(&bridge)
    });
    assert!(
        !router_state.exists(),
        "the router's state (and leases) stayed"
    );
    // The host provides trunk0.100 (vlan_interfaces = existing): it stays, in no bridge.
    let vlan_link = Hypervisor::output(
        &hv.netns(),
        &["ip", "-o", "link", "show", &vlan_link_name(TRUNK, 100)],
    );
    let vlan_link = String::from_utf8_lossy(&vlan_link.stdout);
    assert!(
        !vlan_link.is_empty() && !vlan_link.contains("master"),
        "{vlan_link}"
    );
    let links = hv.links();
    assert!(
        !links
            .iter()
            .any(|l| l.starts_with("vp") || l.starts_with("vg")),
        "{links:?}"
    );
    assert!(!agent.log().contains("ERROR"), "{}", agent.log());
    assert_nothing_here(&hv, &[&router], &[100]);
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn a_guest_the_agent_boots_gets_its_lease_from_the_router_and_is_reached_from_outside() {
    let built = test_support::guest_image::build().expect("build the guest image");
    let dir = TempDir::new().expect("temp dir");
    let hv = Hypervisor::new();
    hv.provide_vlan(100);
    let (_server, endpoint) = vlan_server(&hv, dir.path(), "100-101");
    let server = crate::procs::base(&endpoint);
    let admin = crate::procs::Admin::new(&endpoint);
    let token_file = dir.path().join("token");
    hv.in_netns(|| admin.token("hv1", &token_file));
    // The file says `external`; the flag wins: QEMU run by the agent boots the guests.
    let agent = host_agent_with(
        &hv,
        dir.path(),
        "agent",
        &server,
        &token_file,
        PUBLIC_BRIDGE,
        &["--vm-driver", "qemu"],
    );
    hv.in_netns(|| admin.until("host hv1 is Up", |a| a.host_up("hv1")));
    let hv_ns = hv.netns();
    let api = |cmd: &str, params: &[(&str, &str)]| in_netns(&hv_ns, || admin.call(cmd, params));
    let job = |cmd: &str, params: &[(&str, &str)]| in_netns(&hv_ns, || admin.run(cmd, params));
    let first = |cmd: &str, list: &str, params: &[(&str, &str)]| {
        api(cmd, params)[list][0]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no {list}"))
            .to_string()
    };
    let zone = first("listZones", "zone", &[]);
    let kernel = format!("file://{}", built.kernel.display());
    let initrd = format!("file://{}", built.initrd.display());
    let template = api(
        "registerTemplate",
        &[
            ("zoneid", &zone),
            ("name", "testguest"),
            ("url", &kernel),
            ("format", "RAW"),
            ("details[0].initrd", &initrd),
            ("details[0].cmdline", &built.cmdline),
        ],
    )["template"][0]["id"]
        .as_str()
        .expect("template id")
        .to_string();
    let offering = first("listNetworkOfferings", "networkoffering", &[]);
    let net = api(
        "createNetwork",
        &[
            ("name", "booted"),
            ("displaytext", "booted"),
            ("networkofferingid", &offering),
            ("zoneid", &zone),
            ("gateway", "10.1.1.1"),
            ("netmask", "255.255.255.0"),
        ],
    );
    let net_id = id_of(&net, "network");
    let bridge = bridge_name(TRUNK, 100);
    let mac = "52:54:00:4e:17:0b";
    let vm = job(
        "deployVirtualMachine",
        &[
            ("zoneid", &zone),
            (
                "serviceofferingid",
                &first("listServiceOfferings", "serviceoffering", &[]),
            ),
            ("templateid", &template),
            ("networkids", &net_id),
            ("ipaddress", "10.1.1.11"),
            ("macaddress", mac),
            ("name", "booted1"),
        ],
    );
    let vm_id = id_of(&vm, "virtualmachine");
    let guests = dir.path().join("agent-data").join("guests");
    let serial = || -> String {
        std::fs::read_dir(&guests)
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| {
                        std::fs::read_to_string(e.path().join("serial.log")).unwrap_or_default()
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let marker = format!("{}10.1.1.11", test_support::guest_image::MARKER);
    assert!(
        wait_until(Instant::now() + Duration::from_secs(120), || serial()
            .contains(&marker)),
        "the guest never got its lease from the router; serial console:\n{}\nagent:\n{}",
        serial(),
        agent.tail()
    );
    let ports = hv.links();
    assert!(
        ports.iter().any(|l| l.starts_with("gq")),
        "no guest tap: {ports:?}"
    );

    // From outside, through a port forward, to the guest's own HTTP server.
    let ips = api("listPublicIpAddresses", &[("associatednetworkid", &net_id)]);
    let public = ips["publicipaddress"][0]["ipaddress"]
        .as_str()
        .expect("address")
        .to_string();
    let public_id = ips["publicipaddress"][0]["id"]
        .as_str()
        .expect("its id")
        .to_string();
    job(
        "createPortForwardingRule",
        &[
            ("ipaddressid", &public_id),
            ("protocol", "tcp"),
            ("publicport", "8080"),
            ("privateport", "80"),
            ("virtualmachineid", &vm_id),
        ],
    );
    let out = hv.outside();
    let url = format!("http://{public}:8080/");
    let mut page = String::new();
    assert!(
        wait_until(Instant::now() + Duration::from_secs(30), || {
            let got = Hypervisor::output(&out, &["curl", "-s", "-m", "3", &url]);
            page = String::from_utf8_lossy(&got.stdout).into_owned();
            page.contains("10.1.1.11")
        }),
        "{url} never answered with the guest's page: {page:?}"
    );

    // The VM and the network go: no guest, tap, router or bridge is left.
    job(
        "destroyVirtualMachine",
        &[("id", &vm_id), ("expunge", "true")],
    );
    eventually("the guest's tap goes", || {
        !hv.links().iter().any(|l| l.starts_with("gq"))
    });
    job("deleteNetwork", &[("id", &net_id)]);
    eventually("the router's namespace goes", || {
        hv.router_namespaces().is_empty()
    });
    eventually("the network's bridge goes", || {
        !hv.links().contains(&bridge)
    });
}
