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

from cascadec.contract.plan import DataSource, Domain, Plan, RewardSpec
from runtime.loop import CheckpointError, checkpoint_step
from runtime.orchestrator import run
from runtime.rewards.base import RewardError
from runtime.rewards.custom import load_function
from runtime.state import RunDir, StateError, read_jsonl

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


def test_damaged_state_file_is_a_clear_error_for_run_status_and_report(tmp_path: Path) -> None:
    from runtime.status import status
    from runtime.report import ReportError, report

    build = write_build(tmp_path, tiny_plan())
    rd = RunDir(tmp_path / "run")
    rd.root.mkdir()
    (rd.root / "plan.json").write_text((build / "plan.json").read_text())
    rd.state_json.write_text('{"stages": {')
    run_fails(build, rd, 2, f"`{rd.state_json}` is damaged", "help: restore it")
    out = console()
    assert status(rd.root, console=out) == 2 and "is damaged" in out.file.getvalue()
    with pytest.raises(ReportError, match="is damaged"):
        report(rd.root)
    rd.state_json.write_text("[1]")
    with pytest.raises(StateError, match="not an object"):
        rd.read_state()


def test_status_tells_an_interrupted_stage_from_a_live_one(tmp_path: Path) -> None:
    from runtime.orchestrator import run_lock
    from runtime.status import status

    build = write_build(tmp_path, tiny_plan())
    rd = RunDir(tmp_path / "run")
    rd.root.mkdir()
    (rd.root / "plan.json").write_text((build / "plan.json").read_text())
    rd.update_stage("s1", status="running", step=2)  # what a SIGKILL of the whole run leaves behind
    out = console()
    assert status(rd.root, console=out) == 0
    assert "interrupted (resumable)" in out.file.getvalue() and "in progress" not in out.file.getvalue()
    with run_lock(rd):
        out = console()
        assert status(rd.root, console=out) == 0
    assert "running" in out.file.getvalue() and "a `cascadec run` is in progress" in out.file.getvalue()


def test_atomic_writes_get_the_usual_file_mode_not_0600(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import runtime.state

    from cascadec.contract import fsutil

    # the usual umask (0o022), whatever this process has
    monkeypatch.setattr(fsutil, "NEW_FILE_MODE", 0o644)
    monkeypatch.setattr(fsutil, "NEW_DIR_MODE", 0o755)
    runtime.state.atomic_write_text(tmp_path / "state.json", "{}\n")
    assert (tmp_path / "state.json").stat().st_mode & 0o777 == 0o644


def test_curves_show_the_loss_of_an_sft_only_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import runtime.report as report_module
    import runtime.report_charts as charts

    build = write_build(tmp_path, tiny_plan(stages=[sft_stage("s1", "base", steps=3)]))
    rd = RunDir(tmp_path / "run")
    rd.stage_dir("s1").mkdir(parents=True)
    (rd.root / "plan.json").write_text((build / "plan.json").read_text())
    rd.metrics("s1").write_text("".join(json.dumps({"step": i, "loss": 3.0 - i}) + "\n" for i in range(3)))
    figures = []
    monkeypatch.setattr(charts, "_png", lambda fig: figures.append(fig) or b"")
    charts.curves_chart(report_module.load_run(rd.root))
    loss_panel = figures[0].axes[0]
    assert "loss" in loss_panel.get_title()
    curves = [line for line in loss_panel.lines if not line.get_label().startswith("_")]  # not the stage rules
    assert [[float(y) for y in line.get_ydata()] for line in curves] == [[3.0, 2.0, 1.0]]


def test_run_dir_of_another_cascade_is_refused_and_left_alone(tmp_path: Path) -> None:
    rd = RunDir(tmp_path / "run")
    rd.root.mkdir()
    other = tiny_plan().model_copy(update={"name": "other"})
    (rd.root / "plan.json").write_text(other.to_json())
    rd.update_stage("s1", status="done", step=4)
    before = rd.state_json.read_text()
    build = write_build(tmp_path, tiny_plan())
    run_fails(build, rd, 2, f"run directory `{rd.root}` holds the run of cascade `other`, not `tiny`",
              "help: pass another `--run-dir`")
    out = console()
    assert run(build, rd.root, console=out, dry_run=True) == 2 and "holds the run of cascade" in out.file.getvalue()
    assert rd.state_json.read_text() == before and Plan.from_json(rd.plan_json.read_text()).name == "other"


def test_missing_dataset_directory_says_how_to_fix_it(tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    from runtime.data import DataError, load_source

    with pytest.raises(DataError, match=r"`.*nowhere` of domain `add` does not exist\nhelp: fix the path"):
        load_source(DataSource(kind="hf_disk", path=str(tmp_path / "nowhere")), domain="add")
