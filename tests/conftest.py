"""Shared test setup.

Kernel tests carry the ``kernel`` marker and skip, naming the missing
capability, when this machine truly lacks it.  Under
``MODULED_REQUIRE_KERNEL=1`` (set by ``.ci/run``) such a skip is a failure:
CI runs as root on a kernel that has everything.
"""

from __future__ import annotations

import os

import pytest

REQUIRE_KERNEL = os.environ.get("MODULED_REQUIRE_KERNEL") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_KERNEL and report.skipped and item.get_closest_marker("kernel"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
        report.outcome = "failed"
        report.longrepr = (
            f"kernel test skipped under MODULED_REQUIRE_KERNEL=1: {reason}"
        )


def need_root() -> None:
    """Skip unless running as root (kernel sources need it)."""
    if os.geteuid() != 0:
        pytest.skip("needs root (CAP_BPF / CAP_NET_ADMIN / CAP_SYS_ADMIN)")
