//! Ingress firewall rules: create, list, update, delete, and their errors.

use super::{check, id, Session, UNKNOWN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firewall() {
    check("firewall").await;
}

pub(super) async fn script(s: &mut Session) {
    let sh = s.shared().await;
    s.account("alice").await;
    s.account("bob").await;
    let net = s.network("alice", &sh, &sh.offering, "alice-net").await;
    let ip = s.address("alice", &net).await;

    let (tcp, _) = s
        .run(
            "alice",
            "createFirewallRule",
            &[
                ("ipaddressid", &ip),
                ("protocol", "tcp"),
                ("startport", "22"),
                ("endport", "23"),
                ("cidrlist", "10.0.0.0/8,192.168.1.0/24"),
            ],
        )
        .await;
    let tcp = id(&tcp);
    s.run(
        "alice",
        "createFirewallRule",
        &[
            ("ipaddressid", &ip),
            ("protocol", "icmp"),
            ("icmptype", "8"),
            ("icmpcode", "0"),
        ],
    )
    .await;
    s.call("alice", "listFirewallRules", &[]).await;
    s.call("alice", "listFirewallRules", &[("id", &tcp)]).await;
    s.call(
        "alice",
        "listFirewallRules",
        &[("ipaddressid", &ip), ("page", "1"), ("pagesize", "1")],
    )
    .await;
    s.call(
        "alice",
        "listFirewallRules",
        &[("keyword", "nothing-matches")],
    )
    .await;
    // guestnet keeps its ids: a customid other than the rule's own is refused, its own is not.
    s.call(
        "alice",
        "updateFirewallRule",
        &[("id", &tcp), ("fordisplay", "false"), ("customid", "ssh")],
    )
    .await;
    s.run(
        "alice",
        "updateFirewallRule",
        &[("id", &tcp), ("fordisplay", "false"), ("customid", &tcp)],
    )
    .await;
    s.call("alice", "listFirewallRules", &[("id", &tcp)]).await;

    // Errors: a missing parameter, a wrong value, an unknown id, another account's ids, and
    // a rule that overlaps one already there.
    s.call("alice", "createFirewallRule", &[("ipaddressid", &ip)])
        .await;
    s.call(
        "alice",
        "createFirewallRule",
        &[
            ("ipaddressid", &ip),
            ("protocol", "tcp"),
            ("startport", "70000"),
        ],
    )
    .await;
    s.call(
        "alice",
        "createFirewallRule",
        &[
            ("ipaddressid", &ip),
            ("protocol", "gre"),
            ("startport", "1"),
        ],
    )
    .await;
    s.call(
        "alice",
        "createFirewallRule",
        &[
            ("ipaddressid", UNKNOWN),
            ("protocol", "tcp"),
            ("startport", "80"),
        ],
    )
    .await;
    s.call(
        "bob",
        "createFirewallRule",
        &[
            ("ipaddressid", &ip),
            ("protocol", "tcp"),
            ("startport", "80"),
        ],
    )
    .await;
    s.call("bob", "listFirewallRules", &[("id", &tcp)]).await;
    s.call("bob", "listFirewallRules", &[]).await;
    s.call("bob", "deleteFirewallRule", &[("id", &tcp)]).await;
    s.call(
        "bob",
        "updateFirewallRule",
        &[("id", &tcp), ("fordisplay", "true")],
    )
    .await;
    s.run(
        "alice",
        "createFirewallRule",
        &[
            ("ipaddressid", &ip),
            ("protocol", "tcp"),
            ("startport", "23"),
            ("cidrlist", "10.0.0.0/8"),
        ],
    )
    .await;
    s.call(
        "alice",
        "createFirewallRule",
        &[
            ("ipaddressid", &ip),
            ("protocol", "tcp"),
            ("startport", "23"),
            ("endport", "30"),
            ("cidrlist", "10.0.0.0/8,192.168.1.0/24"),
        ],
    )
    .await;
    s.call("alice", "deleteFirewallRule", &[]).await;
    s.call("alice", "deleteFirewallRule", &[("id", UNKNOWN)])
        .await;

    s.run("alice", "deleteFirewallRule", &[("id", &tcp)]).await;
    s.call("alice", "listFirewallRules", &[("id", &tcp)]).await;
    s.call("admin", "listFirewallRules", &[("listall", "true")])
        .await;
}
