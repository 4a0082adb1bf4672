"""Fixtures for distillation tests: the synthetic plan and run directory of `synthetic_run`."""

from __future__ import annotations

from pathlib import Path

import pytest
from synthetic_run import make_plan, write_run

from cascadec.contract.plan import Plan


@pytest.fixture
def plan() -> Plan:
    return make_plan()


@pytest.fixture
def run_dir(tmp_path: Path, plan: Plan) -> Path:
    return write_run(tmp_path / "runs" / "mini", plan)
