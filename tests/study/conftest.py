"""Load ``bench/study.py`` (``bench/`` is not a package) once as the module ``bench_study``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

STUDY_PY = Path(__file__).resolve().parents[2] / "bench" / "study.py"


def _load():
    if "bench_study" not in sys.modules:
        spec = importlib.util.spec_from_file_location("bench_study", STUDY_PY)
        module = importlib.util.module_from_spec(spec)
        sys.modules["bench_study"] = module  # dataclasses look their module up while the class is built
        spec.loader.exec_module(module)
    return sys.modules["bench_study"]


@pytest.fixture(scope="session")
def study():
    return _load()
