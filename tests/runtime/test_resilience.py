"""The whole runtime SIGKILLed at a random point, and a 2-process gloo run (the distributed path)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cascadec.contract.plan import Resources
import torch
from cascadec_runtime_plans import console, run_ok, sft_stage, tiny_plan, write_build

from cascadec.contract.plan import ModelRef
from runtime.models import load_model
from runtime.orchestrator import run
from runtime.state import RunDir, read_jsonl

pytestmark = pytest.mark.usefixtures("toy_env")

REPO = Path(__file__).resolve().parents[2]


def start_run(build: Path, run_dir: Path) -> subprocess.Popen:
    code = ("import sys; from runtime.orchestrator import run; "
            f"sys.exit(run({str(build)!r}, {str(run_dir)!r}))")
    # A new session: the kill below takes the orchestrator and its stage process group together.
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_for_lines(path: Path, count: int, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(read_jsonl(path)) >= count:
            return
        if proc.poll() is not None:
            pytest.fail(f"the run ended (status {proc.returncode}) before {path} had {count} lines")
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {count} lines in {path}")


@pytest.mark.slow
def test_sigkill_at_random_point_then_rerun_has_every_step_once(tmp_path: Path) -> None:
    rng = random.Random(os.environ.get("CRASH_SEED", str(time.time_ns())))
    plan = tiny_plan(stages=[sft_stage("s1", "base", steps=6, eval_every=2), sft_stage("s2", "s1", steps=4)])
    build = write_build(tmp_path, plan)
    rd = RunDir(tmp_path / "run")
    stage = rng.choice(["s1", "s2"])
    lines = rng.randint(1, 3)
    proc = start_run(build, rd.root)
    try:
        wait_for_lines(rd.metrics(stage), lines, proc)
        time.sleep(rng.uniform(0.0, 0.3))  # anywhere inside a step, a checkpoint or an eval
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert rd.read_state()["stages"][stage]["status"] in ("running", "done")
    run_ok(build, rd)
    state = rd.read_state()["stages"]
    assert state["s1"]["status"] == "done" and state["s2"]["status"] == "done"
    assert [r["step"] for r in read_jsonl(rd.metrics("s1"))] == list(range(6))
    assert [r["step"] for r in read_jsonl(rd.metrics("s2"))] == list(range(4))
    evals = [(r["stage"], r["step"]) for r in read_jsonl(rd.evals_jsonl)]
    assert evals == [("base", 0), ("s1", 2), ("s1", 4), ("s1", 6), ("s2", 4)], (stage, lines)
    leftovers = [p.name for p in rd.root.glob("stages/*/*") if ".tmp-" in p.name or ".old-" in p.name]
    assert leftovers == []


@pytest.mark.slow
def test_two_process_gloo_run_shards_batches_and_matches_one_process(tmp_path: Path) -> None:
    # fp32: bf16 autocast (precision = auto on an AMX CPU) would differ between 1 and 2 processes beyond 1e-5.
    plan = tiny_plan(stages=[sft_stage("s1", "base", steps=3, batch_size=2,
                                       resources=Resources(device="cpu", precision="fp32"))])
    build = write_build(tmp_path, plan)
    one, two = RunDir(tmp_path / "one"), RunDir(tmp_path / "two")
    run_ok(build, two, nproc=2)
    run_ok(build, one, nproc=1)
    metrics = read_jsonl(two.metrics("s1"))
    assert [r["step"] for r in metrics] == [0, 1, 2]
    assert all(r["rank"] == 0.5 for r in metrics)  # ranks 0 and 1, not two rank-0 processes
    assert all(r["rank_batch"] == 1.0 for r in metrics)  # each rank trains on its half of the batch
    assert all(r["param_spread"] == 0.0 for r in metrics)  # DDP keeps the replicas identical
    assert "torch.distributed.run" in two.log("s1").read_text()
    # Equal-length samples: the mean of per-rank mean losses is the global mean, so the weights agree.
    a, _ = load_model(ModelRef(kind="path", name=str(one.final("s1"))))
    b, _ = load_model(ModelRef(kind="path", name=str(two.final("s1"))))
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.allclose(x, y, atol=1e-5), name
    out = console()
    assert run(build, two.root, console=out) == 0 and "skipped" in out.file.getvalue()
