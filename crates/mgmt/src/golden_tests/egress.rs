//! Egress firewall rules, on a network that denies outbound traffic by default and on one
//! that allows it.

use super::{check, id, Session, UNKNOWN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress() {
    check("egress").await;
}

pub(super) async fn script(s: &mut Session) {
    let sh = s.shared().await;
    s.account("alice").await;
    s.account("bob").await;
    let closed = s.network("alice", &sh, &sh.offering, "closed").await;
    let open = s.network("alice", &sh, &sh.open_offering, "open").await;

    let (web, _) = s
        .run(
            "alice",
            "createEgressFirewallRule",
            &[
                ("networkid", &closed),
                ("protocol", "tcp"),
                ("startport", "443"),
                ("cidrlist", "10.1.0.0/25"),
                ("destcidrlist", "0.0.0.0/0"),
            ],
        )
        .await;
    let web = id(&web);
    s.run(
        "alice",
        "createEgressFirewallRule",
        &[("networkid", &open), ("protocol", "all")],
    )
    .await;
    s.run(
        "alice",
        "createEgressFirewallRule",
        &[
            ("networkid", &open),
            ("protocol", "icmp"),
            ("icmptype", "-1"),
            ("icmpcode", "-1"),
        ],
    )
    .await;
    s.call("alice", "listEgressFirewallRules", &[]).await;
    s.call("alice", "listEgressFirewallRules", &[("networkid", &open)])
        .await;
    s.run(
        "alice",
        "updateEgressFirewallRule",
        &[("id", &web), ("fordisplay", "false")],
    )
    .await;
    s.call("alice", "listEgressFirewallRules", &[("id", &web)])
        .await;

    s.call(
        "alice",
        "createEgressFirewallRule",
        &[("networkid", &closed)],
    )
    .await;
    s.call(
        "alice",
        "createEgressFirewallRule",
        &[
            ("networkid", UNKNOWN),
            ("protocol", "tcp"),
            ("startport", "80"),
        ],
    )
    .await;
    s.call(
        "alice",
        "createEgressFirewallRule",
        &[
            ("networkid", &closed),
            ("protocol", "tcp"),
            ("startport", "80"),
            ("cidrlist", "192.0.2.0/24"),
        ],
    )
    .await;
    s.call(
        "bob",
        "createEgressFirewallRule",
        &[
            ("networkid", &closed),
            ("protocol", "tcp"),
            ("startport", "80"),
        ],
    )
    .await;
    s.call("bob", "listEgressFirewallRules", &[("networkid", &closed)])
        .await;
    s.call("bob", "deleteEgressFirewallRule", &[("id", &web)])
        .await;
    s.run(
        "alice",
        "createEgressFirewallRule",
        &[
            ("networkid", &closed),
            ("protocol", "tcp"),
            ("startport", "443"),
            ("cidrlist", "10.1.0.0/25"),
        ],
    )
    .await;
    s.call(
        "alice",
        "createEgressFirewallRule",
        &[
            ("networkid", &closed),
            ("protocol", "tcp"),
            ("startport", "400"),
            ("endport", "500"),
            ("cidrlist", "10.1.0.0/25"),
            ("destcidrlist", "0.0.0.0/0"),
        ],
    )
    .await;
    s.call("alice", "deleteEgressFirewallRule", &[("id", UNKNOWN)])
        .await;

    s.run("alice", "deleteEgressFirewallRule", &[("id", &web)])
        .await;
    s.call(
        "alice",
        "listEgressFirewallRules",
        &[("networkid", &closed)],
    )
    .await;
}
