//! Jobs a router refuses: the job fails with the router's reason, the refused rule is undone,
//! and the rules around it are not affected.

use router_config::RouterConfig;

use super::{check, id, Session};

/// The port whose firewall rule this family's router refuses.
const REFUSED: u32 = 4444;

/// What this family's router refuses: a firewall rule opening [`REFUSED`].
pub(super) fn refuse(cfg: &RouterConfig) -> Option<String> {
    cfg.firewall_rules
        .iter()
        .any(|r| r.ports.is_some_and(|p| p.start == REFUSED))
        .then(|| format!("port {REFUSED} is refused by this router"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals() {
    check("refusals").await;
}

pub(super) async fn script(s: &mut Session) {
    let sh = s.shared().await;
    s.account("alice").await;
    let net = s.network("alice", &sh, &sh.offering, "alice-net").await;
    let ip = s.address("alice", &net).await;

    let (ssh, _) = s
        .run(
            "alice",
            "createFirewallRule",
            &[
                ("ipaddressid", &ip),
                ("protocol", "tcp"),
                ("startport", "22"),
            ],
        )
        .await;
    s.run(
        "alice",
        "createFirewallRule",
        &[
            ("ipaddressid", &ip),
            ("protocol", "tcp"),
            ("startport", &REFUSED.to_string()),
        ],
    )
    .await;
    s.call("alice", "listFirewallRules", &[]).await;
    s.call("alice", "listEvents", &[("level", "ERROR")]).await;
    s.call("alice", "listAsyncJobs", &[]).await;
    s.run("alice", "deleteFirewallRule", &[("id", &id(&ssh))])
        .await;
    s.call("alice", "listFirewallRules", &[]).await;
}
