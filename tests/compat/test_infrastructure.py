"""What the rules stand on: zones, offerings, templates, networks, public IPs and their
ranges, VMs, routers, and the event log."""

import ipaddress

import pytest

from support import api_error, guest_prefix, ids, listed, nic_in


def test_initial_inventory(admin, cloud):
    zones = admin.listZones(fetch_list=True)
    assert cloud.zone["id"] in ids(zones)
    assert isinstance(cloud.zone["name"], str)
    for offering in (cloud.offering_deny, cloud.offering_allow):
        assert isinstance(offering["id"], str) and isinstance(offering["name"], str)
    assert cloud.offering_deny["egressdefaultpolicy"] is False
    assert cloud.offering_allow["egressdefaultpolicy"] is True
    [service] = [
        s
        for s in listed(admin.listServiceOfferings(), "serviceoffering")
        if s["id"] == cloud.service_offering["id"]
    ]
    assert isinstance(service["name"], str)
    assert isinstance(cloud.template["name"], str)


def test_list_templates_needs_a_filter(admin):
    api_error(
        lambda: admin.listTemplates(), 431, contains="due to missing parameter templatefilter"
    )


def test_network_lifecycle(admin, cloud):
    network = cloud.network()
    assert network["zoneid"] == cloud.zone["id"]
    assert network["networkofferingid"] == cloud.offering_deny["id"]
    assert network["gateway"] == guest_prefix(network) + "1"
    assert network["netmask"] == "255.255.255.0"
    assert network["egressdefaultpolicy"] is False
    assert isinstance(network["state"], str)

    [again] = listed(admin.listNetworks(id=network["id"]), "network")
    assert again["name"] == network["name"] and again["cidr"] == network["cidr"]
    assert network["id"] in ids(admin.listNetworks(fetch_list=True))

    assert admin.deleteNetwork(id=network["id"]) == {"success": True}
    assert network["id"] not in ids(admin.listNetworks(fetch_list=True))


def test_a_boolean_other_than_true_is_false(admin, cloud):
    """libcloud's ex_delete_network sends forced=None; CloudStack reads a boolean as Java's
    Boolean.valueOf does, so that is false: refused while a VM uses the network, then a plain
    delete once it does not."""
    network = cloud.network()
    vm = cloud.vm(network)
    api_error(lambda: admin.deleteNetwork(id=network["id"], forced="None"), 530)
    [still] = listed(admin.listVirtualMachines(id=vm["id"]), "virtualmachine")
    assert still["state"] == "Running"
    admin.destroyVirtualMachine(id=vm["id"], expunge=True)
    assert admin.deleteNetwork(id=network["id"], forced="None") == {"success": True}
    assert network["id"] not in ids(admin.listNetworks(fetch_list=True))


def test_delete_network_refused_while_a_vm_uses_it(admin, cloud):
    network = cloud.network()
    vm = cloud.vm(network)
    # CloudStack refuses to destroy a network whose user VMs are not expunged.
    error = api_error(lambda: admin.deleteNetwork(id=network["id"]), 530)
    assert "still use it" in error.error["errortext"] and vm["name"] in error.error["errortext"]
    [still] = listed(admin.listVirtualMachines(id=vm["id"]), "virtualmachine")
    assert still["state"] == "Running"
    assert network["id"] in ids(admin.listNetworks(fetch_list=True))

    # Asked for explicitly by a root admin, the network goes and its VMs with it.
    assert admin.deleteNetwork(id=network["id"], forced=True) == {"success": True}
    assert network["id"] not in ids(admin.listNetworks(fetch_list=True))
    assert vm["id"] not in ids(admin.listVirtualMachines(listall=True, fetch_list=True))


def ranges(admin):
    return listed(admin.listVlanIpRanges(), "vlaniprange")


def in_some_range(admin, address):
    address = ipaddress.ip_address(address)
    return any(
        ipaddress.ip_address(r["startip"]) <= address <= ipaddress.ip_address(r["endip"])
        for r in ranges(admin)
    )


def test_public_ip_lifecycle(admin, cloud):
    network = cloud.network()
    ip = cloud.public_ip(network)
    assert ip["associatednetworkid"] == network["id"]
    assert ip["zoneid"] == cloud.zone["id"]
    assert ip["state"] == "Allocated"
    assert in_some_range(admin, ip["ipaddress"])

    [again] = listed(admin.listPublicIpAddresses(id=ip["id"]), "publicipaddress")
    assert again["ipaddress"] == ip["ipaddress"]
    by_network = listed(
        admin.listPublicIpAddresses(associatednetworkid=network["id"]), "publicipaddress"
    )
    assert ip["id"] in ids(by_network)

    rule = admin.createFirewallRule(ipaddressid=ip["id"], protocol="tcp", startport=22)
    rule = rule["firewallrule"]
    assert admin.disassociateIpAddress(id=ip["id"]) == {"success": True}
    # Releasing an IP revokes its rules.
    rules = listed(admin.listFirewallRules(networkid=network["id"]), "firewallrule")
    assert rule["id"] not in ids(rules)
    by_network = listed(
        admin.listPublicIpAddresses(associatednetworkid=network["id"]), "publicipaddress"
    )
    assert ip["id"] not in ids(by_network)


def test_initial_public_range(admin):
    initial = [
        r for r in ranges(admin) if r["startip"] == "203.0.113.10" and r["endip"] == "203.0.113.250"
    ]
    assert len(initial) == 1, ranges(admin)


def test_vlan_ip_range(admin, cloud):
    # A block of 198.51.100.0/24 that no range holds yet (the suite may run twice on a server).
    starts = {r["startip"] for r in ranges(admin)}
    first = next(f for f in range(10, 250, 20) if f"198.51.100.{f}" not in starts)
    start, end, wanted = (f"198.51.100.{first + d}" for d in (0, 10, 5))
    answer = admin.createVlanIpRange(
        zoneid=cloud.zone["id"],
        gateway="198.51.100.1",
        netmask="255.255.255.0",
        startip=start,
        endip=end,
        forvirtualnetwork=True,
    )
    assert set(answer) == {"vlan"}, answer
    vlan = answer["vlan"]
    assert vlan["startip"] == start and vlan["endip"] == end
    assert vlan["gateway"] == "198.51.100.1" and vlan["netmask"] == "255.255.255.0"
    assert vlan["forvirtualnetwork"] is True
    assert vlan["id"] in ids(ranges(admin))
    api_error(
        lambda: admin.createVlanIpRange(
            zoneid=cloud.zone["id"],
            gateway="198.51.100.1",
            netmask="255.255.255.0",
            startip=start,
            endip=end,
            forvirtualnetwork=True,
        ),
        431,
    )

    network = cloud.network()
    ip = cloud.public_ip(network, ipaddress=wanted)
    assert ip["ipaddress"] == wanted
    api_error(lambda: cloud.public_ip(network, ipaddress=wanted), (431, 533, 534, 535, 536))


def test_vm_lifecycle(admin, cloud):
    network = cloud.network()
    vm = cloud.vm(network, ipaddress=guest_prefix(network) + "50")
    assert vm["state"] == "Running"
    assert vm["zoneid"] == cloud.zone["id"]
    assert vm["serviceofferingid"] == cloud.service_offering["id"]
    assert vm["templateid"] == cloud.template["id"]
    assert nic_in(vm, network)["ipaddress"] == guest_prefix(network) + "50"

    other = cloud.vm(network)
    address = nic_in(other, network)["ipaddress"]
    assert address.startswith(guest_prefix(network)) and address != guest_prefix(network) + "50"

    [again] = listed(admin.listVirtualMachines(id=vm["id"]), "virtualmachine")
    assert again["state"] == "Running"
    assert network["id"] in [n["networkid"] for n in again["nic"]]
    assert vm["id"] in ids(admin.listVirtualMachines(networkid=network["id"], fetch_list=True))

    gone = admin.destroyVirtualMachine(id=vm["id"])
    assert set(gone) == {"virtualmachine"}, gone
    assert gone["virtualmachine"]["state"] in ("Destroyed", "Expunging")
    running = [
        v for v in admin.listVirtualMachines(fetch_list=True) if v["state"] == "Running"
    ]
    assert vm["id"] not in ids(running)


def test_router_runs_for_a_network_with_a_vm(admin, cloud):
    network = cloud.network()
    cloud.vm(network)
    routers = listed(admin.listRouters(networkid=network["id"]), "router")
    assert len(routers) == 1, routers
    [router] = routers
    assert router["state"] == "Running"
    assert router["guestnetworkid"] == network["id"]


def test_reboot_router_makes_it_again_with_its_rules(admin, cloud):
    network = cloud.network()
    ip = cloud.public_ip(network)
    admin.createFirewallRule(ipaddressid=ip["id"], protocol="tcp", startport=22)
    [router] = listed(admin.listRouters(networkid=network["id"]), "router")
    answer = admin.rebootRouter(id=router["id"])
    assert set(answer) == {"router"}, answer
    rebooted = answer["router"]
    assert rebooted["id"] == router["id"] and rebooted["state"] == "Running"
    # The job ended with the router enforcing its network's whole config again.
    assert rebooted["appliedgeneration"] > router["appliedgeneration"], (router, rebooted)
    assert rebooted["appliedgeneration"] == rebooted["desiredgeneration"]
    assert "ROUTER.REBOOT" in event_types(admin)
    api_error(lambda: admin.rebootRouter(id=network["id"]), 431, contains="id")


def test_stop_and_start_router(admin, cloud):
    network = cloud.network()
    ip = cloud.public_ip(network)
    [router] = listed(admin.listRouters(networkid=network["id"]), "router")
    answer = admin.stopRouter(id=router["id"])
    assert set(answer) == {"router"}, answer
    assert answer["router"]["id"] == router["id"]
    assert answer["router"]["state"] == "Stopped"
    [stopped] = listed(admin.listRouters(networkid=network["id"], state="Stopped"), "router")
    assert stopped["id"] == router["id"]
    # A stop of a stopped router ends at once; a reboot is refused as CloudStack refuses it.
    assert admin.stopRouter(id=router["id"], forced=True)["router"]["state"] == "Stopped"
    api_error(lambda: admin.rebootRouter(id=router["id"]), 534, contains="Stopped")
    # A rule made meanwhile ends Active; the router gets it when it starts.
    rule = admin.createFirewallRule(ipaddressid=ip["id"], protocol="tcp", startport=22)
    assert rule["firewallrule"]["state"] == "Active"
    started = admin.startRouter(id=router["id"])["router"]
    assert started["state"] == "Running"
    assert started["appliedgeneration"] == started["desiredgeneration"]
    # Running already: the whole config is sent again.
    again = admin.startRouter(id=router["id"])["router"]
    assert again["state"] == "Running"
    assert again["appliedgeneration"] > started["appliedgeneration"]
    assert {"ROUTER.STOP", "ROUTER.START"} <= set(event_types(admin))
    api_error(lambda: admin.stopRouter(id=network["id"]), 431, contains="id")


def event_types(admin):
    return [e["type"] for e in admin.listEvents(fetch_list=True)]


@pytest.fixture
def ip(cloud):
    return cloud.public_ip(cloud.network())


def test_rule_changes_are_logged_as_events(admin, ip):
    before = event_types(admin)
    rule = admin.createFirewallRule(ipaddressid=ip["id"], protocol="tcp", startport=22)
    after_open = event_types(admin)
    assert after_open.count("FIREWALL.OPEN") > before.count("FIREWALL.OPEN")
    admin.deleteFirewallRule(id=rule["firewallrule"]["id"])
    after_close = event_types(admin)
    assert after_close.count("FIREWALL.CLOSE") > after_open.count("FIREWALL.CLOSE")
    for event in admin.listEvents(fetch_list=True):
        assert isinstance(event["id"], str) and isinstance(event["created"], str), event
        assert isinstance(event["level"], str), event


def test_list_nics_as_ansible_reads_them(admin, cloud):
    """Ansible's port-forward module finds a VM's address through listNics: the default NIC."""
    network = cloud.network()
    vm = cloud.vm(network, ipaddress=guest_prefix(network) + "60")
    [nic] = listed(admin.listNics(virtualmachineid=vm["id"]), "nic")
    assert nic["isdefault"] is True
    assert nic["ipaddress"] == guest_prefix(network) + "60"
    assert nic["virtualmachineid"] == vm["id"]
    assert nic["networkid"] == network["id"]
    assert nic["id"] == nic_in(vm, network)["id"]
    assert nic["macaddress"] == nic_in(vm, network)["macaddress"]

    [same] = listed(admin.listNics(virtualmachineid=vm["id"], nicid=nic["id"]), "nic")
    assert same == nic
    [same] = listed(admin.listNics(virtualmachineid=vm["id"], networkid=network["id"]), "nic")
    assert same == nic
    other = cloud.network()
    assert listed(admin.listNics(virtualmachineid=vm["id"], networkid=other["id"]), "nic") == []
    assert listed(admin.listNics(virtualmachineid=vm["id"], fordisplay=False), "nic") == []

    api_error(lambda: admin.listNics(), 431, contains="virtualmachineid")
    api_error(
        lambda: admin.listNics(virtualmachineid=vm["id"], nicid=vm["id"]), 431, contains="nicid"
    )
    api_error(lambda: admin.listNics(virtualmachineid=network["id"]), 431)


def test_one_account_may_give_two_networks_one_cidr(admin, cloud):
    """CloudStack gives every isolated network 10.1.1.0/24 unless told otherwise, so a playbook
    that makes two networks of one account on one CIDR must work: each has its own router."""
    made = []
    for _ in range(2):
        answer = admin.createNetwork(
            name=cloud.name("same"),
            displaytext="same cidr",
            zoneid=cloud.zone["id"],
            networkofferingid=cloud.offering_deny["id"],
            gateway="10.1.1.1",
            netmask="255.255.255.0",
        )
        made.append(answer["network"])
    assert [n["cidr"] for n in made] == ["10.1.1.0/24", "10.1.1.0/24"]
    assert made[0]["id"] != made[1]["id"]
    vms = [cloud.vm(n, ipaddress="10.1.1.77") for n in made]
    for vm, network in zip(vms, made):
        assert nic_in(vm, network)["ipaddress"] == "10.1.1.77"
    for vm in vms:
        admin.destroyVirtualMachine(id=vm["id"], expunge=True)
    for network in made:
        assert admin.deleteNetwork(id=network["id"]) == {"success": True}


def test_what_libcloud_reads_of_templates_and_offerings(admin):
    """libcloud's list_images reads every template's format, and ex_list_network_offerings
    every offering's serviceofferingid: the routers' system offering, which root admins list
    with issystem=true."""
    for template in listed(admin.listTemplates(templatefilter="featured"), "template"):
        assert template["format"] in ("DIR", "QCOW2", "RAW"), template
    [router] = listed(admin.listServiceOfferings(issystem=True), "serviceoffering")
    assert router["issystem"] is True and router["systemvmtype"] == "domainrouter"
    for offering in listed(admin.listNetworkOfferings(), "networkoffering"):
        assert offering["serviceofferingid"] == router["id"], offering
    vm_offerings = listed(admin.listServiceOfferings(), "serviceoffering")
    assert router["id"] not in ids(vm_offerings)


def test_domains_projects_capabilities_and_protocols(admin):
    [root] = listed(admin.listDomains(), "domain")
    assert root["name"] == "ROOT" and root["level"] == 0 and root["path"] == "ROOT"
    assert root["vmlimit"] == "Unlimited" and isinstance(root["vmtotal"], int)
    [same] = listed(admin.listDomains(id=root["id"], details="min"), "domain")
    assert "vmlimit" not in same and same["id"] == root["id"]
    api_error(lambda: admin.listDomains(details="lots"), 431, contains="details")

    assert listed(admin.listProjects(), "project") == []
    api_error(lambda: admin.listProjects(id=root["id"]), 431)

    capability = admin.listCapabilities()["capability"]
    assert capability["cloudstackversion"].startswith("4.")
    assert capability["securitygroupsenabled"] is False

    protocols = listed(admin.listNetworkProtocols(option="protocolnumber"), "networkprotocol")
    assert {(p["index"], p["name"]) for p in protocols} == {(1, "ICMP"), (6, "TCP"), (17, "UDP")}
    icmp = listed(admin.listNetworkProtocols(option="icmptype"), "networkprotocol")
    [echo] = [t for t in icmp if t["index"] == 8]
    assert echo["details"] == {"0": "Echo request"}
    api_error(lambda: admin.listNetworkProtocols(option="ports"), 431, contains="ports")


def test_update_and_restart_network_as_ansible_does(admin, cloud):
    """Ansible's cs_network renames through updateNetwork and restarts with restartNetwork
    (state=restarted, clean_up=false by default); both are jobs the cs client waits for."""
    network = cloud.network()
    ip = cloud.public_ip(network)
    rule = admin.createFirewallRule(ipaddressid=ip["id"], protocol="tcp", startport=22)
    updated = admin.updateNetwork(id=network["id"], name="renamed", displaytext="new words")
    assert updated["network"]["name"] == "renamed"
    assert updated["network"]["displaytext"] == "new words"
    [again] = listed(admin.listNetworks(id=network["id"]), "network")
    assert again["name"] == "renamed" and again["cidr"] == network["cidr"]
    api_error(
        lambda: admin.updateNetwork(id=network["id"], guestvmcidr="10.9.0.0/24"),
        431,
        contains="guestvmcidr",
    )

    for cleanup in (False, True):
        assert admin.restartNetwork(id=network["id"], cleanup=cleanup) == {"success": True}
        [rules] = [listed(admin.listFirewallRules(ipaddressid=ip["id"]), "firewallrule")]
        assert [r["id"] for r in rules] == [rule["firewallrule"]["id"]]
        assert rules[0]["state"] == "Active"
    api_error(
        lambda: admin.restartNetwork(id=network["id"], makeredundant=True),
        431,
        contains="makeredundant",
    )


def test_list_filters_a_client_picks_by_are_applied(admin, cloud):
    """A client picking an address for a balancer, or a network by offering or service, gets
    what it asked for, never the whole list."""
    network = cloud.network()
    vm = cloud.vm(network)
    plain = cloud.public_ip(network)
    balanced = cloud.public_ip(network)
    rule = admin.createLoadBalancerRule(
        publicipid=balanced["id"],
        name=cloud.name("pick"),
        algorithm="roundrobin",
        publicport=80,
        privateport=80,
    )
    admin.assignToLoadBalancerRule(id=rule["loadbalancer"]["id"], virtualmachineids=vm["id"])
    mine = {"associatednetworkid": network["id"]}
    picked = listed(admin.listPublicIpAddresses(forloadbalancing=True, **mine), "publicipaddress")
    assert [ip["id"] for ip in picked] == [balanced["id"]]
    every = ids(listed(admin.listPublicIpAddresses(**mine), "publicipaddress"))
    assert {plain["id"], balanced["id"]} <= set(every)
    assert listed(admin.listPublicIpAddresses(isstaticnat=True, **mine), "publicipaddress") == []
    unfiltered = listed(admin.listPublicIpAddresses(isstaticnat=False, **mine), "publicipaddress")
    assert ids(unfiltered) == every
    assert listed(admin.listPublicIpAddresses(forvirtualnetwork=False), "publicipaddress") == []

    by_offering = listed(
        admin.listNetworks(networkofferingid=cloud.offering_deny["id"]), "network"
    )
    assert network["id"] in ids(by_offering)
    assert all(n["networkofferingid"] == cloud.offering_deny["id"] for n in by_offering)
    assert network["id"] not in ids(
        listed(admin.listNetworks(networkofferingid=cloud.offering_allow["id"]), "network")
    )
    assert network["id"] in ids(
        listed(admin.listNetworks(supportedservices=["Lb", "Dhcp"]), "network")
    )
    assert listed(admin.listNetworks(supportedservices=["Vpn"]), "network") == []
    assert listed(admin.listNetworks(traffictype="Public"), "network") == []
    api_error(lambda: admin.listNetworks(traffictype="sideways"), 431, contains="traffictype")
