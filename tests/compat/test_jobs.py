"""Asynchronous jobs: queryAsyncJobResult and listAsyncJobs, for jobs that succeed and for a
job that is accepted and then fails."""

import pytest
from cs import CloudStackApiException

from support import api_error, fresh_uuid, job_failure, listed, wait_job


@pytest.fixture(scope="module")
def network(cloud):
    return cloud.network()


@pytest.fixture
def ip(cloud, network):
    return cloud.public_ip(network)


def test_query_async_job_result_of_a_successful_job(admin, ip):
    started = admin.createFirewallRule(
        ipaddressid=ip["id"], protocol="tcp", startport=8443, fetch_result=False
    )
    jobid = started["jobid"]
    assert isinstance(jobid, str) and jobid, started

    job = wait_job(admin, jobid)
    assert job["jobid"] == jobid
    assert job["jobstatus"] == 1, job
    assert job["jobresultcode"] == 0, job
    assert job["jobresulttype"] == "object", job
    assert job["jobprocstatus"] == 0, job
    assert isinstance(job["cmd"], str) and job["cmd"], job
    assert isinstance(job["created"], str), job
    result = job["jobresult"]
    assert set(result) == {"firewallrule"}, result
    assert result["firewallrule"]["id"] == started["id"]
    assert result["firewallrule"]["state"] == "Active"
    if "jobinstanceid" in job:
        assert job["jobinstanceid"] == started["id"], job


def test_delete_jobs_answer_success(admin, ip):
    rule = admin.createFirewallRule(ipaddressid=ip["id"], protocol="tcp", startport=8444)
    started = admin.deleteFirewallRule(id=rule["firewallrule"]["id"], fetch_result=False)
    assert isinstance(started.get("jobid"), str), started
    job = wait_job(admin, started["jobid"])
    assert job["jobstatus"] == 1 and job["jobresultcode"] == 0, job
    assert job["jobresult"] == {"success": True}, job


def test_list_async_jobs_shows_the_callers_jobs(admin, ip):
    started = admin.createFirewallRule(
        ipaddressid=ip["id"], protocol="tcp", startport=8445, fetch_result=False
    )
    wait_job(admin, started["jobid"])
    jobs = admin.listAsyncJobs(fetch_list=True)
    assert isinstance(jobs, list)
    [job] = [j for j in jobs if j.get("jobid") == started["jobid"]]
    assert job["jobstatus"] == 1, job
    assert "jobresultcode" in job, job
    paged = listed(admin.listAsyncJobs(page=1, pagesize=1), "asyncjobs")
    assert len(paged) == 1


def test_unknown_job_is_431(admin):
    api_error(lambda: admin.queryAsyncJobResult(jobid=fresh_uuid()), 431)


def test_assigning_a_member_twice_fails_at_once_or_in_its_job(admin, cloud, network, ip):
    # CloudStack accepts the request and fails the job (assignToLoadBalancerRule checks its
    # members when it runs); a server that checks before queueing refuses it at once. Either
    # way the caller gets 431 and CloudStack's text.
    vm = cloud.vm(network)
    lb = admin.createLoadBalancerRule(
        name="twice",
        algorithm="roundrobin",
        publicport=80,
        privateport=80,
        publicipid=ip["id"],
    )["loadbalancer"]
    admin.assignToLoadBalancerRule(id=lb["id"], virtualmachineids=[vm["id"]])

    try:
        started = admin.assignToLoadBalancerRule(
            id=lb["id"], virtualmachineids=[vm["id"]], fetch_result=False
        )
    except CloudStackApiException as e:
        assert e.response is not None and e.response.status_code == 431, e.error
        assert e.error["errorcode"] == 431, e.error
        assert "already mapped" in e.error["errortext"], e.error
        return
    assert isinstance(started.get("jobid"), str), started
    job = wait_job(admin, started["jobid"])
    assert job["jobstatus"] == 2, job
    assert job["jobresultcode"] == 431, job
    assert job["jobresult"]["errorcode"] == 431, job
    assert "already mapped" in job["jobresult"]["errortext"], job
    # cs turns the same failure into an exception carrying the job's error.
    e = job_failure(
        lambda: admin.assignToLoadBalancerRule(id=lb["id"], virtualmachineids=[vm["id"]]),
        contains="already mapped",
    )
    assert e.error["errorcode"] == 431


def test_a_job_the_router_refuses_fails_with_530_and_leaves_nothing(admin, cloud):
    """The router (here the dry-run agent, which writes each router's config under the server's
    data directory) cannot take the next generation: its directory is replaced by a file. The
    create is accepted, its job fails with 530 and the router's reason, the rule is gone, and once
    the router can take configs again the same rule is created."""
    import os
    import shutil

    data_dir = os.environ.get("GUESTNET_COMPAT_DATA_DIR", "")
    if not data_dir:
        pytest.fail("GUESTNET_COMPAT_DATA_DIR is not set: run the suite through the harness")
    network = cloud.network()
    ip = cloud.public_ip(network)
    router = admin.listRouters(networkid=network["id"])["router"][0]
    assert router["enforced"] is False, router
    router_dir = os.path.join(data_dir, "dry-run", router["name"])
    assert os.path.isdir(router_dir), router_dir
    moved = router_dir + ".moved"
    shutil.move(router_dir, moved)
    try:
        with open(router_dir, "w") as f:
            f.write("not a directory\n")
        e = job_failure(
            lambda: admin.createFirewallRule(ipaddressid=ip["id"], protocol="tcp", startport=7001)
        )
        assert e.error["errorcode"] == 530, e.error
        assert "Failed to create firewall rule" in e.error["errortext"], e.error
        assert router["name"] in e.error["errortext"], e.error
        assert listed(admin.listFirewallRules(ipaddressid=ip["id"]), "firewallrule") == []
        jobs = admin.listAsyncJobs(fetch_list=True)
        failed = [j for j in jobs if j["jobstatus"] == 2 and j["jobresultcode"] == 530]
        assert failed, jobs
        assert failed[-1]["jobresult"]["errorcode"] == 530, failed[-1]
    finally:
        os.remove(router_dir)
        shutil.move(moved, router_dir)
    rule = admin.createFirewallRule(ipaddressid=ip["id"], protocol="tcp", startport=7001)
    assert rule["firewallrule"]["state"] == "Active", rule
