//! A small management network of network namespaces, so a test can run management servers and
//! agents as separate processes and cut any of them off by taking its link down.
//!
//! One namespace holds a switch (bridge `br0`); every member gets its own namespace, joined to
//! the switch by a veth pair: `eth0` on the member's side, `p<i>` on the switch's side. Member
//! `i` (in the order given) has address `198.51.100.<10+i>/24` on its `eth0`. Nothing is
//! connected to the host's own namespace: the network is closed.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use sys::cmd::{Child, ExitStatus, Stdio};

/// The device of every member on the management network.
pub const DEV: &str = "eth0";

/// The bridge in the switch namespace.
const BRIDGE: &str = "br0";

/// How long processes in a namespace get after SIGTERM (and again after SIGKILL) on drop.
const GRACE: Duration = Duration::from_secs(2);

/// How long [`MgmtNet::spawn`] waits for its child to enter the namespace.
const ENTER_DEADLINE: Duration = Duration::from_secs(10);

/// At most this many members: their addresses run from .10 up to .254.
const MAX_MEMBERS: usize = 245;

/// Tells networks made by one test process apart.
static NETWORKS: AtomicU32 = AtomicU32::new(0);

/// A management network of namespaces; every process in its namespaces is ended and the
/// namespaces are deleted on drop, also when the test panics.
#[derive(Debug)]
pub struct MgmtNet {
    switch: String,
    /// `(member name, namespace)`, in the order given; index `i` has address `.10+i`.
    members: Vec<(String, String)>,
    /// Every namespace made so far, the switch first; what drop deletes.
    made: Vec<String>,
}

impl MgmtNet {
    /// Makes the switch and one namespace per member (names such as `srv-a`, `agent-1`,
    /// `client`: letters, digits, `-` and `_`), each joined to the switch with its address on
    /// `eth0`, every link and loopback up.
    ///
    /// # Panics
    /// If a member name is empty, not of those characters or given twice, if there are more than
    /// 245 members, or if a namespace or link cannot be made.
    pub fn new(members: &[&str]) -> MgmtNet {
        assert!(
            members.len() <= MAX_MEMBERS,
            "at most {MAX_MEMBERS} members"
        );
        for (i, m) in members.iter().enumerate() {
            assert!(
                !m.is_empty()
                    && m.len() <= 32
                    && m.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
                "member name {m:?}: use 1 to 32 letters, digits, '-' or '_'"
            );
            assert!(!members[..i].contains(m), "member {m:?} given twice");
        }
        let n = NETWORKS.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("gnt{}-{n}", std::process::id());
        let mut net = MgmtNet {
            // Member namespaces all have a `-<member>` suffix, the switch has none: no clash.
            switch: prefix.clone(),
            members: members
                .iter()
                .map(|m| (m.to_string(), format!("{prefix}-{m}")))
                .collect(),
            made: Vec::new(),
        };
        // From here on, a panic drops `net`, which deletes whatever was made.
        let switch = net.switch.clone();
        net.make_namespace(&switch);
        sys::netns::add_bridge(&switch, BRIDGE).expect("add the bridge");
        for (i, (_, ns)) in net.members.clone().iter().enumerate() {
            net.make_namespace(ns);
            let port = format!("p{i}");
            sys::netns::add_veth(ns, DEV, &switch, &port).expect("add a veth pair");
            sys::netns::attach(&switch, &port, BRIDGE).expect("attach to the bridge");
            sys::netns::add_address(ns, DEV, &format!("{}/24", address(i)))
                .expect("add the member's address");
            sys::netns::set_up(ns, DEV).expect("bring eth0 up");
        }
        net
    }

    /// The address of `member` on the management network.
    ///
    /// # Panics
    /// If `member` is not one of the network's members.
    pub fn addr(&self, member: &str) -> Ipv4Addr {
        address(self.index(member))
    }

    /// The name of `member`'s network namespace (for `ip -n`, `nsenter --net=/run/netns/…`).
    ///
    /// # Panics
    /// If `member` is not one of the network's members.
    pub fn netns(&self, member: &str) -> &str {
        &self.members[self.index(member)].1
    }

    /// Starts `program args…` inside `member`'s namespace, with standard input from
    /// `/dev/null` and standard output and error appended to `log` (created if missing).
    /// Returns once the child is inside the namespace (or has already ended). The caller owns
    /// the child; [`kill9`] ends one, and drop ends any that are left.
    ///
    /// # Panics
    /// If `log` cannot be opened, or the program cannot be started or does not get into the
    /// namespace within 10 s.
    pub fn spawn<I, S>(
        &self,
        member: &str,
        program: impl AsRef<OsStr>,
        args: I,
        log: &Path,
    ) -> Child
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let program = program.as_ref();
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", log.display()));
        let err = out.try_clone().expect("duplicate the log file");
        let mut child = sys::netns::command_in(self.netns(member), program, args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program:?} in {member}: {e}"));
        // Until `nsenter` has switched, the child is not among the namespace's processes, and a
        // drop then would miss it; so return only once it is inside (or has ended already).
        let ns = namespace_id(&sys::netns::path(self.netns(member)));
        let pid = i32::try_from(child.id()).unwrap_or(i32::MAX);
        let deadline = Instant::now() + ENTER_DEADLINE;
        loop {
            if sys::proc::net_namespace(pid) == Some(ns) {
                break;
            }
            if child.try_wait().expect("check on the child").is_some() {
                break;
            }
            if Instant::now() >= deadline {
                kill9(&mut child);
                panic!("{program:?} did not enter the namespace of {member}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        child
    }

    /// Takes `member`'s `eth0` down: it is cut off the management network, while its processes
    /// keep running.
    ///
    /// # Panics
    /// If `ip` refuses.
    pub fn link_down(&self, member: &str) {
        self.set_link(member, "down");
    }

    /// Brings `member`'s `eth0` up again (its address and route come back with it).
    ///
    /// # Panics
    /// If `ip` refuses.
    pub fn link_up(&self, member: &str) {
        self.set_link(member, "up");
    }

    /// Runs `f` on a fresh thread that has entered `member`'s network namespace, and returns
    /// its result (a panic in `f` goes on in the caller). Sockets made in `f` belong to the
    /// namespace, also after `f` returns. A tokio runtime built inside `f` keeps its threads
    /// there too, since new threads start in the namespace of the thread that makes them.
    ///
    /// # Panics
    /// If the namespace cannot be entered, or if `f` panics.
    pub fn in_netns<T: Send>(&self, member: &str, f: impl FnOnce() -> T + Send) -> T {
        let path = sys::netns::path(self.netns(member));
        std::thread::scope(|s| {
            let thread = s.spawn(move || {
                let ns = File::open(&path)
                    .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .unwrap_or_else(|e| panic!("cannot enter {}: {e}", path.display()));
                drop(ns);
                f()
            });
            thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    fn index(&self, member: &str) -> usize {
        self.members
            .iter()
            .position(|(m, _)| m == member)
            .unwrap_or_else(|| panic!("{member:?} is not a member of this network"))
    }

    fn set_link(&self, member: &str, state: &str) {
        let ns = self.netns(member);
        sys::cmd::run("ip", &["-n", ns, "link", "set", DEV, state], None)
            .unwrap_or_else(|e| panic!("cannot set {DEV} of {member} {state}: {e}"));
    }

    /// Creates namespace `ns` (loopback up) and records it for drop. A namespace of that name
    /// can only be left by an earlier process with our pid that died before its drop ran: that
    /// one is ended and replaced.
    fn make_namespace(&mut self, ns: &str) {
        if sys::netns::exists(ns) {
            remove_namespace(ns);
        }
        sys::netns::add(ns).unwrap_or_else(|e| panic!("cannot add namespace {ns}: {e}"));
        self.made.push(ns.to_string());
    }
}

impl Drop for MgmtNet {
    fn drop(&mut self) {
        // Members first, so nothing is left talking when the switch goes.
        for ns in self.made.iter().rev() {
            remove_namespace(ns);
        }
    }
}

/// Ends the processes in `ns` and deletes it, reporting (not panicking on) what fails.
fn remove_namespace(ns: &str) {
    if let Err(e) = sys::netns::remove(ns, GRACE) {
        eprintln!("MgmtNet: removing namespace {ns}: {e}");
    }
}

/// What identifies the network namespace that `path` (a `/run/netns` file or a
/// `/proc/<pid>/ns/net` link) stands for.
fn namespace_id(path: &Path) -> sys::proc::FileId {
    sys::proc::file_id(path).unwrap_or_else(|| panic!("cannot stat {}", path.display()))
}

/// The address of member number `i`.
fn address(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(
        198,
        51,
        100,
        10 + u8::try_from(i).expect("fewer than 246 members"),
    )
}

/// Ends `child` with SIGKILL and reaps it; returns how it ended (an exit status if it had
/// already exited by itself).
pub fn kill9(child: &mut Child) -> ExitStatus {
    child.kill_and_wait().expect("wait for the killed child")
}

#[cfg(test)]
mod self_tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    /// Polling bound for things that normally take milliseconds.
    const DEADLINE: Duration = Duration::from_secs(5);

    fn ping(net: &MgmtNet, from: &str, to: &str) -> bool {
        sys::netns::command_in(
            net.netns(from),
            "ping",
            ["-c1", "-W1", &net.addr(to).to_string()],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run ping")
        .success()
    }

    /// Polls `check` until it holds or [`DEADLINE`] passes; whether it held.
    fn eventually(check: impl FnMut() -> bool) -> bool {
        crate::wait_until(Instant::now() + DEADLINE, check)
    }

    #[test]
    #[ignore = "needs root and network namespaces: run by cargo xtask test"]
    fn members_reach_each_other_until_a_link_goes_down() {
        let net = MgmtNet::new(&["a", "b"]);
        assert_eq!(net.addr("a"), Ipv4Addr::new(198, 51, 100, 10));
        assert_eq!(net.addr("b"), Ipv4Addr::new(198, 51, 100, 11));
        let namespaces = [net.netns("a").to_string(), net.netns("b").to_string()];
        for ns in &namespaces {
            assert!(sys::netns::exists(ns), "{ns} missing");
        }
        assert!(!sys::netns::list().expect("list").is_empty());

        assert!(eventually(|| ping(&net, "a", "b")), "a cannot reach b");
        net.link_down("a");
        assert!(
            eventually(|| !ping(&net, "a", "b")),
            "a reaches b with its link down"
        );
        assert!(!ping(&net, "b", "a"), "b reaches a with a's link down");
        net.link_up("a");
        assert!(
            eventually(|| ping(&net, "a", "b")),
            "a cannot reach b after link up"
        );

        // In b's namespace we own b's address; in a's we do not.
        let listener = net.in_netns("b", || {
            TcpListener::bind((net.addr("b"), 0)).expect("bind b's address inside b")
        });
        assert!(
            net.in_netns("a", || TcpListener::bind((net.addr("b"), 0)))
                .is_err(),
            "b's address is bindable inside a"
        );
        // The listener stays in b's namespace; a connects to it over the switch.
        let to = listener.local_addr().expect("local address");
        let server = std::thread::spawn(move || {
            let (mut conn, peer) = listener.accept().expect("accept");
            let mut got = String::new();
            conn.read_to_string(&mut got).expect("read");
            (peer, got)
        });
        net.in_netns("a", || {
            let mut conn = TcpStream::connect_timeout(&to, DEADLINE).expect("connect from a to b");
            conn.write_all(b"hello").expect("write");
        });
        let (peer, got) = server.join().expect("server thread");
        assert_eq!(got, "hello");
        assert_eq!(peer.ip(), net.addr("a"));

        drop(net);
        for ns in &namespaces {
            assert!(!sys::netns::exists(ns), "{ns} outlived the network");
        }
    }

    #[test]
    #[ignore = "needs root and network namespaces: run by cargo xtask test"]
    fn spawned_processes_log_and_end() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let log = dir.path().join("out.log");
        std::fs::write(&log, "before\n").expect("seed the log");
        let net = MgmtNet::new(&["srv-a", "client"]);

        let mut said = net.spawn(
            "srv-a",
            "sh",
            ["-c", "ip -br -4 addr show eth0; echo to-stderr >&2"],
            &log,
        );
        assert!(said.wait().expect("wait").success());
        let text = std::fs::read_to_string(&log).expect("read the log");
        assert!(
            text.starts_with("before\n"),
            "the log was not appended to: {text}"
        );
        assert!(text.contains("198.51.100.10/24"), "{text}");
        assert!(text.contains("to-stderr"), "{text}");

        let mut sleeper = net.spawn("srv-a", "sleep", ["600"], &log);
        let ns = net.netns("srv-a").to_string();
        // spawn returns with the child inside: no waiting needed.
        let pid = i32::try_from(sleeper.id()).expect("pid");
        assert!(
            sys::netns::pids(&ns).expect("pids").contains(&pid),
            "process {pid} is not in {ns}"
        );
        assert_eq!(kill9(&mut sleeper).signal(), Some(9));

        // Whatever the caller leaves running is ended by drop.
        let mut left = net.spawn("client", "sleep", ["600"], &log);
        drop(net);
        let deadline = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(status) = left.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() >= deadline {
                kill9(&mut left);
                panic!("drop left a process running");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(!status.success(), "{status:?}");
        assert!(!sys::netns::exists(&ns));
    }
}
