"""Apache Libcloud, as its users drive it: its CloudStack compute driver (networks, public IPs,
ingress and egress firewall rules, port forwards, nodes) and its CloudStack load-balancer
driver (balancers and their members), each object made, listed and deleted through the
driver's own methods.

VMs are deployed with cs: libcloud's create_node asks for the node's password and volumes,
which guestnet's VMs do not have.
"""

from urllib.parse import urlsplit

import pytest
from libcloud.compute.providers import get_driver
from libcloud.compute.types import Provider
from libcloud.loadbalancer.base import Algorithm
from libcloud.loadbalancer.providers import get_driver as get_lb_driver
from libcloud.loadbalancer.types import Provider as LbProvider

from support import admin_key, admin_secret, endpoint, listed


def connection():
    """The keyword arguments both drivers take for the server under test."""
    url = urlsplit(endpoint())
    return dict(
        key=admin_key(),
        secret=admin_secret(),
        secure=url.scheme == "https",
        host=url.hostname,
        port=url.port,
        path=url.path,
    )


@pytest.fixture
def compute():
    driver = get_driver(Provider.CLOUDSTACK)(**connection())
    # Jobs end in milliseconds here; libcloud polls every second by default.
    driver.connection.poll_interval = 0.05
    return driver


@pytest.fixture
def balancing():
    driver = get_lb_driver(LbProvider.CLOUDSTACK)(**connection())
    driver.connection.poll_interval = 0.05
    return driver


def test_the_inventory_reads_as_libcloud_reads_it(compute, cloud):
    [location] = [z for z in compute.list_locations() if z.id == cloud.zone["id"]]
    assert location.name == cloud.zone["name"]
    assert cloud.service_offering["id"] in {s.id for s in compute.list_sizes()}
    images = compute.list_images()
    assert cloud.template["id"] in {i.id for i in images}
    assert all(i.extra["format"] for i in images)
    offerings = compute.ex_list_network_offerings()
    assert {o.id for o in offerings} >= {cloud.offering_deny["id"], cloud.offering_allow["id"]}
    assert all(o.service_offering_id for o in offerings)


def test_networks_addresses_and_every_rule_kind(compute, admin, cloud):
    [location] = [z for z in compute.list_locations() if z.id == cloud.zone["id"]]
    [offering] = [
        o for o in compute.ex_list_network_offerings() if o.id == cloud.offering_deny["id"]
    ]
    network = compute.ex_create_network(
        display_text="made by libcloud",
        name=cloud.name("libcloud-net"),
        network_offering=offering,
        location=location,
        gateway="10.1.1.1",
        netmask="255.255.255.0",
    )
    assert network.id in {n.id for n in compute.ex_list_networks()}
    vm = cloud.vm({"id": network.id})
    [node] = [n for n in compute.list_nodes() if n.id == vm["id"]]
    assert node.private_ips == [vm["nic"][0]["ipaddress"]]

    address = compute.ex_allocate_public_ip(network_id=network.id)
    assert address.id in {a.id for a in compute.ex_list_public_ips()}

    ingress = compute.ex_create_firewall_rule(
        address, "203.0.113.0/24", "tcp", start_port=2222, end_port=2222
    )
    assert ingress.id in {r.id for r in compute.ex_list_firewall_rules()}
    egress = compute.ex_create_egress_firewall_rule(
        network.id, "10.1.1.0/24", "tcp", start_port=443, end_port=443
    )
    assert egress.id in {r.id for r in compute.ex_list_egress_firewall_rules()}
    forward = compute.ex_create_port_forwarding_rule(
        node,
        address,
        private_port=22,
        public_port=2222,
        protocol="tcp",
        openfirewall=False,
        network_id=network.id,
    )
    listed_forwards = compute.ex_list_port_forwarding_rules(ipaddress_id=address.id)
    assert [r.id for r in listed_forwards] == [forward.id]
    assert listed_forwards[0].node.id == vm["id"]

    assert compute.ex_delete_port_forwarding_rule(node, forward)
    assert compute.ex_list_port_forwarding_rules(ipaddress_id=address.id) == []
    assert compute.ex_delete_egress_firewall_rule(egress)
    assert compute.ex_delete_firewall_rule(ingress)
    assert ingress.id not in {r.id for r in compute.ex_list_firewall_rules()}
    assert compute.ex_release_public_ip(address)
    assert address.id not in {a.id for a in compute.ex_list_public_ips()}

    admin.destroyVirtualMachine(id=vm["id"], expunge=True)
    # libcloud sends forced=None: a boolean that is not "true" is false, as on CloudStack.
    assert compute.ex_delete_network(network)
    assert network.id not in {n.id for n in compute.ex_list_networks()}


def test_balancers_and_members(balancing, admin, cloud):
    network = cloud.network()
    vms = [cloud.vm(network) for _ in range(2)]
    members = [
        type("Member", (), {"id": vm["id"], "port": None})()  # the driver reads id only
        for vm in vms
    ]
    balancer = balancing.create_balancer(
        name=cloud.name("libcloud-lb"),
        members=members[:1],
        protocol="tcp",
        port=80,
        algorithm=Algorithm.LEAST_CONNECTIONS,
        private_port=8080,
        network_id=network["id"],
    )
    assert balancer is not None
    assert balancer.id in {b.id for b in balancing.list_balancers()}
    assert balancer.ex_private_port == "8080"
    assert [m.id for m in balancing.balancer_list_members(balancer)] == [vms[0]["id"]]

    assert balancing.balancer_attach_member(balancer, members[1])
    assert {m.id for m in balancing.balancer_list_members(balancer)} == {v["id"] for v in vms}
    assert balancing.balancer_detach_member(balancer, members[0])
    [left] = balancing.balancer_list_members(balancer)
    assert left.id == vms[1]["id"] and left.ip == vms[1]["nic"][0]["ipaddress"]

    public_ip = balancer.ex_public_ip_id
    balancing.destroy_balancer(balancer)
    assert balancer.id not in {b.id for b in balancing.list_balancers()}
    assert listed(admin.listPublicIpAddresses(id=public_ip), "publicipaddress") == []
