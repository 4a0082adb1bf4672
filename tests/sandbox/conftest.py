"""Sandbox test fixtures: the isolation level, and this process as the subreaper of its sandboxes' orphans."""

from __future__ import annotations

import ctypes
import pytest

from runtime.sandbox import isolation
from sandbox_helpers import mark_baseline

PR_SET_CHILD_SUBREAPER = 36


@pytest.fixture(scope="session", autouse=True)
def _subreaper():
    """Orphans of our sandboxes (a daemon that double-forked at the rlimits level) become our children, so
    `sandbox_helpers.own_processes` sees them; other sandboxes on the host are never counted."""
    ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    yield
    ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


@pytest.fixture(autouse=True)
def _process_baseline():
    """Processes that earlier tests left on purpose (a reward's worker pool) are not this test's leaks."""
    mark_baseline()


@pytest.fixture(params=["namespaces", "rlimits"])
def level(request, monkeypatch):
    """Run a test at each isolation level this machine offers."""
    if request.param == "namespaces" and isolation() != "namespaces":
        pytest.skip("namespaces isolation needs root and unshare")
    if request.param == "rlimits":
        monkeypatch.setenv("CASCADEC_SANDBOX", "rlimits")
    yield request.param
