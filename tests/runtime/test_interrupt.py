"""Ctrl-C on `cascadec run`, as a terminal sends it (SIGINT to the whole foreground process group): the
stage checkpoints the step in progress, the re-run continues from there, and a second Ctrl-C stops at once
and says which steps will be redone (runtime/signals.py, runtime/orchestrator.py)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from cascadec_runtime_plans import run_ok, sft_stage, tiny_plan, write_build
from safetensors.torch import load_file

from runtime.state import RunDir, read_jsonl

pytestmark = pytest.mark.usefixtures("toy_env")

REPO = Path(__file__).resolve().parents[2]
STEPS = 6
TIMING = {"tokens_per_s", "step_time_s"}


def _start(build: Path, run_dir: Path, env: dict) -> subprocess.Popen:
    code = f"import sys; from runtime.orchestrator import run; sys.exit(run({str(build)!r}, {str(run_dir)!r}))"
    # A pytest started in the background by a non-interactive shell ignores SIGINT, and Python keeps an
    # inherited SIG_IGN; the run under test must get Ctrl-C as a terminal would deliver it.
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait(predicate, proc: subprocess.Popen, what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the run ended or stalled before {what}: {proc.communicate()}")
        time.sleep(0.05)


def _weights(rd: RunDir) -> dict[str, torch.Tensor]:
    return load_file(str(rd.final("s1") / "model.safetensors"))


def _metrics(rd: RunDir) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in read_jsonl(rd.metrics("s1"))]


def _build(tmp_path: Path) -> Path:
    # save_every = 0: the only checkpoint inside the stage is the one the interrupt writes.
    return write_build(tmp_path, tiny_plan(stages=[sft_stage("s1", "base", steps=STEPS, save_every=0)]))


@pytest.mark.slow
def test_ctrl_c_at_a_random_step_then_rerun_matches_an_uninterrupted_run(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    build = _build(tmp_path)
    reference = RunDir(tmp_path / "reference")
    run_ok(build, reference)
    rd = RunDir(tmp_path / "run")
    steps_log = tmp_path / "steps.log"
    env = {**os.environ, "TOY_STEP_SLEEP": "0.4", "TOY_STEP_LOG": str(steps_log)}
    at = random.Random(time.time_ns()).randint(1, STEPS - 1)
    proc = _start(build, rd.root, env)
    _wait(lambda: len(read_jsonl(rd.metrics("s1"))) >= at, proc, f"{at} steps")
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 130, (out, err)
    state = rd.stage_state("s1")
    assert state["status"] == "running" and at <= state["step"] <= STEPS, (at, state, err)
    assert f"resumes stage `s1` from its checkpoint after step {state['step']}" in err and "will be redone" not in err, err
    monkeypatch.setenv("TOY_STEP_LOG", str(steps_log))
    run_ok(build, rd)
    assert steps_log.read_text().split() == [x for i in range(STEPS) for x in ("s1", str(i))], at
    assert _metrics(rd) == _metrics(reference), at
    mine, theirs = _weights(rd), _weights(reference)
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine), at
    assert read_jsonl(rd.evals_jsonl) == read_jsonl(reference.evals_jsonl)


def test_second_ctrl_c_stops_at_once_and_says_what_will_be_redone(tmp_path: Path) -> None:
    build = _build(tmp_path)
    rd = RunDir(tmp_path / "run")
    proc = _start(build, rd.root, {**os.environ, "TOY_STEP_SLEEP": "20"})
    _wait(lambda: len(read_jsonl(rd.metrics("s1"))) >= 1, proc, "one step")
    # Into step 2's 20 s: a Ctrl-C between two steps checkpoints at once and the run ends before the second
    # Ctrl-C (seen once with both cores busy: exit -2, "resumes stage `s1` from its checkpoint after step 1").
    time.sleep(2.0)
    os.killpg(proc.pid, signal.SIGINT)  # the stage is inside a 20 s step: it cannot checkpoint soon
    time.sleep(1.0)
    t0 = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 10 and proc.returncode == 130, (out, err)
    assert "press Ctrl-C again to stop at once" in err, err
    assert "stopped at once: `cascadec run` starts stage `s1` again at step 1 (no checkpoint yet)" in err, err
    assert "step 1, finished since its last checkpoint, will be redone" in err, err
    run_ok(build, rd)
    assert [r["step"] for r in read_jsonl(rd.metrics("s1"))] == list(range(STEPS))


@pytest.mark.parametrize(("steps", "save_every", "expected"), [
    (6, None, 1), (10, None, 1), (11, None, 2), (1000, None, 100), (10**6, None, 500), (6, 0, 0), (6, 4, 4),
])
def test_default_save_every_scales_with_the_stage_length(steps: int, save_every: int | None, expected: int) -> None:
    stage = sft_stage("s1", "base", steps=steps).model_copy(update={"save_every": save_every})
    assert stage.checkpoint_every(steps) == expected
