"""Legacy cloudmonkey 5.3.3.1 on Python 2.7, run as its users run it: `sync` discovers the
commands from listApis, then each rule kind is created, listed and deleted with its verbs
(`create firewallrule …`), and a refused request is shown with its code and text.

cloudmonkey runs from a virtualenv of its own under the target directory, made with a Python
2.7 installed through pyenv (virtualenv < 20.22 still makes Python 2 environments) and remade
only when the pins below change.
"""

import fcntl
import glob
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from support import admin_key, admin_secret, endpoint, listed

PINS = ["virtualenv<20.22", "cloudmonkey==5.3.3.1"]


def target_dir():
    configured = os.environ.get("CARGO_TARGET_DIR")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[2] / "target"


def python2():
    """The pyenv-installed Python 2.7; the test fails (it does not skip) without one."""
    roots = [os.environ.get("PYENV_ROOT"), os.path.expanduser("~/.pyenv")]
    if shutil.which("pyenv"):
        found = subprocess.run(["pyenv", "root"], capture_output=True, text=True)
        if found.returncode == 0:
            roots.insert(0, found.stdout.strip())
    for root in filter(None, roots):
        pattern = os.path.join(root, "versions", "2.7.*", "bin", "python")
        for candidate in sorted(glob.glob(pattern)):
            return candidate
    pytest.fail("no Python 2.7 under pyenv (pyenv install 2.7.18): legacy cloudmonkey needs one")


def run(argv, **kwargs):
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, **kwargs)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(map(str, argv))} failed:\n{done.stdout}\n{done.stderr}")
    return done


@pytest.fixture(scope="session")
def cloudmonkey_bin():
    """cloudmonkey in its own virtualenv, made once for these pins (two suites running at once
    share it: a file lock serialises the making)."""
    target = target_dir()
    target.mkdir(parents=True, exist_ok=True)
    venv = target / "cloudmonkey-venv"
    stamp = venv / ".guestnet-pins"
    binary = venv / "bin" / "cloudmonkey"
    with open(target / "cloudmonkey-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.is_file() and stamp.is_file() and stamp.read_text() == "\n".join(PINS):
            return binary
        shutil.rmtree(venv, ignore_errors=True)
        tool = target / "cloudmonkey-virtualenv"
        shutil.rmtree(tool, ignore_errors=True)
        py2 = python2()
        quiet = ["--quiet", "--disable-pip-version-check"]
        run([py2, "-m", "pip", "install", *quiet, "--target", str(tool), PINS[0]])
        run(
            [py2, "-m", "virtualenv", "--quiet", str(venv)],
            env={**os.environ, "PYTHONPATH": str(tool)},
        )
        run([str(venv / "bin" / "pip"), "install", *quiet, PINS[1]])
        stamp.write_text("\n".join(PINS))
        return binary


@pytest.fixture
def monkey(cloudmonkey_bin, tmp_path):
    """Runs one cloudmonkey command line against the server; returns (exit status, the JSON
    it printed, all it printed)."""
    config = tmp_path / "cloudmonkey.cfg"
    config.write_text(
        "\n".join(
            [
                "[core]",
                "profile = guestnet",
                "asyncblock = true",
                "paramcompletion = true",
                f"history_file = {tmp_path / 'history'}",
                f"cache_file = {tmp_path / 'cache'}",
                f"log_file = {tmp_path / 'log'}",
                "",
                "[ui]",
                "color = false",
                "prompt = > ",
                "display = json",
                "",
                "[guestnet]",
                f"url = {endpoint()}",
                f"apikey = {admin_key()}",
                f"secretkey = {admin_secret()}",
                "expires = 600",
                "signatureversion = 3",
                "timeout = 60",
                "verifysslcert = true",
                "",
            ]
        )
    )

    def call(*words):
        done = subprocess.run(
            [str(cloudmonkey_bin), "-c", str(config), *words],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "HOME": str(tmp_path)},
        )
        # Some lines come coloured whatever the config says.
        out = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout)
        # Async commands print a spinner before the job's JSON.
        start = out.find("{")
        answer = json.loads(out[start:]) if start >= 0 else None
        return done.returncode, answer, out + done.stderr

    return call


def result(answer, key):
    """The object of an async command's answer (cloudmonkey prints the whole job)."""
    assert answer["jobstatus"] == 1, answer
    return answer["jobresult"][key]


def test_sync_then_every_rule_kind_and_an_error(monkey, admin, cloud):
    status, _, out = monkey("sync")
    assert status == 0, out
    apis = admin.listApis()["count"]
    assert f"{apis} APIs discovered and cached" in out, out

    status, zones, out = monkey("list", "zones", "filter=id,name")
    assert status == 0, out
    assert cloud.zone["id"] in {z["id"] for z in zones["zone"]}

    network = cloud.network()
    vm = cloud.vm(network)
    ip = cloud.public_ip(network)

    status, answer, out = monkey(
        "create", "firewallrule", f"ipaddressid={ip['id']}", "protocol=tcp", "startport=22",
        "endport=22", "cidrlist=198.51.100.0/24",
    )  # fmt: skip
    assert status == 0, out
    ingress = result(answer, "firewallrule")
    assert ingress["state"] == "Active" and ingress["cidrlist"] == "198.51.100.0/24"
    _, rules, out = monkey("list", "firewallrules", f"ipaddressid={ip['id']}")
    assert [r["id"] for r in rules["firewallrule"]] == [ingress["id"]], out

    status, answer, out = monkey(
        "create", "egressfirewallrule", f"networkid={network['id']}", "protocol=tcp",
        "startport=443", "endport=443",
    )  # fmt: skip
    assert status == 0, out
    egress = result(answer, "firewallrule")
    _, rules, out = monkey("list", "egressfirewallrules", f"networkid={network['id']}")
    assert [r["id"] for r in rules["firewallrule"]] == [egress["id"]], out

    status, answer, out = monkey(
        "create", "portforwardingrule", f"ipaddressid={ip['id']}", "protocol=tcp",
        "publicport=2222", "privateport=22", f"virtualmachineid={vm['id']}",
        "openfirewall=false",
    )  # fmt: skip
    assert status == 0, out
    forward = result(answer, "portforwardingrule")
    assert forward["virtualmachineid"] == vm["id"]
    _, rules, out = monkey("list", "portforwardingrules", f"ipaddressid={ip['id']}")
    assert [r["id"] for r in rules["portforwardingrule"]] == [forward["id"]], out

    status, answer, out = monkey(
        "create", "loadbalancerrule", f"publicipid={ip['id']}", f"name={cloud.name('cm-lb')}",
        "algorithm=roundrobin", "publicport=80", "privateport=8080", "openfirewall=false",
    )  # fmt: skip
    assert status == 0, out
    balancer = result(answer, "loadbalancer")
    status, answer, out = monkey(
        "assign", "toloadbalancerrule", f"id={balancer['id']}", f"virtualmachineids={vm['id']}"
    )
    assert status == 0 and result(answer, "success") is True, out
    _, members, out = monkey("list", "loadbalancerruleinstances", f"id={balancer['id']}")
    assert [m["id"] for m in members["loadbalancerruleinstance"]] == [vm["id"]], out

    # A refused request: cloudmonkey shows CloudStack's code and text and exits non-zero.
    status, answer, out = monkey(
        "create", "firewallrule", f"ipaddressid={ip['id']}", "protocol=tcp", "startport=0"
    )
    assert status != 0, out
    assert "Error 431: startport is an invalid value: 0" in out, out
    assert answer["errorcode"] == 431, answer

    for verb, noun, rule in [
        ("delete", "loadbalancerrule", balancer),
        ("delete", "portforwardingrule", forward),
        ("delete", "egressfirewallrule", egress),
        ("delete", "firewallrule", ingress),
    ]:
        status, answer, out = monkey(verb, noun, f"id={rule['id']}")
        assert status == 0 and result(answer, "success") is True, out
    assert listed(admin.listFirewallRules(ipaddressid=ip["id"]), "firewallrule") == []
    assert listed(admin.listEgressFirewallRules(networkid=network["id"]), "firewallrule") == []
    assert listed(admin.listPortForwardingRules(ipaddressid=ip["id"]), "portforwardingrule") == []
    assert listed(admin.listLoadBalancerRules(publicipid=ip["id"]), "loadbalancerrule") == []
