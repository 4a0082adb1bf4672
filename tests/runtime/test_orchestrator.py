"""`run` / `status` end to end on tiny plans: skip by hash, re-run of descendants, bad input, resume.

Stages run in real subprocesses (``runtime.entry``) with the toy trainer of
``fixtures/cascadec_toy_plugin.py``; the rollout engine, chat template and rewards are the real ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cascadec_runtime_plans import TINY, console, domain, rows, run_ok, sft_stage, tiny_plan, write_build

from cascadec.contract.plan import DataSource, ModelRef, RewardSpec
from runtime.context import lr_at
from runtime.models import load_model, save_checkpoint
from runtime.orchestrator import plan_actions, resolve_plan_path, run, stage_hashes
from runtime.status import status
from runtime.state import RunDir, read_jsonl

pytestmark = pytest.mark.usefixtures("toy_env")


def launches(rd: RunDir, stage: str) -> int:
    """How many times the stage's process group was started (one ``--- argv`` header per launch)."""
    log = rd.log(stage)
    return sum(line.startswith("--- ") for line in log.read_text().splitlines()) if log.exists() else 0


def metric_steps(rd: RunDir, stage: str) -> list[int]:
    return [r["step"] for r in read_jsonl(rd.metrics(stage))]


def test_resolve_plan_path_errors(tmp_path: Path) -> None:
    from runtime.orchestrator import RunError

    with pytest.raises(RunError, match="no plan.json"):
        resolve_plan_path(tmp_path)
    with pytest.raises(RunError, match="is a spec"):
        resolve_plan_path(tmp_path / "x.cascade")
    out = console()
    assert run(tmp_path / "missing", tmp_path / "run", console=out) == 2
    assert "does not exist" in out.file.getvalue() and "Traceback" not in out.file.getvalue()


def test_hash_covers_ancestors() -> None:
    plan = tiny_plan()
    changed = tiny_plan(stages=[sft_stage("s1", "base", steps=5), sft_stage("s2", "s1", steps=3)])
    h1, h2 = stage_hashes(plan), stage_hashes(changed)
    assert h1["s1"] != h2["s1"] and h1["s2"] != h2["s2"]
    other_base = tiny_plan(base=TINY.model_copy(update={"config": {**TINY.config, "hidden_size": 48}}))
    assert stage_hashes(other_base)["s1"] != h1["s1"]


@pytest.mark.slow
def test_run_skip_and_rerun_descendants(tmp_path: Path) -> None:
    plan = tiny_plan()
    build = write_build(tmp_path, plan)
    rd = RunDir(tmp_path / "run")
    text = run_ok(build, rd)
    assert "eval scores after each stage" in text
    state = rd.read_state()
    assert {n: e["status"] for n, e in state["stages"].items()} == {"s1": "done", "s2": "done"}
    assert metric_steps(rd, "s1") == [0, 1, 2, 3] and metric_steps(rd, "s2") == [0, 1, 2]
    assert (rd.final("s2") / "config.json").is_file() and not rd.ckpt("s1").exists()
    assert [r["stage"] for r in read_jsonl(rd.evals_jsonl)] == ["base", "s1", "s2"]
    # lr of every step follows the schedule (constant here) and the trainer saw each step once
    assert all(r["lr"] == pytest.approx(lr_at(plan.stages[0].params.optim.lr, r["step"], 4))
               for r in read_jsonl(rd.metrics("s1")))

    # Second run: nothing to do.
    text = run_ok(build, rd)
    assert text.count("skipped") == 2
    assert launches(rd, "s1") == 1 and launches(rd, "s2") == 1 and launches(rd, "base") == 1

    # Changing s2 re-runs only s2; changing s1 re-runs s1 and its child s2.
    build = write_build(tmp_path, tiny_plan(stages=[sft_stage("s1", "base", steps=4), sft_stage("s2", "s1", steps=2)]))
    run_ok(build, rd)
    assert launches(rd, "s1") == 1 and metric_steps(rd, "s2") == [0, 1]
    build = write_build(tmp_path, tiny_plan(stages=[sft_stage("s1", "base", steps=3), sft_stage("s2", "s1", steps=2)]))
    assert [a for _, a in plan_actions(tiny_plan(stages=[sft_stage("s1", "base", steps=3),
                                                         sft_stage("s2", "s1", steps=2)]), rd)] == ["run", "run"]
    run_ok(build, rd)
    assert launches(rd, "s1") == 1  # its directory (and log) was reset, then it ran once
    assert metric_steps(rd, "s1") == [0, 1, 2] and metric_steps(rd, "s2") == [0, 1]
    assert [r["stage"] for r in read_jsonl(rd.evals_jsonl)] == ["base", "s1", "s2"]

    out = console()
    assert status(rd.root, console=out) == 0
    table = out.file.getvalue()
    assert "s1" in table and "3/3" in table and "2/2" in table and "done" in table


def fail_then_fix(tmp_path: Path, plan, fix, expect: list[str]) -> RunDir:
    """Run a broken plan (clear message, exit 1, resumable state), apply ``fix``, run again to done."""
    build = write_build(tmp_path, plan)
    rd = RunDir(tmp_path / "run")
    out = console()
    assert run(build, rd.root, console=out) == 1
    text = out.file.getvalue()
    for fragment in expect:
        assert fragment in text, text
    assert "Traceback" not in text and "resumable" in text
    fix()
    run_ok(build, rd)
    assert all(e["status"] == "done" for e in rd.read_state()["stages"].values())
    return rd


@pytest.mark.slow
def test_missing_data_file_then_fixed(tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    plan = tiny_plan(domains={"add": domain("add", train=DataSource(kind="jsonl", path=str(data)))},
                     stages=[sft_stage("s1", "base", steps=2)])

    def fix() -> None:
        data.write_text("".join(json.dumps(r) + "\n" for r in rows(4)))

    rd = fail_then_fix(tmp_path, plan, fix, [f"data file `{data}`", "does not exist", "help:"])
    assert rd.read_state()["stages"]["s1"]["status"] == "done"


@pytest.mark.slow
def test_malformed_jsonl_row_names_file_and_line_then_fixed(tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    data.write_text('{"prompt": "1+1=", "answer": "2"}\n{"prompt": "2+1=", "answer": \n')
    plan = tiny_plan(domains={"add": domain("add", train=DataSource(kind="jsonl", path=str(data)))},
                     stages=[sft_stage("s1", "base", steps=2)])

    def fix() -> None:
        data.write_text('{"prompt": "1+1=", "answer": "2"}\n{"prompt": "2+1=", "answer": "3"}\n')

    fail_then_fix(tmp_path, plan, fix, [f"{data}:2:", "malformed JSON"])


@pytest.mark.slow
def test_reward_that_raises_then_fixed(tmp_path: Path) -> None:
    flag = tmp_path / "broken"
    flag.write_text("1")
    reward = RewardSpec(kind="py", args={"fn": "cascadec_toy_plugin:flag_reward", "flag": str(flag)})
    plan = tiny_plan(domains={"add": domain("add", reward=reward)}, stages=[sft_stage("s1", "base", steps=2)])
    fail_then_fix(tmp_path, plan, flag.unlink,
                  ["the reward of domain `add` raised ValueError", "toy reward broken", "help:"])


@pytest.mark.slow
def test_model_that_cannot_be_loaded_then_fixed(tmp_path: Path) -> None:
    where = tmp_path / "my-model"
    plan = tiny_plan(base=ModelRef(kind="path", name=str(where)), stages=[sft_stage("s1", "base", steps=2)])

    def fix() -> None:
        save_checkpoint(*load_model(TINY, seed=0), where)

    fail_then_fix(tmp_path, plan, fix, [f"cannot load model from `{where}`", "help:"])


@pytest.mark.slow
def test_stage_process_killed_mid_stage_resumes_exactly_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = tiny_plan(stages=[sft_stage("s1", "base", steps=5, eval_every=2)])
    build = write_build(tmp_path, plan)
    rd = RunDir(tmp_path / "run")
    monkeypatch.setenv("TOY_KILL_AT_STEP", "3")  # the trainer SIGKILLs its own process at step 3
    out = console()
    assert run(build, rd.root, console=out) == 1
    assert "exited with status -9" in out.file.getvalue() and "resumes at step 3" in out.file.getvalue()
    assert rd.read_state()["stages"]["s1"]["status"] == "failed"
    shown = console()
    assert status(rd.root, console=shown) == 0
    assert "failed" in shown.file.getvalue() and "3/5" in shown.file.getvalue()
    monkeypatch.delenv("TOY_KILL_AT_STEP")
    text = run_ok(build, rd)
    assert "(resuming)" in text
    rows_ = read_jsonl(rd.metrics("s1"))
    assert [r["step"] for r in rows_] == [0, 1, 2, 3, 4]
    assert rows_[-1]["steps_seen"] == 5  # the trainer's own state came back from the checkpoint
    evals = [(r["stage"], r["step"]) for r in read_jsonl(rd.evals_jsonl)]
    assert evals == [("base", 0), ("s1", 2), ("s1", 4), ("s1", 5)]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(rd.tb("s1")))
    events.Reload()
    assert [e.step for e in events.Scalars("s1/loss")] == [0, 1, 2, 3, 4]  # purge_step dropped the lost step
    assert [e.step for e in events.Scalars("eval/add.held")] == [2, 4, 5]


@pytest.mark.slow
def test_resumed_run_equals_uninterrupted_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Model, optimizer, scheduler and RNG all come back: the final weights are the same as without a crash."""
    plan = tiny_plan(stages=[sft_stage("s1", "base", steps=4)])
    ref = RunDir(tmp_path / "ref")
    (tmp_path / "a").mkdir()
    run_ok(write_build(tmp_path / "a", plan), ref)
    rd = RunDir(tmp_path / "crash")
    build = write_build(tmp_path, plan)
    monkeypatch.setenv("TOY_KILL_AT_STEP", "2")
    assert run(build, rd.root, console=console()) == 1
    monkeypatch.delenv("TOY_KILL_AT_STEP")
    run_ok(build, rd)
    a, _ = load_model(ModelRef(kind="path", name=str(ref.final("s1"))))
    b, _ = load_model(ModelRef(kind="path", name=str(rd.final("s1"))))
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.allclose(x, y, atol=1e-6), name
    assert [r["loss"] for r in read_jsonl(ref.metrics("s1"))] == pytest.approx(
        [r["loss"] for r in read_jsonl(rd.metrics("s1"))], rel=1e-5)


def test_dry_run_lists_actions_without_running(tmp_path: Path) -> None:
    build = write_build(tmp_path, tiny_plan())
    out = console()
    assert run(build, tmp_path / "run", dry_run=True, console=out) == 0
    text = out.file.getvalue()
    assert "s1" in text and "s2" in text and text.count(" run ") >= 2
    assert not (tmp_path / "run" / "state.json").exists()


def test_status_of_a_missing_run_is_a_clear_error(tmp_path: Path) -> None:
    out = console()
    assert status(tmp_path / "nowhere", console=out) == 2
    assert "not a run directory" in out.file.getvalue()


def test_second_run_on_a_locked_run_directory_is_refused(tmp_path: Path) -> None:
    from runtime.orchestrator import run_lock

    build = write_build(tmp_path, tiny_plan())
    rd = RunDir(tmp_path / "run")
    with run_lock(rd):
        out = console()
        assert run(build, rd.root, console=out) == 2
    assert "another `cascadec run` is using" in out.file.getvalue()
