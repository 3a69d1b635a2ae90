//! Load balancers, their members, stickiness and health check policies, and their errors.

use super::{check, id, Session, UNKNOWN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancers() {
    check("load_balancers").await;
}

pub(super) async fn script(s: &mut Session) {
    let sh = s.shared().await;
    s.account("alice").await;
    s.account("bob").await;
    let net = s.network("alice", &sh, &sh.offering, "alice-net").await;
    let ip = s.address("alice", &net).await;
    let web1 = s.vm("alice", &sh, &net, "web1").await;
    let web2 = s.vm("alice", &sh, &net, "web2").await;

    let (lb, _) = s
        .run(
            "alice",
            "createLoadBalancerRule",
            &[
                ("name", "web"),
                ("description", "the web tier"),
                ("algorithm", "roundrobin"),
                ("publicport", "80"),
                ("privateport", "8080"),
                ("publicipid", &ip),
                ("networkid", &net),
                ("cidrlist", "0.0.0.0/0"),
            ],
        )
        .await;
    let lb = id(&lb);
    s.call("alice", "listLoadBalancerRules", &[]).await;
    s.run(
        "alice",
        "assignToLoadBalancerRule",
        &[
            ("id", &lb),
            ("virtualmachineids", &format!("{web1},{web2}")),
        ],
    )
    .await;
    s.call("alice", "listLoadBalancerRuleInstances", &[("id", &lb)])
        .await;
    s.call(
        "alice",
        "listLoadBalancerRuleInstances",
        &[("id", &lb), ("lbvmips", "true")],
    )
    .await;
    s.run(
        "alice",
        "updateLoadBalancerRule",
        &[
            ("id", &lb),
            ("algorithm", "leastconn"),
            ("name", "web-tier"),
        ],
    )
    .await;
    s.call("alice", "listLoadBalancerRules", &[("id", &lb)])
        .await;
    s.call(
        "alice",
        "listAutoScaleVmGroups",
        &[("lbruleid", &lb), ("listall", "true")],
    )
    .await;
    s.call("alice", "listAutoScalePolicies", &[("vmgroupid", UNKNOWN)])
        .await;

    let (sticky, _) = s
        .run(
            "alice",
            "createLBStickinessPolicy",
            &[
                ("lbruleid", &lb),
                ("name", "sticky"),
                ("methodname", "LbCookie"),
                ("param[0].name", "cookie-name"),
                ("param[0].value", "SRV"),
            ],
        )
        .await;
    let sticky = id(&sticky);
    s.call("alice", "listLBStickinessPolicies", &[("lbruleid", &lb)])
        .await;
    let (health, _) = s
        .run(
            "alice",
            "createLBHealthCheckPolicy",
            &[
                ("lbruleid", &lb),
                ("pingpath", "/health"),
                ("intervaltime", "10"),
                ("healthythreshold", "3"),
            ],
        )
        .await;
    let health = id(&health);
    s.call("alice", "listLBHealthCheckPolicies", &[("lbruleid", &lb)])
        .await;

    // Errors.
    s.call("alice", "createLoadBalancerRule", &[("name", "x")])
        .await;
    s.call(
        "alice",
        "createLoadBalancerRule",
        &[
            ("name", "clash"),
            ("algorithm", "source"),
            ("publicport", "80"),
            ("privateport", "80"),
            ("publicipid", &ip),
            ("networkid", &net),
        ],
    )
    .await;
    s.call(
        "alice",
        "createLoadBalancerRule",
        &[
            ("name", "bad"),
            ("algorithm", "random"),
            ("publicport", "81"),
            ("privateport", "80"),
            ("publicipid", &ip),
        ],
    )
    .await;
    s.call(
        "alice",
        "assignToLoadBalancerRule",
        &[("id", &lb), ("virtualmachineids", UNKNOWN)],
    )
    .await;
    s.call(
        "bob",
        "assignToLoadBalancerRule",
        &[("id", &lb), ("virtualmachineids", &web1)],
    )
    .await;
    s.call("bob", "listLoadBalancerRules", &[("id", &lb)]).await;
    s.call("bob", "listAutoScaleVmGroups", &[("lbruleid", &lb)])
        .await;
    s.call("bob", "listLoadBalancerRuleInstances", &[("id", &lb)])
        .await;
    s.call("bob", "listLBStickinessPolicies", &[("lbruleid", &lb)])
        .await;
    s.call("bob", "deleteLBHealthCheckPolicy", &[("id", &health)])
        .await;
    s.call(
        "bob",
        "updateLBHealthCheckPolicy",
        &[("id", &health), ("fordisplay", "false")],
    )
    .await;
    s.run(
        "alice",
        "updateLBStickinessPolicy",
        &[("id", &sticky), ("fordisplay", "false")],
    )
    .await;
    s.call("alice", "listLBStickinessPolicies", &[("id", &sticky)])
        .await;
    s.call(
        "alice",
        "updateLBHealthCheckPolicy",
        &[("id", &health), ("customid", "my-health-check")],
    )
    .await;
    s.run("alice", "updateLBHealthCheckPolicy", &[("id", &health)])
        .await;
    s.call(
        "alice",
        "createLBStickinessPolicy",
        &[
            ("lbruleid", &lb),
            ("name", "again"),
            ("methodname", "SourceBased"),
        ],
    )
    .await;
    s.call(
        "alice",
        "createLBStickinessPolicy",
        &[("lbruleid", &lb), ("name", "odd"), ("methodname", "Magic")],
    )
    .await;
    s.call(
        "alice",
        "createLBStickinessPolicy",
        &[
            ("lbruleid", &lb),
            ("name", "third"),
            ("methodname", "AppCookie"),
        ],
    )
    .await;
    s.call("alice", "createLBHealthCheckPolicy", &[("lbruleid", &lb)])
        .await;
    s.call(
        "alice",
        "createLBHealthCheckPolicy",
        &[("lbruleid", UNKNOWN)],
    )
    .await;

    s.run("alice", "deleteLBStickinessPolicy", &[("id", &sticky)])
        .await;
    s.run("alice", "deleteLBHealthCheckPolicy", &[("id", &health)])
        .await;
    s.run(
        "alice",
        "removeFromLoadBalancerRule",
        &[("id", &lb), ("virtualmachineids", &web2)],
    )
    .await;
    s.call("alice", "listLoadBalancerRuleInstances", &[("id", &lb)])
        .await;
    s.run("alice", "deleteLoadBalancerRule", &[("id", &lb)])
        .await;
    s.call("alice", "listLoadBalancerRules", &[]).await;
    s.call("alice", "listLBStickinessPolicies", &[("lbruleid", &lb)])
        .await;
}
