"""Static NAT: enableStaticNat (synchronous), disableStaticNat, the IP forwarding rules of a
static-NAT address (createIpForwardingRule, listIpForwardingRules, deleteIpForwardingRule), the
address's isstaticnat and virtualmachineid, and what CloudStack refuses around them."""

import pytest

from support import api_error, ids, listed, nic_in
from test_tenancy import make_tenant


@pytest.fixture(scope="module")
def network(cloud):
    return cloud.network()


@pytest.fixture(scope="module")
def vm(cloud, network):
    return cloud.vm(network)


@pytest.fixture
def ip(cloud, network):
    return cloud.public_ip(network)


def address(admin, ip):
    [found] = listed(admin.listPublicIpAddresses(id=ip["id"]), "publicipaddress")
    return found


def firewall_rules(admin, ip):
    return listed(admin.listFirewallRules(ipaddressid=ip["id"]), "firewallrule")


def test_static_nat_lifecycle(admin, network, vm, ip):
    assert address(admin, ip)["isstaticnat"] is False
    # Synchronous, as on CloudStack: the answer is the success itself, given once the
    # router enforces the static NAT.
    assert admin.enableStaticNat(ipaddressid=ip["id"], virtualmachineid=vm["id"]) == {
        "success": True
    }
    shown = address(admin, ip)
    assert shown["isstaticnat"] is True
    assert shown["virtualmachineid"] == vm["id"]
    assert shown["virtualmachinename"] == vm["name"]
    assert shown["vmipaddress"] == nic_in(vm, network)["ipaddress"]
    static = listed(
        admin.listPublicIpAddresses(associatednetworkid=network["id"], isstaticnat=True),
        "publicipaddress",
    )
    assert ip["id"] in ids(static)
    others = listed(
        admin.listPublicIpAddresses(associatednetworkid=network["id"], isstaticnat=False),
        "publicipaddress",
    )
    assert ip["id"] not in ids(others) and others, "the source-NAT address is not static"

    answer = admin.createIpForwardingRule(
        ipaddressid=ip["id"], protocol="tcp", startport=22, endport=23
    )
    assert set(answer) == {"ipforwardingrule"}, answer
    rule = answer["ipforwardingrule"]
    assert rule["protocol"] == "tcp"
    assert rule["startport"] == 22 and rule["endport"] == 23
    assert rule["ipaddressid"] == ip["id"] and rule["ipaddress"] == ip["ipaddress"]
    assert rule["virtualmachineid"] == vm["id"]
    assert rule["vmguestip"] == nic_in(vm, network)["ipaddress"]
    assert rule["state"] == "Active"
    # openfirewall defaults to true: the ports are opened in the firewall too.
    [opened] = firewall_rules(admin, ip)
    assert (opened["protocol"], opened["startport"], opened["endport"]) == ("tcp", 22, 23)

    # The same protocol may not share a port; another protocol may.
    api_error(
        lambda: admin.createIpForwardingRule(ipaddressid=ip["id"], protocol="tcp", startport=23),
        537,
    )
    udp = admin.createIpForwardingRule(
        ipaddressid=ip["id"], protocol="udp", startport=22, openfirewall=False
    )["ipforwardingrule"]
    assert len(firewall_rules(admin, ip)) == 1, "openfirewall=false opens nothing"

    listing = listed(admin.listIpForwardingRules(ipaddressid=ip["id"]), "ipforwardingrule")
    assert ids(listing) == [udp["id"], rule["id"]], "newest first"
    by_vm = listed(admin.listIpForwardingRules(virtualmachineid=vm["id"]), "ipforwardingrule")
    assert set(ids(by_vm)) == {udp["id"], rule["id"]}
    assert listed(admin.listIpForwardingRules(id=rule["id"]), "ipforwardingrule")[0]["id"] == (
        rule["id"]
    )

    # A static-NAT address carries no forward and no balancer.
    api_error(
        lambda: admin.createPortForwardingRule(
            ipaddressid=ip["id"],
            protocol="tcp",
            publicport=8080,
            privateport=80,
            virtualmachineid=vm["id"],
        ),
        431,
        contains="static nat",
    )
    api_error(
        lambda: admin.createLoadBalancerRule(
            publicipid=ip["id"],
            name="lb-on-static",
            algorithm="roundrobin",
            publicport=8080,
            privateport=80,
        ),
        537,
        contains="static nat",
    )

    assert admin.deleteIpForwardingRule(id=rule["id"]) == {"success": True}
    assert firewall_rules(admin, ip) == [], "the rule's firewall rule goes with it"

    assert admin.disableStaticNat(ipaddressid=ip["id"]) == {"success": True}
    shown = address(admin, ip)
    assert shown["isstaticnat"] is False and "virtualmachineid" not in shown
    assert listed(admin.listIpForwardingRules(ipaddressid=ip["id"]), "ipforwardingrule") == [], (
        "disabling removes the address's remaining IP forwarding rules"
    )
    # The address takes forwards again, and static NAT again.
    admin.createPortForwardingRule(
        ipaddressid=ip["id"],
        protocol="tcp",
        publicport=8080,
        privateport=80,
        virtualmachineid=vm["id"],
    )


def test_what_cloudstack_refuses(admin, cloud, network, vm):
    [source_nat] = listed(
        admin.listPublicIpAddresses(associatednetworkid=network["id"], issourcenat=True),
        "publicipaddress",
    )
    api_error(
        lambda: admin.enableStaticNat(ipaddressid=source_nat["id"], virtualmachineid=vm["id"]),
        431,
        contains="sourceNat",
    )
    forwarded = cloud.public_ip(network)
    admin.createPortForwardingRule(
        ipaddressid=forwarded["id"],
        protocol="tcp",
        publicport=2222,
        privateport=22,
        virtualmachineid=vm["id"],
    )
    api_error(
        lambda: admin.enableStaticNat(ipaddressid=forwarded["id"], virtualmachineid=vm["id"]),
        537,
        contains="PortForwarding",
    )
    elsewhere = cloud.vm(cloud.network())
    plain = cloud.public_ip(network)
    api_error(
        lambda: admin.enableStaticNat(ipaddressid=plain["id"], virtualmachineid=elsewhere["id"]),
        431,
    )
    api_error(
        lambda: admin.enableStaticNat(
            ipaddressid=plain["id"], virtualmachineid=vm["id"], vmguestip="10.9.9.9"
        ),
        431,
        contains="10.9.9.9",
    )
    api_error(
        lambda: admin.createIpForwardingRule(ipaddressid=plain["id"], protocol="tcp", startport=22),
        537,
        contains="static nat",
    )
    api_error(lambda: admin.disableStaticNat(ipaddressid=plain["id"]), 431)

    assert admin.enableStaticNat(ipaddressid=plain["id"], virtualmachineid=vm["id"]) == {
        "success": True
    }
    # One VM address has one static NAT; one address is NAT to one VM.
    second = cloud.public_ip(network)
    api_error(
        lambda: admin.enableStaticNat(ipaddressid=second["id"], virtualmachineid=vm["id"]),
        431,
        contains="already associated",
    )
    other_vm = cloud.vm(network)
    api_error(
        lambda: admin.enableStaticNat(ipaddressid=plain["id"], virtualmachineid=other_vm["id"]),
        537,
    )
    api_error(
        lambda: admin.createIpForwardingRule(
            ipaddressid=plain["id"], protocol="tcp", startport=22, cidrlist="10.0.0.0/8"
        ),
        431,
        contains="deprecated",
    )
    # Released with its static NAT: the address is free, and the VM may have another.
    assert admin.disassociateIpAddress(id=plain["id"]) == {"success": True}
    assert admin.enableStaticNat(ipaddressid=second["id"], virtualmachineid=vm["id"]) == {
        "success": True
    }


def test_destroying_the_vm_ends_its_static_nat(admin, cloud, network):
    doomed = cloud.vm(network)
    ip = cloud.public_ip(network)
    admin.enableStaticNat(ipaddressid=ip["id"], virtualmachineid=doomed["id"])
    admin.createIpForwardingRule(ipaddressid=ip["id"], protocol="tcp", startport=80)
    admin.destroyVirtualMachine(id=doomed["id"], expunge=True)
    assert address(admin, ip)["isstaticnat"] is False
    assert listed(admin.listIpForwardingRules(ipaddressid=ip["id"]), "ipforwardingrule") == []
    assert firewall_rules(admin, ip) == []


def test_another_account_cannot_touch_static_nat(admin, cloud):
    alice = make_tenant(admin, cloud)
    bob = make_tenant(admin, cloud)
    net = cloud.network(cs=alice.cs)
    alices_vm = cloud.vm(net, cs=alice.cs)
    alices_ip = cloud.public_ip(net, cs=alice.cs)
    bobs_net = cloud.network(cs=bob.cs)
    bobs_ip = cloud.public_ip(bobs_net, cs=bob.cs)
    api_error(
        lambda: bob.cs.enableStaticNat(ipaddressid=alices_ip["id"], virtualmachineid=alices_vm["id"]),
        431,
        contains="ipaddressid",
    )
    api_error(
        lambda: bob.cs.enableStaticNat(ipaddressid=bobs_ip["id"], virtualmachineid=alices_vm["id"]),
        431,
        contains="virtualmachineid",
    )
    assert alice.cs.enableStaticNat(
        ipaddressid=alices_ip["id"], virtualmachineid=alices_vm["id"]
    ) == {"success": True}
    rule = alice.cs.createIpForwardingRule(
        ipaddressid=alices_ip["id"], protocol="tcp", startport=22
    )["ipforwardingrule"]
    assert listed(bob.cs.listIpForwardingRules(), "ipforwardingrule") == []
    api_error(lambda: bob.cs.deleteIpForwardingRule(id=rule["id"]), 431, contains="id")
    api_error(lambda: bob.cs.disableStaticNat(ipaddressid=alices_ip["id"]), 431)
    assert ids(listed(alice.cs.listIpForwardingRules(), "ipforwardingrule")) == [rule["id"]]
