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
}
