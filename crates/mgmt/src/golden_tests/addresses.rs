//! Public IPs (acquire, list, release) and VLAN ranges (create, list: admins only).

use super::{check, id, Session, UNKNOWN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses() {
    check("addresses").await;
}

pub(super) async fn script(s: &mut Session) {
    let sh = s.shared().await;
    s.account("alice").await;
    s.account("bob").await;
    let net = s.network("alice", &sh, &sh.offering, "alice-net").await;

    let (ip, _) = s
        .run("alice", "associateIpAddress", &[("networkid", &net)])
        .await;
    let ip = id(&ip);
    s.run(
        "alice",
        "associateIpAddress",
        &[("networkid", &net), ("ipaddress", "203.0.113.200")],
    )
    .await;
    s.call("alice", "listPublicIpAddresses", &[]).await;
    s.call("alice", "listPublicIpAddresses", &[("id", &ip)])
        .await;
    s.call(
        "alice",
        "listPublicIpAddresses",
        &[("associatednetworkid", &net), ("issourcenat", "true")],
    )
    .await;
    // Filters of what guestnet has none of, and of balancers (none on these addresses).
    s.call("alice", "listPublicIpAddresses", &[("isstaticnat", "true")])
        .await;
    s.call(
        "alice",
        "listPublicIpAddresses",
        &[("isstaticnat", "false")],
    )
    .await;
    s.call(
        "alice",
        "listPublicIpAddresses",
        &[("forloadbalancing", "true")],
    )
    .await;
    s.call(
        "alice",
        "listPublicIpAddresses",
        &[("forvirtualnetwork", "false")],
    )
    .await;
    s.call("alice", "listPublicIpAddresses", &[("vpcid", UNKNOWN)])
        .await;

    s.call("alice", "associateIpAddress", &[]).await;
    s.call("alice", "associateIpAddress", &[("networkid", UNKNOWN)])
        .await;
    s.call(
        "alice",
        "associateIpAddress",
        &[("networkid", &net), ("ipaddress", "203.0.113.200")],
    )
    .await;
    s.call(
        "alice",
        "associateIpAddress",
        &[("networkid", &net), ("ipaddress", "192.0.2.9")],
    )
    .await;
    s.call("bob", "associateIpAddress", &[("networkid", &net)])
        .await;
    s.call("bob", "listPublicIpAddresses", &[("id", &ip)]).await;
    s.call("bob", "disassociateIpAddress", &[("id", &ip)]).await;
    s.call("alice", "disassociateIpAddress", &[]).await;

    s.run("alice", "disassociateIpAddress", &[("id", &ip)])
        .await;
    s.run(
        "alice",
        "disassociateIpAddress",
        &[("ipaddress", "203.0.113.200")],
    )
    .await;
    s.call("alice", "listPublicIpAddresses", &[]).await;
    s.call(
        "alice",
        "listPublicIpAddresses",
        &[("allocatedonly", "false"), ("page", "2"), ("pagesize", "3")],
    )
    .await;

    // VLAN ranges: admins only.
    s.call("admin", "listVlanIpRanges", &[]).await;
    let range = s
        .call(
            "admin",
            "createVlanIpRange",
            &[
                ("zoneid", &sh.zone),
                ("vlan", "untagged"),
                ("gateway", "198.51.100.1"),
                ("netmask", "255.255.255.0"),
                ("startip", "198.51.100.10"),
                ("endip", "198.51.100.20"),
                ("forvirtualnetwork", "true"),
            ],
        )
        .await;
    let range = id(&range["createvlaniprangeresponse"]["vlan"]);
    s.call("admin", "listVlanIpRanges", &[("id", &range)]).await;
    s.call(
        "admin",
        "createVlanIpRange",
        &[
            ("zoneid", &sh.zone),
            ("vlan", "untagged"),
            ("gateway", "198.51.100.1"),
            ("netmask", "255.255.255.0"),
            ("startip", "198.51.100.15"),
            ("endip", "198.51.100.30"),
        ],
    )
    .await;
    s.call(
        "admin",
        "createVlanIpRange",
        &[("zoneid", &sh.zone), ("startip", "198.51.100.40")],
    )
    .await;
    s.call(
        "alice",
        "createVlanIpRange",
        &[
            ("zoneid", &sh.zone),
            ("gateway", "192.0.2.1"),
            ("netmask", "255.255.255.0"),
            ("startip", "192.0.2.10"),
        ],
    )
    .await;
    s.call("alice", "listVlanIpRanges", &[]).await;
    s.call(
        "admin",
        "listPublicIpAddresses",
        &[
            ("vlanid", &range),
            ("allocatedonly", "false"),
            ("listall", "true"),
        ],
    )
    .await;
}
