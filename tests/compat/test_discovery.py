"""Discovery: listApis describes every command truthfully, in the form CloudStack clients
(cs, legacy cloudmonkey, cmk) build their command tables from."""

import pytest
from cs import CloudStackApiException

from support import REQUIRED_COMMANDS, api_error, listed

ASYNC = {
    "createFirewallRule", "deleteFirewallRule", "updateFirewallRule",
    "createEgressFirewallRule", "deleteEgressFirewallRule", "updateEgressFirewallRule",
    "createPortForwardingRule", "deletePortForwardingRule", "updatePortForwardingRule",
    "disableStaticNat", "createIpForwardingRule", "deleteIpForwardingRule",
    "createTags", "deleteTags",
    "createLoadBalancerRule", "deleteLoadBalancerRule", "updateLoadBalancerRule",
    "assignToLoadBalancerRule", "removeFromLoadBalancerRule",
    "createLBStickinessPolicy", "deleteLBStickinessPolicy",
    "createLBHealthCheckPolicy", "deleteLBHealthCheckPolicy",
    "updateLBStickinessPolicy", "updateLBHealthCheckPolicy",
    "associateIpAddress", "disassociateIpAddress", "deleteNetwork", "updateNetwork",
    "restartNetwork", "rebootRouter", "startRouter", "stopRouter",
    "addIpToNic", "removeIpFromNic",
    "deployVirtualMachine", "destroyVirtualMachine", "updatePhysicalNetwork",
}  # fmt: skip
SYNC = REQUIRED_COMMANDS - ASYNC


@pytest.fixture(scope="module")
def apis(admin):
    answer = admin.listApis()
    assert set(answer) == {"count", "api"}, sorted(answer)
    assert answer["count"] == len(answer["api"])
    by_name = {}
    for api in answer["api"]:
        assert api["name"] not in by_name, f"{api['name']} is listed twice"
        by_name[api["name"]] = api
    return by_name


def test_every_api_is_described_with_the_right_types(apis):
    for name, api in apis.items():
        assert isinstance(api["description"], str) and api["description"], name
        assert isinstance(api["isasync"], bool), name
        if "related" in api:
            assert isinstance(api["related"], str), name
        if "since" in api:
            assert isinstance(api["since"], str), name
        assert isinstance(api["params"], list), name
        for param in api["params"]:
            where = f"{name}.{param.get('name')}"
            for field in ("name", "type", "description"):
                assert isinstance(param.get(field), str), f"{where}: {field} must be a string"
            assert param["name"] == param["name"].lower(), f"{where}: names are lower case"
            assert isinstance(param.get("required"), bool), f"{where}: required must be a bool"
            assert isinstance(param.get("length"), int), f"{where}: length must be an int"
            assert not isinstance(param["length"], bool), where
            if "related" in param:
                assert isinstance(param["related"], str), where
        assert isinstance(api["response"], list), name
        for field in api["response"]:
            assert isinstance(field, dict) and isinstance(field.get("name"), str), name


def test_every_command_is_listed(apis):
    assert sorted(REQUIRED_COMMANDS - set(apis)) == []


def test_async_flags_match_cloudstack(apis):
    wrong = {n for n in ASYNC if not apis[n]["isasync"]}
    wrong |= {n for n in SYNC if apis[n]["isasync"]}
    assert sorted(wrong) == []


def test_create_firewall_rule_is_described_like_cloudstack(apis):
    params = {p["name"]: p for p in apis["createFirewallRule"]["params"]}
    assert params["ipaddressid"]["required"] is True
    assert params["ipaddressid"]["type"] == "uuid"
    assert params["protocol"]["required"] is True
    assert params["startport"]["required"] is False
    assert params["startport"]["type"] == "integer"
    assert params["cidrlist"]["type"] == "list"
    assert params["cidrlist"]["required"] is False


def test_listall_and_name_filter(admin, apis):
    everything = admin.listApis(listall=True)
    assert everything["count"] == len(apis)
    [one] = listed(admin.listApis(name="createFirewallRule"), "api")
    assert one["name"] == "createFirewallRule"


def test_required_parameters_are_really_required(admin, apis):
    """Calling a command without its required parameters names one of them, as CloudStack
    does; so the listed `required` flags are what the server enforces."""
    checked = 0
    for name, api in sorted(apis.items()):
        required = [p["name"] for p in api["params"] if p["required"]]
        if not required:
            continue
        e = api_error(lambda: getattr(admin, name)(), 431, contains="due to missing parameter")
        named = e.error["errortext"].rsplit("due to missing parameter", 1)[1].split()
        assert named and named[0] in required, (name, e.error["errortext"], required)
        checked += 1
    assert checked >= 20


def test_list_commands_without_required_parameters_answer(admin, apis):
    for name, api in sorted(apis.items()):
        if not name.startswith("list") or any(p["required"] for p in api["params"]):
            continue
        try:
            answer = getattr(admin, name)()
        except CloudStackApiException as e:
            assert e.response is not None and e.response.status_code == 431, (name, e.error)
        else:
            assert isinstance(answer, dict), (name, answer)
            assert len([k for k in answer if k != "count"]) <= 1, (name, sorted(answer))


def test_prometheus_metrics_count_requests_jobs_and_applies(admin, cloud):
    """/metrics beside the API: requests by command and result, job durations, router applies
    and their latency, and how far each router is behind."""
    import requests

    from support import endpoint

    network = cloud.network()
    ip = cloud.public_ip(network)
    admin.createFirewallRule(ipaddressid=ip["id"], protocol="tcp", startport=9101)
    base = endpoint().rsplit("/client/api", 1)[0]
    answer = requests.get(base + "/metrics", timeout=10)
    assert answer.status_code == 200, answer.text
    text = answer.text
    assert 'guestnet_api_requests_total{command="createFirewallRule",result="success"}' in text
    assert 'guestnet_api_requests_total{command="queryAsyncJobResult",result="success"}' in text
    assert 'guestnet_job_duration_seconds_count{command="createFirewallRule",result="succeeded"}' in text
    assert 'guestnet_router_applies_total{result="applied"}' in text
    assert "guestnet_router_apply_seconds_bucket" in text
    assert "guestnet_router_generations_behind{router=" in text
