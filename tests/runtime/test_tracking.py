"""Experiment trackers (`runtime.tracking`) in their offline or local modes: W&B offline directory, MLflow
file store, trackio's local store, TensorBoard event files. Each test reads back what the tracker stored.

A stage that stops after step 3 (its last checkpoint at 2) and is resumed from step 2 must leave every train
step once in every tracker."""

from __future__ import annotations

import pytest
from cascadec_runtime_plans import console, run_ok, sft_stage, tiny_plan, write_build
from tracker_readers import mlflow_runs, tensorboard_steps, trackio_runs, wandb_runs

from runtime.orchestrator import run
from runtime.state import RunDir, append_jsonl, read_jsonl
from runtime.tracking import ENV, TrackingError, chosen, open_trackers

OPTIONAL = {"wandb": "wandb", "mlflow": "mlflow", "trackio": "trackio"}


def _needs(*names: str) -> None:
    for name in names:
        if name in OPTIONAL:
            pytest.importorskip(OPTIONAL[name], reason=f"the optional tracker `{name}` is not installed "
                                                       f"(pip install 'cascadec[{name}]')")


@pytest.fixture
def offline(tmp_path, monkeypatch: pytest.MonkeyPatch):
    """Every tracker local: W&B offline, trackio in a temporary store, MLflow's default file store."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path / "trackio"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # the runtime sets it for its default store; so do we
    monkeypatch.delenv(ENV, raising=False)
    return tmp_path


def _crash_and_resume(plan, stage, rd: RunDir) -> None:
    first = open_trackers(plan, stage, rd, start_step=0)
    for step in range(4):
        first.log("train", {"loss": 1.0 / (step + 1)}, step)
        if step == 1:
            first.log("eval", {"add.held": 0.5}, 2)
    first.close(ok=False)
    # what the runtime keeps of the crashed attempt: the eval records up to the checkpoint
    append_jsonl(rd.evals_jsonl, {"stage": "s1", "step": 2, "domain": "add", "eval": "held", "score": 0.5})  # the stage died after step 3; its last checkpoint is at step 2
    second = open_trackers(plan, stage, rd, start_step=2)
    for step in range(2, 6):
        second.log("train", {"loss": 1.0 / (step + 1)}, step)
        if step + 1 in (2, 4):
            second.log("eval", {"add.held": 0.75}, step + 1)
    second.table([{"stage": "s1", "step": 4, "domain": "add", "eval": "held", "metric": "pass@1", "score": 0.75}])
    second.close(ok=True)


@pytest.mark.parametrize("tracker", ["tensorboard", "wandb", "mlflow", "trackio"])
def test_resume_sends_every_step_once(tracker: str, offline, monkeypatch: pytest.MonkeyPatch) -> None:
    _needs(tracker)
    monkeypatch.setenv(ENV, tracker)
    plan = tiny_plan(stages=[sft_stage("s1", "base", steps=6)])
    rd = RunDir(offline / "run")
    _crash_and_resume(plan, plan.stages[0], rd)
    if tracker == "tensorboard":
        steps = tensorboard_steps(rd.tb("s1"))
        assert steps["s1/loss"] == [0, 1, 2, 3, 4, 5]  # purge_step replaced the crashed attempt's steps 2, 3
        # the eval at the resume step was purged with them and sent again from evals.jsonl
        assert steps["eval/add.held"] == [2, 4]
        return
    if tracker == "wandb":
        [found] = wandb_runs(rd.root / "wandb").values()
        assert (found["group"], found["name"]) == ("tiny", "s1")
        assert found["config"]["hash"] == '""' and '"sft"' in found["config"]["kind"]
        assert found["tables"] == 1, (found, sorted(p.name for p in (rd.root / "wandb").rglob("*")))
    elif tracker == "mlflow":
        found = mlflow_runs(rd.root / "mlruns")["s1"]
        assert found["experiment"] == "tiny" and found["status"] == "FINISHED"
        assert found["params"]["params.steps"] == "6" and found["params"]["cascade"] == "tiny"
        assert "evals.json" in found["artifacts"]
    else:
        [found] = trackio_runs("cascadec").values()
        assert found["config"]["cascade"] == "tiny" and found["config"]["params"]["steps"] == 6
        assert found["tables"] == 1
    assert found["steps"]["train/loss"] == [0, 1, 2, 3, 4, 5]
    assert found["steps"]["eval/add.held"] == [2, 4]


def test_override_and_unknown_tracker(monkeypatch: pytest.MonkeyPatch) -> None:
    plan = tiny_plan(tracking=["tensorboard", "mlflow"])
    monkeypatch.delenv(ENV, raising=False)
    assert chosen(plan) == ["tensorboard", "mlflow"]
    monkeypatch.setenv(ENV, "wandb, trackio")
    assert chosen(plan) == ["wandb", "trackio"]
    monkeypatch.setenv(ENV, "")
    assert chosen(plan) == []
    monkeypatch.setenv(ENV, "mlfow")
    with pytest.raises(TrackingError, match="did you mean `mlflow`"):
        chosen(plan)


@pytest.mark.slow
@pytest.mark.usefixtures("toy_env")
def test_tiny_run_streams_to_every_tracker_and_resumes_without_duplicates(offline, monkeypatch) -> None:
    """A real two-stage run (toy trainer) with all four trackers; stage s1 fails with an error at step 3 (last
    checkpoint at 2) and the run is resumed. Each tracker ends with steps 0..5 of s1 and 0..2 of s2 once."""
    _needs("wandb", "mlflow", "trackio")
    plan = tiny_plan(stages=[sft_stage("s1", "base", steps=6, save_every=2, eval_every=2),
                             sft_stage("s2", "s1", steps=3)],
                     tracking=["tensorboard", "wandb", "mlflow", "trackio"])
    build = write_build(offline, plan)
    rd = RunDir(offline / "run")
    monkeypatch.setenv("TOY_RAISE_AT_STEP", "3")
    assert run(build, rd.root, console=console()) == 1
    monkeypatch.delenv("TOY_RAISE_AT_STEP")
    run_ok(build, rd)
    assert [r["step"] for r in read_jsonl(rd.metrics("s1"))] == list(range(6))
    assert tensorboard_steps(rd.tb("s1"))["s1/loss"] == list(range(6))
    by_name = {r["name"]: r for r in wandb_runs(rd.root / "wandb").values()}
    ml = mlflow_runs(rd.root / "mlruns")
    tio = {name.rsplit("-", 1)[0]: r for name, r in trackio_runs("cascadec", offline / "trackio").items()}
    for stage, steps, evals in (("s1", 6, [2, 4, 6]), ("s2", 3, [3])):
        for store in (by_name, ml, tio):
            assert store[stage]["steps"]["train/loss"] == list(range(steps)), (stage, store is ml)
            assert store[stage]["steps"]["eval/add.held"] == evals, (stage, store is ml, store is tio, dict(store[stage]["steps"]))
    assert by_name["s1"]["group"] == "tiny" and ml["s2"]["status"] == "FINISHED"
