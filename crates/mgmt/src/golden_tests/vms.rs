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
