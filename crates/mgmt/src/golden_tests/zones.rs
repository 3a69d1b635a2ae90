//! A zone's guest side: its DNS servers (updateZone), its physical network's guest VLANs
//! (listPhysicalNetworks, updatePhysicalNetwork), the VLAN and DNS domain of each network, and
//! the MAC of each VM NIC.

use super::{id, Session, UNKNOWN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zones() {
    super::check("zones").await;
}

pub(super) async fn script(s: &mut Session) {
    let sh = s.shared().await;
    s.account("alice").await;

    // DNS servers: set, refused when not an address, admins only.
    s.call("admin", "listZones", &[]).await;
    s.call(
        "admin",
        "updateZone",
        &[
            ("id", &sh.zone),
            ("dns1", "192.0.2.53"),
            ("dns2", "198.51.100.53"),
        ],
    )
    .await;
    s.call(
        "admin",
        "updateZone",
        &[("id", &sh.zone), ("dns1", "192.0.2.300")],
    )
    .await;
    s.call(
        "admin",
        "updateZone",
        &[("id", &sh.zone), ("dns1", ""), ("dns2", "")],
    )
    .await;
    s.call(
        "admin",
        "updateZone",
        &[("id", UNKNOWN), ("dns1", "192.0.2.53")],
    )
    .await;
    s.call(
        "alice",
        "updateZone",
        &[("id", &sh.zone), ("dns1", "192.0.2.53")],
    )
    .await;
    s.call(
        "admin",
        "updateZone",
        &[("id", &sh.zone), ("dns1", "192.0.2.53")],
    )
    .await;
    s.call("alice", "listZones", &[]).await;

    // The physical network and its guest VLANs.
    let pn = s.call("admin", "listPhysicalNetworks", &[]).await;
    let pn = id(&pn["listphysicalnetworksresponse"]["physicalnetwork"][0]);
    s.call("alice", "listPhysicalNetworks", &[]).await;
    s.call(
        "admin",
        "updatePhysicalNetwork",
        &[("id", &pn), ("vlan", "200-201,300")],
    )
    .await;
    for bad in ["0-10", "100-4095", "300-200", "100-199,150-160", "ten"] {
        s.call(
            "admin",
            "updatePhysicalNetwork",
            &[("id", &pn), ("vlan", bad)],
        )
        .await;
    }
    s.call(
        "admin",
        "updatePhysicalNetwork",
        &[("id", UNKNOWN), ("vlan", "100-199")],
    )
    .await;

    // Networks take the lowest free VLAN, and a DNS domain.
    let web = s
        .call(
            "alice",
            "createNetwork",
            &[
                ("name", "web"),
                ("zoneid", &sh.zone),
                ("networkofferingid", &sh.offering),
                ("networkdomain", "web.example.org"),
            ],
        )
        .await;
    let web = id(&web["createnetworkresponse"]["network"]);
    s.call(
        "alice",
        "createNetwork",
        &[
            ("name", "bad"),
            ("zoneid", &sh.zone),
            ("networkofferingid", &sh.offering),
            ("networkdomain", "-bad-.example"),
        ],
    )
    .await;
    let db = s.network("alice", &sh, &sh.offering, "db").await;
    s.network("alice", &sh, &sh.offering, "cache").await;
    // Every VLAN is taken.
    s.call(
        "alice",
        "createNetwork",
        &[
            ("name", "full"),
            ("zoneid", &sh.zone),
            ("networkofferingid", &sh.offering),
        ],
    )
    .await;
    s.call("alice", "listNetworks", &[("id", &db)]).await;
    s.call("admin", "listNetworks", &[("id", &db), ("listall", "true")])
        .await;
    // A range leaving out VLANs in use is refused, naming their networks.
    s.call(
        "admin",
        "updatePhysicalNetwork",
        &[("id", &pn), ("vlan", "300-399")],
    )
    .await;
    // Deleting a network frees its VLAN for the next.
    s.run("alice", "deleteNetwork", &[("id", &db)]).await;
    s.call(
        "alice",
        "createNetwork",
        &[
            ("name", "again"),
            ("zoneid", &sh.zone),
            ("networkofferingid", &sh.offering),
        ],
    )
    .await;

    // NIC MACs: as asked, refused when malformed, multicast or taken; generated otherwise.
    let deploy = |name: &'static str, mac: Option<&'static str>| {
        let mut p = vec![
            ("zoneid", sh.zone.clone()),
            ("serviceofferingid", sh.service_offering.clone()),
            ("templateid", sh.template.clone()),
            ("networkids", web.clone()),
            ("name", name.to_string()),
        ];
        if let Some(mac) = mac {
            p.push(("macaddress", mac.to_string()));
        }
        p
    };
    for (name, mac) in [
        ("m1", Some("06:1A:2B:3C:4D:5E")),
        ("m2", Some("06:1a:2b:3c:4d:5e")),
        ("m3", Some("07:00:00:00:00:01")),
        ("m4", Some("00:00:00:00:00:00")),
        ("m5", Some("06:1a:2b:3c:4d")),
        ("m6", None),
    ] {
        let p = deploy(name, mac);
        let p: Vec<(&str, &str)> = p.iter().map(|(k, v)| (*k, v.as_str())).collect();
        s.call("alice", "deployVirtualMachine", &p).await;
    }
    // Templates from files on the hosts: what the server refuses before looking further.
    for (url, format) in [
        ("http://images.example.org/guest.qcow2", "QCOW2"),
        ("file:///nonexistent/guest.qcow2", "QCOW2"),
        ("file://relative/guest.qcow2", "RAW"),
    ] {
        s.call(
            "admin",
            "registerTemplate",
            &[("name", "guest"), ("url", url), ("format", format)],
        )
        .await;
    }
    s.call(
        "alice",
        "registerTemplate",
        &[
            ("name", "guest"),
            ("url", "file:///nonexistent/guest.qcow2"),
            ("format", "QCOW2"),
        ],
    )
    .await;
    s.call("alice", "listVirtualMachines", &[("name", "m1")])
        .await;
    s.call(
        "admin",
        "listVirtualMachines",
        &[("name", "m1"), ("listall", "true")],
    )
    .await;
}
