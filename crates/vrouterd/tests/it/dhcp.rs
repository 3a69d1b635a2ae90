//! DHCP and DNS served by the router's dnsmasq to guests plugged into the lab's guest bridge,
//! each a namespace with a chosen MAC and no address that asks with busybox `udhcpc`; names
//! resolved with busybox `nslookup`; and gratuitous ARP for a public IP the router takes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sys::cmd::{Child, Output};
use vrouterd::serve::status_of;
use vrouterd::{chain, ApplyOutcome};

use crate::support::*;

/// The upstream DNS server the router forwards to: a dnsmasq on the outside host.
const UPSTREAM: &str = OUTSIDE;
/// The name the upstream answers, and its answer.
const EXTERNAL_NAME: &str = "ext.example.test";
const EXTERNAL_ADDRESS: &str = "198.51.100.7";
const DOMAIN: &str = "guests.example";

const MAC_A: &str = "02:00:00:00:aa:01";
const IP_A: &str = "10.1.1.50";
const MAC_B: &str = "02:00:00:00:aa:02";
const IP_B: &str = "10.1.1.51";
/// A MAC no lease names.
const MAC_X: &str = "02:00:00:00:aa:09";

/// How long a query that must fail may take before it is called unanswered.
const UNANSWERED_S: &str = "4";

/// The udhcpc script: records every event with what the server said, and applies a lease's
/// address and default route to the interface.
const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
echo "$1 ip=$ip mask=$mask router=$router dns=$dns domain=$domain" >> "$(dirname "$0")/events"
case "$1" in
    deconfig) ip -4 addr flush dev "$interface" ;;
    bound|renew)
        ip addr replace "$ip/$mask" dev "$interface"
        ip route replace default via "$router" dev "$interface"
        ;;
esac
exit 0
"#;

fn lease(mac: &str, ip: &str, hostname: &str) -> Value {
    json!({ "mac": mac, "ip": ip, "hostname": hostname })
}

fn service(leases: &[Value]) -> Value {
    json!({ "dns_servers": [UPSTREAM], "domain": DOMAIN, "leases": leases })
}

/// A guest: a namespace with `eth0` (chosen MAC, no address) on the lab's guest bridge of
/// `net1`, and a directory with its udhcpc script. Removed when dropped, also on failure.
struct Guest {
    netns: String,
    dir: lab::TempDir,
    /// A udhcpc left running (to renew), killed when dropped.
    client: Option<Child>,
}

static GUESTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Guest {
    fn plug(net: &Net, mac: &str) -> Guest {
        let n = GUESTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let lab = net.lab();
        let netns = format!("{}-dg{n}", lab.id());
        let port = format!("dg{n}");
        let dir = lab::TempDir::new().expect("temp dir");
        sys::netns::add(&netns).expect("guest namespace");
        // From here on the guard removes the namespace, and the veth with it.
        let guest = Guest {
            netns,
            dir,
            client: None,
        };
        let sw = &lab.namespaces().switch;
        let bridge = lab.guest_bridge("net1").expect("guest bridge of net1");
        sys::netns::add_veth(sw, &port, &guest.netns, "eth0").expect("veth");
        sys::netns::attach(sw, &port, &bridge).expect("attach to the guest bridge");
        guest.ip(&["link", "set", "eth0", "address", mac]);
        sys::netns::set_up(&guest.netns, "eth0").expect("eth0 up");
        let script = guest.script();
        std::fs::write(&script, UDHCPC_SCRIPT).expect("write the udhcpc script");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
            .expect("make the script executable");
        guest
    }

    fn script(&self) -> PathBuf {
        self.dir.path().join("udhcpc.sh")
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        sys::netns::command_in(&self.netns, program, args)
            .output()
            .unwrap_or_else(|e| panic!("{program} {args:?} in {}: {e}", self.netns))
    }

    fn ip(&self, args: &[&str]) -> Output {
        let out = self.run("ip", args);
        assert!(out.status.success(), "ip {args:?}: {out:?}");
        out
    }

    /// What the script recorded, one event per line.
    fn events(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("events"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn udhcpc_args(script: &Path, once: bool) -> Vec<String> {
        let mut args = vec!["udhcpc", "-f", "-i", "eth0", "-t", "3", "-T", "1"];
        if once {
            // Quit with the lease, or fail when three discovers got no offer.
            args.extend(["-q", "-n"]);
        }
        args.push("-s");
        let mut args: Vec<String> = args.into_iter().map(str::to_string).collect();
        args.push(script.display().to_string());
        args
    }

    /// One DHCP exchange: whether a lease was bound.
    fn ask_once(&self) -> bool {
        let args = Self::udhcpc_args(&self.script(), true);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.run("busybox", &refs);
        let bound = self.events().iter().any(|e| e.starts_with("bound "));
        assert_eq!(out.status.success(), bound, "udhcpc: {out:?}");
        bound
    }

    /// Starts a udhcpc that keeps its lease (and renews it on SIGUSR1), and waits until bound.
    fn keep_lease(&mut self) {
        let args = Self::udhcpc_args(&self.script(), false);
        let child = sys::netns::command_in(&self.netns, "busybox", &args)
            .stdout(sys::cmd::Stdio::null())
            .stderr(sys::cmd::Stdio::null())
            .spawn()
            .expect("start udhcpc");
        self.client = Some(child);
        wait_for("a lease bound", || {
            self.events().iter().any(|e| e.starts_with("bound "))
        });
    }

    /// Makes the running udhcpc renew its lease, and waits until the server confirmed it.
    fn renew(&self) -> String {
        let before = self.count("renew ");
        let client = self.client.as_ref().expect("a running udhcpc");
        client
            .signal(sys::cmd::Signal::SIGUSR1)
            .expect("signal udhcpc to renew");
        wait_for("the lease renewed", || self.count("renew ") > before);
        self.events()
            .into_iter()
            .rev()
            .find(|e| e.starts_with("renew "))
            .unwrap_or_default()
    }

    fn count(&self, event: &str) -> usize {
        self.events()
            .iter()
            .filter(|e| e.starts_with(event))
            .count()
    }

    fn has_address(&self, ip: &str) -> bool {
        let out = self.ip(&["-4", "-o", "addr", "show", "dev", "eth0"]);
        String::from_utf8_lossy(&out.stdout).contains(&format!(" {ip}/24 "))
    }

    /// `nslookup NAME SERVER` from the guest: the addresses answered, empty when none.
    fn lookup(&self, name: &str, server: &str) -> Vec<String> {
        addresses(&self.run(
            "timeout",
            &[UNANSWERED_S, "busybox", "nslookup", name, server],
        ))
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        if let Some(mut c) = self.client.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Err(e) = sys::netns::remove(&self.netns, Duration::from_secs(2)) {
            eprintln!("cannot remove guest namespace {}: {e}", self.netns);
        }
    }
}

/// The addresses of busybox nslookup's answer (the lines after `Name:`). Its exit status is
/// left aside: it also asks for IPv6 addresses, which no server here has, and fails for that.
fn addresses(out: &Output) -> Vec<String> {
    let text = String::from_utf8_lossy(&out.stdout);
    let mut seen_name = false;
    let mut found = Vec::new();
    for line in text.lines() {
        if line.starts_with("Name:") {
            seen_name = true;
        } else if let (true, Some(a)) = (seen_name, line.strip_prefix("Address:")) {
            found.push(a.trim().to_string());
        }
    }
    found
}

/// Starts the upstream DNS server on the outside host and waits until it answers.
fn upstream(net: &mut Net, dir: &Path) {
    let pid = format!("--pid-file={}", dir.join("upstream.pid").display());
    let address = format!("--address=/{EXTERNAL_NAME}/{EXTERNAL_ADDRESS}");
    let listen = format!("--listen-address={UPSTREAM}");
    net.start_at(
        &outside(),
        &format!("{UPSTREAM}:53"),
        &[
            "dnsmasq",
            "--no-daemon",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            &listen,
            &address,
            &pid,
            "--user=root",
        ],
    );
    wait_for("the upstream DNS server", || {
        outside_lookup(net, EXTERNAL_NAME, UPSTREAM) == [EXTERNAL_ADDRESS]
    });
}

fn outside_lookup(net: &Net, name: &str, server: &str) -> Vec<String> {
    let out = net
        .lab()
        .exec_capture(
            &outside(),
            &["timeout", UNANSWERED_S, "busybox", "nslookup", name, server],
        )
        .expect("run nslookup on the outside host");
    addresses(&out)
}

fn dnsmasq_pid(net: &mut Net) -> i32 {
    net.router.dnsmasq_pid().expect("dnsmasq runs")
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn guests_get_their_lease_and_names_and_the_outside_gets_nothing() {
    let mut net = Net::up();
    let dir = lab::TempDir::new().expect("temp dir");
    upstream(&mut net, dir.path());
    // Egress denied, and no egress rule: DHCP and DNS are the router's own, never egress.
    let cfg = Config::new(1).egress_default("deny").dhcp(service(&[
        lease(MAC_A, IP_A, "alpha"),
        lease(MAC_B, IP_B, "beta"),
    ]));
    net.apply(&cfg);

    let a = Guest::plug(&net, MAC_A);
    assert!(a.ask_once(), "the leased MAC gets its lease");
    let bound = a
        .events()
        .into_iter()
        .find(|e| e.starts_with("bound "))
        .unwrap();
    assert_eq!(
        bound,
        format!(
            "bound ip={IP_A} mask=24 router={GUEST_GATEWAY} dns={GUEST_GATEWAY} domain={DOMAIN}"
        )
    );
    assert!(a.has_address(IP_A));

    // The guest's names, with and without the domain, and an outside name forwarded upstream.
    assert_eq!(a.lookup("beta", GUEST_GATEWAY), [IP_B]);
    assert_eq!(a.lookup(&format!("beta.{DOMAIN}"), GUEST_GATEWAY), [IP_B]);
    assert_eq!(a.lookup(EXTERNAL_NAME, GUEST_GATEWAY), [EXTERNAL_ADDRESS]);
    // A name of the guests' domain that no lease has is answered here (no such name).
    assert!(a
        .lookup(&format!("gamma.{DOMAIN}"), GUEST_GATEWAY)
        .is_empty());

    // A MAC without a lease gets nothing.
    let x = Guest::plug(&net, MAC_X);
    assert!(!x.ask_once(), "a MAC without a lease must get no address");
    assert!(
        x.events().iter().any(|e| e.starts_with("leasefail")),
        "{:?}",
        x.events()
    );
    assert!(!x.has_address(IP_A) && !x.has_address(IP_B));

    // The outside reaches neither the DNS service on the router's public IP, nor the one on the
    // guest address when it routes that address through the router's public interface.
    assert!(outside_lookup(&net, "alpha", SNAT_IP).is_empty());
    let routed = net
        .lab()
        .exec_capture(
            &outside(),
            &[
                "ip",
                "route",
                "replace",
                &format!("{GUEST_GATEWAY}/32"),
                "via",
                SNAT_IP,
            ],
        )
        .expect("route the guest address through the router");
    assert!(routed.status.success(), "{routed:?}");
    assert!(
        net.pings(&outside(), None, GUEST_GATEWAY),
        "the path itself is open"
    );
    assert!(
        outside_lookup(&net, "alpha", GUEST_GATEWAY).is_empty(),
        "DNS from the public side must be dropped"
    );
    // The same question from the guest is answered.
    assert_eq!(a.lookup("alpha", GUEST_GATEWAY), [IP_A]);

    let report = status_of(&mut net.router, false).expect("status");
    let dhcp = report.dhcp.expect("the DHCP service in status");
    assert!(dhcp.running);
    assert_eq!(dhcp.pid, net.router.dnsmasq_pid());
    assert_eq!(dhcp.leases, 2);
    assert!(dhcp.active_leases >= 1, "{dhcp:?}");

    // Removing the router's namespace ends its dnsmasq with it.
    let pid = dnsmasq_pid(&mut net);
    drop((a, x));
    drop(net);
    assert!(
        !sys::proc::is_alive(pid),
        "dnsmasq {pid} outlived its router"
    );
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn leases_change_without_a_restart_and_a_restart_adopts_dnsmasq() {
    let mut net = Net::up();
    let dir = lab::TempDir::new().expect("temp dir");
    upstream(&mut net, dir.path());
    net.apply(&Config::new(1).dhcp(service(&[lease(MAC_A, IP_A, "alpha")])));
    let pid = dnsmasq_pid(&mut net);

    let mut a = Guest::plug(&net, MAC_A);
    a.keep_lease();
    assert!(a.has_address(IP_A));
    let b = Guest::plug(&net, MAC_B);
    assert!(!b.ask_once(), "no lease for B yet");

    // A lease added by a new generation: served by the same dnsmasq, and A still renews.
    let two = service(&[lease(MAC_A, IP_A, "alpha"), lease(MAC_B, IP_B, "beta")]);
    net.apply(&Config::new(2).dhcp(two.clone()));
    assert_eq!(
        dnsmasq_pid(&mut net),
        pid,
        "a lease change must not restart dnsmasq"
    );
    assert!(b.ask_once(), "B's new lease is served");
    assert!(b.has_address(IP_B));
    assert!(a.renew().starts_with(&format!("renew ip={IP_A} ")));
    assert_eq!(a.lookup("beta", GUEST_GATEWAY), [IP_B]);

    // A restart of the router daemon adopts the running dnsmasq and leaves it alone.
    net = net.reopen();
    assert_eq!(
        net.router.dnsmasq_pid(),
        Some(pid),
        "adopted after a restart"
    );
    net.router
        .restore()
        .unwrap_or_else(|e| panic!("restore: {}", chain(&e)));
    assert_eq!(
        dnsmasq_pid(&mut net),
        pid,
        "an unchanged config leaves dnsmasq alone"
    );
    let same = net.apply(&Config::new(2).dhcp(two));
    assert_eq!(same, ApplyOutcome::Unchanged { generation: 2 });
    assert_eq!(dnsmasq_pid(&mut net), pid);
    assert!(a.renew().starts_with(&format!("renew ip={IP_A} ")));

    // A removed lease: that MAC gets no answer any more (same dnsmasq again).
    net.apply(&Config::new(3).dhcp(service(&[lease(MAC_A, IP_A, "alpha")])));
    assert_eq!(dnsmasq_pid(&mut net), pid);
    let b2 = Guest::plug(&net, MAC_B);
    assert!(!b2.ask_once(), "a removed lease must not be served");

    // New DNS servers change dnsmasq.conf: a restart, and the guests are served on.
    let no_upstream = json!({ "dns_servers": [], "domain": DOMAIN,
                              "leases": [lease(MAC_A, IP_A, "alpha")] });
    net.apply(&Config::new(4).dhcp(no_upstream));
    let restarted = dnsmasq_pid(&mut net);
    assert_ne!(restarted, pid, "a new dnsmasq.conf needs a restart");
    assert!(a.renew().starts_with(&format!("renew ip={IP_A} ")));
    assert!(
        a.lookup(EXTERNAL_NAME, GUEST_GATEWAY).is_empty(),
        "nothing upstream now"
    );

    // dnsmasq killed: the drift timer's chore starts it again.
    let pid_text = restarted.to_string();
    net.in_router(&["kill", "-9", &pid_text]);
    wait_for("dnsmasq gone", || !sys::proc::is_alive(restarted));
    assert!(net
        .router
        .tend_dhcp()
        .unwrap_or_else(|e| panic!("tend: {}", chain(&e))));
    let again = dnsmasq_pid(&mut net);
    assert_ne!(again, restarted);
    assert!(a.renew().starts_with(&format!("renew ip={IP_A} ")));
    assert!(
        !net.router.tend_dhcp().expect("tend"),
        "nothing to do while it runs"
    );

    // No DHCP section: dnsmasq stops.
    net.apply(&Config::new(5));
    assert_eq!(net.router.dnsmasq_pid(), None);
    wait_for("dnsmasq stopped", || !sys::proc::is_alive(again));
    assert!(status_of(&mut net.router, false)
        .expect("status")
        .dhcp
        .is_none());
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn a_new_public_ip_is_announced_with_gratuitous_arp() {
    let mut net = Net::up();
    net.apply(&Config::new(1));
    let ip = "203.0.113.20";
    let stale = "02:00:00:00:00:99";
    let out = net
        .lab()
        .exec_capture(
            &outside(),
            &[
                "ip", "neigh", "replace", ip, "lladdr", stale, "dev", "eth0", "nud", "stale",
            ],
        )
        .expect("plant a stale neighbour entry");
    assert!(out.status.success(), "{out:?}");
    let link = net.in_router(&["ip", "-o", "link", "show", "pub0"]);
    let link = String::from_utf8_lossy(&link.stdout).into_owned();
    let mac = link
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_else(|| panic!("no MAC in {link}"))
        .to_string();
    net.apply(&Config::new(2).public_address(ip));
    let deadline = Instant::now() + DEADLINE;
    let entry = || {
        let out = net
            .lab()
            .exec_capture(&outside(), &["ip", "neigh", "show", ip, "dev", "eth0"])
            .expect("read the outside's neighbour table");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(
        wait_until(deadline, || entry().contains(&mac)),
        "the outside still has {} for {ip}, not the router's {mac}",
        entry()
    );
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn a_dnsmasq_that_cannot_start_fails_the_apply_by_name_and_is_started_later() {
    let mut net = Net::up();
    net.apply(&Config::new(1));
    // Something else holds the router's DNS port on its guest address.
    let router = lab::Target::Router("net1".to_string());
    let at = format!("{GUEST_GATEWAY}:53");
    let hold = format!(
        "import socket, time\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.bind((\"{GUEST_GATEWAY}\", 53))\ntime.sleep(3600)\n"
    );
    net.start_at(&router, &at, &["python3", "-c", &hold]);
    wait_for("the port taken", || {
        let out = net
            .lab()
            .exec_capture(&router, &["ss", "-Hlun", "src", &at])
            .expect("run ss");
        !out.stdout.is_empty()
    });
    let cfg = Config::new(2).dhcp(service(&[lease(MAC_A, IP_A, "alpha")]));
    let err = net.try_apply(&cfg).expect_err("dnsmasq cannot bind");
    let text = chain(&err);
    assert!(
        matches!(err, vrouterd::ApplyError::Dhcp { generation: 2, .. }),
        "{text}"
    );
    assert!(text.contains("dnsmasq"), "{text}");
    // The firewall enforces the generation, and the ledger holds it.
    assert_eq!(net.router.generation(), Some(2));
    assert_eq!(net.router.dnsmasq_pid(), None);
    let report = status_of(&mut net.router, false).expect("status");
    assert_eq!(report.dhcp.map(|d| d.running), Some(false));

    // Still in the way: the chore fails again and says so.
    assert!(net.router.tend_dhcp().is_err());
    // Once the port is free, the chore starts dnsmasq and the guest gets its lease.
    net.stop_server(GUEST_GATEWAY, 53);
    let mut started = false;
    wait_for("the chore to start dnsmasq", || {
        started = net.router.tend_dhcp().unwrap_or(false);
        started
    });
    assert!(net.router.dnsmasq_pid().is_some());
    let a = Guest::plug(&net, MAC_A);
    assert!(a.ask_once());
}
