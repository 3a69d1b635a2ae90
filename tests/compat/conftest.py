"""Fixtures of the compatibility suite: the admin client and the server's inventory."""

import pytest

import support


@pytest.fixture(scope="session")
def admin():
    """A cs client with the admin's keys."""
    return support.client()


@pytest.fixture(scope="session")
def cloud(admin):
    """The zone, offerings, template, and factories for networks, IPs and VMs."""
    return support.Cloud(admin)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    """The check of which commands were called runs after everything else, and only when
    the whole suite runs (a selection with -k, -m or node ids cannot call everything)."""
    last = [item for item in items if item.module.__name__ == "test_zz_commands"]
    rest = [item for item in items if item not in last]
    partial = (
        config.getoption("keyword")
        or config.getoption("markexpr")
        or any("::" in arg for arg in config.args)
    )
    if partial and last:
        config.hook.pytest_deselected(items=last)
        last = []
    items[:] = rest + last


# Which real client each test module drives; every other module drives cs.
CLIENTS = {
    "test_ansible": "ansible",
    "test_libcloud": "libcloud",
    "test_cloudmonkey": "cloudmonkey 5.3 (Python 2.7)",
    "test_other_clients": "cloudmonkey, cmk and Terraform requests, reproduced",
}


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Counts the tests that passed and failed by the client they drive."""
    counts = {}
    for outcome in ("passed", "failed", "error"):
        for report in terminalreporter.stats.get(outcome, []):
            if getattr(report, "when", "call") != "call" and outcome != "error":
                continue
            module = report.nodeid.split("::")[0].rsplit("/", 1)[-1].removesuffix(".py")
            client = CLIENTS.get(module, "cs")
            counts.setdefault(client, {}).setdefault(outcome, 0)
            counts[client][outcome] += 1
    terminalreporter.write_sep("-", "tests by client")
    for client in sorted(counts):
        shown = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts[client].items()))
        terminalreporter.write_line(f"{client}: {shown}")
