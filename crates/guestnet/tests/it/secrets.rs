//! No secret reaches a log, at any level: a server and an agent run at `RUST_LOG=trace`, where
//! the WebSocket client logs its whole handshake request, and neither log holds the agent's
//! token or the admin's secret key.

use lab::TempDir;

use crate::procs::{self, Admin, AgentSpec, ServerSpec, SECRET};

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn no_secret_in_any_log_at_trace_level() {
    let dir = TempDir::new().expect("temp dir");
    let (server, endpoint) = procs::server_logging(
        &ServerSpec {
            name: "server".into(),
            data_dir: dir.path().join("server"),
            database_url: None,
            listen: "127.0.0.1:0".into(),
            netns: None,
            apply_timeout: "10".into(),
            log: dir.path().join("server.log"),
        },
        "trace",
    );
    let admin = Admin::new(&endpoint);
    let token_file = dir.path().join("h1-token");
    let token = admin.token("h1", &token_file)["token"]
        .as_str()
        .expect("token")
        .to_string();
    let agent = procs::agent_with(
        &AgentSpec {
            name: "agent-h1".into(),
            servers: vec![procs::base(&endpoint)],
            token_file,
            data_dir: dir.path().join("h1"),
            netns: None,
            apply_timeout: "10".into(),
            log: dir.path().join("agent.log"),
        },
        "dry-run",
        "trace",
    );
    admin.until("h1 is Up", |a| a.host_up("h1"));
    // The handshake request was logged (so trace logging reached it) ...
    agent
        .wait_log("Request:", procs::DEADLINE)
        .unwrap_or_else(|e| panic!("{e}"));
    for (who, log) in [("server", server.log()), ("agent", agent.log())] {
        assert!(
            !log.contains(&token),
            "the {who}'s log holds the agent's token"
        );
        assert!(
            !log.contains(SECRET),
            "the {who}'s log holds the admin's secret key"
        );
    }
    // ... with its credential blanked.
    assert!(agent.log().contains("authorization: [redacted]"));
}
