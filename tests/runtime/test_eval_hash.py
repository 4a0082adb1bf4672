"""Eval settings are not training inputs: after an eval-only edit `cascadec run` keeps every finished
checkpoint and re-runs the evals; a training edit re-runs that stage and its descendants.

Stages run in real subprocesses with the toy trainer (``fixtures/cascadec_toy_plugin.py``); the evals, the
rollout engine and the reward are the real ones. The reward is a completion's length in characters plus a
fraction that depends on its exact text, so an eval's score moves with its ``max_tokens`` and a
re-evaluation that samples differently from the stage's own final eval would show.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cascadec_runtime_plans import console, run_ok, sft_stage, tiny_plan, write_build

from cascadec.compiler import compile_file
from cascadec.contract.hashing import choice_hash
from cascadec.contract.plan import Condition, Plan, TeacherRef
from runtime.orchestrator import drop_stale_evals, eval_hashes, plan_actions, reevaluate, run, stage_hashes
from runtime.state import RunDir, append_jsonl, last_eval_points, read_jsonl, replace_stage_evals

SPEC = """cascade "evalhash" {
  seed = 0
  base = model(tiny(llama, hidden_size = 32, intermediate_size = 64, num_hidden_layers = 1,
                    num_attention_heads = 2, num_key_value_heads = 1))
  resources { gpus = 1  device = cpu  precision = fp32  engine = hf }
  domain add {
    train  = inline([{prompt = "1+1=", answer = "2"}, {prompt = "2+1=", answer = "3"},
                     {prompt = "3+1=", answer = "4"}, {prompt = "4+1=", answer = "5"}])
    reward = py("evallen:length")
    eval held = inline([{prompt = "7+1=", answer = "8"}, {prompt = "8+1=", answer = "9"}]) {
      metric = avg@2  temperature = 1.0  max_tokens = 3 }
  }
  stage s1 = sft(base) on add { steps = 4  batch_size = 2  lr = 1e-3  eval_every = 2  seed = 3 }
  stage s2 = sft(s1) on add { steps = 2  batch_size = 2  lr = 1e-3 }
}
"""


@pytest.fixture
def spec_env(tmp_path: Path, toy_env: None, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with the `evallen` reward module on the stage processes' PYTHONPATH."""
    (tmp_path / "evallen.py").write_text(
        "import zlib\n\n"
        "def length(samples, completions):\n"
        "    return [len(c) + zlib.crc32(c.encode()) % 1000 / 1000 for c in completions]\n"
    )
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ["PYTHONPATH"]]))
    return tmp_path


def compile_spec(tmp_path: Path, text: str) -> Plan:
    spec = tmp_path / "evalhash.cascade"
    spec.write_text(text)
    result = compile_file(spec)
    assert result.plan is not None, result.diagnostics
    return result.plan


def build(tmp_path: Path, text: str) -> Path:
    return write_build(tmp_path, compile_spec(tmp_path, text))


def launches(rd: RunDir, stage: str) -> int:
    log = rd.log(stage)
    return sum(line.startswith("--- ") for line in log.read_text().splitlines()) if log.exists() else 0


def evals_of(rd: RunDir, stage: str) -> list[dict]:
    return [r for r in read_jsonl(rd.evals_jsonl) if r["stage"] == stage]


@pytest.mark.slow
def test_eval_edit_reevaluates_and_training_edit_retrains(spec_env: Path) -> None:
    tmp_path = spec_env
    rd = RunDir(tmp_path / "run")
    run_ok(build(tmp_path, SPEC), rd)
    assert [r["step"] for r in evals_of(rd, "s1")] == [2, 4] and [r["step"] for r in evals_of(rd, "s2")] == [2]
    old = {s: evals_of(rd, s)[-1]["score"] for s in ("base", "s1", "s2")}
    weights = {s: (rd.final(s) / "model.safetensors").stat().st_mtime_ns for s in ("s1", "s2")}
    metrics = {s: rd.metrics(s).read_text() for s in ("s1", "s2")}
    assert all(0 < v < 4 for v in old.values())
    # Evaluating a finished stage again with unchanged settings reproduces its own final eval exactly
    # (same weights, engine and sampling seed); its intermediate point (step 2) goes.
    last = evals_of(rd, "s1")[-1]
    plan = compile_spec(tmp_path, SPEC)
    assert reevaluate(plan, rd, plan.stage("s1"), None) == (0, None)
    assert evals_of(rd, "s1") == [last]

    # An eval-only edit: no stage retrains; base, s1 and s2 are evaluated again with the new max_tokens.
    longer = build(tmp_path, SPEC.replace("max_tokens = 3", "max_tokens = 12"))
    out = console()
    assert run(longer, rd.root, dry_run=True, console=out) == 0
    assert out.file.getvalue().count("re-evaluate") == 2
    text = run_ok(longer, rd)
    assert "re-evaluating" in text and "skipped" not in text
    assert {s: (rd.final(s) / "model.safetensors").stat().st_mtime_ns for s in ("s1", "s2")} == weights
    assert {s: rd.metrics(s).read_text() for s in ("s1", "s2")} == metrics
    assert launches(rd, "s1") == 1 and launches(rd, "s2") == 1  # their training ran once
    for stage, step in (("base", 0), ("s1", 4), ("s2", 2)):
        rows = evals_of(rd, stage)
        # one new record at the stage's finished step; the old ones (s1's step 2 too) are gone
        assert [(r["step"], r["eval"]) for r in rows] == [(step, "held")], rows
        assert rows[0]["score"] > old[stage]
    assert not (rd.stage_dir("s1") / "reeval").exists()
    assert "skipped" in run_ok(longer, rd) and launches(rd, "s1") == 1  # now up to date

    # A training edit: s1 and its child s2 retrain; base is untouched.
    base_rows = evals_of(rd, "base")
    run_ok(build(tmp_path, SPEC.replace("max_tokens = 3", "max_tokens = 12").replace(
        "stage s1 = sft(base) on add { steps = 4", "stage s1 = sft(base) on add { steps = 2")), rd)
    assert [r["step"] for r in read_jsonl(rd.metrics("s1"))] == [0, 1]
    assert (rd.final("s2") / "model.safetensors").stat().st_mtime_ns != weights["s2"]
    assert [r["step"] for r in evals_of(rd, "s1")] == [2] and evals_of(rd, "base") == base_rows


def test_runtime_hashes_of_a_plan_without_compiler_hashes() -> None:
    """A plan built by hand (no `hash`/`eval_hash`) gets the same split from the orchestrator."""
    plan = tiny_plan()
    domain = plan.domains["add"]
    longer = domain.model_copy(update={"evals": [domain.evals[0].model_copy(update={"max_tokens": 9})]})

    def with_domain(p: Plan) -> Plan:
        return p.model_copy(update={"domains": {"add": longer}})

    assert stage_hashes(with_domain(plan)) == stage_hashes(plan)
    assert all(eval_hashes(with_domain(plan))[s] != h for s, h in eval_hashes(plan).items())
    # a stage whose `until` reads that eval trains differently when the eval changes
    stop = Condition(kind="threshold", domain="add", eval="held", value=0.5)
    gated = tiny_plan(stages=[sft_stage("s1", "base", steps=4, eval_every=2, until=[stop]),
                              sft_stage("s2", "s1", steps=3)])
    before, after = stage_hashes(gated), stage_hashes(with_domain(gated))
    assert before["s1"] != after["s1"] and before["s2"] != after["s2"]
    # a stage whose teacher is the best candidate by that eval keeps its training hash: the choice is
    # re-checked at run time from the new scores (runtime.choices), through its choice hash
    best = TeacherRef(kind="best", candidates=["s1"], domain="add", eval="held")
    picks = tiny_plan(stages=[sft_stage("s1", "base"), sft_stage("s2", "s1", teachers={"default": best})])
    assert stage_hashes(picks) == stage_hashes(with_domain(picks))
    assert choice_hash(picks, picks.stage("s2")) != choice_hash(with_domain(picks), picks.stage("s2"))
    assert choice_hash(picks, picks.stage("s1")) == ""


def test_plan_actions_reevaluate_only_when_the_eval_hash_changed(tmp_path: Path) -> None:
    plan = tiny_plan()
    rd = RunDir(tmp_path / "run")
    hashes, evals = stage_hashes(plan), eval_hashes(plan)
    for name in ("s1", "s2"):
        rd.final(name).mkdir(parents=True)
        (rd.final(name) / "config.json").write_text("{}")
        rd.update_stage(name, status="done", hash=hashes[name], eval_hash=evals[name])
    for name in ("base", "s1", "s2"):  # a finished stage without its eval records is re-evaluated
        append_jsonl(rd.evals_jsonl, {"stage": name, "step": 0, "domain": "add", "eval": "held", "score": 0.5})
    assert [a for _, a in plan_actions(plan, rd)] == ["skip", "skip"]
    rd.update_stage("s1", eval_hash="old")
    assert [a for _, a in plan_actions(plan, rd)] == ["reeval", "skip"]
    rd.update_stage("s1", hash="old")
    assert [a for _, a in plan_actions(plan, rd)] == ["run", "run"]


def test_last_eval_points_and_replace_stage_evals(tmp_path: Path) -> None:
    log = tmp_path / "evals.jsonl"
    rec = {"domain": "add", "eval": "held", "metric": "pass@1", "n": 2}
    rows = [{**rec, "stage": "s1", "step": 4, "score": 0.5}, {**rec, "stage": "s1", "step": 2, "score": 0.9},
            {**rec, "stage": "s2", "step": 3, "score": 0.1}, {**rec, "stage": "s2", "step": 3, "score": 0.2},
            {"stage": "s2", "note": "not an eval record"}]
    last = last_eval_points(rows)
    assert last["s1"]["add.held"]["score"] == 0.5  # the largest step, wherever it stands
    assert last["s2"]["add.held"]["score"] == 0.2  # of equal steps the later line
    for r in rows:
        append_jsonl(log, r)
    new = {**rec, "stage": "s1", "step": 4, "score": 0.7}
    assert replace_stage_evals(log, "s1", [new]) == 2
    assert [r for r in read_jsonl(log) if r.get("stage") == "s1"] == [new]
    assert len(read_jsonl(log)) == 4


def test_resume_with_changed_evals_keeps_only_the_records_its_until_rule_reads(tmp_path: Path) -> None:
    rd = RunDir(tmp_path / "run")
    stop = Condition(kind="plateau", domain="add", eval="held", patience=2)
    stage = sft_stage("s1", "base", steps=6, eval_every=2, until=[stop])
    rec = {"metric": "pass@1", "n": 2, "score": 0.5}
    for name, step in (("s1", 2), ("s1", 4), ("base", 0)):
        append_jsonl(rd.evals_jsonl, {**rec, "stage": name, "step": step, "domain": "add", "eval": "held"})
        append_jsonl(rd.evals_jsonl, {**rec, "stage": name, "step": step, "domain": "add", "eval": "other"})
    drop_stale_evals(rd, stage)
    kept = [(r["stage"], r["step"], r["eval"]) for r in read_jsonl(rd.evals_jsonl)]
    assert kept == [("s1", 2, "held"), ("s1", 4, "held"), ("base", 0, "held"), ("base", 0, "other")]
