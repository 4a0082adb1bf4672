"""`cascadec run --tracking`: validated, then handed to the stage processes as $CASCADEC_TRACKING."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cli_helpers import invoke

from cascadec.cli import commands


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch, specs: Path, stub_compiler: object) -> list[str | None]:
    """The value of $CASCADEC_TRACKING each (fake) orchestrator run saw."""
    # `run --tracking` sets the variable in this process: let monkeypatch restore it afterwards
    monkeypatch.setenv("CASCADEC_TRACKING", "unset")
    monkeypatch.delenv("CASCADEC_TRACKING")
    out: list[str | None] = []

    class Orchestrator:
        @staticmethod
        def run(target: Path, run_dir: Path | None = None, *, nproc: int | None, dry_run: bool) -> int:
            out.append(os.environ.get("CASCADEC_TRACKING"))
            return 0

    monkeypatch.setattr(commands, "_api", lambda command: Orchestrator)
    return out


def test_tracking_override_reaches_the_runtime(seen: list[str | None]) -> None:
    assert invoke(["run", "clean.cascade"]).exit_code == 0
    assert invoke(["run", "clean.cascade", "--tracking", "wandb, mlflow,wandb"]).exit_code == 0
    assert invoke(["run", "clean.cascade", "--tracking", ""]).exit_code == 0
    assert seen == [None, "wandb,mlflow", ""]


def test_unknown_tracker_is_a_usage_error(seen: list[str | None]) -> None:
    result = invoke(["run", "clean.cascade", "--tracking", "tensorbord"])
    assert result.exit_code == 2 and seen == []
    assert result.stderr == "error: unknown tracker `tensorbord` in --tracking\nhelp: did you mean `tensorboard`?\n"
