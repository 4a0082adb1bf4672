"""Shared pytest options: ``--update-goldens`` rewrites expected-output files instead of comparing."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-goldens",
        action="store_true",
        default=False,
        help="rewrite golden and snapshot files from the current output (review the diff before committing)",
    )


@pytest.fixture
def update_goldens(request: pytest.FixtureRequest) -> bool:
    """True when the run should rewrite expected files rather than compare against them."""
    return bool(request.config.getoption("--update-goldens"))


@pytest.fixture(autouse=True)
def _fresh_accelerator_state():
    """accelerate keeps one mixed-precision setting per process (a stage process builds one Accelerator);
    tests build several, with different ``precision`` settings, in one process."""
    import sys

    if "accelerate.state" in sys.modules:
        sys.modules["accelerate.state"].AcceleratorState._reset_state()
    yield
