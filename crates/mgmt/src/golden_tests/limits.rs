//! Resource limits: listing, setting (root admins only) and the 535 a taking command meets.

use super::{check, Session};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits() {
    check("limits").await;
}

pub(super) async fn script(s: &mut Session) {
    let sh = s.shared().await;
    s.account("alice").await;
    let accounts = s
        .quiet(
            "admin",
            "listAccounts",
            &[("name", "alice"), ("listall", "true")],
        )
        .await;
    let domain = accounts["account"][0]["domainid"]
        .as_str()
        .unwrap()
        .to_string();

    s.call("alice", "listResourceLimits", &[]).await;
    s.call("alice", "listResourceLimits", &[("resourcetype", "6")])
        .await;
    s.call(
        "alice",
        "listResourceLimits",
        &[("resourcetypename", "network_rule")],
    )
    .await;
    s.call(
        "admin",
        "listResourceLimits",
        &[("account", "alice"), ("domainid", &domain)],
    )
    .await;
    s.call("admin", "listResourceLimits", &[("domainid", &domain)])
        .await;
    s.call(
        "admin",
        "updateResourceLimit",
        &[
            ("account", "alice"),
            ("domainid", &domain),
            ("resourcetype", "6"),
            ("max", "1"),
        ],
    )
    .await;
    s.call("alice", "listResourceLimits", &[("resourcetype", "6")])
        .await;
    s.network("alice", &sh, &sh.offering, "first").await;
    s.call(
        "alice",
        "createNetwork",
        &[
            ("name", "second"),
            ("displaytext", "second"),
            ("zoneid", &sh.zone),
            ("networkofferingid", &sh.offering),
        ],
    )
    .await;

    s.call("admin", "updateResourceLimit", &[("max", "3")])
        .await;
    s.call(
        "admin",
        "updateResourceLimit",
        &[
            ("account", "alice"),
            ("domainid", &domain),
            ("resourcetype", "99"),
            ("max", "1"),
        ],
    )
    .await;
    s.call(
        "admin",
        "updateResourceLimit",
        &[
            ("account", "alice"),
            ("domainid", &domain),
            ("resourcetype", "0"),
            ("max", "-2"),
        ],
    )
    .await;
    s.call(
        "alice",
        "updateResourceLimit",
        &[
            ("account", "alice"),
            ("domainid", &domain),
            ("resourcetype", "6"),
            ("max", "5"),
        ],
    )
    .await;
}
