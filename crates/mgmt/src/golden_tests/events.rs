//! Events: what changes leave behind, as the owner and as the admin sees them.

use super::{check, id, Session, UNKNOWN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events() {
    check("events").await;
}

pub(super) async fn script(s: &mut Session) {
    let sh = s.shared().await;
    s.account("alice").await;
    s.account("bob").await;
    let net = s.network("alice", &sh, &sh.offering, "alice-net").await;
    let ip = s.address("alice", &net).await;
    let (rule, _) = s
        .quiet_run(
            "alice",
            "createFirewallRule",
            &[
                ("ipaddressid", &ip),
                ("protocol", "tcp"),
                ("startport", "22"),
            ],
        )
        .await;
    s.quiet_run("alice", "deleteFirewallRule", &[("id", &id(&rule))])
        .await;

    let events = s.call("alice", "listEvents", &[]).await;
    let first = id(&events["listeventsresponse"]["event"][0]);
    s.call("alice", "listEvents", &[("id", &first)]).await;
    s.call("alice", "listEvents", &[("type", "FIREWALL.OPEN")])
        .await;
    s.call("alice", "listEvents", &[("level", "ERROR")]).await;
    s.call("alice", "listEvents", &[("page", "1"), ("pagesize", "2")])
        .await;
    s.call("alice", "listEvents", &[("startdate", "2000-01-01")])
        .await;
    s.call("alice", "listEvents", &[("startdate", "not-a-date")])
        .await;
    s.call("alice", "listEvents", &[("id", UNKNOWN)]).await;
    s.call("bob", "listEvents", &[]).await;
    s.call("bob", "listEvents", &[("id", &first)]).await;
    s.call(
        "admin",
        "listEvents",
        &[("listall", "true"), ("type", "NETWORK.CREATE")],
    )
    .await;
}
