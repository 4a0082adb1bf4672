"""SIGTERM/SIGINT checkpoint the step in progress on every rank, and the resumed stage repeats no step
(runtime/signals.py; Slurm preemption and Ctrl-C)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cascadec_runtime_plans import sft_stage, tiny_plan

from runtime.loop import checkpoint_step
from runtime.state import RunDir, read_jsonl

pytestmark = pytest.mark.usefixtures("toy_env")

STEPS = 8


def _start(plan_json: Path, rd: RunDir, nproc: int, env: dict) -> subprocess.Popen:
    entry = ["-m", "runtime.entry", "--plan", str(plan_json), "--stage", "s1", "--run-dir", str(rd.root)]
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc)] if nproc > 1 else []
    return subprocess.Popen([sys.executable, *launcher, *entry], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _wait_for_lines(path: Path, count: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while len(read_jsonl(path)) < count:
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the stage ended or stalled before {count} steps: {proc.communicate()[0]}")
        time.sleep(0.1)


@pytest.mark.parametrize(("nproc", "signum"), [(1, signal.SIGTERM), (1, signal.SIGINT),
                                               pytest.param(2, signal.SIGTERM, marks=pytest.mark.slow)])
def test_signal_checkpoints_the_current_step_and_resume_repeats_none(tmp_path: Path, nproc: int, signum: int) -> None:
    plan = tiny_plan(stages=[sft_stage("s1", "base", steps=STEPS, save_every=100, batch_size=2)])
    plan_json = tmp_path / "plan.json"
    plan_json.write_text(plan.to_json())
    rd = RunDir(tmp_path / "run")
    steps_log = tmp_path / "steps.log"
    env = {**os.environ, "TOY_STEP_SLEEP": "0.5", "TOY_STEP_LOG": str(steps_log)}
    proc = _start(plan_json, rd, nproc, env)
    _wait_for_lines(rd.metrics("s1"), 2, proc)
    # One process gets the signal: under torchrun, rank 1 only; the ranks must still agree on one step.
    os.kill(_children(proc.pid)[-1] if nproc > 1 else proc.pid, signum)
    out = proc.communicate(timeout=300)[0]
    stopped = checkpoint_step(rd.ckpt("s1"))
    assert 2 <= stopped < STEPS, out
    assert [r["step"] for r in read_jsonl(rd.metrics("s1"))] == list(range(stopped))
    if nproc == 1:
        assert proc.returncode == 128 + signum, out
    assert rd.stage_state("s1")["step"] == stopped and "checkpoint saved" in out
    env.pop("TOY_STEP_SLEEP")
    proc = _start(plan_json, rd, nproc, env)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0 and f"resuming at step {stopped}/{STEPS}" in out, out
    executed = steps_log.read_text().split("\n")[:-1]
    assert sorted(executed) == sorted(f"s1 {i}" for i in range(STEPS) for _ in range(nproc)), out
    assert [r["step"] for r in read_jsonl(rd.metrics("s1"))] == list(range(STEPS))
