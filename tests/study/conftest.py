"""Load ``bench/study.py`` (``bench/`` is not a package) once as the module ``bench_study``; its helpers
``bench.study_stats`` and ``bench.study_report`` import as namespace-package modules after that."""

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


@pytest.fixture(scope="session")
def stats():
    """``bench/study_stats.py``, importable once ``bench/study.py`` has put the repo root on ``sys.path``."""
    _load()
    return importlib.import_module("bench.study_stats")


@pytest.fixture(scope="session")
def study_report():
    _load()
    return importlib.import_module("bench.study_report")
