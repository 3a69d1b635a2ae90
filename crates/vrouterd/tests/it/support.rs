//! What every enforcement test needs: a lab with router `net1` operated by a [`Router`], config
//! documents, servers inside the lab's hosts, and probes that send real packets.

use std::time::{Duration, Instant};

use lab::{Lab, LabGuard, LabSpec, Target, TempDir};
use router_config::RouterConfig;
use serde_json::{json, Value};
use sys::cmd::{Child, Output};
use sys::nft::Netns;
use vrouterd::{chain, ApplyError, ApplyOutcome, Counters, Router};

/// A generous bound for things that normally take milliseconds (a server starting, a repair).
pub(crate) const DEADLINE: Duration = Duration::from_secs(10);

/// How long a probe that must get through may take: far more than it ever needs.
const PASS_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a probe that must not get through waits before calling it dropped. Every such
/// probe is paired with one that gets through on the same path, so a shorter wait cannot hide
/// a path that is simply slow.
const BLOCK_TIMEOUT: Duration = Duration::from_secs(1);

/// The router's source-NAT public IP.
pub(crate) const SNAT_IP: &str = "203.0.113.10";
/// The router's second public IP.
pub(crate) const PUBLIC_IP: &str = "203.0.113.11";
/// The router's address on the guest network.
pub(crate) const GUEST_GATEWAY: &str = "10.1.1.1";
/// VM `web1`.
pub(crate) const WEB1: &str = "10.1.1.11";
/// VM `web2`.
pub(crate) const WEB2: &str = "10.1.1.12";
/// The outside host on the public segment, also the routers' default gateway.
pub(crate) const OUTSIDE: &str = "203.0.113.1";
/// Other source addresses of the outside host: two on the public segment, three "internet" ones.
pub(crate) const SEGMENT_B: &str = "203.0.113.2";
pub(crate) const SEGMENT_C: &str = "203.0.113.3";
pub(crate) const NET_A1: &str = "198.51.100.1";
pub(crate) const NET_A2: &str = "198.51.100.2";
pub(crate) const NET_C: &str = "192.0.2.1";

/// Polls `cond` until it holds or `deadline` passes; returns whether it held.
pub(crate) fn wait_until(deadline: Instant, mut cond: impl FnMut() -> bool) -> bool {
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `cond` for up to [`DEADLINE`], panicking with `what` if it never holds.
pub(crate) fn wait_for(what: &str, cond: impl FnMut() -> bool) {
    assert!(
        wait_until(Instant::now() + DEADLINE, cond),
        "timed out after {DEADLINE:?} waiting for {what}"
    );
}

pub(crate) fn vm(name: &str) -> Target {
    Target::Vm(name.to_string())
}

pub(crate) fn outside() -> Target {
    Target::Outside
}

/// A RouterConfig document for router `net1` of the demo lab, built rule by rule.
#[derive(Debug, Clone)]
pub(crate) struct Config(Value);

fn ports(text: &str) -> Value {
    let (start, end) = text.split_once('-').unwrap_or((text, text));
    let n = |s: &str| -> u32 { s.parse().expect("ports are numbers in tests") };
    json!({ "start": n(start), "end": n(end) })
}

impl Config {
    /// Public IPs [`SNAT_IP`] (source NAT) and [`PUBLIC_IP`], guest 10.1.1.0/24, egress
    /// default `deny`, no rules.
    pub(crate) fn new(generation: u64) -> Config {
        Config(json!({
            "schema": 1,
            "generation": generation,
            "public": {
                "interface": "pub0",
                "addresses": [
                    { "ip": SNAT_IP, "prefix_len": 24, "source_nat": true },
                    { "ip": PUBLIC_IP, "prefix_len": 24 }
                ],
                "gateway": OUTSIDE
            },
            "guest": { "interface": "guest0", "cidr": "10.1.1.0/24", "gateway": GUEST_GATEWAY },
            "egress_default": "deny",
            "firewall_rules": [],
            "egress_rules": [],
            "port_forwards": []
        }))
    }

    pub(crate) fn generation(mut self, generation: u64) -> Config {
        self.0["generation"] = json!(generation);
        self
    }

    pub(crate) fn egress_default(mut self, policy: &str) -> Config {
        self.0["egress_default"] = json!(policy);
        self
    }

    /// Adds a public IP (not the source-NAT one).
    pub(crate) fn public_address(mut self, ip: &str) -> Config {
        push(
            &mut self.0["public"]["addresses"],
            json!({ "ip": ip, "prefix_len": 24 }),
        );
        self
    }

    /// Replaces the public IPs with `addresses` (ip, prefix length), the first one source NAT.
    pub(crate) fn public_addresses(mut self, addresses: &[(&str, u8)]) -> Config {
        self.0["public"]["addresses"] = addresses
            .iter()
            .enumerate()
            .map(|(i, (ip, len))| json!({ "ip": ip, "prefix_len": len, "source_nat": i == 0 }))
            .collect();
        self
    }

    /// An ingress rule for tcp or udp; `port_range` is `"80"` or `"9000-9010"`.
    pub(crate) fn firewall(
        mut self,
        id: u64,
        public_ip: &str,
        protocol: &str,
        port_range: &str,
        sources: &[&str],
    ) -> Config {
        push(
            &mut self.0["firewall_rules"],
            json!({ "id": id, "public_ip": public_ip, "protocol": protocol,
                    "ports": ports(port_range), "source_cidrs": sources }),
        );
        self
    }

    /// An ingress rule for ICMP echo requests.
    pub(crate) fn firewall_ping(mut self, id: u64, public_ip: &str, sources: &[&str]) -> Config {
        push(
            &mut self.0["firewall_rules"],
            json!({ "id": id, "public_ip": public_ip, "protocol": "icmp",
                    "icmp": { "type": 8, "code": -1 }, "source_cidrs": sources }),
        );
        self
    }

    /// An egress rule; `port_range` is empty for every port (and for icmp and all).
    pub(crate) fn egress(
        mut self,
        id: u64,
        protocol: &str,
        port_range: &str,
        sources: &[&str],
        destinations: &[&str],
    ) -> Config {
        let mut rule = json!({ "id": id, "protocol": protocol, "source_cidrs": sources,
                               "destination_cidrs": destinations });
        if !port_range.is_empty() {
            rule["ports"] = ports(port_range);
        }
        push(&mut self.0["egress_rules"], rule);
        self
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn forward(
        mut self,
        id: u64,
        public_ip: &str,
        protocol: &str,
        public_ports: &str,
        private_ports: &str,
        vm_ip: &str,
        sources: &[&str],
    ) -> Config {
        push(
            &mut self.0["port_forwards"],
            json!({ "id": id, "public_ip": public_ip, "protocol": protocol,
                    "public_ports": ports(public_ports), "private_ports": ports(private_ports),
                    "vm_ip": vm_ip, "source_cidrs": sources }),
        );
        self
    }

    /// A load-balancer rule, as its wire JSON (see docs/router-config.md "Load balancers").
    pub(crate) fn load_balancer(mut self, rule: Value) -> Config {
        if self.0.get("load_balancers").is_none() {
            self.0["load_balancers"] = json!([]);
        }
        push(&mut self.0["load_balancers"], rule);
        self
    }

    /// Adds the DHCP section (see docs/router-config.md "DHCP and DNS").
    pub(crate) fn dhcp(mut self, section: Value) -> Config {
        self.0["dhcp"] = section;
        self
    }

    /// Removes the rule `id`, whatever its kind.
    pub(crate) fn without(mut self, id: u64) -> Config {
        for list in [
            "firewall_rules",
            "egress_rules",
            "port_forwards",
            "load_balancers",
        ] {
            if let Some(rules) = self.0.get_mut(list).and_then(Value::as_array_mut) {
                rules.retain(|r| r["id"] != json!(id));
            }
        }
        self
    }

    /// Reverses the order of every rule list (the content stays the same).
    pub(crate) fn reordered(mut self) -> Config {
        for list in ["firewall_rules", "egress_rules", "port_forwards"] {
            if let Some(rules) = self.0.get_mut(list).and_then(Value::as_array_mut) {
                rules.reverse();
            }
        }
        self
    }

    pub(crate) fn doc(&self) -> RouterConfig {
        serde_json::from_value(self.0.clone()).expect("tests build well-formed documents")
    }
}

fn push(list: &mut Value, item: Value) {
    list.as_array_mut()
        .expect("invariant: rule lists are arrays")
        .push(item);
}

/// What a probe got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    /// The server answered this (its name and the client address it saw).
    Answer(String),
    /// A TCP reset or an ICMP unreachable: something answered, but no server of ours.
    Refused,
    /// Nothing came back: dropped.
    TimedOut,
    /// Anything else (a bug in the probe itself).
    Failed(String),
}

/// A process started inside the lab; killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A UDP server answering every datagram with `NAME CLIENT-IP`.
const UDP_SERVER: &str = r#"
import socket, sys
ip, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((ip, port))
while True:
    data, peer = s.recvfrom(2048)
    s.sendto(f"{name} {peer[0]}".encode(), peer)
"#;

/// A UDP client: prints the answer; exits 2 when nothing came back, 3 when refused.
const UDP_CLIENT: &str = r#"
import socket, sys
host, port, src, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
if src:
    s.bind((src, 0))
s.settimeout(timeout)
s.connect((host, port))
try:
    s.send(b"hello")
    sys.stdout.write(s.recv(2048).decode())
except socket.timeout:
    sys.exit(2)
except ConnectionRefusedError:
    sys.exit(3)
"#;

/// A lab with the demo network (router `net1`, VMs `web1` and `web2`) and the [`Router`]
/// operating `net1`, with its state in the lab's data directory.
///
/// Fields drop in order: the router (its netlink socket and ledger lock), the servers, then
/// the lab, which removes every namespace, also when a test panics.
pub(crate) struct Net {
    pub(crate) router: Router,
    /// Each server with the `ip:port` it listens on.
    servers: Vec<(String, Server)>,
    guard: LabGuard,
}

impl Net {
    pub(crate) fn up() -> Net {
        assert_eq!(lab::OUTSIDE_GATEWAY.to_string(), OUTSIDE);
        let sources: Vec<String> = lab::OUTSIDE_PUBLIC_ADDRESSES
            .iter()
            .chain(&lab::OUTSIDE_INTERNET_ADDRESSES)
            .map(ToString::to_string)
            .collect();
        for a in [SEGMENT_B, SEGMENT_C, NET_A1, NET_A2, NET_C] {
            assert!(sources.iter().any(|s| s == a), "the lab has no address {a}");
        }
        let guard = LabGuard::up_in(TempDir::new().expect("temp dir"), &LabSpec::default_demo())
            .expect("lab up");
        let netns = Netns::Named(guard.router_netns("net1").expect("router net1"));
        let router = Router::open(netns, &guard.data_dir().join("routers").join("net1"))
            .unwrap_or_else(|e| panic!("open router: {}", chain(&e)));
        Net {
            router,
            servers: Vec::new(),
            guard,
        }
    }

    pub(crate) fn lab(&self) -> &Lab {
        &self.guard
    }

    /// Drops the [`Router`] (as a restart of the router daemon would) and opens it again on the
    /// same namespace and state; what runs in the namespace is left as it is.
    pub(crate) fn reopen(self) -> Net {
        let Net {
            router,
            servers,
            guard,
        } = self;
        drop(router);
        let netns = Netns::Named(guard.router_netns("net1").expect("router net1"));
        let router = Router::open(netns, &guard.data_dir().join("routers").join("net1"))
            .unwrap_or_else(|e| panic!("open router again: {}", chain(&e)));
        Net {
            router,
            servers,
            guard,
        }
    }

    /// How many times the router's haproxy master has reloaded (`show proc`).
    pub(crate) fn haproxy_reloads(&self) -> u32 {
        let netns = Netns::Named(self.guard.router_netns("net1").expect("router net1"));
        let files = sys::haproxy::HaproxyFiles::new(
            self.guard
                .data_dir()
                .join("routers")
                .join("net1")
                .join("haproxy"),
        );
        let haproxy = sys::haproxy::Haproxy::adopt(&netns, files)
            .unwrap_or_else(|e| panic!("adopt haproxy: {}", chain(&e)))
            .expect("a running haproxy");
        haproxy.processes().expect("show proc").reloads
    }

    /// Applies `cfg`, which must be accepted.
    pub(crate) fn apply(&mut self, cfg: &Config) -> ApplyOutcome {
        self.try_apply(cfg)
            .unwrap_or_else(|e| panic!("apply refused: {}", chain(&e)))
    }

    pub(crate) fn try_apply(&mut self, cfg: &Config) -> Result<ApplyOutcome, ApplyError> {
        self.router.apply_document(cfg.doc())
    }

    pub(crate) fn counters(&self) -> Counters {
        self.router
            .counters()
            .unwrap_or_else(|e| panic!("counters: {}", chain(&e)))
    }

    /// Runs `argv` in the router's namespace; it must succeed.
    pub(crate) fn in_router(&self, argv: &[&str]) -> Output {
        let out = self
            .lab()
            .exec_capture(&Target::Router("net1".to_string()), argv)
            .expect("run in the router namespace");
        assert!(out.status.success(), "{argv:?}: {out:?}");
        out
    }

    fn start(&mut self, host: &Target, argv: &[&str]) {
        self.start_at(host, "", argv);
    }

    /// Starts `argv` in `host` as a server listening on `at` (`ip:port`), which
    /// [`Net::stop_server`] names; it is killed when the lab goes down.
    pub(crate) fn start_at(&mut self, host: &Target, at: &str, argv: &[&str]) {
        let child = self.lab().spawn(host, argv).expect("start a server");
        self.servers.push((at.to_string(), Server(child)));
    }

    /// Kills the servers started on `ip:port`.
    pub(crate) fn stop_server(&mut self, ip: &str, port: u16) {
        let at = format!("{ip}:{port}");
        self.servers.retain(|(a, _)| *a != at);
    }

    /// Starts an HTTP server `name` on `ip:port` in `host` and waits until it answers there.
    /// `ip` 0.0.0.0 listens on every address.
    pub(crate) fn http_server(&mut self, host: &Target, ip: &str, port: u16, name: &str) {
        let port_text = port.to_string();
        self.start_at(
            host,
            &format!("{ip}:{port}"),
            &[
                "python3",
                "-c",
                lab::WHOAMI_HTTP_SERVER,
                ip,
                &port_text,
                name,
            ],
        );
        let local = if ip == "0.0.0.0" { "127.0.0.1" } else { ip };
        wait_for(&format!("http server {name} on {ip}:{port}"), || {
            matches!(
                http_get_within(self.lab(), host, None, local, port, BLOCK_TIMEOUT),
                Reply::Answer(_)
            )
        });
    }

    /// Starts a UDP server `name` on `ip:port` in `host` and waits until it answers there.
    pub(crate) fn udp_server(&mut self, host: &Target, ip: &str, port: u16, name: &str) {
        let port_text = port.to_string();
        self.start(host, &["python3", "-c", UDP_SERVER, ip, &port_text, name]);
        let local = if ip == "0.0.0.0" { "127.0.0.1" } else { ip };
        wait_for(&format!("udp server {name} on {ip}:{port}"), || {
            matches!(
                udp_ask_within(self.lab(), host, None, local, port, BLOCK_TIMEOUT),
                Reply::Answer(_)
            )
        });
    }

    /// One HTTP GET from `from` (from address `src` if given) to `ip:port`, waiting as long as
    /// a probe that must pass may take.
    pub(crate) fn http_get(&self, from: &Target, src: Option<&str>, ip: &str, port: u16) -> Reply {
        http_get_within(self.lab(), from, src, ip, port, PASS_TIMEOUT)
    }

    /// One HTTP GET that is expected to get no answer: waits only [`BLOCK_TIMEOUT`].
    pub(crate) fn http_get_short(
        &self,
        from: &Target,
        src: Option<&str>,
        ip: &str,
        port: u16,
    ) -> Reply {
        http_get_within(self.lab(), from, src, ip, port, BLOCK_TIMEOUT)
    }

    /// One UDP question, as [`Net::http_get`].
    pub(crate) fn udp_ask(&self, from: &Target, src: Option<&str>, ip: &str, port: u16) -> Reply {
        udp_ask_within(self.lab(), from, src, ip, port, PASS_TIMEOUT)
    }

    /// One UDP question that is expected to get no answer, as [`Net::http_get_short`].
    pub(crate) fn udp_ask_short(
        &self,
        from: &Target,
        src: Option<&str>,
        ip: &str,
        port: u16,
    ) -> Reply {
        udp_ask_within(self.lab(), from, src, ip, port, BLOCK_TIMEOUT)
    }

    /// Whether one echo request from `from` (from `src` if given) to `ip` is answered.
    pub(crate) fn pings(&self, from: &Target, src: Option<&str>, ip: &str) -> bool {
        ping_within(self.lab(), from, src, ip, PASS_TIMEOUT)
    }

    /// Like [`Net::pings`], for a ping expected to get no answer.
    pub(crate) fn pings_short(&self, from: &Target, src: Option<&str>, ip: &str) -> bool {
        ping_within(self.lab(), from, src, ip, BLOCK_TIMEOUT)
    }
}

fn secs(d: Duration) -> String {
    format!("{}", d.as_secs_f64())
}

fn http_get_within(
    lab: &Lab,
    from: &Target,
    src: Option<&str>,
    ip: &str,
    port: u16,
    timeout: Duration,
) -> Reply {
    let url = format!("http://{ip}:{port}/");
    let connect = secs(timeout);
    let total = secs(timeout * 2);
    let mut argv = vec![
        "curl",
        "-sS",
        "--noproxy",
        "*",
        "--connect-timeout",
        &connect,
        "--max-time",
        &total,
    ];
    if let Some(src) = src {
        argv.extend(["--interface", src]);
    }
    argv.push(&url);
    let out = lab.exec_capture(from, &argv).expect("run curl");
    match out.status.code() {
        Some(0) => Reply::Answer(String::from_utf8_lossy(&out.stdout).into_owned()),
        Some(7) => Reply::Refused,
        Some(28) => Reply::TimedOut,
        _ => Reply::Failed(format!("{argv:?}: {out:?}")),
    }
}

fn udp_ask_within(
    lab: &Lab,
    from: &Target,
    src: Option<&str>,
    ip: &str,
    port: u16,
    timeout: Duration,
) -> Reply {
    let port = port.to_string();
    let wait = secs(timeout);
    let argv = [
        "python3",
        "-c",
        UDP_CLIENT,
        ip,
        &port,
        src.unwrap_or(""),
        &wait,
    ];
    let out = lab.exec_capture(from, &argv).expect("run the udp client");
    match out.status.code() {
        Some(0) => Reply::Answer(String::from_utf8_lossy(&out.stdout).into_owned()),
        Some(2) => Reply::TimedOut,
        Some(3) => Reply::Refused,
        _ => Reply::Failed(format!("udp {ip}:{port} from {from}: {out:?}")),
    }
}

fn ping_within(lab: &Lab, from: &Target, src: Option<&str>, ip: &str, timeout: Duration) -> bool {
    let wait = timeout.as_secs().max(1).to_string();
    let mut argv = vec!["ping", "-c1", "-W", &wait];
    if let Some(src) = src {
        argv.extend(["-I", src]);
    }
    argv.push(ip);
    lab.exec_capture(from, &argv)
        .expect("run ping")
        .status
        .success()
}

/// The answer a whoami server gives: its name and the client address it saw.
pub(crate) fn answer(name: &str, client: &str) -> Reply {
    Reply::Answer(format!("{name} {client}"))
}
