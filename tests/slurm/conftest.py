"""A real one-node Slurm cluster, started once per session (tests/slurm/minicluster.py).

The tests skip, with the reason, where it cannot start (no root, slurm-wlm or munge not installed: `.ci/run`
installs them). Each test gets the cluster's ``SLURM_CONF`` and the toy-plugin environment of the runtime
tests (exported to the jobs by sbatch); its jobs are cancelled when it ends, the daemons when the session ends.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).parent
FIXTURES = HERE.parent / "runtime" / "fixtures"
for path in (HERE, FIXTURES):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import minicluster  # noqa: E402
from slurm_helpers import toy_environment  # noqa: E402


@pytest.fixture(scope="session")
def cluster() -> Iterator[minicluster.MiniCluster]:
    reason = minicluster.unavailable()
    if reason:
        pytest.skip(reason)
    started = minicluster.start(kill_wait=20)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def slurm(cluster: minicluster.MiniCluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[minicluster.MiniCluster]:
    for key, value in toy_environment(cluster).items():
        monkeypatch.setenv(key, value)
    yield cluster
    cluster.drain()
