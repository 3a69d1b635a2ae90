"""Ansible, as its users drive it: the `ansible` package's bundled ngine_io.cloudstack
collection runs playbooks against the server, with the endpoint and keys from the
environment as its documentation says.

A playbook makes a network, a public IP, ingress and egress firewall rules, a port forward and
a load balancer with members, restarts the network, then removes them all; another enables and
disables static NAT; another stops, starts and reboots a router. Each playbook runs
twice, and the second run must change nothing; `--check` must report what it would change
and change nothing.
VMs are deployed with cs between the plays (the collection's cs_instance needs volumes, SSH
key pairs and hypervisors, which guestnet does not have).
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from support import admin_key, admin_secret, endpoint, listed

# Every module runs on the test's own Python, which has the cs library the collection uses.
HEADER = """\
- hosts: localhost
  connection: local
  gather_facts: false
  module_defaults:
    group/ngine_io.cloudstack.cloudstack:
      zone: "{zone}"
  tasks:
"""


def run_playbook(tmp_path, name, tasks, variables, check=False):
    """Runs a playbook of `tasks` (YAML text) with `variables`; returns the recap of
    localhost: {'ok': n, 'changed': n, 'failed': n, ...}. A failed task fails the test with
    Ansible's output."""
    path = tmp_path / f"{name}.yml"
    path.write_text(HEADER.format(zone=variables["zone"]) + textwrap.indent(tasks, "    "))
    env = dict(os.environ)
    env.update(
        CLOUDSTACK_ENDPOINT=endpoint(),
        CLOUDSTACK_KEY=admin_key(),
        CLOUDSTACK_SECRET=admin_secret(),
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        ANSIBLE_HOME=str(tmp_path / "ansible-home"),
    )
    argv = [
        str(Path(sys.executable).with_name("ansible-playbook")),
        "-i",
        "localhost,",
        "-e",
        json.dumps(variables),
        str(path),
    ]
    if check:
        argv.append("--check")
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"ansible-playbook printed no JSON report:\n{done.stdout}\n{done.stderr}")
    stats = report["stats"]["localhost"]
    if done.returncode != 0 or stats.get("failures") or stats.get("unreachable"):
        failed = [
            (task["task"]["name"], result)
            for play in report["plays"]
            for task in play["tasks"]
            for result in task["hosts"].values()
            if result.get("failed")
        ]
        pytest.fail(f"{name} failed: {json.dumps(failed, indent=1)}\n{done.stderr}")
    return stats


NETWORK = """\
- name: the network
  ngine_io.cloudstack.cs_network:
    name: "{{ network }}"
    display_text: made by ansible
    network_offering: "{{ offering }}"
    gateway: 10.1.1.1
    netmask: 255.255.255.0
"""

RULES = """\
- name: a public IP
  ngine_io.cloudstack.cs_ip_address:
    network: "{{ network }}"
    ip_address: "{{ ip }}"
- name: ssh from the office
  ngine_io.cloudstack.cs_firewall:
    ip_address: "{{ ip }}"
    protocol: tcp
    start_port: 22
    end_port: 22
    cidrs: [198.51.100.0/24]
- name: web from anywhere
  ngine_io.cloudstack.cs_firewall:
    ip_address: "{{ ip }}"
    protocol: tcp
    start_port: 80
    end_port: 80
- name: egress to dns
  ngine_io.cloudstack.cs_firewall:
    network: "{{ network }}"
    type: egress
    protocol: udp
    start_port: 53
    end_port: 53
    cidrs: [10.1.1.0/24]
- name: ssh to the first web server
  ngine_io.cloudstack.cs_portforward:
    ip_address: "{{ ip }}"
    vm: "{{ vms[0] }}"
    network: "{{ network }}"
    public_port: 22
    private_port: 22
    open_firewall: false
- name: the web balancer
  ngine_io.cloudstack.cs_loadbalancer_rule:
    name: "{{ balancer }}"
    ip_address: "{{ ip }}"
    network: "{{ network }}"
    algorithm: leastconn
    public_port: 80
    private_port: 8080
- name: its members
  ngine_io.cloudstack.cs_loadbalancer_rule_member:
    name: "{{ balancer }}"
    ip_address: "{{ ip }}"
    vms: "{{ vms }}"
"""

# The member module fails when its balancer is gone (on CloudStack too): members go first,
# in a playbook of their own.
NO_MEMBERS = """\
- name: no members
  ngine_io.cloudstack.cs_loadbalancer_rule_member:
    name: "{{ balancer }}"
    ip_address: "{{ ip }}"
    vms: "{{ vms }}"
    state: absent
"""

TEARDOWN = """\
- name: no balancer
  ngine_io.cloudstack.cs_loadbalancer_rule:
    name: "{{ balancer }}"
    ip_address: "{{ ip }}"
    public_port: 80
    state: absent
- name: no forward
  ngine_io.cloudstack.cs_portforward:
    ip_address: "{{ ip }}"
    public_port: 22
    private_port: 22
    state: absent
- name: no egress rule
  ngine_io.cloudstack.cs_firewall:
    network: "{{ network }}"
    type: egress
    protocol: udp
    start_port: 53
    end_port: 53
    cidrs: [10.1.1.0/24]
    state: absent
- name: no web rule
  ngine_io.cloudstack.cs_firewall:
    ip_address: "{{ ip }}"
    protocol: tcp
    start_port: 80
    end_port: 80
    state: absent
- name: no ssh rule
  ngine_io.cloudstack.cs_firewall:
    ip_address: "{{ ip }}"
    protocol: tcp
    start_port: 22
    end_port: 22
    cidrs: [198.51.100.0/24]
    state: absent
"""

# Apart from the rules: every rule module looks the address up and fails when it is gone, on
# CloudStack too, so a teardown that also releases it cannot run twice.
NO_IP = """\
- name: no public IP
  ngine_io.cloudstack.cs_ip_address:
    ip_address: "{{ ip }}"
    state: absent
"""

RESTART = """\
- name: restart the network
  ngine_io.cloudstack.cs_network:
    name: "{{ network }}"
    state: restarted
"""

NO_NETWORK = """\
- name: no network
  ngine_io.cloudstack.cs_network:
    name: "{{ network }}"
    state: absent
"""


def free_ip(admin, cloud):
    """A public address no one holds now."""
    free = [
        ip["ipaddress"]
        for ip in admin.listPublicIpAddresses(allocatedonly=False, fetch_list=True)
        if ip.get("state") == "Free"
    ]
    assert free, "no free public address left"
    return free[-1]


def test_a_playbook_makes_and_removes_every_rule_kind_idempotently(admin, cloud, tmp_path):
    variables = {
        "zone": cloud.zone["name"],
        "network": cloud.name("ansible-net"),
        "offering": cloud.offering_deny["name"],
        "balancer": cloud.name("ansible-lb"),
    }
    made = run_playbook(tmp_path, "network", NETWORK, variables)
    assert made["changed"] == 1, made
    again = run_playbook(tmp_path, "network", NETWORK, variables)
    assert again["changed"] == 0, again
    [network] = listed(admin.listNetworks(name=variables["network"]), "network")
    assert network["cidr"] == "10.1.1.0/24" and network["displaytext"] == "made by ansible"
    # A new description: cs_network updates the network, sending its offering along.
    renamed = run_playbook(
        tmp_path, "network", NETWORK.replace("made by ansible", "kept by ansible"), variables
    )
    assert renamed["changed"] == 1, renamed
    [network] = listed(admin.listNetworks(name=variables["network"]), "network")
    assert network["displaytext"] == "kept by ansible"

    vms = [cloud.vm(network)["name"] for _ in range(2)]
    variables.update(ip=free_ip(admin, cloud), vms=vms)

    made = run_playbook(tmp_path, "rules", RULES, variables)
    assert made["changed"] == 7, made
    again = run_playbook(tmp_path, "rules", RULES, variables)
    assert again["changed"] == 0, again
    checked = run_playbook(tmp_path, "rules", RULES, variables, check=True)
    assert checked["changed"] == 0, checked

    # What Ansible made is what the API shows.
    [ip] = listed(admin.listPublicIpAddresses(ipaddress=variables["ip"]), "publicipaddress")
    assert ip["associatednetworkid"] == network["id"]
    ingress = listed(admin.listFirewallRules(ipaddressid=ip["id"]), "firewallrule")
    assert sorted((r["startport"], r["cidrlist"]) for r in ingress) == [
        (22, "198.51.100.0/24"),
        (80, "0.0.0.0/0"),
    ]
    [egress] = listed(admin.listEgressFirewallRules(networkid=network["id"]), "firewallrule")
    assert (egress["protocol"], egress["startport"]) == ("udp", 53)
    [forward] = listed(admin.listPortForwardingRules(ipaddressid=ip["id"]), "portforwardingrule")
    assert forward["virtualmachinename"] == vms[0] and forward["privateport"] == "22"
    [balancer] = listed(admin.listLoadBalancerRules(publicipid=ip["id"]), "loadbalancerrule")
    assert balancer["algorithm"] == "leastconn" and balancer["state"] == "Active"
    members = listed(
        admin.listLoadBalancerRuleInstances(id=balancer["id"]), "loadbalancerruleinstance"
    )
    assert sorted(m["name"] for m in members) == sorted(vms)

    restarted = run_playbook(tmp_path, "restart", RESTART, variables)
    assert restarted["changed"] == 1, restarted

    removed = run_playbook(tmp_path, "no-members", NO_MEMBERS, variables)
    assert removed["changed"] == 1, removed
    again = run_playbook(tmp_path, "no-members", NO_MEMBERS, variables)
    assert again["changed"] == 0, again
    assert "loadbalancerruleinstance" not in admin.listLoadBalancerRuleInstances(id=balancer["id"])

    checked = run_playbook(tmp_path, "teardown", TEARDOWN, variables, check=True)
    assert checked["changed"] == 5, checked
    assert len(listed(admin.listFirewallRules(ipaddressid=ip["id"]), "firewallrule")) == 2
    assert len(listed(admin.listLoadBalancerRules(publicipid=ip["id"]), "loadbalancerrule")) == 1
    removed = run_playbook(tmp_path, "teardown", TEARDOWN, variables)
    assert removed["changed"] == 5, removed
    again = run_playbook(tmp_path, "teardown", TEARDOWN, variables)
    assert again["changed"] == 0, again
    assert listed(admin.listFirewallRules(ipaddressid=ip["id"]), "firewallrule") == []
    assert listed(admin.listEgressFirewallRules(networkid=network["id"]), "firewallrule") == []
    assert listed(admin.listLoadBalancerRules(publicipid=ip["id"]), "loadbalancerrule") == []
    assert listed(admin.listPortForwardingRules(ipaddressid=ip["id"]), "portforwardingrule") == []
    released = run_playbook(tmp_path, "no-ip", NO_IP, variables)
    assert released["changed"] == 1, released
    again = run_playbook(tmp_path, "no-ip", NO_IP, variables)
    assert again["changed"] == 0, again
    assert listed(admin.listPublicIpAddresses(ipaddress=variables["ip"]), "publicipaddress") == []

    for vm in listed(admin.listVirtualMachines(networkid=network["id"]), "virtualmachine"):
        admin.destroyVirtualMachine(id=vm["id"], expunge=True)
    gone = run_playbook(tmp_path, "no-network", NO_NETWORK, variables)
    assert gone["changed"] == 1, gone
    again = run_playbook(tmp_path, "no-network", NO_NETWORK, variables)
    assert again["changed"] == 0, again
    assert listed(admin.listNetworks(name=variables["network"]), "network") == []


STATIC_NAT = """\
- name: a public IP for the web server alone
  ngine_io.cloudstack.cs_ip_address:
    network: "{{ network }}"
    ip_address: "{{ nat_ip }}"
    tags:
      - key: role
        value: web
- name: static NAT to the web server
  ngine_io.cloudstack.cs_staticnat:
    ip_address: "{{ nat_ip }}"
    vm: "{{ vm }}"
    network: "{{ network }}"
"""

NO_STATIC_NAT = """\
- name: no static NAT
  ngine_io.cloudstack.cs_staticnat:
    ip_address: "{{ nat_ip }}"
    state: absent
"""


def test_a_playbook_enables_and_disables_static_nat_idempotently(admin, cloud, tmp_path):
    network = cloud.network()
    vm = cloud.vm(network)
    variables = {
        "zone": cloud.zone["name"],
        "network": network["name"],
        "vm": vm["name"],
        "nat_ip": free_ip(admin, cloud),
    }

    def shown():
        [ip] = listed(
            admin.listPublicIpAddresses(ipaddress=variables["nat_ip"]), "publicipaddress"
        )
        return ip

    made = run_playbook(tmp_path, "static-nat", STATIC_NAT, variables)
    assert made["changed"] == 2, made
    again = run_playbook(tmp_path, "static-nat", STATIC_NAT, variables)
    assert again["changed"] == 0, again
    checked = run_playbook(tmp_path, "static-nat", STATIC_NAT, variables, check=True)
    assert checked["changed"] == 0, checked
    ip = shown()
    assert ip["isstaticnat"] is True and ip["virtualmachineid"] == vm["id"], ip
    # cs_ip_address tagged the address (createTags), and found the tag again (listTags).
    assert [(t["key"], t["value"]) for t in ip["tags"]] == [("role", "web")], ip

    checked = run_playbook(tmp_path, "no-static-nat", NO_STATIC_NAT, variables, check=True)
    assert checked["changed"] == 1, checked
    assert shown()["isstaticnat"] is True, "--check changed nothing"
    removed = run_playbook(tmp_path, "no-static-nat", NO_STATIC_NAT, variables)
    assert removed["changed"] == 1, removed
    again = run_playbook(tmp_path, "no-static-nat", NO_STATIC_NAT, variables)
    assert again["changed"] == 0, again
    assert shown()["isstaticnat"] is False
    admin.disassociateIpAddress(id=shown()["id"])


ROUTER = """\
- name: the network's router, {{ wanted }}
  ngine_io.cloudstack.cs_router:
    name: "{{ router }}"
    state: "{{ wanted }}"
"""


def test_a_playbook_stops_starts_and_reboots_a_router(admin, cloud, tmp_path):
    """cs_router: stopRouter and startRouter when the router is not already so (a second run
    changes nothing, and --check changes nothing), rebootRouter every time it is asked."""
    network = cloud.network()
    [router] = listed(admin.listRouters(networkid=network["id"]), "router")
    variables = {"zone": cloud.zone["name"], "router": router["name"], "wanted": "stopped"}

    def state():
        [now] = listed(admin.listRouters(networkid=network["id"]), "router")
        return now

    assert run_playbook(tmp_path, "router", ROUTER, variables)["changed"] == 1
    assert state()["state"] == "Stopped"
    assert run_playbook(tmp_path, "router", ROUTER, variables)["changed"] == 0
    variables["wanted"] = "started"
    assert run_playbook(tmp_path, "router", ROUTER, variables, check=True)["changed"] == 1
    assert state()["state"] == "Stopped", "--check changed nothing"
    assert run_playbook(tmp_path, "router", ROUTER, variables)["changed"] == 1
    started = state()
    assert started["state"] == "Running"
    assert started["appliedgeneration"] == started["desiredgeneration"]
    assert run_playbook(tmp_path, "router", ROUTER, variables)["changed"] == 0
    variables["wanted"] = "restarted"
    assert run_playbook(tmp_path, "router", ROUTER, variables)["changed"] == 1
    rebooted = state()
    assert rebooted["state"] == "Running"
    assert rebooted["appliedgeneration"] > started["appliedgeneration"]
