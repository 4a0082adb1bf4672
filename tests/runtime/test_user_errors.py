"""Bad input a new user gives `cascadec run`: each one is a clear message (what, where, how to fix), no
Python traceback on the terminal, and a run directory that resumes once the input is fixed.

Stages that start run in real subprocesses with the toy trainer of ``fixtures/cascadec_toy_plugin.py``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cascadec_runtime_plans import console, domain, rows, run_ok, sft_stage, tiny_plan, write_build

from cascadec.plan import DataSource, Domain, RewardSpec
from runtime.loop import CheckpointError, checkpoint_step
from runtime.orchestrator import run
from runtime.rewards.base import RewardError
from runtime.rewards.custom import load_function
from runtime.state import RunDir, read_jsonl

pytestmark = pytest.mark.usefixtures("toy_env")


def run_fails(build: Path, rd: RunDir, expected_rc: int, *fragments: str) -> str:
    out = console()
    rc = run(build, rd.root, console=out)
    text = out.file.getvalue()
    assert rc == expected_rc, text
    for fragment in fragments:
        assert fragment in text, text
    assert "Traceback" not in text
    return text


def test_run_dir_that_is_a_file_is_a_usage_error(tmp_path: Path) -> None:
    build = write_build(tmp_path, tiny_plan())
    where = tmp_path / "run"
    where.write_text("not a directory")
    run_fails(build, RunDir(where), 2, f"run directory `{where}` is a file", "help: pass another `--run-dir`")
    assert where.read_text() == "not a directory"


def test_run_dir_that_cannot_be_created_is_a_usage_error(tmp_path: Path) -> None:
    build = write_build(tmp_path, tiny_plan())
    (tmp_path / "blocker").write_text("")
    where = tmp_path / "blocker" / "run"  # its parent is a file: mkdir fails whatever the user's rights
    run_fails(build, RunDir(where), 2, f"cannot write to run directory `{where}`", "help: pass a writable")


def test_missing_train_file_is_reported_before_the_base_evals(tmp_path: Path) -> None:
    data = tmp_path / "my data ü" / "train.jsonl"
    plan = tiny_plan(domains={"add": domain("add", train=DataSource(kind="jsonl", path=str(data)))},
                     stages=[sft_stage("s1", "base", steps=2)])
    build = write_build(tmp_path, plan)
    rd = RunDir(tmp_path / "run")
    run_fails(build, rd, 1, f"data file `{data}` of domain `add` does not exist", "help: fix the path", "resumable")
    assert not rd.stage_dir("base").exists() and "base" not in rd.read_state()  # no base-model eval ran


def test_eval_file_with_wrong_columns_is_reported_before_anything_runs(tmp_path: Path) -> None:
    data = tmp_path / "held.jsonl"
    data.write_text("".join(json.dumps({"question": r["prompt"], "solution": r["answer"]}) + "\n" for r in rows(3)))
    add = domain("add")
    bad = add.evals[0].model_copy(update={"data": DataSource(kind="jsonl", path=str(data))})
    plan = tiny_plan(domains={"add": add.model_copy(update={"evals": [bad]})},
                     stages=[sft_stage("s1", "base", steps=2)])
    run_fails(write_build(tmp_path, plan), RunDir(tmp_path / "run"), 1,
              f"{data}:1: no prompt column `prompt`", "`question`", "help:")


def test_empty_train_file_is_reported_before_anything_runs(tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    data.write_text("")
    plan = tiny_plan(domains={"add": domain("add", train=DataSource(kind="jsonl", path=str(data)))},
                     stages=[sft_stage("s1", "base", steps=2)])
    run_fails(write_build(tmp_path, plan), RunDir(tmp_path / "run"), 1, "data of domain `add` (train) is empty")


def test_checkpoint_with_malformed_meta_is_a_checkpoint_error(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "meta.json").write_text('{"ste')
    with pytest.raises(CheckpointError, match=r"cannot be read \(JSONDecodeError.*\n.*rm -r"):
        checkpoint_step(ckpt)
    (ckpt / "meta.json").write_text('{"step": -3}')
    with pytest.raises(CheckpointError, match="not a count of finished steps"):
        checkpoint_step(ckpt)
    (ckpt / "meta.json").unlink()
    with pytest.raises(CheckpointError, match="FileNotFoundError"):
        checkpoint_step(ckpt)


def test_py_reward_that_does_not_import_says_where_modules_are_imported_from() -> None:
    with pytest.raises(RewardError, match="the directory `cascadec run` starts in") as info:
        load_function("cascadec_no_such_module:score")
    assert "No module named 'cascadec_no_such_module'" in str(info.value)


@pytest.mark.slow
def test_corrupt_checkpoint_is_a_user_error_and_deleting_it_restarts_the_stage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = tiny_plan(stages=[sft_stage("s1", "base", steps=4)])
    build = write_build(tmp_path, plan)
    rd = RunDir(tmp_path / "run")
    monkeypatch.setenv("TOY_KILL_AT_STEP", "2")  # leaves ckpt/ at 2 finished steps
    run_fails(build, rd, 1, "resumes at step 2")
    monkeypatch.delenv("TOY_KILL_AT_STEP")
    weights = rd.ckpt("s1") / "accelerate" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    text = run_fails(build, rd, 1, f"the checkpoint `{rd.ckpt('s1')}` cannot be read", "SafetensorError",
                     f"rm -r '{rd.ckpt('s1')}'", f"traceback of the SafetensorError in {rd.log('s1')}")
    assert "crashed" not in text
    assert "safetensors" in rd.log("s1").read_text()
    shutil.rmtree(rd.ckpt("s1"))
    run_ok(build, rd)
    assert [r["step"] for r in read_jsonl(rd.metrics("s1"))] == [0, 1, 2, 3]  # restarted, each step once


@pytest.mark.slow
def test_reward_that_raises_points_at_its_traceback(tmp_path: Path) -> None:
    flag = tmp_path / "broken"
    flag.write_text("1")
    reward = RewardSpec(kind="py", args={"fn": "cascadec_toy_plugin:flag_reward", "flag": str(flag)})
    plan = tiny_plan(domains={"add": domain("add", reward=reward)}, stages=[sft_stage("s1", "base", steps=2)])
    rd = RunDir(tmp_path / "run")
    run_fails(write_build(tmp_path, plan), rd, 1, "raised ValueError",
              f"traceback of the ValueError in {rd.log('base')}")
    log = rd.log("base").read_text()
    assert "in flag_reward" in log and "toy reward broken" in log  # the user's own frame is in the log


@pytest.mark.slow
def test_run_without_evals_says_so_instead_of_an_empty_table(tmp_path: Path) -> None:
    add = domain("add")
    plan = tiny_plan(domains={"add": Domain(name="add", train=add.train, reward=add.reward, evals=[])},
                     stages=[sft_stage("s1", "base", steps=1)])
    text = run_ok(write_build(tmp_path, plan), RunDir(tmp_path / "run"))
    assert "no evals in the spec" in text and "eval scores after each stage" not in text
