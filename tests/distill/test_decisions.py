"""Decisions made visible: the teachers a stage starts with and the scores that chose them, and why each
stage stopped, in state.json, `cascadec status` and the report (issue 21)."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from cascadec.contract.plan import Condition, Plan
from runtime.report import load_run, report, text_report
from runtime.state import RunDir
from runtime.status import status
from runtime.stop import exhausted
from runtime.teachers import describe_teachers

CHOICE = "default = rl; math = side (best by math.gsm: sft 0.5, side 0.62)"
REASON = "steps exhausted (4); `math.gsm >= 0.9` not reached (last 0.6 at step 4)"


def test_the_teacher_choice_names_every_candidate_score(plan: Plan, run_dir: Path) -> None:
    assert describe_teachers(plan.stage("mopd"), run_dir) == CHOICE
    assert describe_teachers(plan.stage("rl"), run_dir) == ""


def test_a_stage_that_ran_all_its_steps_says_which_targets_it_missed() -> None:
    evals = [{"stage": "mopd", "step": s, "domain": "math", "eval": "gsm", "score": v} for s, v in ((2, 0.52), (4, 0.6))]
    rules = [Condition(kind="threshold", domain="math", eval="gsm", value=0.9),
             Condition(kind="plateau", domain="math", eval="gsm", patience=3)]
    assert exhausted(rules, evals, 4) == REASON
    assert exhausted([Condition(kind="threshold", domain="code", eval="he", op="<", value=0.1)], evals, 4) == \
        "steps exhausted (4); `code.he < 0.1` not reached (never evaluated)"
    assert exhausted([], evals, 7) == "steps exhausted (7)"


def test_status_and_report_show_stop_reasons_and_teachers(plan: Plan, run_dir: Path, tmp_path: Path) -> None:
    rd = RunDir(run_dir)
    rd.update_stage("mopd", teachers=CHOICE)
    rd.update_stage("rl", stop_reason=REASON)
    out = Console(file=io.StringIO(), width=400, color_system=None)
    assert status(run_dir, console=out) == 0
    shown = out.file.getvalue()
    assert CHOICE in shown and REASON in shown
    summary = load_run(run_dir)
    text = text_report(summary, width=400)
    assert CHOICE in text and REASON in text
    html = report(run_dir, tmp_path / "report", console=out).read_text()
    assert "best by math.gsm: sft 0.5, side 0.62" in html and "`math.gsm &gt;= 0.9` not reached" in html


def test_every_dry_run_action_has_its_reason(plan: Plan) -> None:
    from runtime.dryrun import _why

    rl, mopd, now = plan.stage("rl"), plan.stage("mopd"), ("h-new", "e-new")
    done = {"status": "done", "hash": "h-new", "eval_hash": "e-old"}
    assert _why(rl, "skip", done, set(), now) == "done; training and eval inputs unchanged"
    assert _why(rl, "reeval", done, set(), now) == "training inputs unchanged; eval settings changed"
    assert _why(rl, "reeval", {**done, "eval_hash": "e-new"}, set(), now).endswith("eval scores missing from evals.jsonl")
    assert _why(rl, "resume", {**done, "status": "failed"}, set(), now) == "failed with training inputs unchanged"
    assert _why(rl, "run", {}, set(), now) == "never run"
    assert _why(mopd, "run", done, {"rl", "sft"}, now) == "it starts from `rl`, `sft`, which re-run"
    assert _why(rl, "run", {**done, "hash": "h-old-123"}, set(), now).startswith(
        "training inputs changed (hash h-old-12 -> h-new: ")
