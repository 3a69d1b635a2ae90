"""What guests are given: the zone's DNS servers (updateZone), the physical network's guest
VLANs (listPhysicalNetworks, updatePhysicalNetwork), each network's VLAN and DNS domain, and
each NIC's MAC address."""

from support import api_error, listed, nic_in


def physical_network(admin, cloud):
    [pn] = listed(admin.listPhysicalNetworks(zoneid=cloud.zone["id"]), "physicalnetwork")
    assert pn["zoneid"] == cloud.zone["id"]
    assert pn["isolationmethods"] == "VLAN" and pn["state"] == "Enabled"
    return pn


def test_a_vm_keeps_the_mac_it_asked_for_and_its_network_shows_its_vlan(admin, cloud):
    network = cloud.network(networkdomain="guests.example.org")
    assert network["networkdomain"] == "guests.example.org"
    vlan = int(network["vlan"])
    assert network["broadcasturi"] == f"vlan://{vlan}"
    [listed_net] = listed(admin.listNetworks(id=network["id"]), "network")
    assert listed_net["vlan"] == str(vlan) and listed_net["broadcasturi"] == f"vlan://{vlan}"

    vm = cloud.vm(network, macaddress="0A:11:22:33:44:55")
    nic = nic_in(vm, network)
    assert nic["macaddress"] == "0a:11:22:33:44:55"
    [again] = listed(admin.listVirtualMachines(id=vm["id"]), "virtualmachine")
    assert nic_in(again, network)["macaddress"] == "0a:11:22:33:44:55"
    assert nic_in(again, network)["broadcasturi"] == f"vlan://{vlan}"

    # The MAC is the NIC's alone in the zone; a malformed or multicast one is refused.
    taken = api_error(lambda: cloud.vm(network, macaddress="0a:11:22:33:44:55"), 431)
    assert "already in use" in taken.error["errortext"]
    api_error(lambda: cloud.vm(network, macaddress="01:00:5e:00:00:01"), 431, contains="macaddress")
    api_error(lambda: cloud.vm(network, macaddress="0a:11:22"), 431, contains="macaddress")

    # Without one, a locally administered MAC is made.
    other = cloud.vm(network)
    assert nic_in(other, network)["macaddress"].startswith("02:00:")


def without(ranges, vlan):
    """The VLAN ranges `ranges` ("100-199,300-349") with `vlan` taken out."""
    out = []
    for part in ranges.split(","):
        low, _, high = part.partition("-")
        low, high = int(low), int(high or low)
        for a, b in ((low, min(high, vlan - 1)), (max(low, vlan + 1), high)):
            if a <= b:
                out.append(f"{a}-{b}")
    return ",".join(out)


def test_the_guest_vlan_range_can_widen_but_not_drop_vlans_in_use(admin, cloud):
    pn = physical_network(admin, cloud)
    before = pn["vlan"]
    network = cloud.network()
    vlan = int(network["vlan"])

    widened = admin.updatePhysicalNetwork(id=pn["id"], vlan=f"{before},4000-4009")
    assert widened["physicalnetwork"]["vlan"] == f"{before},4000-4009"
    try:
        # Every range but the network's own VLAN: the refusal names that VLAN and its network
        # (other networks of the suite hold VLANs too, so a range leaving all of them out would
        # name only the first few).
        narrowed = without(f"{before},4000-4009", vlan)
        error = api_error(lambda: admin.updatePhysicalNetwork(id=pn["id"], vlan=narrowed), 431)
        assert f"{vlan} (network {network['name']})" in error.error["errortext"], error.error
        api_error(lambda: admin.updatePhysicalNetwork(id=pn["id"], vlan="4000-4009"), 431)
        api_error(lambda: admin.updatePhysicalNetwork(id=pn["id"], vlan="0-10"), 431, contains="4094")
    finally:
        restored = admin.updatePhysicalNetwork(id=pn["id"], vlan=before)
    assert restored["physicalnetwork"]["vlan"] == before


def test_the_zone_dns_servers_are_set_by_update_zone(admin, cloud):
    [zone] = listed(admin.listZones(id=cloud.zone["id"]), "zone")
    dns1, dns2 = zone.get("dns1", ""), zone.get("dns2", "")
    try:
        answer = admin.updateZone(id=cloud.zone["id"], dns1="192.0.2.53", dns2="198.51.100.53")
        assert answer["zone"]["dns1"] == "192.0.2.53"
        assert answer["zone"]["dns2"] == "198.51.100.53"
        network = cloud.network()
        assert network["dns1"] == "192.0.2.53"
        api_error(lambda: admin.updateZone(id=cloud.zone["id"], dns1="192.0.2.999"), 431)
    finally:
        admin.updateZone(id=cloud.zone["id"], dns1=dns1, dns2=dns2)
