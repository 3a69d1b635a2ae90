//! Port forwarding rules: create, list, update (where traffic goes), delete, and errors; and
//! static NAT with its IP forwarding rules.

use super::{check, id, Session, UNKNOWN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forwarding() {
    check("port_forwarding").await;
}

pub(super) async fn script(s: &mut Session) {
    let sh = s.shared().await;
    s.account("alice").await;
    s.account("bob").await;
    let net = s.network("alice", &sh, &sh.offering, "alice-net").await;
    let ip = s.address("alice", &net).await;
    let web1 = s.vm("alice", &sh, &net, "web1").await;
    let web2 = s.vm("alice", &sh, &net, "web2").await;

    let (pf, _) = s
        .run(
            "alice",
            "createPortForwardingRule",
            &[
                ("ipaddressid", &ip),
                ("protocol", "tcp"),
                ("publicport", "8080"),
                ("publicendport", "8081"),
                ("privateport", "8080"),
                ("privateendport", "8081"),
                ("virtualmachineid", &web1),
                ("cidrlist", "203.0.113.0/24"),
            ],
        )
        .await;
    let pf = id(&pf);
    s.run(
        "alice",
        "createPortForwardingRule",
        &[
            ("ipaddressid", &ip),
            ("protocol", "udp"),
            ("publicport", "53"),
            ("privateport", "53"),
            ("virtualmachineid", &web2),
            ("openfirewall", "false"),
        ],
    )
    .await;
    s.call("alice", "listPortForwardingRules", &[]).await;
    s.call("alice", "listFirewallRules", &[("ipaddressid", &ip)])
        .await;
    s.call(
        "alice",
        "listIpForwardingRules",
        &[("ipaddressid", &ip), ("virtualmachineid", &web1)],
    )
    .await;
    s.call("alice", "listIpForwardingRules", &[("id", &pf)])
        .await;
    s.call("bob", "listIpForwardingRules", &[("ipaddressid", &ip)])
        .await;
    s.run(
        "alice",
        "updatePortForwardingRule",
        &[
            ("id", &pf),
            ("virtualmachineid", &web2),
            ("cidrlist", "198.51.100.0/24"),
        ],
    )
    .await;
    s.call(
        "alice",
        "updatePortForwardingRule",
        &[
            ("id", &pf),
            ("privateport", "8080"),
            ("privateendport", "8081"),
        ],
    )
    .await;
    s.call("alice", "listPortForwardingRules", &[("id", &pf)])
        .await;

    s.call(
        "alice",
        "createPortForwardingRule",
        &[
            ("ipaddressid", &ip),
            ("protocol", "tcp"),
            ("publicport", "22"),
        ],
    )
    .await;
    s.call(
        "alice",
        "createPortForwardingRule",
        &[
            ("ipaddressid", &ip),
            ("protocol", "tcp"),
            ("publicport", "22"),
            ("privateport", "22"),
            ("virtualmachineid", UNKNOWN),
        ],
    )
    .await;
    s.call(
        "bob",
        "createPortForwardingRule",
        &[
            ("ipaddressid", &ip),
            ("protocol", "tcp"),
            ("publicport", "22"),
            ("privateport", "22"),
            ("virtualmachineid", &web1),
        ],
    )
    .await;
    s.call(
        "alice",
        "createPortForwardingRule",
        &[
            ("ipaddressid", &ip),
            ("protocol", "tcp"),
            ("publicport", "8081"),
            ("privateport", "22"),
            ("virtualmachineid", &web1),
        ],
    )
    .await;
    s.call(
        "bob",
        "updatePortForwardingRule",
        &[("id", &pf), ("privateport", "22")],
    )
    .await;
    s.call("bob", "listPortForwardingRules", &[("id", &pf)])
        .await;
    s.call("alice", "deletePortForwardingRule", &[("id", UNKNOWN)])
        .await;

    s.run("alice", "deletePortForwardingRule", &[("id", &pf)])
        .await;
    s.call("alice", "listPortForwardingRules", &[]).await;

    // Static NAT: a second address 1:1 to web1, with IP forwarding rules.
    let nat_ip = s.address("alice", &net).await;
    s.call(
        "bob",
        "enableStaticNat",
        &[("ipaddressid", &nat_ip), ("virtualmachineid", &web1)],
    )
    .await;
    s.call(
        "alice",
        "enableStaticNat",
        &[("ipaddressid", &nat_ip), ("virtualmachineid", &web1)],
    )
    .await;
    s.call("alice", "listPublicIpAddresses", &[("id", &nat_ip)])
        .await;
    s.call(
        "alice",
        "enableStaticNat",
        &[("ipaddressid", &ip), ("virtualmachineid", &web1)],
    )
    .await;
    let (ipf, _) = s
        .run(
            "alice",
            "createIpForwardingRule",
            &[
                ("ipaddressid", &nat_ip),
                ("protocol", "tcp"),
                ("startport", "80"),
                ("endport", "81"),
            ],
        )
        .await;
    let ipf = id(&ipf);
    s.call(
        "alice",
        "createIpForwardingRule",
        &[
            ("ipaddressid", &ip),
            ("protocol", "tcp"),
            ("startport", "80"),
        ],
    )
    .await;
    s.call(
        "alice",
        "createPortForwardingRule",
        &[
            ("ipaddressid", &nat_ip),
            ("protocol", "tcp"),
            ("publicport", "22"),
            ("privateport", "22"),
            ("virtualmachineid", &web1),
        ],
    )
    .await;
    s.call("alice", "listIpForwardingRules", &[]).await;
    s.call("bob", "deleteIpForwardingRule", &[("id", &ipf)])
        .await;
    s.run("alice", "deleteIpForwardingRule", &[("id", &ipf)])
        .await;
    s.run("alice", "disableStaticNat", &[("ipaddressid", &nat_ip)])
        .await;
    s.call("alice", "listPublicIpAddresses", &[("id", &nat_ip)])
        .await;
    s.call("alice", "disableStaticNat", &[("ipaddressid", &nat_ip)])
        .await;

    // Tags on an address, a network and a VM, shown by their objects and listed.
    s.run(
        "alice",
        "createTags",
        &[
            ("resourcetype", "PublicIpAddress"),
            ("resourceids", &nat_ip),
            ("tags[0].key", "env"),
            ("tags[0].value", "prod"),
            ("tags[1].key", "team"),
            ("tags[1].value", "web"),
        ],
    )
    .await;
    s.run(
        "alice",
        "createTags",
        &[
            ("resourcetype", "network"),
            ("resourceids", &net),
            ("tags[0].key", "env"),
            ("tags[0].value", "prod"),
        ],
    )
    .await;
    s.call(
        "alice",
        "createTags",
        &[
            ("resourcetype", "PublicIpAddress"),
            ("resourceids", &nat_ip),
            ("tags[0].key", "env"),
            ("tags[0].value", "test"),
        ],
    )
    .await;
    s.call(
        "bob",
        "createTags",
        &[
            ("resourcetype", "UserVm"),
            ("resourceids", &web1),
            ("tags[0].key", "mine"),
            ("tags[0].value", "yes"),
        ],
    )
    .await;
    s.call(
        "alice",
        "createTags",
        &[
            ("resourcetype", "Volume"),
            ("resourceids", &web1),
            ("tags[0].key", "env"),
            ("tags[0].value", "prod"),
        ],
    )
    .await;
    s.call("alice", "listTags", &[]).await;
    s.call("bob", "listTags", &[]).await;
    s.call(
        "alice",
        "listPublicIpAddresses",
        &[("tags[0].key", "team"), ("tags[0].value", "web")],
    )
    .await;
    s.call(
        "alice",
        "listNetworks",
        &[("tags[0].key", "env"), ("tags[0].value", "test")],
    )
    .await;
    s.run(
        "alice",
        "deleteTags",
        &[
            ("resourcetype", "PublicIpAddress"),
            ("resourceids", &nat_ip),
            ("tags[0].key", "env"),
        ],
    )
    .await;
    s.call(
        "alice",
        "deleteTags",
        &[
            ("resourcetype", "PublicIpAddress"),
            ("resourceids", &nat_ip),
            ("tags[0].key", "env"),
        ],
    )
    .await;
    s.call("alice", "listTags", &[("resourcetype", "PublicIpAddress")])
        .await;
}
