"""Fixtures for compiler tests."""

from __future__ import annotations

import pytest
from compiler_helpers import SMALL


@pytest.fixture
def small() -> str:
    return SMALL
