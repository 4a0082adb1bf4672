"""Runtime infrastructure tests: put ``fixtures/`` on ``sys.path`` (plan helpers, the toy plugin) and
give child stage processes the toy-plugin environment."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
if str(FIXTURES) not in sys.path:
    sys.path.insert(0, str(FIXTURES))


@pytest.fixture
def toy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Child stage processes load the toy plugin (fixtures/cascadec_toy_plugin.py), one thread each."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(FIXTURES), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("CASCADEC_PLUGINS", "cascadec_toy_plugin")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
