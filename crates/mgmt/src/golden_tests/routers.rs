//! Routers (admins only) and hosts with their agent tokens (admins only).

use super::{check, id, Session, UNKNOWN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routers() {
    check("routers").await;
}

pub(super) async fn script(s: &mut Session) {
    let sh = s.shared().await;
    s.account("alice").await;
    let net = s.network("alice", &sh, &sh.offering, "alice-net").await;
    s.vm("alice", &sh, &net, "web1").await;

    let routers = s.call("admin", "listRouters", &[("listall", "true")]).await;
    let router = id(&routers["listroutersresponse"]["router"][0]);
    s.call("admin", "listRouters", &[("id", &router)]).await;
    s.call("admin", "listRouters", &[("networkid", &net)]).await;
    s.call("admin", "listRouters", &[("id", UNKNOWN)]).await;
    s.call("alice", "listRouters", &[]).await;
    // A reboot makes the router again and ends with it enforcing its network's rules.
    s.run("admin", "rebootRouter", &[("id", &router)]).await;
    s.call("admin", "rebootRouter", &[("id", UNKNOWN)]).await;
    s.call("alice", "rebootRouter", &[("id", &router)]).await;

    // A stopped router is gone from its host. A rule made meanwhile ends Active without it
    // (nothing is sent to a stopped router), and reaches it when it starts.
    s.run("admin", "stopRouter", &[("id", &router)]).await;
    s.call(
        "admin",
        "listRouters",
        &[("listall", "true"), ("state", "Stopped")],
    )
    .await;
    s.call(
        "admin",
        "listRouters",
        &[("listall", "true"), ("state", "Running")],
    )
    .await;
    // Stopped already: the stop ends at once.
    s.run(
        "admin",
        "stopRouter",
        &[("id", &router), ("forced", "true")],
    )
    .await;
    // A stopped router is not rebooted.
    s.call("admin", "rebootRouter", &[("id", &router)]).await;
    let ip = s.address("alice", &net).await;
    s.run(
        "alice",
        "createFirewallRule",
        &[
            ("ipaddressid", &ip),
            ("protocol", "tcp"),
            ("startport", "22"),
        ],
    )
    .await;
    s.call("alice", "listFirewallRules", &[("ipaddressid", &ip)])
        .await;
    s.run("admin", "startRouter", &[("id", &router)]).await;
    // Running already: the start sends the whole config again.
    s.run("admin", "startRouter", &[("id", &router)]).await;
    s.call("admin", "stopRouter", &[("id", UNKNOWN)]).await;
    s.call("alice", "stopRouter", &[("id", &router)]).await;
    s.call("alice", "startRouter", &[("id", &router)]).await;
}
