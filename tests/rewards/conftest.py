"""Fixtures for reward tests: a `runtime.data.Sample` factory."""

from __future__ import annotations

from typing import Any

import pytest

from runtime.data import Sample


@pytest.fixture
def mk():
    def make(prompt: str = "q", answer: Any = None, id: str = "d/0", domain: str = "d", **meta: Any) -> Sample:
        return Sample(id=id, domain=domain, prompt=prompt, answer=answer, meta=meta)

    return make
