//! Virtual machines: deploy, list, destroy, and their errors.

use super::{check, id, Session, UNKNOWN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vms() {
    check("vms").await;
}

pub(super) async fn script(s: &mut Session) {
    let sh = s.shared().await;
    s.account("alice").await;
    s.account("bob").await;
    let net = s.network("alice", &sh, &sh.offering, "alice-net").await;

    let (vm, _) = s
        .run(
            "alice",
            "deployVirtualMachine",
            &[
                ("zoneid", &sh.zone),
                ("serviceofferingid", &sh.service_offering),
                ("templateid", &sh.template),
                ("networkids", &net),
                ("name", "web1"),
                ("displayname", "Web server one"),
            ],
        )
        .await;
    let vm = id(&vm);
    s.run(
        "alice",
        "deployVirtualMachine",
        &[
            ("zoneid", &sh.zone),
            ("serviceofferingid", &sh.service_offering),
            ("templateid", &sh.template),
            ("networkids", &net),
            ("ipaddress", "10.1.0.77"),
        ],
    )
    .await;
    s.call("alice", "listVirtualMachines", &[]).await;
    s.call("alice", "listVirtualMachines", &[("id", &vm)]).await;
    s.call(
        "alice",
        "listVirtualMachines",
        &[("networkid", &net), ("state", "Running")],
    )
    .await;
    s.call("alice", "listNics", &[("virtualmachineid", &vm)])
        .await;
    s.call(
        "alice",
        "listNics",
        &[("virtualmachineid", &vm), ("networkid", &net)],
    )
    .await;
    s.call(
        "alice",
        "listNics",
        &[("virtualmachineid", &vm), ("nicid", UNKNOWN)],
    )
    .await;
    s.call("alice", "listNics", &[]).await;
    s.call("bob", "listNics", &[("virtualmachineid", &vm)])
        .await;

    // Secondary addresses: reserved on the NIC and shown with it; a forward may send to one,
    // and while it does the address stays.
    let nics = s
        .call("alice", "listNics", &[("virtualmachineid", &vm)])
        .await;
    let nic = id(&nics["listnicsresponse"]["nic"][0]);
    let (_, end) = s
        .run(
            "alice",
            "addIpToNic",
            &[("nicid", &nic), ("ipaddress", "10.1.0.50")],
        )
        .await;
    let secondary = id(&end["jobresult"]["nicsecondaryip"]);
    s.run("alice", "addIpToNic", &[("nicid", &nic)]).await;
    for taken in [
        "10.1.0.50",
        "10.1.0.77",
        "192.0.2.1",
        "10.1.0.1",
        "not-an-address",
    ] {
        s.call(
            "alice",
            "addIpToNic",
            &[("nicid", &nic), ("ipaddress", taken)],
        )
        .await;
    }
    s.call("bob", "addIpToNic", &[("nicid", &nic)]).await;
    s.call("alice", "addIpToNic", &[("nicid", UNKNOWN)]).await;
    s.call("alice", "listNics", &[("virtualmachineid", &vm)])
        .await;
    s.call("alice", "listVirtualMachines", &[("id", &vm)]).await;
    let ip = s.address("alice", &net).await;
    let (forward, _) = s
        .run(
            "alice",
            "createPortForwardingRule",
            &[
                ("ipaddressid", &ip),
                ("protocol", "tcp"),
                ("publicport", "8080"),
                ("privateport", "80"),
                ("virtualmachineid", &vm),
                ("vmguestip", "10.1.0.50"),
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
            ("privateport", "80"),
            ("virtualmachineid", &vm),
            ("vmguestip", "10.1.0.99"),
        ],
    )
    .await;
    s.call("alice", "removeIpFromNic", &[("id", &secondary)])
        .await;
    s.call("bob", "removeIpFromNic", &[("id", &secondary)])
        .await;
    s.run(
        "alice",
        "deletePortForwardingRule",
        &[("id", &id(&forward))],
    )
    .await;
    s.run("alice", "removeIpFromNic", &[("id", &secondary)])
        .await;
    s.call("alice", "removeIpFromNic", &[("id", &secondary)])
        .await;
    s.call("alice", "listNics", &[("virtualmachineid", &vm)])
        .await;

    s.call("alice", "deployVirtualMachine", &[("zoneid", &sh.zone)])
        .await;
    s.call(
        "alice",
        "deployVirtualMachine",
        &[
            ("zoneid", &sh.zone),
            ("serviceofferingid", &sh.service_offering),
            ("templateid", UNKNOWN),
            ("networkids", &net),
        ],
    )
    .await;
    s.call(
        "alice",
        "deployVirtualMachine",
        &[
            ("zoneid", &sh.zone),
            ("serviceofferingid", &sh.service_offering),
            ("templateid", &sh.template),
            ("networkids", &net),
            ("name", "web1"),
        ],
    )
    .await;
    s.call(
        "bob",
        "deployVirtualMachine",
        &[
            ("zoneid", &sh.zone),
            ("serviceofferingid", &sh.service_offering),
            ("templateid", &sh.template),
            ("networkids", &net),
        ],
    )
    .await;
    s.call("bob", "listVirtualMachines", &[("id", &vm)]).await;
    s.call("bob", "destroyVirtualMachine", &[("id", &vm)]).await;
    s.call("alice", "destroyVirtualMachine", &[("id", UNKNOWN)])
        .await;

    s.run("alice", "destroyVirtualMachine", &[("id", &vm)])
        .await;
    s.call("alice", "listVirtualMachines", &[]).await;
    s.call(
        "alice",
        "destroyVirtualMachine",
        &[("id", &vm), ("expunge", "true")],
    )
    .await;
    s.call("alice", "listVirtualMachines", &[("id", &vm)]).await;
}
