//! What a guestnet process inherits from whoever starts it does not reach what it starts.

use lab::TempDir;

use crate::procs::{self, ServerSpec};

/// A guestnet started with SIGHUP blocked (by a supervisor or a harness) runs with nothing
/// blocked, so the programs it starts do too (a dnsmasq with SIGHUP blocked never re-reads its
/// leases).
#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn a_guestnet_started_with_sighup_blocked_blocks_nothing() {
    use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow, Signal};
    let dir = TempDir::new().expect("temp dir");
    let spec = ServerSpec {
        name: "server".into(),
        data_dir: dir.path().join("server"),
        database_url: None,
        listen: "127.0.0.1:0".into(),
        netns: None,
        apply_timeout: "10".into(),
        log: dir.path().join("server.log"),
    };
    let (server, _endpoint) = std::thread::scope(|s| {
        s.spawn(|| {
            let mut hup = SigSet::empty();
            hup.add(Signal::SIGHUP);
            pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&hup), None).expect("block SIGHUP");
            procs::server(&spec)
        })
        .join()
        .expect("the spawning thread")
    });
    let pid = server.pid().expect("the server runs");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("its status");
    let blocked = status
        .lines()
        .find_map(|l| l.strip_prefix("SigBlk:"))
        .map(str::trim)
        .expect("a SigBlk line");
    assert_eq!(
        u64::from_str_radix(blocked, 16).expect("a hex mask"),
        0,
        "the server runs with signals blocked: {blocked}"
    );
}
