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
