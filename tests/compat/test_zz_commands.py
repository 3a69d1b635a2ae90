"""The suite's own completeness check: every command the suite is meant to exercise was
sent at least once during this run. It runs after all other tests, and only in a run of the
whole suite (see conftest.py)."""

import support


def test_every_required_command_was_called():
    missing = sorted(support.REQUIRED_COMMANDS - support.CALLED)
    assert missing == [], f"commands the suite never called: {missing}"
