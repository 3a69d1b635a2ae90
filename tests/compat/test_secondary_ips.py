"""Secondary addresses of a VM's NIC: addIpToNic and removeIpFromNic (both async), listNics'
and listVirtualMachines' secondaryip, and vmguestip naming one for a forward, a balancer member
and a static NAT."""

from support import api_error, guest_prefix, listed
from test_tenancy import make_tenant


def nic_of(cs, vm):
    [nic] = listed(cs.listNics(virtualmachineid=vm["id"]), "nic")
    return nic


def test_secondary_addresses_are_reserved_shown_and_used(admin, cloud):
    network = cloud.network()
    prefix = guest_prefix(network)
    vm = cloud.vm(network, ipaddress=prefix + "20")
    nic = nic_of(admin, vm)
    assert "secondaryip" not in nic

    added = admin.addIpToNic(nicid=nic["id"], ipaddress=prefix + "50")
    assert set(added) == {"nicsecondaryip"}, added
    first = added["nicsecondaryip"]
    assert first["ipaddress"] == prefix + "50"
    assert first["nicid"] == nic["id"]
    assert first["networkid"] == network["id"]
    assert first["virtualmachineid"] == vm["id"]
    # Without an address: the lowest free one of the network.
    second = admin.addIpToNic(nicid=nic["id"])["nicsecondaryip"]
    assert second["ipaddress"].startswith(prefix)
    assert second["ipaddress"] not in (prefix + "20", prefix + "50")

    shown = nic_of(admin, vm)["secondaryip"]
    assert [(s["id"], s["ipaddress"]) for s in shown] == [
        (first["id"], first["ipaddress"]),
        (second["id"], second["ipaddress"]),
    ]
    [listed_vm] = listed(admin.listVirtualMachines(id=vm["id"]), "virtualmachine")
    assert [s["ipaddress"] for s in listed_vm["nic"][0]["secondaryip"]] == [
        first["ipaddress"],
        second["ipaddress"],
    ]

    # Taken, outside the network, the gateway: refused, and nothing added.
    for bad in (prefix + "50", prefix + "20", "192.0.2.10", prefix + "1"):
        api_error(lambda: admin.addIpToNic(nicid=nic["id"], ipaddress=bad), 431)
    api_error(lambda: admin.addIpToNic(nicid=vm["id"]), 431, contains="nicid")
    assert len(nic_of(admin, vm)["secondaryip"]) == 2
    # A VM is never deployed on a secondary address.
    api_error(lambda: cloud.vm(network, ipaddress=prefix + "50"), 431)

    # A forward, a balancer member and a static NAT may send to one.
    ip = cloud.public_ip(network)
    forward = admin.createPortForwardingRule(
        ipaddressid=ip["id"],
        protocol="tcp",
        publicport=8080,
        privateport=80,
        virtualmachineid=vm["id"],
        vmguestip=first["ipaddress"],
    )["portforwardingrule"]
    assert forward["vmguestip"] == first["ipaddress"]
    api_error(
        lambda: admin.createPortForwardingRule(
            ipaddressid=ip["id"],
            protocol="tcp",
            publicport=8081,
            privateport=80,
            virtualmachineid=vm["id"],
            vmguestip=prefix + "99",
        ),
        431,
        contains=prefix + "99",
    )
    lb_ip = cloud.public_ip(network)
    lb = admin.createLoadBalancerRule(
        publicipid=lb_ip["id"],
        name=cloud.name("lb"),
        algorithm="roundrobin",
        publicport=80,
        privateport=80,
    )["loadbalancer"]
    admin.assignToLoadBalancerRule(
        id=lb["id"], vmidipmap=[{"vmid": vm["id"], "vmip": second["ipaddress"]}]
    )
    members = listed(
        admin.listLoadBalancerRuleInstances(id=lb["id"], lbvmips=True), "lbrulevmidip"
    )
    assert [m["lbvmipaddresses"] for m in members] == [[second["ipaddress"]]]
    nat_ip = cloud.public_ip(network)
    third = admin.addIpToNic(nicid=nic["id"])["nicsecondaryip"]
    assert admin.enableStaticNat(
        ipaddressid=nat_ip["id"], virtualmachineid=vm["id"], vmguestip=third["ipaddress"]
    ) == {"success": True}
    [nat] = listed(admin.listPublicIpAddresses(id=nat_ip["id"]), "publicipaddress")
    assert nat["vmipaddress"] == third["ipaddress"]

    # While one sends to it, an address stays; once none does, it goes.
    for used, by in ((first, "port forwarding rule"), (second, "load balancer rule"), (third, "static nat")):
        api_error(lambda: admin.removeIpFromNic(id=used["id"]), 431, contains=by)
    admin.deletePortForwardingRule(id=forward["id"])
    admin.removeFromLoadBalancerRule(
        id=lb["id"], vmidipmap=[{"vmid": vm["id"], "vmip": second["ipaddress"]}]
    )
    admin.disableStaticNat(ipaddressid=nat_ip["id"])
    for gone in (first, second, third):
        assert admin.removeIpFromNic(id=gone["id"]) == {"success": True}
    assert "secondaryip" not in nic_of(admin, vm)
    api_error(lambda: admin.removeIpFromNic(id=first["id"]), 431, contains="id")
    events = [e["type"] for e in admin.listEvents(fetch_list=True)]
    assert "NIC.SECONDARY.IP.ASSIGN" in events and "NIC.SECONDARY.IP.UNASSIGN" in events


def test_another_account_cannot_touch_secondary_addresses(admin, cloud):
    alice = make_tenant(admin, cloud)
    bob = make_tenant(admin, cloud)
    net = cloud.network(cs=alice.cs)
    vm = cloud.vm(net, cs=alice.cs)
    nic = nic_of(alice.cs, vm)
    api_error(lambda: bob.cs.addIpToNic(nicid=nic["id"]), 431, contains="nicid")
    secondary = alice.cs.addIpToNic(nicid=nic["id"])["nicsecondaryip"]
    api_error(lambda: bob.cs.removeIpFromNic(id=secondary["id"]), 431, contains="id")
    # Bob's forward cannot name Alice's VM, with or without her secondary address.
    bobs_net = cloud.network(cs=bob.cs)
    bobs_ip = cloud.public_ip(bobs_net, cs=bob.cs)
    api_error(
        lambda: bob.cs.createPortForwardingRule(
            ipaddressid=bobs_ip["id"],
            protocol="tcp",
            publicport=22,
            privateport=22,
            virtualmachineid=vm["id"],
            vmguestip=secondary["ipaddress"],
        ),
        431,
        contains="virtualmachineid",
    )
    assert [s["id"] for s in nic_of(alice.cs, vm)["secondaryip"]] == [secondary["id"]]
