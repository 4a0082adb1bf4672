"""An eval-only edit re-checks a ``best(...)`` teacher choice before retraining (issue 21): the stage keeps its
checkpoint when every route still picks the same candidate, and retrains, with the stages trained from it,
when one does not (``runtime.choices``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cascadec_runtime_plans import console, run_ok, sft_stage, tiny_plan, write_build

from cascadec.contract.hashing import choice_hash
from cascadec.contract.plan import Plan, TeacherRef
from runtime.choices import rebuilt_dependencies, recheck
from runtime.dryrun import _why
from runtime.orchestrator import eval_hashes, plan_actions, run, stage_hashes
from runtime.state import RunDir, read_jsonl, replace_stage_evals

BEST = TeacherRef(kind="best", candidates=["base", "s1"], domain="add", eval="held")


def picking_plan(max_tokens: int = 3) -> Plan:
    """s1 = sft(base); s2 = sft(s1) taught by best(base, s1 by add.held); s3 = sft(s2)."""
    plan = tiny_plan(stages=[sft_stage("s1", "base", steps=2), sft_stage("s2", "s1", steps=2, teachers={"default": BEST}),
                             sft_stage("s3", "s2", steps=2)])
    domain = plan.domains["add"]
    held = domain.evals[0].model_copy(update={"max_tokens": max_tokens})
    return plan.model_copy(update={"domains": {"add": domain.model_copy(update={"evals": [held]})}})


def score(rd: RunDir, stage: str, value: float) -> None:
    replace_stage_evals(rd.evals_jsonl, stage, [{"stage": stage, "step": 2 if stage != "base" else 0,
                                                 "domain": "add", "eval": "held", "metric": "pass@1", "n": 3,
                                                 "score": value}])


def finished_run(tmp_path: Path, plan: Plan) -> RunDir:
    """A run directory where every stage of ``plan`` finished, s2 trained with teacher s1 (scores base 0.2,
    s1 0.5)."""
    rd = RunDir(tmp_path / "run")
    hashes, evals = stage_hashes(plan), eval_hashes(plan)
    builds = {"s1": "b1", "s2": "b2", "s3": "b3"}
    for stage in plan.stages:
        rd.final(stage.name).mkdir(parents=True)
        (rd.final(stage.name) / "config.json").write_text("{}")
        rd.update_stage(stage.name, status="done", hash=hashes[stage.name], eval_hash=evals[stage.name],
                        build=builds[stage.name], built_on={d: builds.get(d) for d in stage.dependencies()})
    rd.update_stage("s2", chosen={"default": "s1"}, choice_hash=choice_hash(plan, plan.stage("s2")))
    for name, value in (("base", 0.2), ("s1", 0.5), ("s2", 0.4), ("s3", 0.3)):
        score(rd, name, value)
    return rd


def actions(plan: Plan, rd: RunDir) -> list[str]:
    return [a for _, a in plan_actions(plan, rd)]


def test_an_edit_of_the_choosing_eval_rechecks_instead_of_retraining(tmp_path: Path) -> None:
    rd = finished_run(tmp_path, picking_plan())
    assert actions(picking_plan(), rd) == ["skip", "skip", "skip"]
    edited = picking_plan(max_tokens=5)
    assert actions(edited, rd) == ["reeval", "recheck", "reeval"]
    why = _why(edited.stage("s2"), "recheck", rd.stage_state("s2"), set(), ("h", "e"))
    assert why.startswith("eval settings of its best(...) teacher changed (add.held)")

    kept, message = recheck(edited, rd, edited.stage("s2"))
    assert kept and "checkpoint kept" in message and "default = s1 (best by add.held: base 0.2, s1 0.5)" in message
    assert actions(edited, rd) == ["reeval", "reeval", "reeval"]  # re-checked: only evaluated again
    assert rd.stage_state("s2")["teachers"] == "default = s1 (best by add.held: base 0.2, s1 0.5)"


def test_a_changed_choice_retrains_the_stage_and_what_was_trained_from_it(tmp_path: Path) -> None:
    rd = finished_run(tmp_path, picking_plan())
    edited = picking_plan(max_tokens=5)
    score(rd, "base", 0.7)  # measured again under the new settings: base now beats s1
    kept, message = recheck(edited, rd, edited.stage("s2"))
    assert not kept and "default = s1 -> base" in message and message.endswith("retraining")
    assert rd.stage_state("s2")["choice_hash"] == choice_hash(picking_plan(), picking_plan().stage("s2"))

    rd.update_stage("s2", build="b2-again")  # s2 trained again: s3, trained from the old s2, must follow
    states = rd.read_state()["stages"]
    assert rebuilt_dependencies(edited.stage("s3"), states["s3"], states) == ["s2"]
    assert actions(picking_plan(), rd)[2] == "run"
    assert _why(edited.stage("s3"), "run", states["s3"], set(), ("h", "e"), ["s2"]) == (
        "it was trained from `s2`, which was trained again since")


def test_an_unresolvable_choice_retrains(tmp_path: Path) -> None:
    rd = finished_run(tmp_path, picking_plan())
    replace_stage_evals(rd.evals_jsonl, "s1", [])
    kept, message = recheck(picking_plan(5), rd, picking_plan(5).stage("s2"))
    assert not kept and "cannot be resolved" in message and "`s1`" in message


def steps_done(log: Path) -> dict[str, int]:
    """Training steps each stage executed, from the toy trainer's ``TOY_STEP_LOG``."""
    lines = log.read_text().split() if log.exists() else []
    return {s: lines[0::2].count(s) for s in ("s1", "s2", "s3")}


@pytest.mark.slow
def test_eval_only_edit_keeping_the_choice_retrains_nothing(tmp_path: Path, toy_env: None,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "steps.log"
    monkeypatch.setenv("TOY_STEP_LOG", str(log))
    rd = RunDir(tmp_path / "run")
    run_ok(write_build(tmp_path, picking_plan()), rd)
    chosen = rd.stage_state("s2")["chosen"]
    assert set(chosen) == {"default"} and chosen["default"] in ("base", "s1")
    assert steps_done(log) == {"s1": 2, "s2": 2, "s3": 2}

    edited = write_build(tmp_path, picking_plan(max_tokens=4))
    out = console()
    assert run(edited, rd.root, dry_run=True, console=out) == 0
    assert "re-check teachers" in out.file.getvalue()
    text = run_ok(edited, rd)
    assert "the choice did not" in text and "checkpoint kept" in text, text
    assert steps_done(log) == {"s1": 2, "s2": 2, "s3": 2}  # evaluated again, nothing retrained
    assert {(r["stage"], r["step"]) for r in read_jsonl(rd.evals_jsonl)} == {("base", 0), ("s1", 2), ("s2", 2),
                                                                              ("s3", 2)}

    # The same kind of edit, where s2 had been trained with the other candidate: it retrains, and so does s3.
    other = "s1" if chosen["default"] == "base" else "base"
    state = json.loads(rd.state_json.read_text())
    state["stages"]["s2"]["chosen"] = {"default": other}
    rd.state_json.write_text(json.dumps(state))
    text = run_ok(write_build(tmp_path, picking_plan(max_tokens=5)), rd)
    assert f"default = {other} -> {chosen['default']}" in text and "retraining" in text, text
    assert steps_done(log) == {"s1": 2, "s2": 4, "s3": 4}
    assert rd.stage_state("s2")["chosen"] == chosen
    assert rd.stage_state("s3")["built_on"]["s2"] == rd.stage_state("s2")["build"]
    assert "skipped" in run_ok(write_build(tmp_path, picking_plan(max_tokens=5)), rd)
    assert steps_done(log) == {"s1": 2, "s2": 4, "s3": 4}
