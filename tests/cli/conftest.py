"""Fixtures for CLI tests: a stub compiler and a working directory with small spec files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from cli_helpers import BAD_SOURCE, demo_plan, unknown_stage, zero_steps_warning

from cascadec.cli import commands
from cascadec.compiler import CompileResult


@pytest.fixture
def stub_compiler(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path], CompileResult]:
    """Replace the compiler behind the CLI: ``bad*`` specs get an error, ``warn*`` a warning, others compile
    to `demo_plan` named after the file stem (the CLI's behaviour, not the compiler's, is under test)."""

    def fake(path: str | Path, *, build_data: bool = False) -> CompileResult:
        p = str(path)
        text = Path(p).read_text()
        stem = Path(p).stem
        if stem.startswith("bad"):
            return CompileResult(None, [unknown_stage(p)], {p: text})
        diagnostics = [zero_steps_warning(p)] if stem.startswith("warn") else []
        return CompileResult(demo_plan(stem), diagnostics, {p: text})

    monkeypatch.setattr(commands, "compile_file", fake)
    return fake


@pytest.fixture
def specs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory holding clean.cascade, warn.cascade and bad.cascade (cwd for the test)."""
    for name in ("clean", "warn", "bad"):
        (tmp_path / f"{name}.cascade").write_text(BAD_SOURCE)
    monkeypatch.chdir(tmp_path)
    return tmp_path
