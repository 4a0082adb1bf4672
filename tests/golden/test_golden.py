"""Golden tests: each invalid spec's rendered diagnostics and each valid spec's plan.json are pinned.

Regenerate on purpose with ``python -m pytest tests/golden --update-goldens`` and review the diff.
Specs are compiled with paths relative to the repository root so the goldens hold no machine paths.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cascadec.codes import CODES
from cascadec.compiler import compile_file
from cascadec.report_diagnostics import render_full

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
INVALID = sorted((HERE / "invalid").glob("*.cascade"))
VALID = sorted((HERE / "valid").glob("*.cascade"))
SNIPPETS = (HERE / "snippets.txt").read_text(encoding="utf-8")  # compact cases: test_snippets.py


def _check(expected: Path, actual: str, update: bool) -> None:
    if update:
        expected.write_text(actual, encoding="utf-8")
        return
    assert expected.exists(), f"{expected.name} is missing; run pytest tests/golden --update-goldens"
    assert actual == expected.read_text(encoding="utf-8")


@pytest.mark.parametrize("case", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_spec_diagnostics(case: Path, update_goldens: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    # `build_*` cases need lint's build checks (cascadec.checks.BUILD_CHECKS)
    result = compile_file(case.relative_to(ROOT).as_posix(), build_data=case.stem.startswith("build_"))
    assert result.diagnostics, "an invalid golden case must produce a diagnostic"
    assert all(d.code != "CAS999" for d in result.diagnostics)
    if any(d.severity == "error" for d in result.diagnostics):
        assert result.plan is None
    _check(case.with_suffix(".diag.txt"), render_full(result.diagnostics, result.sources), update_goldens)


@pytest.mark.parametrize("case", VALID, ids=[p.stem for p in VALID])
def test_valid_spec_plan(case: Path, update_goldens: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    result = compile_file(case.relative_to(ROOT).as_posix())
    assert result.plan is not None, render_full(result.diagnostics, result.sources)
    assert not result.diagnostics
    # resolved data paths are absolute on purpose; pin them relative to the repository
    text = result.plan.to_json().replace(str(ROOT), "<root>")
    _check(case.with_suffix(".plan.json"), text, update_goldens)


def test_enough_invalid_cases() -> None:
    assert len(INVALID) + SNIPPETS.count("\n## ") + 1 >= 45


def test_every_user_facing_code_has_a_golden_case() -> None:
    seen = {line.split("[", 1)[1].split("]", 1)[0]
            for p in (HERE / "invalid").glob("*.diag.txt")
            for line in p.read_text(encoding="utf-8").splitlines()
            if line.startswith(("error[", "warning["))}
    seen |= {line.split()[1] for line in SNIPPETS.splitlines() if line.startswith("> CAS")}
    # CAS009 needs an unreadable file and CAS999 a compiler bug (both tested in tests/compiler); CAS5xx come
    # from the CLI's runtime checks (tests/cli)
    missing = {c for c in CODES if not c.startswith("CAS5")} - seen - {"CAS009", "CAS999"}
    assert not missing, f"codes without a golden case: {sorted(missing)}"
