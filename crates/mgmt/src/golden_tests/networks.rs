//! Guest networks: create, list, delete, and their errors.

use super::{check, id, Session, UNKNOWN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn networks() {
    check("networks").await;
}

pub(super) async fn script(s: &mut Session) {
    let sh = s.shared().await;
    s.account("alice").await;
    s.account("bob").await;

    let net = s
        .call(
            "alice",
            "createNetwork",
            &[
                ("name", "web"),
                ("displaytext", "the web tier"),
                ("zoneid", &sh.zone),
                ("networkofferingid", &sh.offering),
            ],
        )
        .await;
    let net = id(&net["createnetworkresponse"]["network"]);
    s.call(
        "alice",
        "createNetwork",
        &[
            ("name", "db"),
            ("displaytext", "the data tier"),
            ("zoneid", &sh.zone),
            ("networkofferingid", &sh.open_offering),
            ("gateway", "10.20.0.1"),
            ("netmask", "255.255.255.0"),
        ],
    )
    .await;
    s.call("alice", "listNetworks", &[]).await;
    s.call("alice", "listNetworks", &[("id", &net)]).await;
    s.call("alice", "listNetworks", &[("keyword", "data")])
        .await;
    s.call("admin", "listNetworks", &[("listall", "true")])
        .await;
    // Filters: what every network here is, what none is, and values CloudStack refuses.
    s.call("alice", "listNetworks", &[("traffictype", "guest")])
        .await;
    s.call("alice", "listNetworks", &[("traffictype", "Public")])
        .await;
    s.call("alice", "listNetworks", &[("traffictype", "sideways")])
        .await;
    s.call(
        "alice",
        "listNetworks",
        &[("supportedservices", "Lb,Dhcp,SourceNat")],
    )
    .await;
    s.call("alice", "listNetworks", &[("supportedservices", "Vpn")])
        .await;
    s.call(
        "alice",
        "listNetworks",
        &[("networkofferingid", &sh.open_offering)],
    )
    .await;
    s.call("alice", "listNetworks", &[("canusefordeploy", "false")])
        .await;
    s.call("alice", "listNetworks", &[("vpcid", UNKNOWN)]).await;

    s.call("alice", "createNetwork", &[("name", "x")]).await;
    s.call(
        "alice",
        "createNetwork",
        &[
            ("name", "x"),
            ("displaytext", "x"),
            ("zoneid", UNKNOWN),
            ("networkofferingid", &sh.offering),
        ],
    )
    .await;
    s.call(
        "alice",
        "createNetwork",
        &[
            ("name", "x"),
            ("displaytext", "x"),
            ("zoneid", &sh.zone),
            ("networkofferingid", &sh.offering),
            ("gateway", "10.20.0.300"),
            ("netmask", "255.255.255.0"),
        ],
    )
    .await;
    s.call("bob", "listNetworks", &[("id", &net)]).await;
    s.call("bob", "deleteNetwork", &[("id", &net)]).await;

    // A new name and description; what guestnet keeps of a network is refused, naming it.
    s.run(
        "alice",
        "updateNetwork",
        &[
            ("id", &net),
            ("name", "renamed"),
            ("displaytext", "a new text"),
        ],
    )
    .await;
    s.call(
        "alice",
        "updateNetwork",
        &[("id", &net), ("guestvmcidr", "10.9.0.0/24")],
    )
    .await;
    // What the network already has is no change (Ansible sends the offering every time);
    // another offering is.
    s.run(
        "alice",
        "updateNetwork",
        &[
            ("id", &net),
            ("displaytext", "again"),
            ("networkofferingid", &sh.offering),
            ("forced", "false"),
        ],
    )
    .await;
    s.call(
        "alice",
        "updateNetwork",
        &[("id", &net), ("networkofferingid", &sh.open_offering)],
    )
    .await;
    s.call("bob", "updateNetwork", &[("id", &net), ("name", "mine")])
        .await;
    // Restarts: the whole config again, or the router made again first.
    s.run("alice", "restartNetwork", &[("id", &net)]).await;
    s.run(
        "alice",
        "restartNetwork",
        &[("id", &net), ("cleanup", "true")],
    )
    .await;
    s.call(
        "alice",
        "restartNetwork",
        &[("id", &net), ("makeredundant", "true")],
    )
    .await;
    s.call("bob", "restartNetwork", &[("id", &net)]).await;
    s.call("alice", "deleteNetwork", &[("id", UNKNOWN)]).await;

    let vm = s.vm("alice", &sh, &net, "web1").await;
    s.call("alice", "deleteNetwork", &[("id", &net)]).await;
    s.quiet_run(
        "alice",
        "destroyVirtualMachine",
        &[("id", &vm), ("expunge", "true")],
    )
    .await;
    s.run("alice", "deleteNetwork", &[("id", &net)]).await;
    s.call("alice", "listNetworks", &[]).await;
}
