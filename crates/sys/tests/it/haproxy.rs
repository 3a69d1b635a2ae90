//! A real haproxy 2.6 in a throwaway network namespace: start, adopt, runtime API, reload, stop.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use sys::cmd::{Child, Stdio};
use sys::haproxy::{self, Haproxy, HaproxyError, HaproxyFiles};
use sys::nft::Netns;

/// A correctness bound for every wait, not a figure.
const DEADLINE: Duration = Duration::from_secs(20);

/// A namespace with lo up, a directory for haproxy's files, and the processes started in it; all
/// removed on drop, also when the test fails.
struct Lab {
    name: String,
    dir: PathBuf,
    children: Vec<Child>,
}

impl Lab {
    fn new(tag: &str) -> Self {
        let name = format!("gnhx-{tag}-{}", std::process::id());
        let dir = std::env::temp_dir().join(&name);
        // Leftovers of an earlier, killed run.
        let _ = sys::netns::end_processes(&name, Duration::from_secs(2));
        let _ = sys::netns::delete(&name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("make the haproxy directory");
        sys::netns::add(&name).expect("make the namespace");
        Self {
            name,
            dir,
            children: Vec::new(),
        }
    }

    fn netns(&self) -> Netns {
        Netns::Named(self.name.clone())
    }

    fn files(&self) -> HaproxyFiles {
        HaproxyFiles::new(&self.dir)
    }

    /// Writes `haproxy.cfg`: the router's `global` section as `render` renders it, tcp defaults,
    /// then `body`.
    fn write_config(&self, body: &str) {
        let global = render::haproxy::Global {
            stats_socket: self.files().stats_socket(),
            hard_stop_after: Duration::from_secs(10),
        };
        let text = format!(
            "global\n{}\ndefaults\n    mode tcp\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n\n{body}",
            render::haproxy::render_global(&global)
        );
        std::fs::write(self.files().config(), text).expect("write haproxy.cfg");
    }

    /// Starts an echo server on 127.0.0.1:`port` inside the namespace that answers every read
    /// with `tag:` and what it read, and waits until it accepts.
    fn echo_server(&mut self, port: u16, tag: &str) {
        let script = format!(
            r#"
import socket, threading
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", {port}))
s.listen(128)
def serve(c):
    while True:
        d = c.recv(4096)
        if not d:
            break
        c.sendall(b"{tag}:" + d)
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#
        );
        let child = sys::netns::command_in(&self.name, "python3", ["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start the echo server");
        self.children.push(child);
        let started = Instant::now();
        while self.connect(port).is_err() {
            assert!(
                started.elapsed() < DEADLINE,
                "echo server on {port} never came up"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A TCP connection to 127.0.0.1:`port` inside the namespace (a thread enters it only to
    /// make the socket, which stays there).
    fn connect(&self, port: u16) -> std::io::Result<TcpStream> {
        let path = sys::netns::path(&self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                let ns = std::fs::File::open(&path)?;
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)?;
                let addr = SocketAddr::from(([127, 0, 0, 1], port));
                let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
                stream.set_read_timeout(Some(Duration::from_secs(5)))?;
                Ok(stream)
            })
            .join()
            .expect("connecting thread")
        })
    }

    fn start(&self) -> Haproxy {
        Haproxy::ensure_running(&self.netns(), self.files()).expect("start haproxy")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        // haproxy daemonized inside the namespace: end everything there.
        let _ = sys::netns::end_processes(&self.name, Duration::from_secs(2));
        let _ = sys::netns::delete(&self.name);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sends `msg` and returns the echo server's answer.
fn exchange(stream: &mut TcpStream, msg: &str) -> String {
    stream.write_all(msg.as_bytes()).expect("send");
    let mut buf = [0u8; 256];
    let n = stream.read(&mut buf).expect("receive");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn commands(list: &[&str]) -> Vec<String> {
    list.iter().map(|c| c.to_string()).collect()
}

/// Polls `f` until it returns `Some`, failing the test after [`DEADLINE`].
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(started.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

const ONE_SERVER: &str =
    "listen web\n    bind 127.0.0.1:8001\n    balance roundrobin\n    server b1 127.0.0.1:9001\n";

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn second_ensure_running_adopts_the_same_master() {
    let lab = Lab::new("adopt");
    lab.write_config(ONE_SERVER);
    let first = lab.start();
    let procs = first.processes().unwrap();
    assert_eq!(procs.master, first.master_pid());
    assert_eq!(procs.workers.len(), 1);

    let second = lab.start();
    assert_eq!(second.master_pid(), first.master_pid());
    let adopted = Haproxy::adopt(&lab.netns(), lab.files()).unwrap().unwrap();
    assert_eq!(adopted.master_pid(), first.master_pid());
    assert_eq!(second.processes().unwrap().workers, procs.workers);
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn added_servers_serve_through_roundrobin_and_consistent_source_backends() {
    let mut lab = Lab::new("add");
    lab.write_config(
        "listen rr\n    bind 127.0.0.1:8001\n    balance roundrobin\n\n\
         listen src\n    bind 127.0.0.1:8002\n    balance source\n    hash-type consistent\n\n\
         listen srcmap\n    bind 127.0.0.1:8003\n    balance source\n",
    );
    lab.echo_server(9001, "b1");
    let h = lab.start();
    let answers = h
        .runtime(&commands(&[
            "add server rr/b1 127.0.0.1:9001",
            "enable server rr/b1",
            "add server src/b1 127.0.0.1:9001",
            "enable server src/b1",
            "add server srcmap/b1 127.0.0.1:9001",
            "add server rr/b2 127.0.0.1:9002 cookie b2",
        ]))
        .unwrap();
    assert_eq!(
        answers[..4],
        ["New server registered.", "", "New server registered.", ""]
    );
    assert!(haproxy::is_error(&answers[4]), "{}", answers[4]);
    assert!(answers[4].starts_with("Backend must use a dynamic load balancing"));
    assert!(haproxy::is_error(&answers[5]), "{}", answers[5]);
    assert!(answers[5].starts_with("'cookie' option is not accepted"));

    for port in [8001, 8002] {
        let mut c = lab.connect(port).unwrap();
        assert_eq!(exchange(&mut c, "ping"), "b1:ping", "through port {port}");
    }
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn del_server_is_refused_while_connected_and_accepted_after_disable_and_close() {
    let mut lab = Lab::new("del");
    lab.write_config("listen rr\n    bind 127.0.0.1:8001\n    balance roundrobin\n");
    lab.echo_server(9001, "b1");
    let h = lab.start();
    h.runtime(&commands(&[
        "add server rr/b1 127.0.0.1:9001",
        "enable server rr/b1",
    ]))
    .unwrap();
    let mut c = lab.connect(8001).unwrap();
    assert_eq!(exchange(&mut c, "hi"), "b1:hi");

    let refused = h.runtime(&commands(&["del server rr/b1"])).unwrap();
    assert!(
        refused[0].starts_with("Only servers in maintenance mode"),
        "{refused:?}"
    );
    let answers = h
        .runtime(&commands(&["disable server rr/b1", "del server rr/b1"]))
        .unwrap();
    assert_eq!(answers[0], "");
    assert!(haproxy::is_error(&answers[1]));
    assert!(
        answers[1].starts_with("Server still has connections attached to it"),
        "{answers:?}"
    );
    // The open connection keeps working on a disabled server.
    assert_eq!(exchange(&mut c, "still"), "b1:still");

    drop(c);
    wait_for("del server to be accepted", || {
        let a = h.runtime(&commands(&["del server rr/b1"])).unwrap();
        (a[0] == "Server deleted.").then_some(())
    });
    let after = h.runtime(&commands(&["del server rr/b1"])).unwrap();
    assert_eq!(after, ["No such server."]);
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn reload_keeps_an_open_connection_and_accepts_new_ones() {
    let mut lab = Lab::new("reload");
    lab.write_config(ONE_SERVER);
    lab.echo_server(9001, "b1");
    let h = lab.start();
    let mut long = lab.connect(8001).unwrap();
    assert_eq!(exchange(&mut long, "before"), "b1:before");

    let reloaded = h.reload().unwrap();
    assert!(!reloaded.previous_workers.contains(&reloaded.worker));
    let procs = h.processes().unwrap();
    assert_eq!(procs.master, h.master_pid(), "the master stays");
    assert_eq!(procs.workers, [reloaded.worker]);
    assert_eq!(procs.old_workers, reloaded.previous_workers);

    // A new connection right after the reload, and the old one still exchanging bytes.
    let mut fresh = lab.connect(8001).unwrap();
    assert_eq!(exchange(&mut fresh, "new"), "b1:new");
    assert_eq!(exchange(&mut long, "after"), "b1:after");

    drop(long);
    wait_for("the old worker to leave", || {
        h.processes().unwrap().old_workers.is_empty().then_some(())
    });
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn failed_reload_keeps_the_old_worker_serving() {
    let mut lab = Lab::new("badreload");
    lab.write_config(ONE_SERVER);
    lab.echo_server(9001, "b1");
    let h = lab.start();
    let worker = h.processes().unwrap().workers;
    lab.write_config("listen web\n    bind 127.0.0.1:8001\n    balance bogus\n");
    let err = h.reload().unwrap_err();
    assert!(matches!(err, HaproxyError::ReloadFailed { .. }), "{err:?}");
    assert_eq!(h.processes().unwrap().workers, worker);
    let mut c = lab.connect(8001).unwrap();
    assert_eq!(exchange(&mut c, "x"), "b1:x");
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn check_refuses_a_broken_config_with_haproxys_message() {
    let lab = Lab::new("check");
    lab.write_config(ONE_SERVER);
    haproxy::check(&lab.netns(), &lab.files().config()).unwrap();

    lab.write_config("listen web\n    bind 127.0.0.1:8001\n    balance bogus\n");
    match haproxy::check(&lab.netns(), &lab.files().config()) {
        Err(HaproxyError::ConfigInvalid { message, .. }) => {
            assert!(message.contains("balance only supports"), "{message}");
            assert!(!message.contains("[NOTICE]"), "{message}");
        }
        other => panic!("expected ConfigInvalid, got {other:?}"),
    }
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn start_on_an_absent_address_fails_with_haproxys_message() {
    let lab = Lab::new("absent");
    lab.write_config("listen web\n    bind 10.255.0.1:8001\n    server b1 127.0.0.1:9001\n");
    let err = Haproxy::ensure_running(&lab.netns(), lab.files()).unwrap_err();
    assert!(matches!(err, HaproxyError::Start { .. }), "{err:?}");
    let chain = format!("{:?}", std::error::Error::source(&err));
    assert!(chain.contains("cannot bind socket"), "{chain}");
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn server_states_reflect_maintenance_and_connections() {
    let mut lab = Lab::new("states");
    lab.write_config(ONE_SERVER);
    lab.echo_server(9001, "b1");
    let h = lab.start();
    h.runtime(&commands(&["add server web/b2 127.0.0.1:9002"]))
        .unwrap();
    let mut c = lab.connect(8001).unwrap();
    assert_eq!(exchange(&mut c, "x"), "b1:x");

    let states = h.server_states().unwrap();
    assert_eq!(states.len(), 2, "{states:?}");
    let b1 = &states[0];
    assert_eq!((b1.backend.as_str(), b1.server.as_str()), ("web", "b1"));
    assert_eq!((b1.address.as_str(), b1.port), ("127.0.0.1", 9001));
    assert_eq!(b1.status, "no check");
    assert!(!b1.is_maintenance());
    assert_eq!((b1.current_sessions, b1.total_sessions), (1, 1));
    let b2 = &states[1];
    assert_eq!((b2.server.as_str(), b2.port), ("b2", 9002));
    assert_eq!(b2.status, "MAINT");
    assert!(b2.is_maintenance());

    h.runtime(&commands(&["disable server web/b1"])).unwrap();
    drop(c);
    wait_for("b1 to show maintenance and no sessions", || {
        let s = h.server_states().unwrap();
        (s[0].status == "MAINT" && s[0].current_sessions == 0).then_some(())
    });
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn stop_ends_the_master_and_a_new_one_starts_after() {
    let lab = Lab::new("stop");
    lab.write_config(ONE_SERVER);
    let h = lab.start();
    let worker = h.processes().unwrap().workers[0];
    h.stop(DEADLINE).unwrap();
    assert!(Haproxy::adopt(&lab.netns(), lab.files()).unwrap().is_none());
    wait_for("the worker to exit", || {
        (!std::path::Path::new(&format!("/proc/{worker}/status")).exists()
            || std::fs::read_to_string(format!("/proc/{worker}/status"))
                .is_ok_and(|s| s.contains("State:\tZ")))
        .then_some(())
    });

    let again = lab.start();
    assert_ne!(again.master_pid(), h.master_pid());
    again.kill().unwrap();
    assert!(Haproxy::adopt(&lab.netns(), lab.files()).unwrap().is_none());
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn reload_with_one_and_a_thousand_listen_sections_finishes_within_the_deadline() {
    for n in [1u16, 1000] {
        let lab = Lab::new(&format!("t{n}"));
        let mut body = String::new();
        for i in 0..n {
            body.push_str(&format!(
                "listen l{i}\n    bind 127.0.0.1:{}\n    server a 127.0.0.1:{}\n    server b 127.0.0.1:{}\n",
                20000 + i,
                40000 + i,
                50000 + i
            ));
        }
        lab.write_config(&body);
        let started = Instant::now();
        let h = lab.start();
        let start = started.elapsed();
        let mut reloads = Vec::new();
        for _ in 0..5 {
            reloads.push(h.reload().unwrap().took);
        }
        reloads.sort();
        eprintln!(
            "{n} listen sections: start {start:?}, reload median {:?} (min {:?}, max {:?})",
            reloads[2], reloads[0], reloads[4]
        );
        assert!(reloads[4] < DEADLINE);
    }
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn ensure_running_during_a_reload_adopts_instead_of_starting_another() {
    let lab = Lab::new("midreload");
    lab.write_config(ONE_SERVER);
    let first = lab.start();
    for _ in 0..5 {
        // A raw `reload`, so the master is re-executing when ensure_running looks.
        let mut s = std::os::unix::net::UnixStream::connect(lab.files().master_socket())
            .expect("connect to the master socket");
        s.write_all(b"reload\n").expect("send reload");
        s.shutdown(std::net::Shutdown::Write).expect("shut down");
        let _ = s.read_to_end(&mut Vec::new());
        let again = lab.start();
        assert_eq!(again.master_pid(), first.master_pid());
    }
    let masters: Vec<i32> = sys::netns::pids(&lab.name)
        .expect("list the namespace's processes")
        .into_iter()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| c.starts_with("/usr/sbin/haproxy\0-W"))
        })
        .collect();
    assert_eq!(masters, [first.master_pid()]);
}
