//! Hosts and their agents' tokens (admins only).

use super::{check, id, Session, UNKNOWN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts() {
    check("hosts").await;
}

pub(super) async fn script(s: &mut Session) {
    s.account("alice").await;
    s.call("admin", "listHosts", &[]).await;
    let token = s
        .call("admin", "createAgentToken", &[("host", "rack1-host2")])
        .await;
    let token = id(&token["createagenttokenresponse"]["agenttoken"]);
    s.call("admin", "createAgentToken", &[("host", "rack1-host2")])
        .await;
    s.call("admin", "listAgentTokens", &[]).await;
    s.call("admin", "listAgentTokens", &[("host", "rack1-host2")])
        .await;
    s.call("admin", "listHosts", &[("name", "rack1-host2")])
        .await;
    s.call("admin", "listHosts", &[("state", "Up")]).await;

    s.call("admin", "createAgentToken", &[]).await;
    s.call("admin", "createAgentToken", &[("host", "no spaces")])
        .await;
    s.call("admin", "revokeAgentToken", &[("id", UNKNOWN)])
        .await;
    s.call("alice", "createAgentToken", &[("host", "h")]).await;
    s.call("alice", "listAgentTokens", &[]).await;
    s.call("alice", "revokeAgentToken", &[("id", &token)]).await;
    s.call("alice", "listHosts", &[]).await;

    s.call("admin", "revokeAgentToken", &[("id", &token)]).await;
    s.call("admin", "revokeAgentToken", &[("id", &token)]).await;
    s.call("admin", "listAgentTokens", &[("id", &token)]).await;
}
