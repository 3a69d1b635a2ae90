//! A management server with no agent of its own and a `guestnet agent` process driving a lab
//! host: tokens, placement, real packets, and the agent's faults (a flushed table, a kill -9,
//! a revoked token).

use std::time::Duration;

use lab::TempDir;

use crate::procs::{self, Admin, AgentSpec, HostLab, ServerSpec};

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn an_agent_process_drives_its_hosts_routers() {
    let dir = TempDir::new().expect("temp dir");
    let srv_dir = dir.path().join("server");
    let host_dir = dir.path().join("h1");
    let (mut server, endpoint) = procs::server(&ServerSpec {
        name: "server".into(),
        data_dir: srv_dir.clone(),
        database_url: None,
        listen: "127.0.0.1:0".into(),
        netns: None,
        apply_timeout: "10".into(),
        log: dir.path().join("server.log"),
    });
    let admin = Admin::new(&endpoint);
    let servers = vec![procs::base(&endpoint)];

    // No host yet: a network cannot be placed.
    let zone = admin.call("listZones", &[])["zone"][0]["id"]
        .as_str()
        .expect("zone")
        .to_string();
    let off = admin.call("listNetworkOfferings", &[])["networkoffering"][0]["id"]
        .as_str()
        .expect("offering")
        .to_string();
    let err = admin
        .try_call(
            "createNetwork",
            &[
                ("name", "n0"),
                ("displaytext", "n0"),
                ("networkofferingid", &off),
                ("zoneid", &zone),
            ],
        )
        .expect_err("no host to place the router on");
    assert!(err.to_string().contains("533"), "{err}");

    // A wrong token is refused, and the server says so.
    let bad = dir.path().join("bad-token");
    std::fs::write(&bad, "gna_not-a-token").expect("write");
    // The intruder's agent builds an (empty) lab before it connects: torn down at the end.
    let _intruder_lab = HostLab::new(&dir.path().join("intruder"));
    let mut intruder = procs::agent(&AgentSpec {
        name: "intruder".into(),
        servers: servers.clone(),
        token_file: bad,
        data_dir: dir.path().join("intruder"),
        netns: None,
        apply_timeout: "10".into(),
        log: dir.path().join("intruder.log"),
    });
    server
        .wait_log("unknown or revoked token", procs::DEADLINE)
        .unwrap_or_else(|e| panic!("{e}"));
    intruder
        .wait_log("refused the agent's token", procs::DEADLINE)
        .unwrap_or_else(|e| panic!("{e}"));
    intruder.kill9();

    // The host's agent, with its token, connects; its host comes Up.
    let token_file = dir.path().join("h1-token");
    let token = admin.token("h1", &token_file);
    let spec = AgentSpec {
        name: "agent-h1".into(),
        servers,
        token_file,
        data_dir: host_dir.clone(),
        netns: None,
        apply_timeout: "10".into(),
        log: dir.path().join("agent-h1.log"),
    };
    let mut lab = HostLab::new(&host_dir);
    let mut agent = procs::agent(&spec);
    admin.until("host h1 is Up", |a| a.host_up("h1"));

    // The router is placed on h1, and enforces what the API says.
    let net = procs::network(&admin, "agentnet", 21, &[("ag-web1", 11)]);
    lab.whoami("vm:ag-web1", "10.1.21.11", 80, "ag-web1");
    let routers = admin.call("listRouters", &[("networkid", &net.id)]);
    let r = &routers["router"][0];
    assert_eq!(r["hostname"], "h1", "{r}");
    assert_eq!(r["enforced"], true, "{r}");
    assert_eq!(r["appliedgeneration"], r["desiredgeneration"], "{r}");
    let web1 = procs::vm_id(&admin, "ag-web1");
    lab.refused("outside", &net.ip, 8080);
    let pf = admin.run(
        "createPortForwardingRule",
        &[
            ("ipaddressid", &net.ip_id),
            ("protocol", "tcp"),
            ("publicport", "8080"),
            ("privateport", "80"),
            ("virtualmachineid", &web1),
        ],
    );
    assert_eq!(pf["portforwardingrule"]["state"], "Active", "{pf}");
    let body = lab.admitted("outside", &net.ip, 8080);
    assert!(body.starts_with("ag-web1 "), "{body}");
    let out = procs::verify_settles(None, &srv_dir);
    assert!(out.contains("1 router(s), 0 with differences"), "{out}");

    // Someone flushes the router's table by hand: the agent's drift timer puts it back.
    let (ok, out) = lab.exec(
        &format!("router:{}", net.router),
        &["nft", "flush", "ruleset"],
    );
    assert!(ok, "{out}");
    agent
        .wait_log("enforced again from its ledger", procs::DEADLINE)
        .unwrap_or_else(|e| panic!("{e}"));
    lab.admitted("outside", &net.ip, 8080);
    procs::verify_settles(None, &srv_dir);

    // The agent is killed: a rule created meanwhile waits, pending, and is enforced once the
    // agent is back.
    agent.kill9();
    admin.until("host h1 is Disconnected", |a| !a.host_up("h1"));
    let created = admin.call(
        "createFirewallRule",
        &[
            ("ipaddressid", &net.ip_id),
            ("protocol", "tcp"),
            ("startport", "9090"),
            ("endport", "9090"),
        ],
    );
    let jobid = created["jobid"].as_str().expect("jobid").to_string();
    let status = admin.call("queryAsyncJobResult", &[("jobid", &jobid)]);
    assert_eq!(status["jobstatus"], 0, "{status}");
    let mut agent = procs::agent(&spec);
    let done = admin
        .wait_job(&jobid, Duration::from_secs(30))
        .expect("the job succeeds once the agent is back");
    assert_eq!(done["firewallrule"]["state"], "Active", "{done}");
    lab.admitted("outside", &net.ip, 8080);
    let out = procs::verify_settles(None, &srv_dir);
    assert!(out.contains("0 with differences"), "{out}");

    // A revoked token is refused at the agent's next connection.
    let token_id = token["id"].as_str().expect("token id").to_string();
    admin.call("revokeAgentToken", &[("id", &token_id)]);
    agent.kill9();
    let refusals = server.log().matches("unknown or revoked token").count();
    let _again = procs::agent(&spec);
    admin.until("host h1 is Disconnected", |a| !a.host_up("h1"));
    let deadline = std::time::Instant::now() + procs::DEADLINE;
    while server.log().matches("unknown or revoked token").count() < refusals + 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the revoked token was never refused; server log:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(server.running(), "{}", server.log());
}
