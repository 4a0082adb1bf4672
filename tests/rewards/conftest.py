"""Fixtures for reward tests: a `Sample` factory (runtime.data.Sample when present, else the documented fields)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

try:
    from runtime.data import Sample
except ImportError:  # runtime/data.py belongs to the infra engineer; the documented fields suffice here

    @dataclasses.dataclass(frozen=True)
    class Sample:  # type: ignore[no-redef]
        id: str
        domain: str
        prompt: str
        answer: Any = None
        meta: dict = dataclasses.field(default_factory=dict)


@pytest.fixture
def mk():
    def make(prompt: str = "q", answer: Any = None, id: str = "d/0", domain: str = "d", **meta: Any) -> Sample:
        return Sample(id=id, domain=domain, prompt=prompt, answer=answer, meta=meta)

    return make
