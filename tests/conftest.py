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
