"""The resumable checkpoint's cadence (runtime/save_cadence.py): a written `save_every` exactly; the default
cadence (a tenth of the stage) skips points until the time since the last checkpoint is SAVE_COST_RATIO times
its write time."""

from __future__ import annotations

from pathlib import Path

import pytest
from cascadec_runtime_plans import sft_stage, tiny_plan

import runtime.loop
import runtime.save_cadence
from runtime.entry import train_stage
from runtime.save_cadence import SAVE_COST_RATIO, SaveCadence
from runtime.state import RunDir


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _written(cadence: SaveCadence, clock: Clock, write_s: float) -> None:
    def save() -> None:
        clock.now += write_s

    cadence.write(save)


def test_points_follow_the_step_cadence_and_none_when_it_is_zero() -> None:
    assert [d for d in range(1, 11) if SaveCadence(3, bounded=True).point(d)] == [3, 6, 9]
    assert not any(SaveCadence(0, bounded=False).point(d) for d in range(1, 11))


def test_a_written_save_every_writes_at_every_point_however_slow_the_write() -> None:
    clock = Clock()
    cadence = SaveCadence(1, bounded=False, clock=clock)
    for _ in range(3):
        clock.now += 1.0
        assert cadence.due()
        _written(cadence, clock, write_s=50.0)


def test_the_default_cadence_writes_the_first_point_then_waits_ratio_times_the_write() -> None:
    clock = Clock()
    cadence = SaveCadence(1, bounded=True, clock=clock)
    clock.now += 2.0
    assert cadence.due()  # nothing measured yet: the first point writes
    _written(cadence, clock, write_s=3.0)
    assert cadence.last_write_s == pytest.approx(3.0)
    clock.now += SAVE_COST_RATIO * 3.0 - 0.5
    assert not cadence.due()
    clock.now += 0.5  # the interval counts from the end of the last write
    assert cadence.due()
    _written(cadence, clock, write_s=1.0)
    clock.now += SAVE_COST_RATIO * 1.0
    assert cadence.due()  # the latest write time sets the next interval


@pytest.mark.usefixtures("toy_env")
@pytest.mark.parametrize(("save_every", "expected"), [(None, [1]), (1, [1, 2, 3, 4, 5]), (2, [2, 4])])
def test_the_loop_skips_only_default_cadence_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     save_every: int | None, expected: list[int]) -> None:
    # A ratio no stage can reach: the default cadence writes its first point only.
    monkeypatch.setattr(runtime.save_cadence, "SAVE_COST_RATIO", 1e9)
    written: list[int] = []
    save = runtime.loop.save_checkpoint

    def counted(ctx, trainer, done: int) -> None:
        written.append(done)
        save(ctx, trainer, done)

    monkeypatch.setattr(runtime.loop, "save_checkpoint", counted)
    stage = sft_stage("s1", "base", steps=6).model_copy(update={"save_every": save_every})
    train_stage(tiny_plan(stages=[stage]), stage, RunDir(tmp_path / "run"))
    assert written == expected
    assert (tmp_path / "run" / "stages" / "s1" / "final" / "model.safetensors").is_file()
